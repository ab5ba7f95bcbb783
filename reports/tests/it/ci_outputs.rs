//! `junit.xml` and `summary.md`: what a CI system's test tab and a pull-request comment show.
//!
//! Set `GAUNTLET_JUNIT_OUT=/some/folder` to also write the JUnit documents of these tests there
//! (the fixture with its failing gate, a hostile suite name, a run with a baseline), for
//! validation against the Jenkins xUnit plugin's junit-10.xsd by
//! `reports/tests/interop/validate_junit.sh` (CI runs it).

use gauntlet_reports::{
    render_junit, render_markdown, write_all, BaselineComparison, BaselineRow, ChangeVerdict,
    CheckStatus, GateBound, GateVerdict, OutputFormat, ProportionChange, RunReport,
    JUNIT_FILE_NAME, MARKDOWN_FILE_NAME,
};

use crate::fixture;

const HOSTILE_SUITE: &str = "night <script>alert(1)</script> & \"co\" | `x` [y](z)\u{7}";

fn hostile() -> RunReport {
    let mut report = fixture::report();
    report.suite.name = HOSTILE_SUITE.to_owned();
    report
}

/// A report compared with a baseline: pgd@0.1 fell significantly and its relative gate failed.
fn with_baseline() -> RunReport {
    let mut report = fixture::report();
    let now = report.attacks[3].robust_accuracy;
    let previous = fixture::wilson(now.successes + 60, now.total);
    report.gates.push(GateVerdict {
        gate: "max_robust_accuracy_drop[pgd@0.1]".to_owned(),
        threshold: 0.02,
        actual: 0.06,
        passed: false,
        bound: GateBound::AtMost,
        detail: None,
    });
    report.baseline = Some(BaselineComparison {
        path: "last-night/results.json".to_owned(),
        suite: report.suite.name.clone(),
        gauntlet_version: report.gauntlet_version.clone(),
        model_sha256: "ab".repeat(32),
        dataset: report.dataset.name.clone(),
        samples: report.dataset.samples,
        seed: report.seed,
        method: "Newcombe".to_owned(),
        rows: vec![BaselineRow {
            key: "pgd@0.1".to_owned(),
            previous: Some(previous),
            now: Some(now),
            change: Some(ProportionChange {
                delta: -0.06,
                ci95_low: -0.09,
                ci95_high: -0.03,
                p_value: 0.0004,
                significant: true,
            }),
            verdict: ChangeVerdict::Regressed,
            note: None,
        }],
        warnings: vec!["the seed differs: 0 before, 1 now".to_owned()],
    });
    report
}

fn save(name: &str, text: &str) {
    if let Some(dir) = std::env::var_os("GAUNTLET_JUNIT_OUT") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), text).unwrap();
    }
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn junit_has_one_case_per_gate_and_check_and_a_failure_per_failed_one() {
    let report = fixture::report();
    let xml = render_junit(&report);
    save("fixture.xml", &xml);
    let failed_gates = report.gates.iter().filter(|g| !g.passed).count();
    let failed_checks = report
        .sanity_checks
        .iter()
        .filter(|c| c.status == CheckStatus::Fail)
        .count();
    assert!(failed_gates >= 1, "the fixture has a failing gate");
    let tests = report.gates.len() + report.sanity_checks.len();
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites "));
    assert!(xml.contains(&format!(
        "tests=\"{tests}\" failures=\"{}\" errors=\"0\"",
        failed_gates + failed_checks
    )));
    assert_eq!(count(&xml, "<testcase "), tests);
    assert_eq!(count(&xml, "<failure "), failed_gates + failed_checks);
    assert_eq!(count(&xml, "<testsuite "), 2);
    assert_eq!(count(&xml, "</testsuite>"), 2);
    for gate in &report.gates {
        assert!(
            xml.contains(&format!("name=\"{}\"", gate.gate)),
            "{}",
            gate.gate
        );
        if !gate.passed {
            // The same sentence the terminal prints, as the failure's message.
            let escaped = gate
                .failure_message()
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            assert!(xml.contains(&format!("message=\"{escaped}\"")), "{xml}");
        }
    }
    assert!(xml.contains(&format!(
        "<property name=\"model_sha256\" value=\"{}\"/>",
        report.model.sha256
    )));
}

#[test]
fn junit_warnings_pass_with_the_warning_in_system_out() {
    let report = fixture::report();
    let xml = render_junit(&report);
    for check in report
        .sanity_checks
        .iter()
        .filter(|c| c.status == CheckStatus::Warn)
    {
        let case = xml
            .split("<testcase ")
            .find(|case| case.contains(&format!("name=\"{}\"", check.name)))
            .unwrap();
        assert!(!case.contains("<failure"), "{case}");
        assert!(case.contains("<system-out>warning: "), "{case}");
    }
}

#[test]
fn junit_escapes_a_hostile_suite_name() {
    let xml = render_junit(&hostile());
    save("hostile.xml", &xml);
    assert!(!xml.contains("<script>"));
    assert!(!xml.contains('\u{7}'));
    assert!(xml.contains("night &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;co&quot;"));
}

#[test]
fn junit_carries_relative_gates_and_the_baseline() {
    let xml = render_junit(&with_baseline());
    save("baseline.xml", &xml);
    assert!(xml.contains(
        "message=\"gate failed: max_robust_accuracy_drop[pgd@0.1] = 6.00 points &gt; 2.00 points (over by 4.00 points)\""
    ));
    assert!(xml.contains("<property name=\"baseline\" value=\"last-night/results.json\"/>"));
}

#[test]
fn markdown_has_a_verdict_the_table_and_the_failures() {
    let report = fixture::report();
    let md = render_markdown(&report);
    let headline = md.lines().next().unwrap();
    assert!(headline.starts_with("## gauntlet: suite "), "{headline}");
    assert!(headline.contains("❌ failed (1 gate"), "{headline}");
    // clean + every attack + every worst case over more than one attack.
    let rows = 1
        + report.attacks.len()
        + report
            .worst_case
            .iter()
            .filter(|w| w.attacks.len() > 1)
            .count();
    let table = md
        .split("\n\n")
        .find(|block| block.starts_with("| attack |"))
        .unwrap();
    assert_eq!(table.lines().count(), 2 + rows);
    assert!(table.contains(&format!(
        "| pgd | linf | 0.1 | {:.1}% |",
        report.attacks[3].robust_accuracy.value * 100.0
    )));
    let failed = report.gates.iter().find(|g| !g.passed).unwrap();
    assert!(
        md.contains(&format!(
            "| ❌ | <code>{}</code> |",
            failed
                .gate
                .replace('[', "\\[")
                .replace(']', "\\]")
                .replace('_', "\\_")
        )),
        "{md}"
    );
}

#[test]
fn markdown_escapes_a_hostile_suite_name() {
    let md = render_markdown(&hostile());
    assert!(!md.contains("<script>"));
    assert!(!md.contains("](z)"), "no link can be formed: {md}");
    assert!(!md.contains(" | `x`"), "no column break or code span: {md}");
}

#[test]
fn markdown_shows_the_baseline_table() {
    let md = render_markdown(&with_baseline());
    assert!(md.contains("### Against the baseline"));
    assert!(md.contains("> ⚠️ the seed differs: 0 before, 1 now"));
    assert!(
        md.contains("| −6.0 pp \\[−9.0 pp, −3.0 pp\\]")
            || md.contains("−6.0 pp [−9.0 pp, −3.0 pp]"),
        "{md}"
    );
    assert!(
        md.contains("| < 0.001 | ⬇️ **regressed** |") || md.contains("&lt; 0.001"),
        "{md}"
    );
}

#[test]
fn write_all_writes_junit_and_markdown() {
    let dir = tempfile::tempdir().unwrap();
    let report = fixture::report();
    let written = write_all(
        &report,
        dir.path(),
        &[OutputFormat::Junit, OutputFormat::Markdown],
    )
    .unwrap();
    assert_eq!(
        written,
        [
            dir.path().join(JUNIT_FILE_NAME),
            dir.path().join(MARKDOWN_FILE_NAME)
        ]
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join(JUNIT_FILE_NAME)).unwrap(),
        render_junit(&report)
    );
}

/// A matrix of two cells under a hostile suite name: the fixture (a failing gate) and a passing
/// copy whose first attack's label holds a line break (legal in a suite, and in CSV quoted).
fn matrix() -> gauntlet_reports::MatrixReport {
    let failing = fixture::report();
    let mut passing = fixture::report();
    for gate in &mut passing.gates {
        gate.passed = true;
    }
    passing
        .sanity_checks
        .retain(|c| c.status != CheckStatus::Fail);
    passing.attacks[0].label = "pgd\nstrong, \"quoted\"".to_owned();
    let cell = |model: &str, report: RunReport, passed: bool| {
        let id = gauntlet_reports::matrix::cell_id(model, "test");
        gauntlet_reports::MatrixCell {
            folder: gauntlet_reports::matrix::cell_folder(&id),
            id,
            model: model.to_owned(),
            dataset: "test".to_owned(),
            passed,
            report,
        }
    };
    let mut suite = failing.suite.clone();
    suite.name = HOSTILE_SUITE.to_owned();
    gauntlet_reports::MatrixReport {
        matrix_schema_version: gauntlet_reports::MATRIX_SCHEMA_VERSION,
        gauntlet_version: "0.1.0".to_owned(),
        suite,
        seed: 0,
        passed: false,
        cells: vec![
            cell("release", failing, false),
            cell("candidate", passing, true),
        ],
    }
}

#[test]
fn a_matrix_renders_every_cell_and_its_failures() {
    use gauntlet_reports::matrix::{
        matrix_csv_string, render_matrix_html, render_matrix_junit, render_matrix_markdown,
    };
    let matrix = matrix();
    matrix.validate().unwrap();
    let xml = render_matrix_junit(&matrix);
    save("matrix.xml", &xml);
    let failed_gates: usize = matrix
        .cells
        .iter()
        .map(|c| c.report.gates.iter().filter(|g| !g.passed).count())
        .sum();
    let failed_checks: usize = matrix
        .cells
        .iter()
        .map(|c| {
            c.report
                .sanity_checks
                .iter()
                .filter(|s| s.status == CheckStatus::Fail)
                .count()
        })
        .sum();
    assert!(failed_gates > 0);
    assert_eq!(count(&xml, "<failure "), failed_gates + failed_checks);
    assert_eq!(
        count(&xml, "<testsuite "),
        4,
        "gates and checks of each cell"
    );
    assert!(xml.contains(".release--test.gates"));
    assert!(!xml.contains("<script>"), "{xml}");

    let html = render_matrix_html(&matrix).unwrap();
    assert!(html.contains("cells/release--test/report.html"));
    assert!(html.contains("FAILED") && html.contains("1 of 2 cells failed"));
    assert!(!html.contains("<script>"), "a hostile cell id is escaped");
    assert!(
        html.contains("data:image/png;base64,"),
        "the worst-case chart is embedded"
    );

    let markdown = render_matrix_markdown(&matrix);
    assert!(markdown.contains("❌ failed (1 of 2 cells)"), "{markdown}");
    assert!(!markdown.contains("<script>"), "{markdown}");

    // Read back as CSV: one header, then every record of every cell, each as wide as the
    // header, the line break kept inside its field.
    let csv = matrix_csv_string(&matrix).unwrap();
    let records = |text: &str| -> Vec<Vec<String>> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text.as_bytes())
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect()
    };
    let rows = records(&csv);
    let single: Vec<_> = matrix
        .cells
        .iter()
        .map(|c| records(&gauntlet_reports::csv_string(&c.report).unwrap()))
        .collect();
    assert_eq!(rows.len(), 1 + single[0].len() - 1 + single[1].len() - 1);
    assert_eq!(&rows[0][..2], ["cell_model", "cell_dataset"]);
    assert!(rows.iter().all(|r| r.len() == rows[0].len()));
    assert!(rows
        .iter()
        .any(|r| r[0] == "candidate" && r.contains(&"pgd\nstrong, \"quoted\"".to_owned())));
}

#[test]
fn a_matrix_that_contradicts_itself_is_refused() {
    let refused = |change: &dyn Fn(&mut gauntlet_reports::MatrixReport), field: &str| {
        let mut bad = matrix();
        change(&mut bad);
        let message = format!("{}", bad.validate().unwrap_err());
        assert!(message.contains(field), "{field}: {message}");
    };
    refused(&|m| m.passed = true, "passed");
    refused(&|m| m.cells[1].folder = "../elsewhere".to_owned(), "folder");
    refused(
        &|m| m.cells[1].folder = "https:/evil.example".to_owned(),
        "folder",
    );
    refused(&|m| m.cells[1].id = m.cells[0].id.clone(), "cells[1].id");
    refused(&|m| m.cells[1].model = "a/b".to_owned(), "cells[1].model");
    // Ids differing only in case are one folder on macOS and Windows.
    refused(
        &|m| {
            m.cells[1].model = "Release".to_owned();
            m.cells[1].id = "Release--test".to_owned();
            m.cells[1].folder = "cells/Release--test".to_owned();
        },
        "used twice",
    );
    // A cell with a failed gate cannot pass; one with none and no failed check cannot fail.
    refused(
        &|m| {
            m.cells[0].passed = true;
            m.passed = false;
        },
        "cells[0].passed",
    );
    refused(&|m| m.cells[1].passed = false, "cells[1].passed");
    refused(
        &|m| m.cells[0].report.clean.mean_loss = f64::NAN,
        "cells[0]",
    );
    // A matrix results file reads back to the same matrix, and is told apart from one run's.
    let json = serde_json::to_vec(&matrix()).unwrap();
    assert!(gauntlet_reports::matrix::is_matrix_json(&json));
    assert!(!gauntlet_reports::matrix::is_matrix_json(
        &serde_json::to_vec(&fixture::report()).unwrap()
    ));
    let back =
        gauntlet_reports::matrix::parse_matrix_json(&json, std::path::Path::new("m.json")).unwrap();
    assert_eq!(back, matrix());
}
