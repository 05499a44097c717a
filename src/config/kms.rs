//! The `[kms.*]` sections: one per provider; a KEK URI's scheme picks the section.

use super::*;

/// KMS backends, one section per provider; a KEK URI's scheme picks the section.
#[derive(Clone, Debug, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct KmsConfig {
    pub local: LocalKmsConfig,
    pub aws: AwsKmsConfig,
    pub gcp: GcpKmsConfig,
    /// `[kms.vault]`: Vault / OpenBao address and login; required by `vault-transit://` KEKs.
    pub vault: Option<crate::kms::vault::VaultKmsConfig>,
    /// Allow plain `http://` KMS endpoints on other hosts (only where something else, e.g. a service
    /// mesh, encrypts the hop). Off: plain http only to 127.0.0.1, [::1] or localhost.
    pub insecure_allow_plaintext_http: bool,
}

/// The `local://` backend.
#[derive(Clone, Debug, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct LocalKmsConfig {
    /// Directory of `<name>.key` files; default `<data_dir>/keys`.
    pub key_dir: Option<PathBuf>,
}

/// Default deadline of one remote KMS call (DESIGN §5); each retry gets a fresh one.
pub const DEFAULT_KMS_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Default retries after throttling, 5xx, timeouts or a failed integrity check.
pub const DEFAULT_KMS_MAX_RETRIES: u32 = 2;

/// The `aws-kms://` backend. Credentials come from the default chain (environment, shared profile, web
/// identity / EKS IRSA, container and instance metadata); each key's region comes from its ARN.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsKmsConfig {
    /// Endpoint override: a VPC endpoint, or moto/LocalStack in tests. Default: the regional endpoint.
    pub endpoint_url: Option<String>,
    /// A named profile of the shared AWS config files instead of `default`.
    pub profile: Option<String>,
    /// Static credentials for test servers (moto). Leave unset in production so the default chain is used.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    /// Deadline of one call; each retry gets a fresh one.
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Retries after throttling, 5xx and timeouts (0 to 5).
    pub max_retries: u32,
}

impl Default for AwsKmsConfig {
    fn default() -> Self {
        AwsKmsConfig {
            endpoint_url: None,
            profile: None,
            access_key_id: None,
            secret_access_key: None,
            call_timeout: DEFAULT_KMS_CALL_TIMEOUT,
            max_retries: DEFAULT_KMS_MAX_RETRIES,
        }
    }
}

/// The `gcp-kms://` backend. Credentials: Application Default Credentials (Workload Identity on GKE,
/// `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's user credentials, the metadata server).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcpKmsConfig {
    /// Endpoint override (a Private Service Connect endpoint, or a test fake). Default:
    /// `https://cloudkms.googleapis.com`.
    pub endpoint: Option<String>,
    /// Send no credentials at all. Only for a test fake: requires a loopback `endpoint`.
    pub anonymous: bool,
    /// Deadline of one call; each retry gets a fresh one.
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Retries after throttling, 5xx, timeouts and CRC32C mismatches (0 to 5).
    pub max_retries: u32,
}

impl Default for GcpKmsConfig {
    fn default() -> Self {
        GcpKmsConfig {
            endpoint: None,
            anonymous: false,
            call_timeout: DEFAULT_KMS_CALL_TIMEOUT,
            max_retries: DEFAULT_KMS_MAX_RETRIES,
        }
    }
}
