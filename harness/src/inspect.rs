//! Bringing your own model: `gauntlet inspect MODEL` (what a model file is and how gauntlet will
//! run it), `gauntlet spec --from MODEL` (the spec that matches an ONNX graph, or a starting
//! spec for a state dict), and loading a self-describing model (ONNX) from a suite.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use gauntlet_models::describe::{starting_spec, stored_tensors, StoredFormat};
use gauntlet_models::{Model, Network};

use crate::suite::Source;

/// A suite's model without a `spec`: an ONNX graph, compiled with its external data looked up
/// in its own folder. Anything else needs a spec, and the error says how to get one.
pub fn self_describing_model(weights: &[u8], source: &Source, device: &Device) -> Result<Network> {
    let format = StoredFormat::detect(weights);
    match (format, source) {
        (Some(StoredFormat::Onnx), Source::File(path)) => {
            let folder = path.parent().unwrap_or(Path::new("."));
            let compiled = gauntlet_models::onnx::compile_onnx(
                weights,
                &path.display().to_string(),
                Some(folder),
            )
            .with_context(|| format!("cannot load the ONNX model `{}`", path.display()))?;
            Network::from_compiled_onnx(&compiled, device)
                .with_context(|| format!("cannot load the ONNX model `{}`", path.display()))
        }
        (format, _) => bail!(
            "`model.spec` is required: `{}` is {}, which stores weights but no architecture \
             (`gauntlet spec --from {}` writes a starting spec)",
            source.display(),
            format.map_or("no model format gauntlet reads", StoredFormat::as_str),
            source.display()
        ),
    }
}

/// The model a file (plus an optional spec, or a TorchScript model's input shape) loads as,
/// if it loads.
fn load(
    path: &Path,
    spec: Option<&Path>,
    format: Option<StoredFormat>,
    input_shape: Option<&[usize]>,
) -> Result<Box<dyn Model>> {
    match (spec, format) {
        (None, Some(StoredFormat::TorchScript)) => crate::torchscript::load_file(path, input_shape),
        (None, Some(StoredFormat::Onnx)) => {
            Ok(Box::new(Network::from_onnx_file(path, &Device::Cpu)?))
        }
        (Some(spec), _) => Ok(Box::new(Network::load(spec, path, &Device::Cpu)?)),
        (None, _) => bail!("no spec given (--spec); a state dict stores no architecture"),
    }
}

/// `gauntlet inspect`: format, hashes, tensors, and — when it loads — input shape, classes,
/// parameter count and kernel path.
pub fn inspect(path: &Path, spec: Option<&Path>, input_shape: Option<&[usize]>) -> Result<String> {
    let bytes = gauntlet_files::read_bounded(path, gauntlet_files::limits::WEIGHTS)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let format = StoredFormat::detect(&bytes);
    let name = path.display().to_string();
    let mut out = String::new();
    writeln!(out, "file:       {name}")?;
    writeln!(
        out,
        "format:     {}",
        format.map_or(
            "unknown (not a model format gauntlet reads)",
            StoredFormat::as_str
        )
    )?;
    writeln!(out, "size:       {} bytes", bytes.len())?;
    writeln!(out, "sha256:     {}", crate::load::sha256_hex(&bytes))?;
    if let Some(spec) = spec {
        let spec_bytes = gauntlet_files::read_bounded(spec, gauntlet_files::limits::MODEL_SPEC)?;
        writeln!(
            out,
            "spec:       {} (sha256 {})",
            spec.display(),
            crate::load::sha256_hex(&spec_bytes)
        )?;
    }
    let (tensors, notes) = match stored_tensors(&bytes, &name) {
        Ok(read) => read,
        // Without the `torch` feature a TorchScript archive's tensors cannot be listed; the
        // header above and the reason below are still worth printing.
        Err(error) if format == Some(StoredFormat::TorchScript) && cfg!(not(feature = "torch")) => {
            (Vec::new(), vec![error.to_string()])
        }
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read the tensors of `{name}`"))
        }
    };
    for note in notes {
        writeln!(out, "note:       {note}")?;
    }
    match load(path, spec, format, input_shape) {
        Ok(model) => {
            let info = model.info();
            writeln!(out, "input:      [batch, {}]", join(&info.input_shape))?;
            writeln!(out, "classes:    {}", info.num_classes)?;
            if let Some(names) = &info.class_names {
                writeln!(out, "names:      {}", names.join(", "))?;
            }
            if let Some(parameters) = info.parameters {
                writeln!(out, "parameters: {parameters}")?;
            }
            writeln!(out, "kernels:    {}", model.kernel_path())?;
        }
        Err(error) => writeln!(out, "loads:      no — {error:#}")?,
    }
    let elements: usize = tensors
        .iter()
        .map(|t| t.shape.iter().product::<usize>())
        .sum();
    writeln!(out, "tensors:    {} ({elements} values)", tensors.len())?;
    let width = tensors
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(out, "  {:width$}  {:6}  shape", "name", "dtype")?;
    for tensor in &tensors {
        writeln!(
            out,
            "  {:width$}  {:6}  [{}]",
            tensor.name,
            tensor.dtype,
            join(&tensor.shape)
        )?;
    }
    Ok(out)
}

/// `gauntlet spec --from`: the compiled spec of an ONNX graph, or a starting spec for a state
/// dict.
pub fn spec_from(path: &Path) -> Result<String> {
    let bytes = gauntlet_files::read_bounded(path, gauntlet_files::limits::WEIGHTS)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let name = path.display().to_string();
    match StoredFormat::detect(&bytes) {
        Some(StoredFormat::Onnx) => {
            let folder = path.parent().unwrap_or(Path::new("."));
            let compiled = gauntlet_models::onnx::compile_onnx(&bytes, &name, Some(folder))
                .with_context(|| format!("cannot compile `{name}`"))?;
            let mut out = format!(
                "# The spec gauntlet compiled `{name}` (ONNX opset {}) to; the ONNX file itself is\n\
                 # what a suite loads (`[model] weights = \"…\"` without `spec`).\n",
                compiled.opset
            );
            for note in &compiled.notes {
                writeln!(out, "# note: {note}")?;
            }
            out.push_str(&compiled.spec.to_toml_string()?);
            Ok(out)
        }
        _ => {
            let (tensors, _) = stored_tensors(&bytes, &name)
                .with_context(|| format!("cannot read the tensors of `{name}`"))?;
            Ok(starting_spec(&tensors))
        }
    }
}

fn join(values: &[usize]) -> String {
    values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
