//! Gates: thresholds on the results, turned into verdicts and an exit code.

use gauntlet_reports::{GateBound, GateVerdict, RunReport};

use crate::metrics::epsilon_value;
use crate::plan::Gate;

/// The verdict of every gate against the results.
pub fn evaluate(gates: &[Gate], report: &RunReport) -> Vec<GateVerdict> {
    gates
        .iter()
        .map(|gate| {
            let actual = match gate {
                Gate::CleanAccuracy { .. } => Some(report.clean.accuracy.value),
                Gate::RobustAccuracy { label, epsilon, .. } => report
                    .attacks
                    .iter()
                    .find(|a| &a.label == label && a.epsilon == epsilon_value(*epsilon))
                    .map(|a| a.robust_accuracy.value),
                Gate::WorstCaseAccuracy { norm, epsilon, .. } => report
                    .worst_case
                    .iter()
                    .find(|w| w.norm == norm.to_string() && w.epsilon == epsilon_value(*epsilon))
                    .map(|w| w.robust_accuracy.value),
                Gate::MaxAnomalyIndex { .. } => Some(
                    report
                        .backdoor
                        .as_ref()
                        .map_or(0.0, crate::backdoor::largest_flagged_index),
                ),
                Gate::MinPredictionDrift {
                    label,
                    epsilon,
                    measure,
                    ..
                } => report
                    .output_drift
                    .iter()
                    .find(|d| &d.attack == label && d.epsilon == epsilon_value(*epsilon))
                    .map(|d| match measure {
                        crate::plan::DriftMeasure::Psi => d.psi,
                        crate::plan::DriftMeasure::Kl => d.kl,
                    }),
            };
            // A gate whose number is missing cannot pass: the suite validation makes this
            // unreachable, but a silent pass would be the worst outcome.
            let actual = actual.unwrap_or(f64::NAN);
            let passed = match gate {
                Gate::MaxAnomalyIndex { threshold } => actual <= *threshold,
                _ => actual >= gate.threshold(),
            };
            GateVerdict {
                gate: gate.name(),
                threshold: gate.threshold(),
                actual,
                passed,
                bound: match gate {
                    Gate::MaxAnomalyIndex { .. } => GateBound::AtMostIndex,
                    Gate::MinPredictionDrift { .. } => GateBound::AtLeastValue,
                    _ => GateBound::AtLeast,
                },
                detail: None,
            }
        })
        .collect()
}

/// One line per failed gate, saying which and by how much.
pub fn failure_lines(report: &RunReport) -> Vec<String> {
    report
        .gates
        .iter()
        .filter(|g| !g.passed)
        .map(|g| failure_message(g, report))
        .collect()
}

/// The line for one failed gate: the verdict's own message, and for the anomaly-index gate
/// which scan flags which class, so the terminal, JUnit and Markdown all name the suspect.
pub fn failure_message(gate: &GateVerdict, report: &RunReport) -> String {
    let message = gate.failure_message();
    if gate.gate != crate::plan::MAX_ANOMALY_INDEX_GATE {
        return message;
    }
    let which = report
        .backdoor
        .as_ref()
        .map(crate::backdoor::flagged_phrases)
        .unwrap_or_default();
    format!(
        "{message}: a trigger scan flags a backdoor target in the model under test ({})",
        which.join("; ")
    )
}
