//! Backdoor records and their aggregation: trigger scans, STRIP, poisoning sweeps and
//! data-level detectors, as typed per-sample records ([`BackdoorOutcome`]) of planned runs
//! ([`BackdoorRun`]), and the backdoor part of `results.json` as a pure function of them.
//!
//! What a record's `index` means depends on its kind:
//!
//! | kind | one record per | `index` |
//! |---|---|---|
//! | `trigger_scan` | (scan run, class) | the class |
//! | `strip` | (scan run, input, clean or triggered) | the input's global dataset index |
//! | `poisoning` | (rate, seed, test sample) | the test sample's global dataset index |
//! | `data_scan` | (detector, rate, seed, training sample) | the sample's global dataset index |

use std::collections::BTreeMap;

use gauntlet_reports::backdoor::{
    BackdoorReport, DataScanResult, PoisonPoint, PoisonRateRow, PoisoningResult, ScanClass,
    ScanResult, ScannedModel, StripResult,
};
use serde::{Deserialize, Serialize};

use crate::metrics::proportion;
use crate::plan::{RunMeasurements, RunPlan};
use crate::records::{Outcome, SampleRecord};

/// The ASR level whose smallest reaching rate the report names.
pub const ASR_LEVEL: f64 = 0.9;

/// One backdoor measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BackdoorOutcome {
    TriggerScan(TriggerScanOutcome),
    Strip(StripOutcome),
    Poisoning(PoisoningOutcome),
    DataScan(DataScanOutcome),
}

impl BackdoorOutcome {
    /// The per-sample file's `kind`.
    pub fn kind(&self) -> crate::RecordKind {
        match self {
            BackdoorOutcome::TriggerScan(_) => crate::RecordKind::TriggerScan,
            BackdoorOutcome::Strip(_) => crate::RecordKind::Strip,
            BackdoorOutcome::Poisoning(_) => crate::RecordKind::Poisoning,
            BackdoorOutcome::DataScan(_) => crate::RecordKind::DataScan,
        }
    }

    /// The class the record's prediction column holds: the scanned class, the prediction on
    /// the STRIP input, the clean prediction on a test sample, the training label.
    pub fn prediction(&self) -> u32 {
        match self {
            BackdoorOutcome::TriggerScan(scan) => scan.class,
            BackdoorOutcome::Strip(strip) => strip.prediction,
            BackdoorOutcome::Poisoning(poisoning) => poisoning.prediction,
            BackdoorOutcome::DataScan(data) => data.label,
        }
    }
}

/// A model-level scan's figures for one class (`index` = the class).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TriggerScanOutcome {
    pub class: u32,
    /// MAD anomaly index of the class's statistic; +∞ when the MAD is 0 and the class is off
    /// the median.
    pub anomaly_index: Option<f64>,
    pub mask_l1: Option<f64>,
    pub flip_rate: Option<f64>,
    /// IoU of the recovered mask with the true trigger's, when the suite gives it.
    pub mask_iou: Option<f64>,
    pub flagged: bool,
}

/// STRIP on one input, clean or with the trigger stamped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StripOutcome {
    pub label: u32,
    /// The model's prediction on the input as scored (clean, or triggered).
    pub prediction: u32,
    /// Mean Shannon entropy (bits) of the softmax over the superimposed copies.
    pub entropy: f64,
    pub triggered: bool,
    /// Entropy strictly below the threshold: judged triggered.
    pub flagged: bool,
}

/// One test sample under one model of a poisoning sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoisoningOutcome {
    pub label: u32,
    /// Prediction on the clean test sample.
    pub prediction: u32,
    /// Prediction on the sample as an attacker sends it (trigger stamped; for a class-targeted
    /// flip the clean sample of the source class); `None` when the sample is not an attack
    /// input (a sample of the target class, or a poisoning without a target).
    pub attack_prediction: Option<u32>,
    /// `attack_prediction` is the target.
    pub attack_success: Option<bool>,
}

impl PoisoningOutcome {
    pub fn clean_correct(&self) -> bool {
        self.prediction == self.label
    }
}

/// One training sample under a data-level detector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DataScanOutcome {
    /// The label the model was trained on (the poisoned one for a poisoned sample).
    pub label: u32,
    /// The detector's outlier score (higher = more suspicious).
    pub score: f64,
    pub flagged: bool,
    /// Ground truth: the sample was poisoned.
    pub poisoned: bool,
}

/// What a backdoor run is, in the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BackdoorRun {
    /// A model-level scan (one record per class).
    TriggerScan {
        scan: String,
        model: ScannedModel,
        anomaly_threshold: f64,
        true_trigger_known: bool,
        params: serde_json::Map<String, serde_json::Value>,
    },
    /// STRIP (one record per input and variant).
    Strip {
        scan: String,
        model: ScannedModel,
        false_rejection_rate: f64,
        params: serde_json::Map<String, serde_json::Value>,
    },
    /// One model of a poisoning sweep (one record per test sample).
    Poisoning {
        poisoning: String,
        rate: f64,
        seed: u64,
        target: Option<u32>,
        training_samples: usize,
        poisoned: usize,
        params: serde_json::Map<String, serde_json::Value>,
    },
    /// A data-level detector on one trained model's training set (one record per sample).
    DataScan {
        scan: String,
        poisoning: String,
        rate: f64,
        seed: u64,
    },
}

impl BackdoorRun {
    /// The record kind this run emits.
    pub fn record_kind(&self) -> crate::RecordKind {
        match self {
            BackdoorRun::TriggerScan { .. } => crate::RecordKind::TriggerScan,
            BackdoorRun::Strip { .. } => crate::RecordKind::Strip,
            BackdoorRun::Poisoning { .. } => crate::RecordKind::Poisoning,
            BackdoorRun::DataScan { .. } => crate::RecordKind::DataScan,
        }
    }
}

/// JSON has no infinity: an anomaly index of +∞ (MAD = 0) is reported as `f64::MAX`.
fn finite_index(value: f64) -> f64 {
    if value.is_finite() {
        value
    } else {
        f64::MAX
    }
}

/// The backdoor part of `results.json`, or `None` when the plan has no backdoor run.
pub fn aggregate(
    plan: &RunPlan,
    measurements: &RunMeasurements,
    records: &[SampleRecord],
) -> Option<BackdoorReport> {
    let mut by_run: BTreeMap<usize, Vec<(u64, BackdoorOutcome)>> = BTreeMap::new();
    for record in records {
        if let Outcome::Backdoor(outcome) = record.outcome {
            by_run
                .entry(record.run.position())
                .or_default()
                .push((record.index, outcome));
        }
    }
    for rows in by_run.values_mut() {
        rows.sort_by_key(|(index, _)| *index);
    }
    let seconds = |position: usize| {
        measurements
            .run_seconds
            .get(position)
            .copied()
            .unwrap_or(0.0)
    };
    let class_name = |class: usize| {
        plan.class_names
            .get(class)
            .cloned()
            .unwrap_or_else(|| class.to_string())
    };
    let mut report = BackdoorReport::default();
    let empty = Vec::new();
    // Poisoning points, grouped by section label in plan order.
    let mut poisonings: Vec<PoisoningResult> = Vec::new();
    for (position, run) in plan.runs.iter().enumerate() {
        let Some(backdoor) = &run.backdoor else {
            continue;
        };
        let rows = by_run.get(&position).unwrap_or(&empty);
        match backdoor {
            BackdoorRun::TriggerScan {
                scan,
                model,
                anomaly_threshold,
                true_trigger_known,
                ..
            } => {
                let classes: Vec<ScanClass> = rows
                    .iter()
                    .filter_map(|(_, o)| match o {
                        BackdoorOutcome::TriggerScan(c) => Some(ScanClass {
                            class: c.class as usize,
                            name: class_name(c.class as usize),
                            anomaly_index: c.anomaly_index.map(finite_index),
                            mask_l1: c.mask_l1,
                            flip_rate: c.flip_rate,
                            mask_iou: c.mask_iou,
                            flagged: c.flagged,
                        }),
                        _ => None,
                    })
                    .collect();
                report.scans.push(ScanResult {
                    label: run.label.clone(),
                    scan: scan.clone(),
                    model: model.clone(),
                    anomaly_threshold: *anomaly_threshold,
                    flagged: classes
                        .iter()
                        .filter(|c| c.flagged)
                        .map(|c| c.class)
                        .collect(),
                    classes,
                    true_trigger_known: *true_trigger_known,
                    seconds: seconds(position),
                });
            }
            BackdoorRun::Strip {
                model,
                false_rejection_rate,
                ..
            } => {
                let inputs: Vec<StripOutcome> = rows
                    .iter()
                    .filter_map(|(_, o)| match o {
                        BackdoorOutcome::Strip(s) => Some(*s),
                        _ => None,
                    })
                    .collect();
                let clean: Vec<&StripOutcome> = inputs.iter().filter(|s| !s.triggered).collect();
                let triggered: Vec<&StripOutcome> = inputs.iter().filter(|s| s.triggered).collect();
                let clean_entropies: Vec<f64> = clean.iter().map(|s| s.entropy).collect();
                let threshold = gauntlet_attacks::trigger_scan::strip::threshold(
                    &clean_entropies,
                    *false_rejection_rate,
                );
                report.strip.push(StripResult {
                    label: run.label.clone(),
                    model: model.clone(),
                    threshold: if threshold.is_finite() {
                        threshold
                    } else {
                        0.0
                    },
                    target_false_rejection_rate: *false_rejection_rate,
                    false_rejection: proportion(
                        clean.iter().filter(|s| s.flagged).count(),
                        clean.len(),
                    ),
                    detection: (!triggered.is_empty()).then(|| {
                        proportion(
                            triggered.iter().filter(|s| s.flagged).count(),
                            triggered.len(),
                        )
                    }),
                    clean_entropies,
                    triggered_entropies: triggered.iter().map(|s| s.entropy).collect(),
                    seconds: seconds(position),
                });
            }
            BackdoorRun::Poisoning {
                poisoning,
                rate,
                seed,
                target,
                training_samples,
                poisoned,
                params,
            } => {
                let outcomes: Vec<&PoisoningOutcome> = rows
                    .iter()
                    .filter_map(|(_, o)| match o {
                        BackdoorOutcome::Poisoning(p) => Some(p),
                        _ => None,
                    })
                    .collect();
                let correct = outcomes.iter().filter(|o| o.clean_correct()).count();
                let attacked: Vec<bool> =
                    outcomes.iter().filter_map(|o| o.attack_success).collect();
                let point = PoisonPoint {
                    rate: *rate,
                    seed: *seed,
                    poisoned: *poisoned,
                    clean_accuracy: proportion(correct, outcomes.len()),
                    attack_success: target.map(|_| {
                        proportion(attacked.iter().filter(|&&s| s).count(), attacked.len())
                    }),
                    seconds: seconds(position),
                };
                match poisonings.iter_mut().find(|p| p.label == run.label) {
                    Some(result) => result.points.push(point),
                    None => poisonings.push(PoisoningResult {
                        label: run.label.clone(),
                        poisoning: poisoning.clone(),
                        target: target.map(|t| t as usize),
                        training_samples: *training_samples,
                        rows: Vec::new(),
                        points: vec![point],
                        smallest_rate_reaching_90: None,
                        params: params.clone(),
                    }),
                }
            }
            BackdoorRun::DataScan {
                scan,
                poisoning,
                rate,
                seed,
            } => {
                let outcomes: Vec<&DataScanOutcome> = rows
                    .iter()
                    .filter_map(|(_, o)| match o {
                        BackdoorOutcome::DataScan(d) => Some(d),
                        _ => None,
                    })
                    .collect();
                let flagged = outcomes.iter().filter(|o| o.flagged).count();
                let poisoned = outcomes.iter().filter(|o| o.poisoned).count();
                let hits = outcomes.iter().filter(|o| o.flagged && o.poisoned).count();
                report.data_scans.push(DataScanResult {
                    label: run.label.clone(),
                    scan: scan.clone(),
                    poisoning: poisoning.clone(),
                    rate: *rate,
                    seed: *seed,
                    samples: outcomes.len(),
                    flagged,
                    poisoned,
                    precision: (flagged > 0).then(|| hits as f64 / flagged as f64),
                    recall: (poisoned > 0).then(|| hits as f64 / poisoned as f64),
                });
            }
        }
    }
    for result in &mut poisonings {
        pool_rates(result);
    }
    report.poisonings = poisonings;
    report.images = measurements.backdoor_images.clone();
    (!report.is_empty()).then_some(report)
}

/// One row per rate (in the order the rates first appear), each seed's counts pooled into one
/// proportion, and the smallest rate whose pooled ASR reaches [`ASR_LEVEL`]. Pooling treats
/// the test inputs of different seeds as independent trials, which understates the spread
/// between seeds; the per-seed points stay in the report for that reason.
fn pool_rates(result: &mut PoisoningResult) {
    let mut rates: Vec<f64> = Vec::new();
    for point in &result.points {
        if !rates.contains(&point.rate) {
            rates.push(point.rate);
        }
    }
    result.rows = rates
        .iter()
        .map(|&rate| {
            let at: Vec<&PoisonPoint> = result.points.iter().filter(|p| p.rate == rate).collect();
            let clean_hits = at.iter().map(|p| p.clean_accuracy.successes).sum();
            let clean_total = at.iter().map(|p| p.clean_accuracy.total).sum();
            let attack = at
                .iter()
                .map(|p| p.attack_success)
                .collect::<Option<Vec<_>>>()
                .map(|all| {
                    proportion(
                        all.iter().map(|a| a.successes).sum(),
                        all.iter().map(|a| a.total).sum(),
                    )
                });
            PoisonRateRow {
                rate,
                clean_accuracy: proportion(clean_hits, clean_total),
                attack_success: attack,
            }
        })
        .collect();
    result.smallest_rate_reaching_90 = result
        .rows
        .iter()
        .filter(|row| {
            row.attack_success
                .is_some_and(|a| a.total > 0 && a.value >= ASR_LEVEL)
        })
        .map(|row| row.rate)
        .min_by(f64::total_cmp);
}

/// The value `gate.max_anomaly_index` is compared with: the largest anomaly index of a class
/// that a scan of the model under test flagged, 0 when nothing was flagged.
pub fn largest_flagged_index(report: &BackdoorReport) -> f64 {
    report
        .scans
        .iter()
        .filter(|scan| scan.model == ScannedModel::UnderTest)
        .flat_map(|scan| &scan.classes)
        .filter(|class| class.flagged)
        .map(|class| class.anomaly_index.unwrap_or(f64::MAX))
        .fold(0.0, f64::max)
}

/// Which flagged classes of the model under test, as `scan: class (index)` phrases.
pub fn flagged_phrases(report: &BackdoorReport) -> Vec<String> {
    report
        .scans
        .iter()
        .filter(|scan| scan.model == ScannedModel::UnderTest)
        .flat_map(|scan| {
            scan.classes.iter().filter(|c| c.flagged).map(move |c| {
                format!(
                    "{} flags class {} (`{}`) at anomaly index {}",
                    scan.label,
                    c.class,
                    c.name,
                    c.anomaly_index
                        .map_or("n/a".to_string(), |v| format!("{v:.2}"))
                )
            })
        })
        .collect()
}

/// The ground truth of one trained model of a sweep: which training samples were poisoned,
/// as global dataset indices. Written as [`GROUND_TRUTH_FILE_NAME`] beside `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoisonedIndices {
    /// The `[[poisoning]]` section's label.
    pub label: String,
    pub poisoning: String,
    pub rate: f64,
    pub seed: u64,
    pub indices: Vec<u64>,
}

/// The ground-truth file's name in the output folder.
pub const GROUND_TRUTH_FILE_NAME: &str = "poisoned_indices.json";

#[cfg(test)]
mod tests {
    //! Every figure below is counted by hand from the records.
    use super::*;
    use crate::plan::{Gate, PlannedRun, RunPurpose, PLAN_VERSION};
    use crate::records::{CleanOutcome, RunId};
    use gauntlet_reports::{DatasetInfo, KernelPathInfo, ModelInfo, SuiteInfo};

    fn backdoor_run(label: &str, run: BackdoorRun) -> PlannedRun {
        PlannedRun {
            label: label.to_string(),
            purpose: RunPurpose::Backdoor,
            attack: None,
            backdoor: Some(run),
            detector: None,
        }
    }

    fn poisoning_run(rate: f64, seed: u64) -> PlannedRun {
        backdoor_run(
            "badnets",
            BackdoorRun::Poisoning {
                poisoning: "badnets".to_string(),
                rate,
                seed,
                target: Some(0),
                training_samples: 100,
                poisoned: (rate * 100.0) as usize,
                params: serde_json::Map::new(),
            },
        )
    }

    fn plan(gates: Vec<Gate>) -> RunPlan {
        RunPlan {
            plan_version: PLAN_VERSION,
            gauntlet_version: "test".to_string(),
            suite: SuiteInfo {
                name: "unit".to_string(),
                path: None,
            },
            seed: 0,
            device: "cpu".to_string(),
            model: ModelInfo {
                name: "m".to_string(),
                architecture: "small_cnn".to_string(),
                path: "m.safetensors".to_string(),
                sha256: "0".repeat(64),
                format: "safetensors".to_string(),
                input_shape: vec![1, 2, 2],
                num_classes: 3,
                parameters: 9,
            },
            dataset: DatasetInfo {
                name: "d".to_string(),
                path: "d".to_string(),
                format: "idx".to_string(),
                samples: 4,
                class_names: vec!["a".into(), "b".into(), "c".into()],
            },
            class_names: vec!["a".into(), "b".into(), "c".into()],
            classes_in_dataset: 3,
            runs: vec![
                PlannedRun::clean(),
                backdoor_run(
                    "neural_cleanse",
                    BackdoorRun::TriggerScan {
                        scan: "neural_cleanse".to_string(),
                        model: ScannedModel::UnderTest,
                        anomaly_threshold: 2.0,
                        true_trigger_known: false,
                        params: serde_json::Map::new(),
                    },
                ),
                backdoor_run(
                    "strip",
                    BackdoorRun::Strip {
                        scan: "strip".to_string(),
                        model: ScannedModel::UnderTest,
                        false_rejection_rate: 0.25,
                        params: serde_json::Map::new(),
                    },
                ),
                poisoning_run(0.0, 1),
                poisoning_run(0.1, 1),
                poisoning_run(0.1, 2),
                backdoor_run(
                    "spectral_signatures",
                    BackdoorRun::DataScan {
                        scan: "spectral_signatures".to_string(),
                        poisoning: "badnets".to_string(),
                        rate: 0.1,
                        seed: 1,
                    },
                ),
            ],
            gates,
            fail_on_sanity: true,
            kernel_path: KernelPathInfo {
                path: "native".to_string(),
                reason: None,
            },
            provenance: None,
        }
    }

    fn record(run: u32, index: u64, outcome: Outcome) -> SampleRecord {
        SampleRecord {
            run: RunId(run),
            index,
            outcome,
        }
    }

    fn records() -> Vec<SampleRecord> {
        let mut records: Vec<SampleRecord> = (0..4)
            .map(|i| {
                record(
                    0,
                    i,
                    Outcome::Clean(CleanOutcome {
                        label: (i % 3) as u32,
                        prediction: (i % 3) as u32,
                        loss: 0.1,
                    }),
                )
            })
            .collect();
        // Class 2 is the small-norm outlier; +∞ (MAD = 0) must come out finite.
        for (class, index, l1, flagged) in [
            (0u32, Some(0.5), 10.0, false),
            (1, Some(f64::INFINITY), 11.0, false),
            (2, Some(2.7), 3.0, true),
        ] {
            records.push(record(
                1,
                u64::from(class),
                Outcome::Backdoor(BackdoorOutcome::TriggerScan(TriggerScanOutcome {
                    class,
                    anomaly_index: index,
                    mask_l1: Some(l1),
                    flip_rate: None,
                    mask_iou: None,
                    flagged,
                })),
            ));
        }
        // STRIP: 4 clean entropies, 1 flagged; 2 triggered, both flagged.
        for (index, entropy, triggered, flagged) in [
            (0, 0.05, false, true),
            (1, 0.9, false, false),
            (2, 1.1, false, false),
            (3, 1.3, false, false),
            (0, 0.01, true, true),
            (1, 0.02, true, true),
        ] {
            records.push(record(
                2,
                index,
                Outcome::Backdoor(BackdoorOutcome::Strip(StripOutcome {
                    label: 1,
                    prediction: 1,
                    entropy,
                    triggered,
                    flagged,
                })),
            ));
        }
        // Poisoning: 4 test samples per model, sample 0 is of the target class (no attack).
        let success = |run: u32, hits: &[bool]| -> Vec<SampleRecord> {
            (0..4u64)
                .map(|i| {
                    let attack = (i > 0).then(|| hits[i as usize - 1]);
                    record(
                        run,
                        10 + i,
                        Outcome::Backdoor(BackdoorOutcome::Poisoning(PoisoningOutcome {
                            label: if i == 0 { 0 } else { 1 },
                            prediction: if i == 3 {
                                2
                            } else if i == 0 {
                                0
                            } else {
                                1
                            },
                            attack_prediction: attack.map(|hit| if hit { 0 } else { 1 }),
                            attack_success: attack,
                        })),
                    )
                })
                .collect()
        };
        records.extend(success(3, &[false, false, false]));
        records.extend(success(4, &[true, true, true]));
        records.extend(success(5, &[true, true, false]));
        // Data scan: 5 samples, 2 poisoned (0, 1), 3 flagged (1, 2, 3).
        for i in 0..5u64 {
            records.push(record(
                6,
                20 + i,
                Outcome::Backdoor(BackdoorOutcome::DataScan(DataScanOutcome {
                    label: 0,
                    score: i as f64,
                    flagged: (1..=3).contains(&i),
                    poisoned: i < 2,
                })),
            ));
        }
        records
    }

    #[test]
    fn backdoor_figures_are_counted_from_the_records() {
        let report = crate::aggregate(
            &plan(vec![Gate::MaxAnomalyIndex { threshold: 2.0 }]),
            &RunMeasurements::default(),
            &records(),
        )
        .unwrap();
        let backdoor = report.backdoor.as_ref().unwrap();
        let scan = &backdoor.scans[0];
        assert_eq!(scan.flagged, vec![2]);
        assert_eq!(scan.classes[1].anomaly_index, Some(f64::MAX));
        assert_eq!(scan.classes[2].name, "c");

        let strip = &backdoor.strip[0];
        assert_eq!(strip.false_rejection.successes, 1);
        assert_eq!(strip.false_rejection.total, 4);
        assert_eq!(strip.detection.unwrap().successes, 2);
        // ⌊0.25 · 4⌋ = 1: the second-smallest clean entropy.
        assert_eq!(strip.threshold, 0.9);

        let poisoning = &backdoor.poisonings[0];
        assert_eq!(poisoning.points.len(), 3);
        assert_eq!(
            poisoning.rows.iter().map(|r| r.rate).collect::<Vec<_>>(),
            vec![0.0, 0.1]
        );
        // Rate 0.1 pools seeds 1 and 2: 5 of 6 attack inputs, 6 of 8 clean correct.
        let row = &poisoning.rows[1];
        assert_eq!(
            (
                row.attack_success.unwrap().successes,
                row.attack_success.unwrap().total
            ),
            (5, 6)
        );
        assert_eq!(
            (row.clean_accuracy.successes, row.clean_accuracy.total),
            (6, 8)
        );
        // 5/6 = 0.83 < 0.9: no rate reaches 90%.
        assert_eq!(poisoning.smallest_rate_reaching_90, None);

        let data = &backdoor.data_scans[0];
        assert_eq!((data.flagged, data.poisoned), (3, 2));
        assert_eq!(data.precision, Some(1.0 / 3.0));
        assert_eq!(data.recall, Some(0.5));

        // The gate: class 2 of the model under test is flagged at 2.7 > 2.
        let gate = &report.gates[0];
        assert_eq!(gate.gate, "max_anomaly_index");
        assert!(!gate.passed);
        assert_eq!(gate.actual, 2.7);
        let lines = crate::gate::failure_lines(&report);
        assert!(lines[0].contains("class 2"), "{lines:?}");
        report.validate().unwrap();
    }

    #[test]
    fn the_gate_passes_when_nothing_is_flagged_and_a_rate_reaching_90_is_named() {
        let mut records = records();
        for r in &mut records {
            if let Outcome::Backdoor(BackdoorOutcome::TriggerScan(t)) = &mut r.outcome {
                t.flagged = false;
            }
            if let Outcome::Backdoor(BackdoorOutcome::Poisoning(p)) = &mut r.outcome {
                if r.run == RunId(5) && p.attack_success == Some(false) {
                    p.attack_success = Some(true);
                    p.attack_prediction = Some(0);
                }
            }
        }
        let report = crate::aggregate(
            &plan(vec![Gate::MaxAnomalyIndex { threshold: 2.0 }]),
            &RunMeasurements::default(),
            &records,
        )
        .unwrap();
        assert!(report.gates[0].passed);
        assert_eq!(report.gates[0].actual, 0.0);
        assert_eq!(
            report.backdoor.unwrap().poisonings[0].smallest_rate_reaching_90,
            Some(0.1)
        );
    }

    #[test]
    fn a_record_of_the_wrong_backdoor_kind_is_refused() {
        let mut records = records();
        let strip = records.iter().position(|r| r.run == RunId(2)).unwrap();
        records[strip].run = RunId(1);
        let error =
            crate::aggregate(&plan(Vec::new()), &RunMeasurements::default(), &records).unwrap_err();
        assert!(error.to_string().contains("trigger_scan"), "{error}");
    }

    #[test]
    fn the_per_sample_file_round_trips_backdoor_records() {
        let plan = plan(vec![Gate::MaxAnomalyIndex { threshold: 2.0 }]);
        let measurements = RunMeasurements {
            poisoned_indices: vec![PoisonedIndices {
                label: "badnets".to_string(),
                poisoning: "badnets".to_string(),
                rate: 0.1,
                seed: 1,
                indices: vec![20, 21],
            }],
            ..RunMeasurements::default()
        };
        let records = records();
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join(crate::samples_file::FILE_NAME);
        crate::samples_file::write(&path, &plan, &measurements, &records).unwrap();
        let (read_plan, read_measurements, mut read_records) =
            crate::samples_file::read(&path).unwrap();
        assert_eq!(read_plan, plan);
        assert_eq!(read_measurements, measurements);
        let key = |r: &SampleRecord| (r.run, r.index, format!("{:?}", r.outcome));
        let mut expected = records.clone();
        expected.sort_by_key(key);
        read_records.sort_by_key(key);
        assert_eq!(read_records, expected);
        assert_eq!(
            crate::aggregate(&read_plan, &read_measurements, &read_records).unwrap(),
            crate::aggregate(&plan, &measurements, &records).unwrap()
        );
    }
}
