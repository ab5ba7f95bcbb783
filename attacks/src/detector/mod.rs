//! Guardrail detectors: the input validators and output monitors teams put in front of a
//! model, scored against what the attacks produce. One trait, one registry.
//!
//! A detector is fitted on clean data ([`Detector::fit`]) and then gives each sample a score
//! ([`Detector::score`]), higher meaning more suspicious. It works on plain numbers
//! ([`Observations`]: the inputs, the logits and/or the penultimate features, as rows of
//! `f64`), so every detector is unit-testable without a model; [`observe`] collects what a
//! detector [`DetectorNeeds`] from a [`Model`]. How well a detector separates attacked from
//! clean inputs is [`metrics`]: detection rate at a fixed false-positive rate on clean scores,
//! ROC AUC (the Mann–Whitney statistic) and the ROC curve.
//!
//! Detectors live in this crate, next to the backdoor scans, because they are evaluators with
//! a registry that need only `gauntlet-models` (for the features a model exposes); the
//! aggregation of their scores into report figures is [`metrics`], pure functions that the
//! `results` crate can call without a model (docs/guardrails.md).
//!
//! Adding a detector is one new file in `src/detector/` and one name in the
//! `register_detectors!` line below.

use candle_core::{DType, Tensor};
use gauntlet_models::{FeatureName, Model};

use crate::{AttackError, ParameterDoc};

pub mod adaptive;
pub mod metrics;
pub mod probing;

/// Declare each detector module and list its `ENTRY` in [`DETECTORS`], in the order given.
macro_rules! register_detectors {
    ($($module:ident),* $(,)?) => {
        $(pub mod $module;)*
        /// Every guardrail detector, in registry order.
        pub const DETECTORS: &[&DetectorEntry] = &[$(&$module::ENTRY),*];
    };
}

register_detectors! { zscore, confidence, entropy, mahalanobis }

/// What a detector looks at. [`observe`] collects exactly these from a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DetectorNeeds {
    /// The inputs themselves, flattened per sample (an input validator).
    pub inputs: bool,
    /// The model's logits (an output monitor).
    pub logits: bool,
    /// The penultimate-layer features ([`FeatureName::Penultimate`]).
    pub penultimate: bool,
    /// The true labels of the clean data it is fitted on (class-conditional statistics).
    pub fit_labels: bool,
}

impl std::fmt::Display for DetectorNeeds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if self.inputs {
            parts.push("inputs");
        }
        if self.logits {
            parts.push("logits");
        }
        if self.penultimate {
            parts.push("penultimate features");
        }
        if self.fit_labels {
            parts.push("labels of the clean fitting data");
        }
        if parts.is_empty() {
            parts.push("nothing");
        }
        f.write_str(&parts.join(", "))
    }
}

/// Per-sample rows of numbers: `rows × cols`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    values: Vec<f64>,
}

impl Matrix {
    /// A `rows × cols` matrix from row-major `values`; an error naming `what` when the length
    /// does not match.
    pub fn new(
        what: &'static str,
        rows: usize,
        cols: usize,
        values: Vec<f64>,
    ) -> Result<Self, AttackError> {
        if rows.checked_mul(cols) != Some(values.len()) {
            return Err(AttackError::ShapeMismatch {
                what,
                expected: vec![rows, cols],
                actual: vec![values.len()],
            });
        }
        Ok(Self { rows, cols, values })
    }

    /// From equal-length rows; an error naming `what` when they differ.
    pub fn from_rows(what: &'static str, rows: &[Vec<f64>]) -> Result<Self, AttackError> {
        let cols = rows.first().map_or(0, Vec::len);
        let mut values = Vec::with_capacity(rows.len() * cols);
        for row in rows {
            if row.len() != cols {
                return Err(AttackError::ShapeMismatch {
                    what,
                    expected: vec![cols],
                    actual: vec![row.len()],
                });
            }
            values.extend_from_slice(row);
        }
        Ok(Self {
            rows: rows.len(),
            cols,
            values,
        })
    }

    /// A `(batch, …)` tensor flattened per sample.
    pub fn from_tensor(what: &'static str, tensor: &Tensor) -> Result<Self, AttackError> {
        let rows = tensor.dim(0)?;
        let flat = tensor.flatten_from(1)?.to_dtype(DType::F64)?;
        let cols = flat.dim(1)?;
        Self::new(what, rows, cols, flat.flatten_all()?.to_vec1::<f64>()?)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.cols..(i + 1) * self.cols]
    }

    /// Every row, in order.
    pub fn iter_rows(&self) -> impl Iterator<Item = &[f64]> {
        (0..self.rows).map(|i| self.row(i))
    }
}

/// What a detector sees of a batch of samples; each part is present when the detector needs
/// it. All present parts have the same number of rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observations {
    pub inputs: Option<Matrix>,
    pub logits: Option<Matrix>,
    pub penultimate: Option<Matrix>,
    /// True labels; needed only to fit a detector that declares `fit_labels`.
    pub labels: Option<Vec<u32>>,
}

impl Observations {
    /// The number of samples, or an error when the present parts disagree.
    pub fn len(&self) -> Result<usize, AttackError> {
        let mut counts = [
            self.inputs.as_ref().map(Matrix::rows),
            self.logits.as_ref().map(Matrix::rows),
            self.penultimate.as_ref().map(Matrix::rows),
            self.labels.as_ref().map(Vec::len),
        ]
        .into_iter()
        .flatten();
        let first = counts.next().unwrap_or(0);
        for count in counts {
            if count != first {
                return Err(AttackError::ShapeMismatch {
                    what: "samples in the parts of a detector's observations",
                    expected: vec![first],
                    actual: vec![count],
                });
            }
        }
        Ok(first)
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> Result<bool, AttackError> {
        Ok(self.len()? == 0)
    }

    /// The part `detector` needs, or an error saying that it is missing.
    pub(crate) fn require<'a>(
        part: &'a Option<Matrix>,
        detector: &'static str,
        what: &'static str,
    ) -> Result<&'a Matrix, AttackError> {
        part.as_ref()
            .ok_or(AttackError::DetectorInput { detector, what })
    }
}

/// A guardrail detector.
pub trait Detector: Send + Sync {
    /// The registry name, e.g. `zscore`.
    fn name(&self) -> &'static str;
    /// What it looks at.
    fn needs(&self) -> DetectorNeeds;
    /// Fit on clean data (the training distribution the guardrail protects). Detectors with
    /// nothing to fit (softmax confidence, entropy) only check that what they need is there.
    fn fit(&mut self, clean: &Observations) -> Result<(), AttackError>;
    /// One score per sample, higher = more suspicious. An error when the detector is not
    /// fitted or `batch` has another shape than the data it was fitted on.
    fn score(&self, batch: &Observations) -> Result<Vec<f64>, AttackError>;
    /// The detector's own decision rule, when it has one: it rejects a sample whose score is
    /// above this (the z-score validator's threshold). The reported detection rates use
    /// thresholds fixed by a false-positive rate on clean data instead ([`metrics`]).
    fn rule_threshold(&self) -> Option<f64> {
        None
    }
    /// The inputs the detector's own rule accepts, when they form a box: per feature
    /// `(lo, hi)`. This is what an adaptive attack projects into ([`adaptive`]); `None` for a
    /// detector whose accept region is not a box of inputs (an output monitor, the z-score
    /// validator's `share_over_threshold` rule). An error when the detector is not fitted.
    fn accept_box(&self) -> Option<Result<Vec<(f64, f64)>, AttackError>> {
        None
    }
    /// Whether the score falls as the model's softmax concentrates on its top class (the
    /// confidence and entropy monitors): an adaptive attack then evades it with a confident
    /// misclassification ([`adaptive`]).
    fn falls_with_confidence(&self) -> bool {
        false
    }
}

/// One registry entry: how to build a detector from a suite table.
pub struct DetectorEntry {
    /// Key in suite files and reports.
    pub name: &'static str,
    /// One line for `gauntlet list`.
    pub summary: &'static str,
    /// Paper or practice it follows.
    pub reference: &'static str,
    /// Every key it accepts, with its default.
    pub parameters: &'static [ParameterDoc],
    /// What it looks at (without building it).
    pub needs: DetectorNeeds,
    /// Build the detector from the suite table (unknown keys and bad values are errors naming
    /// the key).
    pub build: fn(params: &toml::Table) -> Result<Box<dyn Detector>, AttackError>,
}

/// The registry entry called `name`, if any.
pub fn find_detector(name: &str) -> Option<&'static DetectorEntry> {
    DETECTORS.iter().copied().find(|entry| entry.name == name)
}

/// Collect from `model` what `needs` asks for on `inputs` (shape `(n, …)`), `batch_size`
/// samples per pass. `labels` are attached when given.
pub fn observe(
    model: &dyn Model,
    inputs: &Tensor,
    labels: Option<&Tensor>,
    needs: DetectorNeeds,
    batch_size: usize,
) -> Result<Observations, AttackError> {
    let n = inputs.dim(0)?;
    let batch_size = batch_size.max(1);
    let mut logits = Vec::new();
    let mut penultimate = Vec::new();
    let mut start = 0;
    while start < n {
        let len = batch_size.min(n - start);
        let chunk = inputs.narrow(0, start, len)?;
        if needs.logits {
            logits.push(model.forward(&chunk)?);
        }
        if needs.penultimate {
            penultimate.push(model.features(&chunk, FeatureName::Penultimate)?);
        }
        start += len;
    }
    let join = |parts: Vec<Tensor>, what| -> Result<Option<Matrix>, AttackError> {
        if parts.is_empty() {
            return Ok(None);
        }
        Ok(Some(Matrix::from_tensor(what, &Tensor::cat(&parts, 0)?)?))
    };
    let labels = match labels {
        Some(labels) => Some(labels.to_dtype(DType::U32)?.to_vec1::<u32>()?),
        None => None,
    };
    let observations = Observations {
        inputs: if needs.inputs {
            Some(Matrix::from_tensor("detector inputs", inputs)?)
        } else {
            None
        },
        logits: join(logits, "logits")?,
        penultimate: join(penultimate, "penultimate features")?,
        labels,
    };
    observations.len()?;
    Ok(observations)
}

/// An error unless every value of `matrix` is finite.
pub(crate) fn check_finite(
    detector: &'static str,
    what: &'static str,
    matrix: &Matrix,
) -> Result<(), AttackError> {
    if let Some(index) = matrix.values.iter().position(|v| !v.is_finite()) {
        return Err(AttackError::NonFinite {
            detector,
            what,
            sample: index / matrix.cols.max(1),
        });
    }
    Ok(())
}

/// An error unless `batch` has `expected` columns (the width the detector was fitted on).
pub(crate) fn check_width(
    what: &'static str,
    expected: usize,
    batch: &Matrix,
) -> Result<(), AttackError> {
    if batch.cols != expected {
        return Err(AttackError::ShapeMismatch {
            what,
            expected: vec![expected],
            actual: vec![batch.cols],
        });
    }
    Ok(())
}

/// A detector parameter that must be a finite number (a NaN threshold is an error, not a
/// detector that flags nothing).
pub(crate) fn check_finite_parameter(key: &str, value: f64) -> Result<(), AttackError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(AttackError::invalid_parameter(
            key,
            format!("must be a finite number, got {value}"),
        ))
    }
}

/// Numerically stable log-softmax of one row of logits.
pub(crate) fn log_softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = logits.iter().map(|l| (l - max).exp()).sum();
    let log_sum = max + sum.ln();
    logits.iter().map(|l| l - log_sum).collect()
}

/// Scores of a logit-only detector: checks the logits are there and finite, then maps each
/// row through `score`.
pub(crate) fn score_logits(
    detector: &'static str,
    batch: &Observations,
    score: impl Fn(&[f64]) -> f64,
) -> Result<Vec<f64>, AttackError> {
    let logits = Observations::require(&batch.logits, detector, "logits")?;
    check_finite(detector, "logits", logits)?;
    if logits.cols() < 2 {
        return Err(AttackError::ShapeMismatch {
            what: "classes in the logits (at least 2)",
            expected: vec![2],
            actual: vec![logits.cols()],
        });
    }
    Ok(logits.iter_rows().map(score).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_defaults_parse_unknown_keys_are_named_and_needs_agree() {
        for entry in DETECTORS {
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
            let detector = (entry.build)(&toml::Table::new()).unwrap();
            assert_eq!(detector.name(), entry.name);
            assert_eq!(detector.needs(), entry.needs, "{}", entry.name);
        }
    }

    #[test]
    fn observations_with_parts_of_different_lengths_are_refused() {
        let observations = Observations {
            inputs: Some(Matrix::new("x", 2, 1, vec![0.0, 1.0]).unwrap()),
            labels: Some(vec![0, 1, 2]),
            ..Observations::default()
        };
        assert!(observations.len().is_err());
        assert!(Matrix::new("x", 2, 2, vec![0.0]).is_err());
        assert!(Matrix::from_rows("x", &[vec![0.0], vec![0.0, 1.0]]).is_err());
    }

    #[test]
    fn every_detector_fits_and_scores_a_model_observation() {
        use candle_core::Device;
        use gauntlet_models::testing::LinearModel;
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let weight = (0..3 * 16)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let model = LinearModel::new(weight, vec![0.0; 3], vec![1, 4, 4], 3, &Device::Cpu).unwrap();
        let pixels: Vec<f32> = (0..30 * 16).map(|_| rng.random::<f32>()).collect();
        let inputs = Tensor::from_vec(pixels, (30, 1, 4, 4), &Device::Cpu).unwrap();
        let labels: Vec<u32> = (0..30).map(|i| i % 3).collect();
        let labels = Tensor::new(labels.as_slice(), &Device::Cpu).unwrap();
        for entry in DETECTORS {
            if entry.needs.penultimate
                && model
                    .capabilities()
                    .feature(FeatureName::Penultimate)
                    .is_none()
            {
                continue;
            }
            let mut detector = (entry.build)(&toml::Table::new()).unwrap();
            let clean = observe(&model, &inputs, Some(&labels), entry.needs, 7).unwrap();
            assert_eq!(clean.len().unwrap(), 30);
            detector.fit(&clean).unwrap();
            let scores = detector.score(&clean).unwrap();
            assert_eq!(scores.len(), 30, "{}", entry.name);
            assert!(scores.iter().all(|s| s.is_finite()), "{}", entry.name);
        }
    }
}
