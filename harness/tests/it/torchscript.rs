//! TorchScript suites (`[model] weights = "cnn.torchscript.pt"` + `input_shape`): with the
//! `torch` feature the byom CNN traced by PyTorch gives the same clean and FGSM/PGD robust
//! accuracy as its safetensors weights under the same seed, and a hostile archive is refused
//! before libtorch sees it; without the feature the suite is refused with the rebuild command.

use std::path::{Path, PathBuf};

use crate::common::*;

fn byom(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/tests/fixtures/byom")
        .join(file)
}

/// A suite over `model_table` and the first 200 shipped UCI digits, FGSM and PGD at ε = 0.1.
fn write_byom_suite(dir: &Path, name: &str, model_table: &str) -> PathBuf {
    let suite = format!(
        r#"version = 1
name = "{name}"
seed = 3
batch_size = 64

[model]
{model_table}

[dataset]
format = "idx"
path = "embedded:uci-digits"
limit = 200

[[attack]]
name = "fgsm"
epsilons = [0.1]

[[attack]]
name = "pgd"
epsilons = [0.1]
steps = 10

[sanity]
full_budget_samples = 32
"#
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, suite).unwrap();
    path
}

fn copy_fixture(dir: &Path, file: &str) {
    std::fs::copy(byom(file), dir.join(file)).unwrap();
}

const TORCHSCRIPT_MODEL: &str = "weights = \"cnn.torchscript.pt\"\ninput_shape = [1, 8, 8]";

#[cfg(feature = "torch")]
fn results(dir: &Path, suite: &Path, out: &str) -> serde_json::Value {
    let output = gauntlet(
        dir,
        &[
            "run",
            suite.to_str().unwrap(),
            "-q",
            "--format",
            "json",
            "--out",
            out,
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    serde_json::from_slice(&std::fs::read(dir.join(out).join("results.json")).unwrap()).unwrap()
}

#[cfg(feature = "torch")]
#[test]
fn a_torchscript_suite_has_the_safetensors_models_robust_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["cnn.torchscript.pt", "cnn.toml", "cnn.safetensors"] {
        copy_fixture(dir.path(), file);
    }
    let torchscript = write_byom_suite(dir.path(), "torchscript", TORCHSCRIPT_MODEL);
    let native = write_byom_suite(
        dir.path(),
        "native",
        "spec = \"cnn.toml\"\nweights = \"cnn.safetensors\"",
    );
    let ours = results(dir.path(), &torchscript, "ts");
    let theirs = results(dir.path(), &native, "native");
    assert_eq!(ours["model"]["format"], "torchscript");
    assert_eq!(ours["kernel_path"]["path"], "libtorch");
    assert_eq!(ours["model"]["num_classes"], 10);
    assert_eq!(ours["model"]["parameters"], theirs["model"]["parameters"]);
    let successes = |json: &serde_json::Value| {
        let mut rows = vec![(
            "clean".to_string(),
            json["clean"]["accuracy"]["successes"].as_u64().unwrap(),
        )];
        for attack in json["attacks"].as_array().unwrap() {
            rows.push((
                attack["label"].as_str().unwrap().to_string(),
                attack["robust_accuracy"]["successes"].as_u64().unwrap(),
            ));
        }
        rows
    };
    let (ours, theirs) = (successes(&ours), successes(&theirs));
    assert_eq!(ours.len(), 3, "{ours:?}");
    assert!(ours[0].1 >= 180, "the fixture model is trained: {ours:?}");
    assert!(ours[2].1 < ours[0].1, "PGD lowers the accuracy: {ours:?}");
    assert_eq!(ours, theirs, "TorchScript vs safetensors");
}

#[cfg(feature = "torch")]
#[test]
fn a_torchscript_suite_without_input_shape_or_with_a_hostile_archive_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path(), "cnn.torchscript.pt");
    copy_fixture(dir.path(), "evil.torchscript.pt");
    let suite = write_byom_suite(dir.path(), "shape", "weights = \"cnn.torchscript.pt\"");
    let output = gauntlet(dir.path(), &["check", suite.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("`model.input_shape` is required"),
        "{}",
        stderr(&output)
    );
    let suite = write_byom_suite(
        dir.path(),
        "evil",
        "weights = \"evil.torchscript.pt\"\ninput_shape = [1, 8, 8]",
    );
    let output = gauntlet(dir.path(), &["check", suite.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("posix.system"),
        "{}",
        stderr(&output)
    );
    // Even with the provenance checks waived, the model's own scan refuses the archive.
    let output = gauntlet(
        dir.path(),
        &["check", suite.to_str().unwrap(), "--allow-unverified"],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("libtorch never saw it"),
        "{}",
        stderr(&output)
    );
}

#[cfg(not(feature = "torch"))]
#[test]
fn without_the_torch_feature_a_torchscript_suite_says_how_to_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path(), "cnn.torchscript.pt");
    let suite = write_byom_suite(dir.path(), "torchscript", TORCHSCRIPT_MODEL);
    let output = gauntlet(dir.path(), &["check", suite.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(text.contains("is a TorchScript archive"), "{text}");
    assert!(text.contains("--features torch"), "{text}");
}

#[cfg(feature = "torch")]
#[test]
fn inspect_lists_a_torchscript_models_parameters_and_runs_it_with_an_input_shape() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path(), "cnn.torchscript.pt");
    let output = gauntlet(
        dir.path(),
        &["inspect", "cnn.torchscript.pt", "--input-shape", "1,8,8"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    for line in [
        "format:     torchscript",
        "input:      [batch, 1, 8, 8]",
        "classes:    10",
        "parameters: 5946",
        "kernels:    libtorch (TorchScript)",
        "0.weight",
        "10.weight",
    ] {
        assert!(text.contains(line), "`{line}` missing from:\n{text}");
    }
    let output = gauntlet(dir.path(), &["inspect", "cnn.torchscript.pt"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("loads:      no — a TorchScript archive declares no input shape"),
        "{}",
        stdout(&output)
    );
}

#[cfg(not(feature = "torch"))]
#[test]
fn without_the_torch_feature_inspect_names_the_format_and_the_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path(), "cnn.torchscript.pt");
    let output = gauntlet(dir.path(), &["inspect", "cnn.torchscript.pt"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("format:     torchscript"), "{text}");
    assert!(text.contains("sha256:"), "{text}");
    assert!(text.contains("--features torch"), "{text}");
}
