//! Small real datasets compiled into the binary, so `gauntlet` works from any directory with
//! no downloads. Sources, licences and the script that cut them: `datasets/data/*/SOURCE.md`.

use crate::{from_idx_bytes, DatasetError, InMemoryDataset};

const FASHION_IMAGES: &[u8] =
    include_bytes!("../data/fashion-mnist-test-1k/t10k-images-idx3-ubyte.gz");
const FASHION_LABELS: &[u8] =
    include_bytes!("../data/fashion-mnist-test-1k/t10k-labels-idx1-ubyte.gz");
const DIGITS_IMAGES: &[u8] = include_bytes!("../data/uci-digits/digits-images-idx3-ubyte.gz");
const DIGITS_LABELS: &[u8] = include_bytes!("../data/uci-digits/digits-labels-idx1-ubyte.gz");

/// Fashion-MNIST class names in label order (Zalando's README).
pub const FASHION_MNIST_CLASS_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Name of [`embedded_fashion_mnist_test`]'s dataset.
pub const FASHION_MNIST_TEST_1K: &str = "fashion-mnist-test-1k";
/// Name of [`embedded_uci_digits`]'s dataset.
pub const UCI_DIGITS: &str = "uci-digits";

/// The first 1,000 images of the Fashion-MNIST test set: `[1, 28, 28]`, 10 classes.
/// MIT licence, Zalando SE.
pub fn embedded_fashion_mnist_test() -> Result<InMemoryDataset, DatasetError> {
    from_idx_bytes(
        FASHION_MNIST_TEST_1K,
        FASHION_IMAGES,
        FASHION_LABELS,
        Some(FASHION_MNIST_CLASS_NAMES.map(String::from).to_vec()),
    )
}

/// The 1,797 UCI optical-recognition handwritten digits (scikit-learn's `load_digits`):
/// `[1, 8, 8]`, classes `"0"`..`"9"`. Pixels are the original 0..16 counts scaled to
/// `round(v * 255 / 16) / 255`. CC BY 4.0, Alpaydin & Kaynak.
pub fn embedded_uci_digits() -> Result<InMemoryDataset, DatasetError> {
    from_idx_bytes(
        UCI_DIGITS,
        DIGITS_IMAGES,
        DIGITS_LABELS,
        Some((0..10).map(|d| d.to_string()).collect()),
    )
}

/// Names accepted by [`embedded`].
pub const EMBEDDED_NAMES: [&str; 2] = [FASHION_MNIST_TEST_1K, UCI_DIGITS];

/// An embedded dataset by name (one of [`EMBEDDED_NAMES`]), or `None` for an unknown name.
pub fn embedded(name: &str) -> Option<Result<InMemoryDataset, DatasetError>> {
    match name {
        FASHION_MNIST_TEST_1K => Some(embedded_fashion_mnist_test()),
        UCI_DIGITS => Some(embedded_uci_digits()),
        _ => None,
    }
}
