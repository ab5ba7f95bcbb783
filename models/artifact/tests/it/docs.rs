//! The rule table in `docs/scanner.md` is generated from the registry; this test fails when it
//! is stale. Regenerate it with `GAUNTLET_BLESS_DOCS=1 cargo test -p gauntlet-artifact docs`,
//! which rewrites only the text between the marker comments.

use std::path::PathBuf;

use gauntlet_artifact::{rules_markdown, RULES};

const BEGIN: &str = "<!-- BEGIN GENERATED RULES";
const END: &str = "<!-- END GENERATED RULES -->";
const REGENERATE: &str = "GAUNTLET_BLESS_DOCS=1 cargo test -p gauntlet-artifact docs";

fn scanner_md() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/scanner.md")
}

/// The byte range between the end of the `BEGIN` marker comment and the start of `END`.
fn generated_range(doc: &str) -> Option<std::ops::Range<usize>> {
    let begin = doc.find(BEGIN)?;
    let start = begin + doc[begin..].find("-->")? + "-->".len();
    let end = start + doc[start..].find(END)?;
    Some(start..end)
}

/// What belongs between the markers: the table, set off by blank lines.
fn expected_section() -> String {
    format!("\n\n{}\n", rules_markdown())
}

#[test]
fn docs_scanner_md_rule_table_is_up_to_date() {
    let path = scanner_md();
    let doc = fs_err::read_to_string(&path).unwrap();
    let range = generated_range(&doc).unwrap_or_else(|| {
        panic!(
            "docs/scanner.md has no `{BEGIN} … -->` … `{END}` markers around its rule table; \
             add them, then run `{REGENERATE}`"
        )
    });
    let expected = expected_section();
    if std::env::var_os("GAUNTLET_BLESS_DOCS").is_some() && doc[range.clone()] != expected {
        let mut updated = doc.clone();
        updated.replace_range(range.clone(), &expected);
        fs_err::write(&path, &updated).unwrap();
        return;
    }
    assert!(
        doc[range] == expected,
        "the rule table in docs/scanner.md differs from the rule registry \
         (models/artifact/src/rules.rs); regenerate it with `{REGENERATE}`"
    );
}

#[test]
fn markdown_lists_every_rule_once() {
    let markdown = rules_markdown();
    for rule in RULES {
        assert_eq!(
            markdown
                .matches(&format!("| `{}` | {} |", rule.id, rule.default_severity))
                .count(),
            1,
            "{}",
            rule.id
        );
    }
}
