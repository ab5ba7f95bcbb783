use base64::Engine as _;
use gauntlet_reports::{render_html, write_html, CheckStatus, CONTENT_SECURITY_POLICY};

use crate::fixture;
use crate::png_plots::{bare_report, decode};

fn page() -> String {
    render_html(&fixture::report()).unwrap()
}

/// Every value of `attribute="…"` in the page.
fn attribute_values<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let needle = format!("{attribute}=\"");
    html.match_indices(&needle)
        .map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect()
}

#[test]
fn page_references_nothing_outside_itself() {
    let html = page();
    let lower = html.to_ascii_lowercase();
    for forbidden in [
        "http://", "https://", "src=\"/", "<script", "<link", "@import", "url(", "<iframe",
        "<object", "<embed",
    ] {
        assert!(!lower.contains(forbidden), "page contains `{forbidden}`");
    }
    let sources = attribute_values(&html, "src");
    // One accuracy chart (one norm), the per-class chart and three gallery tiles.
    assert_eq!(sources.len(), 5);
    for source in sources {
        assert!(
            source.starts_with("data:image/png;base64,"),
            "{}",
            &source[..40.min(source.len())]
        );
    }
    for href in attribute_values(&html, "href") {
        assert!(href.starts_with('#'), "external link {href}");
    }
    assert!(html.contains(CONTENT_SECURITY_POLICY));
}

#[test]
fn embedded_images_decode_as_png() {
    let html = page();
    for source in attribute_values(&html, "src") {
        let payload = source.strip_prefix("data:image/png;base64,").unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(payload)
            .unwrap();
        let (width, height, _) = decode(&bytes);
        assert!(width > 0 && height > 0);
    }
}

#[test]
fn user_strings_are_escaped() {
    let html = page();
    assert!(
        html.contains("&lt;b&gt;&amp;&quot;seven&quot;"),
        "escaped class name missing"
    );
    assert!(
        !html.contains("<b>"),
        "raw <b> from a class name reached the page"
    );
    assert!(!html.contains(fixture::HOSTILE_CLASS_NAME));
    assert!(html.contains("suites/&lt;script&gt;alert(1)&lt;/script&gt;.toml"));
    assert!(!html.contains("<script"));
    assert!(html.contains("o&#39;brien&#39;s mnist-cnn.safetensors"));
    assert!(
        html.contains("&quot;pgd&quot; beats &quot;fgsm&quot;"),
        "sanity detail escaped"
    );
    assert!(html.contains("more steps &amp; restarts"));
}

#[test]
fn sections_come_in_reading_order() {
    let html = page();
    let position = |needle: &str| {
        html.find(needle)
            .unwrap_or_else(|| panic!("`{needle}` missing from the page"))
    };
    let order = [
        "<header>",
        "class=\"verdict",
        "id=\"summary\"",
        "id=\"gates\"",
        "id=\"sanity\"",
        "id=\"curves\"",
        "id=\"per-class\"",
        "id=\"gallery\"",
        "id=\"timings\"",
    ];
    let positions: Vec<usize> = order.iter().map(|n| position(n)).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "{order:?} at {positions:?}"
    );
}

#[test]
fn header_names_the_run() {
    let html = page();
    for needle in [
        "mnist-linf-smoke",
        "mnist-cnn",
        "small_cnn",
        "mnist-test",
        "20240611",
        "<code>cpu</code>",
        "gauntlet 0.1.0",
        "3f7a9c0d2b51e8f4",
    ] {
        assert!(html.contains(needle), "`{needle}` missing");
    }
}

#[test]
fn verdict_counts_the_failed_gate() {
    let html = page();
    let report = fixture::report();
    assert_eq!(
        report.gates.iter().filter(|g| !g.passed).count(),
        1,
        "fixture has one failing gate"
    );
    assert!(
        html.contains("<strong>FAILED</strong>1 of 3 gates failed."),
        "verdict"
    );
    assert!(html.contains("Sanity checks: 3 passed, 1 warning, 0 failed."));
}

#[test]
fn verdict_passes_when_every_gate_passes() {
    let mut report = fixture::report();
    for gate in &mut report.gates {
        gate.passed = true;
    }
    let html = render_html(&report).unwrap();
    assert!(html.contains("<strong>PASSED</strong>All 3 gates passed."));
}

#[test]
fn sanity_failure_makes_the_run_unreliable_even_if_gates_pass() {
    let mut report = fixture::report();
    for gate in &mut report.gates {
        gate.passed = true;
    }
    report.sanity_checks[0].status = CheckStatus::Fail;
    let html = render_html(&report).unwrap();
    assert!(html.contains("<strong>UNRELIABLE</strong>1 sanity check failed"));
    // The failure is listed first in the sanity table.
    let sanity = &html[html.find("id=\"sanity\"").unwrap()..];
    let fail = sanity.find("badge fail").unwrap();
    let pass = sanity.find("badge pass").unwrap();
    assert!(fail < pass);
}

#[test]
fn summary_shows_percentages_with_one_decimal_and_plus_minus() {
    let report = fixture::report();
    let html = page();
    let clean = &report.clean.accuracy;
    assert!(html.contains(&format!(">{:.1}%</td>", clean.value * 100.0)));
    for attack in &report.attacks {
        let p = &attack.robust_accuracy;
        assert!(
            html.contains(&format!(">{:.1}%</td>", p.value * 100.0)),
            "{}",
            attack.label
        );
        let up = format!("{:.1}", (p.ci95_high - p.value) * 100.0);
        let down = format!("{:.1}", (p.value - p.ci95_low) * 100.0);
        let expected = if up == down {
            format!("±{up}")
        } else {
            format!("+{up} / −{down}")
        };
        assert!(html.contains(&expected), "{} CI {expected}", attack.label);
    }
}

#[test]
fn failing_gate_says_how_far_off() {
    let report = fixture::report();
    let html = page();
    let gate = report.gates.iter().find(|g| !g.passed).unwrap();
    let pp = (gate.threshold - gate.actual) * 100.0;
    assert!(html.contains(&format!("misses it by {pp:.1} pp")), "{pp}");
    assert!(html.contains("<code>min_robust_accuracy[worst_case@0.3]</code>"));
}

#[test]
fn gallery_names_true_and_predicted_classes() {
    let html = page();
    let gallery = &html[html.find("id=\"gallery\"").unwrap()..html.find("id=\"attacks\"").unwrap()];
    assert_eq!(gallery.matches("<figure>").count(), 3);
    assert!(gallery.contains("<th>true</th><td>&lt;b&gt;&amp;&quot;seven&quot;"));
    assert!(gallery.contains("<th>true</th><td>three"));
    assert!(gallery.contains("<th>adversarial</th><td>eight"));
    assert!(gallery.contains("(misclassified)"));
    assert!(gallery.contains("(still correct)"));
    assert!(gallery.contains("largest |δ| spans the full grey range"));
}

#[test]
fn rendering_is_a_pure_function() {
    assert_eq!(page(), page());
}

#[test]
fn bare_report_renders_with_explanations() {
    let html = render_html(&bare_report()).unwrap();
    assert!(html.contains("No attacks were run"));
    assert!(html.contains("<strong>NO GATES</strong>"));
    assert!(html.contains("The report holds no adversarial examples."));
    assert!(!html.contains("<img"));
}

#[test]
fn write_html_writes_the_rendered_page() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.html");
    write_html(&fixture::report(), &path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), page());
}

#[test]
fn provenance_section_shows_checks_and_escaped_findings() {
    let html = page();
    let section = &html[html
        .find("id=\"provenance\"")
        .expect("a provenance section")..];
    let section = &section[..section.find("</section>").unwrap()];
    assert!(section.contains("weights match the pinned SHA-256"));
    assert!(section.contains("pickle-unknown-global"));
    assert!(section.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!section.contains("<script>"));
    let mut without = fixture::report();
    without.provenance = None;
    assert!(!render_html(&without).unwrap().contains("id=\"provenance\""));
}
