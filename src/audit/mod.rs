//! The audit log: who decrypted what, in which namespace, when (DESIGN §7).
//!
//! Every encode, decode and denial that reaches authorization becomes one `AuditEvent`. Events go
//! through a bounded queue to one batching writer (`writer`) and into SQLite or PostgreSQL (`store`).
//!
//! What must stay true:
//! - under `on_failure = "fail-closed"` (the default) a decode that opens payloads answers only after
//!   its row is committed; if that cannot happen in time it answers 503 and releases nothing;
//! - under `"fail-open"` requests are served, and every event that cannot be kept is counted as lost;
//! - no event holds a token, a key or a payload byte (see `event`).

pub mod event;
pub mod stats;
pub mod store;
mod writer;
mod writer_thread;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::{AuditConfig, AuditFailureMode};
pub use event::{AuditEvent, Outcome};
pub use stats::{AuditSnapshot, AuditStats};
pub use store::{AuditFilter, AuditStore, Cursor, Page};
use writer::{Queued, Writer, WriterSettings, mark_unavailable};

/// Audit failures.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The event could not be queued or committed in time (fail-closed: the request answers 503).
    #[error("the audit log is unavailable")]
    Unavailable,
    #[error("audit database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("audit migrations failed: {0}")]
    Migrate(String),
    #[error("{0}")]
    Config(String),
    #[error("audit database holds an unreadable {0} value")]
    Corrupt(&'static str),
}

/// The running audit pipeline (or nothing, when `audit.enabled = false`).
pub struct Audit {
    inner: Option<Inner>,
    stats: Arc<AuditStats>,
}

struct Inner {
    tx: mpsc::Sender<Queued>,
    mode: AuditFailureMode,
    /// How long a request waits for queue space, and for its commit (three times this: a batch in
    /// progress may finish first).
    write_timeout: Duration,
    healthy: Arc<AtomicBool>,
    /// Wakes the writer (see `writer`: one kick per scheduler turn, not per event).
    kick: Arc<Notify>,
    store: AuditStore,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Audit {
    /// Auditing turned off: `record` accepts everything and stores nothing.
    pub fn disabled() -> Audit {
        Audit { inner: None, stats: Arc::default() }
    }

    /// Connects to the database (lazily), applies migrations if configured, and starts the writer and
    /// the retention task.
    pub async fn start(config: &AuditConfig, database_url: &str) -> Result<Audit, AuditError> {
        if !config.enabled {
            return Ok(Audit::disabled());
        }
        let store = AuditStore::connect(database_url, config.max_connections, config.write_timeout)?;
        if config.migrate_on_start {
            let applied = store.migrate().await?;
            if applied > 0 {
                tracing::info!(database = store.kind(), applied, "Applied audit migrations.");
            }
        }
        let stats = Arc::new(AuditStats::default());
        let healthy = Arc::new(AtomicBool::new(true));
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let kick = Arc::new(Notify::new());
        let (shutdown, shutdown_rx) = watch::channel(false);
        // The writer has its own thread (see `writer_thread`) and its own connection, so its commits do
        // not rotate through the pool's connections with the checkpoint, `/readyz` and queries (each
        // SQLite connection keeps its own page cache). The pool is created in the writer's runtime.
        let runtime = writer_thread::runtime().map_err(|e| AuditError::Config(format!("audit writer: {e}")))?;
        let writer_store = {
            let _in_writer_runtime = runtime.enter();
            AuditStore::connect(database_url, 1, config.write_timeout)?
        };
        let writer = Writer {
            store: writer_store,
            settings: WriterSettings {
                batch_size: config.batch_size,
                flush_interval: config.flush_interval,
                write_timeout: config.write_timeout,
                retry_capacity: config.queue_capacity,
            },
            stats: stats.clone(),
            healthy: healthy.clone(),
            retry: VecDeque::new(),
            kick: kick.clone(),
        };
        let writer = writer_thread::spawn("audit-writer", runtime, writer.run(rx, shutdown_rx.clone()))
            .map_err(|e| AuditError::Config(format!("audit writer: {e}")))?;
        let mut tasks = vec![writer];
        if matches!(store, AuditStore::Sqlite(_)) {
            tasks.push(tokio::spawn(checkpoint_periodically(store.clone(), stats.clone(), shutdown_rx.clone())));
        }
        if let Some(retention) = config.retention {
            tasks.push(tokio::spawn(prune_periodically(store.clone(), retention, shutdown_rx)));
        }
        let inner = Inner {
            tx,
            mode: config.on_failure,
            write_timeout: config.write_timeout,
            healthy,
            kick,
            store,
            shutdown,
            tasks: Mutex::new(tasks),
        };
        Ok(Audit { inner: Some(inner), stats })
    }

    /// Records one event. `Err(Unavailable)` means the request must answer 503 and release nothing:
    /// only under fail-closed, for a decode that opened payloads or an encode.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let Some(inner) = &self.inner else { return Ok(()) };
        match inner.mode {
            AuditFailureMode::FailClosed if event.releases_plaintext() => self.persist(inner, event).await,
            AuditFailureMode::FailClosed if event.operation == "encode" && event.outcome == Outcome::Success => {
                // An encode stores nothing secret, but fail-closed means no unaudited operation: wait for
                // queue space, and refuse when there is none.
                self.enqueue(inner, event).await.map_err(|()| {
                    self.stats.refused();
                    AuditError::Unavailable
                })
            }
            _ => {
                // Denials, failures, fail-open: never refuse because of the audit log; count losses.
                let wait = inner.mode == AuditFailureMode::FailClosed;
                let queued = if wait { self.enqueue(inner, event).await } else { self.try_enqueue(inner, event) };
                if queued.is_err() {
                    self.stats.lost(1);
                    tracing::warn!("Audit event lost: the audit queue is full.");
                }
                Ok(())
            }
        }
    }

    /// Fail-closed decode: queue the event with a waiter and answer only after the commit.
    async fn persist(&self, inner: &Inner, mut event: AuditEvent) -> Result<(), AuditError> {
        if !inner.healthy.load(Ordering::Acquire) {
            // The database is known to be down: refuse at once, and keep the attempt for the log.
            self.stats.refused();
            mark_unavailable(&mut event);
            if self.try_enqueue(inner, event).is_err() {
                self.stats.lost(1);
            }
            return Err(AuditError::Unavailable);
        }
        let (ack, committed) = oneshot::channel();
        let item = Queued { event, ack: Some(ack) };
        self.stats.queued(1);
        let sent = tokio::time::timeout(inner.write_timeout, inner.tx.send(item)).await;
        if !matches!(sent, Ok(Ok(()))) {
            self.stats.dequeued(1);
            self.stats.refused();
            self.stats.lost(1);
            return Err(AuditError::Unavailable);
        }
        // Let the other requests this runtime has ready queue their events, then wake the writer once
        // for all of them: one commit per scheduler turn (see `writer`).
        tokio::task::yield_now().await;
        inner.kick.notify_one();
        match tokio::time::timeout(inner.write_timeout * 3, committed).await {
            Ok(Ok(true)) => Ok(()),
            // Refused or timed out: the writer records this event as a failed attempt.
            _ => {
                self.stats.refused();
                Err(AuditError::Unavailable)
            }
        }
    }

    async fn enqueue(&self, inner: &Inner, event: AuditEvent) -> Result<(), ()> {
        self.stats.queued(1);
        let sent = tokio::time::timeout(inner.write_timeout, inner.tx.send(Queued { event, ack: None })).await;
        if matches!(sent, Ok(Ok(()))) {
            self.kick_if_filling(inner);
            Ok(())
        } else {
            self.stats.dequeued(1);
            Err(())
        }
    }

    fn try_enqueue(&self, inner: &Inner, event: AuditEvent) -> Result<(), ()> {
        self.stats.queued(1);
        inner.tx.try_send(Queued { event, ack: None }).map_err(|_| self.stats.dequeued(1))?;
        self.kick_if_filling(inner);
        Ok(())
    }

    /// Events nobody waits on are written within `flush_interval`, or sooner once the queue is half
    /// full, so a burst of them does not block senders until the next interval.
    fn kick_if_filling(&self, inner: &Inner) {
        if inner.tx.capacity() < inner.tx.max_capacity() / 2 {
            inner.kick.notify_one();
        }
    }

    /// Whether auditing is on.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The database, if auditing is on (the CLI and tests read it).
    pub fn store(&self) -> Option<&AuditStore> {
        self.inner.as_ref().map(|i| &i.store)
    }

    /// Counters for `/metrics`.
    pub fn stats(&self) -> &AuditStats {
        &self.stats
    }

    /// For `/readyz`: the database answers.
    pub async fn health_check(&self) -> Result<(), AuditError> {
        let Some(inner) = &self.inner else { return Ok(()) };
        match tokio::time::timeout(inner.write_timeout, inner.store.ping()).await {
            Ok(result) => result,
            Err(_) => Err(AuditError::Unavailable),
        }
    }

    /// Graceful shutdown: stop accepting events, write everything queued, close the database. Call
    /// after the HTTP server has finished its in-flight requests.
    pub async fn shutdown(&self) {
        let Some(inner) = &self.inner else { return };
        let _ = inner.shutdown.send(true);
        let tasks = std::mem::take(&mut *inner.tasks.lock().await);
        for task in tasks {
            let _ = task.await;
        }
        // The writer closed its own connection; this closes the shared pool's.
        inner.store.close().await;
    }
}

/// Deletes events older than `retention` once an hour (and once at start).
async fn prune_periodically(store: AuditStore, retention: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        let cutoff = now_millis().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        match store.prune(cutoff).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "Pruned audit events past retention."),
            Err(error) => tracing::warn!(%error, "Pruning audit events failed; retrying in an hour."),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// How often the SQLite WAL is copied into the database file (when rows were written since). Measured
/// at 1x1KiB with the audit on (docs/performance.md): every 100 ms p99 3.3-4.2 ms; every 250 ms
/// 5.6-7.3 ms; every second 8-21 ms (bigger checkpoints); SQLite's own, inside commits, 6.7-7.5 ms.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// SQLite checkpoints off the commit path (see `AuditStore::checkpoint`). A failure is logged when it
/// starts and when it ends, not at every retry; commits still checkpoint by themselves when the
/// WAL grows past its safety limit.
async fn checkpoint_periodically(store: AuditStore, stats: Arc<AuditStats>, mut shutdown: watch::Receiver<bool>) {
    let mut failing = false;
    let mut written = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECKPOINT_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
        let now = stats.snapshot().written;
        if now == written && !failing {
            continue;
        }
        written = now;
        match store.checkpoint().await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("Audit log checkpoints work again.");
            }
            Ok(()) => {}
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, retry_ms = CHECKPOINT_INTERVAL.as_millis(), "Audit log checkpoint failed; retrying.");
            }
            Err(_) => {}
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    use crate::clock::Clock;
    crate::clock::SystemClock.unix_millis()
}
