//! Per-observation cost on the request path: the hand-written metrics (a Mutex<BTreeMap> counter keyed by
//! (operation, status) plus a lock-free atomic histogram) vs prometheus-client 0.26 (Family<labels, Counter>
//! and Family<labels, Histogram>), as `metrics::Metrics::record_request` does once per request.
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram as PcHistogram;

const LATENCY_BUCKETS: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

struct Histogram { buckets: [AtomicU64; 14], count: AtomicU64, sum_micros: AtomicU64 }
impl Histogram {
    fn new() -> Self { Histogram { buckets: std::array::from_fn(|_| AtomicU64::new(0)), count: AtomicU64::new(0), sum_micros: AtomicU64::new(0) } }
    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let slot = LATENCY_BUCKETS.iter().position(|le| seconds <= *le).unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }
}
struct Ours { requests: Mutex<BTreeMap<(u8, u16), u64>>, latency: [Histogram; 7] }
impl Ours {
    fn record(&self, op: u8, status: u16, elapsed: Duration) {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry((op, status)).or_default() += 1;
        self.latency[op as usize].observe(elapsed);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReqLabels { operation: &'static str, status: u16 }
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels { operation: &'static str }
struct Theirs { requests: Family<ReqLabels, Counter>, latency: Family<OpLabels, PcHistogram> }
const OPS: [&str; 7] = ["encode", "decode", "download", "healthz", "readyz", "metrics", "other"];
impl Theirs {
    fn record(&self, op: u8, status: u16, elapsed: Duration) {
        let operation = OPS[op as usize];
        self.requests.get_or_create(&ReqLabels { operation, status }).inc();
        self.latency.get_or_create(&OpLabels { operation }).observe(elapsed.as_secs_f64());
    }
}

fn run(name: &str, threads: usize, iters: u64, f: impl Fn(u8, u16, Duration) + Sync) {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let f = &f;
            s.spawn(move || {
                for i in 0..iters {
                    let op = ((i + t as u64) % 2) as u8;
                    f(black_box(op), black_box(200), black_box(Duration::from_micros(300 + (i % 5000))));
                }
            });
        }
    });
    let total = threads as u64 * iters;
    println!("{name:<22} threads={threads} {:>7.1} ns/request", start.elapsed().as_nanos() as f64 / total as f64 * threads as f64);
}

fn main() {
    let iters = 5_000_000;
    for threads in [1, 2] {
        for round in 0..3 {
            let ours = Ours { requests: Mutex::default(), latency: std::array::from_fn(|_| Histogram::new()) };
            run(&format!("hand-written r{round}"), threads, iters, |o, s, e| ours.record(o, s, e));
            let theirs = Theirs {
                requests: Family::default(),
                latency: Family::new_with_constructor(|| PcHistogram::new(LATENCY_BUCKETS)),
            };
            run(&format!("prometheus-client r{round}"), threads, iters, |o, s, e| theirs.record(o, s, e));
        }
    }
}
