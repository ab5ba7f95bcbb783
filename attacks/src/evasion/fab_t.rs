//! FAB-T: the targeted Fast Adaptive Boundary attack, a minimal-norm attack that walks along
//! the decision boundary toward the clean input.
//!
//! ## What it does
//!
//! For each correctly classified sample, the classes ranked 2nd, 3rd, … by its clean logits
//! (`targets` of them) become targets one after another. For target `t` it starts at the clean
//! input `x₀` (or, for restart `r > 0`, at a random point at distance ½·`restart_radius` from
//! it) and repeats `steps` times: linearise `f = z_t − z_y` at the iterate `x`, with
//! gradient `w = ∇z_t − ∇z_y`; compute the smallest steps, in the attack's norm, onto the
//! linearised boundary `f(x) + ⟨w, x′ − x⟩ = 0` *inside the box* [0, 1]ᵈ from `x` (`d₁`) and
//! from `x₀` (`d₂`) with [`boundary_step`] (exact); and move to
//!
//! `x ← clip((x + η·d₁)(1 − α) + (x₀ + η·d₂)·α, 0, 1)`, `α = min(‖d₁‖ / (‖d₁‖ + ‖d₂‖), α_max)`,
//!
//! the biased step that keeps the iterate near `x₀`. Whenever the new iterate is misclassified
//! it is kept if it is the closest to `x₀` so far, and the iterate is pulled back to
//! `x₀ + β(x − x₀)`. The sample's answer is its closest misclassified iterate over every
//! target and restart.
//!
//! FAB-T is a minimal-norm attack ([`BudgetSemantics::MinimalNorm`]): the harness runs it once
//! at ε = +∞, where every target runs on every sample (a later target may find a smaller
//! perturbation), and reads every ε of the suite from each sample's smallest perturbation.
//! Built at a finite ε it behaves as AutoAttack's FAB-T: a later target runs only on the
//! samples no earlier target broke within ε, and the output is the found point where its norm
//! is at most ε, the clean input elsewhere. Both give the same verdict at every ε, because
//! each (target, restart) run of a sample is independent of the other samples and runs.
//!
//! `w` comes from two cross-entropy gradients, `∇CE_y − ∇CE_t = ∇z_t − ∇z_y` exactly (the
//! log-sum-exp cancels), so any model that gives input gradients serves FAB-T; the reference
//! implementation back-propagates `z_t − z_y` once instead. The projection, the step and the
//! distances are computed per sample in f64 on the host.
//!
//! ## Threat model
//!
//! White-box: needs input gradients. Untargeted in what it reports (the targets are routes to
//! *some* wrong class, as in AutoAttack); perturbation size in L∞ or L2, inside [0, 1]. ε = 0
//! returns the input bit for bit. Restart `r > 0` of target `k` draws its start from the
//! sample's stream `Restart(k·restarts + r)`; with the default single restart FAB-T draws
//! nothing. Cost per sample: one forward pass to rank the targets, then per target, restart
//! and step two gradients and one forward pass (the success check).
//!
//! ## Parameters
//!
//! - `norm` (default `"linf"`): `"linf"` or `"l2"`.
//! - `steps` (default `100`): iterations per target and restart.
//! - `targets` (default `9`): how many of the most likely other classes are tried.
//! - `restarts` (default `1`): runs per target; the first starts at the clean input.
//! - `alpha_max` (default `0.1`), `eta` (default `1.05`), `beta` (default `0.9`): the bias
//!   toward `x₀`, the overshoot and the pull-back, as in the paper.
//! - `restart_radius` (default `0.3` for L∞, `1.0` for L2, the reference's defaults when it is
//!   given no ε): random starts lie at half of it from the clean input. AutoAttack uses ε
//!   here; gauntlet keeps the start independent of ε so that one unbounded run answers every
//!   ε exactly as runs at each ε would.
//!
//! ## Known-answer tests
//!
//! [`boundary_step`] is checked against brute force (a grid over the hyperplane ∩ box in two
//! and three dimensions) and against an independent bisection on random instances; on a
//! linear model the linearisation is exact and FAB-T finds the closed-form minimal
//! perturbation `min_{k≠y} |z_k − z_y| / ‖w_k − w_y‖_*` (its first step lands at η times it).
//!
//! ## Reference
//!
//! Croce, Hein. *Minimally distorted adversarial examples with a fast adaptive boundary
//! attack.* ICML 2020, arXiv:1907.02044. Targeted version and defaults as in AutoAttack
//! (Croce, Hein, ICML 2020, arXiv:2003.01690).

use candle_core::{DType, Device, Tensor};
use gauntlet_models::{Loss, Model};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::Deserialize;

use super::apgd::check_restarts;
use super::apgd_t::ranked_targets;
use super::deepfool::{argmax, rows_tensor};
use crate::objective::{
    check_batch, check_minimal_norm_epsilon, check_randomness, minimal_norm_output,
};
use crate::params::parse_params;
use crate::projection::perturbation_norms;
use crate::{
    Attack, AttackEntry, AttackError, AttackKind, AttackObjective, BudgetSemantics, ModelAccess,
    Norm, ParameterDoc, Passes, SampleRandomness, Stream, ThreatModel,
};

/// The registry entry.
pub const ENTRY: AttackEntry = AttackEntry {
    name: "fab_t",
    summary: "FAB-T: targeted Fast Adaptive Boundary attack, exact projections onto the linearised boundary ∩ box toward each of the top-9 other classes; minimal-norm (L∞ or L2), one run answers every ε",
    reference: "Croce, Hein. Minimally distorted adversarial examples with a fast adaptive boundary attack. ICML 2020. arXiv:1907.02044",
    parameters: &[
        ParameterDoc {
            name: "norm",
            default: "\"linf\"",
            description: "The norm the perturbation is minimised in: `\"linf\"` or `\"l2\"`.",
        },
        ParameterDoc {
            name: "steps",
            default: "100",
            description: "Iterations per target and restart (two gradients and one forward pass each).",
        },
        ParameterDoc {
            name: "targets",
            default: "9",
            description: "How many of the most likely other classes (by clean logits) to try as targets; at least 1, at most the number of classes − 1 are used.",
        },
        ParameterDoc {
            name: "restarts",
            default: "1",
            description: "Runs per target; the first starts at the clean input, later ones at a random point.",
        },
        ParameterDoc {
            name: "alpha_max",
            default: "0.1",
            description: "The largest weight of the step from the clean input in the biased step; in [0, 1].",
        },
        ParameterDoc {
            name: "eta",
            default: "1.05",
            description: "Overshoot: both projections are scaled by eta to land past the boundary; ≥ 1.",
        },
        ParameterDoc {
            name: "beta",
            default: "0.9",
            description: "Pull-back toward the clean input after a successful step; in (0, 1].",
        },
        ParameterDoc {
            name: "restart_radius",
            default: "0.3 (linf), 1.0 (l2)",
            description: "Random starts of restarts after the first lie at half of this distance from the clean input (independent of ε, so one unbounded run answers every ε).",
        },
    ],
    kind: AttackKind::MinimalNorm,
    needs: ModelAccess::InputGradients,
    budget: BudgetSemantics::MinimalNorm,
    conformance_variants: &[
        "norm = \"linf\"\nsteps = 10",
        "norm = \"l2\"\nsteps = 10",
        "steps = 4\ntargets = 1\nrestarts = 3\nrestart_radius = 0.5",
        "norm = \"l2\"\nsteps = 3\nrestarts = 2\nalpha_max = 0.0\neta = 1.0\nbeta = 1.0",
    ],
    build,
};

/// The suite-file parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    norm: Norm,
    steps: u32,
    targets: u32,
    restarts: u32,
    alpha_max: f64,
    eta: f64,
    beta: f64,
    restart_radius: Option<f64>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            norm: Norm::Linf,
            steps: 100,
            targets: 9,
            restarts: 1,
            alpha_max: 0.1,
            eta: 1.05,
            beta: 0.9,
            restart_radius: None,
        }
    }
}

fn build(params: &toml::Table, epsilon: f32) -> Result<Box<dyn Attack>, AttackError> {
    Ok(Box::new(FabTargeted::from_table(params, epsilon)?))
}

impl FabTargeted {
    /// The attack from a suite table, as the registry builds it.
    pub fn from_table(params: &toml::Table, epsilon: f32) -> Result<FabTargeted, AttackError> {
        validate(parse_params::<Params>(params)?, epsilon)
    }
}

fn validate(p: Params, epsilon: f32) -> Result<FabTargeted, AttackError> {
    check_minimal_norm_epsilon(epsilon)?;
    if p.steps < 1 {
        return Err(AttackError::invalid_parameter(
            "steps",
            format!("steps must be ≥ 1, got {}", p.steps),
        ));
    }
    if p.targets < 1 {
        return Err(AttackError::invalid_parameter(
            "targets",
            format!("targets must be ≥ 1, got {}", p.targets),
        ));
    }
    check_restarts(p.restarts)?;
    if !(0.0..=1.0).contains(&p.alpha_max) {
        return Err(AttackError::invalid_parameter(
            "alpha_max",
            format!("alpha_max must be in [0, 1], got {}", p.alpha_max),
        ));
    }
    if !(p.eta.is_finite() && p.eta >= 1.0) {
        return Err(AttackError::invalid_parameter(
            "eta",
            format!("eta must be a finite number ≥ 1, got {}", p.eta),
        ));
    }
    if !(p.beta > 0.0 && p.beta <= 1.0) {
        return Err(AttackError::invalid_parameter(
            "beta",
            format!("beta must be in (0, 1], got {}", p.beta),
        ));
    }
    let restart_radius = p.restart_radius.unwrap_or(match p.norm {
        Norm::Linf => 0.3,
        Norm::L2 => 1.0,
    });
    if !(restart_radius.is_finite() && restart_radius > 0.0) {
        return Err(AttackError::invalid_parameter(
            "restart_radius",
            format!("restart_radius must be a finite number > 0, got {restart_radius}"),
        ));
    }
    Ok(FabTargeted {
        threat: ThreatModel {
            norm: p.norm,
            epsilon,
        },
        steps: p.steps,
        targets: p.targets,
        restarts: p.restarts,
        alpha_max: p.alpha_max,
        eta: p.eta,
        beta: p.beta,
        restart_radius,
    })
}

/// The FAB-T attack.
#[derive(Debug, Clone)]
pub struct FabTargeted {
    threat: ThreatModel,
    steps: u32,
    targets: u32,
    restarts: u32,
    alpha_max: f64,
    eta: f64,
    beta: f64,
    restart_radius: f64,
}

/// The distances below this are treated as this, as in the reference, so that the bias
/// `‖d₁‖ / (‖d₁‖ + ‖d₂‖)` is defined when both steps are zero.
const SMALLEST_STEP: f64 = 1e-8;

/// The smallest step `δ`, in `norm`, from `point` (in [0, 1]ⁿ) onto the hyperplane
/// `⟨w, δ⟩ = c` that keeps `point + δ` inside the box [0, 1]ⁿ — exactly, up to f64 rounding.
///
/// Each coordinate moves in the direction that brings `⟨w, δ⟩` toward `c`
/// (`u_i = sign(c)·sign(w_i)`), by at most its room to the box face that way. With `a_i = |w_i|`
/// the progress of a step is piecewise linear and increasing in one parameter:
///
/// - L∞: `δ_i = u_i·min(λ, room_i)`, progress `Σ a_i·min(λ, room_i)`, and `λ = ‖δ‖∞`;
/// - L2: `δ_i = u_i·min(μ·a_i, room_i)` (the KKT form of the box-constrained least-norm
///   problem), progress `Σ a_i·min(μ·a_i, room_i)`.
///
/// The parameter solving progress = |c| is found by sorting the breakpoints (`room_i`, resp.
/// `room_i / a_i`) and solving the one linear piece that crosses |c|: O(n log n). Coordinates
/// with `w_i = 0` do not move. When even the box corner in the direction `u` does not reach
/// the hyperplane, that corner is returned (the most progress the box allows), as the
/// reference implementation does. `c = 0` (or not finite) returns zeros.
pub fn boundary_step(norm: Norm, point: &[f64], w: &[f64], c: f64) -> Vec<f64> {
    let mut delta = vec![0.0; point.len()];
    if c == 0.0 || !c.is_finite() {
        return delta;
    }
    let goal = c.abs();
    // (breakpoint, coordinate, a_i, room_i, u_i) of every coordinate that can move.
    let mut moving: Vec<(f64, usize, f64, f64, f64)> = Vec::with_capacity(point.len());
    let mut reach = 0.0;
    for (i, (&p, &wi)) in point.iter().zip(w).enumerate() {
        if wi == 0.0 || !wi.is_finite() {
            continue;
        }
        let u = c.signum() * wi.signum();
        let room = if u > 0.0 { 1.0 - p } else { p }.max(0.0);
        let a = wi.abs();
        reach += a * room;
        let breakpoint = match norm {
            Norm::Linf => room,
            Norm::L2 => room / a,
        };
        moving.push((breakpoint, i, a, room, u));
    }
    if reach <= goal {
        for &(_, i, _, room, u) in &moving {
            delta[i] = u * room;
        }
        return delta;
    }
    moving.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    // slope[k]: the progress per unit of the parameter while coordinates k.. are unsaturated
    // (Σ a for L∞, Σ a² for L2), summed from the end so no cancellation creeps in.
    let mut slope = vec![0.0; moving.len() + 1];
    for k in (0..moving.len()).rev() {
        let a = moving[k].2;
        slope[k] = slope[k + 1]
            + match norm {
                Norm::Linf => a,
                Norm::L2 => a * a,
            };
    }
    let mut saturated = 0.0; // Σ a·room over the coordinates before k.
    let mut parameter = None;
    for (k, &(breakpoint, _, a, room, _)) in moving.iter().enumerate() {
        if saturated + breakpoint * slope[k] >= goal {
            parameter = Some((goal - saturated) / slope[k]);
            break;
        }
        saturated += a * room;
    }
    match parameter {
        Some(t) => {
            for &(_, i, a, room, u) in &moving {
                let size = match norm {
                    Norm::Linf => t,
                    Norm::L2 => t * a,
                };
                delta[i] = u * size.min(room);
            }
        }
        // Rounding left the last piece just short of |c|: the corner is the answer.
        None => {
            for &(_, i, _, room, u) in &moving {
                delta[i] = u * room;
            }
        }
    }
    delta
}

/// ‖v‖ in `norm`, in f64.
fn norm_of(norm: Norm, v: &[f64]) -> f64 {
    match norm {
        Norm::Linf => v.iter().fold(0.0f64, |m, x| m.max(x.abs())),
        Norm::L2 => v.iter().map(|x| x * x).sum::<f64>().sqrt(),
    }
}

/// One sample's closest misclassified point so far and its distance from the clean input.
#[derive(Debug, Clone)]
struct Found {
    distance: f64,
    point: Vec<f32>,
}

impl Attack for FabTargeted {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn threat(&self) -> ThreatModel {
        self.threat
    }

    /// FAB linearises logit differences, the CW margin's terms; success is misclassification.
    fn objective(&self) -> AttackObjective {
        AttackObjective {
            loss: Loss::CwMargin,
            target: None,
        }
    }

    /// One forward pass to rank the targets, then per target, restart and step two gradients
    /// and one forward pass. An upper bound: a model with fewer than `targets + 1` classes
    /// has fewer targets, and at a finite ε a broken sample skips the later targets.
    fn passes_per_sample(&self) -> Passes {
        let runs = u64::from(self.targets) * u64::from(self.restarts) * u64::from(self.steps);
        Passes::forwards(1) + (Passes::gradients(2) + Passes::forwards(1)).times(runs)
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
        let found = self.search(model, inputs, &batch.labels_host, randomness)?;
        minimal_norm_output(inputs, &found, self.threat.norm, self.threat.epsilon)
    }
}

impl FabTargeted {
    /// Each sample's closest misclassified point over every target and restart run on it, or
    /// `None` for a sample misclassified already or never broken.
    fn search(
        &self,
        model: &dyn Model,
        inputs: &Tensor,
        labels: &[u32],
        randomness: &SampleRandomness,
    ) -> Result<Vec<Option<Vec<f32>>>, AttackError> {
        let device = inputs.device();
        let sample_dims = inputs.dims()[1..].to_vec();
        let clean = inputs.flatten_from(1)?.to_vec2::<f32>()?;
        let logits = model.forward(inputs)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let targets = (self.targets as usize).min(model.num_classes().saturating_sub(1));
        let ranked = ranked_targets(&logits, targets);
        let correct: Vec<bool> = logits
            .iter()
            .zip(labels)
            .map(|(row, &y)| argmax(row) == y as usize)
            .collect();
        let mut best: Vec<Option<Found>> = vec![None; clean.len()];
        let bounded = self.threat.epsilon.is_finite();
        for k in 0..targets {
            for restart in 0..self.restarts {
                // At a finite ε a sample broken within ε is done (AutoAttack's early stop); at
                // +∞ every run goes on, since a later one may find a smaller perturbation.
                let within = if bounded {
                    self.within_budget(inputs, &clean, &best)?
                } else {
                    vec![false; clean.len()]
                };
                let active: Vec<usize> = (0..clean.len())
                    .filter(|&i| correct[i] && !within[i])
                    .collect();
                if active.is_empty() {
                    break;
                }
                let run = Run {
                    model,
                    device,
                    sample_dims: &sample_dims,
                    clean: &clean,
                    labels,
                    targets: ranked.iter().map(|row| row[k]).collect(),
                };
                let stream = Stream::Restart(k as u32 * self.restarts + restart);
                let starts = self.starts(&run, &active, restart, randomness, stream);
                self.run(&run, &active, starts, &mut best)?;
            }
        }
        Ok(best.into_iter().map(|f| f.map(|f| f.point)).collect())
    }

    /// Whether each sample's best point lies within ε, measured as every ε check measures it
    /// ([`perturbation_norms`] on the f32 values).
    fn within_budget(
        &self,
        inputs: &Tensor,
        clean: &[Vec<f32>],
        best: &[Option<Found>],
    ) -> Result<Vec<bool>, AttackError> {
        if best.iter().all(Option::is_none) {
            return Ok(vec![false; best.len()]);
        }
        let candidate: Vec<f32> = clean
            .iter()
            .zip(best)
            .flat_map(|(clean, found)| {
                found
                    .as_ref()
                    .map_or(clean.as_slice(), |f| f.point.as_slice())
                    .iter()
                    .copied()
            })
            .collect();
        let candidate = Tensor::from_vec(candidate, inputs.dims(), inputs.device())?;
        let norms = perturbation_norms(&candidate, inputs, self.threat.norm)?;
        Ok(best
            .iter()
            .zip(norms)
            .map(|(found, size)| found.is_some() && size <= self.threat.epsilon)
            .collect())
    }

    /// The starting points of restart `restart` for the samples `active`: the clean inputs for
    /// the first, random points at ½·restart_radius from them (then clipped to the box) for
    /// later ones.
    fn starts(
        &self,
        run: &Run<'_>,
        active: &[usize],
        restart: u32,
        randomness: &SampleRandomness,
        stream: Stream,
    ) -> Vec<Vec<f32>> {
        let radius = 0.5 * self.restart_radius;
        active
            .iter()
            .map(|&i| {
                let clean = &run.clean[i];
                if restart == 0 {
                    return clean.clone();
                }
                let mut rng = randomness.generator(i, stream);
                let offset = random_direction(self.threat.norm, clean.len(), &mut rng);
                clean
                    .iter()
                    .zip(offset)
                    .map(|(&x, o)| (f64::from(x) + radius * o).clamp(0.0, 1.0) as f32)
                    .collect()
            })
            .collect()
    }

    /// One FAB run toward `run.targets` from `starts` for the samples `active`; a misclassified
    /// iterate closer to the clean input than the sample's best replaces it.
    fn run(
        &self,
        run: &Run<'_>,
        active: &[usize],
        starts: Vec<Vec<f32>>,
        best: &mut [Option<Found>],
    ) -> Result<(), AttackError> {
        let norm = self.threat.norm;
        let mut current = starts;
        let true_labels: Vec<u32> = active.iter().map(|&i| run.labels[i]).collect();
        let targets: Vec<u32> = active.iter().map(|&i| run.targets[i]).collect();
        let true_labels_tensor = Tensor::from_vec(true_labels.clone(), active.len(), run.device)?;
        let targets_tensor = Tensor::from_vec(targets.clone(), active.len(), run.device)?;
        let all: Vec<usize> = (0..active.len()).collect();
        for _ in 0..self.steps {
            let points = rows_tensor(&current, &all, run.sample_dims, run.device)?;
            // w = ∇z_t − ∇z_y = ∇CE_y − ∇CE_t.
            let toward_y =
                run.model
                    .loss_and_input_gradient(&points, &true_labels_tensor, Loss::CrossEntropy)?;
            let toward_t =
                run.model
                    .loss_and_input_gradient(&points, &targets_tensor, Loss::CrossEntropy)?;
            let logits = toward_y.logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            let gradient_y = toward_y.gradient.flatten_from(1)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            let gradient_t = toward_t.gradient.flatten_from(1)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            for (a, &i) in active.iter().enumerate() {
                let f = f64::from(logits[a][targets[a] as usize])
                    - f64::from(logits[a][true_labels[a] as usize]);
                let w: Vec<f64> = gradient_y[a]
                    .iter()
                    .zip(&gradient_t[a])
                    .map(|(gy, gt)| f64::from(*gy) - f64::from(*gt))
                    .collect();
                if !f.is_finite() || w.iter().any(|v| !v.is_finite()) {
                    continue;
                }
                let x: Vec<f64> = current[a].iter().map(|&v| f64::from(v)).collect();
                let x0: Vec<f64> = run.clean[i].iter().map(|&v| f64::from(v)).collect();
                // The linearised boundary f + ⟨w, x′ − x⟩ = 0, reached from x and from x₀.
                let d1 = boundary_step(norm, &x, &w, -f);
                let from_clean: f64 = w.iter().zip(x0.iter().zip(&x)).map(|(wi, (c, v))| wi * (c - v)).sum();
                let d2 = boundary_step(norm, &x0, &w, -(f + from_clean));
                let a1 = norm_of(norm, &d1).max(SMALLEST_STEP);
                let a2 = norm_of(norm, &d2).max(SMALLEST_STEP);
                let alpha = (a1 / (a1 + a2)).clamp(0.0, self.alpha_max);
                for (j, value) in current[a].iter_mut().enumerate() {
                    let moved = (x[j] + self.eta * d1[j]) * (1.0 - alpha)
                        + (x0[j] + self.eta * d2[j]) * alpha;
                    *value = moved.clamp(0.0, 1.0) as f32;
                }
            }
            let points = rows_tensor(&current, &all, run.sample_dims, run.device)?;
            let predicted: Vec<u32> = run.model.predict(&points)?.to_vec1()?;
            for (a, &i) in active.iter().enumerate() {
                if predicted[a] == true_labels[a] {
                    continue;
                }
                let clean = &run.clean[i];
                let offset: Vec<f64> = current[a]
                    .iter()
                    .zip(clean)
                    .map(|(&v, &c)| f64::from(v) - f64::from(c))
                    .collect();
                let distance = norm_of(norm, &offset);
                if best[i].as_ref().is_none_or(|b| distance < b.distance) {
                    best[i] = Some(Found {
                        distance,
                        point: current[a].clone(),
                    });
                }
                for (value, (&c, o)) in current[a].iter_mut().zip(clean.iter().zip(&offset)) {
                    *value = (f64::from(c) + self.beta * o).clamp(0.0, 1.0) as f32;
                }
            }
        }
        Ok(())
    }
}

/// What one FAB run shares across its samples.
struct Run<'a> {
    model: &'a dyn Model,
    device: &'a Device,
    sample_dims: &'a [usize],
    /// Every sample's clean input, flattened.
    clean: &'a [Vec<f32>],
    /// Every sample's true label.
    labels: &'a [u32],
    /// Every sample's target in this run.
    targets: Vec<u32>,
}

/// A random direction of unit norm: uniform in [−1, 1]ᵈ scaled to unit L∞ norm, or Gaussian
/// scaled to unit L2 norm, as the reference's random starts.
fn random_direction(norm: Norm, d: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let t: Vec<f64> = match norm {
        Norm::Linf => (0..d).map(|_| rng.random::<f64>() * 2.0 - 1.0).collect(),
        Norm::L2 => (0..d).map(|_| rng.sample::<f64, _>(StandardNormal)).collect(),
    };
    let size = norm_of(norm, &t);
    if size > 0.0 {
        t.iter().map(|v| v / size).collect()
    } else {
        vec![0.0; d]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// The feasible set and the constraint, checked on a returned step.
    fn check_step(point: &[f64], w: &[f64], c: f64, delta: &[f64]) -> Result<bool, TestCaseError> {
        for (p, d) in point.iter().zip(delta) {
            prop_assert!((-1e-12..=1.0 + 1e-12).contains(&(p + d)), "outside the box");
        }
        for (wi, d) in w.iter().zip(delta) {
            if *wi == 0.0 {
                prop_assert_eq!(*d, 0.0);
            }
        }
        let reached: f64 = w.iter().zip(delta).map(|(a, b)| a * b).sum();
        let scale = w.iter().map(|v| v.abs()).sum::<f64>().max(1.0);
        Ok((reached - c).abs() <= 1e-9 * scale)
    }

    /// Independent solver: bisection on the multiplier of the KKT form (L2) or on the L∞
    /// radius, with the progress evaluated directly; `None` when the box cannot reach `c`.
    fn bisection(norm: Norm, point: &[f64], w: &[f64], c: f64) -> Option<f64> {
        let s = c.signum();
        let progress = |t: f64| -> f64 {
            point
                .iter()
                .zip(w)
                .map(|(&p, &wi)| {
                    if wi == 0.0 {
                        return 0.0;
                    }
                    let u = s * wi.signum();
                    let room = if u > 0.0 { 1.0 - p } else { p };
                    let size = match norm {
                        Norm::Linf => t,
                        Norm::L2 => t * wi.abs(),
                    };
                    wi.abs() * size.min(room)
                })
                .sum()
        };
        let (mut lo, mut hi) = (0.0f64, 1e6f64);
        if progress(hi) < c.abs() * (1.0 - 1e-12) {
            return None;
        }
        for _ in 0..300 {
            let mid = 0.5 * (lo + hi);
            if progress(mid) >= c.abs() {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        let t = hi;
        let delta: Vec<f64> = point
            .iter()
            .zip(w)
            .map(|(&p, &wi)| {
                if wi == 0.0 {
                    return 0.0;
                }
                let u = s * wi.signum();
                let room = if u > 0.0 { 1.0 - p } else { p };
                let size = match norm {
                    Norm::Linf => t,
                    Norm::L2 => t * wi.abs(),
                };
                u * size.min(room)
            })
            .collect();
        Some(norm_of(norm, &delta))
    }

    /// Brute force in two or three dimensions: the smallest norm over a fine grid of points of
    /// the hyperplane inside the box (`None` if the grid meets none).
    fn grid_minimum(norm: Norm, point: &[f64], w: &[f64], c: f64) -> Option<f64> {
        // Solve for the coordinate with the largest |w|; grid the others over their box range.
        let pivot = (0..w.len()).max_by(|&a, &b| w[a].abs().total_cmp(&w[b].abs()))?;
        if w[pivot] == 0.0 {
            return None;
        }
        let others: Vec<usize> = (0..w.len()).filter(|&i| i != pivot).collect();
        let cells: usize = if others.len() == 1 { 20_000 } else { 200 };
        let mut best: Option<f64> = None;
        let mut delta = vec![0.0; w.len()];
        let total = (cells + 1).pow(others.len() as u32);
        for index in 0..total {
            let mut rest = index;
            let mut partial = 0.0;
            for &o in &others {
                let k = rest % (cells + 1);
                rest /= cells + 1;
                delta[o] = -point[o] + k as f64 / cells as f64;
                partial += w[o] * delta[o];
            }
            delta[pivot] = (c - partial) / w[pivot];
            let x = point[pivot] + delta[pivot];
            if !(0.0..=1.0).contains(&x) {
                continue;
            }
            let size = norm_of(norm, &delta);
            best = Some(best.map_or(size, |b: f64| b.min(size)));
        }
        best
    }

    fn coordinate() -> impl Strategy<Value = f64> {
        prop_oneof![4 => 0.0f64..=1.0, 1 => Just(0.0f64), 1 => Just(1.0f64)]
    }

    fn weight() -> impl Strategy<Value = f64> {
        prop_oneof![6 => -3.0f64..3.0, 1 => Just(0.0f64)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        // The step is feasible, reaches the hyperplane whenever the box allows (and is the
        // corner otherwise), and its norm is the smallest: equal to an independent bisection.
        #[test]
        fn boundary_step_is_the_smallest_feasible_step(
            (point, w) in (1usize..12).prop_flat_map(|n| (vec(coordinate(), n), vec(weight(), n))),
            c in prop_oneof![4 => -2.0f64..2.0, 1 => Just(0.0f64)],
        ) {
            for norm in [Norm::Linf, Norm::L2] {
                let delta = boundary_step(norm, &point, &w, c);
                let reached = check_step(&point, &w, c, &delta)?;
                match bisection(norm, &point, &w, c) {
                    Some(expected) if c != 0.0 => {
                        prop_assert!(reached, "{norm}: the hyperplane was reachable but not reached");
                        let size = norm_of(norm, &delta);
                        prop_assert!(
                            (size - expected).abs() <= 1e-9 * expected.max(1.0),
                            "{norm}: ‖δ‖ = {size}, bisection {expected}"
                        );
                    }
                    _ if c == 0.0 => {
                        prop_assert!(delta.iter().all(|d| *d == 0.0));
                    }
                    _ => {
                        // Unreachable: every moving coordinate goes to its face.
                        for ((p, wi), d) in point.iter().zip(&w).zip(&delta) {
                            if *wi != 0.0 {
                                let face = p + d;
                                prop_assert!(face.abs() < 1e-12 || (face - 1.0).abs() < 1e-12, "{norm}: not a corner");
                                prop_assert!(d * wi * c >= 0.0, "{norm}: moved the wrong way");
                            }
                        }
                    }
                }
            }
        }

        // Brute force: no point of a fine grid over the hyperplane ∩ box is closer than the
        // step (which is itself on the hyperplane and in the box).
        #[test]
        fn boundary_step_matches_a_grid_search(
            (point, w) in (2usize..4).prop_flat_map(|n| (vec(coordinate(), n), vec(-3.0f64..3.0, n))),
            c in -1.5f64..1.5,
        ) {
            prop_assume!(w.iter().all(|v| v.abs() > 0.05));
            for norm in [Norm::Linf, Norm::L2] {
                let delta = boundary_step(norm, &point, &w, c);
                let reached = check_step(&point, &w, c, &delta)?;
                // Every grid point is exactly on the hyperplane and in the box, so none may be
                // closer than a step that is itself feasible and reaches the hyperplane.
                if let Some(grid) = grid_minimum(norm, &point, &w, c) {
                    prop_assert!(reached, "{norm}: the grid found feasible points");
                    let size = norm_of(norm, &delta);
                    prop_assert!(size <= grid + 1e-9, "{norm}: grid {grid} beat ‖δ‖ = {size}");
                }
            }
        }
    }

    #[test]
    fn boundary_step_known_cases() {
        // Free space: L2 goes along w, L∞ along sign(w), to exactly the hyperplane.
        let point = [0.5, 0.5];
        let l2 = boundary_step(Norm::L2, &point, &[3.0, 4.0], 0.25);
        assert!((l2[0] - 0.03).abs() < 1e-15 && (l2[1] - 0.04).abs() < 1e-15, "{l2:?}");
        let linf = boundary_step(Norm::Linf, &point, &[3.0, -1.0], -0.2);
        assert!((linf[0] + 0.05).abs() < 1e-15 && (linf[1] - 0.05).abs() < 1e-15, "{linf:?}");
        // The box binds: coordinate 0 has room 0.1 upward; the rest comes from coordinate 1.
        let bound = boundary_step(Norm::Linf, &[0.9, 0.5], &[1.0, 1.0], 0.5);
        assert!((bound[0] - 0.1).abs() < 1e-15 && (bound[1] - 0.4).abs() < 1e-15, "{bound:?}");
        // Out of reach: the corner.
        let corner = boundary_step(Norm::L2, &[0.9, 0.5], &[1.0, 0.0], 0.5);
        assert!((corner[0] - 0.1).abs() < 1e-15 && corner[1] == 0.0, "{corner:?}");
    }

    fn rng(batch: usize) -> SampleRandomness {
        SampleRandomness::for_range(7, "test", 0..batch)
    }

    #[test]
    fn finds_the_closed_form_minimal_perturbation_of_a_linear_model() {
        let (model, inputs, classes) = near_boundary();
        for norm in [Norm::L2, Norm::Linf] {
            let expected = closed_form_minimal_norm(&model, &inputs, &classes, norm);
            for (steps, slack) in [(1u32, 1.05), (100, 1.01)] {
                let attack = build_attack(
                    &ENTRY,
                    &format!("norm = \"{norm}\"\nsteps = {steps}"),
                    f32::INFINITY,
                );
                let adversarial = attack
                    .perturb(&model, &inputs, &labels(&classes), &rng(classes.len()))
                    .unwrap();
                let predicted: Vec<u32> = model.predict(&adversarial).unwrap().to_vec1().unwrap();
                let found = crate::projection::perturbation_norms(&adversarial, &inputs, norm).unwrap();
                for i in 0..classes.len() {
                    assert_ne!(predicted[i], classes[i], "{norm}, {steps} steps: sample {i} not broken");
                    let lowest = expected[i];
                    let size = f64::from(found[i]);
                    eprintln!("{norm} {steps} steps: sample {i}: ‖δ‖ / closed form = {}", size / lowest);
                    assert!(
                        size >= lowest * (1.0 - 1e-5) && size <= lowest * slack * (1.0 + 1e-5),
                        "{norm}, {steps} steps: sample {i}: ‖δ‖ = {size}, closed form {lowest}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_finite_budget_agrees_with_the_unbounded_run() {
        let (model, inputs, classes) = near_boundary();
        let params = "steps = 20\nrestarts = 2\nrestart_radius = 0.1";
        let unbounded = build_attack(&ENTRY, params, f32::INFINITY)
            .perturb(&model, &inputs, &labels(&classes), &rng(classes.len()))
            .unwrap();
        let sizes = crate::projection::perturbation_norms(&unbounded, &inputs, Norm::Linf).unwrap();
        let mut sorted = sizes.clone();
        sorted.sort_by(f32::total_cmp);
        let epsilon = sorted[sorted.len() / 2];
        let bounded = build_attack(&ENTRY, params, epsilon)
            .perturb(&model, &inputs, &labels(&classes), &rng(classes.len()))
            .unwrap();
        let broken_bounded: Vec<u32> = model.predict(&bounded).unwrap().to_vec1().unwrap();
        for i in 0..classes.len() {
            assert_eq!(
                broken_bounded[i] != classes[i],
                sizes[i] <= epsilon,
                "sample {i}: ‖δ‖ = {} at ε = {epsilon}",
                sizes[i]
            );
        }
    }

    #[test]
    fn misclassified_samples_are_left_alone() {
        let (model, inputs, classes) = near_boundary();
        let wrong: Vec<u32> = classes.iter().map(|&c| (c + 1) % 3).collect();
        let adversarial = build_attack(&ENTRY, "steps = 5", f32::INFINITY)
            .perturb(&model, &inputs, &labels(&wrong), &rng(wrong.len()))
            .unwrap();
        assert_eq!(adversarial.to_vec2::<f32>().unwrap(), inputs.to_vec2::<f32>().unwrap());
    }

    #[test]
    fn bad_parameters_name_their_key() {
        for (params, key) in [
            ("steps = 0", "steps"),
            ("targets = 0", "targets"),
            ("restarts = 0", "restarts"),
            ("alpha_max = 1.5", "alpha_max"),
            ("eta = 0.5", "eta"),
            ("beta = 0.0", "beta"),
            ("restart_radius = -1.0", "restart_radius"),
            ("norm = \"l1\"", "norm"),
            ("step = 3", "step"),
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
