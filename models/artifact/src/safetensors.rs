//! safetensors: an 8-byte little-endian header length `N`, `N` bytes of JSON header, then the
//! tensor bytes. The format cannot carry code, so what can go wrong is structural: a header length
//! that makes a loader allocate gigabytes, a header that two parsers read differently (duplicate
//! names: serde keeps the last, other loaders the first), tensors whose byte ranges overlap, leave
//! gaps or run past the end of the file, sizes that disagree with dtype × shape, and bytes
//! smuggled after the last tensor.
//!
//! The checks mirror what the reference loader (the `safetensors` crate) enforces, plus the
//! duplicate-name check it lacks, so a finding of severity high means "the reference loader
//! refuses this file, or two loaders disagree about what it contains".
//!
//! Only the header is needed: [`scan_reader`] and [`scan_file`] read the first `8 + N` bytes and
//! take the payload length from the file size, so a multi-gigabyte model costs one small read.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::{ArtifactError, Finding, Location, RuleId, Severity};

/// The reference loader refuses headers longer than this (`MAX_HEADER_SIZE` in the
/// `safetensors` crate); a longer header is a denial-of-service attempt or not safetensors.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Bytes at the start of a file that [`looks_like_prefix`] needs to decide.
pub const PREFIX_BYTES: usize = 64;

/// At most this many findings are listed for one file; the rest are summarised in one line, so a
/// crafted header with a million bad tensors cannot flood a report.
const MAX_FINDINGS_PER_FILE: usize = 200;

/// The byte offset of the header (right after the 8-byte length).
const HEADER_START: u64 = 8;

/// Whether `bytes` (a whole file or container member) is safetensors by structure: a header
/// length `N` that is at least 2 and either fits in `bytes` or is within the reference loader's
/// limit (so a truncated file or a length bomb is still reported as a safetensors problem, not as
/// an unknown file), followed by a JSON object.
pub fn looks_like(bytes: &[u8]) -> bool {
    let Some(header_len) = declared_header_len(bytes) else {
        return false;
    };
    let available = (bytes.len() as u64).saturating_sub(HEADER_START);
    header_len <= available.max(MAX_HEADER_BYTES) && header_starts_like_json_object(bytes)
}

/// Like [`looks_like`], for the first [`PREFIX_BYTES`] (or more) bytes of a file whose total
/// size is `file_size`: lets a caller decide from a small read whether to call [`scan_reader`].
pub fn looks_like_prefix(prefix: &[u8], file_size: u64) -> bool {
    let Some(header_len) = declared_header_len(prefix) else {
        return false;
    };
    let available = file_size.saturating_sub(HEADER_START);
    header_len <= available.max(MAX_HEADER_BYTES) && header_starts_like_json_object(prefix)
}

/// The header length field, when there are 8 bytes and it is at least 2 (`{}`).
fn declared_header_len(bytes: &[u8]) -> Option<u64> {
    let length_field: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    let header_len = u64::from_le_bytes(length_field);
    (header_len >= 2).then_some(header_len)
}

/// After the length: optional JSON whitespace, `{`, optional whitespace, then `"` or `}`.
/// Requiring the second token keeps a random binary with a `{` at byte 8 from being claimed.
fn header_starts_like_json_object(bytes: &[u8]) -> bool {
    let rest = bytes.get(8..).unwrap_or_default();
    let is_space = |byte: &u8| matches!(byte, b' ' | b'\t' | b'\n' | b'\r');
    let mut tokens = rest.iter().filter(|byte| !is_space(byte));
    tokens.next() == Some(&b'{') && matches!(tokens.next(), Some(b'"' | b'}'))
}

/// Scan a whole safetensors file held in memory.
pub fn scan(bytes: &[u8], location: &Location) -> Vec<Finding> {
    let Some(length_field) = bytes.get(..8) else {
        return vec![finding(
            Severity::High,
            RuleId::SafetensorsTruncated,
            format!(
                "the file is {} bytes long, shorter than the 8-byte header length",
                bytes.len()
            ),
            location,
            Some(0),
            None,
        )];
    };
    let mut field = [0u8; 8];
    field.copy_from_slice(length_field);
    let header_len = u64::from_le_bytes(field);
    let file_size = bytes.len() as u64;
    if let Some(bomb) = header_length_problem(header_len, file_size, location) {
        return vec![bomb];
    }
    // Both bounds were just checked against `bytes.len()`, so this `get` cannot fail; fall back
    // to an empty header rather than panic if that ever changes.
    let header_end = usize::try_from(header_len.saturating_add(HEADER_START)).unwrap_or(usize::MAX);
    let header = bytes.get(8..header_end).unwrap_or_default();
    scan_header(header, file_size, location)
}

/// Scan a safetensors file on disk, reading only its header. `Location.file` is the path as
/// given.
pub fn scan_file(path: &Path) -> Result<Vec<Finding>, ArtifactError> {
    let unreadable = |source| ArtifactError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let file = gauntlet_files::open(path, "a safetensors file")?;
    let file_size = file.metadata().map_err(unreadable)?.len();
    let location = Location {
        file: path.display().to_string(),
        ..Location::default()
    };
    scan_reader(file, file_size, &location).map_err(unreadable)
}

/// Scan a safetensors stream positioned at its first byte, whose total length is `file_size`.
/// Reads at most `8 + min(N, MAX_HEADER_BYTES)` bytes, never the tensor payload: the payload's
/// length is all the checks need, and it comes from `file_size`.
pub fn scan_reader<R: Read>(
    mut reader: R,
    file_size: u64,
    location: &Location,
) -> std::io::Result<Vec<Finding>> {
    let mut length_field = [0u8; 8];
    let got = read_up_to(&mut reader, &mut length_field)?;
    if got < 8 {
        return Ok(scan(length_field.get(..got).unwrap_or_default(), location));
    }
    let header_len = u64::from_le_bytes(length_field);
    if let Some(bomb) = header_length_problem(header_len, file_size, location) {
        return Ok(vec![bomb]);
    }
    // `header_len <= MAX_HEADER_BYTES` here, so the allocation is bounded.
    let mut header = Vec::new();
    reader.take(header_len).read_to_end(&mut header)?;
    if (header.len() as u64) < header_len {
        // The file shrank between `metadata()` and the read, or `file_size` was wrong.
        return Ok(vec![finding(
            Severity::High,
            RuleId::SafetensorsTruncated,
            format!(
                "the header claims {header_len} bytes but only {} could be read",
                header.len()
            ),
            location,
            Some(HEADER_START),
            None,
        )]);
    }
    Ok(scan_header(&header, file_size, location))
}

/// Fill `buffer` as far as the stream allows; returns how many bytes were read.
fn read_up_to<R: Read>(reader: &mut R, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buffer.get_mut(filled..) {
        if rest.is_empty() {
            break;
        }
        match reader.read(rest) {
            Ok(0) => break,
            Ok(count) => filled += count,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// The header-length bomb check: the declared header must fit in the file and under the
/// reference loader's limit.
fn header_length_problem(header_len: u64, file_size: u64, location: &Location) -> Option<Finding> {
    let available = file_size.saturating_sub(HEADER_START);
    let message = if header_len > MAX_HEADER_BYTES {
        format!(
            "the header length field claims {header_len} bytes, over the {MAX_HEADER_BYTES}-byte \
             limit of the reference loader: a header-length bomb that makes naive loaders \
             allocate that much"
        )
    } else if header_len > available {
        format!(
            "the header length field claims {header_len} bytes but only {available} follow it: a \
             header-length bomb or a truncated file"
        )
    } else {
        return None;
    };
    Some(finding(
        Severity::High,
        RuleId::SafetensorsHeaderLength,
        message,
        location,
        Some(0),
        None,
    ))
}

/// Check a complete header (`header` is the `N` bytes after the length field) of a file of
/// `file_size` bytes.
pub fn scan_header(header: &[u8], file_size: u64, location: &Location) -> Vec<Finding> {
    let mut findings = Vec::new();
    let header_len = header.len() as u64;
    let data_start = HEADER_START.saturating_add(header_len);
    let data_len = file_size.saturating_sub(data_start);

    let text = match std::str::from_utf8(header) {
        Ok(text) => text,
        Err(error) => {
            let bad_at = HEADER_START.saturating_add(error.valid_up_to() as u64);
            findings.push(finding(
                Severity::High,
                RuleId::SafetensorsHeaderNotUtf8,
                format!(
                    "the header is not UTF-8 (invalid byte at offset {bad_at}); tensor names \
                     and metadata must be UTF-8 text"
                ),
                location,
                Some(bad_at),
                None,
            ));
            return findings;
        }
    };
    let entries = match parse_entries(text) {
        Ok(entries) => entries,
        Err(HeaderParseError::NotAnObject) => {
            findings.push(finding(
                Severity::High,
                RuleId::SafetensorsHeaderNotObject,
                "the header is JSON but not an object mapping tensor names to their dtype, \
                 shape and offsets"
                    .to_string(),
                location,
                Some(HEADER_START),
                None,
            ));
            return findings;
        }
        Err(HeaderParseError::Json(error)) => {
            let (rule, what) = if error.to_string().contains("surrogate") {
                (
                    RuleId::SafetensorsNameNotUtf8,
                    "a string escape in the header is not valid UTF-16 (a lone surrogate), so \
                     the name or value it is part of is not Unicode text",
                )
            } else {
                (
                    RuleId::SafetensorsHeaderNotJson,
                    "the header is not valid JSON",
                )
            };
            findings.push(finding(
                Severity::High,
                rule,
                format!("{what}: {error}"),
                location,
                Some(HEADER_START.saturating_add(json_error_offset(text, &error))),
                None,
            ));
            return findings;
        }
    };

    let mut seen_names = BTreeSet::new();
    let mut ranges: Vec<TensorRange> = Vec::new();
    for (name, value) in &entries {
        if !seen_names.insert(name.as_str()) {
            findings.push(finding(
                Severity::High,
                RuleId::SafetensorsDuplicateName,
                format!(
                    "the name `{name}` appears more than once in the header; loaders disagree \
                     on which entry wins, so the file can mean different weights to different \
                     tools"
                ),
                location,
                Some(HEADER_START),
                Some(name),
            ));
        }
        if name == "__metadata__" {
            check_metadata(value, location, &mut findings);
            continue;
        }
        if let Some(range) =
            check_tensor(name, value, data_start, data_len, location, &mut findings)
        {
            ranges.push(range);
        }
    }
    check_coverage(&mut ranges, data_start, data_len, location, &mut findings);

    if findings.len() > MAX_FINDINGS_PER_FILE {
        let hidden = findings.len() - MAX_FINDINGS_PER_FILE;
        findings.truncate(MAX_FINDINGS_PER_FILE);
        findings.push(finding(
            Severity::Info,
            RuleId::FindingsTruncated,
            format!("{hidden} more findings in this file were not listed"),
            location,
            None,
            None,
        ));
    }
    findings
}

/// The byte range one tensor claims, relative to the start of the data section.
struct TensorRange {
    name: String,
    begin: u64,
    end: u64,
}

/// Check one tensor entry; returns its byte range when the offsets are usable for the coverage
/// check (in bounds and ordered).
fn check_tensor(
    name: &str,
    value: &Value,
    data_start: u64,
    data_len: u64,
    location: &Location,
    findings: &mut Vec<Finding>,
) -> Option<TensorRange> {
    let mut malformed = |what: String| {
        findings.push(finding(
            Severity::High,
            RuleId::SafetensorsMalformedEntry,
            format!("tensor `{name}`: {what}; the reference loader refuses this header"),
            location,
            Some(HEADER_START),
            Some(name),
        ));
    };
    let Some(object) = value.as_object() else {
        malformed("its entry is not an object with dtype, shape and data_offsets".to_string());
        return None;
    };
    let unexpected: Vec<&str> = object
        .keys()
        .map(String::as_str)
        .filter(|key| !matches!(*key, "dtype" | "shape" | "data_offsets"))
        .collect();

    let dtype = object.get("dtype").and_then(Value::as_str);
    let shape: Option<Vec<u64>> = object
        .get("shape")
        .and_then(Value::as_array)
        .and_then(|dims| dims.iter().map(Value::as_u64).collect());
    let offsets: Option<(u64, u64)> = object
        .get("data_offsets")
        .and_then(Value::as_array)
        .and_then(|pair| match pair.as_slice() {
            [begin, end] => Some((begin.as_u64()?, end.as_u64()?)),
            _ => None,
        });
    if dtype.is_none() {
        malformed("`dtype` is missing or not a string".to_string());
    }
    if shape.is_none() {
        malformed("`shape` is missing or not a list of non-negative integers".to_string());
    }
    let Some((begin, end)) = offsets else {
        malformed("`data_offsets` is missing or not a pair of non-negative integers".to_string());
        return None;
    };
    if !unexpected.is_empty() {
        findings.push(finding(
            Severity::Low,
            RuleId::SafetensorsUnexpectedField,
            format!(
                "tensor `{name}` has fields the format does not define ({}); loaders ignore them, \
                 so they can carry data no tool shows",
                unexpected.join(", ")
            ),
            location,
            Some(HEADER_START),
            Some(name),
        ));
    }

    let tensor_offset =
        |relative: u64| (relative <= data_len).then(|| data_start.saturating_add(relative));
    if begin > end {
        findings.push(finding(
            Severity::High,
            RuleId::SafetensorsOffsetsReversed,
            format!(
                "tensor `{name}` has data_offsets [{begin}, {end}]: the start is after the end"
            ),
            location,
            tensor_offset(begin).or(Some(HEADER_START)),
            Some(name),
        ));
        return None;
    }
    if end > data_len {
        findings.push(finding(
            Severity::High,
            RuleId::SafetensorsOffsetsOutOfBounds,
            format!(
                "tensor `{name}` has data_offsets [{begin}, {end}] but the data section is only \
                 {data_len} bytes: reading it runs past the end of the file"
            ),
            location,
            tensor_offset(begin).or(Some(HEADER_START)),
            Some(name),
        ));
        return None;
    }

    let byte_count = end - begin;
    match dtype.map(|dtype| (dtype, dtype_bits(dtype))) {
        Some((dtype, None)) => findings.push(finding(
            Severity::Medium,
            RuleId::SafetensorsUnknownDtype,
            format!(
                "tensor `{name}` has dtype `{dtype}`, which the format does not define; its size \
                 cannot be checked"
            ),
            location,
            tensor_offset(begin),
            Some(name),
        )),
        Some((dtype, Some(bits_per_element))) => {
            if let Some(shape) = &shape {
                check_size(
                    name,
                    dtype,
                    bits_per_element,
                    shape,
                    byte_count,
                    tensor_offset(begin),
                    location,
                    findings,
                );
            }
        }
        None => {}
    }
    Some(TensorRange {
        name: name.to_string(),
        begin,
        end,
    })
}

/// The byte count must equal dtype size × product(shape), computed without overflow.
#[allow(clippy::too_many_arguments)]
fn check_size(
    name: &str,
    dtype: &str,
    bits_per_element: u64,
    shape: &[u64],
    byte_count: u64,
    offset: Option<u64>,
    location: &Location,
    findings: &mut Vec<Finding>,
) {
    let bits = shape
        .iter()
        .try_fold(1u64, |product, &dim| product.checked_mul(dim))
        .and_then(|elements| elements.checked_mul(bits_per_element));
    let shape_text = format!("{shape:?}");
    match bits {
        None => findings.push(finding(
            Severity::High,
            RuleId::SafetensorsSizeOverflow,
            format!(
                "tensor `{name}` has shape {shape_text}: its size in bytes overflows 64 bits, a \
                 classic trick to wrap a loader's size computation"
            ),
            location,
            offset,
            Some(name),
        )),
        Some(bits) if bits % 8 != 0 => findings.push(finding(
            Severity::High,
            RuleId::SafetensorsSizeMismatch,
            format!(
                "tensor `{name}` ({dtype}, shape {shape_text}) has {bits} bits, not a whole \
                 number of bytes"
            ),
            location,
            offset,
            Some(name),
        )),
        Some(bits) if bits / 8 != byte_count => findings.push(finding(
            Severity::High,
            RuleId::SafetensorsSizeMismatch,
            format!(
                "tensor `{name}` ({dtype}, shape {shape_text}) needs {} bytes but its \
                 data_offsets span {byte_count}",
                bits / 8
            ),
            location,
            offset,
            Some(name),
        )),
        Some(_) => {}
    }
}

/// Every byte of the data section must belong to exactly one tensor: overlaps let one write
/// change two tensors, gaps hide bytes no tool shows, and bytes after the last tensor are
/// smuggled data.
fn check_coverage(
    ranges: &mut [TensorRange],
    data_start: u64,
    data_len: u64,
    location: &Location,
    findings: &mut Vec<Finding>,
) {
    ranges.sort_by_key(|range| (range.begin, range.end));
    let mut covered_to = 0u64;
    let mut last_name: Option<&str> = None;
    for range in ranges.iter() {
        if range.begin < covered_to {
            findings.push(finding(
                Severity::High,
                RuleId::SafetensorsOverlap,
                format!(
                    "tensor `{}` (bytes {}..{}) overlaps tensor `{}` (which ends at {covered_to}): \
                     the same bytes are read as two tensors",
                    range.name,
                    range.begin,
                    range.end,
                    last_name.unwrap_or("?")
                ),
                location,
                Some(data_start.saturating_add(range.begin)),
                Some(&range.name),
            ));
        } else if range.begin > covered_to {
            findings.push(finding(
                Severity::High,
                RuleId::SafetensorsGap,
                format!(
                    "bytes {covered_to}..{} of the data section belong to no tensor (before \
                     tensor `{}`): hidden data the reference loader refuses",
                    range.begin, range.name
                ),
                location,
                Some(data_start.saturating_add(covered_to)),
                Some(&range.name),
            ));
        }
        if range.end > covered_to {
            covered_to = range.end;
            last_name = Some(&range.name);
        }
    }
    if covered_to < data_len {
        findings.push(finding(
            Severity::Medium,
            RuleId::SafetensorsTrailingBytes,
            format!(
                "{} bytes after the last tensor belong to no tensor: trailing data that loaders \
                 ignore or refuse",
                data_len - covered_to
            ),
            location,
            Some(data_start.saturating_add(covered_to)),
            None,
        ));
    }
}

/// `__metadata__` must map strings to strings (or be `null`, which the reference loader reads
/// as absent); it refuses anything else.
fn check_metadata(value: &Value, location: &Location, findings: &mut Vec<Finding>) {
    let problem = match value.as_object() {
        None if value.is_null() => None,
        None => Some("`__metadata__` is not an object".to_string()),
        Some(map) => map
            .iter()
            .find(|(_, value)| !value.is_string())
            .map(|(key, _)| format!("`__metadata__` entry `{key}` is not a string")),
    };
    if let Some(problem) = problem {
        findings.push(finding(
            Severity::High,
            RuleId::SafetensorsBadMetadata,
            format!(
                "{problem}; it must map strings to strings, and the reference loader refuses it"
            ),
            location,
            Some(HEADER_START),
            Some("__metadata__"),
        ));
    }
}

/// Bits per element of each dtype the format defines (the `safetensors` crate's `Dtype`).
fn dtype_bits(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "F4" => 4,
        "F6_E2M3" | "F6_E3M2" => 6,
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" | "F8_E4M3FNUZ"
        | "F8_E5M2FNUZ" => 8,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "I64" | "U64" | "F64" | "C64" => 64,
        _ => return None,
    })
}

/// Why the header did not parse into name → value pairs.
enum HeaderParseError {
    Json(serde_json::Error),
    NotAnObject,
}

/// Parse the header into its entries in file order, keeping duplicates (serde_json's `Map`
/// would silently drop all but the last).
fn parse_entries(text: &str) -> Result<Vec<(String, Value)>, HeaderParseError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let entries = match deserializer.deserialize_any(EntriesVisitor) {
        Ok(Some(entries)) => entries,
        Ok(None) => return Err(HeaderParseError::NotAnObject),
        Err(error) => return Err(HeaderParseError::Json(error)),
    };
    // Trailing whitespace (the writer's padding) is fine; anything else is not.
    deserializer.end().map_err(HeaderParseError::Json)?;
    Ok(entries)
}

/// Visits the top-level JSON value: `Some(pairs)` for an object, `None` for anything else.
struct EntriesVisitor;

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = Option<Vec<(String, Value)>>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Value>()? {
            entries.push((key, value));
        }
        Ok(Some(entries))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Byte offset (within the header) of a serde_json error's line and column.
fn json_error_offset(text: &str, error: &serde_json::Error) -> u64 {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(error.line().saturating_sub(1))
        .map(str::len)
        .sum();
    line_start.saturating_add(error.column().saturating_sub(1)) as u64
}

fn finding(
    severity: Severity,
    rule: RuleId,
    message: String,
    location: &Location,
    offset: Option<u64>,
    tensor: Option<&str>,
) -> Finding {
    Finding {
        severity,
        rule,
        message,
        location: Location {
            offset,
            tensor: tensor.map(str::to_string),
            ..location.clone()
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Assemble a safetensors file from a header text and a payload.
    fn file(header: &str, payload: &[u8]) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    fn rules(bytes: &[u8]) -> Vec<RuleId> {
        scan(bytes, &Location::default())
            .into_iter()
            .map(|finding| finding.rule)
            .collect()
    }

    #[test]
    fn a_well_formed_file_has_no_findings() {
        let bytes = file(
            r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[],"data_offsets":[8,9]}}  "#,
            &[0; 9],
        );
        assert!(looks_like(&bytes));
        assert_eq!(rules(&bytes), Vec::<RuleId>::new());
    }

    #[test]
    fn duplicates_are_found_even_though_serde_maps_drop_them() {
        let bytes = file(
            r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#,
            &[0; 2],
        );
        let findings = scan(&bytes, &Location::default());
        let duplicate = findings
            .iter()
            .find(|finding| finding.rule == RuleId::SafetensorsDuplicateName)
            .unwrap();
        assert_eq!(duplicate.location.tensor.as_deref(), Some("a"));
        assert_eq!(duplicate.severity, Severity::High);
    }

    #[test]
    fn sub_byte_dtypes_count_bits() {
        // 3 F4 elements = 12 bits: not whole bytes; 4 of them = 2 bytes.
        let odd = file(
            r#"{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}"#,
            &[0; 2],
        );
        assert_eq!(rules(&odd), [RuleId::SafetensorsSizeMismatch]);
        let even = file(
            r#"{"a":{"dtype":"F4","shape":[4],"data_offsets":[0,2]}}"#,
            &[0; 2],
        );
        assert!(rules(&even).is_empty());
    }

    #[test]
    fn json_error_offsets_point_into_the_header() {
        let text = "{\n  \"a\": ?}";
        let error = serde_json::from_str::<Value>(text).unwrap_err();
        assert_eq!(&text[json_error_offset(text, &error) as usize..], "?}");
    }
}
