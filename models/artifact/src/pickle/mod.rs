//! Pickle streams (protocols 0–5), scanned without executing them.
//!
//! The walker reads the opcode stream the way CPython's unpickler does, but every value it would
//! build is replaced by a small symbolic `Value`: enough to know which global each
//! `GLOBAL` / `STACK_GLOBAL` / `INST` names (even when its module and name strings come from the
//! memo), what each call (`REDUCE`, `NEWOBJ`, `NEWOBJ_EX`, `INST`, `OBJ`) calls, what `BUILD`
//! sets, and which byte strings are themselves pickles. Nothing is imported or called.
//!
//! Verdicts come from the `allow` module and from what the stream does with each global: a
//! dangerous global is critical; an unknown one that the stream *invokes* (calls, instantiates,
//! passes to an allow-listed helper that calls its argument, installs as `__setstate__`) is high;
//! an unknown one only named is medium; allowed ones pass. A stream the real unpickler would reject is still reported — the unpickler runs
//! every opcode before the bad one, so a payload can sit in front of deliberate garbage.

mod allow;
mod walker;

pub use allow::{classify, parse_allowed, with_extra_allowed, Verdict};
pub use walker::{PickleSpan, MAX_MEMO, MAX_STACK};

use crate::{Finding, Location};

/// Whether `bytes` is a pickle: a `PROTO` header naming protocol 2–5 (0x80 then 0–5), or a
/// protocol-0/1 stream (no header) that the walker reads cleanly up to its `STOP` or that
/// imports a global before it breaks (the unpickler has run it by then).
pub fn looks_like(bytes: &[u8]) -> bool {
    match bytes {
        [0x80, protocol, ..] => *protocol <= 5,
        _ => walker::starts_with_importing_pickle(bytes),
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

/// The pickles [`scan`] reads in `bytes`, one after the other: start, end (after `STOP`) and
/// opcode count of each. The differential test compares them with `pickletools.genops`.
pub fn spans(bytes: &[u8]) -> Vec<PickleSpan> {
    walker::pickle_spans(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RuleId, Severity};

    fn rules(bytes: &[u8]) -> Vec<(Severity, RuleId)> {
        scan(bytes, &Location::default())
            .into_iter()
            .map(|finding| (finding.severity, finding.rule))
            .collect()
    }

    #[test]
    fn looks_like_needs_a_known_protocol_or_a_clean_text_pickle() {
        assert!(looks_like(b"\x80\x05"));
        assert!(!looks_like(b"\x80\x06"));
        assert!(looks_like(b"N."));
        assert!(looks_like(b"(lp0\nI1\na."));
        assert!(!looks_like(b"hello world\n"));
        assert!(!looks_like(b"."), "STOP on an empty stack is an error");
        assert!(!looks_like(b""));
    }

    #[test]
    fn clean_pickles_have_no_findings() {
        assert!(rules(b"\x80\x04}\x94(\x8c\x01a\x94K\x01u.").is_empty());
        // collections.OrderedDict() via REDUCE, as in every state dict.
        assert!(rules(b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01.").is_empty());
    }

    #[test]
    fn malformed_streams_are_reported_at_the_failing_opcode() {
        let findings = scan(b"\x80\x02K\x01\xff.", &Location::default());
        let malformed = findings.iter().find(|f| f.rule == RuleId::PickleMalformed);
        let malformed = malformed.map(|f| (f.severity, f.location.offset, f.location.opcode_index));
        assert_eq!(malformed, Some((Severity::High, Some(4), Some(2))));
        for broken in [
            &b"\x80\x02t."[..],           // TUPLE without MARK
            b"\x80\x020.",                // POP on an empty stack
            b"\x80\x02h\x07.",            // BINGET of a missing memo entry
            b"\x80\x02N",                 // no STOP
            b"\x80\x02X\xff\xff\xff\x00", // length past the end
            b"\x80\x09N.",                // unsupported protocol
        ] {
            assert!(
                rules(broken)
                    .iter()
                    .any(|(severity, rule)| *severity == Severity::High
                        && *rule == RuleId::PickleMalformed),
                "{broken:?}"
            );
        }
    }

    #[test]
    fn memo_strings_resolve_and_unknown_globals_are_medium() {
        // module/name put in the memo with PUT, fetched back with GET (protocol 0 spelling).
        let stream = b"Vmy_pkg\np0\n0Vhelper\np1\n0g0\ng1\n\x93.";
        let found = rules(stream);
        assert_eq!(found, vec![(Severity::Medium, RuleId::PickleUnknownGlobal)]);
    }

    #[test]
    fn calls_on_computed_values_are_high() {
        // collections.OrderedDict()() : calling the result of a call.
        let stream = b"\x80\x02ccollections\nOrderedDict\n)R)R.";
        assert!(rules(stream).contains(&(Severity::High, RuleId::PickleComputedCall)));
    }

    #[test]
    fn raw_bytes_that_start_like_a_pickle_are_not_reported() {
        // An int64 tensor holding 128 starts with 0x80 0x00 — a PROTO 0 header followed by junk.
        let mut stream = b"\x80\x04C\x10".to_vec();
        stream.extend([0x80, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        stream.push(b'.');
        assert!(rules(&stream).is_empty());
    }
}
