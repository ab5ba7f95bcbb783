//! Spec parsing: strictness, validation messages, TOML round trip, built-in naming.

use candle_core::Device;
use gauntlet_models::{Architecture, Model, ModelError, ModelSpec, Network};

use crate::gradients::EVERY_LAYER;
use crate::spec;

fn parse_error(text: &str) -> String {
    match ModelSpec::from_toml_str(text) {
        Ok(spec) => panic!("expected an error, got {spec:?}"),
        Err(error) => {
            // Include the cause chain: syntax errors keep the toml message in their source.
            let mut message = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message.push_str(&format!(" | {cause}"));
                source = cause.source();
            }
            message
        }
    }
}

#[test]
fn unknown_layer_type_lists_the_valid_ones() {
    let message = parse_error(
        "architecture = 'sequential'\ninput_shape = [4]\nnum_classes = 2\n\
         [[layers]]\ntype = 'convolution'\n",
    );
    assert!(message.contains("convolution"), "{message}");
    for valid in ["conv2d", "linear", "max_pool2d", "batch_norm2d", "residual"] {
        assert!(message.contains(valid), "{valid} not listed: {message}");
    }
}

#[test]
fn unknown_keys_are_errors() {
    let top =
        parse_error("architecture = 'linear'\ninput_shape = [4]\nnum_classes = 2\nhiden = [3]\n");
    assert!(top.contains("hiden"), "{top}");
    let in_layer = parse_error(
        "architecture = 'sequential'\ninput_shape = [4]\nnum_classes = 2\n\
         [[layers]]\ntype = 'linear'\nin_features = 4\nout_features = 2\nbais = false\n",
    );
    assert!(in_layer.contains("bais"), "{in_layer}");
    let architecture = parse_error("architecture = 'vgg'\ninput_shape = [4]\nnum_classes = 2\n");
    assert!(architecture.contains("small_cnn"), "{architecture}");
}

#[test]
fn shapes_that_do_not_chain_are_named() {
    let message = parse_error(
        "architecture = 'sequential'\ninput_shape = [1, 8, 8]\nnum_classes = 2\n\
         [[layers]]\ntype = 'conv2d'\nin_channels = 1\nout_channels = 4\nkernel_size = 3\n\
         [[layers]]\ntype = 'flatten'\n\
         [[layers]]\ntype = 'linear'\nin_features = 256\nout_features = 2\n",
    );
    // 8×8 → 3×3 conv without padding → 4×6×6 = 144 features, not 256.
    assert!(message.contains("layer `2` (linear)"), "{message}");
    assert!(message.contains("[144]"), "{message}");
    let classes = parse_error(
        "architecture = 'sequential'\ninput_shape = [4]\nnum_classes = 3\n\
         [[layers]]\ntype = 'linear'\nin_features = 4\nout_features = 2\n",
    );
    assert!(classes.contains("num_classes = 3"), "{classes}");
}

#[test]
fn keys_of_other_architectures_and_bad_normalisation_are_rejected() {
    let hidden =
        parse_error("architecture = 'linear'\ninput_shape = [4]\nnum_classes = 2\nhidden = [3]\n");
    assert!(hidden.contains("`hidden` only applies"), "{hidden}");
    let no_hidden = parse_error("architecture = 'mlp'\ninput_shape = [4]\nnum_classes = 2\n");
    assert!(no_hidden.contains("needs `hidden`"), "{no_hidden}");
    let mean = parse_error(
        "architecture = 'linear'\ninput_shape = [3, 2, 2]\nnum_classes = 2\nmean = [0.5, 0.5]\nstd = [0.2, 0.2]\n",
    );
    assert!(mean.contains("one per channel (3)"), "{mean}");
    let std = parse_error(
        "architecture = 'linear'\ninput_shape = [1, 2, 2]\nnum_classes = 2\nmean = [0.5]\nstd = [0.0]\n",
    );
    assert!(std.contains("positive"), "{std}");
    let names = parse_error(
        "architecture = 'linear'\ninput_shape = [4]\nnum_classes = 2\nclass_names = ['a']\n",
    );
    assert!(names.contains("class_names has 1"), "{names}");
}

#[test]
fn pool_padding_larger_than_half_the_kernel_is_rejected() {
    let message = parse_error(
        "architecture = 'sequential'\ninput_shape = [1, 8, 8]\nnum_classes = 2\n\
         [[layers]]\ntype = 'max_pool2d'\nkernel_size = 2\npadding = 2\n",
    );
    assert!(message.contains("at most half"), "{message}");
}

#[test]
fn spec_round_trips_through_toml() {
    for text in [
        EVERY_LAYER,
        "architecture = 'mlp'\ninput_shape = [1, 28, 28]\nnum_classes = 10\nhidden = [256, 128]\n\
         class_names = ['0','1','2','3','4','5','6','7','8','9']\nmean = [0.1307]\nstd = [0.3081]\n",
    ] {
        let original = spec(text);
        let written = original.to_toml_string().unwrap();
        let reread = ModelSpec::from_toml_str(&written).unwrap();
        assert_eq!(reread, original, "round trip changed the spec:\n{written}");
    }
}

#[test]
fn spec_file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.toml");
    fs_err::write(&path, "architecture = 'linear'\n").unwrap();
    let error = ModelSpec::from_file(&path).unwrap_err();
    assert!(matches!(error, ModelError::SpecFile { .. }), "{error:?}");
    assert!(error.to_string().contains("model.toml"), "{error}");
    let missing = ModelSpec::from_file(&dir.path().join("absent.toml")).unwrap_err();
    assert!(matches!(missing, ModelError::Io { .. }), "{missing:?}");
}

#[test]
fn builtin_tensor_names_follow_pytorch() {
    let names = |text: &str| {
        Network::init(&spec(text), 0, &Device::Cpu)
            .unwrap()
            .tensor_names()
    };
    assert_eq!(
        names("architecture = 'linear'\ninput_shape = [4]\nnum_classes = 2"),
        vec!["1.weight", "1.bias"]
    );
    assert_eq!(
        names("architecture = 'mlp'\ninput_shape = [4]\nnum_classes = 2\nhidden = [3, 3]"),
        vec!["1.weight", "1.bias", "3.weight", "3.bias", "5.weight", "5.bias"]
    );
    assert_eq!(
        names("architecture = 'small_cnn'\ninput_shape = [1, 28, 28]\nnum_classes = 10"),
        vec!["0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias"]
    );
    let resnet = names("architecture = 'resnet20'\ninput_shape = [3, 32, 32]\nnum_classes = 10");
    for expected in [
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.conv1.weight",
        "layer1.0.bn1.bias",
        "layer1.2.bn2.running_mean",
        "layer2.0.conv2.weight",
        "layer2.0.shortcut.0.weight",
        "layer2.0.shortcut.1.running_var",
        "layer3.0.shortcut.1.weight",
        "layer3.2.bn2.weight",
        "linear.weight",
        "linear.bias",
    ] {
        assert!(
            resnet.contains(&expected.to_string()),
            "{expected} missing: {resnet:?}"
        );
    }
    assert!(!resnet.iter().any(|n| n.starts_with("layer1.0.shortcut")));
    assert!(!resnet.iter().any(|n| n.starts_with("layer2.1.shortcut")));
}

#[test]
fn parameter_counts_match_the_architectures() {
    let count = |text: &str| {
        Network::init(&spec(text), 0, &Device::Cpu)
            .unwrap()
            .parameter_count()
    };
    // small_cnn at 28×28: conv 1·16·9+16 = 160, conv 16·32·9+32 = 4640, linear 32·7·7·10+10 = 15690.
    assert_eq!(
        count("architecture = 'small_cnn'\ninput_shape = [1, 28, 28]\nnum_classes = 10"),
        160 + 4640 + 15690
    );
    // ResNet-20 with option-A (parameter-free) shortcuts has 269,722 parameters (He et al.
    // report 0.27M); option B adds 1×1 convs 16→32 (512) and 32→64 (2048) with their batch
    // norms (64 + 128).
    assert_eq!(
        count("architecture = 'resnet20'\ninput_shape = [3, 32, 32]\nnum_classes = 10"),
        269_722 + 512 + 64 + 2048 + 128
    );
}

#[test]
fn explicit_names_inside_blocks_are_relative_to_the_block() {
    let network = Network::init(
        &spec(
            "architecture = 'sequential'\ninput_shape = [2]\nnum_classes = 2\n\
             [[layers]]\ntype = 'residual'\nname = 'block'\n\
             [[layers.body]]\ntype = 'linear'\nin_features = 2\nout_features = 2\nname = 'fc'\n\
             [[layers.body]]\ntype = 'relu'\n\
             [[layers.body]]\ntype = 'linear'\nin_features = 2\nout_features = 2\n\
             [[layers.shortcut]]\ntype = 'linear'\nin_features = 2\nout_features = 2\nbias = false\n",
        ),
        0,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(
        network.tensor_names(),
        vec![
            "block.fc.weight",
            "block.fc.bias",
            "block.body.2.weight",
            "block.body.2.bias",
            "block.shortcut.0.weight"
        ]
    );
    assert_eq!(network.name(), Architecture::Sequential.name());
}

#[test]
fn duplicate_tensor_names_are_rejected() {
    let error = Network::init(
        &spec(
            "architecture = 'sequential'\ninput_shape = [2]\nnum_classes = 2\n\
             [[layers]]\ntype = 'linear'\nin_features = 2\nout_features = 2\nname = 'fc'\n\
             [[layers]]\ntype = 'linear'\nin_features = 2\nout_features = 2\nname = 'fc'\n",
        ),
        0,
        &Device::Cpu,
    )
    .unwrap_err();
    assert!(error.to_string().contains("fc.weight"), "{error}");
}
