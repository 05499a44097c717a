//! The `azure-keyvault://` backend: Azure Key Vault and Managed HSM through Microsoft's official crates
//! (`azure_security_keyvault_keys`, `azure_identity`), on the same reqwest + rustls/aws-lc stack as the
//! rest of the server.
//!
//! Key Vault has no data-key call: the data key is made locally and sealed with `wrapKey`
//! (RSA-OAEP-256, or A256KW on a Managed HSM `oct-HSM` key), opened with `unwrapKey`.
//!
//! What the KMS layer cannot add: Key Vault's wrap takes **no associated data**, so unlike AWS
//! (EncryptionContext), GCP (AAD) and Vault (associated data) nothing at the KMS binds a wrapped data key
//! to a namespace, and Key Vault's logs cannot say which namespace a call served. The namespace stays
//! bound by the envelope: the AES-GCM AAD holds the namespace of the authorized request, so a header
//! rewritten from A to B unwraps at Key Vault and then fails to open; and the decrypt cache is keyed by
//! namespace. Give namespaces that must be separated at the KMS (RBAC, logs) keys of their own.
//!
//! What must stay true: the key name, vault and algorithm come from configuration, never from a payload;
//! the wrapped bytes record the key version that wrapped them (`0x01 || u8 len || version || wrapped`),
//! so Key Vault's key rotation is transparent, and a version only ever selects a version of the
//! configured key. Every answer must name the configured key (`kid`), or it is rejected. Tokens are only
//! requested for the Key Vault audience of the configured vaults (a challenge asking for another
//! audience is refused), and only over https (the SDK refuses bearer tokens over plain http). The SDK's
//! own retries are off: `Resilient` owns deadlines and retries. Temporal Proxy's `azurekeyvault://` KEKs
//! are opened with `decrypt`, the operation Go CDK's keeper used to seal them, with no version recorded
//! (the proxy's own behaviour). Key bytes we own are zeroized; the copies inside the SDK's buffers are
//! not ours to wipe.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::credentials::{AccessToken, Secret as AzureSecret, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, RequestContent, RetryOptions, Transport};
use azure_identity::{
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use azure_security_keyvault_keys::models::{
    EncryptionAlgorithm, KeyClientDecryptOptions, KeyClientGetKeyOptions, KeyClientUnwrapKeyOptions,
    KeyClientWrapKeyOptions, KeyOperationParameters,
};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use zeroize::Zeroizing;

use super::settings::{AzureCredentialKind, AzureKeyVaultConfig};
use super::{DataKey, KekUri, KmsBackend, KmsContext, KmsError, Provider, WrappedKey};

/// Format byte of our wrapped keys: version-tagged Key Vault ciphertext.
const WRAPPED_FORMAT: u8 = 1;
/// Key Vault key versions are 32 hex characters; anything longer is not one.
const MAX_VERSION_LEN: usize = 64;

/// The algorithms this backend uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrapAlgorithm {
    /// RSA-OAEP with SHA-256 and MGF1-SHA-256: every RSA key, Key Vault or Managed HSM.
    RsaOaep256,
    /// RSA-OAEP with SHA-1: only to read Temporal Proxy payloads sealed with `?algorithm=RSA-OAEP`.
    RsaOaep,
    /// AES key wrap (RFC 3394) with a 256-bit key: Managed HSM `oct-HSM` keys only.
    A256Kw,
}

impl WrapAlgorithm {
    fn parse(name: &str) -> Option<WrapAlgorithm> {
        match name {
            "RSA-OAEP-256" => Some(WrapAlgorithm::RsaOaep256),
            "RSA-OAEP" => Some(WrapAlgorithm::RsaOaep),
            "A256KW" => Some(WrapAlgorithm::A256Kw),
            _ => None,
        }
    }

    fn sdk(self) -> EncryptionAlgorithm {
        match self {
            WrapAlgorithm::RsaOaep256 => EncryptionAlgorithm::RsaOaep256,
            WrapAlgorithm::RsaOaep => EncryptionAlgorithm::RsaOaep,
            WrapAlgorithm::A256Kw => EncryptionAlgorithm::A256Kw,
        }
    }
}

/// A parsed Azure key identifier: ours `azure-keyvault://<vault host>/keys/<name>[/<version>][?algorithm=A256KW]`,
/// or Temporal Proxy's `azurekeyvault://<vault host>/keys/<name>[/<version>][?algorithm=<alg>]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AzureKeyId {
    /// `<vault>.vault.azure.net`, `<hsm>.managedhsm.azure.net`, or a sovereign cloud's equivalent; lower case.
    pub vault_host: String,
    pub name: String,
    pub version: Option<String>,
    pub algorithm: WrapAlgorithm,
    /// Written as Temporal Proxy writes it: opened with `decrypt`, never used to wrap.
    pub proxy: bool,
}

impl AzureKeyId {
    /// Parses a KEK URI of either form; the error says what is wrong with it.
    pub fn parse(uri: &str) -> Result<AzureKeyId, &'static str> {
        let (proxy, rest) = match uri.split_once("://") {
            Some(("azure-keyvault", rest)) => (false, rest),
            Some(("azurekeyvault", rest)) => (true, rest),
            _ => return Err("not an azure-keyvault:// URI"),
        };
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        let parts: Vec<&str> = path.split('/').collect();
        let (host, name, version) = match parts.as_slice() {
            [host, "keys", name] => (*host, *name, None),
            [host, "keys", name, version] => (*host, *name, Some(*version)),
            _ => return Err("expected <vault host>/keys/<key>[/<version>]"),
        };
        let vault_host = host.to_ascii_lowercase();
        let (label, suffix) = vault_host.split_once('.').ok_or("the host must be <vault>.vault.azure.net")?;
        let label_ok = (3..=24).contains(&label.len()) && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let suffix_ok = (suffix.starts_with("vault.") || suffix.starts_with("managedhsm."))
            && suffix.split('.').count() >= 3
            && suffix.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        if !label_ok || !suffix_ok {
            return Err(
                "the host must be <vault>.vault.azure.net or <hsm>.managedhsm.azure.net (or a sovereign cloud's vault. / managedhsm. domain), with no port",
            );
        }
        if name.is_empty() || name.len() > 127 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err("the key name must be 1-127 letters, digits and '-'");
        }
        if let Some(v) = version
            && (v.is_empty() || v.len() > MAX_VERSION_LEN || !v.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err("the key version must be letters and digits (32 hex characters in Key Vault)");
        }
        let managed_hsm = suffix.starts_with("managedhsm.");
        let algorithm = match query {
            None => WrapAlgorithm::RsaOaep256,
            Some(q) => {
                let name = q.strip_prefix("algorithm=").ok_or("the only query parameter is algorithm=<alg>")?;
                let alg = WrapAlgorithm::parse(name).ok_or("algorithm must be RSA-OAEP-256, RSA-OAEP or A256KW")?;
                match (proxy, alg) {
                    (false, WrapAlgorithm::RsaOaep) => {
                        return Err(
                            "new data keys are wrapped with RSA-OAEP-256 (or A256KW on Managed HSM), not RSA-OAEP",
                        );
                    }
                    (true, WrapAlgorithm::A256Kw) => return Err("Temporal Proxy's Key Vault keys are RSA keys"),
                    (false, WrapAlgorithm::A256Kw) if !managed_hsm => {
                        return Err("A256KW needs a Managed HSM key (<hsm>.managedhsm.azure.net)");
                    }
                    _ => alg,
                }
            }
        };
        Ok(AzureKeyId { vault_host, name: name.to_owned(), version: version.map(str::to_owned), algorithm, proxy })
    }

    /// The Entra ID scope of this vault's tokens: `https://vault.azure.net/.default` for
    /// `<vault>.vault.azure.net` (the domain after the vault's name).
    pub fn scope(&self) -> String {
        let suffix = self.vault_host.split_once('.').map(|(_, s)| s).unwrap_or_default();
        format!("https://{suffix}/.default")
    }

    /// `https://<vault host>`.
    pub fn vault_url(&self) -> String {
        format!("https://{}", self.vault_host)
    }

    /// Whether a `kid` from an answer names this key (any version when `version` is `None`), and its version.
    fn version_in_kid<'a>(&self, kid: &'a str) -> Option<&'a str> {
        let rest = kid.strip_prefix("https://")?;
        let (host, path) = rest.split_once('/')?;
        let host = host.strip_suffix(":443").unwrap_or(host);
        let (name, version) = path.strip_prefix("keys/")?.split_once('/')?;
        let valid = host.eq_ignore_ascii_case(&self.vault_host)
            && name.eq_ignore_ascii_case(&self.name)
            && !version.is_empty()
            && version.len() <= MAX_VERSION_LEN
            && version.bytes().all(|b| b.is_ascii_alphanumeric());
        valid.then_some(version)
    }
}

/// Our wrapped-key bytes: `0x01 || u8 len || version || Key Vault ciphertext`.
fn encode_wrapped(version: &str, ciphertext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + version.len() + ciphertext.len());
    out.push(WRAPPED_FORMAT);
    out.push(version.len() as u8);
    out.extend_from_slice(version.as_bytes());
    out.extend_from_slice(ciphertext);
    out
}

/// Splits our wrapped-key bytes; `None` when they are not in that form.
fn decode_wrapped(wrapped: &[u8]) -> Option<(&str, &[u8])> {
    let [WRAPPED_FORMAT, len, rest @ ..] = wrapped else { return None };
    let len = usize::from(*len);
    if len == 0 || len > MAX_VERSION_LEN || rest.len() <= len {
        return None;
    }
    let (version, ciphertext) = rest.split_at(len);
    let version = std::str::from_utf8(version).ok()?;
    version.bytes().all(|b| b.is_ascii_alphanumeric()).then_some((version, ciphertext))
}

/// A credential that only hands out tokens for the Key Vault audiences of the configured vaults: a
/// challenge that asks for any other audience (e.g. Azure Resource Manager) gets nothing.
struct PinnedScopes {
    inner: Arc<dyn TokenCredential>,
    allowed: BTreeSet<String>,
}

impl std::fmt::Debug for PinnedScopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedScopes").field("allowed", &self.allowed).finish_non_exhaustive()
    }
}

#[async_trait]
impl TokenCredential for PinnedScopes {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        if scopes.is_empty() || !scopes.iter().all(|s| self.allowed.contains(*s)) {
            tracing::error!(requested = ?scopes, "A Key Vault challenge asked for a token of another audience; refused.");
            return Err(azure_core::Error::with_message(
                ErrorKind::Credential,
                "token requested for an audience other than the configured vaults'",
            ));
        }
        self.inner.get_token(scopes, options).await
    }
}

/// Maps an SDK error: refusals are final, the rest is `Unavailable`.
fn map_error(kek: &KekUri, op: &'static str, err: azure_core::Error) -> KmsError {
    let kek_s = kek.to_string();
    let refused = match err.kind() {
        ErrorKind::HttpResponse { status, .. } => match u16::from(*status) {
            401 | 403 => KmsError::AccessDenied { kek: kek_s },
            404 => KmsError::KeyNotFound { kek: kek_s },
            400 => KmsError::InvalidCiphertext,
            _ => return unavailable(op, err),
        },
        // An answer that does not parse, or a challenge the SDK refused (audience, scheme).
        ErrorKind::DataConversion | ErrorKind::Other => {
            tracing::error!(kek = %kek, op, error = %err, "Key Vault exchange refused; answer discarded.");
            return KmsError::UntrustedResponse { kek: kek_s, reason: "the Key Vault exchange was refused (see log)" };
        }
        _ => return unavailable(op, err),
    };
    tracing::warn!(kek = %kek, op, error = %err, "Key Vault refused the request.");
    refused
}

fn unavailable(op: &'static str, err: azure_core::Error) -> KmsError {
    KmsError::Unavailable { retry_after: Duration::from_secs(1), source: format!("Key Vault {op}: {err}").into() }
}

fn untrusted(kek: &KekUri, reason: &'static str) -> KmsError {
    tracing::error!(kek = %kek, reason, "Key Vault answer rejected.");
    KmsError::UntrustedResponse { kek: kek.to_string(), reason }
}

fn params(algorithm: WrapAlgorithm, value: Vec<u8>) -> azure_core::Result<RequestContent<KeyOperationParameters>> {
    KeyOperationParameters { algorithm: Some(algorithm.sdk()), value: Some(value), ..Default::default() }.try_into()
}

/// Key Vault keys, one client per vault.
pub struct AzureBackend {
    clients: HashMap<String, KeyClient>,
    keys: HashMap<String, AzureKeyId>,
}

impl AzureBackend {
    /// Builds the credential and one client per vault. Nothing is called here.
    pub fn new(config: &AzureKeyVaultConfig, keks: &[KekUri]) -> anyhow::Result<AzureBackend> {
        let mut keys = HashMap::new();
        for kek in keks {
            let id = AzureKeyId::parse(kek.as_str()).map_err(|reason| anyhow::anyhow!("{kek}: {reason}"))?;
            keys.insert(kek.as_str().to_owned(), id);
        }
        let client_options = || -> anyhow::Result<ClientOptions> {
            let mut options = ClientOptions { retry: RetryOptions::none(), ..Default::default() };
            options.transport = Some(Transport::new(Arc::new(http_client(config)?)));
            if let Some(authority) = &config.authority_host {
                let mut custom = azure_core::cloud::CustomConfiguration::default();
                custom.authority_host = authority.clone();
                options.cloud = Some(Arc::new(custom.into()));
            }
            Ok(options)
        };
        let credential = PinnedScopes {
            inner: credential(config, client_options()?)?,
            allowed: keys.values().map(AzureKeyId::scope).collect(),
        };
        let credential: Arc<dyn TokenCredential> = Arc::new(credential);
        let mut clients = HashMap::new();
        for id in keys.values() {
            if clients.contains_key(&id.vault_host) {
                continue;
            }
            let options = KeyClientOptions {
                client_options: client_options()?,
                // An endpoint override (a test fake) is not under the vault's domain, so the SDK's own
                // check cannot pass; `PinnedScopes` still refuses any audience but the vault's.
                verify_challenge_resource: Some(config.endpoint.is_none()),
                ..Default::default()
            };
            let url = config.endpoint.clone().unwrap_or_else(|| id.vault_url());
            let client = KeyClient::new(&url, credential.clone(), Some(options))
                .map_err(|e| anyhow::anyhow!("cannot create the Key Vault client for {url}: {e}"))?;
            clients.insert(id.vault_host.clone(), client);
        }
        Ok(AzureBackend { clients, keys })
    }

    fn key(&self, kek: &KekUri) -> Result<(&AzureKeyId, &KeyClient), KmsError> {
        let not_found = || KmsError::KeyNotFound { kek: kek.to_string() };
        let id = self.keys.get(kek.as_str()).ok_or_else(not_found)?;
        let client = self.clients.get(&id.vault_host).ok_or_else(not_found)?;
        Ok((id, client))
    }
}

/// The HTTP client under the SDK: the tree's reqwest on rustls/aws-lc, plus `ca_file` when set.
fn http_client(config: &AzureKeyVaultConfig) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().connect_timeout(config.call_timeout);
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).map_err(|e| anyhow::anyhow!("ca_file {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| anyhow::anyhow!("ca_file {}: not PEM certificates: {e}", path.display()))?;
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().map_err(|e| anyhow::anyhow!("cannot build the Key Vault HTTP client: {e}"))
}

/// The configured identity (or the one the environment names, see `AzureCredentialKind`).
fn credential(config: &AzureKeyVaultConfig, options: ClientOptions) -> anyhow::Result<Arc<dyn TokenCredential>> {
    let kind = config.credential_kind(|name| std::env::var_os(name).is_some());
    let built: azure_core::Result<Arc<dyn TokenCredential>> = match kind {
        AzureCredentialKind::WorkloadIdentity => {
            WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                credential_options: ClientAssertionCredentialOptions { client_options: options },
                client_id: config.client_id.clone(),
                tenant_id: config.tenant_id.clone(),
                token_file_path: config.federated_token_file.clone(),
            }))
            .map(|c| c as Arc<dyn TokenCredential>)
        }
        AzureCredentialKind::ManagedIdentity => {
            ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: config.client_id.clone().map(UserAssignedId::ClientId),
                client_options: options,
            }))
            .map(|c| c as Arc<dyn TokenCredential>)
        }
        AzureCredentialKind::ClientSecret => {
            let (Some(tenant), Some(client), Some(secret)) =
                (&config.tenant_id, &config.client_id, &config.client_secret)
            else {
                anyhow::bail!("credential = \"client-secret\" needs tenant_id, client_id and client_secret");
            };
            ClientSecretCredential::new(
                tenant,
                client.clone(),
                AzureSecret::new(secret.expose().to_owned()),
                Some(ClientSecretCredentialOptions { client_options: options }),
            )
            .map(|c| c as Arc<dyn TokenCredential>)
        }
    };
    built.map_err(|e| anyhow::anyhow!("cannot create the {} credential: {e}", kind.as_str()))
}

#[async_trait]
impl KmsBackend for AzureBackend {
    fn provider(&self) -> Provider {
        Provider::AzureKeyVault
    }

    /// `wrapKey` on the configured (or latest) version; Key Vault binds no context (see the module doc).
    async fn wrap(&self, kek: &KekUri, dek: &DataKey, _ctx: &KmsContext) -> Result<WrappedKey, KmsError> {
        let (id, client) = self.key(kek)?;
        if id.proxy {
            return Err(KmsError::KeyNotFound { kek: format!("{kek} only opens Temporal Proxy payloads") });
        }
        let body = params(id.algorithm, dek.expose().to_vec()).map_err(|e| unavailable("WrapKey", e))?;
        let options = KeyClientWrapKeyOptions { key_version: id.version.clone(), ..Default::default() };
        let result = client
            .wrap_key(&id.name, body, Some(options))
            .await
            .map_err(|e| map_error(kek, "WrapKey", e))?
            .into_model()
            .map_err(|e| map_error(kek, "WrapKey", e))?;
        let version = result
            .kid
            .as_deref()
            .and_then(|kid| id.version_in_kid(kid))
            .ok_or_else(|| untrusted(kek, "the answer names another key"))?;
        if id.version.as_deref().is_some_and(|pinned| pinned != version) {
            return Err(untrusted(kek, "the answer names another version than the configured one"));
        }
        match result.result {
            Some(ciphertext) if !ciphertext.is_empty() => Ok(WrappedKey(encode_wrapped(version, &ciphertext))),
            _ => Err(untrusted(kek, "no wrapped key in the answer")),
        }
    }

    async fn unwrap(&self, kek: &KekUri, wrapped: &WrappedKey, _ctx: &KmsContext) -> Result<DataKey, KmsError> {
        let (id, client) = self.key(kek)?;
        let (version, result) = if id.proxy {
            // Go CDK sealed with `encrypt` on the URI's version (latest when none) and recorded nothing
            // else; `decrypt` is its inverse and the permission the proxy's key grants.
            let version = id.version.clone().unwrap_or_default();
            let body = params(id.algorithm, wrapped.0.clone()).map_err(|e| unavailable("Decrypt", e))?;
            let result = client
                .decrypt(&id.name, &version, body, None::<KeyClientDecryptOptions<'_>>)
                .await
                .map_err(|e| map_error(kek, "Decrypt", e))?;
            (version, result)
        } else {
            let (version, ciphertext) = decode_wrapped(&wrapped.0).ok_or(KmsError::InvalidCiphertext)?;
            if id.version.as_deref().is_some_and(|pinned| pinned != version) {
                return Err(KmsError::InvalidCiphertext);
            }
            let body = params(id.algorithm, ciphertext.to_vec()).map_err(|e| unavailable("UnwrapKey", e))?;
            let result = client
                .unwrap_key(&id.name, version, body, None::<KeyClientUnwrapKeyOptions<'_>>)
                .await
                .map_err(|e| map_error(kek, "UnwrapKey", e))?;
            (version.to_owned(), result)
        };
        let result = result.into_model().map_err(|e| map_error(kek, "UnwrapKey", e))?;
        let plaintext = Zeroizing::new(result.result.unwrap_or_default());
        let answered = result.kid.as_deref().and_then(|kid| id.version_in_kid(kid));
        match answered {
            Some(v) if version.is_empty() || v == version => {}
            _ => return Err(untrusted(kek, "the answer names another key or version")),
        }
        DataKey::from_slice(&plaintext).ok_or_else(|| untrusted(kek, "the plaintext is not a 32-byte key"))
    }

    /// Every configured key can be read and is enabled.
    async fn health_check(&self) -> Result<(), KmsError> {
        for (uri, id) in &self.keys {
            let kek = KekUri::parse(uri).map_err(|_| KmsError::KeyNotFound { kek: uri.clone() })?;
            let client = self.clients.get(&id.vault_host).ok_or(KmsError::KeyNotFound { kek: uri.clone() })?;
            let options = KeyClientGetKeyOptions { key_version: id.version.clone(), ..Default::default() };
            let key = client
                .get_key(&id.name, Some(options))
                .await
                .map_err(|e| map_error(&kek, "GetKey", e))?
                .into_model()
                .map_err(|e| map_error(&kek, "GetKey", e))?;
            if key.attributes.and_then(|a| a.enabled) == Some(false) {
                return Err(KmsError::KeyDisabled { kek: uri.clone() });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_our_uris_and_the_proxys() {
        let ours = AzureKeyId::parse("azure-keyvault://Codec-Prod.vault.azure.net/keys/payments").unwrap();
        assert_eq!(
            (ours.vault_host.as_str(), ours.name.as_str(), ours.version.as_deref(), ours.algorithm, ours.proxy),
            ("codec-prod.vault.azure.net", "payments", None, WrapAlgorithm::RsaOaep256, false)
        );
        assert_eq!(ours.scope(), "https://vault.azure.net/.default");
        let hsm =
            AzureKeyId::parse("azure-keyvault://hsm1.managedhsm.azure.net/keys/k/0123abcd?algorithm=A256KW").unwrap();
        assert_eq!((hsm.algorithm, hsm.version.as_deref()), (WrapAlgorithm::A256Kw, Some("0123abcd")));
        assert_eq!(hsm.scope(), "https://managedhsm.azure.net/.default");
        let cn = AzureKeyId::parse("azure-keyvault://v01.vault.azure.cn/keys/k").unwrap();
        assert_eq!(cn.scope(), "https://vault.azure.cn/.default");
        let proxy = AzureKeyId::parse("azurekeyvault://vault.vault.azure.net/keys/k/v?algorithm=RSA-OAEP").unwrap();
        assert_eq!((proxy.proxy, proxy.algorithm), (true, WrapAlgorithm::RsaOaep));
    }

    #[test]
    fn refuses_malformed_uris() {
        for bad in [
            "azure-keyvault://vault.azure.net/keys/k",
            "azure-keyvault://v01.example.com/keys/k",
            "azure-keyvault://v01.vault.azure.net:8443/keys/k",
            "azure-keyvault://v01.vault.azure.net/secrets/k",
            "azure-keyvault://v01.vault.azure.net/keys/",
            "azure-keyvault://v01.vault.azure.net/keys/k/v/x",
            "azure-keyvault://v01.vault.azure.net/keys/k_1",
            "azure-keyvault://v01.vault.azure.net/keys/k/v-1",
            "azure-keyvault://v01.vault.azure.net/keys/k?algorithm=A256KW",
            "azure-keyvault://v01.vault.azure.net/keys/k?algorithm=RSA1_5",
            "azure-keyvault://v01.vault.azure.net/keys/k?algorithm=RSA-OAEP",
            "azure-keyvault://v01.vault.azure.net/keys/k?x=1",
            "azure-keyvault://a@v01.vault.azure.net/keys/k",
        ] {
            assert!(AzureKeyId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_answer_must_name_the_configured_key() {
        let id = AzureKeyId::parse("azure-keyvault://v01.vault.azure.net/keys/payments").unwrap();
        assert_eq!(id.version_in_kid("https://v01.vault.azure.net/keys/payments/abc123"), Some("abc123"));
        assert_eq!(id.version_in_kid("https://V01.vault.azure.net:443/keys/Payments/abc123"), Some("abc123"));
        for other in [
            "https://v02.vault.azure.net/keys/payments/abc123",
            "https://v01.vault.azure.net/keys/payments2/abc123",
            "https://v01.vault.azure.net/keys/payments/",
            "https://v01.vault.azure.net/keys/payments",
            "https://v01.vault.azure.net/keys/payments/abc/def",
            "http://v01.vault.azure.net/keys/payments/abc123",
            "https://v01.vault.azure.net.attacker.example/keys/payments/abc123",
        ] {
            assert_eq!(id.version_in_kid(other), None, "{other}");
        }
    }

    #[test]
    fn the_credential_follows_the_configuration_then_the_environment() {
        let mut config = AzureKeyVaultConfig::default();
        let aks = |name: &str| name == "AZURE_FEDERATED_TOKEN_FILE";
        assert_eq!(config.credential_kind(|_| false), AzureCredentialKind::ManagedIdentity);
        assert_eq!(config.credential_kind(aks), AzureCredentialKind::WorkloadIdentity);
        config.client_secret = Some(crate::secret::Secret::new("s"));
        assert_eq!(config.credential_kind(aks), AzureCredentialKind::ClientSecret);
        config.credential = Some(AzureCredentialKind::ManagedIdentity);
        assert_eq!(config.credential_kind(aks), AzureCredentialKind::ManagedIdentity);
    }

    #[test]
    fn wrapped_keys_carry_their_version() {
        let wrapped = encode_wrapped("0123abcd", &[7; 256]);
        assert_eq!(decode_wrapped(&wrapped), Some(("0123abcd", &[7u8; 256][..])));
        for bad in [&[][..], &[2, 1, b'a', 0][..], &[1, 0, 0][..], &[1, 3, b'a', b'b', b'c'][..], &[1, 1, b'-', 0][..]]
        {
            assert_eq!(decode_wrapped(bad), None, "{bad:?}");
        }
    }
}
