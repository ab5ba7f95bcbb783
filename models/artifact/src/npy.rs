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
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    let descr_at = header
        .find("'descr'")
        .or_else(|| header.find("\"descr\""))
        .ok_or("header has no 'descr'")?;
    let after = header.get(descr_at + 7..).unwrap_or("");
    let after = after
        .trim_start()
        .strip_prefix(':')
        .ok_or("'descr' has no value")?
        .trim_start();
    let descr = if after.starts_with('[') {
        // Structured dtype: up to the matching bracket.
        let mut depth = 0i32;
        let mut end = None;
        for (index, ch) in after.char_indices() {
            match ch {
                '[' | '(' => depth += 1,
                ']' | ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(index + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        after
            .get(..end.ok_or("unterminated structured 'descr'")?)
            .unwrap_or(after)
            .to_string()
    } else {
        let quote = after.chars().next().ok_or("empty 'descr'")?;
        if quote != '\'' && quote != '"' {
            return Err("'descr' is not a string".to_string());
        }
        let rest = after.get(1..).unwrap_or("");
        let close = rest.find(quote).ok_or("unterminated 'descr'")?;
        rest.get(..close).unwrap_or("").to_string()
    };
    let has_objects = descr_has_objects(&descr);
    Ok(NpyHeader {
        descr,
        has_objects,
        data_offset: end,
    })
}

/// Whether a dtype string (or structured list) contains the object type `O`.
fn descr_has_objects(descr: &str) -> bool {
    if !descr.starts_with('[') {
        return is_object_code(descr);
    }
    // Structured: each field is `('name', 'type'[, shape])`, the type possibly a nested list of
    // fields. The type is the second quoted token after each `(`; names are never types.
    descr.split('(').skip(1).any(|field| {
        let field = field.split(')').next().unwrap_or(field);
        field
            .split(['\'', '"'])
            .skip(1)
            .step_by(2)
            .nth(1)
            .is_some_and(is_object_code)
    })
}

fn is_object_code(token: &str) -> bool {
    let code = token.trim_start_matches(['<', '>', '|', '=']);
    code == "O"
        || code
            .strip_prefix('O')
            .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|ch| ch.is_ascii_digit()))
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
    fn broken_headers_are_high() {
        let findings = scan(b"\x93NUMPY\x01\x00\xff\xff{", &Location::default());
        assert_eq!(findings[0].rule, RuleId::NpyMalformed);
    }
}
