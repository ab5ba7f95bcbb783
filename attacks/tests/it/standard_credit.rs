//! On the shipped Fashion-MNIST model, the member credit that `standard` reports through
//! `perturb_traced` (what the runner records as `broken_by`) is consistent: exactly the samples
//! the ensemble broke are credited, so the per-member counts add up to them, and each sample is
//! credited to the first member that breaks it when every member is run alone on the whole
//! batch — a later member never gets credit for a sample an earlier one breaks.
//!
//! On this undefended model APGD-CE breaks every image any member breaks at these settings
//! (measured: 13 of 32 at ε = 0.03, all APGD-CE's; also with one step, and on 96 images at
//! ε = 0.02), so the later members' share is zero here, as it is on the linear model of the
//! unit test in `src/evasion/standard.rs`. A later member is credited only on a model APGD-CE
//! fails on, e.g. one with masked gradients.
//!
//! `later_members_get_the_credit_when_cross_entropy_gradients_vanish` builds that model: the
//! same network with its logits scaled by 10⁵ (every prediction unchanged). Its softmax
//! saturates in f32, the cross-entropy gradient is exactly zero on confidently classified
//! images, and APGD-CE stalls where it broke them before; the DLR loss of APGD-T is
//! scale-invariant, as are FAB-T's linearisation and Square's margin, so the ensemble still
//! breaks them and credits the member that did. This is the gradient masking AutoAttack's
//! ensemble exists to see through. Measured at ε = 0.03 on 32 images: plain, 13 broken, all
//! credited to APGD-CE; scaled, the same 13 broken, all credited to APGD-T.
//!
//! Running a member alone on the whole batch gives each sample the result it gets inside the
//! ensemble (which runs it on a sub-batch with the same per-sample generators), because every
//! attack's result for a sample depends on that sample alone.

use std::path::Path;

use candle_core::{Device, Tensor};
use gauntlet_attacks::evasion::standard::Member;
use gauntlet_attacks::find_attack;
use gauntlet_datasets::Dataset;
use gauntlet_models::Network;

use crate::support::{build, correct, perturb, randomness};

const IMAGES: usize = 32;
const SEED: u64 = 5;
const EPSILON: f32 = 0.03;

/// The shipped model, its output layer (the `[10, k]` weight and `[10]` bias) multiplied by
/// `scale`: the same predictions, logits `scale` times larger.
fn shipped_model(scale: f32) -> Network {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/assets");
    let spec = assets.join("fashion-mnist-small-cnn.toml");
    let weights = assets.join("fashion-mnist-small-cnn.safetensors");
    if scale == 1.0 {
        return Network::load(&spec, &weights, &Device::Cpu).unwrap();
    }
    let bytes = fs_err::read(&weights).unwrap();
    let mut tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    let mut scaled = 0;
    for tensor in tensors.values_mut() {
        if tensor.dims().first() == Some(&10) && tensor.rank() <= 2 {
            *tensor = (&*tensor * f64::from(scale)).unwrap();
            scaled += 1;
        }
    }
    assert_eq!(scaled, 2, "the output layer's weight and bias");
    let path = std::env::temp_dir().join(format!(
        "gauntlet-scaled-logits-{}.safetensors",
        std::process::id()
    ));
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let bytes = fs_err::read(&path).unwrap();
    fs_err::remove_file(&path).unwrap();
    let spec = gauntlet_models::ModelSpec::from_file(&spec).unwrap();
    Network::from_spec_and_safetensors(&spec, &bytes, &Device::Cpu).unwrap()
}

/// Each image's credit in `standard` (steps 10, 3 targets, 100 queries) and whether each member
/// alone breaks it, on the first `IMAGES` test images.
struct Credit {
    clean: Vec<bool>,
    broken: Vec<bool>,
    credit: Vec<Option<Member>>,
    alone: Vec<(Member, Vec<bool>)>,
}

fn credit(model: &Network, epsilon: f32) -> Credit {
    let dataset = gauntlet_datasets::embedded_fashion_mnist_test().unwrap();
    let batch = dataset.batch(0..IMAGES, &Device::Cpu).unwrap();
    let (x, y) = (&batch.inputs, &batch.labels);
    let clean = correct(model, x, y);
    let broken_after = |adversarial: &Tensor| -> Vec<bool> {
        correct(model, adversarial, y)
            .iter()
            .zip(&clean)
            .map(|(after, before)| *before && !*after)
            .collect()
    };

    // As the runner calls it: the registry's entry, `perturb_traced`.
    let (steps, targets, queries) = (10, 3, 100);
    let ensemble = build(
        find_attack("standard").unwrap(),
        &format!("steps = {steps}\ntargets = {targets}\nqueries = {queries}"),
        epsilon,
    );
    let traced = ensemble
        .perturb_traced(model, x, y, &randomness(x, SEED))
        .unwrap();
    let broken = broken_after(&traced.adversarial);
    let credit: Vec<Option<Member>> = traced.traces.iter().map(|t| t.broken_by).collect();
    assert_eq!(credit.len(), IMAGES);

    // Each member alone, with the parameters the ensemble gives it.
    let alone: Vec<(Member, Vec<bool>)> = Member::ALL
        .iter()
        .map(|&member| {
            let (name, params) = match member {
                Member::ApgdCe => ("apgd", format!("loss = \"cross_entropy\"\nsteps = {steps}")),
                Member::ApgdT => ("apgd_t", format!("steps = {steps}\ntargets = {targets}")),
                Member::FabT => ("fab_t", format!("steps = {steps}\ntargets = {targets}")),
                Member::Square => ("square", format!("queries = {queries}")),
            };
            let attack = build(find_attack(name).unwrap(), &params, epsilon);
            let adversarial = perturb(attack.as_ref(), model, x, y, SEED);
            (member, broken_after(&adversarial))
        })
        .collect();
    Credit {
        clean,
        broken,
        credit,
        alone,
    }
}

/// Per member, the images credited to it; checks on the way that exactly the broken images
/// are credited, each to the first member that breaks it alone.
fn counts(run: &Credit) -> [usize; 4] {
    let Credit {
        broken,
        credit,
        alone,
        ..
    } = run;

    let mut counts = [0usize; 4];
    for i in 0..IMAGES {
        assert_eq!(credit[i].is_some(), broken[i], "image {i}: {:?}", credit[i]);
        let first = alone.iter().find(|(_, b)| b[i]).map(|(m, _)| *m);
        assert_eq!(credit[i], first, "image {i}");
        if let Some(member) = credit[i] {
            counts[Member::ALL.iter().position(|m| *m == member).unwrap()] += 1;
        }
    }
    let total_broken = broken.iter().filter(|&&b| b).count();
    eprintln!(
        "{total_broken} of {IMAGES} broken; credited to APGD-CE, APGD-T, FAB-T, Square: \
         {counts:?}"
    );
    assert_eq!(counts.iter().sum::<usize>(), total_broken);
    counts
}

#[test]
fn standard_credits_each_broken_sample_to_the_first_member_that_breaks_it() {
    let run = credit(&shipped_model(1.0), EPSILON);
    let counts = counts(&run);
    let Credit { clean, alone, .. } = &run;
    // A test that separates something: APGD-CE breaks some, and some survive it.
    assert!(counts[0] > 0, "APGD-CE broke nothing");
    assert!(
        clean.iter().zip(&alone[0].1).any(|(c, b)| *c && !*b),
        "APGD-CE broke every correct image: nothing left for later members"
    );
}

#[test]
fn later_members_get_the_credit_when_cross_entropy_gradients_vanish() {
    let plain = credit(&shipped_model(1.0), EPSILON);
    let scaled = credit(&shipped_model(1e5), EPSILON);
    assert_eq!(
        plain.clean, scaled.clean,
        "scaling the logits changes no prediction"
    );
    let plain_counts = counts(&plain);
    let scaled_counts = counts(&scaled);
    let broken = |run: &Credit| run.broken.iter().filter(|&&b| b).count();
    // APGD-CE alone loses images to the vanished gradient ...
    let alone = |run: &Credit| run.alone[0].1.iter().filter(|&&b| b).count();
    assert!(
        alone(&scaled) < alone(&plain),
        "APGD-CE alone breaks {} of the scaled model's images, {} of the plain one's",
        alone(&scaled),
        alone(&plain)
    );
    // ... which a later member breaks and is credited with.
    assert!(
        scaled_counts[1..].iter().sum::<usize>() > 0,
        "no later member was credited: {scaled_counts:?}"
    );
    assert!(
        scaled_counts[0] < plain_counts[0],
        "{scaled_counts:?} against {plain_counts:?}"
    );
    // The ensemble stays about as strong: the members after APGD-CE recover what it lost.
    assert!(
        broken(&scaled) + 2 >= broken(&plain),
        "the ensemble breaks {} on the scaled model, {} on the plain one",
        broken(&scaled),
        broken(&plain)
    );
}
