//! `[audit]`: where audit events go and what happens when they cannot be written (DESIGN §7).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Secret;

/// Audit log settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Record every encode, decode and denial. Turning it off is for benchmarks and local experiments.
    pub enabled: bool,
    /// `sqlite://PATH` or `postgres://…` (a secret: it may hold a password; `CODEC_AUDIT__DATABASE_URL_FILE`
    /// reads it from a file). Default: `sqlite://<data_dir>/audit.db`.
    pub database_url: Option<Secret>,
    /// What a decode does when its event cannot be queued or persisted.
    pub on_failure: AuditFailureMode,
    /// Events waiting for the writer at most; beyond this, fail-closed answers 503 and fail-open drops.
    pub queue_capacity: usize,
    /// Rows per insert statement at most.
    pub batch_size: usize,
    /// How long the writer waits to fill a batch when no request is waiting on it.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Deadline for one batch insert, and for a request waiting for its event to be persisted.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Apply pending migrations at start (otherwise run `codec-server migrate` first).
    pub migrate_on_start: bool,
    /// Database connections per replica.
    pub max_connections: u32,
    /// Delete events older than this, checked hourly; unset keeps everything.
    #[serde(with = "humantime_serde")]
    pub retention: Option<Duration>,
}

/// `audit.on_failure`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AuditFailureMode {
    /// A decode whose event cannot be persisted answers 503 and releases nothing.
    #[default]
    FailClosed,
    /// Serve anyway; the loss is counted in a metric and logged.
    FailOpen,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: true,
            database_url: None,
            on_failure: AuditFailureMode::FailClosed,
            queue_capacity: 10_000,
            batch_size: 500,
            flush_interval: Duration::from_millis(200),
            write_timeout: Duration::from_secs(2),
            migrate_on_start: true,
            max_connections: 4,
            retention: None,
        }
    }
}

impl AuditConfig {
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        if self.queue_capacity == 0 || self.batch_size == 0 || self.max_connections == 0 {
            anyhow::bail!("audit.queue_capacity, audit.batch_size and audit.max_connections must be at least 1");
        }
        if self.batch_size > 4_000 {
            anyhow::bail!(
                "audit.batch_size must be at most 4000 (one insert statement per batch; PostgreSQL allows 65535 parameters)"
            );
        }
        if self.write_timeout.is_zero() || self.flush_interval.is_zero() {
            anyhow::bail!("audit.write_timeout and audit.flush_interval must be greater than zero");
        }
        if let Some(url) = &self.database_url {
            let url = url.expose();
            if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                anyhow::bail!(
                    "audit.database_url must start with sqlite:// (a file) or postgres:// (e.g. postgres://user@host/db)"
                );
            }
        }
        Ok(())
    }
}
