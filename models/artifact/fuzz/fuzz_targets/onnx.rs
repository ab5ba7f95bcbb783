//! Fuzz the onnx scanner: it must never panic, hang or allocate without bound on any input.
#![no_main]

use gauntlet_artifact::{onnx, Location};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = onnx::looks_like(bytes);
    let _ = onnx::scan(bytes, &Location::default());
});
