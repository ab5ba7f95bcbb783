//! The results stage on a nightly-sized run: 60,000 samples × 8 attack runs plus the clean pass
//! (540,000 records). `aggregate` (every figure, check and gate of `results.json`) and the
//! per-sample file's write and read, side by side in one run. Under `cargo test --benches` it
//! runs once on 2,000 samples.

use criterion::{criterion_group, criterion_main, Criterion};
use gauntlet_attacks::{AttackKind, BudgetSemantics, ModelAccess, Norm};
use gauntlet_reports::{DatasetInfo, KernelPathInfo, ModelInfo, SuiteInfo};
use gauntlet_results::{
    aggregate, samples_file, AttackRun, CleanOutcome, EvasionOutcome, Outcome, PlannedRun, RunId,
    RunMeasurements, RunPlan, RunPurpose, SampleRecord, PLAN_VERSION,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CLASSES: u32 = 10;

fn plan(samples: usize) -> RunPlan {
    let mut runs = vec![PlannedRun::clean()];
    for (name, kind) in [
        ("fgsm", AttackKind::SingleStep),
        ("pgd", AttackKind::Iterative),
    ] {
        for epsilon in [0.01f32, 0.03, 0.05, 0.1] {
            runs.push(PlannedRun {
                label: name.to_string(),
                purpose: RunPurpose::Attack,
                attack: Some(AttackRun {
                    name: name.to_string(),
                    kind,
                    needs: ModelAccess::InputGradients,
                    budget: BudgetSemantics::Bounded,
                    norm: Norm::Linf,
                    epsilon,
                    objective: "untargeted cross_entropy".to_string(),
                    params: serde_json::Map::new(),
                }),
                backdoor: None,
                detector: None,
            });
        }
    }
    let class_names: Vec<String> = (0..CLASSES).map(|c| c.to_string()).collect();
    RunPlan {
        plan_version: PLAN_VERSION,
        gauntlet_version: "bench".to_string(),
        suite: SuiteInfo {
            name: "bench".to_string(),
            path: None,
        },
        seed: 0,
        device: "cpu".to_string(),
        model: ModelInfo {
            name: "m".to_string(),
            architecture: "small_cnn".to_string(),
            path: "m".to_string(),
            sha256: "0".repeat(64),
            format: "safetensors".to_string(),
            input_shape: vec![1, 28, 28],
            num_classes: CLASSES as usize,
            parameters: 0,
        },
        dataset: DatasetInfo {
            name: "d".to_string(),
            path: "d".to_string(),
            format: "idx".to_string(),
            samples,
            class_names: class_names.clone(),
        },
        class_names,
        classes_in_dataset: CLASSES as usize,
        runs,
        gates: Vec::new(),
        fail_on_sanity: true,
        kernel_path: KernelPathInfo {
            path: "native".to_string(),
            reason: None,
        },
        provenance: None,
    }
}

/// Realistic records: robust accuracy falling with ε, losses spread over orders of magnitude.
fn records(plan: &RunPlan, samples: usize) -> Vec<SampleRecord> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let labels: Vec<u32> = (0..samples).map(|_| rng.random_range(0..CLASSES)).collect();
    let correct: Vec<bool> = (0..samples).map(|_| rng.random_bool(0.9)).collect();
    let mut records = Vec::with_capacity(samples * plan.runs.len());
    for (position, run) in plan.runs.iter().enumerate() {
        for index in 0..samples {
            let loss = -rng.random::<f32>().max(1e-9).ln();
            let outcome = match &run.attack {
                None => Outcome::Clean(CleanOutcome {
                    label: labels[index],
                    prediction: if correct[index] {
                        labels[index]
                    } else {
                        (labels[index] + 1) % CLASSES
                    },
                    loss,
                }),
                Some(attack) => {
                    let robust = correct[index] && rng.random::<f32>() > attack.epsilon * 9.0;
                    Outcome::Evasion(EvasionOutcome {
                        prediction: if robust {
                            labels[index]
                        } else {
                            rng.random_range(0..CLASSES)
                        },
                        robust,
                        loss,
                        norm: attack.epsilon,
                        linf: attack.epsilon,
                        min_value: 0.0,
                        max_value: 1.0,
                        nan: false,
                        queries: None,
                        broken_at: None,
                        broken_by: None,
                    })
                }
            };
            records.push(SampleRecord {
                run: RunId(position as u32),
                index: index as u64,
                outcome,
            });
        }
    }
    records
}

fn bench(c: &mut Criterion) {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let samples = if benchmarking { 60_000 } else { 2_000 };
    let plan = plan(samples);
    let records = records(&plan, samples);
    let measurements = RunMeasurements::default();
    let folder = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = folder.path().join(samples_file::FILE_NAME);
    let mut group = c.benchmark_group(format!("results_{samples}x9"));
    group.sample_size(10);
    group.bench_function("aggregate", |b| {
        b.iter(|| aggregate(&plan, &measurements, &records).unwrap_or_else(|e| panic!("{e}")))
    });
    group.bench_function("write_samples_parquet", |b| {
        b.iter(|| {
            samples_file::write(&path, &plan, &measurements, &records)
                .unwrap_or_else(|e| panic!("{e}"))
        })
    });
    group.bench_function("read_samples_parquet", |b| {
        b.iter(|| samples_file::read(&path).unwrap_or_else(|e| panic!("{e}")))
    });
    group.finish();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!("samples.parquet: {} records, {size} bytes", records.len());
}

criterion_group!(benches, bench);
criterion_main!(benches);
