//! Is the model file what the suite says it is? Checked before a single byte of it is
//! deserialised: the pinned SHA-256, the folder's manifest, its signature, and a static scan
//! of the model files. A failed check refuses the run (exit 2) unless `--allow-unverified`,
//! and the outcome goes into the report's Provenance section either way.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use gauntlet_artifact::manifest::{verify_manifest, Manifest};
use gauntlet_artifact::report::describe_location;
use gauntlet_artifact::{Finding, Location, RuleId, Severity};
use gauntlet_reports::{Provenance, ProvenanceCheck, ProvenanceFinding};

use crate::suite::{Source, Suite};

/// Findings at or above this severity fail the scan check.
const SCAN_FAILS_AT: Severity = Severity::High;

fn check(kind: &str, passed: bool, detail: String) -> ProvenanceCheck {
    ProvenanceCheck {
        kind: kind.to_string(),
        passed,
        detail,
    }
}

fn weights_folder(suite: &Suite, what: &str) -> Result<PathBuf> {
    match &suite.model_weights {
        Source::File(path) => Ok(path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()),
        Source::Embedded(_) => bail!("a {what} cannot cover the embedded model"),
    }
}

fn manifest_check(path: &Path) -> Result<ProvenanceCheck> {
    let manifest = Manifest::read(path)?;
    let folder = path.parent().unwrap_or(Path::new("."));
    let verdict = verify_manifest(folder, &manifest)?;
    let detail = if verdict.is_clean() {
        format!(
            "all {} files of `{}` match the manifest `{}`",
            verdict.ok_count,
            folder.display(),
            path.display()
        )
    } else {
        let mut parts = Vec::new();
        let list = |files: Vec<&str>| files.join(", ");
        if !verdict.modified.is_empty() {
            parts.push(format!(
                "modified: {}",
                list(verdict.modified.iter().map(|f| f.path.as_str()).collect())
            ));
        }
        if !verdict.missing.is_empty() {
            parts.push(format!(
                "missing: {}",
                list(verdict.missing.iter().map(String::as_str).collect())
            ));
        }
        if !verdict.unexpected.is_empty() {
            parts.push(format!(
                "unexpected: {}",
                list(verdict.unexpected.iter().map(String::as_str).collect())
            ));
        }
        if !verdict.skipped.is_empty() {
            parts.push(format!(
                "not verifiable (links or special files): {}",
                list(verdict.skipped.iter().map(|s| s.path.as_str()).collect())
            ));
        }
        format!(
            "`{}` does not match the manifest `{}`: {}",
            folder.display(),
            path.display(),
            parts.join("; ")
        )
    };
    Ok(check("manifest", verdict.is_clean(), detail))
}

fn signature_check(
    suite: &Suite,
    signature: &Path,
    public_key: &Path,
) -> Result<(ProvenanceCheck, Option<String>)> {
    let folder = weights_folder(suite, "signature")?;
    let key = gauntlet_files::read_to_string_bounded(public_key, gauntlet_files::limits::KEY)
        .context("cannot read the public key")?;
    let verdict = gauntlet_artifact::signing::verify_folder(&folder, signature, &key)
        .with_context(|| format!("cannot verify the signature `{}`", signature.display()))?;
    let detail = if verdict.valid {
        format!(
            "`{}` verifies over {} files of `{}` with key {}",
            signature.display(),
            verdict.files_verified,
            folder.display(),
            verdict.signer_fingerprint
        )
    } else {
        let problems: Vec<String> = verdict.problems.iter().map(ToString::to_string).collect();
        format!(
            "`{}` does not verify for `{}`: {}",
            signature.display(),
            folder.display(),
            problems.join("; ")
        )
    };
    let signer = verdict.valid.then(|| verdict.signer_fingerprint.clone());
    Ok((check("signature", verdict.valid, detail), signer))
}

/// Static scan of the weights and spec: nothing in them is executed or deserialised.
fn scan_findings(suite: &Suite, weights: &[u8]) -> Result<Vec<Finding>> {
    let mut files = Vec::new();
    let mut findings = Vec::new();
    for source in [&suite.model_weights, &suite.model_spec] {
        match source {
            Source::File(path) => files.push(path.clone()),
            Source::Embedded(_) if std::ptr::eq(source, &suite.model_weights) => {
                let location = Location {
                    file: source.display(),
                    ..Location::default()
                };
                findings.extend(gauntlet_artifact::scan::scan_bytes(weights, &location));
            }
            // The embedded spec is TOML compiled into this binary; there is nothing to scan.
            Source::Embedded(_) => {}
        }
    }
    if !files.is_empty() {
        let options = gauntlet_artifact::walk::ScanOptions {
            extra_allowed: suite.model_allow_globals.clone(),
            ..gauntlet_artifact::walk::ScanOptions::default()
        };
        let scanned = gauntlet_artifact::walk::scan_paths_with(&files, &options)?;
        findings.extend(
            scanned
                .findings
                .into_iter()
                // A TOML spec is not a model format the scanner knows; that is expected.
                .filter(|f| !(f.rule == RuleId::UnidentifiedFile && is_spec(suite, &f.location))),
        );
    }
    Ok(findings)
}

fn is_spec(suite: &Suite, location: &Location) -> bool {
    match &suite.model_spec {
        Source::File(path) => Path::new(&location.file) == path,
        Source::Embedded(_) => false,
    }
}

/// The built-in well-known model ids plus those in `extra` (one per line), read only if it is
/// a regular file of bounded size (`gauntlet_files::limits::KNOWN_IDS`).
pub fn known_model_ids(extra: Option<&Path>) -> Result<Vec<String>> {
    let text = match extra {
        None => String::new(),
        Some(path) => {
            gauntlet_files::read_to_string_bounded(path, gauntlet_files::limits::KNOWN_IDS)?
        }
    };
    Ok(gauntlet_artifact::model_id::known_ids_with(&text))
}

/// Verify the model artifact against everything the suite pins.
pub fn verify(suite: &Suite, weights: &[u8], weights_sha256: &str) -> Result<Provenance> {
    let mut checks = Vec::new();
    let mut signer = None;
    if let Some(expected) = &suite.model_sha256 {
        checks.push(if weights_sha256 == expected {
            check(
                "sha256",
                true,
                format!("weights match the pinned SHA-256 {expected}"),
            )
        } else {
            check(
                "sha256",
                false,
                format!(
                    "model weights `{}` have SHA-256 {weights_sha256}, but the suite pins {expected}",
                    suite.model_weights.display()
                ),
            )
        });
    }
    if let Some(path) = &suite.model_manifest {
        checks.push(manifest_check(path)?);
    }
    if let Some((signature, public_key)) = &suite.model_signature {
        let (signature_check, key) = signature_check(suite, signature, public_key)?;
        checks.push(signature_check);
        signer = key;
    }
    let pinned = !checks.is_empty();
    let mut findings = scan_findings(suite, weights)?;
    if let Some(id) = &suite.model_id {
        let known = known_model_ids(suite.model_known_ids.as_deref())?;
        findings.extend(gauntlet_artifact::model_id::check_model_id(id, &known));
    }
    let serious: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.severity >= SCAN_FAILS_AT)
        .collect();
    checks.push(check(
        "scan",
        serious.is_empty(),
        if serious.is_empty() {
            format!(
                "static scan of the model files: {} findings, none {SCAN_FAILS_AT} or worse",
                findings.len()
            )
        } else {
            format!(
                "static scan of the model files: {} findings {SCAN_FAILS_AT} or worse, e.g. `{}`: {}",
                serious.len(),
                describe_location(&serious[0].location),
                serious[0].message
            )
        },
    ));
    let failed: Vec<&ProvenanceCheck> = checks.iter().filter(|c| !c.passed).collect();
    let verdict = if !failed.is_empty() {
        if !suite.allow_unverified {
            let reasons: Vec<&str> = failed.iter().map(|c| c.detail.as_str()).collect();
            bail!(
                "refusing to load a model that does not verify (run with --allow-unverified to go on anyway): {}",
                reasons.join("; ")
            );
        }
        "failed_allowed"
    } else if pinned {
        "verified"
    } else {
        "unpinned"
    };
    Ok(Provenance {
        verdict: verdict.to_string(),
        weights_sha256: weights_sha256.to_string(),
        checks,
        signer,
        findings: findings
            .iter()
            .map(|f| ProvenanceFinding {
                severity: f.severity.to_string(),
                rule: f.rule.as_str().to_string(),
                location: describe_location(&f.location),
                message: f.message.clone(),
            })
            .collect(),
    })
}
