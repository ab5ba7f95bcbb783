//! [`Network`]: the one concrete candle model, built from a [`ModelSpec`].

use std::collections::HashSet;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;

use crate::layers::{self, Node, TensorRole};
use crate::load::{self, TensorTable};
use crate::params::{Initializer, ParamSource};
use crate::spec::{LayerSection, ModelSpec};
use crate::{Model, ModelError};

/// A network described by a [`ModelSpec`], with its weights as plain (untracked) tensors so
/// that an attack's backward pass only walks the input's graph.
///
/// Inputs are in [0, 1]; the spec's `mean`/`std` normalisation is applied inside
/// [`Model::forward`].
#[derive(Debug, Clone)]
pub struct Network {
    spec: ModelSpec,
    nodes: Vec<Node>,
    normalisation: Option<Normalisation>,
    device: Device,
    dtype: DType,
}

/// `(x − mean) / std`, per channel (dimension 1 of the batch).
#[derive(Debug, Clone)]
struct Normalisation {
    mean: Tensor,
    std: Tensor,
}

impl Network {
    /// Builds the network of `spec` with the weights in `safetensors_bytes`.
    ///
    /// Missing, unexpected and mis-shaped tensors are reported together in one
    /// [`ModelError::Weights`]. Stored f16/bf16/f64 tensors are converted to f32; a
    /// non-finite value is an error naming the tensor. `<bn>.num_batches_tracked` is
    /// accepted for batch-norm layers but not required.
    pub fn from_spec_and_safetensors(
        spec: &ModelSpec,
        safetensors_bytes: &[u8],
        device: &Device,
    ) -> Result<Self, ModelError> {
        spec.validate()?;
        let mut table = TensorTable::parse(safetensors_bytes, device)?;
        let network = Self::build(spec, &mut table, device)?;
        table.finish()?;
        Ok(network)
    }

    /// Reads a spec file and a safetensors file; errors name the file at fault.
    pub fn load(
        spec_path: &Path,
        weights_path: &Path,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let spec = ModelSpec::from_file(spec_path)?;
        let bytes = fs_err::read(weights_path).map_err(|source| ModelError::Io {
            path: weights_path.to_path_buf(),
            source,
        })?;
        Self::from_spec_and_safetensors(&spec, &bytes, device).map_err(|source| {
            ModelError::WeightsFile {
                path: weights_path.to_path_buf(),
                source: Box::new(source),
            }
        })
    }

    /// A freshly initialised network with PyTorch's default initialisation (conv and linear:
    /// `U(±1/√fan_in)` for weights and biases; batch norm: weight 1, bias 0, running mean 0,
    /// running variance 1), drawn from a ChaCha8 generator seeded with `seed`.
    pub fn init(spec: &ModelSpec, seed: u64, device: &Device) -> Result<Self, ModelError> {
        spec.validate()?;
        let mut initializer = Initializer::new(seed, device);
        Self::build(spec, &mut initializer, device)
    }

    fn build(
        spec: &ModelSpec,
        source: &mut dyn ParamSource,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let layers = spec.expanded_layers()?;
        let (nodes, _) = layers::build(
            &layers,
            "",
            LayerSection::Top,
            &spec.input_shape,
            source,
            device,
        )?;
        let network = Self {
            spec: spec.clone(),
            nodes,
            normalisation: Normalisation::from_spec(spec, device)?,
            device: device.clone(),
            dtype: DType::F32,
        };
        network.check_unique_names()?;
        Ok(network)
    }

    fn check_unique_names(&self) -> Result<(), ModelError> {
        let mut seen = HashSet::new();
        for (name, _, _) in self.named_tensors() {
            if !seen.insert(name.clone()) {
                return Err(ModelError::invalid_spec(format!(
                    "two layers produce the tensor name `{name}`; give them distinct `name`s"
                )));
            }
        }
        Ok(())
    }

    /// Writes the weights as a safetensors file with PyTorch `state_dict()` names (f32
    /// tensors, plus `num_batches_tracked` as an i64 scalar for each batch-norm layer, so
    /// PyTorch's strict `load_state_dict` accepts the file).
    pub fn save_safetensors(&self, path: &Path) -> Result<(), ModelError> {
        let bytes = self.to_safetensors_bytes()?;
        fs_err::write(path, bytes).map_err(|source| ModelError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The bytes [`Network::save_safetensors`] writes.
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>, ModelError> {
        let floats = self
            .named_tensors()
            .into_iter()
            .map(|(name, _, tensor)| (name, tensor.clone()))
            .collect();
        let mut counts = Vec::new();
        layers::batch_norm_counts(&self.nodes, &mut counts);
        let counts = counts
            .into_iter()
            .map(|(prefix, count)| (format!("{prefix}.num_batches_tracked"), count))
            .collect();
        load::to_safetensors_bytes(floats, counts)
    }

    /// The number of trained values (PyTorch's `sum(p.numel() for p in model.parameters())`;
    /// batch-norm running statistics are buffers and not counted).
    pub fn parameter_count(&self) -> u64 {
        self.named_tensors()
            .into_iter()
            .filter(|(_, role, _)| *role == TensorRole::Parameter)
            .map(|(_, _, tensor)| tensor.elem_count() as u64)
            .sum()
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The dtype the network computes in (f32 unless converted with [`Network::to_dtype`]).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// A copy computing in `dtype` (e.g. f64 for tight finite-difference checks). Inputs of
    /// any float dtype are converted to it at the start of the forward pass.
    pub fn to_dtype(&self, dtype: DType) -> Result<Self, ModelError> {
        if !dtype.is_float() {
            return Err(ModelError::invalid_spec(format!(
                "a network computes in a float dtype, not {dtype:?}"
            )));
        }
        let mut copy = self.clone();
        for (_, _, tensor) in copy.named_tensors_mut() {
            *tensor = tensor.to_dtype(dtype)?;
        }
        if let Some(norm) = &mut copy.normalisation {
            norm.mean = norm.mean.to_dtype(dtype)?;
            norm.std = norm.std.to_dtype(dtype)?;
        }
        copy.dtype = dtype;
        Ok(copy)
    }

    /// Every weight and buffer with its PyTorch name, in build order.
    pub fn tensor_names(&self) -> Vec<String> {
        self.named_tensors()
            .into_iter()
            .map(|(name, _, _)| name)
            .collect()
    }

    pub(crate) fn named_tensors(&self) -> Vec<layers::NamedTensor<'_>> {
        let mut out = Vec::new();
        layers::named_tensors(&self.nodes, &mut out);
        out
    }

    pub(crate) fn named_tensors_mut(&mut self) -> Vec<layers::NamedTensorMut<'_>> {
        let mut out = Vec::new();
        layers::named_tensors_mut(&mut self.nodes, &mut out);
        out
    }

    /// Turns every trainable tensor into a [`Var`] (the layer keeps a tracked handle to the
    /// same storage, so `Var::set` updates are seen by the next forward pass).
    pub(crate) fn make_trainable(&mut self) -> Result<Vec<Var>, ModelError> {
        let mut vars = Vec::new();
        for (_, role, tensor) in self.named_tensors_mut() {
            if role == TensorRole::Parameter {
                let var = Var::from_tensor(tensor)?;
                *tensor = var.as_tensor().clone();
                vars.push(var);
            }
        }
        Ok(vars)
    }

    /// Turns trained tensors back into plain constants.
    pub(crate) fn freeze(&mut self) {
        for (_, _, tensor) in self.named_tensors_mut() {
            *tensor = tensor.detach();
        }
    }

    /// Train-mode forward pass: batch statistics in batch norm, dropout active.
    pub(crate) fn forward_train(
        &mut self,
        inputs: &Tensor,
        rng: &mut ChaCha8Rng,
    ) -> Result<Tensor, ModelError> {
        let x = self.prepare_input(inputs)?;
        layers::run_train(&mut self.nodes, &x, rng)
    }

    fn prepare_input(&self, inputs: &Tensor) -> Result<Tensor, ModelError> {
        check_input_shape(inputs, &self.spec.input_shape)?;
        let x = inputs.to_dtype(self.dtype)?;
        match &self.normalisation {
            Some(norm) => Ok(x.broadcast_sub(&norm.mean)?.broadcast_div(&norm.std)?),
            None => Ok(x),
        }
    }
}

impl Normalisation {
    fn from_spec(spec: &ModelSpec, device: &Device) -> Result<Option<Self>, ModelError> {
        let (Some(mean), Some(std)) = (&spec.mean, &spec.std) else {
            return Ok(None);
        };
        let rank = spec.input_shape.len() + 1;
        let shaped = |values: &[f32]| -> Result<Tensor, ModelError> {
            let mut shape = vec![1usize; rank];
            shape[1] = values.len();
            Ok(Tensor::from_vec(values.to_vec(), shape, device)?)
        };
        Ok(Some(Self {
            mean: shaped(mean)?,
            std: shaped(std)?,
        }))
    }
}

impl Model for Network {
    fn name(&self) -> &str {
        self.spec.architecture.name()
    }

    fn input_shape(&self) -> &[usize] {
        &self.spec.input_shape
    }

    fn num_classes(&self) -> usize {
        self.spec.num_classes
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn forward(&self, inputs: &Tensor) -> Result<Tensor, ModelError> {
        let x = self.prepare_input(inputs)?;
        if x.dim(0)? == 0 {
            // Some candle ops reject empty tensors; an empty batch has empty logits.
            return Ok(Tensor::zeros(
                (0, self.spec.num_classes),
                self.dtype,
                &self.device,
            )?);
        }
        layers::run(&self.nodes, &x)
    }
}

/// Checks that `inputs` is `(batch, input_shape…)`; the error names both shapes, so a
/// CIFAR batch fed to an MNIST model fails here rather than deep inside a candle op.
pub(crate) fn check_input_shape(inputs: &Tensor, input_shape: &[usize]) -> Result<(), ModelError> {
    let dims = inputs.dims();
    if dims.len() != input_shape.len() + 1 || dims[1..] != *input_shape {
        return Err(ModelError::InputShape {
            expected: input_shape.to_vec(),
            got: dims.to_vec(),
        });
    }
    Ok(())
}
