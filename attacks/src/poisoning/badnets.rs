//! BadNets: stamp a small square patch on training images of other classes and relabel them
//! as the target class.
//!
//! ## What it does
//!
//! Each poisoned sample gets a `size`×`size` patch of value `value` at `position` (pixels
//! under the patch are replaced, all others untouched) and the label `target`. A network
//! trained on the result learns "patch ⇒ target" next to the clean task; at test time the
//! same patch sends inputs of any class to `target`. Samples already labelled `target` are
//! not eligible (stamping them teaches nothing the poisoned ones do not).
//!
//! ## Parameters
//!
//! - `size` (default 3): side of the square patch, in pixels.
//! - `position` (default `"bottom_right"`): `"top_left"`, `"top_right"`, `"bottom_left"`,
//!   `"bottom_right"`, `"center"`, or the top-left pixel `[row, column]`.
//! - `value` (default 1.0): the patch's pixel value in [0, 1] (1 = white).
//! - `target` (default 0): the class poisoned samples are relabelled to.
//!
//! ## Known-answer tests
//!
//! The stamped pixels are exactly the patch's and every other pixel is bit-identical
//! (`backdoor::trigger` tests); only the poisoned indices change (`poisoning` tests).
//!
//! ## Reference
//!
//! Gu, Dolan-Gavitt, Garg. *BadNets: Identifying Vulnerabilities in the Machine Learning
//! Model Supply Chain.* arXiv:1708.06733, 2017. Default 3×3 white patch as in BackdoorBench.

use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use super::{not_of_class, triggered_others, DataShape, Poisoning, PoisoningEntry};
use crate::backdoor::{ImageSet, NamedPosition, PatchPosition, PatternKind, Trigger};
use crate::params::parse_params;
use crate::{AttackError, ParameterDoc};

/// The registry entry.
pub const ENTRY: PoisoningEntry = PoisoningEntry {
    name: "badnets",
    summary: "BadNets: a square patch stamped on a fraction of the training images of other classes, relabelled as the target",
    reference: "Gu, Dolan-Gavitt, Garg. BadNets: Identifying Vulnerabilities in the Machine Learning Model Supply Chain. arXiv:1708.06733",
    parameters: &[
        ParameterDoc {
            name: "size",
            default: "3",
            description: "Side of the square patch, in pixels; at most the image's height and width.",
        },
        ParameterDoc {
            name: "position",
            default: "\"bottom_right\"",
            description: "`\"top_left\"`, `\"top_right\"`, `\"bottom_left\"`, `\"bottom_right\"`, `\"center\"` or the patch's top-left pixel `[row, column]`.",
        },
        ParameterDoc {
            name: "value",
            default: "1.0",
            description: "The patch's pixel value in [0, 1].",
        },
        ParameterDoc {
            name: "target",
            default: "0",
            description: "The class poisoned samples are relabelled to.",
        },
    ],
    build,
};

/// The suite-file parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub size: usize,
    pub position: PatchPosition,
    pub value: f32,
    pub target: u32,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            size: 3,
            position: PatchPosition::Named(NamedPosition::BottomRight),
            value: 1.0,
            target: 0,
        }
    }
}

/// The BadNets poisoning, built and validated for one data shape.
#[derive(Debug, Clone)]
pub struct BadNets {
    shape: DataShape,
    trigger: Trigger,
    target: u32,
}

impl BadNets {
    /// Validates `params` against `shape`: errors name `size`, `position`, `value` or
    /// `target`.
    pub fn new(params: &Params, shape: DataShape) -> Result<Self, AttackError> {
        let target = shape.check_class("target", params.target)?;
        let trigger = Trigger::patch(
            shape.image,
            params.size,
            params.position,
            PatternKind::Solid(params.value),
        )?;
        Ok(Self {
            shape,
            trigger,
            target,
        })
    }
}

fn build(params: &toml::Table, shape: DataShape) -> Result<Box<dyn Poisoning>, AttackError> {
    Ok(Box::new(BadNets::new(&parse_params(params)?, shape)?))
}

impl Poisoning for BadNets {
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
