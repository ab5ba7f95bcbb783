//! The most gauntlet reads of each kind of file.
//!
//! Each limit is far above any real file of its kind and far below what would exhaust a CI
//! runner's memory, so hitting one means a wrong path, a device or a deliberately hostile file.
//! The limit counts the bytes actually read (or, for gzip, the bytes decompressed), never the
//! size in the file's metadata. docs/limits.md lists them for users.

/// A bound on one kind of file: at most `bytes` bytes, and `what` names the kind in errors
/// (`"a suite file"`: "… is larger than 4 MiB, the limit for a suite file").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub bytes: u64,
    pub what: &'static str,
}

impl Limit {
    pub const fn new(bytes: u64, what: &'static str) -> Self {
        Self { bytes, what }
    }
}

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// A suite file (TOML). Real suites are a few KiB.
pub const SUITE: Limit = Limit::new(4 * MIB, "a suite file");

/// A model spec (TOML). Even a long `sequential` spec is a few KiB.
pub const MODEL_SPEC: Limit = Limit::new(4 * MIB, "a model spec");

/// Model weights (safetensors), read whole before parsing. 4 GiB is a billion f32 parameters,
/// far past what gauntlet's CPU attacks run in reasonable time.
pub const WEIGHTS: Limit = Limit::new(4 * GIB, "model weights");

/// A dataset file (IDX, NPY, CIFAR-10 batch) as stored, possibly gzipped. The full CIFAR-10
/// training set is 150 MiB and MNIST's 47 MiB.
pub const DATA: Limit = Limit::new(4 * GIB, "a dataset file");

/// A dataset file once gunzipped; the bound on what a gzip bomb can cost.
pub const DATA_DECOMPRESSED: Limit = Limit::new(4 * GIB, "a decompressed dataset file");

/// One image of an image folder (PNG or JPEG), as stored. Its pixel count is bounded
/// separately, from its header, before decoding (gauntlet-datasets' `MAX_IMAGE_SIDE`).
pub const IMAGE: Limit = Limit::new(256 * MIB, "an image file");

/// A small text file beside data (`batches.meta.txt`).
pub const DATA_METADATA: Limit = Limit::new(MIB, "a dataset metadata file");

/// A `results.json` given to `gauntlet report`. A run's results are tens of KiB plus the
/// gallery, whose examples are bounded by gauntlet-reports' `MAX_EXAMPLE_VALUES`.
pub const RESULTS_JSON: Limit = Limit::new(256 * MIB, "a results.json");

/// A SHA-256 manifest: about 150 bytes per listed file, so this allows several hundred
/// thousand files.
pub const MANIFEST: Limit = Limit::new(64 * MIB, "a manifest");

/// A PEM public or private key; real ones are under 4 KiB.
pub const KEY: Limit = Limit::new(64 * KIB, "a key file");

/// A list of known model ids, one per line.
pub const KNOWN_IDS: Limit = Limit::new(4 * MIB, "a list of known model ids");

/// A run's journal (`OUT/journal/journal.jsonl`): about 150 bytes per finished work unit, so
/// room for millions of units.
pub const JOURNAL: Limit = Limit::new(GIB, "a run journal");

/// A shard's manifest (`shard.json`): the same per unit as a journal.
pub const SHARD_MANIFEST: Limit = Limit::new(256 * MIB, "a shard manifest");

/// A work unit's file in a journal (a per-sample file of one unit), hashed before it is read;
/// the same bound as a whole run's `samples.parquet`.
pub const UNIT_FILE: Limit = Limit::new(4 * GIB, "a work unit's file");
