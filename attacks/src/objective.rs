//! What the gradient attacks share: checking the batch, choosing the labels whose loss is
//! followed (true labels, or targets), the direction of the step, and what counts as success.

use std::fmt;

use candle_core::{DType, Tensor};
use gauntlet_models::{Loss, Model};
use rand::Rng;
use serde::de::{self, Deserializer, Visitor};

use crate::projection::{per_sample_column, per_sample_norms};
use crate::{AttackError, AttackObjective, Norm, SampleRandomness, Stream};

/// How a targeted attack picks each sample's target class (suite key `target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetSelection {
    /// Uniform over the classes other than the true one, from the caller's seeded generator.
    Random,
    /// The class with the lowest clean logit other than the true one.
    LeastLikely,
    /// The same class for every sample. Samples whose true class it is are pushed to be
    /// classified more confidently as themselves, i.e. left effectively unattacked.
    Class(u32),
}

impl<'de> serde::Deserialize<'de> for TargetSelection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TargetVisitor;
        impl Visitor<'_> for TargetVisitor {
            type Value = TargetSelection;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("\"random\", \"least_likely\" or a class index ≥ 0")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                match value {
                    "random" => Ok(TargetSelection::Random),
                    "least_likely" => Ok(TargetSelection::LeastLikely),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
                u32::try_from(value)
                    .map(TargetSelection::Class)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(value), &self))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
                u32::try_from(value)
                    .map(TargetSelection::Class)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &self))
            }
        }
        deserializer.deserialize_any(TargetVisitor)
    }
}

/// A checked batch: labels as u32 on the device and on the host.
#[derive(Debug, Clone)]
pub struct CheckedBatch {
    /// True labels, `(batch,)` u32, on the inputs' device.
    pub labels: Tensor,
    /// The same labels on the host.
    pub labels_host: Vec<u32>,
}

impl CheckedBatch {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels_host.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.labels_host.is_empty()
    }
}

/// Check what [`crate::Attack::perturb`] promises to accept: f32 inputs `(batch, …)` in
/// [0, 1] whose per-sample size matches the model, and one label in range per sample.
///
/// Costs one pass over the inputs and one device-to-host copy of the labels.
pub fn check_batch(
    model: &dyn Model,
    inputs: &Tensor,
    labels: &Tensor,
) -> Result<CheckedBatch, AttackError> {
    if inputs.dtype() != DType::F32 {
        return Err(AttackError::InputDtype {
            dtype: inputs.dtype(),
        });
    }
    let Some((&batch, sample_dims)) = inputs.dims().split_first() else {
        return Err(AttackError::ShapeMismatch {
            what: "inputs must be batch-first (batch, …)",
            expected: model.input_shape().to_vec(),
            actual: Vec::new(),
        });
    };
    let sample_elements: usize = sample_dims.iter().product();
    let model_elements: usize = model.input_shape().iter().product();
    if sample_dims.is_empty() || sample_elements != model_elements {
        return Err(AttackError::ShapeMismatch {
            what: "per-sample input shape vs the model's input shape",
            expected: model.input_shape().to_vec(),
            actual: sample_dims.to_vec(),
        });
    }
    if labels.dims() != [batch] {
        return Err(AttackError::ShapeMismatch {
            what: "labels must be one per input",
            expected: vec![batch],
            actual: labels.dims().to_vec(),
        });
    }
    let labels = labels.to_dtype(DType::U32)?;
    let labels_host = labels.to_vec1::<u32>()?;
    let num_classes = model.num_classes();
    if let Some((sample, &label)) = labels_host
        .iter()
        .enumerate()
        .find(|(_, &label)| label as usize >= num_classes)
    {
        return Err(AttackError::LabelOutOfRange {
            sample,
            label,
            num_classes,
        });
    }
    if inputs.elem_count() > 0 {
        // NaN fails both comparisons, so it counts as out of range too.
        let count = if inputs.device().is_cpu() {
            // One pass over a host copy instead of five tensor operations.
            let values = inputs.flatten_all()?.to_vec1::<f32>()?;
            values.iter().filter(|v| !(0.0..=1.0).contains(*v)).count()
        } else {
            let in_range = inputs.ge(0f32)?.mul(&inputs.le(1f32)?)?;
            let in_range_count = in_range
                .to_dtype(DType::U32)?
                .sum_all()?
                .to_scalar::<u32>()?;
            inputs.elem_count() - in_range_count as usize
        };
        if count > 0 {
            let flat = inputs.flatten_all()?;
            return Err(AttackError::InputOutOfRange {
                count,
                min: flat.min(0)?.to_scalar::<f32>()?,
                max: flat.max(0)?.to_scalar::<f32>()?,
            });
        }
    }
    Ok(CheckedBatch {
        labels,
        labels_host,
    })
}

/// Check that `randomness` has one generator per sample of `batch`.
pub fn check_randomness(
    batch: &CheckedBatch,
    randomness: &SampleRandomness,
) -> Result<(), AttackError> {
    if randomness.len() != batch.len() {
        return Err(AttackError::RandomnessMismatch {
            samples: batch.len(),
            generators: randomness.len(),
        });
    }
    Ok(())
}

/// The loss an attack follows and toward which labels: the validated common parameters
/// `loss`, `targeted` and `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Objective {
    /// The per-sample loss whose input gradient is followed.
    pub loss: Loss,
    /// `None` for an untargeted attack.
    pub target: Option<TargetSelection>,
}

impl Objective {
    /// Validate the common parameters. `target` without `targeted = true` is an error rather
    /// than silently ignored; `targeted = true` without `target` means [`TargetSelection::Random`].
    pub fn new(
        loss: Loss,
        targeted: bool,
        target: Option<TargetSelection>,
    ) -> Result<Self, AttackError> {
        match (targeted, target) {
            (false, Some(_)) => Err(AttackError::invalid_parameter(
                "target",
                "`target` is set but `targeted` is false; set `targeted = true` or remove `target`",
            )),
            (false, None) => Ok(Objective { loss, target: None }),
            (true, target) => Ok(Objective {
                // DLR has its own targeted form (`Loss::DlrTargeted`).
                loss: if loss == Loss::Dlr {
                    Loss::DlrTargeted
                } else {
                    loss
                },
                target: Some(target.unwrap_or(TargetSelection::Random)),
            }),
        }
    }

    /// The public description of this objective ([`crate::Attack::objective`]).
    pub fn describe(&self) -> AttackObjective {
        AttackObjective {
            loss: self.loss,
            target: self.target,
        }
    }

    /// Whether the attack pushes toward a target class.
    pub fn is_targeted(&self) -> bool {
        self.target.is_some()
    }

    /// +1 to ascend the loss of the true labels (untargeted), −1 to descend the loss of the
    /// targets (targeted).
    pub fn ascent_sign(&self) -> f64 {
        if self.is_targeted() {
            -1.0
        } else {
            1.0
        }
    }

    /// Forward passes per sample that choosing the attack labels costs: one for
    /// `least_likely`, none otherwise.
    pub fn label_passes(&self) -> crate::Passes {
        crate::Passes::forwards(u64::from(matches!(
            self.target,
            Some(TargetSelection::LeastLikely)
        )))
    }

    /// The labels whose loss the attack follows, `(batch,)` u32: the true labels, or one target
    /// per sample. `Random` draws from each sample's [`Stream::Targets`]; `LeastLikely` costs
    /// one forward pass.
    pub fn attack_labels(
        &self,
        model: &dyn Model,
        inputs: &Tensor,
        batch: &CheckedBatch,
        randomness: &SampleRandomness,
    ) -> Result<Tensor, AttackError> {
        let num_classes = model.num_classes();
        let device = inputs.device();
        let Some(target) = self.target else {
            return Ok(batch.labels.clone());
        };
        if num_classes < 2 {
            return Err(AttackError::invalid_parameter(
                "targeted",
                format!("a targeted attack needs a model with at least 2 classes, this one has {num_classes}"),
            ));
        }
        match target {
            TargetSelection::Random => {
                check_randomness(batch, randomness)?;
                let targets: Vec<u32> = batch
                    .labels_host
                    .iter()
                    .enumerate()
                    .map(|(position, &label)| {
                        // Uniform over the other num_classes − 1 classes: draw among them and
                        // skip over the true label.
                        let drawn = randomness
                            .generator(position, Stream::Targets)
                            .random_range(0..num_classes as u32 - 1);
                        if drawn >= label {
                            drawn + 1
                        } else {
                            drawn
                        }
                    })
                    .collect();
                Ok(Tensor::from_vec(targets, batch.len(), device)?)
            }
            TargetSelection::LeastLikely => {
                let logits = model.forward(inputs)?;
                let true_class = one_hot(&batch.labels, num_classes)?;
                let excluded = Tensor::full(f32::INFINITY, logits.shape(), device)?
                    .to_dtype(logits.dtype())?;
                Ok(true_class.where_cond(&excluded, &logits)?.argmin(1)?)
            }
            TargetSelection::Class(class) => {
                if class as usize >= num_classes {
                    return Err(AttackError::invalid_parameter(
                        "target",
                        format!(
                            "class {class} is out of range for a model with {num_classes} classes"
                        ),
                    ));
                }
                Ok(Tensor::full(class, batch.len(), device)?)
            }
        }
    }

    /// Per-sample success, `(batch,)` u8: misclassified (untargeted) or classified as the
    /// target (targeted), judged on `logits`.
    pub fn successful(
        &self,
        logits: &Tensor,
        true_labels: &Tensor,
        attack_labels: &Tensor,
    ) -> Result<Tensor, AttackError> {
        let predicted = logits.argmax(1)?;
        Ok(if self.is_targeted() {
            predicted.eq(attack_labels)?
        } else {
            predicted.ne(true_labels)?
        })
    }

    /// Per-sample score, higher is better for the attacker: the loss (untargeted) or minus the
    /// loss toward the target (targeted).
    pub fn score(&self, per_sample_loss: &Tensor) -> Result<Tensor, AttackError> {
        Ok(per_sample_loss.affine(self.ascent_sign(), 0.0)?)
    }
}

/// `(batch, classes)` u8 mask with a 1 at each sample's label.
fn one_hot(labels: &Tensor, num_classes: usize) -> Result<Tensor, AttackError> {
    let batch = labels.elem_count();
    let classes = Tensor::arange(0u32, num_classes as u32, labels.device())?
        .reshape((1, num_classes))?
        .broadcast_as((batch, num_classes))?;
    Ok(classes.eq(&labels
        .reshape((batch, 1))?
        .broadcast_as((batch, num_classes))?)?)
}

/// The unit-norm steepest-ascent direction for a linear approximation of the loss, per sample:
/// `sign(g)` for L∞ (unit L∞ norm, maximises ⟨g, d⟩ over the L∞ ball), `g / ‖g‖₂` for L2. A
/// sample whose gradient is zero gets a zero direction (no step) instead of NaN.
pub fn steepest_ascent_direction(gradient: &Tensor, norm: Norm) -> Result<Tensor, AttackError> {
    match norm {
        Norm::Linf => Ok(gradient.sign()?),
        Norm::L2 => {
            let rank = gradient.rank();
            // Divide by the largest magnitude first: the squares of a tiny gradient (1e-20 is
            // common far from the boundary) would underflow and give a wrong or zero norm.
            let largest = per_sample_norms(gradient, Norm::Linf)?;
            let scaled =
                gradient.broadcast_div(&per_sample_column(&nonzero_or_one(&largest)?, rank)?)?;
            let length = per_sample_norms(&scaled, Norm::L2)?;
            Ok(scaled.broadcast_div(&per_sample_column(&nonzero_or_one(&length)?, rank)?)?)
        }
    }
}

/// Replace zeros by ones, so dividing by it leaves a zero vector zero.
fn nonzero_or_one(values: &Tensor) -> Result<Tensor, AttackError> {
    Ok(values.gt(0f32)?.where_cond(values, &values.ones_like()?)?)
}

/// Check the budget of a minimal-norm attack: ≥ 0 and not NaN; `+∞` is allowed and means
/// "return every sample's smallest successful perturbation, however large" (the harness's one
/// unbounded run, from which it reports every ε of the suite).
pub fn check_minimal_norm_epsilon(epsilon: f32) -> Result<(), AttackError> {
    if epsilon >= 0.0 {
        Ok(())
    } else {
        Err(AttackError::invalid_parameter(
            "epsilon",
            format!("ε must be a number ≥ 0 (or +∞ for an unbounded run), got {epsilon}"),
        ))
    }
}

/// What a minimal-norm attack returns at budget ε: for each sample, its smallest successful
/// adversarial input (`found[i]`, flattened, values in [0, 1]) when one was found and its
/// perturbation — measured by [`per_sample_norms`], the function every ε check uses — is at
/// most ε; otherwise the clean input, unchanged. So a minimal-norm attack at ε is an ordinary
/// bounded attack (its outputs lie in the ε-ball, bit-exactly), and at ε = +∞ it returns
/// every minimal perturbation it found.
pub fn minimal_norm_output(
    inputs: &Tensor,
    found: &[Option<Vec<f32>>],
    norm: Norm,
    epsilon: f32,
) -> Result<Tensor, AttackError> {
    let clean = inputs.flatten_from(1)?.to_vec2::<f32>()?;
    let candidate: Vec<f32> = clean
        .iter()
        .zip(found)
        .flat_map(|(clean, found)| found.as_deref().unwrap_or(clean).iter().copied())
        .collect();
    let candidate = Tensor::from_vec(candidate, inputs.dims(), inputs.device())?;
    let norms = per_sample_norms(&(&candidate - inputs)?, norm)?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?;
    let output: Vec<f32> = clean
        .iter()
        .zip(found)
        .zip(&norms)
        .flat_map(|((clean, found), &size)| match found {
            Some(found) if size <= epsilon => found.iter().copied(),
            _ => clean.iter().copied(),
        })
        .collect();
    Ok(Tensor::from_vec(output, inputs.dims(), inputs.device())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{labels, three_class_model};
    use candle_core::Device;
    use gauntlet_models::testing::LinearModel;

    fn parse_target(text: &str) -> Result<TargetSelection, toml::de::Error> {
        #[derive(serde::Deserialize)]
        struct Holder {
            target: TargetSelection,
        }
        toml::from_str::<Holder>(&format!("target = {text}")).map(|h| h.target)
    }

    #[test]
    fn target_selection_parses_names_and_indices() {
        assert_eq!(parse_target("\"random\"").unwrap(), TargetSelection::Random);
        assert_eq!(
            parse_target("\"least_likely\"").unwrap(),
            TargetSelection::LeastLikely
        );
        assert_eq!(parse_target("7").unwrap(), TargetSelection::Class(7));
        for bad in ["\"most_likely\"", "-1", "1.5", "true", "5000000000"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn target_without_targeted_is_an_error() {
        let error =
            Objective::new(Loss::CrossEntropy, false, Some(TargetSelection::Class(1))).unwrap_err();
        assert!(matches!(error, AttackError::InvalidParameter { ref key, .. } if key == "target"));
        let objective = Objective::new(Loss::CwMargin, true, None).unwrap();
        assert_eq!(objective.target, Some(TargetSelection::Random));
        assert_eq!(objective.ascent_sign(), -1.0);
    }

    /// Ten classes: the logits are the inputs themselves, so the least likely class is the
    /// smallest input other than the true label's.
    fn identity_model() -> LinearModel {
        let mut weight = vec![0.0f32; 100];
        for k in 0..10 {
            weight[k * 10 + k] = 1.0;
        }
        LinearModel::new(weight, vec![0.0; 10], vec![10], 10, &Device::Cpu).unwrap()
    }

    #[test]
    fn random_targets_are_uniform_over_the_other_classes() {
        let model = identity_model();
        let n = 5000;
        let inputs = Tensor::full(0.5f32, (n, 10), &Device::Cpu).unwrap();
        let true_labels: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();
        let batch = check_batch(&model, &inputs, &labels(&true_labels)).unwrap();
        let objective =
            Objective::new(Loss::CrossEntropy, true, Some(TargetSelection::Random)).unwrap();
        let randomness = SampleRandomness::for_range(3, "test", 0..n);
        let targets: Vec<u32> = objective
            .attack_labels(&model, &inputs, &batch, &randomness)
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut counts = [[0usize; 10]; 10];
        for (t, y) in targets.iter().zip(&true_labels) {
            assert_ne!(t, y, "a random target equals the true label");
            counts[*y as usize][*t as usize] += 1;
        }
        // 500 samples per true class spread over 9 targets: ≈ 55.6 each (σ ≈ 7).
        for (y, row) in counts.iter().enumerate() {
            for (t, count) in row.iter().enumerate() {
                if t != y {
                    assert!((25..=90).contains(count), "true {y} → target {t}: {count}");
                }
            }
        }
    }

    #[test]
    fn least_likely_skips_the_true_class() {
        let model = identity_model();
        // Sample 0: smallest logit is class 3 (not its label 1). Sample 1: the smallest is its
        // own label 3, so the next smallest, class 8, is the target.
        let mut values = vec![0.5f32; 20];
        values[3] = 0.1;
        values[10 + 3] = 0.0;
        values[10 + 8] = 0.2;
        let inputs = Tensor::from_vec(values, (2, 10), &Device::Cpu).unwrap();
        let batch = check_batch(&model, &inputs, &labels(&[1, 3])).unwrap();
        let objective =
            Objective::new(Loss::CrossEntropy, true, Some(TargetSelection::LeastLikely)).unwrap();
        let targets: Vec<u32> = objective
            .attack_labels(
                &model,
                &inputs,
                &batch,
                &SampleRandomness::for_range(0, "test", 0..2),
            )
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(targets, vec![3, 8]);
    }

    #[test]
    fn success_means_misclassified_or_on_target() {
        let logits = Tensor::new(
            &[[3.0f32, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 1.0, 5.0]],
            &Device::Cpu,
        )
        .unwrap();
        let truth = labels(&[0, 0, 2]);
        let targets = labels(&[1, 1, 2]);
        let untargeted = Objective::new(Loss::CrossEntropy, false, None).unwrap();
        let successes: Vec<u8> = untargeted
            .successful(&logits, &truth, &truth)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(successes, vec![0, 1, 0]);
        let targeted = Objective::new(Loss::CrossEntropy, true, None).unwrap();
        let successes: Vec<u8> = targeted
            .successful(&logits, &truth, &targets)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(successes, vec![0, 1, 1]);
    }

    #[test]
    fn l2_direction_is_unit_and_survives_tiny_gradients() {
        let gradient =
            Tensor::new(&[[3e-30f32, -4e-30], [0.0, 0.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        let direction: Vec<Vec<f32>> = steepest_ascent_direction(&gradient, Norm::L2)
            .unwrap()
            .to_vec2()
            .unwrap();
        for (row, expected) in direction
            .iter()
            .zip([[0.6f32, -0.8], [0.0, 0.0], [0.6, 0.8]])
        {
            for (a, b) in row.iter().zip(expected) {
                assert!((a - b).abs() < 1e-6, "{direction:?}");
            }
        }
        let signs: Vec<Vec<f32>> = steepest_ascent_direction(&gradient, Norm::Linf)
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_eq!(signs, vec![vec![1.0, -1.0], vec![0.0, 0.0], vec![1.0, 1.0]]);
    }

    #[test]
    fn check_batch_accepts_the_model_shape() {
        let model = three_class_model();
        let inputs = Tensor::full(0.5f32, (2, 6), &Device::Cpu).unwrap();
        let batch = check_batch(&model, &inputs, &labels(&[0, 2])).unwrap();
        assert_eq!(batch.labels_host, vec![0, 2]);
        assert_eq!(batch.len(), 2);
    }
}
