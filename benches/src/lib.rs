//! Shared fixtures for gauntlet's criterion benches: the architectures the issue names, with
//! seeded random weights, and seeded synthetic batches (timing does not depend on the values).

use candle_core::{Device, Tensor};
use gauntlet_models::{ModelSpec, Network};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Batch size of every bench, as in the figures quoted in benches/README.md.
pub const BATCH: usize = 128;

/// A benchmarked architecture.
pub struct Fixture {
    pub name: &'static str,
    pub network: Network,
    pub inputs: Tensor,
    pub labels: Tensor,
}

fn network(spec: &str, device: &Device) -> Network {
    let spec = ModelSpec::from_toml_str(spec).unwrap_or_else(|e| panic!("bench spec: {e}"));
    Network::init(&spec, 0, device).unwrap_or_else(|e| panic!("bench network: {e}"))
}

/// Uniform pixels and labels from a fixed seed.
pub fn synthetic_batch(shape: &[usize], classes: u32, device: &Device) -> (Tensor, Tensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let per_sample: usize = shape.iter().product();
    let pixels: Vec<f32> = (0..BATCH * per_sample)
        .map(|_| rng.random::<f32>())
        .collect();
    let labels: Vec<u32> = (0..BATCH).map(|_| rng.random_range(0..classes)).collect();
    let mut dims = vec![BATCH];
    dims.extend_from_slice(shape);
    let inputs = Tensor::from_vec(pixels, dims, device).unwrap_or_else(|e| panic!("{e}"));
    let labels = Tensor::from_vec(labels, BATCH, device).unwrap_or_else(|e| panic!("{e}"));
    (inputs, labels)
}

/// The small CNN at 28×28 (conv 1→16, pool, conv 16→32, pool, linear).
pub fn small_cnn(device: &Device) -> Fixture {
    let network = network(
        "architecture = \"small_cnn\"\ninput_shape = [1, 28, 28]\nnum_classes = 10\n",
        device,
    );
    let (inputs, labels) = synthetic_batch(&[1, 28, 28], 10, device);
    Fixture {
        name: "small_cnn",
        network,
        inputs,
        labels,
    }
}

/// ResNet-20 at 32×32×3 (BatchNorm in eval mode).
pub fn resnet20(device: &Device) -> Fixture {
    let network = network(
        "architecture = \"resnet20\"\ninput_shape = [3, 32, 32]\nnum_classes = 10\n",
        device,
    );
    let (inputs, labels) = synthetic_batch(&[3, 32, 32], 10, device);
    Fixture {
        name: "resnet20",
        network,
        inputs,
        labels,
    }
}
