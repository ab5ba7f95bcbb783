use candle_core::Device;
use gauntlet_datasets::{Dataset, DatasetError, InMemoryDataset};

use crate::{all_inputs, all_labels, names};

/// 5 samples of [1, 1, 2]; sample i holds (2i/20, (2i+1)/20), labels 0, 1, 2, 0, 1.
/// Correctly rounded division makes k/20 equal to the literal (e.g. 3/20 == 0.15f32).
fn five() -> InMemoryDataset {
    let pixels = (0..10).map(|k| k as f32 / 20.0).collect();
    InMemoryDataset::from_f32(
        "five",
        [1, 1, 2],
        names(&["a", "b", "c"]),
        pixels,
        vec![0, 1, 2, 0, 1],
    )
    .unwrap()
}

#[test]
fn construction_validates_every_invariant() {
    let classes = || names(&["a", "b"]);
    let nan = InMemoryDataset::from_f32("x", [1, 1, 2], classes(), vec![0.0, f32::NAN], vec![0]);
    assert!(matches!(
        nan,
        Err(DatasetError::NonFinitePixel { index: 1, .. })
    ));
    let inf = InMemoryDataset::from_f32("x", [1, 1, 1], classes(), vec![f32::INFINITY], vec![0]);
    assert!(matches!(
        inf,
        Err(DatasetError::NonFinitePixel { index: 0, .. })
    ));
    let high = InMemoryDataset::from_f32("x", [1, 1, 2], classes(), vec![0.5, 1.01], vec![0]);
    assert!(matches!(
        high,
        Err(DatasetError::PixelOutOfRange { index: 1, .. })
    ));
    let low = InMemoryDataset::from_f32("x", [1, 1, 1], classes(), vec![-0.0001], vec![0]);
    assert!(matches!(
        low,
        Err(DatasetError::PixelOutOfRange { index: 0, .. })
    ));
    let label = InMemoryDataset::from_u8("x", [1, 1, 1], classes(), vec![0, 0], vec![1, 2]);
    assert!(matches!(
        label,
        Err(DatasetError::LabelOutOfRange {
            index: 1,
            label: 2,
            num_classes: 2,
            ..
        })
    ));
    let count = InMemoryDataset::from_u8("x", [1, 2, 2], classes(), vec![0; 7], vec![0, 1]);
    assert!(matches!(
        count,
        Err(DatasetError::PixelCountMismatch {
            expected: 8,
            actual: 7,
            ..
        })
    ));
    let zero = InMemoryDataset::from_u8("x", [1, 0, 2], classes(), vec![], vec![]);
    assert!(matches!(zero, Err(DatasetError::InvalidShape { .. })));
    let overflow = InMemoryDataset::from_u8("x", [usize::MAX, 2, 1], classes(), vec![], vec![]);
    assert!(matches!(overflow, Err(DatasetError::InvalidShape { .. })));
    let no_classes = InMemoryDataset::from_u8("x", [1, 1, 1], vec![], vec![0], vec![0]);
    assert!(matches!(no_classes, Err(DatasetError::NoClasses { .. })));
}

#[test]
fn batch_slices_inputs_and_labels() {
    let ds = five();
    let batch = ds.batch(1..4, &Device::Cpu).unwrap();
    assert_eq!(batch.inputs.dims(), &[3, 1, 1, 2]);
    assert_eq!(batch.labels.dims(), &[3]);
    assert_eq!(batch.inputs.dtype(), candle_core::DType::F32);
    assert_eq!(batch.labels.dtype(), candle_core::DType::U32);
    let inputs = batch
        .inputs
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(inputs, vec![0.1, 0.15, 0.2, 0.25, 0.3, 0.35]);
    assert_eq!(batch.labels.to_vec1::<u32>().unwrap(), vec![1, 2, 0]);
    let empty = ds.batch(5..5, &Device::Cpu).unwrap();
    assert_eq!(empty.inputs.dims(), &[0, 1, 1, 2]);
}

#[test]
fn batch_out_of_range_is_an_error() {
    let ds = five();
    #[allow(clippy::reversed_empty_ranges)]
    for range in [0..6, 4..3, 6..6] {
        let err = ds.batch(range.clone(), &Device::Cpu).unwrap_err();
        assert!(
            matches!(err, DatasetError::BatchRange { len: 5, .. }),
            "{range:?}: {err:?}"
        );
    }
}

#[test]
fn limit_takes_a_prefix() {
    let ds = five().limit(2);
    assert_eq!(ds.len(), 2);
    assert_eq!(all_labels(&ds), vec![0, 1]);
    assert_eq!(all_inputs(&ds), vec![0.0, 0.05, 0.1, 0.15]);
    assert_eq!(five().limit(100).len(), 5);
    assert!(five().limit(0).is_empty());
}

#[test]
fn subset_keeps_order_and_repeats() {
    let ds = five();
    let sub = ds.subset(&[4, 0, 4]).unwrap();
    assert_eq!(all_labels(&sub), vec![1, 0, 1]);
    assert_eq!(all_inputs(&sub), vec![0.4, 0.45, 0.0, 0.05, 0.4, 0.45]);
    assert_eq!(sub.class_names(), ds.class_names());
    let err = ds.subset(&[1, 5]).unwrap_err();
    assert!(matches!(
        err,
        DatasetError::IndexOutOfRange {
            index: 5,
            len: 5,
            ..
        }
    ));
}

#[test]
fn accessors_agree_with_batches() {
    let ds = five();
    assert_eq!(ds.class_counts(), vec![2, 2, 1]);
    assert_eq!(ds.sample_len(), 2);
    assert_eq!(ds.pixels_f32(), all_inputs(&ds));
    assert_eq!(ds.sample(3), Some((vec![0.3, 0.35], 0)));
    assert_eq!(ds.sample(5), None);
    assert_eq!(ds.pixels_u8(), None);
}

#[test]
fn u8_pixels_scale_by_1_over_255() {
    let ds = InMemoryDataset::from_u8("u8", [1, 1, 3], names(&["a"]), vec![0, 51, 255], vec![0])
        .unwrap();
    assert_eq!(all_inputs(&ds), vec![0.0, 0.2, 1.0]);
}

#[test]
fn renaming_and_relabelling() {
    let ds = five().with_name("renamed");
    assert_eq!(ds.name(), "renamed");
    let err = ds.clone().with_class_names(names(&["a", "b"])).unwrap_err();
    assert!(matches!(
        err,
        DatasetError::LabelOutOfRange { label: 2, .. }
    ));
    let ds = ds.with_class_names(names(&["x", "y", "z", "w"])).unwrap();
    assert_eq!(ds.num_classes(), 4);
}

#[test]
fn usable_as_a_shared_trait_object() {
    let ds: std::sync::Arc<dyn Dataset> = std::sync::Arc::new(five());
    let handle = {
        let ds = ds.clone();
        std::thread::spawn(move || ds.len())
    };
    assert_eq!(handle.join().unwrap(), 5);
}
