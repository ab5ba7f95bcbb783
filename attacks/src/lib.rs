//! Evasion attacks for gauntlet.
//!
//! Every attack implements [`Attack`]: it takes clean inputs in [0, 1] and returns adversarial
//! inputs of the same shape that stay inside the ε-ball of its [`ThreatModel`] *and* inside
//! [0, 1], exactly. All randomness comes from the caller's seeded [`ChaCha8Rng`], so the same
//! seed gives bit-identical results on CPU.
//!
//! Adding an attack is one new file in `src/evasion/` plus one line in the
//! `register_attacks!` list in `src/evasion/mod.rs`.
//!
//! - [`projection`]: the ε-ball ∩ [0, 1] projections every attack ends its steps with, and
//!   [`projection::perturbation_norms`] for reporting.
//! - [`objective`]: what the gradient attacks share (labels or targets, step direction,
//!   success), plus the batch checks behind every `perturb`.
//! - [`params`]: suite-table parsing whose errors name the key.
//! - [`attacks_markdown`]: `docs/attacks.md`, generated from [`ATTACKS`].

use candle_core::Tensor;
use gauntlet_models::Model;
pub use rand_chacha::ChaCha8Rng;

mod error;
pub mod evasion;
mod markdown;
pub mod objective;
pub mod params;
pub mod projection;
#[cfg(test)]
mod test_support;

pub use error::AttackError;
pub use evasion::ATTACKS;
pub use markdown::attacks_markdown;
pub use objective::TargetSelection;

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
    /// Adversarial inputs for `inputs` (shape `(batch, …)`, values in [0, 1]) with true `labels`
    /// (shape `(batch,)`, u32). The result has the inputs' shape, lies inside the ε-ball around
    /// each input and inside [0, 1]; `inputs` is not modified.
    fn perturb(
        &self,
        model: &dyn Model,
        inputs: &Tensor,
        labels: &Tensor,
        rng: &mut ChaCha8Rng,
    ) -> Result<Tensor, AttackError>;
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
