//! Convolution and fully connected layers: candle's `conv2d` and `matmul` have correct
//! input gradients (stride, padding, dilation, groups, odd sizes; see `candle-notes.md`).

use candle_core::Tensor;

use super::TensorRole;
use crate::ModelError;

/// `nn.Conv2d`: weight `(out, in/groups, kh, kw)`, optional bias `(out)`.
#[derive(Debug, Clone)]
pub(crate) struct Conv2d {
    pub(crate) weight: Tensor,
    pub(crate) bias: Option<Tensor>,
    pub(crate) stride: usize,
    pub(crate) padding: usize,
    pub(crate) dilation: usize,
    pub(crate) groups: usize,
}

impl Conv2d {
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let y = if super::conv_input_gradient::applies(x, &self.weight, self.groups) {
            super::conv_input_gradient::conv2d(
                x,
                &self.weight,
                self.padding,
                self.stride,
                self.dilation,
            )?
        } else {
            x.conv2d(
                &self.weight,
                self.padding,
                self.stride,
                self.dilation,
                self.groups,
            )?
        };
        match &self.bias {
            Some(bias) => Ok(y.broadcast_add(&bias.reshape((1, (), 1, 1))?)?),
            None => Ok(y),
        }
    }

    pub(crate) fn tensors(&self) -> Vec<(&'static str, TensorRole, &Tensor)> {
        weight_and_bias(&self.weight, self.bias.as_ref())
    }

    pub(crate) fn tensors_mut(&mut self) -> Vec<(&'static str, TensorRole, &mut Tensor)> {
        weight_and_bias_mut(&mut self.weight, self.bias.as_mut())
    }
}

/// `nn.Linear`: `y = x·Wᵀ + b` with weight `(out, in)`, optional bias `(out)`.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    pub(crate) weight: Tensor,
    pub(crate) bias: Option<Tensor>,
}

impl Linear {
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let y = x.matmul(&self.weight.t()?)?;
        match &self.bias {
            Some(bias) => Ok(y.broadcast_add(bias)?),
            None => Ok(y),
        }
    }

    pub(crate) fn tensors(&self) -> Vec<(&'static str, TensorRole, &Tensor)> {
        weight_and_bias(&self.weight, self.bias.as_ref())
    }

    pub(crate) fn tensors_mut(&mut self) -> Vec<(&'static str, TensorRole, &mut Tensor)> {
        weight_and_bias_mut(&mut self.weight, self.bias.as_mut())
    }
}

fn weight_and_bias<'a>(
    weight: &'a Tensor,
    bias: Option<&'a Tensor>,
) -> Vec<(&'static str, TensorRole, &'a Tensor)> {
    let mut tensors = vec![("weight", TensorRole::Parameter, weight)];
    if let Some(bias) = bias {
        tensors.push(("bias", TensorRole::Parameter, bias));
    }
    tensors
}

fn weight_and_bias_mut<'a>(
    weight: &'a mut Tensor,
    bias: Option<&'a mut Tensor>,
) -> Vec<(&'static str, TensorRole, &'a mut Tensor)> {
    let mut tensors = vec![("weight", TensorRole::Parameter, weight)];
    if let Some(bias) = bias {
        tensors.push(("bias", TensorRole::Parameter, bias));
    }
    tensors
}
