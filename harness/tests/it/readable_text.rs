//! The text people read, as insta snapshots (`snapshots/it__readable_text__*.snap`): the plan
//! `gauntlet check` prints (`Suite::describe`) and the summary table `gauntlet run` prints
//! (`summary::render`). A change to either shows up as a snapshot diff in review; run
//! `INSTA_UPDATE=always cargo test -p gauntlet --test it readable_text` and read the `.snap`
//! files to accept one. What differs between runs or machines (timings, the version, temp
//! paths) is masked; the figures are not: a fixed seed on CPU gives the same records on every
//! run (docs/results.md says what can differ on another CPU model).

use std::path::Path;

use gauntlet::suite::{Overrides, Suite};

use crate::common::*;

/// The repository root: example suites name their files relative to themselves.
fn repository() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn check_plan_of_the_embedded_default() {
    let suite = Suite::embedded_default(&Overrides::default()).unwrap();
    insta::assert_snapshot!(suite.describe());
}

#[test]
fn check_plan_of_an_example_suite() {
    // Run from the repository root with a relative path, as the README does: the plan names
    // the suite's files as resolved from that path, so nothing of this machine appears.
    let output = gauntlet(
        repository(),
        &["check", "examples/suites/l2-targeted-cw.toml"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
    insta::assert_snapshot!(mask_dir(&stdout(&output), repository()));
}

#[test]
fn run_summary_of_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let output = gauntlet(
        dir.path(),
        &[
            "run", "--limit", "64", "-q", "--format", "json", "--out", "out",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
    let text = mask_dir(&stdout(&output), dir.path());
    // Trailing blanks (the padding of the worst-case rows) are invisible in a terminal.
    let text: Vec<&str> = text.lines().map(str::trim_end).collect();
    insta::with_settings!({
        filters => vec![
            // The version in the first line.
            (r"(?m)^gauntlet \d+\.\d+\.\d+\S* ·", "gauntlet [version] ·"),
            // The seconds column: the last field of the clean and attack rows.
            (r"(?m)^(.*%.*\S) +\d+\.\d$", "$1   [secs]"),
            // The timings line.
            (r"\b\d+\.\d s\b", "[time]"),
        ]
    }, {
        insta::assert_snapshot!(text.join("\n"));
    });
}
