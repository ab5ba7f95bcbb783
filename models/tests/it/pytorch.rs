//! Interop with real PyTorch: networks defined in PyTorch, saved with
//! `safetensors.torch.save_file(model.state_dict(), path)`, load without renaming and give
//! PyTorch's logits and input gradients.
//!
//! The fixtures in `tests/fixtures/pytorch/` were written by `make_fixtures.py` there (see its
//! README): per model the weights, the gauntlet spec, and a reference batch with PyTorch's
//! float32 logits and ∂ Σ cross-entropy / ∂ inputs. No Python is needed to run this test.
//!
//! ## Tolerance
//!
//! Both sides compute in float32 but sum in different orders (im2col + GEMM in candle, oneDNN
//! or PyTorch's own kernels in torch), so the results differ by rounding only: a few units of
//! f32's 6e-8 roundoff per accumulated operation, amplified mildly through the depth of the
//! network. The check is `|ours − torch| ≤ TOLERANCE · scale` elementwise, where `scale` is
//! the largest magnitude of the reference tensor (the natural unit: an entry of a gradient
//! that is tiny compared with the rest carries an absolute, not a relative, error). With
//! `TOLERANCE = 1e-5` the bound is about 150 units of roundoff: over 15 times the worst
//! case measured here (6.3e-7, the small CNN's gradient; all figures are in the fixtures'
//! README), and below what the subtle semantic slips produce on the `sequential` fixture,
//! measured by changing the PyTorch side: the tanh-approximate GELU moves the logits by 4e-5
//! and the gradient by 3e-3 of their scale, batch-norm eps 1e-3 instead of 1e-5 by 9e-4 and
//! 7e-3, `count_include_pad=False` average pooling by 9e-2 and 0.2. A wrong weight layout,
//! tensor name or pooling window is far larger still.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use gauntlet_models::{Loss, Model, Network};

use crate::to_vec;

/// The largest elementwise difference allowed, as a fraction of the reference's largest
/// magnitude (see the module docs).
const TOLERANCE: f64 = 1e-5;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pytorch")
}

/// The fixture `name`: the loaded network and its reference tensors.
struct Fixture {
    network: Network,
    inputs: Tensor,
    labels: Tensor,
    logits: Tensor,
    input_grad: Tensor,
}

fn fixture(name: &str) -> Fixture {
    let dir = fixture_dir();
    let network = Network::load(
        &dir.join(format!("{name}.toml")),
        &dir.join(format!("{name}.safetensors")),
        &Device::Cpu,
    )
    .unwrap_or_else(|error| panic!("{name}: the PyTorch state dict does not load: {error}"));
    let bytes = fs_err::read(dir.join(format!("{name}.io.safetensors"))).unwrap();
    let mut io = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    let mut take = |key: &str| {
        io.remove(key)
            .unwrap_or_else(|| panic!("{name}.io.safetensors has no `{key}`"))
    };
    let fixture = Fixture {
        network,
        inputs: take("inputs"),
        labels: take("labels").to_dtype(DType::U32).unwrap(),
        logits: take("logits"),
        input_grad: take("input_grad"),
    };
    assert_eq!(fixture.inputs.dtype(), DType::F32, "{name}: inputs");
    fixture
}

/// The largest `|ours − reference|` and the reference's largest magnitude.
fn worst_difference(ours: &Tensor, reference: &Tensor) -> (f64, f64) {
    assert_eq!(ours.dims(), reference.dims());
    let ours = to_vec(ours);
    let reference = to_vec(reference);
    let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst = ours
        .iter()
        .zip(&reference)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    (worst, scale)
}

fn assert_close(what: &str, ours: &Tensor, reference: &Tensor) {
    let (worst, scale) = worst_difference(ours, reference);
    eprintln!(
        "{what}: max |Δ| = {worst:.3e}, scale {scale:.3e}, relative {:.3e}",
        worst / scale
    );
    assert!(scale > 0.0, "{what}: the reference is all zeros");
    assert!(
        worst <= TOLERANCE * scale,
        "{what}: max |ours − torch| = {worst:e} exceeds {TOLERANCE:e} × {scale:e}"
    );
}

/// Loads the fixture and checks logits, predictions and the cross-entropy input gradient.
fn check(name: &str) {
    let fixture = fixture(name);
    let logits = fixture.network.forward(&fixture.inputs).unwrap();
    assert_close(&format!("{name} logits"), &logits, &fixture.logits);
    assert_eq!(
        fixture
            .network
            .predict(&fixture.inputs)
            .unwrap()
            .to_vec1::<u32>()
            .unwrap(),
        fixture.logits.argmax(1).unwrap().to_vec1::<u32>().unwrap(),
        "{name}: predicted classes differ from PyTorch's"
    );
    let result = fixture
        .network
        .loss_and_input_gradient(&fixture.inputs, &fixture.labels, Loss::CrossEntropy)
        .unwrap();
    assert_close(
        &format!("{name} logits (gradient pass)"),
        &result.logits,
        &fixture.logits,
    );
    assert_close(
        &format!("{name} input gradient"),
        &result.gradient,
        &fixture.input_grad,
    );
}

#[test]
fn pytorch_small_cnn_matches() {
    check("small_cnn");
}

#[test]
fn pytorch_mlp_matches() {
    check("mlp");
}

#[test]
fn pytorch_linear_matches() {
    check("linear");
}

#[test]
fn pytorch_resnet20_matches() {
    check("resnet20");
}

#[test]
fn pytorch_sequential_with_every_layer_type_matches() {
    check("sequential");
}
