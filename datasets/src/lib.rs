//! Datasets for gauntlet: labelled images as f32 tensors in [0, 1].
//!
//! Every loader validates magic numbers, sizes and labels up front, so that a truncated or
//! malformed file is one clear error at load time and never a panic or a silently short
//! dataset later. The `load_*` loaders decode the whole file into an [`InMemoryDataset`]; the
//! `open_*` ones do the same checks and return a [`StreamedDataset`], whose batches read their
//! bytes from the file on demand (what `gauntlet run` uses, so a run's memory is bounded by the
//! batch size, not the dataset's size). Both give bit-identical batches.
//!
//! | Format | Loader | Streaming | Layout |
//! |---|---|---|---|
//! | IDX (MNIST, Fashion-MNIST) | [`load_idx`], [`from_idx_bytes`] | [`open_idx`] | images + labels files |
//! | CIFAR-10 binary | [`load_cifar10`], [`load_cifar10_dir`], [`load_cifar10_path`] | [`open_cifar10`], [`open_cifar10_dir`], [`open_cifar10_path`] | 3073-byte records |
//! | image folder | [`load_image_folder`] | (in memory) | `root/<class>/*.{png,jpg}` |
//! | NumPy | [`load_npy`], [`from_npy_bytes`] | [`open_npy`] | images + labels `.npy` |
//!
//! Any of the binary files may be gzipped; compression is detected from the magic bytes
//! `1f 8b`, never from the file name. A streamed gzipped file is decompressed once into an
//! anonymous temporary file (a gzip stream cannot be seeked into). Two small real datasets ship inside the crate:
//! [`embedded_fashion_mnist_test`] and [`embedded_uci_digits`].

use std::ops::Range;

use candle_core::{Device, Tensor};

mod cifar;
mod embedded;
mod error;
mod format;
mod idx;
mod image_folder;
mod in_memory;
mod npy;
mod read;
mod stored;
mod streamed;

pub use cifar::{
    load_cifar10, load_cifar10_dir, load_cifar10_path, open_cifar10, open_cifar10_dir,
    open_cifar10_path, CifarSplit, CIFAR10_CLASS_NAMES, CIFAR10_RECORD_BYTES,
};
pub use embedded::{
    embedded, embedded_fashion_mnist_test, embedded_uci_digits, EMBEDDED_NAMES,
    FASHION_MNIST_CLASS_NAMES, FASHION_MNIST_TEST_1K, UCI_DIGITS,
};
pub use error::DatasetError;
pub use format::DatasetFormat;
pub use idx::{
    encode_idx, from_idx_bytes, load_idx, open_idx, write_idx, IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC,
};
pub use image_folder::{load_image_folder, load_image_folder_limited, MAX_IMAGE_SIDE};
pub use in_memory::InMemoryDataset;
pub use npy::{
    from_npy_bytes, load_npy, open_npy, parse_npy_header, ByteOrder, NpyDtype, NpyHeader,
    MAX_NPY_HEADER_BYTES, NPY_MAGIC,
};
pub use read::{GZIP_MAGIC, MAX_DECOMPRESSED_BYTES};
pub use streamed::StreamedDataset;

/// A batch of samples: inputs `(n, C, H, W)` f32 in [0, 1] and labels `(n,)` u32.
#[derive(Debug, Clone)]
pub struct Batch {
    pub inputs: Tensor,
    pub labels: Tensor,
}

/// A labelled image dataset.
pub trait Dataset: Send + Sync {
    /// A short human-readable name, e.g. `fashion-mnist-test`.
    fn name(&self) -> &str;
    /// Number of samples.
    fn len(&self) -> usize;
    /// Whether the dataset holds no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Per-sample shape `[C, H, W]`.
    fn sample_shape(&self) -> &[usize];
    /// One name per class; `class_names().len()` is the number of classes.
    fn class_names(&self) -> &[String];
    /// Samples in `range`: f32 `(n, C, H, W)` in [0, 1] and u32 labels `(n,)`.
    fn batch(&self, range: Range<usize>, device: &Device) -> Result<Batch, DatasetError>;
}
