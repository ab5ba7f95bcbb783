//! The backdoor rows of `results.csv` and the columns only they fill.
//!
//! | kind | one row per | filled |
//! |---|---|---|
//! | `trigger_scan` | (scan, model, class) | `model`, `class`, `anomaly_index`, `mask_l1`, `flip_rate`, `mask_iou`, `flagged` |
//! | `strip` | (STRIP scan, model) | `model`, `false_rejection_rate`, `detection_rate` |
//! | `poisoning` | (poisoning, rate), seeds pooled; and (poisoning, rate, seed) with `seed` set | `rate`, `seed`, `clean_accuracy`, `attack_success_rate` and its interval |
//! | `data_scan` | (detector, trained model) | `model`, `rate`, `seed`, `precision`, `recall`, `correct` = flagged poisoned samples, `total` = flagged |
//!
//! `label` is the section's label, `attack` the registry name. An anomaly index of +∞ (all
//! other classes tied) is written as `inf`.

use super::text_cell;
use crate::schema::RunReport;

/// One backdoor row: the shared cells, and the backdoor cells by column name.
struct Row {
    kind: &'static str,
    label: String,
    attack: String,
    correct: String,
    total: String,
    seconds: String,
    cells: Vec<(&'static str, String)>,
}

fn num(x: f64) -> String {
    if x >= f64::MAX {
        "inf".to_owned()
    } else {
        x.to_string()
    }
}

fn opt(x: Option<f64>) -> String {
    x.map(num).unwrap_or_default()
}

/// Every backdoor row as full rows of `columns` cells (the evasion columns first).
pub(super) fn rows(report: &RunReport, columns: &[&str]) -> Vec<Vec<String>> {
    let Some(backdoor) = &report.backdoor else {
        return Vec::new();
    };
    let mut rows: Vec<Row> = Vec::new();
    for scan in &backdoor.scans {
        for class in &scan.classes {
            rows.push(Row {
                kind: "trigger_scan",
                label: text_cell(&scan.label),
                attack: text_cell(&scan.scan),
                correct: String::new(),
                total: String::new(),
                seconds: num(scan.seconds),
                cells: vec![
                    ("model", text_cell(&scan.model.describe())),
                    ("class", class.class.to_string()),
                    ("anomaly_index", opt(class.anomaly_index)),
                    ("mask_l1", opt(class.mask_l1)),
                    ("flip_rate", opt(class.flip_rate)),
                    ("mask_iou", opt(class.mask_iou)),
                    ("flagged", class.flagged.to_string()),
                ],
            });
        }
    }
    for strip in &backdoor.strip {
        rows.push(Row {
            kind: "strip",
            label: text_cell(&strip.label),
            attack: "strip".to_owned(),
            correct: String::new(),
            total: String::new(),
            seconds: num(strip.seconds),
            cells: vec![
                ("model", text_cell(&strip.model.describe())),
                ("false_rejection_rate", num(strip.false_rejection.value)),
                ("detection_rate", opt(strip.detection.map(|d| d.value))),
            ],
        });
    }
    for poisoning in &backdoor.poisonings {
        let attack_cells = |asr: Option<crate::schema::Proportion>| match asr {
            Some(a) => vec![
                ("attack_success_rate", num(a.value)),
                ("attack_ci95_low", num(a.ci95_low)),
                ("attack_ci95_high", num(a.ci95_high)),
            ],
            None => Vec::new(),
        };
        for row in &poisoning.rows {
            let mut cells = vec![
                ("rate", num(row.rate)),
                ("clean_accuracy", num(row.clean_accuracy.value)),
            ];
            cells.extend(attack_cells(row.attack_success));
            rows.push(Row {
                kind: "poisoning",
                label: text_cell(&poisoning.label),
                attack: text_cell(&poisoning.poisoning),
                correct: String::new(),
                total: String::new(),
                seconds: String::new(),
                cells,
            });
        }
        for point in &poisoning.points {
            let mut cells = vec![
                ("rate", num(point.rate)),
                ("seed", point.seed.to_string()),
                ("clean_accuracy", num(point.clean_accuracy.value)),
            ];
            cells.extend(attack_cells(point.attack_success));
            rows.push(Row {
                kind: "poisoning",
                label: text_cell(&poisoning.label),
                attack: text_cell(&poisoning.poisoning),
                correct: String::new(),
                total: String::new(),
                seconds: num(point.seconds),
                cells,
            });
        }
    }
    for scan in &backdoor.data_scans {
        rows.push(Row {
            kind: "data_scan",
            label: text_cell(&scan.label),
            attack: text_cell(&scan.scan),
            correct: ((scan.precision.unwrap_or(0.0) * scan.flagged as f64).round() as usize)
                .to_string(),
            total: scan.flagged.to_string(),
            seconds: String::new(),
            cells: vec![
                ("model", text_cell(&scan.poisoning)),
                ("rate", num(scan.rate)),
                ("seed", scan.seed.to_string()),
                ("precision", opt(scan.precision)),
                ("recall", opt(scan.recall)),
            ],
        });
    }
    rows.into_iter()
        .map(|row| {
            columns
                .iter()
                .map(|&column| match column {
                    "kind" => row.kind.to_owned(),
                    "label" => row.label.clone(),
                    "attack" => row.attack.clone(),
                    "correct" => row.correct.clone(),
                    "total" => row.total.clone(),
                    "seconds" => row.seconds.clone(),
                    other => row
                        .cells
                        .iter()
                        .find(|(name, _)| *name == other)
                        .map(|(_, value)| value.clone())
                        .unwrap_or_default(),
                })
                .collect()
        })
        .collect()
}
