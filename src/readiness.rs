//! Readiness of this replica, and the state of what it depends on — kept apart on purpose.
//!
//! `/readyz` (the probe) answers from memory: the configuration is loaded, the listeners are up (the
//! request reached us) and the server is not shutting down. It never waits on a KMS or a database:
//! every replica shares those, so a probe that included them would mark all replicas NotReady together
//! during one outage and empty the Service — even for decodes the DEK cache could still serve, and
//! even when the audit log is fail-open. Dependencies (every KMS backend in use, the audit database)
//! are checked in the background and shown in `/readyz?verbose` and as `/metrics` gauges, for alerts.
//!
//! What must stay true: a check's failure reason is a short fixed phrase (`&'static str`), never an
//! error chain, URL or key name, because both endpoints are unauthenticated; the full error goes to the
//! log. Dependency results are cached and read the injected `Clock`, so tests step time instead of
//! sleeping, and probes from every kubelet never multiply KMS calls.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::clock::Clock;
use crate::kms::{KmsBackend, KmsError, Provider};

/// How long a dependency report is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// How long one dependency check may take before it counts as failed (`timeout`).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the background task refreshes the dependency report (for `/metrics`).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// One dependency the server uses to serve requests.
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
            tracing::warn!(provider = %self.0.provider(), error = %e, fix = fix_for(&e), "KMS health check failed.");
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

/// The outcome of a set of checks.
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

    /// `{"<name>":"ok"|"<reason>", …}`.
    pub fn to_json(&self) -> serde_json::Value {
        let checks: serde_json::Map<String, serde_json::Value> = self
            .checks
            .iter()
            .map(|(name, result)| (name.clone(), serde_json::Value::from(result.err().unwrap_or("ok"))))
            .collect();
        serde_json::Value::Object(checks)
    }
}

/// This replica's state, the dependency checks and their cached last report.
pub struct Readiness {
    dependencies: Vec<(String, Arc<dyn ReadinessCheck>)>,
    shutting_down: AtomicBool,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    timeout: Duration,
    /// Held while dependency checks run, so concurrent callers share one run.
    cached: tokio::sync::Mutex<Option<(Instant, Arc<Report>)>>,
    /// The last finished dependency report, readable without waiting (`/metrics`).
    last: Mutex<Option<Arc<Report>>>,
    /// Whether the first dependency report since start was made (its failures get a startup warning).
    first_done: AtomicBool,
}

impl Readiness {
    /// Readiness with no dependency checks yet.
    pub fn new(clock: Arc<dyn Clock>) -> Readiness {
        Readiness {
            dependencies: Vec::new(),
            shutting_down: AtomicBool::new(false),
            clock,
            ttl: CACHE_TTL,
            timeout: CHECK_TIMEOUT,
            cached: tokio::sync::Mutex::new(None),
            last: Mutex::new(None),
            first_done: AtomicBool::new(false),
        }
    }

    /// Adds a named dependency check (shown in the verbose view and `/metrics`, never in the probe).
    pub fn add(&mut self, name: impl Into<String>, check: Arc<dyn ReadinessCheck>) {
        self.dependencies.push((name.into(), check));
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

    /// The dependency names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.dependencies.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// From now on the probe answers `shutting-down` (called when SIGTERM/SIGINT arrives).
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// The probe: this replica's own state, from memory. The configuration was loaded and validated
    /// before the listeners opened, so `config` is always `ok` in a running server.
    pub fn local(&self) -> Report {
        let shutdown = if self.shutting_down.load(Ordering::Acquire) { Err("shutting-down") } else { Ok(()) };
        Report { checks: vec![("config".to_owned(), Ok(())), ("shutdown".to_owned(), shutdown)] }
    }

    /// The cached dependency report if it is younger than the TTL, otherwise a fresh one (checks run
    /// concurrently, each within the check timeout).
    pub async fn dependencies(&self) -> Arc<Report> {
        let mut cached = self.cached.lock().await;
        let now = self.clock.now();
        if let Some((at, report)) = cached.as_ref()
            && now.saturating_duration_since(*at) < self.ttl
        {
            return report.clone();
        }
        let runs = self.dependencies.iter().map(|(name, check)| async move {
            let result = match tokio::time::timeout(self.timeout, check.check()).await {
                Ok(result) => result,
                Err(_) => Err("timeout"),
            };
            (name.clone(), result)
        });
        let report = Arc::new(Report { checks: futures_util::future::join_all(runs).await });
        if !report.ready() {
            let failed: Vec<&str> = report.checks.iter().filter(|(_, r)| r.is_err()).map(|(n, _)| n.as_str()).collect();
            tracing::warn!(failed = ?failed, "A dependency is failing; this replica stays ready and serves what it can.");
        }
        if !self.first_done.swap(true, Ordering::AcqRel) {
            // The first check after start: say plainly that the start found a problem (a missing KEK is
            // named, with the fix, by the KMS warning above), instead of leaving it to /readyz?verbose.
            for (name, result) in &report.checks {
                if let Err(reason) = result {
                    tracing::warn!(
                        check = %name,
                        reason,
                        "Startup check failed: the server is serving, but requests that need this dependency fail until it is fixed. The warning above names the key and the fix."
                    );
                }
            }
        }
        *cached = Some((self.clock.now(), report.clone()));
        if let Ok(mut last) = self.last.lock() {
            *last = Some(report.clone());
        }
        report
    }

    /// The last finished dependency report, without waiting (`None` before the first one).
    pub fn last_dependencies(&self) -> Option<Arc<Report>> {
        self.last.lock().ok().and_then(|last| last.clone())
    }
}

/// Refreshes the dependency report every [`REFRESH_INTERVAL`] until the task is aborted, so
/// `/metrics` shows dependency state without anyone asking for the verbose view. The first check runs
/// one interval after start: starting the server makes no KMS or database call of its own.
pub fn spawn_refresher(readiness: Arc<Readiness>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let first = tokio::time::Instant::now() + REFRESH_INTERVAL;
        let mut interval = tokio::time::interval_at(first, REFRESH_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            readiness.dependencies().await;
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;
    use crate::clock::ManualClock;

    #[tokio::test]
    async fn the_probe_ignores_a_failing_dependency_and_fails_only_when_shutting_down() {
        let mut readiness = Readiness::new(Arc::new(ManualClock::default()));
        readiness.add("dep", check_fn(|| async { Err("unreachable") }));

        assert!(readiness.local().ready());
        assert!(!readiness.dependencies().await.ready());
        readiness.begin_shutdown();
        let local = readiness.local();
        assert!(!local.ready());
        assert_eq!(local.to_json(), serde_json::json!({"config":"ok","shutdown":"shutting-down"}));
    }

    #[tokio::test]
    async fn dependency_results_are_cached_until_the_clock_passes_the_ttl() {
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
        assert!(readiness.last_dependencies().is_none());

        assert!(readiness.dependencies().await.ready());
        up.store(false, Ordering::SeqCst);
        assert!(readiness.dependencies().await.ready(), "cached within the TTL");
        assert_eq!(runs.load(Ordering::SeqCst), 1);

        clock.advance(CACHE_TTL);
        let report = readiness.dependencies().await;
        assert!(!report.ready());
        assert_eq!(report.to_json(), serde_json::json!({"dep":"unreachable"}));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(readiness.last_dependencies().as_deref(), Some(&*report));
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_hangs_fails_with_timeout() {
        let mut readiness = Readiness::new(Arc::new(ManualClock::default()));
        readiness.add("slow", check_fn(std::future::pending));
        let report = readiness.dependencies().await;
        assert_eq!(report.checks[0], ("slow".to_owned(), Err("timeout")));
    }
}
