use gauntlet_reports::{read_json, write_all, OutputFormat, ReportError};

use crate::fixture;

fn file_names(paths: &[std::path::PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn all_formats_write_json_csv_html_pngs_junit_and_markdown() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested/out");
    let report = fixture::report();
    let paths = write_all(&report, &out, &OutputFormat::ALL).unwrap();
    assert_eq!(
        file_names(&paths),
        [
            "results.json",
            "results.csv",
            "report.html",
            "robust_accuracy_linf.png",
            "per_class_accuracy.png",
            "example_01.png",
            "example_02.png",
            "example_03.png",
            "junit.xml",
            "summary.md"
        ]
    );
    for path in &paths {
        assert!(
            path.starts_with(&out) && path.is_file(),
            "{}",
            path.display()
        );
    }
    assert_eq!(read_json(&out.join("results.json")).unwrap(), report);
}

#[test]
fn only_the_requested_formats_are_written_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_all(
        &fixture::report(),
        dir.path(),
        &[OutputFormat::Csv, OutputFormat::Csv],
    )
    .unwrap();
    assert_eq!(file_names(&paths), ["results.csv"]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn invalid_report_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut report = fixture::report();
    report.timings.total_seconds = f64::INFINITY;
    let error = write_all(&report, dir.path(), &OutputFormat::ALL).unwrap_err();
    assert!(
        matches!(error, ReportError::InvalidReport { ref field, .. } if field == "timings.total_seconds")
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn formats_parse_from_the_command_line_spelling() {
    let formats: Vec<OutputFormat> = "json,csv, html,JUnit, markdown"
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(formats, OutputFormat::ALL);
    let error = "xml".parse::<OutputFormat>().unwrap_err();
    assert!(matches!(error, ReportError::UnknownFormat { ref given } if given == "xml"));
}
