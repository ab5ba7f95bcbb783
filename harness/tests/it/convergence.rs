//! The `attack_converged` check and HopSkipJump through the whole pipeline on the shipped
//! model: APGD with too few steps still breaks samples in its last iterations and is flagged,
//! APGD with its default 100 steps is not; HopSkipJump's query counts reach the records and
//! its derived runs feed the black-box check.

use gauntlet::load::load;
use gauntlet::progress::Progress;
use gauntlet::runner::{run, Evaluation};
use gauntlet::suite::{Overrides, Suite};
use gauntlet_reports::{CheckStatus, SanityCheck};
use gauntlet_results::{Outcome, RunPurpose};

const SAMPLES: usize = 32;

fn evaluate(dir: &std::path::Path, attacks: &str) -> Evaluation {
    let text = format!(
        r#"version = 1
name = "convergence"
seed = 5
device = "cpu"
batch_size = 32

[model]
spec = "embedded:fashion-mnist-small-cnn"
weights = "embedded:fashion-mnist-small-cnn"

[dataset]
format = "idx"
path = "embedded:fashion-mnist-test-1k"
limit = {SAMPLES}

{attacks}

[sanity]
full_budget = false
"#
    );
    let path = dir.join("suite.toml");
    std::fs::write(&path, text).unwrap();
    let suite = Suite::from_file(&path, &Overrides::default()).unwrap();
    let loaded = load(&suite).unwrap();
    run(&suite, &loaded, &Progress::hidden()).unwrap()
}

fn check(evaluation: &Evaluation, name: &str) -> SanityCheck {
    let report = evaluation.report().unwrap();
    report
        .sanity_checks
        .iter()
        .find(|c| c.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("no check `{name}` in {:?}", report.sanity_checks))
}

fn robust_count(evaluation: &Evaluation, label: &str) -> usize {
    let report = evaluation.report().unwrap();
    let result = report
        .attacks
        .iter()
        .find(|a| a.label == label)
        .unwrap_or_else(|| panic!("no attack `{label}`"));
    result.robust_accuracy.successes
}

// Three APGD steps at ε = 0.05 stop while samples are still falling (the longer run breaks
// more, so more steps do help on this model), and the samples broken at the last step are
// well over 1% of 32: flagged. The default 100 steps break next to nothing after step 80.
#[test]
fn apgd_with_too_few_steps_is_flagged_and_a_converged_run_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let short = evaluate(
        dir.path(),
        "[[attack]]\nname = \"apgd\"\nepsilons = [0.05]\nsteps = 3",
    );
    let flagged = check(&short, "attack_converged");
    assert_eq!(flagged.status, CheckStatus::Warn, "{flagged:?}");
    assert!(
        flagged.detail.contains("`apgd` at linf ε = 0.05"),
        "{flagged:?}"
    );
    let long = evaluate(
        dir.path(),
        "[[attack]]\nname = \"apgd\"\nepsilons = [0.05]\nsteps = 100",
    );
    let converged = check(&long, "attack_converged");
    assert_eq!(converged.status, CheckStatus::Pass, "{converged:?}");
    assert!(
        robust_count(&long, "apgd") < robust_count(&short, "apgd"),
        "more steps must help on this model for the short run to be a real case: {} vs {}",
        robust_count(&long, "apgd"),
        robust_count(&short, "apgd")
    );
    // Every `broken_at` is a share of the iterations, recorded only for broken samples.
    for record in &short.records {
        if let Outcome::Evasion(outcome) = record.outcome {
            if let Some(at) = outcome.broken_at {
                assert!((0.0..=1.0).contains(&at), "{outcome:?}");
                assert!(!outcome.robust, "{outcome:?}");
            }
        }
    }
}

// HopSkipJump runs once (ε = +∞) with labels only; every record of that run carries its
// query count, within the budget; its runs at each ε are derived and compared with APGD at
// the same norm and ε by the black-box check (which exists only if it compared something:
// both ε's here).
#[test]
fn hop_skip_jump_records_its_queries_and_meets_the_black_box_check() {
    let dir = tempfile::tempdir().unwrap();
    let evaluation = evaluate(
        dir.path(),
        "[[attack]]\nname = \"hop_skip_jump\"\nlabel = \"hsj\"\nepsilons = [1.0, 2.0]\nqueries = 300\n\n\
         [[attack]]\nname = \"apgd\"\nlabel = \"apgd_l2\"\nnorm = \"l2\"\nepsilons = [1.0, 2.0]\nsteps = 20",
    );
    let search = evaluation
        .plan
        .runs
        .iter()
        .position(|r| r.purpose == RunPurpose::MinimalNormSearch && r.label == "hsj")
        .unwrap();
    let queries: Vec<u32> = evaluation
        .records
        .iter()
        .filter(|r| r.run.position() == search)
        .map(|r| match r.outcome {
            Outcome::Evasion(e) => e.queries.unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(queries.len(), SAMPLES);
    assert!(
        queries.iter().all(|&q| (1..=300).contains(&q)),
        "{queries:?}"
    );
    let black_box = check(&evaluation, "black_box_not_stronger_than_white_box");
    assert!(
        black_box.detail.contains("2 shared budgets") || black_box.detail.contains("`hsj`"),
        "{black_box:?}"
    );
}
