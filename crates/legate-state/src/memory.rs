//! The in-memory replay cache: one process, no persistence.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::{ReplayVerdict, StateError};

/// `(iss, jti)` → retain-until, behind one mutex. A sweep of expired entries runs when
/// the map grows past a threshold, so memory follows the live-token count.
///
/// INVARIANT: an entry is never dropped before its retain-until time. When the map is
/// full of live entries the cache refuses new tokens (fail closed) rather than evicting
/// one, which would reopen a replay window.
#[derive(Debug)]
pub struct MemoryReplayCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<(String, String), i64>,
    sweep_at: usize,
}

impl MemoryReplayCache {
    /// A cache for at most `capacity` live entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                sweep_at: 1024,
            }),
        }
    }

    pub(crate) fn check_and_record(
        &self,
        issuer: &str,
        jti: &str,
        retain_until: i64,
        now: i64,
    ) -> Result<ReplayVerdict, StateError> {
        // A poisoned lock means a panic while holding it; the map is still consistent
        // (each operation is a single insert or retain), so keep serving.
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (issuer.to_owned(), jti.to_owned());
        if let Some(until) = inner.entries.get(&key)
            && *until > now
        {
            return Ok(ReplayVerdict::Replayed);
        }
        if inner.entries.len() >= inner.sweep_at {
            inner.entries.retain(|_, until| *until > now);
            inner.sweep_at = (inner.entries.len() * 2).max(1024);
        }
        if inner.entries.len() >= self.capacity {
            return Err(StateError::Full {
                capacity: self.capacity,
            });
        }
        inner.entries.insert(key, retain_until);
        Ok(ReplayVerdict::Fresh)
    }

    pub(crate) fn len(&self) -> usize {
        self.inner
            .lock()
            .map(|i| i.entries.len())
            .unwrap_or_default()
    }
}
