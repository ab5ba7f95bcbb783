use std::path::Path;

use gauntlet_reports::{read_json, write_json, ReportError, SCHEMA_VERSION};

use crate::fixture;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `tests/fixtures/run_report.json` is the fixture written by this crate; it must still parse and
/// equal the in-code fixture. Regenerate with `GAUNTLET_BLESS_FIXTURES=1 cargo test -p
/// gauntlet-reports` after changing either the schema or `fixture.rs`.
#[test]
fn checked_in_fixture_deserialises_to_the_code_fixture() {
    let path = fixture::json_path();
    if std::env::var_os("GAUNTLET_BLESS_FIXTURES").is_some() {
        write_json(&fixture::report(), &path).unwrap();
    }
    let report = read_json(&path).unwrap();
    assert_eq!(report, fixture::report());
    assert_eq!(
        report.dataset.class_names[fixture::HOSTILE_CLASS],
        fixture::HOSTILE_CLASS_NAME
    );
}

/// A version-1 `results.json` (written before the per-sample records) still reads, equals the
/// code fixture without the version-2 keys, and renders.
#[test]
fn a_version_1_file_still_reads_and_renders() {
    let path = fixture::json_path().with_file_name("run_report_v1.json");
    let report = read_json(&path).unwrap();
    assert_eq!(report.schema_version, 1);
    let mut expected = fixture::report();
    expected.schema_version = 1;
    expected.kernel_path = None;
    expected.notices = Vec::new();
    expected.samples_file = None;
    for attack in &mut expected.attacks {
        attack.kind = None;
        attack.needs = None;
        attack.objective = None;
    }
    assert_eq!(report, expected);
    let html = gauntlet_reports::render_html(&report).unwrap();
    assert!(
        html.contains("mnist-linf-smoke"),
        "the page names the suite"
    );
}

#[test]
fn json_round_trip_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.json");
    let report = fixture::report();
    write_json(&report, &path).unwrap();
    let back = read_json(&path).unwrap();
    assert_eq!(back, report);

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with(&format!("{{\n  \"schema_version\": {SCHEMA_VERSION},\n")),
        "pretty, version first"
    );
    assert!(text.ends_with("}\n"));
}

#[test]
fn awkward_floats_survive_the_round_trip() {
    // Values whose shortest decimal form is long; a lossy float parser gets some of these wrong
    // by one ulp.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.json");
    let mut report = fixture::report();
    report.attacks[0].epsilon = 8.0 / 255.0;
    report.attacks[0].mean_loss = 0.1 + 0.2;
    report.attacks[1].mean_loss = 1.0 / 3.0;
    report.attacks[2].mean_loss = 2.2250738585072014e-308;
    report.examples[0].original[0] = 1.0 / 3.0;
    report.examples[0].adversarial[0] = 0.1 + 0.2;
    write_json(&report, &path).unwrap();
    assert_eq!(read_json(&path).unwrap(), report);
}

#[test]
fn newer_schema_version_is_refused_with_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let text = serde_json::to_string_pretty(&fixture::report())
        .unwrap()
        .replace(
            &format!("\"schema_version\": {SCHEMA_VERSION},"),
            "\"schema_version\": 999,\n  \"added_in_v999\": true,",
        );
    let path = write(dir.path(), "future.json", &text);
    let error = read_json(&path).unwrap_err();
    match &error {
        ReportError::UnsupportedSchemaVersion {
            found,
            supported,
            path: p,
            ..
        } => {
            assert_eq!(*found, 999);
            assert_eq!(*supported, SCHEMA_VERSION);
            assert_eq!(p, &path);
        }
        other => panic!("expected UnsupportedSchemaVersion, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("schema_version 999"), "{message}");
    assert!(
        message.contains(&format!("to {SCHEMA_VERSION} only")),
        "{message}"
    );
    assert!(message.contains("newer gauntlet"), "{message}");
    assert!(message.contains("future.json"), "{message}");
}

#[test]
fn older_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "old.json",
        r#"{"schema_version": 0, "whatever": []}"#,
    );
    let error = read_json(&path).unwrap_err();
    assert!(matches!(
        error,
        ReportError::UnsupportedSchemaVersion { found: 0, .. }
    ));
    assert!(error.to_string().contains("older gauntlet"), "{error}");
}

#[test]
fn missing_schema_version_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "noversion.json", r#"{"suite": {"name": "x"}}"#);
    let error = read_json(&path).unwrap_err();
    assert!(
        matches!(error, ReportError::MissingSchemaVersion { .. }),
        "{error:?}"
    );
}

#[test]
fn malformed_json_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "broken.json",
        "{\n  \"schema_version\": 1,\n  \"suite\": }\n",
    );
    let error = read_json(&path).unwrap_err();
    assert!(matches!(error, ReportError::Json { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("broken.json"), "{message}");
    assert!(message.contains("line 3 column 12"), "{message}");
}

#[test]
fn wrong_type_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let text = serde_json::to_string_pretty(&fixture::report())
        .unwrap()
        .replace("\"seed\": 20240611,", "\"seed\": \"twenty\",");
    let line = text.lines().position(|l| l.contains("\"twenty\"")).unwrap() + 1;
    let path = write(dir.path(), "typed.json", &text);
    let message = read_json(&path).unwrap_err().to_string();
    assert!(message.contains("typed.json"), "{message}");
    assert!(
        message.contains(&format!("line {line} column")),
        "{message}"
    );
}

#[test]
fn unknown_field_in_current_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = serde_json::to_string_pretty(&fixture::report())
        .unwrap()
        .replace("\"seed\":", "\"sede\": 1,\n  \"seed\":");
    let path = write(dir.path(), "typo.json", &text);
    let message = read_json(&path).unwrap_err().to_string();
    assert!(message.contains("unknown field `sede`"), "{message}");
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.json");
    match read_json(&path).unwrap_err() {
        ReportError::Io { path: p, .. } => assert_eq!(p, path),
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn non_finite_number_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.json");
    let mut report = fixture::report();
    report.attacks[4].mean_loss = f64::NAN;
    match write_json(&report, &path).unwrap_err() {
        ReportError::InvalidReport { field, .. } => assert_eq!(field, "attacks[4].mean_loss"),
        other => panic!("expected InvalidReport, got {other:?}"),
    }
    assert!(
        !path.exists(),
        "nothing may be written for an invalid report"
    );
}

#[test]
fn example_with_wrong_pixel_count_is_refused() {
    let mut report = fixture::report();
    report.examples[1].adversarial.pop();
    match report.validate().unwrap_err() {
        ReportError::InvalidReport { field, reason } => {
            assert_eq!(field, "examples[1].adversarial");
            assert!(reason.contains("783 values"), "{reason}");
        }
        other => panic!("expected InvalidReport, got {other:?}"),
    }
}

#[test]
fn out_of_range_proportion_in_a_file_names_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut value = serde_json::to_value(fixture::report()).unwrap();
    value["worst_case"][1]["robust_accuracy"]["value"] = serde_json::json!(1.5);
    let path = write(dir.path(), "range.json", &value.to_string());
    match read_json(&path).unwrap_err() {
        ReportError::InvalidReportFile { path: p, field, .. } => {
            assert_eq!(p, path);
            assert_eq!(field, "worst_case[1].robust_accuracy.value");
        }
        other => panic!("expected InvalidReportFile, got {other:?}"),
    }
}

/// A gallery past `MAX_GALLERY_VALUES` is refused when read (naming the example that passes
/// it) and when written, so a results.json cannot make `gauntlet report` hold an unbounded
/// gallery; one exactly at the bound is fine.
#[test]
fn a_gallery_past_its_bound_is_refused_on_read_and_write() {
    use gauntlet_reports::MAX_GALLERY_VALUES;
    let dir = tempfile::tempdir().unwrap();
    let mut report = fixture::report();
    let mut example = report.examples[0].clone();
    // Half the bound per array: exactly at the limit.
    let side = MAX_GALLERY_VALUES / 2;
    example.shape = vec![1, 1, side];
    example.original = vec![0.5; side];
    example.adversarial = vec![0.25; side];
    report.examples = vec![example.clone()];
    let at_limit = dir.path().join("at_limit.json");
    write_json(&report, &at_limit).unwrap();
    assert_eq!(read_json(&at_limit).unwrap().examples.len(), 1);

    // One more example of one pixel passes the bound.
    let mut one_more = example;
    one_more.shape = vec![1, 1, 1];
    one_more.original = vec![0.5];
    one_more.adversarial = vec![0.25];
    report.examples.push(one_more);
    let past = dir.path().join("past.json");
    let error = write_json(&report, &past).unwrap_err();
    assert!(error.to_string().contains("examples[1]"), "{error}");
    assert!(!past.exists());
    // Written by hand (as a hostile file would be), it is refused on reading.
    let text = gauntlet_reports::to_json_string(&report).unwrap();
    std::fs::write(&past, text).unwrap();
    let error = read_json(&past).unwrap_err().to_string();
    assert!(error.contains("past.json"), "{error}");
    assert!(error.contains("examples[1]"), "{error}");
    assert!(error.contains(&MAX_GALLERY_VALUES.to_string()), "{error}");
}

/// A schema-2 `results.json` (written before the backdoor section) still reads.
#[test]
fn a_schema_2_file_still_reads() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run_report_v2.json");
    let report = read_json(&path).unwrap();
    assert_eq!(report.schema_version, 2);
    assert!(report.backdoor.is_none());
}

/// A schema-3 file (before minimal-norm attacks) still reads: it is the code fixture with no
/// `minimal_norm` entries.
#[test]
fn a_schema_3_file_still_reads() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run_report_v3.json");
    let report = read_json(&path).unwrap();
    assert_eq!(report.schema_version, 3);
    assert!(report.minimal_norm.is_empty());
    let mut expected = fixture::report();
    expected.schema_version = 3;
    assert_eq!(report, expected);
}

/// A schema-4 file (before the `standard` ensemble's per-member counts) still reads: it is the
/// code fixture, which has no `standard` run.
#[test]
fn a_schema_4_file_still_reads() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run_report_v4.json");
    let report = read_json(&path).unwrap();
    assert_eq!(report.schema_version, 4);
    let mut expected = fixture::report();
    expected.schema_version = 4;
    assert_eq!(report, expected);
}
