#![allow(clippy::unwrap_used, clippy::expect_used)]
//! One integration binary for the `gauntlet` command: each test runs the real binary in a
//! fresh temp dir.

mod backdoor;
mod bad_input;
mod ci_examples;
mod cli;
mod common;
mod convergence;
mod detector;
mod hostile_files;
mod limits;
mod matrix;
mod minimal_norm;
mod probing;
mod provenance;
mod readable_text;
mod records;
mod sanity;
mod shards;
mod torchscript;
