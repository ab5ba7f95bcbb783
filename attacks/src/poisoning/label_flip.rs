//! Label flipping: change the labels of a fraction of the training samples, images untouched.
//!
//! ## What it does
//!
//! - Random (no `source`, no `target`): each poisoned sample gets a label drawn uniformly
//!   from the classes other than its own, from that sample's seeded generator. This degrades
//!   clean accuracy; there is no attack success rate.
//! - Class-targeted (`source` and/or `target`): samples of `source` (every class but
//!   `target` when `source` is absent) are relabelled `target` (a uniformly drawn other class
//!   when `target` is absent). Success is a clean test input of `source` predicted as
//!   `target`.
//!
//! ## Parameters
//!
//! - `source` (default none): the only class whose samples are flipped.
//! - `target` (default none): the label flipped samples get.
//!
//! ## Known-answer tests
//!
//! Only the poisoned indices change label, images are bit-identical, and a random flip never
//! gives a sample its own label (`tests` below).
//!
//! ## Reference
//!
//! Biggio, Nelson, Laskov. *Poisoning Attacks against Support Vector Machines.* ICML 2012
//! (label flipping as the baseline poisoning); BackdoorBench's `lf` attack.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use super::{DataShape, Poisoning, PoisoningEntry};
use crate::backdoor::{ImageSet, Trigger};
use crate::params::parse_params;
use crate::{AttackError, ParameterDoc};

/// The registry entry.
pub const ENTRY: PoisoningEntry = PoisoningEntry {
    name: "label_flip",
    summary: "Label flipping: a fraction of the training labels changed at random, or from a source class to a target class; images untouched",
    reference: "Biggio, Nelson, Laskov. Poisoning Attacks against Support Vector Machines. ICML 2012",
    parameters: &[
        ParameterDoc {
            name: "source",
            default: "none",
            description: "Only samples of this class are flipped (every class but `target` when absent).",
        },
        ParameterDoc {
            name: "target",
            default: "none",
            description: "The label flipped samples get (a uniformly drawn other class when absent).",
        },
    ],
    build,
};

/// The suite-file parameters.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub source: Option<u32>,
    pub target: Option<u32>,
}

/// Label flipping, built and validated for one data shape.
#[derive(Debug, Clone)]
pub struct LabelFlip {
    shape: DataShape,
    source: Option<u32>,
    target: Option<u32>,
}

impl LabelFlip {
    /// Validates `params` against `shape`: errors name `source` or `target` (a class that does
    /// not exist, the same class twice, or a random flip with a single class).
    pub fn new(params: &Params, shape: DataShape) -> Result<Self, AttackError> {
        let source = params
            .source
            .map(|class| shape.check_class("source", class))
            .transpose()?;
        let target = params
            .target
            .map(|class| shape.check_class("target", class))
            .transpose()?;
        if source.is_some() && source == target {
            return Err(AttackError::invalid_parameter(
                "target",
                format!(
                    "flipping class {} to itself changes nothing; choose another target",
                    target.unwrap_or_default()
                ),
            ));
        }
        if target.is_none() && shape.num_classes < 2 {
            return Err(AttackError::invalid_parameter(
                "target",
                "a random flip needs at least two classes",
            ));
        }
        Ok(Self {
            shape,
            source,
            target,
        })
    }
}

fn build(params: &toml::Table, shape: DataShape) -> Result<Box<dyn Poisoning>, AttackError> {
    Ok(Box::new(LabelFlip::new(&parse_params(params)?, shape)?))
}

impl Poisoning for LabelFlip {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn data_shape(&self) -> DataShape {
        self.shape
    }

    fn target(&self) -> Option<u32> {
        self.target
    }

    fn trigger(&self) -> Option<&Trigger> {
        None
    }

    fn eligible(&self, data: &ImageSet) -> Result<Vec<usize>, AttackError> {
        if let Some(source) = self.source {
            if data.class_counts()[source as usize] == 0 {
                return Err(AttackError::invalid_parameter(
                    "source",
                    format!("class {source} has no samples in the training data"),
                ));
            }
        }
        Ok((0..data.len())
            .filter(|&i| {
                let label = data.labels()[i];
                self.source.is_none_or(|source| label == source)
                    && self.target.is_none_or(|target| label != target)
            })
            .collect())
    }

    fn poison_sample(&self, _image: &mut [f32], label: &mut u32, rng: &mut ChaCha8Rng) {
        *label = match self.target {
            Some(target) => target,
            None => {
                // Uniform over the other classes: draw from n − 1 and skip the own label.
                let draw = rng.random_range(0..self.shape.num_classes as u32 - 1);
                if draw >= *label {
                    draw + 1
                } else {
                    draw
                }
            }
        };
    }

    fn attack_inputs(&self, test: &ImageSet) -> Result<Option<ImageSet>, AttackError> {
        let Some(target) = self.target else {
            return Ok(None);
        };
        let attacked: Vec<usize> = (0..test.len())
            .filter(|&i| {
                let label = test.labels()[i];
                label != target && self.source.is_none_or(|source| label == source)
            })
            .collect();
        Ok(Some(test.subset(&attacked)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poisoning::poison;

    fn data() -> ImageSet {
        let labels: Vec<u32> = (0..300).map(|i| (i % 3) as u32).collect();
        let pixels = (0..300 * 4).map(|i| (i % 7) as f32 / 7.0).collect();
        ImageSet::new([1, 2, 2], pixels, labels, 3).unwrap()
    }

    #[test]
    fn a_random_flip_changes_only_labels_never_to_the_same_class_and_uses_every_other_class() {
        let data = data();
        let flip = LabelFlip::new(&Params::default(), DataShape::of(&data)).unwrap();
        let poisoned = poison(&flip, &data, 0.5, 4).unwrap();
        assert_eq!(poisoned.data.pixels(), data.pixels());
        let mut seen = [[0usize; 3]; 3];
        for i in 0..data.len() {
            let (before, after) = (data.labels()[i], poisoned.data.labels()[i]);
            if poisoned.indices.binary_search(&i).is_ok() {
                assert_ne!(before, after, "sample {i} kept its label");
                seen[before as usize][after as usize] += 1;
            } else {
                assert_eq!(before, after, "sample {i} changed without being poisoned");
            }
        }
        for from in 0..3 {
            for to in 0..3 {
                assert_eq!(seen[from][to] > 0, from != to, "{from} → {to}: {seen:?}");
            }
        }
    }

    #[test]
    fn a_class_targeted_flip_moves_the_source_to_the_target() {
        let data = data();
        let params = Params {
            source: Some(1),
            target: Some(2),
        };
        let flip = LabelFlip::new(&params, DataShape::of(&data)).unwrap();
        // 100 samples of class 1; 0.2·300 = 60 of them flipped.
        let poisoned = poison(&flip, &data, 0.2, 0).unwrap();
        assert_eq!(poisoned.indices.len(), 60);
        for &i in &poisoned.indices {
            assert_eq!((data.labels()[i], poisoned.data.labels()[i]), (1, 2));
        }
        let attacked = flip.attack_inputs(&data).unwrap().unwrap();
        assert_eq!(attacked.len(), 100);
        assert!(attacked.labels().iter().all(|&l| l == 1));
    }
}
