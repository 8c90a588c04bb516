//! The server's clocks: the only place Legate reads the system time, and the monotonic
//! [`Stopwatch`] that latencies are measured with.

use std::sync::atomic::{AtomicI64, Ordering};

use legate_core::{Clock, UnixSeconds};

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[expect(
        clippy::disallowed_methods,
        reason = "the one sanctioned read of wall-clock time; everything else receives `now`"
    )]
    fn now(&self) -> UnixSeconds {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "the one sanctioned read of wall-clock time, in milliseconds for rate limits"
    )]
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// Measures elapsed time on the monotonic clock (tokio's, which tests may pause), for
/// latencies only: never a decision input.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(tokio::time::Instant);

impl Stopwatch {
    /// Starts measuring now.
    pub fn start() -> Self {
        Self(tokio::time::Instant::now())
    }

    /// Time since [`start`](Self::start).
    pub fn elapsed(&self) -> std::time::Duration {
        self.0.elapsed()
    }

    /// Time since [`start`](Self::start), in (fractional) seconds.
    pub fn elapsed_secs(&self) -> f64 {
        self.elapsed().as_secs_f64()
    }
}

/// A clock tests move by hand.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock reading `now`.
    pub fn new(now: UnixSeconds) -> Self {
        Self(AtomicI64::new(now))
    }
    /// Sets the time.
    pub fn set(&self, now: UnixSeconds) {
        self.0.store(now, Ordering::SeqCst);
    }
    /// Moves the time forward.
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixSeconds {
        self.0.load(Ordering::SeqCst)
    }
}
