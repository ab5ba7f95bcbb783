//! Blended trigger: mix a full-image pattern into training images of other classes with
//! weight α and relabel them as the target class.
//!
//! ## What it does
//!
//! Each poisoned sample becomes `(1 − α)·x + α·p` for a fixed pattern `p` and gets the label
//! `target`. Unlike a patch, the trigger touches every pixel a little, so it survives where a
//! corner patch is cropped and is harder to see at small α.
//!
//! ## Parameters
//!
//! - `pattern` (default `"noise"`): `"noise"` (uniform values from a generator keyed by
//!   `pattern_seed`), `"checkerboard"`, `"horizontal_stripes"` or `"vertical_stripes"`.
//! - `pattern_seed` (default 0): the noise pattern's seed, independent of the run seed so the
//!   trigger is the same at every poisoning seed.
//! - `alpha` (default 0.2): the blend weight in [0, 1], as in Chen et al.'s training-time
//!   blend.
//! - `target` (default 0): the class poisoned samples are relabelled to.
//!
//! ## Known-answer tests
//!
//! A checkerboard blend at α = 0.25 of a constant image gives exactly `0.75·x + 0.25·p` at
//! every pixel (`backdoor::trigger` tests).
//!
//! ## Reference
//!
//! Chen, Liu, Li, Lu, Song. *Targeted Backdoor Attacks on Deep Learning Systems Using Data
//! Poisoning.* arXiv:1712.05526, 2017 (the blended injection strategy).

use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use super::{not_of_class, triggered_others, DataShape, Poisoning, PoisoningEntry};
use crate::backdoor::{ImageSet, PatternKind, Trigger};
use crate::params::parse_params;
use crate::{AttackError, ParameterDoc};

/// The registry entry.
pub const ENTRY: PoisoningEntry = PoisoningEntry {
    name: "blend",
    summary: "Blended trigger: a full-image pattern mixed in with weight α on a fraction of the training images of other classes, relabelled as the target",
    reference: "Chen, Liu, Li, Lu, Song. Targeted Backdoor Attacks on Deep Learning Systems Using Data Poisoning. arXiv:1712.05526",
    parameters: &[
        ParameterDoc {
            name: "pattern",
            default: "\"noise\"",
            description: "`\"noise\"`, `\"checkerboard\"`, `\"horizontal_stripes\"` or `\"vertical_stripes\"`.",
        },
        ParameterDoc {
            name: "pattern_seed",
            default: "0",
            description: "Seed of the noise pattern (the trigger is the same at every run seed).",
        },
        ParameterDoc {
            name: "alpha",
            default: "0.2",
            description: "Blend weight α in [0, 1]: poisoned images are (1 − α)·x + α·pattern.",
        },
        ParameterDoc {
            name: "target",
            default: "0",
            description: "The class poisoned samples are relabelled to.",
        },
    ],
    build,
};

/// Which full-image pattern is blended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlendPattern {
    Noise,
    Checkerboard,
    HorizontalStripes,
    VerticalStripes,
}

/// The suite-file parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub pattern: BlendPattern,
    pub pattern_seed: u64,
    pub alpha: f32,
    pub target: u32,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            pattern: BlendPattern::Noise,
            pattern_seed: 0,
            alpha: 0.2,
            target: 0,
        }
    }
}

/// The blended-trigger poisoning, built and validated for one data shape.
#[derive(Debug, Clone)]
pub struct Blend {
    shape: DataShape,
    trigger: Trigger,
    target: u32,
}

impl Blend {
    /// Validates `params` against `shape`: errors name `alpha` or `target`.
    pub fn new(params: &Params, shape: DataShape) -> Result<Self, AttackError> {
        let target = shape.check_class("target", params.target)?;
        let pattern = match params.pattern {
            BlendPattern::Noise => PatternKind::Noise {
                seed: params.pattern_seed,
            },
            BlendPattern::Checkerboard => PatternKind::Checkerboard,
            BlendPattern::HorizontalStripes => PatternKind::HorizontalStripes,
            BlendPattern::VerticalStripes => PatternKind::VerticalStripes,
        };
        let trigger = Trigger::blend(shape.image, pattern, params.alpha)?;
        Ok(Self {
            shape,
            trigger,
            target,
        })
    }
}

fn build(params: &toml::Table, shape: DataShape) -> Result<Box<dyn Poisoning>, AttackError> {
    Ok(Box::new(Blend::new(&parse_params(params)?, shape)?))
}

impl Poisoning for Blend {
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

    fn eligible(&self, data: &ImageSet) -> Result<Vec<usize>, AttackError> {
        Ok(not_of_class(data, self.target))
    }

    fn poison_sample(&self, image: &mut [f32], label: &mut u32, _rng: &mut ChaCha8Rng) {
        self.trigger.stamp(image);
        *label = self.target;
    }

    fn attack_inputs(&self, test: &ImageSet) -> Result<Option<ImageSet>, AttackError> {
        triggered_others(&self.trigger, self.target, test).map(Some)
    }
}
