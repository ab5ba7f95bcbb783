//! The operations of a compiled plan and their forward and input-gradient passes.
//!
//! Activations are `f32` buffers of a group of images in the channel-major layout of
//! `mod.rs`; a feature vector is a `1 × 1` image, so features are rows and images columns. The forward pass pushes what
//! the backward pass needs onto a [`Tape`] (stack order: the backward pass visits operations
//! in exactly the reverse order and pops).
//!
//! Every pass checks the invariants it relies on (buffer lengths, what the tape holds, pooling
//! indices) and returns [`ModelError::Internal`] when one fails: a missed ReLU mask or an
//! empty gradient would otherwise look like a plausible (robust-seeming) result.

use super::conv::{relu, relu_in_place, Conv};
use super::gemm::{matmul, MatMut, MatRef};
use super::pool::{AdaptiveAvgPool, AvgPool, MaxPool};
use super::scratch;
use super::Dims;
use crate::ModelError;

/// What one operation's backward pass needs from its forward pass.
#[derive(Debug)]
pub(crate) enum Saved {
    Nothing,
    /// The operation's output (ReLU mask, tanh and sigmoid derivatives).
    Output(Vec<f32>),
    /// Max pooling: the input index each output came from.
    Indices(Vec<u32>),
}

impl Saved {
    /// What is saved, for error messages.
    fn describe(&self) -> String {
        match self {
            Saved::Nothing => "nothing".to_string(),
            Saved::Output(y) => format!("an output of {} values", y.len()),
            Saved::Indices(from) => format!("{} max-pool indices", from.len()),
        }
    }
}

/// The forward pass's saved values, popped by the backward pass.
#[derive(Debug, Default)]
pub(crate) struct Tape(Vec<Saved>);

impl Tape {
    fn push(&mut self, saved: Saved) {
        self.0.push(saved);
    }

    /// The plan's forward and backward walks are mirror images, so the stack never runs dry;
    /// if it does, the walks disagree and every gradient after this point would be wrong.
    fn pop(&mut self) -> Result<Saved, ModelError> {
        self.0.pop().ok_or_else(|| {
            ModelError::internal(
                "tape underflow: the native backward pass popped more saved values than the \
                 forward pass pushed",
            )
        })
    }

    /// Checks that the backward pass used every value the forward pass saved.
    pub(crate) fn finish(self) -> Result<(), ModelError> {
        ensure!(
            self.0.is_empty(),
            "the native backward pass left {} saved values of the forward pass unused",
            self.0.len()
        );
        Ok(())
    }
}

/// `y = x·Wᵀ + b` on feature vectors, with an optional fused ReLU.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    pub(crate) inputs: usize,
    pub(crate) outputs: usize,
    /// PyTorch layout `(outputs, inputs)`, row-major.
    pub(crate) weight: Vec<f32>,
    pub(crate) bias: Vec<f32>,
    pub(crate) relu: bool,
}

impl Linear {
    fn fold_affine(&mut self, scale: &[f32], shift: &[f32]) {
        for ((row, s), (b, t)) in self
            .weight
            .chunks_exact_mut(self.inputs)
            .zip(scale)
            .zip(self.bias.iter_mut().zip(shift))
        {
            row.iter_mut().for_each(|w| *w *= s);
            *b = *b * s + t;
        }
    }

    /// `y = W·x + b` with the group's feature vectors as the columns of `x`.
    fn forward(&self, x: &[f32], images: usize) -> Vec<f32> {
        let mut y = scratch::buffer(self.outputs * images);
        matmul(
            MatMut::row_major(&mut y, images),
            MatRef::row_major(&self.weight, self.outputs, self.inputs),
            MatRef::row_major(x, self.inputs, images),
            false,
        );
        for (row, &bias) in y.chunks_exact_mut(images).zip(&self.bias) {
            if self.relu {
                row.iter_mut().for_each(|v| *v = relu(*v + bias));
            } else {
                row.iter_mut().for_each(|v| *v += bias);
            }
        }
        y
    }

    fn input_gradient(&self, dy: &[f32], images: usize) -> Vec<f32> {
        let mut dx = scratch::buffer(self.inputs * images);
        matmul(
            MatMut::row_major(&mut dx, images),
            MatRef::transposed(&self.weight, self.inputs, self.outputs),
            MatRef::row_major(dy, self.outputs, images),
            false,
        );
        dx
    }
}

/// Elementwise activations that are not fused into a preceding layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    Relu,
    Tanh,
    Sigmoid,
}

impl Activation {
    fn apply(self, values: &mut [f32]) {
        match self {
            Activation::Relu => relu_in_place(values),
            Activation::Tanh => values.iter_mut().for_each(|v| *v = v.tanh()),
            Activation::Sigmoid => values.iter_mut().for_each(|v| *v = sigmoid(*v)),
        }
    }

    /// Multiplies `dy` by the derivative, expressed through the activation's output `y`
    /// (of the same length; the caller checks).
    fn backward(self, dy: &mut [f32], y: &[f32]) {
        let pairs = dy.iter_mut().zip(y);
        match self {
            // A select, not a branch, so it vectorises.
            Activation::Relu => pairs.for_each(|(d, &y)| *d = if y > 0.0 { *d } else { 0.0 }),
            Activation::Tanh => pairs.for_each(|(d, &y)| *d *= 1.0 - y * y),
            Activation::Sigmoid => pairs.for_each(|(d, &y)| *d *= y * (1.0 - y)),
        }
    }
}

/// `1 / (1 + e^−x)`, written so that neither branch overflows.
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// One operation of a compiled plan.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Conv(Conv),
    Linear(Linear),
    /// Per-channel `x·scale + shift`: input normalisation, or a batch norm that could not be
    /// folded into a preceding layer.
    Affine {
        scale: Vec<f32>,
        shift: Vec<f32>,
    },
    Activation(Activation),
    MaxPool(MaxPool),
    AvgPool(AvgPool),
    AdaptiveAvgPool(AdaptiveAvgPool),
    /// Channels-last image to a feature vector in PyTorch's `(C, H, W)` order.
    Flatten {
        input: Dims,
    },
    /// `activation(body(x) + shortcut(x))`; an empty shortcut is the identity.
    Residual {
        body: Vec<Op>,
        shortcut: Vec<Op>,
        activation: Option<Activation>,
    },
}

impl Op {
    /// Folds a per-channel affine map applied to this op's output into the op, if it can.
    pub(crate) fn try_fold_affine(&mut self, scale: &[f32], shift: &[f32]) -> bool {
        match self {
            Op::Conv(conv) if !conv.relu => {
                conv.fold_affine(scale, shift);
                true
            }
            Op::Linear(linear) if !linear.relu => {
                linear.fold_affine(scale, shift);
                true
            }
            _ => false,
        }
    }

    /// Fuses a following ReLU into this op, if it can.
    pub(crate) fn try_fuse_relu(&mut self) -> bool {
        match self {
            Op::Conv(conv) if !conv.relu => {
                conv.relu = true;
                true
            }
            Op::Linear(linear) if !linear.relu => {
                linear.relu = true;
                true
            }
            _ => false,
        }
    }

    /// Values per image that this op reads and writes, where they are fixed (elementwise ops
    /// and residual blocks keep whatever length they get; their parts check themselves).
    fn sizes(&self) -> Option<(usize, usize)> {
        match self {
            Op::Conv(conv) => Some((conv.input.len(), conv.output.len())),
            Op::Linear(linear) => Some((linear.inputs, linear.outputs)),
            Op::MaxPool(pool) => Some(pool.sizes()),
            Op::AvgPool(pool) => Some(pool.sizes()),
            Op::AdaptiveAvgPool(pool) => Some(pool.sizes()),
            Op::Flatten { input } => Some((input.len(), input.len())),
            Op::Affine { .. } | Op::Activation(_) | Op::Residual { .. } => None,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Op::Conv(_) => "convolution",
            Op::Linear(_) => "linear layer",
            Op::Affine { .. } => "affine map",
            Op::Activation(_) => "activation",
            Op::MaxPool(_) => "max pooling",
            Op::AvgPool(_) => "average pooling",
            Op::AdaptiveAvgPool(_) => "adaptive average pooling",
            Op::Flatten { .. } => "flatten",
            Op::Residual { .. } => "residual block",
        }
    }

    /// Checks that a buffer entering (`side` 0) or leaving (`side` 1) this op of `images`
    /// images has the op's length.
    fn check_len(
        &self,
        what: &str,
        side: usize,
        len: usize,
        images: usize,
    ) -> Result<(), ModelError> {
        if let Some(sizes) = self.sizes() {
            let per_image = if side == 0 { sizes.0 } else { sizes.1 };
            ensure!(
                len == per_image * images,
                "the {} got {what} of {len} values for {images} images of {per_image}",
                self.name()
            );
        }
        Ok(())
    }

    fn forward(
        &self,
        x: Vec<f32>,
        images: usize,
        tape: Option<&mut Tape>,
    ) -> Result<Vec<f32>, ModelError> {
        self.check_len("an input", 0, x.len(), images)?;
        let y = self.forward_unchecked(x, images, tape)?;
        self.check_len("an output", 1, y.len(), images)?;
        Ok(y)
    }

    fn forward_unchecked(
        &self,
        mut x: Vec<f32>,
        images: usize,
        tape: Option<&mut Tape>,
    ) -> Result<Vec<f32>, ModelError> {
        let (y, saved) = match self {
            Op::Conv(conv) => {
                let y = conv.forward(&x, images);
                scratch::recycle(x);
                let saved = keep_output_if(conv.relu, &y, &tape);
                (y, saved)
            }
            Op::Linear(linear) => {
                let y = linear.forward(&x, images);
                scratch::recycle(x);
                let saved = keep_output_if(linear.relu, &y, &tape);
                (y, saved)
            }
            Op::Affine { scale, shift } => {
                let per_channel = affine_plane(x.len(), scale.len())?;
                for ((channel, s), t) in x.chunks_exact_mut(per_channel).zip(scale).zip(shift) {
                    channel.iter_mut().for_each(|v| *v = *v * s + t);
                }
                (x, Saved::Nothing)
            }
            Op::Activation(kind) => {
                kind.apply(&mut x);
                let saved = keep_output_if(true, &x, &tape);
                (x, saved)
            }
            Op::MaxPool(pool) => {
                let (y, from) = pool.forward(&x, images);
                scratch::recycle(x);
                let saved = if tape.is_some() {
                    Saved::Indices(from)
                } else {
                    Saved::Nothing
                };
                (y, saved)
            }
            Op::AvgPool(pool) => {
                let y = pool.forward(&x, images);
                scratch::recycle(x);
                (y, Saved::Nothing)
            }
            Op::AdaptiveAvgPool(pool) => {
                let y = pool.forward(&x, images);
                scratch::recycle(x);
                (y, Saved::Nothing)
            }
            Op::Flatten { input } => {
                let y = flatten(&x, *input, images, false);
                scratch::recycle(x);
                (y, Saved::Nothing)
            }
            Op::Residual {
                body,
                shortcut,
                activation,
            } => {
                let mut tape = tape;
                let mut x_copy = scratch::buffer(x.len());
                x_copy.copy_from_slice(&x);
                let mut sum = run_forward(body, x_copy, images, tape.as_deref_mut())?;
                let short = run_forward(shortcut, x, images, tape.as_deref_mut())?;
                ensure!(
                    sum.len() == short.len(),
                    "a residual block adds a body output of {} values to a shortcut output of {}",
                    sum.len(),
                    short.len()
                );
                sum.iter_mut().zip(&short).for_each(|(s, v)| *s += v);
                scratch::recycle(short);
                if let Some(kind) = activation {
                    kind.apply(&mut sum);
                }
                let saved = keep_output_if(activation.is_some(), &sum, &tape);
                if let Some(tape) = tape {
                    tape.push(saved);
                }
                return Ok(sum);
            }
        };
        if let Some(tape) = tape {
            tape.push(saved);
        }
        Ok(y)
    }

    fn backward(
        &self,
        dy: Vec<f32>,
        images: usize,
        tape: &mut Tape,
    ) -> Result<Vec<f32>, ModelError> {
        self.check_len("an output gradient", 1, dy.len(), images)?;
        let dx = self.backward_unchecked(dy, images, tape)?;
        self.check_len("an input gradient", 0, dx.len(), images)?;
        Ok(dx)
    }

    /// Multiplies `dy` by the derivative of the activation applied at the end of this op
    /// (`None`: there is none), through the output the forward pass saved.
    fn activation_backward(
        &self,
        activation: Option<Activation>,
        dy: &mut [f32],
        saved: &Saved,
    ) -> Result<(), ModelError> {
        match (activation, saved) {
            (Some(kind), Saved::Output(y)) if y.len() == dy.len() => {
                kind.backward(dy, y);
                Ok(())
            }
            (None, Saved::Nothing) => Ok(()),
            _ => Err(ModelError::internal(format!(
                "the {}'s backward pass for {} values found {} on the tape, expected {}",
                self.name(),
                dy.len(),
                saved.describe(),
                if activation.is_some() {
                    "its output"
                } else {
                    "nothing"
                }
            ))),
        }
    }

    fn backward_unchecked(
        &self,
        mut dy: Vec<f32>,
        images: usize,
        tape: &mut Tape,
    ) -> Result<Vec<f32>, ModelError> {
        let saved = tape.pop()?;
        let dx = match self {
            Op::Conv(conv) => {
                let relu = conv.relu.then_some(Activation::Relu);
                self.activation_backward(relu, &mut dy, &saved)?;
                let dx = conv.input_gradient(&dy, images);
                scratch::recycle(dy);
                dx
            }
            Op::Linear(linear) => {
                let relu = linear.relu.then_some(Activation::Relu);
                self.activation_backward(relu, &mut dy, &saved)?;
                let dx = linear.input_gradient(&dy, images);
                scratch::recycle(dy);
                dx
            }
            Op::Affine { scale, .. } => {
                self.activation_backward(None, &mut dy, &saved)?;
                let per_channel = affine_plane(dy.len(), scale.len())?;
                for (channel, s) in dy.chunks_exact_mut(per_channel).zip(scale) {
                    channel.iter_mut().for_each(|d| *d *= s);
                }
                dy
            }
            Op::Activation(kind) => {
                self.activation_backward(Some(*kind), &mut dy, &saved)?;
                dy
            }
            Op::MaxPool(pool) => {
                let Saved::Indices(from) = &saved else {
                    return Err(ModelError::internal(format!(
                        "the max pooling's backward pass found {} on the tape, expected its \
                         argmax indices",
                        saved.describe()
                    )));
                };
                let dx = pool.input_gradient(&dy, from, images)?;
                scratch::recycle(dy);
                dx
            }
            Op::AvgPool(pool) => {
                self.activation_backward(None, &mut dy, &saved)?;
                let dx = pool.input_gradient(&dy, images);
                scratch::recycle(dy);
                dx
            }
            Op::AdaptiveAvgPool(pool) => {
                self.activation_backward(None, &mut dy, &saved)?;
                let dx = pool.input_gradient(&dy, images);
                scratch::recycle(dy);
                dx
            }
            Op::Flatten { input } => {
                self.activation_backward(None, &mut dy, &saved)?;
                let dx = flatten(&dy, *input, images, true);
                scratch::recycle(dy);
                dx
            }
            Op::Residual {
                body,
                shortcut,
                activation,
            } => {
                self.activation_backward(*activation, &mut dy, &saved)?;
                let mut dy_copy = scratch::buffer(dy.len());
                dy_copy.copy_from_slice(&dy);
                let short = run_backward(shortcut, dy_copy, images, tape)?;
                let mut dx = run_backward(body, dy, images, tape)?;
                ensure!(
                    dx.len() == short.len(),
                    "a residual block adds a body input gradient of {} values to a shortcut \
                     input gradient of {}",
                    dx.len(),
                    short.len()
                );
                dx.iter_mut().zip(&short).for_each(|(d, s)| *d += s);
                scratch::recycle(short);
                dx
            }
        };
        if let Saved::Output(y) = saved {
            scratch::recycle(y);
        }
        Ok(dx)
    }
}

/// The length of one channel's values in an affine map's buffer of `len` values over
/// `channels` channels.
fn affine_plane(len: usize, channels: usize) -> Result<usize, ModelError> {
    ensure!(
        channels > 0 && len.is_multiple_of(channels),
        "an affine map over {channels} channels got {len} values"
    );
    Ok(len / channels)
}

fn keep_output_if(keep: bool, y: &[f32], tape: &Option<&mut Tape>) -> Saved {
    if keep && tape.is_some() {
        let mut copy = scratch::buffer(y.len());
        copy.copy_from_slice(y);
        Saved::Output(copy)
    } else {
        Saved::Nothing
    }
}

/// Channel-major `(C, image, H·W)` to one `(C·H·W)` feature column per image (PyTorch's
/// flatten order), or back when `inverse`.
fn flatten(x: &[f32], input: Dims, images: usize, inverse: bool) -> Vec<f32> {
    let plane = input.height * input.width;
    let mut out = scratch::buffer(x.len());
    for c in 0..input.channels {
        for image in 0..images {
            for p in 0..plane {
                let channel_major = (c * images + image) * plane + p;
                let feature_major = (c * plane + p) * images + image;
                if inverse {
                    out[channel_major] = x[feature_major];
                } else {
                    out[feature_major] = x[channel_major];
                }
            }
        }
    }
    out
}

/// Runs `ops` forward; with a tape, saves what [`run_backward`] needs.
pub(crate) fn run_forward(
    ops: &[Op],
    mut x: Vec<f32>,
    images: usize,
    mut tape: Option<&mut Tape>,
) -> Result<Vec<f32>, ModelError> {
    for op in ops {
        x = op.forward(x, images, tape.as_deref_mut())?;
    }
    Ok(x)
}

/// The input gradient of `ops` given the output gradient `dy`, popping the forward's tape.
pub(crate) fn run_backward(
    ops: &[Op],
    mut dy: Vec<f32>,
    images: usize,
    tape: &mut Tape,
) -> Result<Vec<f32>, ModelError> {
    for op in ops.iter().rev() {
        dy = op.backward(dy, images, tape)?;
    }
    Ok(dy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Pair, PoolGeometry};

    fn max_pool() -> Op {
        let geometry = PoolGeometry::new(
            &[1, 2, 2],
            Pair::square(2),
            Pair::square(2),
            Pair::square(0),
            Pair::square(1),
        )
        .unwrap();
        Op::MaxPool(MaxPool::new(geometry).unwrap())
    }

    fn internal_message(result: Result<Vec<f32>, ModelError>) -> String {
        match result {
            Err(ModelError::Internal { what }) => what,
            other => panic!("expected an internal error, got {other:?}"),
        }
    }

    #[test]
    fn a_backward_pass_on_an_empty_tape_is_an_error_not_a_zero_gradient() {
        let ops = [Op::Activation(Activation::Relu)];
        let message = internal_message(run_backward(&ops, vec![1.0; 4], 1, &mut Tape::default()));
        assert!(message.contains("tape underflow"), "{message}");
    }

    #[test]
    fn saved_values_of_the_wrong_kind_are_errors() {
        // A ReLU whose saved output is missing would pass the gradient through unmasked.
        let mut tape = Tape::default();
        tape.push(Saved::Nothing);
        let relu = [Op::Activation(Activation::Relu)];
        let message = internal_message(run_backward(&relu, vec![1.0; 4], 1, &mut tape));
        assert!(message.contains("found nothing on the tape"), "{message}");
        // A saved output of the wrong length.
        let mut tape = Tape::default();
        tape.push(Saved::Output(vec![1.0; 3]));
        let message = internal_message(run_backward(&relu, vec![1.0; 4], 1, &mut tape));
        assert!(message.contains("an output of 3 values"), "{message}");
        // Max pooling without its argmax would scatter nothing: a zero gradient.
        let mut tape = Tape::default();
        tape.push(Saved::Nothing);
        let message = internal_message(run_backward(&[max_pool()], vec![1.0], 1, &mut tape));
        assert!(message.contains("argmax indices"), "{message}");
        // An op without saved values that finds some: the walks are out of step.
        let mut tape = Tape::default();
        tape.push(Saved::Output(vec![1.0; 4]));
        let flatten = [Op::Flatten {
            input: Dims {
                height: 2,
                width: 2,
                channels: 1,
            },
        }];
        let message = internal_message(run_backward(&flatten, vec![1.0; 4], 1, &mut tape));
        assert!(message.contains("expected nothing"), "{message}");
    }

    #[test]
    fn max_pool_indices_outside_the_input_are_errors() {
        let Op::MaxPool(pool) = max_pool() else {
            unreachable!()
        };
        let message = internal_message(pool.input_gradient(&[1.0], &[4], 1));
        assert!(message.contains("argmax index 4"), "{message}");
        let message = internal_message(pool.input_gradient(&[1.0], &[], 1));
        assert!(
            message.contains("1 output gradients but 0 argmax"),
            "{message}"
        );
        assert_eq!(
            pool.input_gradient(&[2.0], &[3], 1).unwrap(),
            [0.0, 0.0, 0.0, 2.0]
        );
    }

    #[test]
    fn unused_saved_values_and_wrong_buffer_lengths_are_errors() {
        // A stray value under the forward pass's.
        let mut tape = Tape::default();
        tape.push(Saved::Nothing);
        let y = run_forward(&[max_pool()], vec![1.0, 4.0, 3.0, 2.0], 1, Some(&mut tape)).unwrap();
        assert_eq!(y, [4.0]);
        let dx = run_backward(&[max_pool()], vec![1.0], 1, &mut tape).unwrap();
        assert_eq!(dx, [0.0, 1.0, 0.0, 0.0]);
        let ModelError::Internal { what } = tape.finish().unwrap_err() else {
            unreachable!()
        };
        assert!(what.contains("left 1 saved values"), "{what}");
        // Five values for one 2×2 image.
        let message = internal_message(run_forward(&[max_pool()], vec![0.0; 5], 1, None));
        assert!(
            message.contains("max pooling got an input of 5 values for 1 images of 4"),
            "{message}"
        );
        let linear = Op::Linear(Linear {
            inputs: 2,
            outputs: 1,
            weight: vec![1.0, 1.0],
            bias: vec![0.0],
            relu: false,
        });
        let message = internal_message(run_forward(&[linear], vec![0.0; 3], 1, None));
        assert!(
            message.contains("linear layer got an input of 3"),
            "{message}"
        );
        let affine = Op::Affine {
            scale: vec![1.0, 2.0],
            shift: vec![0.0, 0.0],
        };
        let message = internal_message(run_forward(&[affine], vec![0.0; 3], 1, None));
        assert!(
            message.contains("over 2 channels got 3 values"),
            "{message}"
        );
    }
}
