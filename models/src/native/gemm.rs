//! The one place gauntlet calls `gemm` (the matrix-multiply crate candle itself uses): a safe,
//! bounds-checked wrapper around its raw-pointer API.
//!
//! Every matrix is a strided view into a slice. Before the unsafe call the wrapper checks that
//! the largest offset each view can touch lies inside its slice and that the destination does
//! not alias an operand (it cannot: it is a `&mut` borrow). A failed check is a bug in the
//! caller inside this crate, never a consequence of user input (shapes are validated when a
//! plan is compiled), so it panics rather than returning an error.
#![allow(unsafe_code)]

/// A read-only `rows × cols` matrix view: element `(r, c)` is `data[r·row_stride + c·col_stride]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A dense row-major matrix.
    pub(crate) fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of a dense row-major `cols × rows` matrix, without copying.
    pub(crate) fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: 1,
            col_stride: rows,
        }
    }

    fn check(&self, what: &str) {
        if self.rows == 0 || self.cols == 0 {
            return;
        }
        let last = last_index(self.rows, self.cols, self.row_stride, self.col_stride);
        assert!(
            last.is_some_and(|last| last < self.data.len()),
            "{what}: a {}×{} view with strides ({}, {}) reaches index {last:?} of a slice of {}",
            self.rows,
            self.cols,
            self.row_stride,
            self.col_stride,
            self.data.len()
        );
    }
}

/// The largest index a `rows × cols` view with these strides touches, or `None` if computing
/// it overflows (then no slice can hold the view).
fn last_index(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Option<usize> {
    let down = (rows - 1).checked_mul(row_stride)?;
    let across = (cols - 1).checked_mul(col_stride)?;
    down.checked_add(across)
}

/// Where a product goes: element `(r, c)` of the result is `data[r·row_stride + c·col_stride]`.
#[derive(Debug)]
pub(crate) struct MatMut<'a> {
    pub data: &'a mut [f32],
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatMut<'a> {
    /// A dense row-major destination with `cols` columns.
    pub(crate) fn row_major(data: &'a mut [f32], cols: usize) -> Self {
        Self {
            data,
            row_stride: cols,
            col_stride: 1,
        }
    }
}

/// `dst = lhs · rhs` (or `dst += lhs · rhs` when `accumulate`; otherwise `dst` is only
/// written, never read). Single-threaded: gauntlet parallelises over the images of a batch
/// instead, which scales better for the small matrices of a convolution.
///
/// gemm vectorises along the destination's unit-stride dimension; the native layout keeps
/// the long pixel dimension there.
pub(crate) fn matmul(dst: MatMut<'_>, lhs: MatRef<'_>, rhs: MatRef<'_>, accumulate: bool) {
    let (m, n, k) = (lhs.rows, rhs.cols, lhs.cols);
    assert_eq!(lhs.cols, rhs.rows, "matmul: inner dimensions differ");
    lhs.check("matmul lhs");
    rhs.check("matmul rhs");
    if m == 0 || n == 0 {
        return;
    }
    let (rs, cs) = (dst.row_stride, dst.col_stride);
    // Distinct elements must not share a slot: one stride must step over the whole extent
    // of the other dimension.
    let steps_over = |outer: usize, inner: usize, count: usize| {
        inner >= 1
            && inner
                .checked_mul(count)
                .is_some_and(|extent| outer >= extent)
    };
    assert!(
        steps_over(rs, cs, n) || steps_over(cs, rs, m),
        "matmul: destination strides ({rs}, {cs}) overlap for {m}×{n}"
    );
    let dst_last = last_index(m, n, rs, cs);
    assert!(
        dst_last.is_some_and(|last| last < dst.data.len()),
        "matmul: destination of {m}×{n} (strides {rs}, {cs}) exceeds a slice of {}",
        dst.data.len()
    );
    // gemm takes strides as isize; a slice's indices always fit, so these only guard the
    // conversion.
    let strides = [
        cs,
        rs,
        lhs.col_stride,
        lhs.row_stride,
        rhs.col_stride,
        rhs.row_stride,
    ]
    .map(|value| isize::try_from(value).ok());
    let [Some(dst_cs), Some(dst_rs), Some(lhs_cs), Some(lhs_rs), Some(rhs_cs), Some(rhs_rs)] =
        strides
    else {
        panic!("matmul: a stride does not fit in isize: {strides:?}");
    };
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                for c in 0..n {
                    dst.data[r * rs + c * cs] = 0.0;
                }
            }
        }
        return;
    }
    // SAFETY: the checks above (in overflow-checked arithmetic) guarantee that every index
    // gemm reads from `lhs` and `rhs` and writes to `dst` (row r < m, column c < n, inner
    // index < k, at the given strides) lies inside the respective slice, and that no two
    // destination elements share a slot; `dst` is a unique borrow, so it aliases neither
    // operand. Every stride is below the length of its slice, so it fits in isize.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            dst_cs,
            dst_rs,
            accumulate,
            lhs.data.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.data.as_ptr(),
            rhs_cs,
            rhs_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(lhs: MatRef<'_>, rhs: MatRef<'_>) -> Vec<f32> {
        let mut out = vec![0f32; lhs.rows * rhs.cols];
        for r in 0..lhs.rows {
            for c in 0..rhs.cols {
                out[r * rhs.cols + c] = (0..lhs.cols)
                    .map(|i| {
                        lhs.data[r * lhs.row_stride + i * lhs.col_stride]
                            * rhs.data[i * rhs.row_stride + c * rhs.col_stride]
                    })
                    .sum();
            }
        }
        out
    }

    #[test]
    fn strided_and_transposed_views_multiply_like_the_textbook() {
        let a: Vec<f32> = (0..35).map(|v| (v as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..42).map(|v| (v as f32 * 0.71).cos()).collect();
        let lhs = MatRef::row_major(&a, 5, 7);
        let rhs = MatRef::transposed(&b, 7, 6);
        let expected = naive(lhs, rhs);
        // Garbage in the destination is overwritten, not read, without `accumulate`.
        let mut dst = vec![f32::NAN; 30];
        matmul(MatMut::row_major(&mut dst, 6), lhs, rhs, false);
        for (got, want) in dst.iter().zip(&expected) {
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
        matmul(MatMut::row_major(&mut dst, 6), lhs, rhs, true);
        for (got, want) in dst.iter().zip(&expected) {
            assert!((got - 2.0 * want).abs() < 1e-5, "{got} vs {}", 2.0 * want);
        }
    }

    #[test]
    #[should_panic(expected = "reaches index None")]
    fn a_stride_that_overflows_is_refused() {
        let a = vec![0f32; 10];
        let lhs = MatRef {
            data: &a,
            rows: 3,
            cols: 1,
            row_stride: 1 << 63,
            col_stride: 1,
        };
        let rhs = MatRef::row_major(&a, 1, 1);
        let mut dst = vec![0f32; 3];
        matmul(MatMut::row_major(&mut dst, 1), lhs, rhs, false);
    }

    #[test]
    #[should_panic(expected = "reaches index")]
    fn a_view_past_its_slice_is_refused_before_any_unsafe_code() {
        let a = vec![0f32; 10];
        let lhs = MatRef::row_major(&a, 3, 4);
        let rhs = MatRef::row_major(&a, 4, 1);
        let mut dst = vec![0f32; 3];
        matmul(MatMut::row_major(&mut dst, 1), lhs, rhs, false);
    }
}
