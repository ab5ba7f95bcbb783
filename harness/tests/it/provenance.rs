//! Artifact commands (`scan`, `manifest`, `sign`, `verify`, `bom`) and the provenance checks
//! `gauntlet run` makes before it loads a model.

use std::path::{Path, PathBuf};

use crate::common::*;

/// A pickle that would call `os.system("true")` on load (protocol 2, built by hand).
fn malicious_pickle() -> Vec<u8> {
    let mut bytes = b"\x80\x02cos\nsystem\n".to_vec();
    bytes.extend_from_slice(b"X\x04\x00\x00\x00true\x85R.");
    bytes
}

fn signing_key(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/artifact/tests/fixtures/signing/keys")
        .join(name)
}

/// A model folder holding the bundled spec and weights.
fn model_folder(root: &Path) -> PathBuf {
    let dir = root.join("model");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        asset("fashion-mnist-small-cnn.toml"),
        dir.join("model.toml"),
    )
    .unwrap();
    std::fs::copy(
        asset("fashion-mnist-small-cnn.safetensors"),
        dir.join("weights.safetensors"),
    )
    .unwrap();
    dir
}

fn suite_over_folder(root: &Path, model_extra: &str) -> PathBuf {
    let suite = format!(
        r#"version = 1
name = "provenance"
[model]
spec = "model/model.toml"
weights = "model/weights.safetensors"
{model_extra}
[dataset]
format = "idx"
path = "embedded:fashion-mnist-test-1k"
limit = 8
[[attack]]
name = "fgsm"
epsilons = [0.01]
[sanity]
full_budget = false
"#
    );
    let path = root.join("suite.toml");
    std::fs::write(&path, suite).unwrap();
    path
}

fn results(root: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(root.join("gauntlet-out/results.json")).unwrap()).unwrap()
}

#[test]
fn scan_flags_a_malicious_pickle_and_passes_clean_weights() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("innocent.bin"), malicious_pickle()).unwrap();
    let found = gauntlet(dir.path(), &["scan", "innocent.bin"]);
    assert_eq!(found.status.code(), Some(1), "{}", stderr(&found));
    let text = stdout(&found);
    assert!(
        text.contains("CRITICAL") && text.contains("innocent.bin"),
        "{text}"
    );

    let sarif = gauntlet(dir.path(), &["scan", "innocent.bin", "--format", "sarif"]);
    let log: serde_json::Value = serde_json::from_slice(&sarif.stdout).unwrap();
    assert_eq!(log["version"], "2.1.0");
    assert_eq!(log["runs"][0]["results"][0]["level"], "error");

    let model = model_folder(dir.path());
    let weights = model.join("weights.safetensors");
    let clean = gauntlet(
        dir.path(),
        &["scan", weights.to_str().unwrap(), "--fail-on", "info"],
    );
    assert_eq!(clean.status.code(), Some(0), "{}", stdout(&clean));
    // The folder also holds the TOML spec, which no scanner identifies: reported, below `high`.
    let folder = gauntlet(dir.path(), &["scan", model.to_str().unwrap()]);
    assert_eq!(folder.status.code(), Some(0), "{}", stdout(&folder));
    assert!(stdout(&folder).contains("unidentified-file"));

    let missing = gauntlet(dir.path(), &["scan", "nowhere.pt"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("nowhere.pt"));
}

#[test]
fn manifest_catches_a_flipped_byte_and_an_added_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_folder(dir.path());
    let model_arg = model.to_str().unwrap();
    let create = gauntlet(dir.path(), &["manifest", "create", model_arg]);
    assert_eq!(create.status.code(), Some(0), "{}", stderr(&create));
    assert_eq!(
        gauntlet(dir.path(), &["manifest", "verify", model_arg])
            .status
            .code(),
        Some(0)
    );

    let weights = model.join("weights.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&weights, bytes).unwrap();
    std::fs::write(model.join("extra.txt"), "hello").unwrap();
    let verify = gauntlet(dir.path(), &["manifest", "verify", model_arg]);
    assert_eq!(verify.status.code(), Some(1));
    let text = stdout(&verify);
    assert!(
        text.contains("modified") && text.contains("weights.safetensors"),
        "{text}"
    );
    assert!(text.contains("unexpected extra.txt"), "{text}");
}

#[test]
fn sign_then_verify_and_a_wrong_key_fails() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_folder(dir.path());
    let model_arg = model.to_str().unwrap();
    let key = signing_key("p256.key.pem");
    let sign = gauntlet(
        dir.path(),
        &["sign", model_arg, "--private-key", key.to_str().unwrap()],
    );
    assert_eq!(sign.status.code(), Some(0), "{}", stderr(&sign));
    assert!(dir.path().join("model.sig").exists());
    let good = gauntlet(
        dir.path(),
        &[
            "verify",
            model_arg,
            "--public-key",
            signing_key("p256.pub.pem").to_str().unwrap(),
        ],
    );
    assert_eq!(good.status.code(), Some(0), "{}", stdout(&good));
    let wrong = gauntlet(
        dir.path(),
        &[
            "verify",
            model_arg,
            "--public-key",
            signing_key("other_p256.pub.pem").to_str().unwrap(),
        ],
    );
    assert_eq!(wrong.status.code(), Some(1), "{}", stdout(&wrong));
}

#[test]
fn run_records_a_verified_model_in_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_folder(dir.path());
    let sha = gauntlet(dir.path(), &["manifest", "create", model.to_str().unwrap()]);
    assert_eq!(sha.status.code(), Some(0));
    let key = signing_key("p256.key.pem");
    let signature = dir.path().join("model.sig");
    let sign = gauntlet(
        dir.path(),
        &[
            "sign",
            model.to_str().unwrap(),
            "--private-key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(sign.status.code(), Some(0), "{}", stderr(&sign));
    suite_over_folder(
        dir.path(),
        &format!(
            "manifest = \"model/gauntlet-manifest.json\"\nsignature = \"{}\"\npublic_key = \"{}\"",
            signature.display(),
            signing_key("p256.pub.pem").display()
        ),
    );
    let run = gauntlet(dir.path(), &["run", "suite.toml", "-q", "--format", "json"]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let provenance = &results(dir.path())["provenance"];
    assert_eq!(provenance["verdict"], "verified", "{provenance}");
    assert_eq!(
        provenance["checks"].as_array().unwrap().len(),
        3,
        "manifest, signature, scan"
    );
    assert!(provenance["signer"].is_string());
}

#[test]
fn run_refuses_a_tampered_model_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_folder(dir.path());
    let create = gauntlet(dir.path(), &["manifest", "create", model.to_str().unwrap()]);
    assert_eq!(create.status.code(), Some(0));
    std::fs::write(model.join("weights.safetensors.orig"), "left behind").unwrap();
    suite_over_folder(dir.path(), "manifest = \"model/gauntlet-manifest.json\"");
    let refused = gauntlet(dir.path(), &["run", "suite.toml", "-q", "--format", "json"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("weights.safetensors.orig"),
        "{}",
        stderr(&refused)
    );

    let allowed = gauntlet(
        dir.path(),
        &[
            "run",
            "suite.toml",
            "-q",
            "--format",
            "json",
            "--allow-unverified",
        ],
    );
    assert!(allowed.status.code().unwrap() <= 1, "{}", stderr(&allowed));
    assert_eq!(
        results(dir.path())["provenance"]["verdict"],
        "failed_allowed"
    );
}

#[test]
fn bom_lists_the_model_and_data_with_hashes() {
    let dir = tempfile::tempdir().unwrap();
    model_folder(dir.path());
    let suite = suite_over_folder(dir.path(), "");
    let output = gauntlet(dir.path(), &["bom", suite.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let bom: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["specVersion"], "1.6");
    let components = bom["components"].as_array().unwrap();
    assert_eq!(components[0]["type"], "machine-learning-model");
    let weights_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(
            std::fs::read(asset("fashion-mnist-small-cnn.safetensors")).unwrap(),
        ))
    };
    assert_eq!(components[0]["hashes"][0]["content"], weights_sha);
    assert!(components.iter().any(|c| c["type"] == "data"));
    let again = gauntlet(dir.path(), &["bom", suite.to_str().unwrap()]);
    assert_eq!(
        output.stdout, again.stdout,
        "the same files give the same BOM"
    );
}

/// A hub id a small edit or a look-alike letter away from a well-known one stops the run; the
/// real id passes, and `gauntlet scan --model-id` says the same.
#[test]
fn typosquatted_model_ids_are_findings() {
    let dir = tempfile::tempdir().unwrap();
    model_folder(dir.path());
    // Capital I for the l of llama.
    suite_over_folder(dir.path(), "id = \"meta-Ilama/Llama-2-7b-hf\"");
    let refused = gauntlet(dir.path(), &["run", "suite.toml", "-q", "--format", "json"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("meta-llama/Llama-2-7b-hf"),
        "{}",
        stderr(&refused)
    );
    suite_over_folder(dir.path(), "id = \"meta-llama/Llama-2-7b-hf\"");
    let passed = gauntlet(dir.path(), &["run", "suite.toml", "-q", "--format", "json"]);
    assert!(passed.status.code().unwrap() <= 1, "{}", stderr(&passed));

    let weights = dir.path().join("model/weights.safetensors");
    let scan = |id: &str, extra: &[&str]| {
        let mut args = vec!["scan", weights.to_str().unwrap(), "--model-id", id];
        args.extend_from_slice(extra);
        gauntlet(dir.path(), &args)
    };
    let typo = scan("bert-base-uncassed", &[]);
    assert_eq!(typo.status.code(), Some(1), "{}", stdout(&typo));
    assert!(
        stdout(&typo).contains("model-id-typosquat"),
        "{}",
        stdout(&typo)
    );
    assert_eq!(scan("bert-base-uncased", &[]).status.code(), Some(0));
    // A team's own id that happens to sit next to a famous one passes once listed.
    std::fs::write(dir.path().join("ours.txt"), "# our models\nacme/gpt3\n").unwrap();
    assert_eq!(
        scan("acme/gpt3", &["--known-model-ids", "ours.txt"])
            .status
            .code(),
        Some(0)
    );
}
