//! The batching writer: one task per server drains the bounded queue into the database.
//!
//! What must stay true: a waiting request (a fail-closed decode) is acknowledged only after its row is
//! committed; a batch with a waiter is written at once, other batches fill for up to `flush_interval`.
//! Rows that could not be written are retried with backoff while the database is down; waiters are
//! told at once, and their rows are kept as `failed` attempts (the request answered 503). On shutdown
//! everything queued is written before the task ends.
//!
//! Group commit: the writer does not wake on each queued event (it never waits in `recv`). A waiting
//! request queues its event, lets the other requests its runtime has ready queue theirs, and only then
//! kicks the writer, so one commit carries a whole scheduler turn of requests; events queued while a
//! commit runs go into the next. Woken per event instead, the writer (on another thread) committed
//! batches of ~5 rows on one core and the audit log cost two thirds of the throughput
//! (docs/performance.md).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, oneshot, watch};

use super::event::{AuditEvent, Outcome};
use super::stats::AuditStats;
use super::store::AuditStore;

/// How long shutdown keeps retrying a database that is down before counting the rest as lost.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A queued event, with the channel of the request waiting for it to be committed, if any.
pub(super) struct Queued {
    pub event: AuditEvent,
    pub ack: Option<oneshot::Sender<bool>>,
}

/// The writer's settings.
pub(super) struct WriterSettings {
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub write_timeout: Duration,
    /// Rows kept for retry at most (the queue's capacity).
    pub retry_capacity: usize,
}

/// The writer task's state.
pub(super) struct Writer {
    pub store: AuditStore,
    pub settings: WriterSettings,
    pub stats: Arc<AuditStats>,
    /// False after a failed write, until one succeeds: waiters are refused at once meanwhile.
    pub healthy: Arc<AtomicBool>,
    /// Rows whose write failed, oldest first.
    pub retry: VecDeque<AuditEvent>,
    /// Woken by waiting requests (and by a filling queue); see the module comment.
    pub kick: Arc<Notify>,
}

impl Writer {
    /// Runs until shutdown is signalled (or every sender is gone), then writes what is left.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Queued>, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            // Shutdown, or the `Audit` was dropped without one (its sender is gone): a writer on its
            // own thread must not outlive it, and `changed()` would return at once from then on.
            if *shutdown.borrow() || shutdown.has_changed().is_err() {
                break;
            }
            if !self.healthy.load(Ordering::Acquire) || !self.retry.is_empty() {
                if self.recover().await {
                    backoff = Duration::from_millis(100);
                } else {
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
            // A waiting request's kick, or the flush interval for events nobody waits on.
            tokio::select! {
                _ = self.kick.notified() => {}
                _ = tokio::time::sleep(self.settings.flush_interval) => {}
                _ = shutdown.changed() => continue,
            }
            // Everything queued, a batch at a time; what arrives meanwhile joins the next batch.
            let disconnected = loop {
                let (batch, closed) = self.take_batch(&mut rx);
                if batch.is_empty() {
                    break closed;
                }
                self.write(batch).await;
                if closed || !self.healthy.load(Ordering::Acquire) {
                    break closed;
                }
            };
            if disconnected {
                break;
            }
        }
        self.drain(rx).await;
    }

    /// Up to `batch_size` queued events, without waiting; and whether every sender is gone.
    fn take_batch(&self, rx: &mut mpsc::Receiver<Queued>) -> (Vec<Queued>, bool) {
        let mut batch = Vec::new();
        while batch.len() < self.settings.batch_size {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(mpsc::error::TryRecvError::Empty) => return (batch, false),
                Err(mpsc::error::TryRecvError::Disconnected) => return (batch, true),
            }
        }
        (batch, false)
    }

    /// Writes one batch and answers its waiters. A waiter that gave up is written as a failed attempt.
    async fn write(&mut self, batch: Vec<Queued>) {
        let n = batch.len();
        self.stats.dequeued(n);
        let mut events = Vec::with_capacity(n);
        let mut acks = Vec::new();
        for Queued { mut event, ack } in batch {
            match ack {
                Some(ack) if ack.is_closed() => mark_unavailable(&mut event),
                Some(ack) => acks.push(ack),
                None => {}
            }
            events.push(event);
        }
        let ok = self.insert(&events).await;
        for ack in acks {
            let _ = ack.send(ok);
        }
        if !ok {
            // Waiters were just refused (503): their rows become failed attempts; all are retried.
            for event in &mut events {
                if event.releases_plaintext() {
                    mark_unavailable(event);
                }
            }
            self.keep_for_retry(events);
        }
    }

    /// One insert with the deadline; updates health and counters.
    async fn insert(&self, events: &[AuditEvent]) -> bool {
        let started = Instant::now();
        let result = tokio::time::timeout(self.settings.write_timeout, self.store.insert(events)).await;
        match result {
            Ok(Ok(())) => {
                self.stats.written(events.len(), started.elapsed());
                self.healthy.store(true, Ordering::Release);
                true
            }
            Ok(Err(error)) => {
                self.failed(&error.to_string(), events.len());
                false
            }
            Err(_) => {
                self.failed("timed out", events.len());
                false
            }
        }
    }

    fn failed(&self, error: &str, rows: usize) {
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::error!(database = self.store.kind(), rows, error, "Audit write failed; retrying with backoff.");
        }
        self.stats.write_failed();
    }

    /// Retries held rows (or pings when there are none); true when the database took them.
    async fn recover(&mut self) -> bool {
        if self.retry.is_empty() {
            let ok = matches!(tokio::time::timeout(self.settings.write_timeout, self.store.ping()).await, Ok(Ok(())));
            if ok {
                self.healthy.store(true, Ordering::Release);
                tracing::info!(database = self.store.kind(), "Audit database reachable again.");
            }
            return ok;
        }
        while !self.retry.is_empty() {
            let take = self.retry.len().min(self.settings.batch_size);
            let events: Vec<AuditEvent> = self.retry.iter().take(take).cloned().collect();
            if !self.insert(&events).await {
                return false;
            }
            self.retry.drain(..take);
            self.stats.dequeued(take);
        }
        tracing::info!(database = self.store.kind(), "Audit database reachable again; held events written.");
        true
    }

    /// Holds rows for retry; beyond capacity the oldest are lost (and counted).
    fn keep_for_retry(&mut self, events: Vec<AuditEvent>) {
        self.stats.queued(events.len());
        self.retry.extend(events);
        let excess = self.retry.len().saturating_sub(self.settings.retry_capacity);
        if excess > 0 {
            self.retry.drain(..excess);
            self.stats.dequeued(excess);
            self.stats.lost(excess);
            tracing::error!(lost = excess, "Audit events lost: the database stayed down and the retry buffer is full.");
        }
    }

    /// Shutdown: refuse new events, write everything queued and held, retrying until the deadline.
    async fn drain(mut self, mut rx: mpsc::Receiver<Queued>) {
        rx.close();
        let deadline = Instant::now() + SHUTDOWN_DEADLINE;
        loop {
            let mut batch = Vec::new();
            while batch.len() < self.settings.batch_size {
                match rx.recv().await {
                    Some(item) => batch.push(item),
                    None => break,
                }
            }
            let done = batch.is_empty();
            if !done {
                self.write(batch).await;
            }
            if done && self.retry.is_empty() {
                break;
            }
            while !self.retry.is_empty() && !self.recover().await {
                if Instant::now() >= deadline {
                    let lost = self.retry.len();
                    self.stats.dequeued(lost);
                    self.stats.lost(lost);
                    tracing::error!(lost, "Audit events lost at shutdown: the database is down.");
                    self.retry.clear();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        self.store.close().await;
    }
}

/// The request that this event describes answered 503 because the event could not be committed.
pub(super) fn mark_unavailable(event: &mut AuditEvent) {
    event.outcome = Outcome::Failed;
    event.http_status = 503;
    event.reason = Some("audit-unavailable".into());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(dir: &std::path::Path) -> Writer {
        let url = format!("sqlite://{}", dir.join("audit.db").display());
        Writer {
            store: AuditStore::connect(&url, 1, Duration::from_secs(2)).unwrap(),
            settings: WriterSettings {
                batch_size: 16,
                flush_interval: Duration::from_secs(3600),
                write_timeout: Duration::from_secs(2),
                retry_capacity: 16,
            },
            stats: Arc::default(),
            healthy: Arc::new(AtomicBool::new(true)),
            retry: VecDeque::new(),
            kick: Arc::new(Notify::new()),
        }
    }

    /// On its own thread the writer outlives the runtime of whoever dropped the `Audit`; it must notice
    /// that its shutdown sender is gone instead of spinning on `changed()` (which then returns at once).
    #[tokio::test]
    async fn the_writer_ends_when_the_audit_is_dropped_without_a_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel::<Queued>(16);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let run = tokio::spawn(writer(dir.path()).run(rx, shutdown_rx));
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop((tx, shutdown));
        let ended = tokio::time::timeout(Duration::from_secs(5), run).await;
        assert!(matches!(ended, Ok(Ok(()))), "the writer kept running after its Audit was dropped");
    }
}
