//! The median-absolute-deviation outlier test Neural Cleanse runs over its per-class mask
//! norms (Wang et al., S&P 2019, §IV-C).
//!
//! For values `v₁ … vₙ` with median `m̃`, `MAD = median(|vᵢ − m̃|)` and the anomaly index of
//! `vᵢ` is `|vᵢ − m̃| / (1.4826·MAD)`. The constant 1.4826 = 1/Φ⁻¹(3/4) makes `1.4826·MAD` a
//! consistent estimator of the standard deviation under normality, so an index above 2 is
//! "more than two standard deviations out", robustly: a single backdoored class cannot drag
//! the median or the MAD the way it drags a mean and a standard deviation.
//!
//! **Median convention.** For an even count the median is the mean of the two middle values
//! (`numpy.median`, which the original Neural Cleanse code uses), not the lower middle value
//! (`torch.median`, which BackdoorBench uses). With 10 classes the two differ, and so can the
//! flagged set (`ain-soph/trojanzoo#139`); we follow the original.
//!
//! **MAD = 0.** When more than half of the values equal the median, the MAD is 0 and the
//! index is 0/0 for the values at the median and x/0 for the rest. We define it as 0 for the
//! values equal to the median and +∞ for every other value: with no spread among the
//! majority, any departure is an outlier. A constant list therefore flags nothing, and
//! nothing is ever NaN.

/// The consistency constant that turns a MAD into a standard-deviation estimate under
/// normality, `1/Φ⁻¹(3/4)`.
pub const MAD_CONSISTENCY: f64 = 1.4826;

/// The outcome of the MAD test over a list of values.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyIndices {
    /// The median of the values (mean of the two middle values for an even count).
    pub median: f64,
    /// The median absolute deviation from [`AnomalyIndices::median`], without the constant.
    pub mad: f64,
    /// `|vᵢ − median| / (1.4826·MAD)` for each value, in input order (see the module docs for
    /// MAD = 0).
    pub indices: Vec<f64>,
}

impl AnomalyIndices {
    /// The MAD test over `values`. `None` for an empty list or a NaN value, which have no
    /// median.
    pub fn of(values: &[f64]) -> Option<Self> {
        let median = median(values)?;
        let deviations: Vec<f64> = values.iter().map(|v| (v - median).abs()).collect();
        let mad = median_of(deviations)?;
        let scale = MAD_CONSISTENCY * mad;
        let indices = values
            .iter()
            .map(|&value| {
                let deviation = (value - median).abs();
                if deviation == 0.0 {
                    0.0
                } else if scale == 0.0 {
                    f64::INFINITY
                } else {
                    deviation / scale
                }
            })
            .collect();
        Some(Self {
            median,
            mad,
            indices,
        })
    }

    /// Positions whose value is below the median and whose index exceeds `threshold`: the
    /// one-sided rule of Neural Cleanse, where a backdoor shows as an unusually *small*
    /// trigger.
    pub fn below_median_outliers(&self, values: &[f64], threshold: f64) -> Vec<usize> {
        self.outliers(values, threshold, |value, median| value < median)
    }

    /// Positions whose value is above the median and whose index exceeds `threshold`.
    pub fn above_median_outliers(&self, values: &[f64], threshold: f64) -> Vec<usize> {
        self.outliers(values, threshold, |value, median| value > median)
    }

    fn outliers(
        &self,
        values: &[f64],
        threshold: f64,
        side: impl Fn(f64, f64) -> bool,
    ) -> Vec<usize> {
        values
            .iter()
            .zip(&self.indices)
            .enumerate()
            .filter(|(_, (&value, &index))| side(value, self.median) && index > threshold)
            .map(|(position, _)| position)
            .collect()
    }
}

/// The median of `values`: the middle value for an odd count, the mean of the two middle
/// values for an even count. `None` for an empty list or one with a NaN.
pub fn median(values: &[f64]) -> Option<f64> {
    median_of(values.to_vec())
}

fn median_of(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn odd_count_known_numbers() {
        // Median 3; deviations 2, 1, 0, 1, 7 → MAD 1.
        let values = [1.0, 2.0, 3.0, 4.0, 10.0];
        let test = AnomalyIndices::of(&values).unwrap();
        assert_eq!(test.median, 3.0);
        assert_eq!(test.mad, 1.0);
        let expected = [2.0, 1.0, 0.0, 1.0, 7.0].map(|d| d / 1.4826);
        for (index, want) in test.indices.iter().zip(expected) {
            assert!(close(*index, want), "{index} vs {want}");
        }
        // 10 is 4.72 scaled MADs above; 1 is 1.35 below — neither is a low-side outlier at 2.
        assert_eq!(test.above_median_outliers(&values, 2.0), vec![4]);
        assert!(test.below_median_outliers(&values, 2.0).is_empty());
    }

    #[test]
    fn even_count_uses_the_mean_of_the_two_middle_values() {
        // Sorted 1, 8, 9, 10, 11, 12: median (9 + 10)/2 = 9.5 (torch.median would give 9).
        // Deviations 8.5, 1.5, 0.5, 0.5, 1.5, 2.5 → sorted 0.5, 0.5, 1.5, 1.5, 2.5, 8.5 →
        // MAD (1.5 + 1.5)/2 = 1.5.
        let values = [10.0, 1.0, 9.0, 11.0, 8.0, 12.0];
        let test = AnomalyIndices::of(&values).unwrap();
        assert_eq!(test.median, 9.5);
        assert_eq!(test.mad, 1.5);
        assert!(close(test.indices[1], 8.5 / (1.4826 * 1.5)));
        assert_eq!(test.below_median_outliers(&values, 2.0), vec![1]);
        assert_eq!(median(&[4.0, 1.0]), Some(2.5));
    }

    #[test]
    fn zero_mad_gives_zero_at_the_median_and_infinity_elsewhere() {
        let values = [5.0, 5.0, 5.0, 1.0];
        let test = AnomalyIndices::of(&values).unwrap();
        assert_eq!((test.median, test.mad), (5.0, 0.0));
        assert_eq!(test.indices, vec![0.0, 0.0, 0.0, f64::INFINITY]);
        assert_eq!(test.below_median_outliers(&values, 2.0), vec![3]);
        let constant = AnomalyIndices::of(&[2.0; 4]).unwrap();
        assert_eq!(constant.indices, vec![0.0; 4]);
        assert!(constant.below_median_outliers(&[2.0; 4], 2.0).is_empty());
    }

    #[test]
    fn no_median_for_empty_or_nan() {
        assert!(AnomalyIndices::of(&[]).is_none());
        assert!(AnomalyIndices::of(&[1.0, f64::NAN]).is_none());
    }
}
