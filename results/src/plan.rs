//! The run plan: everything about a run that is not a per-sample record — what was run (each
//! run's declared kind, norm, ε and objective), on what model and data, with which gates — plus
//! what the runner measured outside the records (timings, the gallery, notices).
//!
//! It travels inside the per-sample file, so `gauntlet report --samples` can rebuild
//! `results.json` from that file alone.

use gauntlet_attacks::{AttackKind, BudgetSemantics, ModelAccess, Norm};
use gauntlet_reports::{
    AdversarialExample, DatasetInfo, KernelPathInfo, ModelInfo, Provenance, SuiteInfo,
};
use serde::{Deserialize, Serialize};

/// Version of the plan's JSON layout inside the per-sample file.
pub const PLAN_VERSION: u32 = 1;

/// What a run is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunPurpose {
    /// The clean pass: every sample, no attack.
    Clean,
    /// An attack of the suite at one ε: every sample; reported and gated.
    Attack,
    /// The attack at ε = 0 on the first samples: its outputs must equal its inputs.
    ZeroBudgetProbe,
    /// An unbounded (L∞ ε = 1) gradient attack on the first samples: accuracy must fall to
    /// chance, otherwise gradients are broken or masked.
    FullBudgetProbe,
    /// A trigger scan, a poisoning sweep's model or a data-level detector; what it is is the
    /// run's `backdoor` ([`crate::backdoor::BackdoorRun`]).
    Backdoor,
    /// The one unbounded run (ε = +∞) of a minimal-norm attack
    /// ([`BudgetSemantics::MinimalNorm`]): every sample, each record holding the smallest
    /// successful perturbation found (or the clean input where none was). The attack's
    /// [`RunPurpose::Attack`] runs at the suite's ε's have no records of their own: the
    /// aggregation derives them from this run ([`crate::Aligned::new`]).
    MinimalNormSearch,
    /// A guardrail detector's scores of one run's inputs (the clean ones, or an attack's
    /// adversarial ones); what it is is the run's `detector`
    /// ([`crate::detector::DetectorRun`]).
    Detector,
}

/// One run of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedRun {
    /// `clean`, an attack's label (`pgd`, `pgd_l2`), or a probe's name.
    pub label: String,
    pub purpose: RunPurpose,
    /// The attack, for the evasion purposes (attack and probes).
    pub attack: Option<AttackRun>,
    /// What a [`RunPurpose::Backdoor`] run is (absent in plans written before backdoor runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backdoor: Option<crate::backdoor::BackdoorRun>,
    /// What a [`RunPurpose::Detector`] run is (absent in plans written before detector runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<crate::detector::DetectorRun>,
}

impl PlannedRun {
    /// The clean pass.
    pub fn clean() -> Self {
        Self {
            label: "clean".to_string(),
            purpose: RunPurpose::Clean,
            attack: None,
            backdoor: None,
            detector: None,
        }
    }
}

/// An attack at one budget, as declared by its registry entry and validated by the attack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackRun {
    /// Registry name, e.g. `pgd`.
    pub name: String,
    pub kind: AttackKind,
    pub needs: ModelAccess,
    pub budget: BudgetSemantics,
    pub norm: Norm,
    /// The budget; `+∞` (written `"unbounded"` in JSON, which has no infinity) for a
    /// [`RunPurpose::MinimalNormSearch`] run.
    #[serde(with = "epsilon_json")]
    pub epsilon: f32,
    /// The attack's validated objective in words (`untargeted cross_entropy`): attacks are
    /// compared with each other only when it agrees.
    pub objective: String,
    /// The suite's parameters for the attack, as JSON.
    pub params: serde_json::Map<String, serde_json::Value>,
}

/// The name of the anomaly-index gate, in suites and verdicts.
pub const MAX_ANOMALY_INDEX_GATE: &str = "max_anomaly_index";

/// A gate on one number of the results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Gate {
    CleanAccuracy {
        threshold: f64,
    },
    RobustAccuracy {
        label: String,
        epsilon: f32,
        threshold: f64,
    },
    WorstCaseAccuracy {
        norm: Norm,
        epsilon: f32,
        threshold: f64,
    },
    /// No class of the model under test flagged by a trigger scan with an anomaly index above
    /// `threshold` (an upper bound, unlike the accuracy gates).
    MaxAnomalyIndex {
        threshold: f64,
    },
    /// An output monitor must see the attack: the drift of the predicted-class distribution
    /// from the clean inputs to attack `label` at `epsilon` is at least `threshold` (a plain
    /// number: the population stability index, or the KL divergence in nats).
    MinPredictionDrift {
        label: String,
        epsilon: f32,
        measure: DriftMeasure,
        threshold: f64,
    },
}

/// How a drift of the predicted classes is measured (`crate::drift`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftMeasure {
    /// The population stability index.
    Psi,
    /// `KL(attacked ‖ clean)`, in nats.
    Kl,
}

impl DriftMeasure {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftMeasure::Psi => "psi",
            DriftMeasure::Kl => "kl",
        }
    }
}

impl Gate {
    /// The gate as written in the suite file.
    pub fn name(&self) -> String {
        match self {
            Gate::CleanAccuracy { .. } => "min_clean_accuracy".to_string(),
            Gate::RobustAccuracy { label, epsilon, .. } => {
                format!("min_robust_accuracy[{label}@{epsilon}]")
            }
            Gate::WorstCaseAccuracy { norm, epsilon, .. } => {
                format!("min_worst_case_accuracy[{norm}@{epsilon}]")
            }
            Gate::MaxAnomalyIndex { .. } => MAX_ANOMALY_INDEX_GATE.to_string(),
            Gate::MinPredictionDrift {
                label,
                epsilon,
                measure,
                ..
            } => format!("min_prediction_{}[{label}@{epsilon}]", measure.as_str()),
        }
    }

    pub fn threshold(&self) -> f64 {
        match self {
            Gate::CleanAccuracy { threshold }
            | Gate::RobustAccuracy { threshold, .. }
            | Gate::WorstCaseAccuracy { threshold, .. }
            | Gate::MaxAnomalyIndex { threshold }
            | Gate::MinPredictionDrift { threshold, .. } => *threshold,
        }
    }
}

/// Everything the aggregation needs besides the records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunPlan {
    pub plan_version: u32,
    pub gauntlet_version: String,
    pub suite: SuiteInfo,
    pub seed: u64,
    pub device: String,
    pub model: ModelInfo,
    pub dataset: DatasetInfo,
    /// Class names used in reports, one per model output.
    pub class_names: Vec<String>,
    /// Classes present in the whole dataset (before `limit`).
    pub classes_in_dataset: usize,
    /// Every run; a record's [`crate::RunId`] indexes this list.
    pub runs: Vec<PlannedRun>,
    pub gates: Vec<Gate>,
    /// Whether a failed sanity check fails the run.
    pub fail_on_sanity: bool,
    /// Which kernels ran the model, and why not the native ones when they did not.
    pub kernel_path: KernelPathInfo,
    pub provenance: Option<Provenance>,
}

/// What the runner measured outside the per-sample records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunMeasurements {
    pub load_seconds: f64,
    pub total_seconds: f64,
    /// Wall time of each run, by position in [`RunPlan::runs`].
    pub run_seconds: Vec<f64>,
    /// A few adversarial examples for the report's gallery.
    pub examples: Vec<AdversarialExample>,
    /// Things the user should know that are not failures (e.g. the model ran on candle's
    /// kernels instead of the native CPU path, and why).
    pub notices: Vec<String>,
    /// Recovered triggers and a clean and a triggered input, for the report's backdoor section.
    #[serde(default, skip_serializing_if = "backdoor_images_empty")]
    pub backdoor_images: gauntlet_reports::backdoor::BackdoorImages,
    /// The poisoned training indices of every model a sweep trained (the ground truth).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub poisoned_indices: Vec<crate::backdoor::PoisonedIndices>,
    /// A second forward pass on the first clean batch, for the determinism check (absent in
    /// files written before it, and in shards that do not hold sample 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_forward: Option<RepeatForward>,
    /// The input gradients of the cross-entropy at the first clean batch, for the
    /// vanishing-gradient check (absent when the suite runs no gradient attack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_gradients: Option<CleanGradients>,
    /// The probing simulation (`[probing]`), from the whole-model unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probing: Option<gauntlet_reports::probing::ProbingReport>,
}

/// The model run a second time on the clean inputs of samples `start..start + n` (the first
/// clean batch), compared with the clean pass's logits on the very same batch. A deterministic
/// model gives the same logits; a randomised one (random resizing, noise, dropout left on)
/// does not, and an attack that follows one random draw per step sees masked gradients.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepeatForward {
    /// Global index of the first probed sample.
    pub start: u64,
    /// Per sample: the L2 distance between the two passes' logits, each scaled to unit L2
    /// norm (AutoAttack's measure, so the scale of the logits does not matter). NaN when
    /// either pass gave a non-finite logit.
    pub logit_distance: Vec<f32>,
    /// Per sample: the prediction of the second pass.
    pub prediction: Vec<u32>,
}

/// Per-sample sizes of the cross-entropy's input gradient at the clean inputs of samples
/// `start..start + n` (the first clean batch), against the true labels.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanGradients {
    /// Global index of the first probed sample.
    pub start: u64,
    /// Per sample: ‖∇ₓ loss‖₁ (NaN when the gradient has a NaN).
    pub l1: Vec<f32>,
}

fn backdoor_images_empty(images: &gauntlet_reports::backdoor::BackdoorImages) -> bool {
    images.triggers.is_empty() && images.inputs.is_empty()
}

/// An ε in JSON: a number, or `"unbounded"` for `+∞` (JSON has no infinity, and serde_json
/// would write `null`, which does not read back).
mod epsilon_json {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    const UNBOUNDED: &str = "unbounded";

    pub fn serialize<S: Serializer>(epsilon: &f32, serializer: S) -> Result<S::Ok, S::Error> {
        if *epsilon == f32::INFINITY {
            UNBOUNDED.serialize(serializer)
        } else {
            epsilon.serialize(serializer)
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Epsilon {
        Number(f32),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f32, D::Error> {
        match Epsilon::deserialize(deserializer)? {
            Epsilon::Number(value) => Ok(value),
            Epsilon::Text(text) if text == UNBOUNDED => Ok(f32::INFINITY),
            Epsilon::Text(text) => Err(serde::de::Error::custom(format!(
                "ε must be a number or \"{UNBOUNDED}\", got \"{text}\""
            ))),
        }
    }
}
