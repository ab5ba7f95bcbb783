use std::path::Path;

use gauntlet_datasets::{
    from_npy_bytes, load_npy, parse_npy_header, ByteOrder, Dataset, DatasetError,
};

use crate::{all_inputs, all_labels, fixture, names, npy_v1};

/// `make_fixtures.py`: u8 images (4, 3, 2) with value (i*6 + r*2 + c) * 10.
fn u8_values() -> Vec<u8> {
    (0..24u8).map(|v| v * 10).collect()
}

#[test]
fn u8_images_with_i64_labels() {
    let ds = load_npy(
        &fixture("npy/u8-images.npy"),
        &fixture("npy/labels-i64.npy"),
        None,
    )
    .unwrap();
    assert_eq!(ds.len(), 4);
    assert_eq!(ds.sample_shape(), &[1, 3, 2]);
    assert_eq!(all_labels(&ds), vec![3, 1, 4, 1]);
    assert_eq!(ds.num_classes(), 5);
    assert_eq!(ds.pixels_u8(), Some(u8_values().as_slice()));
    let scaled: Vec<f32> = u8_values().iter().map(|&v| f32::from(v) / 255.0).collect();
    assert_eq!(all_inputs(&ds), scaled);
}

#[test]
fn header_versions_two_and_three_read_the_same() {
    for file in ["npy/u8-images-v2.npy", "npy/u8-images-v3.npy"] {
        let bytes = std::fs::read(fixture(file)).unwrap();
        let header = parse_npy_header(Path::new(file), &bytes).unwrap();
        assert!(matches!(header.version, (2, 0) | (3, 0)), "{header:?}");
        let ds = load_npy(&fixture(file), &fixture("npy/labels-u1.npy"), None).unwrap();
        assert_eq!(ds.pixels_u8(), Some(u8_values().as_slice()));
        assert_eq!(ds.labels(), &[3, 1, 4, 1]);
    }
}

#[test]
fn header_fields_are_parsed() {
    let bytes = std::fs::read(fixture("npy/u8-images.npy")).unwrap();
    let header = parse_npy_header(Path::new("u8"), &bytes).unwrap();
    assert_eq!(header.version, (1, 0));
    assert_eq!(header.dtype.descr, "|u1");
    assert_eq!(header.dtype.byte_order, ByteOrder::NotApplicable);
    assert_eq!((header.dtype.kind, header.dtype.item_size), ('u', 1));
    assert!(!header.fortran_order);
    assert_eq!(header.shape, vec![4, 3, 2]);
    // The payload (24 bytes) is exactly what follows the header.
    assert_eq!(header.data_offset + 24, bytes.len());
    assert_eq!(
        header.data_offset % 64,
        0,
        "numpy aligns the payload to 64 bytes"
    );
}

#[test]
fn float32_and_big_endian_float64_images() {
    let expected: Vec<f32> = u8_values().iter().map(|&v| f32::from(v) / 240.0).collect();
    let f32_ds = load_npy(
        &fixture("npy/f32-images.npy"),
        &fixture("npy/labels-i64.npy"),
        None,
    )
    .unwrap();
    assert_eq!(f32_ds.sample_shape(), &[1, 3, 2]);
    assert_eq!(all_inputs(&f32_ds), expected);
    // '>f8' holding the same float32 values widened: narrowing back is exact.
    let f64_ds = load_npy(
        &fixture("npy/f64-be-images.npy"),
        &fixture("npy/labels-i64.npy"),
        None,
    )
    .unwrap();
    assert_eq!(all_inputs(&f64_ds), expected);
}

#[test]
fn object_arrays_are_refused_as_pickles() {
    let err = load_npy(
        &fixture("npy/u8-images.npy"),
        &fixture("npy/object-labels.npy"),
        None,
    )
    .unwrap_err();
    assert!(
        matches!(&err, DatasetError::NpyObjectDtype { descr, .. } if descr == "|O"),
        "{err:?}"
    );
    assert!(err.to_string().contains("unpickle"), "{err}");
    // Also as images, and through the bare header parser.
    let err = load_npy(
        &fixture("npy/object-labels.npy"),
        &fixture("npy/labels-i64.npy"),
        None,
    )
    .unwrap_err();
    assert!(
        matches!(err, DatasetError::NpyObjectDtype { .. }),
        "{err:?}"
    );
}

#[test]
fn nan_pixels_are_refused() {
    let err = load_npy(
        &fixture("npy/nan-images.npy"),
        &fixture("npy/labels-i64.npy"),
        None,
    )
    .unwrap_err();
    // NaN written at [2, 0, 1, 1] of shape (4, 1, 3, 2): flat index 2*6 + 1*2 + 1.
    assert!(
        matches!(err, DatasetError::NonFinitePixel { index: 15, value, .. } if value.is_nan()),
        "{err:?}"
    );
}

#[test]
fn pixels_above_one_are_refused() {
    let err = load_npy(
        &fixture("npy/out-of-range-images.npy"),
        &fixture("npy/labels-i64.npy"),
        None,
    )
    .unwrap_err();
    // 1.5 written at [1, 0, 0, 1]: flat index 6 + 1.
    assert!(
        matches!(err, DatasetError::PixelOutOfRange { index: 7, value, .. } if value == 1.5),
        "{err:?}"
    );
}

#[test]
fn fortran_order_is_refused() {
    let err = load_npy(
        &fixture("npy/fortran-images.npy"),
        &fixture("npy/labels-i64.npy"),
        None,
    )
    .unwrap_err();
    assert!(
        matches!(err, DatasetError::NpyFortranOrder { .. }),
        "{err:?}"
    );
}

#[test]
fn negative_labels_are_refused() {
    let err = load_npy(
        &fixture("npy/u8-images.npy"),
        &fixture("npy/negative-labels.npy"),
        None,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::LabelOutOfRange {
                index: 1,
                label: -1,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn channels_last_and_flat_images_are_refused() {
    let err = load_npy(
        &fixture("npy/channels-last-images.npy"),
        &fixture("npy/labels-i64.npy"),
        None,
    )
    .unwrap_err();
    assert!(
        matches!(&err, DatasetError::InvalidShape { reason, .. } if reason.contains("channels-last")),
        "{err:?}"
    );
    let flat = npy_v1("|u1", false, &[4, 6], &[0; 24]);
    let labels = npy_v1("|u1", false, &[4], &[0, 1, 2, 3]);
    let err = from_npy_bytes("flat", &flat, &labels, None).unwrap_err();
    assert!(
        matches!(&err, DatasetError::InvalidShape { shape, .. } if shape == &[4, 6]),
        "{err:?}"
    );
}

#[test]
fn rgb_nchw_images_are_accepted() {
    let payload: Vec<u8> = (0..2 * 3 * 2 * 2).collect();
    let images = npy_v1("|u1", false, &[2, 3, 2, 2], &payload);
    let labels = npy_v1("<i4", false, &[2], &[1, 0, 0, 0, 0, 0, 0, 0]);
    let ds = from_npy_bytes("rgb", &images, &labels, Some(names(&["a", "b"]))).unwrap();
    assert_eq!(ds.sample_shape(), &[3, 2, 2]);
    assert_eq!(ds.labels(), &[1, 0]);
    assert_eq!(ds.pixels_u8(), Some(payload.as_slice()));
}

#[test]
fn big_endian_integer_labels() {
    let images = npy_v1("|u1", false, &[2, 1, 1], &[0, 255]);
    let labels = npy_v1(">u2", false, &[2], &[0, 7, 0, 2]);
    let ds = from_npy_bytes("be", &images, &labels, None).unwrap();
    assert_eq!(ds.labels(), &[7, 2]);
}

#[test]
fn unsupported_dtypes_name_the_role() {
    let labels = npy_v1("|u1", false, &[2], &[0, 1]);
    let int_images = npy_v1("<i4", false, &[2, 1, 1], &[0; 8]);
    let err = from_npy_bytes("i4", &int_images, &labels, None).unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::NpyUnsupportedDtype { role: "images", .. }
        ),
        "{err:?}"
    );
    let images = npy_v1("|u1", false, &[2, 1, 1], &[0, 1]);
    let float_labels = npy_v1("<f4", false, &[2], &[0; 8]);
    let err = from_npy_bytes("f4", &images, &float_labels, None).unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::NpyUnsupportedDtype { role: "labels", .. }
        ),
        "{err:?}"
    );
}

#[test]
fn payload_length_must_match_the_shape() {
    let labels = npy_v1("|u1", false, &[2], &[0, 1]);
    let short = npy_v1("|u1", false, &[2, 2, 2], &[0; 7]);
    let err = from_npy_bytes("short", &short, &labels, None).unwrap_err();
    assert!(matches!(err, DatasetError::Truncated { .. }), "{err:?}");
    let long = npy_v1("|u1", false, &[2, 2, 2], &[0; 9]);
    let err = from_npy_bytes("long", &long, &labels, None).unwrap_err();
    assert!(matches!(err, DatasetError::TrailingBytes { .. }), "{err:?}");
    let three_labels = npy_v1("|u1", false, &[3], &[0, 1, 1]);
    let images = npy_v1("|u1", false, &[2, 2, 2], &[0; 8]);
    let err = from_npy_bytes("count", &images, &three_labels, None).unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::CountMismatch {
                image_count: 2,
                label_count: 3,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn malformed_headers_are_header_errors() {
    let origin = Path::new("bad");
    let with_header = |text: &str| {
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(text.len() as u16).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
        out
    };
    for text in [
        "{'descr': '<f4', 'fortran_order': False}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}",
        "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -1)}",
        "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}",
        "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
        "not a dict",
    ] {
        let err = parse_npy_header(origin, &with_header(text)).unwrap_err();
        assert!(
            matches!(err, DatasetError::NpyHeader { .. }),
            "{text}: {err:?}"
        );
    }
    let err = parse_npy_header(origin, b"\x93NUMPX\x01\x00\x00\x00").unwrap_err();
    assert!(matches!(err, DatasetError::NpyHeader { .. }), "{err:?}");
    let err = parse_npy_header(origin, b"\x93NUMPY\x04\x00\x00\x00").unwrap_err();
    assert!(matches!(err, DatasetError::NpyHeader { .. }), "{err:?}");
    // Header length pointing past the end of the file.
    let err = parse_npy_header(origin, b"\x93NUMPY\x01\x00\xff\x00{}").unwrap_err();
    assert!(matches!(err, DatasetError::Truncated { .. }), "{err:?}");
}

#[test]
fn python2_long_suffix_and_scalar_shape_parse() {
    let text = "{'descr': '<i8', 'fortran_order': False, 'shape': (3L, 4L), }";
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(text.len() as u16).to_le_bytes());
    bytes.extend_from_slice(text.as_bytes());
    let header = parse_npy_header(Path::new("py2"), &bytes).unwrap();
    assert_eq!(header.shape, vec![3, 4]);
    let scalar = npy_v1("<f8", false, &[], &[]);
    // npy_v1 writes `()` for an empty shape.
    let header = parse_npy_header(Path::new("scalar"), &scalar).unwrap();
    assert!(header.shape.is_empty());
    assert_eq!(header.element_count(), Some(1));
}
