//! CIFAR-10 binary batches: <https://www.cs.toronto.edu/~kriz/cifar.html> ("binary version").
//!
//! Each batch file is a run of 3073-byte records: one label byte (0..=9), then 3 × 1024 pixel
//! bytes — the red plane, then green, then blue, each 32 × 32 row-major. That is already the
//! `[C, H, W]` layout a [`crate::Batch`] wants, so records are copied without reordering.
//! `batches.meta.txt`, beside the batches, lists the class names one per line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Result;
use crate::in_memory::Pixels;
use crate::read::read_maybe_gzip;
use crate::stored::StoredFile;
use crate::streamed::{Encoding, RecordFiles, Segment};
use crate::{DatasetError, InMemoryDataset, StreamedDataset};

/// Bytes per CIFAR-10 record: 1 label + 3 × 32 × 32 pixels.
pub const CIFAR10_RECORD_BYTES: usize = 1 + CIFAR10_PIXELS;
const CIFAR10_PIXELS: usize = 3 * 32 * 32;
const CIFAR10_CLASSES: usize = 10;

/// The class names of CIFAR-10 in label order, as in the official `batches.meta.txt`.
pub const CIFAR10_CLASS_NAMES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Which files of a `cifar-10-batches-bin` directory to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CifarSplit {
    /// `data_batch_1.bin` … `data_batch_5.bin` (all five must exist), 50,000 images.
    Train,
    /// `test_batch.bin`, 10,000 images.
    Test,
}

/// Load and concatenate CIFAR-10 batch files, in the order given.
///
/// Class names come from `batches.meta.txt` in the first file's directory when that file
/// exists (it must then list exactly ten names), else [`CIFAR10_CLASS_NAMES`].
pub fn load_cifar10(paths: &[PathBuf]) -> Result<InMemoryDataset, DatasetError> {
    load_files(batches_name(paths)?, paths)
}

/// The dataset's name after the first of `paths`: `cifar10/data_batch_1`.
fn batches_name(paths: &[PathBuf]) -> Result<String, DatasetError> {
    let first = paths.first().ok_or(DatasetError::NoInputFiles {
        what: "CIFAR-10 batches",
    })?;
    Ok(match first.file_stem() {
        Some(stem) => format!("cifar10/{}", stem.to_string_lossy()),
        None => "cifar10".to_string(),
    })
}

/// Load one split of an extracted `cifar-10-batches-bin` directory.
pub fn load_cifar10_dir(dir: &Path, split: CifarSplit) -> Result<InMemoryDataset, DatasetError> {
    let (name, files) = split_files(dir, split)?;
    load_files(name, &files)
}

/// The dataset name and the batch files of one split, every one of which must exist.
fn split_files(dir: &Path, split: CifarSplit) -> Result<(String, Vec<PathBuf>)> {
    let (files, split_name): (Vec<PathBuf>, _) = match split {
        CifarSplit::Train => (
            (1..=5)
                .map(|i| dir.join(format!("data_batch_{i}.bin")))
                .collect(),
            "train",
        ),
        CifarSplit::Test => (vec![dir.join("test_batch.bin")], "test"),
    };
    // `exists`, not `is_file`: a FIFO or device there is refused by the reading layer with
    // what it is, rather than called missing.
    if let Some(missing) = files.iter().find(|f| !f.exists()) {
        return Err(DatasetError::MissingFile {
            path: missing.clone(),
            what: format!("the CIFAR-10 {split_name} split needs it"),
        });
    }
    Ok((format!("cifar10-{split_name}"), files))
}

/// What a suite file's `path` means for format `cifar10`: a directory loads its test split
/// ([`CifarSplit::Test`], the split robustness is evaluated on); a file loads that one batch.
pub fn load_cifar10_path(path: &Path) -> Result<InMemoryDataset, DatasetError> {
    if path.is_dir() {
        load_cifar10_dir(path, CifarSplit::Test)
    } else {
        load_cifar10(&[path.to_path_buf()])
    }
}

/// [`load_cifar10`] for streaming: the same checks (every label is read, in one pass over
/// each file), after which batches read their records from the files ([`StreamedDataset`]).
/// A gzipped batch file is decompressed once into a temporary file.
pub fn open_cifar10(paths: &[PathBuf]) -> Result<StreamedDataset, DatasetError> {
    open_files(batches_name(paths)?, paths)
}

/// [`load_cifar10_dir`] for streaming.
pub fn open_cifar10_dir(dir: &Path, split: CifarSplit) -> Result<StreamedDataset, DatasetError> {
    let (name, files) = split_files(dir, split)?;
    open_files(name, &files)
}

/// [`load_cifar10_path`] for streaming.
pub fn open_cifar10_path(path: &Path) -> Result<StreamedDataset, DatasetError> {
    if path.is_dir() {
        open_cifar10_dir(path, CifarSplit::Test)
    } else {
        open_cifar10(&[path.to_path_buf()])
    }
}

/// The records of a batch file of `len` bytes: refuses an empty file and one that is not a
/// whole number of records. Shared by the whole-file and the streaming reader.
fn record_count(path: &Path, len: u64) -> Result<usize> {
    if len == 0 {
        return Err(DatasetError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    if !len.is_multiple_of(CIFAR10_RECORD_BYTES as u64) {
        return Err(DatasetError::CifarLength {
            path: path.to_path_buf(),
            len,
            record_bytes: CIFAR10_RECORD_BYTES,
        });
    }
    // At most the 4 GiB file limit over 3073 bytes, so it fits in usize.
    Ok((len / CIFAR10_RECORD_BYTES as u64) as usize)
}

/// Record `index`'s label (its first byte), refused past the ten classes.
fn record_label(path: &Path, index: usize, record: &[u8]) -> Result<u32> {
    let label = record[0];
    if usize::from(label) >= CIFAR10_CLASSES {
        return Err(DatasetError::LabelOutOfRange {
            origin: format!("`{}`", path.display()),
            index,
            label: i64::from(label),
            num_classes: CIFAR10_CLASSES,
        });
    }
    Ok(u32::from(label))
}

fn open_files(name: String, paths: &[PathBuf]) -> Result<StreamedDataset> {
    let mut segments = Vec::with_capacity(paths.len());
    let mut labels = Vec::new();
    for path in paths {
        let stored = StoredFile::open(path, &|_| None)?;
        let records = record_count(path, stored.len())?;
        stored.scan_records(0, records, CIFAR10_RECORD_BYTES, &mut |first, bytes| {
            for (k, record) in bytes.chunks_exact(CIFAR10_RECORD_BYTES).enumerate() {
                labels.push(record_label(path, first + k, record)?);
            }
            Ok(())
        })?;
        segments.push(Segment {
            file: Arc::new(stored),
            offset: 0,
            records,
            record_len: CIFAR10_RECORD_BYTES,
            skip: 1,
        });
    }
    let class_names = class_names_beside(&paths[0])?;
    let origin = format!("CIFAR-10 batches starting at `{}`", paths[0].display());
    StreamedDataset::from_files(
        &origin,
        name,
        [3, 32, 32],
        class_names,
        labels,
        RecordFiles {
            segments,
            encoding: Encoding::U8,
        },
    )
}

fn load_files(name: String, paths: &[PathBuf]) -> Result<InMemoryDataset> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for path in paths {
        let bytes = read_maybe_gzip(path)?;
        let records = record_count(path, bytes.len() as u64)?;
        pixels.reserve(records * CIFAR10_PIXELS);
        for (index, record) in bytes.chunks_exact(CIFAR10_RECORD_BYTES).enumerate() {
            labels.push(record_label(path, index, record)?);
            pixels.extend_from_slice(&record[1..]);
        }
    }
    let class_names = class_names_beside(&paths[0])?;
    let origin = format!("CIFAR-10 batches starting at `{}`", paths[0].display());
    InMemoryDataset::from_parts(
        &origin,
        name,
        [3, 32, 32],
        class_names,
        Pixels::U8(pixels),
        labels,
    )
}

/// Names from `batches.meta.txt` next to `batch` (blank lines ignored; the official file ends
/// with some), or the standard names when the file is absent.
fn class_names_beside(batch: &Path) -> Result<Vec<String>> {
    let meta = batch
        .parent()
        .unwrap_or(Path::new("."))
        .join("batches.meta.txt");
    // Absent means the standard names; anything present must be a readable regular file.
    if !meta.exists() {
        return Ok(CIFAR10_CLASS_NAMES.map(String::from).to_vec());
    }
    let text =
        gauntlet_files::read_to_string_bounded(&meta, gauntlet_files::limits::DATA_METADATA)?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() != CIFAR10_CLASSES {
        return Err(DatasetError::CifarMeta {
            path: meta,
            found: names.len(),
        });
    }
    Ok(names)
}
