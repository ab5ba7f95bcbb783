//! Tar archives (legacy `torch.save` tar checkpoints, tarred model folders), walked header by
//! header with bounds checks; every member goes back to [`crate::scan::scan_bytes`].

use crate::zip::nested_location;
use crate::{Finding, Location, RuleId, Severity};

const BLOCK: usize = 512;
/// Most members read from one archive.
pub const MAX_MEMBERS: usize = 1 << 18;

/// A numeric header field: octal text, or GNU base-256 when the top bit is set.
fn parse_number(field: &[u8]) -> Option<u64> {
    match field.first() {
        Some(&first) if first & 0x80 != 0 => {
            if first != 0x80 {
                return None; // negative or oversized base-256 values
            }
            field.iter().skip(1).try_fold(0u64, |value, &byte| {
                value.checked_mul(256)?.checked_add(u64::from(byte))
            })
        }
        _ => {
            let text = std::str::from_utf8(field).ok()?;
            let text = text.trim_matches(|ch: char| ch == '\0' || ch == ' ');
            if text.is_empty() {
                return Some(0);
            }
            u64::from_str_radix(text, 8).ok()
        }
    }
}

fn c_string(field: &[u8]) -> String {
    let end = field
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(field.len());
    String::from_utf8_lossy(field.get(..end).unwrap_or(field)).into_owned()
}

/// The value of `path=` in a pax extended header, if any.
fn pax_path(data: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    text.lines().find_map(|line| {
        let (_, record) = line.split_once(' ')?;
        record.strip_prefix("path=").map(str::to_string)
    })
}

fn finding(
    location: &Location,
    member: Option<&str>,
    offset: usize,
    severity: Severity,
    rule: RuleId,
    message: String,
) -> Finding {
    let mut location = member
        .and_then(|member| nested_location(location, member))
        .unwrap_or_else(|| location.clone());
    location.offset = Some(offset as u64);
    Finding {
        severity,
        rule,
        message,
        location,
    }
}

/// Scan a tar archive and every member in it.
pub fn scan(bytes: &[u8], location: &Location) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut at = 0usize;
    let mut long_name: Option<String> = None;
    for _ in 0..MAX_MEMBERS {
        let Some(header) = bytes.get(at..at.saturating_add(BLOCK)) else {
            if at < bytes.len() {
                findings.push(finding(
                    location,
                    None,
                    at,
                    Severity::High,
                    RuleId::TarMalformed,
                    "the archive ends inside a header block".to_string(),
                ));
            }
            return findings;
        };
        if header.iter().all(|&byte| byte == 0) {
            return findings; // end-of-archive marker
        }
        let field = |from: usize, to: usize| header.get(from..to).unwrap_or(&[]);
        let stored_checksum = parse_number(field(148, 156));
        let computed: u64 = header
            .iter()
            .enumerate()
            .map(|(index, &byte)| {
                if (148..156).contains(&index) {
                    u64::from(b' ')
                } else {
                    u64::from(byte)
                }
            })
            .sum();
        if stored_checksum != Some(computed) {
            findings.push(finding(
                location,
                None,
                at,
                Severity::High,
                RuleId::TarMalformed,
                "a tar header's checksum is wrong; the rest of the archive was not checked"
                    .to_string(),
            ));
            return findings;
        }
        let Some(size) = parse_number(field(124, 136)) else {
            findings.push(finding(
                location,
                None,
                at,
                Severity::High,
                RuleId::TarMalformed,
                "a tar header's size field is not a number".to_string(),
            ));
            return findings;
        };
        let type_flag = header.get(156).copied().unwrap_or(0);
        let mut name = c_string(field(0, 100));
        let prefix = c_string(field(345, 500));
        if !prefix.is_empty() && field(257, 263) == b"ustar\0" {
            name = format!("{prefix}/{name}");
        }
        if let Some(long) = long_name.take() {
            name = long;
        }
        let data_at = at + BLOCK;
        let data = usize::try_from(size)
            .ok()
            .and_then(|len| bytes.get(data_at..data_at.checked_add(len)?));
        let Some(data) = data else {
            findings.push(finding(
                location,
                Some(&name),
                at,
                Severity::High,
                RuleId::TarMalformed,
                format!("member declares {size} bytes but the archive ends first"),
            ));
            return findings;
        };
        let padded = data.len().div_ceil(BLOCK).saturating_mul(BLOCK);
        at = data_at.saturating_add(padded);
        match type_flag {
            b'L' => {
                long_name = Some(c_string(data));
                continue;
            }
            b'x' => {
                long_name = pax_path(data);
                continue;
            }
            b'g' | b'K' => continue,
            _ => {}
        }
        if let Some(reason) = unsafe_tar_name(&name) {
            findings.push(finding(
                location,
                Some(&name),
                at,
                Severity::High,
                RuleId::TarPathTraversal,
                format!(
                    "member name `{}` {reason}: extracting it writes outside the target folder",
                    name.escape_debug()
                ),
            ));
        }
        match type_flag {
            b'1' | b'2' => {
                let target = c_string(field(157, 257));
                findings.push(finding(location, Some(&name), at, Severity::High, RuleId::TarLink, format!("member is a {} to `{}`: extracting it can point later writes or reads anywhere on disk", if type_flag == b'2' { "symbolic link" } else { "hard link" }, target.escape_debug())));
            }
            b'3' | b'4' | b'6' => findings.push(finding(
                location,
                Some(&name),
                at,
                Severity::High,
                RuleId::TarDevice,
                "member is a device node or FIFO".to_string(),
            )),
            b'0' | 0 | b'7' => {
                if data.is_empty() {
                    continue;
                }
                match nested_location(location, &name) {
                    Some(member_location) => findings.extend(crate::scan::scan_bytes(data, &member_location)),
                    None => findings.push(finding(location, None, at, Severity::High, RuleId::NestingTooDeep, format!("member `{name}` nests more than {} containers deep; it was not checked", crate::zip::MAX_NESTING))),
                }
            }
            _ => {}
        }
    }
    findings.push(finding(
        location,
        None,
        at,
        Severity::High,
        RuleId::TarTooManyMembers,
        format!("more than {MAX_MEMBERS} members; the rest were not checked"),
    ));
    findings
}

fn unsafe_tar_name(name: &str) -> Option<&'static str> {
    if name.starts_with('/') {
        return Some("is an absolute path");
    }
    if name.split(['/', '\\']).any(|part| part == "..") {
        return Some("climbs out of the extraction folder with `..`");
    }
    None
}
