//! APGD-CE, APGD-DLR, APGD-T and the Square Attack (100 queries, L∞ and L2) on the small CNN and ResNet-20, batch 128, images per second as
//! throughput, on the native CPU path. The labels are the network's own predictions, so every
//! sample starts correctly classified and is attacked (APGD skips samples already
//! misclassified, which with random labels would be nine in ten).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gauntlet_attacks::find_attack;
use gauntlet_benches::{resnet20, small_cnn, Fixture, BATCH};
use gauntlet_models::Model;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn attack(name: &str, params: &str) -> Box<dyn gauntlet_attacks::Attack> {
    let table: toml::Table = toml::from_str(params).unwrap_or_else(|e| panic!("{e}"));
    let entry = find_attack(name).unwrap_or_else(|| panic!("no attack {name}"));
    (entry.build)(&table, 0.03).unwrap_or_else(|e| panic!("{e}"))
}

fn bench_fixture(c: &mut Criterion, fixture: &Fixture) {
    let mut group = c.benchmark_group(format!("cpu_{}", fixture.name));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(10);
    let predicted = fixture
        .network
        .predict(&fixture.inputs)
        .unwrap_or_else(|e| panic!("{e}"));
    let randomness = gauntlet_attacks::SampleRandomness::for_range(
        0,
        "bench",
        0..fixture.inputs.dim(0).unwrap_or(0),
    );
    for (label, name, params) in [
        ("apgd_ce_10", "apgd", "steps = 10"),
        ("apgd_dlr_10", "apgd", "steps = 10\nloss = \"dlr\""),
        ("apgd_t_10x3", "apgd_t", "steps = 10\ntargets = 3"),
        ("square_linf_100", "square", "queries = 100"),
        ("square_l2_100", "square", "queries = 100\nnorm = \"l2\""),
    ] {
        let attack = attack(name, params);
        group.bench_function(label, |b| {
            b.iter(|| {
                attack
                    .perturb(&fixture.network, &fixture.inputs, &predicted, &randomness)
                    .unwrap_or_else(|e| panic!("{e}"))
            })
        });
    }
    group.finish();
}

fn small_cnn_benches(c: &mut Criterion) {
    bench_fixture(c, &small_cnn(&candle_core::Device::Cpu));
}

fn resnet20_benches(c: &mut Criterion) {
    bench_fixture(c, &resnet20(&candle_core::Device::Cpu));
}

criterion_group!(benches, small_cnn_benches, resnet20_benches);
criterion_main!(benches);
