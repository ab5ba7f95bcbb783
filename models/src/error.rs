use std::fmt;
use std::path::PathBuf;

use crate::capabilities::FeatureName;

/// Everything that can go wrong when building, loading, running or training a model.
///
/// Variants carry the context a user needs to fix the problem (file, tensor name, shapes).
/// Display messages do not repeat their `source`; print the chain (`{:#}` with anyhow) to
/// see the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(
        "the input gradient did not reach the input; a layer in the forward pass has no backward"
    )]
    NoInputGradient,
    #[error("cannot read `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file the reading layer refuses: not a regular file (a FIFO, device or folder), or
    /// past its size limit.
    #[error(transparent)]
    File(gauntlet_files::FileError),
    #[error("cannot write `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The spec is not valid TOML, has an unknown key or layer type, or lacks a required key.
    #[error("cannot parse the model spec")]
    SpecSyntax {
        #[source]
        source: toml::de::Error,
    },
    /// The spec parsed but describes no valid network (e.g. channel counts that do not chain).
    #[error("invalid model spec: {reason}")]
    InvalidSpec { reason: String },
    /// Wraps a spec error with the file it came from.
    #[error("invalid model spec `{path}`")]
    SpecFile {
        path: PathBuf,
        #[source]
        source: Box<ModelError>,
    },
    #[error("cannot write the model spec as TOML")]
    SpecSerialize {
        #[source]
        source: toml::ser::Error,
    },
    /// The weight bytes are not a well-formed safetensors file (truncated, bad header, ...).
    #[error("the weights are not a valid safetensors file")]
    SafetensorsFormat {
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// One stored tensor could not be turned into a candle tensor.
    #[error("cannot load weight tensor `{tensor}`")]
    TensorLoad {
        tensor: String,
        #[source]
        source: candle_core::Error,
    },
    #[error(
        "weight tensor `{tensor}` has dtype {dtype}; expected a float type (f32, f16, bf16 or f64)"
    )]
    UnsupportedTensorDtype { tensor: String, dtype: String },
    /// The stored tensors do not match the spec; lists every problem at once.
    #[error("{}", describe_weight_mismatch(missing, unexpected, mismatched))]
    Weights {
        /// Tensors the spec needs that the file lacks.
        missing: Vec<String>,
        /// Tensors in the file that the spec does not use, with their shapes.
        unexpected: Vec<(String, Vec<usize>)>,
        /// Tensors present under the right name with the wrong shape.
        mismatched: Vec<ShapeMismatch>,
    },
    #[error("weight tensor `{tensor}` holds a non-finite value ({value}) at flat index {index}")]
    NonFiniteWeight {
        tensor: String,
        index: usize,
        value: f64,
    },
    /// Wraps a weight-loading error with the file it came from.
    #[error("cannot load weights `{path}`")]
    WeightsFile {
        path: PathBuf,
        #[source]
        source: Box<ModelError>,
    },
    /// A forward pass got a batch whose per-sample shape differs from the model's.
    #[error(
        "input batch has shape {got:?}, but the model expects [batch, {}]",
        format_dims(expected)
    )]
    InputShape {
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// An error inside one layer's forward pass, with the layer's tensor-name prefix.
    #[error("in layer `{layer}` ({kind})")]
    Layer {
        layer: String,
        kind: &'static str,
        #[source]
        source: Box<ModelError>,
    },
    /// Labels that do not fit the logits (wrong count, or a class index out of range).
    #[error("invalid labels: {reason}")]
    InvalidLabels { reason: String },
    #[error("invalid training configuration: {reason}")]
    InvalidTrainConfig { reason: String },
    #[error("invalid training data: {reason}")]
    TrainingData { reason: String },
    #[error("training diverged: the loss became non-finite in epoch {epoch}, batch {batch}")]
    Diverged { epoch: usize, batch: usize },
    /// [`crate::Model::features`] was asked for a layer the model does not provide.
    #[error(
        "the model provides no feature layer `{requested}`; it provides: {}",
        crate::capabilities::list_names(available)
    )]
    NoSuchFeature {
        requested: FeatureName,
        available: Vec<FeatureName>,
    },
    /// A PyTorch checkpoint gauntlet cannot read as a state dict (not `torch.save` output, a
    /// truncated stream, a view outside its storage, no state dict inside).
    #[error("cannot read the PyTorch checkpoint: {reason}")]
    Checkpoint { reason: String },
    /// The scanner refused a checkpoint before anything in it was read: a global outside the
    /// allow-list, a malformed archive, …. Nothing in the file was executed.
    #[error(
        "the PyTorch checkpoint was refused by the scanner before loading (nothing in it ran): {}",
        findings.join("; ")
    )]
    UnsafeCheckpoint { findings: Vec<String> },
    /// An ONNX model gauntlet cannot compile: malformed protobuf, an opset outside 13–21, a
    /// shape-inconsistent graph, external data outside the model's folder.
    #[error("cannot load the ONNX model: {reason}")]
    Onnx { reason: String },
    /// An ONNX graph using operators (or operator forms) gauntlet has no exact-gradient layer
    /// for; every one is listed with the nodes that use it.
    #[error(
        "the ONNX graph uses what gauntlet cannot run with exact gradients: {}",
        unsupported.join("; ")
    )]
    UnsupportedOnnx { unsupported: Vec<String> },
    /// A TorchScript archive libtorch cannot load or run as a classifier (feature `torch`), or
    /// a TorchScript file in a build without that feature.
    #[error("cannot load the TorchScript model: {reason}")]
    TorchScript { reason: String },
    /// The scanner refused a TorchScript archive (its pickles or code) before libtorch saw it.
    #[error(
        "the TorchScript archive was refused by the scanner before loading (libtorch never saw it): {}",
        findings.join("; ")
    )]
    UnsafeTorchScript { findings: Vec<String> },
    /// An internal invariant of gauntlet's own code failed (e.g. the native kernels' saved
    /// forward values do not match the backward pass). A bug, reported instead of returning
    /// a wrong result (a zero gradient would look like robustness).
    #[error("internal error in gauntlet-models (a bug, please report it): {what}")]
    Internal { what: String },
}

/// A tensor stored with a shape different from the one the spec implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    pub tensor: String,
    pub expected: Vec<usize>,
    pub got: Vec<usize>,
}

impl fmt::Display for ShapeMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}`: expected {:?}, got {:?}",
            self.tensor, self.expected, self.got
        )
    }
}

fn format_dims(dims: &[usize]) -> String {
    dims.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_weight_mismatch(
    missing: &[String],
    unexpected: &[(String, Vec<usize>)],
    mismatched: &[ShapeMismatch],
) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|name| format!("`{name}`")).collect();
        parts.push(format!("{} missing: {}", missing.len(), names.join(", ")));
    }
    if !unexpected.is_empty() {
        let names: Vec<String> = unexpected
            .iter()
            .map(|(name, shape)| format!("`{name}` {shape:?}"))
            .collect();
        parts.push(format!(
            "{} unexpected: {}",
            unexpected.len(),
            names.join(", ")
        ));
    }
    if !mismatched.is_empty() {
        let names: Vec<String> = mismatched.iter().map(ToString::to_string).collect();
        parts.push(format!(
            "{} with the wrong shape: {}",
            mismatched.len(),
            names.join(", ")
        ));
    }
    format!(
        "the weight tensors do not match the model spec; {}",
        parts.join("; ")
    )
}

impl ModelError {
    pub(crate) fn invalid_spec(reason: impl Into<String>) -> Self {
        ModelError::InvalidSpec {
            reason: reason.into(),
        }
    }

    /// A broken internal invariant ([`ModelError::Internal`]).
    pub(crate) fn internal(what: impl Into<String>) -> Self {
        ModelError::Internal { what: what.into() }
    }
}

impl From<gauntlet_files::FileError> for ModelError {
    /// The operating system's refusals stay [`ModelError::Io`]; what the reading layer itself
    /// refuses is [`ModelError::File`].
    fn from(error: gauntlet_files::FileError) -> Self {
        match error {
            gauntlet_files::FileError::Io { path, source } => ModelError::Io { path, source },
            other => ModelError::File(other),
        }
    }
}
