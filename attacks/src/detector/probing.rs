//! The query-similarity monitor: a stateful guardrail that watches one client's stream of
//! queries and flags the near-duplicates a black-box attack sends.
//!
//! A score- or decision-based attack (Square, HopSkipJump) queries the model hundreds or
//! thousands of times with small variations of one image. Per client, the monitor keeps the
//! last `window` queries and scores each new query by the **mean L2 distance to its `k`
//! nearest neighbours** among them (Chen, Carlini & Wagner, "Stateful Detection of Black-Box
//! Adversarial Attacks", 2020, on raw inputs instead of a learned encoding). A query closer
//! than the threshold is flagged. The threshold is fixed on a benign stream (distinct clean
//! inputs, one after another) at a target false-positive rate, as a deployment would fix it.
//!
//! What gauntlet reports is a race: for each simulated attacker session, the number of
//! queries the monitor needed to flag it, against the number the attack needed to succeed.
//!
//! **Threshold convention** (the mirror of [`super::metrics::detection_at_fpr`]: lower
//! distance = more suspicious): of `n` benign distances at most `m = ⌊α·n⌋` may be flagged,
//! so the threshold is the `(m + 1)`-th smallest benign distance and a query is flagged when
//! its distance is **strictly below** it. Ties at the threshold flag fewer than `m`.

use std::collections::VecDeque;

use crate::AttackError;

/// The monitor's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuerySimilarity {
    /// Neighbours averaged over; a query is scored once the history holds `k`.
    pub k: usize,
    /// Queries of the history kept per client (the oldest is dropped).
    pub window: usize,
}

impl QuerySimilarity {
    /// Errors name the bad setting.
    pub fn new(k: usize, window: usize) -> Result<Self, AttackError> {
        if k == 0 {
            return Err(AttackError::invalid_parameter("k", "must be ≥ 1, got 0"));
        }
        if window < k {
            return Err(AttackError::invalid_parameter(
                "window",
                format!("must be ≥ k = {k}, got {window}"),
            ));
        }
        Ok(Self { k, window })
    }

    /// A new client's session: an empty history.
    pub fn session(&self) -> Session {
        // The history grows with the queries sent, never to `window` up front: a suite may
        // ask for an absurd window.
        Session {
            settings: *self,
            history: VecDeque::new(),
        }
    }

    /// The threshold at `target_fpr` on a benign stream: the distances of its queries (those
    /// scored, from the `k + 1`-th on), and the threshold fixed on them. An error when the
    /// stream is too short to score any query or the rate is outside `[0, 1]`.
    pub fn calibrate(
        &self,
        benign: &[Vec<f32>],
        target_fpr: f64,
    ) -> Result<Calibration, AttackError> {
        if !(0.0..=1.0).contains(&target_fpr) {
            return Err(AttackError::invalid_parameter(
                "target_fpr",
                format!("must be in [0, 1], got {target_fpr}"),
            ));
        }
        let mut session = self.session();
        let mut distances = Vec::new();
        for query in benign {
            if let Some(distance) = session.observe(query)? {
                distances.push(distance);
            }
        }
        if distances.is_empty() {
            return Err(AttackError::invalid_parameter(
                "benign_samples",
                format!(
                    "a benign stream of {} queries scores none: it needs more than k = {}",
                    benign.len(),
                    self.k
                ),
            ));
        }
        let mut sorted = distances.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let allowed = ((target_fpr * n as f64) + 1e-9).floor() as usize;
        let threshold = if allowed >= n {
            f64::INFINITY
        } else {
            sorted[allowed]
        };
        let flagged = distances.iter().filter(|&&d| d < threshold).count();
        Ok(Calibration {
            threshold,
            scored: n,
            achieved_fpr: flagged as f64 / n as f64,
        })
    }
}

/// A threshold fixed on a benign stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// Queries closer than this (mean distance to the k nearest) are flagged.
    pub threshold: f64,
    /// Benign queries scored.
    pub scored: usize,
    /// The share of them flagged (at most the target rate).
    pub achieved_fpr: f64,
}

/// One client's history.
#[derive(Debug, Clone)]
pub struct Session {
    settings: QuerySimilarity,
    history: VecDeque<Vec<f32>>,
}

impl Session {
    /// Score `query` against the history (`None` while it holds fewer than `k` queries), then
    /// add it. An error when the query's width differs from the history's or it is not finite.
    pub fn observe(&mut self, query: &[f32]) -> Result<Option<f64>, AttackError> {
        if let Some(first) = self.history.front() {
            if first.len() != query.len() {
                return Err(AttackError::ShapeMismatch {
                    what: "features of a query vs the monitor's history",
                    expected: vec![first.len()],
                    actual: vec![query.len()],
                });
            }
        }
        if query.iter().any(|v| !v.is_finite()) {
            return Err(AttackError::invalid_parameter(
                "query",
                "a query holds a NaN or infinite value",
            ));
        }
        let k = self.settings.k;
        let score = (self.history.len() >= k).then(|| {
            let mut distances: Vec<f64> = self
                .history
                .iter()
                .map(|past| {
                    past.iter()
                        .zip(query)
                        .map(|(a, b)| {
                            let d = f64::from(*a) - f64::from(*b);
                            d * d
                        })
                        .sum::<f64>()
                        .sqrt()
                })
                .collect();
            distances.select_nth_unstable_by(k - 1, f64::total_cmp);
            distances[..k].iter().sum::<f64>() / k as f64
        });
        if self.history.len() == self.settings.window {
            self.history.pop_front();
        }
        self.history.push_back(query.to_vec());
        Ok(score)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::{Distribution, Normal};

    #[test]
    fn the_score_is_the_mean_distance_to_the_k_nearest_past_queries() {
        let monitor = QuerySimilarity::new(2, 10).unwrap();
        let mut session = monitor.session();
        assert_eq!(session.observe(&[0.0, 0.0]).unwrap(), None);
        assert_eq!(session.observe(&[3.0, 4.0]).unwrap(), None);
        // Distances 5 (to the origin) and 0 (to (3, 4)); then 10, 5 and 5.
        assert_eq!(session.observe(&[3.0, 4.0]).unwrap(), Some(2.5));
        let score = session.observe(&[6.0, 8.0]).unwrap().unwrap();
        assert!((score - 5.0).abs() < 1e-12, "{score}");
    }

    #[test]
    fn the_window_forgets_the_oldest_query() {
        let monitor = QuerySimilarity::new(1, 2).unwrap();
        let mut session = monitor.session();
        session.observe(&[0.0]).unwrap();
        session.observe(&[10.0]).unwrap();
        session.observe(&[20.0]).unwrap();
        // 0 was dropped: the nearest of {10, 20} to 1 is 10, at distance 9.
        assert_eq!(session.observe(&[1.0]).unwrap(), Some(9.0));
    }

    /// On a benign stream of independent draws the achieved false-positive rate is at most
    /// the target and within one query of it, and a fresh stream from the same distribution is
    /// flagged at about the target rate (5 binomial standard deviations); an attacker's
    /// near-duplicates (one image plus tiny noise) are flagged from the first scored query.
    #[test]
    fn the_threshold_holds_its_false_positive_rate_and_near_duplicates_are_flagged_at_once() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
        let draw = |rng: &mut rand_chacha::ChaCha8Rng, n: usize| -> Vec<Vec<f32>> {
            (0..n)
                .map(|_| (0..16).map(|_| rng.random_range(0.0f32..1.0)).collect())
                .collect()
        };
        let monitor = QuerySimilarity::new(5, 200).unwrap();
        let benign = draw(&mut rng, 2000);
        let calibration = monitor.calibrate(&benign, 0.05).unwrap();
        assert_eq!(calibration.scored, 1995);
        assert!(calibration.achieved_fpr <= 0.05);
        assert!(calibration.achieved_fpr >= 0.05 - 1.0 / 1995.0);
        let mut session = monitor.session();
        let fresh = draw(&mut rng, 2000);
        let mut flagged = 0;
        for query in &fresh {
            if let Some(d) = session.observe(query).unwrap() {
                flagged += usize::from(d < calibration.threshold);
            }
        }
        let rate = flagged as f64 / 1995.0;
        let sd = (0.05 * 0.95 / 1995.0f64).sqrt();
        assert!((rate - 0.05).abs() < 5.0 * sd, "{rate}");

        let noise = Normal::new(0.0f32, 0.01).unwrap();
        let image = &fresh[0];
        let mut session = monitor.session();
        for step in 0..20 {
            let query: Vec<f32> = image.iter().map(|v| v + noise.sample(&mut rng)).collect();
            match session.observe(&query).unwrap() {
                None => assert!(step < 5),
                Some(d) => assert!(d < calibration.threshold, "query {step}: {d}"),
            }
        }
    }

    #[test]
    fn bad_settings_and_queries_are_named() {
        assert!(QuerySimilarity::new(0, 10)
            .unwrap_err()
            .to_string()
            .contains("`k`"));
        assert!(QuerySimilarity::new(5, 4)
            .unwrap_err()
            .to_string()
            .contains("`window`"));
        // An absurd window allocates nothing up front.
        let mut huge = QuerySimilarity::new(1, 1 << 62).unwrap().session();
        assert_eq!(huge.observe(&[0.0]).unwrap(), None);
        assert_eq!(huge.observe(&[2.0]).unwrap(), Some(2.0));
        let monitor = QuerySimilarity::new(1, 4).unwrap();
        let mut session = monitor.session();
        session.observe(&[0.0, 1.0]).unwrap();
        assert!(session.observe(&[0.0]).is_err());
        assert!(session.observe(&[f32::NAN, 0.0]).is_err());
        let short = monitor
            .calibrate(&[vec![0.0]], 0.01)
            .unwrap_err()
            .to_string();
        assert!(short.contains("benign_samples"), "{short}");
        assert!(monitor.calibrate(&vec![vec![0.0]; 3], 1.5).is_err());
    }
}
