//! Everything a bearer token goes through before any signature check: `bearer_token` on the
//! `Authorization` header(s), the unverified claims parse that picks the issuer, and
//! `jsonwebtoken::decode_header`.
//!
//! Input: `authorization value \0 second authorization value`; the unverified parsers also get the
//! raw first part, so they are fuzzed past `bearer_token`'s shape check too.
#![no_main]

use actix_web::http::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use codec_server::auth::verify::{bearer_token, unverified_claims};
use libfuzzer_sys::fuzz_target;

fn unverified(token: &str) {
    let _ = unverified_claims(token);
    let _ = jsonwebtoken::decode_header(token);
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0);
    let first = parts.next().unwrap_or_default();
    let second = parts.next();
    if let Ok(text) = std::str::from_utf8(first) {
        unverified(text);
    }
    let mut headers = HeaderMap::new();
    for value in [Some(first), second].into_iter().flatten() {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.append(AUTHORIZATION, v);
        }
    }
    if let Ok(token) = bearer_token(&headers) {
        assert_eq!(headers.get_all(AUTHORIZATION).count(), 1);
        assert_eq!(token.split('.').count(), 3);
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')));
        unverified(token);
    }
});
