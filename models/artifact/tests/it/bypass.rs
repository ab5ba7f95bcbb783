//! The bypass corpus (tests/fixtures/bypass): files written against the scanner's own readers —
//! header-less pickles after the first, NumPy dtype spellings, joblib's array records, rebuild
//! helpers handed computed callables, torch's tar format, polyglots, compressed streams and
//! obfuscated chat templates. Every one must fail the default gate with its expected rule.

use std::path::PathBuf;

use gauntlet_artifact::walk::scan_paths;
use gauntlet_artifact::{RuleId, Severity};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bypass")
}

#[derive(serde::Deserialize)]
struct Corpus {
    fixture: Vec<Fixture>,
}

#[derive(serde::Deserialize)]
struct Fixture {
    file: String,
    rule: RuleId,
    #[allow(dead_code)]
    technique: String,
}

fn corpus() -> Corpus {
    let text = std::fs::read_to_string(corpus_dir().join("corpus.toml")).unwrap();
    toml::from_str(&text).unwrap()
}

#[test]
fn every_bypass_fails_the_default_gate_with_its_rule() {
    let corpus = corpus();
    assert!(!corpus.fixture.is_empty());
    let mut wrong = Vec::new();
    for fixture in &corpus.fixture {
        let report = scan_paths(&[corpus_dir().join(&fixture.file)]).unwrap();
        let caught = report.max_severity() >= Some(Severity::DEFAULT_FAIL_ON)
            && report
                .findings
                .iter()
                .any(|f| f.rule == fixture.rule && f.severity >= Severity::DEFAULT_FAIL_ON);
        if !caught {
            let described: Vec<String> = report
                .findings
                .iter()
                .map(|f| format!("{} {} ({})", f.severity, f.rule, f.message))
                .collect();
            wrong.push(format!(
                "{} (want {}): {described:#?}",
                fixture.file, fixture.rule
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_bypass_fixture_is_listed() {
    let listed: Vec<String> = corpus().fixture.into_iter().map(|f| f.file).collect();
    crate::support::assert_every_fixture_is_listed(
        &corpus_dir(),
        &listed,
        crate::support::CORPUS_OWN_FILES,
    );
}
