//! Attacks against a model trained on real data (the embedded UCI digits): the orderings and
//! limits that any working gradient attack satisfies (see the design notes' §4.4).

use std::sync::OnceLock;

use gauntlet_attacks::objective::{check_batch, Objective};
use gauntlet_attacks::{find_attack, TargetSelection};
use gauntlet_models::{Loss, Model};

use crate::support::{
    accuracy, bits, build, correct, losses, mean, perturb, trained_digits_mlp, Digits,
};

const TEST_SAMPLES: usize = 300;

fn digits() -> &'static Digits {
    static DIGITS: OnceLock<Digits> = OnceLock::new();
    DIGITS.get_or_init(|| trained_digits_mlp(TEST_SAMPLES))
}

/// Everything below is only meaningful on a model that works.
#[test]
fn the_model_is_trained() {
    let digits = digits();
    let clean = accuracy(&digits.model, &digits.test_inputs, &digits.test_labels);
    assert!(
        clean >= 0.95,
        "held-out accuracy {clean} < 0.95: the fixture did not train"
    );
}

// At the same ε, PGD (which starts where FGSM ends up to first order and keeps climbing) must
// find at least FGSM's mean loss, and not a higher robust accuracy.
#[test]
fn pgd_beats_fgsm_at_the_same_budget() {
    let digits = digits();
    let (model, x, y) = (&digits.model, &digits.test_inputs, &digits.test_labels);
    let fgsm = find_attack("fgsm").unwrap();
    let pgd = find_attack("pgd").unwrap();
    for (norm, epsilon) in [("linf", 0.05f32), ("linf", 0.1), ("l2", 0.5), ("l2", 1.0)] {
        let params = format!("norm = \"{norm}\"");
        let from_fgsm = perturb(build(fgsm, &params, epsilon).as_ref(), model, x, y, 1);
        let from_pgd = perturb(build(pgd, &params, epsilon).as_ref(), model, x, y, 1);
        let loss_fgsm = mean(&losses(model, &from_fgsm, y, Loss::CrossEntropy));
        let loss_pgd = mean(&losses(model, &from_pgd, y, Loss::CrossEntropy));
        let clean_loss = mean(&losses(model, x, y, Loss::CrossEntropy));
        assert!(
            loss_fgsm > clean_loss,
            "{norm} ε = {epsilon}: FGSM did not raise the loss"
        );
        assert!(
            loss_pgd >= loss_fgsm,
            "{norm} ε = {epsilon}: PGD loss {loss_pgd} < FGSM loss {loss_fgsm}"
        );
        let accuracy_fgsm = accuracy(model, &from_fgsm, y);
        let accuracy_pgd = accuracy(model, &from_pgd, y);
        assert!(
            accuracy_pgd <= accuracy_fgsm,
            "{norm} ε = {epsilon}: PGD accuracy {accuracy_pgd} > FGSM accuracy {accuracy_fgsm}"
        );
    }
}

// Robust accuracy equals clean accuracy at ε = 0 and does not increase with ε.
#[test]
fn robust_accuracy_is_monotone_in_epsilon() {
    let digits = digits();
    let (model, x, y) = (&digits.model, &digits.test_inputs, &digits.test_labels);
    let clean = accuracy(model, x, y);
    for name in ["fgsm", "pgd"] {
        let entry = find_attack(name).unwrap();
        for (norm, grid) in [
            ("linf", [0.0f32, 0.02, 0.05, 0.1, 0.2, 0.3]),
            ("l2", [0.0f32, 0.25, 0.5, 1.0, 2.0, 3.0]),
        ] {
            let mut previous = clean;
            for epsilon in grid {
                let attack = build(entry, &format!("norm = \"{norm}\""), epsilon);
                let robust = accuracy(model, &perturb(attack.as_ref(), model, x, y, 3), y);
                if epsilon == 0.0 {
                    assert_eq!(robust, clean, "{name} {norm}: ε = 0 changed the accuracy");
                }
                assert!(
                    robust <= previous,
                    "{name} {norm}: accuracy rose from {previous} to {robust} at ε = {epsilon}"
                );
                previous = robust;
            }
            assert!(
                previous < clean,
                "{name} {norm}: the largest budget did nothing"
            );
        }
    }
}

// ε = 1 under L∞ covers the whole box: any image is reachable, so a working gradient attack
// drives accuracy to chance (1/10) or below (ART's SecurityCurve gradient check).
#[test]
fn full_budget_pgd_reaches_chance() {
    let digits = digits();
    let (model, x, y) = (&digits.model, &digits.test_inputs, &digits.test_labels);
    let pgd = find_attack("pgd").unwrap();
    let attack = build(pgd, "steps = 20", 1.0);
    let robust = accuracy(model, &perturb(attack.as_ref(), model, x, y, 4), y);
    let chance = 1.0 / model.num_classes() as f64;
    assert!(
        robust <= chance,
        "full-budget PGD accuracy {robust} > chance {chance}"
    );
}

// Restarts keep, per sample, the first successful run or else the highest loss. The first
// restart draws the same numbers as a single run with the same seed, so per sample the
// restarted result is a success or has a loss at least as high; and a sample the single run
// already broke comes back bit for bit.
#[test]
fn restarts_only_improve_on_the_first_run() {
    let digits = digits();
    let (model, x, y) = (&digits.model, &digits.test_inputs, &digits.test_labels);
    let pgd = find_attack("pgd").unwrap();
    for loss in ["cross_entropy", "cw_margin"] {
        let params = format!("loss = \"{loss}\"\nsteps = 3");
        let single = perturb(build(pgd, &params, 0.05).as_ref(), model, x, y, 8);
        let restarted = perturb(
            build(pgd, &format!("{params}\nrestarts = 4"), 0.05).as_ref(),
            model,
            x,
            y,
            8,
        );
        let loss_kind = if loss == "cw_margin" {
            Loss::CwMargin
        } else {
            Loss::CrossEntropy
        };
        let single_loss = losses(model, &single, y, loss_kind);
        let restarted_loss = losses(model, &restarted, y, loss_kind);
        let single_correct = correct(model, &single, y);
        let restarted_correct = correct(model, &restarted, y);
        let dim = x.elem_count() / x.dim(0).unwrap();
        let (single_bits, restarted_bits) = (bits(&single), bits(&restarted));
        let mut improved = 0;
        for i in 0..y.dim(0).unwrap() {
            let sample = i * dim..(i + 1) * dim;
            if !single_correct[i] {
                assert_eq!(
                    single_bits[sample.clone()],
                    restarted_bits[sample],
                    "{loss}: sample {i} was already broken"
                );
            } else if restarted_correct[i] {
                assert!(
                    restarted_loss[i] >= single_loss[i],
                    "{loss}: sample {i} lost loss"
                );
                improved += usize::from(restarted_loss[i] > single_loss[i]);
            } else {
                improved += 1;
            }
        }
        assert!(
            improved > 0,
            "{loss}: restarts never helped; the test does not exercise them"
        );
        assert!(accuracy(model, &restarted, y) <= accuracy(model, &single, y));
    }
}

// Targeted PGD reaches its target for most samples. The targets are the ones the attack
// draws first from the generator, which `Objective::attack_labels` reproduces with the same
// seed.
#[test]
fn targeted_pgd_hits_its_targets() {
    let digits = digits();
    let (model, x, y) = (&digits.model, &digits.test_inputs, &digits.test_labels);
    let pgd = find_attack("pgd").unwrap();
    for (target, selection) in [
        ("random", TargetSelection::Random),
        ("least_likely", TargetSelection::LeastLikely),
    ] {
        let attack = build(
            pgd,
            &format!("targeted = true\ntarget = \"{target}\"\nsteps = 20"),
            0.3,
        );
        let adversarial = perturb(attack.as_ref(), model, x, y, 9);
        let objective = Objective::new(Loss::CrossEntropy, true, Some(selection)).unwrap();
        let batch = check_batch(model, x, y).unwrap();
        let targets: Vec<u32> = objective
            .attack_labels(model, x, &batch, &crate::support::randomness(x, 9))
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(
            targets.iter().zip(&batch.labels_host).all(|(t, y)| t != y),
            "{target}: a target equals the true label"
        );
        let predicted: Vec<u32> = model.predict(&adversarial).unwrap().to_vec1().unwrap();
        let hits = predicted
            .iter()
            .zip(&targets)
            .filter(|(p, t)| p == t)
            .count();
        let rate = hits as f64 / targets.len() as f64;
        assert!(
            rate >= 0.5,
            "{target}: targeted PGD hit only {rate} of its targets"
        );
    }
}
