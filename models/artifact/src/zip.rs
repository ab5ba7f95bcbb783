//! Zip containers (PyTorch checkpoints, `.npz`, anything zipped), parsed by hand.
//!
//! The central directory and local headers are read here with bounds-checked arithmetic rather
//! than through a zip library: hostile archives (lying sizes, overlapping members, flag
//! mismatches, zip64 fields that point anywhere) are exactly the input, and each oddity must
//! become a finding instead of an error that ends the scan. Members are read the way PyTorch
//! and Python's `zipfile` read them (central directory first, data located through the local
//! header), inflated with a cap, and handed back to [`crate::scan::scan_bytes`].

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::Read;

use crate::{Finding, Location, RuleId, Severity};

/// How many containers deep (`a.zip!/b.pt!/archive/data.pkl!/…`) the scanners follow nested
/// content before reporting it as too deep; stops zip quines and pickle-in-pickle chains.
pub const MAX_NESTING: usize = 8;
/// Compression ratio above which a member is a zip bomb (when it inflates past
/// [`BOMB_FLOOR_BYTES`]).
pub const MAX_RATIO: u64 = 100;
/// Members smaller than this are never called bombs, whatever their ratio.
pub const BOMB_FLOOR_BYTES: u64 = 1 << 20;
/// Declared uncompressed total above which an archive is a zip bomb.
pub const MAX_TOTAL_UNCOMPRESSED: u64 = 8 << 30;
/// Most bytes one member is inflated to for scanning.
pub const MAX_INFLATED_MEMBER: u64 = 512 << 20;
/// Most central-directory entries read.
pub const MAX_ENTRIES: usize = 1 << 18;

const LOCAL_SIGNATURE: &[u8; 4] = b"PK\x03\x04";
const CENTRAL_SIGNATURE: &[u8; 4] = b"PK\x01\x02";
const END_SIGNATURE: &[u8; 4] = b"PK\x05\x06";
const END64_LOCATOR_SIGNATURE: &[u8; 4] = b"PK\x06\x07";
const END64_SIGNATURE: &[u8; 4] = b"PK\x06\x06";

/// The location of `member` inside `parent`, or `None` when that would nest deeper than
/// [`MAX_NESTING`]. Shared by every container scanner (zip, tar, pickle).
pub(crate) fn nested_location(parent: &Location, member: &str) -> Option<Location> {
    let depth = parent
        .member
        .as_deref()
        .map_or(0, |path| path.matches("!/").count() + 1);
    if depth >= MAX_NESTING {
        return None;
    }
    let member = match &parent.member {
        Some(outer) => format!("{outer}!/{member}"),
        None => member.to_string(),
    };
    Some(Location {
        file: parent.file.clone(),
        member: Some(member),
        offset: None,
        opcode_index: None,
        tensor: None,
    })
}

/// Bounds-checked little-endian reads from a byte slice.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn bytes(&self, at: usize, len: usize) -> Option<&[u8]> {
        self.0.get(at..at.checked_add(len)?)
    }
    fn u16(&self, at: usize) -> Option<u16> {
        let bytes = self.bytes(at, 2)?;
        Some(u16::from_le_bytes([*bytes.first()?, *bytes.get(1)?]))
    }
    fn u32(&self, at: usize) -> Option<u32> {
        let mut array = [0u8; 4];
        array.copy_from_slice(self.bytes(at, 4)?);
        Some(u32::from_le_bytes(array))
    }
    fn u64(&self, at: usize) -> Option<u64> {
        let mut array = [0u8; 8];
        array.copy_from_slice(self.bytes(at, 8)?);
        Some(u64::from_le_bytes(array))
    }
}

/// One central-directory entry.
#[derive(Debug, Clone)]
struct Entry {
    raw_name: Vec<u8>,
    name: String,
    made_by: u16,
    flags: u16,
    method: u16,
    crc: u32,
    compressed_size: u64,
    uncompressed_size: u64,
    local_offset: u64,
    external_attributes: u32,
}

impl Entry {
    fn encrypted(&self) -> bool {
        self.flags & 1 != 0 || self.method == 99
    }
    fn is_directory(&self) -> bool {
        self.name.ends_with('/') && self.uncompressed_size == 0
    }
    fn is_symlink(&self) -> bool {
        // Unix "made by" host (3) stores st_mode in the top 16 bits of the external attributes.
        (self.made_by >> 8) == 3 && (self.external_attributes >> 16) & 0o170_000 == 0o120_000
    }
}

struct ZipScan<'a> {
    bytes: &'a [u8],
    location: &'a Location,
    findings: Vec<Finding>,
}

impl ZipScan<'_> {
    fn report(
        &mut self,
        severity: Severity,
        rule: RuleId,
        member: Option<&str>,
        offset: Option<u64>,
        message: String,
    ) {
        let mut location = match member.and_then(|member| nested_location(self.location, member)) {
            Some(location) => location,
            None => self.location.clone(),
        };
        if offset.is_some() {
            location.offset = offset;
        }
        self.findings.push(Finding {
            severity,
            rule,
            message,
            location,
        });
    }
}

/// Find the end-of-central-directory record as Python's zipfile does: the last `PK\x05\x06` in
/// the final 64 KiB + 22 bytes with a whole record after it (its comment may be cut off).
/// Also returns how many such signatures the tail holds: more than one lets readers that scan
/// differently (first match, comment-length checks) pick another record.
fn find_end_record(bytes: &[u8]) -> Option<(usize, usize)> {
    let search_from = bytes.len().saturating_sub(22 + 65_535);
    let reader = Reader(bytes);
    let last_start = bytes.len().checked_sub(22)?;
    let mut found = (search_from..=last_start)
        .rev()
        .filter(|&at| reader.bytes(at, 4) == Some(END_SIGNATURE.as_slice()));
    let end_at = found.next()?;
    Some((end_at, 1 + found.count()))
}

/// Central directory position, size and entry count, following zip64 records where present.
struct Directory {
    offset: u64,
    size: u64,
    entries: u64,
    /// Where the end record (or zip64 end record) starts: the directory should end there.
    end_at: u64,
}

impl Directory {
    /// Bytes of data prepended to the archive (self-extractors, polyglots): every offset in the
    /// directory is short by this much, and Python's zipfile corrects for it the same way.
    fn prepended_bytes(&self) -> u64 {
        self.end_at
            .checked_sub(self.size)
            .and_then(|start| start.checked_sub(self.offset))
            .unwrap_or(0)
    }
}

fn read_directory(bytes: &[u8], end_at: usize) -> Option<Directory> {
    let reader = Reader(bytes);
    let mut directory = Directory {
        entries: u64::from(reader.u16(end_at + 10)?),
        size: u64::from(reader.u32(end_at + 12)?),
        offset: u64::from(reader.u32(end_at + 16)?),
        end_at: end_at as u64,
    };
    let needs_zip64 = directory.entries == 0xFFFF
        || directory.size == 0xFFFF_FFFF
        || directory.offset == 0xFFFF_FFFF;
    if let Some(locator_at) = end_at.checked_sub(20) {
        if reader.bytes(locator_at, 4) == Some(END64_LOCATOR_SIGNATURE.as_slice()) {
            let record_at = reader.u64(locator_at + 8)?;
            let record_at = usize::try_from(record_at).ok()?;
            if reader.bytes(record_at, 4) == Some(END64_SIGNATURE.as_slice()) {
                directory.entries = reader.u64(record_at + 32)?;
                directory.size = reader.u64(record_at + 40)?;
                directory.offset = reader.u64(record_at + 48)?;
                directory.end_at = record_at as u64;
            } else if needs_zip64 {
                return None;
            }
        }
    }
    Some(directory)
}

/// Zip64 extended information (extra field 0x0001) replaces whichever of the sizes and offset
/// are saturated, in that order.
fn apply_zip64_extra(extra: &[u8], entry: &mut Entry) {
    let reader = Reader(extra);
    let mut at = 0usize;
    while let (Some(id), Some(len)) = (reader.u16(at), reader.u16(at + 2)) {
        let body = at + 4;
        if id == 1 {
            let mut field = body;
            let end = body + usize::from(len);
            for value in [
                &mut entry.uncompressed_size,
                &mut entry.compressed_size,
                &mut entry.local_offset,
            ] {
                if *value == 0xFFFF_FFFF && field + 8 <= end {
                    if let Some(read) = reader.u64(field) {
                        *value = read;
                    }
                    field += 8;
                }
            }
            return;
        }
        at = body + usize::from(len);
    }
}

/// Central-directory entries: as many as the end record declares (miniz, PyTorch's reader), and
/// any more that the directory's declared size holds (Python's zipfile reads by size and ignores
/// the count). Returns the entries and where the last one ended.
fn read_entries(
    bytes: &[u8],
    start: usize,
    declared: u64,
    directory_end: usize,
    scan: &mut ZipScan<'_>,
) -> (Vec<Entry>, usize) {
    let reader = Reader(bytes);
    let mut entries = Vec::new();
    let mut at = start;
    let wanted = usize::try_from(declared)
        .unwrap_or(usize::MAX)
        .min(MAX_ENTRIES);
    while entries.len() < MAX_ENTRIES
        && (entries.len() < wanted
            || (at < directory_end && reader.bytes(at, 4) == Some(CENTRAL_SIGNATURE.as_slice())))
    {
        if reader.bytes(at, 4) != Some(CENTRAL_SIGNATURE.as_slice()) {
            scan.report(
                Severity::High,
                RuleId::ZipMalformed,
                None,
                Some(at as u64),
                format!(
                    "the central directory declares {declared} members but entry {} is missing \
                     or corrupt; loaders and scanners disagree about what such archives hold",
                    entries.len()
                ),
            );
            break;
        }
        let fields = (
            reader.u16(at + 4),
            reader.u16(at + 8),
            reader.u16(at + 10),
            reader.u32(at + 16),
            reader.u32(at + 20),
            reader.u32(at + 24),
            reader.u16(at + 28),
            reader.u16(at + 30),
            reader.u16(at + 32),
            reader.u32(at + 38),
            reader.u32(at + 42),
        );
        let (
            Some(made_by),
            Some(flags),
            Some(method),
            Some(crc),
            Some(compressed),
            Some(uncompressed),
            Some(name_len),
            Some(extra_len),
            Some(comment_len),
            Some(external),
            Some(local),
        ) = fields
        else {
            scan.report(
                Severity::High,
                RuleId::ZipMalformed,
                None,
                Some(at as u64),
                "a central directory entry is cut off by the end of the file".to_string(),
            );
            break;
        };
        let name_at = at + 46;
        let extra_at = name_at + usize::from(name_len);
        let (Some(raw_name), Some(extra)) = (
            reader.bytes(name_at, usize::from(name_len)),
            reader.bytes(extra_at, usize::from(extra_len)),
        ) else {
            scan.report(
                Severity::High,
                RuleId::ZipMalformed,
                None,
                Some(at as u64),
                "a central directory entry's name runs past the end of the file".to_string(),
            );
            break;
        };
        let mut entry = Entry {
            raw_name: raw_name.to_vec(),
            name: String::from_utf8_lossy(raw_name).into_owned(),
            made_by,
            flags,
            method,
            crc,
            compressed_size: u64::from(compressed),
            uncompressed_size: u64::from(uncompressed),
            local_offset: u64::from(local),
            external_attributes: external,
        };
        apply_zip64_extra(extra, &mut entry);
        entries.push(entry);
        at = extra_at + usize::from(extra_len) + usize::from(comment_len);
    }
    if declared > MAX_ENTRIES as u64 {
        scan.report(
            Severity::High,
            RuleId::ZipTooManyMembers,
            None,
            None,
            format!("the archive declares {declared} members; only the first {MAX_ENTRIES} were checked"),
        );
    }
    (entries, at)
}

/// Why a member name is unsafe to extract, if it is.
fn unsafe_name(name: &str) -> Option<&'static str> {
    if name.contains('\0') {
        return Some("contains a NUL byte");
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return Some("is an absolute path");
    }
    let mut chars = name.chars();
    if let (Some(drive), Some(':')) = (chars.next(), chars.next()) {
        if drive.is_ascii_alphabetic() {
            return Some("starts with a drive letter");
        }
    }
    if name.split(['/', '\\']).any(|part| part == "..") {
        return Some("climbs out of the extraction folder with `..`");
    }
    if name.contains('\\') {
        return Some("uses backslashes, which Windows extractors treat as folder separators");
    }
    None
}

/// `data.pkl` prefixes of PyTorch archives (`archive/data.pkl` → `archive/`).
fn torch_prefixes(entries: &[Entry]) -> Vec<String> {
    // `torch.export.save` archives (`.pt2`) have no `data.pkl`; their `archive_format` record
    // marks the prefix instead.
    entries
        .iter()
        .filter_map(|entry| {
            entry
                .name
                .strip_suffix("data.pkl")
                .or_else(|| entry.name.strip_suffix("archive_format"))
        })
        .filter(|prefix| {
            prefix.is_empty() || (prefix.ends_with('/') && prefix.matches('/').count() == 1)
        })
        .map(str::to_string)
        .collect()
}

/// What a member of a PyTorch archive is, beyond what content detection says.
#[derive(Debug, PartialEq, Eq)]
enum TorchMember {
    /// Raw tensor bytes under `prefix/data/`: torch reads them, it never unpickles them.
    Storage,
    /// Small metadata records (`version`, `byteorder`, …).
    Metadata,
    /// TorchScript source under `prefix/code/` (not its `.debug_pkl` pickles).
    Code,
    /// Files the user attached with `_extra_files`: any content, not model data.
    Extra,
    /// JSON descriptions (`torch.export`'s `models/*.json`, weight configs): parsed as JSON,
    /// never unpickled; passed when they are JSON.
    Json,
    Other,
}

fn torch_member(name: &str, prefixes: &[String]) -> TorchMember {
    for prefix in prefixes {
        let Some(rest) = name.strip_prefix(prefix.as_str()) else {
            continue;
        };
        if rest.starts_with("data/") || rest.starts_with("constants/") {
            return TorchMember::Storage;
        }
        if rest.starts_with("code/") && !rest.ends_with("pkl") {
            return TorchMember::Code;
        }
        if rest.starts_with("extra/") {
            return TorchMember::Extra;
        }
        if matches!(
            rest,
            "version"
                | ".data/version"
                | "byteorder"
                | ".data/serialization_id"
                | ".format_version"
                | ".storage_alignment"
                | "archive_format"
                | "archive_version"
        ) {
            return TorchMember::Metadata;
        }
        // torch.export's graph and weight descriptions, read with json.loads.
        if rest.ends_with(".json") {
            return TorchMember::Json;
        }
    }
    TorchMember::Other
}

/// Inflate or borrow a member's bytes, with the member's inflation capped.
enum MemberBytes<'a> {
    Ready(Cow<'a, [u8]>),
    /// Inflated past its declared size or the limit: the bytes up to the cap.
    Overflowed(Vec<u8>),
    Corrupt(String),
    Unsupported(u16),
}

fn member_bytes<'a>(entry: &Entry, data: &'a [u8]) -> MemberBytes<'a> {
    match entry.method {
        0 => MemberBytes::Ready(Cow::Borrowed(data)),
        8 => {
            let cap = entry.uncompressed_size.min(MAX_INFLATED_MEMBER);
            let mut out = Vec::new();
            let mut decoder = flate2::read::DeflateDecoder::new(data).take(cap.saturating_add(1));
            match decoder.read_to_end(&mut out) {
                Ok(_) if out.len() as u64 > cap => {
                    out.truncate(usize::try_from(cap).unwrap_or(usize::MAX));
                    MemberBytes::Overflowed(out)
                }
                Ok(_) => MemberBytes::Ready(Cow::Owned(out)),
                Err(error) => MemberBytes::Corrupt(error.to_string()),
            }
        }
        // Python's zipfile reads these (np.load, joblib on an archive); PyTorch's reader does
        // not, but a file it refuses is no risk, one zipfile accepts is.
        12 | 14 => {
            let cap = entry.uncompressed_size.min(MAX_INFLATED_MEMBER);
            let inflated = if entry.method == 12 {
                crate::compressed::inflate_bzip2_member(data, cap)
            } else {
                crate::compressed::inflate_lzma_member(data, entry.uncompressed_size, cap)
            };
            match inflated {
                crate::compressed::Inflated::Complete(out) => MemberBytes::Ready(Cow::Owned(out)),
                crate::compressed::Inflated::TooLarge(out) => MemberBytes::Overflowed(out),
                crate::compressed::Inflated::Failed { error, .. } => MemberBytes::Corrupt(error),
                crate::compressed::Inflated::Unsupported => MemberBytes::Unsupported(entry.method),
                crate::compressed::Inflated::Trailing { out, .. } => {
                    MemberBytes::Ready(Cow::Owned(out))
                }
            }
        }
        other => MemberBytes::Unsupported(other),
    }
}

/// Scan a zip archive and every member in it.
pub fn scan(bytes: &[u8], location: &Location) -> Vec<Finding> {
    let mut scan = ZipScan {
        bytes,
        location,
        findings: Vec::new(),
    };
    let Some((end_at, end_records)) = find_end_record(bytes) else {
        scan.report(
            Severity::High,
            RuleId::ZipMalformed,
            None,
            None,
            "zip local headers without an end-of-central-directory record: PyTorch and Python \
             refuse it, other tools may read it; its members were not checked"
                .to_string(),
        );
        return scan.findings;
    };
    let Some(directory) = read_directory(bytes, end_at) else {
        scan.report(
            Severity::High,
            RuleId::ZipMalformed,
            None,
            Some(end_at as u64),
            "the zip64 end record is missing or corrupt; the members were not checked".to_string(),
        );
        return scan.findings;
    };
    let shift = directory.prepended_bytes();
    let Some(directory_start) = directory
        .offset
        .checked_add(shift)
        .and_then(|start| usize::try_from(start).ok())
    else {
        return scan.findings;
    };
    let directory_end = usize::try_from(
        directory
            .offset
            .saturating_add(shift)
            .saturating_add(directory.size),
    )
    .unwrap_or(usize::MAX);
    let (entries, entries_end) = read_entries(
        bytes,
        directory_start,
        directory.entries,
        directory_end,
        &mut scan,
    );
    // End-record signatures inside a member's data (a stored archive inside the archive, as
    // torch.export's `.pt2` keeps its sample inputs) belong to that member: Python's zipfile
    // and miniz take the last record, and a member's bytes are scanned as the member.
    let spans = member_spans(bytes, &entries, shift);
    let end_records = end_records.saturating_sub(signatures_inside(bytes, end_at, &spans));
    let mut disagreements = Vec::new();
    if end_records > 1 {
        disagreements.push(format!(
            "{end_records} end-of-central-directory signatures in the archive's tail (readers \
             that take the first, or check the comment length, read another directory)"
        ));
    }
    let reader = Reader(bytes);
    let disks = (reader.u16(end_at + 4), reader.u16(end_at + 6));
    if disks != (Some(0), Some(0)) {
        disagreements.push(
            "disk numbers other than 0 (a multi-disk archive, which Python's zipfile refuses)"
                .to_string(),
        );
    }
    let this_disk_entries = reader.u16(end_at + 8).map(u64::from);
    if directory.entries < 0xFFFF && this_disk_entries != Some(directory.entries) {
        disagreements.push(format!(
            "the end record's two member counts differ ({} and {})",
            this_disk_entries.unwrap_or(0),
            directory.entries
        ));
    }
    if entries.len() as u64 != directory.entries.min(MAX_ENTRIES as u64) {
        disagreements.push(format!(
            "the end record declares {} members but the central directory's size holds {} \
             (PyTorch's reader goes by the count, Python's zipfile by the size)",
            directory.entries,
            entries.len()
        ));
    } else if entries_end != directory_end && entries.len() < MAX_ENTRIES {
        disagreements.push(format!(
            "the central directory is declared as {} bytes but its entries take {}",
            directory.size,
            entries_end.saturating_sub(directory_start)
        ));
    }
    if shift != 0 {
        disagreements.push(format!(
            "{shift} bytes before the archive that its offsets do not count (Python's zipfile \
             corrects for them, PyTorch's reader does not)"
        ));
    }
    if !disagreements.is_empty() {
        scan.report(
            Severity::High,
            RuleId::ZipReaderDifferential,
            None,
            Some(end_at as u64),
            format!(
                "zip readers could disagree about this archive: {}",
                disagreements.join("; ")
            ),
        );
    }
    check_entries(&entries, shift, &mut scan);
    if end_records > 1 {
        scan_other_directories(bytes, end_at, directory.offset, &spans, &mut scan);
    }
    scan.findings
}

/// With several end records, readers that pick another one (the first signature, or one whose
/// comment length fits) read another central directory: its members are scanned too, so a
/// decoy record cannot hide the members that such a reader loads.
fn scan_other_directories(
    bytes: &[u8],
    chosen: usize,
    chosen_offset: u64,
    spans: &[(usize, usize)],
    scan: &mut ZipScan<'_>,
) {
    let reader = Reader(bytes);
    let search_from = bytes.len().saturating_sub(22 + 65_535);
    let mut seen = vec![chosen_offset];
    for end_at in (search_from..chosen).rev() {
        if reader.bytes(end_at, 4) != Some(END_SIGNATURE.as_slice()) || inside(spans, end_at) {
            continue;
        }
        let Some(directory) = read_directory(bytes, end_at) else {
            continue;
        };
        if seen.contains(&directory.offset) || seen.len() > 4 {
            continue;
        }
        seen.push(directory.offset);
        let shift = directory.prepended_bytes();
        let start = directory.offset.saturating_add(shift);
        let (Ok(start), Ok(end)) = (
            usize::try_from(start),
            usize::try_from(start.saturating_add(directory.size)),
        ) else {
            continue;
        };
        let mut other = ZipScan {
            bytes,
            location: scan.location,
            findings: Vec::new(),
        };
        let (entries, _) = read_entries(bytes, start, directory.entries, end, &mut other);
        if entries.is_empty() {
            continue;
        }
        check_entries(&entries, shift, &mut other);
        scan.findings.extend(other.findings);
    }
}

/// Whether `bytes`, which do not start like a zip, still hold one that Python's `zipfile` opens:
/// `zipfile` looks for the end record at the end of the file, so data in front of an archive
/// (a pickle, an HDF5 file, a GGUF) does not stop it, and Keras opens a `.keras` path that
/// `zipfile.is_zipfile` accepts whatever it starts with. True when the end record's directory
/// has at least one entry whose local header is where the directory says.
pub fn embedded_archive(bytes: &[u8]) -> bool {
    let Some((end_at, _)) = find_end_record(bytes) else {
        return false;
    };
    let Some(directory) = read_directory(bytes, end_at) else {
        return false;
    };
    let shift = directory.prepended_bytes();
    let reader = Reader(bytes);
    let Some(start) = directory
        .offset
        .checked_add(shift)
        .and_then(|start| usize::try_from(start).ok())
    else {
        return false;
    };
    if reader.bytes(start, 4) != Some(CENTRAL_SIGNATURE.as_slice()) {
        return false;
    }
    let local = reader
        .u32(start + 42)
        .and_then(|offset| u64::from(offset).checked_add(shift))
        .and_then(|at| usize::try_from(at).ok());
    local.is_some_and(|at| reader.bytes(at, 4) == Some(LOCAL_SIGNATURE.as_slice()))
}

/// Where each member's local header and data lie, `[start, end)`.
fn member_spans(bytes: &[u8], entries: &[Entry], shift: u64) -> Vec<(usize, usize)> {
    let reader = Reader(bytes);
    entries
        .iter()
        .filter_map(|entry| {
            let start = usize::try_from(entry.local_offset.checked_add(shift)?).ok()?;
            let name_len = usize::from(reader.u16(start + 26)?);
            let extra_len = usize::from(reader.u16(start + 28)?);
            let data_len = usize::try_from(entry.compressed_size).ok()?;
            let end = start
                .checked_add(30)?
                .checked_add(name_len)?
                .checked_add(extra_len)?
                .checked_add(data_len)?;
            Some((start, end))
        })
        .collect()
}

fn inside(spans: &[(usize, usize)], at: usize) -> bool {
    spans.iter().any(|&(start, end)| start <= at && at < end)
}

/// End-record signatures in the tail, other than the chosen one, that lie inside a member.
fn signatures_inside(bytes: &[u8], chosen: usize, spans: &[(usize, usize)]) -> usize {
    let search_from = bytes.len().saturating_sub(22 + 65_535);
    let last_start = bytes.len().saturating_sub(22);
    (search_from..=last_start)
        .filter(|&at| at != chosen)
        .filter(|&at| bytes.get(at..at + 4) == Some(END_SIGNATURE.as_slice()))
        .filter(|&at| inside(spans, at))
        .count()
}

/// The members as the scanner reads them (name, declared uncompressed size), in directory
/// order: what the differential tests compare with Python's `zipfile`. Empty when there is no
/// readable directory.
pub fn members(bytes: &[u8]) -> Vec<(String, u64)> {
    let location = Location::default();
    let mut scan = ZipScan {
        bytes,
        location: &location,
        findings: Vec::new(),
    };
    let Some((end_at, _)) = find_end_record(bytes) else {
        return Vec::new();
    };
    let Some(directory) = read_directory(bytes, end_at) else {
        return Vec::new();
    };
    let shift = directory.prepended_bytes();
    let start = directory.offset.saturating_add(shift);
    let (Ok(start), Ok(end)) = (
        usize::try_from(start),
        usize::try_from(start.saturating_add(directory.size)),
    ) else {
        return Vec::new();
    };
    let (entries, _) = read_entries(bytes, start, directory.entries, end, &mut scan);
    entries
        .into_iter()
        .map(|entry| (entry.name, entry.uncompressed_size))
        .collect()
}

fn check_entries(entries: &[Entry], shift: u64, scan: &mut ZipScan<'_>) {
    let bytes = scan.bytes;
    let reader = Reader(bytes);
    let prefixes = torch_prefixes(entries);
    let has = |wanted: &str| entries.iter().any(|entry| entry.name == wanted);
    // A Keras 3 `.keras` archive; an `.npz` (every member an `.npy`).
    let keras = has("config.json") && (has("metadata.json") || has("model.weights.h5"));
    let npz = !entries.is_empty()
        && entries
            .iter()
            .all(|entry| entry.name.ends_with(".npy") || entry.is_directory());
    let mut names = HashSet::new();
    let mut spans: Vec<(u64, u64, String)> = Vec::new();
    let total_declared = entries.iter().fold(0u64, |total, entry| {
        total.saturating_add(entry.uncompressed_size)
    });
    if total_declared > MAX_TOTAL_UNCOMPRESSED {
        scan.report(
            Severity::High,
            RuleId::ZipBomb,
            None,
            None,
            format!(
                "the members declare {total_declared} bytes uncompressed in all, more than the \
                 {MAX_TOTAL_UNCOMPRESSED}-byte limit: a zip bomb exhausts disk or memory on extraction"
            ),
        );
    }
    for entry in entries {
        let name = entry.name.as_str();
        if let Some(reason) = unsafe_name(name) {
            scan.report(
                Severity::High,
                RuleId::ZipPathTraversal,
                Some(name),
                None,
                format!(
                    "member name `{}` {reason}: extracting it writes outside the target folder",
                    name.escape_debug()
                ),
            );
        }
        if !names.insert(entry.raw_name.clone()) {
            scan.report(
                Severity::High,
                RuleId::ZipDuplicateMember,
                Some(name),
                None,
                "two members share this name: loaders take one, scanners may check the other"
                    .to_string(),
            );
        }
        if entry.is_symlink() {
            scan.report(
                Severity::High,
                RuleId::ZipSymlink,
                Some(name),
                None,
                "member is a symbolic link: extracting it can point later writes or reads anywhere on disk".to_string(),
            );
            continue;
        }
        let compressed = entry.compressed_size;
        let declared = entry.uncompressed_size;
        let declared_bomb = declared >= BOMB_FLOOR_BYTES
            && (compressed == 0 || declared / compressed.max(1) > MAX_RATIO);
        if declared_bomb {
            scan.report(
                Severity::High,
                RuleId::ZipBomb,
                Some(name),
                None,
                format!(
                    "member inflates from {compressed} to {declared} bytes (ratio above {MAX_RATIO}): a zip bomb"
                ),
            );
        }
        // Local header: where the data really starts, and whether it agrees with the directory.
        let Some(local_at) = entry
            .local_offset
            .checked_add(shift)
            .and_then(|at| usize::try_from(at).ok())
        else {
            continue;
        };
        if reader.bytes(local_at, 4) != Some(LOCAL_SIGNATURE.as_slice()) {
            scan.report(
                Severity::High,
                RuleId::ZipMalformed,
                Some(name),
                Some(local_at as u64),
                "the central directory points at no local header for this member".to_string(),
            );
            continue;
        }
        let (
            Some(local_flags),
            Some(local_method),
            Some(local_crc),
            Some(local_compressed),
            Some(local_uncompressed),
            Some(local_name_len),
            Some(local_extra_len),
        ) = (
            reader.u16(local_at + 6),
            reader.u16(local_at + 8),
            reader.u32(local_at + 14),
            reader.u32(local_at + 18),
            reader.u32(local_at + 22),
            reader.u16(local_at + 26),
            reader.u16(local_at + 28),
        )
        else {
            scan.report(
                Severity::High,
                RuleId::ZipMalformed,
                Some(name),
                Some(local_at as u64),
                "the local header is cut off by the end of the file".to_string(),
            );
            continue;
        };
        let local_name = reader.bytes(local_at + 30, usize::from(local_name_len));
        let mut mismatches = Vec::new();
        if local_name != Some(entry.raw_name.as_slice()) {
            mismatches.push("name".to_string());
        }
        if local_method != entry.method {
            mismatches.push(format!(
                "compression method ({local_method} locally, {} in the directory)",
                entry.method
            ));
        }
        if (local_flags ^ entry.flags) & 0b1001 != 0 {
            mismatches.push(format!(
                "flags ({local_flags:#06x} locally, {:#06x} in the directory)",
                entry.flags
            ));
        }
        if local_flags & 0b1000 == 0 && entry.flags & 0b1000 == 0 {
            if local_crc != entry.crc {
                mismatches.push("CRC-32".to_string());
            }
            if local_compressed != 0xFFFF_FFFF && u64::from(local_compressed) != compressed {
                mismatches.push("compressed size".to_string());
            }
            if local_uncompressed != 0xFFFF_FFFF && u64::from(local_uncompressed) != declared {
                mismatches.push("uncompressed size".to_string());
            }
        }
        if !mismatches.is_empty() {
            scan.report(
                Severity::High,
                RuleId::ZipHeaderMismatch,
                Some(name),
                Some(local_at as u64),
                format!(
                    "local header and central directory disagree on {}: tools that read one or \
                     the other see different archives, a known way to slip members past scanners",
                    mismatches.join(", ")
                ),
            );
        }
        let data_at = local_at + 30 + usize::from(local_name_len) + usize::from(local_extra_len);
        let Some(data) = usize::try_from(compressed)
            .ok()
            .and_then(|len| reader.bytes(data_at, len))
        else {
            scan.report(
                Severity::High,
                RuleId::ZipMalformed,
                Some(name),
                Some(data_at as u64),
                format!("member data ({compressed} bytes) runs past the end of the file"),
            );
            continue;
        };
        spans.push((
            local_at as u64,
            data_at as u64 + compressed,
            name.to_string(),
        ));
        if entry.is_directory() {
            continue;
        }
        if entry.encrypted() {
            scan.report(
                Severity::Medium,
                RuleId::ZipEncrypted,
                Some(name),
                None,
                "member is encrypted, so its content cannot be checked".to_string(),
            );
            continue;
        }
        let member = match member_bytes(entry, data) {
            MemberBytes::Ready(member) => member,
            MemberBytes::Overflowed(partial) => {
                let what = if declared < MAX_INFLATED_MEMBER {
                    "more than its declared size"
                } else {
                    "past the inflation limit"
                };
                scan.report(
                    Severity::High,
                    if declared < MAX_INFLATED_MEMBER { RuleId::ZipSizeMismatch } else { RuleId::ZipBomb },
                    Some(name),
                    None,
                    format!("member inflates to {what} ({declared} bytes declared); only the first {} bytes were checked", partial.len()),
                );
                Cow::Owned(partial)
            }
            MemberBytes::Corrupt(error) => {
                scan.report(
                    Severity::High,
                    RuleId::ZipMalformed,
                    Some(name),
                    None,
                    format!("member does not inflate ({error})"),
                );
                continue;
            }
            MemberBytes::Unsupported(method) => {
                let what = match method {
                    93 => " (zstandard, which Python 3.14's zipfile reads)",
                    _ => "",
                };
                scan.report(
                    Severity::High,
                    RuleId::ZipUnsupportedCompression,
                    Some(name),
                    None,
                    format!("cannot verify: member uses compression method {method}{what}, which gauntlet does not inflate; its content was not checked"),
                );
                continue;
            }
        };
        let inflated = member.len() as u64;
        if !declared_bomb
            && inflated >= BOMB_FLOOR_BYTES
            && inflated / compressed.max(1) > MAX_RATIO
        {
            scan.report(
                Severity::High,
                RuleId::ZipBomb,
                Some(name),
                None,
                format!("member inflates from {compressed} to at least {inflated} bytes (ratio above {MAX_RATIO}): a zip bomb"),
            );
        }
        if matches!(entry.method, 8 | 12 | 14) && inflated == declared {
            let mut crc = flate2::Crc::new();
            crc.update(&member);
            if crc.sum() != entry.crc {
                scan.report(
                    Severity::Medium,
                    RuleId::ZipCrcMismatch,
                    Some(name),
                    None,
                    "member content does not match its CRC-32: corrupted or edited after packing"
                        .to_string(),
                );
            }
        }
        if member.is_empty() {
            continue;
        }
        let torch = torch_member(name, &prefixes);
        match torch {
            TorchMember::Storage if !crate::pickle::is_complete_pickle(&member) => continue,
            TorchMember::Metadata if member.len() <= 64 => continue,
            TorchMember::Json
                if serde_json::from_slice::<serde::de::IgnoredAny>(&member).is_ok() =>
            {
                continue
            }
            _ => {}
        }
        // Content the archive says is model data: unidentified means unverified, so high.
        let in_model = match torch {
            TorchMember::Extra => false,
            TorchMember::Storage
            | TorchMember::Metadata
            | TorchMember::Code
            | TorchMember::Json => true,
            TorchMember::Other => {
                !prefixes.is_empty() || npz || (keras && !name.starts_with("assets/"))
            }
        };
        match nested_location(scan.location, name) {
            Some(member_location) => {
                let nested = if torch == TorchMember::Code
                    && crate::scan::identify(&member) == crate::scan::FileKind::Unknown
                {
                    torchscript_code(&member, &member_location)
                } else if keras && matches!(name, "config.json" | "metadata.json") {
                    crate::keras::scan_keras_json(&member, &member_location)
                } else {
                    crate::scan::scan_bytes_in(&member, &member_location, in_model)
                };
                scan.findings.extend(nested);
            }
            None => scan.report(
                Severity::High,
                RuleId::NestingTooDeep,
                None,
                None,
                format!("member `{name}` nests more than {MAX_NESTING} containers deep; it was not checked"),
            ),
        }
    }
    check_overlaps(&mut spans, scan);
}

/// Modules TorchScript code may import without a finding.
const TORCHSCRIPT_MODULES: &[&str] = &[
    "__torch__",
    "torch",
    "typing",
    "math",
    "builtins",
    "collections",
];

/// Check TorchScript source: imports outside torch and `ops.<namespace>` custom operators.
fn torchscript_code(member: &[u8], location: &Location) -> Vec<Finding> {
    let text = String::from_utf8_lossy(member);
    let mut reasons: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let module = line
            .strip_prefix("import ")
            .or_else(|| line.strip_prefix("from "))
            .and_then(|rest| rest.split([' ', ',', ';']).next());
        if let Some(module) = module {
            let root = module.split('.').next().unwrap_or(module);
            if !TORCHSCRIPT_MODULES.contains(&root) {
                reasons.push(format!("imports `{}`", module.escape_debug()));
            }
        }
        let mut rest = line;
        while let Some(at) = rest.find("ops.") {
            let before = rest.get(..at).and_then(|b| b.chars().last());
            let after = rest.get(at + 4..).unwrap_or("");
            let namespace: String = after
                .chars()
                .take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '_')
                .collect();
            // `ops.ns.op` as TorchScript prints it, or `torch.ops.ns.op` as written in Python.
            let via_torch = rest.get(..at).is_some_and(|head| head.ends_with("torch."));
            if (via_torch
                || !before.is_some_and(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '.'))
                && !namespace.is_empty()
                && !matches!(
                    namespace.as_str(),
                    "aten" | "prim" | "quantized" | "_caffe2"
                )
            {
                reasons.push(format!(
                    "calls the custom operator namespace `ops.{namespace}`"
                ));
            }
            rest = after;
        }
        if reasons.len() >= 16 {
            break;
        }
    }
    reasons.sort();
    reasons.dedup();
    if reasons.is_empty() {
        return Vec::new();
    }
    vec![Finding {
        severity: Severity::Medium,
        rule: RuleId::TorchscriptCode,
        message: format!(
            "TorchScript code {}: it runs when the module runs",
            reasons.join(", ")
        ),
        location: location.clone(),
    }]
}

/// Members whose bytes overlap: the overlapping-file zip bomb, and a way to show different
/// content to different readers.
fn check_overlaps(spans: &mut [(u64, u64, String)], scan: &mut ZipScan<'_>) {
    spans.sort();
    let mut reported = HashSet::new();
    for pair in spans.windows(2) {
        if let [(_, first_end, first), (second_start, _, second)] = pair {
            if second_start < first_end && reported.insert(second.clone()) {
                scan.report(
                    Severity::High,
                    RuleId::ZipOverlappingMembers,
                    Some(second),
                    None,
                    format!("member overlaps the bytes of `{first}`: overlapping members build zip bombs and let readers disagree"),
                );
            }
        }
    }
}

/// A member's name and bytes (borrowed when stored, inflated when deflated).
pub type Member<'a> = (String, Cow<'a, [u8]>);

/// The members' bytes as a loader reads them (PyTorch's reader: the end record's directory, each
/// member's data after its local header; stored or deflated, inflation capped), for readers of
/// archives the scanner has already passed (gauntlet's checkpoint reader). Refuses what the
/// scanner would call malformed rather than guessing: no end record, a missing local header, a
/// member past the end of the file, an unsupported method.
pub fn read_members(bytes: &[u8]) -> Result<Vec<Member<'_>>, String> {
    let location = Location::default();
    let mut scan = ZipScan {
        bytes,
        location: &location,
        findings: Vec::new(),
    };
    let (end_at, _) = find_end_record(bytes).ok_or("no end-of-central-directory record")?;
    let directory = read_directory(bytes, end_at).ok_or("a corrupt zip64 end record")?;
    let start = usize::try_from(directory.offset).map_err(|_| "a directory offset too large")?;
    let end =
        usize::try_from(directory.offset.saturating_add(directory.size)).unwrap_or(usize::MAX);
    let (entries, _) = read_entries(bytes, start, directory.entries, end, &mut scan);
    if let Some(problem) = scan.findings.first() {
        return Err(problem.message.clone());
    }
    let reader = Reader(bytes);
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let name = entry.name.clone();
        let missing = || format!("member `{name}` has no readable local header");
        let local_at = usize::try_from(entry.local_offset).map_err(|_| missing())?;
        if reader.bytes(local_at, 4) != Some(LOCAL_SIGNATURE.as_slice()) {
            return Err(missing());
        }
        let name_len = reader.u16(local_at + 26).ok_or_else(missing)?;
        let extra_len = reader.u16(local_at + 28).ok_or_else(missing)?;
        let data_at = local_at + 30 + usize::from(name_len) + usize::from(extra_len);
        let size = usize::try_from(entry.compressed_size).unwrap_or(usize::MAX);
        let data = data_at
            .checked_add(size)
            .and_then(|end| bytes.get(data_at..end))
            .ok_or_else(|| format!("member `{name}` runs past the end of the file"))?;
        let content = match member_bytes(&entry, data) {
            MemberBytes::Ready(content) => content,
            MemberBytes::Overflowed(_) => {
                return Err(format!("member `{name}` inflates past its declared size"))
            }
            MemberBytes::Corrupt(error) => return Err(format!("member `{name}`: {error}")),
            MemberBytes::Unsupported(method) => {
                return Err(format!("member `{name}` uses compression method {method}"))
            }
        };
        out.push((name, content));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names_are_recognised() {
        assert!(unsafe_name("../x").is_some());
        assert!(unsafe_name("a/../../x").is_some());
        assert!(unsafe_name("/etc/passwd").is_some());
        assert!(unsafe_name("C:/Windows/x").is_some());
        assert!(unsafe_name("a\\..\\b").is_some());
        assert!(unsafe_name("archive/data.pkl").is_none());
        assert!(unsafe_name("archive/..data/x").is_none());
    }

    #[test]
    fn torch_members_are_classified() {
        let prefixes = vec!["archive/".to_string()];
        assert_eq!(
            torch_member("archive/data/0", &prefixes),
            TorchMember::Storage
        );
        assert_eq!(
            torch_member("archive/version", &prefixes),
            TorchMember::Metadata
        );
        assert_eq!(
            torch_member("archive/code/x.py", &prefixes),
            TorchMember::Code
        );
        assert_eq!(
            torch_member("archive/code/x.py.debug_pkl", &prefixes),
            TorchMember::Other
        );
        assert_eq!(torch_member("other/data/0", &prefixes), TorchMember::Other);
    }

    #[test]
    fn torchscript_code_is_checked_for_imports_and_custom_ops() {
        let rules = |code: &str| -> Vec<String> {
            torchscript_code(code.as_bytes(), &Location::default())
                .into_iter()
                .map(|finding| finding.message)
                .collect()
        };
        let benign = "import __torch__\nimport torch\ndef forward(self, x: Tensor) -> Tensor:\n  return ops.prim.NumToTensor(torch.add(x, 1))\n";
        assert!(rules(benign).is_empty());
        let custom = "def forward(self, x):\n  return ops.my_lib.op(x) + torch.ops.other.op(x)\n";
        let found = rules(custom);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].contains("ops.my_lib") && found[0].contains("ops.other"),
            "{found:?}"
        );
        assert_eq!(rules("import subprocess\n").len(), 1);
    }

    #[test]
    fn nesting_depth_is_capped() {
        let mut location = Location::default();
        for level in 0..MAX_NESTING {
            location = nested_location(&location, &format!("m{level}")).unwrap_or_default();
        }
        assert!(nested_location(&location, "one-more").is_none());
    }

    #[test]
    fn archives_without_an_end_record_are_malformed() {
        let findings = scan(b"PK\x03\x04 not really a zip", &Location::default());
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].rule, RuleId::ZipMalformed);
    }
}
