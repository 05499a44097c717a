//! Everything a request needs, built once from the configuration and passed explicitly (no globals).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use anyhow::Context;

use crate::audit::Audit;
use zeroize::Zeroizing;

use crate::auth::jwks::{JwksCache, JwksSettings, KeySource, static_keys};
use crate::auth::policy::{Policies, PolicyStore};
use crate::auth::verify::{Issuer, TokenVerifier};
use crate::auth::{AuthMode, Authorizer};
use crate::clock::Clock;
use crate::codec::Codec;
use crate::codec::legacy::{LegacyKey, LegacyKeys};
use crate::config::{AuthModeConfig, Config, Mode};
use crate::kms::decrypt_cache::{DecryptCache, DecryptCacheSettings};
use crate::kms::encrypt_cache::{EncryptCache, EncryptLimits};
use crate::kms::instrumented::{Instrumented, KmsStats};
use crate::kms::keyring::{Kek, Keyring, KeyringRegistry, NamespaceKeys};
use crate::kms::local::{self, LocalBackend};
#[cfg(any(feature = "aws-kms", feature = "gcp-kms", feature = "vault-transit", feature = "azure-keyvault"))]
use crate::kms::resilient::{self, ResilienceSettings};
use crate::kms::{DataKey, KekUri, KmsBackend, Provider};
use crate::protocol::Namespace;
use crate::protocol::body::BodyBudget;
use crate::protocol::client_addr::TrustedProxies;
use crate::protocol::request::{Limits, ProtocolSettings};

/// Shared, read-only state of a running server.
pub struct AppState {
    pub protocol: ProtocolSettings,
    pub authorizer: Authorizer,
    pub codec: Codec,
    pub kms_stats: Arc<KmsStats>,
    pub audit: Audit,
    pub clock: Arc<dyn Clock>,
    /// HTTP request and TLS series for `/metrics` (the other series are read from their modules). The
    /// state owns it; the metrics middleware reads it as its own app data, so `metrics` needs no `AppState`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// `/readyz`: this replica's own state; dependency checks `kms:<provider>` and `audit` for the verbose view.
    pub readiness: Arc<crate::readiness::Readiness>,
}

impl AppState {
    /// Builds the state: loads keys, wires backends into keyrings and caches. `audit` is started by the
    /// server (`Audit::start`); the CLI's offline commands pass `Audit::disabled()`.
    pub async fn build(config: &Config, mode: Mode, clock: Arc<dyn Clock>, audit: Audit) -> anyhow::Result<AppState> {
        let kms_stats = Arc::new(KmsStats::default());
        let backends = build_backends(config, mode, &kms_stats).await?;
        let registry = build_registry(config, &backends)?;
        let mut readiness = crate::readiness::Readiness::new(clock.clone());
        readiness.add_kms_backends(&backends);
        if let Some(store) = audit.store().cloned() {
            let timeout = config.audit.write_timeout;
            readiness.add(
                "audit",
                crate::readiness::check_fn(move || {
                    let store = store.clone();
                    async move {
                        match tokio::time::timeout(timeout, store.ping()).await {
                            Ok(Ok(())) => Ok(()),
                            _ => Err("unreachable"),
                        }
                    }
                }),
            );
        }
        let encrypt = &config.cache.encrypt;
        let encrypt_cache = EncryptCache::new(
            EncryptLimits {
                max_age: encrypt.max_age,
                max_payloads: encrypt.max_payloads,
                max_bytes: encrypt.max_bytes,
                renew_before: encrypt.renew_before,
            },
            clock.clone(),
        );
        let d = &config.cache.decrypt;
        let decrypt_cache = DecryptCache::new(DecryptCacheSettings {
            ttl: d.ttl,
            idle: d.idle,
            capacity_per_namespace: d.capacity_per_namespace,
            max_namespaces: d.max_namespaces,
        });
        let legacy = build_legacy(config)?;
        let codec = Codec::new(
            registry,
            encrypt_cache,
            decrypt_cache,
            legacy,
            config.server.max_decompressed_bytes,
            config.cache.decrypt.max_unwraps_per_request,
            config.envelope.seal_suite,
        );
        let protocol = ProtocolSettings {
            path_prefix: config.server.path_prefix.clone(),
            default_namespace: config.server.default_namespace.as_deref().and_then(Namespace::parse),
            limits: Limits { max_body_bytes: config.server.max_body_bytes, max_payloads: config.server.max_payloads },
            body: BodyBudget::new(
                config.server.max_inflight_body_bytes,
                config.server.max_body_bytes,
                config.server.body_read_timeout,
            ),
            trusted_proxies: TrustedProxies::parse(&config.server.trusted_proxies).map_err(anyhow::Error::msg)?,
        };
        let authorizer = build_authorizer(config, clock.clone())?;
        let metrics = Arc::new(crate::metrics::Metrics::new(&config.server.path_prefix));
        let readiness = Arc::new(readiness);
        Ok(AppState { protocol, authorizer, codec, kms_stats, audit, clock, metrics, readiness })
    }
}

/// The authorizer for `auth.mode`; with JWT, starts the policy-file watcher.
fn build_authorizer(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Authorizer> {
    let auth = &config.auth;
    if auth.mode != Some(AuthModeConfig::Jwt) {
        return Ok(Authorizer::new(AuthMode::Disabled));
    }
    let mut issuers = Vec::new();
    for (i, raw) in auth.issuers.iter().enumerate() {
        let c = raw.resolved();
        let keys = match &c.jwks_url {
            Some(url) => {
                let settings = JwksSettings {
                    min_refresh_interval: c.jwks_min_refresh_interval,
                    max_age: c.jwks_max_age,
                    timeout: c.jwks_timeout,
                    max_bytes: c.jwks_max_bytes,
                };
                KeySource::Remote(
                    JwksCache::new(url.clone(), settings, clock.clone())
                        .with_context(|| format!("auth.issuers[{i}]: HTTP client"))?,
                )
            }
            None => KeySource::Static(static_keys(&c.keys).map_err(|e| anyhow::anyhow!("auth.issuers[{i}].{e}"))?),
        };
        let algorithms = c
            .algorithms
            .iter()
            .map(|a| a.parse().map_err(|_| anyhow::anyhow!("auth.issuers[{i}]: unknown algorithm {a}")))
            .collect::<anyhow::Result<_>>()?;
        issuers.push(Issuer {
            issuer: c.issuer.clone(),
            name: c.name.clone(),
            audiences: c.audiences.clone(),
            id_token_audiences: c.id_token_audiences.clone(),
            algorithms,
            email_claim: c.email_claim(),
            groups_claim: c.groups_claim.clone(),
            leeway: c.leeway,
            keys,
        });
    }
    let policies = match &auth.policy_file {
        Some(path) => {
            let store = Arc::new(
                PolicyStore::from_file(path, auth.identity_claims())
                    .map_err(|e| anyhow::anyhow!("auth.policy_file: {e}"))?,
            );
            auth.check_issuer_names(&store.current()).context("auth.policy_file")?;
            store.watch(auth.policy_reload_interval);
            store
        }
        None => {
            Arc::new(PolicyStore::fixed(Policies::compile(&auth.policies).map_err(|e| anyhow::anyhow!("auth.{e}"))?))
        }
    };
    let verifier = TokenVerifier::new(issuers, clock, auth.token_cache_capacity);
    Ok(Authorizer::new(AuthMode::Jwt { verifier, policies }))
}

async fn build_backends(
    config: &Config,
    mode: Mode,
    stats: &Arc<KmsStats>,
) -> anyhow::Result<HashMap<Provider, Arc<dyn KmsBackend>>> {
    let mut local_names = BTreeSet::new();
    for ring in config.keyrings.values() {
        for uri in ring.primary.iter().chain(&ring.decrypt_only) {
            let kek = KekUri::parse(uri)?;
            if kek.provider() == Provider::Local {
                local_names.insert(kek.key_part().to_owned());
            }
        }
    }
    let mut backends: HashMap<Provider, Arc<dyn KmsBackend>> = HashMap::new();
    if !local_names.is_empty() {
        let dir = config.local_key_dir();
        for name in &local_names {
            let path = local::key_path(&dir, name);
            if !path.exists() {
                if mode == Mode::Dev {
                    local::write_new_key(&dir, name)?;
                    tracing::warn!(path = %path.display(), "Generated a new local KEK for dev mode.");
                } else {
                    anyhow::bail!(
                        "local KEK file {} is missing; create it with `codec-server keygen --name {name} --dir {}`",
                        path.display(),
                        dir.display()
                    );
                }
            }
        }
        let names: Vec<String> = local_names.into_iter().collect();
        let backend = LocalBackend::load(&dir, &names)?;
        backends.insert(Provider::Local, Arc::new(Instrumented::new(Arc::new(backend), stats.clone())));
    }
    #[cfg(feature = "aws-kms")]
    {
        let keks = keks_of(config, Provider::AwsKms)?;
        if !keks.is_empty() {
            let aws = &config.kms.aws;
            let backend = crate::kms::aws::AwsBackend::new(aws, &keks).await.context("[kms.aws]")?;
            let settings = ResilienceSettings::new(aws.call_timeout, aws.max_retries);
            backends.insert(Provider::AwsKms, resilient::remote(Arc::new(backend), stats, settings));
        }
    }
    #[cfg(feature = "gcp-kms")]
    {
        let keks = keks_of(config, Provider::GcpKms)?;
        if !keks.is_empty() {
            let gcp = &config.kms.gcp;
            let backend = crate::kms::gcp::GcpBackend::new(gcp, &keks).await.context("[kms.gcp]")?;
            let settings = ResilienceSettings::new(gcp.call_timeout, gcp.max_retries);
            backends.insert(Provider::GcpKms, resilient::remote(Arc::new(backend), stats, settings));
        }
    }
    #[cfg(feature = "azure-keyvault")]
    {
        let keks = keks_of(config, Provider::AzureKeyVault)?;
        if !keks.is_empty() {
            let azure = &config.kms.azure;
            let backend = crate::kms::azure::AzureBackend::new(azure, &keks).context("[kms.azure]")?;
            let settings = ResilienceSettings::new(azure.call_timeout, azure.max_retries);
            backends.insert(Provider::AzureKeyVault, resilient::remote(Arc::new(backend), stats, settings));
        }
    }
    #[cfg(feature = "vault-transit")]
    {
        let keks = keks_of(config, Provider::VaultTransit)?;
        if !keks.is_empty() {
            let vault = config.kms.vault.as_ref().context("vault-transit KEKs need a [kms.vault] section")?;
            let backend = crate::kms::vault::VaultBackend::new(vault, keks).context("[kms.vault]")?;
            let settings = ResilienceSettings::new(vault.call_timeout, vault.max_retries);
            backends.insert(Provider::VaultTransit, resilient::remote(Arc::new(backend), stats, settings));
        }
    }
    Ok(backends)
}

/// Every distinct KEK of `provider` named by any keyring, in a stable order.
#[cfg_attr(
    not(any(feature = "aws-kms", feature = "gcp-kms", feature = "vault-transit", feature = "azure-keyvault")),
    allow(dead_code)
)]
fn keks_of(config: &Config, provider: Provider) -> anyhow::Result<Vec<KekUri>> {
    let mut uris = BTreeSet::new();
    for ring in config.keyrings.values() {
        for uri in ring.primary.iter().chain(&ring.decrypt_only) {
            let kek = KekUri::parse(uri)?;
            if kek.provider() == provider {
                uris.insert(uri.clone());
            }
        }
    }
    uris.iter().map(|uri| Ok(KekUri::parse(uri)?)).collect()
}

fn build_registry(
    config: &Config,
    backends: &HashMap<Provider, Arc<dyn KmsBackend>>,
) -> anyhow::Result<KeyringRegistry> {
    let kek = |uri: &String| -> anyhow::Result<Kek> {
        let uri = KekUri::parse(uri)?;
        let backend = backends
            .get(&uri.provider())
            .cloned()
            .with_context(|| format!("no {} backend configured for {uri}", uri.provider()))?;
        Ok(Kek { uri, backend })
    };
    let mut keyrings = HashMap::new();
    for (name, ring) in &config.keyrings {
        let keyring = Keyring {
            name: name.clone(),
            primary: ring.primary.iter().map(kek).collect::<anyhow::Result<_>>()?,
            decrypt_only: ring.decrypt_only.iter().map(kek).collect::<anyhow::Result<_>>()?,
        };
        keyrings.insert(name.clone(), Arc::new(keyring));
    }
    let mut registry = KeyringRegistry::default();
    for rule in &config.namespaces {
        let keyring =
            keyrings.get(&rule.keyring).cloned().with_context(|| format!("unknown keyring {}", rule.keyring))?;
        let keys = NamespaceKeys { keyring, compress: rule.compress, decode_failure: rule.decode_failure };
        registry.add_rule(&rule.pattern, Arc::new(keys));
    }
    Ok(registry)
}

fn build_legacy(config: &Config) -> anyhow::Result<LegacyKeys> {
    let mut keys = HashMap::new();
    for (id, key) in &config.legacy.keys {
        let text = match (&key.key, &key.key_file) {
            (Some(secret), _) => Zeroizing::new(secret.expose().to_owned()),
            (None, Some(path)) => Zeroizing::new(
                std::fs::read_to_string(path)
                    .with_context(|| format!("legacy.keys.{id}: cannot read {}", path.display()))?,
            ),
            (None, None) => anyhow::bail!("legacy.keys.{id}: set `key` or `key_file`"),
        };
        let trimmed = text.trim();
        // The samples use a 32-character ASCII key; accept that as-is, or 32 bytes as base64.
        let bytes = match trimmed.len() {
            32 => Zeroizing::new(trimmed.as_bytes().to_vec()),
            _ => Zeroizing::new(crate::protocol::base64_lenient::decode(trimmed).unwrap_or_default()),
        };
        let dek = DataKey::from_slice(&bytes)
            .with_context(|| format!("legacy.keys.{id}: must be 32 ASCII characters or base64 of 32 bytes"))?;
        keys.insert(id.clone(), LegacyKey { key: dek, namespaces: key.namespaces.clone() });
    }
    Ok(LegacyKeys::new(keys, config.legacy.max_depth))
}
