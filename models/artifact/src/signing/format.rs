//! The OpenSSF model-signing v1.0 signature format, as model-signing 1.1.1 writes it in key mode.
//!
//! Layers, outermost first:
//!
//! 1. **Sigstore bundle** (compact JSON, no trailing newline):
//!    `{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json",
//!      "verificationMaterial":{"publicKey":{"hint":"<hex>"},"tlogEntries":[]},
//!      "dsseEnvelope":{…}}`. The hint is SHA-256 of the signer's SPKI *PEM text*.
//! 2. **DSSE envelope**: `{"payload":"<base64>","payloadType":"application/vnd.in-toto+json",
//!    "signatures":[{"sig":"<base64 DER ECDSA>","keyid":""}]}`; the signature covers the DSSE
//!    pre-authentication encoding `"DSSEv1 <len(type)> <type> <len(payload)> <payload>"`.
//! 3. **in-toto statement v1** (the payload; JSON with 2-space indent, as protobuf's
//!    `MessageToJson` prints it): one subject named after the model folder whose `sha256` is
//!    SHA-256 over the concatenated *raw* 32-byte file digests in the order of `resources`; the
//!    predicate (`https://model_signing/signature/v1.0`) holds `serialization`
//!    (`method: files`, `hash_type: sha256`, `allow_symlinks`, `ignore_paths`) and `resources`,
//!    one `{name, algorithm: sha256, digest: <hex>}` per file, sorted by path components.

use base64::Engine as _;

use crate::manifest::compare_relative_paths;

/// `mediaType` of the bundle model-signing 1.1.1 writes (and requires) in key mode.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// DSSE `payloadType` of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// `_type` of an in-toto statement v1.
pub const IN_TOTO_STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// `predicateType` of a model-signing v1.0 signature.
pub const MODEL_SIGNING_PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
/// The pre-1.0 predicate type, which gauntlet recognises but does not verify.
pub const MODEL_SIGNING_PREDICATE_TYPE_V0_1: &str = "https://model_signing/Digests/v0.1";

/// The DSSE v1 pre-authentication encoding: what the signature actually covers.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let header = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    );
    let mut encoded = Vec::with_capacity(header.len() + payload.len());
    encoded.extend_from_slice(header.as_bytes());
    encoded.extend_from_slice(payload);
    encoded
}

/// The Sigstore bundle (only the fields key mode uses; unknown fields are ignored on read).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    pub media_type: String,
    pub verification_material: VerificationMaterial,
    pub dsse_envelope: Envelope,
}

impl Bundle {
    /// The key-mode bundle model-signing writes: one DSSE signature over `payload` (an in-toto
    /// statement), with the public-key hint when there is one and no transparency-log entries.
    pub fn key_signed(payload: &str, signature: &[u8], hint: Option<String>) -> Self {
        Bundle {
            media_type: BUNDLE_MEDIA_TYPE.to_owned(),
            verification_material: VerificationMaterial {
                public_key: hint.map(|hint| PublicKeyIdentifier { hint: Some(hint) }),
                tlog_entries: Vec::new(),
            },
            dsse_envelope: Envelope {
                payload: encode_base64(payload.as_bytes()),
                payload_type: IN_TOTO_PAYLOAD_TYPE.to_owned(),
                signatures: vec![EnvelopeSignature {
                    sig: encode_base64(signature),
                    keyid: String::new(),
                }],
            },
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMaterial {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PublicKeyIdentifier>,
    #[serde(default)]
    pub tlog_entries: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PublicKeyIdentifier {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Base64 of the statement bytes.
    pub payload: String,
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EnvelopeSignature {
    /// Base64 of the signature bytes.
    pub sig: String,
    #[serde(default)]
    pub keyid: String,
}

/// One signed file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Resource {
    pub name: String,
    pub algorithm: String,
    pub digest: String,
}

/// What a signature's statement says, once parsed and checked for shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedStatement {
    pub model_name: String,
    /// The subject's `sha256` (hex) as written.
    pub root_digest: String,
    pub allow_symlinks: bool,
    pub ignore_paths: Vec<String>,
    /// Resources in the order written (the root digest is over this order).
    pub resources: Vec<Resource>,
}

#[derive(serde::Serialize)]
struct Statement<'a> {
    #[serde(rename = "_type")]
    statement_type: &'a str,
    subject: [Subject<'a>; 1],
    #[serde(rename = "predicateType")]
    predicate_type: &'a str,
    predicate: Predicate<'a>,
}

#[derive(serde::Serialize)]
struct Subject<'a> {
    name: &'a str,
    digest: SubjectDigest<'a>,
}

#[derive(serde::Serialize)]
struct SubjectDigest<'a> {
    sha256: &'a str,
}

#[derive(serde::Serialize)]
struct Predicate<'a> {
    serialization: Serialization<'a>,
    resources: &'a [Resource],
}

#[derive(serde::Serialize)]
struct Serialization<'a> {
    method: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    ignore_paths: &'a [String],
    allow_symlinks: bool,
    hash_type: &'a str,
}

/// SHA-256 over the concatenated raw digests, in order: model-signing's subject digest.
/// `None` when a digest is not 64 hex digits.
pub fn root_digest(resources: &[Resource]) -> Option<String> {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    for resource in resources {
        let raw = hex::decode(&resource.digest).ok()?;
        if raw.len() != 32 {
            return None;
        }
        hasher.update(raw);
    }
    Some(hex::encode(hasher.finalize()))
}

/// Render the statement model-signing would write for these resources.
pub fn statement_json(
    model_name: &str,
    resources: &[Resource],
    ignore_paths: &[String],
) -> Result<String, serde_json::Error> {
    let root = root_digest(resources).unwrap_or_default();
    let statement = Statement {
        statement_type: IN_TOTO_STATEMENT_TYPE,
        subject: [Subject {
            name: model_name,
            digest: SubjectDigest { sha256: &root },
        }],
        predicate_type: MODEL_SIGNING_PREDICATE_TYPE,
        predicate: Predicate {
            serialization: Serialization {
                method: "files",
                ignore_paths,
                allow_symlinks: false,
                hash_type: "sha256",
            },
            resources,
        },
    };
    serde_json::to_string_pretty(&statement)
}

/// Decode base64 in any of the alphabets DSSE allows (standard or URL-safe, padded or not).
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

/// Standard padded base64, what model-signing writes.
pub fn encode_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Why a statement payload was not accepted; the verifier turns it into a verdict problem
/// (a malformed signature is a finding, not a crash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementError {
    /// Not JSON of the v1.0 shape.
    Malformed(String),
    /// Well-formed, but a variant gauntlet does not verify (other predicate, shards, BLAKE).
    Unsupported(String),
}

impl From<String> for StatementError {
    fn from(detail: String) -> Self {
        Self::Malformed(detail)
    }
}

impl From<&str> for StatementError {
    fn from(detail: &str) -> Self {
        Self::Malformed(detail.to_owned())
    }
}

/// Parse and shape-check a statement payload.
pub fn parse_statement(payload: &[u8]) -> Result<SignedStatement, StatementError> {
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|error| format!("payload is not JSON: {error}"))?;
    let field = |value: &serde_json::Value, name: &str| value.get(name).cloned();
    let string = |value: &serde_json::Value, name: &str, context: &str| {
        value
            .get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("{context}: missing string field `{name}`"))
    };

    let statement_type = string(&value, "_type", "statement")?;
    if statement_type != IN_TOTO_STATEMENT_TYPE {
        return Err(StatementError::Unsupported(format!(
            "statement `_type` is {statement_type:?}, expected {IN_TOTO_STATEMENT_TYPE:?}"
        )));
    }
    let predicate_type = string(&value, "predicateType", "statement")?;
    if predicate_type == MODEL_SIGNING_PREDICATE_TYPE_V0_1 {
        return Err(StatementError::Unsupported(format!(
            "pre-1.0 model-signing predicate {MODEL_SIGNING_PREDICATE_TYPE_V0_1:?} is not supported; re-sign with model-signing >= 1.0"
        )));
    }
    if predicate_type != MODEL_SIGNING_PREDICATE_TYPE {
        return Err(StatementError::Unsupported(format!(
            "predicateType is {predicate_type:?}, expected {MODEL_SIGNING_PREDICATE_TYPE:?}"
        )));
    }
    let subjects = field(&value, "subject")
        .and_then(|subjects| subjects.as_array().cloned())
        .ok_or("statement: missing array `subject`")?;
    let [subject] = subjects.as_slice() else {
        return Err(format!("expected exactly one subject, found {}", subjects.len()).into());
    };
    let model_name = subject
        .get("name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let root_digest = subject
        .get("digest")
        .map(|digest| string(digest, "sha256", "subject digest"))
        .ok_or("subject: missing `digest`")??;

    let predicate = field(&value, "predicate").ok_or("statement: missing `predicate`")?;
    let serialization =
        field(&predicate, "serialization").ok_or("predicate: missing `serialization`")?;
    let method = string(&serialization, "method", "serialization")?;
    if method != "files" {
        return Err(StatementError::Unsupported(format!(
            "serialization method {method:?} is not supported (only \"files\"; shard serialization is not)"
        )));
    }
    let hash_type = string(&serialization, "hash_type", "serialization")?;
    if hash_type != "sha256" {
        return Err(StatementError::Unsupported(format!(
            "hash_type {hash_type:?} is not supported (only \"sha256\")"
        )));
    }
    let allow_symlinks = serialization
        .get("allow_symlinks")
        .and_then(serde_json::Value::as_bool)
        .ok_or("serialization: missing boolean `allow_symlinks`")?;
    let ignore_paths = match serialization.get("ignore_paths") {
        None => Vec::new(),
        Some(paths) => paths
            .as_array()
            .ok_or("serialization: `ignore_paths` is not an array")?
            .iter()
            .map(|path| {
                path.as_str()
                    .map(str::to_owned)
                    .ok_or("serialization: `ignore_paths` holds a non-string")
            })
            .collect::<Result<Vec<_>, _>>()?,
    };

    let resources = field(&predicate, "resources")
        .and_then(|resources| resources.as_array().cloned())
        .ok_or("predicate: missing array `resources`")?
        .iter()
        .enumerate()
        .map(|(index, resource)| {
            let context = format!("resource {index}");
            let resource = Resource {
                name: string(resource, "name", &context)?,
                algorithm: string(resource, "algorithm", &context)?,
                digest: string(resource, "digest", &context)?,
            };
            if resource.algorithm != "sha256" {
                return Err(StatementError::Unsupported(format!(
                    "{context} ({:?}): algorithm {:?} is not supported (only \"sha256\")",
                    resource.name, resource.algorithm
                )));
            }
            Ok(resource)
        })
        .collect::<Result<Vec<_>, StatementError>>()?;

    Ok(SignedStatement {
        model_name,
        root_digest,
        allow_symlinks,
        ignore_paths,
        resources,
    })
}

/// Sort resources the way model-signing does (by path components).
pub fn sort_resources(resources: &mut [Resource]) {
    resources.sort_by(|a, b| compare_relative_paths(&a.name, &b.name));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    proptest::proptest! {
        #[test]
        fn parse_statement_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_statement(&bytes);
        }

        #[test]
        fn decode_base64_never_panics(text in ".{0,200}") {
            let _ = decode_base64(&text);
        }
    }

    /// The PAE example from the DSSE v1 specification (protocol.md).
    #[test]
    fn pae_matches_dsse_spec_example() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn root_digest_is_over_raw_digests_in_order() {
        let a = Resource {
            name: "a".into(),
            algorithm: "sha256".into(),
            digest: "11".repeat(32),
        };
        let b = Resource {
            name: "b".into(),
            algorithm: "sha256".into(),
            digest: "22".repeat(32),
        };
        let mut raw = vec![0x11_u8; 32];
        raw.extend([0x22_u8; 32]);
        assert_eq!(
            root_digest(&[a.clone(), b.clone()]).unwrap(),
            hex::encode(crate::hashing::sha256_bytes(&raw))
        );
        assert_ne!(root_digest(&[a.clone(), b.clone()]), root_digest(&[b, a]));
    }

    #[test]
    fn statement_round_trips() {
        let resources = vec![Resource {
            name: "w.bin".into(),
            algorithm: "sha256".into(),
            digest: "ab".repeat(32),
        }];
        let json = statement_json("m", &resources, &[".git".to_owned()]).unwrap();
        let parsed = parse_statement(json.as_bytes()).unwrap();
        assert_eq!(parsed.model_name, "m");
        assert_eq!(parsed.resources, resources);
        assert_eq!(parsed.ignore_paths, vec![".git".to_owned()]);
        assert_eq!(Some(parsed.root_digest), root_digest(&resources));
    }

    #[test]
    fn parse_statement_rejects_shape_errors_without_panicking() {
        for payload in [
            &b""[..],
            b"null",
            b"[]",
            b"{\"_type\":\"https://in-toto.io/Statement/v1\"}",
            b"{\"_type\":\"https://in-toto.io/Statement/v1\",\"predicateType\":\"https://model_signing/signature/v1.0\",\"subject\":[]}",
            b"{\"_type\":\"https://in-toto.io/Statement/v1\",\"predicateType\":\"https://model_signing/Digests/v0.1\"}",
        ] {
            assert!(parse_statement(payload).is_err());
        }
    }
}
