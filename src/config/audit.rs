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
    /// PostgreSQL only: a PEM file of the CA(s) that signed the database's certificate (RDS, Cloud SQL or a
    /// private CA), trusted in addition to the bundled public roots. The URL gets
    /// `sslrootcert=<file>`, and `sslmode=verify-full` unless it names an `sslmode` itself.
    pub database_ca_file: Option<std::path::PathBuf>,
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
    /// Database connections per replica for `/readyz`, checkpoints, pruning and queries; the writer
    /// holds one more of its own (so a replica opens up to `max_connections + 1`).
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
            database_ca_file: None,
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
        if let Some(ca) = &self.database_ca_file {
            let text = ca.to_string_lossy();
            let plain = !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b));
            if !plain {
                anyhow::bail!(
                    "audit.database_ca_file `{text}` must be a path of letters, digits and / . _ - (it is passed in the database URL)"
                );
            }
        }
        if let Some(url) = &self.database_url {
            let url = url.expose();
            if self.database_ca_file.is_some() && url.starts_with("sqlite:") {
                anyhow::bail!("audit.database_ca_file is for PostgreSQL; the SQLite audit database has no TLS");
            }
            if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                anyhow::bail!(
                    "audit.database_url must start with sqlite:// (a file) or postgres:// (e.g. postgres://user@host/db)"
                );
            }
            // Every connection to an in-memory SQLite database opens a database of its own: the writer's
            // rows would be invisible to `/readyz`, the CLI and pruning, and gone at exit.
            if url.starts_with("sqlite:") && (url.contains(":memory:") || url.contains("mode=memory")) {
                anyhow::bail!(
                    "audit.database_url must name a file: an in-memory SQLite database is one per connection and lost at exit (e.g. sqlite:///var/lib/codec-server/audit.db)"
                );
            }
        }
        Ok(())
    }
}

/// `url` with `sslrootcert=<ca_file>` (and `sslmode=verify-full` when it names no sslmode) appended, for
/// a PostgreSQL URL; any other URL, or no CA file, unchanged.
pub fn with_ca_file(url: &str, ca_file: Option<&std::path::Path>) -> String {
    let Some(ca) = ca_file else { return url.to_owned() };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return url.to_owned();
    }
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let has = |key: &str| query.split('&').any(|pair| pair.split('=').next() == Some(key));
    let mut out = url.to_owned();
    let mut push = |pair: String| {
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str(&pair);
    };
    if !has("sslmode") && !has("ssl-mode") {
        push("sslmode=verify-full".to_owned());
    }
    push(format!("sslrootcert={}", ca.display()));
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{AuditConfig, with_ca_file};
    use crate::secret::Secret;

    #[test]
    fn a_ca_file_is_added_to_postgres_urls_with_verify_full_unless_a_mode_is_named() {
        let ca = Some(Path::new("/run/ca/ca.crt"));
        assert_eq!(
            with_ca_file("postgres://u@h/db", ca),
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=/run/ca/ca.crt"
        );
        assert_eq!(
            with_ca_file("postgres://u@h/db?sslmode=verify-ca", ca),
            "postgres://u@h/db?sslmode=verify-ca&sslrootcert=/run/ca/ca.crt"
        );
        assert_eq!(with_ca_file("sqlite:///x/audit.db", ca), "sqlite:///x/audit.db");
        assert_eq!(with_ca_file("postgres://u@h/db", None), "postgres://u@h/db");
    }

    #[test]
    fn an_in_memory_sqlite_audit_database_is_refused() {
        let with_url = |url: &str| AuditConfig { database_url: Some(Secret::new(url)), ..AuditConfig::default() };
        for url in ["sqlite::memory:", "sqlite://:memory:", "sqlite://audit?mode=memory&cache=shared"] {
            let error = with_url(url).validate().unwrap_err().to_string();
            assert!(error.contains("in-memory"), "{url}: {error}");
        }
        assert!(with_url("sqlite:///var/lib/codec-server/audit.db").validate().is_ok());
        assert!(with_url("postgres://u@h/db").validate().is_ok());
    }
}
