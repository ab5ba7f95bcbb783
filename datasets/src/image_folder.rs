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

use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageReader};

use crate::error::Result;
use crate::in_memory::Pixels;
use crate::{DatasetError, InMemoryDataset};

/// Load every image under `root/<class>/`, in sorted order.
///
/// All images must have the same width and height. If every image is grayscale (with or
/// without alpha) the dataset has `C = 1`; otherwise every image is converted to RGB and
/// `C = 3` (a grayscale image then has R = G = B). Alpha is dropped, not composited; 16-bit
/// images are reduced to 8 bits.
pub fn load_image_folder(root: &Path) -> Result<InMemoryDataset, DatasetError> {
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

    let mut decoded: Vec<(PathBuf, DynamicImage, u32)> = Vec::new();
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
        for file in files {
            let image = decode(&file)?;
            decoded.push((file, image, label));
        }
    }

    let (first_path, first_image, _) = &decoded[0];
    let (width, height) = (first_image.width(), first_image.height());
    for (path, image, _) in &decoded {
        if (image.width(), image.height()) != (width, height) {
            return Err(DatasetError::ImageSizeMismatch {
                path: path.clone(),
                width: image.width(),
                height: image.height(),
                first: first_path.clone(),
                expected_width: width,
                expected_height: height,
            });
        }
    }

    let all_gray = decoded
        .iter()
        .all(|(_, image, _)| !image.color().has_color());
    let channels = if all_gray { 1 } else { 3 };
    let plane = width as usize * height as usize;
    let mut pixels = Vec::with_capacity(decoded.len() * channels * plane);
    let mut labels = Vec::with_capacity(decoded.len());
    for (_, image, label) in decoded {
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
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| root.display().to_string());
    InMemoryDataset::from_parts(
        &format!("image folder `{}`", root.display()),
        name,
        [channels, height as usize, width as usize],
        class_names,
        Pixels::U8(pixels),
        labels,
    )
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

fn decode(path: &Path) -> Result<DynamicImage> {
    let io = |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    };
    let reader = ImageReader::open(path)
        .map_err(io)?
        .with_guessed_format()
        .map_err(io)?;
    reader.decode().map_err(|source| DatasetError::ImageDecode {
        path: path.to_path_buf(),
        source,
    })
}
