//! `summary.md`: the run in GitHub-flavoured Markdown, for `$GITHUB_STEP_SUMMARY`, a
//! pull-request or merge-request comment, or a chat message.
//!
//! A headline verdict, the robust-accuracy table with intervals, the worst case, the gates,
//! every sanity check that did not pass, and — with a baseline — previous / now / change. Every
//! string that came from a suite, a model or a dataset is escaped, so a hostile name can neither
//! break the tables nor inject HTML or links into the page that renders the comment.

use std::fmt::Write as _;

use crate::schema::{BaselineComparison, ChangeVerdict, CheckStatus, Proportion, RunReport};

/// File name of the Markdown summary inside an output folder.
pub const MARKDOWN_FILE_NAME: &str = "summary.md";

/// The Markdown summary of a report. A pure function of the report.
pub fn render_markdown(report: &RunReport) -> String {
    let mut out = String::new();
    let failed_gates = report.gates.iter().filter(|g| !g.passed).count();
    let failed_checks = report
        .sanity_checks
        .iter()
        .filter(|c| c.status == CheckStatus::Fail)
        .count();
    let headline = if failed_gates + failed_checks == 0 {
        "✅ passed".to_owned()
    } else {
        let mut parts = Vec::new();
        if failed_gates > 0 {
            parts.push(plural(failed_gates, "gate"));
        }
        if failed_checks > 0 {
            parts.push(plural(failed_checks, "sanity check"));
        }
        format!("❌ failed ({} failed)", parts.join(", "))
    };
    let _ = writeln!(
        out,
        "## gauntlet: suite {} {headline}\n",
        code(&report.suite.name)
    );
    let _ = writeln!(
        out,
        "Model {} ({}, SHA-256 {}) · {} samples of {} · seed {} · {} · gauntlet {}\n",
        code(&report.model.name),
        md(&report.model.architecture),
        code(short_hash(&report.model.sha256)),
        report.dataset.samples,
        code(&report.dataset.name),
        report.seed,
        md(&report.device),
        md(&report.gauntlet_version)
    );

    out.push_str("| attack | norm | ε | accuracy | 95% CI | success rate |\n");
    out.push_str("|---|---|---:|---:|---|---:|\n");
    let clean = &report.clean.accuracy;
    let _ = writeln!(
        out,
        "| clean | – | 0 | {} | {} | – |",
        percent(clean.value),
        interval(clean)
    );
    for attack in &report.attacks {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            md(&attack.label),
            md(&attack.norm),
            attack.epsilon,
            percent(attack.robust_accuracy.value),
            interval(&attack.robust_accuracy),
            percent(attack.success_rate.value)
        );
    }
    for worst in report.worst_case.iter().filter(|w| w.attacks.len() > 1) {
        let _ = writeln!(
            out,
            "| **worst case** | {} | {} | **{}** | {} | – |",
            md(&worst.norm),
            worst.epsilon,
            percent(worst.robust_accuracy.value),
            interval(&worst.robust_accuracy)
        );
    }

    for result in &report.minimal_norm {
        let _ = writeln!(
            out,
            "\nMinimal {} perturbation of {} (one unbounded run; its rows above are read from it): \
             broke {} of the correctly classified samples, median ‖δ‖ {}.",
            md(&result.norm),
            code(&result.label),
            percent(result.success_rate.value),
            result
                .median
                .map_or_else(|| "–".to_string(), |m| format!("{m:.4}"))
        );
    }

    for attack in report.attacks.iter().filter(|a| !a.broken_by.is_empty()) {
        let credits: Vec<String> = attack
            .broken_by
            .iter()
            .map(|c| format!("{} {}", code(&c.member), c.broken))
            .collect();
        let _ = writeln!(
            out,
            "\nBroken by each member of {} at ε = {} (each runs only on what the earlier ones \
             left): {}; {} in all.",
            code(&attack.label),
            attack.epsilon,
            credits.join(", "),
            attack.broken_by.iter().map(|c| c.broken).sum::<usize>()
        );
    }

    if !report.gates.is_empty() {
        out.push_str("\n### Gates\n\n| | gate | actual |\n|---|---|---|\n");
        for gate in &report.gates {
            let shown = match &gate.detail {
                Some(detail) => md(detail),
                None => md(&gate.actual_and_threshold()),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {shown} |",
                if gate.passed { "✅" } else { "❌" },
                code(&gate.gate)
            );
        }
    }

    let not_passed: Vec<_> = report
        .sanity_checks
        .iter()
        .filter(|c| c.status != CheckStatus::Pass)
        .collect();
    let _ = write!(
        out,
        "\n### Sanity checks\n\n{} of {} passed",
        report.sanity_checks.len() - not_passed.len(),
        report.sanity_checks.len()
    );
    if not_passed.is_empty() {
        out.push_str(".\n");
    } else {
        out.push_str(":\n\n");
        for check in not_passed {
            let _ = writeln!(
                out,
                "- {} {}: {}",
                if check.status == CheckStatus::Fail {
                    "❌"
                } else {
                    "⚠️"
                },
                code(&check.name),
                md(&check.detail)
            );
        }
    }

    if let Some(baseline) = &report.baseline {
        baseline_section(&mut out, baseline);
    }
    if let Some(probing) = &report.probing {
        let _ = writeln!(out, "\n### Probing\n\n{}.", md(&probing.headline()));
    }
    for notice in &report.notices {
        let _ = writeln!(out, "\n> {}", md(notice));
    }
    out
}

fn baseline_section(out: &mut String, baseline: &BaselineComparison) {
    let _ = writeln!(
        out,
        "\n### Against the baseline\n\nBaseline {} (suite {}, model SHA-256 {}, {} samples of {}, seed {}, gauntlet {}). {}\n",
        code(&baseline.path),
        code(&baseline.suite),
        code(short_hash(&baseline.model_sha256)),
        baseline.samples,
        code(&baseline.dataset),
        baseline.seed,
        md(&baseline.gauntlet_version),
        md(&baseline.method)
    );
    for warning in &baseline.warnings {
        let _ = writeln!(out, "> ⚠️ {}\n", md(warning));
    }
    out.push_str("| figure | previous | now | change (95% CI) | p | |\n");
    out.push_str("|---|---:|---:|---|---:|---|\n");
    for row in &baseline.rows {
        let show = |p: &Option<Proportion>| match p {
            Some(p) => percent(p.value),
            None => "–".to_owned(),
        };
        let (change, p_value) = match &row.change {
            Some(change) => (
                format!(
                    "{} [{}, {}]",
                    points(change.delta),
                    points(change.ci95_low),
                    points(change.ci95_high)
                ),
                format_p(change.p_value),
            ),
            None => ("–".to_owned(), "–".to_owned()),
        };
        let verdict = match row.verdict {
            ChangeVerdict::Improved => "⬆️ improved".to_owned(),
            ChangeVerdict::Regressed => "⬇️ **regressed**".to_owned(),
            other => other.as_str().to_owned(),
        };
        let verdict = match &row.note {
            Some(note) => format!("{verdict}: {}", md(note)),
            None => verdict,
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {change} | {p_value} | {verdict} |",
            code(&row.key),
            show(&row.previous),
            show(&row.now)
        );
    }
}

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

fn percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

fn interval(p: &Proportion) -> String {
    format!("[{:.1}, {:.1}]", p.ci95_low * 100.0, p.ci95_high * 100.0)
}

/// A difference of fractions in signed percentage points: `−3.1 pp`, `+0.4 pp`.
fn points(delta: f64) -> String {
    let value = delta * 100.0;
    if value.abs() < 0.05 {
        "±0.0 pp".to_owned()
    } else if value > 0.0 {
        format!("+{value:.1} pp")
    } else {
        format!("−{:.1} pp", -value)
    }
}

fn format_p(p: f64) -> String {
    if p < 0.001 {
        "< 0.001".to_owned()
    } else {
        format!("{p:.3}")
    }
}

fn short_hash(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Text for a Markdown table cell or paragraph: HTML's `&`, `<`, `>` as entities (no HTML
/// reaches the page), Markdown's punctuation backslash-escaped (no emphasis, link, image or
/// column break), line breaks as spaces.
pub(crate) fn md(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '#' | '|' | '!' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A code span. Inside one, backslash escapes do not work, so the text goes through [`md`]
/// inside `<code>` instead: the same look, with nothing left to interpret.
pub(crate) fn code(value: &str) -> String {
    format!("<code>{}</code>", md(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_text_cannot_break_a_table_or_inject_html() {
        assert_eq!(
            md("a|b <script>[x](y)"),
            "a\\|b &lt;script&gt;\\[x\\]\\(y\\)"
        );
        assert_eq!(md("line\nbreak"), "line break");
    }

    #[test]
    fn differences_read_in_signed_points() {
        assert_eq!(points(-0.031), "−3.1 pp");
        assert_eq!(points(0.004), "+0.4 pp");
        assert_eq!(points(0.0001), "±0.0 pp");
    }
}
