//! Progress on stderr: a bar on a terminal, one plain line per step of the plan when stderr is
//! a file or pipe (a CI log), so a long run is never silent, nothing but diagnostics with
//! `--quiet`; or with `--log-format json` one JSON object per line for log collectors (Loki,
//! Fluent Bit, Vector, CloudWatch, a CI system's log search).
//!
//! Every JSON line has `event`, `time` (RFC 3339, UTC, milliseconds) and — except a final
//! `error` — `elapsed_s` (seconds since the command started), plus the event's own fields
//! (docs/ci.md lists them). Progress events are at most one a second, plus one at every stage
//! change and one at the end, so a 60,000-image run does not flood the log.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Map, Value};

/// How progress and diagnostics are written to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// A progress bar on a terminal, plain lines otherwise.
    #[default]
    Text,
    /// One JSON object per line (JSON Lines).
    Json,
}

/// Progress of a command: a bar that draws only where a person is watching, or JSON lines.
pub struct Progress {
    bar: ProgressBar,
    json: Option<JsonLog>,
    /// Print one line per message (text format, stderr not a terminal, not `--quiet`).
    lines: bool,
}

struct JsonLog {
    start: Instant,
    /// `--quiet`: no `stage` or `progress` events, diagnostics only.
    quiet: bool,
    state: Mutex<JsonState>,
}

#[derive(Default)]
struct JsonState {
    total: u64,
    done: u64,
    stage: String,
    last_progress: Option<Instant>,
}

/// The least time between two `progress` events.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

impl Progress {
    /// A bar on stderr when it is a terminal and not `quiet`.
    pub fn new(quiet: bool) -> Self {
        Self::with_format(quiet, LogFormat::Text)
    }

    /// A bar (text) or JSON lines (json; `quiet` silences only the `progress` and `stage`
    /// events then, never a diagnostic).
    pub fn with_format(quiet: bool, format: LogFormat) -> Self {
        if format == LogFormat::Json {
            return Self {
                bar: ProgressBar::hidden(),
                json: Some(JsonLog {
                    start: Instant::now(),
                    quiet,
                    state: Mutex::new(JsonState::default()),
                }),
                lines: false,
            };
        }
        let terminal = std::io::stderr().is_terminal();
        let visible = !quiet && terminal;
        let bar = ProgressBar::with_draw_target(
            Some(0),
            if visible {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        let colour = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let template = if colour {
            "{spinner:.cyan} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} {msg}"
        } else {
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        Self {
            bar,
            json: None,
            lines: !quiet && !terminal,
        }
    }

    /// A progress bar that never draws (tests, library use).
    pub fn hidden() -> Self {
        Self {
            bar: ProgressBar::hidden(),
            json: None,
            lines: false,
        }
    }

    /// Whether diagnostics go out as JSON lines.
    pub fn is_json(&self) -> bool {
        self.json.is_some()
    }

    pub fn set_length(&self, length: u64) {
        self.bar.set_length(length);
        if let Some(log) = &self.json {
            if let Ok(mut state) = log.state.lock() {
                state.total = length;
            }
        }
    }

    pub fn set_message(&self, message: &str) {
        self.bar.set_message(message.to_string());
        if self.lines {
            match (self.bar.position(), self.bar.length().unwrap_or(0)) {
                (_, 0) => eprintln!("progress: {message}"),
                (done, total) => eprintln!("progress: {message} ({done} of {total} batches done)"),
            }
        }
        if let Some(log) = &self.json {
            let Ok(mut state) = log.state.lock() else {
                return;
            };
            if state.stage != message {
                state.stage = message.to_owned();
                let (done, total) = (state.done, state.total);
                drop(state);
                if !log.quiet {
                    log.emit(
                        "stage",
                        json!({ "stage": message, "done": done, "total": total }),
                    );
                }
            }
        }
    }

    pub fn advance(&self, steps: u64) {
        self.bar.inc(steps);
        if let Some(log) = &self.json {
            let Ok(mut state) = log.state.lock() else {
                return;
            };
            state.done += steps;
            let now = Instant::now();
            let due = state
                .last_progress
                .is_none_or(|last| now.duration_since(last) >= PROGRESS_INTERVAL);
            if !log.quiet && (due || state.done == state.total) {
                state.last_progress = Some(now);
                let fields = json!({
                    "stage": state.stage,
                    "done": state.done,
                    "total": state.total,
                });
                drop(state);
                log.emit("progress", fields);
            }
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// A diagnostic: with JSON lines the event `name` with `fields`, otherwise `text` as a
    /// plain line on stderr.
    pub fn report(&self, text: &str, name: &str, fields: Value) {
        match &self.json {
            Some(log) => log.emit(name, fields),
            None => eprintln!("{text}"),
        }
    }

    /// An event that exists only in JSON lines (e.g. `run_started`); nothing in text mode.
    pub fn event(&self, name: &str, fields: Value) {
        if let Some(log) = &self.json {
            log.emit(name, fields);
        }
    }
}

impl JsonLog {
    fn emit(&self, name: &str, fields: Value) {
        let elapsed = self.start.elapsed().as_secs_f64();
        let line = event_line(name, SystemTime::now(), Some(elapsed), fields);
        let mut stderr = std::io::stderr().lock();
        // A closed stderr must not fail the run.
        let _ = writeln!(stderr, "{line}");
    }
}

/// One JSON line: `event`, `time`, `elapsed_s` and the event's own fields.
pub fn event_line(name: &str, now: SystemTime, elapsed_s: Option<f64>, fields: Value) -> String {
    let mut object = Map::new();
    object.insert("event".to_owned(), Value::from(name));
    object.insert("time".to_owned(), Value::from(rfc3339(now)));
    if let Some(elapsed) = elapsed_s {
        object.insert(
            "elapsed_s".to_owned(),
            Value::from((elapsed * 1000.0).round() / 1000.0),
        );
    }
    if let Value::Object(fields) = fields {
        for (key, value) in fields {
            object.insert(key, value);
        }
    }
    Value::Object(object).to_string()
}

/// A time as RFC 3339 in UTC with milliseconds: `2026-12-02T23:55:00.123Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day): Howard Hinnant's
/// `civil_from_days`, exact for every day of a u64 second count's lifetime that we will see.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_millis(millis)
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(at(0, 0)), "1970-01-01T00:00:00.000Z");
        // `date -u -d @951782400` = 2000-02-29 00:00:00 (a leap day of a century leap year).
        assert_eq!(rfc3339(at(951_782_400, 5)), "2000-02-29T00:00:00.005Z");
        // `date -u -d @1796256000` = 2026-12-03 00:00:00.
        assert_eq!(
            rfc3339(at(1_796_256_000 - 1, 999)),
            "2026-12-02T23:59:59.999Z"
        );
        // `date -u -d @4107542400` = 2100-03-01 (2100 is not a leap year).
        assert_eq!(rfc3339(at(4_107_542_400, 0)), "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn event_lines_are_one_json_object_with_the_common_fields() {
        let line = event_line(
            "progress",
            at(0, 0),
            Some(1.23456),
            json!({ "done": 3, "total": 10 }),
        );
        assert!(!line.contains('\n'));
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["event"], "progress");
        assert_eq!(value["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(value["elapsed_s"], 1.235);
        assert_eq!(value["done"], 3);
        assert_eq!(value["total"], 10);
    }
}
