//! The z-score input validator: the common first guardrail. Per feature (pixel), the mean and
//! standard deviation over clean training inputs; an input whose features lie too many
//! standard deviations away is rejected.
//!
//! ## What it does
//!
//! `fit` computes per feature `μ_j` and the population standard deviation `σ_j` (divided by
//! `n`, NumPy's default `ddof = 0`) over the clean inputs. `score` computes
//! `z_j = (x_j − μ_j) / max(σ_j, std_floor)` and aggregates:
//!
//! - `aggregation = "max_abs"` (default): `max_j |z_j|`; the validator's own rule rejects
//!   when it exceeds `threshold`.
//! - `aggregation = "share_over_threshold"`: the fraction of features with `|z_j| > threshold`;
//!   the rule rejects when it exceeds `max_share`.
//!
//! `std_floor` keeps a feature that is constant on the training data (a black border pixel)
//! from dividing by zero; any change of such a feature then scores at least
//! `|Δ| / std_floor`.
//!
//! ## Known-answer tests
//!
//! On features drawn from a known Gaussian the fitted mean and deviation match it, and the
//! rule's false-positive rate at threshold 3 matches `1 − (1 − 2Φ(−3))^d`; the z-score of a
//! point against data with exact mean and deviation is exact.

use serde::Deserialize;

use super::{
    check_finite, check_finite_parameter, check_width, Detector, DetectorEntry, DetectorNeeds,
    Observations,
};
use crate::params::parse_params;
use crate::{AttackError, ParameterDoc};

/// The registry entry.
pub const ENTRY: DetectorEntry = DetectorEntry {
    name: "zscore",
    summary: "Input validator: per-feature z-scores against the clean training mean and standard deviation, aggregated as max |z| or the share of features over a threshold",
    reference: "Common practice for input validation (per-feature standardisation against the training distribution); threshold 3 is the usual default",
    parameters: &[
        ParameterDoc { name: "threshold", default: "3.0", description: "|z| above which a feature is out of range; `max_abs` rejects an input whose largest |z| exceeds it." },
        ParameterDoc { name: "aggregation", default: "\"max_abs\"", description: "How per-feature z-scores become one score: `\"max_abs\"` or `\"share_over_threshold\"`." },
        ParameterDoc { name: "max_share", default: "0.0", description: "Only with `share_over_threshold`: the rule rejects an input whose share of out-of-range features exceeds this." },
        ParameterDoc { name: "std_floor", default: "0.001", description: "Smallest standard deviation divided by, so that features constant on clean data do not divide by zero." },
    ],
    needs: DetectorNeeds { inputs: true, logits: false, penultimate: false, fit_labels: false },
    build,
};

/// How the per-feature z-scores are aggregated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    MaxAbs,
    ShareOverThreshold,
}

/// The suite-file parameters.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub threshold: f64,
    pub aggregation: Aggregation,
    pub max_share: f64,
    pub std_floor: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            threshold: 3.0,
            aggregation: Aggregation::MaxAbs,
            max_share: 0.0,
            std_floor: 1e-3,
        }
    }
}

/// The fitted statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

/// The validator with validated parameters, fitted or not.
#[derive(Debug, Clone)]
pub struct ZScore {
    params: Params,
    fitted: Option<Fitted>,
}

impl ZScore {
    /// Errors name the bad key (a NaN threshold is an error).
    pub fn new(params: Params) -> Result<Self, AttackError> {
        check_finite_parameter("threshold", params.threshold)?;
        if params.threshold < 0.0 {
            return Err(AttackError::invalid_parameter(
                "threshold",
                format!("must be ≥ 0, got {}", params.threshold),
            ));
        }
        check_finite_parameter("max_share", params.max_share)?;
        crate::trigger_scan::check_fraction("max_share", params.max_share)?;
        check_finite_parameter("std_floor", params.std_floor)?;
        if params.std_floor <= 0.0 {
            return Err(AttackError::invalid_parameter(
                "std_floor",
                format!("must be > 0, got {}", params.std_floor),
            ));
        }
        Ok(Self {
            params,
            fitted: None,
        })
    }

    /// The fitted mean and standard deviation, once fitted.
    pub fn fitted(&self) -> Option<&Fitted> {
        self.fitted.as_ref()
    }

    /// The region the validator's own rule accepts, for `aggregation = "max_abs"`: per feature
    /// the interval `μ_j ± threshold · max(σ_j, std_floor)`, shrunk by a relative 1e-9 so
    /// that rounding in the z-score never lands a point of it on the rejected side. This is
    /// what an adaptive attack projects into. The `share_over_threshold` rule's region is not
    /// a box, so it is an error naming `aggregation`.
    pub fn accept_region(&self) -> Result<Vec<(f64, f64)>, AttackError> {
        let fitted = self.fitted.as_ref().ok_or(AttackError::DetectorNotFitted {
            detector: ENTRY.name,
        })?;
        if self.params.aggregation != Aggregation::MaxAbs {
            return Err(AttackError::invalid_parameter(
                "aggregation",
                "only `max_abs` accepts a box of inputs; `share_over_threshold` has no box to \
                 project into",
            ));
        }
        let width = self.params.threshold * (1.0 - 1e-9);
        Ok(fitted
            .mean
            .iter()
            .zip(&fitted.std)
            .map(|(m, s)| {
                let half = width * s.max(self.params.std_floor);
                (m - half, m + half)
            })
            .collect())
    }

    /// The Euclidean projection of `point` onto the inputs within L∞ distance `epsilon` of
    /// `centre`, inside `range` (the pixel box, e.g. `(0, 1)`) and accepted by the validator
    /// ([`Self::accept_region`]). The three are boxes, so the projection clamps each feature
    /// to the intersection of its intervals. `Ok(None)` when that intersection is empty for
    /// some feature: no input within ε of `centre` passes the validator — the validator
    /// rejects it whatever the attacker does.
    pub fn project_linf(
        &self,
        centre: &[f64],
        point: &[f64],
        epsilon: f64,
        range: (f64, f64),
    ) -> Result<Option<Vec<f64>>, AttackError> {
        let region = self.accept_region()?;
        for (what, length) in [("centre", centre.len()), ("point", point.len())] {
            if length != region.len() {
                return Err(AttackError::ShapeMismatch {
                    what: if what == "centre" {
                        "features of the projection's centre vs the fitted validator"
                    } else {
                        "features of the projected point vs the fitted validator"
                    },
                    expected: vec![region.len()],
                    actual: vec![length],
                });
            }
        }
        check_finite_parameter("epsilon", epsilon)?;
        let mut projected = Vec::with_capacity(point.len());
        for ((&(accept_lo, accept_hi), &c), &p) in region.iter().zip(centre).zip(point) {
            let lo = accept_lo.max(c - epsilon).max(range.0);
            let hi = accept_hi.min(c + epsilon).min(range.1);
            if lo > hi {
                return Ok(None);
            }
            projected.push(p.clamp(lo, hi));
        }
        Ok(Some(projected))
    }

    /// Per-feature z-scores of one input.
    fn z(&self, fitted: &Fitted, row: &[f64]) -> Vec<f64> {
        let floor = self.params.std_floor;
        row.iter()
            .zip(&fitted.mean)
            .zip(&fitted.std)
            .map(|((x, m), s)| (x - m) / s.max(floor))
            .collect()
    }
}

fn build(params: &toml::Table) -> Result<Box<dyn Detector>, AttackError> {
    Ok(Box::new(ZScore::new(parse_params(params)?)?))
}

impl Detector for ZScore {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn needs(&self) -> DetectorNeeds {
        ENTRY.needs
    }

    fn fit(&mut self, clean: &Observations) -> Result<(), AttackError> {
        let inputs = Observations::require(&clean.inputs, ENTRY.name, "inputs")?;
        check_finite(ENTRY.name, "clean input", inputs)?;
        if inputs.rows() == 0 {
            return Err(AttackError::invalid_parameter(
                "clean inputs",
                "the z-score validator needs at least one clean input to fit",
            ));
        }
        let n = inputs.rows() as f64;
        let mut mean = vec![0.0; inputs.cols()];
        for row in inputs.iter_rows() {
            mean.iter_mut().zip(row).for_each(|(m, x)| *m += x);
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0.0; inputs.cols()];
        for row in inputs.iter_rows() {
            var.iter_mut()
                .zip(row.iter().zip(&mean))
                .for_each(|(v, (x, m))| *v += (x - m) * (x - m));
        }
        let std = var.into_iter().map(|v| (v / n).sqrt()).collect();
        self.fitted = Some(Fitted { mean, std });
        Ok(())
    }

    fn score(&self, batch: &Observations) -> Result<Vec<f64>, AttackError> {
        let fitted = self
            .fitted
            .as_ref()
            .ok_or(AttackError::DetectorNotFitted {
                detector: ENTRY.name,
            })?;
        let inputs = Observations::require(&batch.inputs, ENTRY.name, "inputs")?;
        check_width(
            "features of the scored inputs vs the clean inputs the z-score validator was fitted on",
            fitted.mean.len(),
            inputs,
        )?;
        check_finite(ENTRY.name, "input", inputs)?;
        let threshold = self.params.threshold;
        Ok(inputs
            .iter_rows()
            .map(|row| {
                let z = self.z(fitted, row).into_iter();
                match self.params.aggregation {
                    Aggregation::MaxAbs => z.map(f64::abs).fold(0.0, f64::max),
                    Aggregation::ShareOverThreshold => {
                        z.filter(|z| z.abs() > threshold).count() as f64 / row.len().max(1) as f64
                    }
                }
            })
            .collect())
    }

    fn rule_threshold(&self) -> Option<f64> {
        Some(match self.params.aggregation {
            Aggregation::MaxAbs => self.params.threshold,
            Aggregation::ShareOverThreshold => self.params.max_share,
        })
    }

    fn accept_box(&self) -> Option<Result<Vec<(f64, f64)>, AttackError>> {
        (self.params.aggregation == Aggregation::MaxAbs).then(|| self.accept_region())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::Matrix;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    fn inputs(rows: usize, cols: usize, values: Vec<f64>) -> Observations {
        Observations {
            inputs: Some(Matrix::new("inputs", rows, cols, values).unwrap()),
            ..Observations::default()
        }
    }

    fn gaussian(rows: usize, mean: &[f64], std: &[f64], seed: u64) -> Observations {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut values = Vec::new();
        for _ in 0..rows {
            for (m, s) in mean.iter().zip(std) {
                values.push(Normal::new(*m, *s).unwrap().sample(&mut rng));
            }
        }
        inputs(rows, mean.len(), values)
    }

    fn build_with(params: &str) -> ZScore {
        ZScore::new(parse_params(&toml::from_str(params).unwrap()).unwrap()).unwrap()
    }

    #[test]
    fn z_scores_against_exact_mean_and_deviation_are_exact() {
        // Feature 0: {1, 3} → μ = 2, σ = 1. Feature 1: {10, 10} → σ = 0, floored.
        let mut detector = build_with("std_floor = 0.5");
        detector.fit(&inputs(2, 2, vec![1.0, 10.0, 3.0, 10.0])).unwrap();
        let fitted = detector.fitted().unwrap();
        assert_eq!((fitted.mean.clone(), fitted.std.clone()), (vec![2.0, 10.0], vec![1.0, 0.0]));
        // (5 − 2)/1 = 3 and (9 − 10)/0.5 = −2 → max |z| = 3; (−2, 11) → 4 and 2 → 4.
        let scores = detector
            .score(&inputs(2, 2, vec![5.0, 9.0, -2.0, 11.0]))
            .unwrap();
        assert_eq!(scores, [3.0, 4.0]);
        let mut share = build_with("aggregation = \"share_over_threshold\"\nthreshold = 2.5\nstd_floor = 0.5");
        share.fit(&inputs(2, 2, vec![1.0, 10.0, 3.0, 10.0])).unwrap();
        let scores = share.score(&inputs(2, 2, vec![5.0, 9.0, -2.0, 12.0])).unwrap();
        // |z| = (3, 2) → one of two over 2.5; (4, 4) → both.
        assert_eq!(scores, [0.5, 1.0]);
    }

    #[test]
    fn on_a_known_gaussian_the_fit_and_the_false_positive_rate_match_the_closed_form() {
        let mean = [0.2, -1.0, 5.0, 0.0];
        let std = [0.1, 2.0, 0.5, 1.0];
        let mut detector = build_with("");
        detector.fit(&gaussian(20_000, &mean, &std, 1)).unwrap();
        let fitted = detector.fitted().unwrap();
        for j in 0..4 {
            // Standard errors: σ/√n for the mean, σ/√(2n) for the deviation.
            assert!((fitted.mean[j] - mean[j]).abs() < 5.0 * std[j] / 20_000f64.sqrt());
            assert!((fitted.std[j] - std[j]).abs() < 5.0 * std[j] / 40_000f64.sqrt());
        }
        let fresh = gaussian(20_000, &mean, &std, 2);
        let scores = detector.score(&fresh).unwrap();
        let threshold = detector.rule_threshold().unwrap();
        assert_eq!(threshold, 3.0);
        let rate = scores.iter().filter(|&&s| s > threshold).count() as f64 / 20_000.0;
        // P(|Z| > 3) = 2Φ(−3) = 0.002699796; four independent features.
        let tail: f64 = 0.002_699_796_063_260_2;
        let expected = 1.0 - (1.0 - tail).powi(4);
        let sd = (expected * (1.0 - expected) / 20_000.0).sqrt();
        assert!((rate - expected).abs() < 5.0 * sd, "{rate} vs {expected}");
        // The share over the threshold averages the per-feature tail probability.
        let mut share = build_with("aggregation = \"share_over_threshold\"");
        share.fit(&gaussian(20_000, &mean, &std, 1)).unwrap();
        let mean_share = share.score(&fresh).unwrap().iter().sum::<f64>() / 20_000.0;
        let sd = (tail * (1.0 - tail) / 80_000.0).sqrt();
        assert!((mean_share - tail).abs() < 5.0 * sd, "{mean_share} vs {tail}");
    }

    #[test]
    fn projecting_into_the_accept_region_gives_inputs_the_validator_accepts() {
        use rand::Rng;
        let mean = [0.3, 0.5, 0.9, 0.0];
        let std = [0.1, 0.2, 0.05, 0.01];
        let mut detector = build_with("");
        detector.fit(&gaussian(5_000, &mean, &std, 3)).unwrap();
        let region = detector.accept_region().unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        let (mut feasible, mut infeasible) = (0, 0);
        for _ in 0..2_000 {
            let centre: Vec<f64> = (0..4).map(|_| rng.random::<f64>()).collect();
            let point: Vec<f64> = (0..4).map(|_| rng.random::<f64>()).collect();
            let epsilon = 0.3;
            match detector.project_linf(&centre, &point, epsilon, (0.0, 1.0)).unwrap() {
                Some(projected) => {
                    feasible += 1;
                    let batch = inputs(1, 4, projected.clone());
                    let score = detector.score(&batch).unwrap()[0];
                    assert!(score <= detector.rule_threshold().unwrap(), "{score}");
                    for j in 0..4 {
                        assert!((projected[j] - centre[j]).abs() <= epsilon + 1e-15);
                        assert!((0.0..=1.0).contains(&projected[j]));
                        // A feature already inside every interval is left alone.
                        let inside = (point[j] - centre[j]).abs() <= epsilon
                            && (region[j].0..=region[j].1).contains(&point[j]);
                        if inside {
                            assert_eq!(projected[j], point[j]);
                        }
                    }
                }
                None => {
                    infeasible += 1;
                    // Some feature's ε-interval misses its accept interval.
                    assert!((0..4).any(|j| centre[j] + epsilon < region[j].0
                        || centre[j] - epsilon > region[j].1));
                }
            }
        }
        // Feature 3 accepts only [−0.03, 0.03] (clipped to [0, 0.03]): a centre above 0.33
        // cannot reach it, so both cases occur.
        assert!(feasible > 100 && infeasible > 100, "{feasible} {infeasible}");
        let share = build_with("aggregation = \"share_over_threshold\"");
        assert!(share.accept_region().is_err());
    }

    #[test]
    fn bad_parameters_shapes_and_order_are_named_errors() {
        let table: toml::Table = toml::from_str("threshold = nan").unwrap();
        let error = (ENTRY.build)(&table).err().unwrap().to_string();
        assert!(error.contains("`threshold`") && error.contains("NaN"), "{error}");
        let table: toml::Table = toml::from_str("aggregation = \"mean\"").unwrap();
        let error = (ENTRY.build)(&table).err().unwrap().to_string();
        assert!(error.contains("`aggregation`"), "{error}");
        let table: toml::Table = toml::from_str("std_floor = 0.0").unwrap();
        assert!((ENTRY.build)(&table).is_err());

        let mut detector = build_with("");
        let error = detector.score(&inputs(1, 2, vec![0.0, 0.0])).unwrap_err();
        assert!(matches!(error, AttackError::DetectorNotFitted { .. }), "{error}");
        detector.fit(&inputs(2, 2, vec![0.0, 1.0, 1.0, 0.0])).unwrap();
        let error = detector.score(&inputs(1, 3, vec![0.0; 3])).unwrap_err().to_string();
        assert!(error.contains("fitted on") && error.contains("[2]") && error.contains("[3]"), "{error}");
        let error = detector.fit(&inputs(1, 1, vec![f64::NAN])).unwrap_err().to_string();
        assert!(error.contains("not finite"), "{error}");
        let error = detector.fit(&Observations::default()).unwrap_err().to_string();
        assert!(error.contains("needs inputs"), "{error}");
    }
}
