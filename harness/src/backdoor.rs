//! The backdoor sections of a suite — `[[poisoning]]`, `[[trigger_scan]]`, `[[data_scan]]` —
//! validated against the registries, and run: poisoning sweeps with training in the loop,
//! each trained model handed to the configured scans (the closed loop), and the scans of the
//! model under test. Orchestration only: the measuring is `gauntlet_attacks`' poisoning, scan
//! and data-scan registries, and every figure is aggregated from the records this emits
//! (`gauntlet_results::backdoor`).
//!
//! **Splits.** A poisoning sweep needs a training set, a test set and (for STRIP) clean
//! images in neither. They come from the suite's dataset, interleaved because data files are
//! often ordered by class or writer: with `split_every = k` (default 6), sample `i` is a test
//! sample when `i % k == 0`, a held-out image when `i % k == k / 2`, and a training sample
//! otherwise. The scans of the model under test take the first `clean_samples` samples of the
//! dataset as clean inputs and the next `held_out_samples` as STRIP's overlays.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use gauntlet_attacks::backdoor::{predictions, ImageSet, Trigger};
use gauntlet_attacks::data_scan::{find_data_scan, DataScan, DATA_SCANS};
use gauntlet_attacks::poisoning::sweep::{sweep, SweepConfig};
use gauntlet_attacks::poisoning::{
    find_poisoning, poison, poisoned_count, DataShape, Poisoning, PoisoningEntry, POISONINGS,
};
use gauntlet_attacks::trigger_scan::{
    find_scan, ScanData, ScanDetail, ScanEntry, ScanReport, TriggerScan, SCANS,
};
use gauntlet_attacks::ModelAccess;
use gauntlet_models::{Model, ModelSpec, Network, Optimizer, TrainConfig};
use gauntlet_reports::backdoor::{
    BackdoorImages, ScannedModel, TriggerImage, TriggeredInput, MAX_BACKDOOR_IMAGE_VALUES,
};
use gauntlet_results::backdoor::{
    BackdoorOutcome, BackdoorRun, DataScanOutcome, PoisonedIndices, PoisoningOutcome, StripOutcome,
    TriggerScanOutcome,
};
use gauntlet_results::{PlannedRun, RunPurpose};
use serde::Deserialize;

use crate::progress::Progress;

/// One `[[poisoning]]` table. Keys not listed here go to the poisoning's own
/// `deny_unknown_fields` parameters.
#[derive(Debug, Clone, Deserialize)]
pub struct PoisoningSection {
    /// Registry name (`gauntlet list poisonings`).
    pub name: String,
    /// Name in reports; defaults to `name`.
    pub label: Option<String>,
    /// Poison rates, each a fraction of the training split in [0, 1].
    pub rates: Vec<f64>,
    /// One model is trained per (rate, seed).
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// A built-in architecture (`linear`, `mlp`, `small_cnn`, `resnet20`) for the dataset's
    /// shape and the model's classes.
    #[serde(default = "default_architecture")]
    pub architecture: String,
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    #[serde(default = "default_train_batch")]
    pub batch_size: usize,
    /// Adam's step size.
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    /// See the module docs: test when `i % k == 0`, held out when `i % k == k / 2`.
    #[serde(default = "default_split_every")]
    pub split_every: usize,
    #[serde(flatten)]
    pub params: toml::Table,
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}
fn default_architecture() -> String {
    "small_cnn".to_string()
}
fn default_epochs() -> usize {
    20
}
fn default_train_batch() -> usize {
    32
}
fn default_learning_rate() -> f64 {
    0.005
}
fn default_split_every() -> usize {
    6
}

/// One `[[trigger_scan]]` table. Keys not listed here go to the scan's own parameters.
#[derive(Debug, Clone, Deserialize)]
pub struct TriggerScanSection {
    /// Registry name (`gauntlet list scans`).
    pub name: String,
    pub label: Option<String>,
    /// Clean inputs the scan works on.
    #[serde(default = "default_clean_samples")]
    pub clean_samples: usize,
    /// Further clean images (STRIP's overlays).
    #[serde(default = "default_held_out_samples")]
    pub held_out_samples: usize,
    /// Scan the suite's model (the one `gate.max_anomaly_index` is about).
    #[serde(default = "default_true")]
    pub model_under_test: bool,
    /// Scan every model a `[[poisoning]]` sweep trains, against its planted trigger.
    #[serde(default = "default_true")]
    pub trained_models: bool,
    /// The trigger the model under test is suspected to carry, as a poisoning table
    /// (`{ poisoning = "badnets", size = 3, target = 0 }`): the scans then report the IoU of
    /// what they recover with it, and STRIP its detection rate.
    pub true_trigger: Option<toml::Table>,
    #[serde(flatten)]
    pub params: toml::Table,
}

fn default_clean_samples() -> usize {
    300
}
fn default_held_out_samples() -> usize {
    100
}
fn default_true() -> bool {
    true
}

/// One `[[data_scan]]` table, run on the training set of every model a sweep trains.
#[derive(Debug, Clone, Deserialize)]
pub struct DataScanSection {
    pub name: String,
    pub label: Option<String>,
    #[serde(flatten)]
    pub params: toml::Table,
}

/// A validated `[[poisoning]]`.
#[derive(Clone)]
pub struct PlannedPoisoning {
    pub label: String,
    pub entry: &'static PoisoningEntry,
    pub section: PoisoningSection,
}

/// A validated `[[trigger_scan]]`.
pub struct PlannedScan {
    pub label: String,
    pub entry: &'static ScanEntry,
    pub section: TriggerScanSection,
    pub scan: Box<dyn TriggerScan>,
}

/// A validated `[[data_scan]]`.
pub struct PlannedDataScan {
    pub label: String,
    pub name: &'static str,
    pub params: toml::Table,
    pub scan: Box<dyn DataScan>,
}

/// The backdoor part of a suite.
#[derive(Default)]
pub struct BackdoorPlan {
    pub poisonings: Vec<PlannedPoisoning>,
    pub scans: Vec<PlannedScan>,
    pub data_scans: Vec<PlannedDataScan>,
}

impl BackdoorPlan {
    pub fn is_empty(&self) -> bool {
        self.poisonings.is_empty() && self.scans.is_empty() && self.data_scans.is_empty()
    }

    /// Whether any scan looks at the model under test (then `gate.max_anomaly_index` applies).
    /// The most model passes the sections make on a dataset of `samples` samples of `shape`
    /// with `classes` classes, by part: `(what, samples, passes)` as [`crate::budget::Work`]
    /// lists them. Upper bounds (an early stop only makes a scan cheaper); the training passes
    /// of a sweep are the trained architecture's, counted like the model under test's.
    pub fn passes(
        &self,
        samples: usize,
        shape: [usize; 3],
        classes: usize,
    ) -> Vec<(String, usize, gauntlet_attacks::Passes)> {
        use gauntlet_attacks::trigger_scan::ScanWork;
        use gauntlet_attacks::Passes;
        let mut parts = Vec::new();
        for scan in self.scans.iter().filter(|s| s.section.model_under_test) {
            let clean = scan.section.clean_samples.min(samples);
            let work = ScanWork {
                clean,
                held_out: scan.section.held_out_samples.min(samples - clean),
                classes,
                shape,
                true_trigger: scan.section.true_trigger.is_some(),
            };
            parts.push((
                format!("trigger scan {} of the model under test", scan.label),
                clean,
                scan.scan.passes(&work),
            ));
        }
        for poisoning in &self.poisonings {
            // The split of `run_poisoning`: sample i is a test sample when i % k == 0, held
            // out when i % k == k / 2, a training sample otherwise.
            let k = poisoning.section.split_every.max(1);
            let count = |residue: usize| (0..samples).filter(|i| i % k == residue).count();
            let (test, held) = (count(0), count(k / 2));
            let train = samples.saturating_sub(test + held);
            let models = (poisoning.section.rates.len() * poisoning.section.seeds.len()) as u64;
            // Training (one gradient per sample per epoch), then the clean and the triggered
            // test predictions, then each data scan's pass over the training split.
            let per_model =
                Passes::gradients((poisoning.section.epochs as u64).saturating_mul(train as u64))
                    + Passes::forwards(2 * test as u64)
                    + Passes::forwards((train as u64).saturating_mul(self.data_scans.len() as u64));
            parts.push((
                format!(
                    "poisoning {}: {models} model{} trained and evaluated",
                    poisoning.label,
                    if models == 1 { "" } else { "s" }
                ),
                train,
                per_model.times(models),
            ));
            for scan in self.scans.iter().filter(|s| s.section.trained_models) {
                let work = ScanWork {
                    clean: scan.section.clean_samples.min(test),
                    held_out: scan.section.held_out_samples.min(held),
                    classes,
                    shape,
                    true_trigger: true,
                };
                parts.push((
                    format!(
                        "trigger scan {} of each model poisoning {} trains",
                        scan.label, poisoning.label
                    ),
                    work.clean,
                    scan.scan.passes(&work).times(models),
                ));
            }
        }
        parts
    }

    pub fn scans_model_under_test(&self) -> bool {
        self.scans.iter().any(|s| s.section.model_under_test)
    }

    /// Check what needs no data: registry names, labels, rates, seeds, training settings, the
    /// scans' own parameters, and that the model gives each scan the access it needs.
    pub fn validate(
        poisonings: &[PoisoningSection],
        scans: &[TriggerScanSection],
        data_scans: &[DataScanSection],
        provided: ModelAccess,
    ) -> Result<Self> {
        let mut plan = BackdoorPlan::default();
        let mut labels = std::collections::BTreeSet::new();
        for (index, section) in poisonings.iter().enumerate() {
            let entry = find_poisoning(&section.name).with_context(|| {
                crate::suite::unknown_entry(
                    ("poisoning", index),
                    &section.name,
                    ("poisoning", "poisonings"),
                    POISONINGS.iter().map(|entry| entry.name),
                )
            })?;
            let label = section
                .label
                .clone()
                .unwrap_or_else(|| section.name.clone());
            let at = format!("poisoning `{label}`");
            if section.rates.is_empty() {
                bail!("{at}: `rates` is empty");
            }
            for &rate in &section.rates {
                poisoned_count(rate, 1).map_err(|_| {
                    anyhow::anyhow!(
                        "{at}: `rates`: {rate} is not a poison rate; a rate is a fraction of the \
                         training set in [0, 1]"
                    )
                })?;
            }
            if section.seeds.is_empty() {
                bail!("{at}: `seeds` is empty; give at least one seed");
            }
            if section.epochs == 0 {
                bail!("{at}: `epochs` must be ≥ 1, got 0");
            }
            if section.batch_size == 0 {
                bail!("{at}: `batch_size` must be ≥ 1, got 0");
            }
            if !(section.learning_rate.is_finite() && section.learning_rate > 0.0) {
                bail!(
                    "{at}: `learning_rate` must be a positive number, got {}",
                    section.learning_rate
                );
            }
            if section.split_every < 3 {
                bail!(
                    "{at}: `split_every` must be ≥ 3 (one test, one held-out, at least one \
                     training sample per group), got {}",
                    section.split_every
                );
            }
            if !labels.insert(format!("poisoning {label}")) {
                bail!("two poisonings share the label `{label}`; give one a distinct `label`");
            }
            plan.poisonings.push(PlannedPoisoning {
                label,
                entry,
                section: section.clone(),
            });
        }
        for (index, section) in scans.iter().enumerate() {
            let entry = find_scan(&section.name).with_context(|| {
                crate::suite::unknown_entry(
                    ("trigger_scan", index),
                    &section.name,
                    ("scan", "scans"),
                    SCANS.iter().map(|entry| entry.name),
                )
            })?;
            let label = section
                .label
                .clone()
                .unwrap_or_else(|| section.name.clone());
            let at = format!("trigger_scan `{label}`");
            if section.model_under_test && entry.needs < provided {
                bail!(
                    "{at} needs {} from the model, but this model provides only {provided}; \
                     set `model_under_test = false` to scan only the models a poisoning trains",
                    entry.needs
                );
            }
            if section.clean_samples == 0 {
                bail!("{at}: `clean_samples` must be ≥ 1, got 0");
            }
            let scan = (entry.build)(&section.params).with_context(|| at.clone())?;
            if !labels.insert(format!("scan {label}")) {
                bail!("two trigger scans share the label `{label}`; give one a distinct `label`");
            }
            plan.scans.push(PlannedScan {
                label,
                entry,
                section: section.clone(),
                scan,
            });
        }
        for (index, section) in data_scans.iter().enumerate() {
            let entry = find_data_scan(&section.name).with_context(|| {
                crate::suite::unknown_entry(
                    ("data_scan", index),
                    &section.name,
                    ("data scan", "data scans"),
                    DATA_SCANS.iter().map(|entry| entry.name),
                )
            })?;
            let label = section
                .label
                .clone()
                .unwrap_or_else(|| section.name.clone());
            let scan =
                (entry.build)(&section.params).with_context(|| format!("data_scan `{label}`"))?;
            if !labels.insert(format!("data {label}")) {
                bail!("two data scans share the label `{label}`; give one a distinct `label`");
            }
            plan.data_scans.push(PlannedDataScan {
                label,
                name: entry.name,
                params: section.params.clone(),
                scan,
            });
        }
        if !plan.data_scans.is_empty() && plan.poisonings.is_empty() {
            bail!(
                "`[[data_scan]]` runs on the training set of a model a `[[poisoning]]` sweep \
                 trains, and this suite has no `[[poisoning]]`"
            );
        }
        Ok(plan)
    }

    /// Check what depends on the data's shape (image `[C, H, W]`, classes): every poisoning
    /// and true trigger is built for it, so a trigger larger than the image or a target class
    /// that does not exist is refused here, naming the key, before anything runs.
    pub fn check_shape(&self, input_shape: &[usize], num_classes: usize) -> Result<DataShape> {
        let image: [usize; 3] = match input_shape {
            &[c, h, w] => [c, h, w],
            _ if self.is_empty() => [0, 0, 0],
            other => bail!(
                "the backdoor sections need image data `[C, H, W]`, but the model's input shape \
                 is {other:?}"
            ),
        };
        let shape = DataShape { image, num_classes };
        for poisoning in &self.poisonings {
            self::build_poisoning(poisoning, shape)?;
        }
        for scan in &self.scans {
            true_trigger(scan, shape)?;
        }
        Ok(shape)
    }

    /// `gauntlet check`'s lines for the backdoor sections.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for p in &self.poisonings {
            out.push_str(&format!(
                "  poisoning {} ({}, rates {:?} × seeds {:?}, {} for {} epochs, split every {})\n",
                p.label,
                p.entry.name,
                p.section.rates,
                p.section.seeds,
                p.section.architecture,
                p.section.epochs,
                p.section.split_every
            ));
        }
        for s in &self.scans {
            let mut on = Vec::new();
            if s.section.model_under_test {
                on.push("the model under test");
            }
            if s.section.trained_models && !self.poisonings.is_empty() {
                on.push("every trained model");
            }
            out.push_str(&format!(
                "  trigger scan {} ({}, needs {}) on {}\n",
                s.label,
                s.entry.name,
                s.entry.needs,
                if on.is_empty() {
                    "nothing".to_string()
                } else {
                    on.join(" and ")
                }
            ));
        }
        for d in &self.data_scans {
            out.push_str(&format!(
                "  data scan {} ({}) on every trained model's training set\n",
                d.label, d.name
            ));
        }
        out
    }
}

fn build_poisoning(poisoning: &PlannedPoisoning, shape: DataShape) -> Result<Box<dyn Poisoning>> {
    (poisoning.entry.build)(&poisoning.section.params, shape)
        .with_context(|| format!("poisoning `{}`", poisoning.label))
}

/// The true trigger a `[[trigger_scan]]` names, built through the poisoning registry.
fn true_trigger(scan: &PlannedScan, shape: DataShape) -> Result<Option<Trigger>> {
    let Some(table) = &scan.section.true_trigger else {
        return Ok(None);
    };
    let at = format!("trigger_scan `{}`: `true_trigger`", scan.label);
    let mut table = table.clone();
    let name = match table.remove("poisoning") {
        Some(toml::Value::String(name)) => name,
        Some(_) => bail!("{at}: `poisoning` must be a poisoning's name"),
        None => {
            bail!("{at}: needs `poisoning`, the poisoning whose trigger it is (e.g. `badnets`)")
        }
    };
    let entry =
        find_poisoning(&name).with_context(|| format!("{at}: unknown poisoning `{name}`"))?;
    let poisoning = (entry.build)(&table, shape).with_context(|| at.clone())?;
    let trigger = poisoning
        .trigger()
        .with_context(|| format!("{at}: `{name}` plants no trigger"))?;
    Ok(Some(trigger.clone()))
}

/// One executed backdoor run: its plan entry, its records (index, outcome) and its time.
pub struct BackdoorRunResult {
    pub planned: PlannedRun,
    pub records: Vec<(u64, BackdoorOutcome)>,
    pub seconds: f64,
}

/// Everything the backdoor sections produced.
#[derive(Default)]
pub struct BackdoorOutput {
    pub runs: Vec<BackdoorRunResult>,
    pub images: BackdoorImages,
    pub poisoned_indices: Vec<PoisonedIndices>,
    pub notices: Vec<String>,
    /// The `[probing]` simulation, which runs in the same whole-model unit.
    pub probing: Option<gauntlet_reports::probing::ProbingReport>,
}

/// What the backdoor runs share.
pub struct BackdoorContext<'a> {
    pub plan: &'a BackdoorPlan,
    pub model: &'a dyn Model,
    pub dataset: &'a dyn gauntlet_datasets::Dataset,
    pub device: &'a Device,
    pub seed: u64,
    pub batch_size: usize,
    pub progress: &'a Progress,
}

/// Run every backdoor section: the scans of the model under test, then each poisoning sweep
/// with its trained models handed to the scans and data scans.
pub fn run(context: &BackdoorContext) -> Result<BackdoorOutput> {
    let mut output = BackdoorOutput::default();
    if context.plan.is_empty() {
        return Ok(output);
    }
    let num_classes = context.model.num_classes();
    let batch = context
        .dataset
        .batch(0..context.dataset.len(), &Device::Cpu)
        .context("cannot read the dataset for the backdoor sections")?;
    let all = ImageSet::from_tensors(&batch.inputs, &batch.labels, num_classes).context(
        "the backdoor sections need images `[C, H, W]` with labels below the model's classes",
    )?;
    let shape = context
        .plan
        .check_shape(context.model.input_shape(), num_classes)?;

    // The model under test.
    for scan in context
        .plan
        .scans
        .iter()
        .filter(|s| s.section.model_under_test)
    {
        let clean_count = scan.section.clean_samples.min(all.len());
        let held_end = (clean_count + scan.section.held_out_samples).min(all.len());
        let clean_indices: Vec<usize> = (0..clean_count).collect();
        let held_indices: Vec<usize> = (clean_count..held_end).collect();
        let trigger = true_trigger(scan, shape)?;
        context.progress.set_message(&format!(
            "trigger scan {} on the model under test",
            scan.label
        ));
        run_scan(
            context,
            scan,
            context.model,
            ScannedModel::UnderTest,
            &all,
            &clean_indices,
            &held_indices,
            trigger.as_ref(),
            &mut output,
        )?;
    }

    // The poisoning sweeps, closing the loop.
    for poisoning_plan in &context.plan.poisonings {
        run_poisoning(context, poisoning_plan, shape, &all, &mut output)?;
    }
    Ok(output)
}

fn table_json(table: &toml::Table) -> serde_json::Map<String, serde_json::Value> {
    serde_json::to_value(table)
        .ok()
        .and_then(|value| value.as_object().cloned())
        .unwrap_or_default()
}

/// A scan parameter's value: the suite's, else the registry's documented default.
fn scan_parameter(scan: &PlannedScan, key: &str) -> Option<f64> {
    let given = scan.section.params.get(key).and_then(|v| match v {
        toml::Value::Float(f) => Some(*f),
        toml::Value::Integer(i) => Some(*i as f64),
        _ => None,
    });
    given.or_else(|| {
        scan.entry
            .parameters
            .iter()
            .find(|doc| doc.name == key)
            .and_then(|doc| doc.default.parse().ok())
    })
}

#[allow(clippy::too_many_arguments)]
fn run_scan(
    context: &BackdoorContext,
    scan: &PlannedScan,
    model: &dyn Model,
    scanned: ScannedModel,
    all: &ImageSet,
    clean_indices: &[usize],
    held_indices: &[usize],
    trigger: Option<&Trigger>,
    output: &mut BackdoorOutput,
) -> Result<()> {
    let started = Instant::now();
    let clean = all.subset(clean_indices);
    let held_out = all.subset(held_indices);
    let data = ScanData {
        clean: &clean,
        held_out: (!held_out.is_empty()).then_some(&held_out),
        true_trigger: trigger,
    };
    let at = || {
        format!(
            "trigger_scan `{}` on the {}",
            scan.label,
            scanned.describe()
        )
    };
    let report: ScanReport = scan
        .scan
        .scan(model, &data, context.seed)
        .with_context(at)?;
    let mut records = Vec::new();
    let run = match &report.detail {
        ScanDetail::Strip(detail) => {
            let predicted = predictions(model, &clean, context.batch_size).with_context(at)?;
            for (k, &entropy) in detail.clean_entropies.iter().enumerate() {
                records.push((
                    clean_indices[k] as u64,
                    BackdoorOutcome::Strip(StripOutcome {
                        label: clean.labels()[k],
                        prediction: predicted[k],
                        entropy,
                        triggered: false,
                        flagged: entropy < detail.threshold,
                    }),
                ));
            }
            if let (Some(trigger), false) = (trigger, detail.triggered_entropies.is_empty()) {
                let stamped = trigger.stamp_all(&clean).with_context(at)?;
                let predicted =
                    predictions(model, &stamped, context.batch_size).with_context(at)?;
                for (k, &entropy) in detail.triggered_entropies.iter().enumerate() {
                    records.push((
                        clean_indices[k] as u64,
                        BackdoorOutcome::Strip(StripOutcome {
                            label: clean.labels()[k],
                            prediction: predicted[k],
                            entropy,
                            triggered: true,
                            flagged: entropy < detail.threshold,
                        }),
                    ));
                }
            }
            BackdoorRun::Strip {
                scan: scan.entry.name.to_string(),
                model: scanned.clone(),
                false_rejection_rate: scan_parameter(scan, "false_rejection_rate").unwrap_or(0.01),
                params: table_json(&scan.section.params),
            }
        }
        _ => {
            for class in &report.classes {
                records.push((
                    u64::from(class.class),
                    BackdoorOutcome::TriggerScan(TriggerScanOutcome {
                        class: class.class,
                        anomaly_index: class.anomaly_index,
                        mask_l1: class.mask_l1,
                        flip_rate: class.flip_rate,
                        mask_iou: class.mask_iou,
                        flagged: class.flagged,
                    }),
                ));
            }
            BackdoorRun::TriggerScan {
                scan: scan.entry.name.to_string(),
                model: scanned.clone(),
                anomaly_threshold: scan_parameter(scan, "anomaly_threshold").unwrap_or(2.0),
                true_trigger_known: trigger.is_some(),
                params: table_json(&scan.section.params),
            }
        }
    };
    keep_images(context, model, &scanned, &report, &clean, trigger, output)?;
    output.runs.push(BackdoorRunResult {
        planned: PlannedRun {
            label: scan.label.clone(),
            purpose: RunPurpose::Backdoor,
            attack: None,
            backdoor: Some(run),
            detector: None,
        },
        records,
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(())
}

/// Keep Neural Cleanse's recovered triggers and one clean input beside its triggered copy,
/// within [`MAX_BACKDOOR_IMAGE_VALUES`] (a notice says when some were left out).
fn keep_images(
    context: &BackdoorContext,
    model: &dyn Model,
    scanned: &ScannedModel,
    report: &ScanReport,
    clean: &ImageSet,
    trigger: Option<&Trigger>,
    output: &mut BackdoorOutput,
) -> Result<()> {
    let used = |images: &BackdoorImages| -> usize {
        images
            .triggers
            .iter()
            .map(|t| t.mask.len() + t.pattern.len())
            .chain(
                images
                    .inputs
                    .iter()
                    .map(|i| i.clean.len() + i.triggered.len()),
            )
            .sum()
    };
    let shape = clean.shape();
    if shape[0] != 1 && shape[0] != 3 {
        return Ok(());
    }
    let ScanDetail::NeuralCleanse(detail) = &report.detail else {
        return Ok(());
    };
    let mut left_out = 0;
    for class in &detail.triggers {
        let trigger = &class.trigger;
        let size = trigger.mask().len() + trigger.pattern().len();
        if used(&output.images) + size > MAX_BACKDOOR_IMAGE_VALUES {
            left_out += 1;
            continue;
        }
        output.images.triggers.push(TriggerImage {
            scan: report.scan.to_string(),
            model: scanned.clone(),
            class: class.class as usize,
            shape: shape.to_vec(),
            mask: trigger.mask().to_vec(),
            pattern: trigger.pattern().to_vec(),
        });
    }
    if left_out > 0 {
        output.notices.push(format!(
            "{left_out} recovered triggers of the {} are not shown: the report holds at most \
             {MAX_BACKDOOR_IMAGE_VALUES} backdoor image values",
            scanned.describe()
        ));
    }
    if clean.is_empty() || output.images.inputs.iter().any(|i| &i.model == scanned) {
        return Ok(());
    }
    // The true trigger when known, else the recovered trigger of the smallest mask.
    let (stamp, words) = match trigger {
        Some(trigger) => (trigger.clone(), "the true trigger".to_string()),
        None => {
            let Some(best) = detail
                .triggers
                .iter()
                .min_by(|a, b| a.trigger.mask_l1().total_cmp(&b.trigger.mask_l1()))
            else {
                return Ok(());
            };
            (
                best.trigger.clone(),
                format!("the trigger recovered for class {}", best.class),
            )
        }
    };
    let first = clean.subset(&[0]);
    let stamped = stamp.stamp_all(&first)?;
    let size = 2 * first.sample_len();
    if used(&output.images) + size > MAX_BACKDOOR_IMAGE_VALUES {
        return Ok(());
    }
    let clean_prediction = predictions(model, &first, 1)?[0];
    let triggered_prediction = predictions(model, &stamped, 1)?[0];
    let _ = context;
    output.images.inputs.push(TriggeredInput {
        model: scanned.clone(),
        trigger: words,
        shape: shape.to_vec(),
        clean: first.image(0).to_vec(),
        triggered: stamped.image(0).to_vec(),
        clean_prediction: clean_prediction as usize,
        triggered_prediction: triggered_prediction as usize,
    });
    Ok(())
}

/// Which of `test`'s samples an attacker sends, and as what: for each sample, the attack
/// input the poisoning makes of it (a one-sample [`Poisoning::attack_inputs`]), if any.
fn attack_inputs(poisoning: &dyn Poisoning, test: &ImageSet) -> Result<(Vec<usize>, ImageSet)> {
    let mut positions = Vec::new();
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for k in 0..test.len() {
        if let Some(inputs) = poisoning.attack_inputs(&test.subset(&[k]))? {
            if inputs.len() == 1 {
                positions.push(k);
                pixels.extend_from_slice(inputs.image(0));
                labels.push(inputs.labels()[0]);
            }
        }
    }
    let set = ImageSet::new(test.shape(), pixels, labels, test.num_classes())?;
    Ok((positions, set))
}

fn run_poisoning(
    context: &BackdoorContext,
    planned: &PlannedPoisoning,
    shape: DataShape,
    all: &ImageSet,
    output: &mut BackdoorOutput,
) -> Result<()> {
    let section = &planned.section;
    let at = || format!("poisoning `{}`", planned.label);
    let poisoning = build_poisoning(planned, shape)?;
    let k = section.split_every;
    let split = |keep: &dyn Fn(usize) -> bool| -> Vec<usize> {
        (0..all.len()).filter(|&i| keep(i % k)).collect()
    };
    let test_indices = split(&|r| r == 0);
    let held_indices = split(&|r| r == k / 2);
    let train_indices = split(&|r| r != 0 && r != k / 2);
    if train_indices.is_empty() || test_indices.is_empty() {
        bail!(
            "{}: the dataset's {} samples leave no training or no test sample at \
             `split_every = {k}`",
            at(),
            all.len()
        );
    }
    let train = all.subset(&train_indices);
    let test = all.subset(&test_indices);
    let counts = train.class_counts();
    if let Some(class) = poisoning.target() {
        if counts.get(class as usize).copied().unwrap_or(0) == 0 {
            bail!(
                "{}: invalid parameter `target`: class {class} has no samples in the training \
                 split",
                at()
            );
        }
    }
    let spec = ModelSpec::from_toml_str(&format!(
        "architecture = \"{}\"\ninput_shape = {:?}\nnum_classes = {}",
        section.architecture, shape.image, shape.num_classes
    ))
    .with_context(|| format!("{}: `architecture` = `{}`", at(), section.architecture))?;
    let config = SweepConfig {
        spec,
        train: TrainConfig {
            epochs: section.epochs,
            batch_size: section.batch_size,
            optimizer: Optimizer::Adam {
                learning_rate: section.learning_rate,
                weight_decay: 0.0,
            },
            seed: 0,
        },
        rates: section.rates.clone(),
        seeds: section.seeds.clone(),
        z: 1.96,
    };
    let (attack_positions, attack_set) =
        attack_inputs(poisoning.as_ref(), &test).with_context(at)?;
    let params = table_json(&section.params);
    let scans: Vec<&PlannedScan> = context
        .plan
        .scans
        .iter()
        .filter(|s| s.section.trained_models)
        .collect();
    let mut failure: Option<anyhow::Error> = None;
    let mut point_started = Instant::now();
    context
        .progress
        .set_message(&format!("poisoning {}: training", planned.label));
    let mut on_point = |point: &gauntlet_attacks::poisoning::sweep::SweepPoint,
                        network: Network| {
        if failure.is_some() {
            return;
        }
        let result = (|| -> Result<()> {
            let train_seconds = point_started.elapsed().as_secs_f64();
            let clean_predicted = predictions(&network, &test, context.batch_size.max(256))?;
            let attack_predicted = predictions(&network, &attack_set, context.batch_size.max(256))?;
            let mut attack_of: Vec<Option<u32>> = vec![None; test.len()];
            for (position, &k) in attack_positions.iter().enumerate() {
                attack_of[k] = Some(attack_predicted[position]);
            }
            let target = poisoning.target();
            let records = (0..test.len())
                .map(|k| {
                    let attack_prediction = attack_of[k].filter(|_| target.is_some());
                    (
                        test_indices[k] as u64,
                        BackdoorOutcome::Poisoning(PoisoningOutcome {
                            label: test.labels()[k],
                            prediction: clean_predicted[k],
                            attack_prediction,
                            attack_success: attack_prediction.map(|p| Some(p) == target),
                        }),
                    )
                })
                .collect();
            let global_poisoned: Vec<u64> = point
                .poisoned
                .iter()
                .map(|&i| train_indices[i] as u64)
                .collect();
            output.poisoned_indices.push(PoisonedIndices {
                label: planned.label.clone(),
                poisoning: planned.entry.name.to_string(),
                rate: point.rate,
                seed: point.seed,
                indices: global_poisoned.clone(),
            });
            output.runs.push(BackdoorRunResult {
                planned: PlannedRun {
                    label: planned.label.clone(),
                    purpose: RunPurpose::Backdoor,
                    attack: None,
                    backdoor: Some(BackdoorRun::Poisoning {
                        poisoning: planned.entry.name.to_string(),
                        rate: point.rate,
                        seed: point.seed,
                        target,
                        training_samples: train.len(),
                        poisoned: point.poisoned.len(),
                        params: params.clone(),
                    }),
                    detector: None,
                },
                records,
                seconds: train_seconds,
            });
            let scanned = ScannedModel::Trained {
                poisoning: planned.label.clone(),
                rate: point.rate,
                seed: point.seed,
            };
            // The closed loop: the trained model to every configured scan, against the
            // trigger this poisoning planted.
            let test_clean: Vec<usize> = test_indices.clone();
            for scan in &scans {
                context.progress.set_message(&format!(
                    "trigger scan {} on {}",
                    scan.label,
                    scanned.describe()
                ));
                let clean: Vec<usize> = test_clean
                    .iter()
                    .copied()
                    .take(scan.section.clean_samples)
                    .collect();
                let held: Vec<usize> = held_indices
                    .iter()
                    .copied()
                    .take(scan.section.held_out_samples)
                    .collect();
                run_scan(
                    context,
                    scan,
                    &network,
                    scanned.clone(),
                    all,
                    &clean,
                    &held,
                    poisoning.trigger(),
                    output,
                )?;
            }
            if !context.plan.data_scans.is_empty() {
                let poisoned = poison(poisoning.as_ref(), &train, point.rate, point.seed)?;
                let truth: std::collections::BTreeSet<usize> =
                    poisoned.indices.iter().copied().collect();
                for data_scan in &context.plan.data_scans {
                    let started = Instant::now();
                    let report = data_scan
                        .scan
                        .scan(&network, &poisoned.data)
                        .with_context(|| format!("data_scan `{}`", data_scan.label))?;
                    let flagged: std::collections::BTreeSet<usize> =
                        report.flagged.iter().copied().collect();
                    let records = (0..poisoned.data.len())
                        .map(|i| {
                            (
                                train_indices[i] as u64,
                                BackdoorOutcome::DataScan(DataScanOutcome {
                                    label: poisoned.data.labels()[i],
                                    score: report.scores.get(i).copied().unwrap_or(f64::NAN),
                                    flagged: flagged.contains(&i),
                                    poisoned: truth.contains(&i),
                                }),
                            )
                        })
                        .collect();
                    output.runs.push(BackdoorRunResult {
                        planned: PlannedRun {
                            label: data_scan.label.clone(),
                            purpose: RunPurpose::Backdoor,
                            attack: None,
                            backdoor: Some(BackdoorRun::DataScan {
                                scan: data_scan.name.to_string(),
                                poisoning: planned.label.clone(),
                                rate: point.rate,
                                seed: point.seed,
                            }),
                            detector: None,
                        },
                        records,
                        seconds: started.elapsed().as_secs_f64(),
                    });
                    let _ = &data_scan.params;
                }
            }
            Ok(())
        })();
        if let Err(error) = result {
            failure = Some(error);
        }
        context
            .progress
            .set_message(&format!("poisoning {}: training", planned.label));
        point_started = Instant::now();
    };
    sweep(
        poisoning.as_ref(),
        &train,
        &test,
        &config,
        context.device,
        &mut on_point,
    )
    .with_context(at)?;
    if let Some(error) = failure {
        return Err(error.context(at()));
    }
    Ok(())
}

/// The terminal summary's backdoor lines: flagged classes per scan, STRIP's rates, each
/// sweep's curve and the data scans' precision and recall.
pub fn summary_lines(report: &gauntlet_reports::backdoor::BackdoorReport) -> Vec<String> {
    let pct = |v: f64| format!("{:.1}%", v * 100.0);
    let mut lines = Vec::new();
    for scan in &report.scans {
        let flagged = if scan.flagged.is_empty() {
            "nothing flagged".to_string()
        } else {
            let classes: Vec<String> = scan
                .classes
                .iter()
                .filter(|c| c.flagged)
                .map(|c| match c.anomaly_index {
                    Some(index) if index < f64::MAX => {
                        format!("class {} (index {index:.2})", c.class)
                    }
                    _ => format!("class {}", c.class),
                })
                .collect();
            format!("FLAGGED {}", classes.join(", "))
        };
        lines.push(format!(
            "{} on {}: {flagged}",
            scan.label,
            scan.model.describe()
        ));
    }
    for strip in &report.strip {
        lines.push(format!(
            "{} on {}: false rejection {}{}",
            strip.label,
            strip.model.describe(),
            pct(strip.false_rejection.value),
            strip
                .detection
                .map_or(String::new(), |d| format!(", detection {}", pct(d.value)))
        ));
    }
    for poisoning in &report.poisonings {
        let rows: Vec<String> = poisoning
            .rows
            .iter()
            .map(|row| {
                format!(
                    "rate {}: clean {}{}",
                    row.rate,
                    pct(row.clean_accuracy.value),
                    row.attack_success
                        .map_or(String::new(), |a| format!(", ASR {}", pct(a.value)))
                )
            })
            .collect();
        lines.push(format!(
            "poisoning {}: {}",
            poisoning.label,
            rows.join("; ")
        ));
        lines.push(match poisoning.smallest_rate_reaching_90 {
            Some(rate) => format!("  smallest rate reaching 90% ASR: {rate}"),
            None => "  no rate reaches 90% ASR".to_string(),
        });
    }
    for scan in &report.data_scans {
        lines.push(format!(
            "{} on {} at rate {}, seed {}: {} flagged, precision {}, recall {}",
            scan.label,
            scan.poisoning,
            scan.rate,
            scan.seed,
            scan.flagged,
            scan.precision.map_or("n/a".to_string(), pct),
            scan.recall.map_or("n/a".to_string(), pct)
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sections(text: &str) -> (Vec<PoisoningSection>, Vec<TriggerScanSection>) {
        #[derive(Deserialize)]
        struct Both {
            #[serde(default)]
            poisoning: Vec<PoisoningSection>,
            #[serde(default)]
            trigger_scan: Vec<TriggerScanSection>,
        }
        let both: Both = toml::from_str(text).unwrap();
        (both.poisoning, both.trigger_scan)
    }

    #[test]
    fn a_scan_needing_more_than_the_model_provides_is_refused_unless_it_skips_that_model() {
        let (_, scans) = sections("[[trigger_scan]]\nname = \"neural_cleanse\"\n");
        let error = BackdoorPlan::validate(&[], &scans, &[], ModelAccess::Logits)
            .err()
            .unwrap();
        let message = format!("{error:#}");
        assert!(
            message.contains("needs input gradients") && message.contains("provides only logits"),
            "{message}"
        );
        // STRIP needs logits only.
        let (_, strip) = sections("[[trigger_scan]]\nname = \"strip\"\n");
        assert!(BackdoorPlan::validate(&[], &strip, &[], ModelAccess::Logits).is_ok());
        let (_, trained_only) =
            sections("[[trigger_scan]]\nname = \"neural_cleanse\"\nmodel_under_test = false\n");
        assert!(BackdoorPlan::validate(&[], &trained_only, &[], ModelAccess::Logits).is_ok());
    }

    #[test]
    fn shape_dependent_parameters_name_their_key() {
        let (poisonings, _) =
            sections("[[poisoning]]\nname = \"blend\"\nrates = [0.1]\ntarget = 4\n");
        let plan =
            BackdoorPlan::validate(&poisonings, &[], &[], ModelAccess::InputGradients).unwrap();
        assert!(plan.check_shape(&[1, 8, 8], 10).is_ok());
        let message = format!("{:#}", plan.check_shape(&[1, 8, 8], 3).err().unwrap());
        assert!(message.contains("`target`"), "{message}");
        let message = format!("{:#}", plan.check_shape(&[64], 10).err().unwrap());
        assert!(message.contains("[C, H, W]"), "{message}");
        for (text, key) in [
            ("rates = []", "`rates`"),
            ("rates = [-0.1]", "`rates`"),
            ("rates = [0.1]\nseeds = []", "`seeds`"),
            ("rates = [0.1]\nsplit_every = 2", "`split_every`"),
            ("rates = [0.1]\nepochs = 0", "`epochs`"),
        ] {
            let (poisonings, _) = sections(&format!("[[poisoning]]\nname = \"badnets\"\n{text}\n"));
            let error = BackdoorPlan::validate(&poisonings, &[], &[], ModelAccess::InputGradients)
                .err()
                .unwrap();
            assert!(format!("{error:#}").contains(key), "{text}: {error:#}");
        }
    }
}
