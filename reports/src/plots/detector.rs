//! The guardrail section's images: one ROC curve chart per detector, a line per attack@ε it
//! was scored against (dashed for an adaptive attack), with the chance diagonal.

use plotters::prelude::*;

use super::{
    draw_legend, file_stem, render_png, shorten, LegendKey, NamedPng, FONT, GRID, INK,
    LEGEND_WIDTH, MARKER_SHAPES, PALETTE,
};
use crate::detector::{DetectorResult, DriftResult, CONFIDENCE_BINS};
use crate::error::ReportError;
use crate::schema::RunReport;

/// One ROC chart per detector with at least one curve, by position in `detectors`.
pub(crate) fn roc_plots(report: &RunReport) -> Result<Vec<(usize, NamedPng)>, ReportError> {
    let mut plots = Vec::new();
    for (i, detector) in report.detectors.iter().enumerate() {
        if detector.rows.iter().any(|r| !r.roc.is_empty()) {
            plots.push((i, roc_chart(i, detector)?));
        }
    }
    Ok(plots)
}

/// One confidence histogram chart per drift result that has histograms, by position in
/// `output_drift`.
pub(crate) fn confidence_plots(report: &RunReport) -> Result<Vec<(usize, NamedPng)>, ReportError> {
    let mut plots = Vec::new();
    for (i, drift) in report.output_drift.iter().enumerate() {
        if drift.confidence.is_some() {
            plots.push((i, confidence_chart(i, drift)?));
        }
    }
    Ok(plots)
}

/// The clean and the attacked inputs' top-class probabilities, side by side per bin, as shares
/// of their batch.
fn confidence_chart(i: usize, drift: &DriftResult) -> Result<NamedPng, ReportError> {
    let title = format!(
        "Top-class probability: clean vs {}@{}",
        shorten(&drift.attack, 20),
        drift.epsilon
    );
    let file_name = format!(
        "confidence_{:02}_{}_{}.png",
        i + 1,
        file_stem(&drift.attack),
        file_stem(&drift.epsilon.to_string())
    );
    let Some(histograms) = &drift.confidence else {
        return Err(ReportError::Plot {
            plot: file_name,
            message: "no histogram to draw".to_owned(),
        });
    };
    let shares = |bins: &[usize]| -> Vec<f64> {
        let total = bins.iter().sum::<usize>().max(1) as f64;
        bins.iter().map(|&n| n as f64 / total).collect()
    };
    let clean = shares(&histograms.clean);
    let attacked = shares(&histograms.attacked);
    let peak = clean
        .iter()
        .chain(&attacked)
        .copied()
        .fold(0.0_f64, f64::max)
        .max(0.01)
        * 1.1;
    let legend = vec![
        (LegendKey::Swatch(PALETTE[0]), "clean".to_owned()),
        (
            LegendKey::Swatch(PALETTE[1]),
            format!("{}@{}", drift.attack, drift.epsilon),
        ),
    ];
    let width = 900;
    let png = render_png(&file_name, (width, 400), None, |root| {
        root.fill(&WHITE)?;
        let body = root.titled(&title, (FONT, 18).into_font().color(&INK))?;
        let (plot_area, legend_area) = body.split_horizontally(width - LEGEND_WIDTH);
        let mut chart = ChartBuilder::on(&plot_area)
            .margin(14)
            .margin_top(6)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..1.0, 0.0..peak)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(INK)
            .x_desc("top-class softmax probability")
            .y_desc("share of inputs")
            .x_labels(6)
            .x_label_formatter(&|v| format!("{v:.1}"))
            .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
            .label_style((FONT, 13).into_font().color(&INK))
            .axis_desc_style((FONT, 14).into_font().color(&INK))
            .draw()?;
        let bin = 1.0 / CONFIDENCE_BINS as f64;
        for (values, color, shift) in [(&clean, PALETTE[0], 0.0), (&attacked, PALETTE[1], 0.5)] {
            chart.draw_series(values.iter().enumerate().filter(|(_, &v)| v > 0.0).map(
                |(b, &v)| {
                    let left = b as f64 * bin + shift * bin;
                    Rectangle::new([(left, 0.0), (left + bin * 0.5, v)], color.filled())
                },
            ))?;
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

fn roc_chart(i: usize, detector: &DetectorResult) -> Result<NamedPng, ReportError> {
    let title = format!(
        "{}: ROC on successful adversarial inputs vs clean",
        shorten(&detector.label, 28)
    );
    let file_name = format!(
        "detector_roc_{:02}_{}.png",
        i + 1,
        file_stem(&detector.label)
    );
    let rows: Vec<_> = detector.rows.iter().filter(|r| !r.roc.is_empty()).collect();
    let legend: Vec<(LegendKey, String)> = rows
        .iter()
        .enumerate()
        .map(|(k, row)| {
            (
                LegendKey::Line {
                    color: PALETTE[k % PALETTE.len()],
                    shape: MARKER_SHAPES[k % MARKER_SHAPES.len()],
                },
                format!(
                    "{}@{} AUC {}",
                    row.attack,
                    row.epsilon,
                    row.auc.map_or("n/a".to_owned(), |a| format!("{a:.2}"))
                ),
            )
        })
        .collect();
    let width = 900;
    let png = render_png(&file_name, (width, 480), None, |root| {
        root.fill(&WHITE)?;
        let body = root.titled(&title, (FONT, 18).into_font().color(&INK))?;
        let (plot_area, legend_area) = body.split_horizontally(width - LEGEND_WIDTH);
        let mut chart = ChartBuilder::on(&plot_area)
            .margin(14)
            .margin_top(6)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(INK)
            .x_desc("false-positive rate on clean inputs")
            .y_desc("detection rate")
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&|v| format!("{:.0}%", v * 100.0))
            .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
            .label_style((FONT, 13).into_font().color(&INK))
            .axis_desc_style((FONT, 14).into_font().color(&INK))
            .draw()?;
        chart.draw_series(DashedLineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            6,
            6,
            GRID.mix(1.0).stroke_width(2),
        ))?;
        for (k, row) in rows.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let points = row.roc.iter().map(|[x, y]| (*x, *y));
            if row.adaptive {
                chart.draw_series(DashedLineSeries::new(points, 10, 5, color.stroke_width(2)))?;
            } else {
                chart.draw_series(LineSeries::new(points, color.stroke_width(2)))?;
            }
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
