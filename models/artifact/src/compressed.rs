//! Whole-file compression as joblib writes it (`joblib.dump(..., compress=…)`): zlib and gzip
//! streams are inflated with a cap and their content scanned like any file; bz2, xz and lzma
//! streams, which joblib also writes and reads, are not inflated here, so their content cannot
//! be verified (`high` where a model is expected).

use std::io::Read;

use crate::{Finding, Location, RuleId, Severity};

/// Most bytes a compressed file is inflated to for scanning.
pub const MAX_INFLATED: u64 = 1 << 30;

/// The compression a byte string starts with, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Zlib,
    Gzip,
    Bzip2,
    Xz,
    Lzma,
}

/// Identify a compressed stream by its header.
pub fn codec(bytes: &[u8]) -> Option<Codec> {
    match bytes {
        [0x1f, 0x8b, 8, ..] => Some(Codec::Gzip),
        [b'B', b'Z', b'h', level, ..] if (b'1'..=b'9').contains(level) => Some(Codec::Bzip2),
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => Some(Codec::Xz),
        // Legacy .lzma: properties byte 0x5d and a dictionary size; joblib writes these.
        [0x5d, 0, 0, _, _, ..] => Some(Codec::Lzma),
        [cmf, flg, ..]
            if cmf & 0x0f == 8
                && cmf >> 4 <= 7
                && (u16::from(*cmf) * 256 + u16::from(*flg)) % 31 == 0
                && flg & 0x20 == 0 =>
        {
            Some(Codec::Zlib)
        }
        _ => None,
    }
}

/// Scan a compressed file: inflate zlib and gzip and scan the content, report the rest.
pub fn scan(bytes: &[u8], location: &Location, codec: Codec) -> Vec<Finding> {
    let cap = MAX_INFLATED;
    let mut out = Vec::new();
    let result = match codec {
        Codec::Zlib => flate2::read::ZlibDecoder::new(bytes)
            .take(cap + 1)
            .read_to_end(&mut out),
        Codec::Gzip => flate2::read::MultiGzDecoder::new(bytes)
            .take(cap + 1)
            .read_to_end(&mut out),
        Codec::Bzip2 | Codec::Xz | Codec::Lzma => {
            let in_model = crate::scan::model_named(location);
            return vec![Finding {
                severity: if in_model {
                    Severity::High
                } else {
                    Severity::Medium
                },
                rule: RuleId::CompressedUnsupported,
                message: format!(
                    "cannot verify: the file is a {codec:?} stream (joblib and Python read it), \
                     which gauntlet does not decompress; its content was not checked"
                ),
                location: location.clone(),
            }];
        }
    };
    if let Err(error) = result {
        if codec == Codec::Zlib {
            // Two bytes are a weak signature: text can start like a zlib header.
            return vec![crate::scan::unidentified(location, false)];
        }
        return vec![Finding {
            severity: Severity::High,
            rule: RuleId::CompressedUnsupported,
            message: format!("cannot verify: the {codec:?} stream does not inflate ({error})"),
            location: location.clone(),
        }];
    }
    let mut findings = Vec::new();
    if out.len() as u64 > cap {
        out.truncate(cap as usize);
        findings.push(Finding {
            severity: Severity::High,
            rule: RuleId::CompressedUnsupported,
            message: format!(
                "cannot verify: the {codec:?} stream inflates past {cap} bytes; only the first \
                 {cap} were checked"
            ),
            location: location.clone(),
        });
    }
    match crate::zip::nested_location(location, &format!("({codec:?})").to_lowercase()) {
        Some(inner) => findings.extend(crate::scan::scan_bytes_in(
            &out,
            &inner,
            crate::scan::model_named(location),
        )),
        None => findings.push(Finding {
            severity: Severity::High,
            rule: RuleId::NestingTooDeep,
            message: "compressed content nests too deep; it was not checked".to_string(),
            location: location.clone(),
        }),
    }
    findings
}
