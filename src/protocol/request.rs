//! Turns an HTTP request on a codec path into clean values: operation, namespace and bounded payloads.
//!
//! Checks run cheapest first (content type, namespace, declared length) so that nothing large is read
//! for a request that will be refused anyway.

use actix_web::HttpRequest;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap};
use actix_web::web;
use futures_util::StreamExt;

use super::{CodecOp, CodecPath, Namespace, Payloads, ProtocolError};

/// Size limits for one request.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_payloads: usize,
}

/// What the protocol layer needs from the configuration.
#[derive(Clone, Debug)]
pub struct ProtocolSettings {
    pub path_prefix: String,
    pub default_namespace: Option<Namespace>,
    pub limits: Limits,
    /// Whose `X-Forwarded-For` is believed for the client address.
    pub trusted_proxies: super::client_addr::TrustedProxies,
}

/// A codec request after the protocol work: every field is validated and bounded.
#[derive(Debug)]
pub struct CodecRequest {
    pub op: CodecOp,
    pub namespace: Namespace,
    pub payloads: Payloads,
}

/// The header the Web UI and the CLI always send.
pub const NAMESPACE_HEADER: &str = "x-namespace";

impl CodecRequest {
    /// Reads and validates the request. The body is read only after the cheap checks pass.
    pub async fn read(
        req: &HttpRequest,
        path: &CodecPath,
        mut body: web::Payload,
        settings: &ProtocolSettings,
    ) -> Result<CodecRequest, ProtocolError> {
        require_json(req.headers())?;
        let namespace = resolve_namespace(path, req.headers(), settings.default_namespace.as_ref())?;
        let limit = settings.limits.max_body_bytes;
        if declared_length(req.headers()).is_some_and(|len| len > limit) {
            return Err(ProtocolError::BodyTooLarge { limit });
        }
        let mut bytes = web::BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|_| ProtocolError::BodyRead)?;
            if bytes.len() + chunk.len() > limit {
                return Err(ProtocolError::BodyTooLarge { limit });
            }
            bytes.extend_from_slice(&chunk);
        }
        let payloads = Payloads::from_json(&bytes)?;
        let count = payloads.payloads.len();
        if count > settings.limits.max_payloads {
            return Err(ProtocolError::TooManyPayloads { count, limit: settings.limits.max_payloads });
        }
        Ok(CodecRequest { op: path.op, namespace, payloads })
    }
}

/// `application/json`, with or without parameters. Requiring it also means a browser must send a CORS
/// preflight for every cross-origin call, so no page can post to us as a "simple request".
fn require_json(headers: &HeaderMap) -> Result<(), ProtocolError> {
    let value = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = value.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") { Ok(()) } else { Err(ProtocolError::UnsupportedMediaType) }
}

fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Namespace from `X-Namespace` and/or the path segment; both present and different is an error.
pub fn resolve_namespace(
    path: &CodecPath,
    headers: &HeaderMap,
    default: Option<&Namespace>,
) -> Result<Namespace, ProtocolError> {
    let header = match headers.get(NAMESPACE_HEADER) {
        Some(value) => {
            let text = value.to_str().map_err(|_| ProtocolError::InvalidNamespace)?;
            Some(Namespace::parse(text).ok_or(ProtocolError::InvalidNamespace)?)
        }
        None => None,
    };
    let from_path = match &path.namespace_segment {
        Some(segment) => Some(Namespace::parse(segment).ok_or(ProtocolError::InvalidNamespace)?),
        None => None,
    };
    match (from_path, header) {
        (Some(p), Some(h)) if p != h => {
            Err(ProtocolError::NamespaceMismatch { path: p.to_string(), header: h.to_string() })
        }
        (Some(ns), _) | (None, Some(ns)) => Ok(ns),
        (None, None) => default.cloned().ok_or(ProtocolError::MissingNamespace),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(ns: Option<&str>) -> HeaderMap {
        let mut map = HeaderMap::new();
        if let Some(ns) = ns {
            map.insert(HeaderName::from_static(NAMESPACE_HEADER), HeaderValue::from_str(ns).unwrap());
        }
        map
    }

    fn path(ns: Option<&str>) -> CodecPath {
        CodecPath { op: CodecOp::Decode, namespace_segment: ns.map(str::to_owned) }
    }

    #[test]
    fn namespace_sources_and_mismatch() {
        let default = Namespace::parse("dflt").unwrap();
        let got = |p, h, d| resolve_namespace(&path(p), &headers(h), d).map(|n| n.to_string());
        assert_eq!(got(Some("a"), None, None).unwrap(), "a");
        assert_eq!(got(None, Some("b"), None).unwrap(), "b");
        assert_eq!(got(Some("a"), Some("a"), None).unwrap(), "a");
        assert_eq!(got(None, None, Some(&default)).unwrap(), "dflt");
        assert!(matches!(got(Some("a"), Some("b"), None), Err(ProtocolError::NamespaceMismatch { .. })));
        assert!(matches!(got(None, None, None), Err(ProtocolError::MissingNamespace)));
        assert!(matches!(got(Some("a%2Fb"), None, None), Err(ProtocolError::InvalidNamespace)));
        assert!(matches!(got(None, Some(".."), None), Err(ProtocolError::InvalidNamespace)));
    }

    #[test]
    fn content_type_must_be_json() {
        let mut map = HeaderMap::new();
        assert!(require_json(&map).is_err());
        map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
        assert!(require_json(&map).is_ok());
        map.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(require_json(&map).is_err());
    }
}
