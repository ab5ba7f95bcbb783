//! TorchScript models (`torch.jit.trace`/`torch.jit.script` + `torch.jit.save`) run by
//! libtorch through `tch`; compiled only with the `torch` feature (docs/models.md has the
//! build).
//!
//! A TorchScript archive is code (`code/`) plus pickles (`data.pkl`, `constants.pkl`), so the
//! bytes first go through gauntlet's static scanner, exactly as a PyTorch checkpoint does;
//! any high or critical finding refuses the file and libtorch never sees it. The same bytes
//! that were scanned are then handed to libtorch (never the path: the file could change in
//! between), the module is put in eval mode and its parameters stop tracking gradients.
//!
//! Logits come from libtorch with gradients off. For the input gradient the forward pass
//! runs with the input alone tracking gradients; gauntlet's own [`Loss`] (candle) gives the
//! per-sample loss and `g = ∂Σloss/∂logits` on the `(batch, classes)` logits, and libtorch's
//! backward of `Σ (logits ⊙ g)` carries it to the input (the chain rule as a vector-Jacobian
//! product). Every loss — cross-entropy, CW margin, DLR and targeted DLR — therefore means
//! exactly what it means for a native model.
//!
//! TorchScript declares neither the input shape nor the classes: the caller gives the
//! per-sample input shape, and one forward pass on a zero batch checks it and reads the
//! number of classes from the logits.

use crate::{
    InputGradient, KernelPath, Loss, Model, ModelCapabilities, ModelError, ModelFormat, ModelInfo,
};
use candle_core::{DType, Device, Tensor, Var};

/// A TorchScript module on libtorch's CPU backend, behind gauntlet's [`Model`] trait.
///
/// Inputs and outputs are candle tensors on the CPU; the model computes in f32 unless
/// [`TorchScriptModel::to_dtype`] made it f64 (for tight finite-difference checks).
#[derive(Debug)]
pub struct TorchScriptModel {
    module: tch::CModule,
    /// The archive's bytes, kept to make an f64 copy without reading the file again.
    bytes: Vec<u8>,
    name: String,
    input_shape: Vec<usize>,
    num_classes: usize,
    dtype: DType,
    parameters: u64,
    source: Option<String>,
}

/// A libtorch error as a [`ModelError::TorchScript`], with what gauntlet was doing.
fn torch_error(doing: &str) -> impl Fn(tch::TchError) -> ModelError + '_ {
    move |error| ModelError::TorchScript {
        reason: format!("{doing}: {error}"),
    }
}

fn kind_of(dtype: DType) -> Result<tch::Kind, ModelError> {
    match dtype {
        DType::F32 => Ok(tch::Kind::Float),
        DType::F64 => Ok(tch::Kind::Double),
        other => Err(ModelError::TorchScript {
            reason: format!("a TorchScript model runs in f32 or f64, not {other:?}"),
        }),
    }
}

/// The parameters a TorchScript archive holds (name, shape, dtype), read by libtorch after the
/// scanner passed the archive: for `gauntlet inspect`, which has no input shape to run it with.
pub fn archive_parameters(
    bytes: &[u8],
    name: &str,
) -> Result<Vec<crate::describe::StoredTensor>, ModelError> {
    let refused = crate::checkpoint::scanner_refusals(bytes, name);
    if !refused.is_empty() {
        return Err(ModelError::UnsafeTorchScript { findings: refused });
    }
    let module = load_module(bytes, DType::F32)?;
    Ok(module
        .named_parameters()
        .map_err(torch_error("cannot list the module's parameters"))?
        .into_iter()
        .map(|(name, tensor)| crate::describe::StoredTensor {
            name,
            shape: tensor.size().iter().map(|&d| d as usize).collect(),
            // A kind tch has no name for (a quantized type, say) is shown, not a panic.
            dtype: tensor.f_kind().map_or_else(
                |_| "unknown".to_string(),
                |kind| format!("{kind:?}").to_lowercase(),
            ),
        })
        .collect())
}

impl TorchScriptModel {
    /// Scans `bytes` (a `torch.jit.save` archive named `name` in messages), refuses it on any
    /// high or critical finding ([`ModelError::UnsafeTorchScript`]), then loads it into
    /// libtorch and runs one forward pass on a zero batch of `input_shape` (per sample, e.g.
    /// `[1, 28, 28]`) to check that the module takes such inputs and returns 2-D logits.
    pub fn from_bytes(bytes: &[u8], name: &str, input_shape: &[usize]) -> Result<Self, ModelError> {
        let refused = crate::checkpoint::scanner_refusals(bytes, name);
        if !refused.is_empty() {
            return Err(ModelError::UnsafeTorchScript { findings: refused });
        }
        if input_shape.is_empty() || input_shape.contains(&0) {
            return Err(ModelError::TorchScript {
                reason: format!(
                    "the input shape {input_shape:?} is not a per-sample shape (every size ≥ 1)"
                ),
            });
        }
        let module = load_module(bytes, DType::F32)?;
        let parameters = module
            .named_parameters()
            .map_err(torch_error("cannot list the module's parameters"))?
            .iter()
            .map(|(_, tensor)| tensor.numel() as u64)
            .sum();
        let stem = std::path::Path::new(name)
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .filter(|stem| !stem.is_empty())
            .unwrap_or_else(|| "torchscript".to_string());
        let mut model = Self {
            module,
            bytes: bytes.to_vec(),
            name: stem,
            input_shape: input_shape.to_vec(),
            num_classes: 0,
            dtype: DType::F32,
            parameters,
            source: None,
        };
        let mut shape = vec![1];
        shape.extend_from_slice(input_shape);
        let zeros = Tensor::zeros(shape, DType::F32, &Device::Cpu)?;
        let logits = model
            .forward(&zeros)
            .map_err(|error| ModelError::TorchScript {
                reason: format!(
                    "a forward pass on one zero input of shape {input_shape:?} failed \
                 (is that the model's input shape?): {error}"
                ),
            })?;
        model.num_classes = logits.dims2()?.1;
        if model.num_classes == 0 {
            return Err(ModelError::TorchScript {
                reason: "the module returns logits with no classes".to_string(),
            });
        }
        Ok(model)
    }

    /// [`TorchScriptModel::from_bytes`] on a file read through gauntlet's bounded reader.
    pub fn from_file(path: &std::path::Path, input_shape: &[usize]) -> Result<Self, ModelError> {
        let bytes = gauntlet_files::read_bounded(path, gauntlet_files::limits::WEIGHTS)?;
        Ok(
            Self::from_bytes(&bytes, &path.display().to_string(), input_shape)?
                .with_source(path.display().to_string()),
        )
    }

    /// Records where the model came from, for [`Model::info`].
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The same module computing in `dtype` (f32 or f64): libtorch converts its parameters
    /// and buffers, and inputs are converted to `dtype` on the way in.
    pub fn to_dtype(&self, dtype: DType) -> Result<Self, ModelError> {
        Ok(Self {
            module: load_module(&self.bytes, dtype)?,
            bytes: self.bytes.clone(),
            name: self.name.clone(),
            input_shape: self.input_shape.clone(),
            num_classes: self.num_classes,
            dtype,
            parameters: self.parameters,
            source: self.source.clone(),
        })
    }

    /// Number of values in the module's parameters (buffers such as batch-norm statistics
    /// are not counted, as in PyTorch's `sum(p.numel() for p in model.parameters())`).
    pub fn parameter_count(&self) -> u64 {
        self.parameters
    }

    /// Checks the per-sample shape of `inputs` and copies them into a libtorch tensor of the
    /// model's dtype.
    fn to_torch(&self, inputs: &Tensor) -> Result<tch::Tensor, ModelError> {
        let dims = inputs.dims();
        if dims.len() != self.input_shape.len() + 1 || dims[1..] != self.input_shape[..] {
            return Err(ModelError::InputShape {
                expected: self.input_shape.clone(),
                got: dims.to_vec(),
            });
        }
        self.to_torch_any(inputs)
    }

    /// Copies a libtorch tensor back into a candle CPU tensor of the model's dtype.
    fn to_candle(&self, tensor: &tch::Tensor, what: &str) -> Result<Tensor, ModelError> {
        let shape: Vec<usize> = tensor.size().iter().map(|&d| d as usize).collect();
        let flat = tensor
            .f_detach()
            .and_then(|t| t.f_contiguous())
            .and_then(|t| t.f_reshape([-1]))
            .map_err(torch_error(what))?;
        let result = match self.dtype {
            DType::F64 => {
                let values = flat
                    .f_to_kind(tch::Kind::Double)
                    .and_then(|t| Vec::<f64>::try_from(&t))
                    .map_err(torch_error(what))?;
                Tensor::from_vec(values, shape, &Device::Cpu)?
            }
            _ => {
                let values = flat
                    .f_to_kind(tch::Kind::Float)
                    .and_then(|t| Vec::<f32>::try_from(&t))
                    .map_err(torch_error(what))?;
                Tensor::from_vec(values, shape, &Device::Cpu)?
            }
        };
        Ok(result)
    }

    /// The module's output for `input`, which must be one tensor of shape `(batch, classes)`.
    fn logits(&self, input: &tch::Tensor, batch: usize) -> Result<tch::Tensor, ModelError> {
        let logits = self
            .module
            .forward_ts(&[input])
            .map_err(torch_error("the TorchScript forward pass failed"))?;
        let size = logits.size();
        let expected_classes = if self.num_classes == 0 {
            size.get(1).copied().unwrap_or(0)
        } else {
            self.num_classes as i64
        };
        if size != [batch as i64, expected_classes] {
            return Err(ModelError::TorchScript {
                reason: format!(
                    "the module returned a tensor of shape {size:?} for a batch of {batch}; \
                     expected logits of shape [{batch}, classes]{}",
                    if self.num_classes == 0 {
                        String::new()
                    } else {
                        format!(" with {} classes", self.num_classes)
                    }
                ),
            });
        }
        Ok(logits)
    }
}

/// Loads the archive into libtorch in eval mode, on the CPU in `dtype`, with every parameter
/// no longer tracking gradients (only the input's graph is walked by an attack's backward).
fn load_module(bytes: &[u8], dtype: DType) -> Result<tch::CModule, ModelError> {
    let kind = kind_of(dtype)?;
    let mut reader = std::io::Cursor::new(bytes);
    let mut module = tch::CModule::load_data_on_device(&mut reader, tch::Device::Cpu)
        .map_err(torch_error("libtorch cannot load the TorchScript archive"))?;
    module
        .f_set_eval()
        .map_err(torch_error("cannot put the module in eval mode"))?;
    if kind != tch::Kind::Float {
        module.to(tch::Device::Cpu, kind, false);
    }
    for (name, parameter) in module
        .named_parameters()
        .map_err(torch_error("cannot list the module's parameters"))?
    {
        // In place on the shared tensor; the returned handle is the same parameter.
        let _frozen =
            parameter
                .f_set_requires_grad(false)
                .map_err(|error| ModelError::TorchScript {
                    reason: format!("cannot freeze parameter `{name}`: {error}"),
                })?;
    }
    Ok(module)
}

impl Model for TorchScriptModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn device(&self) -> &Device {
        &Device::Cpu
    }

    fn forward(&self, inputs: &Tensor) -> Result<Tensor, ModelError> {
        let batch = inputs.dims().first().copied().unwrap_or(0);
        let input = self.to_torch(inputs)?;
        let logits = tch::no_grad(|| self.logits(&input, batch))?;
        self.to_candle(&logits, "cannot copy the logits out of libtorch")
    }

    fn loss_and_input_gradient(
        &self,
        inputs: &Tensor,
        labels: &Tensor,
        loss: Loss,
    ) -> Result<InputGradient, ModelError> {
        let batch = inputs.dims().first().copied().unwrap_or(0);
        let input = self
            .to_torch(inputs)?
            .f_set_requires_grad(true)
            .map_err(torch_error("cannot track the input's gradient"))?;
        let torch_logits = self.logits(&input, batch)?;
        // gauntlet's loss on a copy of the logits gives the loss and ∂Σloss/∂logits.
        let logits = Var::from_tensor(
            &self.to_candle(&torch_logits, "cannot copy the logits out of libtorch")?,
        )?;
        let per_sample = loss.per_sample(logits.as_tensor(), labels)?;
        let grads = per_sample.sum_all()?.backward()?;
        let logit_gradient = grads
            .get(logits.as_tensor())
            .cloned()
            .ok_or(ModelError::NoInputGradient)?;
        // libtorch carries it to the input: ∂/∂x Σ logits ⊙ g = Jᵀ g.
        let g = self.to_torch_any(&logit_gradient)?;
        let surrogate = torch_logits
            .f_mul(&g)
            .and_then(|t| t.f_sum(None::<tch::Kind>))
            .map_err(torch_error("cannot form the backward pass"))?;
        let gradient = tch::Tensor::f_run_backward(&[&surrogate], &[&input], false, false)
            .map_err(torch_error("the libtorch backward pass failed"))?
            .into_iter()
            .next()
            .ok_or(ModelError::NoInputGradient)?;
        if !gradient.defined() {
            return Err(ModelError::NoInputGradient);
        }
        Ok(InputGradient {
            loss: per_sample.detach(),
            gradient: self
                .to_candle(&gradient, "cannot copy the input gradient out of libtorch")?,
            logits: logits.as_tensor().detach(),
        })
    }

    fn capabilities(&self) -> ModelCapabilities {
        // Input gradients through libtorch; a TorchScript module names no feature layers.
        ModelCapabilities {
            input_gradients: true,
            features: Vec::new(),
        }
    }

    fn info(&self) -> ModelInfo {
        ModelInfo {
            name: self.name.clone(),
            architecture: None,
            format: ModelFormat::TorchScript,
            source: self.source.clone(),
            class_names: None,
            parameters: Some(self.parameters),
            input_shape: self.input_shape.clone(),
            num_classes: self.num_classes,
        }
    }

    fn kernel_path(&self) -> KernelPath {
        KernelPath::Libtorch
    }
}

impl TorchScriptModel {
    /// A candle tensor of any shape as a libtorch tensor of the model's dtype.
    fn to_torch_any(&self, tensor: &Tensor) -> Result<tch::Tensor, ModelError> {
        let shape: Vec<i64> = tensor.dims().iter().map(|&d| d as i64).collect();
        let tensor = tensor.to_device(&Device::Cpu)?;
        match self.dtype {
            DType::F64 => tch::Tensor::f_from_slice(
                &tensor
                    .to_dtype(DType::F64)?
                    .flatten_all()?
                    .to_vec1::<f64>()?,
            ),
            _ => tch::Tensor::f_from_slice(
                &tensor
                    .to_dtype(DType::F32)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            ),
        }
        .and_then(|t| t.f_reshape(shape.as_slice()))
        .map_err(torch_error("cannot copy the logit gradient into libtorch"))
    }
}
