//! `--baseline PATH/results.json`: compare the run with an earlier one and evaluate the suite's
//! relative gates (`[gate] max_robust_accuracy_drop = 0.02`). The comparison itself is
//! `gauntlet_results::baseline`, a pure function of the two reports; this module reads the
//! baseline, turns the suite's gate keys into [`RelativeGate`]s and puts the outcome into the
//! report.

use std::path::Path;

use anyhow::{bail, Context, Result};
use gauntlet_attacks::Norm;
use gauntlet_reports::RunReport;
use gauntlet_results::baseline::{compare, evaluate_relative, DropTarget, RelativeGate};

use crate::suite::PlannedAttack;

/// The suite keys of relative gates, as `[gate]` spells them.
pub const CLEAN_DROP_KEY: &str = "max_clean_accuracy_drop";
pub const ROBUST_DROP_KEY: &str = "max_robust_accuracy_drop";
pub const WORST_CASE_DROP_KEY: &str = "max_worst_case_accuracy_drop";

/// The relative gates of a suite's `[gate]` section. Each of the two per-figure keys takes a
/// number (every attack@ε, or every worst case, of the run) or a table of `"label@ε"` /
/// `"norm@ε"` keys, checked against the suite's attacks like the absolute gates.
pub fn plan_relative_gates(
    clean: Option<f64>,
    robust: Option<&toml::Value>,
    worst_case: Option<&toml::Value>,
    attacks: &[PlannedAttack],
) -> Result<Vec<RelativeGate>> {
    let mut gates = Vec::new();
    if let Some(max_drop) = clean {
        gates.push(RelativeGate {
            target: DropTarget::Clean,
            max_drop: check_drop(CLEAN_DROP_KEY, max_drop)?,
        });
    }
    if let Some(value) = robust {
        for (key, max_drop) in limits(ROBUST_DROP_KEY, value)? {
            let target = match key {
                None => DropTarget::EveryAttack,
                Some(key) => {
                    let (label, epsilon) = split_key(ROBUST_DROP_KEY, &key)?;
                    if !attacks
                        .iter()
                        .any(|a| a.label == label && a.epsilon == epsilon)
                    {
                        let available: Vec<String> = attacks
                            .iter()
                            .map(|a| format!("{}@{}", a.label, a.epsilon))
                            .collect();
                        bail!(
                            "gate `{ROBUST_DROP_KEY}.\"{key}\"` names no attack of this suite; available: {}",
                            available.join(", ")
                        );
                    }
                    DropTarget::Attack { label, epsilon }
                }
            };
            gates.push(RelativeGate { target, max_drop });
        }
    }
    if let Some(value) = worst_case {
        for (key, max_drop) in limits(WORST_CASE_DROP_KEY, value)? {
            let target = match key {
                None => DropTarget::EveryWorstCase,
                Some(key) => {
                    let (norm, epsilon) = split_key(WORST_CASE_DROP_KEY, &key)?;
                    let norm = match norm.as_str() {
                        "linf" => Norm::Linf,
                        "l2" => Norm::L2,
                        other => bail!(
                            "gate `{WORST_CASE_DROP_KEY}.\"{key}\"`: `{other}` is not a norm; use `linf` or `l2`"
                        ),
                    };
                    if !attacks
                        .iter()
                        .any(|a| a.attack.threat().norm == norm && a.epsilon == epsilon)
                    {
                        bail!("gate `{WORST_CASE_DROP_KEY}.\"{key}\"`: no attack of this suite runs at {norm} ε = {epsilon}");
                    }
                    DropTarget::WorstCase { norm, epsilon }
                }
            };
            gates.push(RelativeGate { target, max_drop });
        }
    }
    Ok(gates)
}

/// A number (`None` key: every figure) or a table of `key = number`.
fn limits(name: &str, value: &toml::Value) -> Result<Vec<(Option<String>, f64)>> {
    let number = |key: &str, value: &toml::Value| -> Result<f64> {
        let drop = match value {
            toml::Value::Float(f) => *f,
            toml::Value::Integer(i) => *i as f64,
            other => bail!(
                "gate `{key}` must be a number (a fraction, e.g. 0.02 for two points), got a {}",
                other.type_str()
            ),
        };
        check_drop(key, drop)
    };
    match value {
        toml::Value::Table(table) => table
            .iter()
            .map(|(key, value)| {
                Ok((
                    Some(key.clone()),
                    number(&format!("{name}.\"{key}\""), value)?,
                ))
            })
            .collect(),
        other => Ok(vec![(None, number(name, other)?)]),
    }
}

fn check_drop(name: &str, drop: f64) -> Result<f64> {
    if !(0.0..=1.0).contains(&drop) {
        bail!("gate `{name}`: the largest allowed drop must be a fraction in [0, 1], got {drop}");
    }
    Ok(drop)
}

fn split_key(name: &str, key: &str) -> Result<(String, f32)> {
    let (left, epsilon) = key
        .rsplit_once('@')
        .with_context(|| format!("gate key `{name}.\"{key}\"` must look like `name@epsilon`"))?;
    let epsilon: f32 = epsilon
        .parse()
        .with_context(|| format!("gate key `{name}.\"{key}\"`: `{epsilon}` is not a number"))?;
    Ok((left.to_owned(), epsilon))
}

/// Read a baseline `results.json` (schema 1 or 2) through the reading layer.
pub fn read_baseline(path: &Path) -> Result<RunReport> {
    let bytes = gauntlet_files::read_bounded(path, gauntlet_files::limits::RESULTS_JSON)
        .with_context(|| format!("cannot read the baseline `{}`", path.display()))?;
    if gauntlet_reports::matrix::is_matrix_json(&bytes) {
        bail!(
            "the baseline `{}` is a matrix run's results: compare one model with its cell's \
             results, `{}/MODEL--DATASET/results.json` beside it",
            path.display(),
            gauntlet_reports::matrix::CELLS_DIR
        );
    }
    gauntlet_reports::parse_json(&bytes, path)
        .with_context(|| format!("cannot read the baseline `{}`", path.display()))
}

/// Put the comparison with `baseline` and the relative gates' verdicts into `report`.
pub fn apply(
    report: &mut RunReport,
    baseline: &RunReport,
    baseline_path: &Path,
    gates: &[RelativeGate],
) {
    let comparison = compare(baseline, &baseline_path.display().to_string(), report);
    let verdicts = evaluate_relative(gates, &comparison, report);
    report.gates.extend(verdicts);
    report.baseline = Some(comparison);
}
