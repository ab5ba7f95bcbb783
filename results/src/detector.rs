//! Guardrail records and their aggregation: each `[[detector]]` of a suite scores the clean
//! inputs and every attack@ε's adversarial inputs (one [`RunPurpose::Detector`] run per
//! detector and scored run, one [`DetectorOutcome`] record per sample, keyed by the sample's
//! global index), and the `detectors` part of `results.json` is a pure function of them.
//!
//! Per detector: thresholds at [`TARGET_FALSE_POSITIVE_RATES`] are fixed on the clean scores
//! alone (`gauntlet_attacks::detector::metrics::detection_at_fpr`'s quantile convention);
//! detection and the ROC AUC are measured on the successful adversarial inputs (correct when
//! clean, wrong after); the robust accuracy with the guardrail counts a sample defended when
//! it is robust or its adversarial input is flagged.
//!
//! [`RunPurpose::Detector`]: crate::RunPurpose::Detector

use std::collections::HashMap;

use gauntlet_attacks::detector::metrics;
use gauntlet_reports::detector::{
    DetectionAtFpr, DetectorResult, DetectorRow, MAX_ROC_POINTS, TARGET_FALSE_POSITIVE_RATES,
};
use serde::{Deserialize, Serialize};

use crate::metrics::{epsilon_value, proportion};
use crate::plan::{RunMeasurements, RunPlan, RunPurpose};
use crate::records::{DetectorOutcome, Outcome, SampleRecord};
use crate::AggregateError;

/// What a detector run is, in the plan. The run's `label` is the detector's label; its
/// `attack` is the attack whose adversarial inputs were scored (absent for the clean inputs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorRun {
    /// Registry name, e.g. `zscore`.
    pub detector: String,
    /// What it looks at, in words.
    pub needs: String,
    /// Clean inputs it was fitted on, and where they came from.
    pub fit_samples: usize,
    pub fit_source: String,
    /// The detector's own rule threshold, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_threshold: Option<f64>,
    /// The suite's parameters for the detector, as JSON.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Which inputs this run scored.
    pub scored: ScoredInputs,
}

/// The inputs a detector run scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScoredInputs {
    /// The clean evaluation inputs: the negatives every threshold is fixed on.
    Clean,
    /// The adversarial inputs of the attack run `attack_label` (the run's `attack` says which
    /// attack and ε); `adaptive` when the attack knew the detector.
    Attack {
        attack_label: String,
        adaptive: bool,
    },
}

/// A [`ScoredInputs::Clean`] run's records, by global index.
struct CleanScores {
    position: usize,
    by_index: HashMap<u64, DetectorOutcome>,
}

/// The `detectors` part of `results.json`: one result per detector label, in plan order.
pub fn aggregate(
    plan: &RunPlan,
    measurements: &RunMeasurements,
    records: &[SampleRecord],
) -> Result<Vec<DetectorResult>, AggregateError> {
    let mut by_run: HashMap<usize, Vec<(u64, DetectorOutcome)>> = HashMap::new();
    for record in records {
        if let Outcome::Detector(outcome) = record.outcome {
            by_run
                .entry(record.run.position())
                .or_default()
                .push((record.index, outcome));
        }
    }
    for rows in by_run.values_mut() {
        rows.sort_by_key(|(index, _)| *index);
        if let Some(pair) = rows.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(AggregateError::DuplicateRecord {
                run: "detector".to_string(),
                index: pair[0].0,
            });
        }
    }
    let seconds = |position: usize| {
        measurements
            .run_seconds
            .get(position)
            .copied()
            .unwrap_or(0.0)
    };
    let empty = Vec::new();
    let mut results: Vec<DetectorResult> = Vec::new();
    let mut cleans: HashMap<String, CleanScores> = HashMap::new();
    // First the clean runs: every other run of the label is compared with them.
    for (position, run) in plan.runs.iter().enumerate() {
        let Some(detector) = run
            .detector
            .as_ref()
            .filter(|_| run.purpose == RunPurpose::Detector)
        else {
            continue;
        };
        if detector.scored != ScoredInputs::Clean {
            continue;
        }
        let rows = by_run.get(&position).unwrap_or(&empty);
        let scores: Vec<f64> = rows.iter().map(|(_, o)| o.score).collect();
        let rule_false_positive = detector.rule_threshold.and_then(|_| {
            let judged: Vec<bool> = rows.iter().filter_map(|(_, o)| o.rule_rejected).collect();
            (!judged.is_empty())
                .then(|| proportion(judged.iter().filter(|&&r| r).count(), judged.len()))
        });
        cleans.insert(
            run.label.clone(),
            CleanScores {
                position,
                by_index: rows.iter().copied().collect(),
            },
        );
        results.push(DetectorResult {
            label: run.label.clone(),
            detector: detector.detector.clone(),
            needs: detector.needs.clone(),
            fit_samples: detector.fit_samples,
            fit_source: detector.fit_source.clone(),
            params: detector.params.clone(),
            clean_samples: scores.len(),
            rule_threshold: detector.rule_threshold.filter(|t| t.is_finite()),
            rule_false_positive,
            rows: Vec::new(),
            seconds: seconds(position),
        });
    }
    for (position, run) in plan.runs.iter().enumerate() {
        let Some(detector) = run
            .detector
            .as_ref()
            .filter(|_| run.purpose == RunPurpose::Detector)
        else {
            continue;
        };
        let ScoredInputs::Attack {
            attack_label,
            adaptive,
        } = &detector.scored
        else {
            continue;
        };
        let (Some(clean), Some(result)) = (
            cleans.get(&run.label),
            results.iter_mut().find(|r| r.label == run.label),
        ) else {
            return Err(AggregateError::WrongKind {
                run: run.label.clone(),
                expected: "a clean detector run of the same label",
                found: "only attacked ones",
            });
        };
        let Some(attack) = &run.attack else {
            return Err(AggregateError::WrongKind {
                run: run.label.clone(),
                expected: "the scored attack in the plan",
                found: "a detector run without one",
            });
        };
        let clean_rows = by_run.get(&clean.position).unwrap_or(&empty);
        let clean_scores: Vec<f64> = clean_rows.iter().map(|(_, o)| o.score).collect();
        let rows = by_run.get(&position).unwrap_or(&empty);
        let mut successful = Vec::new();
        for (index, outcome) in rows {
            let before = clean
                .by_index
                .get(index)
                .ok_or(AggregateError::NotInCleanRun {
                    run: format!("{} on {attack_label}", run.label),
                    index: *index,
                })?;
            if before.robust && !outcome.robust {
                successful.push(outcome.score);
            }
        }
        let robust = rows.iter().filter(|(_, o)| o.robust).count();
        let comparable = !clean_scores.is_empty() && !successful.is_empty();
        let auc = if comparable {
            metrics::roc_auc(&clean_scores, &successful).ok()
        } else {
            None
        };
        let roc = if comparable {
            thin(
                metrics::roc_curve(&clean_scores, &successful)
                    .map(|points| {
                        points
                            .into_iter()
                            .map(|p| [p.false_positive_rate, p.true_positive_rate])
                            .collect()
                    })
                    .unwrap_or_default(),
            )
        } else {
            Vec::new()
        };
        let mut at_fpr = Vec::new();
        if !clean_scores.is_empty() {
            for target in TARGET_FALSE_POSITIVE_RATES {
                let Ok(fixed) = metrics::detection_at_fpr(&clean_scores, &clean_scores, target)
                else {
                    continue;
                };
                let flagged = |score: f64| score > fixed.threshold;
                let detection = (!successful.is_empty()).then(|| {
                    proportion(
                        successful.iter().filter(|&&s| flagged(s)).count(),
                        successful.len(),
                    )
                });
                let defended = rows
                    .iter()
                    .filter(|(_, o)| o.robust || flagged(o.score))
                    .count();
                at_fpr.push(DetectionAtFpr {
                    target_fpr: target,
                    threshold: finite_threshold(fixed.threshold),
                    false_positive_rate: fixed.achieved_fpr,
                    detection,
                    robust_with_guardrail: proportion(defended, rows.len()),
                });
            }
        }
        let rule_detection = detector.rule_threshold.and_then(|_| {
            let judged: Vec<bool> = rows
                .iter()
                .filter(|(index, o)| {
                    clean.by_index.get(index).is_some_and(|c| c.robust) && !o.robust
                })
                .filter_map(|(_, o)| o.rule_rejected)
                .collect();
            (!judged.is_empty())
                .then(|| proportion(judged.iter().filter(|&&r| r).count(), judged.len()))
        });
        result.rows.push(DetectorRow {
            attack: attack_label.clone(),
            norm: attack.norm.to_string(),
            epsilon: epsilon_value(attack.epsilon),
            adaptive: *adaptive,
            successful: successful.len(),
            robust_accuracy: proportion(robust, rows.len()),
            auc,
            at_fpr,
            rule_detection,
            roc,
        });
        result.seconds += seconds(position);
    }
    Ok(results)
}

/// JSON has no infinity: a threshold of ±∞ (every or no clean sample may be flagged) is written
/// as ±`f64::MAX`.
fn finite_threshold(threshold: f64) -> f64 {
    if threshold.is_finite() {
        threshold
    } else if threshold > 0.0 {
        f64::MAX
    } else {
        f64::MIN
    }
}

/// At most [`MAX_ROC_POINTS`] points, evenly spaced along the curve, keeping both ends.
fn thin(points: Vec<[f64; 2]>) -> Vec<[f64; 2]> {
    if points.len() <= MAX_ROC_POINTS {
        return points;
    }
    let last = points.len() - 1;
    (0..MAX_ROC_POINTS)
        .map(|k| points[k * last / (MAX_ROC_POINTS - 1)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_both_ends_and_the_limit() {
        let points: Vec<[f64; 2]> = (0..=1000).map(|i| [i as f64 / 1000.0; 2]).collect();
        let thinned = thin(points);
        assert_eq!(thinned.len(), MAX_ROC_POINTS);
        assert_eq!(thinned[0], [0.0, 0.0]);
        assert_eq!(thinned[MAX_ROC_POINTS - 1], [1.0, 1.0]);
        assert!(thinned.windows(2).all(|w| w[0][0] < w[1][0]));
    }
}
