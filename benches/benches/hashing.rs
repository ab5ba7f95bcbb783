//! Streaming SHA-256 of a model file against `sha256sum` on the same file, in one run.
//!
//! `cargo bench -p gauntlet-benches --bench hashing` hashes a 1 GiB file (page cache warm for
//! both) and prints gauntlet's throughput as a fraction of `sha256sum`'s. Under
//! `cargo test --benches` it runs once on 8 MiB and checks the two digests agree.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let size: usize = if benchmarking { 1 << 30 } else { 8 << 20 };
    let repeats = if benchmarking { 5 } else { 1 };
    let mut file = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..size / chunk.len() {
        rng.fill_bytes(&mut chunk);
        file.write_all(&chunk).unwrap_or_else(|e| panic!("{e}"));
    }
    file.flush().unwrap_or_else(|e| panic!("{e}"));
    let path = file.path().to_path_buf();

    let mut ours = String::new();
    let gauntlet_time = median(
        (0..repeats)
            .map(|_| {
                let started = Instant::now();
                let digest = gauntlet_artifact::hashing::sha256_file(&path)
                    .unwrap_or_else(|e| panic!("{e}"));
                let elapsed = started.elapsed();
                ours = digest.sha256_hex();
                elapsed
            })
            .collect(),
    );
    let mut theirs = String::new();
    let coreutils_time = median(
        (0..repeats)
            .map(|_| {
                let started = Instant::now();
                let output = Command::new("sha256sum")
                    .arg(&path)
                    .output()
                    .unwrap_or_else(|e| panic!("sha256sum: {e}"));
                let elapsed = started.elapsed();
                theirs = String::from_utf8_lossy(&output.stdout)
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                elapsed
            })
            .collect(),
    );
    assert_eq!(
        ours, theirs,
        "gauntlet and sha256sum disagree on the digest"
    );
    let mib = size as f64 / (1 << 20) as f64;
    println!(
        "{mib:.0} MiB: gauntlet {:.0} MiB/s, sha256sum {:.0} MiB/s, ratio {:.2}",
        mib / gauntlet_time.as_secs_f64(),
        mib / coreutils_time.as_secs_f64(),
        coreutils_time.as_secs_f64() / gauntlet_time.as_secs_f64()
    );
}
