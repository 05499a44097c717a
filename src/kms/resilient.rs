//! Fault handling in front of a remote KMS (DESIGN §5): a deadline on every call, at most a few retries
//! with jittered backoff when the KMS is throttling, failing or slow, and a short negative cache so a
//! flood of payloads whose key is refused does not hammer the KMS.
//!
//! What must stay true: only `KmsError::Unavailable` (throttling, 5xx, connection failures, a failed
//! response integrity check) and a missed deadline are retried; a refusal (access denied, key not
//! found or disabled, invalid ciphertext) is returned at once. When the retries run out the caller gets
//! `Unavailable { retry_after }`, which the HTTP edge turns into 503 with `Retry-After`. The negative
//! cache only answers for the exact (KEK, context, wrapped bytes) that was refused, so a forged payload
//! can never block the unwrap of genuine ones.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_lc_rs::digest::{SHA256, digest};
use tokio::time::Instant;

use super::{DataKey, KekUri, KmsBackend, KmsContext, KmsError, Provider, WrappedKey};

/// Deadlines, retries and the negative cache of one backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResilienceSettings {
    /// Deadline of one attempt.
    pub call_timeout: Duration,
    /// Attempts after the first one, for retryable failures only.
    pub max_retries: u32,
    /// Backoff before the first retry; doubled for each further one, with jitter.
    pub base_backoff: Duration,
    /// The `Retry-After` to suggest when the retries run out (unless the KMS said more).
    pub retry_after: Duration,
    /// How long an unwrap refusal is remembered.
    pub negative_ttl: Duration,
    /// Refusals remembered at most (the cache is cleared when full).
    pub negative_capacity: usize,
}

impl Default for ResilienceSettings {
    fn default() -> Self {
        ResilienceSettings {
            call_timeout: Duration::from_secs(2),
            max_retries: 2,
            base_backoff: Duration::from_millis(100),
            retry_after: Duration::from_secs(2),
            negative_ttl: Duration::from_secs(5),
            negative_capacity: 10_000,
        }
    }
}

impl ResilienceSettings {
    /// The defaults with a configured deadline and retry count.
    pub fn new(call_timeout: Duration, max_retries: u32) -> ResilienceSettings {
        ResilienceSettings { call_timeout, max_retries, ..ResilienceSettings::default() }
    }
}

/// A refusal worth remembering, without its (possibly large) source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    AccessDenied,
    KeyNotFound,
    KeyDisabled,
    InvalidCiphertext,
}

impl Refusal {
    fn of(e: &KmsError) -> Option<Refusal> {
        match e {
            KmsError::AccessDenied { .. } => Some(Refusal::AccessDenied),
            KmsError::KeyNotFound { .. } => Some(Refusal::KeyNotFound),
            KmsError::KeyDisabled { .. } => Some(Refusal::KeyDisabled),
            KmsError::InvalidCiphertext => Some(Refusal::InvalidCiphertext),
            _ => None,
        }
    }

    fn error(self, kek: &KekUri) -> KmsError {
        match self {
            Refusal::AccessDenied => KmsError::AccessDenied { kek: kek.to_string() },
            Refusal::KeyNotFound => KmsError::KeyNotFound { kek: kek.to_string() },
            Refusal::KeyDisabled => KmsError::KeyDisabled { kek: kek.to_string() },
            Refusal::InvalidCiphertext => KmsError::InvalidCiphertext,
        }
    }
}

type RefusalKey = [u8; 32];

/// A backend decorator that adds deadlines, retries and the negative cache.
pub struct Resilient {
    inner: Arc<dyn KmsBackend>,
    settings: ResilienceSettings,
    refusals: Mutex<HashMap<RefusalKey, (Instant, Refusal)>>,
}

impl Resilient {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn KmsBackend>, settings: ResilienceSettings) -> Resilient {
        Resilient { inner, settings, refusals: Mutex::default() }
    }

    /// Runs `call` with a deadline per attempt, retrying retryable failures.
    async fn call<T, F, Fut>(&self, op: &'static str, kek: Option<&KekUri>, call: F) -> Result<T, KmsError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, KmsError>>,
    {
        let mut retries = 0;
        loop {
            let outcome = match tokio::time::timeout(self.settings.call_timeout, call()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(KmsError::Unavailable {
                    retry_after: self.settings.retry_after,
                    source: format!("no answer within {:?}", self.settings.call_timeout).into(),
                }),
            };
            let error = match outcome {
                Err(e) if e.is_unavailable() => e,
                other => return other,
            };
            let kek_label = kek.map(KekUri::as_str).unwrap_or("-");
            if retries >= self.settings.max_retries {
                tracing::warn!(provider = %self.provider(), op, kek = kek_label, attempts = retries + 1, error = %chain(&error), "KMS call failed; giving up.");
                return Err(match error {
                    KmsError::Unavailable { retry_after, source } => {
                        KmsError::Unavailable { retry_after: retry_after.max(self.settings.retry_after), source }
                    }
                    other => other,
                });
            }
            retries += 1;
            let delay = backoff(self.settings.base_backoff, retries);
            tracing::warn!(provider = %self.provider(), op, kek = kek_label, retry = retries, error = %chain(&error), "KMS call failed; retrying.");
            tokio::time::sleep(delay).await;
        }
    }

    fn refusal_key(kek: &KekUri, wrapped: &WrappedKey, ctx: &KmsContext) -> RefusalKey {
        let ctx = ctx.canonical_json();
        let mut input = Vec::with_capacity(16 + kek.as_str().len() + ctx.len() + wrapped.0.len());
        for field in [kek.as_str().as_bytes(), ctx.as_bytes(), &wrapped.0] {
            input.extend_from_slice(&(field.len() as u32).to_be_bytes());
            input.extend_from_slice(field);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(digest(&SHA256, &input).as_ref());
        key
    }

    fn remembered(&self, key: &RefusalKey) -> Option<Refusal> {
        let refusals = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        refusals.get(key).filter(|(until, _)| Instant::now() < *until).map(|(_, refusal)| *refusal)
    }

    fn remember(&self, key: RefusalKey, refusal: Refusal) {
        let now = Instant::now();
        let mut refusals = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        if refusals.len() >= self.settings.negative_capacity {
            refusals.retain(|_, (until, _)| now < *until);
            if refusals.len() >= self.settings.negative_capacity {
                refusals.clear();
            }
        }
        refusals.insert(key, (now + self.settings.negative_ttl, refusal));
    }
}

/// The stack every remote backend runs in: `Resilient` outside, so the call counters inside it count
/// each attempt the KMS really saw (retries included, negative-cache answers not).
pub fn remote(
    inner: Arc<dyn KmsBackend>,
    stats: &Arc<super::instrumented::KmsStats>,
    settings: ResilienceSettings,
) -> Arc<dyn KmsBackend> {
    let counted: Arc<dyn KmsBackend> = Arc::new(super::instrumented::Instrumented::new(inner, stats.clone()));
    Arc::new(Resilient::new(counted, settings))
}

/// Exponential backoff with jitter: a random delay between half and all of `base * 2^(retry-1)`.
fn backoff(base: Duration, retry: u32) -> Duration {
    let ceiling = base.saturating_mul(1u32 << retry.saturating_sub(1).min(10));
    let mut random = [0u8; 4];
    crate::codec::random::fill(&mut random);
    let fraction = f64::from(u32::from_be_bytes(random)) / f64::from(u32::MAX);
    ceiling.mul_f64(0.5 + fraction / 2.0)
}

/// The error and its sources on one line, for the log (KMS errors carry no key material).
fn chain(e: &KmsError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[async_trait]
impl KmsBackend for Resilient {
    fn provider(&self) -> Provider {
        self.inner.provider()
    }

    async fn wrap(&self, kek: &KekUri, dek: &DataKey, ctx: &KmsContext) -> Result<WrappedKey, KmsError> {
        self.call("wrap", Some(kek), || self.inner.wrap(kek, dek, ctx)).await
    }

    async fn unwrap(&self, kek: &KekUri, wrapped: &WrappedKey, ctx: &KmsContext) -> Result<DataKey, KmsError> {
        let key = Resilient::refusal_key(kek, wrapped, ctx);
        if let Some(refusal) = self.remembered(&key) {
            return Err(refusal.error(kek));
        }
        let result = self.call("unwrap", Some(kek), || self.inner.unwrap(kek, wrapped, ctx)).await;
        if let Err(e) = &result
            && let Some(refusal) = Refusal::of(e)
        {
            self.remember(key, refusal);
        }
        result
    }

    async fn generate_data_key(&self, kek: &KekUri, ctx: &KmsContext) -> Result<(DataKey, WrappedKey), KmsError> {
        self.call("generate_data_key", Some(kek), || self.inner.generate_data_key(kek, ctx)).await
    }

    async fn health_check(&self) -> Result<(), KmsError> {
        self.call("health_check", None, || self.inner.health_check()).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::protocol::Namespace;

    /// What one scripted call does.
    enum Step {
        Ok,
        Unavailable,
        Denied,
        NotFound,
        Hang,
    }

    /// A backend that plays a script of outcomes (then keeps playing the last one) and counts calls.
    struct Scripted {
        steps: Mutex<VecDeque<Step>>,
        calls: AtomicUsize,
    }

    impl Scripted {
        fn new(steps: Vec<Step>) -> Arc<Scripted> {
            Arc::new(Scripted { steps: Mutex::new(steps.into()), calls: AtomicUsize::new(0) })
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }

        async fn next(&self, kek: &KekUri) -> Result<(), KmsError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let step = {
                let mut steps = self.steps.lock().unwrap();
                if steps.len() > 1 { steps.pop_front().unwrap() } else { clone_step(steps.front().unwrap()) }
            };
            match step {
                Step::Ok => Ok(()),
                Step::Unavailable => Err(KmsError::Unavailable {
                    retry_after: Duration::from_secs(1),
                    source: "503 from the KMS".into(),
                }),
                Step::Denied => Err(KmsError::AccessDenied { kek: kek.to_string() }),
                Step::NotFound => Err(KmsError::KeyNotFound { kek: kek.to_string() }),
                Step::Hang => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(())
                }
            }
        }
    }

    fn clone_step(step: &Step) -> Step {
        match step {
            Step::Ok => Step::Ok,
            Step::Unavailable => Step::Unavailable,
            Step::Denied => Step::Denied,
            Step::NotFound => Step::NotFound,
            Step::Hang => Step::Hang,
        }
    }

    #[async_trait]
    impl KmsBackend for Scripted {
        fn provider(&self) -> Provider {
            Provider::AwsKms
        }

        async fn wrap(&self, kek: &KekUri, _: &DataKey, _: &KmsContext) -> Result<WrappedKey, KmsError> {
            self.next(kek).await.map(|()| WrappedKey(vec![1]))
        }

        async fn unwrap(&self, kek: &KekUri, _: &WrappedKey, _: &KmsContext) -> Result<DataKey, KmsError> {
            self.next(kek).await.map(|()| DataKey::from_bytes([7; 32]))
        }

        async fn health_check(&self) -> Result<(), KmsError> {
            Ok(())
        }
    }

    fn kek() -> KekUri {
        KekUri::parse("aws-kms://arn:aws:kms:eu-west-1:111122223333:key/k").unwrap()
    }

    fn ctx() -> KmsContext {
        KmsContext::for_namespace(&Namespace::parse("payments").unwrap())
    }

    fn resilient(inner: &Arc<Scripted>) -> Resilient {
        Resilient::new(inner.clone(), ResilienceSettings::default())
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_until_one_succeeds() {
        let inner = Scripted::new(vec![Step::Unavailable, Step::Unavailable, Step::Ok]);
        let kms = resilient(&inner);

        let result = kms.unwrap(&kek(), &WrappedKey(vec![1]), &ctx()).await;

        assert!(result.is_ok());
        assert_eq!(inner.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn after_two_retries_the_caller_gets_unavailable_with_retry_after() {
        let inner = Scripted::new(vec![Step::Unavailable]);
        let kms = resilient(&inner);

        let result = kms.wrap(&kek(), &DataKey::from_bytes([1; 32]), &ctx()).await;

        match result {
            Err(KmsError::Unavailable { retry_after, .. }) => assert_eq!(retry_after, Duration::from_secs(2)),
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert_eq!(inner.calls(), 3, "one call and exactly two retries");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_never_answers_hits_the_deadline_and_is_retried() {
        let inner = Scripted::new(vec![Step::Hang, Step::Ok]);
        let kms = resilient(&inner);

        let result = kms.unwrap(&kek(), &WrappedKey(vec![1]), &ctx()).await;

        assert!(result.is_ok());
        assert_eq!(inner.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_kms_that_always_hangs_ends_in_unavailable() {
        let inner = Scripted::new(vec![Step::Hang]);
        let kms = resilient(&inner);

        let result = kms.unwrap(&kek(), &WrappedKey(vec![1]), &ctx()).await;

        assert!(matches!(result, Err(KmsError::Unavailable { .. })));
        assert_eq!(inner.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_are_not_retried() {
        let inner = Scripted::new(vec![Step::Denied]);
        let kms = resilient(&inner);

        let result = kms.wrap(&kek(), &DataKey::from_bytes([1; 32]), &ctx()).await;

        assert!(matches!(result, Err(KmsError::AccessDenied { .. })));
        assert_eq!(inner.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_unwrap_is_remembered_for_the_same_bytes_only_and_only_briefly() {
        let inner = Scripted::new(vec![Step::NotFound]);
        let kms = resilient(&inner);
        let bad = WrappedKey(vec![1, 2, 3]);

        for _ in 0..50 {
            let result = kms.unwrap(&kek(), &bad, &ctx()).await;
            assert!(matches!(result, Err(KmsError::KeyNotFound { .. })));
        }
        assert_eq!(inner.calls(), 1, "a flood of the same refused EDK makes one KMS call");

        let _ = kms.unwrap(&kek(), &WrappedKey(vec![9, 9]), &ctx()).await;
        assert_eq!(inner.calls(), 2, "other wrapped bytes are asked again");
        let other_ns = KmsContext::for_namespace(&Namespace::parse("marketing").unwrap());
        let _ = kms.unwrap(&kek(), &bad, &other_ns).await;
        assert_eq!(inner.calls(), 3, "another context is asked again");

        tokio::time::advance(ResilienceSettings::default().negative_ttl + Duration::from_millis(1)).await;
        let _ = kms.unwrap(&kek(), &bad, &ctx()).await;
        assert_eq!(inner.calls(), 4, "the refusal is forgotten after the TTL");
    }

    #[tokio::test(start_paused = true)]
    async fn unavailability_is_never_remembered() {
        let inner = Scripted::new(vec![Step::Unavailable, Step::Unavailable, Step::Unavailable, Step::Ok]);
        let kms = resilient(&inner);
        let wrapped = WrappedKey(vec![1]);

        assert!(kms.unwrap(&kek(), &wrapped, &ctx()).await.is_err());
        assert!(kms.unwrap(&kek(), &wrapped, &ctx()).await.is_ok());
        assert_eq!(inner.calls(), 4);
    }

    #[test]
    fn backoff_stays_within_half_and_all_of_the_doubled_base() {
        let base = Duration::from_millis(100);
        for retry in 1..=3 {
            let ceiling = base * (1 << (retry - 1));
            for _ in 0..100 {
                let delay = backoff(base, retry);
                assert!(delay >= ceiling / 2 && delay <= ceiling, "{delay:?} for retry {retry}");
            }
        }
    }
}
