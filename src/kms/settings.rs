//! The `[kms.*]` sections: one per provider; a KEK URI's scheme picks the section. They live with the
//! backends that read them (the config module composes them), so `kms` never depends on `config`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// KMS backends, one section per provider; a KEK URI's scheme picks the section.
#[derive(Clone, Debug, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct KmsConfig {
    pub local: LocalKmsConfig,
    pub aws: AwsKmsConfig,
    pub gcp: GcpKmsConfig,
    /// `[kms.vault]`: Vault / OpenBao address and login; required by `vault-transit://` KEKs.
    pub vault: Option<super::vault::VaultKmsConfig>,
    /// `[kms.azure]`: Entra ID identity and options of `azure-keyvault://` KEKs.
    pub azure: AzureKeyVaultConfig,
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

pub use super::{DEFAULT_KMS_CALL_TIMEOUT, DEFAULT_KMS_MAX_RETRIES};

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

/// Which Entra ID identity the `azure-keyvault://` backend authenticates as.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AzureCredentialKind {
    /// AKS workload identity: a federated service-account token (`AZURE_FEDERATED_TOKEN_FILE`,
    /// `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_AUTHORITY_HOST`, set by the workload-identity webhook).
    WorkloadIdentity,
    /// The managed identity of the VM, VM scale set or App Service (`client_id` picks a user-assigned one).
    ManagedIdentity,
    /// An app registration's client secret (`tenant_id`, `client_id`, `client_secret`).
    ClientSecret,
}

impl AzureCredentialKind {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AzureCredentialKind::WorkloadIdentity => "workload-identity",
            AzureCredentialKind::ManagedIdentity => "managed-identity",
            AzureCredentialKind::ClientSecret => "client-secret",
        }
    }
}

/// The `azure-keyvault://` backend (Azure Key Vault and Managed HSM).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AzureKeyVaultConfig {
    /// Unset: client-secret when `client_secret` is set, else workload-identity when a federated token
    /// file is configured or `AZURE_FEDERATED_TOKEN_FILE` is set (AKS), else managed-identity.
    pub credential: Option<AzureCredentialKind>,
    /// Entra ID tenant; default `AZURE_TENANT_ID` (workload identity).
    pub tenant_id: Option<String>,
    /// App registration / managed identity client id; default `AZURE_CLIENT_ID` (workload identity) or
    /// the system-assigned identity (managed identity).
    pub client_id: Option<String>,
    /// Client secret (`credential = "client-secret"`); use `CODEC_KMS__AZURE__CLIENT_SECRET_FILE`.
    pub client_secret: Option<Secret>,
    /// Federated token file; default `AZURE_FEDERATED_TOKEN_FILE`.
    pub federated_token_file: Option<PathBuf>,
    /// Entra ID authority (sovereign or private clouds, test fakes); default `AZURE_AUTHORITY_HOST` or
    /// `https://login.microsoftonline.com`. https only.
    pub authority_host: Option<String>,
    /// Send every vault's requests to this address instead of `https://<vault host>` (a test fake).
    /// https only: the SDK refuses to send tokens over plain http.
    pub endpoint: Option<String>,
    /// Extra CA certificates (PEM) trusted for Key Vault and the authority, e.g. a TLS-inspecting proxy's.
    pub ca_file: Option<PathBuf>,
    /// Deadline of one call; each retry gets a fresh one.
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Retries after throttling, 5xx and timeouts (0 to 5).
    pub max_retries: u32,
}

impl Default for AzureKeyVaultConfig {
    fn default() -> Self {
        AzureKeyVaultConfig {
            credential: None,
            tenant_id: None,
            client_id: None,
            client_secret: None,
            federated_token_file: None,
            authority_host: None,
            endpoint: None,
            ca_file: None,
            call_timeout: DEFAULT_KMS_CALL_TIMEOUT,
            max_retries: DEFAULT_KMS_MAX_RETRIES,
        }
    }
}

impl AzureKeyVaultConfig {
    /// The credential to use; `env_set` says whether an environment variable is set.
    pub fn credential_kind(&self, env_set: impl Fn(&str) -> bool) -> AzureCredentialKind {
        match self.credential {
            Some(kind) => kind,
            None if self.client_secret.is_some() => AzureCredentialKind::ClientSecret,
            None if self.federated_token_file.is_some() || env_set("AZURE_FEDERATED_TOKEN_FILE") => {
                AzureCredentialKind::WorkloadIdentity
            }
            None => AzureCredentialKind::ManagedIdentity,
        }
    }
}
