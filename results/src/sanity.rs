//! Self-checks of the measurement, computed from the records like every other figure.
//!
//! Published robustness numbers are too often silently wrong: an ε-ball that was not
//! respected, gradients that never reached the input, an attack weaker than a single step.
//! Each check here is cheap and can fail; each becomes one pass/warn/fail line in the results.
//! Checks recognise attacks by what their registry entries declare ([`AttackKind`],
//! [`BudgetSemantics`]), never by name. The checks that need attack runs on the model (ε = 0 is
//! the identity, an unbounded attack reaches chance) read the records of probe runs the runner
//! planned for them; those that need the model itself (two forward passes agree, input
//! gradients do not vanish) read the runner's measurements on the first clean batch
//! ([`RunMeasurements::repeat_forward`], [`RunMeasurements::clean_gradients`]).

use gauntlet_attacks::{AttackKind, BudgetSemantics, ModelAccess};
use gauntlet_reports::{CheckStatus, SanityCheck, WorstCaseResult};

use crate::aggregate::{Aligned, AttackRunView};
use crate::metrics::{count_true, distinct, epsilon_value};
use crate::plan::{CleanGradients, RepeatForward, RunMeasurements, RunPurpose};

/// Relative and absolute slack of the ε-ball check: the budget in f32 arithmetic.
const BUDGET_RELATIVE_TOLERANCE: f32 = 1e-5;
const BUDGET_ABSOLUTE_TOLERANCE: f32 = 1e-6;

/// Largest L2 distance between a sample's unit-normalised logits from two forward passes that
/// still counts as the same output: AutoAttack's threshold for its randomised-defence flag
/// (`checks.check_randomized`, `alpha = 1e-4`). Far above the last-bit differences of a
/// different summation order (~1e-7), far below what input noise or random resizing causes.
pub const REPEAT_FORWARD_TOLERANCE: f32 = 1e-4;

/// An input gradient whose L1 norm is at or below this counts as vanished. AutoAttack flags
/// exactly zero gradients (`checks.check_zero_gradients`); this also catches gradients that are
/// only rounding residue (a saturated softmax in f32 leaves ~1e-38 per class, a step
/// activation leaves exact zeros), while a working model's cross-entropy gradients at the
/// clean input are many orders larger (measured on the bundled model: docs/results.md).
pub const VANISHING_GRADIENT_L1: f32 = 1e-10;

/// The share of the probed, correctly classified samples with vanished gradients above which
/// the check warns: a few saturated samples are normal for a confident model, a noticeable
/// share means the white-box attacks could not move from the clean input there.
pub const MAX_VANISHING_GRADIENT_SHARE: f64 = 0.05;

/// A sample counts as broken late when an attack first broke it after this share of its
/// iterations (steps × restarts, in the order they run): the final fifth. For APGD's default
/// 100 steps that is steps 81–100, after the step size has been reviewed at five checkpoints
/// (22, 41, 57, 70, 80), so a converged run breaks next to nothing there.
pub const LATE_BREAK_FRACTION: f32 = 0.8;

/// The share of the evaluated samples broken late above which the `attack_converged` check
/// warns: the final fifth of the iterations still lowered robust accuracy by more than one
/// percentage point, so the accuracy-against-iterations curve has not flattened and more steps
/// or restarts would likely lower it further. A judgement: a point of robust accuracy is a
/// difference that reorders published defences, while a converged attack breaks next to
/// nothing in its final fifth (docs/results.md has the measurement on the bundled model).
pub const MAX_LATE_BREAK_SHARE: f64 = 0.01;

fn check(name: &str, status: CheckStatus, detail: String) -> SanityCheck {
    SanityCheck {
        name: name.to_string(),
        status,
        detail,
    }
}

/// Every check, in the order the report lists them.
pub fn run_checks(
    aligned: &Aligned,
    measurements: &RunMeasurements,
    worst_case: &[WorstCaseResult],
) -> Vec<SanityCheck> {
    let attacks: Vec<AttackRunView> = aligned.attack_runs().collect();
    let mut checks = vec![class_coverage(aligned)];
    checks.extend(epsilon_zero_is_identity(aligned));
    checks.extend(monotone_in_epsilon(aligned, &attacks));
    checks.push(within_budget(&attacks));
    checks.push(worst_case_not_above_any_attack(&attacks, worst_case));
    if let Some(check) = iterative_not_weaker_than_single_step(&attacks) {
        checks.push(check);
    }
    checks.extend(full_budget(aligned));
    if let Some(check) = black_box_not_stronger_than_white_box(&attacks) {
        checks.push(check);
    }
    if let Some(check) = attack_converged(aligned, &attacks) {
        checks.push(check);
    }
    if let Some(probe) = &measurements.repeat_forward {
        checks.push(deterministic_outputs(aligned, probe));
    }
    if let Some(probe) = &measurements.clean_gradients {
        checks.push(input_gradients_not_vanishing(aligned, probe));
    }
    checks
}

/// The position in `aligned` of each probed sample (`start + k`), `None` for one the clean
/// run did not evaluate (a probe from another shard's records cannot match any).
fn probed_positions(aligned: &Aligned, start: u64, count: usize) -> Vec<Option<usize>> {
    (0..count as u64)
        .map(|k| aligned.indices.binary_search(&(start + k)).ok())
        .collect()
}

/// A model must give the same logits twice for the same input. A randomised defence does not:
/// every attack step then follows the gradient of one random draw, which masks the gradient
/// of the expected model, and the robust accuracies are overestimates until the model is
/// attacked with expectation over transformation (EOT, Athalye et al. 2018). AutoAttack's
/// `check_randomized`, on the first clean batch: its logits from the clean pass against a
/// second forward pass. A warning, with how many samples differ and by how much.
fn deterministic_outputs(aligned: &Aligned, probe: &RepeatForward) -> SanityCheck {
    const NAME: &str = "deterministic_model_outputs";
    let positions = probed_positions(aligned, probe.start, probe.logit_distance.len());
    let mut samples = 0usize;
    let mut differing = 0usize;
    let mut predictions_changed = 0usize;
    let mut largest = 0.0f32;
    for ((position, &distance), &prediction) in positions
        .iter()
        .zip(&probe.logit_distance)
        .zip(&probe.prediction)
    {
        let Some(position) = *position else { continue };
        samples += 1;
        let changed = prediction != aligned.clean[position].prediction;
        predictions_changed += usize::from(changed);
        // NaN (a non-finite logit in one pass only) is a difference too.
        let differs = changed || distance.is_nan() || distance > REPEAT_FORWARD_TOLERANCE;
        differing += usize::from(differs);
        largest = if distance.is_nan() || largest.is_nan() {
            f32::NAN
        } else {
            largest.max(distance)
        };
    }
    if samples == 0 {
        return check(
            NAME,
            CheckStatus::Fail,
            "the second forward pass covers none of the evaluated samples".to_string(),
        );
    }
    if differing == 0 {
        check(
            NAME,
            CheckStatus::Pass,
            format!(
                "a second forward pass on the first {samples} clean samples gave the same outputs \
                 (largest distance of the normalised logits {largest:.1e} ≤ {REPEAT_FORWARD_TOLERANCE:e})"
            ),
        )
    } else {
        check(
            NAME,
            CheckStatus::Warn,
            format!(
                "possible gradient masking (randomised model): a second forward pass on the first \
                 {samples} clean samples changed the outputs of {differing} \
                 (normalised logits moved by up to {largest:.3e} > {REPEAT_FORWARD_TOLERANCE:e}{}); \
                 attacks that follow one random draw per step overestimate the robustness of a \
                 randomised model, which needs expectation over transformation (EOT)",
                if predictions_changed > 0 {
                    format!(", {predictions_changed} prediction(s) changed")
                } else {
                    String::new()
                }
            ),
        )
    }
}

/// At a correctly classified clean input the cross-entropy has a gradient, and the white-box
/// attacks start by following it. Where it is zero (a step or sign activation, a quantising
/// input layer, a wrapper that cuts autograd) or only rounding residue (a softmax saturated in
/// f32), gradient attacks cannot move and the sample looks robust: vanishing gradients, one of
/// the forms of gradient masking (Athalye et al. 2018). Measured on the first clean batch;
/// a warning when more than [`MAX_VANISHING_GRADIENT_SHARE`] of its correct samples have
/// ‖∇ₓ loss‖₁ ≤ [`VANISHING_GRADIENT_L1`].
fn input_gradients_not_vanishing(aligned: &Aligned, probe: &CleanGradients) -> SanityCheck {
    const NAME: &str = "input_gradients_not_vanishing";
    let positions = probed_positions(aligned, probe.start, probe.l1.len());
    let mut correct = 0usize;
    let mut vanished = 0usize;
    let mut smallest = f32::INFINITY;
    for (position, &l1) in positions.iter().zip(&probe.l1) {
        let Some(position) = *position else { continue };
        if !aligned.clean[position].correct() {
            continue;
        }
        correct += 1;
        // A NaN gradient is broken, not vanished; the attacks' own checks see it.
        if l1 <= VANISHING_GRADIENT_L1 {
            vanished += 1;
        }
        if !l1.is_nan() {
            smallest = smallest.min(l1);
        }
    }
    if correct == 0 {
        return check(
            NAME,
            CheckStatus::Warn,
            "none of the probed clean samples is classified correctly, so there is no gradient \
             at a correct input to check"
                .to_string(),
        );
    }
    let share = vanished as f64 / correct as f64;
    let detail = format!(
        "{vanished} of the {correct} correctly classified samples of the first clean batch have \
         a cross-entropy input gradient with ‖∇ₓ loss‖₁ ≤ {VANISHING_GRADIENT_L1:e} \
         (smallest {smallest:.1e})"
    );
    if share > MAX_VANISHING_GRADIENT_SHARE {
        check(
            NAME,
            CheckStatus::Warn,
            format!(
                "possible gradient masking (vanishing gradients): {detail}, more than {:.0}%; \
                 gradient attacks cannot move from those inputs, so robust accuracy is an \
                 overestimate there; try a black-box attack (square) or a margin loss (DLR)",
                MAX_VANISHING_GRADIENT_SHARE * 100.0
            ),
        )
    } else {
        check(NAME, CheckStatus::Pass, detail)
    }
}

/// A black-box attack (logits or labels only) should never break a sample that every
/// white-box iterative attack at the same norm and ε left correct: gradients are strictly more
/// information. When it does, the gradients the white-box attacks followed are likely masked
/// (obfuscated, shattered or vanishing), and the white-box robust accuracies are
/// overestimates. A warning, with the count, per shared budget (AutoAttack's flag).
fn black_box_not_stronger_than_white_box(attacks: &[AttackRunView]) -> Option<SanityCheck> {
    let mut compared = 0;
    let mut problems = Vec::new();
    for black in attacks
        .iter()
        .filter(|r| r.attack.needs != ModelAccess::InputGradients)
    {
        let white: Vec<&AttackRunView> = attacks
            .iter()
            .filter(|r| {
                r.attack.needs == ModelAccess::InputGradients
                    && r.attack.kind == AttackKind::Iterative
                    && r.attack.norm == black.attack.norm
                    && r.attack.epsilon == black.attack.epsilon
            })
            .collect();
        if white.is_empty() {
            continue;
        }
        compared += 1;
        let black_robust = black.robust();
        let white_robust: Vec<Vec<bool>> = white.iter().map(|r| r.robust()).collect();
        let only_black = (0..black_robust.len())
            .filter(|&k| {
                !black_robust[k]
                    && black.outcomes[k].is_some()
                    && white_robust
                        .iter()
                        .all(|w| w.get(k).copied().unwrap_or(false))
            })
            .count();
        if only_black > 0 {
            let names: Vec<&str> = white.iter().map(|r| r.label).collect();
            problems.push(format!(
                "{} ε = {}: `{}` broke {only_black} sample(s) that {} left correct",
                black.attack.norm,
                black.attack.epsilon,
                black.label,
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if compared == 0 {
        return None;
    }
    Some(if problems.is_empty() {
        check(
            "black_box_not_stronger_than_white_box",
            CheckStatus::Pass,
            format!(
                "no black-box attack broke a sample the white-box attacks left correct, at all {compared} shared budgets"
            ),
        )
    } else {
        check(
            "black_box_not_stronger_than_white_box",
            CheckStatus::Warn,
            format!(
                "possible gradient masking: {}; the white-box robust accuracies may be overestimates",
                problems.join("; ")
            ),
        )
    })
}

/// An iterative attack whose last iterations still break samples has not converged: more steps
/// or restarts would likely break more, so its robust accuracy is an overestimate. Read from
/// the per-sample `broken_at` that APGD and APGD-T record (the share of their iterations done
/// when each sample was first broken). For each attack run at each ε that records it: the
/// samples correct on the clean input that the attack first broke after
/// [`LATE_BREAK_FRACTION`] of its iterations; a warning when they are more than
/// [`MAX_LATE_BREAK_SHARE`] of the evaluated samples. No check when no run records `broken_at`.
fn attack_converged(aligned: &Aligned, attacks: &[AttackRunView]) -> Option<SanityCheck> {
    const NAME: &str = "attack_converged";
    let clean_correct = aligned.clean_correct();
    let mut compared = 0usize;
    let mut problems = Vec::new();
    for run in attacks {
        if !run.covered().any(|o| o.broken_at.is_some()) {
            continue;
        }
        compared += 1;
        let evaluated = run.covered().count();
        let late = run
            .outcomes
            .iter()
            .zip(&clean_correct)
            .filter(|(outcome, &correct)| {
                correct
                    && outcome.is_some_and(|o| {
                        !o.robust && o.broken_at.is_some_and(|at| at > LATE_BREAK_FRACTION)
                    })
            })
            .count();
        if late as f64 > MAX_LATE_BREAK_SHARE * evaluated as f64 {
            problems.push(format!(
                "`{}` at {} ε = {} broke {late} of {evaluated} samples ({:.1}%) only in the last {:.0}% of its iterations",
                run.label,
                run.attack.norm,
                run.attack.epsilon,
                100.0 * late as f64 / evaluated.max(1) as f64,
                100.0 * (1.0 - f64::from(LATE_BREAK_FRACTION)),
            ));
        }
    }
    if compared == 0 {
        return None;
    }
    let limit = format!("{:.0}%", MAX_LATE_BREAK_SHARE * 100.0);
    let last = format!("{:.0}%", 100.0 * (1.0 - f64::from(LATE_BREAK_FRACTION)));
    Some(if problems.is_empty() {
        check(
            NAME,
            CheckStatus::Pass,
            format!(
                "in all {compared} runs that record when samples were broken, at most {limit} of the samples were first broken in the last {last} of the iterations"
            ),
        )
    } else {
        check(
            NAME,
            CheckStatus::Warn,
            format!(
                "attack may not have converged: {}; more than {limit} broken in the last {last} means more steps or restarts would likely lower robust accuracy further",
                problems.join("; ")
            ),
        )
    })
}

/// A `limit` that keeps only the first samples of a class-sorted dataset (an image folder)
/// silently measures a few classes only.
fn class_coverage(aligned: &Aligned) -> SanityCheck {
    let mut seen: Vec<u32> = aligned.labels();
    seen.sort_unstable();
    seen.dedup();
    let (evaluated, total) = (seen.len(), aligned.plan.classes_in_dataset);
    if evaluated >= total {
        check(
            "class_coverage",
            CheckStatus::Pass,
            format!("the evaluated samples cover all {total} classes of the dataset"),
        )
    } else {
        check(
            "class_coverage",
            CheckStatus::Warn,
            format!(
                "the evaluated samples cover {evaluated} of the dataset's {total} classes; \
                 `limit` keeps the first samples, so raise it or shuffle the data"
            ),
        )
    }
}

/// At ε = 0 every attack must return its input unchanged, so its predictions equal the clean
/// ones. Read from the zero-budget probe of each attack configuration.
fn epsilon_zero_is_identity(aligned: &Aligned) -> Vec<SanityCheck> {
    aligned
        .runs_with(RunPurpose::ZeroBudgetProbe)
        .map(|run| {
            let label = run.label;
            let mut covered = 0usize;
            let mut max_change = 0.0f32;
            let mut same_predictions = true;
            for (k, outcome) in run.outcomes.iter().enumerate() {
                let Some(outcome) = outcome else { continue };
                covered += 1;
                // NaN is a change too.
                max_change = if outcome.linf.is_nan() || outcome.nan {
                    f32::NAN
                } else {
                    max_change.max(outcome.linf)
                };
                same_predictions &= outcome.prediction == aligned.clean[k].prediction;
            }
            let name = format!("epsilon_zero_is_identity[{label}]");
            if max_change == 0.0 && same_predictions && covered > 0 {
                check(
                    &name,
                    CheckStatus::Pass,
                    format!(
                        "at ε = 0, `{label}` returned its {covered} inputs unchanged; robust accuracy equals clean accuracy"
                    ),
                )
            } else if covered == 0 {
                check(
                    &name,
                    CheckStatus::Fail,
                    format!("the ε = 0 probe of `{label}` has no records"),
                )
            } else {
                check(
                    &name,
                    CheckStatus::Fail,
                    format!(
                        "at ε = 0, `{label}` changed its inputs by up to {max_change:e}{}",
                        if same_predictions {
                            ""
                        } else {
                            " and changed predictions"
                        }
                    ),
                )
            }
        })
        .collect()
}

/// Robust accuracy must not grow with ε: a larger ball contains the smaller one.
fn monotone_in_epsilon(aligned: &Aligned, attacks: &[AttackRunView]) -> Vec<SanityCheck> {
    let clean_correct = count_true(&aligned.clean_correct());
    distinct(attacks.iter().map(|r| r.label))
        .into_iter()
        .map(|label| {
            // A single-step attack is not monotone in ε even in theory (a longer step can
            // overshoot), so a rise is a warning there and a failure for the others.
            let single_step = attacks
                .iter()
                .any(|r| r.label == label && r.attack.kind == AttackKind::SingleStep);
            let mut series: Vec<(f32, usize)> = attacks
                .iter()
                .filter(|r| r.label == label)
                .map(|r| (r.attack.epsilon, r.robust_count()))
                .collect();
            series.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut previous = (0.0f32, clean_correct);
            let mut violations = Vec::new();
            for &(epsilon, correct) in &series {
                if correct > previous.1 {
                    violations.push(format!(
                        "{} correct at ε = {epsilon} > {} at ε = {}",
                        correct, previous.1, previous.0
                    ));
                }
                previous = (epsilon, correct);
            }
            let name = format!("monotone_in_epsilon[{label}]");
            if violations.is_empty() {
                check(
                    &name,
                    CheckStatus::Pass,
                    format!(
                        "robust accuracy of `{label}` never rises with ε over {} budgets",
                        series.len()
                    ),
                )
            } else {
                check(
                    &name,
                    if single_step {
                        CheckStatus::Warn
                    } else {
                        CheckStatus::Fail
                    },
                    format!(
                        "robust accuracy of `{label}` rises with ε ({}); the attack is not finding the worst case",
                        violations.join("; ")
                    ),
                )
            }
        })
        .collect()
}

/// Every adversarial input of a bounded attack lies in the ε-ball, in [0, 1], and is a number.
fn within_budget(attacks: &[AttackRunView]) -> SanityCheck {
    let mut problems = Vec::new();
    let bounded: Vec<&AttackRunView> = attacks
        .iter()
        .filter(|r| r.attack.budget == BudgetSemantics::Bounded)
        .collect();
    for run in &bounded {
        let epsilon = run.attack.epsilon;
        let budget = epsilon * (1.0 + BUDGET_RELATIVE_TOLERANCE) + BUDGET_ABSOLUTE_TOLERANCE;
        let name = format!("{}@{}", run.label, epsilon);
        // NaN norms count as over budget.
        let over: Vec<f32> = run
            .covered()
            .map(|o| o.norm)
            .filter(|n| n.is_nan() || *n > budget)
            .collect();
        if let Some(largest) = over
            .iter()
            .copied()
            .reduce(|a, b| if b > a || b.is_nan() { b } else { a })
        {
            problems.push(format!(
                "{name}: max {} norm {largest} > ε",
                run.attack.norm
            ));
        }
        if run.covered().any(|o| o.nan) {
            problems.push(format!("{name}: NaN in adversarial inputs"));
        }
        let min = run
            .covered()
            .map(|o| o.min_value)
            .fold(f32::INFINITY, f32::min);
        let max = run
            .covered()
            .map(|o| o.max_value)
            .fold(f32::NEG_INFINITY, f32::max);
        if min < 0.0 || max > 1.0 {
            problems.push(format!(
                "{name}: pixel values in [{min}, {max}], outside [0, 1]"
            ));
        }
    }
    if problems.is_empty() {
        check(
            "perturbation_within_budget",
            CheckStatus::Pass,
            format!(
                "all {} attack runs kept every input inside its ε-ball and [0, 1], with no NaN",
                bounded.len()
            ),
        )
    } else {
        check(
            "perturbation_within_budget",
            CheckStatus::Fail,
            problems.join("; "),
        )
    }
}

/// The pointwise worst case can never be above any single attack at the same (norm, ε).
fn worst_case_not_above_any_attack(
    attacks: &[AttackRunView],
    worst_case: &[WorstCaseResult],
) -> SanityCheck {
    let mut problems = Vec::new();
    for worst in worst_case {
        for run in attacks.iter().filter(|r| {
            r.attack.norm.to_string() == worst.norm
                && epsilon_value(r.attack.epsilon) == worst.epsilon
        }) {
            let robust = run.robust_count();
            if worst.robust_accuracy.successes > robust {
                problems.push(format!(
                    "{} ε = {}: worst case {} > `{}` {}",
                    worst.norm, worst.epsilon, worst.robust_accuracy.successes, run.label, robust
                ));
            }
        }
    }
    if problems.is_empty() {
        check(
            "worst_case_not_above_any_attack",
            CheckStatus::Pass,
            format!(
                "at each of {} (norm, ε) points the worst case is at or below every attack",
                worst_case.len()
            ),
        )
    } else {
        check(
            "worst_case_not_above_any_attack",
            CheckStatus::Fail,
            problems.join("; "),
        )
    }
}

/// An iterative attack starts where a single step stops and takes more steps: at equal norm,
/// ε and objective it is expected to be at least as strong. Not guaranteed per point, so a
/// violation is a warning.
fn iterative_not_weaker_than_single_step(attacks: &[AttackRunView]) -> Option<SanityCheck> {
    let mut compared = 0;
    let mut problems = Vec::new();
    for iterative in attacks
        .iter()
        .filter(|r| r.attack.kind == AttackKind::Iterative)
    {
        for single in attacks.iter().filter(|r| {
            r.attack.kind == AttackKind::SingleStep
                && r.attack.norm == iterative.attack.norm
                && r.attack.epsilon == iterative.attack.epsilon
                && r.attack.objective == iterative.attack.objective
        }) {
            compared += 1;
            let iterative_robust = iterative.robust_count();
            let single_robust = single.robust_count();
            if iterative_robust > single_robust {
                problems.push(format!(
                    "{} ε = {}: `{}` leaves {iterative_robust} correct, `{}` only {single_robust}",
                    iterative.attack.norm, iterative.attack.epsilon, iterative.label, single.label
                ));
            }
        }
    }
    if compared == 0 {
        return None;
    }
    Some(if problems.is_empty() {
        check(
            "iterative_not_weaker_than_single_step",
            CheckStatus::Pass,
            format!(
                "every iterative attack is at least as strong as the single-step attack with its objective at all {compared} shared budgets"
            ),
        )
    } else {
        check(
            "iterative_not_weaker_than_single_step",
            CheckStatus::Warn,
            format!(
                "an iterative attack is weaker than a single step ({}); try more steps, restarts or a smaller step size",
                problems.join("; ")
            ),
        )
    })
}

/// With ε covering the whole input range an attack can draw any image, so a working gradient
/// attack must bring accuracy down to chance or below. If it cannot, gradients are broken or
/// masked and every robust accuracy above is an overestimate.
fn full_budget(aligned: &Aligned) -> Vec<SanityCheck> {
    let classes = aligned.plan.model.num_classes.max(1);
    aligned
        .runs_with(RunPurpose::FullBudgetProbe)
        .map(|run| {
            let mut samples = 0usize;
            let mut correct = 0usize;
            for (k, outcome) in run.outcomes.iter().enumerate() {
                if let Some(outcome) = outcome {
                    samples += 1;
                    correct += usize::from(outcome.prediction == aligned.clean[k].label);
                }
            }
            let accuracy = correct as f64 / samples.max(1) as f64;
            let chance = 1.0 / classes as f64;
            let detail = format!(
                "{} ({}) at {} ε = {} (the whole input range) on {samples} samples: accuracy {:.1}% (chance {:.1}%)",
                run.attack.name,
                describe_params(&run.attack.params),
                run.attack.norm,
                run.attack.epsilon,
                accuracy * 100.0,
                chance * 100.0
            );
            if accuracy <= chance && samples > 0 {
                check("full_budget_attack", CheckStatus::Pass, detail)
            } else {
                check(
                    "full_budget_attack",
                    CheckStatus::Fail,
                    format!("{detail}; possible gradient masking: robust accuracies above are upper bounds at best"),
                )
            }
        })
        .collect()
}

/// `steps = 20, random_start = true`.
fn describe_params(params: &serde_json::Map<String, serde_json::Value>) -> String {
    params
        .iter()
        .map(|(key, value)| format!("{key} = {value}"))
        .collect::<Vec<_>>()
        .join(", ")
}
