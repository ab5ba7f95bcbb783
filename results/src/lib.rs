//! gauntlet's results contract: the stage between "attack" and "report".
//!
//! - [`records`]: typed per-sample records keyed by the sample's global index — the contract
//!   every evaluation, shard and report passes through.
//! - [`plan`]: what was run (each run's declared kind, norm, ε, objective), on what, with which
//!   gates; it travels with the records.
//! - [`aggregate()`]: `results.json` ([`gauntlet_reports::RunReport`]) as a pure function of
//!   (plan, records): accuracies with intervals, worst case, per class, [`sanity`] checks and
//!   [`gate`] verdicts. Unit-tested without a model.
//! - [`baseline`]: this run against an earlier `results.json` (previous / now / change with
//!   Newcombe intervals and a z-test) and the relative gates; pure over two reports.
//! - [`samples_file`]: the per-sample file written beside `results.json`, which pandas, polars
//!   and DuckDB read directly and from which `gauntlet report --samples` rebuilds everything.

pub mod aggregate;
pub mod backdoor;
pub mod baseline;
pub mod detector;
pub mod drift;
pub mod gate;
pub mod metrics;
pub mod plan;
pub mod records;
pub mod samples_file;
pub mod sanity;

pub use aggregate::{aggregate, Aligned};
pub use plan::{
    AttackRun, CleanGradients, DriftMeasure, Gate, PlannedRun, RepeatForward, RunMeasurements,
    RunPlan, RunPurpose, MAX_ANOMALY_INDEX_GATE, PLAN_VERSION,
};
pub use records::{
    CleanOutcome, DetectorOutcome, EvasionOutcome, Outcome, RecordKind, RunId, SampleRecord,
};

/// Records that do not fit the plan they claim to belong to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AggregateError {
    #[error("a record names run #{run}, but the plan has {runs} runs")]
    UnknownRun { run: u32, runs: usize },
    #[error("run `{run}` expects `{expected}` records, found a `{found}` record")]
    WrongKind {
        run: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("minimal-norm attack `{run}` has runs at its ε's but no unbounded (minimal_norm_search) run to derive them from")]
    NoMinimalNormSearch { run: String },
    #[error("the plan has no clean run")]
    NoCleanRun,
    #[error("run `{run}` has two records for sample {index}")]
    DuplicateRecord { run: String, index: u64 },
    #[error("run `{run}` has a record for sample {index}, which the clean run did not evaluate")]
    NotInCleanRun { run: String, index: u64 },
    #[error("run `{run}` has no record for {missing} evaluated samples (the first is sample {first}); were shards left out?")]
    MissingSamples {
        run: String,
        missing: usize,
        first: u64,
    },
}
