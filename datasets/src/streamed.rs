//! [`StreamedDataset`]: a dataset whose pixels stay in their files until a batch asks for them.
//!
//! IDX, CIFAR-10 binary and `.npy` hold fixed-size records, so the samples `a..b` are one
//! contiguous run of bytes at a known offset: a batch seeks there and reads exactly those
//! bytes. Only the labels (4 bytes a sample) and the class names are held, so the memory a
//! run's data needs is bounded by the batch size, not by the dataset's size. The pixels a
//! batch returns are bit-identical to those of the whole-file loaders ([`crate::load_idx`],
//! [`crate::load_cifar10`], [`crate::load_npy`]): the same bytes, decoded by the same
//! expressions.
//!
//! Everything the whole-file loaders check is checked when the dataset is opened — headers,
//! exact file lengths, labels, and for float `.npy` images every value (one streaming pass) —
//! so a malformed file is still one error at load time. A batch can then fail only if a file
//! changes under a running process: a file that shrank is an I/O error naming it, and float
//! values are checked again as they are decoded.
//!
//! Formats without fixed-size records (image folders, the embedded datasets) are held in
//! memory as an [`InMemoryDataset`] inside the same type, so callers handle one type.

use std::ops::Range;
use std::sync::Arc;

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::in_memory::{check_labels, check_unit_interval_at, checked_sample_len, Pixels};
use crate::stored::StoredFile;
use crate::{Batch, Dataset, DatasetError, InMemoryDataset};

/// How one pixel value is stored in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// One byte, 0..=255, scaled by 1/255.
    U8,
    /// IEEE float32, in [0, 1].
    F32 { big_endian: bool },
    /// IEEE float64, in [0, 1], rounded to f32 as the whole-file loader does.
    F64 { big_endian: bool },
}

impl Encoding {
    pub(crate) fn item_size(self) -> usize {
        match self {
            Encoding::U8 => 1,
            Encoding::F32 { .. } => 4,
            Encoding::F64 { .. } => 8,
        }
    }

    /// Decode `bytes` (whole values) and check floats, `first_value` being the index of the
    /// first one within `origin`'s values (for the error).
    pub(crate) fn decode(
        self,
        origin: &str,
        first_value: usize,
        bytes: &[u8],
        out: &mut Vec<f32>,
    ) -> Result<()> {
        match self {
            Encoding::U8 => out.extend(bytes.iter().map(|&b| f32::from(b) / 255.0)),
            Encoding::F32 { big_endian } => {
                let start = out.len();
                out.extend(bytes.chunks_exact(4).map(|b| {
                    let b = [b[0], b[1], b[2], b[3]];
                    if big_endian {
                        f32::from_be_bytes(b)
                    } else {
                        f32::from_le_bytes(b)
                    }
                }));
                check_unit_interval_at(
                    origin,
                    first_value,
                    out[start..].iter().map(|&v| f64::from(v)),
                )?;
            }
            Encoding::F64 { big_endian } => {
                let values: Vec<f64> = bytes
                    .chunks_exact(8)
                    .map(|b| {
                        let b = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
                        if big_endian {
                            f64::from_be_bytes(b)
                        } else {
                            f64::from_le_bytes(b)
                        }
                    })
                    .collect();
                // Checked in f64 so the error reports the stored value, not its f32 rounding.
                check_unit_interval_at(origin, first_value, values.iter().copied())?;
                out.extend(values.into_iter().map(|v| v as f32));
            }
        }
        Ok(())
    }
}

/// A run of fixed-size records in one file: record `k` starts at `offset + k * record_len`,
/// and its pixels are the `pixel_bytes` bytes after its first `skip` bytes (CIFAR-10's label).
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub(crate) file: Arc<StoredFile>,
    pub(crate) offset: u64,
    pub(crate) records: usize,
    pub(crate) record_len: usize,
    pub(crate) skip: usize,
}

/// The pixels of a file-backed dataset: segments in sample order, all of one encoding.
#[derive(Debug, Clone)]
pub(crate) struct RecordFiles {
    pub(crate) segments: Vec<Segment>,
    pub(crate) encoding: Encoding,
}

impl RecordFiles {
    fn records(&self) -> usize {
        self.segments.iter().map(|s| s.records).sum()
    }

    /// The stored bytes of the pixels of samples `range`, concatenated, in sample order.
    fn raw(&self, range: Range<usize>, pixel_bytes: usize) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity((range.end - range.start) * pixel_bytes);
        let mut first = 0;
        for segment in &self.segments {
            let segment_range = first..first + segment.records;
            first += segment.records;
            let start = range.start.max(segment_range.start);
            let end = range.end.min(segment_range.end);
            if start >= end {
                continue;
            }
            let local = start - segment_range.start;
            let n = end - start;
            let mut bytes = vec![0; n * segment.record_len];
            segment.file.read_exact_at(
                segment.offset + (local * segment.record_len) as u64,
                &mut bytes,
            )?;
            if segment.skip == 0 && segment.record_len == pixel_bytes {
                out.extend_from_slice(&bytes);
            } else {
                for record in bytes.chunks_exact(segment.record_len) {
                    out.extend_from_slice(&record[segment.skip..segment.skip + pixel_bytes]);
                }
            }
        }
        Ok(out)
    }

    /// The file that holds sample `index`, for error messages.
    fn origin_of(&self, index: usize) -> (String, usize) {
        let mut first = 0;
        for segment in &self.segments {
            if index < first + segment.records {
                return (
                    format!("`{}`", segment.file.path().display()),
                    index - first,
                );
            }
            first += segment.records;
        }
        ("dataset".to_string(), index)
    }
}

#[derive(Debug, Clone)]
struct FileBacked {
    name: String,
    shape: [usize; 3],
    class_names: Vec<String>,
    /// One per sample in the (limited) dataset; the files may hold more records.
    labels: Vec<u32>,
    pixels: RecordFiles,
}

impl FileBacked {
    fn sample_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Pixels of samples `range` in the representation the whole-file loader would hold.
    fn pixels(&self, range: Range<usize>) -> Result<Pixels> {
        let values = self.sample_len();
        let item = self.pixels.encoding.item_size();
        let raw = self.pixels.raw(range.clone(), values * item)?;
        if self.pixels.encoding == Encoding::U8 {
            return Ok(Pixels::U8(raw));
        }
        let mut out = Vec::with_capacity(raw.len() / item);
        // Decode sample by sample so that an error names the file and the value's index in it.
        for (k, bytes) in raw.chunks_exact(values * item).enumerate() {
            let (origin, local) = self.pixels.origin_of(range.start + k);
            self.pixels
                .encoding
                .decode(&origin, local * values, bytes, &mut out)?;
        }
        Ok(Pixels::F32(out))
    }
}

#[derive(Debug, Clone)]
enum Storage {
    Memory(InMemoryDataset),
    Files(FileBacked),
}

/// A labelled image dataset read from its files batch by batch (see the module docs), or held
/// in memory for formats that cannot be.
///
/// Cloning is cheap for a file-backed dataset: the open files are shared, the labels copied.
#[derive(Debug, Clone)]
pub struct StreamedDataset {
    storage: Storage,
}

impl From<InMemoryDataset> for StreamedDataset {
    fn from(dataset: InMemoryDataset) -> Self {
        Self {
            storage: Storage::Memory(dataset),
        }
    }
}

impl StreamedDataset {
    /// The one validating constructor of a file-backed dataset: the invariants of
    /// [`InMemoryDataset`], with the pixels in `pixels` instead of memory.
    pub(crate) fn from_files(
        origin: &str,
        name: String,
        shape: [usize; 3],
        class_names: Vec<String>,
        labels: Vec<u32>,
        pixels: RecordFiles,
    ) -> Result<Self> {
        checked_sample_len(origin, shape)?;
        if class_names.is_empty() {
            return Err(DatasetError::NoClasses {
                origin: origin.to_string(),
            });
        }
        let records = pixels.records();
        if records != labels.len() {
            let sample_len = shape.iter().product::<usize>();
            return Err(DatasetError::PixelCountMismatch {
                origin: origin.to_string(),
                samples: labels.len(),
                shape,
                expected: labels.len().saturating_mul(sample_len),
                actual: records.saturating_mul(sample_len),
            });
        }
        check_labels(origin, &labels, class_names.len())?;
        Ok(Self {
            storage: Storage::Files(FileBacked {
                name,
                shape,
                class_names,
                labels,
                pixels,
            }),
        })
    }

    /// Whether the pixels are read from files per batch (`false`: held in memory).
    pub fn is_streamed(&self) -> bool {
        matches!(self.storage, Storage::Files(_))
    }

    /// Whether a streamed dataset reads a decompressed copy of a gzipped file (in `$TMPDIR`).
    pub fn reads_decompressed_copy(&self) -> bool {
        match &self.storage {
            Storage::Files(files) => files
                .pixels
                .segments
                .iter()
                .any(|s| s.file.is_decompressed()),
            Storage::Memory(_) => false,
        }
    }

    /// Samples whose pixels are held in memory: all of them for an in-memory dataset, none
    /// for a streamed one (a batch reads its own).
    pub fn samples_in_memory(&self) -> usize {
        match &self.storage {
            Storage::Memory(dataset) => dataset.len(),
            Storage::Files(_) => 0,
        }
    }

    /// Keep only the first `n` samples (all of them if `n >= len()`), as
    /// [`InMemoryDataset::limit`]; nothing is read.
    #[must_use]
    pub fn limit(self, n: usize) -> Self {
        let storage = match self.storage {
            Storage::Memory(dataset) => Storage::Memory(dataset.limit(n)),
            Storage::Files(mut files) => {
                files.labels.truncate(n);
                Storage::Files(files)
            }
        };
        Self { storage }
    }

    /// The samples at `indices`, in that order (repeats allowed), read into memory; as
    /// [`InMemoryDataset::subset`].
    pub fn subset(&self, indices: &[usize]) -> Result<InMemoryDataset, DatasetError> {
        let files = match &self.storage {
            Storage::Memory(dataset) => return dataset.subset(indices),
            Storage::Files(files) => files,
        };
        let len = files.labels.len();
        if let Some(&index) = indices.iter().find(|&&i| i >= len) {
            return Err(DatasetError::IndexOutOfRange {
                dataset: files.name.clone(),
                index,
                len,
            });
        }
        // Consecutive indices are read as one run.
        let mut pixels: Option<Pixels> = None;
        let mut at = 0;
        while at < indices.len() {
            let mut end = at + 1;
            while end < indices.len() && indices[end] == indices[end - 1] + 1 {
                end += 1;
            }
            let run = files.pixels(indices[at]..indices[end - 1] + 1)?;
            pixels = Some(match (pixels, run) {
                (None, run) => run,
                (Some(Pixels::U8(mut all)), Pixels::U8(run)) => {
                    all.extend_from_slice(&run);
                    Pixels::U8(all)
                }
                (Some(Pixels::F32(mut all)), Pixels::F32(run)) => {
                    all.extend_from_slice(&run);
                    Pixels::F32(all)
                }
                // One encoding per dataset, so runs agree; keep both as f32 rather than fail.
                (Some(all), run) => Pixels::F32([all.into_f32(), run.into_f32()].concat()),
            });
            at = end;
        }
        let pixels = pixels.unwrap_or(match files.pixels.encoding {
            Encoding::U8 => Pixels::U8(Vec::new()),
            _ => Pixels::F32(Vec::new()),
        });
        let origin = format!("subset of dataset `{}`", files.name);
        InMemoryDataset::from_parts(
            &origin,
            files.name.clone(),
            files.shape,
            files.class_names.clone(),
            pixels,
            indices.iter().map(|&i| files.labels[i]).collect(),
        )
    }

    /// The whole dataset read into memory (what the whole-file loader returns).
    pub fn to_in_memory(&self) -> Result<InMemoryDataset, DatasetError> {
        match &self.storage {
            Storage::Memory(dataset) => Ok(dataset.clone()),
            Storage::Files(files) => {
                let indices: Vec<usize> = (0..files.labels.len()).collect();
                self.subset(&indices)
            }
        }
    }

    /// All labels, one per sample.
    pub fn labels(&self) -> &[u32] {
        match &self.storage {
            Storage::Memory(dataset) => dataset.labels(),
            Storage::Files(files) => &files.labels,
        }
    }

    /// Number of samples of each class, indexed by class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.class_names().len()];
        for &label in self.labels() {
            // In range by the construction invariant.
            if let Some(count) = counts.get_mut(label as usize) {
                *count += 1;
            }
        }
        counts
    }

    /// Number of classes (`class_names().len()`).
    pub fn num_classes(&self) -> usize {
        self.class_names().len()
    }
}

impl Dataset for StreamedDataset {
    fn name(&self) -> &str {
        match &self.storage {
            Storage::Memory(dataset) => dataset.name(),
            Storage::Files(files) => &files.name,
        }
    }

    fn len(&self) -> usize {
        self.labels().len()
    }

    fn sample_shape(&self) -> &[usize] {
        match &self.storage {
            Storage::Memory(dataset) => dataset.sample_shape(),
            Storage::Files(files) => &files.shape,
        }
    }

    fn class_names(&self) -> &[String] {
        match &self.storage {
            Storage::Memory(dataset) => dataset.class_names(),
            Storage::Files(files) => &files.class_names,
        }
    }

    fn batch(&self, range: Range<usize>, device: &Device) -> Result<Batch, DatasetError> {
        let files = match &self.storage {
            Storage::Memory(dataset) => return dataset.batch(range, device),
            Storage::Files(files) => files,
        };
        let len = files.labels.len();
        if range.start > range.end || range.end > len {
            return Err(DatasetError::BatchRange {
                dataset: files.name.clone(),
                start: range.start,
                end: range.end,
                len,
            });
        }
        let n = range.end - range.start;
        let inputs = files.pixels(range.clone())?.into_f32();
        let [c, h, w] = files.shape;
        let inputs = Tensor::from_vec(inputs, (n, c, h, w), device)?;
        let labels = Tensor::from_vec(files.labels[range].to_vec(), n, device)?;
        Ok(Batch { inputs, labels })
    }
}
