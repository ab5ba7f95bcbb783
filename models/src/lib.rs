//! The `Model` abstraction of gauntlet.
//!
//! A model maps a batch of inputs in **[0, 1] pixel space** (shape `(batch, C, H, W)` or
//! `(batch, features)`) to logits `(batch, num_classes)`. Input normalisation (mean/std)
//! lives inside the model, so attacks never need to know about it.
//!
//! Attacks need one thing from a model besides its logits: the gradient of a per-sample loss
//! with respect to the input. The default implementation of
//! [`Model::loss_and_input_gradient`] runs candle autograd through [`Model::forward`] with the
//! weights held as constants, so only the input's graph is walked.
//!
//! On CPU, a frozen f32 [`Network`] overrides both with gauntlet's native kernels (`native/`:
//! no graph, no weight gradients, batch norm folded, one `gemm` multiply per convolution), which
//! agree with the candle path to 1e-5 relative; [`Network::with_native_kernels`] switches them
//! off, and every other model, device or dtype runs on candle.
//!
//! A model also declares what it can do beyond logits ([`Model::capabilities`]: input
//! gradients, named feature layers such as [`FeatureName::Penultimate`], the input of the
//! final linear layer, returned by [`Model::features`]), describes itself for reports
//! ([`Model::info`]) and says which kernels run it and, on candle, why
//! ([`Model::kernel_path`]). A broken internal invariant of the native kernels is a
//! [`ModelError::Internal`], never a silently zero gradient.
//!
//! The concrete model is [`Network`]: a [`ModelSpec`] (TOML: a built-in architecture or a
//! `sequential` layer list) plus safetensors weights named as PyTorch's `state_dict()` names
//! them (`docs/pytorch-export.md`). Its pooling layers are written here rather than taken from
//! candle, whose pooling backward passes are wrong (`layers/pool.rs`). [`train()`] trains it;
//! the `testing` feature adds a known-weights `testing::LinearModel` and a finite-difference
//! gradient checker. The `torch` feature adds `TorchScriptModel`: a TorchScript archive run by
//! libtorch (`tch`), scanned before libtorch sees it (`torchscript.rs`, docs/models.md).

use candle_core::{DType, Device, Tensor, Var};

mod capabilities;
mod checkpoint;
pub mod describe;
mod dlr;
mod error;
mod layers;
mod load;
mod native;
mod network;
pub mod onnx;
mod params;
pub mod spec;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(feature = "torch")]
pub mod torchscript;
pub mod train;
mod weights;

pub use capabilities::{
    FeatureLayer, FeatureName, KernelPath, ModelCapabilities, ModelFormat, ModelInfo,
    UnknownFeatureName,
};
pub use dlr::DLR_EPSILON;
pub use error::{ModelError, ShapeMismatch};
pub use network::Network;
pub use spec::{ActivationKind, Architecture, LayerSpec, ModelSpec, Pair};
#[cfg(feature = "torch")]
pub use torchscript::TorchScriptModel;
pub use train::{accuracy, train, EpochStats, Optimizer, TrainConfig};
pub use weights::WeightsFormat;

/// A per-sample loss whose input gradient attacks ascend (untargeted) or descend (targeted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Cross-entropy of the logits against the labels.
    #[default]
    CrossEntropy,
    /// Carlini–Wagner margin `max_{j≠y} z_j − z_y` on the logits: positive once misclassified.
    CwMargin,
    /// Difference of Logits Ratio (Croce & Hein 2020): the CW margin divided by the spread of
    /// the top logits, `−(z_y − max_{j≠y} z_j) / (z_π1 − z_π3)`; invariant to shifting and
    /// positively rescaling the logits (`dlr.rs`).
    Dlr,
    /// Targeted DLR toward the label `t`: `(max_{j≠t} z_j − z_t) / (z_π1 − ½(z_π3 + z_π4))`,
    /// descended. Chosen by an attack with `loss = "dlr"` and `targeted = true`, never named in
    /// a suite file.
    #[serde(skip_deserializing)]
    DlrTargeted,
}

impl Loss {
    /// Per-sample loss values, shape `(batch,)`, built from differentiable candle ops only.
    ///
    /// `labels` must be `(batch,)` class indices below the number of classes; anything else is
    /// a [`ModelError::InvalidLabels`] rather than an index error deep inside candle.
    pub fn per_sample(self, logits: &Tensor, labels: &Tensor) -> Result<Tensor, ModelError> {
        let (batch, classes) = logits.dims2()?;
        let labels = checked_labels(labels, batch, classes)?;
        let index = labels.reshape((batch, 1))?;
        match self {
            Loss::CrossEntropy => {
                let log_probs = candle_nn::ops::log_softmax(logits, 1)?;
                Ok(log_probs.gather(&index, 1)?.reshape(batch)?.neg()?)
            }
            Loss::CwMargin => {
                let true_logit = logits.gather(&index, 1)?.reshape(batch)?;
                // Push the true class far down so the max runs over the other classes only.
                let one_hot = Tensor::arange(0u32, classes as u32, logits.device())?
                    .reshape((1, classes))?
                    .broadcast_as((batch, classes))?
                    .eq(&index.broadcast_as((batch, classes))?)?;
                let masked = one_hot.where_cond(
                    &Tensor::full(f32::MIN / 4.0, (batch, classes), logits.device())?
                        .to_dtype(logits.dtype())?,
                    logits,
                )?;
                Ok((masked.max(1)? - true_logit)?)
            }
            Loss::Dlr | Loss::DlrTargeted => dlr::per_sample(self, logits, &labels),
        }
    }
}

/// `labels` as u32 after checking their shape and range.
fn checked_labels(labels: &Tensor, batch: usize, classes: usize) -> Result<Tensor, ModelError> {
    let values = label_values(labels, batch, classes)?;
    Ok(Tensor::from_vec(values, batch, labels.device())?)
}

/// The values of `labels` after checking that there is one per sample and each is a class.
pub(crate) fn label_values(
    labels: &Tensor,
    batch: usize,
    classes: usize,
) -> Result<Vec<u32>, ModelError> {
    if labels.dims() != [batch] {
        return Err(ModelError::InvalidLabels {
            reason: format!(
                "labels have shape {:?}, expected [{batch}] (one per sample)",
                labels.dims()
            ),
        });
    }
    let values: Vec<u32> = labels.to_dtype(DType::U32)?.to_vec1()?;
    if let Some((index, label)) = values
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= classes)
    {
        return Err(ModelError::InvalidLabels {
            reason: format!("label {label} of sample {index} is not below the {classes} classes"),
        });
    }
    Ok(values)
}

/// The result of one forward + input-gradient pass.
#[derive(Debug, Clone)]
pub struct InputGradient {
    /// Per-sample loss, shape `(batch,)`.
    pub loss: Tensor,
    /// ∂(Σ per-sample loss)/∂inputs, same shape as the inputs; each row is that sample's own gradient.
    pub gradient: Tensor,
    /// The logits of the forward pass, shape `(batch, num_classes)`.
    pub logits: Tensor,
}

/// [`Model::loss_and_input_gradient`] by candle autograd through [`Model::forward`]: the
/// default, and the reference the native CPU path of [`Network`] is tested against.
pub fn autograd_loss_and_input_gradient<M: Model + ?Sized>(
    model: &M,
    inputs: &Tensor,
    labels: &Tensor,
    loss: Loss,
) -> Result<InputGradient, ModelError> {
    let input_var = Var::from_tensor(inputs)?;
    let logits = model.forward(input_var.as_tensor())?;
    let per_sample = loss.per_sample(&logits, labels)?;
    let grads = per_sample.sum_all()?.backward()?;
    let gradient = grads
        .get(input_var.as_tensor())
        .cloned()
        .ok_or(ModelError::NoInputGradient)?;
    Ok(InputGradient {
        loss: per_sample.detach(),
        gradient,
        logits: logits.detach(),
    })
}

/// A classifier that gauntlet can evaluate and attack.
pub trait Model: Send + Sync {
    /// A short human-readable name, e.g. `small_cnn`.
    fn name(&self) -> &str;
    /// Per-sample input shape, e.g. `[1, 28, 28]`; inputs are f32 in [0, 1].
    fn input_shape(&self) -> &[usize];
    /// Number of output classes.
    fn num_classes(&self) -> usize;
    /// The device the weights live on; inputs must be on it too.
    fn device(&self) -> &Device;
    /// Logits, shape `(batch, num_classes)`, for inputs in [0, 1].
    fn forward(&self, inputs: &Tensor) -> Result<Tensor, ModelError>;

    /// Per-sample loss and the gradient of their sum with respect to the inputs.
    ///
    /// The default runs candle autograd through [`Model::forward`]. Models that are not built
    /// from candle ops (e.g. a libtorch model) override it.
    fn loss_and_input_gradient(
        &self,
        inputs: &Tensor,
        labels: &Tensor,
        loss: Loss,
    ) -> Result<InputGradient, ModelError> {
        autograd_loss_and_input_gradient(self, inputs, labels, loss)
    }

    /// Predicted classes, shape `(batch,)`, u32.
    fn predict(&self, inputs: &Tensor) -> Result<Tensor, ModelError> {
        Ok(self.forward(inputs)?.argmax(1)?)
    }

    /// What the model provides beyond logits. The default: input gradients (the default
    /// [`Model::loss_and_input_gradient`] works for any model built from candle ops) and no
    /// feature layers.
    fn capabilities(&self) -> ModelCapabilities {
        ModelCapabilities::default()
    }

    /// The activations of feature layer `layer` for `inputs` (in [0, 1], as for
    /// [`Model::forward`]), shape `(batch, ..)` with the per-sample shape that
    /// [`Model::capabilities`] lists for it. The default provides none: a
    /// [`ModelError::NoSuchFeature`] listing the layers [`Model::capabilities`] declares.
    fn features(&self, inputs: &Tensor, layer: FeatureName) -> Result<Tensor, ModelError> {
        let _ = inputs;
        Err(ModelError::NoSuchFeature {
            requested: layer,
            available: self
                .capabilities()
                .features
                .iter()
                .map(|feature| feature.name)
                .collect(),
        })
    }

    /// A description for reports. The default knows only the name, shapes and classes, with
    /// format [`ModelFormat::Custom`].
    fn info(&self) -> ModelInfo {
        ModelInfo {
            name: self.name().to_string(),
            architecture: None,
            format: ModelFormat::Custom,
            source: None,
            class_names: None,
            parameters: None,
            input_shape: self.input_shape().to_vec(),
            num_classes: self.num_classes(),
        }
    }

    /// Which kernels run the model. The default: candle, since only [`Network`] has native
    /// kernels.
    fn kernel_path(&self) -> KernelPath {
        KernelPath::Candle {
            reason: "the model has no native kernels".to_string(),
        }
    }
}
