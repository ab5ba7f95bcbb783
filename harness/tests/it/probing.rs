//! The `[probing]` section through the real binary: Square's query stream against the
//! query-similarity monitor on the bundled CNN, with a closed-form known answer, and bad
//! sections named with exit 2.

use std::path::{Path, PathBuf};

use crate::common::{gauntlet, stderr, stdout};

fn write_suite(dir: &Path, probing: &str) -> PathBuf {
    let text = format!(
        "version = 1\nname = \"probing test\"\nseed = 5\nbatch_size = 64\n\
         [model]\nspec = \"embedded:fashion-mnist-small-cnn\"\n\
         weights = \"embedded:fashion-mnist-small-cnn\"\n\
         [dataset]\nformat = \"idx\"\npath = \"embedded:fashion-mnist-test-1k\"\nlimit = 120\n\
         [sanity]\nfull_budget = false\n\
         [[attack]]\nname = \"fgsm\"\nepsilons = [0.1]\n\
         [probing]\n{probing}\n[report]\nexamples = 0\n"
    );
    let path = dir.join("suite.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Any two inputs in one sample's L∞ ε-ball are at most `2ε·√d` apart in L2, so when that is
/// below the threshold fixed on the benign stream, every query of a session that the monitor
/// scores is flagged: a session is flagged exactly at query `k + 1` when it sends more than
/// `k`, and never otherwise. Square at ε = 0.05 on 28×28 images: `2·0.05·28 = 2.8`.
#[test]
fn squares_queries_are_flagged_as_soon_as_the_monitor_can_score_them() {
    let dir = tempfile::tempdir().unwrap();
    let suite = write_suite(
        dir.path(),
        "attack = \"square\"\nepsilon = 0.05\nsessions = 6\nk = 10\nqueries = 200\n",
    );
    let check = gauntlet(dir.path(), &["check", suite.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert!(
        stdout(&check).contains("probing: 6 sessions of `square` at ε = 0.05"),
        "{}",
        stdout(&check)
    );
    let run = gauntlet(
        dir.path(),
        &["run", suite.to_str().unwrap(), "--out", "out", "-q"],
    );
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let out = dir.path().join("out");
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let probing = &results["probing"];
    let threshold = probing["threshold"].as_f64().unwrap();
    let bound = 2.0 * 0.05 * (28.0f64 * 28.0).sqrt();
    assert!(bound < threshold, "{probing}");
    assert!(probing["achieved_fpr"].as_f64().unwrap() <= 0.01);
    // The first six correctly classified samples, in order.
    let clean_correct: Vec<u64> = {
        let (_, _, records) =
            gauntlet_results::samples_file::read(&out.join("samples.parquet")).unwrap();
        records
            .iter()
            .filter_map(|r| match r.outcome {
                gauntlet_results::Outcome::Clean(c) if c.correct() => Some(r.index),
                _ => None,
            })
            .take(6)
            .collect()
    };
    let sessions = probing["sessions"].as_array().unwrap();
    let indices: Vec<u64> = sessions
        .iter()
        .map(|s| s["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indices, clean_correct);
    let mut long = 0;
    for session in sessions {
        let queries = session["queries"].as_u64().unwrap();
        // Square's clean check plus at most `queries` more.
        assert!((1..=201).contains(&queries), "{session}");
        if let Some(at) = session["succeeded_at"].as_u64() {
            assert!(at <= queries, "{session}");
        }
        if queries > 10 {
            long += 1;
            assert_eq!(session["detected_at"], 11, "{session}");
        } else {
            assert!(session["detected_at"].is_null(), "{session}");
        }
    }
    assert!(long > 0, "no session sent more than k queries: {probing}");
    assert!(
        stdout(&run).contains("probing: `square` (ε = 0.05) succeeded in"),
        "{}",
        stdout(&run)
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<section id=\"probing\">"));
    let markdown = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(markdown.contains("### Probing"), "{markdown}");
}

#[test]
fn bad_probing_sections_are_named_with_exit_2() {
    for (probing, needles) in [
        (
            "attack = \"pgd\"\nepsilon = 0.1\n",
            &["`probing.attack`", "`pgd` needs input gradients"][..],
        ),
        (
            "attack = \"square\"\nepsilon = 0.1\nk = 0\n",
            &["`probing`", "`k`"][..],
        ),
        (
            "attack = \"square\"\nepsilon = nan\n",
            &["`probing.epsilon`"][..],
        ),
        (
            "attack = \"square\"\nepsilon = 0.1\nqueries_per_step = 3\n",
            &["queries_per_step"][..],
        ),
        (
            "attack = \"square\"\nepsilon = 0.1\nk = 50\nbenign_samples = 40\n",
            &["`probing.benign_samples`"][..],
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let suite = write_suite(dir.path(), probing);
        let output = gauntlet(dir.path(), &["check", suite.to_str().unwrap()]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{probing}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        for needle in needles {
            assert!(
                err.contains(needle),
                "{probing}: expected `{needle}` in:\n{err}"
            );
        }
    }
}
