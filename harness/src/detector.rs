//! The `[[detector]]` sections of a suite: guardrails (an input validator, output monitors)
//! validated against the registry (`gauntlet_attacks::detector::DETECTORS`), fitted on clean
//! data, and scored by the runner on the clean inputs and on every attack@ε's adversarial
//! inputs — plus, with `adaptive = true`, on the outputs of an adaptive PGD that knows the
//! detector. Orchestration only: the detectors and the adaptive attack are in
//! `gauntlet_attacks::detector`, the figures are aggregated from the records this emits
//! (`gauntlet_results::detector`).
//!
//! **Fitting data.** A detector is fitted on clean data it is not scored on: the samples of
//! `fit_dataset` (a table with the keys of `[dataset]`) when given, otherwise the suite
//! dataset's samples past `dataset.limit` (the ones the run does not evaluate). `fit_samples`
//! takes the first that many of them. A suite whose dataset leaves nothing to fit on is
//! refused, naming the keys to set.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use gauntlet_attacks::detector::adaptive::{self, AdaptivePgd, Evasion};
use gauntlet_attacks::detector::{find_detector, observe, Detector, DetectorEntry, DETECTORS};
use gauntlet_attacks::{AttackKind, BudgetSemantics, ModelAccess, Norm, SampleRandomness};
use gauntlet_datasets::{Dataset, InMemoryDataset};
use gauntlet_models::{FeatureName, Model};
use gauntlet_results::detector::{DetectorRun, ScoredInputs};
use gauntlet_results::{AttackRun, DetectorOutcome, PlannedRun, RunPurpose};
use serde::Deserialize;

use crate::suite::{DatasetSection, DatasetSources};

/// One `[[detector]]` table. Keys not listed here go to the detector's own
/// `deny_unknown_fields` parameters.
#[derive(Debug, Clone, Deserialize)]
pub struct DetectorSection {
    /// Registry name (`gauntlet list detectors`).
    pub name: String,
    /// Name in reports; defaults to `name`.
    pub label: Option<String>,
    /// Fit on the first `fit_samples` clean samples of the fitting data (default: all).
    pub fit_samples: Option<usize>,
    /// Clean training data to fit on, with the keys of `[dataset]`; default: the suite
    /// dataset's samples past `dataset.limit`.
    pub fit_dataset: Option<DatasetSection>,
    /// Also attack the model with an adaptive PGD that knows this detector, at every ε of the
    /// suite's bounded L∞ attacks.
    #[serde(default)]
    pub adaptive: bool,
    /// How the adaptive attack steps: `"pgd"` (default) or `"apgd"` (APGD-CE's schedule;
    /// against the z-score validator's accept box only).
    pub adaptive_attack: Option<String>,
    /// The adaptive attack's steps and (PGD only) step size (default 20 and 2.5·ε/steps).
    pub adaptive_steps: Option<u32>,
    pub adaptive_step_size: Option<f32>,
    #[serde(flatten)]
    pub params: toml::Table,
}

/// A validated `[[detector]]`.
pub struct PlannedDetector {
    pub label: String,
    pub entry: &'static DetectorEntry,
    pub section: DetectorSection,
    /// The fitting data's files, resolved against the suite's folder, when `fit_dataset` is
    /// given.
    pub fit_sources: Option<DatasetSources>,
    /// The adaptive attack's settings at ε = 0 (the ε is set per run), when `adaptive`.
    pub adaptive: Option<AdaptivePgd>,
}

/// The guardrail part of a suite.
#[derive(Default)]
pub struct DetectorPlan {
    pub detectors: Vec<PlannedDetector>,
}

impl DetectorPlan {
    pub fn is_empty(&self) -> bool {
        self.detectors.is_empty()
    }

    /// Check what needs no data: registry names, labels, the detectors' own parameters (a NaN
    /// threshold names `threshold`), `fit_samples`, the adaptive settings.
    pub fn validate(
        sections: &[DetectorSection],
        base: &Path,
        resolve: impl Fn(&DatasetSection, &Path) -> Result<DatasetSources>,
    ) -> Result<Self> {
        let mut plan = DetectorPlan::default();
        let mut labels = std::collections::BTreeSet::new();
        for (index, section) in sections.iter().enumerate() {
            let entry = find_detector(&section.name).with_context(|| {
                crate::suite::unknown_entry(
                    ("detector", index),
                    &section.name,
                    ("detector", "detectors"),
                    DETECTORS.iter().map(|entry| entry.name),
                )
            })?;
            let label = section
                .label
                .clone()
                .unwrap_or_else(|| section.name.clone());
            let at = format!("detector `{label}`");
            let detector = (entry.build)(&section.params).with_context(|| at.clone())?;
            if section.fit_samples == Some(0) {
                bail!("{at}: `fit_samples` must be ≥ 1, got 0");
            }
            let fit_sources = match &section.fit_dataset {
                Some(dataset) => {
                    Some(resolve(dataset, base).with_context(|| format!("{at}: `fit_dataset`"))?)
                }
                None => None,
            };
            let adaptive = if section.adaptive {
                // Whether (and how) adaptive PGD can evade the detector is known from an
                // unfitted instance.
                let evasion = Evasion::of(detector.as_ref()).with_context(|| {
                    format!(
                        "{at}: `adaptive = true`, but adaptive PGD knows no way around `{}`: it \
                         projects into the accept box of `zscore` (with `aggregation = \
                         \"max_abs\"`) and seeks confident misclassifications against \
                         `confidence` and `entropy`",
                        entry.name
                    )
                })?;
                let attack = AdaptivePgd::new(
                    0.0,
                    section.adaptive_steps.unwrap_or(20),
                    section.adaptive_step_size,
                    true,
                    evasion,
                )
                .with_context(|| at.clone())?;
                Some(match section.adaptive_attack.as_deref() {
                    None | Some("pgd") => attack,
                    Some("apgd") => attack.with_apgd().with_context(|| at.clone())?,
                    Some(other) => bail!(
                        "{at}: `adaptive_attack` must be \"pgd\" or \"apgd\", got \"{other}\""
                    ),
                })
            } else {
                if section.adaptive_steps.is_some()
                    || section.adaptive_step_size.is_some()
                    || section.adaptive_attack.is_some()
                {
                    bail!(
                        "{at}: `adaptive_attack`, `adaptive_steps` and `adaptive_step_size` need \
                         `adaptive = true`"
                    );
                }
                None
            };
            if !labels.insert(label.clone()) {
                bail!("two detectors share the label `{label}`; give one a distinct `label`");
            }
            plan.detectors.push(PlannedDetector {
                label,
                entry,
                section: section.clone(),
                fit_sources,
                adaptive,
            });
        }
        Ok(plan)
    }

    /// `gauntlet check`'s lines for the detectors.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for d in &self.detectors {
            out.push_str(&format!(
                "  detector {} ({}, looks at {}; fitted on {} of {}){}\n",
                d.label,
                d.entry.name,
                d.entry.needs,
                d.section
                    .fit_samples
                    .map_or("all clean samples".to_string(), |n| format!(
                        "the first {n} clean samples"
                    )),
                if d.section.fit_dataset.is_some() {
                    "`fit_dataset`"
                } else {
                    "the dataset past `dataset.limit`"
                },
                match &d.adaptive {
                    Some(a) => format!(", {} with {} steps", a.name(), a.steps),
                    None => String::new(),
                }
            ));
        }
        out
    }

    /// Refuse a detector that needs penultimate features from a model that exposes none.
    pub fn check_model(&self, model: &dyn Model, model_path: &str) -> Result<()> {
        for d in &self.detectors {
            if d.entry.needs.penultimate
                && model
                    .capabilities()
                    .feature(FeatureName::Penultimate)
                    .is_none()
            {
                bail!(
                    "detector `{}` needs the penultimate-layer features, but model `{model_path}` \
                     exposes none (docs/guardrails.md)",
                    d.label
                );
            }
        }
        Ok(())
    }
}

/// The clean data each detector is fitted on, loaded once per run.
pub struct FitData {
    /// Per planned detector (same order): the data and where it came from.
    pub data: Vec<(InMemoryDataset, String)>,
}

/// Load each detector's fitting data: its `fit_dataset`, or `rest` (the suite dataset's
/// samples past `dataset.limit`). The samples must have the model's input shape.
pub fn load_fit_data(
    plan: &DetectorPlan,
    rest: Option<&InMemoryDataset>,
    input_shape: &[usize],
) -> Result<FitData> {
    let mut data = Vec::new();
    for d in &plan.detectors {
        let at = format!("detector `{}`", d.label);
        let (dataset, source) = match (&d.section.fit_dataset, &d.fit_sources) {
            (Some(section), Some(sources)) => {
                let dataset = crate::load::load_dataset(section, sources)
                    .with_context(|| format!("{at}: cannot load `fit_dataset`"))?;
                let files: Vec<String> = [&sources.path, &sources.images]
                    .into_iter()
                    .flatten()
                    .map(crate::suite::Source::display)
                    .collect();
                let source = format!("`fit_dataset` ({})", files.join(", "));
                if dataset.sample_shape() != input_shape {
                    bail!(
                        "{at}: `fit_dataset` ({}) has samples of shape {:?}, but the model \
                         expects {input_shape:?}; a detector must be fitted on data of the \
                         shape it scores",
                        files.join(", "),
                        dataset.sample_shape()
                    );
                }
                (dataset, source)
            }
            _ => match rest {
                Some(rest) if !rest.is_empty() => (
                    rest.clone(),
                    "the dataset's samples past `dataset.limit`".to_string(),
                ),
                _ => bail!(
                    "{at}: nothing to fit on: give `fit_dataset` (clean training data), or set \
                     `dataset.limit` below the dataset's size so that the samples past it \
                     (which the run does not evaluate) fit the detector"
                ),
            },
        };
        let dataset = match d.section.fit_samples {
            Some(n) => dataset.limit(n),
            None => dataset,
        };
        data.push((dataset, source));
    }
    Ok(FitData { data })
}

/// A detector fitted for this run.
pub struct Fitted {
    pub label: String,
    pub detector: Box<dyn Detector>,
    pub run: DetectorRun,
    pub adaptive: Option<AdaptivePgd>,
    /// Seconds the fitting took (its forward passes included).
    pub fit_seconds: f64,
}

/// Fit every detector on its data, `batch_size` samples per model pass.
pub fn fit(
    plan: &DetectorPlan,
    fit_data: &FitData,
    model: &dyn Model,
    batch_size: usize,
) -> Result<Vec<Fitted>> {
    let mut fitted = Vec::new();
    for (d, (dataset, source)) in plan.detectors.iter().zip(&fit_data.data) {
        let started = Instant::now();
        let at = || format!("detector `{}`: fitting on {source}", d.label);
        let batch = dataset
            .batch(0..dataset.len(), model.device())
            .with_context(at)?;
        let needs = d.entry.needs;
        let observations = observe(
            model,
            &batch.inputs,
            needs.fit_labels.then_some(&batch.labels),
            needs,
            batch_size,
        )
        .with_context(at)?;
        let mut detector = (d.entry.build)(&d.section.params)
            .with_context(|| format!("detector `{}`", d.label))?;
        detector.fit(&observations).with_context(at)?;
        fitted.push(Fitted {
            label: d.label.clone(),
            run: DetectorRun {
                detector: d.entry.name.to_string(),
                needs: needs.to_string(),
                fit_samples: dataset.len(),
                fit_source: source.clone(),
                rule_threshold: detector.rule_threshold(),
                params: table_json(&d.section.params),
                scored: ScoredInputs::Clean,
            },
            detector,
            adaptive: d.adaptive,
            fit_seconds: started.elapsed().as_secs_f64(),
        });
    }
    Ok(fitted)
}

fn table_json(table: &toml::Table) -> serde_json::Map<String, serde_json::Value> {
    serde_json::to_value(table)
        .ok()
        .and_then(|value| value.as_object().cloned())
        .unwrap_or_default()
}

/// What the runner knows about one scored batch.
pub struct ScoredBatch<'a> {
    /// The inputs scored (clean or adversarial), shape `(n, …)`.
    pub inputs: &'a Tensor,
    /// Global index of the first sample.
    pub start: usize,
    pub labels: &'a [u32],
    /// The model's predictions on `inputs`.
    pub predictions: &'a [u32],
    /// Clean: correct. Adversarial: correct before and after.
    pub robust: &'a [bool],
}

/// Each fitted detector's records of one batch (outer: by detector).
pub fn score_batch(
    fitted: &[Fitted],
    model: &dyn Model,
    batch: &ScoredBatch,
    batch_size: usize,
) -> Result<Vec<Vec<(u64, DetectorOutcome)>>> {
    let mut out = Vec::with_capacity(fitted.len());
    for f in fitted {
        let needs = f.detector.needs();
        let observations = observe(model, batch.inputs, None, needs, batch_size)
            .with_context(|| format!("detector `{}`", f.label))?;
        let scores = f
            .detector
            .score(&observations)
            .with_context(|| format!("detector `{}`", f.label))?;
        let rule = f.detector.rule_threshold();
        out.push(
            scores
                .into_iter()
                .enumerate()
                .map(|(k, score)| {
                    (
                        (batch.start + k) as u64,
                        DetectorOutcome {
                            label: batch.labels[k],
                            prediction: batch.predictions[k],
                            robust: batch.robust[k],
                            score,
                            rule_rejected: rule.map(|t| score > t),
                        },
                    )
                })
                .collect(),
        );
    }
    Ok(out)
}

/// The plan entry of a detector's scores of `scored` (the attack run's `attack`, for an
/// attack).
pub fn planned_run(fitted: &Fitted, scored: ScoredInputs, attack: Option<AttackRun>) -> PlannedRun {
    PlannedRun {
        label: fitted.label.clone(),
        purpose: RunPurpose::Detector,
        attack,
        backdoor: None,
        detector: Some(DetectorRun {
            scored,
            ..fitted.run.clone()
        }),
    }
}

/// The adaptive attack's plan entry at `epsilon`.
pub fn adaptive_attack_run(attack: &AdaptivePgd, epsilon: f32) -> AttackRun {
    let mut params = serde_json::Map::new();
    params.insert("steps".into(), attack.steps.into());
    if attack.optimizer == adaptive::Optimizer::Pgd {
        params.insert("step_size".into(), f64::from(attack.step()).into());
    }
    params.insert("random_start".into(), attack.random_start.into());
    AttackRun {
        name: attack.name().to_string(),
        kind: AttackKind::Iterative,
        needs: ModelAccess::InputGradients,
        budget: BudgetSemantics::Bounded,
        norm: Norm::Linf,
        epsilon,
        objective: attack.evasion.objective().to_string(),
        params,
    }
}

/// One adaptive unit: the attack at its ε against `fitted`'s detector on `samples` of the
/// pass's dataset, and the detector's records of its outputs. `clean_correct` says whether a
/// sample (global index) is classified correctly when clean.
pub fn adaptive_pass(
    fitted: &Fitted,
    attack: &AdaptivePgd,
    pass: &crate::runner::Pass,
    samples: std::ops::Range<usize>,
    clean_correct: &dyn Fn(usize) -> Option<bool>,
) -> Result<Vec<(u64, DetectorOutcome)>> {
    let model = pass.model;
    let mut records = Vec::new();
    // Keyed like every run's randomness, by (seed, label, sample): the same sample gets the
    // same random start in every shard and at every batch size.
    let purpose = format!("{}/{}", attack.name(), fitted.label);
    for range in crate::runner::batch_ranges(samples, pass.batch_size) {
        let batch = pass.dataset.batch(range.clone(), model.device())?;
        let randomness = SampleRandomness::for_range(pass.seed, &purpose, range.clone());
        let adversarial = attack
            .perturb(
                model,
                fitted.detector.as_ref(),
                &batch.inputs,
                &batch.labels,
                &randomness,
            )
            .with_context(|| {
                format!(
                    "adaptive PGD against detector `{}` at ε = {} failed on samples {}..{}",
                    fitted.label, attack.epsilon, range.start, range.end
                )
            })?;
        let labels = batch
            .labels
            .to_dtype(candle_core::DType::U32)?
            .to_vec1::<u32>()?;
        let predictions = model
            .forward(&adversarial)?
            .argmax(1)?
            .to_dtype(candle_core::DType::U32)?
            .to_vec1::<u32>()?;
        let robust: Vec<bool> = (0..labels.len())
            .map(|k| clean_correct(range.start + k).unwrap_or(false) && predictions[k] == labels[k])
            .collect();
        let scored = score_batch(
            std::slice::from_ref(fitted),
            model,
            &ScoredBatch {
                inputs: &adversarial,
                start: range.start,
                labels: &labels,
                predictions: &predictions,
                robust: &robust,
            },
            pass.batch_size,
        )?;
        records.extend(scored.into_iter().flatten());
        pass.progress.advance(1);
    }
    Ok(records)
}

/// The distinct ε > 0 of the suite's bounded L∞ attacks, ascending: where adaptive PGD runs.
pub fn adaptive_epsilons(suite: &crate::suite::Suite) -> Vec<f32> {
    let mut epsilons: Vec<f32> = suite
        .attacks
        .iter()
        .filter(|a| {
            a.entry.budget == BudgetSemantics::Bounded
                && a.attack.threat().norm == Norm::Linf
                && a.epsilon > 0.0
        })
        .map(|a| a.epsilon)
        .collect();
    epsilons.sort_by(f32::total_cmp);
    epsilons.dedup();
    epsilons
}

/// The terminal summary's guardrail lines: per detector and attack@ε, AUC and detection at 5%.
pub fn summary_lines(report: &gauntlet_reports::RunReport) -> Vec<String> {
    let mut lines = Vec::new();
    for d in &report.detectors {
        for row in &d.rows {
            let at5 = row
                .at_fpr
                .iter()
                .find(|p| (p.target_fpr - 0.05).abs() < 1e-12);
            lines.push(format!(
                "{} vs {}{}@{}: AUC {}, detected at 5% FPR {}, robust with guardrail {}",
                d.label,
                row.attack,
                if row.adaptive { " (adaptive)" } else { "" },
                row.epsilon,
                row.auc.map_or("n/a".to_string(), |a| format!("{a:.3}")),
                at5.and_then(|p| p.detection.as_ref())
                    .map_or("n/a".to_string(), |p| format!("{:.1}%", p.value * 100.0)),
                at5.map_or("n/a".to_string(), |p| format!(
                    "{:.1}%",
                    p.robust_with_guardrail.value * 100.0
                )),
            ));
        }
        lines.extend(d.large_gaps());
    }
    lines
}
