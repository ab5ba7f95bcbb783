//! Whole-file reading with transparent gzip, shared by the binary loaders.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

use crate::error::Result;
use crate::DatasetError;

/// The two bytes every gzip member starts with (RFC 1952 §2.3.1).
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Largest decompressed size accepted (4 GiB). The full CIFAR-10 training set is 150 MiB and
/// MNIST's 47 MiB; anything past this is a gzip bomb or the wrong file, and is refused before
/// it exhausts memory.
pub const MAX_DECOMPRESSED_BYTES: u64 = 4 << 30;

/// Read `path` whole, decompressing it if it starts with the gzip magic bytes.
///
/// Compression is detected from content, never from the extension, so a `.gz` that was
/// already decompressed by a browser, or a gzipped file without the suffix, both load.
/// None of the supported formats can start with `1f 8b` uncompressed: IDX starts with `00 00`,
/// NPY with `93 'N'`, and a CIFAR-10 record's first byte is a label below 10.
pub(crate) fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let bytes = fs_err::read(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(decompress_if_gzip(path, Cow::Owned(bytes))?.into_owned())
}

/// `bytes` unchanged, or decompressed (all members) if they start with the gzip magic.
pub(crate) fn decompress_if_gzip<'a>(origin: &Path, bytes: Cow<'a, [u8]>) -> Result<Cow<'a, [u8]>> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    let mut decoder =
        flate2::read::MultiGzDecoder::new(&bytes[..]).take(MAX_DECOMPRESSED_BYTES + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|source| DatasetError::Gzip {
            path: origin.to_path_buf(),
            source,
        })?;
    if out.len() as u64 > MAX_DECOMPRESSED_BYTES {
        return Err(DatasetError::DecompressedTooLarge {
            path: origin.to_path_buf(),
            limit: MAX_DECOMPRESSED_BYTES,
        });
    }
    Ok(Cow::Owned(out))
}

/// A short dataset name from a file path: `parent/stem`, e.g. `fashion-mnist/t10k-images-idx3-ubyte`.
pub(crate) fn name_from_path(path: &Path) -> String {
    let stem = path
        .file_name()
        .map(|s| s.to_string_lossy().trim_end_matches(".gz").to_string())
        .unwrap_or_else(|| path.display().to_string());
    match path.parent().and_then(Path::file_name) {
        Some(parent) => format!("{}/{stem}", parent.to_string_lossy()),
        None => stem,
    }
}
