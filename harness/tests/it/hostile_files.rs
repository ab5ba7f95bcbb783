//! Every file gauntlet reads, given something that is not a regular file: `/dev/zero`,
//! `/dev/urandom`, a link to `/dev/zero` and a FIFO with no writer, as the suite, model spec,
//! weights, IDX/NPY/CIFAR data, an image in a class folder, results.json, manifest, signature,
//! public and private key, list of known model ids and `gauntlet bom` input. Each must end promptly with exit 2 and an error naming the
//! path: before the reading layer, the devices were read until memory ran out and the FIFOs
//! blocked forever. Every command runs under a deadline, so a regression fails instead of
//! hanging the test suite.
//!
//! Also: an image whose header declares 20,000 × 20,000 pixels is refused before decoding.

#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Longer than any of these commands needs (they fail while loading), far shorter than a hang.
const DEADLINE: Duration = Duration::from_secs(60);

/// `gauntlet ARGS` in `dir`, killed and failed if it runs past [`DEADLINE`].
fn gauntlet_promptly(dir: &Path, args: &[&str]) -> Output {
    let out = tempfile::tempdir().unwrap();
    let stdout_path = out.path().join("stdout");
    let stderr_path = out.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gauntlet"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("the gauntlet binary runs");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`gauntlet {}` still running after {DEADLINE:?} (it must never block); stderr:\n{}",
                args.join(" "),
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: std::fs::read(&stdout_path).unwrap(),
        stderr: std::fs::read(&stderr_path).unwrap(),
    }
}

/// The hostile paths, with a name for messages: the two devices, a link to one, and a FIFO
/// (created in `dir`) that no process ever opens for writing.
fn hostile_paths(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let mut paths = Vec::new();
    for device in ["/dev/zero", "/dev/urandom"] {
        if Path::new(device).exists() {
            paths.push((device, PathBuf::from(device)));
        }
    }
    if Path::new("/dev/zero").exists() {
        let link = dir.join("zero-link");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        paths.push(("a link to /dev/zero", link));
    }
    let fifo = dir.join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|status| status.success()) {
        paths.push(("a FIFO", fifo));
    }
    paths
}

/// Exit 2, no panic, an error that names `path` and says it is not a regular file.
fn assert_refused(output: &Output, path: &Path, case: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(2), "{case}: stderr:\n{err}");
    assert!(!err.contains("panicked"), "{case}: {err}");
    assert!(err.starts_with("error: "), "{case}: {err}");
    assert!(
        err.contains(&format!("`{}`", path.display())),
        "{case}: the error names `{}`:\n{err}",
        path.display()
    );
    assert!(err.contains("not a regular file"), "{case}: {err}");
}

/// A suite over the bundled model and embedded data, with `model_lines` and `dataset_table`
/// replacing the defaults where given.
fn write_suite_with(dir: &Path, model_lines: &str, dataset_table: &str) -> PathBuf {
    let spec = asset("fashion-mnist-small-cnn.toml");
    let weights = asset("fashion-mnist-small-cnn.safetensors");
    let model = if model_lines.is_empty() {
        format!("spec = {spec:?}\nweights = {weights:?}")
    } else {
        model_lines.to_string()
    };
    let dataset = if dataset_table.is_empty() {
        "format = \"idx\"\npath = \"embedded:fashion-mnist-test-1k\"\nlimit = 8".to_string()
    } else {
        dataset_table.to_string()
    };
    let suite = format!(
        "version = 1\nname = \"hostile\"\nseed = 1\n\n[model]\n{model}\n\n[dataset]\n{dataset}\n\n\
         [[attack]]\nname = \"fgsm\"\nepsilons = [0.05]\n\n[sanity]\nfull_budget = false\n"
    );
    let path = dir.join("suite.toml");
    std::fs::write(&path, suite).unwrap();
    path
}

#[test]
fn suite_file() {
    let dir = tempfile::tempdir().unwrap();
    for (name, path) in hostile_paths(dir.path()) {
        let arg = path.to_str().unwrap();
        for args in [vec!["check", arg], vec!["run", arg, "-q"], vec!["bom", arg]] {
            let output = gauntlet_promptly(dir.path(), &args);
            assert_refused(
                &output,
                &path,
                &format!("{} with {name} as the suite", args[0]),
            );
        }
    }
}

#[test]
fn model_spec_and_weights() {
    let dir = tempfile::tempdir().unwrap();
    let spec = asset("fashion-mnist-small-cnn.toml");
    let weights = asset("fashion-mnist-small-cnn.safetensors");
    for (name, path) in hostile_paths(dir.path()) {
        for (key, model_lines) in [
            (
                "model.spec",
                format!("spec = {path:?}\nweights = {weights:?}"),
            ),
            (
                "model.weights",
                format!("spec = {spec:?}\nweights = {path:?}"),
            ),
        ] {
            write_suite_with(dir.path(), &model_lines, "");
            let output = gauntlet_promptly(dir.path(), &["run", "suite.toml", "-q"]);
            assert_refused(&output, &path, &format!("{name} as {key}"));
            let output = gauntlet_promptly(dir.path(), &["bom", "suite.toml"]);
            assert_refused(&output, &path, &format!("bom with {name} as {key}"));
        }
    }
}

#[test]
fn idx_and_npy_data() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = write_idx_pair(dir.path(), 10);
    for (name, path) in hostile_paths(dir.path()) {
        for (case, table) in [
            (
                "IDX images",
                format!("format = \"idx\"\nimages = {path:?}\nlabels = {labels:?}"),
            ),
            (
                "IDX labels",
                format!("format = \"idx\"\nimages = {images:?}\nlabels = {path:?}"),
            ),
            (
                "NPY images",
                format!("format = \"npy\"\nimages = {path:?}\nlabels = {labels:?}"),
            ),
            (
                "a CIFAR-10 batch",
                format!("format = \"cifar10\"\npath = {path:?}"),
            ),
        ] {
            write_suite_with(dir.path(), "", &table);
            let output = gauntlet_promptly(dir.path(), &["run", "suite.toml", "-q"]);
            assert_refused(&output, &path, &format!("{name} as {case}"));
            let output = gauntlet_promptly(dir.path(), &["bom", "suite.toml"]);
            assert_refused(&output, &path, &format!("bom with {name} as {case}"));
        }
    }
}

#[test]
fn an_image_in_a_class_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("images");
    let class = root.join("shirt");
    std::fs::create_dir_all(&class).unwrap();
    let image = class.join("0.png");
    // A link to /dev/zero, then a FIFO, as the class folder's only image.
    let mut cases = Vec::new();
    if Path::new("/dev/zero").exists() {
        std::os::unix::fs::symlink("/dev/zero", &image).unwrap();
        cases.push("a link to /dev/zero");
    }
    cases.push("a FIFO");
    write_suite_with(
        dir.path(),
        "",
        &format!("format = \"image_folder\"\npath = {root:?}"),
    );
    for case in cases {
        if case == "a FIFO" {
            let _ = std::fs::remove_file(&image);
            let made = Command::new("mkfifo").arg(&image).status();
            if !made.is_ok_and(|status| status.success()) {
                continue;
            }
        }
        let output = gauntlet_promptly(dir.path(), &["run", "suite.toml", "-q"]);
        assert_refused(&output, &image, &format!("{case} as an image"));
    }
}

#[test]
fn results_json() {
    let dir = tempfile::tempdir().unwrap();
    for (name, path) in hostile_paths(dir.path()) {
        let output = gauntlet_promptly(
            dir.path(),
            &["report", path.to_str().unwrap(), "--out", "out"],
        );
        assert_refused(&output, &path, &format!("{name} as results.json"));
        assert!(
            !dir.path().join("out").exists(),
            "nothing written for {name}"
        );
    }
}

#[test]
fn manifest_signature_and_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::copy(
        asset("fashion-mnist-small-cnn.toml"),
        model.join("model.toml"),
    )
    .unwrap();
    std::fs::copy(
        asset("fashion-mnist-small-cnn.safetensors"),
        model.join("weights.safetensors"),
    )
    .unwrap();
    let public_key = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/artifact/tests/fixtures/signing/keys/p256.pub.pem");
    let key = public_key.to_str().unwrap();
    for (name, path) in hostile_paths(dir.path()) {
        let arg = path.to_str().unwrap();
        for (case, args) in [
            (
                "manifest",
                vec!["manifest", "verify", "model", "--manifest", arg],
            ),
            (
                "signature",
                vec!["verify", "model", "--signature", arg, "--public-key", key],
            ),
            ("public key", vec!["verify", "model", "--public-key", arg]),
            ("private key", vec!["sign", "model", "--private-key", arg]),
            (
                "list of known model ids",
                vec![
                    "scan",
                    "model",
                    "--model-id",
                    "org/name",
                    "--known-model-ids",
                    arg,
                ],
            ),
        ] {
            let output = gauntlet_promptly(dir.path(), &args);
            assert_refused(&output, &path, &format!("{name} as the {case}"));
        }
        // The same files named by a suite, checked before the model loads.
        for (case, lines) in [
            ("model.manifest", format!("manifest = {path:?}")),
            (
                "model.signature",
                format!("signature = {path:?}\npublic_key = {public_key:?}"),
            ),
            (
                "model.public_key",
                format!("signature = \"model.sig\"\npublic_key = {path:?}"),
            ),
        ] {
            write_suite_with(
                dir.path(),
                &format!(
                    "spec = \"model/model.toml\"\nweights = \"model/weights.safetensors\"\n{lines}"
                ),
                "",
            );
            let output = gauntlet_promptly(dir.path(), &["run", "suite.toml", "-q"]);
            assert_refused(&output, &path, &format!("{name} as {case}"));
        }
    }
}

/// A valid PNG signature and IHDR declaring `width` × `height` 8-bit grayscale, then an IDAT
/// of a few bytes and IEND: a tiny file whose header alone would make a decoder allocate
/// width × height bytes.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffff_u32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit, grayscale, deflate, no filter, no interlace
    chunk(&mut png, b"IHDR", &ihdr);
    // A zlib stream of a few zero bytes: far too short, but nothing may get as far as reading it.
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

#[test]
fn a_huge_png_header_is_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("images");
    let class = root.join("shirt");
    std::fs::create_dir_all(&class).unwrap();
    for i in 0..10 {
        std::fs::write(
            class.join(format!("{i}.png")),
            png_header_only(20_000, 20_000),
        )
        .unwrap();
    }
    write_suite_with(
        dir.path(),
        "",
        &format!("format = \"image_folder\"\npath = {root:?}"),
    );
    let output = gauntlet_promptly(dir.path(), &["run", "suite.toml", "-q"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("0.png"), "{err}");
    assert!(err.contains("20000x20000"), "{err}");
    assert!(err.contains("at most 4096 pixels"), "{err}");
    insta::assert_snapshot!(mask_dir(&err, dir.path()));
}

/// `limit` is applied to the file list before any image is opened: with `limit = 1`, the
/// hostile second image is never read.
#[test]
fn image_folder_limit_applies_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("images");
    let class = root.join("shirt");
    std::fs::create_dir_all(&class).unwrap();
    std::fs::write(class.join("0.png"), png_header_only(20_000, 20_000)).unwrap();
    let made = Command::new("mkfifo").arg(class.join("1.png")).status();
    if !made.is_ok_and(|status| status.success()) {
        return;
    }
    write_suite_with(
        dir.path(),
        "",
        &format!("format = \"image_folder\"\npath = {root:?}\nlimit = 1"),
    );
    let output = gauntlet_promptly(dir.path(), &["run", "suite.toml", "-q"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    // The first image is refused for its size; the FIFO after it was never opened.
    assert!(err.contains("0.png"), "{err}");
    assert!(!err.contains("1.png"), "{err}");
}

/// One message of each kind as the user reads it.
#[test]
fn messages() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("weights.safetensors");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|status| status.success()) || !Path::new("/dev/zero").exists() {
        return;
    }
    let spec = asset("fashion-mnist-small-cnn.toml");
    write_suite_with(
        dir.path(),
        &format!("spec = {spec:?}\nweights = \"weights.safetensors\""),
        "",
    );
    let output = gauntlet_promptly(dir.path(), &["run", "suite.toml", "-q"]);
    // The suite names it relative to itself, and so does the message.
    assert_refused(
        &output,
        Path::new("weights.safetensors"),
        "a FIFO as the weights",
    );
    insta::assert_snapshot!(
        "fifo_weights",
        mask_dir(&stderr(&output), dir.path()).replace(spec.to_str().unwrap(), "[SPEC]")
    );
    let link = dir.path().join("suite-link.toml");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let output = gauntlet_promptly(dir.path(), &["check", "suite-link.toml"]);
    assert_refused(
        &output,
        Path::new("suite-link.toml"),
        "a link to /dev/zero as the suite",
    );
    insta::assert_snapshot!("device_link_suite", stderr(&output));
}
