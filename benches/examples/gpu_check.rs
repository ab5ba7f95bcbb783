//! The measuring half of `benches/gpu_check.sh`: gauntlet on a device against gauntlet's native
//! CPU path, on the same weights and inputs.
//!
//! ```text
//! gpu_check models DEVICE            logits, input gradients and PGD robust accuracy
//! gpu_check throughput DEVICE B,...  PGD-10 img/s on ResNet-20, CPU native vs DEVICE
//! gpu_check make-data DIR N          a ResNet-20 NPY dataset labelled by the CPU model
//! gpu_check results A.json B.json K  two results.json agree within K images everywhere
//! ```
//!
//! DEVICE is `cuda` (needs `--features cuda`) or `cpu`, which runs the same comparisons against
//! candle's CPU path: that is how the script's logic is checked on a machine without a GPU.
//! Every subcommand exits 1 when a comparison is outside its stated tolerance.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use gauntlet_attacks::{find_attack, SampleRandomness};
use gauntlet_models::{Loss, Model, Network};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// The same allocator as the gauntlet binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Largest |logit difference| allowed, relative to the largest |logit| of the batch. f32 sums in
/// another order (cuBLAS, cuDNN-free im2col, another reduction tree) differ by a few ulps per
/// layer; 20 layers of ResNet-20 stay far inside 1e-4.
const LOGIT_TOLERANCE: f64 = 1e-4;
/// Smallest cosine similarity allowed between the two input gradients (whole batch, flattened).
const GRADIENT_COSINE: f64 = 0.9999;
/// Images by which robust accuracy may differ: a sample on a decision boundary may flip when
/// its logits differ in the last bits, and PGD's sign step amplifies that over 10 steps.
const MAX_IMAGES_APART: usize = 2;

const PGD_EPSILON: f32 = 8.0 / 255.0;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("models") => models(device(args.get(1))),
        Some("throughput") => throughput(device(args.get(1)), args.get(2)),
        Some("make-data") => make_data(args.get(1), args.get(2)),
        Some("results") => results(args.get(1), args.get(2), args.get(3)),
        _ => Err("usage: gpu_check models|throughput|make-data|results … (see the source)".into()),
    };
    match outcome {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(error) => {
            eprintln!("gpu_check: {error}");
            std::process::exit(2);
        }
    }
}

fn device(name: Option<&String>) -> Result<Device> {
    match name.map(String::as_str) {
        Some("cpu") => Ok(Device::Cpu),
        Some("cuda") => Ok(Device::new_cuda(0)?),
        other => Err(format!("expected a device `cpu` or `cuda`, got {other:?}").into()),
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The PyTorch-exported fixtures: trained small CNN and ResNet-20 with real batch-norm
/// statistics (models/tests/fixtures/pytorch/README.md).
fn fixture(name: &str, device: &Device) -> Result<Network> {
    let folder = repo_root().join("models/tests/fixtures/pytorch");
    Ok(Network::load(
        &folder.join(format!("{name}.toml")),
        &folder.join(format!("{name}.safetensors")),
        device,
    )?)
}

/// The reference network: native CPU kernels. The other: candle on `device` (on the CPU, the
/// native kernels switched off, so the comparison is never a path against itself).
fn pair(name: &str, device: &Device) -> Result<(Network, Network)> {
    let reference = fixture(name, &Device::Cpu)?;
    let other = fixture(name, device)?;
    let other = if device.is_cpu() {
        other.with_native_kernels(false)
    } else {
        other
    };
    Ok((reference, other))
}

/// `count` images in [0, 1] of `shape`, smooth enough to be classified with some margin:
/// per-image random colour gradients plus a little noise, from a fixed seed.
fn images(shape: &[usize], count: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (channels, height, width) = (shape[0], shape[1], shape[2]);
    let mut pixels = Vec::with_capacity(count * channels * height * width);
    for _ in 0..count {
        for _ in 0..channels {
            let (base, dx, dy): (f32, f32, f32) = (
                rng.random(),
                rng.random_range(-1.0..1.0),
                rng.random_range(-1.0..1.0),
            );
            for y in 0..height {
                for x in 0..width {
                    let value = base
                        + 0.5 * dx * x as f32 / width as f32
                        + 0.5 * dy * y as f32 / height as f32
                        + 0.05 * rng.random_range(-1.0f32..1.0);
                    pixels.push(value.clamp(0.0, 1.0));
                }
            }
        }
    }
    pixels
}

fn batch(network: &Network, count: usize, device: &Device) -> Result<Tensor> {
    let shape = network.input_shape().to_vec();
    let mut dims = vec![count];
    dims.extend_from_slice(&shape);
    Ok(Tensor::from_vec(images(&shape, count, 7), dims, device)?)
}

fn to_vec(tensor: &Tensor) -> Result<Vec<f32>> {
    Ok(tensor
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1()?)
}

fn labels_of(tensor: &Tensor) -> Result<Vec<u32>> {
    Ok(tensor
        .to_device(&Device::Cpu)?
        .to_dtype(DType::U32)?
        .to_vec1()?)
}

/// PGD-10 at ε = 8/255 (L∞), the suite's defaults otherwise; returns the adversarial inputs.
fn pgd(network: &Network, inputs: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let entry = find_attack("pgd").ok_or("no attack `pgd` in the registry")?;
    let attack = (entry.build)(&toml::Table::new(), PGD_EPSILON)?;
    let randomness = SampleRandomness::for_range(0, "gpu_check", 0..inputs.dim(0)?);
    Ok(attack.perturb(network, inputs, labels, &randomness)?)
}

fn models(device: Result<Device>) -> Result<bool> {
    let device = device?;
    let mut ok = true;
    println!(
        "| model | images | max |Δlogit| / max |logit| (≤ {LOGIT_TOLERANCE:e}) | gradient cosine (≥ {GRADIENT_COSINE}) | clean correct ref / dev | PGD-10 robust ref / dev (≤ {MAX_IMAGES_APART} apart) |"
    );
    println!("|---|---|---|---|---|---|");
    for name in ["small_cnn", "resnet20"] {
        let (reference, other) = pair(name, &device)?;
        let count = 256;
        let inputs_cpu = batch(&reference, count, &Device::Cpu)?;
        let inputs_dev = inputs_cpu.to_device(&device)?;
        // Labels: the reference's own predictions, so clean accuracy is 100% by construction
        // and the attack has something to break.
        let labels_cpu = reference.predict(&inputs_cpu)?;
        let labels_dev = labels_cpu.to_device(&device)?;

        let (logits_ref, logits_dev) = (
            to_vec(&reference.forward(&inputs_cpu)?)?,
            to_vec(&other.forward(&inputs_dev)?)?,
        );
        let scale = logits_ref
            .iter()
            .fold(0f64, |m, v| m.max(f64::from(v.abs())));
        let worst = logits_ref
            .iter()
            .zip(&logits_dev)
            .fold(0f64, |m, (a, b)| m.max(f64::from((a - b).abs())));
        let logit_error = worst / scale.max(1e-12);

        let grad_ref = reference
            .loss_and_input_gradient(&inputs_cpu, &labels_cpu, Loss::CrossEntropy)?
            .gradient;
        let grad_dev = other
            .loss_and_input_gradient(&inputs_dev, &labels_dev, Loss::CrossEntropy)?
            .gradient;
        let cosine = cosine(&to_vec(&grad_ref)?, &to_vec(&grad_dev)?);

        let clean_ref = correct(&labels_of(&reference.predict(&inputs_cpu)?)?, &labels_cpu)?;
        let clean_dev = correct(&labels_of(&other.predict(&inputs_dev)?)?, &labels_cpu)?;
        let adv_ref = pgd(&reference, &inputs_cpu, &labels_cpu)?;
        let adv_dev = pgd(&other, &inputs_dev, &labels_dev)?;
        let robust_ref = correct(&labels_of(&reference.predict(&adv_ref)?)?, &labels_cpu)?;
        let robust_dev = correct(&labels_of(&other.predict(&adv_dev)?)?, &labels_cpu)?;

        let passed = logit_error <= LOGIT_TOLERANCE
            && cosine >= GRADIENT_COSINE
            && clean_ref.abs_diff(clean_dev) <= MAX_IMAGES_APART
            && robust_ref.abs_diff(robust_dev) <= MAX_IMAGES_APART;
        ok &= passed;
        println!(
            "| {name} | {count} | {logit_error:.2e} | {cosine:.6} | {clean_ref} / {clean_dev} | {robust_ref} / {robust_dev} | {}",
            if passed { "ok" } else { "FAILED" }
        );
    }
    Ok(ok)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 && bb == 0.0 {
        return 1.0;
    }
    dot / (aa.sqrt() * bb.sqrt()).max(f64::MIN_POSITIVE)
}

fn correct(predictions: &[u32], labels: &Tensor) -> Result<usize> {
    let labels = labels_of(labels)?;
    Ok(predictions
        .iter()
        .zip(&labels)
        .filter(|(p, l)| p == l)
        .count())
}

/// PGD-10 img/s on ResNet-20 at each batch size: the CPU native path and `device`.
fn throughput(device: Result<Device>, batches: Option<&String>) -> Result<bool> {
    let device = device?;
    let batches: Vec<usize> = batches
        .map(String::as_str)
        .unwrap_or("128,512,1024")
        .split(',')
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()?;
    let (reference, other) = pair("resnet20", &device)?;
    println!("| batch | CPU native PGD-10 img/s | {device:?} PGD-10 img/s | ratio |");
    println!("|---|---|---|---|");
    for size in batches {
        let inputs_cpu = batch(&reference, size, &Device::Cpu)?;
        let labels_cpu = reference.predict(&inputs_cpu)?;
        let inputs_dev = inputs_cpu.to_device(&device)?;
        let labels_dev = labels_cpu.to_device(&device)?;
        let cpu = images_per_second(&reference, &inputs_cpu, &labels_cpu, size)?;
        let dev = images_per_second(&other, &inputs_dev, &labels_dev, size)?;
        println!("| {size} | {cpu:.1} | {dev:.1} | {:.2}× |", dev / cpu);
    }
    Ok(true)
}

/// The median of three timed PGD-10 runs after one warm-up (CUDA kernels load on first use).
fn images_per_second(
    network: &Network,
    inputs: &Tensor,
    labels: &Tensor,
    size: usize,
) -> Result<f64> {
    let adversarial = pgd(network, inputs, labels)?;
    // Reading a value back waits for the device to finish.
    adversarial
        .sum_all()?
        .to_dtype(DType::F32)?
        .to_scalar::<f32>()?;
    let mut rates = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let adversarial = pgd(network, inputs, labels)?;
        adversarial
            .sum_all()?
            .to_dtype(DType::F32)?
            .to_scalar::<f32>()?;
        rates.push(size as f64 / started.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    Ok(rates[1])
}

/// An NPY dataset of `count` ResNet-20-sized images (uint8) labelled by the CPU model, for the
/// ResNet-20 suite (`benches/gpu/resnet20.toml`).
fn make_data(dir: Option<&String>, count: Option<&String>) -> Result<bool> {
    let dir = PathBuf::from(dir.ok_or("make-data needs a folder")?);
    let count: usize = count.map(|c| c.parse()).transpose()?.unwrap_or(512);
    let network = fixture("resnet20", &Device::Cpu)?;
    let shape = network.input_shape().to_vec();
    // Quantised first, so the model labels exactly the pixels the suite will read.
    let bytes: Vec<u8> = images(&shape, count, 11)
        .iter()
        .map(|v| (v * 255.0).round() as u8)
        .collect();
    let pixels: Vec<f32> = bytes.iter().map(|b| f32::from(*b) / 255.0).collect();
    let mut dims = vec![count];
    dims.extend_from_slice(&shape);
    let labels =
        labels_of(&network.predict(&Tensor::from_vec(pixels, dims.clone(), &Device::Cpu)?)?)?;
    std::fs::create_dir_all(&dir)?;
    write_npy(&dir.join("images.npy"), "|u1", &dims, &bytes)?;
    let label_bytes: Vec<u8> = labels
        .iter()
        .flat_map(|l| i64::from(*l).to_le_bytes())
        .collect();
    write_npy(&dir.join("labels.npy"), "<i8", &[count], &label_bytes)?;
    println!("wrote {count} images and labels to {}", dir.display());
    Ok(true)
}

/// NPY version 1.0: magic, version, a header padded with spaces to a multiple of 64 bytes
/// ending in a newline, then the C-order payload.
fn write_npy(path: &Path, descr: &str, shape: &[usize], payload: &[u8]) -> Result<()> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&u16::try_from(header.len())?.to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(payload);
    std::fs::write(path, bytes)?;
    Ok(())
}

/// Two results.json of the same suite on two devices: every figure within `max_apart` images.
fn results(a: Option<&String>, b: Option<&String>, max_apart: Option<&String>) -> Result<bool> {
    let a = gauntlet_reports::read_json(Path::new(a.ok_or("results needs two files")?))?;
    let b = gauntlet_reports::read_json(Path::new(b.ok_or("results needs two files")?))?;
    let max_apart: usize = max_apart
        .map(|k| k.parse())
        .transpose()?
        .unwrap_or(MAX_IMAGES_APART);
    let mut figures = vec![(
        "clean".to_owned(),
        a.clean.accuracy.successes,
        Some(b.clean.accuracy.successes),
    )];
    for attack in &a.attacks {
        let other = b
            .attacks
            .iter()
            .find(|o| o.label == attack.label && o.epsilon == attack.epsilon);
        figures.push((
            format!("{}@{}", attack.label, attack.epsilon),
            attack.robust_accuracy.successes,
            other.map(|o| o.robust_accuracy.successes),
        ));
    }
    for worst in &a.worst_case {
        let other = b
            .worst_case
            .iter()
            .find(|o| o.norm == worst.norm && o.epsilon == worst.epsilon);
        figures.push((
            format!("worst_case[{}@{}]", worst.norm, worst.epsilon),
            worst.robust_accuracy.successes,
            other.map(|o| o.robust_accuracy.successes),
        ));
    }
    println!(
        "| figure | {} | {} | apart (≤ {max_apart}) |",
        a.device, b.device
    );
    println!("|---|---|---|---|");
    let mut ok = a.dataset.samples == b.dataset.samples;
    for (key, left, right) in figures {
        let apart = right.map(|r| r.abs_diff(left));
        let fine = apart.is_some_and(|d| d <= max_apart);
        ok &= fine;
        println!(
            "| {key} | {left} | {} | {} |",
            right.map_or("missing".to_owned(), |r| r.to_string()),
            apart.map_or("-".to_owned(), |d| d.to_string()) + if fine { "" } else { " FAILED" }
        );
    }
    Ok(ok)
}
