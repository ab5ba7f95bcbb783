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
    /// The reading layer refused the path: a FIFO, socket, device or folder where a file was
    /// expected (never opened, so nothing blocks), or a file past its size limit.
    #[error(transparent)]
    File(gauntlet_files::FileError),
}

impl From<gauntlet_files::FileError> for ArtifactError {
    /// The operating system's refusals stay [`ArtifactError::Unreadable`].
    fn from(error: gauntlet_files::FileError) -> Self {
        match error {
            gauntlet_files::FileError::Io { path, source } => {
                ArtifactError::Unreadable { path, source }
            }
            other => ArtifactError::File(other),
        }
    }
}
