//! Hostile connections (issue 15 item 4), each against the real server binary while a well-behaved
//! client keeps encoding through it: thousands of idle connections, request heads sent one byte at a
//! time (slowloris), oversized request heads, and HTTP/2 over TLS with rapid stream resets and stream
//! floods. Each attack gets a clear status or a closed connection within the configured limits, the
//! server's open files and memory come back down, and the well-behaved client keeps getting 200s.
//!
//! The well-behaved client's p50/p99 during each attack is printed (`cargo test --test it hostile --
//! --nocapture`) for docs/reliability.md; it is never asserted: these tests run on loaded CI machines.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{payload, to_json};
use crate::support::server_process::ServerProcess;
use crate::support::tls::TestCa;

/// A safety net so a broken server fails a test instead of hanging it; never a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// A client that encodes one small payload at a time, as a worker does, until it is stopped.
struct WellBehaved {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(u16, Duration)>>,
}

/// What the well-behaved client saw during an attack.
struct Served {
    requests: usize,
    failed: Vec<u16>,
}

impl WellBehaved {
    /// Starts encoding through `url` (`…/encode`) with `client`, one request after another.
    fn start(client: reqwest::Client, url: String) -> WellBehaved {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let body = to_json(&[payload(b"\"well behaved\"")]).to_string();
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                let started = Instant::now();
                let sent = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-namespace", "default")
                    .body(body.clone())
                    .send()
                    .await;
                let status = match sent {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        status
                    }
                    Err(_) => 0,
                };
                samples.push((status, started.elapsed()));
            }
            samples
        });
        WellBehaved { stop, task }
    }

    /// Stops the client and prints its latency during `attack`.
    async fn finish(self, attack: &str) -> Served {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.task.await.expect("the well-behaved client does not panic");
        let mut latencies: Vec<Duration> = samples.iter().map(|(_, took)| *took).collect();
        latencies.sort();
        let quantile = |q: f64| {
            latencies
                .get(((latencies.len().saturating_sub(1)) as f64 * q).round() as usize)
                .copied()
                .unwrap_or_default()
        };
        let failed: Vec<u16> = samples.iter().map(|(status, _)| *status).filter(|s| *s != 200).collect();
        eprintln!(
            "well-behaved client during {attack}: {} requests, {} not 200, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            samples.len(),
            failed.len(),
            quantile(0.50).as_secs_f64() * 1e3,
            quantile(0.99).as_secs_f64() * 1e3,
            latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
        Served { requests: samples.len(), failed }
    }
}

/// The well-behaved client's figures with no attack, for comparison (printed only).
async fn baseline(client: reqwest::Client, url: String, label: &str) {
    let well = WellBehaved::start(client, url);
    tokio::time::sleep(Duration::from_millis(300)).await;
    well.finish(label).await.assert_served(label);
}

impl Served {
    fn assert_served(&self, attack: &str) {
        assert!(self.requests > 0, "the well-behaved client made no request during {attack}");
        assert!(self.failed.is_empty(), "the well-behaved client got {:?} during {attack}", self.failed);
    }
}

/// Open file descriptors of a process (sockets included).
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read /proc/PID/fd").count()
}

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib / 1024.0
}

/// Waits until the server holds at most `limit` open files; fails past the hang guard.
async fn wait_for_open_files_at_most(pid: u32, limit: usize) -> usize {
    let until = Instant::now() + HANG_GUARD;
    loop {
        let open = open_files(pid);
        if open <= limit {
            return open;
        }
        assert!(Instant::now() < until, "the server still holds {open} open files (expected at most {limit})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads what the server sends until it closes the connection (a reset counts as closed).
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(HANG_GUARD, stream.read(&mut buf)).await {
            Err(_) => panic!("the server kept the connection open past {HANG_GUARD:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return received,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status code of a raw HTTP/1.1 response, if one was received.
fn status_of(response: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(response);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// A request head for an encode of `body_len` bytes, with `extra` header lines.
fn encode_head(port: u16, body_len: usize, extra: &str) -> String {
    format!(
        "POST /encode HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nX-Namespace: default\r\n\
         Content-Length: {body_len}\r\n{extra}\r\n"
    )
}

/// Sends one whole request on a new connection and returns what came back before the server closed it
/// (`Connection: close`). Write errors are ignored: a server may close before reading everything.
async fn one_request(port: u16, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let _ = stream.write_all(request).await;
    read_until_closed(&mut stream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_are_closed_while_a_well_behaved_client_is_served() {
    let server = ServerProcess::start("client_request_timeout = \"2s\"\nkeep_alive = \"2s\"", &[]);
    let pid = server.pid();
    let client = reqwest::Client::new();
    baseline(client.clone(), server.url("/encode"), "no attack (HTTP/1.1)").await;
    let well = WellBehaved::start(client, server.url("/encode"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = open_files(pid);

    // 2,000 connections: a third say nothing, a third send half a request line, a third finish one
    // request and then idle on keep-alive.
    let mut idle = Vec::with_capacity(2000);
    for i in 0..2000 {
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
        match i % 3 {
            0 => {}
            1 => stream.write_all(b"POST /enc").await.expect("write"),
            _ => {
                stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.expect("write");
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    assert_eq!(stream.read(&mut byte).await.expect("read"), 1, "closed before the response");
                    head.push(byte[0]);
                }
                assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
            }
        }
        idle.push(stream);
    }
    let peak_files = open_files(pid);
    let peak_rss = rss_mib(pid);

    // Every one of them is closed by the server (408 at most), none is answered otherwise.
    for (i, stream) in idle.iter_mut().enumerate() {
        let rest = read_until_closed(stream).await;
        // The keep-alive ones already read their response head; its body may still be buffered.
        if i % 3 != 2 {
            assert!(rest.is_empty() || status_of(&rest) == Some(408), "{}", String::from_utf8_lossy(&rest));
        }
    }
    let served = well.finish("2,000 idle connections").await;
    drop(idle);
    let after = wait_for_open_files_at_most(pid, baseline + 16).await;
    eprintln!(
        "2,000 idle connections: server open files {baseline} before, {peak_files} with them open, {after} after; RSS {peak_rss:.1} MiB with them open, {:.1} MiB after",
        rss_mib(pid)
    );
    served.assert_served("2,000 idle connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_sent_one_byte_at_a_time_is_cut_off_at_the_client_request_timeout() {
    let server = ServerProcess::start("client_request_timeout = \"1s\"", &[]);
    let pid = server.pid();
    let well = WellBehaved::start(reqwest::Client::new(), server.url("/encode"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = open_files(pid);

    // 200 connections each send a head of ~450 bytes at one byte per 50 ms: 22 s if it were let in.
    let padding: String = (0..8).map(|i| format!("X-Padding-{i}: {}\r\n", "a".repeat(32))).collect();
    let head = encode_head(server.port, 2, &padding);
    let attackers: Vec<_> = (0..200)
        .map(|_| {
            let (port, head) = (server.port, head.clone());
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
                let mut buf = [0u8; 1024];
                let mut received = Vec::new();
                for byte in head.as_bytes() {
                    if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
                        break;
                    }
                    tokio::select! {
                        read = stream.read(&mut buf) => match read {
                            Ok(n) if n > 0 => received.extend_from_slice(&buf[..n]),
                            _ => return received,
                        },
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
                received.extend(read_until_closed(&mut stream).await);
                received
            })
        })
        .collect();
    let mut timed_out = 0;
    for attacker in attackers {
        let received = attacker.await.expect("attacker task");
        assert!(
            received.is_empty() || status_of(&received) == Some(408),
            "a trickled head got {}",
            String::from_utf8_lossy(&received)
        );
        timed_out += usize::from(!received.is_empty());
    }
    let served = well.finish("200 slowloris heads").await;
    let after = wait_for_open_files_at_most(pid, baseline + 16).await;
    eprintln!(
        "slowloris: 200 trickled heads, {timed_out} answered 408, the rest closed; server open files {baseline} before, {after} after"
    );
    served.assert_served("200 slowloris heads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_get_431_within_actix_fixed_bounds() {
    let server = ServerProcess::start("", &[]);
    let port = server.port;
    let body = r#"{"payloads":[]}"#;
    let request =
        |extra: &str| format!("{}{body}", encode_head(port, body.len(), &format!("{extra}Connection: close\r\n")));

    // The documented bounds: at most 96 header lines (our 5 + 91 here) and a 128 KiB head.
    let many = |n: usize| (0..n).map(|i| format!("X-H{i}: v\r\n")).collect::<String>();
    assert_eq!(status_of(&one_request(port, request(&many(91)).as_bytes()).await), Some(200));
    assert_eq!(status_of(&one_request(port, request(&many(92)).as_bytes()).await), Some(431));
    let single = |len: usize| format!("X-Big: {}\r\n", "a".repeat(len));
    assert_eq!(status_of(&one_request(port, request(&single(64 * 1024)).as_bytes()).await), Some(200));
    let too_big = one_request(port, request(&single(200 * 1024)).as_bytes()).await;
    assert!(too_big.is_empty() || status_of(&too_big) == Some(431), "{}", String::from_utf8_lossy(&too_big));

    // 400 requests of 1,024 headers each, eight at a time, while a well-behaved client encodes.
    let well = WellBehaved::start(reqwest::Client::new(), server.url("/encode"));
    let flood = Arc::new(request(&many(1024)).into_bytes());
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let flood = flood.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    let response = one_request(port, &flood).await;
                    assert_eq!(status_of(&response), Some(431), "{}", String::from_utf8_lossy(&response));
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.expect("431 for every oversized head");
    }
    eprintln!("oversized heads: server RSS {:.1} MiB after 400 heads of 1,024 headers", rss_mib(server.pid()));
    well.finish("400 heads of 1,024 headers").await.assert_served("oversized heads");
}

/// A server with TLS (HTTP/1.1 and HTTP/2 by ALPN), its CA, and an HTTPS client that trusts it.
struct TlsServer {
    server: ServerProcess,
    ca: TestCa,
    _dir: tempfile::TempDir,
}

impl TlsServer {
    fn start(server_keys: &str) -> TlsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = TestCa::new("hostile-connections CA");
        let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        ca.server_cert("127.0.0.1").write(&cert_file, &key_file);
        let server = ServerProcess::start(
            &format!("{server_keys}\n[server.tls]\ncert_file = {cert_file:?}\nkey_file = {key_file:?}"),
            &[],
        );
        TlsServer { server, ca, _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.server.port)
    }

    fn client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca.pem().as_bytes()).expect("CA PEM");
        reqwest::Client::builder().tls_certs_only([ca]).build().expect("HTTPS client")
    }

    /// A raw HTTP/2 connection (ALPN `h2`); the returned task drives it and ends with its outcome.
    async fn h2(&self) -> (h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<Result<(), h2::Error>>) {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.ca.pem().as_bytes()).expect("CA DER")).expect("add CA");
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = TcpStream::connect(("127.0.0.1", self.server.port)).await.expect("connect");
        let name = ServerName::try_from("127.0.0.1").expect("server name");
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("TLS handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "the server offers HTTP/2");
        // The attacker leaves the small error bodies unread: no client-side budget for buffered frames.
        let (send, connection) =
            h2::client::Builder::new().data_frame_budget(usize::MAX).handshake(tls).await.expect("HTTP/2 handshake");
        (send, tokio::spawn(connection))
    }

    /// An encode request head announcing `content_length` body bytes.
    fn h2_encode(&self, content_length: usize) -> http::Request<()> {
        http::Request::post(self.url("/encode"))
            .header("content-type", "application/json")
            .header("x-namespace", "default")
            .header("content-length", content_length.to_string())
            .body(())
            .expect("request")
    }
}

/// How an HTTP/2 attack connection ended, for the log.
fn h2_outcome(result: Result<Result<(), h2::Error>, tokio::task::JoinError>) -> String {
    match result {
        Ok(Ok(())) => "closed cleanly".to_owned(),
        Ok(Err(e)) if e.is_go_away() => format!("GOAWAY {:?}", e.reason()),
        Ok(Err(e)) => format!("ended: {e}"),
        Err(e) => format!("driver failed: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_resets_are_bounded_and_other_connections_are_served() {
    let tls = TlsServer::start("");
    let pid = tls.server.pid();
    baseline(tls.client(), tls.url("/encode"), "no attack (HTTP/2 over TLS, before the rapid resets)").await;
    let well = WellBehaved::start(tls.client(), tls.url("/encode"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (baseline_files, baseline_rss) = (open_files(pid), rss_mib(pid));

    // CVE-2023-44487: HEADERS then RST_STREAM, as fast as the connection takes them.
    let (mut h2, driver) = tls.h2().await;
    let mut opened = 0;
    let mut refused = None;
    for i in 0..20_000 {
        if let Err(e) = poll_fn(|cx| h2.poll_ready(cx)).await {
            refused = Some(e);
            break;
        }
        match h2.send_request(tls.h2_encode(100), false) {
            Ok((_response, mut stream)) => {
                stream.send_reset(h2::Reason::CANCEL);
                opened += 1;
            }
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
        if i % 16 == 0 {
            tokio::task::yield_now().await;
        }
    }
    drop(h2);
    let ended = tokio::time::timeout(HANG_GUARD, driver).await.expect("the attack connection ends");
    let outcome = format!("{}; the client's last send: {refused:?}", h2_outcome(ended));
    let (peak_files, peak_rss) = (open_files(pid), rss_mib(pid));
    let served = well.finish("HTTP/2 rapid reset").await;

    // The server is still whole: a new HTTP/2 connection gets an answer.
    let response = tls
        .client()
        .post(tls.url("/encode"))
        .header("content-type", "application/json")
        .header("x-namespace", "default")
        .body(to_json(&[payload(b"1")]).to_string())
        .send()
        .await
        .expect("after");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let after = wait_for_open_files_at_most(pid, baseline_files + 16).await;
    eprintln!(
        "HTTP/2 rapid reset: {opened} streams opened and reset, connection {outcome}; server open files {baseline_files} -> {peak_files} -> {after}, RSS {baseline_rss:.1} -> {peak_rss:.1} -> {:.1} MiB",
        rss_mib(pid)
    );
    served.assert_served("HTTP/2 rapid reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_flood_gets_clear_answers_and_other_connections_are_served() {
    let tls = TlsServer::start("body_read_timeout = \"2s\"");
    let pid = tls.server.pid();
    baseline(tls.client(), tls.url("/encode"), "no attack (HTTP/2 over TLS, before the stream flood)").await;
    let well = WellBehaved::start(tls.client(), tls.url("/encode"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline_rss = rss_mib(pid);

    // 5,000 concurrent streams on one connection, each announcing a body it never sends: the first 256
    // (`server.max_concurrent_streams`) wait for it until `body_read_timeout` (408), the rest get 503 at once.
    let (mut h2, driver) = tls.h2().await;
    let mut pending = Vec::new();
    let mut refused = None;
    for i in 0..5_000 {
        if let Err(e) = poll_fn(|cx| h2.poll_ready(cx)).await {
            refused = Some(e);
            break;
        }
        match h2.send_request(tls.h2_encode(100), false) {
            Ok((response, stream)) => pending.push((response, stream)),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
        if i % 16 == 0 {
            tokio::task::yield_now().await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak_rss = rss_mib(pid);
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for (response, _stream) in pending.drain(..) {
        let answer = match tokio::time::timeout(HANG_GUARD, response).await.expect("every stream is answered") {
            Ok(response) => response.status().as_u16().to_string(),
            Err(e) if e.is_reset() => format!("reset {:?}", e.reason()),
            Err(e) if e.is_go_away() => format!("GOAWAY {e:?}"),
            Err(e) => format!("error {e}"),
        };
        *statuses.entry(answer).or_default() += 1;
    }
    drop(h2);
    let _ = tokio::time::timeout(HANG_GUARD, driver).await;
    let served = well.finish("HTTP/2 stream flood").await;
    eprintln!(
        "HTTP/2 stream flood: answers {statuses:?}, refused {refused:?}; server RSS {baseline_rss:.1} -> {peak_rss:.1} -> {:.1} MiB",
        rss_mib(pid)
    );
    for answer in statuses.keys() {
        let clear =
            ["408", "503"].contains(&answer.as_str()) || answer.starts_with("reset") || answer.starts_with("GOAWAY");
        assert!(clear, "{statuses:?}");
    }
    // Only `server.max_concurrent_streams` (256) of them were let in to wait for their bodies.
    let let_in = statuses.get("408").copied().unwrap_or(0);
    assert!(let_in <= 256, "{let_in} streams of one connection were in service at once: {statuses:?}");
    served.assert_served("HTTP/2 stream flood");
}
