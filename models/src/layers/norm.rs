//! Batch normalisation built from broadcast ops, so its input gradient is exact in both modes.

use candle_core::Tensor;

use super::TensorRole;
use crate::ModelError;

/// `nn.BatchNorm1d` / `nn.BatchNorm2d` with affine parameters and running statistics.
///
/// Eval mode: `(x − running_mean) / √(running_var + eps) · weight + bias`.
/// Train mode: normalises with the batch's biased variance and updates the running
/// statistics with `momentum` and the unbiased variance, as PyTorch does.
#[derive(Debug, Clone)]
pub(crate) struct BatchNorm {
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
    pub(crate) running_mean: Tensor,
    pub(crate) running_var: Tensor,
    pub(crate) eps: f64,
    pub(crate) momentum: f64,
    /// PyTorch's `num_batches_tracked`, kept so a saved file loads strictly in PyTorch.
    pub(crate) batches_tracked: i64,
}

impl BatchNorm {
    /// `[1, C, 1, …]` for an input of rank `rank`, to broadcast per-channel values.
    fn channel_shape(&self, rank: usize) -> Result<Vec<usize>, ModelError> {
        let mut shape = vec![1; rank];
        shape[1] = self.weight.dim(0)?;
        Ok(shape)
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let shape = self.channel_shape(x.rank())?;
        let inv_std = (&self.running_var + self.eps)?.sqrt()?.recip()?;
        let scale = (&self.weight * &inv_std)?;
        let shift = (&self.bias - (&self.running_mean * &scale)?)?;
        Ok(x.broadcast_mul(&scale.reshape(shape.as_slice())?)?
            .broadcast_add(&shift.reshape(shape.as_slice())?)?)
    }

    pub(crate) fn forward_train(&mut self, x: &Tensor) -> Result<Tensor, ModelError> {
        let shape = self.channel_shape(x.rank())?;
        let reduced: Vec<usize> = (0..x.rank()).filter(|&d| d != 1).collect();
        let count: usize = reduced.iter().map(|&d| x.dims()[d]).product();
        if count < 2 {
            return Err(ModelError::TrainingData {
                reason: format!(
                    "batch norm needs more than one value per channel in training, got input shape {:?}",
                    x.dims()
                ),
            });
        }
        let mean = x.mean_keepdim(reduced.as_slice())?;
        let centered = x.broadcast_sub(&mean)?;
        let variance = centered.sqr()?.mean_keepdim(reduced.as_slice())?;
        let normalised = centered.broadcast_div(&(&variance + self.eps)?.sqrt()?)?;
        let output = normalised
            .broadcast_mul(&self.weight.reshape(shape.as_slice())?)?
            .broadcast_add(&self.bias.reshape(shape.as_slice())?)?;
        self.update_running_stats(&mean, &variance, count)?;
        Ok(output)
    }

    fn update_running_stats(
        &mut self,
        mean: &Tensor,
        variance: &Tensor,
        count: usize,
    ) -> Result<(), ModelError> {
        let m = self.momentum;
        let batch_mean = mean.detach().flatten_all()?;
        let unbiased = variance
            .detach()
            .flatten_all()?
            .affine(count as f64 / (count - 1) as f64, 0.0)?;
        self.running_mean =
            (self.running_mean.affine(1.0 - m, 0.0)? + batch_mean.affine(m, 0.0)?)?;
        self.running_var = (self.running_var.affine(1.0 - m, 0.0)? + unbiased.affine(m, 0.0)?)?;
        self.batches_tracked += 1;
        Ok(())
    }

    pub(crate) fn tensors(&self) -> Vec<(&'static str, TensorRole, &Tensor)> {
        vec![
            ("weight", TensorRole::Parameter, &self.weight),
            ("bias", TensorRole::Parameter, &self.bias),
            ("running_mean", TensorRole::Buffer, &self.running_mean),
            ("running_var", TensorRole::Buffer, &self.running_var),
        ]
    }

    pub(crate) fn tensors_mut(&mut self) -> Vec<(&'static str, TensorRole, &mut Tensor)> {
        vec![
            ("weight", TensorRole::Parameter, &mut self.weight),
            ("bias", TensorRole::Parameter, &mut self.bias),
            ("running_mean", TensorRole::Buffer, &mut self.running_mean),
            ("running_var", TensorRole::Buffer, &mut self.running_var),
        ]
    }
}
