use gauntlet_datasets::{
    encode_idx, from_idx_bytes, load_idx, write_idx, Dataset, DatasetError, InMemoryDataset,
};

use crate::{all_inputs, all_labels, fixture, names};

/// The closed formula `make_fixtures.py` wrote: pixel(i, r, c) = (i*40 + r*5 + c) % 256.
fn tiny_expected_pixels() -> Vec<f32> {
    let mut out = Vec::new();
    for i in 0..3 {
        for r in 0..4 {
            for c in 0..5 {
                out.push(((i * 40 + r * 5 + c) % 256) as f32 / 255.0);
            }
        }
    }
    out
}

#[test]
fn tiny_idx_loads_known_values() {
    let ds = load_idx(
        &fixture("idx/tiny-images-idx3-ubyte"),
        &fixture("idx/tiny-labels-idx1-ubyte"),
        None,
    )
    .unwrap();
    assert_eq!(ds.len(), 3);
    assert_eq!(ds.sample_shape(), &[1, 4, 5]);
    // No names given: "0"..=max label.
    assert_eq!(ds.class_names(), names(&["0", "1", "2"]).as_slice());
    assert_eq!(all_labels(&ds), vec![2, 0, 1]);
    assert_eq!(all_inputs(&ds), tiny_expected_pixels());
}

#[test]
fn gzip_is_detected_by_magic_not_extension() {
    let plain = load_idx(
        &fixture("idx/tiny-images-idx3-ubyte"),
        &fixture("idx/tiny-labels-idx1-ubyte"),
        None,
    )
    .unwrap();
    // These files are gzipped but their names do not end in .gz.
    let gz = load_idx(
        &fixture("idx/tiny-images-gzipped.idx3"),
        &fixture("idx/tiny-labels-gzipped.idx1"),
        None,
    )
    .unwrap();
    assert_eq!(gz.pixels_u8(), plain.pixels_u8());
    assert_eq!(gz.labels(), plain.labels());
}

#[test]
fn truncated_images_state_expected_and_actual_bytes() {
    let path = fixture("idx/truncated-images-idx3-ubyte");
    let err = load_idx(&path, &fixture("idx/tiny-labels-idx1-ubyte"), None).unwrap_err();
    // Header: 3 x 4 x 5 = 60 pixel bytes + 16 header bytes; the file holds 16 + 50.
    match &err {
        DatasetError::Truncated {
            path: p,
            expected,
            actual,
        } => {
            assert_eq!(p, &path);
            assert_eq!((*expected, *actual), (76, 66));
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("truncated-images-idx3-ubyte"), "{message}");
    assert!(
        message.contains("76") && message.contains("66"),
        "{message}"
    );
}

#[test]
fn wrong_magic_is_refused() {
    let err = load_idx(
        &fixture("idx/wrong-magic-images-idx3-ubyte"),
        &fixture("idx/tiny-labels-idx1-ubyte"),
        None,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::IdxBadMagic {
                kind: "images",
                expected: 0x803,
                found: 0x801,
                ..
            }
        ),
        "{err:?}"
    );
    // And an images file where labels belong.
    let err = load_idx(
        &fixture("idx/tiny-images-idx3-ubyte"),
        &fixture("idx/tiny-images-idx3-ubyte"),
        None,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::IdxBadMagic {
                kind: "labels",
                expected: 0x801,
                found: 0x803,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn image_and_label_counts_must_match() {
    let err = load_idx(
        &fixture("idx/tiny-images-idx3-ubyte"),
        &fixture("idx/two-labels-idx1-ubyte"),
        None,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::CountMismatch {
                image_count: 3,
                label_count: 2,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn overflowing_dimensions_are_an_error_not_an_allocation() {
    let err = load_idx(
        &fixture("idx/absurd-images-idx3-ubyte"),
        &fixture("idx/tiny-labels-idx1-ubyte"),
        None,
    )
    .unwrap_err();
    assert!(
        matches!(err, DatasetError::DimensionOverflow { .. }),
        "{err:?}"
    );
}

#[test]
fn huge_but_representable_dimensions_are_truncation() {
    // 10^6 images of 10^5 x 10^5 pixels claimed by a 16-byte file.
    let mut images = Vec::new();
    for word in [0x803u32, 1_000_000, 100_000, 100_000] {
        images.extend_from_slice(&word.to_be_bytes());
    }
    let labels = [0u8, 0, 8, 1, 0, 0, 0, 0];
    let err = from_idx_bytes("absurd", &images, &labels, None).unwrap_err();
    assert!(
        matches!(err, DatasetError::Truncated { expected, actual: 16, .. } if expected == 16 + 10u64.pow(16)),
        "{err:?}"
    );
}

#[test]
fn trailing_bytes_are_refused() {
    let mut images = std::fs::read(fixture("idx/tiny-images-idx3-ubyte")).unwrap();
    images.push(0);
    let labels = std::fs::read(fixture("idx/tiny-labels-idx1-ubyte")).unwrap();
    let err = from_idx_bytes("extra", &images, &labels, None).unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::TrailingBytes {
                expected: 76,
                actual: 77,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn short_header_is_truncation() {
    let err = from_idx_bytes("short", &[0, 0, 8], &[0, 0, 8, 1, 0, 0, 0, 0], None).unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::Truncated {
                expected: 16,
                actual: 3,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn labels_must_fit_the_given_class_names() {
    let err = load_idx(
        &fixture("idx/tiny-images-idx3-ubyte"),
        &fixture("idx/tiny-labels-idx1-ubyte"),
        Some(names(&["a", "b"])),
    )
    .unwrap_err();
    // Labels are [2, 0, 1]: the first one is already out of range for two classes.
    assert!(
        matches!(
            err,
            DatasetError::LabelOutOfRange {
                index: 0,
                label: 2,
                num_classes: 2,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn corrupt_gzip_is_a_gzip_error() {
    let images = [0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x00];
    let labels = std::fs::read(fixture("idx/tiny-labels-idx1-ubyte")).unwrap();
    let err = from_idx_bytes("corrupt", &images, &labels, None).unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::File(gauntlet_files::FileError::Gzip { .. })
        ),
        "{err:?}"
    );
}

/// A deterministic 8-bit dataset: 7 samples of 1 x 6 x 5, labels 0..=4.
fn sample_u8_dataset() -> InMemoryDataset {
    let pixels: Vec<u8> = (0..7 * 30)
        .map(|i: u32| ((i * 37 + 11) % 256) as u8)
        .collect();
    let labels = (0..7).map(|i| (i * 3) % 5).collect();
    InMemoryDataset::from_u8(
        "roundtrip",
        [1, 6, 5],
        names(&["a", "b", "c", "d", "e"]),
        pixels,
        labels,
    )
    .unwrap()
}

#[test]
fn write_then_read_idx_round_trips_plain_and_gzip() {
    let original = sample_u8_dataset();
    let dir = tempfile::tempdir().unwrap();
    for gzip in [false, true] {
        let images = dir.path().join(format!("images-{gzip}"));
        let labels = dir.path().join(format!("labels-{gzip}"));
        write_idx(&original, &images, &labels, gzip).unwrap();
        let head = std::fs::read(&images).unwrap();
        assert_eq!(head.starts_with(&[0x1f, 0x8b]), gzip);
        let back = load_idx(&images, &labels, Some(original.class_names().to_vec())).unwrap();
        assert_eq!(back.pixels_u8(), original.pixels_u8());
        assert_eq!(back.labels(), original.labels());
        assert_eq!(back.sample_shape(), original.sample_shape());
    }
}

#[test]
fn f32_datasets_of_8bit_values_round_trip_exactly() {
    let original = sample_u8_dataset();
    let as_f32 = InMemoryDataset::from_f32(
        "f32",
        original.shape(),
        original.class_names().to_vec(),
        original.pixels_f32(),
        original.labels().to_vec(),
    )
    .unwrap();
    let (images, labels) = encode_idx(&as_f32).unwrap();
    let back = from_idx_bytes("back", &images, &labels, None).unwrap();
    assert_eq!(back.pixels_u8(), original.pixels_u8());
}

#[test]
fn encode_idx_refuses_what_idx_cannot_hold() {
    let rgb =
        InMemoryDataset::from_u8("rgb", [3, 1, 1], names(&["x"]), vec![1, 2, 3], vec![0]).unwrap();
    assert!(matches!(
        encode_idx(&rgb),
        Err(DatasetError::NotIdxCompatible { .. })
    ));
    let many: Vec<String> = (0..300).map(|i| i.to_string()).collect();
    let big_label = InMemoryDataset::from_u8("big", [1, 1, 1], many, vec![0], vec![299]).unwrap();
    assert!(matches!(
        encode_idx(&big_label),
        Err(DatasetError::NotIdxCompatible { .. })
    ));
}
