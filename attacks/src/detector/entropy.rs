//! Prediction entropy: an output monitor that flags spread-out predictions. Score
//! `H = −Σ_k p_k ln p_k` (nats) of `p = softmax(logits)`, in `[0, ln K]`.
//!
//! Nothing is fitted. Known answers: equal logits over `K` classes give `ln K`; softmax
//! `(3/4, 1/4)` gives `−¾ ln ¾ − ¼ ln ¼`; a one-hot prediction gives 0.

use serde::Deserialize;

use super::{score_logits, Detector, DetectorEntry, DetectorNeeds, Observations};
use crate::params::parse_params;
use crate::AttackError;

/// The registry entry.
pub const ENTRY: DetectorEntry = DetectorEntry {
    name: "entropy",
    summary: "Output monitor: the entropy of the softmax prediction (nats); spread-out predictions are flagged",
    reference: "Shannon entropy of the predictive distribution, a standard uncertainty baseline (e.g. Hendrycks & Gimpel 2017, arXiv:1610.02136)",
    parameters: &[],
    needs: DetectorNeeds { inputs: false, logits: true, penultimate: false, fit_labels: false },
    build,
};

/// No parameters: the table must be empty.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {}

/// The prediction-entropy detector.
#[derive(Debug, Clone, Default)]
pub struct Entropy;

fn build(params: &toml::Table) -> Result<Box<dyn Detector>, AttackError> {
    let Params {} = parse_params(params)?;
    Ok(Box::new(Entropy))
}

/// The entropy of `softmax(logits)` in nats, from the log-softmax (so a vanishing
/// probability contributes `p ln p → 0`, never NaN).
pub fn score_one(logits: &[f64]) -> f64 {
    super::log_softmax(logits)
        .into_iter()
        .map(|log_p| {
            let p = log_p.exp();
            if p == 0.0 {
                0.0
            } else {
                -p * log_p
            }
        })
        .sum()
}

impl Detector for Entropy {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn needs(&self) -> DetectorNeeds {
        ENTRY.needs
    }

    fn fit(&mut self, clean: &Observations) -> Result<(), AttackError> {
        score_logits(ENTRY.name, clean, |_| 0.0).map(|_| ())
    }

    fn score(&self, batch: &Observations) -> Result<Vec<f64>, AttackError> {
        score_logits(ENTRY.name, batch, score_one)
    }

    fn falls_with_confidence(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_forms() {
        assert!((score_one(&[0.5; 10]) - 10f64.ln()).abs() < 1e-14);
        let expected = -0.75 * 0.75f64.ln() - 0.25 * 0.25f64.ln();
        assert!((score_one(&[3f64.ln(), 0.0]) - expected).abs() < 1e-15);
        assert_eq!(score_one(&[2000.0, -2000.0, 0.0]), 0.0);
        let error = Entropy.fit(&Observations::default()).unwrap_err().to_string();
        assert!(error.contains("needs logits"), "{error}");
    }
}
