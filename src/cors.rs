//! CORS for the Temporal Web UI (DESIGN §3): which origins, methods and headers are allowed, and what a
//! refused preflight looks like.
//!
//! `actix-cors` does the checks. Its refusals are plain text without `Vary: Origin`, unlike every other
//! error we send, so `json_refusals` (wrapped just outside it) rewrites them into the JSON error body
//! with `Vary: Origin`. What must stay true: a refused origin is never echoed in
//! `Access-Control-Allow-Origin`, and no refusal body or log line carries the caller's text unescaped.

use actix_cors::{Cors, CorsError};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, HeaderValue, ORIGIN, VARY};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse};

use crate::config::CorsConfig;

/// Request headers the Web UI and CLI send; always allowed.
pub const BASE_ALLOWED_HEADERS: [&str; 4] = ["content-type", "x-namespace", "authorization", "authorization-extras"];

/// Longest part of a refused `Origin` written to the log.
const LOGGED_ORIGIN_MAX: usize = 200;

/// CORS per DESIGN §3: exact origins echoed with `Vary: Origin`, the UI's headers allowed, headers on
/// error responses too (the middleware wraps every response, errors included).
pub fn cors_middleware(config: &CorsConfig) -> Cors {
    let mut headers: Vec<String> = BASE_ALLOWED_HEADERS.iter().map(|h| (*h).to_owned()).collect();
    headers.extend(config.extra_allowed_headers.iter().map(|h| h.to_ascii_lowercase()));
    let mut cors = Cors::default()
        .allowed_methods(["POST", "GET", "OPTIONS"])
        .allowed_headers(headers)
        .max_age(usize::try_from(config.max_age.as_secs()).unwrap_or(usize::MAX));
    for origin in &config.allowed_origins {
        cors = cors.allowed_origin(origin.trim_end_matches('/'));
    }
    if config.allow_credentials {
        cors = cors.supports_credentials();
    }
    cors
}

/// The stable code and the message (with the fix) of a CORS refusal.
pub fn refusal_parts(error: &CorsError) -> (&'static str, &'static str) {
    match error {
        CorsError::OriginNotAllowed => (
            "cors-origin-not-allowed",
            "this origin is not allowed: add it exactly (scheme://host[:port]) to cors.allowed_origins",
        ),
        CorsError::MethodNotAllowed | CorsError::BadRequestMethod => {
            ("cors-method-not-allowed", "only POST, GET and OPTIONS are allowed cross-origin")
        }
        CorsError::HeadersNotAllowed | CorsError::BadRequestHeaders => {
            ("cors-headers-not-allowed", "a requested header is not allowed: add it to cors.extra_allowed_headers")
        }
        _ => (
            "cors-invalid-request",
            "the CORS request is incomplete: it needs Origin and Access-Control-Request-Method",
        ),
    }
}

/// Middleware (wrap it just outside `cors_middleware`): a refusal by `actix-cors` becomes our JSON error
/// body with `Vary: Origin`; every other response passes unchanged.
pub async fn json_refusals(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let response = next.call(req).await?;
    let refusal = response.response().error().and_then(|e| e.as_error::<CorsError>()).cloned();
    let Some(refusal) = refusal else {
        return Ok(response.map_into_boxed_body());
    };
    let (code, message) = refusal_parts(&refusal);
    let (request, _) = response.into_parts();
    let origin = request.headers().get(ORIGIN).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let origin: Option<String> = origin.map(|o| o.chars().take(LOGGED_ORIGIN_MAX).collect());
    // `?` escapes control characters and quotes: the origin is the caller's text.
    tracing::info!(code, origin = ?origin, path = ?request.path(), "CORS request refused.");
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let refused = HttpResponse::build(StatusCode::BAD_REQUEST)
        .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
        .insert_header((
            VARY,
            HeaderValue::from_static("Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
        ))
        .body(body);
    Ok(ServiceResponse::new(request, refused))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_a_stable_code_and_a_fix() {
        let all = [
            CorsError::WildcardOrigin,
            CorsError::MissingOrigin,
            CorsError::MissingRequestMethod,
            CorsError::BadRequestMethod,
            CorsError::BadRequestHeaders,
            CorsError::OriginNotAllowed,
            CorsError::MethodNotAllowed,
            CorsError::HeadersNotAllowed,
        ];
        for error in all {
            let (code, message) = refusal_parts(&error);
            assert!(code.starts_with("cors-"), "{error:?}");
            assert!(!message.is_empty(), "{error:?}");
        }
        assert_eq!(refusal_parts(&CorsError::OriginNotAllowed).0, "cors-origin-not-allowed");
        assert_eq!(refusal_parts(&CorsError::HeadersNotAllowed).0, "cors-headers-not-allowed");
    }
}
