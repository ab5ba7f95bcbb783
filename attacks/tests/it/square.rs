//! The Square Attack on the shipped Fashion-MNIST model: logits only, yet it lowers robust
//! accuracy far below clean; every sample's query count stays within the budget, and a
//! sample stops being queried once it is broken.

use std::path::Path;

use candle_core::Device;
use gauntlet_attacks::evasion::square::Square;
use gauntlet_attacks::find_attack;
use gauntlet_datasets::Dataset;
use gauntlet_models::Network;

use crate::support::{correct, randomness};

#[test]
fn square_breaks_the_shipped_model_within_its_query_budget() {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/assets");
    let model = Network::load(
        &assets.join("fashion-mnist-small-cnn.toml"),
        &assets.join("fashion-mnist-small-cnn.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let dataset = gauntlet_datasets::embedded_fashion_mnist_test().unwrap();
    let batch = dataset.batch(0..48, &Device::Cpu).unwrap();
    let (x, y) = (&batch.inputs, &batch.labels);
    let clean = correct(&model, x, y);
    let clean_count = clean.iter().filter(|&&c| c).count();
    for (norm, epsilon) in [("linf", 0.1f32), ("l2", 2.0)] {
        let budget = 300u32;
        let table: toml::Table =
            toml::from_str(&format!("norm = \"{norm}\"\nqueries = {budget}")).unwrap();
        // Through the registry (what a suite runs) and through the typed attack (for queries).
        let attack = (find_attack("square").unwrap().build)(&table, epsilon).unwrap();
        let adversarial = attack.perturb(&model, x, y, &randomness(x, 3)).unwrap();
        let typed: Square = Square::from_table(&table, epsilon).unwrap();
        let (same, queries) = typed
            .perturb_with_queries(&model, x, y, &randomness(x, 3))
            .unwrap();
        assert_eq!(
            crate::support::bits(&same),
            crate::support::bits(&adversarial)
        );
        let after = correct(&model, &adversarial, y);
        let robust = clean.iter().zip(&after).filter(|(c, a)| **c && **a).count();
        eprintln!("square {norm} ε = {epsilon}: robust {robust} of clean {clean_count}; queries {queries:?}");
        assert!(
            robust * 2 < clean_count,
            "{norm}: Square left {robust} of {clean_count} correct"
        );
        for (i, &q) in queries.iter().enumerate() {
            assert!(q >= 1 && q <= budget, "sample {i}: {q} queries");
            if !clean[i] {
                assert_eq!(
                    q, 1,
                    "misclassified sample {i} was queried beyond the clean pass"
                );
            } else if after[i] {
                assert_eq!(q, budget, "unbroken sample {i} stopped early");
            }
        }
    }
}

// Each sample's proposals come from its own generator and only its own margin decides, so a
// sample's result is the same in any batch: stopping the broken ones changes nothing for the
// others.
#[test]
fn square_results_do_not_depend_on_the_batch() {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/assets");
    let model = Network::load(
        &assets.join("fashion-mnist-small-cnn.toml"),
        &assets.join("fashion-mnist-small-cnn.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let dataset = gauntlet_datasets::embedded_fashion_mnist_test().unwrap();
    let batch = dataset.batch(0..12, &Device::Cpu).unwrap();
    let (x, y) = (&batch.inputs, &batch.labels);
    for norm in ["linf", "l2"] {
        let table: toml::Table =
            toml::from_str(&format!("norm = \"{norm}\"\nqueries = 50")).unwrap();
        let epsilon = if norm == "l2" { 1.0 } else { 0.05 };
        let attack = Square::from_table(&table, epsilon).unwrap();
        let (whole, whole_queries) = attack
            .perturb_with_queries(&model, x, y, &randomness(x, 9))
            .unwrap();
        for (start, len) in [(0usize, 5usize), (5, 7), (11, 1)] {
            let (part, queries) = attack
                .perturb_with_queries(
                    &model,
                    &x.narrow(0, start, len).unwrap(),
                    &y.narrow(0, start, len).unwrap(),
                    &gauntlet_attacks::SampleRandomness::for_range(9, "test", start..start + len),
                )
                .unwrap();
            assert_eq!(
                crate::support::bits(&part),
                crate::support::bits(&whole.narrow(0, start, len).unwrap()),
                "{norm}: samples {start}..{}",
                start + len
            );
            assert_eq!(
                queries,
                whole_queries[start..start + len].to_vec(),
                "{norm}"
            );
        }
    }
}
