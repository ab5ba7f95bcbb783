//! Neural Cleanse: for every class, the smallest trigger that sends clean inputs there; a
//! class whose trigger is abnormally small is a backdoor target.
//!
//! ## What it does
//!
//! For each class `t` it optimises a mask `m` (`H×W`, shared by the channels) and a pattern
//! `p` (`C×H×W`) so that `x′ = (1 − m)·x + m·p` is classified as `t`, with the smallest
//! `‖m‖₁`:
//!
//! `L(m, p) = mean_i CE(f(x′_i), t) + c·‖m‖₁`.
//!
//! Both live in [0, 1] through `m = (1 + tanh a)/2`, `p = (1 + tanh b)/2` and Adam runs on the
//! unconstrained `a`, `b`. The gradient is the chain rule on the model's input gradient
//! `g = ∂CE/∂x′`: `∂L/∂m_hw = mean_i Σ_c g_ichw (p_chw − x_ichw) + c`,
//! `∂L/∂p_chw = mean_i g_ichw m_hw`, times `(1 − tanh²)/2` (checked against finite differences
//! in the tests). The cost `c` follows the reference schedule: it starts at 0; after
//! `patience` epochs that reach the attack-success target it is set to `init_cost`; then
//! `patience` successful epochs in a row multiply it by `cost_multiplier` and `patience`
//! failing ones divide it by `cost_multiplier^1.5`. The smallest mask of an epoch that reached
//! the target is kept; the search stops early once the cost has gone both up and down and the
//! best norm has not improved by 1% for `early_stop_patience` epochs.
//!
//! The classes' `‖m‖₁` then go through the MAD test ([`crate::backdoor::anomaly`]: median of
//! an even count = mean of the two middle values; MAD = 0 guarded): a class is flagged when
//! its norm is below the median and its anomaly index exceeds `anomaly_threshold`.
//!
//! ## Threat model
//!
//! White box: needs input gradients and a few hundred clean inputs, no training data.
//!
//! ## Parameters
//!
//! `learning_rate` 0.1, `init_cost` 1e-3, `attack_success_threshold` 0.98, `patience` 5,
//! `cost_multiplier` 2, `early_stop_patience` 25, `early_stop_threshold` 0.99, `batch_size` 32
//! (the reference implementation and BackdoorBench's configuration), `epochs` 80
//! (BackdoorBench's `nc_epoch`), Adam β = (0.5, 0.9), ε = 1e-7 (the reference), and
//! `anomaly_threshold` 2 (the paper). `iou_threshold` 0.5 binarises masks for the IoU.
//!
//! ## Known-answer tests
//!
//! The analytic gradient of `L` with respect to `a` and `b` matches central finite
//! differences on a linear model; the MAD test is checked on known numbers; on UCI digits a
//! BadNets model's target is flagged and a clean twin's classes are not
//! (`tests/it/backdoor.rs`).
//!
//! ## Reference
//!
//! Wang, Yao, Shan, Li, Viswanath, Zheng, Zhao. *Neural Cleanse: Identifying and Mitigating
//! Backdoor Attacks in Neural Networks.* IEEE S&P 2019. Defaults read from
//! `bolunwang/backdoor` (`visualizer.py`, `gtsrb_visualize_example.py`,
//! `mad_outlier_detection.py`) and BackdoorBench (`config/defense/nc/cifar10.yaml`).

use candle_core::Tensor;
use gauntlet_models::{Loss, Model};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Deserialize;

use super::{
    check_fraction, check_model_data, check_positive, ClassScan, ScanData, ScanDetail, ScanEntry,
    ScanReport, TriggerScan,
};
use crate::backdoor::{predictions, AnomalyIndices, ImageSet, Trigger};
use crate::params::parse_params;
use crate::{AttackError, ModelAccess, ParameterDoc, SampleRandomness, Stream};

/// The registry entry.
pub const ENTRY: ScanEntry = ScanEntry {
    name: "neural_cleanse",
    summary: "Neural Cleanse: the smallest mask-and-pattern trigger per class by gradient descent; classes whose mask L1 is a low-side MAD outlier are flagged",
    reference: "Wang et al. Neural Cleanse: Identifying and Mitigating Backdoor Attacks in Neural Networks. IEEE S&P 2019",
    parameters: &[
        ParameterDoc { name: "learning_rate", default: "0.1", description: "Adam step size on the tanh-space mask and pattern." },
        ParameterDoc { name: "init_cost", default: "1e-3", description: "The mask-norm weight once the first trigger reaches the success target." },
        ParameterDoc { name: "attack_success_threshold", default: "0.98", description: "Fraction of clean inputs the trigger must send to the class." },
        ParameterDoc { name: "patience", default: "5", description: "Epochs above (below) the target before the cost is raised (lowered)." },
        ParameterDoc { name: "cost_multiplier", default: "2.0", description: "Cost ×multiplier going up, ÷multiplier^1.5 going down." },
        ParameterDoc { name: "epochs", default: "80", description: "Passes over the clean inputs per class, at most." },
        ParameterDoc { name: "batch_size", default: "32", description: "Clean inputs per gradient step." },
        ParameterDoc { name: "early_stop_patience", default: "25", description: "Epochs without a 1% improvement of the best mask before stopping (once the cost has moved both ways)." },
        ParameterDoc { name: "early_stop_threshold", default: "0.99", description: "An improvement counts when the best norm falls below this fraction of the previous best." },
        ParameterDoc { name: "anomaly_threshold", default: "2.0", description: "A class is flagged when its mask norm is below the median and its anomaly index exceeds this." },
        ParameterDoc { name: "iou_threshold", default: "0.5", description: "Mask values above this count as trigger pixels for the IoU with a known trigger." },
    ],
    needs: ModelAccess::InputGradients,
    build,
};

const ADAM_BETA1: f64 = 0.5;
const ADAM_BETA2: f64 = 0.9;
const ADAM_EPSILON: f64 = 1e-7;

/// The suite-file parameters.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub learning_rate: f64,
    pub init_cost: f64,
    pub attack_success_threshold: f64,
    pub patience: usize,
    pub cost_multiplier: f64,
    pub epochs: usize,
    pub batch_size: usize,
    pub early_stop_patience: usize,
    pub early_stop_threshold: f64,
    pub anomaly_threshold: f64,
    pub iou_threshold: f32,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            learning_rate: 0.1,
            init_cost: 1e-3,
            attack_success_threshold: 0.98,
            patience: 5,
            cost_multiplier: 2.0,
            epochs: 80,
            batch_size: 32,
            early_stop_patience: 25,
            early_stop_threshold: 0.99,
            anomaly_threshold: 2.0,
            iou_threshold: 0.5,
        }
    }
}

impl Params {
    /// Errors name the first bad key.
    pub fn validate(&self) -> Result<(), AttackError> {
        let positive = |key: &str, value: f64| {
            if value > 0.0 && value.is_finite() {
                Ok(())
            } else {
                Err(AttackError::invalid_parameter(
                    key,
                    format!("must be a finite number > 0, got {value}"),
                ))
            }
        };
        positive("learning_rate", self.learning_rate)?;
        if !(self.init_cost >= 0.0 && self.init_cost.is_finite()) {
            return Err(AttackError::invalid_parameter(
                "init_cost",
                format!("must be a finite number ≥ 0, got {}", self.init_cost),
            ));
        }
        check_fraction("attack_success_threshold", self.attack_success_threshold)?;
        check_positive("patience", self.patience)?;
        if !(self.cost_multiplier > 1.0 && self.cost_multiplier.is_finite()) {
            return Err(AttackError::invalid_parameter(
                "cost_multiplier",
                format!("must be a finite number > 1, got {}", self.cost_multiplier),
            ));
        }
        check_positive("epochs", self.epochs)?;
        check_positive("batch_size", self.batch_size)?;
        check_positive("early_stop_patience", self.early_stop_patience)?;
        positive("early_stop_threshold", self.early_stop_threshold)?;
        check_fraction("early_stop_threshold", self.early_stop_threshold)?;
        if self.anomaly_threshold.is_nan() || self.anomaly_threshold < 0.0 {
            return Err(AttackError::invalid_parameter(
                "anomaly_threshold",
                format!("must be ≥ 0, got {}", self.anomaly_threshold),
            ));
        }
        check_fraction("iou_threshold", f64::from(self.iou_threshold))?;
        Ok(())
    }
}

/// Neural Cleanse with validated parameters.
#[derive(Debug, Clone)]
pub struct NeuralCleanse {
    params: Params,
}

impl NeuralCleanse {
    pub fn new(params: Params) -> Result<Self, AttackError> {
        params.validate()?;
        Ok(Self { params })
    }

    pub fn params(&self) -> &Params {
        &self.params
    }
}

fn build(params: &toml::Table) -> Result<Box<dyn TriggerScan>, AttackError> {
    Ok(Box::new(NeuralCleanse::new(parse_params(params)?)?))
}

/// The trigger recovered for one class.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassTrigger {
    pub class: u32,
    /// The smallest-norm trigger of an epoch that reached the success target, or the last one
    /// when none did.
    pub trigger: Trigger,
    /// Whether any epoch reached `attack_success_threshold`.
    pub reached_target: bool,
    /// Fraction of all clean inputs that `trigger` sends to the class, measured after the
    /// search.
    pub attack_success: f64,
    /// Epochs run (fewer than `epochs` after an early stop).
    pub epochs: usize,
    /// The cost weight at the end.
    pub final_cost: f64,
}

/// What Neural Cleanse adds to the per-class figures.
#[derive(Debug, Clone, PartialEq)]
pub struct NeuralCleanseDetail {
    /// One per class, in class order.
    pub triggers: Vec<ClassTrigger>,
    /// Median of the mask norms (mean of the two middle ones for an even class count).
    pub median: f64,
    /// Median absolute deviation of the mask norms, without the 1.4826 constant.
    pub mad: f64,
}

impl TriggerScan for NeuralCleanse {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    /// Per class, at most `epochs` passes over the clean inputs, one gradient each, and one
    /// forward pass over them scoring the recovered trigger.
    fn passes(&self, work: &super::ScanWork) -> crate::Passes {
        let per_class = crate::Passes::gradients(
            (self.params.epochs as u64).saturating_mul(work.clean as u64),
        ) + crate::Passes::forwards(work.clean as u64);
        per_class.times(work.classes as u64)
    }

    fn scan(
        &self,
        model: &dyn Model,
        data: &ScanData<'_>,
        seed: u64,
    ) -> Result<ScanReport, AttackError> {
        check_model_data(model, data.clean, "clean")?;
        if let Some(trigger) = data.true_trigger {
            trigger.check_shape(data.clean.shape())?;
        }
        let randomness =
            SampleRandomness::for_samples(seed, ENTRY.name, 0..model.num_classes());
        let triggers = (0..model.num_classes())
            .map(|class| self.reverse_engineer(model, data.clean, class as u32, &randomness))
            .collect::<Result<Vec<_>, _>>()?;
        let norms: Vec<f64> = triggers.iter().map(|t| t.trigger.mask_l1()).collect();
        let anomaly = AnomalyIndices::of(&norms).ok_or_else(|| {
            AttackError::invalid_parameter("clean", "a recovered mask norm is NaN")
        })?;
        let flagged: Vec<u32> = anomaly
            .below_median_outliers(&norms, self.params.anomaly_threshold)
            .into_iter()
            .map(|class| class as u32)
            .collect();
        let classes = triggers
            .iter()
            .zip(&anomaly.indices)
            .map(|(found, &index)| ClassScan {
                class: found.class,
                anomaly_index: Some(index),
                mask_l1: Some(found.trigger.mask_l1()),
                flip_rate: Some(found.attack_success),
                mask_iou: data
                    .true_trigger
                    .and_then(|truth| found.trigger.mask_iou(truth, self.params.iou_threshold)),
                flagged: flagged.contains(&found.class),
            })
            .collect();
        Ok(ScanReport {
            scan: ENTRY.name,
            classes,
            flagged,
            detail: ScanDetail::NeuralCleanse(NeuralCleanseDetail {
                triggers,
                median: anomaly.median,
                mad: anomaly.mad,
            }),
        })
    }
}

impl NeuralCleanse {
    /// The smallest trigger found for `class`.
    pub fn reverse_engineer(
        &self,
        model: &dyn Model,
        clean: &ImageSet,
        class: u32,
        randomness: &SampleRandomness,
    ) -> Result<ClassTrigger, AttackError> {
        let params = &self.params;
        let shape = clean.shape();
        let [channels, height, width] = shape;
        let plane = height * width;
        let mut init_rng = randomness.generator(class as usize, Stream::Restart(0));
        let mut shuffle_rng = randomness.generator(class as usize, Stream::Custom(0));
        // The reference starts from a uniformly random mask and pattern; clamped away from 0
        // and 1 so that atanh is finite.
        let mut to_logit = |_: usize| {
            let u: f64 = init_rng.random::<f64>().clamp(0.005, 0.995);
            (2.0 * u - 1.0).atanh()
        };
        let mut variables = MaskPattern {
            mask_logits: (0..plane).map(&mut to_logit).collect(),
            pattern_logits: (0..channels * plane).map(&mut to_logit).collect(),
        };
        let mut adam_mask = Adam::new(plane, params.learning_rate);
        let mut adam_pattern = Adam::new(channels * plane, params.learning_rate);

        let mut cost = 0.0;
        let (mut cost_set, mut cost_up, mut cost_down) = (0usize, 0usize, 0usize);
        let (mut went_up, mut went_down) = (false, false);
        let mut best: Option<(f64, Trigger)> = None;
        let mut early_stop_counter = 0usize;
        let mut early_stop_best = f64::INFINITY;
        let mut order: Vec<usize> = (0..clean.len()).collect();
        let mut epochs = 0;
        for _ in 0..params.epochs {
            epochs += 1;
            order.shuffle(&mut shuffle_rng);
            let (mut hits, mut norm_sum) = (0usize, 0.0);
            for chunk in order.chunks(params.batch_size) {
                let batch = clean.subset(chunk);
                let step = objective(model, &batch, class, &variables, cost)?;
                hits += step.hits;
                norm_sum += step.mask_l1 * chunk.len() as f64;
                adam_mask.step(&mut variables.mask_logits, &step.grad_mask_logits);
                adam_pattern.step(&mut variables.pattern_logits, &step.grad_pattern_logits);
            }
            let success = hits as f64 / clean.len() as f64;
            let norm = norm_sum / clean.len() as f64;
            let reached = success >= params.attack_success_threshold;
            if reached && best.as_ref().is_none_or(|(best_norm, _)| norm < *best_norm) {
                best = Some((norm, variables.trigger(shape)?));
            }

            let best_norm = best.as_ref().map_or(f64::INFINITY, |(n, _)| *n);
            if best_norm.is_finite() {
                if best_norm >= params.early_stop_threshold * early_stop_best {
                    early_stop_counter += 1;
                } else {
                    early_stop_counter = 0;
                }
            }
            early_stop_best = early_stop_best.min(best_norm);
            if went_up && went_down && early_stop_counter >= params.early_stop_patience {
                break;
            }

            if cost == 0.0 && reached {
                cost_set += 1;
                if cost_set >= params.patience {
                    cost = params.init_cost;
                    (cost_up, cost_down, went_up, went_down) = (0, 0, false, false);
                }
            } else {
                cost_set = 0;
            }
            if reached {
                cost_up += 1;
                cost_down = 0;
            } else {
                cost_up = 0;
                cost_down += 1;
            }
            if cost_up >= params.patience {
                cost_up = 0;
                cost *= params.cost_multiplier;
                went_up = true;
            } else if cost_down >= params.patience {
                cost_down = 0;
                cost /= params.cost_multiplier.powf(1.5);
                went_down = true;
            }
        }
        let reached_target = best.is_some();
        let trigger = match best {
            Some((_, trigger)) => trigger,
            None => variables.trigger(shape)?,
        };
        let stamped = trigger.stamp_all(clean)?;
        let predicted = predictions(model, &stamped, 256)?;
        let attack_success =
            predicted.iter().filter(|&&p| p == class).count() as f64 / clean.len() as f64;
        Ok(ClassTrigger {
            class,
            trigger,
            reached_target,
            attack_success,
            epochs,
            final_cost: cost,
        })
    }
}

/// The unconstrained variables: `m = (1 + tanh a)/2`, `p = (1 + tanh b)/2`.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskPattern {
    /// `a`, one per pixel position (`H·W`).
    pub mask_logits: Vec<f64>,
    /// `b`, one per pixel and channel (`C·H·W`).
    pub pattern_logits: Vec<f64>,
}

fn squash(value: f64) -> f64 {
    0.5 * (1.0 + value.tanh())
}

/// `d squash / d value`.
fn squash_slope(value: f64) -> f64 {
    let t = value.tanh();
    0.5 * (1.0 - t * t)
}

impl MaskPattern {
    /// The mask and pattern in [0, 1] as a trigger.
    pub fn trigger(&self, shape: [usize; 3]) -> Result<Trigger, AttackError> {
        Trigger::new(
            shape,
            self.mask_logits.iter().map(|&a| squash(a) as f32).collect(),
            self.pattern_logits.iter().map(|&b| squash(b) as f32).collect(),
        )
    }
}

/// The objective on one batch and its gradient with respect to the unconstrained variables.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectiveValue {
    /// `mean CE + cost·‖m‖₁`.
    pub loss: f64,
    /// `‖m‖₁` of the mask the batch was stamped with.
    pub mask_l1: f64,
    /// Stamped inputs classified as the target.
    pub hits: usize,
    /// `∂loss/∂a`.
    pub grad_mask_logits: Vec<f64>,
    /// `∂loss/∂b`.
    pub grad_pattern_logits: Vec<f64>,
}

/// `mean_i CE(f((1 − m)·x_i + m·p), class) + cost·‖m‖₁` on `batch` and its gradient by the
/// chain rule on the model's input gradient (see the module docs).
pub fn objective(
    model: &dyn Model,
    batch: &ImageSet,
    class: u32,
    variables: &MaskPattern,
    cost: f64,
) -> Result<ObjectiveValue, AttackError> {
    let [channels, height, width] = batch.shape();
    let plane = height * width;
    let len = channels * plane;
    let count = batch.len();
    if variables.mask_logits.len() != plane || variables.pattern_logits.len() != len {
        return Err(AttackError::ShapeMismatch {
            what: "Neural Cleanse mask and pattern vs the images",
            expected: vec![plane, len],
            actual: vec![variables.mask_logits.len(), variables.pattern_logits.len()],
        });
    }
    let mask: Vec<f64> = variables.mask_logits.iter().map(|&a| squash(a)).collect();
    let pattern: Vec<f64> = variables.pattern_logits.iter().map(|&b| squash(b)).collect();
    let mut stamped = Vec::with_capacity(count * len);
    for image in batch.pixels().chunks(len) {
        for (index, &x) in image.iter().enumerate() {
            let m = mask[index % plane];
            stamped.push(((1.0 - m) * f64::from(x) + m * pattern[index]) as f32);
        }
    }
    let device = model.device();
    let inputs = Tensor::from_vec(stamped, (count, channels, height, width), device)?;
    let labels = Tensor::from_vec(vec![class; count], count, device)?;
    let result = model.loss_and_input_gradient(&inputs, &labels, Loss::CrossEntropy)?;
    let losses: Vec<f32> = result.loss.to_vec1()?;
    let gradient: Vec<f32> = result.gradient.flatten_all()?.to_vec1()?;
    let predicted: Vec<u32> = result.logits.argmax(1)?.to_vec1()?;
    let scale = 1.0 / count as f64;
    let mut grad_mask = vec![0.0; plane];
    let mut grad_pattern = vec![0.0; len];
    for (image, gradient) in batch.pixels().chunks(len).zip(gradient.chunks(len)) {
        for index in 0..len {
            let g = f64::from(gradient[index]) * scale;
            let pixel = index % plane;
            grad_mask[pixel] += g * (pattern[index] - f64::from(image[index]));
            grad_pattern[index] += g * mask[pixel];
        }
    }
    let mask_l1: f64 = mask.iter().sum();
    let cross_entropy = losses.iter().map(|&l| f64::from(l)).sum::<f64>() * scale;
    Ok(ObjectiveValue {
        loss: cross_entropy + cost * mask_l1,
        mask_l1,
        hits: predicted.iter().filter(|&&p| p == class).count(),
        grad_mask_logits: grad_mask
            .iter()
            .zip(&variables.mask_logits)
            .map(|(g, &a)| (g + cost) * squash_slope(a))
            .collect(),
        grad_pattern_logits: grad_pattern
            .iter()
            .zip(&variables.pattern_logits)
            .map(|(g, &b)| g * squash_slope(b))
            .collect(),
    })
}

/// Adam on a flat vector, with the reference's β = (0.5, 0.9).
struct Adam {
    learning_rate: f64,
    first: Vec<f64>,
    second: Vec<f64>,
    steps: i32,
}

impl Adam {
    fn new(len: usize, learning_rate: f64) -> Self {
        Self {
            learning_rate,
            first: vec![0.0; len],
            second: vec![0.0; len],
            steps: 0,
        }
    }

    fn step(&mut self, values: &mut [f64], gradient: &[f64]) {
        self.steps += 1;
        let first_correction = 1.0 - ADAM_BETA1.powi(self.steps);
        let second_correction = 1.0 - ADAM_BETA2.powi(self.steps);
        for (((value, &g), m), v) in values
            .iter_mut()
            .zip(gradient)
            .zip(&mut self.first)
            .zip(&mut self.second)
        {
            *m = ADAM_BETA1 * *m + (1.0 - ADAM_BETA1) * g;
            *v = ADAM_BETA2 * *v + (1.0 - ADAM_BETA2) * g * g;
            let m_hat = *m / first_correction;
            let v_hat = *v / second_correction;
            *value -= self.learning_rate * m_hat / (v_hat.sqrt() + ADAM_EPSILON);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use gauntlet_models::testing::LinearModel;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A 3-class linear model on 2×3×3 images with fixed pseudo-random weights.
    fn model_and_batch() -> (LinearModel, ImageSet) {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let weight = (0..3 * 18).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let model =
            LinearModel::new(weight, vec![0.1, -0.2, 0.3], vec![2, 3, 3], 3, &Device::Cpu)
                .unwrap();
        let pixels = (0..4 * 18).map(|_| rng.random::<f32>()).collect();
        let batch = ImageSet::new([2, 3, 3], pixels, vec![0, 1, 2, 0], 3).unwrap();
        (model, batch)
    }

    #[test]
    fn the_chain_rule_gradient_matches_central_finite_differences() {
        let (model, batch) = model_and_batch();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let variables = MaskPattern {
            mask_logits: (0..9).map(|_| rng.random_range(-1.5..1.5)).collect(),
            pattern_logits: (0..18).map(|_| rng.random_range(-1.5..1.5)).collect(),
        };
        let cost = 0.05;
        let analytic = objective(&model, &batch, 1, &variables, cost).unwrap();
        let h = 1e-2;
        let loss_at = |variables: &MaskPattern| {
            objective(&model, &batch, 1, variables, cost).unwrap().loss
        };
        let check = |numeric: f64, analytic: f64, what: &str| {
            let tolerance = 2e-3 * analytic.abs().max(1e-2);
            assert!(
                (numeric - analytic).abs() <= tolerance,
                "{what}: finite difference {numeric} vs analytic {analytic}"
            );
        };
        for k in 0..9 {
            let (mut plus, mut minus) = (variables.clone(), variables.clone());
            plus.mask_logits[k] += h;
            minus.mask_logits[k] -= h;
            let numeric = (loss_at(&plus) - loss_at(&minus)) / (2.0 * h);
            check(numeric, analytic.grad_mask_logits[k], &format!("mask {k}"));
        }
        for k in 0..18 {
            let (mut plus, mut minus) = (variables.clone(), variables.clone());
            plus.pattern_logits[k] += h;
            minus.pattern_logits[k] -= h;
            let numeric = (loss_at(&plus) - loss_at(&minus)) / (2.0 * h);
            check(numeric, analytic.grad_pattern_logits[k], &format!("pattern {k}"));
        }
        let expected_l1: f64 = variables.mask_logits.iter().map(|&a| squash(a)).sum();
        assert!((analytic.mask_l1 - expected_l1).abs() < 1e-12);
    }

    #[test]
    fn bad_parameters_name_their_key() {
        for (params, key) in [
            ("learning_rate = 0.0", "learning_rate"),
            ("init_cost = -1.0", "init_cost"),
            ("attack_success_threshold = 1.5", "attack_success_threshold"),
            ("patience = 0", "patience"),
            ("cost_multiplier = 1.0", "cost_multiplier"),
            ("epochs = 0", "epochs"),
            ("batch_size = 0", "batch_size"),
            ("anomaly_threshold = -2.0", "anomaly_threshold"),
            ("iou_treshold = 0.5", "iou_treshold"),
        ] {
            let table: toml::Table = toml::from_str(params).unwrap();
            let error = build(&table).err().unwrap();
            assert!(error.to_string().contains(&format!("`{key}`")), "{params}: {error}");
        }
    }
}
