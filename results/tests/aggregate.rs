//! The aggregation as a pure function of (plan, records), tested without a model: every figure
//! below is counted by hand from the records.

use gauntlet_attacks::{AttackKind, BudgetSemantics, ModelAccess, Norm};
use gauntlet_reports::{CheckStatus, DatasetInfo, KernelPathInfo, ModelInfo, SuiteInfo};
use gauntlet_results::{
    aggregate, samples_file, AggregateError, AttackRun, CleanGradients, CleanOutcome,
    EvasionOutcome, Gate, Outcome, PlannedRun, RepeatForward, RunId, RunMeasurements, RunPlan,
    RunPurpose, SampleRecord, PLAN_VERSION,
};

fn attack(name: &str, kind: AttackKind, norm: Norm, epsilon: f32) -> AttackRun {
    AttackRun {
        name: name.to_string(),
        kind,
        needs: ModelAccess::InputGradients,
        budget: BudgetSemantics::Bounded,
        norm,
        epsilon,
        objective: "untargeted cross_entropy".to_string(),
        params: serde_json::Map::new(),
    }
}

fn run(label: &str, purpose: RunPurpose, attack: AttackRun) -> PlannedRun {
    PlannedRun {
        label: label.to_string(),
        purpose,
        attack: Some(attack),
        backdoor: None,
        detector: None,
    }
}

fn plan(runs: Vec<PlannedRun>, gates: Vec<Gate>) -> RunPlan {
    let class_names: Vec<String> = ["zero", "one", "two"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    RunPlan {
        plan_version: PLAN_VERSION,
        gauntlet_version: "test".to_string(),
        suite: SuiteInfo {
            name: "unit".to_string(),
            path: None,
        },
        seed: 0,
        device: "cpu".to_string(),
        model: ModelInfo {
            name: "m".to_string(),
            architecture: "linear".to_string(),
            path: "m.safetensors".to_string(),
            sha256: "0".repeat(64),
            format: "safetensors".to_string(),
            input_shape: vec![2],
            num_classes: 3,
            parameters: 9,
        },
        dataset: DatasetInfo {
            name: "d".to_string(),
            path: "d".to_string(),
            format: "npy".to_string(),
            samples: 4,
            class_names: class_names.clone(),
        },
        class_names,
        classes_in_dataset: 3,
        runs: std::iter::once(PlannedRun::clean()).chain(runs).collect(),
        gates,
        fail_on_sanity: true,
        kernel_path: KernelPathInfo {
            path: "native".to_string(),
            reason: None,
        },
        provenance: None,
    }
}

/// Labels [0, 1, 2, 0]; the clean pass gets samples 0–2 right and sample 3 wrong.
fn clean_records() -> Vec<SampleRecord> {
    [(0, 0), (1, 1), (2, 2), (0, 1)]
        .iter()
        .enumerate()
        .map(|(index, &(label, prediction))| SampleRecord {
            run: RunId(0),
            index: index as u64,
            outcome: Outcome::Clean(CleanOutcome {
                label,
                prediction,
                loss: 0.5,
            }),
        })
        .collect()
}

fn evasion(run: u32, epsilon: f32, robust: &[bool]) -> Vec<SampleRecord> {
    let labels = [0u32, 1, 2, 0];
    robust
        .iter()
        .enumerate()
        .map(|(index, &robust)| SampleRecord {
            run: RunId(run),
            index: index as u64,
            outcome: Outcome::Evasion(EvasionOutcome {
                prediction: if robust {
                    labels[index]
                } else {
                    (labels[index] + 1) % 3
                },
                robust,
                loss: 1.0 + index as f32,
                norm: epsilon,
                linf: epsilon,
                min_value: 0.0,
                max_value: 1.0,
                nan: false,
                queries: None,
                broken_at: None,
                broken_by: None,
            }),
        })
        .collect()
}

fn two_attack_plan() -> RunPlan {
    plan(
        vec![
            run(
                "step",
                RunPurpose::Attack,
                attack("one_step", AttackKind::SingleStep, Norm::Linf, 0.1),
            ),
            run(
                "iter",
                RunPurpose::Attack,
                attack("many_steps", AttackKind::Iterative, Norm::Linf, 0.1),
            ),
        ],
        vec![
            Gate::CleanAccuracy { threshold: 0.7 },
            Gate::RobustAccuracy {
                label: "iter".to_string(),
                epsilon: 0.1,
                threshold: 0.5,
            },
            Gate::WorstCaseAccuracy {
                norm: Norm::Linf,
                epsilon: 0.1,
                threshold: 0.25,
            },
        ],
    )
}

fn two_attack_records() -> Vec<SampleRecord> {
    let mut records = clean_records();
    records.extend(evasion(1, 0.1, &[true, true, false, false]));
    records.extend(evasion(2, 0.1, &[true, false, true, false]));
    records
}

#[test]
fn accuracies_worst_case_and_gates_are_counted_from_the_records() {
    let plan = two_attack_plan();
    let report = aggregate(&plan, &RunMeasurements::default(), &two_attack_records()).unwrap();
    assert_eq!(
        (report.clean.accuracy.successes, report.clean.accuracy.total),
        (3, 4)
    );
    let step = &report.attacks[0];
    assert_eq!(step.robust_accuracy.successes, 2);
    // Of the 3 clean-correct samples, the single step broke sample 2: 1 of 3.
    assert_eq!(
        (step.success_rate.successes, step.success_rate.total),
        (1, 3)
    );
    assert_eq!(step.kind.as_deref(), Some("single_step"));
    assert!((step.mean_loss - 2.5).abs() < 1e-12);
    // Pointwise: only sample 0 survives both attacks.
    assert_eq!(report.worst_case.len(), 1);
    assert_eq!(report.worst_case[0].robust_accuracy.successes, 1);
    assert_eq!(report.worst_case[0].attacks, vec!["step", "iter"]);
    // Per class: class 0 has samples 0 and 3, only 0 robust under `iter`.
    let iter_class_0 = &report.attacks[1].per_class[0];
    assert_eq!(
        (iter_class_0.accuracy.successes, iter_class_0.accuracy.total),
        (1, 2)
    );
    let verdicts: Vec<(String, bool)> = report
        .gates
        .iter()
        .map(|g| (g.gate.clone(), g.passed))
        .collect();
    assert_eq!(
        verdicts,
        vec![
            ("min_clean_accuracy".to_string(), true),
            ("min_robust_accuracy[iter@0.1]".to_string(), true),
            ("min_worst_case_accuracy[linf@0.1]".to_string(), true),
        ]
    );
}

#[test]
fn record_order_does_not_matter() {
    let plan = two_attack_plan();
    let mut shuffled = two_attack_records();
    shuffled.reverse();
    shuffled.swap(1, 5);
    assert_eq!(
        aggregate(&plan, &RunMeasurements::default(), &shuffled).unwrap(),
        aggregate(&plan, &RunMeasurements::default(), &two_attack_records()).unwrap()
    );
}

fn check_status(report: &gauntlet_reports::RunReport, name: &str) -> CheckStatus {
    report
        .sanity_checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name} in {:?}", report.sanity_checks))
        .status
}

#[test]
fn the_sanity_checks_go_by_declared_kind_not_by_name() {
    // The iterative attack is weaker than the single step here, and rises with ε.
    let plan = plan(
        vec![
            run(
                "a",
                RunPurpose::Attack,
                attack("one_step", AttackKind::SingleStep, Norm::Linf, 0.1),
            ),
            run(
                "b",
                RunPurpose::Attack,
                attack("many_steps", AttackKind::Iterative, Norm::Linf, 0.1),
            ),
            run(
                "b",
                RunPurpose::Attack,
                attack("many_steps", AttackKind::Iterative, Norm::Linf, 0.2),
            ),
        ],
        Vec::new(),
    );
    let mut records = clean_records();
    records.extend(evasion(1, 0.1, &[false, false, false, false]));
    records.extend(evasion(2, 0.1, &[true, false, false, false]));
    records.extend(evasion(3, 0.2, &[true, true, false, false]));
    let report = aggregate(&plan, &RunMeasurements::default(), &records).unwrap();
    assert_eq!(
        check_status(&report, "monotone_in_epsilon[b]"),
        CheckStatus::Fail
    );
    assert_eq!(
        check_status(&report, "monotone_in_epsilon[a]"),
        CheckStatus::Pass
    );
    assert_eq!(
        check_status(&report, "iterative_not_weaker_than_single_step"),
        CheckStatus::Warn
    );

    // The same rise for a single-step attack is only a warning: a longer step can overshoot.
    let plan = self::plan(
        vec![
            run(
                "a",
                RunPurpose::Attack,
                attack("one_step", AttackKind::SingleStep, Norm::Linf, 0.1),
            ),
            run(
                "a",
                RunPurpose::Attack,
                attack("one_step", AttackKind::SingleStep, Norm::Linf, 0.2),
            ),
        ],
        Vec::new(),
    );
    let mut records = clean_records();
    records.extend(evasion(1, 0.1, &[true, false, false, false]));
    records.extend(evasion(2, 0.2, &[true, true, false, false]));
    let report = aggregate(&plan, &RunMeasurements::default(), &records).unwrap();
    assert_eq!(
        check_status(&report, "monotone_in_epsilon[a]"),
        CheckStatus::Warn
    );
}

#[test]
fn a_perturbation_past_epsilon_or_a_nan_fails_the_budget_check() {
    let plan = plan(
        vec![run(
            "a",
            RunPurpose::Attack,
            attack("x", AttackKind::Iterative, Norm::L2, 0.5),
        )],
        Vec::new(),
    );
    for spoil in [
        (|o: &mut EvasionOutcome| o.norm = 0.5001) as fn(&mut EvasionOutcome),
        |o| o.nan = true,
        |o| o.norm = f32::NAN,
        |o| o.max_value = 1.01,
    ] {
        let mut records = clean_records();
        let mut attacked = evasion(1, 0.5, &[true, true, false, false]);
        if let Outcome::Evasion(outcome) = &mut attacked[2].outcome {
            spoil(outcome);
        }
        records.extend(attacked);
        let report = aggregate(&plan, &RunMeasurements::default(), &records).unwrap();
        assert_eq!(
            check_status(&report, "perturbation_within_budget"),
            CheckStatus::Fail
        );
    }
    let mut records = clean_records();
    records.extend(evasion(1, 0.5, &[true, true, false, false]));
    let report = aggregate(&plan, &RunMeasurements::default(), &records).unwrap();
    assert_eq!(
        check_status(&report, "perturbation_within_budget"),
        CheckStatus::Pass
    );
}

#[test]
fn probes_feed_the_identity_and_full_budget_checks() {
    let plan = plan(
        vec![
            run(
                "a",
                RunPurpose::ZeroBudgetProbe,
                attack("x", AttackKind::Iterative, Norm::Linf, 0.0),
            ),
            run(
                "full_budget",
                RunPurpose::FullBudgetProbe,
                attack("x", AttackKind::Iterative, Norm::Linf, 1.0),
            ),
        ],
        Vec::new(),
    );
    // ε = 0 returned the inputs (clean predictions) on the first two samples; the full-budget
    // attack left 1 of 4 correct: 25% ≤ chance (33%).
    let zero: Vec<SampleRecord> = clean_records()[..2]
        .iter()
        .map(|r| SampleRecord {
            run: RunId(1),
            index: r.index,
            outcome: Outcome::Evasion(EvasionOutcome {
                prediction: r.outcome.prediction(),
                robust: true,
                loss: 0.5,
                norm: 0.0,
                linf: 0.0,
                min_value: 0.0,
                max_value: 1.0,
                nan: false,
                queries: None,
                broken_at: None,
                broken_by: None,
            }),
        })
        .collect();
    let mut records = clean_records();
    records.extend(zero.clone());
    records.extend(evasion(2, 1.0, &[true, false, false, false]));
    let report = aggregate(&plan, &RunMeasurements::default(), &records).unwrap();
    assert_eq!(
        check_status(&report, "epsilon_zero_is_identity[a]"),
        CheckStatus::Pass
    );
    assert_eq!(
        check_status(&report, "full_budget_attack"),
        CheckStatus::Pass
    );
    assert!(
        report.attacks.is_empty(),
        "probes are not reported as attacks"
    );

    // An attack that moves its input at ε = 0, and a full budget that leaves 2 of 4 correct.
    let mut records = clean_records();
    let mut moved = zero;
    if let Outcome::Evasion(outcome) = &mut moved[1].outcome {
        outcome.linf = 1e-3;
    }
    records.extend(moved);
    records.extend(evasion(2, 1.0, &[true, true, false, false]));
    let report = aggregate(&plan, &RunMeasurements::default(), &records).unwrap();
    assert_eq!(
        check_status(&report, "epsilon_zero_is_identity[a]"),
        CheckStatus::Fail
    );
    assert_eq!(
        check_status(&report, "full_budget_attack"),
        CheckStatus::Fail
    );
}

#[test]
fn records_that_do_not_fit_the_plan_are_errors() {
    let plan = two_attack_plan();
    let mut missing = two_attack_records();
    missing.pop();
    assert!(matches!(
        aggregate(&plan, &RunMeasurements::default(), &missing),
        Err(AggregateError::MissingSamples {
            missing: 1,
            first: 3,
            ..
        })
    ));
    let mut duplicate = two_attack_records();
    duplicate.push(duplicate[5]);
    assert!(matches!(
        aggregate(&plan, &RunMeasurements::default(), &duplicate),
        Err(AggregateError::DuplicateRecord { index: 1, .. })
    ));
    let mut unknown = two_attack_records();
    unknown[4].run = RunId(9);
    assert!(matches!(
        aggregate(&plan, &RunMeasurements::default(), &unknown),
        Err(AggregateError::UnknownRun { run: 9, .. })
    ));
    let mut wrong_kind = two_attack_records();
    wrong_kind[0].run = RunId(1);
    assert!(matches!(
        aggregate(&plan, &RunMeasurements::default(), &wrong_kind),
        Err(AggregateError::WrongKind { .. })
    ));
}

#[test]
fn the_per_sample_file_round_trips_and_rebuilds_the_same_results() {
    let plan = two_attack_plan();
    let measurements = RunMeasurements {
        load_seconds: 0.25,
        total_seconds: 2.0,
        run_seconds: vec![0.1, 0.2, 0.3],
        examples: Vec::new(),
        notices: vec!["a notice".to_string()],
        ..RunMeasurements::default()
    };
    let records = two_attack_records();
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join(samples_file::FILE_NAME);
    samples_file::write(&path, &plan, &measurements, &records).unwrap();
    assert!(samples_file::is_samples_file(&path).unwrap());
    let (read_plan, read_measurements, read_records) = samples_file::read(&path).unwrap();
    assert_eq!(read_plan, plan);
    assert_eq!(read_measurements, measurements);
    assert_eq!(read_records, records);
    assert_eq!(
        aggregate(&read_plan, &read_measurements, &read_records).unwrap(),
        aggregate(&plan, &measurements, &records).unwrap()
    );
}

#[test]
fn files_that_are_not_per_sample_files_are_refused_with_their_name() {
    let folder = tempfile::tempdir().unwrap();
    let json = folder.path().join("results.json");
    std::fs::write(&json, b"{\"schema_version\": 2}").unwrap();
    assert!(!samples_file::is_samples_file(&json).unwrap());
    let truncated = folder.path().join("cut.parquet");
    std::fs::write(&truncated, b"PAR1 and then nothing").unwrap();
    let error = samples_file::read(&truncated).unwrap_err().to_string();
    assert!(error.contains("cut.parquet"), "{error}");
    #[cfg(unix)]
    {
        let error = samples_file::read(std::path::Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a regular file"), "{error}");
        // A FIFO with no writer must not block.
        let fifo = folder.path().join("samples.fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let error = samples_file::is_samples_file(&fifo)
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a regular file"), "{error}");
    }
}

// A black-box attack breaking a sample that every white-box iterative attack at the same norm
// and ε left correct is the sign of masked gradients: a warning naming the count. Without a
// black-box run there is nothing to compare and no check.
#[test]
fn a_black_box_attack_stronger_than_white_box_warns_of_gradient_masking() {
    let black_box = |epsilon| AttackRun {
        needs: ModelAccess::Logits,
        ..attack("square", AttackKind::Iterative, Norm::Linf, epsilon)
    };
    let plan = plan(
        vec![
            run(
                "white",
                RunPurpose::Attack,
                attack("apgd", AttackKind::Iterative, Norm::Linf, 0.1),
            ),
            run("black", RunPurpose::Attack, black_box(0.1)),
        ],
        Vec::new(),
    );
    let mut records = clean_records();
    // White box leaves samples 0 and 1 correct; the black box breaks sample 1.
    records.extend(evasion(1, 0.1, &[true, true, false, false]));
    records.extend(evasion(2, 0.1, &[true, false, false, false]));
    let report = aggregate(&plan, &RunMeasurements::default(), &records).unwrap();
    assert_eq!(
        check_status(&report, "black_box_not_stronger_than_white_box"),
        CheckStatus::Warn
    );
    let detail = &report
        .sanity_checks
        .iter()
        .find(|c| c.name == "black_box_not_stronger_than_white_box")
        .unwrap()
        .detail;
    assert!(detail.contains("broke 1 sample"), "{detail}");

    // The black box breaking only what the white box broke too: a pass.
    let mut records = clean_records();
    records.extend(evasion(1, 0.1, &[true, false, false, false]));
    records.extend(evasion(2, 0.1, &[true, false, false, false]));
    let report = aggregate(&plan, &RunMeasurements::default(), &records).unwrap();
    assert_eq!(
        check_status(&report, "black_box_not_stronger_than_white_box"),
        CheckStatus::Pass
    );

    // No black-box run: no check.
    let plan = self::plan(
        vec![run(
            "white",
            RunPurpose::Attack,
            attack("apgd", AttackKind::Iterative, Norm::Linf, 0.1),
        )],
        Vec::new(),
    );
    let mut records = clean_records();
    records.extend(evasion(1, 0.1, &[true, true, false, false]));
    let report = aggregate(&plan, &RunMeasurements::default(), &records).unwrap();
    assert!(report
        .sanity_checks
        .iter()
        .all(|c| c.name != "black_box_not_stronger_than_white_box"));
}

fn minimal_norm_attack(epsilon: f32) -> AttackRun {
    AttackRun {
        budget: BudgetSemantics::MinimalNorm,
        objective: "untargeted cw_margin".to_string(),
        ..attack("deepfool", AttackKind::MinimalNorm, Norm::L2, epsilon)
    }
}

/// 40 samples with labels `i % 3`; every 7th is misclassified when clean. The minimal-norm
/// search breaks sample `i` with a perturbation of norm `found[i]` (or not at all); the bounded
/// attack `pgd` at L2 ε = 0.3 breaks every 4th sample.
fn minimal_norm_case() -> MinimalNormCase {
    const SAMPLES: usize = 40;
    let epsilons = [0.1f32, 0.3, 0.5];
    let mut runs: Vec<PlannedRun> = epsilons
        .iter()
        .map(|&e| run("df", RunPurpose::Attack, minimal_norm_attack(e)))
        .collect();
    runs.push(run(
        "pgd",
        RunPurpose::Attack,
        attack("pgd", AttackKind::Iterative, Norm::L2, 0.3),
    ));
    runs.push(run(
        "df",
        RunPurpose::MinimalNormSearch,
        minimal_norm_attack(f32::INFINITY),
    ));
    let plan = plan(runs, Vec::new());
    let labels: Vec<u32> = (0..SAMPLES as u32).map(|i| i % 3).collect();
    let correct: Vec<bool> = (0..SAMPLES).map(|i| i % 7 != 3).collect();
    // A deterministic spread of sizes in (0, 0.7), and a few samples never broken.
    let found: Vec<Option<f32>> = (0..SAMPLES)
        .map(|i| (i % 5 != 2).then(|| ((i * 37) % 70) as f32 / 100.0 + 0.005))
        .collect();
    let mut records = Vec::new();
    for i in 0..SAMPLES {
        let wrong = (labels[i] + 1) % 3;
        records.push(SampleRecord {
            run: RunId(0),
            index: i as u64,
            outcome: Outcome::Clean(CleanOutcome {
                label: labels[i],
                prediction: if correct[i] { labels[i] } else { wrong },
                loss: 0.25,
            }),
        });
        let evasion = |prediction: u32, norm: f32| EvasionOutcome {
            prediction,
            robust: prediction == labels[i] && correct[i],
            loss: 2.0,
            norm,
            linf: norm / 2.0,
            min_value: 0.0,
            max_value: 1.0,
            nan: false,
            queries: None,
            broken_at: None,
            broken_by: None,
        };
        // The search: a misclassified sample is returned as is (norm 0).
        let search = match (correct[i], found[i]) {
            (false, _) => evasion(wrong, 0.0),
            (true, Some(norm)) => evasion(wrong, norm),
            (true, None) => evasion(labels[i], 0.0),
        };
        records.push(SampleRecord {
            run: RunId(5),
            index: i as u64,
            outcome: Outcome::Evasion(search),
        });
        let pgd = if correct[i] && i % 4 != 0 {
            evasion(labels[i], 0.3)
        } else {
            evasion(wrong, 0.3)
        };
        records.push(SampleRecord {
            run: RunId(4),
            index: i as u64,
            outcome: Outcome::Evasion(pgd),
        });
    }
    let pgd_robust = (0..SAMPLES).map(|i| correct[i] && i % 4 != 0).collect();
    (plan, records, found, correct, pgd_robust)
}

type MinimalNormCase = (
    RunPlan,
    Vec<SampleRecord>,
    Vec<Option<f32>>,
    Vec<bool>,
    Vec<bool>,
);

/// Robust at ε exactly when correct and the minimal norm is > ε or none was found: the
/// derived runs count that, the worst case includes them, and the quantiles are numpy's.
#[test]
fn minimal_norm_runs_are_derived_from_the_one_unbounded_run() {
    let (plan, records, found, correct, pgd_robust) = minimal_norm_case();
    let report = aggregate(&plan, &RunMeasurements::default(), &records).unwrap();
    let robust_at = |epsilon: f32| -> Vec<bool> {
        correct
            .iter()
            .zip(&found)
            .map(|(&c, f)| c && f.is_none_or(|n| n > epsilon))
            .collect()
    };
    let derived: Vec<_> = report.attacks.iter().filter(|a| a.label == "df").collect();
    assert_eq!(derived.len(), 3);
    for (result, epsilon) in derived.iter().zip([0.1f32, 0.3, 0.5]) {
        let expected = robust_at(epsilon).iter().filter(|&&r| r).count();
        assert_eq!(result.robust_accuracy.successes, expected, "ε = {epsilon}");
        assert_eq!(result.robust_accuracy.total, 40);
        assert_eq!(result.kind.as_deref(), Some("minimal_norm"));
    }
    // Not monotone by accident: the counts differ between the ε's.
    assert!(derived[0].robust_accuracy.successes > derived[2].robust_accuracy.successes);
    // The worst case at L2 ε = 0.3 takes both attacks, sample by sample.
    let worst = report
        .worst_case
        .iter()
        .find(|w| w.norm == "l2" && (w.epsilon - 0.3).abs() < 1e-9)
        .unwrap();
    assert_eq!(worst.attacks, vec!["df".to_string(), "pgd".to_string()]);
    let both = robust_at(0.3)
        .iter()
        .zip(&pgd_robust)
        .filter(|(a, b)| **a && **b)
        .count();
    assert_eq!(worst.robust_accuracy.successes, both);
    assert!(both < derived[1].robust_accuracy.successes);
    // Quantiles over the broken, originally correct samples.
    let mut sizes: Vec<f64> = correct
        .iter()
        .zip(&found)
        .filter_map(|(&c, f)| if c { f.map(f64::from) } else { None })
        .collect();
    sizes.sort_by(f64::total_cmp);
    let [summary] = report.minimal_norm.as_slice() else {
        panic!(
            "one minimal-norm result expected, got {:?}",
            report.minimal_norm
        )
    };
    assert_eq!(summary.label, "df");
    assert_eq!(summary.norm, "l2");
    assert_eq!(summary.success_rate.successes, sizes.len());
    assert_eq!(
        summary.success_rate.total,
        correct.iter().filter(|&&c| c).count()
    );
    let numpy = |q: f64| {
        let position = q * (sizes.len() - 1) as f64;
        let (below, above) = (position.floor() as usize, position.ceil() as usize);
        sizes[below] + (sizes[above] - sizes[below]) * (position - below as f64)
    };
    assert_eq!(summary.quantiles.len(), 5);
    for quantile in &summary.quantiles {
        assert!(
            (quantile.value - numpy(quantile.q)).abs() < 1e-9,
            "{quantile:?}"
        );
    }
    assert!((summary.median.unwrap() - numpy(0.5)).abs() < 1e-9);
    // The same figures after a round trip through the per-sample file.
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join(samples_file::FILE_NAME);
    samples_file::write(&path, &plan, &RunMeasurements::default(), &records).unwrap();
    let (read_plan, read_measurements, read_records) = samples_file::read(&path).unwrap();
    assert_eq!(
        read_plan.runs[5].attack.as_ref().unwrap().epsilon,
        f32::INFINITY
    );
    let again = aggregate(&read_plan, &read_measurements, &read_records).unwrap();
    assert_eq!(again, report);
}

#[test]
fn minimal_norm_runs_without_their_search_are_an_error() {
    let (mut plan, records, ..) = minimal_norm_case();
    plan.runs.truncate(5);
    let records: Vec<SampleRecord> = records.into_iter().filter(|r| r.run.0 < 5).collect();
    let error = aggregate(&plan, &RunMeasurements::default(), &records).unwrap_err();
    assert!(
        matches!(error, AggregateError::NoMinimalNormSearch { ref run } if run == "df"),
        "{error}"
    );
}

fn check_detail(report: &gauntlet_reports::RunReport, name: &str) -> String {
    report
        .sanity_checks
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.detail.clone())
        .unwrap_or_else(|| panic!("no check `{name}`"))
}

// A second forward pass on the first clean batch: identical or within AutoAttack's 1e-4 is a
// pass; beyond it, or a changed prediction, a warning naming how many samples and how much.
// No probe in the measurements (files written before it, other shards): no check.
#[test]
fn a_second_forward_pass_that_differs_warns_of_a_randomised_model() {
    let plan = two_attack_plan();
    let records = two_attack_records();
    let measurements = |distance: Vec<f32>, prediction: Vec<u32>| RunMeasurements {
        repeat_forward: Some(RepeatForward {
            start: 0,
            logit_distance: distance,
            prediction,
        }),
        ..RunMeasurements::default()
    };
    const NAME: &str = "deterministic_model_outputs";
    // The clean predictions are [0, 1, 2, 1].
    let same = measurements(vec![0.0, 5e-5, 0.0, 1e-4], vec![0, 1, 2, 1]);
    let report = aggregate(&plan, &same, &records).unwrap();
    assert_eq!(check_status(&report, NAME), CheckStatus::Pass);
    assert!(check_detail(&report, NAME).contains("first 4 clean samples"));

    let moved = measurements(vec![0.0, 0.25, 0.0, 2e-4], vec![0, 1, 2, 1]);
    let report = aggregate(&plan, &moved, &records).unwrap();
    assert_eq!(check_status(&report, NAME), CheckStatus::Warn);
    let detail = check_detail(&report, NAME);
    assert!(
        detail.contains("changed the outputs of 2") && detail.contains("2.500e-1"),
        "{detail}"
    );
    assert!(!detail.contains("prediction(s) changed"), "{detail}");

    // A changed prediction counts even below the tolerance, and so does a NaN distance.
    let flipped = measurements(vec![0.0, 0.0, f32::NAN, 0.0], vec![2, 1, 2, 1]);
    let report = aggregate(&plan, &flipped, &records).unwrap();
    assert_eq!(check_status(&report, NAME), CheckStatus::Warn);
    let detail = check_detail(&report, NAME);
    assert!(
        detail.contains("changed the outputs of 2") && detail.contains("1 prediction(s) changed"),
        "{detail}"
    );

    let report = aggregate(&plan, &RunMeasurements::default(), &records).unwrap();
    assert!(report.sanity_checks.iter().all(|c| c.name != NAME));
}

// Vanished gradients count on correctly classified samples only; a share above 5% warns.
#[test]
fn vanishing_input_gradients_on_correct_samples_warn_of_gradient_masking() {
    let plan = two_attack_plan();
    let records = two_attack_records();
    let measurements = |l1: Vec<f32>| RunMeasurements {
        clean_gradients: Some(CleanGradients { start: 0, l1 }),
        ..RunMeasurements::default()
    };
    const NAME: &str = "input_gradients_not_vanishing";
    // Sample 3 is misclassified when clean: its zero gradient does not count.
    let report = aggregate(&plan, &measurements(vec![0.5, 2e-6, 1.0, 0.0]), &records).unwrap();
    assert_eq!(check_status(&report, NAME), CheckStatus::Pass);
    assert!(
        check_detail(&report, NAME).starts_with("0 of the 3 correctly classified samples"),
        "{}",
        check_detail(&report, NAME)
    );

    // One exact zero and one below the threshold among three correct samples.
    let report = aggregate(&plan, &measurements(vec![0.0, 1e-11, 1.0, 1.0]), &records).unwrap();
    assert_eq!(check_status(&report, NAME), CheckStatus::Warn);
    let detail = check_detail(&report, NAME);
    assert!(
        detail.starts_with("possible gradient masking (vanishing gradients): 2 of the 3"),
        "{detail}"
    );

    // A NaN gradient is broken, not vanished.
    let report = aggregate(
        &plan,
        &measurements(vec![f32::NAN, 1.0, 1.0, 1.0]),
        &records,
    )
    .unwrap();
    assert_eq!(check_status(&report, NAME), CheckStatus::Pass);
}

// The probes travel in the per-sample file, so `gauntlet report --samples` rebuilds the checks.
#[test]
fn the_model_probes_round_trip_through_the_samples_file() {
    let plan = two_attack_plan();
    let records = two_attack_records();
    let measurements = RunMeasurements {
        repeat_forward: Some(RepeatForward {
            start: 0,
            logit_distance: vec![0.0, 0.3, 0.0, 0.0],
            prediction: vec![0, 1, 2, 1],
        }),
        clean_gradients: Some(CleanGradients {
            start: 0,
            l1: vec![0.0, 0.0, 1.0, 1.0],
        }),
        ..RunMeasurements::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("samples.parquet");
    samples_file::write(&path, &plan, &measurements, &records).unwrap();
    let (read_plan, read_measurements, read_records) = samples_file::read(&path).unwrap();
    assert_eq!(read_measurements, measurements);
    assert_eq!(
        aggregate(&read_plan, &read_measurements, &read_records)
            .unwrap()
            .sanity_checks,
        aggregate(&plan, &measurements, &records)
            .unwrap()
            .sanity_checks
    );
}

/// An APGD run whose records say when each sample was broken (`broken_at`), on the four
/// samples of [`clean_records`] (0–2 correct, 3 wrong on the clean input).
fn apgd_with_breaks(broken_at: [Option<f32>; 4]) -> (RunPlan, Vec<SampleRecord>) {
    let plan = plan(
        vec![run(
            "apgd",
            RunPurpose::Attack,
            attack("apgd", AttackKind::Iterative, Norm::Linf, 0.1),
        )],
        Vec::new(),
    );
    let mut records = clean_records();
    let robust: Vec<bool> = (0..4).map(|i| i < 3 && broken_at[i].is_none()).collect();
    let mut attacked = evasion(1, 0.1, &robust);
    for (record, at) in attacked.iter_mut().zip(broken_at) {
        if let Outcome::Evasion(outcome) = &mut record.outcome {
            outcome.broken_at = at;
        }
    }
    records.extend(attacked);
    (plan, records)
}

// A sample correct on the clean input that the attack broke only in the last fifth of its
// iterations is evidence that more steps would break more: with 4 samples, one such sample
// is 25% > 1%, a warning naming the run and the count. Breaks earlier, or of a sample that was
// wrong already (the clean check counts as iteration 0, but a clean-wrong sample breaking
// "late" must not count either), pass; without any `broken_at` there is no check.
#[test]
fn samples_broken_in_the_last_iterations_warn_that_the_attack_may_not_have_converged() {
    let (plan, records) = apgd_with_breaks([None, Some(0.85), Some(0.2), Some(1.0)]);
    let report = aggregate(&plan, &RunMeasurements::default(), &records).unwrap();
    assert_eq!(check_status(&report, "attack_converged"), CheckStatus::Warn);
    let detail = check_detail(&report, "attack_converged");
    assert!(
        detail.contains("attack may not have converged")
            && detail.contains("`apgd` at linf ε = 0.1 broke 1 of 4 samples (25.0%)"),
        "{detail}"
    );

    // Exactly at the boundary (0.8) is not late; the clean-wrong sample 3 is not counted.
    let (plan, records) = apgd_with_breaks([Some(0.8), Some(0.0), None, Some(1.0)]);
    let report = aggregate(&plan, &RunMeasurements::default(), &records).unwrap();
    assert_eq!(check_status(&report, "attack_converged"), CheckStatus::Pass);

    // No run records when samples were broken: no check.
    let (plan, records) = apgd_with_breaks([None; 4]);
    let report = aggregate(&plan, &RunMeasurements::default(), &records).unwrap();
    assert!(report
        .sanity_checks
        .iter()
        .all(|c| c.name != "attack_converged"));
}

// The threshold is a share of the evaluated samples: 1 late break in 100 samples is exactly
// 1% (not more), a pass; 2 is a warning.
#[test]
fn the_convergence_threshold_is_one_percent_of_the_evaluated_samples() {
    for (late, expected) in [(1usize, CheckStatus::Pass), (2, CheckStatus::Warn)] {
        let plan = plan(
            vec![run(
                "apgd",
                RunPurpose::Attack,
                attack("apgd", AttackKind::Iterative, Norm::Linf, 0.1),
            )],
            Vec::new(),
        );
        let mut records = Vec::new();
        for i in 0..100u64 {
            records.push(SampleRecord {
                run: RunId(0),
                index: i,
                outcome: Outcome::Clean(CleanOutcome {
                    label: 0,
                    prediction: 0,
                    loss: 0.5,
                }),
            });
            // Every other sample broken early, the first `late` ones late.
            let broken_at = if (i as usize) < late {
                Some(0.95)
            } else if i % 2 == 0 {
                Some(0.3)
            } else {
                None
            };
            records.push(SampleRecord {
                run: RunId(1),
                index: i,
                outcome: Outcome::Evasion(EvasionOutcome {
                    prediction: if broken_at.is_some() { 1 } else { 0 },
                    robust: broken_at.is_none(),
                    loss: 1.0,
                    norm: 0.1,
                    linf: 0.1,
                    min_value: 0.0,
                    max_value: 1.0,
                    nan: false,
                    queries: None,
                    broken_at,
                    broken_by: None,
                }),
            });
        }
        let report = aggregate(&plan, &RunMeasurements::default(), &records).unwrap();
        assert_eq!(
            check_status(&report, "attack_converged"),
            expected,
            "{late} late"
        );
    }
}

// HopSkipJump is decision-based (labels only) and minimal-norm: its one unbounded search
// feeds its runs at each ε, and those are compared with the white-box iterative attacks at
// the same norm and ε. A sample it breaks within ε that APGD left correct warns of gradient
// masking; its query counts survive the per-sample file and the derivation.
#[test]
fn a_decision_based_minimal_norm_attack_feeds_the_black_box_check() {
    let hsj = |epsilon: f32| AttackRun {
        needs: ModelAccess::Labels,
        budget: BudgetSemantics::MinimalNorm,
        objective: "untargeted cw_margin".to_string(),
        ..attack("hop_skip_jump", AttackKind::MinimalNorm, Norm::L2, epsilon)
    };
    let plan = plan(
        vec![
            run(
                "apgd_l2",
                RunPurpose::Attack,
                attack("apgd", AttackKind::Iterative, Norm::L2, 0.5),
            ),
            run("hsj", RunPurpose::Attack, hsj(0.5)),
            run("hsj", RunPurpose::MinimalNormSearch, hsj(f32::INFINITY)),
        ],
        Vec::new(),
    );
    let search = |norms: [Option<f32>; 3]| -> Vec<SampleRecord> {
        let labels = [0u32, 1, 2];
        (0..4)
            .map(|i| {
                // Sample 3 is wrong on the clean input: returned as is after one query.
                let found = if i < 3 { norms[i] } else { Some(0.0) };
                SampleRecord {
                    run: RunId(3),
                    index: i as u64,
                    outcome: Outcome::Evasion(EvasionOutcome {
                        prediction: match (i, found) {
                            (3, _) => 1,
                            (_, Some(_)) => (labels[i] + 1) % 3,
                            (_, None) => labels[i],
                        },
                        robust: i < 3 && found.is_none(),
                        loss: 1.0,
                        norm: found.unwrap_or(0.0),
                        linf: found.unwrap_or(0.0) / 2.0,
                        min_value: 0.0,
                        max_value: 1.0,
                        nan: false,
                        queries: Some(if i == 3 { 1 } else { 900 + i as u32 }),
                        broken_at: None,
                        broken_by: None,
                    }),
                }
            })
            .collect()
    };
    // APGD leaves samples 0 and 1 correct; HopSkipJump breaks sample 1 at 0.4 ≤ 0.5 and
    // sample 0 only at 0.7 > 0.5.
    let mut records = clean_records();
    records.extend(evasion(1, 0.5, &[true, true, false, false]));
    records.extend(search([Some(0.7), Some(0.4), Some(0.1)]));
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join(samples_file::FILE_NAME);
    samples_file::write(&path, &plan, &RunMeasurements::default(), &records).unwrap();
    let (plan, measurements, read) = samples_file::read(&path).unwrap();
    assert_eq!(read, records);
    let queries: Vec<Option<u32>> = read
        .iter()
        .filter(|r| r.run == RunId(3))
        .map(|r| match r.outcome {
            Outcome::Evasion(e) => e.queries,
            _ => None,
        })
        .collect();
    assert_eq!(queries, vec![Some(900), Some(901), Some(902), Some(1)]);
    let report = aggregate(&plan, &measurements, &read).unwrap();
    assert_eq!(
        check_status(&report, "black_box_not_stronger_than_white_box"),
        CheckStatus::Warn
    );
    let detail = check_detail(&report, "black_box_not_stronger_than_white_box");
    assert!(
        detail.contains("`hsj` broke 1 sample(s)") && detail.contains("`apgd_l2`"),
        "{detail}"
    );

    // Breaking only what APGD broke, or beyond ε: a pass.
    let mut records = clean_records();
    records.extend(evasion(1, 0.5, &[true, true, false, false]));
    records.extend(search([Some(0.7), Some(0.6), Some(0.1)]));
    let report = aggregate(&plan, &RunMeasurements::default(), &records).unwrap();
    assert_eq!(
        check_status(&report, "black_box_not_stronger_than_white_box"),
        CheckStatus::Pass
    );
}

/// A detector run of the plan: `label` scoring the clean inputs, or the attack `pgd` at 0.1.
fn detector_run(label: &str, attacked: bool, rule_threshold: Option<f64>) -> PlannedRun {
    use gauntlet_results::detector::{DetectorRun, ScoredInputs};
    PlannedRun {
        label: label.to_string(),
        purpose: RunPurpose::Detector,
        attack: attacked.then(|| attack("pgd", AttackKind::Iterative, Norm::Linf, 0.1)),
        backdoor: None,
        detector: Some(DetectorRun {
            detector: "zscore".to_string(),
            needs: "inputs".to_string(),
            fit_samples: 10,
            fit_source: "test".to_string(),
            rule_threshold,
            params: serde_json::Map::new(),
            scored: if attacked {
                ScoredInputs::Attack {
                    attack_label: "pgd".to_string(),
                    adaptive: false,
                }
            } else {
                ScoredInputs::Clean
            },
        }),
    }
}

fn scores(run: u32, robust: &[bool], scores: &[f64], rule: Option<f64>) -> Vec<SampleRecord> {
    let labels = [0u32, 1, 2, 0];
    scores
        .iter()
        .zip(robust)
        .enumerate()
        .map(|(index, (&score, &robust))| SampleRecord {
            run: RunId(run),
            index: index as u64,
            outcome: Outcome::Detector(gauntlet_results::DetectorOutcome {
                label: labels[index],
                prediction: if robust { labels[index] } else { 9 },
                robust,
                score,
                rule_rejected: rule.map(|t| score > t),
            }),
        })
        .collect()
}

/// Clean: samples 0–2 right, 3 wrong. PGD breaks samples 0 and 1; sample 2 stays robust.
/// The detector scores the clean inputs 0.1 … 0.4 and the adversarial ones
/// (0.9, 0.35, 0.05, 0.5); a constant detector scores everything 1.
fn detector_plan_and_records() -> (RunPlan, Vec<SampleRecord>) {
    let plan = plan(
        vec![
            run(
                "pgd",
                RunPurpose::Attack,
                attack("pgd", AttackKind::Iterative, Norm::Linf, 0.1),
            ),
            detector_run("zscore", false, Some(0.45)),
            detector_run("zscore", true, Some(0.45)),
            detector_run("constant", false, None),
            detector_run("constant", true, None),
        ],
        Vec::new(),
    );
    let clean_correct = [true, true, true, false];
    let attacked_robust = [false, false, true, false];
    let mut records = clean_records();
    records.extend(evasion(1, 0.1, &attacked_robust));
    records.extend(scores(2, &clean_correct, &[0.1, 0.2, 0.3, 0.4], Some(0.45)));
    records.extend(scores(
        3,
        &attacked_robust,
        &[0.9, 0.35, 0.05, 0.5],
        Some(0.45),
    ));
    records.extend(scores(4, &clean_correct, &[1.0; 4], None));
    records.extend(scores(5, &attacked_robust, &[1.0; 4], None));
    (plan, records)
}

#[test]
fn detector_figures_are_counted_from_the_records() {
    let (plan, records) = detector_plan_and_records();
    let report = aggregate(&plan, &RunMeasurements::default(), &records).unwrap();
    assert_eq!(report.detectors.len(), 2);
    let zscore = &report.detectors[0];
    assert_eq!((zscore.label.as_str(), zscore.clean_samples), ("zscore", 4));
    assert_eq!(zscore.rule_threshold, Some(0.45));
    assert_eq!(zscore.rule_false_positive.unwrap().successes, 0);
    assert_eq!(zscore.rows.len(), 1);
    let row = &zscore.rows[0];
    assert_eq!(
        (row.attack.as_str(), row.epsilon, row.adaptive),
        ("pgd", 0.1, false)
    );
    // Successful: samples 0 and 1 (sample 3 was wrong when clean). 0.9 beats all four clean
    // scores, 0.35 three of them: U = 7 of 8 pairs.
    assert_eq!(row.successful, 2);
    assert_eq!(row.auc, Some(0.875));
    assert_eq!(row.robust_accuracy.successes, 1);
    // Four clean scores allow no false positive at 1% or 5%: the threshold is the largest.
    for point in &row.at_fpr {
        assert_eq!((point.threshold, point.false_positive_rate), (0.4, 0.0));
        let detection = point.detection.unwrap();
        assert_eq!((detection.successes, detection.total), (1, 2));
        // Defended: 0 (flagged), 2 (robust), 3 (flagged); sample 1 gets through.
        let defended = point.robust_with_guardrail;
        assert_eq!((defended.successes, defended.total), (3, 4));
    }
    let rule = row.rule_detection.unwrap();
    assert_eq!((rule.successes, rule.total), (1, 2));
    assert_eq!(
        row.roc,
        vec![
            [0.0, 0.0],
            [0.0, 0.5],
            [0.25, 0.5],
            [0.25, 1.0],
            [0.5, 1.0],
            [0.75, 1.0],
            [1.0, 1.0]
        ]
    );
    // A constant detector separates nothing: AUC exactly ½, nothing flagged, the guardrail
    // adds nothing to robust accuracy.
    let constant = &report.detectors[1];
    assert_eq!(constant.rows[0].auc, Some(0.5));
    assert!(constant.rule_false_positive.is_none());
    for point in &constant.rows[0].at_fpr {
        assert_eq!(point.detection.unwrap().successes, 0);
        assert_eq!(point.robust_with_guardrail.successes, 1);
    }
    assert_eq!(constant.rows[0].roc, vec![[0.0, 0.0], [1.0, 1.0]]);
}

#[test]
fn detector_records_survive_the_per_sample_file() {
    let (plan, records) = detector_plan_and_records();
    let measurements = RunMeasurements::default();
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join(samples_file::FILE_NAME);
    samples_file::write(&path, &plan, &measurements, &records).unwrap();
    let (read_plan, read_measurements, read_records) = samples_file::read(&path).unwrap();
    assert_eq!(read_plan, plan);
    assert_eq!(read_records, records);
    assert_eq!(
        aggregate(&read_plan, &read_measurements, &read_records).unwrap(),
        aggregate(&plan, &measurements, &records).unwrap()
    );
}

#[test]
fn a_detector_record_in_a_run_without_a_detector_description_is_refused() {
    let (mut plan, records) = detector_plan_and_records();
    plan.runs[2].detector = None;
    let error = aggregate(&plan, &RunMeasurements::default(), &records).unwrap_err();
    assert!(matches!(error, AggregateError::WrongKind { .. }), "{error}");
}

/// A `standard` run at two ε and a PGD run, with the member that broke each sample recorded
/// as the ensemble records it: only on samples correct when clean and broken after.
fn standard_plan_and_records() -> (RunPlan, Vec<SampleRecord>) {
    use gauntlet_attacks::evasion::standard::Member;
    let plan = plan(
        vec![
            run(
                "standard",
                RunPurpose::Attack,
                attack("standard", AttackKind::Iterative, Norm::Linf, 0.1),
            ),
            run(
                "standard",
                RunPurpose::Attack,
                attack("standard", AttackKind::Iterative, Norm::Linf, 0.3),
            ),
            run(
                "pgd",
                RunPurpose::Attack,
                attack("pgd", AttackKind::Iterative, Norm::Linf, 0.1),
            ),
        ],
        Vec::new(),
    );
    let credited = |run: u32, epsilon: f32, robust: &[bool], by: [Option<Member>; 4]| {
        let mut records = evasion(run, epsilon, robust);
        for (record, member) in records.iter_mut().zip(by) {
            if let Outcome::Evasion(outcome) = &mut record.outcome {
                outcome.broken_by = member;
            }
        }
        records
    };
    let mut records = clean_records();
    // Sample 3 is wrong when clean: no member is credited with it.
    records.extend(credited(
        1,
        0.1,
        &[true, false, false, false],
        [None, Some(Member::ApgdCe), Some(Member::Square), None],
    ));
    records.extend(credited(
        2,
        0.3,
        &[false, false, false, false],
        [
            Some(Member::ApgdT),
            Some(Member::ApgdCe),
            Some(Member::ApgdCe),
            None,
        ],
    ));
    records.extend(evasion(3, 0.1, &[true, false, true, false]));
    (plan, records)
}

// The member column survives the per-sample file, and results.json counts, per `standard` run
// at each ε, the samples each member broke: the same counts as tallying the records by hand,
// adding up to the samples the run broke; other attacks get no counts.
#[test]
fn standard_member_credit_round_trips_and_is_counted_per_run() {
    use gauntlet_attacks::evasion::standard::Member;
    let (plan, records) = standard_plan_and_records();
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join(samples_file::FILE_NAME);
    samples_file::write(&path, &plan, &RunMeasurements::default(), &records).unwrap();
    let (read_plan, measurements, read) = samples_file::read(&path).unwrap();
    assert_eq!(read, records);
    let members_of = |run: u32| -> Vec<Option<Member>> {
        read.iter()
            .filter(|r| r.run == RunId(run))
            .map(|r| match r.outcome {
                Outcome::Evasion(e) => e.broken_by,
                _ => panic!("not an evasion record"),
            })
            .collect()
    };
    assert_eq!(
        members_of(2),
        vec![
            Some(Member::ApgdT),
            Some(Member::ApgdCe),
            Some(Member::ApgdCe),
            None
        ]
    );
    assert!(members_of(3).iter().all(Option::is_none));

    let report = aggregate(&read_plan, &measurements, &read).unwrap();
    let counts = |epsilon: f64| -> Vec<(String, usize)> {
        let result = report
            .attacks
            .iter()
            .find(|a| a.attack == "standard" && a.epsilon == epsilon)
            .unwrap();
        let counted: Vec<(String, usize)> = result
            .broken_by
            .iter()
            .map(|c| (c.member.clone(), c.broken))
            .collect();
        let total: usize = counted.iter().map(|(_, n)| n).sum();
        assert_eq!(total, result.success_rate.successes, "ε = {epsilon}");
        counted
    };
    let by_hand = |run: u32| -> Vec<(String, usize)> {
        Member::ALL
            .iter()
            .map(|&m| {
                let n = members_of(run).iter().filter(|&&b| b == Some(m)).count();
                (m.name().to_string(), n)
            })
            .collect()
    };
    let named = |pairs: [(&str, usize); 4]| -> Vec<(String, usize)> {
        pairs.iter().map(|(m, n)| (m.to_string(), *n)).collect()
    };
    assert_eq!(
        counts(0.1),
        named([("apgd_ce", 1), ("apgd_t", 0), ("fab_t", 0), ("square", 1)])
    );
    assert_eq!(counts(0.1), by_hand(1));
    assert_eq!(
        counts(0.3),
        named([("apgd_ce", 2), ("apgd_t", 1), ("fab_t", 0), ("square", 0)])
    );
    assert_eq!(counts(0.3), by_hand(2));
    let pgd = report.attacks.iter().find(|a| a.attack == "pgd").unwrap();
    assert!(pgd.broken_by.is_empty());

    // The summary, the page and the CSV show the counts.
    let markdown = gauntlet_reports::render_markdown(&report);
    assert!(
        markdown.contains(
            "at ε = 0.3 (each runs only on what the earlier ones left): <code>apgd\\_ce</code> 2, \
             <code>apgd\\_t</code> 1, <code>fab\\_t</code> 0, <code>square</code> 0; 3 in all."
        ),
        "{markdown}"
    );
    let html = gauntlet_reports::render_html(&report).unwrap();
    assert!(html.contains("Ensemble members"), "no member table");
    let csv = gauntlet_reports::csv_string(&report).unwrap();
    let member_rows: Vec<&str> = csv.lines().filter(|l| l.starts_with("member,")).collect();
    assert_eq!(member_rows.len(), 8, "{csv}");
    assert!(
        member_rows.iter().any(
            |row| row.starts_with("member,standard,apgd_t,linf,0.3,,,,1,3,0.3333333333333333,")
        ),
        "{member_rows:?}"
    );
}

// A `standard` run whose records credit no member although it broke samples (read from a
// per-sample file before version 4) gets no counts rather than made-up zeros; one that broke
// nothing gets zeros.
#[test]
fn standard_runs_without_member_records_get_no_counts() {
    let (plan, mut records) = standard_plan_and_records();
    for record in &mut records {
        if let Outcome::Evasion(outcome) = &mut record.outcome {
            outcome.broken_by = None;
        }
    }
    let report = aggregate(&plan, &RunMeasurements::default(), &records).unwrap();
    assert!(report.attacks.iter().all(|a| a.broken_by.is_empty()));

    let unbroken: Vec<SampleRecord> = records
        .into_iter()
        .map(|mut record| {
            if let Outcome::Evasion(outcome) = &mut record.outcome {
                if record.run != RunId(0) && record.index < 3 {
                    outcome.robust = true;
                    outcome.prediction = [0, 1, 2][record.index as usize];
                }
            }
            record
        })
        .collect();
    let report = aggregate(&plan, &RunMeasurements::default(), &unbroken).unwrap();
    let standard = report
        .attacks
        .iter()
        .find(|a| a.attack == "standard")
        .unwrap();
    assert_eq!(standard.success_rate.successes, 0);
    assert_eq!(standard.broken_by.len(), 4);
    assert!(standard.broken_by.iter().all(|c| c.broken == 0));
}
