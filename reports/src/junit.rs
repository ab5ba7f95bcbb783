//! `junit.xml`: the run as JUnit test results, the format every CI system shows as a test tab
//! (GitLab `artifacts:reports:junit`, Jenkins, Azure Pipelines, CircleCI, Buildkite, the
//! GitHub test-reporter actions).
//!
//! One test case per gate and one per sanity check, each in its own test suite; a failed gate or
//! a failed check is a `<failure>` whose message is the same sentence the terminal prints, and a
//! warning passes with the warning in `<system-out>`. The run's identity (model hash, dataset,
//! seed, device) is in `<properties>`, so a dashboard that keeps test history can tell two
//! nights apart. The layout follows the Jenkins xUnit plugin's `junit-10.xsd`, which the
//! others accept too; `reports/tests/interop/validate_junit.py` checks it against that schema.

use std::fmt::Write as _;

use crate::schema::{CheckStatus, RunReport};

/// File name of the JUnit results inside an output folder.
pub const JUNIT_FILE_NAME: &str = "junit.xml";

pub(crate) struct Case {
    name: String,
    failure: Option<(&'static str, String)>,
    output: Option<String>,
}

/// The JUnit XML document for a report. A pure function of the report.
pub fn render_junit(report: &RunReport) -> String {
    let suites = suites(report);
    let (tests, failures) = counts(&suites);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{}\">",
        attr(&format!("gauntlet {}", report.suite.name)),
        seconds(report.timings.total_seconds)
    );
    write_suites(&mut out, report, &report.suite.name, &suites, 0);
    out.push_str("</testsuites>\n");
    out
}

/// A run's test suites: its gates, then its sanity checks.
pub(crate) struct Suites(Vec<(&'static str, Vec<Case>)>);

/// The gates and the sanity checks of a report as test cases.
pub(crate) fn suites(report: &RunReport) -> Suites {
    let gates: Vec<Case> = report
        .gates
        .iter()
        .map(|gate| Case {
            name: gate.gate.clone(),
            failure: (!gate.passed).then(|| ("gate", gate.failure_message())),
            output: Some(format!("{} = {}", gate.gate, gate.actual_and_threshold())),
        })
        .collect();
    let checks: Vec<Case> = report
        .sanity_checks
        .iter()
        .map(|check| match check.status {
            CheckStatus::Fail => Case {
                name: check.name.clone(),
                failure: Some((
                    "sanity_check",
                    format!("sanity check failed: {}: {}", check.name, check.detail),
                )),
                output: None,
            },
            CheckStatus::Warn => Case {
                name: check.name.clone(),
                failure: None,
                output: Some(format!("warning: {}: {}", check.name, check.detail)),
            },
            CheckStatus::Pass => Case {
                name: check.name.clone(),
                failure: None,
                output: Some(check.detail.clone()),
            },
        })
        .collect();
    Suites(vec![("gates", gates), ("sanity_checks", checks)])
}

/// Test cases and failures over `suites`.
pub(crate) fn counts(suites: &Suites) -> (usize, usize) {
    let tests = suites.0.iter().map(|(_, cases)| cases.len()).sum();
    let failures = suites
        .0
        .iter()
        .map(|(_, cases)| cases.iter().filter(|c| c.failure.is_some()).count())
        .sum();
    (tests, failures)
}

/// Write `suites` as `<testsuite>` elements named `{name}.{kind}`, numbered from `first_id`;
/// the number of elements written.
pub(crate) fn write_suites(
    out: &mut String,
    report: &RunReport,
    name: &str,
    suites: &Suites,
    first_id: usize,
) -> usize {
    for (id, (kind, cases)) in suites.0.iter().enumerate() {
        let failed = cases.iter().filter(|c| c.failure.is_some()).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" skipped=\"0\" \
             time=\"0\" id=\"{}\" package=\"gauntlet\">",
            attr(&format!("{name}.{kind}")),
            cases.len(),
            first_id + id
        );
        properties(out, report);
        for case in cases {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"0\"",
                attr(&format!("gauntlet.{name}.{kind}")),
                attr(&case.name)
            );
            if case.failure.is_none() && case.output.is_none() {
                out.push_str("/>\n");
                continue;
            }
            out.push_str(">\n");
            if let Some((kind, message)) = &case.failure {
                let _ = writeln!(
                    out,
                    "      <failure type=\"{kind}\" message=\"{}\">{}</failure>",
                    attr(message),
                    text(message)
                );
            }
            if let Some(output) = &case.output {
                let _ = writeln!(out, "      <system-out>{}</system-out>", text(output));
            }
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    suites.0.len()
}

fn properties(out: &mut String, report: &RunReport) {
    let mut properties = vec![
        ("gauntlet_version", report.gauntlet_version.clone()),
        ("suite", report.suite.name.clone()),
        ("model", report.model.name.clone()),
        ("model_sha256", report.model.sha256.clone()),
        ("dataset", report.dataset.name.clone()),
        ("samples", report.dataset.samples.to_string()),
        ("seed", report.seed.to_string()),
        ("device", report.device.clone()),
    ];
    if let Some(baseline) = &report.baseline {
        properties.push(("baseline", baseline.path.clone()));
    }
    out.push_str("    <properties>\n");
    for (name, value) in properties {
        let _ = writeln!(
            out,
            "      <property name=\"{name}\" value=\"{}\"/>",
            attr(&value)
        );
    }
    out.push_str("    </properties>\n");
}

/// Seconds as the schema's `SUREFIRE_TIME` wants them: plain decimal, at most three places.
pub(crate) fn seconds(value: f64) -> String {
    if value.is_finite() && value > 0.0 {
        format!("{value:.3}")
    } else {
        "0".to_owned()
    }
}

/// Text that XML 1.0 can carry: `&`, `<`, `>` escaped, and the control characters XML 1.0
/// forbids (anything below U+0020 but tab, newline and carriage return) replaced by U+FFFD, so a
/// hostile suite or class name cannot make the file unreadable.
fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// [`text`] for an attribute value: quotes escaped too, and line breaks as character
/// references so a parser's attribute normalisation keeps them.
pub(crate) fn attr(value: &str) -> String {
    text(value)
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
        .replace('\n', "&#10;")
        .replace('\r', "&#13;")
        .replace('\t', "&#9;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_escapes_markup_and_drops_forbidden_controls() {
        assert_eq!(text("a<b>&c"), "a&lt;b&gt;&amp;c");
        assert_eq!(text("bell\u{7}"), "bell\u{FFFD}");
        assert_eq!(text("tab\tline\n"), "tab\tline\n");
    }

    #[test]
    fn attributes_escape_quotes_and_keep_line_breaks() {
        assert_eq!(
            attr("say \"hi\"\n'x'"),
            "say &quot;hi&quot;&#10;&apos;x&apos;"
        );
    }

    #[test]
    fn seconds_have_at_most_three_decimals() {
        assert_eq!(seconds(12.34567), "12.346");
        assert_eq!(seconds(f64::NAN), "0");
        assert_eq!(seconds(0.0), "0");
    }
}
