//! Fuzz the safetensors scanner: it must never panic, hang or allocate without bound on any input.
#![no_main]

use gauntlet_artifact::{safetensors, Location};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = safetensors::looks_like(bytes);
    let _ = safetensors::scan(bytes, &Location::default());
});
