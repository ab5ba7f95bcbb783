//! A convolution whose backward pass computes the input gradient only.
//!
//! candle's backward for `conv2d` always computes the kernel gradient too (a second convolution
//! as large as the forward one), even when the kernel is a constant. Attacks only need
//! ∂loss/∂input, so on CPU, for constant weights, gauntlet computes the convolution on a detached
//! input and attaches the input gradient to the result with a pass-through custom op whose
//! backward is candle's own input-gradient formula (a transposed convolution). Training, where
//! the weights are variables, keeps candle's full backward.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};

/// Passes the convolution output through and routes the gradient to the convolution's input.
struct InputGradientOnly {
    weight: Tensor,
    padding: usize,
    stride: usize,
    dilation: usize,
}

fn contiguous<T: Copy>(values: &[T], layout: &Layout) -> candle_core::Result<Vec<T>> {
    match layout.contiguous_offsets() {
        Some((start, end)) => values
            .get(start..end)
            .map(<[T]>::to_vec)
            .ok_or_else(|| candle_core::Error::Msg("convolution output out of bounds".into())),
        None => Err(candle_core::Error::Msg(
            "convolution output is not contiguous".into(),
        )),
    }
}

impl CustomOp2 for InputGradientOnly {
    fn name(&self) -> &'static str {
        "conv2d-input-gradient-only"
    }

    /// Returns the second argument (the convolution output) unchanged.
    fn cpu_fwd(
        &self,
        _input: &CpuStorage,
        _input_layout: &Layout,
        output: &CpuStorage,
        output_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let shape = output_layout.shape().clone();
        let storage = match output {
            CpuStorage::F32(values) => CpuStorage::F32(contiguous(values, output_layout)?),
            CpuStorage::F64(values) => CpuStorage::F64(contiguous(values, output_layout)?),
            _ => {
                return Err(candle_core::Error::Msg(
                    "conv2d-input-gradient-only supports f32 and f64".into(),
                ))
            }
        };
        Ok((storage, shape))
    }

    fn bwd(
        &self,
        input: &Tensor,
        _output: &Tensor,
        _result: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // The transposed convolution crops `padding` rows at both ends; output padding gives
        // back the input rows past the last full stride that windows still read. candle takes
        // one output padding for both dimensions (its own conv2d backward uses the height's,
        // and fails when the width needs another): take the larger and cut the other
        // dimension back to the input's size (the extra rows lie in the padding).
        let (_, _, height, width) = input.dims4()?;
        let (_, _, grad_height, grad_width) = grad.dims4()?;
        let (kernel_height, kernel_width) = (self.weight.dim(2)?, self.weight.dim(3)?);
        let output_padding = |size: usize, grad_size: usize, kernel: usize| {
            let covered = ((grad_size - 1) * self.stride + self.dilation * (kernel - 1) + 1)
                .saturating_sub(2 * self.padding);
            size.saturating_sub(covered)
        };
        let out_padding = output_padding(height, grad_height, kernel_height).max(output_padding(
            width,
            grad_width,
            kernel_width,
        ));
        let grad_input = grad
            .conv_transpose2d(
                &self.weight,
                self.padding,
                out_padding,
                self.stride,
                self.dilation,
            )?
            .narrow(2, 0, height)?
            .narrow(3, 0, width)?;
        Ok((Some(grad_input), None))
    }
}

/// Whether the input-gradient-only path applies: CPU, one group, constant weights, an input
/// that carries a gradient, f32/f64.
pub(crate) fn applies(x: &Tensor, weight: &Tensor, groups: usize) -> bool {
    groups == 1
        && x.device().is_cpu()
        && x.track_op()
        && !weight.track_op()
        && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// `conv2d(x, weight)` whose backward computes only ∂/∂x. Call only where [`applies`] holds.
pub(crate) fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    padding: usize,
    stride: usize,
    dilation: usize,
) -> candle_core::Result<Tensor> {
    let output = x.detach().conv2d(weight, padding, stride, dilation, 1)?;
    x.apply_op2(
        &output,
        InputGradientOnly {
            weight: weight.clone(),
            padding,
            stride,
            dilation,
        },
    )
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn random(shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor {
        let count: usize = shape.iter().product();
        let values: Vec<f64> = (0..count).map(|_| rng.random_range(-1.0..1.0)).collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    /// ∂(Σ conv(x)·r)/∂x through candle's full conv2d backward and through the
    /// input-gradient-only path agree, on odd sizes, stride, padding and dilation.
    #[test]
    fn input_gradient_matches_candles_full_backward() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for &(size, kernel, padding, stride, dilation) in &[
            (7, 3, 1, 1, 1),
            (9, 3, 0, 2, 1),
            (11, 5, 2, 2, 1),
            (10, 3, 2, 1, 2),
            (8, 1, 0, 1, 1),
        ] {
            let x = random(&[2, 3, size, size], &mut rng);
            let weight = random(&[4, 3, kernel, kernel], &mut rng);
            let mut gradients = Vec::new();
            for fast in [false, true] {
                let var = Var::from_tensor(&x).unwrap();
                assert!(applies(var.as_tensor(), &weight, 1));
                let y = if fast {
                    conv2d(var.as_tensor(), &weight, padding, stride, dilation).unwrap()
                } else {
                    var.as_tensor()
                        .conv2d(&weight, padding, stride, dilation, 1)
                        .unwrap()
                };
                let probe = random(y.dims(), &mut ChaCha8Rng::seed_from_u64(1));
                let grads = (y * probe).unwrap().sum_all().unwrap().backward().unwrap();
                let g = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap();
                gradients.push(g.to_vec1::<f64>().unwrap());
            }
            for (a, b) in gradients[0].iter().zip(&gradients[1]) {
                assert!((a - b).abs() <= 1e-12 * a.abs().max(1.0), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn variables_as_weights_keep_the_full_backward() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let x = Var::from_tensor(&random(&[1, 2, 5, 5], &mut rng)).unwrap();
        let weight = Var::from_tensor(&random(&[2, 2, 3, 3], &mut rng)).unwrap();
        assert!(!applies(x.as_tensor(), weight.as_tensor(), 1));
        assert!(!applies(
            &x.as_tensor().detach(),
            &weight.as_tensor().detach(),
            1
        ));
        assert!(!applies(x.as_tensor(), &weight.as_tensor().detach(), 2));
    }
}
