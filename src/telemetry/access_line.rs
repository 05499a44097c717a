//! The access line (`Request served.`), written straight to the log buffer in the configured format.
//!
//! One line per request is the busiest log line by far. Formatted by `tracing_subscriber`'s `fmt` layer
//! it cost ~12k instructions per request, a tenth of a whole 1 KiB decode (field visitors, `fmt`
//! machinery, styles painted even with colours off; docs/performance.md). Its shape is fixed, so it is
//! built here with plain appends into a reused buffer, byte for byte the line the `fmt` layer writes
//! for the same event inside the `request` span (JSON and pretty), except that `latency_ms` has
//! microsecond precision (`0.215`, not `0.21561900000000001`).
//!
//! It still obeys the log filter: the middleware asks `tracing::enabled!` first, so `RUST_LOG` and
//! `log.level` turn it on and off as before (target `codec_server::request_id`).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::Level;

use crate::config::LogFormat;
use crate::decimal;

/// The target the line is written under, as the `fmt` layer would name it.
const TARGET: &str = "codec_server::request_id";

/// How lines are written; set once by `telemetry::init`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Style {
    pub format: LogFormat,
    pub ansi: bool,
}

static STYLE: OnceLock<Style> = OnceLock::new();

pub(super) fn set_style(style: Style) {
    let _ = STYLE.set(style);
}

/// What one access line says.
pub struct Access<'a> {
    pub level: Level,
    pub request_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub latency: Duration,
}

/// Writes the line; does nothing before `telemetry::init` (unit and in-process tests log nowhere).
pub fn write(access: &Access<'_>) {
    let Some(style) = STYLE.get() else { return };
    thread_local! {
        static LINE: RefCell<String> = const { RefCell::new(String::new()) };
    }
    LINE.with_borrow_mut(|line| {
        line.clear();
        match style.format {
            LogFormat::Json => json(line, access, SystemTime::now()),
            LogFormat::Pretty => pretty(line, access, SystemTime::now(), style.ansi),
        }
        super::buffered_stderr::write_line(line.as_bytes(), &access.level);
    });
}

fn json(line: &mut String, a: &Access<'_>, now: SystemTime) {
    line.push_str("{\"timestamp\":\"");
    timestamp(line, now);
    line.push_str("\",\"level\":\"");
    line.push_str(a.level.as_str());
    line.push_str("\",\"fields\":{\"message\":\"Request served.\",\"method\":");
    quoted(line, a.method, true);
    line.push_str(",\"path\":");
    quoted(line, a.path, true);
    line.push_str(",\"status\":");
    decimal::push(line, u64::from(a.status), 1);
    line.push_str(",\"latency_ms\":");
    latency_ms(line, a.latency);
    line.push_str("},\"target\":\"");
    line.push_str(TARGET);
    line.push_str("\",\"span\":");
    span_json(line, a.request_id);
    line.push_str(",\"spans\":[");
    span_json(line, a.request_id);
    line.push_str("]}\n");
}

fn span_json(line: &mut String, request_id: &str) {
    line.push_str("{\"request_id\":");
    quoted(line, request_id, true);
    line.push_str(",\"name\":\"request\"}");
}

/// `tracing_subscriber`'s default ("full") format. With `ansi` (stderr is a terminal) only the time and
/// the level are coloured, as the `fmt` layer colours them.
fn pretty(line: &mut String, a: &Access<'_>, now: SystemTime, ansi: bool) {
    let (padded, colour) = match a.level {
        Level::ERROR => ("ERROR", "31"),
        Level::WARN => (" WARN", "33"),
        Level::INFO => (" INFO", "32"),
        Level::DEBUG => ("DEBUG", "34"),
        _ => ("TRACE", "35"),
    };
    if ansi {
        line.push_str("\x1b[2m");
        timestamp(line, now);
        line.push_str("\x1b[0m \x1b[");
        line.push_str(colour);
        line.push('m');
        line.push_str(padded);
        line.push_str("\x1b[0m ");
    } else {
        timestamp(line, now);
        line.push(' ');
        line.push_str(padded);
        line.push(' ');
    }
    // The span's field is recorded with `Display` (the id is plain ASCII), so no quotes.
    line.push_str("request{request_id=");
    line.push_str(a.request_id);
    line.push_str("}: ");
    line.push_str(TARGET);
    line.push_str(": Request served. method=");
    line.push_str(a.method);
    line.push_str(" path=");
    line.push_str(a.path);
    line.push_str(" status=");
    decimal::push(line, u64::from(a.status), 1);
    line.push_str(" latency_ms=");
    latency_ms(line, a.latency);
    line.push('\n');
}

/// Milliseconds with three decimals (microseconds).
fn latency_ms(line: &mut String, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    decimal::push(line, micros / 1000, 1);
    line.push('.');
    decimal::push(line, micros % 1000, 3);
}

/// `text` in double quotes, escaped as JSON or as `Debug` does. Ids, methods and paths are plain ASCII
/// (printable, no quote or backslash) almost always, and then quoting is all either needs.
fn quoted(line: &mut String, text: &str, json: bool) {
    if text.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
        line.push('"');
        line.push_str(text);
        line.push('"');
    } else if json {
        // Writing a `str` into a `String` cannot fail.
        line.push_str(&serde_json::to_string(text).unwrap_or_default());
    } else {
        let _ = write!(line, "{text:?}");
    }
}

/// RFC 3339 in UTC with microseconds, as `tracing_subscriber` writes it: `2026-11-30T09:55:11.960126Z`.
/// The text up to the second is kept per thread and reused within the same second.
fn timestamp(line: &mut String, now: SystemTime) {
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != seconds {
            *cached = seconds;
            text.clear();
            let (year, month, day) = civil_from_days(seconds / 86_400);
            let of_day = seconds % 86_400;
            for (value, width, then) in [
                (year, 4, '-'),
                (month, 2, '-'),
                (day, 2, 'T'),
                (of_day / 3600, 2, ':'),
                (of_day / 60 % 60, 2, ':'),
                (of_day % 60, 2, '.'),
            ] {
                decimal::push(text, value, width);
                text.push(then);
            }
        }
        line.push_str(text);
    });
    decimal::push(line, u64::from(since.subsec_micros()), 6);
    line.push('Z');
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Collects what the `fmt` layer writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    /// The line `tracing_subscriber` writes for the event the middleware used to emit.
    fn from_fmt_layer(format: LogFormat, a: &Access<'_>, latency_ms: f64) -> String {
        let captured = Captured::default();
        let builder = tracing_subscriber::fmt().with_writer(captured.clone()).with_max_level(Level::TRACE);
        let dispatch = match format {
            LogFormat::Json => {
                tracing::Dispatch::new(builder.json().with_current_span(true).with_span_list(true).finish())
            }
            LogFormat::Pretty => tracing::Dispatch::new(builder.with_ansi(false).finish()),
        };
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!(target: TARGET, "request", request_id = %a.request_id);
            let _entered = span.enter();
            let (method, path) = (a.method, a.path);
            tracing::info!(target: TARGET, %method, %path, status = a.status, latency_ms, "Request served.");
        });
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    /// Our line with the fmt layer's timestamp put in place of ours (the two clocks differ).
    fn ours(format: LogFormat, a: &Access<'_>, reference: &str) -> String {
        let mut line = String::new();
        let now = SystemTime::now();
        match format {
            LogFormat::Json => json(&mut line, a, now),
            LogFormat::Pretty => pretty(&mut line, a, now, false),
        }
        let stamp = |text: &str| {
            let at = text.find("T").unwrap();
            text[at - 10..at + 17].to_string()
        };
        line.replace(&stamp(&line), &stamp(reference))
    }

    fn access(path: &str) -> Access<'_> {
        Access {
            level: Level::INFO,
            request_id: "77e613c8c49ea217997548157747746f",
            method: "POST",
            path,
            status: 200,
            latency: Duration::from_micros(215),
        }
    }

    #[test]
    fn lines_are_the_ones_the_fmt_layer_writes() {
        for path in ["/decode", "/odd\"path\\x"] {
            let a = access(path);
            for format in [LogFormat::Json, LogFormat::Pretty] {
                let reference = from_fmt_layer(format, &a, 0.215);
                assert_eq!(ours(format, &a, &reference), reference, "{format:?}");
            }
        }
    }

    #[test]
    fn json_lines_parse_and_keep_the_fields() {
        let a = access("/a\"b");
        let mut line = String::new();
        json(&mut line, &a, SystemTime::now());
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["fields"]["path"], "/a\"b");
        assert_eq!(value["fields"]["latency_ms"], 0.215);
        assert_eq!(value["spans"][0]["request_id"], a.request_id);
    }

    #[test]
    fn timestamps_are_utc_rfc3339_with_microseconds() {
        let cases = [
            (0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400_123_456, "2000-02-29T00:00:00.123456Z"),
            (1_796_032_511_960_126, "2026-11-30T09:55:11.960126Z"),
            (4_107_542_399_999_999, "2100-02-28T23:59:59.999999Z"),
        ];
        for (micros, text) in cases {
            let mut line = String::new();
            timestamp(&mut line, UNIX_EPOCH + Duration::from_micros(micros));
            assert_eq!(line, text);
        }
    }
}
