//! The guardrail part of `results.json` (schema 5): each `[[detector]]` of the suite, fitted on
//! clean data, scored on the clean evaluation inputs and on every attack@ε's adversarial
//! inputs (and, for an adaptive attack that knows the detector, on those too). Every figure is
//! an aggregate of the per-sample detector records (`samples.parquet`, kind `detector`).
//!
//! Thresholds are fixed on clean scores alone, as a deployment would fix them: at a target
//! false-positive rate α, at most `⌊α·n⌋` of the `n` clean inputs are flagged, and an input is
//! flagged when its score is strictly above the threshold. Detection rates and the ROC AUC are
//! measured on the attack's **successful** adversarial inputs (correct when clean, wrong after):
//! an attack that failed leaves nothing to detect. The robust accuracy *with the guardrail*
//! counts every evaluated sample: defended when the model is still right (robust) or the
//! detector flags the adversarial input.

use serde::{Deserialize, Serialize};

use crate::schema::Proportion;
use crate::validate::{finite, invalid, non_negative, proportion, unit_interval};

/// The false-positive rates every detector is reported at.
pub const TARGET_FALSE_POSITIVE_RATES: [f64; 2] = [0.01, 0.05];

/// A gap between the non-adaptive and the adaptive detection rate (at the same false-positive
/// rate) at least this large is called out in the report: the non-adaptive figure overstates
/// the guardrail.
pub const LARGE_ADAPTIVE_GAP: f64 = 0.2;

/// Most points of a ROC curve kept in `results.json`; longer curves are thinned evenly (the
/// AUC is computed from every score, not from the kept points).
pub const MAX_ROC_POINTS: usize = 201;

/// One `[[detector]]` section's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorResult {
    /// The section's label (defaults to the registry name).
    pub label: String,
    /// Registry name, e.g. `zscore`.
    pub detector: String,
    /// What it looks at, in words (`inputs`, `logits`, …).
    pub needs: String,
    /// Clean inputs it was fitted on, and where they came from.
    pub fit_samples: usize,
    pub fit_source: String,
    /// The suite's parameters for the detector, as JSON.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Clean evaluation inputs scored.
    pub clean_samples: usize,
    /// The detector's own decision rule, when it has one (the z-score validator's threshold),
    /// and the share of clean inputs it rejects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_false_positive: Option<Proportion>,
    /// One per (attack, ε), non-adaptive first in suite order, then the adaptive runs.
    pub rows: Vec<DetectorRow>,
    pub seconds: f64,
}

/// The detector against one attack at one ε.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorRow {
    /// The attack's label (`pgd`), or the adaptive attack's (`adaptive_pgd`).
    pub attack: String,
    pub norm: String,
    pub epsilon: f64,
    /// Whether the attack knew the detector.
    pub adaptive: bool,
    /// Successful adversarial inputs (correct when clean, wrong after): what is detected.
    pub successful: usize,
    /// Robust accuracy without the guardrail, over every evaluated sample.
    pub robust_accuracy: Proportion,
    /// `P(score(adversarial) > score(clean)) + ½ P(=)` over the successful adversarial inputs;
    /// absent when the attack broke no sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auc: Option<f64>,
    /// At each of [`TARGET_FALSE_POSITIVE_RATES`].
    pub at_fpr: Vec<DetectionAtFpr>,
    /// The share of successful adversarial inputs the detector's own rule rejects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_detection: Option<Proportion>,
    /// The ROC curve (false-positive rate, true-positive rate), from (0, 0) to (1, 1), at most
    /// [`MAX_ROC_POINTS`] points; empty when the attack broke no sample.
    pub roc: Vec<[f64; 2]>,
}

/// Detection and robust accuracy with the guardrail at one clean false-positive rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionAtFpr {
    /// The false-positive rate asked for.
    pub target_fpr: f64,
    /// The score threshold it gives on the clean inputs (flag when strictly above).
    pub threshold: f64,
    /// The clean false-positive rate achieved (≤ target; lower when clean scores tie).
    pub false_positive_rate: f64,
    /// Successful adversarial inputs flagged; absent when the attack broke no sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection: Option<Proportion>,
    /// Samples defended: robust, or the adversarial input flagged.
    pub robust_with_guardrail: Proportion,
}

impl DetectorResult {
    /// The non-adaptive row of the same attack norm and ε as `adaptive`, if any: the figure
    /// an adaptive row is compared with.
    pub fn non_adaptive_match(&self, adaptive: &DetectorRow) -> Option<&DetectorRow> {
        self.rows.iter().find(|row| {
            !row.adaptive && row.norm == adaptive.norm && row.epsilon == adaptive.epsilon
        })
    }

    /// For each adaptive row whose detection (at the same false-positive rate) falls by at
    /// least [`LARGE_ADAPTIVE_GAP`] against the strongest non-adaptive row at its norm and ε,
    /// one sentence.
    pub fn large_gaps(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for row in self.rows.iter().filter(|r| r.adaptive) {
            for (k, adaptive) in row.at_fpr.iter().enumerate() {
                let best = self
                    .rows
                    .iter()
                    .filter(|r| !r.adaptive && r.norm == row.norm && r.epsilon == row.epsilon)
                    .filter_map(|r| Some((r, r.at_fpr.get(k)?.detection.as_ref()?.value)))
                    .max_by(|a, b| a.1.total_cmp(&b.1));
                let (Some((other, before)), Some(after)) =
                    (best, adaptive.detection.as_ref().map(|d| d.value))
                else {
                    continue;
                };
                if before - after >= LARGE_ADAPTIVE_GAP {
                    lines.push(format!(
                        "{}: at {} ε = {}, {:.0}% false positives, detection falls from \
                         {:.1}% against `{}` to {:.1}% against `{}`, which knows the detector; \
                         the non-adaptive figure overstates this guardrail",
                        self.label,
                        row.norm,
                        row.epsilon,
                        adaptive.target_fpr * 100.0,
                        before * 100.0,
                        other.attack,
                        after * 100.0,
                        row.attack
                    ));
                }
            }
        }
        lines
    }
}

/// Bins of the confidence histograms over `[0, 1]`.
pub const CONFIDENCE_BINS: usize = 10;

/// Output monitoring of one attack@ε: how far the distribution of predicted classes moves from
/// the clean inputs to the attacked ones, as a monitor watching the model's outputs in batches
/// would see it. Both distributions are smoothed by adding ½ to every class's count
/// (`p_k = (n_k + ½) / (n + K/2)`), so a class predicted in one batch and never in the other
/// gives a finite figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftResult {
    /// The attack's label.
    pub attack: String,
    pub norm: String,
    pub epsilon: f64,
    /// Predicted-class counts over the evaluated samples, one per class of the model.
    pub clean_counts: Vec<usize>,
    pub attacked_counts: Vec<usize>,
    /// Population stability index `Σ (a_k − c_k) ln(a_k / c_k)`; common alarm levels are
    /// 0.1 (moderate shift) and 0.25 (significant shift).
    pub psi: f64,
    /// `KL(attacked ‖ clean) = Σ a_k ln(a_k / c_k)`, in nats.
    pub kl: f64,
    /// Histograms of the model's top-class probability over [`CONFIDENCE_BINS`] equal bins of
    /// `[0, 1]`, clean and attacked, when a `confidence` detector scored both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<ConfidenceHistograms>,
}

/// Counts of inputs per bin of the top-class probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfidenceHistograms {
    pub clean: Vec<usize>,
    pub attacked: Vec<usize>,
}

/// Checks every drift figure is finite and non-negative.
pub(crate) fn validate_drift(results: &[DriftResult]) -> Result<(), crate::ReportError> {
    for (i, drift) in results.iter().enumerate() {
        let at = |field: &str| format!("output_drift[{i}].{field}");
        non_negative(&at("epsilon"), drift.epsilon)?;
        non_negative(&at("psi"), drift.psi)?;
        non_negative(&at("kl"), drift.kl)?;
        if drift.clean_counts.len() != drift.attacked_counts.len() {
            return Err(invalid(
                &at("attacked_counts"),
                format!(
                    "has {} classes, clean_counts {}",
                    drift.attacked_counts.len(),
                    drift.clean_counts.len()
                ),
            ));
        }
        if let Some(histograms) = &drift.confidence {
            for (name, bins) in [
                ("clean", &histograms.clean),
                ("attacked", &histograms.attacked),
            ] {
                if bins.len() != CONFIDENCE_BINS {
                    return Err(invalid(
                        &at(&format!("confidence.{name}")),
                        format!("has {} bins, expected {CONFIDENCE_BINS}", bins.len()),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Checks every number of the detector results is finite and every rate a fraction.
pub(crate) fn validate(results: &[DetectorResult]) -> Result<(), crate::ReportError> {
    for (i, result) in results.iter().enumerate() {
        let at = |field: &str| format!("detectors[{i}].{field}");
        if let Some(threshold) = result.rule_threshold {
            finite(&at("rule_threshold"), threshold)?;
        }
        if let Some(p) = &result.rule_false_positive {
            proportion(&at("rule_false_positive"), p)?;
        }
        non_negative(&at("seconds"), result.seconds)?;
        for (j, row) in result.rows.iter().enumerate() {
            let at = |field: &str| format!("detectors[{i}].rows[{j}].{field}");
            non_negative(&at("epsilon"), row.epsilon)?;
            proportion(&at("robust_accuracy"), &row.robust_accuracy)?;
            if let Some(auc) = row.auc {
                unit_interval(&at("auc"), auc)?;
            }
            if let Some(p) = &row.rule_detection {
                proportion(&at("rule_detection"), p)?;
            }
            for (k, point) in row.at_fpr.iter().enumerate() {
                let at = |field: &str| format!("detectors[{i}].rows[{j}].at_fpr[{k}].{field}");
                unit_interval(&at("target_fpr"), point.target_fpr)?;
                finite(&at("threshold"), point.threshold)?;
                unit_interval(&at("false_positive_rate"), point.false_positive_rate)?;
                if let Some(p) = &point.detection {
                    proportion(&at("detection"), p)?;
                }
                proportion(&at("robust_with_guardrail"), &point.robust_with_guardrail)?;
            }
            if row.roc.len() > MAX_ROC_POINTS {
                return Err(invalid(
                    &at("roc"),
                    format!("has {} points, more than {MAX_ROC_POINTS}", row.roc.len()),
                ));
            }
            for (k, [x, y]) in row.roc.iter().enumerate() {
                unit_interval(&at(&format!("roc[{k}][0]")), *x)?;
                unit_interval(&at(&format!("roc[{k}][1]")), *y)?;
            }
        }
    }
    Ok(())
}
