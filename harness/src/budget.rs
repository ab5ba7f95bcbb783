//! What a suite asks of the machine, estimated before it is allocated or run.
//!
//! - **Memory**: the model spec's cost ([`gauntlet_models::ModelSpec::cost`]: checked sizes of
//!   every layer) gives a peak-memory estimate at the suite's batch size, compared with
//!   `max_memory_mib` before the weights are turned into tensors, and again with the data
//!   once it is loaded.
//! - **Work**: every run of the plan times its samples times the passes its attack declares
//!   ([`gauntlet_attacks::Attack::passes_per_sample`]), compared with `max_passes` before the
//!   first batch.
//!
//! `gauntlet check` prints both; `run` and `train` refuse (exit 2) past either, naming the key.
//! docs/limits.md has the formula.

use anyhow::{bail, Result};
use gauntlet_attacks::Passes;
use gauntlet_models::spec::cost::human_bytes;
use gauntlet_models::spec::{MemoryEstimate, ModelCost, Usage};
use gauntlet_results::RunPurpose;

use crate::suite::Suite;

/// `max_passes` unless the suite sets it: 10^9 model passes.
pub const DEFAULT_MAX_PASSES: u64 = 1_000_000_000;

/// The suite's caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `max_memory_mib`.
    pub max_memory_mib: u64,
    /// `max_passes`.
    pub max_passes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_memory_mib: gauntlet_models::spec::cost::DEFAULT_MAX_MEMORY_MIB,
            max_passes: DEFAULT_MAX_PASSES,
        }
    }
}

/// Refuses an estimate past `limit_mib`, naming the key that sets it and where (`suite
/// `x.toml``, `--max-memory-mib`).
pub fn check_memory(
    estimate: &MemoryEstimate,
    limit_mib: u64,
    key: &str,
    origin: &str,
) -> Result<()> {
    let limit = u128::from(limit_mib) << 20;
    if estimate.total() > limit {
        let what = match estimate.usage {
            Usage::Evaluate => "an evaluation",
            Usage::Train => "training",
        };
        bail!(
            "the model needs too much memory: {what} of this model is estimated to peak at {estimate}, \
             beyond `{key}` = {limit_mib} MiB ({}) of {origin}; lower the batch size or the model's \
             sizes, or raise `{key}` if the machine has the memory (docs/limits.md)",
            human_bytes(limit)
        );
    }
    Ok(())
}

/// The suite's memory check for the model of `cost`, with `dataset_samples` samples held.
pub fn check_suite_memory(suite: &Suite, cost: &ModelCost, dataset_samples: usize) -> Result<()> {
    check_memory(
        &cost.memory(Usage::Evaluate, suite.batch_size, dataset_samples),
        suite.limits.max_memory_mib,
        "max_memory_mib",
        &suite_origin(suite),
    )
}

fn suite_origin(suite: &Suite) -> String {
    match &suite.path {
        Some(path) => format!("suite `{}`", path.display()),
        None => "the embedded default suite".to_string(),
    }
}

/// The planned work of a suite, by run.
#[derive(Debug, Clone)]
pub struct Work {
    /// `(what, samples, passes)` for each run of the plan.
    pub runs: Vec<(String, usize, Passes)>,
}

impl Work {
    pub fn total(&self) -> Passes {
        self.runs.iter().map(|(_, _, passes)| *passes).sum()
    }

    /// One line per run and the total, as `gauntlet check` prints them.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (what, samples, passes) in &self.runs {
            out.push_str(&format!("  work: {what} on {samples} samples: {passes}\n"));
        }
        out.push_str(&format!("  work in all: {}\n", self.total()));
        out
    }
}

/// The work of `suite` over `samples` samples: the clean pass (one forward per sample), and
/// for every run of the plan (attacks at each ε, sanity probes) its samples times the passes
/// its attack declares plus the forward pass that scores its output.
pub fn planned_work(
    suite: &Suite,
    samples: usize,
    model: &dyn gauntlet_models::Model,
) -> Result<Work> {
    let mut runs = Vec::new();
    // The detectors' runs are counted below, from the suite (they exist in the plan only once
    // the detectors are fitted).
    for run in crate::runner::plan_runs(suite, samples, &[])? {
        if run.derived {
            // Read from the attack's unbounded run, which is counted.
            continue;
        }
        let count = run.samples.len();
        let per_sample = match &run.attack {
            None => Passes::forwards(1),
            Some(attack) => attack.passes_per_sample() + Passes::forwards(1),
        };
        let label = &run.planned.label;
        let what = match (&run.attack, run.planned.purpose) {
            (None, _) => "clean pass".to_string(),
            (Some(attack), RunPurpose::Attack) => {
                format!("attack {label} at ε = {}", attack.threat().epsilon)
            }
            (Some(_), RunPurpose::MinimalNormSearch) => {
                format!("attack {label}, one unbounded run for every ε")
            }
            (Some(attack), _) => format!("sanity probe {label} at ε = {}", attack.threat().epsilon),
        };
        runs.push((what, count, per_sample.times(count as u64)));
    }
    // Each detector scores the clean inputs and every attack's outputs: at most one more
    // forward pass per scored input; an adaptive attack steps like PGD, at each L∞ ε.
    for detector in &suite.detectors.detectors {
        let attack_runs = suite
            .attacks
            .iter()
            .filter(|a| a.entry.budget == gauntlet_attacks::BudgetSemantics::Bounded)
            .count() as u64;
        runs.push((
            format!(
                "detector {}: scoring clean and attacked inputs",
                detector.label
            ),
            samples,
            Passes::forwards(1).times((1 + attack_runs) * samples as u64),
        ));
        if let Some(adaptive) = &detector.adaptive {
            for epsilon in crate::detector::adaptive_epsilons(suite) {
                // One backward per step; the rest of its passes are forwards, plus the
                // prediction and the detector's score of its output.
                let backward = u64::from(adaptive.steps);
                let per_sample = Passes {
                    forward: adaptive.passes_per_sample() - backward + 2,
                    backward,
                };
                runs.push((
                    format!("adaptive PGD vs {} at ε = {epsilon}", detector.label),
                    samples,
                    per_sample.times(samples as u64),
                ));
            }
        }
    }
    runs.extend(whole_model_work(suite, samples, model)?);
    Ok(Work { runs })
}

/// The work of the whole-model unit: the backdoor sections (`BackdoorPlan::passes`) and the
/// probing sessions. Its total is the unit's cost, by which shards are balanced.
pub fn whole_model_work(
    suite: &Suite,
    samples: usize,
    model: &dyn gauntlet_models::Model,
) -> Result<Vec<(String, usize, Passes)>> {
    let mut runs = Vec::new();
    if !suite.backdoor.is_empty() {
        let shape = suite
            .backdoor
            .check_shape(model.input_shape(), model.num_classes())?;
        runs.extend(
            suite
                .backdoor
                .passes(samples, shape.image, shape.num_classes),
        );
    }
    // The probing sessions: the black-box attack on one sample each, plus its clean check.
    if let Some(probing) = &suite.probing {
        let sessions = probing.section.sessions.min(samples);
        runs.push((
            format!(
                "probing: `{}` at ε = {}, one sample per session",
                probing.entry.name, probing.section.epsilon
            ),
            sessions,
            (probing.attack.passes_per_sample() + Passes::forwards(1)).times(sessions as u64),
        ));
    }
    Ok(runs)
}

/// Refuses work past the suite's `max_passes`, with the estimate.
pub fn check_work(suite: &Suite, work: &Work) -> Result<()> {
    let total = work.total();
    if total.total() > suite.limits.max_passes {
        // The first of the largest runs (`max_by_key` keeps the last of equals).
        let largest = work
            .runs
            .iter()
            .rev()
            .max_by_key(|(_, _, passes)| passes.total())
            .map(|(what, samples, passes)| {
                format!("; the largest part is {what} on {samples} samples: {passes}")
            })
            .unwrap_or_default();
        bail!(
            "the suite asks for too much work: an estimated {total}{largest}, beyond `max_passes` = {} of {}; \
             lower `steps`, `restarts`, the ε list or `dataset.limit`, or raise `max_passes`",
            suite.limits.max_passes,
            suite_origin(suite)
        );
    }
    Ok(())
}
