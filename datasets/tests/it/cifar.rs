use gauntlet_datasets::{
    load_cifar10, load_cifar10_dir, load_cifar10_path, CifarSplit, Dataset, DatasetError,
    CIFAR10_CLASS_NAMES, CIFAR10_RECORD_BYTES,
};

use crate::{all_inputs, all_labels, fixture};

/// The formula `make_fixtures.py` wrote for record k: channel ch, pixel p -> (k + 7ch + p) % 256.
fn expected_record(k: usize) -> Vec<f32> {
    (0..3)
        .flat_map(|ch| (0..1024).map(move |p| ((k + ch * 7 + p) % 256) as f32 / 255.0))
        .collect()
}

#[test]
fn test_split_loads_planar_rgb_and_meta_names() {
    let ds = load_cifar10_dir(&fixture("cifar/ok"), CifarSplit::Test).unwrap();
    // test_batch.bin holds records k = 2, 3, 4 with labels (3k) % 10.
    assert_eq!(ds.len(), 3);
    assert_eq!(ds.sample_shape(), &[3, 32, 32]);
    assert_eq!(all_labels(&ds), vec![6, 9, 2]);
    let expected_names: Vec<String> = (0..10).map(|c| format!("class{c}")).collect();
    assert_eq!(ds.class_names(), expected_names.as_slice());
    let expected: Vec<f32> = (2..5).flat_map(expected_record).collect();
    assert_eq!(all_inputs(&ds), expected);
}

#[test]
fn files_are_concatenated_in_the_order_given() {
    let ok = fixture("cifar/ok");
    let ds = load_cifar10(&[ok.join("data_batch_1.bin"), ok.join("test_batch.bin")]).unwrap();
    assert_eq!(all_labels(&ds), vec![0, 3, 6, 9, 2]);
    let expected: Vec<f32> = (0..5).flat_map(expected_record).collect();
    assert_eq!(all_inputs(&ds), expected);
}

#[test]
fn a_directory_path_means_the_test_split() {
    let from_path = load_cifar10_path(&fixture("cifar/ok")).unwrap();
    let from_dir = load_cifar10_dir(&fixture("cifar/ok"), CifarSplit::Test).unwrap();
    assert_eq!(from_path.pixels_u8(), from_dir.pixels_u8());
    assert_eq!(from_path.labels(), from_dir.labels());
}

#[test]
fn train_split_needs_all_five_batches() {
    let err = load_cifar10_dir(&fixture("cifar/ok"), CifarSplit::Train).unwrap_err();
    match err {
        DatasetError::MissingFile { path, .. } => {
            assert!(path.ends_with("data_batch_2.bin"), "{path:?}")
        }
        other => panic!("expected MissingFile, got {other:?}"),
    }
}

#[test]
fn length_not_a_multiple_of_the_record_is_refused() {
    let err = load_cifar10(&[fixture("cifar/bad-length.bin")]).unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::CifarLength { len, record_bytes: 3073, .. } if len == 3073 + 100
        ),
        "{err:?}"
    );
}

#[test]
fn label_ten_is_refused() {
    let err = load_cifar10(&[fixture("cifar/bad-label.bin")]).unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::LabelOutOfRange {
                index: 1,
                label: 10,
                num_classes: 10,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn without_meta_the_standard_names_are_used() {
    let dir = tempfile::tempdir().unwrap();
    let batch = dir.path().join("test_batch.bin");
    std::fs::copy(fixture("cifar/ok/test_batch.bin"), &batch).unwrap();
    let ds = load_cifar10(&[batch]).unwrap();
    assert_eq!(
        ds.class_names(),
        CIFAR10_CLASS_NAMES.map(String::from).as_slice()
    );
}

#[test]
fn meta_with_the_wrong_number_of_names_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let batch = dir.path().join("test_batch.bin");
    std::fs::copy(fixture("cifar/ok/test_batch.bin"), &batch).unwrap();
    std::fs::write(
        dir.path().join("batches.meta.txt"),
        "a\nb\nc\nd\ne\nf\ng\nh\ni\n\n",
    )
    .unwrap();
    let err = load_cifar10(&[batch]).unwrap_err();
    assert!(
        matches!(err, DatasetError::CifarMeta { found: 9, .. }),
        "{err:?}"
    );
}

#[test]
fn empty_inputs_are_refused() {
    assert!(matches!(
        load_cifar10(&[]),
        Err(DatasetError::NoInputFiles { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.bin");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        load_cifar10(&[empty]),
        Err(DatasetError::EmptyFile { .. })
    ));
    assert_eq!(CIFAR10_RECORD_BYTES, 1 + 3 * 32 * 32);
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let path = fixture("cifar/does-not-exist.bin");
    let err = load_cifar10(std::slice::from_ref(&path)).unwrap_err();
    match err {
        DatasetError::Io { path: p, .. } => assert_eq!(p, path),
        other => panic!("expected Io, got {other:?}"),
    }
}
