//! Time, injected.
//!
//! INVARIANT: nothing in `legate-core` reads the system clock. Functions that need the
//! time take `now` (seconds since the Unix epoch) as a parameter; the server owns a
//! [`Clock`] and passes its reading in. Tests use a clock they control.

/// Seconds since the Unix epoch.
pub type UnixSeconds = i64;

/// A source of the current time, implemented at the edges (system clock in the server,
/// a manual clock in tests).
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time in seconds since the Unix epoch.
    fn now(&self) -> UnixSeconds;

    /// The current time in milliseconds since the Unix epoch, for what counts below a
    /// second (rate limits). By default [`now`](Self::now) in milliseconds: a clock
    /// that moves in whole seconds (a test's manual clock) stays consistent with it.
    fn now_ms(&self) -> i64 {
        self.now().saturating_mul(1_000)
    }
}
