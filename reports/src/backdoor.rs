//! The backdoor part of `results.json` (schema 3): trigger scans per (scan, model, class),
//! STRIP per input, poisoning sweeps per rate and seed, data-level detectors against the
//! poisoned indices, and the images the report shows (recovered triggers, a clean and a
//! triggered input). Every figure is an aggregate of the per-sample records, except the
//! images, which the runner keeps beside them as it keeps the gallery.

use serde::{Deserialize, Serialize};

use crate::schema::Proportion;

/// Everything the backdoor sections of a suite measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackdoorReport {
    /// One per (model-level scan, scanned model): Neural Cleanse, the known-trigger sweep.
    #[serde(default)]
    pub scans: Vec<ScanResult>,
    /// One per (STRIP scan, scanned model).
    #[serde(default)]
    pub strip: Vec<StripResult>,
    /// One per `[[poisoning]]` section: the sweep over rates × seeds.
    #[serde(default)]
    pub poisonings: Vec<PoisoningResult>,
    /// One per (data-level detector, trained model).
    #[serde(default)]
    pub data_scans: Vec<DataScanResult>,
    /// The images: recovered triggers, and a clean and a triggered input.
    #[serde(default)]
    pub images: BackdoorImages,
}

impl BackdoorReport {
    pub fn is_empty(&self) -> bool {
        self.scans.is_empty()
            && self.strip.is_empty()
            && self.poisonings.is_empty()
            && self.data_scans.is_empty()
    }
}

/// Which model a scan looked at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScannedModel {
    /// The suite's model: the one under test, and the one `gate.max_anomaly_index` is about.
    UnderTest,
    /// A model a `[[poisoning]]` section trained at one (rate, seed).
    Trained {
        poisoning: String,
        rate: f64,
        seed: u64,
    },
}

impl ScannedModel {
    /// `model under test`, or `badnets at rate 0.05, seed 1`.
    pub fn describe(&self) -> String {
        match self {
            ScannedModel::UnderTest => "model under test".to_string(),
            ScannedModel::Trained {
                poisoning,
                rate,
                seed,
            } => format!("{poisoning} at rate {rate}, seed {seed}"),
        }
    }
}

/// A model-level scan of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanResult {
    /// The section's label (defaults to the registry name).
    pub label: String,
    /// Registry name, e.g. `neural_cleanse`.
    pub scan: String,
    pub model: ScannedModel,
    /// The scan's own flagging threshold on the anomaly index (`anomaly_threshold`).
    pub anomaly_threshold: f64,
    /// One per class, in class order.
    pub classes: Vec<ScanClass>,
    /// Classes flagged as backdoor targets.
    pub flagged: Vec<usize>,
    /// Whether the suite knew the true trigger (then `mask_iou` is measured).
    pub true_trigger_known: bool,
    pub seconds: f64,
}

/// One class as a scan saw it; a figure is absent when the scan does not measure it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanClass {
    pub class: usize,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly_index: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_l1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flip_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_iou: Option<f64>,
    pub flagged: bool,
}

/// STRIP on one model: per-input entropies, the threshold and the rates it gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripResult {
    pub label: String,
    pub model: ScannedModel,
    /// Inputs with a mean entropy (bits) strictly below this are flagged as triggered.
    pub threshold: f64,
    /// The false-rejection rate the threshold was set for.
    pub target_false_rejection_rate: f64,
    /// Clean inputs flagged (the achieved false rejections).
    pub false_rejection: Proportion,
    /// Triggered inputs flagged; absent without a known trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection: Option<Proportion>,
    pub clean_entropies: Vec<f64>,
    #[serde(default)]
    pub triggered_entropies: Vec<f64>,
    pub seconds: f64,
}

/// One `[[poisoning]]` sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoisoningResult {
    pub label: String,
    /// Registry name, e.g. `badnets`.
    pub poisoning: String,
    /// The class the poisoned model should predict; absent for a random label flip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<usize>,
    /// Training samples (the poison rate is a fraction of these).
    pub training_samples: usize,
    /// One per rate, the seeds pooled.
    pub rows: Vec<PoisonRateRow>,
    /// One per (rate, seed).
    pub points: Vec<PoisonPoint>,
    /// The smallest rate whose pooled attack success rate reaches 90%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smallest_rate_reaching_90: Option<f64>,
    /// The poisoning's parameters as given in the suite.
    pub params: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoisonRateRow {
    pub rate: f64,
    pub clean_accuracy: Proportion,
    /// Attack inputs sent to the target; absent for a poisoning without a target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attack_success: Option<Proportion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoisonPoint {
    pub rate: f64,
    pub seed: u64,
    /// How many training samples were poisoned (their indices are in the ground-truth file).
    pub poisoned: usize,
    pub clean_accuracy: Proportion,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attack_success: Option<Proportion>,
    pub seconds: f64,
}

/// A data-level detector on the training set of one trained model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataScanResult {
    pub label: String,
    /// Registry name, e.g. `spectral_signatures`.
    pub scan: String,
    pub poisoning: String,
    pub rate: f64,
    pub seed: u64,
    pub samples: usize,
    pub flagged: usize,
    pub poisoned: usize,
    /// Flagged samples that were poisoned; absent when nothing was flagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<f64>,
    /// Poisoned samples that were flagged; absent when nothing was poisoned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recall: Option<f64>,
}

/// The images of the backdoor section, bounded like the gallery.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackdoorImages {
    /// Recovered triggers (Neural Cleanse's mask and pattern per class).
    #[serde(default)]
    pub triggers: Vec<TriggerImage>,
    /// A clean input and the same input with a trigger stamped, one per scanned model.
    #[serde(default)]
    pub inputs: Vec<TriggeredInput>,
}

/// One recovered trigger: mask `H×W` and pattern `C×H×W`, values in [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerImage {
    pub scan: String,
    pub model: ScannedModel,
    pub class: usize,
    /// `[C, H, W]` of the pattern; the mask is `H×W`.
    pub shape: Vec<usize>,
    pub mask: Vec<f32>,
    pub pattern: Vec<f32>,
}

/// A clean input beside the same input carrying a trigger (the true one when known, else the
/// recovered trigger of the most anomalous class).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggeredInput {
    pub model: ScannedModel,
    /// Which trigger was stamped, in words.
    pub trigger: String,
    pub shape: Vec<usize>,
    pub clean: Vec<f32>,
    pub triggered: Vec<f32>,
    pub clean_prediction: usize,
    pub triggered_prediction: usize,
}

/// Most pixel values the backdoor images may hold in all (masks, patterns and inputs
/// together), as [`crate::MAX_GALLERY_VALUES`] bounds the gallery: a `results.json` cannot make
/// `gauntlet report` hold more than this.
pub const MAX_BACKDOOR_IMAGE_VALUES: usize = 8 << 20;

/// What the type system cannot check: finite numbers, proportions in [0, 1], image sizes that
/// match their shapes, and the bound on image values.
pub(crate) fn validate(report: &BackdoorReport) -> Result<(), crate::ReportError> {
    use crate::validate::{finite, invalid, non_negative, proportion, unit_interval};
    for (i, scan) in report.scans.iter().enumerate() {
        let at = |field: &str| format!("backdoor.scans[{i}].{field}");
        finite(&at("anomaly_threshold"), scan.anomaly_threshold)?;
        non_negative(&at("seconds"), scan.seconds)?;
        for (k, class) in scan.classes.iter().enumerate() {
            let at = |field: &str| format!("backdoor.scans[{i}].classes[{k}].{field}");
            if let Some(v) = class.anomaly_index {
                non_negative(&at("anomaly_index"), v)?;
            }
            if let Some(v) = class.mask_l1 {
                non_negative(&at("mask_l1"), v)?;
            }
            if let Some(v) = class.flip_rate {
                unit_interval(&at("flip_rate"), v)?;
            }
            if let Some(v) = class.mask_iou {
                unit_interval(&at("mask_iou"), v)?;
            }
        }
    }
    for (i, strip) in report.strip.iter().enumerate() {
        let at = |field: &str| format!("backdoor.strip[{i}].{field}");
        finite(&at("threshold"), strip.threshold)?;
        unit_interval(
            &at("target_false_rejection_rate"),
            strip.target_false_rejection_rate,
        )?;
        proportion(&at("false_rejection"), &strip.false_rejection)?;
        if let Some(detection) = &strip.detection {
            proportion(&at("detection"), detection)?;
        }
        for (name, values) in [
            ("clean_entropies", &strip.clean_entropies),
            ("triggered_entropies", &strip.triggered_entropies),
        ] {
            for (k, &v) in values.iter().enumerate() {
                non_negative(&at(&format!("{name}[{k}]")), v)?;
            }
        }
        non_negative(&at("seconds"), strip.seconds)?;
    }
    for (i, poisoning) in report.poisonings.iter().enumerate() {
        let at = |field: &str| format!("backdoor.poisonings[{i}].{field}");
        for (k, row) in poisoning.rows.iter().enumerate() {
            unit_interval(&at(&format!("rows[{k}].rate")), row.rate)?;
            proportion(
                &at(&format!("rows[{k}].clean_accuracy")),
                &row.clean_accuracy,
            )?;
            if let Some(asr) = &row.attack_success {
                proportion(&at(&format!("rows[{k}].attack_success")), asr)?;
            }
        }
        for (k, point) in poisoning.points.iter().enumerate() {
            unit_interval(&at(&format!("points[{k}].rate")), point.rate)?;
            proportion(
                &at(&format!("points[{k}].clean_accuracy")),
                &point.clean_accuracy,
            )?;
            if let Some(asr) = &point.attack_success {
                proportion(&at(&format!("points[{k}].attack_success")), asr)?;
            }
            non_negative(&at(&format!("points[{k}].seconds")), point.seconds)?;
        }
        if let Some(rate) = poisoning.smallest_rate_reaching_90 {
            unit_interval(&at("smallest_rate_reaching_90"), rate)?;
        }
    }
    for (i, scan) in report.data_scans.iter().enumerate() {
        let at = |field: &str| format!("backdoor.data_scans[{i}].{field}");
        unit_interval(&at("rate"), scan.rate)?;
        for (name, value) in [("precision", scan.precision), ("recall", scan.recall)] {
            if let Some(v) = value {
                unit_interval(&at(name), v)?;
            }
        }
    }
    let mut values = 0_usize;
    let mut count = |field: String, len: usize| {
        values = values.saturating_add(len);
        if values > MAX_BACKDOOR_IMAGE_VALUES {
            Err(invalid(
                &field,
                format!(
                    "brings the backdoor images to {values} values, more than the \
                     {MAX_BACKDOOR_IMAGE_VALUES} a report may hold"
                ),
            ))
        } else {
            Ok(())
        }
    };
    for (i, trigger) in report.images.triggers.iter().enumerate() {
        let field = format!("backdoor.images.triggers[{i}]");
        count(field.clone(), trigger.mask.len() + trigger.pattern.len())?;
        let (channels, height, width) = image_dims(&field, &trigger.shape)?;
        check_pixels(&format!("{field}.mask"), &trigger.mask, height * width)?;
        check_pixels(
            &format!("{field}.pattern"),
            &trigger.pattern,
            channels * height * width,
        )?;
    }
    for (i, input) in report.images.inputs.iter().enumerate() {
        let field = format!("backdoor.images.inputs[{i}]");
        count(field.clone(), input.clean.len() + input.triggered.len())?;
        let (channels, height, width) = image_dims(&field, &input.shape)?;
        let len = channels * height * width;
        check_pixels(&format!("{field}.clean"), &input.clean, len)?;
        check_pixels(&format!("{field}.triggered"), &input.triggered, len)?;
    }
    Ok(())
}

/// `[C, H, W]` with C = 1 or 3 and a non-empty image of bounded size.
pub(crate) fn image_dims(
    field: &str,
    shape: &[usize],
) -> Result<(usize, usize, usize), crate::ReportError> {
    let bad = |why: &str| {
        crate::validate::invalid(&format!("{field}.shape"), format!("is {shape:?}: {why}"))
    };
    let [channels, height, width] = shape[..] else {
        return Err(bad("expected [C, H, W]"));
    };
    if channels != 1 && channels != 3 {
        return Err(bad("only 1 (grey) or 3 (RGB) channels can be shown"));
    }
    if height == 0 || width == 0 {
        return Err(bad("the image is empty"));
    }
    channels
        .checked_mul(height)
        .and_then(|n| n.checked_mul(width))
        .filter(|&n| n <= MAX_BACKDOOR_IMAGE_VALUES)
        .ok_or_else(|| bad("too large"))?;
    Ok((channels, height, width))
}

fn check_pixels(field: &str, pixels: &[f32], expected: usize) -> Result<(), crate::ReportError> {
    if pixels.len() != expected {
        return Err(crate::validate::invalid(
            field,
            format!("has {} values, expected {expected}", pixels.len()),
        ));
    }
    if let Some(at) = pixels.iter().position(|v| !v.is_finite()) {
        return Err(crate::validate::invalid(
            &format!("{field}[{at}]"),
            format!("is {}, not a finite pixel value", pixels[at]),
        ));
    }
    Ok(())
}
