//! A folder of images, one subfolder per class — the layout of torchvision's `ImageFolder`.
//!
//! ```text
//! root/
//!   cat/ 001.png  002.jpg  more/003.png
//!   dog/ 001.png
//! ```
//!
//! Class folders are the directories directly under `root`, sorted by name (byte order, like
//! Python's `sorted`), and their position in that order is the class index, so the same
//! folder gives the same labels here and in torchvision. Files directly under `root` are not
//! samples and are ignored. Inside a class folder every non-hidden file, at any depth, must
//! be a PNG or JPEG image (detected from its content): an unreadable file is an error naming
//! it, never a silently smaller dataset. Names starting with `.` (`.DS_Store`, `.git`) are
//! skipped everywhere.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

use crate::error::Result;
use crate::in_memory::Pixels;
use crate::read::MAX_DECOMPRESSED_BYTES;
use crate::{DatasetError, InMemoryDataset};

/// Largest width or height of an image accepted (4096 pixels), checked from the image's
/// header before it is decoded. Robustness suites run on images of 28 to a few hundred pixels
/// a side; a 20,000 × 20,000 PNG compresses to a few hundred KB but decodes to over a GB.
pub const MAX_IMAGE_SIDE: u32 = 4096;

/// Most bytes the decoder may allocate for one image: a [`MAX_IMAGE_SIDE`]² RGBA image with
/// 16 bits per channel (128 MiB), twice over for the decoder's own buffers.
const MAX_DECODER_ALLOC: u64 = 256 << 20;

/// Load every image under `root/<class>/`, in sorted order.
///
/// All images must have the same width and height. If every image is grayscale (with or
/// without alpha) the dataset has `C = 1`; otherwise every image is converted to RGB and
/// `C = 3` (a grayscale image then has R = G = B). Alpha is dropped, not composited; 16-bit
/// images are reduced to 8 bits.
pub fn load_image_folder(root: &Path) -> Result<InMemoryDataset, DatasetError> {
    load_image_folder_limited(root, None)
}

/// [`load_image_folder`] keeping only the first `limit` images (class folders in order, then
/// the files of each in order: the samples a suite's `limit` keeps).
///
/// The limit is applied to the file list, before anything is read: the images past it are
/// never opened. Each kept image is read through `gauntlet-files` (a regular file of at most
/// 256 MiB), and its header is checked before its pixels are decoded: a side over
/// [`MAX_IMAGE_SIDE`], a size different from the first image's, or a dataset that would need
/// more than 4 GiB of pixels is refused without decoding it. The class list is always the
/// full one.
pub fn load_image_folder_limited(
    root: &Path,
    limit: Option<usize>,
) -> Result<InMemoryDataset, DatasetError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DatasetError::Io { path, source }
    };
    let mut class_dirs = Vec::new();
    for entry in fs_err::read_dir(root).map_err(io(root))? {
        let entry = entry.map_err(io(root))?;
        let file_type = entry.file_type().map_err(io(&entry.path()))?;
        if is_hidden(&entry.path()) {
            continue;
        }
        let is_dir = file_type.is_dir() || (file_type.is_symlink() && entry.path().is_dir());
        if is_dir {
            class_dirs.push(entry.path());
        }
    }
    class_dirs.sort();
    if class_dirs.is_empty() {
        return Err(DatasetError::NoClassFolders {
            root: root.to_path_buf(),
        });
    }

    let mut samples: Vec<(PathBuf, u32)> = Vec::new();
    let mut class_names = Vec::with_capacity(class_dirs.len());
    for (class_index, dir) in class_dirs.iter().enumerate() {
        class_names.push(
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        let mut files = Vec::new();
        collect_files(dir, &mut files)?;
        if files.is_empty() {
            return Err(DatasetError::EmptyClassFolder { path: dir.clone() });
        }
        let label = u32::try_from(class_index).unwrap_or(u32::MAX);
        samples.extend(files.into_iter().map(|file| (file, label)));
    }
    if let Some(limit) = limit {
        samples.truncate(limit);
    }

    // Each image is stored as 8-bit gray or 8-bit RGB right after decoding.
    let mut decoded: Vec<(DynamicImage, u32)> = Vec::with_capacity(samples.len());
    let mut first: Option<(&Path, u32, u32)> = None;
    for (path, label) in &samples {
        let bytes = gauntlet_files::read_bounded(path, gauntlet_files::limits::IMAGE)?;
        let decoder = header(path, &bytes)?;
        let (width, height) = decoder.dimensions();
        if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
            return Err(DatasetError::ImageTooLarge {
                path: path.clone(),
                width,
                height,
                max_side: MAX_IMAGE_SIDE,
            });
        }
        match first {
            None => {
                // Every image must match this one, so the dataset's size is known now.
                let bytes =
                    (samples.len() as u64).saturating_mul(u64::from(width) * u64::from(height) * 3);
                if bytes > MAX_DECOMPRESSED_BYTES {
                    return Err(DatasetError::ImageFolderTooLarge {
                        root: root.to_path_buf(),
                        images: samples.len(),
                        width,
                        height,
                        limit: MAX_DECOMPRESSED_BYTES,
                    });
                }
                first = Some((path, width, height));
            }
            Some((first_path, expected_width, expected_height)) => {
                if (width, height) != (expected_width, expected_height) {
                    return Err(DatasetError::ImageSizeMismatch {
                        path: path.clone(),
                        width,
                        height,
                        first: first_path.to_path_buf(),
                        expected_width,
                        expected_height,
                    });
                }
            }
        }
        let image = decode(path, decoder)?;
        let image = if image.color().has_color() {
            DynamicImage::ImageRgb8(image.into_rgb8())
        } else {
            DynamicImage::ImageLuma8(image.into_luma8())
        };
        decoded.push((image, *label));
    }
    let Some((_, width, height)) = first else {
        // Only with `limit = 0` (which a suite refuses): an empty dataset, which the harness
        // refuses as holding no samples.
        return InMemoryDataset::from_parts(
            &format!("image folder `{}`", root.display()),
            root_name(root),
            [1, 1, 1],
            class_names,
            Pixels::U8(Vec::new()),
            Vec::new(),
        );
    };

    let all_gray = decoded.iter().all(|(image, _)| !image.color().has_color());
    let channels = if all_gray { 1 } else { 3 };
    let plane = width as usize * height as usize;
    let mut pixels = Vec::with_capacity(decoded.len() * channels * plane);
    let mut labels = Vec::with_capacity(decoded.len());
    for (image, label) in decoded {
        if all_gray {
            pixels.extend_from_slice(image.to_luma8().as_raw());
        } else {
            // RgbImage is interleaved H × W × 3; a Batch wants planar 3 × H × W.
            let rgb = image.to_rgb8();
            let raw = rgb.as_raw();
            for channel in 0..3 {
                pixels.extend(raw.iter().skip(channel).step_by(3));
            }
        }
        labels.push(label);
    }
    InMemoryDataset::from_parts(
        &format!("image folder `{}`", root.display()),
        root_name(root),
        [channels, height as usize, width as usize],
        class_names,
        Pixels::U8(pixels),
        labels,
    )
}

fn root_name(root: &Path) -> String {
    root.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| root.display().to_string())
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// Every non-hidden file under `dir`, recursively, sorted by path within each folder.
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DatasetError::Io { path, source }
    };
    let mut entries = Vec::new();
    for entry in fs_err::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        if is_hidden(&entry.path()) {
            continue;
        }
        // Do not follow symlinked directories: a link cycle would never end.
        let is_dir = entry.file_type().map_err(io(&entry.path()))?.is_dir();
        entries.push((entry.path(), is_dir));
    }
    entries.sort();
    for (path, is_dir) in entries {
        if is_dir {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn decode_error(path: &Path) -> impl FnOnce(image::ImageError) -> DatasetError + '_ {
    move |source| DatasetError::ImageDecode {
        path: path.to_path_buf(),
        source,
    }
}

/// A decoder over `bytes` that has read only the image's header (format from content).
fn header<'a>(path: &Path, bytes: &'a [u8]) -> Result<impl ImageDecoder + 'a> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|source| DatasetError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    // The caller checks the dimensions itself, to name them in its error; the decoder's
    // limits are set before decoding.
    reader.no_limits();
    reader.into_decoder().map_err(decode_error(path))
}

/// Decode the pixels, under limits that repeat [`MAX_IMAGE_SIDE`] and bound the decoder's
/// allocations.
fn decode(path: &Path, mut decoder: impl ImageDecoder) -> Result<DynamicImage> {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODER_ALLOC);
    decoder.set_limits(limits).map_err(decode_error(path))?;
    DynamicImage::from_decoder(decoder).map_err(decode_error(path))
}
