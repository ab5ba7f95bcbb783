//! A minimal-norm attack through the whole pipeline on the shipped model: it runs once, its
//! robust accuracy at every ε of the suite is read from that run, it joins the worst case, and
//! the report, the CSV and the HTML show its minimal-norm quantiles.

use gauntlet::load::load;
use gauntlet::progress::Progress;
use gauntlet::runner::{run, Evaluation};
use gauntlet::suite::{Overrides, Suite};
use gauntlet_results::{Outcome, RunPurpose};

const EPSILONS: [f32; 3] = [0.25, 0.5, 1.0];

fn suite(dir: &std::path::Path) -> Suite {
    let text = r#"version = 1
name = "minimal norm"
seed = 3
device = "cpu"
batch_size = 16

[model]
spec = "embedded:fashion-mnist-small-cnn"
weights = "embedded:fashion-mnist-small-cnn"

[dataset]
format = "idx"
path = "embedded:fashion-mnist-test-1k"
limit = 40

[[attack]]
name = "deepfool"
epsilons = [0.25, 0.5, 1.0]

[[attack]]
name = "cw_l2"
epsilons = [0.5]
steps = 20
binary_search_steps = 3
initial_const = 1.0

[[attack]]
name = "fgsm"
label = "fgsm_l2"
norm = "l2"
epsilons = [0.5]

[sanity]
full_budget = false
"#;
    let path = dir.join("suite.toml");
    std::fs::write(&path, text).unwrap();
    Suite::from_file(&path, &Overrides::default()).unwrap()
}

fn evaluate(suite: &Suite) -> Evaluation {
    let loaded = load(suite).unwrap();
    run(suite, &loaded, &Progress::hidden()).unwrap()
}

#[test]
fn deepfool_runs_once_and_answers_every_epsilon() {
    let dir = tempfile::tempdir().unwrap();
    let suite = suite(dir.path());
    let evaluation = evaluate(&suite);
    let plan = &evaluation.plan;
    let search: Vec<usize> = plan
        .runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.purpose == RunPurpose::MinimalNormSearch)
        .map(|(p, _)| p)
        .collect();
    assert_eq!(search.len(), 2, "one unbounded run per minimal-norm attack");
    let search = search[0];
    assert_eq!(plan.runs[search].label, "deepfool_l2");
    // Only the search and the bounded attack have records besides the clean pass.
    let runs_with_records: std::collections::BTreeSet<usize> = evaluation
        .records
        .iter()
        .map(|r| r.run.position())
        .collect();
    let deepfool_at_epsilon: Vec<usize> = plan
        .runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.purpose == RunPurpose::Attack && r.label == "deepfool_l2")
        .map(|(p, _)| p)
        .collect();
    assert_eq!(deepfool_at_epsilon.len(), EPSILONS.len());
    assert!(deepfool_at_epsilon
        .iter()
        .all(|p| !runs_with_records.contains(p)));
    assert!(runs_with_records.contains(&search));

    // Robust at ε ⇔ correct and (not broken, or minimal norm > ε), counted from the records.
    let mut clean_correct = std::collections::HashMap::new();
    let mut found = Vec::new();
    for record in &evaluation.records {
        match record.outcome {
            Outcome::Clean(c) => {
                clean_correct.insert(record.index, c.correct());
            }
            Outcome::Evasion(e) if record.run.position() == search => {
                found.push((record.index, e.robust, e.norm));
            }
            _ => {}
        }
    }
    assert_eq!(found.len(), 40);
    let report = evaluation.report().unwrap();
    for epsilon in EPSILONS {
        let expected = found
            .iter()
            .filter(|(index, robust, norm)| clean_correct[index] && (*robust || *norm > epsilon))
            .count();
        let result = report
            .attacks
            .iter()
            .find(|a| a.label == "deepfool_l2" && a.epsilon as f32 == epsilon)
            .unwrap();
        assert_eq!(result.robust_accuracy.successes, expected, "ε = {epsilon}");
        assert_eq!(result.kind.as_deref(), Some("minimal_norm"));
    }
    // DeepFool breaks most of the correctly classified samples of an undefended CNN.
    let broken = found
        .iter()
        .filter(|(index, robust, _)| clean_correct[index] && !robust)
        .count();
    let correct = clean_correct.values().filter(|&&c| c).count();
    assert!(broken * 10 >= correct * 9, "{broken} of {correct} broken");
    let [summary, cw] = report.minimal_norm.as_slice() else {
        panic!("{:?}", report.minimal_norm)
    };
    assert_eq!(cw.label, "cw_l2");
    assert!(cw.success_rate.successes > 0);
    assert_eq!(summary.success_rate.successes, broken);
    let median = summary.median.unwrap();
    assert!(median > 0.0 && median < 5.0, "median {median}");
    // The worst case at L2 ε = 0.5 takes FGSM and DeepFool.
    let worst = report
        .worst_case
        .iter()
        .find(|w| w.norm == "l2" && w.epsilon == 0.5)
        .unwrap();
    assert_eq!(
        worst.attacks,
        vec![
            "deepfool_l2".to_string(),
            "cw_l2".to_string(),
            "fgsm_l2".to_string()
        ]
    );
    for name in ["deepfool_l2", "cw_l2", "fgsm_l2"] {
        let single = report
            .attacks
            .iter()
            .find(|a| a.label == name && a.epsilon == 0.5)
            .unwrap();
        assert!(worst.robust_accuracy.successes <= single.robust_accuracy.successes);
    }
    // The sanity checks pass (no ε = 0 probe for DeepFool, monotone by construction).
    for check in &report.sanity_checks {
        assert_ne!(
            check.status,
            gauntlet_reports::CheckStatus::Fail,
            "{check:?}"
        );
    }
    // CSV and HTML show the quantiles.
    let csv = gauntlet_reports::csv_string(&report).unwrap();
    assert_eq!(
        csv.lines()
            .filter(|l| l.starts_with("minimal_norm,deepfool_l2,"))
            .count(),
        5
    );
    let html = gauntlet_reports::render_html(&report).unwrap();
    assert!(html.contains("Minimal perturbation"));
    // The same seed gives the same numbers.
    let again = evaluate(&suite);
    assert!(again.records == evaluation.records);
}

#[test]
fn the_planned_work_counts_the_unbounded_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let suite = suite(dir.path());
    let loaded = gauntlet::load::load(&suite).unwrap();
    let work = gauntlet::budget::planned_work(&suite, 40, loaded.model.as_ref()).unwrap();
    let deepfool: Vec<_> = work
        .runs
        .iter()
        .filter(|(what, _, _)| what.contains("deepfool"))
        .collect();
    assert_eq!(deepfool.len(), 1, "{:?}", work.runs);
    let attack =
        (gauntlet_attacks::evasion::deepfool::ENTRY.build)(&toml::Table::new(), f32::INFINITY)
            .unwrap();
    assert_eq!(
        deepfool[0].2,
        (attack.passes_per_sample() + gauntlet_attacks::Passes::forwards(1)).times(40)
    );
}
