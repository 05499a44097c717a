//! A FAKE of Google Cloud KMS — not Google's service, and not an emulator: no GCP KMS emulator exists
//! that we could install (DESIGN §11), so this small HTTP server inside the test binary answers the two
//! REST calls the codec server makes, `POST /v1/{name}:encrypt` and `POST /v1/{name}:decrypt`, in the
//! JSON shape of Cloud KMS's REST API that Google's official client (`google-cloud-kms-v1`) speaks.
//!
//! What it does like the real service, because the tests rely on it: ciphertexts are AES-256-GCM under
//! a per-key-version secret with the request's additional authenticated data, so a wrong AAD fails with
//! `INVALID_ARGUMENT`; request CRC32C fields are checked (mismatch → `INVALID_ARGUMENT`) and reported in
//! `verifiedPlaintextCrc32c` / `verifiedAdditionalAuthenticatedDataCrc32c`; responses carry
//! `ciphertextCrc32c` / `plaintextCrc32c`; Encrypt answers with the key version's name; unknown keys get
//! `NOT_FOUND`; `rotate` adds a primary version and old ciphertexts still decrypt.
//!
//! Switches make it misbehave on purpose: corrupt the CRC32C it returns, answer `verified…: false`,
//! name another key, answer 503 or 403, and `stop`/`restart` on the same port with the same keys.
//! Nothing here was checked against the real service beyond Google's published API reference.

// Shared by several test files: not every test uses every helper.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{HttpRequest, HttpResponse, web};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::fake_server::FakeServer;

/// One key's versions (index + 1 = version number) and its primary.
struct FakeKey {
    versions: Vec<[u8; 32]>,
    primary: usize,
}

/// Misbehaviours, each for a number of upcoming responses (or while set).
#[derive(Default)]
pub struct Switches {
    /// Encrypt: return a wrong `ciphertextCrc32c`.
    pub corrupt_ciphertext_crc: AtomicU32,
    /// Decrypt: return a wrong `plaintextCrc32c`.
    pub corrupt_plaintext_crc: AtomicU32,
    /// Encrypt: answer `verifiedPlaintextCrc32c: false`.
    pub unverified_plaintext: AtomicU32,
    /// Encrypt: answer `verifiedAdditionalAuthenticatedDataCrc32c: false`.
    pub unverified_aad: AtomicU32,
    /// Encrypt: name a version of another key in the response.
    pub other_key_name: AtomicBool,
    /// Answer every call with 503 UNAVAILABLE while set.
    pub unavailable: AtomicBool,
    /// Answer every call with 403 PERMISSION_DENIED while set.
    pub permission_denied: AtomicBool,
    /// Set while stopped (`FakeServer`): a request on a kept-alive connection gets 503, never an answer.
    stopped: Arc<AtomicBool>,
}

fn take(counter: &AtomicU32) -> bool {
    counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
}

#[derive(Default)]
struct FakeState {
    keys: Mutex<HashMap<String, FakeKey>>,
    switches: Switches,
    encrypts: AtomicUsize,
    decrypts: AtomicUsize,
}

/// The FAKE Cloud KMS server.
pub struct GcpKmsFake {
    /// `http://127.0.0.1:PORT`, for `kms.gcp.endpoint`.
    pub endpoint: String,
    state: Arc<FakeState>,
    server: FakeServer,
}

impl GcpKmsFake {
    /// Starts the fake on a free loopback port, with no keys.
    pub fn start() -> GcpKmsFake {
        let state = Arc::<FakeState>::default();
        let stopped = state.switches.stopped.clone();
        let server = FakeServer::start("GCP KMS fake", web::Data::new(state.clone()), handle, None, stopped);
        GcpKmsFake { endpoint: format!("http://127.0.0.1:{}", server.port()), state, server }
    }

    /// Creates a key with one version; returns its resource name.
    pub fn create_key(&self, key_ring: &str, key: &str) -> String {
        let name = format!("projects/codec-test/locations/europe-west1/keyRings/{key_ring}/cryptoKeys/{key}");
        self.state.keys.lock().unwrap().insert(name.clone(), FakeKey { versions: vec![random_key()], primary: 0 });
        name
    }

    /// Adds a new primary version to a key.
    pub fn rotate(&self, name: &str) {
        let mut keys = self.state.keys.lock().unwrap();
        let key = keys.get_mut(name).expect("a key of this fake");
        key.versions.push(random_key());
        key.primary = key.versions.len() - 1;
    }

    /// The misbehaviour switches.
    pub fn switches(&self) -> &Switches {
        &self.state.switches
    }

    /// Encrypt calls received (including ones answered with an error).
    pub fn encrypts(&self) -> usize {
        self.state.encrypts.load(Ordering::SeqCst)
    }

    /// Decrypt calls received (including ones answered with an error).
    pub fn decrypts(&self) -> usize {
        self.state.decrypts.load(Ordering::SeqCst)
    }

    /// Stops listening (new connections are refused, and a request on a connection the client kept
    /// alive gets 503); keys are kept.
    pub async fn stop(&mut self) {
        self.server.stop().await;
    }

    /// Listens again on the same port, with the same keys.
    pub fn restart(&mut self) {
        self.server.restart();
    }
}

fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut key).expect("random");
    key
}

fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// A Google-style error: HTTP status, canonical code, message.
struct Failure(u16, &'static str, String);

fn error(status: u16, code: &'static str, message: &str) -> Failure {
    Failure(status, code, message.to_owned())
}

fn respond(result: Result<Value, Failure>) -> HttpResponse {
    match result {
        Ok(body) => HttpResponse::Ok().content_type("application/json").body(body.to_string()),
        Err(Failure(status, code, message)) => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status"))
                .content_type("application/json")
                .body(json!({ "error": { "code": status, "message": message, "status": code } }).to_string())
        }
    }
}

fn bytes_field(body: &Value, field: &str) -> Result<Vec<u8>, Failure> {
    match body.get(field).and_then(Value::as_str) {
        None => Ok(Vec::new()),
        Some(text) => B64.decode(text).map_err(|_| error(400, "INVALID_ARGUMENT", "bad base64")),
    }
}

/// int64 fields arrive as JSON strings (proto3 JSON mapping) or numbers.
fn int_field(body: &Value, field: &str) -> Option<i64> {
    match body.get(field)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// Checks an optional request checksum: `Ok(true)` verified, `Ok(false)` absent, `Err` mismatch.
fn verify_crc(body: &Value, field: &str, data: &[u8]) -> Result<bool, Failure> {
    match int_field(body, field) {
        None => Ok(false),
        Some(crc) if crc == i64::from(crc32c(data)) => Ok(true),
        Some(_) => {
            Err(error(400, "INVALID_ARGUMENT", &format!("The checksum in field {field} did not match the data")))
        }
    }
}

async fn handle(request: HttpRequest, body: web::Bytes, state: web::Data<Arc<FakeState>>) -> HttpResponse {
    let path = request.path().to_owned();
    respond(route(&path, &body, &state))
}

fn route(path: &str, body: &[u8], state: &FakeState) -> Result<Value, Failure> {
    let rest = path.strip_prefix("/v1/").ok_or_else(|| error(404, "NOT_FOUND", "unknown path"))?;
    let (name, method) = rest.rsplit_once(':').ok_or_else(|| error(404, "NOT_FOUND", "unknown method"))?;
    let body = serde_json::from_slice::<Value>(body).map_err(|_| error(400, "INVALID_ARGUMENT", "body is not JSON"))?;
    match method {
        "encrypt" => state.encrypts.fetch_add(1, Ordering::SeqCst),
        "decrypt" => state.decrypts.fetch_add(1, Ordering::SeqCst),
        _ => return Err(error(404, "NOT_FOUND", "this fake only implements encrypt and decrypt")),
    };
    let switches = &state.switches;
    if switches.unavailable.load(Ordering::SeqCst) || switches.stopped.load(Ordering::SeqCst) {
        return Err(error(503, "UNAVAILABLE", "The service is currently unavailable."));
    }
    if switches.permission_denied.load(Ordering::SeqCst) {
        return Err(error(403, "PERMISSION_DENIED", "Permission 'cloudkms.cryptoKeyVersions.useToDecrypt' denied"));
    }
    match method {
        "encrypt" => encrypt(state, name, &body),
        _ => decrypt(state, name, &body),
    }
}

fn encrypt(state: &FakeState, name: &str, body: &Value) -> Result<Value, Failure> {
    let plaintext = bytes_field(body, "plaintext")?;
    let aad = bytes_field(body, "additionalAuthenticatedData")?;
    let verified_plaintext = verify_crc(body, "plaintextCrc32c", &plaintext)?;
    let verified_aad = verify_crc(body, "additionalAuthenticatedDataCrc32c", &aad)?;
    let (version, secret) = {
        let keys = state.keys.lock().unwrap();
        let key = keys.get(name).ok_or_else(|| error(404, "NOT_FOUND", &format!("{name} not found")))?;
        (key.primary + 1, key.versions[key.primary])
    };
    let mut iv = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut iv).expect("random");
    let sealing = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &secret).expect("key"));
    let mut sealed = plaintext;
    sealing
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(iv), Aad::from(aad.as_slice()), &mut sealed)
        .expect("seal");
    // Ciphertext: version (u32) || iv || AES-256-GCM(plaintext, aad) || tag.
    let mut ciphertext = (version as u32).to_be_bytes().to_vec();
    ciphertext.extend_from_slice(&iv);
    ciphertext.extend_from_slice(&sealed);
    let s = &state.switches;
    let mut crc = crc32c(&ciphertext);
    if take(&s.corrupt_ciphertext_crc) {
        crc ^= 1;
    }
    let key_name = match s.other_key_name.load(Ordering::SeqCst) {
        true => format!("{name}-other/cryptoKeyVersions/{version}"),
        false => format!("{name}/cryptoKeyVersions/{version}"),
    };
    Ok(json!({
        "name": key_name,
        "ciphertext": B64.encode(&ciphertext),
        "ciphertextCrc32c": crc.to_string(),
        "verifiedPlaintextCrc32c": verified_plaintext && !take(&s.unverified_plaintext),
        "verifiedAdditionalAuthenticatedDataCrc32c": verified_aad && !take(&s.unverified_aad),
    }))
}

fn decrypt(state: &FakeState, name: &str, body: &Value) -> Result<Value, Failure> {
    let ciphertext = bytes_field(body, "ciphertext")?;
    let aad = bytes_field(body, "additionalAuthenticatedData")?;
    verify_crc(body, "ciphertextCrc32c", &ciphertext)?;
    verify_crc(body, "additionalAuthenticatedDataCrc32c", &aad)?;
    let failed = || error(400, "INVALID_ARGUMENT", "Decryption failed: the ciphertext is invalid.");
    if ciphertext.len() < 4 + NONCE_LEN + 16 {
        return Err(failed());
    }
    let version = u32::from_be_bytes(ciphertext[..4].try_into().expect("4 bytes")) as usize;
    let secret = {
        let keys = state.keys.lock().unwrap();
        let key = keys.get(name).ok_or_else(|| error(404, "NOT_FOUND", &format!("{name} not found")))?;
        *version.checked_sub(1).and_then(|v| key.versions.get(v)).ok_or_else(failed)?
    };
    let iv: [u8; NONCE_LEN] = ciphertext[4..4 + NONCE_LEN].try_into().expect("iv");
    let opening = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &secret).expect("key"));
    let mut sealed = ciphertext[4 + NONCE_LEN..].to_vec();
    let plaintext = opening
        .open_in_place(Nonce::assume_unique_for_key(iv), Aad::from(aad.as_slice()), &mut sealed)
        .map_err(|_| failed())?
        .to_vec();
    let mut crc = crc32c(&plaintext);
    if take(&state.switches.corrupt_plaintext_crc) {
        crc ^= 1;
    }
    Ok(json!({
        "plaintext": B64.encode(&plaintext),
        "plaintextCrc32c": crc.to_string(),
        "usedPrimary": true,
    }))
}
