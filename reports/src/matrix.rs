//! The results of a matrix suite (several models × datasets) and their renderings.
//!
//! A matrix run writes each cell (one model on one dataset) as a complete run into
//! `cells/MODEL--DATASET/` — its own `results.json`, per-sample file and report — and, at the top
//! of the output folder, one [`MatrixReport`] that holds every cell's [`RunReport`] whole. So
//! `results.json` at the top covers the matrix, a tool that reads single runs can read any
//! cell's folder unchanged, and the top-level renderings (a summary table across models, the
//! gates per model, JUnit with each cell's test suites, a Markdown summary, a CSV of every
//! figure) are pure functions of the matrix report, as a run's are of its report.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::html::{escape_html as esc, CONTENT_SECURITY_POLICY, STYLE};
use crate::numbers::{ci_range, percent};
use crate::schema::{CheckStatus, Proportion, RunReport, SuiteInfo};
use crate::validate::invalid;
use crate::{OutputFormat, ReportError};

/// Version of the matrix results file; a run's own `schema_version` versions each cell.
pub const MATRIX_SCHEMA_VERSION: u32 = 1;

/// The folder, inside a matrix run's output folder, that holds one folder per cell.
pub const CELLS_DIR: &str = "cells";

/// Why `name` cannot name a model or dataset of a matrix, if it cannot. A name is also part of
/// a folder name (`cells/MODEL--DATASET/`) on every file system a report may be copied to, so:
/// 1 to 64 ASCII letters, digits, `_`, `-` or `.`, starting with a letter or digit, not ending
/// with `.` (Windows drops it), without `--` (the separator).
pub fn name_problem(name: &str) -> Option<&'static str> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
    if name.is_empty() || name.len() > 64 {
        Some("must be 1 to 64 characters")
    } else if !name.as_bytes()[0].is_ascii_alphanumeric() {
        Some("must start with a letter or digit")
    } else if !name.bytes().all(allowed) {
        Some("may hold only letters, digits, `_`, `-` and `.`")
    } else if name.ends_with('.') {
        Some("must not end with `.`")
    } else if name.contains("--") {
        Some("must not contain `--` (it separates model and dataset in a cell's name)")
    } else {
        None
    }
}

/// A cell's id: `MODEL--DATASET`.
pub fn cell_id(model: &str, dataset: &str) -> String {
    format!("{model}--{dataset}")
}

/// A cell's folder, relative to the matrix's output folder.
pub fn cell_folder(id: &str) -> String {
    format!("{CELLS_DIR}/{id}")
}

/// Whether `name` (an entry of an output folder's `cells/`) is a cell's id.
pub fn is_cell_id(name: &str) -> bool {
    name.split_once("--").is_some_and(|(model, dataset)| {
        name_problem(model).is_none() && name_problem(dataset).is_none()
    })
}

/// A matrix run: every cell's results, in suite order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixReport {
    pub matrix_schema_version: u32,
    pub gauntlet_version: String,
    pub suite: SuiteInfo,
    pub seed: u64,
    /// Whether every cell passed (its gates, and its sanity checks unless the suite lets them
    /// fail): the run's exit code.
    pub passed: bool,
    pub cells: Vec<MatrixCell>,
}

/// One model on one dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixCell {
    /// `MODEL--DATASET`.
    pub id: String,
    /// The model's and the dataset's names in the suite.
    pub model: String,
    pub dataset: String,
    /// The cell's own output folder, relative to the matrix's `results.json`.
    pub folder: String,
    /// The cell's verdict: its gates passed, and its sanity checks unless the suite sets
    /// `gate.fail_on_sanity = false`.
    pub passed: bool,
    pub report: RunReport,
}

/// A column of the summary table: the same figure in every cell.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Figure {
    Attack { label: String, epsilon: String },
    WorstCase { norm: String, epsilon: String },
}

impl Figure {
    fn header(&self) -> String {
        match self {
            Figure::Attack { label, epsilon } => format!("{label}@{epsilon}"),
            Figure::WorstCase { norm, epsilon } => format!("worst {norm}@{epsilon}"),
        }
    }

    fn of<'a>(&self, report: &'a RunReport) -> Option<&'a Proportion> {
        match self {
            Figure::Attack { label, epsilon } => report
                .attacks
                .iter()
                .find(|a| &a.label == label && &a.epsilon.to_string() == epsilon)
                .map(|a| &a.robust_accuracy),
            Figure::WorstCase { norm, epsilon } => report
                .worst_case
                .iter()
                .find(|w| &w.norm == norm && &w.epsilon.to_string() == epsilon)
                .map(|w| &w.robust_accuracy),
        }
    }
}

impl MatrixReport {
    /// Refuse a matrix report that could not be rendered or saved faithfully: any invalid cell
    /// (named), a repeated id, a folder that leaves the output folder, an overall verdict that
    /// disagrees with the cells'.
    pub fn validate(&self) -> Result<(), ReportError> {
        if self.cells.is_empty() {
            return Err(invalid("cells", "is empty".to_owned()));
        }
        let mut ids = BTreeSet::new();
        for (i, cell) in self.cells.iter().enumerate() {
            for (field, name) in [("model", &cell.model), ("dataset", &cell.dataset)] {
                if let Some(problem) = name_problem(name) {
                    return Err(invalid(
                        &format!("cells[{i}].{field}"),
                        format!("`{name}` {problem}"),
                    ));
                }
            }
            if cell.id != cell_id(&cell.model, &cell.dataset) {
                return Err(invalid(
                    &format!("cells[{i}].id"),
                    format!(
                        "`{}` is not `MODEL--DATASET` of its model and dataset",
                        cell.id
                    ),
                ));
            }
            // Folders differing only in case are one folder on macOS and Windows.
            if !ids.insert(cell.id.to_ascii_lowercase()) {
                return Err(invalid(
                    &format!("cells[{i}].id"),
                    format!("`{}` is used twice", cell.id),
                ));
            }
            if cell.folder != cell_folder(&cell.id) {
                return Err(invalid(
                    &format!("cells[{i}].folder"),
                    format!("`{}` is not `{}`", cell.folder, cell_folder(&cell.id)),
                ));
            }
            cell.report.validate().map_err(|error| {
                invalid(&format!("cells[{i}] (`{}`)", cell.id), error.to_string())
            })?;
            let failed_gate = cell.report.gates.iter().any(|g| !g.passed);
            let failed_check = cell
                .report
                .sanity_checks
                .iter()
                .any(|c| c.status == CheckStatus::Fail);
            // Passing needs every gate passed; failing needs a failed gate or sanity check.
            if (cell.passed && failed_gate) || (!cell.passed && !failed_gate && !failed_check) {
                return Err(invalid(
                    &format!("cells[{i}].passed"),
                    format!(
                        "`{}` disagrees with the cell's gates and sanity checks",
                        cell.passed
                    ),
                ));
            }
        }
        if self.passed != self.cells.iter().all(|c| c.passed) {
            return Err(invalid(
                "passed",
                "disagrees with the cells' verdicts".to_owned(),
            ));
        }
        Ok(())
    }

    /// The summary table's columns: every attack@ε, then every worst case, in the order the
    /// cells report them (the same attacks run in every cell).
    fn figures(&self) -> Vec<Figure> {
        let mut seen = BTreeSet::new();
        let mut attacks = Vec::new();
        let mut worst = Vec::new();
        for cell in &self.cells {
            for a in &cell.report.attacks {
                let figure = Figure::Attack {
                    label: a.label.clone(),
                    epsilon: a.epsilon.to_string(),
                };
                if seen.insert(figure.clone()) {
                    attacks.push(figure);
                }
            }
            for w in &cell.report.worst_case {
                let figure = Figure::WorstCase {
                    norm: w.norm.clone(),
                    epsilon: w.epsilon.to_string(),
                };
                if seen.insert(figure.clone()) {
                    worst.push(figure);
                }
            }
        }
        attacks.extend(worst);
        attacks
    }
}

/// Failed gates and failed sanity checks of a cell.
fn failures(report: &RunReport) -> (Vec<&str>, Vec<&str>) {
    (
        report
            .gates
            .iter()
            .filter(|g| !g.passed)
            .map(|g| g.gate.as_str())
            .collect(),
        report
            .sanity_checks
            .iter()
            .filter(|c| c.status == CheckStatus::Fail)
            .map(|c| c.name.as_str())
            .collect(),
    )
}

/// The matrix as a self-contained HTML page: the verdict, one row per cell with every figure,
/// the gates per model, and a link to each cell's full report.
pub fn render_matrix_html(matrix: &MatrixReport) -> Result<String, ReportError> {
    Ok(render_matrix(matrix)?.0)
}

/// The page and the plots it embeds.
fn render_matrix(matrix: &MatrixReport) -> Result<(String, Vec<crate::NamedPng>), ReportError> {
    matrix.validate()?;
    let plots = crate::plots::matrix_accuracy_plots(matrix)?;
    let figures = matrix.figures();
    let mut out =
        String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(
        out,
        "<meta http-equiv=\"Content-Security-Policy\" content=\"{CONTENT_SECURITY_POLICY}\">"
    );
    let _ = writeln!(
        out,
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>gauntlet matrix report: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>",
        esc(&matrix.suite.name)
    );
    let _ = writeln!(
        out,
        "<header>\n<h1>gauntlet robustness report: {} models × datasets</h1>\n\
         <p class=\"sub\">Suite <strong>{}</strong>{} · seed {} · gauntlet {}</p>\n</header>",
        matrix.cells.len(),
        esc(&matrix.suite.name),
        matrix
            .suite
            .path
            .as_deref()
            .map(|p| format!(" (<code>{}</code>)", esc(p)))
            .unwrap_or_default(),
        matrix.seed,
        esc(&matrix.gauntlet_version)
    );
    let failed = matrix.cells.iter().filter(|c| !c.passed).count();
    let (class, word, line) = if failed == 0 {
        (
            "pass",
            "PASSED",
            format!(
                "every cell ({}) passed its gates and sanity checks.",
                matrix.cells.len()
            ),
        )
    } else {
        (
            "fail",
            "FAILED",
            format!(
                "{failed} of {} cells failed: {}.",
                matrix.cells.len(),
                matrix
                    .cells
                    .iter()
                    .filter(|c| !c.passed)
                    .map(|c| format!("<code>{}</code>", esc(&c.id)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    };
    let _ = writeln!(
        out,
        "<div class=\"verdict {class}\"><strong>{word}</strong><span>{line}</span></div>"
    );
    out.push_str(
        "<section id=\"summary\">\n<h2>Summary across models</h2>\n\
         <p class=\"note\">Accuracy on each cell's samples; hover a figure for its 95% interval. \
         A figure is empty where the cell did not measure it.</p>\n<table>\n<thead><tr>\
         <th>Model</th><th>Dataset</th><th class=\"num\">Samples</th><th class=\"num\">Clean</th>",
    );
    for figure in &figures {
        let _ = write!(out, "<th class=\"num\">{}</th>", esc(&figure.header()));
    }
    out.push_str("<th>Verdict</th><th>Report</th></tr></thead>\n<tbody>\n");
    for cell in &matrix.cells {
        let report = &cell.report;
        let cell_figure = |p: &Proportion| {
            format!(
                "<td class=\"num\" title=\"{}\">{}</td>",
                esc(&ci_range(p)),
                percent(p.value)
            )
        };
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td><code>{}</code></td><td class=\"num\">{}</td>{}",
            esc(&cell.model),
            esc(&cell.dataset),
            report.dataset.samples,
            cell_figure(&report.clean.accuracy)
        );
        for figure in &figures {
            match figure.of(report) {
                Some(p) => out.push_str(&cell_figure(p)),
                None => out.push_str("<td class=\"num\">–</td>"),
            }
        }
        let badge = if cell.passed {
            "<span class=\"badge pass\">pass</span>"
        } else {
            "<span class=\"badge fail\">fail</span>"
        };
        let link = format!("{}/{}", cell.folder, crate::HTML_FILE_NAME);
        let _ = writeln!(
            out,
            "<td>{badge}</td><td><a href=\"{}\">{}</a></td></tr>",
            esc(&link),
            esc(&link)
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
    if !plots.is_empty() {
        out.push_str(
            "<section id=\"curves\">\n<h2>Worst case across models</h2>\n<p class=\"note\">\
             Per cell, the pointwise worst case over every attack at each ε, from the cell's clean \
             accuracy at ε = 0; bars are 95% intervals.</p>\n",
        );
        out.push_str("<div class=\"plots\">\n");
        for plot in &plots {
            let _ = writeln!(
                out,
                "<img src=\"{}\" alt=\"{}\">",
                crate::html::data_uri(&plot.png),
                esc(&plot.title)
            );
        }
        out.push_str("</div>\n</section>\n");
    }
    out.push_str(
        "<section id=\"gates\">\n<h2>Gates per model</h2>\n<table>\n<thead><tr><th>Cell</th>\
         <th>Result</th><th>Gate</th><th class=\"num\">Threshold</th><th class=\"num\">Actual</th>\
         </tr></thead>\n<tbody>\n",
    );
    let mut any_gate = false;
    for cell in &matrix.cells {
        for gate in &cell.report.gates {
            any_gate = true;
            let _ = writeln!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td><code>{}</code></td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(&cell.id),
                if gate.passed {
                    "<span class=\"badge pass\">pass</span>"
                } else {
                    "<span class=\"badge fail\">fail</span>"
                },
                esc(&gate.gate),
                gate.threshold,
                gate.actual
            );
        }
    }
    if !any_gate {
        out.push_str("<tr><td colspan=\"5\">No gates were configured.</td></tr>\n");
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
    out.push_str("<section id=\"sanity\">\n<h2>Sanity checks that did not pass</h2>\n");
    let mut any_check = false;
    for cell in &matrix.cells {
        for check in &cell.report.sanity_checks {
            if check.status == CheckStatus::Pass {
                continue;
            }
            any_check = true;
            let _ = writeln!(
                out,
                "<p><code>{}</code>: <strong>{}</strong> {} — {}</p>",
                esc(&cell.id),
                if check.status == CheckStatus::Fail {
                    "failed"
                } else {
                    "warning"
                },
                esc(&check.name),
                esc(&check.detail)
            );
        }
    }
    if !any_check {
        out.push_str("<p>Every sanity check of every cell passed.</p>\n");
    }
    let _ = writeln!(
        out,
        "</section>\n<footer>Generated by gauntlet {} from matrix results schema {}. Each cell's \
         own report (plots, per-class figures, examples) is in its folder; every number here is \
         also in <code>results.json</code>.</footer>\n</main>\n</body>\n</html>",
        esc(&matrix.gauntlet_version),
        matrix.matrix_schema_version
    );
    Ok((out, plots))
}

/// The matrix in GitHub-flavoured Markdown: the verdict, the table across models, and every
/// failed gate and sanity check by cell.
pub fn render_matrix_markdown(matrix: &MatrixReport) -> String {
    use crate::markdown::{code, md};
    let figures = matrix.figures();
    let mut out = String::new();
    let failed: Vec<&MatrixCell> = matrix.cells.iter().filter(|c| !c.passed).collect();
    let headline = if failed.is_empty() {
        "✅ passed".to_owned()
    } else {
        format!(
            "❌ failed ({} of {} cells)",
            failed.len(),
            matrix.cells.len()
        )
    };
    let _ = writeln!(
        out,
        "## gauntlet: suite {} {headline}\n",
        code(&matrix.suite.name)
    );
    let _ = writeln!(
        out,
        "{} cells (model × dataset) · seed {} · gauntlet {}\n",
        matrix.cells.len(),
        matrix.seed,
        md(&matrix.gauntlet_version)
    );
    out.push_str("| model | dataset | samples | clean |");
    for figure in &figures {
        let _ = write!(out, " {} |", md(&figure.header()));
    }
    out.push_str(" verdict |\n|---|---|---:|---:|");
    for _ in &figures {
        out.push_str("---:|");
    }
    out.push_str("---|\n");
    for cell in &matrix.cells {
        let report = &cell.report;
        let _ = write!(
            out,
            "| {} | {} | {} | {} |",
            code(&cell.model),
            code(&cell.dataset),
            report.dataset.samples,
            percent(report.clean.accuracy.value)
        );
        for figure in &figures {
            let value = figure
                .of(report)
                .map_or_else(|| "–".to_owned(), |p| percent(p.value));
            let _ = write!(out, " {value} |");
        }
        let _ = writeln!(out, " {} |", if cell.passed { "✅" } else { "❌" });
    }
    for cell in failed {
        let (gates, checks) = failures(&cell.report);
        let _ = writeln!(out, "\n**{}**:", code(&cell.id));
        for gate in cell.report.gates.iter().filter(|g| !g.passed) {
            let _ = writeln!(
                out,
                "- gate {}: {}",
                code(&gate.gate),
                md(&gate.failure_message())
            );
        }
        for check in cell
            .report
            .sanity_checks
            .iter()
            .filter(|c| c.status == CheckStatus::Fail)
        {
            let _ = writeln!(
                out,
                "- sanity check {}: {}",
                code(&check.name),
                md(&check.detail)
            );
        }
        if gates.is_empty() && checks.is_empty() {
            out.push_str("- failed\n");
        }
    }
    out
}

/// JUnit XML for the matrix: each cell's gates and sanity checks as test suites named
/// `{suite}.{cell}.{gates|sanity_checks}`, each with its run's properties (model file, dataset, seed).
pub fn render_matrix_junit(matrix: &MatrixReport) -> String {
    use crate::junit::{attr, counts, seconds, suites, write_suites};
    let all: Vec<_> = matrix.cells.iter().map(|c| suites(&c.report)).collect();
    let (tests, failures) = all
        .iter()
        .map(counts)
        .fold((0, 0), |(t, f), (a, b)| (t + a, f + b));
    let total: f64 = matrix
        .cells
        .iter()
        .map(|c| c.report.timings.total_seconds)
        .sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{}\">",
        attr(&format!("gauntlet {}", matrix.suite.name)),
        seconds(total)
    );
    let mut id = 0;
    for (cell, suites) in matrix.cells.iter().zip(&all) {
        let name = format!("{}.{}", matrix.suite.name, cell.id);
        id += write_suites(&mut out, &cell.report, &name, suites, id);
    }
    out.push_str("</testsuites>\n");
    out
}

/// Every cell's CSV rows (`results.csv`'s columns) behind two leading columns, `cell_model` and
/// `cell_dataset` (the `model` column of backdoor rows is another thing): one file a spreadsheet
/// or a dashboard can filter by model.
pub fn matrix_csv_string(matrix: &MatrixReport) -> Result<String, ReportError> {
    let failed = |i: usize, error: ::csv::Error| {
        invalid(
            &format!("cells[{i}]"),
            format!("cannot be written as CSV: {error}"),
        )
    };
    let mut writer = ::csv::Writer::from_writer(Vec::new());
    for (i, cell) in matrix.cells.iter().enumerate() {
        // Read back record by record (a quoted field may hold a line break) and written with
        // the two leading cells.
        let text = crate::csv_string(&cell.report).map_err(|e| failed(i, e))?;
        let mut reader = ::csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(text.as_bytes());
        if i == 0 {
            let header = reader.headers().map_err(|e| failed(i, e))?.clone();
            let mut row = vec!["cell_model", "cell_dataset"];
            row.extend(header.iter());
            writer.write_record(&row).map_err(|e| failed(i, e))?;
        }
        let model = crate::text_cell(&cell.model);
        let dataset = crate::text_cell(&cell.dataset);
        for record in reader.records() {
            let record = record.map_err(|e| failed(i, e))?;
            let mut row = vec![model.as_str(), dataset.as_str()];
            row.extend(record.iter());
            writer.write_record(&row).map_err(|e| failed(i, e))?;
        }
    }
    let bytes = writer
        .into_inner()
        .map_err(|error| invalid("cells", format!("cannot be written as CSV: {error}")))?;
    String::from_utf8(bytes).map_err(|error| invalid("cells", format!("not UTF-8: {error}")))
}

/// Write the matrix's own outputs (not the cells': each cell writes its folder as a run does)
/// into `out_dir`; every path written.
pub fn write_matrix(
    matrix: &MatrixReport,
    out_dir: &Path,
    formats: &[OutputFormat],
) -> Result<Vec<PathBuf>, ReportError> {
    matrix.validate()?;
    let mut written = Vec::new();
    let write = |name: &str, text: &str| -> Result<PathBuf, ReportError> {
        let path = out_dir.join(name);
        crate::write_text(&path, text)?;
        Ok(path)
    };
    for format in OutputFormat::ALL {
        if !formats.contains(&format) {
            continue;
        }
        match format {
            OutputFormat::Json => {
                let json = serde_json::to_string_pretty(matrix).map_err(|error| {
                    ReportError::JsonWrite {
                        path: out_dir.join(crate::JSON_FILE_NAME),
                        error,
                    }
                })?;
                written.push(write(crate::JSON_FILE_NAME, &json)?);
            }
            OutputFormat::Csv => {
                written.push(write(crate::CSV_FILE_NAME, &matrix_csv_string(matrix)?)?)
            }
            OutputFormat::Html => {
                let (html, plots) = render_matrix(matrix)?;
                written.push(write(crate::HTML_FILE_NAME, &html)?);
                written.extend(crate::plots::write_pngs(&plots, out_dir)?);
            }
            OutputFormat::Junit => {
                written.push(write(crate::JUNIT_FILE_NAME, &render_matrix_junit(matrix))?)
            }
            OutputFormat::Markdown => written.push(write(
                crate::MARKDOWN_FILE_NAME,
                &render_matrix_markdown(matrix),
            )?),
        }
    }
    Ok(written)
}

/// Whether a results file's JSON is a matrix's (it carries `matrix_schema_version`) rather than
/// one run's.
pub fn is_matrix_json(bytes: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        matrix_schema_version: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Probe>(bytes).is_ok_and(|p| p.matrix_schema_version.is_some())
}

/// Parse a matrix results file and validate it, naming `path` in every error.
pub fn parse_matrix_json(bytes: &[u8], path: &Path) -> Result<MatrixReport, ReportError> {
    let matrix: MatrixReport =
        serde_json::from_slice(bytes).map_err(|error| ReportError::Json {
            path: path.to_owned(),
            error,
        })?;
    if matrix.matrix_schema_version != MATRIX_SCHEMA_VERSION {
        return Err(invalid(
            "matrix_schema_version",
            format!(
                "is {} in `{}`; this gauntlet reads {MATRIX_SCHEMA_VERSION}",
                matrix.matrix_schema_version,
                path.display()
            ),
        ));
    }
    matrix.validate()?;
    Ok(matrix)
}
