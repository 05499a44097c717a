//! A real moto server (the AWS KMS emulator from PyPI `moto[server]`) on loopback, and a small
//! tampering proxy that can stand between the codec server and moto.
//!
//! moto is installed into `<repo>/.venv` by `bash scripts/test-env.sh` (pinned in
//! `scripts/requirements-test.txt`); a missing install fails the test with a message saying so. It
//! enforces EncryptionContext and the `KeyId` of Decrypt, but not key policies, and its
//! `RotateKeyOnDemand` records a rotation without changing key material (DESIGN §11).
//!
//! Each server runs `moto.server.main` under the venv's Python with a watchdog thread that exits when
//! its stdin closes, so a server outlives neither its `MotoServer` nor the test binary (a shared
//! server in a `static` is never dropped). The proxy forwards every request to moto and can answer
//! with throttling or 5xx errors instead, or rewrite the `KeyId` of responses — the failures moto
//! itself cannot produce.

// Shared by several test files: not every test uses every helper.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use codec_server::config::{Config, Secret};
use serde_json::{Value, json};

use super::fake_server::FakeServer;

/// Account id of every moto key.
pub const ACCOUNT: &str = "123456789012";

/// How long moto may take to answer after launch (it usually takes ~1 s).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Exits the server when stdin closes (the test process ended or dropped the handle).
const WATCHDOG: &str = "import os, sys, threading\n\
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()\n\
from moto.server import main\n\
main(sys.argv[1:])\n";

/// A running moto server on a loopback port.
pub struct MotoServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    child: Child,
    _stdin: ChildStdin,
}

fn venv_bin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin").join(name)
}

impl MotoServer {
    /// Starts a new server and waits until it answers. Panics with how to install moto if it is missing.
    pub fn start() -> MotoServer {
        let moto_server = venv_bin("moto_server");
        assert!(
            moto_server.is_file(),
            "moto is not installed ({} is missing). Install the test components with `bash scripts/test-env.sh` \
             (`bash scripts/test.sh` runs it first); it installs `moto[server]` from scripts/requirements-test.txt.",
            moto_server.display()
        );
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut child = Command::new(venv_bin("python"))
                .args(["-c", WATCHDOG, "-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start moto with {}: {e}", venv_bin("python").display()));
            let stdin = child.stdin.take().expect("piped stdin");
            let started = Instant::now();
            while started.elapsed() < READY_TIMEOUT {
                if let Ok(Some(status)) = child.try_wait() {
                    let mut stderr = String::new();
                    if let Some(mut pipe) = child.stderr.take() {
                        let _ = pipe.read_to_string(&mut stderr);
                    }
                    last_error = format!("moto exited with {status}: {stderr}");
                    break;
                }
                if http_get_ok(port, "/moto-api/") {
                    // Nobody reads moto's request log: drop the pipe so it can never fill up.
                    drop(child.stderr.take());
                    return MotoServer { url: format!("http://127.0.0.1:{port}"), child, _stdin: stdin };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            if last_error.is_empty() {
                panic!("moto did not answer within {READY_TIMEOUT:?}");
            }
        }
        panic!("moto failed to start 3 times; last: {last_error}")
    }

    /// One server for every test of the binary that needs nothing but keys of its own.
    pub fn shared() -> &'static MotoServer {
        static SHARED: OnceLock<MotoServer> = OnceLock::new();
        SHARED.get_or_init(MotoServer::start)
    }

    /// Freezes the process (SIGSTOP): connections are accepted by the kernel and never answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused process run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("run kill(1)");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Kills the process for good (its keys are gone with it).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Calls a KMS action directly (for test setup), signed for `region` as far as moto cares.
    pub async fn call(&self, region: &str, action: &str, body: Value) -> Value {
        let response = reqwest::Client::new()
            .post(&self.url)
            .header("x-amz-target", format!("TrentService.{action}"))
            .header("content-type", "application/x-amz-json-1.1")
            .header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential=test/20260101/{region}/kms/aws4_request, SignedHeaders=host, Signature=0"
                ),
            )
            .body(body.to_string())
            .send()
            .await
            .expect("moto request");
        let status = response.status();
        let text = response.text().await.expect("moto response");
        assert!(status.is_success(), "moto {action} failed with {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Creates a symmetric key in `region` and returns its ARN.
    pub async fn create_key(&self, region: &str) -> String {
        let created = self.call(region, "CreateKey", json!({})).await;
        created["KeyMetadata"]["Arn"].as_str().expect("key ARN").to_owned()
    }

    /// Creates `alias/<name>` for a key and returns the alias ARN.
    pub async fn create_alias(&self, region: &str, name: &str, key_arn: &str) -> String {
        self.call(region, "CreateAlias", json!({ "AliasName": format!("alias/{name}"), "TargetKeyId": key_arn })).await;
        format!("arn:aws:kms:{region}:{ACCOUNT}:alias/{name}")
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.resume_quietly();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl MotoServer {
    fn resume_quietly(&self) {
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port").local_addr().expect("port").port()
}

/// A blocking `GET` that reports whether the answer was 200.
fn http_get_ok(port: u16, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// Points the `[kms.aws]` section at a test endpoint with static credentials (moto accepts any).
pub fn use_endpoint(config: &mut Config, endpoint: &str) {
    config.kms.aws.endpoint_url = Some(endpoint.to_owned());
    config.kms.aws.access_key_id = Some("testing".into());
    config.kms.aws.secret_access_key = Some(secret("testing"));
}

fn secret(value: &str) -> Secret {
    serde_json::from_value(json!(value)).expect("a Secret from a string")
}

/// What the proxy does with the next requests.
#[derive(Default)]
struct ProxyState {
    /// Answer this many requests with a throttling error instead of forwarding them.
    throttle: AtomicU32,
    /// Answer every request with 503 while set.
    down: AtomicBool,
    /// Replace the `KeyId` of every forwarded response with this value.
    rewrite_key_id: Mutex<Option<String>>,
    /// `(action, request body)` of every request received.
    requests: Mutex<Vec<(String, Value)>>,
}

/// A tampering HTTP proxy in front of a moto server.
pub struct KmsProxy {
    /// `http://127.0.0.1:PORT`, to use as `kms.aws.endpoint_url`.
    pub url: String,
    state: Arc<ProxyState>,
    /// Stops the proxy when dropped.
    _server: FakeServer,
}

impl KmsProxy {
    /// Starts a proxy forwarding to `upstream` (a moto URL).
    pub fn start(upstream: &str) -> KmsProxy {
        let state = Arc::new(ProxyState::default());
        let data = web::Data::new((state.clone(), upstream.to_owned(), reqwest::Client::new()));
        // Never stopped, so nothing reads the flag.
        let server = FakeServer::start("KMS proxy", data, forward, None, Arc::default());
        KmsProxy { url: format!("http://127.0.0.1:{}", server.port()), state, _server: server }
    }

    /// Answers the next `n` requests with `ThrottlingException`.
    pub fn throttle_next(&self, n: u32) {
        self.state.throttle.store(n, Ordering::SeqCst);
    }

    /// Answers every request with 503 (`true`) or forwards again (`false`).
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Rewrites the `KeyId` of every response from now on.
    pub fn rewrite_key_id(&self, key_id: &str) {
        *self.state.rewrite_key_id.lock().unwrap() = Some(key_id.to_owned());
    }

    /// Every request received so far: `(action, body)`.
    pub fn requests(&self) -> Vec<(String, Value)> {
        self.state.requests.lock().unwrap().clone()
    }

    /// How many requests of `action` (e.g. `Decrypt`) were received.
    pub fn count(&self, action: &str) -> usize {
        self.state.requests.lock().unwrap().iter().filter(|(a, _)| a == action).count()
    }
}

type ProxyData = web::Data<(Arc<ProxyState>, String, reqwest::Client)>;

async fn forward(request: HttpRequest, body: web::Bytes, data: ProxyData) -> HttpResponse {
    let (state, upstream, client) = data.get_ref();
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let target = header("x-amz-target");
    let action = target.rsplit('.').next().unwrap_or_default().to_owned();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.requests.lock().unwrap().push((action, parsed));
    let json_type = "application/x-amz-json-1.1";
    if state.down.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable()
            .content_type(json_type)
            .body(json!({"__type": "KMSInternalException", "message": "proxy is down"}).to_string());
    }
    if state.throttle.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        return HttpResponse::BadRequest()
            .content_type(json_type)
            .body(json!({"__type": "ThrottlingException", "message": "Rate exceeded"}).to_string());
    }
    let response = client
        .post(upstream.as_str())
        .header("x-amz-target", target)
        .header("content-type", header("content-type"))
        .header("authorization", header("authorization"))
        .header("x-amz-date", header("x-amz-date"))
        .body(body.to_vec())
        .send()
        .await;
    let Ok(response) = response else {
        return HttpResponse::BadGateway().finish();
    };
    let status = response.status().as_u16();
    let mut text = response.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
    if let Some(key_id) = state.rewrite_key_id.lock().unwrap().clone()
        && let Ok(mut value) = serde_json::from_slice::<Value>(&text)
        && value.get("KeyId").is_some()
    {
        value["KeyId"] = json!(key_id);
        text = value.to_string().into_bytes();
    }
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .content_type(json_type)
        .body(text)
}
