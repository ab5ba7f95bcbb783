//! The backdoor scans' hot paths on the small CNN for 8×8 digits: Neural Cleanse's reverse
//! engineering of one class (40 epochs over 300 clean inputs, the settings of the closed loop
//! in docs/backdoors.md) and STRIP's entropy of one input (100 overlays), reported per input.
//! The network is freshly initialised and the images uniform noise: the time of both depends
//! on the shapes and counts, not on what the weights learned (Neural Cleanse's early stop
//! aside, which the fixed epoch count here leaves out by a high patience).

use candle_core::Device;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gauntlet_attacks::backdoor::ImageSet;
use gauntlet_attacks::trigger_scan::neural_cleanse::{self, NeuralCleanse};
use gauntlet_attacks::trigger_scan::strip::{self, Strip};
use gauntlet_attacks::SampleRandomness;
use gauntlet_models::{ModelSpec, Network};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn images(n: usize, rng: &mut ChaCha8Rng) -> ImageSet {
    let pixels = (0..n * 64).map(|_| rng.random::<f32>()).collect();
    let labels = (0..n).map(|i| (i % 10) as u32).collect();
    ImageSet::new([1, 8, 8], pixels, labels, 10).unwrap_or_else(|e| panic!("{e}"))
}

fn bench_scans(c: &mut Criterion) {
    let spec = ModelSpec::from_toml_str(
        "architecture = \"small_cnn\"\ninput_shape = [1, 8, 8]\nnum_classes = 10",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let network = Network::init(&spec, 7, &Device::Cpu).unwrap_or_else(|e| panic!("{e}"));
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let clean = images(300, &mut rng);
    let held_out = images(100, &mut rng);
    let inputs = images(100, &mut rng);

    let mut group = c.benchmark_group("backdoor_small_cnn_8x8");
    group.sample_size(10);
    let cleanse = NeuralCleanse::new(neural_cleanse::Params {
        epochs: 40,
        early_stop_patience: 1_000,
        ..neural_cleanse::Params::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let randomness = SampleRandomness::for_range(7, "neural_cleanse", 0..10);
    group.throughput(Throughput::Elements(1));
    group.bench_function("neural_cleanse_per_class", |b| {
        b.iter(|| {
            cleanse
                .reverse_engineer(&network, &clean, 0, &randomness)
                .unwrap_or_else(|e| panic!("{e}"))
        })
    });
    let strip = Strip::new(strip::Params {
        overlays: 100,
        ..strip::Params::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let randomness = SampleRandomness::for_range(7, "strip", 0..inputs.len());
    group.throughput(Throughput::Elements(inputs.len() as u64));
    group.bench_function("strip_per_input", |b| {
        b.iter(|| {
            strip
                .entropies(&network, &inputs, &held_out, &randomness)
                .unwrap_or_else(|e| panic!("{e}"))
        })
    });
    group.finish();
}

criterion_group!(benches, bench_scans);
criterion_main!(benches);
