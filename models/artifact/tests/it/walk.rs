//! Walking folders: sorted, deterministic, symlinks reported not followed, unreadable input an
//! error naming the path, large files reported rather than skipped.

use std::path::{Path, PathBuf};

use gauntlet_artifact::scan::FileKind;
use gauntlet_artifact::walk::{scan_paths, scan_paths_with, ScanOptions};
use gauntlet_artifact::{ArtifactError, RuleId, Severity};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn copy(from: &str, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(fixtures().join(from), to).unwrap();
}

/// A model folder: a benign safetensors file, an ONNX model in a subfolder with a traversal,
/// and a README. Names chosen so that sorted order differs from creation order.
fn model_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy("onnx/traversal.onnx", &dir.path().join("sub/model.onnx"));
    copy(
        "safetensors/benign.safetensors",
        &dir.path().join("b.safetensors"),
    );
    std::fs::write(dir.path().join("a_readme.md"), "# a model\n").unwrap();
    dir
}

#[test]
fn folders_are_walked_in_sorted_order_with_paths_and_kinds() {
    let dir = model_folder();
    let report = scan_paths(&[dir.path().to_path_buf()]).unwrap();
    let files: Vec<(String, FileKind, u64)> = report
        .files
        .iter()
        .map(|file| (file.path.clone(), file.kind, file.size))
        .collect();
    let path = |relative: &str| dir.path().join(relative).display().to_string();
    let size = |relative: &str| std::fs::metadata(dir.path().join(relative)).unwrap().len();
    assert_eq!(
        files,
        [
            (path("a_readme.md"), FileKind::Unknown, 10),
            (
                path("b.safetensors"),
                FileKind::Safetensors,
                size("b.safetensors")
            ),
            (
                path("sub/model.onnx"),
                FileKind::Onnx,
                size("sub/model.onnx")
            ),
        ]
    );
    // The README is unidentified (reported, never silently passed); the ONNX traversal is
    // critical and located in its file.
    let located: Vec<(&str, &str)> = report
        .findings
        .iter()
        .map(|finding| (finding.rule.as_str(), finding.location.file.as_str()))
        .collect();
    let onnx_path = path("sub/model.onnx");
    assert_eq!(
        located,
        [
            ("unidentified-file", path("a_readme.md").as_str()),
            ("onnx-external-data-traversal", onnx_path.as_str()),
            ("onnx-external-data", onnx_path.as_str()),
        ]
    );
    assert_eq!(report.max_severity(), Some(Severity::Critical));
    // Deterministic: a second walk gives the same report.
    assert_eq!(scan_paths(&[dir.path().to_path_buf()]).unwrap(), report);
}

#[test]
fn a_single_file_can_be_named() {
    let report = scan_paths(&[fixtures().join("safetensors/gap.safetensors")]).unwrap();
    assert_eq!(report.files.len(), 1);
    assert_eq!(report.max_severity(), Some(Severity::High));
    assert!(report.findings[0]
        .location
        .file
        .ends_with("gap.safetensors"));
}

#[cfg(unix)]
#[test]
fn symlinks_are_reported_and_not_followed() {
    let dir = model_folder();
    let outside = tempfile::tempdir().unwrap();
    copy("onnx/custom_op.onnx", &outside.path().join("evil.onnx"));
    std::os::unix::fs::symlink(outside.path(), dir.path().join("link_to_outside")).unwrap();
    std::os::unix::fs::symlink(dir.path(), dir.path().join("sub/loop")).unwrap();
    let report = scan_paths(&[dir.path().to_path_buf()]).unwrap();
    assert_eq!(
        report.files.len(),
        3,
        "links are not files: {:?}",
        report.files
    );
    let links: Vec<&str> = report
        .findings
        .iter()
        .filter(|finding| finding.rule == RuleId::SymlinkNotFollowed)
        .map(|finding| finding.location.file.as_str())
        .collect();
    let link_path = dir.path().join("link_to_outside").display().to_string();
    let loop_path = dir.path().join("sub/loop").display().to_string();
    assert_eq!(links, [link_path.as_str(), loop_path.as_str()]);
    assert!(report
        .findings
        .iter()
        .all(|finding| finding.rule != RuleId::OnnxCustomOp));
    let link = report
        .findings
        .iter()
        .find(|finding| finding.rule == RuleId::SymlinkNotFollowed)
        .unwrap();
    assert_eq!(link.severity, Severity::Low);
    assert!(link.message.contains(&outside.path().display().to_string()));
}

#[test]
fn a_missing_path_is_an_error_that_names_it() {
    let missing = fixtures().join("no/such/model.pt");
    let error =
        scan_paths(&[fixtures().join("onnx/helper_add.onnx"), missing.clone()]).unwrap_err();
    let ArtifactError::Unreadable { path, .. } = &error else {
        panic!("unexpected error {error:?}");
    };
    assert_eq!(path, &missing);
    assert!(error.to_string().contains("no/such/model.pt"), "{error}");
}

#[test]
fn files_over_the_size_limit_are_reported_but_safetensors_are_still_checked() {
    let dir = model_folder();
    let options = ScanOptions {
        max_file_bytes: 64,
        ..ScanOptions::default()
    };
    let report = scan_paths_with(&[dir.path().to_path_buf()], &options).unwrap();
    let rules: Vec<&str> = report.findings.iter().map(|f| f.rule.as_str()).collect();
    // The 300-byte safetensors file is over the limit but scanned from its header: no finding.
    // The ONNX model (147 bytes) is not read.
    assert_eq!(rules, ["unidentified-file", "file-too-large"]);
    assert_eq!(report.files[1].kind, FileKind::Safetensors);
    assert_eq!(report.files[2].kind, FileKind::Unknown);
}

#[cfg(unix)]
#[test]
fn unreadable_files_are_errors() {
    use std::os::unix::fs::PermissionsExt;
    let dir = model_folder();
    let locked = dir.path().join("b.safetensors");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    // root reads anything: then there is nothing to test.
    if std::fs::read(&locked).is_ok() {
        return;
    }
    let error = scan_paths(&[dir.path().to_path_buf()]).unwrap_err();
    assert!(error.to_string().contains("b.safetensors"), "{error}");
}

#[cfg(unix)]
#[test]
fn fifos_are_reported_not_opened() {
    // Opening a FIFO for reading blocks until a writer appears: the walk must not open it.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|status| status.success()) {
        return; // no mkfifo on this system
    }
    let report = scan_paths(&[dir.path().to_path_buf()]).unwrap();
    assert!(report.files.is_empty());
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].rule, RuleId::NotARegularFile);
    assert_eq!(report.findings[0].location.file, fifo.display().to_string());
}
