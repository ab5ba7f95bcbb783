//! Executing work units ([`crate::shard`]) and assembling their outputs into one evaluation.
//!
//! Every way of running a suite goes through here: the whole plan in one process
//! ([`run_units`], which is `runner::run`), a resumed run (the units its journal lacks), a
//! shard (its slice of the units) and `gauntlet merge` (the units of every shard). Each unit
//! produces a [`UnitOutput`] — its records plus what the runner measures outside them — and
//! [`assemble`] puts the outputs of every unit of the plan, in unit order, into the same
//! [`Evaluation`] whichever processes produced them. That is what makes a merged or resumed
//! run identical to an uninterrupted one.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use gauntlet_attacks::Attack;
use gauntlet_results::{
    CleanOutcome, Outcome, PlannedRun, RunId, RunMeasurements, RunPlan, SampleRecord,
};

use crate::detector::Fitted;
use crate::load::Loaded;
use crate::progress::Progress;
use crate::runner::{
    attack_pass, batch_ranges, clean_pass, gallery_choice, gallery_examples, model_probes,
    CleanByIndex, DetectorRecords, DetectorTask, Evaluation, Executable, Pass,
};
use crate::shard::{UnitId, WorkPlan, WorkUnit, DEFAULT_UNIT_SAMPLES};
use crate::suite::Suite;

/// What one work unit produced.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitOutput {
    /// Runs the unit adds to the plan: the whole-model unit's backdoor runs (their records'
    /// [`RunId`]s follow the plan's own runs).
    pub extra_runs: Vec<PlannedRun>,
    /// What the unit measured outside its records: its wall time (in `run_seconds`, by run),
    /// and, for the units that produce them, the gallery, the model probes, the backdoor
    /// images and notices. Load and total time are left at 0; [`assemble`] sets them.
    pub measurements: RunMeasurements,
    pub records: Vec<SampleRecord>,
}

impl UnitOutput {
    /// Seconds the unit took.
    pub fn seconds(&self) -> f64 {
        self.measurements.run_seconds.iter().sum()
    }
}

/// A suite's plan, cut into units, ready to execute any of them.
pub struct Work<'a> {
    suite: &'a Suite,
    loaded: &'a Loaded,
    executables: Vec<Executable>,
    /// The unit list.
    pub units: WorkPlan,
    /// The plan without the whole-model unit's runs (which only exist once it has run).
    pub base_plan: RunPlan,
    gallery: Option<usize>,
    gradient_probe: bool,
    /// Clean outcomes by chunk start, from the clean units run or read so far: an attack unit
    /// needs its samples' clean outcomes (robust = correct before and after).
    clean: BTreeMap<u64, CleanByIndex>,
    /// The suite's guardrail detectors, fitted in this process (fitting is deterministic, so
    /// every shard and every resumed attempt fits the same detectors: the plan digest, which
    /// holds each fitted detector's description, checks it).
    fitted: Vec<Fitted>,
    /// By run position: the (fitted detector, detector run) pairs that score that run's
    /// inputs, in detector order.
    scored_by: Vec<Vec<(usize, RunId)>>,
}

impl<'a> Work<'a> {
    /// Plan `suite` over the loaded data, cut into units of `unit_samples` samples.
    pub fn new(suite: &'a Suite, loaded: &'a Loaded, unit_samples: usize) -> Result<Self> {
        let samples = loaded.dataset.len();
        let fitted = match &loaded.fit_data {
            Some(fit_data) if !suite.detectors.is_empty() => crate::detector::fit(
                &suite.detectors,
                fit_data,
                loaded.model.as_ref(),
                suite.batch_size,
            )?,
            _ => Vec::new(),
        };
        let executables = crate::runner::plan_runs(suite, samples, &fitted)?;
        let mut scored_by = vec![Vec::new(); executables.len()];
        for (position, executable) in executables.iter().enumerate() {
            if let Some(DetectorTask::Scores { detector, source }) = executable.detector {
                let run = RunId(u32::try_from(position).context("too many runs in one plan")?);
                scored_by[source.position()].push((detector, run));
            }
        }
        let whole_model = crate::runner::has_whole_model_sections(suite)
            .then(|| -> Result<u64> {
                let parts = crate::budget::whole_model_work(suite, samples, loaded.model.as_ref())?;
                Ok(parts
                    .iter()
                    .map(|(_, _, passes)| passes.total())
                    .fold(0, u64::saturating_add))
            })
            .transpose()?;
        let units = WorkPlan::new(&executables, whole_model, samples, unit_samples)?;
        let base_plan = crate::runner::run_plan(
            suite,
            loaded,
            executables.iter().map(|e| e.planned.clone()).collect(),
        );
        Ok(Self {
            suite,
            loaded,
            gallery: gallery_choice(suite, &executables),
            gradient_probe: crate::runner::gradient_probe(suite, loaded.model.as_ref()),
            executables,
            units,
            base_plan,
            clean: BTreeMap::new(),
            fitted,
            scored_by,
        })
    }

    /// Batches the given units will run (the progress bar's length).
    pub fn batches(&self, ids: &[UnitId]) -> u64 {
        ids.iter()
            .filter_map(|id| self.units.get(*id))
            .map(|planned| match planned.unit {
                WorkUnit::Samples { start, end, .. } => {
                    batch_ranges(start as usize..end as usize, self.suite.batch_size).len() as u64
                }
                WorkUnit::WholeModel => 0,
            })
            .sum()
    }

    /// Keep what later units need from a unit that ran earlier (in a journal or this process):
    /// the clean outcomes of a clean unit.
    pub fn remember(&mut self, id: UnitId, output: &UnitOutput) {
        let Some(WorkUnit::Samples { run, start, .. }) = self.units.get(id).map(|u| &u.unit) else {
            return;
        };
        if !self.executables[run.position()].is_clean() {
            return;
        }
        let outcomes: Vec<CleanOutcome> = output
            .records
            .iter()
            .filter_map(|r| match r.outcome {
                Outcome::Clean(clean) => Some(clean),
                _ => None,
            })
            .collect();
        self.clean
            .insert(*start, CleanByIndex::new(*start as usize, outcomes));
    }

    /// Run one unit.
    pub fn execute(&mut self, id: UnitId, progress: &Progress) -> Result<UnitOutput> {
        let started = Instant::now();
        let unit = self
            .units
            .get(id)
            .with_context(|| format!("the plan has no work unit {id}"))?
            .unit
            .clone();
        let mut output = match unit {
            WorkUnit::Samples { run, start, end } => {
                self.samples_unit(run, start as usize..end as usize, progress)?
            }
            WorkUnit::WholeModel => self.whole_model_unit(progress)?,
        };
        if let WorkUnit::Samples { run, start, .. } = unit {
            let seconds = &mut output.measurements.run_seconds;
            *seconds = vec![0.0; self.base_plan.runs.len()];
            seconds[run.position()] = started.elapsed().as_secs_f64();
            // A detector's fitting counts once, with its scores of the first clean chunk.
            if start == 0 && self.executables[run.position()].is_clean() {
                for &(detector, scores) in &self.scored_by[run.position()] {
                    seconds[scores.position()] += self.fitted[detector].fit_seconds;
                }
            }
        }
        self.remember(id, &output);
        Ok(output)
    }

    /// The pass of a unit; `score` when the fitted detectors score its inputs.
    fn pass<'p>(&'p self, progress: &'p Progress, score: bool) -> Pass<'p> {
        Pass {
            model: self.loaded.model.as_ref(),
            dataset: self.loaded.dataset.as_ref(),
            batch_size: self.suite.batch_size,
            seed: self.suite.seed,
            progress,
            detectors: if score { &self.fitted } else { &[] },
        }
    }

    /// The detectors' scores of run `source`'s inputs, as records of their detector runs.
    fn detector_records(
        &self,
        source: RunId,
        scores: DetectorRecords,
    ) -> Result<Vec<SampleRecord>> {
        let mut records = Vec::new();
        for (detector, scores) in scores.into_iter().enumerate() {
            let Some(&(_, run)) = self.scored_by[source.position()]
                .iter()
                .find(|(k, _)| *k == detector)
            else {
                bail!("detector #{detector} scored run #{}, which the plan does not score (a bug in this build)", source.position());
            };
            records.extend(scores.into_iter().map(|(index, outcome)| SampleRecord {
                run,
                index,
                outcome: Outcome::Detector(outcome),
            }));
        }
        Ok(records)
    }

    fn samples_unit(
        &mut self,
        run: RunId,
        samples: std::ops::Range<usize>,
        progress: &Progress,
    ) -> Result<UnitOutput> {
        let mut measurements = RunMeasurements::default();
        if let Some(DetectorTask::Adaptive { detector, attack }) =
            self.executables[run.position()].detector
        {
            return self.adaptive_unit(run, detector, attack, samples, progress);
        }
        let score = !self.scored_by[run.position()].is_empty();
        if self.executables[run.position()].is_clean() {
            progress.set_message("clean accuracy");
            // The model probes run on the first batch of the whole evaluation.
            let (mut records, first_batch, scores) = clean_pass(
                &self.pass(progress, score),
                run,
                samples.clone(),
                samples.start == 0,
            )
            .with_context(|| self.clean_failure())?;
            records.extend(self.detector_records(run, scores)?);
            if let Some(first) = &first_batch {
                progress.set_message("sanity: model probes");
                let (repeat, gradients) =
                    model_probes(self.loaded.model.as_ref(), first, self.gradient_probe)?;
                measurements.repeat_forward = Some(repeat);
                measurements.clean_gradients = gradients;
            }
            return Ok(UnitOutput {
                extra_runs: Vec::new(),
                measurements,
                records,
            });
        }
        let chunk = self.clean_chunk(samples.start, progress)?;
        let executable = &self.executables[run.position()];
        let attack: &dyn Attack = executable
            .attack
            .as_deref()
            .context("an attack unit without its attack (a bug in this build)")?;
        let label = &executable.planned.label;
        progress.set_message(&match executable.planned.purpose {
            gauntlet_results::RunPurpose::Attack => {
                format!("{label} ε={}", attack.threat().epsilon)
            }
            gauntlet_results::RunPurpose::MinimalNormSearch => format!("{label} (minimal norm)"),
            _ => format!("sanity: {label} ε={}", attack.threat().epsilon),
        });
        let clean = &self.clean[&chunk];
        // The gallery shows the first batch of its run.
        let keep =
            self.gallery == Some(run.position()) && samples.start == executable.samples.start;
        let (mut records, kept, scores) = attack_pass(
            &self.pass(progress, score),
            run,
            label,
            attack,
            samples,
            clean,
            keep,
            score,
        )?;
        records.extend(self.detector_records(run, scores)?);
        if let Some(kept) = &kept {
            measurements.examples = gallery_examples(
                kept,
                clean,
                label,
                attack.threat().epsilon,
                self.suite.report.examples,
                &mut measurements.notices,
            )?;
        }
        Ok(UnitOutput {
            extra_runs: Vec::new(),
            measurements,
            records,
        })
    }

    /// The start of the chunk holding `sample`, with its clean outcomes in the cache: from the
    /// clean unit when it ran in this process or its journal, else from a clean pass over the
    /// chunk now (one forward pass per sample; its records are not kept, the clean unit owns
    /// them). On a deterministic device both give the same outcomes.
    fn clean_chunk(&mut self, sample: usize, progress: &Progress) -> Result<u64> {
        let size = self.units.unit_samples;
        let start = sample - sample % size;
        let key = start as u64;
        if !self.clean.contains_key(&key) {
            let end = (start + size).min(self.loaded.dataset.len());
            let (records, _, _) =
                clean_pass(&self.pass(progress, false), RunId(0), start..end, false)
                    .with_context(|| self.clean_failure())?;
            let outcomes = records
                .iter()
                .filter_map(|r| match r.outcome {
                    Outcome::Clean(clean) => Some(clean),
                    _ => None,
                })
                .collect();
            self.clean.insert(key, CleanByIndex::new(start, outcomes));
        }
        Ok(key)
    }

    /// An adaptive PGD unit: the attack against fitted detector `detector` on `samples`, and
    /// the detector's records of its outputs (robust = correct before and after).
    fn adaptive_unit(
        &mut self,
        run: RunId,
        detector: usize,
        attack: gauntlet_attacks::detector::adaptive::AdaptivePgd,
        samples: std::ops::Range<usize>,
        progress: &Progress,
    ) -> Result<UnitOutput> {
        let chunk = self.clean_chunk(samples.start, progress)?;
        let fitted = &self.fitted[detector];
        progress.set_message(&format!(
            "adaptive PGD vs {} ε={}",
            fitted.label, attack.epsilon
        ));
        let clean = &self.clean[&chunk];
        let scores = crate::detector::adaptive_pass(
            fitted,
            &attack,
            &self.pass(progress, false),
            samples,
            &|index| clean.get(index).map(CleanOutcome::correct),
        )?;
        Ok(UnitOutput {
            extra_runs: Vec::new(),
            measurements: RunMeasurements::default(),
            records: scores
                .into_iter()
                .map(|(index, outcome)| SampleRecord {
                    run,
                    index,
                    outcome: Outcome::Detector(outcome),
                })
                .collect(),
        })
    }

    fn clean_failure(&self) -> String {
        format!(
            "model `{}` cannot be evaluated on the clean data",
            self.loaded.model_info.path
        )
    }

    fn whole_model_unit(&mut self, progress: &Progress) -> Result<UnitOutput> {
        let output = crate::runner::whole_model_sections(self.suite, self.loaded, progress)?;
        let base = self.base_plan.runs.len();
        let mut measurements = RunMeasurements {
            run_seconds: vec![0.0; base],
            backdoor_images: output.images,
            poisoned_indices: output.poisoned_indices,
            notices: output.notices,
            probing: output.probing,
            ..RunMeasurements::default()
        };
        let mut extra_runs = Vec::new();
        let mut records = Vec::new();
        for run in output.runs {
            let id = RunId(u32::try_from(base + extra_runs.len()).context("too many runs")?);
            records.extend(
                run.records
                    .into_iter()
                    .map(|(index, outcome)| SampleRecord {
                        run: id,
                        index,
                        outcome: Outcome::Backdoor(outcome),
                    }),
            );
            measurements.run_seconds.push(run.seconds);
            extra_runs.push(run.planned);
        }
        Ok(UnitOutput {
            extra_runs,
            measurements,
            records,
        })
    }
}

/// Put the outputs of every unit of a plan together: the plan (with the whole-model unit's
/// runs), the records in run order (each run's chunks in order), the measurements (per-run
/// seconds summed over units, the gallery, probes and backdoor figures from the units that
/// made them, notices in unit order, then the kernel-path notice). `outputs` must hold every
/// unit of a plan of `unit_count` units exactly once; the order they come in does not matter.
///
/// Timings are compute time: `total_seconds` is `load_seconds` plus every unit's seconds,
/// whichever process (or earlier attempt) ran it — not the wall time of any one process.
pub fn assemble(
    base_plan: &RunPlan,
    unit_count: usize,
    load_seconds: f64,
    outputs: impl IntoIterator<Item = (UnitId, UnitOutput)>,
) -> Result<Evaluation> {
    let mut by_unit: BTreeMap<UnitId, UnitOutput> = BTreeMap::new();
    for (id, output) in outputs {
        if by_unit.insert(id, output).is_some() {
            bail!("work unit {id} was given twice");
        }
    }
    if let Some(extra) = by_unit.keys().find(|id| id.position() >= unit_count) {
        bail!("work unit {extra} is not in the plan of {unit_count} units");
    }
    if by_unit.len() != unit_count {
        bail!(
            "{} of the plan's {unit_count} work units are missing",
            unit_count - by_unit.len()
        );
    }
    let mut plan = base_plan.clone();
    let mut measurements = RunMeasurements {
        load_seconds,
        run_seconds: vec![0.0; plan.runs.len()],
        ..RunMeasurements::default()
    };
    let mut records = Vec::new();
    for (id, output) in by_unit {
        if !output.extra_runs.is_empty() {
            if plan.runs.len() != base_plan.runs.len() {
                bail!("two work units add runs to the plan (the second is {id})");
            }
            plan.runs.extend(output.extra_runs);
            measurements.run_seconds.resize(plan.runs.len(), 0.0);
        }
        let m = output.measurements;
        if m.run_seconds.len() > measurements.run_seconds.len() {
            bail!("work unit {id} has times for runs the plan does not have");
        }
        for (total, seconds) in measurements.run_seconds.iter_mut().zip(&m.run_seconds) {
            *total += seconds;
        }
        measurements.examples.extend(m.examples);
        measurements.notices.extend(m.notices);
        let images = &mut measurements.backdoor_images;
        images.triggers.extend(m.backdoor_images.triggers);
        images.inputs.extend(m.backdoor_images.inputs);
        measurements.poisoned_indices.extend(m.poisoned_indices);
        measurements.repeat_forward = measurements.repeat_forward.or(m.repeat_forward);
        measurements.clean_gradients = measurements.clean_gradients.or(m.clean_gradients);
        measurements.probing = measurements.probing.or(m.probing);
        records.extend(output.records);
    }
    // Run order; a sort that keeps each run's records in unit order (chunks ascending).
    records.sort_by_key(|r| r.run);
    measurements
        .notices
        .extend(crate::runner::kernel_path_notice(&plan.kernel_path));
    measurements.total_seconds = load_seconds + measurements.run_seconds.iter().sum::<f64>();
    Ok(Evaluation {
        plan,
        measurements,
        records,
    })
}

/// Run every unit of the suite's plan in this process, with no journal.
pub fn run_units(suite: &Suite, loaded: &Loaded, progress: &Progress) -> Result<Evaluation> {
    let mut work = Work::new(suite, loaded, DEFAULT_UNIT_SAMPLES)?;
    let ids: Vec<UnitId> = work.units.units.iter().map(|u| u.id).collect();
    progress.set_length(work.batches(&ids));
    let mut outputs = Vec::with_capacity(ids.len());
    for id in ids {
        outputs.push((id, work.execute(id, progress)?));
    }
    assemble(
        &work.base_plan,
        work.units.units.len(),
        loaded.load_seconds,
        outputs,
    )
}
