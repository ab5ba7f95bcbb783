use candle_core::DType;

/// Everything that can go wrong building or running an attack.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttackError {
    /// A suite-file parameter (or ε) is unknown or has a bad value; `key` names it.
    #[error("invalid parameter `{key}`: {message}")]
    InvalidParameter { key: String, message: String },
    /// The inputs are not f32; attacks and projections work in f32 pixel space.
    #[error("attack inputs must be f32, got {dtype:?}")]
    InputDtype { dtype: DType },
    /// Some input values are outside [0, 1] (or NaN), so no point of the ε-ball is in the box
    /// the attack promises to stay in.
    #[error(
        "attack inputs must lie in [0, 1]: {count} value(s) do not (smallest {min}, largest {max})"
    )]
    InputOutOfRange { count: usize, min: f32, max: f32 },
    /// Two tensors that must agree in shape do not, e.g. labels vs inputs.
    #[error("shape mismatch: {what}: expected {expected:?}, got {actual:?}")]
    ShapeMismatch {
        what: &'static str,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    /// A true label is not a class of the model.
    #[error(
        "label {label} of sample {sample} is out of range for a model with {num_classes} classes"
    )]
    LabelOutOfRange {
        sample: usize,
        label: u32,
        num_classes: usize,
    },
    /// The caller passed a different number of per-sample generators than samples.
    #[error("{generators} per-sample random generators for {samples} samples")]
    RandomnessMismatch { samples: usize, generators: usize },
    /// A detector was given observations without a part it needs (e.g. the logits).
    #[error("detector `{detector}` needs {what}, which the observations lack")]
    DetectorInput {
        detector: &'static str,
        what: &'static str,
    },
    /// A detector was asked to score before it was fitted on clean data.
    #[error("detector `{detector}` must be fitted on clean data before it scores")]
    DetectorNotFitted { detector: &'static str },
    /// A detector met a NaN or infinite value in what it fits on or scores.
    #[error("detector `{detector}`: {what} of sample {sample} is not finite")]
    NonFinite {
        detector: &'static str,
        what: &'static str,
        sample: usize,
    },
    #[error(transparent)]
    Model(#[from] gauntlet_models::ModelError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl AttackError {
    /// An [`AttackError::InvalidParameter`] for `key`.
    pub fn invalid_parameter(key: impl Into<String>, message: impl Into<String>) -> Self {
        AttackError::InvalidParameter {
            key: key.into(),
            message: message.into(),
        }
    }
}
