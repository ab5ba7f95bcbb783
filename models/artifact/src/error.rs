//! Errors of the artifact crate: only "could not read the input at all". Anything wrong *inside*
//! a readable file is a [`crate::Finding`], not an error.

use std::path::PathBuf;

/// The input could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactError {
    /// A path named by the user (or found under a folder they named) could not be read.
    #[error("cannot read `{path}`: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
