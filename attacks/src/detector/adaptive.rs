//! Adaptive PGD: an L∞ PGD that knows the guardrail in front of the model and evades it, in
//! one of two ways ([`Evasion`]), chosen by what the detector looks at.
//!
//! ## Into the accept box (the z-score input validator)
//!
//! Untargeted cross-entropy PGD (Madry et al. 2018) whose projection at every step is onto
//! the intersection of three boxes per feature: the L∞ ε-ball around the clean input, the
//! pixel range `[0, 1]`, and the detector's accept box ([`Detector::accept_box`]; for the
//! z-score validator with `max_abs`, `μ_j ± threshold · max(σ_j, std_floor)`). The
//! intersection of boxes is a box, so the Euclidean projection clamps each feature
//! (Athalye, Carlini & Wagner 2018 and Tramèr et al. 2020 on adaptive attacks: a defence is
//! evaluated against an attacker who knows it).
//!
//! The box is computed in f64 and then rounded **inwards** to f32 (its lower end up, its upper
//! end down), so the f32 adversarial input lies inside the accept box exactly, not only up to
//! rounding: the validator accepts every output. When the three boxes do not meet for some
//! feature of a sample, no input within ε of it passes the validator; that sample gets the
//! plain PGD step (ε-ball ∩ pixel range), and the validator rejects it whatever it is.
//!
//! ## A confident misclassification (the confidence and entropy output monitors)
//!
//! Both monitors score the softmax: `1 − max_k p_k`, and the entropy `−Σ p_k log p_k`. Both
//! fall as the softmax concentrates on one class, so the attacker's objective is a
//! misclassification the model is sure of. The attack descends the targeted cross-entropy
//! `−log p_t` toward `t`, the clean input's most likely wrong class (APGD-T's first target):
//! once `p_t` is the largest probability, `−log p_t` is a monotone function of the
//! confidence score, and driving `p_t` to 1 drives the entropy to 0, so this loss is the
//! detector's score and the misclassification objective at once, differentiable through the
//! model's own input gradients. After every step the detector scores the iterate; each sample
//! keeps the misclassified iterate with the lowest detector score seen (the last iterate when
//! none was misclassified). The projection is onto the ε-ball ∩ `[0, 1]`.
//!
//! ## Parameters
//!
//! `steps` (default 20), `step_size` (default `2.5 · ε / steps`), `random_start` (default
//! true: a uniform start inside the box, from the sample's [`Stream::Restart`]`(0)`).
//!
//! ## Known-answer test
//!
//! Against a fitted z-score validator, every output is accepted by the validator's own rule,
//! lies within ε of its input and in `[0, 1]` (`attacks/tests/it/detector.rs`, and the unit
//! test below on a linear model).
//!
//! Against the confidence monitor on a linear model, every output the attack misclassifies
//! scores below the clean input's score, and below what untargeted PGD of the same budget
//! leaves (the unit test below).
//!
//! Mahalanobis distance on penultimate features has no evasion here: it would need input
//! gradients of a feature-space loss, and `Model` exposes input gradients of its output losses
//! only (docs/guardrails.md).

use candle_core::{DType, Tensor};
use gauntlet_models::{Loss, Model};
use rand::Rng;

use super::{observe, Detector, DetectorNeeds, Observations};
use crate::{AttackError, SampleRandomness, Stream};

/// The registry-like name reports give the adaptive attack.
pub const NAME: &str = "adaptive_pgd";

/// How the adaptive attack evades a detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evasion {
    /// Project every step into the detector's accept box ([`Detector::accept_box`]).
    AcceptBox,
    /// Descend the targeted cross-entropy toward the runner-up class and keep the
    /// misclassified iterate the detector scores lowest ([`Detector::falls_with_confidence`]).
    ConfidentMisclassification,
}

impl Evasion {
    /// How adaptive PGD evades `detector` (fitted or not); `None` when it knows no way.
    pub fn of(detector: &dyn Detector) -> Option<Self> {
        if detector.accept_box().is_some() {
            Some(Self::AcceptBox)
        } else if detector.falls_with_confidence() {
            Some(Self::ConfidentMisclassification)
        } else {
            None
        }
    }

    /// The attack's objective, in words (the plan's `objective`).
    pub fn objective(self) -> &'static str {
        match self {
            Self::AcceptBox => "untargeted cross_entropy, projected into the detector's accept box",
            Self::ConfidentMisclassification => {
                "targeted cross_entropy toward the runner-up class; the misclassified iterate \
                 the detector scores lowest"
            }
        }
    }
}

/// How the attack steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Optimizer {
    /// Signed steps of a fixed size (Madry et al.).
    Pgd,
    /// APGD-CE's schedule (Croce & Hein 2020: step halving at checkpoints, momentum 0.75),
    /// projecting into the accept box at every step; against [`Evasion::AcceptBox`] only.
    Apgd,
}

/// The name reports give the adaptive APGD.
pub const APGD_NAME: &str = "adaptive_apgd";

/// The attack's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptivePgd {
    pub epsilon: f32,
    pub steps: u32,
    /// `None`: `2.5 · ε / steps` (PGD only; APGD has its own schedule).
    pub step_size: Option<f32>,
    pub random_start: bool,
    pub evasion: Evasion,
    pub optimizer: Optimizer,
}

impl AdaptivePgd {
    /// Errors name the bad setting.
    pub fn new(
        epsilon: f32,
        steps: u32,
        step_size: Option<f32>,
        random_start: bool,
        evasion: Evasion,
    ) -> Result<Self, AttackError> {
        if !(epsilon.is_finite() && epsilon >= 0.0) {
            return Err(AttackError::invalid_parameter(
                "epsilon",
                format!("must be finite and ≥ 0, got {epsilon}"),
            ));
        }
        if steps == 0 {
            return Err(AttackError::invalid_parameter(
                "adaptive_steps",
                "must be ≥ 1, got 0",
            ));
        }
        if let Some(step) = step_size {
            if !(step.is_finite() && step > 0.0) {
                return Err(AttackError::invalid_parameter(
                    "adaptive_step_size",
                    format!("must be a positive number, got {step}"),
                ));
            }
        }
        Ok(Self {
            epsilon,
            steps,
            step_size,
            random_start,
            evasion,
            optimizer: Optimizer::Pgd,
        })
    }

    /// The same attack stepping with APGD's schedule: refused against a detector evaded by a
    /// confident misclassification (APGD stops at the first misclassification, where that
    /// evasion keeps looking for a more confident one) and with a fixed `step_size`.
    pub fn with_apgd(self) -> Result<Self, AttackError> {
        if self.evasion != Evasion::AcceptBox {
            return Err(AttackError::invalid_parameter(
                "adaptive_attack",
                "`apgd` projects into an accept box (the z-score validator with `max_abs`); \
                 against the confidence and entropy monitors use `pgd`",
            ));
        }
        if self.step_size.is_some() {
            return Err(AttackError::invalid_parameter(
                "adaptive_step_size",
                "APGD sets its own step sizes; leave `adaptive_step_size` out",
            ));
        }
        Ok(Self {
            optimizer: Optimizer::Apgd,
            ..self
        })
    }

    /// The name reports give the attack.
    pub fn name(&self) -> &'static str {
        match self.optimizer {
            Optimizer::Pgd => NAME,
            Optimizer::Apgd => APGD_NAME,
        }
    }

    /// The step size in use.
    pub fn step(&self) -> f32 {
        self.step_size
            .unwrap_or(2.5 * self.epsilon / self.steps as f32)
    }

    /// Model passes per sample: one forward and one backward per step; a confident
    /// misclassification also observes every iterate (one forward, whose logits give both the
    /// prediction and the detector's score) and finds the target (one forward).
    pub fn passes_per_sample(&self) -> u64 {
        match self.evasion {
            Evasion::AcceptBox => 2 * u64::from(self.steps),
            Evasion::ConfidentMisclassification => 3 * u64::from(self.steps) + 1,
        }
    }

    /// APGD-CE inside the accept box: one run from a random start (stream `Restart(0)`).
    fn apgd_into_accept_box(
        &self,
        model: &dyn Model,
        inputs: &Tensor,
        labels: &Tensor,
        randomness: &SampleRandomness,
        boxes: &[Vec<(f32, f32)>],
    ) -> Result<Tensor, AttackError> {
        use crate::evasion::apgd;
        let truth: Vec<u32> = labels.to_dtype(DType::U32)?.to_vec1()?;
        let goal = apgd::Goal {
            loss: Loss::CrossEntropy,
            ascent: 1.0,
            loss_labels: &truth,
            true_labels: &truth,
            success_targets: None,
        };
        let inputs = inputs.to_dtype(DType::F32)?;
        let mut batch = apgd::Batch::new(model, &inputs, randomness, &goal)?;
        let (lower, upper) = boxes.iter().flatten().copied().unzip();
        batch.accept_box = Some((lower, upper));
        let schedule = apgd::ApgdSchedule {
            threat: crate::ThreatModel {
                norm: crate::Norm::Linf,
                epsilon: self.epsilon,
            },
            steps: self.steps,
            rho: 0.75,
            momentum: 0.75,
        };
        apgd::run(
            &mut batch,
            &schedule,
            &goal,
            Stream::Restart(0),
            inputs.device(),
        )?;
        batch.into_tensor(inputs.device())
    }

    /// Attack `inputs` (values in `[0, 1]`) against `model` behind the fitted `detector`.
    /// An error when the detector's accept region is not a box of inputs (only detectors
    /// with [`Detector::accept_box`] can be evaded this way) or has another width.
    pub fn perturb(
        &self,
        model: &dyn Model,
        detector: &dyn Detector,
        inputs: &Tensor,
        labels: &Tensor,
        randomness: &SampleRandomness,
    ) -> Result<Tensor, AttackError> {
        let batch = inputs.dim(0)?;
        if randomness.len() != batch {
            return Err(AttackError::ShapeMismatch {
                what: "per-sample generators vs the batch",
                expected: vec![batch],
                actual: vec![randomness.len()],
            });
        }
        match Evasion::of(detector) {
            Some(Evasion::AcceptBox) => {
                self.project_into_accept_box(model, detector, inputs, labels, randomness)
            }
            Some(Evasion::ConfidentMisclassification) => {
                self.confident_misclassification(model, detector, inputs, labels, randomness)
            }
            None => Err(AttackError::invalid_parameter(
                "adaptive",
                format!(
                    "adaptive PGD knows no way around detector `{}`: it projects into the \
                     accept box of the z-score validator (`aggregation = \"max_abs\"`) and \
                     seeks confident misclassifications against the confidence and entropy \
                     monitors",
                    detector.name()
                ),
            )),
        }
    }

    fn project_into_accept_box(
        &self,
        model: &dyn Model,
        detector: &dyn Detector,
        inputs: &Tensor,
        labels: &Tensor,
        randomness: &SampleRandomness,
    ) -> Result<Tensor, AttackError> {
        let accept = detector
            .accept_box()
            .ok_or(AttackError::invalid_parameter("adaptive", "no accept box"))??;
        let shape = inputs.shape().clone();
        let batch = inputs.dim(0)?;
        let clean: Vec<Vec<f32>> = inputs.flatten_from(1)?.to_dtype(DType::F32)?.to_vec2()?;
        let width = clean.first().map_or(accept.len(), Vec::len);
        if width != accept.len() {
            return Err(AttackError::ShapeMismatch {
                what: "features of the attacked inputs vs the detector's accept box",
                expected: vec![accept.len()],
                actual: vec![width],
            });
        }
        if self.epsilon == 0.0 || batch == 0 {
            return Ok(inputs.clone());
        }
        let epsilon = f64::from(self.epsilon);
        // Per sample and feature, the f32 box to clamp into.
        let boxes: Vec<Vec<(f32, f32)>> = clean
            .iter()
            .map(|row| {
                let ball: Vec<(f64, f64)> = row.iter().map(|&c| ball(c, epsilon)).collect();
                let inside: Option<Vec<(f32, f32)>> = ball
                    .iter()
                    .zip(&accept)
                    .map(|(&(lo, hi), &(accept_lo, accept_hi))| {
                        let lo = f32_at_least(lo.max(accept_lo));
                        let hi = f32_at_most(hi.min(accept_hi));
                        (lo <= hi).then_some((lo, hi))
                    })
                    .collect();
                inside.unwrap_or_else(|| {
                    ball.iter()
                        .map(|&(lo, hi)| (f32_at_least(lo), f32_at_most(hi)))
                        .collect()
                })
            })
            .collect();
        if self.optimizer == Optimizer::Apgd {
            return Ok(self
                .apgd_into_accept_box(model, inputs, labels, randomness, &boxes)?
                .to_dtype(inputs.dtype())?);
        }
        let mut current = self.starting_points(&clean, &boxes, randomness);
        for _ in 0..self.steps {
            let gradient = cross_entropy_gradient(model, &current, &shape, labels)?;
            // Ascend: away from the true label.
            signed_step(&mut current, &gradient, &boxes, self.step());
        }
        Ok(rows_tensor(&current, &shape, inputs.device())?.to_dtype(inputs.dtype())?)
    }

    /// Where a run starts: uniform in each sample's box with `random_start`, else the clean
    /// rows clamped into their boxes.
    fn starting_points(
        &self,
        clean: &[Vec<f32>],
        boxes: &[Vec<(f32, f32)>],
        randomness: &SampleRandomness,
    ) -> Vec<Vec<f32>> {
        if self.random_start {
            random_start(boxes, randomness)
        } else {
            clean
                .iter()
                .zip(boxes)
                .map(|(row, bounds)| clamp_row(row, bounds))
                .collect()
        }
    }

    fn confident_misclassification(
        &self,
        model: &dyn Model,
        detector: &dyn Detector,
        inputs: &Tensor,
        labels: &Tensor,
        randomness: &SampleRandomness,
    ) -> Result<Tensor, AttackError> {
        let shape = inputs.shape().clone();
        let batch = inputs.dim(0)?;
        if self.epsilon == 0.0 || batch == 0 {
            return Ok(inputs.clone());
        }
        let device = inputs.device();
        let clean: Vec<Vec<f32>> = inputs.flatten_from(1)?.to_dtype(DType::F32)?.to_vec2()?;
        let truth: Vec<u32> = labels.to_dtype(DType::U32)?.to_vec1()?;
        // The target: the most likely wrong class on the clean input.
        let logits: Vec<Vec<f32>> = model.forward(inputs)?.to_dtype(DType::F32)?.to_vec2()?;
        let targets: Vec<u32> = logits
            .iter()
            .zip(&truth)
            .map(|(row, &label)| {
                row.iter()
                    .enumerate()
                    .filter(|&(class, _)| class as u32 != label)
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(label, |(class, _)| class as u32)
            })
            .collect();
        let targets = Tensor::new(targets.as_slice(), device)?;
        let epsilon = f64::from(self.epsilon);
        let boxes: Vec<Vec<(f32, f32)>> = clean
            .iter()
            .map(|row| {
                row.iter()
                    .map(|&c| {
                        let (lo, hi) = ball(c, epsilon);
                        (f32_at_least(lo), f32_at_most(hi))
                    })
                    .collect()
            })
            .collect();
        let mut current = self.starting_points(&clean, &boxes, randomness);
        // Per sample, the misclassified iterate the detector scores lowest so far.
        let mut best: Vec<Option<(f64, Vec<f32>)>> = vec![None; batch];
        // The observations always hold the logits the predictions are read from.
        let needs = DetectorNeeds {
            logits: true,
            ..detector.needs()
        };
        for _ in 0..self.steps {
            let gradient = cross_entropy_gradient(model, &current, &shape, &targets)?;
            // Descend: toward the target.
            signed_step(&mut current, &gradient, &boxes, -self.step());
            let x = rows_tensor(&current, &shape, device)?;
            let observations = observe(model, &x, None, needs, batch)?;
            let logits = Observations::require(&observations.logits, detector.name(), "logits")?;
            let predictions: Vec<usize> = logits.iter_rows().map(first_largest).collect();
            let scores = detector.score(&observations)?;
            for (i, kept) in best.iter_mut().enumerate() {
                let better = kept.as_ref().is_none_or(|(score, _)| scores[i] < *score);
                if predictions[i] != truth[i] as usize && better {
                    *kept = Some((scores[i], current[i].clone()));
                }
            }
        }
        let kept: Vec<Vec<f32>> = best
            .into_iter()
            .zip(current)
            .map(|(kept, last)| kept.map_or(last, |(_, row)| row))
            .collect();
        Ok(rows_tensor(&kept, &shape, device)?.to_dtype(inputs.dtype())?)
    }
}

/// The ε-ball ∩ `[0, 1]` around feature value `c`, in f64.
fn ball(c: f32, epsilon: f64) -> (f64, f64) {
    let c = f64::from(c);
    ((c - epsilon).max(0.0), (c + epsilon).min(1.0))
}

/// Per-sample rows as a tensor of `shape`.
fn rows_tensor(
    rows: &[Vec<f32>],
    shape: &candle_core::Shape,
    device: &candle_core::Device,
) -> Result<Tensor, AttackError> {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Ok(Tensor::from_vec(flat, shape.clone(), device)?)
}

/// Per sample, the input gradient of the cross-entropy against `labels` at the rows
/// `current`.
fn cross_entropy_gradient(
    model: &dyn Model,
    current: &[Vec<f32>],
    shape: &candle_core::Shape,
    labels: &Tensor,
) -> Result<Vec<Vec<f32>>, AttackError> {
    let x = rows_tensor(current, shape, labels.device())?;
    Ok(model
        .loss_and_input_gradient(&x, labels, Loss::CrossEntropy)?
        .gradient
        .flatten_from(1)?
        .to_dtype(DType::F32)?
        .to_vec2()?)
}

/// Move every feature by `step` in the direction of its gradient's sign (none where the
/// gradient is 0; a negative `step` descends), then clamp it into its box.
fn signed_step(
    current: &mut [Vec<f32>],
    gradient: &[Vec<f32>],
    boxes: &[Vec<(f32, f32)>],
    step: f32,
) {
    for ((row, g), bounds) in current.iter_mut().zip(gradient).zip(boxes) {
        for ((v, &g), &(lo, hi)) in row.iter_mut().zip(g).zip(bounds) {
            let moved = if g > 0.0 {
                *v + step
            } else if g < 0.0 {
                *v - step
            } else {
                *v
            };
            *v = moved.clamp(lo, hi);
        }
    }
}

/// The index of the largest value, the first one on ties.
fn first_largest(row: &[f64]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |(best, top), (i, &v)| {
            if v > top {
                (i, v)
            } else {
                (best, top)
            }
        })
        .0
}

/// A uniform start inside each sample's box, from the sample's [`Stream::Restart`]`(0)`.
fn random_start(boxes: &[Vec<(f32, f32)>], randomness: &SampleRandomness) -> Vec<Vec<f32>> {
    boxes
        .iter()
        .enumerate()
        .map(|(i, bounds)| {
            let mut rng = randomness.generator(i, Stream::Restart(0));
            bounds
                .iter()
                .map(|&(lo, hi)| {
                    if lo < hi {
                        rng.random_range(lo..=hi)
                    } else {
                        lo
                    }
                })
                .collect()
        })
        .collect()
}

fn clamp_row(row: &[f32], bounds: &[(f32, f32)]) -> Vec<f32> {
    row.iter()
        .zip(bounds)
        .map(|(&v, &(lo, hi))| v.clamp(lo, hi))
        .collect()
}

/// The smallest f32 that is ≥ `x`.
fn f32_at_least(x: f64) -> f32 {
    let f = x as f32;
    if f64::from(f) < x {
        f.next_up()
    } else {
        f
    }
}

/// The largest f32 that is ≤ `x`.
fn f32_at_most(x: f64) -> f32 {
    let f = x as f32;
    if f64::from(f) > x {
        f.next_down()
    } else {
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::{find_detector, Matrix, Observations};
    use candle_core::Device;
    use gauntlet_models::testing::LinearModel;
    use rand::SeedableRng;

    #[test]
    fn rounding_inwards_never_leaves_the_interval() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for _ in 0..10_000 {
            let x: f64 = rng.random_range(-2.0..2.0);
            assert!(f64::from(f32_at_least(x)) >= x);
            assert!(f64::from(f32_at_most(x)) <= x);
            // And they are the nearest such f32: one step further crosses x.
            assert!(f64::from(f32_at_least(x).next_down()) < x);
            assert!(f64::from(f32_at_most(x).next_up()) > x);
        }
    }

    #[test]
    fn outputs_against_the_z_score_validator_are_accepted_within_epsilon_and_in_range() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let weight = (0..3 * 16)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let model = LinearModel::new(weight, vec![0.0; 3], vec![1, 4, 4], 3, &Device::Cpu).unwrap();
        // Clean data concentrated around 0.5 with a small spread: the accept box is narrow, so
        // a plain step would leave it.
        let fit: Vec<f64> = (0..200 * 16)
            .map(|_| 0.5 + rng.random_range(-0.05..0.05))
            .collect();
        let mut detector = (find_detector("zscore").unwrap().build)(&toml::Table::new()).unwrap();
        detector
            .fit(&Observations {
                inputs: Some(Matrix::new("inputs", 200, 16, fit).unwrap()),
                ..Observations::default()
            })
            .unwrap();
        let pixels: Vec<f32> = (0..8 * 16)
            .map(|_| 0.5 + rng.random_range(-0.05f32..0.05))
            .collect();
        let inputs = Tensor::from_vec(pixels.clone(), (8, 1, 4, 4), &Device::Cpu).unwrap();
        let labels = Tensor::new(&[0u32, 1, 2, 0, 1, 2, 0, 1], &Device::Cpu).unwrap();
        let randomness = SampleRandomness::for_range(7, "adaptive", 0..8);
        let epsilon = 0.3;
        let pgd = AdaptivePgd::new(epsilon, 10, None, true, Evasion::AcceptBox).unwrap();
        let threshold = detector.rule_threshold().unwrap();
        // PGD's signed steps and APGD's schedule both stay inside the box.
        for attack in [pgd, pgd.with_apgd().unwrap()] {
            let adversarial = attack
                .perturb(&model, detector.as_ref(), &inputs, &labels, &randomness)
                .unwrap();
            let values: Vec<f32> = adversarial.flatten_all().unwrap().to_vec1().unwrap();
            let observed = Observations {
                inputs: Some(Matrix::from_tensor("inputs", &adversarial).unwrap()),
                ..Observations::default()
            };
            for score in detector.score(&observed).unwrap() {
                assert!(
                    score <= threshold,
                    "{}: {score} > {threshold}",
                    attack.name()
                );
            }
            for (v, c) in values.iter().zip(&pixels) {
                assert!((v - c).abs() <= epsilon && (0.0..=1.0).contains(v));
            }
            // The attack moved the inputs (the box is not a single point) and is
            // deterministic.
            assert!(values.iter().zip(&pixels).any(|(v, c)| v != c));
            let again = attack
                .perturb(&model, detector.as_ref(), &inputs, &labels, &randomness)
                .unwrap();
            assert_eq!(
                again.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                values
            );
        }
        // APGD refuses what it cannot do.
        let confident =
            AdaptivePgd::new(0.1, 5, None, true, Evasion::ConfidentMisclassification).unwrap();
        assert!(confident.with_apgd().is_err());
        assert!(
            AdaptivePgd::new(0.1, 5, Some(0.01), true, Evasion::AcceptBox)
                .unwrap()
                .with_apgd()
                .is_err()
        );
        // A plain PGD step of the same size would leave the accept box: the projection is
        // what keeps the outputs accepted.
        let plain: Vec<f64> = pixels.iter().map(|&c| f64::from(c) + 0.3).collect();
        let plain_score = detector
            .score(&Observations {
                inputs: Some(Matrix::new("inputs", 8, 16, plain).unwrap()),
                ..Observations::default()
            })
            .unwrap();
        assert!(plain_score.iter().all(|&s| s > threshold));
    }

    /// Two classes: `p_t = σ(d(x))` with `d = (w_t − w_y)·x + b_t − b_y` linear, so the most
    /// confident misclassification within the ε-ball ∩ `[0, 1]` is the box corner that
    /// maximises `d` (each feature at its upper end where `w_t − w_y > 0`, else its lower
    /// end), and its confidence score `1 − σ(d_max)` is the least any input in the box gets.
    /// Signed steps of total length 2.5·ε reach that corner from any start, so the attack's
    /// output is the corner exactly, against the confidence and the entropy monitor alike.
    #[test]
    fn against_softmax_monitors_the_output_is_the_closed_form_most_confident_misclassification() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let features = 8;
        let weight: Vec<f32> = (0..2 * features)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let bias = vec![0.3f32, -0.3];
        let model = LinearModel::new(
            weight.clone(),
            bias.clone(),
            vec![features],
            2,
            &Device::Cpu,
        )
        .unwrap();
        let n = 16;
        let pixels: Vec<f32> = (0..n * features)
            .map(|_| rng.random_range(0.0f32..1.0))
            .collect();
        let inputs = Tensor::from_vec(pixels.clone(), (n, features), &Device::Cpu).unwrap();
        let truth: Vec<u32> = model
            .forward(&inputs)
            .unwrap()
            .argmax(1)
            .unwrap()
            .to_vec1()
            .unwrap();
        let labels = Tensor::new(truth.as_slice(), &Device::Cpu).unwrap();
        let randomness = SampleRandomness::for_range(9, "adaptive", 0..n);
        let epsilon = 0.25f32;
        let attack =
            AdaptivePgd::new(epsilon, 10, None, true, Evasion::ConfidentMisclassification).unwrap();
        let row = |class: u32| &weight[class as usize * features..(class as usize + 1) * features];
        let mut outputs = Vec::new();
        for name in ["confidence", "entropy"] {
            let detector = (find_detector(name).unwrap().build)(&toml::Table::new()).unwrap();
            assert_eq!(
                Evasion::of(detector.as_ref()),
                Some(Evasion::ConfidentMisclassification)
            );
            let adversarial = attack
                .perturb(&model, detector.as_ref(), &inputs, &labels, &randomness)
                .unwrap();
            let values: Vec<Vec<f32>> = adversarial.to_vec2().unwrap();
            let scores = detector
                .score(&observe(&model, &adversarial, None, detector.needs(), n).unwrap())
                .unwrap();
            let mut misclassified = 0;
            for (i, output) in values.iter().enumerate() {
                let (y, t) = (truth[i], 1 - truth[i]);
                let direction: Vec<f64> = row(t)
                    .iter()
                    .zip(row(y))
                    .map(|(a, b)| f64::from(*a) - f64::from(*b))
                    .collect();
                let clean = &pixels[i * features..(i + 1) * features];
                let mut d_max = f64::from(bias[t as usize]) - f64::from(bias[y as usize]);
                for ((&v, &c), &w) in output.iter().zip(clean).zip(&direction) {
                    let lo = f32_at_least((f64::from(c) - f64::from(epsilon)).max(0.0));
                    let hi = f32_at_most((f64::from(c) + f64::from(epsilon)).min(1.0));
                    let corner = if w > 0.0 { hi } else { lo };
                    assert_eq!(v, corner, "{name}: sample {i}");
                    d_max += w * f64::from(corner);
                }
                if d_max > 0.0 {
                    misclassified += 1;
                    if name == "confidence" {
                        let least = 1.0 - 1.0 / (1.0 + (-d_max).exp());
                        assert!((scores[i] - least).abs() < 1e-5, "{} vs {least}", scores[i]);
                    }
                }
            }
            assert!(misclassified > 0, "{name}: ε too small for the test");
            outputs.push(values);
        }
        assert_eq!(outputs[0], outputs[1]);
    }

    #[test]
    fn a_detector_it_knows_no_way_around_is_refused_by_name() {
        let detector = (find_detector("mahalanobis").unwrap().build)(&toml::Table::new()).unwrap();
        assert_eq!(Evasion::of(detector.as_ref()), None);
        let model =
            LinearModel::new(vec![0.0; 2 * 4], vec![0.0; 2], vec![4], 2, &Device::Cpu).unwrap();
        let inputs = Tensor::zeros((1, 4), DType::F32, &Device::Cpu).unwrap();
        let labels = Tensor::new(&[0u32], &Device::Cpu).unwrap();
        let randomness = SampleRandomness::for_range(0, "adaptive", 0..1);
        let error = AdaptivePgd::new(0.1, 1, None, false, Evasion::AcceptBox)
            .unwrap()
            .perturb(&model, detector.as_ref(), &inputs, &labels, &randomness)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("mahalanobis") && error.contains("knows no way"),
            "{error}"
        );
        assert!(AdaptivePgd::new(0.1, 0, None, false, Evasion::AcceptBox).is_err());
        assert!(AdaptivePgd::new(f32::NAN, 1, None, false, Evasion::AcceptBox).is_err());
    }
}
