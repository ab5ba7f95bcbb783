//! Convolution as one matrix multiply per group of images, in the native channel-major layout
//! (see `mod.rs`: channel, then image, then row, then column).
//!
//! Forward: im2col lays out every kernel tap `(ci, ky, kx)` as one row holding, for each output
//! pixel of the group, the input value that tap reads (runs of a row for stride 1), and the
//! output is `W · col` with `W` PyTorch's `(cout, cin·kh·kw)` weight matrix as it is stored.
//! Bias and a fused ReLU are applied per output channel row. Input gradient: `Wᵀ · ∂y` gives
//! the gradient of every im2col row, and col2im adds each row back onto the input values it
//! was gathered from. No kernel gradient is ever computed. A 1×1, stride-1, unpadded
//! convolution needs neither im2col nor col2im: its input already is the row matrix.
//!
//! With the pixels of the whole group along the matrices' long, unit-stride dimension, gemm
//! runs its widest micro-kernels and needs no transposing copies.

use super::gemm::{matmul, MatMut, MatRef};
use super::scratch;
use super::{outputs_inside, Dims};

/// A 2-D convolution (one group; square stride, padding and dilation, as `nn.Conv2d` specs
/// here have).
#[derive(Debug, Clone)]
pub(crate) struct Conv {
    pub(crate) input: Dims,
    pub(crate) output: Dims,
    /// `(height, width)` of the kernel.
    pub(crate) kernel: (usize, usize),
    pub(crate) stride: usize,
    pub(crate) padding: usize,
    pub(crate) dilation: usize,
    /// PyTorch's `(cout, cin, kh, kw)` weight: row-major `cout × (cin·kh·kw)`.
    pub(crate) weight: Vec<f32>,
    pub(crate) bias: Vec<f32>,
    /// Apply `max(·, 0)` to the output (a following ReLU, fused).
    pub(crate) relu: bool,
    /// For stride 1: the convolution whose forward pass is this one's input gradient (kernel
    /// flipped, input and output channels swapped, padding `dilation·(k−1) − padding`).
    /// Gathering with im2col is cheaper than scattering with col2im. Set by [`Conv::finish`].
    pub(crate) transpose: Option<Box<Conv>>,
    /// For "same" stride-1 convolutions: the weights of each kernel row `ky`, as
    /// `cout × (cin·kw)` matrices (see [`Conv::forward_by_kernel_rows`]). Set by
    /// [`Conv::finish`].
    row_weights: Vec<Vec<f32>>,
}

impl Conv {
    /// `geometry` is `[kh, kw, stride, padding, dilation]`.
    pub(crate) fn new(
        input: Dims,
        output: Dims,
        geometry: [usize; 5],
        weight: Vec<f32>,
        bias: Option<Vec<f32>>,
    ) -> Self {
        let [kh, kw, stride, padding, dilation] = geometry;
        Self {
            input,
            output,
            kernel: (kh, kw),
            stride,
            padding,
            dilation,
            weight,
            bias: bias.unwrap_or_else(|| vec![0.0; output.channels]),
            relu: false,
            transpose: None,
            row_weights: Vec::new(),
        }
    }

    /// Whether [`Conv::forward_by_kernel_rows`] applies: stride 1, an output as wide as the
    /// input, and more than one kernel row.
    fn by_kernel_rows(&self) -> bool {
        self.stride == 1 && self.output.width == self.input.width && self.kernel.0 > 1
    }

    fn prepare_row_weights(&mut self) {
        if !self.by_kernel_rows() {
            return;
        }
        let (kh, kw) = self.kernel;
        let (cin, cout, depth) = (self.input.channels, self.output.channels, self.depth());
        self.row_weights = (0..kh)
            .map(|ky| {
                let mut rows = vec![0f32; cout * cin * kw];
                for co in 0..cout {
                    for ci in 0..cin {
                        for kx in 0..kw {
                            rows[(co * cin + ci) * kw + kx] =
                                self.weight[co * depth + (ci * kh + ky) * kw + kx];
                        }
                    }
                }
                rows
            })
            .collect();
    }

    /// Prepares the input-gradient convolution once the weights are final (after folding).
    pub(crate) fn finish(&mut self) {
        self.prepare_row_weights();
        let (kh, kw) = self.kernel;
        let span = |k: usize| self.dilation * (k - 1);
        if self.stride != 1 || self.padding > span(kh) || self.padding > span(kw) {
            return;
        }
        // Gathering the output gradient moves kh·kw·cout values per pixel, scattering the
        // im2col gradient kh·kw·cin: keep col2im when it has fewer input channels.
        if self.output.channels > self.input.channels {
            return;
        }
        // The flipped kernel's padding must be the same in both dimensions (specs have one).
        if span(kh) != span(kw) {
            return;
        }
        let (cin, cout) = (self.input.channels, self.output.channels);
        let mut weight = vec![0f32; self.weight.len()];
        for co in 0..cout {
            for ci in 0..cin {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let from = ((co * cin + ci) * kh + ky) * kw + kx;
                        let to = ((ci * cout + co) * kh + (kh - 1 - ky)) * kw + (kw - 1 - kx);
                        weight[to] = self.weight[from];
                    }
                }
            }
        }
        let mut transpose = Conv::new(
            self.output,
            self.input,
            [kh, kw, 1, span(kh) - self.padding, self.dilation],
            weight,
            None,
        );
        transpose.prepare_row_weights();
        self.transpose = Some(Box::new(transpose));
    }

    /// Multiplies output channel `co` by `scale[co]` and then adds `shift[co]` (an eval-mode
    /// batch norm folded into the convolution).
    pub(crate) fn fold_affine(&mut self, scale: &[f32], shift: &[f32]) {
        let depth = self.depth();
        for (row, s) in self.weight.chunks_exact_mut(depth).zip(scale) {
            row.iter_mut().for_each(|w| *w *= s);
        }
        for ((b, s), t) in self.bias.iter_mut().zip(scale).zip(shift) {
            *b = *b * s + t;
        }
    }

    fn depth(&self) -> usize {
        self.kernel.0 * self.kernel.1 * self.input.channels
    }

    fn is_pointwise(&self) -> bool {
        self.kernel == (1, 1) && self.stride == 1 && self.padding == 0
    }

    /// For kernel offset `k` (row or column tap) and output index `o`, the input index read,
    /// if it is not padding.
    fn source(&self, o: usize, k: usize, size: usize) -> Option<usize> {
        (o * self.stride + k * self.dilation)
            .checked_sub(self.padding)
            .filter(|&i| i < size)
    }

    /// The output columns `lo..hi` whose tap `kx` reads inside the input row, and the input
    /// column that `lo` reads.
    fn valid_columns(&self, kx: usize) -> (usize, usize, usize) {
        outputs_inside(
            self.input.width,
            self.output.width,
            self.stride,
            self.padding,
            kx * self.dilation,
        )
    }

    /// Visits every output row of every im2col row: `visit(col_start, source)` where
    /// `source` is `Some((input_row_start, lo, hi, first))` when the row reads an input row
    /// (output columns `lo..hi` read input columns `first, first + stride, …`; the others
    /// read padding) and `None` when the whole row reads padding.
    fn for_each_row(
        &self,
        images: usize,
        mut visit: impl FnMut(usize, Option<(usize, usize, usize, usize)>),
    ) {
        let (i, o) = (self.input, self.output);
        let (kh, kw) = self.kernel;
        let in_plane = i.height * i.width;
        let mut col = 0;
        for ci in 0..i.channels {
            for ky in 0..kh {
                for kx in 0..kw {
                    let (lo, hi, first) = self.valid_columns(kx);
                    for image in 0..images {
                        let plane = (ci * images + image) * in_plane;
                        for oy in 0..o.height {
                            let source = self
                                .source(oy, ky, i.height)
                                .map(|iy| (plane + iy * i.width, lo, hi, first));
                            visit(col, source);
                            col += o.width;
                        }
                    }
                }
            }
        }
    }

    fn im2col(&self, x: &[f32], images: usize) -> Vec<f32> {
        let pixels = images * self.output.height * self.output.width;
        let mut col = scratch::buffer(self.depth() * pixels);
        if self.stride == 1 && self.output.width == self.input.width {
            self.im2col_same_width(x, images, &mut col);
        } else {
            let (width, stride) = (self.output.width, self.stride);
            self.for_each_row(images, |at, source| {
                let line = &mut col[at..at + width];
                let Some((row, lo, hi, first)) = source else {
                    line.fill(0.0);
                    return;
                };
                zero_few(&mut line[..lo]);
                zero_few(&mut line[hi..]);
                if lo == hi {
                    // This kernel column reads only padding; `first` may lie past the plane.
                } else if stride == 1 {
                    line[lo..hi].copy_from_slice(&x[row + first..][..hi - lo]);
                } else {
                    let inputs = x[row + first..].iter().step_by(stride);
                    for (c, &v) in line[lo..hi].iter_mut().zip(inputs) {
                        *c = v;
                    }
                }
            });
        }
        col
    }

    /// im2col for stride 1 and an output as wide as the input (a "same" convolution): each
    /// tap's row is the input plane shifted by a constant offset, so it is one long copy per
    /// plane, after which the few values that wrapped around a row edge (reads of the
    /// left/right padding) are zeroed.
    fn im2col_same_width(&self, x: &[f32], images: usize, col: &mut [f32]) {
        let (i, o) = (self.input, self.output);
        let (in_plane, out_plane) = (i.height * i.width, o.height * o.width);
        let (kh, kw) = self.kernel;
        let mut row = 0;
        for ci in 0..i.channels {
            for ky in 0..kh {
                let shift_y = (ky * self.dilation) as isize - self.padding as isize;
                // Output rows whose input row exists.
                let oy_lo = (-shift_y).clamp(0, o.height as isize) as usize;
                let oy_hi =
                    (i.height as isize - shift_y).clamp(oy_lo as isize, o.height as isize) as usize;
                for kx in 0..kw {
                    let shift_x = (kx * self.dilation) as isize - self.padding as isize;
                    for image in 0..images {
                        let src = &x[(ci * images + image) * in_plane..][..in_plane];
                        let dst = &mut col[row * out_plane..][..out_plane];
                        row += 1;
                        shifted_copy(dst, src, oy_lo..oy_hi, o.width, shift_y, shift_x);
                    }
                }
            }
        }
    }

    fn col2im(&self, dcol: &[f32], images: usize) -> Vec<f32> {
        let mut dx = scratch::zeroed(images * self.input.len());
        let stride = self.stride;
        self.for_each_row(images, |at, source| {
            if let Some((row, lo, hi, first)) = source.filter(|&(_, lo, hi, _)| lo < hi) {
                let gradients = &dcol[at + lo..at + hi];
                if stride == 1 {
                    let inputs = &mut dx[row + first..][..hi - lo];
                    inputs.iter_mut().zip(gradients).for_each(|(d, g)| *d += g);
                } else {
                    let inputs = dx[row + first..].iter_mut().step_by(stride);
                    inputs.zip(gradients).for_each(|(d, g)| *d += g);
                }
            }
        });
        dx
    }

    /// The outputs of a group of `images` images `x`.
    pub(crate) fn forward(&self, x: &[f32], images: usize) -> Vec<f32> {
        let pixels = images * self.output.height * self.output.width;
        let (depth, cout) = (self.depth(), self.output.channels);
        let mut y = scratch::buffer(cout * pixels);
        let gathered = if !self.row_weights.is_empty() {
            self.forward_by_kernel_rows(x, images, &mut y);
            None
        } else {
            let gathered = (!self.is_pointwise()).then(|| self.im2col(x, images));
            let rows = gathered.as_deref().unwrap_or(x);
            matmul(
                MatMut::row_major(&mut y, pixels),
                MatRef::row_major(&self.weight, cout, depth),
                MatRef::row_major(rows, depth, pixels),
                false,
            );
            gathered
        };
        for (channel, &bias) in y.chunks_exact_mut(pixels).zip(&self.bias) {
            if self.relu {
                channel.iter_mut().for_each(|v| *v = relu(*v + bias));
            } else {
                channel.iter_mut().for_each(|v| *v += bias);
            }
        }
        if let Some(gathered) = gathered {
            scratch::recycle(gathered);
        }
        y
    }

    /// The product `W · im2col(x)` of a "same" stride-1 convolution without the full im2col
    /// matrix: per image, each input channel is laid out `kw` times, shifted by each kernel
    /// column and padded above and below (a third of im2col's copying for a 3×3 kernel), and
    /// the rows of kernel row `ky` are then the same planes read `ky·dilation` rows further
    /// down. One multiply per kernel row, accumulated into `y`.
    fn forward_by_kernel_rows(&self, x: &[f32], images: usize, y: &mut [f32]) {
        let (i, o) = (self.input, self.output);
        let (kh, kw) = self.kernel;
        let width = i.width;
        let (in_plane, out_plane) = (i.height * width, o.height * width);
        let padded_rows = o.height + self.dilation * (kh - 1);
        let shifted_plane = padded_rows * width;
        let pixels = images * out_plane;
        let taps = i.channels * kw;
        let mut shifted = scratch::buffer(taps * shifted_plane);
        // Rows of the shifted planes that hold input rows.
        let row_lo = self.padding.min(padded_rows);
        let row_hi = (self.padding + i.height).min(padded_rows);
        for image in 0..images {
            for ci in 0..i.channels {
                let src = &x[(ci * images + image) * in_plane..][..in_plane];
                for kx in 0..kw {
                    let plane = &mut shifted[(ci * kw + kx) * shifted_plane..][..shifted_plane];
                    let shift_x = (kx * self.dilation) as isize - self.padding as isize;
                    // Plane row r holds input row r − padding.
                    let shift_y = -(self.padding as isize);
                    shifted_copy(plane, src, row_lo..row_hi, width, shift_y, shift_x);
                }
            }
            for (ky, weights) in self.row_weights.iter().enumerate() {
                let offset = ky * self.dilation * width;
                matmul(
                    MatMut {
                        data: &mut y[image * out_plane..],
                        row_stride: pixels,
                        col_stride: 1,
                    },
                    MatRef::row_major(weights, o.channels, taps),
                    MatRef {
                        data: &shifted[offset..],
                        rows: taps,
                        cols: out_plane,
                        row_stride: shifted_plane,
                        col_stride: 1,
                    },
                    ky > 0,
                );
            }
        }
        scratch::recycle(shifted);
    }

    /// The gradient with respect to the input, given the gradient `dy` of the (pre-ReLU)
    /// output of a group of `images` images.
    pub(crate) fn input_gradient(&self, dy: &[f32], images: usize) -> Vec<f32> {
        if let Some(transpose) = &self.transpose {
            return transpose.forward(dy, images);
        }
        let pixels = images * self.output.height * self.output.width;
        let (depth, cout) = (self.depth(), self.output.channels);
        let mut dcol = scratch::buffer(depth * pixels);
        matmul(
            MatMut::row_major(&mut dcol, pixels),
            MatRef::transposed(&self.weight, depth, cout),
            MatRef::row_major(dy, cout, pixels),
            false,
        );
        if self.is_pointwise() {
            return dcol;
        }
        let dx = self.col2im(&dcol, images);
        scratch::recycle(dcol);
        dx
    }
}

/// `dst` (rows of `width`, as wide as the `src` plane) holds `src` moved by `shift_y` rows and
/// `shift_x` columns: `dst[r][c] = src[r + shift_y][c + shift_x]` for the rows `rows` (whose
/// source rows exist), zero where the source column is outside the row and in all other
/// rows. Done as one long copy, at the price of fixing up the few values that wrapped around
/// a row edge.
fn shifted_copy(
    dst: &mut [f32],
    src: &[f32],
    rows: std::ops::Range<usize>,
    width: usize,
    shift_y: isize,
    shift_x: isize,
) {
    let shift = shift_y * width as isize + shift_x;
    let (lo, hi) = (rows.start * width, rows.end * width);
    dst[..lo].fill(0.0);
    dst[hi..].fill(0.0);
    // Keep the copy inside the source plane; what is cut off are edge values, zero like the
    // rest of the padding reads.
    let q_lo = (lo as isize).max(-shift);
    let q_hi = (hi as isize).min(src.len() as isize - shift);
    if q_lo < q_hi {
        let (q_lo, q_hi) = (q_lo as usize, q_hi as usize);
        let from = (q_lo as isize + shift) as usize;
        dst[q_lo..q_hi].copy_from_slice(&src[from..from + (q_hi - q_lo)]);
        dst[lo..q_lo].fill(0.0);
        dst[q_hi..hi].fill(0.0);
    } else {
        dst[lo..hi].fill(0.0);
    }
    // Columns reading padding, at the left and the right of every row.
    let left = (-shift_x).clamp(0, width as isize) as usize;
    let right = (width as isize - shift_x).clamp(left as isize, width as isize) as usize;
    for row in rows {
        let line = &mut dst[row * width..][..width];
        zero_few(&mut line[..left]);
        zero_few(&mut line[right..]);
    }
}

/// Zeroes the one or two padding columns at a row's edge with plain stores: `fill` becomes a
/// call to `memset`, which costs far more than the store for so few values and is made
/// for every row of every kernel tap.
#[inline]
fn zero_few(values: &mut [f32]) {
    match values {
        [] => {}
        [a] => *a = 0.0,
        [a, b] => {
            *a = 0.0;
            *b = 0.0;
        }
        _ => values.fill(0.0),
    }
}

/// `max(v, 0)` as a select (vectorises, unlike `f32::max` with its NaN rule; NaN maps to 0).
#[inline]
pub(crate) fn relu(v: f32) -> f32 {
    if v > 0.0 {
        v
    } else {
        0.0
    }
}

pub(crate) fn relu_in_place(values: &mut [f32]) {
    for v in values {
        *v = relu(*v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(len: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// The kernel-row path against the full im2col product, on "same" geometries (odd and
    /// even sizes, dilation, rectangular kernels, several images per group).
    #[test]
    fn kernel_rows_give_the_im2col_product() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        // (cin, cout, height, width, kh, kw, padding, dilation, images)
        for (cin, cout, height, width, kh, kw, padding, dilation, images) in [
            (3, 4, 7, 5, 3, 3, 1, 1, 2),
            (2, 3, 6, 9, 3, 3, 2, 2, 3),
            (1, 2, 5, 4, 3, 1, 0, 1, 1),
            (4, 2, 4, 6, 5, 5, 2, 1, 2),
            (2, 2, 3, 3, 2, 1, 0, 1, 2),
        ] {
            let input = Dims {
                height,
                width,
                channels: cin,
            };
            let out_height = height + 2 * padding - dilation * (kh - 1);
            let output = Dims {
                height: out_height,
                width,
                channels: cout,
            };
            assert_eq!(
                width + 2 * padding - dilation * (kw - 1),
                width,
                "not a same geometry"
            );
            let weight = random(cout * cin * kh * kw, &mut rng);
            let bias = random(cout, &mut rng);
            let mut conv = Conv::new(
                input,
                output,
                [kh, kw, 1, padding, dilation],
                weight,
                Some(bias),
            );
            let x = random(images * input.len(), &mut rng);
            let by_im2col = conv.forward(&x, images);
            conv.finish();
            assert!(!conv.row_weights.is_empty());
            let by_rows = conv.forward(&x, images);
            let scale = by_im2col.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (a, b) in by_rows.iter().zip(&by_im2col) {
                assert!((a - b).abs() <= 1e-5 * scale, "{a} vs {b}");
            }
        }
    }
}
