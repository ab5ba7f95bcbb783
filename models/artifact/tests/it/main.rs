#![allow(clippy::unwrap_used, clippy::expect_used)]
//! One integration-test binary for gauntlet-artifact, one module per area.

mod benign;
mod bypass;
mod containers;
mod docs;
mod manifest;
mod onnx;
mod pickle;
mod report;
mod rules;
mod safetensors;
mod signing;
mod support;
mod walk;
