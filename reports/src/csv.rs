//! `results.csv`: one flat row per measured point, for pandas and spreadsheets.

use std::path::Path;

use crate::error::ReportError;
use crate::schema::RunReport;

mod backdoor;

/// The CSV header, in column order: the evasion columns, then the backdoor ones
/// (`model` … `recall`, documented in `csv/backdoor.rs`), which evasion rows leave empty.
pub const CSV_COLUMNS: [&str; 43] = [
    "kind",
    "label",
    "attack",
    "norm",
    "epsilon",
    "robust_accuracy",
    "ci95_low",
    "ci95_high",
    "correct",
    "total",
    "success_rate",
    "mean_loss",
    "perturbation_mean",
    "perturbation_median",
    "perturbation_max",
    "max_linf",
    "seconds",
    "model",
    "class",
    "rate",
    "seed",
    "anomaly_index",
    "mask_l1",
    "flip_rate",
    "mask_iou",
    "flagged",
    "clean_accuracy",
    "attack_success_rate",
    "attack_ci95_low",
    "attack_ci95_high",
    "false_rejection_rate",
    "detection_rate",
    "precision",
    "recall",
    "quantile",
    "minimal_norm",
    "adaptive",
    "auc",
    "target_fpr",
    "threshold",
    "robust_with_guardrail",
    "psi",
    "kl",
];

/// How many of [`CSV_COLUMNS`] the evasion rows fill.
const EVASION_COLUMNS: usize = 17;

/// Writes one row for the clean evaluation (`kind = clean`, ε = 0), one per (attack, ε)
/// (`kind = attack`) and one per worst-case point (`kind = worst_case`, `label = worst_case`,
/// `attack` = the contributing labels joined with `+`). A minimal-norm attack's unbounded run
/// adds one row per quantile of its smallest successful perturbation (`kind = minimal_norm`,
/// `quantile` = the level, `minimal_norm` = the norm there; `correct`/`total` = the broken
/// and the correctly classified samples, `perturbation_mean`/`_median` over the broken ones).
/// A `standard` ensemble run adds one row per member at each ε (`kind = member`, `label` =
/// the run's label, `attack` = the member, `correct` = the samples that member broke, `total`
/// = the correctly classified samples, `success_rate` = their ratio).
///
/// Cells that do not apply to a row (the success rate of the clean row, the perturbation of a
/// worst case) are empty, which pandas reads as NaN. Numbers use Rust's shortest round-trip
/// formatting, so reading a cell back gives the exact `f64` that was written.
///
/// Text cells (labels, attack names, norms) come from a suite someone else may have written, so
/// they are escaped against spreadsheet formula injection by the OWASP rule: a cell that starts
/// with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'` ([`text_cell`]).
/// Number cells are never escaped (a negative number is a number, not a formula).
pub fn write_csv(report: &RunReport, path: &Path) -> Result<(), ReportError> {
    report.validate()?;
    let text = csv_string(report).map_err(|source| ReportError::Csv {
        path: path.to_owned(),
        source,
    })?;
    fs_err::write(path, text).map_err(|source| ReportError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The text [`write_csv`] writes.
pub fn csv_string(report: &RunReport) -> Result<String, ::csv::Error> {
    let mut writer = ::csv::Writer::from_writer(Vec::new());
    writer.write_record(CSV_COLUMNS)?;
    for row in rows(report) {
        let mut row = row.to_vec();
        row.resize(CSV_COLUMNS.len(), String::new());
        writer.write_record(row)?;
    }
    for row in minimal_norm_rows(report) {
        writer.write_record(row)?;
    }
    for row in member_rows(report) {
        writer.write_record(row)?;
    }
    for row in backdoor::rows(report, &CSV_COLUMNS) {
        writer.write_record(row)?;
    }
    for row in detector_rows(report) {
        writer.write_record(row)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|error| ::csv::Error::from(error.into_error()))?;
    // Every cell came from a `String`, so the bytes are UTF-8; the lossy conversion never
    // replaces anything.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The `detector` rows: one per (detector, attack@ε, target false-positive rate), then one
/// `output_drift` row per attack@ε (`psi`, `kl`; `label` = `attack` = the attack's label). `label` is
/// the detector's label, `attack` the attack's; `robust_accuracy` and its interval are without
/// the guardrail, `robust_with_guardrail` with it at `threshold` (the score threshold the target
/// rate gives on clean inputs; `false_rejection_rate` is the clean rate achieved),
/// `detection_rate` the share of the successful adversarial inputs flagged, `correct`/`total`
/// those counts, `auc` the ROC AUC (empty when the attack broke nothing).
fn detector_rows(report: &RunReport) -> Vec<Vec<String>> {
    let column = |name: &str| CSV_COLUMNS.iter().position(|c| *c == name);
    let mut rows = Vec::new();
    for detector in &report.detectors {
        for row in &detector.rows {
            for point in &row.at_fpr {
                let mut cells = vec![String::new(); CSV_COLUMNS.len()];
                let mut set = |name: &str, value: String| {
                    if let Some(at) = column(name) {
                        cells[at] = value;
                    }
                };
                set("kind", "detector".to_owned());
                set("label", text_cell(&detector.label));
                set("attack", text_cell(&row.attack));
                set("norm", text_cell(&row.norm));
                set("epsilon", row.epsilon.to_string());
                set("robust_accuracy", row.robust_accuracy.value.to_string());
                set("ci95_low", row.robust_accuracy.ci95_low.to_string());
                set("ci95_high", row.robust_accuracy.ci95_high.to_string());
                if let Some(detection) = &point.detection {
                    set("detection_rate", detection.value.to_string());
                    set("correct", detection.successes.to_string());
                    set("total", detection.total.to_string());
                }
                set(
                    "false_rejection_rate",
                    point.false_positive_rate.to_string(),
                );
                set("seconds", detector.seconds.to_string());
                set("adaptive", row.adaptive.to_string());
                set("auc", row.auc.map(|a| a.to_string()).unwrap_or_default());
                set("target_fpr", point.target_fpr.to_string());
                set("threshold", point.threshold.to_string());
                set(
                    "robust_with_guardrail",
                    point.robust_with_guardrail.value.to_string(),
                );
                rows.push(cells);
            }
        }
    }
    for drift in &report.output_drift {
        let mut cells = vec![String::new(); CSV_COLUMNS.len()];
        let mut set = |name: &str, value: String| {
            if let Some(at) = column(name) {
                cells[at] = value;
            }
        };
        set("kind", "output_drift".to_owned());
        set("label", text_cell(&drift.attack));
        set("attack", text_cell(&drift.attack));
        set("norm", text_cell(&drift.norm));
        set("epsilon", drift.epsilon.to_string());
        set("psi", drift.psi.to_string());
        set("kl", drift.kl.to_string());
        rows.push(cells);
    }
    rows
}

/// A text cell as written to the CSV: prefixed with `'` when a spreadsheet would otherwise read
/// it as a formula (OWASP's CSV injection rule).
pub fn text_cell(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// The `member` rows: one per member of each ensemble run (`standard`) at each ε.
fn member_rows(report: &RunReport) -> Vec<Vec<String>> {
    let column = |name: &str| CSV_COLUMNS.iter().position(|c| *c == name);
    let mut rows = Vec::new();
    for attack in &report.attacks {
        let total = attack.success_rate.total;
        for credit in &attack.broken_by {
            let mut row = vec![String::new(); CSV_COLUMNS.len()];
            let mut set = |name: &str, cell: String| {
                if let Some(at) = column(name) {
                    row[at] = cell;
                }
            };
            set("kind", "member".to_owned());
            set("label", text_cell(&attack.label));
            set("attack", text_cell(&credit.member));
            set("norm", text_cell(&attack.norm));
            set("epsilon", attack.epsilon.to_string());
            set("correct", credit.broken.to_string());
            set("total", total.to_string());
            if total > 0 {
                set(
                    "success_rate",
                    (credit.broken as f64 / total as f64).to_string(),
                );
            }
            rows.push(row);
        }
    }
    rows
}

/// The `minimal_norm` rows: one per quantile (one with empty quantile cells when nothing was
/// broken) of each minimal-norm attack.
fn minimal_norm_rows(report: &RunReport) -> Vec<Vec<String>> {
    let num = |x: f64| x.to_string();
    let opt = |x: Option<f64>| x.map(num).unwrap_or_default();
    let column = |name: &str| CSV_COLUMNS.iter().position(|c| *c == name);
    let mut rows = Vec::new();
    for result in &report.minimal_norm {
        let levels: Vec<(String, String)> = if result.quantiles.is_empty() {
            vec![(String::new(), String::new())]
        } else {
            result
                .quantiles
                .iter()
                .map(|q| (num(q.q), num(q.value)))
                .collect()
        };
        for (level, value) in levels {
            let mut row = vec![String::new(); CSV_COLUMNS.len()];
            let mut set = |name: &str, cell: String| {
                if let Some(at) = column(name) {
                    row[at] = cell;
                }
            };
            set("kind", "minimal_norm".to_owned());
            set("label", text_cell(&result.label));
            set("attack", text_cell(&result.attack));
            set("norm", text_cell(&result.norm));
            set("correct", result.success_rate.successes.to_string());
            set("total", result.success_rate.total.to_string());
            set("success_rate", num(result.success_rate.value));
            set("perturbation_mean", opt(result.mean));
            set("perturbation_median", opt(result.median));
            set("seconds", num(result.seconds));
            set("quantile", level);
            set("minimal_norm", value);
            rows.push(row);
        }
    }
    rows
}

fn rows(report: &RunReport) -> Vec<[String; EVASION_COLUMNS]> {
    let num = |x: f64| x.to_string();
    let empty = String::new;
    let mut rows = Vec::with_capacity(1 + report.attacks.len() + report.worst_case.len());

    let clean = &report.clean;
    rows.push([
        "clean".to_owned(),
        "clean".to_owned(),
        empty(),
        empty(),
        num(0.0),
        num(clean.accuracy.value),
        num(clean.accuracy.ci95_low),
        num(clean.accuracy.ci95_high),
        clean.accuracy.successes.to_string(),
        clean.accuracy.total.to_string(),
        empty(),
        num(clean.mean_loss),
        empty(),
        empty(),
        empty(),
        empty(),
        num(report.timings.clean_seconds),
    ]);
    for attack in &report.attacks {
        let acc = &attack.robust_accuracy;
        let perturbation = &attack.perturbation;
        rows.push([
            "attack".to_owned(),
            text_cell(&attack.label),
            text_cell(&attack.attack),
            text_cell(&attack.norm),
            num(attack.epsilon),
            num(acc.value),
            num(acc.ci95_low),
            num(acc.ci95_high),
            acc.successes.to_string(),
            acc.total.to_string(),
            num(attack.success_rate.value),
            num(attack.mean_loss),
            num(perturbation.mean),
            num(perturbation.median),
            num(perturbation.max),
            num(perturbation.max_linf),
            num(attack.seconds),
        ]);
    }
    for worst in &report.worst_case {
        let acc = &worst.robust_accuracy;
        rows.push([
            "worst_case".to_owned(),
            "worst_case".to_owned(),
            text_cell(&worst.attacks.join("+")),
            text_cell(&worst.norm),
            num(worst.epsilon),
            num(acc.value),
            num(acc.ci95_low),
            num(acc.ci95_high),
            acc.successes.to_string(),
            acc.total.to_string(),
            empty(),
            empty(),
            empty(),
            empty(),
            empty(),
            empty(),
            empty(),
        ]);
    }
    rows
}
