//! The benign corpus of issue 9 (tests/fixtures/benign, saved by the real libraries with their
//! own writers): every benign file passes `gauntlet scan`'s default gate, and the one file the
//! policy fails by design fails with its rule and passes once its class is allowed.

use std::path::{Path, PathBuf};

use gauntlet_artifact::pickle::parse_allowed;
use gauntlet_artifact::walk::{scan_paths_with, ScanOptions, ScanReport};
use gauntlet_artifact::{RuleId, Severity};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/benign")
}

#[derive(serde::Deserialize)]
struct Corpus {
    fixture: Vec<Fixture>,
}

#[derive(serde::Deserialize)]
struct Fixture {
    file: String,
    kind: String,
    rule: Option<RuleId>,
    #[serde(default)]
    allow: Vec<String>,
    #[allow(dead_code)]
    technique: String,
}

fn corpus() -> Corpus {
    let text = std::fs::read_to_string(corpus_dir().join("corpus.toml")).unwrap();
    toml::from_str(&text).unwrap()
}

fn scan(path: &Path, allow: &[String]) -> ScanReport {
    let options = ScanOptions {
        extra_allowed: allow
            .iter()
            .map(|entry| parse_allowed(entry).unwrap())
            .collect(),
        ..ScanOptions::default()
    };
    scan_paths_with(&[path.to_path_buf()], &options).unwrap()
}

/// `gauntlet scan`'s exit-1 condition (harness `commands::scan`) with the default `--fail-on`.
fn fails_default_gate(report: &ScanReport) -> bool {
    report.max_severity() >= Some(Severity::DEFAULT_FAIL_ON)
}

fn describe(report: &ScanReport) -> Vec<String> {
    report
        .findings
        .iter()
        .map(|f| {
            format!(
                "{} {} {:?} ({})",
                f.severity, f.rule, f.location.member, f.message
            )
        })
        .collect()
}

#[test]
fn benign_files_from_real_libraries_pass_the_default_gate() {
    let corpus = corpus();
    assert!(corpus.fixture.len() >= 30, "benign corpus shrank");
    let mut wrong = Vec::new();
    for fixture in &corpus.fixture {
        let path = corpus_dir().join(&fixture.file);
        let report = scan(&path, &[]);
        match fixture.kind.as_str() {
            "benign" => {
                if fails_default_gate(&report) {
                    wrong.push(format!("{}: {:#?}", fixture.file, describe(&report)));
                }
            }
            // A full-module save of the user's own class: the pickle instantiates a class only
            // its owner can vouch for, so the default fails (high, invoked unknown), as
            // `torch.load`'s default (weights_only=True) refuses it; allowing exactly that class
            // passes it, and the allowance is reported.
            "policy" => {
                let failing: Vec<RuleId> = report
                    .findings
                    .iter()
                    .filter(|f| f.severity >= Severity::DEFAULT_FAIL_ON)
                    .map(|f| f.rule)
                    .collect();
                if failing.is_empty() || failing.iter().any(|rule| Some(*rule) != fixture.rule) {
                    wrong.push(format!(
                        "{} should fail only with {:?}: {:#?}",
                        fixture.file,
                        fixture.rule,
                        describe(&report)
                    ));
                }
                assert!(!fixture.allow.is_empty(), "{}", fixture.file);
                let allowed = scan(&path, &fixture.allow);
                if fails_default_gate(&allowed) {
                    wrong.push(format!(
                        "{} with --allow {:?}: {:#?}",
                        fixture.file,
                        fixture.allow,
                        describe(&allowed)
                    ));
                }
            }
            other => panic!("unknown kind {other}"),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The whole folder, scanned as `gauntlet scan DIR` would (ONNX external data next to its
/// model, the generator script and notes included): only the policy file fails, and allowing
/// its class passes the folder.
#[test]
fn the_benign_folder_passes_once_the_users_own_class_is_allowed() {
    let report = scan(&corpus_dir(), &[]);
    let failing: Vec<(String, RuleId)> = report
        .findings
        .iter()
        .filter(|f| f.severity >= Severity::DEFAULT_FAIL_ON)
        .map(|f| {
            (
                f.location.file.rsplit('/').next().unwrap_or("").to_string(),
                f.rule,
            )
        })
        .collect();
    assert_eq!(
        failing,
        [(
            "tinynet_full_module.pt".to_string(),
            RuleId::PickleUnknownCall
        )]
    );
    let allowed = scan(&corpus_dir(), &["__main__.TinyNet".to_string()]);
    assert!(!fails_default_gate(&allowed), "{:#?}", describe(&allowed));
}

#[test]
fn every_benign_fixture_is_listed() {
    let listed: Vec<String> = corpus().fixture.into_iter().map(|f| f.file).collect();
    crate::support::assert_every_fixture_is_listed(
        &corpus_dir(),
        &listed,
        crate::support::CORPUS_OWN_FILES,
    );
}

/// The TorchScript archives `torch.jit.save` wrote are read, not passed unread: their
/// `data.pkl` is walked, so the same archive with one class name in it edited to `system` (same
/// length, so the stored member and the zip stay valid; only the CRC no longer matches) fails.
#[test]
fn torchscript_archives_pass_because_their_pickles_were_read() {
    let path = corpus_dir().join("tinynet_scripted.pt");
    let bytes = std::fs::read(&path).unwrap();
    assert!(!fails_default_gate(&scan(&path, &[])));
    let needle = b"Conv2d";
    let at = bytes
        .windows(needle.len())
        .position(|window| window == needle)
        .unwrap();
    let mut edited = bytes.clone();
    edited[at..at + needle.len()].copy_from_slice(b"system");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("edited.pt");
    std::fs::write(&copy, &edited).unwrap();
    let report = scan(&copy, &[]);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.rule == RuleId::PickleDangerousGlobal && f.severity == Severity::Critical),
        "{:#?}",
        describe(&report)
    );
}
