//! The native CPU path against candle's ops and autograd (`with_native_kernels(false)`):
//! logits and input gradients within 1e-5 relative, on random layer stacks (odd sizes, stride 2,
//! padding, dilation, rectangular kernels, every pooling, batch norm, residual blocks) and on
//! every built-in architecture, for both losses. Finite differences check candle's path in
//! `gradients.rs`; together they pin the native path to the true gradient.
//!
//! The native path is CPU-only. Under `--features cuda` every comparison also runs as a `cuda`
//! test (`device_tests!`): the network's copy on the GPU must fall back to candle, saying the
//! device is why, and its logits, losses, gradients and features must agree with the native
//! CPU path to the same 1e-5 — a differential test of candle's CUDA kernels and our pooling
//! and loss ops on them. Which tests do what on CUDA is said at each.
//!
//! Seeds are fixed, and on ResNet-20 one sample in the batch may differ. The two paths round differently (the native path folds batch norm into the
//! convolution and sums in another order), so a pre-activation within rounding of a ReLU kink
//! or a near-tie in a max-pool window can fall on different sides in the two: a legitimate
//! difference of f32 arithmetic, not of the gradient formula, which a random seed would hit
//! now and then.

use candle_core::{DType, Device, Tensor};
use gauntlet_models::{
    device_tests, FeatureLayer, FeatureName, KernelPath, Loss, Model, ModelError, Network,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

use crate::gradients::with_random_batch_norm;
use crate::{init, init_on, on_device, random_inputs, random_labels, to_vec};

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

/// What a native CPU network is compared with on `device`: on the CPU, the same network with
/// the native kernels off (candle's CPU ops and autograd); on any other device, its copy
/// there, which must run on candle because of the device (the native path is CPU-only).
fn reference_on(network: &Network, device: &Device) -> Network {
    let reference = if device.is_cpu() {
        network.with_native_kernels(false)
    } else {
        let copy = on_device(network, device);
        assert_falls_back_because_of_the_device(&copy);
        copy
    };
    assert!(!reference.uses_native_kernels());
    reference
}

/// A network off the CPU runs on candle, and says the device is why.
fn assert_falls_back_because_of_the_device(network: &Network) {
    assert!(!network.device().is_cpu());
    assert!(!network.uses_native_kernels(), "{}", network.name());
    match network.kernel_path() {
        KernelPath::Candle { reason } => {
            assert!(reason.starts_with("device is "), "{reason}");
        }
        other => panic!("{}: kernel path {other} off the CPU", network.name()),
    }
}

/// Checks that `network` (on the CPU) runs natively and agrees with its candle twin on
/// `device` ([`reference_on`]) on a random batch: logits and losses everywhere, input
/// gradients on all samples but at most `kinks` (see the module docs: deep ReLU networks put
/// some pre-activation within rounding of zero in most large batches).
fn assert_native_matches_candle(
    device: &Device,
    network: &Network,
    batch: usize,
    seed: u64,
    kinks: usize,
) {
    assert_native_matches_candle_with(
        device,
        network,
        batch,
        seed,
        kinks,
        &[Loss::CrossEntropy, Loss::CwMargin],
    );
}

/// [`assert_native_matches_candle`] for some losses only and no kink allowance.
fn assert_native_matches_candle_for(
    device: &Device,
    network: &Network,
    batch: usize,
    seed: u64,
    losses: &[Loss],
) {
    assert_native_matches_candle_with(device, network, batch, seed, 0, losses);
}

fn assert_native_matches_candle_with(
    device: &Device,
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
    let reference = reference_on(network, device);
    let mut shape = vec![batch];
    shape.extend_from_slice(network.input_shape());
    let inputs = random_inputs(&shape, seed).to_dtype(DType::F32).unwrap();
    let labels = random_labels(batch, network.num_classes(), seed + 1);
    let (reference_inputs, reference_labels) = (
        inputs.to_device(device).unwrap(),
        labels.to_device(device).unwrap(),
    );
    assert_close(
        "logits",
        &network.forward(&inputs).unwrap(),
        &reference.forward(&reference_inputs).unwrap(),
    );
    for &loss in losses {
        let native = network
            .loss_and_input_gradient(&inputs, &labels, loss)
            .unwrap();
        let candle = reference
            .loss_and_input_gradient(&reference_inputs, &reference_labels, loss)
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

device_tests! {
    fn built_in_architectures_match_candle(device: &Device) {
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
            assert_native_matches_candle(device, &network, 37, 100 + seed as u64, kinks);
        }
    }

    fn residual_blocks_with_and_without_a_shortcut_match_candle(device: &Device) {
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
        assert_native_matches_candle(device, &network, 5, 21, 0);
    }

    /// Windows wider than the map, where whole kernel columns read only padding (a "same" 5×5
    /// max pool on a 1×1 map, a strided 3×3 convolution on 1×1, large kernels on tiny maps).
    fn kernels_wider_than_the_map_match_candle(device: &Device) {
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
            assert_native_matches_candle(device, &network, 3, 40 + seed as u64, 0);
        }
    }

    /// GELU, grouped convolutions and f64 run on candle on every device; on CUDA so does every
    /// network, with the device as the reason. They still work there.
    fn networks_the_native_path_does_not_cover_run_on_candle(device: &Device) {
        let gelu = init_on(
            "architecture = 'sequential'\ninput_shape = [4]\nnum_classes = 2\n\
             [[layers]]\ntype = 'linear'\nin_features = 4\nout_features = 3\n\
             [[layers]]\ntype = 'gelu'\n\
             [[layers]]\ntype = 'linear'\nin_features = 3\nout_features = 2",
            0,
            device,
        );
        assert!(!gelu.uses_native_kernels());
        let grouped = init_on(
            "architecture = 'sequential'\ninput_shape = [2, 4, 4]\nnum_classes = 16\n\
             [[layers]]\ntype = 'conv2d'\nin_channels = 2\nout_channels = 4\nkernel_size = 1\ngroups = 2\n\
             [[layers]]\ntype = 'flatten'\n\
             [[layers]]\ntype = 'linear'\nin_features = 64\nout_features = 16",
            0,
            device,
        );
        assert!(!grouped.uses_native_kernels());
        let mlp = init_on(
            "architecture = 'mlp'\ninput_shape = [3]\nnum_classes = 2\nhidden = [4]",
            0,
            device,
        );
        assert!(!mlp.to_dtype(DType::F64).unwrap().uses_native_kernels());
        if device.is_cpu() {
            assert!(mlp.uses_native_kernels());
        } else {
            assert_falls_back_because_of_the_device(&mlp);
        }
        // They still work: the same batch gives a gradient of the input's shape.
        let inputs = Tensor::zeros((2, 4), DType::F32, device).unwrap();
        let labels = Tensor::new(&[0u32, 1], device).unwrap();
        let result = gelu
            .loss_and_input_gradient(&inputs, &labels, Loss::CrossEntropy)
            .unwrap();
        assert_eq!(result.gradient.dims(), [2, 4]);
    }

    /// The native path's label errors are word for word candle's; on CUDA the network runs on
    /// candle, and the messages must be the same there.
    fn bad_labels_are_the_same_clear_error_on_the_native_path(device: &Device) {
        let network = init_on(
            "architecture = 'mlp'\ninput_shape = [3]\nnum_classes = 2\nhidden = [4]",
            0,
            device,
        );
        if device.is_cpu() {
            assert!(network.uses_native_kernels());
        } else {
            assert_falls_back_because_of_the_device(&network);
        }
        let inputs = Tensor::zeros((2, 3), DType::F32, device).unwrap();
        let out_of_range = Tensor::new(&[0u32, 2], device).unwrap();
        let error = network
            .loss_and_input_gradient(&inputs, &out_of_range, Loss::CrossEntropy)
            .unwrap_err()
            .to_string();
        assert!(error.contains("label 2 of sample 1"), "{error}");
        let wrong_count = Tensor::new(&[0u32], device).unwrap();
        let error = network
            .loss_and_input_gradient(&inputs, &wrong_count, Loss::CwMargin)
            .unwrap_err()
            .to_string();
        assert!(error.contains("expected [2]"), "{error}");
        let wrong_shape = Tensor::zeros((2, 4), DType::F32, device).unwrap();
        assert!(network
            .loss_and_input_gradient(&wrong_shape, &wrong_count, Loss::CwMargin)
            .is_err());
    }
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

/// One random stack (see [`random_layer_stacks_match_candle`]) against candle on `device`.
#[allow(clippy::too_many_arguments)]
fn random_layer_stack_matches_candle(
    device: &Device,
    input: (usize, usize, usize),
    first: (usize, usize, usize, usize, usize, usize),
    batch_norm: bool,
    activation: usize,
    pool: (usize, usize, usize, usize, usize),
    second: (usize, usize, usize, usize, usize, usize),
    classes: usize,
    batch: usize,
    seed: u64,
) {
    let (channels, height, width) = input;
    let Some((conv1, after1)) = conv_layer(input, first) else {
        return;
    };
    let Some((pool, after_pool)) = pool_layer(after1, pool) else {
        return;
    };
    let Some((conv2, after2)) = conv_layer(after_pool, second) else {
        return;
    };
    let mut layers = conv1;
    if batch_norm {
        layers += &format!(
            "[[layers]]\ntype = 'batch_norm2d'\nnum_features = {}\n",
            after1.0
        );
    }
    layers += [
        "",
        "[[layers]]\ntype = 'relu'\n",
        "[[layers]]\ntype = 'tanh'\n",
        "[[layers]]\ntype = 'sigmoid'\n",
    ][activation];
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
    assert_native_matches_candle(device, &network, batch, seed + 5, 0);
}

device_tests! {
    /// 40 random layer stacks (odd sizes, strides, padding, dilation, rectangular kernels,
    /// every pooling, batch norm, activations). A proptest runner with a fixed seed: the cases
    /// are random but the same on every run (and on every device), so the test cannot flake on
    /// a ReLU or max-pool tie that rounding happens to break differently.
    fn random_layer_stacks_match_candle(device: &Device) {
        let config = Config {
            cases: 40,
            rng_seed: RngSeed::Fixed(4),
            failure_persistence: None,
            ..Config::default()
        };
        let strategy = (
            (1usize..=3, 3usize..=11, 3usize..=11),
            (1usize..=5, 1usize..=3, 1usize..=3, 1usize..=2, 0usize..=2, 1usize..=2),
            any::<bool>(),
            0usize..4,
            (0usize..3, 1usize..=3, 1usize..=2, 0usize..=1, 1usize..=2),
            (1usize..=4, 1usize..=3, 1usize..=3, 1usize..=2, 0usize..=1, 1usize..=2),
            2usize..=4,
            1usize..=5,
            0u64..1000,
        );
        let outcome = TestRunner::new(config).run(
            &strategy,
            |(input, first, batch_norm, activation, pool, second, classes, batch, seed)| {
                random_layer_stack_matches_candle(
                    device, input, first, batch_norm, activation, pool, second, classes, batch,
                    seed,
                );
                Ok(())
            },
        );
        if let Err(error) = outcome {
            panic!("{error}");
        }
    }

    /// Exact zeros through a bias-free convolution put pre-activations exactly on the ReLU's
    /// kink: both paths take PyTorch's convention there (no gradient), so an all-black image
    /// gives the same (zero) input gradient on both — and on candle's CUDA kernels.
    fn relu_at_exactly_zero_passes_no_gradient_on_either_path(device: &Device) {
        let network = init(
            "architecture = 'sequential'\ninput_shape = [1, 4, 4]\nnum_classes = 2\n\
             [[layers]]\ntype = 'conv2d'\nin_channels = 1\nout_channels = 2\nkernel_size = 3\n\
             padding = 1\nbias = false\n\
             [[layers]]\ntype = 'relu'\n\
             [[layers]]\ntype = 'flatten'\n\
             [[layers]]\ntype = 'linear'\nin_features = 32\nout_features = 2",
            5,
        );
        assert!(network.uses_native_kernels());
        let reference = reference_on(&network, device);
        for model in [&network, &reference] {
            let black = Tensor::zeros((2, 1, 4, 4), DType::F32, model.device()).unwrap();
            let labels = Tensor::new(&[0u32, 1], model.device()).unwrap();
            let gradient = model
                .loss_and_input_gradient(&black, &labels, Loss::CrossEntropy)
                .unwrap()
                .gradient;
            assert!(to_vec(&gradient).iter().all(|g| *g == 0.0));
        }
    }

    fn a_single_class_cw_margin_matches_candle(device: &Device) {
        let network = init(
            "architecture = 'mlp'\ninput_shape = [3]\nnum_classes = 1\nhidden = [4]",
            2,
        );
        assert_native_matches_candle_for(device, &network, 4, 9, &[Loss::CwMargin]);
    }

    /// The penultimate features (the final linear layer's input) agree between the native path
    /// and candle on `device`, and the final linear layer applied to them by hand gives the
    /// logits.
    fn penultimate_features_match_candle_and_give_the_logits(device: &Device) {
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
            let reference = reference_on(&network, device);
            let layers = network.capabilities().features;
            assert_eq!(
                layers,
                [FeatureLayer {
                    name: FeatureName::Penultimate,
                    shape: vec![width],
                }],
                "{name}"
            );
            assert_eq!(reference.capabilities().features, layers, "{name}");
            // 19 images: not a multiple of the native path's image groups.
            let batch = 19;
            let mut shape = vec![batch];
            shape.extend_from_slice(network.input_shape());
            let inputs = random_inputs(&shape, 200 + seed as u64)
                .to_dtype(DType::F32)
                .unwrap();
            let native = network.features(&inputs, FeatureName::Penultimate).unwrap();
            let candle = reference
                .features(&inputs.to_device(device).unwrap(), FeatureName::Penultimate)
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
            // An empty batch has empty features, on either path.
            let mut empty = vec![0];
            empty.extend_from_slice(network.input_shape());
            for model in [&network, &reference] {
                let none = Tensor::zeros(empty.clone(), DType::F32, model.device()).unwrap();
                assert_eq!(
                    model
                        .features(&none, FeatureName::Penultimate)
                        .unwrap()
                        .dims(),
                    [0, width]
                );
            }
        }
    }

    /// Penultimate features of a sequential network whose classifier is followed by other
    /// layers, and of one without any linear layer (then there are none, and asking is a clear
    /// error, on every device).
    fn penultimate_features_of_sequential_networks(device: &Device) {
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
        let candle = reference_on(&network, device)
            .features(&inputs.to_device(device).unwrap(), FeatureName::Penultimate)
            .unwrap();
        assert_eq!(native.dims(), [6, 6]);
        assert_close("penultimate features", &native, &candle);
        // After a ReLU: no negative feature.
        assert!(to_vec(&native).iter().all(|v| *v >= 0.0));

        let no_linear = init_on(
            "architecture = 'sequential'\ninput_shape = [2, 1, 1]\nnum_classes = 3\n\
             [[layers]]\ntype = 'conv2d'\nin_channels = 2\nout_channels = 3\nkernel_size = 1\n\
             [[layers]]\ntype = 'flatten'\n",
            4,
            device,
        );
        assert!(no_linear.capabilities().features.is_empty());
        let inputs = Tensor::zeros((2, 2, 1, 1), DType::F32, device).unwrap();
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

    /// Features of inputs that carry an autograd graph come from candle's path, with the graph
    /// (on the CPU, where the network otherwise runs natively, and on CUDA).
    fn penultimate_features_of_tracked_inputs_carry_the_graph(device: &Device) {
        let network = init_on(
            "architecture = 'mlp'\ninput_shape = [4]\nnum_classes = 2\nhidden = [3]",
            1,
            device,
        );
        let inputs = random_inputs(&[2, 4], 3)
            .to_dtype(DType::F32)
            .unwrap()
            .to_device(device)
            .unwrap();
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
}
