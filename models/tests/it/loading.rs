//! Safetensors loading: strict name/shape checks, dtype conversion, corrupt input, round trips.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use gauntlet_models::{Model, ModelError, ModelSpec, Network, ShapeMismatch};

use crate::gradients::{with_random_batch_norm, EVERY_LAYER};
use crate::{init, random_inputs, spec, to_vec};

const SMALL_CNN: &str = "architecture = 'small_cnn'\ninput_shape = [1, 12, 12]\nnum_classes = 4";

fn tensors_of(network: &Network) -> HashMap<String, Tensor> {
    candle_core::safetensors::load_buffer(&network.to_safetensors_bytes().unwrap(), &Device::Cpu)
        .unwrap()
}

fn serialize(tensors: HashMap<String, Tensor>) -> Vec<u8> {
    safetensors::serialize(tensors, None).unwrap()
}

fn load(text: &str, bytes: &[u8]) -> Result<Network, ModelError> {
    Network::from_spec_and_safetensors(&spec(text), bytes, &Device::Cpu)
}

#[test]
fn missing_extra_and_misshaped_tensors_are_one_error() {
    let mut tensors = tensors_of(&init(SMALL_CNN, 0));
    tensors.remove("0.bias");
    tensors.remove("7.bias");
    tensors.insert(
        "extra.weight".into(),
        Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap(),
    );
    tensors.insert(
        "3.weight".into(),
        Tensor::zeros((32, 16, 5, 5), DType::F32, &Device::Cpu).unwrap(),
    );
    let error = load(SMALL_CNN, &serialize(tensors)).unwrap_err();
    let ModelError::Weights {
        missing,
        unexpected,
        mismatched,
    } = &error
    else {
        panic!("expected a Weights error, got {error:?}");
    };
    assert_eq!(missing, &vec!["0.bias".to_string(), "7.bias".to_string()]);
    assert_eq!(unexpected, &vec![("extra.weight".to_string(), vec![2, 3])]);
    assert_eq!(
        mismatched,
        &vec![ShapeMismatch {
            tensor: "3.weight".into(),
            expected: vec![32, 16, 3, 3],
            got: vec![32, 16, 5, 5],
        }]
    );
    let message = error.to_string();
    for part in [
        "`0.bias`",
        "`7.bias`",
        "`extra.weight` [2, 3]",
        "`3.weight`: expected [32, 16, 3, 3], got [32, 16, 5, 5]",
    ] {
        assert!(message.contains(part), "{part} not in: {message}");
    }
}

#[test]
fn non_finite_weight_is_named() {
    let mut tensors = tensors_of(&init(SMALL_CNN, 0));
    let mut values = to_vec(&tensors["3.weight"]);
    values[17] = f64::NAN;
    let poisoned = Tensor::from_vec(values, (32, 16, 3, 3), &Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    tensors.insert("3.weight".into(), poisoned);
    let error = load(SMALL_CNN, &serialize(tensors.clone())).unwrap_err();
    assert!(
        matches!(&error, ModelError::NonFiniteWeight { tensor, index: 17, .. } if tensor == "3.weight"),
        "{error:?}"
    );
    assert!(error.to_string().contains("`3.weight`"), "{error}");

    let infinite = Tensor::new(&[f32::INFINITY, 0.0, 0.0, 0.0], &Device::Cpu).unwrap();
    tensors.insert("7.bias".into(), infinite);
    let error = load(SMALL_CNN, &serialize(tensors)).unwrap_err();
    assert!(
        matches!(error, ModelError::NonFiniteWeight { .. }),
        "{error:?}"
    );
}

#[test]
fn truncated_and_garbage_bytes_are_errors() {
    let bytes = init(SMALL_CNN, 0).to_safetensors_bytes().unwrap();
    for cut in [0, 7, 8, 100, bytes.len() - 1] {
        let error = load(SMALL_CNN, &bytes[..cut]).unwrap_err();
        assert!(
            matches!(error, ModelError::SafetensorsFormat { .. }),
            "cut at {cut}: {error:?}"
        );
    }
    let error = load(SMALL_CNN, b"definitely not a safetensors file").unwrap_err();
    assert!(
        matches!(error, ModelError::SafetensorsFormat { .. }),
        "{error:?}"
    );
}

#[test]
fn integer_weights_are_rejected() {
    let mut tensors = tensors_of(&init(SMALL_CNN, 0));
    tensors.insert(
        "0.bias".into(),
        Tensor::zeros(16, DType::I64, &Device::Cpu).unwrap(),
    );
    let error = load(SMALL_CNN, &serialize(tensors)).unwrap_err();
    assert!(
        matches!(&error, ModelError::UnsupportedTensorDtype { tensor, .. } if tensor == "0.bias"),
        "{error:?}"
    );
}

#[test]
fn half_and_double_precision_weights_are_converted() {
    let network = init(SMALL_CNN, 3);
    let inputs = random_inputs(&[2, 1, 12, 12], 4)
        .to_dtype(DType::F32)
        .unwrap();
    let reference = to_vec(&network.forward(&inputs).unwrap());
    for (dtype, tolerance) in [(DType::F64, 1e-6), (DType::F16, 2e-2), (DType::BF16, 1e-1)] {
        let converted = tensors_of(&network)
            .into_iter()
            .map(|(name, tensor)| {
                let tensor = if tensor.dtype().is_float() {
                    tensor.to_dtype(dtype).unwrap()
                } else {
                    tensor
                };
                (name, tensor)
            })
            .collect();
        let loaded = load(SMALL_CNN, &serialize(converted)).unwrap();
        let logits = to_vec(&loaded.forward(&inputs).unwrap());
        let worst = reference
            .iter()
            .zip(&logits)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst <= tolerance, "{dtype:?}: logits differ by {worst}");
    }
}

#[test]
fn wrong_input_shape_is_a_clear_error() {
    let network = init(
        "architecture = 'small_cnn'\ninput_shape = [1, 28, 28]\nnum_classes = 10",
        0,
    );
    let cifar = Tensor::zeros((4, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
    let error = network.forward(&cifar).unwrap_err();
    assert!(
        matches!(&error, ModelError::InputShape { expected, got } if expected == &[1, 28, 28] && got == &[4, 3, 32, 32]),
        "{error:?}"
    );
    assert!(error.to_string().contains("[batch, 1, 28, 28]"), "{error}");
    let unbatched = Tensor::zeros((1, 28, 28), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        network.forward(&unbatched),
        Err(ModelError::InputShape { .. })
    ));
    let labels = Tensor::zeros(4, DType::U32, &Device::Cpu).unwrap();
    assert!(matches!(
        network.loss_and_input_gradient(&cifar, &labels, gauntlet_models::Loss::CrossEntropy),
        Err(ModelError::InputShape { .. })
    ));
}

#[test]
fn save_then_load_gives_identical_logits() {
    let text = EVERY_LAYER;
    let network = with_random_batch_norm(&init(text, 7), 8);
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("model.toml");
    let weights_path = dir.path().join("model.safetensors");
    fs_err::write(&spec_path, network.spec().to_toml_string().unwrap()).unwrap();
    network.save_safetensors(&weights_path).unwrap();
    let loaded = Network::load(&spec_path, &weights_path, &Device::Cpu).unwrap();
    let inputs = random_inputs(&[3, 2, 9, 9], 9)
        .to_dtype(DType::F32)
        .unwrap();
    let before: Vec<Vec<f32>> = network.forward(&inputs).unwrap().to_vec2().unwrap();
    let after: Vec<Vec<f32>> = loaded.forward(&inputs).unwrap().to_vec2().unwrap();
    assert_eq!(before, after);
    assert_eq!(loaded.parameter_count(), network.parameter_count());
}

#[test]
fn pytorch_state_dict_with_num_batches_tracked_loads() {
    // What `safetensors.torch.save_file(model.state_dict(), …)` writes for the ResNet-20 of
    // docs/pytorch-export.md: every BN also carries an int64 `num_batches_tracked` scalar.
    let text = "architecture = 'resnet20'\ninput_shape = [3, 8, 8]\nnum_classes = 10";
    let network = with_random_batch_norm(&init(text, 11), 12);
    let mut tensors = tensors_of(&network);
    let tracked: Vec<String> = tensors
        .keys()
        .filter(|n| n.ends_with("num_batches_tracked"))
        .cloned()
        .collect();
    // conv1's bn1, 9 blocks × 2, and the 2 projection shortcuts.
    assert_eq!(tracked.len(), 1 + 18 + 2);
    for name in &tracked {
        tensors.insert(name.clone(), Tensor::new(1234i64, &Device::Cpu).unwrap());
    }
    let with_counts = load(text, &serialize(tensors.clone())).unwrap();
    for name in &tracked {
        tensors.remove(name);
    }
    let without_counts = load(text, &serialize(tensors)).unwrap();
    let inputs = random_inputs(&[2, 3, 8, 8], 13)
        .to_dtype(DType::F32)
        .unwrap();
    let reference: Vec<Vec<f32>> = network.forward(&inputs).unwrap().to_vec2().unwrap();
    assert_eq!(
        with_counts
            .forward(&inputs)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap(),
        reference
    );
    assert_eq!(
        without_counts
            .forward(&inputs)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap(),
        reference
    );
    // The count survives a save.
    let saved = tensors_of(&with_counts);
    assert_eq!(
        saved["layer2.0.shortcut.1.num_batches_tracked"]
            .to_scalar::<i64>()
            .unwrap(),
        1234
    );
}

#[test]
fn load_errors_name_the_weights_file() {
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("model.toml");
    fs_err::write(&spec_path, SMALL_CNN).unwrap();
    let weights_path = dir.path().join("weights.safetensors");
    fs_err::write(&weights_path, b"\x10\x00\x00\x00").unwrap();
    let error = Network::load(&spec_path, &weights_path, &Device::Cpu).unwrap_err();
    assert!(matches!(error, ModelError::WeightsFile { .. }), "{error:?}");
    assert!(error.to_string().contains("weights.safetensors"), "{error}");
    let absent = Network::load(
        &spec_path,
        &dir.path().join("absent.safetensors"),
        &Device::Cpu,
    )
    .unwrap_err();
    assert!(matches!(absent, ModelError::Io { .. }), "{absent:?}");
}

#[test]
fn spec_is_validated_before_weights() {
    let spec = ModelSpec {
        num_classes: 0,
        ..spec(SMALL_CNN)
    };
    let error = Network::from_spec_and_safetensors(&spec, &[], &Device::Cpu).unwrap_err();
    assert!(matches!(error, ModelError::InvalidSpec { .. }), "{error:?}");
}

#[test]
fn bad_labels_and_empty_batches_are_handled() {
    let network = init(SMALL_CNN, 0);
    let x = Tensor::zeros((2, 1, 12, 12), DType::F32, &Device::Cpu).unwrap();
    for loss in [
        gauntlet_models::Loss::CrossEntropy,
        gauntlet_models::Loss::CwMargin,
    ] {
        let out_of_range = Tensor::new(&[0u32, 7], &Device::Cpu).unwrap();
        let error = network
            .loss_and_input_gradient(&x, &out_of_range, loss)
            .unwrap_err();
        assert!(error.to_string().contains("label 7 of sample 1"), "{error}");
        let short = Tensor::new(&[0u32], &Device::Cpu).unwrap();
        let error = network
            .loss_and_input_gradient(&x, &short, loss)
            .unwrap_err();
        assert!(
            matches!(error, ModelError::InvalidLabels { .. }),
            "{error:?}"
        );
    }
    let empty = Tensor::zeros((0, 1, 12, 12), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(network.forward(&empty).unwrap().dims(), &[0, 4]);
}

#[test]
fn init_is_deterministic_in_the_seed() {
    let text = "architecture = 'resnet20'\ninput_shape = [3, 8, 8]\nnum_classes = 10";
    let bytes = |seed| init(text, seed).to_safetensors_bytes().unwrap();
    assert_eq!(bytes(3), bytes(3));
    assert_ne!(bytes(3), bytes(4));
}
