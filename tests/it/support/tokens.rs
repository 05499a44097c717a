//! Test JWTs signed with the fixture keys in tests/fixtures/jwt/, and the issuer configuration that
//! verifies them against a [`JwksServer`](super::jwks_server::JwksServer).

use std::time::Duration;

use codec_server::config::IssuerConfig;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://issuer.test/";
/// The `aud` of access tokens.
pub const AUDIENCE: &str = "codec-api";
/// The `aud` of ID tokens (the Web UI's OIDC client id).
pub const UI_CLIENT: &str = "temporal-ui";

/// Seconds since the Unix epoch on the wall clock (token lifetimes are checked against it).
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A file of tests/fixtures/jwt/.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))).expect("fixture key")
}

/// Claims of a normal access token for `email` (subject `user-1`, valid for an hour).
pub fn claims(email: Option<&str>) -> Value {
    let mut c = json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "exp": now() + 3600, "iat": now() });
    if let Some(e) = email {
        c["email"] = json!(e);
    }
    c
}

/// Signs `claims` with fixture key `key` (`rsa-1`, `ec-1`, …) as `alg`, with `kid` in the header.
pub fn sign(key: &str, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    sign_with_header(key, header, claims)
}

/// Signs `claims` with fixture key `key` under exactly `header`.
pub fn sign_with_header(key: &str, header: Header, claims: &Value) -> String {
    let pem = fixture(&format!("{key}.pem"));
    let encoding = match header.alg.family() {
        jsonwebtoken::AlgorithmFamily::Ec => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .unwrap();
    jsonwebtoken::encode(&header, claims, &encoding).unwrap()
}

/// A valid RS256 access token for `email`, signed by `rsa-1`.
pub fn token(email: &str) -> String {
    sign("rsa-1", Algorithm::RS256, Some("rsa-1"), &claims(Some(email)))
}

/// The issuer of these tokens, with its keys at `jwks_url` (RS256 and ES256 pinned, `groups` claim,
/// 30 s leeway and refresh interval, tight fetch limits).
pub fn issuer(jwks_url: &str) -> IssuerConfig {
    IssuerConfig {
        issuer: ISSUER.into(),
        audiences: vec![AUDIENCE.into()],
        id_token_audiences: vec![UI_CLIENT.into()],
        jwks_url: Some(jwks_url.into()),
        algorithms: vec!["RS256".into(), "ES256".into()],
        groups_claim: Some("groups".into()),
        leeway: Duration::from_secs(30),
        jwks_min_refresh_interval: Duration::from_secs(30),
        jwks_timeout: Duration::from_millis(500),
        jwks_max_bytes: 64 * 1024,
        ..IssuerConfig::default()
    }
}
