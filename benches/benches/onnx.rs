//! PGD-10 on the same PyTorch-trained residual CNN (`models/tests/fixtures/byom`) loaded from
//! safetensors + spec and from its ONNX export, batch 128, images per second as throughput.
//! An ONNX model is compiled into the same `Network` at load time, so on the native path the
//! two should run at the same speed; the ratio is in benches/README.md.

use std::path::Path;

use candle_core::Device;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gauntlet_attacks::find_attack;
use gauntlet_benches::{synthetic_batch, BATCH};
use gauntlet_models::{Model, Network};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn byom_pgd(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/fixtures/byom");
    let from_safetensors = Network::load(
        &dir.join("cnn.toml"),
        &dir.join("cnn.safetensors"),
        &Device::Cpu,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let from_onnx = Network::from_onnx_file(&dir.join("cnn.onnx"), &Device::Cpu)
        .unwrap_or_else(|e| panic!("{e}"));
    let (inputs, labels) = synthetic_batch(&[1, 8, 8], 10, &Device::Cpu);
    let mut params = toml::Table::new();
    params.insert("steps".into(), toml::Value::Integer(10));
    let entry = find_attack("pgd").unwrap_or_else(|| panic!("no pgd"));
    let pgd = (entry.build)(&params, 0.1).unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("byom_cnn_pgd10");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(10);
    for (name, network) in [("safetensors", &from_safetensors), ("onnx", &from_onnx)] {
        assert!(
            network.uses_native_kernels(),
            "{name} is off the native path"
        );
        group.bench_function(name, |b| {
            let randomness = gauntlet_attacks::SampleRandomness::for_range(0, "bench", 0..BATCH);
            b.iter(|| {
                pgd.perturb(network as &dyn Model, &inputs, &labels, &randomness)
                    .unwrap_or_else(|e| panic!("{e}"))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, byom_pgd);
criterion_main!(benches);
