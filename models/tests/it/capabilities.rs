//! What models declare about themselves: capabilities, info and the kernel path, for
//! `Network` and for the trait's defaults.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use gauntlet_models::testing::LinearModel;
use gauntlet_models::{
    FeatureName, KernelPath, Model, ModelCapabilities, ModelError, ModelFormat, Network,
};

use crate::init;

const GELU: &str = "architecture = 'sequential'\ninput_shape = [4]\nnum_classes = 2\n\
     [[layers]]\ntype = 'linear'\nin_features = 4\nout_features = 3\n\
     [[layers]]\ntype = 'gelu'\n\
     [[layers]]\ntype = 'linear'\nin_features = 3\nout_features = 2";

const GROUPED: &str = "architecture = 'sequential'\ninput_shape = [2, 4, 4]\nnum_classes = 16\n\
     [[layers]]\ntype = 'conv2d'\nin_channels = 2\nout_channels = 4\nkernel_size = 1\ngroups = 2\n\
     [[layers]]\ntype = 'flatten'\n\
     [[layers]]\ntype = 'linear'\nin_features = 64\nout_features = 16";

const MLP: &str = "architecture = 'mlp'\ninput_shape = [3]\nnum_classes = 2\nhidden = [4]";

fn candle_reason(model: &dyn Model) -> String {
    match model.kernel_path() {
        KernelPath::Candle { reason } => reason,
        other => panic!("{} runs on {other}", model.name()),
    }
}

#[test]
fn the_kernel_path_says_why_a_network_runs_on_candle() {
    let mlp = init(MLP, 0);
    assert_eq!(mlp.kernel_path(), KernelPath::Native);
    assert_eq!(
        candle_reason(&mlp.with_native_kernels(false)),
        "native kernels turned off (--candle-kernels)"
    );
    assert_eq!(
        candle_reason(&mlp.to_dtype(DType::F64).unwrap()),
        "dtype is f64"
    );
    assert_eq!(candle_reason(&init(GELU, 0)), "GELU activation");
    assert_eq!(candle_reason(&init(GROUPED, 0)), "grouped convolution");
    // The reason and `uses_native_kernels` agree.
    for network in [mlp.with_native_kernels(false), init(GELU, 0)] {
        assert!(!network.uses_native_kernels());
    }
    assert_eq!(
        KernelPath::Candle {
            reason: "GELU activation".into()
        }
        .to_string(),
        "candle kernels (GELU activation)"
    );
}

#[test]
fn network_info_comes_from_the_spec_weights_and_loader() {
    let spec_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/fashion-mnist-small-cnn.toml");
    let weights_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/fashion-mnist-small-cnn.safetensors");
    let network = Network::load(&spec_path, &weights_path, &Device::Cpu).unwrap();
    let info = network.info();
    assert_eq!(info.name, "small_cnn");
    assert_eq!(info.architecture.as_deref(), Some("small_cnn"));
    assert_eq!(info.format, ModelFormat::GauntletSpec);
    assert_eq!(info.format.to_string(), "gauntlet-spec");
    assert_eq!(info.source, Some(weights_path.display().to_string()));
    let class_names = info.class_names.unwrap();
    assert_eq!(class_names.len(), 10);
    assert_eq!(class_names[9], "Ankle boot");
    assert_eq!(info.parameters, Some(network.parameter_count()));
    assert_eq!(info.input_shape, [1, 28, 28]);
    assert_eq!(info.num_classes, 10);

    let built = init(MLP, 0);
    assert_eq!(built.info().source, None);
    assert_eq!(built.info().class_names, None);
    let named = built.with_source("embedded:demo");
    assert_eq!(named.info().source.as_deref(), Some("embedded:demo"));
}

#[test]
fn the_trait_defaults_declare_gradients_and_no_features() {
    let model = LinearModel::new(
        vec![1.0, 0.0, 0.0, 1.0],
        vec![0.0, 0.0],
        vec![2],
        2,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(model.capabilities(), ModelCapabilities::default());
    assert!(model.capabilities().input_gradients);
    assert!(model
        .capabilities()
        .feature(FeatureName::Penultimate)
        .is_none());
    let inputs = Tensor::zeros((1, 2), DType::F32, &Device::Cpu).unwrap();
    let error = model
        .features(&inputs, FeatureName::Penultimate)
        .unwrap_err();
    assert!(
        matches!(&error, ModelError::NoSuchFeature { available, .. } if available.is_empty()),
        "{error:?}"
    );
    let info = model.info();
    assert_eq!(info.name, "linear_model");
    assert_eq!(info.format, ModelFormat::Custom);
    assert_eq!(
        (info.architecture, info.source, info.parameters),
        (None, None, None)
    );
    assert_eq!(info.input_shape, [2]);
    assert_eq!(info.num_classes, 2);
    assert!(matches!(model.kernel_path(), KernelPath::Candle { .. }));
}

#[test]
fn feature_names_parse_from_their_spelling() {
    assert_eq!(
        "penultimate".parse::<FeatureName>().unwrap(),
        FeatureName::Penultimate
    );
    assert!("logits".parse::<FeatureName>().is_err());
    let network = init(MLP, 0);
    let layer = network
        .capabilities()
        .feature(FeatureName::Penultimate)
        .cloned()
        .unwrap();
    assert_eq!(layer.shape, [4]);
}
