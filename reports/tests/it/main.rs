//! The one integration test binary of gauntlet-reports (one binary per crate saves link time).

mod chromium;
mod csv_file;
mod fixture;
mod html_page;
mod json_file;
mod png_plots;
mod write_all;
