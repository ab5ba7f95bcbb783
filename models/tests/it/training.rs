//! Training: reaches high accuracy on separable data, is deterministic, both optimisers work.

use candle_core::{DType, Device, Tensor};
use gauntlet_models::{
    accuracy, train, EpochStats, Model, ModelError, Network, Optimizer, TrainConfig,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{init, to_vec};

/// Three Gaussian blobs in 4-D, centred on ±1 corners with σ = 0.15: linearly separable
/// with a wide margin.
fn blobs(count: usize, seed: u64) -> (Tensor, Tensor) {
    let centres = [
        [0.2f32, 0.2, 0.8, 0.8],
        [0.8, 0.2, 0.2, 0.8],
        [0.5, 0.8, 0.5, 0.2],
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut inputs = Vec::with_capacity(count * 4);
    let mut labels = Vec::with_capacity(count);
    for i in 0..count {
        let class = i % 3;
        for &c in &centres[class] {
            let noise: f32 = (0..12).map(|_| rng.random::<f32>()).sum::<f32>() - 6.0; // ≈ N(0, 1)
            inputs.push(c + 0.05 * noise);
        }
        labels.push(class as u32);
    }
    (
        Tensor::from_vec(inputs, (count, 4), &Device::Cpu).unwrap(),
        Tensor::from_vec(labels, count, &Device::Cpu).unwrap(),
    )
}

const LINEAR: &str = "architecture = 'linear'\ninput_shape = [4]\nnum_classes = 3";

fn sgd() -> TrainConfig {
    TrainConfig {
        epochs: 15,
        batch_size: 16,
        optimizer: Optimizer::Sgd {
            learning_rate: 0.5,
            momentum: 0.9,
            weight_decay: 0.0,
        },
        seed: 7,
    }
}

fn run(
    network: &mut Network,
    config: &TrainConfig,
    inputs: &Tensor,
    labels: &Tensor,
) -> Vec<EpochStats> {
    let mut seen = Vec::new();
    let history = train(network, inputs, labels, config, &mut |stats| {
        seen.push(*stats)
    })
    .unwrap();
    assert_eq!(history, seen, "on_epoch must see every epoch");
    assert_eq!(history.len(), config.epochs);
    history
}

#[test]
fn linear_model_learns_separable_blobs() {
    let (inputs, labels) = blobs(300, 1);
    let (test_inputs, test_labels) = blobs(150, 2);
    let mut network = init(LINEAR, 3);
    let before = accuracy(&network, &test_inputs, &test_labels, 64).unwrap();
    let history = run(&mut network, &sgd(), &inputs, &labels);
    let after = accuracy(&network, &test_inputs, &test_labels, 64).unwrap();
    assert!(
        after >= 0.97,
        "test accuracy {after} (before training {before}); history {history:?}"
    );
    assert!(
        history.last().unwrap().train_accuracy >= 0.95,
        "{history:?}"
    );
}

#[test]
fn same_seed_gives_bit_identical_weights() {
    let (inputs, labels) = blobs(120, 4);
    let text = crate::gradients::EVERY_LAYER;
    let data = crate::random_inputs(&[24, 2, 9, 9], 5)
        .to_dtype(DType::F32)
        .unwrap();
    let data_labels = crate::random_labels(24, 3, 6);
    let config = TrainConfig {
        epochs: 2,
        batch_size: 8,
        ..sgd()
    };
    let trained = |seed: u64| {
        let mut linear = init(LINEAR, 0);
        run(
            &mut linear,
            &TrainConfig { seed, ..sgd() },
            &inputs,
            &labels,
        );
        // A network with batch norm and dropout, so running stats and masks are covered too.
        let mut every = init(text, 0);
        run(
            &mut every,
            &TrainConfig {
                seed,
                ..config.clone()
            },
            &data,
            &data_labels,
        );
        (
            linear.to_safetensors_bytes().unwrap(),
            every.to_safetensors_bytes().unwrap(),
        )
    };
    let first = trained(11);
    assert_eq!(first, trained(11));
    assert_ne!(
        first.0,
        trained(12).0,
        "a different seed should shuffle differently"
    );
}

#[test]
fn sgd_and_adam_both_reduce_the_loss() {
    let (inputs, labels) = blobs(150, 8);
    let mlp = "architecture = 'mlp'\ninput_shape = [4]\nnum_classes = 3\nhidden = [8]";
    for optimizer in [
        Optimizer::Sgd {
            learning_rate: 0.1,
            momentum: 0.0,
            weight_decay: 1e-4,
        },
        Optimizer::Sgd {
            learning_rate: 0.05,
            momentum: 0.9,
            weight_decay: 0.0,
        },
        Optimizer::Adam {
            learning_rate: 0.01,
            weight_decay: 0.0,
        },
        Optimizer::Adam {
            learning_rate: 0.01,
            weight_decay: 1e-3,
        },
    ] {
        let mut network = init(mlp, 9);
        let config = TrainConfig {
            epochs: 10,
            batch_size: 10,
            optimizer,
            seed: 1,
        };
        let history = run(&mut network, &config, &inputs, &labels);
        let (first, last) = (history[0].mean_loss, history[history.len() - 1].mean_loss);
        assert!(last < 0.5 * first, "{optimizer:?}: loss {first} → {last}");
    }
}

#[test]
fn training_updates_batch_norm_statistics_and_leaves_eval_mode() {
    let text = crate::gradients::EVERY_LAYER;
    let mut network = init(text, 0);
    let inputs = crate::random_inputs(&[16, 2, 9, 9], 1)
        .to_dtype(DType::F32)
        .unwrap();
    let labels = crate::random_labels(16, 3, 2);
    let running_before = running_var(&network);
    let config = TrainConfig {
        epochs: 1,
        batch_size: 4,
        ..sgd()
    };
    run(&mut network, &config, &inputs, &labels);
    assert_ne!(running_var(&network), running_before);
    // 16 samples in batches of 4: every batch norm saw 4 batches.
    let saved = candle_core::safetensors::load_buffer(
        &network.to_safetensors_bytes().unwrap(),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(
        saved["1.num_batches_tracked"].to_scalar::<i64>().unwrap(),
        4
    );
    // Eval mode after training: dropout is off, so two passes agree exactly.
    let first: Vec<Vec<f32>> = network.forward(&inputs).unwrap().to_vec2().unwrap();
    let second: Vec<Vec<f32>> = network.forward(&inputs).unwrap().to_vec2().unwrap();
    assert_eq!(first, second);
    // The weights are constants again: an input gradient tracks only the input.
    let result = network
        .loss_and_input_gradient(&inputs, &labels, gauntlet_models::Loss::CrossEntropy)
        .unwrap();
    assert_eq!(result.gradient.dims(), inputs.dims());
}

fn running_var(network: &Network) -> Vec<f64> {
    let saved = candle_core::safetensors::load_buffer(
        &network.to_safetensors_bytes().unwrap(),
        &Device::Cpu,
    )
    .unwrap();
    to_vec(&saved["1.running_var"])
}

#[test]
fn batch_norm_train_mode_matches_pytorch_update() {
    // One channel, batch values [1, 2, 3, 4]: mean 2.5, biased var 1.25, unbiased 5/3.
    // running_mean = 0.9·0 + 0.1·2.5; running_var = 0.9·1 + 0.1·5/3.
    let text = "architecture = 'sequential'\ninput_shape = [1]\nnum_classes = 1\n\
                [[layers]]\ntype = 'batch_norm1d'\nnum_features = 1";
    let mut network = init(text, 0);
    let inputs = Tensor::new(&[[1.0f32], [2.0], [3.0], [4.0]], &Device::Cpu).unwrap();
    let labels = Tensor::zeros(4, DType::U32, &Device::Cpu).unwrap();
    let config = TrainConfig {
        epochs: 1,
        batch_size: 4,
        ..sgd()
    };
    run(&mut network, &config, &inputs, &labels);
    let saved = candle_core::safetensors::load_buffer(
        &network.to_safetensors_bytes().unwrap(),
        &Device::Cpu,
    )
    .unwrap();
    let mean = to_vec(&saved["0.running_mean"])[0];
    let var = to_vec(&saved["0.running_var"])[0];
    assert!((mean - 0.25).abs() < 1e-6, "{mean}");
    assert!((var - (0.9 + 0.1 * 5.0 / 3.0)).abs() < 1e-6, "{var}");
}

#[test]
fn bad_training_inputs_are_errors() {
    let (inputs, labels) = blobs(30, 1);
    let mut network = init(LINEAR, 0);
    let bad_batch = TrainConfig {
        batch_size: 0,
        ..sgd()
    };
    assert!(matches!(
        train(&mut network, &inputs, &labels, &bad_batch, &mut |_| {}),
        Err(ModelError::InvalidTrainConfig { .. })
    ));
    let out_of_range = Tensor::new(&[5u32; 30], &Device::Cpu).unwrap();
    let error = train(&mut network, &inputs, &out_of_range, &sgd(), &mut |_| {}).unwrap_err();
    assert!(error.to_string().contains("label 5"), "{error}");
    let short_labels = labels.narrow(0, 0, 10).unwrap();
    assert!(matches!(
        train(&mut network, &inputs, &short_labels, &sgd(), &mut |_| {}),
        Err(ModelError::TrainingData { .. })
    ));
    let wrong_shape = Tensor::zeros((30, 5), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        train(&mut network, &wrong_shape, &labels, &sgd(), &mut |_| {}),
        Err(ModelError::InputShape { .. })
    ));
}

#[test]
fn optimizer_config_parses_from_toml() {
    let config: TrainConfig = toml::from_str(
        "epochs = 3\nbatch_size = 32\nseed = 5\n[optimizer]\nkind = 'sgd'\nlearning_rate = 0.1\nmomentum = 0.9\n",
    )
    .unwrap();
    assert_eq!(
        config.optimizer,
        Optimizer::Sgd {
            learning_rate: 0.1,
            momentum: 0.9,
            weight_decay: 0.0
        }
    );
    let adam: Optimizer = toml::from_str("kind = 'adam'\nlearning_rate = 0.001\n").unwrap();
    assert_eq!(
        adam,
        Optimizer::Adam {
            learning_rate: 0.001,
            weight_decay: 0.0
        }
    );
    assert!(
        toml::from_str::<Optimizer>("kind = 'adam'\nlearning_rate = 0.1\nmomentum = 0.9\n")
            .is_err()
    );
}
