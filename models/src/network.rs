//! [`Network`]: the one concrete candle model, built from a [`ModelSpec`].

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use candle_core::{DType, Device, DeviceLocation, Tensor, Var};
use rand_chacha::ChaCha8Rng;

use crate::layers::{self, Layer, Node, TensorRole};
use crate::load::{self, TensorTable};
use crate::native::{Plan, Unsupported};
use crate::params::{Initializer, ParamSource};
use crate::spec::{LayerSection, ModelSpec};
use crate::{
    autograd_loss_and_input_gradient, label_values, FeatureLayer, FeatureName, InputGradient,
    KernelPath, Loss, Model, ModelCapabilities, ModelError, ModelFormat, ModelInfo,
};

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
    native: NativePath,
    /// Where the network was loaded from, for [`Model::info`].
    source: Option<String>,
    /// The format its weights came in (spec + safetensors, a PyTorch checkpoint, ONNX).
    format: ModelFormat,
}

/// The native CPU path (`crate::native`): on by default, compiled on first use, and dropped
/// whenever the weights change.
#[derive(Debug, Clone)]
struct NativePath {
    enabled: bool,
    /// `Err` inside: this network cannot use the native path (e.g. GELU, grouped
    /// convolutions, training variables), so candle runs it, and this is why.
    plan: OnceLock<Result<Arc<Plan>, Unsupported>>,
}

impl NativePath {
    fn new(enabled: bool) -> Self {
        Self {
            enabled,
            plan: OnceLock::new(),
        }
    }
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
    /// The file's header is checked against the spec before any tensor is read: missing,
    /// unexpected and mis-shaped tensors are reported together in one
    /// [`ModelError::Weights`], and nothing stands in for a missing tensor. Stored f16/bf16/f64 tensors are converted to f32; a
    /// non-finite value is an error naming the tensor. `<bn>.num_batches_tracked` is
    /// accepted for batch-norm layers but not required.
    pub fn from_spec_and_safetensors(
        spec: &ModelSpec,
        safetensors_bytes: &[u8],
        device: &Device,
    ) -> Result<Self, ModelError> {
        let cost = spec.cost()?;
        let mut table = TensorTable::parse(safetensors_bytes, device)?;
        table.check(&cost)?;
        Self::build(spec, &mut table, device)
    }

    /// Reads a spec file and a safetensors file; errors name the file at fault. The weights'
    /// path is the network's source ([`Network::with_source`]).
    pub fn load(
        spec_path: &Path,
        weights_path: &Path,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let spec = ModelSpec::from_file(spec_path)?;
        let bytes = gauntlet_files::read_bounded(weights_path, gauntlet_files::limits::WEIGHTS)?;
        let name = weights_path.display().to_string();
        let network =
            Self::from_spec_and_weight_bytes(&spec, &bytes, &name, device).map_err(|source| {
                ModelError::WeightsFile {
                    path: weights_path.to_path_buf(),
                    source: Box::new(source),
                }
            })?;
        Ok(network.with_source(weights_path.display().to_string()))
    }

    /// Records the format the weights came in, reported as [`ModelInfo::format`].
    pub(crate) fn with_format(mut self, format: ModelFormat) -> Self {
        self.format = format;
        self
    }

    /// Records where the network came from (a path, an `embedded:` name, …), reported as
    /// [`ModelInfo::source`].
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
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
            native: NativePath::new(true),
            source: None,
            format: ModelFormat::GauntletSpec,
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
        // The caller may change any weight: a compiled native plan would be stale.
        self.native = NativePath::new(self.native.enabled);
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

    /// A copy that uses gauntlet's native CPU kernels (`true`, the default) or always runs on
    /// candle's ops and autograd (`false`: the reference the native path is tested against).
    ///
    /// The native path applies on CPU to f32 networks with constant weights made of the layers
    /// it covers (everything but GELU and grouped convolutions); other networks run on candle
    /// either way.
    pub fn with_native_kernels(&self, enabled: bool) -> Self {
        let mut copy = self.clone();
        copy.native = NativePath::new(enabled);
        copy
    }

    /// Whether forward and input-gradient passes of this network run on the native CPU path
    /// (see [`Model::kernel_path`] for why not).
    pub fn uses_native_kernels(&self) -> bool {
        self.native_plan().is_ok()
    }

    /// The compiled native plan, or why this network runs on candle.
    fn native_plan(&self) -> Result<&Plan, String> {
        if !self.native.enabled {
            return Err("native kernels turned off (--candle-kernels)".to_string());
        }
        if !self.device.is_cpu() {
            return Err(format!("device is {}", device_name(&self.device)));
        }
        if self.dtype != DType::F32 {
            return Err(format!("dtype is {}", self.dtype.as_str()));
        }
        self.native
            .plan
            .get_or_init(|| self.compile_native().map(Arc::new))
            .as_deref()
            .map_err(ToString::to_string)
    }

    fn compile_native(&self) -> Result<Plan, Unsupported> {
        let normalisation = match &self.normalisation {
            Some(norm) => {
                let values = |t: &Tensor| {
                    t.flatten_all()
                        .and_then(|t| t.to_vec1::<f32>())
                        .map_err(|e| {
                            Unsupported(format!("cannot read the input normalisation: {e}"))
                        })
                };
                Some((values(&norm.mean)?, values(&norm.std)?))
            }
            None => None,
        };
        Plan::compile(
            &self.nodes,
            &self.spec.input_shape,
            normalisation,
            self.spec.num_classes,
        )
    }

    /// The index of the last top-level linear layer (the classifier) and its number of
    /// inputs: the penultimate features are that layer's input.
    fn penultimate_layer(&self) -> Option<(usize, usize)> {
        let at = self
            .nodes
            .iter()
            .rposition(|node| matches!(node.layer, Layer::Linear(_)))?;
        let Layer::Linear(linear) = &self.nodes[at].layer else {
            return None;
        };
        let (_, inputs) = linear.weight.dims2().ok()?;
        Some((at, inputs))
    }

    /// The inputs as one flat f32 host buffer for the native path.
    fn host_inputs(inputs: &Tensor) -> Result<Vec<f32>, ModelError> {
        Ok(inputs
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?)
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
        check_input_shape(inputs, &self.spec.input_shape)?;
        let batch = inputs.dim(0)?;
        if batch == 0 {
            // Some candle ops reject empty tensors; an empty batch has empty logits.
            return Ok(Tensor::zeros(
                (0, self.spec.num_classes),
                self.dtype,
                &self.device,
            )?);
        }
        // An input that carries a graph wants candle's autograd through the logits.
        if let (Ok(plan), false) = (self.native_plan(), inputs.track_op()) {
            let logits = plan.forward(&Self::host_inputs(inputs)?)?;
            return Ok(Tensor::from_vec(
                logits,
                (batch, self.spec.num_classes),
                &self.device,
            )?);
        }
        layers::run(&self.nodes, &self.prepare_input(inputs)?)
    }

    fn loss_and_input_gradient(
        &self,
        inputs: &Tensor,
        labels: &Tensor,
        loss: Loss,
    ) -> Result<InputGradient, ModelError> {
        check_input_shape(inputs, &self.spec.input_shape)?;
        let batch = inputs.dim(0)?;
        let plan = match self.native_plan() {
            Ok(plan) if batch > 0 => plan,
            _ => return autograd_loss_and_input_gradient(self, inputs, labels, loss),
        };
        let labels = label_values(labels, batch, self.spec.num_classes)?;
        let result = plan.loss_and_input_gradient(&Self::host_inputs(inputs)?, &labels, loss)?;
        Ok(InputGradient {
            loss: Tensor::from_vec(result.loss, batch, &self.device)?,
            gradient: Tensor::from_vec(result.gradient, inputs.dims(), &self.device)?
                .to_dtype(inputs.dtype())?,
            logits: Tensor::from_vec(result.logits, (batch, self.spec.num_classes), &self.device)?,
        })
    }

    /// Input gradients, and the penultimate features when the network has a top-level linear
    /// layer (its input, `[in_features]` per sample).
    fn capabilities(&self) -> ModelCapabilities {
        ModelCapabilities {
            input_gradients: true,
            features: self
                .penultimate_layer()
                .map(|(_, width)| FeatureLayer {
                    name: FeatureName::Penultimate,
                    shape: vec![width],
                })
                .into_iter()
                .collect(),
        }
    }

    /// The penultimate features: the input of the last top-level linear layer, `(batch, d)`,
    /// on the native path where the logits would run there, and on candle's otherwise (then
    /// they carry the input's graph, if any).
    fn features(&self, inputs: &Tensor, layer: FeatureName) -> Result<Tensor, ModelError> {
        let (at, width) = match (layer, self.penultimate_layer()) {
            (FeatureName::Penultimate, Some(found)) => found,
            (FeatureName::Penultimate, None) => {
                return Err(ModelError::NoSuchFeature {
                    requested: layer,
                    available: Vec::new(),
                })
            }
        };
        check_input_shape(inputs, &self.spec.input_shape)?;
        let batch = inputs.dim(0)?;
        if batch == 0 {
            return Ok(Tensor::zeros((0, width), self.dtype, &self.device)?);
        }
        if let (Ok(plan), false) = (self.native_plan(), inputs.track_op()) {
            if plan.penultimate_width() != Some(width) {
                return Err(ModelError::internal(format!(
                    "the native plan's penultimate width {:?} differs from the network's {width}",
                    plan.penultimate_width()
                )));
            }
            let features = plan.features(&Self::host_inputs(inputs)?)?;
            return Ok(Tensor::from_vec(features, (batch, width), &self.device)?);
        }
        let x = layers::run(&self.nodes[..at], &self.prepare_input(inputs)?)?;
        Ok(x.flatten_from(1)?)
    }

    fn info(&self) -> ModelInfo {
        ModelInfo {
            name: self.name().to_string(),
            architecture: Some(self.spec.architecture.name().to_string()),
            format: self.format,
            source: self.source.clone(),
            class_names: self.spec.class_names.clone(),
            parameters: Some(self.parameter_count()),
            input_shape: self.spec.input_shape.clone(),
            num_classes: self.spec.num_classes,
        }
    }

    /// [`KernelPath::Native`] when the native plan compiles and applies (CPU, f32, kernels
    /// on), otherwise candle with the reason. Inputs that carry an autograd graph run on
    /// candle either way.
    fn kernel_path(&self) -> KernelPath {
        match self.native_plan() {
            Ok(_) => KernelPath::Native,
            Err(reason) => KernelPath::Candle { reason },
        }
    }
}

/// `cpu`, `cuda:0`, `metal:0`.
fn device_name(device: &Device) -> String {
    match device.location() {
        DeviceLocation::Cpu => "cpu".to_string(),
        DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
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
