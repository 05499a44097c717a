//! Request ids: accept a well-formed `X-Request-Id` from the caller (or the ingress), otherwise make one;
//! echo it on the response and keep it in the request extensions for logs and audit events.
//!
//! The middleware also opens a `request` span carrying `request_id`, so every log line written while the
//! request is served carries the id, and writes one access-log line per request: method, path (never the
//! query string), status and latency — never headers, tokens or bodies.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest};
use tracing::Instrument;

/// The header carrying the id both ways.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id the middleware stored for `req` (empty when the middleware did not run, as in unit tests).
    pub fn of(req: &HttpRequest) -> RequestId {
        req.extensions().get::<RequestId>().cloned().unwrap_or(RequestId(String::new()))
    }

    /// A caller's id is kept only if it is short and plain, so it cannot forge log lines or carry data.
    fn accept(value: &HeaderValue) -> Option<RequestId> {
        let text = value.to_str().ok()?;
        let plain = text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        (!text.is_empty() && text.len() <= 128 && plain).then(|| RequestId(text.to_owned()))
    }

    fn generate() -> RequestId {
        let mut bytes = [0u8; 16];
        crate::codec::random::fill(&mut bytes);
        RequestId(hex::encode(bytes))
    }
}

/// Middleware: assigns the id before anything else runs and sets it on every response, errors included.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let id = req.headers().get(&HEADER).and_then(RequestId::accept).unwrap_or_else(RequestId::generate);
    req.extensions_mut().insert(id.clone());
    let span = tracing::info_span!("request", request_id = id.as_str());
    let method = req.method().clone();
    // `path()` has no query string; the path itself is what the router saw (printable ASCII only).
    let path = req.path().to_owned();
    let started = Instant::now();
    let result = next.call(req).instrument(span.clone()).await;
    let status = match &result {
        Ok(res) => res.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let _entered = span.enter();
    // Probes and scrapes arrive every few seconds from every kubelet and Prometheus: debug, not info.
    if matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics") {
        tracing::debug!(%method, %path, status = status.as_u16(), latency_ms, "Request served.");
    } else {
        tracing::info!(%method, %path, status = status.as_u16(), latency_ms, "Request served.");
    }
    let mut res = result?;
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        res.headers_mut().insert(HEADER, value);
    }
    Ok(res)
}
