//! Sizes from a hostile or mistyped spec: every one is checked arithmetic in `ModelSpec::cost`
//! (an error naming the layer, never a panic or a wrapped size), the cost agrees with the
//! network actually built, and the memory estimate follows its formula (docs/limits.md).

use candle_core::Device;
use gauntlet_models::spec::{cost, Usage};
use gauntlet_models::{Model, ModelError, ModelSpec, Network};
use proptest::prelude::*;

use crate::gradients::EVERY_LAYER;

fn refusal(text: &str) -> String {
    match ModelSpec::from_toml_str(text) {
        Ok(spec) => panic!("expected the spec to be refused, got {spec:?}"),
        Err(error) => error.to_string(),
    }
}

fn sequential(input_shape: &str, classes: u64, layers: &str) -> String {
    format!(
        "architecture = 'sequential'\ninput_shape = {input_shape}\nnum_classes = {classes}\n{layers}"
    )
}

#[test]
fn an_mlp_hidden_width_of_2_to_the_62_is_refused_naming_the_layer() {
    let message = refusal(
        "architecture = 'mlp'\ninput_shape = [1, 28, 28]\nnum_classes = 10\nhidden = [4611686018427387904]\n",
    );
    assert!(
        message.contains("layer `1` (linear)") && message.contains("beyond"),
        "{message}"
    );
    // Wider still, the weight's size overflows 64 bits.
    let message = refusal(
        "architecture = 'mlp'\ninput_shape = [1, 28, 28]\nnum_classes = 10\nhidden = [1024, 18446744073709551615]\n",
    );
    assert!(message.contains("layer `3` (linear)"), "{message}");
}

#[test]
fn a_conv2d_with_2_to_the_62_channels_is_refused() {
    // As output channels of the layer: its weight.
    let message = refusal(&sequential(
        "[1, 8, 8]",
        2,
        "[[layers]]\ntype = 'conv2d'\nin_channels = 1\nout_channels = 4611686018427387904\nkernel_size = 1\n",
    ));
    assert!(message.contains("layer `0` (conv2d)"), "{message}");
    // As input channels: the input itself is already beyond what a model may take.
    let message = refusal(&sequential(
        "[4611686018427387904, 1, 1]",
        2,
        "[[layers]]\ntype = 'conv2d'\nin_channels = 4611686018427387904\nout_channels = 2\nkernel_size = 1\n\
         [[layers]]\ntype = 'flatten'\n",
    ));
    assert!(message.contains("`input_shape`"), "{message}");
}

#[test]
fn an_adaptive_pool_output_of_2_to_the_32_does_not_wrap_to_zero() {
    // 2^32 × 2^32 = 2^64 wraps to 0 in unchecked usize arithmetic.
    let message = refusal(&sequential(
        "[1, 4, 4]",
        2,
        "[[layers]]\ntype = 'adaptive_avg_pool2d'\noutput_size = 4294967296\n\
         [[layers]]\ntype = 'flatten'\n[[layers]]\ntype = 'linear'\nin_features = 1\nout_features = 2\n",
    ));
    assert!(
        message.contains("layer `0` (adaptive_avg_pool2d)") && message.contains("overflows"),
        "{message}"
    );
}

#[test]
fn a_small_cnn_on_2_to_the_31_square_images_is_refused() {
    let message = refusal(
        "architecture = 'small_cnn'\ninput_shape = [1, 2147483648, 2147483648]\nnum_classes = 10\n",
    );
    assert!(message.contains("input_shape"), "{message}");
    // Just inside the per-layer bound, the first convolution's patches are not.
    let message = refusal(
        "architecture = 'small_cnn'\ninput_shape = [1, 1048576, 1048576]\nnum_classes = 10\n",
    );
    assert!(message.contains("layer `0` (conv2d)"), "{message}");
}

#[test]
fn ten_to_the_12_classes_are_refused() {
    let message =
        refusal("architecture = 'linear'\ninput_shape = [784]\nnum_classes = 1000000000000\n");
    assert!(message.contains("layer `1` (linear)"), "{message}");
}

#[test]
fn pooling_kernels_near_the_top_of_usize_are_refused() {
    let max_pool = |extra: &str| {
        refusal(&sequential(
            "[1, 8, 8]",
            1,
            &format!(
                "[[layers]]\ntype = 'max_pool2d'\nkernel_size = 9223372036854775807\n{extra}\
                 [[layers]]\ntype = 'flatten'\n"
            ),
        ))
    };
    assert!(max_pool("").contains("does not fit"), "{}", max_pool(""));
    let message = max_pool("dilation = 4\n");
    assert!(
        message.contains("layer `0` (max_pool2d)") && message.contains("overflows"),
        "{message}"
    );
    // A padding as large as half the kernel makes the window fit; its table overflows.
    let message = refusal(&sequential(
        "[1, 8, 8]",
        1,
        "[[layers]]\ntype = 'avg_pool2d'\nkernel_size = 9223372036854775807\nstride = 1\n\
         padding = 4611686018427387903\n[[layers]]\ntype = 'flatten'\n",
    ));
    assert!(
        message.contains("layer `0` (avg_pool2d)") && message.contains("overflows"),
        "{message}"
    );
}

#[test]
fn a_linear_layer_on_ten_billion_inputs_is_representable_but_beyond_the_default_cap() {
    let spec = ModelSpec::from_toml_str(
        "architecture = 'linear'\ninput_shape = [1, 100000, 100000]\nnum_classes = 10\n",
    )
    .unwrap();
    let cost = spec.cost().unwrap();
    assert_eq!(cost.parameters(), 10 * 10_000_000_000 + 10);
    let estimate = cost.memory(Usage::Evaluate, 1, 0);
    assert!(
        estimate.total() > u128::from(cost::DEFAULT_MAX_MEMORY_MIB) << 20,
        "{estimate}"
    );
    let (layer, kind, _) = estimate.largest_layer.clone().unwrap();
    assert_eq!((layer.as_str(), kind), ("1", "linear"));
}

#[test]
fn the_memory_estimate_follows_its_formula() {
    // input [4], linear 4 → 3: P = 15 parameters, A = 3 values kept per sample, S = 4.
    let spec =
        ModelSpec::from_toml_str("architecture = 'linear'\ninput_shape = [4]\nnum_classes = 3\n")
            .unwrap();
    let cost = spec.cost().unwrap();
    assert_eq!(
        (
            cost.parameters(),
            cost.values_per_sample(),
            cost.input_values
        ),
        (15, 3, 4)
    );
    let evaluate = cost.memory(Usage::Evaluate, 2, 10);
    // 16·P, B·8·A, B·8 copies·4·S, 4·N·S.
    assert_eq!(
        (
            evaluate.weights,
            evaluate.activations,
            evaluate.inputs,
            evaluate.dataset
        ),
        (16 * 15, 2 * 8 * 3, 2 * 8 * 4 * 4, 10 * 4 * 4)
    );
    assert_eq!(evaluate.total(), 240 + 48 + 256 + 160);
    let train = cost.memory(Usage::Train, 2, 10);
    // 20·P: values, gradients, two moments, the bytes written; 2 input copies.
    assert_eq!((train.weights, train.inputs), (20 * 15, 2 * 2 * 4 * 4));
    // Doubling the batch doubles exactly the per-batch terms.
    let doubled = cost.memory(Usage::Evaluate, 4, 10);
    assert_eq!(doubled.total() - evaluate.total(), 48 + 256);
}

/// The cost walk and the builder name the same tensors, and count the same parameters, for
/// every built-in architecture and the spec that uses every layer type.
#[test]
fn the_cost_lists_exactly_the_tensors_the_network_is_built_with() {
    let specs = [
        "architecture = 'linear'\ninput_shape = [1, 8, 8]\nnum_classes = 10\n",
        "architecture = 'mlp'\ninput_shape = [1, 8, 8]\nnum_classes = 10\nhidden = [32, 16]\n",
        "architecture = 'small_cnn'\ninput_shape = [1, 28, 28]\nnum_classes = 10\n",
        "architecture = 'resnet20'\ninput_shape = [3, 32, 32]\nnum_classes = 10\n",
        EVERY_LAYER,
    ];
    for text in specs {
        let spec = ModelSpec::from_toml_str(text).unwrap();
        let cost = spec.cost().unwrap();
        let network = Network::init(&spec, 0, &Device::Cpu).unwrap();
        let names: Vec<String> = cost.tensors.iter().map(|t| t.name.clone()).collect();
        assert_eq!(names, network.tensor_names(), "{text}");
        assert_eq!(cost.parameters(), network.parameter_count(), "{text}");
        assert_eq!(
            cost.layers.last().unwrap().output_shape,
            vec![spec.num_classes],
            "{text}"
        );
    }
}

/// A missing tensor is an error naming it, found from the header before any data is read.
#[test]
fn a_missing_tensor_has_no_stand_in() {
    let spec =
        ModelSpec::from_toml_str("architecture = 'linear'\ninput_shape = [4]\nnum_classes = 3\n")
            .unwrap();
    let full = Network::init(&spec, 0, &Device::Cpu).unwrap();
    let mlp = ModelSpec::from_toml_str(
        "architecture = 'mlp'\ninput_shape = [4]\nnum_classes = 3\nhidden = [5]\n",
    )
    .unwrap();
    // The linear model's file lacks the MLP's `3.*` tensors and its `1.*` have other shapes.
    let bytes = full.to_safetensors_bytes().unwrap();
    let error = Network::from_spec_and_safetensors(&mlp, &bytes, &Device::Cpu).unwrap_err();
    let ModelError::Weights {
        missing,
        mismatched,
        ..
    } = &error
    else {
        panic!("expected a weights error, got {error:?}");
    };
    assert_eq!(missing, &vec!["3.weight".to_string(), "3.bias".to_string()]);
    assert_eq!(mismatched.len(), 2, "{error}");
}

/// Layer lists drawn with small and absurd sizes: whatever `cost` accepts within a small
/// memory cap builds and runs a forward pass on a tiny batch, or returns an error; nothing
/// panics, wraps or aborts.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        20 => 1usize..6,
        1 => Just(1usize << 20),
        1 => Just(1usize << 32),
        1 => Just(1usize << 62),
        1 => Just(usize::MAX),
    ]
}

/// One drawn layer: its type, two sizes, two small numbers, and whether to ignore the shape
/// it receives (`in_channels`, `in_features`, `num_features` drawn instead of chained).
type Draw = (u8, usize, usize, usize, usize, bool);

fn draw() -> impl Strategy<Value = Draw> {
    (
        0u8..8,
        size(),
        size(),
        0usize..3,
        1usize..3,
        prop::bool::weighted(0.1),
    )
}

/// The TOML of `draw` taking per-sample `shape`.
fn layer_text(draw: Draw, shape: &[usize]) -> String {
    let (kind, a, b, small, stride, unchained) = draw;
    let channels = if unchained || shape.is_empty() {
        a
    } else {
        shape[0]
    };
    let features = if unchained {
        a
    } else {
        shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .unwrap_or(a)
    };
    match kind {
        0 => format!(
            "type = 'conv2d'\nin_channels = {channels}\nout_channels = {b}\nkernel_size = {}\npadding = {small}\nstride = {stride}\n",
            if a > 6 { a } else { small + 1 }
        ),
        1 => format!("type = 'linear'\nin_features = {features}\nout_features = {b}\n"),
        2 => format!("type = 'max_pool2d'\nkernel_size = {}\ndilation = {stride}\n", a.max(1)),
        3 => format!(
            "type = 'avg_pool2d'\nkernel_size = {}\npadding = {}\nstride = {stride}\n",
            a.max(1),
            small.min(a / 2)
        ),
        4 => format!("type = 'adaptive_avg_pool2d'\noutput_size = [{a}, {b}]\n"),
        5 => format!("type = 'batch_norm2d'\nnum_features = {channels}\n"),
        6 => "type = 'relu'\n".to_string(),
        _ => "type = 'flatten'\n".to_string(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn specs_within_the_cap_build_and_run_or_refuse(
        channels in prop_oneof![10 => 1usize..4, 1 => Just(1usize << 40), 1 => Just(usize::MAX)],
        side in prop_oneof![10 => 4usize..12, 1 => Just(1usize << 31), 1 => Just(usize::MAX)],
        draws in prop::collection::vec(draw(), 1..6),
    ) {
        // Layers are chained to the shape they receive (mostly), and the spec ends with a
        // flatten whose size becomes `num_classes`: what is refused is refused for its sizes.
        let header = format!(
            "architecture = 'sequential'\ninput_shape = [{channels}, {side}, {side}]\nnum_classes = 1\n"
        );
        let mut layers = String::new();
        let mut shape = vec![channels, side, side];
        for draw in draws {
            let candidate = format!("{layers}[[layers]]\n{}", layer_text(draw, &shape));
            let Ok(spec) = toml::from_str::<ModelSpec>(&format!("{header}{candidate}")) else {
                break;
            };
            match spec.output_shape() {
                Ok(output) => {
                    layers = candidate;
                    shape = output;
                }
                // A refusal is fine; the spec with this layer goes on to be refused below.
                Err(_) => {
                    layers = candidate;
                    break;
                }
            }
        }
        layers.push_str("[[layers]]\ntype = 'flatten'\n");
        let Ok(mut spec) = toml::from_str::<ModelSpec>(&format!("{header}{layers}")) else {
            return Ok(());
        };
        match spec.output_shape() {
            Ok(shape) => spec.num_classes = shape[0],
            Err(_) => return Ok(()),
        }
        let cost = spec.cost().unwrap();
        // A cap small enough for a test machine, as `max_memory_mib` would apply it.
        if cost.memory(Usage::Evaluate, 2, 2).total() > 64 << 20 {
            return Ok(());
        }
        let network = match Network::init(&spec, 0, &Device::Cpu) {
            Ok(network) => network,
            Err(_) => return Ok(()),
        };
        let inputs = crate::random_inputs(&[2, channels, side, side], 1)
            .to_dtype(candle_core::DType::F32)
            .unwrap();
        if let Ok(logits) = network.forward(&inputs) {
            prop_assert_eq!(logits.dims(), &[2, spec.num_classes]);
        }
        // The round trip through safetensors loads what init built.
        let bytes = network.to_safetensors_bytes().unwrap();
        prop_assert!(Network::from_spec_and_safetensors(&spec, &bytes, &Device::Cpu).is_ok());
    }
}
