#![allow(clippy::unwrap_used, clippy::expect_used)]
//! One integration-test binary for gauntlet-artifact, one module per area.

mod onnx;
mod report;
mod safetensors;
mod walk;
mod manifest;
mod signing;
mod pickle;
