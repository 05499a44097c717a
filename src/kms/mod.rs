//! Key-encryption keys (KEKs) held by a KMS, the data keys they wrap, and the caches in front of them.
//!
//! Backends never see payloads: they wrap and unwrap 32-byte data keys under a KMS context that binds
//! the namespace (Azure Key Vault's wrap takes no context: there the envelope's AEAD binds it, see
//! `azure`). Everything upstream talks to `KmsBackend` and the keyring registry, so adding AWS, GCP,
//! Vault or Azure means adding one file here, not touching the codec.

#[cfg(feature = "aws-kms")]
pub mod aws;
#[cfg(feature = "azure-keyvault")]
pub mod azure;
pub mod data_key;
pub mod decrypt_cache;
pub mod encrypt_cache;
#[cfg(feature = "gcp-kms")]
pub mod gcp;
pub mod instrumented;
pub mod kek;
pub mod keyring;
pub mod local;
pub mod resilient;
pub mod settings;
pub mod vault;

use std::time::Duration;

use async_trait::async_trait;

pub use data_key::{DATA_KEY_LEN, DataKey, DropProbe};
pub use kek::{KekUri, Provider};
pub use settings::KmsConfig;

use crate::protocol::Namespace;

/// Default deadline of one remote KMS call (DESIGN §5); each retry gets a fresh one.
pub const DEFAULT_KMS_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Default retries after throttling, 5xx, timeouts or a failed integrity check.
pub const DEFAULT_KMS_MAX_RETRIES: u32 = 2;

/// Boxed source error, for the log only (never returned to clients).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Checks a configured KEK URI's key part for its provider, and that this build has that provider. The
/// error says what a valid reference looks like.
pub fn validate_kek(kek: &KekUri, kms: &KmsConfig) -> Result<(), String> {
    match kek.provider() {
        Provider::Local => Ok(()),
        #[cfg(feature = "aws-kms")]
        Provider::AwsKms => aws::KeyArn::parse(kek.key_part()).map(drop).map_err(|reason| {
            format!(
                "`{kek}`: {reason}; expected aws-kms://arn:aws:kms:<region>:<account>:key/<key-id> or …:alias/<name>"
            )
        }),
        #[cfg(not(feature = "aws-kms"))]
        Provider::AwsKms => Err(missing_feature(kek, "aws-kms")),
        #[cfg(feature = "gcp-kms")]
        Provider::GcpKms => gcp::check_key_name(kek.key_part()).map_err(|reason| {
            format!("`{kek}`: {reason}; expected gcp-kms://projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>")
        }),
        #[cfg(not(feature = "gcp-kms"))]
        Provider::GcpKms => Err(missing_feature(kek, "gcp-kms")),
        Provider::VaultTransit => vault::validate(kek, kms.vault.as_ref()).map_err(|e| e.to_string()),
        #[cfg(feature = "azure-keyvault")]
        Provider::AzureKeyVault => azure::AzureKeyId::parse(kek.as_str()).map(drop).map_err(|reason| {
            format!("`{kek}`: {reason}; expected azure-keyvault://<vault>.vault.azure.net/keys/<key>[/<version>]")
        }),
        #[cfg(not(feature = "azure-keyvault"))]
        Provider::AzureKeyVault => Err(missing_feature(kek, "azure-keyvault")),
    }
}

/// The error for a KEK whose provider this build was compiled without.
#[cfg(not(all(feature = "aws-kms", feature = "gcp-kms", feature = "azure-keyvault")))]
fn missing_feature(kek: &KekUri, feature: &str) -> String {
    format!("`{kek}` needs the `{feature}` Cargo feature, which this build lacks; rebuild with default features")
}

/// A wrapped (encrypted) data key as the KMS returned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey(pub Vec<u8>);

/// The context bound to every KMS call: `{"codec":"tce-v1","namespace":"<ns>"}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KmsContext {
    namespace: Namespace,
    /// False only to unwrap a data key that Temporal Proxy wrapped: it binds no context at the KMS.
    bound: bool,
}

impl KmsContext {
    /// The context for a namespace.
    pub fn for_namespace(namespace: &Namespace) -> KmsContext {
        KmsContext { namespace: namespace.clone(), bound: true }
    }

    /// No KMS-side binding, for unwrapping Temporal Proxy's data keys (it wraps them with no
    /// encryption context or AAD). The namespace is kept for the caches and logs only.
    pub fn unbound(namespace: &Namespace) -> KmsContext {
        KmsContext { namespace: namespace.clone(), bound: false }
    }

    /// Whether the KMS call carries the namespace binding.
    pub fn is_bound(&self) -> bool {
        self.bound
    }

    /// The namespace it binds.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// Canonical JSON bytes: keys sorted, no whitespace. Used as AAD by the local backend and GCP, and
    /// as Vault's associated data.
    pub fn canonical_json(&self) -> String {
        // A BTreeMap serializes with sorted keys; serde_json escapes the (already validated) name.
        // Unbound contexts never reach a KMS as AAD; the marker keeps their cache keys apart.
        let codec = if self.bound { "tce-v1" } else { "temporal-proxy" };
        let map = std::collections::BTreeMap::from([("codec", codec), ("namespace", self.namespace.as_str())]);
        serde_json::to_string(&map).unwrap_or_default()
    }
}

/// Errors from a KMS. Variants are what callers branch on: retry elsewhere, answer 503, or refuse.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    #[error("KMS refused access to {kek}")]
    AccessDenied { kek: String },
    #[error("KEK {kek} not found")]
    KeyNotFound { kek: String },
    #[error("wrapped key rejected by the KMS")]
    InvalidCiphertext,
    /// The KMS answered, but the answer names another key or fails its integrity fields; nothing of it
    /// is used (AWS `KeyId`, GCP key name).
    #[error("KMS response for {kek} rejected: {reason}")]
    UntrustedResponse { kek: String, reason: &'static str },
    #[error("KMS unavailable")]
    Unavailable {
        retry_after: Duration,
        #[source]
        source: BoxError,
    },
    #[error("no backend configured for provider {0}")]
    NoBackend(Provider),
    /// The KMS holds the key but refuses this use of it: the key is disabled, or the key version that
    /// wrapped the data key was retired (Vault `min_decryption_version`, a disabled key or key version).
    #[error("KEK {kek} refuses this data key: the key or the key version that wrapped it is disabled or retired")]
    KeyDisabled { kek: String },
}

impl KmsError {
    /// Whether another KEK (or a retry later) may succeed where this one failed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, KmsError::Unavailable { .. })
    }
}

/// A key-encryption key held somewhere else. Implementations never see payloads.
#[async_trait]
pub trait KmsBackend: Send + Sync {
    /// Which provider this backend talks to.
    fn provider(&self) -> Provider;

    /// Encrypts a data key under `kek`, bound to `ctx`.
    async fn wrap(&self, kek: &KekUri, dek: &DataKey, ctx: &KmsContext) -> Result<WrappedKey, KmsError>;

    /// Decrypts a wrapped data key; fails unless `ctx` is the one it was wrapped with.
    async fn unwrap(&self, kek: &KekUri, wrapped: &WrappedKey, ctx: &KmsContext) -> Result<DataKey, KmsError>;

    /// Default: make the key locally and `wrap` it; AWS and Vault use their own data-key calls.
    async fn generate_data_key(&self, kek: &KekUri, ctx: &KmsContext) -> Result<(DataKey, WrappedKey), KmsError> {
        let dek = DataKey::random();
        let wrapped = self.wrap(kek, &dek, ctx).await?;
        Ok((dek, wrapped))
    }

    /// Whether the KMS is reachable and the configured keys usable.
    async fn health_check(&self) -> Result<(), KmsError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_json_is_canonical() {
        let ns = Namespace::parse("payments").unwrap();
        assert_eq!(KmsContext::for_namespace(&ns).canonical_json(), r#"{"codec":"tce-v1","namespace":"payments"}"#);
    }
}
