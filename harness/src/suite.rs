//! Suite files: what to test, against what, and what counts as passing.
//!
//! Parsing has two phases. [`SuiteSpec`] is the raw serde view of the TOML (every table has
//! `deny_unknown_fields`, so a typo is an error, never a silent default). [`Suite`] is the
//! validated plan: paths resolved against the suite file's folder, every attack built through
//! the registry at every ε, gates cross-checked against the attacks that exist.
//! `gauntlet check` then loads model and data as `run` does and estimates memory and work
//! (`budget`), but runs no attack.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use gauntlet_attacks::{find_attack, Attack, AttackEntry, ModelAccess, Norm, ATTACKS};
use gauntlet_datasets::DatasetFormat;
use gauntlet_reports::OutputFormat;
pub use gauntlet_results::Gate;
use serde::Deserialize;

/// The suite `gauntlet run` executes when given no file: the bundled model and data.
pub const DEFAULT_SUITE: &str = include_str!("default_suite.toml");

/// The only suite-file version this build understands.
pub const SUITE_VERSION: u32 = 1;

/// Prefix of model and dataset paths that refer to assets compiled into the binary.
pub const EMBEDDED_PREFIX: &str = "embedded:";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteSpec {
    pub version: u32,
    pub name: String,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_device")]
    pub device: String,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// The peak memory a run may be estimated to need, in MiB (docs/limits.md).
    #[serde(default = "default_max_memory_mib")]
    pub max_memory_mib: u64,
    /// The most model passes (forward plus backward, summed over samples and runs) a run may
    /// plan.
    #[serde(default = "default_max_passes")]
    pub max_passes: u64,
    pub model: ModelSection,
    pub dataset: DatasetSection,
    #[serde(rename = "attack", default)]
    pub attacks: Vec<AttackSection>,
    #[serde(default)]
    pub gate: GateSection,
    #[serde(default)]
    pub report: ReportSection,
    #[serde(default)]
    pub sanity: SanitySection,
    /// Backdoor sections (`crate::backdoor`): poisoning sweeps, trigger scans, data scans.
    #[serde(rename = "poisoning", default)]
    pub poisonings: Vec<crate::backdoor::PoisoningSection>,
    #[serde(rename = "trigger_scan", default)]
    pub trigger_scans: Vec<crate::backdoor::TriggerScanSection>,
    #[serde(rename = "data_scan", default)]
    pub data_scans: Vec<crate::backdoor::DataScanSection>,
    /// Guardrails (`crate::detector`): input validators and output monitors scored against
    /// the attacks.
    #[serde(rename = "detector", default)]
    pub detectors: Vec<crate::detector::DetectorSection>,
    /// A black-box attacker's query stream against a query-similarity monitor
    /// (`crate::probing`).
    pub probing: Option<crate::probing::ProbingSection>,
}

fn default_device() -> String {
    "cpu".to_string()
}

fn default_batch_size() -> usize {
    128
}

fn default_max_memory_mib() -> u64 {
    crate::budget::Limits::default().max_memory_mib
}

fn default_max_passes() -> u64 {
    crate::budget::Limits::default().max_passes
}

/// The model under test: an architecture spec plus safetensors weights.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Architecture spec file (TOML), relative to the suite file. Omitted for an ONNX model,
    /// which carries its own graph (docs/models.md).
    #[serde(default)]
    pub spec: Option<String>,
    /// Weights, relative to the suite file: safetensors or a PyTorch checkpoint (with `spec`),
    /// or an ONNX model or TorchScript archive (without); detected by content, not by extension.
    pub weights: String,
    /// Per-sample input shape (`[channels, height, width]` or `[features]`) of a TorchScript
    /// model, which does not declare one; other formats declare theirs, and a different value
    /// here is refused.
    pub input_shape: Option<Vec<usize>>,
    /// Expected SHA-256 of the weights file; checked before loading.
    pub sha256: Option<String>,
    /// A `gauntlet manifest create` manifest of the model's folder; verified before loading.
    pub manifest: Option<String>,
    /// A model-signing bundle over the model's folder (the weights file's folder); verified
    /// with `public_key` before loading.
    pub signature: Option<String>,
    /// PEM public key that must have made `signature`.
    pub public_key: Option<String>,
    /// Pickle globals the team trusts on top of the scanner's allow-list (`module.Name`, or
    /// `module:Qualified.Name` for nested classes), as `gauntlet scan --allow` takes them. They
    /// are listed in the report's provenance findings; deny-listed globals stay critical.
    #[serde(default)]
    pub allow_globals: Vec<String>,
    /// The model's hub id (`org/name`), checked against well-known ids for typosquats and
    /// look-alike characters before loading.
    pub id: Option<String>,
    /// More well-known model ids (a file, one per line), on top of the built-in list.
    pub known_ids: Option<String>,
}

/// The evaluation data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSection {
    pub format: DatasetFormat,
    /// Folder or file (CIFAR-10 batches, image folders); unused by idx/npy.
    pub path: Option<String>,
    /// Images file (idx, npy).
    pub images: Option<String>,
    /// Labels file (idx, npy).
    pub labels: Option<String>,
    /// Evaluate only the first `limit` samples.
    pub limit: Option<usize>,
    /// Override the class names the data or model provides.
    pub class_names: Option<Vec<String>>,
}

/// One `[[attack]]` table. Unknown keys are not rejected here but passed on: the attack's own
/// parameter type rejects any it does not know (serde cannot combine `deny_unknown_fields`
/// with `flatten`).
#[derive(Debug, Clone, Deserialize)]
pub struct AttackSection {
    /// Registry name (`gauntlet list attacks`).
    pub name: String,
    /// Name in reports and gates; defaults to `name`, plus `_l2` for an L2 attack (unless the
    /// name already ends in `_l2`, as `cw_l2`).
    pub label: Option<String>,
    pub epsilons: Vec<f32>,
    /// Everything else goes to the attack's own parameters.
    #[serde(flatten)]
    pub params: toml::Table,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSection {
    pub min_clean_accuracy: Option<f64>,
    /// `"label@epsilon" = threshold`, e.g. `"pgd@0.1" = 0.6`.
    #[serde(default)]
    pub min_robust_accuracy: BTreeMap<String, f64>,
    /// `"norm@epsilon" = threshold` for the worst case over all attacks, e.g. `"linf@0.1" = 0.5`.
    #[serde(default)]
    pub min_worst_case_accuracy: BTreeMap<String, f64>,
    /// Whether a failed sanity check fails the run (exit 1). Default true: a number that failed
    /// its own self-check is not one to ship on.
    #[serde(default = "default_true")]
    pub fail_on_sanity: bool,
    /// Fail the run when a trigger scan of the model under test flags a class with an anomaly
    /// index above this; 2.0 (the Neural Cleanse paper's threshold) when such a scan exists.
    pub max_anomaly_index: Option<f64>,
    /// Output monitoring (docs/guardrails.md): `"label@epsilon" = threshold`, the smallest
    /// drift of the predicted-class distribution from clean to attacked inputs a monitor must
    /// see — the population stability index, or `KL(attacked ‖ clean)` in nats.
    #[serde(default)]
    pub min_prediction_psi: BTreeMap<String, f64>,
    #[serde(default)]
    pub min_prediction_kl: BTreeMap<String, f64>,
    /// Relative gates against `--baseline` (crate::baseline): the largest allowed drop of the
    /// clean accuracy, of robust accuracy (a number for every attack@ε, or a `"label@ε"`
    /// table) and of the worst case (a number, or a `"norm@ε"` table).
    pub max_clean_accuracy_drop: Option<f64>,
    pub max_robust_accuracy_drop: Option<toml::Value>,
    pub max_worst_case_accuracy_drop: Option<toml::Value>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSection {
    #[serde(default = "default_formats")]
    pub formats: Vec<OutputFormat>,
    #[serde(default = "default_out")]
    pub out: String,
    /// Adversarial examples shown in the report's gallery.
    #[serde(default = "default_examples")]
    pub examples: usize,
}

impl Default for ReportSection {
    fn default() -> Self {
        Self {
            formats: default_formats(),
            out: default_out(),
            examples: default_examples(),
        }
    }
}

fn default_formats() -> Vec<OutputFormat> {
    OutputFormat::ALL.to_vec()
}

fn default_out() -> String {
    "gauntlet-out".to_string()
}

fn default_examples() -> usize {
    8
}

/// The self-checks of the measurement.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SanitySection {
    /// Run an unbounded (ε = 1, L∞) PGD on a few samples: accuracy must fall to ≤ 1/classes,
    /// otherwise the gradients are broken or masked.
    #[serde(default = "default_true")]
    pub full_budget: bool,
    /// Samples the full-budget attack runs on.
    #[serde(default = "default_full_budget_samples")]
    pub full_budget_samples: usize,
    /// PGD steps of the full-budget attack.
    #[serde(default = "default_full_budget_steps")]
    pub full_budget_steps: u32,
}

impl Default for SanitySection {
    fn default() -> Self {
        Self {
            full_budget: true,
            full_budget_samples: default_full_budget_samples(),
            full_budget_steps: default_full_budget_steps(),
        }
    }
}

fn default_full_budget_samples() -> usize {
    128
}

fn default_full_budget_steps() -> u32 {
    20
}

/// Where a model or dataset file lives: on disk, or compiled into the binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Embedded(String),
}

impl Source {
    fn resolve(raw: &str, base: &Path) -> Self {
        match raw.strip_prefix(EMBEDDED_PREFIX) {
            Some(name) => Source::Embedded(name.to_string()),
            None => Source::File(base.join(raw)),
        }
    }

    /// How the source is shown in reports.
    pub fn display(&self) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Embedded(name) => format!("{EMBEDDED_PREFIX}{name}"),
        }
    }
}

/// One attack of the plan at one ε, built through the registry.
pub struct PlannedAttack {
    pub label: String,
    /// The registry entry: what the attack is, needs and means by its budget.
    pub entry: &'static AttackEntry,
    pub epsilon: f32,
    pub params: toml::Table,
    pub attack: Box<dyn Attack>,
}

/// What a suite's model can give an attack, known before it is loaded: a gauntlet spec plus
/// safetensors runs on candle or the native kernels, both with input gradients. Formats
/// without gradients (a black-box endpoint, some exported graphs) will declare less here, and
/// `gauntlet check` refuses a suite whose attacks need more than the model provides.
pub fn model_access(_model: &ModelSection) -> ModelAccess {
    ModelAccess::InputGradients
}

/// The validated plan of a run.
pub struct Suite {
    pub name: String,
    /// The suite file, or `None` for the embedded default.
    pub path: Option<PathBuf>,
    pub seed: u64,
    pub device: String,
    pub batch_size: usize,
    /// `max_memory_mib` and `max_passes`.
    pub limits: crate::budget::Limits,
    pub model_spec: Source,
    pub model_weights: Source,
    /// `model.input_shape` (a TorchScript model's per-sample input shape).
    pub model_input_shape: Option<Vec<usize>>,
    pub model_sha256: Option<String>,
    pub model_manifest: Option<PathBuf>,
    /// Signature bundle and the public key it must verify with.
    pub model_signature: Option<(PathBuf, PathBuf)>,
    /// `model.allow_globals`, parsed into `(module, name)` pairs.
    pub model_allow_globals: Vec<(String, String)>,
    /// `model.id` and `model.known_ids` (resolved against the suite's folder).
    pub model_id: Option<String>,
    pub model_known_ids: Option<PathBuf>,
    pub dataset: DatasetSection,
    pub dataset_sources: DatasetSources,
    pub attacks: Vec<PlannedAttack>,
    pub gates: Vec<Gate>,
    /// Gates on the change against `--baseline` (`max_robust_accuracy_drop` …).
    pub relative_gates: Vec<gauntlet_results::baseline::RelativeGate>,
    pub fail_on_sanity: bool,
    /// Go on when a provenance check fails (`--allow-unverified`).
    pub allow_unverified: bool,
    /// Run the model on candle's path instead of the native CPU kernels (`--candle-kernels`).
    pub candle_kernels: bool,
    pub report: ReportSection,
    pub sanity: SanitySection,
    /// The `[[poisoning]]`, `[[trigger_scan]]` and `[[data_scan]]` sections, validated.
    pub backdoor: crate::backdoor::BackdoorPlan,
    /// The `[[detector]]` sections, validated.
    pub detectors: crate::detector::DetectorPlan,
    pub probing: Option<crate::probing::PlannedProbing>,
}

/// The dataset's files, resolved.
#[derive(Debug, Clone)]
pub struct DatasetSources {
    pub path: Option<Source>,
    pub images: Option<Source>,
    pub labels: Option<Source>,
}

/// Command-line overrides of suite settings.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub seed: Option<u64>,
    pub device: Option<String>,
    pub limit: Option<usize>,
    pub batch_size: Option<usize>,
    pub out: Option<PathBuf>,
    pub formats: Option<Vec<OutputFormat>>,
    pub allow_unverified: bool,
    pub candle_kernels: bool,
}

impl Suite {
    /// Read, parse and validate a suite file.
    pub fn from_file(path: &Path, overrides: &Overrides) -> Result<Self> {
        let text = gauntlet_files::read_to_string_bounded(path, gauntlet_files::limits::SUITE)?;
        let base = path.parent().unwrap_or(Path::new("."));
        if toml::from_str::<toml::Table>(&text).is_ok_and(|table| crate::matrix::is_matrix(&table))
        {
            bail!(
                "`{}` is a matrix suite (several models or datasets): `gauntlet run` and \
                 `gauntlet check` take it; this command takes a suite with one `[model]` and one \
                 `[dataset]`",
                path.display()
            );
        }
        Self::from_toml(&text, Some(path), base, overrides)
            .with_context(|| format!("invalid suite file `{}`", path.display()))
    }

    /// Validate a suite given as a TOML table: one cell of a matrix suite (`crate::matrix`).
    pub(crate) fn from_table(
        table: toml::Table,
        path: Option<&Path>,
        base: &Path,
        overrides: &Overrides,
    ) -> Result<Self> {
        let spec: SuiteSpec = toml::Value::Table(table).try_into()?;
        Self::validate(spec, path, base, overrides)
    }

    /// The embedded default suite.
    pub fn embedded_default(overrides: &Overrides) -> Result<Self> {
        Self::from_toml(DEFAULT_SUITE, None, Path::new("."), overrides)
            .context("the embedded default suite is invalid (a bug in this build)")
    }

    pub(crate) fn from_toml(
        text: &str,
        path: Option<&Path>,
        base: &Path,
        overrides: &Overrides,
    ) -> Result<Self> {
        let spec: SuiteSpec = toml::from_str(text)?;
        Self::validate(spec, path, base, overrides)
    }

    fn validate(
        mut spec: SuiteSpec,
        path: Option<&Path>,
        base: &Path,
        overrides: &Overrides,
    ) -> Result<Self> {
        if spec.version != SUITE_VERSION {
            bail!(
                "`version = {}` is not supported; this gauntlet reads suite version {SUITE_VERSION}",
                spec.version
            );
        }
        if let Some(seed) = overrides.seed {
            spec.seed = seed;
        }
        if let Some(device) = &overrides.device {
            spec.device = device.clone();
        }
        if let Some(limit) = overrides.limit {
            spec.dataset.limit = Some(limit);
        }
        if let Some(batch_size) = overrides.batch_size {
            spec.batch_size = batch_size;
        }
        if let Some(out) = &overrides.out {
            spec.report.out = out.display().to_string();
        }
        if let Some(formats) = &overrides.formats {
            spec.report.formats = formats.clone();
        }
        if spec.batch_size == 0 {
            bail!("`batch_size` must be ≥ 1, got 0");
        }
        if spec.max_memory_mib == 0 {
            bail!("`max_memory_mib` must be ≥ 1, got 0");
        }
        if spec.max_passes == 0 {
            bail!("`max_passes` must be ≥ 1, got 0");
        }
        if spec.dataset.limit == Some(0) {
            bail!("`dataset.limit` must be ≥ 1, got 0");
        }
        crate::device::parse_device(&spec.device)?;
        if spec.sanity.full_budget && spec.sanity.full_budget_samples == 0 {
            bail!(
                "`sanity.full_budget_samples` must be ≥ 1 while `sanity.full_budget` is on, got 0"
            );
        }
        if spec.sanity.full_budget_steps == 0 {
            bail!("`sanity.full_budget_steps` must be ≥ 1, got 0");
        }
        if let Some(shape) = &spec.model.input_shape {
            if shape.is_empty() || shape.contains(&0) {
                bail!("`model.input_shape` must list sizes ≥ 1, got {shape:?}");
            }
        }
        if let Some(sha) = &spec.model.sha256 {
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("`model.sha256` must be 64 hex digits, got `{sha}`");
            }
        }
        let dataset_sources = resolve_dataset(&spec.dataset, base)?;
        let model_signature = match (&spec.model.signature, &spec.model.public_key) {
            (Some(signature), Some(key)) => Some((base.join(signature), base.join(key))),
            (None, None) => None,
            (Some(_), None) => {
                bail!("`model.signature` needs `model.public_key` to verify it with")
            }
            (None, Some(_)) => {
                bail!("`model.public_key` is given but there is no `model.signature`")
            }
        };
        let model_allow_globals = spec
            .model
            .allow_globals
            .iter()
            .map(|entry| {
                gauntlet_artifact::pickle::parse_allowed(entry).with_context(|| {
                    format!(
                        "`model.allow_globals`: `{entry}` is not `module.Name` or `module:Qualified.Name`"
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let attacks = plan_attacks(&spec.attacks, model_access(&spec.model))?;
        let backdoor = crate::backdoor::BackdoorPlan::validate(
            &spec.poisonings,
            &spec.trigger_scans,
            &spec.data_scans,
            model_access(&spec.model),
        )?;
        let detectors =
            crate::detector::DetectorPlan::validate(&spec.detectors, base, resolve_dataset)?;
        let probing = spec
            .probing
            .as_ref()
            .map(crate::probing::PlannedProbing::validate)
            .transpose()?;
        let mut gates = plan_gates(&spec.gate, &attacks)?;
        match (spec.gate.max_anomaly_index, backdoor.scans_model_under_test()) {
            (Some(threshold), true) if threshold.is_finite() && threshold >= 0.0 => {
                gates.push(Gate::MaxAnomalyIndex { threshold })
            }
            (Some(threshold), true) => {
                bail!("gate `max_anomaly_index` must be a number ≥ 0, got {threshold}")
            }
            (Some(_), false) => bail!(
                "gate `max_anomaly_index` needs a `[[trigger_scan]]` of the model under test, and this suite has none"
            ),
            (None, true) => gates.push(Gate::MaxAnomalyIndex { threshold: 2.0 }),
            (None, false) => {}
        }
        let relative_gates = crate::baseline::plan_relative_gates(
            spec.gate.max_clean_accuracy_drop,
            spec.gate.max_robust_accuracy_drop.as_ref(),
            spec.gate.max_worst_case_accuracy_drop.as_ref(),
            &attacks,
        )?;
        Ok(Suite {
            name: spec.name,
            path: path.map(Path::to_path_buf),
            seed: spec.seed,
            device: spec.device,
            batch_size: spec.batch_size,
            limits: crate::budget::Limits {
                max_memory_mib: spec.max_memory_mib,
                max_passes: spec.max_passes,
            },
            // A self-describing model (ONNX, TorchScript) is its own spec.
            model_spec: Source::resolve(
                spec.model.spec.as_deref().unwrap_or(&spec.model.weights),
                base,
            ),
            model_weights: Source::resolve(&spec.model.weights, base),
            model_input_shape: spec.model.input_shape.clone(),
            model_sha256: spec.model.sha256.map(|s| s.to_ascii_lowercase()),
            model_manifest: spec.model.manifest.map(|m| base.join(m)),
            model_signature,
            model_allow_globals,
            model_id: spec.model.id.clone(),
            model_known_ids: spec.model.known_ids.as_ref().map(|k| base.join(k)),
            dataset: spec.dataset,
            dataset_sources,
            attacks,
            gates,
            relative_gates,
            fail_on_sanity: spec.gate.fail_on_sanity,
            allow_unverified: overrides.allow_unverified,
            candle_kernels: overrides.candle_kernels,
            report: spec.report,
            sanity: spec.sanity,
            backdoor,
            detectors,
            probing,
        })
    }

    /// A human-readable plan, printed by `gauntlet check`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let origin = match &self.path {
            Some(path) => path.display().to_string(),
            None => "embedded default".to_string(),
        };
        out.push_str(&format!("suite `{}` ({origin})\n", self.name));
        out.push_str(&format!(
            "  seed {}, device {}, batch size {}\n",
            self.seed, self.device, self.batch_size
        ));
        out.push_str(&format!(
            "  limits: max_memory_mib {}, max_passes {}\n",
            self.limits.max_memory_mib, self.limits.max_passes
        ));
        out.push_str(&format!(
            "  model: spec {}, weights {}{}\n",
            self.model_spec.display(),
            self.model_weights.display(),
            match &self.model_sha256 {
                Some(sha) => format!(", sha256 {sha}"),
                None => String::new(),
            }
        ));
        let files: Vec<String> = [
            &self.dataset_sources.path,
            &self.dataset_sources.images,
            &self.dataset_sources.labels,
        ]
        .into_iter()
        .flatten()
        .map(Source::display)
        .collect();
        out.push_str(&format!(
            "  dataset: {} {}{}\n",
            self.dataset.format,
            files.join(", "),
            match self.dataset.limit {
                Some(limit) => format!(", first {limit} samples"),
                None => String::new(),
            }
        ));
        for attack in &self.attacks {
            let threat = attack.attack.threat();
            out.push_str(&format!(
                "  attack {} ({}, {}, {} ε = {}, {}, needs {})\n",
                attack.label,
                attack.entry.name,
                attack.entry.kind,
                threat.norm,
                attack.epsilon,
                attack.attack.objective(),
                attack.entry.needs
            ));
        }
        out.push_str(&self.backdoor.describe());
        out.push_str(&self.detectors.describe());
        if let Some(probing) = &self.probing {
            out.push_str(&probing.describe());
        }
        for gate in &self.gates {
            let relation = match gate {
                Gate::MaxAnomalyIndex { .. } => "≤",
                _ => "≥",
            };
            out.push_str(&format!(
                "  gate {} {relation} {}\n",
                gate.name(),
                gate.threshold()
            ));
        }
        for gate in &self.relative_gates {
            out.push_str(&format!(
                "  gate {} (against --baseline)\n",
                gate.describe()
            ));
        }
        out
    }
}

fn resolve_dataset(dataset: &DatasetSection, base: &Path) -> Result<DatasetSources> {
    let resolve = |raw: &Option<String>| raw.as_deref().map(|r| Source::resolve(r, base));
    let sources = DatasetSources {
        path: resolve(&dataset.path),
        images: resolve(&dataset.images),
        labels: resolve(&dataset.labels),
    };
    let embedded = sources
        .path
        .as_ref()
        .is_some_and(|s| matches!(s, Source::Embedded(_)));
    let needs_files =
        matches!(dataset.format, DatasetFormat::Idx | DatasetFormat::Npy) && !embedded;
    if needs_files {
        if sources.images.is_none() || sources.labels.is_none() {
            bail!(
                "dataset format `{}` needs both `images` and `labels` files",
                dataset.format
            );
        }
    } else if sources.path.is_none() {
        bail!("dataset format `{}` needs `path`", dataset.format);
    }
    Ok(sources)
}

/// The error of a section that names no registry entry, one wording for every registry:
/// ``attack #2: unknown attack `pgdd`; known attacks: fgsm, pgd, …`` (`at` is the section's
/// table and 0-based index).
pub(crate) fn unknown_entry<'a>(
    at: (&str, usize),
    name: &str,
    (noun, plural): (&str, &str),
    known: impl Iterator<Item = &'a str>,
) -> String {
    let known: Vec<&str> = known.collect();
    format!(
        "{} #{}: unknown {noun} `{name}`; known {plural}: {}",
        at.0,
        at.1 + 1,
        known.join(", ")
    )
}

fn plan_attacks(sections: &[AttackSection], provided: ModelAccess) -> Result<Vec<PlannedAttack>> {
    let mut planned = Vec::new();
    let mut labels = BTreeSet::new();
    for (index, section) in sections.iter().enumerate() {
        let entry = find_attack(&section.name).with_context(|| {
            crate::suite::unknown_entry(
                ("attack", index),
                &section.name,
                ("attack", "attacks"),
                ATTACKS.iter().map(|entry| entry.name),
            )
        })?;
        if section.epsilons.is_empty() {
            bail!("attack `{}`: `epsilons` is empty", section.name);
        }
        // `ModelAccess` is ordered from most to least: a model serves every attack that needs
        // no more than it provides.
        if entry.needs < provided {
            bail!(
                "attack `{}` needs {} from the model, but this model provides only {}",
                section.name,
                entry.needs,
                provided
            );
        }
        let mut epsilons = section.epsilons.clone();
        if let Some(bad) = epsilons.iter().find(|e| !e.is_finite() || **e < 0.0) {
            bail!(
                "attack `{}`: every epsilon must be finite and ≥ 0, got {bad}",
                section.name
            );
        }
        epsilons.sort_by(f32::total_cmp);
        epsilons.dedup();
        let mut label = section.label.clone();
        for epsilon in epsilons {
            let attack = (entry.build)(&section.params, epsilon)
                .with_context(|| format!("attack `{}` at ε = {epsilon}", section.name))?;
            let label = label
                .get_or_insert_with(|| match attack.threat().norm {
                    Norm::Linf => section.name.clone(),
                    // `cw_l2` stays `cw_l2`, not `cw_l2_l2`.
                    Norm::L2 if section.name.ends_with("_l2") => section.name.clone(),
                    Norm::L2 => format!("{}_l2", section.name),
                })
                .clone();
            planned.push(PlannedAttack {
                label,
                entry,
                epsilon,
                params: section.params.clone(),
                attack,
            });
        }
        let label = label.unwrap_or_default();
        if !labels.insert(label.clone()) {
            bail!("two attacks share the label `{label}`; give one a distinct `label`");
        }
    }
    Ok(planned)
}

/// Split `"label@epsilon"` into its parts.
fn parse_gate_key(key: &str) -> Result<(String, f32)> {
    let (label, epsilon) = key
        .rsplit_once('@')
        .with_context(|| format!("gate key `{key}` must look like `name@epsilon`"))?;
    let epsilon: f32 = epsilon
        .parse()
        .with_context(|| format!("gate key `{key}`: `{epsilon}` is not a number"))?;
    Ok((label.to_string(), epsilon))
}

fn check_threshold(name: &str, threshold: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&threshold) {
        bail!("gate `{name}`: threshold must be a fraction in [0, 1], got {threshold}");
    }
    Ok(())
}

fn plan_gates(section: &GateSection, attacks: &[PlannedAttack]) -> Result<Vec<Gate>> {
    let mut gates = Vec::new();
    if let Some(threshold) = section.min_clean_accuracy {
        check_threshold("min_clean_accuracy", threshold)?;
        gates.push(Gate::CleanAccuracy { threshold });
    }
    for (key, &threshold) in &section.min_robust_accuracy {
        check_threshold(key, threshold)?;
        let (label, epsilon) = parse_gate_key(key)?;
        if !attacks
            .iter()
            .any(|a| a.label == label && a.epsilon == epsilon)
        {
            let available: Vec<String> = attacks
                .iter()
                .map(|a| format!("{}@{}", a.label, a.epsilon))
                .collect();
            bail!(
                "gate `min_robust_accuracy.\"{key}\"` names no attack of this suite; available: {}",
                available.join(", ")
            );
        }
        gates.push(Gate::RobustAccuracy {
            label,
            epsilon,
            threshold,
        });
    }
    for (key, &threshold) in &section.min_worst_case_accuracy {
        check_threshold(key, threshold)?;
        let (norm_name, epsilon) = parse_gate_key(key)?;
        let norm = match norm_name.as_str() {
            "linf" => Norm::Linf,
            "l2" => Norm::L2,
            other => bail!(
                "gate `min_worst_case_accuracy.\"{key}\"`: `{other}` is not a norm; use `linf` or `l2`"
            ),
        };
        if !attacks
            .iter()
            .any(|a| a.attack.threat().norm == norm && a.epsilon == epsilon)
        {
            bail!("gate `min_worst_case_accuracy.\"{key}\"`: no attack of this suite runs at {norm} ε = {epsilon}");
        }
        gates.push(Gate::WorstCaseAccuracy {
            norm,
            epsilon,
            threshold,
        });
    }
    for (name, measure, table) in [
        (
            "min_prediction_psi",
            gauntlet_results::DriftMeasure::Psi,
            &section.min_prediction_psi,
        ),
        (
            "min_prediction_kl",
            gauntlet_results::DriftMeasure::Kl,
            &section.min_prediction_kl,
        ),
    ] {
        for (key, &threshold) in table {
            if !(threshold.is_finite() && threshold >= 0.0) {
                bail!(
                    "gate `{name}.\"{key}\"`: threshold must be a finite number ≥ 0, got {threshold}"
                );
            }
            let (label, epsilon) = parse_gate_key(key)?;
            if !attacks
                .iter()
                .any(|a| a.label == label && a.epsilon == epsilon)
            {
                let available: Vec<String> = attacks
                    .iter()
                    .map(|a| format!("{}@{}", a.label, a.epsilon))
                    .collect();
                bail!(
                    "gate `{name}.\"{key}\"` names no attack of this suite; available: {}",
                    available.join(", ")
                );
            }
            gates.push(Gate::MinPredictionDrift {
                label,
                epsilon,
                measure,
                threshold,
            });
        }
    }
    Ok(gates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_suite_is_valid() {
        let suite = Suite::embedded_default(&Overrides::default()).unwrap();
        assert!(!suite.attacks.is_empty());
        assert!(suite.path.is_none());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let text = DEFAULT_SUITE.replace("seed = 0", "seed = 0\nsede = 1");
        let err = Suite::from_toml(&text, None, Path::new("."), &Overrides::default())
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("sede"), "{err:#}");
    }

    #[test]
    fn gate_on_a_missing_attack_is_an_error() {
        let text = format!("{DEFAULT_SUITE}\n[gate.min_robust_accuracy]\n\"nope@0.1\" = 0.5\n");
        let err = Suite::from_toml(&text, None, Path::new("."), &Overrides::default())
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("nope@0.1"), "{err:#}");
    }

    #[test]
    fn an_attack_needing_more_than_the_model_provides_is_refused_at_planning() {
        let spec: SuiteSpec = toml::from_str(DEFAULT_SUITE).unwrap();
        let err = plan_attacks(&spec.attacks, ModelAccess::Logits)
            .err()
            .unwrap();
        let message = format!("{err:#}");
        assert!(
            message.contains("needs input gradients") && message.contains("provides only logits"),
            "{message}"
        );
        assert!(plan_attacks(&spec.attacks, ModelAccess::InputGradients).is_ok());
    }

    #[test]
    fn allowed_globals_are_parsed_and_bad_ones_name_the_key() {
        let with = |list: &str| {
            DEFAULT_SUITE.replacen(
                "[model]\n",
                &format!("[model]\nallow_globals = {list}\n"),
                1,
            )
        };
        let suite = Suite::from_toml(
            &with(r#"["mypkg.layers.Block", "mypkg:Outer.Inner"]"#),
            None,
            Path::new("."),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            suite.model_allow_globals,
            vec![
                ("mypkg.layers".to_string(), "Block".to_string()),
                ("mypkg".to_string(), "Outer.Inner".to_string())
            ]
        );
        let err = Suite::from_toml(
            &with(r#"["nodot"]"#),
            None,
            Path::new("."),
            &Overrides::default(),
        )
        .err()
        .unwrap();
        let message = format!("{err:#}");
        assert!(
            message.contains("model.allow_globals") && message.contains("nodot"),
            "{message}"
        );
    }

    #[test]
    fn gate_keys_split_at_the_last_at_sign() {
        assert_eq!(parse_gate_key("pgd@0.1").unwrap(), ("pgd".to_string(), 0.1));
        assert!(parse_gate_key("pgd").is_err());
        assert!(parse_gate_key("pgd@x").is_err());
    }
}
