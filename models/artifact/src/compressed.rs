//! Whole-file compression as joblib reads it (`joblib.load` on a file `joblib.dump(...,
//! compress=…)` wrote): zlib, gzip, bz2, xz and legacy `.lzma` streams, and joblib's pre-0.10
//! `ZF` files, and lz4 frames (joblib with the `lz4` package), are inflated and their content
//! scanned like any file.
//!
//! Trailing bytes are read as the loader reads them: gzip skips zero padding and fails on
//! anything else after a member, bz2/xz/lzma files stop at data that is not another stream, and
//! joblib's zlib file reads concatenated zlib streams. Bytes after the last stream that no
//! decompressor accepts add nothing a loader could read, so they are reported as information,
//! not as "cannot verify".
//!
//! Every stream is inflated through a streaming decoder read with a cap, so a bomb stops at
//! [`MAX_INFLATED`] bytes as it inflates, never after; the xz and lzma decoders also refuse a
//! dictionary above [`MAX_DICTIONARY_KIB`] before allocating it. What does not inflate is
//! `high` ("cannot verify"): the loader may have run the part before the error.

use std::io::Read;

use crate::{Finding, Location, RuleId, Severity};

/// Most bytes a compressed file is inflated to for scanning.
pub const MAX_INFLATED: u64 = 1 << 30;

/// Largest xz/lzma dictionary (KiB) the decoders allocate: 256 MiB, four times what `xz -9e`
/// uses. A stream that asks for more is not inflated (`high`, cannot verify) rather than let a
/// 12-byte header allocate gigabytes.
pub const MAX_DICTIONARY_KIB: u32 = 256 << 10;

/// joblib's pre-0.10 compressed format: `ZF`, the length in hex padded to 19 characters, then a
/// zlib stream (`joblib.numpy_pickle_compat.read_zfile`); `joblib.load` still unpickles it.
const ZFILE_PREFIX: &[u8] = b"ZF";
/// `len(hex(2**64))` in joblib: the width of the ZF length field.
const ZFILE_LENGTH_FIELD: usize = 19;

/// The compression a byte string starts with, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Zlib,
    Gzip,
    Bzip2,
    Xz,
    Lzma,
    /// joblib's pre-0.10 `ZF` header in front of a zlib stream.
    JoblibZfile,
    /// An lz4 frame (joblib with the `lz4` package), read with `lz4.frame.LZ4FrameFile`.
    Lz4,
}

/// Identify a compressed stream by its header, with the prefixes joblib's `_detect_compressor`
/// matches (narrowed where the decoder Python uses would reject the rest anyway).
pub fn codec(bytes: &[u8]) -> Option<Codec> {
    match bytes {
        [0x1f, 0x8b, 8, ..] => Some(Codec::Gzip),
        [b'B', b'Z', b'h', level, ..] if (b'1'..=b'9').contains(level) => Some(Codec::Bzip2),
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => Some(Codec::Xz),
        // Legacy .lzma: joblib routes every file starting 0x5d 0x00 to Python's lzma module,
        // whose auto decoder takes any dictionary size of the form 2^n or 2^n + 2^(n-1), so
        // the bytes after those two are not constrained further here.
        [0x5d, 0, _, _, _, ..] => Some(Codec::Lzma),
        [b'Z', b'F', ..] if zfile_data_start(bytes).is_some() => Some(Codec::JoblibZfile),
        [0x04, 0x22, 0x4d, 0x18, ..] => Some(Codec::Lz4),
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

/// Where the zlib stream of a joblib `ZF` file starts, if `bytes` is one: `int(field, 16)` of
/// the 19-character length field must parse (Python accepts surrounding whitespace, a sign, a
/// `0x` prefix and `_` separators), and one space after it is skipped, as `read_zfile` does.
fn zfile_data_start(bytes: &[u8]) -> Option<usize> {
    let end = ZFILE_PREFIX.len() + ZFILE_LENGTH_FIELD;
    let field = bytes.get(ZFILE_PREFIX.len()..end)?;
    let text = std::str::from_utf8(field).ok()?.trim();
    let text = text.strip_prefix(['+', '-']).unwrap_or(text);
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    let digits = digits.strip_prefix('_').unwrap_or(digits);
    let valid = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.chars().all(|c| c.is_ascii_hexdigit() || c == '_');
    if !valid {
        return None;
    }
    Some(if bytes.get(end) == Some(&b' ') {
        end + 1
    } else {
        end
    })
}

/// What inflating a stream gave.
#[derive(Debug)]
pub enum Inflated {
    /// The whole stream, within the cap.
    Complete(Vec<u8>),
    /// The cap stopped it: the first `cap` bytes.
    TooLarge(Vec<u8>),
    /// The decoder failed after producing these bytes.
    Failed { partial: Vec<u8>, error: String },
    /// The codec is recognised but not inflated here.
    Unsupported,
    /// Every stream inflated; then `trailing` bytes that are not a stream of this codec,
    /// which the loader stops at (or fails on) without reading them.
    Trailing { out: Vec<u8>, trailing: usize },
}

/// Read `reader` to its end or to `cap` bytes, whichever is first: the cap holds while the
/// decoder runs, since `take` never asks it for more.
fn read_capped(reader: impl Read, cap: u64) -> Inflated {
    let mut out = Vec::new();
    match reader.take(cap.saturating_add(1)).read_to_end(&mut out) {
        Ok(_) if out.len() as u64 > cap => {
            out.truncate(usize::try_from(cap).unwrap_or(usize::MAX));
            Inflated::TooLarge(out)
        }
        Ok(_) => Inflated::Complete(out),
        Err(error) => Inflated::Failed {
            partial: out,
            error: error.to_string(),
        },
    }
}

/// Inflate a whole-file stream as Python reads it for joblib (`gzip`/joblib's zlib file,
/// `bz2.BZ2File`, `lzma.LZMAFile`, `lz4.frame.LZ4FrameFile`: each reads concatenated streams
/// one after the other), up to `cap` bytes.
pub fn inflate(bytes: &[u8], codec: Codec, cap: u64) -> Inflated {
    match codec {
        Codec::Zlib => concatenated(bytes, cap, &[0x78], |rest| {
            Box::new(flate2::bufread::ZlibDecoder::new(rest))
        }),
        Codec::Gzip => concatenated(bytes, cap, &[0x1f, 0x8b], |rest| {
            Box::new(flate2::bufread::GzDecoder::new(rest))
        }),
        Codec::Bzip2 => concatenated(bytes, cap, b"BZh", |rest| {
            Box::new(bzip2::bufread::BzDecoder::new(rest))
        }),
        Codec::Xz => read_capped(
            lzma_rust2::XzReader::new_mem_limit(bytes, true, MAX_DICTIONARY_KIB),
            cap,
        ),
        Codec::Lzma => match lzma_rust2::LzmaReader::new_mem_limit(bytes, MAX_DICTIONARY_KIB, None)
        {
            Ok(reader) => read_capped(reader, cap),
            Err(error) => Inflated::Failed {
                partial: Vec::new(),
                error: error.to_string(),
            },
        },
        Codec::JoblibZfile => match zfile_data_start(bytes).and_then(|at| bytes.get(at..)) {
            // `zlib.decompress(rest, 15, length)`: the length is only a buffer-size hint.
            Some(rest) => read_capped(flate2::read::ZlibDecoder::new(rest), cap),
            None => Inflated::Failed {
                partial: Vec::new(),
                error: "ZF header without a length".to_string(),
            },
        },
        // Blocks are at most 4 MiB, so the decoder's buffers are bounded whatever the frame
        // header claims; the cap bounds the output.
        Codec::Lz4 => read_capped(lz4_flex::frame::FrameDecoder::new(bytes), cap),
    }
}

/// A decoder over the rest of the input that consumes exactly one stream from it.
type StreamDecoder<'a> = Box<dyn StreamRead<'a> + 'a>;

/// `Read` plus handing back the unread input after one stream.
trait StreamRead<'a>: Read {
    fn rest(self: Box<Self>) -> &'a [u8];
}

impl<'a> StreamRead<'a> for flate2::bufread::ZlibDecoder<&'a [u8]> {
    fn rest(self: Box<Self>) -> &'a [u8] {
        self.into_inner()
    }
}

impl<'a> StreamRead<'a> for flate2::bufread::GzDecoder<&'a [u8]> {
    fn rest(self: Box<Self>) -> &'a [u8] {
        self.into_inner()
    }
}

impl<'a> StreamRead<'a> for bzip2::bufread::BzDecoder<&'a [u8]> {
    fn rest(self: Box<Self>) -> &'a [u8] {
        self.into_inner()
    }
}

/// Streams one after the other while the rest starts with `magic` (zero padding between and
/// after gzip members is skipped, as `gzip` does); anything else after a complete stream is
/// trailing data the loader never decompresses.
fn concatenated<'a>(
    bytes: &'a [u8],
    cap: u64,
    magic: &[u8],
    decoder: impl Fn(&'a [u8]) -> StreamDecoder<'a>,
) -> Inflated {
    let mut out = Vec::new();
    let mut rest = bytes;
    // A stream of a few bytes inflates to at most a few hundred; the count bounds the loop.
    for _ in 0..bytes.len().max(1) {
        let left = cap.saturating_sub(out.len() as u64);
        let mut stream = decoder(rest);
        let result = (&mut stream)
            .take(left.saturating_add(1))
            .read_to_end(&mut out);
        if let Err(error) = result {
            return Inflated::Failed {
                partial: out,
                error: error.to_string(),
            };
        }
        if out.len() as u64 > cap {
            out.truncate(usize::try_from(cap).unwrap_or(usize::MAX));
            return Inflated::TooLarge(out);
        }
        let after = stream.rest();
        if after.len() == rest.len() {
            return Inflated::Failed {
                partial: out,
                error: "the decompressor read nothing from the next stream".to_string(),
            };
        }
        rest = after;
        if magic == [0x1f, 0x8b] {
            let zeros = rest.iter().take_while(|&&byte| byte == 0).count();
            rest = rest.get(zeros..).unwrap_or(&[]);
        }
        if rest.is_empty() {
            return Inflated::Complete(out);
        }
        if !rest.starts_with(magic) {
            return Inflated::Trailing {
                out,
                trailing: rest.len(),
            };
        }
    }
    Inflated::Complete(out)
}

/// A bzip2 zip member (method 12): Python's zipfile uses one `BZ2Decompressor`, so one stream.
pub fn inflate_bzip2_member(data: &[u8], cap: u64) -> Inflated {
    read_capped(bzip2::read::BzDecoder::new(data), cap)
}

/// An lzma zip member (method 14): a 4-byte header (version, properties size), the 5-byte LZMA
/// properties, then raw LZMA1, which Python's zipfile hands to a raw `LZMADecompressor` and cuts
/// at the member's declared size.
pub fn inflate_lzma_member(data: &[u8], declared: u64, cap: u64) -> Inflated {
    let failed = |error: String| Inflated::Failed {
        partial: Vec::new(),
        error,
    };
    let (Some(&[_, _, size_lo, size_hi]), Some(rest)) = (data.get(..4), data.get(4..)) else {
        return failed("lzma member shorter than its header".to_string());
    };
    let props_len = usize::from(u16::from_le_bytes([size_lo, size_hi]));
    let (Some(props), Some(stream)) = (rest.get(..props_len), rest.get(props_len..)) else {
        return failed("lzma member properties run past its data".to_string());
    };
    let &[props_byte, d0, d1, d2, d3] = props else {
        return failed(format!("lzma member has {props_len} property bytes, not 5"));
    };
    let dict_size = u32::from_le_bytes([d0, d1, d2, d3]);
    match lzma_rust2::lzma_get_memory_usage_by_props(dict_size, props_byte) {
        Ok(kib) if kib <= MAX_DICTIONARY_KIB => {}
        Ok(kib) => {
            return failed(format!(
            "lzma member needs {kib} KiB to decode, more than the {MAX_DICTIONARY_KIB} KiB limit"
        ))
        }
        Err(error) => return failed(error.to_string()),
    }
    match lzma_rust2::LzmaReader::new_with_props(stream, declared, props_byte, dict_size, None) {
        Ok(reader) => read_capped(reader, cap),
        Err(error) => failed(error.to_string()),
    }
}

/// Scan a compressed file: inflate it and scan the content.
pub fn scan(bytes: &[u8], location: &Location, codec: Codec) -> Vec<Finding> {
    let cap = MAX_INFLATED;
    let cannot_verify = |message: String| Finding {
        severity: Severity::High,
        rule: RuleId::CompressedUnsupported,
        message,
        location: location.clone(),
    };
    let mut findings = Vec::new();
    let out = match inflate(bytes, codec, cap) {
        Inflated::Complete(out) => out,
        Inflated::TooLarge(out) => {
            findings.push(cannot_verify(format!(
                "cannot verify: the {codec:?} stream inflates past {cap} bytes; only the first \
                 {cap} were checked"
            )));
            out
        }
        Inflated::Failed { partial, error } => {
            if codec == Codec::Zlib && partial.is_empty() {
                // Two bytes are a weak signature: text can start like a zlib header.
                return vec![crate::scan::unidentified(location, false)];
            }
            findings.push(cannot_verify(format!(
                "cannot verify: the {codec:?} stream does not inflate ({error}); a loader reading \
                 it as a stream acts on what came before the error, which was checked"
            )));
            partial
        }
        Inflated::Unsupported => {
            return vec![cannot_verify(format!(
                "cannot verify: the file is a {codec:?} stream (joblib reads it), which gauntlet \
                 does not decompress; its content was not checked"
            ))];
        }
        Inflated::Trailing { out, trailing } => {
            findings.push(Finding {
                severity: Severity::Info,
                rule: RuleId::CompressedTrailingData,
                message: format!(
                    "{trailing} bytes after the last {codec:?} stream are not another stream; \
                     the loader stops there without decompressing them, and everything before \
                     was checked"
                ),
                location: location.clone(),
            });
            out
        }
    };
    if out.is_empty() {
        return findings;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joblib_prefixes_are_recognised() {
        assert_eq!(codec(b"BZh91AY&SY"), Some(Codec::Bzip2));
        assert_eq!(codec(b"\xfd7zXZ\x00\x00"), Some(Codec::Xz));
        assert_eq!(codec(b"\x5d\x00\x10\x00\x00\xff"), Some(Codec::Lzma));
        assert_eq!(codec(b"\x04\x22\x4d\x18\x64"), Some(Codec::Lz4));
        assert_eq!(
            codec(b"ZF0x1a               x\x9c"),
            Some(Codec::JoblibZfile)
        );
        assert_eq!(codec(b"ZFnot a length at all  x\x9c"), None);
        assert_eq!(zfile_data_start(b"ZF1a                  x"), Some(22));
        assert_eq!(zfile_data_start(b"ZF1a                 x"), Some(21));
    }

    #[test]
    fn the_cap_stops_inflation() {
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut encoder, &vec![0u8; 1 << 20]).unwrap();
        let bomb = encoder.finish().unwrap();
        match inflate(&bomb, Codec::Zlib, 4096) {
            Inflated::TooLarge(out) => assert_eq!(out.len(), 4096),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_oversized_lzma_dictionary_is_refused_before_allocation() {
        // props 0x5d, dictionary 4 GiB - 1, unknown size.
        let header = b"\x5d\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00";
        assert!(matches!(
            inflate(header, Codec::Lzma, MAX_INFLATED),
            Inflated::Failed { .. }
        ));
    }
}
