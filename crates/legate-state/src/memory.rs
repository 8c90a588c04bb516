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
            return Err(StateError::Full(inner.entries.len()));
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

#[cfg(test)]
mod tests {
    use crate::{ReplayCache, ReplayVerdict, StateError};

    fn block<F: std::future::Future>(f: F) -> F::Output {
        // The memory backend never awaits; poll once with a no-op waker.
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("memory backend awaited"),
        }
    }

    #[test]
    fn second_use_of_the_same_iss_jti_is_a_replay() {
        let c = ReplayCache::memory(10);
        assert_eq!(
            block(c.check_and_record("i", "j", 200, 100)),
            Ok(ReplayVerdict::Fresh)
        );
        assert_eq!(
            block(c.check_and_record("i", "j", 200, 150)),
            Ok(ReplayVerdict::Replayed)
        );
    }

    #[test]
    fn same_jti_from_another_issuer_is_not_a_replay() {
        let c = ReplayCache::memory(10);
        assert_eq!(
            block(c.check_and_record("a", "j", 200, 100)),
            Ok(ReplayVerdict::Fresh)
        );
        assert_eq!(
            block(c.check_and_record("b", "j", 200, 100)),
            Ok(ReplayVerdict::Fresh)
        );
    }

    #[test]
    fn an_entry_lives_until_its_retain_time() {
        let c = ReplayCache::memory(10);
        block(c.check_and_record("i", "j", 200, 100)).unwrap();
        assert_eq!(
            block(c.check_and_record("i", "j", 300, 199)),
            Ok(ReplayVerdict::Replayed)
        );
        assert_eq!(
            block(c.check_and_record("i", "j", 300, 200)),
            Ok(ReplayVerdict::Fresh)
        );
    }

    #[test]
    fn a_full_cache_fails_closed_instead_of_evicting() {
        let c = ReplayCache::memory(2);
        block(c.check_and_record("i", "1", 500, 100)).unwrap();
        block(c.check_and_record("i", "2", 500, 100)).unwrap();
        assert_eq!(
            block(c.check_and_record("i", "3", 500, 100)),
            Err(StateError::Full(2))
        );
        // The recorded ones are still replays.
        assert_eq!(
            block(c.check_and_record("i", "1", 500, 100)),
            Ok(ReplayVerdict::Replayed)
        );
    }

    #[test]
    fn expired_entries_are_swept() {
        let c = ReplayCache::memory(5000);
        for i in 0..1500 {
            block(c.check_and_record("i", &i.to_string(), 150, 100)).unwrap();
        }
        // Growing past the sweep threshold drops the 1500 expired entries.
        for i in 0..600 {
            block(c.check_and_record("i", &format!("late{i}"), 1000, 200)).unwrap();
        }
        assert!(c.len() <= 600, "{}", c.len());
    }
}
