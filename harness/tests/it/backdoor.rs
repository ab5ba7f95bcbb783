//! The backdoor sections of a suite through the real binary: a small BadNets sweep on the
//! shipped UCI digits with the trained models handed to the scans (the closed loop), the
//! anomaly-index gate, the ground-truth file, the per-sample file rebuilding everything, and
//! bad parameters named before anything trains.

use std::path::{Path, PathBuf};

use crate::common::{gauntlet, stderr, stdout};

/// The example digits model, by absolute path.
fn model_table() -> String {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/suites/models");
    format!(
        "[model]\nspec = \"{}\"\nweights = \"{}\"\n",
        models.join("uci-digits-small-cnn.toml").display(),
        models.join("uci-digits-small-cnn.safetensors").display()
    )
}

fn write_suite(dir: &Path, dataset_extra: &str, body: &str) -> PathBuf {
    let text = format!(
        "version = 1\nname = \"backdoor test\"\nseed = 7\nbatch_size = 256\n{}\n\
         [dataset]\nformat = \"idx\"\npath = \"embedded:uci-digits\"\n{dataset_extra}\n\
         [sanity]\nfull_budget = false\n\n{body}\n[report]\nexamples = 0\n",
        model_table()
    );
    let path = dir.join("suite.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

const SWEEP: &str = r#"
[[poisoning]]
name = "badnets"
rates = [0.0, 0.05]
seeds = [1]
epochs = 8
size = 3
target = 0

[[trigger_scan]]
name = "neural_cleanse"
model_under_test = false
clean_samples = 60
epochs = 4

[[trigger_scan]]
name = "strip"
clean_samples = 100
held_out_samples = 40
overlays = 20

[[data_scan]]
name = "activation_clustering"
"#;

/// The closed loop through `gauntlet run`: the 5% model carries the backdoor and the clean
/// twin does not, STRIP catches the triggered inputs of the poisoned model, the ground truth
/// lists exactly the poisoned training samples, and `gauntlet report samples.parquet` rebuilds
/// the same `results.json`.
#[test]
fn a_poisoning_sweep_with_scans_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let suite = write_suite(dir.path(), "", SWEEP);
    let run = gauntlet(
        dir.path(),
        &["run", suite.to_str().unwrap(), "--out", "out", "-q"],
    );
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert!(
        stdout(&run).contains("smallest rate reaching 90% ASR: 0.05"),
        "{}",
        stdout(&run)
    );
    let out = dir.path().join("out");
    let results = json(&out.join("results.json"));
    let backdoor = &results["backdoor"];

    let rows = backdoor["poisonings"][0]["rows"].as_array().unwrap();
    let asr = |row: &serde_json::Value| row["attack_success"]["value"].as_f64().unwrap();
    let clean = |row: &serde_json::Value| row["clean_accuracy"]["value"].as_f64().unwrap();
    assert_eq!(rows[0]["rate"], 0.0);
    assert!(asr(&rows[0]) <= 0.1, "clean twin ASR {}", asr(&rows[0]));
    assert!(asr(&rows[1]) >= 0.9, "poisoned ASR {}", asr(&rows[1]));
    assert!((clean(&rows[0]) - clean(&rows[1])).abs() <= 0.05);
    assert_eq!(backdoor["poisonings"][0]["smallest_rate_reaching_90"], 0.05);
    // Attack inputs are the test samples (every sixth, 300) of the other classes.
    assert_eq!(rows[1]["attack_success"]["total"], 268);

    // STRIP on the poisoned model, with the planted trigger known.
    let strip = backdoor["strip"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["model"]["rate"] == 0.05)
        .unwrap();
    assert!(
        strip["detection"]["value"].as_f64().unwrap() >= 0.8,
        "{strip}"
    );
    assert!(strip["false_rejection"]["value"].as_f64().unwrap() <= 0.05);
    // STRIP ran on the model under test and on both trained models; Neural Cleanse only on
    // the trained ones.
    assert_eq!(backdoor["strip"].as_array().unwrap().len(), 3);
    let scans = backdoor["scans"].as_array().unwrap();
    assert_eq!(scans.len(), 2);
    assert!(scans
        .iter()
        .all(|s| s["classes"].as_array().unwrap().len() == 10));

    // The ground truth: round(0.05 · 1198) = 60 training samples, none in the test or
    // held-out part of the split, and the data scan scored against exactly them.
    let truth = json(&out.join("poisoned_indices.json"));
    let poisoned = truth
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["rate"] == 0.05)
        .unwrap()["indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap())
        .collect::<Vec<_>>();
    assert_eq!(poisoned.len(), 60);
    assert!(poisoned.iter().all(|i| i % 6 != 0 && i % 6 != 3));
    let data = backdoor["data_scans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["rate"] == 0.05)
        .unwrap();
    assert_eq!(data["poisoned"], 60);
    assert_eq!(data["samples"], 1198);

    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("id=\"backdoor\""));
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert!(csv.lines().any(|l| l.starts_with("poisoning,")));
    assert!(out.join("backdoor_poison_rate_01_badnets.png").exists());

    let rebuilt = gauntlet(
        dir.path(),
        &[
            "report",
            out.join("samples.parquet").to_str().unwrap(),
            "--out",
            "rebuilt",
            "--format",
            "json",
        ],
    );
    assert_eq!(rebuilt.status.code(), Some(0), "{}", stderr(&rebuilt));
    let mut rebuilt = json(&dir.path().join("rebuilt/results.json"));
    let mut original = results.clone();
    // Only where the per-sample file was read from differs.
    rebuilt["samples_file"] = serde_json::Value::Null;
    original["samples_file"] = serde_json::Value::Null;
    assert_eq!(rebuilt, original);
}

/// A class of the model under test flagged with an index above `max_anomaly_index` fails the
/// run (exit 1) and the message names the scan and the class.
#[test]
fn a_flagged_class_of_the_model_under_test_fails_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"
[[trigger_scan]]
name = "neural_cleanse"
clean_samples = 50
epochs = 3
anomaly_threshold = 0.5

[gate]
max_anomaly_index = 0.5
"#;
    let suite = write_suite(dir.path(), "", body);
    let run = gauntlet(
        dir.path(),
        &["run", suite.to_str().unwrap(), "--out", "out", "-q"],
    );
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let message = stderr(&run);
    assert!(
        message.contains("gate failed: max_anomaly_index")
            && message.contains("neural_cleanse flags class"),
        "{message}"
    );
    let results = json(&dir.path().join("out/results.json"));
    let gate = &results["gates"][0];
    assert_eq!(gate["passed"], false);
    assert!(gate["actual"].as_f64().unwrap() > 0.5);
}

/// Bad parameters are named, exit 2, before any training.
#[test]
fn bad_backdoor_parameters_are_named_by_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str); 7] = [
        (
            "[[poisoning]]\nname = \"label_consistent\"\nrates = [0.05]\namplitude = 0.0\n",
            "`amplitude`",
        ),
        (
            "[[poisoning]]\nname = \"badnets\"\nrates = [0.05]\nsize = 9\n",
            "`size`",
        ),
        (
            "[[poisoning]]\nname = \"badnets\"\nrates = [0.05]\ntarget = 10\n",
            "`target`",
        ),
        ("[[poisoning]]\nname = \"badnets\"\nrates = [1.5]\n", "`rates`"),
        (
            "[[trigger_scan]]\nname = \"strip\"\noverlay = 3\n",
            "`overlay`",
        ),
        (
            "[[trigger_scan]]\nname = \"neural_cleanse\"\ntrue_trigger = { poisoning = \"badnets\", size = 12 }\n",
            "`size`",
        ),
        (
            "[[data_scan]]\nname = \"spectral_signatures\"\n",
            "[[poisoning]]",
        ),
    ];
    for (body, named) in cases {
        let suite = write_suite(dir.path(), "", body);
        let check = gauntlet(dir.path(), &["check", suite.to_str().unwrap()]);
        assert_eq!(check.status.code(), Some(2), "{body}");
        let message = stderr(&check);
        assert!(message.contains(named), "{body}: {message}");
    }
    // A class with no samples: with the first 12 digits (labels 0–9, 0, 1), the training part
    // of the split (i % 6 ∉ {0, 3}) has no 3.
    let suite = write_suite(
        dir.path(),
        "limit = 12",
        "[[poisoning]]\nname = \"badnets\"\nrates = [0.1]\ntarget = 3\n",
    );
    let run = gauntlet(dir.path(), &["run", suite.to_str().unwrap(), "-q"]);
    assert_eq!(run.status.code(), Some(2));
    let message = stderr(&run);
    assert!(
        message.contains("`target`") && message.contains("no samples"),
        "{message}"
    );
}
