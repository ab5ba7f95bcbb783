#![allow(clippy::unwrap_used, clippy::expect_used)]
//! One integration binary for the `gauntlet` command: each test runs the real binary in a
//! fresh temp dir.

mod backdoor;
mod bad_input;
mod cli;
mod common;
mod detector;
mod hostile_files;
mod limits;
mod minimal_norm;
mod provenance;
mod readable_text;
mod records;
mod sanity;
mod torchscript;
