//! Runs a validated [`Suite`]: dataset → model → attacks → per-sample records.
//!
//! The runner only orchestrates. It turns the suite into a [`RunPlan`] (one run per attack and
//! ε, plus the probes the sanity checks read), runs each over the data in batches, and emits
//! one [`SampleRecord`] per (run, sample) keyed by the sample's global index. Every figure of
//! `results.json` is then [`gauntlet_results::aggregate()`] of the plan and the records: a pure
//! function with no model in it.
//!
//! Randomness is per sample: sample *i* of run *r* draws from a generator keyed by (suite seed,
//! run label, *i*), so results are bit-identical whatever the batch size, and running samples
//! [0, 250) and [250, 500) separately gives exactly the records of [0, 500).

use std::ops::Range;

use anyhow::{Context, Result};
use candle_core::{DType, Tensor};
use gauntlet_attacks::{
    projection::perturbation_norms, Attack, AttackEntry, BudgetSemantics, Norm, SampleRandomness,
};
use gauntlet_datasets::{Batch, Dataset};
use gauntlet_models::{Loss, Model};
use gauntlet_reports::{AdversarialExample, KernelPathInfo, RunReport};
use gauntlet_results::{
    metrics::epsilon_value, AttackRun, CleanGradients, CleanOutcome, EvasionOutcome, Outcome,
    PlannedRun, RepeatForward, RunId, RunMeasurements, RunPlan, RunPurpose, SampleRecord,
    PLAN_VERSION,
};

use crate::load::Loaded;
use crate::progress::Progress;
use crate::suite::Suite;

/// Samples the ε = 0 probe of each attack runs on: enough to catch an attack that moves its
/// input at ε = 0, fixed so that the plan does not depend on the batch size.
pub const ZERO_BUDGET_PROBE_SAMPLES: usize = 128;

/// The label of the full-budget probe's run.
pub const FULL_BUDGET_PROBE_LABEL: &str = "full_budget";

/// What a run measured: its plan, its records and the rest, ready for aggregation and for the
/// per-sample file.
pub struct Evaluation {
    pub plan: RunPlan,
    pub measurements: RunMeasurements,
    pub records: Vec<SampleRecord>,
}

impl Evaluation {
    /// `results.json`, aggregated from the records.
    pub fn report(&self) -> Result<RunReport> {
        gauntlet_results::aggregate(&self.plan, &self.measurements, &self.records)
            .context("the run's own records do not aggregate (a bug in this build)")
    }
}

/// One run of the plan, with the attack that executes it.
pub(crate) struct Executable {
    pub(crate) planned: PlannedRun,
    /// `None` for the clean pass.
    pub(crate) attack: Option<Box<dyn Attack>>,
    /// The samples it covers (global indices).
    pub(crate) samples: Range<usize>,
    /// A minimal-norm attack's run at one ε: not executed, its records are derived from the
    /// attack's one unbounded run by the aggregation. Also a detector's scores of another
    /// run's inputs: their records come from that run's units.
    pub(crate) derived: bool,
    /// What a guardrail run does (`None` for every other run).
    pub(crate) detector: Option<DetectorTask>,
}

impl Executable {
    /// The clean pass: no attack, no detector.
    pub(crate) fn is_clean(&self) -> bool {
        self.attack.is_none() && self.detector.is_none()
    }
}

/// A [`RunPurpose::Detector`] run of the plan.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DetectorTask {
    /// Fitted detector `detector` scores the inputs of run `source` (the clean pass, or an
    /// attack's adversarial inputs), inside that run's units.
    Scores { detector: usize, source: RunId },
    /// An adaptive PGD against fitted detector `detector`, with units of its own.
    Adaptive {
        detector: usize,
        attack: gauntlet_attacks::detector::adaptive::AdaptivePgd,
    },
}

/// The batches of the evaluated samples within `range`.
pub fn batch_ranges(range: Range<usize>, batch_size: usize) -> Vec<Range<usize>> {
    range
        .clone()
        .step_by(batch_size.max(1))
        .map(|start| start..(start + batch_size).min(range.end))
        .collect()
}

fn to_u32s(tensor: &Tensor) -> Result<Vec<u32>> {
    Ok(tensor.to_dtype(DType::U32)?.to_vec1::<u32>()?)
}

/// Predictions and per-sample cross-entropy against the true labels.
fn evaluate(model: &dyn Model, inputs: &Tensor, labels: &Tensor) -> Result<(Vec<u32>, Vec<f32>)> {
    scores(&model.forward(inputs)?, labels)
}

/// Refuses logits with a NaN or infinite value, naming the first sample (global index
/// `start + row`) and class: a model that cannot score clean inputs has no robustness to
/// measure, and every attack would only propagate the NaN.
fn check_finite_logits(logits: &Tensor, start: usize) -> Result<()> {
    let rows = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    for (row, values) in rows.iter().enumerate() {
        if let Some((class, value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            anyhow::bail!(
                "the model's logits on clean sample {} are not finite ({value} for class {class}); \
                 no attack was run",
                start + row
            );
        }
    }
    Ok(())
}

/// Predictions and per-sample cross-entropy of `logits` against the true labels.
fn scores(logits: &Tensor, labels: &Tensor) -> Result<(Vec<u32>, Vec<f32>)> {
    let predictions = to_u32s(&logits.argmax(1)?)?;
    let losses = Loss::CrossEntropy
        .per_sample(logits, labels)?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?;
    Ok((predictions, losses))
}

fn attack_run(entry: &AttackEntry, attack: &dyn Attack, params: &toml::Table) -> AttackRun {
    let threat = attack.threat();
    AttackRun {
        name: entry.name.to_string(),
        kind: entry.kind,
        needs: entry.needs,
        budget: entry.budget,
        norm: threat.norm,
        epsilon: threat.epsilon,
        objective: attack.objective().to_string(),
        params: serde_json::to_value(params)
            .ok()
            .and_then(|value| value.as_object().cloned())
            .unwrap_or_default(),
    }
}

/// The plan of a suite: the clean pass, every attack at every ε, the one unbounded run of each
/// minimal-norm attack label (its runs at each ε are planned, for the report, but derived from
/// it rather than executed), the ε = 0 probe of each bounded attack label, the full-budget
/// probe, and the runs of the `fitted` guardrail detectors ([`plan_detector_runs`]).
pub(crate) fn plan_runs(
    suite: &Suite,
    samples: usize,
    fitted: &[crate::detector::Fitted],
) -> Result<Vec<Executable>> {
    let mut runs = vec![Executable {
        planned: PlannedRun::clean(),
        attack: None,
        samples: 0..samples,
        derived: false,
        detector: None,
    }];
    let minimal_norm = |planned: &&crate::suite::PlannedAttack| {
        planned.entry.budget == BudgetSemantics::MinimalNorm
    };
    for planned in &suite.attacks {
        runs.push(Executable {
            planned: PlannedRun {
                label: planned.label.clone(),
                purpose: RunPurpose::Attack,
                attack: Some(attack_run(
                    planned.entry,
                    planned.attack.as_ref(),
                    &planned.params,
                )),
                backdoor: None,
                detector: None,
            },
            attack: Some((planned.entry.build)(&planned.params, planned.epsilon)?),
            samples: 0..samples,
            derived: minimal_norm(&planned),
            detector: None,
        });
    }
    // One unbounded run per minimal-norm attack label: every ε of the suite is read from it.
    let mut searched: Vec<&str> = Vec::new();
    for planned in suite.attacks.iter().filter(minimal_norm) {
        if searched.contains(&planned.label.as_str()) {
            continue;
        }
        searched.push(&planned.label);
        let attack = (planned.entry.build)(&planned.params, f32::INFINITY)
            .with_context(|| format!("attack `{}` at ε = +∞", planned.label))?;
        runs.push(Executable {
            planned: PlannedRun {
                label: planned.label.clone(),
                purpose: RunPurpose::MinimalNormSearch,
                attack: Some(attack_run(planned.entry, attack.as_ref(), &planned.params)),
                backdoor: None,
                detector: None,
            },
            attack: Some(attack),
            samples: 0..samples,
            derived: false,
            detector: None,
        });
    }
    // The ε = 0 probe of each bounded attack label. A minimal-norm attack's outputs at ε are
    // derived from its unbounded run, so there is nothing to probe.
    let mut probed: Vec<&str> = Vec::new();
    for planned in suite.attacks.iter().filter(|p| !minimal_norm(p)) {
        if probed.contains(&planned.label.as_str()) {
            continue;
        }
        probed.push(&planned.label);
        let attack = (planned.entry.build)(&planned.params, 0.0)
            .with_context(|| format!("attack `{}` at ε = 0", planned.label))?;
        runs.push(Executable {
            planned: PlannedRun {
                label: planned.label.clone(),
                purpose: RunPurpose::ZeroBudgetProbe,
                attack: Some(attack_run(planned.entry, attack.as_ref(), &planned.params)),
                backdoor: None,
                detector: None,
            },
            attack: Some(attack),
            samples: 0..samples.min(ZERO_BUDGET_PROBE_SAMPLES),
            derived: false,
            detector: None,
        });
    }
    if suite.sanity.full_budget {
        let entry = &gauntlet_attacks::evasion::pgd::ENTRY;
        let mut params = toml::Table::new();
        params.insert(
            "steps".into(),
            toml::Value::Integer(i64::from(suite.sanity.full_budget_steps)),
        );
        params.insert("random_start".into(), toml::Value::Boolean(true));
        let attack = (entry.build)(&params, 1.0)?;
        debug_assert_eq!(attack.threat().norm, Norm::Linf);
        runs.push(Executable {
            planned: PlannedRun {
                label: FULL_BUDGET_PROBE_LABEL.to_string(),
                purpose: RunPurpose::FullBudgetProbe,
                attack: Some(attack_run(entry, attack.as_ref(), &params)),
                backdoor: None,
                detector: None,
            },
            attack: Some(attack),
            samples: 0..samples.min(suite.sanity.full_budget_samples),
            derived: false,
            detector: None,
        });
    }
    plan_detector_runs(suite, fitted, &mut runs)?;
    Ok(runs)
}

/// The guardrail runs, after every other run of the plan: per fitted detector, its scores of
/// the clean inputs, of each executed attack@ε's adversarial inputs (probes and minimal-norm
/// searches are not scored), and, with `adaptive`, one adaptive PGD run per ε of the suite's
/// bounded L∞ attacks.
fn plan_detector_runs(
    suite: &Suite,
    fitted: &[crate::detector::Fitted],
    runs: &mut Vec<Executable>,
) -> Result<()> {
    use gauntlet_results::detector::ScoredInputs;
    let scored: Vec<(RunId, Range<usize>, ScoredInputs, Option<AttackRun>)> = runs
        .iter()
        .enumerate()
        .filter(|(_, e)| e.is_clean() || (e.planned.purpose == RunPurpose::Attack && !e.derived))
        .map(|(position, e)| {
            let scored = if e.is_clean() {
                ScoredInputs::Clean
            } else {
                ScoredInputs::Attack {
                    attack_label: e.planned.label.clone(),
                    adaptive: false,
                }
            };
            Ok((
                RunId(u32::try_from(position).context("too many runs in one plan")?),
                e.samples.clone(),
                scored,
                e.planned.attack.clone(),
            ))
        })
        .collect::<Result<_>>()?;
    let samples = runs.first().map_or(0..0, |clean| clean.samples.clone());
    for (k, f) in fitted.iter().enumerate() {
        for (source, range, what, attack) in &scored {
            runs.push(Executable {
                planned: crate::detector::planned_run(f, what.clone(), attack.clone()),
                attack: None,
                samples: range.clone(),
                derived: true,
                detector: Some(DetectorTask::Scores {
                    detector: k,
                    source: *source,
                }),
            });
        }
        let Some(settings) = f.adaptive else {
            continue;
        };
        for epsilon in crate::detector::adaptive_epsilons(suite) {
            let attack = gauntlet_attacks::detector::adaptive::AdaptivePgd {
                epsilon,
                ..settings
            };
            runs.push(Executable {
                planned: crate::detector::planned_run(
                    f,
                    ScoredInputs::Attack {
                        attack_label: attack.name().to_string(),
                        adaptive: true,
                    },
                    Some(crate::detector::adaptive_attack_run(&attack, epsilon)),
                ),
                attack: None,
                samples: samples.clone(),
                derived: false,
                detector: Some(DetectorTask::Adaptive {
                    detector: k,
                    attack,
                }),
            });
        }
    }
    Ok(())
}

/// What every pass over the data shares.
pub struct Pass<'a> {
    pub model: &'a dyn Model,
    pub dataset: &'a dyn Dataset,
    pub batch_size: usize,
    pub seed: u64,
    pub progress: &'a Progress,
    /// The suite's fitted guardrails: they score the clean inputs and every attack's outputs.
    pub detectors: &'a [crate::detector::Fitted],
}

/// Each fitted detector's records of a pass (outer: by detector, as in [`Pass::detectors`]).
pub type DetectorRecords = Vec<Vec<(u64, gauntlet_results::DetectorOutcome)>>;

/// The clean pass over `samples`: one record per sample, (when `keep_first_batch`) its first
/// batch with the logits it gave, for the model probes of the sanity checks, and each fitted
/// detector's scores of the clean inputs.
pub fn clean_pass(
    pass: &Pass,
    run: RunId,
    samples: Range<usize>,
    keep_first_batch: bool,
) -> Result<(Vec<SampleRecord>, Option<CleanBatch>, DetectorRecords)> {
    let device = pass.model.device();
    let mut records = Vec::with_capacity(samples.len());
    let mut kept = None;
    let mut detector_records: DetectorRecords = vec![Vec::new(); pass.detectors.len()];
    for range in batch_ranges(samples, pass.batch_size) {
        let batch = pass.dataset.batch(range.clone(), device)?;
        let labels = to_u32s(&batch.labels)?;
        let logits = pass.model.forward(&batch.inputs)?;
        check_finite_logits(&logits, range.start)?;
        let (predictions, losses) = scores(&logits, &batch.labels)?;
        if !pass.detectors.is_empty() {
            let correct: Vec<bool> = labels
                .iter()
                .zip(&predictions)
                .map(|(l, p)| l == p)
                .collect();
            let scored = crate::detector::score_batch(
                pass.detectors,
                pass.model,
                &crate::detector::ScoredBatch {
                    inputs: &batch.inputs,
                    start: range.start,
                    labels: &labels,
                    predictions: &predictions,
                    robust: &correct,
                },
                pass.batch_size,
            )
            .context("a detector cannot score the clean inputs")?;
            for (all, batch_records) in detector_records.iter_mut().zip(scored) {
                all.extend(batch_records);
            }
        }
        for (offset, ((&label, &prediction), &loss)) in
            labels.iter().zip(&predictions).zip(&losses).enumerate()
        {
            records.push(SampleRecord {
                run,
                index: (range.start + offset) as u64,
                outcome: Outcome::Clean(CleanOutcome {
                    label,
                    prediction,
                    loss,
                }),
            });
        }
        if keep_first_batch && kept.is_none() {
            kept = Some(CleanBatch {
                batch,
                logits,
                start: range.start,
            });
        }
        pass.progress.advance(1);
    }
    Ok((records, kept, detector_records))
}

/// One batch of the clean pass and the logits the model gave on it.
pub struct CleanBatch {
    pub batch: Batch,
    pub logits: Tensor,
    /// Global index of the batch's first sample.
    pub start: usize,
}

/// Each row of `logits` scaled to unit L2 norm (plus 1e-10, as AutoAttack does, so an
/// all-zero row stays zero).
fn unit_rows(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    let rows = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt() + 1e-10;
            row.into_iter().map(|v| v / norm).collect()
        })
        .collect())
}

/// The model probes of the sanity checks, on the first clean batch: one more forward pass,
/// compared with the clean pass's logits on the same batch (determinism), and, when
/// `gradients`, one cross-entropy input-gradient pass at the clean inputs (vanishing
/// gradients). Together one forward and one forward-backward pass of one batch.
pub fn model_probes(
    model: &dyn Model,
    first: &CleanBatch,
    gradients: bool,
) -> Result<(RepeatForward, Option<CleanGradients>)> {
    let start = first.start as u64;
    let again = model
        .forward(&first.batch.inputs)
        .context("the second forward pass on the first clean batch failed")?;
    let logit_distance = unit_rows(&first.logits)?
        .iter()
        .zip(unit_rows(&again)?)
        .map(|(before, after)| {
            before
                .iter()
                .zip(&after)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f32>()
                .sqrt()
        })
        .collect();
    let repeat = RepeatForward {
        start,
        logit_distance,
        prediction: to_u32s(&again.argmax(1)?)?,
    };
    if !gradients {
        return Ok((repeat, None));
    }
    let gradient = model
        .loss_and_input_gradient(&first.batch.inputs, &first.batch.labels, Loss::CrossEntropy)
        .context("the input gradients at the first clean batch cannot be computed")?
        .gradient;
    let l1 = gradient
        .to_dtype(DType::F32)?
        .flatten_from(1)?
        .abs()?
        .sum(1)?
        .to_vec1::<f32>()?;
    Ok((repeat, Some(CleanGradients { start, l1 })))
}

/// The clean outcomes of a contiguous range of samples, looked up by global index.
#[derive(Debug, Default)]
pub struct CleanByIndex {
    start: usize,
    outcomes: Vec<CleanOutcome>,
}

impl CleanByIndex {
    /// The clean outcomes of samples `start..start + outcomes.len()`.
    pub fn new(start: usize, outcomes: Vec<CleanOutcome>) -> Self {
        Self { start, outcomes }
    }

    /// The clean outcome of global sample `index`, if the clean pass covered it.
    pub fn get(&self, index: usize) -> Option<&CleanOutcome> {
        self.outcomes.get(index.checked_sub(self.start)?)
    }
}

/// What the runner keeps of one batch's adversarial inputs for the gallery.
pub struct KeptBatch {
    pub clean: Batch,
    pub adversarial: Tensor,
    /// Global index of the batch's first sample.
    pub start: usize,
    /// Predictions on the adversarial inputs, and whether the attack broke each sample
    /// (correct when clean, wrong after).
    pub predictions: Vec<u32>,
    pub broken: Vec<bool>,
}

/// One attack over `samples`: one record per sample. `clean` holds the clean outcome of every
/// sample, by global index. When `score_detectors`, each fitted detector of the pass also
/// scores the adversarial inputs.
#[allow(clippy::too_many_arguments)]
pub fn attack_pass(
    pass: &Pass,
    run: RunId,
    label: &str,
    attack: &dyn Attack,
    samples: Range<usize>,
    clean: &CleanByIndex,
    keep_first_batch: bool,
    score_detectors: bool,
) -> Result<(Vec<SampleRecord>, Option<KeptBatch>, DetectorRecords)> {
    let device = pass.model.device();
    let norm = attack.threat().norm;
    let epsilon = attack.threat().epsilon;
    let mut records = Vec::with_capacity(samples.len());
    let mut kept = None;
    let detectors: &[crate::detector::Fitted] = if score_detectors { pass.detectors } else { &[] };
    let mut detector_records: DetectorRecords = vec![Vec::new(); detectors.len()];
    for range in batch_ranges(samples, pass.batch_size) {
        let batch = pass.dataset.batch(range.clone(), device)?;
        let randomness = SampleRandomness::for_range(pass.seed, label, range.clone());
        let traced = attack
            .perturb_traced(pass.model, &batch.inputs, &batch.labels, &randomness)
            .with_context(|| {
                format!(
                    "attack `{label}` at ε = {epsilon} failed on samples {}..{}",
                    range.start, range.end
                )
            })?;
        let (adversarial, traces) = (traced.adversarial, traced.traces);
        let (predictions, losses) = evaluate(pass.model, &adversarial, &batch.labels)?;
        let norms = perturbation_norms(&adversarial, &batch.inputs, norm)?;
        let linf = match norm {
            Norm::Linf => norms.clone(),
            Norm::L2 => perturbation_norms(&adversarial, &batch.inputs, Norm::Linf)?,
        };
        let values = adversarial.flatten_from(1)?.to_vec2::<f32>()?;
        let first_record = records.len();
        for (offset, sample_values) in values.iter().enumerate() {
            let index = range.start + offset;
            let (min_value, max_value, nan) = sample_values.iter().fold(
                (f32::INFINITY, f32::NEG_INFINITY, false),
                |(lo, hi, nan), &v| (lo.min(v), hi.max(v), nan || v.is_nan()),
            );
            let clean = clean
                .get(index)
                .with_context(|| format!("sample {index} has no clean outcome"))?;
            records.push(SampleRecord {
                run,
                index: index as u64,
                outcome: Outcome::Evasion(EvasionOutcome {
                    prediction: predictions[offset],
                    robust: clean.correct() && predictions[offset] == clean.label,
                    loss: losses[offset],
                    norm: norms[offset],
                    linf: linf[offset],
                    min_value,
                    max_value,
                    nan,
                    queries: traces.get(offset).and_then(|t| t.queries),
                    broken_at: traces.get(offset).and_then(|t| t.broken_at),
                    broken_by: traces.get(offset).and_then(|t| t.broken_by),
                }),
            });
        }
        if !detectors.is_empty() {
            let labels = to_u32s(&batch.labels)?;
            let robust: Vec<bool> = records[first_record..]
                .iter()
                .map(|r| matches!(r.outcome, Outcome::Evasion(o) if o.robust))
                .collect();
            let scored = crate::detector::score_batch(
                detectors,
                pass.model,
                &crate::detector::ScoredBatch {
                    inputs: &adversarial,
                    start: range.start,
                    labels: &labels,
                    predictions: &predictions,
                    robust: &robust,
                },
                pass.batch_size,
            )
            .with_context(|| {
                format!("a detector cannot score the outputs of attack `{label}` at ε = {epsilon}")
            })?;
            for (all, batch_records) in detector_records.iter_mut().zip(scored) {
                all.extend(batch_records);
            }
        }
        if keep_first_batch && kept.is_none() {
            let broken = records[first_record..]
                .iter()
                .map(|r| {
                    let index = r.index as usize;
                    let robust = matches!(r.outcome, Outcome::Evasion(o) if o.robust);
                    clean.get(index).is_some_and(CleanOutcome::correct) && !robust
                })
                .collect();
            kept = Some(KeptBatch {
                clean: batch,
                adversarial,
                start: range.start,
                predictions,
                broken,
            });
        }
        pass.progress.advance(1);
    }
    Ok((records, kept, detector_records))
}

/// Run the whole suite: every work unit of its plan, in one process
/// ([`crate::work::run_units`]; `gauntlet run` adds the journal and `--shard` on top).
pub fn run(suite: &Suite, loaded: &Loaded, progress: &Progress) -> Result<Evaluation> {
    crate::work::run_units(suite, loaded, progress)
}

/// Whether the model probes include the input-gradient pass: the vanishing-gradient check
/// concerns gradient attacks (the suite's and the full-budget probe's); a model without input
/// gradients runs none.
pub(crate) fn gradient_probe(suite: &Suite, model: &dyn Model) -> bool {
    model.capabilities().input_gradients
        && (suite.sanity.full_budget
            || suite
                .attacks
                .iter()
                .any(|a| a.entry.needs == gauntlet_attacks::ModelAccess::InputGradients))
}

/// The whole-model sections (`[[trigger_scan]]`, `[[poisoning]]`, `[[data_scan]]`,
/// `[probing]`): scans, trainings and query streams of the model as a whole, not per-sample
/// passes, so one work unit
/// ([`crate::shard::WorkUnit::WholeModel`], the last unit of the plan).
pub(crate) fn whole_model_sections(
    suite: &Suite,
    loaded: &Loaded,
    progress: &Progress,
) -> Result<crate::backdoor::BackdoorOutput> {
    let mut output = crate::backdoor::run(&crate::backdoor::BackdoorContext {
        plan: &suite.backdoor,
        model: loaded.model.as_ref(),
        dataset: loaded.dataset.as_ref(),
        device: &loaded.device,
        seed: suite.seed,
        batch_size: suite.batch_size,
        progress,
    })?;
    if let Some(probing) = &suite.probing {
        output.probing = Some(crate::probing::run(
            probing,
            loaded.model.as_ref(),
            loaded.dataset.as_ref(),
            suite.seed,
            progress,
        )?);
    }
    Ok(output)
}

/// Whether the suite has whole-model sections.
pub(crate) fn has_whole_model_sections(suite: &Suite) -> bool {
    !suite.backdoor.is_empty() || suite.probing.is_some()
}

/// The plan of a run with these runs (`runs`: the executables' and any whole-model runs).
pub(crate) fn run_plan(suite: &Suite, loaded: &Loaded, runs: Vec<PlannedRun>) -> RunPlan {
    RunPlan {
        plan_version: PLAN_VERSION,
        gauntlet_version: env!("CARGO_PKG_VERSION").to_string(),
        suite: gauntlet_reports::SuiteInfo {
            name: suite.name.clone(),
            path: suite.path.as_ref().map(|p| p.display().to_string()),
        },
        seed: suite.seed,
        device: loaded.device_name.clone(),
        model: loaded.model_info.clone(),
        dataset: loaded.dataset_info.clone(),
        class_names: loaded.class_names.clone(),
        classes_in_dataset: loaded.classes_in_dataset,
        runs,
        gates: suite.gates.clone(),
        fail_on_sanity: suite.fail_on_sanity,
        kernel_path: kernel_path_info(loaded),
        provenance: loaded.provenance.clone(),
    }
}

/// The notice that the model did not run on the native CPU kernels, and why.
pub(crate) fn kernel_path_notice(kernel_path: &KernelPathInfo) -> Option<String> {
    kernel_path.reason.as_ref().map(|reason| {
        format!("the model ran on candle's kernels, not gauntlet's native CPU path: {reason}")
    })
}

/// Which kernels ran the model, and why not the native ones.
fn kernel_path_info(loaded: &Loaded) -> KernelPathInfo {
    match loaded.model.kernel_path() {
        gauntlet_models::KernelPath::Native => KernelPathInfo {
            path: "native".to_string(),
            reason: None,
        },
        gauntlet_models::KernelPath::Candle { reason } => KernelPathInfo {
            path: "candle".to_string(),
            reason: Some(reason),
        },
        other => KernelPathInfo {
            path: format!("{other:?}").to_lowercase(),
            reason: None,
        },
    }
}

/// The run whose adversarial examples the gallery shows: the last bounded attack of the suite
/// (usually the strongest) at its middle ε. (A minimal-norm attack's runs at each ε are not
/// executed, so there is no batch to show.)
pub(crate) fn gallery_choice(suite: &Suite, executables: &[Executable]) -> Option<usize> {
    if suite.report.examples == 0 {
        return None;
    }
    let last_label = &suite
        .attacks
        .iter()
        .rfind(|a| a.entry.budget == BudgetSemantics::Bounded)?
        .label;
    let positions: Vec<usize> = executables
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e.planned.purpose == RunPurpose::Attack
                && !e.derived
                && &e.planned.label == last_label
                && e.planned.attack.as_ref().is_some_and(|a| a.epsilon > 0.0)
        })
        .map(|(position, _)| position)
        .collect();
    positions
        .get(positions.len().saturating_sub(1) / 2)
        .copied()
}

/// Up to `wanted` examples from the kept (first) batch: broken ones first, then unbroken ones,
/// as many as fit in the report's [`gauntlet_reports::MAX_GALLERY_VALUES`] (a notice says when
/// fewer were kept for that reason).
pub(crate) fn gallery_examples(
    kept: &KeptBatch,
    clean: &CleanByIndex,
    label: &str,
    epsilon: f32,
    wanted: usize,
    notices: &mut Vec<String>,
) -> Result<Vec<AdversarialExample>> {
    let shape: Vec<usize> = kept.clean.inputs.dims()[1..].to_vec();
    let originals = kept.clean.inputs.flatten_from(1)?.to_vec2::<f32>()?;
    let adversarials = kept.adversarial.flatten_from(1)?.to_vec2::<f32>()?;
    let mut order: Vec<usize> = (0..originals.len()).collect();
    order.sort_by_key(|&offset| (!kept.broken[offset], offset));
    let wanted = wanted.min(order.len());
    let values_per_example = 2 * shape.iter().product::<usize>();
    let fitting = wanted.min(gauntlet_reports::MAX_GALLERY_VALUES / values_per_example.max(1));
    if fitting < wanted {
        notices.push(format!(
            "the gallery shows {fitting} of the {wanted} examples asked for: images of shape \
             {shape:?} are large, and a report holds at most {} pixel values",
            gauntlet_reports::MAX_GALLERY_VALUES
        ));
    }
    order
        .into_iter()
        .take(fitting)
        .map(|offset| {
            let index = kept.start + offset;
            let outcome = clean
                .get(index)
                .with_context(|| format!("sample {index} has no clean outcome"))?;
            Ok(AdversarialExample {
                index,
                attack: label.to_string(),
                epsilon: epsilon_value(epsilon),
                true_label: outcome.label as usize,
                clean_prediction: outcome.prediction as usize,
                adversarial_prediction: kept.predictions[offset] as usize,
                shape: shape.clone(),
                original: originals[offset].clone(),
                adversarial: adversarials[offset].clone(),
            })
        })
        .collect()
}
