//! `standard`: the AutoAttack standard ensemble — APGD-CE, APGD-T, FAB-T and the Square
//! Attack at one ε, reporting the pointwise worst case.
//!
//! ## What it does
//!
//! Runs its members one after another at the budget ε, each built from the registry with the
//! reference's settings: `apgd` (cross-entropy, `steps` steps, one restart), `apgd_t`
//! (`targets` targets, `steps` steps), `fab_t` at ε (`targets` targets, `steps` steps; a
//! target's run counts only if its perturbation is at most ε) and `square` (`queries`
//! queries). Each later member runs only on the samples every earlier one failed to break
//! (correct on the clean input and still correct on the member's output), as a sub-batch with
//! those samples' own generators ([`SampleRandomness::subset`]) — which is most of the
//! ensemble's speed and, because every member's result for a sample depends on that sample
//! alone, changes nobody's result. A sample's output is the output of the first member that
//! broke it; a sample no member broke (or misclassified already) gets its clean input back,
//! as in AutoAttack. So the ensemble's per-sample success is the union of its members', and in
//! particular a superset of `apgd`'s with the same steps and seed.
//! [`Standard::perturb_with_members`] also says which member broke each sample, and
//! [`Attack::perturb_traced`] reports it as [`SampleTrace::broken_by`], which the runner
//! records per sample (`broken_by` in `samples.parquet`) and `results.json` counts per member.
//!
//! ## Threat model
//!
//! White-box (APGD and FAB need input gradients) plus a score-based black box (Square), all
//! inside the ε-ball of the norm and [0, 1]; ε = 0 returns the input bit for bit. Untargeted in
//! what it reports. Every member draws from the sample's own generator, as it does when run
//! alone under the same label (APGD-CE's output for a sample is exactly `apgd`'s). Cost: one
//! forward pass for the clean check, then each member's own cost and one forward pass to check
//! its outputs, on the samples still unbroken; the declared passes are the sum for a sample
//! that resists every member.
//!
//! ## Parameters
//!
//! - `norm` (default `"linf"`): `"linf"` or `"l2"`, for every member.
//! - `steps` (default `100`): iterations of APGD-CE, of APGD-T per target and of FAB-T per
//!   target.
//! - `targets` (default `9`): target classes of APGD-T and of FAB-T.
//! - `queries` (default `5000`): the Square Attack's queries per sample.
//!
//! ## Known-answer tests
//!
//! On a linear model the members are checked by their own known answers; the ensemble's
//! per-sample success is the union of its members' run alone, each later member sees only
//! the samples the earlier ones left, and on the shipped model robust accuracy is ordered
//! FGSM ≥ PGD ≥ APGD ≥ standard at each ε, image for image between APGD and standard
//! (`tests/it/ordering.rs`).
//!
//! ## Reference
//!
//! Croce, Hein. *Reliable evaluation of adversarial robustness with an ensemble of diverse
//! parameter-free attacks.* ICML 2020, arXiv:2003.01690 (the `standard` version of
//! AutoAttack).

use candle_core::{DType, Tensor};
use gauntlet_models::{Loss, Model};
use serde::Deserialize;

use crate::objective::{check_batch, check_randomness};
use crate::params::{self, check_epsilon, parse_params};
use crate::{
    Attack, AttackEntry, AttackError, AttackKind, AttackObjective, BudgetSemantics, ModelAccess,
    Norm, ParameterDoc, Passes, SampleRandomness, SampleTrace, ThreatModel, Traced,
};

/// The registry entry.
pub const ENTRY: AttackEntry = AttackEntry {
    name: "standard",
    summary: "AutoAttack's standard ensemble: APGD-CE, APGD-T, FAB-T and Square at each ε, each on the samples the earlier ones left unbroken; the pointwise worst case",
    reference: super::apgd::REFERENCE,
    parameters: &[
        params::NORM,
        ParameterDoc {
            name: "steps",
            default: "100",
            description: "Iterations of APGD-CE, and per target of APGD-T and FAB-T.",
        },
        ParameterDoc {
            name: "targets",
            default: "9",
            description: "Target classes (the most likely other classes) of APGD-T and FAB-T.",
        },
        ParameterDoc {
            name: "queries",
            default: "5000",
            description: "The Square Attack's queries per sample.",
        },
    ],
    kind: AttackKind::Iterative,
    needs: ModelAccess::InputGradients,
    budget: BudgetSemantics::Bounded,
    conformance_variants: &[
        "norm = \"linf\"\nsteps = 5\ntargets = 2\nqueries = 20",
        "norm = \"l2\"\nsteps = 5\ntargets = 1\nqueries = 20",
    ],
    build,
};

/// The suite-file parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    norm: Norm,
    steps: u32,
    targets: u32,
    queries: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            norm: Norm::Linf,
            steps: 100,
            targets: 9,
            queries: 5000,
        }
    }
}

fn build(params: &toml::Table, epsilon: f32) -> Result<Box<dyn Attack>, AttackError> {
    Ok(Box::new(Standard::from_table(params, epsilon)?))
}

/// A member of the ensemble, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Member {
    /// `apgd` with the cross-entropy loss.
    ApgdCe,
    /// `apgd_t`.
    ApgdT,
    /// `fab_t` at the ensemble's ε.
    FabT,
    /// `square`.
    Square,
}

impl Member {
    /// Every member, in the order the ensemble runs them.
    pub const ALL: [Member; 4] = [Member::ApgdCe, Member::ApgdT, Member::FabT, Member::Square];

    /// The member's name in reports: its registry name, `apgd_ce` for APGD with cross-entropy.
    pub fn name(self) -> &'static str {
        match self {
            Member::ApgdCe => "apgd_ce",
            Member::ApgdT => "apgd_t",
            Member::FabT => "fab_t",
            Member::Square => "square",
        }
    }

    /// The member named `name` (as [`Member::name`] spells it), for reading records back.
    pub fn from_name(name: &str) -> Option<Member> {
        Member::ALL.into_iter().find(|member| member.name() == name)
    }

    /// The registry entry the member is built from, and its parameters under the ensemble's.
    fn entry_and_params(self, p: &Params) -> (&'static AttackEntry, String) {
        let norm = p.norm;
        match self {
            Member::ApgdCe => (
                &super::apgd::ENTRY,
                format!("norm = \"{norm}\"\nloss = \"cross_entropy\"\nsteps = {}", p.steps),
            ),
            Member::ApgdT => (
                &super::apgd_t::ENTRY,
                format!("norm = \"{norm}\"\nsteps = {}\ntargets = {}", p.steps, p.targets),
            ),
            Member::FabT => (
                &super::fab_t::ENTRY,
                format!("norm = \"{norm}\"\nsteps = {}\ntargets = {}", p.steps, p.targets),
            ),
            Member::Square => (
                &super::square::ENTRY,
                format!("norm = \"{norm}\"\nqueries = {}", p.queries),
            ),
        }
    }
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The ensemble.
pub struct Standard {
    threat: ThreatModel,
    members: Vec<(Member, Box<dyn Attack>)>,
}

impl std::fmt::Debug for Standard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standard")
            .field("threat", &self.threat)
            .field(
                "members",
                &self.members.iter().map(|(m, _)| m.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Standard {
    /// The ensemble from a suite table, as the registry builds it; for callers that want
    /// [`Standard::perturb_with_members`].
    pub fn from_table(params: &toml::Table, epsilon: f32) -> Result<Standard, AttackError> {
        let p = parse_params::<Params>(params)?;
        check_epsilon(epsilon)?;
        // The members validate the shared keys; their errors name the same keys.
        let members = Member::ALL
            .iter()
            .map(|&member| {
                let (entry, text) = member.entry_and_params(&p);
                let table: toml::Table = toml::from_str(&text).map_err(|error| {
                    AttackError::invalid_parameter("parameters", error.to_string())
                })?;
                Ok((member, (entry.build)(&table, epsilon)?))
            })
            .collect::<Result<Vec<_>, AttackError>>()?;
        Ok(Standard {
            threat: ThreatModel {
                norm: p.norm,
                epsilon,
            },
            members,
        })
    }

    /// Adversarial inputs as [`Attack::perturb`] gives them, and for each sample the member
    /// that broke it (`None`: misclassified already, or no member broke it).
    pub fn perturb_with_members(
        &self,
        model: &dyn Model,
        inputs: &Tensor,
        labels: &Tensor,
        randomness: &SampleRandomness,
    ) -> Result<(Tensor, Vec<Option<Member>>), AttackError> {
        let batch = check_batch(model, inputs, labels)?;
        check_randomness(&batch, randomness)?;
        let mut broken_by = vec![None; batch.len()];
        if self.threat.epsilon == 0.0 || batch.is_empty() {
            return Ok((inputs.clone(), broken_by));
        }
        let device = inputs.device();
        let predicted: Vec<u32> = model.predict(inputs)?.to_vec1()?;
        let mut remaining: Vec<usize> = (0..batch.len())
            .filter(|&i| predicted[i] == batch.labels_host[i])
            .collect();
        let mut output = inputs.flatten_from(1)?.to_vec2::<f32>()?;
        for (member, attack) in &self.members {
            if remaining.is_empty() {
                break;
            }
            let index = Tensor::from_vec(
                remaining.iter().map(|&i| i as u32).collect::<Vec<u32>>(),
                remaining.len(),
                device,
            )?;
            let sub_inputs = inputs.index_select(&index, 0)?;
            let sub_labels = batch.labels.index_select(&index, 0)?;
            let adversarial = attack.perturb(
                model,
                &sub_inputs,
                &sub_labels,
                &randomness.subset(&remaining),
            )?;
            let after: Vec<u32> = model.predict(&adversarial)?.to_vec1()?;
            let rows = adversarial.flatten_from(1)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            let mut still = Vec::with_capacity(remaining.len());
            for ((&i, prediction), row) in remaining.iter().zip(after).zip(rows) {
                if prediction == batch.labels_host[i] {
                    still.push(i);
                } else {
                    broken_by[i] = Some(*member);
                    output[i] = row;
                }
            }
            remaining = still;
        }
        let values: Vec<f32> = output.into_iter().flatten().collect();
        Ok((Tensor::from_vec(values, inputs.dims(), device)?, broken_by))
    }
}

impl Attack for Standard {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn threat(&self) -> ThreatModel {
        self.threat
    }

    /// Its first member's: untargeted cross-entropy.
    fn objective(&self) -> AttackObjective {
        AttackObjective {
            loss: Loss::CrossEntropy,
            target: None,
        }
    }

    /// One forward pass for the clean check, then every member's passes and one forward pass
    /// to check its outputs: the cost of a sample no member breaks (a broken one skips the
    /// later members).
    fn passes_per_sample(&self) -> Passes {
        Passes::forwards(1)
            + self
                .members
                .iter()
                .map(|(_, attack)| attack.passes_per_sample() + Passes::forwards(1))
                .sum::<Passes>()
    }

    fn perturb(
        &self,
        model: &dyn Model,
        inputs: &Tensor,
        labels: &Tensor,
        randomness: &SampleRandomness,
    ) -> Result<Tensor, AttackError> {
        Ok(self
            .perturb_with_members(model, inputs, labels, randomness)?
            .0)
    }

    /// [`Standard::perturb_with_members`], with the breaking member as each sample's
    /// [`SampleTrace::broken_by`] (the per-sample records' `broken_by`).
    fn perturb_traced(
        &self,
        model: &dyn Model,
        inputs: &Tensor,
        labels: &Tensor,
        randomness: &SampleRandomness,
    ) -> Result<Traced, AttackError> {
        let (adversarial, members) =
            self.perturb_with_members(model, inputs, labels, randomness)?;
        Ok(Traced {
            adversarial,
            traces: members
                .into_iter()
                .map(|broken_by| SampleTrace {
                    broken_by,
                    ..SampleTrace::default()
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;

    fn rng(batch: usize) -> SampleRandomness {
        SampleRandomness::for_range(3, "test", 0..batch)
    }

    /// A three-class linear model with small biases, so some samples break at a modest ε and
    /// some do not.
    fn model() -> gauntlet_models::testing::LinearModel {
        gauntlet_models::testing::LinearModel::new(
            vec![
                1.0, -0.5, 0.25, 2.0, -1.5, 0.75, //
                -0.5, 1.5, -1.0, 0.5, 1.0, -0.25, //
                0.3, 0.2, -0.1, 0.4, 0.1, 0.2,
            ],
            vec![0.4, 0.0, 0.0],
            vec![FEATURES],
            3,
            &candle_core::Device::Cpu,
        )
        .unwrap()
    }

    fn broken(
        model: &gauntlet_models::testing::LinearModel,
        adversarial: &Tensor,
        classes: &[u32],
    ) -> Vec<bool> {
        let predicted: Vec<u32> = model.predict(adversarial).unwrap().to_vec1().unwrap();
        predicted.iter().zip(classes).map(|(p, y)| p != y).collect()
    }

    // The ensemble breaks exactly the samples some member breaks when run alone on the whole
    // batch, attributes each to the first such member, and returns that member's output.
    #[test]
    fn success_is_the_union_of_the_members_and_the_first_one_is_credited() {
        let model = model();
        let inputs = inputs_in_middle(16, 5);
        let classes: Vec<u32> = model.predict(&inputs).unwrap().to_vec1().unwrap();
        let params = "steps = 10\ntargets = 2\nqueries = 50";
        let table: toml::Table = toml::from_str(params).unwrap();
        let epsilon = 0.05;
        let ensemble = Standard::from_table(&table, epsilon).unwrap();
        let (adversarial, members) = ensemble
            .perturb_with_members(&model, &inputs, &labels(&classes), &rng(classes.len()))
            .unwrap();
        let ensemble_broken = broken(&model, &adversarial, &classes);
        let alone: Vec<(Member, Tensor, Vec<bool>)> = ensemble
            .members
            .iter()
            .map(|(member, attack)| {
                let out = attack
                    .perturb(&model, &inputs, &labels(&classes), &rng(classes.len()))
                    .unwrap();
                let b = broken(&model, &out, &classes);
                (*member, out, b)
            })
            .collect();
        let union = (0..classes.len()).filter(|&i| alone.iter().any(|(_, _, b)| b[i])).count();
        assert!(union > 0 && union < classes.len(), "a test that separates nothing: {union}");
        let out_rows: Vec<Vec<f32>> = adversarial.to_vec2().unwrap();
        for i in 0..classes.len() {
            let first = alone.iter().find(|(_, _, b)| b[i]);
            assert_eq!(ensemble_broken[i], first.is_some(), "sample {i}");
            assert_eq!(members[i], first.map(|(m, _, _)| *m), "sample {i}");
            match first {
                Some((_, out, _)) => {
                    let row: Vec<Vec<f32>> = out.narrow(0, i, 1).unwrap().to_vec2().unwrap();
                    assert_eq!(out_rows[i], row[0], "sample {i}: not its member's output");
                }
                None => {
                    let row: Vec<Vec<f32>> = inputs.narrow(0, i, 1).unwrap().to_vec2().unwrap();
                    assert_eq!(out_rows[i], row[0], "sample {i}: unbroken but changed");
                }
            }
        }
    }

    #[test]
    fn passes_are_the_sum_of_the_members() {
        let table: toml::Table = toml::from_str("steps = 10\ntargets = 2\nqueries = 50").unwrap();
        let ensemble = Standard::from_table(&table, 0.1).unwrap();
        // APGD-CE: 1 + 11; APGD-T: 2 + 2·11; FAB-T: 1 + 2·10·(2 gradients + 1 forward);
        // Square: 50 queries and its start; plus the clean check and one check per member.
        let gradients = 11 + 22 + 40;
        let forwards = 1 + 4 + (1 + 11) + (2 + 22) + (1 + 40 + 20) + 51;
        assert_eq!(
            ensemble.passes_per_sample(),
            Passes {
                forward: forwards,
                backward: gradients
            }
        );
    }

    #[test]
    fn bad_parameters_name_their_key() {
        for (params, key) in [
            ("steps = 0", "steps"),
            ("targets = 0", "targets"),
            ("queries = 0", "queries"),
            ("norm = \"l1\"", "norm"),
            ("loss = \"dlr\"", "loss"),
        ] {
            let table: toml::Table = toml::from_str(params).unwrap();
            let error = build(&table, 0.1).err().unwrap();
            assert!(
                matches!(error, AttackError::InvalidParameter { key: ref k, .. } if k == key),
                "{params}: {error}"
            );
        }
        let error = build(&toml::Table::new(), f32::INFINITY).err().unwrap();
        assert!(matches!(error, AttackError::InvalidParameter { ref key, .. } if key == "epsilon"));
    }
}
