use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `gauntlet` binary under test, run in `dir` with colour and progress off.
pub fn gauntlet(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gauntlet"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("the gauntlet binary runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The repository's bundled model files.
pub fn asset(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/assets")
        .join(name)
}

/// Write an IDX file (u8 payload) with the given magic and dimensions.
pub fn idx_bytes(magic_type: u8, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, magic_type, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(payload);
    bytes
}

/// A valid IDX pair of `n` 28×28 images (a vertical bar whose position is the label).
pub fn write_idx_pair(dir: &Path, n: u32) -> (PathBuf, PathBuf) {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let label = (i % 10) as u8;
        for _row in 0..28 {
            for col in 0..28u8 {
                pixels.push(if col / 3 == label { 255 } else { 0 });
            }
        }
        labels.push(label);
    }
    let images = dir.join("images.idx");
    let labels_path = dir.join("labels.idx");
    std::fs::write(&images, idx_bytes(0x08, &[n, 28, 28], &pixels)).unwrap();
    std::fs::write(&labels_path, idx_bytes(0x08, &[n], &labels)).unwrap();
    (images, labels_path)
}

/// A suite over the bundled model (copied into `dir`) and the given data table.
pub fn write_suite(dir: &Path, weights: &str, dataset_table: &str, extra: &str) -> PathBuf {
    std::fs::copy(
        asset("fashion-mnist-small-cnn.toml"),
        dir.join("model.toml"),
    )
    .unwrap();
    let suite = format!(
        r#"version = 1
name = "test suite"
seed = 1
batch_size = 32

[model]
spec = "model.toml"
weights = "{weights}"

[dataset]
{dataset_table}

[[attack]]
name = "fgsm"
epsilons = [0.05]

[sanity]
full_budget = false

{extra}
"#
    );
    let path = dir.join("suite.toml");
    std::fs::write(&path, suite).unwrap();
    path
}

/// `text` with every spelling of the path `dir` (as given, and canonical) written as `[TMP]`,
/// so that a snapshot holds nothing of this machine.
pub fn mask_dir(text: &str, dir: &Path) -> String {
    let mut masked = text.to_string();
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    for spelling in [canonical, dir.to_path_buf()] {
        masked = masked.replace(spelling.to_string_lossy().as_ref(), "[TMP]");
    }
    masked
}
