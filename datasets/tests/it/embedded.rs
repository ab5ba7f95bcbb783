use std::path::Path;

use gauntlet_datasets::{
    embedded, embedded_fashion_mnist_test, embedded_uci_digits, load_idx, Dataset,
    FASHION_MNIST_CLASS_NAMES,
};

use crate::{all_inputs, all_labels, names};

#[test]
fn fashion_mnist_subset_shape_labels_and_range() {
    let ds = embedded_fashion_mnist_test().unwrap();
    assert_eq!(ds.name(), "fashion-mnist-test-1k");
    assert_eq!(ds.len(), 1000);
    assert_eq!(ds.sample_shape(), &[1, 28, 28]);
    assert_eq!(
        ds.class_names(),
        names(&[
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot"
        ])
        .as_slice()
    );
    let labels = all_labels(&ds);
    assert!(labels.iter().all(|&l| l < 10));
    // The first Fashion-MNIST test image is the well-known ankle boot.
    assert_eq!(labels[0], 9);
    // A 1,000-image prefix of a shuffled, balanced 10-class set holds every class.
    assert!(
        ds.class_counts().iter().all(|&c| c > 0),
        "{:?}",
        ds.class_counts()
    );
    let inputs = all_inputs(&ds);
    assert_eq!(inputs.len(), 1000 * 784);
    assert!(inputs.iter().all(|v| (0.0..=1.0).contains(v)));
    // Real photographs, not a constant: both extremes occur.
    assert!(inputs.contains(&0.0) && inputs.contains(&1.0));
}

/// Class counts of the UCI optdigits test set, as listed in the dataset's documentation
/// (`optdigits.names`, "Class distribution", testing set).
const UCI_TEST_CLASS_COUNTS: [usize; 10] = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180];

#[test]
fn uci_digits_counts_shape_and_scaling() {
    let ds = embedded_uci_digits().unwrap();
    assert_eq!(ds.name(), "uci-digits");
    assert_eq!(ds.len(), 1797);
    assert_eq!(ds.sample_shape(), &[1, 8, 8]);
    let digits: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    assert_eq!(ds.class_names(), digits.as_slice());
    assert_eq!(ds.class_counts(), UCI_TEST_CLASS_COUNTS.to_vec());
    // Every pixel is round(v * 255 / 16) for an original count v in 0..=16.
    let allowed: Vec<u8> = (0..=16u32).map(|v| ((v * 510 + 16) / 32) as u8).collect();
    let bytes = ds.pixels_u8().unwrap();
    assert!(bytes.iter().all(|b| allowed.contains(b)));
    // The first row of sklearn's digits.csv.gz, a zero.
    let first_row: [u32; 64] = [
        0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0,
        0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0,
        0, 6, 13, 10, 0, 0, 0,
    ];
    let (pixels, label) = ds.sample(0).unwrap();
    assert_eq!(label, 0);
    for (got, v) in pixels.iter().zip(first_row) {
        // Within 1/510 of the original v / 16.
        assert!(
            (got - v as f32 / 16.0).abs() <= 1.0 / 510.0 + 1e-6,
            "{got} vs {v}/16"
        );
    }
}

#[test]
fn embedded_by_name() {
    assert_eq!(embedded("uci-digits").unwrap().unwrap().len(), 1797);
    assert_eq!(
        embedded("fashion-mnist-test-1k").unwrap().unwrap().len(),
        1000
    );
    assert!(embedded("mnist").is_none());
    assert_eq!(FASHION_MNIST_CLASS_NAMES.len(), 10);
}

/// Needs Debian's `dataset-fashion-mnist` (CI installs it); skipped with a note otherwise.
#[test]
fn fashion_mnist_full_test_set() {
    let dir = Path::new("/usr/share/datasets/fashion-mnist");
    if !dir.is_dir() {
        eprintln!(
            "note: skipping fashion_mnist_full_test_set: {} is absent \
             (apt-get install dataset-fashion-mnist)",
            dir.display()
        );
        return;
    }
    let full = load_idx(
        &dir.join("t10k-images-idx3-ubyte.gz"),
        &dir.join("t10k-labels-idx1-ubyte.gz"),
        Some(FASHION_MNIST_CLASS_NAMES.map(String::from).to_vec()),
    )
    .unwrap();
    assert_eq!(full.len(), 10_000);
    assert_eq!(full.sample_shape(), &[1, 28, 28]);
    // Zalando's README: the test set has 1,000 examples of each class.
    assert_eq!(full.class_counts(), vec![1000; 10]);
    // The embedded subset is exactly the first 1,000 records.
    let subset = embedded_fashion_mnist_test().unwrap();
    let prefix = full.limit(1000);
    assert_eq!(prefix.labels(), subset.labels());
    assert_eq!(prefix.pixels_u8(), subset.pixels_u8());
}
