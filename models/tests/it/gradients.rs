//! Input gradients of every built-in architecture and of every layer type against central
//! finite differences, for both losses: on the CPU, and on CUDA too under `--features cuda`
//! (`device_tests!`), where the f32 network runs on candle's CUDA kernels instead of the
//! native CPU path.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use gauntlet_models::testing::assert_gradient_matches_finite_differences;
use gauntlet_models::{device_tests, Loss, Model, Network};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{init_on, random_inputs, random_labels, to_vec};

/// Replaces every batch norm's weight, bias and running statistics with seeded random values
/// (running variance in [0.5, 2]), so eval-mode batch norm is far from the identity. The copy
/// is on the network's device.
pub fn with_random_batch_norm(network: &Network, seed: u64) -> Network {
    let bytes = network.to_safetensors_bytes().unwrap();
    let mut tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    // Sorted: the map's iteration order changes from run to run, the network must not.
    let mut prefixes: Vec<String> = tensors
        .keys()
        .filter_map(|name| name.strip_suffix(".running_mean").map(str::to_string))
        .collect();
    prefixes.sort();
    assert!(!prefixes.is_empty(), "no batch norm in this network");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for prefix in prefixes {
        for (suffix, low, high) in [
            ("weight", 0.5, 1.5),
            ("bias", -0.5, 0.5),
            ("running_mean", -0.5, 0.5),
            ("running_var", 0.5, 2.0),
        ] {
            let name = format!("{prefix}.{suffix}");
            let count = tensors[&name].elem_count();
            let values: Vec<f32> = (0..count).map(|_| rng.random_range(low..high)).collect();
            tensors.insert(name, Tensor::from_vec(values, count, &Device::Cpu).unwrap());
        }
    }
    let bytes =
        safetensors::serialize(tensors.into_iter().collect::<HashMap<_, _>>(), None).unwrap();
    Network::from_spec_and_safetensors(network.spec(), &bytes, network.device()).unwrap()
}

/// Checks the f64 copy of `network` against finite differences, and that the f32 network
/// (what attacks run) gives the same gradient up to f32 round-off, on the network's device.
fn check_gradients(network: &Network, batch: usize, seed: u64) {
    let device = network.device();
    let network64 = network.to_dtype(DType::F64).unwrap();
    let mut shape = vec![batch];
    shape.extend_from_slice(network.input_shape());
    let inputs = random_inputs(&shape, seed).to_device(device).unwrap();
    let labels = random_labels(batch, network.num_classes(), seed + 1)
        .to_device(device)
        .unwrap();
    for loss in [
        Loss::CrossEntropy,
        Loss::CwMargin,
        Loss::Dlr,
        Loss::DlrTargeted,
    ] {
        assert_gradient_matches_finite_differences(&network64, &inputs, &labels, loss, 1e-5);
        let exact = network64
            .loss_and_input_gradient(&inputs, &labels, loss)
            .unwrap();
        let single = network
            .loss_and_input_gradient(&inputs.to_dtype(DType::F32).unwrap(), &labels, loss)
            .unwrap();
        assert_eq!(single.gradient.dtype(), DType::F32);
        let exact = to_vec(&exact.gradient);
        let single = to_vec(&single.gradient);
        let scale = exact.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        let worst = exact
            .iter()
            .zip(&single)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            worst <= 1e-3 * scale,
            "{} {loss:?}: f32 gradient differs from f64 by {worst:e} (scale {scale:e})",
            network.name()
        );
    }
}

device_tests! {
    fn linear_gradient_matches_finite_differences(device: &Device) {
        let network = init_on(
            "architecture = 'linear'\ninput_shape = [1, 5, 6]\nnum_classes = 4\nmean = [0.4]\nstd = [0.3]",
            1,
            device,
        );
        check_gradients(&network, 3, 10);
    }

    fn mlp_gradient_matches_finite_differences(device: &Device) {
        let network = init_on(
            "architecture = 'mlp'\ninput_shape = [2, 3, 3]\nnum_classes = 5\nhidden = [7, 6]\nmean = [0.5, 0.4]\nstd = [0.2, 0.3]",
            2,
            device,
        );
        check_gradients(&network, 3, 20);
    }

    fn small_cnn_gradient_matches_finite_differences(device: &Device) {
        // Odd, non-square input: 9×10 → pool → 4×5 → pool → 2×2.
        let network = init_on(
            "architecture = 'small_cnn'\ninput_shape = [1, 9, 10]\nnum_classes = 3",
            3,
            device,
        );
        check_gradients(&network, 2, 30);
    }

    fn resnet20_gradient_matches_finite_differences_with_eval_batch_norm(device: &Device) {
        let network = init_on(
            "architecture = 'resnet20'\ninput_shape = [3, 8, 8]\nnum_classes = 5\nmean = [0.49, 0.48, 0.45]\nstd = [0.25, 0.24, 0.26]",
            4,
            device,
        );
        let network = with_random_batch_norm(&network, 40);
        check_gradients(&network, 2, 41);
    }
}

/// Every layer type once: strided/padded/dilated/grouped convs, max and average pooling with
/// odd sizes and kernel ≠ stride, adaptive pooling with uneven windows, every activation,
/// both batch norms, dropout and both kinds of residual block.
pub const EVERY_LAYER: &str = r#"
architecture = "sequential"
input_shape = [2, 9, 9]
num_classes = 3
mean = [0.5, 0.45]
std = [0.25, 0.2]

[[layers]]
type = "conv2d"
in_channels = 2
out_channels = 4
kernel_size = 3
stride = 2
padding = 1

[[layers]]
type = "batch_norm2d"
num_features = 4

[[layers]]
type = "gelu"

[[layers]]
type = "conv2d"
in_channels = 4
out_channels = 4
kernel_size = [3, 2]
padding = 2
dilation = 2
groups = 2

[[layers]]
type = "tanh"

[[layers]]
type = "max_pool2d"
kernel_size = 3
stride = 2
padding = 1

[[layers]]
type = "residual"
activation = "relu"
[[layers.body]]
type = "conv2d"
in_channels = 4
out_channels = 4
kernel_size = 3
padding = 1
[[layers.body]]
type = "sigmoid"

[[layers]]
type = "residual"
[[layers.body]]
type = "conv2d"
in_channels = 4
out_channels = 6
kernel_size = 1
[[layers.body]]
type = "tanh"
[[layers.shortcut]]
type = "conv2d"
in_channels = 4
out_channels = 6
kernel_size = 1
bias = false
[[layers.shortcut]]
type = "batch_norm2d"
num_features = 6

[[layers]]
type = "avg_pool2d"
kernel_size = 2
stride = 1
padding = 1

[[layers]]
type = "max_pool2d"
kernel_size = 2
stride = 1
dilation = 2

[[layers]]
type = "adaptive_avg_pool2d"
output_size = [2, 2]

[[layers]]
type = "dropout"
p = 0.3

[[layers]]
type = "flatten"

[[layers]]
type = "linear"
in_features = 24
out_features = 8

[[layers]]
type = "batch_norm1d"
num_features = 8

[[layers]]
type = "relu"

[[layers]]
type = "linear"
in_features = 8
out_features = 3
"#;

device_tests! {
    fn every_layer_type_gradient_matches_finite_differences(device: &Device) {
        // Shapes: 2×9×9 → conv s2 → 4×5×5 → conv (dilated, pad 2, 3×2 kernel) → 4×5×7
        // → maxpool k3 s2 p1 → 4×3×4 → residuals → 6×3×4 → avgpool k2 s1 p1 → 6×4×5
        // → maxpool k2 s1 d2 → 6×2×3 → adaptive (columns 3 → 2 overlap) → 6×2×2 → 24.
        let network = with_random_batch_norm(&init_on(EVERY_LAYER, 5, device), 50);
        check_gradients(&network, 3, 51);
    }

    fn max_pool_gradient_known_answer_through_a_network(device: &Device) {
        // sum(maxpool2×2([[1,2],[3,4]])) = 4 and its gradient is [0, 0, 0, 1]; candle's own
        // max_pool2d backward gives [0, 0, 0, 0.25].
        let network = init_on(
            "architecture = 'sequential'\ninput_shape = [1, 2, 2]\nnum_classes = 1\n\
             [[layers]]\ntype = 'max_pool2d'\nkernel_size = 2\n[[layers]]\ntype = 'flatten'",
            0,
            device,
        );
        let x = Var::new(&[[[[1.0f32, 2.0], [3.0, 4.0]]]], device).unwrap();
        let logits = network.forward(x.as_tensor()).unwrap();
        assert_eq!(to_vec(&logits), vec![4.0]);
        let grads = logits.sum_all().unwrap().backward().unwrap();
        assert_eq!(
            to_vec(grads.get(x.as_tensor()).unwrap()),
            vec![0.0, 0.0, 0.0, 1.0]
        );
    }

    fn eval_batch_norm_is_the_closed_form(device: &Device) {
        // y = (x − mean)/√(var + eps)·w + b with mean 1, var 3, eps 1 → (x − 1)/2·w + b.
        let network = init_on(
            "architecture = 'sequential'\ninput_shape = [2]\nnum_classes = 2\n\
             [[layers]]\ntype = 'batch_norm1d'\nnum_features = 2\neps = 1.0",
            0,
            device,
        );
        let bytes = safetensors::serialize(
            [
                ("0.weight", Tensor::new(&[2.0f32, -1.0], &Device::Cpu).unwrap()),
                ("0.bias", Tensor::new(&[0.5f32, 0.0], &Device::Cpu).unwrap()),
                ("0.running_mean", Tensor::new(&[1.0f32, 1.0], &Device::Cpu).unwrap()),
                ("0.running_var", Tensor::new(&[3.0f32, 3.0], &Device::Cpu).unwrap()),
            ],
            None,
        )
        .unwrap();
        let network = Network::from_spec_and_safetensors(network.spec(), &bytes, device).unwrap();
        let x = Tensor::new(&[[5.0f32, 3.0]], device).unwrap();
        // [(5−1)/2·2 + 0.5, (3−1)/2·(−1) + 0] = [4.5, −1].
        assert_eq!(to_vec(&network.forward(&x).unwrap()), vec![4.5, -1.0]);
    }
}
