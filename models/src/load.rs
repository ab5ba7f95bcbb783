//! Safetensors weights: strict loading (every problem reported at once) and saving.
//!
//! The bytes are parsed with the `safetensors` crate and each tensor converted with candle's
//! `Load`; nothing is memory-mapped (that would need `unsafe`).

use std::collections::{BTreeMap, HashMap};

use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use safetensors::tensor::TensorView;
use safetensors::SafeTensors;

use crate::params::{Init, ParamSource};
use crate::{ModelError, ShapeMismatch};

/// The tensors of a safetensors file, handed out by name while a network is built.
///
/// Problems are collected rather than returned at once, so [`TensorTable::finish`] can list
/// every missing, unexpected and mis-shaped tensor in one error. A tensor that is missing
/// or mis-shaped is replaced by zeros of the expected shape to let the build go on.
pub(crate) struct TensorTable<'a> {
    views: BTreeMap<String, TensorView<'a>>,
    device: Device,
    missing: Vec<String>,
    mismatched: Vec<ShapeMismatch>,
    /// The first per-tensor failure (bad dtype, non-finite value, unreadable data).
    first_failure: Option<ModelError>,
}

impl<'a> TensorTable<'a> {
    pub(crate) fn parse(bytes: &'a [u8], device: &Device) -> Result<Self, ModelError> {
        let file = SafeTensors::deserialize(bytes)
            .map_err(|source| ModelError::SafetensorsFormat { source })?;
        Ok(Self {
            views: file.tensors().into_iter().collect(),
            device: device.clone(),
            missing: Vec::new(),
            mismatched: Vec::new(),
            first_failure: None,
        })
    }

    /// Reports every structural problem in one [`ModelError::Weights`], then the first
    /// per-tensor failure.
    pub(crate) fn finish(self) -> Result<(), ModelError> {
        let unexpected: Vec<(String, Vec<usize>)> = self
            .views
            .iter()
            .map(|(name, view)| (name.clone(), view.shape().to_vec()))
            .collect();
        if !self.missing.is_empty() || !unexpected.is_empty() || !self.mismatched.is_empty() {
            return Err(ModelError::Weights {
                missing: self.missing,
                unexpected,
                mismatched: self.mismatched,
            });
        }
        match self.first_failure {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }

    fn placeholder(&self, shape: &[usize]) -> Result<Tensor, ModelError> {
        Ok(Tensor::zeros(shape, DType::F32, &self.device)?)
    }

    fn record(&mut self, failure: ModelError) {
        if self.first_failure.is_none() {
            self.first_failure = Some(failure);
        }
    }
}

impl ParamSource for TensorTable<'_> {
    fn tensor(&mut self, name: &str, shape: &[usize], _init: Init) -> Result<Tensor, ModelError> {
        let Some(view) = self.views.remove(name) else {
            self.missing.push(name.to_string());
            return self.placeholder(shape);
        };
        if view.shape() != shape {
            self.mismatched.push(ShapeMismatch {
                tensor: name.to_string(),
                expected: shape.to_vec(),
                got: view.shape().to_vec(),
            });
            return self.placeholder(shape);
        }
        match load_float_tensor(name, &view, &self.device) {
            Ok(tensor) => Ok(tensor),
            Err(failure) => {
                self.record(failure);
                self.placeholder(shape)
            }
        }
    }

    fn optional_count(&mut self, name: &str) -> Option<i64> {
        let view = self.views.remove(name)?;
        // PyTorch writes an int64 scalar; anything else is accepted and ignored.
        let tensor = view.load(&Device::Cpu).ok()?;
        tensor
            .flatten_all()
            .and_then(|t| t.to_dtype(DType::F64))
            .and_then(|t| t.to_vec1::<f64>())
            .ok()
            .and_then(|values| values.first().map(|&v| v as i64))
    }
}

/// Loads one stored tensor as f32 on `device`, refusing non-float dtypes and non-finite values.
fn load_float_tensor(
    name: &str,
    view: &TensorView<'_>,
    device: &Device,
) -> Result<Tensor, ModelError> {
    use safetensors::Dtype;
    if !matches!(
        view.dtype(),
        Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64
    ) {
        return Err(ModelError::UnsupportedTensorDtype {
            tensor: name.to_string(),
            dtype: format!("{:?}", view.dtype()),
        });
    }
    let with_context = |source| ModelError::TensorLoad {
        tensor: name.to_string(),
        source,
    };
    let host = view
        .load(&Device::Cpu)
        .and_then(|t| t.to_dtype(DType::F32))
        .map_err(with_context)?;
    let values: Vec<f32> = host
        .flatten_all()
        .and_then(|t| t.to_vec1())
        .map_err(with_context)?;
    if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(ModelError::NonFiniteWeight {
            tensor: name.to_string(),
            index,
            value: f64::from(value),
        });
    }
    host.to_device(device).map_err(with_context)
}

/// Serialises named tensors as safetensors bytes: float tensors as f32, counts as i64.
pub(crate) fn to_safetensors_bytes(
    floats: Vec<(String, Tensor)>,
    counts: Vec<(String, i64)>,
) -> Result<Vec<u8>, ModelError> {
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (name, tensor) in floats {
        let host = tensor
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .contiguous()?;
        tensors.insert(name, host);
    }
    for (name, count) in counts {
        tensors.insert(name, Tensor::new(count, &Device::Cpu)?);
    }
    let mut ordered: Vec<(String, Tensor)> = tensors.into_iter().collect();
    ordered.sort_by(|a, b| a.0.cmp(&b.0));
    safetensors::serialize(ordered, None).map_err(|source| ModelError::SafetensorsFormat { source })
}
