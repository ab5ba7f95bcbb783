//! `docs/attacks.md` is generated from the registry; this test fails when it is stale.
//! Regenerate with `GAUNTLET_BLESS_DOCS=1 cargo test -p gauntlet-attacks docs`.

use std::path::{Path, PathBuf};

use gauntlet_attacks::{attacks_markdown, ATTACKS};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn docs_attacks_md_is_up_to_date() {
    let path = repo_root().join("docs/attacks.md");
    let generated = attacks_markdown();
    if std::env::var_os("GAUNTLET_BLESS_DOCS").is_some() {
        fs_err::write(&path, &generated).unwrap();
    }
    let on_disk = fs_err::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{} is stale; regenerate it with `GAUNTLET_BLESS_DOCS=1 cargo test -p gauntlet-attacks docs`",
        path.display()
    );
}

#[test]
fn markdown_has_one_section_per_attack() {
    let markdown = attacks_markdown();
    for entry in ATTACKS {
        assert_eq!(
            markdown
                .matches(&format!("\n## `{}`\n", entry.name))
                .count(),
            1,
            "{}",
            entry.name
        );
        for parameter in entry.parameters {
            assert!(markdown.contains(&format!(
                "| `{}` | `{}` |",
                parameter.name, parameter.default
            )));
        }
    }
}

/// Each attack lives in `src/evasion/<name>.rs`, whose module doc follows the template, and
/// whose `## Parameters` section mentions every documented parameter.
#[test]
fn attack_files_follow_the_doc_template() {
    const HEADINGS: [&str; 5] = [
        "## What it does",
        "## Threat model",
        "## Parameters",
        "## Known-answer tests",
        "## Reference",
    ];
    for entry in ATTACKS {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("src/evasion/{}.rs", entry.name));
        let source = fs_err::read_to_string(&path).unwrap();
        let doc: Vec<&str> = source
            .lines()
            .take_while(|line| line.starts_with("//!"))
            .map(|line| line.trim_start_matches("//!").trim())
            .collect();
        let positions: Vec<usize> = HEADINGS
            .iter()
            .map(|heading| {
                doc.iter()
                    .position(|line| line == heading)
                    .unwrap_or_else(|| panic!("{}: module doc lacks `{heading}`", path.display()))
            })
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "{}: headings out of order",
            path.display()
        );
        let parameters_section = doc[positions[2]..positions[3]].join("\n");
        for parameter in entry.parameters {
            assert!(
                parameters_section.contains(&format!("`{}`", parameter.name)),
                "{}: `## Parameters` does not mention `{}`",
                path.display(),
                parameter.name
            );
        }
        assert!(
            source.contains("#[cfg(test)]"),
            "{}: no known-answer tests",
            path.display()
        );
    }
}
