//! The model spec: a small TOML file naming an architecture (or listing layers), the input
//! shape, the classes and the input normalisation. Parsing is strict (`deny_unknown_fields`
//! everywhere) so a typo is an error, not a silently ignored key.

mod builtin;
pub mod cost;
mod diagnose;
mod layer;
mod size;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use cost::{ExpectedTensor, LayerCost, MemoryEstimate, ModelCost, Usage};
pub(crate) use layer::{checked_product, ConvShape, PoolGeometry};
pub use layer::{ActivationKind, LayerSpec, Pair};

use crate::ModelError;

/// Which network a spec describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// Softmax regression: flatten + one linear layer.
    Linear,
    /// Flatten, `[linear, relu]` per entry of `hidden`, linear.
    Mlp,
    /// Two 3×3 conv + relu + 2×2 max-pool stages and a linear layer.
    SmallCnn,
    /// The CIFAR ResNet-20 of He et al.
    Resnet20,
    /// The layers listed under `[[layers]]`.
    Sequential,
}

impl Architecture {
    /// The spec's spelling, e.g. `small_cnn`.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Linear => "linear",
            Architecture::Mlp => "mlp",
            Architecture::SmallCnn => "small_cnn",
            Architecture::Resnet20 => "resnet20",
            Architecture::Sequential => "sequential",
        }
    }
}

/// A model spec, as read from TOML. See `docs/pytorch-export.md` for the format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub architecture: Architecture,
    /// Per-sample input shape, e.g. `[1, 28, 28]` or `[784]`.
    pub input_shape: Vec<usize>,
    pub num_classes: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_names: Option<Vec<String>>,
    /// Per-channel mean subtracted inside the model (inputs stay in [0, 1] for attacks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<Vec<f32>>,
    /// Per-channel standard deviation divided inside the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<Vec<f32>>,
    /// Hidden widths of an `mlp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<Vec<usize>>,
    /// The layers of a `sequential` spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<LayerSpec>>,
}

impl ModelSpec {
    /// Parses and validates a spec.
    pub fn from_toml_str(text: &str) -> Result<Self, ModelError> {
        let spec: ModelSpec =
            toml::from_str(text).map_err(|source| match diagnose::layer_error(text) {
                Some(reason) => ModelError::invalid_spec(reason),
                None => ModelError::SpecSyntax { source },
            })?;
        spec.validate()?;
        Ok(spec)
    }

    /// Reads, parses and validates a spec file; errors name the file.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text =
            gauntlet_files::read_to_string_bounded(path, gauntlet_files::limits::MODEL_SPEC)?;
        Self::from_toml_str(&text).map_err(|source| ModelError::SpecFile {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// The spec as TOML that [`ModelSpec::from_toml_str`] reads back to an equal spec.
    pub fn to_toml_string(&self) -> Result<String, ModelError> {
        toml::to_string(self).map_err(|source| ModelError::SpecSerialize { source })
    }

    pub fn class_names(&self) -> Option<&[String]> {
        self.class_names.as_deref()
    }

    /// The full layer list: the listed layers of a `sequential` spec, or the expansion of a
    /// built-in architecture.
    pub fn expanded_layers(&self) -> Result<Vec<LayerSpec>, ModelError> {
        match self.architecture {
            Architecture::Linear => builtin::linear(&self.input_shape, self.num_classes),
            Architecture::Mlp => builtin::mlp(
                &self.input_shape,
                self.hidden.as_deref().unwrap_or_default(),
                self.num_classes,
            ),
            Architecture::SmallCnn => builtin::small_cnn(&self.input_shape, self.num_classes),
            Architecture::Resnet20 => builtin::resnet20(&self.input_shape, self.num_classes),
            Architecture::Sequential => Ok(self.layers.clone().unwrap_or_default()),
        }
    }

    /// Checks everything that can be checked without weights: keys that belong to the
    /// architecture, normalisation sizes, that every layer accepts its input shape and the
    /// last one produces `num_classes` logits, and that every size is representable (see
    /// [`ModelSpec::cost`]).
    pub fn validate(&self) -> Result<(), ModelError> {
        self.cost().map(|_| ())
    }

    /// Validates the spec and computes what its network costs: each layer's output shape,
    /// parameters, constant tables and values kept per sample, and the tensors its weights
    /// must hold. All arithmetic is checked, so a size that would overflow (or exceed
    /// [`cost::MAX_LAYER_VALUES`]) is an error naming the layer; nothing is allocated.
    pub fn cost(&self) -> Result<ModelCost, ModelError> {
        let (cost, output) = self.walk()?;
        if output != [self.num_classes] {
            return Err(ModelError::invalid_spec(format!(
                "the last layer produces per-sample shape {output:?}, but num_classes = {} needs [{}]",
                self.num_classes, self.num_classes
            )));
        }
        Ok(cost)
    }

    /// The per-sample shape the layers produce, checked as [`ModelSpec::cost`] checks them
    /// but without comparing it with `num_classes` (what a `flatten` at the end gives, say).
    pub fn output_shape(&self) -> Result<Vec<usize>, ModelError> {
        self.walk().map(|(_, output)| output)
    }

    fn walk(&self) -> Result<(ModelCost, Vec<usize>), ModelError> {
        self.validate_header()?;
        self.validate_architecture_keys()?;
        self.validate_normalisation()?;
        let layers = self.expanded_layers()?;
        if layers.is_empty() {
            return Err(ModelError::invalid_spec(
                "a sequential spec needs at least one layer",
            ));
        }
        let input_values =
            cost::values("`input_shape`", &self.input_shape).map_err(ModelError::invalid_spec)?;
        let mut walk = CostWalk::default();
        let output = walk.layers(&layers, "", LayerSection::Top, &self.input_shape)?;
        let cost = ModelCost {
            input_values,
            layers: walk.costs,
            tensors: walk.tensors,
            optional_tensors: walk.optional,
        };
        Ok((cost, output))
    }

    fn validate_header(&self) -> Result<(), ModelError> {
        if self.input_shape.is_empty() || self.input_shape.contains(&0) {
            return Err(ModelError::invalid_spec(format!(
                "input_shape must be non-empty with positive sizes, got {:?}",
                self.input_shape
            )));
        }
        if self.num_classes == 0 {
            return Err(ModelError::invalid_spec("num_classes must be at least 1"));
        }
        if let Some(names) = &self.class_names {
            if names.len() != self.num_classes {
                return Err(ModelError::invalid_spec(format!(
                    "class_names has {} entries, but num_classes = {}",
                    names.len(),
                    self.num_classes
                )));
            }
        }
        Ok(())
    }

    fn validate_architecture_keys(&self) -> Result<(), ModelError> {
        let architecture = self.architecture.name();
        match (self.architecture, &self.hidden) {
            (Architecture::Mlp, None) => {
                return Err(ModelError::invalid_spec(
                    "architecture `mlp` needs `hidden` (e.g. hidden = [256, 128])",
                ))
            }
            (Architecture::Mlp, Some(hidden)) if hidden.contains(&0) => {
                return Err(ModelError::invalid_spec(format!(
                    "hidden widths must be positive, got {hidden:?}"
                )))
            }
            (Architecture::Mlp, _) | (_, None) => {}
            (_, Some(_)) => {
                return Err(ModelError::invalid_spec(format!(
                    "`hidden` only applies to architecture `mlp`, not `{architecture}`"
                )))
            }
        }
        match (self.architecture, &self.layers) {
            (Architecture::Sequential, None) => Err(ModelError::invalid_spec(
                "architecture `sequential` needs a `[[layers]]` list",
            )),
            (Architecture::Sequential, Some(_)) | (_, None) => Ok(()),
            (_, Some(_)) => Err(ModelError::invalid_spec(format!(
                "`layers` only applies to architecture `sequential`, not `{architecture}`"
            ))),
        }
    }

    fn validate_normalisation(&self) -> Result<(), ModelError> {
        let channels = self.input_shape[0];
        match (&self.mean, &self.std) {
            (None, None) => Ok(()),
            (Some(mean), Some(std)) => {
                for (key, values) in [("mean", mean), ("std", std)] {
                    if values.len() != channels && values.len() != 1 {
                        return Err(ModelError::invalid_spec(format!(
                            "`{key}` has {} values; it needs one per channel ({channels}) or a single value",
                            values.len()
                        )));
                    }
                    if values.iter().any(|v| !v.is_finite()) {
                        return Err(ModelError::invalid_spec(format!(
                            "`{key}` must be finite, got {values:?}"
                        )));
                    }
                }
                if std.iter().any(|&s| s <= 0.0) {
                    return Err(ModelError::invalid_spec(format!(
                        "`std` must be positive, got {std:?}"
                    )));
                }
                Ok(())
            }
            _ => Err(ModelError::invalid_spec(
                "`mean` and `std` must be given together",
            )),
        }
    }
}

/// Where a layer list sits, which decides the default names of its layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LayerSection {
    /// The model's own list: default name = index.
    Top,
    /// A residual block's `body`: default name = `body.<index>`.
    Body,
    /// A residual block's `shortcut`: default name = `shortcut.<index>`.
    Shortcut,
}

/// The tensor-name prefix of the layer at `index` of a list in `section` of the module whose
/// prefix is `parent` (empty for the model itself).
///
/// An explicit `name` is relative to the enclosing module (so `conv1` in the body of block
/// `layer1.0` gives `layer1.0.conv1`); a default name lives in the list's own `nn.Sequential`
/// (`layer1.0.body.2`).
pub(crate) fn layer_prefix(
    parent: &str,
    section: LayerSection,
    index: usize,
    name: Option<&str>,
) -> String {
    let local = match (name, section) {
        (Some(name), _) => name.to_string(),
        (None, LayerSection::Top) => index.to_string(),
        (None, LayerSection::Body) => format!("body.{index}"),
        (None, LayerSection::Shortcut) => format!("shortcut.{index}"),
    };
    if parent.is_empty() {
        local
    } else {
        format!("{parent}.{local}")
    }
}

/// Walks a layer list checking names and shapes, and collects what each layer costs.
#[derive(Default)]
struct CostWalk {
    costs: Vec<LayerCost>,
    tensors: Vec<ExpectedTensor>,
    optional: Vec<String>,
}

impl CostWalk {
    /// Walks `layers` from the per-sample `input` shape; returns the output shape.
    fn layers(
        &mut self,
        layers: &[LayerSpec],
        parent: &str,
        section: LayerSection,
        input: &[usize],
    ) -> Result<Vec<usize>, ModelError> {
        let mut shape = input.to_vec();
        for (index, layer) in layers.iter().enumerate() {
            if let Some(name) = layer.name() {
                check_name(name)?;
            }
            let prefix = layer_prefix(parent, section, index, layer.name());
            let in_layer = |reason: String| {
                ModelError::invalid_spec(format!("layer `{prefix}` ({}): {reason}", layer.kind()))
            };
            shape = match layer {
                LayerSpec::Residual { body, shortcut, .. } => {
                    let at = self.costs.len();
                    let output = self.residual(body, shortcut, &prefix, &shape)?;
                    let own = cost::residual_cost(&prefix, &output).map_err(in_layer)?;
                    self.costs.insert(at, own);
                    output
                }
                _ => {
                    let output = layer.output_shape(&shape).map_err(in_layer)?;
                    let own = cost::leaf_cost(
                        layer,
                        &prefix,
                        &shape,
                        &output,
                        &mut self.tensors,
                        &mut self.optional,
                    )
                    .map_err(in_layer)?;
                    self.costs.push(own);
                    output
                }
            };
        }
        Ok(shape)
    }

    fn residual(
        &mut self,
        body: &[LayerSpec],
        shortcut: &[LayerSpec],
        prefix: &str,
        input: &[usize],
    ) -> Result<Vec<usize>, ModelError> {
        if body.is_empty() {
            return Err(ModelError::invalid_spec(format!(
                "layer `{prefix}` (residual): `body` needs at least one layer"
            )));
        }
        let body_shape = self.layers(body, prefix, LayerSection::Body, input)?;
        let shortcut_shape = self.layers(shortcut, prefix, LayerSection::Shortcut, input)?;
        if body_shape != shortcut_shape {
            return Err(ModelError::invalid_spec(format!(
                "layer `{prefix}` (residual): the body gives shape {body_shape:?} but the shortcut gives {shortcut_shape:?}; they must match to be summed"
            )));
        }
        Ok(body_shape)
    }
}

fn check_name(name: &str) -> Result<(), ModelError> {
    let valid = !name.is_empty()
        && name.split('.').all(|segment| {
            !segment.is_empty()
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if valid {
        Ok(())
    } else {
        Err(ModelError::invalid_spec(format!(
            "layer name `{name}` must be dot-separated segments of letters, digits, `_` or `-`"
        )))
    }
}
