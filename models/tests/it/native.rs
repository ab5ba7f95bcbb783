//! The native CPU path against candle's ops and autograd (`with_native_kernels(false)`):
//! logits and input gradients within 1e-5 relative, on random layer stacks (odd sizes, stride 2,
//! padding, dilation, rectangular kernels, every pooling, batch norm, residual blocks) and on
//! every built-in architecture, for both losses. Finite differences check candle's path in
//! `gradients.rs`; together they pin the native path to the true gradient.
//!
//! Seeds are fixed, and on ResNet-20 one sample in the batch may differ. The two paths round differently (the native path folds batch norm into the
//! convolution and sums in another order), so a pre-activation within rounding of a ReLU kink
//! or a near-tie in a max-pool window can fall on different sides in the two: a legitimate
//! difference of f32 arithmetic, not of the gradient formula, which a random seed would hit
//! now and then.

use candle_core::{DType, Device, Tensor};
use gauntlet_models::{FeatureLayer, FeatureName, Loss, Model, ModelError, Network};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use crate::gradients::with_random_batch_norm;
use crate::{init, random_inputs, random_labels, to_vec};

/// `max |native − reference| ≤ 1e-5 · max |reference|`, per tensor.
fn assert_close(what: &str, native: &Tensor, reference: &Tensor) {
    assert_eq!(native.dims(), reference.dims(), "{what}: shapes differ");
    let (native, reference) = (to_vec(native), to_vec(reference));
    let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst = native
        .iter()
        .zip(&reference)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst <= 1e-5 * scale.max(1e-20),
        "{what}: native differs from candle by {worst:e} (scale {scale:e})"
    );
}

/// Per sample, whether the native gradient is within 1e-5 of the candle one relative to the
/// largest candle gradient value in the batch.
fn agreeing_samples(native: &Tensor, reference: &Tensor) -> Vec<bool> {
    let batch = reference.dim(0).unwrap();
    let (native, reference) = (to_vec(native), to_vec(reference));
    let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let per_sample = reference.len() / batch.max(1);
    native
        .chunks(per_sample)
        .zip(reference.chunks(per_sample))
        .map(|(a, b)| {
            a.iter()
                .zip(b)
                .all(|(a, b)| (a - b).abs() <= 1e-5 * scale.max(1e-20))
        })
        .collect()
}

/// Checks that `network` runs natively and agrees with its candle twin on a random batch:
/// logits and losses everywhere, input gradients on all samples but at most `kinks` (see
/// the module docs: deep ReLU networks put some pre-activation within rounding of zero in
/// most large batches).
fn assert_native_matches_candle(network: &Network, batch: usize, seed: u64, kinks: usize) {
    assert_native_matches_candle_with(
        network,
        batch,
        seed,
        kinks,
        &[Loss::CrossEntropy, Loss::CwMargin],
    );
}

/// [`assert_native_matches_candle`] for some losses only and no kink allowance.
fn assert_native_matches_candle_for(network: &Network, batch: usize, seed: u64, losses: &[Loss]) {
    assert_native_matches_candle_with(network, batch, seed, 0, losses);
}

fn assert_native_matches_candle_with(
    network: &Network,
    batch: usize,
    seed: u64,
    kinks: usize,
    losses: &[Loss],
) {
    assert!(
        network.uses_native_kernels(),
        "{} should run on the native path",
        network.name()
    );
    let reference = network.with_native_kernels(false);
    assert!(!reference.uses_native_kernels());
    let mut shape = vec![batch];
    shape.extend_from_slice(network.input_shape());
    let inputs = random_inputs(&shape, seed).to_dtype(DType::F32).unwrap();
    let labels = random_labels(batch, network.num_classes(), seed + 1);
    assert_close(
        "logits",
        &network.forward(&inputs).unwrap(),
        &reference.forward(&inputs).unwrap(),
    );
    for &loss in losses {
        let native = network
            .loss_and_input_gradient(&inputs, &labels, loss)
            .unwrap();
        let candle = reference
            .loss_and_input_gradient(&inputs, &labels, loss)
            .unwrap();
        assert_close(&format!("{loss:?} loss"), &native.loss, &candle.loss);
        assert_close(&format!("{loss:?} logits"), &native.logits, &candle.logits);
        assert_eq!(native.gradient.dims(), candle.gradient.dims());
        let differing = agreeing_samples(&native.gradient, &candle.gradient)
            .iter()
            .filter(|agrees| !**agrees)
            .count();
        assert!(
            differing <= kinks,
            "{} {loss:?}: the input gradients of {differing} of {batch} samples differ by more \
             than 1e-5 relative (at most {kinks} allowed)",
            network.name()
        );
    }
}

#[test]
fn built_in_architectures_match_candle() {
    let cases = [
        "architecture = 'linear'\ninput_shape = [1, 5, 6]\nnum_classes = 4\nmean = [0.4]\nstd = [0.3]",
        "architecture = 'mlp'\ninput_shape = [7]\nnum_classes = 3\nhidden = [9, 5]",
        "architecture = 'small_cnn'\ninput_shape = [1, 28, 28]\nnum_classes = 10\nmean = [0.28]\nstd = [0.35]",
        "architecture = 'resnet20'\ninput_shape = [3, 32, 32]\nnum_classes = 10\nmean = [0.49, 0.48, 0.44]\nstd = [0.25, 0.24, 0.26]",
    ];
    for (seed, text) in cases.iter().enumerate() {
        let mut network = init(text, seed as u64);
        if text.contains("resnet20") {
            network = with_random_batch_norm(&network, 7);
        }
        // 37 images: not a multiple of the native path's image groups. ResNet-20 with random
        // batch-norm statistics has ~10⁶ ReLUs per batch: allow one sample on a kink.
        let kinks = usize::from(text.contains("resnet20"));
        assert_native_matches_candle(&network, 37, 100 + seed as u64, kinks);
    }
}

#[test]
fn residual_blocks_with_and_without_a_shortcut_match_candle() {
    let network = init(
        "architecture = 'sequential'\ninput_shape = [3, 9, 7]\nnum_classes = 4\n\
         [[layers]]\ntype = 'conv2d'\nin_channels = 3\nout_channels = 4\nkernel_size = 3\npadding = 1\n\
         [[layers]]\ntype = 'residual'\nactivation = 'relu'\n\
         [[layers.body]]\ntype = 'conv2d'\nin_channels = 4\nout_channels = 4\nkernel_size = 3\npadding = 1\n\
         [[layers.body]]\ntype = 'batch_norm2d'\nnum_features = 4\n\
         [[layers]]\ntype = 'residual'\nactivation = 'tanh'\n\
         [[layers.body]]\ntype = 'conv2d'\nin_channels = 4\nout_channels = 6\nkernel_size = 3\nstride = 2\npadding = 1\n\
         [[layers.shortcut]]\ntype = 'conv2d'\nin_channels = 4\nout_channels = 6\nkernel_size = 1\nstride = 2\n\
         [[layers.shortcut]]\ntype = 'batch_norm2d'\nnum_features = 6\n\
         [[layers]]\ntype = 'adaptive_avg_pool2d'\noutput_size = [2, 3]\n\
         [[layers]]\ntype = 'flatten'\n\
         [[layers]]\ntype = 'linear'\nin_features = 36\nout_features = 4",
        3,
    );
    let network = with_random_batch_norm(&network, 11);
    assert_native_matches_candle(&network, 5, 21, 0);
}

/// Windows wider than the map, where whole kernel columns read only padding (a "same" 5×5 max
/// pool on a 1×1 map, a strided 3×3 convolution on 1×1, large kernels on tiny maps).
#[test]
fn kernels_wider_than_the_map_match_candle() {
    let cases = [
        ("[2, 1, 1]", "type = 'max_pool2d'\nkernel_size = 5\nstride = 1\npadding = 2", 2),
        ("[1, 3, 1]", "type = 'max_pool2d'\nkernel_size = 3\npadding = 1", 1),
        ("[2, 1, 1]", "type = 'avg_pool2d'\nkernel_size = 5\nstride = 1\npadding = 2", 2),
        (
            "[2, 1, 1]",
            "type = 'conv2d'\nin_channels = 2\nout_channels = 3\nkernel_size = 3\nstride = 3\npadding = 1",
            3,
        ),
        (
            "[1, 1, 1]",
            "type = 'conv2d'\nin_channels = 1\nout_channels = 3\nkernel_size = 5\npadding = 2",
            3,
        ),
        (
            "[1, 2, 2]",
            "type = 'conv2d'\nin_channels = 1\nout_channels = 2\nkernel_size = 7\npadding = 3",
            8,
        ),
        (
            "[3, 1, 1]",
            "type = 'conv2d'\nin_channels = 3\nout_channels = 2\nkernel_size = 3\ndilation = 2\npadding = 2",
            2,
        ),
    ];
    for (seed, (input, layer, features)) in cases.into_iter().enumerate() {
        let text = format!(
            "architecture = 'sequential'\ninput_shape = {input}\nnum_classes = 2\n\
             [[layers]]\n{layer}\n\
             [[layers]]\ntype = 'flatten'\n\
             [[layers]]\ntype = 'linear'\nin_features = {features}\nout_features = 2"
        );
        let network = init(&text, seed as u64);
        assert_native_matches_candle(&network, 3, 40 + seed as u64, 0);
    }
}

#[test]
fn networks_the_native_path_does_not_cover_run_on_candle() {
    let gelu = init(
        "architecture = 'sequential'\ninput_shape = [4]\nnum_classes = 2\n\
         [[layers]]\ntype = 'linear'\nin_features = 4\nout_features = 3\n\
         [[layers]]\ntype = 'gelu'\n\
         [[layers]]\ntype = 'linear'\nin_features = 3\nout_features = 2",
        0,
    );
    assert!(!gelu.uses_native_kernels());
    let grouped = init(
        "architecture = 'sequential'\ninput_shape = [2, 4, 4]\nnum_classes = 16\n\
         [[layers]]\ntype = 'conv2d'\nin_channels = 2\nout_channels = 4\nkernel_size = 1\ngroups = 2\n\
         [[layers]]\ntype = 'flatten'\n\
         [[layers]]\ntype = 'linear'\nin_features = 64\nout_features = 16",
        0,
    );
    assert!(!grouped.uses_native_kernels());
    let f64_copy = init(
        "architecture = 'mlp'\ninput_shape = [3]\nnum_classes = 2\nhidden = [4]",
        0,
    )
    .to_dtype(DType::F64)
    .unwrap();
    assert!(!f64_copy.uses_native_kernels());
    // They still work: the same batch gives a gradient of the input's shape.
    let inputs = Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap();
    let labels = Tensor::new(&[0u32, 1], &Device::Cpu).unwrap();
    let result = gelu
        .loss_and_input_gradient(&inputs, &labels, Loss::CrossEntropy)
        .unwrap();
    assert_eq!(result.gradient.dims(), [2, 4]);
}

#[test]
fn bad_labels_are_the_same_clear_error_on_the_native_path() {
    let network = init(
        "architecture = 'mlp'\ninput_shape = [3]\nnum_classes = 2\nhidden = [4]",
        0,
    );
    assert!(network.uses_native_kernels());
    let inputs = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
    let out_of_range = Tensor::new(&[0u32, 2], &Device::Cpu).unwrap();
    let error = network
        .loss_and_input_gradient(&inputs, &out_of_range, Loss::CrossEntropy)
        .unwrap_err()
        .to_string();
    assert!(error.contains("label 2 of sample 1"), "{error}");
    let wrong_count = Tensor::new(&[0u32], &Device::Cpu).unwrap();
    let error = network
        .loss_and_input_gradient(&inputs, &wrong_count, Loss::CwMargin)
        .unwrap_err()
        .to_string();
    assert!(error.contains("expected [2]"), "{error}");
    let wrong_shape = Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap();
    assert!(network
        .loss_and_input_gradient(&wrong_shape, &wrong_count, Loss::CwMargin)
        .is_err());
}

/// One random convolution's TOML and its output size, or `None` if the window does not fit.
fn conv_layer(
    (channels, height, width): (usize, usize, usize),
    (out_channels, kh, kw, stride, padding, dilation): (usize, usize, usize, usize, usize, usize),
) -> Option<(String, (usize, usize, usize))> {
    let out = |size: usize, kernel: usize| {
        (size + 2 * padding)
            .checked_sub(dilation * (kernel - 1) + 1)
            .map(|room| room / stride + 1)
    };
    let (oh, ow) = (out(height, kh)?, out(width, kw)?);
    let toml = format!(
        "[[layers]]\ntype = 'conv2d'\nin_channels = {channels}\nout_channels = {out_channels}\n\
         kernel_size = [{kh}, {kw}]\nstride = {stride}\npadding = {padding}\ndilation = {dilation}\n"
    );
    Some((toml, (out_channels, oh, ow)))
}

/// One random pooling layer (0: none, 1: max, 2: average) and its output size.
fn pool_layer(
    (channels, height, width): (usize, usize, usize),
    (kind, kernel, stride, padding, dilation): (usize, usize, usize, usize, usize),
) -> Option<(String, (usize, usize, usize))> {
    let padding = padding.min(kernel / 2);
    let dilation = if kind == 1 { dilation } else { 1 };
    let out = |size: usize| {
        (size + 2 * padding)
            .checked_sub(dilation * (kernel - 1) + 1)
            .map(|room| room / stride + 1)
    };
    match kind {
        0 => Some((String::new(), (channels, height, width))),
        1 => Some((
            format!(
                "[[layers]]\ntype = 'max_pool2d'\nkernel_size = {kernel}\nstride = {stride}\n\
                 padding = {padding}\ndilation = {dilation}\n"
            ),
            (channels, out(height)?, out(width)?),
        )),
        _ => Some((
            format!(
                "[[layers]]\ntype = 'avg_pool2d'\nkernel_size = {kernel}\nstride = {stride}\n\
                 padding = {padding}\n"
            ),
            (channels, out(height)?, out(width)?),
        )),
    }
}

proptest! {
    // A fixed seed: the cases are random but the same on every run, so the test cannot flake
    // on a ReLU or max-pool tie that rounding happens to break differently.
    #![proptest_config(Config { cases: 40, rng_seed: RngSeed::Fixed(4), ..Config::default() })]

    #[test]
    fn random_layer_stacks_match_candle(
        input in (1usize..=3, 3usize..=11, 3usize..=11),
        first in (1usize..=5, 1usize..=3, 1usize..=3, 1usize..=2, 0usize..=2, 1usize..=2),
        batch_norm in any::<bool>(),
        activation in 0usize..4,
        pool in (0usize..3, 1usize..=3, 1usize..=2, 0usize..=1, 1usize..=2),
        second in (1usize..=4, 1usize..=3, 1usize..=3, 1usize..=2, 0usize..=1, 1usize..=2),
        classes in 2usize..=4,
        batch in 1usize..=5,
        seed in 0u64..1000,
    ) {
        let (channels, height, width) = input;
        let Some((conv1, after1)) = conv_layer(input, first) else { return Ok(()) };
        let Some((pool, after_pool)) = pool_layer(after1, pool) else { return Ok(()) };
        let Some((conv2, after2)) = conv_layer(after_pool, second) else { return Ok(()) };
        let mut layers = conv1;
        if batch_norm {
            layers += &format!("[[layers]]\ntype = 'batch_norm2d'\nnum_features = {}\n", after1.0);
        }
        layers += ["", "[[layers]]\ntype = 'relu'\n", "[[layers]]\ntype = 'tanh'\n",
                   "[[layers]]\ntype = 'sigmoid'\n"][activation];
        layers += &pool;
        layers += &conv2;
        let features = after2.0 * after2.1 * after2.2;
        let text = format!(
            "architecture = 'sequential'\ninput_shape = [{channels}, {height}, {width}]\n\
             num_classes = {classes}\n{layers}\
             [[layers]]\ntype = 'flatten'\n\
             [[layers]]\ntype = 'linear'\nin_features = {features}\nout_features = {classes}\n"
        );
        let mut network = init(&text, seed);
        if batch_norm {
            network = with_random_batch_norm(&network, seed + 3);
        }
        assert_native_matches_candle(&network, batch, seed + 5, 0);
    }
}

/// Exact zeros through a bias-free convolution put pre-activations exactly on the ReLU's kink:
/// both paths take PyTorch's convention there (no gradient), so an all-black image gives the
/// same (zero) input gradient on both.
#[test]
fn relu_at_exactly_zero_passes_no_gradient_on_either_path() {
    let network = init(
        "architecture = 'sequential'\ninput_shape = [1, 4, 4]\nnum_classes = 2\n\
         [[layers]]\ntype = 'conv2d'\nin_channels = 1\nout_channels = 2\nkernel_size = 3\n\
         padding = 1\nbias = false\n\
         [[layers]]\ntype = 'relu'\n\
         [[layers]]\ntype = 'flatten'\n\
         [[layers]]\ntype = 'linear'\nin_features = 32\nout_features = 2",
        5,
    );
    let reference = network.with_native_kernels(false);
    let black = Tensor::zeros((2, 1, 4, 4), DType::F32, &Device::Cpu).unwrap();
    let labels = Tensor::new(&[0u32, 1], &Device::Cpu).unwrap();
    for model in [&network, &reference] {
        let gradient = model
            .loss_and_input_gradient(&black, &labels, Loss::CrossEntropy)
            .unwrap()
            .gradient;
        assert!(to_vec(&gradient).iter().all(|g| *g == 0.0));
    }
}

#[test]
fn a_single_class_cw_margin_matches_candle() {
    let network = init(
        "architecture = 'mlp'\ninput_shape = [3]\nnum_classes = 1\nhidden = [4]",
        2,
    );
    assert_native_matches_candle_for(&network, 4, 9, &[Loss::CwMargin]);
}

/// The penultimate features (the final linear layer's input) agree between the two paths,
/// and the final linear layer applied to them by hand gives the logits.
#[test]
fn penultimate_features_match_candle_and_give_the_logits() {
    let cases = [
        ("architecture = 'small_cnn'\ninput_shape = [1, 28, 28]\nnum_classes = 10\nmean = [0.28]\nstd = [0.35]", 32 * 7 * 7),
        ("architecture = 'mlp'\ninput_shape = [7]\nnum_classes = 3\nhidden = [9, 5]", 5),
        ("architecture = 'resnet20'\ninput_shape = [3, 32, 32]\nnum_classes = 10\nmean = [0.49, 0.48, 0.44]\nstd = [0.25, 0.24, 0.26]", 64),
        ("architecture = 'linear'\ninput_shape = [1, 5, 6]\nnum_classes = 4\nmean = [0.4]\nstd = [0.3]", 30),
    ];
    for (seed, (text, width)) in cases.into_iter().enumerate() {
        let mut network = init(text, seed as u64);
        if text.contains("resnet20") {
            network = with_random_batch_norm(&network, 7);
        }
        let name = network.name().to_string();
        assert!(network.uses_native_kernels(), "{name}");
        let reference = network.with_native_kernels(false);
        let layers = network.capabilities().features;
        assert_eq!(
            layers,
            [FeatureLayer {
                name: FeatureName::Penultimate,
                shape: vec![width],
            }],
            "{name}"
        );
        // 19 images: not a multiple of the native path's image groups.
        let batch = 19;
        let mut shape = vec![batch];
        shape.extend_from_slice(network.input_shape());
        let inputs = random_inputs(&shape, 200 + seed as u64)
            .to_dtype(DType::F32)
            .unwrap();
        let native = network.features(&inputs, FeatureName::Penultimate).unwrap();
        let candle = reference
            .features(&inputs, FeatureName::Penultimate)
            .unwrap();
        assert_eq!(native.dims(), [batch, width], "{name}");
        assert_close(&format!("{name} penultimate features"), &native, &candle);
        // The last weight and bias in build order are the final linear layer's.
        let tensors = candle_core::safetensors::load_buffer(
            &network.to_safetensors_bytes().unwrap(),
            &Device::Cpu,
        )
        .unwrap();
        let names = network.tensor_names();
        let weight_name = names.iter().rev().find(|n| n.ends_with(".weight")).unwrap();
        let bias_name = weight_name.replace(".weight", ".bias");
        let weight = to_vec(&tensors[weight_name]);
        let bias = to_vec(&tensors[&bias_name]);
        let classes = network.num_classes();
        assert_eq!(weight.len(), classes * width, "{name}: {weight_name}");
        let logits = to_vec(&network.forward(&inputs).unwrap());
        for (label, features) in [("native", &native), ("candle", &candle)] {
            let features = to_vec(features);
            let by_hand: Vec<f64> = features
                .chunks(width)
                .flat_map(|f| {
                    weight
                        .chunks(width)
                        .zip(&bias)
                        .map(move |(row, b)| row.iter().zip(f).map(|(w, x)| w * x).sum::<f64>() + b)
                })
                .collect();
            let by_hand = Tensor::from_vec(by_hand, (batch, classes), &Device::Cpu).unwrap();
            let logits = Tensor::from_vec(logits.clone(), (batch, classes), &Device::Cpu).unwrap();
            assert_close(
                &format!("{name}: final linear of the {label} features"),
                &logits,
                &by_hand,
            );
        }
        // An empty batch has empty features.
        let mut empty = vec![0];
        empty.extend_from_slice(network.input_shape());
        let none = Tensor::zeros(empty, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(
            network
                .features(&none, FeatureName::Penultimate)
                .unwrap()
                .dims(),
            [0, width]
        );
    }
}

/// Penultimate features of a sequential network whose classifier is followed by other layers,
/// and of one without any linear layer (then there are none, and asking is a clear error).
#[test]
fn penultimate_features_of_sequential_networks() {
    let network = init(
        "architecture = 'sequential'\ninput_shape = [2, 5, 5]\nnum_classes = 3\n\
         [[layers]]\ntype = 'conv2d'\nin_channels = 2\nout_channels = 3\nkernel_size = 3\n\
         [[layers]]\ntype = 'batch_norm2d'\nnum_features = 3\n\
         [[layers]]\ntype = 'max_pool2d'\nkernel_size = 2\nstride = 1\n\
         [[layers]]\ntype = 'flatten'\n\
         [[layers]]\ntype = 'linear'\nin_features = 12\nout_features = 6\n\
         [[layers]]\ntype = 'relu'\n\
         [[layers]]\ntype = 'linear'\nin_features = 6\nout_features = 3\n\
         [[layers]]\ntype = 'tanh'\n",
        4,
    );
    let network = with_random_batch_norm(&network, 5);
    assert!(network.uses_native_kernels());
    let inputs = random_inputs(&[6, 2, 5, 5], 8)
        .to_dtype(DType::F32)
        .unwrap();
    let native = network.features(&inputs, FeatureName::Penultimate).unwrap();
    let candle = network
        .with_native_kernels(false)
        .features(&inputs, FeatureName::Penultimate)
        .unwrap();
    assert_eq!(native.dims(), [6, 6]);
    assert_close("penultimate features", &native, &candle);
    // After a ReLU: no negative feature.
    assert!(to_vec(&native).iter().all(|v| *v >= 0.0));

    let no_linear = init(
        "architecture = 'sequential'\ninput_shape = [2, 1, 1]\nnum_classes = 3\n\
         [[layers]]\ntype = 'conv2d'\nin_channels = 2\nout_channels = 3\nkernel_size = 1\n\
         [[layers]]\ntype = 'flatten'\n",
        4,
    );
    assert!(no_linear.capabilities().features.is_empty());
    let inputs = Tensor::zeros((2, 2, 1, 1), DType::F32, &Device::Cpu).unwrap();
    let error = no_linear
        .features(&inputs, FeatureName::Penultimate)
        .unwrap_err();
    assert!(
        matches!(&error, ModelError::NoSuchFeature { requested: FeatureName::Penultimate, available } if available.is_empty()),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "the model provides no feature layer `penultimate`; it provides: none"
    );
}

/// Features of inputs that carry an autograd graph come from candle's path, with the graph.
#[test]
fn penultimate_features_of_tracked_inputs_carry_the_graph() {
    let network = init(
        "architecture = 'mlp'\ninput_shape = [4]\nnum_classes = 2\nhidden = [3]",
        1,
    );
    let inputs = random_inputs(&[2, 4], 3).to_dtype(DType::F32).unwrap();
    let var = candle_core::Var::from_tensor(&inputs).unwrap();
    let features = network
        .features(var.as_tensor(), FeatureName::Penultimate)
        .unwrap();
    let gradients = features.sum_all().unwrap().backward().unwrap();
    assert!(gradients.get(var.as_tensor()).is_some());
    assert_close(
        "tracked features",
        &features.detach(),
        &network.features(&inputs, FeatureName::Penultimate).unwrap(),
    );
}
