use gauntlet_datasets::{load_image_folder, Dataset, DatasetError};

use crate::{all_inputs, all_labels, fixture, names};

/// `make_fixtures.py`'s grayscale image k: 5 wide x 3 high, pixel(x, y) = 50k + 5y + x.
fn gray(k: u32) -> Vec<f32> {
    (0..3)
        .flat_map(|y| (0..5).map(move |x| (50 * k + 5 * y + x) as f32 / 255.0))
        .collect()
}

#[test]
fn grayscale_folder_gives_one_channel_and_sorted_classes() {
    let ds = load_image_folder(&fixture("image-folder/ok-gray")).unwrap();
    assert_eq!(ds.class_names(), names(&["ant", "bee"]).as_slice());
    assert_eq!(ds.sample_shape(), &[1, 3, 5]);
    assert_eq!(all_labels(&ds), vec![0, 0, 1]);
    let expected: Vec<f32> = [0, 1, 2].into_iter().flat_map(gray).collect();
    assert_eq!(all_inputs(&ds), expected);
}

#[test]
fn one_color_image_makes_every_image_rgb() {
    let ds = load_image_folder(&fixture("image-folder/ok-mixed")).unwrap();
    assert_eq!(ds.class_names(), names(&["cat", "dog"]).as_slice());
    assert_eq!(ds.sample_shape(), &[3, 3, 5]);
    // Sorted files: cat/gray.png, dog/flat.jpg, dog/rgb.png.
    assert_eq!(all_labels(&ds), vec![0, 1, 1]);
    let inputs = all_inputs(&ds);
    let plane = 15;
    // Gray image expanded: R = G = B = gray(3).
    let (gray_sample, rest) = inputs.split_at(3 * plane);
    for channel in gray_sample.chunks(plane) {
        assert_eq!(channel, gray(3).as_slice());
    }
    // Flat JPEG (200, 100, 50): lossy, so within a few levels.
    let (jpeg, rgb) = rest.split_at(3 * plane);
    for (channel, want) in jpeg.chunks(plane).zip([200.0f32, 100.0, 50.0]) {
        for &v in channel {
            assert!((v * 255.0 - want).abs() <= 3.0, "{v} vs {want}");
        }
    }
    // RGB PNG, planar: R = 60x, G = 100y, B = 7.
    let mut expected = Vec::new();
    for channel in 0..3 {
        for y in 0..3 {
            for x in 0..5 {
                let v = [60 * x, 100 * y, 7][channel];
                expected.push(v as f32 / 255.0);
            }
        }
    }
    assert_eq!(rgb, expected.as_slice());
}

#[test]
fn mixed_sizes_name_the_offending_file() {
    let err = load_image_folder(&fixture("image-folder/mixed-sizes")).unwrap_err();
    match &err {
        DatasetError::ImageSizeMismatch {
            path,
            width,
            height,
            first,
            expected_width,
            expected_height,
        } => {
            assert!(path.ends_with("b/odd.png"), "{path:?}");
            assert!(first.ends_with("a/first.png"), "{first:?}");
            assert_eq!((*width, *height), (4, 3));
            assert_eq!((*expected_width, *expected_height), (5, 3));
        }
        other => panic!("expected ImageSizeMismatch, got {other:?}"),
    }
    assert!(err.to_string().contains("odd.png"), "{err}");
}

#[test]
fn layout_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Only a file at the root: no class folders.
    std::fs::write(dir.path().join("README"), "not a class").unwrap();
    let err = load_image_folder(dir.path()).unwrap_err();
    assert!(
        matches!(err, DatasetError::NoClassFolders { .. }),
        "{err:?}"
    );

    // An empty class folder (a hidden file does not count).
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join(".DS_Store"), "x").unwrap();
    let err = load_image_folder(dir.path()).unwrap_err();
    assert!(
        matches!(&err, DatasetError::EmptyClassFolder { path } if path == &empty),
        "{err:?}"
    );

    // A file that is not an image is named, not skipped.
    let notes = empty.join("notes.txt");
    std::fs::write(&notes, "hello").unwrap();
    let err = load_image_folder(dir.path()).unwrap_err();
    assert!(
        matches!(&err, DatasetError::ImageDecode { path, .. } if path == &notes),
        "{err:?}"
    );
}

#[test]
fn nested_files_and_hidden_entries() {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("only");
    std::fs::create_dir_all(class.join("deeper")).unwrap();
    std::fs::create_dir_all(dir.path().join(".hidden-class")).unwrap();
    std::fs::copy(
        fixture("image-folder/ok-gray/ant/a0.png"),
        class.join("deeper/x.png"),
    )
    .unwrap();
    std::fs::copy(
        fixture("image-folder/ok-gray/bee/b0.png"),
        class.join("a.png"),
    )
    .unwrap();
    let ds = load_image_folder(dir.path()).unwrap();
    assert_eq!(ds.class_names(), names(&["only"]).as_slice());
    // Sorted: a.png before deeper/.
    let expected: Vec<f32> = [2, 0].into_iter().flat_map(gray).collect();
    assert_eq!(all_inputs(&ds), expected);
}

/// A PNG signature, an IHDR declaring `width` × `height` 8-bit grayscale, a truncated IDAT and
/// IEND: a few dozen bytes whose header alone would make a decoder allocate width × height.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        let mut crc = flate2::Crc::new();
        crc.update(&body);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &[0x78, 0x9c, 0x63, 0x00]);
    chunk(&mut png, b"IEND", &[]);
    png
}

/// Ten 20,000 × 20,000 PNGs used to be decoded (400 MB each) before anything was compared;
/// the first one's header is now refused, and nothing is decoded.
#[test]
fn a_huge_image_is_refused_from_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("shirt");
    std::fs::create_dir_all(&class).unwrap();
    for i in 0..10 {
        std::fs::write(
            class.join(format!("{i}.png")),
            png_header_only(20_000, 20_000),
        )
        .unwrap();
    }
    let err = load_image_folder(dir.path()).unwrap_err();
    match &err {
        DatasetError::ImageTooLarge {
            path,
            width,
            height,
            max_side,
        } => {
            assert!(path.ends_with("shirt/0.png"), "{path:?}");
            assert_eq!((*width, *height), (20_000, 20_000));
            assert_eq!(*max_side, gauntlet_datasets::MAX_IMAGE_SIDE);
        }
        other => panic!("expected ImageTooLarge, got {other:?}"),
    }
    assert!(err.to_string().contains("20000x20000"), "{err}");
    // One side over the limit is enough.
    std::fs::write(class.join("0.png"), png_header_only(5, 4097)).unwrap();
    let err = load_image_folder(dir.path()).unwrap_err();
    assert!(matches!(err, DatasetError::ImageTooLarge { .. }), "{err:?}");
}

/// A second image of another size is refused from its header: its (corrupt) pixel data is
/// never decoded, or the error would be a decode error.
#[test]
fn a_size_mismatch_is_found_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("ant");
    std::fs::create_dir_all(&class).unwrap();
    std::fs::copy(
        fixture("image-folder/ok-gray/ant/a0.png"),
        class.join("a.png"),
    )
    .unwrap();
    std::fs::write(class.join("b.png"), png_header_only(3000, 3000)).unwrap();
    let err = load_image_folder(dir.path()).unwrap_err();
    assert!(
        matches!(
            &err,
            DatasetError::ImageSizeMismatch {
                width: 3000,
                height: 3000,
                ..
            }
        ),
        "{err:?}"
    );
}

/// Many images of an allowed size that together exceed the dataset limit are refused after
/// the first header, before any is decoded.
#[test]
fn a_folder_too_large_in_total_is_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("ant");
    std::fs::create_dir_all(&class).unwrap();
    // 100 × 4096 × 4096 × 3 bytes = 4.7 GiB > 4 GiB; each file is a few dozen bytes.
    for i in 0..100 {
        std::fs::write(
            class.join(format!("{i:03}.png")),
            png_header_only(4096, 4096),
        )
        .unwrap();
    }
    let err = load_image_folder(dir.path()).unwrap_err();
    assert!(
        matches!(&err, DatasetError::ImageFolderTooLarge { images: 100, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("`limit`"), "{err}");
    // With a limit, only the kept images count (and the first is then decoded and found
    // corrupt, which shows the limit let it through).
    let err = gauntlet_datasets::load_image_folder_limited(dir.path(), Some(1)).unwrap_err();
    assert!(matches!(err, DatasetError::ImageDecode { .. }), "{err:?}");
}

/// `limit` applies to the list of files: images past it are never opened, so a FIFO there
/// cannot block and a corrupt file there is not an error.
#[cfg(unix)]
#[test]
fn the_limit_applies_before_any_file_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("ant");
    std::fs::create_dir_all(&class).unwrap();
    std::fs::copy(
        fixture("image-folder/ok-gray/ant/a0.png"),
        class.join("a.png"),
    )
    .unwrap();
    let fifo = class.join("b.png");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|status| status.success()) {
        return;
    }
    let ds = gauntlet_datasets::load_image_folder_limited(dir.path(), Some(1)).unwrap();
    assert_eq!(ds.len(), 1);
    assert_eq!(all_inputs(&ds), gray(0));
    // Without the limit the FIFO is refused at once (never opened, so nothing blocks).
    let err = load_image_folder(dir.path()).unwrap_err();
    assert!(
        matches!(
            &err,
            DatasetError::File(gauntlet_files::FileError::NotRegular { path, .. }) if path == &fifo
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("FIFO"), "{err}");
}
