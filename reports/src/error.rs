use std::path::PathBuf;

/// Everything that can go wrong reading results or writing a report.
///
/// Variants carry the file, field or image they are about, so a message read in a CI log says
/// what to fix without a debugger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    #[error("cannot access `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The reading layer refused the file: not a regular file (a FIFO, device or folder), or
    /// past the size limit of a results.json.
    #[error(transparent)]
    File(gauntlet_files::FileError),

    /// Malformed JSON, or JSON that does not match the schema. The serde message (which carries
    /// the line and column) is part of the display text rather than a `#[source]`, so that a
    /// plain `{}` already tells the reader where the file is wrong.
    #[error("cannot read gauntlet results from `{path}`: {error}")]
    Json {
        path: PathBuf,
        error: serde_json::Error,
    },

    #[error("cannot serialise the results for `{path}`: {error}")]
    JsonWrite {
        path: PathBuf,
        error: serde_json::Error,
    },

    #[error("`{path}` has no `schema_version`; it is not a gauntlet results file")]
    MissingSchemaVersion { path: PathBuf },

    #[error(
        "`{path}` has schema_version {found}, but this gauntlet reads schema_version {oldest} to {supported} \
         only ({hint})"
    )]
    UnsupportedSchemaVersion {
        path: PathBuf,
        found: u64,
        oldest: u32,
        supported: u32,
        /// Which way to go: newer file → newer gauntlet, older file → re-run.
        hint: &'static str,
    },

    /// A report that cannot be rendered or saved faithfully (a non-finite number serde_json would
    /// silently write as `null`, a proportion outside [0, 1], an example whose pixel count does not
    /// match its shape …). `field` is a JSON-path-like location such as `attacks[2].mean_loss`.
    #[error("invalid report: `{field}` {reason}")]
    InvalidReport { field: String, reason: String },

    /// [`ReportError::InvalidReport`] found while reading a results file.
    #[error("invalid report in `{path}`: `{field}` {reason}")]
    InvalidReportFile {
        path: PathBuf,
        field: String,
        reason: String,
    },

    #[error("cannot write CSV to `{path}`")]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },

    #[error("cannot draw plot `{plot}`: {message}")]
    Plot { plot: String, message: String },

    #[error("the embedded DejaVu Sans font could not be registered with plotters")]
    Font,

    #[error("cannot encode image `{image}` as PNG")]
    PngEncode {
        image: String,
        #[source]
        source: png::EncodingError,
    },

    #[error("unknown output format `{given}`; expected one of: json, csv, html, junit, markdown")]
    UnknownFormat { given: String },
}

impl From<gauntlet_files::FileError> for ReportError {
    /// The operating system's refusals stay [`ReportError::Io`].
    fn from(error: gauntlet_files::FileError) -> Self {
        match error {
            gauntlet_files::FileError::Io { path, source } => ReportError::Io { path, source },
            other => ReportError::File(other),
        }
    }
}
