//! How well a detector's scores separate attacked from clean inputs. Pure functions of two
//! score lists (higher = more suspicious); no model.
//!
//! - [`roc_auc`]: the probability that an attacked sample scores above a clean one, ties
//!   counting one half — the Mann–Whitney U statistic divided by `n_clean · n_attacked`. It
//!   equals the trapezoidal area under [`roc_curve`].
//! - [`detection_at_fpr`]: the threshold is fixed on clean scores alone, as a deployment
//!   would fix it, and the detection rate is the share of attacked scores above it.
//!
//! Quantile convention: for a target false-positive rate α on `n` clean scores, at most
//! `m = ⌊α·n⌋` clean samples may be flagged, so the threshold is the `(n − m)`-th smallest
//! clean score (NumPy's `method="inverted_cdf"` quantile at `1 − α`) and a sample is flagged
//! when its score is *strictly above* it. The achieved clean false-positive rate is at most
//! α, lower when clean scores tie at the threshold; it is reported next to the detection
//! rate.

use crate::AttackError;

/// The detection rate at one target false-positive rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectionAtFpr {
    /// The target false-positive rate α.
    pub target_fpr: f64,
    /// Scores strictly above this are flagged (`-∞` when every clean sample may be flagged).
    pub threshold: f64,
    /// The share of clean scores above the threshold (≤ α).
    pub achieved_fpr: f64,
    /// The share of attacked scores above the threshold.
    pub detection_rate: f64,
}

/// One point of a ROC curve: flagging scores `≥ threshold` gives these rates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RocPoint {
    pub threshold: f64,
    pub false_positive_rate: f64,
    pub true_positive_rate: f64,
}

/// An error unless both lists are non-empty and every score is finite or ±∞ (no NaN).
fn check_scores(clean: &[f64], attacked: &[f64]) -> Result<(), AttackError> {
    for (what, scores) in [("clean scores", clean), ("attacked scores", attacked)] {
        if scores.is_empty() {
            return Err(AttackError::invalid_parameter(what, "no scores to compare"));
        }
        if let Some(i) = scores.iter().position(|s| s.is_nan()) {
            return Err(AttackError::invalid_parameter(
                what,
                format!("score {i} is NaN"),
            ));
        }
    }
    Ok(())
}

/// ROC AUC of attacked (positive) against clean (negative) scores: `P(a > c) + ½·P(a = c)`
/// over all pairs, computed from mid-ranks in `O(n log n)`.
pub fn roc_auc(clean: &[f64], attacked: &[f64]) -> Result<f64, AttackError> {
    check_scores(clean, attacked)?;
    // (score, is_attacked), sorted; tied groups get their mean rank (1-based).
    let mut all: Vec<(f64, bool)> = clean
        .iter()
        .map(|&s| (s, false))
        .chain(attacked.iter().map(|&s| (s, true)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < all.len() {
        let mut end = start;
        while end < all.len() && all[end].0 == all[start].0 {
            end += 1;
        }
        // Ranks start+1 ..= end share their mean.
        let mid_rank = (start + 1 + end) as f64 / 2.0;
        let positives = all[start..end].iter().filter(|(_, a)| *a).count();
        rank_sum += mid_rank * positives as f64;
        start = end;
    }
    let (n_pos, n_neg) = (attacked.len() as f64, clean.len() as f64);
    let u = rank_sum - n_pos * (n_pos + 1.0) / 2.0;
    Ok(u / (n_pos * n_neg))
}

/// The detection rate at target false-positive rate `target_fpr` ∈ [0, 1] (module docs: the
/// threshold is the clean `inverted_cdf` quantile at `1 − α`, flagged means strictly above).
pub fn detection_at_fpr(
    clean: &[f64],
    attacked: &[f64],
    target_fpr: f64,
) -> Result<DetectionAtFpr, AttackError> {
    check_scores(clean, attacked)?;
    if !(0.0..=1.0).contains(&target_fpr) {
        return Err(AttackError::invalid_parameter(
            "false_positive_rate",
            format!("must be in [0, 1], got {target_fpr}"),
        ));
    }
    let mut sorted = clean.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    // The tolerance keeps 0.05·100 from flooring to 4 through rounding.
    let allowed = ((target_fpr * n as f64) + 1e-9).floor() as usize;
    let threshold = if allowed >= n {
        f64::NEG_INFINITY
    } else {
        sorted[n - allowed - 1]
    };
    let above = |scores: &[f64]| scores.iter().filter(|&&s| s > threshold).count();
    Ok(DetectionAtFpr {
        target_fpr,
        threshold,
        achieved_fpr: above(clean) as f64 / n as f64,
        detection_rate: above(attacked) as f64 / attacked.len() as f64,
    })
}

/// The ROC curve: one point per distinct score, from the highest threshold down, starting at
/// `(0, 0)` (threshold `+∞`) and ending at `(1, 1)`. Flagging means `score ≥ threshold`, so a
/// run of tied scores moves the curve diagonally, which is what makes the trapezoidal area
/// equal [`roc_auc`].
pub fn roc_curve(clean: &[f64], attacked: &[f64]) -> Result<Vec<RocPoint>, AttackError> {
    check_scores(clean, attacked)?;
    let mut all: Vec<(f64, bool)> = clean
        .iter()
        .map(|&s| (s, false))
        .chain(attacked.iter().map(|&s| (s, true)))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (n_pos, n_neg) = (attacked.len() as f64, clean.len() as f64);
    let mut points = vec![RocPoint {
        threshold: f64::INFINITY,
        false_positive_rate: 0.0,
        true_positive_rate: 0.0,
    }];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut start = 0;
    while start < all.len() {
        let mut end = start;
        while end < all.len() && all[end].0 == all[start].0 {
            if all[end].1 {
                tp += 1;
            } else {
                fp += 1;
            }
            end += 1;
        }
        points.push(RocPoint {
            threshold: all[start].0,
            false_positive_rate: fp as f64 / n_neg,
            true_positive_rate: tp as f64 / n_pos,
        });
        start = end;
    }
    Ok(points)
}

/// The trapezoidal area under `points` (in order of increasing false-positive rate).
pub fn area_under(points: &[RocPoint]) -> f64 {
    points
        .windows(2)
        .map(|w| {
            (w[1].false_positive_rate - w[0].false_positive_rate)
                * (w[1].true_positive_rate + w[0].true_positive_rate)
                / 2.0
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    /// AUC by the definition: all pairs, ties one half.
    fn pairwise_auc(clean: &[f64], attacked: &[f64]) -> f64 {
        let mut sum = 0.0;
        for a in attacked {
            for c in clean {
                sum += if a > c {
                    1.0
                } else if a == c {
                    0.5
                } else {
                    0.0
                };
            }
        }
        sum / (clean.len() * attacked.len()) as f64
    }

    #[test]
    fn separable_scores_have_auc_one_and_reversed_zero() {
        let clean = [0.1, 0.2, 0.3];
        let attacked = [0.5, 0.9];
        assert_eq!(roc_auc(&clean, &attacked).unwrap(), 1.0);
        assert_eq!(roc_auc(&attacked, &clean).unwrap(), 0.0);
        let at = detection_at_fpr(&clean, &attacked, 0.0).unwrap();
        assert_eq!(
            (at.threshold, at.detection_rate, at.achieved_fpr),
            (0.3, 1.0, 0.0)
        );
    }

    #[test]
    fn a_constant_detector_has_auc_one_half_and_detects_nothing_at_low_fpr() {
        let clean = [2.0; 7];
        let attacked = [2.0; 5];
        assert_eq!(roc_auc(&clean, &attacked).unwrap(), 0.5);
        let at = detection_at_fpr(&clean, &attacked, 0.05).unwrap();
        assert_eq!((at.detection_rate, at.achieved_fpr), (0.0, 0.0));
        assert_eq!(area_under(&roc_curve(&clean, &attacked).unwrap()), 0.5);
    }

    // Hand computed: clean {1, 2, 2, 3}, attacked {2, 3, 4}. Pairs (a, c): a = 2 beats 1,
    // ties 2 and 2 → 1 + 0.5 + 0.5 = 2; a = 3 beats 1, 2, 2, ties 3 → 3.5; a = 4 beats all → 4.
    // U = 9.5 over 12 pairs.
    #[test]
    fn a_small_example_with_ties_matches_the_hand_computed_mann_whitney_statistic() {
        let clean = [1.0, 2.0, 2.0, 3.0];
        let attacked = [2.0, 3.0, 4.0];
        let auc = roc_auc(&clean, &attacked).unwrap();
        assert!((auc - 9.5 / 12.0).abs() < 1e-15, "{auc}");
        let curve = roc_curve(&clean, &attacked).unwrap();
        let rates: Vec<(f64, f64)> = curve
            .iter()
            .map(|p| (p.false_positive_rate, p.true_positive_rate))
            .collect();
        assert_eq!(
            rates,
            [
                (0.0, 0.0),
                (0.0, 1.0 / 3.0),
                (0.25, 2.0 / 3.0),
                (0.75, 1.0),
                (1.0, 1.0)
            ]
        );
        assert!((area_under(&curve) - auc).abs() < 1e-15);
        // α = 0.25 on 4 clean scores: one may be flagged, threshold = 3rd smallest = 2,
        // flagged strictly above: clean {3} → 0.25, attacked {3, 4} → 2/3.
        let at = detection_at_fpr(&clean, &attacked, 0.25).unwrap();
        assert_eq!(at.threshold, 2.0);
        assert_eq!(at.achieved_fpr, 0.25);
        assert!((at.detection_rate - 2.0 / 3.0).abs() < 1e-15);
        // α = 0.5: two may be flagged, but the 2nd smallest is tied with the 3rd, so the
        // threshold 2 flags only one clean score — the achieved rate is below the target.
        let at = detection_at_fpr(&clean, &attacked, 0.5).unwrap();
        assert_eq!((at.threshold, at.achieved_fpr), (2.0, 0.25));
        // α = 1: everything is flagged.
        let at = detection_at_fpr(&clean, &attacked, 1.0).unwrap();
        assert_eq!((at.achieved_fpr, at.detection_rate), (1.0, 1.0));
    }

    #[test]
    fn identical_distributions_give_auc_near_one_half_and_detection_near_the_fpr() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let normal = Normal::new(0.0, 1.0).unwrap();
        let clean: Vec<f64> = (0..4000).map(|_| normal.sample(&mut rng)).collect();
        let attacked: Vec<f64> = (0..4000).map(|_| normal.sample(&mut rng)).collect();
        let auc = roc_auc(&clean, &attacked).unwrap();
        // The AUC's standard deviation under the null is √((n+m+1)/(12nm)) ≈ 0.0065.
        assert!((auc - 0.5).abs() < 4.0 * 0.0065, "{auc}");
        for alpha in [0.01, 0.05] {
            let at = detection_at_fpr(&clean, &attacked, alpha).unwrap();
            assert!((at.achieved_fpr - alpha).abs() < 1e-12, "{at:?}");
            let sd = (alpha * (1.0 - alpha) / 4000.0).sqrt();
            assert!((at.detection_rate - alpha).abs() < 5.0 * sd, "{at:?}");
        }
    }

    #[test]
    fn auc_by_ranks_matches_the_pairwise_definition_and_the_curve_area() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let normal = Normal::new(0.0, 1.0).unwrap();
        // Rounded to one decimal so that there are many ties.
        let round = |v: f64| (v * 10.0).round() / 10.0;
        let clean: Vec<f64> = (0..300).map(|_| round(normal.sample(&mut rng))).collect();
        let attacked: Vec<f64> = (0..200)
            .map(|_| round(normal.sample(&mut rng) + 0.7))
            .collect();
        let auc = roc_auc(&clean, &attacked).unwrap();
        assert!((auc - pairwise_auc(&clean, &attacked)).abs() < 1e-12);
        assert!((auc - area_under(&roc_curve(&clean, &attacked).unwrap())).abs() < 1e-12);
        // Shift 0.7 of unit Gaussians: AUC = Φ(0.7/√2) ≈ 0.6897.
        assert!((auc - 0.6897).abs() < 0.06, "{auc}");
    }

    #[test]
    fn nan_scores_empty_lists_and_bad_rates_are_named_errors() {
        let error = roc_auc(&[0.0, f64::NAN], &[1.0]).unwrap_err().to_string();
        assert!(
            error.contains("`clean scores`") && error.contains("score 1"),
            "{error}"
        );
        let error = roc_auc(&[0.0], &[]).unwrap_err().to_string();
        assert!(error.contains("`attacked scores`"), "{error}");
        let error = detection_at_fpr(&[0.0], &[1.0], f64::NAN)
            .unwrap_err()
            .to_string();
        assert!(error.contains("`false_positive_rate`"), "{error}");
    }
}
