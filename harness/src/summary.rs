//! The plain-text summary printed to stdout after a run: readable without colour.

use gauntlet_reports::{CheckStatus, GateBound, Proportion, RunReport};

fn percent(p: &Proportion) -> String {
    format!(
        "{:5.1}% [{:5.1}, {:5.1}]",
        p.value * 100.0,
        p.ci95_low * 100.0,
        p.ci95_high * 100.0
    )
}

/// The summary table: clean accuracy, robust accuracy per attack and ε, worst case, gates, checks.
pub fn render(report: &RunReport) -> String {
    let mut lines = Vec::new();
    lines.push(format!(
        "gauntlet {} · suite `{}` · model `{}` ({}) · {} samples of `{}` · seed {} · {}",
        report.gauntlet_version,
        report.suite.name,
        report.model.name,
        report.model.architecture,
        report.dataset.samples,
        report.dataset.name,
        report.seed,
        report.device
    ));
    lines.push(String::new());
    lines.push(format!(
        "{:<14} {:<5} {:>8}  {:<25} {:>9} {:>10} {:>8}",
        "attack", "norm", "epsilon", "accuracy [95% CI]", "success", "max ‖δ‖", "seconds"
    ));
    lines.push(format!(
        "{:<14} {:<5} {:>8}  {:<25} {:>9} {:>10} {:>8.1}",
        "clean",
        "-",
        "0",
        percent(&report.clean.accuracy),
        "-",
        "-",
        report.timings.clean_seconds
    ));
    for attack in &report.attacks {
        lines.push(format!(
            "{:<14} {:<5} {:>8}  {:<25} {:>8.1}% {:>10.4} {:>8.1}",
            attack.label,
            attack.norm,
            attack.epsilon,
            percent(&attack.robust_accuracy),
            attack.success_rate.value * 100.0,
            attack.perturbation.max,
            attack.seconds
        ));
    }
    for worst in &report.worst_case {
        if worst.attacks.len() > 1 {
            lines.push(format!(
                "{:<14} {:<5} {:>8}  {:<25}",
                "worst case",
                worst.norm,
                worst.epsilon,
                percent(&worst.robust_accuracy)
            ));
        }
    }
    if !report.gates.is_empty() {
        lines.push(String::new());
        for gate in &report.gates {
            let status = if gate.passed { "PASS" } else { "FAIL" };
            lines.push(match (gate.bound, &gate.detail) {
                (_, Some(detail)) => format!("{status} {}: {detail}", gate.gate),
                (GateBound::AtLeast, None) => format!(
                    "{status} {} = {:.2}% (threshold {:.2}%)",
                    gate.gate,
                    gate.actual * 100.0,
                    gate.threshold * 100.0
                ),
                (GateBound::AtMostIndex, None) => format!(
                    "{status} {} = {:.2} (at most {:.2})",
                    gate.gate, gate.actual, gate.threshold
                ),
                (GateBound::AtLeastValue, None) => format!(
                    "{status} {} = {:.3} (at least {:.3})",
                    gate.gate, gate.actual, gate.threshold
                ),
                (GateBound::AtMost, None) => format!(
                    "{status} {} = {:.2} points (at most {:.2} points)",
                    gate.gate,
                    gate.actual * 100.0,
                    gate.threshold * 100.0
                ),
            });
        }
    }
    if let Some(backdoor) = &report.backdoor {
        lines.push(String::new());
        lines.extend(crate::backdoor::summary_lines(backdoor));
    }
    if !report.detectors.is_empty() {
        lines.push(String::new());
        lines.extend(crate::detector::summary_lines(report));
    }
    if let Some(probing) = &report.probing {
        lines.push(String::new());
        lines.push(probing.headline());
    }
    if let Some(baseline) = &report.baseline {
        lines.push(String::new());
        lines.push(format!("against the baseline {}:", baseline.path));
        for warning in &baseline.warnings {
            lines.push(format!("  warning: {warning}"));
        }
        let show = |p: &Option<Proportion>| match p {
            Some(p) => format!("{:5.1}%", p.value * 100.0),
            None => "    -".to_string(),
        };
        for row in &baseline.rows {
            let change = match &row.change {
                Some(c) => format!(
                    "{:+5.1} pp [{:+.1}, {:+.1}] p={:.3}",
                    c.delta * 100.0,
                    c.ci95_low * 100.0,
                    c.ci95_high * 100.0,
                    c.p_value
                ),
                None => "-".to_string(),
            };
            lines.push(format!(
                "  {:<28} {} → {}  {:<32} {}{}",
                row.key,
                show(&row.previous),
                show(&row.now),
                change,
                row.verdict.as_str(),
                row.note
                    .as_ref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            ));
        }
    }
    lines.push(String::new());
    for check in &report.sanity_checks {
        let status = match check.status {
            CheckStatus::Pass => "ok  ",
            CheckStatus::Warn => "WARN",
            CheckStatus::Fail => "FAIL",
        };
        lines.push(format!("{status} {}: {}", check.name, check.detail));
    }
    lines.push(String::new());
    lines.push(format!(
        "total {:.1} s (load {:.1} s, clean {:.1} s, attacks {:.1} s)",
        report.timings.total_seconds,
        report.timings.load_seconds,
        report.timings.clean_seconds,
        report.timings.attack_seconds
    ));
    lines.join("\n")
}
