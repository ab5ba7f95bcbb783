//! PNG plots of a report, drawn with plotters into in-memory RGB buffers.
//!
//! Text is set in DejaVu Sans bundled through the `dejavu` crate and registered with plotters'
//! `ab_glyph` backend, never a system font: the same report renders the same pixels on a CI
//! runner without fonts, a laptop and a container. PNG encoding is done with the `png` crate
//! directly, so nothing touches the filesystem until [`write_plots`] is asked to.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::element::{Drawable, PointCollection};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};
use plotters_backend::{BackendCoord, DrawingErrorKind};

pub(crate) mod backdoor;
pub(crate) mod detector;

use crate::error::ReportError;
use crate::numbers::{percent, significant};
use crate::schema::{AdversarialExample, ClassAccuracy, Proportion, RunReport};
use crate::validate::{example_dims, ImageDims};

/// One rendered image: its file name (for [`write_plots`]), a human title (for alt text and
/// captions) and the encoded PNG bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPng {
    pub file_name: String,
    pub title: String,
    pub png: Vec<u8>,
}

/// Every plot of the report: one robust-accuracy-vs-ε chart per norm, one per-class chart (when
/// the report has per-class results) and one gallery tile per adversarial example, in that order.
pub fn render_plots(report: &RunReport) -> Result<Vec<NamedPng>, ReportError> {
    report.validate()?;
    let mut plots = accuracy_plots(report)?;
    plots.extend(per_class_plot(report)?);
    plots.extend(example_tiles(report)?.into_iter().map(|tile| tile.png));
    plots.extend(backdoor::backdoor_plots(report)?.into_all());
    plots.extend(detector::roc_plots(report)?.into_iter().map(|(_, png)| png));
    plots.extend(
        detector::confidence_plots(report)?
            .into_iter()
            .map(|(_, png)| png),
    );
    Ok(plots)
}

/// Renders the plots and writes each as `dir/<file_name>`; returns the paths written.
pub fn write_plots(report: &RunReport, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let plots = render_plots(report)?;
    write_pngs(&plots, dir)
}

/// The name of every PNG written beside a report starts with one of these. The harness counts
/// a PNG in an output folder as its own (one `--overwrite` may replace) only when its name
/// does, so a user's own images there are never taken for plots.
pub const PLOT_FILE_PREFIXES: [&str; 7] = [
    "robust_accuracy_",
    "per_class_accuracy",
    "example_",
    "matrix_worst_case_",
    "backdoor_",
    "detector_roc_",
    "confidence_",
];

/// Whether `name` is a name [`write_plots`] (or a report writer) may give a PNG.
pub fn is_plot_file_name(name: &str) -> bool {
    name.ends_with(".png") && PLOT_FILE_PREFIXES.iter().any(|p| name.starts_with(p))
}

pub(crate) fn write_pngs(plots: &[NamedPng], dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    fs_err::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_owned(),
        source,
    })?;
    // A plot named otherwise would be refused as a user's file by the next `--overwrite`.
    if let Some(plot) = plots.iter().find(|p| !is_plot_file_name(&p.file_name)) {
        return Err(crate::validate::invalid(
            "plots",
            format!(
                "`{}` is not a plot file name (a bug in this build)",
                plot.file_name
            ),
        ));
    }
    let mut written = Vec::with_capacity(plots.len());
    for plot in plots {
        let path = dir.join(&plot.file_name);
        fs_err::write(&path, &plot.png).map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

// ---------------------------------------------------------------------------------------------
// Shared drawing machinery

/// The family name plotters asks for by default; we register DejaVu Sans under it.
const FONT: &str = "sans-serif";

/// Okabe–Ito colours: distinguishable with the common colour-vision deficiencies, and each
/// series also gets its own marker shape so the chart survives a greyscale printer.
const PALETTE: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(213, 94, 0),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
];
const INK: RGBColor = RGBColor(34, 34, 34);
const GRID: RGBColor = RGBColor(225, 225, 225);
const CLEAN_BAR: RGBColor = RGBColor(110, 110, 110);

/// Registers the bundled font once per process. plotters keeps fonts in a global table, so a
/// `OnceLock` makes concurrent renders (tests run in parallel) register it exactly once.
fn ensure_fonts() -> Result<(), ReportError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let registered = REGISTERED.get_or_init(|| {
        register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
            && register_font(FONT, FontStyle::Bold, dejavu::sans::bold()).is_ok()
    });
    if *registered {
        Ok(())
    } else {
        Err(ReportError::Font)
    }
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Draws into a fresh `width × height` RGB buffer (white, or `background` when given) and
/// encodes it as PNG.
fn render_png<F>(
    name: &str,
    (width, height): (u32, u32),
    background: Option<Vec<u8>>,
    draw: F,
) -> Result<Vec<u8>, ReportError>
where
    F: FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> DrawResult,
{
    ensure_fonts()?;
    let plot_error = |message: String| ReportError::Plot {
        plot: name.to_owned(),
        message,
    };
    let len = width as usize * height as usize * 3;
    let mut buffer = background.unwrap_or_else(|| vec![255; len]);
    if buffer.len() != len {
        return Err(plot_error(format!(
            "background has {} bytes, expected {len}",
            buffer.len()
        )));
    }
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        draw(&root).map_err(|error| plot_error(error.to_string()))?;
        root.present()
            .map_err(|error| plot_error(error.to_string()))?;
    }
    encode_png(name, width, height, &buffer)
}

fn encode_png(name: &str, width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>, ReportError> {
    let png_error = |source| ReportError::PngEncode {
        image: name.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(png_error)?;
    writer.write_image_data(rgb).map_err(png_error)?;
    writer.finish().map_err(png_error)?;
    Ok(bytes)
}

/// A file-name-safe version of a suite-provided string (labels and norms come from user files).
fn file_stem(text: &str) -> String {
    let stem: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if stem.is_empty() {
        "unnamed".to_owned()
    } else {
        stem
    }
}

/// Shortens a label to `max` characters with an ellipsis, so long class names cannot overlap.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
        short.push('…');
        short
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MarkerShape {
    Circle,
    Triangle,
    Square,
    Diamond,
}

const MARKER_SHAPES: [MarkerShape; 4] = [
    MarkerShape::Circle,
    MarkerShape::Triangle,
    MarkerShape::Square,
    MarkerShape::Diamond,
];

/// A filled point marker of a given shape, usable both in data coordinates (series) and in
/// pixel coordinates (legend entries).
struct Marker<Coord> {
    at: Coord,
    shape: MarkerShape,
    radius: i32,
    style: ShapeStyle,
}

impl<'a, Coord> PointCollection<'a, Coord> for &'a Marker<Coord> {
    type Point = &'a Coord;
    type IntoIter = std::iter::Once<&'a Coord>;
    fn point_iter(self) -> Self::IntoIter {
        std::iter::once(&self.at)
    }
}

impl<Coord, DB: DrawingBackend> Drawable<DB> for Marker<Coord> {
    fn draw<I: Iterator<Item = BackendCoord>>(
        &self,
        mut points: I,
        backend: &mut DB,
        _parent_dim: (u32, u32),
    ) -> Result<(), DrawingErrorKind<DB::ErrorType>> {
        let Some((x, y)) = points.next() else {
            return Ok(());
        };
        let r = self.radius;
        match self.shape {
            MarkerShape::Circle => backend.draw_circle((x, y), r.unsigned_abs(), &self.style, true),
            MarkerShape::Square => {
                let s = r * 8 / 10;
                backend.draw_rect((x - s, y - s), (x + s, y + s), &self.style, true)
            }
            MarkerShape::Triangle => backend.fill_polygon(
                [(x, y - r - 1), (x - r, y + r - 1), (x + r, y + r - 1)],
                &self.style,
            ),
            MarkerShape::Diamond => backend.fill_polygon(
                [(x, y - r - 1), (x + r, y), (x, y + r + 1), (x - r, y)],
                &self.style,
            ),
        }
    }
}

/// Vertical interval with caps, as one polyline: ├ low … high ┤.
fn error_bar(x: f64, p: &Proportion, cap: f64, style: ShapeStyle) -> PathElement<(f64, f64)> {
    PathElement::new(
        vec![
            (x - cap, p.ci95_low),
            (x + cap, p.ci95_low),
            (x, p.ci95_low),
            (x, p.ci95_high),
            (x - cap, p.ci95_high),
            (x + cap, p.ci95_high),
        ],
        style,
    )
}

/// Width of the legend column to the right of each chart. A legend outside the plot can never
/// hide a line or a bar, whatever the data.
const LEGEND_WIDTH: u32 = 200;

/// What a legend entry shows in front of its text.
#[derive(Debug, Clone, Copy)]
enum LegendKey {
    /// A coloured line with the series' marker.
    Line { color: RGBColor, shape: MarkerShape },
    /// The thick dashed worst-case line.
    Dashed,
    /// The hollow clean-accuracy circle.
    Clean,
    /// A filled square, for bars.
    Swatch(RGBColor),
}

/// Draws the legend entries top-down in `area`, one per 24-pixel row.
fn draw_legend(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    entries: &[(LegendKey, String)],
) -> DrawResult {
    let text_style = TextStyle::from((FONT, 13).into_font())
        .color(&INK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (row, (key, label)) in entries.iter().enumerate() {
        let y = 24 + 24 * row as i32;
        let x = 8;
        match *key {
            LegendKey::Line { color, shape } => {
                area.draw(&PathElement::new(
                    vec![(x, y), (x + 26, y)],
                    color.stroke_width(2),
                ))?;
                area.draw(&Marker {
                    at: (x + 13, y),
                    shape,
                    radius: 4,
                    style: color.filled(),
                })?;
            }
            LegendKey::Dashed => {
                for start in [x, x + 16] {
                    area.draw(&PathElement::new(
                        vec![(start, y), (start + 10, y)],
                        INK.stroke_width(4),
                    ))?;
                }
                area.draw(&Rectangle::new(
                    [(x + 8, y - 5), (x + 18, y + 5)],
                    WHITE.filled(),
                ))?;
                area.draw(&Rectangle::new(
                    [(x + 8, y - 5), (x + 18, y + 5)],
                    INK.stroke_width(2),
                ))?;
            }
            LegendKey::Clean => {
                area.draw(&Circle::new((x + 13, y), 5, WHITE.filled()))?;
                area.draw(&Circle::new((x + 13, y), 5, INK.stroke_width(2)))?;
            }
            LegendKey::Swatch(color) => {
                area.draw(&Rectangle::new(
                    [(x + 6, y - 7), (x + 20, y + 7)],
                    color.filled(),
                ))?;
            }
        }
        area.draw(&Text::new(
            shorten(label, 22),
            (x + 36, y),
            text_style.clone(),
        ))?;
    }
    Ok(())
}

/// The accuracy axis runs slightly past [0, 1] so markers at exactly 0% or 100% are not cut in
/// half; its ticks (0%, 20%, …, 100%) come from `y_labels(6)`.
const ACCURACY_AXIS: std::ops::Range<f64> = -0.03..1.03;

// ---------------------------------------------------------------------------------------------
// (a) Robust accuracy vs ε

/// One line of the accuracy chart: a label and its (ε, accuracy) points in ascending ε.
struct Curve {
    name: String,
    points: Vec<(f64, Proportion)>,
}

/// Norms in the order they first appear in the report (attacks first, then worst cases).
fn norms(report: &RunReport) -> Vec<String> {
    let mut norms: Vec<String> = Vec::new();
    let all = report
        .attacks
        .iter()
        .map(|a| &a.norm)
        .chain(report.worst_case.iter().map(|w| &w.norm));
    for norm in all {
        if !norms.contains(norm) {
            norms.push(norm.clone());
        }
    }
    norms
}

/// The robust-accuracy-vs-ε charts, one per norm.
pub(crate) fn accuracy_plots(report: &RunReport) -> Result<Vec<NamedPng>, ReportError> {
    norms(report)
        .iter()
        .map(|norm| accuracy_plot(report, norm))
        .collect()
}

fn accuracy_plot(report: &RunReport, norm: &str) -> Result<NamedPng, ReportError> {
    let clean = report.clean.accuracy;
    // Every attack curve starts at the clean point: at ε = 0 no input can be changed.
    let mut curves: Vec<Curve> = Vec::new();
    for attack in report.attacks.iter().filter(|a| a.norm == norm) {
        match curves.iter_mut().find(|c| c.name == attack.label) {
            Some(curve) => curve.points.push((attack.epsilon, attack.robust_accuracy)),
            None => curves.push(Curve {
                name: attack.label.clone(),
                points: vec![(0.0, clean), (attack.epsilon, attack.robust_accuracy)],
            }),
        }
    }
    let mut worst: Vec<(f64, Proportion)> = report
        .worst_case
        .iter()
        .filter(|w| w.norm == norm)
        .map(|w| (w.epsilon, w.robust_accuracy))
        .collect();
    if !worst.is_empty() {
        worst.insert(0, (0.0, clean));
    }
    for curve in &mut curves {
        curve.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    worst.sort_by(|a, b| a.0.total_cmp(&b.0));
    let title = format!("Robust accuracy vs ε ({norm})");
    let file_name = format!("robust_accuracy_{}.png", file_stem(norm));
    accuracy_chart(norm, title, file_name, &curves, &worst, Some(clean))
}

/// The worst case over every attack against ε, one line per cell of a matrix run (each from its
/// own clean accuracy at ε = 0), one chart per norm: the models side by side.
pub(crate) fn matrix_accuracy_plots(
    matrix: &crate::matrix::MatrixReport,
) -> Result<Vec<NamedPng>, ReportError> {
    let mut norms: Vec<String> = Vec::new();
    for cell in &matrix.cells {
        for worst in &cell.report.worst_case {
            if !norms.contains(&worst.norm) {
                norms.push(worst.norm.clone());
            }
        }
    }
    norms
        .iter()
        .map(|norm| {
            let curves: Vec<Curve> = matrix
                .cells
                .iter()
                .filter(|cell| cell.report.worst_case.iter().any(|w| &w.norm == norm))
                .map(|cell| {
                    let mut points: Vec<(f64, Proportion)> = cell
                        .report
                        .worst_case
                        .iter()
                        .filter(|w| &w.norm == norm)
                        .map(|w| (w.epsilon, w.robust_accuracy))
                        .collect();
                    points.push((0.0, cell.report.clean.accuracy));
                    points.sort_by(|a, b| a.0.total_cmp(&b.0));
                    Curve {
                        name: cell.id.clone(),
                        points,
                    }
                })
                .collect();
            accuracy_chart(
                norm,
                format!("Worst case vs ε across models ({norm})"),
                format!("matrix_worst_case_{}.png", file_stem(norm)),
                &curves,
                &[],
                None,
            )
        })
        .collect()
}

/// The accuracy-vs-ε chart: `curves` (each starting at ε = 0), the dashed `worst` case when
/// there is one, and the `clean` point when all curves share it.
fn accuracy_chart(
    norm: &str,
    title: String,
    file_name: String,
    curves: &[Curve],
    worst: &[(f64, Proportion)],
    clean: Option<Proportion>,
) -> Result<NamedPng, ReportError> {
    let max_eps = curves
        .iter()
        .flat_map(|c| c.points.iter())
        .chain(worst.iter())
        .map(|(eps, _)| *eps)
        .fold(0.0_f64, f64::max);
    let x_max = if max_eps > 0.0 { max_eps * 1.06 } else { 1.0 };
    let x_min = -x_max * 0.03;
    let cap = x_max * 0.008;

    let mut legend: Vec<(LegendKey, String)> = curves
        .iter()
        .enumerate()
        .map(|(i, curve)| {
            let key = LegendKey::Line {
                color: PALETTE[i % PALETTE.len()],
                shape: MARKER_SHAPES[i % MARKER_SHAPES.len()],
            };
            (key, curve.name.clone())
        })
        .collect();
    if !worst.is_empty() {
        legend.push((LegendKey::Dashed, "worst case".to_owned()));
    }
    if let Some(clean) = clean {
        legend.push((
            LegendKey::Clean,
            format!("clean ({})", percent(clean.value)),
        ));
    }

    let png = render_png(&file_name, (900, 460), None, |root| {
        root.fill(&WHITE)?;
        let body = root.titled(&title, (FONT, 20).into_font().color(&INK))?;
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
            .x_desc(format!("ε ({norm} radius)"))
            .y_desc("accuracy")
            .x_label_formatter(&|v| significant(*v, 3))
            .y_labels(6)
            .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
            .label_style((FONT, 13).into_font().color(&INK))
            .axis_desc_style((FONT, 14).into_font().color(&INK))
            .draw()?;

        // The worst case first and thickest, so attack lines drawn over it stay visible and
        // its dashes show on both sides of the attack it coincides with.
        if !worst.is_empty() {
            chart.draw_series(
                worst
                    .iter()
                    .skip(1)
                    .map(|(eps, p)| error_bar(*eps, p, cap * 1.4, INK.stroke_width(1))),
            )?;
            chart.draw_series(DashedLineSeries::new(
                worst.iter().map(|(eps, p)| (*eps, p.value)),
                10,
                6,
                INK.stroke_width(4),
            ))?;
            chart.draw_series(worst.iter().skip(1).map(|(eps, p)| {
                EmptyElement::at((*eps, p.value))
                    + Rectangle::new([(-6, -6), (6, 6)], WHITE.filled())
                    + Rectangle::new([(-6, -6), (6, 6)], INK.stroke_width(2))
            }))?;
        }

        for (i, curve) in curves.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let shape = MARKER_SHAPES[i % MARKER_SHAPES.len()];
            chart.draw_series(
                curve
                    .points
                    .iter()
                    .map(|(eps, p)| error_bar(*eps, p, cap, color.mix(0.6).stroke_width(1))),
            )?;
            chart.draw_series(LineSeries::new(
                curve.points.iter().map(|(eps, p)| (*eps, p.value)),
                color.stroke_width(2),
            ))?;
            chart.draw_series(curve.points.iter().skip(usize::from(clean.is_some())).map(
                |(eps, p)| Marker {
                    at: (*eps, p.value),
                    shape,
                    radius: 4,
                    style: color.filled(),
                },
            ))?;
        }

        // The clean point last, on top of every line that starts there.
        if let Some(clean) = clean {
            chart.draw_series(std::iter::once(error_bar(
                0.0,
                &clean,
                cap * 1.4,
                INK.stroke_width(1),
            )))?;
            chart.draw_series(std::iter::once(
                EmptyElement::at((0.0, clean.value))
                    + Circle::new((0, 0), 6, WHITE.filled())
                    + Circle::new((0, 0), 6, INK.stroke_width(2)),
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

// ---------------------------------------------------------------------------------------------
// (b) Per-class accuracy

/// One bar group member: a name and one accuracy per class.
pub(crate) struct ClassSeries {
    pub name: String,
    pub per_class: Vec<ClassAccuracy>,
}

/// What the per-class chart compares: clean accuracy, then the worst case at the largest ε of
/// each norm (the number a reviewer gates on). A report without worst-case results falls back to
/// each attack at its largest ε.
pub(crate) fn per_class_series(report: &RunReport) -> Vec<ClassSeries> {
    let mut series = vec![ClassSeries {
        name: "clean".to_owned(),
        per_class: report.clean.per_class.clone(),
    }];
    if report.worst_case.is_empty() {
        let mut labels: Vec<&str> = Vec::new();
        for attack in &report.attacks {
            if !labels.contains(&attack.label.as_str()) {
                labels.push(&attack.label);
            }
        }
        for label in labels {
            let largest = report
                .attacks
                .iter()
                .filter(|a| a.label == label)
                .max_by(|a, b| a.epsilon.total_cmp(&b.epsilon));
            if let Some(attack) = largest {
                series.push(ClassSeries {
                    name: format!("{label} ε={}", significant(attack.epsilon, 4)),
                    per_class: attack.per_class.clone(),
                });
            }
        }
    } else {
        for norm in norms(report) {
            let largest = report
                .worst_case
                .iter()
                .filter(|w| w.norm == norm)
                .max_by(|a, b| a.epsilon.total_cmp(&b.epsilon));
            if let Some(worst) = largest {
                series.push(ClassSeries {
                    name: format!("worst case {norm} ε={}", significant(worst.epsilon, 4)),
                    per_class: worst.per_class.clone(),
                });
            }
        }
    }
    series.retain(|s| !s.per_class.is_empty());
    series
}

/// Grouped bars, one group per class, or `None` when the report has no per-class results.
pub(crate) fn per_class_plot(report: &RunReport) -> Result<Option<NamedPng>, ReportError> {
    let series = per_class_series(report);
    // Classes named by index, in ascending order, from every series (they normally agree).
    let mut classes: Vec<(usize, String)> = Vec::new();
    for s in &series {
        for class in &s.per_class {
            if !classes.iter().any(|(index, _)| *index == class.class) {
                classes.push((class.class, class.name.clone()));
            }
        }
    }
    if classes.is_empty() {
        return Ok(None);
    }
    classes.sort_by_key(|(index, _)| *index);

    let groups = series.len() as f64;
    let group_width = 0.8;
    let bar_width = group_width / groups;
    let n = classes.len();
    let tick_names: Vec<String> = classes.iter().map(|(_, name)| shorten(name, 14)).collect();
    // Wide enough for every class name under its group where that fits in 1600 pixels;
    // otherwise only every k-th name is drawn (see below).
    ensure_fonts()?;
    let tick_font = (FONT, 12).into_font();
    let widest_name = tick_names
        .iter()
        .map(|name| tick_font.box_size(name).map(|(w, _)| w).unwrap_or(0))
        .max()
        .unwrap_or(0);
    let slot = (widest_name + 10).max(56);
    let width = (160 + slot * n as u32).clamp(760, 1600) + LEGEND_WIDTH;
    let title = "Per-class accuracy".to_owned();
    let file_name = "per_class_accuracy.png".to_owned();

    let color_of = |g: usize| {
        // Clean in dark grey, then the palette: the comparison reads as "grey → colour".
        if g == 0 {
            CLEAN_BAR
        } else {
            PALETTE[(g - 1) % PALETTE.len()]
        }
    };
    let legend: Vec<(LegendKey, String)> = series
        .iter()
        .enumerate()
        .map(|(g, s)| (LegendKey::Swatch(color_of(g)), s.name.clone()))
        .collect();

    let png = render_png(&file_name, (width, 440), None, |root| {
        root.fill(&WHITE)?;
        let body = root.titled(&title, (FONT, 20).into_font().color(&INK))?;
        let (plot_area, legend_area) = body.split_horizontally(width - LEGEND_WIDTH);
        let x_axis = -0.5..n as f64 - 0.5;
        let mut chart = ChartBuilder::on(&plot_area)
            .margin(14)
            .margin_top(6)
            .x_label_area_size(46)
            .y_label_area_size(60)
            .build_cartesian_2d(x_axis, ACCURACY_AXIS)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .disable_x_mesh()
            .axis_style(INK)
            .x_desc("class")
            .y_desc("accuracy")
            // Class names are drawn below, one per group centre; plotters' automatic ticks would
            // land between groups.
            .x_labels(0)
            .y_labels(6)
            .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
            .label_style((FONT, 13).into_font().color(&INK))
            .axis_desc_style((FONT, 14).into_font().color(&INK))
            .draw()?;

        for (g, s) in series.iter().enumerate() {
            let color = color_of(g);
            let bars: Vec<(f64, Proportion)> = s
                .per_class
                .iter()
                .filter_map(|class| {
                    let slot = classes
                        .iter()
                        .position(|(index, _)| *index == class.class)?;
                    let left = slot as f64 - group_width / 2.0 + g as f64 * bar_width;
                    Some((left, class.accuracy))
                })
                .collect();
            chart.draw_series(bars.iter().map(|(left, p)| {
                Rectangle::new(
                    [(*left + 0.01, 0.0), (*left + bar_width - 0.01, p.value)],
                    color.filled(),
                )
            }))?;
            chart.draw_series(bars.iter().map(|(left, p)| {
                error_bar(
                    left + bar_width / 2.0,
                    p,
                    bar_width * 0.2,
                    INK.stroke_width(1),
                )
            }))?;
        }

        // Label every class if there is room, else every k-th one (about 90 px per label).
        let (left_px, y_px) = chart.backend_coord(&(0.0, ACCURACY_AXIS.start));
        let (right_px, _) = chart.backend_coord(&((n - 1) as f64, ACCURACY_AXIS.start));
        let slot_px = f64::from((right_px - left_px).max(1)) / (n.max(2) - 1) as f64;
        let tick_style = TextStyle::from(tick_font.clone())
            .color(&INK)
            .pos(Pos::new(HPos::Center, VPos::Top));
        let widest = tick_names
            .iter()
            .map(|name| root.estimate_text_size(name, &tick_style).map(|(w, _)| w))
            .collect::<Result<Vec<u32>, _>>()?
            .into_iter()
            .max()
            .unwrap_or(0);
        let every = ((f64::from(widest + 10) / slot_px).ceil() as usize).max(1);
        for (slot, name) in tick_names.iter().enumerate().step_by(every) {
            let (x, _) = chart.backend_coord(&(slot as f64, ACCURACY_AXIS.start));
            root.draw(&PathElement::new(vec![(x, y_px), (x, y_px + 4)], INK))?;
            root.draw(&Text::new(name.clone(), (x, y_px + 7), tick_style.clone()))?;
        }
        draw_legend(&legend_area, &legend)?;
        Ok(())
    })?;
    Ok(Some(NamedPng {
        file_name,
        title,
        png,
    }))
}

// ---------------------------------------------------------------------------------------------
// (c) Adversarial gallery

/// A gallery tile with what the HTML caption needs to describe it.
pub(crate) struct ExampleTile {
    pub png: NamedPng,
    /// Largest |adversarial − original| over all pixels and channels.
    pub max_abs_delta: f32,
}

/// Side of each upscaled panel aimed for, in pixels.
const PANEL_TARGET: usize = 112;
/// Largest side of a panel: a larger image is shown subsampled (every k-th pixel), so a tile's
/// buffer stays under 3 × 512 × 512 RGB pixels whatever the example's shape. Without it a
/// 1 × 1 × 10⁶ example drew a 3,000,000-pixel-wide tile.
const MAX_PANEL_SIDE: usize = 512;
const TILE_MARGIN: usize = 6;
const TILE_GAP: usize = 10;
const TILE_CAPTION: usize = 24;

/// One tile per example: original | amplified perturbation | adversarial.
pub(crate) fn example_tiles(report: &RunReport) -> Result<Vec<ExampleTile>, ReportError> {
    report
        .examples
        .iter()
        .enumerate()
        .map(|(i, example)| example_tile(i, example))
        .collect()
}

fn example_tile(i: usize, example: &AdversarialExample) -> Result<ExampleTile, ReportError> {
    let dims = example_dims(&format!("examples[{i}]"), example)?;
    let side = dims.height.max(dims.width);
    let scale = ((PANEL_TARGET + side / 2) / side).max(1);
    // Subsampling step: 1 unless the image is larger than a panel may be.
    let step = side.div_ceil(MAX_PANEL_SIDE).max(1);
    let panel_w = dims.width.div_ceil(step) * scale;
    let panel_h = dims.height.div_ceil(step) * scale;
    let width = 2 * TILE_MARGIN + 3 * panel_w + 2 * TILE_GAP;
    let height = 2 * TILE_MARGIN + TILE_CAPTION + panel_h;

    let max_abs_delta = example
        .original
        .iter()
        .zip(&example.adversarial)
        .map(|(o, a)| (a - o).abs())
        .fold(0.0_f32, f32::max);
    // δ ↦ 0.5 + δ·gain puts the largest |δ| at black or white and "no change" at mid-grey.
    let gain = if max_abs_delta > 0.0 {
        0.5 / max_abs_delta
    } else {
        0.0
    };
    let delta: Vec<f32> = example
        .original
        .iter()
        .zip(&example.adversarial)
        .map(|(o, a)| 0.5 + (a - o) * gain)
        .collect();

    let mut rgb = vec![255_u8; width * height * 3];
    let top = TILE_MARGIN + TILE_CAPTION;
    for (k, pixels) in [&example.original, &delta, &example.adversarial]
        .into_iter()
        .enumerate()
    {
        let left = TILE_MARGIN + k * (panel_w + TILE_GAP);
        blit(
            &mut rgb,
            width,
            (left, top),
            pixels,
            dims,
            Sampling { scale, step },
        );
    }

    let captions = [
        "original".to_owned(),
        if max_abs_delta > 0.0 {
            format!("δ ×{}", significant(f64::from(gain), 3))
        } else {
            "δ = 0".to_owned()
        },
        "adversarial".to_owned(),
    ];
    let name = format!("example_{:02}.png", i + 1);
    let png = render_png(&name, (width as u32, height as u32), Some(rgb), |root| {
        for (k, caption) in captions.iter().enumerate() {
            let center = (TILE_MARGIN + k * (panel_w + TILE_GAP) + panel_w / 2) as i32;
            let style = TextStyle::from((FONT, 13).into_font())
                .color(&INK)
                .pos(Pos::new(HPos::Center, VPos::Top));
            root.draw(&Text::new(
                caption.clone(),
                (center, TILE_MARGIN as i32 + 2),
                style,
            ))?;
        }
        Ok(())
    })?;
    Ok(ExampleTile {
        png: NamedPng {
            file_name: name,
            title: format!(
                "Example {} (sample #{}): {} at ε = {}",
                i + 1,
                example.index,
                example.attack,
                significant(example.epsilon, 4)
            ),
            png,
        },
        max_abs_delta,
    })
}

/// How source pixels map to panel pixels: panel pixel `p` shows source pixel `p * step / scale`.
/// One of the two is 1: small images are upscaled, images past [`MAX_PANEL_SIDE`] subsampled.
#[derive(Debug, Clone, Copy)]
struct Sampling {
    scale: usize,
    step: usize,
}

/// Copies a C×H×W image in [0, 1] into an RGB buffer at `(left, top)`, each source pixel becoming
/// a `scale × scale` block, or every `step`-th source pixel kept (nearest neighbour either way:
/// no smoothing that would hide a perturbation).
fn blit(
    rgb: &mut [u8],
    buffer_width: usize,
    (left, top): (usize, usize),
    pixels: &[f32],
    dims: ImageDims,
    Sampling { scale, step }: Sampling,
) {
    let plane = dims.height * dims.width;
    let byte = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    for y in 0..dims.height.div_ceil(step) * scale {
        for x in 0..dims.width.div_ceil(step) * scale {
            let source = (y * step / scale) * dims.width + x * step / scale;
            let color = if dims.channels == 1 {
                let v = byte(pixels[source]);
                [v, v, v]
            } else {
                [
                    byte(pixels[source]),
                    byte(pixels[plane + source]),
                    byte(pixels[2 * plane + source]),
                ]
            };
            let at = ((top + y) * buffer_width + left + x) * 3;
            rgb[at..at + 3].copy_from_slice(&color);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(file_stem("L-inf"), "l-inf");
        assert_eq!(file_stem("../<x>"), "____x_");
        assert_eq!(file_stem(""), "unnamed");
    }

    #[test]
    fn shorten_adds_ellipsis() {
        assert_eq!(shorten("airplane", 12), "airplane");
        assert_eq!(shorten("a very long class name", 8), "a very …");
    }

    fn decode_rgb(png_bytes: &[u8]) -> (usize, Vec<u8>) {
        let mut reader = png::Decoder::new(png_bytes).read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut pixels).unwrap();
        (info.width as usize, pixels)
    }

    #[test]
    fn tile_panels_hold_original_amplified_delta_and_adversarial() {
        // 1×2×2 image; δ = [+0.1, −0.1, 0, +0.05] → gain 0.5 / 0.1 = 5 → grey levels
        // [1.0, 0.0, 0.5, 0.75] → bytes [255, 0, 128, 191].
        let original = vec![0.2_f32, 0.6, 0.4, 0.9];
        let adversarial = vec![0.3_f32, 0.5, 0.4, 0.95];
        let example = AdversarialExample {
            index: 3,
            attack: "pgd".to_owned(),
            epsilon: 0.1,
            true_label: 0,
            clean_prediction: 0,
            adversarial_prediction: 1,
            shape: vec![1, 2, 2],
            original: original.clone(),
            adversarial: adversarial.clone(),
        };
        let tile = example_tile(0, &example).unwrap();
        assert!((tile.max_abs_delta - 0.1).abs() < 1e-6);
        let (width, pixels) = decode_rgb(&tile.png.png);
        let scale = 56; // (112 + 1) / 2
        let panel = 2 * scale;
        let top = TILE_MARGIN + TILE_CAPTION;
        let grey_at = |k: usize, row: usize, col: usize| {
            // Centre of source pixel (row, col) in panel k.
            let x = TILE_MARGIN + k * (panel + TILE_GAP) + col * scale + scale / 2;
            let y = top + row * scale + scale / 2;
            let at = (y * width + x) * 3;
            assert_eq!(pixels[at], pixels[at + 1], "grey");
            pixels[at]
        };
        let byte = |v: f32| (v * 255.0).round() as u8;
        let expected_delta = [255, 0, 128, 191];
        for i in 0..4 {
            let (row, col) = (i / 2, i % 2);
            assert_eq!(grey_at(0, row, col), byte(original[i]), "original {i}");
            assert_eq!(grey_at(1, row, col), expected_delta[i], "delta {i}");
            assert_eq!(
                grey_at(2, row, col),
                byte(adversarial[i]),
                "adversarial {i}"
            );
        }
    }

    fn example_of_shape(shape: [usize; 3]) -> AdversarialExample {
        let len = shape.iter().product();
        AdversarialExample {
            index: 0,
            attack: "pgd".to_owned(),
            epsilon: 0.1,
            true_label: 0,
            clean_prediction: 0,
            adversarial_prediction: 1,
            shape: shape.to_vec(),
            original: (0..len).map(|i| (i % 7) as f32 / 7.0).collect(),
            adversarial: (0..len).map(|i| (i % 5) as f32 / 5.0).collect(),
        }
    }

    /// A long thin example (the shape of a hostile results.json) draws a tile no larger than
    /// three [`MAX_PANEL_SIDE`] panels, not one as wide as the image.
    #[test]
    fn a_huge_example_is_drawn_subsampled_into_bounded_panels() {
        for shape in [[1, 1, 1_000_000], [3, 600, 900], [1, 3000, 2]] {
            let tile = example_tile(0, &example_of_shape(shape)).unwrap();
            let mut reader = png::Decoder::new(tile.png.png.as_slice())
                .read_info()
                .unwrap();
            let info = reader.info();
            let max_width = 2 * TILE_MARGIN + 3 * MAX_PANEL_SIDE + 2 * TILE_GAP;
            let max_height = 2 * TILE_MARGIN + TILE_CAPTION + MAX_PANEL_SIDE;
            assert!(
                info.width as usize <= max_width,
                "{shape:?}: {}",
                info.width
            );
            assert!(
                info.height as usize <= max_height,
                "{shape:?}: {}",
                info.height
            );
            let mut pixels = vec![0; reader.output_buffer_size()];
            reader.next_frame(&mut pixels).unwrap();
        }
    }

    #[test]
    fn subsampling_keeps_every_step_th_pixel() {
        // 1×1×4 image [0, 1, 0, 1] with step 2 → two panel pixels, both source pixels 0 and 2.
        let dims = ImageDims {
            channels: 1,
            height: 1,
            width: 4,
        };
        let mut rgb = vec![7_u8; 2 * 3];
        blit(
            &mut rgb,
            2,
            (0, 0),
            &[0.0, 1.0, 0.0, 1.0],
            dims,
            Sampling { scale: 1, step: 2 },
        );
        assert_eq!(rgb, [0; 6]);
    }

    #[test]
    fn upscaling_is_nearest_neighbour() {
        // 1×1×2 image [0, 1] at scale 2 → a 4×2 block: two black columns then two white ones.
        let dims = ImageDims {
            channels: 1,
            height: 1,
            width: 2,
        };
        let mut rgb = vec![7_u8; 4 * 2 * 3];
        blit(
            &mut rgb,
            4,
            (0, 0),
            &[0.0, 1.0],
            dims,
            Sampling { scale: 2, step: 1 },
        );
        let row = [0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255];
        assert_eq!(&rgb[..12], &row);
        assert_eq!(&rgb[12..], &row);
    }
}
