//! Fuzz the content dispatcher: identification plus whichever scanner the bytes reach, nested
//! containers included.
#![no_main]

use gauntlet_artifact::{scan, Location};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = scan::scan_bytes(bytes, &Location::default());
});
