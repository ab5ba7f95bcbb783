//! Integration tests of gauntlet-models: one binary, one module per concern.

// A failed unwrap is a failed test; helpers outside `#[test]` functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod byom;
mod capabilities;
mod gradients;
mod limits;
mod loading;
mod native;
mod pytorch;
mod spec;
#[cfg(feature = "torch")]
mod torchscript;
mod training;

use candle_core::{DType, Device, Tensor};
use gauntlet_models::{ModelSpec, Network};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Uniform [0, 1) values of `shape`, f64, from a seeded generator.
pub fn random_inputs(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let count: usize = shape.iter().product();
    let values: Vec<f64> = (0..count).map(|_| rng.random::<f64>()).collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// `count` labels below `classes`, u32.
pub fn random_labels(count: usize, classes: usize, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<u32> = (0..count)
        .map(|_| rng.random_range(0..classes as u32))
        .collect();
    Tensor::from_vec(values, count, &Device::Cpu).unwrap()
}

pub fn spec(text: &str) -> ModelSpec {
    ModelSpec::from_toml_str(text).unwrap()
}

pub fn init(text: &str, seed: u64) -> Network {
    init_on(text, seed, &Device::Cpu)
}

/// [`init`] on `device`: the same weights on every device (they are drawn on the host).
pub fn init_on(text: &str, seed: u64, device: &Device) -> Network {
    Network::init(&spec(text), seed, device).unwrap()
}

/// A copy of `network` (spec and every tensor, batch-norm statistics included) on `device`.
pub fn on_device(network: &Network, device: &Device) -> Network {
    let bytes = network.to_safetensors_bytes().unwrap();
    Network::from_spec_and_safetensors(network.spec(), &bytes, device).unwrap()
}

pub fn to_vec(tensor: &Tensor) -> Vec<f64> {
    tensor
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}
