//! Keras models: the `config.json` of a Keras 3 `.keras` archive, and the `model_config`
//! attribute of a legacy HDF5 (`.h5`) model.
//!
//! Loading a Keras model rebuilds every layer from its config, and two things in a config run
//! code: a `Lambda` layer (a Python function stored as marshalled bytecode or source) and a
//! reference to a class or function outside Keras (`module`, `registered_name`), which is
//! imported and called. Both are findings.
//!
//! HDF5 is not parsed: the scanner searches the file for every JSON object (Keras writes the
//! config as a plain string attribute) and checks every one it finds, decoys included. A file that names a
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

/// Most `{"` positions tried as the start of a JSON object in one HDF5 file: weights are binary,
/// and the byte pair turns up by chance about once per 64 KiB of them.
const MAX_OBJECT_ATTEMPTS: usize = 1 << 16;

/// Keys that open (after decoding, so `"class\u005fname"` counts) a Keras config object:
/// an object starting with one of them that does not parse is a config the scanner could not
/// read.
const CONFIG_KEYS: &[&str] = &[
    "class_name",
    "module",
    "config",
    "registered_name",
    "build_config",
    "compile_config",
    "layers",
];

/// Strings that mark code in a Keras config (a Lambda layer and its marshalled function). Any
/// of them outside every config the scanner read means a config it did not see.
const CODE_TOKENS: &[&[u8]] = &[b"Lambda", b"__lambda__", b"function_type", b"marshal"];

fn find_all<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(move |(_, window)| *window == needle)
        .map(|(index, _)| index)
}

fn skip_json_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while bytes
        .get(at)
        .is_some_and(|byte| matches!(byte, b' ' | b'\t' | b'\n' | b'\r'))
    {
        at += 1;
    }
    at
}

/// The first key of the object starting at `start` (a `{`), decoded as `json.loads` decodes it.
fn first_key(bytes: &[u8], start: usize) -> Option<String> {
    let at = skip_json_whitespace(bytes, start + 1);
    let mut keys = serde_json::Deserializer::from_slice(bytes.get(at..)?).into_iter::<String>();
    keys.next()?.ok()
}

/// A JSON object parsed at `start`: the value and the offset after it.
fn object_at(bytes: &[u8], start: usize) -> Option<(serde_json::Value, usize)> {
    let mut values =
        serde_json::Deserializer::from_slice(bytes.get(start..)?).into_iter::<serde_json::Value>();
    let value = values.next()?.ok()?;
    value
        .is_object()
        .then(|| (value, start + values.byte_offset()))
}

/// Scan an HDF5 file for Keras model configs.
///
/// HDF5 is not parsed: `model_config` is a string attribute Keras reads with `json.loads`, and
/// attribute strings sit in the file as plain bytes. Every `{` followed by a string key is tried
/// as a JSON object (key order, whitespace and escapes as `json.loads` accepts them); each object
/// found is checked. Objects that open with a Keras config key and do not parse, and the code
/// markers of a Lambda layer (`Lambda`, `__lambda__`, `function_type`, `marshal`) anywhere outside
/// the objects read, mean a config the scanner did not see: `high`, cannot verify, whatever
/// decoys did parse.
pub fn scan_hdf5(bytes: &[u8], location: &Location) -> Vec<Finding> {
    let names_config = find_all(bytes, b"model_config").next().is_some()
        || find_all(bytes, b"training_config").next().is_some();
    let mut findings = Vec::new();
    let mut parsed = 0usize;
    let mut unreadable = 0usize;
    let mut attempts = 0usize;
    let mut read_spans: Vec<(usize, usize)> = Vec::new();
    let mut covered_until = 0usize;
    for start in find_all(bytes, b"{") {
        if start < covered_until {
            continue; // inside an object already checked
        }
        let key_at = skip_json_whitespace(bytes, start + 1);
        if bytes.get(key_at) != Some(&b'"') {
            continue;
        }
        attempts += 1;
        if attempts > MAX_OBJECT_ATTEMPTS || parsed >= MAX_CONFIGS {
            unreadable += 1;
            break;
        }
        match object_at(bytes, start) {
            Some((config, end)) => {
                parsed += 1;
                covered_until = end;
                read_spans.push((start, end));
                let mut config_location = location.clone();
                config_location.offset = Some(start as u64);
                findings.extend(check_config(&config, &config_location));
            }
            None => {
                if first_key(bytes, start).is_some_and(|key| CONFIG_KEYS.contains(&key.as_str())) {
                    unreadable += 1;
                }
            }
        }
    }
    let stray: Vec<String> = CODE_TOKENS
        .iter()
        .filter(|token| {
            find_all(bytes, token).any(|at| {
                !read_spans
                    .iter()
                    .any(|&(start, end)| start <= at && at + token.len() <= end)
            })
        })
        .map(|token| String::from_utf8_lossy(token).into_owned())
        .collect();
    if names_config && (parsed == 0 || unreadable > 0 || !stray.is_empty()) {
        let why = if parsed == 0 {
            "no readable config JSON was found".to_string()
        } else if unreadable > 0 {
            format!("{unreadable} config-like JSON objects could not be read")
        } else {
            format!(
                "it mentions {} outside every config JSON the scanner read",
                stray.join(", ")
            )
        };
        findings.push(Finding {
            severity: Severity::High,
            rule: RuleId::KerasMalformed,
            message: format!(
                "cannot verify: the HDF5 file names a Keras model config, but {why} (gauntlet \
                 does not parse HDF5; it searches for the config JSON); Lambda layers and custom \
                 objects could not be ruled out"
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

    #[test]
    fn code_markers_outside_every_read_config_cannot_be_verified() {
        let mut file = HDF5_SIGNATURE.to_vec();
        file.extend(br#"{"class_name": "Dense", "config": {"name": "d"}}"#);
        file.extend(b"\0model_config\0");
        let clean = scan_hdf5(&file, &Location::default());
        assert!(clean.is_empty(), "{clean:?}");
        // A marshalled function outside the decoy, in bytes no JSON reading reaches.
        file.extend(b"\0\x01__lambda__\x02");
        let findings = scan_hdf5(&file, &Location::default());
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].rule, RuleId::KerasMalformed);
        assert!(findings[0].message.contains("__lambda__"), "{findings:?}");
        // A config-like object that does not parse (its first key decodes to `module`).
        let mut broken = HDF5_SIGNATURE.to_vec();
        broken.extend(br#"{"class_name": "Dense"} model_config {"mod\u0075le": "x", ]"#);
        let findings = scan_hdf5(&broken, &Location::default());
        assert!(
            findings.iter().any(
                |f| f.rule == RuleId::KerasMalformed && f.message.contains("could not be read")
            ),
            "{findings:?}"
        );
    }
}
