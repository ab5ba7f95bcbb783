//! Running, sharding, resuming and merging a matrix suite (`crate::matrix`).
//!
//! Each cell runs exactly as a single-model suite does — the same work units, journal, shard
//! manifests and merge — inside its own folder `OUT/cells/MODEL--DATASET/`:
//!
//! - A whole run stages its outputs as any run does: every cell's complete outputs go to
//!   `cells/ID/` in the staging folder, the matrix's own `results.json` (every cell's report,
//!   whole), `report.html`, `results.csv`, `junit.xml` and `summary.md` to its top, and the
//!   folder replaces `OUT` at the end. Until then each cell keeps its journal in
//!   `OUT/cells/ID/journal/`, so a killed run resumes cell by cell, unit by unit.
//! - `--shard I/N` runs shard I of *every* cell's units (each cell's units are spread over the
//!   N shards by their cost, so the shards stay balanced across models × attacks × ε), writes
//!   each cell's `shard.json` into `OUT/cells/ID/`, then `OUT/matrix.json`
//!   ([`MatrixShardManifest`]), which lists the cells.
//! - `gauntlet merge` on such folders checks that every shard lists the same cells of the same
//!   suite, merges each cell's shards with the single-run checks (identity, coverage, hashes),
//!   and writes what the unsharded matrix run writes.
//!
//! The exit code is 1 when any cell fails a gate (or a sanity check, unless its suite lets
//! them pass): gates are per model (`[model.gate]` over the suite's `[gate]`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use gauntlet_reports::matrix::{MatrixCell, MatrixReport, CELLS_DIR, MATRIX_SCHEMA_VERSION};
use gauntlet_reports::{CheckStatus, OutputFormat, RunReport, SuiteInfo};
use gauntlet_results::baseline::RelativeGate;
use serde::{Deserialize, Serialize};

use crate::cli::{MergeArgs, RunArgs};
use crate::commands::{
    execute, existing_policy, shard_of, stdout_line, verdict_for, write_run, Outcome,
};
use crate::journal::OnMismatch;
use crate::matrix::MatrixSuite;
use crate::output::{Existing, Staging};
use crate::progress::Progress;
use crate::shard::ShardSpec;

/// A matrix shard's manifest, beside its `cells/` folder.
pub const MATRIX_SHARD_MANIFEST: &str = "matrix.json";
/// Version of `matrix.json`.
pub const MATRIX_SHARD_VERSION: u32 = 1;

/// `matrix.json`: a finished shard of a matrix run. Each cell's own `shard.json` carries the
/// identity `merge` checks; this names the cells and the suite they come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixShardManifest {
    pub matrix_shard_version: u32,
    pub suite: SuiteInfo,
    /// SHA-256 of the suite file, as each cell's identity records it.
    pub suite_sha256: String,
    pub seed: u64,
    pub shard: ShardSpec,
    /// `(id, model, dataset)` of every cell, in suite order.
    pub cells: Vec<(String, String, String)>,
    pub formats: Vec<OutputFormat>,
}

fn cell_dir(out: &Path, id: &str) -> PathBuf {
    out.join(CELLS_DIR).join(id)
}

/// A matrix's baseline: an earlier matrix run's `results.json`.
struct Baseline {
    matrix: MatrixReport,
    path: PathBuf,
}

impl Baseline {
    fn read(path: &Path) -> Result<Baseline> {
        let bytes = gauntlet_files::read_bounded(path, gauntlet_files::limits::RESULTS_JSON)
            .with_context(|| format!("cannot read the baseline `{}`", path.display()))?;
        if !gauntlet_reports::matrix::is_matrix_json(&bytes) {
            bail!(
                "the baseline `{}` is one run's results, not a matrix's: a matrix suite compares \
                 each model with the same cell of an earlier matrix run's results.json",
                path.display()
            );
        }
        let matrix = gauntlet_reports::matrix::parse_matrix_json(&bytes, path)
            .with_context(|| format!("cannot read the baseline `{}`", path.display()))?;
        Ok(Baseline {
            matrix,
            path: path.to_path_buf(),
        })
    }

    fn cell(&self, id: &str) -> Option<&RunReport> {
        self.matrix
            .cells
            .iter()
            .find(|c| c.id == id)
            .map(|c| &c.report)
    }
}

/// Read `--baseline`, or refuse a matrix with relative gates and neither `--baseline` nor
/// `--no-baseline` — before any work.
fn read_baseline(
    gates: &[&[RelativeGate]],
    baseline: Option<&Path>,
    no_baseline: bool,
) -> Result<Option<Baseline>> {
    match baseline {
        Some(path) => Baseline::read(path).map(Some),
        None if gates.iter().any(|g| !g.is_empty()) && !no_baseline => bail!(
            "the suite has relative gates but no baseline was given: pass --baseline \
             PATH/results.json (an earlier matrix run's), or --no-baseline to run without them"
        ),
        None => Ok(None),
    }
}

/// One finished cell: its report written into `dir`, compared with the baseline's cell.
#[allow(clippy::too_many_arguments)]
fn finish_cell(
    evaluation: &crate::runner::Evaluation,
    id: &str,
    model: &str,
    dataset: &str,
    dir: &Path,
    shown_dir: &Path,
    formats: &[OutputFormat],
    relative_gates: &[RelativeGate],
    baseline: Option<&Baseline>,
    progress: &Progress,
) -> Result<MatrixCell> {
    let previous = baseline.and_then(|b| b.cell(id).map(|r| (r, b.path.as_path())));
    let (mut report, _) = write_run(
        evaluation,
        dir,
        shown_dir,
        formats,
        relative_gates,
        previous,
        progress,
    )?;
    if let (Some(baseline), None) = (baseline, previous) {
        // Fail closed: a relative gate with nothing to compare against cannot pass.
        let why = format!(
            "the baseline `{}` has no cell `{id}`, so no drop can be measured",
            baseline.path.display()
        );
        let verdicts = gauntlet_results::baseline::unmeasurable(relative_gates, &report, &why);
        if !verdicts.is_empty() {
            report.gates.extend(verdicts);
            // Rewrite the cell's renderings with the failed gates.
            gauntlet_reports::write_all(&report, dir, formats)
                .with_context(|| format!("cannot write reports to `{}`", shown_dir.display()))?;
        }
    }
    let passed =
        verdict_for(&report, evaluation.plan.fail_on_sanity, progress, Some(id)) == Outcome::Passed;
    Ok(MatrixCell {
        id: id.to_string(),
        model: model.to_string(),
        dataset: dataset.to_string(),
        folder: gauntlet_reports::matrix::cell_folder(id),
        passed,
        report,
    })
}

/// Write the matrix's own outputs into the staging folder, commit it, print the summary.
fn publish_matrix(
    matrix: MatrixReport,
    staging: Staging,
    formats: &[OutputFormat],
    progress: &Progress,
) -> Result<Outcome> {
    let written = gauntlet_reports::matrix::write_matrix(&matrix, staging.path(), formats)
        .with_context(|| format!("cannot write reports to `{}`", staging.target().display()))?;
    let written: Vec<PathBuf> = written.iter().map(|p| staging.final_path(p)).collect();
    let out = staging.commit()?;
    stdout_line(&summary(&matrix))?;
    for path in &written {
        stdout_line(&format!("wrote {}", path.display()))?;
    }
    stdout_line(&format!(
        "wrote each cell's results and report into {}",
        out.join(CELLS_DIR).display()
    ))?;
    let outcome = if matrix.passed {
        Outcome::Passed
    } else {
        Outcome::Failed
    };
    progress.event(
        "run_finished",
        serde_json::json!({
            "outcome": match outcome { Outcome::Passed => "passed", Outcome::Failed => "failed" },
            "exit_code": outcome.exit_code(),
            "cells": matrix.cells.iter().map(|c| serde_json::json!({
                "cell": c.id,
                "passed": c.passed,
                "clean_accuracy": c.report.clean.accuracy.value,
            })).collect::<Vec<_>>(),
            "files": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        }),
    );
    Ok(outcome)
}

/// One line per cell: clean accuracy, the worst case at every norm@ε, the verdict.
fn summary(matrix: &MatrixReport) -> String {
    let mut lines = vec![format!(
        "gauntlet {} · matrix suite `{}` · {} cells · seed {}",
        matrix.gauntlet_version,
        matrix.suite.name,
        matrix.cells.len(),
        matrix.seed
    )];
    for cell in &matrix.cells {
        let report = &cell.report;
        let mut figures = vec![format!("clean {:.1}%", report.clean.accuracy.value * 100.0)];
        figures.extend(report.worst_case.iter().map(|w| {
            format!(
                "worst {}@{} {:.1}%",
                w.norm,
                w.epsilon,
                w.robust_accuracy.value * 100.0
            )
        }));
        let failed_gates = report.gates.iter().filter(|g| !g.passed).count();
        let failed_checks = report
            .sanity_checks
            .iter()
            .filter(|c| c.status == CheckStatus::Fail)
            .count();
        lines.push(format!(
            "  {:<32} {} samples · {} · {} ({} of {} gates failed, {failed_checks} sanity checks failed)",
            cell.id,
            report.dataset.samples,
            figures.join(" · "),
            if cell.passed { "passed" } else { "FAILED" },
            failed_gates,
            report.gates.len()
        ));
    }
    lines.push(format!(
        "verdict: {}",
        if matrix.passed { "passed" } else { "failed" }
    ));
    lines.join("\n")
}

fn suite_info(matrix: &MatrixSuite) -> SuiteInfo {
    SuiteInfo {
        name: matrix.name.clone(),
        path: matrix.path.as_ref().map(|p| p.display().to_string()),
    }
}

fn matrix_report(suite: SuiteInfo, seed: u64, cells: Vec<MatrixCell>) -> MatrixReport {
    MatrixReport {
        matrix_schema_version: MATRIX_SCHEMA_VERSION,
        gauntlet_version: env!("CARGO_PKG_VERSION").to_string(),
        suite,
        seed,
        passed: cells.iter().all(|c| c.passed),
        cells,
    }
}

/// `gauntlet run` on a matrix suite: every cell, or shard I/N of every cell.
pub fn run(matrix: &MatrixSuite, args: &RunArgs) -> Result<Outcome> {
    let out = matrix.out();
    let shard = shard_of(args)?;
    let gates: Vec<&[RelativeGate]> = matrix
        .cells
        .iter()
        .map(|c| c.suite.relative_gates.as_slice())
        .collect();
    let baseline = match shard {
        Some(_) if args.baseline.is_some() => bail!(
            "--baseline compares a whole run: pass it to `gauntlet merge`, which evaluates the \
             gates on the merged results"
        ),
        Some(_) => None,
        None => read_baseline(&gates, args.baseline.as_deref(), args.no_baseline)?,
    };
    let staging = match shard {
        Some(_) => {
            crate::output::check_shard_folder(&out, crate::output::ShardKind::Matrix)?;
            // Written again once every cell's shard is done: until then the folder must not
            // pass for a finished shard.
            let manifest = out.join(MATRIX_SHARD_MANIFEST);
            if manifest.is_file() {
                fs_err::remove_file(&manifest)?;
            }
            None
        }
        None => Some(Staging::begin_over_journal(
            &out,
            existing_policy(args.overwrite, Existing::Replace),
        )?),
    };
    // A missing file of the last cell is refused now, not after every other cell has run.
    if let Some(path) = &matrix.path {
        for cell in &matrix.cells {
            crate::commands::check_sources_exist(&cell.suite, path)
                .with_context(|| format!("cell `{}`", cell.id))?;
        }
    }
    let progress = Progress::with_format(args.quiet, args.log_format);
    progress.event(
        "run_started",
        serde_json::json!({
            "suite": matrix.name,
            "seed": matrix.seed,
            "cells": matrix.cells.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
            "out": out.display().to_string(),
            "baseline": args.baseline.as_ref().map(|p| p.display().to_string()),
            "shard": shard.map(|s| s.to_string()),
        }),
    );
    let mut cells = Vec::with_capacity(matrix.cells.len());
    let mut suite_sha256 = String::new();
    for (i, cell) in matrix.cells.iter().enumerate() {
        let fields =
            serde_json::json!({ "cell": cell.id, "index": i, "cells": matrix.cells.len() });
        if args.quiet {
            progress.event("cell_started", fields);
        } else {
            progress.report(
                &format!(
                    "cell {} of {}: model `{}` on dataset `{}`",
                    i + 1,
                    matrix.cells.len(),
                    cell.model,
                    cell.dataset
                ),
                "cell_started",
                fields,
            );
        }
        let dir = cell_dir(&out, &cell.id);
        let executed = execute(
            &cell.suite,
            &dir,
            shard,
            args,
            OnMismatch::Refuse,
            &progress,
        )
        .with_context(|| format!("cell `{}`", cell.id))?;
        suite_sha256.clone_from(&executed.identity.suite_sha256);
        match (shard, &staging) {
            (Some(spec), _) => {
                fs_err::create_dir_all(&dir)?;
                executed.manifest(&cell.suite, spec).write(&dir)?;
            }
            (None, Some(staging)) => {
                let evaluation = executed.evaluation()?;
                cells.push(finish_cell(
                    &evaluation,
                    &cell.id,
                    &cell.model,
                    &cell.dataset,
                    &cell_dir(staging.path(), &cell.id),
                    &dir,
                    &cell.suite.report.formats,
                    &cell.suite.relative_gates,
                    baseline.as_ref(),
                    &progress,
                )?);
            }
            (None, None) => bail!("a whole run has a staging folder (a bug in this build)"),
        }
    }
    progress.finish();
    if let Some(spec) = shard {
        let manifest = MatrixShardManifest {
            matrix_shard_version: MATRIX_SHARD_VERSION,
            suite: suite_info(matrix),
            suite_sha256,
            seed: matrix.seed,
            shard: spec,
            cells: matrix
                .cells
                .iter()
                .map(|c| (c.id.clone(), c.model.clone(), c.dataset.clone()))
                .collect(),
            formats: matrix.formats().to_vec(),
        };
        let path = out.join(MATRIX_SHARD_MANIFEST);
        crate::output::write_file_atomically(
            &path,
            serde_json::to_string_pretty(&manifest)?.as_bytes(),
        )?;
        stdout_line(&format!(
            "shard {spec} of {} cells; join the shards with `gauntlet merge`",
            matrix.cells.len()
        ))?;
        stdout_line(&format!("wrote {}", path.display()))?;
        progress.event(
            "run_finished",
            serde_json::json!({
                "outcome": "shard_finished",
                "exit_code": 0,
                "shard": spec.to_string(),
                "files": [path.display().to_string()],
            }),
        );
        return Ok(Outcome::Passed);
    }
    let staging = staging.context("a whole run has a staging folder (a bug in this build)")?;
    publish_matrix(
        matrix_report(suite_info(matrix), matrix.seed, cells),
        staging,
        matrix.formats(),
        &progress,
    )
}

pub(crate) fn read_shard_manifest(dir: &Path) -> Result<MatrixShardManifest> {
    let path = dir.join(MATRIX_SHARD_MANIFEST);
    if !path.exists() {
        bail!(
            "`{}` is not a finished shard of a matrix run: it has no {MATRIX_SHARD_MANIFEST} \
             (written when `gauntlet run --shard` of a matrix suite finishes every cell; run it \
             again to finish, it resumes from the journals)",
            dir.display()
        );
    }
    let text =
        gauntlet_files::read_to_string_bounded(&path, gauntlet_files::limits::SHARD_MANIFEST)?;
    let manifest: MatrixShardManifest = serde_json::from_str(&text).with_context(|| {
        format!(
            "`{}` is not a gauntlet matrix shard manifest",
            path.display()
        )
    })?;
    if manifest.matrix_shard_version != MATRIX_SHARD_VERSION {
        bail!(
            "`{}` has matrix_shard_version {}, this gauntlet reads {MATRIX_SHARD_VERSION}",
            path.display(),
            manifest.matrix_shard_version
        );
    }
    // The ids become folder names under the merge's output: only what a suite can name.
    for (id, model, dataset) in &manifest.cells {
        let problem = [model, dataset]
            .into_iter()
            .find_map(|name| gauntlet_reports::matrix::name_problem(name).map(|p| (name, p)));
        if let Some((name, problem)) = problem {
            bail!("`{}`: cell name `{name}` {problem}", path.display());
        }
        if *id != gauntlet_reports::matrix::cell_id(model, dataset) {
            bail!(
                "`{}`: cell `{id}` is not named after its model and dataset",
                path.display()
            );
        }
    }
    Ok(manifest)
}

/// `gauntlet merge` on a matrix run's shards.
pub fn merge(args: &MergeArgs) -> Result<Outcome> {
    let manifests = args
        .shards
        .iter()
        .map(|dir| read_shard_manifest(dir))
        .collect::<Result<Vec<_>>>()?;
    let first = &manifests[0];
    for (dir, manifest) in args.shards.iter().zip(&manifests).skip(1) {
        let mut differences = Vec::new();
        // The suite file's path may differ between machines; its name and bytes may not.
        if manifest.suite_sha256 != first.suite_sha256 || manifest.suite.name != first.suite.name {
            differences.push("the suite");
        }
        if manifest.seed != first.seed {
            differences.push("the seed");
        }
        if manifest.cells != first.cells {
            differences.push("the cells");
        }
        if manifest.shard.count != first.shard.count {
            differences.push("the shard count");
        }
        if !differences.is_empty() {
            bail!(
                "`{}` and `{}` are not shards of the same matrix run: {} differ",
                args.shards[0].display(),
                dir.display(),
                differences.join(", ")
            );
        }
    }
    let mut per_cell = Vec::with_capacity(first.cells.len());
    for (id, model, dataset) in &first.cells {
        let dirs: Vec<PathBuf> = args.shards.iter().map(|d| cell_dir(d, id)).collect();
        let shards = crate::merge::check_shards(&dirs).with_context(|| format!("cell `{id}`"))?;
        per_cell.push((id, model, dataset, shards));
    }
    let gates: Vec<&[RelativeGate]> = per_cell
        .iter()
        .map(|(_, _, _, shards)| shards[0].1.relative_gates.as_slice())
        .collect();
    let baseline = read_baseline(&gates, args.baseline.as_deref(), args.no_baseline)?;
    let formats = args.format.clone().unwrap_or_else(|| first.formats.clone());
    let staging = Staging::begin(
        &args.out,
        existing_policy(args.overwrite, Existing::Replace),
    )?;
    let progress = Progress::with_format(true, args.log_format);
    progress.event(
        "merge_started",
        serde_json::json!({
            "shards": args.shards.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
            "cells": first.cells.iter().map(|c| c.0.clone()).collect::<Vec<_>>(),
            "out": args.out.display().to_string(),
        }),
    );
    let mut cells = Vec::with_capacity(per_cell.len());
    for (id, model, dataset, shards) in &per_cell {
        let evaluation =
            crate::merge::merged_evaluation(shards).with_context(|| format!("cell `{id}`"))?;
        cells.push(finish_cell(
            &evaluation,
            id,
            model,
            dataset,
            &cell_dir(staging.path(), id),
            &cell_dir(&args.out, id),
            &formats,
            &shards[0].1.relative_gates,
            baseline.as_ref(),
            &progress,
        )?);
    }
    publish_matrix(
        matrix_report(first.suite.clone(), first.seed, cells),
        staging,
        &formats,
        &progress,
    )
}

/// `gauntlet check` on a matrix suite: each cell checked as a single suite is.
pub fn check(matrix: &MatrixSuite, path: &Path) -> Result<Outcome> {
    stdout_line(&format!(
        "matrix suite `{}`: {} cells (model × dataset)",
        matrix.name,
        matrix.cells.len()
    ))?;
    for cell in &matrix.cells {
        stdout_line(&format!("cell `{}`:", cell.id))?;
        crate::commands::check_suite(&cell.suite, path)
            .with_context(|| format!("cell `{}`", cell.id))?;
    }
    stdout_line("ok: every cell of the matrix suite is valid")?;
    Ok(Outcome::Passed)
}
