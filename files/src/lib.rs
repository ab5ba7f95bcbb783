//! The one reading layer of gauntlet: every file gauntlet opens (suite, model spec, weights,
//! dataset files, images, `results.json`, manifests, signatures, keys, files to hash) goes
//! through here.
//!
//! Files given to a test harness come from pull requests and pipelines, so a path may name
//! anything. Three rules hold for every read:
//!
//! 1. **Regular files only.** Symbolic links are resolved, then a FIFO, socket, character or
//!    block device or folder is refused with an error naming the path and what it is — before
//!    it is opened, because opening a FIFO with no writer blocks forever. The open itself is
//!    non-blocking (`O_NONBLOCK` on Unix) and the opened handle is checked again, so a file
//!    swapped for a FIFO between the check and the open cannot hang the process either.
//! 2. **Limits count the bytes actually read,** never the size the metadata claims: a device
//!    reports length 0 and `/dev/zero` never ends. Every kind of file has a named limit
//!    ([`limits`]), and a read stops one byte past it.
//! 3. **Decompression is bounded while it inflates.** A gzip file is streamed through the
//!    decoder and the limit on the decompressed size is checked as bytes come out, so a bomb
//!    is refused after `limit` bytes, with an error that says so.
//!
//! Buffers grow only as bytes arrive (never by a size read from the file), and a failed
//! allocation is an error naming the file rather than an abort.

use std::fmt;
use std::fs::{File, Metadata};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

pub mod limits;

pub use limits::Limit;

/// The two bytes every gzip member starts with (RFC 1952 §2.3.1).
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Bytes read per call while filling a buffer: small enough to stay far below any limit's
/// granularity, large enough that system calls do not dominate.
const CHUNK_BYTES: usize = 64 * 1024;

/// What a path turned out to be when a regular file was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRegular {
    Folder,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    /// Anything else the platform has.
    Other,
}

impl fmt::Display for NotRegular {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotRegular::Folder => "a folder",
            NotRegular::Fifo => "a FIFO (named pipe)",
            NotRegular::Socket => "a socket",
            NotRegular::CharDevice => "a character device",
            NotRegular::BlockDevice => "a block device",
            NotRegular::Other => "not a regular file",
        })
    }
}

/// A byte count for messages: `4 MiB`, `64 KiB`, `1000 bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        for (size, unit) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{} {unit}", self.0 / size);
            }
        }
        write!(f, "{} bytes", self.0)
    }
}

/// Why a file could not be read. Every variant names the path as the user gave it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The operating system refused (missing file, permissions, an I/O error).
    #[error("cannot read `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A FIFO, socket, device or folder where a file was expected. `target` is where a
    /// symbolic link led, when `path` is one.
    #[error(
        "`{path}`{} is {kind}, not a regular file; {what} must be a regular file (a FIFO would \
         block and a device never ends, so neither is read)",
        target.as_ref().map(|t| format!(" (a link to `{}`)", t.display())).unwrap_or_default()
    )]
    NotRegular {
        path: PathBuf,
        target: Option<PathBuf>,
        kind: NotRegular,
        what: &'static str,
    },
    /// More bytes than the limit for this kind of file were read.
    #[error("`{path}` is larger than {}, the limit for {what}", Bytes(*limit))]
    TooLarge {
        path: PathBuf,
        what: &'static str,
        limit: u64,
    },
    /// Decompressing produced more than the limit; reading stopped there.
    #[error(
        "`{path}` decompresses to more than {}, the limit for {what}; decompression was \
         stopped there (a gzip bomb or the wrong file)",
        Bytes(*limit)
    )]
    DecompressedTooLarge {
        path: PathBuf,
        what: &'static str,
        limit: u64,
    },
    /// The file starts with the gzip magic bytes but is not valid gzip.
    #[error("`{path}` starts with the gzip magic bytes but is not valid gzip")]
    Gzip {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Text was expected.
    #[error("`{path}` ({what}) is not UTF-8 text")]
    NotUtf8 { path: PathBuf, what: &'static str },
    /// The buffer for the file's bytes could not be allocated.
    #[error("not enough memory to hold {} of `{path}`", Bytes(*bytes))]
    OutOfMemory { path: PathBuf, bytes: u64 },
}

impl FileError {
    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            FileError::Io { path, .. }
            | FileError::NotRegular { path, .. }
            | FileError::TooLarge { path, .. }
            | FileError::DecompressedTooLarge { path, .. }
            | FileError::Gzip { path, .. }
            | FileError::NotUtf8 { path, .. }
            | FileError::OutOfMemory { path, .. } => path,
        }
    }
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn kind_of(metadata: &Metadata) -> Option<NotRegular> {
    let file_type = metadata.file_type();
    if file_type.is_file() {
        return None;
    }
    if file_type.is_dir() {
        return Some(NotRegular::Folder);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return Some(NotRegular::Fifo);
        }
        if file_type.is_socket() {
            return Some(NotRegular::Socket);
        }
        if file_type.is_char_device() {
            return Some(NotRegular::CharDevice);
        }
        if file_type.is_block_device() {
            return Some(NotRegular::BlockDevice);
        }
    }
    Some(NotRegular::Other)
}

fn not_regular(path: &Path, kind: NotRegular, what: &'static str) -> FileError {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    FileError::NotRegular {
        path: path.to_path_buf(),
        target: is_link.then(|| std::fs::canonicalize(path).ok()).flatten(),
        kind,
        what,
    }
}

/// Whether `path` (links followed) is a regular file, without opening it; `Err` names what it
/// is otherwise. `what` says what the file was wanted for (`"a suite file"`).
pub fn check_regular(path: &Path, what: &'static str) -> Result<Metadata, FileError> {
    let metadata = std::fs::metadata(path).map_err(io_error(path))?;
    match kind_of(&metadata) {
        None => Ok(metadata),
        Some(kind) => Err(not_regular(path, kind, what)),
    }
}

/// Open `path` for reading if it is a regular file (links followed), never blocking.
///
/// The path's metadata is checked first; the open is non-blocking, so a FIFO swapped in after
/// the check returns at once, and the opened handle's own metadata is checked again, which
/// closes that race.
pub fn open(path: &Path, what: &'static str) -> Result<File, FileError> {
    check_regular(path, what)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: opening a FIFO with no writer returns instead of waiting for one.
        // O_NOCTTY: a terminal swapped in cannot become the controlling terminal. Neither
        // changes how a regular file reads.
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options.open(path).map_err(io_error(path))?;
    let metadata = file.metadata().map_err(io_error(path))?;
    match kind_of(&metadata) {
        None => Ok(file),
        Some(kind) => Err(not_regular(path, kind, what)),
    }
}

/// Read `path` whole, refusing it once more than `limit.bytes` bytes have been read.
pub fn read_bounded(path: &Path, limit: Limit) -> Result<Vec<u8>, FileError> {
    let file = open(path, limit.what)?;
    // The opened regular file's own length, capped by the limit, sizes the first allocation
    // (as `std::fs::read` does); the limit itself is enforced on the bytes read.
    let hint = file.metadata().map_or(0, |m| m.len()).min(limit.bytes);
    let too_large = || FileError::TooLarge {
        path: path.to_path_buf(),
        what: limit.what,
        limit: limit.bytes,
    };
    read_capped(file, path, limit.bytes, hint, too_large, io_error(path))
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_to_string_bounded(path: &Path, limit: Limit) -> Result<String, FileError> {
    let bytes = read_bounded(path, limit)?;
    String::from_utf8(bytes).map_err(|_| FileError::NotUtf8 {
        path: path.to_path_buf(),
        what: limit.what,
    })
}

/// Read `path` whole, inflating it (every gzip member) if it starts with [`GZIP_MAGIC`].
///
/// `on_disk` bounds the bytes read from the file, `decompressed` the bytes the decoder
/// produces; both are checked as the bytes flow, so the output buffer never holds more than
/// `decompressed` bytes (growing it may briefly need the smaller old one too) and a bomb is
/// refused with [`FileError::DecompressedTooLarge`]. The compressed bytes are streamed, never
/// held whole. Compression is detected from content, never from the file name.
pub fn read_maybe_gzip(
    path: &Path,
    on_disk: Limit,
    decompressed: Limit,
) -> Result<Vec<u8>, FileError> {
    let file = open(path, on_disk.what)?;
    let hint = file.metadata().map_or(0, |m| m.len()).min(on_disk.bytes);
    let mut reader = BufReader::with_capacity(CHUNK_BYTES, LimitedReader::new(file, on_disk.bytes));
    let too_large = || FileError::TooLarge {
        path: path.to_path_buf(),
        what: on_disk.what,
        limit: on_disk.bytes,
    };
    let starts_with_magic = peek(&mut reader, GZIP_MAGIC.len())
        .map_err(|error| map_read_error(error, path, &too_large))?
        == GZIP_MAGIC;
    if !starts_with_magic {
        let map_error = |error| map_read_error(error, path, &too_large);
        return read_capped(reader, path, on_disk.bytes, hint, too_large, map_error);
    }
    inflate(reader, path, decompressed, &too_large)
}

/// Inflate in-memory gzip bytes (every member) under `limit`; `origin` names them in errors.
pub fn decompress_gzip_bounded(
    bytes: &[u8],
    origin: &Path,
    limit: Limit,
) -> Result<Vec<u8>, FileError> {
    // In memory there is no on-disk limit to exceed; this closure is never called.
    let unreachable = || FileError::TooLarge {
        path: origin.to_path_buf(),
        what: limit.what,
        limit: u64::MAX,
    };
    inflate(bytes, origin, limit, &unreachable)
}

fn inflate<R: BufRead>(
    compressed: R,
    path: &Path,
    limit: Limit,
    too_large_on_disk: &dyn Fn() -> FileError,
) -> Result<Vec<u8>, FileError> {
    let decoder = flate2::bufread::MultiGzDecoder::new(compressed);
    let too_large = || FileError::DecompressedTooLarge {
        path: path.to_path_buf(),
        what: limit.what,
        limit: limit.bytes,
    };
    // The decoder passes its input's errors on as its own; [`LimitedReader`] marks them, so
    // that the on-disk limit and a failing disk are told apart from corrupt data.
    let map_error = |error: io::Error| match classify(error) {
        ReadError::LimitExceeded => too_large_on_disk(),
        ReadError::Source(source) => FileError::Io {
            path: path.to_path_buf(),
            source,
        },
        ReadError::Other(source) => FileError::Gzip {
            path: path.to_path_buf(),
            source,
        },
    };
    read_capped(decoder, path, limit.bytes, 0, too_large, map_error)
}

/// The first `n` bytes of `reader` without consuming them (fewer if the stream is shorter).
fn peek<R: BufRead>(reader: &mut R, n: usize) -> io::Result<Vec<u8>> {
    loop {
        match reader.fill_buf() {
            Ok(buffer) => return Ok(buffer.get(..n).unwrap_or(buffer).to_vec()),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
}

/// Marker carried inside an `io::Error` by [`LimitedReader`]: the limit was passed.
#[derive(Debug)]
struct LimitExceeded;

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("read limit exceeded")
    }
}

impl std::error::Error for LimitExceeded {}

/// Marker carried inside an `io::Error` by [`LimitedReader`]: reading the file itself failed.
#[derive(Debug)]
struct SourceFailed(io::Error);

impl fmt::Display for SourceFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SourceFailed {}

/// What an error that came through [`LimitedReader`] (and maybe a decoder) means.
enum ReadError {
    LimitExceeded,
    /// The file could not be read; the operating system's error.
    Source(io::Error),
    /// Anything else: a decoder's own error.
    Other(io::Error),
}

fn classify(error: io::Error) -> ReadError {
    if error
        .get_ref()
        .is_some_and(|inner| inner.is::<LimitExceeded>())
    {
        return ReadError::LimitExceeded;
    }
    if !error
        .get_ref()
        .is_some_and(|inner| inner.is::<SourceFailed>())
    {
        return ReadError::Other(error);
    }
    match error
        .into_inner()
        .map(|inner| inner.downcast::<SourceFailed>())
    {
        Some(Ok(source)) => ReadError::Source(source.0),
        // Checked just above; keep whatever is left rather than panic.
        Some(Err(inner)) => ReadError::Other(io::Error::other(inner)),
        None => ReadError::Other(io::Error::other("unknown read error")),
    }
}

/// A reader that fails (rather than ending, as `Read::take` does) once more than `limit`
/// bytes have been read, so that a decoder reading through it reports "too large", not
/// "truncated".
struct LimitedReader<R> {
    inner: R,
    remaining: u64,
}

impl<R> LimitedReader<R> {
    fn new(inner: R, limit: u64) -> Self {
        Self {
            inner,
            // One byte past the limit tells "exactly the limit" from "more".
            remaining: limit.saturating_add(1),
        }
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Err(io::Error::other(LimitExceeded));
        }
        let max = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(out.len());
        let read = self
            .inner
            .read(out.get_mut(..max).unwrap_or_default())
            .map_err(|error| match error.kind() {
                // Retried by every caller; must stay recognisable.
                io::ErrorKind::Interrupted => error,
                kind => io::Error::new(kind, SourceFailed(error)),
            })?;
        self.remaining = self.remaining.saturating_sub(read as u64);
        if self.remaining == 0 {
            return Err(io::Error::other(LimitExceeded));
        }
        Ok(read)
    }
}

/// An error from reading a file through [`LimitedReader`] (no decoder in between).
fn map_read_error(error: io::Error, path: &Path, too_large: &dyn Fn() -> FileError) -> FileError {
    match classify(error) {
        ReadError::LimitExceeded => too_large(),
        ReadError::Source(source) | ReadError::Other(source) => FileError::Io {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// Read `reader` to its end into a buffer that never holds more than `limit` bytes.
///
/// The buffer starts at `hint` bytes (already capped by the caller) and doubles, capped at
/// `limit`, only when bytes arrive that do not fit; an allocation failure is
/// [`FileError::OutOfMemory`]. More than `limit` bytes is `too_large()`; a read error goes
/// through `map_error`.
fn read_capped<R: Read>(
    mut reader: R,
    path: &Path,
    limit: u64,
    hint: u64,
    too_large: impl Fn() -> FileError,
    map_error: impl Fn(io::Error) -> FileError,
) -> Result<Vec<u8>, FileError> {
    let limit_len = usize::try_from(limit).unwrap_or(usize::MAX);
    let out_of_memory = |bytes: usize| FileError::OutOfMemory {
        path: path.to_path_buf(),
        bytes: bytes as u64,
    };
    let mut out: Vec<u8> = Vec::new();
    let hint = usize::try_from(hint).unwrap_or(limit_len).min(limit_len);
    out.try_reserve_exact(hint)
        .map_err(|_| out_of_memory(hint))?;
    let mut chunk = vec![0_u8; CHUNK_BYTES];
    loop {
        let read = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(map_error(error)),
        };
        let bytes = chunk.get(..read).unwrap_or_default();
        let new_len = out.len().saturating_add(bytes.len());
        if new_len > limit_len {
            return Err(too_large());
        }
        if new_len > out.capacity() {
            let target = out.capacity().saturating_mul(2).max(new_len).min(limit_len);
            out.try_reserve_exact(target - out.len())
                .map_err(|_| out_of_memory(target))?;
        }
        out.extend_from_slice(bytes);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn byte_counts_read_as_units() {
        assert_eq!(Bytes(4 << 20).to_string(), "4 MiB");
        assert_eq!(Bytes(4 << 30).to_string(), "4 GiB");
        assert_eq!(Bytes(64 << 10).to_string(), "64 KiB");
        assert_eq!(Bytes(1000).to_string(), "1000 bytes");
        assert_eq!(Bytes((1 << 20) + 1).to_string(), "1048577 bytes");
    }

    #[test]
    fn a_reader_past_its_limit_fails_rather_than_ends() {
        let data = [7_u8; 10];
        let mut exact = LimitedReader::new(&data[..], 10);
        let mut out = Vec::new();
        // Exactly the limit: the read of byte 11 finds the end of the data first.
        assert!(exact.read_to_end(&mut out).is_ok());
        assert_eq!(out.len(), 10);
        let mut short = LimitedReader::new(&data[..], 9);
        let error = short.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(matches!(classify(error), ReadError::LimitExceeded));
    }

    #[test]
    fn capped_reads_refuse_one_byte_past_the_limit() {
        let path = Path::new("x");
        let too_large = || FileError::TooLarge {
            path: path.to_path_buf(),
            what: "a test",
            limit: 5,
        };
        assert_eq!(
            read_capped(&b"12345"[..], path, 5, 0, too_large, io_error(path)).unwrap(),
            b"12345"
        );
        let error = read_capped(&b"123456"[..], path, 5, 0, too_large, io_error(path)).unwrap_err();
        assert!(
            matches!(error, FileError::TooLarge { limit: 5, .. }),
            "{error}"
        );
    }
}
