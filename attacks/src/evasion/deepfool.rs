//! DeepFool: the smallest perturbation that crosses the nearest linearised decision boundary.
//!
//! ## What it does
//!
//! For each correctly classified sample, DeepFool ranks the classes by their clean logits and
//! keeps the top `candidates` (the true class first). At each iteration it linearises the
//! logit differences `f_k = z_k − z_y` around the current point `x_i`, with gradients
//! `w_k = ∇z_k − ∇z_y`, picks the class whose linearised boundary is nearest,
//! `l = argmin_k |f_k| / ‖w_k‖_*` (dual norm: ‖·‖₂ for L2, ‖·‖₁ for L∞), and adds the step
//! that reaches it, `r = (|f_l| + 10⁻⁴) · w_l / ‖w_l‖₂²` (L2) or
//! `(|f_l| + 10⁻⁴) · sign(w_l) / ‖w_l‖₁` (L∞), to the total perturbation `r_tot`. The next
//! point is `x_{i+1} = clip(x + (1 + overshoot)·r_tot, 0, 1)`, as in the authors' code. It stops
//! as soon as the sample is misclassified, or after `steps` iterations.
//!
//! The per-class gradients come from [`Model::loss_and_input_gradient`] with the
//! cross-entropy toward class `k`: `∇CE_y − ∇CE_k = ∇z_k − ∇z_y` exactly (the log-sum-exp
//! cancels), so any model that gives input gradients serves DeepFool, one gradient pass per
//! candidate class per iteration.
//!
//! DeepFool is a minimal-norm attack ([`BudgetSemantics::MinimalNorm`]): the harness runs it
//! once at ε = +∞ and reports every ε of the suite from each sample's perturbation size. Built
//! at a finite ε, it returns the found perturbation where its norm is at most ε and the clean
//! input elsewhere, so its outputs always lie in the ε-ball.
//!
//! ## Threat model
//!
//! White-box: needs input gradients. Untargeted; perturbation size in L2 or L∞, inside
//! [0, 1]. No randomness. ε = 0 returns the input bit for bit. Cost per sample: one forward to
//! rank the classes, `candidates` gradients per iteration (at most `steps` iterations, fewer
//! once the sample is misclassified), and one forward to check the last iterate.
//!
//! ## Parameters
//!
//! - `norm` (default `"l2"`): `"l2"` or `"linf"`.
//! - `steps` (default `50`): the most iterations.
//! - `overshoot` (default `0.02`): the total perturbation is scaled by `1 + overshoot` so that
//!   the point lands past the boundary rather than on it.
//! - `candidates` (default `10`): how many of the top classes (by clean logit, the true class
//!   included) are linearised; as the authors' `num_classes`.
//!
//! ## Known-answer tests
//!
//! For a linear model `z = Wx + b` the linearisation is exact: the smallest L2 perturbation
//! that changes the class is `min_{k≠y} |z_k − z_y| / ‖w_k − w_y‖₂` (the distance to the
//! nearest of the half-spaces where class `k` beats `y`), and the smallest L∞ one is the same
//! with ‖·‖₁. DeepFool finds it in one step, scaled by `1 + overshoot`.
//!
//! ## Reference
//!
//! Moosavi-Dezfooli, Fawzi, Frossard. *DeepFool: a simple and accurate method to fool deep
//! neural networks.* CVPR 2016, arXiv:1511.04599.

use candle_core::{DType, Tensor};
use gauntlet_models::{Loss, Model};
use serde::Deserialize;

use crate::objective::{
    check_batch, check_minimal_norm_epsilon, check_randomness, minimal_norm_output,
};
use crate::params::parse_params;
use crate::{
    Attack, AttackEntry, AttackError, AttackKind, AttackObjective, BudgetSemantics, ModelAccess,
    Norm, ParameterDoc, Passes, SampleRandomness, ThreatModel,
};

/// The registry entry.
pub const ENTRY: AttackEntry = AttackEntry {
    name: "deepfool",
    summary: "DeepFool: iterates to the nearest linearised decision boundary; minimal-norm (L2 or L∞), one run answers every ε",
    reference: "Moosavi-Dezfooli, Fawzi, Frossard. DeepFool: a simple and accurate method to fool deep neural networks. CVPR 2016. arXiv:1511.04599",
    parameters: &[
        ParameterDoc {
            name: "norm",
            default: "\"l2\"",
            description: "The norm the perturbation is minimised in: `\"l2\"` or `\"linf\"`.",
        },
        ParameterDoc {
            name: "steps",
            default: "50",
            description: "The most iterations; a sample stops as soon as it is misclassified.",
        },
        ParameterDoc {
            name: "overshoot",
            default: "0.02",
            description: "The total perturbation is scaled by 1 + overshoot to land past the boundary.",
        },
        ParameterDoc {
            name: "candidates",
            default: "10",
            description: "How many of the top classes by clean logit (the true class included) are linearised; one gradient each per iteration.",
        },
    ],
    kind: AttackKind::MinimalNorm,
    needs: ModelAccess::InputGradients,
    budget: BudgetSemantics::MinimalNorm,
    conformance_variants: &[
        "norm = \"linf\"",
        "norm = \"l2\"\nsteps = 3\novershoot = 0.0",
        "candidates = 2",
    ],
    build,
};

/// The suite-file parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    norm: Norm,
    steps: u32,
    overshoot: f32,
    candidates: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            norm: Norm::L2,
            steps: 50,
            overshoot: 0.02,
            candidates: 10,
        }
    }
}

impl Params {
    fn validate(self, epsilon: f32) -> Result<DeepFool, AttackError> {
        check_minimal_norm_epsilon(epsilon)?;
        if self.steps == 0 {
            return Err(AttackError::invalid_parameter("steps", "must be ≥ 1, got 0"));
        }
        if !(self.overshoot.is_finite() && self.overshoot >= 0.0) {
            return Err(AttackError::invalid_parameter(
                "overshoot",
                format!("must be a finite number ≥ 0, got {}", self.overshoot),
            ));
        }
        if self.candidates < 2 {
            return Err(AttackError::invalid_parameter(
                "candidates",
                format!(
                    "must be ≥ 2 (the true class and at least one other), got {}",
                    self.candidates
                ),
            ));
        }
        Ok(DeepFool {
            threat: ThreatModel {
                norm: self.norm,
                epsilon,
            },
            steps: self.steps,
            overshoot: self.overshoot,
            candidates: self.candidates,
        })
    }
}

fn build(params: &toml::Table, epsilon: f32) -> Result<Box<dyn Attack>, AttackError> {
    Ok(Box::new(parse_params::<Params>(params)?.validate(epsilon)?))
}

/// The DeepFool attack.
#[derive(Debug, Clone)]
pub struct DeepFool {
    threat: ThreatModel,
    steps: u32,
    overshoot: f32,
    candidates: u32,
}

/// Added to the distance of each step, as in the authors' code, so that a sample exactly on a
/// boundary still moves.
const STEP_SLACK: f64 = 1e-4;

impl Attack for DeepFool {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn threat(&self) -> ThreatModel {
        self.threat
    }

    /// The logit differences DeepFool linearises are the CW margin's terms.
    fn objective(&self) -> AttackObjective {
        AttackObjective {
            loss: Loss::CwMargin,
            target: None,
        }
    }

    /// One forward to rank the classes, `candidates` gradients per iteration, one forward to
    /// check the last iterate.
    fn passes_per_sample(&self) -> Passes {
        Passes::forwards(2) + Passes::gradients(u64::from(self.steps) * u64::from(self.candidates))
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
        let found = self.search(model, inputs, &batch.labels_host)?;
        minimal_norm_output(inputs, &found, self.threat.norm, self.threat.epsilon)
    }
}

impl DeepFool {
    /// Each sample's misclassified iterate, or `None` for a sample that is misclassified
    /// already (nothing to find) or that `steps` iterations did not move across a boundary.
    fn search(
        &self,
        model: &dyn Model,
        inputs: &Tensor,
        labels: &[u32],
    ) -> Result<Vec<Option<Vec<f32>>>, AttackError> {
        let device = inputs.device();
        let sample_dims = &inputs.dims()[1..];
        let clean = inputs.flatten_from(1)?.to_vec2::<f32>()?;
        let features = clean.first().map_or(0, Vec::len);
        let classes = model.num_classes();
        let logits = model.forward(inputs)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let mut found: Vec<Option<Vec<f32>>> = vec![None; clean.len()];
        // The candidate classes of each sample: the true class, then the others by clean logit.
        let mut ranked: Vec<Vec<u32>> = Vec::with_capacity(clean.len());
        let mut active: Vec<usize> = Vec::new();
        for (i, row) in logits.iter().enumerate() {
            let label = labels[i];
            let mut others: Vec<u32> = (0..classes as u32).filter(|&k| k != label).collect();
            others.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
            others.truncate(self.candidates as usize - 1);
            let mut classes_of_sample = vec![label];
            classes_of_sample.extend(others);
            ranked.push(classes_of_sample);
            if argmax(row) == label as usize {
                active.push(i);
            }
        }
        let candidates = ranked.iter().map(Vec::len).max().unwrap_or(0);
        let mut current: Vec<Vec<f32>> = clean.clone();
        let mut total: Vec<Vec<f64>> = vec![vec![0.0; features]; clean.len()];
        let scale = 1.0 + f64::from(self.overshoot);
        for _ in 0..self.steps {
            if active.is_empty() {
                break;
            }
            let points = rows_tensor(&current, &active, sample_dims, device)?;
            // gradients[c][a]: ∇CE toward sample a's c-th candidate class.
            let mut gradients: Vec<Vec<Vec<f32>>> = Vec::with_capacity(candidates);
            let mut logits: Vec<Vec<f32>> = Vec::new();
            for c in 0..candidates {
                // A sample with fewer candidates than `candidates` repeats its true class.
                let targets: Vec<u32> = active
                    .iter()
                    .map(|&i| ranked[i].get(c).copied().unwrap_or(ranked[i][0]))
                    .collect();
                let targets = Tensor::from_vec(targets, active.len(), device)?;
                let pass = model.loss_and_input_gradient(&points, &targets, Loss::CrossEntropy)?;
                if c == 0 {
                    logits = pass.logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
                }
                gradients.push(pass.gradient.flatten_from(1)?.to_dtype(DType::F32)?.to_vec2()?);
            }
            let mut still_active = Vec::with_capacity(active.len());
            for (a, &i) in active.iter().enumerate() {
                let label = labels[i] as usize;
                if argmax(&logits[a]) != label {
                    found[i] = Some(current[i].clone());
                    continue;
                }
                let Some(step) = self.step(&logits[a], &gradients, a, &ranked[i]) else {
                    // Every candidate gradient is zero: no boundary to move toward.
                    continue;
                };
                for ((t, x), (s, x0)) in total[i]
                    .iter_mut()
                    .zip(current[i].iter_mut())
                    .zip(step.iter().zip(&clean[i]))
                {
                    *t += s;
                    *x = (f64::from(*x0) + scale * *t).clamp(0.0, 1.0) as f32;
                }
                still_active.push(i);
            }
            active = still_active;
        }
        if !active.is_empty() {
            let points = rows_tensor(&current, &active, sample_dims, device)?;
            let logits = model.forward(&points)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            for (row, &i) in logits.iter().zip(&active) {
                if argmax(row) != labels[i] as usize {
                    found[i] = Some(current[i].clone());
                }
            }
        }
        Ok(found)
    }

    /// The step to the nearest linearised boundary for active sample `a`, or `None` if every
    /// candidate's `w_k` is zero.
    fn step(
        &self,
        logits: &[f32],
        gradients: &[Vec<Vec<f32>>],
        a: usize,
        ranked: &[u32],
    ) -> Option<Vec<f64>> {
        let label = ranked[0] as usize;
        let true_gradient = &gradients[0][a];
        let mut best: Option<(f64, f64, usize)> = None; // (distance, |f|, candidate)
        for (c, &class) in ranked.iter().enumerate().skip(1) {
            let f = (f64::from(logits[class as usize]) - f64::from(logits[label])).abs();
            // w_k = ∇z_k − ∇z_y = ∇CE_y − ∇CE_k.
            let w = gradients[c][a].iter().zip(true_gradient).map(|(g_k, g_y)| f64::from(*g_y) - f64::from(*g_k));
            let dual = match self.threat.norm {
                Norm::L2 => w.map(|v| v * v).sum::<f64>().sqrt(),
                Norm::Linf => w.map(f64::abs).sum::<f64>(),
            };
            if dual == 0.0 || !dual.is_finite() {
                continue;
            }
            let distance = f / dual;
            if best.is_none_or(|(d, _, _)| distance < d) {
                best = Some((distance, f, c));
            }
        }
        let (_, f, c) = best?;
        let w: Vec<f64> = gradients[c][a]
            .iter()
            .zip(true_gradient)
            .map(|(g_k, g_y)| f64::from(*g_y) - f64::from(*g_k))
            .collect();
        Some(match self.threat.norm {
            Norm::L2 => {
                let squared: f64 = w.iter().map(|v| v * v).sum();
                let length = (f + STEP_SLACK) / squared.sqrt();
                let norm = squared.sqrt();
                w.iter().map(|v| length * v / norm).collect()
            }
            Norm::Linf => {
                let l1: f64 = w.iter().map(|v| v.abs()).sum();
                let length = (f + STEP_SLACK) / l1;
                w.iter().map(|v| length * v.signum() * f64::from(u8::from(*v != 0.0))).collect()
            }
        })
    }
}

/// The index of the largest value (the first of ties), as candle's `argmax`.
pub(crate) fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(best, value), (k, &v)| {
            if v > value {
                (k, v)
            } else {
                (best, value)
            }
        })
        .0
}

/// The rows `which` of `rows` as a batch `(which.len(), sample_dims…)` on `device`.
pub(crate) fn rows_tensor(
    rows: &[Vec<f32>],
    which: &[usize],
    sample_dims: &[usize],
    device: &candle_core::Device,
) -> Result<Tensor, AttackError> {
    let values: Vec<f32> = which.iter().flat_map(|&i| rows[i].iter().copied()).collect();
    let mut shape = vec![which.len()];
    shape.extend_from_slice(sample_dims);
    Ok(Tensor::from_vec(values, shape, device)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;

    fn rng(batch: usize) -> SampleRandomness {
        SampleRandomness::for_range(7, "test", 0..batch)
    }

    #[test]
    fn finds_the_closed_form_minimal_perturbation_of_a_linear_model() {
        let (model, inputs, classes) = near_boundary();
        for norm in [Norm::L2, Norm::Linf] {
            let attack = build_attack(&ENTRY, &format!("norm = \"{norm}\""), f32::INFINITY);
            let adversarial = attack.perturb(&model, &inputs, &labels(&classes), &rng(classes.len())).unwrap();
            let predicted: Vec<u32> = model.predict(&adversarial).unwrap().to_vec1().unwrap();
            let found = crate::projection::perturbation_norms(&adversarial, &inputs, norm).unwrap();
            let expected = closed_form_minimal_norm(&model, &inputs, &classes, norm);
            for i in 0..classes.len() {
                assert_ne!(predicted[i], classes[i], "{norm}: sample {i} not broken");
                let lowest = expected[i];
                // One exact step of length d + 10⁻⁴ (in the step's norm), scaled by 1.02.
                let highest = 1.02 * (lowest + 1e-4) + 1e-5;
                let size = f64::from(found[i]);
                assert!(
                    size >= lowest * (1.0 - 1e-4) && size <= highest,
                    "{norm}: sample {i}: ‖δ‖ = {size}, closed form {lowest}"
                );
            }
        }
    }

    #[test]
    fn a_finite_budget_keeps_only_the_perturbations_that_fit() {
        let (model, inputs, classes) = near_boundary();
        let unbounded = build_attack(&ENTRY, "", f32::INFINITY)
            .perturb(&model, &inputs, &labels(&classes), &rng(classes.len()))
            .unwrap();
        let sizes = crate::projection::perturbation_norms(&unbounded, &inputs, Norm::L2).unwrap();
        let mut sorted = sizes.clone();
        sorted.sort_by(f32::total_cmp);
        let epsilon = sorted[sorted.len() / 2];
        let bounded = build_attack(&ENTRY, "", epsilon)
            .perturb(&model, &inputs, &labels(&classes), &rng(classes.len()))
            .unwrap();
        let bounded_rows: Vec<Vec<f32>> = bounded.to_vec2().unwrap();
        let unbounded_rows: Vec<Vec<f32>> = unbounded.to_vec2().unwrap();
        let clean_rows: Vec<Vec<f32>> = inputs.to_vec2().unwrap();
        for i in 0..classes.len() {
            let expected = if sizes[i] <= epsilon { &unbounded_rows[i] } else { &clean_rows[i] };
            assert_eq!(&bounded_rows[i], expected, "sample {i}");
        }
    }

    #[test]
    fn misclassified_samples_are_left_alone() {
        let (model, inputs, classes) = near_boundary();
        let wrong: Vec<u32> = classes.iter().map(|&c| (c + 1) % 3).collect();
        let adversarial = build_attack(&ENTRY, "", f32::INFINITY)
            .perturb(&model, &inputs, &labels(&wrong), &rng(wrong.len()))
            .unwrap();
        assert_eq!(adversarial.to_vec2::<f32>().unwrap(), inputs.to_vec2::<f32>().unwrap());
    }

    #[test]
    fn bad_parameters_name_their_key() {
        for (params, key) in [
            ("steps = 0", "steps"),
            ("overshoot = -0.1", "overshoot"),
            ("candidates = 1", "candidates"),
            ("norm = \"l1\"", "norm"),
        ] {
            let table: toml::Table = toml::from_str(params).unwrap();
            let error = build(&table, 1.0).err().unwrap();
            assert!(
                matches!(error, AttackError::InvalidParameter { key: ref k, .. } if k == key),
                "{params}: {error}"
            );
        }
        let error = build(&toml::Table::new(), f32::NAN).err().unwrap();
        assert!(matches!(error, AttackError::InvalidParameter { ref key, .. } if key == "epsilon"));
        assert!(build(&toml::Table::new(), f32::INFINITY).is_ok());
    }
}
