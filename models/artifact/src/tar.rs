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

/// Whether `bytes` starts with a tar header: the `ustar` magic, or (old V7 archives, which
/// Python's tarfile still reads) a header whose checksum is right and whose name is text.
pub fn looks_like(bytes: &[u8]) -> bool {
    let Some(header) = bytes.get(..BLOCK) else {
        return false;
    };
    if header.get(257..262) == Some(b"ustar".as_slice()) {
        return true;
    }
    header.first().is_some_and(|&first| first != 0)
        && header.get(..100).is_some_and(|name| {
            name.iter()
                .all(|&byte| byte == 0 || (0x20..0x7f).contains(&byte))
        })
        && checksum_ok(header)
}

fn checksum_ok(header: &[u8]) -> bool {
    let stored = parse_number(header.get(148..156).unwrap_or(&[]));
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
    // tarfile also accepts the signed sum some old tars wrote.
    let signed: i64 = header
        .iter()
        .enumerate()
        .map(|(index, &byte)| {
            if (148..156).contains(&index) {
                i64::from(b' ')
            } else {
                i64::from(byte as i8)
            }
        })
        .sum();
    stored == Some(computed) || stored.is_some_and(|stored| i64::try_from(stored) == Ok(signed))
}

/// The records of a pax extended header, `length key=value\n` each, as tarfile reads them:
/// the length counts the whole record, so values may hold newlines.
fn pax_records(data: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        if data
            .get(at..)
            .is_some_and(|rest| rest.iter().all(|&byte| byte == 0))
        {
            break;
        }
        let rest = data.get(at..).unwrap_or(&[]);
        let space = rest
            .iter()
            .position(|&byte| byte == b' ')
            .ok_or("a pax record has no length")?;
        let length: usize = std::str::from_utf8(rest.get(..space).unwrap_or(&[]))
            .ok()
            .and_then(|text| text.parse().ok())
            .filter(|&length| length > space + 1)
            .ok_or("a pax record length is not a number")?;
        let record = rest
            .get(space + 1..length)
            .ok_or("a pax record runs past its header")?;
        let record = record
            .strip_suffix(b"\n")
            .ok_or("a pax record does not end in a newline")?;
        let text = String::from_utf8_lossy(record);
        let (key, value) = text.split_once('=').ok_or("a pax record has no `=`")?;
        records.push((key.to_string(), value.to_string()));
        at += length;
    }
    Ok(records)
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
    let mut listing = Vec::new();
    let mut findings = scan_listing(bytes, location, &mut listing);
    let has = |wanted: &str| listing.iter().any(|(name, _, _)| name == wanted);
    // `torch.load`'s first format (PyTorch before 0.4): a tar whose `storages` and `tensors`
    // members alternate pickles with raw bytes whose length only the pickles tell, each read by
    // its own `pickle.load`. The scanner walks the pickles up to the first raw block; the ones
    // after it are not framed, so they cannot be verified.
    let interleaved: Vec<&str> = ["storages", "tensors"]
        .into_iter()
        .filter(|name| has(name))
        .collect();
    if has("pickle") && !interleaved.is_empty() {
        findings.push(finding(
            location,
            interleaved.first().copied(),
            0,
            Severity::High,
            RuleId::TorchLegacyTar,
            format!(
                "cannot verify: a torch.load tar archive (PyTorch's pre-0.4 format) whose {} \
                 member interleaves pickles with raw storage bytes; torch.load unpickles every \
                 record, the scanner only those before the first raw block",
                interleaved.join(" and ")
            ),
        ));
    }
    findings
}

/// The members as the scanner reads them (name, size, type flag), in archive order: what the
/// differential tests compare with Python's `tarfile`.
pub fn members(bytes: &[u8]) -> Vec<(String, u64, u8)> {
    let mut listing = Vec::new();
    scan_listing(bytes, &Location::default(), &mut listing);
    listing
}

fn scan_listing(
    bytes: &[u8],
    location: &Location,
    listing: &mut Vec<(String, u64, u8)>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut at = 0usize;
    let mut long_name: Option<String> = None;
    let mut long_link: Option<String> = None;
    // Extended header records for the next member (`x`) and for all later ones (`g`).
    let mut pax: Vec<(String, String)> = Vec::new();
    let mut global_pax: Vec<(String, String)> = Vec::new();
    let mut names = std::collections::HashSet::new();
    let differential =
        |findings: &mut Vec<Finding>, member: Option<&str>, at: usize, message: String| {
            findings.push(finding(
                location,
                member,
                at,
                Severity::High,
                RuleId::TarReaderDifferential,
                message,
            ));
        };
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
        if !checksum_ok(header) {
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
        let Some(header_size) = parse_number(field(124, 136)) else {
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
        let mut link_target = c_string(field(157, 257));
        if let Some(long) = long_link.take() {
            link_target = long;
        }
        // pax records override the header, the member's own after the global ones; tarfile
        // honours `path`, `linkpath` and `size` (and reads the data with the pax size).
        let mut size = header_size;
        let is_extension = matches!(type_flag, b'x' | b'g' | b'L' | b'K' | b'X');
        if !is_extension {
            let records: Vec<(String, String)> =
                global_pax.iter().chain(pax.iter()).cloned().collect();
            pax.clear();
            for (key, value) in records {
                match key.as_str() {
                    "path" => name = value,
                    "linkpath" => link_target = value,
                    "size" => match value.parse::<u64>() {
                        Ok(pax_size) if pax_size != header_size => {
                            differential(&mut findings, Some(&name), at, format!("a pax header overrides the member's size ({header_size} bytes in the header, {pax_size} in the pax record): readers that ignore pax headers read different data"));
                            size = pax_size;
                        }
                        Ok(_) => {}
                        Err(_) => {
                            differential(&mut findings, Some(&name), at, format!("a pax size record `{}` is not a number; tarfile refuses the archive", value.escape_debug()));
                            return findings;
                        }
                    },
                    key if key.starts_with("GNU.sparse") => {
                        differential(&mut findings, Some(&name), at, "a pax GNU sparse member: the scanner does not reassemble sparse data, so its content was not checked".to_string());
                    }
                    _ => {}
                }
            }
        }
        let data_at = at + BLOCK;
        // tarfile skips data blocks only for regular (and unknown) types and extension
        // headers; a link, device or folder with a size has its "data" read as headers.
        if (b'1'..=b'6').contains(&type_flag) && size > 0 {
            differential(&mut findings, Some(&name), at, format!("a link, device or folder header declares {size} bytes of data: tarfile reads the blocks after it as headers, other tools skip them"));
            size = 0;
        }
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
            b'K' => {
                long_link = Some(c_string(data));
                continue;
            }
            b'x' | b'X' | b'g' => {
                match pax_records(data) {
                    Ok(records) if type_flag == b'g' => global_pax.extend(records),
                    Ok(records) => pax = records,
                    Err(reason) => {
                        findings.push(finding(location, None, at, Severity::High, RuleId::TarMalformed, format!("a pax extended header cannot be read ({reason}); tarfile refuses such archives, other tools read them differently")));
                        return findings;
                    }
                }
                continue;
            }
            _ => {}
        }
        listing.push((name.clone(), data.len() as u64, type_flag));
        if !names.insert(name.clone()) && type_flag != b'5' {
            differential(&mut findings, Some(&name), at, "two members share this name: tarfile's getmember and extraction take the last, scanners may check the first".to_string());
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
                let target = link_target.clone();
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
            b'5' => {}
            b'S' | b'M' | b'V' => differential(
                &mut findings,
                Some(&name),
                at,
                format!(
                    "member has GNU type `{}` (sparse, multi-volume or volume label), which the \
                     scanner does not read; its content was not checked",
                    char::from(type_flag)
                ),
            ),
            // tarfile reads every other type, known or not, as a regular file.
            _ => {
                if data.is_empty() {
                    continue;
                }
                match nested_location(location, &name) {
                    Some(member_location) => findings.extend(crate::scan::scan_bytes(data, &member_location)),
                    None => findings.push(finding(location, None, at, Severity::High, RuleId::NestingTooDeep, format!("member `{name}` nests more than {} containers deep; it was not checked", crate::zip::MAX_NESTING))),
                }
            }
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
