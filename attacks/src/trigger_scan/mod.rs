//! Trigger scans: look for a backdoor in a trained model from a few hundred clean inputs,
//! with no access to its training data. One trait, one registry.
//!
//! A scan returns plain typed results: one [`ClassScan`] per class (anomaly index, mask L1,
//! flip rate, IoU with the planted trigger when it is known — whichever the scan measures),
//! the flagged classes, and the scan's own detail ([`ScanDetail`]). The harness turns these
//! into records and report sections; nothing here writes files.
//!
//! Adding a scan is one new file in `src/trigger_scan/` and one name in the
//! `register_scans!` line below.

use gauntlet_models::Model;

use crate::backdoor::{ImageSet, Trigger};
use crate::{AttackError, ModelAccess, ParameterDoc};

/// Declare each scan module and list its `ENTRY` in [`SCANS`], in the order given.
macro_rules! register_scans {
    ($($module:ident),* $(,)?) => {
        $(pub mod $module;)*
        /// Every trigger scan, in registry order.
        pub const SCANS: &[&ScanEntry] = &[$(&$module::ENTRY),*];
    };
}

register_scans! { neural_cleanse, strip, known_triggers }

/// What a scan is given.
#[derive(Debug, Clone, Copy)]
pub struct ScanData<'a> {
    /// Clean inputs with their true labels: what Neural Cleanse optimises over, what STRIP
    /// calibrates its threshold on and what the known-trigger sweep stamps.
    pub clean: &'a ImageSet,
    /// Further clean images, disjoint from `clean`, that STRIP superimposes. Other scans
    /// ignore it.
    pub held_out: Option<&'a ImageSet>,
    /// The planted trigger, when the suite knows it: scans then report the IoU of what they
    /// recover with it, and STRIP its detection rate on inputs carrying it.
    pub true_trigger: Option<&'a Trigger>,
}

/// A trigger scan.
pub trait TriggerScan: Send + Sync {
    /// The registry name, e.g. `neural_cleanse`.
    fn name(&self) -> &'static str;
    /// Scan `model`. Every random draw comes from generators keyed by `seed`, so a scan is
    /// deterministic on CPU.
    fn scan(
        &self,
        model: &dyn Model,
        data: &ScanData<'_>,
        seed: u64,
    ) -> Result<ScanReport, AttackError>;
    /// The most model passes one scan makes on `work` (an upper bound: early stops only make
    /// it cheaper), so that the harness can cost and place the work before running it.
    fn passes(&self, work: &ScanWork) -> crate::Passes;
}

/// What a scan's cost depends on, known before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanWork {
    /// Clean inputs the scan works on.
    pub clean: usize,
    /// Further clean images (STRIP's overlays come from them).
    pub held_out: usize,
    pub classes: usize,
    /// Per-sample input shape.
    pub shape: [usize; 3],
    /// Whether the planted trigger is known (STRIP then also scores triggered inputs).
    pub true_trigger: bool,
}

/// One registry entry: how to build a scan from a suite table.
pub struct ScanEntry {
    /// Key in suite files and reports.
    pub name: &'static str,
    /// One line for `gauntlet list`.
    pub summary: &'static str,
    /// Paper citation.
    pub reference: &'static str,
    /// Every key it accepts, with its default.
    pub parameters: &'static [ParameterDoc],
    /// What it needs from the model.
    pub needs: ModelAccess,
    /// Build the scan from the suite table (unknown keys and bad values are errors naming the
    /// key).
    pub build: fn(params: &toml::Table) -> Result<Box<dyn TriggerScan>, AttackError>,
}

/// The registry entry called `name`, if any.
pub fn find_scan(name: &str) -> Option<&'static ScanEntry> {
    SCANS.iter().copied().find(|entry| entry.name == name)
}

/// What one scan found.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanReport {
    /// The registry name of the scan.
    pub scan: &'static str,
    /// One entry per class of the model, in class order (empty for a per-input scan such as
    /// STRIP).
    pub classes: Vec<ClassScan>,
    /// The classes the scan flags as backdoor targets, increasing.
    pub flagged: Vec<u32>,
    /// What only this scan measures.
    pub detail: ScanDetail,
}

/// One class as a model-level scan sees it; a field is `None` when the scan does not measure
/// it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassScan {
    pub class: u32,
    /// MAD anomaly index of the class's statistic among all classes.
    pub anomaly_index: Option<f64>,
    /// L1 norm of the recovered (or best catalogue) trigger mask.
    pub mask_l1: Option<f64>,
    /// Fraction of clean inputs a trigger sends to this class: for Neural Cleanse the
    /// recovered trigger's attack success, for the known-trigger sweep the largest flip rate
    /// of any catalogue trigger.
    pub flip_rate: Option<f64>,
    /// IoU of this class's recovered mask with the true trigger's mask, when it is known.
    pub mask_iou: Option<f64>,
    pub flagged: bool,
}

/// The detail each scan adds to its per-class figures.
#[derive(Debug, Clone, PartialEq)]
pub enum ScanDetail {
    NeuralCleanse(neural_cleanse::NeuralCleanseDetail),
    Strip(strip::StripDetail),
    KnownTriggers(known_triggers::KnownTriggerDetail),
}

/// A scan parameter given as a fraction: an error naming `key` unless it is in [0, 1].
pub(crate) fn check_fraction(key: &str, value: f64) -> Result<(), AttackError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(AttackError::invalid_parameter(
            key,
            format!("must be a fraction in [0, 1], got {value}"),
        ))
    }
}

/// A scan parameter that counts something: an error naming `key` when it is 0.
pub(crate) fn check_positive(key: &str, value: usize) -> Result<(), AttackError> {
    if value == 0 {
        Err(AttackError::invalid_parameter(
            key,
            "must be at least 1, got 0",
        ))
    } else {
        Ok(())
    }
}

/// An error unless the clean set has images of the model's shape and classes.
pub(crate) fn check_model_data(
    model: &dyn Model,
    images: &ImageSet,
    key: &str,
) -> Result<(), AttackError> {
    if images.is_empty() {
        return Err(AttackError::invalid_parameter(
            key,
            "a scan needs at least one clean input",
        ));
    }
    if model.input_shape() != images.shape() {
        return Err(AttackError::ShapeMismatch {
            what: "scan inputs vs the model's input shape",
            expected: model.input_shape().to_vec(),
            actual: images.shape().to_vec(),
        });
    }
    if images.num_classes() != model.num_classes() {
        return Err(AttackError::ShapeMismatch {
            what: "classes of the scan inputs vs the model's",
            expected: vec![model.num_classes()],
            actual: vec![images.num_classes()],
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use gauntlet_models::testing::LinearModel;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A 3-class linear model on 1×4×4 images and 40 clean inputs, from fixed seeds.
    fn fixture() -> (LinearModel, ImageSet, ImageSet) {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let weight = (0..3 * 16)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let model = LinearModel::new(weight, vec![0.0; 3], vec![1, 4, 4], 3, &Device::Cpu).unwrap();
        let mut images = |n: usize| {
            let pixels = (0..n * 16).map(|_| rng.random::<f32>()).collect();
            let labels = (0..n).map(|i| (i % 3) as u32).collect();
            ImageSet::new([1, 4, 4], pixels, labels, 3).unwrap()
        };
        let clean = images(40);
        let held_out = images(12);
        (model, clean, held_out)
    }

    fn quick(name: &str) -> Box<dyn TriggerScan> {
        let params = match name {
            "neural_cleanse" => "epochs = 3\nbatch_size = 16",
            "strip" => "overlays = 10",
            _ => "",
        };
        (find_scan(name).unwrap().build)(&toml::from_str(params).unwrap()).unwrap()
    }

    #[test]
    fn every_scan_is_deterministic_per_seed_and_reports_every_class() {
        let (model, clean, held_out) = fixture();
        let truth = Trigger::patch(
            [1, 4, 4],
            2,
            crate::backdoor::PatchPosition::At([0, 0]),
            crate::backdoor::PatternKind::Solid(1.0),
        )
        .unwrap();
        let data = ScanData {
            clean: &clean,
            held_out: Some(&held_out),
            true_trigger: Some(&truth),
        };
        for entry in SCANS {
            let scan = quick(entry.name);
            let first = scan.scan(&model, &data, 5).unwrap();
            assert_eq!(
                first,
                scan.scan(&model, &data, 5).unwrap(),
                "{}",
                entry.name
            );
            assert_eq!(first.scan, entry.name);
            if entry.name != "strip" {
                assert_eq!(first.classes.len(), 3, "{}", entry.name);
            }
        }
        // Neural Cleanse draws its initial mask and pattern from the seed.
        let scan = quick("neural_cleanse");
        assert_ne!(
            scan.scan(&model, &data, 5).unwrap(),
            scan.scan(&model, &data, 6).unwrap()
        );
    }

    #[test]
    fn every_scan_declares_at_least_the_passes_it_makes() {
        let (model, clean, held_out) = fixture();
        let truth = Trigger::patch(
            [1, 4, 4],
            2,
            crate::backdoor::PatchPosition::At([0, 0]),
            crate::backdoor::PatternKind::Solid(1.0),
        )
        .unwrap();
        for true_trigger in [false, true] {
            let data = ScanData {
                clean: &clean,
                held_out: Some(&held_out),
                true_trigger: true_trigger.then_some(&truth),
            };
            let work = ScanWork {
                clean: clean.len(),
                held_out: held_out.len(),
                classes: 3,
                shape: [1, 4, 4],
                true_trigger,
            };
            for entry in SCANS {
                let scan = quick(entry.name);
                let counting = gauntlet_models::testing::CountingModel::new(model.clone());
                scan.scan(&counting, &data, 5).unwrap();
                let declared = scan.passes(&work);
                let (forward, backward) = counting.counts();
                assert!(
                    forward <= declared.forward && backward <= declared.backward,
                    "{}: made {forward} forward and {backward} backward, declared {declared}",
                    entry.name
                );
                // The forward-only scans make exactly what they declare; Neural Cleanse stops
                // early at most, and makes at least one epoch per class.
                if entry.name == "neural_cleanse" {
                    assert!(backward >= 3 * clean.len() as u64, "{backward}");
                } else {
                    assert_eq!(forward, declared.forward, "{}", entry.name);
                }
            }
        }
    }

    #[test]
    fn documented_defaults_parse_and_unknown_keys_are_named() {
        for entry in SCANS {
            for doc in entry.parameters {
                let table: toml::Table =
                    toml::from_str(&format!("{} = {}", doc.name, doc.default)).unwrap();
                (entry.build)(&table).unwrap_or_else(|error| {
                    panic!(
                        "{}: documented default of `{}`: {error}",
                        entry.name, doc.name
                    )
                });
            }
            let table: toml::Table = toml::from_str("no_such_key = 1").unwrap();
            let error = (entry.build)(&table).err().unwrap();
            assert!(error.to_string().contains("`no_such_key`"), "{error}");
        }
        for entry in crate::data_scan::DATA_SCANS {
            for doc in entry.parameters {
                let table: toml::Table =
                    toml::from_str(&format!("{} = {}", doc.name, doc.default)).unwrap();
                (entry.build)(&table).unwrap_or_else(|error| {
                    panic!(
                        "{}: documented default of `{}`: {error}",
                        entry.name, doc.name
                    )
                });
            }
        }
    }

    #[test]
    fn strip_without_held_out_images_or_with_too_few_names_the_key() {
        let (model, clean, held_out) = fixture();
        let scan = quick("strip");
        let data = ScanData {
            clean: &clean,
            held_out: None,
            true_trigger: None,
        };
        let error = scan.scan(&model, &data, 0).unwrap_err();
        assert!(error.to_string().contains("`held_out`"), "{error}");
        let few = held_out.subset(&[0, 1, 2]);
        let data = ScanData {
            held_out: Some(&few),
            ..data
        };
        let error = scan.scan(&model, &data, 0).unwrap_err();
        assert!(error.to_string().contains("`overlays`"), "{error}");
    }
}
