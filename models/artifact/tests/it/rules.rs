//! The rule registry is complete and well-formed: every rule documented, ids unique and
//! kebab-case, every rule emitted by some scanner, no rule id spelt out anywhere but the registry,
//! and no finding more severe than its rule's default.

use std::path::{Path, PathBuf};

use gauntlet_artifact::walk::scan_paths;
use gauntlet_artifact::{RuleId, RULES};

fn is_kebab_case(id: &str) -> bool {
    !id.is_empty()
        && id.split('-').all(|word| {
            !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

#[test]
fn every_rule_is_documented() {
    assert!(RULES.len() >= 60, "the registry shrank to {}", RULES.len());
    for rule in RULES {
        let id = rule.id;
        assert!(!rule.summary.trim().is_empty(), "{id}: empty summary");
        assert!(!rule.help.trim().is_empty(), "{id}: empty help");
        assert!(
            !rule.summary.ends_with('.') && !rule.summary.contains('\n'),
            "{id}: a summary is one line without a final full stop"
        );
        assert!(rule.help.ends_with('.'), "{id}: help is whole sentences");
        assert!(!rule.help.contains('\n'), "{id}: help has a line break");
        assert!(
            !rule.help.contains("  "),
            "{id}: help has a double space (a missing `\\` continuation?)"
        );
    }
}

#[test]
fn ids_are_unique_kebab_case_and_round_trip() {
    let mut ids: Vec<&str> = RULES.iter().map(|rule| rule.id.as_str()).collect();
    for id in &ids {
        assert!(is_kebab_case(id), "`{id}` is not kebab-case");
        assert_eq!(id.parse::<RuleId>().map(RuleId::as_str), Ok(*id));
        // JSON uses the id string, exactly.
        let json = serde_json::to_value(id.parse::<RuleId>().unwrap()).unwrap();
        assert_eq!(json, *id);
    }
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count, "duplicate rule ids");
    assert!(serde_json::from_value::<RuleId>("pickle-no-such-rule".into()).is_err());
}

/// The crate's source files, each with its test module (everything from `#[cfg(test)]` on) cut.
fn non_test_sources() -> Vec<(PathBuf, String)> {
    let mut sources = Vec::new();
    let mut folders = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(folder) = folders.pop() {
        for entry in fs_err::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let text = fs_err::read_to_string(&path).unwrap();
                let code = match text.find("#[cfg(test)]") {
                    Some(at) => text[..at].to_string(),
                    None => text,
                };
                sources.push((path, code));
            }
        }
    }
    sources
}

fn is_registry(path: &Path) -> bool {
    path.ends_with("src/rules.rs")
}

/// A rule no scanner emits is dead documentation; one emitted but not registered cannot compile.
#[test]
fn every_rule_is_emitted_by_some_scanner() {
    let sources = non_test_sources();
    let unused: Vec<RuleId> = RuleId::ALL
        .iter()
        .copied()
        .filter(|id| {
            let variant = format!("RuleId::{id:?}");
            !sources.iter().any(|(path, code)| {
                !is_registry(path)
                    && code.match_indices(&variant).any(|(at, _)| {
                        // `RuleId::Zip` must not count as a use of `RuleId::ZipBomb`'s prefix.
                        !code[at + variant.len()..]
                            .starts_with(|ch: char| ch.is_ascii_alphanumeric() || ch == '_')
                    })
            })
        })
        .collect();
    assert!(
        unused.is_empty(),
        "rules in the registry that no scanner emits: {unused:?}"
    );
}

/// The registry is the single source of rule ids: no scanner spells one out as a string.
#[test]
fn no_rule_id_is_spelt_out_outside_the_registry() {
    for (path, code) in non_test_sources() {
        if is_registry(&path) {
            continue;
        }
        for rule in RULES {
            let quoted = format!("\"{}\"", rule.id.as_str());
            assert!(
                !code.contains(&quoted),
                "{} spells out the rule id {quoted}; use RuleId::{:?}",
                path.display(),
                rule.id
            );
        }
    }
}

/// A rule's default severity is the most severe level the scanners report it at.
#[test]
fn no_fixture_finding_exceeds_its_rules_default_severity() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let report = scan_paths(&[fixtures]).unwrap();
    assert!(!report.findings.is_empty());
    for finding in &report.findings {
        assert!(
            finding.severity <= finding.rule.default_severity(),
            "{} at {:?} is {} but its rule's default is {}",
            finding.rule,
            finding.location,
            finding.severity,
            finding.rule.default_severity()
        );
    }
}
