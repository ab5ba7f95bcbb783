//! One PyTorch-trained residual CNN (`models/tests/fixtures/byom`) loaded from safetensors, a zip
//! checkpoint, a legacy checkpoint and two ONNX exports is attacked by FGSM and PGD with the
//! same seed: every format gives the same clean predictions and the same robust accuracy.

use std::path::{Path, PathBuf};

use candle_core::Device;
use gauntlet_attacks::find_attack;
use gauntlet_datasets::Dataset;
use gauntlet_models::Network;

use crate::support::{build, correct, perturb};

const IMAGES: usize = 200;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/fixtures/byom")
}

#[test]
fn every_format_has_the_same_robust_accuracy() {
    let dir = fixtures();
    let spec = dir.join("cnn.toml");
    let mut models = Vec::new();
    for weights in ["cnn.safetensors", "cnn.zip.pt", "cnn.legacy.pt"] {
        models.push((
            weights,
            Network::load(&spec, &dir.join(weights), &Device::Cpu).unwrap(),
        ));
    }
    for onnx in ["cnn.onnx", "cnn.dynamo.onnx"] {
        models.push((
            onnx,
            Network::from_onnx_file(&dir.join(onnx), &Device::Cpu).unwrap(),
        ));
    }
    let dataset = gauntlet_datasets::embedded_uci_digits().unwrap();
    let batch = dataset.batch(0..IMAGES, &Device::Cpu).unwrap();
    let (x, y) = (&batch.inputs, &batch.labels);
    let (reference_name, reference) = &models[0];
    let clean = correct(reference, x, y);
    let accuracy = |c: &[bool]| c.iter().filter(|&&ok| ok).count();
    assert!(
        accuracy(&clean) > IMAGES * 9 / 10,
        "the fixture model is trained"
    );
    for (attack, params, epsilon) in [("fgsm", "", 0.1f32), ("pgd", "steps = 10", 0.1)] {
        let attack = build(find_attack(attack).unwrap(), params, epsilon);
        let robust_reference = correct(reference, &perturb(attack.as_ref(), reference, x, y, 5), y);
        assert!(
            accuracy(&robust_reference) < accuracy(&clean),
            "{} did nothing",
            attack.name()
        );
        for (name, model) in &models[1..] {
            assert_eq!(
                correct(model, x, y),
                clean,
                "{name}: clean predictions differ"
            );
            let robust = correct(model, &perturb(attack.as_ref(), model, x, y, 5), y);
            assert_eq!(
                accuracy(&robust),
                accuracy(&robust_reference),
                "{} on {name} vs {reference_name}",
                attack.name()
            );
        }
    }
}
