//! Fast gradient method: one gradient step of size ε.
//!
//! ## What it does
//!
//! Computes the input gradient `g` of the loss once and moves every input by ε in the
//! direction that increases the loss most to first order: `x′ = x + ε·sign(g)` under L∞ (the
//! fast gradient *sign* method) and `x′ = x + ε·g/‖g‖₂` under L2 (the fast gradient method).
//! A targeted attack steps against the gradient of the loss toward the target instead. The
//! result is projected onto the ε-ball and [0, 1]. A sample whose gradient is zero is not
//! moved. One forward and one backward pass per batch (two forwards for
//! `target = "least_likely"`).
//!
//! ## Threat model
//!
//! White-box: needs input gradients. Budget ε in L∞ or L2 around each clean input, inside
//! [0, 1]. At ε = 0 the output is the input, bit for bit.
//!
//! ## Parameters
//!
//! - `norm` (default `"linf"`): `"linf"` or `"l2"`.
//! - `loss` (default `"cross_entropy"`): `"cross_entropy"` or `"cw_margin"`.
//! - `targeted` (default `false`): descend the loss toward a target class.
//! - `target` (default `"random"`): `"random"`, `"least_likely"` or a class index; only with
//!   `targeted = true`.
//!
//! ## Known-answer tests
//!
//! For a linear classifier `z = Wx + b` without box clipping the first-order model is exact,
//! so FGSM is the worst case: an untargeted L∞ step on a binary model lowers the margin
//! `z_y − z_other` by exactly `ε·‖w_y − w_other‖₁`, and a targeted step toward class `j` with
//! the CW margin loss lowers `z_y − z_j` by `ε·‖w_y − w_j‖₁` (L∞) or `ε·‖w_y − w_j‖₂` (L2).
//!
//! ## Reference
//!
//! Goodfellow, Shlens, Szegedy. *Explaining and Harnessing Adversarial Examples.* ICLR 2015,
//! arXiv:1412.6572. The L2 variant is the fast gradient method of Kurakin, Goodfellow, Bengio,
//! *Adversarial Machine Learning at Scale*, ICLR 2017, arXiv:1611.01236.

use candle_core::Tensor;
use gauntlet_models::{Loss, Model};
use serde::Deserialize;

use crate::objective::{
    check_batch, check_randomness, steepest_ascent_direction, Objective, TargetSelection,
};
use crate::params::{self, check_epsilon, parse_params};
use crate::projection::{project, FeasibleSet};
use crate::{
    Attack, AttackEntry, AttackError, AttackKind, AttackObjective, BudgetSemantics, ModelAccess,
    Norm, Passes, SampleRandomness, ThreatModel,
};

/// The registry entry.
pub const ENTRY: AttackEntry = AttackEntry {
    name: "fgsm",
    summary: "Fast gradient (sign) method: one gradient step of size ε (L∞ sign step or L2 normalised step)",
    reference: "Goodfellow, Shlens, Szegedy. Explaining and Harnessing Adversarial Examples. ICLR 2015. arXiv:1412.6572",
    parameters: &[params::NORM, params::LOSS, params::TARGETED, params::TARGET],
    kind: AttackKind::SingleStep,
    needs: ModelAccess::InputGradients,
    budget: BudgetSemantics::Bounded,
    conformance_variants: crate::objective_conformance_variants![],
    build,
};

/// The suite-file parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    norm: Norm,
    loss: Loss,
    targeted: bool,
    target: Option<TargetSelection>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            norm: Norm::Linf,
            loss: Loss::CrossEntropy,
            targeted: false,
            target: None,
        }
    }
}

impl Params {
    fn validate(self, epsilon: f32) -> Result<Fgsm, AttackError> {
        check_epsilon(epsilon)?;
        Ok(Fgsm {
            threat: ThreatModel {
                norm: self.norm,
                epsilon,
            },
            objective: Objective::new(self.loss, self.targeted, self.target)?,
        })
    }
}

fn build(params: &toml::Table, epsilon: f32) -> Result<Box<dyn Attack>, AttackError> {
    Ok(Box::new(parse_params::<Params>(params)?.validate(epsilon)?))
}

/// The fast gradient (sign) method.
#[derive(Debug, Clone)]
pub struct Fgsm {
    threat: ThreatModel,
    objective: Objective,
}

impl Attack for Fgsm {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn threat(&self) -> ThreatModel {
        self.threat
    }

    fn objective(&self) -> AttackObjective {
        self.objective.describe()
    }

    /// One gradient, plus a forward pass for `least_likely` targets.
    fn passes_per_sample(&self) -> Passes {
        Passes::gradients(1) + self.objective.label_passes()
    }

    fn perturb(
        &self,
        model: &dyn Model,
        inputs: &Tensor,
        labels: &Tensor,
        randomness: &SampleRandomness,
    ) -> Result<Tensor, AttackError> {
        let batch = check_batch(model, inputs, labels)?;
        check_randomness(&batch, randomness)?;
        if self.threat.epsilon == 0.0 || batch.is_empty() {
            return Ok(inputs.clone());
        }
        let attack_labels = self.objective.attack_labels(model, inputs, &batch, randomness)?;
        let gradient = model
            .loss_and_input_gradient(inputs, &attack_labels, self.objective.loss)?
            .gradient;
        let step = self.objective.ascent_sign() * f64::from(self.threat.epsilon);
        match self.threat.norm {
            // One fused pass on CPU, the same values as the operations below.
            Norm::Linf => {
                FeasibleSet::new(inputs, self.threat)?.sign_step(inputs, &gradient, step as f32)
            }
            Norm::L2 => {
                let direction = steepest_ascent_direction(&gradient, self.threat.norm)?;
                project(&(inputs + direction.affine(step, 0.0)?)?, inputs, self.threat)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;

    fn rng(batch: usize) -> SampleRandomness {
        SampleRandomness::for_range(7, "test", 0..batch)
    }

    #[test]
    fn defaults_are_untargeted_linf_cross_entropy() {
        let attack = parse_params::<Params>(&toml::Table::new())
            .unwrap()
            .validate(0.1)
            .unwrap();
        assert_eq!(attack.threat, ThreatModel { norm: Norm::Linf, epsilon: 0.1 });
        assert_eq!(attack.objective, Objective { loss: Loss::CrossEntropy, target: None });
    }

    #[test]
    fn parses_every_common_parameter() {
        let table: toml::Table = toml::from_str(
            "norm = \"l2\"\nloss = \"cw_margin\"\ntargeted = true\ntarget = \"least_likely\"",
        )
        .unwrap();
        let attack = parse_params::<Params>(&table).unwrap().validate(0.5).unwrap();
        assert_eq!(attack.threat, ThreatModel { norm: Norm::L2, epsilon: 0.5 });
        assert_eq!(
            attack.objective,
            Objective { loss: Loss::CwMargin, target: Some(TargetSelection::LeastLikely) }
        );
    }

    #[test]
    fn negative_or_nan_epsilon_is_rejected() {
        for epsilon in [-0.1, f32::NAN, f32::INFINITY] {
            let error = build(&toml::Table::new(), epsilon).err().unwrap();
            assert!(
                matches!(error, AttackError::InvalidParameter { ref key, .. } if key == "epsilon"),
                "{error}"
            );
        }
    }

    // Targeted toward j = 1 with the CW margin: the loss is max_{k≠1} z_k − z_1 = z_0 − z_1
    // (class 0 stays on top of class 2 everywhere near the inputs), whose gradient is the
    // constant w_0 − w_1. Descending it by ε·sign(w_0 − w_1) lowers z_0 − z_1 by exactly
    // ε·Σ|w_0 − w_1| = ε‖w_0 − w_1‖₁, the largest drop any L∞ perturbation of size ε can make.
    #[test]
    fn targeted_linf_step_lowers_the_pair_margin_by_epsilon_times_l1_norm() {
        let model = three_class_model();
        let inputs = inputs_in_middle(5, 1);
        let epsilon = 0.05;
        let attack = build_attack(
            &ENTRY,
            "loss = \"cw_margin\"\ntargeted = true\ntarget = 1",
            epsilon,
        );
        let adversarial = attack
            .perturb(&model, &inputs, &labels(&[0; 5]), &rng(5))
            .unwrap();
        let rows = model.weight_rows();
        let expected_drop = f64::from(epsilon) * l1_distance(&rows[0], &rows[1]);
        let before = logit_gap(&model, &inputs, 0, 1);
        let after = logit_gap(&model, &adversarial, 0, 1);
        for (b, a) in before.iter().zip(&after) {
            assert_close(b - a, expected_drop, 1e-4, "drop of z_0 − z_1");
        }
    }

    // Same with an L2 budget: the step is ε·(w_0 − w_1)/‖w_0 − w_1‖₂, which lowers z_0 − z_1 by
    // ε‖w_0 − w_1‖₂ (Cauchy–Schwarz: the most any L2 perturbation of size ε can).
    #[test]
    fn targeted_l2_step_lowers_the_pair_margin_by_epsilon_times_l2_norm() {
        let model = three_class_model();
        let inputs = inputs_in_middle(5, 2);
        let epsilon = 0.1;
        let attack = build_attack(
            &ENTRY,
            "norm = \"l2\"\nloss = \"cw_margin\"\ntargeted = true\ntarget = 1",
            epsilon,
        );
        let adversarial = attack
            .perturb(&model, &inputs, &labels(&[0; 5]), &rng(5))
            .unwrap();
        let rows = model.weight_rows();
        let expected_drop = f64::from(epsilon) * l2_distance(&rows[0], &rows[1]);
        let before = logit_gap(&model, &inputs, 0, 1);
        let after = logit_gap(&model, &adversarial, 0, 1);
        for (b, a) in before.iter().zip(&after) {
            assert_close(b - a, expected_drop, 1e-4, "drop of z_0 − z_1");
        }
    }

    // Binary softmax regression with cross-entropy on label 0: ∂CE/∂x = p_1·(w_1 − w_0), so
    // sign(∂CE/∂x) = sign(w_1 − w_0) and the untargeted step lowers the margin z_0 − z_1 by
    // ε‖w_1 − w_0‖₁ (L∞) or ε‖w_1 − w_0‖₂ (L2).
    #[test]
    fn binary_cross_entropy_step_is_the_closed_form_worst_case() {
        let model = binary_model();
        let inputs = inputs_in_middle(4, 3);
        let rows = model.weight_rows();
        for (params, epsilon, weight_norm) in [
            ("norm = \"linf\"", 0.03f32, l1_distance(&rows[1], &rows[0])),
            ("norm = \"l2\"", 0.2f32, l2_distance(&rows[1], &rows[0])),
        ] {
            let attack = build_attack(&ENTRY, params, epsilon);
            let adversarial = attack
                .perturb(&model, &inputs, &labels(&[0; 4]), &rng(4))
                .unwrap();
            let before = logit_gap(&model, &inputs, 0, 1);
            let after = logit_gap(&model, &adversarial, 0, 1);
            for (b, a) in before.iter().zip(&after) {
                assert_close(b - a, f64::from(epsilon) * weight_norm, 1e-4, params);
            }
        }
    }

    #[test]
    fn zero_epsilon_returns_the_input_bit_for_bit() {
        let model = binary_model();
        let inputs = inputs_in_middle(3, 4);
        for norm in ["linf", "l2"] {
            let attack = build_attack(&ENTRY, &format!("norm = \"{norm}\""), 0.0);
            let adversarial = attack
                .perturb(&model, &inputs, &labels(&[0, 1, 0]), &rng(3))
                .unwrap();
            let a: Vec<u32> = adversarial.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect();
            let b: Vec<u32> = inputs.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn zero_gradient_means_no_step() {
        let model = gauntlet_models::testing::LinearModel::new(
            vec![0.0; 2 * FEATURES],
            vec![0.0, 0.0],
            vec![FEATURES],
            2,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let inputs = inputs_in_middle(3, 5);
        for norm in ["linf", "l2"] {
            let attack = build_attack(&ENTRY, &format!("norm = \"{norm}\""), 0.1);
            let adversarial = attack
                .perturb(&model, &inputs, &labels(&[0, 1, 0]), &rng(3))
                .unwrap();
            assert_eq!(
                adversarial.to_vec2::<f32>().unwrap(),
                inputs.to_vec2::<f32>().unwrap(),
                "{norm}"
            );
        }
    }
}
