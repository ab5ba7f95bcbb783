//! A labelled image set held as plain `f32` pixels, the unit the poisonings and trigger scans
//! work on.
//!
//! Poisoning rewrites individual pixels and labels of a training set, and the scans stamp
//! triggers on a few hundred inputs; both are simpler and exactly testable on a flat
//! `Vec<f32>` than through tensor ops, and the conversion to the `(n, C, H, W)` tensors that
//! [`gauntlet_models::train()`] and [`gauntlet_models::Model`] take is one copy.

use candle_core::{DType, Device, Tensor};

use crate::AttackError;

/// Images `(n, C, H, W)` with values in [0, 1] and one class label each.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    shape: [usize; 3],
    pixels: Vec<f32>,
    labels: Vec<u32>,
    num_classes: usize,
}

impl ImageSet {
    /// A set of `labels.len()` images of `shape` `[C, H, W]`, stored sample-major in `pixels`.
    ///
    /// Errors name what is wrong: a pixel count that is not `n·C·H·W`, a value outside [0, 1]
    /// (or NaN), a label that is not below `num_classes`.
    pub fn new(
        shape: [usize; 3],
        pixels: Vec<f32>,
        labels: Vec<u32>,
        num_classes: usize,
    ) -> Result<Self, AttackError> {
        let sample_len: usize = shape.iter().product();
        if sample_len == 0 {
            return Err(AttackError::invalid_parameter(
                "image_shape",
                format!("every dimension of an image must be ≥ 1, got {shape:?}"),
            ));
        }
        if num_classes == 0 {
            return Err(AttackError::invalid_parameter(
                "num_classes",
                "a classifier has at least one class, got 0",
            ));
        }
        if pixels.len() != labels.len() * sample_len {
            return Err(AttackError::ShapeMismatch {
                what: "pixels of an image set",
                expected: vec![labels.len(), shape[0], shape[1], shape[2]],
                actual: vec![pixels.len()],
            });
        }
        check_unit_interval(&pixels)?;
        if let Some((sample, &label)) = labels
            .iter()
            .enumerate()
            .find(|(_, &label)| label as usize >= num_classes)
        {
            return Err(AttackError::LabelOutOfRange {
                sample,
                label,
                num_classes,
            });
        }
        Ok(Self {
            shape,
            pixels,
            labels,
            num_classes,
        })
    }

    /// The set held by `inputs` `(n, C, H, W)` (f32, values in [0, 1]) and `labels` `(n,)`.
    pub fn from_tensors(
        inputs: &Tensor,
        labels: &Tensor,
        num_classes: usize,
    ) -> Result<Self, AttackError> {
        let (count, channels, height, width) = inputs.dims4()?;
        if inputs.dtype() != DType::F32 {
            return Err(AttackError::InputDtype {
                dtype: inputs.dtype(),
            });
        }
        if labels.dims() != [count] {
            return Err(AttackError::ShapeMismatch {
                what: "labels vs inputs",
                expected: vec![count],
                actual: labels.dims().to_vec(),
            });
        }
        let pixels = inputs.flatten_all()?.to_vec1::<f32>()?;
        let labels = labels.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        Self::new([channels, height, width], pixels, labels, num_classes)
    }

    /// Per-image shape `[C, H, W]`.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Number of values per image, `C·H·W`.
    pub fn sample_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set has no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes the labels range over.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// All pixels, sample-major.
    pub fn pixels(&self) -> &[f32] {
        &self.pixels
    }

    /// The labels, one per image.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// The pixels of image `index`.
    ///
    /// # Panics
    /// If `index` is not below [`ImageSet::len`].
    pub fn image(&self, index: usize) -> &[f32] {
        let len = self.sample_len();
        &self.pixels[index * len..(index + 1) * len]
    }

    /// Image `index` and its label, mutably (for the poisonings).
    pub(crate) fn sample_mut(&mut self, index: usize) -> (&mut [f32], &mut u32) {
        let len = self.sample_len();
        (
            &mut self.pixels[index * len..(index + 1) * len],
            &mut self.labels[index],
        )
    }

    /// Number of images of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &label in &self.labels {
            counts[label as usize] += 1;
        }
        counts
    }

    /// The images at `indices`, in that order.
    ///
    /// # Panics
    /// If an index is not below [`ImageSet::len`].
    pub fn subset(&self, indices: &[usize]) -> Self {
        let mut pixels = Vec::with_capacity(indices.len() * self.sample_len());
        for &index in indices {
            pixels.extend_from_slice(self.image(index));
        }
        Self {
            shape: self.shape,
            pixels,
            labels: indices.iter().map(|&index| self.labels[index]).collect(),
            num_classes: self.num_classes,
        }
    }

    /// The images as a `(n, C, H, W)` f32 tensor on `device`.
    pub fn inputs(&self, device: &Device) -> Result<Tensor, AttackError> {
        let [channels, height, width] = self.shape;
        Ok(Tensor::from_slice(
            &self.pixels,
            (self.len(), channels, height, width),
            device,
        )?)
    }

    /// The labels as a `(n,)` u32 tensor on `device`.
    pub fn label_tensor(&self, device: &Device) -> Result<Tensor, AttackError> {
        Ok(Tensor::from_slice(&self.labels, self.len(), device)?)
    }
}

/// Every value in [0, 1] (and none NaN), or [`AttackError::InputOutOfRange`].
pub(crate) fn check_unit_interval(values: &[f32]) -> Result<(), AttackError> {
    let outside: Vec<f32> = values
        .iter()
        .copied()
        .filter(|value| !(0.0..=1.0).contains(value))
        .collect();
    if outside.is_empty() {
        return Ok(());
    }
    let min = outside.iter().copied().fold(f32::INFINITY, f32::min);
    let max = outside.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    Err(AttackError::InputOutOfRange {
        count: outside.len(),
        min,
        max,
    })
}

/// The model's predicted class for every image of `images`, `batch_size` at a time.
pub fn predictions(
    model: &dyn gauntlet_models::Model,
    images: &ImageSet,
    batch_size: usize,
) -> Result<Vec<u32>, AttackError> {
    let batch_size = batch_size.max(1);
    let mut predicted = Vec::with_capacity(images.len());
    let indices: Vec<usize> = (0..images.len()).collect();
    for chunk in indices.chunks(batch_size) {
        let inputs = images.subset(chunk).inputs(model.device())?;
        predicted.extend(model.predict(&inputs)?.to_vec1::<u32>()?);
    }
    Ok(predicted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_sets_are_errors_naming_the_problem() {
        let error = ImageSet::new([1, 2, 2], vec![0.0; 7], vec![0, 1], 2).unwrap_err();
        assert!(
            matches!(error, AttackError::ShapeMismatch { .. }),
            "{error}"
        );
        let error = ImageSet::new([1, 1, 1], vec![0.5, 1.5], vec![0, 1], 2).unwrap_err();
        assert!(
            matches!(error, AttackError::InputOutOfRange { count: 1, .. }),
            "{error}"
        );
        let error = ImageSet::new([1, 1, 1], vec![0.5, 0.5], vec![0, 2], 2).unwrap_err();
        assert!(
            matches!(error, AttackError::LabelOutOfRange { sample: 1, .. }),
            "{error}"
        );
        let error = ImageSet::new([1, 0, 1], vec![], vec![], 2).unwrap_err();
        assert!(error.to_string().contains("image_shape"), "{error}");
    }

    #[test]
    fn subsets_and_tensors_keep_pixels_and_labels_together() {
        let set = ImageSet::new(
            [1, 1, 2],
            vec![0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
            vec![0, 1, 2],
            3,
        )
        .unwrap();
        let picked = set.subset(&[2, 0]);
        assert_eq!(picked.pixels(), &[0.4, 0.5, 0.0, 0.1]);
        assert_eq!(picked.labels(), &[2, 0]);
        assert_eq!(set.class_counts(), vec![1, 1, 1]);
        let round_trip = ImageSet::from_tensors(
            &set.inputs(&Device::Cpu).unwrap(),
            &set.label_tensor(&Device::Cpu).unwrap(),
            3,
        )
        .unwrap();
        assert_eq!(round_trip, set);
    }
}
