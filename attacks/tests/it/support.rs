//! Models, data and measurements shared by the integration tests.

use candle_core::{DType, Device, Tensor};
use gauntlet_attacks::{Attack, AttackEntry, SampleRandomness};
use gauntlet_datasets::Dataset;
use gauntlet_models::{Loss, Model, ModelSpec, Network, Optimizer, TrainConfig};

/// UCI digits (8×8, 10 classes): a model trained on the first part, the rest held out.
pub struct Digits {
    pub model: Network,
    pub test_inputs: Tensor,
    pub test_labels: Tensor,
}

/// An MLP (64 → 64 → 10) trained with the models crate's own trainer on UCI digits; every
/// sixth sample (the first `test_samples` of them) is held out. The file is ordered by
/// writer, so interleaving keeps both parts alike.
pub fn trained_digits_mlp(test_samples: usize) -> Digits {
    let dataset = gauntlet_datasets::embedded_uci_digits().unwrap();
    assert_eq!(dataset.class_names().len(), 10);
    let (held_out, training): (Vec<usize>, Vec<usize>) =
        (0..dataset.len()).partition(|i| i % 6 == 0);
    assert!(held_out.len() >= test_samples);
    let train = dataset.subset(&training).unwrap();
    let train = train.batch(0..train.len(), &Device::Cpu).unwrap();
    let test = dataset.subset(&held_out[..test_samples]).unwrap();
    let test = test.batch(0..test_samples, &Device::Cpu).unwrap();
    let spec = ModelSpec::from_toml_str(
        "architecture = \"mlp\"\ninput_shape = [1, 8, 8]\nnum_classes = 10\nhidden = [64]",
    )
    .unwrap();
    let mut model = Network::init(&spec, 5, &Device::Cpu).unwrap();
    let config = TrainConfig {
        epochs: 20,
        batch_size: 32,
        optimizer: Optimizer::Adam {
            learning_rate: 0.01,
            weight_decay: 0.0,
        },
        seed: 5,
    };
    gauntlet_models::train(
        &mut model,
        &train.inputs,
        &train.labels,
        &config,
        &mut |_| {},
    )
    .unwrap();
    Digits {
        model,
        test_inputs: test.inputs,
        test_labels: test.labels,
    }
}

/// Fraction of `inputs` the model classifies as `labels`, in one batch.
pub fn accuracy(model: &dyn Model, inputs: &Tensor, labels: &Tensor) -> f64 {
    let batch_size = inputs.dim(0).unwrap().max(1);
    gauntlet_models::accuracy(model, inputs, labels, batch_size).unwrap()
}

/// Per-sample correctness.
pub fn correct(model: &dyn Model, inputs: &Tensor, labels: &Tensor) -> Vec<bool> {
    let predicted: Vec<u32> = model.predict(inputs).unwrap().to_vec1().unwrap();
    let labels: Vec<u32> = labels.to_dtype(DType::U32).unwrap().to_vec1().unwrap();
    predicted.iter().zip(&labels).map(|(p, l)| p == l).collect()
}

/// Per-sample loss of `inputs` against `labels`.
pub fn losses(model: &dyn Model, inputs: &Tensor, labels: &Tensor, loss: Loss) -> Vec<f32> {
    loss.per_sample(&model.forward(inputs).unwrap(), labels)
        .unwrap()
        .to_vec1()
        .unwrap()
}

pub fn mean(values: &[f32]) -> f64 {
    values.iter().map(|v| f64::from(*v)).sum::<f64>() / values.len() as f64
}

/// The bit patterns of a tensor, for bit-identity checks.
pub fn bits(tensor: &Tensor) -> Vec<u32> {
    tensor
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// Build `entry` at `epsilon` from a TOML snippet.
pub fn build(entry: &AttackEntry, params: &str, epsilon: f32) -> Box<dyn Attack> {
    let table: toml::Table = toml::from_str(params).unwrap();
    (entry.build)(&table, epsilon)
        .unwrap_or_else(|error| panic!("{} with `{params}` at ε = {epsilon}: {error}", entry.name))
}

pub fn perturb(
    attack: &dyn Attack,
    model: &dyn Model,
    inputs: &Tensor,
    labels: &Tensor,
    seed: u64,
) -> Tensor {
    attack
        .perturb(model, inputs, labels, &randomness(inputs, seed))
        .unwrap_or_else(|error| panic!("{} failed: {error}", attack.name()))
}

/// One generator per sample of `inputs` (global indices 0..batch) under `seed`.
pub fn randomness(inputs: &Tensor, seed: u64) -> SampleRandomness {
    SampleRandomness::for_range(seed, "test", 0..inputs.dim(0).unwrap_or(0))
}
