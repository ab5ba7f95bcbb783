//! APGD and APGD-T on the shipped Fashion-MNIST model: stronger than PGD at the same number of
//! gradient steps, per-sample results that do not depend on the batch (so early stopping and
//! restarts on the still-unbroken samples change nothing for the others), and the samples
//! already misclassified left alone.

use std::path::Path;
use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use gauntlet_attacks::find_attack;
use gauntlet_datasets::Dataset;
use gauntlet_models::Network;

use crate::support::{bits, build, correct, perturb};

const IMAGES: usize = 96;

struct Shipped {
    model: Network,
    inputs: Tensor,
    labels: Tensor,
}

fn shipped() -> &'static Shipped {
    static SHIPPED: OnceLock<Shipped> = OnceLock::new();
    SHIPPED.get_or_init(|| {
        let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/assets");
        let model = Network::load(
            &assets.join("fashion-mnist-small-cnn.toml"),
            &assets.join("fashion-mnist-small-cnn.safetensors"),
            &Device::Cpu,
        )
        .unwrap();
        let dataset = gauntlet_datasets::embedded_fashion_mnist_test().unwrap();
        let batch = dataset.batch(0..IMAGES, &Device::Cpu).unwrap();
        Shipped {
            model,
            inputs: batch.inputs,
            labels: batch.labels,
        }
    })
}

fn robust(correct: &[bool]) -> usize {
    correct.iter().filter(|&&ok| ok).count()
}

/// Robust accuracy (images correct before and after) of `attack` with `params` at `epsilon`.
fn robust_count(name: &str, params: &str, epsilon: f32) -> usize {
    let s = shipped();
    let attack = build(find_attack(name).unwrap(), params, epsilon);
    let adversarial = perturb(attack.as_ref(), &s.model, &s.inputs, &s.labels, 7);
    let before = correct(&s.model, &s.inputs, &s.labels);
    let after = correct(&s.model, &adversarial, &s.labels);
    robust(
        &before
            .iter()
            .zip(&after)
            .map(|(b, a)| *b && *a)
            .collect::<Vec<_>>(),
    )
}

// The same 20 gradient steps per sample: PGD with its default step 2.5ε/20 and a random
// start, APGD-CE with its schedule. APGD must leave no more images correct, at budgets where
// PGD leaves some.
#[test]
fn apgd_is_at_least_as_strong_as_pgd_at_the_same_budget() {
    for (norm, epsilon) in [("linf", 0.02f32), ("linf", 0.04), ("l2", 0.4), ("l2", 0.8)] {
        let pgd = robust_count("pgd", &format!("norm = \"{norm}\"\nsteps = 20"), epsilon);
        let apgd = robust_count("apgd", &format!("norm = \"{norm}\"\nsteps = 20"), epsilon);
        let apgd_dlr = robust_count(
            "apgd",
            &format!("norm = \"{norm}\"\nsteps = 20\nloss = \"dlr\""),
            epsilon,
        );
        let apgd_t = robust_count(
            "apgd_t",
            &format!("norm = \"{norm}\"\nsteps = 20\ntargets = 3"),
            epsilon,
        );
        eprintln!(
            "{norm} ε = {epsilon}: robust of {IMAGES}: PGD {pgd}, APGD-CE {apgd}, APGD-DLR {apgd_dlr}, APGD-T {apgd_t}"
        );
        assert!(pgd > 0, "{norm} ε = {epsilon}: PGD left nothing to compare");
        assert!(
            apgd <= pgd,
            "{norm} ε = {epsilon}: APGD-CE {apgd} > PGD {pgd}"
        );
        assert!(
            apgd_t <= apgd_dlr,
            "{norm} ε = {epsilon}: APGD-T {apgd_t} > APGD-DLR {apgd_dlr}"
        );
    }
}

// Each sample's result is a function of that sample (and its own random stream) only: the
// whole batch, the batch in two halves, and single images give the same bits. This is what
// makes it safe to stop attacking a broken sample and to restart only on the unbroken ones.
#[test]
fn results_do_not_depend_on_the_batch() {
    let s = shipped();
    for (name, params) in [
        ("apgd", "steps = 12\nrestarts = 2"),
        ("apgd", "steps = 12\nnorm = \"l2\"\nloss = \"dlr\""),
        ("apgd_t", "steps = 8\ntargets = 2"),
    ] {
        let epsilon = if params.contains("l2") { 0.6 } else { 0.03 };
        let attack = build(find_attack(name).unwrap(), params, epsilon);
        let n = 24;
        let x = s.inputs.narrow(0, 0, n).unwrap();
        let y = s.labels.narrow(0, 0, n).unwrap();
        let whole = perturb(attack.as_ref(), &s.model, &x, &y, 5);
        // Halves: randomness keyed by global index, so pass each half its own indices.
        for (start, len) in [(0usize, 10usize), (10, 14), (17, 1)] {
            let part = attack
                .perturb(
                    &s.model,
                    &x.narrow(0, start, len).unwrap(),
                    &y.narrow(0, start, len).unwrap(),
                    &gauntlet_attacks::SampleRandomness::for_range(5, "test", start..start + len),
                )
                .unwrap();
            assert_eq!(
                bits(&part),
                bits(&whole.narrow(0, start, len).unwrap()),
                "{name} {params}: samples {start}..{} differ from the whole batch",
                start + len
            );
        }
    }
}

// A sample the model already gets wrong is not attacked: it comes back bit for bit.
#[test]
fn misclassified_samples_are_returned_unchanged() {
    let s = shipped();
    let clean = correct(&s.model, &s.inputs, &s.labels);
    let wrong: Vec<usize> = (0..IMAGES).filter(|&i| !clean[i]).collect();
    assert!(
        !wrong.is_empty(),
        "the shipped model gets all {IMAGES} right"
    );
    for name in ["apgd", "apgd_t"] {
        let attack = build(find_attack(name).unwrap(), "steps = 5", 0.1);
        let adversarial = perturb(attack.as_ref(), &s.model, &s.inputs, &s.labels, 1);
        for &i in &wrong {
            assert_eq!(
                bits(&adversarial.narrow(0, i, 1).unwrap()),
                bits(&s.inputs.narrow(0, i, 1).unwrap()),
                "{name}: misclassified image {i} was changed"
            );
        }
    }
}
