//! [`InMemoryDataset`]: every loader's output, and the type other crates build by hand.

use std::ops::Range;

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::{Batch, Dataset, DatasetError};

/// How the pixels are held. Loaders of 8-bit formats keep the bytes and scale them by 1/255
/// when a batch is built, which uses a quarter of the memory of f32 and loses nothing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Pixels {
    /// 0..=255, scaled by 1/255 on the fly.
    U8(Vec<u8>),
    /// Already in [0, 1] (checked at construction).
    F32(Vec<f32>),
}

impl Pixels {
    fn len(&self) -> usize {
        match self {
            Pixels::U8(v) => v.len(),
            Pixels::F32(v) => v.len(),
        }
    }

    /// Pixels `range` (in element units) as f32 in [0, 1], appended to `out`.
    fn extend_f32(&self, range: Range<usize>, out: &mut Vec<f32>) {
        match self {
            Pixels::U8(v) => out.extend(v[range].iter().map(|&b| f32::from(b) / 255.0)),
            Pixels::F32(v) => out.extend_from_slice(&v[range]),
        }
    }

    /// Every value as f32 in [0, 1] (the same scaling as [`Pixels::extend_f32`]).
    pub(crate) fn into_f32(self) -> Vec<f32> {
        match self {
            Pixels::U8(v) => v.iter().map(|&b| f32::from(b) / 255.0).collect(),
            Pixels::F32(v) => v,
        }
    }

    fn truncate(&mut self, len: usize) {
        match self {
            Pixels::U8(v) => v.truncate(len),
            Pixels::F32(v) => v.truncate(len),
        }
    }

    fn gather(&self, sample_len: usize, indices: &[usize]) -> Pixels {
        fn pick<T: Copy>(v: &[T], sample_len: usize, indices: &[usize]) -> Vec<T> {
            let mut out = Vec::with_capacity(indices.len() * sample_len);
            for &i in indices {
                out.extend_from_slice(&v[i * sample_len..(i + 1) * sample_len]);
            }
            out
        }
        match self {
            Pixels::U8(v) => Pixels::U8(pick(v, sample_len, indices)),
            Pixels::F32(v) => Pixels::F32(pick(v, sample_len, indices)),
        }
    }
}

/// A labelled image dataset held entirely in memory.
///
/// Invariants, checked by every constructor so that [`Dataset::batch`] can never fail on
/// content: the shape `[C, H, W]` has no zero and its product does not overflow; there is at
/// least one class; `pixels.len() == len() * C * H * W`; every label is below the number of
/// classes; f32 pixels are finite and in [0, 1].
///
/// ```
/// use gauntlet_datasets::{Dataset, InMemoryDataset};
/// let ds = InMemoryDataset::from_f32(
///     "two-pixels",
///     [1, 1, 2],
///     vec!["dark".into(), "light".into()],
///     vec![0.0, 0.1, 0.9, 1.0],
///     vec![0, 1],
/// )?;
/// let batch = ds.batch(0..2, &candle_core::Device::Cpu)?;
/// assert_eq!(batch.inputs.dims(), &[2, 1, 1, 2]);
/// assert_eq!(batch.labels.to_vec1::<u32>()?, vec![0, 1]);
/// # Ok::<(), gauntlet_datasets::DatasetError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct InMemoryDataset {
    name: String,
    shape: [usize; 3],
    class_names: Vec<String>,
    pixels: Pixels,
    labels: Vec<u32>,
}

impl InMemoryDataset {
    /// Build from f32 pixels in [0, 1], laid out sample-major then `C, H, W` (row-major).
    ///
    /// This is the constructor for data made in memory (poisoned or transformed copies);
    /// it rejects NaN, infinities and values outside [0, 1] rather than let an attack or a
    /// model see inputs outside the domain every other dataset guarantees.
    pub fn from_f32(
        name: impl Into<String>,
        shape: [usize; 3],
        class_names: Vec<String>,
        pixels: Vec<f32>,
        labels: Vec<u32>,
    ) -> Result<Self, DatasetError> {
        let name = name.into();
        let origin = format!("in-memory dataset `{name}`");
        Self::from_parts(
            &origin,
            name,
            shape,
            class_names,
            Pixels::F32(pixels),
            labels,
        )
    }

    /// Build from 8-bit pixels (0..=255, scaled by 1/255 when batched), same layout as
    /// [`InMemoryDataset::from_f32`].
    pub fn from_u8(
        name: impl Into<String>,
        shape: [usize; 3],
        class_names: Vec<String>,
        pixels: Vec<u8>,
        labels: Vec<u32>,
    ) -> Result<Self, DatasetError> {
        let name = name.into();
        let origin = format!("in-memory dataset `{name}`");
        Self::from_parts(
            &origin,
            name,
            shape,
            class_names,
            Pixels::U8(pixels),
            labels,
        )
    }

    /// The one validating constructor; `origin` names the file (or in-memory source) in errors.
    pub(crate) fn from_parts(
        origin: &str,
        name: String,
        shape: [usize; 3],
        class_names: Vec<String>,
        pixels: Pixels,
        labels: Vec<u32>,
    ) -> Result<Self> {
        let sample_len = checked_sample_len(origin, shape)?;
        if class_names.is_empty() {
            return Err(DatasetError::NoClasses {
                origin: origin.to_string(),
            });
        }
        let expected = labels.len().checked_mul(sample_len);
        if expected != Some(pixels.len()) {
            return Err(DatasetError::PixelCountMismatch {
                origin: origin.to_string(),
                samples: labels.len(),
                shape,
                expected: expected.unwrap_or(usize::MAX),
                actual: pixels.len(),
            });
        }
        check_labels(origin, &labels, class_names.len())?;
        if let Pixels::F32(values) = &pixels {
            check_unit_interval(origin, values.iter().map(|&v| f64::from(v)))?;
        }
        Ok(Self {
            name,
            shape,
            class_names,
            pixels,
            labels,
        })
    }

    /// Keep only the first `n` samples (all of them if `n >= len()`).
    ///
    /// Taking a prefix, not a random sample, keeps runs reproducible and comparable across
    /// tools that read the same file.
    #[must_use]
    pub fn limit(mut self, n: usize) -> Self {
        if n < self.labels.len() {
            self.labels.truncate(n);
            self.pixels.truncate(n * self.sample_len());
        }
        self
    }

    /// A new dataset holding the samples at `indices`, in that order (repeats allowed).
    /// Class names and the name are kept.
    pub fn subset(&self, indices: &[usize]) -> Result<Self, DatasetError> {
        let len = self.len();
        if let Some(&index) = indices.iter().find(|&&i| i >= len) {
            return Err(DatasetError::IndexOutOfRange {
                dataset: self.name.clone(),
                index,
                len,
            });
        }
        Ok(Self {
            name: self.name.clone(),
            shape: self.shape,
            class_names: self.class_names.clone(),
            pixels: self.pixels.gather(self.sample_len(), indices),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
        })
    }

    /// The same data under another name (names appear in reports).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The same data with other class names; every label must stay below their count.
    pub fn with_class_names(mut self, class_names: Vec<String>) -> Result<Self, DatasetError> {
        let origin = format!("dataset `{}`", self.name);
        if class_names.is_empty() {
            return Err(DatasetError::NoClasses { origin });
        }
        check_labels(&origin, &self.labels, class_names.len())?;
        self.class_names = class_names;
        Ok(self)
    }

    /// All labels, one per sample.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Number of classes (`class_names().len()`).
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Values per sample, `C * H * W`.
    pub fn sample_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The per-sample shape as an array `[C, H, W]`.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Number of samples of each class, indexed by class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.class_names.len()];
        for &label in &self.labels {
            // In range by the construction invariant.
            if let Some(count) = counts.get_mut(label as usize) {
                *count += 1;
            }
        }
        counts
    }

    /// One sample's pixels (f32 in [0, 1], `C * H * W` values) and label.
    pub fn sample(&self, index: usize) -> Option<(Vec<f32>, u32)> {
        let label = *self.labels.get(index)?;
        let n = self.sample_len();
        let mut pixels = Vec::with_capacity(n);
        self.pixels
            .extend_f32(index * n..(index + 1) * n, &mut pixels);
        Some((pixels, label))
    }

    /// All pixels as f32 in [0, 1], sample-major; the input to build a modified copy with
    /// [`InMemoryDataset::from_f32`].
    pub fn pixels_f32(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.pixels.len());
        self.pixels.extend_f32(0..self.pixels.len(), &mut out);
        out
    }

    /// The raw bytes when the dataset was loaded from an 8-bit format, else `None`.
    pub fn pixels_u8(&self) -> Option<&[u8]> {
        match &self.pixels {
            Pixels::U8(v) => Some(v),
            Pixels::F32(_) => None,
        }
    }
}

impl Dataset for InMemoryDataset {
    fn name(&self) -> &str {
        &self.name
    }

    fn len(&self) -> usize {
        self.labels.len()
    }

    fn sample_shape(&self) -> &[usize] {
        &self.shape
    }

    fn class_names(&self) -> &[String] {
        &self.class_names
    }

    fn batch(&self, range: Range<usize>, device: &Device) -> Result<Batch, DatasetError> {
        let len = self.len();
        if range.start > range.end || range.end > len {
            return Err(DatasetError::BatchRange {
                dataset: self.name.clone(),
                start: range.start,
                end: range.end,
                len,
            });
        }
        let n = range.end - range.start;
        let sample_len = self.sample_len();
        let mut inputs = Vec::with_capacity(n * sample_len);
        self.pixels.extend_f32(
            range.start * sample_len..range.end * sample_len,
            &mut inputs,
        );
        let [c, h, w] = self.shape;
        let inputs = Tensor::from_vec(inputs, (n, c, h, w), device)?;
        let labels = Tensor::from_vec(self.labels[range].to_vec(), n, device)?;
        Ok(Batch { inputs, labels })
    }
}

/// `C * H * W`, refusing zeros (a zero-sized sample is always a mistake) and overflow.
pub(crate) fn checked_sample_len(origin: &str, shape: [usize; 3]) -> Result<usize> {
    let invalid = |reason: &str| DatasetError::InvalidShape {
        origin: origin.to_string(),
        shape: shape.to_vec(),
        reason: reason.to_string(),
    };
    if shape.contains(&0) {
        return Err(invalid("every dimension of [C, H, W] must be at least 1"));
    }
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| invalid("C * H * W overflows"))
}

pub(crate) fn check_labels(origin: &str, labels: &[u32], num_classes: usize) -> Result<()> {
    match labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= num_classes)
    {
        Some((index, &label)) => Err(DatasetError::LabelOutOfRange {
            origin: origin.to_string(),
            index,
            label: i64::from(label),
            num_classes,
        }),
        None => Ok(()),
    }
}

/// Every value finite and in [0, 1]; the first offender is reported.
pub(crate) fn check_unit_interval(origin: &str, values: impl Iterator<Item = f64>) -> Result<()> {
    check_unit_interval_at(origin, 0, values)
}

/// [`check_unit_interval`] for values that start at index `first` of `origin`'s values.
pub(crate) fn check_unit_interval_at(
    origin: &str,
    first: usize,
    values: impl Iterator<Item = f64>,
) -> Result<()> {
    for (index, value) in values.enumerate() {
        let index = first + index;
        if !value.is_finite() {
            return Err(DatasetError::NonFinitePixel {
                origin: origin.to_string(),
                index,
                value,
            });
        }
        if !(0.0..=1.0).contains(&value) {
            return Err(DatasetError::PixelOutOfRange {
                origin: origin.to_string(),
                index,
                value,
            });
        }
    }
    Ok(())
}

/// The most classes [`numeric_class_names`] will invent; a larger label without explicit
/// class names is far more likely a corrupt file than a real 100k-class problem.
pub(crate) const MAX_INFERRED_CLASSES: usize = 65_536;

/// Class names `"0"`, `"1"`, … up to the largest label, for formats that carry none.
///
/// A prefix or subset that lacks the top classes gets fewer classes than the full set;
/// callers that know the class list should pass it instead.
pub(crate) fn numeric_class_names(origin: &str, labels: &[u32]) -> Result<Vec<String>> {
    let (index, max) = labels
        .iter()
        .copied()
        .enumerate()
        .max_by_key(|&(_, l)| l)
        .ok_or_else(|| DatasetError::NoClasses {
            origin: origin.to_string(),
        })?;
    if max as usize >= MAX_INFERRED_CLASSES {
        return Err(DatasetError::LabelOutOfRange {
            origin: format!("{origin} (no class names given, so at most {MAX_INFERRED_CLASSES} classes are inferred)"),
            index,
            label: i64::from(max),
            num_classes: MAX_INFERRED_CLASSES,
        });
    }
    Ok((0..=max).map(|c| c.to_string()).collect())
}
