//! `codec-server migrate` and `codec-server audit query|prune`: the audit database from the shell.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};

use crate::audit::event::without_controls;
use crate::audit::{AuditError, AuditEvent, AuditFilter, AuditStore, Outcome, now_millis};
use crate::config::Config;

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print events, newest first. When more events match than were printed, a note on stderr says so.
    Query {
        #[arg(long)]
        namespace: Option<String>,
        #[arg(long)]
        email: Option<String>,
        /// encode or decode.
        #[arg(long)]
        operation: Option<String>,
        /// success, denied, passthrough or failed.
        #[arg(long)]
        outcome: Option<String>,
        /// Start: an RFC 3339 time (2026-11-01T00:00:00Z) or an age (24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// End (exclusive): an RFC 3339 time or an age.
        #[arg(long)]
        until: Option<String>,
        /// Most events to print (newest first); a note on stderr says when more match.
        #[arg(long, default_value_t = 100, conflicts_with = "all")]
        limit: i64,
        /// Print every matching event, read from the database in pages of 1000.
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Delete events older than a duration, e.g. `--older-than 400d`.
    Prune {
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Duration,
    },
}

/// Output formats of `audit query`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Table,
    /// One JSON object per line.
    Json,
    Csv,
}

/// Page size of `audit query --all`.
const ALL_PAGE: i64 = 1000;

/// Connects to the configured audit database for `migrate` (a SQLite file is created if missing).
async fn open_for_migrate(config: &Config) -> anyhow::Result<AuditStore> {
    let url = config.audit_database_url();
    let store = AuditStore::connect(&url, 1, config.audit.write_timeout)?;
    store.ping().await.context("cannot reach the audit database (audit.database_url)")?;
    Ok(store)
}

/// Connects to an audit database that `migrate` already set up; creates nothing.
async fn open_existing(config: &Config) -> anyhow::Result<AuditStore> {
    let url = config.audit_database_url();
    AuditStore::open_existing(&url, config.audit.write_timeout).await.map_err(|e| match e {
        AuditError::Config(text) => anyhow::anyhow!(text),
        other => anyhow::Error::new(other).context("cannot reach the audit database (audit.database_url)"),
    })
}

/// `codec-server migrate`.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store = open_for_migrate(config).await?;
    let applied = store.migrate().await?;
    println!("{}: {applied} migration(s) applied; schema is current", store.kind());
    store.close().await;
    Ok(())
}

/// `codec-server audit …`.
pub async fn run(config: &Config, command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Query { namespace, email, operation, outcome, since, until, limit, all, format } => {
            if !(1..=1_000_000).contains(&limit) {
                bail!("--limit must be between 1 and 1000000");
            }
            let outcome = match outcome {
                Some(text) => Some(
                    Outcome::parse(&text)
                        .with_context(|| format!("--outcome `{text}`: use success, denied, passthrough or failed"))?,
                ),
                None => None,
            };
            if let Some(op) = &operation
                && !matches!(op.as_str(), "encode" | "decode")
            {
                bail!("--operation `{op}`: use encode or decode");
            }
            let filter = AuditFilter {
                namespace,
                email,
                operation,
                outcome,
                since_ms: since.as_deref().map(parse_time).transpose().context("--since")?,
                until_ms: until.as_deref().map(parse_time).transpose().context("--until")?,
                limit: if all { ALL_PAGE } else { limit },
                before: None,
            };
            let store = open_existing(config).await?;
            let result = query(&store, filter, all, format).await;
            store.close().await;
            result
        }
        AuditCommand::Prune { older_than } => {
            let store = open_existing(config).await?;
            let cutoff = now_millis().saturating_sub(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX));
            let deleted = store.prune(cutoff).await?;
            println!("deleted {deleted} event(s) older than {}", format_time(cutoff));
            store.close().await;
            Ok(())
        }
    }
}

/// Prints one page, or with `all` every page; says on stderr when more events match than were printed.
async fn query(store: &AuditStore, mut filter: AuditFilter, all: bool, format: Format) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let mut table = Vec::new();
    let mut printed = 0usize;
    write_header(&mut out, format)?;
    loop {
        let page = store.query_page(&filter).await?;
        printed += page.events.len();
        match format {
            // A table needs every row for its column widths.
            Format::Table => table.extend(page.events),
            _ => write_rows(&mut out, &page.events, format)?,
        }
        match page.next {
            Some(next) if all => filter.before = Some(next),
            Some(_) => {
                write_table(&mut out, &table, format)?;
                out.flush()?;
                eprintln!(
                    "note: more events match; showing the newest {printed}. Use --all for every match, or narrow with --since/--until."
                );
                return Ok(());
            }
            None => break,
        }
    }
    write_table(&mut out, &table, format)?;
    out.flush()?;
    Ok(())
}

/// An RFC 3339 time, or an age counted back from now.
fn parse_time(text: &str) -> anyhow::Result<i64> {
    if let Ok(age) = humantime::parse_duration(text) {
        return Ok(now_millis().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)));
    }
    let time = humantime::parse_rfc3339_weak(text)
        .with_context(|| format!("`{text}` is neither an RFC 3339 time (2026-11-01T00:00:00Z) nor an age (24h)"))?;
    let ms = time.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    Ok(i64::try_from(ms).unwrap_or(i64::MAX))
}

fn format_time(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(time.min(SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799)))
        .to_string()
}

const HEADERS: [&str; 15] = [
    "time",
    "request_id",
    "email",
    "subject",
    "issuer",
    "namespace",
    "operation",
    "payloads",
    "decoded",
    "kek_refs",
    "outcome",
    "reason",
    "status",
    "client",
    "user_agent",
];

/// Every column as text, with control characters replaced: rows written by older versions or by hand
/// must not be able to drive the operator's terminal either.
fn fields(e: &AuditEvent) -> [String; 15] {
    fields_raw(e).map(|f| without_controls(&f))
}

fn fields_raw(e: &AuditEvent) -> [String; 15] {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    [
        format_time(e.time_ms),
        e.request_id.clone(),
        opt(&e.email),
        opt(&e.subject),
        opt(&e.issuer),
        e.namespace.clone(),
        e.operation.clone(),
        e.payload_count.to_string(),
        e.decoded_count.to_string(),
        e.kek_refs.clone(),
        e.outcome.as_str().to_owned(),
        opt(&e.reason),
        e.http_status.to_string(),
        opt(&e.client_addr),
        opt(&e.user_agent),
    ]
}

/// The CSV header line (nothing for the other formats).
fn write_header(out: &mut impl Write, format: Format) -> std::io::Result<()> {
    match format {
        Format::Csv => writeln!(out, "{}", HEADERS.join(",")),
        Format::Json | Format::Table => Ok(()),
    }
}

/// JSON lines or CSV rows, streamed page by page (nothing for a table).
fn write_rows(out: &mut impl Write, events: &[AuditEvent], format: Format) -> std::io::Result<()> {
    match format {
        Format::Json => {
            for e in events {
                let object: serde_json::Map<String, serde_json::Value> = HEADERS
                    .iter()
                    .zip(fields(e))
                    .map(|(k, v)| {
                        let value = match *k {
                            "payloads" | "decoded" | "status" => serde_json::json!(v.parse::<i64>().unwrap_or(0)),
                            _ if v.is_empty() && *k != "kek_refs" => serde_json::Value::Null,
                            _ => serde_json::Value::String(v),
                        };
                        ((*k).to_owned(), value)
                    })
                    .collect();
                writeln!(out, "{}", serde_json::Value::Object(object))?;
            }
        }
        Format::Csv => {
            for e in events {
                let row: Vec<String> = fields(e).iter().map(|f| csv_field(f)).collect();
                writeln!(out, "{}", row.join(","))?;
            }
        }
        Format::Table => {}
    }
    Ok(())
}

/// The whole table, aligned (nothing for the streamed formats).
fn write_table(out: &mut impl Write, events: &[AuditEvent], format: Format) -> std::io::Result<()> {
    match format {
        Format::Json | Format::Csv => {}
        Format::Table => {
            // The columns people scan; json/csv have them all.
            let columns = [0usize, 2, 5, 6, 7, 8, 10, 11, 12];
            let rows: Vec<[String; 15]> = events.iter().map(fields).collect();
            let widths: Vec<usize> = columns
                .iter()
                .map(|&c| rows.iter().map(|r| r[c].chars().count()).chain([HEADERS[c].len()]).max().unwrap_or(0))
                .collect();
            let line = |cells: Vec<&str>| {
                cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ")
            };
            writeln!(out, "{}", line(columns.iter().map(|&c| HEADERS[c]).collect()).trim_end())?;
            for r in &rows {
                writeln!(out, "{}", line(columns.iter().map(|&c| r[c].as_str()).collect()).trim_end())?;
            }
            writeln!(out, "({} event(s))", rows.len())?;
        }
    }
    Ok(())
}

/// RFC 4180 quoting; a leading formula character is prefixed so spreadsheets do not run it.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) { format!("'{value}") } else { value.to_owned() };
    if value.contains([',', '"', '\n', '\r']) { format!("\"{}\"", value.replace('"', "\"\"")) } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
    }

    #[test]
    fn times_are_rfc3339_or_ages() {
        assert_eq!(parse_time("2026-11-01T00:00:00Z").unwrap(), 1_793_491_200_000);
        let day_ago = parse_time("1d").unwrap();
        assert!((now_millis() - day_ago - 86_400_000).abs() < 5_000);
        assert!(parse_time("yesterday").is_err());
        assert_eq!(format_time(1_793_491_200_000), "2026-11-01T00:00:00.000Z");
    }
}
