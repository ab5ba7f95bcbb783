//! Walking the paths a user named: files and folders (recursively, in sorted order, so two runs
//! over the same tree report the same thing in the same order), each file identified by content
//! and handed to its scanner.
//!
//! Symbolic links are reported, never followed: following them would let a model folder point
//! the scanner (and the user's trust) at files outside it, and a link loop would never end.
//! safetensors files are scanned from their header alone, so a folder of multi-gigabyte weights
//! costs a few small reads; other formats are read whole, up to [`ScanOptions::max_file_bytes`].

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::scan::{self, FileKind};
use crate::{safetensors, ArtifactError, Finding, Location, RuleId, Severity};

/// Files larger than this are not read into memory by default (4 GiB).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 4 << 30;

/// One file that was scanned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScannedFile {
    /// The path as named by the user, or as found under a folder they named.
    pub path: String,
    /// What the content was identified as.
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
}

/// Everything a scan found: the files it looked at and the findings, in walk order.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScanReport {
    pub files: Vec<ScannedFile>,
    pub findings: Vec<Finding>,
}

impl ScanReport {
    /// The worst severity found, `None` when there are no findings.
    pub fn max_severity(&self) -> Option<Severity> {
        self.findings.iter().map(|finding| finding.severity).max()
    }

    /// How many findings have each severity, indexed `[info, low, medium, high, critical]`.
    pub fn counts(&self) -> [usize; 5] {
        let mut counts = [0; 5];
        for finding in &self.findings {
            let index = match finding.severity {
                Severity::Info => 0,
                Severity::Low => 1,
                Severity::Medium => 2,
                Severity::High => 3,
                Severity::Critical => 4,
            };
            if let Some(count) = counts.get_mut(index) {
                *count += 1;
            }
        }
        counts
    }
}

/// How a scan treats large files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOptions {
    /// Files larger than this (other than safetensors, which are scanned from their header) are
    /// not read; each gets a `file-too-large` finding instead of a silent pass.
    pub max_file_bytes: u64,
    /// Pickle globals allowed on top of the built-in allow-list, as exact `(module, name)`
    /// pairs (`gauntlet scan --allow module.Name`). They only turn unknown globals into allowed
    /// ones, each reported as an info finding; deny-listed globals stay critical.
    pub extra_allowed: Vec<(String, String)>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            extra_allowed: Vec::new(),
        }
    }
}

/// Scan files and folders (recursively) with the default options.
///
/// Errors only when a path cannot be read at all (missing, permission denied, I/O error); the
/// error names the path. Everything wrong *inside* a readable file is a finding.
pub fn scan_paths(paths: &[PathBuf]) -> Result<ScanReport, ArtifactError> {
    scan_paths_with(paths, &ScanOptions::default())
}

/// [`scan_paths`] with explicit options.
pub fn scan_paths_with(
    paths: &[PathBuf],
    options: &ScanOptions,
) -> Result<ScanReport, ArtifactError> {
    crate::pickle::with_extra_allowed(&options.extra_allowed, || {
        let mut report = ScanReport::default();
        for path in paths {
            walk(path, options, &mut report)?;
        }
        Ok(report)
    })
}

fn unreadable(path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError + '_ {
    move |source| ArtifactError::Unreadable {
        path: path.to_path_buf(),
        source,
    }
}

/// Depth-first, entries of each folder in byte order of their names. An explicit stack rather
/// than recursion: folder depth is bounded by the file system, not by us.
fn walk(root: &Path, options: &ScanOptions, report: &mut ScanReport) -> Result<(), ArtifactError> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let metadata = fs_err::symlink_metadata(&path).map_err(unreadable(&path))?;
        let file_type = metadata.file_type();
        if file_type.is_symlink() {
            report.findings.push(symlink_finding(&path));
        } else if file_type.is_dir() {
            let mut children = Vec::new();
            for entry in fs_err::read_dir(&path).map_err(unreadable(&path))? {
                children.push(entry.map_err(unreadable(&path))?.path());
            }
            children.sort();
            // Reverse so that popping visits them in sorted order.
            stack.extend(children.into_iter().rev());
        } else if file_type.is_file() {
            scan_file(&path, metadata.len(), options, report)?;
        } else {
            // FIFOs, sockets, devices: opening a FIFO would block forever.
            report.findings.push(Finding {
                severity: Severity::Low,
                rule: RuleId::NotARegularFile,
                message: "not a regular file, folder or link (a FIFO, socket or device); it was \
                          not read"
                    .to_string(),
                location: location_of(&path),
            });
        }
    }
    Ok(())
}

fn location_of(path: &Path) -> Location {
    Location {
        file: path.display().to_string(),
        ..Location::default()
    }
}

fn symlink_finding(path: &Path) -> Finding {
    let target = fs_err::read_link(path)
        .map(|target| format!(" to `{}`", target.display()))
        .unwrap_or_default();
    Finding {
        severity: Severity::Low,
        rule: RuleId::SymlinkNotFollowed,
        message: format!(
            "a symbolic link{target}: not followed, so whatever it points to was not scanned; a \
             link in a model folder can make a loader read files outside it"
        ),
        location: location_of(path),
    }
}

/// ONNX external data reached through a symbolic link (the file or any folder on the way) or
/// stored in a file with other hard links: the runtime follows both, so what it reads is not the
/// file next to the model that a reviewer (or a manifest) sees.
fn external_data_links(model: &Path, bytes: &[u8], location: &Location) -> Vec<Finding> {
    let Some(folder) = model.parent() else {
        return Vec::new();
    };
    let mut findings = Vec::new();
    for relative in crate::onnx::relative_external_locations(bytes) {
        let mut path = folder.to_path_buf();
        let mut problem = None;
        for component in relative
            .split(['/', '\\'])
            .filter(|part| !part.is_empty() && *part != ".")
        {
            path.push(component);
            match std::fs::symlink_metadata(&path) {
                Ok(metadata) if metadata.file_type().is_symlink() => {
                    problem = Some(format!("`{}` is a symbolic link", path.display()));
                    break;
                }
                Ok(metadata) if metadata.is_file() && hard_links(&metadata) > 1 => {
                    problem = Some(format!(
                        "`{}` has {} hard links, so the same bytes live elsewhere under another name",
                        path.display(),
                        hard_links(&metadata)
                    ));
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if let Some(problem) = problem {
            findings.push(Finding {
                severity: Severity::High,
                rule: RuleId::OnnxExternalDataLink,
                message: format!(
                    "external data \"{}\" is reached through a link: {problem}; the runtime \
                     follows it and reads whatever it points to",
                    relative.escape_debug()
                ),
                location: location.clone(),
            });
        }
    }
    findings
}

#[cfg(unix)]
fn hard_links(metadata: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::nlink(metadata)
}

#[cfg(not(unix))]
fn hard_links(_metadata: &std::fs::Metadata) -> u64 {
    1
}

/// Scan one regular file of `size` bytes.
fn scan_file(
    path: &Path,
    size: u64,
    options: &ScanOptions,
    report: &mut ScanReport,
) -> Result<(), ArtifactError> {
    let location = location_of(path);
    // Checked as a regular file by the walk; opened without blocking in case it was swapped.
    let mut file = gauntlet_files::open(path, "a file to scan")?;
    let mut prefix = Vec::with_capacity(safetensors::PREFIX_BYTES);
    (&mut file)
        .take(safetensors::PREFIX_BYTES as u64)
        .read_to_end(&mut prefix)
        .map_err(unreadable(path))?;

    let (kind, findings) = if safetensors::looks_like_prefix(&prefix, size) {
        let findings = safetensors::scan_reader(prefix.as_slice().chain(file), size, &location)
            .map_err(unreadable(path))?;
        (FileKind::Safetensors, findings)
    } else if crate::gguf::looks_like(&prefix) && size > crate::gguf::METADATA_PREFIX_BYTES {
        // GGUF weights run to many gigabytes; only the metadata at the front needs reading.
        let mut bytes = prefix;
        file.take(crate::gguf::METADATA_PREFIX_BYTES.saturating_sub(bytes.len() as u64))
            .read_to_end(&mut bytes)
            .map_err(unreadable(path))?;
        (
            FileKind::Gguf,
            crate::gguf::scan_metadata(&bytes, &location),
        )
    } else if size > options.max_file_bytes {
        // Not read means not verified: high where the name says it is a model.
        let finding = Finding {
            severity: if scan::model_named(&location) {
                Severity::High
            } else {
                Severity::Medium
            },
            rule: RuleId::FileTooLarge,
            message: format!(
                "{size} bytes is over the {}-byte limit for reading a file whole; it was not \
                 scanned",
                options.max_file_bytes
            ),
            location,
        };
        (FileKind::Unknown, vec![finding])
    } else {
        let mut bytes = prefix;
        // `take` guards against a file that grew after `metadata()`.
        file.take(options.max_file_bytes.saturating_sub(bytes.len() as u64))
            .read_to_end(&mut bytes)
            .map_err(unreadable(path))?;
        let kind = scan::identify(&bytes);
        let mut findings = scan::scan_bytes(&bytes, &location);
        if kind == FileKind::Onnx {
            findings.extend(external_data_links(path, &bytes, &location));
        }
        (kind, findings)
    };
    report.files.push(ScannedFile {
        path: location_of(path).file,
        kind,
        size,
    });
    report.findings.extend(findings);
    Ok(())
}
