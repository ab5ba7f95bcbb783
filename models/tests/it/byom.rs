//! Bring your own model: one residual CNN trained by real PyTorch (`fixtures/byom/
//! make_fixtures.py`) and saved as safetensors, a zip checkpoint, a legacy checkpoint, a nested
//! DataParallel checkpoint with f16, strided and shared storages, and two ONNX exports (the
//! TorchScript-based exporter at opset 13 and the dynamo exporter at opset 18) gives PyTorch's
//! logits in every format (max abs difference ≤ 1e-4), and every ONNX model's input gradient
//! matches finite differences. Hostile and malformed files are refused before anything runs.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use gauntlet_models::testing::assert_gradient_matches_finite_differences;
use gauntlet_models::{KernelPath, Loss, Model, ModelError, ModelFormat, ModelSpec, Network};

use crate::to_vec;

/// The largest absolute logit difference allowed against PyTorch (the bar).
const LOGIT_TOLERANCE: f64 = 1e-4;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/byom")
}

struct Io {
    inputs: Tensor,
    labels: Tensor,
    logits: Tensor,
    mlp_logits: Tensor,
}

fn io() -> Io {
    let bytes = fs_err::read(dir().join("cnn.io.safetensors")).unwrap();
    let mut io = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    let mut take = |key: &str| io.remove(key).unwrap();
    Io {
        inputs: take("inputs"),
        labels: take("labels").to_dtype(DType::U32).unwrap(),
        logits: take("logits"),
        mlp_logits: take("mlp_logits"),
    }
}

fn spec_checkpoint(file: &str) -> Network {
    Network::load(&dir().join("cnn.toml"), &dir().join(file), &Device::Cpu)
        .unwrap_or_else(|error| panic!("{file}: {:?}", anyhow_chain(&error)))
}

fn onnx(file: &str) -> Network {
    Network::from_onnx_file(&dir().join(file), &Device::Cpu)
        .unwrap_or_else(|error| panic!("{file}: {}", anyhow_chain(&error)))
}

fn anyhow_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn max_abs_difference(a: &Tensor, b: &Tensor) -> f64 {
    to_vec(a)
        .iter()
        .zip(to_vec(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn assert_logits(network: &Network, expected: &Tensor, what: &str) {
    let io = io();
    for native in [true, false] {
        let network = network.with_native_kernels(native);
        let logits = network.forward(&io.inputs).unwrap();
        let worst = max_abs_difference(&logits, expected);
        assert!(
            worst <= LOGIT_TOLERANCE,
            "{what} (native kernels {native}): max |gauntlet − PyTorch| logit = {worst:e}"
        );
    }
}

#[test]
fn every_format_gives_pytorchs_logits() {
    let io = io();
    let cases = [
        ("cnn.safetensors", ModelFormat::GauntletSpec),
        ("cnn.zip.pt", ModelFormat::TorchCheckpoint),
        ("cnn.legacy.pt", ModelFormat::TorchCheckpoint),
    ];
    for (file, format) in cases {
        let network = spec_checkpoint(file);
        assert_eq!(network.info().format, format, "{file}");
        assert_logits(&network, &io.logits, file);
    }
    for file in ["cnn.onnx", "cnn.dynamo.onnx"] {
        let network = onnx(file);
        assert_eq!(network.info().format, ModelFormat::Onnx);
        assert_eq!(network.input_shape(), [1, 8, 8]);
        assert_eq!(network.num_classes(), 10);
        assert_eq!(network.kernel_path(), KernelPath::Native, "{file}");
        assert_logits(&network, &io.logits, file);
    }
    assert_logits(&onnx("mlp.onnx"), &io.mlp_logits, "mlp.onnx");
}

#[test]
fn checkpoint_formats_hold_the_same_weights_as_safetensors() {
    let reference = spec_checkpoint("cnn.safetensors")
        .to_safetensors_bytes()
        .unwrap();
    for file in ["cnn.zip.pt", "cnn.legacy.pt"] {
        let bytes = spec_checkpoint(file).to_safetensors_bytes().unwrap();
        assert_eq!(bytes, reference, "{file}: every tensor bit-identical");
    }
    // The nested file stores the first conv in f16 (so its logits are not PyTorch's f32 ones):
    // that tensor is within f16 rounding, everything else is bit-identical.
    let nested = spec_checkpoint("cnn.nested.pth");
    let reference = spec_checkpoint("cnn.safetensors");
    let names = reference.tensor_names();
    let ours = candle_core::safetensors::load_buffer(
        &nested.to_safetensors_bytes().unwrap(),
        &Device::Cpu,
    )
    .unwrap();
    let theirs = candle_core::safetensors::load_buffer(
        &reference.to_safetensors_bytes().unwrap(),
        &Device::Cpu,
    )
    .unwrap();
    for name in names {
        let difference = max_abs_difference(&ours[&name], &theirs[&name]);
        let bound = if name == "0.weight" { 1e-3 } else { 0.0 };
        assert!(difference <= bound, "{name}: {difference}");
    }
}

#[test]
fn every_onnx_model_has_finite_difference_input_gradients() {
    let io = io();
    let inputs = io
        .inputs
        .narrow(0, 0, 4)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let labels = io.labels.narrow(0, 0, 4).unwrap();
    for file in ["cnn.onnx", "cnn.dynamo.onnx", "mlp.onnx"] {
        let network = onnx(file).to_dtype(DType::F64).unwrap();
        for loss in [Loss::CrossEntropy, Loss::CwMargin] {
            assert_gradient_matches_finite_differences(&network, &inputs, &labels, loss, 1e-5);
        }
    }
}

#[test]
fn a_checkpoint_that_calls_os_system_is_refused_by_the_scanner() {
    let error = Network::load(
        &dir().join("cnn.toml"),
        &dir().join("evil.pt"),
        &Device::Cpu,
    )
    .unwrap_err();
    let text = anyhow_chain(&error);
    assert!(text.contains("refused by the scanner"), "{text}");
    assert!(text.contains("system"), "{text}");
}

#[test]
fn the_compiled_spec_round_trips_and_names_pytorchs_layers() {
    let bytes = fs_err::read(dir().join("mlp.onnx")).unwrap();
    let compiled = gauntlet_models::onnx::compile_onnx(&bytes, "mlp.onnx", None).unwrap();
    assert_eq!(compiled.opset, 17);
    let toml = compiled.spec.to_toml_string().unwrap();
    assert_eq!(ModelSpec::from_toml_str(&toml).unwrap(), compiled.spec);
    // The exporter keeps the state-dict names of the Linear layers.
    assert!(toml.contains("name = \"1\""), "{toml}");
    assert!(toml.contains("name = \"3\""), "{toml}");
}

#[test]
fn truncated_onnx_is_a_clear_error() {
    let bytes = fs_err::read(dir().join("cnn.onnx")).unwrap();
    for cut in [10, bytes.len() / 2, bytes.len() - 3] {
        let error = Network::from_onnx_bytes(&bytes[..cut], "cut.onnx", &Device::Cpu).unwrap_err();
        assert!(
            matches!(error, ModelError::Onnx { .. }),
            "cut at {cut}: {}",
            anyhow_chain(&error)
        );
    }
}

#[test]
fn truncated_checkpoints_are_clear_errors() {
    for file in ["cnn.zip.pt", "cnn.legacy.pt"] {
        let bytes = fs_err::read(dir().join(file)).unwrap();
        let spec = ModelSpec::from_file(&dir().join("cnn.toml")).unwrap();
        for cut in [bytes.len() / 3, bytes.len() - 40] {
            let result =
                Network::from_spec_and_weight_bytes(&spec, &bytes[..cut], file, &Device::Cpu);
            assert!(result.is_err(), "{file} cut at {cut} loaded");
        }
    }
}
