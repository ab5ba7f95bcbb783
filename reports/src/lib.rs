//! The results contract of gauntlet and its renderings.
//!
//! [`RunReport`] is a versioned serde type: `results.json` is exactly its serialisation, and
//! every other output (`results.csv`, `report.html` with its embedded PNG plots, `junit.xml`
//! for CI test tabs, `summary.md` for step summaries and pull-request comments) is a pure
//! function of it, so `gauntlet report results.json` can re-render a report from results alone.
//! This crate depends on no other gauntlet crate.
//!
//! Every writer first runs [`RunReport::validate`], so a report that could not survive the trip
//! through JSON (a NaN, a proportion above 1, an example whose pixels do not match its shape) is
//! refused with the offending field named, rather than rendered one way and saved another.

pub mod backdoor;
mod csv;
pub mod detector;
mod error;
mod html;
mod json;
mod junit;
mod markdown;
pub mod matrix;
mod numbers;
mod plots;
pub mod probing;
pub mod schema;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use crate::csv::{csv_string, text_cell, write_csv, CSV_COLUMNS};
pub use error::ReportError;
pub use html::{escape_html, render_html, write_html, CONTENT_SECURITY_POLICY};
pub use json::{parse_json, read_json, to_json_string, write_json};
pub use junit::{render_junit, JUNIT_FILE_NAME};
pub use markdown::{render_markdown, MARKDOWN_FILE_NAME};
pub use matrix::{MatrixCell, MatrixReport, MATRIX_SCHEMA_VERSION};
pub use plots::{is_plot_file_name, render_plots, write_plots, NamedPng, PLOT_FILE_PREFIXES};
pub use schema::*;
pub use validate::MAX_GALLERY_VALUES;

/// File names [`write_all`] uses inside its output folder.
pub const JSON_FILE_NAME: &str = "results.json";
pub const CSV_FILE_NAME: &str = "results.csv";
pub const HTML_FILE_NAME: &str = "report.html";

/// An output [`write_all`] can produce. Spelled `json`, `csv`, `html`, `junit`, `markdown` in
/// suite files and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// `results.json`, the machine-readable contract.
    Json,
    /// `results.csv`, one row per measured point.
    Csv,
    /// `report.html` (self-contained) plus its plots as separate PNG files.
    Html,
    /// `junit.xml`: one test case per gate and per sanity check, for CI test tabs.
    Junit,
    /// `summary.md`: GitHub-flavoured Markdown for `$GITHUB_STEP_SUMMARY` or a PR comment.
    Markdown,
}

impl OutputFormat {
    /// Every format, in the order [`write_all`] writes them.
    pub const ALL: [OutputFormat; 5] = [
        OutputFormat::Json,
        OutputFormat::Csv,
        OutputFormat::Html,
        OutputFormat::Junit,
        OutputFormat::Markdown,
    ];

    /// The spelling used in suite files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Json => "json",
            OutputFormat::Csv => "csv",
            OutputFormat::Html => "html",
            OutputFormat::Junit => "junit",
            OutputFormat::Markdown => "markdown",
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OutputFormat {
    type Err = ReportError;

    /// Case-insensitive, surrounding whitespace ignored (so `--format json, html` works after a
    /// split on commas).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wanted = text.trim();
        OutputFormat::ALL
            .into_iter()
            .find(|format| format.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| ReportError::UnknownFormat {
                given: text.to_owned(),
            })
    }
}

/// Writes the requested formats into `out_dir` (created if missing) and returns every path
/// written: `results.json`, `results.csv`, for html `report.html` followed by its PNG plots
/// (the same images the page embeds), `junit.xml`, `summary.md`. A format listed twice is written once.
///
/// The report is validated before anything is written, so a bad report leaves no partial output.
pub fn write_all(
    report: &RunReport,
    out_dir: &Path,
    formats: &[OutputFormat],
) -> Result<Vec<PathBuf>, ReportError> {
    report.validate()?;
    fs_err::create_dir_all(out_dir).map_err(|source| ReportError::Io {
        path: out_dir.to_owned(),
        source,
    })?;
    let mut written = Vec::new();
    for format in OutputFormat::ALL {
        if !formats.contains(&format) {
            continue;
        }
        match format {
            OutputFormat::Json => {
                let path = out_dir.join(JSON_FILE_NAME);
                write_json(report, &path)?;
                written.push(path);
            }
            OutputFormat::Csv => {
                let path = out_dir.join(CSV_FILE_NAME);
                write_csv(report, &path)?;
                written.push(path);
            }
            OutputFormat::Html => {
                let rendered = html::render(report)?;
                let path = out_dir.join(HTML_FILE_NAME);
                write_text(&path, &rendered.html)?;
                written.push(path);
                written.extend(plots::write_pngs(&rendered.plots, out_dir)?);
            }
            OutputFormat::Junit => {
                let path = out_dir.join(JUNIT_FILE_NAME);
                write_text(&path, &render_junit(report))?;
                written.push(path);
            }
            OutputFormat::Markdown => {
                let path = out_dir.join(MARKDOWN_FILE_NAME);
                write_text(&path, &render_markdown(report))?;
                written.push(path);
            }
        }
    }
    Ok(written)
}

fn write_text(path: &Path, text: &str) -> Result<(), ReportError> {
    fs_err::write(path, text).map_err(|source| ReportError::Io {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_case_insensitively() {
        assert_eq!(
            "json".parse::<OutputFormat>().ok(),
            Some(OutputFormat::Json)
        );
        assert_eq!(
            " HTML".parse::<OutputFormat>().ok(),
            Some(OutputFormat::Html)
        );
        assert_eq!("Csv".parse::<OutputFormat>().ok(), Some(OutputFormat::Csv));
    }

    #[test]
    fn unknown_format_is_named() {
        let error = "pdf".parse::<OutputFormat>().err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("unknown output format `pdf`; expected one of: json, csv, html, junit, markdown")
        );
    }

    #[test]
    fn display_round_trips_through_from_str() {
        for format in OutputFormat::ALL {
            assert_eq!(
                format.to_string().parse::<OutputFormat>().ok(),
                Some(format)
            );
        }
    }

    #[test]
    fn serde_spelling_is_snake_case() {
        let json = serde_json::to_string(&OutputFormat::ALL).ok();
        assert_eq!(
            json.as_deref(),
            Some(r#"["json","csv","html","junit","markdown"]"#)
        );
    }
}
