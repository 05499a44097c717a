//! The `[auth]` section: mode, trusted issuers, policies — and its validation.

use super::*;
use crate::auth::policy::PolicyRule;

/// Authentication and access policy.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Required in a config file: `jwt`, or `disabled` (loopback only).
    pub mode: Option<AuthModeConfig>,
    /// With auth disabled, allow listening on a non-loopback address anyway.
    pub allow_unauthenticated_non_loopback: bool,
    /// Trusted token issuers (`mode = "jwt"`).
    pub issuers: Vec<IssuerConfig>,
    /// A TOML file of `[[policies]]`, re-read when it changes; replaces `policies` below.
    pub policy_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub policy_reload_interval: Duration,
    /// Inline policies (fixed until restart), used when `policy_file` is not set.
    pub policies: Vec<PolicyRule>,
    /// Verified tokens kept until they expire, so the UI's many small requests verify once.
    pub token_cache_capacity: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: None,
            allow_unauthenticated_non_loopback: false,
            issuers: Vec::new(),
            policy_file: None,
            policy_reload_interval: Duration::from_secs(5),
            policies: Vec::new(),
            token_cache_capacity: 10_000,
        }
    }
}

/// Authentication modes.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AuthModeConfig {
    Disabled,
    Jwt,
}

/// Presets that fill an issuer's well-known settings.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum IssuerPreset {
    /// Temporal Cloud: its JWKS, audience and email claim.
    TemporalCloud,
}

/// One trusted issuer.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct IssuerConfig {
    pub preset: Option<IssuerPreset>,
    /// Short name that `sub@<name>:<pattern>` policy principals use to admit only this issuer's
    /// subjects (two clusters both have `system:serviceaccount:payments:worker`).
    pub name: Option<String>,
    /// Exact `iss` value.
    pub issuer: String,
    /// Accepted `aud` values of access tokens (at least one).
    pub audiences: Vec<String>,
    /// Accepted `aud` values of ID tokens in `Authorization-Extras` (the OIDC client id); default: `audiences`.
    pub id_token_audiences: Vec<String>,
    /// JWKS endpoint (https, or http on loopback for tests).
    pub jwks_url: Option<String>,
    /// Static keys instead of a JWKS URL: PEM public keys or JWK/JWKS JSON.
    pub keys: Vec<String>,
    /// Pinned algorithms, e.g. ["RS256"]. HMAC algorithms are not accepted.
    pub algorithms: Vec<String>,
    /// The claim holding the caller's email (default `email`); `"none"` for workload issuers (Kubernetes,
    /// CI) whose callers are admitted only by `sub:` principals.
    pub email_claim: String,
    pub groups_claim: Option<String>,
    /// Clock skew allowed on exp/nbf; at most 60 s.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// An unknown `kid` refreshes the JWKS at most this often.
    #[serde(with = "humantime_serde")]
    pub jwks_min_refresh_interval: Duration,
    /// The JWKS is refreshed when older than this (the last good set stays in use if that fails).
    #[serde(with = "humantime_serde")]
    pub jwks_max_age: Duration,
    #[serde(with = "humantime_serde")]
    pub jwks_timeout: Duration,
    pub jwks_max_bytes: usize,
}

impl Default for IssuerConfig {
    fn default() -> Self {
        IssuerConfig {
            preset: None,
            name: None,
            issuer: String::new(),
            audiences: Vec::new(),
            id_token_audiences: Vec::new(),
            jwks_url: None,
            keys: Vec::new(),
            algorithms: Vec::new(),
            email_claim: String::new(),
            groups_claim: None,
            leeway: Duration::from_secs(30),
            jwks_min_refresh_interval: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(600),
            jwks_timeout: Duration::from_secs(5),
            jwks_max_bytes: 256 * 1024,
        }
    }
}

/// Temporal Cloud's JWKS.
pub const TEMPORAL_CLOUD_JWKS: &str = "https://login.tmprl.cloud/.well-known/jwks.json";
/// Temporal Cloud's API audience.
pub const TEMPORAL_CLOUD_AUDIENCE: &str = "https://saas-api.tmprl.cloud";
/// Temporal Cloud's email claim.
pub const TEMPORAL_CLOUD_EMAIL_CLAIM: &str = "https://saas-api.tmprl.cloud/user/email";

/// `email_claim` value that turns email identities off for an issuer.
pub const NO_EMAIL_CLAIM: &str = "none";

impl IssuerConfig {
    /// The email claim after presets; `None` when set to `"none"`.
    pub fn email_claim(&self) -> Option<String> {
        let c = self.resolved();
        (c.email_claim != NO_EMAIL_CLAIM).then_some(c.email_claim)
    }

    /// The issuer with its preset applied: the preset fills only what is left empty.
    pub fn resolved(&self) -> IssuerConfig {
        let mut c = self.clone();
        if c.preset == Some(IssuerPreset::TemporalCloud) {
            c.jwks_url.get_or_insert_with(|| TEMPORAL_CLOUD_JWKS.to_owned());
            if c.audiences.is_empty() {
                c.audiences = vec![TEMPORAL_CLOUD_AUDIENCE.to_owned()];
            }
            if c.email_claim.is_empty() {
                c.email_claim = TEMPORAL_CLOUD_EMAIL_CLAIM.to_owned();
            }
        }
        if c.email_claim.is_empty() {
            c.email_claim = "email".to_owned();
        }
        if c.algorithms.is_empty() {
            c.algorithms = vec!["RS256".to_owned()];
        }
        c
    }
}

impl AuthConfig {
    /// What the configured issuers can put into an identity, for `Policies::check_matchable`: the one
    /// place that knows which issuer settings yield which claims.
    pub fn identity_claims(&self) -> crate::auth::policy::IdentityClaims {
        crate::auth::policy::IdentityClaims {
            email: self.issuers.iter().any(|i| i.email_claim().is_some()),
            groups: self.issuers.iter().any(|i| i.groups_claim.as_deref().is_some_and(|c| !c.is_empty())),
        }
    }
}

impl Config {
    pub(super) fn validate_auth(&self) -> anyhow::Result<()> {
        match self.auth.mode {
            None => bail!(
                "auth.mode is required: set auth.mode = \"jwt\" with [[auth.issuers]] and policies, or \"disabled\" (loopback only)"
            ),
            Some(AuthModeConfig::Disabled) => {
                if !self.server.listen.ip().is_loopback() && !self.auth.allow_unauthenticated_non_loopback {
                    bail!(
                        "auth is disabled, so the server only listens on loopback; {} is not. Listen on 127.0.0.1, or set auth.allow_unauthenticated_non_loopback = true if something in front authenticates",
                        self.server.listen
                    );
                }
            }
            Some(AuthModeConfig::Jwt) => {
                if self.auth.issuers.is_empty() {
                    bail!("auth.mode = \"jwt\" needs at least one [[auth.issuers]] entry");
                }
                for (i, issuer) in self.auth.issuers.iter().enumerate() {
                    validate_issuer(&issuer.resolved()).with_context(|| format!("auth.issuers[{i}]"))?;
                }
                if self.auth.policy_file.is_none() && self.auth.policies.is_empty() {
                    bail!(
                        "auth.mode = \"jwt\" needs policies: set auth.policy_file or add [[auth.policies]] (no policy means nobody gets in)"
                    );
                }
                let policies = crate::auth::policy::Policies::compile(&self.auth.policies)
                    .map_err(|e| anyhow::anyhow!("auth.{e}"))?;
                self.auth.check_issuer_names(&policies)?;
                policies
                    .check_matchable(self.auth.identity_claims())
                    .map_err(|e| anyhow::anyhow!("auth.policies: {e}"))?;
            }
        }
        Ok(())
    }
}

impl AuthConfig {
    /// Issuer names are unique, and every `sub@<name>:` principal names a configured issuer (a rule
    /// naming no issuer could never match).
    pub fn check_issuer_names(&self, policies: &crate::auth::policy::Policies) -> anyhow::Result<()> {
        let names: Vec<&str> = self.issuers.iter().filter_map(|i| i.name.as_deref()).collect();
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                bail!("auth.issuers: the name `{name}` is used twice; issuer names must be unique");
            }
        }
        if let Some(unknown) = policies.issuer_names().find(|n| !names.contains(n)) {
            bail!(
                "auth.policies: `sub@{unknown}:` names no issuer; set `name = \"{unknown}\"` on the [[auth.issuers]] entry it means"
            );
        }
        Ok(())
    }
}

fn validate_issuer(c: &IssuerConfig) -> anyhow::Result<()> {
    if c.issuer.is_empty() {
        bail!("`issuer` is required: the exact `iss` of its tokens");
    }
    if let Some(name) = &c.name
        && !crate::auth::policy::valid_issuer_name(name)
    {
        bail!("`name` must be 1-64 letters, digits, `.`, `_` or `-`");
    }
    if c.audiences.is_empty() {
        bail!("`audiences` is required: the `aud` values its access tokens carry");
    }
    match (&c.jwks_url, c.keys.is_empty()) {
        (None, true) => bail!("set `jwks_url` or `keys`"),
        (Some(_), false) => bail!("set `jwks_url` or `keys`, not both"),
        (Some(url), true) => {
            super::endpoints::check_endpoint("`jwks_url`", url, super::endpoints::PlaintextHttp::LoopbackOnly)?;
        }
        (None, false) => {
            crate::auth::jwks::static_keys(&c.keys).map_err(|e| anyhow::anyhow!(e))?;
        }
    }
    for alg in &c.algorithms {
        let parsed: jsonwebtoken::Algorithm = alg
            .parse()
            .map_err(|_| anyhow::anyhow!("algorithm `{alg}` is unknown; use e.g. RS256, PS256, ES256, EdDSA"))?;
        if parsed.family() == jsonwebtoken::AlgorithmFamily::Hmac {
            bail!("algorithm `{alg}`: shared-secret (HMAC) algorithms are not accepted");
        }
    }
    if c.leeway > Duration::from_secs(60) {
        bail!("`leeway` must be at most 60s");
    }
    if c.jwks_max_bytes == 0 || c.jwks_timeout.is_zero() {
        bail!("`jwks_max_bytes` and `jwks_timeout` must be greater than zero");
    }
    Ok(())
}
