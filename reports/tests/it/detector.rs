//! The guardrail part of a report (schema 5): the fixture with one detector scored against
//! PGD and an adaptive PGD at the same ε, through JSON, CSV, HTML and the ROC plot.

use gauntlet_reports::detector::{
    ConfidenceHistograms, DetectionAtFpr, DetectorResult, DetectorRow, DriftResult,
};
use gauntlet_reports::{csv_string, read_json, render_html, render_plots, write_json, CSV_COLUMNS};

use crate::fixture::{self, wilson};
use crate::png_plots::decode;

const HOSTILE_LABEL: &str = "<i>zscore</i>";

fn row(attack: &str, adaptive: bool, detected: [usize; 2], roc: Vec<[f64; 2]>) -> DetectorRow {
    DetectorRow {
        attack: attack.to_owned(),
        norm: "linf".to_owned(),
        epsilon: 0.1,
        adaptive,
        successful: 80,
        robust_accuracy: wilson(20, 100),
        auc: Some(if adaptive { 0.42 } else { 0.97 }),
        at_fpr: [0.01, 0.05]
            .iter()
            .zip(detected)
            .map(|(&target, hits)| DetectionAtFpr {
                target_fpr: target,
                threshold: 3.5,
                false_positive_rate: target,
                detection: Some(wilson(hits, 80)),
                robust_with_guardrail: wilson(20 + hits, 100),
            })
            .collect(),
        rule_detection: (!adaptive).then(|| wilson(78, 80)),
        roc,
    }
}

pub fn report_with_detector() -> gauntlet_reports::RunReport {
    let mut report = fixture::report();
    report.detectors = vec![DetectorResult {
        label: HOSTILE_LABEL.to_owned(),
        detector: "zscore".to_owned(),
        needs: "inputs".to_owned(),
        fit_samples: 500,
        fit_source: "the dataset's samples past `dataset.limit`".to_owned(),
        params: serde_json::Map::new(),
        clean_samples: 100,
        rule_threshold: Some(3.0),
        rule_false_positive: Some(wilson(58, 100)),
        rows: vec![
            row(
                "pgd",
                false,
                [72, 76],
                vec![[0.0, 0.0], [0.01, 0.9], [0.05, 0.95], [1.0, 1.0]],
            ),
            row(
                "adaptive_pgd",
                true,
                [0, 2],
                vec![[0.0, 0.0], [0.5, 0.3], [1.0, 1.0]],
            ),
        ],
        seconds: 1.5,
    }];
    report.output_drift = vec![DriftResult {
        attack: "pgd".to_owned(),
        norm: "linf".to_owned(),
        epsilon: 0.1,
        clean_counts: vec![10; 10],
        attacked_counts: vec![5, 5, 5, 5, 5, 5, 5, 5, 5, 55],
        psi: 1.234,
        kl: 0.567,
        confidence: Some(ConfidenceHistograms {
            clean: vec![0, 0, 0, 1, 2, 3, 4, 10, 20, 60],
            attacked: vec![0, 0, 0, 0, 0, 0, 0, 0, 10, 90],
        }),
    }];
    report
}

#[test]
fn a_report_with_a_detector_round_trips_through_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.json");
    let report = report_with_detector();
    write_json(&report, &path).unwrap();
    assert_eq!(read_json(&path).unwrap(), report);
}

#[test]
fn the_large_adaptive_gap_is_called_out_once_per_rate() {
    let report = report_with_detector();
    let gaps = report.detectors[0].large_gaps();
    // 72/80 = 90% → 0% at 1%, 76/80 = 95% → 2.5% at 5%: both gaps ≥ 20 points.
    assert_eq!(gaps.len(), 2, "{gaps:?}");
    assert!(
        gaps[0].contains("90.0%") && gaps[0].contains("0.0%"),
        "{}",
        gaps[0]
    );
    assert!(
        gaps[1].contains("95.0%") && gaps[1].contains("2.5%"),
        "{}",
        gaps[1]
    );
    // A small gap is not called out.
    let mut close = report.detectors[0].clone();
    close.rows[1] = row("adaptive_pgd", true, [70, 70], Vec::new());
    assert!(close.large_gaps().is_empty());
}

#[test]
fn csv_has_one_detector_row_per_attack_and_rate() {
    let text = csv_string(&report_with_detector()).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let at = |name: &str| CSV_COLUMNS.iter().position(|c| *c == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader
        .records()
        .map(Result::unwrap)
        .filter(|r| &r[at("kind")] == "detector")
        .collect();
    assert_eq!(rows.len(), 4);
    assert_eq!(&rows[0][at("label")], HOSTILE_LABEL);
    assert_eq!(&rows[0][at("attack")], "pgd");
    assert_eq!(&rows[0][at("adaptive")], "false");
    assert_eq!(&rows[0][at("target_fpr")], "0.01");
    assert_eq!(&rows[0][at("detection_rate")], "0.9");
    assert_eq!(&rows[0][at("correct")], "72");
    assert_eq!(&rows[0][at("robust_with_guardrail")], "0.92");
    assert_eq!(&rows[0][at("auc")], "0.97");
    assert_eq!(&rows[3][at("attack")], "adaptive_pgd");
    assert_eq!(&rows[3][at("adaptive")], "true");
    assert_eq!(&rows[3][at("detection_rate")], "0.025");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let drift: Vec<csv::StringRecord> = reader
        .records()
        .map(Result::unwrap)
        .filter(|r| &r[at("kind")] == "output_drift")
        .collect();
    assert_eq!(drift.len(), 1);
    assert_eq!(
        (&drift[0][at("psi")], &drift[0][at("kl")]),
        ("1.234", "0.567")
    );
}

#[test]
fn html_shows_the_guardrail_table_the_gap_and_the_roc_curve() {
    let html = render_html(&report_with_detector()).unwrap();
    assert!(html.contains("<section id=\"guardrails\">"));
    assert!(html.contains("href=\"#guardrails\""));
    assert!(!html.contains(HOSTILE_LABEL), "labels are escaped");
    assert!(html.contains("&lt;i&gt;zscore&lt;/i&gt;"));
    assert!(html.contains("overstates this guardrail"));
    assert!(html.contains("rejects 58.0% of the 100 clean inputs"));
    assert!(html.contains("alt=\"&lt;i&gt;zscore&lt;/i&gt;: ROC"));
    assert!(html.contains("<h3>Output monitoring</h3>"));
    assert!(html.contains("<td class=\"num\">1.234</td>"));
    let without = render_html(&fixture::report()).unwrap();
    assert!(!without.contains("id=\"guardrails\""));
}

#[test]
fn one_roc_png_per_detector() {
    let plots = render_plots(&report_with_detector()).unwrap();
    // Every plot's name is one the harness recognises as a plot (and may replace).
    for plot in &plots {
        assert!(
            gauntlet_reports::is_plot_file_name(&plot.file_name),
            "{}",
            plot.file_name
        );
    }
    let roc: Vec<_> = plots
        .iter()
        .filter(|p| p.file_name.starts_with("detector_roc_"))
        .collect();
    assert_eq!(roc.len(), 1);
    assert_eq!(roc[0].file_name, "detector_roc_01__i_zscore__i_.png");
    let (width, height, _) = decode(&roc[0].png);
    assert_eq!((width, height), (900, 480));
    let confidence: Vec<_> = plots
        .iter()
        .filter(|p| p.file_name.starts_with("confidence_"))
        .collect();
    assert_eq!(confidence.len(), 1);
    assert_eq!(confidence[0].file_name, "confidence_01_pgd_0_1.png");
    decode(&confidence[0].png);
}

#[test]
fn a_drift_with_mismatched_classes_or_bins_is_refused() {
    let mut report = report_with_detector();
    report.output_drift[0].attacked_counts.pop();
    let error = report.validate().unwrap_err().to_string();
    assert!(error.contains("output_drift[0].attacked_counts"), "{error}");
    let mut report = report_with_detector();
    report.output_drift[0]
        .confidence
        .as_mut()
        .unwrap()
        .clean
        .pop();
    let error = report.validate().unwrap_err().to_string();
    assert!(
        error.contains("output_drift[0].confidence.clean"),
        "{error}"
    );
}

#[test]
fn an_auc_above_one_or_a_roc_point_outside_the_square_is_refused() {
    let mut report = report_with_detector();
    report.detectors[0].rows[0].auc = Some(1.5);
    let error = report.validate().unwrap_err().to_string();
    assert!(error.contains("detectors[0].rows[0].auc"), "{error}");
    let mut report = report_with_detector();
    report.detectors[0].rows[1].roc[1] = [0.5, f64::NAN];
    let error = report.validate().unwrap_err().to_string();
    assert!(error.contains("detectors[0].rows[1].roc[1][1]"), "{error}");
}
