//! Fixtures for the known-answer unit tests of the attacks.

use candle_core::{Device, Tensor};
use gauntlet_models::testing::LinearModel;
use gauntlet_models::Model;
use rand::{Rng, SeedableRng};

use crate::{Attack, AttackEntry, ChaCha8Rng, Norm};

pub const FEATURES: usize = 6;

/// Three classes over 6 features. Class 0 has a bias of 10, so on inputs in [0.25, 0.75] it is
/// the top class by a margin of at least 10 − 0.75·‖w₀ − w₂‖₁ > 5 and stays the top class
/// among k ≠ 1 anywhere in a small ball: the CW margin toward target 1 is z₀ − z₁ with the
/// constant gradient w₀ − w₁.
pub fn three_class_model() -> LinearModel {
    let weight = vec![
        1.0, -0.5, 0.25, 2.0, -1.5, 0.75, //
        -0.5, 1.5, -1.0, 0.5, 1.0, -0.25, //
        0.3, 0.2, -0.1, 0.4, 0.1, 0.2,
    ];
    LinearModel::new(
        weight,
        vec![10.0, 0.0, 0.0],
        vec![FEATURES],
        3,
        &Device::Cpu,
    )
    .unwrap()
}

/// Two classes over 6 features, for the binary cross-entropy case.
pub fn binary_model() -> LinearModel {
    let weight = vec![
        0.5, -1.0, 2.0, 0.25, -0.75, 1.5, //
        -0.5, 0.5, -1.0, 1.25, 0.75, 0.0,
    ];
    LinearModel::new(weight, vec![0.2, -0.1], vec![FEATURES], 2, &Device::Cpu).unwrap()
}

/// `batch` inputs uniform in [0.3, 0.7] (so a budget ≤ 0.3 never touches the box).
pub fn inputs_in_middle(batch: usize, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f32> = (0..batch * FEATURES)
        .map(|_| rng.random_range(0.3f32..0.7))
        .collect();
    Tensor::from_vec(values, (batch, FEATURES), &Device::Cpu).unwrap()
}

pub fn labels(values: &[u32]) -> Tensor {
    Tensor::from_slice(values, values.len(), &Device::Cpu).unwrap()
}

/// Per-sample `z_a − z_b`, computed in f64 from the model's f32 logits.
pub fn logit_gap(model: &LinearModel, inputs: &Tensor, a: usize, b: usize) -> Vec<f64> {
    let logits: Vec<Vec<f32>> = model.forward(inputs).unwrap().to_vec2().unwrap();
    logits
        .iter()
        .map(|row| f64::from(row[a]) - f64::from(row[b]))
        .collect()
}

pub fn l1_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| f64::from(x - y).abs()).sum()
}

pub fn l2_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Build `entry` at `epsilon` from a TOML snippet.
pub fn build_attack(entry: &AttackEntry, params: &str, epsilon: f32) -> Box<dyn Attack> {
    let table: toml::Table = toml::from_str(params).unwrap();
    (entry.build)(&table, epsilon).unwrap()
}

/// Assert `actual` is within `relative` of `expected`.
pub fn assert_close(actual: f64, expected: f64, relative: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= relative * expected.abs().max(1e-12),
        "{what}: got {actual}, expected {expected} (relative tolerance {relative})"
    );
}

/// A three-class linear model whose inputs sit near its boundaries, away from the box (the
/// nearest boundary at most ~0.1 away, the box at least 0.3), with eight inputs and the
/// classes it predicts for them: the known-answer case of the minimal-norm attacks (see
/// [`closed_form_minimal_norm`]).
pub fn near_boundary() -> (LinearModel, Tensor, Vec<u32>) {
    let model = LinearModel::new(
        vec![
            1.0, -0.5, 0.25, 2.0, -1.5, 0.75, //
            -0.5, 1.5, -1.0, 0.5, 1.0, -0.25, //
            0.3, 0.2, -0.1, 0.4, 0.1, 0.2,
        ],
        vec![0.4, 0.0, 0.0],
        vec![FEATURES],
        3,
        &Device::Cpu,
    )
    .unwrap();
    let inputs = inputs_in_middle(8, 11);
    let predictions: Vec<u32> = model.predict(&inputs).unwrap().to_vec1().unwrap();
    (model, inputs, predictions)
}

/// The closed-form smallest perturbation that changes the class of a linear model, in `norm`,
/// per sample: `min_{k≠y} |z_k − z_y| / ‖w_k − w_y‖_*`, the distance to the nearest half-space
/// where another class wins. A lower bound on the true minimum, and equal to it where that
/// half-space's nearest point is not claimed by a third class and lies inside the box.
pub fn closed_form_minimal_norm(
    model: &LinearModel,
    inputs: &Tensor,
    labels: &[u32],
    norm: Norm,
) -> Vec<f64> {
    let rows = model.weight_rows();
    let logits: Vec<Vec<f32>> = model.forward(inputs).unwrap().to_vec2().unwrap();
    logits
        .iter()
        .zip(labels)
        .map(|(z, &y)| {
            let y = y as usize;
            (0..rows.len())
                .filter(|&k| k != y)
                .map(|k| {
                    let gap = (f64::from(z[k]) - f64::from(z[y])).abs();
                    gap / match norm {
                        Norm::L2 => l2_distance(&rows[k], &rows[y]),
                        Norm::Linf => l1_distance(&rows[k], &rows[y]),
                    }
                })
                .fold(f64::INFINITY, f64::min)
        })
        .collect()
}
