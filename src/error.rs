//! The one place where errors become HTTP responses: a status, a stable kebab-case code and a human
//! message, as `{"error":{"code":"…","message":"…"}}`.
//!
//! What must stay true: the mapping is exhaustive (adding a variant anywhere fails to compile here),
//! 5xx bodies say nothing internal, and no message ever carries a token, key or payload byte.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{ALLOW, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use actix_web::{HttpResponse, ResponseError};

use crate::audit::AuditError;
use crate::auth::AuthError;
use crate::codec::CodecError;
use crate::protocol::ProtocolError;

/// How long a client should wait after a fail-closed audit refusal (the writer retries within seconds).
const AUDIT_RETRY_AFTER: Duration = Duration::from_secs(2);
/// How long a client should wait when the in-flight body budget is spent (bodies finish in seconds).
const OVERLOADED_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Every error a request can end in.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("no such route")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("external storage download is not supported yet")]
    DownloadUnsupported,
}

/// Status, stable code and client-facing message of an error.
pub struct ErrorParts {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    /// The exhaustive mapping.
    pub fn parts(&self) -> ErrorParts {
        use StatusCode as S;
        let (status, code) = match self {
            ApiError::Protocol(e) => match e {
                ProtocolError::MalformedJson(_) | ProtocolError::InvalidExternalSize { .. } => {
                    (S::BAD_REQUEST, "malformed-json")
                }
                ProtocolError::InvalidBase64 { .. } => (S::BAD_REQUEST, "invalid-base64"),
                ProtocolError::TooManyPayloads { .. } => (S::BAD_REQUEST, "too-many-payloads"),
                ProtocolError::BodyTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "body-too-large"),
                ProtocolError::UnsupportedMediaType => (S::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type"),
                ProtocolError::MissingNamespace => (S::BAD_REQUEST, "missing-namespace"),
                ProtocolError::NamespaceMismatch { .. } | ProtocolError::ConflictingNamespaceHeaders => {
                    (S::BAD_REQUEST, "namespace-mismatch")
                }
                ProtocolError::InvalidNamespace => (S::BAD_REQUEST, "invalid-namespace"),
                ProtocolError::BodyRead => (S::BAD_REQUEST, "body-read-failed"),
                ProtocolError::TooManyElements { .. } => (S::BAD_REQUEST, "too-many-elements"),
                ProtocolError::BodyTimeout { .. } => (S::REQUEST_TIMEOUT, "body-timeout"),
                ProtocolError::Overloaded => (S::SERVICE_UNAVAILABLE, "overloaded"),
            },
            ApiError::Auth(e) => match e {
                AuthError::Unauthenticated(_) => (S::UNAUTHORIZED, "unauthenticated"),
                AuthError::Forbidden { .. } => (S::FORBIDDEN, "forbidden"),
            },
            ApiError::Codec(e) => match e {
                CodecError::UnknownNamespace(_) => (S::BAD_REQUEST, "unknown-namespace"),
                CodecError::Unavailable { .. } => (S::SERVICE_UNAVAILABLE, "kms-unavailable"),
                CodecError::DecodeFailed { .. } => (S::BAD_REQUEST, "decode-failed"),
                CodecError::PayloadTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "payload-too-large"),
                CodecError::TooManyDataKeys { .. } => (S::BAD_REQUEST, "too-many-data-keys"),
                CodecError::EncodeFailed(_) => (S::INTERNAL_SERVER_ERROR, "encode-failed"),
            },
            ApiError::Audit(_) => (S::SERVICE_UNAVAILABLE, "audit-unavailable"),
            ApiError::NotFound => (S::NOT_FOUND, "not-found"),
            ApiError::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, "method-not-allowed"),
            ApiError::DownloadUnsupported => (S::NOT_IMPLEMENTED, "download-unsupported"),
        };
        // 5xx: say what to do, never why inside.
        let message = match self {
            ApiError::Codec(CodecError::Unavailable { .. }) => "key service unavailable; retry later".to_owned(),
            ApiError::Codec(CodecError::EncodeFailed(_)) => "encryption failed; nothing was returned".to_owned(),
            ApiError::Audit(_) => "the audit log is unavailable, so nothing was released; retry later".to_owned(),
            other => other.to_string(),
        };
        ErrorParts { status, code, message }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Codec(CodecError::Unavailable { retry_after }) => Some(*retry_after),
            ApiError::Audit(_) => Some(AUDIT_RETRY_AFTER),
            ApiError::Protocol(ProtocolError::Overloaded) => Some(OVERLOADED_RETRY_AFTER),
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.parts().status
    }

    fn error_response(&self) -> HttpResponse {
        let parts = self.parts();
        if parts.status.is_server_error() {
            tracing::error!(code = parts.code, error = ?self, "Request failed.");
        } else {
            tracing::info!(code = parts.code, error = %self, "Request refused.");
        }
        let mut error = serde_json::json!({ "code": parts.code, "message": parts.message });
        if let ApiError::Codec(CodecError::DecodeFailed { indexes }) = self {
            error["indexes"] = serde_json::json!(indexes);
        }
        let mut response = HttpResponse::build(parts.status);
        response.insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")));
        match self {
            ApiError::Auth(AuthError::Unauthenticated(_)) => {
                response.insert_header((WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            ApiError::MethodNotAllowed => {
                response.insert_header((ALLOW, HeaderValue::from_static("POST, OPTIONS")));
            }
            _ => {}
        }
        if let Some(after) = self.retry_after() {
            response.insert_header((RETRY_AFTER, after.as_secs().max(1).to_string()));
        }
        response.body(serde_json::json!({ "error": error }).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::verify::AuthFailure;
    use crate::codec::KmsErrorOrEnvelope;
    use crate::codec::envelope::EnvelopeError;

    #[test]
    fn every_error_has_its_status_and_code() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (ProtocolError::MalformedJson("x".into()).into(), 400, "malformed-json"),
            (ProtocolError::InvalidExternalSize { index: 0 }.into(), 400, "malformed-json"),
            (ProtocolError::InvalidBase64 { index: 0, field: "data".into() }.into(), 400, "invalid-base64"),
            (ProtocolError::TooManyPayloads { limit: 1 }.into(), 400, "too-many-payloads"),
            (ProtocolError::TooManyElements { what: "metadata entries", limit: 1 }.into(), 400, "too-many-elements"),
            (ProtocolError::BodyTimeout { seconds: 30 }.into(), 408, "body-timeout"),
            (ProtocolError::Overloaded.into(), 503, "overloaded"),
            (ProtocolError::BodyTooLarge { limit: 1 }.into(), 413, "body-too-large"),
            (ProtocolError::UnsupportedMediaType.into(), 415, "unsupported-media-type"),
            (ProtocolError::MissingNamespace.into(), 400, "missing-namespace"),
            (
                ProtocolError::NamespaceMismatch { path: "a".into(), header: "b".into() }.into(),
                400,
                "namespace-mismatch",
            ),
            (ProtocolError::InvalidNamespace.into(), 400, "invalid-namespace"),
            (ProtocolError::BodyRead.into(), 400, "body-read-failed"),
            (AuthError::Unauthenticated(AuthFailure::Missing).into(), 401, "unauthenticated"),
            (AuthError::Forbidden { op: "decode", namespace: "a".into(), identity: None }.into(), 403, "forbidden"),
            (CodecError::UnknownNamespace("a".into()).into(), 400, "unknown-namespace"),
            (CodecError::Unavailable { retry_after: Duration::from_secs(2) }.into(), 503, "kms-unavailable"),
            (CodecError::DecodeFailed { indexes: vec![1] }.into(), 400, "decode-failed"),
            (CodecError::PayloadTooLarge { index: 0 }.into(), 413, "payload-too-large"),
            (CodecError::TooManyDataKeys { limit: 32 }.into(), 400, "too-many-data-keys"),
            (CodecError::EncodeFailed(KmsErrorOrEnvelope::Envelope(EnvelopeError::Seal)).into(), 500, "encode-failed"),
            (AuditError::Unavailable.into(), 503, "audit-unavailable"),
            (ApiError::NotFound, 404, "not-found"),
            (ApiError::MethodNotAllowed, 405, "method-not-allowed"),
            (ApiError::DownloadUnsupported, 501, "download-unsupported"),
        ];
        for (error, status, code) in cases {
            let parts = error.parts();
            assert_eq!((parts.status.as_u16(), parts.code), (status, code), "{error:?}");
        }
    }

    #[test]
    fn unavailable_carries_retry_after_and_no_internals() {
        let response = ApiError::from(CodecError::Unavailable { retry_after: Duration::from_secs(3) }).error_response();
        assert_eq!(response.headers().get(RETRY_AFTER).unwrap(), "3");
        let unauth = ApiError::from(AuthError::Unauthenticated(AuthFailure::Expired)).error_response();
        assert_eq!(unauth.headers().get(WWW_AUTHENTICATE).unwrap(), "Bearer");
    }
}
