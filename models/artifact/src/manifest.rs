//! SHA-256 manifests of model folders: what files a model consists of, and has any changed?
//!
//! # Format (primary): JSON, version 1
//!
//! ```json
//! {
//!   "version": 1,
//!   "files": [
//!     { "path": "config.json", "size": 512, "sha256": "9f86d0…" },
//!     { "path": "weights/model.safetensors", "size": 1048576, "sha256": "e3b0c4…" }
//!   ]
//! }
//! ```
//!
//! * `path`: relative to the manifest's folder, `/`-separated, never `..`, `.` or absolute.
//! * Files are sorted component by component (`a/b` before `a.txt`: the order Python's
//!   `pathlib` and the model-signing package use), so the same folder always gives the same bytes.
//! * `sha256`: 64 lowercase hex digits, as `sha256sum` prints.
//! * `skipped` (only when non-empty): symlinks and special files, which are never followed or
//!   hashed (following them could hash something outside the folder, or block on a FIFO).
//!
//! [`Manifest::to_sha256sum`] renders the same content as `sha256sum`-compatible text, so a user
//! without gauntlet can check a folder with `sha256sum -c`.
//!
//! Every regular file under the folder is included, hidden files too; only the manifest file
//! itself ([`DEFAULT_MANIFEST_FILE_NAME`] at the top, or what [`ManifestOptions::exclude`] names)
//! is left out.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use crate::hashing::{self, FileDigest};
use crate::ArtifactError;

/// The manifest format version this code writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// File name of the manifest when it is written inside the folder it describes.
pub const DEFAULT_MANIFEST_FILE_NAME: &str = "gauntlet-manifest.json";

/// Where the manifest of `dir` lives by default.
pub fn default_manifest_path(dir: &Path) -> PathBuf {
    dir.join(DEFAULT_MANIFEST_FILE_NAME)
}

/// Why a manifest could not be made, read or checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// A file or folder could not be read.
    #[error(transparent)]
    Unreadable(#[from] ArtifactError),
    /// The path to describe is not a folder.
    #[error("`{path}` is not a folder")]
    NotAFolder { path: PathBuf },
    /// A file name is not UTF-8, so it cannot be written into a JSON manifest faithfully.
    #[error("file name under `{path}` is not valid UTF-8")]
    NonUtf8Path { path: PathBuf },
    /// The manifest file is not JSON of the documented shape.
    #[error("manifest `{path}` is malformed: {detail}")]
    Malformed { path: PathBuf, detail: String },
    /// The manifest was written by a newer format.
    #[error(
        "manifest `{path}` has version {found}; this gauntlet reads version {MANIFEST_VERSION}"
    )]
    UnsupportedVersion { path: PathBuf, found: u32 },
    /// The manifest could not be written.
    #[error("cannot write manifest `{path}`: {source}")]
    Unwritable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One file of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManifestEntry {
    /// Relative, `/`-separated path.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
}

/// What kind of non-regular entry was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkippedKind {
    /// A symbolic link (never followed).
    Symlink,
    /// A FIFO, socket or device node.
    Special,
}

/// A folder entry that was seen but neither followed nor hashed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SkippedEntry {
    /// Relative, `/`-separated path.
    pub path: String,
    /// Why it was skipped.
    pub kind: SkippedKind,
}

/// A SHA-256 manifest of a folder.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`MANIFEST_VERSION`] when written by this code.
    pub version: u32,
    /// Every regular file, sorted by path components.
    pub files: Vec<ManifestEntry>,
    /// Symlinks and special files found while walking (not hashed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedEntry>,
}

impl Manifest {
    /// The documented JSON form (2-space indent, trailing newline).
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// `sha256sum`-compatible text: `<hex>  <path>` per line, checkable with `sha256sum -c`
    /// from inside the folder. Paths with a newline or backslash use `sha256sum`'s escaped
    /// form (a leading `\` and `\\` / `\n` escapes).
    pub fn to_sha256sum(&self) -> String {
        let mut text = String::new();
        for entry in &self.files {
            if entry.path.contains(['\\', '\n', '\r']) {
                let escaped = entry
                    .path
                    .replace('\\', "\\\\")
                    .replace('\n', "\\n")
                    .replace('\r', "\\r");
                text.push_str(&format!("\\{}  {}\n", entry.sha256, escaped));
            } else {
                text.push_str(&format!("{}  {}\n", entry.sha256, entry.path));
            }
        }
        text
    }

    /// Parse and validate the JSON form; `source` names the file in errors.
    pub fn from_json(text: &str, source: &Path) -> Result<Self, ManifestError> {
        let malformed = |detail: String| ManifestError::Malformed {
            path: source.to_path_buf(),
            detail,
        };
        // Read the version first, so a newer format gets a version error, not a shape error.
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|error| malformed(error.to_string()))?;
        let version = value
            .get("version")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| malformed("missing integer field `version`".to_owned()))?;
        if version != u64::from(MANIFEST_VERSION) {
            return Err(ManifestError::UnsupportedVersion {
                path: source.to_path_buf(),
                found: u32::try_from(version).unwrap_or(u32::MAX),
            });
        }
        let manifest: Manifest =
            serde_json::from_value(value).map_err(|error| malformed(error.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for entry in &manifest.files {
            if let Err(why) = check_relative_path(&entry.path) {
                return Err(malformed(format!("file path {:?}: {why}", entry.path)));
            }
            if entry.sha256.len() != 64
                || !entry
                    .sha256
                    .bytes()
                    .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
            {
                return Err(malformed(format!(
                    "sha256 of {:?} is not 64 lowercase hex digits",
                    entry.path
                )));
            }
            if !seen.insert(entry.path.as_str()) {
                return Err(malformed(format!("file {:?} listed twice", entry.path)));
            }
        }
        Ok(manifest)
    }

    /// Read a manifest file.
    pub fn read(path: &Path) -> Result<Self, ManifestError> {
        let text = gauntlet_files::read_to_string_bounded(path, gauntlet_files::limits::MANIFEST)
            .map_err(ArtifactError::from)?;
        Self::from_json(&text, path)
    }

    /// Write the JSON form to `path`.
    pub fn write(&self, path: &Path) -> Result<(), ManifestError> {
        std::fs::write(path, self.to_json()).map_err(|source| ManifestError::Unwritable {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Which entries to leave out of a manifest, beyond the default manifest file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestOptions {
    /// Relative `/`-separated paths to leave out; a folder leaves out everything below it.
    pub exclude: Vec<String>,
}

impl Default for ManifestOptions {
    fn default() -> Self {
        Self {
            exclude: vec![DEFAULT_MANIFEST_FILE_NAME.to_owned()],
        }
    }
}

/// A file that is listed but whose content changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModifiedFile {
    pub path: String,
    pub expected_size: u64,
    pub actual_size: u64,
    pub expected_sha256: String,
    pub actual_sha256: String,
}

/// The result of checking a folder against its manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ManifestVerdict {
    /// Listed files whose size or SHA-256 differ.
    pub modified: Vec<ModifiedFile>,
    /// Listed files that are not in the folder (as regular files).
    pub missing: Vec<String>,
    /// Regular files in the folder that the manifest does not list.
    pub unexpected: Vec<String>,
    /// Symlinks and special files found now; never followed, so never verified.
    pub skipped: Vec<SkippedEntry>,
    /// Listed files whose size and SHA-256 match.
    pub ok_count: usize,
}

impl ManifestVerdict {
    /// True when every listed file matches and nothing else is there: no modified, missing
    /// or unexpected files and no symlinks or special files (their targets cannot be vouched for).
    pub fn is_clean(&self) -> bool {
        self.modified.is_empty()
            && self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.skipped.is_empty()
    }
}

/// Hash every regular file under `dir` (leaving out [`DEFAULT_MANIFEST_FILE_NAME`] at the top).
pub fn create_manifest(dir: &Path) -> Result<Manifest, ManifestError> {
    create_manifest_with(dir, &ManifestOptions::default())
}

/// Hash every regular file under `dir` except what `options` excludes.
pub fn create_manifest_with(
    dir: &Path,
    options: &ManifestOptions,
) -> Result<Manifest, ManifestError> {
    let listing = list_folder(dir, &options.exclude)?;
    let digests = hash_listed(&listing.files)?;
    let files = listing
        .files
        .iter()
        .zip(digests)
        .map(|(file, digest)| ManifestEntry {
            path: file.relative.clone(),
            size: digest.size,
            sha256: digest.sha256_hex(),
        })
        .collect();
    Ok(Manifest {
        version: MANIFEST_VERSION,
        files,
        skipped: listing.skipped,
    })
}

/// Check `dir` against `manifest` (leaving out [`DEFAULT_MANIFEST_FILE_NAME`] at the top).
pub fn verify_manifest(dir: &Path, manifest: &Manifest) -> Result<ManifestVerdict, ManifestError> {
    verify_manifest_with(dir, manifest, &ManifestOptions::default())
}

/// Check `dir` against `manifest`, leaving out what `options` excludes.
pub fn verify_manifest_with(
    dir: &Path,
    manifest: &Manifest,
    options: &ManifestOptions,
) -> Result<ManifestVerdict, ManifestError> {
    let listing = list_folder(dir, &options.exclude)?;
    let expected: std::collections::HashMap<&str, &ManifestEntry> = manifest
        .files
        .iter()
        .map(|entry| (entry.path.as_str(), entry))
        .collect();
    let present: std::collections::HashSet<&str> = listing
        .files
        .iter()
        .map(|file| file.relative.as_str())
        .collect();

    let (listed, unlisted): (Vec<&ListedFile>, Vec<&ListedFile>) = listing
        .files
        .iter()
        .partition(|file| expected.contains_key(file.relative.as_str()));
    let digests = hash_listed(listed.iter().copied())?;

    let mut verdict = ManifestVerdict {
        unexpected: unlisted.iter().map(|file| file.relative.clone()).collect(),
        skipped: listing.skipped.clone(),
        ..ManifestVerdict::default()
    };
    for (file, digest) in listed.iter().zip(digests) {
        let Some(entry) = expected.get(file.relative.as_str()) else {
            continue;
        };
        let actual_sha256 = digest.sha256_hex();
        if digest.size == entry.size && actual_sha256 == entry.sha256 {
            verdict.ok_count += 1;
        } else {
            verdict.modified.push(ModifiedFile {
                path: file.relative.clone(),
                expected_size: entry.size,
                actual_size: digest.size,
                expected_sha256: entry.sha256.clone(),
                actual_sha256,
            });
        }
    }
    verdict.missing = manifest
        .files
        .iter()
        .filter(|entry| !present.contains(entry.path.as_str()))
        .map(|entry| entry.path.clone())
        .collect();
    verdict.missing.sort_by(|a, b| compare_relative_paths(a, b));
    Ok(verdict)
}

/// A regular file found under a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFile {
    /// Relative, `/`-separated path.
    pub relative: String,
    /// Path to open.
    pub absolute: PathBuf,
}

/// What [`list_folder`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderListing {
    /// Regular files, sorted by path components.
    pub files: Vec<ListedFile>,
    /// Symlinks and special files, sorted by path components; never followed.
    pub skipped: Vec<SkippedEntry>,
}

/// Walk `dir` recursively without following symlinks.
///
/// `exclude` holds relative `/`-separated paths: an entry is left out when its path equals one
/// of them or lies below one (component-wise, as model-signing's `ignore_paths` work). Excluded
/// folders are not descended into.
pub fn list_folder(dir: &Path, exclude: &[String]) -> Result<FolderListing, ManifestError> {
    let metadata = fs_err::metadata(dir).map_err(|source| ArtifactError::Unreadable {
        path: dir.to_path_buf(),
        source,
    })?;
    if !metadata.is_dir() {
        return Err(ManifestError::NotAFolder {
            path: dir.to_path_buf(),
        });
    }
    let excluded: Vec<Vec<&str>> = exclude
        .iter()
        .map(|path| {
            path.split('/')
                .filter(|part| !part.is_empty() && *part != ".")
                .collect::<Vec<_>>()
        })
        .filter(|parts| !parts.is_empty())
        .collect();
    let is_excluded = |parts: &[String]| {
        excluded.iter().any(|prefix| {
            prefix.len() <= parts.len() && prefix.iter().zip(parts).all(|(a, b)| *a == b.as_str())
        })
    };

    let mut listing = FolderListing::default();
    // Explicit stack instead of recursion: depth is bounded by the file system, not our stack.
    let mut pending: Vec<(PathBuf, Vec<String>)> = vec![(dir.to_path_buf(), Vec::new())];
    while let Some((folder, parts)) = pending.pop() {
        let unreadable = |source: std::io::Error| ArtifactError::Unreadable {
            path: folder.clone(),
            source,
        };
        for entry in std::fs::read_dir(&folder).map_err(unreadable)? {
            let entry = entry.map_err(unreadable)?;
            let name = entry
                .file_name()
                .into_string()
                .map_err(|_| ManifestError::NonUtf8Path {
                    path: folder.clone(),
                })?;
            let mut child_parts = parts.clone();
            child_parts.push(name);
            if is_excluded(&child_parts) {
                continue;
            }
            let absolute = entry.path();
            // `symlink_metadata`: never follow a link.
            let file_type = std::fs::symlink_metadata(&absolute)
                .map_err(|source| ArtifactError::Unreadable {
                    path: absolute.clone(),
                    source,
                })?
                .file_type();
            let relative = child_parts.join("/");
            if file_type.is_symlink() {
                listing.skipped.push(SkippedEntry {
                    path: relative,
                    kind: SkippedKind::Symlink,
                });
            } else if file_type.is_dir() {
                pending.push((absolute, child_parts));
            } else if file_type.is_file() {
                listing.files.push(ListedFile { relative, absolute });
            } else {
                listing.skipped.push(SkippedEntry {
                    path: relative,
                    kind: SkippedKind::Special,
                });
            }
        }
    }
    listing
        .files
        .sort_by(|a, b| compare_relative_paths(&a.relative, &b.relative));
    listing
        .skipped
        .sort_by(|a, b| compare_relative_paths(&a.path, &b.path));
    Ok(listing)
}

/// Order `/`-separated relative paths component by component (`a/b` < `a.txt`), the order of
/// Python's `PurePosixPath`, which model-signing sorts its resources by.
pub fn compare_relative_paths(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

/// Is `path` a clean relative `/`-separated path (no empty, `.` or `..` component, not absolute)?
pub fn check_relative_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty path");
    }
    if path.starts_with('/') {
        return Err("absolute path");
    }
    for part in path.split('/') {
        match part {
            "" => return Err("empty path component"),
            "." => return Err("`.` component"),
            ".." => return Err("`..` component escapes the folder"),
            _ => {}
        }
    }
    if path.contains('\0') {
        return Err("NUL byte in path");
    }
    Ok(())
}

/// Hash listed files in parallel; the first failure (in listing order) is the error.
pub(crate) fn hash_listed<'a>(
    files: impl IntoIterator<Item = &'a ListedFile>,
) -> Result<Vec<FileDigest>, ArtifactError> {
    let paths: Vec<PathBuf> = files
        .into_iter()
        .map(|file| file.absolute.clone())
        .collect();
    hashing::sha256_files(&paths).into_iter().collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn component_order_differs_from_string_order() {
        let mut paths = vec!["a.txt", "a/b", "B", "a-c", "a"];
        paths.sort_by(|a, b| compare_relative_paths(a, b));
        assert_eq!(paths, vec!["B", "a", "a/b", "a-c", "a.txt"]);
    }

    #[test]
    fn relative_path_checks() {
        assert!(check_relative_path("a/b.bin").is_ok());
        assert!(check_relative_path("../x").is_err());
        assert!(check_relative_path("a/../../x").is_err());
        assert!(check_relative_path("/etc/passwd").is_err());
        assert!(check_relative_path("a//b").is_err());
        assert!(check_relative_path("./a").is_err());
        assert!(check_relative_path("").is_err());
    }

    #[test]
    fn sha256sum_text_escapes_like_coreutils() {
        let manifest = Manifest {
            version: 1,
            files: vec![
                ManifestEntry {
                    path: "plain.bin".into(),
                    size: 0,
                    sha256: "00".repeat(32),
                },
                ManifestEntry {
                    path: "odd\nname".into(),
                    size: 0,
                    sha256: "11".repeat(32),
                },
            ],
            skipped: vec![],
        };
        assert_eq!(
            manifest.to_sha256sum(),
            format!(
                "{}  plain.bin\n\\{}  odd\\nname\n",
                "00".repeat(32),
                "11".repeat(32)
            )
        );
    }
}
