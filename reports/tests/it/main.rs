//! The one integration test binary of gauntlet-reports (one binary per crate saves link time).

// Test code may panic on unexpected errors: that is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chromium;
mod ci_outputs;
mod csv_file;
mod detector;
mod fixture;
mod html_page;
mod json_file;
mod png_plots;
mod write_all;
