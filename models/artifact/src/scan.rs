//! Content detection and dispatch: which scanner a byte string goes to is decided by its magic
//! bytes and structure, never by a file name.
//!
//! Names matter for one thing only, the weight of *not* knowing: content that matches no format
//! is `medium` in a file with no model name (a README, a tokenizer), and `high` ("cannot
//! verify") when the file's or member's name says it is a model (`.pt`, `.bin`, `.gguf`, …) or it
//! sits inside a model archive, because a loader will read it whatever the scanner made of it.

use crate::{Finding, Location, RuleId, Severity};

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
    Gguf,
    Hdf5,
    /// A zlib, gzip, bz2, xz, lzma or lz4 stream (joblib's `compress=`), or joblib's old `ZF` file.
    Compressed,
    Unknown,
}

/// File name extensions that say "this is a model (or model data)": loaders are pointed at such
/// files, so content in them that the scanner cannot identify is not verified and is `high`.
pub const MODEL_EXTENSIONS: &[&str] = &[
    "pt",
    "pth",
    "pt2",
    "bin",
    "ckpt",
    "pkl",
    "pickle",
    "joblib",
    "npy",
    "npz",
    "h5",
    "hdf5",
    "keras",
    "gguf",
    "ggml",
    "onnx",
    "safetensors",
    "msgpack",
    "pb",
    "tflite",
    "mar",
    "model",
];

/// Whether `name` (a path or member name) ends in one of [`MODEL_EXTENSIONS`].
pub fn has_model_extension(name: &str) -> bool {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    base.rsplit_once('.').is_some_and(|(stem, extension)| {
        !stem.is_empty()
            && MODEL_EXTENSIONS
                .iter()
                .any(|model| extension.eq_ignore_ascii_case(model))
    })
}

/// Whether the file or any container member on the way to `location` has a model name.
pub fn model_named(location: &Location) -> bool {
    has_model_extension(&location.file)
        || location
            .member
            .as_deref()
            .is_some_and(|member| member.split("!/").any(has_model_extension))
}

/// Identify `bytes` by content.
pub fn identify(bytes: &[u8]) -> FileKind {
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        FileKind::Zip
    } else if crate::tar::looks_like(bytes) {
        FileKind::Tar
    } else if bytes.starts_with(b"\x93NUMPY") {
        FileKind::Npy
    } else if crate::gguf::looks_like(bytes) {
        FileKind::Gguf
    } else if crate::keras::looks_like_hdf5(bytes) {
        FileKind::Hdf5
    } else if crate::safetensors::looks_like(bytes) {
        FileKind::Safetensors
    } else if crate::pickle::looks_like(bytes) {
        FileKind::Pickle
    } else if crate::onnx::looks_like(bytes) {
        FileKind::Onnx
    } else if crate::compressed::codec(bytes).is_some() {
        FileKind::Compressed
    } else {
        FileKind::Unknown
    }
}

/// Scan `bytes` (a file or a container member) and everything nested inside it.
pub fn scan_bytes(bytes: &[u8], location: &Location) -> Vec<Finding> {
    scan_bytes_in(bytes, location, false)
}

/// [`scan_bytes`] for content that a container says belongs to a model (a member of a PyTorch
/// archive, of an `.npz`, of a `.keras` file): unidentified content there is `high`.
pub fn scan_bytes_in(bytes: &[u8], location: &Location, in_model: bool) -> Vec<Finding> {
    let kind = identify(bytes);
    let mut findings = scan_as(kind, bytes, location, in_model);
    // A polyglot: content that is another format to the scanner (a tar whose first header is
    // a pickle) and a pickle from byte 0 to `pickle.load`, joblib and `np.load`: both readings
    // are scanned.
    if kind != FileKind::Pickle && kind != FileKind::Zip && crate::pickle::looks_like(bytes) {
        findings.push(Finding {
            severity: Severity::High,
            rule: RuleId::PicklePolyglot,
            message: format!(
                "the content reads as {} and, from its first byte, as a pickle: pickle.load, \
                 joblib and np.load(allow_pickle=True) unpickle it; the pickle was scanned too",
                kind_name(kind)
            ),
            location: location.clone(),
        });
        findings.extend(crate::pickle::scan(bytes, location));
    }
    // A polyglot: content that is one format to the scanner and, through the end record at its
    // tail, a zip archive to Python's zipfile. Both readings are scanned.
    if kind != FileKind::Zip && crate::zip::embedded_archive(bytes) {
        findings.push(Finding {
            severity: Severity::High,
            rule: RuleId::ZipReaderDifferential,
            message: format!(
                "the content reads as {} from its start and as a zip archive from its end \
                 record: loaders that open it with Python's zipfile (Keras, zipfile-based \
                 tools) read the archive; its members were scanned too",
                kind_name(kind)
            ),
            location: location.clone(),
        });
        // Identified now: as a zip.
        findings.retain(|finding| {
            finding.rule != RuleId::UnidentifiedModelContent
                && finding.rule != RuleId::UnidentifiedFile
        });
        findings.extend(crate::zip::scan(bytes, location));
    }
    findings
}

fn kind_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Zip => "a zip archive",
        FileKind::Tar => "a tar archive",
        FileKind::Npy => "a NumPy array",
        FileKind::Safetensors => "safetensors",
        FileKind::Pickle => "a pickle",
        FileKind::Onnx => "an ONNX model",
        FileKind::Gguf => "a GGUF file",
        FileKind::Hdf5 => "an HDF5 file",
        FileKind::Compressed => "a compressed stream",
        FileKind::Unknown => "unidentified content",
    }
}

fn scan_as(kind: FileKind, bytes: &[u8], location: &Location, in_model: bool) -> Vec<Finding> {
    match kind {
        FileKind::Zip => crate::zip::scan(bytes, location),
        FileKind::Tar => crate::tar::scan(bytes, location),
        FileKind::Npy => crate::npy::scan(bytes, location),
        FileKind::Gguf => crate::gguf::scan(bytes, location),
        FileKind::Hdf5 => crate::keras::scan_hdf5(bytes, location),
        FileKind::Safetensors => crate::safetensors::scan(bytes, location),
        FileKind::Pickle => crate::pickle::scan(bytes, location),
        FileKind::Onnx => crate::onnx::scan(bytes, location),
        FileKind::Compressed => match crate::compressed::codec(bytes) {
            Some(codec) => crate::compressed::scan(bytes, location, codec),
            None => vec![unidentified(location, in_model)],
        },
        FileKind::Unknown => vec![unidentified(location, in_model)],
    }
}

/// The finding for content that matches no format: `high` where a model is expected.
pub fn unidentified(location: &Location, in_model: bool) -> Finding {
    if in_model || model_named(location) {
        Finding {
            severity: Severity::High,
            rule: RuleId::UnidentifiedModelContent,
            message: "cannot verify: the name or the container says this is model data, but the \
                      content matches no format gauntlet can check (zip, tar, NumPy, GGUF, HDF5, \
                      safetensors, pickle, ONNX); a loader will read it anyway"
                .to_string(),
            location: location.clone(),
        }
    } else {
        Finding {
            severity: Severity::Medium,
            rule: RuleId::UnidentifiedFile,
            message: "the content matches no format gauntlet can check (zip, tar, NumPy, GGUF, \
                      HDF5, safetensors, pickle, ONNX); it was not verified"
                .to_string(),
            location: location.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_recognised() {
        assert!(has_model_extension("x/model.PT"));
        assert!(has_model_extension("weights.safetensors"));
        assert!(!has_model_extension("README.md"));
        assert!(!has_model_extension(".bin"));
        assert!(!has_model_extension("dir.pt/readme"));
        let location = Location {
            file: "bundle.zip".to_string(),
            member: Some("a/b.npz!/x".to_string()),
            ..Location::default()
        };
        assert!(model_named(&location));
    }
}
