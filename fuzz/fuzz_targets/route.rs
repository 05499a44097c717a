//! The namespace/path router: `CodecPath::parse` and `resolve_namespace` with arbitrary headers.
//!
//! Input: `path \0 prefix \0 x-namespace value \0 x-namespace value ...`; a leading `D` on the prefix
//! part turns on a default namespace.
#![no_main]

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use codec_server::protocol::request::{NAMESPACE_HEADER, resolve_namespace};
use codec_server::protocol::{CodecOp, CodecPath, Namespace};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let Ok(path) = std::str::from_utf8(parts.next().unwrap_or_default()) else { return };
    let Ok(prefix) = std::str::from_utf8(parts.next().unwrap_or_default()) else { return };
    let (default, prefix) = match prefix.strip_prefix('D') {
        Some(rest) => (Namespace::parse("dflt"), rest),
        None => (None, prefix),
    };
    let mut headers = HeaderMap::new();
    for value in parts.take(4) {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.append(HeaderName::from_static(NAMESPACE_HEADER), v);
        }
    }

    let Some(parsed) = CodecPath::parse(path, prefix) else { return };
    let last = path.split('/').rfind(|s| !s.is_empty()).expect("a codec path has a last segment");
    assert_eq!(last, parsed.op.as_str());
    assert!(matches!(parsed.op, CodecOp::Encode | CodecOp::Decode | CodecOp::Download));
    if let Some(segment) = &parsed.namespace_segment {
        assert!(!segment.is_empty() && !segment.contains('/'));
    }
    if let Ok(ns) = resolve_namespace(&parsed, &headers, default.as_ref()) {
        // Whatever was resolved is a valid name, and is the path's when the path named one.
        assert_eq!(Namespace::parse(ns.as_str()).as_ref(), Some(&ns));
        if let Some(segment) = &parsed.namespace_segment {
            assert_eq!(ns.as_str(), segment);
        }
    }
});
