//! Label-consistent (clean-label) backdoor: perturb training images *of the target class*
//! adversarially, stamp the trigger on them, and leave every label as it was.
//!
//! ## What it does
//!
//! A BadNets poison is an image of another class labelled `target`: anyone who looks at the
//! poisoned set sees the wrong label. Turner, Tsipras and Madry poison only images that are
//! already of the target class, so every label is right. Stamping the trigger on such images
//! alone barely plants a backdoor: the network classifies them by their natural features and
//! has no reason to learn the trigger. So each poisoned image is first made hard to classify —
//! an untargeted PGD perturbation within an ε-ball (L∞ or L2) against a surrogate trained on the
//! clean training set — and then the trigger is stamped; a network trained on the result
//! leans on the trigger to get these images right, and the trigger then sends inputs of other
//! classes to the target.
//!
//! **The surrogate.** The paper perturbs against an adversarially trained model (and also
//! interpolates in a GAN's latent space); gauntlet trains a plain surrogate on the clean
//! training set with its own training loop ([`gauntlet_models::train()`]): the architecture
//! `surrogate_architecture`, Adam, and the *run seed* for the initial weights and the
//! shuffle, on the CPU. It is trained once per (seed, training set) and reused across the
//! rates of a sweep. The PGD is gauntlet's own [`crate::evasion::pgd`] (untargeted, cross
//! entropy on the true label, random start), so the perturbation obeys the same budget
//! semantics as an evasion run. With `epsilon = 0` no surrogate is trained and the poisoning
//! is the trigger alone on target-class images — the unperturbed baseline the paper compares
//! against.
//!
//! **The rate.** As for every poisoning, the rate is the fraction of the *whole* training set
//! that is poisoned (`round(r·n)` samples), all drawn from the target class: on a training
//! set with a fraction `f` of target-class images, a rate `r` poisons `r/f` of that class, and
//! a rate above `f` is an error naming `rate`. The paper counts poisoned images instead (e.g.
//! 600 of CIFAR-10's 5,000 airplanes, a rate of 1.2% of the training set in this convention).
//!
//! **The trigger.** A `size`×`size` patch of value `value` at `position`, or at all four
//! corners (`position = "all_corners"`, the paper's variant that survives flips and crops),
//! blended with weight `amplitude`: `x′ = (1 − a)·x + a·value` on the patch. The paper reduces
//! the trigger's amplitude to make it less visible; `amplitude = 1` replaces the pixels as
//! BadNets does. Test inputs are stamped with the same trigger; success is as for BadNets
//! (triggered test inputs of the other classes classified as `target`).
//!
//! ## Parameters
//!
//! - `epsilon` (default 0.25): the perturbation budget in `norm`; 0 disables the perturbation.
//! - `norm` (default `"linf"`): `"linf"` or `"l2"`.
//! - `steps` (default 10), `step_size` (default 2.5·ε/steps): PGD's, as in `pgd`.
//! - `size` (default 3), `position` (default `"bottom_right"`, or `"all_corners"`, a named
//!   position or `[row, column]`), `value` (default 1.0), `amplitude` (default 1.0).
//! - `target` (default 0): the class whose images are poisoned and the backdoor's target.
//! - `surrogate_architecture` (default `"small_cnn"`), `surrogate_epochs` (20),
//!   `surrogate_batch_size` (32), `surrogate_learning_rate` (0.005): the surrogate's
//!   training, by default the same as a `[[poisoning]]` sweep's.
//!
//! ## Known-answer tests
//!
//! Poisoned samples keep their labels and are all of class `target`; outside the trigger they
//! lie within ε of the clean image (L∞: per pixel; L2: over the image), on the trigger they are
//! exactly `(1 − a)·x_adv + a·value`; the perturbation lowers the surrogate's accuracy on them.
//! On the shipped UCI digits the perturbed poisoning reaches a higher attack success rate
//! than the same rate of trigger-only poisoning (`attacks/tests/it/backdoor.rs`).
//!
//! ## Reference
//!
//! Turner, Tsipras, Madry. *Label-Consistent Backdoor Attacks.* arXiv:1912.02771, 2019.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use candle_core::Device;
use gauntlet_models::{ModelSpec, Network, Optimizer, TrainConfig};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use super::{triggered_others, DataShape, Poisoning, PoisoningEntry};
use crate::backdoor::{ImageSet, NamedPosition, PatchPosition, PatternKind, Trigger};
use crate::params::{check_epsilon, parse_params};
use crate::{Attack, AttackError, Norm, ParameterDoc, SampleRandomness};

/// The registry entry.
pub const ENTRY: PoisoningEntry = PoisoningEntry {
    name: "label_consistent",
    summary: "Label-consistent (clean-label) backdoor: target-class training images made hard to classify by PGD against a clean surrogate, then stamped with a patch; labels untouched",
    reference: "Turner, Tsipras, Madry. Label-Consistent Backdoor Attacks. arXiv:1912.02771",
    parameters: &[
        ParameterDoc {
            name: "epsilon",
            default: "0.25",
            description: "PGD budget in `norm` around each poisoned image; 0 stamps the trigger without a perturbation.",
        },
        ParameterDoc {
            name: "norm",
            default: "\"linf\"",
            description: "`\"linf\"` or `\"l2\"`: the norm of the perturbation budget.",
        },
        ParameterDoc {
            name: "steps",
            default: "10",
            description: "PGD steps against the surrogate; at least 1.",
        },
        ParameterDoc {
            name: "step_size",
            default: "none",
            description: "PGD step length in the attack's norm; 2.5 · epsilon / steps when absent.",
        },
        ParameterDoc {
            name: "size",
            default: "3",
            description: "Side of the square trigger patch, in pixels; at most the image's height and width.",
        },
        ParameterDoc {
            name: "position",
            default: "\"bottom_right\"",
            description: "`\"all_corners\"` (a patch at each corner), `\"top_left\"`, `\"top_right\"`, `\"bottom_left\"`, `\"bottom_right\"`, `\"center\"` or the patch's top-left pixel `[row, column]`.",
        },
        ParameterDoc {
            name: "value",
            default: "1.0",
            description: "The patch's pixel value in [0, 1].",
        },
        ParameterDoc {
            name: "amplitude",
            default: "1.0",
            description: "Trigger visibility in (0, 1]: patch pixels become (1 − amplitude)·x + amplitude·value.",
        },
        ParameterDoc {
            name: "target",
            default: "0",
            description: "The class whose training images are poisoned (labels kept) and that triggered inputs should be sent to.",
        },
        ParameterDoc {
            name: "surrogate_architecture",
            default: "\"small_cnn\"",
            description: "Built-in architecture of the surrogate PGD attacks, trained on the clean training set with the run seed.",
        },
        ParameterDoc {
            name: "surrogate_epochs",
            default: "20",
            description: "The surrogate's training epochs; at least 1.",
        },
        ParameterDoc {
            name: "surrogate_batch_size",
            default: "32",
            description: "The surrogate's training batch size; at least 1.",
        },
        ParameterDoc {
            name: "surrogate_learning_rate",
            default: "0.005",
            description: "The surrogate's Adam step size; > 0.",
        },
    ],
    build,
};

/// Where the trigger goes: one patch position, or a patch at each of the four corners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum TriggerPosition {
    AllCorners(AllCorners),
    Patch(PatchPosition),
}

/// The string `"all_corners"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllCorners {
    AllCorners,
}

/// The suite-file parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub epsilon: f32,
    pub norm: Norm,
    pub steps: u32,
    pub step_size: Option<f32>,
    pub size: usize,
    pub position: TriggerPosition,
    pub value: f32,
    pub amplitude: f32,
    pub target: u32,
    pub surrogate_architecture: String,
    pub surrogate_epochs: usize,
    pub surrogate_batch_size: usize,
    pub surrogate_learning_rate: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            epsilon: 0.25,
            norm: Norm::Linf,
            steps: 10,
            step_size: None,
            size: 3,
            position: TriggerPosition::Patch(PatchPosition::Named(NamedPosition::BottomRight)),
            value: 1.0,
            amplitude: 1.0,
            target: 0,
            surrogate_architecture: "small_cnn".to_string(),
            surrogate_epochs: 20,
            surrogate_batch_size: 32,
            surrogate_learning_rate: 0.005,
        }
    }
}

/// The label-consistent poisoning, built and validated for one data shape.
pub struct LabelConsistent {
    shape: DataShape,
    trigger: Trigger,
    target: u32,
    epsilon: f32,
    /// Gauntlet's PGD, untargeted, with a random start.
    pgd: Box<dyn Attack>,
    surrogate_spec: ModelSpec,
    surrogate_training: TrainConfig,
    /// Surrogates already trained, by (seed, fingerprint of the clean training set).
    surrogates: Mutex<Vec<(SurrogateKey, Arc<Network>)>>,
}

impl std::fmt::Debug for LabelConsistent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabelConsistent")
            .field("shape", &self.shape)
            .field("target", &self.target)
            .field("epsilon", &self.epsilon)
            .finish_non_exhaustive()
    }
}

/// (run seed, fingerprint of the clean training set): what a surrogate is trained from.
type SurrogateKey = (u64, u64);

/// Purpose string of the per-sample PGD generators (keyed by training index, so a sample's
/// perturbation is the same whichever other samples are poisoned with it).
const PGD_PURPOSE: &str = "poisoning label_consistent pgd";
/// Samples per PGD batch.
const PGD_BATCH: usize = 256;

impl LabelConsistent {
    /// Validates `params` against `shape`; errors name the key (`epsilon`, `steps`,
    /// `step_size`, `size`, `position`, `value`, `amplitude`, `target`, `surrogate_…`).
    pub fn new(params: &Params, shape: DataShape) -> Result<Self, AttackError> {
        let target = shape.check_class("target", params.target)?;
        check_epsilon(params.epsilon)?;
        if !(params.amplitude > 0.0 && params.amplitude <= 1.0) {
            return Err(AttackError::invalid_parameter(
                "amplitude",
                format!(
                    "the trigger's amplitude must be in (0, 1], got {}",
                    params.amplitude
                ),
            ));
        }
        let trigger = corner_trigger(
            shape.image,
            params.size,
            params.position,
            params.value,
            params.amplitude,
        )?;
        let mut pgd = toml::Table::new();
        pgd.insert("norm".into(), params.norm.to_string().into());
        pgd.insert("steps".into(), i64::from(params.steps).into());
        if let Some(step_size) = params.step_size {
            pgd.insert("step_size".into(), f64::from(step_size).into());
        }
        pgd.insert("random_start".into(), true.into());
        let pgd = (crate::evasion::pgd::ENTRY.build)(&pgd, params.epsilon)?;
        let surrogate_spec = ModelSpec::from_toml_str(&format!(
            "architecture = {:?}\ninput_shape = {:?}\nnum_classes = {}",
            params.surrogate_architecture, shape.image, shape.num_classes
        ))
        .map_err(|error| {
            // The spec error's cause (e.g. the unknown variant) is in its source chain.
            let mut message = format!(
                "`{}` is not a built-in architecture for {:?} images of {} classes: {error}",
                params.surrogate_architecture, shape.image, shape.num_classes
            );
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            AttackError::invalid_parameter("surrogate_architecture", message)
        })?;
        if params.surrogate_epochs == 0 {
            return Err(AttackError::invalid_parameter(
                "surrogate_epochs",
                "the surrogate needs at least 1 epoch",
            ));
        }
        if params.surrogate_batch_size == 0 {
            return Err(AttackError::invalid_parameter(
                "surrogate_batch_size",
                "the surrogate's batch size must be at least 1",
            ));
        }
        if !(params.surrogate_learning_rate.is_finite() && params.surrogate_learning_rate > 0.0) {
            return Err(AttackError::invalid_parameter(
                "surrogate_learning_rate",
                format!(
                    "Adam's step size must be a finite number > 0, got {}",
                    params.surrogate_learning_rate
                ),
            ));
        }
        Ok(Self {
            shape,
            trigger,
            target,
            epsilon: params.epsilon,
            pgd,
            surrogate_spec,
            surrogate_training: TrainConfig {
                epochs: params.surrogate_epochs,
                batch_size: params.surrogate_batch_size,
                optimizer: Optimizer::Adam {
                    learning_rate: params.surrogate_learning_rate,
                    weight_decay: 0.0,
                },
                seed: 0,
            },
            surrogates: Mutex::new(Vec::new()),
        })
    }

    /// The surrogate trained on `clean` (the clean training set) with `seed` for its initial
    /// weights and shuffle; trained on first use, then reused.
    pub fn surrogate(&self, clean: &ImageSet, seed: u64) -> Result<Arc<Network>, AttackError> {
        let key = (seed, fingerprint(clean));
        let mut surrogates = self
            .surrogates
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, network)) = surrogates.iter().find(|(k, _)| *k == key) {
            return Ok(Arc::clone(network));
        }
        let device = Device::Cpu;
        let mut network = Network::init(&self.surrogate_spec, seed, &device)?;
        gauntlet_models::train(
            &mut network,
            &clean.inputs(&device)?,
            &clean.label_tensor(&device)?,
            &TrainConfig {
                seed,
                ..self.surrogate_training.clone()
            },
            &mut |_| {},
        )?;
        let network = Arc::new(network);
        surrogates.push((key, Arc::clone(&network)));
        Ok(network)
    }

    /// The samples of `clean` at `indices`, PGD-perturbed against the surrogate of `seed`
    /// (labels as they are, no trigger yet). Each sample's random start comes from its own
    /// generator keyed by its index in `clean`.
    pub fn adversarial(
        &self,
        clean: &ImageSet,
        indices: &[usize],
        seed: u64,
    ) -> Result<ImageSet, AttackError> {
        let chosen = clean.subset(indices);
        if self.epsilon == 0.0 || indices.is_empty() {
            return Ok(chosen);
        }
        let surrogate = self.surrogate(clean, seed)?;
        let positions: Vec<usize> = (0..indices.len()).collect();
        let mut pixels = Vec::with_capacity(chosen.pixels().len());
        for chunk in positions.chunks(PGD_BATCH) {
            let batch = chosen.subset(chunk);
            let randomness = SampleRandomness::for_samples(
                seed,
                PGD_PURPOSE,
                chunk.iter().map(|&position| indices[position]),
            );
            let perturbed = self.pgd.perturb(
                surrogate.as_ref(),
                &batch.inputs(&Device::Cpu)?,
                &batch.label_tensor(&Device::Cpu)?,
                &randomness,
            )?;
            pixels.extend(perturbed.flatten_all()?.to_vec1::<f32>()?);
        }
        ImageSet::new(
            chosen.shape(),
            pixels,
            chosen.labels().to_vec(),
            chosen.num_classes(),
        )
    }
}

/// The trigger: a `size`×`size` patch of `value` at `position` (or at each corner), with mask
/// value `amplitude` on the patch.
fn corner_trigger(
    shape: [usize; 3],
    size: usize,
    position: TriggerPosition,
    value: f32,
    amplitude: f32,
) -> Result<Trigger, AttackError> {
    let positions = match position {
        TriggerPosition::Patch(position) => vec![position],
        TriggerPosition::AllCorners(_) => [
            NamedPosition::TopLeft,
            NamedPosition::TopRight,
            NamedPosition::BottomLeft,
            NamedPosition::BottomRight,
        ]
        .into_iter()
        .map(PatchPosition::Named)
        .collect(),
    };
    let [_, height, width] = shape;
    let mut mask = vec![0.0f32; height * width];
    let mut pattern = Vec::new();
    for position in positions {
        let patch = Trigger::patch(shape, size, position, PatternKind::Solid(value))?;
        for (m, &p) in mask.iter_mut().zip(patch.mask()) {
            *m = m.max(p * amplitude);
        }
        pattern = patch.pattern().to_vec();
    }
    Trigger::new(shape, mask, pattern)
}

/// A hash of the images and labels, to recognise the training set a surrogate was trained on
/// within one process (not stable across builds, and not meant to be).
fn fingerprint(data: &ImageSet) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data.shape().hash(&mut hasher);
    data.num_classes().hash(&mut hasher);
    data.labels().hash(&mut hasher);
    for value in data.pixels() {
        value.to_bits().hash(&mut hasher);
    }
    hasher.finish()
}

fn build(params: &toml::Table, shape: DataShape) -> Result<Box<dyn Poisoning>, AttackError> {
    Ok(Box::new(LabelConsistent::new(&parse_params(params)?, shape)?))
}

impl Poisoning for LabelConsistent {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn data_shape(&self) -> DataShape {
        self.shape
    }

    fn target(&self) -> Option<u32> {
        Some(self.target)
    }

    fn trigger(&self) -> Option<&Trigger> {
        Some(&self.trigger)
    }

    /// The samples of the target class; an error naming `target` when there are none.
    fn eligible(&self, data: &ImageSet) -> Result<Vec<usize>, AttackError> {
        let of_target: Vec<usize> = (0..data.len())
            .filter(|&i| data.labels()[i] == self.target)
            .collect();
        if of_target.is_empty() {
            return Err(AttackError::invalid_parameter(
                "target",
                format!(
                    "class {} has no samples in the training set, and a clean-label poisoning \
                     only poisons samples of its target class",
                    self.target
                ),
            ));
        }
        Ok(of_target)
    }

    /// The trigger step alone; the label is left as it is.
    fn poison_sample(&self, image: &mut [f32], _label: &mut u32, _rng: &mut ChaCha8Rng) {
        self.trigger.stamp(image);
    }

    /// PGD against the surrogate on all chosen samples, then the trigger; labels untouched.
    fn poison_samples(
        &self,
        data: &mut ImageSet,
        indices: &[usize],
        seed: u64,
        _randomness: &SampleRandomness,
    ) -> Result<(), AttackError> {
        let adversarial = self.adversarial(data, indices, seed)?;
        for (position, &index) in indices.iter().enumerate() {
            let (image, _label) = data.sample_mut(index);
            image.copy_from_slice(adversarial.image(position));
            self.trigger.stamp(image);
        }
        Ok(())
    }

    fn attack_inputs(&self, test: &ImageSet) -> Result<Option<ImageSet>, AttackError> {
        triggered_others(&self.trigger, self.target, test).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poisoning::poison;

    /// 40 images of 1×6×6, four per class, with pixel values spread over [0, 1] so a
    /// linear surrogate separates them a little and PGD has room to move.
    fn toy() -> ImageSet {
        let pixels = (0..40 * 36)
            .map(|i| ((i * 7919) % 97) as f32 / 96.0)
            .collect();
        let labels = (0..40).map(|i| (i % 10) as u32).collect();
        ImageSet::new([1, 6, 6], pixels, labels, 10).unwrap()
    }

    fn build(params: &str, data: &ImageSet) -> Result<LabelConsistent, AttackError> {
        let table: toml::Table = toml::from_str(params).unwrap();
        LabelConsistent::new(&parse_params(&table)?, DataShape::of(data))
    }

    const LINEAR: &str = "surrogate_architecture = \"linear\"\nsurrogate_epochs = 2\n";

    #[test]
    fn bad_parameters_name_their_key() {
        let data = toy();
        for (params, key) in [
            ("epsilon = -0.1", "epsilon"),
            ("norm = \"l1\"", "norm"),
            ("steps = 0", "steps"),
            ("step_size = 0.0", "step_size"),
            ("size = 7", "size"),
            ("position = [5, 5]", "position"),
            ("position = \"middle\"", "position"),
            ("value = 1.5", "value"),
            ("amplitude = 0.0", "amplitude"),
            ("amplitude = 1.2", "amplitude"),
            ("target = 10", "target"),
            ("surrogate_architecture = \"transformer\"", "surrogate_architecture"),
            ("surrogate_epochs = 0", "surrogate_epochs"),
            ("surrogate_batch_size = 0", "surrogate_batch_size"),
            ("surrogate_learning_rate = -1.0", "surrogate_learning_rate"),
            ("eps = 0.1", "eps"),
        ] {
            let error = build(params, &data)
                .err()
                .unwrap_or_else(|| panic!("`{params}` built"));
            assert!(
                error.to_string().contains(&format!("`{key}`")),
                "`{params}`: {error}"
            );
        }
    }

    #[test]
    fn all_corners_with_reduced_amplitude_is_four_patches_of_mask_amplitude() {
        let data = toy();
        let poisoning = build(
            "position = \"all_corners\"\nsize = 2\namplitude = 0.25\nvalue = 0.8",
            &data,
        )
        .unwrap();
        let trigger = poisoning.trigger().unwrap();
        for row in 0..6 {
            for column in 0..6 {
                let corner = !(2..4).contains(&row) && !(2..4).contains(&column);
                let expected = if corner { 0.25 } else { 0.0 };
                assert_eq!(trigger.mask()[row * 6 + column], expected, "({row}, {column})");
            }
        }
        let mut image = vec![0.4; 36];
        trigger.stamp(&mut image);
        assert!((image[0] - (0.75 * 0.4 + 0.25 * 0.8)).abs() < 1e-6);
        assert_eq!(image[2], 0.4);
    }

    #[test]
    fn poisoned_samples_keep_their_labels_stay_in_the_l2_ball_and_carry_the_trigger() {
        let data = toy();
        let epsilon = 0.5;
        let poisoning = build(
            &format!("{LINEAR}norm = \"l2\"\nepsilon = {epsilon}\ntarget = 3\namplitude = 0.5\nsize = 2"),
            &data,
        )
        .unwrap();
        // 4 of the 40 samples are of class 3: a rate of 0.1 poisons all of them.
        let poisoned = poison(&poisoning, &data, 0.1, 5).unwrap();
        assert_eq!(poisoned.indices, vec![3, 13, 23, 33]);
        assert_eq!(poisoned.data.labels(), data.labels());
        let trigger = poisoning.trigger().unwrap();
        let adversarial = poisoning.adversarial(&data, &poisoned.indices, 5).unwrap();
        for (position, &index) in poisoned.indices.iter().enumerate() {
            let (clean, out, adv) = (
                data.image(index),
                poisoned.data.image(index),
                adversarial.image(position),
            );
            let mut outside = 0.0f32;
            for pixel in 0..36 {
                let mask = trigger.mask()[pixel];
                if mask == 0.0 {
                    assert_eq!(out[pixel], adv[pixel]);
                    outside += (out[pixel] - clean[pixel]).powi(2);
                } else {
                    // The trigger, blended over the perturbed pixel.
                    let expected = (1.0 - mask) * adv[pixel] + mask * 1.0;
                    assert!((out[pixel] - expected).abs() < 1e-6);
                }
            }
            let whole: f32 = adv
                .iter()
                .zip(clean)
                .map(|(a, c)| (a - c).powi(2))
                .sum::<f32>()
                .sqrt();
            assert!(whole <= epsilon + 1e-4, "sample {index}: ‖δ‖₂ = {whole}");
            assert!(outside.sqrt() > 0.0, "sample {index} was not perturbed");
        }
        for index in 0..40 {
            if !poisoned.indices.contains(&index) {
                assert_eq!(poisoned.data.image(index), data.image(index));
            }
        }
    }

    #[test]
    fn the_perturbation_is_per_sample_deterministic_and_nested_across_rates() {
        let data = toy();
        let poisoning = build(&format!("{LINEAR}epsilon = 0.1\ntarget = 2"), &data).unwrap();
        let low = poison(&poisoning, &data, 0.05, 9).unwrap();
        let high = poison(&poisoning, &data, 0.1, 9).unwrap();
        assert_eq!(low.indices.len(), 2);
        // A fresh poisoning (its own surrogate, trained again) gives the same bits.
        let again = build(&format!("{LINEAR}epsilon = 0.1\ntarget = 2"), &data).unwrap();
        assert_eq!(low, poison(&again, &data, 0.05, 9).unwrap());
        for &index in &low.indices {
            assert!(high.indices.contains(&index));
            assert_eq!(low.data.image(index), high.data.image(index), "sample {index}");
            let moved = low
                .data
                .image(index)
                .iter()
                .zip(data.image(index))
                .zip(poisoning.trigger().unwrap().mask())
                .filter(|((_, _), &m)| m == 0.0)
                .map(|((a, b), _)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(moved > 0.0 && moved <= 0.1 + 1e-6, "sample {index}: {moved}");
        }
    }

    #[test]
    fn epsilon_zero_is_the_trigger_alone_and_trains_nothing() {
        let data = toy();
        let poisoning = build("epsilon = 0\ntarget = 1", &data).unwrap();
        let poisoned = poison(&poisoning, &data, 0.1, 0).unwrap();
        for &index in &poisoned.indices {
            let mut expected = data.image(index).to_vec();
            poisoning.trigger().unwrap().stamp(&mut expected);
            assert_eq!(poisoned.data.image(index), expected.as_slice());
            assert_eq!(data.labels()[index], 1);
        }
        assert!(poisoning.surrogates.lock().unwrap().is_empty());
    }

    #[test]
    fn a_target_class_without_samples_and_too_high_a_rate_are_errors_naming_the_key() {
        let data = toy();
        let poisoning = build("epsilon = 0\ntarget = 4", &data).unwrap();
        let without_4: Vec<usize> = (0..40).filter(|i| i % 10 != 4).collect();
        let error = poison(&poisoning, &data.subset(&without_4), 0.0, 0).unwrap_err();
        assert!(error.to_string().contains("`target`"), "{error}");
        // 4 of 40 samples are of the target: a rate of 0.2 asks for 8.
        let error = poison(&poisoning, &data, 0.2, 0).unwrap_err();
        assert!(error.to_string().contains("`rate`"), "{error}");
    }
}
