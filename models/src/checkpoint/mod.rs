//! PyTorch checkpoints (`torch.save` of a state dict: `.pt`, `.pth`, `.bin`) read without
//! Python and without executing anything.
//!
//! Both of `torch.save`'s formats are read: the zip archive (PyTorch ≥ 1.6: `<prefix>/data.pkl`
//! plus one member per storage under `<prefix>/data/`) and the legacy stream
//! (`_use_new_zipfile_serialization=False`: five concatenated pickles — magic number, protocol,
//! system info, the object, the storage keys — followed by each storage's element count and
//! bytes). Every file first goes through the scanner (`gauntlet-artifact`), which reads it
//! exactly as it reads any model file; a high or critical finding refuses the file. The object
//! pickle is then run by a data-only machine (`unpickle.rs`) that honours only the
//! tensor-rebuild globals. The state dict is found inside the usual nestings
//! (`{"state_dict": …}`, `{"model": …}`, …), a `module.` prefix from `DataParallel` is dropped,
//! and every tensor is gathered through its strides and offset from its (possibly shared)
//! storage into a contiguous buffer, bounds-checked against the storage.

mod unpickle;

use std::collections::HashMap;

use gauntlet_artifact::{Location, Severity};

use crate::ModelError;
pub(crate) use unpickle::StorageDtype;
use unpickle::{TensorRef, Value};

/// `torch.save`'s legacy magic number, 0x1950a86a20f9469cfc6c, as LONG1 stores it.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// The protocol version the legacy format writes after its magic number.
const LEGACY_PROTOCOL: i64 = 1001;

/// Keys under which training scripts commonly nest the state dict, tried in this order.
const NESTING_KEYS: &[&str] = &["state_dict", "model_state_dict", "model", "net", "module"];

/// One tensor of a checkpoint's state dict, contiguous, in its stored dtype (little-endian).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CheckpointTensor {
    pub dtype: StorageDtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// A checkpoint's state dict, in the order the file lists it.
#[derive(Debug, Clone)]
pub(crate) struct StateDict {
    pub tensors: Vec<(String, CheckpointTensor)>,
    /// Where the state dict was found (`state_dict`, `model`, or empty for the top level).
    pub nesting: Vec<String>,
    /// Whether a `module.` prefix was dropped from every name.
    pub dropped_module_prefix: bool,
}

/// Whether `bytes` look like a PyTorch checkpoint (by content: a zip archive with a
/// `data.pkl`, or a pickle stream), as opposed to safetensors or ONNX.
pub(crate) fn looks_like(bytes: &[u8]) -> bool {
    match gauntlet_artifact::scan::identify(bytes) {
        gauntlet_artifact::scan::FileKind::Zip => gauntlet_artifact::zip::members(bytes)
            .iter()
            .any(|(name, _)| name.ends_with("data.pkl")),
        gauntlet_artifact::scan::FileKind::Pickle => true,
        _ => false,
    }
}

fn error(reason: impl Into<String>) -> ModelError {
    ModelError::Checkpoint {
        reason: reason.into(),
    }
}

/// The scanner's high and critical findings for `bytes` (a model file named `name`), as text:
/// what refuses a checkpoint (or a TorchScript archive) before anything in it is read.
pub(crate) fn scanner_refusals(bytes: &[u8], name: &str) -> Vec<String> {
    let location = Location {
        file: name.to_string(),
        ..Location::default()
    };
    gauntlet_artifact::scan::scan_bytes_in(bytes, &location, true)
        .into_iter()
        .filter(|finding| finding.severity >= Severity::High)
        .map(|finding| {
            let member = finding
                .location
                .member
                .as_deref()
                .map(|m| format!(" in `{m}`"))
                .unwrap_or_default();
            format!(
                "{} [{}]{member}: {}",
                finding.severity,
                finding.rule.as_str(),
                finding.message
            )
        })
        .collect()
}

/// Scans `bytes` and reads the state dict. `name` is the file's name for the scanner's
/// findings (a model extension makes unidentifiable content high, as everywhere).
pub(crate) fn read_state_dict(bytes: &[u8], name: &str) -> Result<StateDict, ModelError> {
    let refused = scanner_refusals(bytes, name);
    if !refused.is_empty() {
        return Err(ModelError::UnsafeCheckpoint { findings: refused });
    }
    let (object, storages) = match gauntlet_artifact::scan::identify(bytes) {
        gauntlet_artifact::scan::FileKind::Zip => read_zip(bytes)?,
        gauntlet_artifact::scan::FileKind::Pickle => read_legacy(bytes)?,
        _ => {
            return Err(error(
                "neither a zip archive nor a pickle stream: not a PyTorch checkpoint",
            ))
        }
    };
    let (nesting, dict) = find_state_dict(&object)?;
    let mut tensors = Vec::with_capacity(dict.len());
    for (name, tensor) in dict {
        tensors.push((name.clone(), gather(&name, tensor, &storages)?));
    }
    let dropped_module_prefix =
        !tensors.is_empty() && tensors.iter().all(|(name, _)| name.starts_with("module."));
    if dropped_module_prefix {
        for (name, _) in &mut tensors {
            name.drain(.."module.".len());
        }
    }
    Ok(StateDict {
        tensors,
        nesting,
        dropped_module_prefix,
    })
}

fn read_zip(bytes: &[u8]) -> Result<(Value, HashMap<String, Vec<u8>>), ModelError> {
    let members = gauntlet_artifact::zip::read_members(bytes)
        .map_err(|reason| error(format!("unreadable zip archive: {reason}")))?;
    let pickles: Vec<&str> = members
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| {
            name.strip_suffix("data.pkl")
                .is_some_and(|prefix| prefix.ends_with('/') && prefix.matches('/').count() == 1)
        })
        .collect();
    let [pickle_name] = pickles.as_slice() else {
        return Err(error(format!(
            "a PyTorch archive has exactly one `<folder>/data.pkl`; this one has {}",
            pickles.len()
        )));
    };
    let prefix = pickle_name.trim_end_matches("data.pkl").to_string();
    let member = |name: &str| {
        members
            .iter()
            .find(|(member, _)| member == name)
            .map(|(_, data)| data.as_ref())
    };
    if let Some(order) = member(&format!("{prefix}byteorder")) {
        if order != b"little" {
            return Err(error(format!(
                "the checkpoint was written on a `{}`-endian machine; gauntlet reads \
                 little-endian storages only",
                String::from_utf8_lossy(order)
            )));
        }
    }
    let pickle = member(pickle_name).unwrap_or_default();
    let (object, _) =
        unpickle::unpickle(pickle).map_err(|reason| error(format!("{pickle_name}: {reason}")))?;
    let data_prefix = format!("{prefix}data/");
    let storages = members
        .iter()
        .filter_map(|(name, data)| {
            name.strip_prefix(&data_prefix)
                .map(|key| (key.to_string(), data.to_vec()))
        })
        .collect();
    Ok((object, storages))
}

fn read_legacy(bytes: &[u8]) -> Result<(Value, HashMap<String, Vec<u8>>), ModelError> {
    let mut at = 0usize;
    let mut next = |what: &str| -> Result<Value, ModelError> {
        let rest = bytes.get(at..).unwrap_or_default();
        let (value, used) = unpickle::unpickle(rest)
            .map_err(|reason| error(format!("the legacy checkpoint's {what}: {reason}")))?;
        at += used;
        Ok(value)
    };
    let magic = next("magic number")?;
    if magic != Value::Bytes(LEGACY_MAGIC.to_vec()) {
        return Err(error(
            "a pickle that is not a `torch.save` file (no legacy magic number): gauntlet reads \
             state dicts saved with torch.save",
        ));
    }
    if next("protocol version")? != Value::Int(LEGACY_PROTOCOL) {
        return Err(error("an unknown legacy torch.save protocol version"));
    }
    if let Value::Dict(info) = next("system info")? {
        let little = info
            .iter()
            .find(|(key, _)| *key == Value::Str("little_endian".to_string()))
            .map(|(_, value)| value.clone());
        if little == Some(Value::Bool(false)) {
            return Err(error(
                "the checkpoint was written on a big-endian machine; gauntlet reads \
                 little-endian storages only",
            ));
        }
    }
    let object = next("object")?;
    let keys = next("storage keys")?;
    let Value::List(keys) = keys else {
        return Err(error("the legacy checkpoint's storage keys are not a list"));
    };
    let element_sizes = storage_element_sizes(&object);
    let mut storages = HashMap::new();
    for key in keys {
        let Value::Str(key) = key else {
            return Err(error("a legacy storage key that is not a string"));
        };
        let count_bytes = bytes
            .get(at..at + 8)
            .ok_or_else(|| error(format!("storage `{key}` is cut off (no element count)")))?;
        let mut count = [0u8; 8];
        count.copy_from_slice(count_bytes);
        let count = u64::from_le_bytes(count);
        let size = *element_sizes.get(&key).ok_or_else(|| {
            error(format!(
                "storage `{key}` is listed but no tensor refers to it"
            ))
        })?;
        let len = count
            .checked_mul(size as u64)
            .and_then(|len| usize::try_from(len).ok())
            .ok_or_else(|| error(format!("storage `{key}` declares an impossible size")))?;
        let data = bytes
            .get(at + 8..)
            .and_then(|rest| rest.get(..len))
            .ok_or_else(|| error(format!("storage `{key}` runs past the end of the file")))?;
        storages.insert(key, data.to_vec());
        at += 8 + len;
    }
    Ok((object, storages))
}

/// The element size of every storage root the object refers to.
fn storage_element_sizes(object: &Value) -> HashMap<String, usize> {
    let mut sizes = HashMap::new();
    visit_tensors(object, &mut |tensor| {
        let key = match &tensor.storage.view {
            Some((root, _, _)) => root.clone(),
            None => tensor.storage.key.clone(),
        };
        sizes.insert(key, tensor.storage.dtype.size());
    });
    sizes
}

fn visit_tensors(value: &Value, visit: &mut dyn FnMut(&TensorRef)) {
    match value {
        Value::Tensor(tensor) => visit(tensor),
        Value::Tuple(items) | Value::List(items) => {
            items.iter().for_each(|item| visit_tensors(item, visit))
        }
        Value::Dict(pairs) => pairs
            .iter()
            .for_each(|(_, item)| visit_tensors(item, visit)),
        _ => {}
    }
}

/// A dict whose every value is a tensor, keyed by strings.
fn as_state_dict(value: &Value) -> Option<Vec<(String, &TensorRef)>> {
    let Value::Dict(pairs) = value else {
        return None;
    };
    if pairs.is_empty() {
        return None;
    }
    pairs
        .iter()
        .map(|(key, value)| match (key, value) {
            (Value::Str(key), Value::Tensor(tensor)) => Some((key.clone(), tensor)),
            _ => None,
        })
        .collect()
}

/// The nesting keys on the way to a state dict, and its entries.
type Found<'a> = (Vec<String>, Vec<(String, &'a TensorRef)>);

fn find_state_dict(object: &Value) -> Result<Found<'_>, ModelError> {
    if let Some(dict) = as_state_dict(object) {
        return Ok((Vec::new(), dict));
    }
    let mut at = object;
    let mut path = Vec::new();
    // Up to three levels (`{"model": {"state_dict": …}}` is seen in the wild).
    for _ in 0..3 {
        let Value::Dict(pairs) = at else { break };
        let nested = NESTING_KEYS.iter().find_map(|wanted| {
            pairs.iter().find_map(|(key, value)| match key {
                Value::Str(key) if key == wanted => Some((key.clone(), value)),
                _ => None,
            })
        });
        let Some((key, value)) = nested else { break };
        path.push(key);
        if let Some(dict) = as_state_dict(value) {
            return Ok((path, dict));
        }
        at = value;
    }
    let keys = match object {
        Value::Dict(pairs) => pairs
            .iter()
            .map(|(key, value)| match key {
                Value::Str(key) => format!("`{key}` ({})", describe(value)),
                _ => format!("a {} key", describe(key)),
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => format!("the file holds a {}", describe(other)),
    };
    Err(error(format!(
        "no state dict (a dict of name → tensor) at the top level or under {}; found: {keys}",
        NESTING_KEYS
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

fn describe(value: &Value) -> String {
    match value {
        Value::Dict(pairs) => format!("dict of {}", pairs.len()),
        Value::Tensor(tensor) => format!("tensor {:?}", tensor.shape),
        Value::Str(_) => "str".to_string(),
        Value::Int(_) => "int".to_string(),
        Value::Float(_) => "float".to_string(),
        Value::List(items) => format!("list of {}", items.len()),
        Value::Tuple(items) => format!("tuple of {}", items.len()),
        other => format!("{other:?}").chars().take(40).collect(),
    }
}

/// Copies a (possibly strided, possibly shared) tensor out of its storage, contiguously.
fn gather(
    name: &str,
    tensor: &TensorRef,
    storages: &HashMap<String, Vec<u8>>,
) -> Result<CheckpointTensor, ModelError> {
    let fail = |reason: String| error(format!("tensor `{name}`: {reason}"));
    let (key, base) = match &tensor.storage.view {
        Some((root, offset, _)) => (root.as_str(), *offset),
        None => (tensor.storage.key.as_str(), 0),
    };
    let data = storages
        .get(key)
        .ok_or_else(|| fail(format!("its storage `{key}` is not in the file")))?;
    let size = tensor.storage.dtype.size();
    let available = (data.len() / size) as u64;
    let declared_end = base.saturating_add(tensor.storage.numel);
    if declared_end > available {
        return Err(fail(format!(
            "its storage `{key}` declares {} elements from {base} but holds {available}",
            tensor.storage.numel
        )));
    }
    let count = tensor
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| fail("a shape whose element count overflows".to_string()))?;
    if count > 0 {
        // The largest element index the view touches must lie inside the storage.
        let last = tensor
            .shape
            .iter()
            .zip(&tensor.stride)
            .try_fold(tensor.offset, |acc, (&d, &s)| {
                (d as u64 - 1)
                    .checked_mul(s)
                    .and_then(|v| acc.checked_add(v))
            })
            .ok_or_else(|| fail("strides that overflow".to_string()))?;
        if last >= tensor.storage.numel {
            return Err(fail(format!(
                "its view (offset {}, shape {:?}, stride {:?}) reaches element {last} of a \
                 storage of {}",
                tensor.offset, tensor.shape, tensor.stride, tensor.storage.numel
            )));
        }
    }
    let mut out = Vec::with_capacity(count * size);
    let mut index = vec![0usize; tensor.shape.len()];
    for _ in 0..count {
        let element = base
            + tensor.offset
            + index
                .iter()
                .zip(&tensor.stride)
                .map(|(&i, &s)| i as u64 * s)
                .sum::<u64>();
        let at = (element as usize) * size;
        out.extend_from_slice(&data[at..at + size]);
        for dim in (0..index.len()).rev() {
            index[dim] += 1;
            if index[dim] < tensor.shape[dim] {
                break;
            }
            index[dim] = 0;
        }
    }
    Ok(CheckpointTensor {
        dtype: tensor.storage.dtype,
        shape: tensor.shape.clone(),
        data: out,
    })
}

/// The state dict as safetensors bytes (same names, dtypes and shapes), so that a checkpoint
/// goes through exactly the strict loader a safetensors file does.
pub(crate) fn to_safetensors(state: &StateDict) -> Result<Vec<u8>, ModelError> {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let mut views = Vec::with_capacity(state.tensors.len());
    for (name, tensor) in &state.tensors {
        let dtype = match tensor.dtype {
            StorageDtype::F32 => Dtype::F32,
            StorageDtype::F16 => Dtype::F16,
            StorageDtype::BF16 => Dtype::BF16,
            StorageDtype::F64 => Dtype::F64,
            StorageDtype::I64 => Dtype::I64,
            StorageDtype::I32 => Dtype::I32,
            StorageDtype::U8 => Dtype::U8,
            StorageDtype::Bool => Dtype::BOOL,
        };
        let view = TensorView::new(dtype, tensor.shape.clone(), &tensor.data)
            .map_err(|source| ModelError::SafetensorsFormat { source })?;
        views.push((name.clone(), view));
    }
    safetensors::serialize(views, None).map_err(|source| ModelError::SafetensorsFormat { source })
}
