//! Output monitoring: how far the distribution of the model's predicted classes moves from
//! the clean inputs to an attack's adversarial ones, as a monitor watching outputs in batches
//! would see it — the population stability index and the KL divergence — and, when a
//! `confidence` detector scored both, histograms of the top-class probability. Pure functions
//! of the records.
//!
//! Both class distributions are smoothed by adding ½ to every class's count (Jeffreys' prior):
//! `p_k = (n_k + ½) / (n + K/2)`. Without it a class predicted in one batch and never in the
//! other makes either figure infinite; with it, `PSI = KL(a‖c) + KL(c‖a)` exactly (tested).

use gauntlet_reports::detector::{ConfidenceHistograms, DriftResult, CONFIDENCE_BINS};

use crate::aggregate::Aligned;
use crate::detector::ScoredInputs;
use crate::metrics::epsilon_value;
use crate::plan::{Gate, RunPlan, RunPurpose};
use crate::records::{Outcome, SampleRecord};

/// The smoothed class distribution of `counts`.
pub fn smoothed(counts: &[usize]) -> Vec<f64> {
    let total: usize = counts.iter().sum();
    let denominator = total as f64 + 0.5 * counts.len() as f64;
    counts
        .iter()
        .map(|&n| (n as f64 + 0.5) / denominator)
        .collect()
}

/// `KL(p ‖ q) = Σ p_k ln(p_k / q_k)` of the smoothed distributions of two count vectors of the
/// same length, in nats.
pub fn kl(p_counts: &[usize], q_counts: &[usize]) -> f64 {
    let (p, q) = (smoothed(p_counts), smoothed(q_counts));
    p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum()
}

/// The population stability index `Σ (a_k − c_k) ln(a_k / c_k)` of the smoothed
/// distributions.
pub fn psi(clean_counts: &[usize], attacked_counts: &[usize]) -> f64 {
    let (c, a) = (smoothed(clean_counts), smoothed(attacked_counts));
    a.iter().zip(&c).map(|(a, c)| (a - c) * (a / c).ln()).sum()
}

/// Counts of `predictions` over `classes` classes (a prediction past them is left out).
fn counts(predictions: impl Iterator<Item = u32>, classes: usize) -> Vec<usize> {
    let mut counts = vec![0; classes];
    for p in predictions {
        if let Some(count) = counts.get_mut(p as usize) {
            *count += 1;
        }
    }
    counts
}

/// Counts of top-class probabilities `1 − score` (the `confidence` detector's score) over
/// [`CONFIDENCE_BINS`] equal bins of `[0, 1]`.
fn histogram(scores: impl Iterator<Item = f64>) -> Vec<usize> {
    let mut bins = vec![0; CONFIDENCE_BINS];
    for score in scores {
        let confidence = (1.0 - score).clamp(0.0, 1.0);
        let bin = ((confidence * CONFIDENCE_BINS as f64) as usize).min(CONFIDENCE_BINS - 1);
        bins[bin] += 1;
    }
    bins
}

/// One drift result per attack run of the suite, when the plan asks for output monitoring (it
/// has a detector run or a drift gate); empty otherwise.
pub fn aggregate(plan: &RunPlan, aligned: &Aligned, records: &[SampleRecord]) -> Vec<DriftResult> {
    let wanted = plan.runs.iter().any(|r| r.purpose == RunPurpose::Detector)
        || plan
            .gates
            .iter()
            .any(|g| matches!(g, Gate::MinPredictionDrift { .. }));
    if !wanted {
        return Vec::new();
    }
    let classes = plan.class_names.len();
    let clean_counts = counts(aligned.clean.iter().map(|c| c.prediction), classes);
    // The first `confidence` detector's runs, by position.
    let confidence_label = plan.runs.iter().find_map(|r| {
        r.detector
            .as_ref()
            .filter(|d| d.detector == "confidence")
            .map(|_| r.label.clone())
    });
    let scores_of = |position: usize| {
        records
            .iter()
            .filter(move |r| r.run.position() == position)
            .filter_map(|r| match r.outcome {
                Outcome::Detector(d) => Some(d.score),
                _ => None,
            })
    };
    let confidence_run = |scored: &ScoredInputs, epsilon: Option<f64>| {
        let label = confidence_label.as_ref()?;
        plan.runs.iter().position(|r| {
            &r.label == label
                && r.purpose == RunPurpose::Detector
                && r.detector.as_ref().is_some_and(|d| &d.scored == scored)
                && r.attack.as_ref().map(|a| epsilon_value(a.epsilon)) == epsilon
        })
    };
    let clean_confidence = confidence_run(&ScoredInputs::Clean, None);
    aligned
        .attack_runs()
        .map(|run| {
            let attacked_counts = counts(run.covered().map(|o| o.prediction), classes);
            let epsilon = epsilon_value(run.attack.epsilon);
            let attacked_confidence = confidence_run(
                &ScoredInputs::Attack {
                    attack_label: run.label.to_string(),
                    adaptive: false,
                },
                Some(epsilon),
            );
            let confidence = match (clean_confidence, attacked_confidence) {
                (Some(clean), Some(attacked)) => Some(ConfidenceHistograms {
                    clean: histogram(scores_of(clean)),
                    attacked: histogram(scores_of(attacked)),
                }),
                _ => None,
            };
            DriftResult {
                attack: run.label.to_string(),
                norm: run.attack.norm.to_string(),
                epsilon,
                psi: psi(&clean_counts, &attacked_counts),
                kl: kl(&attacked_counts, &clean_counts),
                clean_counts: clean_counts.clone(),
                attacked_counts,
                confidence,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_distributions_do_not_drift() {
        let counts = [10, 0, 5, 85];
        assert_eq!(psi(&counts, &counts), 0.0);
        assert_eq!(kl(&counts, &counts), 0.0);
    }

    #[test]
    fn a_hand_computed_two_class_shift() {
        // Clean (7, 1) → smoothed (7.5, 1.5)/9 = (5/6, 1/6); attacked (1, 7) → (1/6, 5/6).
        let (c, a) = ([7, 1], [1, 7]);
        let expected_kl = (1.0 / 6.0) * (0.2f64).ln() + (5.0 / 6.0) * 5f64.ln();
        assert!((kl(&a, &c) - expected_kl).abs() < 1e-12);
        // PSI = (1/6 − 5/6) ln(1/5) + (5/6 − 1/6) ln 5 = (4/3) ln 5.
        assert!((psi(&c, &a) - 4.0 / 3.0 * 5f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn psi_is_the_symmetrised_kl_and_both_are_non_negative() {
        // Deterministic pseudo-random counts (a multiplicative hash of the position).
        let count = |i: usize, j: usize, salt: usize| (i * 2_654_435_761 + j * 40_503 + salt) % 50;
        for i in 0..200 {
            let c: Vec<usize> = (0..6).map(|j| count(i, j, 1)).collect();
            let a: Vec<usize> = (0..6).map(|j| count(i, j, 17)).collect();
            let symmetric = kl(&a, &c) + kl(&c, &a);
            assert!((psi(&c, &a) - symmetric).abs() < 1e-12);
            assert!(kl(&a, &c) >= 0.0 && psi(&c, &a) >= 0.0);
        }
    }

    #[test]
    fn histogram_bins_the_top_class_probability() {
        // Scores 1 − p: p = 1 → last bin, p = 0.05 → first, p = 0.55 → bin 5.
        let bins = histogram([0.0, 0.95, 0.45, 0.45].into_iter());
        assert_eq!(bins.iter().sum::<usize>(), 4);
        assert_eq!((bins[9], bins[0], bins[5]), (1, 1, 2));
    }
}
