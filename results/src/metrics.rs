//! Scores with their uncertainty: proportions with Wilson intervals, per-class accuracy,
//! perturbation statistics. A robust accuracy measured on 500 samples is not a bare number.

use gauntlet_reports::{ClassAccuracy, PerturbationStats, Proportion};

/// z for a two-sided 95% interval.
const Z_95: f64 = 1.959_963_984_540_054;

/// `successes / total` with its 95% Wilson score interval.
///
/// Wilson rather than the normal approximation because robust accuracies sit near 0 and 1,
/// where the normal interval leaves [0, 1] and undercovers.
pub fn proportion(successes: usize, total: usize) -> Proportion {
    if total == 0 {
        return Proportion {
            value: 0.0,
            successes,
            total,
            ci95_low: 0.0,
            ci95_high: 1.0,
        };
    }
    let n = total as f64;
    let p = successes as f64 / n;
    let z2 = Z_95 * Z_95;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half_width = Z_95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    // At p = 0 (p = 1) the Wilson bound is exactly 0 (1); the closed form only rounds near it.
    let ci95_low = if successes == 0 {
        0.0
    } else {
        (centre - half_width).max(0.0)
    };
    let ci95_high = if successes >= total {
        1.0
    } else {
        (centre + half_width).min(1.0)
    };
    Proportion {
        value: p,
        successes,
        total,
        ci95_low,
        ci95_high,
    }
}

/// How many flags are set.
pub fn count_true(flags: &[bool]) -> usize {
    flags.iter().filter(|&&flag| flag).count()
}

/// The distinct labels in first-seen order.
pub fn distinct<'a>(labels: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen: Vec<&str> = Vec::new();
    for label in labels {
        if !seen.contains(&label) {
            seen.push(label);
        }
    }
    seen
}

/// An ε as reports show it: the shortest decimal that reads back as the same f32, so a suite's
/// `0.01` appears as `0.01` and not as `0.009999999776482582`.
pub fn epsilon_value(epsilon: f32) -> f64 {
    epsilon
        .to_string()
        .parse()
        .unwrap_or_else(|_| f64::from(epsilon))
}

/// Accuracy per class from per-sample correctness.
pub fn per_class(labels: &[u32], correct: &[bool], class_names: &[String]) -> Vec<ClassAccuracy> {
    let classes = class_names.len();
    let mut hits = vec![0usize; classes];
    let mut totals = vec![0usize; classes];
    for (&label, &ok) in labels.iter().zip(correct) {
        let class = label as usize;
        if class < classes {
            totals[class] += 1;
            hits[class] += usize::from(ok);
        }
    }
    (0..classes)
        .filter(|&class| totals[class] > 0)
        .map(|class| ClassAccuracy {
            class,
            name: class_names[class].clone(),
            accuracy: proportion(hits[class], totals[class]),
        })
        .collect()
}

/// Mean, median and max of per-sample norms, plus the largest single-coordinate change.
pub fn perturbation_stats(norms: &[f32], max_linf: f32) -> PerturbationStats {
    if norms.is_empty() {
        return PerturbationStats {
            mean: 0.0,
            median: 0.0,
            max: 0.0,
            max_linf: f64::from(max_linf),
        };
    }
    let mut sorted: Vec<f64> = norms.iter().map(|&n| f64::from(n)).collect();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    let median = if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    };
    PerturbationStats {
        mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        median,
        max: sorted[sorted.len() - 1],
        max_linf: f64::from(max_linf),
    }
}

/// The `q`-quantile of ascending `sorted` values by linear interpolation between the closest
/// ranks (numpy's default, "type 7"): position `q·(n − 1)`. `None` for no values.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let position = q.clamp(0.0, 1.0) * last as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    let fraction = position - below as f64;
    Some(sorted[below] + (sorted[above] - sorted[below]) * fraction)
}

#[cfg(test)]
mod tests {
    #[test]
    fn quantiles_interpolate_like_numpy() {
        // numpy.quantile([1, 2, 4, 8], [0, .1, .25, .5, .9, 1]) = [1, 1.3, 1.75, 3, 6.8, 8].
        let values = [1.0, 2.0, 4.0, 8.0];
        for (q, expected) in [
            (0.0, 1.0),
            (0.1, 1.3),
            (0.25, 1.75),
            (0.5, 3.0),
            (0.9, 6.8),
            (1.0, 8.0),
        ] {
            let got = quantile(&values, q).unwrap();
            assert!(
                (got - expected).abs() < 1e-12,
                "q = {q}: {got} vs {expected}"
            );
        }
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[2.5], 0.9), Some(2.5));
    }

    use super::*;

    #[test]
    fn wilson_interval_matches_the_textbook_value() {
        // 45 of 50 (p = 0.9): the Wilson 95% interval is [0.7864, 0.9565].
        let p = proportion(45, 50);
        assert!((p.value - 0.9).abs() < 1e-12);
        assert!((p.ci95_low - 0.7864).abs() < 5e-4, "{}", p.ci95_low);
        assert!((p.ci95_high - 0.9565).abs() < 5e-4, "{}", p.ci95_high);
    }

    #[test]
    fn wilson_interval_stays_inside_zero_one_at_the_edges() {
        let none = proportion(0, 500);
        assert_eq!(none.ci95_low, 0.0);
        assert!(none.ci95_high > 0.0 && none.ci95_high < 0.01);
        let all = proportion(500, 500);
        assert_eq!(all.ci95_high, 1.0);
        assert!(all.ci95_low > 0.99 && all.ci95_low < 1.0);
    }

    #[test]
    fn interval_narrows_with_more_samples() {
        let small = proportion(50, 100);
        let large = proportion(500, 1000);
        assert!(large.ci95_high - large.ci95_low < small.ci95_high - small.ci95_low);
    }

    #[test]
    fn epsilons_keep_their_decimal_spelling() {
        assert_eq!(epsilon_value(0.01), 0.01);
        assert_eq!(epsilon_value(8.0 / 255.0) as f32, 8.0 / 255.0);
        assert_eq!(epsilon_value(0.0), 0.0);
    }

    #[test]
    fn per_class_counts_each_class_separately() {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let rows = per_class(&[0, 0, 1, 1, 1], &[true, false, true, true, false], &names);
        assert_eq!(rows.len(), 2, "class c has no samples and is left out");
        assert_eq!(rows[0].accuracy.successes, 1);
        assert_eq!(rows[0].accuracy.total, 2);
        assert_eq!(rows[1].accuracy.successes, 2);
        assert_eq!(rows[1].accuracy.total, 3);
    }

    #[test]
    fn perturbation_median_of_even_count_averages_the_middle_pair() {
        let stats = perturbation_stats(&[0.4, 0.1, 0.3, 0.2], 0.4);
        assert!((stats.median - 0.25).abs() < 1e-7);
        assert!((stats.mean - 0.25).abs() < 1e-7);
        assert!((stats.max - 0.4).abs() < 1e-7);
    }
}
