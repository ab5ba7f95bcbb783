//! Content detection and dispatch: which scanner a byte string goes to is decided by its magic
//! bytes and structure, never by a file name.

use crate::{Finding, Location, RuleId};

/// What a byte string was identified as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    Zip,
    Tar,
    Npy,
    Safetensors,
    Pickle,
    Onnx,
    Unknown,
}

/// Identify `bytes` by content.
pub fn identify(bytes: &[u8]) -> FileKind {
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        FileKind::Zip
    } else if bytes.len() > 262 && &bytes[257..262] == b"ustar" {
        FileKind::Tar
    } else if bytes.starts_with(b"\x93NUMPY") {
        FileKind::Npy
    } else if crate::safetensors::looks_like(bytes) {
        FileKind::Safetensors
    } else if crate::pickle::looks_like(bytes) {
        FileKind::Pickle
    } else if crate::onnx::looks_like(bytes) {
        FileKind::Onnx
    } else {
        FileKind::Unknown
    }
}

/// Scan `bytes` (a file or a container member) and everything nested inside it.
pub fn scan_bytes(bytes: &[u8], location: &Location) -> Vec<Finding> {
    match identify(bytes) {
        FileKind::Zip => crate::zip::scan(bytes, location),
        FileKind::Tar => crate::tar::scan(bytes, location),
        FileKind::Npy => crate::npy::scan(bytes, location),
        FileKind::Safetensors => crate::safetensors::scan(bytes, location),
        FileKind::Pickle => crate::pickle::scan(bytes, location),
        FileKind::Onnx => crate::onnx::scan(bytes, location),
        FileKind::Unknown => vec![Finding {
            severity: crate::Severity::Medium,
            rule: RuleId::UnidentifiedFile,
            message: "the content matches no format gauntlet can check (zip, tar, NumPy, \
                      safetensors, pickle, ONNX); it was not verified"
                .to_string(),
            location: location.clone(),
        }],
    }
}
