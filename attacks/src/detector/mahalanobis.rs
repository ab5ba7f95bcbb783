//! The Mahalanobis detector on penultimate features (Lee et al. 2018): class-conditional
//! Gaussians with one shared covariance, fitted on clean training data; a sample far from
//! every class mean is flagged.
//!
//! ## What it does
//!
//! `fit` takes the penultimate features `f_i` of clean inputs with their true labels, the
//! class means `μ_c` over the classes present, and the shared (tied) covariance
//! `Σ = (1/N) Σ_c Σ_{i∈c} (f_i − μ_c)(f_i − μ_c)ᵀ` — the paper's maximum-likelihood estimate.
//! `Σ + λI`, with `λ = regularization · tr(Σ)/d`, is factorised by Cholesky (ReLU features
//! often have units that never fire on clean data, which makes `Σ` singular). `score` is
//! `min_c (f − μ_c)ᵀ (Σ + λI)⁻¹ (f − μ_c)`: the negative of the paper's confidence score
//! `M(x)`, so that higher is more suspicious. The paper's input pre-processing and feature
//! ensemble over layers are not implemented (docs/guardrails.md).
//!
//! ## Known-answer test
//!
//! Features with exact class means and covariance give the hand-computed distance.
//!
//! ## Reference
//!
//! Lee, Lee, Lee, Shin. *A Simple Unified Framework for Detecting Out-of-Distribution Samples
//! and Adversarial Attacks.* NeurIPS 2018, arXiv:1807.03888.

use serde::Deserialize;

use super::{
    check_finite, check_finite_parameter, check_width, Detector, DetectorEntry, DetectorNeeds,
    Observations,
};
use crate::params::parse_params;
use crate::{AttackError, ParameterDoc};

/// The registry entry.
pub const ENTRY: DetectorEntry = DetectorEntry {
    name: "mahalanobis",
    summary: "Feature monitor: the smallest Mahalanobis distance of the penultimate features to a class mean, with one covariance shared by the classes",
    reference: "Lee, Lee, Lee, Shin. A Simple Unified Framework for Detecting Out-of-Distribution Samples and Adversarial Attacks. NeurIPS 2018. arXiv:1807.03888",
    parameters: &[ParameterDoc {
        name: "regularization",
        default: "0.0001",
        description: "Ridge added to the shared covariance's diagonal, as a fraction of its mean variance; 0 requires a non-singular covariance.",
    }],
    needs: DetectorNeeds { inputs: false, logits: false, penultimate: true, fit_labels: true },
    build,
};

/// The suite-file parameters.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub regularization: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            regularization: 1e-4,
        }
    }
}

/// What `fit` computes.
#[derive(Debug, Clone, PartialEq)]
struct Fitted {
    /// (class, mean) for each class present in the fitting data.
    means: Vec<(u32, Vec<f64>)>,
    /// Lower Cholesky factor of `Σ + λI`, row-major `d × d`.
    cholesky: Vec<f64>,
    dim: usize,
}

/// The detector with validated parameters, fitted or not.
#[derive(Debug, Clone)]
pub struct Mahalanobis {
    params: Params,
    fitted: Option<Fitted>,
}

impl Mahalanobis {
    /// Errors name the bad key.
    pub fn new(params: Params) -> Result<Self, AttackError> {
        check_finite_parameter("regularization", params.regularization)?;
        if params.regularization < 0.0 {
            return Err(AttackError::invalid_parameter(
                "regularization",
                format!("must be ≥ 0, got {}", params.regularization),
            ));
        }
        Ok(Self {
            params,
            fitted: None,
        })
    }
}

fn build(params: &toml::Table) -> Result<Box<dyn Detector>, AttackError> {
    Ok(Box::new(Mahalanobis::new(parse_params(params)?)?))
}

/// The lower Cholesky factor of the symmetric `d × d` matrix `a`, or `None` when it is not
/// positive definite.
fn cholesky(a: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let sum: f64 = (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum();
            if i == j {
                let diagonal = a[i * d + i] - sum;
                if diagonal <= 0.0 || !diagonal.is_finite() {
                    return None;
                }
                l[i * d + i] = diagonal.sqrt();
            } else {
                l[i * d + j] = (a[i * d + j] - sum) / l[j * d + j];
            }
        }
    }
    Some(l)
}

/// `|L⁻¹ v|²` = `vᵀ (L Lᵀ)⁻¹ v`, by forward substitution.
fn squared_distance(l: &[f64], d: usize, v: &[f64]) -> f64 {
    let mut y = vec![0.0; d];
    for i in 0..d {
        let sum: f64 = (0..i).map(|k| l[i * d + k] * y[k]).sum();
        y[i] = (v[i] - sum) / l[i * d + i];
    }
    y.iter().map(|y| y * y).sum()
}

impl Detector for Mahalanobis {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn needs(&self) -> DetectorNeeds {
        ENTRY.needs
    }

    fn fit(&mut self, clean: &Observations) -> Result<(), AttackError> {
        let features = Observations::require(&clean.penultimate, ENTRY.name, "penultimate features")?;
        let labels = clean.labels.as_ref().ok_or(AttackError::DetectorInput {
            detector: ENTRY.name,
            what: "the labels of the clean fitting data",
        })?;
        clean.len()?;
        check_finite(ENTRY.name, "penultimate feature", features)?;
        let d = features.cols();
        if features.rows() == 0 || d == 0 {
            return Err(AttackError::invalid_parameter(
                "clean inputs",
                "the Mahalanobis detector needs at least one clean sample with features to fit",
            ));
        }
        let mut sums: std::collections::BTreeMap<u32, (usize, Vec<f64>)> = Default::default();
        for (row, &label) in features.iter_rows().zip(labels) {
            let (count, sum) = sums.entry(label).or_insert_with(|| (0, vec![0.0; d]));
            *count += 1;
            sum.iter_mut().zip(row).for_each(|(s, x)| *s += x);
        }
        let means: Vec<(u32, Vec<f64>)> = sums
            .into_iter()
            .map(|(class, (count, sum))| (class, sum.into_iter().map(|s| s / count as f64).collect()))
            .collect();
        let mut covariance = vec![0.0; d * d];
        for (row, label) in features.iter_rows().zip(labels) {
            let Some((_, mean)) = means.iter().find(|(class, _)| class == label) else {
                continue;
            };
            let centred: Vec<f64> = row.iter().zip(mean).map(|(x, m)| x - m).collect();
            for i in 0..d {
                for j in 0..=i {
                    covariance[i * d + j] += centred[i] * centred[j];
                }
            }
        }
        let n = features.rows() as f64;
        for i in 0..d {
            for j in 0..=i {
                covariance[i * d + j] /= n;
                covariance[j * d + i] = covariance[i * d + j];
            }
        }
        let mean_variance = (0..d).map(|i| covariance[i * d + i]).sum::<f64>() / d as f64;
        let ridge = self.params.regularization * mean_variance;
        for i in 0..d {
            covariance[i * d + i] += ridge;
        }
        let cholesky = cholesky(&covariance, d).ok_or_else(|| {
            AttackError::invalid_parameter(
                "regularization",
                format!(
                    "the shared covariance of the clean features (dimension {d}) plus a ridge of \
                     {ridge} is singular; raise `regularization`"
                ),
            )
        })?;
        self.fitted = Some(Fitted {
            means,
            cholesky,
            dim: d,
        });
        Ok(())
    }

    fn score(&self, batch: &Observations) -> Result<Vec<f64>, AttackError> {
        let fitted = self
            .fitted
            .as_ref()
            .ok_or(AttackError::DetectorNotFitted {
                detector: ENTRY.name,
            })?;
        let features = Observations::require(&batch.penultimate, ENTRY.name, "penultimate features")?;
        check_width(
            "penultimate features of the scored inputs vs those the Mahalanobis detector was fitted on",
            fitted.dim,
            features,
        )?;
        check_finite(ENTRY.name, "penultimate feature", features)?;
        Ok(features
            .iter_rows()
            .map(|row| {
                fitted
                    .means
                    .iter()
                    .map(|(_, mean)| {
                        let centred: Vec<f64> = row.iter().zip(mean).map(|(x, m)| x - m).collect();
                        squared_distance(&fitted.cholesky, fitted.dim, &centred)
                    })
                    .fold(f64::INFINITY, f64::min)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::Matrix;

    fn observations(rows: &[Vec<f64>], labels: Option<Vec<u32>>) -> Observations {
        Observations {
            penultimate: Some(Matrix::from_rows("features", rows).unwrap()),
            labels,
            ..Observations::default()
        }
    }

    #[test]
    fn exact_class_means_and_covariance_give_the_hand_computed_distance() {
        // Class 0 around (0, 0), class 1 around (10, 0), each at (±1, 0) and (0, ±1) from its
        // mean: per class the squared deviations sum to 2 on each axis, so Σ = (2+2)/8 I = ½ I.
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for (class, centre) in [(0u32, 0.0), (1, 10.0)] {
            for (dx, dy) in [(1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0)] {
                rows.push(vec![centre + dx, dy]);
                labels.push(class);
            }
        }
        let mut detector = Mahalanobis::new(Params { regularization: 0.0 }).unwrap();
        detector.fit(&observations(&rows, Some(labels))).unwrap();
        // (2, 0): distance² to class 0 is 4/½ = 8, to class 1 64/½ = 128 → 8.
        // (9, 1): to class 1 (1 + 1)/½ = 4.
        let scores = detector
            .score(&observations(&[vec![2.0, 0.0], vec![9.0, 1.0]], None))
            .unwrap();
        assert!((scores[0] - 8.0).abs() < 1e-12, "{scores:?}");
        assert!((scores[1] - 4.0).abs() < 1e-12, "{scores:?}");
        // A ridge of 1 × the mean variance (½) doubles Σ and halves the distances.
        let mut ridged = Mahalanobis::new(Params { regularization: 1.0 }).unwrap();
        let mut rows2 = rows.clone();
        rows2.truncate(8);
        let labels: Vec<u32> = (0..8).map(|i| u32::from(i >= 4)).collect();
        ridged.fit(&observations(&rows2, Some(labels))).unwrap();
        let scores = ridged.score(&observations(&[vec![2.0, 0.0]], None)).unwrap();
        assert!((scores[0] - 4.0).abs() < 1e-12, "{scores:?}");
    }

    #[test]
    fn singular_covariance_missing_labels_and_other_widths_are_named_errors() {
        // Every sample on the x axis: zero variance along y.
        let rows = vec![vec![1.0, 0.0], vec![-1.0, 0.0]];
        let mut detector = Mahalanobis::new(Params { regularization: 0.0 }).unwrap();
        let error = detector
            .fit(&observations(&rows, Some(vec![0, 0])))
            .unwrap_err()
            .to_string();
        assert!(error.contains("`regularization`") && error.contains("singular"), "{error}");
        let error = detector.fit(&observations(&rows, None)).unwrap_err().to_string();
        assert!(error.contains("labels"), "{error}");
        // One sample per class leaves no spread at all: even the relative ridge is 0.
        let mut detector = Mahalanobis::new(Params::default()).unwrap();
        assert!(detector.fit(&observations(&rows, Some(vec![0, 1]))).is_err());
        let rows = vec![vec![1.0, 0.0], vec![-1.0, 0.0], vec![0.0, 1.0], vec![0.0, -1.0]];
        detector.fit(&observations(&rows, Some(vec![0, 0, 1, 1]))).unwrap();
        let error = detector
            .score(&observations(&[vec![0.0; 3]], None))
            .unwrap_err()
            .to_string();
        assert!(error.contains("fitted on"), "{error}");
        let table: toml::Table = toml::from_str("regularization = nan").unwrap();
        assert!((ENTRY.build)(&table).is_err());
    }
}
