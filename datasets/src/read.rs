//! Whole-file reading with transparent gzip, shared by the binary loaders; every read goes
//! through `gauntlet-files` (regular files only, limits on the bytes read and inflated).

use std::borrow::Cow;
use std::path::Path;

use gauntlet_files::{limits, Limit};

use crate::error::Result;

pub use gauntlet_files::GZIP_MAGIC;

/// Largest decompressed size accepted (4 GiB). The full CIFAR-10 training set is 150 MiB and
/// MNIST's 47 MiB; anything past this is a gzip bomb or the wrong file, and decompression
/// stops there, before it exhausts memory.
pub const MAX_DECOMPRESSED_BYTES: u64 = limits::DATA_DECOMPRESSED.bytes;

/// Read `path` whole, decompressing it if it starts with the gzip magic bytes.
///
/// Compression is detected from content, never from the extension, so a `.gz` that was
/// already decompressed by a browser, or a gzipped file without the suffix, both load.
/// None of the supported formats can start with `1f 8b` uncompressed: IDX starts with `00 00`,
/// NPY with `93 'N'`, and a CIFAR-10 record's first byte is a label below 10.
pub(crate) fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    read_maybe_gzip_with(path, limits::DATA_DECOMPRESSED)
}

/// [`read_maybe_gzip`] with the decompressed limit given, so tests can use a small one.
pub(crate) fn read_maybe_gzip_with(path: &Path, decompressed: Limit) -> Result<Vec<u8>> {
    Ok(gauntlet_files::read_maybe_gzip(
        path,
        limits::DATA,
        decompressed,
    )?)
}

/// `bytes` unchanged, or decompressed (all members) if they start with the gzip magic.
pub(crate) fn decompress_if_gzip<'a>(origin: &Path, bytes: Cow<'a, [u8]>) -> Result<Cow<'a, [u8]>> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes);
    }
    Ok(Cow::Owned(gauntlet_files::decompress_gzip_bounded(
        &bytes,
        origin,
        limits::DATA_DECOMPRESSED,
    )?))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::Write;

    use super::*;
    use crate::DatasetError;

    /// A gzip that inflates past a (lowered) limit is stopped at the limit, and the error says
    /// the decompressed limit was exceeded rather than that the file does not decompress.
    #[test]
    fn a_gzip_bomb_is_refused_as_too_large() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![0_u8; 16 << 20]).unwrap();
        let bomb = encoder.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t10k-images-idx3-ubyte.gz");
        std::fs::write(&path, &bomb).unwrap();
        let limit = Limit::new(1 << 20, limits::DATA_DECOMPRESSED.what);
        let error = read_maybe_gzip_with(&path, limit).unwrap_err();
        assert!(
            matches!(
                &error,
                DatasetError::File(gauntlet_files::FileError::DecompressedTooLarge { .. })
            ),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("decompresses to more than 1 MiB"),
            "{message}"
        );
        assert!(message.contains(&path.display().to_string()), "{message}");
    }
}
