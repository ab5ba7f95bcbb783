//! Property tests: the parsers never panic on arbitrary bytes, and IDX round-trips.

use std::path::Path;

use gauntlet_datasets::{
    encode_idx, from_idx_bytes, from_npy_bytes, parse_npy_header, InMemoryDataset,
};
use proptest::prelude::*;

fn idx_header(magic: u32, dims: &[u32]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn from_idx_bytes_never_panics_on_arbitrary_bytes(
        images in proptest::collection::vec(any::<u8>(), 0..256),
        labels in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let _ = from_idx_bytes("fuzz", &images, &labels, None);
    }

    #[test]
    fn from_idx_bytes_never_panics_on_plausible_headers(
        dims in proptest::collection::vec(any::<u32>(), 3),
        small in proptest::collection::vec(0u32..6, 3),
        use_small in any::<bool>(),
        count in 0u32..6,
        body in proptest::collection::vec(any::<u8>(), 0..200),
        label_body in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let dims = if use_small { small } else { dims };
        let mut images = idx_header(0x803, &dims);
        images.extend_from_slice(&body);
        let mut labels = idx_header(0x801, &[count]);
        labels.extend_from_slice(&label_body);
        if let Ok(ds) = from_idx_bytes("fuzz", &images, &labels, None) {
            // Whatever loads is consistent with its header.
            prop_assert_eq!(ds.labels().len(), dims[0] as usize);
            prop_assert_eq!(ds.pixels_u8().map(<[u8]>::len), Some(body.len()));
        }
    }

    #[test]
    fn npy_header_parser_never_panics_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = parse_npy_header(Path::new("fuzz"), &bytes);
    }

    #[test]
    fn npy_header_parser_never_panics_on_dict_like_text(
        major in 1u8..4,
        text in r"[{}()\[\]',: a-z_<>|0-9LTrueFals\\]{0,120}",
        tail in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let mut bytes = b"\x93NUMPY".to_vec();
        bytes.push(major);
        bytes.push(0);
        if major == 1 {
            bytes.extend_from_slice(&(text.len() as u16).to_le_bytes());
        } else {
            bytes.extend_from_slice(&(text.len() as u32).to_le_bytes());
        }
        bytes.extend_from_slice(text.as_bytes());
        bytes.extend_from_slice(&tail);
        let _ = parse_npy_header(Path::new("fuzz"), &bytes);
        let _ = from_npy_bytes("fuzz", &bytes, &bytes, None);
    }

    #[test]
    fn npy_loader_never_panics_on_valid_headers_with_random_payloads(
        descr in prop::sample::select(vec!["|u1", "<f4", ">f8", "<i8", "<u4", ">i2", "|O", "<c8", "|b1"]),
        shape in proptest::collection::vec(0usize..5, 0..5),
        payload in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let images = crate::npy_v1(descr, false, &shape, &payload);
        let labels = crate::npy_v1(descr, false, &shape[..shape.len().min(1)], &payload);
        let _ = from_npy_bytes("fuzz", &images, &labels, None);
    }

    #[test]
    fn idx_round_trips(
        h in 1usize..6,
        w in 1usize..6,
        samples in proptest::collection::vec((any::<u8>(), 0u32..10), 0..12),
        seed_pixels in proptest::collection::vec(any::<u8>(), 36),
    ) {
        let n = samples.len();
        let pixels: Vec<u8> = (0..n * h * w)
            .map(|i| seed_pixels[i % 36].wrapping_add(samples[i / (h * w)].0))
            .collect();
        let labels: Vec<u32> = samples.iter().map(|s| s.1).collect();
        let classes: Vec<String> = (0..10).map(|c| c.to_string()).collect();
        let ds = InMemoryDataset::from_u8("p", [1, h, w], classes.clone(), pixels, labels).unwrap();
        let (images, label_bytes) = encode_idx(&ds).unwrap();
        let back = from_idx_bytes("p", &images, &label_bytes, Some(classes)).unwrap();
        prop_assert_eq!(back.pixels_u8(), ds.pixels_u8());
        prop_assert_eq!(back.labels(), ds.labels());
        prop_assert_eq!(back.shape(), ds.shape());
    }
}
