//! TorchScript through libtorch (feature `torch`): the byom CNN traced by real PyTorch
//! (`fixtures/byom/make_fixtures.py`, `cnn.torchscript.pt`) gives PyTorch's logits and the
//! safetensors model's logits, its input gradient matches finite differences for every loss
//! and the native model's gradient, and an archive whose pickle calls `os.system` is refused by
//! the scanner before libtorch sees it.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use gauntlet_models::testing::assert_gradient_matches_finite_differences;
use gauntlet_models::{
    KernelPath, Loss, Model, ModelError, ModelFormat, Network, TorchScriptModel,
};

use crate::to_vec;

/// The largest absolute logit difference allowed against PyTorch (the bar).
const LOGIT_TOLERANCE: f64 = 1e-4;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/byom")
}

fn io() -> (Tensor, Tensor, Tensor) {
    let bytes = fs_err::read(dir().join("cnn.io.safetensors")).unwrap();
    let mut io = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    let mut take = |key: &str| io.remove(key).unwrap();
    (
        take("inputs"),
        take("labels").to_dtype(DType::U32).unwrap(),
        take("logits"),
    )
}

fn torchscript() -> TorchScriptModel {
    TorchScriptModel::from_file(&dir().join("cnn.torchscript.pt"), &[1, 8, 8])
        .unwrap_or_else(|error| panic!("cnn.torchscript.pt: {error}"))
}

fn safetensors() -> Network {
    Network::load(
        &dir().join("cnn.toml"),
        &dir().join("cnn.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
}

fn max_abs_difference(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    to_vec(a)
        .iter()
        .zip(to_vec(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn torchscript_gives_pytorchs_and_the_safetensors_models_logits() {
    let (inputs, _, expected) = io();
    let model = torchscript();
    let info = model.info();
    assert_eq!(info.format, ModelFormat::TorchScript);
    assert_eq!(model.input_shape(), [1, 8, 8]);
    assert_eq!(model.num_classes(), 10, "classes read from a forward pass");
    assert_eq!(model.kernel_path(), KernelPath::Libtorch);
    assert!(model.capabilities().input_gradients);
    let network = safetensors();
    assert_eq!(
        info.parameters,
        Some(network.parameter_count()),
        "the same trained values as the state dict"
    );
    let logits = model.forward(&inputs).unwrap();
    assert_eq!(logits.dtype(), DType::F32);
    let against_pytorch = max_abs_difference(&logits, &expected);
    assert!(
        against_pytorch <= LOGIT_TOLERANCE,
        "max |libtorch − PyTorch| logit = {against_pytorch:e}"
    );
    let against_safetensors = max_abs_difference(&logits, &network.forward(&inputs).unwrap());
    assert!(
        against_safetensors <= LOGIT_TOLERANCE,
        "max |libtorch − native| logit = {against_safetensors:e}"
    );
    // A batch of one and a batch of 32 agree sample by sample (no batch-norm batch statistics:
    // the module runs in eval mode).
    let single = model.forward(&inputs.narrow(0, 5, 1).unwrap()).unwrap();
    let row = logits.narrow(0, 5, 1).unwrap();
    assert!(max_abs_difference(&single, &row) <= 1e-5);
}

#[test]
fn torchscript_input_gradients_match_finite_differences_for_every_loss() {
    let (inputs, labels, _) = io();
    let model = torchscript().to_dtype(DType::F64).unwrap();
    let inputs = inputs
        .narrow(0, 0, 4)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let labels = labels.narrow(0, 0, 4).unwrap();
    assert_eq!(model.forward(&inputs).unwrap().dtype(), DType::F64);
    for loss in [
        Loss::CrossEntropy,
        Loss::CwMargin,
        Loss::Dlr,
        Loss::DlrTargeted,
    ] {
        assert_gradient_matches_finite_differences(&model, &inputs, &labels, loss, 1e-4);
    }
}

#[test]
fn torchscript_gradients_and_losses_equal_the_native_models() {
    let (inputs, labels, _) = io();
    let model = torchscript();
    let network = safetensors();
    for loss in [
        Loss::CrossEntropy,
        Loss::CwMargin,
        Loss::Dlr,
        Loss::DlrTargeted,
    ] {
        let ours = model
            .loss_and_input_gradient(&inputs, &labels, loss)
            .unwrap();
        let native = network
            .loss_and_input_gradient(&inputs, &labels, loss)
            .unwrap();
        assert_eq!(ours.gradient.dims(), inputs.dims());
        let scale = to_vec(&native.gradient)
            .iter()
            .fold(0.0f64, |m, g| m.max(g.abs()));
        assert!(scale > 0.0, "{loss:?}: the native gradient is zero");
        let gradient = max_abs_difference(&ours.gradient, &native.gradient);
        assert!(
            gradient <= 1e-3 * scale,
            "{loss:?}: max |libtorch − native| gradient = {gradient:e} (largest {scale:e})"
        );
        assert!(
            max_abs_difference(&ours.loss, &native.loss) <= 1e-4,
            "{loss:?} loss"
        );
        assert!(max_abs_difference(&ours.logits, &native.logits) <= LOGIT_TOLERANCE);
    }
}

#[test]
fn a_torchscript_archive_whose_pickle_calls_os_system_is_refused_by_the_scanner() {
    let error =
        TorchScriptModel::from_file(&dir().join("evil.torchscript.pt"), &[1, 8, 8]).unwrap_err();
    assert!(
        matches!(&error, ModelError::UnsafeTorchScript { findings }
            if findings.iter().any(|f| f.contains("posix.system") && f.contains("data.pkl"))),
        "{error}"
    );
    assert!(
        error.to_string().contains("libtorch never saw it"),
        "{error}"
    );
}

#[test]
fn wrong_input_shapes_and_non_models_are_clear_errors() {
    // The archive loads, but a forward pass on [1, 3, 8, 8] cannot run the first convolution.
    let error = TorchScriptModel::from_file(&dir().join("cnn.torchscript.pt"), &[3, 8, 8])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("forward pass on one zero input of shape [3, 8, 8]"),
        "{error}"
    );
    // A model that loaded refuses a batch of another per-sample shape before libtorch runs.
    let error = torchscript()
        .forward(&Tensor::zeros((2, 1, 8, 9), DType::F32, &Device::Cpu).unwrap())
        .unwrap_err();
    assert!(matches!(error, ModelError::InputShape { .. }), "{error}");
    // A truncated archive: the scanner or libtorch names the problem; no panic.
    let bytes = fs_err::read(dir().join("cnn.torchscript.pt")).unwrap();
    let error =
        TorchScriptModel::from_bytes(&bytes[..bytes.len() / 2], "half.pt", &[1, 8, 8]).unwrap_err();
    assert!(
        matches!(
            error,
            ModelError::UnsafeTorchScript { .. } | ModelError::TorchScript { .. }
        ),
        "{error}"
    );
}
