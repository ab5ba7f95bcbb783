//! Per-sample records: what one evaluation measured on one sample.
//!
//! A record is keyed by its run (an index into [`crate::RunPlan::runs`]) and by the sample's
//! *global* index — its index in the dataset, not its position in a batch, a subset or a shard
//! — so records from shards concatenate, and every figure of `results.json` is a function of
//! the records. A new kind of evaluation is a new [`Outcome`] variant (and its columns in the
//! per-sample file), not a new branch in the runner.

use serde::{Deserialize, Serialize};

/// Index of a run in [`crate::RunPlan::runs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub u32);

impl RunId {
    /// The position in [`crate::RunPlan::runs`].
    pub fn position(self) -> usize {
        self.0 as usize
    }
}

/// One sample's outcome in one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleRecord {
    pub run: RunId,
    /// The sample's index in the dataset (after `limit`, before any batching or sharding).
    pub index: u64,
    pub outcome: Outcome,
}

/// What was measured, by kind of evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// The model on the unmodified sample.
    Clean(CleanOutcome),
    /// An attack whose every output lies in an ε-ball, at one ε.
    Evasion(EvasionOutcome),
    /// A trigger scan, STRIP, poisoning or data-scan measurement (`crate::backdoor`).
    Backdoor(crate::backdoor::BackdoorOutcome),
    /// A guardrail's score of one input: clean, or an attack's adversarial input
    /// (`crate::detector`).
    Detector(DetectorOutcome),
}

impl Outcome {
    /// The name of the variant, as written in the per-sample file's `kind` column.
    pub fn kind(&self) -> RecordKind {
        match self {
            Outcome::Clean(_) => RecordKind::Clean,
            Outcome::Evasion(_) => RecordKind::Evasion,
            Outcome::Backdoor(backdoor) => backdoor.kind(),
            Outcome::Detector(_) => RecordKind::Detector,
        }
    }

    /// The predicted class (for a backdoor record, see `BackdoorOutcome::prediction`).
    pub fn prediction(&self) -> u32 {
        match self {
            Outcome::Clean(clean) => clean.prediction,
            Outcome::Evasion(evasion) => evasion.prediction,
            Outcome::Backdoor(backdoor) => backdoor.prediction(),
            Outcome::Detector(detector) => detector.prediction,
        }
    }
}

/// The per-sample file's `kind` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Clean,
    Evasion,
    TriggerScan,
    Strip,
    Poisoning,
    DataScan,
    Detector,
}

impl RecordKind {
    /// The value written to the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Clean => "clean",
            RecordKind::Evasion => "evasion",
            RecordKind::TriggerScan => "trigger_scan",
            RecordKind::Strip => "strip",
            RecordKind::Poisoning => "poisoning",
            RecordKind::DataScan => "data_scan",
            RecordKind::Detector => "detector",
        }
    }

    /// The kind named `text`, if any.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "clean" => Some(RecordKind::Clean),
            "evasion" => Some(RecordKind::Evasion),
            "trigger_scan" => Some(RecordKind::TriggerScan),
            "strip" => Some(RecordKind::Strip),
            "poisoning" => Some(RecordKind::Poisoning),
            "data_scan" => Some(RecordKind::DataScan),
            "detector" => Some(RecordKind::Detector),
            _ => None,
        }
    }
}

/// The clean pass on one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CleanOutcome {
    /// The true label.
    pub label: u32,
    pub prediction: u32,
    /// Cross-entropy of the logits against the label.
    pub loss: f32,
}

impl CleanOutcome {
    pub fn correct(&self) -> bool {
        self.prediction == self.label
    }
}

/// One bounded evasion attack at one ε on one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvasionOutcome {
    /// The prediction on the adversarial input.
    pub prediction: u32,
    /// Correct on the clean input *and* on the adversarial one (AutoAttack's convention).
    pub robust: bool,
    /// Cross-entropy at the adversarial input, against the true label.
    pub loss: f32,
    /// ‖x′ − x‖ in the attack's norm.
    pub norm: f32,
    /// ‖x′ − x‖∞, whatever the attack's norm.
    pub linf: f32,
    /// The smallest and largest value of the adversarial input (the box check).
    pub min_value: f32,
    pub max_value: f32,
    /// Whether the adversarial input contains a NaN.
    pub nan: bool,
    /// Model queries the attack spent on this sample, for attacks that count them (the
    /// black-box ones); `None` otherwise and in files written before version 3.
    pub queries: Option<u32>,
    /// For attacks that report it (APGD, APGD-T): the share of the attack's iterations done
    /// when it first broke this sample (`gauntlet_attacks::SampleTrace::broken_at`); `None`
    /// for a sample it did not break, for other attacks and in files before version 3.
    pub broken_at: Option<f32>,
    /// For the `standard` ensemble: the member that broke this sample
    /// (`gauntlet_attacks::SampleTrace::broken_by`); `None` otherwise and before version 4.
    pub broken_by: Option<gauntlet_attacks::evasion::standard::Member>,
}

/// A guardrail detector's score of one input of one scored run (`crate::detector`): the clean
/// input, or an attack's adversarial input at one ε.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorOutcome {
    /// The true label.
    pub label: u32,
    /// The model's prediction on the scored input.
    pub prediction: u32,
    /// For a clean input: classified correctly. For an adversarial input: correct before and
    /// after the attack (AutoAttack's convention, as [`EvasionOutcome::robust`]).
    pub robust: bool,
    /// The detector's score, higher = more suspicious.
    pub score: f64,
    /// Whether the detector's own rule rejects the input, when it has a rule (the z-score
    /// validator's `max |z| > threshold`).
    pub rule_rejected: Option<bool>,
}
