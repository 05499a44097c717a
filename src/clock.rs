//! Time as a dependency: cache limits and token expiry read a `Clock`, so tests step time instead of
//! sleeping.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of time: monotonic for cache limits, wall-clock seconds for token `exp`/`nbf`.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
    /// Seconds since the Unix epoch.
    fn unix_now(&self) -> u64;
    /// Milliseconds since the Unix epoch (audit event times).
    fn unix_millis(&self) -> i64 {
        i64::try_from(self.unix_now()).unwrap_or(i64::MAX).saturating_mul(1000)
    }
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_now(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    fn unix_millis(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }
}

/// A clock that moves only when told to; it starts at the real time.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    start_unix: u64,
    elapsed: Mutex<Duration>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock { start: Instant::now(), start_unix: SystemClock.unix_now(), elapsed: Mutex::default() }
    }
}

impl ManualClock {
    /// Moves time forward.
    pub fn advance(&self, by: Duration) {
        *self.elapsed.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }

    fn elapsed(&self) -> Duration {
        *self.elapsed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.elapsed()
    }

    fn unix_now(&self) -> u64 {
        self.start_unix + self.elapsed().as_secs()
    }
}
