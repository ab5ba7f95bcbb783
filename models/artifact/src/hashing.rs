//! Streaming SHA-256 of files.
//!
//! Model files run to many gigabytes, so a file is never read whole: it is fed to the hasher
//! through one fixed-size buffer. Many files are hashed in parallel (rayon), but results always
//! come back in the order the paths were given, so manifests and signatures built from them are
//! deterministic whatever the thread schedule.

use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::ArtifactError;

/// Size of the read buffer. 1 MiB amortises system-call overhead (the hash, not the reads,
/// dominates above ~64 KiB) while keeping memory per worker thread small.
pub const READ_BUFFER_BYTES: usize = 1 << 20;

/// The SHA-256 digest and byte count of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileDigest {
    /// Number of bytes hashed (the file's size when it was read).
    pub size: u64,
    /// The raw 32-byte SHA-256 digest.
    pub sha256: [u8; 32],
}

impl FileDigest {
    /// The digest as lowercase hex, the form `sha256sum` prints.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// Hash everything `reader` yields through a fixed-size buffer.
///
/// Returns the digest and the number of bytes read. Interrupted reads are retried.
pub fn sha256_reader<R: Read>(mut reader: R) -> std::io::Result<FileDigest> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0_u8; READ_BUFFER_BYTES];
    let mut size: u64 = 0;
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        let chunk = buffer.get(..read).unwrap_or(&[]);
        hasher.update(chunk);
        size = size.saturating_add(chunk.len() as u64);
    }
    Ok(FileDigest {
        size,
        sha256: hasher.finalize().into(),
    })
}

/// Stream one file through SHA-256. Only a regular file is hashed (through
/// `gauntlet_files::open`): `/dev/zero` would never end and a FIFO would block.
pub fn sha256_file(path: &Path) -> Result<FileDigest, ArtifactError> {
    let unreadable = |source: std::io::Error| ArtifactError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let file = gauntlet_files::open(path, "a file to hash")?;
    sha256_reader(file).map_err(unreadable)
}

/// Hash many files in parallel; the i-th result belongs to the i-th path.
///
/// Each file is still streamed by one thread (SHA-256 is sequential within a file); the
/// parallelism is across files, which is where model folders with many shards gain.
pub fn sha256_files(paths: &[PathBuf]) -> Vec<Result<FileDigest, ArtifactError>> {
    paths.par_iter().map(|path| sha256_file(path)).collect()
}

/// SHA-256 of an in-memory byte string.
pub fn sha256_bytes(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// FIPS 180-2 known answers.
    #[test]
    fn known_answers() {
        assert_eq!(
            hex::encode(sha256_bytes(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(sha256_bytes(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // One million 'a': spans several buffer refills.
        let million = vec![b'a'; 1_000_000];
        let digest = sha256_reader(million.as_slice()).unwrap();
        assert_eq!(digest.size, 1_000_000);
        assert_eq!(
            digest.sha256_hex(),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    /// A reader that hands out at most 7 bytes per call, to prove chunk boundaries don't matter.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(out.len()).min(7);
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn streaming_equals_one_shot_for_odd_chunking() {
        let data: Vec<u8> = (0..(READ_BUFFER_BYTES + 12_345))
            .map(|i| (i % 251) as u8)
            .collect();
        let streamed = sha256_reader(Trickle(&data)).unwrap();
        assert_eq!(streamed.sha256, sha256_bytes(&data));
        assert_eq!(streamed.size, data.len() as u64);
    }

    #[test]
    fn parallel_results_keep_input_order() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..40)
            .map(|i| {
                let path = dir.path().join(format!("f{i}"));
                std::fs::write(&path, format!("content {i}")).unwrap();
                path
            })
            .collect();
        let results = sha256_files(&paths);
        for (i, result) in results.into_iter().enumerate() {
            let expected = sha256_bytes(format!("content {i}").as_bytes());
            assert_eq!(result.unwrap().sha256, expected, "file {i}");
        }
    }

    #[test]
    fn missing_file_is_an_error_naming_the_path() {
        let error = sha256_file(Path::new("/nonexistent/gauntlet/file")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/gauntlet/file"));
    }
}
