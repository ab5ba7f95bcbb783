//! Turning a suite file's `[[attack]]` table into an attack's typed `Params`.
//!
//! Each attack derives `Deserialize` with `deny_unknown_fields` and `default` on one `Params`
//! struct, so a typo is an error and never a silently ignored key. [`parse_params`] makes every
//! error name the key it is about, which serde alone does not do for unknown fields.

use serde::de::DeserializeOwned;

use crate::{AttackError, ParameterDoc};

/// Documentation of the `norm` key shared by the gradient attacks.
pub const NORM: ParameterDoc = ParameterDoc {
    name: "norm",
    default: "\"linf\"",
    description: "The norm ε is measured in: `\"linf\"` or `\"l2\"`.",
};

/// Documentation of the `loss` key shared by the gradient attacks.
pub const LOSS: ParameterDoc = ParameterDoc {
    name: "loss",
    default: "\"cross_entropy\"",
    description: "The loss whose input gradient is followed: `\"cross_entropy\"`, \
                  `\"cw_margin\"` (Carlini–Wagner margin on the logits) or `\"dlr\"` \
                  (Difference of Logits Ratio, Croce & Hein 2020: invariant to shifting and \
                  rescaling the logits; its targeted form with `targeted = true`).",
};

/// Documentation of the `targeted` key shared by the gradient attacks.
pub const TARGETED: ParameterDoc = ParameterDoc {
    name: "targeted",
    default: "false",
    description: "If true, descend the loss toward a target class instead of ascending it \
                  away from the true class; success means predicting the target.",
};

/// Documentation of the `target` key shared by the gradient attacks.
pub const TARGET: ParameterDoc = ParameterDoc {
    name: "target",
    default: "\"random\"",
    description: "Only with `targeted = true`: `\"random\"` (uniform over the classes other \
                  than the true one, drawn from the seeded generator), `\"least_likely\"` \
                  (the lowest clean logit other than the true class) or a class index.",
};

/// Parse `table` into `P`, naming the offending key in every error.
///
/// Each key is first deserialised on its own (all `Params` fields have defaults), so an
/// unknown key or a value of the wrong type is reported against that key; then the whole
/// table is deserialised.
pub fn parse_params<P: DeserializeOwned>(table: &toml::Table) -> Result<P, AttackError> {
    for (key, value) in table {
        let mut single = toml::Table::new();
        single.insert(key.clone(), value.clone());
        if let Err(error) = single.try_into::<P>() {
            return Err(AttackError::invalid_parameter(key, error.message()));
        }
    }
    table
        .clone()
        .try_into::<P>()
        .map_err(|error| AttackError::invalid_parameter("parameters", error.message()))
}

/// Check a budget: finite and ≥ 0.
pub fn check_epsilon(epsilon: f32) -> Result<(), AttackError> {
    if epsilon.is_finite() && epsilon >= 0.0 {
        Ok(())
    } else {
        Err(AttackError::invalid_parameter(
            "epsilon",
            format!("ε must be a finite number ≥ 0, got {epsilon}"),
        ))
    }
}

/// The conformance variants of an attack that takes the common objective keys (`norm`, `loss`,
/// `targeted`, `target`): every combination of them, followed by the attack's own extra
/// variants. Expands to a `&'static [&'static str]` for [`crate::AttackEntry::conformance_variants`].
#[macro_export]
macro_rules! objective_conformance_variants {
    ($($extra:expr),* $(,)?) => {
        &[
            "norm = \"linf\"\nloss = \"cross_entropy\"",
            "norm = \"linf\"\nloss = \"cross_entropy\"\ntargeted = true",
            "norm = \"linf\"\nloss = \"cross_entropy\"\ntargeted = true\ntarget = \"least_likely\"",
            "norm = \"linf\"\nloss = \"cross_entropy\"\ntargeted = true\ntarget = 2",
            "norm = \"linf\"\nloss = \"cw_margin\"",
            "norm = \"linf\"\nloss = \"cw_margin\"\ntargeted = true",
            "norm = \"linf\"\nloss = \"cw_margin\"\ntargeted = true\ntarget = \"least_likely\"",
            "norm = \"linf\"\nloss = \"cw_margin\"\ntargeted = true\ntarget = 2",
            "norm = \"l2\"\nloss = \"cross_entropy\"",
            "norm = \"l2\"\nloss = \"cross_entropy\"\ntargeted = true",
            "norm = \"l2\"\nloss = \"cross_entropy\"\ntargeted = true\ntarget = \"least_likely\"",
            "norm = \"l2\"\nloss = \"cross_entropy\"\ntargeted = true\ntarget = 2",
            "norm = \"l2\"\nloss = \"cw_margin\"",
            "norm = \"l2\"\nloss = \"cw_margin\"\ntargeted = true",
            "norm = \"l2\"\nloss = \"cw_margin\"\ntargeted = true\ntarget = \"least_likely\"",
            "norm = \"l2\"\nloss = \"cw_margin\"\ntargeted = true\ntarget = 2",
            "norm = \"linf\"\nloss = \"dlr\"",
            "norm = \"linf\"\nloss = \"dlr\"\ntargeted = true",
            "norm = \"l2\"\nloss = \"dlr\"",
            "norm = \"l2\"\nloss = \"dlr\"\ntargeted = true\ntarget = \"least_likely\"",
            $($extra),*
        ]
    };
}
