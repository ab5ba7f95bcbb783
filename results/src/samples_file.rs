//! The per-sample file, `samples.parquet`, written beside `results.json`.
//!
//! One row per (run, sample), one row group per run, flat typed columns that pandas
//! (`read_parquet`), polars and DuckDB read directly; columns a record kind does not have are
//! null. The run plan and the runner's other measurements travel as JSON in the file's
//! key-value metadata (key [`METADATA_KEY`]), so `gauntlet report samples.parquet` rebuilds
//! `results.json` and the report from this one file.
//!
//! Why Parquet and not JSON Lines, measured on 60,000 samples × 8 attack runs + the clean pass
//! (540,000 rows; 2-core x86-64, 2026-12-02; docs/results.md has the table): JSON Lines is
//! 113 MB, takes twice the CPU to write, and polars' `read_ndjson` cannot read it by default (a
//! column that is null in the first rows is typed as null); Parquet with Snappy is 6.6 MB,
//! typed (u32, f32, bool), and read by all three. Snappy rather than zstd: pure Rust, the
//! fastest write, and zstd's C build would add ~25 s to a cold CI build for a third less size.
//!
//! | column | type | clean | evasion |
//! |---|---|---|---|
//! | `run_id` | u32 | position in the plan's `runs` | same |
//! | `run` | string | `clean` | the attack's label (`pgd`, `pgd_l2`, `full_budget`) |
//! | `purpose` | string | `clean` | `attack`, `zero_budget_probe`, `full_budget_probe`, `minimal_norm_search` |
//! | `kind` | string | `clean` | `evasion` |
//! | `attack`, `norm` | string? | null | registry name, `linf`/`l2` |
//! | `epsilon` | f32? | null | the budget |
//! | `index` | u64 | global sample index | same |
//! | `label` | u32 | true label | true label |
//! | `prediction` | u32 | clean prediction | adversarial prediction |
//! | `correct` | bool? | prediction = label | null |
//! | `robust` | bool? | null | correct before and after the attack |
//! | `loss` | f32 | cross-entropy | cross-entropy at the adversarial input |
//! | `perturbation_norm`, `linf` | f32? | null | ‖x′ − x‖ in the attack's norm, ‖x′ − x‖∞ |
//! | `min_value`, `max_value` | f32? | null | range of the adversarial input |
//! | `nan` | bool? | null | whether the adversarial input has a NaN |
//!
//! Version 2 adds the backdoor records (`crate::backdoor`; kinds `trigger_scan`, `strip`,
//! `poisoning`, `data_scan`), makes `loss` nullable (backdoor rows have none) and appends one
//! nullable column per backdoor figure. Their `attack` column holds the scan's or poisoning's
//! registry name, `label` the class (trigger scans) or the true label, `prediction` what
//! `BackdoorOutcome::prediction` says, `correct` (poisoning) the clean prediction is right.
//!
//! | column | type | set for |
//! |---|---|---|
//! | `anomaly_index`, `mask_l1`, `flip_rate`, `mask_iou` | f64? | `trigger_scan` (each when the scan measures it) |
//! | `flagged` | bool? | `trigger_scan` (class flagged), `strip` (input judged triggered), `data_scan` (sample flagged) |
//! | `entropy`, `triggered` | f64?, bool? | `strip` |
//! | `poison_rate`, `poison_seed` | f64?, u64? | `poisoning`, `data_scan` (the model's sweep point) |
//! | `attack_prediction`, `attack_success` | u32?, bool? | `poisoning`, on attack inputs |
//! | `score`, `poisoned` | f64?, bool? | `data_scan` (poisoned = ground truth) |
//!
//! Version 3 appends two nullable columns that attacks report about their own work
//! (`gauntlet_attacks::SampleTrace`): `queries` (u32?, the model queries a black-box attack
//! spent on the sample: Square, HopSkipJump) and `broken_at` (f32?, for APGD and APGD-T the
//! share of the attack's iterations, steps × restarts (× targets), done when the sample was
//! first broken; null where unbroken). Both are null on rows of attacks that do not report
//! them and on every non-evasion row.
//!
//! Version 4 appends one nullable column, `broken_by` (string?): on the rows of a `standard`
//! run, the member that broke the sample (`apgd_ce`, `apgd_t`, `fab_t` or `square`; each later
//! member runs only on what the earlier ones left, so this is the first member that broke it),
//! null for a sample no member broke or that was misclassified already, and on every row of
//! other attacks and of other kinds (`gauntlet_attacks::SampleTrace::broken_by`). It also adds
//! the guardrail records (`crate::detector`; kind `detector`, purpose `detector`): `run` is the
//! detector's label, `attack`, `norm` and `epsilon` the attack whose adversarial inputs were
//! scored (null for the clean inputs), `label` the true label, `prediction` the model's
//! prediction on the scored input, `robust` correct (clean) or correct before and after the
//! attack (adversarial), `score` the detector's score and `flagged` whether the detector's own
//! rule rejects the input (null when it has no rule).
//!
//! Version-1 files (18 columns), version-2 files (31 columns) and version-3 files (33
//! columns) still read; their evasion records have no `broken_by` (and before version 3 no
//! queries and no `broken_at`).
//!
//! A minimal-norm attack (DeepFool, CW-L2) has rows only for its one `minimal_norm_search` run
//! (ε = +∞; `"unbounded"` in the plan's JSON): `perturbation_norm` is the smallest successful
//! perturbation found (0 with `robust` true where none was). Its runs at the suite's ε's are in
//! the plan but have no rows; the aggregation derives them (`crate::Aligned::new`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{
    BoolType, ByteArray, ByteArrayType, DoubleType, FloatType, Int32Type, Int64Type,
};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::Field;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use crate::backdoor::{
    BackdoorOutcome, BackdoorRun, DataScanOutcome, PoisoningOutcome, StripOutcome,
    TriggerScanOutcome,
};
use crate::plan::{RunMeasurements, RunPlan, RunPurpose};
use crate::records::{
    CleanOutcome, DetectorOutcome, EvasionOutcome, Outcome, RecordKind, RunId, SampleRecord,
};
use gauntlet_attacks::evasion::standard::Member;

/// The file's name beside `results.json`.
pub const FILE_NAME: &str = "samples.parquet";

/// The key-value metadata entry holding the plan and measurements as JSON.
pub const METADATA_KEY: &str = "gauntlet.run";

/// Version of this file's columns and metadata.
pub const SAMPLES_FILE_VERSION: u32 = 4;

/// The oldest version this build reads (version 1 has no backdoor columns).
pub const OLDEST_SAMPLES_FILE_VERSION: u32 = 1;

/// Largest per-sample file this build reads: far above any real run (540,000 rows are about
/// 10 MB), far below what would exhaust memory.
pub const MAX_FILE_BYTES: u64 = 4 << 30;

/// Largest metadata JSON this build accepts.
const MAX_METADATA_BYTES: usize = 256 << 20;

const SCHEMA: &str = "message gauntlet_samples {
  required int32 run_id (INTEGER(32,false));
  required binary run (STRING);
  required binary purpose (STRING);
  required binary kind (STRING);
  optional binary attack (STRING);
  optional binary norm (STRING);
  optional float epsilon;
  required int64 index (INTEGER(64,false));
  required int32 label (INTEGER(32,false));
  required int32 prediction (INTEGER(32,false));
  optional boolean correct;
  optional boolean robust;
  optional float loss;
  optional float perturbation_norm;
  optional float linf;
  optional float min_value;
  optional float max_value;
  optional boolean nan;
  optional double anomaly_index;
  optional double mask_l1;
  optional double flip_rate;
  optional double mask_iou;
  optional boolean flagged;
  optional double entropy;
  optional boolean triggered;
  optional double poison_rate;
  optional int64 poison_seed (INTEGER(64,false));
  optional int32 attack_prediction (INTEGER(32,false));
  optional boolean attack_success;
  optional double score;
  optional boolean poisoned;
  optional int32 queries (INTEGER(32,false));
  optional float broken_at;
  optional binary broken_by (STRING);
}";

/// The column names, in schema order; version 1 has the first [`V1_COLUMNS`].
const COLUMNS: [&str; 34] = [
    "run_id",
    "run",
    "purpose",
    "kind",
    "attack",
    "norm",
    "epsilon",
    "index",
    "label",
    "prediction",
    "correct",
    "robust",
    "loss",
    "perturbation_norm",
    "linf",
    "min_value",
    "max_value",
    "nan",
    "anomaly_index",
    "mask_l1",
    "flip_rate",
    "mask_iou",
    "flagged",
    "entropy",
    "triggered",
    "poison_rate",
    "poison_seed",
    "attack_prediction",
    "attack_success",
    "score",
    "poisoned",
    "queries",
    "broken_at",
    "broken_by",
];

/// How many of [`COLUMNS`] a version-1 file has.
const V1_COLUMNS: usize = 18;

/// How many of [`COLUMNS`] a version-2 file has.
const V2_COLUMNS: usize = 31;

/// How many of [`COLUMNS`] a version-3 file has.
const V3_COLUMNS: usize = 33;

/// What can go wrong reading or writing the per-sample file; every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SamplesFileError {
    #[error("cannot read or write `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A FIFO, socket, device or folder where the file was expected (never opened, so
    /// nothing blocks).
    #[error(transparent)]
    File(gauntlet_files::FileError),
    #[error("`{path}` is {size} bytes, more than the {max} a per-sample file may have")]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    #[error("`{path}` is not a valid Parquet file: {source}")]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("`{path}` is not a gauntlet per-sample file: {reason}")]
    NotSamplesFile { path: PathBuf, reason: String },
    #[error("`{path}`, row {row}, column `{column}`: {reason}")]
    BadRow {
        path: PathBuf,
        row: usize,
        column: &'static str,
        reason: String,
    },
    #[error("`{path}`: the run metadata is not valid: {source}")]
    Metadata {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The metadata entry: the plan and the measurements, versioned.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMetadata {
    samples_file_version: u32,
    plan: RunPlan,
    measurements: RunMeasurements,
}

fn purpose_name(purpose: RunPurpose) -> &'static str {
    match purpose {
        RunPurpose::Clean => "clean",
        RunPurpose::Attack => "attack",
        RunPurpose::ZeroBudgetProbe => "zero_budget_probe",
        RunPurpose::FullBudgetProbe => "full_budget_probe",
        RunPurpose::Backdoor => "backdoor",
        RunPurpose::MinimalNormSearch => "minimal_norm_search",
        RunPurpose::Detector => "detector",
    }
}

/// Write the records (in any order; each run's rows are grouped and sorted by index) with the
/// plan and measurements, to a temporary file renamed into place, so a reader never sees half a
/// file.
pub fn write(
    path: &Path,
    plan: &RunPlan,
    measurements: &RunMeasurements,
    records: &[SampleRecord],
) -> Result<(), SamplesFileError> {
    let io = |source| SamplesFileError::Io {
        path: path.to_owned(),
        source,
    };
    let parquet_error = |source| SamplesFileError::Parquet {
        path: path.to_owned(),
        source,
    };
    let metadata = serde_json::to_string(&FileMetadata {
        samples_file_version: SAMPLES_FILE_VERSION,
        plan: plan.clone(),
        measurements: measurements.clone(),
    })
    .map_err(|source| SamplesFileError::Metadata {
        path: path.to_owned(),
        source,
    })?;
    let labels: HashMap<u64, u32> = records
        .iter()
        .filter_map(|r| match r.outcome {
            Outcome::Clean(clean) => Some((r.index, clean.label)),
            Outcome::Evasion(_) | Outcome::Backdoor(_) | Outcome::Detector(_) => None,
        })
        .collect();
    let mut by_run: Vec<Vec<&SampleRecord>> = vec![Vec::new(); plan.runs.len()];
    for record in records {
        let run = by_run.get_mut(record.run.position()).ok_or_else(|| {
            SamplesFileError::NotSamplesFile {
                path: path.to_owned(),
                reason: format!(
                    "a record names run #{}, which the plan does not have",
                    record.run.0
                ),
            }
        })?;
        run.push(record);
    }

    let schema = Arc::new(parse_message_type(SCHEMA).map_err(parquet_error)?);
    // Dictionary encoding pays for the low-cardinality columns only; on indices and floats it
    // made the file larger and the write slower (measured; docs/results.md).
    let mut properties = WriterProperties::builder();
    for column in [
        "index",
        "loss",
        "perturbation_norm",
        "linf",
        "min_value",
        "max_value",
    ] {
        properties = properties.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    let properties = properties
        .set_compression(Compression::SNAPPY)
        .set_created_by(format!("gauntlet {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            METADATA_KEY.to_string(),
            metadata,
        )]))
        .build();
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temporary = tempfile::NamedTempFile::new_in(folder).map_err(io)?;
    let file = temporary.as_file().try_clone().map_err(io)?;
    let mut writer = SerializedFileWriter::new(BufWriter::new(file), schema, Arc::new(properties))
        .map_err(parquet_error)?;
    for (position, mut rows) in by_run.into_iter().enumerate() {
        if rows.is_empty() {
            continue;
        }
        rows.sort_by_key(|r| r.index);
        let run = &plan.runs[position];
        let attack = run.attack.as_ref();
        let text = |value: &str| ByteArray::from(value.as_bytes().to_vec());
        let repeat = |value: &str| vec![text(value); rows.len()];
        let optional_text = |value: Option<String>| match value {
            Some(value) => (repeat(&value), vec![1i16; rows.len()]),
            None => (Vec::new(), vec![0i16; rows.len()]),
        };
        // Per-column values and definition levels (1 = present, 0 = null).
        let evasion: Vec<Option<&EvasionOutcome>> = rows
            .iter()
            .map(|r| match &r.outcome {
                Outcome::Evasion(e) => Some(e),
                Outcome::Clean(_) | Outcome::Backdoor(_) | Outcome::Detector(_) => None,
            })
            .collect();
        let optional_f32 =
            |get: &dyn Fn(&EvasionOutcome) -> f32| nullable(evasion.iter().map(|e| e.map(get)));
        let mut group = writer.next_row_group().map_err(parquet_error)?;
        macro_rules! column {
            ($type:ty, $values:expr, $levels:expr) => {{
                let mut column = group.next_column().map_err(parquet_error)?.ok_or_else(|| {
                    parquet_error(parquet::errors::ParquetError::General(
                        "the schema has fewer columns than written".into(),
                    ))
                })?;
                column
                    .typed::<$type>()
                    .write_batch($values, $levels, None)
                    .map_err(parquet_error)?;
                column.close().map_err(parquet_error)?;
            }};
        }
        let id = i32::try_from(position).unwrap_or(i32::MAX);
        column!(Int32Type, &vec![id; rows.len()], None);
        column!(ByteArrayType, &repeat(&run.label), None);
        column!(ByteArrayType, &repeat(purpose_name(run.purpose)), None);
        let kinds: Vec<ByteArray> = rows
            .iter()
            .map(|r| text(r.outcome.kind().as_str()))
            .collect();
        column!(ByteArrayType, &kinds, None);
        let registry_name = attack
            .map(|a| a.name.clone())
            .or_else(|| run.backdoor.as_ref().map(backdoor_registry_name));
        let (values, levels) = optional_text(registry_name);
        column!(ByteArrayType, &values, Some(&levels));
        let (values, levels) = optional_text(attack.map(|a| a.norm.to_string()));
        column!(ByteArrayType, &values, Some(&levels));
        let (values, levels) = match attack {
            Some(a) => (vec![a.epsilon; rows.len()], vec![1i16; rows.len()]),
            None => (Vec::new(), vec![0i16; rows.len()]),
        };
        column!(FloatType, &values, Some(&levels));
        // Parquet stores unsigned integers in signed physical types, bit for bit.
        let indices: Vec<i64> = rows.iter().map(|r| r.index as i64).collect();
        column!(Int64Type, &indices, None);
        let labels_column: Vec<i32> = rows
            .iter()
            .map(|r| match r.outcome {
                Outcome::Clean(c) => c.label as i32,
                Outcome::Evasion(_) => labels.get(&r.index).copied().unwrap_or(u32::MAX) as i32,
                Outcome::Backdoor(b) => backdoor_label(&b) as i32,
                Outcome::Detector(d) => d.label as i32,
            })
            .collect();
        column!(Int32Type, &labels_column, None);
        let predictions: Vec<i32> = rows.iter().map(|r| r.outcome.prediction() as i32).collect();
        column!(Int32Type, &predictions, None);
        let (correct, correct_levels) = nullable(rows.iter().map(|r| match r.outcome {
            Outcome::Clean(c) => Some(c.correct()),
            Outcome::Backdoor(BackdoorOutcome::Poisoning(p)) => Some(p.clean_correct()),
            Outcome::Evasion(_) | Outcome::Backdoor(_) | Outcome::Detector(_) => None,
        }));
        column!(BoolType, &correct, Some(&correct_levels));
        let (robust, robust_levels) = nullable(rows.iter().map(|r| match r.outcome {
            Outcome::Evasion(e) => Some(e.robust),
            Outcome::Detector(d) => Some(d.robust),
            _ => None,
        }));
        column!(BoolType, &robust, Some(&robust_levels));
        let (losses, loss_levels) = nullable(rows.iter().map(|r| match r.outcome {
            Outcome::Clean(c) => Some(c.loss),
            Outcome::Evasion(e) => Some(e.loss),
            Outcome::Backdoor(_) | Outcome::Detector(_) => None,
        }));
        column!(FloatType, &losses, Some(&loss_levels));
        for get in [
            &(|e: &EvasionOutcome| e.norm) as &dyn Fn(&EvasionOutcome) -> f32,
            &|e: &EvasionOutcome| e.linf,
            &|e: &EvasionOutcome| e.min_value,
            &|e: &EvasionOutcome| e.max_value,
        ] {
            let (values, levels) = optional_f32(get);
            column!(FloatType, &values, Some(&levels));
        }
        let (nan, nan_levels) = nullable(evasion.iter().map(|e| e.map(|e| e.nan)));
        column!(BoolType, &nan, Some(&nan_levels));
        let backdoor: Vec<Option<BackdoorOutcome>> = rows
            .iter()
            .map(|r| match r.outcome {
                Outcome::Backdoor(b) => Some(b),
                _ => None,
            })
            .collect();
        let scan = |get: &dyn Fn(&TriggerScanOutcome) -> Option<f64>| {
            nullable(backdoor.iter().map(|b| match b {
                Some(BackdoorOutcome::TriggerScan(t)) => get(t),
                _ => None,
            }))
        };
        for get in [
            &(|t: &TriggerScanOutcome| t.anomaly_index)
                as &dyn Fn(&TriggerScanOutcome) -> Option<f64>,
            &|t: &TriggerScanOutcome| t.mask_l1,
            &|t: &TriggerScanOutcome| t.flip_rate,
            &|t: &TriggerScanOutcome| t.mask_iou,
        ] {
            let (values, levels) = scan(get);
            column!(DoubleType, &values, Some(&levels));
        }
        let detector: Vec<Option<DetectorOutcome>> = rows
            .iter()
            .map(|r| match r.outcome {
                Outcome::Detector(d) => Some(d),
                _ => None,
            })
            .collect();
        let (values, levels) = nullable(backdoor.iter().zip(&detector).map(|(b, d)| match b {
            Some(BackdoorOutcome::TriggerScan(t)) => Some(t.flagged),
            Some(BackdoorOutcome::Strip(s)) => Some(s.flagged),
            Some(BackdoorOutcome::DataScan(d)) => Some(d.flagged),
            _ => d.and_then(|d| d.rule_rejected),
        }));
        column!(BoolType, &values, Some(&levels));
        let strip = |b: &Option<BackdoorOutcome>| match b {
            Some(BackdoorOutcome::Strip(s)) => Some(*s),
            _ => None,
        };
        let (values, levels) = nullable(backdoor.iter().map(|b| strip(b).map(|s| s.entropy)));
        column!(DoubleType, &values, Some(&levels));
        let (values, levels) = nullable(backdoor.iter().map(|b| strip(b).map(|s| s.triggered)));
        column!(BoolType, &values, Some(&levels));
        let point = match &run.backdoor {
            Some(BackdoorRun::Poisoning { rate, seed, .. })
            | Some(BackdoorRun::DataScan { rate, seed, .. }) => Some((*rate, *seed)),
            _ => None,
        };
        let (values, levels) = nullable(rows.iter().map(|_| point.map(|p| p.0)));
        column!(DoubleType, &values, Some(&levels));
        let (values, levels) = nullable(rows.iter().map(|_| point.map(|p| p.1 as i64)));
        column!(Int64Type, &values, Some(&levels));
        let poisoning = |b: &Option<BackdoorOutcome>| match b {
            Some(BackdoorOutcome::Poisoning(p)) => Some(*p),
            _ => None,
        };
        let (values, levels) = nullable(backdoor.iter().map(|b| {
            poisoning(b)
                .and_then(|p| p.attack_prediction)
                .map(|v| v as i32)
        }));
        column!(Int32Type, &values, Some(&levels));
        let (values, levels) = nullable(
            backdoor
                .iter()
                .map(|b| poisoning(b).and_then(|p| p.attack_success)),
        );
        column!(BoolType, &values, Some(&levels));
        let data = |b: &Option<BackdoorOutcome>| match b {
            Some(BackdoorOutcome::DataScan(d)) => Some(*d),
            _ => None,
        };
        let (values, levels) = nullable(
            backdoor
                .iter()
                .zip(&detector)
                .map(|(b, d)| data(b).map(|b| b.score).or(d.map(|d| d.score))),
        );
        column!(DoubleType, &values, Some(&levels));
        let (values, levels) = nullable(backdoor.iter().map(|b| data(b).map(|d| d.poisoned)));
        column!(BoolType, &values, Some(&levels));
        let (values, levels) = nullable(
            evasion
                .iter()
                .map(|e| e.and_then(|e| e.queries).map(|q| q as i32)),
        );
        column!(Int32Type, &values, Some(&levels));
        let (values, levels) = nullable(evasion.iter().map(|e| e.and_then(|e| e.broken_at)));
        column!(FloatType, &values, Some(&levels));
        let (values, levels) = nullable(evasion.iter().map(|e| {
            e.and_then(|e| e.broken_by)
                .map(|member| text(member.name()))
        }));
        column!(ByteArrayType, &values, Some(&levels));
        group.close().map_err(parquet_error)?;
    }
    writer.close().map_err(parquet_error)?;
    temporary.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// A nullable column as Parquet's column writers take it: the present values, and one
/// definition level per row (1 present, 0 null).
fn nullable<T>(cells: impl Iterator<Item = Option<T>>) -> (Vec<T>, Vec<i16>) {
    let mut values = Vec::new();
    let levels = cells
        .map(|cell| match cell {
            Some(value) => {
                values.push(value);
                1
            }
            None => 0,
        })
        .collect();
    (values, levels)
}

/// Whether `path` starts like a Parquet file (the `PAR1` magic), without trusting its name.
pub fn is_samples_file(path: &Path) -> Result<bool, SamplesFileError> {
    let file = open_regular(path)?;
    let mut magic = [0u8; 4];
    let mut read = 0;
    let mut limited = file.take(4);
    while read < 4 {
        match limited.read(&mut magic[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(SamplesFileError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        }
    }
    Ok(read == 4 && &magic == b"PAR1")
}

/// Open `path` only if it is a regular file of bounded size: a FIFO would block, a device
/// would never end. The reading layer checks the type (without blocking); the size comes from
/// the opened regular file's metadata, which for a regular file is what the Parquet reader's
/// seeks are bounded by.
fn open_regular(path: &Path) -> Result<File, SamplesFileError> {
    let io = |source| SamplesFileError::Io {
        path: path.to_owned(),
        source,
    };
    let file = gauntlet_files::open(path, "a per-sample file").map_err(|error| match error {
        gauntlet_files::FileError::Io { path, source } => SamplesFileError::Io { path, source },
        other => SamplesFileError::File(other),
    })?;
    let metadata = file.metadata().map_err(io)?;
    if metadata.len() > MAX_FILE_BYTES {
        return Err(SamplesFileError::TooLarge {
            path: path.to_owned(),
            size: metadata.len(),
            max: MAX_FILE_BYTES,
        });
    }
    Ok(file)
}

/// Read a per-sample file back: the plan, the measurements and every record.
pub fn read(
    path: &Path,
) -> Result<(RunPlan, RunMeasurements, Vec<SampleRecord>), SamplesFileError> {
    let not_ours = |reason: String| SamplesFileError::NotSamplesFile {
        path: path.to_owned(),
        reason,
    };
    let file = open_regular(path)?;
    let reader = SerializedFileReader::new(file).map_err(|source| SamplesFileError::Parquet {
        path: path.to_owned(),
        source,
    })?;
    let file_metadata = reader.metadata().file_metadata();
    let names: Vec<&str> = file_metadata
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.name())
        .collect();
    if ![COLUMNS.len(), V3_COLUMNS, V2_COLUMNS, V1_COLUMNS]
        .iter()
        .any(|&count| names == COLUMNS[..count])
    {
        return Err(not_ours(format!(
            "its columns are {names:?}, expected {COLUMNS:?} (or the first {V3_COLUMNS} of them, \
             version 3, the first {V2_COLUMNS}, version 2, or the first {V1_COLUMNS}, version 1)"
        )));
    }
    let metadata_json = file_metadata
        .key_value_metadata()
        .and_then(|entries| entries.iter().find(|kv| kv.key == METADATA_KEY))
        .and_then(|kv| kv.value.as_deref())
        .ok_or_else(|| not_ours(format!("it has no `{METADATA_KEY}` metadata")))?;
    if metadata_json.len() > MAX_METADATA_BYTES {
        return Err(not_ours(format!(
            "its `{METADATA_KEY}` metadata is {} bytes, more than {MAX_METADATA_BYTES}",
            metadata_json.len()
        )));
    }
    let metadata: FileMetadata =
        serde_json::from_str(metadata_json).map_err(|source| SamplesFileError::Metadata {
            path: path.to_owned(),
            source,
        })?;
    if !(OLDEST_SAMPLES_FILE_VERSION..=SAMPLES_FILE_VERSION)
        .contains(&metadata.samples_file_version)
    {
        return Err(not_ours(format!(
            "it has samples_file_version {}, this gauntlet reads versions \
             {OLDEST_SAMPLES_FILE_VERSION} to {SAMPLES_FILE_VERSION}",
            metadata.samples_file_version
        )));
    }
    let rows = reader
        .get_row_iter(None)
        .map_err(|source| SamplesFileError::Parquet {
            path: path.to_owned(),
            source,
        })?;
    let mut records = Vec::new();
    for (row_number, row) in rows.enumerate() {
        let row = row.map_err(|source| SamplesFileError::Parquet {
            path: path.to_owned(),
            source,
        })?;
        let fields: Vec<&Field> = row.get_column_iter().map(|(_, field)| field).collect();
        let cell = RowReader {
            path,
            row: row_number,
            fields: &fields,
        };
        let run = RunId(cell.unsigned("run_id", 0)?);
        let kind_text = cell.text("kind", 3)?;
        let kind = RecordKind::parse(&kind_text)
            .ok_or_else(|| cell.bad("kind", format!("unknown record kind `{kind_text}`")))?;
        let index = cell.index("index", 7)?;
        let prediction = cell.unsigned("prediction", 9)?;
        let label = cell.unsigned("label", 8)?;
        let loss = || cell.float("loss", 12);
        let outcome = match kind {
            RecordKind::Clean => Outcome::Clean(CleanOutcome {
                label,
                prediction,
                loss: loss()?,
            }),
            RecordKind::Evasion => Outcome::Evasion(EvasionOutcome {
                prediction,
                robust: cell.boolean("robust", 11)?,
                loss: loss()?,
                norm: cell.float("perturbation_norm", 13)?,
                linf: cell.float("linf", 14)?,
                min_value: cell.float("min_value", 15)?,
                max_value: cell.float("max_value", 16)?,
                nan: cell.boolean("nan", 17)?,
                queries: cell.optional_unsigned("queries", 31)?,
                broken_at: cell.optional_float("broken_at", 32)?,
                broken_by: cell.optional_member("broken_by", 33)?,
            }),
            RecordKind::TriggerScan => {
                Outcome::Backdoor(BackdoorOutcome::TriggerScan(TriggerScanOutcome {
                    class: label,
                    anomaly_index: cell.optional_double("anomaly_index", 18)?,
                    mask_l1: cell.optional_double("mask_l1", 19)?,
                    flip_rate: cell.optional_double("flip_rate", 20)?,
                    mask_iou: cell.optional_double("mask_iou", 21)?,
                    flagged: cell.boolean("flagged", 22)?,
                }))
            }
            RecordKind::Strip => Outcome::Backdoor(BackdoorOutcome::Strip(StripOutcome {
                label,
                prediction,
                entropy: cell.double("entropy", 23)?,
                triggered: cell.boolean("triggered", 24)?,
                flagged: cell.boolean("flagged", 22)?,
            })),
            RecordKind::Poisoning => {
                let attack_prediction = match cell.field("attack_prediction", 27)? {
                    Field::Null => None,
                    _ => Some(cell.unsigned("attack_prediction", 27)?),
                };
                let attack_success = match cell.field("attack_success", 28)? {
                    Field::Null => None,
                    _ => Some(cell.boolean("attack_success", 28)?),
                };
                if attack_prediction.is_some() != attack_success.is_some() {
                    return Err(cell.bad(
                        "attack_success",
                        "is set without `attack_prediction`, or the other way round".to_string(),
                    ));
                }
                Outcome::Backdoor(BackdoorOutcome::Poisoning(PoisoningOutcome {
                    label,
                    prediction,
                    attack_prediction,
                    attack_success,
                }))
            }
            RecordKind::DataScan => Outcome::Backdoor(BackdoorOutcome::DataScan(DataScanOutcome {
                label,
                score: cell.double("score", 29)?,
                flagged: cell.boolean("flagged", 22)?,
                poisoned: cell.boolean("poisoned", 30)?,
            })),
            RecordKind::Detector => Outcome::Detector(DetectorOutcome {
                label,
                prediction,
                robust: cell.boolean("robust", 11)?,
                score: cell.double("score", 29)?,
                rule_rejected: match cell.field("flagged", 22)? {
                    Field::Null => None,
                    _ => Some(cell.boolean("flagged", 22)?),
                },
            }),
        };
        records.push(SampleRecord {
            run,
            index,
            outcome,
        });
    }
    Ok((metadata.plan, metadata.measurements, records))
}

/// Typed access to one row's cells, with errors naming the row and the column.
struct RowReader<'a> {
    path: &'a Path,
    row: usize,
    fields: &'a [&'a Field],
}

impl RowReader<'_> {
    fn bad(&self, column: &'static str, reason: String) -> SamplesFileError {
        SamplesFileError::BadRow {
            path: self.path.to_owned(),
            row: self.row,
            column,
            reason,
        }
    }

    fn field(&self, column: &'static str, position: usize) -> Result<&Field, SamplesFileError> {
        self.fields
            .get(position)
            .copied()
            .ok_or_else(|| self.bad(column, "missing".to_string()))
    }

    fn unsigned(&self, column: &'static str, position: usize) -> Result<u32, SamplesFileError> {
        match self.field(column, position)? {
            Field::UInt(value) => Ok(*value),
            Field::Int(value) => {
                u32::try_from(*value).map_err(|_| self.bad(column, format!("{value} is negative")))
            }
            other => Err(self.bad(column, format!("expected an unsigned integer, got {other}"))),
        }
    }

    fn index(&self, column: &'static str, position: usize) -> Result<u64, SamplesFileError> {
        match self.field(column, position)? {
            Field::ULong(value) => Ok(*value),
            Field::Long(value) => {
                u64::try_from(*value).map_err(|_| self.bad(column, format!("{value} is negative")))
            }
            other => Err(self.bad(column, format!("expected an unsigned integer, got {other}"))),
        }
    }

    fn float(&self, column: &'static str, position: usize) -> Result<f32, SamplesFileError> {
        match self.field(column, position)? {
            Field::Float(value) => Ok(*value),
            other => Err(self.bad(column, format!("expected a float, got {other}"))),
        }
    }

    /// A cell of a column that older versions lack: `None` when the column is absent or null.
    fn optional_unsigned(
        &self,
        column: &'static str,
        position: usize,
    ) -> Result<Option<u32>, SamplesFileError> {
        match self.fields.get(position) {
            None | Some(Field::Null) => Ok(None),
            Some(_) => self.unsigned(column, position).map(Some),
        }
    }

    /// As [`RowReader::optional_unsigned`], for a float.
    fn optional_float(
        &self,
        column: &'static str,
        position: usize,
    ) -> Result<Option<f32>, SamplesFileError> {
        match self.fields.get(position) {
            None | Some(Field::Null) => Ok(None),
            Some(_) => self.float(column, position).map(Some),
        }
    }

    /// A `standard` member's name, in a column that older versions lack: `None` when the
    /// column is absent or null, an error naming the row when it names no member.
    fn optional_member(
        &self,
        column: &'static str,
        position: usize,
    ) -> Result<Option<Member>, SamplesFileError> {
        match self.fields.get(position) {
            None | Some(Field::Null) => Ok(None),
            Some(_) => {
                let name = self.text(column, position)?;
                Member::from_name(&name).map(Some).ok_or_else(|| {
                    let names: Vec<&str> = Member::ALL.iter().map(|m| m.name()).collect();
                    self.bad(
                        column,
                        format!(
                            "`{name}` is not a member of `standard` ({})",
                            names.join(", ")
                        ),
                    )
                })
            }
        }
    }

    fn double(&self, column: &'static str, position: usize) -> Result<f64, SamplesFileError> {
        match self.field(column, position)? {
            Field::Double(value) => Ok(*value),
            other => Err(self.bad(column, format!("expected a double, got {other}"))),
        }
    }

    fn optional_double(
        &self,
        column: &'static str,
        position: usize,
    ) -> Result<Option<f64>, SamplesFileError> {
        match self.field(column, position)? {
            Field::Null => Ok(None),
            _ => self.double(column, position).map(Some),
        }
    }

    fn boolean(&self, column: &'static str, position: usize) -> Result<bool, SamplesFileError> {
        match self.field(column, position)? {
            Field::Bool(value) => Ok(*value),
            other => Err(self.bad(column, format!("expected a boolean, got {other}"))),
        }
    }

    fn text(&self, column: &'static str, position: usize) -> Result<String, SamplesFileError> {
        match self.field(column, position)? {
            Field::Str(value) => Ok(value.clone()),
            other => Err(self.bad(column, format!("expected a string, got {other}"))),
        }
    }
}

/// The registry name a backdoor run writes in the `attack` column.
fn backdoor_registry_name(run: &BackdoorRun) -> String {
    match run {
        BackdoorRun::TriggerScan { scan, .. }
        | BackdoorRun::Strip { scan, .. }
        | BackdoorRun::DataScan { scan, .. } => scan.clone(),
        BackdoorRun::Poisoning { poisoning, .. } => poisoning.clone(),
    }
}

/// The `label` column of a backdoor row: the class for a scan, else the true (or trained) label.
fn backdoor_label(outcome: &BackdoorOutcome) -> u32 {
    match outcome {
        BackdoorOutcome::TriggerScan(t) => t.class,
        BackdoorOutcome::Strip(s) => s.label,
        BackdoorOutcome::Poisoning(p) => p.label,
        BackdoorOutcome::DataScan(d) => d.label,
    }
}
