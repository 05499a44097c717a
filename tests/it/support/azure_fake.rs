//! A FAKE of Azure Key Vault and of the Entra ID token endpoint — not Microsoft's service, and not an
//! emulator: no Key Vault emulator can be installed here, so this small HTTPS server inside the test
//! binary answers what Microsoft's official Rust SDK (`azure_security_keyvault_keys`, `azure_identity`)
//! sends for the codec server's calls, in the shapes of the Key Vault REST API reference
//! (api-version 2025-07-01):
//!
//! - `POST /keys/{name}/{version}/wrapkey` and `/unwrapkey` (and `/encrypt`, `/decrypt`, which Go CDK's
//!   keeper — Temporal Proxy — uses) with `{"alg":"RSA-OAEP-256","value":<base64url>}` →
//!   `{"kid":"https://<vault>/keys/<name>/<version>","value":<base64url>}`; an empty version is the
//!   latest one; errors are `{"error":{"code":…,"message":…}}`;
//! - `GET /keys/{name}[/{version}]` (the readiness check);
//! - Key Vault's challenge: a request without a valid bearer token gets 401 with
//!   `WWW-Authenticate: Bearer authorization="…", resource="https://vault.azure.net"` (the SDK sends its
//!   first request without a body or token and reads the audience from this);
//! - `POST /{tenant}/oauth2/v2.0/token`: the client-credentials grant of workload identity
//!   (`client_assertion` = the federated token file's content) or of a client secret.
//!
//! What it does like the real service, because the tests rely on it: real RSA-OAEP-256 (aws-lc) with a
//! 2048-bit key per key version, so a tampered wrapped key really fails (400 `BadParameter`); rotation
//! adds a version and old versions still unwrap; each key has its permitted operations (`key_ops`);
//! only HTTPS (the SDK refuses tokens over http). Switches answer 503, and `stop`/`restart` keep the port.
//! It counts every request it receives, authorized or not. Nothing here was checked against the real
//! service beyond Microsoft's published API reference and the SDK's source.

// Shared by several test files: not every test uses every helper.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{HttpRequest, HttpResponse, web};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepAlgorithm, OaepPrivateDecryptingKey,
    OaepPublicEncryptingKey, PrivateDecryptingKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

use super::fake_server::FakeServer;
use super::tls::TestCa;

/// The tenant of the fake's token endpoint.
pub const TENANT: &str = "00000000-0000-0000-0000-00000000fa4e";
/// The client id the fake's token endpoint accepts.
pub const CLIENT_ID: &str = "11111111-1111-1111-1111-11111111fa4e";
/// What the fake expects in the federated token file (workload identity).
pub const FEDERATED_TOKEN: &str = "fake-federated-service-account-token";
/// The audience Key Vault names in its challenge, and the scope a token must be for.
const RESOURCE: &str = "https://vault.azure.net";

/// One key: its versions (name, RSA key), newest last, and its permitted operations.
struct FakeKey {
    versions: Vec<(String, PrivateDecryptingKey)>,
    ops: Vec<&'static str>,
}

/// Misbehaviours, while set.
#[derive(Default)]
pub struct Switches {
    /// Answer every call with 503 while set.
    pub unavailable: AtomicBool,
    /// Set while stopped (`FakeServer`): a request on a kept-alive connection gets 503, never an answer.
    stopped: Arc<AtomicBool>,
}

#[derive(Default)]
struct FakeState {
    vault_host: String,
    access_token: String,
    keys: Mutex<HashMap<String, FakeKey>>,
    switches: Switches,
    /// Every request received, by operation (`wrapkey`, `unwrapkey`, `encrypt`, `decrypt`, `get`, `token`,
    /// `challenge`).
    counts: Mutex<HashMap<String, usize>>,
    requests: AtomicUsize,
    /// The `api-version` of every Key Vault request.
    api_versions: Mutex<Vec<String>>,
}

/// The FAKE Key Vault (and token endpoint) server.
pub struct AzureKeyVaultFake {
    /// `https://127.0.0.1:PORT`, for `kms.azure.endpoint` and `kms.azure.authority_host`.
    pub endpoint: String,
    /// The PEM file of the CA that signed the fake's certificate, for `kms.azure.ca_file`.
    pub ca_file: PathBuf,
    /// The federated token file (workload identity), for `kms.azure.federated_token_file`.
    pub token_file: PathBuf,
    state: Arc<FakeState>,
    server: FakeServer,
    _dir: tempfile::TempDir,
}

impl AzureKeyVaultFake {
    /// Starts the fake for `vault_host` (e.g. `codec-test.vault.azure.net`) on a free loopback port.
    pub fn start(vault_host: &str) -> AzureKeyVaultFake {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = TestCa::new("Azure Key Vault fake CA");
        let cert = ca.server_cert("azure-keyvault-fake");
        let ca_file = dir.path().join("fake-ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write CA");
        let token_file = dir.path().join("federated-token");
        std::fs::write(&token_file, FEDERATED_TOKEN).expect("write token file");
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes()).collect::<Result<_, _>>().expect("cert PEM");
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key PEM");
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("TLS config");
        let mut token = [0u8; 16];
        aws_lc_rs::rand::fill(&mut token).expect("random");
        let state = FakeState {
            vault_host: vault_host.to_owned(),
            access_token: format!("fake-access-token-{}", hex::encode(token)),
            ..Default::default()
        };
        let state = Arc::new(state);
        let stopped = state.switches.stopped.clone();
        let server = FakeServer::start("Key Vault fake", web::Data::new(state.clone()), handle, Some(tls), stopped);
        AzureKeyVaultFake {
            endpoint: format!("https://127.0.0.1:{}", server.port()),
            ca_file,
            token_file,
            state,
            server,
            _dir: dir,
        }
    }

    /// Creates an RSA-2048 key with one version and every operation permitted; returns the KEK URI.
    pub fn create_key(&self, name: &str) -> String {
        self.create_key_with_ops(name, &["wrapKey", "unwrapKey", "encrypt", "decrypt"])
    }

    /// Creates a key whose permitted operations are `ops` (Key Vault's `key_ops`).
    pub fn create_key_with_ops(&self, name: &str, ops: &[&'static str]) -> String {
        let key = FakeKey { versions: vec![new_version()], ops: ops.to_vec() };
        self.state.keys.lock().unwrap().insert(name.to_owned(), key);
        format!("azure-keyvault://{}/keys/{name}", self.state.vault_host)
    }

    /// Adds a new current version to a key; returns its version name.
    pub fn rotate(&self, name: &str) -> String {
        let mut keys = self.state.keys.lock().unwrap();
        let key = keys.get_mut(name).expect("a key of this fake");
        key.versions.push(new_version());
        key.versions.last().expect("a version").0.clone()
    }

    /// The current version's name.
    pub fn current_version(&self, name: &str) -> String {
        self.state.keys.lock().unwrap()[name].versions.last().expect("a version").0.clone()
    }

    /// What Key Vault's `encrypt` with RSA-OAEP-256 on the current version returns: the ciphertext an
    /// independent sealer (Go CDK's keeper) stores. Computed from the public key only.
    pub fn encrypt_with_public_key(&self, name: &str, plaintext: &[u8]) -> Vec<u8> {
        let keys = self.state.keys.lock().unwrap();
        let public = keys[name].versions.last().expect("a version").1.public_key();
        let encrypting = OaepPublicEncryptingKey::new(public).expect("OAEP key");
        let mut out = vec![0u8; encrypting.ciphertext_size()];
        encrypting.encrypt(&OAEP_SHA256_MGF1SHA256, plaintext, &mut out, None).expect("encrypt").to_vec()
    }

    /// The misbehaviour switches.
    pub fn switches(&self) -> &Switches {
        &self.state.switches
    }

    /// Requests received for one operation (authorized or not): `wrapkey`, `unwrapkey`, `encrypt`,
    /// `decrypt`, `get`, `token`, or `challenge` (a request that came without a valid token).
    pub fn calls(&self, op: &str) -> usize {
        self.state.counts.lock().unwrap().get(op).copied().unwrap_or(0)
    }

    /// Every request received, of any kind.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// The `api-version` query parameters received.
    pub fn api_versions(&self) -> Vec<String> {
        self.state.api_versions.lock().unwrap().clone()
    }

    /// Stops listening (new connections are refused, and a request on a kept-alive connection gets 503).
    pub async fn stop(&mut self) {
        self.server.stop().await;
    }

    /// Listens again on the same port, with the same keys.
    pub fn restart(&mut self) {
        self.server.restart();
    }
}

fn new_version() -> (String, PrivateDecryptingKey) {
    let mut id = [0u8; 16];
    aws_lc_rs::rand::fill(&mut id).expect("random");
    (hex::encode(id), PrivateDecryptingKey::generate(KeySize::Rsa2048).expect("RSA key"))
}

/// A Key Vault error: HTTP status, code, message.
struct Failure(u16, &'static str, String);

fn failure(status: u16, code: &'static str, message: impl Into<String>) -> Failure {
    Failure(status, code, message.into())
}

fn respond(result: Result<Value, Failure>) -> HttpResponse {
    match result {
        Ok(body) => HttpResponse::Ok().content_type("application/json").body(body.to_string()),
        Err(Failure(status, code, message)) => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status"))
                .content_type("application/json")
                .body(json!({ "error": { "code": code, "message": message } }).to_string())
        }
    }
}

async fn handle(request: HttpRequest, body: web::Bytes, state: web::Data<Arc<FakeState>>) -> HttpResponse {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let count = |op: &str| *state.counts.lock().unwrap().entry(op.to_owned()).or_default() += 1;
    let switches = &state.switches;
    if switches.unavailable.load(Ordering::SeqCst) || switches.stopped.load(Ordering::SeqCst) {
        return respond(Err(failure(503, "ServiceUnavailable", "The service is currently unavailable.")));
    }
    let path = request.path().to_owned();
    if path.ends_with("/oauth2/v2.0/token") {
        count("token");
        return token(&state, &path, &body);
    }
    let authorized = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", state.access_token));
    if !authorized {
        count("challenge");
        let challenge =
            format!("Bearer authorization=\"https://login.microsoftonline.com/{TENANT}\", resource=\"{RESOURCE}\"");
        return HttpResponse::Unauthorized()
            .insert_header(("www-authenticate", challenge))
            .content_type("application/json")
            .body(json!({ "error": { "code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token." } }).to_string());
    }
    let api_version = request
        .query_string()
        .split('&')
        .find_map(|pair| pair.strip_prefix("api-version="))
        .unwrap_or_default()
        .to_owned();
    state.api_versions.lock().unwrap().push(api_version.clone());
    if api_version.is_empty() {
        return respond(Err(failure(400, "BadParameter", "The api-version query parameter is required.")));
    }
    respond(key_operation(&state, request.method().as_str(), &path, &body, &count))
}

/// The token endpoint: client-credentials grant with a federated assertion or a client secret.
fn token(state: &FakeState, path: &str, body: &[u8]) -> HttpResponse {
    let form: HashMap<String, String> = url_form(body);
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let refuse = |error: &str, description: &str| {
        HttpResponse::BadRequest()
            .content_type("application/json")
            .body(json!({ "error": error, "error_description": description }).to_string())
    };
    if path != format!("/{TENANT}/oauth2/v2.0/token") {
        return refuse("invalid_request", "AADSTS90002: Tenant not found.");
    }
    let credential_ok = match field("client_assertion_type") {
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" => field("client_assertion") == FEDERATED_TOKEN,
        _ => field("client_secret") == "fake-client-secret",
    };
    if field("grant_type") != "client_credentials" || field("client_id") != CLIENT_ID || !credential_ok {
        return refuse("invalid_client", "AADSTS7000215: Invalid client credentials.");
    }
    if field("scope") != format!("{RESOURCE}/.default") {
        return refuse("invalid_scope", "AADSTS70011: The provided scope is not valid for this fake.");
    }
    HttpResponse::Ok().content_type("application/json").body(
        json!({ "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": state.access_token })
            .to_string(),
    )
}

fn url_form(body: &[u8]) -> HashMap<String, String> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        let mut out = Vec::new();
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && i + 2 < bytes.len()
                && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
            {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn key_operation(
    state: &FakeState,
    method: &str,
    path: &str,
    body: &[u8],
    count: &dyn Fn(&str),
) -> Result<Value, Failure> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // The SDK writes an absent version as an empty segment: /keys/<name>//wrapkey.
    let (name, version, op) = match (method, segments.as_slice()) {
        ("GET", ["keys", name]) | ("GET", ["keys", name, ""]) => (*name, "", "get"),
        ("GET", ["keys", name, version]) => (*name, *version, "get"),
        ("POST", ["keys", name, op]) => (*name, "", *op),
        ("POST", ["keys", name, version, op]) => (*name, *version, *op),
        _ => return Err(failure(404, "NotFound", format!("this fake does not serve {method} {path}"))),
    };
    count(op);
    let keys = state.keys.lock().unwrap();
    let key = keys.get(name).ok_or_else(|| {
        failure(404, "KeyNotFound", format!("A key with (name/id) {name} was not found in this key vault."))
    })?;
    let (version, private) = if version.is_empty() {
        key.versions.last().expect("a version")
    } else {
        key.versions.iter().find(|(v, _)| v == version).ok_or_else(|| {
            failure(404, "KeyNotFound", format!("A key with (name/id) {name}/{version} was not found."))
        })?
    };
    let kid = format!("https://{}/keys/{name}/{version}", state.vault_host);
    let permitted = match op {
        "get" => {
            return Ok(
                json!({ "key": { "kid": kid, "kty": "RSA", "key_ops": key.ops }, "attributes": { "enabled": true } }),
            );
        }
        "wrapkey" => "wrapKey",
        "unwrapkey" => "unwrapKey",
        "encrypt" => "encrypt",
        "decrypt" => "decrypt",
        _ => return Err(failure(404, "NotFound", format!("this fake does not implement {op}"))),
    };
    if !key.ops.contains(&permitted) {
        return Err(failure(403, "Forbidden", format!("Operation {permitted} is not permitted on this key.")));
    }
    let body: Value =
        serde_json::from_slice(body).map_err(|_| failure(400, "BadParameter", "The request body is not JSON."))?;
    let algorithm: &'static OaepAlgorithm = match body.get("alg").and_then(Value::as_str) {
        Some("RSA-OAEP-256") => &OAEP_SHA256_MGF1SHA256,
        Some("RSA-OAEP") => &OAEP_SHA1_MGF1SHA1,
        other => {
            return Err(failure(400, "BadParameter", format!("Algorithm {other:?} is not supported for RSA keys.")));
        }
    };
    let value = body
        .get("value")
        .and_then(Value::as_str)
        .and_then(|v| B64URL.decode(v.trim_end_matches('=')).ok())
        .ok_or_else(|| failure(400, "BadParameter", "value must be base64url."))?;
    let result = match op {
        "wrapkey" | "encrypt" => {
            let encrypting = OaepPublicEncryptingKey::new(private.public_key()).expect("OAEP key");
            let mut out = vec![0u8; encrypting.ciphertext_size()];
            encrypting
                .encrypt(algorithm, &value, &mut out, None)
                .map_err(|_| failure(400, "BadParameter", "The value is too long for this key."))?
                .to_vec()
        }
        _ => {
            let decrypting = OaepPrivateDecryptingKey::new(private.clone()).expect("OAEP key");
            let mut out = vec![0u8; decrypting.min_output_size()];
            decrypting
                .decrypt(algorithm, &value, &mut out, None)
                .map_err(|_| failure(400, "BadParameter", "Error occurred while decrypting the value."))?
                .to_vec()
        }
    };
    Ok(json!({ "kid": kid, "value": B64URL.encode(result) }))
}
