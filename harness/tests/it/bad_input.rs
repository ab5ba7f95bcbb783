//! Bad input gets a clear error and exit code 2, never a panic. Each test also snapshots the
//! whole of stderr (`snapshots/it__bad_input__*.snap`, insta): the message is what a user reads,
//! so a change to it shows up in review.

use std::path::Path;

use crate::common::*;

/// Checks exit code 2, no panic and the `must_mention` words, and returns stderr with the temp
/// dir `dir` written as `[TMP]`, for the snapshot.
fn assert_exit_2(output: &std::process::Output, dir: &Path, must_mention: &[&str]) -> String {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(2), "stderr:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.starts_with("error: "), "{err}");
    for needle in must_mention {
        assert!(err.contains(needle), "expected `{needle}` in:\n{err}");
    }
    mask_dir(&err, dir)
}

fn bundled_weights() -> Vec<u8> {
    std::fs::read(asset("fashion-mnist-small-cnn.safetensors")).unwrap()
}

/// Rewrite a safetensors file through `edit`, which may drop or replace tensors.
fn rewrite_weights(
    dir: &Path,
    edit: impl Fn(&str, Vec<f32>, Vec<usize>) -> Option<(Vec<f32>, Vec<usize>)>,
) {
    let bytes = bundled_weights();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut kept: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
    for (name, view) in tensors.tensors() {
        assert_eq!(view.dtype(), safetensors::Dtype::F32);
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if let Some((values, shape)) = edit(&name, values, view.shape().to_vec()) {
            let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            kept.push((name, raw, shape));
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = kept
        .iter()
        .map(|(name, raw, shape)| {
            (
                name.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), raw)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("weights.safetensors")).unwrap();
}

const EMBEDDED_DATA: &str = r#"format = "idx"
path = "embedded:fashion-mnist-test-1k"
limit = 8"#;

fn run_suite(dir: &Path) -> std::process::Output {
    gauntlet(dir, &["run", "suite.toml", "-q"])
}

#[test]
fn truncated_idx_images() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = write_idx_pair(dir.path(), 10);
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..bytes.len() - 100]).unwrap();
    std::fs::copy(
        asset("fashion-mnist-small-cnn.safetensors"),
        dir.path().join("weights.safetensors"),
    )
    .unwrap();
    write_suite(
        dir.path(),
        "weights.safetensors",
        &format!(
            "format = \"idx\"\nimages = \"{}\"\nlabels = \"{}\"",
            images.file_name().unwrap().to_str().unwrap(),
            labels.file_name().unwrap().to_str().unwrap()
        ),
        "",
    );
    let message = assert_exit_2(&run_suite(dir.path()), dir.path(), &["images.idx"]);
    insta::assert_snapshot!(message);
}

#[test]
fn wrong_magic_idx_labels() {
    let dir = tempfile::tempdir().unwrap();
    let (_, labels) = write_idx_pair(dir.path(), 10);
    let mut bytes = std::fs::read(&labels).unwrap();
    bytes[2] = 0x0D; // float32 payload type: not a label file
    std::fs::write(&labels, bytes).unwrap();
    std::fs::copy(
        asset("fashion-mnist-small-cnn.safetensors"),
        dir.path().join("weights.safetensors"),
    )
    .unwrap();
    write_suite(
        dir.path(),
        "weights.safetensors",
        "format = \"idx\"\nimages = \"images.idx\"\nlabels = \"labels.idx\"",
        "",
    );
    let message = assert_exit_2(&run_suite(dir.path()), dir.path(), &["labels.idx"]);
    insta::assert_snapshot!(message);
}

#[test]
fn safetensors_with_a_missing_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let mut dropped = String::new();
    let bytes = bundled_weights();
    let mut names: Vec<String> = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap()
        .names()
        .into_iter()
        .map(str::to_string)
        .collect();
    // Sorted: `names()` comes from a hash map, and the snapshot names the dropped tensor.
    names.sort();
    dropped.push_str(names.iter().find(|n| n.ends_with("bias")).unwrap());
    let target = dropped.clone();
    rewrite_weights(dir.path(), move |name, values, shape| {
        (name != target).then_some((values, shape))
    });
    write_suite(dir.path(), "weights.safetensors", EMBEDDED_DATA, "");
    let message = assert_exit_2(
        &run_suite(dir.path()),
        dir.path(),
        &["weights.safetensors", &dropped],
    );
    insta::assert_snapshot!(message);
}

#[test]
fn nan_weights() {
    let dir = tempfile::tempdir().unwrap();
    rewrite_weights(dir.path(), |name, mut values, shape| {
        if name.ends_with("weight") {
            values[0] = f32::NAN;
        }
        Some((values, shape))
    });
    write_suite(dir.path(), "weights.safetensors", EMBEDDED_DATA, "");
    let message = assert_exit_2(&run_suite(dir.path()), dir.path(), &["weights.safetensors"]);
    insta::assert_snapshot!(message);
    assert!(stderr(&run_suite(dir.path()))
        .to_lowercase()
        .contains("nan"));
}

#[test]
fn dataset_shape_does_not_fit_the_model() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        asset("fashion-mnist-small-cnn.safetensors"),
        dir.path().join("weights.safetensors"),
    )
    .unwrap();
    write_suite(
        dir.path(),
        "weights.safetensors",
        "format = \"idx\"\npath = \"embedded:uci-digits\"",
        "",
    );
    let message = assert_exit_2(
        &run_suite(dir.path()),
        dir.path(),
        &["shape", "[1, 8, 8]", "[1, 28, 28]"],
    );
    insta::assert_snapshot!(message);
}

#[test]
fn unknown_key_in_a_suite_file() {
    let dir = tempfile::tempdir().unwrap();
    write_suite(
        dir.path(),
        "weights.safetensors",
        EMBEDDED_DATA,
        "[report]\nformat = [\"json\"]\n",
    );
    let output = gauntlet(dir.path(), &["check", "suite.toml"]);
    let message = assert_exit_2(&output, dir.path(), &["suite.toml", "format"]);
    insta::assert_snapshot!(message);
}

#[test]
fn unknown_attack_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let suite = write_suite(dir.path(), "weights.safetensors", EMBEDDED_DATA, "");
    let text = std::fs::read_to_string(&suite)
        .unwrap()
        .replace("epsilons = [0.05]", "epsilons = [0.05]\nstpes = 3");
    std::fs::write(&suite, text).unwrap();
    let message = assert_exit_2(
        &gauntlet(dir.path(), &["check", "suite.toml"]),
        dir.path(),
        &["suite.toml", "stpes"],
    );
    insta::assert_snapshot!(message);
}

#[test]
fn sha256_mismatch_refuses_to_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        asset("fashion-mnist-small-cnn.safetensors"),
        dir.path().join("weights.safetensors"),
    )
    .unwrap();
    let suite = write_suite(dir.path(), "weights.safetensors", EMBEDDED_DATA, "");
    let text = std::fs::read_to_string(&suite).unwrap().replace(
        "weights = \"weights.safetensors\"",
        &format!(
            "weights = \"weights.safetensors\"\nsha256 = \"{}\"",
            "0".repeat(64)
        ),
    );
    std::fs::write(&suite, text).unwrap();
    let message = assert_exit_2(
        &run_suite(dir.path()),
        dir.path(),
        &["SHA-256", "weights.safetensors"],
    );
    insta::assert_snapshot!(message);
}

#[test]
fn missing_weights_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    write_suite(dir.path(), "nowhere.safetensors", EMBEDDED_DATA, "");
    let message = assert_exit_2(&run_suite(dir.path()), dir.path(), &["nowhere.safetensors"]);
    insta::assert_snapshot!(message);
}

#[test]
fn truncated_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = bundled_weights();
    std::fs::write(
        dir.path().join("weights.safetensors"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    write_suite(dir.path(), "weights.safetensors", EMBEDDED_DATA, "");
    let message = assert_exit_2(&run_suite(dir.path()), dir.path(), &["weights.safetensors"]);
    insta::assert_snapshot!(message);
}

#[test]
fn garbled_suite_file() {
    let dir = tempfile::tempdir().unwrap();
    let suite = write_suite(dir.path(), "weights.safetensors", EMBEDDED_DATA, "");
    let text = std::fs::read_to_string(&suite)
        .unwrap()
        .replace("name = \"fgsm\"", "name = \"fgsm");
    std::fs::write(&suite, text).unwrap();
    let message = assert_exit_2(
        &gauntlet(dir.path(), &["check", "suite.toml"]),
        dir.path(),
        &["suite.toml"],
    );
    insta::assert_snapshot!(message);
}

#[test]
fn truncated_suite_file() {
    let dir = tempfile::tempdir().unwrap();
    let suite = write_suite(dir.path(), "weights.safetensors", EMBEDDED_DATA, "");
    let text = std::fs::read_to_string(&suite).unwrap();
    // Cut in the middle of the `[[attack]]` header, as an interrupted copy would.
    let cut = text.find("[[attack]]").unwrap() + "[[att".len();
    std::fs::write(&suite, &text[..cut]).unwrap();
    let message = assert_exit_2(&run_suite(dir.path()), dir.path(), &["suite.toml"]);
    insta::assert_snapshot!(message);
}
