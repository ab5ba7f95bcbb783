//! A data-only pickle machine: it builds numbers, strings, tuples, lists and dicts, and honours
//! exactly the globals PyTorch needs to rebuild a state dict's tensors. Nothing is imported or
//! called; any other global, and every opcode that would instantiate an arbitrary class
//! (`NEWOBJ`, `INST`, `OBJ`, `EXT*`), is refused with the global's name.
//!
//! The scanner (`gauntlet-artifact`) has already read the stream before this runs; this machine
//! is the second, narrower gate: a stream the scanner lets through (e.g. a pickled
//! `argparse.Namespace` next to the weights, only *named*) still cannot reach anything here.

use std::collections::HashMap;

/// Limits that bound what a hostile stream can make the machine allocate.
const MAX_STACK: usize = 1 << 20;
const MAX_MEMO: usize = 1 << 20;
const MAX_CONTAINER: usize = 1 << 24;

/// A value the machine built.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Insertion-ordered (both `dict` and `collections.OrderedDict`).
    Dict(Vec<(Value, Value)>),
    /// An allow-listed global, not yet called.
    Global(AllowedGlobal),
    /// A storage reference from a persistent id.
    Storage(StorageRef),
    /// A rebuilt tensor (a view into a storage).
    Tensor(TensorRef),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

/// The element types a PyTorch storage can hold that gauntlet reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StorageDtype {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    U8,
    Bool,
}

impl StorageDtype {
    pub(crate) fn size(self) -> usize {
        match self {
            StorageDtype::F64 | StorageDtype::I64 => 8,
            StorageDtype::F32 | StorageDtype::I32 => 4,
            StorageDtype::F16 | StorageDtype::BF16 => 2,
            StorageDtype::U8 | StorageDtype::Bool => 1,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            StorageDtype::F32 => "f32",
            StorageDtype::F16 => "f16",
            StorageDtype::BF16 => "bf16",
            StorageDtype::F64 => "f64",
            StorageDtype::I64 => "i64",
            StorageDtype::I32 => "i32",
            StorageDtype::U8 => "u8",
            StorageDtype::Bool => "bool",
        }
    }

    /// `torch.FloatStorage` → f32, and so on.
    fn from_storage_class(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => StorageDtype::F32,
            "HalfStorage" => StorageDtype::F16,
            "BFloat16Storage" => StorageDtype::BF16,
            "DoubleStorage" => StorageDtype::F64,
            "LongStorage" => StorageDtype::I64,
            "IntStorage" => StorageDtype::I32,
            "ByteStorage" => StorageDtype::U8,
            "BoolStorage" => StorageDtype::Bool,
            _ => return None,
        })
    }
}

/// The globals this machine honours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AllowedGlobal {
    /// `collections.OrderedDict`: called with no arguments, it is an empty dict.
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`.
    RebuildTensorV2,
    /// `torch._utils._rebuild_tensor(storage, offset, size, stride)` (old checkpoints).
    RebuildTensor,
    /// `torch._utils._rebuild_parameter(tensor, requires_grad, hooks)` and
    /// `_rebuild_parameter_with_state(tensor, requires_grad, hooks, state)`.
    RebuildParameter,
    /// `torch.FloatStorage` and friends: only ever the type inside a persistent id.
    StorageClass(StorageDtype),
}

/// `("storage", torch.FloatStorage, key, location, numel[, view_metadata])`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StorageRef {
    pub key: String,
    pub dtype: StorageDtype,
    /// Elements the storage holds, as the persistent id declares.
    pub numel: u64,
    /// Legacy views of a larger storage: `(root key, offset in elements, size)`.
    pub view: Option<(String, u64, u64)>,
}

/// A tensor as `_rebuild_tensor_v2` describes it: shape, strides and offset in elements.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorRef {
    pub storage: StorageRef,
    pub offset: u64,
    pub shape: Vec<usize>,
    pub stride: Vec<u64>,
}

fn resolve_global(module: &str, name: &str) -> Result<AllowedGlobal, String> {
    Ok(match (module, name) {
        ("collections", "OrderedDict") => AllowedGlobal::OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2") => AllowedGlobal::RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor") => AllowedGlobal::RebuildTensor,
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            AllowedGlobal::RebuildParameter
        }
        ("torch", storage) if StorageDtype::from_storage_class(storage).is_some() => {
            AllowedGlobal::StorageClass(StorageDtype::from_storage_class(storage).unwrap_or(
                StorageDtype::F32, // unreachable: checked by the guard
            ))
        }
        _ if module.starts_with("torch.nn.modules") || module.starts_with("torchvision") => {
            return Err(format!(
                "the checkpoint pickles a whole module object (`{module}.{name}`), not a state \
                 dict; gauntlet reads only tensors: save `model.state_dict()` instead"
            ))
        }
        _ => {
            return Err(format!(
                "the pickle names the global `{module}.{name}`, which is not one of the \
                 tensor-rebuild globals gauntlet honours in a checkpoint (it would be imported \
                 and may run code); nothing was executed"
            ))
        }
    })
}

/// Runs one pickle stream starting at `bytes[0]`; returns the value and the bytes it used.
///
/// `persistent` maps a persistent id (a tuple) to a value: PyTorch's storages.
pub(crate) fn unpickle(bytes: &[u8]) -> Result<(Value, usize), String> {
    let mut machine = Machine {
        bytes,
        at: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    let value = machine.run()?;
    Ok((value, machine.at))
}

struct Machine<'a> {
    bytes: &'a [u8],
    at: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
}

impl Machine<'_> {
    fn take(&mut self, len: usize) -> Result<&[u8], String> {
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| format!("the pickle is cut off at byte {}", self.at))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn le(&mut self, len: usize) -> Result<u64, String> {
        let mut value = 0u64;
        for (index, byte) in self.take(len)?.iter().enumerate() {
            value |= u64::from(*byte) << (8 * index);
        }
        Ok(value)
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.bytes[self.at.min(self.bytes.len())..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| format!("unterminated text argument at byte {}", self.at))?;
        let text = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.at += end + 1;
        Ok(text)
    }

    fn push(&mut self, value: Value) -> Result<(), String> {
        if self.stack.len() >= MAX_STACK {
            return Err("the pickle's stack grows past gauntlet's limit".to_string());
        }
        self.stack.push(value);
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, String> {
        if self
            .marks
            .last()
            .is_some_and(|&mark| mark >= self.stack.len())
        {
            return Err(format!("pop across a MARK at byte {}", self.at));
        }
        self.stack
            .pop()
            .ok_or_else(|| format!("pop from an empty stack at byte {}", self.at))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| format!("no MARK to pop to at byte {}", self.at))?;
        Ok(self.stack.split_off(mark))
    }

    fn top_mut(&mut self) -> Result<&mut Value, String> {
        let at = self.at;
        self.stack
            .last_mut()
            .ok_or_else(|| format!("empty stack at byte {at}"))
    }

    fn memo_put(&mut self, key: u64) -> Result<(), String> {
        if self.memo.len() >= MAX_MEMO {
            return Err("the pickle's memo grows past gauntlet's limit".to_string());
        }
        let value = self
            .stack
            .last()
            .cloned()
            .ok_or_else(|| format!("memoize on an empty stack at byte {}", self.at))?;
        self.memo.insert(key, value);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<(), String> {
        let value = self
            .memo
            .get(&key)
            .cloned()
            .ok_or_else(|| format!("memo entry {key} is missing at byte {}", self.at))?;
        self.push(value)
    }

    fn text(bytes: &[u8]) -> Result<String, String> {
        String::from_utf8(bytes.to_vec()).map_err(|_| "a string is not UTF-8".to_string())
    }

    fn run(&mut self) -> Result<Value, String> {
        loop {
            let opcode_at = self.at;
            let opcode = self.byte()?;
            match opcode {
                0x80 => {
                    let protocol = self.byte()?;
                    if protocol > 5 {
                        return Err(format!("unsupported pickle protocol {protocol}"));
                    }
                }
                0x95 => {
                    self.le(8)?; // FRAME: a length hint only
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top_mut()?.clone();
                    self.push(top)?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let value = self.le(4)? as u32 as i32;
                    self.push(Value::Int(i64::from(value)))?;
                }
                b'K' => {
                    let value = self.byte()?;
                    self.push(Value::Int(i64::from(value)))?;
                }
                b'M' => {
                    let value = self.le(2)?;
                    self.push(Value::Int(value as i64))?;
                }
                0x8a | 0x8b => {
                    let len = if opcode == 0x8a {
                        usize::from(self.byte()?)
                    } else {
                        usize::try_from(self.le(4)?).unwrap_or(usize::MAX)
                    };
                    let digits = self.take(len)?.to_vec();
                    self.push(long_value(&digits))?;
                }
                b'I' => {
                    let line = self.line()?;
                    let value = match line.as_str() {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        other => Value::Int(
                            other
                                .parse()
                                .map_err(|_| format!("bad INT `{other}` at byte {opcode_at}"))?,
                        ),
                    };
                    self.push(value)?;
                }
                b'L' => {
                    let line = self.line()?;
                    let digits = line.trim_end_matches('L');
                    let value = digits.parse().map_err(|_| {
                        format!("LONG `{line}` at byte {opcode_at} is out of gauntlet's range")
                    })?;
                    self.push(Value::Int(value))?;
                }
                b'G' => {
                    let value = f64::from_be_bytes(
                        self.take(8)?
                            .try_into()
                            .map_err(|_| "cut-off float".to_string())?,
                    );
                    self.push(Value::Float(value))?;
                }
                b'F' => {
                    let line = self.line()?;
                    let value = line
                        .parse()
                        .map_err(|_| format!("bad FLOAT `{line}` at byte {opcode_at}"))?;
                    self.push(Value::Float(value))?;
                }
                b'X' | 0x8c | 0x8d => {
                    let len = match opcode {
                        b'X' => self.le(4)?,
                        0x8c => u64::from(self.byte()?),
                        _ => self.le(8)?,
                    };
                    let len = usize::try_from(len).unwrap_or(usize::MAX);
                    let text = Self::text(self.take(len)?)?;
                    self.push(Value::Str(text))?;
                }
                b'V' => {
                    let line = self.line()?;
                    self.push(Value::Str(line))?;
                }
                b'S' => {
                    let line = self.line()?;
                    let inner = line
                        .strip_prefix(['\'', '"'])
                        .and_then(|l| l.strip_suffix(['\'', '"']))
                        .unwrap_or(&line)
                        .to_string();
                    self.push(Value::Str(inner))?;
                }
                b'T' | b'U' | b'B' | b'C' | 0x8e | 0x96 => {
                    let len = match opcode {
                        b'T' | b'B' => self.le(4)?,
                        b'U' | b'C' => u64::from(self.byte()?),
                        _ => self.le(8)?,
                    };
                    let len = usize::try_from(len).unwrap_or(usize::MAX);
                    let data = self.take(len)?.to_vec();
                    // Python 2 strings (T, U) are text to PyTorch's legacy loader.
                    let value = if matches!(opcode, b'T' | b'U') {
                        Value::Str(String::from_utf8_lossy(&data).into_owned())
                    } else {
                        Value::Bytes(data)
                    };
                    self.push(value)?;
                }
                b')' => self.push(Value::Tuple(Vec::new()))?,
                b'}' => self.push(Value::Dict(Vec::new()))?,
                b']' => self.push(Value::List(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items))?;
                }
                0x85..=0x87 => {
                    let count = usize::from(opcode - 0x84);
                    if self.stack.len() < count {
                        return Err(format!("TUPLE{count} on a short stack at byte {opcode_at}"));
                    }
                    let mut items = Vec::with_capacity(count);
                    for _ in 0..count {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(items))?;
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(items))?;
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(items, opcode_at)?;
                    self.push(Value::Dict(pairs))?;
                }
                b'a' => {
                    let item = self.pop()?;
                    match self.top_mut()? {
                        Value::List(list) if list.len() < MAX_CONTAINER => list.push(item),
                        other => {
                            return Err(format!("APPEND to a {} at byte {opcode_at}", other.kind()))
                        }
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top_mut()? {
                        Value::List(list) if list.len() + items.len() <= MAX_CONTAINER => {
                            list.extend(items)
                        }
                        other => {
                            return Err(format!(
                                "APPENDS to a {} at byte {opcode_at}",
                                other.kind()
                            ))
                        }
                    }
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    set_items(self.top_mut()?, vec![(key, value)], opcode_at)?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(items, opcode_at)?;
                    set_items(self.top_mut()?, pairs, opcode_at)?;
                }
                b'p' => {
                    let line = self.line()?;
                    let key = line
                        .parse()
                        .map_err(|_| format!("bad PUT `{line}` at byte {opcode_at}"))?;
                    self.memo_put(key)?;
                }
                b'q' => {
                    let key = u64::from(self.byte()?);
                    self.memo_put(key)?;
                }
                b'r' => {
                    let key = self.le(4)?;
                    self.memo_put(key)?;
                }
                0x94 => {
                    let key = self.memo.len() as u64;
                    self.memo_put(key)?;
                }
                b'g' => {
                    let line = self.line()?;
                    let key = line
                        .parse()
                        .map_err(|_| format!("bad GET `{line}` at byte {opcode_at}"))?;
                    self.memo_get(key)?;
                }
                b'h' => {
                    let key = u64::from(self.byte()?);
                    self.memo_get(key)?;
                }
                b'j' => {
                    let key = self.le(4)?;
                    self.memo_get(key)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let global = resolve_global(&module, &name)?;
                    self.push(Value::Global(global))?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err(format!(
                            "STACK_GLOBAL with non-string names at byte {opcode_at}"
                        ));
                    };
                    let global = resolve_global(&module, &name)?;
                    self.push(Value::Global(global))?;
                }
                b'Q' => {
                    let id = self.pop()?;
                    let storage = persistent_storage(id)?;
                    self.push(Value::Storage(storage))?;
                }
                b'P' => {
                    return Err(
                        "a text persistent id (PERSID): PyTorch checkpoints never use one"
                            .to_string(),
                    )
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let result = call(callable, args, opcode_at)?;
                    self.push(result)?;
                }
                b'b' => {
                    // BUILD: PyTorch sets `_metadata` on an OrderedDict state dict and the
                    // state of a parameter; neither carries tensors gauntlet needs, and no
                    // `__setstate__` is ever called.
                    let _state = self.pop()?;
                    match self.top_mut()? {
                        Value::Dict(_) | Value::Tensor(_) => {}
                        other => {
                            return Err(format!("BUILD on a {} at byte {opcode_at}", other.kind()))
                        }
                    }
                }
                0x81 | 0x92 | b'i' | b'o' | 0x82..=0x84 => {
                    return Err(format!(
                        "opcode {opcode:#04x} at byte {opcode_at} instantiates an arbitrary class; \
                         a state dict never needs it, and gauntlet never runs it"
                    ))
                }
                0x8f | 0x90 | 0x91 | 0x97 | 0x98 => {
                    return Err(format!(
                        "opcode {opcode:#04x} at byte {opcode_at} (sets, buffers) is not part of a \
                         PyTorch state dict"
                    ))
                }
                other => {
                    return Err(format!(
                        "unknown pickle opcode {other:#04x} at byte {opcode_at}"
                    ))
                }
            }
        }
    }
}

/// A little-endian two's-complement integer (LONG1/LONG4) that fits i64.
fn long_value(digits: &[u8]) -> Value {
    if digits.len() > 8 {
        // Only the legacy format's magic number is this long; keep its bytes.
        return Value::Bytes(digits.to_vec());
    }
    let mut value: i64 = 0;
    for (index, byte) in digits.iter().enumerate() {
        value |= i64::from(*byte) << (8 * index);
    }
    if let Some(&last) = digits.last() {
        if last & 0x80 != 0 && digits.len() < 8 {
            value -= 1i64 << (8 * digits.len());
        }
    }
    Value::Int(value)
}

fn pairs(items: Vec<Value>, at: usize) -> Result<Vec<(Value, Value)>, String> {
    if !items.len().is_multiple_of(2) {
        return Err(format!("an odd number of dict items at byte {at}"));
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        out.push((key, value));
    }
    Ok(out)
}

fn set_items(target: &mut Value, items: Vec<(Value, Value)>, at: usize) -> Result<(), String> {
    let Value::Dict(dict) = target else {
        return Err(format!("SETITEM on a {} at byte {at}", target.kind()));
    };
    if dict.len() + items.len() > MAX_CONTAINER {
        return Err("a dict grows past gauntlet's limit".to_string());
    }
    for (key, value) in items {
        // Later keys replace earlier ones, as in Python.
        match dict.iter_mut().find(|(existing, _)| *existing == key) {
            Some(slot) => slot.1 = value,
            None => dict.push((key, value)),
        }
    }
    Ok(())
}

fn int(value: &Value, what: &str) -> Result<i64, String> {
    match value {
        Value::Int(v) => Ok(*v),
        other => Err(format!("{what} is a {}, expected an int", other.kind())),
    }
}

fn non_negative(value: &Value, what: &str) -> Result<u64, String> {
    let v = int(value, what)?;
    u64::try_from(v).map_err(|_| format!("{what} is negative ({v})"))
}

fn persistent_storage(id: Value) -> Result<StorageRef, String> {
    let Value::Tuple(items) = id else {
        return Err(format!(
            "a persistent id that is a {}, not PyTorch's storage tuple",
            id.kind()
        ));
    };
    let [Value::Str(tag), Value::Global(AllowedGlobal::StorageClass(dtype)), key, _location, numel, rest @ ..] =
        items.as_slice()
    else {
        return Err(
            "a persistent id that is not `(\"storage\", torch.<Type>Storage, key, location, numel)`"
                .to_string(),
        );
    };
    if tag != "storage" {
        return Err(format!("a persistent id tagged `{tag}`, not `storage`"));
    }
    let key = match key {
        Value::Str(key) => key.clone(),
        Value::Int(key) => key.to_string(),
        other => return Err(format!("a storage key that is a {}", other.kind())),
    };
    let numel = non_negative(numel, "a storage's element count")?;
    let view = match rest {
        [] | [Value::None] => None,
        [Value::Tuple(view)] => match view.as_slice() {
            [Value::Str(root), offset, size] => Some((
                root.clone(),
                non_negative(offset, "a storage view's offset")?,
                non_negative(size, "a storage view's size")?,
            )),
            _ => return Err("a storage view that is not `(key, offset, size)`".to_string()),
        },
        _ => return Err("a persistent id with unexpected trailing fields".to_string()),
    };
    Ok(StorageRef {
        key,
        dtype: *dtype,
        numel,
        view,
    })
}

fn dims(value: &Value, what: &str) -> Result<Vec<u64>, String> {
    let Value::Tuple(items) = value else {
        return Err(format!("{what} is a {}, expected a tuple", value.kind()));
    };
    items.iter().map(|item| non_negative(item, what)).collect()
}

/// Calls an allow-listed global on `args` (a tuple).
fn call(callable: Value, args: Value, at: usize) -> Result<Value, String> {
    let Value::Global(global) = callable else {
        return Err(format!(
            "REDUCE on a {} at byte {at}: only allow-listed globals can be called",
            callable.kind()
        ));
    };
    let Value::Tuple(args) = args else {
        return Err(format!(
            "REDUCE with {} arguments at byte {at}",
            args.kind()
        ));
    };
    match global {
        AllowedGlobal::OrderedDict => {
            if !args.is_empty() {
                return Err(format!("OrderedDict called with arguments at byte {at}"));
            }
            Ok(Value::Dict(Vec::new()))
        }
        AllowedGlobal::RebuildTensorV2 | AllowedGlobal::RebuildTensor => {
            let (storage, offset, size, stride) = match args.as_slice() {
                [storage, offset, size, stride, ..]
                    if global == AllowedGlobal::RebuildTensor && args.len() == 4
                        || global == AllowedGlobal::RebuildTensorV2
                            && (6..=7).contains(&args.len()) =>
                {
                    (storage, offset, size, stride)
                }
                _ => {
                    return Err(format!(
                        "a tensor rebuild with {} arguments at byte {at}",
                        args.len()
                    ))
                }
            };
            let Value::Storage(storage) = storage else {
                return Err(format!(
                    "a tensor rebuilt from a {} at byte {at}, not a storage",
                    storage.kind()
                ));
            };
            let shape = dims(size, "a tensor's size")?
                .into_iter()
                .map(|d| usize::try_from(d).map_err(|_| "a tensor size too large".to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            let stride = dims(stride, "a tensor's stride")?;
            if shape.len() != stride.len() {
                return Err(format!(
                    "a tensor with {} sizes but {} strides at byte {at}",
                    shape.len(),
                    stride.len()
                ));
            }
            Ok(Value::Tensor(TensorRef {
                storage: storage.clone(),
                offset: non_negative(offset, "a tensor's storage offset")?,
                shape,
                stride,
            }))
        }
        AllowedGlobal::RebuildParameter => match args.into_iter().next() {
            Some(Value::Tensor(tensor)) => Ok(Value::Tensor(tensor)),
            _ => Err(format!(
                "a parameter rebuilt from something other than a tensor at byte {at}"
            )),
        },
        AllowedGlobal::StorageClass(_) => Err(format!(
            "a storage class called at byte {at}: storages come only from persistent ids"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_plain_data() {
        // {'a': 1, 'b': [2.5, 'x']} in protocol 4.
        let stream = b"\x80\x04}\x94(\x8c\x01a\x94K\x01\x8c\x01b\x94]\x94(G@\x04\x00\x00\x00\x00\x00\x00\x8c\x01x\x94eu.";
        let (value, used) = unpickle(stream).expect("a plain dict");
        assert_eq!(used, stream.len());
        assert_eq!(
            value,
            Value::Dict(vec![
                (Value::Str("a".into()), Value::Int(1)),
                (
                    Value::Str("b".into()),
                    Value::List(vec![Value::Float(2.5), Value::Str("x".into())])
                ),
            ])
        );
    }

    #[test]
    fn refuses_globals_outside_the_allow_list() {
        let stream = b"\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03.";
        let error = unpickle(stream).expect_err("os.system is refused");
        assert!(error.contains("posix.system"), "{error}");
    }

    #[test]
    fn refuses_class_instantiation() {
        let stream = b"\x80\x02ccollections\nOrderedDict\n)\x81.";
        let error = unpickle(stream).expect_err("NEWOBJ is refused");
        assert!(error.contains("instantiates"), "{error}");
    }

    #[test]
    fn negative_long1_is_sign_extended() {
        assert_eq!(long_value(&[0xff]), Value::Int(-1));
        assert_eq!(long_value(&[0x00, 0x01]), Value::Int(256));
    }

    #[test]
    fn truncated_streams_are_errors() {
        assert!(unpickle(b"\x80\x02X\xff\xff\xff\x00").is_err());
        assert!(unpickle(b"\x80\x02N").is_err());
    }
}
