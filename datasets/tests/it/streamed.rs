//! Streamed datasets ([`StreamedDataset`]) against the whole-file loaders they replace in runs:
//! for every format, the same samples bit for bit over whole files and random ranges, the same
//! errors for every malformed fixture, and the hostile-input guarantees of the loaders.

use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::Device;
use gauntlet_datasets::{
    load_cifar10, load_cifar10_path, load_idx, load_npy, open_cifar10, open_cifar10_path, open_idx,
    open_npy, write_idx, Dataset, DatasetError, InMemoryDataset, StreamedDataset,
    CIFAR10_RECORD_BYTES,
};

use crate::{fixture, names, npy_v1};

/// A fixed-seed generator (64-bit LCG), so the random files and ranges are the same every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The bits of a batch's inputs and its labels.
fn batch_bits(ds: &dyn Dataset, range: std::ops::Range<usize>) -> (Vec<u32>, Vec<u32>) {
    let batch = ds.batch(range, &Device::Cpu).unwrap();
    let inputs = batch
        .inputs
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    (
        inputs.iter().map(|v| v.to_bits()).collect(),
        batch.labels.to_vec1::<u32>().unwrap(),
    )
}

/// Same name, shape, classes, labels and, bit for bit, the same batches over the whole set,
/// batch-sized steps and 50 random ranges (empty ones included).
fn assert_same(streamed: &StreamedDataset, whole: &InMemoryDataset, seed: u64) {
    assert!(streamed.is_streamed());
    assert_eq!(streamed.samples_in_memory(), 0);
    assert_eq!(streamed.name(), whole.name());
    assert_eq!(streamed.len(), whole.len());
    assert_eq!(streamed.sample_shape(), whole.sample_shape());
    assert_eq!(streamed.class_names(), whole.class_names());
    assert_eq!(streamed.labels(), whole.labels());
    assert_eq!(streamed.class_counts(), whole.class_counts());
    let n = whole.len();
    assert_eq!(batch_bits(streamed, 0..n), batch_bits(whole, 0..n));
    for start in (0..n).step_by(7) {
        let range = start..(start + 7).min(n);
        assert_eq!(
            batch_bits(streamed, range.clone()),
            batch_bits(whole, range)
        );
    }
    let mut rng = Lcg(seed);
    for _ in 0..50 {
        let a = rng.below(n + 1);
        let b = rng.below(n + 1);
        let range = a.min(b)..a.max(b);
        assert_eq!(
            batch_bits(streamed, range.clone()),
            batch_bits(whole, range.clone()),
            "range {range:?}"
        );
    }
    // Read back whole, it is the loader's dataset, raw bytes included.
    assert_eq!(&streamed.to_in_memory().unwrap(), whole);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// An IDX images/labels pair of `n` random 28×28 samples, plain and gzipped.
fn random_idx(dir: &Path, n: usize, seed: u64) -> [(PathBuf, PathBuf); 2] {
    let mut rng = Lcg(seed);
    let pixels = rng.bytes(n * 28 * 28);
    let labels: Vec<u32> = (0..n).map(|_| rng.below(10) as u32).collect();
    let ds =
        InMemoryDataset::from_u8("random", [1, 28, 28], names(&["0"; 10]), pixels, labels).unwrap();
    let plain = (dir.join("images-idx3-ubyte"), dir.join("labels-idx1-ubyte"));
    write_idx(&ds, &plain.0, &plain.1, false).unwrap();
    let gz = (
        dir.join("images-idx3-ubyte.gz"),
        dir.join("labels-idx1-ubyte.gz"),
    );
    write_idx(&ds, &gz.0, &gz.1, true).unwrap();
    [plain, gz]
}

#[test]
fn idx_streams_the_same_samples_plain_and_gzipped() {
    let dir = tempfile::tempdir().unwrap();
    for (k, (images, labels)) in random_idx(dir.path(), 1000, 1).iter().enumerate() {
        let whole = load_idx(images, labels, None).unwrap();
        let streamed = open_idx(images, labels, None).unwrap();
        assert_eq!(streamed.reads_decompressed_copy(), k == 1);
        assert_same(&streamed, &whole, 10 + k as u64);
    }
    let (images, labels) = (
        fixture("idx/tiny-images-idx3-ubyte"),
        fixture("idx/tiny-labels-idx1-ubyte"),
    );
    let whole = load_idx(&images, &labels, None).unwrap();
    assert_same(&open_idx(&images, &labels, None).unwrap(), &whole, 3);
}

#[test]
fn cifar_streams_the_same_samples_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Lcg(2);
    let mut files = Vec::new();
    for (k, records) in [40usize, 1, 300].into_iter().enumerate() {
        let mut bytes = Vec::with_capacity(records * CIFAR10_RECORD_BYTES);
        for _ in 0..records {
            bytes.push(rng.below(10) as u8);
            bytes.extend(rng.bytes(CIFAR10_RECORD_BYTES - 1));
        }
        // The middle file gzipped: decompressed to a temporary file, the others read in place.
        let bytes = if k == 1 { gzip(&bytes) } else { bytes };
        files.push(write(dir.path(), &format!("data_batch_{k}.bin"), &bytes));
    }
    let whole = load_cifar10(&files).unwrap();
    let streamed = open_cifar10(&files).unwrap();
    assert!(streamed.reads_decompressed_copy());
    assert_same(&streamed, &whole, 4);
    let ok = fixture("cifar/ok");
    assert_same(
        &open_cifar10_path(&ok).unwrap(),
        &load_cifar10_path(&ok).unwrap(),
        5,
    );
}

#[test]
fn npy_streams_the_same_samples_for_every_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Lcg(3);
    let n = 257;
    let label_bytes: Vec<u8> = (0..n)
        .flat_map(|_| (rng.below(10) as i64).to_le_bytes())
        .collect();
    let labels = write(
        dir.path(),
        "labels.npy",
        &npy_v1("<i8", false, &[n], &label_bytes),
    );
    let unit = |rng: &mut Lcg| (rng.next() % 1_000_001) as f64 / 1_000_000.0;
    let values = n * 3 * 5 * 4;
    let u8s = rng.bytes(values);
    let f32_le: Vec<u8> = (0..values)
        .flat_map(|_| (unit(&mut rng) as f32).to_le_bytes())
        .collect();
    let f64_be: Vec<u8> = (0..values)
        .flat_map(|_| unit(&mut rng).to_be_bytes())
        .collect();
    let cases = [
        ("|u1", u8s, false),
        ("<f4", f32_le.clone(), false),
        (">f8", f64_be, false),
        ("<f4", f32_le, true),
    ];
    for (k, (descr, payload, gzipped)) in cases.into_iter().enumerate() {
        let bytes = npy_v1(descr, false, &[n, 3, 5, 4], &payload);
        let bytes = if gzipped { gzip(&bytes) } else { bytes };
        let images = write(dir.path(), &format!("images-{k}.npy"), &bytes);
        let whole = load_npy(&images, &labels, None).unwrap();
        let streamed = open_npy(&images, &labels, None).unwrap();
        assert_same(&streamed, &whole, 20 + k as u64);
    }
    for name in [
        "u8-images.npy",
        "u8-images-v2.npy",
        "u8-images-v3.npy",
        "f32-images.npy",
    ] {
        let (images, labels) = (
            fixture(&format!("npy/{name}")),
            fixture("npy/labels-i64.npy"),
        );
        let whole = load_npy(&images, &labels, None).unwrap();
        assert_same(&open_npy(&images, &labels, None).unwrap(), &whole, 6);
    }
}

/// Both fail, with the same message (which names the file).
fn assert_same_error(
    whole: Result<InMemoryDataset, DatasetError>,
    streamed: Result<StreamedDataset, DatasetError>,
) -> String {
    let whole = whole.unwrap_err().to_string();
    let streamed = streamed.unwrap_err().to_string();
    assert_eq!(streamed, whole);
    streamed
}

#[test]
fn every_malformed_fixture_fails_as_the_whole_file_loader_does() {
    let tiny_labels = fixture("idx/tiny-labels-idx1-ubyte");
    for images in [
        "idx/truncated-images-idx3-ubyte",
        "idx/wrong-magic-images-idx3-ubyte",
        "idx/absurd-images-idx3-ubyte",
        "idx/tiny-labels-idx1-ubyte",
        "idx/no-such-file",
    ] {
        let images = fixture(images);
        let message = assert_same_error(
            load_idx(&images, &tiny_labels, None),
            open_idx(&images, &tiny_labels, None),
        );
        assert!(message.contains(&*images.to_string_lossy()), "{message}");
    }
    let tiny_images = fixture("idx/tiny-images-idx3-ubyte");
    for labels in ["idx/two-labels-idx1-ubyte", "idx/tiny-images-idx3-ubyte"] {
        let labels = fixture(labels);
        assert_same_error(
            load_idx(&tiny_images, &labels, None),
            open_idx(&tiny_images, &labels, None),
        );
    }
    // Too few class names for the labels.
    assert_same_error(
        load_idx(&tiny_images, &tiny_labels, Some(names(&["a"]))),
        open_idx(&tiny_images, &tiny_labels, Some(names(&["a"]))),
    );
    for bad in ["cifar/bad-label.bin", "cifar/bad-length.bin"] {
        let paths = [fixture(bad)];
        assert_same_error(load_cifar10(&paths), open_cifar10(&paths));
    }
    let labels = fixture("npy/labels-i64.npy");
    for images in [
        "npy/channels-last-images.npy",
        "npy/fortran-images.npy",
        "npy/nan-images.npy",
        "npy/out-of-range-images.npy",
        "npy/object-labels.npy",
    ] {
        let images = fixture(images);
        assert_same_error(
            load_npy(&images, &labels, None),
            open_npy(&images, &labels, None),
        );
    }
    for labels in ["npy/negative-labels.npy", "npy/object-labels.npy"] {
        let (images, labels) = (fixture("npy/u8-images.npy"), fixture(labels));
        assert_same_error(
            load_npy(&images, &labels, None),
            open_npy(&images, &labels, None),
        );
    }
}

/// A gzipped file is decompressed no further than its header allows before being refused:
/// one that inflates past its header's length is trailing bytes (the exact count, as for a
/// plain file), one that stops short is truncated.
#[test]
fn a_gzipped_file_is_held_to_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let [(images, labels), _] = random_idx(dir.path(), 10, 4);
    let plain = std::fs::read(&images).unwrap();
    let long = write(
        dir.path(),
        "long.gz",
        &gzip(&[plain.as_slice(), &vec![0; 1 << 20]].concat()),
    );
    let message = assert_same_error(
        load_idx(&long, &labels, None),
        open_idx(&long, &labels, None),
    );
    assert!(message.contains("trailing bytes"), "{message}");
    let short = write(dir.path(), "short.gz", &gzip(&plain[..plain.len() - 1]));
    let message = assert_same_error(
        load_idx(&short, &labels, None),
        open_idx(&short, &labels, None),
    );
    assert!(message.contains("truncated"), "{message}");
    let corrupt = write(dir.path(), "corrupt.gz", &[0x1f, 0x8b, 8, 0, 1, 2, 3]);
    let message = assert_same_error(
        load_idx(&corrupt, &labels, None),
        open_idx(&corrupt, &labels, None),
    );
    assert!(message.contains("not valid gzip"), "{message}");
}

#[cfg(unix)]
#[test]
fn a_fifo_or_device_is_refused_by_name_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("images.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    let labels = fixture("idx/tiny-labels-idx1-ubyte");
    if made.is_ok_and(|s| s.success()) {
        let error = open_idx(&fifo, &labels, None).unwrap_err();
        assert!(
            matches!(&error, DatasetError::File(gauntlet_files::FileError::NotRegular { path, .. }) if path == &fifo),
            "{error:?}"
        );
        let error = open_cifar10(std::slice::from_ref(&fifo)).unwrap_err();
        assert!(error.to_string().contains("FIFO"), "{error}");
    }
    let error = open_npy(Path::new("/dev/zero"), &labels, None).unwrap_err();
    assert!(error.to_string().contains("/dev/zero"), "{error}");
    assert!(error.to_string().contains("character device"), "{error}");
}

/// `limit` and `subset` give what they give on the whole-file dataset, and a file that
/// shrinks under an open dataset is an error naming it, not a panic or short batch.
#[test]
fn limit_subset_and_a_file_that_shrinks() {
    let dir = tempfile::tempdir().unwrap();
    let [(images, labels), _] = random_idx(dir.path(), 100, 5);
    let whole = load_idx(&images, &labels, None).unwrap();
    let streamed = open_idx(&images, &labels, None).unwrap();
    let limited = streamed.clone().limit(37);
    assert_same(&limited, &whole.clone().limit(37), 7);
    assert_eq!(streamed.clone().limit(1000).len(), 100);
    let indices = [99, 0, 1, 2, 50, 50, 3];
    assert_eq!(
        streamed.subset(&indices).unwrap(),
        whole.subset(&indices).unwrap()
    );
    assert_eq!(streamed.subset(&[]).unwrap(), whole.subset(&[]).unwrap());
    assert_eq!(
        streamed.subset(&[100]).unwrap_err().to_string(),
        whole.subset(&[100]).unwrap_err().to_string()
    );
    let error = limited.batch(30..38, &Device::Cpu).unwrap_err();
    assert!(
        matches!(error, DatasetError::BatchRange { .. }),
        "{error:?}"
    );
    // Cut the file to half its samples: early batches still read, late ones fail by name.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&images)
        .unwrap();
    file.set_len(16 + 50 * 28 * 28).unwrap();
    assert_eq!(batch_bits(&streamed, 0..50), batch_bits(&whole, 0..50));
    let error = streamed.batch(40..60, &Device::Cpu).unwrap_err();
    assert!(matches!(error, DatasetError::Io { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&*images.to_string_lossy()),
        "{error}"
    );
}

/// Debian's `dataset-fashion-mnist` ships the 60,000-image training set gzipped; where it is
/// installed, the streamed set equals the whole-file one.
#[test]
fn debian_fashion_mnist_train_set_when_installed() {
    let dir = Path::new("/usr/share/datasets/fashion-mnist");
    let (images, labels) = (
        dir.join("train-images-idx3-ubyte.gz"),
        dir.join("train-labels-idx1-ubyte.gz"),
    );
    if !images.is_file() || !labels.is_file() {
        eprintln!("skipped: {} is not installed", images.display());
        return;
    }
    let whole = load_idx(&images, &labels, None).unwrap();
    let streamed = open_idx(&images, &labels, None).unwrap();
    assert_eq!(streamed.len(), 60_000);
    assert_same(&streamed, &whole, 8);
}
