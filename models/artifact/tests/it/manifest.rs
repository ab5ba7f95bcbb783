//! SHA-256 manifests: known answers and every tampering verdict.

use std::path::Path;

use gauntlet_artifact::manifest::{
    create_manifest, create_manifest_with, default_manifest_path, verify_manifest, Manifest,
    ManifestError, ManifestOptions, SkippedKind, DEFAULT_MANIFEST_FILE_NAME,
};

/// sha256("abc") and sha256("") from FIPS 180-2.
const SHA256_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const SHA256_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn write(dir: &Path, relative: &str, content: &[u8]) {
    let path = dir.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// A folder with nested, hidden and empty files.
fn model_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "weights/model.bin", b"abc");
    write(dir.path(), "config.json", b"{\"layers\": 3}\n");
    write(dir.path(), ".hidden", b"");
    write(dir.path(), "a.txt", b"alpha");
    write(dir.path(), "a/b.txt", b"beta");
    dir
}

#[test]
fn manifest_lists_every_file_sorted_with_known_hashes() {
    let dir = model_folder();
    let manifest = create_manifest(dir.path()).unwrap();
    let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            ".hidden",
            "a/b.txt",
            "a.txt",
            "config.json",
            "weights/model.bin"
        ]
    );
    let bin = manifest
        .files
        .iter()
        .find(|f| f.path == "weights/model.bin")
        .unwrap();
    assert_eq!((bin.size, bin.sha256.as_str()), (3, SHA256_ABC));
    let hidden = manifest.files.iter().find(|f| f.path == ".hidden").unwrap();
    assert_eq!((hidden.size, hidden.sha256.as_str()), (0, SHA256_EMPTY));
    assert_eq!(manifest.version, 1);
    assert!(manifest.skipped.is_empty());
}

#[test]
fn json_round_trip_and_documented_shape() {
    let dir = model_folder();
    let manifest = create_manifest(dir.path()).unwrap();
    let path = default_manifest_path(dir.path());
    manifest.write(&path).unwrap();
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(value["version"], 1);
    assert_eq!(value["files"][0]["path"], ".hidden");
    assert_eq!(value["files"][4]["sha256"], SHA256_ABC);
    assert_eq!(value["files"][4]["size"], 3);
    assert!(value.get("skipped").is_none(), "empty `skipped` is omitted");
    assert_eq!(Manifest::read(&path).unwrap(), manifest);

    // The manifest inside the folder is not part of itself, and verifying is clean.
    let again = create_manifest(dir.path()).unwrap();
    assert_eq!(again, manifest);
    let verdict = verify_manifest(dir.path(), &manifest).unwrap();
    assert!(verdict.is_clean(), "{verdict:?}");
    assert_eq!(verdict.ok_count, 5);
}

#[test]
fn sha256sum_text_checks_with_coreutils_format() {
    let dir = model_folder();
    let text = create_manifest(dir.path()).unwrap().to_sha256sum();
    assert!(text.contains(&format!("{SHA256_ABC}  weights/model.bin\n")));
    assert_eq!(text.lines().count(), 5);
}

#[test]
fn one_byte_flip_is_modified() {
    let dir = model_folder();
    let manifest = create_manifest(dir.path()).unwrap();
    write(dir.path(), "weights/model.bin", b"abd");
    let verdict = verify_manifest(dir.path(), &manifest).unwrap();
    assert!(!verdict.is_clean());
    assert_eq!(verdict.modified.len(), 1);
    let modified = &verdict.modified[0];
    assert_eq!(modified.path, "weights/model.bin");
    assert_eq!(modified.expected_sha256, SHA256_ABC);
    assert_ne!(modified.actual_sha256, SHA256_ABC);
    assert_eq!((modified.expected_size, modified.actual_size), (3, 3));
    assert!(verdict.missing.is_empty() && verdict.unexpected.is_empty());
    assert_eq!(verdict.ok_count, 4);
}

#[test]
fn renamed_file_is_missing_plus_unexpected() {
    let dir = model_folder();
    let manifest = create_manifest(dir.path()).unwrap();
    std::fs::rename(
        dir.path().join("config.json"),
        dir.path().join("config.yaml"),
    )
    .unwrap();
    let verdict = verify_manifest(dir.path(), &manifest).unwrap();
    assert_eq!(verdict.missing, ["config.json"]);
    assert_eq!(verdict.unexpected, ["config.yaml"]);
    assert!(verdict.modified.is_empty());
    assert_eq!(verdict.ok_count, 4);
}

#[test]
fn added_file_is_unexpected() {
    let dir = model_folder();
    let manifest = create_manifest(dir.path()).unwrap();
    write(dir.path(), "weights/extra.pkl", b"\x80\x04N.");
    let verdict = verify_manifest(dir.path(), &manifest).unwrap();
    assert_eq!(verdict.unexpected, ["weights/extra.pkl"]);
    assert!(verdict.missing.is_empty() && verdict.modified.is_empty());
    assert_eq!(verdict.ok_count, 5);
}

#[test]
fn deleted_file_is_missing() {
    let dir = model_folder();
    let manifest = create_manifest(dir.path()).unwrap();
    std::fs::remove_file(dir.path().join("a/b.txt")).unwrap();
    let verdict = verify_manifest(dir.path(), &manifest).unwrap();
    assert_eq!(verdict.missing, ["a/b.txt"]);
    assert!(verdict.unexpected.is_empty() && verdict.modified.is_empty());
    assert_eq!(verdict.ok_count, 4);
}

#[cfg(unix)]
#[test]
fn symlinks_are_reported_not_followed() {
    let dir = model_folder();
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret", b"outside the model");
    std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("linked_dir")).unwrap();
    let manifest = create_manifest(dir.path()).unwrap();
    assert_eq!(manifest.files.len(), 5, "link targets are not hashed");
    let skipped: Vec<(&str, SkippedKind)> = manifest
        .skipped
        .iter()
        .map(|entry| (entry.path.as_str(), entry.kind))
        .collect();
    assert_eq!(
        skipped,
        [
            ("link", SkippedKind::Symlink),
            ("linked_dir", SkippedKind::Symlink)
        ]
    );
    let verdict = verify_manifest(dir.path(), &manifest).unwrap();
    assert_eq!(verdict.skipped.len(), 2);
    assert!(!verdict.is_clean(), "a symlink cannot be vouched for");
    assert_eq!(verdict.ok_count, 5);
}

#[test]
fn custom_exclusions_leave_out_folders() {
    let dir = model_folder();
    let options = ManifestOptions {
        exclude: vec!["weights".into(), DEFAULT_MANIFEST_FILE_NAME.into()],
    };
    let manifest = create_manifest_with(dir.path(), &options).unwrap();
    assert!(manifest
        .files
        .iter()
        .all(|f| !f.path.starts_with("weights")));
    assert_eq!(manifest.files.len(), 4);
}

#[test]
fn bad_inputs_are_typed_errors() {
    let dir = model_folder();
    let file = dir.path().join("a.txt");
    assert!(matches!(
        create_manifest(&file),
        Err(ManifestError::NotAFolder { .. })
    ));
    assert!(matches!(
        create_manifest(&dir.path().join("nope")),
        Err(ManifestError::Unreadable(_))
    ));
    let source = Path::new("m.json");
    let cases = [
        ("not json", "malformed"),
        (r#"{"version": 2, "files": []}"#, "version 2"),
        (r#"{"files": []}"#, "version"),
        (
            r#"{"version": 1, "files": [{"path": "../x", "size": 1, "sha256": "00"}]}"#,
            "escapes",
        ),
        (
            &format!(
                r#"{{"version": 1, "files": [{{"path": "x", "size": 1, "sha256": "{}"}}]}}"#,
                "A".repeat(64)
            ),
            "lowercase hex",
        ),
        (
            &format!(
                r#"{{"version": 1, "files": [{{"path": "x", "size": 1, "sha256": "{h}"}}, {{"path": "x", "size": 1, "sha256": "{h}"}}]}}"#,
                h = SHA256_ABC
            ),
            "twice",
        ),
    ];
    for (text, expected) in cases {
        let error = Manifest::from_json(text, source).unwrap_err().to_string();
        assert!(error.contains(expected), "{text}: {error}");
        assert!(error.contains("m.json"), "{error}");
    }
}

proptest::proptest! {
    #[test]
    fn manifest_parser_never_panics(text in ".{0,300}") {
        let _ = Manifest::from_json(&text, Path::new("fuzz.json"));
    }

    #[test]
    fn manifest_parser_never_panics_on_near_valid_json(
        version in 0_u64..3,
        path in "[a-z./]{0,12}",
        size in proptest::num::u64::ANY,
        sha in "[0-9a-fA-F]{0,70}",
    ) {
        let text = format!(
            r#"{{"version": {version}, "files": [{{"path": {path:?}, "size": {size}, "sha256": {sha:?}}}]}}"#
        );
        if let Ok(manifest) = Manifest::from_json(&text, Path::new("fuzz.json")) {
            // Whatever parses is clean.
            proptest::prop_assert!(!manifest.files[0].path.split('/').any(|p| p == ".." || p.is_empty()));
            proptest::prop_assert_eq!(manifest.files[0].sha256.len(), 64);
        }
    }
}
