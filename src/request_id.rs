//! Request ids: accept a well-formed `X-Request-Id` from the caller (or the ingress), otherwise make one;
//! echo it on the response and keep it in the request extensions for logs and audit events.
//!
//! The middleware also opens a `request` span carrying `request_id`, so every log line written while the
//! request is served carries the id, and writes one access-log line per request: method, path (never the
//! query string), status and latency — never headers, tokens or bodies. The line is formatted by
//! `telemetry::access_line` (the `fmt` layer's format, at a tenth of its cost).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest};
use tracing::{Instrument, Level};

use crate::telemetry::access_line::{self, Access};

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

    /// 32 hex digits: a random per-process prefix, then a counter passed through a bijection (so ids
    /// stay unique but do not count this process's requests). Ids must be unique, not secret (a caller
    /// may choose its own), so no random bytes per request: drawing them from the CSPRNG cost ~4 % of a
    /// 1 KiB decode (docs/performance.md).
    fn generate() -> RequestId {
        static SEEDS: OnceLock<[u64; 2]> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let [prefix, offset] = *SEEDS.get_or_init(|| {
            let seed = || {
                let mut bytes = [0u8; 8];
                crate::codec::random::fill(&mut bytes);
                u64::from_le_bytes(bytes)
            };
            [seed(), seed()]
        });
        let n = COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_add(offset);
        RequestId(hex_id(prefix, mix(n)))
    }
}

/// `format!("{prefix:016x}{tail:016x}")` through the `hex` crate instead of `fmt` (about a thousand
/// instructions per request through `format!`).
fn hex_id(prefix: u64, tail: u64) -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&prefix.to_be_bytes());
    bytes[8..].copy_from_slice(&tail.to_be_bytes());
    hex::encode(bytes)
}

/// The splitmix64 finalizer: a bijection on `u64` (xor-shifts and multiplications by odd constants).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Middleware: assigns the id before anything else runs and sets it on every response, errors included.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let id = req.headers().get(&HEADER).and_then(RequestId::accept).unwrap_or_else(RequestId::generate);
    req.extensions_mut().insert(id.clone());
    // Recorded with `Display`: the id is plain ASCII (see `accept`), and `Debug` escaping it char by
    // char when the span opens cost ~2k instructions per request (a third of all tracing's share).
    let span = tracing::info_span!("request", request_id = %id.as_str());
    let method = req.method().clone();
    // `path()` has no query string; the path itself is what the router saw (printable ASCII only).
    let path = req.path().to_owned();
    let started = Instant::now();
    let result = next.call(req).instrument(span).await;
    let status = match &result {
        Ok(res) => res.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    // Probes and scrapes arrive every few seconds from every kubelet and Prometheus: debug, not info.
    let probe = matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics");
    let enabled = if probe { tracing::enabled!(Level::DEBUG) } else { tracing::enabled!(Level::INFO) };
    if enabled {
        access_line::write(&Access {
            level: if probe { Level::DEBUG } else { Level::INFO },
            request_id: id.as_str(),
            method: method.as_str(),
            path: &path,
            status: status.as_u16(),
            latency: started.elapsed(),
        });
    }
    let mut res = result?;
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        res.headers_mut().insert(HEADER, value);
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digits_are_what_format_writes() {
        for value in [0, 1, 0xabc, u64::MAX, 0x0123_4567_89ab_cdef, 1 << 63] {
            assert_eq!(hex_id(value, !value), format!("{value:016x}{:016x}", !value));
        }
    }

    #[test]
    fn generated_ids_are_unique_hex_and_do_not_count_requests() {
        let ids: Vec<String> = (0..10_000).map(|_| RequestId::generate().0).collect();
        assert!(ids.iter().all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())));
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        let tail = |id: &str| u64::from_str_radix(&id[16..], 16).unwrap();
        let steps_of_one = ids.windows(2).filter(|w| tail(&w[1]).wrapping_sub(tail(&w[0])) == 1).count();
        assert!(steps_of_one < 10, "consecutive ids must not be a visible counter ({steps_of_one} steps of one)");
    }
}
