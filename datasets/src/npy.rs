//! NumPy `.npy` files: <https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html>.
//!
//! The header is parsed here rather than by a crate, because the one dangerous case — object
//! arrays, whose payload is a pickle — must be refused before any payload byte is touched, and
//! because a malformed header must be an error, never a panic (a property test feeds the
//! parser arbitrary bytes).
//!
//! Layout: the magic `\x93NUMPY`, a major and minor version byte, the header length (u16 LE
//! for version 1.x, u32 LE for 2.x and 3.x), then a Python dict literal such as
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (10, 28, 28), }` (latin-1 for 1.x/2.x,
//! UTF-8 for 3.x), padded with spaces and a newline; the raw values follow.
//!
//! What [`load_npy`] accepts:
//! - images of dtype `u1` (uint8, scaled by 1/255) or `f4`/`f8` (float32/float64, every value
//!   finite and in [0, 1]), of shape `(N, H, W)` (then `C = 1`) or `(N, C, H, W)` with
//!   `C` 1 or 3. Flat `(N, C*H*W)` arrays are refused because H and W cannot be recovered,
//!   and channels-last `(N, H, W, C)` arrays are refused rather than misread: reshape or
//!   transpose in NumPy first.
//! - labels of any integer dtype (`i1`..`i8`, `u1`..`u8`, either byte order) and shape `(N,)`,
//!   every value in `0..num_classes`.
//! - C order only (`fortran_order: False`).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Result;
use crate::in_memory::{numeric_class_names, Pixels};
use crate::read::{decompress_if_gzip, name_from_path, read_maybe_gzip};
use crate::stored::StoredFile;
use crate::streamed::{Encoding, RecordFiles, Segment};
use crate::{DatasetError, InMemoryDataset, StreamedDataset};

/// The six bytes every NPY file starts with.
pub const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Byte order of a dtype, from the first character of its `descr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    /// `<`
    Little,
    /// `>`
    Big,
    /// `|`: not applicable (one-byte types).
    NotApplicable,
    /// `=`: the writer's native order, which every NumPy platform in use writes as `<`.
    Native,
}

/// A simple (non-structured) dtype such as `<f4`: byte order, kind character, item size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyDtype {
    /// The `descr` string exactly as in the header.
    pub descr: String,
    pub byte_order: ByteOrder,
    /// NumPy's kind character: `u` unsigned, `i` signed, `f` float, `b` bool, …
    pub kind: char,
    /// Bytes per item.
    pub item_size: usize,
}

/// A parsed NPY header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// `(major, minor)` format version; majors 1, 2 and 3 are read.
    pub version: (u8, u8),
    pub dtype: NpyDtype,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    /// Byte offset of the first value (magic + version + length field + header text).
    pub data_offset: usize,
}

impl NpyHeader {
    /// Number of values, `product(shape)`, or `None` on overflow.
    pub fn element_count(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
    }
}

/// Parse the header at the start of `bytes`; `origin` names the file in errors.
///
/// Object dtypes (`|O`) fail with [`DatasetError::NpyObjectDtype`]; structured dtypes
/// (a list `descr`) and malformed headers with [`DatasetError::NpyHeader`]. The payload is
/// not examined; see [`load_npy`] for the checks on it.
pub fn parse_npy_header(origin: &Path, bytes: &[u8]) -> Result<NpyHeader, DatasetError> {
    let bad = |reason: String| DatasetError::NpyHeader {
        path: origin.to_path_buf(),
        reason,
    };
    if bytes.len() < 8 {
        return Err(DatasetError::Truncated {
            path: origin.to_path_buf(),
            expected: 10,
            actual: bytes.len() as u64,
        });
    }
    if &bytes[..6] != NPY_MAGIC {
        return Err(bad(format!(
            "does not start with the NPY magic `\\x93NUMPY` (found {:02x?})",
            &bytes[..6]
        )));
    }
    let version = (bytes[6], bytes[7]);
    let (len_field, utf8) = match version.0 {
        1 => (2, false),
        2 => (4, false),
        3 => (4, true),
        major => {
            return Err(bad(format!(
                "unsupported format version {major}.{}",
                version.1
            )))
        }
    };
    let prefix = 8 + len_field;
    let header_len = match bytes.get(8..prefix) {
        Some([a, b]) => usize::from(u16::from_le_bytes([*a, *b])),
        Some([a, b, c, d]) => u32::from_le_bytes([*a, *b, *c, *d]) as usize,
        _ => {
            return Err(DatasetError::Truncated {
                path: origin.to_path_buf(),
                expected: prefix as u64,
                actual: bytes.len() as u64,
            })
        }
    };
    let data_offset = prefix
        .checked_add(header_len)
        .ok_or_else(|| bad("header length overflows".into()))?;
    let raw = bytes
        .get(prefix..data_offset)
        .ok_or(DatasetError::Truncated {
            path: origin.to_path_buf(),
            expected: data_offset as u64,
            actual: bytes.len() as u64,
        })?;
    let text: String = if utf8 {
        std::str::from_utf8(raw)
            .map_err(|e| bad(format!("version 3 header is not UTF-8: {e}")))?
            .to_string()
    } else {
        raw.iter().map(|&b| char::from(b)).collect()
    };

    let entries = DictParser::new(&text).parse().map_err(|reason| {
        // Quote at most 200 characters: the header of a corrupt file can be anything.
        let quoted: String = text.trim_end().chars().take(200).collect();
        bad(format!("{reason} in `{quoted}`"))
    })?;
    let mut descr = None;
    let mut fortran_order = None;
    let mut shape = None;
    for (key, value) in entries {
        let slot_taken = match (key.as_str(), value) {
            ("descr", Value::Str(s)) => descr.replace(s).is_some(),
            ("descr", Value::Other(raw)) => {
                return Err(bad(format!(
                    "structured dtype {raw} is not supported; save a plain array"
                )))
            }
            ("fortran_order", Value::Bool(b)) => fortran_order.replace(b).is_some(),
            ("shape", Value::Tuple(dims)) => shape.replace(dims).is_some(),
            (key @ ("descr" | "fortran_order" | "shape"), value) => {
                return Err(bad(format!("key `{key}` has the wrong type ({value:?})")))
            }
            (key, _) => return Err(bad(format!("unexpected key `{key}`"))),
        };
        if slot_taken {
            return Err(bad(format!("key `{key}` appears twice")));
        }
    }
    let missing = |k: &str| bad(format!("missing key `{k}`"));
    let descr = descr.ok_or_else(|| missing("descr"))?;
    let dtype = parse_descr(origin, &descr)?;
    Ok(NpyHeader {
        version,
        dtype,
        fortran_order: fortran_order.ok_or_else(|| missing("fortran_order"))?,
        shape: shape.ok_or_else(|| missing("shape"))?,
        data_offset,
    })
}

fn parse_descr(origin: &Path, descr: &str) -> Result<NpyDtype> {
    let mut chars = descr.chars();
    let byte_order = match chars.next() {
        Some('<') => ByteOrder::Little,
        Some('>') => ByteOrder::Big,
        Some('|') => ByteOrder::NotApplicable,
        Some('=') => ByteOrder::Native,
        _ => {
            // NumPy always writes a byte-order character; a bare 'O' is still an object array.
            if descr.starts_with('O') {
                return Err(DatasetError::NpyObjectDtype {
                    path: origin.to_path_buf(),
                    descr: descr.to_string(),
                });
            }
            return Err(DatasetError::NpyHeader {
                path: origin.to_path_buf(),
                reason: format!("dtype `{descr}` has no byte-order character"),
            });
        }
    };
    let kind = chars.next().unwrap_or('?');
    if kind == 'O' {
        return Err(DatasetError::NpyObjectDtype {
            path: origin.to_path_buf(),
            descr: descr.to_string(),
        });
    }
    let size_text = chars.as_str();
    let item_size = match size_text.parse::<usize>() {
        Ok(size) if size > 0 && size_text.bytes().all(|b| b.is_ascii_digit()) => size,
        _ => {
            return Err(DatasetError::NpyUnsupportedDtype {
                path: origin.to_path_buf(),
                descr: descr.to_string(),
                role: "any array",
                reason: "only plain numeric dtypes such as `|u1`, `<f4`, `<i8` are read".into(),
            })
        }
    };
    Ok(NpyDtype {
        descr: descr.to_string(),
        byte_order,
        kind,
        item_size,
    })
}

/// A header dict value. Only the shapes NumPy writes are understood; anything else between
/// brackets is kept raw so a structured dtype can be named in the error.
#[derive(Debug)]
enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
    Other(String),
}

/// A tiny recursive-descent parser for the Python dict literal NumPy writes.
struct DictParser<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    text: &'a str,
}

impl<'a> DictParser<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            chars: text.char_indices().peekable(),
            text,
        }
    }

    fn skip_ws(&mut self) {
        while self.chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    }

    fn expect_char(&mut self, want: char) -> Result<(), String> {
        self.skip_ws();
        match self.chars.next() {
            Some((_, c)) if c == want => Ok(()),
            Some((i, c)) => Err(format!("expected `{want}` at byte {i}, found `{c}`")),
            None => Err(format!("expected `{want}`, found the end")),
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.chars.peek().map(|&(_, c)| c)
    }

    fn parse(mut self) -> Result<Vec<(String, Value)>, String> {
        self.expect_char('{')?;
        let mut entries = Vec::new();
        loop {
            if self.peek() == Some('}') {
                self.chars.next();
                break;
            }
            let key = self.string()?;
            self.expect_char(':')?;
            let value = self.value()?;
            entries.push((key, value));
            match self.peek() {
                Some(',') => {
                    self.chars.next();
                }
                Some('}') => {}
                Some(c) => return Err(format!("expected `,` or `}}`, found `{c}`")),
                None => return Err("unterminated dict".into()),
            }
        }
        match self.peek() {
            None => Ok(entries),
            Some(c) => Err(format!("unexpected `{c}` after the dict")),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let quote = match self.peek() {
            Some(q @ ('\'' | '"')) => q,
            Some(c) => return Err(format!("expected a quoted string, found `{c}`")),
            None => return Err("expected a quoted string, found the end".into()),
        };
        self.chars.next();
        let mut out = String::new();
        loop {
            match self.chars.next() {
                Some((_, '\\')) => match self.chars.next() {
                    Some((_, c)) => out.push(c),
                    None => return Err("unterminated string".into()),
                },
                Some((_, c)) if c == quote => return Ok(out),
                Some((_, c)) => out.push(c),
                None => return Err("unterminated string".into()),
            }
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        match self.peek() {
            Some('\'' | '"') => self.string().map(Value::Str),
            Some('(') => self.tuple().map(Value::Tuple),
            Some('[' | '{') => self.balanced().map(Value::Other),
            Some(_) => {
                let word = self.word();
                match word.as_str() {
                    "True" => Ok(Value::Bool(true)),
                    "False" => Ok(Value::Bool(false)),
                    "" => Err("expected a value".into()),
                    other => Err(format!("unexpected value `{other}`")),
                }
            }
            None => Err("expected a value, found the end".into()),
        }
    }

    fn word(&mut self) -> String {
        let mut out = String::new();
        while let Some((_, c)) = self
            .chars
            .next_if(|(_, c)| c.is_alphanumeric() || *c == '_')
        {
            out.push(c);
        }
        out
    }

    /// `()`, `(3,)`, `(3, 28, 28)`; Python 2 era files may write `3L`.
    fn tuple(&mut self) -> Result<Vec<usize>, String> {
        self.expect_char('(')?;
        let mut dims = Vec::new();
        loop {
            if self.peek() == Some(')') {
                self.chars.next();
                return Ok(dims);
            }
            let word = self.word();
            let digits = word.strip_suffix('L').unwrap_or(&word);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "shape entry `{word}` is not a non-negative integer"
                ));
            }
            let dim = digits
                .parse::<usize>()
                .map_err(|_| format!("shape entry `{word}` is too large"))?;
            dims.push(dim);
            match self.peek() {
                Some(',') => {
                    self.chars.next();
                }
                Some(')') => {}
                Some(c) => return Err(format!("expected `,` or `)` in shape, found `{c}`")),
                None => return Err("unterminated shape tuple".into()),
            }
        }
    }

    /// A bracketed span kept raw (quotes respected), for naming a structured dtype.
    fn balanced(&mut self) -> Result<String, String> {
        let start = self.chars.peek().map_or(self.text.len(), |&(i, _)| i);
        let mut depth = 0usize;
        let mut quote: Option<char> = None;
        for (i, c) in self.chars.by_ref() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '[' | '{' | '(') => depth += 1,
                (None, ']' | '}' | ')') => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return Ok(self.text[start..i + c.len_utf8()].to_string());
                    }
                }
                _ => {}
            }
        }
        Err("unterminated bracket".into())
    }
}

/// Load an images `.npy` and a labels `.npy` (either may be gzipped; see the module docs for
/// accepted dtypes and shapes). `class_names`: as for [`crate::load_idx`].
pub fn load_npy(
    images: &Path,
    labels: &Path,
    class_names: Option<Vec<String>>,
) -> Result<InMemoryDataset, DatasetError> {
    let image_bytes = read_maybe_gzip(images)?;
    let label_bytes = read_maybe_gzip(labels)?;
    parse_pair(
        name_from_path(images),
        images,
        &image_bytes,
        labels,
        &label_bytes,
        class_names,
    )
}

/// Decode an images/labels pair of NPY files held in memory (raw or gzipped).
pub fn from_npy_bytes(
    name: &str,
    images_bytes: &[u8],
    labels_bytes: &[u8],
    class_names: Option<Vec<String>>,
) -> Result<InMemoryDataset, DatasetError> {
    let images_origin = PathBuf::from(format!("{name} (in-memory images)"));
    let labels_origin = PathBuf::from(format!("{name} (in-memory labels)"));
    let image_bytes = decompress_if_gzip(&images_origin, Cow::Borrowed(images_bytes))?;
    let label_bytes = decompress_if_gzip(&labels_origin, Cow::Borrowed(labels_bytes))?;
    parse_pair(
        name.to_string(),
        &images_origin,
        &image_bytes,
        &labels_origin,
        &label_bytes,
        class_names,
    )
}

fn parse_pair(
    name: String,
    images_path: &Path,
    image_bytes: &[u8],
    labels_path: &Path,
    label_bytes: &[u8],
    class_names: Option<Vec<String>>,
) -> Result<InMemoryDataset> {
    let (count, shape, pixels) = read_images(images_path, image_bytes)?;
    let label_values = read_labels(labels_path, label_bytes)?;
    if count != label_values.len() {
        return Err(DatasetError::CountMismatch {
            images: images_path.to_path_buf(),
            labels: labels_path.to_path_buf(),
            image_count: count,
            label_count: label_values.len(),
        });
    }
    let origin = format!("`{}`", labels_path.display());
    let class_names = match class_names {
        Some(names) => names,
        None => numeric_class_names(&origin, &label_values)?,
    };
    InMemoryDataset::from_parts(&origin, name, shape, class_names, pixels, label_values)
}

/// Header, fortran check and exact payload length: everything common to both roles.
fn checked_payload<'a>(path: &Path, bytes: &'a [u8]) -> Result<(NpyHeader, &'a [u8])> {
    let header = checked_header(path, bytes, bytes.len() as u64)?;
    let data = &bytes[header.data_offset..];
    Ok((header, data))
}

/// [`checked_payload`] from the file's start (`bytes`, at least the header when the file
/// holds it) and its whole length `actual`.
fn checked_header(path: &Path, bytes: &[u8], actual: u64) -> Result<NpyHeader> {
    let header = parse_npy_header(path, bytes)?;
    if header.fortran_order {
        return Err(DatasetError::NpyFortranOrder {
            path: path.to_path_buf(),
        });
    }
    let payload = payload_end(&header).ok_or_else(|| DatasetError::DimensionOverflow {
        path: path.to_path_buf(),
        dims: header.shape.iter().map(|&d| d as u64).collect(),
    })?;
    if actual < payload {
        return Err(DatasetError::Truncated {
            path: path.to_path_buf(),
            expected: payload,
            actual,
        });
    }
    if actual > payload {
        return Err(DatasetError::TrailingBytes {
            path: path.to_path_buf(),
            expected: payload,
            actual,
        });
    }
    Ok(header)
}

/// The file length a header implies: its data offset plus the payload.
fn payload_end(header: &NpyHeader) -> Option<u64> {
    header
        .element_count()
        .and_then(|n| n.checked_mul(header.dtype.item_size))
        .and_then(|n| n.checked_add(header.data_offset))
        .map(|n| n as u64)
}

/// Where the values start, by the version and header-length fields alone (`None`: not an NPY
/// file, or too short to say).
fn declared_data_offset(bytes: &[u8]) -> Option<u64> {
    if bytes.get(..6)? != NPY_MAGIC {
        return None;
    }
    match bytes.get(6)? {
        1 => {
            let len = u16::from_le_bytes(bytes.get(8..10)?.try_into().ok()?);
            Some(10 + u64::from(len))
        }
        2 | 3 => {
            let len = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?);
            Some(12 + u64::from(len))
        }
        _ => None,
    }
}

/// The longest header [`open_npy`] reads (NumPy itself writes a few hundred bytes and by
/// default reads at most 10,000): past it, the file is refused rather than its header held.
pub const MAX_NPY_HEADER_BYTES: u64 = 1 << 20;

fn is_big_endian(order: ByteOrder) -> bool {
    match order {
        ByteOrder::Big => true,
        ByteOrder::Native => cfg!(target_endian = "big"),
        ByteOrder::Little | ByteOrder::NotApplicable => false,
    }
}

/// `[C, H, W]` and how values are stored, from an images header.
fn image_layout(path: &Path, header: &NpyHeader) -> Result<([usize; 3], Encoding)> {
    let origin = format!("`{}`", path.display());
    let invalid = |reason: &str| DatasetError::InvalidShape {
        origin: origin.clone(),
        shape: header.shape.clone(),
        reason: reason.to_string(),
    };
    let shape =
        match header.shape[..] {
            [_, h, w] => [1, h, w],
            [_, c @ (1 | 3), h, w] => [c, h, w],
            [_, _, _, 1 | 3] => return Err(invalid(
                "looks channels-last (N, H, W, C); save `a.transpose(0, 3, 1, 2)` as (N, C, H, W)",
            )),
            [_, _, _, _] => return Err(invalid("channels (axis 1 of N, C, H, W) must be 1 or 3")),
            [_, _] => {
                return Err(invalid(
                    "flat (N, C*H*W) images are ambiguous; reshape to (N, H, W) or (N, C, H, W)",
                ))
            }
            _ => return Err(invalid("images must be (N, H, W) or (N, C, H, W)")),
        };
    if shape.contains(&0) {
        return Err(invalid("C, H and W must be at least 1"));
    }
    let big_endian = is_big_endian(header.dtype.byte_order);
    let encoding = match (header.dtype.kind, header.dtype.item_size) {
        ('u', 1) => Encoding::U8,
        ('f', 4) => Encoding::F32 { big_endian },
        ('f', 8) => Encoding::F64 { big_endian },
        _ => {
            return Err(DatasetError::NpyUnsupportedDtype {
                path: path.to_path_buf(),
                descr: header.dtype.descr.clone(),
                role: "images",
                reason: "images must be uint8 (scaled by 1/255) or float32/float64 in [0, 1]"
                    .into(),
            })
        }
    };
    Ok((shape, encoding))
}

/// `(N, [C, H, W], pixels)`.
fn read_images(path: &Path, bytes: &[u8]) -> Result<(usize, [usize; 3], Pixels)> {
    let (header, data) = checked_payload(path, bytes)?;
    let origin = format!("`{}`", path.display());
    let (shape, encoding) = image_layout(path, &header)?;
    let pixels = match encoding {
        Encoding::U8 => Pixels::U8(data.to_vec()),
        _ => {
            let mut values = Vec::with_capacity(data.len() / encoding.item_size());
            encoding.decode(&origin, 0, data, &mut values)?;
            Pixels::F32(values)
        }
    };
    Ok((header.shape[0], shape, pixels))
}

/// Open an images `.npy` and a labels `.npy` for streaming: the checks of [`load_npy`] (float
/// images are checked value by value in one pass over the file), after which batches read
/// their pixels from the images file ([`StreamedDataset`]). A gzipped images file is
/// decompressed once into a temporary file. A header longer than [`MAX_NPY_HEADER_BYTES`] is
/// refused.
pub fn open_npy(
    images: &Path,
    labels: &Path,
    class_names: Option<Vec<String>>,
) -> Result<StreamedDataset, DatasetError> {
    let stored = StoredFile::open(images, &|prefix| {
        let header = parse_npy_header(images, prefix).ok()?;
        payload_end(&header)
    })?;
    let label_bytes = read_maybe_gzip(labels)?;
    let start = stored.prefix(12)?;
    let header_end = declared_data_offset(&start)
        .unwrap_or(start.len() as u64)
        .min(stored.len());
    if header_end > MAX_NPY_HEADER_BYTES {
        return Err(DatasetError::NpyHeader {
            path: images.to_path_buf(),
            reason: format!(
                "the header is {header_end} bytes long; at most {MAX_NPY_HEADER_BYTES} are read"
            ),
        });
    }
    // At most MAX_NPY_HEADER_BYTES, so it fits in usize.
    let start = stored.prefix(header_end as usize)?;
    let header = checked_header(images, &start, stored.len())?;
    let (shape, encoding) = image_layout(images, &header)?;
    let count = header.shape[0];
    // The payload fits in the file (checked_header), so these products cannot overflow.
    let values = shape.iter().product::<usize>();
    let record_len = values * encoding.item_size();
    if encoding != Encoding::U8 {
        let origin = format!("`{}`", images.display());
        let mut scratch = Vec::new();
        stored.scan_records(
            header.data_offset as u64,
            count,
            record_len,
            &mut |first, bytes| {
                scratch.clear();
                encoding.decode(&origin, first * values, bytes, &mut scratch)
            },
        )?;
    }
    let label_values = read_labels(labels, &label_bytes)?;
    if count != label_values.len() {
        return Err(DatasetError::CountMismatch {
            images: images.to_path_buf(),
            labels: labels.to_path_buf(),
            image_count: count,
            label_count: label_values.len(),
        });
    }
    let origin = format!("`{}`", labels.display());
    let class_names = match class_names {
        Some(names) => names,
        None => numeric_class_names(&origin, &label_values)?,
    };
    let pixels = RecordFiles {
        segments: vec![Segment {
            file: Arc::new(stored),
            offset: header.data_offset as u64,
            records: count,
            record_len,
            skip: 0,
        }],
        encoding,
    };
    StreamedDataset::from_files(
        &origin,
        name_from_path(images),
        shape,
        class_names,
        label_values,
        pixels,
    )
}

fn read_labels(path: &Path, bytes: &[u8]) -> Result<Vec<u32>> {
    let (header, data) = checked_payload(path, bytes)?;
    let origin = format!("`{}`", path.display());
    if header.shape.len() != 1 {
        return Err(DatasetError::InvalidShape {
            origin,
            shape: header.shape.clone(),
            reason: "labels must be one-dimensional, shape (N,)".into(),
        });
    }
    let NpyDtype {
        kind, item_size, ..
    } = header.dtype;
    if !matches!((kind, item_size), ('i' | 'u', 1 | 2 | 4 | 8)) {
        return Err(DatasetError::NpyUnsupportedDtype {
            path: path.to_path_buf(),
            descr: header.dtype.descr.clone(),
            role: "labels",
            reason: "labels must be integers (int8..int64 or uint8..uint64)".into(),
        });
    }
    let big = is_big_endian(header.dtype.byte_order);
    let mut labels = Vec::with_capacity(header.shape[0]);
    for (index, chunk) in data.chunks_exact(item_size).enumerate() {
        // Widen to 8 bytes with the right sign, then interpret as i128 so u64 and i64 both fit.
        let mut word = [0u8; 8];
        if big {
            word[8 - item_size..].copy_from_slice(chunk);
        } else {
            word[..item_size].copy_from_slice(chunk);
        }
        let unsigned = if big {
            u64::from_be_bytes(word)
        } else {
            u64::from_le_bytes(word)
        };
        let value: i128 = if kind == 'i' {
            // Sign-extend from item_size bytes.
            let shift = 64 - 8 * item_size as u32;
            i128::from(((unsigned << shift) as i64) >> shift)
        } else {
            i128::from(unsigned)
        };
        let label = u32::try_from(value).map_err(|_| DatasetError::LabelOutOfRange {
            origin: origin.clone(),
            index,
            label: i64::try_from(value).unwrap_or(i64::MAX),
            num_classes: u32::MAX as usize,
        })?;
        labels.push(label);
    }
    Ok(labels)
}
