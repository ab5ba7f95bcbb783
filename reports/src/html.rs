//! `report.html`: one self-contained page a reviewer can open anywhere.
//!
//! The page has inline CSS, no script and no external reference of any kind; its images are
//! `data:image/png;base64,…` URIs. It opens the same from a CI artifact, an email attachment or
//! an air-gapped machine, and cannot leak that it was opened. Every string that came from a suite,
//! a dataset or a results file goes through [`escape_html`], because class names and labels are
//! user-controlled. Status is always spelled out in words (PASS / WARN / FAIL), so the page reads
//! the same in greyscale or to a screen reader.

use std::path::Path;

mod backdoor;
mod detector;

use base64::Engine as _;

use crate::error::ReportError;
use crate::numbers::{ci_plus_minus, ci_range, percent, seconds, significant};
use crate::plots::{self, NamedPng};
use crate::schema::{
    AdversarialExample, AttackResult, CheckStatus, GateVerdict, Proportion, RunReport,
    MINIMAL_NORM_QUANTILES,
};

/// Escapes the five characters with meaning in HTML text and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The complete page as a string.
pub fn render_html(report: &RunReport) -> Result<String, ReportError> {
    Ok(render(report)?.html)
}

/// Writes [`render_html`]'s page to `path`. The plots are embedded; use
/// [`crate::write_plots`] or [`crate::write_all`] to also get them as files.
pub fn write_html(report: &RunReport, path: &Path) -> Result<(), ReportError> {
    let html = render_html(report)?;
    crate::write_text(path, &html)
}

/// The page and the images it embeds, so [`crate::write_all`] can also write the PNGs without
/// drawing them twice.
pub(crate) struct Rendered {
    pub html: String,
    pub plots: Vec<NamedPng>,
}

pub(crate) fn render(report: &RunReport) -> Result<Rendered, ReportError> {
    report.validate()?;
    let accuracy_plots = plots::accuracy_plots(report)?;
    let per_class_plot = plots::per_class_plot(report)?;
    let tiles = plots::example_tiles(report)?;
    let backdoor_plots = plots::backdoor::backdoor_plots(report)?;
    let roc_plots = plots::detector::roc_plots(report)?;
    let confidence_plots = plots::detector::confidence_plots(report)?;

    let mut page = Page::default();
    page.head(report);
    page.header(report);
    page.verdict(report);
    page.contents(report);
    page.summary(report);
    page.gates(&report.gates);
    page.baseline(report);
    page.sanity(report);
    page.provenance(report);
    page.curves(&accuracy_plots);
    page.per_class(report, per_class_plot.as_ref());
    page.gallery(report, &tiles);
    page.backdoor(report, &backdoor_plots);
    page.detectors(report, &roc_plots, &confidence_plots);
    page.probing(report);
    page.attack_parameters(report);
    page.timings(report);
    page.footer(report);

    let mut all_plots = accuracy_plots;
    all_plots.extend(per_class_plot);
    all_plots.extend(tiles.into_iter().map(|tile| tile.png));
    all_plots.extend(backdoor_plots.into_all());
    all_plots.extend(roc_plots.into_iter().map(|(_, png)| png));
    all_plots.extend(confidence_plots.into_iter().map(|(_, png)| png));
    Ok(Rendered {
        html: page.out,
        plots: all_plots,
    })
}

/// The page's Content-Security-Policy: no scripts, no fetches, no forms; inline CSS and
/// `data:` images only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'none'; \
     style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

pub(crate) const STYLE: &str = r#"
:root { --ink:#1f2328; --muted:#59636e; --line:#d1d9e0; --soft:#f6f8fa;
  --pass:#1a7f37; --pass-bg:#dafbe1; --warn:#9a6700; --warn-bg:#fff8c5;
  --fail:#cf222e; --fail-bg:#ffebe9; }
* { box-sizing: border-box; }
body { margin: 0; background: #fff; color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 40px; }
h1 { font-size: 22px; margin: 0 0 2px; }
h2 { font-size: 17px; margin: 30px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
p { margin: 6px 0; }
.sub { color: var(--muted); margin: 0 0 14px; }
.note { color: var(--muted); font-size: 13px; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 12.5px; }
.meta { display: grid; grid-template-columns: max-content 1fr max-content 1fr; gap: 3px 14px;
  margin: 0; padding: 12px 14px; background: var(--soft); border: 1px solid var(--line); border-radius: 6px; }
.meta dt { color: var(--muted); }
.meta dd { margin: 0; overflow-wrap: anywhere; }
.verdict { margin: 16px 0 6px; padding: 12px 16px; border-radius: 6px; border: 1px solid; font-size: 15px; }
.verdict strong { font-size: 17px; margin-right: 8px; letter-spacing: .02em; }
.verdict.pass { color: var(--pass); background: var(--pass-bg); border-color: var(--pass); }
.verdict.warn { color: var(--warn); background: var(--warn-bg); border-color: var(--warn); }
.verdict.fail { color: var(--fail); background: var(--fail-bg); border-color: var(--fail); }
.verdict span { color: var(--ink); }
nav { font-size: 13px; color: var(--muted); margin: 8px 0 0; }
nav a { color: var(--muted); margin-right: 12px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { font-weight: 600; background: var(--soft); white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.clean td { background: #fbfbfc; }
td:first-child { white-space: nowrap; }
tr.worst td { font-weight: 600; background: #f3f4f6; }
tr.group-start td { border-top: 2px solid var(--line); }
.repeat { color: var(--muted); }
.badge { display: inline-block; min-width: 44px; text-align: center; padding: 0 6px; border-radius: 10px;
  font-size: 12px; font-weight: 700; border: 1px solid; }
.badge.pass { color: var(--pass); background: var(--pass-bg); }
.badge.warn { color: var(--warn); background: var(--warn-bg); }
.badge.fail { color: var(--fail); background: var(--fail-bg); }
.plots { display: flex; flex-wrap: wrap; gap: 16px; }
.plots img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; padding: 6px; border: 1px solid var(--line); border-radius: 6px; width: min-content; }
figure img { display: block; max-width: none; image-rendering: pixelated; }
figcaption { font-size: 13px; margin-top: 4px; }
figcaption .outcome { font-weight: 700; }
table.kv { margin: 4px 0 0; }
table.kv th, table.kv td { background: none; border: 0; padding: 1px 8px 1px 0; font-size: 13px; white-space: normal; }
table.kv th { color: var(--muted); font-weight: 400; white-space: nowrap; }
table.compact { width: auto; min-width: 420px; }
tr.total td { font-weight: 600; }
footer { margin-top: 36px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line); padding-top: 8px; }
@media print { main { max-width: none; padding: 0; } h2 { break-after: avoid; } figure, tr { break-inside: avoid; } }
"#;

/// Builds the page section by section; each method appends one section in reading order.
#[derive(Default)]
struct Page {
    out: String,
}

/// Escape shorthand: everything that did not originate in this file goes through it.
fn esc(text: &str) -> String {
    escape_html(text)
}

pub(crate) fn data_uri(png: &[u8]) -> String {
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    )
}

fn status_badge(status: CheckStatus) -> &'static str {
    match status {
        CheckStatus::Pass => r#"<span class="badge pass">PASS</span>"#,
        CheckStatus::Warn => r#"<span class="badge warn">WARN</span>"#,
        CheckStatus::Fail => r#"<span class="badge fail">FAIL</span>"#,
    }
}

fn class_name(report: &RunReport, class: usize) -> String {
    match report.dataset.class_names.get(class) {
        Some(name) if name == &class.to_string() => esc(name),
        Some(name) => format!(r#"{} <span class="repeat">({class})</span>"#, esc(name)),
        None => format!("class {class}"),
    }
}

/// `92.3%` with the interval in a tooltip.
fn percent_cell(p: &Proportion) -> String {
    format!(
        r#"<td class="num" title="{} ({} of {})">{}</td>"#,
        ci_range(p),
        p.successes,
        p.total,
        percent(p.value)
    )
}

/// Whether a gate compares fractions, so its margin reads in percentage points.
fn is_fraction_gate(gate: &GateVerdict) -> bool {
    let name = gate.gate.to_ascii_lowercase();
    (name.contains("accuracy") || name.contains("rate"))
        && (0.0..=1.0).contains(&gate.threshold)
        && (0.0..=1.0).contains(&gate.actual)
}

impl Page {
    fn push(&mut self, text: &str) {
        self.out.push_str(text);
    }

    fn head(&mut self, report: &RunReport) {
        self.push("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        // Defence in depth: even if some string escaped the escaping, the browser would run no
        // script and fetch nothing; only the inline style and the data: images are allowed.
        self.push(&format!(
            "<meta http-equiv=\"Content-Security-Policy\" content=\"{CONTENT_SECURITY_POLICY}\">\n"
        ));
        self.push("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
        self.push(&format!(
            "<title>gauntlet report: {} on {}</title>\n",
            esc(&report.model.name),
            esc(&report.dataset.name)
        ));
        self.push("<style>");
        self.push(STYLE);
        self.push("</style>\n</head>\n<body>\n<main>\n");
    }

    fn header(&mut self, report: &RunReport) {
        let model = &report.model;
        let dataset = &report.dataset;
        self.push("<header>\n<h1>gauntlet robustness report</h1>\n");
        self.push(&format!(
            "<p class=\"sub\">Model <strong>{}</strong> on <strong>{}</strong> ({} samples), suite <strong>{}</strong></p>\n",
            esc(&model.name),
            esc(&dataset.name),
            dataset.samples,
            esc(&report.suite.name)
        ));
        let suite_path = match &report.suite.path {
            Some(path) => format!("<code>{}</code>", esc(path)),
            None => "embedded default suite".to_owned(),
        };
        let shape = model
            .input_shape
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("×");
        let kernels = match &report.kernel_path {
            None => "not recorded (schema 1)".to_owned(),
            Some(kernels) => match &kernels.reason {
                None => format!("<code>{}</code>", esc(&kernels.path)),
                Some(reason) => format!("<code>{}</code> ({})", esc(&kernels.path), esc(reason)),
            },
        };
        let rows: [(&str, String); 13] = [
            (
                "Suite",
                format!("{} · {suite_path}", esc(&report.suite.name)),
            ),
            ("Device", format!("<code>{}</code>", esc(&report.device))),
            ("Kernels", kernels),
            (
                "Model",
                format!(
                    "{} ({}, {} format)",
                    esc(&model.name),
                    esc(&model.architecture),
                    esc(&model.format)
                ),
            ),
            ("Seed", format!("<code>{}</code>", report.seed)),
            ("Weights", format!("<code>{}</code>", esc(&model.path))),
            (
                "Input",
                format!(
                    "{shape}, {} classes, {} parameters",
                    model.num_classes,
                    group_thousands(model.parameters)
                ),
            ),
            ("SHA-256", format!("<code>{}</code>", esc(&model.sha256))),
            (
                "Version",
                format!(
                    "gauntlet {} · schema {}",
                    esc(&report.gauntlet_version),
                    report.schema_version
                ),
            ),
            (
                "Dataset",
                format!("{} ({} format)", esc(&dataset.name), esc(&dataset.format)),
            ),
            ("Samples", dataset.samples.to_string()),
            ("Data file", format!("<code>{}</code>", esc(&dataset.path))),
            (
                "Classes",
                format!("{} named classes", dataset.class_names.len()),
            ),
        ];
        self.push("<dl class=\"meta\">\n");
        for (key, value) in rows {
            self.push(&format!("<dt>{key}</dt><dd>{value}</dd>\n"));
        }
        self.push("</dl>\n");
        for notice in &report.notices {
            self.push(&format!(
                "<p class=\"notice\">Notice: {}</p>\n",
                esc(notice)
            ));
        }
        self.push("</header>\n");
    }

    fn verdict(&mut self, report: &RunReport) {
        let gates = report.gates.len();
        let failed_gates = report.gates.iter().filter(|g| !g.passed).count();
        let count = |status| {
            report
                .sanity_checks
                .iter()
                .filter(|c| c.status == status)
                .count()
        };
        let (sanity_fail, sanity_warn) = (count(CheckStatus::Fail), count(CheckStatus::Warn));

        let (class, word, headline) = if failed_gates > 0 {
            (
                "fail",
                "FAILED",
                format!("{failed_gates} of {gates} gate{} failed.", plural(gates)),
            )
        } else if sanity_fail > 0 {
            (
                "fail",
                "UNRELIABLE",
                format!(
                    "{sanity_fail} sanity check{} failed: the measurement itself is in doubt{}.",
                    plural(sanity_fail),
                    if gates > 0 {
                        format!(", although all {gates} gates passed")
                    } else {
                        String::new()
                    }
                ),
            )
        } else if gates == 0 {
            (
                "warn",
                "NO GATES",
                "No gates were configured, so nothing was asserted.".to_owned(),
            )
        } else {
            (
                "pass",
                "PASSED",
                if gates == 1 {
                    "The gate passed.".to_owned()
                } else {
                    format!("All {gates} gates passed.")
                },
            )
        };
        let sanity = format!(
            "Sanity checks: {} passed, {sanity_warn} warning{}, {sanity_fail} failed.",
            count(CheckStatus::Pass),
            plural(sanity_warn)
        );
        self.push(&format!(
            "<section class=\"verdict {class}\" role=\"status\"><strong>{word}</strong>{headline} <span>{sanity}</span></section>\n"
        ));
    }

    fn contents(&mut self, report: &RunReport) {
        self.push(
            "<nav>Contents: <a href=\"#summary\">summary</a><a href=\"#gates\">gates</a>\
             <a href=\"#sanity\">sanity checks</a>",
        );
        if report.baseline.is_some() {
            self.push("<a href=\"#baseline\">baseline</a>");
        }
        if report.provenance.is_some() {
            self.push("<a href=\"#provenance\">provenance</a>");
        }
        self.push(
            "<a href=\"#curves\">accuracy vs ε</a>\
             <a href=\"#per-class\">per class</a><a href=\"#gallery\">examples</a>\
             <a href=\"#attacks\">attack parameters</a><a href=\"#timings\">timings</a>",
        );
        if report.backdoor.is_some() {
            self.push("<a href=\"#backdoor\">backdoor</a>");
        }
        if !report.detectors.is_empty() || !report.output_drift.is_empty() {
            self.push("<a href=\"#guardrails\">guardrails</a>");
        }
        if report.probing.is_some() {
            self.push("<a href=\"#probing\">probing</a>");
        }
        self.push("</nav>\n");
    }

    fn summary(&mut self, report: &RunReport) {
        self.push("<section id=\"summary\">\n<h2>Summary</h2>\n");
        self.push(
            "<p class=\"note\">Accuracy over the evaluated samples with the 95% Wilson interval \
             (± percentage points; hover a value for the interval). Success rate: share of the \
             correctly classified inputs the attack turned into errors. ‖δ‖ is measured in the \
             attack's norm.</p>\n",
        );
        self.push(
            "<table>\n<thead><tr><th>Attack</th><th>Norm</th><th class=\"num\">ε</th>\
             <th class=\"num\">Accuracy</th><th class=\"num\">95% CI</th>\
             <th class=\"num\">Success rate</th><th class=\"num\">Mean loss</th>\
             <th class=\"num\">Mean ‖δ‖</th><th class=\"num\">Max ‖δ‖</th>\
             <th class=\"num\">Max ‖δ‖∞</th><th class=\"num\">Time</th></tr></thead>\n<tbody>\n",
        );
        let clean = &report.clean;
        self.push(&format!(
            "<tr class=\"clean\"><td>clean</td><td>–</td><td class=\"num\">0</td>{}\
             <td class=\"num\">{}</td><td class=\"num\">–</td><td class=\"num\">{}</td>\
             <td class=\"num\">–</td><td class=\"num\">–</td><td class=\"num\">–</td>\
             <td class=\"num\">{}</td></tr>\n",
            percent_cell(&clean.accuracy),
            ci_plus_minus(&clean.accuracy),
            significant(clean.mean_loss, 4),
            seconds(report.timings.clean_seconds)
        ));
        let mut previous_label: Option<&str> = None;
        for attack in &report.attacks {
            let repeat = previous_label == Some(attack.label.as_str());
            let (row_class, label) = if repeat {
                (
                    "",
                    format!("<span class=\"repeat\">{}</span>", esc(&attack.label)),
                )
            } else {
                (
                    " class=\"group-start\"",
                    format!("<strong>{}</strong>", esc(&attack.label)),
                )
            };
            previous_label = Some(&attack.label);
            let p = &attack.perturbation;
            self.push(&format!(
                "<tr{row_class}><td>{label}</td><td>{}</td><td class=\"num\">{}</td>{}\
                 <td class=\"num\">{}</td>{}<td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
                esc(&attack.norm),
                significant(attack.epsilon, 4),
                percent_cell(&attack.robust_accuracy),
                ci_plus_minus(&attack.robust_accuracy),
                percent_cell(&attack.success_rate),
                significant(attack.mean_loss, 4),
                significant(p.mean, 4),
                significant(p.max, 4),
                significant(p.max_linf, 4),
                seconds(attack.seconds)
            ));
        }
        for (i, worst) in report.worst_case.iter().enumerate() {
            let first = if i == 0 { " group-start" } else { "" };
            self.push(&format!(
                "<tr class=\"worst{first}\"><td>worst case <span class=\"repeat\">({})</span></td>\
                 <td>{}</td><td class=\"num\">{}</td>{}<td class=\"num\">{}</td>\
                 <td class=\"num\">–</td><td class=\"num\">–</td><td class=\"num\">–</td>\
                 <td class=\"num\">–</td><td class=\"num\">–</td><td class=\"num\">–</td></tr>\n",
                esc(&worst.attacks.join(", ")),
                esc(&worst.norm),
                significant(worst.epsilon, 4),
                percent_cell(&worst.robust_accuracy),
                ci_plus_minus(&worst.robust_accuracy)
            ));
        }
        self.push("</tbody>\n</table>\n");
        if report.attacks.is_empty() {
            self.push("<p>No attacks were run.</p>\n");
        }
        if !report.worst_case.is_empty() {
            self.push(
                "<p class=\"note\">Worst case: an input counts as robust at (norm, ε) only if \
                 every attack listed failed on it; this is the number to compare against a \
                 threshold.</p>\n",
            );
        }
        self.minimal_norm(report);
        self.member_credit(report);
        self.push("</section>\n");
    }

    /// For each ensemble run (`standard`) at each ε: how many inputs each member broke. Each
    /// member runs only on the inputs the earlier ones left, so a row adds up to the inputs
    /// the ensemble broke.
    fn member_credit(&mut self, report: &RunReport) {
        let runs: Vec<&AttackResult> = report
            .attacks
            .iter()
            .filter(|a| !a.broken_by.is_empty())
            .collect();
        if runs.is_empty() {
            return;
        }
        let mut members: Vec<&str> = Vec::new();
        for credit in runs.iter().flat_map(|a| &a.broken_by) {
            if !members.contains(&credit.member.as_str()) {
                members.push(&credit.member);
            }
        }
        self.push(
            "<h3>Ensemble members</h3>\n<p class=\"note\">Inputs each member of the ensemble \
             broke, in the order they run; each member runs only on the inputs every earlier \
             one failed to break, so a row adds up to the inputs the ensemble broke.</p>\n",
        );
        self.push(
            "<table class=\"compact\">\n<thead><tr><th>Attack</th><th>Norm</th>\
             <th class=\"num\">ε</th>",
        );
        for member in &members {
            self.push(&format!("<th class=\"num\">{}</th>", esc(member)));
        }
        self.push("<th class=\"num\">Broken</th></tr></thead>\n<tbody>\n");
        for attack in runs {
            self.push(&format!(
                "<tr><td><strong>{}</strong></td><td>{}</td><td class=\"num\">{}</td>",
                esc(&attack.label),
                esc(&attack.norm),
                significant(attack.epsilon, 4)
            ));
            for member in &members {
                let broken = attack
                    .broken_by
                    .iter()
                    .find(|c| c.member == *member)
                    .map_or_else(|| "–".to_string(), |c| c.broken.to_string());
                self.push(&format!("<td class=\"num\">{broken}</td>"));
            }
            self.push(&format!(
                "<td class=\"num\">{}</td></tr>\n",
                attack.broken_by.iter().map(|c| c.broken).sum::<usize>()
            ));
        }
        self.push("</tbody>\n</table>\n");
    }

    /// The minimal-norm attacks' unbounded runs: quantiles of the smallest successful
    /// perturbation (their robust accuracy at each ε is in the summary table above).
    fn minimal_norm(&mut self, report: &RunReport) {
        if report.minimal_norm.is_empty() {
            return;
        }
        self.push(
            "<h3>Minimal perturbation</h3>\n<p class=\"note\">Minimal-norm attacks run once, \
             unbounded; their rows above are read from that run: an input is robust at ε if it \
             was correct and its smallest successful perturbation is larger than ε (or none \
             was found). Quantiles over the correctly classified inputs the attack broke.</p>\n",
        );
        self.push(
            "<table class=\"compact\">\n<thead><tr><th>Attack</th><th>Norm</th>\
             <th class=\"num\">Broken</th>",
        );
        for q in MINIMAL_NORM_QUANTILES {
            self.push(&format!(
                "<th class=\"num\">{}%</th>",
                significant(q * 100.0, 3)
            ));
        }
        self.push("<th class=\"num\">Mean</th><th class=\"num\">Time</th></tr></thead>\n<tbody>\n");
        for result in &report.minimal_norm {
            self.push(&format!(
                "<tr><td><strong>{}</strong></td><td>{}</td>{}",
                esc(&result.label),
                esc(&result.norm),
                percent_cell(&result.success_rate)
            ));
            for q in MINIMAL_NORM_QUANTILES {
                let value = result.quantiles.iter().find(|x| x.q == q).map(|x| x.value);
                self.push(&format!(
                    "<td class=\"num\">{}</td>",
                    value.map_or_else(|| "–".to_string(), |v| significant(v, 4))
                ));
            }
            self.push(&format!(
                "<td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
                result
                    .mean
                    .map_or_else(|| "–".to_string(), |v| significant(v, 4)),
                seconds(result.seconds)
            ));
        }
        self.push("</tbody>\n</table>\n");
    }

    fn gates(&mut self, gates: &[GateVerdict]) {
        self.push("<section id=\"gates\">\n<h2>Gates</h2>\n");
        if gates.is_empty() {
            self.push("<p>No gates were configured.</p>\n</section>\n");
            return;
        }
        self.push(
            "<table>\n<thead><tr><th>Result</th><th>Gate</th><th class=\"num\">Threshold</th>\
             <th class=\"num\">Actual</th><th>Margin</th></tr></thead>\n<tbody>\n",
        );
        for gate in gates {
            let fraction = is_fraction_gate(gate);
            let show = |v: f64| {
                if fraction {
                    percent(v)
                } else {
                    significant(v, 4)
                }
            };
            let distance = (gate.actual - gate.threshold).abs();
            let distance = if fraction {
                format!("{:.1} pp", distance * 100.0)
            } else {
                significant(distance, 4)
            };
            let (badge, margin) = if let Some(detail) = &gate.detail {
                (
                    status_badge(CheckStatus::Fail),
                    format!("<strong>{}</strong>", esc(detail)),
                )
            } else if gate.passed {
                (
                    status_badge(CheckStatus::Pass),
                    format!("clears it by {distance}"),
                )
            } else {
                (
                    status_badge(CheckStatus::Fail),
                    format!("<strong>misses it by {distance}</strong>"),
                )
            };
            self.push(&format!(
                "<tr><td>{badge}</td><td><code>{}</code></td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td>{margin}</td></tr>\n",
                esc(&gate.gate),
                show(gate.threshold),
                show(gate.actual)
            ));
        }
        self.push("</tbody>\n</table>\n</section>\n");
    }

    /// Previous / now / change against `--baseline`, when there was one.
    fn baseline(&mut self, report: &RunReport) {
        let Some(baseline) = &report.baseline else {
            return;
        };
        self.push("<section id=\"baseline\">\n<h2>Against the baseline</h2>\n");
        self.push(&format!(
            "<p>Baseline <code>{}</code>: suite <code>{}</code>, weights SHA-256 <code>{}</code>, \
             {} samples of <code>{}</code>, seed {}, gauntlet {}.</p>\n<p class=\"note\">{}</p>\n",
            esc(&baseline.path),
            esc(&baseline.suite),
            esc(&baseline.model_sha256),
            baseline.samples,
            esc(&baseline.dataset),
            baseline.seed,
            esc(&baseline.gauntlet_version),
            esc(&baseline.method)
        ));
        for warning in &baseline.warnings {
            self.push(&format!(
                "<p>{} {}</p>\n",
                status_badge(CheckStatus::Warn),
                esc(warning)
            ));
        }
        self.push(
            "<table>\n<thead><tr><th>Figure</th><th class=\"num\">Previous</th>\
             <th class=\"num\">Now</th><th class=\"num\">Change</th><th>95% CI of the change</th>\
             <th class=\"num\">p</th><th>Verdict</th></tr></thead>\n<tbody>\n",
        );
        for row in &baseline.rows {
            let cell = |p: &Option<Proportion>| match p {
                Some(p) => percent_cell(p),
                None => "<td class=\"num\">–</td>".to_owned(),
            };
            let (change, interval, p_value) = match &row.change {
                Some(c) => (
                    format!("{:+.1} pp", c.delta * 100.0),
                    format!(
                        "[{:+.1}, {:+.1}] pp",
                        c.ci95_low * 100.0,
                        c.ci95_high * 100.0
                    ),
                    if c.p_value < 0.001 {
                        "&lt; 0.001".to_owned()
                    } else {
                        format!("{:.3}", c.p_value)
                    },
                ),
                None => ("–".to_owned(), "–".to_owned(), "–".to_owned()),
            };
            let verdict = match row.verdict {
                crate::schema::ChangeVerdict::Regressed => "<strong>regressed</strong>".to_owned(),
                other => other.as_str().to_owned(),
            };
            let note = row
                .note
                .as_ref()
                .map(|n| format!(": {}", esc(n)))
                .unwrap_or_default();
            self.push(&format!(
                "<tr><td><code>{}</code></td>{}{}<td class=\"num\">{change}</td><td>{interval}</td>\
                 <td class=\"num\">{p_value}</td><td>{verdict}{note}</td></tr>\n",
                esc(&row.key),
                cell(&row.previous),
                cell(&row.now)
            ));
        }
        self.push("</tbody>\n</table>\n</section>\n");
    }

    fn provenance(&mut self, report: &RunReport) {
        let Some(provenance) = &report.provenance else {
            return;
        };
        self.push("<section id=\"provenance\">\n<h2>Provenance</h2>\n");
        self.push(&format!(
            "<p>Verdict: <strong>{}</strong> · weights SHA-256 <code>{}</code>{}</p>\n",
            esc(&provenance.verdict),
            esc(&provenance.weights_sha256),
            match &provenance.signer {
                Some(signer) => format!(" · signed by key <code>{}</code>", esc(signer)),
                None => String::new(),
            }
        ));
        if !provenance.checks.is_empty() {
            self.push(
                "<table>\n<thead><tr><th>Result</th><th>Check</th><th>Detail</th></tr></thead>\n<tbody>\n",
            );
            for check in &provenance.checks {
                let status = if check.passed {
                    CheckStatus::Pass
                } else {
                    CheckStatus::Fail
                };
                self.push(&format!(
                    "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>\n",
                    status_badge(status),
                    esc(&check.kind),
                    esc(&check.detail)
                ));
            }
            self.push("</tbody>\n</table>\n");
        }
        if provenance.findings.is_empty() {
            self.push("<p>The static scan of the model files found nothing.</p>\n");
        } else {
            self.push(
                "<table>\n<thead><tr><th>Severity</th><th>Rule</th><th>Location</th><th>Finding</th></tr></thead>\n<tbody>\n",
            );
            for finding in &provenance.findings {
                self.push(&format!(
                    "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>\n",
                    esc(&finding.severity),
                    esc(&finding.rule),
                    esc(&finding.location),
                    esc(&finding.message)
                ));
            }
            self.push("</tbody>\n</table>\n");
        }
        self.push("</section>\n");
    }

    fn sanity(&mut self, report: &RunReport) {
        self.push("<section id=\"sanity\">\n<h2>Sanity checks</h2>\n");
        if report.sanity_checks.is_empty() {
            self.push("<p>No sanity checks were run.</p>\n</section>\n");
            return;
        }
        self.push(
            "<p class=\"note\">Checks of the measurement itself: a failure means the numbers above \
             may not mean what they say.</p>\n<table>\n<thead><tr><th>Result</th><th>Check</th>\
             <th>Detail</th></tr></thead>\n<tbody>\n",
        );
        // Failures first, then warnings: a reviewer should not have to scan for them.
        let mut checks: Vec<_> = report.sanity_checks.iter().collect();
        checks.sort_by_key(|c| match c.status {
            CheckStatus::Fail => 0,
            CheckStatus::Warn => 1,
            CheckStatus::Pass => 2,
        });
        for check in checks {
            self.push(&format!(
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>\n",
                status_badge(check.status),
                esc(&check.name),
                esc(&check.detail)
            ));
        }
        self.push("</tbody>\n</table>\n</section>\n");
    }

    fn curves(&mut self, plots: &[NamedPng]) {
        self.push("<section id=\"curves\">\n<h2>Robust accuracy vs ε</h2>\n");
        if plots.is_empty() {
            self.push("<p>No attacks were run, so there is no curve to draw.</p>\n</section>\n");
            return;
        }
        self.push(
            "<p class=\"note\">One line per attack, starting from clean accuracy at ε = 0; the \
             dashed black line is the worst case over all attacks. Bars are 95% intervals.</p>\n\
             <div class=\"plots\">\n",
        );
        for plot in plots {
            self.image(plot);
        }
        self.push("</div>\n</section>\n");
    }

    fn image(&mut self, plot: &NamedPng) {
        self.push(&format!(
            "<img src=\"{}\" alt=\"{}\">\n",
            data_uri(&plot.png),
            esc(&plot.title)
        ));
    }

    fn per_class(&mut self, report: &RunReport, plot: Option<&NamedPng>) {
        self.push("<section id=\"per-class\">\n<h2>Per-class accuracy</h2>\n");
        let series = plots::per_class_series(report);
        let Some(plot) = plot else {
            self.push("<p>The report has no per-class results.</p>\n</section>\n");
            return;
        };
        self.push("<div class=\"plots\">\n");
        self.image(plot);
        self.push("</div>\n");

        let mut classes: Vec<usize> = series
            .iter()
            .flat_map(|s| s.per_class.iter().map(|c| c.class))
            .collect();
        classes.sort_unstable();
        classes.dedup();
        let long = classes.len() > 20;
        if long {
            self.push(&format!(
                "<details><summary>Table of all {} classes</summary>\n",
                classes.len()
            ));
        }
        self.push("<table class=\"compact\">\n<thead><tr><th>Class</th>");
        for s in &series {
            self.push(&format!("<th class=\"num\">{}</th>", esc(&s.name)));
        }
        self.push("</tr></thead>\n<tbody>\n");
        for class in classes {
            self.push(&format!("<tr><td>{}</td>", class_name(report, class)));
            for s in &series {
                match s.per_class.iter().find(|c| c.class == class) {
                    Some(c) => self.push(&format!(
                        r#"<td class="num" title="{} ({} of {})">{} <span class="repeat">{}</span></td>"#,
                        ci_range(&c.accuracy),
                        c.accuracy.successes,
                        c.accuracy.total,
                        percent(c.accuracy.value),
                        ci_plus_minus(&c.accuracy)
                    )),
                    None => self.push("<td class=\"num\">–</td>"),
                }
            }
            self.push("</tr>\n");
        }
        self.push("</tbody>\n</table>\n");
        if long {
            self.push("</details>\n");
        }
        self.push("</section>\n");
    }

    fn gallery(&mut self, report: &RunReport, tiles: &[plots::ExampleTile]) {
        self.push("<section id=\"gallery\">\n<h2>Adversarial examples</h2>\n");
        if tiles.is_empty() {
            self.push("<p>The report holds no adversarial examples.</p>\n</section>\n");
            return;
        }
        self.push(
            "<p class=\"note\">Each tile: the original input, the perturbation δ = adversarial − \
             original, and the adversarial input, enlarged with nearest-neighbour scaling. δ is \
             amplified so that its largest |δ| spans the full grey range: mid-grey means \
             unchanged, white/black the largest increase/decrease; the factor is printed above \
             it.</p>\n<div class=\"gallery\">\n",
        );
        for (example, tile) in report.examples.iter().zip(tiles) {
            self.push("<figure>\n");
            self.image(&tile.png);
            self.push(&format!(
                "<figcaption>{}</figcaption>\n</figure>\n",
                example_caption(report, example, tile.max_abs_delta)
            ));
        }
        self.push("</div>\n</section>\n");
    }

    fn attack_parameters(&mut self, report: &RunReport) {
        self.push("<section id=\"attacks\">\n<h2>Attack parameters</h2>\n");
        if report.attacks.is_empty() {
            self.push("<p>No attacks were run.</p>\n</section>\n");
            return;
        }
        self.push(
            "<table>\n<thead><tr><th>Label</th><th>Attack</th><th>Norm</th>\
             <th class=\"num\">ε values</th><th>Parameters</th></tr></thead>\n<tbody>\n",
        );
        let mut labels: Vec<&str> = Vec::new();
        for attack in &report.attacks {
            if !labels.contains(&attack.label.as_str()) {
                labels.push(&attack.label);
            }
        }
        for label in labels {
            let runs: Vec<_> = report.attacks.iter().filter(|a| a.label == label).collect();
            let Some(first) = runs.first() else { continue };
            let epsilons = runs
                .iter()
                .map(|a| significant(a.epsilon, 4))
                .collect::<Vec<_>>()
                .join(", ");
            let params = if first.params.is_empty() {
                "defaults".to_owned()
            } else {
                first
                    .params
                    .iter()
                    .map(|(key, value)| {
                        format!("<code>{} = {}</code>", esc(key), esc(&value.to_string()))
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            self.push(&format!(
                "<tr><td><strong>{}</strong></td><td><code>{}</code></td><td>{}</td>\
                 <td class=\"num\">{epsilons}</td><td>{params}</td></tr>\n",
                esc(label),
                esc(&first.attack),
                esc(&first.norm)
            ));
        }
        self.push("</tbody>\n</table>\n</section>\n");
    }

    fn timings(&mut self, report: &RunReport) {
        let t = &report.timings;
        self.push(
            "<section id=\"timings\">\n<h2>Timings</h2>\n<table class=\"compact\">\n<tbody>\n",
        );
        for (what, value) in [
            ("Loading model and data", t.load_seconds),
            ("Clean evaluation", t.clean_seconds),
            ("Attacks", t.attack_seconds),
            ("Total", t.total_seconds),
        ] {
            let row = if what == "Total" {
                " class=\"total\""
            } else {
                ""
            };
            self.push(&format!(
                "<tr{row}><td>{what}</td><td class=\"num\">{}</td></tr>\n",
                seconds(value)
            ));
        }
        self.push("</tbody>\n</table>\n</section>\n");
    }

    fn footer(&mut self, report: &RunReport) {
        self.push(&format!(
            "<footer>Generated by gauntlet {} from results schema {}. This page is \
             self-contained: no scripts, no external resources; every number in it is also in \
             <code>results.json</code>.</footer>\n</main>\n</body>\n</html>\n",
            esc(&report.gauntlet_version),
            report.schema_version
        ));
    }
}

fn example_caption(report: &RunReport, example: &AdversarialExample, max_abs_delta: f32) -> String {
    let outcome = if example.adversarial_prediction != example.true_label {
        "misclassified"
    } else {
        "still correct"
    };
    format!(
        "<strong>Sample #{}</strong> · <code>{}</code> at ε = {}\n\
         <table class=\"kv\"><tbody>\n\
         <tr><th>true</th><td>{}</td></tr>\n\
         <tr><th>clean prediction</th><td>{}</td></tr>\n\
         <tr><th>adversarial</th><td>{} <span class=\"outcome\">({outcome})</span></td></tr>\n\
         <tr><th>max |δ|</th><td>{}</td></tr>\n\
         </tbody></table>",
        example.index,
        esc(&example.attack),
        significant(example.epsilon, 4),
        class_name(report, example.true_label),
        class_name(report, example.clean_prediction),
        class_name(report, example.adversarial_prediction),
        significant(f64::from(max_abs_delta), 4)
    )
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `1234567` → `1 234 567` (thin spaces), so parameter counts are readable at a glance.
fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    // The leading group has 1–3 digits; every later group exactly 3 (all ASCII).
    let lead = match digits.len() % 3 {
        0 => 3.min(digits.len()),
        r => r,
    };
    let mut out = digits[..lead].to_owned();
    for group in digits.as_bytes()[lead..].chunks(3) {
        out.push('\u{2009}');
        out.extend(group.iter().map(|&b| char::from(b)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup_and_quotes() {
        assert_eq!(
            escape_html(r#"<script>alert("x")</script>"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
        );
        assert_eq!(escape_html("it's a & b"), "it&#39;s a &amp; b");
        assert_eq!(
            escape_html(r#"<b>&"seven""#),
            "&lt;b&gt;&amp;&quot;seven&quot;"
        );
    }

    #[test]
    fn escape_leaves_plain_text_alone() {
        assert_eq!(escape_html("airplane ε=0.3 ‖δ‖"), "airplane ε=0.3 ‖δ‖");
        assert_eq!(escape_html(""), "");
    }

    #[test]
    fn escape_is_not_idempotent_by_design() {
        // Escaping twice must show the entity literally, not collapse back to markup.
        assert_eq!(escape_html(&escape_html("<")), "&amp;lt;");
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group_thousands(7), "7");
        assert_eq!(group_thousands(1000), "1\u{2009}000");
        assert_eq!(group_thousands(1_234_567), "1\u{2009}234\u{2009}567");
    }
}
