//! Prometheus metrics (DESIGN §10): the request counters and latency histograms recorded by the HTTP
//! middleware here, plus a small text-exposition writer that `routes::metrics` uses to render these and
//! the counters other modules already keep (KMS calls, DEK caches, auth failures, payloads). The
//! middleware reads [`Metrics`] as app data of its own: `AppState` owns the `Metrics`, and this module
//! knows nothing of `AppState` (no `metrics` ↔ `state` cycle).
//!
//! Hand-written on atomics rather than a metrics crate: most series are counters that already exist as
//! atomics in their own modules and are read at scrape time, the label sets are small and fixed, and the
//! text format is a few lines of code, so a crate would add build time and a second copy of each counter.
//!
//! Why not `prometheus-client` (0.26, the official Rust client; measured 2026-11 on this 2-core machine
//! under a load average of 7-10, so ranges):
//! - Output: its `encoding::prometheus_text` writes the same 0.0.4 format (`# HELP`/`# TYPE` on the
//!   `_total` name, `le` as Go prints floats, so `le="10"` stays `le="10"`), except that it appends a `.`
//!   to every HELP text (ours end with one: they would have to be registered without it). Compatible.
//! - Build: 3 crates new to the tree (prometheus-client 10.2 s, prometheus-client-derive-encode 1.7 s,
//!   dtoa 0.5 s of compile time in `cargo build --timings`; parking_lot, itoa and syn are already here).
//!   Small.
//! - Hot path: `record_request` with its types (`Family<labels, Counter>` + `Family<labels, Histogram>`:
//!   a hashed label lookup under an `RwLock`, a `Mutex` per histogram) costs 330-700 ns per request
//!   against 120-370 ns for the `Mutex<BTreeMap>` counter plus the lock-free histogram here, 1.8-4.9x
//!   (docs/metrics-bench, 5 M requests x 3 rounds, 1 and 2 threads). Compare 5 µs of HKDF per payload.
//! - Fit: 22 of the 27 families are atomics owned by other modules (KMS stats, DEK caches, audit writer,
//!   auth refusals, body budget, readiness) and read at scrape time. The crate can only serve those
//!   through a custom `Collector` that re-encodes them, i.e. as a text encoder; its metric types would
//!   replace the 5 families kept here, at the cost above.
//!
//! So the crate would replace [`Exposition`] (about 70 lines, unit-tested, and the integration tests
//! parse every scrape with an independent parser) and nothing else. Not done: nothing is gained in output,
//! the hot path gets slower, and a lock file change would collide with concurrent backend work. Revisit
//! when OpenMetrics, exemplars or native histograms are wanted: then its encoder earns its place, and
//! `Exposition` is the only writer to swap.
//!
//! What must stay true: label values are fixed words (operation names, status codes, providers, reasons),
//! never anything a caller sends (paths, namespaces, tokens), so a caller cannot grow the series set or
//! put data into it; every family is declared (`# HELP`/`# TYPE`) before its samples.

use std::collections::BTreeMap;
use std::fmt::{Display, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use crate::protocol::{CodecOp, CodecPath};

/// Upper bounds (seconds) of the latency histograms: 1 ms to 10 s.
pub const LATENCY_BUCKETS: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A latency histogram with the fixed [`LATENCY_BUCKETS`], safe to update from any thread.
pub struct Histogram {
    /// Non-cumulative counts per bucket; the last slot is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let slot = LATENCY_BUCKETS.iter().position(|le| seconds <= *le).unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// The Prometheus metric type of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Builds a text-format (0.0.4) exposition.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Exposition {
    /// Declares a family; its samples follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        self
    }

    /// One sample of a counter or gauge.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) -> &mut Self {
        self.out.push_str(name);
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// The `_bucket`, `_sum` and `_count` samples of one histogram.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &Histogram) -> &mut Self {
        let mut cumulative = 0;
        for (i, count) in histogram.buckets.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = LATENCY_BUCKETS.get(i).map_or_else(|| "+Inf".to_owned(), |le| le.to_string());
            let _ = write!(self.out, "{name}_bucket");
            write_labels(&mut self.out, labels, Some(&le));
            let _ = writeln!(self.out, " {cumulative}");
        }
        let sum = histogram.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        self.sample(&format!("{name}_sum"), labels, sum);
        // The count is the last cumulative bucket, so `_count` always equals `le="+Inf"`.
        self.sample(&format!("{name}_count"), labels, cumulative)
    }

    /// The finished text.
    pub fn finish(self) -> String {
        self.out
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
    for (i, (key, value)) in all.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let _ = write!(out, "{key}=\"{escaped}\"");
    }
    out.push('}');
}

/// What a request was for, as a metric label. Anything that is not a known route is `other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Encode,
    Decode,
    Download,
    Healthz,
    Readyz,
    Metrics,
    Other,
}

impl Operation {
    /// Every operation, in exposition order.
    pub const ALL: [Operation; 7] = [
        Operation::Encode,
        Operation::Decode,
        Operation::Download,
        Operation::Healthz,
        Operation::Readyz,
        Operation::Metrics,
        Operation::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Encode => "encode",
            Operation::Decode => "decode",
            Operation::Download => "download",
            Operation::Healthz => "healthz",
            Operation::Readyz => "readyz",
            Operation::Metrics => "metrics",
            Operation::Other => "other",
        }
    }

    /// Classifies a request path the way the router does (codec routes by suffix, after the prefix).
    pub fn of_path(path: &str, prefix: &str) -> Operation {
        match path {
            "/healthz" => return Operation::Healthz,
            "/readyz" => return Operation::Readyz,
            "/metrics" => return Operation::Metrics,
            _ => {}
        }
        match CodecPath::parse(path, prefix).map(|p| p.op) {
            Some(CodecOp::Encode) => Operation::Encode,
            Some(CodecOp::Decode) => Operation::Decode,
            Some(CodecOp::Download) => Operation::Download,
            None => Operation::Other,
        }
    }
}

/// Server-side metrics that no other module keeps: HTTP requests and the TLS certificate.
pub struct Metrics {
    /// `server.path_prefix`, to label requests by operation the way the router routes them.
    path_prefix: String,
    requests: Mutex<BTreeMap<(Operation, u16), u64>>,
    latency: [Histogram; Operation::ALL.len()],
    in_flight: AtomicI64,
    tls_reloads: AtomicU64,
    tls_reload_failures: AtomicU64,
    /// notAfter of the certificate being served, Unix seconds; [`NO_CERTIFICATE`] without TLS.
    tls_certificate_expiry: AtomicI64,
}

/// The expiry gauge's value while no certificate (or none with a readable notAfter) is served.
const NO_CERTIFICATE: i64 = i64::MIN;

impl Default for Metrics {
    /// For a server without a path prefix.
    fn default() -> Self {
        Metrics {
            path_prefix: String::new(),
            requests: Mutex::default(),
            latency: std::array::from_fn(|_| Histogram::default()),
            in_flight: AtomicI64::new(0),
            tls_reloads: AtomicU64::new(0),
            tls_reload_failures: AtomicU64::new(0),
            tls_certificate_expiry: AtomicI64::new(NO_CERTIFICATE),
        }
    }
}

impl Metrics {
    /// Metrics of a server whose codec routes are under `path_prefix` (`server.path_prefix`).
    pub fn new(path_prefix: &str) -> Metrics {
        Metrics { path_prefix: path_prefix.to_owned(), ..Metrics::default() }
    }

    /// Records one finished request.
    pub fn record_request(&self, operation: Operation, status: u16, elapsed: Duration) {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry((operation, status)).or_default() += 1;
        self.latency[operation as usize].observe(elapsed);
    }

    /// Requests finished so far with this operation and status.
    pub fn requests(&self, operation: Operation, status: u16) -> u64 {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).get(&(operation, status)).copied().unwrap_or(0)
    }

    /// Records a certificate reload attempt that found changed files.
    pub fn record_tls_reload(&self, ok: bool) {
        let counter = if ok { &self.tls_reloads } else { &self.tls_reload_failures };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Publishes the notAfter (Unix seconds) of the certificate now served; `None` hides the gauge (a
    /// certificate whose expiry could not be read must not leave the previous one's date showing).
    pub fn set_tls_certificate_expiry(&self, not_after: Option<i64>) {
        self.tls_certificate_expiry.store(not_after.unwrap_or(NO_CERTIFICATE), Ordering::Relaxed);
    }

    /// The notAfter last published, if any.
    pub fn tls_certificate_expiry(&self) -> Option<i64> {
        Some(self.tls_certificate_expiry.load(Ordering::Relaxed)).filter(|t| *t != NO_CERTIFICATE)
    }

    /// Writes the HTTP and TLS families.
    pub fn write(&self, out: &mut Exposition) {
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner()).clone();
        out.family("codec_http_requests_total", Kind::Counter, "HTTP requests answered, by operation and status.");
        for ((operation, status), count) in &requests {
            out.sample(
                "codec_http_requests_total",
                &[("operation", operation.as_str()), ("status", &status.to_string())],
                count,
            );
        }
        out.family(
            "codec_http_request_duration_seconds",
            Kind::Histogram,
            "Time from request head to response, by operation.",
        );
        for operation in Operation::ALL {
            let histogram = &self.latency[operation as usize];
            if histogram.count() > 0 || matches!(operation, Operation::Encode | Operation::Decode) {
                out.histogram("codec_http_request_duration_seconds", &[("operation", operation.as_str())], histogram);
            }
        }
        out.family("codec_http_requests_in_flight", Kind::Gauge, "Requests being served now.").sample(
            "codec_http_requests_in_flight",
            &[],
            self.in_flight.load(Ordering::Relaxed),
        );
        out.family(
            "codec_tls_certificate_reloads_total",
            Kind::Counter,
            "Changed TLS certificate files seen, by result (a failed reload keeps the previous certificate).",
        )
        .sample(
            "codec_tls_certificate_reloads_total",
            &[("result", "success")],
            self.tls_reloads.load(Ordering::Relaxed),
        )
        .sample(
            "codec_tls_certificate_reloads_total",
            &[("result", "failure")],
            self.tls_reload_failures.load(Ordering::Relaxed),
        );
        if let Some(not_after) = self.tls_certificate_expiry() {
            out.family(
                "codec_tls_certificate_expiry_timestamp_seconds",
                Kind::Gauge,
                "notAfter of the TLS certificate being served, as Unix time (absent without server.tls).",
            )
            .sample("codec_tls_certificate_expiry_timestamp_seconds", &[], not_after);
        }
    }
}

/// Decrements the in-flight gauge however the request ends (cancelled connections included).
struct InFlight<'a>(&'a AtomicI64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Middleware: counts every request by operation and status and times it, in the app's
/// `web::Data<Metrics>` (registered next to the `AppState` that owns the same `Metrics`).
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let Some(metrics) = req.app_data::<web::Data<Metrics>>().cloned() else {
        return next.call(req).await;
    };
    let operation = Operation::of_path(req.path(), &metrics.path_prefix);
    let started = Instant::now();
    metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    let _in_flight = InFlight(&metrics.in_flight);
    let result = next.call(req).await;
    let status = match &result {
        Ok(response) => response.status(),
        Err(error) => error.as_response_error().status_code(),
    };
    metrics.record_request(operation, status.as_u16(), started.elapsed());
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_count_matches_inf() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(60));
        let mut out = Exposition::default();
        out.histogram("x_seconds", &[("operation", "decode")], &h);
        let text = out.finish();
        assert!(text.contains("x_seconds_bucket{operation=\"decode\",le=\"0.001\"} 1\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{operation=\"decode\",le=\"0.05\"} 2\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{operation=\"decode\",le=\"10\"} 2\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{operation=\"decode\",le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("x_seconds_count{operation=\"decode\"} 3\n"), "{text}");
        assert!(text.contains("x_seconds_sum{operation=\"decode\"} 60.0305\n"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition::default();
        out.sample("m", &[("k", "a\"b\\c\nd")], 1);
        assert_eq!(out.finish(), "m{k=\"a\\\"b\\\\c\\nd\"} 1\n");
    }

    #[test]
    fn operations_follow_the_router() {
        assert_eq!(Operation::of_path("/codec/payments/decode", "/codec"), Operation::Decode);
        assert_eq!(Operation::of_path("/encode", ""), Operation::Encode);
        assert_eq!(Operation::of_path("/readyz", "/codec"), Operation::Readyz);
        // Without a prefix any path ending in an operation is routed (suffix routing); with one, exactly.
        assert_eq!(Operation::of_path("/a/b/c/decode", ""), Operation::Decode);
        assert_eq!(Operation::of_path("/a/b/c/decode", "/codec"), Operation::Other);
        assert_eq!(Operation::of_path("/favicon.ico", ""), Operation::Other);
    }
}
