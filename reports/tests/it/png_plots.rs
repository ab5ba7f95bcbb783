use gauntlet_reports::{
    render_plots, write_plots, AdversarialExample, NamedPng, ReportError, RunReport,
};

use crate::fixture;

pub const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];

/// Decodes an 8-bit RGB PNG into (width, height, pixels).
pub fn decode(png: &[u8]) -> (u32, u32, Vec<u8>) {
    assert!(png.starts_with(&PNG_SIGNATURE), "missing PNG signature");
    let mut reader = png::Decoder::new(png).read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    pixels.truncate(info.buffer_size());
    (info.width, info.height, pixels)
}

fn count_color(pixels: &[u8], rgb: [u8; 3]) -> usize {
    pixels.chunks_exact(3).filter(|p| *p == rgb).count()
}

fn plot<'a>(plots: &'a [NamedPng], file_name: &str) -> &'a NamedPng {
    plots
        .iter()
        .find(|p| p.file_name == file_name)
        .unwrap_or_else(|| panic!("no {file_name} among {:?}", names(plots)))
}

fn names(plots: &[NamedPng]) -> Vec<&str> {
    plots.iter().map(|p| p.file_name.as_str()).collect()
}

#[test]
fn one_chart_per_norm_one_per_class_chart_and_one_tile_per_example() {
    let plots = render_plots(&fixture::report()).unwrap();
    assert_eq!(
        names(&plots),
        [
            "robust_accuracy_linf.png",
            "per_class_accuracy.png",
            "example_01.png",
            "example_02.png",
            "example_03.png"
        ]
    );
    for plot in &plots {
        let (width, height, pixels) = decode(&plot.png);
        assert!(
            width >= 300 && height >= 100,
            "{}: {width}×{height}",
            plot.file_name
        );
        assert_eq!(pixels.len(), width as usize * height as usize * 3);
        assert!(!plot.title.is_empty());
    }
}

#[test]
fn accuracy_chart_draws_lines_and_text() {
    let plots = render_plots(&fixture::report()).unwrap();
    let (width, height, pixels) = decode(&plot(&plots, "robust_accuracy_linf.png").png);
    assert_eq!((width, height), (900, 460));
    // The first series (fgsm) is drawn in the first palette colour, the worst case in ink.
    assert!(
        count_color(&pixels, [0, 114, 178]) > 200,
        "fgsm line missing"
    );
    assert!(
        count_color(&pixels, [230, 159, 0]) > 200,
        "pgd line missing"
    );
    assert!(
        count_color(&pixels, [34, 34, 34]) > 500,
        "axes, text and worst case missing"
    );
    // The title row holds rendered glyphs: the font was found.
    let title_band = &pixels[..(width as usize * 30 * 3)];
    assert!(
        title_band.chunks_exact(3).any(|p| p[0] < 128),
        "no text in the title band: font not registered?"
    );
}

#[test]
fn per_class_chart_has_clean_and_worst_case_bars() {
    let plots = render_plots(&fixture::report()).unwrap();
    let (_, _, pixels) = decode(&plot(&plots, "per_class_accuracy.png").png);
    assert!(
        count_color(&pixels, [110, 110, 110]) > 1000,
        "clean bars missing"
    );
    assert!(
        count_color(&pixels, [0, 114, 178]) > 100,
        "worst-case bars missing"
    );
}

#[test]
fn gallery_tile_shows_three_upscaled_panels() {
    let report = fixture::report();
    let plots = render_plots(&report).unwrap();
    let (width, height, pixels) = decode(&plot(&plots, "example_01.png").png);
    // Three 112-pixel panels (28 × 4) side by side, plus margins and a caption row.
    assert!(width > 3 * 112 && width < 3 * 112 + 60, "width {width}");
    assert!(height > 112 && height < 112 + 60, "height {height}");
    // The perturbation panel maps δ = 0 to mid-grey (128) and the extremes to 0 / 255.
    assert!(
        count_color(&pixels, [128, 128, 128]) >= 16 * 16,
        "no δ = 0 area"
    );
    assert!(count_color(&pixels, [0, 0, 0]) > 0);
}

#[test]
fn write_plots_writes_the_rendered_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let report = fixture::report();
    let paths = write_plots(&report, dir.path()).unwrap();
    let plots = render_plots(&report).unwrap();
    assert_eq!(paths.len(), plots.len());
    for (path, plot) in paths.iter().zip(&plots) {
        assert_eq!(path.file_name().unwrap().to_str().unwrap(), plot.file_name);
        assert_eq!(
            std::fs::read(path).unwrap(),
            plot.png,
            "rendering is deterministic"
        );
    }
}

#[test]
fn a_second_norm_gets_its_own_chart() {
    let mut report = fixture::report();
    let mut l2 = report.attacks[3].clone();
    l2.label = "pgd_l2".to_owned();
    l2.norm = "l2".to_owned();
    l2.epsilon = 1.5;
    report.attacks.push(l2);
    let plots = render_plots(&report).unwrap();
    plot(&plots, "robust_accuracy_linf.png");
    plot(&plots, "robust_accuracy_l2.png");
}

#[test]
fn rgb_examples_render_in_colour() {
    let mut report = fixture::report();
    // 3×8×8: red channel 1, others 0 → a pure red original panel.
    let mut original = vec![0.0_f32; 3 * 64];
    original[..64].fill(1.0);
    let mut adversarial = original.clone();
    adversarial[64] = 0.05;
    report.examples = vec![AdversarialExample {
        index: 0,
        attack: "pgd".to_owned(),
        epsilon: 0.05,
        true_label: 0,
        clean_prediction: 0,
        adversarial_prediction: 2,
        shape: vec![3, 8, 8],
        original,
        adversarial,
    }];
    let plots = render_plots(&report).unwrap();
    let (_, _, pixels) = decode(&plot(&plots, "example_01.png").png);
    // 8 × 14 = 112 pixels a side, all red in the original panel (and most of the adversarial).
    assert!(
        count_color(&pixels, [255, 0, 0]) >= 112 * 112,
        "red panel missing"
    );
}

#[test]
fn two_channel_example_is_refused() {
    let mut report = fixture::report();
    report.examples[2].shape = vec![2, 28, 14];
    match render_plots(&report).unwrap_err() {
        ReportError::InvalidReport { field, .. } => assert_eq!(field, "examples[2].shape"),
        other => panic!("expected InvalidReport, got {other:?}"),
    }
}

/// A report with nothing but a clean result still renders (no charts to draw).
pub fn bare_report() -> RunReport {
    let mut report = fixture::report();
    report.attacks.clear();
    report.worst_case.clear();
    report.examples.clear();
    report.gates.clear();
    report.sanity_checks.clear();
    report.clean.per_class.clear();
    report
}

#[test]
fn bare_report_has_no_plots() {
    assert!(render_plots(&bare_report()).unwrap().is_empty());
}
