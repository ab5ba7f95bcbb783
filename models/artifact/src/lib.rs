//! Static checks of model artifacts: is the file what it claims, and would loading it run
//! someone else's code?
//!
//! Nothing here executes, imports or deserialises code from a scanned file. Scanners identify a
//! file by its content (magic bytes and structure), never by its extension, and report what they
//! find as [`Finding`]s: data, not errors. An error means the file could not be read at all.

mod error;
mod finding;

pub use error::ArtifactError;
pub use finding::{Finding, Location, Severity};
pub mod scan;

// The registry of every rule a finding can carry.
pub mod rules;
pub use rules::{rules_markdown, Rule, RuleGroup, RuleId, UnknownRule, RULES};

// Format scanners, each `pub fn looks_like(&[u8]) -> bool` (where detection needs structure)
// and `pub fn scan(&[u8], &Location) -> Vec<Finding>`.
pub mod compressed;
pub mod gguf;
pub mod jinja;
pub mod keras;
pub mod npy;
pub mod onnx;
pub mod pickle;
pub mod safetensors;
pub mod tar;
pub mod zip;

// Whether a hub model id is the one the team meant (typosquatting).
pub mod model_id;

// Walking user-named paths and rendering what was found.
pub mod report;
pub mod walk;

// Integrity: streaming hashes, SHA-256 manifests and model-signing signatures.
pub mod hashing;
pub mod manifest;
pub mod signing;
