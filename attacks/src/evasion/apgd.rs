//! Auto-PGD (APGD-CE, APGD-DLR): PGD with momentum and a step size that adapts itself at
//! checkpoints, so that it needs no step-size tuning and does not stall where fixed-step PGD
//! does.
//!
//! ## What it does
//!
//! From a random point of the ε-sphere (L∞: `x + ε·t/‖t‖∞` with `t` uniform in [−1, 1]ᵈ; L2:
//! `x + ε·t/‖t‖₂` with `t` Gaussian), clipped to [0, 1], it takes `steps` steps with step size
//! η starting at 2ε and momentum α = 0.75 (the first step has none):
//!
//! `z = P(x⁽ᵏ⁾ + η·s(∇f))`, `x⁽ᵏ⁺¹⁾ = P(x⁽ᵏ⁾ + α(z − x⁽ᵏ⁾) + (1 − α)(x⁽ᵏ⁾ − x⁽ᵏ⁻¹⁾))`,
//!
//! `s` being the sign (L∞) or the L2-normalised gradient, `P` the projection onto the ε-ball ∩
//! [0, 1]. At the checkpoints `w_j` ([`checkpoints`]: 22 %, 41 %, 57 %, … of the steps) η is
//! halved, and the iterate reset to the best point so far, if the loss rose in at most ρ = 0.75
//! of the steps since the last checkpoint, or if η was not halved at the last checkpoint and
//! the best loss has not improved since. Every sample has its own η and checkpoints state.
//!
//! A sample already misclassified (targeted: already classified as the target) on the clean
//! input or at any iterate is not attacked further: that point is its result (early stopping,
//! which changes no sample's success and no other sample's numbers). With `restarts > 1` each
//! restart runs only on the samples no earlier restart broke; a sample never broken gets the
//! highest-loss point of all its restarts. Cost: one forward and one backward pass per step
//! and sample still unbroken, plus one forward pass for the clean check.
//!
//! ## Threat model
//!
//! White-box: needs input gradients. Budget ε in L∞ or L2 around each clean input, inside
//! [0, 1]; ε = 0 returns the input bit for bit. Random starts come from each sample's
//! generator (`Stream::Restart(r)`): the same seed gives the same output whatever the batch.
//!
//! ## Parameters
//!
//! - `norm` (default `"linf"`), `loss` (default `"cross_entropy"`; `"dlr"` gives APGD-DLR),
//!   `targeted`, `target`: as for PGD.
//! - `steps` (default `100`): iterations per restart, ≥ 1.
//! - `restarts` (default `1`): independent random starts, ≥ 1.
//! - `rho` (default `0.75`): the oscillation threshold of the step-size rule, in (0, 1].
//! - `momentum` (default `0.75`): α above, in (0, 1].
//!
//! ## Known-answer tests
//!
//! The checkpoints equal the paper's closed form `p₀ = 0, p₁ = 0.22, p_{j+1} = p_j +
//! max(p_j − p_{j−1} − 0.03, 0.06)`; on a linear model APGD reaches the closed-form worst-case
//! margin; on the shipped model it is at least as strong as PGD at the same budget
//! (`tests/it/apgd.rs`), and it agrees with the AutoAttack reference implementation on the
//! same weights and images (docs/attacks.md).
//!
//! ## Reference
//!
//! Croce, Hein. *Reliable evaluation of adversarial robustness with an ensemble of diverse
//! parameter-free attacks.* ICML 2020, arXiv:2003.01690.

use candle_core::{Device, Tensor};
use gauntlet_models::{Loss, Model};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::Deserialize;

use crate::objective::{check_batch, check_randomness, Objective, TargetSelection};
use crate::params::{self, check_epsilon, parse_params};
use crate::projection::FeasibleSet;
use crate::{
    Attack, AttackEntry, AttackError, AttackKind, AttackObjective, BudgetSemantics, ModelAccess,
    Norm, ParameterDoc, Passes, SampleRandomness, Stream, ThreatModel,
};

/// The paper's citation, shared with `apgd_t`.
pub(crate) const REFERENCE: &str = "Croce, Hein. Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks. ICML 2020. arXiv:2003.01690";

pub(crate) const STEPS: ParameterDoc = ParameterDoc {
    name: "steps",
    default: "100",
    description: "Iterations per restart (one forward and one backward pass each, for every sample not yet broken); at least 1.",
};
pub(crate) const RESTARTS: ParameterDoc = ParameterDoc {
    name: "restarts",
    default: "1",
    description: "Random starts; each later one runs only on the samples every earlier one failed to break.",
};
pub(crate) const RHO: ParameterDoc = ParameterDoc {
    name: "rho",
    default: "0.75",
    description: "Step-size rule: halve the step at a checkpoint if the loss rose in at most this share of the steps since the last one; in (0, 1].",
};
pub(crate) const MOMENTUM: ParameterDoc = ParameterDoc {
    name: "momentum",
    default: "0.75",
    description: "Weight of the new step against the previous move (α of the paper); in (0, 1], 1 is no momentum.",
};

/// The registry entry.
pub const ENTRY: AttackEntry = AttackEntry {
    name: "apgd",
    summary: "Auto-PGD (APGD-CE / APGD-DLR): momentum and a self-adapting step size with checkpoints; no step size to tune",
    reference: REFERENCE,
    parameters: &[
        params::NORM,
        params::LOSS,
        params::TARGETED,
        params::TARGET,
        STEPS,
        RESTARTS,
        RHO,
        MOMENTUM,
    ],
    kind: AttackKind::Iterative,
    needs: ModelAccess::InputGradients,
    budget: BudgetSemantics::Bounded,
    conformance_variants: crate::objective_conformance_variants![
        "steps = 5\nrestarts = 3",
        "steps = 7\nrestarts = 2\nnorm = \"l2\"\nloss = \"dlr\"",
        "steps = 1",
        "steps = 12\nrho = 1.0\nmomentum = 1.0",
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
    restarts: u32,
    rho: f32,
    momentum: f32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            norm: Norm::Linf,
            loss: Loss::CrossEntropy,
            targeted: false,
            target: None,
            steps: 100,
            restarts: 1,
            rho: 0.75,
            momentum: 0.75,
        }
    }
}

/// Check the schedule keys shared with `apgd_t`.
pub(crate) fn schedule(
    threat: ThreatModel,
    steps: u32,
    rho: f32,
    momentum: f32,
) -> Result<ApgdSchedule, AttackError> {
    check_epsilon(threat.epsilon)?;
    if steps < 1 {
        return Err(AttackError::invalid_parameter(
            "steps",
            format!("steps must be ≥ 1, got {steps}"),
        ));
    }
    if !(rho > 0.0 && rho <= 1.0) {
        return Err(AttackError::invalid_parameter(
            "rho",
            format!("rho must be in (0, 1], got {rho}"),
        ));
    }
    if !(momentum > 0.0 && momentum <= 1.0) {
        return Err(AttackError::invalid_parameter(
            "momentum",
            format!("momentum must be in (0, 1], got {momentum}"),
        ));
    }
    Ok(ApgdSchedule {
        threat,
        steps,
        rho,
        momentum,
    })
}

/// Check `restarts ≥ 1`.
pub(crate) fn check_restarts(restarts: u32) -> Result<(), AttackError> {
    if restarts < 1 {
        return Err(AttackError::invalid_parameter(
            "restarts",
            format!("restarts must be ≥ 1, got {restarts}"),
        ));
    }
    Ok(())
}

fn build(params: &toml::Table, epsilon: f32) -> Result<Box<dyn Attack>, AttackError> {
    let p = parse_params::<Params>(params)?;
    check_restarts(p.restarts)?;
    Ok(Box::new(Apgd {
        schedule: schedule(
            ThreatModel {
                norm: p.norm,
                epsilon,
            },
            p.steps,
            p.rho,
            p.momentum,
        )?,
        objective: Objective::new(p.loss, p.targeted, p.target)?,
        restarts: p.restarts,
    }))
}

/// The iterations after which APGD reviews the step size, counted from 1, for `steps`
/// iterations: the first after ⌊0.22·steps⌋, each later interval 0.03·steps shorter than the
/// one before but at least 0.06·steps (all at least 1), as the reference implementation counts
/// them. For multiples of 100 steps these are exactly the paper's `⌈p_j·steps⌉`.
pub fn checkpoints(steps: u32) -> Vec<u32> {
    let fraction = |f: f64| ((f * f64::from(steps)) as u32).max(1);
    let (first, decrement, shortest) = (fraction(0.22), fraction(0.03), fraction(0.06));
    let mut interval = first;
    let mut at = 0u32;
    let mut out = Vec::new();
    loop {
        at = at.saturating_add(interval);
        if at > steps {
            return out;
        }
        out.push(at);
        interval = interval.saturating_sub(decrement).max(shortest);
    }
}

/// What one APGD run optimises and when a sample counts as broken.
pub(crate) struct Goal<'a> {
    /// The loss whose gradient is followed.
    pub loss: Loss,
    /// +1 to ascend the loss, −1 to descend it.
    pub ascent: f32,
    /// Per sample: the labels the loss is computed against (true labels or targets).
    pub loss_labels: &'a [u32],
    /// Per sample: the true label.
    pub true_labels: &'a [u32],
    /// `Some(targets)`: success means predicting the target; `None`: misclassified.
    pub success_targets: Option<&'a [u32]>,
}

impl Goal<'_> {
    fn succeeded(&self, position: usize, predicted: u32) -> bool {
        match self.success_targets {
            Some(targets) => predicted == targets[position],
            None => predicted != self.true_labels[position],
        }
    }
}

/// The validated schedule: threat, steps, ρ and momentum.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ApgdSchedule {
    pub threat: ThreatModel,
    pub steps: u32,
    pub rho: f32,
    pub momentum: f32,
}

/// A batch of samples with their state across restarts (and, for APGD-T, target classes).
pub(crate) struct Batch<'a> {
    pub model: &'a dyn Model,
    /// The clean inputs, flattened row-major.
    pub clean: Vec<f32>,
    /// The per-sample shape (without the batch dimension).
    pub sample_dims: Vec<usize>,
    pub randomness: &'a SampleRandomness,
    /// Per sample: the point returned so far.
    pub result: Vec<f32>,
    /// Per sample: whether it is broken (its result succeeds).
    pub done: Vec<bool>,
    /// Per sample: the best score of an unbroken result.
    pub best_score: Vec<f32>,
    /// Iterations scheduled so far: the sum of `steps` over the runs started on this batch
    /// (every restart and target counts in full, even when all its samples were broken early).
    pub elapsed: u32,
    /// Per sample: the iteration (counted over all runs, 0 for the clean input and the first
    /// random start) at which it was broken; `None` while unbroken.
    pub broken_at: Vec<Option<u32>>,
    /// A box of inputs (flattened like `clean`: lower, upper) the L∞ ball is limited to, for
    /// an adaptive attack against a detector that accepts a box (`FeasibleSet::within_box`).
    pub accept_box: Option<(Vec<f32>, Vec<f32>)>,
}

impl<'a> Batch<'a> {
    /// The batch, with the samples that `goal` already counts as broken on the clean input
    /// marked done (one forward pass).
    pub fn new(
        model: &'a dyn Model,
        inputs: &Tensor,
        randomness: &'a SampleRandomness,
        goal: &Goal<'_>,
    ) -> Result<Self, AttackError> {
        let clean = inputs.flatten_all()?.to_vec1::<f32>()?;
        let predicted: Vec<u32> = model.predict(inputs)?.to_vec1()?;
        let done: Vec<bool> = predicted
            .iter()
            .enumerate()
            .map(|(position, &p)| goal.succeeded(position, p))
            .collect();
        let broken_at = done.iter().map(|&d| d.then_some(0)).collect();
        Ok(Batch {
            model,
            result: clean.clone(),
            clean,
            sample_dims: inputs.dims()[1..].to_vec(),
            randomness,
            done,
            best_score: vec![f32::NEG_INFINITY; predicted.len()],
            elapsed: 0,
            broken_at,
            accept_box: None,
        })
    }

    /// The feasible set of the samples `positions`: the threat's ball, limited to the accept
    /// box when there is one.
    fn feasible(
        &self,
        positions: &[usize],
        threat: ThreatModel,
        device: &Device,
    ) -> Result<FeasibleSet, AttackError> {
        let clean = self.rows(&self.clean, positions, device)?;
        match &self.accept_box {
            None => FeasibleSet::new(&clean, threat),
            Some((lower, upper)) => {
                let d = self.per_sample();
                let pick = |values: &[f32]| -> Vec<f32> {
                    positions
                        .iter()
                        .flat_map(|&p| values[p * d..(p + 1) * d].iter().copied())
                        .collect()
                };
                FeasibleSet::within_box(&clean, threat, &pick(lower), &pick(upper))
            }
        }
    }

    fn per_sample(&self) -> usize {
        self.sample_dims.iter().product()
    }

    /// The results with each sample's trace: when it was broken, as a share of the
    /// iterations scheduled ([`crate::SampleTrace::broken_at`]).
    pub fn into_traced(self, device: &Device) -> Result<crate::Traced, AttackError> {
        let total = self.elapsed.max(1) as f32;
        let traces = self
            .broken_at
            .iter()
            .map(|at| crate::SampleTrace {
                queries: None,
                broken_at: at.map(|at| (at as f32 / total).min(1.0)),
                broken_by: None,
            })
            .collect();
        Ok(crate::Traced {
            adversarial: self.into_tensor(device)?,
            traces,
        })
    }

    /// The results as a tensor of the inputs' shape.
    pub fn into_tensor(self, device: &Device) -> Result<Tensor, AttackError> {
        let mut dims = vec![self.done.len()];
        dims.extend_from_slice(&self.sample_dims);
        Ok(Tensor::from_vec(self.result, dims, device)?)
    }

    /// The rows `positions` of `values` (per-sample rows of `per_sample` values) as a tensor.
    fn rows(&self, values: &[f32], positions: &[usize], device: &Device) -> Result<Tensor, AttackError> {
        let d = self.per_sample();
        let mut out = Vec::with_capacity(positions.len() * d);
        for &p in positions {
            out.extend_from_slice(&values[p * d..(p + 1) * d]);
        }
        let mut dims = vec![positions.len()];
        dims.extend_from_slice(&self.sample_dims);
        Ok(Tensor::from_vec(out, dims, device)?)
    }
}

/// Per-sample state of one APGD run.
struct Track {
    x: Vec<f32>,
    previous: Vec<f32>,
    gradient: Vec<f32>,
    best_x: Vec<f32>,
    best_gradient: Vec<f32>,
    best: f32,
    last: f32,
    step: f32,
    rises: u32,
    since_check: u32,
    interval: u32,
    reduced_last_check: bool,
    best_at_last_check: f32,
}

/// What one pass gives per evaluated sample, flattened: scores, score gradients (rows of the
/// per-sample size) and predicted classes.
struct Evaluation {
    scores: Vec<f32>,
    gradients: Vec<f32>,
    predicted: Vec<u32>,
}

/// One forward + backward pass on the rows `positions` of `x`.
fn evaluate(
    batch: &Batch<'_>,
    goal: &Goal<'_>,
    x: &Tensor,
    positions: &[usize],
) -> Result<Evaluation, AttackError> {
    let labels: Vec<u32> = positions.iter().map(|&p| goal.loss_labels[p]).collect();
    let labels = Tensor::from_vec(labels, positions.len(), x.device())?;
    let result = batch.model.loss_and_input_gradient(x, &labels, goal.loss)?;
    let scores: Vec<f32> = result
        .loss
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?
        .into_iter()
        .map(|l| goal.ascent * l)
        .collect();
    let gradient: Vec<f32> = result
        .gradient
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(|g| goal.ascent * g)
        .collect();
    let predicted: Vec<u32> = result.logits.argmax(1)?.to_vec1()?;
    Ok(Evaluation {
        scores,
        gradients: gradient,
        predicted,
    })
}

/// The starting point's offset: on the ε-sphere of the norm, direction from `rng`.
fn start_offset(norm: Norm, epsilon: f32, d: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let t: Vec<f64> = match norm {
        Norm::Linf => (0..d).map(|_| rng.random::<f64>() * 2.0 - 1.0).collect(),
        Norm::L2 => (0..d).map(|_| rng.sample::<f64, _>(StandardNormal)).collect(),
    };
    let size = match norm {
        Norm::Linf => t.iter().fold(0.0f64, |m, v| m.max(v.abs())),
        Norm::L2 => t.iter().map(|v| v * v).sum::<f64>().sqrt(),
    };
    let scale = if size > 0.0 {
        f64::from(epsilon) / size
    } else {
        0.0
    };
    t.iter().map(|v| (v * scale) as f32).collect()
}

/// The unit step direction of a gradient row: its sign (0 for 0 and NaN, like candle's
/// `sign`) for L∞, `g/‖g‖₂` for L2 (zero for a zero gradient), the norm taken in f64 so that a
/// tiny gradient does not underflow.
fn direction(norm: Norm, gradient: &[f32]) -> Vec<f32> {
    match norm {
        Norm::Linf => gradient
            .iter()
            .map(|&g| {
                if g > 0.0 {
                    1.0
                } else if g < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            })
            .collect(),
        Norm::L2 => {
            let length = gradient
                .iter()
                .map(|&g| f64::from(g) * f64::from(g))
                .sum::<f64>()
                .sqrt();
            if length > 0.0 && length.is_finite() {
                gradient
                    .iter()
                    .map(|&g| (f64::from(g) / length) as f32)
                    .collect()
            } else {
                vec![0.0; gradient.len()]
            }
        }
    }
}

/// One APGD run (restart stream `stream`) on the samples not yet done; updates `batch`:
/// a sample broken by this run gets its breaking point, an unbroken one its best point if it
/// beats the best so far.
pub(crate) fn run(
    batch: &mut Batch<'_>,
    schedule: &ApgdSchedule,
    goal: &Goal<'_>,
    stream: Stream,
    device: &Device,
) -> Result<(), AttackError> {
    let d = batch.per_sample();
    let epsilon = schedule.threat.epsilon;
    let base = batch.elapsed;
    batch.elapsed = batch.elapsed.saturating_add(schedule.steps);
    let mut active: Vec<usize> = (0..batch.done.len()).filter(|&p| !batch.done[p]).collect();
    if active.is_empty() {
        return Ok(());
    }
    let checkpoint_list = checkpoints(schedule.steps);
    let first_interval = checkpoint_list.first().copied().unwrap_or(u32::MAX);
    let shrink = checkpoint_list
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect::<Vec<_>>();
    let mut feasible = batch.feasible(&active, schedule.threat, device)?;

    // The random starts.
    let mut starts = Vec::with_capacity(active.len() * d);
    for &p in &active {
        let mut rng = batch.randomness.generator(p, stream);
        let offset = start_offset(schedule.threat.norm, epsilon, d, &mut rng);
        starts.extend(batch.clean[p * d..(p + 1) * d].iter().zip(offset).map(|(c, o)| c + o));
    }
    let mut dims = vec![active.len()];
    dims.extend_from_slice(&batch.sample_dims);
    let x0 = feasible.project(&Tensor::from_vec(starts, dims, device)?)?;
    let Evaluation {
        scores,
        gradients,
        predicted,
    } = evaluate(batch, goal, &x0, &active)?;
    let x0 = x0.flatten_all()?.to_vec1::<f32>()?;
    let mut tracks: Vec<Option<Track>> = (0..batch.done.len()).map(|_| None).collect();
    for (i, &p) in active.iter().enumerate() {
        let x = x0[i * d..(i + 1) * d].to_vec();
        let gradient = gradients[i * d..(i + 1) * d].to_vec();
        tracks[p] = Some(Track {
            previous: x.clone(),
            best_x: x.clone(),
            best_gradient: gradient.clone(),
            x,
            gradient,
            best: scores[i],
            last: scores[i],
            step: 2.0 * epsilon,
            rises: 0,
            since_check: 0,
            interval: first_interval,
            reduced_last_check: true,
            best_at_last_check: scores[i],
        });
        if goal.succeeded(p, predicted[i]) {
            finish_broken(batch, p, &x0[i * d..(i + 1) * d], base);
        }
    }

    for iteration in 0..schedule.steps {
        let still: Vec<usize> = active.iter().copied().filter(|&p| !batch.done[p]).collect();
        if still.is_empty() {
            break;
        }
        if still.len() != active.len() {
            active = still;
            feasible = batch.feasible(&active, schedule.threat, device)?;
        }
        let alpha = if iteration == 0 { 1.0 } else { schedule.momentum };
        // z = P(x + η·s(g)).
        let mut moved = Vec::with_capacity(active.len() * d);
        for &p in &active {
            let track = tracks[p].as_ref().ok_or_else(missing_track)?;
            let s = direction(schedule.threat.norm, &track.gradient);
            moved.extend(track.x.iter().zip(s).map(|(x, s)| x + track.step * s));
        }
        let mut dims = vec![active.len()];
        dims.extend_from_slice(&batch.sample_dims);
        let z = feasible
            .project(&Tensor::from_vec(moved, dims.clone(), device)?)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        // x' = P(x + α(z − x) + (1 − α)(x − x_prev)).
        let mut blended = Vec::with_capacity(active.len() * d);
        for (i, &p) in active.iter().enumerate() {
            let track = tracks[p].as_ref().ok_or_else(missing_track)?;
            blended.extend(
                track
                    .x
                    .iter()
                    .zip(&track.previous)
                    .zip(&z[i * d..(i + 1) * d])
                    .map(|((x, prev), z)| x + alpha * (z - x) + (1.0 - alpha) * (x - prev)),
            );
        }
        let next = feasible.project(&Tensor::from_vec(blended, dims, device)?)?;
        let Evaluation {
            scores,
            gradients,
            predicted,
        } = evaluate(batch, goal, &next, &active)?;
        let next = next.flatten_all()?.to_vec1::<f32>()?;
        for (i, &p) in active.iter().enumerate() {
            let row = &next[i * d..(i + 1) * d];
            if goal.succeeded(p, predicted[i]) {
                finish_broken(batch, p, row, base.saturating_add(iteration + 1));
                continue;
            }
            let track = tracks[p].as_mut().ok_or_else(missing_track)?;
            track.previous = std::mem::replace(&mut track.x, row.to_vec());
            track.gradient.copy_from_slice(&gradients[i * d..(i + 1) * d]);
            let score = scores[i];
            if score > track.last {
                track.rises += 1;
            }
            track.last = score;
            if score > track.best {
                track.best = score;
                track.best_x.copy_from_slice(row);
                track.best_gradient.copy_from_slice(&track.gradient);
            }
            track.since_check += 1;
            if track.since_check == track.interval {
                let oscillating = track.rises as f32 <= schedule.rho * track.interval as f32;
                let stalled = !track.reduced_last_check && track.best_at_last_check >= track.best;
                let reduce = oscillating || stalled;
                track.reduced_last_check = reduce;
                track.best_at_last_check = track.best;
                if reduce {
                    track.step /= 2.0;
                    track.x.copy_from_slice(&track.best_x);
                    track.gradient.copy_from_slice(&track.best_gradient);
                }
                let index = checkpoint_list
                    .iter()
                    .position(|&c| c == iteration + 1)
                    .unwrap_or(0);
                track.interval = shrink.get(index).copied().unwrap_or(u32::MAX);
                track.since_check = 0;
                track.rises = 0;
            }
        }
    }

    // Unbroken samples: keep this run's best point if it beats the earlier runs'.
    for (p, track) in tracks.iter().enumerate() {
        if let Some(track) = track {
            let first = batch.best_score[p] == f32::NEG_INFINITY;
            if !batch.done[p] && (first || track.best > batch.best_score[p]) {
                batch.best_score[p] = track.best;
                batch.result[p * d..(p + 1) * d].copy_from_slice(&track.best_x);
            }
        }
    }
    Ok(())
}

fn finish_broken(batch: &mut Batch<'_>, position: usize, point: &[f32], iteration: u32) {
    let d = batch.per_sample();
    batch.done[position] = true;
    batch.broken_at[position] = Some(iteration);
    batch.result[position * d..(position + 1) * d].copy_from_slice(point);
}

fn missing_track() -> AttackError {
    AttackError::Model(gauntlet_models::ModelError::Internal {
        what: "APGD lost the state of an active sample".to_string(),
    })
}

/// APGD with the common objective keys.
#[derive(Debug, Clone)]
pub struct Apgd {
    schedule: ApgdSchedule,
    objective: Objective,
    restarts: u32,
}

impl Attack for Apgd {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn threat(&self) -> ThreatModel {
        self.schedule.threat
    }

    fn objective(&self) -> AttackObjective {
        self.objective.describe()
    }

    /// A forward pass for the clean check, then per restart one gradient at the start and
    /// one per step (fewer once a sample is broken), and a forward pass for `least_likely`
    /// targets.
    fn passes_per_sample(&self) -> Passes {
        Passes::forwards(1)
            + Passes::gradients(u64::from(self.schedule.steps) + 1).times(u64::from(self.restarts))
            + self.objective.label_passes()
    }

    fn perturb(
        &self,
        model: &dyn Model,
        inputs: &Tensor,
        labels: &Tensor,
        randomness: &SampleRandomness,
    ) -> Result<Tensor, AttackError> {
        Ok(self
            .perturb_traced(model, inputs, labels, randomness)?
            .adversarial)
    }

    /// Reports, per sample, when it was broken (`broken_at`).
    fn perturb_traced(
        &self,
        model: &dyn Model,
        inputs: &Tensor,
        labels: &Tensor,
        randomness: &SampleRandomness,
    ) -> Result<crate::Traced, AttackError> {
        let checked = check_batch(model, inputs, labels)?;
        check_randomness(&checked, randomness)?;
        if self.schedule.threat.epsilon == 0.0 || checked.is_empty() {
            return Ok(crate::Traced {
                adversarial: inputs.clone(),
                traces: vec![crate::SampleTrace::default(); checked.len()],
            });
        }
        let attack_labels: Vec<u32> = self
            .objective
            .attack_labels(model, inputs, &checked, randomness)?
            .to_vec1()?;
        let targeted = self.objective.is_targeted();
        let goal = Goal {
            loss: self.objective.loss,
            ascent: self.objective.ascent_sign() as f32,
            loss_labels: &attack_labels,
            true_labels: &checked.labels_host,
            success_targets: targeted.then_some(attack_labels.as_slice()),
        };
        let mut batch = Batch::new(model, inputs, randomness, &goal)?;
        for restart in 0..self.restarts {
            run(&mut batch, &self.schedule, &goal, Stream::Restart(restart), inputs.device())?;
        }
        batch.into_traced(inputs.device())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;

    /// The paper's closed form: p₀ = 0, p₁ = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03,
    /// 0.06), checkpoints w_j = ⌈p_j·N⌉ for p_j ≤ 1.
    fn paper_checkpoints(steps: u32) -> Vec<u32> {
        let (mut before, mut p) = (0.0f64, 0.22f64);
        let mut out = Vec::new();
        while p <= 1.0 + 1e-9 {
            // p_j·N is an integer for N a multiple of 100; round off the float error.
            out.push((p * f64::from(steps) - 1e-6).ceil() as u32);
            let next = p + (p - before - 0.03).max(0.06);
            before = p;
            p = next;
        }
        out
    }

    #[test]
    fn checkpoints_follow_the_papers_closed_form() {
        assert_eq!(checkpoints(100), vec![22, 41, 57, 70, 80, 87, 93, 99]);
        for steps in [100, 200, 500, 1000] {
            assert_eq!(checkpoints(steps), paper_checkpoints(steps), "{steps} steps");
        }
        // Few steps: intervals of at least one step, never past the end.
        assert_eq!(checkpoints(1), vec![1]);
        assert_eq!(checkpoints(5), vec![1, 2, 3, 4, 5]);
        assert!(checkpoints(37).iter().all(|&c| c <= 37));
    }

    #[test]
    fn bad_values_name_their_key() {
        let error = |text: &str| match (ENTRY.build)(&toml::from_str(text).unwrap(), 0.1) {
            Err(AttackError::InvalidParameter { key, .. }) => key,
            Err(other) => panic!("{text}: {other}"),
            Ok(_) => panic!("{text} was accepted"),
        };
        assert_eq!(error("steps = 0"), "steps");
        assert_eq!(error("restarts = 0"), "restarts");
        assert_eq!(error("rho = 0.0"), "rho");
        assert_eq!(error("rho = 1.5"), "rho");
        assert_eq!(error("momentum = nan"), "momentum");
        assert_eq!(error("loss = \"dlr_targeted\""), "loss");
        assert_eq!(error("stepsize = 1"), "stepsize");
    }

    // Targeted toward class 1 with the CW margin on the three-class model the loss is linear
    // (z_0 − z_1) in the ball, so the L∞ optimum is the corner x − ε·sign(w_0 − w_1): a drop
    // of ε‖w_0 − w_1‖₁ that APGD must reach (the first step of 2ε from the sphere already
    // lands there) and cannot exceed.
    #[test]
    fn linf_apgd_reaches_the_closed_form_optimum() {
        let model = three_class_model();
        let inputs = inputs_in_middle(6, 21);
        let epsilon = 0.04;
        let attack = build_attack(
            &ENTRY,
            "loss = \"cw_margin\"\ntargeted = true\ntarget = 1\nsteps = 10",
            epsilon,
        );
        let adversarial = attack
            .perturb(&model, &inputs, &labels(&[0; 6]), &SampleRandomness::for_range(1, "t", 0..6))
            .unwrap();
        let rows = model.weight_rows();
        let optimum = f64::from(epsilon) * l1_distance(&rows[0], &rows[1]);
        let before = logit_gap(&model, &inputs, 0, 1);
        let after = logit_gap(&model, &adversarial, 0, 1);
        for (b, a) in before.iter().zip(&after) {
            assert_close(b - a, optimum, 1e-4, "drop of z_0 − z_1");
            assert!(b - a <= optimum * (1.0 + 1e-5), "APGD beat the closed-form optimum");
        }
    }

    #[test]
    fn l2_apgd_reaches_the_closed_form_optimum() {
        let model = three_class_model();
        let inputs = inputs_in_middle(6, 22);
        let epsilon = 0.08;
        let attack = build_attack(
            &ENTRY,
            "norm = \"l2\"\nloss = \"cw_margin\"\ntargeted = true\ntarget = 1\nsteps = 30",
            epsilon,
        );
        let adversarial = attack
            .perturb(&model, &inputs, &labels(&[0; 6]), &SampleRandomness::for_range(2, "t", 0..6))
            .unwrap();
        let rows = model.weight_rows();
        let optimum = f64::from(epsilon) * l2_distance(&rows[0], &rows[1]);
        let before = logit_gap(&model, &inputs, 0, 1);
        let after = logit_gap(&model, &adversarial, 0, 1);
        for (b, a) in before.iter().zip(&after) {
            assert_close(b - a, optimum, 1e-3, "drop of z_0 − z_1");
            assert!(b - a <= optimum * (1.0 + 1e-5), "APGD beat the closed-form optimum");
        }
    }
}
