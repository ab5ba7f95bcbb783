//! Poisonings of a training set, behind one trait and a registry.
//!
//! A poisoning chooses which training samples it may touch ([`Poisoning::eligible`]) and
//! rewrites one sample (image and label, [`Poisoning::poison_sample`]); [`poison`] does the
//! rest the same way for all of them: how many samples, which ones, the per-sample
//! randomness, and the ground truth (the poisoned indices). A poisoning that needs the whole
//! clean training set to rewrite its samples (a clean-label attack's surrogate model)
//! overrides [`Poisoning::poison_samples`] instead.
//!
//! **How many.** A rate `r` of a training set of `n` samples poisons `round(r·n)` samples,
//! rounding half away from zero (`f64::round`): `r` is the fraction of the *whole* training
//! set that is modified, as BackdoorBench's `pratio`, whatever the poisoning may touch. A rate
//! outside [0, 1], or one asking for more samples than are eligible, is an error naming
//! `rate`.
//!
//! **Which ones.** The eligible indices are shuffled once by a ChaCha8 generator keyed by
//! (seed, `poisoning <name>`) and the first `round(r·n)` are taken, so at one seed the
//! samples poisoned at a lower rate are a subset of those poisoned at a higher one: a sweep
//! over rates adds poison rather than redrawing it. Any per-sample draw (a random new label)
//! comes from that sample's generator keyed by its index in the training set
//! ([`crate::SampleRandomness`]).
//!
//! Adding a poisoning is one new file in `src/poisoning/` and one name in the
//! `register_poisonings!` line below.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::backdoor::{predictions, ImageSet, Rate, Trigger};
use crate::{AttackError, ParameterDoc, SampleRandomness, Stream};

pub mod sweep;

/// Declare each poisoning module and list its `ENTRY` in [`POISONINGS`], in the order given.
macro_rules! register_poisonings {
    ($($module:ident),* $(,)?) => {
        $(pub mod $module;)*
        /// Every poisoning, in registry order.
        pub const POISONINGS: &[&PoisoningEntry] = &[$(&$module::ENTRY),*];
    };
}

register_poisonings! { badnets, blend, label_flip, label_consistent }

/// What a poisoning is built for: images of one shape and a number of classes. A trigger
/// must fit the image and a target must be a class, so both are checked when the poisoning
/// is built, before any training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataShape {
    /// `[C, H, W]`.
    pub image: [usize; 3],
    pub num_classes: usize,
}

impl DataShape {
    /// The shape of `data`.
    pub fn of(data: &ImageSet) -> Self {
        Self {
            image: data.shape(),
            num_classes: data.num_classes(),
        }
    }

    /// `class` under `key` if it is one of the classes, else an error naming `key`.
    pub fn check_class(&self, key: &str, class: u32) -> Result<u32, AttackError> {
        if (class as usize) < self.num_classes {
            Ok(class)
        } else {
            Err(AttackError::invalid_parameter(
                key,
                format!(
                    "class {class} does not exist: the data has {} classes (0 to {})",
                    self.num_classes,
                    self.num_classes.saturating_sub(1)
                ),
            ))
        }
    }
}

/// A poisoning of a training set.
pub trait Poisoning: Send + Sync {
    /// The registry name, e.g. `badnets`.
    fn name(&self) -> &'static str;
    /// The data it was built for.
    fn data_shape(&self) -> DataShape;
    /// The class the poisoned model should predict when attacked: a backdoor's target, a
    /// class-targeted flip's new label. `None` for a random label flip.
    fn target(&self) -> Option<u32>;
    /// The trigger an attacker stamps on test inputs; `None` for label flipping.
    fn trigger(&self) -> Option<&Trigger>;
    /// The training samples the poisoning may modify, in increasing order. Errors name the
    /// parameter that leaves a class without samples (e.g. `source`).
    fn eligible(&self, data: &ImageSet) -> Result<Vec<usize>, AttackError>;
    /// Poison one sample in place. `rng` is that sample's own generator.
    fn poison_sample(&self, image: &mut [f32], label: &mut u32, rng: &mut ChaCha8Rng);
    /// Poison the samples at `indices` (increasing) of `data`, still the clean training set
    /// on entry, in place; `randomness` has one generator per index, in order, under the run
    /// `seed`. The default rewrites each sample alone with [`Poisoning::poison_sample`]; a
    /// poisoning that needs the whole clean set (the label-consistent attack trains a
    /// surrogate on it) overrides this.
    fn poison_samples(
        &self,
        data: &mut ImageSet,
        indices: &[usize],
        seed: u64,
        randomness: &SampleRandomness,
    ) -> Result<(), AttackError> {
        let _ = seed;
        for (position, &index) in indices.iter().enumerate() {
            let (image, label) = data.sample_mut(index);
            let mut rng = randomness.generator(position, Stream::Targets);
            self.poison_sample(image, label, &mut rng);
        }
        Ok(())
    }
    /// The test inputs on which success means "predicted [`Poisoning::target`]": for a
    /// backdoor the triggered test inputs of the other classes, for a class-targeted flip the
    /// clean inputs of the source class. `None` when the poisoning has no target.
    fn attack_inputs(&self, test: &ImageSet) -> Result<Option<ImageSet>, AttackError>;
}

/// One registry entry: how to build a poisoning from a suite table.
pub struct PoisoningEntry {
    /// Key in suite files and reports.
    pub name: &'static str,
    /// One line for `gauntlet list`.
    pub summary: &'static str,
    /// Paper citation.
    pub reference: &'static str,
    /// Every key it accepts, with its default.
    pub parameters: &'static [ParameterDoc],
    /// Build the poisoning for data of `shape` from the suite table (unknown keys and bad
    /// values are errors naming the key).
    pub build: BuildPoisoning,
}

/// How a registry entry builds its poisoning: `(params, data shape) → poisoning`.
pub type BuildPoisoning =
    fn(params: &toml::Table, shape: DataShape) -> Result<Box<dyn Poisoning>, AttackError>;

/// The registry entry called `name`, if any.
pub fn find_poisoning(name: &str) -> Option<&'static PoisoningEntry> {
    POISONINGS.iter().copied().find(|entry| entry.name == name)
}

/// A poisoned training set and its ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct Poisoned {
    /// The training set with the poisoned samples rewritten (same order and size).
    pub data: ImageSet,
    /// Indices of the poisoned samples in the training set, increasing.
    pub indices: Vec<usize>,
}

/// `round(rate·total)` (half away from zero), after checking `rate` is in [0, 1].
pub fn poisoned_count(rate: f64, total: usize) -> Result<usize, AttackError> {
    if !(0.0..=1.0).contains(&rate) {
        return Err(AttackError::invalid_parameter(
            "rate",
            format!("the poison rate is a fraction of the training set and must be in [0, 1], got {rate}"),
        ));
    }
    Ok((rate * total as f64).round() as usize)
}

/// Poison `round(rate·n)` samples of `data` (see the module docs for which ones), seeded by
/// `seed`.
pub fn poison(
    poisoning: &dyn Poisoning,
    data: &ImageSet,
    rate: f64,
    seed: u64,
) -> Result<Poisoned, AttackError> {
    check_data(poisoning, data)?;
    let count = poisoned_count(rate, data.len())?;
    let mut eligible = poisoning.eligible(data)?;
    if count > eligible.len() {
        return Err(AttackError::invalid_parameter(
            "rate",
            format!(
                "a rate of {rate} poisons {count} of the {} training samples, but only {} are \
                 eligible for `{}`",
                data.len(),
                eligible.len(),
                poisoning.name()
            ),
        ));
    }
    let purpose = format!("poisoning {}", poisoning.name());
    let mut selection_rng =
        SampleRandomness::for_samples(seed, &purpose, [usize::MAX]).generator(0, Stream::Custom(0));
    // Fisher–Yates from the front: the first `k` positions are a uniform k-subset for every k,
    // so lower rates poison a prefix of what higher rates poison.
    for position in 0..count {
        let swap = selection_rng.random_range(position..eligible.len());
        eligible.swap(position, swap);
    }
    let mut indices = eligible[..count].to_vec();
    indices.sort_unstable();
    let randomness = SampleRandomness::for_samples(seed, &purpose, indices.iter().copied());
    let mut poisoned = data.clone();
    poisoning.poison_samples(&mut poisoned, &indices, seed, &randomness)?;
    Ok(Poisoned {
        data: poisoned,
        indices,
    })
}

/// The attack success rate of `model` under `poisoning` on the test set `test`: of
/// [`Poisoning::attack_inputs`], how many the model assigns to [`Poisoning::target`]. `None`
/// for a poisoning without a target.
pub fn attack_success_rate(
    model: &dyn gauntlet_models::Model,
    poisoning: &dyn Poisoning,
    test: &ImageSet,
    batch_size: usize,
) -> Result<Option<Rate>, AttackError> {
    check_data(poisoning, test)?;
    let (Some(target), Some(inputs)) = (poisoning.target(), poisoning.attack_inputs(test)?) else {
        return Ok(None);
    };
    let predicted = predictions(model, &inputs, batch_size)?;
    Ok(Some(Rate {
        hits: predicted.iter().filter(|&&p| p == target).count(),
        total: predicted.len(),
    }))
}

/// The test inputs of classes other than `target`, with `trigger` stamped on.
pub(crate) fn triggered_others(
    trigger: &Trigger,
    target: u32,
    test: &ImageSet,
) -> Result<ImageSet, AttackError> {
    let others: Vec<usize> = (0..test.len())
        .filter(|&i| test.labels()[i] != target)
        .collect();
    trigger.stamp_all(&test.subset(&others))
}

/// The indices of `data` whose label is not `target`.
pub(crate) fn not_of_class(data: &ImageSet, target: u32) -> Vec<usize> {
    (0..data.len())
        .filter(|&i| data.labels()[i] != target)
        .collect()
}

fn check_data(poisoning: &dyn Poisoning, data: &ImageSet) -> Result<(), AttackError> {
    let built_for = poisoning.data_shape();
    if DataShape::of(data) != built_for {
        return Err(AttackError::ShapeMismatch {
            what: "data vs the shape the poisoning was built for ([C, H, W, classes])",
            expected: vec![
                built_for.image[0],
                built_for.image[1],
                built_for.image[2],
                built_for.num_classes,
            ],
            actual: vec![
                data.shape()[0],
                data.shape()[1],
                data.shape()[2],
                data.num_classes(),
            ],
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 20 images of 1×4×4, two per class for 10 classes, each filled with its index / 40.
    fn toy() -> ImageSet {
        let pixels = (0..20)
            .flat_map(|i| std::iter::repeat_n(i as f32 / 40.0, 16))
            .collect();
        let labels = (0..20).map(|i| (i % 10) as u32).collect();
        ImageSet::new([1, 4, 4], pixels, labels, 10).unwrap()
    }

    fn build(name: &str, params: &str, data: &ImageSet) -> Result<Box<dyn Poisoning>, AttackError> {
        let table: toml::Table = toml::from_str(params).unwrap();
        (find_poisoning(name).unwrap().build)(&table, DataShape::of(data))
    }

    #[test]
    fn the_count_is_rate_times_n_rounded_half_away_from_zero() {
        assert_eq!(poisoned_count(0.05, 1497).unwrap(), 75); // 74.85
        assert_eq!(poisoned_count(0.25, 10).unwrap(), 3); // 2.5 → 3
        assert_eq!(poisoned_count(0.0, 10).unwrap(), 0);
        assert_eq!(poisoned_count(1.0, 10).unwrap(), 10);
        for bad in [-0.1, 1.5, f64::NAN] {
            let error = poisoned_count(bad, 10).unwrap_err();
            assert!(error.to_string().contains("`rate`"), "{error}");
        }
        let data = toy();
        for name in ["badnets", "blend", "label_flip"] {
            let poisoning = build(name, "", &data).unwrap();
            for rate in [0.0, 0.05, 0.25, 0.5] {
                let poisoned = poison(poisoning.as_ref(), &data, rate, 3).unwrap();
                assert_eq!(
                    poisoned.indices.len(),
                    poisoned_count(rate, 20).unwrap(),
                    "{name} at {rate}"
                );
            }
        }
    }

    #[test]
    fn poisoning_is_deterministic_nested_across_rates_and_touches_only_its_indices() {
        let data = toy();
        let poisoning = build("badnets", "size = 2\ntarget = 3", &data).unwrap();
        let low = poison(poisoning.as_ref(), &data, 0.2, 9).unwrap();
        let high = poison(poisoning.as_ref(), &data, 0.5, 9).unwrap();
        assert_eq!(low, poison(poisoning.as_ref(), &data, 0.2, 9).unwrap());
        assert_ne!(
            low.indices,
            poison(poisoning.as_ref(), &data, 0.2, 10).unwrap().indices
        );
        assert!(low.indices.iter().all(|i| high.indices.contains(i)));
        for i in 0..data.len() {
            let touched = high.indices.contains(&i);
            assert_eq!(high.data.image(i) != data.image(i), touched, "sample {i}");
            assert_eq!(
                high.data.labels()[i],
                if touched { 3 } else { data.labels()[i] }
            );
            // Samples of the target class are never eligible.
            assert!(!(touched && data.labels()[i] == 3));
        }
    }

    #[test]
    fn asking_for_more_than_is_eligible_names_the_rate() {
        let data = toy();
        // 18 samples are not of class 0; 95% of 20 is 19.
        let poisoning = build("badnets", "", &data).unwrap();
        let error = poison(poisoning.as_ref(), &data, 0.95, 0).unwrap_err();
        assert!(error.to_string().contains("`rate`"), "{error}");
    }

    #[test]
    fn bad_parameters_name_their_key() {
        let data = toy();
        for (name, params, key) in [
            ("badnets", "size = 5", "size"),
            ("badnets", "target = 10", "target"),
            ("badnets", "position = [3, 3]\nsize = 2", "position"),
            ("badnets", "value = -1.0", "value"),
            ("badnets", "sise = 3", "sise"),
            ("blend", "alpha = 2.0", "alpha"),
            ("blend", "target = 12", "target"),
            ("label_flip", "target = 10", "target"),
            ("label_flip", "source = 11", "source"),
            ("label_flip", "source = 2\ntarget = 2", "target"),
        ] {
            let error = build(name, params, &data)
                .err()
                .unwrap_or_else(|| panic!("{name} `{params}` built"));
            assert!(
                error.to_string().contains(&format!("`{key}`")),
                "{name} `{params}`: {error}"
            );
        }
    }

    #[test]
    fn a_source_class_with_no_samples_is_an_error_naming_source() {
        let data = toy();
        let without_class_4: Vec<usize> = (0..20).filter(|i| i % 10 != 4).collect();
        let data = data.subset(&without_class_4);
        let poisoning = build("label_flip", "source = 4\ntarget = 1", &data).unwrap();
        let error = poison(poisoning.as_ref(), &data, 0.0, 0).unwrap_err();
        assert!(error.to_string().contains("`source`"), "{error}");
    }

    #[test]
    fn every_entry_documents_exactly_its_keys() {
        for entry in POISONINGS {
            for doc in entry.parameters {
                // `none` (an absent optional key) is not TOML and has nothing to check.
                let Ok(table) =
                    toml::from_str::<toml::Table>(&format!("{} = {}", doc.name, doc.default))
                else {
                    assert_eq!(doc.default, "none", "{}: `{}`", entry.name, doc.name);
                    continue;
                };
                (entry.build)(&table, DataShape::of(&toy())).unwrap_or_else(|error| {
                    panic!(
                        "{}: documented default of `{}`: {error}",
                        entry.name, doc.name
                    )
                });
            }
        }
    }
}
