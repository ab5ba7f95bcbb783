//! `results.json`: the report's own serialisation, and the input of `gauntlet report`.

use std::path::Path;

use serde::Deserialize;

use crate::error::ReportError;
use crate::schema::{RunReport, OLDEST_READABLE_SCHEMA_VERSION, SCHEMA_VERSION};

/// Writes `report` as pretty-printed JSON (two-space indent, trailing newline).
///
/// The report is validated first: serde_json would write a NaN as `null`, which
/// [`read_json`] could then not read back.
pub fn write_json(report: &RunReport, path: &Path) -> Result<(), ReportError> {
    report.validate()?;
    let mut text = to_json_string(report).map_err(|error| ReportError::JsonWrite {
        path: path.to_owned(),
        error,
    })?;
    text.push('\n');
    fs_err::write(path, text).map_err(|source| ReportError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The pretty JSON text of `report`, exactly as [`write_json`] writes it minus the final newline.
pub fn to_json_string(report: &RunReport) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(report)
}

/// Reads a `results.json`.
///
/// The schema version is checked before the rest of the file is interpreted, so a file from a
/// newer gauntlet fails with "has schema_version N" rather than with whatever unknown field the
/// newer schema added.
pub fn read_json(path: &Path) -> Result<RunReport, ReportError> {
    let bytes = gauntlet_files::read_bounded(path, gauntlet_files::limits::RESULTS_JSON)?;
    parse_json(&bytes, path)
}

/// Parses the bytes of a `results.json`; `path` is only used in error messages.
pub fn parse_json(bytes: &[u8], path: &Path) -> Result<RunReport, ReportError> {
    /// Only the version, so that every other key is ignored at this stage.
    #[derive(Deserialize)]
    struct VersionProbe {
        schema_version: Option<u64>,
    }

    let json_error = |error| ReportError::Json {
        path: path.to_owned(),
        error,
    };
    let probe: VersionProbe = serde_json::from_slice(bytes).map_err(json_error)?;
    let found = probe
        .schema_version
        .ok_or_else(|| ReportError::MissingSchemaVersion {
            path: path.to_owned(),
        })?;
    if !(u64::from(OLDEST_READABLE_SCHEMA_VERSION)..=u64::from(SCHEMA_VERSION)).contains(&found) {
        let hint = if found > u64::from(SCHEMA_VERSION) {
            "the file was written by a newer gauntlet; re-render it with that version"
        } else {
            "the file was written by an older gauntlet; re-run the suite to regenerate it"
        };
        return Err(ReportError::UnsupportedSchemaVersion {
            path: path.to_owned(),
            found,
            oldest: OLDEST_READABLE_SCHEMA_VERSION,
            supported: SCHEMA_VERSION,
            hint,
        });
    }
    let report: RunReport = serde_json::from_slice(bytes).map_err(json_error)?;
    report.validate().map_err(|error| match error {
        ReportError::InvalidReport { field, reason } => ReportError::InvalidReportFile {
            path: path.to_owned(),
            field,
            reason,
        },
        other => other,
    })?;
    Ok(report)
}
