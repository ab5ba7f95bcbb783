//! Supervised training of a [`Network`] with cross-entropy, used by `gauntlet train` and the
//! poisoning simulations.
//!
//! Everything random (the shuffle of each epoch, dropout masks) comes from ChaCha8 streams
//! seeded by [`TrainConfig::seed`], so on CPU the same seed gives bit-identical weights.

use candle_core::{DType, Tensor, Var};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Loss, Model, ModelError, Network};

/// The update rule, with PyTorch's semantics (`torch.optim.SGD` / `torch.optim.Adam`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Optimizer {
    /// `g ← ∇ + wd·θ; b ← momentum·b + g (b = g at the first step); θ ← θ − lr·b`.
    Sgd {
        learning_rate: f64,
        #[serde(default)]
        momentum: f64,
        #[serde(default)]
        weight_decay: f64,
    },
    /// Adam with β = (0.9, 0.999), ε = 1e-8 and L2 weight decay added to the gradient.
    Adam {
        learning_rate: f64,
        #[serde(default)]
        weight_decay: f64,
    },
}

/// How [`train`] runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: Optimizer,
    #[serde(default)]
    pub seed: u64,
}

/// What one epoch achieved, measured on the training batches as they were trained on
/// (train-mode forward pass, before each batch's update).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochStats {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's samples.
    pub mean_loss: f64,
    /// Fraction of the epoch's samples whose logits' argmax was the label.
    pub train_accuracy: f64,
}

const ADAM_BETA1: f64 = 0.9;
const ADAM_BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;

/// Trains `network` on `inputs` `(n, input_shape…)` in [0, 1] and integer `labels` `(n)`.
///
/// Batch norm runs in train mode (batch statistics, running-statistic updates) and dropout
/// is active during training; afterwards the weights are plain tensors again and the
/// network evaluates in eval mode. `on_epoch` sees each epoch's stats as it ends.
pub fn train(
    network: &mut Network,
    inputs: &Tensor,
    labels: &Tensor,
    config: &TrainConfig,
    on_epoch: &mut dyn FnMut(&EpochStats),
) -> Result<Vec<EpochStats>, ModelError> {
    validate_config(config)?;
    let labels = validate_data(network, inputs, labels)?;
    let vars = network.make_trainable()?;
    let result = run_epochs(network, &vars, inputs, &labels, config, on_epoch);
    network.freeze();
    result
}

/// Fraction of `inputs` that `model` classifies as `labels`, in eval mode, `batch_size` at a time.
pub fn accuracy(
    model: &dyn Model,
    inputs: &Tensor,
    labels: &Tensor,
    batch_size: usize,
) -> Result<f64, ModelError> {
    if batch_size == 0 {
        return Err(ModelError::InvalidTrainConfig {
            reason: "batch_size must be at least 1".to_string(),
        });
    }
    let total = inputs.dim(0)?;
    if labels.dims() != [total] {
        return Err(ModelError::TrainingData {
            reason: format!(
                "labels have shape {:?}, expected [{total}] to match the inputs",
                labels.dims()
            ),
        });
    }
    if total == 0 {
        return Ok(0.0);
    }
    let labels = labels.to_dtype(DType::U32)?;
    let mut correct = 0u64;
    let mut start = 0;
    while start < total {
        let len = batch_size.min(total - start);
        let predicted = model.predict(&inputs.narrow(0, start, len)?)?;
        correct += count_equal(&predicted, &labels.narrow(0, start, len)?)?;
        start += len;
    }
    Ok(correct as f64 / total as f64)
}

fn validate_config(config: &TrainConfig) -> Result<(), ModelError> {
    let invalid = |reason: String| Err(ModelError::InvalidTrainConfig { reason });
    if config.batch_size == 0 {
        return invalid("batch_size must be at least 1".to_string());
    }
    let (learning_rate, weight_decay, momentum) = match config.optimizer {
        Optimizer::Sgd {
            learning_rate,
            momentum,
            weight_decay,
        } => (learning_rate, weight_decay, momentum),
        Optimizer::Adam {
            learning_rate,
            weight_decay,
        } => (learning_rate, weight_decay, 0.0),
    };
    if !(learning_rate > 0.0 && learning_rate.is_finite()) {
        return invalid(format!(
            "learning_rate must be positive, got {learning_rate}"
        ));
    }
    if !(weight_decay >= 0.0 && weight_decay.is_finite()) {
        return invalid(format!("weight_decay must be ≥ 0, got {weight_decay}"));
    }
    if !(0.0..1.0).contains(&momentum) {
        return invalid(format!("momentum must be in [0, 1), got {momentum}"));
    }
    Ok(())
}

/// Checks shapes and label range; returns the labels as u32.
fn validate_data(
    network: &Network,
    inputs: &Tensor,
    labels: &Tensor,
) -> Result<Tensor, ModelError> {
    crate::network::check_input_shape(inputs, network.input_shape())?;
    let count = inputs.dim(0)?;
    if count == 0 {
        return Err(ModelError::TrainingData {
            reason: "no training samples".to_string(),
        });
    }
    if labels.dims() != [count] {
        return Err(ModelError::TrainingData {
            reason: format!(
                "labels have shape {:?}, expected [{count}] to match the inputs",
                labels.dims()
            ),
        });
    }
    let labels = labels.to_dtype(DType::U32)?;
    let classes = network.num_classes() as u32;
    let values: Vec<u32> = labels.to_vec1()?;
    if let Some((index, label)) = values.iter().enumerate().find(|(_, &l)| l >= classes) {
        return Err(ModelError::TrainingData {
            reason: format!("label {label} at index {index} is not below num_classes = {classes}"),
        });
    }
    Ok(labels)
}

fn run_epochs(
    network: &mut Network,
    vars: &[Var],
    inputs: &Tensor,
    labels: &Tensor,
    config: &TrainConfig,
    on_epoch: &mut dyn FnMut(&EpochStats),
) -> Result<Vec<EpochStats>, ModelError> {
    let mut shuffle_rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut dropout_rng = ChaCha8Rng::seed_from_u64(config.seed);
    dropout_rng.set_stream(1);
    let mut optimizer = OptimizerState::new(config.optimizer, vars)?;
    let count = inputs.dim(0)?;
    let mut order: Vec<u32> = (0..count as u32).collect();
    let mut history = Vec::with_capacity(config.epochs);
    for epoch in 1..=config.epochs {
        order.shuffle(&mut shuffle_rng);
        let mut loss_sum = 0.0;
        let mut correct = 0u64;
        for (batch, chunk) in order.chunks(config.batch_size).enumerate() {
            let index = Tensor::from_slice(chunk, chunk.len(), inputs.device())?;
            let batch_inputs = inputs.index_select(&index, 0)?;
            let batch_labels = labels.index_select(&index, 0)?;
            let logits = network.forward_train(&batch_inputs, &mut dropout_rng)?;
            let per_sample = Loss::CrossEntropy.per_sample(&logits, &batch_labels)?;
            let batch_loss = per_sample
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
            if !batch_loss.is_finite() {
                return Err(ModelError::Diverged { epoch, batch });
            }
            loss_sum += batch_loss;
            correct += count_equal(&logits.argmax(1)?, &batch_labels)?;
            let grads = per_sample.mean_all()?.backward()?;
            optimizer.step(vars, &grads)?;
        }
        let stats = EpochStats {
            epoch,
            mean_loss: loss_sum / count as f64,
            train_accuracy: correct as f64 / count as f64,
        };
        on_epoch(&stats);
        history.push(stats);
    }
    Ok(history)
}

fn count_equal(predicted: &Tensor, labels: &Tensor) -> Result<u64, ModelError> {
    let equal = predicted
        .to_dtype(DType::U32)?
        .eq(&labels.to_dtype(DType::U32)?)?;
    Ok(u64::from(
        equal.to_dtype(DType::U32)?.sum_all()?.to_scalar::<u32>()?,
    ))
}

/// Per-parameter optimiser state: SGD momentum buffers or Adam moments.
struct OptimizerState {
    rule: Optimizer,
    /// SGD: momentum buffers; Adam: first moments.
    first: Vec<Option<Tensor>>,
    /// Adam: second moments.
    second: Vec<Option<Tensor>>,
    steps: i32,
}

impl OptimizerState {
    fn new(rule: Optimizer, vars: &[Var]) -> Result<Self, ModelError> {
        Ok(Self {
            rule,
            first: vec![None; vars.len()],
            second: vec![None; vars.len()],
            steps: 0,
        })
    }

    fn step(
        &mut self,
        vars: &[Var],
        grads: &candle_core::backprop::GradStore,
    ) -> Result<(), ModelError> {
        self.steps += 1;
        for (index, var) in vars.iter().enumerate() {
            // A parameter the loss does not depend on gets no gradient and no update.
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            // Gradients carry the backward graph (which references the parameters); detached,
            // the optimiser state does not chain one step's graph to the next and leak memory.
            let grad = &grad.detach();
            let value = var.as_tensor().detach();
            let updated = match self.rule {
                Optimizer::Sgd {
                    learning_rate,
                    momentum,
                    weight_decay,
                } => self.sgd(index, &value, grad, learning_rate, momentum, weight_decay)?,
                Optimizer::Adam {
                    learning_rate,
                    weight_decay,
                } => self.adam(index, &value, grad, learning_rate, weight_decay)?,
            };
            var.set(&updated)?;
        }
        Ok(())
    }

    fn sgd(
        &mut self,
        index: usize,
        value: &Tensor,
        grad: &Tensor,
        learning_rate: f64,
        momentum: f64,
        weight_decay: f64,
    ) -> Result<Tensor, ModelError> {
        let mut direction = with_weight_decay(grad, value, weight_decay)?;
        if momentum > 0.0 {
            direction = match &self.first[index] {
                Some(buffer) => (buffer.affine(momentum, 0.0)? + &direction)?,
                None => direction,
            };
            self.first[index] = Some(direction.clone());
        }
        Ok((value - direction.affine(learning_rate, 0.0)?)?)
    }

    fn adam(
        &mut self,
        index: usize,
        value: &Tensor,
        grad: &Tensor,
        learning_rate: f64,
        weight_decay: f64,
    ) -> Result<Tensor, ModelError> {
        let grad = with_weight_decay(grad, value, weight_decay)?;
        let first = match &self.first[index] {
            Some(m) => (m.affine(ADAM_BETA1, 0.0)? + grad.affine(1.0 - ADAM_BETA1, 0.0)?)?,
            None => grad.affine(1.0 - ADAM_BETA1, 0.0)?,
        };
        let grad_sq = grad.sqr()?;
        let second = match &self.second[index] {
            Some(v) => (v.affine(ADAM_BETA2, 0.0)? + grad_sq.affine(1.0 - ADAM_BETA2, 0.0)?)?,
            None => grad_sq.affine(1.0 - ADAM_BETA2, 0.0)?,
        };
        let first_correction = 1.0 - ADAM_BETA1.powi(self.steps);
        let second_correction = 1.0 - ADAM_BETA2.powi(self.steps);
        let denominator = second
            .affine(1.0 / second_correction, 0.0)?
            .sqrt()?
            .affine(1.0, ADAM_EPS)?;
        let step = first
            .affine(learning_rate / first_correction, 0.0)?
            .div(&denominator)?;
        self.first[index] = Some(first);
        self.second[index] = Some(second);
        Ok((value - step)?)
    }
}

fn with_weight_decay(
    grad: &Tensor,
    value: &Tensor,
    weight_decay: f64,
) -> Result<Tensor, ModelError> {
    if weight_decay == 0.0 {
        Ok(grad.clone())
    } else {
        Ok((grad + value.affine(weight_decay, 0.0)?)?)
    }
}
