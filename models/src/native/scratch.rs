//! Per-thread recycling of activation buffers.
//!
//! A forward + backward pass allocates a few buffers per layer, and an attack repeats the
//! same pass with the same sizes thousands of times. Fresh allocations of that size are
//! zeroed (or page-faulted in) every time; recycled ones are not. Buffers taken with
//! [`buffer`] hold leftovers from earlier use and are for outputs that are written in full
//! (a matrix product without accumulation, a copy); [`zeroed`] is for outputs that are
//! accumulated into.

use std::cell::RefCell;
use std::collections::HashMap;

/// Buffers kept per size and thread: a forward pass keeps one activation per ReLU alive
/// until the backward pass, about twenty of the same size in a ResNet stage.
const KEPT_PER_SIZE: usize = 64;
/// Distinct sizes kept per thread (a plan has a few per layer).
const KEPT_SIZES: usize = 256;

thread_local! {
    /// Recycled buffers by length: a pass asks for the same lengths every time, so a
    /// recycled buffer never needs resizing (which would zero the new part).
    static POOL: RefCell<HashMap<usize, Vec<Vec<f32>>>> = RefCell::new(HashMap::new());
}

/// A buffer of `len` values with unspecified (but initialised) contents.
pub(crate) fn buffer(len: usize) -> Vec<f32> {
    POOL.with(|pool| pool.borrow_mut().get_mut(&len).and_then(Vec::pop))
        .unwrap_or_else(|| vec![0.0; len])
}

/// A buffer of `len` zeros.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    let mut values = buffer(len);
    values.fill(0.0);
    values
}

/// Hands a buffer back for reuse by this thread.
pub(crate) fn recycle(values: Vec<f32>) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() >= KEPT_SIZES && !pool.contains_key(&values.len()) {
            return;
        }
        let kept = pool.entry(values.len()).or_default();
        if kept.len() < KEPT_PER_SIZE {
            kept.push(values);
        }
    });
}
