//! Keras models: the `config.json` of a Keras 3 `.keras` archive, and the `model_config`
//! attribute of a legacy HDF5 (`.h5`) model.
//!
//! Loading a Keras model rebuilds every layer from its config, and two things in a config run
//! code: a `Lambda` layer (a Python function stored as marshalled bytecode or source) and a
//! reference to a class or function outside Keras (`module`, `registered_name`), which is
//! imported and called. Both are findings.
//!
//! HDF5 is not parsed: the scanner searches the file for the JSON objects Keras writes
//! (`{"class_name": …}`) and checks every one it finds, decoys included. A file that names a
//! `model_config` but holds no config the scanner can read cannot be verified and is `high`;
//! an HDF5 file without one holds weights or data only, which loading does not execute.

use crate::{Finding, Location, RuleId, Severity};

const HDF5_SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";
/// Most config objects checked in one HDF5 file.
const MAX_CONFIGS: usize = 64;
/// Most findings of one rule reported per config.
const MAX_REPORTED: usize = 16;

/// Whether `bytes` is an HDF5 file (superblock at offset 0, or after a user block of 512,
/// 1024, 2048 … bytes).
pub fn looks_like_hdf5(bytes: &[u8]) -> bool {
    if bytes.starts_with(HDF5_SIGNATURE) {
        return true;
    }
    let mut at = 512usize;
    while at < bytes.len().min(1 << 20) {
        if bytes.get(at..at + 8) == Some(HDF5_SIGNATURE.as_slice()) {
            return true;
        }
        at *= 2;
    }
    false
}

/// Module prefixes a Keras config may reference without a finding.
const KERAS_MODULES: &[&str] = &[
    "keras",
    "keras_nlp",
    "keras_hub",
    "keras_cv",
    "tf_keras",
    "tensorflow.keras",
    "tensorflow.python.keras",
];

fn is_keras_module(module: &str) -> bool {
    KERAS_MODULES.iter().any(|prefix| {
        module == *prefix
            || module
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// Check one parsed Keras config; findings are located at `location`.
pub fn check_config(config: &serde_json::Value, location: &Location) -> Vec<Finding> {
    let mut lambdas = Vec::new();
    let mut modules = Vec::new();
    let mut stack = vec![(config, String::new(), false)];
    while let Some((value, path, in_lambda)) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                let class_name = map.get("class_name").and_then(|v| v.as_str());
                let name = map
                    .get("config")
                    .and_then(|c| c.get("name"))
                    .and_then(|n| n.as_str())
                    .unwrap_or("");
                let lambda = class_name
                    .is_some_and(|class| class == "Lambda" || class.ends_with(">Lambda"))
                    || map.contains_key("function_type");
                if lambda && !in_lambda {
                    lambdas.push(if name.is_empty() {
                        path.clone()
                    } else {
                        name.to_string()
                    });
                }
                if let Some(module) = map.get("module").and_then(|v| v.as_str()) {
                    if !is_keras_module(module) {
                        modules.push(format!("{module}.{}", class_name.unwrap_or("?")));
                    }
                }
                if let Some(registered) = map.get("registered_name").and_then(|v| v.as_str()) {
                    if registered.contains('>') && !registered.starts_with("keras") {
                        modules.push(registered.to_string());
                    }
                }
                for (key, child) in map {
                    stack.push((child, format!("{path}/{key}"), in_lambda || lambda));
                }
            }
            serde_json::Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    stack.push((child, format!("{path}/{index}"), in_lambda));
                }
            }
            _ => {}
        }
    }
    let mut findings = Vec::new();
    for layer in lambdas.iter().take(MAX_REPORTED) {
        let mut location = location.clone();
        location.tensor = Some(layer.clone());
        findings.push(Finding {
            severity: Severity::Critical,
            rule: RuleId::KerasLambda,
            message: "a Lambda layer: its Python function (marshalled bytecode or source) is \
                      rebuilt and run when the model loads"
                .to_string(),
            location,
        });
    }
    for reference in modules.iter().take(MAX_REPORTED) {
        findings.push(Finding {
            severity: Severity::High,
            rule: RuleId::KerasUnknownModule,
            message: format!(
                "the config references `{}` outside Keras: loading imports that module and \
                 calls it",
                reference.escape_debug()
            ),
            location: location.clone(),
        });
    }
    findings
}

/// Scan the `config.json` (or `metadata.json`) of a `.keras` archive.
pub fn scan_keras_json(bytes: &[u8], location: &Location) -> Vec<Finding> {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(config) => check_config(&config, location),
        Err(error) => vec![Finding {
            severity: Severity::High,
            rule: RuleId::KerasMalformed,
            message: format!(
                "cannot verify: the Keras config is not JSON ({error}); Lambda layers and custom \
                 objects could not be checked"
            ),
            location: location.clone(),
        }],
    }
}

/// The end of the JSON object starting at `start` (a `{`), with strings and escapes respected.
fn object_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (index, &byte) in bytes.get(start..)?.iter().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(start + index + 1);
                }
            }
            0 => return None,
            _ => {}
        }
    }
    None
}

fn find_all<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(move |(_, window)| *window == needle)
        .map(|(index, _)| index)
}

/// Scan an HDF5 file for Keras model configs.
pub fn scan_hdf5(bytes: &[u8], location: &Location) -> Vec<Finding> {
    let names_config = find_all(bytes, b"model_config").next().is_some()
        || find_all(bytes, b"training_config").next().is_some();
    let mut findings = Vec::new();
    let mut parsed = 0usize;
    let mut unreadable = 0usize;
    let starts: Vec<usize> = find_all(bytes, b"{\"class_name\"")
        .chain(find_all(bytes, b"{\"module\""))
        .take(MAX_CONFIGS * 4)
        .collect();
    let mut covered_until = 0usize;
    let mut sorted = starts;
    sorted.sort_unstable();
    for start in sorted {
        if start < covered_until {
            continue; // inside an object already checked
        }
        if parsed >= MAX_CONFIGS {
            break;
        }
        let Some(end) = object_end(bytes, start) else {
            unreadable += 1;
            continue;
        };
        match serde_json::from_slice::<serde_json::Value>(bytes.get(start..end).unwrap_or(&[])) {
            Ok(config) => {
                parsed += 1;
                covered_until = end;
                let mut config_location = location.clone();
                config_location.offset = Some(start as u64);
                findings.extend(check_config(&config, &config_location));
            }
            Err(_) => unreadable += 1,
        }
    }
    if names_config && (parsed == 0 || unreadable > 0) {
        findings.push(Finding {
            severity: Severity::High,
            rule: RuleId::KerasMalformed,
            message: format!(
                "cannot verify: the HDF5 file names a Keras model config, but {} (gauntlet does \
                 not parse HDF5; it searches for the config JSON); Lambda layers and custom \
                 objects could not be ruled out",
                if parsed == 0 {
                    "no readable config JSON was found".to_string()
                } else {
                    format!("{unreadable} config-like JSON fragments could not be read")
                }
            ),
            location: location.clone(),
        });
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_and_foreign_modules_are_found() {
        let config: serde_json::Value = serde_json::from_str(
            r#"{"module": "keras", "class_name": "Functional", "config": {"layers": [
                {"module": "keras.layers", "class_name": "Lambda", "config": {"name": "evil",
                 "function": {"class_name": "__lambda__", "config": {"code": "4wEA"}}}},
                {"module": "my_pkg.layers", "class_name": "Custom", "config": {"name": "c"},
                 "registered_name": "my_pkg>Custom"},
                {"module": "keras.layers", "class_name": "Dense", "config": {"name": "d"}}
            ]}}"#,
        )
        .unwrap_or_default();
        let findings = check_config(&config, &Location::default());
        let rules: Vec<RuleId> = findings.iter().map(|f| f.rule).collect();
        assert!(rules.contains(&RuleId::KerasLambda), "{findings:?}");
        assert!(rules.contains(&RuleId::KerasUnknownModule), "{findings:?}");
    }

    #[test]
    fn hdf5_configs_are_found_by_search() {
        let mut file = HDF5_SIGNATURE.to_vec();
        file.extend(b"\0\0model_config\0\0");
        file.extend(br#"{"class_name": "Sequential", "config": {"layers": [{"class_name": "Lambda", "config": {"name": "l", "function_type": "lambda"}}]}}"#);
        let findings = scan_hdf5(&file, &Location::default());
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].rule, RuleId::KerasLambda);
        let mut hidden = HDF5_SIGNATURE.to_vec();
        hidden.extend(b"\0model_config\0{\"class_na\0me\"");
        assert_eq!(
            scan_hdf5(&hidden, &Location::default())[0].rule,
            RuleId::KerasMalformed
        );
        assert!(scan_hdf5(HDF5_SIGNATURE, &Location::default()).is_empty());
    }
}
