//! Suffix routing: a codec call is any path whose last segment is `encode`, `decode` or `download`.
//!
//! Clients add prefixes (`/codec/decode`), a namespace segment (`/{namespace}/decode`, the CLI replaces
//! `{namespace}` in its endpoint) and doubled slashes (an endpoint that ends in `/`). We strip the
//! configured prefix, ignore empty segments, and read at most one segment before the operation as the
//! namespace. Query strings never take part (actix gives us the path without them).

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
    /// Parses a request path; `None` when it is not a codec route (answered 404).
    pub fn parse(path: &str, prefix: &str) -> Option<CodecPath> {
        let prefix = prefix.trim_matches('/');
        let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if !prefix.is_empty() {
            let prefix_segments: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
            if segments.starts_with(&prefix_segments) {
                segments.drain(..prefix_segments.len());
            }
        }
        let (last, before) = segments.split_last()?;
        let op = match *last {
            "encode" => CodecOp::Encode,
            "decode" => CodecOp::Decode,
            "download" => CodecOp::Download,
            _ => return None,
        };
        match before {
            [] => Some(CodecPath { op, namespace_segment: None }),
            [ns] => Some(CodecPath { op, namespace_segment: Some((*ns).to_owned()) }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(path: &str) -> Option<(CodecOp, Option<String>)> {
        CodecPath::parse(path, "/codec/").map(|p| (p.op, p.namespace_segment))
    }

    #[test]
    fn routes_every_shape_clients_send() {
        assert_eq!(parse("/decode"), Some((CodecOp::Decode, None)));
        assert_eq!(parse("//decode"), Some((CodecOp::Decode, None)));
        assert_eq!(parse("/encode/"), Some((CodecOp::Encode, None)));
        assert_eq!(parse("/codec/decode"), Some((CodecOp::Decode, None)));
        assert_eq!(parse("/codec//payments/decode"), Some((CodecOp::Decode, Some("payments".into()))));
        assert_eq!(parse("/payments/encode"), Some((CodecOp::Encode, Some("payments".into()))));
        assert_eq!(parse("/download"), Some((CodecOp::Download, None)));
    }

    #[test]
    fn everything_else_is_not_a_codec_route() {
        for path in ["/", "/decoder", "/a/b/decode", "/healthz", "/encode/x"] {
            assert_eq!(parse(path), None, "{path}");
        }
    }
}
