//! KEK URIs: which KMS holds a key-encryption key and how to name it there.
//!
//! `aws-kms://<key or alias ARN>`, `gcp-kms://projects/…/cryptoKeys/<k>`, `vault-transit://<mount>/<key>`,
//! `local://<name>`. The URI as configured is what the envelope records, so it must never change for a
//! KEK that has sealed data.

use std::fmt;

/// Where a KEK lives. The numeric values are the envelope's provider byte and must never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Provider {
    Local = 0,
    AwsKms = 1,
    GcpKms = 2,
    VaultTransit = 3,
}

impl Provider {
    /// The provider for an envelope byte.
    pub fn from_u8(value: u8) -> Option<Provider> {
        match value {
            0 => Some(Provider::Local),
            1 => Some(Provider::AwsKms),
            2 => Some(Provider::GcpKms),
            3 => Some(Provider::VaultTransit),
            _ => None,
        }
    }

    /// The URI scheme and metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Local => "local",
            Provider::AwsKms => "aws-kms",
            Provider::GcpKms => "gcp-kms",
            Provider::VaultTransit => "vault-transit",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed KEK URI.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KekUri {
    provider: Provider,
    uri: String,
}

/// A KEK URI that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid KEK URI `{uri}`: {reason}")]
pub struct KekUriError {
    pub uri: String,
    pub reason: &'static str,
}

impl KekUri {
    /// Parses and checks a KEK URI (scheme known, key part non-empty, at most 512 bytes).
    pub fn parse(uri: &str) -> Result<KekUri, KekUriError> {
        let err = |reason| KekUriError { uri: uri.to_owned(), reason };
        let (scheme, rest) = uri.split_once("://").ok_or_else(|| err("expected <provider>://<key>"))?;
        let provider = match scheme {
            "local" => Provider::Local,
            "aws-kms" => Provider::AwsKms,
            "gcp-kms" => Provider::GcpKms,
            "vault-transit" => Provider::VaultTransit,
            _ => return Err(err("provider must be local, aws-kms, gcp-kms or vault-transit")),
        };
        if rest.is_empty() || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("key part is empty or contains whitespace"));
        }
        if uri.len() > crate::codec::envelope::MAX_KEK_REF_LEN {
            return Err(err("longer than 512 bytes"));
        }
        if provider == Provider::Local
            && !rest.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(err("local key names use only letters, digits, '-', '_' and '.'"));
        }
        Ok(KekUri { provider, uri: uri.to_owned() })
    }

    /// The provider.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The whole URI, as recorded in envelopes.
    pub fn as_str(&self) -> &str {
        &self.uri
    }

    /// The part after `scheme://`.
    pub fn key_part(&self) -> &str {
        self.uri.split_once("://").map(|(_, rest)| rest).unwrap_or_default()
    }
}

impl fmt::Display for KekUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_provider() {
        for (uri, p) in [
            ("local://main", Provider::Local),
            ("aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd", Provider::AwsKms),
            ("gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k", Provider::GcpKms),
            ("vault-transit://transit/payments", Provider::VaultTransit),
        ] {
            let kek = KekUri::parse(uri).unwrap();
            assert_eq!((kek.provider(), kek.as_str()), (p, uri));
        }
    }

    #[test]
    fn refuses_unknown_or_malformed() {
        for bad in ["main", "s3://x", "local://", "local://../etc/passwd", "local://a b"] {
            assert!(KekUri::parse(bad).is_err(), "{bad}");
        }
    }
}
