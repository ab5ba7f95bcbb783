//! Fuzz the zip scanner: it must never panic, hang or allocate without bound on any input.
#![no_main]

use gauntlet_artifact::{zip, Location};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = zip::scan(bytes, &Location::default());
});
