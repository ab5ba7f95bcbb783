//! APGD-T: APGD on the targeted DLR loss toward each of the most likely other classes in turn.
//!
//! ## What it does
//!
//! For each correctly classified sample, the classes ranked 2nd, 3rd, … by its clean logits
//! (`targets` of them, at most the number of classes − 1) become targets one after another.
//! For each target it runs APGD (the same schedule as `apgd`: step 2ε halved at the
//! checkpoints, momentum 0.75, ρ = 0.75) descending the targeted DLR loss
//! `(max_{j≠t} z_j − z_t) / (z_π1 − ½(z_π3 + z_π4))`, only on the samples that no earlier target
//! broke. Success is misclassification (as in AutoAttack: the targets are a route to *some*
//! wrong class), so APGD-T is an untargeted attack in what it reports. A sample never broken
//! gets the point of lowest targeted loss seen. Cost: up to `targets × restarts × steps` forward
//! and backward passes per sample that resists, far fewer for the others.
//!
//! ## Threat model
//!
//! White-box: needs input gradients. Budget ε in L∞ or L2 inside [0, 1]; ε = 0 returns the
//! input bit for bit. Target `k`, restart `r` draws its random start from the sample's stream
//! `Restart(k·restarts + r)`.
//!
//! ## Parameters
//!
//! - `norm` (default `"linf"`), `steps` (default `100`), `restarts` (default `1`, per target),
//!   `rho`, `momentum`: as for `apgd`.
//! - `targets` (default `9`): how many of the most likely other classes to try, ≥ 1.
//!
//! ## Known-answer tests
//!
//! On a model with three classes it tries both other classes and so is at least as strong as
//! APGD with the targeted CW margin toward either; on the shipped model it is at least as
//! strong as APGD-CE at the same budget (`tests/it/apgd.rs`).
//!
//! ## Reference
//!
//! Croce, Hein. *Reliable evaluation of adversarial robustness with an ensemble of diverse
//! parameter-free attacks.* ICML 2020, arXiv:2003.01690.

use candle_core::Tensor;
use gauntlet_models::{Loss, Model};
use serde::Deserialize;

use super::apgd::{self, ApgdSchedule, Batch, Goal};
use crate::objective::{check_batch, check_randomness};
use crate::params::{self, parse_params};
use crate::{
    Attack, AttackEntry, AttackError, AttackKind, AttackObjective, BudgetSemantics, ModelAccess,
    Norm, ParameterDoc, Passes, SampleRandomness, Stream, ThreatModel,
};

/// The registry entry.
pub const ENTRY: AttackEntry = AttackEntry {
    name: "apgd_t",
    summary: "APGD-T: APGD on the targeted DLR loss toward each of the top-9 other classes in turn; success is misclassification",
    reference: apgd::REFERENCE,
    parameters: &[
        params::NORM,
        apgd::STEPS,
        apgd::RESTARTS,
        apgd::RHO,
        apgd::MOMENTUM,
        ParameterDoc {
            name: "targets",
            default: "9",
            description: "How many of the most likely other classes (by clean logits) to try as targets, one after another on the samples still unbroken; at least 1, at most the number of classes − 1 are used.",
        },
    ],
    kind: AttackKind::Iterative,
    needs: ModelAccess::InputGradients,
    budget: BudgetSemantics::Bounded,
    conformance_variants: &[
        "norm = \"linf\"",
        "norm = \"l2\"",
        "steps = 4\ntargets = 1",
        "steps = 6\nrestarts = 2\nnorm = \"l2\"\ntargets = 2",
    ],
    build,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    norm: Norm,
    steps: u32,
    restarts: u32,
    rho: f32,
    momentum: f32,
    targets: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            norm: Norm::Linf,
            steps: 100,
            restarts: 1,
            rho: 0.75,
            momentum: 0.75,
            targets: 9,
        }
    }
}

fn build(params: &toml::Table, epsilon: f32) -> Result<Box<dyn Attack>, AttackError> {
    let p = parse_params::<Params>(params)?;
    apgd::check_restarts(p.restarts)?;
    if p.targets < 1 {
        return Err(AttackError::invalid_parameter(
            "targets",
            format!("targets must be ≥ 1, got {}", p.targets),
        ));
    }
    Ok(Box::new(ApgdTargeted {
        schedule: apgd::schedule(
            ThreatModel {
                norm: p.norm,
                epsilon,
            },
            p.steps,
            p.rho,
            p.momentum,
        )?,
        restarts: p.restarts,
        targets: p.targets,
    }))
}

/// APGD-T.
#[derive(Debug, Clone)]
pub struct ApgdTargeted {
    schedule: ApgdSchedule,
    restarts: u32,
    targets: u32,
}

/// Per sample, the classes ranked `2..=targets + 1` by the clean logits (descending, ties to
/// the lower class), as rows of `targets` classes.
pub(crate) fn ranked_targets(logits: &[Vec<f32>], targets: usize) -> Vec<Vec<u32>> {
    logits
        .iter()
        .map(|row| {
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            order
                .into_iter()
                .skip(1)
                .take(targets)
                .map(|c| c as u32)
                .collect()
        })
        .collect()
}

impl Attack for ApgdTargeted {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn threat(&self) -> ThreatModel {
        self.schedule.threat
    }

    fn objective(&self) -> AttackObjective {
        AttackObjective {
            loss: Loss::DlrTargeted,
            target: None,
        }
    }

    /// Two forward passes (the clean logits that rank the targets, and the clean check), then
    /// per target and restart one gradient at the start and one per step. An upper bound:
    /// a model with fewer than `targets + 1` classes has fewer targets.
    fn passes_per_sample(&self) -> Passes {
        Passes::forwards(2)
            + Passes::gradients(u64::from(self.schedule.steps) + 1)
                .times(u64::from(self.restarts))
                .times(u64::from(self.targets))
    }

    fn perturb(
        &self,
        model: &dyn Model,
        inputs: &Tensor,
        labels: &Tensor,
        randomness: &SampleRandomness,
    ) -> Result<Tensor, AttackError> {
        Ok(self
            .perturb_traced(model, inputs, labels, randomness)?
            .adversarial)
    }

    /// Reports, per sample, when it was broken (`broken_at`, over targets × restarts × steps).
    fn perturb_traced(
        &self,
        model: &dyn Model,
        inputs: &Tensor,
        labels: &Tensor,
        randomness: &SampleRandomness,
    ) -> Result<crate::Traced, AttackError> {
        let checked = check_batch(model, inputs, labels)?;
        check_randomness(&checked, randomness)?;
        if self.schedule.threat.epsilon == 0.0 || checked.is_empty() {
            return Ok(crate::Traced {
                adversarial: inputs.clone(),
                traces: vec![crate::SampleTrace::default(); checked.len()],
            });
        }
        let classes = model.num_classes();
        let targets = (self.targets as usize).min(classes.saturating_sub(1));
        let clean_logits: Vec<Vec<f32>> = model
            .forward(inputs)?
            .to_dtype(candle_core::DType::F32)?
            .to_vec2()?;
        let ranked = ranked_targets(&clean_logits, targets);
        let untargeted = Goal {
            loss: Loss::DlrTargeted,
            ascent: -1.0,
            loss_labels: &checked.labels_host,
            true_labels: &checked.labels_host,
            success_targets: None,
        };
        let mut batch = Batch::new(model, inputs, randomness, &untargeted)?;
        for k in 0..targets {
            let target_labels: Vec<u32> = ranked.iter().map(|row| row[k]).collect();
            let goal = Goal {
                loss_labels: &target_labels,
                ..untargeted
            };
            for restart in 0..self.restarts {
                let stream = Stream::Restart(k as u32 * self.restarts + restart);
                apgd::run(&mut batch, &self.schedule, &goal, stream, inputs.device())?;
            }
        }
        batch.into_traced(inputs.device())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_the_next_most_likely_classes() {
        let logits = vec![vec![0.1f32, 3.0, 2.0, -1.0, 2.0], vec![5.0, 4.0, 3.0, 2.0, 1.0]];
        assert_eq!(
            ranked_targets(&logits, 3),
            vec![vec![2, 4, 0], vec![1, 2, 3]]
        );
        assert_eq!(ranked_targets(&logits, 9)[1], vec![1, 2, 3, 4]);
    }

    #[test]
    fn zero_targets_is_an_error() {
        match build(&toml::from_str("targets = 0").unwrap(), 0.1) {
            Err(AttackError::InvalidParameter { key, .. }) => assert_eq!(key, "targets"),
            _ => panic!("targets = 0 was accepted"),
        }
    }
}
