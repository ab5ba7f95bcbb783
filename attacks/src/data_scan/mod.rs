//! Data-level poison detection: given a model trained on a (possibly poisoned) training set,
//! score every training sample and flag the likely poisoned ones. One trait, one registry.
//!
//! These detectors work on the penultimate-layer features ([`gauntlet_models::Model::features`]
//! with [`gauntlet_models::FeatureName::Penultimate`]). The literature reports them as weak
//! against BadNets (BackdoorBench, Armory; `shared/design/anchors-2.md` §1.2); gauntlet reports
//! their precision and recall against the poisoned indices ([`precision_recall`]) as they
//! come out.
//!
//! Adding a detector is one new file in `src/data_scan/` and one name in the
//! `register_data_scans!` line below.

use gauntlet_models::Model;

use crate::backdoor::ImageSet;
use crate::{AttackError, ParameterDoc};

/// Declare each detector module and list its `ENTRY` in [`DATA_SCANS`], in the order given.
macro_rules! register_data_scans {
    ($($module:ident),* $(,)?) => {
        $(pub mod $module;)*
        /// Every data-level detector, in registry order.
        pub const DATA_SCANS: &[&DataScanEntry] = &[$(&$module::ENTRY),*];
    };
}

register_data_scans! { spectral_signatures, activation_clustering }

/// A detector of poisoned training samples.
pub trait DataScan: Send + Sync {
    /// The registry name, e.g. `spectral_signatures`.
    fn name(&self) -> &'static str;
    /// Score and flag the samples of `training` (with the labels the model was trained on)
    /// using `model`'s features.
    fn scan(&self, model: &dyn Model, training: &ImageSet) -> Result<DataScanReport, AttackError>;
}

/// One registry entry.
pub struct DataScanEntry {
    pub name: &'static str,
    pub summary: &'static str,
    pub reference: &'static str,
    pub parameters: &'static [ParameterDoc],
    pub build: fn(params: &toml::Table) -> Result<Box<dyn DataScan>, AttackError>,
}

/// The registry entry called `name`, if any.
pub fn find_data_scan(name: &str) -> Option<&'static DataScanEntry> {
    DATA_SCANS.iter().copied().find(|entry| entry.name == name)
}

/// What a data-level detector found.
#[derive(Debug, Clone, PartialEq)]
pub struct DataScanReport {
    pub scan: &'static str,
    /// One outlier score per training sample, in order (higher = more suspicious).
    pub scores: Vec<f64>,
    /// Flagged sample indices, increasing.
    pub flagged: Vec<usize>,
}

/// Precision and recall of `flagged` against the true poisoned indices `truth` (both lists of
/// distinct indices). Precision is `None` when nothing is flagged, recall when nothing is
/// poisoned.
pub fn precision_recall(flagged: &[usize], truth: &[usize]) -> (Option<f64>, Option<f64>) {
    let truth: std::collections::BTreeSet<usize> = truth.iter().copied().collect();
    let hits = flagged.iter().filter(|i| truth.contains(i)).count();
    let precision = (!flagged.is_empty()).then(|| hits as f64 / flagged.len() as f64);
    let recall = (!truth.is_empty()).then(|| hits as f64 / truth.len() as f64);
    (precision, recall)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_and_recall_on_known_sets() {
        assert_eq!(
            precision_recall(&[1, 2, 3, 4], &[2, 4, 6]),
            (Some(0.5), Some(2.0 / 3.0))
        );
        assert_eq!(precision_recall(&[], &[1]), (None, Some(0.0)));
        assert_eq!(precision_recall(&[1], &[]), (Some(0.0), None));
    }
}
