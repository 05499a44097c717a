//! The current data key per (namespace, keyring) for encoding, with usage limits.
//!
//! What must stay true: a DEK is used for at most `max_payloads` payloads and `max_bytes` bytes and for
//! at most `max_age`; the counters are reserved atomically before a seal, so they never pass a limit
//! even under concurrency; when a key is spent, exactly one caller makes the next one while the others
//! wait for it (1,000 concurrent encodes on a cold cache make one KMS data-key call).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::keyring::Keyring;
use super::{DataKey, KmsContext, KmsError};
use crate::clock::Clock;
use crate::codec::envelope::Edk;
use crate::protocol::Namespace;

/// When a data key must be replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncryptLimits {
    pub max_age: Duration,
    pub max_payloads: u64,
    pub max_bytes: u64,
}

impl Default for EncryptLimits {
    fn default() -> Self {
        EncryptLimits { max_age: Duration::from_secs(300), max_payloads: 1 << 20, max_bytes: 1 << 30 }
    }
}

/// A DEK in use for encoding, with its wrapped copies and usage so far.
pub struct CurrentDek {
    pub dek: Arc<DataKey>,
    pub edks: Arc<[Edk]>,
    created: Instant,
    payloads: AtomicU64,
    bytes: AtomicU64,
}

impl CurrentDek {
    /// Reserves one payload of `len` bytes, or says the key is spent. Never lets a counter pass its limit.
    fn try_reserve(&self, len: u64, now: Instant, limits: &EncryptLimits) -> bool {
        if now.saturating_duration_since(self.created) >= limits.max_age {
            return false;
        }
        let payload_ok = self
            .payloads
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| (p < limits.max_payloads).then_some(p + 1))
            .is_ok();
        if !payload_ok {
            return false;
        }
        let bytes_ok = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                b.checked_add(len).filter(|n| *n <= limits.max_bytes)
            })
            .is_ok();
        if !bytes_ok {
            // Give the payload slot back: the counters record only what was really sealed.
            self.payloads.fetch_sub(1, Ordering::AcqRel);
        }
        bytes_ok
    }

    /// Payloads sealed (reserved) with this key so far.
    pub fn payloads_used(&self) -> u64 {
        self.payloads.load(Ordering::Acquire)
    }

    /// Bytes sealed (reserved) with this key so far.
    pub fn bytes_used(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }
}

#[derive(Default)]
struct Slot {
    current: RwLock<Option<Arc<CurrentDek>>>,
    refill: tokio::sync::Mutex<()>,
}

impl Slot {
    fn current(&self) -> Option<Arc<CurrentDek>> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, dek: Arc<CurrentDek>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(dek);
    }
}

/// Current DEKs by (namespace, keyring name).
pub struct EncryptCache {
    limits: EncryptLimits,
    clock: Arc<dyn Clock>,
    slots: Mutex<HashMap<(Namespace, String), Arc<Slot>>>,
    created: AtomicU64,
    reused: AtomicU64,
}

/// Why no data key could be leased.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(transparent)]
    Kms(#[from] KmsError),
    /// Larger than one data key may seal (configuration validation keeps `max_bytes` above the body limit).
    #[error("payload of {len} bytes exceeds the per-key byte limit")]
    PayloadTooLarge { len: u64 },
}

impl EncryptCache {
    /// An empty cache.
    pub fn new(limits: EncryptLimits, clock: Arc<dyn Clock>) -> EncryptCache {
        EncryptCache { limits, clock, slots: Mutex::default(), created: AtomicU64::new(0), reused: AtomicU64::new(0) }
    }

    fn slot(&self, namespace: &Namespace, keyring: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry((namespace.clone(), keyring.to_owned())).or_default().clone()
    }

    /// A DEK with room for one more payload of `len` bytes, making a new one through the keyring when
    /// the current one is spent.
    pub async fn lease(
        &self,
        namespace: &Namespace,
        keyring: &Keyring,
        len: u64,
    ) -> Result<Arc<CurrentDek>, LeaseError> {
        if len > self.limits.max_bytes {
            return Err(LeaseError::PayloadTooLarge { len });
        }
        let slot = self.slot(namespace, &keyring.name);
        if let Some(current) = slot.current()
            && current.try_reserve(len, self.clock.now(), &self.limits)
        {
            self.reused.fetch_add(1, Ordering::Relaxed);
            return Ok(current);
        }
        let _refill = slot.refill.lock().await;
        // Another caller may have refilled the slot while we waited.
        if let Some(current) = slot.current()
            && current.try_reserve(len, self.clock.now(), &self.limits)
        {
            self.reused.fetch_add(1, Ordering::Relaxed);
            return Ok(current);
        }
        let (dek, edks) = keyring.new_data_key(&KmsContext::for_namespace(namespace)).await?;
        self.created.fetch_add(1, Ordering::Relaxed);
        let fresh = Arc::new(CurrentDek {
            dek: Arc::new(dek),
            edks: edks.into(),
            created: self.clock.now(),
            payloads: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        });
        if !fresh.try_reserve(len, self.clock.now(), &self.limits) {
            return Err(LeaseError::PayloadTooLarge { len });
        }
        slot.set(fresh.clone());
        Ok(fresh)
    }

    /// Data keys made since start.
    pub fn keys_created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    /// Leases served by a data key already in the cache (cache hits; `keys_created` counts the misses).
    pub fn leases_reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }

    /// Drops every cached DEK (key rotation, tests).
    pub fn clear(&self) {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::kms::keyring::Kek;
    use crate::kms::{DropProbe, KekUri, KmsBackend, Provider, WrappedKey};
    use async_trait::async_trait;

    /// Makes keys that report their drop to a probe; counts data-key calls.
    struct ProbeBackend {
        probe: Arc<DropProbe>,
        calls: AtomicU64,
    }

    #[async_trait]
    impl KmsBackend for ProbeBackend {
        fn provider(&self) -> Provider {
            Provider::Local
        }
        async fn wrap(&self, _: &KekUri, _: &DataKey, _: &KmsContext) -> Result<WrappedKey, KmsError> {
            Ok(WrappedKey(vec![1]))
        }
        async fn unwrap(&self, kek: &KekUri, _: &WrappedKey, _: &KmsContext) -> Result<DataKey, KmsError> {
            Err(KmsError::KeyNotFound { kek: kek.to_string() })
        }
        async fn generate_data_key(&self, _: &KekUri, _: &KmsContext) -> Result<(DataKey, WrappedKey), KmsError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok((DataKey::random().with_drop_probe(self.probe.clone()), WrappedKey(vec![1])))
        }
        async fn health_check(&self) -> Result<(), KmsError> {
            Ok(())
        }
    }

    fn setup(limits: EncryptLimits) -> (EncryptCache, Keyring, Arc<ProbeBackend>, Arc<ManualClock>) {
        let backend = Arc::new(ProbeBackend { probe: Arc::default(), calls: AtomicU64::new(0) });
        let keyring = Keyring {
            name: "k".into(),
            primary: vec![Kek { uri: KekUri::parse("local://k").unwrap(), backend: backend.clone() }],
            decrypt_only: vec![],
        };
        let clock = Arc::new(ManualClock::default());
        (EncryptCache::new(limits, clock.clone()), keyring, backend, clock)
    }

    #[tokio::test]
    async fn replaced_keys_are_zeroized_once_no_seal_holds_them() {
        let limits = EncryptLimits { max_payloads: 1, ..EncryptLimits::default() };
        let (cache, keyring, backend, _) = setup(limits);
        let ns = Namespace::parse("a").unwrap();
        for _ in 0..3 {
            drop(cache.lease(&ns, &keyring, 10).await.unwrap());
        }
        assert_eq!(backend.calls.load(Ordering::SeqCst), 3);
        assert_eq!((backend.probe.dropped(), backend.probe.zeroized()), (2, 2), "two replaced keys");
        cache.clear();
        assert_eq!((backend.probe.dropped(), backend.probe.zeroized()), (3, 3));
    }

    #[tokio::test]
    async fn concurrent_leases_on_a_cold_cache_make_one_key_and_never_pass_a_limit() {
        let limits = EncryptLimits { max_payloads: 100, ..EncryptLimits::default() };
        let (cache, keyring, backend, _) = setup(limits);
        let ns = Namespace::parse("a").unwrap();
        let leases = futures_util::future::join_all((0..1000).map(|_| cache.lease(&ns, &keyring, 1))).await;
        assert!(leases.iter().all(Result::is_ok));
        assert_eq!(backend.calls.load(Ordering::SeqCst), 10);
        for lease in leases.iter().flatten() {
            assert!(lease.payloads_used() <= 100 && lease.bytes_used() == lease.payloads_used());
        }
    }

    #[tokio::test]
    async fn age_is_measured_on_the_injected_clock() {
        let (cache, keyring, backend, clock) = setup(EncryptLimits::default());
        let ns = Namespace::parse("a").unwrap();
        cache.lease(&ns, &keyring, 1).await.unwrap();
        clock.advance(Duration::from_secs(299));
        cache.lease(&ns, &keyring, 1).await.unwrap();
        assert_eq!(backend.calls.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_secs(1));
        cache.lease(&ns, &keyring, 1).await.unwrap();
        assert_eq!(backend.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_payload_larger_than_a_key_may_seal_is_refused() {
        let limits = EncryptLimits { max_bytes: 10, ..EncryptLimits::default() };
        let (cache, keyring, _, _) = setup(limits);
        let ns = Namespace::parse("a").unwrap();
        assert!(matches!(cache.lease(&ns, &keyring, 11).await, Err(LeaseError::PayloadTooLarge { len: 11 })));
    }
}
