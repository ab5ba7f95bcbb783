//! This run against an earlier one (`gauntlet run --baseline last-night/results.json`): for
//! the clean accuracy, each attack at each ε and each worst case, previous / now / change with a
//! 95% interval and a test — and the relative gates (`max_robust_accuracy_drop = 0.02`) that
//! fail a run which lost too much. Pure functions of two [`RunReport`]s.
//!
//! **The statistics** (docs/ci.md). A change is `now − previous` of two proportions. Its 95%
//! interval is Newcombe's hybrid score interval (Newcombe 1998, method 10), built from the two
//! Wilson intervals — it stays inside [−1, 1] and behaves near 0% and 100%, where the Wald
//! interval does not. A change is *significant* when that interval excludes 0. The p-value
//! beside it is the pooled two-proportion z-test's (two-sided). Both treat the runs as
//! independent samples; on the same images the two runs are paired and positively correlated,
//! so both are conservative: a change they call significant is one.
//!
//! **Relative gates** compare the point estimates (`previous − now ≤ max_drop`), so a gate's
//! verdict does not move with the sample size; the interval says how much of the drop the data
//! can vouch for. A gate fails closed: when the baseline lacks the figure, or measured it with
//! other attack parameters, the gate fails and says why.

use std::collections::BTreeSet;

use gauntlet_attacks::Norm;
use gauntlet_reports::{
    AttackResult, BaselineComparison, BaselineRow, ChangeVerdict, GateBound, GateVerdict,
    Proportion, ProportionChange, RunReport,
};
use serde::{Deserialize, Serialize};

use crate::metrics::{epsilon_value, proportion};

/// The method, in words, as it appears in the results.
pub const METHOD: &str = "change = now − previous; 95% interval: Newcombe's hybrid score \
interval (method 10) from the two Wilson intervals, significant when it excludes 0; p: pooled \
two-proportion z-test, two-sided";

/// Compare `now` with `baseline` (read from `baseline_path`, as the user named it).
pub fn compare(baseline: &RunReport, baseline_path: &str, now: &RunReport) -> BaselineComparison {
    let mut rows = Vec::new();
    rows.push(row(
        "clean".to_owned(),
        Some(&baseline.clean.accuracy),
        Some(&now.clean.accuracy),
        None,
    ));
    for attack in &now.attacks {
        let before = baseline
            .attacks
            .iter()
            .find(|b| b.label == attack.label && b.epsilon == attack.epsilon);
        let note = before.and_then(|before| attack_difference(before, attack));
        rows.push(row(
            attack_key(&attack.label, attack.epsilon),
            before.map(|b| &b.robust_accuracy),
            Some(&attack.robust_accuracy),
            note,
        ));
    }
    for worst in &now.worst_case {
        let before = baseline
            .worst_case
            .iter()
            .find(|b| b.norm == worst.norm && b.epsilon == worst.epsilon);
        let note = before.and_then(|before| {
            (before.attacks != worst.attacks).then(|| {
                format!(
                    "the worst case is over other attacks: [{}] before, [{}] now",
                    before.attacks.join(", "),
                    worst.attacks.join(", ")
                )
            })
        });
        rows.push(row(
            worst_case_key(&worst.norm, worst.epsilon),
            before.map(|b| &b.robust_accuracy),
            Some(&worst.robust_accuracy),
            note,
        ));
    }
    for attack in &baseline.attacks {
        if !now
            .attacks
            .iter()
            .any(|a| a.label == attack.label && a.epsilon == attack.epsilon)
        {
            rows.push(row(
                attack_key(&attack.label, attack.epsilon),
                Some(&attack.robust_accuracy),
                None,
                None,
            ));
        }
    }
    for worst in &baseline.worst_case {
        if !now
            .worst_case
            .iter()
            .any(|w| w.norm == worst.norm && w.epsilon == worst.epsilon)
        {
            rows.push(row(
                worst_case_key(&worst.norm, worst.epsilon),
                Some(&worst.robust_accuracy),
                None,
                None,
            ));
        }
    }
    BaselineComparison {
        path: baseline_path.to_owned(),
        suite: baseline.suite.name.clone(),
        gauntlet_version: baseline.gauntlet_version.clone(),
        model_sha256: baseline.model.sha256.clone(),
        dataset: baseline.dataset.name.clone(),
        samples: baseline.dataset.samples,
        seed: baseline.seed,
        method: METHOD.to_owned(),
        rows,
        warnings: run_warnings(baseline, now),
    }
}

/// `pgd@0.1`: an attack's label at one ε, as gates name it.
pub fn attack_key(label: &str, epsilon: f64) -> String {
    format!("{label}@{epsilon}")
}

/// `worst_case[linf@0.1]`.
pub fn worst_case_key(norm: &str, epsilon: f64) -> String {
    format!("worst_case[{norm}@{epsilon}]")
}

fn row(
    key: String,
    previous: Option<&Proportion>,
    now: Option<&Proportion>,
    note: Option<String>,
) -> BaselineRow {
    let change = match (previous, now) {
        (Some(previous), Some(now)) => change(previous, now),
        _ => None,
    };
    let verdict = match (previous, now, &change) {
        (None, _, _) => ChangeVerdict::New,
        (_, None, _) => ChangeVerdict::Removed,
        _ if note.is_some() => ChangeVerdict::Incomparable,
        (_, _, Some(change)) if change.significant && change.delta > 0.0 => ChangeVerdict::Improved,
        (_, _, Some(change)) if change.significant && change.delta < 0.0 => {
            ChangeVerdict::Regressed
        }
        (_, _, Some(_)) => ChangeVerdict::Unchanged,
        // A side with no samples has no proportion to compare.
        (Some(_), Some(_), None) => ChangeVerdict::Incomparable,
    };
    let note = match (&note, previous, now, &change) {
        (None, Some(_), Some(_), None) => Some("one of the runs evaluated no samples".to_owned()),
        _ => note,
    };
    BaselineRow {
        key,
        previous: previous.copied(),
        now: now.copied(),
        change,
        verdict,
        note,
    }
}

/// `now − previous` with Newcombe's interval and the pooled z-test. The intervals and the
/// values are recomputed from the counts, so an edited or rounded baseline file cannot skew
/// them. `None` when a side has no samples.
pub fn change(previous: &Proportion, now: &Proportion) -> Option<ProportionChange> {
    if previous.total == 0 || now.total == 0 {
        return None;
    }
    let before = proportion(previous.successes.min(previous.total), previous.total);
    let after = proportion(now.successes.min(now.total), now.total);
    let delta = after.value - before.value;
    // Newcombe (1998), method 10: the distance from each estimate to its Wilson bound.
    let low = delta
        - ((after.value - after.ci95_low).powi(2) + (before.ci95_high - before.value).powi(2))
            .sqrt();
    let high = delta
        + ((after.ci95_high - after.value).powi(2) + (before.value - before.ci95_low).powi(2))
            .sqrt();
    let (n1, n2) = (after.total as f64, before.total as f64);
    let pooled = (after.successes + before.successes) as f64 / (n1 + n2);
    let standard_error = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    let p_value = if standard_error > 0.0 {
        erfc((delta / standard_error).abs() / std::f64::consts::SQRT_2).clamp(0.0, 1.0)
    } else {
        // Both runs at 0% or both at 100%: no difference to test.
        1.0
    };
    Some(ProportionChange {
        delta,
        ci95_low: low.max(-1.0),
        ci95_high: high.min(1.0),
        p_value,
        significant: low > 0.0 || high < 0.0,
    })
}

/// The complementary error function, to about 1e-7 relative (Numerical Recipes' Chebyshev
/// fit): enough for a p-value printed to three decimals.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let value = t * poly.exp();
    if x >= 0.0 {
        value
    } else {
        2.0 - value
    }
}

/// Why an attack at the same label and ε did not measure the same thing, if it did not.
fn attack_difference(before: &AttackResult, now: &AttackResult) -> Option<String> {
    let mut differences = Vec::new();
    if before.attack != now.attack {
        differences.push(format!("attack `{}` → `{}`", before.attack, now.attack));
    }
    if before.norm != now.norm {
        differences.push(format!("norm {} → {}", before.norm, now.norm));
    }
    let keys: BTreeSet<&String> = before.params.keys().chain(now.params.keys()).collect();
    for key in keys {
        let (old, new) = (before.params.get(key), now.params.get(key));
        if old != new {
            let show = |v: Option<&serde_json::Value>| match v {
                Some(v) => v.to_string(),
                None => "unset".to_owned(),
            };
            differences.push(format!("{key} {} → {}", show(old), show(new)));
        }
    }
    if let (Some(old), Some(new)) = (&before.objective, &now.objective) {
        if old != new {
            differences.push(format!("objective `{old}` → `{new}`"));
        }
    }
    (!differences.is_empty()).then(|| format!("the attack changed: {}", differences.join(", ")))
}

fn run_warnings(baseline: &RunReport, now: &RunReport) -> Vec<String> {
    let mut warnings = Vec::new();
    let (before, after) = (&baseline.dataset, &now.dataset);
    if before.name != after.name || before.path != after.path || before.format != after.format {
        warnings.push(format!(
            "the data differ: `{}` ({}) before, `{}` ({}) now",
            before.name, before.path, after.name, after.path
        ));
    }
    if before.samples != after.samples {
        warnings.push(format!(
            "the sample count differs: {} before, {} now; the intervals account for it, but the \
             figures are over different images",
            before.samples, after.samples
        ));
    }
    if before.class_names != after.class_names {
        warnings.push("the class names differ".to_owned());
    }
    if baseline.seed != now.seed {
        warnings.push(format!(
            "the seed differs: {} before, {} now; random starts and targets differ",
            baseline.seed, now.seed
        ));
    }
    if baseline.device != now.device {
        warnings.push(format!(
            "the device differs: {} before, {} now; floating-point results may differ slightly",
            baseline.device, now.device
        ));
    }
    if baseline.suite.name != now.suite.name {
        warnings.push(format!(
            "the suite differs: `{}` before, `{}` now",
            baseline.suite.name, now.suite.name
        ));
    }
    warnings
}

/// A relative gate: how much a figure may fall against the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelativeGate {
    pub target: DropTarget,
    /// Largest allowed `previous − now`, as a fraction (0.02 = two points).
    pub max_drop: f64,
}

/// What a relative gate watches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DropTarget {
    Clean,
    /// One attack at one ε.
    Attack {
        label: String,
        epsilon: f32,
    },
    /// Every attack of this run at every ε.
    EveryAttack,
    /// The worst case at one (norm, ε).
    WorstCase {
        norm: Norm,
        epsilon: f32,
    },
    /// Every worst case of this run.
    EveryWorstCase,
}

/// The relative gates' verdicts when there is no baseline to compare with at all (a matrix
/// baseline that lacks this cell): every gate fails, saying `why`, as a gate whose figure the
/// baseline lacks does.
pub fn unmeasurable(gates: &[RelativeGate], now: &RunReport, why: &str) -> Vec<GateVerdict> {
    gates
        .iter()
        .flat_map(|gate| {
            gate.keys(now).into_iter().map(move |key| GateVerdict {
                gate: gate.verdict_name(&key),
                threshold: gate.max_drop,
                actual: 0.0,
                passed: false,
                bound: GateBound::AtMost,
                detail: Some(why.to_owned()),
            })
        })
        .collect()
}

impl RelativeGate {
    /// The verdict's name for the comparison row `key`: `max_robust_accuracy_drop[pgd@0.1]`.
    fn verdict_name(&self, key: &str) -> String {
        match self.target {
            DropTarget::Clean => self.prefix().to_owned(),
            DropTarget::WorstCase { .. } | DropTarget::EveryWorstCase => format!(
                "{}[{}]",
                self.prefix(),
                key.trim_start_matches("worst_case[").trim_end_matches(']')
            ),
            _ => format!("{}[{key}]", self.prefix()),
        }
    }

    /// `max_robust_accuracy_drop` and friends, as written in the suite.
    fn prefix(&self) -> &'static str {
        match self.target {
            DropTarget::Clean => "max_clean_accuracy_drop",
            DropTarget::Attack { .. } | DropTarget::EveryAttack => "max_robust_accuracy_drop",
            DropTarget::WorstCase { .. } | DropTarget::EveryWorstCase => {
                "max_worst_case_accuracy_drop"
            }
        }
    }

    /// `max_robust_accuracy_drop[pgd@0.1] ≤ 0.02`, or `… (every attack@ε) ≤ 0.02`.
    pub fn describe(&self) -> String {
        let what = match &self.target {
            DropTarget::Clean => String::new(),
            DropTarget::Attack { label, epsilon } => format!("[{label}@{epsilon}]"),
            DropTarget::EveryAttack => " (every attack@ε)".to_owned(),
            DropTarget::WorstCase { norm, epsilon } => format!("[{norm}@{epsilon}]"),
            DropTarget::EveryWorstCase => " (every worst case)".to_owned(),
        };
        format!("{}{what} ≤ {}", self.prefix(), self.max_drop)
    }

    /// The comparison rows this gate looks at, by key: one per attack@ε (or worst case) of
    /// this run for the `Every…` forms.
    fn keys(&self, now: &RunReport) -> Vec<String> {
        match &self.target {
            DropTarget::Clean => vec!["clean".to_owned()],
            DropTarget::Attack { label, epsilon } => {
                vec![attack_key(label, epsilon_value(*epsilon))]
            }
            DropTarget::EveryAttack => now
                .attacks
                .iter()
                .map(|a| attack_key(&a.label, a.epsilon))
                .collect(),
            DropTarget::WorstCase { norm, epsilon } => {
                vec![worst_case_key(&norm.to_string(), epsilon_value(*epsilon))]
            }
            DropTarget::EveryWorstCase => now
                .worst_case
                .iter()
                .map(|w| worst_case_key(&w.norm, w.epsilon))
                .collect(),
        }
    }
}

/// The verdict of every relative gate against a comparison: one per figure gated. A gate whose
/// figure is missing on either side, or was measured differently, fails and says why.
pub fn evaluate_relative(
    gates: &[RelativeGate],
    comparison: &BaselineComparison,
    now: &RunReport,
) -> Vec<GateVerdict> {
    let mut verdicts = Vec::new();
    for gate in gates {
        for key in gate.keys(now) {
            let name = gate.verdict_name(&key);
            let row = comparison.rows.iter().find(|row| row.key == key);
            let (actual, detail) = match row {
                None => (0.0, Some(format!("this run has no `{key}`"))),
                Some(row) => match (&row.previous, &row.now, &row.change, &row.note) {
                    (None, _, _, _) => (
                        0.0,
                        Some(format!(
                            "the baseline `{}` has no `{key}`, so no drop can be measured",
                            comparison.path
                        )),
                    ),
                    (_, _, _, Some(note)) => (
                        row.change.map_or(0.0, |c| -c.delta),
                        Some(format!("not comparable with the baseline: {note}")),
                    ),
                    (_, _, Some(change), None) => (-change.delta, None),
                    _ => (0.0, Some("one of the runs evaluated no samples".to_owned())),
                },
            };
            verdicts.push(GateVerdict {
                gate: name,
                threshold: gate.max_drop,
                actual,
                passed: detail.is_none() && actual <= gate.max_drop,
                bound: GateBound::AtMost,
                detail,
            });
        }
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;

    const Z95: f64 = 1.959_963_984_540_054;

    fn counts(successes: usize, total: usize) -> Proportion {
        proportion(successes, total)
    }

    #[test]
    fn newcombe_interval_matches_the_published_example() {
        // Newcombe (1998), Table II, example (a): 56/70 − 48/80 = 0.2000, method 10 gives
        // [0.0524, 0.3339].
        let change = change(&counts(48, 80), &counts(56, 70)).unwrap();
        assert!((change.delta - 0.2).abs() < 1e-12);
        assert!(
            (change.ci95_low - 0.0524).abs() < 5e-4,
            "{}",
            change.ci95_low
        );
        assert!(
            (change.ci95_high - 0.3339).abs() < 5e-4,
            "{}",
            change.ci95_high
        );
        assert!(change.significant);
    }

    #[test]
    fn newcombe_interval_matches_the_published_small_sample_example() {
        // Example (b): 9/10 − 3/10 = 0.6000, method 10 gives [0.1705, 0.8090].
        let change = change(&counts(3, 10), &counts(9, 10)).unwrap();
        assert!(
            (change.ci95_low - 0.1705).abs() < 5e-4,
            "{}",
            change.ci95_low
        );
        assert!(
            (change.ci95_high - 0.8090).abs() < 5e-4,
            "{}",
            change.ci95_high
        );
    }

    #[test]
    fn z_test_p_value_matches_the_closed_form() {
        // 56/70 vs 48/80: pooled p = 104/150, z = 0.2 / sqrt(p(1−p)(1/70 + 1/80)) = 2.6502…,
        // two-sided p = erfc(z/√2) = 0.008045… (Python: math.erfc(2.65017/math.sqrt(2))).
        let change = change(&counts(48, 80), &counts(56, 70)).unwrap();
        let pooled: f64 = 104.0 / 150.0;
        let z = 0.2 / (pooled * (1.0 - pooled) * (1.0 / 70.0 + 1.0 / 80.0)).sqrt();
        assert!((z - 2.6502).abs() < 1e-3, "{z}");
        assert!(
            (change.p_value - 0.008045).abs() < 2e-5,
            "{}",
            change.p_value
        );
    }

    #[test]
    fn erfc_matches_known_values() {
        // erfc(0) = 1, erfc(1) = 0.157299207050285, erfc(1.959963984540054/√2) = 0.05.
        assert!((erfc(0.0) - 1.0).abs() < 1e-7);
        assert!((erfc(1.0) - 0.157_299_207_050_285).abs() < 1e-7);
        assert!((erfc(Z95 / std::f64::consts::SQRT_2) - 0.05).abs() < 1e-7);
        assert!((erfc(-1.0) - (2.0 - 0.157_299_207_050_285)).abs() < 1e-7);
    }

    #[test]
    fn identical_runs_are_unchanged_with_p_one() {
        let change = change(&counts(450, 1000), &counts(450, 1000)).unwrap();
        assert_eq!(change.delta, 0.0);
        assert!(change.ci95_low < 0.0 && change.ci95_high > 0.0);
        assert!((change.p_value - 1.0).abs() < 1e-7);
        assert!(!change.significant);
    }

    #[test]
    fn both_runs_at_zero_is_no_change() {
        let change = change(&counts(0, 100), &counts(0, 100)).unwrap();
        assert_eq!(change.p_value, 1.0);
        assert!(!change.significant);
    }

    #[test]
    fn an_empty_side_has_no_change() {
        assert!(change(&counts(0, 0), &counts(5, 10)).is_none());
    }
}
