//! gauntlet's native CPU path for a frozen [`crate::Network`]: forward pass and input
//! gradient without candle's autograd.
//!
//! An attack calls forward + input-gradient thousands of times on the same constant weights.
//! candle's generic path pays for a graph per call, a kernel gradient nobody asked for, a
//! transposed convolution with a slow CPU kernel and broadcast ops for batch norm. Here the
//! network is compiled once into a [`Plan`]:
//!
//! * layout is channel-major over a group of images (`(channel, image, row, column)`), so a
//!   convolution is one matrix multiply of the weights with the im2col rows of the whole
//!   group (`gemm`, the crate candle uses, with its AVX-512/AVX2 kernels, vectorised along
//!   the group's pixels; for "same" stride-1 kernels one multiply per kernel row over shifted
//!   planes, a third of im2col's copying), and its input gradient is the forward pass of the
//!   flipped kernel (stride 1) or one multiply by the transposed weights followed by col2im
//!   (`conv.rs`);
//! * eval-mode batch norm is folded into the preceding convolution or linear layer, and a
//!   following ReLU is fused into it;
//! * max pooling keeps the forward pass's argmax for the backward pass (`pool.rs`);
//! * the batch is split into small groups of images processed independently on rayon's pool
//!   (a sample's loss depends on that sample only), each group forward and backward while its
//!   activations are still in cache, with buffers recycled per thread (`scratch.rs`);
//! * the loss (cross-entropy or CW margin) and its gradient with respect to the logits are
//!   computed in closed form;
//! * the penultimate features (the final linear layer's input) are the plan run up to its
//!   last top-level linear op ([`Plan::features`]).
//!
//! A broken internal invariant (tape underflow, a buffer of the wrong length, an argmax index
//! outside its input) is a [`ModelError::Internal`], never a silently zero or partial result.
//! In builds with debug assertions, every buffer handed out by `scratch::buffer` is filled
//! with NaN first, so an output value the kernels forget to write shows up in the tests.
//!
//! The plan is used on CPU for f32 networks whose weights are constants (not training
//! variables) and whose layers it covers (all but GELU and grouped convolutions); everything
//! else runs on candle. Its logits and input gradients are checked against candle's path (itself
//! checked against finite differences) in `models/tests/it/native.rs`; benches/NOTES.md records
//! how each piece was measured.

/// Returns [`ModelError::Internal`] with the formatted message unless `$holds`.
macro_rules! ensure {
    ($holds:expr, $($message:tt)+) => {
        if !($holds) {
            return Err($crate::ModelError::internal(format!($($message)+)));
        }
    };
}

mod conv;
mod gemm;
mod ops;
mod pool;
mod scratch;

use rayon::prelude::*;

use crate::layers::{Layer, Node};
use crate::spec::ActivationKind;
use crate::{Loss, ModelError};
use ops::{run_backward, run_forward, Activation, Linear, Op, Tape};

/// Per-image shape; a feature vector is a `features`-channel `1 × 1` image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dims {
    pub(crate) height: usize,
    pub(crate) width: usize,
    pub(crate) channels: usize,
}

impl Dims {
    pub(crate) fn len(&self) -> usize {
        self.height * self.width * self.channels
    }
}

/// Along one axis of a window sweep: the outputs `lo..hi` whose tap at `offset` (kernel index
/// × dilation) reads inside the input, i.e. `o·stride + offset − padding ∈ [0, size)`, and the
/// input index output `lo` reads (meaningless when `lo == hi`: then every output reads padding).
pub(crate) fn outputs_inside(
    size: usize,
    out_size: usize,
    stride: usize,
    padding: usize,
    offset: usize,
) -> (usize, usize, usize) {
    let lo = padding
        .saturating_sub(offset)
        .div_ceil(stride)
        .min(out_size);
    let hi = (size + padding)
        .saturating_sub(offset)
        .div_ceil(stride)
        .clamp(lo, out_size);
    let first = (lo * stride + offset).saturating_sub(padding);
    (lo, hi, first)
}

/// Why a network runs on candle instead of the native path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unsupported(pub(crate) String);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A network compiled for the native CPU path.
#[derive(Debug)]
pub(crate) struct Plan {
    input: Dims,
    classes: usize,
    ops: Vec<Op>,
    images_per_task: usize,
    /// The index in `ops` of the last top-level linear op and its number of inputs (the
    /// penultimate features), if there is one.
    penultimate: Option<(usize, usize)>,
}

/// The native path's results for a batch, as flat row-major buffers.
pub(crate) struct LossAndGradient {
    pub(crate) loss: Vec<f32>,
    /// Same layout as the inputs (`(batch, C, H, W)` or `(batch, features)`).
    pub(crate) gradient: Vec<f32>,
    pub(crate) logits: Vec<f32>,
}

/// Host copy of an f32 tensor's values (the caller checked the dtype and the device).
fn host_values(tensor: &candle_core::Tensor) -> Result<Vec<f32>, Unsupported> {
    if tensor.track_op() {
        return Err(Unsupported("the weights are training variables".into()));
    }
    tensor
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| Unsupported(format!("cannot read a weight tensor: {e}")))
}

impl Plan {
    /// Compiles `nodes` for inputs of shape `input_shape` (`[C, H, W]` or `[features]`), with
    /// the per-channel input normalisation `(x − mean) / std` if given.
    pub(crate) fn compile(
        nodes: &[Node],
        input_shape: &[usize],
        normalisation: Option<(Vec<f32>, Vec<f32>)>,
        classes: usize,
    ) -> Result<Self, Unsupported> {
        let input = match *input_shape {
            [channels, height, width] => Dims {
                height,
                width,
                channels,
            },
            [features] => Dims {
                height: 1,
                width: 1,
                channels: features,
            },
            _ => {
                return Err(Unsupported(format!(
                    "input shape {input_shape:?} (neither [C, H, W] nor [features])"
                )))
            }
        };
        let mut ops = Vec::new();
        if let Some((mean, std)) = normalisation {
            let scale: Vec<f32> = std.iter().map(|s| 1.0 / s).collect();
            let shift = mean.iter().zip(&std).map(|(m, s)| -m / s).collect();
            ops.push(Op::Affine { scale, shift });
        }
        let mut dims = input;
        compile_nodes(nodes, &mut dims, &mut ops)?;
        finish(&mut ops);
        if dims.len() != classes || dims.height * dims.width != 1 {
            return Err(Unsupported(format!(
                "the network's output is {dims:?}, not {classes} logits"
            )));
        }
        // One image per group for images the size of MNIST/CIFAR: its activations and im2col
        // rows stay in the core's L2 cache, which outweighs gemm's efficiency on wider
        // matrices (measured: ResNet-20 fwd+bwd 1040 img/s with one image, 1000 with two,
        // 860 with four). Small inputs (feature vectors) are grouped up to 16.
        let pixels = input.height * input.width;
        let images_per_task = (1024 / pixels.max(1)).clamp(1, 16);
        let penultimate = ops.iter().enumerate().rev().find_map(|(at, op)| match op {
            Op::Linear(linear) => Some((at, linear.inputs)),
            _ => None,
        });
        Ok(Self {
            input,
            classes,
            ops,
            images_per_task,
            penultimate,
        })
    }

    /// The number of samples in `inputs`, which must hold whole samples.
    fn batch_of(&self, inputs: &[f32]) -> Result<usize, ModelError> {
        let per_sample = self.input.len();
        ensure!(
            per_sample > 0 && inputs.len().is_multiple_of(per_sample),
            "the native path got {} input values, not a whole number of samples of {per_sample}",
            inputs.len()
        );
        Ok(inputs.len() / per_sample)
    }

    /// Logits `(batch, classes)` for `inputs` laid out as the model's inputs.
    pub(crate) fn forward(&self, inputs: &[f32]) -> Result<Vec<f32>, ModelError> {
        self.forward_through(inputs, self.ops.len(), self.classes)
    }

    /// The number of penultimate features (the inputs of the last top-level linear op), if
    /// the plan has such an op.
    pub(crate) fn penultimate_width(&self) -> Option<usize> {
        self.penultimate.map(|(_, width)| width)
    }

    /// The penultimate features `(batch, d)` of `inputs`: the plan run up to (not including)
    /// its last top-level linear op. An error if the plan has none.
    pub(crate) fn features(&self, inputs: &[f32]) -> Result<Vec<f32>, ModelError> {
        let Some((at, width)) = self.penultimate else {
            return Err(ModelError::internal(
                "penultimate features asked of a native plan without a linear op",
            ));
        };
        self.forward_through(inputs, at, width)
    }

    /// The outputs `(batch, width)` of the first `ops` ops, which must end in feature vectors
    /// of `width` values.
    fn forward_through(
        &self,
        inputs: &[f32],
        ops: usize,
        width: usize,
    ) -> Result<Vec<f32>, ModelError> {
        let per_sample = self.input.len();
        let batch = self.batch_of(inputs)?;
        let mut out = vec![0f32; batch * width];
        if batch == 0 || width == 0 {
            return Ok(out);
        }
        let group = self.images_per_task;
        out.par_chunks_mut(group * width)
            .zip(inputs.par_chunks(group * per_sample))
            .try_for_each(|(out, inputs)| {
                let images = out.len() / width;
                let x = self.to_channel_major(inputs, images);
                let by_feature = run_forward(&self.ops[..ops], x, images, None)?;
                rows_by_image(&by_feature, out, images, width)?;
                scratch::recycle(by_feature);
                Ok::<(), ModelError>(())
            })?;
        Ok(out)
    }

    /// Per-sample loss, the gradient of the summed loss with respect to `inputs`, and the
    /// logits. `labels` were checked by the caller (one per sample, below `classes`).
    pub(crate) fn loss_and_input_gradient(
        &self,
        inputs: &[f32],
        labels: &[u32],
        loss: Loss,
    ) -> Result<LossAndGradient, ModelError> {
        let per_sample = self.input.len();
        let batch = labels.len();
        ensure!(
            self.batch_of(inputs)? == batch,
            "the native path got {} input values for {batch} labels",
            inputs.len()
        );
        let mut result = LossAndGradient {
            loss: vec![0f32; batch],
            gradient: vec![0f32; batch * per_sample],
            logits: vec![0f32; batch * self.classes],
        };
        let group = self.images_per_task;
        result
            .logits
            .par_chunks_mut(group * self.classes)
            .zip(result.loss.par_chunks_mut(group))
            .zip(result.gradient.par_chunks_mut(group * per_sample))
            .zip(inputs.par_chunks(group * per_sample))
            .zip(labels.par_chunks(group))
            .try_for_each(|((((logits, losses), gradient), inputs), labels)| {
                let images = labels.len();
                let mut tape = Tape::default();
                let x = self.to_channel_major(inputs, images);
                let by_class = run_forward(&self.ops, x, images, Some(&mut tape))?;
                rows_by_image(&by_class, logits, images, self.classes)?;
                let mut dlogits = vec![0f32; logits.len()];
                for (((z, y), l), d) in logits
                    .chunks_exact(self.classes)
                    .zip(labels)
                    .zip(losses.iter_mut())
                    .zip(dlogits.chunks_exact_mut(self.classes))
                {
                    *l = loss_and_logit_gradient(loss, z, *y as usize, d);
                }
                // The logit gradient in the plan's layout: one row per class.
                let mut dy = by_class;
                for image in 0..images {
                    for class in 0..self.classes {
                        dy[class * images + image] = dlogits[image * self.classes + class];
                    }
                }
                let dx = run_backward(&self.ops, dy, images, &mut tape)?;
                tape.finish()?;
                ensure!(
                    dx.len() == gradient.len(),
                    "the native backward pass gave {} input-gradient values for {} inputs",
                    dx.len(),
                    gradient.len()
                );
                self.to_input_layout(&dx, gradient, images);
                scratch::recycle(dx);
                Ok::<(), ModelError>(())
            })?;
        Ok(result)
    }

    /// A group's inputs `(image, C, H·W)` in the channel-major layout `(C, image, H·W)`.
    fn to_channel_major(&self, inputs: &[f32], images: usize) -> Vec<f32> {
        let (channels, plane) = (self.input.channels, self.input.height * self.input.width);
        let mut out = scratch::buffer(inputs.len());
        for image in 0..images {
            for c in 0..channels {
                let from = (image * channels + c) * plane;
                let to = (c * images + image) * plane;
                out[to..to + plane].copy_from_slice(&inputs[from..from + plane]);
            }
        }
        out
    }

    /// The inverse of [`Plan::to_channel_major`], into `out`.
    fn to_input_layout(&self, values: &[f32], out: &mut [f32], images: usize) {
        let (channels, plane) = (self.input.channels, self.input.height * self.input.width);
        for image in 0..images {
            for c in 0..channels {
                let to = (image * channels + c) * plane;
                let from = (c * images + image) * plane;
                out[to..to + plane].copy_from_slice(&values[from..from + plane]);
            }
        }
    }
}

/// `(width, image)` values of a group (logits or features in the plan's layout) as
/// `(image, width)` rows, into `out`.
fn rows_by_image(
    by_row: &[f32],
    out: &mut [f32],
    images: usize,
    width: usize,
) -> Result<(), ModelError> {
    ensure!(
        by_row.len() == images * width && out.len() == images * width,
        "the native forward pass gave {} values for {images} images of {width} (room for {})",
        by_row.len(),
        out.len()
    );
    for image in 0..images {
        for row in 0..width {
            out[image * width + row] = by_row[row * images + image];
        }
    }
    Ok(())
}

/// One sample's loss; writes ∂loss/∂logits into `gradient`.
fn loss_and_logit_gradient(loss: Loss, logits: &[f32], label: usize, gradient: &mut [f32]) -> f32 {
    match loss {
        Loss::CrossEntropy => {
            // Written to keep relative accuracy on confidently classified samples, where the
            // loss and the label's gradient `p_y − 1` are tiny: both come from the sum of the
            // *other* classes' probabilities instead of from `1 − p_y` (which cancels).
            let (top, max) =
                logits
                    .iter()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |(at, best), (j, &z)| {
                        if z > best {
                            (j, z)
                        } else {
                            (at, best)
                        }
                    });
            let rest: f32 = logits
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != top)
                .map(|(_, z)| (z - max).exp())
                .sum();
            let log_sum = max + rest.ln_1p();
            for (g, z) in gradient.iter_mut().zip(logits) {
                *g = (z - log_sum).exp();
            }
            gradient[label] = if label == top {
                // p_y − 1 = −Σ_{j≠y} p_j.
                -gradient
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != label)
                    .map(|(_, p)| p)
                    .sum::<f32>()
            } else {
                gradient[label] - 1.0
            };
            if label == top {
                rest.ln_1p()
            } else {
                log_sum - logits[label]
            }
        }
        Loss::CwMargin => {
            // The first largest other logit, as an argmax would pick it (and PyTorch's max
            // backward); candle's max backward gives +1 to every tied
            // logit, so exact ties are the one place the two paths' CW gradients differ. A NaN
            // logit wins (as in PyTorch's max), so NaN logits give a NaN loss rather than the
            // single-class answer below.
            let (runner_up, best) = logits.iter().enumerate().filter(|&(j, _)| j != label).fold(
                (label, f32::NEG_INFINITY),
                |(at, best), (j, &z)| {
                    if z > best || (z.is_nan() && !best.is_nan()) {
                        (j, z)
                    } else {
                        (at, best)
                    }
                },
            );
            gradient.fill(0.0);
            if runner_up == label {
                // A single class: no other logit. As on candle's path, the "other" side is the
                // constant f32::MIN / 4 that stands in for the excluded true class.
                gradient[label] = -1.0;
                return f32::MIN / 4.0 - logits[label];
            }
            gradient[runner_up] = 1.0;
            gradient[label] = -1.0;
            best - logits[label]
        }
        Loss::Dlr | Loss::DlrTargeted => {
            crate::dlr::loss_and_logit_gradient(loss, logits, label, gradient)
        }
    }
}

fn compile_nodes(nodes: &[Node], dims: &mut Dims, ops: &mut Vec<Op>) -> Result<(), Unsupported> {
    // Only fuse into ops compiled from this list (a residual block's body starts afresh).
    let first_own = ops.len();
    for node in nodes {
        let own_last = if ops.len() > first_own {
            ops.last_mut()
        } else {
            None
        };
        match &node.layer {
            Layer::Conv2d(conv) => {
                let op = compile_conv(conv, dims)?;
                ops.push(op);
            }
            Layer::Linear(linear) => {
                let (outputs, inputs) = linear
                    .weight
                    .dims2()
                    .map_err(|e| Unsupported(e.to_string()))?;
                if dims.height * dims.width != 1 || dims.channels != inputs {
                    return Err(Unsupported(format!(
                        "linear layer `{}` on an input of {dims:?}",
                        node.prefix
                    )));
                }
                let bias = match &linear.bias {
                    Some(bias) => host_values(bias)?,
                    None => vec![0.0; outputs],
                };
                ops.push(Op::Linear(Linear {
                    inputs,
                    outputs,
                    weight: host_values(&linear.weight)?,
                    bias,
                    relu: false,
                }));
                dims.channels = outputs;
            }
            Layer::BatchNorm(norm) => {
                let weight = host_values(&norm.weight)?;
                let bias = host_values(&norm.bias)?;
                let mean = host_values(&norm.running_mean)?;
                let var = host_values(&norm.running_var)?;
                let scale: Vec<f32> = weight
                    .iter()
                    .zip(&var)
                    .map(|(w, v)| w / (v + norm.eps as f32).sqrt())
                    .collect();
                let shift: Vec<f32> = bias
                    .iter()
                    .zip(&mean)
                    .zip(&scale)
                    .map(|((b, m), s)| b - m * s)
                    .collect();
                if scale.len() != dims.channels {
                    return Err(Unsupported(format!(
                        "batch norm `{}` over {} channels on {dims:?}",
                        node.prefix,
                        scale.len()
                    )));
                }
                let folded = own_last.is_some_and(|op| op.try_fold_affine(&scale, &shift));
                if !folded {
                    ops.push(Op::Affine { scale, shift });
                }
            }
            Layer::Activation(kind) => {
                let activation = match kind {
                    ActivationKind::Relu => Activation::Relu,
                    ActivationKind::Tanh => Activation::Tanh,
                    ActivationKind::Sigmoid => Activation::Sigmoid,
                    ActivationKind::Gelu => return Err(Unsupported("GELU activation".into())),
                };
                let fused =
                    activation == Activation::Relu && own_last.is_some_and(|op| op.try_fuse_relu());
                if !fused {
                    ops.push(Op::Activation(activation));
                }
            }
            Layer::MaxPool2d(pool) => {
                let geometry = *pool.geometry();
                *dims = pooled(dims, geometry.out_height, geometry.out_width);
                ops.push(Op::MaxPool(pool::MaxPool::new(geometry)?));
            }
            Layer::AvgPool2d(pool) => {
                let geometry = *pool.geometry();
                *dims = pooled(dims, geometry.out_height, geometry.out_width);
                ops.push(Op::AvgPool(pool::AvgPool::new(geometry)));
            }
            Layer::AdaptiveAvgPool2d(pool) => {
                let (out_height, out_width) = pool.output_size();
                let output = pooled(dims, out_height, out_width);
                ops.push(Op::AdaptiveAvgPool(pool::AdaptiveAvgPool::new(
                    *dims, output,
                )));
                *dims = output;
            }
            Layer::Dropout { .. } => {}
            Layer::Flatten => {
                if dims.height * dims.width != 1 {
                    ops.push(Op::Flatten { input: *dims });
                }
                *dims = Dims {
                    height: 1,
                    width: 1,
                    channels: dims.len(),
                };
            }
            Layer::Residual(block) => {
                let mut body = Vec::new();
                let mut body_dims = *dims;
                compile_nodes(&block.body, &mut body_dims, &mut body)?;
                let mut shortcut = Vec::new();
                let mut shortcut_dims = *dims;
                compile_nodes(&block.shortcut, &mut shortcut_dims, &mut shortcut)?;
                if body_dims != shortcut_dims {
                    return Err(Unsupported(format!(
                        "residual block `{}` adds {body_dims:?} to {shortcut_dims:?}",
                        node.prefix
                    )));
                }
                let activation = match block.activation {
                    None => None,
                    Some(ActivationKind::Relu) => Some(Activation::Relu),
                    Some(ActivationKind::Tanh) => Some(Activation::Tanh),
                    Some(ActivationKind::Sigmoid) => Some(Activation::Sigmoid),
                    Some(ActivationKind::Gelu) => {
                        return Err(Unsupported("GELU activation".into()))
                    }
                };
                ops.push(Op::Residual {
                    body,
                    shortcut,
                    activation,
                });
                *dims = body_dims;
            }
        }
    }
    Ok(())
}

/// Last touches once every fold and fusion is done.
fn finish(ops: &mut [Op]) {
    for op in ops {
        match op {
            Op::Conv(conv) => conv.finish(),
            Op::Residual { body, shortcut, .. } => {
                finish(body);
                finish(shortcut);
            }
            _ => {}
        }
    }
}

fn pooled(dims: &Dims, height: usize, width: usize) -> Dims {
    Dims {
        height,
        width,
        channels: dims.channels,
    }
}

fn compile_conv(conv: &crate::layers::Conv2d, dims: &mut Dims) -> Result<Op, Unsupported> {
    if conv.groups != 1 {
        return Err(Unsupported("grouped convolution".into()));
    }
    let (cout, cin, kh, kw) = conv
        .weight
        .dims4()
        .map_err(|e| Unsupported(e.to_string()))?;
    if cin != dims.channels {
        return Err(Unsupported(format!(
            "a convolution of {cin} channels on {dims:?}"
        )));
    }
    let out_size = |size: usize, kernel: usize| -> Result<usize, Unsupported> {
        let span = conv.dilation * (kernel - 1) + 1;
        (size + 2 * conv.padding)
            .checked_sub(span)
            .map(|room| room / conv.stride + 1)
            .ok_or_else(|| Unsupported("convolution window larger than its input".into()))
    };
    let output = Dims {
        height: out_size(dims.height, kh)?,
        width: out_size(dims.width, kw)?,
        channels: cout,
    };
    let bias = conv.bias.as_ref().map(host_values).transpose()?;
    let op = Op::Conv(conv::Conv::new(
        *dims,
        output,
        [kh, kw, conv.stride, conv.padding, conv.dilation],
        host_values(&conv.weight)?,
        bias,
    ));
    *dims = output;
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_logits_give_a_nan_cw_margin_not_the_single_class_answer() {
        let mut gradient = [0f32; 3];
        let loss = loss_and_logit_gradient(Loss::CwMargin, &[1.0, f32::NAN, 0.5], 0, &mut gradient);
        assert!(loss.is_nan(), "{loss}");
        assert_eq!(gradient, [-1.0, 1.0, 0.0]);
        // One class: the documented stand-in for the missing other logit.
        let mut gradient = [0f32; 1];
        let loss = loss_and_logit_gradient(Loss::CwMargin, &[2.0], 0, &mut gradient);
        assert_eq!(loss, f32::MIN / 4.0 - 2.0);
        assert_eq!(gradient, [-1.0]);
        // Cross-entropy propagates a NaN logit by itself.
        let mut gradient = [0f32; 3];
        let loss =
            loss_and_logit_gradient(Loss::CrossEntropy, &[1.0, f32::NAN, 0.5], 0, &mut gradient);
        assert!(loss.is_nan(), "{loss}");
    }
}
