//! gauntlet: the suite runner behind the `gauntlet` command.
//!
//! Data flows one way: dataset → model → attack → results → report. This crate wires the
//! other crates together: it parses suites ([`suite`]), loads and cross-checks model and data
//! ([`load`]), and runs the plan into per-sample records ([`runner`]). Everything after the
//! records — figures, sanity checks, gates — is `gauntlet_results::aggregate`, a pure function
//! of the plan and the records, which hands a [`gauntlet_reports::RunReport`] to the report
//! writers.

pub mod backdoor;
pub mod baseline;
pub mod bom;
pub mod budget;
pub mod cli;
pub mod commands;
pub mod detector;
pub mod device;
pub mod inspect;
pub mod journal;
pub mod load;
pub mod matrix;
pub mod matrix_run;
pub mod merge;
pub mod output;
pub mod probing;
pub mod progress;
pub mod provenance;
pub mod runner;
pub mod shard;
pub mod suite;
pub mod summary;
pub mod torchscript;
pub mod work;
