//! Pickle streams (protocols 0–5), scanned without executing them.
//!
//! The walker reads the opcode stream the way CPython's unpickler does, but every value it would
//! build is replaced by a small symbolic [`Value`]: enough to know which global each
//! `GLOBAL` / `STACK_GLOBAL` / `INST` names (even when its module and name strings come from the
//! memo), what each call (`REDUCE`, `NEWOBJ`, `NEWOBJ_EX`, `INST`, `OBJ`) calls, what `BUILD`
//! sets, and which byte strings are themselves pickles. Nothing is imported or called.
//!
//! Verdicts come from [`allow`]: allowed globals pass, dangerous ones are critical, anything else
//! is medium. A stream the real unpickler would reject is still reported — the unpickler runs
//! every opcode before the bad one, so a payload can sit in front of deliberate garbage.

mod allow;
mod walker;

pub use allow::{classify, Verdict};
pub use walker::{MAX_MEMO, MAX_STACK};

use crate::{Finding, Location};

/// Whether `bytes` is a pickle: a `PROTO` header naming protocol 2–5 (0x80 then 0–5), or a
/// protocol-0/1 stream (no header) that the walker reads cleanly up to its `STOP`.
pub fn looks_like(bytes: &[u8]) -> bool {
    match bytes {
        [0x80, protocol, ..] => *protocol <= 5,
        _ => walker::is_complete_pickle(bytes),
    }
}

/// Whether `bytes` starts with a pickle that parses cleanly up to its `STOP` opcode (stricter
/// than [`looks_like`]: used for byte strings that might be pickles or might be raw data).
pub fn is_complete_pickle(bytes: &[u8]) -> bool {
    walker::is_complete_pickle(bytes)
}

/// Scan a pickle stream and everything nested in it. Concatenated pickles (legacy `torch.save`,
/// joblib, several `pickle.dump` calls on one file) are scanned one after the other.
///
/// `location.offset`, when set, is where `bytes` starts inside the innermost member; findings
/// carry absolute offsets.
pub fn scan(bytes: &[u8], location: &Location) -> Vec<Finding> {
    walker::scan_stream(bytes, location)
}
