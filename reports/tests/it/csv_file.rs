use gauntlet_reports::{csv_string, write_csv, CSV_COLUMNS};

use crate::fixture;

fn read_rows(text: &str) -> (Vec<String>, Vec<csv::StringRecord>) {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader.records().map(Result::unwrap).collect();
    (header, rows)
}

fn number(row: &csv::StringRecord, column: &str) -> f64 {
    let at = CSV_COLUMNS.iter().position(|c| *c == column).unwrap();
    row[at]
        .parse()
        .unwrap_or_else(|_| panic!("`{column}` = {:?} is not a number", &row[at]))
}

fn cell<'a>(row: &'a csv::StringRecord, column: &str) -> &'a str {
    let at = CSV_COLUMNS.iter().position(|c| *c == column).unwrap();
    &row[at]
}

#[test]
fn header_is_the_documented_snake_case_columns() {
    let text = csv_string(&fixture::report()).unwrap();
    let first_line = text.lines().next().unwrap();
    assert_eq!(
        first_line,
        "kind,label,attack,norm,epsilon,robust_accuracy,ci95_low,ci95_high,correct,total,\
         success_rate,mean_loss,perturbation_mean,perturbation_median,perturbation_max,\
         max_linf,seconds,model,class,rate,seed,anomaly_index,mask_l1,flip_rate,mask_iou,\
         flagged,clean_accuracy,attack_success_rate,attack_ci95_low,attack_ci95_high,\
         false_rejection_rate,detection_rate,precision,recall,quantile,minimal_norm,\
         adaptive,auc,target_fpr,threshold,robust_with_guardrail,psi,kl"
    );
}

/// A minimal-norm attack's unbounded run: one `minimal_norm` row per quantile, its label
/// escaped like every text cell.
#[test]
fn minimal_norm_rows_hold_the_quantiles() {
    let mut report = fixture::report();
    report.minimal_norm = vec![gauntlet_reports::MinimalNormResult {
        label: "=deepfool".to_owned(),
        attack: "deepfool".to_owned(),
        norm: "l2".to_owned(),
        params: serde_json::Map::new(),
        success_rate: fixture::wilson(90, 100),
        quantiles: gauntlet_reports::MINIMAL_NORM_QUANTILES
            .iter()
            .map(|&q| gauntlet_reports::NormQuantile { q, value: q * 2.0 })
            .collect(),
        median: Some(1.0),
        mean: Some(1.1),
        seconds: 2.5,
    }];
    let (_, rows) = read_rows(&csv_string(&report).unwrap());
    let minimal: Vec<_> = rows
        .iter()
        .filter(|r| cell(r, "kind") == "minimal_norm")
        .collect();
    assert_eq!(minimal.len(), 5);
    for (row, q) in minimal.iter().zip(gauntlet_reports::MINIMAL_NORM_QUANTILES) {
        assert_eq!(cell(row, "label"), "'=deepfool");
        assert_eq!(cell(row, "quantile").parse::<f64>().unwrap(), q);
        assert_eq!(cell(row, "minimal_norm").parse::<f64>().unwrap(), q * 2.0);
        assert_eq!(cell(row, "perturbation_median"), "1");
        assert_eq!(cell(row, "correct"), "90");
        assert_eq!(cell(row, "total"), "100");
    }
    let html = gauntlet_reports::render_html(&report).unwrap();
    assert!(html.contains("<h3>Minimal perturbation</h3>"));
    assert!(html.contains("<strong>=deepfool</strong>"));
    let markdown = gauntlet_reports::render_markdown(&report);
    assert!(
        markdown.contains("broke 90.0% of the correctly classified samples, median ‖δ‖ 1.0000"),
        "{markdown}"
    );
}

#[test]
fn one_row_per_clean_attack_point_and_worst_case() {
    let report = fixture::report();
    let (header, rows) = read_rows(&csv_string(&report).unwrap());
    assert_eq!(header.len(), CSV_COLUMNS.len());
    // 1 clean + 2 attacks × 3 ε + 3 worst-case points.
    assert_eq!(rows.len(), 1 + 6 + 3);
    let kinds: Vec<&str> = rows.iter().map(|r| cell(r, "kind")).collect();
    assert_eq!(kinds[0], "clean");
    assert!(kinds[1..7].iter().all(|k| *k == "attack"));
    assert!(kinds[7..].iter().all(|k| *k == "worst_case"));
}

#[test]
fn numbers_parse_back_exactly() {
    let report = fixture::report();
    let (_, rows) = read_rows(&csv_string(&report).unwrap());

    let clean = &rows[0];
    assert_eq!(number(clean, "epsilon"), 0.0);
    assert_eq!(
        number(clean, "robust_accuracy"),
        report.clean.accuracy.value
    );
    assert_eq!(number(clean, "ci95_low"), report.clean.accuracy.ci95_low);
    assert_eq!(
        number(clean, "correct"),
        report.clean.accuracy.successes as f64
    );
    assert_eq!(number(clean, "mean_loss"), report.clean.mean_loss);
    assert_eq!(number(clean, "seconds"), report.timings.clean_seconds);
    assert_eq!(cell(clean, "success_rate"), "", "not applicable to clean");

    for (row, attack) in rows[1..7].iter().zip(&report.attacks) {
        assert_eq!(cell(row, "label"), attack.label);
        assert_eq!(cell(row, "attack"), attack.attack);
        assert_eq!(cell(row, "norm"), attack.norm);
        assert_eq!(number(row, "epsilon"), attack.epsilon);
        assert_eq!(number(row, "robust_accuracy"), attack.robust_accuracy.value);
        assert_eq!(number(row, "ci95_low"), attack.robust_accuracy.ci95_low);
        assert_eq!(number(row, "ci95_high"), attack.robust_accuracy.ci95_high);
        assert_eq!(
            number(row, "correct"),
            attack.robust_accuracy.successes as f64
        );
        assert_eq!(number(row, "total"), attack.robust_accuracy.total as f64);
        assert_eq!(number(row, "success_rate"), attack.success_rate.value);
        assert_eq!(number(row, "mean_loss"), attack.mean_loss);
        assert_eq!(number(row, "perturbation_mean"), attack.perturbation.mean);
        assert_eq!(
            number(row, "perturbation_median"),
            attack.perturbation.median
        );
        assert_eq!(number(row, "perturbation_max"), attack.perturbation.max);
        assert_eq!(number(row, "max_linf"), attack.perturbation.max_linf);
        assert_eq!(number(row, "seconds"), attack.seconds);
    }

    for (row, worst) in rows[7..].iter().zip(&report.worst_case) {
        assert_eq!(cell(row, "label"), "worst_case");
        assert_eq!(cell(row, "attack"), "fgsm+pgd");
        assert_eq!(number(row, "epsilon"), worst.epsilon);
        assert_eq!(number(row, "robust_accuracy"), worst.robust_accuracy.value);
        assert_eq!(number(row, "ci95_high"), worst.robust_accuracy.ci95_high);
        assert_eq!(cell(row, "perturbation_mean"), "");
    }
}

#[test]
fn labels_with_commas_and_quotes_are_quoted() {
    let mut report = fixture::report();
    report.attacks[0].label = r#"pgd, "strong""#.to_owned();
    let (_, rows) = read_rows(&csv_string(&report).unwrap());
    assert_eq!(rows.len(), 10);
    assert_eq!(cell(&rows[1], "label"), r#"pgd, "strong""#);
}

#[test]
fn write_csv_writes_the_same_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.csv");
    let report = fixture::report();
    write_csv(&report, &path).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        csv_string(&report).unwrap()
    );
}

#[test]
fn text_cells_that_a_spreadsheet_would_run_as_formulas_are_escaped() {
    let mut report = fixture::report();
    let payloads = [
        "=HYPERLINK(\"http://x\")",
        "+1+2",
        "-2+3",
        "@SUM(A1)",
        "\tx",
        "\rx",
    ];
    for (attack, payload) in report.attacks.iter_mut().zip(payloads) {
        attack.label = payload.to_owned();
    }
    report.worst_case[0].attacks = vec!["=cmd|' /C calc'!A0".to_owned()];
    let (_, rows) = read_rows(&csv_string(&report).unwrap());
    for (row, payload) in rows[1..7].iter().zip(payloads) {
        assert_eq!(cell(row, "label"), format!("'{payload}"));
    }
    assert_eq!(cell(&rows[7], "attack"), "'=cmd|' /C calc'!A0");
    // Plain text and numbers are left alone: a negative number is not a formula.
    assert_eq!(cell(&rows[0], "label"), "clean");
    assert_eq!(gauntlet_reports::text_cell("pgd"), "pgd");
    assert_eq!(gauntlet_reports::text_cell("linf"), "linf");
}
