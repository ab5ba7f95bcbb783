//! NumPy `.npy` arrays. Numeric arrays are raw bytes and pass; an object array's data is a pickle
//! (NumPy's `allow_pickle=True` path), scanned as one.

use crate::{Finding, Location, RuleId, Severity};

const MAGIC: &[u8] = b"\x93NUMPY";

/// The parts of an `.npy` header the scanner needs.
#[derive(Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// The `descr` entry as written (`'<f4'`, `'|O'`, or a structured list).
    pub descr: String,
    /// Whether any field has the object dtype `O`, so the data is a pickle.
    pub has_objects: bool,
    /// Where the array data starts.
    pub data_offset: usize,
}

/// Parse the header, or say why it cannot be.
pub fn parse_header(bytes: &[u8]) -> Result<NpyHeader, String> {
    if !bytes.starts_with(MAGIC) {
        return Err("missing \\x93NUMPY magic".to_string());
    }
    let major = *bytes.get(6).ok_or("truncated before the version")?;
    let (header_len, header_at) = match major {
        1 => {
            let len = bytes.get(8..10).ok_or("truncated header length")?;
            (usize::from(u16::from_le_bytes([len[0], len[1]])), 10usize)
        }
        2 | 3 => {
            let len = bytes.get(8..12).ok_or("truncated header length")?;
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
            (
                usize::try_from(len).map_err(|_| "header length too large")?,
                12usize,
            )
        }
        other => return Err(format!("unknown format version {other}")),
    };
    let end = header_at
        .checked_add(header_len)
        .ok_or("header length overflows")?;
    let header = bytes
        .get(header_at..end)
        .ok_or("header runs past the end of the file")?;
    // NumPy decodes version 1 and 2 headers as latin-1 and version 3 as UTF-8, then reads them
    // with `ast.literal_eval`: any Python literal layout (either quote style, spacing, trailing
    // commas, duplicate keys where the last wins) means the same dictionary.
    let header: String = if major == 3 {
        std::str::from_utf8(header)
            .map_err(|_| "version 3 header is not UTF-8")?
            .to_string()
    } else {
        header.iter().map(|&byte| char::from(byte)).collect()
    };
    let mut parser = Literal {
        text: header.as_bytes(),
        at: 0,
        depth: 0,
    };
    let value = parser.value()?;
    parser.skip_space();
    if parser.at != parser.text.len() {
        return Err("text after the header dictionary".to_string());
    }
    let Value::Dict(entries) = value else {
        return Err("header is not a dictionary".to_string());
    };
    let mut descr = None;
    let mut keys = Vec::new();
    for (key, value) in entries {
        let Value::Str(key) = key else {
            return Err("a header key is not a string".to_string());
        };
        if key == "descr" {
            descr = Some(value);
        }
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.sort();
    if keys != ["descr", "fortran_order", "shape"] {
        return Err(format!(
            "header keys are {keys:?}, not exactly descr, fortran_order and shape (NumPy refuses it)"
        ));
    }
    let descr = descr.ok_or("header has no 'descr'")?;
    let has_objects = value_has_objects(&descr, 0)?;
    Ok(NpyHeader {
        descr: descr.render(),
        has_objects,
        data_offset: end,
    })
}

/// A Python literal, as far as `.npy` headers use them.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Other(String),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
}

impl Value {
    fn render(&self) -> String {
        let join = |items: &[Value]| {
            items
                .iter()
                .map(Value::render)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Value::Str(text) => format!("'{text}'"),
            Value::Other(text) => text.clone(),
            Value::List(items) => format!("[{}]", join(items)),
            Value::Tuple(items) => format!("({})", join(items)),
            Value::Dict(_) => "{…}".to_string(),
        }
    }
}

/// Nesting limit for header literals (`ast.literal_eval` has its own recursion limit).
const MAX_DEPTH: usize = 32;

struct Literal<'a> {
    text: &'a [u8],
    at: usize,
    depth: usize,
}

impl Literal<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }
    fn skip_space(&mut self) {
        while self.peek().is_some_and(|byte| byte.is_ascii_whitespace()) {
            self.at += 1;
        }
    }
    fn value(&mut self) -> Result<Value, String> {
        self.skip_space();
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("header literal nests too deeply".to_string());
        }
        let value = match self.peek().ok_or("header ends inside a value")? {
            b'{' => self.sequence(b'}').map(|(pairs, _)| {
                // Pairs are collected as alternating key, value by `sequence`.
                let mut entries = Vec::new();
                let mut iter = pairs.into_iter();
                while let (Some(key), Some(value)) = (iter.next(), iter.next()) {
                    entries.push((key, value));
                }
                Value::Dict(entries)
            }),
            b'[' => self.sequence(b']').map(|(items, _)| Value::List(items)),
            // `(x)` is x itself; `(x,)` and `()` are tuples.
            b'(' => self.sequence(b')').map(|(mut items, comma)| {
                if items.len() == 1 && !comma {
                    items.pop().unwrap_or(Value::Tuple(Vec::new()))
                } else {
                    Value::Tuple(items)
                }
            }),
            b'\'' | b'"' => self.string(StringKind::Text),
            byte if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'+' | b'_' | b'.') => {
                let start = self.at;
                while self.peek().is_some_and(|byte| {
                    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'+' | b'_' | b'.')
                }) {
                    self.at += 1;
                }
                // String prefixes: u'', b'', r'' and their combinations.
                let word = String::from_utf8_lossy(self.text.get(start..self.at).unwrap_or(&[]))
                    .into_owned();
                if matches!(self.peek(), Some(b'\'' | b'"'))
                    && word.len() <= 2
                    && word
                        .chars()
                        .all(|ch| matches!(ch.to_ascii_lowercase(), 'u' | 'b' | 'r'))
                {
                    let lower = word.to_ascii_lowercase();
                    self.string(if lower.contains('r') {
                        StringKind::Raw
                    } else if lower.contains('b') {
                        StringKind::Bytes
                    } else {
                        StringKind::Text
                    })
                } else {
                    Ok(Value::Other(word))
                }
            }
            other => Err(format!("unexpected `{}` in the header", char::from(other))),
        };
        self.depth -= 1;
        value
    }
    /// Items up to `close`, commas between and optionally after; for a dict, `key: value`
    /// pairs come back flattened.
    fn sequence(&mut self, close: u8) -> Result<(Vec<Value>, bool), String> {
        self.at += 1;
        let mut items = Vec::new();
        let mut comma = false;
        loop {
            self.skip_space();
            if self.peek() == Some(close) {
                self.at += 1;
                break;
            }
            items.push(self.value()?);
            if close == b'}' {
                self.skip_space();
                if self.peek() != Some(b':') {
                    return Err("a header dictionary entry has no `:`".to_string());
                }
                self.at += 1;
                items.push(self.value()?);
            }
            self.skip_space();
            match self.peek() {
                Some(b',') => {
                    self.at += 1;
                    comma = true;
                }
                Some(byte) if byte == close => {}
                _ => return Err("header literal is missing a `,` or a closing bracket".to_string()),
            }
        }
        Ok((items, comma))
    }
    fn string(&mut self, kind: StringKind) -> Result<Value, String> {
        let quote = self.peek().ok_or("header ends inside a string")?;
        let triple = self.text.get(self.at..self.at + 3) == Some([quote; 3].as_slice());
        self.at += if triple { 3 } else { 1 };
        let mut out = Vec::new();
        loop {
            let byte = self.peek().ok_or("unterminated string in the header")?;
            if byte == quote
                && (!triple || self.text.get(self.at..self.at + 3) == Some([quote; 3].as_slice()))
            {
                self.at += if triple { 3 } else { 1 };
                break;
            }
            if byte == b'\\' {
                // Python's escapes, decoded as `ast.literal_eval` decodes them: `'\x4f'` is
                // `'O'`. Raw strings keep the backslash.
                self.at += 1;
                if kind == StringKind::Raw {
                    // A raw string keeps the backslash and the character after it, which
                    // cannot end the string.
                    out.push(b'\\');
                    if let Some(next) = self.peek() {
                        out.push(next);
                        self.at += 1;
                    }
                    continue;
                }
                if let Some(decoded) = self.escape(kind)? {
                    let mut buffer = [0u8; 4];
                    out.extend_from_slice(decoded.encode_utf8(&mut buffer).as_bytes());
                }
                continue;
            }
            if byte == b'\n' && !triple {
                return Err("a header string spans lines".to_string());
            }
            out.push(byte);
            self.at += 1;
        }
        Ok(Value::Str(String::from_utf8_lossy(&out).into_owned()))
    }
}

impl Literal<'_> {
    /// One escape after a backslash, as Python's string literals decode it (`None` for a
    /// backslash-newline, which vanishes). `\\N{name}` needs Unicode's name table, which the
    /// scanner does not carry: refused, so a header spelt with one fails closed.
    fn escape(&mut self, kind: StringKind) -> Result<Option<char>, String> {
        let byte = self.peek().ok_or("header ends inside an escape")?;
        self.at += 1;
        let simple = match byte {
            b'\n' => return Ok(None),
            b'\\' => Some('\\'),
            b'\'' => Some('\''),
            b'"' => Some('"'),
            b'a' => Some('\u{7}'),
            b'b' => Some('\u{8}'),
            b'f' => Some('\u{c}'),
            b'n' => Some('\n'),
            b'r' => Some('\r'),
            b't' => Some('\t'),
            b'v' => Some('\u{b}'),
            _ => None,
        };
        if simple.is_some() {
            return Ok(simple);
        }
        let hex = |parser: &mut Self, digits: usize| -> Result<char, String> {
            let text = parser
                .text
                .get(parser.at..parser.at + digits)
                .and_then(|digits| std::str::from_utf8(digits).ok())
                .filter(|text| text.chars().all(|ch| ch.is_ascii_hexdigit()))
                .ok_or("a truncated \\x, \\u or \\U escape in the header")?;
            parser.at += digits;
            u32::from_str_radix(text, 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| "an escape names no character".to_string())
        };
        match byte {
            b'0'..=b'7' => {
                let mut value = u32::from(byte - b'0');
                for _ in 0..2 {
                    match self.peek() {
                        Some(digit @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(digit - b'0');
                            self.at += 1;
                        }
                        _ => break,
                    }
                }
                char::from_u32(value)
                    .map(Some)
                    .ok_or_else(|| "an octal escape names no character".to_string())
            }
            b'x' => hex(self, 2).map(Some),
            b'u' if kind == StringKind::Text => hex(self, 4).map(Some),
            b'U' if kind == StringKind::Text => hex(self, 8).map(Some),
            b'N' if kind == StringKind::Text => {
                Err("a \\N{…} escape, which the scanner does not decode".to_string())
            }
            other => {
                // Not an escape: Python keeps the backslash and the character.
                self.at -= 1;
                let _ = other;
                Ok(Some('\\'))
            }
        }
    }
}

/// How a quoted literal's backslashes read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StringKind {
    Text,
    Bytes,
    Raw,
}

/// Whether a `descr` (as `numpy.lib.format.descr_to_dtype` reads it) has an object field.
/// Anything it would not read is an error, never a pass.
fn value_has_objects(descr: &Value, depth: usize) -> Result<bool, String> {
    if depth > MAX_DEPTH {
        return Err("'descr' nests too deeply".to_string());
    }
    match descr {
        Value::Str(text) => dtype_string_has_objects(text),
        // (base dtype, shape)
        Value::Tuple(items) => match items.first() {
            Some(base) => value_has_objects(base, depth + 1),
            None => Err("an empty tuple as 'descr'".to_string()),
        },
        // [(name, dtype), (name, dtype, shape), …]; a name may be a (title, name) pair.
        Value::List(fields) => {
            let mut any = false;
            for field in fields {
                let (Value::Tuple(parts) | Value::List(parts)) = field else {
                    return Err("a structured 'descr' field is not a tuple".to_string());
                };
                let dtype = parts
                    .get(1)
                    .filter(|_| (2..=3).contains(&parts.len()))
                    .ok_or("a structured 'descr' field is not (name, dtype[, shape])")?;
                any |= value_has_objects(dtype, depth + 1)?;
            }
            Ok(any)
        }
        other => Err(format!(
            "'descr' is {}, which NumPy does not read",
            other.render()
        )),
    }
}

/// Whether a dtype string (`'<f4'`, `'|O'`, `'object'`, comma-separated `'i4,O'`, with
/// sub-array shapes `'(2,)O'` or repeat counts `'2O'`) holds objects, as `numpy.dtype` reads it.
///
/// An allow-list, not a search for `O`: every token must be a type NumPy spells without
/// objects (`'<f8'`, `'|S8'`, `'<M8[s]'`, `'float32'`, …) or one that holds them (`'O'`,
/// `'object'`, and `'T'`, NumPy 2's StringDType, whose `hasobject` is true, so `np.load`
/// unpickles its data). Anything else is an error: the scanner cannot tell, so it fails closed.
fn dtype_string_has_objects(text: &str) -> Result<bool, String> {
    let mut any = false;
    for token in split_top_level_commas(text) {
        any |= dtype_token_has_objects(token)?;
    }
    Ok(any)
}

/// Split at commas outside parentheses (`'(2,3)i4, O'` is two fields).
fn split_top_level_commas(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0usize;
    for (at, ch) in text.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(text.get(start..at).unwrap_or(""));
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(text.get(start..).unwrap_or(""));
    // `'i4,'`: a trailing comma adds no field.
    if parts.len() > 1 && parts.last().is_some_and(|last| last.trim().is_empty()) {
        parts.pop();
    }
    parts
}

/// Type names NumPy accepts that hold no objects.
const PLAIN_TYPE_NAMES: &[&str] = &[
    "bool",
    "bool_",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "float96",
    "float128",
    "complex64",
    "complex128",
    "complex192",
    "complex256",
    "int",
    "float",
    "complex",
    "str",
    "str_",
    "bytes",
    "bytes_",
    "void",
    "datetime64",
    "timedelta64",
    "half",
    "single",
    "double",
    "longdouble",
    "byte",
    "ubyte",
    "short",
    "ushort",
    "intc",
    "uintc",
    "intp",
    "uintp",
    "long",
    "ulong",
    "longlong",
    "ulonglong",
    "csingle",
    "cdouble",
    "clongdouble",
    "unicode",
];

fn dtype_token_has_objects(token: &str) -> Result<bool, String> {
    let refuse = || {
        Err(format!(
            "dtype `{}` is not one the scanner knows to be numeric or object",
            token.escape_debug()
        ))
    };
    let mut rest = token.trim_matches(' ');
    rest = rest.trim_start_matches(['<', '>', '|', '=']);
    // A sub-array shape `(2, 3)` or a repeat count `2` before the type.
    if let Some(after) = rest.strip_prefix('(') {
        let Some(close) = after.find(')') else {
            return refuse();
        };
        if !after
            .get(..close)
            .unwrap_or("")
            .chars()
            .all(|ch| ch.is_ascii_digit() || ch == ',' || ch == ' ')
        {
            return refuse();
        }
        rest = after.get(close + 1..).unwrap_or("").trim_start_matches(' ');
    } else {
        rest = rest.trim_start_matches(|ch: char| ch.is_ascii_digit() || ch == ' ');
    }
    rest = rest.trim_start_matches(['<', '>', '|', '=']);
    let code = rest.trim_end_matches(' ');
    if code.is_empty() {
        return refuse();
    }
    let digits_after = |prefix: &str| {
        code.strip_prefix(prefix)
            .is_some_and(|size| size.chars().all(|ch| ch.is_ascii_digit()))
    };
    if digits_after("O") || code == "object" || code == "object_" || code == "T" {
        return Ok(true);
    }
    let mut chars = code.chars();
    let first = chars.next().unwrap_or(' ');
    let after_first = chars.as_str();
    // Datetime and timedelta with a unit: `M8[ns]`, `m8[25s]`, `datetime64[D]`.
    let (head, unit) = match code.split_once('[') {
        Some((head, unit)) => (head, Some(unit)),
        None => (code, None),
    };
    if let Some(unit) = unit {
        let unit_ok = unit.strip_suffix(']').is_some_and(|unit| {
            !unit.is_empty() && unit.chars().all(|ch| ch.is_ascii_alphanumeric())
        });
        let head_ok = matches!(head, "M" | "m" | "M8" | "m8" | "datetime64" | "timedelta64");
        return if unit_ok && head_ok {
            Ok(false)
        } else {
            refuse()
        };
    }
    let plain_code = "?bBhHiIlLqQpPnNefdgFDGSUVaMmcu".contains(first)
        && after_first.chars().all(|ch| ch.is_ascii_digit());
    if plain_code || PLAIN_TYPE_NAMES.contains(&code) {
        return Ok(false);
    }
    refuse()
}

/// Scan an `.npy` file.
pub fn scan(bytes: &[u8], location: &Location) -> Vec<Finding> {
    match parse_header(bytes) {
        Err(reason) => vec![Finding {
            severity: Severity::High,
            rule: RuleId::NpyMalformed,
            message: format!("NumPy header cannot be read ({reason}): whether the data is a pickle cannot be told"),
            location: location.clone(),
        }],
        Ok(header) if header.has_objects => {
            let data = bytes.get(header.data_offset..).unwrap_or(&[]);
            let mut data_location = location.clone();
            data_location.offset = Some(location.offset.unwrap_or(0).saturating_add(header.data_offset as u64));
            let mut findings = vec![Finding {
                severity: Severity::Info,
                rule: RuleId::NpyObjectArray,
                message: format!("object array (dtype {}): its data is a pickle, loaded only with allow_pickle=True; scanned as a pickle", header.descr),
                location: data_location.clone(),
            }];
            findings.extend(crate::pickle::scan(data, &data_location));
            findings
        }
        Ok(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(header: &str) -> Vec<u8> {
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes
    }

    #[test]
    fn object_dtypes_are_found_in_plain_and_structured_descrs() {
        let plain = npy("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }");
        assert!(parse_header(&plain).map(|h| h.has_objects).unwrap_or(false));
        let numeric = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }");
        assert!(!parse_header(&numeric)
            .map(|h| h.has_objects)
            .unwrap_or(true));
        let structured =
            npy("{'descr': [('O', '<f8'), ('b', '|O')], 'fortran_order': False, 'shape': (1,), }");
        let header = parse_header(&structured).unwrap_or_else(|error| panic!("{error}"));
        assert!(header.has_objects, "{header:?}");
        // A field *named* O is not an object field.
        let named = npy("{'descr': [('O', '<f8')], 'fortran_order': False, 'shape': (1,), }");
        assert!(!parse_header(&named).map(|h| h.has_objects).unwrap_or(true));
    }

    #[test]
    fn headers_are_read_as_literal_eval_reads_them() {
        let objects = |header: &str| parse_header(&npy(header)).map(|h| h.has_objects);
        // Double quotes, no trailing comma, odd spacing.
        assert_eq!(
            objects("{\"descr\" :\"|O\",\"fortran_order\":False,\"shape\":(2,)}"),
            Ok(true)
        );
        // Duplicate keys: the last wins.
        assert_eq!(
            objects("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'descr': '|O'}"),
            Ok(true)
        );
        // Comma-separated and sub-array dtype strings, tuple descr, titled fields.
        assert_eq!(
            objects("{'descr': 'i4,O', 'fortran_order': False, 'shape': ()}"),
            Ok(true)
        );
        assert_eq!(
            objects("{'descr': ('|O', (2,)), 'fortran_order': False, 'shape': ()}"),
            Ok(true)
        );
        assert_eq!(
            objects(
                "{'descr': [(('t', 'a'), [('x', 'object')])], 'fortran_order': False, 'shape': ()}"
            ),
            Ok(true)
        );
        assert_eq!(
            objects("{'descr': [('x', '<i4', (2,))], 'fortran_order': False, 'shape': ()}"),
            Ok(false)
        );
        // Extra or missing keys are refused, as NumPy refuses them.
        assert!(objects("{'descr': '<f4', 'fortran_order': False}").is_err());
        assert!(objects("{'descr': '<f4', 'fortran_order': False, 'shape': (), 'x': 1}").is_err());
        // Version 3: UTF-8 with a u32 length.
        let header = "{'descr': [('\u{e9}', '|O')], 'fortran_order': False, 'shape': (1,), }";
        let mut v3 = b"\x93NUMPY\x03\x00".to_vec();
        v3.extend((header.len() as u32).to_le_bytes());
        v3.extend(header.as_bytes());
        assert_eq!(parse_header(&v3).map(|h| h.has_objects), Ok(true));
    }

    #[test]
    fn broken_headers_are_high() {
        let findings = scan(b"\x93NUMPY\x01\x00\xff\xff{", &Location::default());
        assert_eq!(findings[0].rule, RuleId::NpyMalformed);
    }
}
