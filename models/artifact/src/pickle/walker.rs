//! The symbolic pickle machine: CPython's unpickler with every value replaced by what the scanner
//! needs to know about it.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use super::allow::{self, Special, Verdict};
use crate::{Finding, Location, RuleId, Severity};

/// Most values the walker keeps on its stack; a stream needing more is reported, not followed.
pub const MAX_STACK: usize = 1 << 20;
/// Most memo entries the walker keeps.
pub const MAX_MEMO: usize = 1 << 22;
/// Items of a tuple or dict the walker remembers (enough for call arguments and `BUILD` state).
const MAX_TRACKED_ITEMS: usize = 64;
/// Items of a dict the walker remembers: every key of a BUILD state must be seen, so a dunder
/// key cannot hide behind filler; a state that reaches this many is an analysis limit.
const MAX_TRACKED_DICT_ITEMS: usize = 1 << 14;
/// Longest text kept verbatim; module and attribute names are far shorter.
const MAX_TEXT: usize = 4096;
/// Findings one stream may add before the walker stops listing them.
const MAX_FINDINGS: usize = 256;
/// Concatenated pickles followed in one byte string.
const MAX_PICKLES_IN_STREAM: usize = 4096;

// Opcodes, named as in CPython's `pickletools`.
const MARK: u8 = b'(';
const STOP: u8 = b'.';
const POP: u8 = b'0';
const POP_MARK: u8 = b'1';
const DUP: u8 = b'2';
const FLOAT: u8 = b'F';
const INT: u8 = b'I';
const BININT: u8 = b'J';
const BININT1: u8 = b'K';
const LONG: u8 = b'L';
const BININT2: u8 = b'M';
const NONE: u8 = b'N';
const PERSID: u8 = b'P';
const BINPERSID: u8 = b'Q';
const REDUCE: u8 = b'R';
const STRING: u8 = b'S';
const BINSTRING: u8 = b'T';
const SHORT_BINSTRING: u8 = b'U';
const UNICODE: u8 = b'V';
const BINUNICODE: u8 = b'X';
const APPEND: u8 = b'a';
const BUILD: u8 = b'b';
const GLOBAL: u8 = b'c';
const DICT: u8 = b'd';
const EMPTY_DICT: u8 = b'}';
const APPENDS: u8 = b'e';
const GET: u8 = b'g';
const BINGET: u8 = b'h';
const INST: u8 = b'i';
const LONG_BINGET: u8 = b'j';
const LIST: u8 = b'l';
const EMPTY_LIST: u8 = b']';
const OBJ: u8 = b'o';
const PUT: u8 = b'p';
const BINPUT: u8 = b'q';
const LONG_BINPUT: u8 = b'r';
const SETITEM: u8 = b's';
const TUPLE: u8 = b't';
const EMPTY_TUPLE: u8 = b')';
const SETITEMS: u8 = b'u';
const BINFLOAT: u8 = b'G';
const PROTO: u8 = 0x80;
const NEWOBJ: u8 = 0x81;
const EXT1: u8 = 0x82;
const EXT2: u8 = 0x83;
const EXT4: u8 = 0x84;
const TUPLE1: u8 = 0x85;
const TUPLE2: u8 = 0x86;
const TUPLE3: u8 = 0x87;
const NEWTRUE: u8 = 0x88;
const NEWFALSE: u8 = 0x89;
const LONG1: u8 = 0x8a;
const LONG4: u8 = 0x8b;
const BINBYTES: u8 = b'B';
const SHORT_BINBYTES: u8 = b'C';
const SHORT_BINUNICODE: u8 = 0x8c;
const BINUNICODE8: u8 = 0x8d;
const BINBYTES8: u8 = 0x8e;
const EMPTY_SET: u8 = 0x8f;
const ADDITEMS: u8 = 0x90;
const FROZENSET: u8 = 0x91;
const NEWOBJ_EX: u8 = 0x92;
const STACK_GLOBAL: u8 = 0x93;
const MEMOIZE: u8 = 0x94;
const FRAME: u8 = 0x95;
const BYTEARRAY8: u8 = 0x96;
const NEXT_BUFFER: u8 = 0x97;
const READONLY_BUFFER: u8 = 0x98;

/// What the walker knows about one value the real unpickler would build.
#[derive(Debug)]
enum Value {
    /// A `str` (or a protocol-0–2 byte string, which Python 3 decodes to `str`).
    Text(String),
    /// A `str` longer than [`MAX_TEXT`].
    LongText,
    /// A `bytes`/`bytearray` literal: a range of the stream.
    Bytes { start: usize, len: usize },
    /// Bytes computed while loading (`_codecs.encode(text, "latin1")`).
    ComputedBytes(Rc<[u8]>),
    /// A resolved global.
    Global { module: String, name: String },
    /// A global the walker could not resolve (already reported).
    Unresolved,
    /// What a call returned; `made_by` names the global called, when there was one, and
    /// `first_text` its first argument when that was a short string (`numpy.dtype('f8')`).
    Object {
        made_by: Option<(String, String)>,
        first_text: Option<String>,
        /// What the last `BUILD` on a `numpy.dtype` set: whether NumPy will say it holds
        /// objects decides how joblib reads the array data after a `NumpyArrayWrapper`.
        dtype_state: Cell<DtypeState>,
        /// The class this is an instance of, when the call made one without running
        /// `__init__` (`NEWOBJ`, `copyreg.__newobj__`, `copyreg._reconstructor` on `object`):
        /// joblib's unpickler treats every `NumpyArrayWrapper` instance alike, however made.
        bare_instance_of: Option<(String, String)>,
    },
    /// An integer that fits in `i64` (shapes and sizes joblib's array records need).
    Int(i64),
    /// A tuple's first [`MAX_TRACKED_ITEMS`] items.
    Tuple(Vec<Rc<Value>>),
    /// A dict's first [`MAX_TRACKED_DICT_ITEMS`] items; shared (memo) and mutated in place like
    /// Python's.
    Dict(RefCell<Vec<(Rc<Value>, Rc<Value>)>>),
    /// Anything else (numbers, None, lists, sets, buffers, persistent references).
    Plain(&'static str),
}

impl Value {
    fn text(text: String) -> Value {
        if text.len() > MAX_TEXT {
            Value::LongText
        } else {
            Value::Text(text)
        }
    }

    fn describe(&self) -> String {
        match self {
            Value::Text(_) | Value::LongText => "a string".to_string(),
            Value::Bytes { .. } | Value::ComputedBytes(_) => "a byte string".to_string(),
            Value::Global { module, name } => format!("`{module}.{name}`"),
            Value::Unresolved => "an unresolvable global".to_string(),
            Value::Object {
                made_by: Some((module, name)),
                ..
            } => {
                format!("the result of calling `{module}.{name}`")
            }
            Value::Object { made_by: None, .. } => "a value computed while loading".to_string(),
            Value::Int(_) => "an int".to_string(),
            Value::Tuple(_) => "a tuple".to_string(),
            Value::Dict(_) => "a dict".to_string(),
            Value::Plain(kind) => format!("a {kind}"),
        }
    }
}

/// The part of a `numpy.dtype` BUILD state that decides `dtype.hasobject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DtypeState {
    /// No BUILD applied: the flags the constructor computed.
    Unset,
    /// A version-3+ state: NumPy keeps its `flags` item as is (bit 0 is `NPY_ITEM_HASOBJECT`)
    /// on the dtypes that `__setstate__` updates.
    Flags(i64),
    /// A state with no fields and pre-3 flags: nothing holds objects.
    NoFields,
    /// A state the walker cannot decide from (pre-3 structured, or untracked items).
    Unknown,
}

/// Why walking stopped early.
#[derive(Debug)]
struct Halt {
    offset: usize,
    opcode_index: u64,
    kind: HaltKind,
}

#[derive(Debug)]
enum HaltKind {
    /// The real unpickler would raise here.
    Malformed(String),
    /// The stream is too big for the walker's limits.
    Limit(String),
}

/// State shared by every pickle found in one scanned byte string (and nested ones).
struct Reporter {
    findings: Vec<Finding>,
    seen: HashSet<(RuleId, String)>,
    /// Probe mode: decide structure only, report nothing and scan nothing nested.
    probe: bool,
    /// Bytes that nested scans may still read, so repeated nested payloads cannot make the scan
    /// quadratic.
    nested_budget: usize,
    /// Globals referenced so far (used to decide whether a broken tentative pickle mattered).
    globals_seen: usize,
    /// Byte-string ranges already scanned as nested pickles (a `pickle.loads` argument is first
    /// seen as a literal).
    scanned_ranges: HashSet<(usize, usize)>,
    /// Unknown globals named so far, each with the medium finding it gets if nothing calls it.
    unknown_refs: Vec<(String, Finding)>,
    /// Unknown globals something called (reported high when called).
    invoked: HashSet<String>,
}

impl Reporter {
    fn new(probe: bool, stream_len: usize) -> Reporter {
        Reporter {
            findings: Vec::new(),
            seen: HashSet::new(),
            probe,
            nested_budget: stream_len.saturating_mul(4).saturating_add(64 << 20),
            globals_seen: 0,
            scanned_ranges: HashSet::new(),
            unknown_refs: Vec::new(),
            invoked: HashSet::new(),
        }
    }

    /// The findings, with a medium `pickle-unknown-global` for every unknown global that was
    /// named but never called.
    fn finish(mut self) -> Vec<Finding> {
        for (qualified, finding) in std::mem::take(&mut self.unknown_refs) {
            if self.findings.len() >= MAX_FINDINGS {
                break;
            }
            if !self.invoked.contains(&qualified) {
                self.findings.push(finding);
            }
        }
        self.findings
    }
}

/// One `load()` call: a stack, a memo and a position.
struct Machine<'data, 'rep> {
    data: &'data [u8],
    pos: usize,
    /// Start offset of the opcode being run.
    op_start: usize,
    opcode_index: u64,
    stack: Vec<Rc<Value>>,
    marks: Vec<usize>,
    memo: HashMap<u64, Rc<Value>>,
    location: &'rep Location,
    /// Offset of `data[0]` inside the innermost member.
    base_offset: u64,
    reporter: &'rep mut Reporter,
    /// Walking bytes that may be a pickle or may be raw data (what follows a pickle in a
    /// stream, a byte string that starts like one): a global whose names no import could
    /// resolve ends the walk as "not a pickle" instead of counting as an import.
    tentative: bool,
}

type Step<T> = Result<T, Halt>;

impl<'data, 'rep> Machine<'data, 'rep> {
    fn new(
        data: &'data [u8],
        start: usize,
        location: &'rep Location,
        base_offset: u64,
        reporter: &'rep mut Reporter,
    ) -> Self {
        Machine {
            data,
            pos: start,
            op_start: start,
            opcode_index: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            location,
            base_offset,
            reporter,
            tentative: false,
        }
    }

    fn tentative(mut self) -> Self {
        self.tentative = true;
        self
    }

    /// Module and attribute names as the unpickler reads them for `GLOBAL` and `INST`: it
    /// decodes both lines as strict UTF-8 and fails on anything else, and `__import__` of a
    /// name with a NUL in it fails, so neither imports anything.
    fn global_names(&self, module: &[u8], name: &[u8]) -> Step<(String, String)> {
        let (Ok(module), Ok(name)) = (std::str::from_utf8(module), std::str::from_utf8(name))
        else {
            return self.malformed("a global's module or name is not UTF-8");
        };
        self.check_importable(module, name)?;
        Ok((module.to_string(), name.to_string()))
    }

    fn check_importable(&self, module: &str, name: &str) -> Step<()> {
        if module.contains('\0') || name.contains('\0') {
            return self.malformed("a global's module or name contains NUL, so importing it fails");
        }
        if self.tentative && !(plausible_dotted_name(module) && plausible_dotted_name(name)) {
            return self.malformed("a global whose names are not Python identifiers");
        }
        Ok(())
    }

    fn malformed<T>(&self, reason: impl Into<String>) -> Step<T> {
        Err(Halt {
            offset: self.op_start,
            opcode_index: self.opcode_index,
            kind: HaltKind::Malformed(reason.into()),
        })
    }

    fn limit<T>(&self, reason: impl Into<String>) -> Step<T> {
        Err(Halt {
            offset: self.op_start,
            opcode_index: self.opcode_index,
            kind: HaltKind::Limit(reason.into()),
        })
    }

    fn location_here(&self) -> Location {
        let mut location = self.location.clone();
        location.offset = Some(self.base_offset.saturating_add(self.op_start as u64));
        location.opcode_index = Some(self.opcode_index);
        location
    }

    /// Report a finding once per `key` (per scanned byte string).
    fn report(&mut self, severity: Severity, rule: RuleId, key: &str, message: String) {
        if self.reporter.probe || self.reporter.findings.len() >= MAX_FINDINGS {
            return;
        }
        if !self.reporter.seen.insert((rule, key.to_string())) {
            return;
        }
        let location = self.location_here();
        self.reporter.findings.push(Finding {
            severity,
            rule,
            message,
            location,
        });
    }

    // ----- reading operands -----

    fn take(&mut self, len: usize) -> Step<&'data [u8]> {
        let data = self.data;
        let Some(end) = self.pos.checked_add(len) else {
            return self.malformed("operand length overflows");
        };
        match data.get(self.pos..end) {
            Some(bytes) => {
                self.pos = end;
                Ok(bytes)
            }
            None => self.malformed("pickle data was truncated"),
        }
    }

    fn take_u8(&mut self) -> Step<u8> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }

    fn take_array<const N: usize>(&mut self) -> Step<[u8; N]> {
        let bytes = self.take(N)?;
        let mut array = [0u8; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    fn take_u16(&mut self) -> Step<u16> {
        Ok(u16::from_le_bytes(self.take_array()?))
    }

    fn take_u32(&mut self) -> Step<u32> {
        Ok(u32::from_le_bytes(self.take_array()?))
    }

    fn take_i32(&mut self) -> Step<i32> {
        Ok(i32::from_le_bytes(self.take_array()?))
    }

    fn take_u64(&mut self) -> Step<u64> {
        Ok(u64::from_le_bytes(self.take_array()?))
    }

    /// A length operand as `usize`, checked against what is left so no huge length is trusted.
    fn take_len(&mut self, len: u64) -> Step<(usize, usize)> {
        let Ok(len) = usize::try_from(len) else {
            return self.malformed("operand length does not fit in memory");
        };
        let start = self.pos;
        self.take(len)?;
        Ok((start, len))
    }

    /// A newline-terminated line (without the newline), as the text opcodes use.
    fn take_line(&mut self) -> Step<&'data [u8]> {
        let data = self.data;
        let rest = data.get(self.pos..).unwrap_or(&[]);
        match rest.iter().position(|&byte| byte == b'\n') {
            Some(newline) => {
                self.pos = self.pos.saturating_add(newline).saturating_add(1);
                Ok(rest.get(..newline).unwrap_or(&[]))
            }
            None => self.malformed("pickle data was truncated (line without newline)"),
        }
    }

    // ----- stack -----

    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn push(&mut self, value: Value) -> Step<()> {
        self.push_rc(Rc::new(value))
    }

    fn push_rc(&mut self, value: Rc<Value>) -> Step<()> {
        if self.stack.len() >= MAX_STACK {
            return self.limit(format!("more than {MAX_STACK} values on the stack"));
        }
        self.stack.push(value);
        Ok(())
    }

    fn pop(&mut self) -> Step<Rc<Value>> {
        if self.stack.len() <= self.fence() {
            return self.malformed("unpickling stack underflow");
        }
        match self.stack.pop() {
            Some(value) => Ok(value),
            None => self.malformed("unpickling stack underflow"),
        }
    }

    fn top(&self) -> Step<Rc<Value>> {
        if self.stack.len() <= self.fence() {
            return self.malformed("unpickling stack underflow");
        }
        match self.stack.last() {
            Some(value) => Ok(Rc::clone(value)),
            None => self.malformed("unpickling stack underflow"),
        }
    }

    fn pop_mark(&mut self) -> Step<Vec<Rc<Value>>> {
        let Some(mark) = self.marks.pop() else {
            return self.malformed("could not find MARK");
        };
        if mark > self.stack.len() {
            return self.malformed("MARK beyond the stack");
        }
        Ok(self.stack.split_off(mark))
    }

    fn memo_put(&mut self, index: u64) -> Step<()> {
        let value = self.top()?;
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&index) {
            return self.limit(format!("more than {MAX_MEMO} memo entries"));
        }
        self.memo.insert(index, value);
        Ok(())
    }

    fn memo_get(&mut self, index: u64) -> Step<()> {
        match self.memo.get(&index) {
            Some(value) => {
                let value = Rc::clone(value);
                self.push_rc(value)
            }
            None => self.malformed(format!("memo value {index} not found")),
        }
    }

    fn bytes_of<'v>(&self, value: &'v Value) -> Option<Cow<'v, [u8]>>
    where
        'data: 'v,
    {
        match value {
            Value::Bytes { start, len } => {
                let end = start.checked_add(*len)?;
                self.data.get(*start..end).map(Cow::Borrowed)
            }
            Value::ComputedBytes(bytes) => Some(Cow::Owned(bytes.to_vec())),
            _ => None,
        }
    }

    // ----- the main loop -----

    /// Run one `load()`: opcodes up to and including `STOP`. Returns the offset after `STOP`.
    fn run(&mut self) -> Step<usize> {
        loop {
            self.op_start = self.pos;
            let Some(&opcode) = self.data.get(self.pos) else {
                return self.malformed("pickle data was truncated (no STOP opcode)");
            };
            self.pos = self.pos.saturating_add(1);
            if opcode == STOP {
                self.pop()?;
                return Ok(self.pos);
            }
            self.step(opcode)?;
            self.opcode_index = self.opcode_index.saturating_add(1);
        }
    }

    fn step(&mut self, opcode: u8) -> Step<()> {
        match opcode {
            PROTO => {
                let protocol = self.take_u8()?;
                if protocol > 5 {
                    return self.malformed(format!("unsupported pickle protocol {protocol}"));
                }
            }
            FRAME => {
                let len = self.take_u64()?;
                let remaining = self.data.len().saturating_sub(self.pos) as u64;
                if len > remaining {
                    return self.malformed("pickle exhausted before end of frame");
                }
            }
            MARK => self.marks.push(self.stack.len()),
            POP => {
                if self.stack.len() > self.fence() {
                    self.pop()?;
                } else {
                    // CPython pops the mark when the current frame is empty.
                    self.pop_mark()?;
                }
            }
            POP_MARK => {
                self.pop_mark()?;
            }
            DUP => {
                let top = self.top()?;
                self.push_rc(top)?;
            }
            NONE => self.push(Value::Plain("None"))?,
            NEWTRUE | NEWFALSE => self.push(Value::Plain("bool"))?,
            INT => {
                let line = self.take_line()?;
                let value = std::str::from_utf8(line)
                    .ok()
                    .and_then(|text| text.trim().parse::<i64>().ok());
                self.push(value.map_or(Value::Plain("int"), Value::Int))?;
            }
            LONG | FLOAT => {
                self.take_line()?;
                self.push(Value::Plain("number"))?;
            }
            BININT => {
                let value = self.take_i32()?;
                self.push(Value::Int(i64::from(value)))?;
            }
            BININT1 => {
                let value = self.take_u8()?;
                self.push(Value::Int(i64::from(value)))?;
            }
            BININT2 => {
                let value = self.take_u16()?;
                self.push(Value::Int(i64::from(value)))?;
            }
            BINFLOAT => {
                self.take_u64()?;
                self.push(Value::Plain("float"))?;
            }
            LONG1 => {
                let len = self.take_u8()?;
                self.take(usize::from(len))?;
                self.push(Value::Plain("int"))?;
            }
            LONG4 => {
                let len = self.take_i32()?;
                let Ok(len) = u64::try_from(len) else {
                    return self.malformed("LONG pickle has negative byte count");
                };
                self.take_len(len)?;
                self.push(Value::Plain("int"))?;
            }
            STRING => {
                let line = self.take_line()?;
                let Some(inner) = unquote(line) else {
                    return self.malformed("the STRING opcode argument must be quoted");
                };
                self.push(Value::text(latin1(&unescape(inner))))?;
            }
            BINSTRING => {
                let len = self.take_i32()?;
                let Ok(len) = u64::try_from(len) else {
                    return self.malformed("BINSTRING pickle has negative byte count");
                };
                let (start, len) = self.take_len(len)?;
                self.push_byte_string_text(start, len)?;
            }
            SHORT_BINSTRING => {
                let len = self.take_u8()?;
                let (start, len) = self.take_len(u64::from(len))?;
                self.push_byte_string_text(start, len)?;
            }
            UNICODE => {
                let line = self.take_line()?;
                self.push(Value::text(raw_unicode_unescape(line)))?;
            }
            BINUNICODE => {
                let len = self.take_u32()?;
                self.push_unicode(u64::from(len))?;
            }
            SHORT_BINUNICODE => {
                let len = self.take_u8()?;
                self.push_unicode(u64::from(len))?;
            }
            BINUNICODE8 => {
                let len = self.take_u64()?;
                self.push_unicode(len)?;
            }
            BINBYTES => {
                let len = self.take_u32()?;
                self.push_bytes(u64::from(len))?;
            }
            SHORT_BINBYTES => {
                let len = self.take_u8()?;
                self.push_bytes(u64::from(len))?;
            }
            BINBYTES8 | BYTEARRAY8 => {
                let len = self.take_u64()?;
                self.push_bytes(len)?;
            }
            NEXT_BUFFER => self.push(Value::Plain("out-of-band buffer"))?,
            READONLY_BUFFER => {
                self.top()?;
            }
            EMPTY_TUPLE => self.push(Value::Tuple(Vec::new()))?,
            TUPLE => {
                let items = self.pop_mark()?;
                self.push(tuple(items))?;
            }
            TUPLE1 | TUPLE2 | TUPLE3 => {
                let count = usize::from(opcode - TUPLE1) + 1;
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.pop()?);
                }
                items.reverse();
                self.push(tuple(items))?;
            }
            EMPTY_LIST => self.push(Value::Plain("list"))?,
            LIST => {
                self.pop_mark()?;
                self.push(Value::Plain("list"))?;
            }
            APPEND => {
                self.pop()?;
                self.top()?;
            }
            APPENDS | ADDITEMS => {
                self.pop_mark()?;
                self.top()?;
            }
            EMPTY_DICT => self.push(Value::Dict(RefCell::new(Vec::new())))?,
            DICT => {
                let items = self.pop_mark()?;
                if items.len() % 2 != 0 {
                    return self.malformed("odd number of items for DICT");
                }
                let dict = Value::Dict(RefCell::new(Vec::new()));
                add_pairs(&dict, items);
                self.push(dict)?;
            }
            SETITEM => {
                let value = self.pop()?;
                let key = self.pop()?;
                let dict = self.top()?;
                add_pairs(&dict, vec![key, value]);
            }
            SETITEMS => {
                let items = self.pop_mark()?;
                if items.len() % 2 != 0 {
                    return self.malformed("odd number of items for SETITEMS");
                }
                let dict = self.top()?;
                add_pairs(&dict, items);
            }
            EMPTY_SET => self.push(Value::Plain("set"))?,
            FROZENSET => {
                self.pop_mark()?;
                self.push(Value::Plain("frozenset"))?;
            }
            GET => {
                let line = self.take_line()?;
                let Some(index) = parse_decimal(line) else {
                    return self.malformed("GET index is not a number");
                };
                self.memo_get(index)?;
            }
            BINGET => {
                let index = self.take_u8()?;
                self.memo_get(u64::from(index))?;
            }
            LONG_BINGET => {
                let index = self.take_u32()?;
                self.memo_get(u64::from(index))?;
            }
            PUT => {
                let line = self.take_line()?;
                let Some(index) = parse_decimal(line) else {
                    return self.malformed("PUT index is not a number");
                };
                self.memo_put(index)?;
            }
            BINPUT => {
                let index = self.take_u8()?;
                self.memo_put(u64::from(index))?;
            }
            LONG_BINPUT => {
                let index = self.take_u32()?;
                self.memo_put(u64::from(index))?;
            }
            MEMOIZE => {
                let index = self.memo.len() as u64;
                self.memo_put(index)?;
            }
            GLOBAL => {
                let module = self.take_line()?;
                let name = self.take_line()?;
                let (module, name) = self.global_names(module, name)?;
                let global = self.resolve_global(module, name, "GLOBAL");
                self.push_rc(global)?;
            }
            STACK_GLOBAL => {
                let name = self.pop()?;
                let module = self.pop()?;
                let global = match (&*module, &*name) {
                    (Value::Text(module), Value::Text(name)) => {
                        self.check_importable(module, name)?;
                        self.resolve_global(module.clone(), name.clone(), "STACK_GLOBAL")
                    }
                    _ => {
                        self.reporter.globals_seen = self.reporter.globals_seen.saturating_add(1);
                        let message = format!(
                            "STACK_GLOBAL imports a global whose module is {} and name is {}, \
                             not plain strings: the target is built while loading, so no \
                             scanner can tell what gets imported",
                            module.describe(),
                            name.describe()
                        );
                        self.report(
                            Severity::High,
                            RuleId::PickleUnresolvableGlobal,
                            &format!("stack_global@{}", self.op_start),
                            message,
                        );
                        Rc::new(Value::Unresolved)
                    }
                };
                self.push_rc(global)?;
            }
            EXT1 | EXT2 | EXT4 => {
                let code = match opcode {
                    EXT1 => u32::from(self.take_u8()?),
                    EXT2 => u32::from(self.take_u16()?),
                    _ => self.take_u32()?,
                };
                if code == 0 {
                    return self.malformed("EXT specifies code <= 0");
                }
                self.reporter.globals_seen = self.reporter.globals_seen.saturating_add(1);
                self.report(
                    Severity::High,
                    RuleId::PickleUnresolvableGlobal,
                    &format!("ext{code}"),
                    format!(
                        "EXT opcode imports extension code {code} from the loader's copyreg \
                         registry: the global it names is not in the file, so it cannot be checked"
                    ),
                );
                self.push(Value::Unresolved)?;
            }
            REDUCE => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let result = self.call(&callable, &args, "REDUCE");
                self.push_rc(result)?;
            }
            NEWOBJ => {
                let args = self.pop()?;
                let class = self.pop()?;
                let result = self.call(&class, &args, "NEWOBJ");
                self.push_rc(result)?;
            }
            NEWOBJ_EX => {
                let kwargs = self.pop()?;
                let args = self.pop()?;
                let class = self.pop()?;
                // `cls.__new__(cls, *args, **kwargs)`: keyword values are arguments too.
                if let (Value::Global { module, name }, Value::Dict(entries)) = (&*class, &*kwargs)
                {
                    let how = format!("`{module}.{name}` receives it as a keyword argument");
                    let values: Vec<Rc<Value>> = entries
                        .try_borrow()
                        .map(|entries| entries.iter().map(|(_, value)| Rc::clone(value)).collect())
                        .unwrap_or_default();
                    for value in values {
                        self.invoke_arguments(&value, &how, 0);
                    }
                }
                let result = self.call(&class, &args, "NEWOBJ_EX");
                self.push_rc(result)?;
            }
            OBJ => {
                let mut items = self.pop_mark()?;
                if items.is_empty() {
                    return self.malformed("OBJ without a class");
                }
                let class = items.remove(0);
                let args = Rc::new(tuple(items));
                let result = self.call(&class, &args, "OBJ");
                self.push_rc(result)?;
            }
            INST => {
                let module = self.take_line()?;
                let name = self.take_line()?;
                let (module, name) = self.global_names(module, name)?;
                let class = self.resolve_global(module, name, "INST");
                let args = Rc::new(tuple(self.pop_mark()?));
                let result = self.call(&class, &args, "INST");
                self.push_rc(result)?;
            }
            BUILD => {
                let state = self.pop()?;
                let target = self.top()?;
                self.build(&target, &state);
                self.skip_joblib_array(&target, &state)?;
            }
            PERSID => {
                self.take_line()?;
                self.push(Value::Plain("persistent reference"))?;
            }
            BINPERSID => {
                self.pop()?;
                self.push(Value::Plain("persistent reference"))?;
            }
            other => {
                return self.malformed(format!("invalid load key {other:#04x}"));
            }
        }
        Ok(())
    }

    fn push_unicode(&mut self, len: u64) -> Step<()> {
        let (start, len) = self.take_len(len)?;
        if len > MAX_TEXT {
            return self.push(Value::LongText);
        }
        let bytes = self
            .data
            .get(start..start.saturating_add(len))
            .unwrap_or(&[]);
        self.push(Value::text(String::from_utf8_lossy(bytes).into_owned()))
    }

    /// Protocol 0–2 byte strings: Python 3 decodes them to `str` (`encoding="ASCII"` by default,
    /// `latin1` in NumPy/PyTorch loaders), so for name resolution they are text.
    fn push_byte_string_text(&mut self, start: usize, len: usize) -> Step<()> {
        if len > MAX_TEXT {
            return self.push(Value::LongText);
        }
        let bytes = self
            .data
            .get(start..start.saturating_add(len))
            .unwrap_or(&[]);
        self.push(Value::text(latin1(bytes)))
    }

    fn push_bytes(&mut self, len: u64) -> Step<()> {
        let (start, len) = self.take_len(len)?;
        let bytes = self
            .data
            .get(start..start.saturating_add(len))
            .unwrap_or(&[]);
        if self.maybe_nested_pickle(bytes, start) {
            self.reporter.scanned_ranges.insert((start, len));
        }
        self.push(Value::Bytes { start, len })
    }

    // ----- globals, calls, BUILD -----

    fn resolve_global(&mut self, module: String, name: String, opcode: &str) -> Rc<Value> {
        self.reporter.globals_seen = self.reporter.globals_seen.saturating_add(1);
        let qualified = format!("{module}.{name}");
        match allow::classify(&module, &name) {
            Verdict::Allowed if allow::allowed_by_option(&module, &name) => self.report(
                Severity::Info,
                RuleId::PickleAllowedByOption,
                &qualified,
                format!("{opcode} imports `{qualified}`, allowed by --allow (not on the built-in allow-list)"),
            ),
            Verdict::Allowed => {}
            Verdict::Dangerous(reason) => self.report(
                Severity::Critical,
                RuleId::PickleDangerousGlobal,
                &qualified,
                format!(
                    "{opcode} imports `{qualified}`, which {reason}; loading this pickle can run \
                     code chosen by whoever made the file"
                ),
            ),
            Verdict::Unknown => {
                if !self.reporter.probe
                    && !self
                        .reporter
                        .unknown_refs
                        .iter()
                        .any(|(known, _)| *known == qualified)
                {
                    let finding = Finding {
                        severity: Severity::Medium,
                        rule: RuleId::PickleUnknownGlobal,
                        message: format!(
                            "{opcode} imports `{qualified}`, which is not on the allow-list of \
                             globals that checkpoints need; nothing in the stream calls it, but \
                             loading imports its module"
                        ),
                        location: self.location_here(),
                    };
                    self.reporter.unknown_refs.push((qualified, finding));
                }
            }
        }
        Rc::new(Value::Global { module, name })
    }

    /// The symbolic result of `callable(*args)` for REDUCE, NEWOBJ, NEWOBJ_EX, OBJ and INST.
    fn call(&mut self, callable: &Rc<Value>, args: &Rc<Value>, opcode: &str) -> Rc<Value> {
        self.invoke(callable, &format!("{opcode} calls it"));
        if let Value::Global { module, name } = &**callable {
            let how = format!("`{module}.{name}` receives it as an argument and may call it");
            self.invoke_arguments(args, &how, 0);
            self.check_callable_positions(module, name, args);
            // torch's rebuild helpers keep hook dicts (`backward_hooks`) and state dicts whose
            // values torch calls later (a backward pass runs every hook): globals in them are
            // invoked too.
            if matches!(module.as_str(), "torch._utils" | "torch._tensor") {
                let how = format!(
                    "`{module}.{name}` installs it as a hook or attribute that torch calls"
                );
                self.invoke_nested(args, &how, 0);
            }
            // `OrderedDict()` / `dict()` with no arguments: an empty dict that SETITEMS and
            // BUILD fill, tracked like a literal one.
            let empty_args = matches!(&**args, Value::Tuple(items) if items.is_empty());
            if empty_args
                && matches!(
                    (allow::python3_module_name(module), name.as_str()),
                    ("collections", "OrderedDict") | ("builtins", "dict")
                )
            {
                return Rc::new(Value::Dict(RefCell::new(Vec::new())));
            }
        }
        match &**callable {
            Value::Global { module, name } => {
                let made_by = Some((module.clone(), name.clone()));
                let first_text = match &**args {
                    Value::Tuple(items) => match items.first().map(|item| &**item) {
                        Some(Value::Text(text)) if text.len() <= 64 => Some(text.clone()),
                        _ => None,
                    },
                    _ => None,
                };
                match allow::special(module, name) {
                    Special::None => {}
                    Special::Latin1Encode => {
                        if let Some(bytes) = latin1_encode(args) {
                            let bytes: Rc<[u8]> = Rc::from(bytes);
                            self.maybe_nested_pickle(&bytes, self.op_start);
                            return Rc::new(Value::ComputedBytes(bytes));
                        }
                    }
                    Special::NestedPickle => {
                        let qualified = format!("{module}.{name}");
                        self.nested_payload(args, &qualified, false);
                    }
                    Special::NestedTorchSave => {
                        let qualified = format!("{module}.{name}");
                        self.nested_payload(args, &qualified, true);
                    }
                }
                let bare_instance_of = bare_instance(module, name, args, opcode);
                Rc::new(Value::Object {
                    made_by,
                    first_text,
                    dtype_state: Cell::new(DtypeState::Unset),
                    bare_instance_of,
                })
            }
            // Already reported where it was imported.
            Value::Unresolved => Rc::new(Value::Object {
                made_by: None,
                first_text: None,
                dtype_state: Cell::new(DtypeState::Unset),
                bare_instance_of: None,
            }),
            other => {
                let message = format!(
                    "{opcode} calls {}, not a named global: calling values computed while \
                     loading (such as the result of getattr or import_module) is how \
                     allow-list-evading payloads reach dangerous functions",
                    other.describe()
                );
                self.report(
                    Severity::High,
                    RuleId::PickleComputedCall,
                    &format!("call@{}", self.op_start),
                    message,
                );
                Rc::new(Value::Object {
                    made_by: None,
                    first_text: None,
                    dtype_state: Cell::new(DtypeState::Unset),
                    bare_instance_of: None,
                })
            }
        }
    }

    /// `value` is called (or instantiated, or installed as a state setter) while loading: an
    /// unknown global there is high, not medium. Dangerous globals were already reported
    /// critical where they were imported.
    fn invoke(&mut self, value: &Value, how: &str) {
        let Value::Global { module, name } = value else {
            return;
        };
        if allow::classify(module, name) != Verdict::Unknown {
            return;
        }
        let qualified = format!("{module}.{name}");
        self.reporter.invoked.insert(qualified.clone());
        let message = format!(
            "`{qualified}` is not on the allow-list of globals that checkpoints need, and the \
             pickle invokes it ({how}): loading runs its code. If it is your own class, allow it \
             explicitly (`--allow {qualified}`); better, save a state_dict or safetensors"
        );
        self.report(
            Severity::High,
            RuleId::PickleUnknownCall,
            &qualified,
            message,
        );
    }

    /// Arguments of a call: a global among them (or in tuples inside them) may be called by the
    /// callee — `copyreg._reconstructor(cls, base, state)` instantiates `cls`,
    /// `torch._tensor._rebuild_from_type_v2(func, new_type, args, state)` calls `func` — so it
    /// is judged as if it were the call target. Dict values are set as attributes, not called.
    fn invoke_arguments(&mut self, args: &Value, how: &str, depth: usize) {
        match args {
            Value::Global { .. } => self.invoke(args, how),
            Value::Tuple(items) if depth < 4 => {
                for item in items {
                    self.invoke_arguments(item, how, depth + 1);
                }
            }
            _ => {}
        }
    }

    /// Allow-listed helpers call or instantiate some of their arguments
    /// (`_rebuild_from_type_v2(func, new_type, …)` calls `func`, `copyreg._reconstructor(cls,
    /// base, state)` runs `base.__init__`): legitimate pickles put named globals there. A value
    /// built while loading in such a position is a computed call, whatever the helper is.
    fn check_callable_positions(&mut self, module: &str, name: &str, args: &Value) {
        let positions: &[usize] = match (allow::python3_module_name(module), name) {
            ("torch._tensor", "_rebuild_from_type" | "_rebuild_from_type_v2")
            | ("copyreg", "_reconstructor")
            | ("numpy.ma.core", "_mareconstruct") => &[0, 1],
            ("copyreg", "__newobj__" | "__newobj_ex__")
            | ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct")
            | ("torch._utils", "_rebuild_wrapper_subclass")
            | ("collections", "defaultdict") => &[0],
            _ => return,
        };
        let Value::Tuple(items) = args else {
            return;
        };
        for &position in positions {
            let Some(item) = items.get(position) else {
                continue;
            };
            if matches!(
                &**item,
                Value::Global { .. } | Value::Unresolved | Value::Plain("None")
            ) {
                continue;
            }
            let message = format!(
                "`{module}.{name}` calls or instantiates its argument {position}, and the pickle \
                 passes {} there, not a named global: what runs is built while loading",
                item.describe()
            );
            self.report(
                Severity::High,
                RuleId::PickleComputedCall,
                &format!("position@{}:{position}", self.op_start),
                message,
            );
        }
    }

    /// Globals anywhere in tuples and dict values of `value` (bounded depth) are invoked.
    fn invoke_nested(&mut self, value: &Value, how: &str, depth: usize) {
        if depth > 6 {
            return;
        }
        match value {
            Value::Global { .. } => self.invoke(value, how),
            Value::Tuple(items) => {
                for item in items {
                    self.invoke_nested(item, how, depth + 1);
                }
            }
            Value::Dict(entries) => {
                let values: Vec<Rc<Value>> = entries
                    .try_borrow()
                    .map(|entries| entries.iter().map(|(_, value)| Rc::clone(value)).collect())
                    .unwrap_or_default();
                for value in values {
                    self.invoke_nested(&value, how, depth + 1);
                }
            }
            _ => {}
        }
    }

    /// `pickle.loads(b)` / `torch.storage._load_from_bytes(b)`: scan `b` as what it will be
    /// loaded as.
    fn nested_payload(&mut self, args: &Rc<Value>, callee: &str, torch_save: bool) {
        if self.reporter.probe {
            return;
        }
        let first = match &**args {
            Value::Tuple(items) => items.first().cloned(),
            _ => None,
        };
        if let Some(Value::Bytes { start, len }) = first.as_deref() {
            if self.reporter.scanned_ranges.contains(&(*start, *len)) {
                return;
            }
        }
        let bytes = first.as_deref().and_then(|value| self.bytes_of(value));
        let Some(bytes) = bytes else {
            let described = first.map_or_else(|| "nothing".to_string(), |value| value.describe());
            self.report(
                Severity::High,
                RuleId::PickleNestedUnresolvable,
                &format!("nested@{}", self.op_start),
                format!(
                    "`{callee}` loads {described}, which is not a byte string in the file: the \
                     nested payload is built while loading and cannot be checked"
                ),
            );
            return;
        };
        let bytes = bytes.into_owned();
        let member = format!(
            "{callee}@{}",
            self.base_offset.saturating_add(self.op_start as u64)
        );
        let Some(location) = crate::zip::nested_location(self.location, &member) else {
            self.report_too_deep(callee);
            return;
        };
        if !self.spend_nested_budget(bytes.len()) {
            return;
        }
        // `torch.load` reads a zip (or, legacy, a tar) archive when the bytes are one and
        // otherwise unpickles them whatever they start with, so anything else is a pickle stream.
        let archive = matches!(
            crate::scan::identify(&bytes),
            crate::scan::FileKind::Zip | crate::scan::FileKind::Tar
        );
        let nested = if torch_save && archive {
            crate::scan::scan_bytes(&bytes, &location)
        } else {
            scan_stream(&bytes, &location)
        };
        self.extend_findings(nested);
    }

    /// A byte string that starts like a pickle is scanned as one: loaders and gadgets
    /// (`pickle.loads`, `torch.load`, NumPy) unpickle nested bytes, and a payload can hide there.
    /// Raw data that merely starts with 0x80 0x0N and does not parse is left alone.
    /// Returns whether the bytes were scanned as a pickle.
    fn maybe_nested_pickle(&mut self, bytes: &[u8], start: usize) -> bool {
        if self.reporter.probe || bytes.len() < 3 {
            return false;
        }
        if !matches!(bytes, [PROTO, protocol, ..] if *protocol <= 5) {
            return false;
        }
        let member = format!("bytes@{}", self.base_offset.saturating_add(start as u64));
        let Some(location) = crate::zip::nested_location(self.location, &member) else {
            self.report_too_deep("a byte string");
            return false;
        };
        if !self.spend_nested_budget(bytes.len()) {
            return false;
        }
        match scan_tentative(bytes, &location) {
            Some(nested) => {
                self.extend_findings(nested);
                true
            }
            None => false,
        }
    }

    fn spend_nested_budget(&mut self, len: usize) -> bool {
        match self.reporter.nested_budget.checked_sub(len) {
            Some(left) => {
                self.reporter.nested_budget = left;
                true
            }
            None => {
                self.report(
                    Severity::High,
                    RuleId::PickleAnalysisLimit,
                    "nested-budget",
                    "nested pickles add up to more bytes than the scanner reads for one file; \
                     the rest were not checked"
                        .to_string(),
                );
                false
            }
        }
    }

    fn report_too_deep(&mut self, what: &str) {
        self.report(
            Severity::High,
            RuleId::NestingTooDeep,
            &format!("deep@{}", self.op_start),
            format!(
                "{what} nests more than {} containers deep; it was not checked",
                crate::zip::MAX_NESTING
            ),
        );
    }

    fn extend_findings(&mut self, nested: Vec<Finding>) {
        for finding in nested {
            if self.reporter.findings.len() >= MAX_FINDINGS {
                break;
            }
            self.reporter.findings.push(finding);
        }
    }

    /// `BUILD`: `target.__setstate__(state)` or `target.__dict__.update(state)` plus `setattr`
    /// for slot state. Legitimate pickles build fresh instances with plain attribute names; the
    /// known tricks set dunder attributes (`__setstate__`, `__reduce__`, …) so that a later
    /// `BUILD` calls a function of the attacker's choosing, or set attributes on a class or
    /// module object itself.
    fn build(&mut self, target: &Rc<Value>, state: &Rc<Value>) {
        if let Value::Object {
            made_by: Some((module, name)),
            dtype_state,
            ..
        } = &**target
        {
            if module == "numpy" && name == "dtype" {
                dtype_state.set(numpy_dtype_state(state));
            }
        }
        if let Value::Global { module, name } = &**target {
            let message = format!(
                "BUILD sets attributes on the global `{module}.{name}` itself (a class, function \
                 or module, not a fresh instance): this rewires code for everything loaded after"
            );
            self.report(
                Severity::High,
                RuleId::PickleBuildHijack,
                &format!("build@{}", self.op_start),
                message,
            );
        }
        // joblib's `NumpyArrayWrapper.read` rebuilds the array as `subclass` (numpy's
        // `_reconstruct`) unless it is ndarray or memmap: that class is instantiated.
        if let Value::Object {
            made_by,
            bare_instance_of,
            ..
        } = &**target
        {
            let wrapper = |class: &Option<(String, String)>| {
                class
                    .as_ref()
                    .is_some_and(|(module, name)| module == JOBLIB_MODULE && name == JOBLIB_WRAPPER)
            };
            if wrapper(made_by) || wrapper(bare_instance_of) {
                for subclass in state_values(state, "subclass", 0) {
                    let plain_array = matches!(
                        &*subclass,
                        Value::Global { module, name }
                            if matches!(
                                (module.as_str(), name.as_str()),
                                ("numpy", "ndarray" | "memmap")
                                    | ("numpy.core.memmap" | "numpy._core.memmap", "memmap")
                            )
                    );
                    if !plain_array {
                        self.invoke(
                            &subclass,
                            "joblib rebuilds the array as this class while loading",
                        );
                    }
                }
            }
        }
        if let Value::Dict(entries) = &**state {
            if entries
                .try_borrow()
                .is_ok_and(|entries| entries.len() >= MAX_TRACKED_DICT_ITEMS)
            {
                self.report(
                    Severity::High,
                    RuleId::PickleAnalysisLimit,
                    &format!("build-size@{}", self.op_start),
                    format!(
                        "BUILD state with more than {MAX_TRACKED_DICT_ITEMS} items: the keys \
                         after those were not checked for dunder attributes or hooks"
                    ),
                );
            }
        }
        // `nn.Module` hook dicts: torch calls every hook in them when the module runs (forward,
        // backward, state_dict, load_state_dict), so a global there is invoked.
        for key in MODULE_HOOK_KEYS {
            for hooks in state_values(state, key, 0) {
                self.invoke_nested(
                    &hooks,
                    &format!("a BUILD state installs it in `{key}`, which torch calls"),
                    0,
                );
            }
        }
        // The value installed as `__setstate__` is what the next BUILD on this object calls.
        for setter in state_values(state, "__setstate__", 0) {
            self.invoke(
                &setter,
                "a BUILD state installs it as `__setstate__`, which the next BUILD calls",
            );
        }
        let mut dunders = Vec::new();
        collect_dunder_keys(state, &mut dunders, 0);
        if !dunders.is_empty() {
            let message = format!(
                "BUILD sets {} on {}: setting dunder attributes through pickle state is how \
                 payloads hijack __setstate__/__reduce__ to call functions while loading",
                dunders.join(", "),
                target.describe()
            );
            self.report(
                Severity::High,
                RuleId::PickleBuildHijack,
                &format!("build@{}", self.op_start),
                message,
            );
        }
    }
}

impl Machine<'_, '_> {
    /// joblib writes each NumPy array's bytes straight into the file right after the `BUILD` of
    /// its `NumpyArrayWrapper` (an optional alignment-padding record, then the raw data, or an
    /// inline pickle for object arrays) and its unpickler reads them there. Skip exactly those
    /// bytes so the rest of the stream is walked as joblib reads it.
    fn skip_joblib_array(&mut self, target: &Value, state: &Value) -> Step<()> {
        let Value::Object {
            made_by: Some(made_by),
            bare_instance_of,
            ..
        } = target
        else {
            return Ok(());
        };
        let is_wrapper =
            |(module, name): &(String, String)| module == JOBLIB_MODULE && name == JOBLIB_WRAPPER;
        if !is_wrapper(made_by) && !bare_instance_of.as_ref().is_some_and(is_wrapper) {
            return Ok(());
        }
        if !bare_instance_of.as_ref().is_some_and(is_wrapper) {
            // `NumpyArrayWrapper(subclass, shape, order, dtype, …)` sets attributes (an
            // alignment of 16 by default) the BUILD state need not repeat.
            return self.limit(
                "joblib array record made by calling NumpyArrayWrapper with arguments, which \
                 set attributes the scanner does not track",
            );
        }
        let Value::Dict(entries) = state else {
            return self.malformed("joblib array record without a state dict");
        };
        let (shape, dtype, aligned, complete) = {
            let Ok(entries) = entries.try_borrow() else {
                return Ok(());
            };
            // Python's dict keeps the last value of a repeated key.
            let lookup = |wanted: &str| {
                entries.iter().rev().find_map(|(key, value)| match &**key {
                    Value::Text(key) if key == wanted => Some(Rc::clone(value)),
                    _ => None,
                })
            };
            (
                lookup("shape"),
                lookup("dtype"),
                lookup("numpy_array_alignment_bytes"),
                entries.len() < MAX_TRACKED_DICT_ITEMS,
            )
        };
        if !complete {
            return self.limit("joblib array record with more state items than the scanner tracks");
        }
        let (descr, dtype_state) = match dtype.as_deref() {
            Some(Value::Object {
                made_by: Some((module, name)),
                first_text: Some(descr),
                dtype_state,
                ..
            }) if module == "numpy" && name == "dtype" => (descr.clone(), dtype_state.get()),
            _ => return self.limit("joblib array record with a dtype the scanner cannot size"),
        };
        // joblib's `read_array` branches on `dtype.hasobject`: object data is a complete pickle
        // of its own (`pickle.load`, no padding byte); anything else is an optional padding
        // record, then raw bytes. NumPy takes `hasobject` from the pickled flags for flexible
        // and datetime dtypes, so a flag can make a `V8` array an inline pickle.
        let has_objects = match numpy_has_objects(&descr, dtype_state) {
            Some(has_objects) => has_objects,
            None => {
                return self.limit(format!(
                    "joblib array of dtype `{descr}` whose object flag the scanner cannot decide"
                ))
            }
        };
        if has_objects {
            let end = {
                let mut inline = Machine::new(
                    self.data,
                    self.pos,
                    self.location,
                    self.base_offset,
                    &mut *self.reporter,
                );
                inline.run()?
            };
            self.pos = end;
            return Ok(());
        }
        // `getattr(self, "numpy_array_alignment_bytes", None) is not None`: any value but None
        // means a padding-length byte, then that many bytes.
        if aligned.is_some_and(|aligned| !matches!(&*aligned, Value::Plain("None"))) {
            let padding = self.take_u8()?;
            self.take(usize::from(padding))?;
        }
        let Some(item_size) = numpy_item_size(&descr) else {
            return self.limit(format!(
                "joblib array of dtype `{descr}` the scanner cannot size"
            ));
        };
        let count = match shape.as_deref() {
            Some(Value::Tuple(dims)) => dims.iter().try_fold(1u64, |count, dim| match &**dim {
                Value::Int(dim) => u64::try_from(*dim)
                    .ok()
                    .and_then(|dim| count.checked_mul(dim)),
                _ => None,
            }),
            _ => None,
        };
        let Some(len) = count.and_then(|count| count.checked_mul(item_size)) else {
            return self.limit("joblib array record with a shape the scanner cannot size");
        };
        self.take_len(len)?;
        Ok(())
    }
}

/// The `nn.Module` attributes that hold hooks torch calls.
const MODULE_HOOK_KEYS: &[&str] = &[
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
];

const JOBLIB_MODULE: &str = "joblib.numpy_pickle";
const JOBLIB_WRAPPER: &str = "NumpyArrayWrapper";

/// The class a call instantiates without running its `__init__`: `NEWOBJ`/`NEWOBJ_EX` on a
/// class (`cls.__new__(cls, …)`), `copyreg.__newobj__(cls, …)`, and
/// `copyreg._reconstructor(cls, object, None)` (protocol 0/1's spelling of the same).
fn bare_instance(module: &str, name: &str, args: &Value, opcode: &str) -> Option<(String, String)> {
    if opcode == "NEWOBJ" || opcode == "NEWOBJ_EX" {
        return Some((module.to_string(), name.to_string()));
    }
    if module != "copyreg" {
        return None;
    }
    let Value::Tuple(items) = args else {
        return None;
    };
    let class = match items.first().map(|item| &**item) {
        Some(Value::Global { module, name }) => (module.clone(), name.clone()),
        _ => return None,
    };
    match name {
        "__newobj__" | "__newobj_ex__" => Some(class),
        "_reconstructor" => match items.get(1).map(|item| &**item) {
            Some(Value::Global { module, name }) if module == "builtins" && name == "object" => {
                Some(class)
            }
            _ => None,
        },
        _ => None,
    }
}

/// The `numpy.dtype` BUILD state items `hasobject` depends on: `(version, byteorder, subarray,
/// names, fields, elsize, alignment, flags[, metadata])`.
fn numpy_dtype_state(state: &Value) -> DtypeState {
    let Value::Tuple(items) = state else {
        return DtypeState::Unknown;
    };
    match items.first().map(|version| &**version) {
        Some(Value::Int(version)) if *version >= 3 => match items.get(7).map(|flags| &**flags) {
            Some(Value::Int(flags)) => DtypeState::Flags(*flags),
            _ => DtypeState::Unknown,
        },
        // Before version 3 NumPy recomputes the flags from the fields.
        Some(Value::Int(_)) => match items.get(4).map(|fields| &**fields) {
            Some(Value::Plain("None")) => DtypeState::NoFields,
            _ => DtypeState::Unknown,
        },
        _ => DtypeState::Unknown,
    }
}

/// `dtype.hasobject` as NumPy reports it for a dtype made by `numpy.dtype(descr, …)` and then
/// set up by the recorded BUILD state; `None` when it cannot be decided statically.
///
/// Measured with NumPy 2.4: object dtypes always hold objects; the fixed-size numeric dtypes
/// (`b1 i u f c`) are shared descriptors whose `__setstate__` changes nothing; flexible and
/// datetime dtypes (`S a U V M m`) take the flags item of a version-3+ state verbatim.
fn numpy_has_objects(descr: &str, state: DtypeState) -> Option<bool> {
    let code = descr.trim_start_matches(['<', '>', '|', '=']);
    match code.chars().next()? {
        'O' => Some(true),
        'S' | 'a' | 'U' | 'V' | 'M' | 'm' => match state {
            DtypeState::Unset | DtypeState::NoFields => Some(false),
            DtypeState::Flags(flags) => Some(flags & 1 != 0),
            DtypeState::Unknown => None,
        },
        _ => Some(false),
    }
}

/// Bytes per element of a NumPy type string (`'<f8'`, `'|u1'`, `'<U5'`, `'<M8[ns]'`), for the
/// fixed-size kinds joblib stores raw.
fn numpy_item_size(descr: &str) -> Option<u64> {
    let code = descr.trim_start_matches(['<', '>', '|', '=']);
    let code = code.split('[').next().unwrap_or(code);
    let mut chars = code.chars();
    let kind = chars.next()?;
    let digits: String = chars.collect();
    if digits.is_empty() {
        return match kind {
            '?' | 'b' | 'B' => Some(1),
            'h' | 'H' | 'e' => Some(2),
            'i' | 'I' | 'f' => Some(4),
            'l' | 'L' | 'q' | 'Q' | 'd' | 'g' | 'F' => Some(8),
            'D' => Some(16),
            _ => None,
        };
    }
    let size: u64 = digits.parse().ok()?;
    match kind {
        'b' | 'i' | 'u' | 'f' | 'c' | 'M' | 'm' | 'S' | 'a' | 'V' => Some(size),
        'U' => size.checked_mul(4),
        _ => None,
    }
}

/// Dunder attributes that legitimate pickles set through BUILD state and that neither pickle
/// nor Python's special-method lookup consults: `torch.jit.script` leaves `__overloads__` (a dict
/// of method names to overload names) on the modules it compiles, so `torch.save` of such a
/// module carries it. Every other dunder key stays a finding: an instance `__setstate__` is what
/// `load_build` calls next, and through slot state `setattr` can replace `__class__`/`__dict__`.
const HARMLESS_DUNDER_ATTRIBUTES: &[&str] = &["__overloads__"];

/// Values of `key` in a BUILD state: a dict, or a `(dict, slotstate)` tuple.
fn state_values(state: &Value, wanted: &str, depth: usize) -> Vec<Rc<Value>> {
    match state {
        Value::Dict(items) => {
            let Ok(items) = items.try_borrow() else {
                return Vec::new();
            };
            items
                .iter()
                .filter(|(key, _)| matches!(&**key, Value::Text(key) if key == wanted))
                .map(|(_, value)| Rc::clone(value))
                .collect()
        }
        Value::Tuple(items) if depth == 0 => items
            .iter()
            .take(2)
            .flat_map(|item| state_values(item, wanted, depth + 1))
            .collect(),
        _ => Vec::new(),
    }
}

/// Dunder keys (`__setstate__`, `__dict__`, …) of a BUILD state: a dict, or a
/// `(dict, slotstate)` tuple.
fn collect_dunder_keys(state: &Value, found: &mut Vec<String>, depth: usize) {
    match state {
        Value::Dict(items) => {
            let Ok(items) = items.try_borrow() else {
                return;
            };
            for (key, _) in items.iter() {
                if let Value::Text(key) = &**key {
                    if key.len() > 4
                        && key.starts_with("__")
                        && key.ends_with("__")
                        && !HARMLESS_DUNDER_ATTRIBUTES.contains(&key.as_str())
                    {
                        found.push(format!("`{key}`"));
                    }
                }
            }
        }
        Value::Tuple(items) if depth == 0 => {
            for item in items.iter().take(2) {
                collect_dunder_keys(item, found, depth + 1);
            }
        }
        _ => {}
    }
}

/// A module path or attribute path made of Python identifiers (ASCII ones: raw data that happens
/// to parse as a `GLOBAL` almost never spells one).
fn plausible_dotted_name(text: &str) -> bool {
    !text.is_empty()
        && text.split('.').all(|part| {
            part.chars()
                .next()
                .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
                && part
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        })
}

fn tuple(mut items: Vec<Rc<Value>>) -> Value {
    items.truncate(MAX_TRACKED_ITEMS);
    Value::Tuple(items)
}

/// Add `[k0, v0, k1, v1, …]` to a dict value (other targets — lists of pairs, objects with
/// `__setitem__` — are not tracked).
fn add_pairs(dict: &Value, items: Vec<Rc<Value>>) {
    let Value::Dict(cell) = dict else {
        return;
    };
    let Ok(mut entries) = cell.try_borrow_mut() else {
        return;
    };
    let mut items = items.into_iter();
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        if entries.len() >= MAX_TRACKED_DICT_ITEMS {
            break;
        }
        entries.push((key, value));
    }
}

/// `_codecs.encode(text, "latin1")` evaluated, when the arguments are known.
fn latin1_encode(args: &Value) -> Option<Vec<u8>> {
    let Value::Tuple(items) = args else {
        return None;
    };
    let Some(Value::Text(text)) = items.first().map(|item| &**item) else {
        return None;
    };
    let encoding = match items.get(1).map(|item| &**item) {
        Some(Value::Text(encoding)) => encoding.to_ascii_lowercase().replace('_', "-"),
        None => "utf-8".to_string(),
        Some(_) => return None,
    };
    if matches!(
        encoding.as_str(),
        "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" | "l1"
    ) {
        text.chars()
            .map(|ch| u8::try_from(u32::from(ch)).ok())
            .collect()
    } else if matches!(encoding.as_str(), "utf-8" | "utf8") {
        Some(text.as_bytes().to_vec())
    } else {
        None
    }
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&byte| char::from(byte)).collect()
}

fn parse_decimal(line: &[u8]) -> Option<u64> {
    std::str::from_utf8(line).ok()?.trim().parse().ok()
}

/// The inside of a protocol-0 `STRING` argument: `'…'` or `"…"`.
fn unquote(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match line {
        [quote, inner @ .., last] if (*quote == b'\'' || *quote == b'"') && last == quote => {
            Some(inner)
        }
        _ => None,
    }
}

/// Python's `escape_decode` for the escapes module and attribute names could use.
fn unescape(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        index += 1;
        if byte != b'\\' {
            out.push(byte);
            continue;
        }
        let Some(&escaped) = bytes.get(index) else {
            out.push(b'\\');
            break;
        };
        index += 1;
        match escaped {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'0' => out.push(0),
            b'\\' | b'\'' | b'"' => out.push(escaped),
            b'x' => {
                let hex = bytes.get(index..index.saturating_add(2));
                match hex
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                {
                    Some(value) => {
                        out.push(value);
                        index += 2;
                    }
                    None => out.extend_from_slice(b"\\x"),
                }
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    out
}

/// Python's `raw-unicode-escape` decoding (protocol-0 `UNICODE`).
fn raw_unicode_unescape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'\\' {
            let width = match bytes.get(index + 1) {
                Some(b'u') => 4,
                Some(b'U') => 8,
                _ => 0,
            };
            if width > 0 {
                let digits = bytes.get(index + 2..index + 2 + width);
                let decoded = digits
                    .and_then(|digits| std::str::from_utf8(digits).ok())
                    .and_then(|digits| u32::from_str_radix(digits, 16).ok())
                    .and_then(char::from_u32);
                if let Some(ch) = decoded {
                    out.push(ch);
                    index += 2 + width;
                    continue;
                }
            }
        }
        out.push(char::from(byte));
        index += 1;
    }
    out
}

/// Whether `bytes` starts with a header-less (protocol 0/1) pickle that imports a global before
/// it breaks: the unpickler runs everything up to the error, so it is a pickle to scan.
pub fn starts_with_importing_pickle(bytes: &[u8]) -> bool {
    let location = Location::default();
    let mut reporter = Reporter::new(true, bytes.len());
    let mut machine = Machine::new(bytes, 0, &location, 0, &mut reporter).tentative();
    let result = machine.run();
    result.is_ok() || reporter.globals_seen > 0
}

/// Walk the first pickle in `bytes` without reporting: does it reach `STOP` cleanly?
pub fn is_complete_pickle(bytes: &[u8]) -> bool {
    let location = Location::default();
    let mut reporter = Reporter::new(true, bytes.len());
    let mut machine = Machine::new(bytes, 0, &location, 0, &mut reporter);
    machine.run().is_ok()
}

fn halt_finding(halt: &Halt, location: &Location, base_offset: u64) -> Finding {
    let mut location = location.clone();
    location.offset = Some(base_offset.saturating_add(halt.offset as u64));
    location.opcode_index = Some(halt.opcode_index);
    match &halt.kind {
        HaltKind::Malformed(reason) => Finding {
            severity: Severity::High,
            rule: RuleId::PickleMalformed,
            message: format!(
                "malformed pickle ({reason}); loaders still execute everything before the error, \
                 and scanners that give up here miss what follows"
            ),
            location,
        },
        HaltKind::Limit(reason) => Finding {
            severity: Severity::High,
            rule: RuleId::PickleAnalysisLimit,
            message: format!("pickle too large to analyse ({reason}); the rest was not checked"),
            location,
        },
    }
}

/// One pickle the walker read to its `STOP`: where it starts, where it ends (the offset after
/// `STOP`) and how many opcodes it holds, `STOP` included (as `pickletools.genops` counts them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PickleSpan {
    pub start: usize,
    pub end: usize,
    pub opcodes: u64,
}

/// Scan every pickle in `bytes` (one after the other, as repeated `load()` calls read them).
pub fn scan_stream(bytes: &[u8], location: &Location) -> Vec<Finding> {
    walk_stream(bytes, location).0
}

/// The pickles [`scan_stream`] reads in `bytes`, in order.
pub fn pickle_spans(bytes: &[u8]) -> Vec<PickleSpan> {
    walk_stream(bytes, &Location::default()).1
}

fn walk_stream(bytes: &[u8], location: &Location) -> (Vec<Finding>, Vec<PickleSpan>) {
    let mut spans = Vec::new();
    let base_offset = location.offset.unwrap_or(0);
    let mut reporter = Reporter::new(false, bytes.len());
    let mut start = 0usize;
    for index in 0..MAX_PICKLES_IN_STREAM {
        // Later pickles are followed only when they look real: legacy `torch.save` and joblib
        // files put raw array bytes after their pickles.
        let tentative = index > 0;
        let findings_before = reporter.findings.len();
        let globals_before = reporter.globals_seen;
        let (result, opcodes) = {
            let mut machine = Machine::new(bytes, start, location, base_offset, &mut reporter);
            machine.tentative = tentative;
            let result = machine.run();
            (result, machine.opcode_index.saturating_add(1))
        };
        match result {
            Ok(end) => {
                spans.push(PickleSpan {
                    start,
                    end,
                    opcodes,
                });
                start = end;
                // Whatever follows is walked as the next `load()` would read it, header or not:
                // a protocol-0 pickle needs none, and one that breaks right after its call has
                // still made the call. Raw data (legacy torch storages, joblib arrays) ends
                // as "not a pickle" below, once it fails without importing anything.
                if bytes.get(start..).is_none_or(<[u8]>::is_empty) {
                    break;
                }
            }
            Err(halt) => {
                if tentative && reporter.globals_seen == globals_before {
                    // Raw data that happened to start like a pickle: nothing was imported.
                    reporter.findings.truncate(findings_before);
                    let mut trailing = location.clone();
                    trailing.offset = Some(base_offset.saturating_add(start as u64));
                    reporter.findings.push(Finding {
                        severity: Severity::Info,
                        rule: RuleId::PickleTrailingData,
                        message: format!(
                            "{} bytes after the last pickle are not a pickle (raw storage data \
                             in legacy torch and joblib files); unpickling does not read them",
                            bytes.len().saturating_sub(start)
                        ),
                        location: trailing,
                    });
                } else {
                    reporter
                        .findings
                        .push(halt_finding(&halt, location, base_offset));
                }
                break;
            }
        }
    }
    if spans.len() >= MAX_PICKLES_IN_STREAM && start < bytes.len() {
        let mut rest = location.clone();
        rest.offset = Some(base_offset.saturating_add(start as u64));
        reporter.findings.push(Finding {
            severity: Severity::High,
            rule: RuleId::PickleAnalysisLimit,
            message: format!(
                "more than {MAX_PICKLES_IN_STREAM} pickles in one stream; the ones after were \
                 not checked, though a loader calling load() again reads them"
            ),
            location: rest,
        });
    }
    (reporter.finish(), spans)
}

/// Scan a byte string that may or may not be a pickle: keep what it says only if it parses, or if
/// it imports something before breaking.
fn scan_tentative(bytes: &[u8], location: &Location) -> Option<Vec<Finding>> {
    let mut reporter = Reporter::new(false, bytes.len());
    let result = {
        let mut machine = Machine::new(bytes, 0, location, 0, &mut reporter).tentative();
        machine.run()
    };
    match result {
        Ok(_) => Some(scan_stream(bytes, location)),
        Err(halt) if reporter.globals_seen > 0 => {
            let mut findings = reporter.finish();
            findings.push(halt_finding(&halt, location, 0));
            Some(findings)
        }
        Err(_) => None,
    }
}
