//! `VaultBackend`, the `KmsBackend` for `vault-transit://` KEKs: building the client from `[kms.vault]`,
//! binding the KMS context to each call, and checking a key before Transit's `encrypt` touches it.
//!
//! What must stay true:
//! - `new` makes no network call and lets no `VAULT_*` environment variable override the config.
//! - `wrap` never reaches `encrypt/<key>` for a key not read and found usable within the last
//!   `KEY_CHECK_TTL` (`check_key`): Transit's `encrypt` would create a missing key, so a key deleted in
//!   Vault must not come back silently as new key material.
//! - A key serves only the binding the config names: associated-data needs a non-derived AEAD key,
//!   derivation-context a key created with `derived=true`; anything else is refused, never downgraded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use zeroize::Zeroizing;

use super::api::{self, KeyInfo, ciphertext, data_key};
use super::auth::{self, TokenStats, Tokens};
use super::{VaultBinding, VaultKmsConfig, mount_and_key};
use crate::kms::{DataKey, KekUri, KmsBackend, KmsContext, KmsError, Provider, WrappedKey};

/// Transit key types whose encryption takes `associated_data`.
const AEAD_KEY_TYPES: [&str; 4] = ["aes128-gcm96", "aes256-gcm96", "chacha20-poly1305", "xchacha20-poly1305"];

/// How long a key read stays trusted before `wrap` reads it again. `wrap` runs once per new data key
/// (every few minutes per namespace), so this costs one extra read per wrap at most.
const KEY_CHECK_TTL: Duration = Duration::from_secs(60);

/// Vault Transit KEKs. Dropping it stops its token-renewal task.
pub struct VaultBackend {
    tokens: Arc<Tokens>,
    binding: VaultBinding,
    keks: Vec<KekUri>,
    /// Keys read and found usable, with when (re-read after `KEY_CHECK_TTL`).
    verified: Mutex<HashMap<String, Instant>>,
    maintainer: Option<tokio::task::AbortHandle>,
}

impl VaultBackend {
    /// A backend for `keks` (the Vault KEKs the configuration names). Makes no network call: the
    /// first use logs in (AppRole, Kubernetes); a task renews the token in the background.
    pub fn new(config: &VaultKmsConfig, keks: Vec<KekUri>) -> anyhow::Result<VaultBackend> {
        let ca_certs = config.ca_bundle.iter().map(|p| p.display().to_string()).collect();
        let mut settings = VaultClientSettingsBuilder::default();
        // Every setting explicit: VAULT_* environment variables must not change what the config says.
        settings
            .address(config.address.trim_end_matches('/'))
            .token("")
            .verify(true)
            .ca_certs(ca_certs)
            .identity(None)
            .timeout(Some(config.call_timeout));
        if let Some(namespace) = &config.namespace {
            settings.set_namespace(namespace.clone());
        }
        let settings = settings.build().map_err(|e| anyhow::anyhow!("kms.vault: {e}"))?;
        let base = VaultClient::new(settings).map_err(|e| anyhow::anyhow!("kms.vault: {e}"))?;
        let tokens = Arc::new(Tokens::new(base, &config.auth));
        let maintainer = tokio::runtime::Handle::try_current()
            .ok()
            .map(|runtime| runtime.spawn(auth::maintain(tokens.clone())).abort_handle());
        Ok(VaultBackend { tokens, binding: config.binding, keks, verified: Mutex::new(HashMap::new()), maintainer })
    }

    /// Logins and renewals so far.
    pub fn token_stats(&self) -> TokenStats {
        self.tokens.stats()
    }

    /// The KMS context as Vault takes it: base64 of the canonical JSON, in the configured field.
    fn binding(&self, ctx: &KmsContext) -> (Option<String>, Option<String>) {
        let encoded = STANDARD.encode(ctx.canonical_json());
        match self.binding {
            VaultBinding::AssociatedData => (Some(encoded), None),
            VaultBinding::DerivationContext => (None, Some(encoded)),
        }
    }

    /// Reads the key's metadata and checks that it can serve this binding. Never creates anything.
    async fn check_key(&self, kek: &KekUri) -> Result<(), KmsError> {
        let (mount, key) = parts(kek)?;
        let info: KeyInfo = self.tokens.call(kek, |c| api::read_key(c, mount, key)).await?;
        let usable = info.supports_encryption
            && match self.binding {
                VaultBinding::AssociatedData => !info.derived && AEAD_KEY_TYPES.contains(&info.key_type.as_str()),
                VaultBinding::DerivationContext => info.derived,
            };
        if !usable {
            tracing::error!(
                %kek, key_type = %info.key_type, derived = info.derived, binding = ?self.binding,
                "Vault key cannot bind the namespace this way: associated-data needs a non-derived AEAD key \
                 (aes256-gcm96), derivation-context a key created with derived=true."
            );
            return Err(KmsError::KeyDisabled { kek: kek.to_string() });
        }
        self.verified.lock().unwrap_or_else(|e| e.into_inner()).insert(kek.as_str().to_owned(), Instant::now());
        Ok(())
    }

    fn is_verified(&self, kek: &KekUri) -> bool {
        let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        verified.get(kek.as_str()).is_some_and(|at| at.elapsed() < KEY_CHECK_TTL)
    }
}

impl Drop for VaultBackend {
    fn drop(&mut self) {
        if let Some(task) = &self.maintainer {
            task.abort();
        }
    }
}

fn parts(kek: &KekUri) -> Result<(&str, &str), KmsError> {
    mount_and_key(kek).ok_or_else(|| KmsError::KeyNotFound { kek: kek.to_string() })
}

#[async_trait]
impl KmsBackend for VaultBackend {
    fn provider(&self) -> Provider {
        Provider::VaultTransit
    }

    async fn wrap(&self, kek: &KekUri, dek: &DataKey, ctx: &KmsContext) -> Result<WrappedKey, KmsError> {
        let (mount, key) = parts(kek)?;
        // Transit's encrypt would create a missing key: make sure it exists first.
        if !self.is_verified(kek) {
            self.check_key(kek).await?;
        }
        let plaintext = Zeroizing::new(STANDARD.encode(dek.expose()));
        let (associated_data, context) = self.binding(ctx);
        let response = self
            .tokens
            .call(kek, |c| api::encrypt(c, mount, key, &plaintext, associated_data.clone(), context.clone()))
            .await?;
        let wrapped = WrappedKey(response.ciphertext.into_bytes());
        ciphertext(&wrapped)?;
        Ok(wrapped)
    }

    async fn unwrap(&self, kek: &KekUri, wrapped: &WrappedKey, ctx: &KmsContext) -> Result<DataKey, KmsError> {
        let (mount, key) = parts(kek)?;
        let ciphertext = ciphertext(wrapped)?;
        let (associated_data, context) = self.binding(ctx);
        let response = self
            .tokens
            .call(kek, |c| api::decrypt(c, mount, key, ciphertext, associated_data.clone(), context.clone()))
            .await?;
        let plaintext = Zeroizing::new(response.plaintext);
        data_key(kek, &plaintext)
    }

    async fn generate_data_key(&self, kek: &KekUri, ctx: &KmsContext) -> Result<(DataKey, WrappedKey), KmsError> {
        let (mount, key) = parts(kek)?;
        let (associated_data, context) = self.binding(ctx);
        let body = serde_json::json!({ "bits": 256, "associated_data": associated_data, "context": context });
        let response = self.tokens.call(kek, |c| api::datakey_plaintext(c, mount, key, body.clone())).await?;
        let plaintext = Zeroizing::new(response.plaintext.unwrap_or_default());
        let dek = data_key(kek, &plaintext)?;
        let wrapped = WrappedKey(response.ciphertext.into_bytes());
        ciphertext(&wrapped)?;
        Ok((dek, wrapped))
    }

    async fn health_check(&self) -> Result<(), KmsError> {
        for kek in &self.keks {
            self.check_key(kek).await?;
        }
        Ok(())
    }
}
