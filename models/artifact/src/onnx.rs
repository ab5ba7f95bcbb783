//! ONNX: a protobuf `ModelProto`. Loading one runs no Python, but it can still do harm: a
//! tensor's external data `location` is a path the runtime opens relative to the model's folder,
//! so `../../etc/passwd` or `/home/me/.ssh/id_rsa` makes the loader read (and a converter or
//! server echo back) files the model has no business with (CVE-2022-25882, CVE-2024-27318). And
//! nodes in a custom domain need native code that the runtime must find somewhere: a custom op
//! library is code the user has not reviewed.
//!
//! There is no `protoc` here and no generated code: a minimal wire-format reader (varints,
//! length-delimited fields, fixed32/64), bounds-checked at every step, walks only the fields the
//! checks need and skips the rest. Nesting is limited, so a crafted file cannot overflow the
//! stack; malformed protobuf is a finding, never a panic.
//!
//! Field numbers are those of `onnx/onnx.proto` (IR version 10).

use std::collections::{BTreeMap, BTreeSet};

use crate::{Finding, Location, RuleId, Severity};

/// Domains the ONNX standard defines; operators in any other domain need a custom op library.
pub const STANDARD_DOMAINS: [&str; 5] = [
    "",
    "ai.onnx",
    "ai.onnx.ml",
    "ai.onnx.training",
    "ai.onnx.preview.training",
];

/// Graphs nest through node attributes (`If`, `Loop`, `Scan` bodies); real models nest a few
/// levels. Deeper nesting is refused rather than followed, so the stack stays bounded.
const MAX_GRAPH_DEPTH: usize = 32;

/// At most this many findings of one rule are listed per file.
const MAX_FINDINGS_PER_RULE: usize = 50;

/// Whether `bytes` parse as a protobuf `ModelProto`: the top-level fields are well-formed wire
/// format, `ir_version` (field 1) is a varint and `graph` (field 7) is a length-delimited field
/// whose own top-level fields are well-formed. Real exporters always write both.
pub fn looks_like(bytes: &[u8]) -> bool {
    let mut has_ir_version = false;
    let mut has_graph = false;
    let mut reader = Reader::new(bytes, 0);
    loop {
        match reader.next_field() {
            Ok(None) => break,
            Ok(Some(field)) => match (field.number, field.value) {
                (1, Value::Varint(_)) => has_ir_version = true,
                (7, Value::Bytes(graph, base)) => {
                    if !fields_are_well_formed(graph, base) {
                        return false;
                    }
                    has_graph = true;
                }
                (1 | 7, _) => return false,
                _ => {}
            },
            Err(_) => return false,
        }
    }
    has_ir_version && has_graph
}

/// Whether every top-level field of `bytes` is well-formed wire format.
fn fields_are_well_formed(bytes: &[u8], base: u64) -> bool {
    let mut reader = Reader::new(bytes, base);
    loop {
        match reader.next_field() {
            Ok(None) => return true,
            Ok(Some(_)) => {}
            Err(_) => return false,
        }
    }
}

/// Scan an ONNX model held in memory.
pub fn scan(bytes: &[u8], location: &Location) -> Vec<Finding> {
    let mut model = ModelSummary::default();
    let mut findings = Vec::new();
    if let Err(error) = read_model(bytes, &mut model) {
        findings.push(Finding {
            severity: Severity::High,
            rule: RuleId::OnnxMalformed,
            message: format!(
                "the model is not well-formed protobuf ({}); loaders may read it differently \
                 or not at all",
                error.what
            ),
            location: Location {
                offset: Some(error.offset),
                ..location.clone()
            },
        });
    }
    report_external_data(&model, location, &mut findings);
    report_custom_domains(&model, location, &mut findings);
    limit_per_rule(&mut findings, location);
    findings
}

/// The relative external-data locations of a model (those [`scan`] does not already report as
/// absolute, escaping or garbled), for the walk to check on disk: a location reached through a
/// symbolic link, or a file with other hard links, is not the file it appears to be.
pub fn relative_external_locations(bytes: &[u8]) -> Vec<String> {
    let mut model = ModelSummary::default();
    // A wire error is already a finding of `scan`; the references read before it still count.
    let _ = read_model(bytes, &mut model);
    let mut out: Vec<String> = model
        .external
        .iter()
        .filter_map(|reference| reference.location.as_deref())
        .filter(|location| {
            matches!(
                classify_location(location),
                None | Some(LocationProblem::DotDot)
            )
        })
        .filter_map(|location| std::str::from_utf8(location).ok().map(str::to_string))
        .collect();
    out.sort();
    out.dedup();
    out
}

// ---------------------------------------------------------------------------------------------
// Wire format.

/// A malformed-protobuf error: what went wrong and the absolute byte offset where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub what: String,
    pub offset: u64,
}

/// One field's payload. `Bytes` carries the absolute offset of its first byte.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Fixed64,
    Fixed32,
    Bytes(&'a [u8], u64),
}

#[derive(Debug, Clone, Copy)]
struct Field<'a> {
    number: u64,
    /// Absolute offset of the field's tag.
    offset: u64,
    value: Value<'a>,
}

/// A cursor over one message's bytes. `base` is the absolute offset of `bytes[0]` in the file,
/// so errors and findings point into the file, not into a nested slice.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
    base: u64,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], base: u64) -> Self {
        Reader {
            bytes,
            position: 0,
            base,
        }
    }

    fn absolute(&self, position: usize) -> u64 {
        self.base.saturating_add(position as u64)
    }

    fn error(&self, position: usize, what: impl Into<String>) -> WireError {
        WireError {
            what: what.into(),
            offset: self.absolute(position),
        }
    }

    /// A base-128 varint: at most 10 bytes, and the 10th may only carry the top bit of a u64.
    fn varint(&mut self) -> Result<u64, WireError> {
        let start = self.position;
        let mut value = 0u64;
        for index in 0..10u32 {
            let Some(&byte) = self.bytes.get(self.position) else {
                return Err(self.error(start, "a varint runs past the end of its message"));
            };
            self.position += 1;
            if index == 9 && byte > 1 {
                return Err(self.error(start, "a varint is longer than 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error(start, "a varint is longer than 10 bytes"))
    }

    fn take(&mut self, count: u64, what: &str) -> Result<&'a [u8], WireError> {
        let start = self.position;
        let end = usize::try_from(count)
            .ok()
            .and_then(|count| start.checked_add(count))
            .filter(|&end| end <= self.bytes.len());
        match end.and_then(|end| self.bytes.get(start..end).map(|slice| (slice, end))) {
            Some((slice, end)) => {
                self.position = end;
                Ok(slice)
            }
            None => Err(self.error(
                start,
                format!(
                    "{what} claims {count} bytes but only {} remain in its message",
                    self.bytes.len().saturating_sub(start)
                ),
            )),
        }
    }

    /// The next field, or `None` at the end of the message.
    fn next_field(&mut self) -> Result<Option<Field<'a>>, WireError> {
        if self.position >= self.bytes.len() {
            return Ok(None);
        }
        let tag_at = self.position;
        let tag = self.varint()?;
        let number = tag >> 3;
        if number == 0 || number > 536_870_911 {
            return Err(self.error(tag_at, format!("field number {number} is out of range")));
        }
        let offset = self.absolute(tag_at);
        let value = match tag & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8, "a fixed64 field")?;
                Value::Fixed64
            }
            2 => {
                let length = self.varint()?;
                let payload_at = self.absolute(self.position);
                Value::Bytes(self.take(length, "a length-delimited field")?, payload_at)
            }
            5 => {
                self.take(4, "a fixed32 field")?;
                Value::Fixed32
            }
            wire_type => {
                return Err(self.error(
                    tag_at,
                    format!(
                        "field {number} uses wire type {wire_type} (groups or invalid), which \
                         ONNX never writes"
                    ),
                ))
            }
        };
        Ok(Some(Field {
            number,
            offset,
            value,
        }))
    }
}

/// Iterate over a message's fields, calling `visit` for each; the first wire error stops it.
fn for_each_field<'a>(
    bytes: &'a [u8],
    base: u64,
    mut visit: impl FnMut(Field<'a>) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let mut reader = Reader::new(bytes, base);
    while let Some(field) = reader.next_field()? {
        visit(field)?;
    }
    Ok(())
}

/// A length-delimited field's payload, or an error naming the field when it has another type.
fn expect_bytes<'a>(field: &Field<'a>, what: &str) -> Result<(&'a [u8], u64), WireError> {
    match field.value {
        Value::Bytes(bytes, base) => Ok((bytes, base)),
        _ => Err(WireError {
            what: format!("{what} (field {}) is not length-delimited", field.number),
            offset: field.offset,
        }),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// The parts of a ModelProto the checks need.

/// What the walk collected from a model.
#[derive(Debug, Default)]
struct ModelSummary {
    /// `opset_import` domains, with the offset of their entry.
    opset_domains: Vec<(String, u64)>,
    nodes: Vec<NodeSummary>,
    external: Vec<ExternalReference>,
    /// (domain, name) of the model-local functions: ops that resolve to these need no library.
    local_functions: BTreeSet<(String, String)>,
}

#[derive(Debug)]
struct NodeSummary {
    name: String,
    op_type: String,
    domain: String,
    offset: u64,
}

/// A tensor whose data lives in another file.
#[derive(Debug)]
struct ExternalReference {
    tensor: String,
    /// `None` when the tensor says its data is external but names no location.
    location: Option<Vec<u8>>,
    offset: u64,
}

/// ModelProto: ir_version 1, opset_import 8, graph 7, training_info 20, functions 25.
fn read_model(bytes: &[u8], model: &mut ModelSummary) -> Result<(), WireError> {
    for_each_field(bytes, 0, |field| {
        match field.number {
            7 => {
                let (graph, base) = expect_bytes(&field, "ModelProto.graph")?;
                read_graph(graph, base, 0, model)?;
            }
            8 => {
                let (opset, base) = expect_bytes(&field, "ModelProto.opset_import")?;
                let domain = read_opset_domain(opset, base)?;
                model.opset_domains.push((domain, field.offset));
            }
            20 => {
                // TrainingInfoProto: initialization 1, algorithm 2 (both GraphProto).
                let (training, base) = expect_bytes(&field, "ModelProto.training_info")?;
                for_each_field(training, base, |inner| {
                    if matches!(inner.number, 1 | 2) {
                        let (graph, base) = expect_bytes(&inner, "TrainingInfoProto graph")?;
                        read_graph(graph, base, 0, model)?;
                    }
                    Ok(())
                })?;
            }
            25 => {
                let (function, base) = expect_bytes(&field, "ModelProto.functions")?;
                read_function(function, base, model)?;
            }
            _ => {}
        }
        Ok(())
    })
}

/// OperatorSetIdProto: domain 1, version 2.
fn read_opset_domain(bytes: &[u8], base: u64) -> Result<String, WireError> {
    let mut domain = String::new();
    for_each_field(bytes, base, |field| {
        if field.number == 1 {
            domain = text(expect_bytes(&field, "OperatorSetIdProto.domain")?.0);
        }
        Ok(())
    })?;
    Ok(domain)
}

/// FunctionProto: name 1, node 7, opset_import 9, domain 10.
fn read_function(bytes: &[u8], base: u64, model: &mut ModelSummary) -> Result<(), WireError> {
    let mut name = String::new();
    let mut domain = String::new();
    for_each_field(bytes, base, |field| {
        match field.number {
            1 => name = text(expect_bytes(&field, "FunctionProto.name")?.0),
            10 => domain = text(expect_bytes(&field, "FunctionProto.domain")?.0),
            7 => {
                let (node, base) = expect_bytes(&field, "FunctionProto.node")?;
                read_node(node, base, field.offset, 0, model)?;
            }
            9 => {
                let (opset, base) = expect_bytes(&field, "FunctionProto.opset_import")?;
                let opset_domain = read_opset_domain(opset, base)?;
                model.opset_domains.push((opset_domain, field.offset));
            }
            _ => {}
        }
        Ok(())
    })?;
    model.local_functions.insert((domain, name));
    Ok(())
}

/// GraphProto: node 1, initializer 5, sparse_initializer 15.
fn read_graph(
    bytes: &[u8],
    base: u64,
    depth: usize,
    model: &mut ModelSummary,
) -> Result<(), WireError> {
    if depth > MAX_GRAPH_DEPTH {
        return Err(WireError {
            what: format!("graphs nest more than {MAX_GRAPH_DEPTH} levels deep"),
            offset: base,
        });
    }
    for_each_field(bytes, base, |field| {
        match field.number {
            1 => {
                let (node, base) = expect_bytes(&field, "GraphProto.node")?;
                read_node(node, base, field.offset, depth, model)?;
            }
            5 => {
                let (tensor, base) = expect_bytes(&field, "GraphProto.initializer")?;
                read_tensor(tensor, base, field.offset, model)?;
            }
            15 => {
                let (sparse, base) = expect_bytes(&field, "GraphProto.sparse_initializer")?;
                read_sparse_tensor(sparse, base, model)?;
            }
            _ => {}
        }
        Ok(())
    })
}

/// NodeProto: input 1, output 2, name 3, op_type 4, attribute 5, domain 7.
fn read_node(
    bytes: &[u8],
    base: u64,
    offset: u64,
    depth: usize,
    model: &mut ModelSummary,
) -> Result<(), WireError> {
    let mut node = NodeSummary {
        name: String::new(),
        op_type: String::new(),
        domain: String::new(),
        offset,
    };
    for_each_field(bytes, base, |field| {
        match field.number {
            3 => node.name = text(expect_bytes(&field, "NodeProto.name")?.0),
            4 => node.op_type = text(expect_bytes(&field, "NodeProto.op_type")?.0),
            7 => node.domain = text(expect_bytes(&field, "NodeProto.domain")?.0),
            5 => {
                let (attribute, base) = expect_bytes(&field, "NodeProto.attribute")?;
                read_attribute(attribute, base, depth, model)?;
            }
            _ => {}
        }
        Ok(())
    })?;
    model.nodes.push(node);
    Ok(())
}

/// AttributeProto: t 5 and tensors 10 (TensorProto, which may have external data), g 6 and
/// graphs 11 (subgraphs), sparse_tensor 22 and sparse_tensors 23.
fn read_attribute(
    bytes: &[u8],
    base: u64,
    depth: usize,
    model: &mut ModelSummary,
) -> Result<(), WireError> {
    for_each_field(bytes, base, |field| {
        match field.number {
            5 | 10 => {
                let (tensor, base) = expect_bytes(&field, "AttributeProto tensor")?;
                read_tensor(tensor, base, field.offset, model)?;
            }
            6 | 11 => {
                let (graph, base) = expect_bytes(&field, "AttributeProto graph")?;
                read_graph(graph, base, depth.saturating_add(1), model)?;
            }
            22 | 23 => {
                let (sparse, base) = expect_bytes(&field, "AttributeProto sparse tensor")?;
                read_sparse_tensor(sparse, base, model)?;
            }
            _ => {}
        }
        Ok(())
    })
}

/// SparseTensorProto: values 1, indices 2 (both TensorProto).
fn read_sparse_tensor(bytes: &[u8], base: u64, model: &mut ModelSummary) -> Result<(), WireError> {
    for_each_field(bytes, base, |field| {
        if matches!(field.number, 1 | 2) {
            let (tensor, base) = expect_bytes(&field, "SparseTensorProto tensor")?;
            read_tensor(tensor, base, field.offset, model)?;
        }
        Ok(())
    })
}

/// TensorProto: name 8, external_data 13 (StringStringEntryProto key 1, value 2),
/// data_location 14 (0 DEFAULT, 1 EXTERNAL).
fn read_tensor(
    bytes: &[u8],
    base: u64,
    offset: u64,
    model: &mut ModelSummary,
) -> Result<(), WireError> {
    let mut name = String::new();
    let mut is_external = false;
    let mut locations: Vec<Vec<u8>> = Vec::new();
    for_each_field(bytes, base, |field| {
        match field.number {
            8 => name = text(expect_bytes(&field, "TensorProto.name")?.0),
            14 => match field.value {
                Value::Varint(data_location) => is_external = data_location == 1,
                _ => {
                    return Err(WireError {
                        what: "TensorProto.data_location is not a varint".to_string(),
                        offset: field.offset,
                    })
                }
            },
            13 => {
                let (entry, base) = expect_bytes(&field, "TensorProto.external_data")?;
                let mut key: &[u8] = &[];
                let mut value: &[u8] = &[];
                for_each_field(entry, base, |inner| {
                    match inner.number {
                        1 => key = expect_bytes(&inner, "StringStringEntryProto.key")?.0,
                        2 => value = expect_bytes(&inner, "StringStringEntryProto.value")?.0,
                        _ => {}
                    }
                    Ok(())
                })?;
                if key == b"location" {
                    locations.push(value.to_vec());
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    // A location without `data_location = EXTERNAL` is ignored by onnx's loader today, but it is
    // still reported: other tools (and future versions) may honour it.
    if locations.is_empty() && is_external {
        model.external.push(ExternalReference {
            tensor: name,
            location: None,
            offset,
        });
    } else {
        for location in locations {
            model.external.push(ExternalReference {
                tensor: name.clone(),
                location: Some(location),
                offset,
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Checks.

/// Why an external-data location is dangerous, if it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocationProblem {
    /// Absolute, drive-letter, UNC or URL: points anywhere on the machine.
    Absolute,
    /// Climbs out of the model's folder through `..`.
    Escapes,
    /// Uses `..` but stays inside the folder; onnx's own checker refuses it anyway.
    DotDot,
    /// Contains a NUL byte (truncates the path in C APIs) or is not UTF-8.
    Garbled,
    /// Empty.
    Empty,
}

/// Classify an external-data location the way a path-traversal check must: backslashes are
/// separators (Windows), `C:` and `\\server` are absolute, `..` is resolved lexically against
/// the model's folder.
pub fn classify_location(location: &[u8]) -> Option<LocationProblem> {
    let Ok(location) = std::str::from_utf8(location) else {
        return Some(LocationProblem::Garbled);
    };
    if location.is_empty() {
        return Some(LocationProblem::Empty);
    }
    if location.contains('\0') {
        return Some(LocationProblem::Garbled);
    }
    let bytes = location.as_bytes();
    let has_drive = bytes.len() >= 2
        && bytes.first().is_some_and(u8::is_ascii_alphabetic)
        && bytes.get(1) == Some(&b':');
    if location.starts_with('/')
        || location.starts_with('\\')
        || has_drive
        || location.contains("://")
        || location.starts_with('~')
    {
        return Some(LocationProblem::Absolute);
    }
    let mut depth = 0i64;
    let mut has_dot_dot = false;
    for component in location.split(['/', '\\']) {
        match component {
            "" | "." => {}
            ".." => {
                has_dot_dot = true;
                depth -= 1;
                if depth < 0 {
                    return Some(LocationProblem::Escapes);
                }
            }
            _ => depth += 1,
        }
    }
    has_dot_dot.then_some(LocationProblem::DotDot)
}

fn report_external_data(model: &ModelSummary, location: &Location, findings: &mut Vec<Finding>) {
    let mut files = BTreeSet::new();
    for reference in &model.external {
        let at = Location {
            offset: Some(reference.offset),
            tensor: Some(reference.tensor.clone()),
            ..location.clone()
        };
        let Some(path_bytes) = &reference.location else {
            findings.push(Finding {
                severity: Severity::Medium,
                rule: RuleId::OnnxExternalDataMalformed,
                message: format!(
                    "tensor `{}` says its data is external but names no location",
                    reference.tensor
                ),
                location: at,
            });
            continue;
        };
        let shown = String::from_utf8_lossy(path_bytes)
            .escape_debug()
            .to_string();
        files.insert(shown.clone());
        let (severity, rule, why) = match classify_location(path_bytes) {
            None => continue,
            Some(LocationProblem::Absolute) => (
                Severity::Critical,
                RuleId::OnnxExternalDataAbsolute,
                "is an absolute path (or drive, UNC path or URL): loading the model reads a file \
                 anywhere on the machine",
            ),
            Some(LocationProblem::Escapes) => (
                Severity::Critical,
                RuleId::OnnxExternalDataTraversal,
                "climbs out of the model's folder with `..`: loading the model reads a file \
                 outside it",
            ),
            Some(LocationProblem::DotDot) => (
                Severity::Medium,
                RuleId::OnnxExternalDataDotDot,
                "contains `..` (it stays inside the model's folder, but onnx's checker refuses \
                 such paths and they are a traversal idiom)",
            ),
            Some(LocationProblem::Garbled) => (
                Severity::High,
                RuleId::OnnxExternalDataMalformed,
                "contains a NUL byte or invalid UTF-8, which truncates or garbles the path \
                 differently in different loaders",
            ),
            Some(LocationProblem::Empty) => (
                Severity::Medium,
                RuleId::OnnxExternalDataMalformed,
                "is empty",
            ),
        };
        findings.push(Finding {
            severity,
            rule,
            message: format!(
                "tensor `{}` has external data at \"{shown}\", which {why}",
                reference.tensor
            ),
            location: at,
        });
    }
    if !files.is_empty() {
        let listed: Vec<String> = files.iter().map(|file| format!("\"{file}\"")).collect();
        findings.push(Finding {
            severity: Severity::Info,
            rule: RuleId::OnnxExternalData,
            message: format!(
                "the graph reads tensor data from {} external file(s): {}; they are part of the \
                 model and must be verified with it",
                files.len(),
                listed.join(", ")
            ),
            location: location.clone(),
        });
    }
}

fn is_standard_domain(domain: &str) -> bool {
    STANDARD_DOMAINS.contains(&domain)
}

fn report_custom_domains(model: &ModelSummary, location: &Location, findings: &mut Vec<Finding>) {
    let mut reported_domains = BTreeSet::new();
    for (domain, offset) in &model.opset_domains {
        if is_standard_domain(domain) || !reported_domains.insert(domain.as_str()) {
            continue;
        }
        findings.push(Finding {
            severity: Severity::Medium,
            rule: RuleId::OnnxCustomDomain,
            message: format!(
                "the model imports operator set domain `{}`, which is not an ONNX standard \
                 domain: its operators need a custom library (native code) to run",
                domain.escape_debug()
            ),
            location: Location {
                offset: Some(*offset),
                ..location.clone()
            },
        });
    }
    // One finding per (domain, op_type), naming the first node and the count.
    let mut custom_ops: BTreeMap<(&str, &str), (usize, &NodeSummary)> = BTreeMap::new();
    for node in &model.nodes {
        if is_standard_domain(&node.domain) {
            continue;
        }
        custom_ops
            .entry((node.domain.as_str(), node.op_type.as_str()))
            .and_modify(|(count, _)| *count += 1)
            .or_insert((1, node));
    }
    for ((domain, op_type), (count, first)) in custom_ops {
        let is_local = model
            .local_functions
            .contains(&(domain.to_string(), op_type.to_string()));
        let (severity, rule, why) = if is_local {
            (
                Severity::Low,
                RuleId::OnnxLocalFunction,
                "defined as a function inside the model (built from other operators, no native \
                 code)",
            )
        } else {
            (
                Severity::Medium,
                RuleId::OnnxCustomOp,
                "not an ONNX standard operator: running it loads a custom op library (native code)",
            )
        };
        let node_name = if first.name.is_empty() {
            String::new()
        } else {
            format!(", first node `{}`", first.name.escape_debug())
        };
        findings.push(Finding {
            severity,
            rule,
            message: format!(
                "{count} node(s) use operator `{}` in domain `{}`{node_name}: {why}",
                op_type.escape_debug(),
                domain.escape_debug()
            ),
            location: Location {
                offset: Some(first.offset),
                tensor: (!first.name.is_empty()).then(|| first.name.clone()),
                ..location.clone()
            },
        });
    }
}

/// Keep at most [`MAX_FINDINGS_PER_RULE`] findings of each rule, noting how many were dropped.
fn limit_per_rule(findings: &mut Vec<Finding>, location: &Location) {
    let mut per_rule: BTreeMap<RuleId, usize> = BTreeMap::new();
    findings.retain(|finding| {
        let count = per_rule.entry(finding.rule).or_default();
        *count += 1;
        *count <= MAX_FINDINGS_PER_RULE
    });
    let hidden: usize = per_rule
        .values()
        .map(|count| count.saturating_sub(MAX_FINDINGS_PER_RULE))
        .sum();
    if hidden > 0 {
        findings.push(Finding {
            severity: Severity::Info,
            rule: RuleId::FindingsTruncated,
            message: format!("{hidden} more findings in this file were not listed"),
            location: location.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn varint(mut value: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn message(number: u64, payload: &[u8], out: &mut Vec<u8>) {
        varint(number << 3 | 2, out);
        varint(payload.len() as u64, out);
        out.extend_from_slice(payload);
    }

    #[test]
    fn varints_decode_and_overlong_ones_are_refused() {
        for value in [0, 1, 127, 128, 300, u64::MAX] {
            let mut bytes = Vec::new();
            varint(value, &mut bytes);
            assert_eq!(Reader::new(&bytes, 0).varint().unwrap(), value);
        }
        let overlong = [0xff; 11];
        assert!(Reader::new(&overlong, 0).varint().is_err());
        let too_big = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(Reader::new(&too_big, 0).varint().is_err());
    }

    #[test]
    fn locations_are_classified_like_a_traversal_check_must() {
        use LocationProblem::*;
        let cases: [(&str, Option<LocationProblem>); 13] = [
            ("weights.bin", None),
            ("sub/weights.bin", None),
            ("./weights.bin", None),
            ("sub/../weights.bin", Some(DotDot)),
            ("../weights.bin", Some(Escapes)),
            ("sub/../../x", Some(Escapes)),
            ("..\\..\\windows\\win.ini", Some(Escapes)),
            ("/etc/passwd", Some(Absolute)),
            ("\\\\server\\share\\x", Some(Absolute)),
            ("C:\\x", Some(Absolute)),
            ("c:x", Some(Absolute)),
            ("file:///etc/passwd", Some(Absolute)),
            ("a\0b", Some(Garbled)),
        ];
        for (location, expected) in cases {
            assert_eq!(
                classify_location(location.as_bytes()),
                expected,
                "{location}"
            );
        }
    }

    #[test]
    fn deep_graph_nesting_is_a_finding_not_a_stack_overflow() {
        // graph { node { attribute { g { node { attribute { g { ... } } } } } } }
        let mut graph = Vec::new();
        for _ in 0..(MAX_GRAPH_DEPTH + 5) {
            let mut attribute = Vec::new();
            message(6, &graph, &mut attribute);
            let mut node = Vec::new();
            message(5, &attribute, &mut node);
            graph.clear();
            message(1, &node, &mut graph);
        }
        let mut model = vec![0x08, 0x07]; // ir_version = 7
        message(7, &graph, &mut model);
        assert!(looks_like(&model));
        let findings = scan(&model, &Location::default());
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].rule, RuleId::OnnxMalformed);
        assert!(findings[0].message.contains("nest"));
    }
}
