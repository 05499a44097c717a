//! Temporal namespace names as they arrive in `X-Namespace` or a `/{namespace}/` path segment.
//!
//! Validation is strict on purpose: the name reaches the KMS context, the AEAD associated data, cache
//! keys and the audit log, so it must never carry separators, traversal or encoded characters.

use std::fmt;

/// A validated Temporal namespace name: 1-255 bytes of `[A-Za-z0-9._-]`, not starting with `.` or `-`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(String);

/// Longest namespace the envelope format can carry (its length field allows 255 bytes).
pub const MAX_NAMESPACE_LEN: usize = 255;

impl Namespace {
    /// Validates a raw name. Percent-encoded or otherwise escaped names are refused, never decoded.
    pub fn parse(raw: &str) -> Option<Namespace> {
        let ok_len = !raw.is_empty() && raw.len() <= MAX_NAMESPACE_LEN;
        let ok_chars = raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        let ok_start = !raw.starts_with(['.', '-']);
        (ok_len && ok_chars && ok_start).then(|| Namespace(raw.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_temporal_and_cloud_names() {
        for ok in ["default", "payments-prod", "my_ns.a1b2c", "A", &"n".repeat(255)] {
            assert!(Namespace::parse(ok).is_some(), "{ok}");
        }
    }

    #[test]
    fn refuses_traversal_separators_and_encodings() {
        for bad in ["", "..", ".", "../etc", "a/b", "a%2Fb", "a%2fb", "a b", "-x", "é", "a\0b", &"n".repeat(256)] {
            assert!(Namespace::parse(bad).is_none(), "{bad:?}");
        }
    }
}
