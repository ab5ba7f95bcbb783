//! The built-in architectures, each expanded into the same layer list a `sequential` spec
//! would give, so there is one implementation of every layer and of tensor naming.
//! Their PyTorch definitions are in `docs/pytorch-export.md`.

use super::layer::{checked_product, ActivationKind, LayerSpec, Pair};
use crate::ModelError;

/// `nn.Sequential(nn.Flatten(), nn.Linear(features, classes))`: tensors `1.weight`, `1.bias`.
pub(crate) fn linear(
    input_shape: &[usize],
    num_classes: usize,
) -> Result<Vec<LayerSpec>, ModelError> {
    mlp(input_shape, &[], num_classes)
}

/// `nn.Sequential(nn.Flatten(), [nn.Linear, nn.ReLU]*, nn.Linear)`: linear layers at the odd
/// indices 1, 3, 5, ….
pub(crate) fn mlp(
    input_shape: &[usize],
    hidden: &[usize],
    num_classes: usize,
) -> Result<Vec<LayerSpec>, ModelError> {
    let mut layers = vec![LayerSpec::Flatten { name: None }];
    let mut features = checked_product(input_shape).ok_or_else(|| {
        ModelError::invalid_spec(format!(
            "`input_shape` {input_shape:?} has more values per sample than gauntlet can represent"
        ))
    })?;
    for &width in hidden {
        layers.push(linear_layer(None, features, width));
        layers.push(LayerSpec::Relu { name: None });
        features = width;
    }
    layers.push(linear_layer(None, features, num_classes));
    Ok(layers)
}

/// conv 3×3 (C→16, pad 1), relu, maxpool 2, conv 3×3 (16→32, pad 1), relu, maxpool 2,
/// flatten, linear: tensors `0.*`, `3.*`, `7.*`.
pub(crate) fn small_cnn(
    input_shape: &[usize],
    num_classes: usize,
) -> Result<Vec<LayerSpec>, ModelError> {
    let [channels, height, width] = image_shape(input_shape, "small_cnn")?;
    if height < 4 || width < 4 {
        return Err(ModelError::invalid_spec(format!(
            "small_cnn needs images of at least 4×4, got {height}×{width}"
        )));
    }
    let features = checked_product(&[32, height / 4, width / 4]).ok_or_else(|| {
        ModelError::invalid_spec(format!(
            "small_cnn on {height}×{width} images has more features than gauntlet can represent"
        ))
    })?;
    let pool = || LayerSpec::MaxPool2d {
        name: None,
        kernel_size: Pair::square(2),
        stride: None,
        padding: Pair::square(0),
        dilation: Pair::square(1),
    };
    Ok(vec![
        conv_layer(None, channels, 16, 3, 1, 1, true),
        LayerSpec::Relu { name: None },
        pool(),
        conv_layer(None, 16, 32, 3, 1, 1, true),
        LayerSpec::Relu { name: None },
        pool(),
        LayerSpec::Flatten { name: None },
        linear_layer(None, features, num_classes),
    ])
}

/// The CIFAR ResNet-20 of He et al. (2016), §4.2: a 3×3 conv, three stages of three
/// BasicBlocks (16, 32, 64 channels; stages 2 and 3 halve the resolution), global average
/// pooling and a linear layer. Shortcuts that change shape are 1×1 conv + BN ("option B").
/// Tensor names follow the common PyTorch definition (`conv1`, `bn1`, `layer1.0.conv1`, …,
/// `layer2.0.shortcut.0`, `linear`).
pub(crate) fn resnet20(
    input_shape: &[usize],
    num_classes: usize,
) -> Result<Vec<LayerSpec>, ModelError> {
    let [channels, _, _] = image_shape(input_shape, "resnet20")?;
    let mut layers = vec![
        conv_layer(Some("conv1"), channels, 16, 3, 1, 1, false),
        batch_norm(Some("bn1"), 16),
        LayerSpec::Relu { name: None },
    ];
    let mut in_planes = 16;
    for (stage, planes) in [16usize, 32, 64].into_iter().enumerate() {
        for block in 0..3 {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            layers.push(basic_block(
                format!("layer{}.{block}", stage + 1),
                in_planes,
                planes,
                stride,
            ));
            in_planes = planes;
        }
    }
    layers.push(LayerSpec::AdaptiveAvgPool2d {
        name: None,
        output_size: Pair::square(1),
    });
    layers.push(LayerSpec::Flatten { name: None });
    layers.push(linear_layer(Some("linear"), 64, num_classes));
    Ok(layers)
}

fn basic_block(name: String, in_planes: usize, planes: usize, stride: usize) -> LayerSpec {
    let body = vec![
        conv_layer(Some("conv1"), in_planes, planes, 3, stride, 1, false),
        batch_norm(Some("bn1"), planes),
        LayerSpec::Relu { name: None },
        conv_layer(Some("conv2"), planes, planes, 3, 1, 1, false),
        batch_norm(Some("bn2"), planes),
    ];
    let shortcut = if stride != 1 || in_planes != planes {
        // Default names: `<block>.shortcut.0` (conv) and `<block>.shortcut.1` (bn).
        vec![
            conv_layer(None, in_planes, planes, 1, stride, 0, false),
            batch_norm(None, planes),
        ]
    } else {
        Vec::new()
    };
    LayerSpec::Residual {
        name: Some(name),
        activation: Some(ActivationKind::Relu),
        body,
        shortcut,
    }
}

fn image_shape(input_shape: &[usize], architecture: &str) -> Result<[usize; 3], ModelError> {
    match input_shape {
        &[channels, height, width] => Ok([channels, height, width]),
        _ => Err(ModelError::invalid_spec(format!(
            "{architecture} needs input_shape = [C, H, W], got {input_shape:?}"
        ))),
    }
}

fn conv_layer(
    name: Option<&str>,
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    bias: bool,
) -> LayerSpec {
    LayerSpec::Conv2d {
        name: name.map(str::to_string),
        in_channels,
        out_channels,
        kernel_size: Pair::square(kernel),
        stride,
        padding,
        dilation: 1,
        groups: 1,
        bias,
    }
}

fn linear_layer(name: Option<&str>, in_features: usize, out_features: usize) -> LayerSpec {
    LayerSpec::Linear {
        name: name.map(str::to_string),
        in_features,
        out_features,
        bias: true,
    }
}

fn batch_norm(name: Option<&str>, num_features: usize) -> LayerSpec {
    LayerSpec::BatchNorm2d {
        name: name.map(str::to_string),
        num_features,
        eps: 1e-5,
        momentum: 0.1,
    }
}
