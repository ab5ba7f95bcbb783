//! PEM keys and the raw signature primitives.
//!
//! model-signing's key mode signs with `cryptography`'s `private_key.sign(data, ECDSA(hash))`:
//! ECDSA over the whole message with the curve's matching hash (P-256 → SHA-256, P-384 →
//! SHA-384), the signature DER-encoded (`SEQUENCE { r INTEGER, s INTEGER }`). We do exactly that
//! (RFC 6979 deterministic nonces; verifiers cannot tell the difference). Ed25519 is a gauntlet
//! extra: model-signing 1.1.1 refuses non-EC keys, so an Ed25519 signature verifies only here.

use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePublicKey as _};
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::pkcs8::LineEnding;

use super::SigningError;
use crate::hashing::sha256_bytes;

/// The signature algorithms gauntlet signs and verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 with SHA-256 (model-signing compatible).
    EcdsaP256Sha256,
    /// ECDSA on NIST P-384 with SHA-384 (model-signing compatible).
    EcdsaP384Sha384,
    /// Ed25519 (gauntlet only; model-signing's key mode takes EC keys alone).
    Ed25519,
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::EcdsaP256Sha256 => "ECDSA P-256 / SHA-256",
            Self::EcdsaP384Sha384 => "ECDSA P-384 / SHA-384",
            Self::Ed25519 => "Ed25519",
        })
    }
}

/// A private key ready to sign.
pub(crate) enum PrivateKey {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

/// A public key ready to verify.
#[derive(Debug, Clone)]
pub(crate) enum PublicKey {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// The PEM blocks of `text` as (label, whole block text).
fn pem_blocks(text: &str) -> Vec<(&str, &str)> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(begin) = rest.find("-----BEGIN ") {
        let Some(after_begin) = rest.get(begin + "-----BEGIN ".len()..) else {
            break;
        };
        let Some(label_end) = after_begin.find("-----") else {
            break;
        };
        let label = after_begin.get(..label_end).unwrap_or_default();
        let end_marker = format!("-----END {label}-----");
        let Some(end) = rest.get(begin..).and_then(|tail| tail.find(&end_marker)) else {
            break;
        };
        let block_end = begin + end + end_marker.len();
        if let Some(block) = rest.get(begin..block_end) {
            blocks.push((label, block));
        }
        rest = rest.get(block_end..).unwrap_or_default();
    }
    blocks
}

impl PrivateKey {
    /// Parse a PEM private key: PKCS#8 (`PRIVATE KEY`) for P-256, P-384 or Ed25519, or SEC1
    /// (`EC PRIVATE KEY`, what `openssl ecparam -genkey` writes, with or without the
    /// `EC PARAMETERS` block before it) for P-256 or P-384.
    pub(crate) fn from_pem(text: &str) -> Result<Self, SigningError> {
        let invalid = |detail: &str| SigningError::InvalidPrivateKey {
            detail: detail.to_owned(),
        };
        let blocks = pem_blocks(text);
        if blocks.is_empty() {
            return Err(invalid("no PEM block found"));
        }
        for (label, block) in blocks {
            match label {
                "PRIVATE KEY" => {
                    if let Ok(key) = p256::SecretKey::from_pkcs8_pem(block) {
                        return Ok(Self::P256(key.into()));
                    }
                    if let Ok(key) = p384::SecretKey::from_pkcs8_pem(block) {
                        return Ok(Self::P384(key.into()));
                    }
                    if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_pem(block) {
                        return Ok(Self::Ed25519(Box::new(key)));
                    }
                    return Err(invalid(
                        "PKCS#8 key is not P-256, P-384 or Ed25519 (P-521, RSA and others are not supported)",
                    ));
                }
                "EC PRIVATE KEY" => {
                    if let Ok(key) = p256::SecretKey::from_sec1_pem(block) {
                        return Ok(Self::P256(key.into()));
                    }
                    if let Ok(key) = p384::SecretKey::from_sec1_pem(block) {
                        return Ok(Self::P384(key.into()));
                    }
                    return Err(invalid(
                        "SEC1 EC key is not on P-256 or P-384 (P-521 and others are not supported)",
                    ));
                }
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(invalid(
                        "encrypted private keys are not supported; decrypt with `openssl pkey`",
                    ))
                }
                _ => {}
            }
        }
        Err(invalid(
            "no `PRIVATE KEY` or `EC PRIVATE KEY` PEM block (is this a public key?)",
        ))
    }

    pub(crate) fn algorithm(&self) -> KeyAlgorithm {
        match self {
            Self::P256(_) => KeyAlgorithm::EcdsaP256Sha256,
            Self::P384(_) => KeyAlgorithm::EcdsaP384Sha384,
            Self::Ed25519(_) => KeyAlgorithm::Ed25519,
        }
    }

    pub(crate) fn public_key(&self) -> PublicKey {
        match self {
            Self::P256(key) => PublicKey::P256(*key.verifying_key()),
            Self::P384(key) => PublicKey::P384(*key.verifying_key()),
            Self::Ed25519(key) => PublicKey::Ed25519(key.verifying_key()),
        }
    }

    /// Sign `message`: DER-encoded ECDSA with the curve's hash, or a raw 64-byte Ed25519 signature.
    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::P256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(message);
                signature.to_der().as_bytes().to_vec()
            }
            Self::P384(key) => {
                let signature: p384::ecdsa::Signature = key.sign(message);
                signature.to_der().as_bytes().to_vec()
            }
            Self::Ed25519(key) => key.sign(message).to_bytes().to_vec(),
        }
    }
}

impl PublicKey {
    /// Parse a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) for P-256, P-384 or Ed25519.
    pub(crate) fn from_pem(text: &str) -> Result<Self, SigningError> {
        let invalid = |detail: &str| SigningError::InvalidPublicKey {
            detail: detail.to_owned(),
        };
        let Some((_, block)) = pem_blocks(text)
            .into_iter()
            .find(|(label, _)| *label == "PUBLIC KEY")
        else {
            return Err(invalid(
                "no `PUBLIC KEY` PEM block (export one with `openssl ec -in key.pem -pubout`)",
            ));
        };
        if let Ok(key) = p256::PublicKey::from_public_key_pem(block) {
            return Ok(Self::P256(key.into()));
        }
        if let Ok(key) = p384::PublicKey::from_public_key_pem(block) {
            return Ok(Self::P384(key.into()));
        }
        if let Ok(key) = ed25519_dalek::VerifyingKey::from_public_key_pem(block) {
            return Ok(Self::Ed25519(key));
        }
        Err(invalid(
            "public key is not P-256, P-384 or Ed25519 (P-521, RSA and others are not supported)",
        ))
    }

    pub(crate) fn algorithm(&self) -> KeyAlgorithm {
        match self {
            Self::P256(_) => KeyAlgorithm::EcdsaP256Sha256,
            Self::P384(_) => KeyAlgorithm::EcdsaP384Sha384,
            Self::Ed25519(_) => KeyAlgorithm::Ed25519,
        }
    }

    /// DER SubjectPublicKeyInfo (EC points uncompressed, as OpenSSL writes them).
    pub(crate) fn spki_der(&self) -> Result<Vec<u8>, SigningError> {
        let encoded = match self {
            Self::P256(key) => p256::PublicKey::from(key).to_public_key_der(),
            Self::P384(key) => p384::PublicKey::from(key).to_public_key_der(),
            Self::Ed25519(key) => key.to_public_key_der(),
        };
        encoded
            .map(|document| document.as_bytes().to_vec())
            .map_err(|error| SigningError::InvalidPublicKey {
                detail: format!("cannot encode as SubjectPublicKeyInfo: {error}"),
            })
    }

    /// PEM SubjectPublicKeyInfo with LF line ends and 64-column base64, byte for byte what
    /// Python `cryptography`'s `public_bytes(PEM, SubjectPublicKeyInfo)` writes.
    pub(crate) fn spki_pem(&self) -> Result<String, SigningError> {
        let encoded = match self {
            Self::P256(key) => p256::PublicKey::from(key).to_public_key_pem(LineEnding::LF),
            Self::P384(key) => p384::PublicKey::from(key).to_public_key_pem(LineEnding::LF),
            Self::Ed25519(key) => key.to_public_key_pem(LineEnding::LF),
        };
        encoded.map_err(|error| SigningError::InvalidPublicKey {
            detail: format!("cannot encode as PEM: {error}"),
        })
    }

    /// The signer fingerprint gauntlet reports: lowercase hex SHA-256 of the SPKI DER (the
    /// usual "public key pin" form, independent of PEM line wrapping).
    pub(crate) fn fingerprint(&self) -> Result<String, SigningError> {
        Ok(hex::encode(sha256_bytes(&self.spki_der()?)))
    }

    /// The `verificationMaterial.publicKey.hint` model-signing writes and checks: lowercase hex
    /// SHA-256 of the *PEM text* of the SPKI (not of the DER).
    pub(crate) fn model_signing_hint(&self) -> Result<String, SigningError> {
        Ok(hex::encode(sha256_bytes(self.spki_pem()?.as_bytes())))
    }

    /// Check `signature` over `message`. ECDSA signatures must be DER (as model-signing
    /// writes and requires); Ed25519 signatures are the raw 64 bytes.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Self::P256(key) => p256::ecdsa::Signature::from_der(signature)
                .is_ok_and(|signature| key.verify(message, &signature).is_ok()),
            Self::P384(key) => p384::ecdsa::Signature::from_der(signature)
                .is_ok_and(|signature| key.verify(message, &signature).is_ok()),
            Self::Ed25519(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|signature| key.verify_strict(message, &signature).is_ok()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    proptest::proptest! {
        #[test]
        fn key_parsers_never_panic(text in "(-----(BEGIN|END) (EC )?(PUBLIC|PRIVATE) KEY-----\n|[A-Za-z0-9+/=\n]{0,80}){0,6}") {
            let _ = PrivateKey::from_pem(&text);
            let _ = PublicKey::from_pem(&text);
        }
    }

    #[test]
    fn pem_blocks_skip_ec_parameters() {
        let text = "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n\
                    -----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        let blocks = pem_blocks(text);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].0, "EC PARAMETERS");
        assert_eq!(blocks[1].0, "EC PRIVATE KEY");
        assert!(blocks[1].1.ends_with("-----END EC PRIVATE KEY-----"));
    }

    #[test]
    fn pem_blocks_never_panic_on_truncation() {
        for text in [
            "-----BEGIN ",
            "-----BEGIN X",
            "-----BEGIN X-----\nabc",
            "-----BEGIN X-----\n-----END Y-----",
            "",
        ] {
            assert!(pem_blocks(text).is_empty(), "{text:?}");
        }
    }

    #[test]
    fn public_key_in_place_of_private_key_is_a_clear_error() {
        let error =
            PrivateKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
                .err()
                .unwrap();
        assert!(
            error.to_string().contains("is this a public key"),
            "{error}"
        );
    }
}
