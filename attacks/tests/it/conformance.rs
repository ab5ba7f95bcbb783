//! The contract of [`Attack`], checked for every registry entry, norm, loss, targeting mode and
//! a range of budgets including 0. A new attack added to `register_attacks!` is covered here
//! without any edit. Each test that runs an attack is a `device_tests!` test: on the CPU, and
//! also on CUDA under `--features cuda`, where the same contract (ε-ball, box, bit-identical
//! output per seed, typed errors) must hold on the GPU.

use candle_core::{DType, Device, Tensor};
use gauntlet_attacks::projection::perturbation_norms;
use gauntlet_attacks::{find_attack, Attack, AttackError, ChaCha8Rng, Norm, ATTACKS};
use gauntlet_models::testing::LinearModel;
use gauntlet_models::{device_tests, Model, ModelSpec, Network};
use rand::{Rng, SeedableRng};

use crate::support::{accuracy, bits, build, perturb, randomness};

const INPUT_SHAPE: [usize; 3] = [1, 4, 4];
const CLASSES: usize = 3;
const BATCH: usize = 8;

/// Inputs uniform in [0, 1] with some pixels exactly 0 or 1, so the box binds.
fn inputs(seed: u64, device: &Device) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f32> = (0..BATCH * 16)
        .map(|_| match rng.random_range(0..6) {
            0 => 0.0,
            1 => 1.0,
            _ => rng.random::<f32>(),
        })
        .collect();
    Tensor::from_vec(values, (BATCH, 1, 4, 4), device).unwrap()
}

/// Labels: the model's own predictions for most samples (so there is accuracy to lose) and a
/// wrong class for two.
fn labels_for(model: &dyn Model, inputs: &Tensor) -> Tensor {
    let mut labels: Vec<u32> = model.predict(inputs).unwrap().to_vec1().unwrap();
    labels[0] = (labels[0] + 1) % CLASSES as u32;
    labels[3] = (labels[3] + 2) % CLASSES as u32;
    Tensor::from_vec(labels, BATCH, model.device()).unwrap()
}

/// A built-in architecture of the models crate, freshly initialised on `device`.
fn network(architecture: &str, extra: &str, device: &Device) -> Network {
    let spec = ModelSpec::from_toml_str(&format!(
        "architecture = \"{architecture}\"\ninput_shape = [1, 4, 4]\nnum_classes = {CLASSES}\n{extra}"
    ))
    .unwrap();
    Network::init(&spec, 7, device).unwrap()
}

fn models(device: &Device) -> Vec<Box<dyn Model>> {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let weight: Vec<f32> = (0..CLASSES * 16)
        .map(|_| rng.random_range(-2.0f32..2.0))
        .collect();
    let linear = LinearModel::new(
        weight,
        vec![0.1, 0.0, -0.1],
        INPUT_SHAPE.to_vec(),
        CLASSES,
        device,
    )
    .unwrap();
    vec![
        Box::new(linear),
        Box::new(network("mlp", "hidden = [10]", device)),
        Box::new(network("mlp", "hidden = [12, 8]", device)),
        Box::new(network("small_cnn", "", device)),
    ]
}

fn epsilons(norm: Norm) -> [f32; 5] {
    match norm {
        Norm::Linf => [0.0, 1e-3, 8.0 / 255.0, 0.3, 1.0],
        Norm::L2 => [0.0, 1e-3, 0.5, 2.0, 8.0],
    }
}

device_tests! {
    fn every_attack_keeps_the_contract(device: &Device) {
        let mut cases = 0;
        for model in models(device) {
            let model = model.as_ref();
            let x = inputs(1, device);
            let x_copy = x.copy().unwrap();
            let labels = labels_for(model, &x);
            let clean_accuracy = accuracy(model, &x, &labels);
            for entry in ATTACKS {
                // The variants the registry entry declares: every branch a user can select.
                assert!(
                    !entry.conformance_variants.is_empty(),
                    "{} declares no conformance variants",
                    entry.name
                );
                for params in std::iter::once("").chain(entry.conformance_variants.iter().copied()) {
                    let norm = build(entry, params, 0.1).threat().norm;
                    for epsilon in epsilons(norm) {
                        let what = format!(
                            "{} on {} at ε = {epsilon} with\n{params}",
                            entry.name,
                            model.name()
                        );
                        let attack = build(entry, params, epsilon);
                        assert_eq!(attack.name(), entry.name, "{what}");
                        assert_eq!(attack.threat().norm, norm, "{what}");
                        assert_eq!(attack.threat().epsilon, epsilon, "{what}");

                        let adversarial = perturb(attack.as_ref(), model, &x, &labels, 17);
                        assert_eq!(adversarial.dims(), x.dims(), "shape: {what}");
                        assert_eq!(adversarial.dtype(), DType::F32, "dtype: {what}");
                        assert_eq!(bits(&x), bits(&x_copy), "the input was modified: {what}");

                        let values: Vec<f32> = adversarial.flatten_all().unwrap().to_vec1().unwrap();
                        assert!(values.iter().all(|v| !v.is_nan()), "NaN: {what}");
                        assert!(
                            values.iter().all(|v| (0.0..=1.0).contains(v)),
                            "outside [0, 1]: {what}"
                        );
                        let norms = perturbation_norms(&adversarial, &x, norm).unwrap();
                        assert!(
                            norms.iter().all(|n| *n <= epsilon * (1.0 + 1e-6)),
                            "norms {norms:?} above ε: {what}"
                        );
                        // The crate promises more: exact in f32.
                        assert!(
                            norms.iter().all(|n| *n <= epsilon),
                            "norms {norms:?} above ε in f32: {what}"
                        );

                        let again = perturb(attack.as_ref(), model, &x, &labels, 17);
                        assert_eq!(
                            bits(&again),
                            bits(&adversarial),
                            "same seed, different output: {what}"
                        );

                        if epsilon == 0.0 {
                            assert_eq!(
                                bits(&adversarial),
                                bits(&x),
                                "ε = 0 changed the input: {what}"
                            );
                        }
                        if attack.objective().target.is_none() {
                            let robust = accuracy(model, &adversarial, &labels);
                            assert!(
                                robust <= clean_accuracy,
                                "robust {robust} > clean {clean_accuracy}: {what}"
                            );
                        }
                        cases += 1;
                    }
                }
            }
        }
        let declared: usize = ATTACKS
            .iter()
            .map(|e| 1 + e.conformance_variants.len())
            .sum();
        assert_eq!(cases, 4 * declared * 5);
    }

    // Targeted runs may move a misclassified sample anywhere but must not make the model more
    // accurate overall than the untargeted budget allows; what they must do is reach targets:
    // at a large budget the success rate toward a random target beats ε = 0's (which is 0 on
    // correctly classified samples).
    fn targeted_attacks_reach_their_targets(device: &Device) {
        let model = network("mlp", "hidden = [12]", device);
        let x = inputs(2, device);
        let labels = labels_for(&model, &x);
        for entry in ATTACKS.iter().filter(|entry| takes_a_target(entry)) {
            let attack = build(entry, "targeted = true\ntarget = 1", 1.0);
            let adversarial = perturb(attack.as_ref(), &model, &x, &labels, 5);
            let predicted: Vec<u32> = model.predict(&adversarial).unwrap().to_vec1().unwrap();
            let hits = predicted.iter().filter(|p| **p == 1).count();
            let clean_hits = model
                .predict(&x)
                .unwrap()
                .to_vec1::<u32>()
                .unwrap()
                .iter()
                .filter(|p| **p == 1)
                .count();
            assert!(
                hits > clean_hits,
                "{}: {hits} hits of class 1 vs {clean_hits} before",
                entry.name
            );
        }
    }

    fn random_start_pgd_depends_on_the_seed(device: &Device) {
        let model = network("mlp", "hidden = [12]", device);
        let x = inputs(3, device);
        let labels = labels_for(&model, &x);
        let pgd = find_attack("pgd").unwrap();
        for norm in ["linf", "l2"] {
            let attack = build(pgd, &format!("norm = \"{norm}\"\nsteps = 2"), 0.2);
            let first = perturb(attack.as_ref(), &model, &x, &labels, 1);
            let second = perturb(attack.as_ref(), &model, &x, &labels, 2);
            assert_ne!(
                bits(&first),
                bits(&second),
                "{norm}: the seed had no effect"
            );
            let deterministic = build(
                pgd,
                &format!("norm = \"{norm}\"\nrandom_start = false"),
                0.2,
            );
            assert_eq!(
                bits(&perturb(deterministic.as_ref(), &model, &x, &labels, 1)),
                bits(&perturb(deterministic.as_ref(), &model, &x, &labels, 2)),
                "{norm}: without a random start the seed must not matter"
            );
        }
    }

    fn bad_batches_are_typed_errors(device: &Device) {
        let model = network("mlp", "hidden = [12]", device);
        let x = inputs(4, device);
        let labels = labels_for(&model, &x);
        for entry in ATTACKS {
            let attack: Box<dyn Attack> = build(entry, "", 0.1);
            let attack = attack.as_ref();
            let short_labels = labels.narrow(0, 0, BATCH - 1).unwrap();
            assert!(matches!(
                attack.perturb(&model, &x, &short_labels, &randomness(&x, 0)),
                Err(AttackError::ShapeMismatch { .. })
            ));
            let mut bad = labels.to_vec1::<u32>().unwrap();
            bad[5] = CLASSES as u32;
            let bad = Tensor::from_vec(bad, BATCH, device).unwrap();
            assert!(matches!(
                attack.perturb(&model, &x, &bad, &randomness(&x, 0)),
                Err(AttackError::LabelOutOfRange {
                    sample: 5,
                    label: 3,
                    num_classes: 3
                })
            ));
            let too_bright = x.affine(1.0, 0.5).unwrap();
            assert!(matches!(
                attack.perturb(&model, &too_bright, &labels, &randomness(&too_bright, 0)),
                Err(AttackError::InputOutOfRange { .. })
            ));
            let mut with_nan = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            with_nan[7] = f32::NAN;
            let with_nan = Tensor::from_vec(with_nan, x.dims(), device).unwrap();
            assert!(matches!(
                attack.perturb(&model, &with_nan, &labels, &randomness(&with_nan, 0)),
                Err(AttackError::InputOutOfRange { count: 1, .. })
            ));
            assert!(matches!(
                attack.perturb(
                    &model,
                    &x.to_dtype(DType::F64).unwrap(),
                    &labels,
                    &randomness(&x.to_dtype(DType::F64).unwrap(), 0)
                ),
                Err(AttackError::InputDtype { dtype: DType::F64 })
            ));
            let wrong_size = Tensor::zeros((BATCH, 1, 3, 3), DType::F32, device).unwrap();
            assert!(matches!(
                attack.perturb(&model, &wrong_size, &labels, &randomness(&wrong_size, 0)),
                Err(AttackError::ShapeMismatch { .. })
            ));
            // An empty batch is not an error: nothing to attack.
            let empty = x.narrow(0, 0, 0).unwrap();
            let none = labels.narrow(0, 0, 0).unwrap();
            assert_eq!(
                attack
                    .perturb(&model, &empty, &none, &randomness(&empty, 0))
                    .unwrap()
                    .dims(),
                &[0, 1, 4, 4]
            );
        }
    }

    fn a_fixed_target_outside_the_model_is_an_error(device: &Device) {
        let model = network("mlp", "hidden = [12]", device);
        let x = inputs(5, device);
        let labels = labels_for(&model, &x);
        for entry in ATTACKS.iter().filter(|entry| takes_a_target(entry)) {
            let attack = build(entry, "targeted = true\ntarget = 7", 0.1);
            let error = attack
                .perturb(&model, &x, &labels, &randomness(&x, 0))
                .unwrap_err();
            assert!(
                matches!(error, AttackError::InvalidParameter { ref key, .. } if key == "target"),
                "{}: {error}",
                entry.name
            );
        }
    }
}

/// Whether an attack lets the suite choose a target (`targeted`, `target`); the others (an
/// untargeted black box, APGD-T with its own ranked targets) are checked by everything else.
fn takes_a_target(entry: &gauntlet_attacks::AttackEntry) -> bool {
    entry.parameters.iter().any(|p| p.name == "target")
}

/// Attacks are shared across rayon workers: `Box<dyn Attack>` must be `Send + Sync`.
#[test]
fn attacks_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + ?Sized>() {}
    assert_send_sync::<dyn Attack>();
    assert_send_sync::<Box<dyn Attack>>();
}
