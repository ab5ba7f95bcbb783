//! The report's Guardrails section: per detector, detection at 1% and 5% clean false
//! positives, ROC AUC and the robust accuracy with the guardrail at each attack@ε, adaptive
//! rows beside the non-adaptive ones, the large gaps called out, and the ROC chart.

use super::{esc, percent_cell, Page};
use crate::numbers::{percent, significant};
use crate::plots::NamedPng;
use crate::schema::RunReport;

impl Page {
    /// The probing simulation: its headline and one row per attacker session.
    pub(super) fn probing(&mut self, report: &RunReport) {
        let Some(probing) = &report.probing else {
            return;
        };
        self.push("<section id=\"probing\">\n<h2>Probing</h2>\n");
        self.push(&format!(
            "<p class=\"note\">A black-box attacker queries the model with near-duplicates of \
             one image. Per session (one correctly classified sample, attacked alone), a \
             query-similarity monitor scores each query by its mean L2 distance to the {} \
             nearest of the session's last {} queries, and flags it below {} — the threshold \
             at which {} of a benign stream of {} distinct clean inputs is flagged.</p>\n",
            probing.k,
            probing.window,
            significant(probing.threshold, 4),
            percent(probing.achieved_fpr),
            probing.benign_queries
        ));
        self.push(&format!("<p>{}.</p>\n", esc(&probing.headline())));
        self.push(
            "<table>\n<thead><tr><th class=\"num\">Sample</th><th class=\"num\">Queries</th>\
             <th class=\"num\">Succeeded at</th><th class=\"num\">Flagged at</th>\
             <th>Caught in time</th></tr></thead>\n<tbody>\n",
        );
        let at = |q: Option<u32>| q.map_or("–".to_string(), |q| q.to_string());
        for session in &probing.sessions {
            self.push(&format!(
                "<tr><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td>{}</td></tr>\n",
                session.index,
                session.queries,
                at(session.succeeded_at),
                at(session.detected_at),
                if session.caught_in_time() {
                    "yes"
                } else {
                    "no"
                }
            ));
        }
        self.push("</tbody>\n</table>\n</section>\n");
    }

    pub(super) fn detectors(
        &mut self,
        report: &RunReport,
        plots: &[(usize, NamedPng)],
        confidence: &[(usize, NamedPng)],
    ) {
        if report.detectors.is_empty() && report.output_drift.is_empty() {
            return;
        }
        self.push("<section id=\"guardrails\">\n<h2>Guardrails</h2>\n");
        if report.detectors.is_empty() {
            self.drift(report, confidence);
            self.push("</section>\n");
            return;
        }
        self.push(
            "<p class=\"note\">Each detector is fitted on clean data and scores every input \
             (higher = more suspicious). Thresholds are fixed on the clean evaluation inputs \
             alone, at a target false-positive rate; detection and AUC are measured on the \
             attack's successful adversarial inputs (correct when clean, wrong after). Robust \
             accuracy with the guardrail counts a sample as defended when the model is still \
             right or the detector flags the adversarial input. An adaptive attack knows the \
             detector; a detector only holds up if its adaptive figures do.</p>\n",
        );
        for (i, detector) in report.detectors.iter().enumerate() {
            self.push(&format!(
                "<h3>{} <span class=\"note\">({}, looks at {}; fitted on {} clean inputs from \
                 {})</span></h3>\n",
                esc(&detector.label),
                esc(&detector.detector),
                esc(&detector.needs),
                detector.fit_samples,
                esc(&detector.fit_source)
            ));
            if let (Some(threshold), Some(fp)) =
                (detector.rule_threshold, &detector.rule_false_positive)
            {
                self.push(&format!(
                    "<p>Its own rule (reject above {}) rejects {} of the {} clean inputs.</p>\n",
                    significant(threshold, 3),
                    percent(fp.value),
                    fp.total
                ));
            }
            for line in detector.large_gaps() {
                self.push(&format!(
                    "<p class=\"verdict warn\"><strong>WARN</strong> <span>{}</span></p>\n",
                    esc(&line)
                ));
            }
            self.push(
                "<table>\n<thead><tr><th>Attack</th><th>Adaptive</th><th class=\"num\">ε</th>\
                 <th class=\"num\">Broken</th><th class=\"num\">AUC</th>\
                 <th class=\"num\">Detected @1% FPR</th><th class=\"num\">Detected @5% FPR</th>\
                 <th class=\"num\">Robust acc.</th>\
                 <th class=\"num\">With guardrail @1%</th>\
                 <th class=\"num\">With guardrail @5%</th>\
                 <th class=\"num\">Own rule detects</th></tr></thead>\n<tbody>\n",
            );
            for row in &detector.rows {
                let mut cells = format!(
                    "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
                     <td class=\"num\">{}</td><td class=\"num\">{}</td>",
                    esc(&row.attack),
                    if row.adaptive { "yes" } else { "no" },
                    significant(row.epsilon, 4),
                    row.successful,
                    row.auc.map_or("–".to_string(), |a| format!("{a:.3}")),
                );
                for point in &row.at_fpr {
                    match &point.detection {
                        Some(p) => cells.push_str(&percent_cell(p)),
                        None => cells.push_str("<td class=\"num\">–</td>"),
                    }
                }
                cells.push_str(&percent_cell(&row.robust_accuracy));
                for point in &row.at_fpr {
                    cells.push_str(&percent_cell(&point.robust_with_guardrail));
                }
                match &row.rule_detection {
                    Some(p) => cells.push_str(&percent_cell(p)),
                    None => cells.push_str("<td class=\"num\">–</td>"),
                }
                cells.push_str("</tr>\n");
                self.push(&cells);
            }
            self.push("</tbody>\n</table>\n");
            if let Some((_, plot)) = plots.iter().find(|(k, _)| *k == i) {
                self.push("<div class=\"plots\">\n");
                self.image(plot);
                self.push("</div>\n");
            }
        }
        self.drift(report, confidence);
        self.push("</section>\n");
    }

    /// The output monitor's view: the drift of the predicted classes per attack@ε, and the
    /// confidence histograms.
    fn drift(&mut self, report: &RunReport, confidence: &[(usize, NamedPng)]) {
        if report.output_drift.is_empty() {
            return;
        }
        self.push(
            "<h3>Output monitoring</h3>\n<p class=\"note\">How far the distribution of \
             predicted classes moves from the clean inputs to the attacked ones (class counts \
             smoothed by ½): the population stability index (common alarm levels 0.1 and 0.25) \
             and KL(attacked ‖ clean) in nats. A monitor watching batches of outputs sees an \
             attack only when these are large.</p>\n<table>\n<thead><tr><th>Attack</th>\
             <th class=\"num\">ε</th><th class=\"num\">PSI</th>\
             <th class=\"num\">KL</th></tr></thead>\n<tbody>\n",
        );
        for drift in &report.output_drift {
            self.push(&format!(
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:.3}</td>\
                 <td class=\"num\">{:.3}</td></tr>\n",
                esc(&drift.attack),
                significant(drift.epsilon, 4),
                drift.psi,
                drift.kl
            ));
        }
        self.push("</tbody>\n</table>\n");
        if !confidence.is_empty() {
            self.push("<div class=\"plots\">\n");
            for (_, plot) in confidence {
                self.image(plot);
            }
            self.push("</div>\n");
        }
    }
}
