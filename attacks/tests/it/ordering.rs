//! On the shipped Fashion-MNIST model, the attacks are ordered by strength as they should be:
//! robust accuracy of FGSM ≥ PGD ≥ APGD-CE ≥ the `standard` ensemble at each ε. Between APGD
//! and `standard` the order holds image for image by construction (the ensemble's first member
//! is APGD-CE with the same steps and the same per-sample generators, and later members only
//! add broken images), so it is checked per image; the others are checked as counts.

use std::path::Path;

use candle_core::Device;
use gauntlet_attacks::evasion::standard::{Member, Standard};
use gauntlet_attacks::find_attack;
use gauntlet_datasets::Dataset;
use gauntlet_models::Network;

use crate::support::{build, correct, perturb, randomness};

const IMAGES: usize = 48;
const SEED: u64 = 11;

#[test]
fn fgsm_pgd_apgd_standard_are_ordered_on_the_shipped_model() {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/assets");
    let model = Network::load(
        &assets.join("fashion-mnist-small-cnn.toml"),
        &assets.join("fashion-mnist-small-cnn.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let dataset = gauntlet_datasets::embedded_fashion_mnist_test().unwrap();
    let batch = dataset.batch(0..IMAGES, &Device::Cpu).unwrap();
    let (x, y) = (&batch.inputs, &batch.labels);
    let clean = correct(&model, x, y);
    let robust_after = |adversarial: &candle_core::Tensor| -> Vec<bool> {
        correct(&model, adversarial, y)
            .iter()
            .zip(&clean)
            .map(|(a, c)| *a && *c)
            .collect()
    };
    let count = |v: &[bool]| v.iter().filter(|&&r| r).count();
    let standard_params = "steps = 10\ntargets = 3\nqueries = 100";
    let mut credited = [0usize; 4];
    for epsilon in [0.01f32, 0.03, 0.05] {
        let run = |name: &str, params: &str| {
            let attack = build(find_attack(name).unwrap(), params, epsilon);
            robust_after(&perturb(attack.as_ref(), &model, x, y, SEED))
        };
        let fgsm = run("fgsm", "");
        let pgd = run("pgd", "steps = 10");
        let apgd = run("apgd", "steps = 10");
        let ensemble =
            Standard::from_table(&toml::from_str(standard_params).unwrap(), epsilon).unwrap();
        let (adversarial, members) = ensemble
            .perturb_with_members(&model, x, y, &randomness(x, SEED))
            .unwrap();
        let standard = robust_after(&adversarial);
        eprintln!(
            "ε = {epsilon}: robust of {IMAGES} ({} clean): FGSM {}, PGD {}, APGD {}, standard {}",
            count(&clean),
            count(&fgsm),
            count(&pgd),
            count(&apgd),
            count(&standard)
        );
        assert!(count(&apgd) > 0, "ε = {epsilon}: nothing left to compare");
        assert!(count(&fgsm) >= count(&pgd), "ε = {epsilon}: FGSM < PGD");
        assert!(count(&pgd) >= count(&apgd), "ε = {epsilon}: PGD < APGD");
        assert!(
            count(&apgd) >= count(&standard),
            "ε = {epsilon}: APGD < standard"
        );
        for i in 0..IMAGES {
            assert!(
                apgd[i] || !standard[i],
                "ε = {epsilon}: image {i} broken by APGD but not by standard"
            );
            // An image broken by APGD-CE is credited to it; every broken image to some member,
            // and only broken images.
            if clean[i] && !apgd[i] {
                assert_eq!(members[i], Some(Member::ApgdCe), "ε = {epsilon}: image {i}");
            }
            assert_eq!(
                members[i].is_some(),
                clean[i] && !standard[i],
                "ε = {epsilon}: image {i}"
            );
            if let Some(member) = members[i] {
                credited[Member::ALL.iter().position(|m| *m == member).unwrap()] += 1;
            }
        }
    }
    eprintln!("images credited to APGD-CE, APGD-T, FAB-T, Square: {credited:?}");
}
