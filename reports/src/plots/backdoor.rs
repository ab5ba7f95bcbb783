//! The backdoor section's images: anomaly-index bars with the threshold line, recovered
//! triggers, a clean input beside its triggered copy, STRIP entropy histograms, and attack
//! success and clean accuracy against the poison rate.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    blit, draw_legend, error_bar, file_stem, render_png, shorten, LegendKey, Marker, NamedPng,
    Sampling, ACCURACY_AXIS, FONT, GRID, INK, LEGEND_WIDTH, MARKER_SHAPES, PALETTE,
};
use crate::backdoor::{image_dims, PoisoningResult, ScanResult, StripResult};
use crate::error::ReportError;
use crate::numbers::significant;
use crate::schema::{Proportion, RunReport};
use crate::validate::ImageDims;

/// Flagged bars and the threshold line.
const ALERT: RGBColor = RGBColor(213, 94, 0);
const CALM: RGBColor = RGBColor(0, 114, 178);

/// Every backdoor image of the report, in the order the HTML section shows them.
pub(crate) struct BackdoorPlots {
    /// One anomaly-index chart per scan result that measures an index (by position in
    /// `backdoor.scans`).
    pub anomaly: Vec<(usize, NamedPng)>,
    /// One strip of recovered triggers per (scan, model), in first-seen order.
    pub triggers: Vec<NamedPng>,
    /// One clean | triggered tile per kept input.
    pub inputs: Vec<NamedPng>,
    /// One entropy histogram per STRIP result.
    pub strip: Vec<NamedPng>,
    /// One rate chart per poisoning.
    pub poisoning: Vec<NamedPng>,
}

impl BackdoorPlots {
    pub fn into_all(self) -> Vec<NamedPng> {
        let mut all: Vec<NamedPng> = self.anomaly.into_iter().map(|(_, png)| png).collect();
        all.extend(self.triggers);
        all.extend(self.inputs);
        all.extend(self.strip);
        all.extend(self.poisoning);
        all
    }
}

pub(crate) fn backdoor_plots(report: &RunReport) -> Result<BackdoorPlots, ReportError> {
    let mut plots = BackdoorPlots {
        anomaly: Vec::new(),
        triggers: Vec::new(),
        inputs: Vec::new(),
        strip: Vec::new(),
        poisoning: Vec::new(),
    };
    let Some(backdoor) = &report.backdoor else {
        return Ok(plots);
    };
    for (i, scan) in backdoor.scans.iter().enumerate() {
        if scan.classes.iter().any(|c| c.anomaly_index.is_some()) {
            plots.anomaly.push((i, anomaly_chart(i, scan)?));
        }
    }
    let mut groups: Vec<(String, String)> = Vec::new();
    for trigger in &backdoor.images.triggers {
        let key = (trigger.scan.clone(), trigger.model.describe());
        if !groups.contains(&key) {
            groups.push(key);
        }
    }
    for (g, (scan, model)) in groups.iter().enumerate() {
        plots.triggers.push(trigger_strip(report, g, scan, model)?);
    }
    for (i, input) in backdoor.images.inputs.iter().enumerate() {
        let (channels, height, width) =
            image_dims(&format!("backdoor.images.inputs[{i}]"), &input.shape)?;
        let dims = ImageDims {
            channels,
            height,
            width,
        };
        let captions = [
            format!("clean → {}", class_label(report, input.clean_prediction)),
            format!(
                "triggered → {}",
                class_label(report, input.triggered_prediction)
            ),
        ];
        let png = panels(
            &format!("backdoor_input_{:02}.png", i + 1),
            dims,
            &[
                (&input.clean, &captions[0]),
                (&input.triggered, &captions[1]),
            ],
        )?;
        plots.inputs.push(NamedPng {
            file_name: format!("backdoor_input_{:02}.png", i + 1),
            title: format!(
                "A clean input and the same input with {} ({})",
                input.trigger,
                input.model.describe()
            ),
            png,
        });
    }
    for (i, strip) in backdoor.strip.iter().enumerate() {
        plots.strip.push(strip_histogram(i, strip)?);
    }
    for (i, poisoning) in backdoor.poisonings.iter().enumerate() {
        plots.poisoning.push(rate_chart(i, poisoning)?);
    }
    Ok(plots)
}

fn class_label(report: &RunReport, class: usize) -> String {
    report
        .dataset
        .class_names
        .get(class)
        .cloned()
        .unwrap_or_else(|| class.to_string())
}

/// Anomaly index per class as bars (flagged ones in orange), with the flagging threshold as a
/// dashed line.
fn anomaly_chart(i: usize, scan: &ScanResult) -> Result<NamedPng, ReportError> {
    let n = scan.classes.len().max(1);
    // An index of f64::MAX (MAD = 0) is drawn at the top of the axis.
    let shown = |v: f64| v.min(1e6);
    let top = scan
        .classes
        .iter()
        .filter_map(|c| c.anomaly_index)
        .map(shown)
        .fold(scan.anomaly_threshold, f64::max)
        .min(3.0 * scan.anomaly_threshold.max(1.0))
        * 1.15;
    let top = if top > 0.0 { top } else { 1.0 };
    let title = format!(
        "{}: anomaly index per class ({})",
        shorten(&scan.label, 24),
        shorten(&scan.model.describe(), 40)
    );
    let file_name = format!(
        "backdoor_anomaly_{:02}_{}.png",
        i + 1,
        file_stem(&scan.label)
    );
    let legend = vec![
        (LegendKey::Swatch(CALM), "not flagged".to_owned()),
        (LegendKey::Swatch(ALERT), "flagged".to_owned()),
        (
            LegendKey::Dashed,
            format!("threshold {}", significant(scan.anomaly_threshold, 3)),
        ),
    ];
    let width = (160 + 56 * n as u32).clamp(700, 1400) + LEGEND_WIDTH;
    let png = render_png(&file_name, (width, 400), None, |root| {
        root.fill(&WHITE)?;
        let body = root.titled(&title, (FONT, 18).into_font().color(&INK))?;
        let (plot_area, legend_area) = body.split_horizontally(width - LEGEND_WIDTH);
        let mut chart = ChartBuilder::on(&plot_area)
            .margin(14)
            .margin_top(6)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5..n as f64 - 0.5, 0.0..top)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .disable_x_mesh()
            .axis_style(INK)
            .x_desc("class")
            .y_desc("anomaly index")
            .x_labels(n.min(40))
            .x_label_formatter(&|v| {
                let k = v.round();
                if (v - k).abs() < 1e-6 && k >= 0.0 {
                    format!("{}", k as usize)
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|v| significant(*v, 3))
            .label_style((FONT, 13).into_font().color(&INK))
            .axis_desc_style((FONT, 14).into_font().color(&INK))
            .draw()?;
        chart.draw_series(scan.classes.iter().enumerate().filter_map(|(k, class)| {
            let value = shown(class.anomaly_index?).min(top);
            let color = if class.flagged { ALERT } else { CALM };
            Some(Rectangle::new(
                [(k as f64 - 0.35, 0.0), (k as f64 + 0.35, value)],
                color.filled(),
            ))
        }))?;
        chart.draw_series(DashedLineSeries::new(
            [
                (-0.5, scan.anomaly_threshold),
                (n as f64 - 0.5, scan.anomaly_threshold),
            ],
            10,
            6,
            INK.stroke_width(2),
        ))?;
        draw_legend(&legend_area, &legend)?;
        Ok(())
    })?;
    Ok(NamedPng {
        file_name,
        title,
        png,
    })
}

/// Side of each trigger panel aimed for.
const PANEL: usize = 64;
const MARGIN: usize = 6;
const GAP: usize = 8;
const CAPTION: usize = 20;

/// Panels side by side, each with a caption above, upscaled (nearest neighbour) or subsampled
/// to about [`PANEL`] pixels a side.
fn panels(
    name: &str,
    dims: ImageDims,
    images: &[(&[f32], &String)],
) -> Result<Vec<u8>, ReportError> {
    let side = dims.height.max(dims.width);
    let scale = ((PANEL + side / 2) / side).max(1);
    let step = side.div_ceil(super::MAX_PANEL_SIDE).max(1);
    let panel_w = dims.width.div_ceil(step) * scale;
    let panel_h = dims.height.div_ceil(step) * scale;
    let panel_w_shown = panel_w.max(110);
    let width = 2 * MARGIN + images.len() * panel_w_shown + images.len().saturating_sub(1) * GAP;
    let height = 2 * MARGIN + CAPTION + panel_h;
    let mut rgb = vec![255_u8; width * height * 3];
    for (k, (pixels, _)) in images.iter().enumerate() {
        let left = MARGIN + k * (panel_w_shown + GAP) + (panel_w_shown - panel_w) / 2;
        blit(
            &mut rgb,
            width,
            (left, MARGIN + CAPTION),
            pixels,
            dims,
            Sampling { scale, step },
        );
    }
    render_png(name, (width as u32, height as u32), Some(rgb), |root| {
        for (k, (_, caption)) in images.iter().enumerate() {
            let center = (MARGIN + k * (panel_w_shown + GAP) + panel_w_shown / 2) as i32;
            let style = TextStyle::from((FONT, 12).into_font())
                .color(&INK)
                .pos(Pos::new(HPos::Center, VPos::Top));
            root.draw(&Text::new(
                shorten(caption, 18),
                (center, MARGIN as i32 + 2),
                style,
            ))?;
        }
        Ok(())
    })
}

/// The recovered triggers of one (scan, model), one pair of panels per class: the mask (white
/// = trigger pixel) and the pattern seen through the mask (`m·p`).
fn trigger_strip(
    report: &RunReport,
    g: usize,
    scan: &str,
    model: &str,
) -> Result<NamedPng, ReportError> {
    let backdoor = report.backdoor.as_ref().map(|b| &b.images.triggers);
    let triggers: Vec<_> = backdoor
        .into_iter()
        .flatten()
        .filter(|t| t.scan == scan && t.model.describe() == model)
        .collect();
    let mut images: Vec<(Vec<f32>, String)> = Vec::new();
    let mut dims = None;
    for trigger in &triggers {
        let (channels, height, width) = image_dims(
            &format!("trigger of class {}", trigger.class),
            &trigger.shape,
        )?;
        let plane = height * width;
        let mask: Vec<f32> = (0..channels)
            .flat_map(|_| trigger.mask.iter().copied())
            .collect();
        let through: Vec<f32> = (0..channels * plane)
            .map(|i| trigger.pattern[i] * trigger.mask[i % plane])
            .collect();
        images.push((mask, format!("{} mask", trigger.class)));
        images.push((through, format!("{} m·p", trigger.class)));
        dims = Some(ImageDims {
            channels,
            height,
            width,
        });
    }
    let file_name = format!("backdoor_triggers_{:02}_{}.png", g + 1, file_stem(scan));
    let title = format!("{scan}: recovered trigger per class ({model})");
    let Some(dims) = dims else {
        return Err(ReportError::Plot {
            plot: file_name,
            message: "no trigger to draw".to_owned(),
        });
    };
    let refs: Vec<(&[f32], &String)> = images.iter().map(|(p, c)| (p.as_slice(), c)).collect();
    let png = panels(&file_name, dims, &refs)?;
    Ok(NamedPng {
        file_name,
        title,
        png,
    })
}

/// Histograms of the clean and triggered inputs' entropies, with the threshold.
fn strip_histogram(i: usize, strip: &StripResult) -> Result<NamedPng, ReportError> {
    const BINS: usize = 30;
    let max = strip
        .clean_entropies
        .iter()
        .chain(&strip.triggered_entropies)
        .copied()
        .fold(strip.threshold, f64::max)
        .max(1e-6)
        * 1.02;
    let counts = |values: &[f64]| {
        let mut bins = [0usize; BINS];
        for &v in values {
            let bin = ((v / max) * BINS as f64)
                .floor()
                .clamp(0.0, (BINS - 1) as f64) as usize;
            bins[bin] += 1;
        }
        bins
    };
    let clean = counts(&strip.clean_entropies);
    let triggered = counts(&strip.triggered_entropies);
    let peak = clean
        .iter()
        .chain(&triggered)
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let title = format!(
        "STRIP entropy ({}): clean vs triggered",
        shorten(&strip.model.describe(), 40)
    );
    let file_name = format!(
        "backdoor_strip_{:02}_{}.png",
        i + 1,
        file_stem(&strip.label)
    );
    let mut legend = vec![(
        LegendKey::Swatch(CALM),
        format!("clean ({})", strip.clean_entropies.len()),
    )];
    if !strip.triggered_entropies.is_empty() {
        legend.push((
            LegendKey::Swatch(ALERT),
            format!("triggered ({})", strip.triggered_entropies.len()),
        ));
    }
    legend.push((
        LegendKey::Dashed,
        format!("threshold {}", significant(strip.threshold, 3)),
    ));
    let width = 900;
    let png =
        render_png(&file_name, (width, 400), None, |root| {
            root.fill(&WHITE)?;
            let body = root.titled(&title, (FONT, 18).into_font().color(&INK))?;
            let (plot_area, legend_area) = body.split_horizontally(width - LEGEND_WIDTH);
            let mut chart = ChartBuilder::on(&plot_area)
                .margin(14)
                .margin_top(6)
                .x_label_area_size(44)
                .y_label_area_size(56)
                .build_cartesian_2d(0.0..max, 0.0..peak)?;
            chart
                .configure_mesh()
                .light_line_style(TRANSPARENT)
                .bold_line_style(GRID)
                .axis_style(INK)
                .x_desc("mean entropy over superimpositions (bits)")
                .y_desc("inputs")
                .x_label_formatter(&|v| significant(*v, 3))
                .y_label_formatter(&|v| format!("{v:.0}"))
                .label_style((FONT, 13).into_font().color(&INK))
                .axis_desc_style((FONT, 14).into_font().color(&INK))
                .draw()?;
            let width_of_bin = max / BINS as f64;
            for (bins, color, shift) in [(&clean, CALM, 0.0), (&triggered, ALERT, 0.5)] {
                chart.draw_series(bins.iter().enumerate().filter(|(_, &c)| c > 0).map(
                    |(b, &c)| {
                        let left = b as f64 * width_of_bin + shift * width_of_bin;
                        Rectangle::new(
                            [(left, 0.0), (left + width_of_bin * 0.5, c as f64)],
                            color.filled(),
                        )
                    },
                ))?;
            }
            chart.draw_series(DashedLineSeries::new(
                [(strip.threshold, 0.0), (strip.threshold, peak)],
                8,
                5,
                INK.stroke_width(2),
            ))?;
            draw_legend(&legend_area, &legend)?;
            Ok(())
        })?;
    Ok(NamedPng {
        file_name,
        title,
        png,
    })
}

/// Attack success rate and clean accuracy against the poison rate, each pooled over the seeds
/// with its 95% interval.
fn rate_chart(i: usize, poisoning: &PoisoningResult) -> Result<NamedPng, ReportError> {
    let max_rate = poisoning
        .rows
        .iter()
        .map(|r| r.rate)
        .fold(0.0_f64, f64::max);
    let x_max = if max_rate > 0.0 { max_rate * 1.06 } else { 1.0 };
    let x_min = -x_max * 0.03;
    let cap = x_max * 0.008;
    let title = format!(
        "{}: attack success and clean accuracy vs poison rate",
        shorten(&poisoning.label, 24)
    );
    let file_name = format!(
        "backdoor_poison_rate_{:02}_{}.png",
        i + 1,
        file_stem(&poisoning.label)
    );
    let series: Vec<(String, Vec<(f64, Proportion)>)> = [
        (
            "attack success".to_owned(),
            poisoning
                .rows
                .iter()
                .filter_map(|r| Some((r.rate, r.attack_success?)))
                .collect::<Vec<_>>(),
        ),
        (
            "clean accuracy".to_owned(),
            poisoning
                .rows
                .iter()
                .map(|r| (r.rate, r.clean_accuracy))
                .collect(),
        ),
    ]
    .into_iter()
    .filter(|(_, points)| !points.is_empty())
    .collect();
    let legend: Vec<(LegendKey, String)> = series
        .iter()
        .enumerate()
        .map(|(k, (name, _))| {
            (
                LegendKey::Line {
                    color: PALETTE[(k + 3) % PALETTE.len()],
                    shape: MARKER_SHAPES[k % MARKER_SHAPES.len()],
                },
                name.clone(),
            )
        })
        .collect();
    let png = render_png(&file_name, (900, 420), None, |root| {
        root.fill(&WHITE)?;
        let body = root.titled(&title, (FONT, 18).into_font().color(&INK))?;
        let (plot_area, legend_area) = body.split_horizontally(900 - LEGEND_WIDTH);
        let mut chart = ChartBuilder::on(&plot_area)
            .margin(14)
            .margin_top(6)
            .x_label_area_size(46)
            .y_label_area_size(60)
            .build_cartesian_2d(x_min..x_max, ACCURACY_AXIS)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(INK)
            .x_desc("poison rate (fraction of the training set)")
            .y_desc("rate")
            .x_label_formatter(&|v| significant(*v, 3))
            .y_labels(6)
            .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
            .label_style((FONT, 13).into_font().color(&INK))
            .axis_desc_style((FONT, 14).into_font().color(&INK))
            .draw()?;
        for (k, (_, points)) in series.iter().enumerate() {
            let color = PALETTE[(k + 3) % PALETTE.len()];
            chart.draw_series(
                points
                    .iter()
                    .map(|(x, p)| error_bar(*x, p, cap, color.stroke_width(1))),
            )?;
            chart.draw_series(LineSeries::new(
                points.iter().map(|(x, p)| (*x, p.value)),
                color.stroke_width(2),
            ))?;
            chart.draw_series(points.iter().map(|(x, p)| Marker {
                at: (*x, p.value),
                shape: MARKER_SHAPES[k % MARKER_SHAPES.len()],
                radius: 5,
                style: color.filled(),
            }))?;
        }
        draw_legend(&legend_area, &legend)?;
        Ok(())
    })?;
    Ok(NamedPng {
        file_name,
        title,
        png,
    })
}
