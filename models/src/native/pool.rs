//! Pooling in the native channel-major layout, with the same window rules as `layers/pool.rs`.
//! Every `(channel, image)` plane is contiguous and pooled the same way.
//!
//! Max pooling records, for every output value, the input index of its window's first maximum
//! (PyTorch's tie rule; a NaN wins, as in PyTorch), so the backward pass is a scatter of the
//! output gradient through those indices instead of a second search.

use super::scratch;
use super::{outputs_inside, Dims, Unsupported};
use crate::spec::PoolGeometry;
use crate::ModelError;

/// Values per image read and written by a pooling of geometry `g`.
fn geometry_sizes(g: &PoolGeometry) -> (usize, usize) {
    (
        g.channels * g.height * g.width,
        g.channels * g.out_height * g.out_width,
    )
}

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

/// For each output index along one axis, the first input index its window reads inside the
/// input (where the search for the window's maximum starts). A window that reads only
/// padding has no maximum (PyTorch's padding rule rules it out); such a geometry is refused
/// rather than given some made-up source.
fn first_taps(
    outputs: usize,
    inputs: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Result<Vec<usize>, Unsupported> {
    (0..outputs)
        .map(|o| {
            (0..kernel)
                .find_map(|k| {
                    (o * stride + k * dilation)
                        .checked_sub(padding)
                        .filter(|&i| i < inputs)
                })
                .ok_or_else(|| {
                    Unsupported(format!(
                        "max pooling window {o} reads only padding (kernel {kernel}, stride \
                         {stride}, padding {padding}, dilation {dilation} over {inputs})"
                    ))
                })
        })
        .collect()
}

/// `nn.MaxPool2d` (floor output size).
#[derive(Debug, Clone)]
pub(crate) struct MaxPool {
    geometry: PoolGeometry,
    /// Per output row and column, the first input row and column of its window.
    first_rows: Vec<usize>,
    first_cols: Vec<usize>,
    /// Per kernel column: the output columns `lo..hi` it reads inside the input, and the
    /// input column `lo` reads (see `outputs_inside`).
    kernel_cols: Vec<(usize, usize, usize)>,
}

impl MaxPool {
    pub(crate) fn new(geometry: PoolGeometry) -> Result<Self, Unsupported> {
        let g = &geometry;
        Ok(Self {
            first_rows: first_taps(
                g.out_height,
                g.height,
                g.kernel.height,
                g.stride.height,
                g.padding.height,
                g.dilation.height,
            )?,
            first_cols: first_taps(
                g.out_width,
                g.width,
                g.kernel.width,
                g.stride.width,
                g.padding.width,
                g.dilation.width,
            )?,
            kernel_cols: (0..g.kernel.width)
                .map(|kx| {
                    outputs_inside(
                        g.width,
                        g.out_width,
                        g.stride.width,
                        g.padding.width,
                        kx * g.dilation.width,
                    )
                })
                .collect(),
            geometry,
        })
    }

    /// Values per image read and written.
    pub(crate) fn sizes(&self) -> (usize, usize) {
        geometry_sizes(&self.geometry)
    }

    /// Pooled outputs of `images` images and, for each output value, the index into `x` of
    /// the input it came from.
    pub(crate) fn forward(&self, x: &[f32], images: usize) -> (Vec<f32>, Vec<u32>) {
        let g = &self.geometry;
        let (in_plane, out_plane) = (g.height * g.width, g.out_height * g.out_width);
        let planes = g.channels * images;
        let mut y = scratch::buffer(planes * out_plane);
        let mut from = vec![0u32; planes * out_plane];
        if self.is_plain_two_by_two() {
            self.forward_two_by_two(x, planes, &mut y, &mut from);
            return (y, from);
        }
        for plane in 0..planes {
            let base = plane * in_plane;
            let input = &x[base..base + in_plane];
            for (oy, &first_row) in self.first_rows.iter().enumerate() {
                let out = plane * out_plane + oy * g.out_width;
                let best = &mut y[out..out + g.out_width];
                let best_at = &mut from[out..out + g.out_width];
                best.fill(f32::NEG_INFINITY);
                for (at, &first_col) in best_at.iter_mut().zip(&self.first_cols) {
                    *at = (first_row * g.width + first_col) as u32;
                }
                // Taps in window order (row by row), each over the whole output row: the
                // outputs are independent, so this loop has no carried dependency.
                for ky in 0..g.kernel.height {
                    let Some(iy) = (oy * g.stride.height + ky * g.dilation.height)
                        .checked_sub(g.padding.height)
                        .filter(|&r| r < g.height)
                    else {
                        continue;
                    };
                    let row = iy * g.width;
                    // A kernel column that reads only padding has `lo == hi` and a `first`
                    // that may lie past the row.
                    for &(lo, hi, first) in self.kernel_cols.iter().filter(|(lo, hi, _)| lo < hi) {
                        let values = input[row + first..].iter().step_by(g.stride.width);
                        let indices = (row + first..).step_by(g.stride.width);
                        for (((b, a), &v), index) in best[lo..hi]
                            .iter_mut()
                            .zip(&mut best_at[lo..hi])
                            .zip(values)
                            .zip(indices)
                        {
                            // PyTorch's rule: a larger value or a NaN takes over. `|`, not `||`: no branch to
                            // mispredict on the zeros and positives a ReLU leaves.
                            let takes_over = (v > *b) | v.is_nan();
                            *b = if takes_over { v } else { *b };
                            *a = if takes_over { index as u32 } else { *a };
                        }
                    }
                }
                for a in best_at.iter_mut() {
                    *a += base as u32;
                }
            }
        }
        (y, from)
    }

    /// 2×2 windows, stride 2, no padding or dilation: the pooling of nearly every CNN.
    fn is_plain_two_by_two(&self) -> bool {
        let g = &self.geometry;
        [g.kernel, g.stride]
            .iter()
            .all(|p| p.height == 2 && p.width == 2)
            && g.padding.height == 0
            && g.padding.width == 0
            && g.dilation.height == 1
            && g.dilation.width == 1
    }

    /// The 2×2 case without tap tables, written for the compiler to vectorise: the first
    /// maximum of each pair in the upper and in the lower row, then of the two pairs.
    /// PyTorch's rule (a larger value or a NaN takes over, in window order) gives the same
    /// winner in this tree as in a sequential scan: ties keep the earlier tap, and the last
    /// NaN wins either way. Selects, not branches: a ReLU's output is a random mix of zeros
    /// and positives, on which branches mispredict.
    fn forward_two_by_two(&self, x: &[f32], planes: usize, y: &mut [f32], from: &mut [u32]) {
        let g = &self.geometry;
        let (width, in_plane) = (g.width, g.height * g.width);
        let out_width = g.out_width;
        let mut pairs = vec![(0f32, 0u32); 2 * out_width];
        let mut out = 0;
        for plane in 0..planes {
            let base = plane * in_plane;
            for oy in 0..g.out_height {
                let top = base + 2 * oy * width;
                let (upper_pairs, lower_pairs) = pairs.split_at_mut(out_width);
                for (row, winners) in [(top, &mut *upper_pairs), (top + width, &mut *lower_pairs)] {
                    let values = &x[row..row + 2 * out_width];
                    for (ox, (winner, pair)) in
                        winners.iter_mut().zip(values.chunks_exact(2)).enumerate()
                    {
                        let takes_over = (pair[1] > pair[0]) | pair[1].is_nan();
                        let value = if takes_over { pair[1] } else { pair[0] };
                        let index = (row + 2 * ox) as u32 + u32::from(takes_over);
                        *winner = (value, index);
                    }
                }
                let best = &mut y[out..out + out_width];
                let best_at = &mut from[out..out + out_width];
                for (((b, a), &(upper, upper_at)), &(lower, lower_at)) in best
                    .iter_mut()
                    .zip(best_at.iter_mut())
                    .zip(upper_pairs.iter())
                    .zip(lower_pairs.iter())
                {
                    let takes_over = (lower > upper) | lower.is_nan();
                    *b = if takes_over { lower } else { upper };
                    *a = if takes_over { lower_at } else { upper_at };
                }
                out += out_width;
            }
        }
    }

    /// Scatters `dy` onto the inputs `from` (the forward pass's argmax of each output).
    pub(crate) fn input_gradient(
        &self,
        dy: &[f32],
        from: &[u32],
        images: usize,
    ) -> Result<Vec<f32>, ModelError> {
        let len = images * self.sizes().0;
        ensure!(
            from.len() == dy.len(),
            "max pooling got {} output gradients but {} argmax indices",
            dy.len(),
            from.len()
        );
        let mut dx = scratch::zeroed(len);
        for (&d, &at) in dy.iter().zip(from) {
            let Some(slot) = dx.get_mut(at as usize) else {
                return Err(ModelError::internal(format!(
                    "max pooling's argmax index {at} lies outside its input of {len} values"
                )));
            };
            *slot += d;
        }
        Ok(dx)
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

    /// Values per image read and written.
    pub(crate) fn sizes(&self) -> (usize, usize) {
        geometry_sizes(&self.geometry)
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

    /// Values per image read and written.
    pub(crate) fn sizes(&self) -> (usize, usize) {
        (self.input.len(), self.input.channels * self.windows.len())
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

/// `planes` planes of `x` pooled over `windows`; the caller (`Op::forward`) checked that `x`
/// holds exactly `planes` planes of `in_plane` values.
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

/// The input gradient of [`average_forward`]; the caller (`Op::backward`) checked that `dy`
/// holds exactly `planes` planes of `windows.len()` values.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_max_pool_window_that_reads_only_padding_is_refused_at_compile_time() {
        assert_eq!(first_taps(3, 5, 3, 2, 1, 1), Ok(vec![0, 1, 3]));
        // Output 1 of a 1-wide input reads index 1: outside.
        let error = first_taps(2, 1, 1, 1, 0, 1).unwrap_err();
        assert!(error.0.contains("window 1 reads only padding"), "{error:?}");
    }
}
