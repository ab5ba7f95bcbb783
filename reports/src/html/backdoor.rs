//! The report's Backdoor section: a verdict per class of the model under test, the anomaly
//! index charts, the recovered triggers beside a clean and a triggered input, STRIP's entropy
//! histograms, the poisoning sweeps' curves and the data-level detectors' precision and recall.

use super::{esc, percent_cell, Page};
use crate::backdoor::{BackdoorReport, ScannedModel};
use crate::numbers::{percent, significant};
use crate::plots::backdoor::BackdoorPlots;
use crate::schema::RunReport;

fn index_text(value: Option<f64>) -> String {
    match value {
        Some(v) if v >= f64::MAX => "∞".to_string(),
        Some(v) => significant(v, 3),
        None => "–".to_string(),
    }
}

fn optional(value: Option<f64>, digits: usize) -> String {
    value.map_or("–".to_string(), |v| significant(v, digits))
}

impl Page {
    pub(super) fn backdoor(&mut self, report: &RunReport, plots: &BackdoorPlots) {
        let Some(backdoor) = &report.backdoor else {
            return;
        };
        self.push("<section id=\"backdoor\">\n<h2>Backdoor</h2>\n");
        self.verdicts(report, backdoor);
        if !plots.anomaly.is_empty() {
            self.push(
                "<h3>Anomaly index per class</h3>\n<p class=\"note\">MAD anomaly index of each \
                 class's statistic among all classes (Neural Cleanse: the recovered mask's L1 \
                 norm, flagged on the small side; known-trigger sweep: the flip rate, flagged on \
                 the large side). The dashed line is the scan's threshold.</p>\n\
                 <div class=\"plots\">\n",
            );
            for (_, plot) in &plots.anomaly {
                self.image(plot);
            }
            self.push("</div>\n");
        }
        if !plots.triggers.is_empty() || !plots.inputs.is_empty() {
            self.push(
                "<h3>Recovered triggers</h3>\n<p class=\"note\">Per class, the recovered mask \
                 (white = trigger pixel) and the pattern seen through it; beside them a clean \
                 input and the same input carrying a trigger, with the model's prediction on \
                 each.</p>\n<div class=\"gallery\">\n",
            );
            for plot in plots.inputs.iter().chain(&plots.triggers) {
                self.push("<figure>\n");
                self.image(plot);
                self.push(&format!(
                    "<figcaption>{}</figcaption>\n</figure>\n",
                    esc(&plot.title)
                ));
            }
            self.push("</div>\n");
        }
        self.strip(backdoor, plots);
        self.poisoning(backdoor, plots);
        self.data_scans(backdoor);
        self.push("</section>\n");
    }

    /// One row per (class, scan) of the model under test, then one line per trained model.
    fn verdicts(&mut self, report: &RunReport, backdoor: &BackdoorReport) {
        let under_test: Vec<_> = backdoor
            .scans
            .iter()
            .filter(|s| s.model == ScannedModel::UnderTest)
            .collect();
        if !under_test.is_empty() {
            let flagged: Vec<String> = under_test
                .iter()
                .flat_map(|s| {
                    s.flagged
                        .iter()
                        .map(move |c| format!("class {c} ({})", esc(&s.label)))
                })
                .collect();
            self.push(&format!(
                "<h3>Verdict per class (model under test)</h3>\n<p>{}</p>\n",
                if flagged.is_empty() {
                    "No scan flags a class of the model under test as a backdoor target."
                        .to_string()
                } else {
                    format!(
                        "<strong>Suspected backdoor target: {}.</strong> Clean models are \
                         flagged too now and then (docs/backdoors.md has the measured rate): \
                         read the index beside the threshold.",
                        flagged.join(", ")
                    )
                }
            ));
            self.push(
                "<table class=\"compact\">\n<thead><tr><th>Class</th><th>Scan</th>\
                 <th class=\"num\">Anomaly index</th><th class=\"num\">Mask L1</th>\
                 <th class=\"num\">Flip rate</th><th class=\"num\">IoU with true trigger</th>\
                 <th>Verdict</th></tr></thead>\n<tbody>\n",
            );
            for scan in &under_test {
                for class in &scan.classes {
                    let verdict = if class.flagged {
                        "<span class=\"badge fail\">SUSPECTED TARGET</span>"
                    } else {
                        "<span class=\"badge pass\">not flagged</span>"
                    };
                    self.push(&format!(
                        "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
                         <td class=\"num\">{}</td><td class=\"num\">{}</td>\
                         <td class=\"num\">{}</td><td>{verdict}</td></tr>\n",
                        super::class_name(report, class.class),
                        esc(&scan.label),
                        index_text(class.anomaly_index),
                        optional(class.mask_l1, 3),
                        class.flip_rate.map_or("–".to_string(), percent),
                        optional(class.mask_iou, 2),
                    ));
                }
            }
            self.push("</tbody>\n</table>\n");
        }
        let trained: Vec<_> = backdoor
            .scans
            .iter()
            .filter(|s| s.model != ScannedModel::UnderTest)
            .collect();
        if !trained.is_empty() {
            self.push(
                "<h3>Scans of the models the poisoning sweeps trained</h3>\n\
                 <table class=\"compact\">\n<thead><tr><th>Model</th><th>Scan</th>\
                 <th>Flagged classes</th><th class=\"num\">Largest index</th>\
                 <th class=\"num\">IoU of the flagged mask</th></tr></thead>\n<tbody>\n",
            );
            for scan in trained {
                let largest = scan
                    .classes
                    .iter()
                    .filter_map(|c| c.anomaly_index)
                    .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
                let iou: Vec<String> = scan
                    .classes
                    .iter()
                    .filter(|c| c.flagged)
                    .filter_map(|c| {
                        c.mask_iou
                            .map(|v| format!("{}: {}", c.class, significant(v, 2)))
                    })
                    .collect();
                self.push(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
                     <td class=\"num\">{}</td></tr>\n",
                    esc(&scan.model.describe()),
                    esc(&scan.label),
                    if scan.flagged.is_empty() {
                        "none".to_string()
                    } else {
                        scan.flagged
                            .iter()
                            .map(usize::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                    index_text(largest),
                    if iou.is_empty() {
                        "–".to_string()
                    } else {
                        iou.join("; ")
                    },
                ));
            }
            self.push("</tbody>\n</table>\n");
        }
    }

    fn strip(&mut self, backdoor: &BackdoorReport, plots: &BackdoorPlots) {
        if backdoor.strip.is_empty() {
            return;
        }
        self.push(
            "<h3>STRIP</h3>\n<p class=\"note\">Each input is superimposed on held-out clean \
             images; a triggered input keeps its prediction, so its mean entropy is low. The \
             threshold is set on clean inputs for the target false-rejection rate.</p>\n\
             <table class=\"compact\">\n<thead><tr><th>Model</th><th class=\"num\">Threshold \
             (bits)</th><th class=\"num\">False rejection</th><th class=\"num\">Detection of \
             triggered inputs</th></tr></thead>\n<tbody>\n",
        );
        for strip in &backdoor.strip {
            self.push(&format!(
                "<tr><td>{}</td><td class=\"num\">{}</td>{}{}</tr>\n",
                esc(&strip.model.describe()),
                significant(strip.threshold, 3),
                percent_cell(&strip.false_rejection),
                strip
                    .detection
                    .as_ref()
                    .map_or("<td class=\"num\">–</td>".to_string(), percent_cell),
            ));
        }
        self.push("</tbody>\n</table>\n<div class=\"plots\">\n");
        for plot in &plots.strip {
            self.image(plot);
        }
        self.push("</div>\n");
    }

    fn poisoning(&mut self, backdoor: &BackdoorReport, plots: &BackdoorPlots) {
        if backdoor.poisonings.is_empty() {
            return;
        }
        self.push("<h3>Poisoning sweeps</h3>\n");
        for (poisoning, plot) in backdoor.poisonings.iter().zip(&plots.poisoning) {
            self.push(&format!(
                "<p><strong>{}</strong> (<code>{}</code>{}, {} training samples): {}.</p>\n",
                esc(&poisoning.label),
                esc(&poisoning.poisoning),
                poisoning
                    .target
                    .map_or(String::new(), |t| format!(", target class {t}")),
                poisoning.training_samples,
                match poisoning.smallest_rate_reaching_90 {
                    Some(rate) => format!(
                        "the smallest poison rate reaching 90% attack success is <strong>{}</strong>",
                        significant(rate, 3)
                    ),
                    None => "no rate of the sweep reaches 90% attack success".to_string(),
                }
            ));
            self.push(
                "<table class=\"compact\">\n<thead><tr><th class=\"num\">Rate</th>\
                 <th class=\"num\">Clean accuracy</th><th class=\"num\">Attack success</th>\
                 </tr></thead>\n<tbody>\n",
            );
            for row in &poisoning.rows {
                self.push(&format!(
                    "<tr><td class=\"num\">{}</td>{}{}</tr>\n",
                    significant(row.rate, 3),
                    percent_cell(&row.clean_accuracy),
                    row.attack_success
                        .as_ref()
                        .map_or("<td class=\"num\">–</td>".to_string(), percent_cell),
                ));
            }
            self.push("</tbody>\n</table>\n<div class=\"plots\">\n");
            self.image(plot);
            self.push("</div>\n");
        }
    }

    fn data_scans(&mut self, backdoor: &BackdoorReport) {
        if backdoor.data_scans.is_empty() {
            return;
        }
        self.push(
            "<h3>Data-level detectors</h3>\n<p class=\"note\">On each trained model's training \
             set, from penultimate-layer features; precision and recall against the poisoned \
             indices (the ground truth, <code>poisoned_indices.json</code>).</p>\n\
             <table class=\"compact\">\n<thead><tr><th>Detector</th><th>Model</th>\
             <th class=\"num\">Flagged</th><th class=\"num\">Poisoned</th>\
             <th class=\"num\">Precision</th><th class=\"num\">Recall</th></tr></thead>\n<tbody>\n",
        );
        for scan in &backdoor.data_scans {
            self.push(&format!(
                "<tr><td>{}</td><td>{} at rate {}, seed {}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
                esc(&scan.label),
                esc(&scan.poisoning),
                significant(scan.rate, 3),
                scan.seed,
                scan.flagged,
                scan.poisoned,
                scan.precision.map_or("–".to_string(), percent),
                scan.recall.map_or("–".to_string(), percent),
            ));
        }
        self.push("</tbody>\n</table>\n");
    }
}
