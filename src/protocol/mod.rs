//! The Remote Data Encoding protocol as real clients speak it: payload JSON, routes and namespaces.
//!
//! Everything that parses client input lives here, so handlers start from clean, bounded values.

pub mod base64_lenient;
pub mod body;
pub mod client_addr;
pub mod namespace;
pub mod payloads;
pub mod payloads_fast;
pub mod reply;
pub mod request;
pub mod route;

pub use namespace::Namespace;
pub use payloads::{ExternalPayloadDetails, Payload, Payloads};
pub use request::{CodecRequest, Limits};
pub use route::{CodecOp, CodecPath};

/// A client sent something we cannot accept. Every variant maps to a stable 4xx code at the HTTP edge.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("request body is not valid Payloads JSON: {0}")]
    MalformedJson(String),
    #[error("payload {index}: field `{field}` is not valid base64")]
    InvalidBase64 { index: usize, field: String },
    #[error("payload {index}: externalPayloads sizeBytes is not an int64")]
    InvalidExternalSize { index: usize },
    #[error("request has more than {limit} payloads")]
    TooManyPayloads { limit: usize },
    #[error("a payload has more than {limit} {what}")]
    TooManyElements { what: &'static str, limit: usize },
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    #[error("no namespace: send the X-Namespace header or use a /{{namespace}}/ path prefix")]
    MissingNamespace,
    #[error("namespace in the path ({path}) differs from the X-Namespace header ({header})")]
    NamespaceMismatch { path: String, header: String },
    #[error("the request carries two different X-Namespace headers")]
    ConflictingNamespaceHeaders,
    #[error("invalid namespace name")]
    InvalidNamespace,
    #[error("request body could not be read")]
    BodyRead,
    #[error("request body not received within {seconds} s")]
    BodyTimeout { seconds: u64 },
    #[error("the server is busy with other requests' bodies; retry shortly")]
    Overloaded,
}
