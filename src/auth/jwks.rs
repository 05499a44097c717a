//! Verification keys of one issuer: a JWKS fetched over HTTP(S) and cached, or static keys.
//!
//! What must stay true: an unknown `kid` causes at most one fetch per `min_refresh_interval` however
//! many tokens carry it (single-flight, rate-limited); when the issuer is unreachable the last good
//! key set keeps working; a fetch is bounded in time and size; keys are used only for the algorithm
//! family they belong to.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::clock::Clock;

/// A key that can verify tokens of one algorithm family.
pub struct VerificationKey {
    pub kid: Option<String>,
    pub key: DecodingKey,
    /// The algorithm the JWK pins, if it names one.
    pub alg: Option<Algorithm>,
}

/// Why no key was found.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwksError {
    #[error("no key with this kid")]
    UnknownKid,
    #[error("token has no kid and the issuer has several keys")]
    AmbiguousKey,
    #[error("key set unavailable")]
    Unavailable,
}

/// Fetch limits and refresh pacing.
#[derive(Clone, Copy, Debug)]
pub struct JwksSettings {
    pub min_refresh_interval: Duration,
    pub max_age: Duration,
    pub timeout: Duration,
    pub max_bytes: usize,
}

struct KeySet {
    keys: Vec<Arc<VerificationKey>>,
    fetched_at: Instant,
}

impl KeySet {
    fn find(&self, kid: Option<&str>) -> Result<Arc<VerificationKey>, JwksError> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)).cloned().ok_or(JwksError::UnknownKid),
            None => match self.keys.as_slice() {
                [only] => Ok(only.clone()),
                [] => Err(JwksError::UnknownKid),
                _ => Err(JwksError::AmbiguousKey),
            },
        }
    }
}

/// Builds verification keys from a JWKS document, skipping keys we cannot or must not use.
pub fn keys_from_jwks(set: &JwkSet) -> Vec<Arc<VerificationKey>> {
    set.keys.iter().filter_map(key_from_jwk).map(Arc::new).collect()
}

fn key_from_jwk(jwk: &Jwk) -> Option<VerificationKey> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    let alg = jwk.common.key_algorithm.and_then(|a| match a {
        KeyAlgorithm::RS256 => Some(Algorithm::RS256),
        KeyAlgorithm::RS384 => Some(Algorithm::RS384),
        KeyAlgorithm::RS512 => Some(Algorithm::RS512),
        KeyAlgorithm::PS256 => Some(Algorithm::PS256),
        KeyAlgorithm::PS384 => Some(Algorithm::PS384),
        KeyAlgorithm::PS512 => Some(Algorithm::PS512),
        KeyAlgorithm::ES256 => Some(Algorithm::ES256),
        KeyAlgorithm::ES384 => Some(Algorithm::ES384),
        KeyAlgorithm::EdDSA => Some(Algorithm::EdDSA),
        _ => None,
    });
    // A symmetric JWK ("oct") would turn a public key set into shared secrets: never.
    if key.family() == jsonwebtoken::AlgorithmFamily::Hmac {
        return None;
    }
    Some(VerificationKey { kid: jwk.common.key_id.clone(), key, alg })
}

/// The keys of one issuer.
pub enum KeySource {
    Static(Vec<Arc<VerificationKey>>),
    Remote(JwksCache),
}

impl KeySource {
    /// The key for a token's `kid`.
    pub async fn key_for(&self, kid: Option<&str>) -> Result<Arc<VerificationKey>, JwksError> {
        match self {
            KeySource::Static(keys) => KeySet { keys: keys.clone(), fetched_at: Instant::now() }.find(kid),
            KeySource::Remote(cache) => cache.key_for(kid).await,
        }
    }
}

/// A JWKS endpoint with its cached key set.
pub struct JwksCache {
    url: String,
    client: reqwest::Client,
    settings: JwksSettings,
    clock: Arc<dyn Clock>,
    current: RwLock<Option<Arc<KeySet>>>,
    /// Held while fetching; records when the last attempt started.
    refresh: tokio::sync::Mutex<Option<Instant>>,
    fetches: AtomicU64,
}

impl JwksCache {
    /// A cache for `url`; nothing is fetched until a key is needed.
    pub fn new(url: String, settings: JwksSettings, clock: Arc<dyn Clock>) -> Result<JwksCache, reqwest::Error> {
        let client =
            reqwest::Client::builder().timeout(settings.timeout).redirect(reqwest::redirect::Policy::none()).build()?;
        Ok(JwksCache {
            url,
            client,
            settings,
            clock,
            current: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
        })
    }

    /// Fetch attempts made so far (tests, metrics).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn snapshot(&self) -> Option<Arc<KeySet>> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn key_for(&self, kid: Option<&str>) -> Result<Arc<VerificationKey>, JwksError> {
        let now = self.clock.now();
        let before = self.snapshot();
        if let Some(set) = &before {
            let fresh = now.saturating_duration_since(set.fetched_at) < self.settings.max_age;
            match set.find(kid) {
                Ok(key) if fresh => return Ok(key),
                Err(JwksError::AmbiguousKey) => return Err(JwksError::AmbiguousKey),
                _ => {}
            }
        }
        let mut last_attempt = self.refresh.lock().await;
        // Someone else may have refreshed while we waited.
        let after = self.snapshot();
        let refreshed = match (&before, &after) {
            (Some(b), Some(a)) => !Arc::ptr_eq(b, a),
            (None, Some(_)) => true,
            _ => false,
        };
        let may_fetch =
            last_attempt.is_none_or(|t| now.saturating_duration_since(t) >= self.settings.min_refresh_interval);
        if !refreshed && may_fetch {
            *last_attempt = Some(now);
            self.fetches.fetch_add(1, Ordering::Relaxed);
            match self.fetch().await {
                Ok(keys) => {
                    let set = Arc::new(KeySet { keys, fetched_at: self.clock.now() });
                    *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(set);
                }
                Err(error) => {
                    tracing::warn!(url = %self.url, %error, "JWKS fetch failed; keeping the last good key set.");
                }
            }
        }
        drop(last_attempt);
        match self.snapshot() {
            Some(set) => set.find(kid),
            None => Err(JwksError::Unavailable),
        }
    }

    async fn fetch(&self) -> Result<Vec<Arc<VerificationKey>>, String> {
        let mut response = self.client.get(&self.url).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let limit = self.settings.max_bytes;
        if response.content_length().is_some_and(|n| n as usize > limit) {
            return Err(format!("larger than {limit} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > limit {
                return Err(format!("larger than {limit} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| format!("not a JWKS: {e}"))?;
        Ok(keys_from_jwks(&set))
    }
}

/// Parses static keys from config: a PEM public key (RSA, EC or Ed25519) or a JWK / JWKS JSON document.
pub fn static_keys(entries: &[String]) -> Result<Vec<Arc<VerificationKey>>, String> {
    let mut keys = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let text = entry.trim();
        if text.starts_with('{') {
            if let Ok(set) = serde_json::from_str::<JwkSet>(text) {
                keys.extend(keys_from_jwks(&set));
                continue;
            }
            let jwk: Jwk = serde_json::from_str(text).map_err(|e| format!("keys[{i}]: not a JWK or JWKS: {e}"))?;
            keys.push(Arc::new(key_from_jwk(&jwk).ok_or(format!("keys[{i}]: unusable JWK"))?));
        } else {
            let bytes = text.as_bytes();
            let key = DecodingKey::from_rsa_pem(bytes)
                .or_else(|_| DecodingKey::from_ec_pem(bytes))
                .or_else(|_| DecodingKey::from_ed_pem(bytes))
                .map_err(|_| format!("keys[{i}]: not a PEM public key (RSA, EC or Ed25519) nor a JWK"))?;
            keys.push(Arc::new(VerificationKey { kid: None, key, alg: None }));
        }
    }
    Ok(keys)
}
