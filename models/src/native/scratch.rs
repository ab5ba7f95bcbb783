//! Per-thread recycling of activation buffers.
//!
//! A forward + backward pass allocates a few buffers per layer, and an attack repeats the
//! same pass with the same sizes thousands of times. Fresh allocations of that size are
//! zeroed (or page-faulted in) every time; recycled ones are not. Buffers taken with
//! [`buffer`] hold leftovers from earlier use and are for outputs that are written in full
//! (a matrix product without accumulation, a copy); [`zeroed`] is for outputs that are
//! accumulated into.
//!
//! With debug assertions on (the test profile), [`buffer`] fills every buffer it hands out,
//! fresh or recycled, with NaN: a kernel that leaves an output value unwritten then gives NaN
//! logits or gradients in the differential tests instead of a plausible leftover or zero. The
//! fill is compiled out of release builds.

use std::cell::RefCell;
use std::collections::HashMap;

/// Buffers kept per size and thread: a forward pass keeps one activation per ReLU alive
/// until the backward pass, about twenty of the same size in a ResNet stage.
const KEPT_PER_SIZE: usize = 64;
/// Distinct sizes kept per thread (a plan has a few per layer).
const KEPT_SIZES: usize = 256;
/// Values kept per thread in all (1 GiB of f32): a pass over large images can need more,
/// and then the rest is freed as usual rather than held for the life of the thread.
const KEPT_VALUES: usize = 1 << 28;

/// Recycled buffers by length: a pass asks for the same lengths every time, so a recycled
/// buffer never needs resizing (which would zero the new part).
#[derive(Default)]
struct Pool {
    by_len: HashMap<usize, Vec<Vec<f32>>>,
    /// Total length of the buffers held.
    values: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// A buffer of `len` values with unspecified (but initialised) contents: NaN with debug
/// assertions on, leftovers or zeros otherwise. The caller must write every value it reads.
pub(crate) fn buffer(len: usize) -> Vec<f32> {
    let mut values = POOL
        .with(|pool| {
            let mut pool = pool.borrow_mut();
            let taken = pool.by_len.get_mut(&len).and_then(Vec::pop);
            if taken.is_some() {
                pool.values -= len;
            }
            taken
        })
        .unwrap_or_else(|| vec![0.0; len]);
    if cfg!(debug_assertions) {
        values.fill(f32::NAN);
    }
    values
}

/// A buffer of `len` zeros.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    let mut values = buffer(len);
    values.fill(0.0);
    values
}

/// Whether a pool holding `held` values may keep `len` more.
fn within_cap(held: usize, len: usize) -> bool {
    held.saturating_add(len) <= KEPT_VALUES
}

/// Hands a buffer back for reuse by this thread (or frees it when the pool is full).
pub(crate) fn recycle(values: Vec<f32>) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let len = values.len();
        if !within_cap(pool.values, len)
            || (pool.by_len.len() >= KEPT_SIZES && !pool.by_len.contains_key(&len))
        {
            return;
        }
        let kept = pool.by_len.entry(len).or_default();
        if kept.len() < KEPT_PER_SIZE {
            kept.push(values);
            pool.values += len;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycled_buffers_come_back_by_length_and_the_pool_is_bounded() {
        let mut first = buffer(1000);
        first[0] = 7.0;
        let address = first.as_ptr();
        recycle(first);
        // Same length: the same allocation, with its leftovers in release builds and NaN
        // where debug assertions are on.
        let again = buffer(1000);
        assert_eq!(again.as_ptr(), address);
        if cfg!(debug_assertions) {
            assert!(again.iter().all(|v| v.is_nan()));
        } else {
            assert_eq!(again[0], 7.0);
        }
        recycle(again);
        let _ = buffer(1000);
        // Other lengths get their own buffers, zeroed when asked.
        recycle(vec![3.0; 10]);
        assert_eq!(zeroed(10), vec![0.0; 10]);
        let held = || POOL.with(|pool| pool.borrow().values);
        assert_eq!(held(), 0, "both buffers were taken back out");
        recycle(vec![0.0; 10]);
        assert_eq!(held(), 10);
        // The cap on what a thread holds.
        assert!(within_cap(0, KEPT_VALUES));
        assert!(!within_cap(1, KEPT_VALUES));
        assert!(!within_cap(usize::MAX, 1));
    }
}
