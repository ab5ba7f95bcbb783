//! A steady loop of forward + input-gradient passes for a profiler to sample:
//!
//! ```text
//! cargo build --release -p gauntlet-benches --example profile
//! perf record -g target/release/examples/profile resnet20 20
//! valgrind --tool=callgrind target/release/examples/profile small_cnn 2
//! ```
//!
//! Arguments: the fixture (`small_cnn` or `resnet20`), the number of passes over a batch
//! of 128, and optionally `pgd` to run PGD-10 (ε = 0.03) instead of single passes, `vary` to
//! alternate between two input batches, or `candle` to run candle's path instead of the
//! native kernels.

use candle_core::Device;
use gauntlet_attacks::find_attack;
use gauntlet_benches::{resnet20, small_cnn};
use gauntlet_models::{Loss, Model};

// The same allocator as the gauntlet binary and the benches.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let fixture = match args.next().as_deref() {
        Some("resnet20") => resnet20(&Device::Cpu),
        Some("small_cnn") | None => small_cnn(&Device::Cpu),
        Some(other) => return Err(format!("unknown fixture `{other}`").into()),
    };
    let passes: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(10);
    let mode = args.next();
    let network = match mode.as_deref() {
        Some("candle") => fixture.network.with_native_kernels(false),
        _ => fixture.network.clone(),
    };
    let pgd = match mode.as_deref() {
        None | Some("vary") | Some("candle") => None,
        Some("pgd") => {
            let entry = find_attack("pgd").ok_or("no attack `pgd`")?;
            Some((entry.build)(&toml::Table::new(), 0.03)?)
        }
        Some(other) => return Err(format!("unknown mode `{other}`").into()),
    };
    let vary = mode.as_deref() == Some("vary");
    let randomness =
        gauntlet_attacks::SampleRandomness::for_range(0, "profile", 0..fixture.inputs.dim(0)?);
    let shifted = (fixture.inputs.clone() * 0.9)?;
    let started = std::time::Instant::now();
    for pass in 0..passes {
        let inputs = if vary && pass % 2 == 1 {
            &shifted
        } else {
            &fixture.inputs
        };
        match &pgd {
            Some(attack) => {
                attack.perturb(&network, &fixture.inputs, &fixture.labels, &randomness)?;
            }
            None => {
                network.loss_and_input_gradient(inputs, &fixture.labels, Loss::CrossEntropy)?;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{passes} passes of {} images: {:.1} img/s",
        fixture.inputs.dim(0)?,
        (passes * fixture.inputs.dim(0)?) as f64 / seconds
    );
    Ok(())
}
