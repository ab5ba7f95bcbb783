//! What a model file holds, without building a network: its format (by content), its stored
//! tensors (name, shape, dtype), and — for a bare state dict — a starting spec. Used by
//! `gauntlet inspect` and `gauntlet spec --from`.

use std::fmt::Write as _;

use crate::checkpoint;
use crate::onnx;
use crate::ModelError;

/// A model file's format, identified by content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredFormat {
    Safetensors,
    /// `torch.save` zip archive (PyTorch ≥ 1.6).
    TorchZip,
    /// `torch.save(..., _use_new_zipfile_serialization=False)`.
    TorchLegacy,
    Onnx,
    /// A `torch.jit.save` archive (code and constants): needs the `torch` feature.
    TorchScript,
}

impl StoredFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            StoredFormat::Safetensors => "safetensors",
            StoredFormat::TorchZip => "pytorch checkpoint (zip)",
            StoredFormat::TorchLegacy => "pytorch checkpoint (legacy)",
            StoredFormat::Onnx => "onnx",
            StoredFormat::TorchScript => "torchscript",
        }
    }

    /// Identifies `bytes`, or `None` when gauntlet reads no such model format.
    pub fn detect(bytes: &[u8]) -> Option<Self> {
        use gauntlet_artifact::scan::{identify, FileKind};
        match identify(bytes) {
            FileKind::Safetensors => Some(StoredFormat::Safetensors),
            FileKind::Onnx => Some(StoredFormat::Onnx),
            FileKind::Pickle => Some(StoredFormat::TorchLegacy),
            FileKind::Zip => {
                let members = gauntlet_artifact::zip::members(bytes);
                let has = |suffix: &str| members.iter().any(|(name, _)| name.ends_with(suffix));
                if has("constants.pkl") || members.iter().any(|(name, _)| name.contains("/code/")) {
                    Some(StoredFormat::TorchScript)
                } else if has("data.pkl") {
                    Some(StoredFormat::TorchZip)
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

/// One stored tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: String,
}

/// The tensors a safetensors file, a PyTorch checkpoint or an ONNX model stores, in state-dict
/// order (a checkpoint is scanned first and read without executing anything; its `module.`
/// prefix is dropped; an ONNX model's tensors are named as its compiled spec names them), with
/// notes on what was found where.
pub fn stored_tensors(
    bytes: &[u8],
    name: &str,
) -> Result<(Vec<StoredTensor>, Vec<String>), ModelError> {
    match StoredFormat::detect(bytes) {
        Some(StoredFormat::Safetensors) => {
            let file = safetensors::SafeTensors::deserialize(bytes)
                .map_err(|source| ModelError::SafetensorsFormat { source })?;
            let mut tensors: Vec<StoredTensor> = file
                .tensors()
                .into_iter()
                .map(|(name, view)| StoredTensor {
                    name,
                    shape: view.shape().to_vec(),
                    dtype: format!("{:?}", view.dtype()).to_lowercase(),
                })
                .collect();
            // safetensors sorts by name; state-dict order is what a starting spec needs, and
            // numeric prefixes (`10.weight` after `9.weight`) sort naturally here.
            tensors.sort_by_key(|a| natural_key(&a.name));
            Ok((tensors, Vec::new()))
        }
        Some(StoredFormat::TorchZip | StoredFormat::TorchLegacy) => {
            let state = checkpoint::read_state_dict(bytes, name)?;
            let mut notes = Vec::new();
            if !state.nesting.is_empty() {
                notes.push(format!(
                    "the state dict is nested under {}",
                    state
                        .nesting
                        .iter()
                        .map(|key| format!("`{key}`"))
                        .collect::<Vec<_>>()
                        .join(" → ")
                ));
            }
            if state.dropped_module_prefix {
                notes.push(
                    "the `module.` prefix (DataParallel) was dropped from every name".to_string(),
                );
            }
            let tensors = state
                .tensors
                .into_iter()
                .map(|(name, tensor)| StoredTensor {
                    name,
                    shape: tensor.shape,
                    dtype: tensor.dtype.name().to_string(),
                })
                .collect();
            Ok((tensors, notes))
        }
        Some(StoredFormat::Onnx) => {
            let compiled = onnx::compile_onnx(bytes, name, None)?;
            let (tensors, _) = stored_tensors(&compiled.safetensors, name)?;
            Ok((tensors, compiled.notes))
        }
        // The module's parameters as libtorch lists them, after the scanner.
        #[cfg(feature = "torch")]
        Some(StoredFormat::TorchScript) => Ok((
            crate::torchscript::archive_parameters(bytes, name)?,
            vec![
                "TorchScript: the parameters as libtorch lists them (buffers not shown)"
                    .to_string(),
            ],
        )),
        #[cfg(not(feature = "torch"))]
        Some(StoredFormat::TorchScript) => Err(ModelError::TorchScript {
            reason: "this gauntlet was built without the `torch` feature, which reads \
                     TorchScript through libtorch (docs/models.md)"
                .to_string(),
        }),
        None => Err(ModelError::Checkpoint {
            reason: "not safetensors, a PyTorch checkpoint or ONNX (by content)".to_string(),
        }),
    }
}

/// `layer10.weight` sorts after `layer9.weight`.
fn natural_key(name: &str) -> Vec<(u64, String)> {
    name.split('.')
        .map(|part| match part.parse::<u64>() {
            Ok(number) => (number, String::new()),
            Err(_) => (u64::MAX, part.to_string()),
        })
        .collect()
}

/// A starting spec for a state dict: one layer per weighted module, in state-dict order, named
/// exactly as the state dict names it, so the weights load as they are. A state dict does not
/// record activations, pooling, padding, strides or the input size; the TOML says so in
/// comments where the user must fill them in, and the spec is not validated.
pub fn starting_spec(tensors: &[StoredTensor]) -> String {
    let mut modules: Vec<(String, Vec<&StoredTensor>)> = Vec::new();
    for tensor in tensors {
        let (prefix, _) = tensor.name.rsplit_once('.').unwrap_or(("", &tensor.name));
        match modules.last_mut() {
            Some((last, members)) if last == prefix => members.push(tensor),
            _ => modules.push((prefix.to_string(), vec![tensor])),
        }
    }
    let mut layers = String::new();
    let mut input_channels = None;
    let mut classes = None;
    let mut seen_conv = false;
    let mut flattened = false;
    for (prefix, members) in &modules {
        let find = |suffix: &str| {
            members
                .iter()
                .find(|t| t.name.ends_with(&format!(".{suffix}")) || t.name == suffix)
        };
        let weight = find("weight");
        let bias = find("bias").is_some();
        let _ = writeln!(layers);
        match (weight.map(|w| w.shape.as_slice()), find("running_mean")) {
            (Some(shape), Some(_)) => {
                let kind = if seen_conv && !flattened {
                    "batch_norm2d"
                } else {
                    "batch_norm1d"
                };
                let _ = writeln!(
                    layers,
                    "[[layers]]\ntype = \"{kind}\"\nname = \"{prefix}\"\nnum_features = {}",
                    shape[0]
                );
            }
            (Some([out, inp, kh, kw]), None) => {
                input_channels.get_or_insert(*inp);
                seen_conv = true;
                let _ = writeln!(
                    layers,
                    "# check stride, padding and dilation (a state dict does not record them)"
                );
                let _ = writeln!(
                    layers,
                    "[[layers]]\ntype = \"conv2d\"\nname = \"{prefix}\"\nin_channels = {inp}\nout_channels = {out}\nkernel_size = [{kh}, {kw}]\npadding = 0\nstride = 1{}",
                    if bias { "" } else { "\nbias = false" }
                );
                let _ = writeln!(
                    layers,
                    "# add the batch norm, activation and pooling that follow, if any"
                );
            }
            (Some([out, inp]), None) => {
                if seen_conv && !flattened {
                    flattened = true;
                    let _ = writeln!(layers, "# add the pooling before the classifier, if any\n[[layers]]\ntype = \"flatten\"\n");
                }
                if input_channels.is_none() {
                    input_channels = Some(*inp);
                    flattened = true;
                }
                classes = Some(*out);
                let _ = writeln!(
                    layers,
                    "[[layers]]\ntype = \"linear\"\nname = \"{prefix}\"\nin_features = {inp}\nout_features = {out}{}",
                    if bias { "" } else { "\nbias = false" }
                );
            }
            _ => {
                let names: Vec<&str> = members.iter().map(|t| t.name.as_str()).collect();
                let _ = writeln!(layers, "# not mapped to a layer: {}", names.join(", "));
            }
        }
    }
    let channels = input_channels.unwrap_or(1);
    let input_shape = if seen_conv {
        format!("[{channels}, 32, 32]  # check: a state dict does not record the input size")
    } else {
        format!("[{channels}]")
    };
    format!(
        "# A starting spec written by `gauntlet spec --from` from a state dict's tensor names and\n\
         # shapes. Fill in what a state dict does not record (marked `check`): activations,\n\
         # pooling, padding, strides, residual structure; then check it with\n\
         # `gauntlet inspect WEIGHTS --spec SPEC`.\n\
         architecture = \"sequential\"\ninput_shape = {input_shape}\nnum_classes = {}\n{layers}",
        classes.unwrap_or(0)
    )
}
