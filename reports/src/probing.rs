//! `results.json`'s `probing`: a simulated black-box attacker's query stream against the
//! query-similarity monitor (`gauntlet_attacks::detector::probing`). Per attacker session (one
//! correctly classified sample, attacked alone): the queries it sent, the query at which the
//! attack first succeeded and the query at which the monitor first flagged it.

use serde::{Deserialize, Serialize};

use crate::error::ReportError;

/// The probing simulation's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbingReport {
    /// The black-box attack whose queries form the stream (registry name), its norm and ε.
    pub attack: String,
    pub norm: String,
    pub epsilon: f64,
    /// The monitor: neighbours averaged over and the history kept per session.
    pub k: usize,
    pub window: usize,
    /// The benign stream the threshold was fixed on: clean inputs, one after another.
    pub benign_queries: usize,
    pub target_fpr: f64,
    /// Queries whose mean distance to their `k` nearest predecessors is below this are
    /// flagged; the benign stream's share flagged is `achieved_fpr`.
    pub threshold: f64,
    pub achieved_fpr: f64,
    pub sessions: Vec<ProbingSession>,
}

/// One attacker session.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbingSession {
    /// Global index of the attacked sample.
    pub index: u64,
    /// Queries the attack sent in all.
    pub queries: u32,
    /// The 1-based query at which the model first misclassified (`None`: never).
    pub succeeded_at: Option<u32>,
    /// The 1-based query at which the monitor first flagged the session (`None`: never).
    pub detected_at: Option<u32>,
}

impl ProbingSession {
    /// The monitor flagged the session no later than the query that succeeded (a success
    /// that the monitor flags on the same query is answered by the monitor, not the model).
    pub fn caught_in_time(&self) -> bool {
        match (self.detected_at, self.succeeded_at) {
            (Some(detected), Some(succeeded)) => detected <= succeeded,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

impl ProbingReport {
    /// Sessions the attack succeeded in.
    pub fn succeeded(&self) -> usize {
        self.sessions
            .iter()
            .filter(|s| s.succeeded_at.is_some())
            .count()
    }

    /// Successful sessions the monitor flagged before (or at) the successful query.
    pub fn caught_before_success(&self) -> usize {
        self.sessions
            .iter()
            .filter(|s| s.succeeded_at.is_some() && s.caught_in_time())
            .count()
    }

    /// The median of the detection queries over the sessions the monitor flagged.
    pub fn median_queries_to_detection(&self) -> Option<f64> {
        median(self.sessions.iter().filter_map(|s| s.detected_at))
    }

    /// The median of the success queries over the sessions the attack succeeded in.
    pub fn median_queries_to_success(&self) -> Option<f64> {
        median(self.sessions.iter().filter_map(|s| s.succeeded_at))
    }

    /// One sentence for the terminal, the Markdown summary and the HTML report.
    pub fn headline(&self) -> String {
        let succeeded = self.succeeded();
        let mut line = format!(
            "probing: `{}` (ε = {}) succeeded in {} of {} sessions; the query-similarity \
             monitor (k = {}, {:.1}% benign false positives) flagged {} of those {} before the \
             successful query",
            self.attack,
            self.epsilon,
            succeeded,
            self.sessions.len(),
            self.k,
            self.achieved_fpr * 100.0,
            self.caught_before_success(),
            succeeded
        );
        if let Some(median) = self.median_queries_to_detection() {
            line.push_str(&format!("; median queries to detection {median}"));
        }
        if let Some(median) = self.median_queries_to_success() {
            line.push_str(&format!(", to success {median}"));
        }
        line
    }

    /// Refuse what a well-formed result cannot hold: non-finite or out-of-range figures, a
    /// session whose success or detection query is past its query count.
    pub fn validate(&self) -> Result<(), ReportError> {
        let bad = |field: String, reason: String| {
            Err(ReportError::InvalidReport {
                field: format!("probing.{field}"),
                reason,
            })
        };
        for (name, value) in [
            ("epsilon", self.epsilon),
            ("target_fpr", self.target_fpr),
            ("achieved_fpr", self.achieved_fpr),
        ] {
            if !value.is_finite() || value < 0.0 {
                return bad(
                    name.to_string(),
                    format!("must be a finite number ≥ 0, got {value}"),
                );
            }
        }
        if self.threshold.is_nan() {
            return bad("threshold".to_string(), "is NaN".to_string());
        }
        for (i, session) in self.sessions.iter().enumerate() {
            for (name, at) in [
                ("succeeded_at", session.succeeded_at),
                ("detected_at", session.detected_at),
            ] {
                if at.is_some_and(|at| at == 0 || at > session.queries) {
                    return bad(
                        format!("sessions[{i}].{name}"),
                        format!("is not one of the session's {} queries", session.queries),
                    );
                }
            }
        }
        Ok(())
    }
}

fn median(values: impl Iterator<Item = u32>) -> Option<f64> {
    let mut values: Vec<u32> = values.collect();
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let n = values.len();
    Some(if n % 2 == 1 {
        f64::from(values[n / 2])
    } else {
        (f64::from(values[n / 2 - 1]) + f64::from(values[n / 2])) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(
        queries: u32,
        succeeded_at: Option<u32>,
        detected_at: Option<u32>,
    ) -> ProbingSession {
        ProbingSession {
            index: 0,
            queries,
            succeeded_at,
            detected_at,
        }
    }

    fn report(sessions: Vec<ProbingSession>) -> ProbingReport {
        ProbingReport {
            attack: "square".into(),
            norm: "linf".into(),
            epsilon: 0.1,
            k: 20,
            window: 1000,
            benign_queries: 480,
            target_fpr: 0.01,
            threshold: 3.5,
            achieved_fpr: 0.0083,
            sessions,
        }
    }

    #[test]
    fn the_race_is_counted_per_session() {
        let r = report(vec![
            session(40, Some(40), Some(21)), // caught first
            session(30, Some(30), Some(30)), // caught on the successful query
            session(15, Some(15), None),     // succeeded before the monitor could score
            session(90, None, Some(21)),     // failed, caught
            session(50, Some(50), Some(49)),
        ]);
        assert_eq!(r.succeeded(), 4);
        assert_eq!(r.caught_before_success(), 3);
        assert_eq!(r.median_queries_to_detection(), Some(21.0 + 4.5));
        assert_eq!(r.median_queries_to_success(), Some(35.0));
        let line = r.headline();
        assert!(line.contains("succeeded in 4 of 5 sessions"), "{line}");
        assert!(line.contains("flagged 3 of those 4"), "{line}");
        r.validate().unwrap();
    }

    #[test]
    fn impossible_sessions_are_refused() {
        assert!(report(vec![session(10, Some(11), None)])
            .validate()
            .is_err());
        assert!(report(vec![session(10, None, Some(0))]).validate().is_err());
        let mut r = report(Vec::new());
        r.achieved_fpr = f64::NAN;
        assert!(r.validate().is_err());
    }
}
