//! Convolution as one matrix multiply per chunk of images, in channels-last layout.
//!
//! Forward: gather every output pixel's receptive field into a row (im2col, `(ky, kx, ci)`
//! order), then `rows · W` with `W` the `(kh·kw·cin) × cout` weight matrix; bias and a fused
//! ReLU are applied while the output is still in cache. Input gradient: `∂y · Wᵀ` gives the
//! gradient of every im2col row, which col2im adds back onto the input pixels it was
//! gathered from. No kernel gradient is ever computed. A 1×1, stride-1, unpadded
//! convolution skips im2col/col2im altogether (the input already is the row matrix).

use super::gemm::{matmul, MatRef};
use super::Dims;

/// A 2-D convolution (one group; square stride, padding and dilation, as `nn.Conv2d` specs here have).
#[derive(Debug, Clone)]
pub(crate) struct Conv {
    pub(crate) input: Dims,
    pub(crate) output: Dims,
    /// `(height, width)` of the kernel.
    pub(crate) kernel: (usize, usize),
    pub(crate) stride: usize,
    pub(crate) padding: usize,
    pub(crate) dilation: usize,
    /// `(kh · kw · input.channels) × output.channels`, row-major, rows in `(ky, kx, ci)` order.
    pub(crate) weight: Vec<f32>,
    pub(crate) bias: Vec<f32>,
    /// Apply `max(·, 0)` to the output (a following ReLU, fused).
    pub(crate) relu: bool,
}

impl Conv {
    /// Builds the matrix form from a PyTorch `(cout, cin, kh, kw)` weight; `geometry` is
    /// `[kh, kw, stride, padding, dilation]`.
    pub(crate) fn new(
        input: Dims,
        output: Dims,
        geometry: [usize; 5],
        torch_weight: &[f32],
        bias: Option<Vec<f32>>,
    ) -> Self {
        let [kh, kw, stride, padding, dilation] = geometry;
        let (cin, cout) = (input.channels, output.channels);
        let mut weight = vec![0f32; kh * kw * cin * cout];
        for co in 0..cout {
            for ci in 0..cin {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let row = (ky * kw + kx) * cin + ci;
                        weight[row * cout + co] =
                            torch_weight[((co * cin + ci) * kh + ky) * kw + kx];
                    }
                }
            }
        }
        Self {
            input,
            output,
            kernel: (kh, kw),
            stride,
            padding,
            dilation,
            weight,
            bias: bias.unwrap_or_else(|| vec![0.0; cout]),
            relu: false,
        }
    }

    /// Multiplies output channel `co` by `scale[co]` and then adds `shift[co]` (an eval-mode
    /// batch norm folded into the convolution).
    pub(crate) fn fold_affine(&mut self, scale: &[f32], shift: &[f32]) {
        let cout = self.output.channels;
        for row in self.weight.chunks_exact_mut(cout) {
            for (w, s) in row.iter_mut().zip(scale) {
                *w *= s;
            }
        }
        for ((b, s), t) in self.bias.iter_mut().zip(scale).zip(shift) {
            *b = *b * s + t;
        }
    }

    fn rows_per_image(&self) -> usize {
        self.output.height * self.output.width
    }

    fn depth(&self) -> usize {
        self.kernel.0 * self.kernel.1 * self.input.channels
    }

    fn is_pointwise(&self) -> bool {
        self.kernel == (1, 1) && self.stride == 1 && self.padding == 0
    }

    /// The input pixel `(row, col)` that kernel tap `(ky, kx)` of output `(oy, ox)` reads, if
    /// it is not padding.
    fn source(&self, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<usize> {
        let row = (oy * self.stride + ky * self.dilation).checked_sub(self.padding)?;
        let col = (ox * self.stride + kx * self.dilation).checked_sub(self.padding)?;
        (row < self.input.height && col < self.input.width).then(|| row * self.input.width + col)
    }

    fn im2col(&self, x: &[f32], images: usize) -> Vec<f32> {
        let (cin, depth) = (self.input.channels, self.depth());
        let in_plane = self.input.len();
        let mut col = vec![0f32; images * self.rows_per_image() * depth];
        let mut rows = col.chunks_exact_mut(depth);
        for image in x.chunks_exact(in_plane).take(images) {
            for oy in 0..self.output.height {
                for ox in 0..self.output.width {
                    let Some(row) = rows.next() else { break };
                    for ky in 0..self.kernel.0 {
                        for kx in 0..self.kernel.1 {
                            if let Some(pixel) = self.source(oy, ox, ky, kx) {
                                let tap = (ky * self.kernel.1 + kx) * cin;
                                row[tap..tap + cin]
                                    .copy_from_slice(&image[pixel * cin..(pixel + 1) * cin]);
                            }
                        }
                    }
                }
            }
        }
        col
    }

    fn col2im(&self, col: &[f32], images: usize) -> Vec<f32> {
        let (cin, depth) = (self.input.channels, self.depth());
        let in_plane = self.input.len();
        let mut dx = vec![0f32; images * in_plane];
        let mut rows = col.chunks_exact(depth);
        for image in dx.chunks_exact_mut(in_plane) {
            for oy in 0..self.output.height {
                for ox in 0..self.output.width {
                    let Some(row) = rows.next() else { break };
                    for ky in 0..self.kernel.0 {
                        for kx in 0..self.kernel.1 {
                            if let Some(pixel) = self.source(oy, ox, ky, kx) {
                                let tap = (ky * self.kernel.1 + kx) * cin;
                                let target = &mut image[pixel * cin..(pixel + 1) * cin];
                                for (t, g) in target.iter_mut().zip(&row[tap..tap + cin]) {
                                    *t += g;
                                }
                            }
                        }
                    }
                }
            }
        }
        dx
    }

    /// The outputs of `images` channels-last images `x`.
    pub(crate) fn forward(&self, x: &[f32], images: usize) -> Vec<f32> {
        let (rows, depth, cout) = (
            images * self.rows_per_image(),
            self.depth(),
            self.output.channels,
        );
        let gathered;
        let lhs = if self.is_pointwise() {
            x
        } else {
            gathered = self.im2col(x, images);
            &gathered
        };
        let mut y: Vec<f32> = Vec::with_capacity(rows * cout);
        for _ in 0..rows {
            y.extend_from_slice(&self.bias);
        }
        matmul(
            &mut y,
            cout,
            MatRef::row_major(lhs, rows, depth),
            MatRef::row_major(&self.weight, depth, cout),
            true,
        );
        if self.relu {
            relu_in_place(&mut y);
        }
        y
    }

    /// The gradient with respect to the input, given the gradient `dy` of the (pre-ReLU)
    /// output of `images` images.
    pub(crate) fn input_gradient(&self, dy: &[f32], images: usize) -> Vec<f32> {
        let (rows, depth, cout) = (
            images * self.rows_per_image(),
            self.depth(),
            self.output.channels,
        );
        let mut dcol = vec![0f32; rows * depth];
        matmul(
            &mut dcol,
            depth,
            MatRef::row_major(dy, rows, cout),
            MatRef::transposed(&self.weight, cout, depth),
            false,
        );
        if self.is_pointwise() {
            dcol
        } else {
            self.col2im(&dcol, images)
        }
    }
}

pub(crate) fn relu_in_place(values: &mut [f32]) {
    for v in values {
        *v = v.max(0.0);
    }
}
