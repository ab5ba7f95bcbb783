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
use crate::spec::ModelCost;
use crate::{ModelError, ShapeMismatch};

/// The tensors of a safetensors file, handed out by name while a network is built.
///
/// [`TensorTable::check`] compares the file's header with the tensors a spec needs before any
/// tensor's data is converted, and lists every missing, unexpected and mis-shaped tensor (and
/// refuses non-float dtypes) in one error. Building then asks for each tensor by name; there
/// is no stand-in: a tensor the table cannot hand out is an error naming it.
pub(crate) struct TensorTable<'a> {
    views: BTreeMap<String, TensorView<'a>>,
    device: Device,
}

impl<'a> TensorTable<'a> {
    pub(crate) fn parse(bytes: &'a [u8], device: &Device) -> Result<Self, ModelError> {
        let file = SafeTensors::deserialize(bytes)
            .map_err(|source| ModelError::SafetensorsFormat { source })?;
        Ok(Self {
            views: file.tensors().into_iter().collect(),
            device: device.clone(),
        })
    }

    /// Checks the header against what the spec needs: every structural problem in one
    /// [`ModelError::Weights`], then the first tensor of a non-float dtype. Reads no data.
    pub(crate) fn check(&self, cost: &ModelCost) -> Result<(), ModelError> {
        let mut missing = Vec::new();
        let mut mismatched = Vec::new();
        for expected in &cost.tensors {
            match self.views.get(&expected.name) {
                None => missing.push(expected.name.clone()),
                Some(view) if view.shape() != expected.shape.as_slice() => {
                    mismatched.push(ShapeMismatch {
                        tensor: expected.name.clone(),
                        expected: expected.shape.clone(),
                        got: view.shape().to_vec(),
                    })
                }
                Some(_) => {}
            }
        }
        let unexpected: Vec<(String, Vec<usize>)> = self
            .views
            .iter()
            .filter(|(name, _)| {
                !cost.tensors.iter().any(|t| &t.name == *name)
                    && !cost.optional_tensors.contains(name)
            })
            .map(|(name, view)| (name.clone(), view.shape().to_vec()))
            .collect();
        if !missing.is_empty() || !unexpected.is_empty() || !mismatched.is_empty() {
            return Err(ModelError::Weights {
                missing,
                unexpected,
                mismatched,
            });
        }
        for expected in &cost.tensors {
            if let Some(view) = self.views.get(&expected.name) {
                check_float_dtype(&expected.name, view)?;
            }
        }
        Ok(())
    }
}

impl ParamSource for TensorTable<'_> {
    fn tensor(&mut self, name: &str, shape: &[usize], _init: Init) -> Result<Tensor, ModelError> {
        let Some(view) = self.views.remove(name) else {
            return Err(ModelError::Weights {
                missing: vec![name.to_string()],
                unexpected: Vec::new(),
                mismatched: Vec::new(),
            });
        };
        if view.shape() != shape {
            return Err(ModelError::Weights {
                missing: Vec::new(),
                unexpected: Vec::new(),
                mismatched: vec![ShapeMismatch {
                    tensor: name.to_string(),
                    expected: shape.to_vec(),
                    got: view.shape().to_vec(),
                }],
            });
        }
        load_float_tensor(name, &view, &self.device)
    }

    fn optional_count(&mut self, name: &str) -> Option<i64> {
        let view = self.views.remove(name)?;
        // PyTorch writes an int64 scalar; anything else is accepted and ignored.
        if crate::spec::checked_product(view.shape()) != Some(1) {
            return None;
        }
        let tensor = view.load(&Device::Cpu).ok()?;
        tensor
            .flatten_all()
            .and_then(|t| t.to_dtype(DType::F64))
            .and_then(|t| t.to_vec1::<f64>())
            .ok()
            .and_then(|values| values.first().map(|&v| v as i64))
    }
}

fn check_float_dtype(name: &str, view: &TensorView<'_>) -> Result<(), ModelError> {
    use safetensors::Dtype;
    if matches!(
        view.dtype(),
        Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64
    ) {
        Ok(())
    } else {
        Err(ModelError::UnsupportedTensorDtype {
            tensor: name.to_string(),
            dtype: format!("{:?}", view.dtype()),
        })
    }
}

/// Loads one stored tensor as f32 on `device`, refusing non-float dtypes and non-finite values.
fn load_float_tensor(
    name: &str,
    view: &TensorView<'_>,
    device: &Device,
) -> Result<Tensor, ModelError> {
    check_float_dtype(name, view)?;
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
