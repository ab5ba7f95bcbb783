//! The figures of benches/README.md, measured in one run: images per second of
//! forward, forward+backward, FGSM and PGD-k, and the ratio PGD-k / (k × forward+backward).
//!
//! `cargo bench -p gauntlet-benches --bench ratios` prints a markdown table. Under
//! `cargo test --benches` (CI's smoke test) it runs each measurement once on a small batch.

use std::time::{Duration, Instant};

use gauntlet_attacks::find_attack;
use gauntlet_attacks::SampleRandomness;
use gauntlet_benches::{resnet20, small_cnn, Fixture, BATCH};
use gauntlet_models::{Loss, Model};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PGD_STEPS: i64 = 10;

/// Median wall time of one call of `work`, over `repeats` samples after one warm-up call.
///
/// A sample times as many back-to-back calls as fill about 100 ms (one call for PGD, a dozen
/// for a small CNN's forward pass) and divides: single calls of a few milliseconds are at the
/// mercy of a shared machine's scheduler.
fn median_time(repeats: usize, mut work: impl FnMut()) -> Duration {
    let started = Instant::now();
    work();
    let calls = (Duration::from_millis(100).as_secs_f64() / started.elapsed().as_secs_f64())
        .ceil()
        .clamp(1.0, 1000.0) as u32;
    let mut times: Vec<Duration> = (0..repeats)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..calls {
                work();
            }
            started.elapsed() / calls
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn row(fixture: &Fixture, repeats: usize) -> String {
    let net = &fixture.network;
    let (x, y) = (&fixture.inputs, &fixture.labels);
    let forward = median_time(repeats, || {
        net.forward(x).unwrap_or_else(|e| panic!("{e}"));
    });
    let forward_backward = median_time(repeats, || {
        net.loss_and_input_gradient(x, y, Loss::CrossEntropy)
            .unwrap_or_else(|e| panic!("{e}"));
    });
    let build = |name: &str, steps: Option<i64>| {
        let mut params = toml::Table::new();
        if let Some(steps) = steps {
            params.insert("steps".into(), toml::Value::Integer(steps));
        }
        let entry = find_attack(name).unwrap_or_else(|| panic!("no attack {name}"));
        (entry.build)(&params, 0.03).unwrap_or_else(|e| panic!("{e}"))
    };
    let fgsm = build("fgsm", None);
    let pgd = build("pgd", Some(PGD_STEPS));
    // One generator per sample, as the runner makes them for each batch.
    let randomness = SampleRandomness::for_range(0, "bench", 0..x.dim(0).unwrap_or(0));
    let fgsm_time = median_time(repeats, || {
        fgsm.perturb(net, x, y, &randomness)
            .unwrap_or_else(|e| panic!("{e}"));
    });
    let pgd_time = median_time(repeats.div_ceil(2).max(1), || {
        pgd.perturb(net, x, y, &randomness)
            .unwrap_or_else(|e| panic!("{e}"));
    });
    let rate = |d: Duration| BATCH as f64 / d.as_secs_f64();
    format!(
        "| {} | {:.0} | {:.0} | {:.0} | {:.1} | {:.3} |",
        fixture.name,
        rate(forward),
        rate(forward_backward),
        rate(fgsm_time),
        rate(pgd_time),
        pgd_time.as_secs_f64() / (PGD_STEPS as f64 * forward_backward.as_secs_f64())
    )
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then run once, quickly.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let repeats = if benchmarking { 7 } else { 1 };
    let device = candle_core::Device::Cpu;
    println!("batch {BATCH}, CPU, {} threads", available_threads());
    println!("| model | forward img/s | fwd+bwd img/s | FGSM img/s | PGD-{PGD_STEPS} img/s | PGD-{PGD_STEPS} / ({PGD_STEPS} × fwd+bwd) |");
    println!("|---|---|---|---|---|---|");
    println!("{}", row(&small_cnn(&device), repeats));
    if benchmarking {
        println!("{}", row(&resnet20(&device), repeats));
    }
}

fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
