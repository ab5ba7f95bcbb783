//! A suite's TorchScript model (`[model] weights = "model.pt"` plus `input_shape`, no `spec`):
//! run by libtorch when gauntlet is built with `--features torch`, refused with the rebuild
//! command otherwise (docs/models.md).

use anyhow::Result;
use candle_core::Device;
use gauntlet_models::spec::ModelCost;
use gauntlet_models::Model;

use crate::suite::Suite;

/// Loads the TorchScript archive in `weights` (already verified by `provenance`: the scanner
/// refused it on any high finding, and `TorchScriptModel` scans it again before libtorch sees
/// these exact bytes) with the suite's `model.input_shape`, and checks the memory cap.
#[cfg(feature = "torch")]
pub fn load(suite: &Suite, weights: &[u8], device: &Device) -> Result<(Box<dyn Model>, ModelCost)> {
    use anyhow::{bail, Context};
    use gauntlet_models::spec::LayerCost;
    use gauntlet_models::TorchScriptModel;

    let path = suite.model_weights.display();
    let Some(shape) = &suite.model_input_shape else {
        bail!(
            "`model.input_shape` is required: `{path}` is a TorchScript archive, which does not \
             declare its input shape (e.g. `input_shape = [3, 32, 32]`)"
        );
    };
    if !device.is_cpu() {
        bail!("`{path}` is a TorchScript model, which runs on libtorch's CPU backend; use `device = \"cpu\"`");
    }
    if suite.candle_kernels {
        bail!("`--candle-kernels` does not apply to `{path}`: libtorch runs a TorchScript model");
    }
    let model = TorchScriptModel::from_bytes(weights, &path, shape)
        .with_context(|| format!("cannot load the TorchScript model `{path}`"))?
        .with_source(path.clone());
    let info = model.info();
    // The parameters and the input are known; what libtorch keeps per sample for its backward
    // pass is not, so the estimate counts no activations (docs/models.md).
    let cost = ModelCost {
        input_values: shape.iter().map(|&d| d as u64).product(),
        layers: vec![LayerCost {
            layer: "module".to_string(),
            kind: "torchscript",
            output_shape: vec![info.num_classes],
            parameters: model.parameter_count(),
            buffers: 0,
            constant_bytes: 0,
            values_per_sample: 0,
        }],
        tensors: Vec::new(),
        optional_tensors: Vec::new(),
    };
    crate::budget::check_suite_memory(suite, &cost, 0)
        .with_context(|| format!("refusing TorchScript model `{path}`"))?;
    Ok((Box::new(model), cost))
}

/// Without the `torch` feature a TorchScript archive is refused with the way to run it.
#[cfg(not(feature = "torch"))]
pub fn load(
    suite: &Suite,
    _weights: &[u8],
    _device: &Device,
) -> Result<(Box<dyn Model>, ModelCost)> {
    anyhow::bail!(
        "`{}` is a TorchScript archive, and this gauntlet was built without TorchScript support: \
         rebuild with `--features torch` (libtorch from a PyTorch install, docs/models.md), or \
         export the model to ONNX (`torch.onnx.export`), which loads without it",
        suite.model_weights.display()
    )
}

/// A TorchScript file for `gauntlet inspect`: loaded with `--input-shape`, which it needs.
#[cfg(feature = "torch")]
pub fn load_file(path: &std::path::Path, input_shape: Option<&[usize]>) -> Result<Box<dyn Model>> {
    let Some(shape) = input_shape else {
        anyhow::bail!(
            "a TorchScript archive declares no input shape; give it with `--input-shape`, e.g. \
             `--input-shape 3,32,32`"
        );
    };
    Ok(Box::new(gauntlet_models::TorchScriptModel::from_file(
        path, shape,
    )?))
}

/// Without the `torch` feature a TorchScript file does not load.
#[cfg(not(feature = "torch"))]
pub fn load_file(
    _path: &std::path::Path,
    _input_shape: Option<&[usize]>,
) -> Result<Box<dyn Model>> {
    anyhow::bail!(
        "this gauntlet was built without TorchScript support (rebuild with `--features torch`)"
    )
}
