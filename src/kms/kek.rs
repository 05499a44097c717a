//! KEK URIs: which KMS holds a key-encryption key and how to name it there.
//!
//! `aws-kms://<key or alias ARN>`, `gcp-kms://projects/…/cryptoKeys/<k>`, `vault-transit://<mount>/<key>`,
//! `azure-keyvault://<vault host>/keys/<key>[/<version>]`, `local://<name>`. The URI as configured is what the envelope records, so it must never change for a
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
    AzureKeyVault = 4,
}

impl Provider {
    /// The provider for an envelope byte.
    pub fn from_u8(value: u8) -> Option<Provider> {
        match value {
            0 => Some(Provider::Local),
            1 => Some(Provider::AwsKms),
            2 => Some(Provider::GcpKms),
            3 => Some(Provider::VaultTransit),
            4 => Some(Provider::AzureKeyVault),
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
            Provider::AzureKeyVault => "azure-keyvault",
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
    /// The key's name at the provider (an ARN, a GCP key name, …).
    key: String,
    /// Written the way Temporal Proxy writes `encryption-key-id` (`awskms://`, `gcpkms://`): such a KEK
    /// only opens the proxy's payloads, never wraps ours.
    proxy: bool,
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
        if let Some(proxy) = Self::parse_proxy(uri, scheme, rest)? {
            return Ok(proxy);
        }
        let provider = match scheme {
            "local" => Provider::Local,
            "aws-kms" => Provider::AwsKms,
            "gcp-kms" => Provider::GcpKms,
            "vault-transit" => Provider::VaultTransit,
            "azure-keyvault" => Provider::AzureKeyVault,
            _ => return Err(err("provider must be local, aws-kms, gcp-kms, vault-transit or azure-keyvault")),
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
        Ok(KekUri { provider, uri: uri.to_owned(), key: rest.to_owned(), proxy: false })
    }

    /// Temporal Proxy's KEK URIs (Go CDK secrets URLs): `awskms:///<key or alias ARN>?region=<r>`,
    /// `gcpkms://projects/…/cryptoKeys/<k>` and
    /// `azurekeyvault://<vault host>/keys/<key>[/<version>][?algorithm=<alg>]`. The key id is the host and
    /// path, as Go CDK reads it; the Azure backend reads the algorithm from the whole URI.
    fn parse_proxy(uri: &str, scheme: &str, rest: &str) -> Result<Option<KekUri>, KekUriError> {
        let err = |reason| KekUriError { uri: uri.to_owned(), reason };
        let provider = match scheme {
            "awskms" => Provider::AwsKms,
            "gcpkms" => Provider::GcpKms,
            "azurekeyvault" => Provider::AzureKeyVault,
            _ => return Ok(None),
        };
        let key = rest.split('?').next().unwrap_or_default().trim_start_matches('/');
        if key.is_empty() || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("key part is empty or contains whitespace"));
        }
        if uri.len() > crate::codec::envelope::MAX_KEK_REF_LEN {
            return Err(err("longer than 512 bytes"));
        }
        if provider == Provider::AwsKms && !key.starts_with("arn:") {
            return Err(err(
                "a Temporal Proxy awskms:// KEK must name a key or alias ARN, e.g. awskms:///arn:aws:kms:<region>:<account>:key/<id>",
            ));
        }
        Ok(Some(KekUri { provider, uri: uri.to_owned(), key: key.to_owned(), proxy: true }))
    }

    /// Whether this KEK is written as Temporal Proxy writes it (it then only opens proxy payloads).
    pub fn is_proxy(&self) -> bool {
        self.proxy
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
        &self.key
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
            ("azure-keyvault://codec.vault.azure.net/keys/payments", Provider::AzureKeyVault),
        ] {
            let kek = KekUri::parse(uri).unwrap();
            assert_eq!((kek.provider(), kek.as_str()), (p, uri));
        }
    }

    #[test]
    fn reads_temporal_proxy_uris_as_decrypt_only_aliases() {
        let aws = KekUri::parse("awskms:///arn:aws:kms:us-east-1:123456789012:key/abcd?region=us-east-1").unwrap();
        assert_eq!(
            (aws.provider(), aws.key_part(), aws.is_proxy()),
            (Provider::AwsKms, "arn:aws:kms:us-east-1:123456789012:key/abcd", true)
        );
        let gcp = KekUri::parse("gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k").unwrap();
        assert_eq!(
            (gcp.provider(), gcp.key_part()),
            (Provider::GcpKms, "projects/p/locations/l/keyRings/r/cryptoKeys/k")
        );
        assert!(KekUri::parse("awskms://alias/Example?region=us-east-1").is_err(), "an alias name has no account");
        let azure = KekUri::parse("azurekeyvault://v.vault.azure.net/keys/k/v1?algorithm=RSA-OAEP-256").unwrap();
        assert_eq!(
            (azure.provider(), azure.key_part(), azure.is_proxy()),
            (Provider::AzureKeyVault, "v.vault.azure.net/keys/k/v1", true)
        );
        assert!(!KekUri::parse("aws-kms://arn:aws:kms:eu-west-1:1:key/x").unwrap().is_proxy());
    }

    #[test]
    fn refuses_unknown_or_malformed() {
        for bad in ["main", "s3://x", "local://", "local://../etc/passwd", "local://a b"] {
            assert!(KekUri::parse(bad).is_err(), "{bad}");
        }
    }
}
