//! The test application: a real server on a free loopback port with its own data directory, plus
//! small helpers to build payloads and call the codec routes.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::web;
use codec_server::clock::ManualClock;
use codec_server::config::{Config, Mode};
use codec_server::protocol::{Payload, Payloads};
use codec_server::startup::Application;
use codec_server::state::AppState;
use serde_json::Value;

/// A running server and a client for it.
pub struct TestApp {
    pub address: String,
    /// `http://127.0.0.1:PORT` of the admin listener, when `server.admin_listen` is set.
    pub admin_address: Option<String>,
    pub state: web::Data<AppState>,
    pub clock: Arc<ManualClock>,
    pub client: reqwest::Client,
    pub config: Config,
    _data_dir: tempfile::TempDir,
}

impl TestApp {
    /// The embedded dev default on a free port.
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    /// The dev default, adjusted by `configure`, on a free port.
    pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> TestApp {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::dev();
        config.data_dir = data_dir.path().to_path_buf();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        configure(&mut config);
        config.validate().expect("test config must be valid");
        let clock = Arc::new(ManualClock::default());
        let app = Application::build_with_clock(&config, Mode::Dev, clock.clone()).await.expect("build app");
        let address = format!("http://127.0.0.1:{}", app.port());
        let admin_address = app.admin_port().map(|port| format!("http://127.0.0.1:{port}"));
        let state = app.state();
        tokio::spawn(app.run_until_stopped());
        TestApp { address, admin_address, state, clock, client: reqwest::Client::new(), config, _data_dir: data_dir }
    }

    /// Full URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// POSTs a JSON body with an optional `X-Namespace` header.
    pub async fn post(&self, path: &str, namespace: Option<&str>, body: &Value) -> reqwest::Response {
        self.post_text(path, namespace, body.to_string()).await
    }

    /// POSTs a body as written (malformed or huge JSON) with an optional `X-Namespace` header.
    pub async fn post_text(&self, path: &str, namespace: Option<&str>, body: String) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).header("content-type", "application/json");
        if let Some(ns) = namespace {
            request = request.header("x-namespace", ns);
        }
        request.body(body).send().await.expect("request failed")
    }

    /// Encodes through `/encode` and asserts success.
    pub async fn encode(&self, namespace: &str, payloads: Vec<Payload>) -> Vec<Payload> {
        let response = self.post("/encode", Some(namespace), &to_json(&payloads)).await;
        assert_eq!(response.status(), 200, "encode failed: {}", response.text().await.unwrap_or_default());
        read_payloads(response).await
    }

    /// Decodes through `/decode`; returns the raw response.
    pub async fn post_decode(&self, namespace: &str, payloads: &[Payload]) -> reqwest::Response {
        self.post("/decode", Some(namespace), &to_json(payloads)).await
    }

    /// Decodes through `/decode` and asserts success.
    pub async fn decode(&self, namespace: &str, payloads: &[Payload]) -> Vec<Payload> {
        let response = self.post_decode(namespace, payloads).await;
        assert_eq!(response.status(), 200, "decode failed: {}", response.text().await.unwrap_or_default());
        read_payloads(response).await
    }

    /// KMS calls of every kind made so far.
    pub fn kms_calls(&self) -> u64 {
        self.state.kms_stats.total_calls()
    }
}

/// A `json/plain` payload.
pub fn payload(data: &[u8]) -> Payload {
    Payload {
        metadata: BTreeMap::from([("encoding".into(), b"json/plain".to_vec())]),
        data: data.to_vec().into(),
        external_payloads: Vec::new(),
    }
}

/// Changes a payload's data (shared `Bytes`, so through a copy), e.g. to tamper with an envelope.
pub fn edit_data(p: &mut Payload, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut data = p.data.to_vec();
    edit(&mut data);
    p.data = data.into();
}

/// Payloads as the request JSON.
pub fn to_json(payloads: &[Payload]) -> Value {
    serde_json::from_slice(&Payloads { payloads: payloads.to_vec() }.to_json()).expect("valid JSON")
}

/// Parses a Payloads response.
pub async fn read_payloads(response: reqwest::Response) -> Vec<Payload> {
    let bytes = response.bytes().await.expect("body");
    Payloads::from_json(&bytes).expect("response is Payloads JSON").payloads
}

/// The `error.code` of an error response.
pub async fn error_code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.expect("JSON error body");
    body["error"]["code"].as_str().expect("error.code").to_owned()
}
