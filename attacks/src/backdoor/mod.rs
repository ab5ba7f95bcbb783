//! What the poisonings ([`crate::poisoning`]) and the trigger scans ([`crate::trigger_scan`])
//! share: a labelled image set as plain pixels, the trigger type both plant and recover, and
//! the MAD outlier test.

pub mod anomaly;
pub mod images;
pub mod trigger;

pub use anomaly::{median, AnomalyIndices, MAD_CONSISTENCY};
pub use images::{predictions, ImageSet};
pub use trigger::{NamedPosition, PatchPosition, PatternKind, Trigger};

/// A count out of a total, e.g. triggered inputs sent to the target class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub hits: usize,
    pub total: usize,
}

impl Rate {
    /// `hits / total`, or `None` when there is nothing to count.
    pub fn fraction(self) -> Option<f64> {
        (self.total > 0).then(|| self.hits as f64 / self.total as f64)
    }

    /// The Wilson score interval at `z` standard errors (1.96 for 95%), as `(low, high)`:
    /// unlike the normal approximation it stays inside [0, 1] and is not degenerate at 0 or
    /// `total` hits, which is exactly where attack success rates sit. `None` when
    /// `total = 0`.
    pub fn wilson(self, z: f64) -> Option<(f64, f64)> {
        let n = self.total as f64;
        let p = self.fraction()?;
        let z2 = z * z;
        let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
        let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
        Some(((centre - half).max(0.0), (centre + half).min(1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_interval_known_values() {
        // 0 of 10 at z = 1.96: [0, z²/(n + z²)] = [0, 0.27753].
        let (low, high) = Rate { hits: 0, total: 10 }.wilson(1.96).unwrap();
        assert_eq!(low, 0.0);
        assert!((high - 3.8416 / 13.8416).abs() < 1e-12, "{high}");
        // 50 of 100: centre 0.5, half-width 1.96·√(0.25/100 + 3.8416/40000)/(1 + 0.038416).
        let (low, high) = Rate {
            hits: 50,
            total: 100,
        }
        .wilson(1.96)
        .unwrap();
        let half = 1.96 * (0.0025f64 + 3.8416 / 40000.0).sqrt() / 1.038416;
        assert!((low - (0.5 - half)).abs() < 1e-12 && (high - (0.5 + half)).abs() < 1e-12);
        assert!(Rate { hits: 0, total: 0 }.wilson(1.96).is_none());
    }
}
