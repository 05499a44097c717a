//! The audit log on its embedded default (SQLite in the data directory): one row per decision with
//! the right fields, nothing secret in any column (SECURITY-TESTS 33), and no lost rows under load.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use codec_server::audit::{AuditEvent, AuditFilter, AuditStore, Outcome};
use codec_server::protocol::Payload;
use futures_util::StreamExt;

use crate::auth::jwt_config;
use crate::helpers::{TestApp, edit_data, payload, read_payloads, to_json};
use crate::support::jwks_server::JwksServer;
use crate::support::tokens::{ISSUER, token};

/// Stops the writer (which writes everything queued) and reads every row, oldest first.
pub async fn flushed_rows(app: &TestApp) -> Vec<AuditEvent> {
    app.state.audit.shutdown().await;
    let store = AuditStore::connect(&app.config.audit_database_url(), 1, Duration::from_secs(5)).unwrap();
    let mut rows = store.query(&AuditFilter { limit: 10_000_000, ..AuditFilter::default() }).await.unwrap();
    store.close().await;
    rows.reverse();
    rows
}

/// POSTs with a request id and optional bearer token; returns status and body.
async fn call(app: &TestApp, op: &str, ns: &str, id: &str, bearer: Option<&str>, body: String) -> (u16, Vec<u8>) {
    let mut request = app
        .client
        .post(app.url(&format!("/{op}")))
        .header("content-type", "application/json")
        .header("x-namespace", ns)
        .header("x-request-id", id)
        .header("user-agent", "audit-test/1.0");
    if let Some(t) = bearer {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    let response = request.body(body).send().await.unwrap();
    assert_eq!(response.headers().get("x-request-id").unwrap(), id);
    (response.status().as_u16(), response.bytes().await.unwrap().to_vec())
}

fn body(payloads: &[Payload]) -> String {
    to_json(payloads).to_string()
}

fn tampered(sealed: &[Payload]) -> Vec<Payload> {
    let mut bad = sealed.to_vec();
    edit_data(&mut bad[0], |data| *data.last_mut().unwrap() ^= 1);
    bad
}

/// The session both tests below run: every kind of decision, with known request ids.
struct Session {
    tokens: Vec<String>,
    sealed: Vec<Payload>,
}

const SECRET_A: &[u8] = b"{\"iban\":\"DE89370400440532013000\"}";
const SECRET_B: &[u8] = b"\"patient: Jane Roe, diagnosis: confidential\"";

async fn run_session(app: &TestApp) -> Session {
    let writer = token("writer@example.com");
    let alice = token("alice@example.com");
    let mallory = token("mallory@evil.example");
    let bob = token("bob@example.com");
    let plain = [payload(SECRET_A), payload(SECRET_B)];

    let (status, sealed) = call(app, "encode", "payments", "r-encode", Some(&writer), body(&plain)).await;
    assert_eq!(status, 200);
    let sealed = codec_server::protocol::Payloads::from_json(&sealed).unwrap().payloads;
    let (status, opened) = call(app, "decode", "payments", "r-decode", Some(&alice), body(&sealed)).await;
    assert_eq!(status, 200);
    assert_eq!(codec_server::protocol::Payloads::from_json(&opened).unwrap().payloads, plain);
    assert_eq!(call(app, "decode", "payments", "r-forbidden", Some(&mallory), body(&sealed)).await.0, 403);
    assert_eq!(call(app, "decode", "payments", "r-no-token", None, body(&sealed)).await.0, 401);
    assert_eq!(call(app, "decode", "payments", "r-tampered", Some(&alice), body(&tampered(&sealed))).await.0, 400);
    let (status, echoed) = call(app, "decode", "open-books", "r-passthrough", Some(&bob), body(&sealed)).await;
    assert_eq!((status, codec_server::protocol::Payloads::from_json(&echoed).unwrap().payloads), (200, sealed.clone()));
    assert_eq!(call(app, "encode", "payments", "r-encode-denied", Some(&alice), body(&plain)).await.0, 403);
    // Authorized, then a body that does not parse: a failed row (the body is read after the decision).
    assert_eq!(call(app, "decode", "payments", "r-malformed", Some(&alice), "{".into()).await.0, 400);
    Session { tokens: vec![writer, alice, mallory, bob], sealed }
}

async fn jwt_app(jwks: &JwksServer) -> TestApp {
    let url = jwks.url.clone();
    TestApp::spawn_with(move |c| jwt_config(c, &url)).await
}

#[tokio::test]
async fn every_encode_decode_and_denial_writes_exactly_one_row_with_its_fields() {
    let jwks = JwksServer::start(&["rsa-1"]);
    let app = jwt_app(&jwks).await;
    run_session(&app).await;
    let rows = flushed_rows(&app).await;
    let by_id: HashMap<&str, &AuditEvent> = rows.iter().map(|r| (r.request_id.as_str(), r)).collect();
    assert_eq!(rows.len(), 8, "one row per decided request: {rows:#?}");
    assert_eq!(by_id.len(), 8, "request ids are unique per row");

    // (request id, email, operation, outcome, status, reason, payloads, decoded, kek refs)
    type Expected<'a> = (&'a str, Option<&'a str>, &'a str, Outcome, i64, Option<&'a str>, i64, i64, &'a str);
    // A refused request's body is never read, so its payload count is 0.
    let expected: [Expected; 8] = [
        ("r-encode", Some("writer@example.com"), "encode", Outcome::Success, 200, None, 2, 0, "local://dev"),
        ("r-decode", Some("alice@example.com"), "decode", Outcome::Success, 200, None, 2, 2, "local://dev"),
        ("r-forbidden", Some("mallory@evil.example"), "decode", Outcome::Denied, 403, Some("policy"), 0, 0, ""),
        ("r-no-token", None, "decode", Outcome::Denied, 401, Some("missing"), 0, 0, ""),
        ("r-malformed", Some("alice@example.com"), "decode", Outcome::Failed, 400, Some("malformed-json"), 0, 0, ""),
        ("r-tampered", Some("alice@example.com"), "decode", Outcome::Failed, 400, Some("decode-failed"), 2, 0, ""),
        ("r-passthrough", Some("bob@example.com"), "decode", Outcome::PassThrough, 200, Some("policy"), 2, 0, ""),
        ("r-encode-denied", Some("alice@example.com"), "encode", Outcome::Denied, 403, Some("policy"), 0, 0, ""),
    ];
    let now = codec_server::audit::now_millis();
    for (id, email, op, outcome, status, reason, payloads, decoded, keks) in expected {
        let row = by_id.get(id).unwrap_or_else(|| panic!("no row for {id}"));
        let ns = if id == "r-passthrough" { "open-books" } else { "payments" };
        assert_eq!(row.email.as_deref(), email, "{id}");
        assert_eq!(row.issuer.as_deref(), email.map(|_| ISSUER), "{id}");
        assert_eq!(row.subject.as_deref(), email.map(|_| "user-1"), "{id}");
        assert_eq!(
            (row.namespace.as_str(), row.operation.as_str(), row.outcome, row.http_status),
            (ns, op, outcome, status),
            "{id}"
        );
        assert_eq!((row.reason.as_deref(), row.payload_count, row.decoded_count), (reason, payloads, decoded), "{id}");
        assert_eq!(row.kek_refs, keks, "{id}");
        assert_eq!(row.client_addr.as_deref(), Some("127.0.0.1"), "{id}");
        assert_eq!(row.user_agent.as_deref(), Some("audit-test/1.0"), "{id}");
        assert!((now - row.time_ms).abs() < 120_000, "{id}: time {} is not recent", row.time_ms);
    }
    // The rows name people: the database file is the owner's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(app.config.data_dir.join("audit.db")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// Every spelling of a secret the scan looks for.
fn needles(session: &Session) -> Vec<String> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut needles = Vec::new();
    for t in &session.tokens {
        needles.push(t.clone());
        needles.extend(t.split('.').map(str::to_owned));
    }
    for secret in [SECRET_A, SECRET_B] {
        needles.push(String::from_utf8_lossy(secret).into_owned());
        needles.push(b64(secret));
        needles.push("DE89370400440532013000".into());
        needles.push("Jane Roe".into());
    }
    for p in &session.sealed {
        needles.push(b64(&p.data));
        // Any 24-byte window of the ciphertext (it holds the wrapped key and the tag).
        needles.push(hex::encode(&p.data[p.data.len() - 24..]));
    }
    needles
}

#[tokio::test]
async fn audit_rows_never_hold_tokens_keys_or_payload_bytes() {
    let jwks = JwksServer::start(&["rsa-1"]);
    let app = jwt_app(&jwks).await;
    let session = run_session(&app).await;
    let key_file = std::fs::read(app.config.local_key_dir().join("dev.key")).unwrap();
    let rows = flushed_rows(&app).await;
    assert_eq!(rows.len(), 8);
    let mut needles = needles(&session);
    needles.push(String::from_utf8_lossy(&key_file).trim().to_owned());
    needles.push(hex::encode(&key_file));
    let store = AuditStore::connect(&app.config.audit_database_url(), 1, Duration::from_secs(5)).unwrap();
    let text = {
        let mut out = Vec::new();
        let all = store.query(&AuditFilter { limit: 1000, ..AuditFilter::default() }).await.unwrap();
        for row in &all {
            out.push(format!("{row:?}"));
        }
        out.join("\n")
    };
    assert!(text.contains("alice@example.com"), "the scan reads real rows");
    for needle in needles.iter().filter(|n| n.len() >= 8) {
        assert!(!text.contains(needle.as_str()), "an audit column holds a secret ({} chars)", needle.len());
    }
    // Also the raw database file: no page of it may hold a secret either.
    let db = std::fs::read(app.config.data_dir.join("audit.db")).unwrap();
    let db_text = String::from_utf8_lossy(&db);
    for needle in needles.iter().filter(|n| n.len() >= 8) {
        assert!(!db_text.contains(needle.as_str()), "the database file holds a secret ({} chars)", needle.len());
    }
}

/// Fires `n` decodes of `sealed` with `concurrency` in flight; returns how many got 200.
pub async fn decode_load(app: &TestApp, sealed: &[Payload], n: usize, concurrency: usize) -> usize {
    let body = to_json(sealed).to_string();
    futures_util::stream::iter(0..n)
        .map(|_| {
            let request = app
                .client
                .post(app.url("/decode"))
                .header("content-type", "application/json")
                .header("x-namespace", "load")
                .body(body.clone());
            async move { request.send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
        })
        .buffer_unordered(concurrency)
        .filter(|status| std::future::ready(*status == 200))
        .count()
        .await
}

#[tokio::test]
async fn ten_thousand_concurrent_decodes_write_ten_thousand_rows() {
    let app = TestApp::spawn().await;
    let sealed = app.encode("load", vec![payload(b"\"x\"")]).await;
    assert_eq!(decode_load(&app, &sealed, 10_000, 64).await, 10_000);
    let rows = flushed_rows(&app).await;
    let decodes = rows.iter().filter(|r| r.operation == "decode" && r.outcome == Outcome::Success).count();
    assert_eq!((rows.len(), decodes), (10_001, 10_000), "one encode and 10,000 decodes");
    let stats = app.state.audit.stats().snapshot();
    assert_eq!((stats.written, stats.lost, stats.refused, stats.queue_depth), (10_001, 0, 0, 0));
    assert!(stats.batches < 10_001, "rows are written in batches ({} batches)", stats.batches);
}

#[tokio::test]
async fn audit_disabled_writes_nothing() {
    let app = TestApp::spawn_with(|c| c.audit.enabled = false).await;
    let sealed = app.encode("ns", vec![payload(b"1")]).await;
    app.decode("ns", &sealed).await;
    assert!(!app.config.data_dir.join("audit.db").exists());
    assert_eq!(app.state.audit.stats().snapshot().written, 0);
}

#[tokio::test]
async fn committed_rows_reach_the_database_file_by_a_background_checkpoint() {
    // Commits no longer checkpoint the SQLite WAL themselves until it holds 64 MiB: a few rows reach
    // the main database file only through the background checkpoint, within a few of its intervals.
    let app = TestApp::spawn().await;
    let sealed = app.encode("ns", vec![payload(b"7")]).await;
    let id = "checkpoint-marker-7f3a9c";
    let (status, _) = call(&app, "decode", "ns", id, None, body(&sealed)).await;
    assert_eq!(status, 200);
    let file = app.config.data_dir.join("audit.db");
    let in_file = || std::fs::read(&file).unwrap().windows(id.len()).any(|w| w == id.as_bytes());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !in_file() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(in_file(), "the committed row never reached {} (no checkpoint ran)", file.display());
}

#[tokio::test]
async fn a_decode_answers_only_after_its_row_is_committed() {
    // With a one-hour flush interval, only a waiting (fail-closed) decode can make the writer flush:
    // the row must be readable the moment the response arrives.
    let app = TestApp::spawn_with(|c| c.audit.flush_interval = Duration::from_secs(3600)).await;
    let sealed = app.encode("ns", vec![payload(b"42")]).await;
    let response = app.post_decode("ns", &sealed).await;
    let id = response.headers().get("x-request-id").unwrap().to_str().unwrap().to_owned();
    assert_eq!(read_payloads(response).await, vec![payload(b"42")]);
    let store = app.state.audit.store().unwrap();
    let rows = store.query(&AuditFilter { limit: 10, ..AuditFilter::default() }).await.unwrap();
    assert!(
        rows.iter().any(|r| r.request_id == id && r.decoded_count == 1 && r.outcome == Outcome::Success),
        "{rows:?}"
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_audit_row_names_the_forwarded_client() {
    let app = TestApp::spawn_with(|c| c.server.trusted_proxies = vec!["127.0.0.0/8".into()]).await;
    let sealed = app.encode("ns", vec![payload(b"7")]).await;
    let forged_then_real = "6.6.6.6, 203.0.113.9";
    let response = app
        .client
        .post(app.url("/decode"))
        .header("content-type", "application/json")
        .header("x-namespace", "ns")
        .header("x-forwarded-for", forged_then_real)
        .header("x-request-id", "via-proxy")
        .body(body(&sealed))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let rows = flushed_rows(&app).await;
    let row = rows.iter().find(|r| r.request_id == "via-proxy").unwrap();
    assert_eq!(row.client_addr.as_deref(), Some("203.0.113.9"), "the hop the trusted proxy saw, not the forged one");
}

/// Group commit: fail-closed decodes that are ready in the same scheduler turn are acknowledged by one
/// commit, not one each. The writer runs on another runtime's thread, as in the server (it is started
/// before the HTTP workers); the decodes run on a current-thread runtime like an HTTP worker's. They
/// all queue and yield before the first of them kicks the writer (`audit::writer`), so the writer finds
/// all twenty. (Woken by each event instead, it took the first alone, on its own thread.)
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn waiting_events_of_one_scheduler_turn_share_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    // A long flush interval: only a kick can start this batch.
    let config = codec_server::config::AuditConfig {
        flush_interval: Duration::from_secs(30),
        ..codec_server::config::AuditConfig::default()
    };
    let audit = std::sync::Arc::new(codec_server::audit::Audit::start(&config, &url).await.unwrap());
    let worker_audit = audit.clone();
    let results = tokio::task::spawn_blocking(move || {
        let worker = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        worker.block_on(async move {
            let decodes: Vec<_> = (0..20)
                .map(|i| {
                    let audit = worker_audit.clone();
                    let event = crate::audit_cli::event(i, 1_000 + i);
                    assert!(event.releases_plaintext(), "each decode waits for its commit");
                    tokio::spawn(async move { audit.record(event).await.is_ok() })
                })
                .collect();
            let mut committed = Vec::new();
            for decode in decodes {
                committed.push(decode.await.unwrap());
            }
            committed
        })
    })
    .await
    .unwrap();
    assert!(results.iter().all(|ok| *ok), "every decode was committed: {results:?}");
    let stats = audit.stats().snapshot();
    assert_eq!(stats.written, 20);
    assert_eq!(stats.batches, 1, "twenty waiting decodes of one turn took {} commits", stats.batches);
    audit.shutdown().await;
    let store = AuditStore::connect(&url, 1, Duration::from_secs(5)).unwrap();
    let rows = store.query(&AuditFilter { limit: 100, ..AuditFilter::default() }).await.unwrap();
    assert_eq!(rows.len(), 20);
    store.close().await;
}
