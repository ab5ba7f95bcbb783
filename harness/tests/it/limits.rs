//! Requests beyond what a run can do are refused up front, with the key to change: model sizes
//! that overflow, memory past `max_memory_mib` (`--max-memory-mib` for `train`), work past
//! `max_passes`, and a model whose clean logits are not finite. `check` refuses what `run`
//! refuses, and progress goes to stderr unless `--quiet` (docs/limits.md).

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::*;

/// A suite over `model.toml` (written from `spec`) and the bundled weights, on the embedded
/// data, with `top` as top-level keys and `attack` as its one attack table.
fn suite(dir: &Path, spec: &str, top: &str, attack: &str) -> PathBuf {
    std::fs::write(dir.join("model.toml"), spec).unwrap();
    std::fs::copy(
        asset("fashion-mnist-small-cnn.safetensors"),
        dir.join("weights.safetensors"),
    )
    .unwrap();
    let text = format!(
        r#"version = 1
name = "limits"
batch_size = 16
{top}

[model]
spec = "model.toml"
weights = "weights.safetensors"

[dataset]
format = "idx"
path = "embedded:fashion-mnist-test-1k"
limit = 32

[[attack]]
{attack}

[sanity]
full_budget = false
"#
    );
    let path = dir.join("suite.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn bundled_spec() -> String {
    std::fs::read_to_string(asset("fashion-mnist-small-cnn.toml")).unwrap()
}

const FGSM: &str = "name = \"fgsm\"\nepsilons = [0.05]";

/// Exit 2, no panic, every word of `needles` in stderr; returns stderr.
fn refused(output: &Output, needles: &[&str]) -> String {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "expected `{needle}` in:\n{err}");
    }
    err
}

/// `check` and `run` refuse alike.
fn check_and_run_refuse(dir: &Path, needles: &[&str]) {
    refused(&gauntlet(dir, &["check", "suite.toml"]), needles);
    refused(
        &gauntlet(dir, &["run", "suite.toml", "-q", "--out", "out"]),
        needles,
    );
    assert!(!dir.join("out").exists(), "a refused run wrote its output");
}

#[test]
fn sizes_that_overflow_are_refused_naming_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    suite(
        dir.path(),
        "architecture = 'mlp'\ninput_shape = [1, 28, 28]\nnum_classes = 10\nhidden = [4611686018427387904]\n",
        "",
        FGSM,
    );
    check_and_run_refuse(dir.path(), &["model.toml", "layer `1` (linear)"]);
}

#[test]
fn a_model_beyond_the_memory_cap_is_refused_naming_max_memory_mib() {
    let dir = tempfile::tempdir().unwrap();
    // 10^11 weights: representable, but about 1.5 TiB by the estimate.
    suite(
        dir.path(),
        "architecture = 'linear'\ninput_shape = [1, 100000, 100000]\nnum_classes = 10\n",
        "",
        FGSM,
    );
    check_and_run_refuse(
        dir.path(),
        &[
            "`max_memory_mib` = 16384",
            "layer `1` (linear)",
            "suite.toml",
        ],
    );
}

#[test]
fn a_lowered_memory_cap_refuses_the_bundled_model_and_check_prints_the_estimate() {
    let dir = tempfile::tempdir().unwrap();
    suite(dir.path(), &bundled_spec(), "max_memory_mib = 1", FGSM);
    check_and_run_refuse(dir.path(), &["`max_memory_mib` = 1 MiB"]);
    suite(dir.path(), &bundled_spec(), "max_memory_mib = 1024", FGSM);
    let output = gauntlet(dir.path(), &["check", "suite.toml"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("memory: estimated peak") && text.contains("max_memory_mib = 1024"),
        "{text}"
    );
    // The work of FGSM on 32 samples: clean forward, one gradient and one scoring forward
    // each, and the ε = 0 probe on the same 32.
    assert!(
        text.contains("work in all: 224 passes (160 forward, 64 backward)"),
        "{text}"
    );
}

#[test]
fn train_refuses_a_model_beyond_the_memory_cap_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = write_idx_pair(dir.path(), 20);
    let train = |spec: &str, extra: &[&str]| {
        std::fs::write(dir.path().join("model.toml"), spec).unwrap();
        let mut args = vec![
            "train",
            "--spec",
            "model.toml",
            "--images",
            images.to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
            "--epochs",
            "1",
            "--out",
            "trained.safetensors",
            "-q",
        ];
        args.extend_from_slice(extra);
        gauntlet(dir.path(), &args)
    };
    refused(
        &train(
            "architecture = 'mlp'\ninput_shape = [1, 28, 28]\nnum_classes = 10\nhidden = [4611686018427387904]\n",
            &[],
        ),
        &["model.toml", "layer `1` (linear)"],
    );
    refused(
        &train(
            "architecture = 'linear'\ninput_shape = [1, 28, 28]\nnum_classes = 10000000\n",
            &[],
        ),
        &["--max-memory-mib", "layer `1` (linear)", "model.toml"],
    );
    refused(
        &train(&bundled_spec(), &["--max-memory-mib", "1"]),
        &["`--max-memory-mib` = 1 MiB"],
    );
    assert!(!dir.path().join("trained.safetensors").exists());
}

#[test]
fn a_billion_steps_or_restarts_are_refused_before_running_naming_max_passes() {
    let dir = tempfile::tempdir().unwrap();
    for attack in [
        "name = \"pgd\"\nepsilons = [0.05]\nsteps = 1000000000",
        "name = \"pgd\"\nepsilons = [0.05]\nsteps = 100\nrestarts = 4000000000",
    ] {
        suite(dir.path(), &bundled_spec(), "", attack);
        check_and_run_refuse(
            dir.path(),
            &[
                "`max_passes` = 1000000000",
                "attack pgd at ε = 0.05",
                "suite.toml",
            ],
        );
    }
    // A lowered cap refuses a small suite, with its estimate.
    suite(dir.path(), &bundled_spec(), "max_passes = 100", FGSM);
    check_and_run_refuse(
        dir.path(),
        &[
            "224 passes (160 forward, 64 backward)",
            "`max_passes` = 100",
        ],
    );
}

/// A linear model whose weights overflow f32 on any bright image: its clean logits are
/// infinite or NaN.
fn write_overflowing_model(dir: &Path) {
    let spec = "architecture = 'linear'\ninput_shape = [1, 28, 28]\nnum_classes = 10\n";
    let weights: Vec<u8> = std::iter::repeat_n(3.0e38f32, 10 * 784)
        .flat_map(f32::to_le_bytes)
        .collect();
    let bias: Vec<u8> = std::iter::repeat_n(0f32, 10)
        .flat_map(f32::to_le_bytes)
        .collect();
    let views = vec![
        (
            "1.weight".to_string(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![10, 784], &weights)
                .unwrap(),
        ),
        (
            "1.bias".to_string(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![10], &bias).unwrap(),
        ),
    ];
    suite(dir, spec, "", FGSM);
    safetensors::serialize_to_file(views, None, &dir.join("weights.safetensors")).unwrap();
}

#[test]
fn non_finite_clean_logits_are_refused_before_any_attack_naming_the_model() {
    let dir = tempfile::tempdir().unwrap();
    write_overflowing_model(dir.path());
    let output = gauntlet(dir.path(), &["run", "suite.toml", "--out", "out"]);
    let err = refused(
        &output,
        &["weights.safetensors", "not finite", "no attack was run"],
    );
    assert!(!err.contains("cannot write reports"), "{err}");
    assert!(!err.contains("progress: fgsm"), "an attack started:\n{err}");
    assert!(!dir.path().join("out").exists());
}

#[test]
fn progress_goes_to_stderr_unless_quiet() {
    let dir = tempfile::tempdir().unwrap();
    suite(dir.path(), &bundled_spec(), "", FGSM);
    let loud = gauntlet(dir.path(), &["run", "suite.toml", "--out", "loud"]);
    assert_eq!(loud.status.code(), Some(0), "{}", stderr(&loud));
    let err = stderr(&loud);
    for step in [
        "progress: clean accuracy",
        "progress: fgsm ε=0.05",
        "progress: sanity: fgsm ε=0",
    ] {
        assert!(err.contains(step), "expected `{step}` in:\n{err}");
    }
    let quiet = gauntlet(dir.path(), &["run", "suite.toml", "--out", "quiet", "-q"]);
    assert_eq!(quiet.status.code(), Some(0), "{}", stderr(&quiet));
    assert!(!stderr(&quiet).contains("progress"), "{}", stderr(&quiet));
}

/// A version-1.0 `.npy` file of `descr` and `shape` holding `payload`.
fn npy(descr: &str, shape: &str, payload: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// Two 3 × 1024 × 1024 images hold 12 Mi gallery values, past `MAX_GALLERY_VALUES` (8 Mi):
/// the gallery keeps one, and the report says so.
#[test]
fn the_report_notes_a_gallery_cut_to_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let side = 1024usize;
    let pixels: Vec<u8> = (0..2 * 3 * side * side).map(|i| (i % 251) as u8).collect();
    std::fs::write(
        dir.path().join("images.npy"),
        npy("|u1", &format!("(2, 3, {side}, {side})"), &pixels),
    )
    .unwrap();
    std::fs::write(dir.path().join("labels.npy"), npy("|u1", "(2,)", &[0, 1])).unwrap();
    std::fs::write(
        dir.path().join("model.toml"),
        format!(
            "architecture = 'sequential'\ninput_shape = [3, {side}, {side}]\nnum_classes = 2\n\
             [[layers]]\ntype = 'avg_pool2d'\nkernel_size = 64\n[[layers]]\ntype = 'flatten'\n\
             [[layers]]\ntype = 'linear'\nin_features = 768\nout_features = 2\n"
        ),
    )
    .unwrap();
    let weight: Vec<u8> = (0..2 * 768)
        .map(|i| if i % 3 == 0 { 0.5f32 } else { -0.25 })
        .flat_map(f32::to_le_bytes)
        .collect();
    let bias: Vec<u8> = [0.1f32, -0.1]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let views = vec![
        (
            "2.weight".to_string(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 768], &weight)
                .unwrap(),
        ),
        (
            "2.bias".to_string(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2], &bias).unwrap(),
        ),
    ];
    safetensors::serialize_to_file(views, None, &dir.path().join("weights.safetensors")).unwrap();
    std::fs::write(
        dir.path().join("suite.toml"),
        r#"version = 1
name = "large images"
batch_size = 2

[model]
spec = "model.toml"
weights = "weights.safetensors"

[dataset]
format = "npy"
images = "images.npy"
labels = "labels.npy"

[[attack]]
name = "fgsm"
epsilons = [0.05]

[sanity]
full_budget = false

[gate]
fail_on_sanity = false

[report]
formats = ["json"]
"#,
    )
    .unwrap();
    let output = gauntlet(dir.path(), &["run", "suite.toml", "-q", "--out", "out"]);
    assert!(output.status.code().unwrap() <= 1, "{}", stderr(&output));
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out/results.json")).unwrap(),
    )
    .unwrap();
    let gallery = results["examples"].as_array().unwrap();
    assert_eq!(gallery.len(), 1, "{results:#}");
    let notices = results.to_string();
    assert!(
        notices.contains("the gallery shows 1 of the 2 examples asked for"),
        "{}",
        stderr(&output)
    );
}
