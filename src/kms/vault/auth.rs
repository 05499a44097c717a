//! The Vault token: a fixed one from the config, or one from an AppRole or Kubernetes login, kept alive
//! by a background task (`maintain`), and `Tokens::call`, through which every Transit request goes.
//!
//! What must stay true:
//! - The token is renewed at 2/3 of its TTL; one that cannot be renewed any further (not renewable,
//!   capped by its max TTL, renewal refused) is replaced by a new login when a login method is configured.
//! - When Vault refuses a token (403), one new login — shared by all concurrent callers through
//!   `login_lock` and the session generation — and one retry; a fixed token is never replaced.
//! - No token, secret id or service-account JWT reaches a log or an error; the JWT file is read again
//!   at every login (projected tokens rotate).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustify::clients::reqwest::Client as HttpClient;
use tokio::time::Instant;
use vaultrs::api::EndpointMiddleware;
use vaultrs::client::VaultClient;
use vaultrs::error::ClientError;
use zeroize::Zeroizing;

use super::VaultAuthConfig;
use super::api::{describe, map_error, status, unavailable};
use crate::kms::{KekUri, KmsError};

/// A token is renewed (or replaced) when this fraction of its TTL has passed.
const RENEW_AT: f64 = 2.0 / 3.0;
/// Longest wait between two failed login or renewal attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Token logins and renewals so far (tests and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenStats {
    pub logins: u64,
    pub renewals: u64,
}

enum Login {
    /// A fixed token: renewed while possible, never replaced.
    Fixed,
    AppRole {
        mount: String,
        role_id: String,
        secret_id: crate::secret::Secret,
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

/// The current token, how to get a new one, and the counters.
pub(super) struct Tokens {
    /// Client without a token: logins, and the template for token clients.
    base: VaultClient,
    login: Login,
    session: RwLock<Option<Arc<Session>>>,
    login_lock: tokio::sync::Mutex<()>,
    changed: tokio::sync::Notify,
    logins: AtomicU64,
    renewals: AtomicU64,
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
pub(super) async fn maintain(tokens: Arc<Tokens>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let changed = tokens.changed.notified();
        let ok = match tokens.next_action() {
            Action::Nothing => return,
            Action::WaitForLogin => {
                changed.await;
                continue;
            }
            Action::LookUp => tokens.look_up().await,
            Action::Renew(at) | Action::Relogin(at) if at > Instant::now() => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = changed => {}
                }
                continue;
            }
            Action::Renew(_) => tokens.renew().await,
            Action::Relogin(_) => {
                let stale = tokens.current().map(|s| s.generation);
                tokens.login(stale).await.is_ok()
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

impl Tokens {
    /// Tokens for `auth`, sent through clients made from `base` (which has none). No network call: a
    /// fixed token is used as given, the other methods log in at first use.
    pub(super) fn new(base: VaultClient, auth: &VaultAuthConfig) -> Tokens {
        let (login, session) = match auth {
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
            VaultAuthConfig::Approle { mount, role_id, secret_id } => {
                (Login::AppRole { mount: mount.clone(), role_id: role_id.clone(), secret_id: secret_id.clone() }, None)
            }
            VaultAuthConfig::Kubernetes { mount, role, jwt_file } => {
                (Login::Kubernetes { mount: mount.clone(), role: role.clone(), jwt_file: jwt_file.clone() }, None)
            }
        };
        Tokens {
            base,
            login,
            session: RwLock::new(session),
            login_lock: tokio::sync::Mutex::new(()),
            changed: tokio::sync::Notify::new(),
            logins: AtomicU64::new(0),
            renewals: AtomicU64::new(0),
        }
    }

    /// Logins and renewals so far.
    pub(super) fn stats(&self) -> TokenStats {
        TokenStats { logins: self.logins.load(Ordering::Relaxed), renewals: self.renewals.load(Ordering::Relaxed) }
    }

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
    pub(super) async fn call<T, F, Fut>(&self, kek: &KekUri, call: F) -> Result<T, KmsError>
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
}
