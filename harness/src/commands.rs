//! One function per subcommand. Results go to stdout and `--out`; progress and errors to stderr.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use gauntlet_datasets::{Dataset, DatasetFormat};
use gauntlet_models::spec::Usage;
use gauntlet_models::train::{train, EpochStats, Optimizer, TrainConfig};
use gauntlet_models::{ModelSpec, Network};
use gauntlet_reports::{CheckStatus, RunReport};

use crate::cli::{
    Cli, Command, ListWhat, ManifestCommand, OptimizerName, RunArgs, ScanFormat, TrainArgs,
};
use crate::device::{open_device, parse_device};
use crate::journal::{Journal, OnMismatch, RunIdentity, ShardManifest, ShardTimings};
use crate::load::load_dataset;
use crate::matrix::SuiteFile;
use crate::output::{Existing, Staging};
use crate::progress::Progress;
use crate::shard::{ShardSpec, UnitId, JOB_COMPLETION_INDEX};
use crate::suite::{DatasetSection, DatasetSources, Overrides, Source, Suite};
use crate::work::Work;

/// How a command that ran ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every gate and sanity check passed.
    Passed,
    /// A gate or sanity check failed.
    Failed,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Passed => 0,
            Outcome::Failed => 1,
        }
    }
}

pub fn dispatch(cli: Cli) -> Result<Outcome> {
    match cli.command {
        Command::Run(args) => run(args),
        Command::Merge(args) => crate::merge::merge(args),
        Command::Check {
            suite,
            allow_unverified,
        } => check(&suite, allow_unverified),
        Command::Train(args) => train_command(args),
        Command::Report {
            results,
            out,
            format,
            overwrite,
            baseline,
        } => report(&results, &out, &format, overwrite, baseline.as_deref()),
        Command::List { what, markdown } => list(what, markdown),
        Command::Inspect {
            model,
            spec,
            input_shape,
        } => {
            stdout_line(
                crate::inspect::inspect(&model, spec.as_deref(), input_shape.as_deref())?
                    .trim_end(),
            )?;
            Ok(Outcome::Passed)
        }
        Command::Spec { from } => {
            stdout_line(crate::inspect::spec_from(&from)?.trim_end())?;
            Ok(Outcome::Passed)
        }
        Command::Scan {
            paths,
            format,
            fail_on,
            allow,
            model_id,
            known_model_ids,
        } => scan(
            &paths,
            format,
            fail_on,
            &allow,
            model_id.as_deref(),
            known_model_ids.as_deref(),
        ),
        Command::Manifest(command) => manifest(command),
        Command::Sign {
            dir,
            private_key,
            signature,
        } => sign(&dir, &private_key, signature),
        Command::Verify {
            dir,
            signature,
            public_key,
            json,
        } => verify(&dir, signature, &public_key, json),
        Command::Bom { suite } => {
            let bom = match SuiteFile::read(&suite, &Overrides::default())? {
                SuiteFile::Single(suite) => crate::bom::bill_of_materials(&suite)?,
                SuiteFile::Matrix(matrix) => crate::bom::matrix_bill_of_materials(&matrix)?,
            };
            stdout_line(&serde_json::to_string_pretty(&bom)?)?;
            Ok(Outcome::Passed)
        }
    }
}

pub(crate) fn stdout_line(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")?;
    Ok(())
}

fn run(args: RunArgs) -> Result<Outcome> {
    let overrides = Overrides {
        seed: args.seed,
        device: args.device.clone(),
        limit: args.limit,
        batch_size: args.batch_size,
        out: args.out.clone(),
        formats: args.format.clone(),
        allow_unverified: args.allow_unverified,
        candle_kernels: args.candle_kernels,
    };
    let suite = match &args.suite {
        Some(path) => SuiteFile::read(path, &overrides)?,
        None => SuiteFile::Single(Box::new(Suite::embedded_default(&overrides)?)),
    };
    match suite {
        SuiteFile::Single(suite) => run_single(&suite, &args),
        SuiteFile::Matrix(matrix) => crate::matrix_run::run(&matrix, &args),
    }
}

/// The shard `--shard` asks for, with `auto/N` read from `$JOB_COMPLETION_INDEX`.
pub(crate) fn shard_of(args: &RunArgs) -> Result<Option<ShardSpec>> {
    Ok(args
        .shard
        .map(|arg| arg.resolve(std::env::var(JOB_COMPLETION_INDEX).ok().as_deref()))
        .transpose()?)
}

/// A suite's work units run (or read back from the journal): what a shard manifest or the
/// assembled results are made of.
pub(crate) struct Executed {
    pub identity: RunIdentity,
    pub outputs: Vec<crate::journal::FinishedUnit>,
    /// Units read from the journal rather than run now.
    pub skipped: usize,
    /// Units in the whole plan.
    pub plan_units: usize,
    pub base_plan: gauntlet_results::RunPlan,
    pub load_seconds: f64,
}

impl Executed {
    /// A shard's manifest (`shard.json`).
    pub fn manifest(self, suite: &Suite, spec: ShardSpec) -> ShardManifest {
        let unit_seconds = self.outputs.iter().map(|(_, _, o)| o.seconds()).sum();
        ShardManifest {
            shard_manifest_version: crate::journal::SHARD_MANIFEST_VERSION,
            identity: self.identity,
            shard: spec,
            relative_gates: suite.relative_gates.clone(),
            formats: suite.report.formats.clone(),
            units: self
                .outputs
                .into_iter()
                .map(|(_, entry, _)| entry)
                .collect(),
            timings: ShardTimings {
                load_seconds: self.load_seconds,
                unit_seconds,
            },
        }
    }

    /// A whole run's records and measurements, assembled from its units.
    pub fn evaluation(self) -> Result<crate::runner::Evaluation> {
        crate::work::assemble(
            &self.base_plan,
            self.plan_units,
            self.load_seconds,
            self.outputs.into_iter().map(|(id, _, output)| (id, output)),
        )
    }
}

/// Load a suite's model and data, check the caps, open the journal in `journal_out` and run
/// the units of `shard` (every unit without one) that the journal does not already hold.
pub(crate) fn execute(
    suite: &Suite,
    journal_out: &Path,
    shard: Option<ShardSpec>,
    args: &RunArgs,
    on_mismatch: OnMismatch,
    progress: &Progress,
) -> Result<Executed> {
    progress.set_message("loading model and data");
    let loaded = crate::load::load(suite)?;
    let work = crate::budget::planned_work(suite, loaded.dataset.len(), loaded.model.as_ref())?;
    crate::budget::check_work(suite, &work)?;
    let mut work = Work::new(suite, &loaded, args.unit_samples)?;
    let identity = RunIdentity::new(suite, &loaded, &work)?;
    let mut journal = Journal::open(
        journal_out,
        &identity,
        shard,
        &work,
        args.restart,
        on_mismatch,
    )?;
    for note in std::mem::take(&mut journal.notes) {
        progress.report(
            &format!("notice: {note}"),
            "notice",
            serde_json::json!({ "message": note }),
        );
    }
    let ids: Vec<UnitId> = match shard {
        Some(spec) => work.units.shard(spec),
        None => work.units.units.iter().map(|u| u.id).collect(),
    };
    if !journal.finished.is_empty() {
        let finished = ids
            .iter()
            .filter(|id| journal.finished.contains_key(id))
            .count();
        progress.report(
            &format!(
                "resuming from the journal in `{}`: {finished} of {} work units already finished",
                journal_out.display(),
                ids.len()
            ),
            "resumed",
            serde_json::json!({ "finished_units": finished, "units": ids.len() }),
        );
    }
    let (outputs, skipped) = journal.run(&mut work, &ids, progress)?;
    Ok(Executed {
        identity,
        outputs,
        skipped,
        plan_units: work.units.units.len(),
        base_plan: work.base_plan.clone(),
        load_seconds: loaded.load_seconds,
    })
}

fn run_single(suite: &Suite, args: &RunArgs) -> Result<Outcome> {
    let replace_default = args.suite.is_none() && args.out.is_none();
    // Refuse an output folder that would be refused at the end before any work is done, and
    // read the baseline now rather than after an hour of attacks. The embedded default into
    // its default folder is the README's first command, which a new user runs again and
    // again: there an earlier run (only ever a whole folder gauntlet wrote) is replaced as
    // with `--overwrite`. A named suite or `--out` keeps the refusal.
    let out_dir = PathBuf::from(&suite.report.out);
    let shard = shard_of(args)?;
    let baseline = match shard {
        // Gates, relative ones too, are evaluated on the merged results.
        Some(_) if args.baseline.is_some() => bail!(
            "--baseline compares a whole run: pass it to `gauntlet merge`, which evaluates the \
             gates on the merged results"
        ),
        Some(_) => None,
        None => read_baseline_for(
            &suite.relative_gates,
            args.baseline.as_deref(),
            args.no_baseline,
        )?,
    };
    // A shard writes its folder in place (journal, then shard.json); a whole run stages its
    // outputs and replaces the folder, journal included, at the end.
    let staging = match shard {
        Some(_) => {
            crate::output::check_shard_folder(&out_dir, crate::output::ShardKind::Single)?;
            None
        }
        None => Some(Staging::begin_over_journal(
            &out_dir,
            existing_policy(args.overwrite || replace_default, Existing::Replace),
        )?),
    };
    let progress = Progress::with_format(args.quiet, args.log_format);
    progress.event(
        "run_started",
        serde_json::json!({
            "suite": suite.name,
            "seed": suite.seed,
            "device": suite.device,
            "attacks": suite.attacks.iter().map(|a| format!("{}@{}", a.label, a.epsilon)).collect::<Vec<_>>(),
            "out": out_dir.display().to_string(),
            "baseline": args.baseline.as_ref().map(|p| p.display().to_string()),
            "shard": shard.map(|s| s.to_string()),
        }),
    );
    let on_mismatch = if replace_default {
        OnMismatch::Discard
    } else {
        OnMismatch::Refuse
    };
    let executed = execute(suite, &out_dir, shard, args, on_mismatch, &progress)?;
    progress.finish();
    if let Some(spec) = shard {
        let (skipped, plan_units) = (executed.skipped, executed.plan_units);
        let manifest = executed.manifest(suite, spec);
        let path = manifest.write(&out_dir)?;
        stdout_line(&format!(
            "shard {spec}: {} of the plan's {plan_units} work units ({} run now, {skipped} from the \
             journal); join the shards with `gauntlet merge`",
            manifest.units.len(),
            manifest.units.len() - skipped
        ))?;
        stdout_line(&format!("wrote {}", path.display()))?;
        progress.event(
            "run_finished",
            serde_json::json!({
                "outcome": "shard_finished",
                "exit_code": 0,
                "shard": spec.to_string(),
                "units": manifest.units.len(),
                "skipped_units": skipped,
                "files": [path.display().to_string()],
            }),
        );
        return Ok(Outcome::Passed);
    }
    let evaluation = executed.evaluation()?;
    let staging = staging.context("a whole run has a staging folder (a bug in this build)")?;
    publish(
        &evaluation,
        staging,
        &suite.report.formats,
        &suite.relative_gates,
        baseline,
        &progress,
    )
}

/// Read `--baseline` (or refuse a suite with relative gates and neither `--baseline` nor
/// `--no-baseline`) before any work, rather than after an hour of attacks.
pub(crate) fn read_baseline_for(
    relative_gates: &[gauntlet_results::baseline::RelativeGate],
    baseline: Option<&std::path::Path>,
    no_baseline: bool,
) -> Result<Option<(RunReport, PathBuf)>> {
    match baseline {
        Some(path) => Ok(Some((
            crate::baseline::read_baseline(path)?,
            path.to_path_buf(),
        ))),
        None if !relative_gates.is_empty() && !no_baseline => bail!(
            "the suite has relative gates ({}) but no baseline was given: pass --baseline \
             PATH/results.json, or --no-baseline to run without them (e.g. the first night)",
            relative_gates
                .iter()
                .map(|gate| gate.describe())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => Ok(None),
    }
}

/// A run's records written into `dir` (a staging folder, or a matrix cell's folder inside
/// one): aggregate, compare with the baseline, write the per-sample file and the reports. The
/// report and every path written.
pub(crate) fn write_run(
    evaluation: &crate::runner::Evaluation,
    dir: &Path,
    shown_dir: &Path,
    formats: &[gauntlet_reports::OutputFormat],
    relative_gates: &[gauntlet_results::baseline::RelativeGate],
    baseline: Option<(&RunReport, &Path)>,
    progress: &Progress,
) -> Result<(RunReport, Vec<PathBuf>)> {
    for notice in &evaluation.measurements.notices {
        progress.report(
            &format!("notice: {notice}"),
            "notice",
            serde_json::json!({ "message": notice }),
        );
    }
    let mut report = evaluation.report()?;
    if let Some((baseline, path)) = baseline {
        crate::baseline::apply(&mut report, baseline, path, relative_gates);
    }
    fs_err::create_dir_all(dir)?;
    let samples_path = dir.join(gauntlet_results::samples_file::FILE_NAME);
    gauntlet_results::samples_file::write(
        &samples_path,
        &evaluation.plan,
        &evaluation.measurements,
        &evaluation.records,
    )
    .with_context(|| {
        format!(
            "cannot write the per-sample file `{}`",
            shown_dir
                .join(gauntlet_results::samples_file::FILE_NAME)
                .display()
        )
    })?;
    report.samples_file = Some(gauntlet_results::samples_file::FILE_NAME.to_string());
    let mut written = vec![samples_path];
    if !evaluation.measurements.poisoned_indices.is_empty() {
        let path = dir.join(gauntlet_results::backdoor::GROUND_TRUTH_FILE_NAME);
        let json = serde_json::to_string_pretty(&evaluation.measurements.poisoned_indices)?;
        crate::output::write_file_atomically(&path, json.as_bytes())?;
        written.push(path);
    }
    written.extend(
        gauntlet_reports::write_all(&report, dir, formats)
            .with_context(|| format!("cannot write reports to `{}`", shown_dir.display()))?,
    );
    Ok((report, written))
}

/// Everything after the records, shared by `run` and `merge`: [`write_run`] into the staging
/// folder, commit it, print the summary and the verdict.
pub(crate) fn publish(
    evaluation: &crate::runner::Evaluation,
    staging: Staging,
    formats: &[gauntlet_reports::OutputFormat],
    relative_gates: &[gauntlet_results::baseline::RelativeGate],
    baseline: Option<(RunReport, PathBuf)>,
    progress: &Progress,
) -> Result<Outcome> {
    let (report, written) = write_run(
        evaluation,
        staging.path(),
        staging.target(),
        formats,
        relative_gates,
        baseline
            .as_ref()
            .map(|(report, path)| (report, path.as_path())),
        progress,
    )?;
    let written: Vec<PathBuf> = written
        .iter()
        .map(|path| staging.final_path(path))
        .collect();
    staging.commit()?;
    stdout_line(&crate::summary::render(&report))?;
    for path in &written {
        stdout_line(&format!("wrote {}", path.display()))?;
    }
    let outcome = verdict(&report, evaluation.plan.fail_on_sanity, progress);
    progress.event(
        "run_finished",
        serde_json::json!({
            "outcome": match outcome { Outcome::Passed => "passed", Outcome::Failed => "failed" },
            "exit_code": outcome.exit_code(),
            "clean_accuracy": report.clean.accuracy.value,
            "gates_failed": report.gates.iter().filter(|g| !g.passed).count(),
            "sanity_checks_failed": report.sanity_checks.iter().filter(|c| c.status == CheckStatus::Fail).count(),
            "total_seconds": report.timings.total_seconds,
            "files": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        }),
    );
    Ok(outcome)
}

/// Print one line (or JSON event) per failure to stderr and decide the outcome.
pub(crate) fn verdict(report: &RunReport, fail_on_sanity: bool, log: &Progress) -> Outcome {
    verdict_for(report, fail_on_sanity, log, None)
}

/// [`verdict`] for a matrix cell: each line starts with the cell's name, and each JSON event
/// carries it as `cell`.
pub(crate) fn verdict_for(
    report: &RunReport,
    fail_on_sanity: bool,
    log: &Progress,
    cell: Option<&str>,
) -> Outcome {
    let prefix = cell.map_or(String::new(), |id| format!("cell `{id}`: "));
    let with_cell = |mut fields: serde_json::Value| {
        if let (Some(id), Some(object)) = (cell, fields.as_object_mut()) {
            object.insert("cell".into(), id.into());
        }
        fields
    };
    let mut failed = false;
    for gate in report.gates.iter().filter(|g| !g.passed) {
        let message = format!(
            "{prefix}{}",
            gauntlet_results::gate::failure_message(gate, report)
        );
        log.report(
            &message,
            "gate_failed",
            with_cell(serde_json::json!({
                "gate": gate.gate,
                "actual": gate.actual,
                "threshold": gate.threshold,
                "message": message,
            })),
        );
        failed = true;
    }
    for check in &report.sanity_checks {
        let fields = with_cell(serde_json::json!({ "check": check.name, "detail": check.detail }));
        match check.status {
            CheckStatus::Fail => {
                log.report(
                    &format!(
                        "{prefix}sanity check failed: {}: {}",
                        check.name, check.detail
                    ),
                    "sanity_check_failed",
                    fields,
                );
                failed |= fail_on_sanity;
            }
            CheckStatus::Warn => log.report(
                &format!("{prefix}warning: {}: {}", check.name, check.detail),
                "warning",
                fields,
            ),
            CheckStatus::Pass => {}
        }
    }
    if failed {
        Outcome::Failed
    } else {
        Outcome::Passed
    }
}

fn check(path: &std::path::Path, allow_unverified: bool) -> Result<Outcome> {
    let overrides = Overrides {
        allow_unverified,
        ..Overrides::default()
    };
    match SuiteFile::read(path, &overrides)? {
        SuiteFile::Single(suite) => {
            check_suite(&suite, path)?;
            stdout_line("ok: the suite is valid")?;
            Ok(Outcome::Passed)
        }
        SuiteFile::Matrix(matrix) => crate::matrix_run::check(&matrix, path),
    }
}

/// Refuse a suite whose model or data files do not exist, naming the keys.
pub(crate) fn check_sources_exist(suite: &Suite, path: &Path) -> Result<()> {
    let sources = [
        ("model.spec", Some(&suite.model_spec)),
        ("model.weights", Some(&suite.model_weights)),
        ("dataset.path", suite.dataset_sources.path.as_ref()),
        ("dataset.images", suite.dataset_sources.images.as_ref()),
        ("dataset.labels", suite.dataset_sources.labels.as_ref()),
    ];
    let missing: Vec<String> = sources
        .iter()
        .filter_map(|(key, source)| match source {
            Some(Source::File(file)) if !file.exists() => {
                Some(format!("`{key}` = `{}`", file.display()))
            }
            _ => None,
        })
        .collect();
    if !missing.is_empty() {
        bail!(
            "invalid suite file `{}`: missing {}",
            path.display(),
            missing.join(", ")
        );
    }
    Ok(())
}

/// `check` of one suite (or one matrix cell): files present, then what `run` does before its
/// first batch, and the plan printed.
pub(crate) fn check_suite(suite: &Suite, path: &Path) -> Result<()> {
    check_sources_exist(suite, path)?;
    // Exactly what `run` does before its first batch: provenance, spec, weights and data
    // through the same loader, the memory cap, the work cap.
    let loaded = crate::load::load(suite)?;
    let work = crate::budget::planned_work(suite, loaded.dataset.len(), loaded.model.as_ref())?;
    crate::budget::check_work(suite, &work)?;
    // What depends on the data's shape (a trigger that does not fit, a target class that does
    // not exist) is checked against the loaded model's input shape and classes.
    suite
        .backdoor
        .check_shape(loaded.model.input_shape(), loaded.model.num_classes())
        .with_context(|| format!("invalid suite file `{}`", path.display()))?;
    stdout_line(suite.describe().trim_end())?;
    stdout_line(&format!(
        "  memory: estimated peak {} (max_memory_mib = {})",
        loaded.memory, suite.limits.max_memory_mib
    ))?;
    stdout_line(&format!(
        "{}  (max_passes = {})",
        work.describe().trim_end(),
        suite.limits.max_passes
    ))?;
    Ok(())
}

/// Re-render a run's reports: from its `results.json`, or — when `input` is a per-sample file —
/// by aggregating its records again (which also rewrites `results.json` when JSON is among the
/// formats).
fn report(
    input: &std::path::Path,
    out: &std::path::Path,
    formats: &[gauntlet_reports::OutputFormat],
    overwrite: bool,
    baseline: Option<&std::path::Path>,
) -> Result<Outcome> {
    // Named for what the user gave: either kind of input (each is read through the reading
    // layer again, which also closes the race with this check).
    gauntlet_files::check_regular(input, "the input of `gauntlet report`")?;
    let report = if gauntlet_results::samples_file::is_samples_file(input)? {
        let (plan, measurements, records) = gauntlet_results::samples_file::read(input)?;
        let mut report = gauntlet_results::aggregate(&plan, &measurements, &records)
            .with_context(|| format!("cannot aggregate the records of `{}`", input.display()))?;
        report.samples_file = input
            .file_name()
            .map(|name| name.to_string_lossy().into_owned());
        report
    } else {
        let bytes = gauntlet_files::read_bounded(input, gauntlet_files::limits::RESULTS_JSON)?;
        if gauntlet_reports::matrix::is_matrix_json(&bytes) {
            return report_matrix(input, &bytes, out, formats, overwrite, baseline);
        }
        gauntlet_reports::parse_json(&bytes, input)?
    };
    let mut report = report;
    if let Some(path) = baseline {
        if let Some(earlier) = &report.baseline {
            bail!(
                "`{}` was already compared with the baseline `{}` (its relative gates were \
                 evaluated against it); to compare with another, run the suite again with \
                 --baseline, or re-render from its samples.parquet",
                input.display(),
                earlier.path
            );
        }
        let earlier = crate::baseline::read_baseline(path)?;
        // No suite here, so no relative gates: the comparison only.
        crate::baseline::apply(&mut report, &earlier, path, &[]);
    }
    let staging = Staging::begin(out, existing_policy(overwrite, Existing::ReplaceRenderings))?;
    let written = gauntlet_reports::write_all(&report, staging.path(), formats)
        .with_context(|| format!("cannot write reports to `{}`", out.display()))?;
    let written: Vec<PathBuf> = written
        .iter()
        .map(|path| staging.final_path(path))
        .collect();
    staging.commit()?;
    for path in &written {
        stdout_line(&format!("wrote {}", path.display()))?;
    }
    Ok(Outcome::Passed)
}

/// `gauntlet report` of a matrix run's `results.json`: the matrix's own renderings again (each
/// cell's folder re-renders from its own `results.json`).
fn report_matrix(
    input: &Path,
    bytes: &[u8],
    out: &Path,
    formats: &[gauntlet_reports::OutputFormat],
    overwrite: bool,
    baseline: Option<&Path>,
) -> Result<Outcome> {
    if baseline.is_some() {
        bail!(
            "`{}` is a matrix run's results: compare it with a baseline by running the suite \
             with --baseline, or re-render one cell (`{}/ID/results.json`) with --baseline",
            input.display(),
            gauntlet_reports::matrix::CELLS_DIR
        );
    }
    let matrix = gauntlet_reports::matrix::parse_matrix_json(bytes, input)?;
    let staging = Staging::begin(out, existing_policy(overwrite, Existing::ReplaceRenderings))?;
    let written = gauntlet_reports::matrix::write_matrix(&matrix, staging.path(), formats)
        .with_context(|| format!("cannot write reports to `{}`", out.display()))?;
    let written: Vec<PathBuf> = written.iter().map(|p| staging.final_path(p)).collect();
    staging.commit()?;
    for path in &written {
        stdout_line(&format!("wrote {}", path.display()))?;
    }
    Ok(Outcome::Passed)
}

/// `--overwrite` turns the default refusal of a non-empty output folder into `when_asked`.
pub(crate) fn existing_policy(overwrite: bool, when_asked: Existing) -> Existing {
    if overwrite {
        when_asked
    } else {
        Existing::Refuse
    }
}

fn list(what: ListWhat, markdown: bool) -> Result<Outcome> {
    match what {
        ListWhat::Attacks if markdown => {
            stdout_line(gauntlet_attacks::attacks_markdown().trim_end())?
        }
        ListWhat::Attacks => {
            for entry in gauntlet_attacks::ATTACKS {
                stdout_line(&format!("{:<8} {}", entry.name, entry.summary))?;
            }
        }
        ListWhat::Detectors if markdown => {
            stdout_line("| detector | looks at | parameters (default) | summary |")?;
            stdout_line("|---|---|---|---|")?;
            for entry in gauntlet_attacks::detector::DETECTORS {
                let parameters: Vec<String> = entry
                    .parameters
                    .iter()
                    .map(|p| format!("`{}` ({})", p.name, p.default))
                    .collect();
                let parameters = if parameters.is_empty() {
                    "none".to_string()
                } else {
                    parameters.join(", ")
                };
                stdout_line(&format!(
                    "| `{}` | {} | {parameters} | {} |",
                    entry.name, entry.needs, entry.summary
                ))?;
            }
        }
        ListWhat::Detectors => {
            for entry in gauntlet_attacks::detector::DETECTORS {
                stdout_line(&format!("{:<12} {}", entry.name, entry.summary))?;
            }
        }
        ListWhat::Rules if markdown => stdout_line(gauntlet_artifact::rules_markdown().trim_end())?,
        ListWhat::Rules => {
            for rule in gauntlet_artifact::RULES {
                stdout_line(&format!(
                    "{:<34} {:<8} {}",
                    rule.id, rule.default_severity, rule.summary
                ))?;
            }
        }
        ListWhat::Formats => {
            stdout_line("datasets: idx (MNIST/Fashion-MNIST, raw or gzip), cifar10 (binary batches), image_folder (PNG/JPEG, one subfolder per class), npy")?;
            stdout_line("models:   safetensors weights + TOML architecture spec (linear, mlp, small_cnn, resnet20, sequential)")?;
            stdout_line("reports:  json, csv, html (self-contained, PNG plots embedded), junit (JUnit XML), markdown (summary.md)")?;
        }
    }
    Ok(Outcome::Passed)
}

fn parse_format(text: &str) -> Result<DatasetFormat> {
    toml::Value::String(text.to_string())
        .try_into()
        .map_err(|_| {
            anyhow::anyhow!(
                "unknown data format `{text}`; expected idx, npy, cifar10 or image_folder"
            )
        })
}

fn train_command(args: TrainArgs) -> Result<Outcome> {
    let device = open_device(parse_device(&args.device)?)?;
    let spec = ModelSpec::from_file(&args.spec)?;
    // Before anything is allocated: the model, its gradients and optimiser state and a batch
    // must fit the cap; again below with the data.
    let cost = spec.cost()?;
    let memory_check = |samples: usize| {
        crate::budget::check_memory(
            &cost.memory(Usage::Train, args.batch_size, samples),
            args.max_memory_mib,
            "--max-memory-mib",
            &format!("`gauntlet train` (model spec `{}`)", args.spec.display()),
        )
    };
    memory_check(0)?;
    let as_source = |path: &Option<PathBuf>| path.clone().map(Source::File);
    let section = DatasetSection {
        format: parse_format(&args.data_format)?,
        path: None,
        images: None,
        labels: None,
        // An image folder applies it while loading; the other formats below.
        limit: args.limit,
        class_names: None,
    };
    let sources = DatasetSources {
        path: as_source(&args.path),
        images: as_source(&args.images),
        labels: as_source(&args.labels),
    };
    let data = load_dataset(&section, &sources).context("cannot load the training data")?;
    let data = match args.limit {
        Some(limit) => data.limit(limit),
        None => data,
    };
    memory_check(data.len())?;
    let mut network = Network::init(&spec, args.seed, &device)?;
    if data.sample_shape() != gauntlet_models::Model::input_shape(&network) {
        bail!(
            "training data has samples of shape {:?}, but the spec `{}` expects {:?}",
            data.sample_shape(),
            args.spec.display(),
            gauntlet_models::Model::input_shape(&network)
        );
    }
    let batch = data.batch(0..data.len(), &device)?;
    let optimizer = match args.optimizer {
        OptimizerName::Sgd => Optimizer::Sgd {
            learning_rate: args.learning_rate,
            momentum: args.momentum,
            weight_decay: args.weight_decay,
        },
        OptimizerName::Adam => Optimizer::Adam {
            learning_rate: args.learning_rate,
            weight_decay: args.weight_decay,
        },
    };
    let config = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        optimizer,
        seed: args.seed,
    };
    let quiet = args.quiet;
    let mut on_epoch = |stats: &EpochStats| {
        if !quiet {
            eprintln!(
                "epoch {:>3}: mean loss {:.4}, train accuracy {:.2}%",
                stats.epoch,
                stats.mean_loss,
                stats.train_accuracy * 100.0
            );
        }
    };
    let history = train(
        &mut network,
        &batch.inputs,
        &batch.labels,
        &config,
        &mut on_epoch,
    )?;
    // Written atomically and hashed from the bytes written, so the printed hash is the file's.
    let weights = network.to_safetensors_bytes()?;
    crate::output::write_file_atomically(&args.out, &weights)?;
    if let Some(last) = history.last() {
        stdout_line(&format!(
            "trained {} epochs on {} samples: final train accuracy {:.2}%",
            history.len(),
            data.len(),
            last.train_accuracy * 100.0
        ))?;
    }
    if let (Some(images), Some(labels)) = (&args.test_images, &args.test_labels) {
        let test = gauntlet_datasets::load_idx(images, labels, None)?;
        let test_batch = test.batch(0..test.len(), &device)?;
        let accuracy = gauntlet_models::train::accuracy(
            &network,
            &test_batch.inputs,
            &test_batch.labels,
            256,
        )?;
        stdout_line(&format!(
            "held-out accuracy on {} samples: {:.2}%",
            test.len(),
            accuracy * 100.0
        ))?;
    }
    stdout_line(&format!(
        "wrote {} (sha256 {})",
        args.out.display(),
        crate::load::sha256_hex(&weights)
    ))?;
    Ok(Outcome::Passed)
}

fn scan(
    paths: &[PathBuf],
    format: ScanFormat,
    fail_on: gauntlet_artifact::Severity,
    allow: &[String],
    model_id: Option<&str>,
    known_model_ids: Option<&std::path::Path>,
) -> Result<Outcome> {
    use gauntlet_artifact::report;
    let mut options = gauntlet_artifact::walk::ScanOptions::default();
    for entry in allow {
        let Some(pair) = gauntlet_artifact::pickle::parse_allowed(entry) else {
            bail!("--allow {entry:?}: expected module.Name or module:Qualified.Name");
        };
        options.extra_allowed.push(pair);
    }
    let mut scanned = gauntlet_artifact::walk::scan_paths_with(paths, &options)?;
    if let Some(id) = model_id {
        let known = crate::provenance::known_model_ids(known_model_ids)?;
        scanned
            .findings
            .extend(gauntlet_artifact::model_id::check_model_id(id, &known));
    }
    match format {
        ScanFormat::Text => stdout_line(report::render_text(&scanned).trim_end())?,
        ScanFormat::Json => {
            stdout_line(&serde_json::to_string_pretty(&report::to_json(&scanned))?)?
        }
        ScanFormat::Sarif => {
            stdout_line(&serde_json::to_string_pretty(&report::to_sarif(&scanned))?)?
        }
    }
    Ok(match scanned.max_severity() {
        Some(worst) if worst >= fail_on => Outcome::Failed,
        _ => Outcome::Passed,
    })
}

fn manifest(command: ManifestCommand) -> Result<Outcome> {
    use gauntlet_artifact::manifest::{
        create_manifest, default_manifest_path, verify_manifest, Manifest,
    };
    match command {
        ManifestCommand::Create { dir, out } => {
            let manifest = create_manifest(&dir)?;
            let path = out.unwrap_or_else(|| default_manifest_path(&dir));
            manifest.write(&path)?;
            stdout_line(&format!(
                "wrote {} ({} files)",
                path.display(),
                manifest.files.len()
            ))?;
            Ok(Outcome::Passed)
        }
        ManifestCommand::Verify { dir, manifest } => {
            let path = manifest.unwrap_or_else(|| default_manifest_path(&dir));
            let manifest = Manifest::read(&path)?;
            let verdict = verify_manifest(&dir, &manifest)?;
            for file in &verdict.modified {
                stdout_line(&format!(
                    "modified   {} (sha256 {} → {}, {} → {} bytes)",
                    file.path,
                    file.expected_sha256,
                    file.actual_sha256,
                    file.expected_size,
                    file.actual_size
                ))?;
            }
            for file in &verdict.missing {
                stdout_line(&format!("missing    {file}"))?;
            }
            for file in &verdict.unexpected {
                stdout_line(&format!("unexpected {file}"))?;
            }
            for entry in &verdict.skipped {
                stdout_line(&format!(
                    "skipped    {} ({:?}, not followed)",
                    entry.path, entry.kind
                ))?;
            }
            stdout_line(&format!(
                "{}: {} of {} files match `{}`",
                if verdict.is_clean() { "ok" } else { "FAILED" },
                verdict.ok_count,
                manifest.files.len(),
                path.display()
            ))?;
            Ok(if verdict.is_clean() {
                Outcome::Passed
            } else {
                Outcome::Failed
            })
        }
    }
}

/// `DIR.sig` beside the folder, as model-signing names it.
fn default_signature_path(dir: &std::path::Path) -> PathBuf {
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "model".into());
    name.push(".sig");
    dir.with_file_name(name)
}

fn sign(
    dir: &std::path::Path,
    private_key: &std::path::Path,
    signature: Option<PathBuf>,
) -> Result<Outcome> {
    let key = gauntlet_files::read_to_string_bounded(private_key, gauntlet_files::limits::KEY)
        .context("cannot read the private key")?;
    let signature = signature.unwrap_or_else(|| default_signature_path(dir));
    let signed = gauntlet_artifact::signing::sign_folder(
        dir,
        &key,
        &signature,
        &gauntlet_artifact::signing::SignOptions::default(),
    )
    .with_context(|| format!("cannot sign `{}`", dir.display()))?;
    stdout_line(&format!(
        "wrote {}: {} files, root digest sha256:{}, signer key {}",
        signature.display(),
        signed.file_count,
        signed.root_digest,
        signed.signer_fingerprint
    ))?;
    Ok(Outcome::Passed)
}

fn verify(
    dir: &std::path::Path,
    signature: Option<PathBuf>,
    public_key: &std::path::Path,
    json: bool,
) -> Result<Outcome> {
    let key = gauntlet_files::read_to_string_bounded(public_key, gauntlet_files::limits::KEY)
        .context("cannot read the public key")?;
    let signature = signature.unwrap_or_else(|| default_signature_path(dir));
    let verdict = gauntlet_artifact::signing::verify_folder(dir, &signature, &key)
        .with_context(|| format!("cannot verify `{}`", dir.display()))?;
    if json {
        stdout_line(&serde_json::to_string_pretty(&verdict)?)?;
        return Ok(if verdict.valid {
            Outcome::Passed
        } else {
            Outcome::Failed
        });
    }
    for problem in &verdict.problems {
        stdout_line(&format!("problem: {problem}"))?;
    }
    stdout_line(&format!(
        "{}: `{}` against `{}` ({} files verified, signer key {})",
        if verdict.valid { "ok" } else { "INVALID" },
        dir.display(),
        signature.display(),
        verdict.files_verified,
        verdict.signer_fingerprint
    ))?;
    Ok(if verdict.valid {
        Outcome::Passed
    } else {
        Outcome::Failed
    })
}
