//! Signing and verifying model folders in the OpenSSF model-signing v1.0 format.
//!
//! A signature made here verifies with `model_signing verify key` (model-signing 1.1.1 from
//! PyPI), and one made by `model_signing sign key` verifies here; see [`mod@format`] for the bytes
//! and `docs/provenance.md` for the interop test. Only the private-key mode is implemented
//! (no Sigstore keyless, certificates or PKCS#11).
//!
//! What gets signed mirrors model-signing exactly: every regular file under the folder, hidden
//! files included, except the ignored paths: `.git`, `.gitattributes`, `.github`, `.gitignore`
//! at the top (unless [`SignOptions::ignore_git_paths`] is off), the signature file itself when
//! it lies inside the folder, and any [`SignOptions::ignore_paths`]. The ignored paths are
//! recorded in the signature and honoured by both verifiers. Symlinks are refused when signing
//! and make verification fail, as in model-signing with its default `allow_symlinks = false`.

pub mod format;
mod keys;

use std::path::{Path, PathBuf};

pub use format::{
    pae, Bundle, Resource, SignedStatement, BUNDLE_MEDIA_TYPE, IN_TOTO_PAYLOAD_TYPE,
    IN_TOTO_STATEMENT_TYPE, MODEL_SIGNING_PREDICATE_TYPE,
};
pub use keys::KeyAlgorithm;

use crate::manifest::{self, check_relative_path, ManifestError, SkippedKind};
use crate::ArtifactError;
use keys::{PrivateKey, PublicKey};

/// The paths model-signing ignores by default (`--ignore-git-paths`, on by default).
pub const GIT_PATHS: [&str; 4] = [".git", ".gitattributes", ".github", ".gitignore"];

/// Largest signature file read. A bundle costs ~150 bytes per signed file, so this allows
/// about a million files while refusing to load an arbitrarily large file into memory.
pub const MAX_SIGNATURE_BYTES: u64 = 256 * 1024 * 1024;

/// Why signing or verification could not run at all. A signature that is merely *wrong* is
/// not an error but a [`SignatureVerdict`] with problems.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigningError {
    /// A file or folder could not be read.
    #[error(transparent)]
    Unreadable(#[from] ArtifactError),
    /// The model folder could not be walked.
    #[error(transparent)]
    Folder(#[from] ManifestError),
    /// The private key PEM could not be used.
    #[error("unusable private key: {detail}")]
    InvalidPrivateKey { detail: String },
    /// The public key PEM could not be used.
    #[error("unusable public key: {detail}")]
    InvalidPublicKey { detail: String },
    /// The folder holds a symlink or special file; model-signing refuses these too.
    #[error("cannot sign `{path}` in `{folder}`: it is a {kind}, and links and special files are never followed")]
    NotRegularFile {
        folder: PathBuf,
        path: String,
        kind: &'static str,
    },
    /// An ignore path is not a clean path relative to the model folder.
    #[error("ignore path {path:?} must be relative to the model folder: {reason}")]
    InvalidIgnorePath { path: String, reason: &'static str },
    /// The signature could not be written.
    #[error("cannot write signature `{path}`: {source}")]
    Unwritable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The statement could not be serialised (should not happen).
    #[error("cannot serialise the signature: {0}")]
    Serialise(#[from] serde_json::Error),
}

/// How to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignOptions {
    /// More relative `/`-separated paths to leave unsigned (a folder covers its content).
    pub ignore_paths: Vec<String>,
    /// Leave out `.git`, `.gitattributes`, `.github`, `.gitignore` (model-signing's default).
    pub ignore_git_paths: bool,
    /// The subject name; defaults to the folder's name, as model-signing does.
    pub model_name: Option<String>,
}

impl Default for SignOptions {
    fn default() -> Self {
        Self {
            ignore_paths: Vec::new(),
            ignore_git_paths: true,
            model_name: None,
        }
    }
}

/// How to verify (the ignored paths recorded in the signature always apply as well).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// More relative paths to leave out of the comparison.
    pub ignore_paths: Vec<String>,
    /// Leave out the git paths (model-signing's default).
    pub ignore_git_paths: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            ignore_paths: Vec::new(),
            ignore_git_paths: true,
        }
    }
}

/// What [`sign_folder`] signed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SignedFolder {
    /// Number of files covered by the signature.
    pub file_count: usize,
    /// The subject digest (hex SHA-256 over the per-file digests).
    pub root_digest: String,
    /// Hex SHA-256 of the signer's SubjectPublicKeyInfo DER.
    pub signer_fingerprint: String,
    pub algorithm: KeyAlgorithm,
}

/// One reason a signature does not vouch for the folder.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SignatureProblem {
    /// The signature file is not a bundle of the expected shape.
    MalformedSignature { detail: String },
    /// Well-formed, but a variant gauntlet does not verify (e.g. shard serialization).
    UnsupportedFormat { detail: String },
    /// The bundle names a different key than the one given.
    WrongKey {
        signature_key_hint: String,
        given_key_hint: String,
    },
    /// The signature does not verify with the given key over the payload.
    BadSignature,
    /// The subject digest does not match the listed file digests.
    InconsistentDigest { subject: String, computed: String },
    /// A signed name is not a clean relative path (`..`, absolute, duplicate).
    UnsafeResourceName { name: String, reason: String },
    /// A signed file's content changed.
    ModifiedFile {
        path: String,
        expected_sha256: String,
        actual_sha256: String,
    },
    /// A signed file is gone.
    MissingFile { path: String },
    /// A file is there that the signature does not cover.
    ExtraFile { path: String },
    /// A symlink or special file (never followed, so never verified).
    NotRegularFile { path: String, file_kind: String },
}

impl std::fmt::Display for SignatureProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MalformedSignature { detail } => write!(f, "malformed signature: {detail}"),
            Self::UnsupportedFormat { detail } => write!(f, "unsupported signature: {detail}"),
            Self::WrongKey {
                signature_key_hint,
                given_key_hint,
            } => write!(
                f,
                "wrong key: signed by the key with hint {signature_key_hint}, but the given key's hint is {given_key_hint}"
            ),
            Self::BadSignature => f.write_str("bad signature: does not verify with the given key"),
            Self::InconsistentDigest { subject, computed } => write!(
                f,
                "inconsistent statement: subject digest {subject}, but the resources hash to {computed}"
            ),
            Self::UnsafeResourceName { name, reason } => {
                write!(f, "unsafe signed name {name:?}: {reason}")
            }
            Self::ModifiedFile {
                path,
                expected_sha256,
                actual_sha256,
            } => write!(
                f,
                "modified: {path} (signed sha256 {expected_sha256}, now {actual_sha256})"
            ),
            Self::MissingFile { path } => write!(f, "missing: {path}"),
            Self::ExtraFile { path } => write!(f, "not covered by the signature: {path}"),
            Self::NotRegularFile { path, file_kind } => {
                write!(f, "{file_kind} not followed: {path}")
            }
        }
    }
}

/// The outcome of [`verify_folder`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SignatureVerdict {
    /// True exactly when `problems` is empty.
    pub valid: bool,
    /// Everything wrong, in checking order (key, signature, statement, then files).
    pub problems: Vec<SignatureProblem>,
    /// Hex SHA-256 of the given public key's SubjectPublicKeyInfo DER.
    pub signer_fingerprint: String,
    pub algorithm: KeyAlgorithm,
    /// The subject name in the signature, once the signature checked out.
    pub model_name: Option<String>,
    /// The subject digest in the signature, once the signature checked out.
    pub root_digest: Option<String>,
    /// Signed files whose content matched.
    pub files_verified: usize,
}

impl SignatureVerdict {
    fn new(key: &PublicKey) -> Result<Self, SigningError> {
        Ok(Self {
            valid: false,
            problems: Vec::new(),
            signer_fingerprint: key.fingerprint()?,
            algorithm: key.algorithm(),
            model_name: None,
            root_digest: None,
            files_verified: 0,
        })
    }

    fn finish(mut self) -> Self {
        self.valid = self.problems.is_empty();
        self
    }
}

/// Hex SHA-256 of the SubjectPublicKeyInfo DER of a PEM public key: the fingerprint
/// [`SignatureVerdict::signer_fingerprint`] reports.
pub fn public_key_fingerprint(public_key_pem: &str) -> Result<String, SigningError> {
    PublicKey::from_pem(public_key_pem)?.fingerprint()
}

/// The public key PEM (SubjectPublicKeyInfo) of a PEM private key.
pub fn public_key_pem(private_key_pem: &str) -> Result<String, SigningError> {
    PrivateKey::from_pem(private_key_pem)?
        .public_key()
        .spki_pem()
}

/// Sign the folder `dir` with `private_key_pem` and write a model-signing v1.0 bundle to
/// `signature_path` (which may lie inside `dir`; it is then left out and recorded as ignored).
pub fn sign_folder(
    dir: &Path,
    private_key_pem: &str,
    signature_path: &Path,
    options: &SignOptions,
) -> Result<SignedFolder, SigningError> {
    let key = PrivateKey::from_pem(private_key_pem)?;
    let public_key = key.public_key();

    let mut ignore_paths: Vec<String> = Vec::new();
    for path in &options.ignore_paths {
        let cleaned = path.trim_start_matches("./").trim_end_matches('/');
        check_relative_path(cleaned).map_err(|reason| SigningError::InvalidIgnorePath {
            path: path.clone(),
            reason,
        })?;
        ignore_paths.push(cleaned.to_owned());
    }
    if options.ignore_git_paths {
        ignore_paths.extend(GIT_PATHS.iter().map(|path| (*path).to_owned()));
    }
    if let Some(inside) = relative_inside(dir, signature_path) {
        ignore_paths.push(inside);
    }
    ignore_paths.sort();
    ignore_paths.dedup();

    let listing = manifest::list_folder(dir, &ignore_paths)?;
    if let Some(entry) = listing.skipped.first() {
        return Err(SigningError::NotRegularFile {
            folder: dir.to_path_buf(),
            path: entry.path.clone(),
            kind: kind_name(entry.kind),
        });
    }
    let digests = manifest::hash_listed(&listing.files)?;
    let mut resources: Vec<Resource> = listing
        .files
        .iter()
        .zip(&digests)
        .map(|(file, digest)| Resource {
            name: file.relative.clone(),
            algorithm: "sha256".to_owned(),
            digest: digest.sha256_hex(),
        })
        .collect();
    format::sort_resources(&mut resources);

    let model_name = options
        .model_name
        .clone()
        .unwrap_or_else(|| folder_name(dir));
    let payload = format::statement_json(&model_name, &resources, &ignore_paths)?;
    let signature = key.sign(&pae(IN_TOTO_PAYLOAD_TYPE, payload.as_bytes()));
    let bundle = Bundle::key_signed(&payload, &signature, Some(public_key.model_signing_hint()?));
    let text = serde_json::to_string(&bundle)?;
    std::fs::write(signature_path, text).map_err(|source| SigningError::Unwritable {
        path: signature_path.to_path_buf(),
        source,
    })?;
    Ok(SignedFolder {
        file_count: resources.len(),
        root_digest: format::root_digest(&resources).unwrap_or_default(),
        signer_fingerprint: public_key.fingerprint()?,
        algorithm: key.algorithm(),
    })
}

/// Verify the folder `dir` against the bundle at `signature_path` with `public_key_pem`, with
/// model-signing's defaults (git paths ignored).
pub fn verify_folder(
    dir: &Path,
    signature_path: &Path,
    public_key_pem: &str,
) -> Result<SignatureVerdict, SigningError> {
    verify_folder_with(
        dir,
        signature_path,
        public_key_pem,
        &VerifyOptions::default(),
    )
}

/// Verify with explicit options. `Err` only when something could not be read or the public key
/// is unusable; every way the signature can be wrong is a problem in the verdict.
pub fn verify_folder_with(
    dir: &Path,
    signature_path: &Path,
    public_key_pem: &str,
    options: &VerifyOptions,
) -> Result<SignatureVerdict, SigningError> {
    let key = PublicKey::from_pem(public_key_pem)?;
    let mut verdict = SignatureVerdict::new(&key)?;
    // Read through the reading layer: a FIFO or device is an error (never opened, so nothing
    // blocks); a file past the limit is a malformed signature, counted on the bytes read.
    let limit = gauntlet_files::Limit::new(MAX_SIGNATURE_BYTES, "a signature");
    let text = match gauntlet_files::read_bounded(signature_path, limit) {
        Ok(text) => text,
        Err(gauntlet_files::FileError::TooLarge { .. }) => {
            verdict.problems.push(SignatureProblem::MalformedSignature {
                detail: format!(
                    "signature file is larger than the {} limit",
                    gauntlet_files::Bytes(MAX_SIGNATURE_BYTES)
                ),
            });
            return Ok(verdict.finish());
        }
        Err(error) => return Err(ArtifactError::from(error).into()),
    };

    let Some(statement) = check_bundle(&text, &key, &mut verdict.problems)? else {
        return Ok(verdict.finish());
    };
    verdict.model_name = Some(statement.model_name.clone());
    verdict.root_digest = Some(statement.root_digest.clone());

    match format::root_digest(&statement.resources) {
        Some(computed) if computed == statement.root_digest => {}
        computed => verdict.problems.push(SignatureProblem::InconsistentDigest {
            subject: statement.root_digest.clone(),
            computed: computed.unwrap_or_else(|| "(a resource digest is not 64 hex digits)".into()),
        }),
    }
    let mut expected = std::collections::HashMap::new();
    for resource in &statement.resources {
        if let Err(reason) = check_relative_path(&resource.name) {
            verdict.problems.push(SignatureProblem::UnsafeResourceName {
                name: resource.name.clone(),
                reason: reason.to_owned(),
            });
        } else if expected
            .insert(resource.name.as_str(), resource.digest.as_str())
            .is_some()
        {
            verdict.problems.push(SignatureProblem::UnsafeResourceName {
                name: resource.name.clone(),
                reason: "listed twice".to_owned(),
            });
        }
    }

    let mut ignore_paths = statement.ignore_paths.clone();
    ignore_paths.extend(options.ignore_paths.iter().cloned());
    if options.ignore_git_paths {
        ignore_paths.extend(GIT_PATHS.iter().map(|path| (*path).to_owned()));
    }
    if let Some(inside) = relative_inside(dir, signature_path) {
        ignore_paths.push(inside);
    }
    let listing = manifest::list_folder(dir, &ignore_paths)?;
    for entry in &listing.skipped {
        verdict.problems.push(SignatureProblem::NotRegularFile {
            path: entry.path.clone(),
            file_kind: kind_name(entry.kind).to_owned(),
        });
    }
    let (signed, extra): (Vec<_>, Vec<_>) = listing
        .files
        .iter()
        .partition(|file| expected.contains_key(file.relative.as_str()));
    let digests = manifest::hash_listed(signed.iter().copied())?;
    for (file, digest) in signed.iter().zip(&digests) {
        let actual = digest.sha256_hex();
        let signed_digest = expected
            .get(file.relative.as_str())
            .copied()
            .unwrap_or_default();
        if actual.eq_ignore_ascii_case(signed_digest) {
            verdict.files_verified += 1;
        } else {
            verdict.problems.push(SignatureProblem::ModifiedFile {
                path: file.relative.clone(),
                expected_sha256: signed_digest.to_owned(),
                actual_sha256: actual,
            });
        }
    }
    let present: std::collections::HashSet<&str> = listing
        .files
        .iter()
        .map(|file| file.relative.as_str())
        .collect();
    for resource in &statement.resources {
        if check_relative_path(&resource.name).is_ok() && !present.contains(resource.name.as_str())
        {
            verdict.problems.push(SignatureProblem::MissingFile {
                path: resource.name.clone(),
            });
        }
    }
    for file in extra {
        verdict.problems.push(SignatureProblem::ExtraFile {
            path: file.relative.clone(),
        });
    }
    Ok(verdict.finish())
}

/// Check the bundle layers and the signature; return the statement only when the signature is
/// good, pushing problems otherwise (a payload that fails its signature is never trusted).
fn check_bundle(
    text: &[u8],
    key: &PublicKey,
    problems: &mut Vec<SignatureProblem>,
) -> Result<Option<SignedStatement>, SigningError> {
    let malformed = |detail: String| SignatureProblem::MalformedSignature { detail };
    let bundle: Bundle = match serde_json::from_slice(text) {
        Ok(bundle) => bundle,
        Err(error) => {
            problems.push(malformed(format!("not a Sigstore bundle: {error}")));
            return Ok(None);
        }
    };
    if bundle.media_type != BUNDLE_MEDIA_TYPE {
        problems.push(SignatureProblem::UnsupportedFormat {
            detail: format!(
                "bundle mediaType {:?}, expected {BUNDLE_MEDIA_TYPE:?} (only key-mode signatures are verified)",
                bundle.media_type
            ),
        });
        return Ok(None);
    }
    let envelope = &bundle.dsse_envelope;
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        problems.push(SignatureProblem::UnsupportedFormat {
            detail: format!(
                "DSSE payloadType {:?}, expected {IN_TOTO_PAYLOAD_TYPE:?}",
                envelope.payload_type
            ),
        });
        return Ok(None);
    }
    let Some(payload) = format::decode_base64(&envelope.payload) else {
        problems.push(malformed("DSSE payload is not base64".to_owned()));
        return Ok(None);
    };
    // model-signing checks the first signature only; so do we.
    let Some(first) = envelope.signatures.first() else {
        problems.push(malformed("DSSE envelope has no signature".to_owned()));
        return Ok(None);
    };
    let Some(signature) = format::decode_base64(&first.sig) else {
        problems.push(malformed("DSSE signature is not base64".to_owned()));
        return Ok(None);
    };

    let given_hint = key.model_signing_hint()?;
    let signature_hint = bundle
        .verification_material
        .public_key
        .as_ref()
        .and_then(|identifier| identifier.hint.clone())
        .filter(|hint| !hint.is_empty());
    let hint_mismatch = signature_hint
        .as_ref()
        .is_some_and(|hint| !hint.eq_ignore_ascii_case(&given_hint));

    if !key.verify(&pae(&envelope.payload_type, &payload), &signature) {
        problems.push(match (hint_mismatch, signature_hint) {
            (true, Some(signature_key_hint)) => SignatureProblem::WrongKey {
                signature_key_hint,
                given_key_hint: given_hint,
            },
            _ => SignatureProblem::BadSignature,
        });
        return Ok(None);
    }
    if let (true, Some(signature_key_hint)) = (hint_mismatch, signature_hint) {
        // The hint is unsigned, so a good signature wins; but model-signing would refuse this
        // bundle, so it is not valid either.
        problems.push(SignatureProblem::WrongKey {
            signature_key_hint,
            given_key_hint: given_hint,
        });
    }
    match format::parse_statement(&payload) {
        Ok(statement) => Ok(Some(statement)),
        Err(format::StatementError::Malformed(detail)) => {
            problems.push(malformed(detail));
            Ok(None)
        }
        Err(format::StatementError::Unsupported(detail)) => {
            problems.push(SignatureProblem::UnsupportedFormat { detail });
            Ok(None)
        }
    }
}

fn kind_name(kind: SkippedKind) -> &'static str {
    match kind {
        SkippedKind::Symlink => "symlink",
        SkippedKind::Special => "special file",
    }
}

/// The folder's name, as model-signing takes it (`Path.name`, or the resolved name for `.`).
fn folder_name(dir: &Path) -> String {
    dir.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .or_else(|| {
            dir.canonicalize().ok().and_then(|path| {
                path.file_name()
                    .map(|name| name.to_string_lossy().into_owned())
            })
        })
        .unwrap_or_default()
}

/// `path` relative to `dir` (`/`-separated) when it lies inside, after resolving both, as
/// model-signing's command line does for the signature path.
fn relative_inside(dir: &Path, path: &Path) -> Option<String> {
    let dir = dir.canonicalize().ok()?;
    let resolved = match path.canonicalize() {
        Ok(resolved) => resolved,
        // A signature that does not exist yet: resolve its parent.
        Err(_) => {
            let parent = match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => PathBuf::from("."),
            };
            parent.canonicalize().ok()?.join(path.file_name()?)
        }
    };
    let inside = resolved.strip_prefix(&dir).ok()?;
    let parts: Option<Vec<&str>> = inside.iter().map(|part| part.to_str()).collect();
    let joined = parts?.join("/");
    (!joined.is_empty()).then_some(joined)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn fixture_key(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/signing/keys")
            .join(name);
        std::fs::read_to_string(path).unwrap()
    }

    /// A correctly signed bundle around an arbitrary payload, to test what happens *after*
    /// the signature checks out.
    fn signed_bundle(payload: &str) -> String {
        let key = PrivateKey::from_pem(&fixture_key("p256.key.pem")).unwrap();
        let signature = key.sign(&pae(IN_TOTO_PAYLOAD_TYPE, payload.as_bytes()));
        serde_json::to_string(&Bundle::key_signed(payload, &signature, None)).unwrap()
    }

    fn statement(subject_digest: &str, method: &str, resources: &str) -> String {
        format!(
            r#"{{"_type": "https://in-toto.io/Statement/v1",
                "subject": [{{"name": "m", "digest": {{"sha256": "{subject_digest}"}}}}],
                "predicateType": "https://model_signing/signature/v1.0",
                "predicate": {{"serialization": {{"method": "{method}", "hash_type": "sha256",
                                "allow_symlinks": false, "shard_size": 1000}},
                              "resources": {resources}}}}}"#
        )
    }

    fn verify_payload(payload: &str) -> SignatureVerdict {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m");
        std::fs::create_dir_all(&model).unwrap();
        std::fs::write(model.join("w.bin"), b"abc").unwrap();
        let sig = dir.path().join("m.sig");
        std::fs::write(&sig, signed_bundle(payload)).unwrap();
        verify_folder(&model, &sig, &fixture_key("p256.pub.pem")).unwrap()
    }

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn resources(name: &str) -> (String, String) {
        let list = format!(r#"[{{"name": "{name}", "algorithm": "sha256", "digest": "{ABC}"}}]"#);
        let root = hex::encode(crate::hashing::sha256_bytes(&hex::decode(ABC).unwrap()));
        (list, root)
    }

    #[test]
    fn hand_built_consistent_statement_is_valid() {
        let (list, root) = resources("w.bin");
        let verdict = verify_payload(&statement(&root, "files", &list));
        assert!(verdict.valid, "{:?}", verdict.problems);
        assert_eq!(verdict.files_verified, 1);
    }

    #[test]
    fn shard_serialization_is_unsupported() {
        let (list, root) = resources("w.bin:0:3");
        let verdict = verify_payload(&statement(&root, "shards", &list));
        assert!(matches!(
            verdict.problems.as_slice(),
            [SignatureProblem::UnsupportedFormat { detail }] if detail.contains("shards")
        ));
    }

    #[test]
    fn subject_digest_must_match_resources() {
        let (list, _) = resources("w.bin");
        let verdict = verify_payload(&statement(&"00".repeat(32), "files", &list));
        assert!(matches!(
            verdict.problems.as_slice(),
            [SignatureProblem::InconsistentDigest { .. }]
        ));
    }

    /// A signed name that escapes the folder is flagged and never opened.
    #[test]
    fn escaping_resource_names_are_unsafe() {
        let (list, root) = resources("../../etc/passwd");
        let verdict = verify_payload(&statement(&root, "files", &list));
        assert!(!verdict.valid);
        assert!(verdict.problems.iter().any(|problem| matches!(
            problem,
            SignatureProblem::UnsafeResourceName { name, .. } if name == "../../etc/passwd"
        )));
        assert!(verdict.problems.contains(&SignatureProblem::ExtraFile {
            path: "w.bin".into()
        }));
        assert!(!verdict
            .problems
            .iter()
            .any(|problem| matches!(problem, SignatureProblem::MissingFile { .. })));
    }

    #[test]
    fn ignore_paths_are_cleaned_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m");
        std::fs::create_dir_all(model.join("notes")).unwrap();
        std::fs::write(model.join("notes/a"), b"a").unwrap();
        std::fs::write(model.join("w.bin"), b"w").unwrap();
        let key = fixture_key("p256.key.pem");
        let sig = dir.path().join("m.sig");
        let options = SignOptions {
            ignore_paths: vec!["./notes/".into()],
            ..SignOptions::default()
        };
        assert_eq!(
            sign_folder(&model, &key, &sig, &options)
                .unwrap()
                .file_count,
            1
        );
        for bad in ["../outside", "/etc", ""] {
            let options = SignOptions {
                ignore_paths: vec![bad.into()],
                ..SignOptions::default()
            };
            assert!(matches!(
                sign_folder(&model, &key, &sig, &options),
                Err(SigningError::InvalidIgnorePath { .. })
            ));
        }
    }

    #[test]
    fn relative_inside_resolves_both_paths() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m");
        std::fs::create_dir_all(model.join("sub")).unwrap();
        assert_eq!(
            relative_inside(&model, &model.join("sub/../model.sig")).as_deref(),
            Some("model.sig")
        );
        assert_eq!(
            relative_inside(&model, &model.join("sub/x.sig")).as_deref(),
            Some("sub/x.sig")
        );
        assert_eq!(relative_inside(&model, &dir.path().join("m.sig")), None);
    }
}
