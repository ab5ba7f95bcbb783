//! The journal of a run in progress, and the manifest of a finished shard.
//!
//! `OUT/journal/` holds `journal.jsonl` and one file per finished work unit,
//! `units/unit-NNNNNN.parquet` (the per-sample file format, with the plan and the unit's
//! measurements in its metadata). A unit is finished once (1) its file is complete — written to
//! a temporary file and renamed into place, so a half-written file never has the final name —
//! and (2) a line naming it and the file's SHA-256 is appended to `journal.jsonl` with one
//! `write` and an fsync. A run killed at any point (`kill -9`, a lost spot instance) and
//! started again with the same command reads the journal, checks every listed file against its
//! hash, and runs only the units it lacks; a unit whose file was written but not yet journaled
//! runs again. A torn last line (a crash inside the append) is cut off before appending.
//!
//! The journal's first line is the run's [`RunIdentity`]: the suite, seed, model, dataset and
//! plan digests and the unit list. A journal written by a different run is refused, naming
//! what differs, unless `--restart` asks to discard it.
//!
//! A shard's output folder is its journal plus `shard.json` ([`ShardManifest`]), written
//! atomically once every unit of the shard is journaled; `gauntlet merge` reads those.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use gauntlet_files::limits::{JOURNAL, SHARD_MANIFEST as SHARD_MANIFEST_LIMIT, UNIT_FILE};
use gauntlet_reports::OutputFormat;
use gauntlet_results::baseline::RelativeGate;
use gauntlet_results::RunPlan;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::load::{sha256_hex, Loaded};
use crate::shard::{ShardSpec, UnitId};
use crate::suite::{Source, Suite};
use crate::work::{UnitOutput, Work};

/// The journal's folder inside the output folder.
pub const JOURNAL_DIR: &str = "journal";
/// The journal's log inside [`JOURNAL_DIR`].
pub const JOURNAL_FILE: &str = "journal.jsonl";
/// The units' folder inside [`JOURNAL_DIR`].
pub const UNITS_DIR: &str = "units";
/// A finished shard's manifest, beside its journal.
pub const SHARD_MANIFEST: &str = "shard.json";

/// Version of the journal's lines.
pub const JOURNAL_VERSION: u32 = 1;
/// Version of `shard.json`.
pub const SHARD_MANIFEST_VERSION: u32 = 1;

/// What makes two processes' work interchangeable: a journal is resumed and shards are merged
/// only when every field agrees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunIdentity {
    pub gauntlet_version: String,
    /// The suite's name.
    pub suite: String,
    /// SHA-256 of the suite file's bytes (of the embedded default's text without a file).
    pub suite_sha256: String,
    pub seed: u64,
    /// SHA-256 of the model's weights file.
    pub model_sha256: String,
    /// SHA-256 of the model's spec file (equal to the weights' for a self-describing model).
    pub model_spec_sha256: String,
    /// SHA-256 of the evaluated samples as the model sees them (f32 pixels and u32 labels,
    /// after `limit`), so a changed file, format or limit cannot slip through.
    pub dataset_sha256: String,
    pub samples: usize,
    pub device: String,
    /// SHA-256 of the plan (runs with every attack parameter, gates, model and dataset
    /// records, kernel path), without the suite's path and the provenance details, which name
    /// local files.
    pub plan_sha256: String,
    /// Runs in the plan before the whole-model unit adds its own.
    pub runs: usize,
    pub unit_samples: usize,
    pub units: usize,
    /// SHA-256 of the unit list ([`crate::shard::WorkPlan::digest`]).
    pub units_sha256: String,
}

impl RunIdentity {
    /// The identity of `work`, the plan of `suite` over `loaded`.
    pub fn new(suite: &Suite, loaded: &Loaded, work: &Work) -> Result<Self> {
        let suite_bytes = match &suite.path {
            Some(path) => gauntlet_files::read_bounded(path, gauntlet_files::limits::SUITE)
                .with_context(|| format!("cannot read the suite file `{}`", path.display()))?,
            None => crate::suite::DEFAULT_SUITE.as_bytes().to_vec(),
        };
        let spec_bytes = match &suite.model_spec {
            Source::File(_) if suite.model_spec == suite.model_weights => None,
            Source::File(path) => Some(
                gauntlet_files::read_bounded(path, gauntlet_files::limits::MODEL_SPEC)
                    .with_context(|| format!("cannot read `model.spec` `{}`", path.display()))?,
            ),
            Source::Embedded(name) => Some(crate::load::embedded_bytes("model.spec", name)?),
        };
        Ok(Self {
            gauntlet_version: env!("CARGO_PKG_VERSION").to_string(),
            suite: suite.name.clone(),
            suite_sha256: sha256_hex(&suite_bytes),
            seed: suite.seed,
            model_sha256: loaded.model_info.sha256.clone(),
            model_spec_sha256: spec_bytes
                .map(|bytes| sha256_hex(&bytes))
                .unwrap_or_else(|| loaded.model_info.sha256.clone()),
            dataset_sha256: dataset_digest(loaded.dataset.as_ref(), suite.batch_size)?,
            samples: loaded.dataset.len(),
            device: loaded.device_name.clone(),
            plan_sha256: plan_digest(&work.base_plan)?,
            runs: work.base_plan.runs.len(),
            unit_samples: work.units.unit_samples,
            units: work.units.units.len(),
            units_sha256: work.units.digest(),
        })
    }

    /// `field: A in <that>, B in <this>` for every field that differs.
    pub fn differences(&self, this: &str, other: &Self, that: &str) -> Vec<String> {
        let (Ok(serde_json::Value::Object(mine)), Ok(serde_json::Value::Object(theirs))) =
            (serde_json::to_value(self), serde_json::to_value(other))
        else {
            return vec!["(the identities cannot be compared)".to_string()];
        };
        mine.iter()
            .filter(|(key, value)| theirs.get(*key) != Some(value))
            .map(|(key, value)| {
                let theirs = theirs.get(key).cloned().unwrap_or(serde_json::Value::Null);
                format!("{key}: {theirs} in {that}, {value} in {this}")
            })
            .collect()
    }
}

/// SHA-256 of a plan without what names local files (the suite's path, the provenance
/// details): two machines that check out the same suite in different folders agree on it.
pub fn plan_digest(plan: &RunPlan) -> Result<String> {
    let mut plan = plan.clone();
    plan.suite.path = None;
    plan.provenance = None;
    Ok(sha256_hex(serde_json::to_string(&plan)?.as_bytes()))
}

/// SHA-256 of the samples as the model sees them, batch by batch on the CPU.
fn dataset_digest(dataset: &dyn gauntlet_datasets::Dataset, batch_size: usize) -> Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(b"gauntlet dataset v1");
    for &dim in dataset.sample_shape() {
        hasher.update((dim as u64).to_le_bytes());
    }
    let device = candle_core::Device::Cpu;
    for range in crate::runner::batch_ranges(0..dataset.len(), batch_size.max(256)) {
        let batch = dataset.batch(range, &device)?;
        for value in batch.inputs.flatten_all()?.to_vec1::<f32>()? {
            hasher.update(value.to_le_bytes());
        }
        for label in batch
            .labels
            .to_dtype(candle_core::DType::U32)?
            .to_vec1::<u32>()?
        {
            hasher.update(label.to_le_bytes());
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The journal's first line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    journal_version: u32,
    identity: RunIdentity,
    /// The shard this journal runs (`None`: the whole plan).
    shard: Option<ShardSpec>,
}

/// One finished unit: a line of the journal, an entry of `shard.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitEntry {
    pub unit: UnitId,
    /// [`crate::shard::WorkUnit::key`], checked against the plan's unit at that position.
    pub key: String,
    /// The unit's file, relative to the folder holding the journal (or `shard.json`).
    pub file: String,
    /// SHA-256 of that file.
    pub sha256: String,
    /// The unit's probe values that its file cannot hold: the file keeps its measurements as
    /// JSON, which has no NaN or infinity (serde_json writes `null`, which does not read back
    /// as a number), so they are written there as 0 and listed here, and [`read_unit`] puts
    /// them back. A NaN probe (a model that gives non-finite logits or gradients) is a finding
    /// the sanity checks report, so it must survive a resume or a merge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_finite: Vec<NonFiniteValue>,
}

/// One non-finite value of a unit's probe measurements, by field and index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NonFiniteValue {
    pub field: ProbeField,
    pub index: usize,
    pub value: NonFinite,
}

/// The float vectors of [`gauntlet_results::RunMeasurements`] that may hold non-finite values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeField {
    /// `repeat_forward.logit_distance`.
    RepeatForwardLogitDistance,
    /// `clean_gradients.l1`.
    CleanGradientsL1,
}

/// A float JSON cannot hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NonFinite {
    #[serde(rename = "nan")]
    Nan,
    #[serde(rename = "inf")]
    Infinity,
    #[serde(rename = "-inf")]
    NegativeInfinity,
}

impl NonFinite {
    fn of(value: f32) -> Option<Self> {
        if value.is_nan() {
            Some(NonFinite::Nan)
        } else if value == f32::INFINITY {
            Some(NonFinite::Infinity)
        } else if value == f32::NEG_INFINITY {
            Some(NonFinite::NegativeInfinity)
        } else {
            None
        }
    }

    fn value(self) -> f32 {
        match self {
            NonFinite::Nan => f32::NAN,
            NonFinite::Infinity => f32::INFINITY,
            NonFinite::NegativeInfinity => f32::NEG_INFINITY,
        }
    }
}

fn probe_values(
    measurements: &mut gauntlet_results::RunMeasurements,
    field: ProbeField,
) -> Option<&mut Vec<f32>> {
    match field {
        ProbeField::RepeatForwardLogitDistance => measurements
            .repeat_forward
            .as_mut()
            .map(|p| &mut p.logit_distance),
        ProbeField::CleanGradientsL1 => measurements.clean_gradients.as_mut().map(|p| &mut p.l1),
    }
}

/// `measurements` with every non-finite probe value replaced by 0, and the list of them.
fn split_non_finite(
    measurements: &gauntlet_results::RunMeasurements,
) -> (gauntlet_results::RunMeasurements, Vec<NonFiniteValue>) {
    let mut finite = measurements.clone();
    let mut listed = Vec::new();
    for field in [
        ProbeField::RepeatForwardLogitDistance,
        ProbeField::CleanGradientsL1,
    ] {
        for (index, value) in probe_values(&mut finite, field)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(kind) = NonFinite::of(*value) {
                listed.push(NonFiniteValue {
                    field,
                    index,
                    value: kind,
                });
                *value = 0.0;
            }
        }
    }
    (finite, listed)
}

/// Put the listed non-finite values back; an index the file's measurements lack is an error.
fn restore_non_finite(
    path: &Path,
    measurements: &mut gauntlet_results::RunMeasurements,
    listed: &[NonFiniteValue],
) -> Result<()> {
    for item in listed {
        let slot = probe_values(measurements, item.field)
            .and_then(|values| values.get_mut(item.index))
            .with_context(|| {
                format!(
                    "`{}` has no {:?} value {} for the non-finite value its listing names",
                    path.display(),
                    item.field,
                    item.index
                )
            })?;
        *slot = item.value.value();
    }
    Ok(())
}

/// A unit of the run, finished now or by an earlier attempt: its journal entry and output.
pub type FinishedUnit = (UnitId, UnitEntry, UnitOutput);

/// What to do with a journal written by a different run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMismatch {
    /// Refuse, naming what differs (the default).
    Refuse,
    /// Discard it and start over (`--restart`, or the embedded default into its default
    /// folder, which replaces an earlier run anyway).
    Discard,
}

/// An open journal: the units it already holds, and the log to append to.
pub struct Journal {
    /// The output folder.
    out: PathBuf,
    header: Header,
    /// The log, once opened: the journal is created when the first unit finishes, so a run
    /// that fails before leaves nothing behind.
    log: Option<std::fs::File>,
    /// Units finished by earlier attempts, checked against their hashes, with their outputs.
    pub finished: BTreeMap<UnitId, (UnitEntry, UnitOutput)>,
    /// What was found wrong and will be redone (a unit file that does not match its hash).
    pub notes: Vec<String>,
}

impl Journal {
    /// Open the journal in `out` for `identity` (and `shard`), creating it if there is none.
    /// `restart` discards any journal first.
    pub fn open(
        out: &Path,
        identity: &RunIdentity,
        shard: Option<ShardSpec>,
        work: &Work,
        restart: bool,
        on_mismatch: OnMismatch,
    ) -> Result<Journal> {
        let dir = out.join(JOURNAL_DIR);
        let log_path = dir.join(JOURNAL_FILE);
        if restart {
            discard(out)?;
        }
        let header = Header {
            journal_version: JOURNAL_VERSION,
            identity: identity.clone(),
            shard,
        };
        let mut finished = BTreeMap::new();
        let mut notes = Vec::new();
        if log_path.exists() {
            let (found, entries) = read_log(&log_path)?;
            let mut differences = Vec::new();
            if found.journal_version != JOURNAL_VERSION {
                differences.push(format!(
                    "journal_version: {} in the journal, {JOURNAL_VERSION} in this build",
                    found.journal_version
                ));
            }
            differences.extend(identity.differences("this run", &found.identity, "the journal"));
            if found.shard != shard {
                let show = |s: Option<ShardSpec>| s.map_or("none".to_string(), |s| s.to_string());
                differences.push(format!(
                    "shard: {} in the journal, {} in this run",
                    show(found.shard),
                    show(shard)
                ));
            }
            if !differences.is_empty() {
                if on_mismatch == OnMismatch::Discard {
                    discard(out)?;
                } else {
                    bail!(
                        "the journal `{}` was written by a different run ({}); a run resumes \
                         only with the same command. Pass --restart to discard it and start \
                         over, or choose another --out",
                        log_path.display(),
                        differences.join("; ")
                    );
                }
            } else {
                for entry in entries {
                    let key = work.units.get(entry.unit).map(|u| u.unit.key());
                    let read = key
                        .with_context(|| format!("the plan has no work unit {}", entry.unit))
                        .and_then(|key| read_unit(&dir, &entry, &key, identity));
                    match read {
                        Ok((_, output)) => {
                            finished.insert(entry.unit, (entry, output));
                        }
                        Err(error) => {
                            finished.remove(&entry.unit);
                            notes.push(format!(
                                "work unit {} ({}) runs again: {error:#}",
                                entry.unit, entry.key
                            ));
                        }
                    }
                }
            }
        }
        if dir.join(UNITS_DIR).is_dir() {
            remove_temporary_files(&dir.join(UNITS_DIR))?;
        }
        Ok(Journal {
            out: out.to_path_buf(),
            header,
            log: None,
            finished,
            notes,
        })
    }

    /// The log to append to, creating the journal (folder, header line) on first use.
    fn log(&mut self) -> Result<&mut std::fs::File> {
        if self.log.is_none() {
            let dir = self.out.join(JOURNAL_DIR);
            let log_path = dir.join(JOURNAL_FILE);
            fs_err::create_dir_all(dir.join(UNITS_DIR))?;
            if !log_path.exists() {
                let mut line = serde_json::to_string(&self.header)?;
                line.push('\n');
                crate::output::write_file_atomically(&log_path, line.as_bytes())?;
            }
            let log = std::fs::OpenOptions::new()
                .append(true)
                .open(&log_path)
                .with_context(|| format!("cannot open the journal `{}`", log_path.display()))?;
            self.log = Some(log);
        }
        self.log
            .as_mut()
            .context("the journal is not open (a bug in this build)")
    }

    /// Run the units `ids` of `work`, skipping those the journal holds and journaling each
    /// one as it finishes; every unit's output, in `ids` order. Returns the outputs and how
    /// many units were skipped.
    pub fn run(
        &mut self,
        work: &mut Work,
        ids: &[UnitId],
        progress: &crate::progress::Progress,
    ) -> Result<(Vec<FinishedUnit>, usize)> {
        for (id, (_, output)) in &self.finished {
            work.remember(*id, output);
        }
        let remaining: Vec<UnitId> = ids
            .iter()
            .copied()
            .filter(|id| !self.finished.contains_key(id))
            .collect();
        progress.set_length(work.batches(&remaining));
        let mut results = Vec::with_capacity(ids.len());
        let mut skipped = 0;
        for &id in ids {
            if let Some((entry, output)) = self.finished.remove(&id) {
                skipped += 1;
                results.push((id, entry, output));
                continue;
            }
            let output = work.execute(id, progress)?;
            let entry = self.record(id, work, &output)?;
            results.push((id, entry, output));
        }
        Ok((results, skipped))
    }

    /// Record a finished unit: its file first (atomically), then its journal line.
    pub fn record(&mut self, id: UnitId, work: &Work, output: &UnitOutput) -> Result<UnitEntry> {
        let planned = work
            .units
            .get(id)
            .with_context(|| format!("the plan has no work unit {id}"))?;
        self.log()?;
        let relative = format!("{UNITS_DIR}/{}", id.file_name());
        let path = self.out.join(JOURNAL_DIR).join(&relative);
        let mut plan = work.base_plan.clone();
        plan.runs.extend(output.extra_runs.iter().cloned());
        let (measurements, non_finite) = split_non_finite(&output.measurements);
        gauntlet_results::samples_file::write(&path, &plan, &measurements, &output.records)
            .with_context(|| format!("cannot write the work unit file `{}`", path.display()))?;
        let entry = UnitEntry {
            unit: id,
            key: planned.unit.key(),
            file: relative,
            sha256: file_sha256(&path)?,
            non_finite,
        };
        let mut line = serde_json::to_string(&entry)?;
        line.push('\n');
        // One write of a whole line, then to disk: a crash leaves at most a torn last line.
        let log = self.log()?;
        log.write_all(line.as_bytes())
            .and_then(|()| log.sync_data())
            .context("cannot append to the run journal")?;
        Ok(entry)
    }
}

/// SHA-256 of a file's bytes.
fn file_sha256(path: &Path) -> Result<String> {
    let bytes = gauntlet_files::read_bounded(path, UNIT_FILE)?;
    Ok(sha256_hex(&bytes))
}

/// Read a unit's file as listed by `entry` (relative to `base`), checking its hash, its key
/// against the plan's unit and its plan against the identity.
pub fn read_unit(
    base: &Path,
    entry: &UnitEntry,
    expected_key: &str,
    identity: &RunIdentity,
) -> Result<(RunPlan, UnitOutput)> {
    if expected_key != entry.key {
        bail!(
            "work unit {} is `{expected_key}` in the plan but `{}` in the listing",
            entry.unit,
            entry.key
        );
    }
    if entry.file.contains("..") || Path::new(&entry.file).is_absolute() {
        bail!("the unit file `{}` is outside its folder", entry.file);
    }
    let path = base.join(&entry.file);
    let sha256 = file_sha256(&path)?;
    if sha256 != entry.sha256 {
        bail!(
            "`{}` has SHA-256 {sha256}, not the {} recorded when it was written",
            path.display(),
            entry.sha256
        );
    }
    let (mut plan, mut measurements, records) = gauntlet_results::samples_file::read(&path)?;
    restore_non_finite(&path, &mut measurements, &entry.non_finite)?;
    if plan.runs.len() < identity.runs {
        bail!("`{}` has a plan of another run", path.display());
    }
    let extra_runs = plan.runs.split_off(identity.runs);
    if plan_digest(&plan)? != identity.plan_sha256 {
        bail!(
            "`{}` was written for another plan (its digest differs)",
            path.display()
        );
    }
    Ok((
        plan,
        UnitOutput {
            extra_runs,
            measurements,
            records,
        },
    ))
}

/// Read a journal log: its header and every complete entry line. A torn last line (no
/// newline: a crash inside the append) is cut off the file so that appending can go on.
fn read_log(path: &Path) -> Result<(Header, Vec<UnitEntry>)> {
    let bytes = gauntlet_files::read_bounded(path, JOURNAL)?;
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(last) => last + 1,
        None => 0,
    };
    if complete < bytes.len() {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("cannot repair the journal `{}`", path.display()))?;
        file.set_len(complete as u64)?;
        file.sync_data()?;
    }
    let text = std::str::from_utf8(&bytes[..complete])
        .with_context(|| format!("the journal `{}` is not UTF-8 text", path.display()))?;
    let mut lines = text.lines();
    let header: Header = lines
        .next()
        .with_context(|| format!("the journal `{}` is empty", path.display()))
        .and_then(|line| {
            serde_json::from_str(line).with_context(|| {
                format!(
                    "the journal `{}` does not start with a gauntlet journal header; pass \
                     --restart to discard it",
                    path.display()
                )
            })
        })?;
    let entries = lines
        .enumerate()
        .map(|(number, line)| {
            serde_json::from_str(line).with_context(|| {
                format!(
                    "line {} of the journal `{}` is not a unit entry; pass --restart to \
                     discard the journal",
                    number + 2,
                    path.display()
                )
            })
        })
        .collect::<Result<Vec<UnitEntry>>>()?;
    Ok((header, entries))
}

/// Whether `name`, inside a journal's `units/` folder, is a file gauntlet writes there.
fn is_unit_file_name(name: &str) -> bool {
    (name.starts_with("unit-") && name.ends_with(".parquet")) || is_temporary_name(name)
}

/// A temporary file of an interrupted atomic write.
fn is_temporary_name(name: &str) -> bool {
    name.starts_with(".tmp") || name.starts_with(".gauntlet-partial-")
}

fn remove_temporary_files(units: &Path) -> Result<()> {
    for entry in fs_err::read_dir(units)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_temporary_name(&name) && entry.file_type()?.is_file() {
            fs_err::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Whether `dir` (an output folder's `journal/`) holds only what gauntlet writes there, so
/// that it may be removed.
pub fn is_own_journal(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().all(|entry| {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(kind) = entry.file_type() else {
            return false;
        };
        if kind.is_file() {
            return name == JOURNAL_FILE || is_temporary_name(&name);
        }
        kind.is_dir()
            && name == UNITS_DIR
            && std::fs::read_dir(entry.path()).is_ok_and(|units| {
                units.flatten().all(|unit| {
                    unit.file_type().is_ok_and(|k| k.is_file())
                        && is_unit_file_name(&unit.file_name().to_string_lossy())
                })
            })
    })
}

/// Remove the journal and shard manifest from `out`, refusing a journal folder that holds
/// anything gauntlet did not write.
pub fn discard(out: &Path) -> Result<()> {
    let dir = out.join(JOURNAL_DIR);
    if dir.exists() {
        if !is_own_journal(&dir) {
            bail!(
                "`{}` holds files gauntlet did not write; gauntlet never removes them: choose \
                 another --out",
                dir.display()
            );
        }
        fs_err::remove_dir_all(&dir)?;
    }
    let manifest = out.join(SHARD_MANIFEST);
    if manifest.is_file() {
        fs_err::remove_file(&manifest)?;
    }
    Ok(())
}

/// `shard.json`: a finished shard, for `gauntlet merge`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardManifest {
    pub shard_manifest_version: u32,
    pub identity: RunIdentity,
    pub shard: ShardSpec,
    /// What the merged run needs from the suite besides the plan: its relative gates
    /// (evaluated against `merge --baseline`) and its output formats.
    pub relative_gates: Vec<RelativeGate>,
    pub formats: Vec<OutputFormat>,
    /// Every unit of the shard, its file relative to the shard's `journal/` folder.
    pub units: Vec<UnitEntry>,
    /// Compute time, kept apart from everything that must agree between runs.
    pub timings: ShardTimings,
}

/// A shard's times: not compared by `merge`, summed into the merged run's timings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardTimings {
    pub load_seconds: f64,
    /// The seconds of every unit of the shard (including those of earlier attempts).
    pub unit_seconds: f64,
}

impl ShardManifest {
    /// Write `shard.json` into `out`, atomically: it exists only for a complete shard.
    pub fn write(&self, out: &Path) -> Result<PathBuf> {
        let path = out.join(SHARD_MANIFEST);
        let json = serde_json::to_string_pretty(self)?;
        crate::output::write_file_atomically(&path, json.as_bytes())?;
        Ok(path)
    }

    /// Read `DIR/shard.json`.
    pub fn read(dir: &Path) -> Result<ShardManifest> {
        let path = dir.join(SHARD_MANIFEST);
        let text = gauntlet_files::read_to_string_bounded(&path, SHARD_MANIFEST_LIMIT)?;
        let manifest: ShardManifest = serde_json::from_str(&text)
            .with_context(|| format!("`{}` is not a gauntlet shard manifest", path.display()))?;
        if manifest.shard_manifest_version != SHARD_MANIFEST_VERSION {
            bail!(
                "`{}` has shard_manifest_version {}, this gauntlet reads {SHARD_MANIFEST_VERSION}",
                path.display(),
                manifest.shard_manifest_version
            );
        }
        Ok(manifest)
    }
}

/// The units listed by the journal in `dir` (an unfinished shard's folder), for error messages.
pub fn journaled_units(dir: &Path) -> Option<usize> {
    read_log(&dir.join(JOURNAL_DIR).join(JOURNAL_FILE))
        .ok()
        .map(|(_, entries)| entries.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run identity with a distinct value in every field.
    fn identity() -> RunIdentity {
        RunIdentity {
            gauntlet_version: "0".into(),
            suite: "s".into(),
            suite_sha256: "a".into(),
            seed: 1,
            model_sha256: "b".into(),
            model_spec_sha256: "c".into(),
            dataset_sha256: "d".into(),
            samples: 10,
            device: "cpu".into(),
            plan_sha256: "e".into(),
            runs: 2,
            unit_samples: 5,
            units: 4,
            units_sha256: "f".into(),
        }
    }

    #[test]
    fn a_torn_last_line_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        let identity = identity();
        let header = serde_json::to_string(&Header {
            journal_version: JOURNAL_VERSION,
            identity,
            shard: None,
        })
        .unwrap();
        let entry = UnitEntry {
            unit: UnitId(3),
            key: "run1[0..5)".into(),
            file: "units/unit-000003.parquet".into(),
            sha256: "00".into(),
            non_finite: Vec::new(),
        };
        let line = serde_json::to_string(&entry).unwrap();
        let torn = &line[..line.len() / 2];
        std::fs::write(&path, format!("{header}\n{line}\n{torn}")).unwrap();
        let (_, entries) = read_log(&path).unwrap();
        assert_eq!(entries, [entry]);
        let repaired = std::fs::read_to_string(&path).unwrap();
        assert_eq!(repaired, format!("{header}\n{line}\n"));

        // A complete line that is not an entry is corruption, not a crash: refused.
        std::fs::write(&path, format!("{header}\nnot json\n")).unwrap();
        let error = read_log(&path).unwrap_err();
        assert!(format!("{error:#}").contains("line 2"), "{error:#}");
    }

    /// A unit whose probes hold NaN and infinities reads back with them: the measurements go
    /// through JSON (as in the unit file's metadata) with the values listed in the entry, and
    /// the entry through the journal line's JSON. Without the listing they would not survive.
    #[test]
    fn non_finite_probe_values_survive_the_unit_file() {
        let measurements = gauntlet_results::RunMeasurements {
            repeat_forward: Some(gauntlet_results::RepeatForward {
                start: 0,
                logit_distance: vec![0.5, f32::NAN, 0.0, f32::INFINITY],
                prediction: vec![1, 2, 3, 4],
            }),
            clean_gradients: Some(gauntlet_results::CleanGradients {
                start: 0,
                l1: vec![f32::NEG_INFINITY, 2.0, f32::NAN],
            }),
            ..gauntlet_results::RunMeasurements::default()
        };
        // What the file alone would do: serde_json writes NaN as null, which does not read back.
        let plain = serde_json::to_string(&measurements).unwrap();
        assert!(serde_json::from_str::<gauntlet_results::RunMeasurements>(&plain).is_err());

        let (finite, non_finite) = split_non_finite(&measurements);
        assert_eq!(non_finite.len(), 4);
        let entry = UnitEntry {
            unit: UnitId(0),
            key: "run0[0..4)".into(),
            file: "units/unit-000000.parquet".into(),
            sha256: "00".into(),
            non_finite,
        };
        let line = serde_json::to_string(&entry).unwrap();
        assert!(line.contains(r#""value":"nan""#), "{line}");
        let entry: UnitEntry = serde_json::from_str(&line).unwrap();
        let mut read: gauntlet_results::RunMeasurements =
            serde_json::from_str(&serde_json::to_string(&finite).unwrap()).unwrap();
        restore_non_finite(Path::new("unit"), &mut read, &entry.non_finite).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let (want, got) = (
            measurements.repeat_forward.as_ref().unwrap(),
            read.repeat_forward.as_ref().unwrap(),
        );
        assert_eq!(bits(&got.logit_distance), bits(&want.logit_distance));
        assert_eq!(got.prediction, want.prediction);
        assert_eq!(
            bits(&read.clean_gradients.as_ref().unwrap().l1),
            bits(&measurements.clean_gradients.as_ref().unwrap().l1)
        );
        // Finite measurements list nothing, and the entry's JSON stays as before.
        let (_, none) = split_non_finite(&gauntlet_results::RunMeasurements::default());
        assert!(none.is_empty());
        // A listing that names a value the file lacks is refused, naming the file.
        let mut short = gauntlet_results::RunMeasurements::default();
        let error =
            restore_non_finite(Path::new("unit-9"), &mut short, &entry.non_finite).unwrap_err();
        assert!(format!("{error:#}").contains("unit-9"), "{error:#}");
    }

    #[test]
    fn differences_name_the_field() {
        let a = identity();
        let b = RunIdentity {
            seed: 2,
            ..a.clone()
        };
        assert_eq!(
            a.differences("now", &b, "the journal"),
            ["seed: 2 in the journal, 1 in now"]
        );
        assert!(a.differences("now", &a, "the journal").is_empty());
    }

    #[test]
    fn only_own_journal_folders_count_as_own() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join(JOURNAL_DIR);
        std::fs::create_dir_all(journal.join(UNITS_DIR)).unwrap();
        std::fs::write(journal.join(JOURNAL_FILE), "").unwrap();
        std::fs::write(journal.join(UNITS_DIR).join("unit-000001.parquet"), "").unwrap();
        std::fs::write(journal.join(UNITS_DIR).join(".tmpAbc"), "").unwrap();
        assert!(is_own_journal(&journal));
        std::fs::write(journal.join(UNITS_DIR).join("thesis.tex"), "").unwrap();
        assert!(!is_own_journal(&journal));
        assert!(discard(dir.path()).is_err());
        assert!(journal.join(UNITS_DIR).join("thesis.tex").is_file());
    }
}
