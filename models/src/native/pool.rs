//! Pooling in channels-last layout, with the same window rules as `layers/pool.rs`.
//!
//! Max pooling records, for every output value, the input index of its window's first maximum
//! (PyTorch's tie rule; a NaN wins, as in PyTorch), so the backward pass is a scatter of the
//! output gradient through those indices instead of a second search.

use super::Dims;
use crate::spec::PoolGeometry;

/// The input pixels (row-major plane index) of the window of output `(oy, ox)`.
fn window(g: &PoolGeometry, oy: usize, ox: usize) -> impl Iterator<Item = usize> + '_ {
    (0..g.kernel.height).flat_map(move |ky| {
        (0..g.kernel.width).filter_map(move |kx| {
            let row =
                (oy * g.stride.height + ky * g.dilation.height).checked_sub(g.padding.height)?;
            let col = (ox * g.stride.width + kx * g.dilation.width).checked_sub(g.padding.width)?;
            (row < g.height && col < g.width).then(|| row * g.width + col)
        })
    })
}

/// `nn.MaxPool2d` (floor output size).
#[derive(Debug, Clone)]
pub(crate) struct MaxPool {
    pub(crate) geometry: PoolGeometry,
}

impl MaxPool {
    /// Pooled outputs of `images` images and, for each output value, the index into `x` of
    /// the input it came from.
    pub(crate) fn forward(&self, x: &[f32], images: usize) -> (Vec<f32>, Vec<u32>) {
        let g = &self.geometry;
        let c = g.channels;
        let (in_plane, out_plane) = (g.height * g.width * c, g.out_height * g.out_width * c);
        let mut y = vec![f32::NEG_INFINITY; images * out_plane];
        let mut from = vec![u32::MAX; images * out_plane];
        for image in 0..images {
            let base = image * in_plane;
            for oy in 0..g.out_height {
                for ox in 0..g.out_width {
                    let out = image * out_plane + (oy * g.out_width + ox) * c;
                    let (best, best_at) = (&mut y[out..out + c], &mut from[out..out + c]);
                    for pixel in window(g, oy, ox) {
                        let start = base + pixel * c;
                        for ((b, at), (offset, &v)) in best
                            .iter_mut()
                            .zip(best_at.iter_mut())
                            .zip(x[start..start + c].iter().enumerate())
                        {
                            if *at == u32::MAX || v > *b || (v.is_nan() && !b.is_nan()) {
                                *b = v;
                                *at = (start + offset) as u32;
                            }
                        }
                    }
                }
            }
        }
        (y, from)
    }

    pub(crate) fn input_gradient(&self, dy: &[f32], from: &[u32], images: usize) -> Vec<f32> {
        let g = &self.geometry;
        let mut dx = vec![0f32; images * g.height * g.width * g.channels];
        for (&d, &at) in dy.iter().zip(from) {
            if let Some(slot) = dx.get_mut(at as usize) {
                *slot += d;
            }
        }
        dx
    }
}

/// `nn.AvgPool2d` with `count_include_pad=True`: every window divides by the kernel area.
#[derive(Debug, Clone)]
pub(crate) struct AvgPool {
    pub(crate) geometry: PoolGeometry,
}

impl AvgPool {
    fn scale(&self) -> f32 {
        1.0 / (self.geometry.kernel.height * self.geometry.kernel.width) as f32
    }

    pub(crate) fn forward(&self, x: &[f32], images: usize) -> Vec<f32> {
        let g = &self.geometry;
        let c = g.channels;
        let (in_plane, out_plane) = (g.height * g.width * c, g.out_height * g.out_width * c);
        let scale = self.scale();
        let mut y = vec![0f32; images * out_plane];
        for image in 0..images {
            for oy in 0..g.out_height {
                for ox in 0..g.out_width {
                    let out = image * out_plane + (oy * g.out_width + ox) * c;
                    let sum = &mut y[out..out + c];
                    for pixel in window(g, oy, ox) {
                        let start = image * in_plane + pixel * c;
                        for (s, v) in sum.iter_mut().zip(&x[start..start + c]) {
                            *s += v;
                        }
                    }
                    sum.iter_mut().for_each(|s| *s *= scale);
                }
            }
        }
        y
    }

    pub(crate) fn input_gradient(&self, dy: &[f32], images: usize) -> Vec<f32> {
        let g = &self.geometry;
        let c = g.channels;
        let (in_plane, out_plane) = (g.height * g.width * c, g.out_height * g.out_width * c);
        let scale = self.scale();
        let mut dx = vec![0f32; images * in_plane];
        for image in 0..images {
            for oy in 0..g.out_height {
                for ox in 0..g.out_width {
                    let out = image * out_plane + (oy * g.out_width + ox) * c;
                    for pixel in window(g, oy, ox) {
                        let start = image * in_plane + pixel * c;
                        for (t, d) in dx[start..start + c].iter_mut().zip(&dy[out..out + c]) {
                            *t += d * scale;
                        }
                    }
                }
            }
        }
        dx
    }
}

/// `nn.AdaptiveAvgPool2d`: output cell `i` averages inputs `⌊i·in/out⌋ .. ⌈(i+1)·in/out⌉`.
#[derive(Debug, Clone)]
pub(crate) struct AdaptiveAvgPool {
    pub(crate) input: Dims,
    pub(crate) output: Dims,
}

fn adaptive_range(i: usize, input: usize, output: usize) -> std::ops::Range<usize> {
    (i * input / output)..((i + 1) * input).div_ceil(output)
}

impl AdaptiveAvgPool {
    /// Each output cell with its input pixels and `1 / window size`.
    fn cells(&self) -> impl Iterator<Item = (usize, Vec<usize>, f32)> + '_ {
        let (i, o) = (self.input, self.output);
        (0..o.height).flat_map(move |oy| {
            (0..o.width).map(move |ox| {
                let rows = adaptive_range(oy, i.height, o.height);
                let cols = adaptive_range(ox, i.width, o.width);
                let pixels: Vec<usize> = rows
                    .flat_map(|r| cols.clone().map(move |c| r * i.width + c))
                    .collect();
                let scale = 1.0 / pixels.len() as f32;
                (oy * o.width + ox, pixels, scale)
            })
        })
    }

    pub(crate) fn forward(&self, x: &[f32], images: usize) -> Vec<f32> {
        let c = self.input.channels;
        let (in_plane, out_plane) = (self.input.len(), self.output.len());
        let mut y = vec![0f32; images * out_plane];
        for (cell, pixels, scale) in self.cells() {
            for image in 0..images {
                let out = image * out_plane + cell * c;
                let sum = &mut y[out..out + c];
                for &pixel in &pixels {
                    let start = image * in_plane + pixel * c;
                    for (s, v) in sum.iter_mut().zip(&x[start..start + c]) {
                        *s += v;
                    }
                }
                sum.iter_mut().for_each(|s| *s *= scale);
            }
        }
        y
    }

    pub(crate) fn input_gradient(&self, dy: &[f32], images: usize) -> Vec<f32> {
        let c = self.input.channels;
        let (in_plane, out_plane) = (self.input.len(), self.output.len());
        let mut dx = vec![0f32; images * in_plane];
        for (cell, pixels, scale) in self.cells() {
            for image in 0..images {
                let out = image * out_plane + cell * c;
                for &pixel in &pixels {
                    let start = image * in_plane + pixel * c;
                    for (t, d) in dx[start..start + c].iter_mut().zip(&dy[out..out + c]) {
                        *t += d * scale;
                    }
                }
            }
        }
        dx
    }
}
