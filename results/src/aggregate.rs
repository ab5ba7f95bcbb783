//! `results.json` as a pure function of (plan, records): accuracies with intervals, the
//! pointwise worst case, per-class figures, sanity checks and gates. No model, no tensors: the
//! same function runs after `gauntlet run` and in `gauntlet report --samples`, and after
//! merging the records of shards.

use std::collections::HashMap;

use gauntlet_attacks::evasion::standard::{self, Member};
use gauntlet_attacks::{BudgetSemantics, Norm};
use gauntlet_reports::{
    AttackResult, CleanResult, MemberCredit, MinimalNormResult, NormQuantile, RunReport, SuiteInfo,
    Timings, WorstCaseResult, MINIMAL_NORM_QUANTILES, SCHEMA_VERSION,
};

use crate::metrics::{
    count_true, epsilon_value, per_class, perturbation_stats, proportion, quantile,
};
use crate::plan::{AttackRun, RunMeasurements, RunPlan, RunPurpose};
use crate::records::{CleanOutcome, EvasionOutcome, Outcome, RecordKind, RunId, SampleRecord};
use crate::AggregateError;

/// The records of a run, aligned by sample: position `k` of every run is the `k`-th evaluated
/// sample (ascending global index).
#[derive(Debug)]
pub struct Aligned<'a> {
    pub plan: &'a RunPlan,
    /// Global indices of the evaluated samples, ascending: the clean run's samples.
    pub indices: Vec<u64>,
    /// The clean outcome of each sample.
    pub clean: Vec<CleanOutcome>,
    /// Per run (by position in the plan), the evasion outcome of each sample the run covered.
    pub evasion: Vec<Vec<Option<EvasionOutcome>>>,
}

impl<'a> Aligned<'a> {
    /// Check the records against the plan and align them by sample.
    ///
    /// Every record must name a run of the plan and have that run's kind; no (run, sample)
    /// appears twice; attack runs cover every sample of the clean run, probes a subset of them.
    pub fn new(plan: &'a RunPlan, records: &[SampleRecord]) -> Result<Self, AggregateError> {
        let run_label = |run: RunId| {
            plan.runs
                .get(run.position())
                .map(|r| r.label.clone())
                .unwrap_or_else(|| format!("#{}", run.0))
        };
        let mut clean_records: Vec<(u64, CleanOutcome)> = Vec::new();
        for record in records {
            let planned =
                plan.runs
                    .get(record.run.position())
                    .ok_or(AggregateError::UnknownRun {
                        run: record.run.0,
                        runs: plan.runs.len(),
                    })?;
            let expected = match (planned.purpose, &planned.backdoor) {
                (RunPurpose::Clean, _) => RecordKind::Clean,
                (RunPurpose::Backdoor, Some(backdoor)) => backdoor.record_kind(),
                (RunPurpose::Backdoor, None) => {
                    return Err(AggregateError::WrongKind {
                        run: planned.label.clone(),
                        expected: "a backdoor run description in the plan",
                        found: record.outcome.kind().as_str(),
                    })
                }
                (RunPurpose::Detector, _) if planned.detector.is_some() => RecordKind::Detector,
                (RunPurpose::Detector, _) => {
                    return Err(AggregateError::WrongKind {
                        run: planned.label.clone(),
                        expected: "a detector run description in the plan",
                        found: record.outcome.kind().as_str(),
                    })
                }
                _ => RecordKind::Evasion,
            };
            if record.outcome.kind() != expected {
                return Err(AggregateError::WrongKind {
                    run: planned.label.clone(),
                    expected: expected.as_str(),
                    found: record.outcome.kind().as_str(),
                });
            }
            if let Outcome::Clean(clean) = record.outcome {
                clean_records.push((record.index, clean));
            }
        }
        if !plan.runs.iter().any(|r| r.purpose == RunPurpose::Clean) {
            return Err(AggregateError::NoCleanRun);
        }
        clean_records.sort_by_key(|(index, _)| *index);
        if let Some(pair) = clean_records.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(AggregateError::DuplicateRecord {
                run: "clean".to_string(),
                index: pair[0].0,
            });
        }
        let indices: Vec<u64> = clean_records.iter().map(|(index, _)| *index).collect();
        let clean: Vec<CleanOutcome> = clean_records.into_iter().map(|(_, c)| c).collect();
        let position: HashMap<u64, usize> =
            indices.iter().enumerate().map(|(k, &i)| (i, k)).collect();

        let mut evasion: Vec<Vec<Option<EvasionOutcome>>> = plan
            .runs
            .iter()
            .map(|run| match run.purpose {
                RunPurpose::Clean | RunPurpose::Backdoor | RunPurpose::Detector => Vec::new(),
                _ => vec![None; indices.len()],
            })
            .collect();
        for record in records {
            let Outcome::Evasion(outcome) = record.outcome else {
                continue;
            };
            let k = *position
                .get(&record.index)
                .ok_or_else(|| AggregateError::NotInCleanRun {
                    run: run_label(record.run),
                    index: record.index,
                })?;
            let slot = &mut evasion[record.run.position()][k];
            if slot.is_some() {
                return Err(AggregateError::DuplicateRecord {
                    run: run_label(record.run),
                    index: record.index,
                });
            }
            *slot = Some(outcome);
        }
        derive_minimal_norm_runs(plan, &clean, &mut evasion)?;
        for (run, outcomes) in plan.runs.iter().zip(&evasion) {
            if matches!(
                run.purpose,
                RunPurpose::Attack | RunPurpose::MinimalNormSearch
            ) {
                let missing: Vec<u64> = outcomes
                    .iter()
                    .zip(&indices)
                    .filter(|(o, _)| o.is_none())
                    .map(|(_, &i)| i)
                    .collect();
                if let Some(&first) = missing.first() {
                    return Err(AggregateError::MissingSamples {
                        run: run.label.clone(),
                        missing: missing.len(),
                        first,
                    });
                }
            }
        }
        Ok(Self {
            plan,
            indices,
            clean,
            evasion,
        })
    }

    /// The true labels, in sample order.
    pub fn labels(&self) -> Vec<u32> {
        self.clean.iter().map(|c| c.label).collect()
    }

    /// Whether each sample is classified correctly when clean.
    pub fn clean_correct(&self) -> Vec<bool> {
        self.clean.iter().map(CleanOutcome::correct).collect()
    }

    /// The attack runs of the suite (purpose [`RunPurpose::Attack`]) with their outcomes, in
    /// plan order; every sample has an outcome.
    pub fn attack_runs(&self) -> impl Iterator<Item = AttackRunView<'_>> {
        self.runs_with(RunPurpose::Attack)
    }

    /// The runs with `purpose` and their outcomes.
    pub fn runs_with(&self, purpose: RunPurpose) -> impl Iterator<Item = AttackRunView<'_>> {
        self.plan
            .runs
            .iter()
            .enumerate()
            .filter(move |(_, run)| run.purpose == purpose)
            .filter_map(|(position, run)| {
                Some(AttackRunView {
                    position,
                    label: &run.label,
                    attack: run.attack.as_ref()?,
                    outcomes: &self.evasion[position],
                })
            })
    }
}

/// One attack run and its per-sample outcomes (`None` where a probe did not cover a sample).
#[derive(Debug, Clone, Copy)]
pub struct AttackRunView<'a> {
    pub position: usize,
    pub label: &'a str,
    pub attack: &'a AttackRun,
    pub outcomes: &'a [Option<EvasionOutcome>],
}

impl AttackRunView<'_> {
    /// The outcomes of the covered samples.
    pub fn covered(&self) -> impl Iterator<Item = &EvasionOutcome> {
        self.outcomes.iter().flatten()
    }

    /// Robust per sample (an uncovered sample counts as not robust; attack runs cover all).
    pub fn robust(&self) -> Vec<bool> {
        self.outcomes
            .iter()
            .map(|o| o.is_some_and(|o| o.robust))
            .collect()
    }

    /// How many samples are robust.
    pub fn robust_count(&self) -> usize {
        self.covered().filter(|o| o.robust).count()
    }
}

/// Fill the records of every minimal-norm attack's run at each ε from its one unbounded run
/// (the [`RunPurpose::MinimalNormSearch`] run with the same label), sample by sample: where the
/// search broke the sample with a perturbation of norm ≤ ε, the outcome is the search's; where
/// it did not (no success, or a larger perturbation), the attack at ε returns the clean input,
/// so the outcome is the clean one (robust if correct, no perturbation). A sample counts as
/// robust at ε exactly when it was correct and its minimal norm is > ε or none was found.
///
/// A minimal-norm run at ε that has records of its own (written by a runner that ran it per
/// ε) keeps them.
fn derive_minimal_norm_runs(
    plan: &RunPlan,
    clean: &[CleanOutcome],
    evasion: &mut [Vec<Option<EvasionOutcome>>],
) -> Result<(), AggregateError> {
    for (position, run) in plan.runs.iter().enumerate() {
        let Some(attack) = &run.attack else { continue };
        if run.purpose != RunPurpose::Attack
            || attack.budget != BudgetSemantics::MinimalNorm
            || evasion[position].iter().any(Option::is_some)
        {
            continue;
        }
        let search = plan
            .runs
            .iter()
            .position(|r| r.purpose == RunPurpose::MinimalNormSearch && r.label == run.label)
            .ok_or_else(|| AggregateError::NoMinimalNormSearch {
                run: run.label.clone(),
            })?;
        let derived: Vec<Option<EvasionOutcome>> = evasion[search]
            .iter()
            .zip(clean)
            .map(|(found, clean)| found.map(|found| derive_at(found, clean, attack.epsilon)))
            .collect();
        evasion[position] = derived;
    }
    Ok(())
}

/// The outcome at budget `epsilon` of a minimal-norm attack whose unbounded run gave `found`.
pub fn derive_at(found: EvasionOutcome, clean: &CleanOutcome, epsilon: f32) -> EvasionOutcome {
    let broken = found.prediction != clean.label;
    if broken && found.norm <= epsilon {
        EvasionOutcome {
            robust: false,
            ..found
        }
    } else {
        // The clean input: its range is not recorded, so the search output's stands in
        // (the within-budget check skips minimal-norm runs).
        EvasionOutcome {
            prediction: clean.prediction,
            robust: clean.correct(),
            loss: clean.loss,
            norm: 0.0,
            linf: 0.0,
            ..found
        }
    }
}

fn mean(values: impl Iterator<Item = f32>) -> f64 {
    let (sum, count) = values.fold((0.0f64, 0usize), |(s, n), v| (s + f64::from(v), n + 1));
    if count == 0 {
        0.0
    } else {
        sum / count as f64
    }
}

/// `results.json` from the plan, the records and what the runner measured besides them.
pub fn aggregate(
    plan: &RunPlan,
    measurements: &RunMeasurements,
    records: &[SampleRecord],
) -> Result<RunReport, AggregateError> {
    let aligned = Aligned::new(plan, records)?;
    let labels = aligned.labels();
    let clean_correct = aligned.clean_correct();
    let class_names = &plan.class_names;
    let seconds = |position: usize| {
        measurements
            .run_seconds
            .get(position)
            .copied()
            .unwrap_or(0.0)
    };

    let clean = CleanResult {
        accuracy: proportion(count_true(&clean_correct), clean_correct.len()),
        mean_loss: mean(aligned.clean.iter().map(|c| c.loss)),
        per_class: per_class(&labels, &clean_correct, class_names),
    };
    let correct_count = count_true(&clean_correct);
    let attacks: Vec<AttackResult> = aligned
        .attack_runs()
        .map(|run| {
            let robust = run.robust();
            let broken = clean_correct
                .iter()
                .zip(&robust)
                .filter(|(&was_correct, &still)| was_correct && !still)
                .count();
            let norms: Vec<f32> = run.covered().map(|o| o.norm).collect();
            let max_linf = run.covered().map(|o| o.linf).fold(0.0f32, f32::max);
            AttackResult {
                label: run.label.to_string(),
                attack: run.attack.name.clone(),
                norm: run.attack.norm.to_string(),
                epsilon: epsilon_value(run.attack.epsilon),
                params: run.attack.params.clone(),
                kind: Some(run.attack.kind.to_string()),
                needs: Some(
                    serde_json::to_value(run.attack.needs)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                ),
                objective: Some(run.attack.objective.clone()),
                robust_accuracy: proportion(count_true(&robust), robust.len()),
                success_rate: proportion(broken, correct_count),
                mean_loss: mean(run.covered().map(|o| o.loss)),
                perturbation: perturbation_stats(&norms, max_linf),
                per_class: per_class(&labels, &robust, class_names),
                seconds: seconds(run.position),
                broken_by: member_credit(&run, broken),
            }
        })
        .collect();
    let minimal_norm: Vec<MinimalNormResult> = aligned
        .runs_with(RunPurpose::MinimalNormSearch)
        .map(|run| minimal_norm_result(&run, &clean_correct, seconds(run.position)))
        .collect();
    let worst_case = worst_case(&aligned, &labels);
    let sanity_checks = crate::sanity::run_checks(&aligned, measurements, &worst_case);
    let run_seconds = |purpose: RunPurpose| -> f64 {
        plan.runs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.purpose == purpose)
            .map(|(p, _)| seconds(p))
            .sum()
    };
    let mut report = RunReport {
        schema_version: SCHEMA_VERSION,
        gauntlet_version: plan.gauntlet_version.clone(),
        suite: SuiteInfo {
            name: plan.suite.name.clone(),
            path: plan.suite.path.clone(),
        },
        seed: plan.seed,
        device: plan.device.clone(),
        model: plan.model.clone(),
        dataset: plan.dataset.clone(),
        clean,
        attacks,
        minimal_norm,
        worst_case,
        sanity_checks,
        gates: Vec::new(),
        examples: measurements.examples.clone(),
        timings: Timings {
            load_seconds: measurements.load_seconds,
            clean_seconds: run_seconds(RunPurpose::Clean),
            attack_seconds: run_seconds(RunPurpose::Attack),
            total_seconds: measurements.total_seconds,
        },
        provenance: plan.provenance.clone(),
        kernel_path: Some(plan.kernel_path.clone()),
        notices: measurements.notices.clone(),
        samples_file: None,
        backdoor: crate::backdoor::aggregate(plan, measurements, records),
        detectors: crate::detector::aggregate(plan, measurements, records)?,
        output_drift: crate::drift::aggregate(plan, &aligned, records),
        probing: measurements.probing.clone(),
        baseline: None,
    };
    report.gates = crate::gate::evaluate(&plan.gates, &report);
    Ok(report)
}

/// For a `standard` run: how many samples each member broke, every member listed in the
/// order they run. Empty for other attacks, and for a `standard` run that broke samples but
/// whose records credit none of them (read from a per-sample file before version 4), so an
/// old file never shows made-up zeros.
fn member_credit(run: &AttackRunView, broken: usize) -> Vec<MemberCredit> {
    if run.attack.name != standard::ENTRY.name {
        return Vec::new();
    }
    let credited: Vec<Member> = run.covered().filter_map(|o| o.broken_by).collect();
    if credited.is_empty() && broken > 0 {
        return Vec::new();
    }
    Member::ALL
        .iter()
        .map(|&member| MemberCredit {
            member: member.name().to_string(),
            broken: credited.iter().filter(|&&m| m == member).count(),
        })
        .collect()
}

/// The sizes of the smallest successful perturbations of a minimal-norm attack's unbounded run:
/// quantiles, median and mean over the samples it broke that were correct when clean.
fn minimal_norm_result(
    run: &AttackRunView,
    clean_correct: &[bool],
    seconds: f64,
) -> MinimalNormResult {
    let mut sizes: Vec<f64> = run
        .outcomes
        .iter()
        .zip(clean_correct)
        .filter_map(|(outcome, &correct)| match outcome {
            Some(o) if correct && !o.robust => Some(f64::from(o.norm)),
            _ => None,
        })
        .collect();
    sizes.sort_by(f64::total_cmp);
    let correct = count_true(clean_correct);
    MinimalNormResult {
        label: run.label.to_string(),
        attack: run.attack.name.clone(),
        norm: run.attack.norm.to_string(),
        params: run.attack.params.clone(),
        success_rate: proportion(sizes.len(), correct),
        quantiles: MINIMAL_NORM_QUANTILES
            .iter()
            .filter_map(|&q| {
                Some(NormQuantile {
                    q,
                    value: quantile(&sizes, q)?,
                })
            })
            .collect(),
        median: quantile(&sizes, 0.5),
        mean: (!sizes.is_empty()).then(|| sizes.iter().sum::<f64>() / sizes.len() as f64),
        seconds,
    }
}

/// Pointwise worst case over the attack runs at each (norm, ε): a sample counts as robust only
/// if every attack at that budget left it robust.
fn worst_case(aligned: &Aligned, labels: &[u32]) -> Vec<WorstCaseResult> {
    let mut keys: Vec<(Norm, f32)> = Vec::new();
    for run in aligned.attack_runs() {
        let key = (run.attack.norm, run.attack.epsilon);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let norm_order = |norm: Norm| match norm {
        Norm::Linf => 0,
        Norm::L2 => 1,
    };
    keys.sort_by(|a, b| {
        norm_order(a.0)
            .cmp(&norm_order(b.0))
            .then(a.1.total_cmp(&b.1))
    });
    keys.into_iter()
        .map(|(norm, epsilon)| {
            let members: Vec<AttackRunView> = aligned
                .attack_runs()
                .filter(|r| r.attack.norm == norm && r.attack.epsilon == epsilon)
                .collect();
            let robust: Vec<bool> = (0..aligned.indices.len())
                .map(|k| {
                    members
                        .iter()
                        .all(|run| run.outcomes[k].is_some_and(|o| o.robust))
                })
                .collect();
            WorstCaseResult {
                norm: norm.to_string(),
                epsilon: epsilon_value(epsilon),
                attacks: members.iter().map(|r| r.label.to_string()).collect(),
                robust_accuracy: proportion(count_true(&robust), robust.len()),
                per_class: per_class(labels, &robust, &aligned.plan.class_names),
            }
        })
        .collect()
}
