//! The operations of a compiled plan and their forward and input-gradient passes.
//!
//! Activations are `f32` buffers of a group of images in the channel-major layout of
//! `mod.rs`; a feature vector is a `1 × 1` image, so features are rows and images columns. The forward pass pushes what
//! the backward pass needs onto a [`Tape`] (stack order: the backward pass visits operations
//! in exactly the reverse order and pops).

use super::conv::{relu, relu_in_place, Conv};
use super::gemm::{matmul, MatMut, MatRef};
use super::pool::{AdaptiveAvgPool, AvgPool, MaxPool};
use super::scratch;
use super::Dims;

/// What one operation's backward pass needs from its forward pass.
#[derive(Debug)]
pub(crate) enum Saved {
    Nothing,
    /// The operation's output (ReLU mask, tanh and sigmoid derivatives).
    Output(Vec<f32>),
    /// Max pooling: the input index each output came from.
    Indices(Vec<u32>),
}

/// The forward pass's saved values, popped by the backward pass.
#[derive(Debug, Default)]
pub(crate) struct Tape(Vec<Saved>);

impl Tape {
    fn push(&mut self, saved: Saved) {
        self.0.push(saved);
    }

    fn pop(&mut self) -> Saved {
        // The plan's forward and backward walks are mirror images, so the stack never runs
        // dry (the plan tests check gradients of every op against candle's).
        debug_assert!(!self.0.is_empty(), "tape popped more often than pushed");
        self.0.pop().unwrap_or(Saved::Nothing)
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

    /// Multiplies `dy` by the derivative, expressed through the activation's output `y`.
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

    fn forward(&self, mut x: Vec<f32>, images: usize, tape: Option<&mut Tape>) -> Vec<f32> {
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
                let per_channel = x.len() / scale.len().max(1);
                for ((channel, s), t) in
                    x.chunks_exact_mut(per_channel.max(1)).zip(scale).zip(shift)
                {
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
                let mut sum = run_forward(body, x_copy, images, tape.as_deref_mut());
                let short = run_forward(shortcut, x, images, tape.as_deref_mut());
                sum.iter_mut().zip(&short).for_each(|(s, v)| *s += v);
                scratch::recycle(short);
                if let Some(kind) = activation {
                    kind.apply(&mut sum);
                }
                let saved = keep_output_if(activation.is_some(), &sum, &tape);
                if let Some(tape) = tape {
                    tape.push(saved);
                }
                return sum;
            }
        };
        if let Some(tape) = tape {
            tape.push(saved);
        }
        y
    }

    fn backward(&self, mut dy: Vec<f32>, images: usize, tape: &mut Tape) -> Vec<f32> {
        let saved = tape.pop();
        let dx = match self {
            Op::Conv(conv) => {
                if let Saved::Output(y) = &saved {
                    Activation::Relu.backward(&mut dy, y);
                }
                let dx = conv.input_gradient(&dy, images);
                scratch::recycle(dy);
                dx
            }
            Op::Linear(linear) => {
                if let Saved::Output(y) = &saved {
                    Activation::Relu.backward(&mut dy, y);
                }
                let dx = linear.input_gradient(&dy, images);
                scratch::recycle(dy);
                dx
            }
            Op::Affine { scale, .. } => {
                let per_channel = dy.len() / scale.len().max(1);
                for (channel, s) in dy.chunks_exact_mut(per_channel.max(1)).zip(scale) {
                    channel.iter_mut().for_each(|d| *d *= s);
                }
                dy
            }
            Op::Activation(kind) => {
                if let Saved::Output(y) = &saved {
                    kind.backward(&mut dy, y);
                }
                dy
            }
            Op::MaxPool(pool) => {
                let from: &[u32] = match &saved {
                    Saved::Indices(from) => from,
                    _ => &[],
                };
                let dx = pool.input_gradient(&dy, from, images);
                scratch::recycle(dy);
                dx
            }
            Op::AvgPool(pool) => {
                let dx = pool.input_gradient(&dy, images);
                scratch::recycle(dy);
                dx
            }
            Op::AdaptiveAvgPool(pool) => {
                let dx = pool.input_gradient(&dy, images);
                scratch::recycle(dy);
                dx
            }
            Op::Flatten { input } => {
                let dx = flatten(&dy, *input, images, true);
                scratch::recycle(dy);
                dx
            }
            Op::Residual {
                body,
                shortcut,
                activation,
            } => {
                if let (Some(kind), Saved::Output(y)) = (activation, &saved) {
                    kind.backward(&mut dy, y);
                }
                let mut dy_copy = scratch::buffer(dy.len());
                dy_copy.copy_from_slice(&dy);
                let short = run_backward(shortcut, dy_copy, images, tape);
                let mut dx = run_backward(body, dy, images, tape);
                dx.iter_mut().zip(&short).for_each(|(d, s)| *d += s);
                scratch::recycle(short);
                dx
            }
        };
        if let Saved::Output(y) = saved {
            scratch::recycle(y);
        }
        dx
    }
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
) -> Vec<f32> {
    for op in ops {
        x = op.forward(x, images, tape.as_deref_mut());
    }
    x
}

/// The input gradient of `ops` given the output gradient `dy`, popping the forward's tape.
pub(crate) fn run_backward(
    ops: &[Op],
    mut dy: Vec<f32>,
    images: usize,
    tape: &mut Tape,
) -> Vec<f32> {
    for op in ops.iter().rev() {
        dy = op.backward(dy, images, tape);
    }
    dy
}
