//! The audit log against a real PostgreSQL cluster (and SQLite where the CLI and shutdown are
//! concerned): load, a database that goes away under fail-closed and fail-open, the `migrate` and
//! `audit query|prune` commands, and a SIGTERM in the middle of load.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use codec_server::audit::{AuditEvent, AuditFilter, AuditStore, Outcome, now_millis};
use codec_server::config::{AuditFailureMode, Secret};
use codec_server::protocol::Payload;
use futures_util::StreamExt;
use serde_json::Value;

use crate::audit::{decode_load, flushed_rows};
use crate::helpers::{TestApp, error_code, payload};
use crate::support::postgres::Postgres;
use crate::support::prometheus;

const SECRET: &[u8] = b"\"wire 250000 EUR to DE89370400440532013000\"";

async fn postgres_app(pg: &Postgres, configure: impl FnOnce(&mut codec_server::config::Config)) -> TestApp {
    let url = pg.url.clone();
    TestApp::spawn_with(move |c| {
        c.audit.database_url = Some(Secret::new(url));
        c.audit.write_timeout = Duration::from_millis(500);
        configure(c);
    })
    .await
}

/// Decodes until one answers 200 (the writer noticed the database is back), bounded by a deadline.
async fn decode_until_ok(app: &TestApp, sealed: &[Payload]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = app.post_decode("ns", sealed).await;
        if response.status() == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "decodes did not recover after the database came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn postgres_ten_thousand_concurrent_decodes_write_ten_thousand_rows() {
    let pg = Postgres::start();
    let app = postgres_app(&pg, |_| {}).await;
    let sealed = app.encode("load", vec![payload(b"\"x\"")]).await;
    assert_eq!(decode_load(&app, &sealed, 10_000, 64).await, 10_000);
    let rows = flushed_rows(&app).await;
    assert_eq!(rows.len(), 10_001);
    assert_eq!(rows.iter().filter(|r| r.outcome == Outcome::Success && r.decoded_count == 1).count(), 10_000);
}

#[tokio::test]
async fn postgres_down_fail_closed_answers_503_releases_nothing_and_recovers() {
    let pg = Postgres::start();
    let app = postgres_app(&pg, |_| {}).await;
    let sealed = app.encode("ns", vec![payload(SECRET)]).await;
    app.decode("ns", &sealed).await;

    pg.stop();
    for _ in 0..5 {
        let response = app.post_decode("ns", &sealed).await;
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
        let text = response.text().await.unwrap();
        assert!(!text.contains("DE89370400440532013000"), "a refused decode released plaintext: {text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"]["code"], "audit-unavailable");
    }
    // Refusals are counted and exposed. The replica stays ready (a shared database outage must not
    // empty the Service of every replica at once); the verbose view and /metrics name the database.
    app.clock.advance(Duration::from_secs(10));
    let ready = app.client.get(app.url("/readyz?verbose")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!((&body["status"], &body["dependencies"]["audit"]), (&"ready".into(), &"unreachable".into()), "{body}");
    assert!(!body.to_string().contains("127.0.0.1"), "readiness names no addresses: {body}");
    let metrics = prometheus::parse(&app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap());
    let refused = prometheus::value(&metrics, "codec_audit_requests_refused_total", &[]);
    assert!(refused >= 5.0, "refusals are counted ({refused})");
    assert_eq!(prometheus::value(&metrics, "codec_dependency_up", &[("dependency", "audit")]), 0.0);

    pg.start_again();
    decode_until_ok(&app, &sealed).await;
    app.clock.advance(Duration::from_secs(10));
    let body: Value = app.client.get(app.url("/readyz?verbose")).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["dependencies"]["audit"], "ok", "{body}");
    let rows = flushed_rows(&app).await;
    let failed = rows.iter().filter(|r| r.reason.as_deref() == Some("audit-unavailable")).count();
    assert!(failed >= 5, "each refused decode is recorded as a failed attempt once the database is back: {failed}");
    assert!(rows.iter().all(|r| r.outcome != Outcome::Success || r.http_status == 200));
    assert_eq!(rows.iter().filter(|r| r.outcome == Outcome::Success && r.operation == "decode").count(), 2);
}

#[tokio::test]
async fn postgres_down_fail_open_serves_counts_losses_and_recovers() {
    let pg = Postgres::start();
    // A small queue so that an outage overflows it.
    let app = postgres_app(&pg, |c| {
        c.audit.on_failure = AuditFailureMode::FailOpen;
        c.audit.queue_capacity = 8;
        c.audit.flush_interval = Duration::from_millis(20);
    })
    .await;
    let sealed = app.encode("ns", vec![payload(SECRET)]).await;
    app.decode("ns", &sealed).await;

    pg.stop();
    const DURING: usize = 40;
    for _ in 0..DURING {
        assert_eq!(app.decode("ns", &sealed).await, vec![payload(SECRET)], "fail-open keeps serving");
    }
    pg.start_again();
    decode_until_ok(&app, &sealed).await;
    let rows = flushed_rows(&app).await;
    let stats = app.state.audit.stats().snapshot();
    assert!(stats.lost > 0, "the outage overflowed the queue, and the loss is counted");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let lost = prometheus::value(&prometheus::parse(&metrics), "codec_audit_events_lost_total", &[]);
    assert_eq!(lost, stats.lost as f64, "the loss is exposed as a metric");
    // Every event is either written or counted as lost: 1 encode + 1 + DURING + (≥1 after) decodes.
    let decodes_sent = rows.iter().filter(|r| r.operation == "decode").count() as u64 + stats.lost;
    assert!(decodes_sent >= (DURING + 2) as u64, "written {} + lost {}", rows.len(), stats.lost);
    assert_eq!(stats.written, rows.len() as u64);
    assert_eq!(stats.refused, 0, "fail-open never refuses");
}

/// Runs the binary with `args`; returns stdout, asserting success.
fn cli(args: &[&str], envs: &[(&str, &str)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_codec-server")).args(args).envs(envs.iter().copied()).output().unwrap();
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn event(time_ms: i64, email: &str, namespace: &str, operation: &str, outcome: Outcome) -> AuditEvent {
    AuditEvent {
        time_ms,
        request_id: format!("seed-{time_ms}-{email}"),
        email: Some(email.into()),
        subject: Some("s".into()),
        issuer: Some("https://issuer.test/".into()),
        namespace: namespace.into(),
        operation: operation.into(),
        payload_count: 1,
        decoded_count: i64::from(outcome == Outcome::Success && operation == "decode"),
        kek_refs: "local://dev".into(),
        outcome,
        reason: None,
        http_status: 200,
        client_addr: Some("10.0.0.7".into()),
        user_agent: Some("ua, with \"quotes\"".into()),
    }
}

/// `migrate`, then seeds rows and checks every filter, format and prune through the real CLI.
async fn query_and_prune_through_the_cli(env: &[(&str, &str)], data_dir: &str) {
    let base = ["--data-dir", data_dir];
    let out = cli(&[&base[..], &["migrate"]].concat(), env);
    assert!(out.contains("1 migration(s) applied"), "{out}");
    let out = cli(&[&base[..], &["migrate"]].concat(), env);
    assert!(out.contains("0 migration(s) applied"), "migrate is idempotent: {out}");

    let (store_url, _) = env.iter().find(|(k, _)| *k == "URL").map(|(_, v)| (v.to_string(), ())).unwrap();
    let store = AuditStore::connect(&store_url, 1, Duration::from_secs(5)).unwrap();
    let now = now_millis();
    let day = 86_400_000;
    store
        .insert(&[
            event(now - 40 * day, "old@example.com", "payments", "decode", Outcome::Success),
            event(now - 2 * day, "alice@example.com", "payments", "decode", Outcome::Success),
            event(now - day, "alice@example.com", "orders", "encode", Outcome::Success),
            event(now - 1000, "mallory@evil.example", "payments", "decode", Outcome::Denied),
        ])
        .await
        .unwrap();
    store.close().await;

    let query = |extra: &[&str]| cli(&[&base[..], &["audit", "query", "--format", "json"], extra].concat(), env);
    let emails = |out: String| -> Vec<String> {
        out.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["email"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(
        emails(query(&[])),
        ["mallory@evil.example", "alice@example.com", "alice@example.com", "old@example.com"]
    );
    assert_eq!(emails(query(&["--namespace", "orders"])), ["alice@example.com"]);
    assert_eq!(emails(query(&["--email", "ALICE@example.com", "--operation", "decode"])), ["alice@example.com"]);
    assert_eq!(emails(query(&["--outcome", "denied"])), ["mallory@evil.example"]);
    assert_eq!(emails(query(&["--since", "3d", "--until", "12h"])), ["alice@example.com", "alice@example.com"]);
    assert_eq!(emails(query(&["--limit", "1"])), ["mallory@evil.example"]);
    let one: Value = serde_json::from_str(query(&["--outcome", "denied"]).trim()).unwrap();
    assert_eq!((one["status"].as_i64(), one["namespace"].as_str()), (Some(200), Some("payments")));

    let csv = cli(&[&base[..], &["audit", "query", "--format", "csv", "--namespace", "orders"]].concat(), env);
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("time,request_id,email,"), "{csv}");
    assert_eq!(lines.len(), 2);
    assert!(lines[1].contains(",alice@example.com,") && lines[1].ends_with(",\"ua, with \"\"quotes\"\"\""), "{csv}");
    let table = cli(&[&base[..], &["audit", "query", "--email", "mallory@evil.example"]].concat(), env);
    assert!(table.contains("mallory@evil.example") && table.contains("denied") && table.contains("(1 event(s))"));

    let bad = Command::new(env!("CARGO_BIN_EXE_codec-server"))
        .args([&base[..], &["audit", "query", "--outcome", "maybe"]].concat())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("use success, denied"));

    let out = cli(&[&base[..], &["audit", "prune", "--older-than", "30d"]].concat(), env);
    assert!(out.starts_with("deleted 1 event(s)"), "{out}");
    assert_eq!(emails(query(&[])).len(), 3);
    assert!(!emails(query(&[])).contains(&"old@example.com".to_owned()));
}

#[tokio::test]
async fn query_prune_and_migrate_commands_work_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let url = format!("sqlite://{}/audit.db", data);
    query_and_prune_through_the_cli(&[("URL", &url)], data).await;
}

#[tokio::test]
async fn query_prune_and_migrate_commands_work_on_postgres() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    // The URL holds a password: give it as a file, as a Kubernetes Secret would be mounted.
    let url_file = dir.path().join("database-url");
    std::fs::write(&url_file, format!("{}\n", pg.url)).unwrap();
    let env = [("URL", pg.url.as_str()), ("CODEC_AUDIT__DATABASE_URL_FILE", url_file.to_str().unwrap())];
    query_and_prune_through_the_cli(&env, dir.path().to_str().unwrap()).await;
    assert!(!dir.path().join("audit.db").exists(), "the PostgreSQL URL was used, not the SQLite default");
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn sigterm_during_load_loses_no_acknowledged_audit_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_codec-server"))
            .args(["--data-dir", &data, "serve", "--listen", &listen])
            // Fail-open with a long flush interval: acknowledged decodes sit in the queue, so only the
            // flush at shutdown can save them.
            .env("CODEC_AUDIT__ON_FAILURE", "fail-open")
            .env("CODEC_AUDIT__FLUSH_INTERVAL", "5s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://{listen}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let post = |op: &str, body: String| {
        client
            .post(format!("{base}/{op}"))
            .header("content-type", "application/json")
            .header("x-namespace", "ns")
            .body(body)
    };
    let sealed = post("encode", crate::helpers::to_json(&[payload(b"\"s\"")]).to_string()).send().await.unwrap();
    assert_eq!(sealed.status(), 200);
    let sealed = sealed.text().await.unwrap();

    // Load in the background; each 200 response's request id is an acknowledged decode.
    let load = {
        let client = client.clone();
        let base = base.clone();
        tokio::spawn(async move {
            let stop = Instant::now() + Duration::from_secs(20);
            futures_util::stream::iter(0..usize::MAX)
                .take_while(|_| std::future::ready(Instant::now() < stop))
                .map(|_| {
                    let r = client
                        .post(format!("{base}/decode"))
                        .header("content-type", "application/json")
                        .header("x-namespace", "ns")
                        .body(sealed.clone())
                        .send();
                    async move {
                        match r.await {
                            Ok(r) if r.status() == 200 => {
                                Some(r.headers().get("x-request-id").unwrap().to_str().unwrap().to_owned())
                            }
                            _ => None,
                        }
                    }
                })
                .buffer_unordered(16)
                // Stop at the first refused connection: the server is shutting down.
                .take_while(|r| std::future::ready(r.is_some()))
                .filter_map(std::future::ready)
                .collect::<Vec<String>>()
                .await
        })
    };
    // Let some load through, then SIGTERM while requests are in flight. Under fail-open nothing waits
    // for the commit, so everything acknowledged in the last flush interval must be written at shutdown.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let encode = post("encode", crate::helpers::to_json(&[payload(b"1")]).to_string())
        .header("x-request-id", "last-encode")
        .send()
        .await
        .unwrap();
    assert_eq!(encode.status(), 200);
    assert!(Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap().success());
    let acknowledged = load.await.unwrap();
    let status = server.0.wait().unwrap();
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    assert!(acknowledged.len() > 10, "load ran before the signal ({} decodes)", acknowledged.len());

    let store = AuditStore::connect(&format!("sqlite://{data}/audit.db"), 1, Duration::from_secs(5)).unwrap();
    let rows = store.query(&AuditFilter { limit: 10_000_000, ..AuditFilter::default() }).await.unwrap();
    let ids: std::collections::HashSet<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
    let missing = acknowledged.iter().filter(|id| !ids.contains(id.as_str())).count();
    assert_eq!(missing, 0, "{missing} of {} acknowledged decodes have no audit row", acknowledged.len());
    assert!(ids.contains("last-encode"), "the queued encode row was written at shutdown");
}

#[tokio::test]
async fn fail_closed_503_body_has_a_stable_code() {
    // The refusal is a normal JSON error, checked without a database outage: a stopped writer.
    let app = TestApp::spawn().await;
    let sealed = app.encode("ns", vec![payload(SECRET)]).await;
    app.state.audit.shutdown().await;
    let response = app.post_decode("ns", &sealed).await;
    assert_eq!(response.status(), 503);
    assert_eq!(error_code(response).await, "audit-unavailable");
}
