//! 2-D pooling with exact input gradients.
//!
//! candle 0.11's `max_pool2d` backward scales the gradient by 1/(window area) and goes wrong
//! in sign for odd sizes; its `avg_pool2d` backward is wrong for odd sizes and fails when
//! kernel ≠ stride (see `candle-notes.md`). These layers are built only from ops whose
//! backward is correct:
//!
//! * every window element is fetched with one `index_select` over a precomputed index table
//!   (backward: `index_add`), padding pointing at an extra sentinel column;
//! * max pooling picks the first maximum of each window with `argmax` (as PyTorch does) and
//!   takes it with `gather` (backward: `scatter_add`), so the whole gradient of an output goes
//!   to the one input that produced it;
//! * average pooling sums the window and divides by its area (`count_include_pad=True`);
//! * adaptive average pooling is a matmul with a constant pooling matrix.
//!
//! All three work on every device, since they use no host round trip.

use candle_core::{Device, Tensor};

use crate::spec::PoolGeometry;
use crate::ModelError;

/// The index table shared by max and average pooling.
#[derive(Debug, Clone)]
struct WindowTable {
    geometry: PoolGeometry,
    /// `out_height · out_width · window` plane indices, u32, grouped by output position.
    indices: Tensor,
    /// The same table shaped `(1, out positions, window area)`.
    indices_by_window: Tensor,
    /// Whether some window reaches into the padding, which then reads the sentinel column
    /// appended at plane index `height · width`.
    uses_padding: bool,
}

impl WindowTable {
    fn new(geometry: PoolGeometry, device: &Device) -> Result<Self, ModelError> {
        let g = geometry;
        // Every size was checked by the spec's cost walk; checked again here so that a
        // geometry built any other way is an error, never a wrapped index or a panic.
        let too_large = || {
            ModelError::invalid_spec(format!(
                "a pooling window table for a {}×{} input, {}×{} output and kernel {} is too large",
                g.height, g.width, g.out_height, g.out_width, g.kernel
            ))
        };
        let sentinel = g
            .height
            .checked_mul(g.width)
            .and_then(|plane| u32::try_from(plane).ok())
            .filter(|&plane| plane < u32::MAX)
            .ok_or_else(too_large)?;
        let len = [g.out_width, g.kernel.height, g.kernel.width]
            .iter()
            .try_fold(g.out_height, |acc, &size| acc.checked_mul(size))
            .ok_or_else(too_large)?;
        let mut indices: Vec<u32> = Vec::new();
        indices.try_reserve_exact(len).map_err(|_| too_large())?;
        let mut uses_padding = false;
        // Positions past `usize` cannot be inside the input: they are padding.
        let at = |out: usize, stride: usize, k: usize, dilation: usize, padding: usize| {
            out.checked_mul(stride)
                .zip(k.checked_mul(dilation))
                .and_then(|(a, b)| a.checked_add(b))
                .and_then(|position| position.checked_sub(padding))
        };
        for out_row in 0..g.out_height {
            for out_col in 0..g.out_width {
                for k_row in 0..g.kernel.height {
                    for k_col in 0..g.kernel.width {
                        let row = at(
                            out_row,
                            g.stride.height,
                            k_row,
                            g.dilation.height,
                            g.padding.height,
                        )
                        .filter(|&r| r < g.height);
                        let col = at(
                            out_col,
                            g.stride.width,
                            k_col,
                            g.dilation.width,
                            g.padding.width,
                        )
                        .filter(|&c| c < g.width);
                        match (row, col) {
                            // row · width + col < height · width = sentinel < u32::MAX.
                            (Some(row), Some(col)) => indices.push((row * g.width + col) as u32),
                            _ => {
                                uses_padding = true;
                                indices.push(sentinel);
                            }
                        }
                    }
                }
            }
        }
        let len = indices.len();
        let indices = Tensor::from_vec(indices, len, device)?;
        let indices_by_window =
            indices.reshape((1, g.out_height * g.out_width, window_area(&g)))?;
        Ok(Self {
            geometry,
            indices,
            indices_by_window,
            uses_padding,
        })
    }

    /// `x` as one row per `(sample, channel)` plane, `(batch · channels, height · width)`,
    /// plus a sentinel column holding `fill` when some window reaches into the padding.
    fn planes(&self, x: &Tensor, fill: f64) -> Result<Tensor, ModelError> {
        let g = &self.geometry;
        let rows = x.dim(0)? * g.channels;
        let planes = x.reshape((rows, g.height * g.width))?;
        if !self.uses_padding {
            return Ok(planes);
        }
        let sentinel = Tensor::ones((rows, 1), x.dtype(), x.device())?.affine(0.0, fill)?;
        Ok(Tensor::cat(&[&planes, &sentinel], 1)?)
    }

    /// All windows of `planes` as `(rows, out positions, window area)`.
    fn windows_of(&self, planes: &Tensor) -> Result<Tensor, ModelError> {
        let g = &self.geometry;
        let windows = planes.index_select(&self.indices, 1)?;
        Ok(windows.reshape((planes.dim(0)?, g.out_height * g.out_width, window_area(g)))?)
    }

    fn output_shape(&self, batch: usize) -> (usize, usize, usize, usize) {
        let g = &self.geometry;
        (batch, g.channels, g.out_height, g.out_width)
    }
}

fn window_area(g: &PoolGeometry) -> usize {
    g.kernel.height * g.kernel.width
}

/// `nn.MaxPool2d` with PyTorch's floor output size and first-maximum tie rule.
#[derive(Debug, Clone)]
pub(crate) struct MaxPool2d {
    table: WindowTable,
}

impl MaxPool2d {
    pub(crate) fn new(geometry: PoolGeometry, device: &Device) -> Result<Self, ModelError> {
        Ok(Self {
            table: WindowTable::new(geometry, device)?,
        })
    }

    pub(crate) fn geometry(&self) -> &PoolGeometry {
        &self.table.geometry
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        // Find each window's first maximum on a detached copy, then take those inputs with
        // one `gather` from the planes: the graph holds a single op whose backward
        // (`scatter_add`) routes each output's gradient to its argmax.
        let planes = self.table.planes(x, f64::NEG_INFINITY)?;
        let windows = self.table.windows_of(&planes.detach())?;
        let best = windows.argmax_keepdim(2)?;
        let rows = planes.dim(0)?;
        let positions = self
            .table
            .indices_by_window
            .broadcast_as(windows.dims())?
            .contiguous()?
            .gather(&best, 2)?
            .reshape((rows, ()))?;
        let pooled = planes.gather(&positions, 1)?;
        Ok(pooled.reshape(self.table.output_shape(x.dim(0)?))?)
    }
}

/// `nn.AvgPool2d` with floor output size and `count_include_pad=True` (PyTorch's defaults):
/// every window is divided by its full area, padding counted as zeros.
#[derive(Debug, Clone)]
pub(crate) struct AvgPool2d {
    table: WindowTable,
}

impl AvgPool2d {
    pub(crate) fn new(geometry: PoolGeometry, device: &Device) -> Result<Self, ModelError> {
        Ok(Self {
            table: WindowTable::new(geometry, device)?,
        })
    }

    pub(crate) fn geometry(&self) -> &PoolGeometry {
        &self.table.geometry
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let windows = self.table.windows_of(&self.table.planes(x, 0.0)?)?;
        let area = window_area(&self.table.geometry) as f64;
        let pooled = windows.sum(2)?.affine(1.0 / area, 0.0)?;
        Ok(pooled.reshape(self.table.output_shape(x.dim(0)?))?)
    }
}

/// `nn.AdaptiveAvgPool2d`: output cell `i` averages input rows
/// `⌊i·in/out⌋ .. ⌈(i+1)·in/out⌉` (and likewise for columns), PyTorch's window rule.
#[derive(Debug, Clone)]
pub(crate) struct AdaptiveAvgPool2d {
    channels: usize,
    out_height: usize,
    out_width: usize,
    /// `(height · width, out_height · out_width)`, f32: column `o` holds `1/|window o|` on
    /// the window's input positions.
    matrix: Tensor,
}

impl AdaptiveAvgPool2d {
    pub(crate) fn new(
        input: [usize; 3],
        out_height: usize,
        out_width: usize,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let [channels, height, width] = input;
        let too_large = || {
            ModelError::invalid_spec(format!(
                "an adaptive pooling matrix from {height}×{width} to {out_height}×{out_width} is too large"
            ))
        };
        let out_cells = out_height.checked_mul(out_width).ok_or_else(too_large)?;
        let len = height
            .checked_mul(width)
            .and_then(|plane| plane.checked_mul(out_cells))
            .ok_or_else(too_large)?;
        let mut matrix: Vec<f32> = Vec::new();
        matrix.try_reserve_exact(len).map_err(|_| too_large())?;
        matrix.resize(len, 0.0);
        let rows_of = adaptive_windows(height, out_height).ok_or_else(too_large)?;
        let cols_of = adaptive_windows(width, out_width).ok_or_else(too_large)?;
        for (out_row, rows) in rows_of.iter().enumerate() {
            for (out_col, cols) in cols_of.iter().enumerate() {
                let weight = 1.0 / (rows.len() * cols.len()) as f32;
                let out_index = out_row * out_width + out_col;
                for row in rows.clone() {
                    for col in cols.clone() {
                        matrix[(row * width + col) * out_cells + out_index] = weight;
                    }
                }
            }
        }
        Ok(Self {
            channels,
            out_height,
            out_width,
            matrix: Tensor::from_vec(matrix, (height * width, out_cells), device)?,
        })
    }

    pub(crate) fn output_size(&self) -> (usize, usize) {
        (self.out_height, self.out_width)
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let (batch, _, height, width) = x.dims4()?;
        let planes = x.reshape((batch * self.channels, height * width))?;
        let matrix = self.matrix.to_dtype(x.dtype())?;
        let pooled = planes.matmul(&matrix)?;
        Ok(pooled.reshape((batch, self.channels, self.out_height, self.out_width))?)
    }
}

/// PyTorch's adaptive pooling windows: `start = ⌊i·in/out⌋`, `end = ⌈(i+1)·in/out⌉`; `None`
/// when `out · in` overflows.
fn adaptive_windows(input: usize, output: usize) -> Option<Vec<std::ops::Range<usize>>> {
    output.checked_mul(input)?;
    Some(
        (0..output)
            .map(|i| {
                // (i + 1) · input ≤ output · input, which did not overflow.
                let start = i * input / output;
                let end = ((i + 1) * input).div_ceil(output);
                start..end
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Pair;
    use candle_core::{DType, Var};

    fn geometry(input: [usize; 3], kernel: usize, stride: usize, padding: usize) -> PoolGeometry {
        PoolGeometry::new(
            &input,
            Pair::square(kernel),
            Pair::square(stride),
            Pair::square(padding),
            Pair::square(1),
        )
        .unwrap()
    }

    #[test]
    fn max_pool_gradient_goes_wholly_to_the_maximum() {
        // sum(maxpool([[1,2],[3,4]])) = 4, so d/dx = [0, 0, 0, 1] (candle's own op gives 0.25).
        let x = Var::new(&[[[[1.0f32, 2.0], [3.0, 4.0]]]], &Device::Cpu).unwrap();
        let pool = MaxPool2d::new(geometry([1, 2, 2], 2, 2, 0), &Device::Cpu).unwrap();
        let y = pool.forward(x.as_tensor()).unwrap();
        assert_eq!(
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![4.0]
        );
        let grads = y.sum_all().unwrap().backward().unwrap();
        let grad = grads.get(x.as_tensor()).unwrap();
        assert_eq!(
            grad.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![0.0, 0.0, 0.0, 1.0]
        );
    }

    #[test]
    fn max_pool_ties_go_to_the_first_maximum_like_pytorch() {
        // All four equal: PyTorch's argmax (and so its gradient) is the first in row-major order.
        let x = Var::new(&[[[[5.0f32, 5.0], [5.0, 5.0]]]], &Device::Cpu).unwrap();
        let pool = MaxPool2d::new(geometry([1, 2, 2], 2, 2, 0), &Device::Cpu).unwrap();
        let grads = pool
            .forward(x.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let grad = grads.get(x.as_tensor()).unwrap();
        assert_eq!(
            grad.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![1.0, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn max_pool_with_padding_and_overlap_matches_a_direct_loop() {
        // 1×5×5 input, kernel 3, stride 2, padding 1 → 3×3 output; overlapping windows.
        let values: Vec<f32> = (0..25).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let x = Tensor::from_vec(values.clone(), (1, 1, 5, 5), &Device::Cpu).unwrap();
        let pool = MaxPool2d::new(geometry([1, 5, 5], 3, 2, 1), &Device::Cpu).unwrap();
        let y: Vec<f32> = pool
            .forward(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut expected = Vec::new();
        for oh in 0..3i64 {
            for ow in 0..3i64 {
                let mut best = f32::NEG_INFINITY;
                for r in (2 * oh - 1)..(2 * oh + 2) {
                    for c in (2 * ow - 1)..(2 * ow + 2) {
                        if (0..5).contains(&r) && (0..5).contains(&c) {
                            best = best.max(values[(r * 5 + c) as usize]);
                        }
                    }
                }
                expected.push(best);
            }
        }
        assert_eq!(y, expected);
    }

    #[test]
    fn avg_pool_counts_padding_in_the_divisor() {
        // 1×2×2 ones, kernel 2, stride 1, padding 1 → 3×3; the corner window holds one 1 of 4.
        let x = Tensor::ones((1, 1, 2, 2), DType::F32, &Device::Cpu).unwrap();
        let pool = AvgPool2d::new(geometry([1, 2, 2], 2, 1, 1), &Device::Cpu).unwrap();
        let y: Vec<f32> = pool
            .forward(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(y, vec![0.25, 0.5, 0.25, 0.5, 1.0, 0.5, 0.25, 0.5, 0.25]);
    }

    #[test]
    fn adaptive_windows_follow_pytorch() {
        // in 5 → out 3: [0,2), [1,4), [3,5).
        assert_eq!(adaptive_windows(5, 3).unwrap(), vec![0..2, 1..4, 3..5]);
        assert_eq!(adaptive_windows(2, 3).unwrap(), vec![0..1, 0..2, 1..2]);
        assert_eq!(adaptive_windows(1 << 33, 1 << 32), None);
    }

    #[test]
    fn tables_too_large_to_build_are_errors_not_panics() {
        // 2^32 × 2^32 output cells wrap `usize` to 0 in unchecked arithmetic.
        let huge = AdaptiveAvgPool2d::new([1, 2, 2], 1 << 32, 1 << 32, &Device::Cpu);
        assert!(
            matches!(huge, Err(ModelError::InvalidSpec { .. })),
            "{huge:?}"
        );
        // A plane of 2^32 positions cannot be indexed by u32 (the sentinel would wrap).
        let geometry = PoolGeometry {
            channels: 1,
            height: 1 << 16,
            width: 1 << 16,
            kernel: Pair::square(1),
            stride: Pair::square(1),
            padding: Pair::square(0),
            dilation: Pair::square(1),
            out_height: 1,
            out_width: 1,
        };
        let table = MaxPool2d::new(geometry, &Device::Cpu);
        assert!(
            matches!(table, Err(ModelError::InvalidSpec { .. })),
            "{table:?}"
        );
        // A window table whose length overflows.
        let geometry = PoolGeometry {
            kernel: Pair::square(1 << 32),
            out_height: 1 << 32,
            height: 4,
            width: 4,
            ..geometry
        };
        let table = AvgPool2d::new(geometry, &Device::Cpu);
        assert!(
            matches!(table, Err(ModelError::InvalidSpec { .. })),
            "{table:?}"
        );
    }

    #[test]
    fn adaptive_pool_to_one_is_the_mean() {
        let values: Vec<f32> = (0..2 * 3 * 3).map(|i| i as f32).collect();
        let x = Tensor::from_vec(values, (1, 2, 3, 3), &Device::Cpu).unwrap();
        let pool = AdaptiveAvgPool2d::new([2, 3, 3], 1, 1, &Device::Cpu).unwrap();
        let y: Vec<f32> = pool
            .forward(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(y, vec![4.0, 13.0]);
    }
}
