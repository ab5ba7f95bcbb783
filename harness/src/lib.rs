//! gauntlet: the suite runner behind the `gauntlet` command.
//!
//! Data flows one way: dataset → model → attack → results → report. This crate wires the
//! other crates together: it parses suites ([`suite`]), loads and cross-checks model and data
//! ([`load`]), runs clean and adversarial passes ([`runner`]), self-checks the measurement
//! ([`sanity`]), applies gates ([`gate`]) and hands a [`gauntlet_reports::RunReport`] to the
//! report writers.

pub mod bom;
pub mod cli;
pub mod commands;
pub mod device;
pub mod gate;
pub mod load;
pub mod metrics;
pub mod progress;
pub mod provenance;
pub mod runner;
pub mod sanity;
pub mod suite;
pub mod summary;
