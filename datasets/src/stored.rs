//! [`StoredFile`]: a dataset file held open so that batches can be read from it on demand.
//!
//! A plain file is read where it lies: a batch seeks to its first record and reads exactly its
//! bytes. A gzipped file cannot be seeked into, so it is decompressed once, as a stream, into
//! an anonymous temporary file (`tempfile::tempfile`, in `$TMPDIR`; it has no name and the
//! operating system removes it when the dataset is dropped or the process dies), and batches
//! are read from that copy. The decompressed size is bounded twice while it is written: by
//! [`crate::MAX_DECOMPRESSED_BYTES`], and, when the format's header can be read from the
//! first decompressed bytes, by the length that header implies — bytes past it are counted
//! (to report the exact length, as for a plain file) but never written.
//!
//! Every open goes through `gauntlet-files` (regular files only, a non-blocking open), and a
//! plain file over [`gauntlet_files::limits::DATA`] is refused, as when files were read whole.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Mutex;

use gauntlet_files::{limits, FileError, GZIP_MAGIC};

use crate::error::Result;
use crate::DatasetError;

/// Decompressed bytes examined before anything is written, for the format's header.
pub(crate) const HEADER_PREFIX_BYTES: usize = 64 * 1024;

/// Bytes read per call when a file is scanned from start to end.
pub(crate) const SCAN_BYTES: usize = 1 << 20;

/// A dataset file, open for reads at any offset.
#[derive(Debug)]
pub(crate) struct StoredFile {
    /// The path the user gave; every error names it (for a gzipped file, the `.gz`).
    path: PathBuf,
    file: Mutex<File>,
    /// The file's length; for a gzipped file, the decompressed length.
    len: u64,
    /// Whether the bytes are a decompressed copy in a temporary file.
    decompressed: bool,
}

impl StoredFile {
    /// Open `path`; if it starts with the gzip magic bytes, decompress it into a temporary
    /// file first. `expected_len` is given the first decompressed bytes (up to
    /// [`HEADER_PREFIX_BYTES`]) and returns the total length the format's header implies, or
    /// `None` when it cannot tell (the header is checked properly once the file is open).
    pub(crate) fn open(path: &Path, expected_len: &dyn Fn(&[u8]) -> Option<u64>) -> Result<Self> {
        let mut file = gauntlet_files::open(path, limits::DATA.what)?;
        let io = |source| DatasetError::Io {
            path: path.to_path_buf(),
            source,
        };
        let len = file.metadata().map_err(io)?.len();
        if len > limits::DATA.bytes {
            return Err(FileError::TooLarge {
                path: path.to_path_buf(),
                what: limits::DATA.what,
                limit: limits::DATA.bytes,
            }
            .into());
        }
        let mut magic = [0u8; 2];
        let got = read_up_to(&mut file, &mut magic).map_err(io)?;
        if magic[..got] != GZIP_MAGIC {
            return Ok(Self {
                path: path.to_path_buf(),
                file: Mutex::new(file),
                len,
                decompressed: false,
            });
        }
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let (copy, len) = decompress_to_temp(path, file, expected_len)?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(copy),
            len,
            decompressed: true,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The length of the (decompressed) bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Whether the bytes are a decompressed copy of a gzipped file.
    pub(crate) fn is_decompressed(&self) -> bool {
        self.decompressed
    }

    /// The first `min(n, len)` bytes.
    pub(crate) fn prefix(&self, n: usize) -> Result<Vec<u8>> {
        let n = usize::try_from(self.len).map_or(n, |len| len.min(n));
        let mut bytes = vec![0; n];
        self.read_exact_at(0, &mut bytes)?;
        Ok(bytes)
    }

    /// Fill `out` from `offset`. A file that shrank since it was opened is an error naming it.
    pub(crate) fn read_exact_at(&self, offset: u64, out: &mut [u8]) -> Result<()> {
        let io = |source| DatasetError::Io {
            path: self.path.clone(),
            source,
        };
        // A poisoned lock only means another reader panicked; the file handle is still fine.
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        file.read_exact(out).map_err(io)
    }

    /// Read `records` records of `record_len` bytes from `offset`, in chunks of about
    /// [`SCAN_BYTES`], calling `each` with the index of the chunk's first record and its bytes.
    pub(crate) fn scan_records(
        &self,
        offset: u64,
        records: usize,
        record_len: usize,
        each: &mut dyn FnMut(usize, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let per_chunk = (SCAN_BYTES / record_len.max(1)).max(1);
        let mut buffer = Vec::new();
        let mut first = 0;
        while first < records {
            let n = per_chunk.min(records - first);
            buffer.resize(n * record_len, 0);
            self.read_exact_at(offset + (first * record_len) as u64, &mut buffer)?;
            each(first, &buffer)?;
            first += n;
        }
        Ok(())
    }
}

/// Up to `out.len()` bytes, fewer only at the end of the stream.
fn read_up_to(reader: &mut impl Read, out: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < out.len() {
        match reader.read(&mut out[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// A reader that remembers whether its source failed, so that the decoder's errors are told
/// apart: a failing disk is [`DatasetError::Io`], corrupt data [`FileError::Gzip`].
struct Tracked<R> {
    inner: R,
    failed: Rc<Cell<bool>>,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let result = self.inner.read(out);
        if result.is_err() {
            self.failed.set(true);
        }
        result
    }
}

/// Stream-decompress `file` into an anonymous temporary file; the copy and the decompressed
/// length (which counts bytes past the header's length, none of which are written).
fn decompress_to_temp(
    path: &Path,
    file: File,
    expected_len: &dyn Fn(&[u8]) -> Option<u64>,
) -> Result<(File, u64)> {
    let failed = Rc::new(Cell::new(false));
    let source = Tracked {
        inner: file,
        failed: Rc::clone(&failed),
    };
    let mut decoder =
        flate2::bufread::MultiGzDecoder::new(BufReader::with_capacity(64 * 1024, source));
    let read_error = |source: io::Error| -> DatasetError {
        if failed.get() {
            DatasetError::Io {
                path: path.to_path_buf(),
                source,
            }
        } else {
            FileError::Gzip {
                path: path.to_path_buf(),
                source,
            }
            .into()
        }
    };
    let limit = limits::DATA_DECOMPRESSED;
    let too_large = || -> DatasetError {
        FileError::DecompressedTooLarge {
            path: path.to_path_buf(),
            what: limit.what,
            limit: limit.bytes,
        }
        .into()
    };
    let temp_error = |source| DatasetError::TempFile {
        path: path.to_path_buf(),
        source,
    };
    let mut chunk = vec![0u8; HEADER_PREFIX_BYTES];
    let got = read_up_to(&mut decoder, &mut chunk).map_err(read_error)?;
    // What is written: the header's length when it can be read, never more than the limit.
    let keep = expected_len(&chunk[..got])
        .unwrap_or(u64::MAX)
        .min(limit.bytes);
    let mut copy = tempfile::tempfile().map_err(temp_error)?;
    let mut total: u64 = 0;
    let mut n = got;
    while n > 0 {
        let start = total;
        total += n as u64;
        if total > limit.bytes {
            return Err(too_large());
        }
        if start < keep {
            let write = usize::try_from(keep - start).map_or(n, |k| k.min(n));
            copy.write_all(&chunk[..write]).map_err(temp_error)?;
        }
        n = loop {
            match decoder.read(&mut chunk) {
                Ok(n) => break n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(read_error(error)),
            }
        };
    }
    copy.flush().map_err(temp_error)?;
    Ok((copy, total))
}
