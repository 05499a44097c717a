//! Turns an HTTP request on a codec path into clean values: operation and namespace from the head,
//! then — only once the caller is authorized — the bounded payloads from the body.
//!
//! What must stay true: everything here that runs before authorization looks at headers only (content
//! type, namespace, declared length); the body is read by [`CodecRequest::read_payloads`], which the
//! handlers call after the decision, within the deadline and the shared in-flight budget.

use actix_web::HttpRequest;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap};
use actix_web::web;

use super::body::{BodyBudget, InFlight};
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
    /// Body bytes in flight across all connections, and the body deadline.
    pub body: BodyBudget,
    /// Whose `X-Forwarded-For` is believed for the client address.
    pub trusted_proxies: super::client_addr::TrustedProxies,
}

/// A codec request after the header checks: the operation and namespace, body not yet read.
#[derive(Debug)]
pub struct CodecRequest {
    pub op: CodecOp,
    pub namespace: Namespace,
    /// `Content-Length`, when the client sent one (already checked against the body limit).
    declared_length: Option<usize>,
}

/// The header the Web UI and the CLI always send.
pub const NAMESPACE_HEADER: &str = "x-namespace";

impl CodecRequest {
    /// Validates the head of the request; reads nothing of the body.
    pub fn from_head(
        req: &HttpRequest,
        path: &CodecPath,
        settings: &ProtocolSettings,
    ) -> Result<CodecRequest, ProtocolError> {
        require_json(req.headers())?;
        let namespace = resolve_namespace(path, req.headers(), settings.default_namespace.as_ref())?;
        let limit = settings.limits.max_body_bytes;
        let declared_length = declared_length(req.headers());
        if declared_length.is_some_and(|len| len > limit) {
            return Err(ProtocolError::BodyTooLarge { limit });
        }
        Ok(CodecRequest { op: path.op, namespace, declared_length })
    }

    /// After a refusal: drops a small body so the connection can serve the client's next request.
    pub async fn discard_body(&self, body: web::Payload, settings: &ProtocolSettings) {
        settings.body.discard(body, self.declared_length).await;
    }

    /// Reads and parses the body, for an authorized caller only. The returned guard holds the body's
    /// bytes in the in-flight budget: keep it until the response is built.
    pub async fn read_payloads(
        &self,
        body: web::Payload,
        settings: &ProtocolSettings,
    ) -> Result<(Payloads, InFlight), ProtocolError> {
        let (bytes, in_flight) = settings.body.read(body, self.declared_length).await?;
        let payloads = Payloads::from_json_bounded(&bytes, settings.limits.max_payloads)?;
        Ok((payloads, in_flight))
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
    // Two X-Namespace headers (an ingress that appends one) are ambiguous: refuse rather than pick.
    let mut values = headers.get_all(NAMESPACE_HEADER);
    let first = values.next();
    if let (Some(a), Some(b)) = (first, values.next())
        && a != b
    {
        return Err(ProtocolError::ConflictingNamespaceHeaders);
    }
    let header = match first {
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
        let mut two = headers(Some("beta"));
        two.append(HeaderName::from_static(NAMESPACE_HEADER), HeaderValue::from_static("alpha"));
        assert!(matches!(resolve_namespace(&path(None), &two, None), Err(ProtocolError::ConflictingNamespaceHeaders)));
        let mut same = headers(Some("beta"));
        same.append(HeaderName::from_static(NAMESPACE_HEADER), HeaderValue::from_static("beta"));
        assert_eq!(resolve_namespace(&path(None), &same, None).unwrap().to_string(), "beta");
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
