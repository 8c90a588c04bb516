//! The credential cache: one slot per configured target (so it is bounded by the
//! targets), single-flight per slot, refreshed ahead of expiry.
//!
//! A cached credential is served until its *refresh point*: `expires_at` minus a margin
//! of half its lifetime, at most [`REFRESH_AHEAD_SECS`]. The first request after that
//! point fetches a new one while holding the slot's lock, so concurrent requests for
//! the same target wait for one exchange instead of each making their own. When that
//! fetch fails and the old credential still has at least [`MIN_SERVE_SECS`] left, the
//! old one is served (the SDKs ask again soon); otherwise the error goes to the client.
//! The margin is larger than the SDKs' own refresh windows (botocore 15 min advisory,
//! google-auth 3 min 45 s, azure-identity 5 min), so an SDK never gets a credential it
//! considers already stale from a cache that considers it fresh.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::Clock;
use crate::fetch::{CredentialFetcher, FetchError, Fetched};

/// The longest margin before expiry at which a credential is refreshed.
pub const REFRESH_AHEAD_SECS: i64 = 900;
/// A stale credential is served after a failed refresh only with this much left.
pub const MIN_SERVE_SECS: i64 = 60;

/// A cached credential and when it was fetched.
#[derive(Debug)]
struct Entry {
    fetched: Fetched,
    fetched_at: i64,
}

impl Entry {
    /// Unix seconds from which the entry is refreshed.
    fn refresh_at(&self) -> i64 {
        let expires_at = self.fetched.expires_at();
        let lifetime = expires_at.saturating_sub(self.fetched_at).max(0);
        expires_at.saturating_sub((lifetime / 2).min(REFRESH_AHEAD_SECS))
    }
}

/// Why the cache could not answer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CacheError {
    /// The target is not one the broker was configured with.
    #[error("target `{0}` is not served here")]
    UnknownTarget(String),
    /// The fetch failed and there is no usable cached credential.
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// Credentials per target, fetched through a [`CredentialFetcher`].
#[derive(Debug)]
pub struct CredentialCache {
    fetcher: Arc<dyn CredentialFetcher>,
    clock: Arc<dyn Clock>,
    // INVARIANT: the keys are the configured targets, fixed at construction.
    slots: HashMap<String, Mutex<Option<Entry>>>,
}

impl CredentialCache {
    /// A cache for exactly `targets`.
    pub fn new(
        fetcher: Arc<dyn CredentialFetcher>,
        clock: Arc<dyn Clock>,
        targets: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            fetcher,
            clock,
            slots: targets.into_iter().map(|t| (t, Mutex::new(None))).collect(),
        }
    }

    /// A usable credential for `target`: the cached one before its refresh point,
    /// otherwise a fresh one (single-flight).
    pub async fn get(&self, target: &str) -> Result<Fetched, CacheError> {
        let slot = self
            .slots
            .get(target)
            .ok_or_else(|| CacheError::UnknownTarget(target.to_owned()))?;
        let mut entry = slot.lock().await;
        let now = self.clock.now();
        if let Some(cached) = entry.as_ref()
            && now < cached.refresh_at()
        {
            return Ok(cached.fetched.clone());
        }
        match self.fetcher.fetch(target, now).await {
            Ok(fetched) => {
                *entry = Some(Entry {
                    fetched: fetched.clone(),
                    fetched_at: now,
                });
                Ok(fetched)
            }
            Err(e) => {
                let now = self.clock.now();
                match entry.as_ref() {
                    Some(cached)
                        if cached.fetched.expires_at().saturating_sub(now) >= MIN_SERVE_SECS =>
                    {
                        tracing::warn!(target_name = target, error = %e, "refresh failed; serving the cached credential");
                        Ok(cached.fetched.clone())
                    }
                    _ => Err(e.into()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "test code")]

    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

    use legate_core::Secret;

    use super::*;
    use crate::ManualClock;
    use crate::fetch::BoxFuture;

    /// Answers tokens living `lifetime` seconds, counting calls; fails when `fail` is set.
    #[derive(Debug, Default)]
    pub(crate) struct Counting {
        pub(crate) calls: AtomicUsize,
        pub(crate) fail: std::sync::atomic::AtomicBool,
        pub(crate) lifetime: AtomicI64,
    }

    impl CredentialFetcher for Counting {
        fn fetch<'a>(
            &'a self,
            target: &'a str,
            now: i64,
        ) -> BoxFuture<'a, Result<Fetched, FetchError>> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                if self.fail.load(Ordering::SeqCst) {
                    return Err(FetchError::Transport {
                        url: "http://127.0.0.1:1/token".into(),
                        reason: "down".into(),
                    });
                }
                Ok(Fetched::AccessToken {
                    token: Secret::new(format!("{target}-{n}")),
                    expires_at: now + self.lifetime.load(Ordering::SeqCst),
                })
            })
        }
    }

    fn cache(lifetime: i64) -> (Arc<Counting>, Arc<ManualClock>, Arc<CredentialCache>) {
        let fetcher = Arc::new(Counting::default());
        fetcher.lifetime.store(lifetime, Ordering::SeqCst);
        let clock = Arc::new(ManualClock::new(1_000_000));
        let cache = Arc::new(CredentialCache::new(
            fetcher.clone(),
            clock.clone(),
            ["t".to_owned()],
        ));
        (fetcher, clock, cache)
    }

    fn token(f: &Fetched) -> String {
        match f {
            Fetched::AccessToken { token, .. } => token.expose().clone(),
            Fetched::Aws { .. } => panic!("not a token"),
        }
    }

    #[tokio::test]
    async fn cached_until_the_refresh_point_then_refreshed_ahead_of_expiry() {
        let (fetcher, clock, cache) = cache(3600);
        assert_eq!(token(&cache.get("t").await.unwrap()), "t-0");
        clock.advance(3600 - 900 - 1);
        assert_eq!(token(&cache.get("t").await.unwrap()), "t-0");
        clock.advance(1);
        assert_eq!(
            token(&cache.get("t").await.unwrap()),
            "t-1",
            "refreshed 15 min ahead"
        );
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn short_lived_credentials_refresh_at_half_their_lifetime() {
        let (_, clock, cache) = cache(120);
        assert_eq!(token(&cache.get("t").await.unwrap()), "t-0");
        clock.advance(59);
        assert_eq!(token(&cache.get("t").await.unwrap()), "t-0");
        clock.advance(1);
        assert_eq!(token(&cache.get("t").await.unwrap()), "t-1");
    }

    /// Stops a burst of SDK requests from each costing an exchange (and a subject token).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_one_fetch() {
        let (fetcher, _, cache) = cache(3600);
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { token(&cache.get("t").await.unwrap()) })
            })
            .collect();
        for h in handles {
            assert_eq!(h.await.unwrap(), "t-0");
        }
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_refresh_serves_the_cached_credential_only_while_it_is_usable() {
        let (fetcher, clock, cache) = cache(3600);
        cache.get("t").await.unwrap();
        fetcher.fail.store(true, Ordering::SeqCst);
        clock.advance(3600 - 900);
        assert_eq!(token(&cache.get("t").await.unwrap()), "t-0");
        clock.advance(900 - MIN_SERVE_SECS + 1);
        assert!(matches!(cache.get("t").await, Err(CacheError::Fetch(_))));
    }

    #[tokio::test]
    async fn unknown_targets_are_not_fetched() {
        let (fetcher, _, cache) = cache(3600);
        assert_eq!(
            cache.get("other").await.unwrap_err(),
            CacheError::UnknownTarget("other".into())
        );
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 0);
    }
}
