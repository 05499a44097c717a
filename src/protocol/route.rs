//! Suffix routing: a codec call is any path whose last segment is `encode`, `decode` or `download`.
//!
//! Clients add prefixes (`/codec/decode`, an ingress that forwards its path unchanged), a namespace
//! segment (`/{namespace}/decode`, the CLI replaces `{namespace}` in its endpoint) and doubled slashes
//! (an endpoint that ends in `/`). Empty segments are ignored; query strings never take part (actix
//! gives us the path without them). Two modes:
//!
//! - **No `server.path_prefix` (the default): suffix routing needs no configuration.** The last
//!   segment is the operation. With `X-Namespace` present the namespace is the header's: a path segment
//!   equal to it right before the operation is accepted, and everything else in front is a prefix that
//!   takes no part. Without the header the segment right before the operation is the namespace.
//! - **`server.path_prefix` set: exact.** The prefix is stripped when present, and at most one segment
//!   may stand between it and the operation: that segment is the namespace, and one that differs from
//!   `X-Namespace` is refused (`namespace-mismatch`). Anything longer is 404.
//!
//! What must stay true: this module only decides which segment *names* the namespace; the name is
//! validated once in `request::resolve_namespace`, and that one value is what keys, policy and audit
//! see. A path segment never overrides the header.

/// The operation a codec path asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecOp {
    Encode,
    Decode,
    /// SDK external-storage download; answered 501 until external storage is supported.
    Download,
}

impl CodecOp {
    /// Lower-case name as used in paths, logs and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            CodecOp::Encode => "encode",
            CodecOp::Decode => "decode",
            CodecOp::Download => "download",
        }
    }
}

/// A parsed codec path: the operation and the raw namespace segment in front of it, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodecPath {
    pub op: CodecOp,
    pub namespace_segment: Option<String>,
}

impl CodecPath {
    /// Parses a request path without looking at headers (metrics labels, tests); `None` when it is not
    /// a codec route (answered 404).
    pub fn parse(path: &str, prefix: &str) -> Option<CodecPath> {
        CodecPath::resolve(path, prefix, None)
    }

    /// Parses a request path knowing the raw `X-Namespace` header (`None` when absent).
    ///
    /// Without a configured prefix and with the header present, `namespace_segment` is either `None`
    /// (the path carries a prefix or nothing in front of the operation) or exactly the header's bytes,
    /// so the namespace that follows is always the header's.
    pub fn resolve(path: &str, prefix: &str, namespace_header: Option<&[u8]>) -> Option<CodecPath> {
        let mut from_end = segments(path).rev();
        let op = match from_end.next()? {
            "encode" => CodecOp::Encode,
            "decode" => CodecOp::Decode,
            "download" => CodecOp::Download,
            _ => return None,
        };
        let prefix_len = segments(prefix).count();
        let namespace_segment = if prefix_len == 0 {
            let before_op = from_end.next();
            match namespace_header {
                Some(header) => before_op.filter(|segment| segment.as_bytes() == header),
                None => before_op,
            }
        } else {
            // The segments in front of the operation, without the prefix when they start with it.
            let in_front = from_end.count();
            let prefixed = in_front >= prefix_len && segments(path).zip(segments(prefix)).all(|(a, b)| a == b);
            let mut rest = segments(path).take(in_front).skip(if prefixed { prefix_len } else { 0 });
            match (rest.next(), rest.next()) {
                (None, _) => None,
                (Some(ns), None) => Some(ns),
                _ => return None,
            }
        };
        Some(CodecPath { op, namespace_segment: namespace_segment.map(str::to_owned) })
    }
}

/// The non-empty segments of a path. Iterators, not vectors: paths are resolved twice per request
/// (routing and metrics).
fn segments(text: &str) -> impl DoubleEndedIterator<Item = &str> {
    text.split('/').filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(path: &str) -> Option<(CodecOp, Option<String>)> {
        CodecPath::parse(path, "/codec/").map(|p| (p.op, p.namespace_segment))
    }

    fn suffix(path: &str, header: Option<&str>) -> Option<(CodecOp, Option<String>)> {
        CodecPath::resolve(path, "", header.map(str::as_bytes)).map(|p| (p.op, p.namespace_segment))
    }

    fn ns(name: &str) -> Option<String> {
        Some(name.to_owned())
    }

    #[test]
    fn with_a_configured_prefix_routes_every_shape_clients_send() {
        assert_eq!(exact("/decode"), Some((CodecOp::Decode, None)));
        assert_eq!(exact("//decode"), Some((CodecOp::Decode, None)));
        assert_eq!(exact("/encode/"), Some((CodecOp::Encode, None)));
        assert_eq!(exact("/codec/decode"), Some((CodecOp::Decode, None)));
        assert_eq!(exact("/codec//payments/decode"), Some((CodecOp::Decode, ns("payments"))));
        assert_eq!(exact("/payments/encode"), Some((CodecOp::Encode, ns("payments"))));
        assert_eq!(exact("/download"), Some((CodecOp::Download, None)));
    }

    #[test]
    fn with_a_configured_prefix_anything_longer_is_not_a_codec_route() {
        for path in ["/", "/decoder", "/a/b/decode", "/codec/a/b/decode", "/healthz", "/encode/x"] {
            assert_eq!(exact(path), None, "{path}");
        }
    }

    #[test]
    fn without_a_prefix_the_header_names_the_namespace_and_the_rest_is_a_prefix() {
        let h = Some("default");
        assert_eq!(suffix("/decode", h), Some((CodecOp::Decode, None)));
        assert_eq!(suffix("//decode", h), Some((CodecOp::Decode, None)));
        assert_eq!(suffix("/codec/decode", h), Some((CodecOp::Decode, None)));
        assert_eq!(suffix("/codec/default/decode", h), Some((CodecOp::Decode, ns("default"))));
        assert_eq!(suffix("/a/b/default//encode", h), Some((CodecOp::Encode, ns("default"))));
        // A segment that differs from the header is a prefix, never a second namespace.
        assert_eq!(suffix("/payments/decode", h), Some((CodecOp::Decode, None)));
        assert_eq!(suffix("/default/codec/decode", h), Some((CodecOp::Decode, None)));
    }

    #[test]
    fn without_a_prefix_or_header_the_segment_before_the_operation_is_the_namespace() {
        assert_eq!(suffix("/decode", None), Some((CodecOp::Decode, None)));
        assert_eq!(suffix("/payments/encode", None), Some((CodecOp::Encode, ns("payments"))));
        assert_eq!(suffix("/codec/payments//decode", None), Some((CodecOp::Decode, ns("payments"))));
        assert_eq!(suffix("/../decode", None), Some((CodecOp::Decode, ns(".."))), "validated later, refused there");
    }

    #[test]
    fn without_a_prefix_only_the_last_segment_decides_the_route() {
        for path in ["/", "/decoder", "/healthz", "/encode/x", "/nothing/here/at/all"] {
            assert_eq!(suffix(path, Some("default")), None, "{path}");
            assert_eq!(suffix(path, None), None, "{path}");
        }
    }
}
