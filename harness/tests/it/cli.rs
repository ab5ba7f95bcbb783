use crate::common::*;

#[test]
fn embedded_default_suite_writes_json_csv_and_html() {
    let dir = tempfile::tempdir().unwrap();
    let output = gauntlet(dir.path(), &["run", "--limit", "24", "--quiet"]);
    // The default suite must pass its own gate and every sanity check.
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    let out = dir.path().join("gauntlet-out");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["schema_version"], 5);
    assert_eq!(json["dataset"]["samples"], 24);
    assert_eq!(json["samples_file"], "samples.parquet");
    assert_eq!(json["kernel_path"]["path"], "native");
    assert!(out.join("samples.parquet").is_file());
    let attacks = json["attacks"].as_array().unwrap();
    assert_eq!(attacks.len(), 8, "fgsm and pgd at 4 ε each");
    for attack in attacks {
        let robust = attack["robust_accuracy"]["value"].as_f64().unwrap();
        assert!(robust <= json["clean"]["accuracy"]["value"].as_f64().unwrap());
    }
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    // header, clean, 8 (attack, ε) rows, 4 worst-case rows
    assert_eq!(csv.lines().count(), 14, "{csv}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("data:image/png;base64,"));
    assert!(stdout(&output).contains("clean"));
}

#[test]
fn a_failed_gate_exits_1_and_says_by_how_much() {
    let dir = tempfile::tempdir().unwrap();
    let suite = write_suite(
        dir.path(),
        "weights.safetensors",
        r#"format = "idx"
path = "embedded:fashion-mnist-test-1k"
limit = 16"#,
        "[gate]\nmin_clean_accuracy = 1.0\n[gate.min_robust_accuracy]\n\"fgsm@0.05\" = 1.0\n",
    );
    std::fs::copy(
        asset("fashion-mnist-small-cnn.safetensors"),
        dir.path().join("weights.safetensors"),
    )
    .unwrap();
    let output = gauntlet(dir.path(), &["run", suite.to_str().unwrap(), "-q"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains("gate failed: min_robust_accuracy[fgsm@0.05]"),
        "{err}"
    );
    assert!(err.contains("short by"), "{err}");
}

#[test]
fn check_validates_without_running() {
    let dir = tempfile::tempdir().unwrap();
    let suite = write_suite(
        dir.path(),
        "weights.safetensors",
        r#"format = "idx"
path = "embedded:fashion-mnist-test-1k""#,
        "",
    );
    let missing = gauntlet(dir.path(), &["check", suite.to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("`model.weights`"),
        "{}",
        stderr(&missing)
    );
    std::fs::copy(
        asset("fashion-mnist-small-cnn.safetensors"),
        dir.path().join("weights.safetensors"),
    )
    .unwrap();
    let output = gauntlet(dir.path(), &["check", suite.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("attack fgsm"));
}

/// The per-sample file alone rebuilds `results.json`: the same figures, checks, gates and
/// gallery, because every one of them is aggregated from the records.
#[test]
fn report_rebuilds_results_from_the_per_sample_file() {
    let dir = tempfile::tempdir().unwrap();
    let run = gauntlet(dir.path(), &["run", "--limit", "40", "-q"]);
    assert!(run.status.code().unwrap() <= 1, "{}", stderr(&run));
    let samples = dir.path().join("gauntlet-out/samples.parquet");
    let output = gauntlet(
        dir.path(),
        &[
            "report",
            samples.to_str().unwrap(),
            "--out",
            "rebuilt",
            "--format",
            "json,html",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let read = |path: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.path().join(path)).unwrap()).unwrap()
    };
    let original = read("gauntlet-out/results.json");
    let rebuilt = read("rebuilt/results.json");
    assert_eq!(rebuilt, original);
    assert!(dir.path().join("rebuilt/report.html").exists());
}

#[test]
fn report_rerenders_from_results_alone() {
    let dir = tempfile::tempdir().unwrap();
    let run = gauntlet(
        dir.path(),
        &["run", "--limit", "8", "-q", "--format", "json"],
    );
    assert!(run.status.code().unwrap() <= 1, "{}", stderr(&run));
    let results = dir.path().join("gauntlet-out/results.json");
    let output = gauntlet(
        dir.path(),
        &[
            "report",
            results.to_str().unwrap(),
            "--out",
            "again",
            "--format",
            "html,csv",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(dir.path().join("again/report.html").exists());
    assert!(dir.path().join("again/results.csv").exists());
}

#[test]
fn cuda_without_the_feature_exits_2() {
    if cfg!(feature = "cuda") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = gauntlet(
        dir.path(),
        &["run", "--device", "cuda", "--limit", "4", "-q"],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("without CUDA support"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn help_documents_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let output = gauntlet(dir.path(), &["run", "--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = stdout(&output);
    assert!(
        help.contains("Exit codes") && help.contains("2  it could not run"),
        "{help}"
    );
}

#[test]
fn list_attacks_markdown_matches_docs() {
    let dir = tempfile::tempdir().unwrap();
    let output = gauntlet(dir.path(), &["list", "attacks", "--markdown"]);
    assert_eq!(output.status.code(), Some(0));
    let docs = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/attacks.md"),
    )
    .unwrap();
    assert_eq!(
        stdout(&output).trim_end(),
        docs.trim_end(),
        "docs/attacks.md is stale: run `just docs`"
    );
}

#[test]
fn list_detectors_names_every_registered_detector() {
    let dir = tempfile::tempdir().unwrap();
    let output = gauntlet(dir.path(), &["list", "detectors"]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    let markdown = stdout(&gauntlet(dir.path(), &["list", "detectors", "--markdown"]));
    for entry in gauntlet_attacks::detector::DETECTORS {
        assert!(text.contains(entry.summary), "{text}");
        assert!(
            markdown.contains(&format!("| `{}` |", entry.name)),
            "{markdown}"
        );
    }
}

#[test]
fn every_example_suite_is_valid() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/suites");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let output = gauntlet(&examples, &["check", path.to_str().unwrap()]);
            assert_eq!(
                output.status.code(),
                Some(0),
                "{}: {}",
                path.display(),
                stderr(&output)
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "found only {checked} example suites");
}

#[test]
fn the_same_seed_gives_the_same_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let results = |out: &str| {
        let output = gauntlet(
            dir.path(),
            &[
                "run", "--limit", "12", "-q", "--format", "json", "--out", out,
            ],
        );
        assert!(output.status.code().unwrap() <= 1, "{}", stderr(&output));
        let mut json: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join(out).join("results.json")).unwrap(),
        )
        .unwrap();
        // Wall-clock times are the only fields allowed to differ.
        json.as_object_mut().unwrap().remove("timings");
        for attack in json["attacks"].as_array_mut().unwrap() {
            attack.as_object_mut().unwrap().remove("seconds");
        }
        json
    };
    assert_eq!(results("first"), results("second"));
}

#[test]
fn candle_kernels_give_the_same_accuracies_as_the_native_ones() {
    let dir = tempfile::tempdir().unwrap();
    let accuracies = |extra: &[&str]| {
        let out = if extra.is_empty() { "native" } else { "candle" };
        let mut args = vec![
            "run", "--limit", "40", "-q", "--format", "json", "--out", out,
        ];
        args.extend_from_slice(extra);
        let output = gauntlet(dir.path(), &args);
        assert!(output.status.code().unwrap() <= 1, "{}", stderr(&output));
        let json: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join(out).join("results.json")).unwrap(),
        )
        .unwrap();
        // Counts of correct samples, overall and per class; losses may differ in rounding.
        let rows: Vec<(String, String, String)> = json["attacks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["label"].to_string(),
                    a["robust_accuracy"]["successes"].to_string(),
                    a["per_class"].to_string(),
                )
            })
            .collect();
        assert!(rows.len() >= 8, "{rows:?}");
        assert!(
            rows.iter().all(|(_, successes, _)| successes != "null"),
            "{rows:?}"
        );
        let clean = json["clean"]["accuracy"]["successes"].to_string();
        assert_ne!(clean, "null");
        (clean, rows)
    };
    assert_eq!(accuracies(&[]), accuracies(&["--candle-kernels"]));
}

#[test]
fn train_then_run_the_trained_model() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = write_idx_pair(dir.path(), 200);
    std::fs::write(
        dir.path().join("linear.toml"),
        "architecture = \"linear\"\ninput_shape = [1, 28, 28]\nnum_classes = 10\n",
    )
    .unwrap();
    let train = gauntlet(
        dir.path(),
        &[
            "train",
            "--spec",
            "linear.toml",
            "--images",
            images.to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
            "--epochs",
            "5",
            "--batch-size",
            "20",
            "--optimizer",
            "sgd",
            "--learning-rate",
            "0.1",
            "--seed",
            "3",
            "--out",
            "linear.safetensors",
            "-q",
        ],
    );
    assert_eq!(train.status.code(), Some(0), "{}", stderr(&train));
    assert!(stdout(&train).contains("final train accuracy"));
    // The bars are linearly separable: the trained model must clear a 95% gate on them.
    let suite = format!(
        r#"version = 1
name = "trained here"
[model]
spec = "linear.toml"
weights = "linear.safetensors"
[dataset]
format = "idx"
images = "{}"
labels = "{}"
[[attack]]
name = "fgsm"
epsilons = [0.01]
[gate]
min_clean_accuracy = 0.95
[sanity]
full_budget = false
"#,
        images.file_name().unwrap().to_str().unwrap(),
        labels.file_name().unwrap().to_str().unwrap()
    );
    std::fs::write(dir.path().join("suite.toml"), suite).unwrap();
    let run = gauntlet(dir.path(), &["run", "suite.toml", "-q"]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&run),
        stderr(&run)
    );
}

/// A run never mixes with an earlier run's files: a second run into the same folder is refused
/// before any work, and `--overwrite` replaces the whole folder (the old report is gone when the
/// new run writes only JSON).
#[test]
fn a_second_run_into_the_same_folder_is_refused_or_replaces_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let first = gauntlet(dir.path(), &["run", "--limit", "8", "-q", "--out", "runs"]);
    assert!(first.status.code().unwrap() <= 1, "{}", stderr(&first));
    let out = dir.path().join("runs");
    let before = std::fs::read(out.join("results.json")).unwrap();
    assert!(out.join("report.html").is_file());

    let again = [
        "run", "--limit", "8", "-q", "--out", "runs", "--format", "json", "--seed", "7",
    ];
    let second = gauntlet(dir.path(), &again);
    assert_eq!(second.status.code(), Some(2), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("--overwrite"),
        "{}",
        stderr(&second)
    );
    assert_eq!(std::fs::read(out.join("results.json")).unwrap(), before);

    let replaced = gauntlet(dir.path(), &[&again[..], &["--overwrite"]].concat());
    assert!(
        replaced.status.code().unwrap() <= 1,
        "{}",
        stderr(&replaced)
    );
    assert_eq!(sorted_names(&out), ["results.json", "samples.parquet"]);
    let leftovers: Vec<String> = sorted_names(dir.path())
        .into_iter()
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "staging folders left: {leftovers:?}");
}

/// The README's first command (the embedded default, no suite, no `--out`) can be run again:
/// its default folder is replaced whole, never mixed — and never when it holds a foreign file.
#[test]
fn the_embedded_default_replaces_its_own_earlier_run() {
    let dir = tempfile::tempdir().unwrap();
    let first = gauntlet(dir.path(), &["run", "--limit", "8", "-q"]);
    assert!(first.status.code().unwrap() <= 1, "{}", stderr(&first));
    let out = dir.path().join("gauntlet-out");
    assert!(out.join("report.html").is_file());

    let second = gauntlet(
        dir.path(),
        &["run", "--limit", "8", "-q", "--format", "json"],
    );
    assert!(second.status.code().unwrap() <= 1, "{}", stderr(&second));
    assert_eq!(sorted_names(&out), ["results.json", "samples.parquet"]);

    std::fs::write(out.join("notes.txt"), "keep me").unwrap();
    let third = gauntlet(dir.path(), &["run", "--limit", "8", "-q"]);
    assert_eq!(third.status.code(), Some(2), "{}", stderr(&third));
    assert!(out.join("notes.txt").is_file());
}

/// `--overwrite` never removes files gauntlet did not write.
#[test]
fn overwrite_refuses_a_folder_holding_other_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("mine")).unwrap();
    std::fs::write(dir.path().join("mine/notes.txt"), "keep me").unwrap();
    let output = gauntlet(
        dir.path(),
        &["run", "--limit", "4", "-q", "--out", "mine", "--overwrite"],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("notes.txt"), "{}", stderr(&output));
    assert!(dir.path().join("mine/notes.txt").is_file());
}

/// A run that fails leaves no output folder behind (the reports are written into a staging
/// folder and renamed into place only when complete).
#[test]
fn a_failed_run_leaves_no_partial_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("suite.toml"),
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/default_suite.toml"),
        )
        .unwrap()
        .replace(
            "weights = \"embedded:fashion-mnist-small-cnn\"",
            "weights = \"broken.safetensors\"",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("broken.safetensors"),
        b"not a safetensors file",
    )
    .unwrap();
    let output = gauntlet(dir.path(), &["run", "suite.toml", "-q"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["broken.safetensors", "suite.toml"],
        "{}",
        stderr(&output)
    );
}

#[test]
fn manifest_help_names_the_file_it_writes() {
    let dir = tempfile::tempdir().unwrap();
    let output = gauntlet(dir.path(), &["manifest", "create", "--help"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(
        stdout(&output).contains(gauntlet_artifact::manifest::DEFAULT_MANIFEST_FILE_NAME),
        "{}",
        stdout(&output)
    );
}

/// The names in a folder, sorted.
fn sorted_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}
