//! Spectral signatures: poisoned samples of a class leave a trace along the top singular
//! direction of the class's centred penultimate features.
//!
//! ## What it does
//!
//! For each class `y` (by the training label), with features `R_i` of its `n_y` samples and
//! their mean `R̄`, it finds the top right-singular vector `v` of the centred matrix
//! `[R_i − R̄]` (power iteration on `Σ (R_i − R̄)(R_i − R̄)ᵀ`, from a fixed start, until the
//! direction moves less than 1e-10 or 1000 iterations) and scores each sample
//! `τ_i = ((R_i − R̄)·v)²`. The `⌈removal_factor · ε · n_y⌉` highest scores of each class are
//! flagged, `ε` being the expected poison rate (Tran et al. remove 1.5ε).
//!
//! ## Parameters
//!
//! - `expected_poison_rate` (default 0.05): ε, the fraction of a class assumed poisoned.
//! - `removal_factor` (default 1.5): how many times ε·n_y are flagged (the paper's 1.5).
//! - `batch_size` (default 256): inputs per feature pass.
//!
//! ## Known-answer tests
//!
//! On synthetic features where a few samples are shifted along one direction, exactly those
//! are flagged; the top singular vector of a known rank-one matrix is recovered.
//!
//! ## Reference
//!
//! Tran, Li, Madry. *Spectral Signatures in Backdoor Attacks.* NeurIPS 2018, arXiv:1811.00636.

use gauntlet_models::{FeatureName, Model};
use serde::Deserialize;

use super::{DataScan, DataScanEntry, DataScanReport};
use crate::backdoor::ImageSet;
use crate::params::parse_params;
use crate::trigger_scan::{check_fraction, check_positive};
use crate::{AttackError, ParameterDoc};

/// The registry entry.
pub const ENTRY: DataScanEntry = DataScanEntry {
    name: "spectral_signatures",
    summary: "Spectral signatures: per class, the squared projection of centred penultimate features on their top singular vector; the top 1.5·ε of each class are flagged",
    reference: "Tran, Li, Madry. Spectral Signatures in Backdoor Attacks. NeurIPS 2018. arXiv:1811.00636",
    parameters: &[
        ParameterDoc { name: "expected_poison_rate", default: "0.05", description: "ε: the fraction of each class assumed poisoned." },
        ParameterDoc { name: "removal_factor", default: "1.5", description: "⌈factor·ε·n⌉ samples of each class of n are flagged." },
        ParameterDoc { name: "batch_size", default: "256", description: "Inputs per feature pass." },
    ],
    build,
};

/// The suite-file parameters.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub expected_poison_rate: f64,
    pub removal_factor: f64,
    pub batch_size: usize,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            expected_poison_rate: 0.05,
            removal_factor: 1.5,
            batch_size: 256,
        }
    }
}

/// Spectral signatures with validated parameters.
#[derive(Debug, Clone)]
pub struct SpectralSignatures {
    params: Params,
}

impl SpectralSignatures {
    /// Errors name the bad key.
    pub fn new(params: Params) -> Result<Self, AttackError> {
        check_fraction("expected_poison_rate", params.expected_poison_rate)?;
        if !(params.removal_factor.is_finite() && params.removal_factor >= 0.0) {
            return Err(AttackError::invalid_parameter(
                "removal_factor",
                format!("must be a finite number ≥ 0, got {}", params.removal_factor),
            ));
        }
        check_positive("batch_size", params.batch_size)?;
        Ok(Self { params })
    }
}

fn build(params: &toml::Table) -> Result<Box<dyn DataScan>, AttackError> {
    Ok(Box::new(SpectralSignatures::new(parse_params(params)?)?))
}

impl DataScan for SpectralSignatures {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn scan(&self, model: &dyn Model, training: &ImageSet) -> Result<DataScanReport, AttackError> {
        let features = penultimate_features(model, training, self.params.batch_size)?;
        let (scores, flagged) = self.score(&features, training.labels(), training.num_classes());
        Ok(DataScanReport {
            scan: ENTRY.name,
            scores,
            flagged,
        })
    }
}

impl SpectralSignatures {
    /// Scores and flagged indices for per-sample `features` with `labels`.
    pub fn score(
        &self,
        features: &[Vec<f64>],
        labels: &[u32],
        num_classes: usize,
    ) -> (Vec<f64>, Vec<usize>) {
        let mut scores = vec![0.0; features.len()];
        let mut flagged = Vec::new();
        for class in 0..num_classes as u32 {
            let members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
            if members.is_empty() {
                continue;
            }
            let dim = features[members[0]].len();
            let mut mean = vec![0.0; dim];
            for &i in &members {
                for (m, x) in mean.iter_mut().zip(&features[i]) {
                    *m += x / members.len() as f64;
                }
            }
            let centred: Vec<Vec<f64>> = members
                .iter()
                .map(|&i| features[i].iter().zip(&mean).map(|(x, m)| x - m).collect())
                .collect();
            let direction = top_singular_vector(&centred, dim);
            let mut class_scores: Vec<(f64, usize)> = members
                .iter()
                .zip(&centred)
                .map(|(&i, row)| {
                    let projection: f64 = row.iter().zip(&direction).map(|(a, b)| a * b).sum();
                    (projection * projection, i)
                })
                .collect();
            for &(score, i) in &class_scores {
                scores[i] = score;
            }
            let remove = (self.params.removal_factor
                * self.params.expected_poison_rate
                * members.len() as f64)
                .ceil() as usize;
            class_scores.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            flagged.extend(class_scores.iter().take(remove).map(|&(_, i)| i));
        }
        flagged.sort_unstable();
        (scores, flagged)
    }
}

/// The penultimate features of every image, as f64 rows.
pub fn penultimate_features(
    model: &dyn Model,
    images: &ImageSet,
    batch_size: usize,
) -> Result<Vec<Vec<f64>>, AttackError> {
    let mut rows = Vec::with_capacity(images.len());
    let indices: Vec<usize> = (0..images.len()).collect();
    for chunk in indices.chunks(batch_size.max(1)) {
        let inputs = images.subset(chunk).inputs(model.device())?;
        let features = model
            .features(&inputs, FeatureName::Penultimate)?
            .flatten_from(1)?
            .to_dtype(candle_core::DType::F64)?;
        rows.extend(features.to_vec2::<f64>()?);
    }
    Ok(rows)
}

/// The unit top right-singular vector of the rows `centred` (each of length `dim`), by power
/// iteration on `AᵀA` from the all-ones direction. Zero when `A` is zero.
fn top_singular_vector(centred: &[Vec<f64>], dim: usize) -> Vec<f64> {
    let mut v = vec![1.0 / (dim as f64).sqrt(); dim];
    for _ in 0..1000 {
        // w = Aᵀ(A v)
        let mut w = vec![0.0; dim];
        for row in centred {
            let projection: f64 = row.iter().zip(&v).map(|(a, b)| a * b).sum();
            for (w, a) in w.iter_mut().zip(row) {
                *w += projection * a;
            }
        }
        let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 {
            return vec![0.0; dim];
        }
        w.iter_mut().for_each(|x| *x /= norm);
        let change: f64 = w.iter().zip(&v).map(|(a, b)| (a - b).abs()).sum();
        v = w;
        if change < 1e-10 {
            break;
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_singular_vector_of_a_rank_one_matrix() {
        // Rows are multiples of (3, 4)/5 → v = ±(0.6, 0.8).
        let rows = vec![vec![3.0, 4.0], vec![-6.0, -8.0], vec![1.5, 2.0]];
        let v = top_singular_vector(&rows, 2);
        assert!((v[0].abs() - 0.6).abs() < 1e-9 && (v[1].abs() - 0.8).abs() < 1e-9, "{v:?}");
    }

    #[test]
    fn samples_shifted_along_one_direction_are_flagged() {
        // 40 samples of class 0 with small deterministic spread; 2 of them shifted far along
        // (1, −1, 0). ε = 0.05, factor 1 → ⌈0.05·40⌉ = 2 flagged: exactly the shifted ones.
        let mut features: Vec<Vec<f64>> = (0..40)
            .map(|i| {
                let t = f64::from(i);
                vec![(t * 0.7).sin() * 0.1, (t * 1.3).cos() * 0.1, (t * 0.4).sin() * 0.1]
            })
            .collect();
        for &i in &[7usize, 31] {
            features[i][0] += 5.0;
            features[i][1] -= 5.0;
        }
        let scan = SpectralSignatures::new(Params {
            expected_poison_rate: 0.05,
            removal_factor: 1.0,
            batch_size: 1,
        })
        .unwrap();
        let (scores, flagged) = scan.score(&features, &[0; 40], 1);
        assert_eq!(flagged, vec![7, 31]);
        assert!(scores[7] > 10.0 * scores[0]);
    }
}
