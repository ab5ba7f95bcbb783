//! Projected gradient descent: iterated gradient steps, projected back onto the ε-ball.
//!
//! ## What it does
//!
//! Starts from the clean input, or from a uniformly random point of the ε-ball
//! (`random_start`), and takes `steps` steps of size `step_size` along the steepest-ascent
//! direction of the loss (`sign(g)` under L∞, `g/‖g‖₂` under L2; against the gradient of the
//! loss toward the target when targeted), projecting onto the ε-ball and [0, 1] after every
//! step. Returns the last iterate, as Madry et al. and torchattacks do. With `restarts > 1`
//! the whole run is repeated from fresh random starts and, per sample, the first restart that
//! succeeds (misclassified, or classified as the target) is kept, otherwise the one with the
//! highest loss (lowest loss toward the target). Restarts stop early once every sample has
//! succeeded. Cost: one forward and one backward pass per step, plus one forward per restart
//! when `restarts > 1`.
//!
//! ## Threat model
//!
//! White-box: needs input gradients. Budget ε in L∞ or L2 around each clean input, inside
//! [0, 1]. At ε = 0 the output is the input, bit for bit. All randomness comes from the
//! caller's seeded generator: the same seed gives the same output.
//!
//! ## Parameters
//!
//! - `norm` (default `"linf"`): `"linf"` or `"l2"`.
//! - `loss` (default `"cross_entropy"`): `"cross_entropy"` or `"cw_margin"`.
//! - `targeted` (default `false`): descend the loss toward a target class.
//! - `target` (default `"random"`): `"random"`, `"least_likely"` or a class index; only with
//!   `targeted = true`.
//! - `steps` (default `10`): number of gradient steps, ≥ 1.
//! - `step_size` (default `2.5 * epsilon / steps`): length of each step in the attack's norm.
//! - `random_start` (default `true`): start from a uniform point of the ε-ball (L∞: uniform
//!   per coordinate; L2: uniform in the ball, a Gaussian direction at radius `ε·u^(1/d)`).
//! - `restarts` (default `1`): independent runs; needs `random_start = true` when > 1.
//!
//! ## Known-answer tests
//!
//! On a linear classifier without box clipping the L∞ worst case lowers the margin
//! `z_y − z_j` by exactly `ε·‖w_y − w_j‖₁` (L2: `ε·‖w_y − w_j‖₂`). PGD must reach that drop
//! (within float tolerance) and can never exceed it, from a random start or not. On a trained
//! model its mean loss is at least FGSM's at the same ε, and with ε = 1 (the whole box)
//! accuracy falls to chance or below.
//!
//! ## Reference
//!
//! Madry, Makelov, Schmidt, Tsipras, Vladu. *Towards Deep Learning Models Resistant to
//! Adversarial Attacks.* ICLR 2018, arXiv:1706.06083. The default step size 2.5·ε/steps is
//! their rule of thumb.

use candle_core::{Tensor, D};
use gauntlet_models::{Loss, Model};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::Deserialize;

use crate::objective::{
    check_batch, check_randomness, steepest_ascent_direction, Objective, TargetSelection,
};
use crate::params::{self, check_epsilon, parse_params};
use crate::projection::{per_sample_column, FeasibleSet};
use crate::{
    Attack, AttackEntry, AttackError, AttackKind, AttackObjective, BudgetSemantics, ModelAccess,
    Norm, ParameterDoc, Passes, SampleRandomness, Stream, ThreatModel,
};

/// The registry entry.
pub const ENTRY: AttackEntry = AttackEntry {
    name: "pgd",
    summary: "Projected gradient descent: iterated L∞ sign or L2 normalised steps from a random start, with restarts",
    reference: "Madry, Makelov, Schmidt, Tsipras, Vladu. Towards Deep Learning Models Resistant to Adversarial Attacks. ICLR 2018. arXiv:1706.06083",
    parameters: &[
        params::NORM,
        params::LOSS,
        params::TARGETED,
        params::TARGET,
        ParameterDoc {
            name: "steps",
            default: "10",
            description: "Number of gradient steps, each one forward and one backward pass; at least 1.",
        },
        ParameterDoc {
            name: "step_size",
            default: "2.5 * epsilon / steps",
            description: "Length of each step in the attack's norm; must be > 0.",
        },
        ParameterDoc {
            name: "random_start",
            default: "true",
            description: "Start from a uniformly random point of the ε-ball instead of the clean input.",
        },
        ParameterDoc {
            name: "restarts",
            default: "1",
            description: "Independent runs from fresh random starts; per sample the first success, else the highest loss, is kept. Needs `random_start = true` when above 1.",
        },
    ],
    kind: AttackKind::Iterative,
    needs: ModelAccess::InputGradients,
    budget: BudgetSemantics::Bounded,
    conformance_variants: crate::objective_conformance_variants![
        "random_start = false",
        "restarts = 3
steps = 3",
        "restarts = 2
steps = 2
norm = \"l2\"
targeted = true",
        "steps = 1
step_size = 0.5",
    ],
    build,
};

/// The suite-file parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    norm: Norm,
    loss: Loss,
    targeted: bool,
    target: Option<TargetSelection>,
    steps: u32,
    step_size: Option<f32>,
    random_start: bool,
    restarts: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            norm: Norm::Linf,
            loss: Loss::CrossEntropy,
            targeted: false,
            target: None,
            steps: 10,
            step_size: None,
            random_start: true,
            restarts: 1,
        }
    }
}

impl Params {
    fn validate(self, epsilon: f32) -> Result<Pgd, AttackError> {
        check_epsilon(epsilon)?;
        if self.steps < 1 {
            return Err(AttackError::invalid_parameter(
                "steps",
                format!("steps must be ≥ 1, got {}", self.steps),
            ));
        }
        if self.restarts < 1 {
            return Err(AttackError::invalid_parameter(
                "restarts",
                format!("restarts must be ≥ 1, got {}", self.restarts),
            ));
        }
        if self.restarts > 1 && !self.random_start {
            return Err(AttackError::invalid_parameter(
                "restarts",
                format!(
                    "restarts = {} needs random_start = true: without a random start every restart is the same run",
                    self.restarts
                ),
            ));
        }
        let step_size = match self.step_size {
            Some(step_size) if !(step_size.is_finite() && step_size > 0.0) => {
                return Err(AttackError::invalid_parameter(
                    "step_size",
                    format!("step_size must be a finite number > 0, got {step_size}"),
                ));
            }
            Some(step_size) => step_size,
            None => 2.5 * epsilon / self.steps as f32,
        };
        Ok(Pgd {
            threat: ThreatModel {
                norm: self.norm,
                epsilon,
            },
            objective: Objective::new(self.loss, self.targeted, self.target)?,
            steps: self.steps,
            step_size,
            random_start: self.random_start,
            restarts: self.restarts,
        })
    }
}

fn build(params: &toml::Table, epsilon: f32) -> Result<Box<dyn Attack>, AttackError> {
    Ok(Box::new(parse_params::<Params>(params)?.validate(epsilon)?))
}

/// Projected gradient descent with random starts and restarts.
#[derive(Debug, Clone)]
pub struct Pgd {
    threat: ThreatModel,
    objective: Objective,
    steps: u32,
    step_size: f32,
    random_start: bool,
    restarts: u32,
}

impl Pgd {
    /// Number of gradient steps per restart.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// Length of each step in the attack's norm.
    pub fn step_size(&self) -> f32 {
        self.step_size
    }

    /// One run (restart number `restart`): from a (random) start, `steps` projected steps;
    /// returns the last iterate.
    fn run(
        &self,
        model: &dyn Model,
        feasible: &FeasibleSet,
        attack_labels: &Tensor,
        randomness: &SampleRandomness,
        restart: u32,
    ) -> Result<Tensor, AttackError> {
        let inputs = feasible.clean();
        let mut current = if self.random_start {
            let mut generators = randomness.generators(Stream::Restart(restart));
            let noise = random_ball_points(inputs.dims(), self.threat, &mut generators)?;
            let noise = Tensor::from_vec(noise, inputs.dims(), inputs.device())?;
            feasible.project(&(inputs + noise)?)?
        } else {
            inputs.clone()
        };
        let step_scale = self.objective.ascent_sign() * f64::from(self.step_size);
        for _ in 0..self.steps {
            let gradient = model
                .loss_and_input_gradient(&current, attack_labels, self.objective.loss)?
                .gradient;
            current = match self.threat.norm {
                Norm::Linf => feasible.sign_step(&current, &gradient, step_scale as f32)?,
                Norm::L2 => {
                    let step = steepest_ascent_direction(&gradient, self.threat.norm)?
                        .affine(step_scale, 0.0)?;
                    feasible.project(&(current + step)?)?
                }
            };
        }
        Ok(current)
    }
}

impl Attack for Pgd {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn threat(&self) -> ThreatModel {
        self.threat
    }

    fn objective(&self) -> AttackObjective {
        self.objective.describe()
    }

    /// `steps` gradients per restart, a forward pass per restart to score it when there are
    /// several, and a forward pass for `least_likely` targets.
    fn passes_per_sample(&self) -> Passes {
        let scoring = if self.restarts > 1 {
            Passes::forwards(1)
        } else {
            Passes::default()
        };
        (Passes::gradients(u64::from(self.steps)) + scoring).times(u64::from(self.restarts))
            + self.objective.label_passes()
    }

    fn perturb(
        &self,
        model: &dyn Model,
        inputs: &Tensor,
        labels: &Tensor,
        randomness: &SampleRandomness,
    ) -> Result<Tensor, AttackError> {
        let batch = check_batch(model, inputs, labels)?;
        check_randomness(&batch, randomness)?;
        if self.threat.epsilon == 0.0 || batch.is_empty() {
            return Ok(inputs.clone());
        }
        let attack_labels = self.objective.attack_labels(model, inputs, &batch, randomness)?;
        let feasible = FeasibleSet::new(inputs, self.threat)?;
        if self.restarts == 1 {
            return self.run(model, &feasible, &attack_labels, randomness, 0);
        }

        // Per sample: the first successful restart, else the highest score so far.
        let rank = inputs.rank();
        let mut best: Option<(Tensor, Tensor, Tensor)> = None; // (inputs, score, success u8)
        // Stopping once every sample has succeeded changes no sample's result: a success is
        // never replaced, so the batch's composition does not leak into any sample.
        for restart in 0..self.restarts {
            let candidate = self.run(model, &feasible, &attack_labels, randomness, restart)?;
            let logits = model.forward(&candidate)?;
            let score = self
                .objective
                .score(&self.objective.loss.per_sample(&logits, &attack_labels)?)?;
            let success = self
                .objective
                .successful(&logits, &batch.labels, &attack_labels)?;
            let merged = match best.take() {
                None => (candidate, score, success),
                Some((best_inputs, best_score, best_success)) => {
                    // replace = ¬best_success ∧ (success ∨ score > best_score)
                    let improves = success.maximum(&score.gt(&best_score)?)?;
                    let replace = improves.mul(&best_success.eq(0u8)?)?;
                    let replace_inputs =
                        per_sample_column(&replace, rank)?.broadcast_as(inputs.shape())?;
                    (
                        replace_inputs.where_cond(&candidate, &best_inputs)?,
                        replace.where_cond(&score, &best_score)?,
                        best_success.maximum(&success)?,
                    )
                }
            };
            let all_succeeded = merged.2.min(D::Minus1)?.to_scalar::<u8>()? != 0;
            best = Some(merged);
            if all_succeeded {
                break;
            }
        }
        match best {
            Some((best_inputs, _, _)) => Ok(best_inputs),
            None => Ok(inputs.clone()),
        }
    }
}

/// Uniform random points of the ε-ball, flattened row-major for a batch of shape `dims`;
/// sample `i`'s point is drawn from `generators[i]` only.
///
/// L∞: every coordinate uniform in [−ε, ε]. L2: uniform in the ball — a direction from an
/// isotropic Gaussian, scaled to radius `ε·u^(1/d)` with `u` uniform in [0, 1), which gives
/// the ball's uniform radial density ∝ r^(d−1).
fn random_ball_points(
    dims: &[usize],
    threat: ThreatModel,
    generators: &mut [ChaCha8Rng],
) -> Result<Vec<f32>, AttackError> {
    let total: usize = dims.iter().product();
    let batch = dims.first().copied().unwrap_or(0);
    if generators.len() != batch {
        return Err(AttackError::RandomnessMismatch {
            samples: batch,
            generators: generators.len(),
        });
    }
    let per_sample = total.checked_div(batch).unwrap_or(0);
    let epsilon = threat.epsilon;
    let mut points = Vec::with_capacity(total);
    match threat.norm {
        Norm::Linf => {
            for rng in generators {
                points.extend((0..per_sample).map(|_| (rng.random::<f32>() * 2.0 - 1.0) * epsilon));
            }
            Ok(points)
        }
        Norm::L2 => {
            for rng in generators {
                let direction: Vec<f64> = (0..per_sample).map(|_| rng.sample(StandardNormal)).collect();
                let length = direction.iter().map(|v| v * v).sum::<f64>().sqrt();
                let radius = f64::from(epsilon) * rng.random::<f64>().powf(1.0 / per_sample as f64);
                let scale = if length > 0.0 { radius / length } else { 0.0 };
                points.extend(direction.iter().map(|v| (v * scale) as f32));
            }
            Ok(points)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;

    fn rng(batch: usize) -> SampleRandomness {
        SampleRandomness::for_range(11, "test", 0..batch)
    }

    fn parse(text: &str, epsilon: f32) -> Result<Pgd, AttackError> {
        let table: toml::Table = toml::from_str(text).unwrap();
        parse_params::<Params>(&table)?.validate(epsilon)
    }

    fn invalid_key(error: AttackError) -> (String, String) {
        match error {
            AttackError::InvalidParameter { key, message } => (key, message),
            other => panic!("expected InvalidParameter, got {other:?}"),
        }
    }

    #[test]
    fn defaults_follow_madry() {
        let attack = parse("", 0.3).unwrap();
        assert_eq!(attack.steps, 10);
        assert!((attack.step_size - 2.5 * 0.3 / 10.0).abs() < 1e-7);
        assert!(attack.random_start);
        assert_eq!(attack.restarts, 1);
        assert_eq!(attack.threat, ThreatModel { norm: Norm::Linf, epsilon: 0.3 });
        let attack = parse("steps = 40\nstep_size = 0.01", 0.3).unwrap();
        assert_eq!((attack.steps, attack.step_size), (40, 0.01));
    }

    #[test]
    fn bad_values_name_their_key() {
        let (key, message) = invalid_key(parse("steps = 0", 0.1).unwrap_err());
        assert_eq!((key.as_str(), message.as_str()), ("steps", "steps must be ≥ 1, got 0"));
        assert_eq!(invalid_key(parse("restarts = 0", 0.1).unwrap_err()).0, "restarts");
        assert_eq!(
            invalid_key(parse("restarts = 3\nrandom_start = false", 0.1).unwrap_err()).0,
            "restarts"
        );
        assert_eq!(invalid_key(parse("step_size = -0.5", 0.1).unwrap_err()).0, "step_size");
        assert_eq!(invalid_key(parse("step_size = nan", 0.1).unwrap_err()).0, "step_size");
        assert_eq!(invalid_key(parse("steps = -3", 0.1).unwrap_err()).0, "steps");
        assert_eq!(invalid_key(parse("steps = \"ten\"", 0.1).unwrap_err()).0, "steps");
        assert_eq!(invalid_key(parse("norm = \"l1\"", 0.1).unwrap_err()).0, "norm");
        assert_eq!(invalid_key(parse("target = 2", 0.1).unwrap_err()).0, "target");
        assert_eq!(
            invalid_key(parse("targeted = true\ntarget = \"likely\"", 0.1).unwrap_err()).0,
            "target"
        );
        let (key, message) = invalid_key(parse("stepz = 5", 0.1).unwrap_err());
        assert_eq!(key, "stepz");
        assert!(message.contains("unknown field"), "{message}");
    }

    // Targeted toward class 1 with the CW margin on the three-class model, the loss is
    // z_0 − z_1 everywhere in the ball, a linear function: its minimum over the L∞ ball is at
    // x − ε·sign(w_0 − w_1), a drop of ε‖w_0 − w_1‖₁. From a random start, 10 steps of 2.5ε/10
    // move every coordinate 2.5ε ≥ 2ε, so PGD reaches that corner exactly; it can never go
    // beyond it.
    #[test]
    fn linf_pgd_reaches_the_closed_form_optimum_from_a_random_start() {
        let model = three_class_model();
        let inputs = inputs_in_middle(6, 21);
        let epsilon = 0.04;
        let attack = build_attack(&ENTRY, "loss = \"cw_margin\"\ntargeted = true\ntarget = 1", epsilon);
        let adversarial = attack
            .perturb(&model, &inputs, &labels(&[0; 6]), &rng(6))
            .unwrap();
        let rows = model.weight_rows();
        let optimum = f64::from(epsilon) * l1_distance(&rows[0], &rows[1]);
        let before = logit_gap(&model, &inputs, 0, 1);
        let after = logit_gap(&model, &adversarial, 0, 1);
        for (b, a) in before.iter().zip(&after) {
            assert_close(b - a, optimum, 1e-4, "drop of z_0 − z_1");
            assert!(b - a <= optimum * (1.0 + 1e-5), "PGD beat the closed-form optimum");
        }
    }

    // L2, no random start: the direction (w_0 − w_1)/‖w_0 − w_1‖₂ is constant, so four steps of
    // 2.5ε/10 reach the sphere at ε·u and the projection keeps it there: a drop of ε‖w_0 − w_1‖₂.
    // From a random start the angle to u shrinks by a constant factor per step of 0.5ε, so 20
    // such steps get within float tolerance of the same optimum.
    #[test]
    fn l2_pgd_reaches_the_closed_form_optimum() {
        let model = three_class_model();
        let inputs = inputs_in_middle(6, 22);
        let epsilon = 0.08;
        let rows = model.weight_rows();
        let optimum = f64::from(epsilon) * l2_distance(&rows[0], &rows[1]);
        let before = logit_gap(&model, &inputs, 0, 1);
        for params in [
            "norm = \"l2\"\nloss = \"cw_margin\"\ntargeted = true\ntarget = 1\nrandom_start = false",
            "norm = \"l2\"\nloss = \"cw_margin\"\ntargeted = true\ntarget = 1\nsteps = 20\nstep_size = 0.04",
        ] {
            let attack = build_attack(&ENTRY, params, epsilon);
            let adversarial = attack
                .perturb(&model, &inputs, &labels(&[0; 6]), &rng(6))
                .unwrap();
            let after = logit_gap(&model, &adversarial, 0, 1);
            for (b, a) in before.iter().zip(&after) {
                assert_close(b - a, optimum, 1e-4, params);
                assert!(b - a <= optimum * (1.0 + 1e-5), "PGD beat the closed-form optimum");
            }
        }
    }

    // Binary cross-entropy: the gradient's sign is sign(w_1 − w_0) everywhere, so PGD ends at
    // the same corner as FGSM and matches its (optimal) margin drop.
    #[test]
    fn binary_pgd_matches_fgsm() {
        let model = binary_model();
        let inputs = inputs_in_middle(5, 23);
        let epsilon = 0.05;
        let fgsm = build_attack(&super::super::fgsm::ENTRY, "", epsilon);
        let pgd = build_attack(&ENTRY, "restarts = 2", epsilon);
        let true_labels = labels(&[0; 5]);
        let from_fgsm = fgsm.perturb(&model, &inputs, &true_labels, &rng(5)).unwrap();
        let from_pgd = pgd.perturb(&model, &inputs, &true_labels, &rng(5)).unwrap();
        let before = logit_gap(&model, &inputs, 0, 1);
        let after_fgsm = logit_gap(&model, &from_fgsm, 0, 1);
        let after_pgd = logit_gap(&model, &from_pgd, 0, 1);
        let rows = model.weight_rows();
        let optimum = f64::from(epsilon) * l1_distance(&rows[1], &rows[0]);
        for i in 0..5 {
            assert_close(before[i] - after_pgd[i], before[i] - after_fgsm[i], 1e-4, "PGD vs FGSM");
            assert!(before[i] - after_pgd[i] <= optimum * (1.0 + 1e-5));
        }
    }

    #[test]
    fn random_start_points_are_uniform_in_the_ball() {
        let dims = [400, 5];
        let mut generators = rng(400).generators(Stream::Restart(0));
        for norm in [Norm::Linf, Norm::L2] {
            let threat = ThreatModel { norm, epsilon: 0.5 };
            let points = random_ball_points(&dims, threat, &mut generators).unwrap();
            assert_eq!(points.len(), 2000);
            let norms: Vec<f64> = points
                .chunks(5)
                .map(|p| match norm {
                    Norm::Linf => p.iter().fold(0.0f64, |m, v| m.max(f64::from(v.abs()))),
                    Norm::L2 => p.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt(),
                })
                .collect();
            assert!(norms.iter().all(|n| *n <= 0.5 + 1e-6), "{norm}: a point outside the ball");
            // Uniform in a d-ball: P(r ≤ ρε) = ρ^d. For L∞ per coordinate: the max of 5
            // uniforms on [0, 1] has the same law. So the median radius is ε·0.5^(1/5).
            let mut sorted = norms.clone();
            sorted.sort_by(f64::total_cmp);
            let median = sorted[200];
            let expected = 0.5 * 0.5f64.powf(1.0 / 5.0);
            assert!((median - expected).abs() < 0.02, "{norm}: median radius {median} vs {expected}");
        }
    }
}
