//! Evasion attacks for gauntlet.
//!
//! Every attack implements [`Attack`]: it takes clean inputs in [0, 1] and returns adversarial
//! inputs of the same shape that stay inside the ε-ball of its [`ThreatModel`] *and* inside
//! [0, 1], exactly. All randomness comes from the caller's [`SampleRandomness`]: one generator
//! per sample keyed by its global index, so the same seed gives bit-identical results on CPU
//! whatever the batch size or the subset.
//!
//! Adding an attack is one new file in `src/evasion/` plus one line in the
//! `register_attacks!` list in `src/evasion/mod.rs`.
//!
//! - [`projection`]: the ε-ball ∩ [0, 1] projections every attack ends its steps with, and
//!   [`projection::perturbation_norms`] for reporting.
//! - [`objective`]: what the gradient attacks share (labels or targets, step direction,
//!   success), plus the batch checks behind every `perturb`.
//! - [`params`]: suite-table parsing whose errors name the key.
//! - [`randomness`]: the per-sample generators.
//! - [`attacks_markdown`]: `docs/attacks.md`, generated from [`ATTACKS`].
//! - [`poisoning`]: poisonings of a training set (BadNets, blended trigger, label flipping)
//!   behind the [`poisoning::Poisoning`] trait and the [`poisoning::POISONINGS`] registry.
//! - [`trigger_scan`]: backdoor scans of a trained model (Neural Cleanse, STRIP, a
//!   known-trigger sweep) behind [`trigger_scan::TriggerScan`] and [`trigger_scan::SCANS`].
//! - [`detector`]: guardrails (a z-score input validator, softmax confidence, prediction
//!   entropy, Mahalanobis on penultimate features) behind [`detector::Detector`] and
//!   [`detector::DETECTORS`], with [`detector::metrics`] (detection at a false-positive rate,
//!   ROC AUC, ROC curve).
//! - [`backdoor`]: what those two share: image sets as plain pixels, triggers, the MAD test.
//!
//! Each registry entry declares what the attack is ([`AttackKind`]), what it needs from the
//! model ([`ModelAccess`]) and what its budget means ([`BudgetSemantics`]); the harness plans,
//! checks and aggregates from these declarations, never from attack names.

use candle_core::Tensor;
use gauntlet_models::{Loss, Model};
pub use rand_chacha::ChaCha8Rng;

pub mod backdoor;
pub mod cost;
pub mod data_scan;
pub mod detector;
mod error;
pub mod evasion;
mod markdown;
pub mod objective;
pub mod params;
pub mod poisoning;
pub mod projection;
pub mod randomness;
#[cfg(test)]
mod test_support;
pub mod trigger_scan;

pub use cost::Passes;
pub use error::AttackError;
pub use evasion::ATTACKS;
pub use markdown::attacks_markdown;
pub use objective::TargetSelection;
pub use randomness::{SampleRandomness, Stream};

/// The norm an attack's perturbation budget is measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    Linf,
    L2,
}

impl std::fmt::Display for Norm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Norm::Linf => "linf",
            Norm::L2 => "l2",
        })
    }
}

/// What the adversary may do: perturb each input by at most `epsilon` in `norm`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThreatModel {
    pub norm: Norm,
    pub epsilon: f32,
}

/// An evasion attack.
pub trait Attack: Send + Sync {
    /// The registry name, e.g. `pgd`.
    fn name(&self) -> &'static str;
    /// The norm and budget every output respects.
    fn threat(&self) -> ThreatModel;
    /// What the attack optimises, validated: attacks are compared with each other (an
    /// iterative attack against a single-step one) only when their objectives agree.
    fn objective(&self) -> AttackObjective;
    /// The most model passes `perturb` makes per sample with these parameters (forward and
    /// backward, including the forward of every gradient step and of target selection). The
    /// harness sums these into a suite's work estimate and refuses suites past `max_passes`
    /// before running; an attack that stops early may make fewer.
    fn passes_per_sample(&self) -> Passes;
    /// Adversarial inputs for `inputs` (shape `(batch, …)`, values in [0, 1]) with true `labels`
    /// (shape `(batch,)`, u32). The result has the inputs' shape, lies inside the ε-ball around
    /// each input and inside [0, 1]; `inputs` is not modified. Sample `i` draws its random
    /// numbers only from `randomness`'s generator `i` (which has one per sample), so its result
    /// does not depend on the other samples of the batch.
    fn perturb(
        &self,
        model: &dyn Model,
        inputs: &Tensor,
        labels: &Tensor,
        randomness: &SampleRandomness,
    ) -> Result<Tensor, AttackError>;

    /// [`Attack::perturb`] plus what the attack measured about each sample on the way
    /// (queries spent, when it was broken), for the per-sample records. The adversarial
    /// inputs are exactly `perturb`'s. The default reports nothing beyond them.
    fn perturb_traced(
        &self,
        model: &dyn Model,
        inputs: &Tensor,
        labels: &Tensor,
        randomness: &SampleRandomness,
    ) -> Result<Traced, AttackError> {
        let adversarial = self.perturb(model, inputs, labels, randomness)?;
        let samples = adversarial.dims().first().copied().unwrap_or(0);
        Ok(Traced {
            adversarial,
            traces: vec![SampleTrace::default(); samples],
        })
    }
}

/// What [`Attack::perturb_traced`] returns: the adversarial inputs and one trace per sample.
#[derive(Debug, Clone)]
pub struct Traced {
    pub adversarial: Tensor,
    /// One per sample, in batch order.
    pub traces: Vec<SampleTrace>,
}

/// What an attack measured about one sample besides its adversarial input. `None` where the
/// attack does not measure it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SampleTrace {
    /// Model queries (images sent to the model for this sample): what a black-box attack's
    /// cost is counted in.
    pub queries: Option<u32>,
    /// For an iterative attack, how far through its iterations (steps × restarts, counted in
    /// the order they run, as a share in [0, 1]) it was when it first broke the sample: 0 on
    /// the clean input or the first random start, 1 at the very last step. `None` for a
    /// sample it did not break. Samples broken late mean more steps or restarts would likely
    /// break more (the `attack_converged` sanity check).
    pub broken_at: Option<f32>,
    /// For the `standard` ensemble: the member that broke the sample (the first to, since each
    /// later member runs only on what the earlier ones left). `None` for a sample no member
    /// broke or that was misclassified already, and for every other attack.
    pub broken_by: Option<evasion::standard::Member>,
}

/// An attack's validated objective: which loss it follows, and whether toward a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttackObjective {
    pub loss: Loss,
    /// `None` for an untargeted attack.
    pub target: Option<TargetSelection>,
}

impl std::fmt::Display for AttackObjective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let loss = match self.loss {
            Loss::CrossEntropy => "cross_entropy",
            Loss::CwMargin => "cw_margin",
            Loss::Dlr => "dlr",
            Loss::DlrTargeted => "dlr_targeted",
        };
        match self.target {
            None => write!(f, "untargeted {loss}"),
            Some(TargetSelection::Random) => write!(f, "targeted (random) {loss}"),
            Some(TargetSelection::LeastLikely) => write!(f, "targeted (least likely) {loss}"),
            Some(TargetSelection::Class(class)) => write!(f, "targeted (class {class}) {loss}"),
        }
    }
}

/// What an attack is, as the sanity checks and the planner need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttackKind {
    /// One gradient step (FGSM): robust accuracy is not monotone in ε even in theory, since a
    /// longer step can overshoot.
    SingleStep,
    /// Many steps inside the ε-ball (PGD, APGD, Square): expected to be at least as strong as a
    /// single step with the same objective, and monotone in ε.
    Iterative,
    /// Searches for the smallest successful perturbation (CW, DeepFool, FAB): one run answers
    /// every ε.
    MinimalNorm,
}

impl std::fmt::Display for AttackKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttackKind::SingleStep => "single_step",
            AttackKind::Iterative => "iterative",
            AttackKind::MinimalNorm => "minimal_norm",
        })
    }
}

/// What an attack needs from the model. Ordered from most to least access: a model that
/// provides input gradients serves every attack.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ModelAccess {
    /// White box: the gradient of a loss with respect to the input.
    InputGradients,
    /// Score-based black box: logits (or probabilities) only.
    Logits,
    /// Decision-based black box: the predicted label only.
    Labels,
}

impl std::fmt::Display for ModelAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelAccess::InputGradients => "input gradients",
            ModelAccess::Logits => "logits",
            ModelAccess::Labels => "labels",
        })
    }
}

/// What the suite's `epsilons` mean for an attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetSemantics {
    /// One run per ε; every output lies inside the ε-ball (checked per sample).
    Bounded,
    /// One unbounded run; each sample's smallest successful norm is compared with every ε.
    MinimalNorm,
}

/// One registry entry: how to build an attack from a suite file's parameters.
pub struct AttackEntry {
    /// Key in suite files and reports.
    pub name: &'static str,
    /// One line for `gauntlet list attacks`.
    pub summary: &'static str,
    /// Paper citation.
    pub reference: &'static str,
    /// Every key the attack accepts, with its default, for `docs/attacks.md` and
    /// `gauntlet list attacks --markdown`. A test checks this list against the attack's `Params`.
    pub parameters: &'static [ParameterDoc],
    /// What kind of attack this is.
    pub kind: AttackKind,
    /// What it needs from the model; `gauntlet check` refuses a suite whose model cannot
    /// provide it.
    pub needs: ModelAccess,
    /// What its budget means.
    pub budget: BudgetSemantics,
    /// Parameter tables (TOML) the conformance tests run the attack with, besides the
    /// defaults: each norm, targeted and untargeted, each loss, restarts — every branch a user
    /// can select.
    pub conformance_variants: &'static [&'static str],
    /// Build the attack at `epsilon` from the suite's parameters (everything but `name` and
    /// `epsilons`). Unknown keys and invalid values are errors naming the key.
    pub build: BuildAttack,
}

/// How a registry entry builds its attack: `(params, epsilon) → attack`.
pub type BuildAttack =
    fn(params: &toml::Table, epsilon: f32) -> Result<Box<dyn Attack>, AttackError>;

/// One suite-file parameter of an attack, as documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParameterDoc {
    /// The key, as written in a suite file.
    pub name: &'static str,
    /// The default, as TOML or as a formula when it depends on other values.
    pub default: &'static str,
    /// One sentence: what it does.
    pub description: &'static str,
}

/// The registry entry called `name`, if any.
pub fn find_attack(name: &str) -> Option<&'static AttackEntry> {
    ATTACKS.iter().copied().find(|entry| entry.name == name)
}
