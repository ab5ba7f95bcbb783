//! STRIP: an input carrying a trigger keeps its (target) prediction when other images are
//! superimposed on it; a clean input does not.
//!
//! ## What it does
//!
//! For an input `x` it superimposes `overlays` held-out clean images `x_j`,
//! `x′_j = clip(x + α·x_j, 0, 1)`, and takes the mean Shannon entropy (base 2) of the model's
//! softmax over the `x′_j`. A trigger dominates the blend, so triggered inputs have low
//! entropy. The decision threshold is set on the clean inputs: the ⌊r·n⌋-th smallest clean
//! entropy (0-based) for a false-rejection rate `r`, and an input is flagged when its entropy
//! is strictly below it, so at most `r·n` of the clean inputs are rejected (the achieved rate
//! is reported). With a known trigger, the detection rate is the fraction of the clean inputs
//! with the trigger stamped on that are flagged. Input `i` and its triggered copy use the
//! same overlays, drawn without replacement from the held-out pool by generator `i` of the
//! seed, so the two entropies are paired.
//!
//! ## Threat model
//!
//! Logits only (a per-input detector at inference time); needs clean held-out images.
//!
//! ## Parameters
//!
//! - `overlays` (default 100): superimposed images per input (the paper's N).
//! - `alpha` (default 1.0): weight of the overlay; additive then clipped to [0, 1], as the
//!   original's saturating `addWeighted(x, 1, x_j, 1)` and BackdoorBench's driver (α = 1).
//! - `false_rejection_rate` (default 0.01): fraction of clean inputs the threshold may reject
//!   (the paper's preset FRR of 1%).
//! - `batch_size` (default 256): superimposed images per forward pass.
//!
//! The empirical quantile is used rather than ART's normal fit to the clean entropies, which
//! assumes a shape the entropies need not have.
//!
//! ## Known-answer tests
//!
//! The entropy of a known softmax distribution (uniform over k classes: log₂ k; a point mass:
//! 0); the threshold rejects exactly ⌊r·n⌋ distinct clean entropies.
//!
//! ## Reference
//!
//! Gao, Xu, Wang, Chen, Ranasinghe, Nepal. *STRIP: A Defence Against Trojan Attacks on Deep
//! Neural Networks.* ACSAC 2019, arXiv:1902.06531.

use candle_core::Tensor;
use gauntlet_models::Model;
use rand::Rng;
use serde::Deserialize;

use super::{
    check_fraction, check_model_data, check_positive, ScanData, ScanDetail, ScanEntry, ScanReport,
    TriggerScan,
};
use crate::backdoor::{ImageSet, Rate};
use crate::params::parse_params;
use crate::{AttackError, ModelAccess, ParameterDoc, SampleRandomness, Stream};

/// The registry entry.
pub const ENTRY: ScanEntry = ScanEntry {
    name: "strip",
    summary: "STRIP: prediction entropy under superimposed clean images; triggered inputs stay confident. Threshold at a false-rejection rate on clean inputs",
    reference: "Gao et al. STRIP: A Defence Against Trojan Attacks on Deep Neural Networks. ACSAC 2019. arXiv:1902.06531",
    parameters: &[
        ParameterDoc { name: "overlays", default: "100", description: "Held-out clean images superimposed on each input (N)." },
        ParameterDoc { name: "alpha", default: "1.0", description: "Overlay weight: x′ = clip(x + α·x_j, 0, 1)." },
        ParameterDoc { name: "false_rejection_rate", default: "0.01", description: "Fraction of clean inputs the entropy threshold may reject." },
        ParameterDoc { name: "batch_size", default: "256", description: "Superimposed images per forward pass." },
    ],
    needs: ModelAccess::Logits,
    build,
};

/// The suite-file parameters.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub overlays: usize,
    pub alpha: f32,
    pub false_rejection_rate: f64,
    pub batch_size: usize,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            overlays: 100,
            alpha: 1.0,
            false_rejection_rate: 0.01,
            batch_size: 256,
        }
    }
}

/// STRIP with validated parameters.
#[derive(Debug, Clone)]
pub struct Strip {
    params: Params,
}

impl Strip {
    /// Errors name `overlays`, `alpha`, `false_rejection_rate` or `batch_size`.
    pub fn new(params: Params) -> Result<Self, AttackError> {
        check_positive("overlays", params.overlays)?;
        check_fraction("alpha", f64::from(params.alpha))?;
        check_fraction("false_rejection_rate", params.false_rejection_rate)?;
        check_positive("batch_size", params.batch_size)?;
        Ok(Self { params })
    }
}

fn build(params: &toml::Table) -> Result<Box<dyn TriggerScan>, AttackError> {
    Ok(Box::new(Strip::new(parse_params(params)?)?))
}

/// What STRIP measured.
#[derive(Debug, Clone, PartialEq)]
pub struct StripDetail {
    /// Mean entropy (bits) of each clean input under superimposition, in input order.
    pub clean_entropies: Vec<f64>,
    /// The same for each clean input with the known trigger stamped on; empty without one.
    pub triggered_entropies: Vec<f64>,
    /// Inputs with entropy strictly below this are flagged as triggered.
    pub threshold: f64,
    /// Clean inputs flagged (the achieved false rejections).
    pub false_rejections: Rate,
    /// Triggered inputs flagged; `None` without a known trigger.
    pub detections: Option<Rate>,
}

impl TriggerScan for Strip {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    /// Every clean input (and, with a known trigger, its triggered copy) under `overlays`
    /// superimpositions, one forward each.
    fn passes(&self, work: &super::ScanWork) -> crate::Passes {
        let inputs = (work.clean as u64).saturating_mul(1 + u64::from(work.true_trigger));
        crate::Passes::forwards(inputs.saturating_mul(self.params.overlays as u64))
    }

    fn scan(
        &self,
        model: &dyn Model,
        data: &ScanData<'_>,
        seed: u64,
    ) -> Result<ScanReport, AttackError> {
        check_model_data(model, data.clean, "clean")?;
        let held_out = data.held_out.ok_or_else(|| {
            AttackError::invalid_parameter(
                "held_out",
                "STRIP superimposes held-out clean images; none were given",
            )
        })?;
        if held_out.shape() != data.clean.shape() {
            return Err(AttackError::ShapeMismatch {
                what: "STRIP held-out images vs the clean inputs",
                expected: data.clean.shape().to_vec(),
                actual: held_out.shape().to_vec(),
            });
        }
        if held_out.len() < self.params.overlays {
            return Err(AttackError::invalid_parameter(
                "overlays",
                format!(
                    "{} overlays per input need at least as many held-out images, got {}",
                    self.params.overlays,
                    held_out.len()
                ),
            ));
        }
        let randomness = SampleRandomness::for_range(seed, ENTRY.name, 0..data.clean.len());
        let clean_entropies = self.entropies(model, data.clean, held_out, &randomness)?;
        let threshold = threshold(&clean_entropies, self.params.false_rejection_rate);
        let below = |entropies: &[f64]| Rate {
            hits: entropies.iter().filter(|&&e| e < threshold).count(),
            total: entropies.len(),
        };
        let false_rejections = below(&clean_entropies);
        let (triggered_entropies, detections) = match data.true_trigger {
            Some(trigger) => {
                let triggered = trigger.stamp_all(data.clean)?;
                let entropies = self.entropies(model, &triggered, held_out, &randomness)?;
                let detections = below(&entropies);
                (entropies, Some(detections))
            }
            None => (Vec::new(), None),
        };
        Ok(ScanReport {
            scan: ENTRY.name,
            classes: Vec::new(),
            flagged: Vec::new(),
            detail: ScanDetail::Strip(StripDetail {
                clean_entropies,
                triggered_entropies,
                threshold,
                false_rejections,
                detections,
            }),
        })
    }
}

impl Strip {
    /// The mean superimposition entropy of each input of `inputs`; input `i` draws its
    /// overlays from `randomness` generator `i`.
    pub fn entropies(
        &self,
        model: &dyn Model,
        inputs: &ImageSet,
        held_out: &ImageSet,
        randomness: &SampleRandomness,
    ) -> Result<Vec<f64>, AttackError> {
        let n = self.params.overlays;
        let len = inputs.sample_len();
        let [channels, height, width] = inputs.shape();
        let alpha = self.params.alpha;
        // Inputs per forward pass: whole inputs only, so each input's overlays are in one batch.
        let per_batch = (self.params.batch_size / n).max(1);
        let mut entropies = Vec::with_capacity(inputs.len());
        let positions: Vec<usize> = (0..inputs.len()).collect();
        for chunk in positions.chunks(per_batch) {
            let mut blended = Vec::with_capacity(chunk.len() * n * len);
            for &position in chunk {
                let image = inputs.image(position);
                let mut rng = randomness.generator(position, Stream::Custom(0));
                for overlay in draw_without_replacement(held_out.len(), n, &mut rng) {
                    let overlay = held_out.image(overlay);
                    blended.extend(
                        image
                            .iter()
                            .zip(overlay)
                            .map(|(&x, &o)| (x + alpha * o).clamp(0.0, 1.0)),
                    );
                }
            }
            let batch = Tensor::from_vec(
                blended,
                (chunk.len() * n, channels, height, width),
                model.device(),
            )?;
            let logits: Vec<Vec<f32>> = model.forward(&batch)?.to_vec2()?;
            for per_input in logits.chunks(n) {
                let total: f64 = per_input.iter().map(|row| softmax_entropy_bits(row)).sum();
                entropies.push(total / n as f64);
            }
        }
        Ok(entropies)
    }
}

/// `count` distinct indices below `pool`, uniformly (a partial Fisher–Yates shuffle).
fn draw_without_replacement(pool: usize, count: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut indices: Vec<usize> = (0..pool).collect();
    for position in 0..count {
        let swap = rng.random_range(position..pool);
        indices.swap(position, swap);
    }
    indices.truncate(count);
    indices
}

/// The Shannon entropy in bits of `softmax(logits)`, computed stably from the log-sum-exp.
pub fn softmax_entropy_bits(logits: &[f32]) -> f64 {
    let max = logits
        .iter()
        .map(|&z| f64::from(z))
        .fold(f64::NEG_INFINITY, f64::max);
    let shifted: Vec<f64> = logits.iter().map(|&z| f64::from(z) - max).collect();
    let log_sum = shifted.iter().map(|z| z.exp()).sum::<f64>().ln();
    // H = −Σ p·ln p with ln p = z − log Σ e^z; terms with p = 0 contribute 0.
    let nats: f64 = shifted
        .iter()
        .map(|&z| {
            let log_p = z - log_sum;
            let p = log_p.exp();
            if p > 0.0 {
                -p * log_p
            } else {
                0.0
            }
        })
        .sum();
    nats / std::f64::consts::LN_2
}

/// The ⌊rate·n⌋-th smallest (0-based) of `entropies`: flagging values strictly below it
/// rejects at most `rate·n` of them. `NaN` for an empty list.
pub fn threshold(entropies: &[f64], rate: f64) -> f64 {
    if entropies.is_empty() {
        return f64::NAN;
    }
    let mut sorted = entropies.to_vec();
    sorted.sort_by(f64::total_cmp);
    let k = ((rate * entropies.len() as f64).floor() as usize).min(sorted.len() - 1);
    sorted[k]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_known_distributions() {
        assert!((softmax_entropy_bits(&[0.0; 4]) - 2.0).abs() < 1e-12);
        assert!((softmax_entropy_bits(&[3.0; 10]) - 10f64.log2()).abs() < 1e-12);
        assert!(softmax_entropy_bits(&[0.0, 1000.0, 0.0]).abs() < 1e-12);
        // p = (1/2, 1/4, 1/4): H = 1.5 bits; logits ln p up to a constant.
        let logits = [0.5f32.ln() + 7.0, 0.25f32.ln() + 7.0, 0.25f32.ln() + 7.0];
        assert!((softmax_entropy_bits(&logits) - 1.5).abs() < 1e-6);
    }

    #[test]
    fn the_threshold_rejects_at_most_the_rate() {
        let entropies: Vec<f64> = (0..200).rev().map(f64::from).collect();
        let t = threshold(&entropies, 0.01);
        // ⌊0.01·200⌋ = 2: values 0 and 1 are below the threshold 2.
        assert_eq!(t, 2.0);
        assert_eq!(entropies.iter().filter(|&&e| e < t).count(), 2);
        assert_eq!(threshold(&entropies, 0.0), 0.0);
        assert_eq!(threshold(&entropies, 1.0), 199.0);
    }

    #[test]
    fn overlays_are_distinct() {
        let mut rng = SampleRandomness::for_range(0, "t", 0..1).generator(0, Stream::Custom(0));
        let mut drawn = draw_without_replacement(120, 100, &mut rng);
        drawn.sort_unstable();
        drawn.dedup();
        assert_eq!(drawn.len(), 100);
        assert!(drawn.iter().all(|&i| i < 120));
    }

    #[test]
    fn bad_parameters_name_their_key() {
        for (params, key) in [
            ("overlays = 0", "overlays"),
            ("alpha = 1.5", "alpha"),
            ("false_rejection_rate = -0.1", "false_rejection_rate"),
            ("batch_size = 0", "batch_size"),
        ] {
            let table: toml::Table = toml::from_str(params).unwrap();
            let error = build(&table).err().unwrap();
            assert!(error.to_string().contains(&format!("`{key}`")), "{params}: {error}");
        }
    }
}
