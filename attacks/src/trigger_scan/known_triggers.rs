//! Known-trigger sweep: stamp a fixed catalogue of common triggers on clean inputs and see
//! which ones send many inputs to one class.
//!
//! ## What it does
//!
//! The catalogue ([`catalogue`]) holds white and checkerboard square patches at the four
//! corners and the centre in three sizes (⌈⅛⌉, ¼ and ⅜ of the shorter side, rounded, at
//! least 1 pixel, duplicates dropped) and full-image blends of noise, horizontal stripes and
//! vertical stripes at α = 0.2: the triggers BadNets-style and blended poisonings use most.
//! For each trigger `t` and class `c`, the flip rate is the fraction of clean inputs *not*
//! predicted `c` before stamping that are predicted `c` after.
//!
//! A pair `(t, c)` is flagged when both hold: its flip rate is at least `min_flip_rate`
//! (default 0.5: one trigger sends most inputs to one class), and it is a high-side outlier
//! among all pairs' flip rates, MAD anomaly index above `anomaly_threshold` (default 2, as in
//! Neural Cleanse; the MAD conventions of [`crate::backdoor::anomaly`]). The first condition
//! alone would flag a model that any large patch confuses everywhere; the second alone would
//! flag a handful of flips when almost all rates are 0. A class is flagged when any of its
//! pairs is.
//!
//! ## Threat model
//!
//! Labels only (predicted classes); clean inputs.
//!
//! ## Parameters
//!
//! - `min_flip_rate` (default 0.5), `anomaly_threshold` (default 2.0), `batch_size` (default
//!   256), `iou_threshold` (default 0.5, for the IoU of the best trigger with a known one).
//!
//! ## Known-answer tests
//!
//! The catalogue's patches are exact (`backdoor::trigger` tests); on UCI digits the BadNets
//! model's planted patch is found and flagged (`tests/it/backdoor.rs`).
//!
//! ## Reference
//!
//! A screening step in the spirit of the trigger catalogues of TrojanZoo and BackdoorBench
//! (which plant these patterns); there is no single paper.

use gauntlet_models::Model;
use serde::Deserialize;

use super::{
    check_fraction, check_model_data, check_positive, ClassScan, ScanData, ScanDetail, ScanEntry,
    ScanReport, TriggerScan,
};
use crate::backdoor::{
    predictions, AnomalyIndices, NamedPosition, PatchPosition, PatternKind, Trigger,
};
use crate::params::parse_params;
use crate::{AttackError, ModelAccess, ParameterDoc};

/// The registry entry.
pub const ENTRY: ScanEntry = ScanEntry {
    name: "known_triggers",
    summary: "Known-trigger sweep: corner/centre patches (white, checkerboard) in three sizes and noise/stripe blends; flags (trigger, class) pairs with an outlying flip rate",
    reference: "Screening with the trigger families of BadNets (Gu et al. 2017) and blended injection (Chen et al. 2017)",
    parameters: &[
        ParameterDoc { name: "min_flip_rate", default: "0.5", description: "A flagged pair sends at least this fraction of inputs of other predictions to its class." },
        ParameterDoc { name: "anomaly_threshold", default: "2.0", description: "…and its flip rate's MAD anomaly index among all pairs exceeds this." },
        ParameterDoc { name: "batch_size", default: "256", description: "Inputs per forward pass." },
        ParameterDoc { name: "iou_threshold", default: "0.5", description: "Mask values above this count as trigger pixels for the IoU with a known trigger." },
    ],
    needs: ModelAccess::Labels,
    build,
};

/// The suite-file parameters.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub min_flip_rate: f64,
    pub anomaly_threshold: f64,
    pub batch_size: usize,
    pub iou_threshold: f32,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            min_flip_rate: 0.5,
            anomaly_threshold: 2.0,
            batch_size: 256,
            iou_threshold: 0.5,
        }
    }
}

/// The sweep with validated parameters.
#[derive(Debug, Clone)]
pub struct KnownTriggers {
    params: Params,
}

impl KnownTriggers {
    /// Errors name the bad key.
    pub fn new(params: Params) -> Result<Self, AttackError> {
        check_fraction("min_flip_rate", params.min_flip_rate)?;
        if params.anomaly_threshold.is_nan() || params.anomaly_threshold < 0.0 {
            return Err(AttackError::invalid_parameter(
                "anomaly_threshold",
                format!("must be ≥ 0, got {}", params.anomaly_threshold),
            ));
        }
        check_positive("batch_size", params.batch_size)?;
        check_fraction("iou_threshold", f64::from(params.iou_threshold))?;
        Ok(Self { params })
    }
}

fn build(params: &toml::Table) -> Result<Box<dyn TriggerScan>, AttackError> {
    Ok(Box::new(KnownTriggers::new(parse_params(params)?)?))
}

/// One catalogue trigger and its name.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTrigger {
    /// E.g. `white 3×3 bottom_right`, `noise blend α=0.2`.
    pub name: String,
    pub trigger: Trigger,
}

/// The catalogue for images of `shape` (see the module docs).
pub fn catalogue(shape: [usize; 3]) -> Vec<NamedTrigger> {
    let [_, height, width] = shape;
    let side = height.min(width);
    let mut sizes: Vec<usize> = [1.0 / 8.0, 1.0 / 4.0, 3.0 / 8.0]
        .iter()
        .map(|fraction| ((side as f64 * fraction).round() as usize).clamp(1, side))
        .collect();
    sizes.dedup();
    let mut triggers = Vec::new();
    for &size in &sizes {
        for position in NamedPosition::ALL {
            for (label, pattern) in [
                ("white", PatternKind::Solid(1.0)),
                ("checkerboard", PatternKind::Checkerboard),
            ] {
                if let Ok(trigger) =
                    Trigger::patch(shape, size, PatchPosition::Named(position), pattern)
                {
                    triggers.push(NamedTrigger {
                        name: format!("{label} {size}×{size} {}", position.as_str()),
                        trigger,
                    });
                }
            }
        }
    }
    for (label, pattern) in [
        ("noise", PatternKind::Noise { seed: 0 }),
        ("horizontal stripes", PatternKind::HorizontalStripes),
        ("vertical stripes", PatternKind::VerticalStripes),
    ] {
        if let Ok(trigger) = Trigger::blend(shape, pattern, 0.2) {
            triggers.push(NamedTrigger {
                name: format!("{label} blend α=0.2"),
                trigger,
            });
        }
    }
    triggers
}

/// What the sweep measured.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownTriggerDetail {
    /// The catalogue, in sweep order.
    pub triggers: Vec<NamedTrigger>,
    /// `flip_rates[t][c]`: the flip rate of trigger `t` into class `c`; `None` when every
    /// input was already predicted `c`.
    pub flip_rates: Vec<Vec<Option<f64>>>,
    /// The flagged `(trigger, class)` pairs, by trigger then class.
    pub flagged_pairs: Vec<(usize, u32)>,
    /// Median and MAD of all defined flip rates.
    pub median: f64,
    pub mad: f64,
}

impl TriggerScan for KnownTriggers {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    /// The clean inputs once, then stamped with every trigger of the catalogue.
    fn passes(&self, work: &super::ScanWork) -> crate::Passes {
        let triggers = catalogue(work.shape).len() as u64;
        crate::Passes::forwards((work.clean as u64).saturating_mul(1 + triggers))
    }

    fn scan(
        &self,
        model: &dyn Model,
        data: &ScanData<'_>,
        _seed: u64,
    ) -> Result<ScanReport, AttackError> {
        check_model_data(model, data.clean, "clean")?;
        let classes = model.num_classes();
        let before = predictions(model, data.clean, self.params.batch_size)?;
        let triggers = catalogue(data.clean.shape());
        let mut flip_rates = Vec::with_capacity(triggers.len());
        for named in &triggers {
            let after = predictions(
                model,
                &named.trigger.stamp_all(data.clean)?,
                self.params.batch_size,
            )?;
            let rates = (0..classes as u32)
                .map(|class| {
                    let (mut flips, mut total) = (0usize, 0usize);
                    for (&b, &a) in before.iter().zip(&after) {
                        if b != class {
                            total += 1;
                            flips += usize::from(a == class);
                        }
                    }
                    (total > 0).then(|| flips as f64 / total as f64)
                })
                .collect::<Vec<_>>();
            flip_rates.push(rates);
        }
        let defined: Vec<f64> = flip_rates.iter().flatten().flatten().copied().collect();
        let anomaly = AnomalyIndices::of(&defined).unwrap_or(AnomalyIndices {
            median: 0.0,
            mad: 0.0,
            indices: Vec::new(),
        });
        let scale = crate::backdoor::MAD_CONSISTENCY * anomaly.mad;
        let is_outlier = |rate: f64| {
            rate > anomaly.median
                && (scale == 0.0 || (rate - anomaly.median) / scale > self.params.anomaly_threshold)
        };
        let mut flagged_pairs = Vec::new();
        for (t, rates) in flip_rates.iter().enumerate() {
            for (class, rate) in rates.iter().enumerate() {
                if let Some(rate) = *rate {
                    if rate >= self.params.min_flip_rate && is_outlier(rate) {
                        flagged_pairs.push((t, class as u32));
                    }
                }
            }
        }
        let mut flagged: Vec<u32> = flagged_pairs.iter().map(|&(_, c)| c).collect();
        flagged.sort_unstable();
        flagged.dedup();
        let per_class = (0..classes)
            .map(|class| {
                let best = flip_rates
                    .iter()
                    .enumerate()
                    .filter_map(|(t, rates)| rates[class].map(|rate| (t, rate)))
                    .max_by(|a, b| a.1.total_cmp(&b.1));
                let index = best.map(|(_, rate)| {
                    if rate <= anomaly.median {
                        0.0
                    } else if scale == 0.0 {
                        f64::INFINITY
                    } else {
                        (rate - anomaly.median) / scale
                    }
                });
                ClassScan {
                    class: class as u32,
                    anomaly_index: index,
                    mask_l1: best.map(|(t, _)| triggers[t].trigger.mask_l1()),
                    flip_rate: best.map(|(_, rate)| rate),
                    mask_iou: best.and_then(|(t, _)| {
                        data.true_trigger.and_then(|truth| {
                            triggers[t]
                                .trigger
                                .mask_iou(truth, self.params.iou_threshold)
                        })
                    }),
                    flagged: flagged.contains(&(class as u32)),
                }
            })
            .collect();
        Ok(ScanReport {
            scan: ENTRY.name,
            classes: per_class,
            flagged,
            detail: ScanDetail::KnownTriggers(KnownTriggerDetail {
                triggers,
                flip_rates,
                flagged_pairs,
                median: anomaly.median,
                mad: anomaly.mad,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_for_8x8_digits() {
        let triggers = catalogue([1, 8, 8]);
        // Sizes 1, 2, 3; 5 positions; 2 patterns; plus 3 blends.
        assert_eq!(triggers.len(), 3 * 5 * 2 + 3);
        assert!(triggers.iter().any(|t| t.name == "white 3×3 bottom_right"));
        let mut names: Vec<&str> = triggers.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), triggers.len(), "names are unique");
    }
}
