//! The comparison with a baseline and the relative gates, as pure functions of two reports.
//! The reports are the reports crate's realistic fixture (every interval a real Wilson
//! interval), edited the way a model change or a suite change would edit it.

// Test code may panic on unexpected errors: that is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../../reports/tests/it/fixture.rs"]
mod fixture;

use gauntlet_reports::{ChangeVerdict, GateBound, RunReport};
use gauntlet_results::baseline::{compare, evaluate_relative, DropTarget, RelativeGate};

fn pgd_01(report: &mut RunReport) -> &mut gauntlet_reports::AttackResult {
    report
        .attacks
        .iter_mut()
        .find(|a| a.label == "pgd" && a.epsilon == 0.1)
        .unwrap()
}

fn every_attack(max_drop: f64) -> RelativeGate {
    RelativeGate {
        target: DropTarget::EveryAttack,
        max_drop,
    }
}

#[test]
fn a_run_against_itself_is_unchanged_everywhere() {
    let report = fixture::report();
    let comparison = compare(&report, "last/results.json", &report);
    assert_eq!(comparison.path, "last/results.json");
    assert!(comparison.warnings.is_empty(), "{:?}", comparison.warnings);
    // clean + every attack@ε + every worst case, nothing only on one side.
    assert_eq!(
        comparison.rows.len(),
        1 + report.attacks.len() + report.worst_case.len()
    );
    for row in &comparison.rows {
        assert_eq!(row.verdict, ChangeVerdict::Unchanged, "{}", row.key);
        let change = row.change.unwrap();
        assert_eq!(change.delta, 0.0);
        assert!((change.p_value - 1.0).abs() < 1e-6);
        assert!(change.ci95_low < 0.0 && change.ci95_high > 0.0);
    }
    let verdicts = evaluate_relative(&[every_attack(0.0)], &comparison, &report);
    assert_eq!(verdicts.len(), report.attacks.len());
    assert!(verdicts
        .iter()
        .all(|v| v.passed && v.bound == GateBound::AtMost));
}

#[test]
fn a_drop_of_six_points_is_a_significant_regression_and_fails_a_two_point_gate() {
    let baseline = fixture::report();
    let mut now = baseline.clone();
    let before = pgd_01(&mut now).robust_accuracy;
    pgd_01(&mut now).robust_accuracy = fixture::wilson(before.successes - 60, before.total);
    let comparison = compare(&baseline, "b.json", &now);
    let row = comparison.rows.iter().find(|r| r.key == "pgd@0.1").unwrap();
    assert_eq!(row.verdict, ChangeVerdict::Regressed);
    let change = row.change.unwrap();
    assert!((change.delta - (-60.0 / before.total as f64)).abs() < 1e-12);
    assert!(change.significant && change.ci95_high < 0.0);
    assert!(change.p_value < 0.05);

    let verdicts = evaluate_relative(&[every_attack(0.02)], &comparison, &now);
    let failed: Vec<_> = verdicts.iter().filter(|v| !v.passed).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].gate, "max_robust_accuracy_drop[pgd@0.1]");
    assert!((failed[0].actual - 0.06).abs() < 1e-12);
    assert_eq!(
        failed[0].failure_message(),
        "gate failed: max_robust_accuracy_drop[pgd@0.1] = 6.00 points > 2.00 points (over by 4.00 points)"
    );
    // A named gate with room for it passes; the clean gate sees no drop.
    let named = RelativeGate {
        target: DropTarget::Attack {
            label: "pgd".to_owned(),
            epsilon: 0.1,
        },
        max_drop: 0.07,
    };
    let clean = RelativeGate {
        target: DropTarget::Clean,
        max_drop: 0.0,
    };
    let verdicts = evaluate_relative(&[named, clean], &comparison, &now);
    assert_eq!(verdicts.len(), 2);
    assert!(verdicts.iter().all(|v| v.passed), "{verdicts:?}");
    assert_eq!(verdicts[1].gate, "max_clean_accuracy_drop");
}

#[test]
fn a_small_drop_on_few_images_is_not_significant() {
    let baseline = fixture::report();
    let mut now = baseline.clone();
    let before = pgd_01(&mut now).robust_accuracy;
    pgd_01(&mut now).robust_accuracy = fixture::wilson(before.successes - 3, before.total);
    let comparison = compare(&baseline, "b.json", &now);
    let row = comparison.rows.iter().find(|r| r.key == "pgd@0.1").unwrap();
    assert_eq!(row.verdict, ChangeVerdict::Unchanged);
    assert!(row.change.unwrap().p_value > 0.05);
}

#[test]
fn an_attack_the_baseline_lacks_is_new_and_fails_its_gate_closed() {
    let now = fixture::report();
    let mut baseline = now.clone();
    baseline.attacks.retain(|a| a.label != "pgd");
    let comparison = compare(&baseline, "old.json", &now);
    let row = comparison.rows.iter().find(|r| r.key == "pgd@0.1").unwrap();
    assert_eq!(row.verdict, ChangeVerdict::New);
    assert!(row.change.is_none());
    let verdicts = evaluate_relative(&[every_attack(0.5)], &comparison, &now);
    let failed: Vec<_> = verdicts.iter().filter(|v| !v.passed).collect();
    assert_eq!(failed.len(), 3, "one per pgd ε");
    let detail = failed[0].detail.as_deref().unwrap();
    assert!(
        detail.contains("old.json") && detail.contains("pgd@"),
        "{detail}"
    );
}

#[test]
fn an_attack_only_the_baseline_has_is_listed_as_removed() {
    let baseline = fixture::report();
    let mut now = baseline.clone();
    now.attacks.retain(|a| a.label != "fgsm");
    let comparison = compare(&baseline, "b.json", &now);
    let removed: Vec<_> = comparison
        .rows
        .iter()
        .filter(|r| r.verdict == ChangeVerdict::Removed)
        .map(|r| r.key.as_str())
        .collect();
    assert_eq!(removed, ["fgsm@0.1", "fgsm@0.2", "fgsm@0.3"]);
}

#[test]
fn changed_attack_parameters_make_the_row_incomparable_and_its_gate_fail() {
    let baseline = fixture::report();
    let mut now = baseline.clone();
    pgd_01(&mut now)
        .params
        .insert("steps".to_owned(), serde_json::json!(1000));
    let comparison = compare(&baseline, "b.json", &now);
    let row = comparison.rows.iter().find(|r| r.key == "pgd@0.1").unwrap();
    assert_eq!(row.verdict, ChangeVerdict::Incomparable);
    assert!(row.note.as_deref().unwrap().contains("steps"), "{row:?}");
    let verdicts = evaluate_relative(&[every_attack(1.0)], &comparison, &now);
    let failed: Vec<_> = verdicts.iter().filter(|v| !v.passed).collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].detail.as_deref().unwrap().contains("steps"));
}

#[test]
fn another_seed_or_sample_count_is_a_warning() {
    let baseline = fixture::report();
    let mut now = baseline.clone();
    now.seed += 1;
    now.dataset.samples += 1;
    let comparison = compare(&baseline, "b.json", &now);
    assert_eq!(comparison.warnings.len(), 2, "{:?}", comparison.warnings);
    assert!(comparison.warnings[0].contains("sample count"));
    assert!(comparison.warnings[1].contains("seed"));
}

#[test]
fn worst_case_gates_name_the_norm_and_budget() {
    let baseline = fixture::report();
    let mut now = baseline.clone();
    let worst = &mut now.worst_case[0];
    worst.robust_accuracy = fixture::wilson(
        worst.robust_accuracy.successes - 50,
        worst.robust_accuracy.total,
    );
    let comparison = compare(&baseline, "b.json", &now);
    let gate = RelativeGate {
        target: DropTarget::EveryWorstCase,
        max_drop: 0.01,
    };
    let verdicts = evaluate_relative(&[gate], &comparison, &now);
    assert_eq!(verdicts.len(), now.worst_case.len());
    let failed: Vec<_> = verdicts.iter().filter(|v| !v.passed).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].gate,
        format!(
            "max_worst_case_accuracy_drop[{}@{}]",
            now.worst_case[0].norm, now.worst_case[0].epsilon
        )
    );
}

#[test]
fn the_comparison_survives_the_trip_through_json() {
    let baseline = fixture::report();
    let mut now = baseline.clone();
    let before = pgd_01(&mut now).robust_accuracy;
    pgd_01(&mut now).robust_accuracy = fixture::wilson(before.successes - 60, before.total);
    let comparison = compare(&baseline, "b.json", &now);
    now.gates
        .extend(evaluate_relative(&[every_attack(0.02)], &comparison, &now));
    now.baseline = Some(comparison);
    let text = gauntlet_reports::to_json_string(&now).unwrap();
    let back =
        gauntlet_reports::parse_json(text.as_bytes(), std::path::Path::new("x.json")).unwrap();
    assert_eq!(back, now);
}
