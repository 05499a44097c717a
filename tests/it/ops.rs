//! Production operations (DESIGN §10, issue 6): HTTPS with HTTP/2 and certificate reload without a
//! restart, `/metrics` counting requests, KMS calls, cache hits and auth refusals, `/readyz` failing
//! while a KMS is down and recovering, graceful shutdown on SIGTERM with requests in flight, and request
//! ids on every response and every log line of a request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use codec_server::clock::ManualClock;
use codec_server::config::{Config, Mode, TlsConfig};
use codec_server::startup::Application;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::helpers::{TestApp, payload, read_payloads, to_json};
use crate::support::prometheus::{self, Sample};
use crate::support::server_process::{ServerProcess, SlowRequest};
use crate::support::tls::{TestCa, peer_certificate, spawn_https, tls_expiry, tls_reloads, write_atomically};

/// Bound on every "wait until the server shows it" loop (they normally end in well under a second).
const DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------------
// HTTPS

#[tokio::test]
async fn https_decodes_over_http2_and_http1_for_a_client_that_trusts_only_the_test_ca() {
    let ca = TestCa::new("ops test CA one");
    let cert = ca.server_cert("codec-one");
    let https = spawn_https(&cert).await;
    let sealed = https.encode(&ca.client(), vec![payload(b"over tls")]).await;

    let response = https.decode(&ca.client(), &sealed).await.expect("HTTPS decode");

    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2, "ALPN must select h2");
    assert_eq!(peer_certificate(&response), cert.der);
    assert_eq!(read_payloads(response).await, vec![payload(b"over tls")]);
    let http1_only = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap()])
        .http1_only()
        .build()
        .unwrap();
    let response = https.decode(&http1_only, &sealed).await.expect("HTTP/1.1 over TLS");
    assert_eq!((response.status().as_u16(), response.version()), (200, reqwest::Version::HTTP_11));
    let stranger = TestCa::new("some other CA").client();
    assert!(https.decode(&stranger, &sealed).await.is_err(), "a client that does not trust the CA must fail");
}

#[tokio::test]
async fn a_renewed_certificate_from_another_ca_is_served_without_a_restart() {
    let (old_ca, new_ca) = (TestCa::new("ops CA before"), TestCa::new("ops CA after"));
    let https = spawn_https(&old_ca.server_cert("codec-before")).await;
    let sealed = https.encode(&old_ca.client(), vec![payload(b"renewal")]).await;
    assert!(https.decode(&new_ca.client(), &sealed).await.is_err(), "not yet trusted by the new CA's clients");

    let renewed = new_ca.server_cert("codec-after");
    renewed.write(&https.cert_file, &https.key_file);

    let until = Instant::now() + DEADLINE;
    let response = loop {
        if let Ok(response) = https.decode(&new_ca.client(), &sealed).await {
            break response;
        }
        assert!(Instant::now() < until, "the renewed certificate was not picked up within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(response.status(), 200);
    assert_eq!(peer_certificate(&response), renewed.der, "the new leaf is served");
    assert_eq!(read_payloads(response).await, vec![payload(b"renewal")]);
    assert!(https.decode(&old_ca.client(), &sealed).await.is_err(), "the old certificate is no longer served");
}

#[tokio::test]
async fn an_invalid_replacement_keeps_the_previous_certificate_serving() {
    let ca = TestCa::new("ops CA keep");
    let good = ca.server_cert("codec-good");
    let https = spawn_https(&good).await;
    let client = ca.client();
    let sealed = https.encode(&client, vec![payload(b"still here")]).await;
    let failures = tls_reloads(&https.metrics(&client).await, "failure");

    // A new certificate with a key that is not its own (as when only one of the two files was updated).
    let other = ca.server_cert("codec-other");
    write_atomically(&https.cert_file, other.cert_pem.as_bytes());
    https.wait_for_reloads(&client, "failure", failures).await;

    let response = https.decode(&client, &sealed).await.expect("still serving");
    assert_eq!(response.status(), 200);
    assert_eq!(peer_certificate(&response), good.der, "the previous certificate stays");

    // Then a key file that is not PEM at all.
    let failures = tls_reloads(&https.metrics(&client).await, "failure");
    write_atomically(&https.key_file, b"this is not a key");
    https.wait_for_reloads(&client, "failure", failures).await;
    let response = https.decode(&client, &sealed).await.expect("still serving");
    assert_eq!(peer_certificate(&response), good.der);
    assert_eq!(tls_reloads(&https.metrics(&client).await, "success"), 0.0);
}

#[tokio::test]
async fn metrics_show_the_served_certificates_expiry_and_follow_a_reload() {
    let ca = TestCa::new("ops CA expiry");
    let https = spawn_https(&ca.server_cert_until("codec-expiring", (2031, 5, 17))).await;
    let client = ca.client();
    let samples = https.metrics(&client).await;
    assert_eq!(tls_expiry(&samples), Some(1_936_742_400.0), "2031-05-17T00:00:00Z");
    let successes = tls_reloads(&samples, "success");

    ca.server_cert_until("codec-renewed", (2051, 1, 2)).write(&https.cert_file, &https.key_file);
    https.wait_for_reloads(&client, "success", successes).await;
    assert_eq!(tls_expiry(&https.metrics(&client).await), Some(2_556_230_400.0), "2051-01-02T00:00:00Z");

    // A replacement that does not load leaves the served certificate's date.
    let failures = tls_reloads(&https.metrics(&client).await, "failure");
    write_atomically(&https.key_file, b"this is not a key");
    https.wait_for_reloads(&client, "failure", failures).await;
    assert_eq!(tls_expiry(&https.metrics(&client).await), Some(2_556_230_400.0));

    // Without TLS there is no certificate and no gauge.
    let plain = TestApp::spawn().await;
    assert_eq!(tls_expiry(&scrape(&plain).await), None);
}

#[tokio::test]
async fn startup_fails_naming_the_file_when_the_certificate_is_missing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::dev();
    config.data_dir = dir.path().to_path_buf();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.tls = Some(TlsConfig {
        cert_file: dir.path().join("missing.crt"),
        key_file: dir.path().join("missing.key"),
        reload_interval: Duration::from_secs(10),
    });

    let error = Application::build_with_clock(&config, Mode::Dev, Arc::new(ManualClock::default()))
        .await
        .err()
        .expect("startup must fail");

    let message = format!("{error:#}");
    assert!(message.contains("[server.tls]") && message.contains("missing.crt"), "{message}");
}

// ---------------------------------------------------------------------------------------------------
// /metrics

async fn scrape(app: &TestApp) -> Vec<Sample> {
    let response = app.client.get(app.url("/metrics")).send().await.expect("scrape");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    prometheus::parse(&response.text().await.expect("body"))
}

/// How much a series grew between two scrapes.
fn delta(before: &[Sample], after: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    prometheus::value(after, name, labels) - prometheus::value(before, name, labels)
}

#[tokio::test]
async fn metrics_count_requests_kms_unwraps_and_cache_hits_as_the_operations_imply() {
    let app = TestApp::spawn().await;
    let sealed = app.encode("default", vec![payload(b"counted")]).await;
    let before = scrape(&app).await;

    for _ in 0..3 {
        assert_eq!(app.decode("default", &sealed).await, vec![payload(b"counted")]);
    }
    let _ = app.encode("default", vec![payload(b"same key")]).await;
    let after = scrape(&app).await;

    let d = |name: &str, labels: &[(&str, &str)]| delta(&before, &after, name, labels);
    assert_eq!(d("codec_http_requests_total", &[("operation", "decode"), ("status", "200")]), 3.0);
    assert_eq!(d("codec_http_requests_total", &[("operation", "encode"), ("status", "200")]), 1.0);
    assert_eq!(d("codec_http_requests_total", &[("operation", "metrics"), ("status", "200")]), 1.0);
    assert_eq!(d("codec_http_request_duration_seconds_count", &[("operation", "decode")]), 3.0);
    assert_eq!(d("codec_payloads_total", &[("operation", "decode"), ("result", "opened")]), 3.0);
    assert_eq!(d("codec_payloads_total", &[("operation", "encode"), ("result", "sealed")]), 1.0);
    // The first decode of a cold data key is a miss and one KMS unwrap; the next two are hits.
    let local_unwrap = [("provider", "local"), ("operation", "unwrap")];
    assert_eq!(d("codec_kms_calls_total", &local_unwrap), 1.0);
    assert_eq!(d("codec_kms_call_duration_seconds_count", &local_unwrap), 1.0);
    assert_eq!(d("codec_dek_cache_misses_total", &[("cache", "decrypt")]), 1.0);
    assert_eq!(d("codec_dek_cache_hits_total", &[("cache", "decrypt")]), 2.0);
    // The second encode reuses the current data key: a hit, no new data-key call.
    assert_eq!(d("codec_dek_cache_hits_total", &[("cache", "encrypt")]), 1.0);
    assert_eq!(d("codec_dek_cache_misses_total", &[("cache", "encrypt")]), 0.0);
    assert_eq!(d("codec_kms_calls_total", &[("provider", "local"), ("operation", "generate_data_key")]), 0.0);
    assert_eq!(prometheus::value(&after, "codec_kms_calls_total", &local_unwrap), 1.0);
    assert_eq!(prometheus::value(&after, "codec_kms_errors_total", &local_unwrap), 0.0);
    // Only the metrics request itself is in flight while it renders.
    assert_eq!(prometheus::value(&after, "codec_http_requests_in_flight", &[]), 1.0);
}

#[tokio::test]
async fn metrics_count_auth_refusals_by_reason_and_never_show_the_token() {
    let jwks = crate::support::jwks_server::JwksServer::start(&["rsa-1"]);
    let url = jwks.url.clone();
    let app = TestApp::spawn_with(move |c| crate::auth::jwt_config(c, &url)).await;
    let body = to_json(&[payload(b"x")]).to_string();
    let before = scrape(&app).await;

    let anonymous = app
        .client
        .post(app.url("/decode"))
        .header("content-type", "application/json")
        .header("x-namespace", "payments")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let token = crate::support::tokens::token("mallory@example.com");
    let stranger = app
        .client
        .post(app.url("/decode"))
        .header("content-type", "application/json")
        .header("x-namespace", "payments")
        .bearer_auth(&token)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!((anonymous.status().as_u16(), stranger.status().as_u16()), (401, 403));
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    let text = response.text().await.unwrap();
    let after = prometheus::parse(&text);

    assert_eq!(delta(&before, &after, "codec_auth_failures_total", &[("reason", "missing")]), 1.0);
    assert_eq!(delta(&before, &after, "codec_auth_failures_total", &[("reason", "forbidden")]), 1.0);
    assert_eq!(delta(&before, &after, "codec_auth_failures_total", &[("reason", "expired")]), 0.0);
    assert_eq!(delta(&before, &after, "codec_http_requests_total", &[("operation", "decode"), ("status", "401")]), 1.0);
    assert_eq!(delta(&before, &after, "codec_http_requests_total", &[("operation", "decode"), ("status", "403")]), 1.0);
    assert!(!text.contains(&token) && !text.contains("mallory") && !text.contains("payments"));
}

// ---------------------------------------------------------------------------------------------------
// /readyz

async fn readyz(app: &TestApp) -> (u16, Value) {
    get_json(app, &app.url("/readyz")).await
}

async fn get_json(app: &TestApp, url: &str) -> (u16, Value) {
    let response = app.client.get(url).send().await.expect("GET");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

#[tokio::test]
async fn readyz_is_local_state_and_the_verbose_view_lists_every_kms_in_use() {
    let app = TestApp::spawn().await;

    let (status, body) = readyz(&app).await;
    let (verbose_status, verbose) = get_json(&app, &app.url("/readyz?verbose")).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body, serde_json::json!({"status":"ready","checks":{"config":"ok","shutdown":"ok"}}));
    assert_eq!(verbose_status, 200);
    assert_eq!(verbose["dependencies"], serde_json::json!({"kms:local":"ok","audit":"ok"}), "{verbose}");
    let post = app.client.post(app.url("/readyz")).send().await.unwrap();
    assert_eq!(post.status(), 405);
}

#[cfg(feature = "vault-transit")]
#[tokio::test]
async fn a_paused_kms_leaves_the_replica_ready_while_cached_keys_serve_and_names_the_kms_elsewhere() {
    use crate::support::openbao::OpenBao;
    let bao = OpenBao::start().await;
    bao.create_key("payments", "aes256-gcm96", false).await;
    let mut vault = bao.kms_config();
    vault.call_timeout = Duration::from_millis(300);
    let app = TestApp::spawn_with(move |c| {
        c.kms.vault = Some(vault);
        crate::support::kms::use_keyring(c, &["vault-transit://transit/payments".to_owned()]);
    })
    .await;
    let sealed = app.encode("payments", vec![payload(b"\"cached\"")]).await;
    app.decode("payments", &sealed).await;
    let (_, body) = get_json(&app, &app.url("/readyz?verbose")).await;
    assert_eq!(body["dependencies"]["kms:vault-transit"], "ok", "{body}");

    bao.pause();
    app.clock.advance(codec_server::readiness::CACHE_TTL);

    // The probe answers from memory: ready, and the cached data key still opens the payload.
    let (status, body) = readyz(&app).await;
    assert_eq!((status, &body["status"]), (200, &"ready".into()), "{body}");
    assert_eq!(read_payloads(app.post_decode("payments", &sealed).await).await[0].data, b"\"cached\"".as_slice());
    // The verbose view and /metrics say what is wrong, without internal detail.
    let (status, body) = get_json(&app, &app.url("/readyz?verbose")).await;
    assert_eq!(status, 200, "dependencies never change the status: {body}");
    let reason = body["dependencies"]["kms:vault-transit"].as_str().unwrap().to_owned();
    assert!(["unreachable", "timeout"].contains(&reason.as_str()), "{body}");
    assert!(!body.to_string().contains("127.0.0.1"), "no internal detail: {body}");
    let metrics = scrape(&app).await;
    let kms = [("dependency", "kms:vault-transit")];
    assert_eq!(prometheus::value(&metrics, "codec_dependency_up", &kms), 0.0);
    let failing = [("dependency", "kms:vault-transit"), ("reason", reason.as_str())];
    assert_eq!(prometheus::value(&metrics, "codec_dependency_failing", &failing), 1.0);
    assert_eq!(prometheus::value(&metrics, "codec_ready", &[]), 1.0);

    bao.resume();
    let until = Instant::now() + DEADLINE;
    loop {
        app.clock.advance(codec_server::readiness::CACHE_TTL);
        let (_, body) = get_json(&app, &app.url("/readyz?verbose")).await;
        if body["dependencies"]["kms:vault-transit"] == "ok" {
            break;
        }
        assert!(Instant::now() < until, "the KMS still shows as failing after it came back: {body}");
    }
    assert_eq!(prometheus::value(&scrape(&app).await, "codec_dependency_up", &kms), 1.0);
}

#[tokio::test]
async fn with_an_admin_listener_probes_and_metrics_leave_the_api_port() {
    let app = TestApp::spawn_with(|c| c.server.admin_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let admin = app.admin_address.clone().expect("admin listener");

    let status = |url: String| {
        let client = app.client.clone();
        async move { client.get(url).send().await.expect("GET").status().as_u16() }
    };
    // The API port: codec routes, and /healthz for probes configured before the admin port existed.
    assert_eq!(status(app.url("/healthz")).await, 200);
    assert_eq!(status(app.url("/readyz")).await, 404);
    assert_eq!(status(app.url("/metrics")).await, 404);
    let sealed = app.encode("default", vec![payload(b"\"x\"")]).await;
    app.decode("default", &sealed).await;
    // The admin port: only the three operational routes.
    for path in ["/healthz", "/readyz", "/readyz?verbose", "/metrics"] {
        assert_eq!(status(format!("{admin}{path}")).await, 200, "{path}");
    }
    let (_, verbose) = get_json(&app, &format!("{admin}/readyz?verbose")).await;
    assert_eq!(verbose["dependencies"]["kms:local"], "ok", "{verbose}");
    let on_admin = app.client.post(format!("{admin}/decode")).header("x-namespace", "default").send().await.unwrap();
    assert_eq!(on_admin.status(), 404, "the admin port serves no codec route");
    let text = app.client.get(format!("{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    let metrics = prometheus::parse(&text);
    assert_eq!(
        prometheus::value(&metrics, "codec_http_requests_total", &[("operation", "decode"), ("status", "200")]),
        1.0
    );
}

#[tokio::test]
async fn admin_listen_on_the_api_port_is_refused_at_load() {
    let mut config = Config::dev();
    config.server.admin_listen = Some(config.server.listen);
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("server.admin_listen") && error.contains("another port"), "{error}");
}

// ---------------------------------------------------------------------------------------------------
// Graceful shutdown

#[tokio::test]
async fn sigterm_finishes_requests_in_flight_refuses_new_connections_and_exits_0() {
    let mut server = ServerProcess::start("shutdown_timeout = \"20s\"", &[]);
    let body = to_json(&[payload(&vec![b'z'; 256 * 1024])]).to_string().into_bytes();
    let mut in_flight = Vec::new();
    for _ in 0..6 {
        in_flight.push(SlowRequest::start(server.port, body.clone()).await);
    }

    server.signal("-TERM");

    let until = Instant::now() + DEADLINE;
    loop {
        match TcpStream::connect(("127.0.0.1", server.port)).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            _ => {
                assert!(Instant::now() < until, "still accepting connections after SIGTERM");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    for request in in_flight {
        let (status, response) = request.finish().await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&response));
        let sealed = codec_server::protocol::Payloads::from_json(&response).expect("Payloads JSON").payloads;
        assert_eq!(sealed.len(), 1);
    }
    let status = server.wait_exit(Duration::from_secs(20)).await.expect("exits within the shutdown timeout");
    assert!(status.success(), "exit status {status}; log:\n{}", server.log().join("\n"));
}

#[tokio::test]
async fn after_sigterm_the_admin_listener_reports_shutting_down_until_requests_in_flight_finish() {
    let mut server = ServerProcess::start("shutdown_timeout = \"20s\"\nadmin_listen = \"127.0.0.1:0\"", &[]);
    let admin = format!("http://127.0.0.1:{}", server.admin_port.expect("the admin listener is logged"));
    let client = reqwest::Client::new();
    assert_eq!(client.get(format!("{admin}/readyz")).send().await.unwrap().status(), 200);
    let in_flight = SlowRequest::start(server.port, to_json(&[payload(b"\"x\"")]).to_string().into_bytes()).await;

    server.signal("-TERM");

    let until = Instant::now() + DEADLINE;
    let body = loop {
        let response = client.get(format!("{admin}/readyz")).send().await.expect("the admin port still answers");
        if response.status() == 503 {
            break response.json::<Value>().await.unwrap();
        }
        assert!(Instant::now() < until, "readiness never turned to shutting-down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(body["checks"]["shutdown"], "shutting-down", "{body}");
    assert_eq!(client.get(format!("{admin}/healthz")).send().await.unwrap().status(), 200, "still alive");
    let (status, _) = in_flight.finish().await;
    assert_eq!(status, 200);
    let status = server.wait_exit(DEADLINE).await.expect("exits once the request is done");
    assert!(status.success(), "exit status {status}; log:\n{}", server.log().join("\n"));
}

#[tokio::test]
async fn a_request_stalled_past_the_shutdown_timeout_does_not_keep_the_process_alive() {
    let mut server = ServerProcess::start("shutdown_timeout = \"1s\"", &[]);
    let body = to_json(&[payload(b"never finished")]).to_string().into_bytes();
    let stalled = SlowRequest::start(server.port, body).await;

    server.signal("-TERM");

    let status = server.wait_exit(DEADLINE).await.expect("the deadline ends the stalled request");
    assert!(status.success(), "exit status {status}");
    let mut stream = stalled.stream;
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest).await;
    assert!(!String::from_utf8_lossy(&rest).contains("200 OK"), "a request cut by the deadline is not answered 200");
}

// ---------------------------------------------------------------------------------------------------
// Request ids

fn request_id(response: &reqwest::Response) -> String {
    response.headers().get("x-request-id").expect("x-request-id on every response").to_str().unwrap().to_owned()
}

fn is_generated(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn request_ids_are_echoed_when_well_formed_replaced_otherwise_and_on_every_response() {
    let app = TestApp::spawn().await;
    let get = |id: Option<String>| {
        let mut request = app.client.get(app.url("/healthz"));
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        request.send()
    };

    let echoed = get(Some("req-42_a.b:c".into())).await.unwrap();
    assert_eq!(request_id(&echoed), "req-42_a.b:c");
    for bad in ["has space".to_owned(), "a".repeat(300), "quote\"d".to_owned()] {
        let replaced = get(Some(bad.clone())).await.unwrap();
        let id = request_id(&replaced);
        assert!(is_generated(&id) && id != bad, "{bad:?} must be replaced, got {id}");
    }
    let first = request_id(&get(None).await.unwrap());
    let second = request_id(&get(None).await.unwrap());
    assert!(is_generated(&first) && first != second, "fresh ids: {first} {second}");

    let not_found = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(not_found.status(), 404);
    assert!(is_generated(&request_id(&not_found)));
    let jwks = crate::support::jwks_server::JwksServer::start(&["rsa-1"]);
    let url = jwks.url.clone();
    let secured = TestApp::spawn_with(move |c| crate::auth::jwt_config(c, &url)).await;
    let unauthenticated = secured.post("/decode", Some("payments"), &to_json(&[payload(b"x")])).await;
    assert_eq!(unauthenticated.status(), 401);
    assert!(is_generated(&request_id(&unauthenticated)));
}

/// The `request_id` of the `request` span a JSON log line was written in, if any.
fn span_request_id(line: &Value) -> Option<&str> {
    line["spans"].as_array()?.iter().find(|s| s["name"] == "request")?["request_id"].as_str()
}

#[tokio::test]
async fn every_log_line_of_a_request_carries_its_id_and_the_access_line_has_no_query_or_token() {
    let server = ServerProcess::start("", &[]);
    let client = reqwest::Client::new();

    let refused = client
        .post(server.url("/decode?token=query-secret-1"))
        .header("content-type", "application/json")
        .header("x-namespace", "default")
        .header("x-request-id", "ops-log-1")
        .bearer_auth("bearer-secret-2")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let served = client.get(server.url("/nope")).send().await.unwrap();
    let generated = request_id(&served);

    let until = Instant::now() + DEADLINE;
    let log = loop {
        let log = server.json_log();
        let access_lines = log.iter().filter(|l| l["fields"]["message"] == "Request served.").count();
        if access_lines >= 2 {
            break log;
        }
        assert!(Instant::now() < until, "no access lines; log:\n{}", server.log().join("\n"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let of = |id: &str| log.iter().filter(|l| span_request_id(l) == Some(id)).cloned().collect::<Vec<_>>();
    let first = of("ops-log-1");
    let messages: Vec<&str> = first.iter().filter_map(|l| l["fields"]["message"].as_str()).collect();
    assert!(messages.contains(&"Request refused.") && messages.contains(&"Request served."), "{messages:?}");
    let access = first.iter().find(|l| l["fields"]["message"] == "Request served.").unwrap();
    assert_eq!(access["fields"]["method"], "POST");
    assert_eq!(access["fields"]["path"], "/decode");
    assert_eq!(access["fields"]["status"], 400);
    assert!(access["fields"]["latency_ms"].as_f64().is_some(), "{access}");
    let second = of(&generated);
    assert!(second.iter().any(|l| l["fields"]["path"] == "/nope" && l["fields"]["status"] == 404), "{second:?}");
    let text = server.log().join("\n");
    assert!(!text.contains("query-secret-1") && !text.contains("bearer-secret-2"), "secrets in the log:\n{text}");
}

#[tokio::test]
async fn the_probe_command_that_helm_test_runs_exits_0_only_for_a_ready_server() {
    let app = TestApp::spawn_with(|c| c.server.admin_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let admin = app.admin_address.clone().unwrap();
    let probe = |url: String| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_codec-server"))
            .args(["probe", "--attempts", "1", "--timeout", "5", &url])
            .env_remove("CODEC_CONFIG")
            .output()
            .await
            .expect("run codec-server probe")
    };

    let ready = probe(format!("{admin}/readyz?verbose")).await;
    let missing = probe(app.url("/readyz")).await;

    assert!(ready.status.success(), "{}", String::from_utf8_lossy(&ready.stderr));
    assert!(String::from_utf8_lossy(&ready.stdout).contains("\"dependencies\""));
    assert!(!missing.status.success(), "the API port has no /readyz when an admin port exists");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"), "{}", String::from_utf8_lossy(&missing.stderr));
}
