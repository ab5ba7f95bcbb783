//! Work units and shards: the unit of work of `gauntlet run`, as a typed, deterministic list.
//!
//! A run's plan (`runner::plan_runs`) is cut into [`WorkUnit`]s: every executed run
//! (the clean pass, each attack at each ε, each minimal-norm search, the sanity probes) on one
//! *chunk* of global sample indices (`unit_samples` samples, 1024 unless `--unit-samples` says
//! otherwise), plus one unit for the whole-model sections (trigger scans, poisoning sweeps,
//! data scans), which train or scan the model as a whole and cannot be cut by sample.
//!
//! The list depends only on the plan, the number of samples and `unit_samples` — never on the
//! batch size, the machine or the shard count — so every process of a sharded or resumed run
//! computes the same list, and a unit's position in it ([`UnitId`]) names the same work
//! everywhere. Randomness is per sample (`gauntlet_attacks::SampleRandomness`, keyed by the
//! suite seed, the run label and the global index), so a unit's records do not depend on which
//! process ran it, in which order, or next to which other units.
//!
//! [`ShardSpec`] `I/N` selects a contiguous slice of the list, cut where the estimated model
//! passes ([`WorkPlan::cost`]) cross `I/N` of the total, so shards cost about the same.

use std::fmt;
use std::str::FromStr;

use gauntlet_results::RunId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::runner::Executable;

/// Samples per work unit unless `--unit-samples` says otherwise: small enough that a killed
/// run loses little and a million samples make ~1000 chunks, large enough that a unit's file
/// and journal line are noise next to its model passes.
pub const DEFAULT_UNIT_SAMPLES: usize = 1024;

/// The environment variable a Kubernetes Indexed Job sets to the pod's index (0-based).
pub const JOB_COMPLETION_INDEX: &str = "JOB_COMPLETION_INDEX";

/// A unit's position in [`WorkPlan::units`]: the same in every process of one plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnitId(pub u32);

impl UnitId {
    pub fn position(self) -> usize {
        self.0 as usize
    }

    /// The unit's file name in a journal's `units/` folder.
    pub fn file_name(self) -> String {
        format!("unit-{:06}.parquet", self.0)
    }
}

impl fmt::Display for UnitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One piece of a run's work.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum WorkUnit {
    /// One executed run of the plan on the global sample indices `start..end` (one chunk, or
    /// the part of it a probe covers).
    Samples { run: RunId, start: u64, end: u64 },
    /// The whole-model sections (`[[trigger_scan]]`, `[[poisoning]]`, `[[data_scan]]`,
    /// `[probing]`): one unit, since they train or scan the model as a whole.
    WholeModel,
}

impl WorkUnit {
    /// A short stable name, e.g. `run3[1024..2048)` or `whole-model`: what journals and shard
    /// manifests record, and what the unit list's digest is taken over.
    pub fn key(&self) -> String {
        match self {
            WorkUnit::Samples { run, start, end } => format!("run{}[{start}..{end})", run.0),
            WorkUnit::WholeModel => "whole-model".to_string(),
        }
    }

    /// Number of samples a per-sample unit covers (0 for the whole-model unit).
    pub fn samples(&self) -> u64 {
        match self {
            WorkUnit::Samples { start, end, .. } => end - start,
            WorkUnit::WholeModel => 0,
        }
    }
}

/// A unit with its identity and estimated cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedUnit {
    pub id: UnitId,
    pub unit: WorkUnit,
    /// Estimated model passes (forward + backward), from each attack's declared
    /// `passes_per_sample` plus the pass that scores its output; for the whole-model unit, the
    /// upper bound `budget::whole_model_work` gives (training, scans, probing).
    pub cost: u64,
}

/// The unit list of one run's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkPlan {
    pub unit_samples: usize,
    pub units: Vec<PlannedUnit>,
}

impl WorkPlan {
    /// Cut `runs` (the plan's executables over `samples` samples) into units: chunk by chunk
    /// (every run of chunk 0, then of chunk 1, …) so that a shard mostly holds a chunk's clean
    /// pass together with its attacks, then the whole-model unit with its estimated cost when
    /// `whole_model` is given. Runs whose
    /// records are derived from another run (a minimal-norm attack at each ε) have no unit.
    pub(crate) fn new(
        runs: &[Executable],
        whole_model: Option<u64>,
        samples: usize,
        unit_samples: usize,
    ) -> Result<Self, ShardError> {
        if unit_samples == 0 {
            return Err(ShardError::ZeroUnitSamples);
        }
        let mut units = Vec::new();
        let mut push = |unit: WorkUnit, cost: u64| -> Result<(), ShardError> {
            let id = UnitId(u32::try_from(units.len()).map_err(|_| ShardError::TooManyUnits)?);
            units.push(PlannedUnit { id, unit, cost });
            Ok(())
        };
        let per_sample: Vec<u64> = runs
            .iter()
            .map(|run| match &run.attack {
                None => 1,
                Some(attack) => attack.passes_per_sample().total().saturating_add(1),
            })
            .collect();
        for chunk_start in (0..samples).step_by(unit_samples) {
            let chunk_end = (chunk_start + unit_samples).min(samples);
            for (position, run) in runs.iter().enumerate() {
                if run.derived {
                    continue;
                }
                let start = chunk_start.max(run.samples.start);
                let end = chunk_end.min(run.samples.end);
                if start >= end {
                    continue;
                }
                let id = RunId(u32::try_from(position).map_err(|_| ShardError::TooManyUnits)?);
                push(
                    WorkUnit::Samples {
                        run: id,
                        start: start as u64,
                        end: end as u64,
                    },
                    per_sample[position].saturating_mul((end - start) as u64),
                )?;
            }
        }
        if let Some(cost) = whole_model {
            push(WorkUnit::WholeModel, cost)?;
        }
        Ok(Self {
            unit_samples,
            units,
        })
    }

    /// SHA-256 over every unit's key, in order: two processes agree on the unit list iff they
    /// agree on this.
    pub fn digest(&self) -> String {
        digest_keys(self.units.iter().map(|u| u.unit.key()))
    }

    /// Total estimated model passes.
    pub fn cost(&self) -> u64 {
        self.units
            .iter()
            .map(|u| u.cost)
            .fold(0, u64::saturating_add)
    }

    /// The units of shard `spec`: a contiguous slice of the list. Unit *k* goes to shard
    /// ⌊N · (P_k + c_k / 2) / T⌋, where P_k is the cost of the units before it, c_k its own and
    /// T the total — the shard in which the middle of its work falls — so every unit is in
    /// exactly one shard, shards are contiguous and in order, and each shard's cost is within
    /// one unit's cost of T / N. A zero-cost plan (nothing estimated) is cut by unit count.
    pub fn shard(&self, spec: ShardSpec) -> Vec<UnitId> {
        self.units
            .iter()
            .zip(self.assignment(spec.count))
            .filter(|(_, shard)| *shard == spec.index)
            .map(|(unit, _)| unit.id)
            .collect()
    }

    /// The shard of every unit, in order, for `count` shards.
    pub fn assignment(&self, count: u32) -> Vec<u32> {
        let count = u128::from(count.max(1));
        let total: u128 = self.units.iter().map(|u| u128::from(u.cost)).sum();
        let (weights, total): (Vec<u128>, u128) = if total == 0 {
            (vec![1; self.units.len()], self.units.len() as u128)
        } else {
            (
                self.units.iter().map(|u| u128::from(u.cost)).collect(),
                total,
            )
        };
        let mut before = 0u128;
        weights
            .iter()
            .map(|&weight| {
                let middle = 2 * before + weight;
                before += weight;
                let shard = (count * middle / (2 * total.max(1))).min(count - 1);
                shard as u32
            })
            .collect()
    }

    /// The unit with this id.
    pub fn get(&self, id: UnitId) -> Option<&PlannedUnit> {
        self.units.get(id.position())
    }
}

/// SHA-256 over unit keys, each followed by a newline.
pub fn digest_keys(keys: impl IntoIterator<Item = String>) -> String {
    let mut hasher = Sha256::new();
    for key in keys {
        hasher.update(key.as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

/// Shard `index` of `count` (0-based, as Kubernetes' `JOB_COMPLETION_INDEX` and a CI matrix
/// count them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardSpec {
    pub index: u32,
    pub count: u32,
}

impl fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// `--shard` as given: `I/N`, or `auto/N` (I from `JOB_COMPLETION_INDEX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardArg {
    Fixed(ShardSpec),
    Auto { count: u32 },
}

impl FromStr for ShardArg {
    type Err = ShardError;

    fn from_str(text: &str) -> Result<Self, ShardError> {
        let bad = || ShardError::Syntax(text.to_string());
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(ShardError::ZeroCount);
        }
        if index.trim() == "auto" {
            return Ok(ShardArg::Auto { count });
        }
        let index: u32 = index.trim().parse().map_err(|_| bad())?;
        check_index(index, count, None)?;
        Ok(ShardArg::Fixed(ShardSpec { index, count }))
    }
}

impl ShardArg {
    /// The shard this process runs; `job_completion_index` is the value of
    /// [`JOB_COMPLETION_INDEX`] (passed in, so that reading the environment stays in the CLI).
    pub fn resolve(self, job_completion_index: Option<&str>) -> Result<ShardSpec, ShardError> {
        match self {
            ShardArg::Fixed(spec) => Ok(spec),
            ShardArg::Auto { count } => {
                let text = job_completion_index.ok_or(ShardError::NoJobIndex { count })?;
                let index: u32 = text.trim().parse().map_err(|_| ShardError::BadJobIndex {
                    value: text.to_string(),
                    count,
                })?;
                check_index(index, count, Some(text))?;
                Ok(ShardSpec { index, count })
            }
        }
    }
}

fn check_index(index: u32, count: u32, from_env: Option<&str>) -> Result<(), ShardError> {
    if index >= count {
        return Err(match from_env {
            Some(value) => ShardError::BadJobIndex {
                value: value.to_string(),
                count,
            },
            None => ShardError::OutOfRange { index, count },
        });
    }
    Ok(())
}

/// A `--shard` or unit list that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardError {
    #[error("--shard `{0}`: expected I/N (0 ≤ I < N, e.g. 2/8) or auto/N (I from ${JOB_COMPLETION_INDEX})")]
    Syntax(String),
    #[error("--shard: the shard count N must be at least 1")]
    ZeroCount,
    #[error("--shard {index}/{count}: shards are counted from 0, so I must be below {count}")]
    OutOfRange { index: u32, count: u32 },
    #[error(
        "--shard auto/{count} reads the shard index from ${JOB_COMPLETION_INDEX} (set by a \
         Kubernetes Indexed Job), but it is not set; give the index explicitly, e.g. --shard 0/{count}"
    )]
    NoJobIndex { count: u32 },
    #[error(
        "--shard auto/{count}: ${JOB_COMPLETION_INDEX} = `{value}` is not a shard index from 0 to \
         {}; the Job's `completions` must equal N", count - 1
    )]
    BadJobIndex { value: String, count: u32 },
    #[error("--unit-samples must be at least 1")]
    ZeroUnitSamples,
    #[error("the plan has more than 2^32 work units; raise --unit-samples")]
    TooManyUnits,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(costs: &[u64]) -> WorkPlan {
        WorkPlan {
            unit_samples: 1,
            units: costs
                .iter()
                .enumerate()
                .map(|(i, &cost)| PlannedUnit {
                    id: UnitId(i as u32),
                    unit: WorkUnit::Samples {
                        run: RunId(0),
                        start: i as u64,
                        end: i as u64 + 1,
                    },
                    cost,
                })
                .collect(),
        }
    }

    #[test]
    fn shard_syntax() {
        assert_eq!(
            "2/8".parse::<ShardArg>(),
            Ok(ShardArg::Fixed(ShardSpec { index: 2, count: 8 }))
        );
        assert_eq!(
            "auto/4".parse::<ShardArg>(),
            Ok(ShardArg::Auto { count: 4 })
        );
        assert_eq!(
            "8/8".parse::<ShardArg>(),
            Err(ShardError::OutOfRange { index: 8, count: 8 })
        );
        assert_eq!("1/0".parse::<ShardArg>(), Err(ShardError::ZeroCount));
        for bad in ["", "3", "a/4", "1/b", "-1/4", "1/4/2"] {
            assert!(
                matches!(bad.parse::<ShardArg>(), Err(ShardError::Syntax(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn auto_reads_the_job_completion_index() {
        let auto = ShardArg::Auto { count: 4 };
        assert_eq!(
            auto.resolve(Some("3")),
            Ok(ShardSpec { index: 3, count: 4 })
        );
        assert_eq!(auto.resolve(None), Err(ShardError::NoJobIndex { count: 4 }));
        for bad in ["4", "x", "-1", ""] {
            let error = auto.resolve(Some(bad)).unwrap_err();
            assert!(matches!(error, ShardError::BadJobIndex { .. }), "{bad:?}");
            assert!(error.to_string().contains("from 0 to 3"), "{error}");
        }
        // A fixed index ignores the environment.
        let fixed = ShardArg::Fixed(ShardSpec { index: 1, count: 2 });
        assert_eq!(
            fixed.resolve(Some("0")),
            Ok(ShardSpec { index: 1, count: 2 })
        );
    }

    #[test]
    fn a_costly_whole_model_unit_gets_a_shard_of_its_own() {
        // Four sample units of 10 passes, then a whole-model unit (a trigger scan) of 100: the
        // sample units fill shard 0 and the scan alone is shard 1, where with its cost unknown
        // (0) the sample units were split 2 + 2 and the scan joined the second pair.
        let mut costed = plan(&[10, 10, 10, 10]);
        costed.units.push(PlannedUnit {
            id: UnitId(4),
            unit: WorkUnit::WholeModel,
            cost: 100,
        });
        assert_eq!(costed.assignment(2), [0, 0, 0, 0, 1]);
        let mut unknown = costed.clone();
        unknown.units[4].cost = 0;
        assert_eq!(unknown.assignment(2), [0, 0, 1, 1, 1]);
    }

    #[test]
    fn every_unit_is_in_exactly_one_contiguous_shard() {
        let costs: Vec<u64> = (0..97).map(|i| 1 + (i * 7919 % 13)).collect();
        let plan = plan(&costs);
        for count in [1, 2, 3, 8, 97, 200] {
            let mut seen = Vec::new();
            for index in 0..count {
                let ids = plan.shard(ShardSpec { index, count });
                if let (Some(first), Some(last)) = (ids.first(), ids.last()) {
                    assert_eq!(
                        ids.len(),
                        last.position() - first.position() + 1,
                        "shard {index}/{count} is not contiguous"
                    );
                }
                seen.extend(ids);
            }
            let expected: Vec<UnitId> = plan.units.iter().map(|u| u.id).collect();
            assert_eq!(seen, expected, "{count} shards");
        }
    }

    #[test]
    fn shards_cost_within_one_unit_of_an_equal_share() {
        let costs: Vec<u64> = (0..500).map(|i| 10 + (i * 104_729 % 90)).collect();
        let plan = plan(&costs);
        let total = plan.cost() as f64;
        let largest = *costs.iter().max().unwrap() as f64;
        for count in [2u32, 5, 16] {
            for index in 0..count {
                let cost: u64 = plan
                    .shard(ShardSpec { index, count })
                    .iter()
                    .map(|id| costs[id.position()])
                    .sum();
                let share = total / f64::from(count);
                assert!(
                    (cost as f64 - share).abs() <= largest,
                    "shard {index}/{count}: {cost} against an equal share of {share}"
                );
            }
        }
    }

    #[test]
    fn zero_cost_units_are_cut_by_count() {
        let plan = plan(&[0; 10]);
        let sizes: Vec<usize> = (0..5)
            .map(|index| plan.shard(ShardSpec { index, count: 5 }).len())
            .collect();
        assert_eq!(sizes, [2, 2, 2, 2, 2]);
    }

    #[test]
    fn keys_name_the_run_and_range() {
        let unit = WorkUnit::Samples {
            run: RunId(3),
            start: 1024,
            end: 2048,
        };
        assert_eq!(unit.key(), "run3[1024..2048)");
        assert_eq!(WorkUnit::WholeModel.key(), "whole-model");
        assert_eq!(UnitId(42).file_name(), "unit-000042.parquet");
    }
}
