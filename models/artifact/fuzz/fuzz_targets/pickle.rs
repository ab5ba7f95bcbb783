//! Fuzz the pickle scanner: it must never panic, hang or allocate without bound on any input.
#![no_main]

use gauntlet_artifact::{pickle, Location};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = pickle::looks_like(bytes);
    let _ = pickle::scan(bytes, &Location::default());
});
