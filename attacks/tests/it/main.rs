//! The integration tests of gauntlet-attacks, in one binary to save link time.

// Test helpers outside `#[test]` functions panic on failure by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod apgd;
mod autoattack;
mod backdoor;
mod byom_formats;
mod clean_label;
mod conformance;
mod detector;
mod docs;
mod native_path;
mod ordering;
mod params;
mod passes;
mod square;
mod standard_credit;
mod support;
mod torchattacks;
mod trained;
