//! The shipped Fashion-MNIST model attacked through gauntlet's native CPU path and through
//! candle's ops and autograd (`Network::with_native_kernels(false)`): the same clean and robust
//! accuracies, image for image.
//!
//! The two paths round differently (see `models/tests/it/native.rs`), so an iterate may now and
//! then land on the other side of a ReLU kink; per-image agreement is therefore required on all
//! but one image of the 256, and the accuracies must be equal.

use std::path::Path;

use candle_core::Device;
use gauntlet_attacks::find_attack;
use gauntlet_datasets::Dataset;
use gauntlet_models::Network;

use crate::support::{build, correct, perturb};

const IMAGES: usize = 256;

#[test]
fn the_shipped_model_has_the_same_robust_accuracy_on_both_paths() {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/assets");
    let native = Network::load(
        &assets.join("fashion-mnist-small-cnn.toml"),
        &assets.join("fashion-mnist-small-cnn.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    assert!(native.uses_native_kernels());
    let reference = native.with_native_kernels(false);
    let dataset = gauntlet_datasets::embedded_fashion_mnist_test().unwrap();
    let batch = dataset.batch(0..IMAGES, &Device::Cpu).unwrap();
    let (x, y) = (&batch.inputs, &batch.labels);

    let clean_native = correct(&native, x, y);
    assert_eq!(
        clean_native,
        correct(&reference, x, y),
        "clean predictions differ"
    );

    for (attack, params, epsilon) in [
        ("fgsm", "", 0.03f32),
        ("pgd", "steps = 10", 0.03),
        ("pgd", "steps = 10\nnorm = 'l2'", 1.0),
    ] {
        let attack = build(find_attack(attack).unwrap(), params, epsilon);
        let on_native = correct(&native, &perturb(attack.as_ref(), &native, x, y, 3), y);
        let on_candle = correct(
            &reference,
            &perturb(attack.as_ref(), &reference, x, y, 3),
            y,
        );
        let robust = |c: &[bool]| c.iter().filter(|&&ok| ok).count();
        let differing = on_native
            .iter()
            .zip(&on_candle)
            .filter(|(a, b)| a != b)
            .count();
        eprintln!(
            "{} `{params}` ε = {epsilon}: robust {} native, {} candle of {IMAGES}; {differing} images differ",
            attack.name(),
            robust(&on_native),
            robust(&on_candle)
        );
        assert!(
            differing <= 1,
            "{} `{params}`: {differing} images differ",
            attack.name()
        );
        assert!(
            robust(&on_native) < robust(&clean_native),
            "{} did nothing",
            attack.name()
        );
        assert_eq!(
            robust(&on_native),
            robust(&on_candle),
            "{} `{params}`",
            attack.name()
        );
    }
}
