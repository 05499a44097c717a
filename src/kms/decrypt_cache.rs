//! Unwrapped data keys for decoding, so the Web UI's many small requests cost one KMS call per DEK.
//!
//! What must stay true: the cache key covers the namespace, suite, KEK, wrapped bytes and KMS context,
//! so a key unwrapped for namespace A is never found for namespace B; each namespace has its own
//! bounded cache, so a flood in one cannot evict another's keys; concurrent misses for the same key
//! make one KMS call (`try_get_with`); failures are not cached. Evicted keys are zeroized on drop.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_lc_rs::digest::{Context, SHA256};

use super::{DataKey, KmsContext, KmsError};
use crate::codec::envelope::Edk;
use crate::protocol::Namespace;

/// Cache sizing and lifetimes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecryptCacheSettings {
    pub ttl: Duration,
    pub idle: Duration,
    pub capacity_per_namespace: u64,
    pub max_namespaces: u64,
}

impl Default for DecryptCacheSettings {
    fn default() -> Self {
        DecryptCacheSettings {
            ttl: Duration::from_secs(600),
            idle: Duration::from_secs(120),
            capacity_per_namespace: 1_000,
            max_namespaces: 10_000,
        }
    }
}

/// Digest that identifies one unwrap result.
pub type CacheKey = [u8; 32];

type NamespaceCache = moka::future::Cache<CacheKey, Arc<DataKey>>;

/// Per-namespace caches of unwrapped DEKs.
pub struct DecryptCache {
    settings: DecryptCacheSettings,
    namespaces: moka::sync::Cache<Namespace, NamespaceCache>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// The cache key for an EDK under a context: length-prefixed fields, hashed. The context is its
/// namespace and whether it is bound (all a `KmsContext` holds), hashed field by field so that no
/// request builds its canonical JSON or a buffer just to look a key up.
pub fn cache_key(suite: u16, edk: &Edk, ctx: &KmsContext) -> CacheKey {
    let fields: [&[u8]; 6] = [
        ctx.namespace().as_str().as_bytes(),
        &suite.to_be_bytes(),
        &[edk.provider as u8],
        edk.kek_ref.as_bytes(),
        &edk.wrapped,
        &[u8::from(ctx.is_bound())],
    ];
    let mut hash = Context::new(&SHA256);
    for field in fields {
        hash.update(&(field.len() as u32).to_be_bytes());
        hash.update(field);
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(hash.finish().as_ref());
    key
}

impl DecryptCache {
    /// An empty cache.
    pub fn new(settings: DecryptCacheSettings) -> DecryptCache {
        DecryptCache {
            settings,
            namespaces: moka::sync::Cache::new(settings.max_namespaces),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn for_namespace(&self, namespace: &Namespace) -> NamespaceCache {
        let s = self.settings;
        self.namespaces.get_with_by_ref(namespace, || {
            moka::future::Cache::builder()
                .max_capacity(s.capacity_per_namespace)
                .time_to_live(s.ttl)
                .time_to_idle(s.idle)
                .build()
        })
    }

    /// The cached key, if there is one (counted as a hit); on `None` call [`Self::get_or_unwrap`].
    pub async fn cached(&self, namespace: &Namespace, key: &CacheKey) -> Option<Arc<DataKey>> {
        let dek = self.namespaces.get(namespace)?.get(key).await?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(dek)
    }

    /// The cached key, or the result of `unwrap` (one call however many ask at once). Errors are
    /// returned to every waiter and not cached.
    pub async fn get_or_unwrap<F>(
        &self,
        namespace: &Namespace,
        key: CacheKey,
        unwrap: F,
    ) -> Result<Arc<DataKey>, Arc<KmsError>>
    where
        F: Future<Output = Result<DataKey, KmsError>>,
    {
        let cache = self.for_namespace(namespace);
        if let Some(dek) = cache.get(&key).await {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(dek);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        cache.try_get_with(key, async { unwrap.await.map(Arc::new) }).await
    }

    /// Whether a key is cached for a namespace (tests and diagnostics; does not count as a hit).
    pub fn contains(&self, namespace: &Namespace, key: &CacheKey) -> bool {
        self.namespaces.get(namespace).is_some_and(|c| c.contains_key(key))
    }

    /// Counts a key found without a lookup: the decoder reuses the last key of a request for the next
    /// payload with the same EDK, and that is still a payload that needed no unwrap.
    pub fn count_hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// Cache hits since start.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Cache misses since start.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Drops every cached key and runs moka's pending evictions, so dropped keys are zeroized now.
    pub async fn clear(&self) {
        for (_, cache) in self.namespaces.iter() {
            cache.invalidate_all();
            cache.run_pending_tasks().await;
        }
        self.namespaces.invalidate_all();
        self.namespaces.run_pending_tasks();
    }

    /// Runs pending maintenance (evictions) on every namespace cache.
    pub async fn run_pending_tasks(&self) {
        for (_, cache) in self.namespaces.iter() {
            cache.run_pending_tasks().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::{DropProbe, Provider};

    fn ns(name: &str) -> Namespace {
        Namespace::parse(name).unwrap()
    }

    fn edk(n: u8) -> Edk {
        Edk { provider: Provider::Local, kek_ref: "local://k".into(), wrapped: vec![n; 8] }
    }

    #[tokio::test]
    async fn keys_are_per_namespace_and_failures_are_not_cached() {
        let cache = DecryptCache::new(DecryptCacheSettings::default());
        let a = ns("a");
        let key_a = cache_key(1, &edk(1), &KmsContext::for_namespace(&a));
        let key_b = cache_key(1, &edk(1), &KmsContext::for_namespace(&ns("b")));
        assert_ne!(key_a, key_b);
        assert_ne!(key_a, cache_key(1, &edk(1), &KmsContext::unbound(&a)), "proxy keys are kept apart");
        assert_ne!(key_a, cache_key(2, &edk(1), &KmsContext::for_namespace(&a)), "and suites");
        assert!(cache.cached(&a, &key_a).await.is_none());
        let failed = cache.get_or_unwrap(&a, key_a, async { Err(KmsError::InvalidCiphertext) }).await;
        assert!(failed.is_err());
        assert!(!cache.contains(&a, &key_a));
        cache.get_or_unwrap(&a, key_a, async { Ok(DataKey::from_bytes([1; 32])) }).await.unwrap();
        assert!(cache.contains(&a, &key_a));
        assert!(!cache.contains(&ns("b"), &key_a));
        let hits = cache.hits();
        assert!(cache.cached(&a, &key_a).await.is_some());
        assert!(cache.cached(&ns("b"), &key_a).await.is_none());
        assert_eq!(cache.hits(), hits + 1, "a found key counts as a hit");
    }

    #[tokio::test]
    async fn a_flood_in_one_namespace_does_not_evict_another() {
        let settings = DecryptCacheSettings { capacity_per_namespace: 10, ..Default::default() };
        let cache = DecryptCache::new(settings);
        let (a, b) = (ns("a"), ns("b"));
        let b_key = cache_key(1, &edk(0), &KmsContext::for_namespace(&b));
        cache.get_or_unwrap(&b, b_key, async { Ok(DataKey::from_bytes([2; 32])) }).await.unwrap();
        for i in 0..1_000u32 {
            let mut e = edk(0);
            e.wrapped = i.to_be_bytes().to_vec();
            let k = cache_key(1, &e, &KmsContext::for_namespace(&a));
            cache.get_or_unwrap(&a, k, async { Ok(DataKey::from_bytes([3; 32])) }).await.unwrap();
        }
        cache.run_pending_tasks().await;
        assert!(cache.contains(&b, &b_key));
        let a_cache = cache.for_namespace(&a);
        a_cache.run_pending_tasks().await;
        assert!(a_cache.entry_count() <= 10, "namespace a holds {}", a_cache.entry_count());
    }

    #[tokio::test]
    async fn evicted_keys_are_zeroized() {
        let cache = DecryptCache::new(DecryptCacheSettings::default());
        let probe = Arc::new(DropProbe::default());
        let a = ns("a");
        for i in 0..5u8 {
            let k = cache_key(1, &edk(i), &KmsContext::for_namespace(&a));
            let p = probe.clone();
            let dek = cache.get_or_unwrap(&a, k, async move { Ok(DataKey::random().with_drop_probe(p)) }).await;
            drop(dek);
        }
        assert_eq!(probe.dropped(), 0, "cached keys stay alive");
        cache.clear().await;
        assert_eq!((probe.dropped(), probe.zeroized()), (5, 5));
    }
}
