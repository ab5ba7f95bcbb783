//! GGUF files (llama.cpp and everything built on it): the header and the key-value metadata are
//! parsed with bounds checks, and every chat template in the metadata is checked for
//! server-side template injection.
//!
//! A chat template (`tokenizer.chat_template`, `tokenizer.chat_template.<name>`) is a Jinja
//! program that Python runtimes (transformers, llama-cpp-python, vLLM …) render with the
//! conversation. Jinja's sandbox is opt-in, and payloads that walk from any object to
//! `__globals__` or `__subclasses__` reach `os.popen`; legitimate templates only loop over
//! messages and concatenate strings, so the names those payloads need are findings.

use crate::{Finding, Location, RuleId, Severity};

const MAGIC: &[u8; 4] = b"GGUF";
/// Most metadata entries read.
pub const MAX_KV: u64 = 1 << 20;
/// Most array elements read in all.
pub const MAX_ARRAY_ELEMENTS: u64 = 1 << 26;
/// Most tensors described.
pub const MAX_TENSORS: u64 = 1 << 20;
/// How much of a large GGUF file the walk reads: the metadata (vocabularies included) sits at the
/// front and is far smaller; the tensor data after it is never parsed.
pub const METADATA_PREFIX_BYTES: u64 = 256 << 20;

/// Whether `bytes` starts like a GGUF file.
pub fn looks_like(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC) && bytes.len() >= 8
}

/// A bounds-checked cursor in either byte order.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    big_endian: bool,
    /// Version 1 writes string lengths and counts as u32.
    narrow: bool,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, len: u64) -> Result<&'a [u8], String> {
        let len = usize::try_from(len).map_err(|_| "length does not fit in memory".to_string())?;
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| format!("{len} bytes at offset {} run past the end", self.at))?;
        let slice = self.bytes.get(self.at..end).unwrap_or(&[]);
        self.at = end;
        Ok(slice)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64)?);
        if self.big_endian {
            out.reverse();
        }
        Ok(out)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// A count or string length: u32 in version 1, u64 after.
    fn len(&mut self) -> Result<u64, String> {
        if self.narrow {
            self.u32().map(u64::from)
        } else {
            self.u64()
        }
    }
    fn string(&mut self) -> Result<String, String> {
        let len = self.len()?;
        let bytes = self.take(len)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
    fn remaining(&self) -> u64 {
        self.bytes.len().saturating_sub(self.at) as u64
    }
}

/// Size in bytes of a fixed-size value type, `None` for string and array.
fn fixed_size(value_type: u32) -> Result<Option<u64>, String> {
    Ok(match value_type {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        8 | 9 => None,
        other => return Err(format!("unknown metadata value type {other}")),
    })
}

/// One metadata value: strings are kept (templates live there), everything else skipped.
enum Value {
    Text(String),
    Other,
}

fn read_value(cursor: &mut Cursor<'_>, value_type: u32, budget: &mut u64) -> Result<Value, String> {
    if let Some(size) = fixed_size(value_type)? {
        cursor.take(size)?;
        return Ok(Value::Other);
    }
    if value_type == 8 {
        return cursor.string().map(Value::Text);
    }
    let element_type = cursor.u32()?;
    let count = cursor.len()?;
    *budget = budget
        .checked_sub(count)
        .ok_or_else(|| format!("arrays hold more than {MAX_ARRAY_ELEMENTS} elements in all"))?;
    match fixed_size(element_type)? {
        Some(size) => {
            let total = size
                .checked_mul(count)
                .ok_or("array size overflows".to_string())?;
            cursor.take(total)?;
        }
        None if element_type == 9 => return Err("arrays of arrays are not read".to_string()),
        None => {
            // Each string needs at least its length field: a cheap check before looping.
            if count > cursor.remaining() / 4 {
                return Err(format!("array of {count} strings cannot fit in the file"));
            }
            for _ in 0..count {
                cursor.string()?;
            }
        }
    }
    Ok(Value::Other)
}

/// The parsed metadata: every string-valued key, in file order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    pub version: u32,
    pub big_endian: bool,
    pub tensor_count: u64,
    pub strings: Vec<(String, String)>,
    pub keys: Vec<String>,
}

/// Parse the header, the metadata and the tensor descriptions, or say why they cannot be.
pub fn parse(bytes: &[u8]) -> Result<Metadata, String> {
    parse_with(bytes, true)
}

/// [`parse`], reading the tensor descriptions only when `tensors` is set (a file prefix may end
/// inside them).
fn parse_with(bytes: &[u8], tensors: bool) -> Result<Metadata, String> {
    if !bytes.starts_with(MAGIC) {
        return Err("missing GGUF magic".to_string());
    }
    let raw_version = bytes
        .get(4..8)
        .map(|v| [v[0], v[1], v[2], v[3]])
        .ok_or("truncated before the version")?;
    let little = u32::from_le_bytes(raw_version);
    let big = u32::from_be_bytes(raw_version);
    let (version, big_endian) = match (little, big) {
        (1..=3, _) => (little, false),
        (_, 1..=3) => (big, true),
        _ => return Err(format!("unknown GGUF version {little}")),
    };
    let mut cursor = Cursor {
        bytes,
        at: 8,
        big_endian,
        narrow: version == 1,
    };
    let tensor_count = cursor.len()?;
    let kv_count = cursor.len()?;
    if kv_count > MAX_KV || tensor_count > MAX_TENSORS {
        return Err(format!(
            "{kv_count} metadata entries and {tensor_count} tensors are more than the scanner reads"
        ));
    }
    let mut metadata = Metadata {
        version,
        big_endian,
        tensor_count,
        ..Metadata::default()
    };
    let mut budget = MAX_ARRAY_ELEMENTS;
    for index in 0..kv_count {
        let key = cursor
            .string()
            .map_err(|error| format!("metadata entry {index}: {error}"))?;
        let value_type = cursor.u32()?;
        match read_value(&mut cursor, value_type, &mut budget)
            .map_err(|error| format!("metadata `{key}`: {error}"))?
        {
            Value::Text(text) => metadata.strings.push((key.clone(), text)),
            Value::Other => {}
        }
        metadata.keys.push(key);
    }
    if !tensors {
        return Ok(metadata);
    }
    for index in 0..tensor_count {
        let what = |error: String| format!("tensor {index}: {error}");
        cursor.string().map_err(what)?;
        let dims = cursor.u32().map_err(what)?;
        if dims > 8 {
            return Err(format!("tensor {index} has {dims} dimensions"));
        }
        for _ in 0..dims {
            cursor.len().map_err(what)?;
        }
        cursor.u32().map_err(what)?;
        cursor.u64().map_err(what)?;
    }
    Ok(metadata)
}

/// Names that only template-injection payloads use: reaching Python objects' internals,
/// processes and code evaluation. Matched case-insensitively.
const INJECTION_MARKERS: &[&str] = &[
    "__class__",
    "__globals__",
    "__subclasses__",
    "__builtins__",
    "__import__",
    "__init__",
    "__mro__",
    "__base__",
    "__bases__",
    "__dict__",
    "__getattribute__",
    "__getitem__",
    "__reduce",
    "__code__",
    "func_globals",
    "f_globals",
    ".mro(",
    "mro()",
    "popen",
    "os.system",
    "subprocess",
    "import_module",
    "eval(",
    "exec(",
    "compile(",
    "\\x5f",
    "\\u005f",
    "\\137",
];

/// Constructs used to build such payloads piece by piece, never needed to format a chat.
const SUSPICIOUS_MARKERS: &[&str] = &[
    "|attr", "| attr", "attr(", "lipsum", "cycler", "joiner", "self.", "self|", "request.",
    "config.", "|format", ".format(", "~'_", "~ '_", "~\"_", "~ \"_", "'_'", "\"_\"",
];

/// What a chat template needs reported: `(rule, reason)`, worst first. The template is read
/// token by token ([`crate::jinja`]), which sees through escapes and computed attribute names;
/// the marker lists catch the rest.
pub fn check_template(template: &str) -> Option<(RuleId, String)> {
    match crate::jinja::check(template) {
        Some(crate::jinja::Verdict::Injection(reason)) => {
            return Some((RuleId::GgufTemplateInjection, reason))
        }
        Some(crate::jinja::Verdict::Unreadable(reason)) => {
            return Some((
                RuleId::GgufTemplateSuspicious,
                format!("cannot verify: the template cannot be tokenised ({reason})"),
            ))
        }
        None => {}
    }
    let lower = template.to_ascii_lowercase();
    let compact: String = lower.chars().filter(|ch| !ch.is_whitespace()).collect();
    INJECTION_MARKERS
        .iter()
        .find(|marker| lower.contains(*marker) || compact.contains(*marker))
        .map(|marker| {
            (
                RuleId::GgufTemplateInjection,
                format!("contains `{}`", marker.escape_debug()),
            )
        })
        .or_else(|| {
            SUSPICIOUS_MARKERS
                .iter()
                .find(|marker| lower.contains(*marker) || compact.contains(*marker))
                .map(|marker| {
                    (
                        RuleId::GgufTemplateSuspicious,
                        format!("contains `{}`", marker.escape_debug()),
                    )
                })
        })
}

/// Scan a GGUF file.
pub fn scan(bytes: &[u8], location: &Location) -> Vec<Finding> {
    scan_parsed(parse(bytes), location)
}

/// Scan the first [`METADATA_PREFIX_BYTES`] of a larger GGUF file: the metadata must fit in them.
pub fn scan_metadata(prefix: &[u8], location: &Location) -> Vec<Finding> {
    scan_parsed(parse_with(prefix, false), location)
}

fn scan_parsed(parsed: Result<Metadata, String>, location: &Location) -> Vec<Finding> {
    let metadata = match parsed {
        Ok(metadata) => metadata,
        Err(reason) => {
            return vec![Finding {
                severity: Severity::High,
                rule: RuleId::GgufMalformed,
                message: format!(
                    "cannot verify: the GGUF metadata cannot be read ({reason}); its chat \
                     template was not checked"
                ),
                location: location.clone(),
            }]
        }
    };
    let mut findings = Vec::new();
    for (key, value) in &metadata.strings {
        if !key.starts_with("tokenizer.chat_template") {
            continue;
        }
        if let Some((rule, reason)) = check_template(value) {
            let mut location = location.clone();
            location.tensor = Some(key.clone());
            let severity = rule.default_severity();
            findings.push(Finding {
                severity,
                rule,
                message: format!(
                    "the chat template `{key}` {reason}: {}",
                    if reason.starts_with("cannot verify") {
                        "what the template does was not checked"
                    } else if rule == RuleId::GgufTemplateInjection {
                        "Jinja template injection reaches Python internals and runs code when a \
                         chat is formatted"
                    } else {
                        "a construct used to assemble template-injection payloads; legitimate \
                         chat templates do not need it"
                    }
                ),
                location,
            });
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gguf(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(0u64.to_le_bytes());
        out.extend((entries.len() as u64).to_le_bytes());
        for (key, value) in entries {
            out.extend((key.len() as u64).to_le_bytes());
            out.extend(key.as_bytes());
            out.extend(8u32.to_le_bytes());
            out.extend((value.len() as u64).to_le_bytes());
            out.extend(value.as_bytes());
        }
        out
    }

    #[test]
    fn templates_are_checked() {
        let benign = gguf(&[(
            "tokenizer.chat_template",
            "{% for message in messages %}{{ message['role'] + ': ' + message['content'] }}{% endfor %}",
        )]);
        assert_eq!(scan(&benign, &Location::default()), Vec::new());
        let evil = gguf(&[(
            "tokenizer.chat_template",
            "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        )]);
        let findings = scan(&evil, &Location::default());
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].rule, RuleId::GgufTemplateInjection);
        let split = gguf(&[(
            "tokenizer.chat_template.tool_use",
            "{{ x|attr('_'~'_cla'~'ss_'~'_') }}",
        )]);
        // The `attr` filter reads any attribute: the token check calls it injection.
        assert_eq!(
            scan(&split, &Location::default())[0].rule,
            RuleId::GgufTemplateInjection
        );
        let unreadable = gguf(&[("tokenizer.chat_template", "{{ ()['\\N{LOW LINE}'] }}")]);
        let findings = scan(&unreadable, &Location::default());
        assert_eq!(findings[0].rule, RuleId::GgufTemplateSuspicious);
        assert!(findings[0].message.contains("cannot verify"));
    }

    #[test]
    fn truncated_metadata_is_high() {
        let mut bytes = gguf(&[("general.name", "x")]);
        bytes.truncate(bytes.len() - 1);
        assert_eq!(
            scan(&bytes, &Location::default())[0].rule,
            RuleId::GgufMalformed
        );
    }
}
