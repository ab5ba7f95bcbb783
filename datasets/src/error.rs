use std::path::PathBuf;

/// Everything that can go wrong reading or building a dataset.
///
/// File-format variants carry the `path` of the offending file (for data decoded from memory,
/// a descriptive pseudo-path such as `fashion-mnist-test-1k (embedded images)`). Value-level
/// variants (labels, pixels, shapes) carry an `origin` string naming the file or the in-memory
/// dataset, because they are raised both by loaders and by [`crate::InMemoryDataset`]'s
/// constructors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    #[error("cannot read `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A file that is not a regular file, is past its size limit, decompresses past its limit
    /// or is corrupt gzip (the reading layer's errors name the file and the limit).
    #[error(transparent)]
    File(gauntlet_files::FileError),
    /// The file is shorter than its own header says it must be.
    #[error("`{path}` is truncated: its header implies {expected} bytes but it holds {actual}")]
    Truncated {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    /// The file is longer than its own header says; extra bytes mean a wrong header or a
    /// concatenation, and would otherwise be ignored silently.
    #[error(
        "`{path}` has trailing bytes: its header implies {expected} bytes but it holds {actual}"
    )]
    TrailingBytes {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    /// A gzipped dataset file is decompressed into a temporary file (batches are read from
    /// it); creating or writing that file failed, e.g. `$TMPDIR` is full.
    #[error(
        "cannot write the decompressed copy of `{path}` to a temporary file (in `$TMPDIR`); \
         free space there, point TMPDIR elsewhere, or decompress the file beforehand"
    )]
    TempFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file holds no data at all.
    #[error("`{path}` is empty")]
    EmptyFile { path: PathBuf },

    /// An IDX file whose first four bytes are not the expected magic number.
    #[error(
        "`{path}` is not an IDX {kind} file: magic number is {found:#010x}, expected {expected:#010x}"
    )]
    IdxBadMagic {
        path: PathBuf,
        /// `images` or `labels`.
        kind: &'static str,
        expected: u32,
        found: u32,
    },
    /// Header dimensions whose product overflows 64 bits; such a file cannot exist.
    #[error("`{path}` declares dimensions {dims:?} whose product overflows")]
    DimensionOverflow { path: PathBuf, dims: Vec<u64> },
    /// A shape that is well formed but unusable (zero-sized, wrong rank, channels-last, …).
    #[error("{origin}: unusable shape {shape:?}: {reason}")]
    InvalidShape {
        origin: String,
        shape: Vec<usize>,
        reason: String,
    },
    /// Images and labels disagree on the number of samples.
    #[error("`{images}` holds {image_count} images but `{labels}` holds {label_count} labels")]
    CountMismatch {
        images: PathBuf,
        labels: PathBuf,
        image_count: usize,
        label_count: usize,
    },

    /// A label that is negative or not below the number of classes.
    #[error("{origin}: label {label} of sample {index} is not in 0..{num_classes}")]
    LabelOutOfRange {
        origin: String,
        index: usize,
        label: i64,
        num_classes: usize,
    },
    /// A dataset needs at least one class.
    #[error("{origin}: no classes (no class names given and no labels to infer them from)")]
    NoClasses { origin: String },
    /// A floating-point pixel outside [0, 1].
    #[error("{origin}: pixel {index} is {value}, outside [0, 1]")]
    PixelOutOfRange {
        origin: String,
        index: usize,
        value: f64,
    },
    /// A NaN or infinite floating-point pixel.
    #[error("{origin}: pixel {index} is {value}, not a finite number")]
    NonFinitePixel {
        origin: String,
        index: usize,
        value: f64,
    },
    /// The pixel buffer is not `samples × C × H × W` long.
    #[error("{origin}: expected {expected} pixel values ({samples} samples of shape {shape:?}), got {actual}")]
    PixelCountMismatch {
        origin: String,
        samples: usize,
        shape: [usize; 3],
        expected: usize,
        actual: usize,
    },

    /// A CIFAR-10 batch file whose length is not a whole number of 3073-byte records.
    #[error(
        "`{path}` is {len} bytes, not a multiple of the {record_bytes}-byte CIFAR-10 record \
         (1 label byte + 3 × 32 × 32 pixel bytes)"
    )]
    CifarLength {
        path: PathBuf,
        len: u64,
        record_bytes: usize,
    },
    /// `batches.meta.txt` does not list exactly ten class names.
    #[error("`{path}` lists {found} class names; CIFAR-10 needs exactly 10")]
    CifarMeta { path: PathBuf, found: usize },
    /// A file the chosen layout requires is absent.
    #[error("`{path}` is missing: {what}")]
    MissingFile { path: PathBuf, what: String },
    /// A loader was given an empty list of files.
    #[error("no input files given for {what}")]
    NoInputFiles { what: &'static str },

    /// An image-folder root with no class subfolders.
    #[error("`{root}` has no class subfolders (expected one folder per class, torchvision ImageFolder layout)")]
    NoClassFolders { root: PathBuf },
    /// A class subfolder with no images; its class index would exist with no samples.
    #[error("class folder `{path}` holds no images")]
    EmptyClassFolder { path: PathBuf },
    /// A file in an image folder that cannot be decoded as PNG or JPEG.
    #[error("`{path}` cannot be decoded as a PNG or JPEG image")]
    ImageDecode {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    /// An image whose header declares a side over the limit; it is not decoded.
    #[error(
        "`{path}` is {width}x{height} pixels; images may be at most {max_side} pixels wide and \
         high (checked from the header, before decoding)"
    )]
    ImageTooLarge {
        path: PathBuf,
        width: u32,
        height: u32,
        max_side: u32,
    },
    /// An image folder whose images would need more memory than the dataset limit.
    #[error(
        "image folder `{root}`: {images} images of {width}x{height} pixels need more than \
         {limit} bytes; set `limit` in the suite's [dataset] table to evaluate fewer"
    )]
    ImageFolderTooLarge {
        root: PathBuf,
        images: usize,
        width: u32,
        height: u32,
        limit: u64,
    },
    /// Images in one folder must share one size so they stack into `(N, C, H, W)`.
    #[error(
        "`{path}` is {width}x{height} but `{first}` (the first image) is \
         {expected_width}x{expected_height}; all images must share one size"
    )]
    ImageSizeMismatch {
        path: PathBuf,
        width: u32,
        height: u32,
        first: PathBuf,
        expected_width: u32,
        expected_height: u32,
    },

    /// An NPY file whose magic or header dictionary is malformed.
    #[error("`{path}` has a malformed NPY header: {reason}")]
    NpyHeader { path: PathBuf, reason: String },
    /// Object arrays are pickled Python objects; reading them means running the unpickler.
    #[error(
        "`{path}` holds an object array (dtype `{descr}`); object arrays are refused because \
         loading them would unpickle arbitrary Python objects"
    )]
    NpyObjectDtype { path: PathBuf, descr: String },
    /// A dtype this crate does not read for the given role.
    #[error("`{path}`: dtype `{descr}` is not supported for {role}: {reason}")]
    NpyUnsupportedDtype {
        path: PathBuf,
        descr: String,
        /// `images` or `labels`.
        role: &'static str,
        reason: String,
    },
    /// Column-major (Fortran-order) arrays are refused rather than silently transposed.
    #[error(
        "`{path}` is stored in Fortran (column-major) order; save it with \
         `np.save(path, np.ascontiguousarray(a))`"
    )]
    NpyFortranOrder { path: PathBuf },

    /// An index past the end of a dataset (subset selection).
    #[error("dataset `{dataset}`: index {index} is out of range for {len} samples")]
    IndexOutOfRange {
        dataset: String,
        index: usize,
        len: usize,
    },
    /// A batch range outside the dataset.
    #[error("dataset `{dataset}`: batch range {start}..{end} is out of range for {len} samples")]
    BatchRange {
        dataset: String,
        start: usize,
        end: usize,
        len: usize,
    },
    /// The dataset cannot be written as IDX (IDX here means one u8 channel and u8 labels).
    #[error("dataset `{dataset}` cannot be written as IDX: {reason}")]
    NotIdxCompatible { dataset: String, reason: String },
    /// A dataset format name that is not one of `idx`, `cifar10`, `image_folder`, `npy`.
    #[error("unknown dataset format `{name}`; known formats: idx, cifar10, image_folder, npy")]
    UnknownFormat { name: String },
}

impl From<gauntlet_files::FileError> for DatasetError {
    /// The operating system's refusals stay [`DatasetError::Io`], as for every other file
    /// operation here; what the reading layer itself refuses is [`DatasetError::File`].
    fn from(error: gauntlet_files::FileError) -> Self {
        match error {
            gauntlet_files::FileError::Io { path, source } => DatasetError::Io { path, source },
            other => DatasetError::File(other),
        }
    }
}

/// Shorthand for `Result<T, DatasetError>` inside this crate.
pub(crate) type Result<T, E = DatasetError> = std::result::Result<T, E>;
