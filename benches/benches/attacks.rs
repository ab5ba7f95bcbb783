//! Forward+backward, FGSM and PGD-k on the small CNN and ResNet-20, batch 128, with images per
//! second as throughput, on the native CPU path; plus forward and forward+backward on candle's
//! path (`candle_forward`, `candle_forward_backward`) for the gain of the native kernels in the
//! same run. The ratio PGD-k / (k × forward+backward) comes from `ratios.rs`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gauntlet_attacks::find_attack;
use gauntlet_benches::{resnet20, small_cnn, Fixture, BATCH};
use gauntlet_models::{Loss, Model};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn attack(name: &str, steps: Option<i64>) -> Box<dyn gauntlet_attacks::Attack> {
    let mut params = toml::Table::new();
    if let Some(steps) = steps {
        params.insert("steps".into(), toml::Value::Integer(steps));
    }
    let entry = find_attack(name).unwrap_or_else(|| panic!("no attack {name}"));
    (entry.build)(&params, 0.03).unwrap_or_else(|e| panic!("{e}"))
}

fn bench_fixture(c: &mut Criterion, fixture: &Fixture, pgd_steps: &[i64]) {
    let mut group = c.benchmark_group(format!("cpu_{}", fixture.name));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(10);
    group.bench_function("forward", |b| {
        b.iter(|| {
            fixture
                .network
                .forward(&fixture.inputs)
                .unwrap_or_else(|e| panic!("{e}"))
        })
    });
    group.bench_function("forward_backward", |b| {
        b.iter(|| {
            fixture
                .network
                .loss_and_input_gradient(&fixture.inputs, &fixture.labels, Loss::CrossEntropy)
                .unwrap_or_else(|e| panic!("{e}"))
        })
    });
    let candle = fixture.network.with_native_kernels(false);
    group.bench_function("candle_forward", |b| {
        b.iter(|| {
            candle
                .forward(&fixture.inputs)
                .unwrap_or_else(|e| panic!("{e}"))
        })
    });
    group.bench_function("candle_forward_backward", |b| {
        b.iter(|| {
            candle
                .loss_and_input_gradient(&fixture.inputs, &fixture.labels, Loss::CrossEntropy)
                .unwrap_or_else(|e| panic!("{e}"))
        })
    });
    let fgsm = attack("fgsm", None);
    group.bench_function("fgsm", |b| {
        let randomness = randomness(&fixture.inputs);
        b.iter(|| {
            fgsm.perturb(
                &fixture.network,
                &fixture.inputs,
                &fixture.labels,
                &randomness,
            )
            .unwrap_or_else(|e| panic!("{e}"))
        })
    });
    for &steps in pgd_steps {
        let pgd = attack("pgd", Some(steps));
        group.bench_with_input(BenchmarkId::new("pgd", steps), &steps, |b, _| {
            let randomness = randomness(&fixture.inputs);
            b.iter(|| {
                pgd.perturb(
                    &fixture.network,
                    &fixture.inputs,
                    &fixture.labels,
                    &randomness,
                )
                .unwrap_or_else(|e| panic!("{e}"))
            })
        });
    }
    group.finish();
}

fn small_cnn_benches(c: &mut Criterion) {
    let fixture = small_cnn(&candle_core::Device::Cpu);
    bench_fixture(c, &fixture, &[10]);
}

fn resnet20_benches(c: &mut Criterion) {
    let fixture = resnet20(&candle_core::Device::Cpu);
    bench_fixture(c, &fixture, &[10]);
}

criterion_group!(benches, small_cnn_benches, resnet20_benches);
criterion_main!(benches);

/// One generator per sample of the batch, as the runner makes them.
fn randomness(inputs: &candle_core::Tensor) -> gauntlet_attacks::SampleRandomness {
    gauntlet_attacks::SampleRandomness::for_range(0, "bench", 0..inputs.dim(0).unwrap_or(0))
}
