//! Rate limits: the [`RateLimiter`] seam and its in-memory GCRA backend.
//!
//! GCRA (the generic cell rate algorithm) keeps one number per key, the theoretical
//! arrival time (TAT) of the next request at the steady rate. A request at `now` is
//! allowed while `TAT - now <= tolerance`, where the tolerance is `(burst - 1)` emission
//! intervals; an allowed request moves the TAT one interval on. So `burst` requests pass
//! at once, then one per interval (`per_secs / rate`).
//!
//! Bounds: the in-memory table holds at most [`MemoryRateLimiter::capacity`] keys, in
//! [`SHARDS`] shards. A key whose TAT is not after `now` carries no state (a fresh key
//! would get the same answer), so when a shard is full its stale keys are evicted
//! first; if every key in it is live, the request is refused with
//! [`RateDecision::TableFull`] (fail closed: forgetting a live key would hand its owner
//! a fresh burst).
//!
//! Time: `now` is a parameter (milliseconds since the epoch). A clock that goes
//! backwards never allows more: a TAT more than one burst ahead of the (new) `now` is
//! clamped to exactly one burst ahead, the most restrictive state the limit can be in,
//! so the wait stays at most one interval instead of the size of the jump.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};

/// Shards of the in-memory table; a key's shard is picked by a randomly seeded hash.
pub const SHARDS: usize = 16;

/// The default number of keys the in-memory table holds.
pub const DEFAULT_RATE_LIMIT_KEYS: usize = 100_000;

/// A limit: `rate` requests per `per_secs` seconds, `burst` of them at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per period (at least 1).
    pub rate: u32,
    /// The period, in seconds (at least 1).
    pub per_secs: u32,
    /// Requests allowed back to back (at least 1; 0 is taken as 1).
    pub burst: u32,
}

impl Rate {
    /// The emission interval, in microseconds (at least 1).
    pub(crate) fn interval_us(self) -> i64 {
        (i64::from(self.per_secs) * 1_000_000 / i64::from(self.rate.max(1))).max(1)
    }

    /// How far ahead of `now` the TAT may be for a request to pass, in microseconds.
    pub(crate) fn tolerance_us(self) -> i64 {
        self.interval_us()
            .saturating_mul(i64::from(self.burst.max(1).saturating_sub(1)))
    }
}

/// The answer of a [`RateLimiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Within the limit; counted.
    Allow,
    /// Over the limit; not counted. The next request can pass after `retry_after_ms`.
    Limited {
        /// Milliseconds until a request would pass (at least 1).
        retry_after_ms: u64,
    },
    /// The key table is full of live keys; not counted. The caller fails closed.
    TableFull,
}

/// A boxed future, so the trait stays object safe for an async (Redis) backend.
pub type RateFuture<'a> = Pin<Box<dyn Future<Output = RateDecision> + Send + 'a>>;

/// Counts requests per key against a [`Rate`]. One node keeps them in memory
/// ([`MemoryRateLimiter`]); a fleet shares them (Redis, later).
pub trait RateLimiter: fmt::Debug + Send + Sync {
    /// Decides one request for `key` at `now_ms` under `limit`, and counts it when
    /// allowed. The caller bounds `key` (the memory backend stores it as given).
    fn check<'a>(&'a self, key: &'a str, limit: Rate, now_ms: i64) -> RateFuture<'a>;

    /// Keys held (live or stale), for `/status`.
    fn len(&self) -> usize;

    /// True when no key is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The in-memory GCRA: key → TAT (microseconds), bounded, sharded.
pub struct MemoryRateLimiter {
    per_shard: usize,
    shards: [Mutex<HashMap<Box<str>, i64>>; SHARDS],
    hasher: RandomState,
}

impl fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRateLimiter")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl MemoryRateLimiter {
    /// A table of about `capacity` keys (rounded up to a multiple of [`SHARDS`]; at
    /// least one key per shard).
    pub fn new(capacity: usize) -> Self {
        Self {
            per_shard: capacity.div_ceil(SHARDS).max(1),
            shards: std::array::from_fn(|_| Mutex::default()),
            hasher: RandomState::new(),
        }
    }

    /// The most keys held.
    pub fn capacity(&self) -> usize {
        self.per_shard.saturating_mul(SHARDS)
    }

    #[expect(
        clippy::indexing_slicing,
        reason = "the index is reduced modulo SHARDS, the array's length"
    )]
    fn shard(&self, key: &str) -> &Mutex<HashMap<Box<str>, i64>> {
        // The modulo keeps the value below SHARDS, so the cast loses nothing.
        let index = (self.hasher.hash_one(key) % SHARDS as u64) as usize;
        &self.shards[index % SHARDS]
    }

    /// The decision, synchronously.
    pub fn decide(&self, key: &str, limit: Rate, now_ms: i64) -> RateDecision {
        let now = now_ms.saturating_mul(1_000);
        let interval = limit.interval_us();
        let tolerance = limit.tolerance_us();
        let mut shard = self
            .shard(key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let known = shard.get(key).copied();
        if known.is_none() && shard.len() >= self.per_shard {
            // Stale keys (TAT not after now) carry no state: drop them first.
            shard.retain(|_, tat| *tat > now);
            if shard.len() >= self.per_shard {
                return RateDecision::TableFull;
            }
        }
        // A TAT further ahead than one full burst only happens after the clock went
        // backwards; clamp it to one full burst ahead (the most restrictive state).
        let ceiling = now.saturating_add(tolerance).saturating_add(interval);
        let tat = known.unwrap_or(now).max(now).min(ceiling);
        let ahead = tat.saturating_sub(now);
        if ahead > tolerance {
            let wait_us = ahead.saturating_sub(tolerance);
            let retry_after_ms = u64::try_from(wait_us).unwrap_or(0).div_ceil(1_000).max(1);
            if known.is_some() {
                shard.insert(key.into(), tat);
            }
            return RateDecision::Limited { retry_after_ms };
        }
        shard.insert(key.into(), tat.saturating_add(interval));
        RateDecision::Allow
    }
}

impl RateLimiter for MemoryRateLimiter {
    fn check<'a>(&'a self, key: &'a str, limit: Rate, now_ms: i64) -> RateFuture<'a> {
        let decision = self.decide(key, limit, now_ms);
        Box::pin(std::future::ready(decision))
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

    use super::*;

    const PER_MINUTE: Rate = Rate {
        rate: 60,
        per_secs: 60,
        burst: 10,
    };

    fn limited(ms: u64) -> RateDecision {
        RateDecision::Limited { retry_after_ms: ms }
    }

    /// Stops a runaway client: exactly `burst` pass at once, then one per interval.
    #[test]
    fn burst_then_steady_rate() {
        let l = MemoryRateLimiter::new(100);
        let t0 = 1_700_000_000_000;
        for i in 0..10 {
            assert_eq!(l.decide("k", PER_MINUTE, t0), RateDecision::Allow, "{i}");
        }
        assert_eq!(l.decide("k", PER_MINUTE, t0), limited(1_000));
        // Refusals are not counted: the wait does not grow.
        assert_eq!(l.decide("k", PER_MINUTE, t0), limited(1_000));
        assert_eq!(l.decide("k", PER_MINUTE, t0 + 400), limited(600));
        assert_eq!(l.decide("k", PER_MINUTE, t0 + 1_000), RateDecision::Allow);
        assert_eq!(l.decide("k", PER_MINUTE, t0 + 1_000), limited(1_000));
        // Steady: one per second for a minute.
        for s in 2..62 {
            let now = t0 + s * 1_000;
            assert_eq!(l.decide("k", PER_MINUTE, now), RateDecision::Allow, "{s}");
            assert_eq!(l.decide("k", PER_MINUTE, now), limited(1_000), "{s}");
        }
        // Idle long enough, the whole burst is back.
        let later = t0 + 3_600_000;
        for _ in 0..10 {
            assert_eq!(l.decide("k", PER_MINUTE, later), RateDecision::Allow);
        }
        assert!(matches!(
            l.decide("k", PER_MINUTE, later),
            RateDecision::Limited { .. }
        ));
    }

    #[test]
    fn keys_are_independent() {
        let l = MemoryRateLimiter::new(100);
        let one = Rate {
            rate: 1,
            per_secs: 3600,
            burst: 1,
        };
        assert_eq!(l.decide("a", one, 0), RateDecision::Allow);
        assert_eq!(l.decide("a", one, 0), limited(3_600_000));
        assert_eq!(l.decide("b", one, 0), RateDecision::Allow);
    }

    #[test]
    fn retry_after_rounds_sub_millisecond_waits_up() {
        let l = MemoryRateLimiter::new(100);
        let fast = Rate {
            rate: 3,
            per_secs: 1,
            burst: 1,
        };
        assert_eq!(l.decide("k", fast, 0), RateDecision::Allow);
        // 333_333 µs → 334 ms: a client that waits as told is allowed.
        assert_eq!(l.decide("k", fast, 0), limited(334));
        assert_eq!(l.decide("k", fast, 334), RateDecision::Allow);
    }

    /// Stops a clock step backwards from granting a fresh burst, or locking a key out
    /// for the size of the jump.
    #[test]
    fn time_going_backwards_never_allows_more() {
        let l = MemoryRateLimiter::new(100);
        let t0 = 10_000_000;
        for _ in 0..10 {
            assert_eq!(l.decide("k", PER_MINUTE, t0), RateDecision::Allow);
        }
        let back = t0 - 3_600_000;
        assert_eq!(l.decide("k", PER_MINUTE, back), limited(1_000));
        assert_eq!(l.decide("k", PER_MINUTE, back + 1_000), RateDecision::Allow);
        assert_eq!(l.decide("k", PER_MINUTE, back + 1_000), limited(1_000));
        // Extreme clocks do not overflow.
        assert!(matches!(
            l.decide("k", PER_MINUTE, i64::MIN),
            RateDecision::Limited { .. }
        ));
        assert_eq!(l.decide("x", PER_MINUTE, i64::MAX), RateDecision::Allow);
    }

    /// Stops a flood of subjects from evicting a live key (which would give its owner
    /// a fresh burst): a full table drops only stale keys, else refuses.
    #[test]
    fn full_table_evicts_stale_keys_then_refuses() {
        let l = MemoryRateLimiter::new(SHARDS); // one key per shard
        let one = Rate {
            rate: 1,
            per_secs: 10,
            burst: 1,
        };
        // Fill until some key meets a full shard.
        let mut held = Vec::new();
        let mut refused = None;
        for i in 0..10_000 {
            let key = format!("k{i}");
            match l.decide(&key, one, 0) {
                RateDecision::Allow => held.push(key),
                RateDecision::TableFull => {
                    refused = Some(key);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        let refused = refused.unwrap();
        assert!(l.len() <= l.capacity());
        // Known keys are still limited (nothing live was evicted).
        for key in &held {
            assert_eq!(l.decide(key, one, 0), limited(10_000));
        }
        assert_eq!(l.decide(&refused, one, 9_999), RateDecision::TableFull);
        // Once the held keys are stale, the new key takes a stale key's place.
        assert_eq!(l.decide(&refused, one, 10_000), RateDecision::Allow);
        assert_eq!(l.decide(&refused, one, 10_000), limited(10_000));
        assert!(l.len() <= l.capacity());
    }

    #[tokio::test]
    async fn trait_object_answers() {
        let l: Box<dyn RateLimiter> = Box::new(MemoryRateLimiter::new(10));
        assert_eq!(l.check("k", PER_MINUTE, 0).await, RateDecision::Allow);
        assert_eq!(l.len(), 1);
    }
}
