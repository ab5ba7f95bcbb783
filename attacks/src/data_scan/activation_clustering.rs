//! Activation clustering: within a class, poisoned samples activate the penultimate layer
//! differently from the genuine ones, so 2-means on the features splits them off as a small
//! cluster.
//!
//! ## What it does
//!
//! For each class (by the training label): centre the penultimate features, project them on
//! their top `dims` principal components (eigenvectors of the covariance by power iteration
//! with deflation, from a fixed start), and run 2-means (Lloyd's iterations from a
//! deterministic farthest-point start: the sample farthest from the class mean, then the
//! sample farthest from it; at most 100 iterations). The smaller cluster is flagged when it
//! holds less than `max_cluster_fraction` of the class (the "relative size" analysis). A
//! sample's score is its distance to the larger cluster's centre in the reduced space.
//!
//! ## Parameters
//!
//! - `dims` (default 10): principal components kept (ART and BackdoorBench reduce to 10; PCA
//!   as ART, not BackdoorBench's FastICA).
//! - `max_cluster_fraction` (default 0.35): BackdoorBench's threshold on the minority cluster.
//! - `batch_size` (default 256): inputs per feature pass.
//!
//! ## Known-answer tests
//!
//! Synthetic features with a small, separated group: exactly that group is flagged; two
//! equal halves are not flagged.
//!
//! ## Reference
//!
//! Chen, Carvalho, Baracaldo, Ludwig, Edwards, Lee, Molloy, Srivastava. *Detecting Backdoor
//! Attacks on Deep Neural Networks by Activation Clustering.* arXiv:1811.03728, 2018.

use gauntlet_models::Model;
use serde::Deserialize;

use super::spectral_signatures::penultimate_features;
use super::{DataScan, DataScanEntry, DataScanReport};
use crate::backdoor::ImageSet;
use crate::params::parse_params;
use crate::trigger_scan::{check_fraction, check_positive};
use crate::{AttackError, ParameterDoc};

/// The registry entry.
pub const ENTRY: DataScanEntry = DataScanEntry {
    name: "activation_clustering",
    summary: "Activation clustering: per class, PCA of the penultimate features and 2-means; a cluster holding under 35% of the class is flagged",
    reference: "Chen et al. Detecting Backdoor Attacks on Deep Neural Networks by Activation Clustering. arXiv:1811.03728",
    parameters: &[
        ParameterDoc { name: "dims", default: "10", description: "Principal components kept before clustering." },
        ParameterDoc { name: "max_cluster_fraction", default: "0.35", description: "The smaller cluster is flagged when it holds less than this fraction of the class." },
        ParameterDoc { name: "batch_size", default: "256", description: "Inputs per feature pass." },
    ],
    build,
};

/// The suite-file parameters.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub dims: usize,
    pub max_cluster_fraction: f64,
    pub batch_size: usize,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            dims: 10,
            max_cluster_fraction: 0.35,
            batch_size: 256,
        }
    }
}

/// Activation clustering with validated parameters.
#[derive(Debug, Clone)]
pub struct ActivationClustering {
    params: Params,
}

impl ActivationClustering {
    /// Errors name the bad key.
    pub fn new(params: Params) -> Result<Self, AttackError> {
        check_positive("dims", params.dims)?;
        check_fraction("max_cluster_fraction", params.max_cluster_fraction)?;
        check_positive("batch_size", params.batch_size)?;
        Ok(Self { params })
    }
}

fn build(params: &toml::Table) -> Result<Box<dyn DataScan>, AttackError> {
    Ok(Box::new(ActivationClustering::new(parse_params(params)?)?))
}

impl DataScan for ActivationClustering {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn scan(&self, model: &dyn Model, training: &ImageSet) -> Result<DataScanReport, AttackError> {
        let features = penultimate_features(model, training, self.params.batch_size)?;
        let (scores, flagged) = self.cluster(&features, training.labels(), training.num_classes());
        Ok(DataScanReport {
            scan: ENTRY.name,
            scores,
            flagged,
        })
    }
}

impl ActivationClustering {
    /// Scores and flagged indices for per-sample `features` with `labels`.
    pub fn cluster(
        &self,
        features: &[Vec<f64>],
        labels: &[u32],
        num_classes: usize,
    ) -> (Vec<f64>, Vec<usize>) {
        let mut scores = vec![0.0; features.len()];
        let mut flagged = Vec::new();
        for class in 0..num_classes as u32 {
            let members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
            if members.len() < 2 {
                continue;
            }
            let reduced = reduce(&members, features, self.params.dims);
            let assignment = two_means(&reduced);
            let in_first = assignment.iter().filter(|&&a| a == 0).count();
            let (minority, majority) = if in_first * 2 < members.len() {
                (0, 1)
            } else {
                (1, 0)
            };
            let majority_centre = centre(&reduced, &assignment, majority);
            for (row, &i) in reduced.iter().zip(&members) {
                scores[i] = distance(row, &majority_centre);
            }
            let minority_size = assignment.iter().filter(|&&a| a == minority).count();
            if (minority_size as f64) < self.params.max_cluster_fraction * members.len() as f64 {
                flagged.extend(
                    members
                        .iter()
                        .zip(&assignment)
                        .filter(|(_, &a)| a == minority)
                        .map(|(&i, _)| i),
                );
            }
        }
        flagged.sort_unstable();
        (scores, flagged)
    }
}

/// The members' centred features projected on their top `dims` principal components.
fn reduce(members: &[usize], features: &[Vec<f64>], dims: usize) -> Vec<Vec<f64>> {
    let dim = features[members[0]].len();
    let n = members.len() as f64;
    let mut mean = vec![0.0; dim];
    for &i in members {
        for (m, x) in mean.iter_mut().zip(&features[i]) {
            *m += x / n;
        }
    }
    let centred: Vec<Vec<f64>> = members
        .iter()
        .map(|&i| features[i].iter().zip(&mean).map(|(x, m)| x - m).collect())
        .collect();
    let mut covariance = vec![vec![0.0; dim]; dim];
    for row in &centred {
        for (a, &x) in row.iter().enumerate() {
            if x == 0.0 {
                continue;
            }
            for (b, &y) in row.iter().enumerate() {
                covariance[a][b] += x * y / n;
            }
        }
    }
    let mut components = Vec::new();
    for _ in 0..dims.min(dim) {
        let mut v = vec![1.0 / (dim as f64).sqrt(); dim];
        let mut eigenvalue = 0.0;
        for _ in 0..500 {
            let w: Vec<f64> = covariance
                .iter()
                .map(|row| row.iter().zip(&v).map(|(c, x)| c * x).sum())
                .collect();
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm == 0.0 {
                break;
            }
            let next: Vec<f64> = w.iter().map(|x| x / norm).collect();
            let change: f64 = next.iter().zip(&v).map(|(a, b)| (a - b).abs()).sum();
            v = next;
            eigenvalue = norm;
            if change < 1e-10 {
                break;
            }
        }
        if eigenvalue == 0.0 {
            break;
        }
        // Deflate: C ← C − λ·v·vᵀ.
        for (a, row) in covariance.iter_mut().enumerate() {
            for (b, c) in row.iter_mut().enumerate() {
                *c -= eigenvalue * v[a] * v[b];
            }
        }
        components.push(v);
    }
    centred
        .iter()
        .map(|row| {
            components
                .iter()
                .map(|component| row.iter().zip(component).map(|(x, c)| x * c).sum())
                .collect()
        })
        .collect()
}

/// Lloyd's 2-means from the farthest-point start; the cluster (0 or 1) of each row.
fn two_means(rows: &[Vec<f64>]) -> Vec<u8> {
    let origin = vec![0.0; rows[0].len()];
    let farthest_from = |point: &[f64]| {
        (0..rows.len())
            .max_by(|&a, &b| distance(&rows[a], point).total_cmp(&distance(&rows[b], point)))
            .unwrap_or(0)
    };
    let first = farthest_from(&origin);
    let second = farthest_from(&rows[first]);
    let mut centres = [rows[first].clone(), rows[second].clone()];
    let mut assignment = vec![0u8; rows.len()];
    for _ in 0..100 {
        let next: Vec<u8> = rows
            .iter()
            .map(|row| u8::from(distance(row, &centres[1]) < distance(row, &centres[0])))
            .collect();
        let changed = next != assignment;
        assignment = next;
        for (cluster, centre_slot) in centres.iter_mut().enumerate() {
            if assignment.iter().any(|&a| usize::from(a) == cluster) {
                *centre_slot = centre(rows, &assignment, cluster as u8);
            }
        }
        if !changed {
            break;
        }
    }
    assignment
}

fn centre(rows: &[Vec<f64>], assignment: &[u8], cluster: u8) -> Vec<f64> {
    let mut sum = vec![0.0; rows[0].len()];
    let mut count = 0usize;
    for (row, &a) in rows.iter().zip(assignment) {
        if a == cluster {
            count += 1;
            for (s, x) in sum.iter_mut().zip(row) {
                *s += x;
            }
        }
    }
    sum.iter().map(|s| s / count.max(1) as f64).collect()
}

fn distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(count: usize, offset: [f64; 4], phase: f64) -> Vec<Vec<f64>> {
        (0..count)
            .map(|i| {
                let t = i as f64 + phase;
                vec![
                    offset[0] + (t * 0.7).sin() * 0.2,
                    offset[1] + (t * 1.3).cos() * 0.2,
                    offset[2] + (t * 0.4).sin() * 0.2,
                    offset[3] + (t * 2.1).cos() * 0.2,
                ]
            })
            .collect()
    }

    #[test]
    fn a_small_separated_group_is_flagged_and_equal_halves_are_not() {
        let scan = ActivationClustering::new(Params {
            dims: 2,
            ..Params::default()
        })
        .unwrap();
        // Class 0: 30 genuine samples, then 6 far away (indices 30–35). Class 1: two halves.
        let mut features = blob(30, [0.0; 4], 0.0);
        features.extend(blob(6, [4.0, -4.0, 2.0, 0.0], 0.5));
        features.extend(blob(20, [0.0, 0.0, 0.0, 0.0], 1.0));
        features.extend(blob(20, [5.0, 5.0, 0.0, 0.0], 2.0));
        let labels: Vec<u32> = (0..76).map(|i| u32::from(i >= 36)).collect();
        let (scores, flagged) = scan.cluster(&features, &labels, 2);
        assert_eq!(flagged, (30..36).collect::<Vec<_>>());
        assert!(scores[31] > 5.0 * scores[0]);
    }
}
