//! Integration tests for gauntlet-datasets: one binary, one module per loader.
//!
//! Fixtures live in `tests/fixtures/` (see its README for how each file was made).

// `allow-unwrap-in-tests` covers `#[test]` functions only, not the shared helpers here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cifar;
mod embedded;
mod format;
mod idx;
mod image_folder;
mod in_memory;
mod npy;
mod props;
mod streamed;

use std::path::{Path, PathBuf};

use candle_core::Device;
use gauntlet_datasets::Dataset;

/// Absolute path of a fixture.
pub fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative)
}

/// Every input of a dataset as one flat f32 vector, read through `Dataset::batch`.
pub fn all_inputs(ds: &dyn Dataset) -> Vec<f32> {
    let batch = ds.batch(0..ds.len(), &Device::Cpu).unwrap();
    batch
        .inputs
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

/// Every label, read through `Dataset::batch`.
pub fn all_labels(ds: &dyn Dataset) -> Vec<u32> {
    let batch = ds.batch(0..ds.len(), &Device::Cpu).unwrap();
    batch.labels.to_vec1::<u32>().unwrap()
}

/// `Vec<String>` from string literals.
pub fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A minimal NPY v1.0 file, for cases the committed numpy-written fixtures do not cover.
pub fn npy_v1(descr: &str, fortran: bool, shape: &[usize], payload: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let fortran = if fortran { "True" } else { "False" };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape_text}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
    out
}
