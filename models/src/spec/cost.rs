//! What the network of a spec costs, computed from the spec alone before anything is
//! allocated: each layer's output shape, parameters, constant tables and the values it keeps
//! per sample for a backward pass, all in checked arithmetic; the tensors its weights file must
//! hold; and the peak memory of a run as a function of batch size ([`ModelCost::memory`],
//! docs/limits.md).
//!
//! Sizes in a spec come from a file that may be hostile or mistyped (`hidden = [2^62]`, a
//! pooling kernel of 2^63 − 1, 10^12 classes). Every product here is checked: one that
//! overflows, or that exceeds [`MAX_LAYER_VALUES`], makes the spec invalid with the layer
//! named, so nothing downstream (building, loading, the native plan) ever sees a size that
//! wrapped. What is representable but too large for the machine is the caller's call: the
//! harness compares [`ModelCost::memory`] with the suite's `max_memory_mib`.

use std::fmt;

use super::layer::{LayerSpec, Pair};

/// The most values one layer may hold in any one tensor-sized quantity (weights, constants,
/// values kept per sample): 2^40, 4 TiB of f32. Far above any real model (a 10^11-parameter
/// network is under 2^37), and low enough that a batch of them times a few bytes cannot
/// overflow 128-bit arithmetic, nor a per-sample size 64-bit `usize` arithmetic at any batch
/// size that fits in memory.
pub const MAX_LAYER_VALUES: u64 = 1 << 40;

/// The peak memory a run may be estimated to need unless the suite sets `max_memory_mib`
/// (or `gauntlet train` gets `--max-memory-mib`): 16 GiB.
pub const DEFAULT_MAX_MEMORY_MIB: u64 = 16 * 1024;

/// Bytes of one f32 value.
const F32: u128 = 4;

/// What one layer of a spec costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerCost {
    /// The layer's tensor-name prefix, which is also how errors name it (`3`,
    /// `layer2.0.shortcut.0`, or its `name`).
    pub layer: String,
    /// Its `type` in the spec (`conv2d`, `linear`, …).
    pub kind: &'static str,
    /// Its per-sample output shape.
    pub output_shape: Vec<usize>,
    /// Trained values: weights, biases, batch-norm scale and shift.
    pub parameters: u64,
    /// Carried values: batch-norm running statistics.
    pub buffers: u64,
    /// Bytes of constant tables built with the layer (pooling index tables, the adaptive
    /// pooling matrix), independent of the batch.
    pub constant_bytes: u64,
    /// Values per sample the forward pass keeps for a backward pass: the output and every
    /// intermediate (pooling windows, convolution patches, activation masks).
    pub values_per_sample: u64,
}

/// A tensor the weights file of a spec must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedTensor {
    /// Its PyTorch `state_dict()` name.
    pub name: String,
    pub shape: Vec<usize>,
}

/// What the network of a spec costs: see [`crate::ModelSpec::cost`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCost {
    /// Values of one input sample.
    pub input_values: u64,
    /// Every layer, in build order, residual blocks followed by their branches' layers.
    pub layers: Vec<LayerCost>,
    /// Every tensor the weights must hold, in build order.
    pub tensors: Vec<ExpectedTensor>,
    /// Tensors a weights file may hold without being required (`num_batches_tracked`).
    pub optional_tensors: Vec<String>,
}

/// What a run does with the network, which decides what memory it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// Forward and input-gradient passes on constant weights (`gauntlet run`, `check`).
    Evaluate,
    /// Training with weight gradients and optimiser state (`gauntlet train`).
    Train,
}

/// The peak-memory estimate of a run, in bytes, by part (docs/limits.md has the formula).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryEstimate {
    pub usage: Usage,
    pub batch_size: usize,
    /// Copies of the weights and buffers: the file's bytes, the network's f32 values, and the
    /// native plan's copy (evaluation) or gradients and optimiser moments (training).
    pub weights: u128,
    /// Constant tables of the layers.
    pub constants: u128,
    /// What a batch keeps for its backward pass, gradients included.
    pub activations: u128,
    /// The copies of a batch of inputs the attack or training loop holds.
    pub inputs: u128,
    /// The evaluated data held in memory (4 bytes a value).
    pub dataset: u128,
    /// The layer contributing most (weights, constants and activations), with its bytes.
    pub largest_layer: Option<(String, &'static str, u128)>,
}

impl MemoryEstimate {
    /// The estimated peak, in bytes.
    pub fn total(&self) -> u128 {
        self.weights + self.constants + self.activations + self.inputs + self.dataset
    }
}

impl fmt::Display for MemoryEstimate {
    /// `1.2 GiB (weights 40 MiB, constants 1 KiB, activations at batch 128: …)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (weights {}, constant tables {}, activations and gradients at batch size {} {}, inputs {}, data {}",
            human_bytes(self.total()),
            human_bytes(self.weights),
            human_bytes(self.constants),
            self.batch_size,
            human_bytes(self.activations),
            human_bytes(self.inputs),
            human_bytes(self.dataset),
        )?;
        if let Some((layer, kind, bytes)) = &self.largest_layer {
            write!(
                f,
                "; the largest part is layer `{layer}` ({kind}) with {}",
                human_bytes(*bytes)
            )?;
        }
        f.write_str(")")
    }
}

/// Multiples of the weights' size each usage holds: evaluation keeps the file's bytes (up to
/// 8 a value, f64), the network's f32 copy and the native plan's f32 copy; training keeps the
/// f32 values, their gradients, two optimiser moments (Adam; SGD momentum uses one) and the
/// f32 bytes written at the end.
fn weight_copies(usage: Usage) -> u128 {
    match usage {
        Usage::Evaluate => 8 + F32 + F32,
        Usage::Train => 5 * F32,
    }
}

/// Copies of a batch of inputs held at once: an attack holds the clean batch, the current
/// iterate, its gradient, the best iterate so far, the random start and projection
/// temporaries (8); training holds the shuffled batch and its normalised copy (2).
fn input_copies(usage: Usage) -> u128 {
    match usage {
        Usage::Evaluate => 8,
        Usage::Train => 2,
    }
}

impl ModelCost {
    pub fn parameters(&self) -> u64 {
        self.layers.iter().map(|l| l.parameters).sum()
    }

    pub fn buffers(&self) -> u64 {
        self.layers.iter().map(|l| l.buffers).sum()
    }

    pub fn constant_bytes(&self) -> u64 {
        self.layers.iter().map(|l| l.constant_bytes).sum()
    }

    /// Values per sample kept for a backward pass, over all layers.
    pub fn values_per_sample(&self) -> u64 {
        self.layers.iter().map(|l| l.values_per_sample).sum()
    }

    /// The estimated peak memory of `usage` at `batch_size`, with `dataset_samples` samples
    /// held in memory:
    ///
    /// `weights · W + C + B · 8 · A + B · k · 4 · S + 4 · N · S`
    ///
    /// with W the weights and buffers (values), C the constant tables (bytes), A the values a
    /// sample keeps for backward (each kept once and once more as its gradient, 4 bytes each),
    /// S the input values of a sample, N the samples held, and the weight and input copies of
    /// `weight_copies` and `input_copies`. Each term is an upper estimate of what gauntlet
    /// allocates, not a measurement; docs/limits.md explains each.
    pub fn memory(
        &self,
        usage: Usage,
        batch_size: usize,
        dataset_samples: usize,
    ) -> MemoryEstimate {
        let batch = batch_size as u128;
        let weights_of = |layer: &LayerCost| {
            weight_copies(usage) * (u128::from(layer.parameters) + u128::from(layer.buffers))
        };
        let activations_of =
            |layer: &LayerCost| batch * 2 * F32 * u128::from(layer.values_per_sample);
        let largest_layer = self
            .layers
            .iter()
            .map(|layer| {
                let bytes =
                    weights_of(layer) + u128::from(layer.constant_bytes) + activations_of(layer);
                (layer.layer.clone(), layer.kind, bytes)
            })
            .max_by_key(|(_, _, bytes)| *bytes);
        MemoryEstimate {
            usage,
            batch_size,
            weights: self.layers.iter().map(weights_of).sum(),
            constants: self
                .layers
                .iter()
                .map(|l| u128::from(l.constant_bytes))
                .sum(),
            activations: self.layers.iter().map(activations_of).sum(),
            inputs: batch * input_copies(usage) * F32 * u128::from(self.input_values),
            dataset: dataset_samples as u128 * F32 * u128::from(self.input_values),
            largest_layer,
        }
    }
}

/// `512 B`, `3.0 KiB`, `1.5 GiB`, …, for messages.
pub fn human_bytes(bytes: u128) -> String {
    const UNITS: [&str; 7] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A checked product of sizes that must stay within [`MAX_LAYER_VALUES`]; the error says
/// what was being sized.
pub(crate) fn values(what: &str, factors: &[usize]) -> Result<u64, String> {
    let shown = || {
        factors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" × ")
    };
    let product = factors
        .iter()
        .try_fold(1u64, |acc, &f| acc.checked_mul(f as u64))
        .ok_or_else(|| format!("{what} ({}) overflows the size arithmetic", shown()))?;
    if product > MAX_LAYER_VALUES {
        let count = match factors {
            [_] => format!("{product} values"),
            _ => format!("{} = {product} values", shown()),
        };
        return Err(format!(
            "{what} ({count}) is beyond the {MAX_LAYER_VALUES} values (2^40) a layer may hold"
        ));
    }
    Ok(product)
}

/// Checked sum of counts already bounded by [`values`].
fn sum(what: &str, parts: &[u64]) -> Result<u64, String> {
    let total = parts
        .iter()
        .try_fold(0u64, |acc, &p| acc.checked_add(p))
        .ok_or_else(|| format!("{what} overflows the size arithmetic"))?;
    if total > MAX_LAYER_VALUES {
        return Err(format!(
            "{what} ({total} values) is beyond the {MAX_LAYER_VALUES} values (2^40) a layer may hold"
        ));
    }
    Ok(total)
}

/// The cost of a leaf layer (not a residual block) taking per-sample `input` to `output`,
/// whose shapes the caller has checked. Adds the tensors it needs under `prefix` to `tensors`.
pub(crate) fn leaf_cost(
    spec: &LayerSpec,
    prefix: &str,
    input: &[usize],
    output: &[usize],
    tensors: &mut Vec<ExpectedTensor>,
    optional: &mut Vec<String>,
) -> Result<LayerCost, String> {
    let output_values = values("the output per sample", output)?;
    let mut cost = LayerCost {
        layer: prefix.to_string(),
        kind: spec.kind(),
        output_shape: output.to_vec(),
        parameters: 0,
        buffers: 0,
        constant_bytes: 0,
        values_per_sample: output_values,
    };
    let mut expect = |suffix: &str, shape: Vec<usize>| {
        tensors.push(ExpectedTensor {
            name: format!("{prefix}.{suffix}"),
            shape,
        });
    };
    match spec {
        LayerSpec::Conv2d {
            in_channels,
            out_channels,
            kernel_size,
            groups,
            bias,
            ..
        } => {
            let per_group = in_channels / groups.max(&1);
            let weight = [
                *out_channels,
                per_group,
                kernel_size.height,
                kernel_size.width,
            ];
            let weights = values("the weight", &weight)?;
            let bias_values = if *bias { *out_channels as u64 } else { 0 };
            cost.parameters = sum("the weight and bias", &[weights, bias_values])?;
            // The patches (im2col) of a sample: every input channel at every kernel offset at
            // every output position.
            let patches = values(
                "the convolution patches per sample",
                &[
                    *in_channels,
                    kernel_size.height,
                    kernel_size.width,
                    output[1],
                    output[2],
                ],
            )?;
            cost.values_per_sample = sum("the values kept per sample", &[output_values, patches])?;
            expect("weight", weight.to_vec());
            if *bias {
                expect("bias", vec![*out_channels]);
            }
        }
        LayerSpec::Linear {
            in_features,
            out_features,
            bias,
            ..
        } => {
            let weights = values("the weight", &[*out_features, *in_features])?;
            let bias_values = if *bias { *out_features as u64 } else { 0 };
            cost.parameters = sum("the weight and bias", &[weights, bias_values])?;
            expect("weight", vec![*out_features, *in_features]);
            if *bias {
                expect("bias", vec![*out_features]);
            }
        }
        // The output and a mask (ReLU's select, dropout's mask) or derivative.
        LayerSpec::Relu { .. }
        | LayerSpec::Gelu { .. }
        | LayerSpec::Tanh { .. }
        | LayerSpec::Sigmoid { .. }
        | LayerSpec::Dropout { .. } => {
            cost.values_per_sample = sum("the values kept per sample", &[output_values; 2])?;
        }
        LayerSpec::MaxPool2d { kernel_size, .. } => {
            pool_cost(&mut cost, *kernel_size, input, output, 2)?;
        }
        LayerSpec::AvgPool2d { kernel_size, .. } => {
            pool_cost(&mut cost, *kernel_size, input, output, 1)?;
        }
        LayerSpec::AdaptiveAvgPool2d { .. } => {
            // The pooling matrix: (height · width) × (out_height · out_width) f32.
            let matrix = values(
                "the adaptive pooling matrix",
                &[input[1], input[2], output[1], output[2]],
            )?;
            cost.constant_bytes = matrix * 4;
        }
        LayerSpec::BatchNorm2d { num_features, .. }
        | LayerSpec::BatchNorm1d { num_features, .. } => {
            let channels = *num_features as u64;
            cost.parameters = sum("the scale and shift", &[channels, channels])?;
            cost.buffers = cost.parameters;
            cost.values_per_sample = sum("the values kept per sample", &[output_values; 2])?;
            for suffix in ["weight", "bias", "running_mean", "running_var"] {
                expect(suffix, vec![*num_features]);
            }
            optional.push(format!("{prefix}.num_batches_tracked"));
        }
        // A view of its input.
        LayerSpec::Flatten { .. } => cost.values_per_sample = 0,
        LayerSpec::Residual { .. } => {
            return Err("internal error: residual blocks are costed by the spec walker".into())
        }
    }
    Ok(cost)
}

/// Pooling over windows: a `u32` index table of every window's positions (a constant), and
/// per sample the gathered windows (`window_copies` window-sized tensors: max pooling also
/// broadcasts the index table to find each argmax), the plane copy with a padding column and
/// the per-window results.
fn pool_cost(
    cost: &mut LayerCost,
    kernel: Pair,
    input: &[usize],
    output: &[usize],
    window_copies: u64,
) -> Result<(), String> {
    let table = values(
        "the pooling index table",
        &[output[1], output[2], kernel.height, kernel.width],
    )?;
    // Plane indices are u32, with one extra index for the padding sentinel.
    let plane = values("the input plane", &[input[1], input[2]])?;
    if plane >= u64::from(u32::MAX) {
        return Err(format!(
            "an input plane of {} × {} positions is too large to index with 32 bits",
            input[1], input[2]
        ));
    }
    cost.constant_bytes = table * 4;
    let windows = values(
        "the pooling windows per sample",
        &[input[0], output[1], output[2], kernel.height, kernel.width],
    )?;
    let planes = values(
        "the padded input planes per sample",
        &[input[0], plane as usize + 1],
    )?;
    let mut parts = vec![windows; window_copies as usize];
    parts.extend([planes, cost.values_per_sample, cost.values_per_sample]);
    cost.values_per_sample = sum("the values kept per sample", &parts)?;
    Ok(())
}

/// The cost of a residual block's own sum and activation (its branches are listed
/// separately).
pub(crate) fn residual_cost(prefix: &str, output: &[usize]) -> Result<LayerCost, String> {
    let output_values = values("the output per sample", output)?;
    Ok(LayerCost {
        layer: prefix.to_string(),
        kind: "residual",
        output_shape: output.to_vec(),
        parameters: 0,
        buffers: 0,
        constant_bytes: 0,
        values_per_sample: sum("the values kept per sample", &[output_values; 2])?,
    })
}
