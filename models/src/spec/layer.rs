//! One layer of a `sequential` spec, and the shape arithmetic that validates a layer list
//! before any tensor is touched.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

/// A size given per spatial dimension `(height, width)`; in TOML either one integer (used for
/// both, as PyTorch accepts) or a two-element array `[height, width]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    pub height: usize,
    pub width: usize,
}

impl Pair {
    pub const fn square(size: usize) -> Self {
        Self {
            height: size,
            width: size,
        }
    }

    pub(crate) fn is_square(self) -> bool {
        self.height == self.width
    }
}

impl fmt::Display for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_square() {
            write!(f, "{}", self.height)
        } else {
            write!(f, "[{}, {}]", self.height, self.width)
        }
    }
}

impl Serialize for Pair {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.is_square() {
            serializer.serialize_u64(self.height as u64)
        } else {
            [self.height, self.width].serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Pair {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PairVisitor)
    }
}

struct PairVisitor;

impl<'de> Visitor<'de> for PairVisitor {
    type Value = Pair;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative integer or an array [height, width] of two")
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Pair, E> {
        let size = usize::try_from(value).map_err(|_| E::custom("size too large"))?;
        Ok(Pair::square(size))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Pair, E> {
        let size = u64::try_from(value)
            .map_err(|_| E::custom(format!("sizes must be non-negative, got {value}")))?;
        self.visit_u64(size)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Pair, A::Error> {
        let height: usize = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let width: usize = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        if seq.next_element::<usize>()?.is_some() {
            return Err(de::Error::invalid_length(3, &self));
        }
        Ok(Pair { height, width })
    }
}

/// An element-wise activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationKind {
    Relu,
    /// The exact (erf) GELU, PyTorch's `nn.GELU()` default.
    Gelu,
    Tanh,
    Sigmoid,
}

fn one() -> usize {
    1
}
fn one_pair() -> Pair {
    Pair::square(1)
}
fn zero_pair() -> Pair {
    Pair::square(0)
}
fn yes() -> bool {
    true
}
fn is_true(value: &bool) -> bool {
    *value
}
fn is_one(value: &usize) -> bool {
    *value == 1
}
fn is_zero(value: &usize) -> bool {
    *value == 0
}
fn is_one_pair(value: &Pair) -> bool {
    *value == Pair::square(1)
}
fn is_zero_pair(value: &Pair) -> bool {
    *value == Pair::square(0)
}
fn default_eps() -> f64 {
    1e-5
}
fn default_momentum() -> f64 {
    0.1
}
fn default_dropout() -> f64 {
    0.5
}

/// One layer of a network, with PyTorch's argument names and defaults.
///
/// `name` overrides the tensor-name prefix of the layer (see `docs/pytorch-export.md`); by
/// default it is the layer's index in its list, as in PyTorch's `nn.Sequential`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum LayerSpec {
    /// `nn.Conv2d`. `stride`, `padding` and `dilation` are the same for both spatial dims.
    #[serde(rename = "conv2d")]
    Conv2d {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        in_channels: usize,
        out_channels: usize,
        kernel_size: Pair,
        #[serde(
            default = "one",
            skip_serializing_if = "is_one",
            deserialize_with = "super::size::square"
        )]
        stride: usize,
        #[serde(
            default,
            skip_serializing_if = "is_zero",
            deserialize_with = "super::size::square"
        )]
        padding: usize,
        #[serde(
            default = "one",
            skip_serializing_if = "is_one",
            deserialize_with = "super::size::square"
        )]
        dilation: usize,
        #[serde(default = "one", skip_serializing_if = "is_one")]
        groups: usize,
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        bias: bool,
    },
    /// `nn.Linear` on `(batch, in_features)`.
    #[serde(rename = "linear")]
    Linear {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        in_features: usize,
        out_features: usize,
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        bias: bool,
    },
    #[serde(rename = "relu")]
    Relu {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// `nn.GELU()` (exact erf form).
    #[serde(rename = "gelu")]
    Gelu {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    #[serde(rename = "tanh")]
    Tanh {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    #[serde(rename = "sigmoid")]
    Sigmoid {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// `nn.MaxPool2d` (floor output size). `stride` defaults to `kernel_size`.
    #[serde(rename = "max_pool2d")]
    MaxPool2d {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        kernel_size: Pair,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<Pair>,
        #[serde(default = "zero_pair", skip_serializing_if = "is_zero_pair")]
        padding: Pair,
        #[serde(default = "one_pair", skip_serializing_if = "is_one_pair")]
        dilation: Pair,
    },
    /// `nn.AvgPool2d` (floor output size, `count_include_pad=True`). `stride` defaults to
    /// `kernel_size`.
    #[serde(rename = "avg_pool2d")]
    AvgPool2d {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        kernel_size: Pair,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<Pair>,
        #[serde(default = "zero_pair", skip_serializing_if = "is_zero_pair")]
        padding: Pair,
    },
    /// `nn.AdaptiveAvgPool2d`.
    #[serde(rename = "adaptive_avg_pool2d")]
    AdaptiveAvgPool2d {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        output_size: Pair,
    },
    /// `nn.BatchNorm2d` on `(batch, C, H, W)`.
    #[serde(rename = "batch_norm2d")]
    BatchNorm2d {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        num_features: usize,
        #[serde(default = "default_eps")]
        eps: f64,
        #[serde(default = "default_momentum")]
        momentum: f64,
    },
    /// `nn.BatchNorm1d` on `(batch, C)` or `(batch, C, L)`.
    #[serde(rename = "batch_norm1d")]
    BatchNorm1d {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        num_features: usize,
        #[serde(default = "default_eps")]
        eps: f64,
        #[serde(default = "default_momentum")]
        momentum: f64,
    },
    /// `nn.Dropout`: the identity outside training.
    #[serde(rename = "dropout")]
    Dropout {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default = "default_dropout")]
        p: f64,
    },
    /// `nn.Flatten()`: `(batch, d1, d2, …)` → `(batch, d1·d2·…)`.
    #[serde(rename = "flatten")]
    Flatten {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// `activation(body(x) + shortcut(x))`; an empty `shortcut` is the identity and a missing
    /// `activation` applies none.
    #[serde(rename = "residual")]
    Residual {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        activation: Option<ActivationKind>,
        body: Vec<LayerSpec>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        shortcut: Vec<LayerSpec>,
    },
}

impl LayerSpec {
    /// The `type` key of this layer in a spec.
    pub fn kind(&self) -> &'static str {
        match self {
            LayerSpec::Conv2d { .. } => "conv2d",
            LayerSpec::Linear { .. } => "linear",
            LayerSpec::Relu { .. } => "relu",
            LayerSpec::Gelu { .. } => "gelu",
            LayerSpec::Tanh { .. } => "tanh",
            LayerSpec::Sigmoid { .. } => "sigmoid",
            LayerSpec::MaxPool2d { .. } => "max_pool2d",
            LayerSpec::AvgPool2d { .. } => "avg_pool2d",
            LayerSpec::AdaptiveAvgPool2d { .. } => "adaptive_avg_pool2d",
            LayerSpec::BatchNorm2d { .. } => "batch_norm2d",
            LayerSpec::BatchNorm1d { .. } => "batch_norm1d",
            LayerSpec::Dropout { .. } => "dropout",
            LayerSpec::Flatten { .. } => "flatten",
            LayerSpec::Residual { .. } => "residual",
        }
    }

    /// The explicit tensor-name prefix, if the spec sets one.
    pub fn name(&self) -> Option<&str> {
        match self {
            LayerSpec::Conv2d { name, .. }
            | LayerSpec::Linear { name, .. }
            | LayerSpec::Relu { name }
            | LayerSpec::Gelu { name }
            | LayerSpec::Tanh { name }
            | LayerSpec::Sigmoid { name }
            | LayerSpec::MaxPool2d { name, .. }
            | LayerSpec::AvgPool2d { name, .. }
            | LayerSpec::AdaptiveAvgPool2d { name, .. }
            | LayerSpec::BatchNorm2d { name, .. }
            | LayerSpec::BatchNorm1d { name, .. }
            | LayerSpec::Dropout { name, .. }
            | LayerSpec::Flatten { name }
            | LayerSpec::Residual { name, .. } => name.as_deref(),
        }
    }

    /// The per-sample output shape for a per-sample `input` shape, or why the layer cannot
    /// take that input. Only checks this layer; residual blocks recurse into their branches.
    pub(crate) fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        match self {
            LayerSpec::Conv2d {
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation,
                groups,
                ..
            } => conv_output_shape(
                input,
                ConvShape {
                    in_channels: *in_channels,
                    out_channels: *out_channels,
                    kernel_size: *kernel_size,
                    stride: *stride,
                    padding: *padding,
                    dilation: *dilation,
                    groups: *groups,
                },
            ),
            LayerSpec::Linear {
                in_features,
                out_features,
                ..
            } => linear_output_shape(input, *in_features, *out_features),
            LayerSpec::Relu { .. }
            | LayerSpec::Gelu { .. }
            | LayerSpec::Tanh { .. }
            | LayerSpec::Sigmoid { .. } => Ok(input.to_vec()),
            LayerSpec::Dropout { p, .. } => {
                if !(0.0..1.0).contains(p) {
                    return Err(format!("dropout probability must be in [0, 1), got {p}"));
                }
                Ok(input.to_vec())
            }
            LayerSpec::MaxPool2d {
                kernel_size,
                stride,
                padding,
                dilation,
                ..
            } => {
                let geometry = PoolGeometry::new(
                    input,
                    *kernel_size,
                    stride.unwrap_or(*kernel_size),
                    *padding,
                    *dilation,
                )?;
                Ok(vec![input[0], geometry.out_height, geometry.out_width])
            }
            LayerSpec::AvgPool2d {
                kernel_size,
                stride,
                padding,
                ..
            } => {
                let geometry = PoolGeometry::new(
                    input,
                    *kernel_size,
                    stride.unwrap_or(*kernel_size),
                    *padding,
                    Pair::square(1),
                )?;
                Ok(vec![input[0], geometry.out_height, geometry.out_width])
            }
            LayerSpec::AdaptiveAvgPool2d { output_size, .. } => {
                expect_image(input)?;
                if output_size.height == 0 || output_size.width == 0 {
                    return Err(format!("output_size must be positive, got {output_size}"));
                }
                Ok(vec![input[0], output_size.height, output_size.width])
            }
            LayerSpec::BatchNorm2d {
                num_features,
                eps,
                momentum,
                ..
            } => {
                expect_image(input)?;
                batch_norm_output_shape(input, *num_features, *eps, *momentum)
            }
            LayerSpec::BatchNorm1d {
                num_features,
                eps,
                momentum,
                ..
            } => {
                if input.len() > 2 {
                    return Err(format!(
                        "expects per-sample shape [C] or [C, L], but its input has shape {input:?}"
                    ));
                }
                batch_norm_output_shape(input, *num_features, *eps, *momentum)
            }
            LayerSpec::Flatten { .. } => Ok(vec![checked_product(input).ok_or_else(|| {
                format!("flattening an input of shape {input:?} overflows the size arithmetic")
            })?]),
            LayerSpec::Residual { .. } => {
                Err("internal error: residual shapes are checked by the spec validator".to_string())
            }
        }
    }
}

/// The hyper-parameters of a convolution that decide its shapes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvShape {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel_size: Pair,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
}

fn conv_output_shape(input: &[usize], conv: ConvShape) -> Result<Vec<usize>, String> {
    expect_image(input)?;
    if conv.stride == 0 || conv.dilation == 0 || conv.groups == 0 {
        return Err("stride, dilation and groups must be at least 1".to_string());
    }
    if conv.kernel_size.height == 0 || conv.kernel_size.width == 0 || conv.out_channels == 0 {
        return Err("kernel_size and out_channels must be at least 1".to_string());
    }
    if input[0] != conv.in_channels {
        return Err(format!(
            "expects {} input channels, but its input has shape {input:?}",
            conv.in_channels
        ));
    }
    if !conv.in_channels.is_multiple_of(conv.groups)
        || !conv.out_channels.is_multiple_of(conv.groups)
    {
        return Err(format!(
            "in_channels ({}) and out_channels ({}) must both be divisible by groups ({})",
            conv.in_channels, conv.out_channels, conv.groups
        ));
    }
    let out_height = window_count(
        input[1],
        conv.kernel_size.height,
        conv.stride,
        conv.padding,
        conv.dilation,
    )?;
    let out_width = window_count(
        input[2],
        conv.kernel_size.width,
        conv.stride,
        conv.padding,
        conv.dilation,
    )?;
    Ok(vec![conv.out_channels, out_height, out_width])
}

fn linear_output_shape(
    input: &[usize],
    in_features: usize,
    out_features: usize,
) -> Result<Vec<usize>, String> {
    if input != [in_features] {
        return Err(format!(
            "expects per-sample shape [{in_features}] (add a flatten layer before it?), but its input has shape {input:?}"
        ));
    }
    if out_features == 0 {
        return Err("out_features must be at least 1".to_string());
    }
    Ok(vec![out_features])
}

fn batch_norm_output_shape(
    input: &[usize],
    num_features: usize,
    eps: f64,
    momentum: f64,
) -> Result<Vec<usize>, String> {
    if input.first() != Some(&num_features) {
        return Err(format!(
            "expects {num_features} channels, but its input has shape {input:?}"
        ));
    }
    if !(eps > 0.0 && eps.is_finite()) {
        return Err(format!("eps must be positive, got {eps}"));
    }
    if !(0.0..=1.0).contains(&momentum) {
        return Err(format!("momentum must be in [0, 1], got {momentum}"));
    }
    Ok(input.to_vec())
}

fn expect_image(input: &[usize]) -> Result<(), String> {
    if input.len() != 3 {
        return Err(format!(
            "expects per-sample shape [C, H, W], but its input has shape {input:?}"
        ));
    }
    Ok(())
}

/// PyTorch's floor-mode output size: `⌊(in + 2·pad − dilation·(k − 1) − 1) / stride⌋ + 1`,
/// in checked arithmetic: sizes come from a file, and a kernel or padding near `usize::MAX`
/// must be an error, not a wrapped (small) size.
fn window_count(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Result<usize, String> {
    let span = kernel
        .checked_sub(1)
        .and_then(|k| k.checked_mul(dilation))
        .and_then(|s| s.checked_add(1))
        .ok_or_else(|| {
            format!(
                "a window of kernel {kernel} and dilation {dilation} overflows the size arithmetic"
            )
        })?;
    let padded = padding
        .checked_mul(2)
        .and_then(|p| p.checked_add(input))
        .ok_or_else(|| {
            format!("an input of size {input} with padding {padding} overflows the size arithmetic")
        })?;
    if padded < span || stride == 0 {
        return Err(format!(
            "a window spanning {span} does not fit an input of size {input} with padding {padding}"
        ));
    }
    Ok((padded - span) / stride + 1)
}

/// The product of `sizes`, or `None` when it overflows.
pub(crate) fn checked_product(sizes: &[usize]) -> Option<usize> {
    sizes
        .iter()
        .try_fold(1usize, |acc, &size| acc.checked_mul(size))
}

/// The resolved geometry of a 2-D pooling window over a `[C, H, W]` input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolGeometry {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: Pair,
    pub stride: Pair,
    pub padding: Pair,
    pub dilation: Pair,
    pub out_height: usize,
    pub out_width: usize,
}

impl PoolGeometry {
    pub(crate) fn new(
        input: &[usize],
        kernel: Pair,
        stride: Pair,
        padding: Pair,
        dilation: Pair,
    ) -> Result<Self, String> {
        expect_image(input)?;
        let all = [kernel, stride, dilation];
        if all.iter().any(|p| p.height == 0 || p.width == 0) {
            return Err("kernel_size, stride and dilation must be at least 1".to_string());
        }
        // PyTorch: "pad should be at most half of effective kernel size".
        if padding.height > kernel.height / 2 || padding.width > kernel.width / 2 {
            return Err(format!(
                "padding ({padding}) must be at most half of kernel_size ({kernel})"
            ));
        }
        let out_height = window_count(
            input[1],
            kernel.height,
            stride.height,
            padding.height,
            dilation.height,
        )?;
        let out_width = window_count(
            input[2],
            kernel.width,
            stride.width,
            padding.width,
            dilation.width,
        )?;
        Ok(Self {
            channels: input[0],
            height: input[1],
            width: input[2],
            kernel,
            stride,
            padding,
            dilation,
            out_height,
            out_width,
        })
    }
}
