//! The audit database: SQLite (a file, the embedded default) or PostgreSQL (several replicas).
//!
//! Runtime queries only (no compile-time database); the schema is in `migrations/{sqlite,postgres}/`,
//! embedded in the binary so an image needs no migration files beside it. Both schemas have the same
//! columns and types as seen from here (integers are i64), so one set of statements serves both.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Arguments, AssertSqlSafe, Encode, PgPool, QueryBuilder, Row, SqlStr, SqlitePool, Type};

use super::AuditError;
use super::event::{AuditEvent, Outcome};

/// The columns written, in order.
const COLUMNS: &str = "time_ms, request_id, email, subject, issuer, namespace, operation, payload_count, \
     decoded_count, kek_refs, outcome, reason, http_status, client_addr, user_agent";

/// A connected audit database.
#[derive(Clone, Debug)]
pub enum AuditStore {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever pool the store holds (the statements are the same).
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            AuditStore::Sqlite($pool) => $body,
            AuditStore::Postgres($pool) => $body,
        }
    };
}

/// 16384 pages of 4 KiB: 64 MiB of WAL before a commit checkpoints by itself (SQLite's default is 1000).
const WAL_AUTOCHECKPOINT_PAGES: &str = "16384";

/// Filters for `audit query`; every field narrows the result.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub namespace: Option<String>,
    pub email: Option<String>,
    pub operation: Option<String>,
    pub outcome: Option<Outcome>,
    /// Inclusive lower bound, Unix milliseconds.
    pub since_ms: Option<i64>,
    /// Exclusive upper bound, Unix milliseconds.
    pub until_ms: Option<i64>,
    pub limit: i64,
    /// Keyset paging: only events older than this position (the `next` of a previous page).
    pub before: Option<Cursor>,
}

/// A position in the newest-first order of events: `(time_ms, id)` of the last event of a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub time_ms: i64,
    pub id: i64,
}

/// One page of `query_page`: at most `limit` events, and where the next page starts if more match.
#[derive(Debug, Default)]
pub struct Page {
    pub events: Vec<AuditEvent>,
    pub next: Option<Cursor>,
}

impl AuditStore {
    /// Connects lazily: the pool opens connections on first use. With `migrate_on_start` the first use is
    /// at start, so a database that is down stops the server (Kubernetes restarts it); without it, the
    /// server starts and `/readyz` reports the database. A SQLite file is created if missing.
    pub fn connect(url: &str, max_connections: u32, acquire_timeout: Duration) -> Result<AuditStore, AuditError> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| AuditError::Config(format!("audit.database_url is not a valid SQLite URL: {e}")))?
                .create_if_missing(true)
                // WAL: readers (audit query) never block the writer; NORMAL: durable across a process
                // crash, one fsync per checkpoint instead of per commit.
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                // Checkpoints run in the background (`checkpoint`); a commit checkpoints itself only
                // as a safety net, when the WAL has grown this large.
                .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
                .busy_timeout(acquire_timeout);
            create_private_file(options.get_filename())?;
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(acquire_timeout)
                .connect_lazy_with(options);
            Ok(AuditStore::Sqlite(pool))
        } else {
            let options = PgConnectOptions::from_str(url)
                .map_err(|_| AuditError::Config("audit.database_url is not a valid PostgreSQL URL".into()))?
                .application_name("codec-server");
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(acquire_timeout)
                .connect_lazy_with(options);
            Ok(AuditStore::Postgres(pool))
        }
    }

    /// Connects to a database that must already exist, for reading and pruning: a SQLite file is never
    /// created, and a database without the audit table is refused with what to run.
    pub async fn open_existing(url: &str, acquire_timeout: Duration) -> Result<AuditStore, AuditError> {
        let not_migrated = |what: String| {
            AuditError::Config(format!(
                "{what}: run `codec-server migrate` with the same configuration first (or start the server with audit.migrate_on_start = true)"
            ))
        };
        let store = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| AuditError::Config(format!("audit.database_url is not a valid SQLite URL: {e}")))?
                .create_if_missing(false)
                .busy_timeout(acquire_timeout);
            let path = options.get_filename().to_path_buf();
            if !path.is_file() {
                return Err(not_migrated(format!("the audit database {} does not exist", path.display())));
            }
            let pool =
                SqlitePoolOptions::new().max_connections(1).acquire_timeout(acquire_timeout).connect_lazy_with(options);
            AuditStore::Sqlite(pool)
        } else {
            AuditStore::connect(url, 1, acquire_timeout)?
        };
        if !store.has_audit_table().await? {
            store.close().await;
            return Err(not_migrated(format!("the {} audit database has no audit_events table", store.kind())));
        }
        Ok(store)
    }

    /// Whether the schema has been created (`migrate` ran).
    pub async fn has_audit_table(&self) -> Result<bool, AuditError> {
        let n: i64 = match self {
            AuditStore::Sqlite(pool) => {
                let sql = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit_events'";
                sqlx::query_scalar(sql).fetch_one(pool).await?
            }
            AuditStore::Postgres(pool) => {
                let sql = "SELECT COUNT(*) FROM information_schema.tables \
                           WHERE table_name = 'audit_events' AND table_schema = ANY (current_schemas(false))";
                sqlx::query_scalar(sql).fetch_one(pool).await?
            }
        };
        Ok(n > 0)
    }

    /// `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            AuditStore::Sqlite(_) => "sqlite",
            AuditStore::Postgres(_) => "postgres",
        }
    }

    /// Applies pending migrations; returns how many ran.
    pub async fn migrate(&self) -> Result<usize, AuditError> {
        let migrator = self.migrator();
        let before = self.applied_migrations().await.unwrap_or(0);
        with_pool!(self, pool => migrator.run(pool).await).map_err(|e| AuditError::Migrate(e.to_string()))?;
        let after = self.applied_migrations().await?;
        Ok(after.saturating_sub(before))
    }

    async fn applied_migrations(&self) -> Result<usize, AuditError> {
        let sql = "SELECT COUNT(*) FROM _sqlx_migrations WHERE success";
        let n: i64 = with_pool!(self, pool => sqlx::query_scalar(sql).fetch_one(pool).await)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    fn migrator(&self) -> Migrator {
        let files: &[(i64, &'static str, &'static str)] = match self {
            AuditStore::Sqlite(_) => {
                &[(1, "audit events", include_str!("../../migrations/sqlite/0001_audit_events.sql"))]
            }
            AuditStore::Postgres(_) => {
                &[(1, "audit events", include_str!("../../migrations/postgres/0001_audit_events.sql"))]
            }
        };
        let migrations = files
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    SqlStr::from_static(sql),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
    }

    /// Inserts the events with one statement (one transaction).
    pub async fn insert(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
        if events.is_empty() {
            return Ok(());
        }
        match self {
            AuditStore::Sqlite(pool) => {
                let args = sqlite_arguments(events).map_err(sqlx::Error::Encode)?;
                sqlx::query_with(AssertSqlSafe(insert_sql(events.len(), Placeholders::Question)), args)
                    .execute(pool)
                    .await?;
            }
            AuditStore::Postgres(pool) => {
                let args: PgArguments = event_arguments(events, |_, value| value).map_err(sqlx::Error::Encode)?;
                sqlx::query_with(AssertSqlSafe(insert_sql(events.len(), Placeholders::Numbered)), args)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Events matching `filter`, newest first (at most `filter.limit`).
    pub async fn query(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, AuditError> {
        Ok(self.query_page(filter).await?.events)
    }

    /// Like `query`, and says whether more events match: `next` is where the following page starts.
    pub async fn query_page(&self, filter: &AuditFilter) -> Result<Page, AuditError> {
        let mut rows = self.select(filter, filter.limit.saturating_add(1)).await?;
        let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > filter.limit;
        if more {
            rows.pop();
        }
        let next = if more { rows.last().map(|(cursor, _)| *cursor) } else { None };
        Ok(Page { events: rows.into_iter().map(|(_, event)| event).collect(), next })
    }

    async fn select(&self, filter: &AuditFilter, limit: i64) -> Result<Vec<(Cursor, AuditEvent)>, AuditError> {
        with_pool!(self, pool => {
            let mut q = QueryBuilder::new(format!("SELECT id, {COLUMNS} FROM audit_events WHERE 1 = 1"));
            if let Some(v) = &filter.namespace {
                q.push(" AND namespace = ").push_bind(v.as_str());
            }
            if let Some(v) = &filter.email {
                q.push(" AND email = ").push_bind(v.to_ascii_lowercase());
            }
            if let Some(v) = &filter.operation {
                q.push(" AND operation = ").push_bind(v.as_str());
            }
            if let Some(v) = filter.outcome {
                q.push(" AND outcome = ").push_bind(v.as_str());
            }
            if let Some(v) = filter.since_ms {
                q.push(" AND time_ms >= ").push_bind(v);
            }
            if let Some(v) = filter.until_ms {
                q.push(" AND time_ms < ").push_bind(v);
            }
            if let Some(c) = filter.before {
                q.push(" AND (time_ms < ").push_bind(c.time_ms);
                q.push(" OR (time_ms = ").push_bind(c.time_ms).push(" AND id < ").push_bind(c.id).push("))");
            }
            q.push(" ORDER BY time_ms DESC, id DESC LIMIT ").push_bind(limit);
            let rows = q.build().fetch_all(pool).await?;
            rows.iter().map(|row| Ok((Cursor { time_ms: row.try_get("time_ms")?, id: row.try_get("id")? }, AuditEvent {
                time_ms: row.try_get("time_ms")?,
                request_id: row.try_get("request_id")?,
                email: row.try_get("email")?,
                subject: row.try_get("subject")?,
                issuer: row.try_get("issuer")?,
                namespace: row.try_get("namespace")?,
                operation: row.try_get("operation")?,
                payload_count: row.try_get("payload_count")?,
                decoded_count: row.try_get("decoded_count")?,
                kek_refs: row.try_get("kek_refs")?,
                outcome: {
                    let text: String = row.try_get("outcome")?;
                    Outcome::parse(&text).ok_or(AuditError::Corrupt("outcome"))?
                },
                reason: row.try_get("reason")?,
                http_status: row.try_get("http_status")?,
                client_addr: row.try_get("client_addr")?,
                user_agent: row.try_get("user_agent")?,
            }))).collect()
        })
    }

    /// Number of stored events.
    pub async fn count(&self) -> Result<i64, AuditError> {
        let sql = "SELECT COUNT(*) FROM audit_events";
        Ok(with_pool!(self, pool => sqlx::query_scalar(sql).fetch_one(pool).await)?)
    }

    /// Deletes events older than `before_ms`; returns how many.
    pub async fn prune(&self, before_ms: i64) -> Result<u64, AuditError> {
        let done = with_pool!(self, pool => {
            sqlx::query("DELETE FROM audit_events WHERE time_ms < $1").bind(before_ms).execute(pool).await?
                .rows_affected()
        });
        Ok(done)
    }

    /// A cheap round trip, for `/readyz` and for noticing that the database is back.
    pub async fn ping(&self) -> Result<(), AuditError> {
        with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// SQLite: copies the WAL into the database file (`PASSIVE`: never waits for the writer). Run on its
    /// own connection, so the `fsync`s of a checkpoint are not inside a commit that fail-closed
    /// requests wait for (with SQLite's automatic checkpoints they were: p99 6.7-7.5 ms instead of
    /// 3.3-4.2 ms at 1x1KiB, docs/performance.md). PostgreSQL checkpoints itself: nothing to do.
    pub async fn checkpoint(&self) -> Result<(), AuditError> {
        if let AuditStore::Sqlite(pool) = self {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(pool).await?;
        }
        Ok(())
    }

    /// Closes every connection.
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await);
    }
}

/// Columns per row of `COLUMNS`, in `event_arguments`' order.
const COLUMN_COUNT: usize = 15;

/// How a database spells bind parameters.
#[derive(Clone, Copy)]
enum Placeholders {
    /// SQLite: `?`, bound in order.
    Question,
    /// PostgreSQL: `$1`, `$2`, …
    Numbered,
}

/// `INSERT INTO audit_events (COLUMNS) VALUES (…), (…)` for `rows` rows: the text sqlx's `QueryBuilder`
/// made, built with `push_str`. `QueryBuilder` writes every separator and placeholder through `fmt`,
/// ~7.5k instructions per row: 5 % of a 1x1KiB decode with the audit on (docs/performance.md).
fn insert_sql(rows: usize, placeholders: Placeholders) -> String {
    let mut sql = String::with_capacity(COLUMNS.len() + 40 + rows * COLUMN_COUNT * 6);
    sql.push_str("INSERT INTO audit_events (");
    sql.push_str(COLUMNS);
    sql.push_str(") VALUES ");
    let mut n: u64 = 0;
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..COLUMN_COUNT {
            if column > 0 {
                sql.push_str(", ");
            }
            n += 1;
            match placeholders {
                Placeholders::Question => sql.push('?'),
                Placeholders::Numbered => {
                    sql.push('$');
                    crate::decimal::push(&mut sql, n, 1);
                }
            }
        }
        sql.push(')');
    }
    sql
}

/// The bind values of `events`, row after row, in the order of `COLUMNS`. Each text value is bound as
/// `text(column, value)` makes it (`column` counts from 0 in `COLUMNS`).
fn event_arguments<'e, A, T>(
    events: &'e [AuditEvent],
    mut text: impl FnMut(usize, &'e str) -> T,
) -> Result<A, sqlx::error::BoxDynError>
where
    A: Arguments,
    i64: Encode<'e, A::Database> + Type<A::Database>,
    T: Encode<'e, A::Database> + Type<A::Database>,
    Option<T>: Encode<'e, A::Database> + Type<A::Database>,
{
    let mut args = A::default();
    for e in events {
        args.add(e.time_ms)?;
        args.add(text(1, &e.request_id))?;
        args.add(e.email.as_deref().map(|v| text(2, v)))?;
        args.add(e.subject.as_deref().map(|v| text(3, v)))?;
        args.add(e.issuer.as_deref().map(|v| text(4, v)))?;
        args.add(text(5, &e.namespace))?;
        args.add(text(6, &e.operation))?;
        args.add(e.payload_count)?;
        args.add(e.decoded_count)?;
        args.add(text(9, &e.kek_refs))?;
        args.add(text(10, e.outcome.as_str()))?;
        args.add(e.reason.as_deref().map(|v| text(11, v)))?;
        args.add(e.http_status)?;
        args.add(e.client_addr.as_deref().map(|v| text(13, v)))?;
        args.add(e.user_agent.as_deref().map(|v| text(14, v)))?;
    }
    Ok(args)
}

/// SQLite's bind values of `events`: each text value an `Arc<str>`, shared with the same column of the
/// row before when equal. sqlx copies a bound `&str` into a new `Arc<String>` (two allocations, freed
/// later on SQLite's thread); in a batch only the request id changes on every row, while namespace,
/// operation, caller, KEK, outcome and address mostly repeat. (PostgreSQL's driver writes a `&str`
/// straight into its message buffer, so it binds the events' own text.)
fn sqlite_arguments(events: &[AuditEvent]) -> Result<SqliteArguments, sqlx::error::BoxDynError> {
    let mut previous: [Option<Arc<str>>; COLUMN_COUNT] = std::array::from_fn(|_| None);
    event_arguments(events, |column, value| match &previous[column] {
        Some(shared) if **shared == *value => shared.clone(),
        _ => previous[column].insert(Arc::from(value)).clone(),
    })
}

/// Creates the SQLite file (and its directory) readable by the owner only, before SQLite does: the rows
/// name people, and SQLite gives its `-wal`/`-shm` files the database file's permissions.
fn create_private_file(path: &std::path::Path) -> Result<(), AuditError> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" || path.exists() {
        return Ok(());
    }
    let fail =
        |e: std::io::Error| AuditError::Config(format!("cannot create the audit database {}: {e}", path.display()));
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path).map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-built text is exactly what sqlx's `QueryBuilder::push_values` makes, for both databases.
    #[test]
    fn insert_sql_matches_the_query_builder() {
        fn built<DB: sqlx::Database>(rows: usize) -> String
        where
            i64: for<'t> Encode<'t, DB> + Type<DB>,
        {
            let mut q = QueryBuilder::<DB>::new(format!("INSERT INTO audit_events ({COLUMNS}) "));
            q.push_values(0..rows, |mut row, _| {
                for _ in 0..COLUMN_COUNT {
                    row.push_bind(0_i64);
                }
            });
            q.into_string()
        }
        for rows in [1, 2, 7, 500] {
            assert_eq!(insert_sql(rows, Placeholders::Question), built::<sqlx::Sqlite>(rows), "{rows} rows");
            assert_eq!(insert_sql(rows, Placeholders::Numbered), built::<sqlx::Postgres>(rows), "{rows} rows");
        }
        assert_eq!(COLUMNS.split(',').count(), COLUMN_COUNT);
    }

    /// Values shared with the row before (`sqlite_arguments`) still land in the right rows: equal, changed,
    /// absent and present again.
    #[tokio::test]
    async fn a_batch_reads_back_exactly_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            AuditStore::connect(&format!("sqlite://{}", dir.path().join("a.db").display()), 1, Duration::from_secs(5))
                .unwrap();
        store.migrate().await.unwrap();
        let event = |n: i64, email: Option<&str>, namespace: &str, agent: Option<&str>| AuditEvent {
            time_ms: 1_000 + n,
            request_id: format!("r{n}"),
            email: email.map(str::to_owned),
            subject: Some("sub".into()),
            namespace: namespace.into(),
            operation: "decode".into(),
            payload_count: n,
            decoded_count: n,
            kek_refs: "vault://k".into(),
            outcome: Outcome::Success,
            http_status: 200,
            user_agent: agent.map(str::to_owned),
            ..AuditEvent::unrecorded()
        };
        let written = vec![
            event(1, Some("a@x"), "ns1", None),
            event(2, Some("a@x"), "ns1", Some("ua")),
            event(3, None, "ns2", Some("ua")),
            event(4, Some("b@x"), "ns1", None),
            event(5, Some("b@x"), "ns1", Some("ua2")),
        ];
        store.insert(&written).await.unwrap();
        let mut read = store.query(&AuditFilter { limit: 10, ..AuditFilter::default() }).await.unwrap();
        read.reverse();
        assert_eq!(read, written);
        store.close().await;
    }
}
