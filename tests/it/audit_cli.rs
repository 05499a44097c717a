//! `codec-server audit query|prune` through the real binary: it says when more events match than it
//! printed, pages with `--all`, and on a database that `migrate` never set up it says what to run and
//! creates nothing.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use codec_server::audit::{AuditEvent, AuditStore, Outcome};

fn codec_server(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_codec-server"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("CODEC_CONFIG")
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run codec-server")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A successful decode by alice in `payments` (it releases plaintext: a fail-closed record waits for it).
pub fn event(i: i64, time_ms: i64) -> AuditEvent {
    AuditEvent {
        time_ms,
        request_id: format!("r-{i}"),
        email: Some("alice@example.com".into()),
        subject: Some("user-1".into()),
        issuer: None,
        namespace: "payments".into(),
        operation: "decode".into(),
        payload_count: 1,
        decoded_count: 1,
        kek_refs: "local://dev".into(),
        outcome: Outcome::Success,
        reason: None,
        http_status: 200,
        client_addr: None,
        user_agent: None,
    }
}

/// A migrated database in `dir` holding `n` events; several share a millisecond, so paging must not
/// rely on time alone.
async fn database_with(dir: &Path, n: i64) {
    let migrated = codec_server(dir, &["migrate"]);
    assert!(migrated.status.success(), "{}", text(&migrated.stderr));
    let url = format!("sqlite://{}", dir.join("audit.db").display());
    let store = AuditStore::connect(&url, 1, Duration::from_secs(5)).unwrap();
    let events: Vec<AuditEvent> = (0..n).map(|i| event(i, 1_790_000_000_000 + i / 3)).collect();
    for batch in events.chunks(500) {
        store.insert(batch).await.unwrap();
    }
    store.close().await;
}

fn request_ids(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).expect("one JSON object per line");
            row["request_id"].as_str().expect("request_id").to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_query_that_stops_at_its_limit_says_so_and_all_pages_through_every_event() {
    let dir = tempfile::tempdir().unwrap();
    database_with(dir.path(), 2500).await;

    let limited = codec_server(dir.path(), &["audit", "query", "--format", "json", "--limit", "7"]);
    assert!(limited.status.success(), "{}", text(&limited.stderr));
    let ids = request_ids(&text(&limited.stdout));
    assert_eq!(ids.len(), 7);
    assert_eq!(ids[0], "r-2499", "newest first");
    let note = text(&limited.stderr);
    assert!(note.contains("more events match") && note.contains("--all"), "{note}");

    let all = codec_server(dir.path(), &["audit", "query", "--format", "json", "--all"]);
    assert!(all.status.success(), "{}", text(&all.stderr));
    let ids = request_ids(&text(&all.stdout));
    let expected: Vec<String> = (0..2500).rev().map(|i| format!("r-{i}")).collect();
    assert_eq!(ids, expected, "every event once, newest first, across pages of 1000");
    assert!(!text(&all.stderr).contains("more events match"));

    let csv = codec_server(dir.path(), &["audit", "query", "--format", "csv", "--all", "--namespace", "payments"]);
    let csv = text(&csv.stdout);
    assert_eq!(csv.lines().count(), 2501, "one header line, then every row");
    assert_eq!(csv.lines().filter(|l| l.starts_with("time,")).count(), 1);

    let exact = codec_server(dir.path(), &["audit", "query", "--limit", "2500"]);
    assert!(!text(&exact.stderr).contains("more events match"), "nothing more to say when all fit");
    assert!(text(&exact.stdout).contains("(2500 event(s))"));
}

#[tokio::test]
async fn without_migrations_query_and_prune_say_to_run_migrate_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");

    for args in [&["audit", "query"][..], &["audit", "prune", "--older-than", "400d"]] {
        let out = codec_server(dir.path(), args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("codec-server migrate"), "{args:?}: {err}");
        assert!(!err.contains("no such table") && !err.contains("acktrace"), "{args:?}: {err}");
        assert!(!db.exists(), "{args:?} created {}", db.display());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "{args:?} created files");
    }

    // A database file without the audit table (another tool's, or an empty file) is left as it was.
    std::fs::write(&db, b"").unwrap();
    let out = codec_server(dir.path(), &["audit", "query"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no audit_events table") && err.contains("codec-server migrate"), "{err}");
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0, "the file was not written");
}
