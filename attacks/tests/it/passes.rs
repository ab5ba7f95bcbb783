//! Every attack's declared `passes_per_sample` bounds the model passes it really makes: a
//! model that counts its forward and gradient calls (per sample) is attacked with every
//! registry entry and conformance variant, and the count must never exceed the declaration.
//! PGD without restarts never stops early, so there the count is exact.

use candle_core::{Device, Tensor};
use gauntlet_attacks::{ModelAccess, Passes, ATTACKS};
use gauntlet_models::testing::{CountingModel, LinearModel};
use rand::{Rng, SeedableRng};

use crate::support::{build, perturb};

const BATCH: usize = 5;
const FEATURES: usize = 6;
const CLASSES: usize = 3;

/// Counts forward and backward passes per sample; a gradient is one of each.
type Counting = CountingModel<LinearModel>;

fn passes(model: &Counting) -> Passes {
    let (forward, backward) = model.counts();
    Passes { forward, backward }
}

fn counting_model() -> Counting {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let weight: Vec<f32> = (0..CLASSES * FEATURES)
        .map(|_| rng.random_range(-2.0f32..2.0))
        .collect();
    CountingModel::new(
        LinearModel::new(
            weight,
            vec![0.5, 0.0, -0.5],
            vec![FEATURES],
            CLASSES,
            &Device::Cpu,
        )
        .unwrap(),
    )
}

#[test]
fn no_attack_makes_more_passes_than_it_declares() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    let values: Vec<f32> = (0..BATCH * FEATURES).map(|_| rng.random()).collect();
    let inputs = Tensor::from_vec(values, (BATCH, FEATURES), &Device::Cpu).unwrap();
    let labels = Tensor::from_vec(vec![0u32, 1, 2, 0, 1], BATCH, &Device::Cpu).unwrap();
    let mut exact = 0;
    for entry in ATTACKS {
        for params in std::iter::once("").chain(entry.conformance_variants.iter().copied()) {
            let attack = build(entry, params, 0.1);
            let model = counting_model();
            perturb(attack.as_ref(), &model, &inputs, &labels, 9);
            let declared = attack.passes_per_sample().times(BATCH as u64);
            let made = passes(&model);
            let what = format!(
                "{} with `{params}`: made {made}, declared {declared}",
                entry.name
            );
            assert!(made.forward <= declared.forward, "{what}");
            assert!(made.backward <= declared.backward, "{what}");
            // A white-box attack makes gradient passes; a black box (Square) makes none.
            if entry.needs == ModelAccess::InputGradients {
                assert!(made.backward > 0, "{what}");
            } else {
                assert_eq!(made.backward, 0, "{what}");
            }
            if entry.name == "pgd" && !params.contains("restarts") {
                assert_eq!(made, declared, "{what}");
                exact += 1;
            }
        }
    }
    assert!(exact > 0);
}
