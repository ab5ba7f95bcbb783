//! The runtime layers of a [`crate::Network`], each with an exact input gradient.
//!
//! A network is a tree of [`Node`]s built from the expanded [`LayerSpec`] list. Each node
//! knows its tensor-name prefix, so loading, saving and error messages all use PyTorch's
//! `state_dict()` names.

mod conv_input_gradient;
mod dense;
mod norm;
mod pool;

use candle_core::{Device, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::params::{Init, ParamSource};
use crate::spec::{layer_prefix, ActivationKind, ConvShape, LayerSection, LayerSpec, PoolGeometry};
use crate::ModelError;

pub(crate) use dense::{Conv2d, Linear};
pub(crate) use norm::BatchNorm;
pub(crate) use pool::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d};

/// Whether a tensor is trained (PyTorch `parameters()`) or only carried (`buffers()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TensorRole {
    Parameter,
    Buffer,
}

/// A named tensor of the network, borrowed.
pub(crate) type NamedTensor<'a> = (String, TensorRole, &'a Tensor);
/// A named tensor of the network, borrowed mutably.
pub(crate) type NamedTensorMut<'a> = (String, TensorRole, &'a mut Tensor);

/// One layer with its tensor-name prefix (e.g. `layer2.0.shortcut.0`).
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) prefix: String,
    pub(crate) kind: &'static str,
    pub(crate) layer: Layer,
}

#[derive(Debug, Clone)]
pub(crate) enum Layer {
    Conv2d(Conv2d),
    Linear(Linear),
    Activation(ActivationKind),
    MaxPool2d(MaxPool2d),
    AvgPool2d(AvgPool2d),
    AdaptiveAvgPool2d(AdaptiveAvgPool2d),
    BatchNorm(BatchNorm),
    Dropout { p: f64 },
    Flatten,
    Residual(Residual),
}

/// `activation(body(x) + shortcut(x))`; an empty shortcut is the identity.
#[derive(Debug, Clone)]
pub(crate) struct Residual {
    pub(crate) body: Vec<Node>,
    pub(crate) shortcut: Vec<Node>,
    pub(crate) activation: Option<ActivationKind>,
}

impl Node {
    /// Eval-mode forward pass (batch norm uses running statistics, dropout is the identity).
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        self.eval_layer(x).map_err(|source| self.context(source))
    }

    /// Train-mode forward pass: batch statistics (and their running update), random dropout.
    pub(crate) fn forward_train(
        &mut self,
        x: &Tensor,
        rng: &mut ChaCha8Rng,
    ) -> Result<Tensor, ModelError> {
        let result = match &mut self.layer {
            Layer::BatchNorm(norm) => norm.forward_train(x),
            Layer::Dropout { p } => dropout(x, *p, rng),
            Layer::Residual(block) => block.forward_train(x, rng),
            _ => self.eval_layer(x),
        };
        result.map_err(|source| self.context(source))
    }

    fn eval_layer(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        match &self.layer {
            Layer::Conv2d(conv) => conv.forward(x),
            Layer::Linear(linear) => linear.forward(x),
            Layer::Activation(kind) => activate(*kind, x),
            Layer::MaxPool2d(pool) => pool.forward(x),
            Layer::AvgPool2d(pool) => pool.forward(x),
            Layer::AdaptiveAvgPool2d(pool) => pool.forward(x),
            Layer::BatchNorm(norm) => norm.forward(x),
            Layer::Dropout { .. } => Ok(x.clone()),
            Layer::Flatten => Ok(x.flatten_from(1)?),
            Layer::Residual(block) => block.forward(x),
        }
    }

    fn context(&self, source: ModelError) -> ModelError {
        // Keep shape errors readable: they are about the model's input, not this layer.
        if matches!(source, ModelError::InputShape { .. }) {
            return source;
        }
        ModelError::Layer {
            layer: self.prefix.clone(),
            kind: self.kind,
            source: Box::new(source),
        }
    }
}

impl Residual {
    fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let body = run(&self.body, x)?;
        let shortcut = run(&self.shortcut, x)?;
        self.finish(&body, &shortcut)
    }

    fn forward_train(&mut self, x: &Tensor, rng: &mut ChaCha8Rng) -> Result<Tensor, ModelError> {
        let body = run_train(&mut self.body, x, rng)?;
        let shortcut = run_train(&mut self.shortcut, x, rng)?;
        self.finish(&body, &shortcut)
    }

    fn finish(&self, body: &Tensor, shortcut: &Tensor) -> Result<Tensor, ModelError> {
        let sum = (body + shortcut)?;
        match self.activation {
            Some(kind) => activate(kind, &sum),
            None => Ok(sum),
        }
    }
}

/// Runs `nodes` in eval mode; an empty list is the identity.
pub(crate) fn run(nodes: &[Node], x: &Tensor) -> Result<Tensor, ModelError> {
    let mut x = x.clone();
    for node in nodes {
        x = node.forward(&x)?;
    }
    Ok(x)
}

/// Runs `nodes` in train mode; an empty list is the identity.
pub(crate) fn run_train(
    nodes: &mut [Node],
    x: &Tensor,
    rng: &mut ChaCha8Rng,
) -> Result<Tensor, ModelError> {
    let mut x = x.clone();
    for node in nodes {
        x = node.forward_train(&x, rng)?;
    }
    Ok(x)
}

fn activate(kind: ActivationKind, x: &Tensor) -> Result<Tensor, ModelError> {
    Ok(match kind {
        // candle's `relu` passes the gradient through where x is exactly 0 (its backward
        // masks with x ≥ 0); PyTorch, TensorFlow and gauntlet's native path give 0 there, which
        // matters on exact-zero inputs (MNIST backgrounds) through bias-free layers. A select
        // on x > 0 has that backward and the same values.
        ActivationKind::Relu => x.gt(0.0)?.where_cond(x, &x.zeros_like()?)?,
        ActivationKind::Gelu => x.gelu_erf()?,
        ActivationKind::Tanh => x.tanh()?,
        // candle_nn's sigmoid is a custom op with an exact backward; 1/(1+e^−x) from basic
        // ops would give NaN gradients where e^−x overflows.
        ActivationKind::Sigmoid => candle_nn::ops::sigmoid(x)?,
    })
}

/// Inverted dropout: zero each entry with probability `p`, scale the rest by `1/(1−p)`.
/// The mask comes from the caller's seeded generator (candle's CPU RNG cannot be seeded).
fn dropout(x: &Tensor, p: f64, rng: &mut ChaCha8Rng) -> Result<Tensor, ModelError> {
    if p == 0.0 {
        return Ok(x.clone());
    }
    let keep_scale = (1.0 / (1.0 - p)) as f32;
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| {
            if rng.random::<f64>() < p {
                0.0
            } else {
                keep_scale
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, x.dims(), x.device())?.to_dtype(x.dtype())?;
    Ok(x.mul(&mask)?)
}

/// Every tensor of `nodes` (recursing into residual blocks) with its full name.
pub(crate) fn named_tensors<'a>(nodes: &'a [Node], out: &mut Vec<NamedTensor<'a>>) {
    for node in nodes {
        let own = match &node.layer {
            Layer::Conv2d(conv) => conv.tensors(),
            Layer::Linear(linear) => linear.tensors(),
            Layer::BatchNorm(norm) => norm.tensors(),
            Layer::Residual(block) => {
                named_tensors(&block.body, out);
                named_tensors(&block.shortcut, out);
                Vec::new()
            }
            _ => Vec::new(),
        };
        for (suffix, role, tensor) in own {
            out.push((format!("{}.{suffix}", node.prefix), role, tensor));
        }
    }
}

/// Every tensor of `nodes` (recursing into residual blocks), mutably, with its full name.
pub(crate) fn named_tensors_mut<'a>(nodes: &'a mut [Node], out: &mut Vec<NamedTensorMut<'a>>) {
    for node in nodes {
        let Node { prefix, layer, .. } = node;
        let own = match layer {
            Layer::Conv2d(conv) => conv.tensors_mut(),
            Layer::Linear(linear) => linear.tensors_mut(),
            Layer::BatchNorm(norm) => norm.tensors_mut(),
            Layer::Residual(block) => {
                named_tensors_mut(&mut block.body, out);
                named_tensors_mut(&mut block.shortcut, out);
                Vec::new()
            }
            _ => Vec::new(),
        };
        for (suffix, role, tensor) in own {
            out.push((format!("{prefix}.{suffix}"), role, tensor));
        }
    }
}

/// `(prefix, num_batches_tracked)` of every batch-norm layer.
pub(crate) fn batch_norm_counts(nodes: &[Node], out: &mut Vec<(String, i64)>) {
    for node in nodes {
        match &node.layer {
            Layer::BatchNorm(norm) => out.push((node.prefix.clone(), norm.batches_tracked)),
            Layer::Residual(block) => {
                batch_norm_counts(&block.body, out);
                batch_norm_counts(&block.shortcut, out);
            }
            _ => {}
        }
    }
}

/// Builds the nodes of a validated layer list, asking `source` for every tensor by name.
/// Returns the nodes and the per-sample output shape.
pub(crate) fn build(
    specs: &[LayerSpec],
    parent: &str,
    section: LayerSection,
    input: &[usize],
    source: &mut dyn ParamSource,
    device: &Device,
) -> Result<(Vec<Node>, Vec<usize>), ModelError> {
    let mut nodes = Vec::with_capacity(specs.len());
    let mut shape = input.to_vec();
    for (index, spec) in specs.iter().enumerate() {
        let prefix = layer_prefix(parent, section, index, spec.name());
        let (layer, output) = build_layer(spec, &prefix, &shape, source, device)?;
        nodes.push(Node {
            prefix,
            kind: spec.kind(),
            layer,
        });
        shape = output;
    }
    Ok((nodes, shape))
}

fn build_layer(
    spec: &LayerSpec,
    prefix: &str,
    input: &[usize],
    source: &mut dyn ParamSource,
    device: &Device,
) -> Result<(Layer, Vec<usize>), ModelError> {
    if let LayerSpec::Residual {
        body,
        shortcut,
        activation,
        ..
    } = spec
    {
        let (body, output) = build(body, prefix, LayerSection::Body, input, source, device)?;
        let (shortcut, _) = build(
            shortcut,
            prefix,
            LayerSection::Shortcut,
            input,
            source,
            device,
        )?;
        let block = Residual {
            body,
            shortcut,
            activation: *activation,
        };
        return Ok((Layer::Residual(block), output));
    }
    let output = spec.output_shape(input).map_err(|reason| {
        ModelError::invalid_spec(format!("layer `{prefix}` ({}): {reason}", spec.kind()))
    })?;
    let layer = build_leaf(spec, prefix, input, &output, source, device)?;
    Ok((layer, output))
}

fn build_leaf(
    spec: &LayerSpec,
    prefix: &str,
    input: &[usize],
    output: &[usize],
    source: &mut dyn ParamSource,
    device: &Device,
) -> Result<Layer, ModelError> {
    Ok(match spec {
        LayerSpec::Conv2d {
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            ..
        } => {
            let shape = ConvShape {
                in_channels: *in_channels,
                out_channels: *out_channels,
                kernel_size: *kernel_size,
                stride: *stride,
                padding: *padding,
                dilation: *dilation,
                groups: *groups,
            };
            Layer::Conv2d(build_conv(shape, *bias, prefix, source)?)
        }
        LayerSpec::Linear {
            in_features,
            out_features,
            bias,
            ..
        } => Layer::Linear(build_linear(
            *in_features,
            *out_features,
            *bias,
            prefix,
            source,
        )?),
        LayerSpec::Relu { .. } => Layer::Activation(ActivationKind::Relu),
        LayerSpec::Gelu { .. } => Layer::Activation(ActivationKind::Gelu),
        LayerSpec::Tanh { .. } => Layer::Activation(ActivationKind::Tanh),
        LayerSpec::Sigmoid { .. } => Layer::Activation(ActivationKind::Sigmoid),
        LayerSpec::MaxPool2d {
            kernel_size,
            stride,
            padding,
            dilation,
            ..
        } => {
            let stride = stride.unwrap_or(*kernel_size);
            let geometry = PoolGeometry::new(input, *kernel_size, stride, *padding, *dilation)
                .map_err(ModelError::invalid_spec)?;
            Layer::MaxPool2d(MaxPool2d::new(geometry, device)?)
        }
        LayerSpec::AvgPool2d {
            kernel_size,
            stride,
            padding,
            ..
        } => {
            let stride = stride.unwrap_or(*kernel_size);
            let geometry = PoolGeometry::new(
                input,
                *kernel_size,
                stride,
                *padding,
                crate::spec::Pair::square(1),
            )
            .map_err(ModelError::invalid_spec)?;
            Layer::AvgPool2d(AvgPool2d::new(geometry, device)?)
        }
        LayerSpec::AdaptiveAvgPool2d { .. } => {
            let image = [input[0], input[1], input[2]];
            Layer::AdaptiveAvgPool2d(AdaptiveAvgPool2d::new(image, output[1], output[2], device)?)
        }
        LayerSpec::BatchNorm2d {
            num_features,
            eps,
            momentum,
            ..
        }
        | LayerSpec::BatchNorm1d {
            num_features,
            eps,
            momentum,
            ..
        } => Layer::BatchNorm(build_batch_norm(
            *num_features,
            *eps,
            *momentum,
            prefix,
            source,
        )?),
        LayerSpec::Dropout { p, .. } => Layer::Dropout { p: *p },
        LayerSpec::Flatten { .. } => Layer::Flatten,
        LayerSpec::Residual { .. } => {
            return Err(ModelError::invalid_spec(
                "internal error: residual blocks are built by build_layer",
            ))
        }
    })
}

fn build_conv(
    shape: ConvShape,
    bias: bool,
    prefix: &str,
    source: &mut dyn ParamSource,
) -> Result<Conv2d, ModelError> {
    let in_per_group = shape.in_channels / shape.groups;
    let kernel = shape.kernel_size;
    let fan_in = in_per_group * kernel.height * kernel.width;
    let init = Init::Uniform {
        bound: 1.0 / (fan_in as f64).sqrt(),
    };
    let weight = source.tensor(
        &format!("{prefix}.weight"),
        &[
            shape.out_channels,
            in_per_group,
            kernel.height,
            kernel.width,
        ],
        init,
    )?;
    let bias = if bias {
        Some(source.tensor(&format!("{prefix}.bias"), &[shape.out_channels], init)?)
    } else {
        None
    };
    Ok(Conv2d {
        weight,
        bias,
        stride: shape.stride,
        padding: shape.padding,
        dilation: shape.dilation,
        groups: shape.groups,
    })
}

fn build_linear(
    in_features: usize,
    out_features: usize,
    bias: bool,
    prefix: &str,
    source: &mut dyn ParamSource,
) -> Result<Linear, ModelError> {
    let init = Init::Uniform {
        bound: 1.0 / (in_features as f64).sqrt(),
    };
    let weight = source.tensor(
        &format!("{prefix}.weight"),
        &[out_features, in_features],
        init,
    )?;
    let bias = if bias {
        Some(source.tensor(&format!("{prefix}.bias"), &[out_features], init)?)
    } else {
        None
    };
    Ok(Linear { weight, bias })
}

fn build_batch_norm(
    num_features: usize,
    eps: f64,
    momentum: f64,
    prefix: &str,
    source: &mut dyn ParamSource,
) -> Result<BatchNorm, ModelError> {
    let shape = [num_features];
    let mut take = |suffix: &str, value: f32| {
        source.tensor(&format!("{prefix}.{suffix}"), &shape, Init::Constant(value))
    };
    let weight = take("weight", 1.0)?;
    let bias = take("bias", 0.0)?;
    let running_mean = take("running_mean", 0.0)?;
    let running_var = take("running_var", 1.0)?;
    let batches_tracked = source
        .optional_count(&format!("{prefix}.num_batches_tracked"))
        .unwrap_or(0);
    Ok(BatchNorm {
        weight,
        bias,
        running_mean,
        running_var,
        eps,
        momentum,
        batches_tracked,
    })
}
