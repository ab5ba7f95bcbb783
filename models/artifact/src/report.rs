//! Rendering a [`ScanReport`]: one line per finding for people, JSON for scripts, and SARIF 2.1.0
//! for code-scanning dashboards (GitHub code scanning, Azure DevOps, VS Code's SARIF viewer).
//!
//! SARIF locates a result by an artifact URI and a region; a finding inside a container member
//! (`model.pt!/archive/data.pkl`) has no byte offset *in the file*, so for those the region is
//! left out and the member, offset, opcode index and tensor go into the result's `properties`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::walk::ScanReport;
use crate::{Finding, Location, Rule, RuleId, Severity};

/// The SARIF schema this output follows.
pub const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// Where a finding is, as one short string: `file[!/member] [@offset] [#opcode] [tensor `name`]`.
pub fn describe_location(location: &Location) -> String {
    let mut text = if location.file.is_empty() {
        "<input>".to_string()
    } else {
        location.file.clone()
    };
    if let Some(member) = &location.member {
        let _ = write!(text, "!/{member}");
    }
    if let Some(offset) = location.offset {
        let _ = write!(text, " @{offset}");
    }
    if let Some(opcode_index) = location.opcode_index {
        let _ = write!(text, " #{opcode_index}");
    }
    if let Some(tensor) = &location.tensor {
        let _ = write!(text, " tensor `{}`", tensor.escape_debug());
    }
    text
}

/// One line per finding, `SEVERITY location: message [rule]`, then a summary line.
pub fn render_text(report: &ScanReport) -> String {
    let mut text = String::new();
    for finding in &report.findings {
        let _ = writeln!(
            text,
            "{:<8} {}: {} [{}]",
            finding.severity.to_string().to_uppercase(),
            describe_location(&finding.location),
            finding.message,
            finding.rule
        );
    }
    text.push_str(&summary_line(report));
    text.push('\n');
    text
}

/// `3 files scanned: 1 critical, 2 medium` or `3 files scanned: no findings`.
pub fn summary_line(report: &ScanReport) -> String {
    let files = report.files.len();
    let noun = if files == 1 { "file" } else { "files" };
    let counts = report.counts();
    let names = ["info", "low", "medium", "high", "critical"];
    let parts: Vec<String> = counts
        .iter()
        .zip(names)
        .rev()
        .filter(|(count, _)| **count > 0)
        .map(|(count, name)| format!("{count} {name}"))
        .collect();
    if parts.is_empty() {
        format!("{files} {noun} scanned: no findings")
    } else {
        format!("{files} {noun} scanned: {}", parts.join(", "))
    }
}

/// The report as JSON: `{ files, findings, summary: { files, findings, by_severity,
/// max_severity } }`. Field names are stable; findings keep walk order.
pub fn to_json(report: &ScanReport) -> Value {
    let counts = report.counts();
    json!({
        "files": report.files,
        "findings": report.findings,
        "summary": {
            "files": report.files.len(),
            "findings": report.findings.len(),
            "by_severity": {
                "critical": counts[4],
                "high": counts[3],
                "medium": counts[2],
                "low": counts[1],
                "info": counts[0],
            },
            "max_severity": report.max_severity(),
        },
    })
}

/// The SARIF `level` for a severity: critical and high are errors, medium a warning, the rest
/// notes.
pub fn sarif_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// A file path as a SARIF artifact URI: relative paths stay relative with forward slashes,
/// absolute ones become `file://` URIs; characters outside RFC 3986's unreserved set and `/` are
/// percent-encoded.
pub fn path_to_uri(path: &str) -> String {
    let forward = path.replace('\\', "/");
    let bytes = forward.as_bytes();
    let is_drive = bytes.len() >= 2
        && bytes.first().is_some_and(u8::is_ascii_alphabetic)
        && bytes.get(1) == Some(&b':');
    let relative = forward.strip_prefix("./").unwrap_or(&forward);
    let mut uri = String::new();
    if forward.starts_with('/') {
        uri.push_str("file://");
    } else if is_drive {
        uri.push_str("file:///");
    }
    for (index, byte) in relative.bytes().enumerate() {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/')
            || (is_drive && index == 1 && byte == b':');
        if keep {
            uri.push(char::from(byte));
        } else {
            let _ = write!(uri, "%{byte:02X}");
        }
    }
    uri
}

/// A registry rule as a SARIF `reportingDescriptor`. `defaultConfiguration.level` comes from the
/// rule's default severity; each result still carries its own level. The five-step severity,
/// which SARIF's three levels flatten, is kept in `properties.severity` as on results.
fn sarif_rule(rule: &Rule) -> Value {
    // No `name`: SARIF wants it to differ from the opaque `id` or be absent.
    json!({
        "id": rule.id.as_str(),
        "shortDescription": { "text": rule.summary },
        "fullDescription": { "text": rule.help },
        "help": { "text": rule.help },
        "defaultConfiguration": { "level": sarif_level(rule.default_severity) },
        "properties": {
            "severity": rule.default_severity,
            "tags": [rule.group.tag()],
        },
    })
}

/// The report as a SARIF 2.1.0 log with one run.
pub fn to_sarif(report: &ScanReport) -> Value {
    // The rules the results refer to, sorted by id string, described from the registry.
    let rules: BTreeMap<&str, RuleId> = report
        .findings
        .iter()
        .map(|finding| (finding.rule.as_str(), finding.rule))
        .collect();
    let rule_index: BTreeMap<RuleId, usize> = rules
        .values()
        .enumerate()
        .map(|(index, rule)| (*rule, index))
        .collect();
    let rule_objects: Vec<Value> = rules.values().map(|rule| sarif_rule(rule.rule())).collect();
    let sizes: BTreeMap<&str, u64> = report
        .files
        .iter()
        .map(|file| (file.path.as_str(), file.size))
        .collect();
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|finding| {
            let rule = rule_index.get(&finding.rule).copied();
            let size = sizes.get(finding.location.file.as_str()).copied();
            sarif_result(finding, rule, size)
        })
        .collect();
    let artifacts: Vec<Value> = report
        .files
        .iter()
        .map(|file| {
            json!({
                "location": { "uri": path_to_uri(&file.path) },
                "length": file.size,
                "properties": { "kind": file.kind },
            })
        })
        .collect();
    json!({
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "gauntlet",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rule_objects,
                }
            },
            "artifacts": artifacts,
            "results": results,
        }],
    })
}

/// One SARIF result. `file_size` (when the file was scanned) gives findings about the whole
/// file, or about a member inside it, a region spanning the file, as SARIF consumers expect
/// every location to have a region.
fn sarif_result(finding: &Finding, rule_index: Option<usize>, file_size: Option<u64>) -> Value {
    let location = &finding.location;
    let mut properties = serde_json::Map::new();
    properties.insert("severity".to_string(), json!(finding.severity));
    if let Some(member) = &location.member {
        properties.insert("member".to_string(), json!(member));
        if let Some(offset) = location.offset {
            properties.insert("memberOffset".to_string(), json!(offset));
        }
    }
    if let Some(opcode_index) = location.opcode_index {
        properties.insert("opcodeIndex".to_string(), json!(opcode_index));
    }
    if let Some(tensor) = &location.tensor {
        properties.insert("tensor".to_string(), json!(tensor));
    }

    let mut result = serde_json::Map::new();
    result.insert("ruleId".to_string(), json!(finding.rule.as_str()));
    if let Some(index) = rule_index {
        result.insert("ruleIndex".to_string(), json!(index));
    }
    result.insert("level".to_string(), json!(sarif_level(finding.severity)));
    result.insert("message".to_string(), json!({ "text": finding.message }));
    if !location.file.is_empty() {
        let mut physical = serde_json::Map::new();
        physical.insert(
            "artifactLocation".to_string(),
            json!({ "uri": path_to_uri(&location.file) }),
        );
        // A byte offset inside a member is not an offset in the file: it stays in properties,
        // and the region is the whole container.
        match (&location.member, location.offset, file_size) {
            (None, Some(offset), _) => {
                physical.insert("region".to_string(), json!({ "byteOffset": offset }));
            }
            (_, _, Some(size)) => {
                physical.insert(
                    "region".to_string(),
                    json!({ "byteOffset": 0, "byteLength": size }),
                );
            }
            _ => {}
        }
        result.insert(
            "locations".to_string(),
            json!([{ "physicalLocation": physical }]),
        );
    }
    result.insert("properties".to_string(), Value::Object(properties));
    Value::Object(result)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn uris_are_relative_forward_slashed_and_encoded() {
        assert_eq!(path_to_uri("models/a b.pt"), "models/a%20b.pt");
        assert_eq!(path_to_uri("./models\\x.onnx"), "models/x.onnx");
        assert_eq!(path_to_uri("/tmp/m.pt"), "file:///tmp/m.pt");
        assert_eq!(path_to_uri("C:\\m\\x.pt"), "file:///C:/m/x.pt");
        assert_eq!(path_to_uri("caf\u{e9}#1"), "caf%C3%A9%231");
    }

    #[test]
    fn levels_follow_severity() {
        assert_eq!(sarif_level(Severity::Critical), "error");
        assert_eq!(sarif_level(Severity::High), "error");
        assert_eq!(sarif_level(Severity::Medium), "warning");
        assert_eq!(sarif_level(Severity::Low), "note");
        assert_eq!(sarif_level(Severity::Info), "note");
    }
}
