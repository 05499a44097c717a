//! The current data key per (namespace, keyring) for encoding, with usage limits, replaced ahead of
//! those limits off the request path.
//!
//! What must stay true: a DEK is used for at most `max_payloads` payloads and `max_bytes` bytes and for
//! at most `max_age`; the counters are reserved atomically before a seal, so they never pass a limit
//! even under concurrency. When the current key reaches `max_age - renew_before` (with jitter, so
//! replicas do not call the KMS together) or 80 % of a usage limit, a background task makes the next one
//! while the current key keeps serving: an encode waits on the KMS only on a cold cache or when a key
//! hits a hard limit before its successor is ready (a KMS outage), and then exactly one caller makes
//! the next key while the others wait for it. If that call fails, the callers that waited for it get
//! its failure at once instead of each calling the KMS in turn: in a KMS outage the n-th waiting encode
//! would otherwise answer only after n failed calls (the 600 s soak's encodes waited up to 13 s behind
//! each other's ~0.3 s retry cycles, docs/reliability.md).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::keyring::Keyring;
use super::{DataKey, KmsContext, KmsError};
use crate::clock::Clock;
use crate::codec::envelope::Edk;
use crate::protocol::Namespace;

/// Usage fraction of `max_payloads` / `max_bytes` at which the next key is made in the background.
const RENEW_AT_USAGE_PERCENT: u64 = 80;
/// After a failed background renewal, the next attempt waits this long (the current key still serves).
const RENEW_RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// When a data key must be replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncryptLimits {
    pub max_age: Duration,
    pub max_payloads: u64,
    pub max_bytes: u64,
    /// Make the next key in the background this long before `max_age` (jittered by up to a quarter of
    /// it), or at 80 % of `max_payloads` / `max_bytes`. Zero: only when a limit is reached.
    pub renew_before: Duration,
}

impl Default for EncryptLimits {
    fn default() -> Self {
        EncryptLimits {
            max_age: Duration::from_secs(300),
            max_payloads: 1 << 20,
            max_bytes: 1 << 30,
            renew_before: Duration::from_secs(60),
        }
    }
}

/// A DEK in use for encoding, with its wrapped copies and usage so far.
pub struct CurrentDek {
    pub dek: Arc<DataKey>,
    pub edks: Arc<[Edk]>,
    created: Instant,
    /// Age from which the next key is made in the background (`None`: never ahead of the limits).
    renew_at: Option<Duration>,
    payloads: AtomicU64,
    bytes: AtomicU64,
}

impl CurrentDek {
    fn new(dek: DataKey, edks: Vec<Edk>, created: Instant, limits: &EncryptLimits) -> CurrentDek {
        let renew_at = (!limits.renew_before.is_zero()).then(|| {
            let lead = limits.renew_before.min(limits.max_age);
            // Up to a quarter of the lead later, so replicas that started together renew apart.
            let mut r = [0u8; 4];
            crate::codec::random::fill(&mut r);
            let jitter = lead.mul_f64(f64::from(u32::from_be_bytes(r)) / f64::from(u32::MAX) / 4.0);
            (limits.max_age - lead) + jitter
        });
        CurrentDek {
            dek: Arc::new(dek),
            edks: edks.into(),
            created,
            renew_at,
            payloads: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

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

    /// Whether the next key should be made now (ahead of the hard limits).
    fn renewal_due(&self, now: Instant, limits: &EncryptLimits) -> bool {
        let Some(renew_at) = self.renew_at else { return false };
        let used = |n: &AtomicU64, max: u64| {
            n.load(Ordering::Acquire).saturating_mul(100) >= max.saturating_mul(RENEW_AT_USAGE_PERCENT)
        };
        now.saturating_duration_since(self.created) >= renew_at
            || used(&self.payloads, limits.max_payloads)
            || used(&self.bytes, limits.max_bytes)
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
    /// Held by the one caller making a key on the request path; the others wait for its outcome.
    refill: tokio::sync::Mutex<LastRefill>,
    /// Refills on the request path finished so far (successful or not); read before waiting for
    /// `refill`, to tell whether one finished meanwhile.
    refills: AtomicU64,
    /// A background renewal is running.
    renewing: AtomicBool,
    /// No background renewal before this instant (after a failed one).
    next_renewal: Mutex<Option<Instant>>,
}

/// The outcome of the last refill on the request path, for the callers that waited for it.
#[derive(Default)]
struct LastRefill {
    failed: Option<Arc<KmsError>>,
}

impl Slot {
    fn current(&self) -> Option<Arc<CurrentDek>> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, dek: Arc<CurrentDek>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(dek);
    }
}

/// Why a data key was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationReason {
    /// In the background, ahead of the current key's limits: no request waited.
    Scheduled,
    /// On the request path: a cold cache, or a key that hit a hard limit before its successor was ready.
    OnDemand,
}

impl RotationReason {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RotationReason::Scheduled => "scheduled",
            RotationReason::OnDemand => "on-demand",
        }
    }
}

/// Counters shared with the background renewals.
#[derive(Default)]
struct EncryptStats {
    reused: AtomicU64,
    scheduled: AtomicU64,
    on_demand: AtomicU64,
    failed_renewals: AtomicU64,
    last_rotation: Mutex<Option<Instant>>,
}

impl EncryptStats {
    fn rotated(&self, reason: RotationReason, at: Instant) {
        let counter = match reason {
            RotationReason::Scheduled => &self.scheduled,
            RotationReason::OnDemand => &self.on_demand,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        *self.last_rotation.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
    }
}

/// Current DEKs by (namespace, keyring name).
pub struct EncryptCache {
    limits: EncryptLimits,
    clock: Arc<dyn Clock>,
    slots: Mutex<HashMap<(Namespace, String), Arc<Slot>>>,
    stats: Arc<EncryptStats>,
}

/// Why no data key could be leased.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Shared by every caller that waited for the same failed KMS call.
    #[error(transparent)]
    Kms(Arc<KmsError>),
    /// Larger than one data key may seal (configuration validation keeps `max_bytes` above the body limit).
    #[error("payload of {len} bytes exceeds the per-key byte limit")]
    PayloadTooLarge { len: u64 },
}

impl From<KmsError> for LeaseError {
    fn from(error: KmsError) -> LeaseError {
        LeaseError::Kms(Arc::new(error))
    }
}

impl EncryptCache {
    /// An empty cache.
    pub fn new(limits: EncryptLimits, clock: Arc<dyn Clock>) -> EncryptCache {
        EncryptCache { limits, clock, slots: Mutex::default(), stats: Arc::default() }
    }

    fn slot(&self, namespace: &Namespace, keyring: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry((namespace.clone(), keyring.to_owned())).or_default().clone()
    }

    /// A DEK with room for one more payload of `len` bytes. The current key serves while the next one
    /// is made in the background; only a cold cache or a spent key makes the caller wait for the KMS.
    pub async fn lease(
        &self,
        namespace: &Namespace,
        keyring: &Arc<Keyring>,
        len: u64,
    ) -> Result<Arc<CurrentDek>, LeaseError> {
        if len > self.limits.max_bytes {
            return Err(LeaseError::PayloadTooLarge { len });
        }
        let slot = self.slot(namespace, &keyring.name);
        if let Some(current) = self.reserve_current(&slot, len) {
            self.renew_if_due(&slot, &current, namespace, keyring);
            return Ok(current);
        }
        let seen = slot.refills.load(Ordering::Acquire);
        let mut refill = slot.refill.lock().await;
        // Another caller (or a background renewal) may have refilled the slot while we waited.
        if let Some(current) = self.reserve_current(&slot, len) {
            return Ok(current);
        }
        // Or its call failed while we waited: that is our answer too (see the module comment).
        if slot.refills.load(Ordering::Acquire) != seen
            && let Some(failed) = &refill.failed
        {
            return Err(LeaseError::Kms(failed.clone()));
        }
        let made = keyring.new_data_key(&KmsContext::for_namespace(namespace)).await.map_err(Arc::new);
        refill.failed = made.as_ref().err().cloned();
        slot.refills.fetch_add(1, Ordering::Release);
        let (dek, edks) = made.map_err(LeaseError::Kms)?;
        let now = self.clock.now();
        self.stats.rotated(RotationReason::OnDemand, now);
        let fresh = Arc::new(CurrentDek::new(dek, edks, now, &self.limits));
        if !fresh.try_reserve(len, now, &self.limits) {
            return Err(LeaseError::PayloadTooLarge { len });
        }
        slot.set(fresh.clone());
        Ok(fresh)
    }

    fn reserve_current(&self, slot: &Slot, len: u64) -> Option<Arc<CurrentDek>> {
        let current = slot.current()?;
        current.try_reserve(len, self.clock.now(), &self.limits).then(|| {
            self.stats.reused.fetch_add(1, Ordering::Relaxed);
            current
        })
    }

    /// Starts one background renewal for the slot when its key is due and none is running.
    fn renew_if_due(&self, slot: &Arc<Slot>, current: &CurrentDek, namespace: &Namespace, keyring: &Arc<Keyring>) {
        let now = self.clock.now();
        if !current.renewal_due(now, &self.limits) {
            return;
        }
        if slot.next_renewal.lock().unwrap_or_else(|e| e.into_inner()).is_some_and(|after| now < after) {
            return;
        }
        if slot.renewing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (slot, keyring, namespace) = (slot.clone(), keyring.clone(), namespace.clone());
        let (clock, stats, limits) = (self.clock.clone(), self.stats.clone(), self.limits);
        tokio::spawn(async move {
            match keyring.new_data_key(&KmsContext::for_namespace(&namespace)).await {
                Ok((dek, edks)) => {
                    let now = clock.now();
                    slot.set(Arc::new(CurrentDek::new(dek, edks, now, &limits)));
                    stats.rotated(RotationReason::Scheduled, now);
                    *slot.next_renewal.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                Err(error) => {
                    stats.failed_renewals.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%namespace, keyring = %keyring.name, %error, "Background data-key renewal failed; the current key keeps serving until its limits.");
                    *slot.next_renewal.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(clock.now() + RENEW_RETRY_INTERVAL);
                }
            }
            slot.renewing.store(false, Ordering::Release);
        });
    }

    /// Data keys made since start (scheduled and on demand).
    pub fn keys_created(&self) -> u64 {
        self.rotations(RotationReason::Scheduled) + self.rotations(RotationReason::OnDemand)
    }

    /// Data keys made since start for one reason.
    pub fn rotations(&self, reason: RotationReason) -> u64 {
        match reason {
            RotationReason::Scheduled => self.stats.scheduled.load(Ordering::Relaxed),
            RotationReason::OnDemand => self.stats.on_demand.load(Ordering::Relaxed),
        }
    }

    /// Background renewals that failed (the current key kept serving).
    pub fn failed_renewals(&self) -> u64 {
        self.stats.failed_renewals.load(Ordering::Relaxed)
    }

    /// Time since a data key was last made, if one was.
    pub fn since_last_rotation(&self) -> Option<Duration> {
        let last = *self.stats.last_rotation.lock().unwrap_or_else(|e| e.into_inner());
        last.map(|at| self.clock.now().saturating_duration_since(at))
    }

    /// Leases served by a data key already in the cache (cache hits; `keys_created` counts the misses).
    pub fn leases_reused(&self) -> u64 {
        self.stats.reused.load(Ordering::Relaxed)
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
    use futures_util::FutureExt;

    /// Makes keys that report their drop to a probe; counts data-key calls (`calls` the successful ones,
    /// `attempts` all). With a gate, each data-key call waits for one permit (a KMS that answers only
    /// when the test says so); `down` fails them.
    struct ProbeBackend {
        probe: Arc<DropProbe>,
        calls: AtomicU64,
        attempts: AtomicU64,
        gate: Option<Arc<tokio::sync::Semaphore>>,
        down: AtomicBool,
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
            if let Some(gate) = &self.gate {
                gate.acquire().await.unwrap().forget();
            }
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(KmsError::Unavailable { retry_after: Duration::from_secs(1), source: "down".into() });
            }
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok((DataKey::random().with_drop_probe(self.probe.clone()), WrappedKey(vec![1])))
        }
        async fn health_check(&self) -> Result<(), KmsError> {
            Ok(())
        }
    }

    fn setup_with(
        limits: EncryptLimits,
        gate: Option<Arc<tokio::sync::Semaphore>>,
    ) -> (EncryptCache, Arc<Keyring>, Arc<ProbeBackend>, Arc<ManualClock>) {
        let backend = Arc::new(ProbeBackend {
            probe: Arc::default(),
            calls: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            gate,
            down: AtomicBool::new(false),
        });
        let keyring = Arc::new(Keyring {
            name: "k".into(),
            primary: vec![Kek { uri: KekUri::parse("local://k").unwrap(), backend: backend.clone() }],
            decrypt_only: vec![],
        });
        let clock = Arc::new(ManualClock::default());
        (EncryptCache::new(limits, clock.clone()), keyring, backend, clock)
    }

    /// Limits without ahead-of-time renewal, for the tests of the hard limits alone.
    fn setup(limits: EncryptLimits) -> (EncryptCache, Arc<Keyring>, Arc<ProbeBackend>, Arc<ManualClock>) {
        setup_with(EncryptLimits { renew_before: Duration::ZERO, ..limits }, None)
    }

    /// Lets spawned renewals run until `done` holds (bounded; no sleeping, no timing).
    async fn settle(done: impl Fn() -> bool) {
        for _ in 0..10_000 {
            if done() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("background renewal did not finish");
    }

    #[tokio::test]
    async fn no_encode_waits_on_the_kms_across_100_rotations() {
        let gate = Arc::new(tokio::sync::Semaphore::new(1));
        let limits = EncryptLimits::default();
        let (cache, keyring, backend, clock) = setup_with(limits, Some(gate.clone()));
        let ns = Namespace::parse("a").unwrap();
        let first = cache.lease(&ns, &keyring, 1).await.unwrap();
        assert_eq!(cache.rotations(RotationReason::OnDemand), 1, "a cold cache waits once");
        let mut current = first;
        for round in 1..=100 {
            // Past the renewal point (at most max_age - 3/4 renew_before), before the hard limit.
            clock.advance(limits.max_age - limits.renew_before / 2);
            // The KMS is holding its answer: every lease is served at once by the current key.
            for _ in 0..10 {
                let lease = cache.lease(&ns, &keyring, 1).now_or_never().expect("lease never waits").unwrap();
                assert!(Arc::ptr_eq(&lease, &current), "round {round}: the old key serves until the new one is ready");
            }
            gate.add_permits(1);
            settle(|| cache.rotations(RotationReason::Scheduled) == round).await;
            let next = cache.lease(&ns, &keyring, 1).now_or_never().expect("lease never waits").unwrap();
            assert!(!Arc::ptr_eq(&next, &current), "round {round}: the renewed key is in use");
            current = next;
        }
        assert_eq!(cache.rotations(RotationReason::OnDemand), 1, "no request ever made a key after warm-up");
        assert_eq!(backend.calls.load(Ordering::SeqCst), 101);
        assert_eq!(cache.since_last_rotation(), Some(Duration::ZERO));
    }

    #[tokio::test]
    async fn a_kms_outage_across_a_rotation_keeps_the_old_key_until_its_hard_limit() {
        let limits = EncryptLimits::default();
        let (cache, keyring, backend, clock) = setup_with(limits, None);
        let ns = Namespace::parse("a").unwrap();
        let first = cache.lease(&ns, &keyring, 1).await.unwrap();
        backend.down.store(true, Ordering::SeqCst);
        clock.advance(limits.max_age - limits.renew_before / 2);
        let lease = cache.lease(&ns, &keyring, 1).now_or_never().unwrap().unwrap();
        assert!(Arc::ptr_eq(&lease, &first));
        settle(|| cache.failed_renewals() == 1).await;
        // Within the retry interval nothing calls the KMS again; the old key keeps serving.
        assert!(Arc::ptr_eq(&cache.lease(&ns, &keyring, 1).await.unwrap(), &first));
        assert_eq!(cache.failed_renewals(), 1);
        // At the hard limit the KMS is still down: the encode fails (503 at the edge), nothing is sealed.
        clock.advance(limits.renew_before);
        assert!(matches!(cache.lease(&ns, &keyring, 1).await, Err(LeaseError::Kms(e)) if e.is_unavailable()));
        assert!(first.payloads_used() <= limits.max_payloads);
        backend.down.store(false, Ordering::SeqCst);
        let fresh = cache.lease(&ns, &keyring, 1).await.unwrap();
        assert!(!Arc::ptr_eq(&fresh, &first));
        assert_eq!(cache.rotations(RotationReason::OnDemand), 2);
    }

    #[tokio::test]
    async fn usage_limits_renew_at_80_percent_and_never_pass_100() {
        let limits = EncryptLimits { max_payloads: 10, ..EncryptLimits::default() };
        let gate = Arc::new(tokio::sync::Semaphore::new(1));
        let (cache, keyring, _, _) = setup_with(limits, Some(gate.clone()));
        let ns = Namespace::parse("a").unwrap();
        let first = cache.lease(&ns, &keyring, 1).await.unwrap();
        for _ in 1..10 {
            assert!(Arc::ptr_eq(&cache.lease(&ns, &keyring, 1).now_or_never().unwrap().unwrap(), &first));
        }
        assert_eq!(first.payloads_used(), 10, "the hard limit is reached while the renewal waits on the KMS");
        // The 11th lease cannot use the spent key; it waits for the renewal already running.
        let eleventh = tokio::spawn({
            let (ns, keyring) = (ns.clone(), keyring.clone());
            let cache = Arc::new(cache);
            let c = cache.clone();
            async move { (c.lease(&ns, &keyring, 1).await.map(|l| l.payloads_used()), cache) }
        });
        gate.add_permits(2);
        let (used, cache) = eleventh.await.unwrap();
        assert_eq!(used.unwrap(), 1, "a new key");
        assert_eq!(first.payloads_used(), 10, "never past the limit");
        assert_eq!(
            cache.keys_created(),
            cache.rotations(RotationReason::Scheduled) + cache.rotations(RotationReason::OnDemand)
        );
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
    async fn the_encodes_waiting_for_a_failed_kms_call_share_its_failure_instead_of_calling_in_turn() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let limits = EncryptLimits { renew_before: Duration::ZERO, ..EncryptLimits::default() };
        let (cache, keyring, backend, _) = setup_with(limits, Some(gate.clone()));
        let ns = Namespace::parse("a").unwrap();
        backend.down.store(true, Ordering::SeqCst);
        // 50 encodes on a cold cache while the KMS is down: the first one calls, the others wait for it.
        let leases = futures_util::future::join_all((0..50).map(|_| cache.lease(&ns, &keyring, 1)));
        // Enough answers for one call each, so that calling in turn would show in `attempts`.
        let (leases, ()) = futures_util::future::join(leases, async { gate.add_permits(50) }).await;
        assert!(leases.iter().all(|l| matches!(l, Err(LeaseError::Kms(e)) if e.is_unavailable())));
        assert_eq!(backend.attempts.load(Ordering::SeqCst), 1, "one KMS call for all 50");
        // An encode that arrives after the failure makes a call of its own.
        backend.down.store(false, Ordering::SeqCst);
        cache.lease(&ns, &keyring, 1).await.unwrap();
        assert_eq!(backend.attempts.load(Ordering::SeqCst), 2);
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
