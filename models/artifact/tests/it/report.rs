//! Rendering: exact text lines, JSON summary, and SARIF 2.1.0 structure (the required fields
//! of the OASIS schema, level mapping, rule table consistency, URIs and regions).
//!
//! Set `GAUNTLET_SARIF_OUT=/some/file.sarif` to also write the SARIF of a scan of every fixture
//! there, for validation against the official schema by
//! `tests/fixtures/sarif/validate_sarif.py` (see tests/fixtures/sarif/README.md).

use std::path::PathBuf;

use gauntlet_artifact::report::{render_text, sarif_level, to_json, to_sarif};
use gauntlet_artifact::scan::FileKind;
use gauntlet_artifact::walk::{scan_paths, ScanReport, ScannedFile};
use gauntlet_artifact::{Finding, Location, RuleId, Severity};
use serde_json::Value;

fn finding(severity: Severity, rule: RuleId, message: &str, location: Location) -> Finding {
    Finding {
        severity,
        rule,
        message: message.to_string(),
        location,
    }
}

fn sample() -> ScanReport {
    ScanReport {
        files: vec![
            ScannedFile {
                path: "models/model.pt".to_string(),
                kind: FileKind::Zip,
                size: 1234,
            },
            ScannedFile {
                path: "models/w eights.safetensors".to_string(),
                kind: FileKind::Safetensors,
                size: 99,
            },
        ],
        findings: vec![
            finding(
                Severity::Critical,
                RuleId::PickleDangerousGlobal,
                "calls os.system",
                Location {
                    file: "models/model.pt".to_string(),
                    member: Some("archive/data.pkl".to_string()),
                    offset: Some(17),
                    opcode_index: Some(4),
                    ..Location::default()
                },
            ),
            finding(
                Severity::High,
                RuleId::SafetensorsOverlap,
                "tensors overlap",
                Location {
                    file: "models/w eights.safetensors".to_string(),
                    offset: Some(80),
                    tensor: Some("b".to_string()),
                    ..Location::default()
                },
            ),
            finding(
                Severity::Info,
                RuleId::OnnxExternalData,
                "reads other files",
                Location {
                    file: "models/model.pt".to_string(),
                    ..Location::default()
                },
            ),
        ],
    }
}

#[test]
fn text_has_one_line_per_finding_and_a_summary() {
    let text = render_text(&sample());
    assert_eq!(
        text,
        "CRITICAL models/model.pt!/archive/data.pkl @17 #4: calls os.system [pickle-dangerous-global]\n\
         HIGH     models/w eights.safetensors @80 tensor `b`: tensors overlap [safetensors-overlap]\n\
         INFO     models/model.pt: reads other files [onnx-external-data]\n\
         2 files scanned: 1 critical, 1 high, 1 info\n"
    );
    assert_eq!(
        render_text(&ScanReport::default()),
        "0 files scanned: no findings\n"
    );
}

#[test]
fn json_has_files_findings_and_a_summary() {
    let json = to_json(&sample());
    assert_eq!(json["summary"]["files"], 2);
    assert_eq!(json["summary"]["findings"], 3);
    assert_eq!(json["summary"]["max_severity"], "critical");
    assert_eq!(json["summary"]["by_severity"]["high"], 1);
    assert_eq!(json["summary"]["by_severity"]["medium"], 0);
    assert_eq!(json["files"][1]["kind"], "safetensors");
    assert_eq!(json["findings"][0]["location"]["opcode_index"], 4);
    // Round trip: the findings deserialize back to what was rendered.
    let back: Vec<Finding> = serde_json::from_value(json["findings"].clone()).unwrap();
    assert_eq!(back, sample().findings);
    assert_eq!(
        to_json(&ScanReport::default())["summary"]["max_severity"],
        Value::Null
    );
}

/// The SARIF 2.1.0 schema's required properties and enumerations, checked by hand.
fn assert_structurally_valid_sarif(sarif: &Value, report: &ScanReport) {
    assert_eq!(
        sarif["$schema"],
        "https://json.schemastore.org/sarif-2.1.0.json"
    );
    assert_eq!(sarif["version"], "2.1.0");
    let runs = sarif["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let driver = &runs[0]["tool"]["driver"];
    assert_eq!(driver["name"], "gauntlet");
    assert!(driver.get("informationUri").is_none());
    for rule in driver["rules"].as_array().unwrap() {
        assert!(
            rule.get("name").is_none(),
            "name must differ from id or be absent"
        );
    }
    let rules = driver["rules"].as_array().unwrap();
    let rule_ids: Vec<&str> = rules
        .iter()
        .map(|rule| rule["id"].as_str().unwrap())
        .collect();
    let mut sorted = rule_ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(rule_ids, sorted, "rule ids are unique and sorted");
    for rule in rules {
        // Every rule object comes from the registry, with its documentation and default level.
        let id: RuleId = rule["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(rule["shortDescription"]["text"], id.summary());
        assert_eq!(rule["fullDescription"]["text"], id.help());
        assert_eq!(rule["help"]["text"], id.help());
        assert_eq!(
            rule["defaultConfiguration"]["level"],
            sarif_level(id.default_severity())
        );
        assert_eq!(rule["properties"]["tags"][0], id.group().tag());
    }
    let results = runs[0]["results"].as_array().unwrap();
    assert_eq!(results.len(), report.findings.len());
    for (result, finding) in results.iter().zip(&report.findings) {
        let rule_id = result["ruleId"].as_str().unwrap();
        assert_eq!(rule_id, finding.rule.as_str());
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rule_ids[index], rule_id);
        let level = result["level"].as_str().unwrap();
        let expected = match finding.severity {
            Severity::Critical | Severity::High => "error",
            Severity::Medium => "warning",
            Severity::Low | Severity::Info => "note",
        };
        assert_eq!(level, expected);
        assert!(!result["message"]["text"].as_str().unwrap().is_empty());
        assert_eq!(
            result["properties"]["severity"],
            finding.severity.to_string()
        );
        let physical = &result["locations"][0]["physicalLocation"];
        let uri = physical["artifactLocation"]["uri"].as_str().unwrap();
        assert!(!uri.contains('\\') && !uri.contains(' '), "{uri}");
        let size = report
            .files
            .iter()
            .find(|file| file.path == finding.location.file)
            .map(|file| file.size);
        match (&finding.location.member, finding.location.offset, size) {
            (None, Some(offset), _) => assert_eq!(physical["region"]["byteOffset"], offset),
            (_, _, Some(size)) => {
                assert_eq!(physical["region"]["byteOffset"], 0);
                assert_eq!(physical["region"]["byteLength"], size);
            }
            _ => assert!(physical.get("region").is_none()),
        }
    }
    for artifact in runs[0]["artifacts"].as_array().unwrap() {
        assert!(artifact["location"]["uri"].is_string());
        assert!(artifact["length"].as_u64().is_some());
    }
}

#[test]
fn sarif_has_the_required_structure() {
    let report = sample();
    let sarif = to_sarif(&report);
    assert_structurally_valid_sarif(&sarif, &report);
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    // A finding inside a zip member keeps its member and offset in properties, not a region.
    assert_eq!(results[0]["properties"]["member"], "archive/data.pkl");
    assert_eq!(results[0]["properties"]["memberOffset"], 17);
    assert_eq!(results[0]["properties"]["opcodeIndex"], 4);
    let region = &results[0]["locations"][0]["physicalLocation"]["region"];
    assert_eq!(
        region["byteLength"], 1234,
        "a member finding spans its container: {region}"
    );
    assert_eq!(
        results[1]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "models/w%20eights.safetensors"
    );
    assert_eq!(results[1]["properties"]["tensor"], "b");
}

#[test]
fn sarif_of_every_fixture_is_structurally_valid() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let report = scan_paths(&[fixtures]).unwrap();
    assert!(report.files.len() >= 20);
    let sarif = to_sarif(&report);
    assert_structurally_valid_sarif(&sarif, &report);
    if let Some(out) = std::env::var_os("GAUNTLET_SARIF_OUT") {
        std::fs::write(out, serde_json::to_string_pretty(&sarif).unwrap()).unwrap();
    }
}
