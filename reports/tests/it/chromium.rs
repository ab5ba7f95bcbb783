//! The report opened in a real browser: headless Chromium loads the page from disk, and we check
//! that every embedded image decoded and that nothing was logged to the console (a CSP violation,
//! a failed load or a script error would be).
//!
//! The page itself has no script. The test adds one to its own copy (and allows inline scripts in
//! that copy's CSP): after `load` it records `loaded/total` images in a `data-` attribute of
//! `<body>`, which `--dump-dom` prints. A negative control runs the same detectors on a page that
//! is broken on purpose, so a Chromium that silently stops reporting cannot make the real test pass.
//!
//! Without `chromium` on PATH the tests print a note and pass, unless `CI` is set: CI installs
//! Chromium, so there a missing browser is a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gauntlet_reports::{render_html, CONTENT_SECURITY_POLICY};

use crate::fixture;

const CHECKER: &str = r#"<script>
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images-loaded', loaded + '/' + images.length);
});
</script>
"#;

/// A 1×1 RGB PNG.
const TINY_PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";

fn find_on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// The browser, or `None` (with a note) when it is absent outside CI.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = find_on_path(&["chromium", "chromium-browser"]) {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!("`chromium` is not on PATH, but CI is set: CI must install it (apt-get install chromium)");
    }
    eprintln!("note: `chromium` not on PATH; skipping the headless-browser check of report.html");
    None
}

struct BrowserRun {
    dom: String,
    stderr: String,
}

impl BrowserRun {
    /// The `loaded/total` marker the checker script sets.
    fn images_loaded(&self) -> Option<&str> {
        let needle = "data-images-loaded=\"";
        let at = self.dom.find(needle)? + needle.len();
        let rest = &self.dom[at..];
        Some(&rest[..rest.find('"')?])
    }

    /// Chromium logs every console message (any level, including CSP violations) as a
    /// `…:CONSOLE…` line on stderr with `--enable-logging=stderr`.
    fn console_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|line| line.contains("CONSOLE"))
            .collect()
    }
}

/// Adds the checker script and lets this copy's CSP run it.
fn instrument(html: &str) -> String {
    assert!(
        html.contains("script-src 'none'"),
        "the page's CSP must forbid scripts"
    );
    html.replacen("script-src 'none'", "script-src 'unsafe-inline'", 1)
        .replacen("</body>", &format!("{CHECKER}</body>"), 1)
}

/// Runs headless Chromium on `html` with a fresh profile; `extra` flags select the output mode.
fn run_chromium(browser: &Path, html: &str, extra: &[String]) -> BrowserRun {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    std::fs::write(&page, html).unwrap();
    let stdout_path = dir.path().join("stdout.txt");
    let stderr_path = dir.path().join("stderr.txt");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        // Files, not pipes: the DOM with its data URIs is larger than a pipe buffer.
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let run = BrowserRun {
        dom: std::fs::read_to_string(&stdout_path).unwrap(),
        stderr: std::fs::read_to_string(&stderr_path).unwrap(),
    };
    assert!(
        status.success(),
        "chromium failed ({status}):\n{}",
        run.stderr
    );
    run
}

#[test]
fn report_loads_every_image_without_console_messages() {
    let Some(browser) = chromium() else { return };
    let html = render_html(&fixture::report()).unwrap();
    let images = html.matches("<img ").count();
    assert_eq!(images, 5);
    let run = run_chromium(&browser, &instrument(&html), &["--dump-dom".to_owned()]);
    assert_eq!(
        run.images_loaded(),
        Some(format!("{images}/{images}").as_str()),
        "not every image decoded; stderr:\n{}",
        run.stderr
    );
    assert_eq!(
        run.console_lines(),
        Vec::<&str>::new(),
        "console messages were logged"
    );
    // The escaped hostile class name is text in the DOM, not an element.
    assert!(
        run.dom.contains("&lt;b&gt;&amp;\"seven\""),
        "escaped class name not in the DOM"
    );
    assert!(!run.dom.contains("<b>"));
}

/// Negative control: the same detectors must notice a broken image, a console error and a
/// resource the page's CSP blocks.
#[test]
fn detectors_catch_a_broken_page() {
    let Some(browser) = chromium() else { return };
    let broken = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CONTENT_SECURITY_POLICY}\">\
         </head><body>\
         <img src=\"data:image/png;base64,{TINY_PNG}\">\
         <img src=\"data:image/png;base64,AAAA\">\
         <img src=\"http://127.0.0.1:9/blocked.png\">\
         <script>console.error('deliberate error');</script></body></html>"
    );
    let run = run_chromium(&browser, &instrument(&broken), &["--dump-dom".to_owned()]);
    assert_eq!(run.images_loaded(), Some("1/3"), "stderr:\n{}", run.stderr);
    let console = run.console_lines().join("\n");
    assert!(
        console.contains("deliberate error"),
        "console error not seen:\n{}",
        run.stderr
    );
    assert!(
        console.contains("Content Security Policy"),
        "CSP block not seen:\n{}",
        run.stderr
    );
}

/// The page as shipped (no checker, scripts forbidden by its CSP) logs nothing either: its CSP
/// blocks nothing the page needs.
#[test]
fn uninstrumented_report_logs_nothing() {
    let Some(browser) = chromium() else { return };
    let html = render_html(&fixture::report()).unwrap();
    let run = run_chromium(&browser, &html, &["--dump-dom".to_owned()]);
    assert!(run.dom.contains("gauntlet robustness report"));
    assert_eq!(run.console_lines(), Vec::<&str>::new());
}

/// Screenshot for a human to look at: `GAUNTLET_REPORT_SCREENSHOT=/tmp/report.png cargo test -p
/// gauntlet-reports screenshot` (the page is saved beside it as `report.html`).
#[test]
fn screenshot_when_asked() {
    let Some(target) = std::env::var_os("GAUNTLET_REPORT_SCREENSHOT") else {
        return;
    };
    let Some(browser) = chromium() else { return };
    let html = render_html(&fixture::report()).unwrap();
    let target = PathBuf::from(target);
    std::fs::write(target.with_extension("html"), &html).unwrap();
    let height =
        std::env::var("GAUNTLET_REPORT_SCREENSHOT_HEIGHT").unwrap_or_else(|_| "4200".to_owned());
    run_chromium(
        &browser,
        &html,
        &[
            format!("--screenshot={}", target.display()),
            format!("--window-size=1200,{height}"),
            "--hide-scrollbars".to_owned(),
        ],
    );
    assert!(target.is_file());
}
