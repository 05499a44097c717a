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
//!
//! The files: this one holds `[kms.vault]` and its validation, which every build has (a config naming a
//! Vault KEK must be refused with a clear message even without the `vault-transit` feature); `backend`
//! is the `KmsBackend`, `auth` keeps a token alive, and `api` is the wire — the four Transit requests
//! (two of them vaultrs lacks) and what Vault's answers and errors mean.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use super::KekUri;
use crate::secret::Secret;

#[cfg(feature = "vault-transit")]
mod api;
#[cfg(feature = "vault-transit")]
mod auth;
#[cfg(feature = "vault-transit")]
mod backend;

#[cfg(feature = "vault-transit")]
pub use auth::TokenStats;
#[cfg(feature = "vault-transit")]
pub use backend::VaultBackend;

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
    super::DEFAULT_KMS_CALL_TIMEOUT
}

fn default_max_retries() -> u32 {
    super::DEFAULT_KMS_MAX_RETRIES
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
