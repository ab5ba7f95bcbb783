//! `[[detector]]` sections through the real binary: guardrails fitted on the bundled
//! Fashion-MNIST images past `dataset.limit`, scored against FGSM, PGD and an adaptive PGD that
//! knows the z-score validator; the per-sample file rebuilding the same results; and bad
//! input (a NaN threshold, fitting data of another shape, nothing to fit on) named with exit 2.

use std::path::{Path, PathBuf};

use gauntlet_results::detector::ScoredInputs;
use gauntlet_results::{DetectorOutcome, Outcome};

use crate::common::{gauntlet, stderr, stdout};

fn write_suite(dir: &Path, limit: usize, body: &str) -> PathBuf {
    let text = format!(
        "version = 1\nname = \"guardrail test\"\nseed = 3\nbatch_size = 64\n\
         [model]\nspec = \"embedded:fashion-mnist-small-cnn\"\n\
         weights = \"embedded:fashion-mnist-small-cnn\"\n\
         [dataset]\nformat = \"idx\"\npath = \"embedded:fashion-mnist-test-1k\"\nlimit = {limit}\n\
         [sanity]\nfull_budget = false\n\n{body}\n[report]\nexamples = 0\n"
    );
    let path = dir.join("suite.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

const ATTACKS: &str = r#"
[[attack]]
name = "fgsm"
epsilons = [0.1]

[[attack]]
name = "pgd"
epsilons = [0.1]
steps = 5
"#;

/// The end-to-end known answers: the z-score validator separates FGSM's and PGD's noise from
/// clean images (the measurement in docs/guardrails.md: AUC 0.99), the adaptive PGD's output
/// of every input the validator accepts is accepted too, the gap is called out, and the per-sample
/// file rebuilds the same figures.
#[test]
fn detectors_are_fitted_scored_and_evaded_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{ATTACKS}\n[[detector]]\nname = \"zscore\"\nfit_samples = 400\nadaptive = true\n\
         adaptive_steps = 5\n\n[[detector]]\nname = \"confidence\"\nlabel = \"softmax\"\n\
         adaptive = true\nadaptive_steps = 5\n\n\
         [gate]\nmin_prediction_psi = {{ \"pgd@0.1\" = 0.0 }}\n\
         min_prediction_kl = {{ \"fgsm@0.1\" = 1000.0 }}\n"
    );
    let suite = write_suite(dir.path(), 150, &body);
    let check = gauntlet(dir.path(), &["check", suite.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert!(
        stdout(&check)
            .contains("detector zscore (zscore, looks at inputs; fitted on the first 400"),
        "{}",
        stdout(&check)
    );
    let run = gauntlet(
        dir.path(),
        &["run", suite.to_str().unwrap(), "--out", "out", "-q"],
    );
    // The KL gate asks for an impossible drift: exit 1, and only that gate fails.
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let out = dir.path().join("out");
    let results = json(&out.join("results.json"));
    let gates = results["gates"].as_array().unwrap();
    let verdict = |name: &str| {
        gates
            .iter()
            .find(|g| g["gate"] == name)
            .unwrap_or_else(|| panic!("no gate {name} in {gates:?}"))
    };
    assert_eq!(verdict("min_prediction_psi[pgd@0.1]")["passed"], true);
    assert_eq!(verdict("min_prediction_kl[fgsm@0.1]")["passed"], false);
    assert!(
        stdout(&run).contains("FAIL min_prediction_kl[fgsm@0.1]"),
        "{}",
        stdout(&run)
    );
    // The drift is recomputed here from the reported class counts: PSI of the ½-smoothed
    // distributions, the gate's number.
    let drift = results["output_drift"].as_array().unwrap();
    assert_eq!(drift.len(), 2);
    let pgd = drift.iter().find(|d| d["attack"] == "pgd").unwrap();
    let smooth = |key: &str| -> Vec<f64> {
        let counts: Vec<f64> = pgd[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_f64().unwrap())
            .collect();
        let total: f64 = counts.iter().sum::<f64>() + 0.5 * counts.len() as f64;
        counts.iter().map(|c| (c + 0.5) / total).collect()
    };
    let (c, a) = (smooth("clean_counts"), smooth("attacked_counts"));
    let psi: f64 = a.iter().zip(&c).map(|(a, c)| (a - c) * (a / c).ln()).sum();
    assert!((pgd["psi"].as_f64().unwrap() - psi).abs() < 1e-9, "{pgd}");
    assert_eq!(verdict("min_prediction_psi[pgd@0.1]")["actual"], pgd["psi"]);
    // The confidence detector's scores give the histograms, 150 inputs each.
    let histogram = &pgd["confidence"];
    for key in ["clean", "attacked"] {
        let total: u64 = histogram[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .sum();
        assert_eq!(total, 150, "{histogram}");
    }
    let detectors = results["detectors"].as_array().unwrap();
    assert_eq!(detectors.len(), 2);
    let zscore = &detectors[0];
    assert_eq!(zscore["fit_samples"], 400);
    assert_eq!(zscore["clean_samples"], 150);
    let rows = zscore["rows"].as_array().unwrap();
    let attacks: Vec<(&str, bool)> = rows
        .iter()
        .map(|r| {
            (
                r["attack"].as_str().unwrap(),
                r["adaptive"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        attacks,
        [("fgsm", false), ("pgd", false), ("adaptive_pgd", true)]
    );
    for row in &rows[..2] {
        assert!(row["auc"].as_f64().unwrap() > 0.9, "{row}");
        assert!(row["successful"].as_u64().unwrap() > 20, "{row}");
    }
    // The known answer, per sample (from the per-sample file): the adaptive output of every
    // input the validator accepts when clean is accepted too (the clean input itself lies in
    // the ε-ball ∩ accept box the attack projects into), and the attack still breaks some of
    // them. Inputs rejected when clean may stay rejected: with `max_abs` over 784 pixels at
    // threshold 3, an unusual pixel more than ε outside its accept interval cannot be moved in.
    let (plan, _, records) =
        gauntlet_results::samples_file::read(&out.join("samples.parquet")).unwrap();
    let zscore_run = |adaptive: Option<bool>| {
        plan.runs
            .iter()
            .position(|run| {
                run.label == "zscore"
                    && match (&run.detector.as_ref().unwrap().scored, adaptive) {
                        (ScoredInputs::Clean, None) => true,
                        (ScoredInputs::Attack { adaptive: a, .. }, Some(b)) => *a == b,
                        _ => false,
                    }
            })
            .unwrap()
    };
    let outcomes = |position: usize| -> std::collections::BTreeMap<u64, DetectorOutcome> {
        records
            .iter()
            .filter(|r| r.run.position() == position)
            .map(|r| match r.outcome {
                Outcome::Detector(d) => (r.index, d),
                other => panic!("a detector run holds {other:?}"),
            })
            .collect()
    };
    let clean = outcomes(zscore_run(None));
    let adaptive = outcomes(zscore_run(Some(true)));
    assert_eq!((clean.len(), adaptive.len()), (150, 150));
    let mut accepted_and_broken = 0;
    for (index, clean_outcome) in &clean {
        let attacked = adaptive[index];
        if clean_outcome.rule_rejected == Some(false) {
            assert_eq!(attacked.rule_rejected, Some(false), "sample {index}");
            if clean_outcome.robust && !attacked.robust {
                accepted_and_broken += 1;
            }
        }
    }
    assert!(accepted_and_broken > 0, "{:?}", rows[2]);
    // Against the confidence monitor, the adaptive attack's confident misclassifications
    // are harder to tell from clean inputs than PGD's outputs: a lower AUC, and no more
    // detected at 5% false positives.
    let softmax = detectors[1]["rows"].as_array().unwrap();
    let row = |attack: &str| softmax.iter().find(|r| r["attack"] == attack).unwrap();
    let detected =
        |row: &serde_json::Value| row["at_fpr"][1]["detection"]["value"].as_f64().unwrap();
    let (pgd, adaptive) = (row("pgd"), row("adaptive_pgd"));
    assert_eq!(adaptive["adaptive"], true);
    assert!(
        adaptive["auc"].as_f64() < pgd["auc"].as_f64(),
        "{adaptive} vs {pgd}"
    );
    assert!(detected(adaptive) <= detected(pgd), "{adaptive} vs {pgd}");
    // With the guardrail, robust accuracy is never below the model's own.
    for row in rows {
        for point in row["at_fpr"].as_array().unwrap() {
            assert!(
                point["robust_with_guardrail"]["value"].as_f64().unwrap()
                    >= row["robust_accuracy"]["value"].as_f64().unwrap()
            );
        }
    }
    assert!(
        stdout(&run).contains("zscore vs pgd@0.1: AUC"),
        "{}",
        stdout(&run)
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<section id=\"guardrails\">"));
    assert!(out.join("detector_roc_01_zscore.png").is_file());
    // The per-sample file has every detector score and rebuilds the same results.
    let rebuilt = dir.path().join("rebuilt");
    let report = gauntlet(
        dir.path(),
        &[
            "report",
            out.join("samples.parquet").to_str().unwrap(),
            "--out",
            rebuilt.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert_eq!(report.status.code(), Some(0), "{}", stderr(&report));
    assert_eq!(
        json(&rebuilt.join("results.json"))["detectors"],
        results["detectors"]
    );
    // Deterministic with a seed.
    let again = gauntlet(
        dir.path(),
        &["run", suite.to_str().unwrap(), "--out", "again", "-q"],
    );
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    let again = json(&dir.path().join("again/results.json"));
    for (a, b) in results["detectors"]
        .as_array()
        .unwrap()
        .iter()
        .zip(again["detectors"].as_array().unwrap())
    {
        assert_eq!(a["rows"], b["rows"]);
    }
}

fn assert_exit_2(output: &std::process::Output, needles: &[&str]) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "expected `{needle}` in:\n{err}");
    }
}

#[test]
fn bad_detector_sections_are_named_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for (body, limit, needles) in [
        (
            "[[detector]]\nname = \"zscore\"\nthreshold = nan\n",
            100,
            &["suite.toml", "detector `zscore`", "`threshold`", "NaN"][..],
        ),
        (
            "[[detector]]\nname = \"zscore\"\n\
             fit_dataset = { format = \"idx\", path = \"embedded:uci-digits\" }\n",
            100,
            &[
                "suite.toml",
                "detector `zscore`",
                "`fit_dataset`",
                "[1, 8, 8]",
                "[1, 28, 28]",
            ][..],
        ),
        (
            "[[detector]]\nname = \"entropy\"\n",
            1000,
            &[
                "suite.toml",
                "detector `entropy`",
                "`fit_dataset`",
                "`dataset.limit`",
            ][..],
        ),
        (
            "[[detector]]\nname = \"zscore\"\naggregation = \"share_over_threshold\"\n\
             adaptive = true\n",
            100,
            &[
                "suite.toml",
                "detector `zscore`",
                "`adaptive = true`",
                "knows no way",
            ][..],
        ),
        (
            "[[detector]]\nname = \"confidence\"\nadaptive = true\nadaptive_attack = \"apgd\"\n",
            100,
            &["suite.toml", "detector `confidence`", "`adaptive_attack`"][..],
        ),
        (
            "[[detector]]\nname = \"no_such\"\n",
            100,
            &["suite.toml", "unknown detector `no_such`", "zscore"][..],
        ),
        (
            "[[detector]]\nname = \"zscore\"\nfit_samples = 0\n",
            100,
            &["suite.toml", "`fit_samples`"][..],
        ),
        (
            "[gate]\nmin_prediction_psi = { \"nope@0.1\" = 0.1 }\n",
            100,
            &["suite.toml", "min_prediction_psi.\"nope@0.1\"", "pgd@0.1"][..],
        ),
        (
            "[gate]\nmin_prediction_kl = { \"pgd@0.1\" = nan }\n",
            100,
            &["suite.toml", "min_prediction_kl.\"pgd@0.1\"", "NaN"][..],
        ),
    ] {
        let suite = write_suite(dir.path(), limit, &format!("{ATTACKS}\n{body}"));
        let path = suite.to_str().unwrap();
        for args in [
            &["check", path][..],
            &["run", path, "-q", "--out", "out"][..],
        ] {
            assert_exit_2(&gauntlet(dir.path(), args), needles);
        }
    }
}

/// Guardrail runs go through work units like every other run: two shard processes (units of
/// 40 samples, so the detector scores and the adaptive APGD are split across them; the probing
/// sessions in the whole-model unit) merge into exactly the unsharded results and per-sample
/// records.
#[test]
fn guardrail_runs_shard_and_merge_into_the_unsharded_run() {
    let dir = tempfile::tempdir().unwrap();
    let body = "[[attack]]\nname = \"fgsm\"\nepsilons = [0.1]\n\n[[detector]]\nname = \"zscore\"\n\
                fit_samples = 200\nadaptive = true\nadaptive_attack = \"apgd\"\n\
                adaptive_steps = 5\n\n[[detector]]\n\
                name = \"entropy\"\n\n[probing]\nattack = \"square\"\nepsilon = 0.1\nsessions = 3\n\
                queries = 60\n";
    let suite = write_suite(dir.path(), 120, body);
    let suite = suite.to_str().unwrap();
    let run = |out: &str, shard: Option<&str>| {
        let mut args = vec!["run", suite, "--unit-samples", "40", "--out", out, "-q"];
        if let Some(shard) = shard {
            args.extend(["--shard", shard]);
        }
        let output = gauntlet(dir.path(), &args);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    };
    run("whole", None);
    run("shard-0", Some("0/2"));
    run("shard-1", Some("1/2"));
    let merged = gauntlet(
        dir.path(),
        &["merge", "shard-0", "shard-1", "--out", "merged"],
    );
    assert_eq!(merged.status.code(), Some(0), "{}", stderr(&merged));
    let whole = json(&dir.path().join("whole/results.json"));
    assert_eq!(whole["detectors"].as_array().unwrap().len(), 2);
    assert_eq!(whole["probing"]["sessions"].as_array().unwrap().len(), 3);
    let zscore_rows = whole["detectors"][0]["rows"].as_array().unwrap();
    assert!(
        zscore_rows.iter().any(|r| r["attack"] == "adaptive_apgd"),
        "{zscore_rows:?}"
    );
    crate::shards::assert_same_results(&dir.path().join("whole"), &dir.path().join("merged"));
}
