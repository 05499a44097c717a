//! Readiness (`/readyz`): a list of named checks — the configuration, every KMS backend in use, and
//! (added by the audit module) the audit database — run together, each under a deadline, with the
//! result cached briefly so probes from every kubelet and load balancer do not each reach the KMS.
//!
//! What must stay true: a check's failure reason is a short fixed phrase (`&'static str`), never an
//! error chain, URL or key name, because `/readyz` is unauthenticated; the full error goes to the log.
//! The cache reads the injected `Clock`, so tests step time instead of sleeping.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::clock::Clock;
use crate::kms::{KmsBackend, KmsError, Provider};

/// How long a readiness result is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// How long one check may take before it counts as failed (`timeout`).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// One dependency the server needs to serve requests.
#[async_trait]
pub trait ReadinessCheck: Send + Sync {
    /// `Ok`, or a short fixed reason such as `"unreachable"`.
    async fn check(&self) -> Result<(), &'static str>;
}

type BoxedCheck = Pin<Box<dyn Future<Output = Result<(), &'static str>> + Send>>;

/// A check from a closure: `readiness.add("audit", check_fn(move || { let s = s.clone(); async move { … } }))`.
pub fn check_fn<F, Fut>(f: F) -> Arc<dyn ReadinessCheck>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), &'static str>> + Send + 'static,
{
    struct FnCheck(Box<dyn Fn() -> BoxedCheck + Send + Sync>);

    #[async_trait]
    impl ReadinessCheck for FnCheck {
        async fn check(&self) -> Result<(), &'static str> {
            (self.0)().await
        }
    }

    Arc::new(FnCheck(Box::new(move || Box::pin(f()))))
}

/// A KMS backend's own `health_check` (reachable, keys usable).
struct KmsCheck(Arc<dyn KmsBackend>);

#[async_trait]
impl ReadinessCheck for KmsCheck {
    async fn check(&self) -> Result<(), &'static str> {
        self.0.health_check().await.map_err(|e| {
            tracing::warn!(provider = %self.0.provider(), error = %e, fix = fix_for(&e), "KMS readiness check failed.");
            match e {
                KmsError::Unavailable { .. } => "unreachable",
                KmsError::AccessDenied { .. } => "access denied",
                KmsError::KeyNotFound { .. } => "key not found",
                KmsError::KeyDisabled { .. } => "key disabled",
                KmsError::InvalidCiphertext | KmsError::UntrustedResponse { .. } | KmsError::NoBackend(_) => "error",
            }
        })
    }
}

/// What an operator can do about a failed KMS check (the error itself names the KEK).
fn fix_for(error: &KmsError) -> &'static str {
    match error {
        KmsError::KeyNotFound { .. } => "create the key, or correct its URI under [keyrings]",
        KmsError::KeyDisabled { .. } => "enable the key (or its primary version), or move it to decrypt_only",
        KmsError::AccessDenied { .. } => "grant the server's identity the key permissions listed in docs/backends.md",
        KmsError::Unavailable { .. } => "check the KMS endpoint and network; the server keeps retrying",
        KmsError::InvalidCiphertext | KmsError::UntrustedResponse { .. } | KmsError::NoBackend(_) => {
            "check the [kms.*] section for this provider"
        }
    }
}

/// The outcome of every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// `(name, result)` in registration order.
    pub checks: Vec<(String, Result<(), &'static str>)>,
}

impl Report {
    /// Whether every check passed.
    pub fn ready(&self) -> bool {
        self.checks.iter().all(|(_, r)| r.is_ok())
    }

    /// `{"status":"ready"|"not-ready","checks":{"<name>":"ok"|"<reason>"}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let checks: serde_json::Map<String, serde_json::Value> = self
            .checks
            .iter()
            .map(|(name, result)| (name.clone(), serde_json::Value::from(result.err().unwrap_or("ok"))))
            .collect();
        let status = if self.ready() { "ready" } else { "not-ready" };
        serde_json::json!({ "status": status, "checks": checks })
    }
}

/// The named checks and the cached last report.
pub struct Readiness {
    checks: Vec<(String, Arc<dyn ReadinessCheck>)>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    timeout: Duration,
    /// Held while checks run, so concurrent probes share one run.
    cached: tokio::sync::Mutex<Option<(Instant, Arc<Report>)>>,
}

impl Readiness {
    /// Readiness with the `config` check (always passes: a server runs only with a valid configuration).
    pub fn new(clock: Arc<dyn Clock>) -> Readiness {
        let mut readiness = Readiness {
            checks: Vec::new(),
            clock,
            ttl: CACHE_TTL,
            timeout: CHECK_TIMEOUT,
            cached: tokio::sync::Mutex::new(None),
        };
        readiness.add("config", check_fn(|| async { Ok(()) }));
        readiness
    }

    /// Adds a named check.
    pub fn add(&mut self, name: impl Into<String>, check: Arc<dyn ReadinessCheck>) {
        self.checks.push((name.into(), check));
    }

    /// Adds `kms:<provider>` for every backend in use, in provider order.
    pub fn add_kms_backends(&mut self, backends: &HashMap<Provider, Arc<dyn KmsBackend>>) {
        let mut providers: Vec<_> = backends.keys().copied().collect();
        providers.sort();
        for provider in providers {
            if let Some(backend) = backends.get(&provider) {
                self.add(format!("kms:{provider}"), Arc::new(KmsCheck(backend.clone())));
            }
        }
    }

    /// Runs every check once right after startup and warns about each failure, so a missing or refused
    /// KEK is named in the log when the server starts, not only when `/readyz` is probed. Never fails
    /// the start: a KMS that is briefly down at that moment must not stop the server (each check has
    /// its deadline, and `/readyz` keeps reporting until the dependency is back).
    pub async fn check_at_startup(&self) {
        let report = self.report().await;
        for (name, result) in &report.checks {
            if let Err(reason) = result {
                tracing::warn!(
                    check = %name,
                    reason,
                    "Startup check failed: the server is running, but /readyz answers 503 and requests that need this dependency fail until it is fixed. The warning above names the key and the fix."
                );
            }
        }
    }

    /// The check names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.checks.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// The cached report if it is younger than the TTL, otherwise a fresh one (checks run concurrently).
    pub async fn report(&self) -> Arc<Report> {
        let mut cached = self.cached.lock().await;
        let now = self.clock.now();
        if let Some((at, report)) = cached.as_ref()
            && now.saturating_duration_since(*at) < self.ttl
        {
            return report.clone();
        }
        let runs = self.checks.iter().map(|(name, check)| async move {
            let result = match tokio::time::timeout(self.timeout, check.check()).await {
                Ok(result) => result,
                Err(_) => Err("timeout"),
            };
            (name.clone(), result)
        });
        let report = Arc::new(Report { checks: futures_util::future::join_all(runs).await });
        if !report.ready() {
            let failed: Vec<&str> = report.checks.iter().filter(|(_, r)| r.is_err()).map(|(n, _)| n.as_str()).collect();
            tracing::warn!(failed = ?failed, "Not ready.");
        }
        *cached = Some((self.clock.now(), report.clone()));
        report
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;
    use crate::clock::ManualClock;

    #[tokio::test]
    async fn results_are_cached_until_the_clock_passes_the_ttl() {
        let clock = Arc::new(ManualClock::default());
        let up = Arc::new(AtomicBool::new(true));
        let runs = Arc::new(AtomicUsize::new(0));
        let mut readiness = Readiness::new(clock.clone());
        let (u, r) = (up.clone(), runs.clone());
        readiness.add(
            "dep",
            check_fn(move || {
                r.fetch_add(1, Ordering::SeqCst);
                let ok = u.load(Ordering::SeqCst);
                async move { if ok { Ok(()) } else { Err("unreachable") } }
            }),
        );

        assert!(readiness.report().await.ready());
        up.store(false, Ordering::SeqCst);
        assert!(readiness.report().await.ready(), "cached within the TTL");
        assert_eq!(runs.load(Ordering::SeqCst), 1);

        clock.advance(CACHE_TTL);
        let report = readiness.report().await;
        assert!(!report.ready());
        assert_eq!(
            report.to_json(),
            serde_json::json!({"status":"not-ready","checks":{"config":"ok","dep":"unreachable"}})
        );
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_hangs_fails_with_timeout() {
        let mut readiness = Readiness::new(Arc::new(ManualClock::default()));
        readiness.add("slow", check_fn(std::future::pending));
        let report = readiness.report().await;
        assert_eq!(report.checks[1], ("slow".to_owned(), Err("timeout")));
    }
}
