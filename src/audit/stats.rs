//! Counters the writer keeps for `/metrics` and the tests.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::metrics::Histogram;

/// Audit pipeline counters; all monotonic except `queue_depth`.
#[derive(Default)]
pub struct AuditStats {
    /// Events accepted and not yet written (queued or in a failed batch awaiting retry).
    queue_depth: AtomicI64,
    /// Events persisted.
    written: AtomicU64,
    /// Events lost: queue full, or dropped after the database stayed down (fail-open), counted once.
    lost: AtomicU64,
    /// Requests refused because their event could not be queued or persisted (fail-closed).
    refused: AtomicU64,
    /// Batch inserts that failed.
    write_failures: AtomicU64,
    /// Latency of batch inserts that succeeded.
    write_latency: Histogram,
}

/// A consistent-enough copy of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditSnapshot {
    pub queue_depth: i64,
    pub written: u64,
    pub lost: u64,
    pub refused: u64,
    pub write_failures: u64,
    /// Batch inserts that succeeded.
    pub batches: u64,
}

impl AuditStats {
    pub(super) fn queued(&self, n: usize) {
        self.queue_depth.fetch_add(n as i64, Ordering::Relaxed);
    }
    pub(super) fn dequeued(&self, n: usize) {
        self.queue_depth.fetch_sub(n as i64, Ordering::Relaxed);
    }
    pub(super) fn written(&self, n: usize, took: Duration) {
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        self.write_latency.observe(took);
    }
    pub(super) fn lost(&self, n: usize) {
        self.lost.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub(super) fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn write_failed(&self) {
        self.write_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> AuditSnapshot {
        AuditSnapshot {
            queue_depth: self.queue_depth.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            write_failures: self.write_failures.load(Ordering::Relaxed),
            batches: self.write_latency.count(),
        }
    }

    /// Latency of successful batch inserts.
    pub fn write_latency(&self) -> &Histogram {
        &self.write_latency
    }
}
