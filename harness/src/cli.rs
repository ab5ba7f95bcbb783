//! The command line: one clap-derived struct, one variant per subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use gauntlet_reports::OutputFormat;

pub use crate::progress::LogFormat;
use crate::shard::ShardArg;

const EXIT_CODES: &str = "\
Exit codes:
  0  it ran and every gate and sanity check passed
  1  it ran and a gate or sanity check failed (one line per failure on stderr)
  2  it could not run: bad input, unreadable file, usage error";

#[derive(Debug, Parser)]
#[command(
    name = "gauntlet",
    version,
    about = "Offline adversarial-robustness test harness: attack a model, score it, gate it, report it",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// How diagnostics go to stderr, errors included.
    pub fn log_format(&self) -> LogFormat {
        match &self.command {
            Command::Run(args) => args.log_format,
            Command::Merge(args) => args.log_format,
            _ => LogFormat::Text,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a suite (with no SUITE: the embedded default — bundled Fashion-MNIST test images,
    /// the bundled small CNN, FGSM and PGD at several ε)
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// Merge the shards of a sharded run (`gauntlet run --shard I/N`) into one run's results
    /// and report: the same numbers, verdicts and exit code as the run unsharded
    #[command(after_help = EXIT_CODES)]
    Merge(MergeArgs),
    /// Validate a suite as `run` would load it (provenance, model spec and weights, data, their
    /// cross-checks, the memory and work caps) and print its plan, memory and work estimates,
    /// without running any attack
    #[command(after_help = EXIT_CODES)]
    Check {
        /// Suite file (TOML)
        suite: PathBuf,
        /// Go on when a provenance check fails, as `run --allow-unverified` does
        #[arg(long)]
        allow_unverified: bool,
    },
    /// Train a built-in or sequential architecture with SGD or Adam (cross-entropy)
    #[command(after_help = EXIT_CODES)]
    Train(TrainArgs),
    /// Re-render reports from a results.json, or rebuild everything from a per-sample file
    #[command(after_help = EXIT_CODES)]
    Report {
        /// A results.json written by `gauntlet run` (schema 1 to 5), or its per-sample file
        /// (samples.parquet), whose records are aggregated again
        results: PathBuf,
        /// Output folder
        #[arg(long, default_value = "gauntlet-out")]
        out: PathBuf,
        /// Formats to write
        #[arg(long, value_delimiter = ',', default_value = "html,csv,junit,markdown")]
        format: Vec<OutputFormat>,
        /// Replace the renderings in an output folder that already holds a run (its
        /// results.json and samples.parquet are kept unless rewritten)
        #[arg(long)]
        overwrite: bool,
        /// Compare with an earlier run's results.json: previous / now / change with 95%
        /// intervals and a significance test, in every output
        #[arg(long, value_name = "PATH/results.json")]
        baseline: Option<PathBuf>,
    },
    /// Scan model files and folders without executing them: pickle opcodes, zip containers,
    /// safetensors and ONNX headers (0 clean, 1 findings at or above --fail-on, 2 unreadable)
    Scan {
        /// Files or folders (scanned recursively)
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: ScanFormat,
        /// Lowest severity that fails the scan: info, low, medium, high, critical
        #[arg(long, default_value_t = gauntlet_artifact::Severity::DEFAULT_FAIL_ON)]
        fail_on: gauntlet_artifact::Severity,
        /// Allow a pickle global the built-in allow-list does not know, e.g. your own model
        /// class (module.Name, or module:Qualified.Name); repeatable. Listed in the report;
        /// deny-listed globals stay critical
        #[arg(long = "allow", value_name = "MODULE.NAME")]
        allow: Vec<String>,
        /// The model's hub id (org/name): checked against well-known ids for typosquats and
        /// look-alike characters
        #[arg(long, value_name = "ORG/NAME")]
        model_id: Option<String>,
        /// More well-known ids, one per line (`#` comments), on top of the built-in list
        #[arg(long, value_name = "FILE")]
        known_model_ids: Option<PathBuf>,
    },
    /// SHA-256 manifests of a model folder
    #[command(subcommand)]
    Manifest(ManifestCommand),
    /// Sign a model folder (OpenSSF model-signing v1.0 format, elliptic-curve key)
    Sign {
        /// The model folder
        dir: PathBuf,
        /// Private key (PEM: EC P-256/P-384, or ed25519)
        #[arg(long)]
        private_key: PathBuf,
        /// Where to write the signature (default: DIR.sig beside the folder)
        #[arg(long)]
        signature: Option<PathBuf>,
    },
    /// Verify a model folder's signature (0 valid, 1 invalid, 2 unreadable)
    Verify {
        /// The model folder
        dir: PathBuf,
        /// The signature bundle (default: DIR.sig beside the folder)
        #[arg(long)]
        signature: Option<PathBuf>,
        /// Public key (PEM)
        #[arg(long)]
        public_key: PathBuf,
        /// Print the verdict as JSON (every problem with its kind) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Write a CycloneDX 1.6 bill of materials of a suite's models and datasets (JSON, stdout)
    Bom {
        /// Suite file (TOML)
        suite: PathBuf,
    },
    /// Describe a model file without running it: format (by content), hashes, input shape,
    /// classes, parameter count, kernel path, and every stored tensor (name, dtype, shape).
    /// Safetensors and PyTorch checkpoints need --spec to load; ONNX carries its own graph
    #[command(after_help = EXIT_CODES)]
    Inspect {
        /// safetensors, PyTorch checkpoint (.pt/.pth/.bin) or ONNX file
        model: PathBuf,
        /// The gauntlet spec the weights belong to
        #[arg(long)]
        spec: Option<PathBuf>,
        /// A TorchScript model's per-sample input shape, e.g. `1,28,28` (it declares none)
        #[arg(long, value_delimiter = ',')]
        input_shape: Option<Vec<usize>>,
    },
    /// Print a gauntlet spec (TOML) for a model file: the spec an ONNX graph compiles to, or a
    /// starting spec from a state dict's tensor names and shapes
    #[command(after_help = EXIT_CODES)]
    Spec {
        /// The model file (ONNX, safetensors or PyTorch checkpoint)
        #[arg(long)]
        from: PathBuf,
    },
    /// List what this build can do
    List {
        #[arg(value_enum)]
        what: ListWhat,
        /// Markdown instead of plain text
        #[arg(long)]
        markdown: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScanFormat {
    Text,
    Json,
    Sarif,
}

#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Write a manifest of every file under DIR (sorted relative paths, sizes, SHA-256)
    Create {
        dir: PathBuf,
        /// Where to write it (default: DIR/gauntlet-manifest.json)
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Report modified, missing and unexpected files (exit 1 on any)
    Verify {
        dir: PathBuf,
        /// The manifest (default: DIR/gauntlet-manifest.json)
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ListWhat {
    Attacks,
    /// Guardrail detectors (library only: no suite section yet, docs/guardrails.md)
    Detectors,
    Formats,
    Rules,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Suite file (TOML); omit to run the embedded default suite
    pub suite: Option<PathBuf>,
    /// cpu, cuda or cuda:N (overrides the suite)
    #[arg(long)]
    pub device: Option<String>,
    /// Random seed (overrides the suite)
    #[arg(long)]
    pub seed: Option<u64>,
    /// Evaluate only the first N samples (overrides the suite)
    #[arg(long)]
    pub limit: Option<usize>,
    /// Batch size (overrides the suite)
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Output folder (overrides the suite; default gauntlet-out)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Output formats, comma-separated: json,csv,html,junit,markdown (overrides the suite)
    #[arg(long, value_delimiter = ',')]
    pub format: Option<Vec<OutputFormat>>,
    /// Replace an earlier run in the output folder (the whole folder is replaced, never mixed;
    /// a folder holding files gauntlet did not write is never touched)
    #[arg(long)]
    pub overwrite: bool,
    /// No progress bar
    #[arg(long, short)]
    pub quiet: bool,
    /// Run even when the model's pinned SHA-256, manifest or signature does not verify
    /// (the report records the failure)
    #[arg(long)]
    pub allow_unverified: bool,
    /// Run the model on candle's ops and autograd instead of gauntlet's native CPU kernels
    /// (slower; for cross-checking a result)
    #[arg(long)]
    pub candle_kernels: bool,
    /// Compare with an earlier run's results.json (previous / now / change with 95% intervals
    /// and a significance test) and evaluate the suite's relative gates
    /// (`max_robust_accuracy_drop` …) against it
    #[arg(long, value_name = "PATH/results.json", conflicts_with = "no_baseline")]
    pub baseline: Option<PathBuf>,
    /// Run a suite that has relative gates without a baseline (e.g. the first night); its
    /// relative gates are then not evaluated
    #[arg(long)]
    pub no_baseline: bool,
    /// Progress and diagnostics on stderr: text (a bar on a terminal) or json (JSON Lines)
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Run only shard I of N (0 ≤ I < N) of the plan's work units, into its own --out folder
    /// (a journal and shard.json, no report); `auto/N` takes I from $JOB_COMPLETION_INDEX
    /// (Kubernetes Indexed Jobs). Join the shards with `gauntlet merge`
    #[arg(long, value_name = "I/N")]
    pub shard: Option<ShardArg>,
    /// Samples per work unit: the grain of shards and of the journal a killed run resumes from
    #[arg(long, default_value_t = crate::shard::DEFAULT_UNIT_SAMPLES)]
    pub unit_samples: usize,
    /// Discard the journal of an interrupted run in the output folder and start over (a run
    /// started again with the same command otherwise resumes from it)
    #[arg(long)]
    pub restart: bool,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shards' output folders (each holding shard.json), e.g. `shard-*/`
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
    /// Output folder
    #[arg(long, default_value = "gauntlet-out")]
    pub out: PathBuf,
    /// Output formats (default: the suite's, as recorded by the shards)
    #[arg(long, value_delimiter = ',')]
    pub format: Option<Vec<OutputFormat>>,
    /// Replace an earlier run in the output folder (as `run --overwrite`)
    #[arg(long)]
    pub overwrite: bool,
    /// Compare with an earlier run's results.json and evaluate the suite's relative gates,
    /// as `run --baseline`
    #[arg(long, value_name = "PATH/results.json", conflicts_with = "no_baseline")]
    pub baseline: Option<PathBuf>,
    /// Merge a suite that has relative gates without a baseline
    #[arg(long)]
    pub no_baseline: bool,
    /// Diagnostics on stderr: text or json (JSON Lines)
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OptimizerName {
    Sgd,
    Adam,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Architecture spec (TOML)
    #[arg(long)]
    pub spec: PathBuf,
    /// Training data format: idx, npy, cifar10 or image_folder
    #[arg(long, default_value = "idx")]
    pub data_format: String,
    /// Images file (idx, npy)
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Labels file (idx, npy)
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Data folder or file (cifar10, image_folder)
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// Train on the first N samples only
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Refuse a model and batch size whose estimated peak memory (weights, gradients, optimiser
    /// state, activations, data; docs/limits.md) exceeds this many MiB
    #[arg(long, default_value_t = gauntlet_models::spec::cost::DEFAULT_MAX_MEMORY_MIB)]
    pub max_memory_mib: u64,
    #[arg(long, value_enum, default_value = "adam")]
    pub optimizer: OptimizerName,
    #[arg(long, default_value_t = 1e-3)]
    pub learning_rate: f64,
    /// SGD momentum
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Where to write the weights (safetensors)
    #[arg(long)]
    pub out: PathBuf,
    /// Held-out data to report accuracy on after training: IDX images file (with --test-labels)
    #[arg(long)]
    pub test_images: Option<PathBuf>,
    #[arg(long)]
    pub test_labels: Option<PathBuf>,
    /// No progress output
    #[arg(long, short)]
    pub quiet: bool,
}
