use serde::{Deserialize, Serialize};

use crate::RuleId;

/// How bad a finding is. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// The lowest severity `gauntlet scan` fails on unless `--fail-on` says otherwise: high, so
    /// that "cannot verify" and invoked unknown callables fail the gate while medium notes
    /// (a global only named, an unidentified file with no model name) do not.
    pub const DEFAULT_FAIL_ON: Severity = Severity::High;
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        })
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "info" => Ok(Severity::Info),
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            other => Err(format!(
                "unknown severity `{other}`; expected info, low, medium, high or critical"
            )),
        }
    }
}

/// Where inside a file a finding is. Every field is optional; the most specific ones given win.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// The file, as the user named it (or as found under a folder they named).
    pub file: String,
    /// A member of a container (zip member name, nested pickle path), outermost first,
    /// joined with `!/` as in `model.pt!/archive/data.pkl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// Byte offset inside the (innermost) member or file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Index of the pickle opcode, counting from 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opcode_index: Option<u64>,
    /// Tensor name (safetensors) or graph node / initializer name (ONNX).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensor: Option<String>,
}

/// One thing a scanner found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    /// Which rule of the registry ([`crate::RULES`]) this is; serialised as its stable id
    /// string, e.g. `pickle-dangerous-global`, which is also the SARIF rule id.
    pub rule: RuleId,
    /// One human sentence: what was found and why it matters.
    pub message: String,
    pub location: Location,
}
