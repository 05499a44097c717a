//! Counts every KMS call by provider and operation (calls, errors, latency), for `/metrics` and for
//! tests that must show exactly how many KMS calls a request made.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;

use super::{DataKey, KekUri, KmsBackend, KmsContext, KmsError, Provider, WrappedKey};
use crate::metrics::Histogram;

/// The KMS operations we count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KmsOp {
    GenerateDataKey = 0,
    Wrap = 1,
    Unwrap = 2,
}

impl KmsOp {
    /// Every operation, in exposition order.
    pub const ALL: [KmsOp; OPS] = [KmsOp::GenerateDataKey, KmsOp::Wrap, KmsOp::Unwrap];

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            KmsOp::GenerateDataKey => "generate_data_key",
            KmsOp::Wrap => "wrap",
            KmsOp::Unwrap => "unwrap",
        }
    }
}

const PROVIDERS: usize = 5;
const OPS: usize = 3;

#[derive(Default)]
struct Cell {
    calls: AtomicU64,
    errors: AtomicU64,
    micros: AtomicU64,
    latency: Histogram,
}

/// Call counters shared by every instrumented backend of one server.
#[derive(Default)]
pub struct KmsStats {
    cells: [[Cell; OPS]; PROVIDERS],
    /// Providers with an instrumented backend, so `/metrics` shows their series from zero.
    in_use: [AtomicBool; PROVIDERS],
}

/// A snapshot of one counter cell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallCounts {
    pub calls: u64,
    pub errors: u64,
    pub total_micros: u64,
}

impl KmsStats {
    fn cell(&self, provider: Provider, op: KmsOp) -> &Cell {
        &self.cells[provider as usize][op as usize]
    }

    fn record(&self, provider: Provider, op: KmsOp, started: Instant, ok: bool) {
        let cell = self.cell(provider, op);
        cell.calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            cell.errors.fetch_add(1, Ordering::Relaxed);
        }
        let elapsed = started.elapsed();
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        cell.micros.fetch_add(micros, Ordering::Relaxed);
        cell.latency.observe(elapsed);
    }

    /// Counters for one provider and operation.
    pub fn get(&self, provider: Provider, op: KmsOp) -> CallCounts {
        let cell = self.cell(provider, op);
        CallCounts {
            calls: cell.calls.load(Ordering::Relaxed),
            errors: cell.errors.load(Ordering::Relaxed),
            total_micros: cell.micros.load(Ordering::Relaxed),
        }
    }

    /// The latency histogram of one provider and operation (`/metrics`).
    pub fn latency(&self, provider: Provider, op: KmsOp) -> &Histogram {
        &self.cell(provider, op).latency
    }

    /// Providers that have an instrumented backend, in provider order.
    pub fn providers_in_use(&self) -> Vec<Provider> {
        (0..PROVIDERS as u8)
            .filter_map(Provider::from_u8)
            .filter(|p| self.in_use[*p as usize].load(Ordering::Relaxed))
            .collect()
    }

    /// Calls of every operation to every provider.
    pub fn total_calls(&self) -> u64 {
        self.cells.iter().flatten().map(|c| c.calls.load(Ordering::Relaxed)).sum()
    }
}

/// A backend decorator that records every call in `KmsStats`.
pub struct Instrumented {
    inner: Arc<dyn KmsBackend>,
    stats: Arc<KmsStats>,
}

impl Instrumented {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn KmsBackend>, stats: Arc<KmsStats>) -> Instrumented {
        stats.in_use[inner.provider() as usize].store(true, Ordering::Relaxed);
        Instrumented { inner, stats }
    }
}

#[async_trait]
impl KmsBackend for Instrumented {
    fn provider(&self) -> Provider {
        self.inner.provider()
    }

    async fn wrap(&self, kek: &KekUri, dek: &DataKey, ctx: &KmsContext) -> Result<WrappedKey, KmsError> {
        let started = Instant::now();
        let result = self.inner.wrap(kek, dek, ctx).await;
        self.stats.record(self.provider(), KmsOp::Wrap, started, result.is_ok());
        result
    }

    async fn unwrap(&self, kek: &KekUri, wrapped: &WrappedKey, ctx: &KmsContext) -> Result<DataKey, KmsError> {
        let started = Instant::now();
        let result = self.inner.unwrap(kek, wrapped, ctx).await;
        self.stats.record(self.provider(), KmsOp::Unwrap, started, result.is_ok());
        result
    }

    async fn generate_data_key(&self, kek: &KekUri, ctx: &KmsContext) -> Result<(DataKey, WrappedKey), KmsError> {
        let started = Instant::now();
        let result = self.inner.generate_data_key(kek, ctx).await;
        self.stats.record(self.provider(), KmsOp::GenerateDataKey, started, result.is_ok());
        result
    }

    async fn health_check(&self) -> Result<(), KmsError> {
        self.inner.health_check().await
    }
}
