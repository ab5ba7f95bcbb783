//! Pooling in the native channel-major layout, with the same window rules as `layers/pool.rs`.
//! Every `(channel, image)` plane is contiguous and pooled the same way.
//!
//! Max pooling records, for every output value, the input index of its window's first maximum
//! (PyTorch's tie rule; a NaN wins, as in PyTorch), so the backward pass is a scatter of the
//! output gradient through those indices instead of a second search.

use super::scratch;
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

/// Every window of a plane, in output order, as plane indices (computed once per plan).
fn window_table(g: &PoolGeometry) -> Vec<Vec<u32>> {
    (0..g.out_height)
        .flat_map(|oy| (0..g.out_width).map(move |ox| (oy, ox)))
        .map(|(oy, ox)| window(g, oy, ox).map(|p| p as u32).collect())
        .collect()
}

/// `nn.MaxPool2d` (floor output size).
#[derive(Debug, Clone)]
pub(crate) struct MaxPool {
    geometry: PoolGeometry,
    windows: Vec<Vec<u32>>,
}

impl MaxPool {
    pub(crate) fn new(geometry: PoolGeometry) -> Self {
        Self {
            windows: window_table(&geometry),
            geometry,
        }
    }

    /// Pooled outputs of `images` images and, for each output value, the index into `x` of
    /// the input it came from.
    pub(crate) fn forward(&self, x: &[f32], images: usize) -> (Vec<f32>, Vec<u32>) {
        let g = &self.geometry;
        let (in_plane, out_plane) = (g.height * g.width, g.out_height * g.out_width);
        let planes = g.channels * images;
        let mut y = scratch::buffer(planes * out_plane);
        let mut from = vec![0u32; planes * out_plane];
        for plane in 0..planes {
            let base = plane * in_plane;
            let input = &x[base..base + in_plane];
            let outputs = plane * out_plane..(plane + 1) * out_plane;
            for ((best, at), window) in y[outputs.clone()]
                .iter_mut()
                .zip(&mut from[outputs])
                .zip(&self.windows)
            {
                let mut best_value = f32::NEG_INFINITY;
                let mut best_index = window.first().copied().unwrap_or(0);
                for &p in window {
                    let v = input[p as usize];
                    if v > best_value || (v.is_nan() && !best_value.is_nan()) {
                        best_value = v;
                        best_index = p;
                    }
                }
                *best = best_value;
                *at = base as u32 + best_index;
            }
        }
        (y, from)
    }

    pub(crate) fn input_gradient(&self, dy: &[f32], from: &[u32], images: usize) -> Vec<f32> {
        let g = &self.geometry;
        let mut dx = scratch::zeroed(images * g.channels * g.height * g.width);
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
    geometry: PoolGeometry,
    windows: Vec<Vec<u32>>,
}

impl AvgPool {
    pub(crate) fn new(geometry: PoolGeometry) -> Self {
        Self {
            windows: window_table(&geometry),
            geometry,
        }
    }

    fn scale(&self) -> f32 {
        1.0 / (self.geometry.kernel.height * self.geometry.kernel.width) as f32
    }

    pub(crate) fn forward(&self, x: &[f32], images: usize) -> Vec<f32> {
        let g = &self.geometry;
        average_forward(
            x,
            g.channels * images,
            g.height * g.width,
            &self.windows,
            |_| self.scale(),
        )
    }

    pub(crate) fn input_gradient(&self, dy: &[f32], images: usize) -> Vec<f32> {
        let g = &self.geometry;
        average_backward(
            dy,
            g.channels * images,
            g.height * g.width,
            &self.windows,
            |_| self.scale(),
        )
    }
}

/// `nn.AdaptiveAvgPool2d`: output cell `i` averages inputs `⌊i·in/out⌋ .. ⌈(i+1)·in/out⌉`.
#[derive(Debug, Clone)]
pub(crate) struct AdaptiveAvgPool {
    input: Dims,
    windows: Vec<Vec<u32>>,
}

fn adaptive_range(i: usize, input: usize, output: usize) -> std::ops::Range<usize> {
    (i * input / output)..((i + 1) * input).div_ceil(output)
}

impl AdaptiveAvgPool {
    pub(crate) fn new(input: Dims, output: Dims) -> Self {
        let windows = (0..output.height)
            .flat_map(|oy| (0..output.width).map(move |ox| (oy, ox)))
            .map(|(oy, ox)| {
                let cols = adaptive_range(ox, input.width, output.width);
                adaptive_range(oy, input.height, output.height)
                    .flat_map(|r| cols.clone().map(move |c| (r * input.width + c) as u32))
                    .collect()
            })
            .collect();
        Self { input, windows }
    }

    fn planes(&self, images: usize) -> usize {
        self.input.channels * images
    }

    pub(crate) fn forward(&self, x: &[f32], images: usize) -> Vec<f32> {
        let in_plane = self.input.height * self.input.width;
        average_forward(x, self.planes(images), in_plane, &self.windows, |w| {
            1.0 / w.len() as f32
        })
    }

    pub(crate) fn input_gradient(&self, dy: &[f32], images: usize) -> Vec<f32> {
        let in_plane = self.input.height * self.input.width;
        average_backward(dy, self.planes(images), in_plane, &self.windows, |w| {
            1.0 / w.len() as f32
        })
    }
}

fn average_forward(
    x: &[f32],
    planes: usize,
    in_plane: usize,
    windows: &[Vec<u32>],
    scale: impl Fn(&[u32]) -> f32,
) -> Vec<f32> {
    let out_plane = windows.len();
    let mut y = scratch::buffer(planes * out_plane);
    for (input, output) in x
        .chunks_exact(in_plane)
        .zip(y.chunks_exact_mut(out_plane))
        .take(planes)
    {
        for (out, window) in output.iter_mut().zip(windows) {
            let sum: f32 = window.iter().map(|&p| input[p as usize]).sum();
            *out = sum * scale(window);
        }
    }
    y
}

fn average_backward(
    dy: &[f32],
    planes: usize,
    in_plane: usize,
    windows: &[Vec<u32>],
    scale: impl Fn(&[u32]) -> f32,
) -> Vec<f32> {
    let out_plane = windows.len();
    let mut dx = scratch::zeroed(planes * in_plane);
    for (input, output) in dx
        .chunks_exact_mut(in_plane)
        .zip(dy.chunks_exact(out_plane))
        .take(planes)
    {
        for (&d, window) in output.iter().zip(windows) {
            let share = d * scale(window);
            for &p in window {
                input[p as usize] += share;
            }
        }
    }
    dx
}
