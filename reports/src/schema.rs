//! The results type. Keys are snake_case; bump [`SCHEMA_VERSION`] on any breaking change.

use serde::{Deserialize, Serialize};

/// Version of the results schema written into every `results.json`.
///
/// Version 5 (this one) adds `detectors`: each guardrail of the suite's `[[detector]]`
/// sections, scored on the clean inputs and on every attack@ε's adversarial inputs (detection at
/// fixed clean false-positive rates, ROC AUC and curve, robust accuracy with the guardrail),
/// non-adaptive and adaptive (`crate::detector`), `output_drift` and `probing`; and
/// `broken_by` in the `attacks` entries of the `standard` ensemble: how many samples each
/// member broke at that ε.
/// Version 4 added `minimal_norm`: each minimal-norm attack's one unbounded run
/// (quantiles of the smallest successful perturbation). Its robust accuracy at each ε of the
/// suite is an ordinary `attacks` entry (kind `minimal_norm`), derived from that one run.
/// Version 3 added `backdoor` (trigger scans, STRIP, poisoning sweeps, data-level
/// detectors; `crate::backdoor`) and the `max_anomaly_index` gate. Version 2 added `kernel_path`, `notices`, `samples_file`, and each attack's
/// declared `kind`, `needs` and validated `objective`; every figure in it is an aggregate of
/// the per-sample records (`samples.parquet`). Version-1 and -2 files still read and render:
/// the added keys are optional.
pub const SCHEMA_VERSION: u32 = 5;

/// The oldest results schema this build still reads and renders.
pub const OLDEST_READABLE_SCHEMA_VERSION: u32 = 1;

/// Everything one `gauntlet run` measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunReport {
    pub schema_version: u32,
    pub gauntlet_version: String,
    pub suite: SuiteInfo,
    pub seed: u64,
    /// `cpu`, `cuda:0`, …
    pub device: String,
    pub model: ModelInfo,
    pub dataset: DatasetInfo,
    pub clean: CleanResult,
    /// One entry per (attack, ε), in suite order and ascending ε.
    pub attacks: Vec<AttackResult>,
    /// The minimal-norm attacks' unbounded runs, one per attack label (schema 4; absent when
    /// the suite has none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub minimal_norm: Vec<MinimalNormResult>,
    /// Pointwise worst case over every attack of the suite at each (norm, ε): an example counts
    /// as broken if any attack breaks it.
    pub worst_case: Vec<WorstCaseResult>,
    pub sanity_checks: Vec<SanityCheck>,
    pub gates: Vec<GateVerdict>,
    /// A few adversarial examples for the report's gallery.
    pub examples: Vec<AdversarialExample>,
    pub timings: Timings,
    /// Whether the model file is what the suite says it is (hash, manifest, signature, scan).
    /// Absent in results written before provenance checks existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    /// Which kernels ran the model (schema 2; absent in version-1 files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_path: Option<KernelPathInfo>,
    /// What the user should know that is not a failure, e.g. why the native CPU kernels did
    /// not run (schema 2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<String>,
    /// The per-sample file every figure here aggregates, relative to this file (schema 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_file: Option<String>,
    /// Trigger scans, poisoning sweeps and data-level detectors (schema 3; absent when the
    /// suite has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backdoor: Option<crate::backdoor::BackdoorReport>,
    /// The guardrails of the suite's `[[detector]]` sections (schema 5; absent when the suite
    /// has none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detectors: Vec<crate::detector::DetectorResult>,
    /// Output monitoring: per attack@ε, the drift of the predicted-class distribution from
    /// clean to attacked inputs, and confidence histograms (schema 5; absent unless the suite
    /// has a `[[detector]]` or a drift gate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_drift: Vec<crate::detector::DriftResult>,
    /// A simulated black-box attacker's query stream against the query-similarity monitor
    /// (absent unless the suite has a `[probing]` section).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probing: Option<crate::probing::ProbingReport>,
    /// Every figure compared with an earlier run's (`gauntlet run --baseline`); absent when no
    /// baseline was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineComparison>,
}

/// This run against an earlier one: previous / now / change with an interval and a test, for
/// the clean accuracy, each attack at each ε and each worst case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineComparison {
    /// The baseline's results file, as given.
    pub path: String,
    pub suite: String,
    pub gauntlet_version: String,
    /// SHA-256 of the baseline's weights file.
    pub model_sha256: String,
    pub dataset: String,
    pub samples: usize,
    pub seed: u64,
    /// How a change is tested, in words (the interval and the test, and their level).
    pub method: String,
    /// One row per figure of either run, in this run's order, then what only the baseline had.
    pub rows: Vec<BaselineRow>,
    /// Why some figures may not compare like with like: another dataset, seed or sample count;
    /// an attack whose parameters changed.
    pub warnings: Vec<String>,
}

/// One figure, before and now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineRow {
    /// `clean`, `pgd@0.1` (attack label @ ε) or `worst_case[linf@0.1]`; relative gates name it.
    pub key: String,
    pub previous: Option<Proportion>,
    pub now: Option<Proportion>,
    /// Present when both runs have the figure.
    pub change: Option<ProportionChange>,
    pub verdict: ChangeVerdict,
    /// Why this row is not like for like (e.g. the attack's parameters differ), if it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// now − previous, with its 95% interval and a two-sided test of "no change".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProportionChange {
    /// now − previous, as a fraction (−0.031 is a drop of 3.1 points).
    pub delta: f64,
    /// Newcombe's hybrid score interval for the difference (95%).
    pub ci95_low: f64,
    pub ci95_high: f64,
    /// Two-sided p-value of the pooled two-proportion z-test.
    pub p_value: f64,
    /// Whether the interval excludes 0.
    pub significant: bool,
}

/// What happened to a figure between the runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeVerdict {
    /// Higher now, and the interval of the change excludes 0.
    Improved,
    /// Lower now, and the interval of the change excludes 0.
    Regressed,
    /// The interval of the change includes 0 (including no change at all).
    Unchanged,
    /// Only this run has it.
    New,
    /// Only the baseline has it.
    Removed,
    /// Both have it but they did not measure the same thing (the attack's parameters differ).
    Incomparable,
}

impl ChangeVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeVerdict::Improved => "improved",
            ChangeVerdict::Regressed => "regressed",
            ChangeVerdict::Unchanged => "unchanged",
            ChangeVerdict::New => "new",
            ChangeVerdict::Removed => "removed",
            ChangeVerdict::Incomparable => "incomparable",
        }
    }
}

/// Which kernels ran the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelPathInfo {
    /// `native` (gauntlet's CPU kernels) or `candle`.
    pub path: String,
    /// Why the native kernels did not run, when they did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What was verified about the model artifact before it was loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// `verified` (every pinned check passed), `unpinned` (the suite pins nothing), or
    /// `failed_allowed` (a check failed and the run went on under `--allow-unverified`).
    pub verdict: String,
    /// SHA-256 of the weights file, lowercase hex.
    pub weights_sha256: String,
    pub checks: Vec<ProvenanceCheck>,
    /// Fingerprint of the key that signed the model, when a signature was verified.
    pub signer: Option<String>,
    /// What the static scan of the model files found.
    pub findings: Vec<ProvenanceFinding>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenanceCheck {
    /// `sha256`, `manifest`, `signature` or `scan`.
    pub kind: String,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenanceFinding {
    pub severity: String,
    pub rule: String,
    /// File, member and offset, as one readable string.
    pub location: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteInfo {
    pub name: String,
    /// Path of the suite file, or `None` for the embedded default suite.
    pub path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    pub name: String,
    pub architecture: String,
    /// Weights file as given in the suite (`embedded:` prefix for bundled assets).
    pub path: String,
    /// SHA-256 of the weights file, lowercase hex.
    pub sha256: String,
    pub format: String,
    pub input_shape: Vec<usize>,
    pub num_classes: usize,
    pub parameters: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetInfo {
    pub name: String,
    pub path: String,
    pub format: String,
    /// Samples evaluated (after `limit`).
    pub samples: usize,
    pub class_names: Vec<String>,
}

/// A proportion with its 95% Wilson score interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proportion {
    pub value: f64,
    pub successes: usize,
    pub total: usize,
    pub ci95_low: f64,
    pub ci95_high: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassAccuracy {
    pub class: usize,
    pub name: String,
    pub accuracy: Proportion,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanResult {
    pub accuracy: Proportion,
    pub mean_loss: f64,
    pub per_class: Vec<ClassAccuracy>,
}

/// Summary statistics of per-sample perturbation norms, measured in the attack's norm.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerturbationStats {
    pub mean: f64,
    pub median: f64,
    pub max: f64,
    /// Largest per-coordinate change over all samples (‖δ‖∞), whatever the attack's norm.
    pub max_linf: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackResult {
    /// Unique label in this run, e.g. `pgd` or `pgd_l2`; gates refer to `label@epsilon`.
    pub label: String,
    /// Registry name, e.g. `pgd`.
    pub attack: String,
    /// `linf` or `l2`.
    pub norm: String,
    pub epsilon: f64,
    /// The attack's parameters as given in the suite (TOML values rendered as JSON).
    pub params: serde_json::Map<String, serde_json::Value>,
    /// `single_step`, `iterative` or `minimal_norm`, as the attack's registry entry declares
    /// (schema 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// What the attack needs from the model: `input_gradients`, `logits` or `labels` (schema 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs: Option<String>,
    /// The attack's validated objective, e.g. `untargeted cross_entropy` (schema 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<String>,
    pub robust_accuracy: Proportion,
    /// Fraction of the correctly classified inputs that the attack made misclassified.
    pub success_rate: Proportion,
    /// Mean per-sample loss (the attack's loss) at the adversarial inputs.
    pub mean_loss: f64,
    pub perturbation: PerturbationStats,
    pub per_class: Vec<ClassAccuracy>,
    pub seconds: f64,
    /// For the `standard` ensemble: how many samples each member broke, in the order the
    /// members run (each later member runs only on the samples the earlier ones left, so the
    /// counts add up to the samples the ensemble broke). Empty for every other attack, and
    /// for a `standard` run whose records do not say (per-sample files before version 4)
    /// (schema 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broken_by: Vec<MemberCredit>,
}

/// One member of an ensemble and the samples it broke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberCredit {
    /// The member's name: `apgd_ce`, `apgd_t`, `fab_t` or `square`.
    pub member: String,
    /// Samples correct when clean that this member was the first to break.
    pub broken: usize,
}

/// A minimal-norm attack's (DeepFool, CW-L2) one unbounded run: how large the smallest
/// successful perturbation is. Its robust accuracy at each ε is in [`RunReport::attacks`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinimalNormResult {
    /// The attack's label in the suite, as in its `attacks` entries.
    pub label: String,
    /// Registry name, e.g. `deepfool`.
    pub attack: String,
    /// `linf` or `l2`: the norm of the perturbation sizes below.
    pub norm: String,
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Of the correctly classified samples, the share the attack broke at some size.
    pub success_rate: Proportion,
    /// Quantiles of the smallest successful perturbation's norm over the broken, originally
    /// correct samples (empty when none was broken), at [`MINIMAL_NORM_QUANTILES`].
    pub quantiles: Vec<NormQuantile>,
    /// The median of the same, when any sample was broken.
    pub median: Option<f64>,
    /// The mean of the same, when any sample was broken.
    pub mean: Option<f64>,
    pub seconds: f64,
}

/// The quantiles a [`MinimalNormResult`] reports: 10, 25, 50, 75 and 90 %.
pub const MINIMAL_NORM_QUANTILES: [f64; 5] = [0.1, 0.25, 0.5, 0.75, 0.9];

/// One quantile of the minimal perturbation norm.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormQuantile {
    /// The level, in (0, 1).
    pub q: f64,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorstCaseResult {
    pub norm: String,
    pub epsilon: f64,
    /// Labels of the attacks that ran at this (norm, ε).
    pub attacks: Vec<String>,
    pub robust_accuracy: Proportion,
    pub per_class: Vec<ClassAccuracy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Pass,
    Warn,
    Fail,
}

/// A self-check of the measurement itself (monotone in ε, ε-ball respected, no gradient masking …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SanityCheck {
    /// Stable identifier, e.g. `monotone_in_epsilon`.
    pub name: String,
    pub status: CheckStatus,
    /// One human sentence saying what was checked and what was found.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateVerdict {
    /// `min_clean_accuracy`, `min_robust_accuracy[pgd@0.1]` or
    /// `max_robust_accuracy_drop[pgd@0.1]`.
    pub gate: String,
    pub threshold: f64,
    pub actual: f64,
    pub passed: bool,
    /// Which side of the threshold passes. Absent (`at_least`) for every absolute gate, so
    /// results written before relative gates existed read unchanged.
    #[serde(default, skip_serializing_if = "GateBound::is_at_least")]
    pub bound: GateBound,
    /// Why the gate could not be evaluated, when it could not (a relative gate whose attack the
    /// baseline lacks); such a gate fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Which side of a gate's threshold passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateBound {
    /// `actual ≥ threshold` passes: a minimum accuracy.
    #[default]
    AtLeast,
    /// `actual ≤ threshold` passes: a maximum drop against the baseline.
    AtMost,
    /// `actual ≤ threshold` passes, both plain numbers rather than fractions: the largest
    /// anomaly index a trigger scan may find.
    AtMostIndex,
    /// `actual ≥ threshold` passes, both plain numbers rather than fractions: the smallest
    /// drift of the predicted classes under attack an output monitor must see (schema 5).
    AtLeastValue,
}

impl GateBound {
    pub fn is_at_least(&self) -> bool {
        *self == GateBound::AtLeast
    }
}

impl GateVerdict {
    /// One sentence for a failed gate, the same in the terminal, JUnit and Markdown:
    /// `gate failed: min_clean_accuracy = 91.30% < 95.00% (short by 3.70 points)`.
    pub fn failure_message(&self) -> String {
        if let Some(detail) = &self.detail {
            return format!("gate failed: {}: {detail}", self.gate);
        }
        match self.bound {
            GateBound::AtLeast => format!(
                "gate failed: {} = {:.2}% < {:.2}% (short by {:.2} points)",
                self.gate,
                self.actual * 100.0,
                self.threshold * 100.0,
                (self.threshold - self.actual) * 100.0
            ),
            GateBound::AtMost => format!(
                "gate failed: {} = {:.2} points > {:.2} points (over by {:.2} points)",
                self.gate,
                self.actual * 100.0,
                self.threshold * 100.0,
                (self.actual - self.threshold) * 100.0
            ),
            GateBound::AtMostIndex => format!(
                "gate failed: {} = {:.2} > {:.2} (over by {:.2})",
                self.gate,
                self.actual,
                self.threshold,
                self.actual - self.threshold
            ),
            GateBound::AtLeastValue => format!(
                "gate failed: {} = {:.3} < {:.3} (short by {:.3})",
                self.gate,
                self.actual,
                self.threshold,
                self.threshold - self.actual
            ),
        }
    }

    /// `91.30% (threshold ≥ 95.00%)` or `3.10 points (threshold ≤ 2.00 points)`.
    pub fn actual_and_threshold(&self) -> String {
        match self.bound {
            GateBound::AtLeast => format!(
                "{:.2}% (threshold ≥ {:.2}%)",
                self.actual * 100.0,
                self.threshold * 100.0
            ),
            GateBound::AtMost => format!(
                "{:.2} points (threshold ≤ {:.2} points)",
                self.actual * 100.0,
                self.threshold * 100.0
            ),
            GateBound::AtMostIndex => {
                format!("{:.2} (threshold ≤ {:.2})", self.actual, self.threshold)
            }
            GateBound::AtLeastValue => {
                format!("{:.3} (threshold ≥ {:.3})", self.actual, self.threshold)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdversarialExample {
    /// Index of the sample in the evaluated dataset.
    pub index: usize,
    pub attack: String,
    pub epsilon: f64,
    pub true_label: usize,
    pub clean_prediction: usize,
    pub adversarial_prediction: usize,
    /// `[C, H, W]`.
    pub shape: Vec<usize>,
    /// Pixels in [0, 1], row-major C×H×W.
    pub original: Vec<f32>,
    pub adversarial: Vec<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timings {
    pub load_seconds: f64,
    pub clean_seconds: f64,
    pub attack_seconds: f64,
    pub total_seconds: f64,
}
