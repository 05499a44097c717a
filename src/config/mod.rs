//! Configuration: defaults in code → TOML file (`--config` / `CODEC_CONFIG`) → `CODEC_*` environment
//! variables (`__` separates levels; `*_FILE` reads the value from a file) → a few CLI flags.
//!
//! What must stay true: everything is validated after loading, and every message says how to fix the
//! problem; secrets never print (`check-config` shows them as `<redacted>`). Without a config file the
//! server starts in dev mode: local key file, auth off, loopback only.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::kms::KekUri;
use crate::kms::keyring::DecodeFailure;
pub use crate::kms::settings::*;
use crate::protocol::Namespace;
pub use crate::secret::Secret;

mod audit;
mod auth;
pub mod endpoints;

pub use audit::*;
pub use auth::*;

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the dev key, and later the SQLite audit database, live.
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub cors: CorsConfig,
    pub auth: AuthConfig,
    pub kms: KmsConfig,
    /// Named keyrings.
    pub keyrings: BTreeMap<String, KeyringConfig>,
    /// Namespace rules: exact names win, then patterns in order.
    pub namespaces: Vec<NamespaceRule>,
    pub cache: CacheConfig,
    pub envelope: EnvelopeConfig,
    pub legacy: LegacyConfig,
    pub audit: AuditConfig,
    pub log: LogConfig,
}

/// HTTP server settings and request limits.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// A second, plain-HTTP listener for `/healthz`, `/readyz` and `/metrics` (probes and Prometheus),
    /// e.g. `0.0.0.0:8082`. When set, `listen` serves the codec routes and `/healthz` only, so an
    /// ingress in front of it never publishes metrics or readiness. Unset: everything on `listen`.
    pub admin_listen: Option<SocketAddr>,
    /// Optional exact path prefix in front of every codec route, e.g. `/codec`. Empty (the default): any
    /// prefix is accepted by suffix routing (see `protocol::route`).
    pub path_prefix: String,
    /// Used when a request names no namespace (neither `X-Namespace` nor a path segment).
    pub default_namespace: Option<String>,
    pub max_body_bytes: usize,
    pub max_payloads: usize,
    /// Body bytes held at once across all requests (being received or served); past it, 503 with
    /// `Retry-After`. Bounds memory however many clients send at once.
    pub max_inflight_body_bytes: usize,
    /// Deadline for receiving one request's whole body once the caller is authorized (408 after it).
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Deadline for receiving a request's head (method, path, headers) after the connection opens or the
    /// previous response; slowloris clients are cut off after it.
    #[serde(with = "humantime_serde")]
    pub client_request_timeout: Duration,
    /// How long an idle keep-alive connection stays open. Longer than the 60 s idle timeout of the
    /// usual load balancers (AWS ALB, GCP), so none of them reuses a connection this server is closing
    /// (which its client sees as a 502), and longer than the workers' own pool idle timeouts.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Open connections per worker thread at most; past it, new connections wait in the accept backlog.
    pub max_connections_per_worker: usize,
    /// Requests in service at once on one connection (HTTP/2 streams; HTTP/1.1 has one at a time);
    /// past it, 503 `overloaded` at once. actix-http cannot advertise `SETTINGS_MAX_CONCURRENT_STREAMS`.
    pub max_concurrent_streams: usize,
    /// Bound on all decompression in one decode request (zstd envelopes, legacy zlib/gzip/snappy layers).
    pub max_decompressed_bytes: usize,
    /// HTTP worker threads; default: one per core.
    pub workers: Option<usize>,
    /// Proxies (addresses or CIDR ranges, e.g. the ingress pods' network) whose `X-Forwarded-For` is
    /// believed for the audit log's client address. Empty: the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
    /// On SIGTERM/SIGINT: stop accepting, then give in-flight requests this long to finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Serve HTTPS (HTTP/1.1 and HTTP/2) with these files; the Web UI sends tokens only to https://.
    pub tls: Option<TlsConfig>,
}

/// `[server.tls]`: PEM files, re-read when they change (cert-manager renewals need no restart).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PKCS#8, PKCS#1 or SEC1 private key.
    pub key_file: PathBuf,
    /// How often the files are checked for changes.
    #[serde(default = "default_tls_reload_interval", with = "humantime_serde")]
    pub reload_interval: Duration,
}

fn default_tls_reload_interval() -> Duration {
    Duration::from_secs(10)
}

/// CORS for the Temporal Web UI.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Exact origins, e.g. `https://temporal.example.com` (a trailing slash is ignored).
    pub allowed_origins: Vec<String>,
    /// Send `Access-Control-Allow-Credentials: true` (the UI's "include credentials").
    pub allow_credentials: bool,
    /// Request headers allowed in addition to content-type, x-namespace, authorization, authorization-extras.
    pub extra_allowed_headers: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

/// A keyring: primary KEKs wrap every new data key; decrypt-only KEKs still unwrap old ones.
#[derive(Clone, Debug, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct KeyringConfig {
    pub primary: Vec<String>,
    pub decrypt_only: Vec<String>,
}

/// Which keyring a namespace (exact name or glob with `*`/`?`) uses, and how.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceRule {
    #[serde(rename = "match")]
    pub pattern: String,
    pub keyring: String,
    /// zstd-compress payloads before sealing (when it makes them smaller).
    #[serde(default)]
    pub compress: bool,
    #[serde(default)]
    pub decode_failure: DecodeFailure,
}

/// Data-key caches.
#[derive(Clone, Debug, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    pub encrypt: EncryptCacheConfig,
    pub decrypt: DecryptCacheConfig,
}

/// Limits on one encode DEK.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncryptCacheConfig {
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    pub max_payloads: u64,
    pub max_bytes: u64,
    /// Make the next data key in the background this long before `max_age` (or at 80 % of
    /// `max_payloads` / `max_bytes`), so no encode waits on the KMS; "0s" only at the limits.
    #[serde(with = "humantime_serde")]
    pub renew_before: Duration,
}

/// Decode DEK cache.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecryptCacheConfig {
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub idle: Duration,
    pub capacity_per_namespace: u64,
    pub max_namespaces: u64,
    /// KMS unwraps (cache misses) one decode request may cause; past it, 400 `too-many-data-keys`.
    /// Payloads sealed minutes apart share a data key, so real requests need a few.
    pub max_unwraps_per_request: usize,
}

/// How new payloads are sealed (`docs/envelope-format.md`). Every suite is always decoded.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnvelopeConfig {
    /// The cipher suite encode writes: 2 (keys derived once per data key; the default) or 1 (a key
    /// schedule per payload, what 0.1 wrote). Set 1 while replicas older than 0.2, which cannot read
    /// suite 2, still serve decodes (a rolling upgrade), then remove it.
    pub seal_suite: u16,
}

impl Default for EnvelopeConfig {
    fn default() -> Self {
        EnvelopeConfig { seal_suite: crate::codec::envelope::SUITE_AES256GCM_HKDF_SHA512_PER_KEY }
    }
}

/// Decrypt-only keys of Temporal's sample encryption codecs, by key id.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LegacyConfig {
    pub keys: BTreeMap<String, LegacyKeyConfig>,
    /// Nested compression layers undone at most.
    pub max_depth: usize,
}

/// One legacy key: 32 ASCII characters (as the samples use) or base64 of 32 bytes, inline (`key`) or in a
/// file (`key_file`).
#[derive(Clone, Debug, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct LegacyKeyConfig {
    pub key: Option<Secret>,
    pub key_file: Option<PathBuf>,
    /// Namespaces (names or globs) whose payloads this key may open. Required: the sample format binds
    /// no namespace, so without this list a key would open its payloads in every namespace.
    pub namespaces: Vec<String>,
}

/// Logging.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `pretty` or `json`.
    pub format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub level: String,
}

/// Log output format.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Port of the embedded default (the Temporal samples' codec servers use 8081 too).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";
/// Name of the dev keyring and its local KEK.
pub const DEV_KEY_NAME: &str = "dev";

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("codec-data"),
            server: ServerConfig::default(),
            cors: CorsConfig::default(),
            auth: AuthConfig::default(),
            kms: KmsConfig::default(),
            keyrings: BTreeMap::new(),
            namespaces: Vec::new(),
            cache: CacheConfig::default(),
            envelope: EnvelopeConfig::default(),
            legacy: LegacyConfig::default(),
            audit: AuditConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: DEFAULT_LISTEN.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8081))),
            admin_listen: None,
            path_prefix: String::new(),
            default_namespace: None,
            max_body_bytes: 16 << 20,
            max_payloads: 1000,
            max_inflight_body_bytes: 128 << 20,
            body_read_timeout: Duration::from_secs(30),
            client_request_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(75),
            max_connections_per_worker: 25_000,
            max_concurrent_streams: 256,
            max_decompressed_bytes: 64 << 20,
            workers: None,
            trusted_proxies: Vec::new(),
            shutdown_timeout: Duration::from_secs(30),
            tls: None,
        }
    }
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: Vec::new(),
            allow_credentials: false,
            extra_allowed_headers: Vec::new(),
            max_age: Duration::from_secs(3600),
        }
    }
}

impl Default for EncryptCacheConfig {
    fn default() -> Self {
        let limits = crate::kms::encrypt_cache::EncryptLimits::default();
        EncryptCacheConfig {
            max_age: limits.max_age,
            max_payloads: limits.max_payloads,
            max_bytes: limits.max_bytes,
            renew_before: limits.renew_before,
        }
    }
}

impl Default for DecryptCacheConfig {
    fn default() -> Self {
        let s = crate::kms::decrypt_cache::DecryptCacheSettings::default();
        DecryptCacheConfig {
            ttl: s.ttl,
            idle: s.idle,
            capacity_per_namespace: s.capacity_per_namespace,
            max_namespaces: s.max_namespaces,
            max_unwraps_per_request: 32,
        }
    }
}

impl Default for LegacyConfig {
    fn default() -> Self {
        LegacyConfig { keys: BTreeMap::new(), max_depth: 4 }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Pretty, level: "info".into() }
    }
}

/// Whether the configuration came from a file or is the embedded dev default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Dev,
    File,
}

/// Flags that override the configuration.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    /// `serve --allow-origin`: origins added to `cors.allowed_origins` (validated like them).
    pub allow_origins: Vec<String>,
}

impl Config {
    /// The embedded default: one local KEK for every namespace, auth off, loopback only, CORS for the
    /// local Temporal dev UI.
    pub fn dev() -> Config {
        Config {
            cors: CorsConfig {
                allowed_origins: vec!["http://localhost:8233".into(), "http://127.0.0.1:8233".into()],
                ..CorsConfig::default()
            },
            auth: AuthConfig { mode: Some(AuthModeConfig::Disabled), ..AuthConfig::default() },
            keyrings: BTreeMap::from([(
                DEV_KEY_NAME.to_owned(),
                KeyringConfig { primary: vec![format!("local://{DEV_KEY_NAME}")], decrypt_only: vec![] },
            )]),
            namespaces: vec![NamespaceRule {
                pattern: "*".into(),
                keyring: DEV_KEY_NAME.into(),
                compress: false,
                decode_failure: DecodeFailure::Reject,
            }],
            ..Config::default()
        }
    }

    /// Loads the layers, applies overrides and validates.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<(Config, Mode)> {
        let (base, mode) = match file {
            Some(_) => (Config::default(), Mode::File),
            None => (Config::dev(), Mode::Dev),
        };
        let mut figment = Figment::from(Serialized::defaults(base));
        if let Some(path) = file {
            if !path.is_file() {
                bail!(
                    "config file {} does not exist; pass an existing file with --config or CODEC_CONFIG",
                    path.display()
                );
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(
            Env::prefixed("CODEC_")
                .split("__")
                .filter(|k| is_config_env_key(k.as_str()) && !k.as_str().to_ascii_lowercase().ends_with("_file")),
        );
        for (key, value) in env_file_values()? {
            figment = figment.merge(Serialized::global(&key, value));
        }
        let mut config: Config = figment.extract().map_err(|e| anyhow::anyhow!(describe_figment_error(e)))?;
        if let Some(listen) = overrides.listen {
            config.server.listen = listen;
        }
        if let Some(dir) = &overrides.data_dir {
            config.data_dir = dir.clone();
        }
        for origin in &overrides.allow_origins {
            if !config.cors.allowed_origins.contains(origin) {
                config.cors.allowed_origins.push(origin.clone());
            }
        }
        config.validate()?;
        Ok((config, mode))
    }

    /// Checks everything that can be checked without touching a KMS.
    pub fn validate(&self) -> anyhow::Result<()> {
        let s = &self.server;
        if s.max_body_bytes < 1024 {
            bail!("server.max_body_bytes must be at least 1024");
        }
        if s.max_payloads == 0 {
            bail!("server.max_payloads must be at least 1");
        }
        if s.max_inflight_body_bytes < s.max_body_bytes || u32::try_from(s.max_body_bytes).is_err() {
            bail!(
                "server.max_inflight_body_bytes ({}) must be at least server.max_body_bytes ({}), which must be below 4 GiB",
                s.max_inflight_body_bytes,
                s.max_body_bytes
            );
        }
        if s.client_request_timeout.is_zero() || s.max_connections_per_worker == 0 || s.max_concurrent_streams == 0 {
            bail!(
                "server.client_request_timeout, server.max_connections_per_worker and server.max_concurrent_streams must be greater than zero"
            );
        }
        if s.body_read_timeout.is_zero() {
            bail!("server.body_read_timeout must be greater than zero, e.g. \"30s\"");
        }
        if let Some(ns) = &s.default_namespace
            && Namespace::parse(ns).is_none()
        {
            bail!("server.default_namespace `{ns}` is not a valid namespace name (letters, digits, '.', '_', '-')");
        }
        if !s.path_prefix.is_empty() && !s.path_prefix.starts_with('/') {
            bail!("server.path_prefix must start with '/', e.g. \"/codec\"");
        }
        if let Some(admin) = s.admin_listen
            && admin.port() != 0
            && admin.port() == s.listen.port()
        {
            bail!("server.admin_listen ({admin}) must use another port than server.listen ({}), e.g. 8082", s.listen);
        }
        if let Some(tls) = &s.tls
            && tls.reload_interval.is_zero()
        {
            bail!("server.tls.reload_interval must be greater than zero, e.g. \"10s\"");
        }
        self.validate_auth()?;
        self.validate_cors()?;
        self.audit.validate()?;
        crate::protocol::client_addr::TrustedProxies::parse(&s.trusted_proxies).map_err(anyhow::Error::msg)?;
        self.validate_keys()?;
        let e = &self.cache.encrypt;
        if self.cache.decrypt.max_unwraps_per_request == 0 {
            bail!("cache.decrypt.max_unwraps_per_request must be at least 1 (default 32)");
        }
        if e.renew_before >= e.max_age {
            bail!(
                "cache.encrypt.renew_before ({:?}) must be shorter than cache.encrypt.max_age ({:?})",
                e.renew_before,
                e.max_age
            );
        }
        if e.max_payloads == 0 || e.max_age.is_zero() {
            bail!("cache.encrypt.max_payloads and cache.encrypt.max_age must be greater than zero");
        }
        if !crate::codec::envelope::SUITES.contains(&self.envelope.seal_suite) {
            bail!("envelope.seal_suite must be 1 or 2, not {}", self.envelope.seal_suite);
        }
        if e.max_payloads > crate::codec::envelope::MAX_PAYLOADS_PER_KEY {
            bail!(
                "cache.encrypt.max_payloads ({}) must be at most 2^32: AES-GCM's bound for random IVs under one key",
                e.max_payloads
            );
        }
        if e.max_bytes < s.max_body_bytes as u64 {
            bail!(
                "cache.encrypt.max_bytes ({}) must be at least server.max_body_bytes ({}) so any payload fits one data key",
                e.max_bytes,
                s.max_body_bytes
            );
        }
        let d = &self.cache.decrypt;
        if d.capacity_per_namespace == 0 || d.max_namespaces == 0 || d.ttl.is_zero() || d.idle.is_zero() {
            bail!("cache.decrypt settings must all be greater than zero");
        }
        Ok(())
    }

    fn validate_cors(&self) -> anyhow::Result<()> {
        for origin in &self.cors.allowed_origins {
            let o = origin.trim_end_matches('/');
            if o == "*" {
                bail!("cors.allowed_origins: \"*\" is not allowed; list the Web UI origins exactly");
            }
            let Some((scheme, host)) = o.split_once("://") else {
                bail!("cors.allowed_origins / --allow-origin: `{origin}` must look like https://temporal.example.com");
            };
            if !matches!(scheme, "http" | "https") || host.is_empty() || host.contains('/') {
                bail!("cors.allowed_origins / --allow-origin: `{origin}` must be scheme://host[:port] with no path");
            }
        }
        Ok(())
    }

    fn validate_keys(&self) -> anyhow::Result<()> {
        for (name, ring) in &self.keyrings {
            if ring.primary.is_empty() || ring.primary.len() > crate::codec::envelope::MAX_EDKS {
                bail!("keyrings.{name}.primary must list 1 to 4 KEK URIs (every new data key is wrapped by each)");
            }
            for uri in ring.primary.iter().chain(&ring.decrypt_only) {
                let kek = KekUri::parse(uri).with_context(|| format!("keyrings.{name}"))?;
                self.validate_kek(name, &kek)?;
            }
            if let Some(proxy) = ring.primary.iter().find(|uri| KekUri::parse(uri).is_ok_and(|k| k.is_proxy())) {
                bail!(
                    "keyrings.{name}.primary: `{proxy}` is written as Temporal Proxy writes KEKs; such a KEK only opens the proxy's payloads, so list it under decrypt_only (and name the KEK for new data keys as aws-kms://…, gcp-kms://… or azure-keyvault://…)"
                );
            }
        }
        self.validate_cloud_kms()?;
        if self.namespaces.is_empty() {
            bail!("no [[namespaces]] rules: add one, e.g. match = \"*\" and keyring = \"<name>\"");
        }
        for (i, rule) in self.namespaces.iter().enumerate() {
            if !self.keyrings.contains_key(&rule.keyring) {
                bail!("namespaces[{i}] uses keyring `{}`, which is not defined under [keyrings]", rule.keyring);
            }
            let ok = !rule.pattern.is_empty()
                && rule.pattern.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-*?".contains(&b));
            if !ok {
                bail!("namespaces[{i}].match `{}` must be a namespace name or a glob with * and ?", rule.pattern);
            }
        }
        for (id, key) in &self.legacy.keys {
            if key.key.is_some() == key.key_file.is_some() {
                bail!(
                    "legacy.keys.{id}: set exactly one of `key` or `key_file` (32 ASCII characters or base64 of 32 bytes)"
                );
            }
            if key.namespaces.is_empty() {
                bail!(
                    "legacy.keys.{id}.namespaces is required: list the namespaces (names or globs) whose payloads this key may open"
                );
            }
        }
        Ok(())
    }

    /// Checks a KEK URI's key part for its provider, and that this build has that provider.
    fn validate_kek(&self, ring: &str, kek: &KekUri) -> anyhow::Result<()> {
        crate::kms::validate_kek(kek, &self.kms).map_err(|reason| anyhow::anyhow!("keyrings.{ring}: {reason}"))
    }

    /// Checks the `[kms.aws]`, `[kms.gcp]` and `[kms.azure]` sections.
    fn validate_cloud_kms(&self) -> anyhow::Result<()> {
        let aws = &self.kms.aws;
        if aws.access_key_id.is_some() != aws.secret_access_key.is_some() {
            bail!(
                "[kms.aws]: set both access_key_id and secret_access_key (test servers only), or neither to use the default credential chain"
            );
        }
        for (section, timeout, retries) in [
            ("kms.aws", aws.call_timeout, aws.max_retries),
            ("kms.gcp", self.kms.gcp.call_timeout, self.kms.gcp.max_retries),
            ("kms.azure", self.kms.azure.call_timeout, self.kms.azure.max_retries),
        ] {
            if timeout.is_zero() || retries > 5 {
                bail!("[{section}]: call_timeout must be greater than zero and max_retries at most 5");
            }
        }
        let gcp = &self.kms.gcp;
        if gcp.anonymous && !gcp.endpoint.as_deref().is_some_and(endpoints::is_loopback_url) {
            bail!(
                "[kms.gcp]: anonymous = true sends requests without credentials and is only for a test fake; it needs a loopback endpoint such as endpoint = \"http://127.0.0.1:PORT\""
            );
        }
        let plaintext = if self.kms.insecure_allow_plaintext_http {
            endpoints::PlaintextHttp::AllowedByOptOut
        } else {
            endpoints::PlaintextHttp::LoopbackUnlessOptedOut
        };
        let kms_endpoints = [
            ("kms.aws.endpoint_url", aws.endpoint_url.as_deref()),
            ("kms.gcp.endpoint", self.kms.gcp.endpoint.as_deref()),
            ("kms.vault.address", self.kms.vault.as_ref().map(|v| v.address.as_str())),
        ];
        for (setting, url) in kms_endpoints {
            if let Some(url) = url {
                endpoints::check_endpoint(setting, url, plaintext)?;
            }
        }
        self.validate_azure(plaintext)
    }

    /// Checks `[kms.azure]`: the same endpoint rules as every KMS endpoint, and then https only,
    /// because the Azure SDK refuses to send a bearer token over plain http.
    fn validate_azure(&self, plaintext: endpoints::PlaintextHttp) -> anyhow::Result<()> {
        let azure = &self.kms.azure;
        for (setting, url) in [
            ("kms.azure.endpoint", azure.endpoint.as_deref()),
            ("kms.azure.authority_host", azure.authority_host.as_deref()),
        ] {
            let Some(url) = url else { continue };
            endpoints::check_endpoint(setting, url, plaintext)?;
            if !url.starts_with("https://") {
                bail!(
                    "{setting} `{url}` must be https://: the Azure SDK sends tokens only over TLS (for a local fake, serve https on 127.0.0.1 and name its CA in kms.azure.ca_file)"
                );
            }
        }
        if azure.credential == Some(AzureCredentialKind::ClientSecret)
            && (azure.tenant_id.is_none() || azure.client_id.is_none() || azure.client_secret.is_none())
        {
            bail!("[kms.azure]: credential = \"client-secret\" needs tenant_id, client_id and client_secret");
        }
        if azure.client_secret.is_some() && azure.credential.is_some_and(|c| c != AzureCredentialKind::ClientSecret) {
            bail!("[kms.azure]: client_secret is set but credential is not \"client-secret\"; remove one of them");
        }
        Ok(())
    }

    /// The audit database URL: the configured one, or the SQLite file in the data directory.
    pub fn audit_database_url(&self) -> String {
        match &self.audit.database_url {
            Some(url) => with_ca_file(url.expose(), self.audit.database_ca_file.as_deref()),
            None => format!("sqlite://{}", self.data_dir.join("audit.db").display()),
        }
    }

    /// The directory of local key files.
    pub fn local_key_dir(&self) -> PathBuf {
        self.kms.local.key_dir.clone().unwrap_or_else(|| self.data_dir.join("keys"))
    }

    /// The configuration as TOML with secrets redacted (`check-config`).
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}"))
    }
}

/// Top-level sections an environment variable may set. Anything else under `CODEC_` is ignored: the
/// variables Kubernetes injects for a Service named `codec…` (`CODEC_SERVER_PORT`, `CODEC_SERVICE_HOST`)
/// must not stop the server from starting.
const ENV_SECTIONS: [&str; 11] =
    ["data_dir", "server", "cors", "auth", "kms", "keyrings", "namespaces", "cache", "legacy", "audit", "log"];

fn is_config_env_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    let first = key.split('.').next().unwrap_or_default();
    ENV_SECTIONS.contains(&first)
}

/// `CODEC_A__B_FILE=/path` sets `a.b` to the file's contents (trailing newline removed), for secrets
/// mounted as files.
fn env_file_values() -> anyhow::Result<Vec<(String, String)>> {
    let mut values = Vec::new();
    for (name, path) in std::env::vars() {
        let Some(rest) = name.strip_prefix("CODEC_") else { continue };
        let Some(key) = rest.strip_suffix("_FILE") else { continue };
        let key = key.to_ascii_lowercase().replace("__", ".");
        if !is_config_env_key(&key) {
            continue;
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("{name}: cannot read {path}"))?;
        values.push((key, text.trim_end_matches(['\n', '\r']).to_owned()));
    }
    Ok(values)
}

fn describe_figment_error(e: figment::Error) -> String {
    let mut lines = Vec::new();
    for error in e {
        let path = error.path.join(".");
        let source = error.metadata.as_ref().map(|m| m.name.to_string()).unwrap_or_default();
        let at = if path.is_empty() { String::new() } else { format!(" at `{path}`") };
        lines.push(format!("invalid configuration{at} ({source}): {}", error.kind));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_default_is_valid_and_loopback() {
        let config = Config::dev();
        config.validate().unwrap();
        assert!(config.server.listen.ip().is_loopback());
    }

    #[test]
    fn validation_messages_say_how_to_fix() {
        let mut c = Config::dev();
        c.server.listen = "0.0.0.0:8081".parse().unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("127.0.0.1"));
        let mut c = Config::dev();
        c.namespaces[0].keyring = "nope".into();
        assert!(c.validate().unwrap_err().to_string().contains("not defined under [keyrings]"));
        let mut c = Config::dev();
        c.cors.allowed_origins = vec!["*".into()];
        assert!(c.validate().is_err());
        let mut c = Config::dev();
        c.keyrings.get_mut("dev").unwrap().primary = vec!["s3://x".into()];
        assert!(format!("{:#}", c.validate().unwrap_err()).contains("invalid KEK URI"));
    }

    fn jwt_with(issuers: Vec<IssuerConfig>, principal: &str) -> Config {
        let mut c = Config::dev();
        c.auth.mode = Some(AuthModeConfig::Jwt);
        c.auth.issuers = issuers;
        c.auth.policies = vec![crate::auth::policy::PolicyRule {
            pattern: "*".into(),
            decode: vec![principal.into()],
            encode: vec![],
            on_deny: Default::default(),
            passthrough_without_token: false,
        }];
        c
    }

    fn cluster(name: Option<&str>, jwks_url: &str) -> IssuerConfig {
        IssuerConfig {
            name: name.map(str::to_owned),
            issuer: "https://oidc.example/".into(),
            audiences: vec!["codec".into()],
            jwks_url: Some(jwks_url.into()),
            email_claim: "none".into(),
            ..IssuerConfig::default()
        }
    }

    #[test]
    fn issuer_scoped_subjects_must_name_a_configured_issuer() {
        let ok =
            jwt_with(vec![cluster(Some("prod"), "https://oidc.example/keys")], "sub@prod:system:serviceaccount:a:*");
        ok.validate().unwrap();
        assert_eq!(ok.auth.issuers[0].email_claim(), None, "email_claim = \"none\" turns emails off");
        let err =
            jwt_with(vec![cluster(Some("prod"), "https://oidc.example/keys")], "sub@staging:x").validate().unwrap_err();
        assert!(err.to_string().contains("sub@staging:") && err.to_string().contains("name = \"staging\""), "{err}");
        let twice = jwt_with(
            vec![cluster(Some("prod"), "https://a.example/keys"), cluster(Some("prod"), "https://b.example/keys")],
            "sub:x",
        );
        assert!(twice.validate().unwrap_err().to_string().contains("used twice"));
        let bad_name = jwt_with(vec![cluster(Some("pr od"), "https://a.example/keys")], "sub:x");
        assert!(format!("{:#}", bad_name.validate().unwrap_err()).contains("`name`"));
    }

    #[test]
    fn plain_http_endpoints_are_refused_unless_on_loopback() {
        for url in ["http://localhost.attacker.example/jwks.json", "http://127.0.0.1.nip.io/jwks.json"] {
            let c = jwt_with(vec![cluster(None, url)], "sub:x");
            assert!(format!("{:#}", c.validate().unwrap_err()).contains("plain http"), "{url}");
        }
        jwt_with(vec![cluster(None, "http://127.0.0.1:9/jwks.json")], "sub:x").validate().unwrap();
        let mut c = Config::dev();
        c.kms.aws.endpoint_url = Some("http://kms.internal:4566".into());
        let err = format!("{:#}", c.validate().unwrap_err());
        assert!(err.contains("kms.aws.endpoint_url") && err.contains("insecure_allow_plaintext_http"), "{err}");
        c.kms.insecure_allow_plaintext_http = true;
        c.validate().unwrap();
        c.kms.gcp.endpoint = Some("http://127.0.0.1.nip.io".into());
        c.kms.gcp.anonymous = true;
        assert!(c.validate().unwrap_err().to_string().contains("anonymous"), "anonymous needs a loopback host");
    }

    #[test]
    fn secrets_are_redacted() {
        let mut c = Config::dev();
        c.legacy.keys.insert(
            "k".into(),
            LegacyKeyConfig { key: Some(Secret::new("c2VjcmV0")), key_file: None, namespaces: vec!["*".into()] },
        );
        let text = c.to_redacted_toml();
        assert!(text.contains("<redacted>") && !text.contains("c2VjcmV0"));
        assert!(!format!("{c:?}").contains("c2VjcmV0"));
    }
}
