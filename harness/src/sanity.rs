//! Self-checks of the measurement, reported beside the scores.
//!
//! Published robustness numbers are too often silently wrong: an ε-ball that was not
//! respected, gradients that never reached the input, an attack weaker than a single step.
//! Each check here is cheap and can fail; each becomes one pass/warn/fail line in the results.

use anyhow::{Context, Result};
use candle_core::DType;
use gauntlet_attacks::{find_attack, Norm};
use gauntlet_datasets::Dataset;
use gauntlet_models::Model;
use gauntlet_reports::{CheckStatus, SanityCheck, WorstCaseResult};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::load::Loaded;
use crate::metrics::{count_true, distinct, epsilon_value};
use crate::progress::Progress;
use crate::runner::{derive_seed, AttackOutcome, CleanOutcome};
use crate::suite::Suite;

/// Relative and absolute slack of the ε-ball check: the budget in f32 arithmetic.
const BUDGET_RELATIVE_TOLERANCE: f32 = 1e-5;
const BUDGET_ABSOLUTE_TOLERANCE: f32 = 1e-6;

/// Progress steps the checks add to a run.
pub fn extra_steps(suite: &Suite) -> u64 {
    let labels = distinct_labels(suite).len() as u64;
    labels + u64::from(suite.sanity.full_budget)
}

fn distinct_labels(suite: &Suite) -> Vec<&str> {
    distinct(suite.attacks.iter().map(|a| a.label.as_str()))
}

fn check(name: &str, status: CheckStatus, detail: String) -> SanityCheck {
    SanityCheck {
        name: name.to_string(),
        status,
        detail,
    }
}

/// Every check, in the order the report lists them.
pub fn run_checks(
    suite: &Suite,
    loaded: &Loaded,
    clean: &CleanOutcome,
    outcomes: &[AttackOutcome],
    worst_case: &[WorstCaseResult],
    progress: &Progress,
) -> Result<Vec<SanityCheck>> {
    let mut checks = vec![class_coverage(loaded)];
    checks.extend(epsilon_zero_is_identity(suite, loaded, clean, progress)?);
    checks.extend(monotone_in_epsilon(outcomes, clean));
    checks.push(within_budget(outcomes));
    checks.push(worst_case_not_above_any_attack(outcomes, worst_case));
    if let Some(check) = pgd_not_weaker_than_fgsm(outcomes) {
        checks.push(check);
    }
    if suite.sanity.full_budget {
        checks.push(full_budget(suite, loaded, progress)?);
    }
    Ok(checks)
}

/// A `limit` that keeps only the first samples of a class-sorted dataset (an image folder)
/// silently measures a few classes only.
fn class_coverage(loaded: &Loaded) -> SanityCheck {
    let (evaluated, total) = (loaded.classes_evaluated, loaded.classes_in_dataset);
    if evaluated == total {
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

/// At ε = 0 every attack must return its input unchanged, so robust accuracy equals clean
/// accuracy. Run on the first batch of each attack configuration.
fn epsilon_zero_is_identity(
    suite: &Suite,
    loaded: &Loaded,
    clean: &CleanOutcome,
    progress: &Progress,
) -> Result<Vec<SanityCheck>> {
    let dataset: &dyn Dataset = loaded.dataset.as_ref();
    let first = 0..suite.batch_size.min(dataset.len());
    let batch = dataset.batch(first.clone(), &loaded.device)?;
    let mut checks = Vec::new();
    for label in distinct_labels(suite) {
        let Some(planned) = suite.attacks.iter().find(|a| a.label == label) else {
            continue;
        };
        let entry = find_attack(&planned.name)
            .with_context(|| format!("attack `{}` vanished from the registry", planned.name))?;
        let attack = (entry.build)(&planned.params, 0.0)?;
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(suite.seed, label, 0));
        let adversarial = attack.perturb(&loaded.model, &batch.inputs, &batch.labels, &mut rng)?;
        let max_change = (&adversarial - &batch.inputs)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        let predictions = loaded
            .model
            .predict(&adversarial)?
            .to_dtype(DType::U32)?
            .to_vec1::<u32>()?;
        let same_predictions = predictions == clean.predictions[first.clone()];
        let name = format!("epsilon_zero_is_identity[{label}]");
        checks.push(if max_change == 0.0 && same_predictions {
            check(
                &name,
                CheckStatus::Pass,
                format!(
                    "at ε = 0, `{label}` returned its {} inputs unchanged; robust accuracy equals clean accuracy",
                    first.len()
                ),
            )
        } else {
            check(
                &name,
                CheckStatus::Fail,
                format!(
                    "at ε = 0, `{label}` changed its inputs by up to {max_change:e}{}",
                    if same_predictions { "" } else { " and changed predictions" }
                ),
            )
        });
        progress.advance(1);
    }
    Ok(checks)
}

/// Robust accuracy must not grow with ε: a larger ball contains the smaller one.
fn monotone_in_epsilon(outcomes: &[AttackOutcome], clean: &CleanOutcome) -> Vec<SanityCheck> {
    let clean_correct = count_true(&clean.correct);
    distinct(outcomes.iter().map(|o| o.label.as_str()))
        .into_iter()
        .map(|label| {
            // A single-step attack is not monotone in ε even in theory (a longer step can
            // overshoot), so a rise is a warning there and a failure for iterative attacks.
            let single_step = outcomes.iter().any(|o| o.label == label && o.name == "fgsm");
            let mut series: Vec<(f32, usize)> = outcomes
                .iter()
                .filter(|o| o.label == label)
                .map(|o| (o.epsilon, count_true(&o.robust)))
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

/// Every adversarial input lies in the ε-ball, in [0, 1], and is a number.
fn within_budget(outcomes: &[AttackOutcome]) -> SanityCheck {
    let mut problems = Vec::new();
    for outcome in outcomes {
        let budget =
            outcome.epsilon * (1.0 + BUDGET_RELATIVE_TOLERANCE) + BUDGET_ABSOLUTE_TOLERANCE;
        let largest = outcome.norms.iter().copied().fold(0.0f32, f32::max);
        let name = format!("{}@{}", outcome.label, outcome.epsilon);
        if largest > budget {
            problems.push(format!("{name}: max {} norm {largest} > ε", outcome.norm));
        }
        if outcome.has_nan {
            problems.push(format!("{name}: NaN in adversarial inputs"));
        }
        if outcome.min_value < 0.0 || outcome.max_value > 1.0 {
            problems.push(format!(
                "{name}: pixel values in [{}, {}], outside [0, 1]",
                outcome.min_value, outcome.max_value
            ));
        }
    }
    if problems.is_empty() {
        check(
            "perturbation_within_budget",
            CheckStatus::Pass,
            format!(
                "all {} attack runs kept every input inside its ε-ball and [0, 1], with no NaN",
                outcomes.len()
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
    outcomes: &[AttackOutcome],
    worst_case: &[WorstCaseResult],
) -> SanityCheck {
    let mut problems = Vec::new();
    for worst in worst_case {
        for outcome in outcomes.iter().filter(|o| {
            o.norm.to_string() == worst.norm && epsilon_value(o.epsilon) == worst.epsilon
        }) {
            let robust = count_true(&outcome.robust);
            if worst.robust_accuracy.successes > robust {
                problems.push(format!(
                    "{} ε = {}: worst case {} > `{}` {}",
                    worst.norm,
                    worst.epsilon,
                    worst.robust_accuracy.successes,
                    outcome.label,
                    robust
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

/// PGD starts where FGSM stops and takes more steps: at equal ε it is expected to be at least
/// as strong. Not guaranteed per point, so a violation is a warning.
fn pgd_not_weaker_than_fgsm(outcomes: &[AttackOutcome]) -> Option<SanityCheck> {
    let mut compared = 0;
    let mut problems = Vec::new();
    for pgd in outcomes.iter().filter(|o| o.name == "pgd") {
        for fgsm in outcomes.iter().filter(|o| {
            o.name == "fgsm"
                && o.norm == pgd.norm
                && o.epsilon == pgd.epsilon
                && o.objective == pgd.objective
        }) {
            compared += 1;
            let pgd_robust = count_true(&pgd.robust);
            let fgsm_robust = count_true(&fgsm.robust);
            if pgd_robust > fgsm_robust {
                problems.push(format!(
                    "{} ε = {}: `{}` leaves {pgd_robust} correct, `{}` only {fgsm_robust}",
                    pgd.norm, pgd.epsilon, pgd.label, fgsm.label
                ));
            }
        }
    }
    if compared == 0 {
        return None;
    }
    Some(if problems.is_empty() {
        check(
            "pgd_not_weaker_than_fgsm",
            CheckStatus::Pass,
            format!("PGD is at least as strong as FGSM at all {compared} shared budgets"),
        )
    } else {
        check(
            "pgd_not_weaker_than_fgsm",
            CheckStatus::Warn,
            format!(
                "PGD weaker than FGSM ({}); try more steps, restarts or a smaller step size",
                problems.join("; ")
            ),
        )
    })
}

/// With ε covering the whole input range an attack can draw any image, so a working gradient
/// attack must bring accuracy down to chance or below. If it cannot, gradients are broken or
/// masked and every robust accuracy above is an overestimate.
fn full_budget(suite: &Suite, loaded: &Loaded, progress: &Progress) -> Result<SanityCheck> {
    let dataset: &dyn Dataset = loaded.dataset.as_ref();
    let samples = suite.sanity.full_budget_samples.min(dataset.len());
    let entry = find_attack("pgd").context("the registry has no `pgd`")?;
    let mut params = toml::Table::new();
    params.insert(
        "steps".into(),
        toml::Value::Integer(i64::from(suite.sanity.full_budget_steps)),
    );
    params.insert("random_start".into(), toml::Value::Boolean(true));
    let attack = (entry.build)(&params, 1.0)?;
    debug_assert_eq!(attack.threat().norm, Norm::Linf);
    let classes = loaded.model.num_classes();
    let mut correct = 0usize;
    for (index, range) in crate::runner::batch_ranges(samples, suite.batch_size)
        .into_iter()
        .enumerate()
    {
        let batch = dataset.batch(range, &loaded.device)?;
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(suite.seed, "full_budget", index));
        let adversarial = attack.perturb(&loaded.model, &batch.inputs, &batch.labels, &mut rng)?;
        let accuracy = gauntlet_models::accuracy(
            &loaded.model,
            &adversarial,
            &batch.labels,
            suite.batch_size,
        )?;
        correct += (accuracy * batch.labels.dim(0)? as f64).round() as usize;
    }
    progress.advance(1);
    let accuracy = correct as f64 / samples.max(1) as f64;
    let chance = 1.0 / classes as f64;
    let detail = format!(
        "PGD-{} at L∞ ε = 1 (the whole input range) on {samples} samples: accuracy {:.1}% (chance {:.1}%)",
        suite.sanity.full_budget_steps,
        accuracy * 100.0,
        chance * 100.0
    );
    Ok(if accuracy <= chance {
        check("full_budget_attack", CheckStatus::Pass, detail)
    } else {
        check(
            "full_budget_attack",
            CheckStatus::Fail,
            format!("{detail}; possible gradient masking: robust accuracies above are upper bounds at best"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(label: &str, name: &str, epsilon: f32, robust: Vec<bool>) -> AttackOutcome {
        let n = robust.len();
        AttackOutcome {
            label: label.into(),
            name: name.into(),
            objective: "untargeted cross_entropy".into(),
            norm: Norm::Linf,
            epsilon,
            robust,
            predictions: vec![0; n],
            losses: vec![0.0; n],
            norms: vec![epsilon; n],
            max_linf: epsilon,
            min_value: 0.0,
            max_value: 1.0,
            has_nan: false,
            seconds: 0.0,
        }
    }

    fn clean(correct: Vec<bool>) -> CleanOutcome {
        let n = correct.len();
        CleanOutcome {
            labels: vec![0; n],
            predictions: vec![0; n],
            correct,
            losses: vec![0.0; n],
        }
    }

    #[test]
    fn a_rise_in_robust_accuracy_with_epsilon_fails() {
        let outcomes = vec![
            outcome("pgd", "pgd", 0.1, vec![true, false, false]),
            outcome("pgd", "pgd", 0.2, vec![true, true, false]),
        ];
        let checks = monotone_in_epsilon(&outcomes, &clean(vec![true, true, true]));
        assert_eq!(checks[0].status, CheckStatus::Fail);
    }

    #[test]
    fn a_rise_for_single_step_fgsm_is_only_a_warning() {
        let outcomes = vec![
            outcome("fgsm", "fgsm", 0.1, vec![true, false, false]),
            outcome("fgsm", "fgsm", 0.2, vec![true, true, false]),
        ];
        let checks = monotone_in_epsilon(&outcomes, &clean(vec![true, true, true]));
        assert_eq!(checks[0].status, CheckStatus::Warn);
    }

    #[test]
    fn attacks_with_different_objectives_are_not_compared() {
        let fgsm = outcome("fgsm", "fgsm", 0.1, vec![false, false]);
        let mut targeted = outcome("pgd_targeted", "pgd", 0.1, vec![true, true]);
        targeted.objective = "targeted cw_margin".into();
        assert!(pgd_not_weaker_than_fgsm(&[fgsm, targeted]).is_none());
    }

    #[test]
    fn a_falling_series_passes() {
        let outcomes = vec![
            outcome("pgd", "pgd", 0.1, vec![true, true, false]),
            outcome("pgd", "pgd", 0.2, vec![true, false, false]),
        ];
        let checks = monotone_in_epsilon(&outcomes, &clean(vec![true, true, true]));
        assert_eq!(checks[0].status, CheckStatus::Pass);
    }

    #[test]
    fn a_perturbation_past_epsilon_fails_the_budget_check() {
        let mut over = outcome("fgsm", "fgsm", 0.1, vec![true]);
        over.norms = vec![0.1001];
        assert_eq!(within_budget(&[over]).status, CheckStatus::Fail);
        let mut nan = outcome("fgsm", "fgsm", 0.1, vec![true]);
        nan.has_nan = true;
        assert_eq!(within_budget(&[nan]).status, CheckStatus::Fail);
        let exact = outcome("fgsm", "fgsm", 0.1, vec![true]);
        assert_eq!(within_budget(&[exact]).status, CheckStatus::Pass);
    }

    #[test]
    fn pgd_weaker_than_fgsm_is_only_a_warning() {
        let outcomes = vec![
            outcome("fgsm", "fgsm", 0.1, vec![false, false]),
            outcome("pgd", "pgd", 0.1, vec![true, false]),
        ];
        let check = pgd_not_weaker_than_fgsm(&outcomes).unwrap();
        assert_eq!(check.status, CheckStatus::Warn);
    }
}
