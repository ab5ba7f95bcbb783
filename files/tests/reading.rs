//! The reading layer against what a hostile or careless caller can name: devices, FIFOs, links
//! to them, folders, files past their limit and gzip bombs. Every call must return promptly;
//! each one that could block runs on a thread with a deadline, so a regression fails the test
//! instead of hanging it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use gauntlet_files::{
    decompress_gzip_bounded, open, read_bounded, read_maybe_gzip, read_to_string_bounded,
    FileError, Limit, NotRegular,
};

const TEST: Limit = Limit::new(1 << 20, "a test file");

/// Run `f` on a thread and fail if it has not returned within 20 s.
fn promptly<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(f());
    });
    receive
        .recv_timeout(Duration::from_secs(20))
        .expect("the read returned within 20 s (it must never block)")
}

fn mkfifo(dir: &Path) -> Option<PathBuf> {
    let fifo = dir.join("pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    made.is_ok_and(|status| status.success()).then_some(fifo)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn assert_not_regular(error: &FileError, kind: NotRegular, path: &Path) {
    match error {
        FileError::NotRegular {
            kind: found,
            path: named,
            ..
        } => {
            assert_eq!(*found, kind, "{error}");
            assert_eq!(named, path);
        }
        other => panic!("expected NotRegular, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("not a regular file"), "{message}");
}

#[cfg(unix)]
#[test]
fn devices_are_refused_before_reading() {
    for device in ["/dev/zero", "/dev/urandom", "/dev/null"] {
        let path = PathBuf::from(device);
        if !path.exists() {
            continue;
        }
        let error = promptly({
            let path = path.clone();
            move || read_bounded(&path, TEST).unwrap_err()
        });
        assert_not_regular(&error, NotRegular::CharDevice, &path);
        assert!(error.to_string().contains("a character device"), "{error}");
        let error = promptly({
            let path = path.clone();
            move || read_maybe_gzip(&path, TEST, TEST).unwrap_err()
        });
        assert_not_regular(&error, NotRegular::CharDevice, &path);
    }
}

#[cfg(unix)]
#[test]
fn a_link_to_a_device_is_refused_and_the_message_says_where_it_leads() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("weights.safetensors");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let error = promptly({
        let link = link.clone();
        move || read_bounded(&link, TEST).unwrap_err()
    });
    assert_not_regular(&error, NotRegular::CharDevice, &link);
    assert!(
        error.to_string().contains("a link to `/dev/zero`"),
        "{error}"
    );
}

#[cfg(unix)]
#[test]
fn a_fifo_with_no_writer_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fifo) = mkfifo(dir.path()) else {
        return; // no mkfifo on this system
    };
    let error = promptly({
        let fifo = fifo.clone();
        move || read_bounded(&fifo, TEST).unwrap_err()
    });
    assert_not_regular(&error, NotRegular::Fifo, &fifo);
    assert!(error.to_string().contains("FIFO"), "{error}");
    let error = promptly({
        let fifo = fifo.clone();
        move || open(&fifo, "a test file").unwrap_err()
    });
    assert_not_regular(&error, NotRegular::Fifo, &fifo);
    // Through a link, too.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let error = promptly(move || read_to_string_bounded(&link, TEST).unwrap_err());
    assert!(
        matches!(
            error,
            FileError::NotRegular {
                kind: NotRegular::Fifo,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn a_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let error = read_bounded(dir.path(), TEST).unwrap_err();
    assert_not_regular(&error, NotRegular::Folder, dir.path());
    assert!(
        error
            .to_string()
            .contains("a test file must be a regular file"),
        "{error}"
    );
}

#[test]
fn the_limit_counts_bytes_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let limit = Limit::new(1000, "a test file");
    std::fs::write(&path, vec![b'a'; 1000]).unwrap();
    assert_eq!(read_bounded(&path, limit).unwrap().len(), 1000);
    assert_eq!(read_maybe_gzip(&path, limit, limit).unwrap().len(), 1000);
    std::fs::write(&path, vec![b'a'; 1001]).unwrap();
    for error in [
        read_bounded(&path, limit).unwrap_err(),
        read_maybe_gzip(&path, limit, limit).unwrap_err(),
    ] {
        assert!(
            matches!(error, FileError::TooLarge { limit: 1000, .. }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "`{}` is larger than 1000 bytes, the limit for a test file",
                path.display()
            )
        );
    }
}

#[test]
fn text_must_be_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("suite.toml");
    std::fs::write(&path, [b'a', 0xff, b'b']).unwrap();
    let error = read_to_string_bounded(&path, TEST).unwrap_err();
    assert!(matches!(error, FileError::NotUtf8 { .. }), "{error:?}");
    std::fs::write(&path, "name = \"ok\"").unwrap();
    assert_eq!(
        read_to_string_bounded(&path, TEST).unwrap(),
        "name = \"ok\""
    );
}

#[test]
fn a_missing_file_names_the_path() {
    let error = read_bounded(Path::new("/nonexistent/gauntlet/suite.toml"), TEST).unwrap_err();
    assert!(matches!(error, FileError::Io { .. }), "{error:?}");
    assert!(error
        .to_string()
        .contains("/nonexistent/gauntlet/suite.toml"));
}

/// 64 MiB of zeros gzip to about 64 KiB; with a 1 MiB limit decompression stops after 1 MiB
/// and the error says the decompressed limit was exceeded (not that the file is corrupt).
#[test]
fn a_gzip_bomb_is_stopped_at_the_decompressed_limit() {
    let bomb = gzip(&vec![0_u8; 64 << 20]);
    assert!(bomb.len() < 1 << 20, "the bomb is small on disk");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images.idx.gz");
    std::fs::write(&path, &bomb).unwrap();
    let on_disk = Limit::new(1 << 20, "a dataset file");
    let decompressed = Limit::new(1 << 20, "a decompressed dataset file");
    let error = read_maybe_gzip(&path, on_disk, decompressed).unwrap_err();
    assert!(
        matches!(error, FileError::DecompressedTooLarge { limit, .. } if limit == 1 << 20),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("decompresses to more than 1 MiB"),
        "{message}"
    );
    assert!(message.contains("a decompressed dataset file"), "{message}");
    let error = decompress_gzip_bounded(&bomb, Path::new("embedded"), decompressed).unwrap_err();
    assert!(
        matches!(error, FileError::DecompressedTooLarge { .. }),
        "{error:?}"
    );
}

#[test]
fn gzip_within_the_limits_inflates_every_member() {
    let mut two_members = gzip(b"first member, ");
    two_members.extend(gzip(b"second member"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.gz");
    std::fs::write(&path, &two_members).unwrap();
    let limit = Limit::new(27, "a test file");
    assert_eq!(
        read_maybe_gzip(&path, TEST, limit).unwrap(),
        b"first member, second member"
    );
    // One byte less and the same file is a bomb.
    let error = read_maybe_gzip(&path, TEST, Limit::new(26, "a test file")).unwrap_err();
    assert!(
        matches!(error, FileError::DecompressedTooLarge { .. }),
        "{error:?}"
    );
}

#[test]
fn a_compressed_file_past_the_on_disk_limit_is_too_large_not_corrupt() {
    let noise: Vec<u8> = (0..200_000_u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let compressed = gzip(&noise);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noise.gz");
    std::fs::write(&path, &compressed).unwrap();
    let on_disk = Limit::new(compressed.len() as u64 / 2, "a dataset file");
    let error = read_maybe_gzip(&path, on_disk, TEST).unwrap_err();
    assert!(matches!(error, FileError::TooLarge { .. }), "{error:?}");
}

#[test]
fn corrupt_and_truncated_gzip_are_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.gz");
    let whole = gzip(&vec![5_u8; 10_000]);
    std::fs::write(&path, &whole[..whole.len() / 2]).unwrap();
    let error = read_maybe_gzip(&path, TEST, TEST).unwrap_err();
    assert!(matches!(error, FileError::Gzip { .. }), "{error:?}");
    assert!(error.to_string().contains("not valid gzip"), "{error}");
    std::fs::write(&path, [0x1f, 0x8b, 0xff, 0xff, 0xff]).unwrap();
    let error = read_maybe_gzip(&path, TEST, TEST).unwrap_err();
    assert!(matches!(error, FileError::Gzip { .. }), "{error:?}");
}

#[test]
fn short_and_empty_files_read_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    for content in [&b""[..], &b"\x1f"[..], &b"ab"[..]] {
        std::fs::write(&path, content).unwrap();
        assert_eq!(read_maybe_gzip(&path, TEST, TEST).unwrap(), content);
        assert_eq!(read_bounded(&path, TEST).unwrap(), content);
    }
}
