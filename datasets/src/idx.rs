//! IDX files (MNIST, Fashion-MNIST, EMNIST …): <http://yann.lecun.com/exdb/mnist/>.
//!
//! An IDX file is a big-endian header — the magic `00 00 <type> <ndims>` then `ndims` u32
//! sizes — followed by the values. We read the two layouts MNIST-style datasets use: images
//! `0x00000803` (u8, 3 dims: N, rows, cols) and labels `0x00000801` (u8, 1 dim: N). Either
//! file may be gzipped (detected by content).

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Result;
use crate::in_memory::{numeric_class_names, Pixels};
use crate::read::{decompress_if_gzip, name_from_path, read_maybe_gzip};
use crate::stored::StoredFile;
use crate::streamed::{Encoding, RecordFiles, Segment};
use crate::{Dataset, DatasetError, InMemoryDataset, StreamedDataset};

/// Magic number of an IDX file of u8 values in 3 dimensions (images).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of u8 values in 1 dimension (labels).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// Load an images file and a labels file (each raw or gzipped).
///
/// `class_names`: `None` names classes `"0"`..=`max label`; pass the real names when known
/// (and always for a subset that might lack the highest class). Every label must be below
/// the number of class names.
pub fn load_idx(
    images: &Path,
    labels: &Path,
    class_names: Option<Vec<String>>,
) -> Result<InMemoryDataset, DatasetError> {
    let image_bytes = read_maybe_gzip(images)?;
    let label_bytes = read_maybe_gzip(labels)?;
    parse_pair(
        name_from_path(images),
        images,
        &image_bytes,
        labels,
        &label_bytes,
        class_names,
    )
}

/// Decode an IDX images/labels pair held in memory (raw or gzipped), e.g. from
/// `include_bytes!`. `name` becomes the dataset name and appears in error messages.
pub fn from_idx_bytes(
    name: &str,
    images_bytes: &[u8],
    labels_bytes: &[u8],
    class_names: Option<Vec<String>>,
) -> Result<InMemoryDataset, DatasetError> {
    let images_origin = PathBuf::from(format!("{name} (in-memory images)"));
    let labels_origin = PathBuf::from(format!("{name} (in-memory labels)"));
    let image_bytes = decompress_if_gzip(&images_origin, Cow::Borrowed(images_bytes))?;
    let label_bytes = decompress_if_gzip(&labels_origin, Cow::Borrowed(labels_bytes))?;
    parse_pair(
        name.to_string(),
        &images_origin,
        &image_bytes,
        &labels_origin,
        &label_bytes,
        class_names,
    )
}

fn parse_pair(
    name: String,
    images_path: &Path,
    image_bytes: &[u8],
    labels_path: &Path,
    label_bytes: &[u8],
    class_names: Option<Vec<String>>,
) -> Result<InMemoryDataset> {
    let images = parse_images(images_path, image_bytes)?;
    let labels = parse_labels(labels_path, label_bytes)?;
    if images.count != labels.len() {
        return Err(DatasetError::CountMismatch {
            images: images_path.to_path_buf(),
            labels: labels_path.to_path_buf(),
            image_count: images.count,
            label_count: labels.len(),
        });
    }
    let labels: Vec<u32> = labels.iter().map(|&l| u32::from(l)).collect();
    let origin = format!("`{}`", labels_path.display());
    let class_names = match class_names {
        Some(names) => names,
        None => numeric_class_names(&origin, &labels)?,
    };
    InMemoryDataset::from_parts(
        &origin,
        name,
        [1, images.rows, images.cols],
        class_names,
        Pixels::U8(images.pixels.to_vec()),
        labels,
    )
}

struct IdxImages<'a> {
    count: usize,
    rows: usize,
    cols: usize,
    pixels: &'a [u8],
}

fn read_u32_be(bytes: &[u8], at: usize) -> Option<u32> {
    let word: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(word))
}

/// Check the magic and the header; `header_len` is 4 + 4 × ndims.
///
/// `bytes` is the start of the file (at least the header when the file holds it) and `actual`
/// the whole file's length.
fn check_header(
    path: &Path,
    bytes: &[u8],
    actual: u64,
    kind: &'static str,
    magic: u32,
    header_len: usize,
) -> Result<Vec<u64>> {
    let truncated = |expected: u64| DatasetError::Truncated {
        path: path.to_path_buf(),
        expected,
        actual,
    };
    let found = read_u32_be(bytes, 0).ok_or_else(|| truncated(header_len as u64))?;
    if found != magic {
        return Err(DatasetError::IdxBadMagic {
            path: path.to_path_buf(),
            kind,
            expected: magic,
            found,
        });
    }
    (4..header_len)
        .step_by(4)
        .map(|at| {
            read_u32_be(bytes, at)
                .map(u64::from)
                .ok_or_else(|| truncated(header_len as u64))
        })
        .collect()
}

/// The exact file length a header implies, refusing overflow, and compared with the actual
/// length before anything is allocated (a forged header cannot make us allocate).
fn check_length(path: &Path, actual: u64, header_len: usize, dims: &[u64]) -> Result<()> {
    let overflow = || DatasetError::DimensionOverflow {
        path: path.to_path_buf(),
        dims: dims.to_vec(),
    };
    let values = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(overflow)?;
    let expected = values.checked_add(header_len as u64).ok_or_else(overflow)?;
    if actual < expected {
        return Err(DatasetError::Truncated {
            path: path.to_path_buf(),
            expected,
            actual,
        });
    }
    if actual > expected {
        return Err(DatasetError::TrailingBytes {
            path: path.to_path_buf(),
            expected,
            actual,
        });
    }
    Ok(())
}

/// Bytes of an images file's header.
const IMAGES_HEADER: usize = 16;
/// Bytes of a labels file's header.
const LABELS_HEADER: usize = 8;

/// `(count, rows, cols)` from an images file's start (`bytes`) and length (`actual`).
fn images_header(path: &Path, bytes: &[u8], actual: u64) -> Result<(usize, usize, usize)> {
    let dims = check_header(
        path,
        bytes,
        actual,
        "images",
        IDX_IMAGES_MAGIC,
        IMAGES_HEADER,
    )?;
    check_length(path, actual, IMAGES_HEADER, &dims)?;
    // check_length proved the product fits in the file, so each factor fits in usize.
    let [count, rows, cols] = [dims[0], dims[1], dims[2]].map(|d| d as usize);
    if rows == 0 || cols == 0 {
        return Err(DatasetError::InvalidShape {
            origin: format!("`{}`", path.display()),
            shape: vec![count, rows, cols],
            reason: "IDX images need at least one row and one column".into(),
        });
    }
    Ok((count, rows, cols))
}

/// The length an images or labels file must have by the header at its start, if it has one;
/// this bounds what a gzipped file is decompressed to.
fn implied_length(bytes: &[u8], magic: u32, header_len: usize) -> Option<u64> {
    if read_u32_be(bytes, 0)? != magic {
        return None;
    }
    (4..header_len)
        .step_by(4)
        .try_fold(1u64, |acc, at| {
            acc.checked_mul(u64::from(read_u32_be(bytes, at)?))
        })?
        .checked_add(header_len as u64)
}

fn parse_images<'a>(path: &Path, bytes: &'a [u8]) -> Result<IdxImages<'a>> {
    let (count, rows, cols) = images_header(path, bytes, bytes.len() as u64)?;
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels: &bytes[IMAGES_HEADER..],
    })
}

fn parse_labels<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a [u8]> {
    let dims = check_header(
        path,
        bytes,
        bytes.len() as u64,
        "labels",
        IDX_LABELS_MAGIC,
        LABELS_HEADER,
    )?;
    check_length(path, bytes.len() as u64, LABELS_HEADER, &dims)?;
    Ok(&bytes[LABELS_HEADER..])
}

/// Open an images file and a labels file (each raw or gzipped) for streaming: the checks of
/// [`load_idx`], after which batches read their pixels from the images file
/// ([`StreamedDataset`]). A gzipped images file is decompressed once into a temporary file.
pub fn open_idx(
    images: &Path,
    labels: &Path,
    class_names: Option<Vec<String>>,
) -> Result<StreamedDataset, DatasetError> {
    let stored = StoredFile::open(images, &|prefix| {
        implied_length(prefix, IDX_IMAGES_MAGIC, IMAGES_HEADER)
    })?;
    let label_bytes = read_maybe_gzip(labels)?;
    let start = stored.prefix(IMAGES_HEADER)?;
    let (count, rows, cols) = images_header(images, &start, stored.len())?;
    let label_bytes = parse_labels(labels, &label_bytes)?;
    if count != label_bytes.len() {
        return Err(DatasetError::CountMismatch {
            images: images.to_path_buf(),
            labels: labels.to_path_buf(),
            image_count: count,
            label_count: label_bytes.len(),
        });
    }
    let label_values: Vec<u32> = label_bytes.iter().map(|&l| u32::from(l)).collect();
    let origin = format!("`{}`", labels.display());
    let class_names = match class_names {
        Some(names) => names,
        None => numeric_class_names(&origin, &label_values)?,
    };
    let pixels = RecordFiles {
        segments: vec![Segment {
            file: Arc::new(stored),
            offset: IMAGES_HEADER as u64,
            records: count,
            // rows * cols * count fits in the file (check_length), so this cannot overflow.
            record_len: rows * cols,
            skip: 0,
        }],
        encoding: Encoding::U8,
    };
    StreamedDataset::from_files(
        &origin,
        name_from_path(images),
        [1, rows, cols],
        class_names,
        label_values,
        pixels,
    )
}

/// Encode a dataset as an IDX images file and an IDX labels file (uncompressed).
///
/// IDX as read here holds one u8 channel and u8 labels, so the dataset must have `C == 1`
/// and labels below 256. f32 pixels are quantised to `round(v * 255)`, which reproduces
/// exactly any dataset that was itself loaded from 8-bit data.
pub fn encode_idx(dataset: &InMemoryDataset) -> Result<(Vec<u8>, Vec<u8>), DatasetError> {
    let not_idx = |reason: String| DatasetError::NotIdxCompatible {
        dataset: dataset.name().to_string(),
        reason,
    };
    let [channels, rows, cols] = dataset.shape();
    if channels != 1 {
        return Err(not_idx(format!("it has {channels} channels, IDX holds 1")));
    }
    let to_u32 = |v: usize, what: &str| {
        u32::try_from(v).map_err(|_| not_idx(format!("{what} {v} does not fit in a u32")))
    };
    let header = [
        IDX_IMAGES_MAGIC,
        to_u32(dataset.len(), "sample count")?,
        to_u32(rows, "height")?,
        to_u32(cols, "width")?,
    ];
    let mut images = Vec::with_capacity(16 + dataset.len() * dataset.sample_len());
    for word in header {
        images.extend_from_slice(&word.to_be_bytes());
    }
    match dataset.pixels_u8() {
        Some(bytes) => images.extend_from_slice(bytes),
        None => images.extend(
            dataset
                .pixels_f32()
                .iter()
                // In [0, 1] by the dataset invariant, so the cast cannot saturate.
                .map(|&v| (v * 255.0).round() as u8),
        ),
    }
    let mut labels = Vec::with_capacity(8 + dataset.len());
    labels.extend_from_slice(&IDX_LABELS_MAGIC.to_be_bytes());
    labels.extend_from_slice(&to_u32(dataset.len(), "sample count")?.to_be_bytes());
    for (index, &label) in dataset.labels().iter().enumerate() {
        let byte = u8::try_from(label).map_err(|_| {
            not_idx(format!(
                "label {label} of sample {index} does not fit in the u8 IDX labels hold"
            ))
        })?;
        labels.push(byte);
    }
    Ok((images, labels))
}

/// Write a dataset as an IDX images/labels pair, gzipped when `gzip` is true.
pub fn write_idx(
    dataset: &InMemoryDataset,
    images: &Path,
    labels: &Path,
    gzip: bool,
) -> Result<(), DatasetError> {
    let (image_bytes, label_bytes) = encode_idx(dataset)?;
    write_file(images, &image_bytes, gzip)?;
    write_file(labels, &label_bytes, gzip)
}

fn write_file(path: &Path, bytes: &[u8], gzip: bool) -> Result<()> {
    let io = |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    };
    if !gzip {
        return fs_err::write(path, bytes).map_err(io);
    }
    let file = fs_err::File::create(path).map_err(io)?;
    let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::best());
    encoder.write_all(bytes).map_err(io)?;
    encoder.finish().map_err(io)?.sync_all().map_err(io)
}
