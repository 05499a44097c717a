//! The `vault-transit` backend: KEKs in HashiCorp Vault's (or OpenBao's) Transit secrets engine.
//!
//! KEK URI: `vault-transit://<mount>/<key>` (the mount may contain `/`; the key is the last segment).
//! Address, namespace, CA bundle and authentication come from `[kms.vault]`. New data keys come from
//! `datakey/plaintext/<key>`, extra primary KEKs wrap with `encrypt/<key>`, and `decrypt/<key>` unwraps —
//! all with the KMS context `{"codec":"tce-v1","namespace":"<ns>"}` as `associated_data` (AEAD keys such
//! as `aes256-gcm96`) or as the derivation `context` (keys created with `derived=true`), per config.
//!
//! What must stay true:
//! - No key is ever created here. `datakey` and `decrypt` never create keys, but Transit's `encrypt`
//!   creates a missing key when the token may (`create` capability), so before the first `encrypt`
//!   with a key we read the key and refuse when it does not exist.
//! - The token is renewed before its TTL runs out, and a new one is obtained by logging in again
//!   (AppRole, Kubernetes) when it cannot be renewed any further or Vault refuses it.
//! - Nothing from a response body (keys, tokens) reaches a log or an error message; Vault's own error
//!   strings (e.g. "permission denied") are logged, never returned to clients.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use super::KekUri;
use crate::config::Secret;

/// `[kms.vault]`: where Vault is and how to log in.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VaultKmsConfig {
    /// `https://vault.example.com:8200` (plain `http://` only for tests and local development).
    pub address: String,
    /// Vault Enterprise / OpenBao namespace, sent as `X-Vault-Namespace` on every request.
    #[serde(default)]
    pub namespace: Option<String>,
    /// PEM file with the CA certificate(s) that signed Vault's TLS certificate (added to the system roots).
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
    /// How the namespace context is bound to each wrapped key.
    #[serde(default)]
    pub binding: VaultBinding,
    /// Deadline of one call to Vault (connect + response); each retry gets a fresh one.
    #[serde(default = "default_call_timeout", with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Retries after throttling, 5xx and timeouts (0 to 5).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    pub auth: VaultAuthConfig,
}

fn default_call_timeout() -> Duration {
    crate::config::DEFAULT_KMS_CALL_TIMEOUT
}

fn default_max_retries() -> u32 {
    crate::config::DEFAULT_KMS_MAX_RETRIES
}

/// How the KMS context reaches Vault.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum VaultBinding {
    /// `associated_data` (AAD) of an AEAD key (`aes256-gcm96`, `chacha20-poly1305`, …). The default.
    #[default]
    AssociatedData,
    /// Key-derivation `context` of a key created with `derived=true`.
    DerivationContext,
}

/// How the server obtains its Vault token.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "method", rename_all = "kebab-case", deny_unknown_fields)]
pub enum VaultAuthConfig {
    /// A token given in the config (renewed while renewable; it cannot be replaced when it expires).
    Token { token: Secret },
    /// AppRole: `role_id` + `secret_id` (e.g. `CODEC_KMS__VAULT__AUTH__SECRET_ID_FILE=/run/secrets/…`).
    Approle {
        #[serde(default = "default_approle_mount")]
        mount: String,
        role_id: String,
        secret_id: Secret,
    },
    /// Kubernetes: the pod's service-account JWT, read again at every login (projected tokens rotate).
    Kubernetes {
        #[serde(default = "default_kubernetes_mount")]
        mount: String,
        role: String,
        #[serde(default = "default_jwt_file")]
        jwt_file: PathBuf,
    },
}

fn default_approle_mount() -> String {
    "approle".into()
}

fn default_kubernetes_mount() -> String {
    "kubernetes".into()
}

fn default_jwt_file() -> PathBuf {
    PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/token")
}

/// Splits `vault-transit://<mount>/<key>` into mount and key; `None` when malformed.
pub fn mount_and_key(kek: &KekUri) -> Option<(&str, &str)> {
    let (mount, key) = kek.key_part().rsplit_once('/')?;
    let name_ok = |s: &str| {
        !s.is_empty() && s != "." && s != ".." && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
    };
    (mount.split('/').all(name_ok) && name_ok(key)).then_some((mount, key))
}

/// Checks a `vault-transit://` KEK and the `[kms.vault]` section it needs (config validation; no network).
pub fn validate(kek: &KekUri, config: Option<&VaultKmsConfig>) -> anyhow::Result<()> {
    if mount_and_key(kek).is_none() {
        bail!(
            "{kek}: a Vault Transit KEK is vault-transit://<mount>/<key>, e.g. vault-transit://transit/payments \
             (letters, digits, '-', '_', '.', '@')"
        );
    }
    if !cfg!(feature = "vault-transit") {
        bail!("{kek}: this build has no Vault Transit support; rebuild with the `vault-transit` Cargo feature");
    }
    let Some(config) = config else {
        bail!(
            "{kek} needs a [kms.vault] section: address = \"https://vault.example.com:8200\" and \
             [kms.vault.auth] with method = \"token\", \"approle\" or \"kubernetes\" (see config/vault.toml)"
        );
    };
    let url = reqwest::Url::parse(&config.address).ok();
    if !url.is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host()) {
        bail!("kms.vault.address `{}` must look like https://vault.example.com:8200", config.address);
    }
    if config.namespace.as_deref().is_some_and(|ns| ns.trim().is_empty()) {
        bail!("kms.vault.namespace is empty: remove it, or name the Vault namespace (e.g. \"admin/payments\")");
    }
    if let Some(path) = &config.ca_bundle
        && !path.is_file()
    {
        bail!("kms.vault.ca_bundle {} does not exist; point it at the PEM file of Vault's CA", path.display());
    }
    if config.call_timeout.is_zero() || config.max_retries > 5 {
        bail!("[kms.vault]: call_timeout must be greater than zero and max_retries at most 5");
    }
    match &config.auth {
        VaultAuthConfig::Token { token } if token.expose().trim().is_empty() => {
            bail!("kms.vault.auth.token is empty; set it, or CODEC_KMS__VAULT__AUTH__TOKEN_FILE to a file holding it")
        }
        VaultAuthConfig::Approle { role_id, secret_id, .. }
            if role_id.trim().is_empty() || secret_id.expose().trim().is_empty() =>
        {
            bail!(
                "kms.vault.auth (approle) needs role_id and secret_id (CODEC_KMS__VAULT__AUTH__SECRET_ID_FILE reads \
                 the secret id from a file)"
            )
        }
        VaultAuthConfig::Kubernetes { role, .. } if role.trim().is_empty() => {
            bail!("kms.vault.auth (kubernetes) needs `role`: the Vault role bound to this service account")
        }
        _ => {}
    }
    Ok(())
}

#[cfg(feature = "vault-transit")]
pub use backend::{TokenStats, VaultBackend};

#[cfg(feature = "vault-transit")]
mod backend {
    use std::collections::HashSet;
    use std::future::Future;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, RwLock};
    use std::time::Duration;

    use async_trait::async_trait;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use rustify::clients::reqwest::Client as HttpClient;
    use rustify::endpoint::Endpoint;
    use rustify::enums::{RequestMethod, RequestType, ResponseType};
    use serde::Deserialize;
    use tokio::time::Instant;
    use vaultrs::api::EndpointMiddleware;
    use vaultrs::api::transit::requests::{DecryptDataRequest, EncryptDataRequest};
    use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
    use vaultrs::error::ClientError;
    use zeroize::Zeroizing;

    use super::{VaultAuthConfig, VaultBinding, VaultKmsConfig, mount_and_key};
    use crate::kms::{BoxError, DataKey, KekUri, KmsBackend, KmsContext, KmsError, Provider, WrappedKey};

    /// Retry-After suggested when Vault cannot answer (down, sealed, overloaded).
    const RETRY_AFTER: Duration = Duration::from_secs(1);
    /// A token is renewed (or replaced) when this fraction of its TTL has passed.
    const RENEW_AT: f64 = 2.0 / 3.0;
    /// Longest wait between two failed login or renewal attempts.
    const MAX_BACKOFF: Duration = Duration::from_secs(30);
    /// Transit key types whose encryption takes `associated_data`.
    const AEAD_KEY_TYPES: [&str; 4] = ["aes128-gcm96", "aes256-gcm96", "chacha20-poly1305", "xchacha20-poly1305"];

    /// Token logins and renewals so far (tests and metrics).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct TokenStats {
        pub logins: u64,
        pub renewals: u64,
    }

    /// Vault Transit KEKs. Dropping it stops its token-renewal task.
    pub struct VaultBackend {
        inner: Arc<Inner>,
        maintainer: Option<tokio::task::AbortHandle>,
    }

    enum Login {
        /// A fixed token: renewed while possible, never replaced.
        Fixed,
        AppRole {
            mount: String,
            role_id: String,
            secret_id: crate::config::Secret,
        },
        Kubernetes {
            mount: String,
            role: String,
            jwt_file: std::path::PathBuf,
        },
    }

    /// One token and the client that sends it.
    struct Session {
        client: Arc<VaultClient>,
        generation: u64,
        obtained: Instant,
        /// `None` until a fixed token has been looked up; `Some(ZERO)` never expires.
        ttl: Option<Duration>,
        renewable: bool,
        /// The last renewal gave less than the first TTL: the token nears its max TTL.
        capped: bool,
        first_ttl: Duration,
    }

    impl Session {
        fn expired(&self) -> bool {
            matches!(self.ttl, Some(ttl) if !ttl.is_zero() && self.obtained.elapsed() >= ttl)
        }

        fn due(&self) -> Option<Instant> {
            let ttl = self.ttl?;
            (!ttl.is_zero()).then(|| self.obtained + ttl.mul_f64(RENEW_AT))
        }
    }

    /// What the maintenance task does next.
    enum Action {
        LookUp,
        Renew(Instant),
        Relogin(Instant),
        WaitForLogin,
        Nothing,
    }

    struct Inner {
        /// Client without a token: logins, and the template for token clients.
        base: VaultClient,
        login: Login,
        binding: VaultBinding,
        keks: Vec<KekUri>,
        session: RwLock<Option<Arc<Session>>>,
        login_lock: tokio::sync::Mutex<()>,
        changed: tokio::sync::Notify,
        /// Keys read and found to exist (checked once before the first `encrypt`).
        verified: Mutex<HashSet<String>>,
        logins: AtomicU64,
        renewals: AtomicU64,
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
            let (login, session) = match &config.auth {
                VaultAuthConfig::Token { token } => {
                    let client = with_token(&base, token.expose().trim());
                    let session = Session {
                        client: Arc::new(client),
                        generation: 1,
                        obtained: Instant::now(),
                        ttl: None,
                        renewable: false,
                        capped: false,
                        first_ttl: Duration::ZERO,
                    };
                    (Login::Fixed, Some(Arc::new(session)))
                }
                VaultAuthConfig::Approle { mount, role_id, secret_id } => (
                    Login::AppRole { mount: mount.clone(), role_id: role_id.clone(), secret_id: secret_id.clone() },
                    None,
                ),
                VaultAuthConfig::Kubernetes { mount, role, jwt_file } => {
                    (Login::Kubernetes { mount: mount.clone(), role: role.clone(), jwt_file: jwt_file.clone() }, None)
                }
            };
            let inner = Arc::new(Inner {
                base,
                login,
                binding: config.binding,
                keks,
                session: RwLock::new(session),
                login_lock: tokio::sync::Mutex::new(()),
                changed: tokio::sync::Notify::new(),
                verified: Mutex::new(HashSet::new()),
                logins: AtomicU64::new(0),
                renewals: AtomicU64::new(0),
            });
            let maintainer = tokio::runtime::Handle::try_current()
                .ok()
                .map(|runtime| runtime.spawn(maintain(inner.clone())).abort_handle());
            Ok(VaultBackend { inner, maintainer })
        }

        /// Logins and renewals so far.
        pub fn token_stats(&self) -> TokenStats {
            TokenStats {
                logins: self.inner.logins.load(Ordering::Relaxed),
                renewals: self.inner.renewals.load(Ordering::Relaxed),
            }
        }
    }

    impl Drop for VaultBackend {
        fn drop(&mut self) {
            if let Some(task) = &self.maintainer {
                task.abort();
            }
        }
    }

    /// A client like `base` that sends `token`; shares its connection pool.
    fn with_token(base: &VaultClient, token: &str) -> VaultClient {
        let mut settings = base.settings.clone();
        settings.token = token.to_owned();
        VaultClient {
            http: HttpClient::new(&base.http.base, base.http.http.clone()),
            middle: EndpointMiddleware { token: token.to_owned(), ..base.middle.clone() },
            settings,
        }
    }

    /// Keeps the token alive: renews at 2/3 of its TTL, logs in again when it cannot be renewed.
    async fn maintain(inner: Arc<Inner>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let changed = inner.changed.notified();
            let ok = match inner.next_action() {
                Action::Nothing => return,
                Action::WaitForLogin => {
                    changed.await;
                    continue;
                }
                Action::LookUp => inner.look_up().await,
                Action::Renew(at) | Action::Relogin(at) if at > Instant::now() => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = changed => {}
                    }
                    continue;
                }
                Action::Renew(_) => inner.renew().await,
                Action::Relogin(_) => {
                    let stale = inner.current().map(|s| s.generation);
                    inner.login(stale).await.is_ok()
                }
            };
            if ok {
                backoff = Duration::from_secs(1);
            } else {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    impl Inner {
        fn current(&self) -> Option<Arc<Session>> {
            self.session.read().unwrap_or_else(|e| e.into_inner()).clone()
        }

        fn store(&self, session: Session) -> Arc<Session> {
            let session = Arc::new(session);
            *self.session.write().unwrap_or_else(|e| e.into_inner()) = Some(session.clone());
            self.changed.notify_one();
            session
        }

        fn can_login(&self) -> bool {
            !matches!(self.login, Login::Fixed)
        }

        fn next_action(&self) -> Action {
            let Some(session) = self.current() else {
                return if self.can_login() { Action::WaitForLogin } else { Action::Nothing };
            };
            if session.ttl.is_none() {
                return Action::LookUp;
            }
            let Some(due) = session.due() else { return Action::Nothing };
            match (self.can_login(), session.renewable && !session.capped) {
                (true, true) => Action::Renew(due),
                (true, false) => Action::Relogin(due),
                (false, true) => Action::Renew(due),
                // A fixed token that cannot be renewed expires; nothing we can do but say so (once).
                (false, false) => Action::Nothing,
            }
        }

        /// Learns a fixed token's TTL (`lookup-self`).
        async fn look_up(&self) -> bool {
            let Some(session) = self.current() else { return false };
            match vaultrs::token::lookup_self(&*session.client).await {
                Ok(info) => {
                    let ttl = Duration::from_secs(info.ttl);
                    let renewable = info.renewable.unwrap_or(false);
                    if !ttl.is_zero() && !renewable {
                        tracing::warn!(
                            ttl_secs = info.ttl,
                            "The configured Vault token is not renewable and will expire; use AppRole or Kubernetes auth."
                        );
                    }
                    self.store(Session {
                        client: session.client.clone(),
                        generation: session.generation,
                        obtained: Instant::now(),
                        ttl: Some(ttl),
                        renewable,
                        capped: false,
                        first_ttl: ttl,
                    });
                    true
                }
                Err(e) => {
                    tracing::warn!(error = %describe(&e), "Vault token lookup failed; retrying.");
                    false
                }
            }
        }

        /// Renews the current token; on failure, logs in again when a login method is configured.
        async fn renew(&self) -> bool {
            let Some(session) = self.current() else { return false };
            match vaultrs::token::renew_self(&*session.client, None).await {
                Ok(auth) => {
                    self.renewals.fetch_add(1, Ordering::Relaxed);
                    let ttl = Duration::from_secs(auth.lease_duration);
                    tracing::debug!(ttl_secs = auth.lease_duration, "Renewed the Vault token.");
                    if ttl < session.first_ttl && self.can_login() {
                        // Capped by the max TTL: a new login now, while the token still works.
                        tracing::debug!("The Vault token nears its max TTL; logging in again.");
                        return self.login(Some(session.generation)).await.is_ok();
                    }
                    self.store(Session {
                        client: session.client.clone(),
                        generation: session.generation,
                        obtained: Instant::now(),
                        ttl: Some(ttl),
                        renewable: auth.renewable,
                        capped: ttl < session.first_ttl,
                        first_ttl: session.first_ttl,
                    });
                    true
                }
                Err(e) if self.can_login() => {
                    tracing::info!(error = %describe(&e), "Vault token renewal failed; logging in again.");
                    self.login(Some(session.generation)).await.is_ok()
                }
                Err(e) => {
                    tracing::warn!(error = %describe(&e), "Vault token renewal failed; retrying.");
                    false
                }
            }
        }

        /// Logs in, unless someone else replaced the session `stale` (or there was none) meanwhile.
        async fn login(&self, stale: Option<u64>) -> Result<Arc<Session>, KmsError> {
            let _one_at_a_time = self.login_lock.lock().await;
            if let Some(current) = self.current()
                && Some(current.generation) != stale
                && !current.expired()
            {
                return Ok(current);
            }
            let result = match &self.login {
                Login::Fixed => return Err(KmsError::AccessDenied { kek: "vault-transit (token expired)".into() }),
                Login::AppRole { mount, role_id, secret_id } => {
                    vaultrs::auth::approle::login(&self.base, mount, role_id, secret_id.expose()).await
                }
                Login::Kubernetes { mount, role, jwt_file } => {
                    let jwt = tokio::fs::read_to_string(jwt_file).await.map(Zeroizing::new).map_err(|e| {
                        tracing::error!(path = %jwt_file.display(), error = %e, "Cannot read the Kubernetes service-account token.");
                        KmsError::AccessDenied { kek: "vault-transit (kubernetes login)".into() }
                    })?;
                    vaultrs::auth::kubernetes::login(&self.base, mount, role, jwt.trim()).await
                }
            };
            let auth = result.map_err(|e| {
                tracing::warn!(error = %describe(&e), "Vault login failed.");
                match status(&e) {
                    Some(400 | 401 | 403) => KmsError::AccessDenied { kek: "vault-transit (login)".into() },
                    _ => unavailable(e),
                }
            })?;
            self.logins.fetch_add(1, Ordering::Relaxed);
            let ttl = Duration::from_secs(auth.lease_duration);
            tracing::info!(ttl_secs = auth.lease_duration, renewable = auth.renewable, "Logged in to Vault.");
            let generation = self.current().map_or(0, |s| s.generation) + 1;
            Ok(self.store(Session {
                client: Arc::new(with_token(&self.base, &auth.client_token)),
                generation,
                obtained: Instant::now(),
                ttl: Some(ttl),
                renewable: auth.renewable,
                capped: false,
                first_ttl: ttl,
            }))
        }

        /// A session whose token should still be valid (logging in first when needed).
        async fn session_for_call(&self) -> Result<Arc<Session>, KmsError> {
            match self.current() {
                Some(session) if !(session.expired() && self.can_login()) => Ok(session),
                stale => self.login(stale.map(|s| s.generation)).await,
            }
        }

        /// Runs `call` with the current token; when Vault refuses the token, logs in again and retries once.
        async fn call<T, F, Fut>(&self, kek: &KekUri, call: F) -> Result<T, KmsError>
        where
            F: Fn(Arc<VaultClient>) -> Fut,
            Fut: Future<Output = Result<T, ClientError>>,
        {
            let session = self.session_for_call().await?;
            match call(session.client.clone()).await {
                Ok(value) => Ok(value),
                // Revoked, used up or expired early: one new login (shared by concurrent callers), one retry.
                Err(e) if status(&e) == Some(403) && self.can_login() => {
                    tracing::info!(%kek, "Vault refused the token; logging in again.");
                    let session = self.login(Some(session.generation)).await?;
                    call(session.client.clone()).await.map_err(|e| map_error(kek, e))
                }
                Err(e) => Err(map_error(kek, e)),
            }
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
            let info: KeyInfo = self
                .call(kek, |c| {
                    let endpoint = ReadKey { mount: mount.to_owned(), name: key.to_owned() };
                    async move { vaultrs::api::exec_with_result(&*c, endpoint).await }
                })
                .await?;
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
            self.verified.lock().unwrap_or_else(|e| e.into_inner()).insert(kek.as_str().to_owned());
            Ok(())
        }

        fn is_verified(&self, kek: &KekUri) -> bool {
            self.verified.lock().unwrap_or_else(|e| e.into_inner()).contains(kek.as_str())
        }
    }

    fn parts(kek: &KekUri) -> Result<(&str, &str), KmsError> {
        mount_and_key(kek).ok_or_else(|| KmsError::KeyNotFound { kek: kek.to_string() })
    }

    /// A wrapped key as Vault writes it: `vault:v<version>:<base64>`.
    fn ciphertext(wrapped: &WrappedKey) -> Result<&str, KmsError> {
        let text = std::str::from_utf8(&wrapped.0).map_err(|_| KmsError::InvalidCiphertext)?;
        let rest = text.strip_prefix("vault:v").ok_or(KmsError::InvalidCiphertext)?;
        let (version, body) = rest.split_once(':').ok_or(KmsError::InvalidCiphertext)?;
        let version_ok = !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit());
        let body_ok = !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
        (version_ok && body_ok).then_some(text).ok_or(KmsError::InvalidCiphertext)
    }

    /// 32 key bytes from Vault's base64 plaintext.
    fn data_key(kek: &KekUri, plaintext: &str) -> Result<DataKey, KmsError> {
        let bytes = Zeroizing::new(STANDARD.decode(plaintext).unwrap_or_default());
        DataKey::from_slice(&bytes).ok_or_else(|| {
            tracing::error!(%kek, "Vault returned a plaintext that is not a 32-byte key.");
            KmsError::InvalidCiphertext
        })
    }

    fn status(e: &ClientError) -> Option<u16> {
        match e {
            ClientError::APIError { code, .. } => Some(*code),
            ClientError::RestClientError { source: rustify::errors::ClientError::ServerResponseError { code, .. } } => {
                Some(*code)
            }
            _ => None,
        }
    }

    /// What went wrong, for the log: the status and Vault's error strings, or the transport failure.
    /// Never a response body.
    fn describe(e: &ClientError) -> String {
        match e {
            ClientError::APIError { code, errors } => format!("Vault answered {code}: {}", errors.join("; ")),
            ClientError::RestClientError { source } => match source {
                rustify::errors::ClientError::ServerResponseError { code, .. } => format!("Vault answered {code}"),
                rustify::errors::ClientError::RequestError { source, .. } => format!("request failed: {source:#}"),
                rustify::errors::ClientError::ResponseParseError { .. } => "unexpected response body".into(),
                other => other.to_string(),
            },
            other => other.to_string(),
        }
    }

    fn unavailable(e: ClientError) -> KmsError {
        KmsError::Unavailable { retry_after: RETRY_AFTER, source: BoxError::from(describe(&e)) }
    }

    /// Vault's answer as a `KmsError` (Vault reports most refusals as 400 with a message).
    fn map_error(kek: &KekUri, e: ClientError) -> KmsError {
        let errors = match &e {
            ClientError::APIError { errors, .. } => errors.join("; "),
            _ => String::new(),
        };
        let kek_name = kek.to_string();
        match status(&e) {
            Some(403) => {
                tracing::warn!(%kek, error = %describe(&e), "Vault denied access.");
                KmsError::AccessDenied { kek: kek_name }
            }
            Some(404) => KmsError::KeyNotFound { kek: kek_name },
            Some(400) if errors.contains("not found") => KmsError::KeyNotFound { kek: kek_name },
            Some(400) if errors.contains("disallowed by policy") => {
                tracing::warn!(
                    %kek,
                    "Vault refused to decrypt: the key version that wrapped this data key is below the key's \
                     min_decryption_version."
                );
                KmsError::KeyDisabled { kek: kek_name }
            }
            Some(400) => {
                tracing::info!(%kek, error = %describe(&e), "Vault rejected the wrapped key.");
                KmsError::InvalidCiphertext
            }
            _ => {
                tracing::warn!(%kek, error = %describe(&e), "Vault call failed.");
                unavailable(e)
            }
        }
    }

    #[async_trait]
    impl KmsBackend for VaultBackend {
        fn provider(&self) -> Provider {
            Provider::VaultTransit
        }

        async fn wrap(&self, kek: &KekUri, dek: &DataKey, ctx: &KmsContext) -> Result<WrappedKey, KmsError> {
            let (mount, key) = parts(kek)?;
            // Transit's encrypt would create a missing key: make sure it exists first.
            if !self.inner.is_verified(kek) {
                self.inner.check_key(kek).await?;
            }
            let plaintext = Zeroizing::new(STANDARD.encode(dek.expose()));
            let (associated_data, context) = self.inner.binding(ctx);
            let response = self
                .inner
                .call(kek, |c| {
                    let endpoint = EncryptDataRequest {
                        mount: mount.to_owned(),
                        name: key.to_owned(),
                        plaintext: plaintext.to_string(),
                        associated_data: associated_data.clone(),
                        context: context.clone(),
                        ..EncryptDataRequest::default()
                    };
                    async move { vaultrs::api::exec_with_result(&*c, endpoint).await }
                })
                .await?;
            let wrapped = WrappedKey(response.ciphertext.into_bytes());
            ciphertext(&wrapped)?;
            Ok(wrapped)
        }

        async fn unwrap(&self, kek: &KekUri, wrapped: &WrappedKey, ctx: &KmsContext) -> Result<DataKey, KmsError> {
            let (mount, key) = parts(kek)?;
            let ciphertext = ciphertext(wrapped)?;
            let (associated_data, context) = self.inner.binding(ctx);
            let response = self
                .inner
                .call(kek, |c| {
                    let endpoint = DecryptDataRequest {
                        mount: mount.to_owned(),
                        name: key.to_owned(),
                        ciphertext: ciphertext.to_owned(),
                        associated_data: associated_data.clone(),
                        context: context.clone(),
                        nonce: None,
                    };
                    async move { vaultrs::api::exec_with_result(&*c, endpoint).await }
                })
                .await?;
            let plaintext = Zeroizing::new(response.plaintext);
            data_key(kek, &plaintext)
        }

        async fn generate_data_key(&self, kek: &KekUri, ctx: &KmsContext) -> Result<(DataKey, WrappedKey), KmsError> {
            let (mount, key) = parts(kek)?;
            let (associated_data, context) = self.inner.binding(ctx);
            let body = serde_json::json!({ "bits": 256, "associated_data": associated_data, "context": context });
            let response = self
                .inner
                .call(kek, |c| {
                    let endpoint =
                        DataKeyPlaintext { mount: mount.to_owned(), name: key.to_owned(), body: body.clone() };
                    async move { vaultrs::api::exec_with_result(&*c, endpoint).await }
                })
                .await?;
            let plaintext = Zeroizing::new(response.plaintext.unwrap_or_default());
            let dek = data_key(kek, &plaintext)?;
            let wrapped = WrappedKey(response.ciphertext.into_bytes());
            ciphertext(&wrapped)?;
            Ok((dek, wrapped))
        }

        async fn health_check(&self) -> Result<(), KmsError> {
            for kek in &self.inner.keks {
                self.inner.check_key(kek).await?;
            }
            Ok(())
        }
    }

    /// `POST <mount>/datakey/plaintext/<key>` with `associated_data` (vaultrs' request lacks that field).
    struct DataKeyPlaintext {
        mount: String,
        name: String,
        body: serde_json::Value,
    }

    /// Its response. No `Debug`: it holds a data key.
    #[derive(Deserialize)]
    struct DataKeyResponse {
        plaintext: Option<String>,
        ciphertext: String,
    }

    impl Endpoint for DataKeyPlaintext {
        type Response = DataKeyResponse;
        const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
        const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

        fn path(&self) -> String {
            format!("{}/datakey/plaintext/{}", self.mount, self.name)
        }

        fn method(&self) -> RequestMethod {
            RequestMethod::POST
        }

        fn body(&self) -> Result<Option<Vec<u8>>, rustify::errors::ClientError> {
            serde_json::to_vec(&self.body)
                .map(Some)
                .map_err(|e| rustify::errors::ClientError::DataParseError { source: e.into() })
        }
    }

    /// `GET <mount>/keys/<key>`, reading only what we check (vaultrs' response type rejects key types it
    /// does not know).
    struct ReadKey {
        mount: String,
        name: String,
    }

    #[derive(Deserialize)]
    struct KeyInfo {
        #[serde(rename = "type")]
        key_type: String,
        #[serde(default)]
        derived: bool,
        #[serde(default)]
        supports_encryption: bool,
    }

    impl Endpoint for ReadKey {
        type Response = KeyInfo;
        const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
        const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

        fn path(&self) -> String {
            format!("{}/keys/{}", self.mount, self.name)
        }

        fn method(&self) -> RequestMethod {
            RequestMethod::GET
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn only_vault_ciphertexts_reach_vault() {
            for good in ["vault:v1:AAAA", "vault:v12:ab+/cd=="] {
                assert!(ciphertext(&WrappedKey(good.as_bytes().to_vec())).is_ok(), "{good}");
            }
            for bad in ["", "vault:v1:", "vault:vx:AAAA", "vault:AAAA", "x:v1:AAAA", "vault:v1:AA\"}", "vault:v1:A A"] {
                assert!(ciphertext(&WrappedKey(bad.as_bytes().to_vec())).is_err(), "{bad:?}");
            }
            assert!(ciphertext(&WrappedKey(vec![0xff, 0xfe])).is_err());
        }

        #[test]
        fn vault_refusals_map_to_what_callers_branch_on() {
            let kek = KekUri::parse("vault-transit://transit/k").unwrap();
            let api = |code, msg: &str| ClientError::APIError { code, errors: vec![msg.to_owned()] };
            assert!(matches!(map_error(&kek, api(403, "permission denied")), KmsError::AccessDenied { .. }));
            assert!(matches!(map_error(&kek, api(400, "encryption key not found")), KmsError::KeyNotFound { .. }));
            assert!(matches!(
                map_error(&kek, api(400, "ciphertext or signature version is disallowed by policy (too old)")),
                KmsError::KeyDisabled { .. }
            ));
            assert!(matches!(
                map_error(&kek, api(400, "cipher: message authentication failed")),
                KmsError::InvalidCiphertext
            ));
            for code in [429, 500, 502, 503] {
                assert!(map_error(&kek, api(code, "x")).is_unavailable(), "{code}");
            }
            assert!(map_error(&kek, ClientError::ResponseEmptyError).is_unavailable());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(auth: &str) -> VaultKmsConfig {
        toml::from_str(&format!("address = \"https://vault.example.com:8200\"\n[auth]\n{auth}")).unwrap()
    }

    #[test]
    fn key_uris_name_a_mount_and_a_key() {
        let kek = |s: &str| KekUri::parse(s).unwrap();
        assert_eq!(mount_and_key(&kek("vault-transit://transit/payments")), Some(("transit", "payments")));
        assert_eq!(mount_and_key(&kek("vault-transit://eu/transit/k.v2")), Some(("eu/transit", "k.v2")));
        for bad in
            ["vault-transit://payments", "vault-transit://transit/", "vault-transit://../k", "vault-transit://t/a%2f"]
        {
            assert_eq!(mount_and_key(&kek(bad)), None, "{bad}");
        }
    }

    #[test]
    fn auth_methods_parse_with_defaults() {
        let c = config("method = \"approle\"\nrole_id = \"r\"\nsecret_id = \"s\"");
        assert!(matches!(&c.auth, VaultAuthConfig::Approle { mount, .. } if mount == "approle"));
        assert_eq!(
            (c.binding, c.call_timeout, c.max_retries),
            (VaultBinding::AssociatedData, Duration::from_secs(2), 2)
        );
        let c = config("method = \"kubernetes\"\nrole = \"codec\"");
        assert!(matches!(&c.auth, VaultAuthConfig::Kubernetes { jwt_file, .. } if jwt_file.ends_with("token")));
        let unknown = "address = \"https://v:8200\"\n[auth]\nmethod = \"token\"\ntoken = \"t\"\ntypo = 1";
        assert!(toml::from_str::<VaultKmsConfig>(unknown).is_err(), "unknown fields are refused");
    }

    #[test]
    fn validation_says_which_section_is_missing() {
        let kek = KekUri::parse("vault-transit://transit/payments").unwrap();
        let message = validate(&kek, None).unwrap_err().to_string();
        assert!(message.contains("[kms.vault]"), "{message}");
        let mut c = config("method = \"token\"\ntoken = \" \"");
        assert!(validate(&kek, Some(&c)).unwrap_err().to_string().contains("TOKEN_FILE"));
        c.auth = VaultAuthConfig::Token { token: serde_json::from_str("\"t\"").unwrap() };
        validate(&kek, Some(&c)).unwrap();
        c.address = "vault.example.com".into();
        assert!(validate(&kek, Some(&c)).unwrap_err().to_string().contains("kms.vault.address"));
    }

    #[test]
    fn secrets_never_print() {
        let c = config("method = \"approle\"\nrole_id = \"r\"\nsecret_id = \"hunter2\"");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!toml::to_string(&c).unwrap().contains("hunter2"));
    }
}
