//! What a model declares about itself beyond its logits: which extra outputs it can give
//! ([`ModelCapabilities`]), where it came from ([`ModelInfo`]) and which kernels run it
//! ([`KernelPath`]). The harness turns these into notices and the results file.

use std::fmt;
use std::str::FromStr;

/// A named intermediate output a model can return through [`crate::Model::features`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FeatureName {
    /// The activations that enter the final linear (classifier) layer, flattened per sample:
    /// shape `(batch, d)`. Backdoor scans (spectral signatures, activation clustering) work
    /// on these.
    Penultimate,
}

impl FeatureName {
    /// Every feature name, in a fixed order.
    pub const ALL: [FeatureName; 1] = [FeatureName::Penultimate];

    /// The name as written in suites and reports, e.g. `penultimate`.
    pub fn as_str(self) -> &'static str {
        match self {
            FeatureName::Penultimate => "penultimate",
        }
    }
}

impl fmt::Display for FeatureName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`FeatureName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown feature layer `{name}`; known: {}", list_names(&FeatureName::ALL))]
pub struct UnknownFeatureName {
    pub name: String,
}

impl FromStr for FeatureName {
    type Err = UnknownFeatureName;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        FeatureName::ALL
            .into_iter()
            .find(|feature| feature.as_str() == name)
            .ok_or_else(|| UnknownFeatureName {
                name: name.to_string(),
            })
    }
}

/// `a, b` (or `none`) for error messages.
pub(crate) fn list_names(names: &[FeatureName]) -> String {
    if names.is_empty() {
        return "none".to_string();
    }
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One intermediate output a model provides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureLayer {
    pub name: FeatureName,
    /// Per-sample shape (the batch dimension comes first in the tensor), e.g. `[64]`.
    pub shape: Vec<usize>,
}

/// What a model can provide beyond logits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCapabilities {
    /// Whether `loss_and_input_gradient` works (white-box attacks need it). ONNX/TorchScript
    /// models may not.
    pub input_gradients: bool,
    /// Named intermediate features the model can return via [`crate::Model::features`].
    pub features: Vec<FeatureLayer>,
}

impl ModelCapabilities {
    /// The feature layer called `name`, if the model provides it.
    pub fn feature(&self, name: FeatureName) -> Option<&FeatureLayer> {
        self.features.iter().find(|layer| layer.name == name)
    }
}

impl Default for ModelCapabilities {
    /// Input gradients, no feature layers: what a model built from candle ops gets from the
    /// trait's defaults.
    fn default() -> Self {
        Self {
            input_gradients: true,
            features: Vec::new(),
        }
    }
}

/// How a model was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ModelFormat {
    /// gauntlet's own: a TOML model spec plus safetensors weights (a [`crate::Network`]).
    GauntletSpec,
    /// An ONNX graph.
    Onnx,
    /// A PyTorch checkpoint (`state_dict` in a pickle/zip file).
    TorchCheckpoint,
    /// A TorchScript archive.
    TorchScript,
    /// A model implemented in Rust against the [`crate::Model`] trait (e.g. the test models).
    Custom,
}

impl ModelFormat {
    /// A stable identifier, e.g. `gauntlet-spec`.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelFormat::GauntletSpec => "gauntlet-spec",
            ModelFormat::Onnx => "onnx",
            ModelFormat::TorchCheckpoint => "torch-checkpoint",
            ModelFormat::TorchScript => "torchscript",
            ModelFormat::Custom => "custom",
        }
    }
}

impl fmt::Display for ModelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A description of a model for reports (the harness converts it into the results file's own
/// type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// [`crate::Model::name`].
    pub name: String,
    /// The architecture, e.g. `resnet20` or `sequential`, when the model knows it.
    pub architecture: Option<String>,
    pub format: ModelFormat,
    /// Where the model came from (a path or an `embedded:` name), as its loader recorded it.
    pub source: Option<String>,
    /// One name per class, when the model carries them.
    pub class_names: Option<Vec<String>>,
    /// Number of trained values (PyTorch's `sum(p.numel() for p in model.parameters())`), when
    /// known.
    pub parameters: Option<u64>,
    /// Per-sample input shape.
    pub input_shape: Vec<usize>,
    pub num_classes: usize,
}

/// Which kernels run a model's forward and input-gradient passes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KernelPath {
    /// gauntlet's native CPU kernels (`models/src/native/`).
    Native,
    /// candle's ops and autograd, and why not the native kernels (e.g. `GELU activation`,
    /// `dtype is f64`, `native kernels turned off (--candle-kernels)`).
    Candle { reason: String },
    /// libtorch, through `tch` (a TorchScript model; feature `torch`).
    Libtorch,
}

impl fmt::Display for KernelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelPath::Native => f.write_str("native CPU kernels"),
            KernelPath::Candle { reason } => write!(f, "candle kernels ({reason})"),
            KernelPath::Libtorch => f.write_str("libtorch (TorchScript)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_names_round_trip_and_unknown_ones_list_the_known() {
        for name in FeatureName::ALL {
            assert_eq!(name.to_string().parse::<FeatureName>(), Ok(name));
        }
        assert_eq!(
            "penultimate".parse::<FeatureName>(),
            Ok(FeatureName::Penultimate)
        );
        let error = "logits".parse::<FeatureName>().unwrap_err().to_string();
        assert_eq!(
            error,
            "unknown feature layer `logits`; known: `penultimate`"
        );
    }
}
