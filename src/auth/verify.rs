//! Bearer-token verification: which issuer, which key, which algorithm, which claims — and the
//! caller's identity (email, groups) from the access token or the ID token in `Authorization-Extras`.
//!
//! What must stay true: the token never chooses the algorithm (it must be in the issuer's pinned list
//! and of the key's family; `none` does not parse); `jku`, `x5u` and embedded `jwk` headers are never
//! read; `iss` matches exactly, `aud` is required and checked, `exp` is required, `nbf` honoured, with
//! at most 60 s leeway on the injected clock; tokens only come from `Authorization: Bearer`.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{AUTHORIZATION, HeaderMap};
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::Identity;
use super::jwks::KeySource;
use crate::clock::Clock;

/// Header the Web UI uses for the raw ID token.
pub const EXTRAS_HEADER: &str = "authorization-extras";
/// Longest token we look at.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a token was refused (for logs and metrics; clients only see 401).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("no bearer token")]
    Missing,
    #[error("malformed bearer token")]
    Malformed,
    #[error("unknown issuer")]
    UnknownIssuer,
    #[error("algorithm not allowed")]
    Algorithm,
    #[error("no usable key")]
    Key,
    #[error("signature or claims invalid")]
    Invalid,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("ID token does not match the access token")]
    IdToken,
}

impl AuthFailure {
    /// Every reason, in declaration order (`as usize` indexes this array).
    pub const ALL: [AuthFailure; 9] = [
        AuthFailure::Missing,
        AuthFailure::Malformed,
        AuthFailure::UnknownIssuer,
        AuthFailure::Algorithm,
        AuthFailure::Key,
        AuthFailure::Invalid,
        AuthFailure::Expired,
        AuthFailure::NotYetValid,
        AuthFailure::IdToken,
    ];

    /// Label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::UnknownIssuer => "unknown-issuer",
            AuthFailure::Algorithm => "algorithm",
            AuthFailure::Key => "key",
            AuthFailure::Invalid => "invalid",
            AuthFailure::Expired => "expired",
            AuthFailure::NotYetValid => "not-yet-valid",
            AuthFailure::IdToken => "id-token",
        }
    }
}

/// One trusted issuer.
pub struct Issuer {
    pub issuer: String,
    /// Short name for `sub@<name>:` policy principals.
    pub name: Option<String>,
    pub audiences: Vec<String>,
    pub id_token_audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    /// `None`: this issuer's tokens never carry an email we trust (workload issuers); callers are
    /// then admitted only by `sub:` principals.
    pub email_claim: Option<String>,
    pub groups_claim: Option<String>,
    pub leeway: Duration,
    pub keys: KeySource,
}

struct Verified {
    claims: Map<String, Value>,
    exp: u64,
}

#[derive(Clone)]
struct CachedIdentity {
    identity: Arc<Identity>,
    exp: u64,
}

/// Verifies tokens against the configured issuers and caches the result until the token expires.
pub struct TokenVerifier {
    issuers: Vec<Issuer>,
    clock: Arc<dyn Clock>,
    cache: moka::sync::Cache<[u8; 32], CachedIdentity>,
}

impl TokenVerifier {
    /// A verifier for `issuers`, caching up to `cache_capacity` verified tokens.
    pub fn new(issuers: Vec<Issuer>, clock: Arc<dyn Clock>, cache_capacity: u64) -> TokenVerifier {
        let cache =
            moka::sync::Cache::builder().max_capacity(cache_capacity).time_to_live(Duration::from_secs(3600)).build();
        TokenVerifier { issuers, clock, cache }
    }

    /// The issuers (tests read JWKS fetch counters through them).
    pub fn issuers(&self) -> &[Issuer] {
        &self.issuers
    }

    /// Authenticates the request: a verified access token, and the email from it or from the ID token.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Identity>, AuthFailure> {
        let token = bearer_token(headers)?;
        let extras = extras_token(headers);
        let cache_key = token_cache_key(token, extras);
        let now = self.clock.unix_now();
        if let Some(hit) = self.cache.get(&cache_key)
            && hit.exp > now
        {
            return Ok(hit.identity);
        }
        let issuer = self.issuer_of(token)?;
        let access = verify(issuer, token, &issuer.audiences, now).await?;
        let subject = access.claims.get("sub").and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut email = issuer.email_claim.as_deref().and_then(|claim| email_of(&access.claims, claim));
        let mut exp = access.exp;
        if email.is_none()
            && let Some(email_claim) = issuer.email_claim.as_deref()
            && let Some(id_token) = extras
        {
            let audiences =
                if issuer.id_token_audiences.is_empty() { &issuer.audiences } else { &issuer.id_token_audiences };
            let id = verify(issuer, id_token, audiences, now).await.map_err(|_| AuthFailure::IdToken)?;
            let id_subject = id.claims.get("sub").and_then(Value::as_str).unwrap_or_default();
            if subject.is_empty() || id_subject != subject {
                return Err(AuthFailure::IdToken);
            }
            email = email_of(&id.claims, email_claim).or_else(|| email_of(&id.claims, "email"));
            exp = exp.min(id.exp);
        }
        let groups = issuer.groups_claim.as_deref().map(|c| groups_of(&access.claims, c)).unwrap_or_default();
        let identity = Arc::new(Identity {
            issuer: issuer.issuer.clone(),
            issuer_name: issuer.name.clone(),
            subject,
            email,
            groups,
        });
        self.cache.insert(cache_key, CachedIdentity { identity: identity.clone(), exp });
        Ok(identity)
    }

    /// Picks the issuer by the token's (still unverified) `iss`; verification then checks it again.
    fn issuer_of(&self, token: &str) -> Result<&Issuer, AuthFailure> {
        let claims: Map<String, Value> = unverified_claims(token)?;
        let iss = claims.get("iss").and_then(Value::as_str).ok_or(AuthFailure::Invalid)?;
        self.issuers.iter().find(|i| i.issuer == iss).ok_or(AuthFailure::UnknownIssuer)
    }
}

/// `Authorization: Bearer <token>`: exactly one header, the `Bearer` scheme, a compact JWS.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthFailure> {
    let mut values = headers.get_all(AUTHORIZATION);
    let value = values.next().ok_or(AuthFailure::Missing)?;
    if values.next().is_some() {
        return Err(AuthFailure::Malformed);
    }
    let text = value.to_str().map_err(|_| AuthFailure::Malformed)?.trim();
    let (scheme, token) = text.split_once(' ').ok_or(AuthFailure::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailure::Malformed);
    }
    let token = token.trim();
    let well_formed = !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token.split('.').count() == 3
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if well_formed { Ok(token) } else { Err(AuthFailure::Malformed) }
}

/// The raw ID token the Web UI sends in `Authorization-Extras` (a `Bearer ` prefix is tolerated).
fn extras_token(headers: &HeaderMap) -> Option<&str> {
    let text = headers.get(EXTRAS_HEADER)?.to_str().ok()?.trim();
    let token = text.strip_prefix("Bearer ").or_else(|| text.strip_prefix("bearer ")).unwrap_or(text).trim();
    (!token.is_empty() && token.len() <= MAX_TOKEN_LEN).then_some(token)
}

fn token_cache_key(token: &str, extras: Option<&str>) -> [u8; 32] {
    let mut input = Vec::with_capacity(token.len() + 1 + extras.map_or(0, str::len));
    input.extend_from_slice(token.as_bytes());
    input.push(0);
    input.extend_from_slice(extras.unwrap_or_default().as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest(&SHA256, &input).as_ref());
    key
}

/// The token's claims, before any signature check (only to pick the issuer). Public for the fuzz targets.
#[doc(hidden)]
pub fn unverified_claims(token: &str) -> Result<Map<String, Value>, AuthFailure> {
    let payload = token.split('.').nth(1).ok_or(AuthFailure::Malformed)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).map_err(|_| AuthFailure::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| AuthFailure::Malformed)
}

async fn verify(issuer: &Issuer, token: &str, audiences: &[String], now: u64) -> Result<Verified, AuthFailure> {
    // `decode_header` only knows real algorithms: `alg: none` fails here.
    let header = jsonwebtoken::decode_header(token).map_err(|_| AuthFailure::Malformed)?;
    if !issuer.algorithms.contains(&header.alg) {
        return Err(AuthFailure::Algorithm);
    }
    let key = issuer.keys.key_for(header.kid.as_deref()).await.map_err(|_| AuthFailure::Key)?;
    // The key decides the family; a JWK that pins an algorithm decides the algorithm.
    if key.key.family() != header.alg.family() || key.alg.is_some_and(|a| a != header.alg) {
        return Err(AuthFailure::Algorithm);
    }
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[&issuer.issuer]);
    validation.set_audience(audiences);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    // Time is checked below on the injected clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let data =
        jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation).map_err(|_| AuthFailure::Invalid)?;
    let leeway = issuer.leeway.as_secs();
    let exp = data.claims.get("exp").and_then(Value::as_u64).ok_or(AuthFailure::Invalid)?;
    if exp.saturating_add(leeway) <= now {
        return Err(AuthFailure::Expired);
    }
    if let Some(nbf) = data.claims.get("nbf") {
        let nbf = nbf.as_u64().ok_or(AuthFailure::Invalid)?;
        if nbf > now.saturating_add(leeway) {
            return Err(AuthFailure::NotYetValid);
        }
    }
    Ok(Verified { claims: data.claims, exp: exp.saturating_add(leeway) })
}

/// The email claim, lower-cased; `email_verified: false` means no email.
fn email_of(claims: &Map<String, Value>, claim: &str) -> Option<String> {
    if claims.get("email_verified").is_some_and(|v| v == &Value::Bool(false) || v == "false") {
        return None;
    }
    let email = claims.get(claim)?.as_str()?.trim();
    email.contains('@').then(|| email.to_lowercase())
}

/// Groups as an array of strings or one string.
fn groups_of(claims: &Map<String, Value>, claim: &str) -> Vec<String> {
    match claims.get(claim) {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        map
    }

    #[test]
    fn only_well_formed_bearer_tokens_are_taken() {
        assert_eq!(bearer_token(&headers("Bearer a.b.c")), Ok("a.b.c"));
        assert_eq!(bearer_token(&headers("bearer  a.b.c ")), Ok("a.b.c"));
        for bad in ["Basic a.b.c", "Bearer", "Bearer a.b", "Bearer a.b.c.d", "Bearer a b.c", "a.b.c", "Bearer a.b.c!"] {
            assert_eq!(bearer_token(&headers(bad)), Err(AuthFailure::Malformed), "{bad}");
        }
        assert_eq!(bearer_token(&HeaderMap::new()), Err(AuthFailure::Missing));
    }

    #[test]
    fn email_is_lower_cased_and_unverified_email_is_none() {
        let claims: Map<String, Value> = serde_json::from_str(r#"{"email":"Alice@Example.COM"}"#).unwrap();
        assert_eq!(email_of(&claims, "email").as_deref(), Some("alice@example.com"));
        let claims: Map<String, Value> = serde_json::from_str(r#"{"email":"a@x.io","email_verified":false}"#).unwrap();
        assert_eq!(email_of(&claims, "email"), None);
    }
}
