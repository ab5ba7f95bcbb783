//! The softmax-confidence threshold: an output monitor that flags predictions the model is
//! unsure of. Score `1 − max_k softmax(logits)_k`, in `[0, 1 − 1/K]`.
//!
//! Nothing is fitted: the threshold comes from a false-positive rate on clean scores
//! ([`super::metrics`]). Known answers: equal logits score `1 − 1/K`; logits `(log 3, 0)`
//! give softmax `(3/4, 1/4)` and score `1/4`.

use serde::Deserialize;

use super::{score_logits, Detector, DetectorEntry, DetectorNeeds, Observations};
use crate::params::parse_params;
use crate::AttackError;

/// The registry entry.
pub const ENTRY: DetectorEntry = DetectorEntry {
    name: "confidence",
    summary: "Output monitor: 1 − the largest softmax probability; low-confidence predictions are flagged",
    reference: "Hendrycks, Gimpel. A Baseline for Detecting Misclassified and Out-of-Distribution Examples in Neural Networks. ICLR 2017. arXiv:1610.02136",
    parameters: &[],
    needs: DetectorNeeds { inputs: false, logits: true, penultimate: false, fit_labels: false },
    build,
};

/// No parameters: the table must be empty.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {}

/// The softmax-confidence detector.
#[derive(Debug, Clone, Default)]
pub struct Confidence;

fn build(params: &toml::Table) -> Result<Box<dyn Detector>, AttackError> {
    let Params {} = parse_params(params)?;
    Ok(Box::new(Confidence))
}

/// `1 − max softmax` of one row of logits.
pub fn score_one(logits: &[f64]) -> f64 {
    let max_log_p = super::log_softmax(logits)
        .into_iter()
        .fold(f64::NEG_INFINITY, f64::max);
    1.0 - max_log_p.exp()
}

impl Detector for Confidence {
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
    use crate::detector::Matrix;

    #[test]
    fn closed_forms() {
        let logits = Matrix::new(
            "logits",
            3,
            2,
            vec![0.0, 0.0, 3f64.ln(), 0.0, 1000.0, -1000.0],
        )
        .unwrap();
        let batch = Observations {
            logits: Some(logits),
            ..Observations::default()
        };
        let scores = Confidence.score(&batch).unwrap();
        assert!((scores[0] - 0.5).abs() < 1e-15);
        assert!((scores[1] - 0.25).abs() < 1e-15);
        assert!(scores[2].abs() < 1e-15, "{}", scores[2]);
        // Shifting every logit by a constant changes nothing.
        assert!((score_one(&[7.0, 7.0 + 3f64.ln()]) - 0.25).abs() < 1e-14);
        let error = Confidence.score(&Observations::default()).unwrap_err().to_string();
        assert!(error.contains("needs logits"), "{error}");
    }
}
