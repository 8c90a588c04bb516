//! [`CredentialCache`]: cloud credentials shared between identical, approved requests.
//!
//! The cache sits after the policy decision: every request is still verified and
//! decided; only the cloud call is saved. It wraps cloud providers ([`CredentialCache::wrap`]);
//! `jwt` targets are not cached (each token has its own `jti`).
//!
//! - **Key**: target, the workload's full identity (`<trust>:<upstream sub>`, not the
//!   bounded `workload` text), the grant parameters and the approved lifetime. Two
//!   requests share a credential only if a fresh call for either would have been the same.
//! - **Serving rule**: a cached credential is served only while its remaining lifetime is
//!   above `min_remaining_secs` and not above what this request was approved for
//!   ([`crate::Target::credential_lifetime_ceiling`], plus [`CLOCK_SKEW_ALLOWANCE_SECS`]
//!   for the cloud's clock). Otherwise it is refreshed: replaced by a fresh one, ahead of
//!   its expiry.
//! - **Single flight**: concurrent misses for one key make one cloud call; the others wait
//!   for it and share its result, success or error. A failure is never cached.
//! - **Bounded**: at most `max_entries` credentials; an entry also leaves the cache when its
//!   credential expires (until then an unserveable entry is counted as a refresh when the
//!   next identical request replaces it).
//! - **Purged on revocation**: [`CredentialCache::invalidate_where`] drops every entry
//!   whose target and workload (trust, upstream `sub`) a revocation selects, at once.
//! - **Counters**: hits, misses, refreshes, evictions and purges
//!   ([`CredentialCache::stats`]).
//!
//! SECURITY: cached credentials are [`crate::Credential`]s, whose `Debug` shows no secret;
//! the cache's own `Debug` shows settings and counters only.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use legate_core::UnixSeconds;
use moka::Expiry;
use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::ops::compute::{CompResult, Op};

use crate::{
    BoxFuture, Credential, CredentialProvider, ExchangeError, Grant, IssueRequest, Issued,
};

/// Seconds a cloud's clock may run ahead of Legate's before a fresh credential looks
/// longer-lived than the lifetime it was requested with.
pub const CLOCK_SKEW_ALLOWANCE_SECS: u64 = 30;

/// `[credential_cache]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Serve a cached credential only while more than this many seconds remain.
    pub min_remaining_secs: u64,
    /// The most credentials held.
    pub max_entries: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            min_remaining_secs: 300,
            max_entries: 10_000,
        }
    }
}

/// A snapshot of the cache's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Requests served a cached credential (including those that waited for a concurrent
    /// identical request's cloud call).
    pub hits: u64,
    /// Requests that found no entry and made the cloud call.
    pub misses: u64,
    /// Entries replaced because they got too close to expiry or outlived the approval.
    pub refreshes: u64,
    /// Entries dropped by the size bound or by expiry.
    pub evictions: u64,
    /// Entries dropped because a revocation selected them
    /// ([`CredentialCache::invalidate_where`]).
    pub purged: u64,
    /// Entries held now (approximate: moka counts lazily).
    pub entries: u64,
}

/// What makes two requests share a credential.
///
/// SECURITY: `subject` is the full `<trust>:<upstream sub>`, not the bounded `workload`
/// text: two long subjects that share a prefix must never share a credential.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    target: String,
    subject: String,
    grant: Grant,
    lifetime_secs: u64,
}

/// A cached credential and how long moka keeps it.
#[derive(Clone)]
struct Entry {
    credential: Credential,
    keep_for: Duration,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Credential`'s own `Debug` hides secrets; this is belt and braces.
        f.write_str("Entry { .. }")
    }
}

/// Expires each entry when its credential expires.
struct UntilExpiry;

impl Expiry<CacheKey, Entry> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Entry,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.keep_for)
    }

    fn expire_after_update(
        &self,
        _key: &CacheKey,
        value: &Entry,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.keep_for)
    }
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    refreshes: AtomicU64,
    evictions: AtomicU64,
    purged: AtomicU64,
}

/// The credential cache, shared by every cloud provider it wraps. Cheap to clone.
#[derive(Clone)]
pub struct CredentialCache {
    cache: Cache<CacheKey, Entry>,
    settings: CacheSettings,
    counters: Arc<Counters>,
}

impl fmt::Debug for CredentialCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialCache")
            .field("settings", &self.settings)
            .field("stats", &self.stats())
            .finish()
    }
}

impl CredentialCache {
    /// An empty cache.
    pub fn new(settings: CacheSettings) -> Self {
        let counters = Arc::new(Counters::default());
        let evictions = counters.clone();
        let cache = Cache::builder()
            .max_capacity(settings.max_entries)
            .expire_after(UntilExpiry)
            .eviction_listener(move |_key, _value, cause: RemovalCause| {
                if cause.was_evicted() {
                    evictions.evictions.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        Self {
            cache,
            settings,
            counters,
        }
    }

    /// A provider that serves `inner`'s credentials through this cache.
    pub fn wrap(&self, inner: Arc<dyn CredentialProvider>) -> CachedProvider {
        CachedProvider {
            cache: self.clone(),
            inner,
        }
    }

    /// The counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.counters.hits.load(Ordering::Relaxed),
            misses: self.counters.misses.load(Ordering::Relaxed),
            refreshes: self.counters.refreshes.load(Ordering::Relaxed),
            evictions: self.counters.evictions.load(Ordering::Relaxed),
            purged: self.counters.purged.load(Ordering::Relaxed),
            entries: self.cache.entry_count(),
        }
    }

    /// Drops, at once, every cached credential for which `selects(target, trust,
    /// upstream_sub)` is true, and returns how many it dropped. A revocation calls it so
    /// that a revoked workload's credentials are not kept (the exchange refuses a revoked
    /// identity before it reaches the cache; this is the cache's half).
    ///
    /// The entries are walked once (revocations are rare; the cache is bounded by
    /// `max_entries`). A cloud call already in flight for a selected workload may still
    /// insert its credential afterwards; it is never served to a request the revocation
    /// matches, because such a request is refused before the cache.
    pub async fn invalidate_where(&self, selects: impl Fn(&str, &str, &str) -> bool) -> u64 {
        let doomed: Vec<Arc<CacheKey>> = self
            .cache
            .iter()
            .filter(|(key, _)| {
                // `subject` is `<trust>:<upstream sub>`; a trust name holds no `:`.
                let (trust, sub) = key.subject.split_once(':').unwrap_or(("", &key.subject));
                selects(&key.target, trust, sub)
            })
            .map(|(key, _)| key)
            .collect();
        let mut purged = 0;
        for key in doomed {
            if self.cache.remove(key.as_ref()).await.is_some() {
                purged += 1;
            }
        }
        self.counters.purged.fetch_add(purged, Ordering::Relaxed);
        purged
    }

    /// Runs pending maintenance (eviction bookkeeping), so that [`Self::stats`] is exact.
    pub async fn sync(&self) {
        self.cache.run_pending_tasks().await;
    }

    /// Whether `credential` may be served at `now` to a request whose approval caps the
    /// remaining lifetime at `ceiling`.
    fn serveable(&self, credential: &Credential, now: UnixSeconds, ceiling: Option<u64>) -> bool {
        let remaining = credential.expires_at().saturating_sub(now);
        let min = i64::try_from(self.settings.min_remaining_secs).unwrap_or(i64::MAX);
        let within_approval = ceiling.is_none_or(|c| {
            let c = c.saturating_add(CLOCK_SKEW_ALLOWANCE_SECS);
            remaining <= i64::try_from(c).unwrap_or(i64::MAX)
        });
        remaining > min && within_approval
    }

    /// How long moka may keep `credential`, fetched at `now`: until it expires.
    fn keep_for(credential: &Credential, now: UnixSeconds) -> Duration {
        let remaining = credential.expires_at().saturating_sub(now);
        Duration::from_secs(u64::try_from(remaining).unwrap_or(0))
    }

    async fn issue(
        &self,
        inner: &dyn CredentialProvider,
        request: IssueRequest<'_>,
        now: UnixSeconds,
    ) -> Result<Issued, ExchangeError> {
        let key = CacheKey {
            target: request.target.name.clone(),
            subject: request.subject.clone(),
            grant: request.grant.clone(),
            lifetime_secs: request.lifetime_secs,
        };
        let ceiling = request
            .target
            .credential_lifetime_ceiling(request.lifetime_secs);

        // Fast path: a serveable credential, without taking the key's lock.
        if let Some(entry) = self.cache.get(&key).await {
            if self.serveable(&entry.credential, now, ceiling) {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Issued {
                    credential: entry.credential,
                    from_cache: true,
                });
            }
            // Too close to expiry, or longer-lived than this approval: drop it, unless a
            // concurrent request has already put a serveable one in its place.
            let removed = self
                .cache
                .entry(key.clone())
                .and_compute_with(|current| {
                    let op = match current {
                        Some(e) if !self.serveable(&e.value().credential, now, ceiling) => {
                            Op::Remove
                        }
                        _ => Op::Nop,
                    };
                    std::future::ready(op)
                })
                .await;
            if matches!(removed, CompResult::Removed(_)) {
                self.counters.refreshes.fetch_add(1, Ordering::Relaxed);
            }
        }

        // Slow path: one cloud call per key, shared by every concurrent identical request.
        let fetch = async {
            let credential = inner.issue(request, now).await?;
            let keep_for = Self::keep_for(&credential, now);
            Ok::<_, ExchangeError>(Entry {
                credential,
                keep_for,
            })
        };
        let entry = self
            .cache
            .entry(key)
            .or_try_insert_with(fetch)
            .await
            .map_err(|e| (*e).clone())?;
        // Not fresh: another request's cloud call (or an entry put in place meanwhile)
        // answered this one.
        let from_cache = !entry.is_fresh();
        if from_cache {
            self.counters.hits.fetch_add(1, Ordering::Relaxed);
        } else {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Issued {
            credential: entry.into_value().credential,
            from_cache,
        })
    }
}

/// A cloud provider behind the [`CredentialCache`].
#[derive(Debug)]
pub struct CachedProvider {
    cache: CredentialCache,
    inner: Arc<dyn CredentialProvider>,
}

impl CredentialProvider for CachedProvider {
    fn issue<'a>(
        &'a self,
        request: IssueRequest<'a>,
        now: UnixSeconds,
    ) -> BoxFuture<'a, Result<Credential, ExchangeError>> {
        Box::pin(async move {
            self.cache
                .issue(self.inner.as_ref(), request, now)
                .await
                .map(|issued| issued.credential)
        })
    }

    fn issue_traced<'a>(
        &'a self,
        request: IssueRequest<'a>,
        now: UnixSeconds,
    ) -> BoxFuture<'a, Result<Issued, ExchangeError>> {
        Box::pin(self.cache.issue(self.inner.as_ref(), request, now))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use legate_core::Secret;

    use super::*;
    use crate::fixtures::{NOW, request, target};
    use crate::{AwsTarget, CloudTarget, Shaping, Target};

    /// An in-process cloud: counts calls, answers after a pause with a credential
    /// expiring `lifetime` after the call's `now` (or an error while `fail` is set).
    #[derive(Debug, Default)]
    struct CountingCloud {
        calls: AtomicUsize,
        fail: std::sync::atomic::AtomicBool,
        /// Seconds of life of the credentials it issues; 0: the approved lifetime.
        lifetime: AtomicU64,
    }

    impl CredentialProvider for CountingCloud {
        fn issue<'a>(
            &'a self,
            request: IssueRequest<'a>,
            now: UnixSeconds,
        ) -> BoxFuture<'a, Result<Credential, ExchangeError>> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                // Let concurrent requests pile up behind this call.
                tokio::time::sleep(Duration::from_millis(20)).await;
                if self.fail.load(Ordering::SeqCst) {
                    return Err(ExchangeError::Unavailable {
                        cloud: "aws",
                        code: "http_503".into(),
                        request_id: None,
                        message: "down".into(),
                    });
                }
                let lifetime = match self.lifetime.load(Ordering::SeqCst) {
                    0 => request.lifetime_secs,
                    l => l,
                };
                Ok(Credential::Aws {
                    access_key_id: format!("ASIA{n}"),
                    secret_access_key: Secret::new(format!("secret-{n}")),
                    session_token: Secret::new(format!("session-{n}")),
                    expiration: now + i64::try_from(lifetime).unwrap(),
                    assumed_role_arn: None,
                    cloud_request_id: None,
                })
            })
        }
    }

    fn aws() -> Target {
        target(
            "aws-deploy",
            CloudTarget::Aws(AwsTarget {
                role_arn: "arn:aws:iam::123456789012:role/deploy".into(),
                region: "us-east-1".into(),
                endpoint: None,
                assertion_audience: None,
                ca_pem: None,
                timeout_secs: 10,
            }),
        )
    }

    fn setup() -> (CredentialCache, Arc<CountingCloud>, CachedProvider) {
        let cache = CredentialCache::new(CacheSettings::default());
        let cloud = Arc::new(CountingCloud::default());
        let provider = cache.wrap(cloud.clone());
        (cache, cloud, provider)
    }

    fn key_id(c: &Credential) -> String {
        match c {
            Credential::Aws { access_key_id, .. } => access_key_id.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_hundred_concurrent_identical_requests_make_one_cloud_call() {
        let (cache, cloud, provider) = setup();
        let provider = Arc::new(provider);
        let target = Arc::new(aws());
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let provider = provider.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    provider
                        .issue(request(&target, 3600), NOW)
                        .await
                        .map(|c| key_id(&c))
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), "ASIA0");
        }
        assert_eq!(cloud.calls.load(Ordering::SeqCst), 1);
        let stats = cache.stats();
        assert_eq!((stats.misses, stats.hits), (1, 99), "{stats:?}");
    }

    #[tokio::test]
    async fn a_credential_near_expiry_is_refreshed() {
        let (cache, cloud, provider) = setup();
        let target = aws();
        let first = provider.issue(request(&target, 3600), NOW).await.unwrap();
        // 3000 s later 600 s remain: above the 300 s floor, served.
        let again = provider
            .issue(request(&target, 3600), NOW + 3000)
            .await
            .unwrap();
        assert_eq!(key_id(&again), key_id(&first));
        // 3400 s later only 200 s remain: refreshed.
        let fresh = provider
            .issue(request(&target, 3600), NOW + 3400)
            .await
            .unwrap();
        assert_ne!(key_id(&fresh), key_id(&first));
        assert_eq!(fresh.expires_at(), NOW + 3400 + 3600);
        assert_eq!(cloud.calls.load(Ordering::SeqCst), 2);
        let stats = cache.stats();
        assert_eq!(
            (stats.misses, stats.hits, stats.refreshes),
            (2, 1, 1),
            "{stats:?}"
        );
    }

    /// The ledger's `served_from_cache`: a cloud call says no, a cached credential (and
    /// one shared from a concurrent call) says yes; a provider that caches nothing says no.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn issue_traced_says_whether_the_cache_served() {
        let (_cache, cloud, provider) = setup();
        let target = aws();
        let first = provider.issue_traced(request(&target, 3600), NOW);
        let shared = provider.issue_traced(request(&target, 3600), NOW);
        let (first, shared) = tokio::join!(first, shared);
        let (first, shared) = (first.unwrap(), shared.unwrap());
        assert_ne!(first.from_cache, shared.from_cache, "one call, one shared");
        let again = provider
            .issue_traced(request(&target, 3600), NOW + 10)
            .await
            .unwrap();
        assert!(again.from_cache);
        assert_eq!(key_id(&again.credential), key_id(&first.credential));
        let uncached = cloud
            .issue_traced(request(&target, 3600), NOW)
            .await
            .unwrap();
        assert!(!uncached.from_cache);
        assert_eq!(cloud.calls.load(Ordering::SeqCst), 2);
    }

    /// Stops one cloud outage from being served to every later request.
    #[tokio::test]
    async fn errors_are_not_cached() {
        let (cache, cloud, provider) = setup();
        let target = aws();
        cloud.fail.store(true, Ordering::SeqCst);
        assert!(provider.issue(request(&target, 3600), NOW).await.is_err());
        cloud.fail.store(false, Ordering::SeqCst);
        assert!(provider.issue(request(&target, 3600), NOW).await.is_ok());
        assert_eq!(cloud.calls.load(Ordering::SeqCst), 2);
        assert_eq!(cache.stats().hits, 0);
    }

    /// Stops a request approved for 15 minutes from walking away with a credential that
    /// lives an hour because another request was approved for that.
    #[tokio::test]
    async fn a_shorter_approval_is_not_served_a_longer_credential() {
        let (_cache, cloud, provider) = setup();
        let target = aws();
        let long = provider.issue(request(&target, 3600), NOW).await.unwrap();
        let short = provider.issue(request(&target, 900), NOW).await.unwrap();
        assert_ne!(key_id(&short), key_id(&long));
        assert!(short.expires_at() - NOW <= 900);
        assert_eq!(cloud.calls.load(Ordering::SeqCst), 2);
    }

    /// Stops a cloud that returns more lifetime than was asked from having the surplus
    /// served from the cache.
    #[tokio::test]
    async fn a_cached_credential_longer_than_the_approval_is_replaced() {
        let (cache, cloud, provider) = setup();
        let target = aws();
        cloud.lifetime.store(7200, Ordering::SeqCst);
        let first = provider.issue(request(&target, 1800), NOW).await.unwrap();
        cloud.lifetime.store(0, Ordering::SeqCst);
        let second = provider.issue(request(&target, 1800), NOW).await.unwrap();
        assert_ne!(key_id(&first), key_id(&second));
        assert_eq!(second.expires_at(), NOW + 1800);
        assert_eq!(cache.stats().refreshes, 1);
    }

    #[tokio::test]
    async fn different_workloads_and_targets_do_not_share_credentials() {
        let (_cache, cloud, provider) = setup();
        let a = aws();
        let mut b = aws();
        b.name = "aws-other".into();
        let mut req = request(&a, 3600);
        provider.issue(req.clone(), NOW).await.unwrap();
        req.subject = "github:repo:org/other:ref:refs/heads/main".into();
        provider.issue(req, NOW).await.unwrap();
        provider.issue(request(&b, 3600), NOW).await.unwrap();
        assert_eq!(cloud.calls.load(Ordering::SeqCst), 3);
    }

    /// Stops two workloads of one identity whose claims give different session tags
    /// (or source identities) from sharing one credential: the second would act with
    /// the first's tags, which ABAC policies grant on.
    #[tokio::test]
    async fn different_session_tags_or_source_identities_do_not_share_credentials() {
        let (_cache, cloud, provider) = setup();
        let target = aws();
        let shaping = Shaping {
            session_tags: [("Env".to_owned(), "environment".to_owned())].into(),
            source_identity: Some("actor".to_owned()),
            ..Shaping::default()
        };
        let grant = |env: &str, actor: &str| {
            let claims = serde_json::json!({"environment": env, "actor": actor});
            shaping.shape(claims.as_object().unwrap()).unwrap()
        };
        let issue = |grant: Grant| {
            let mut req = request(&target, 3600);
            req.grant = grant;
            provider.issue(req, NOW)
        };
        let dev = key_id(&issue(grant("dev", "alice")).await.unwrap());
        let prod = key_id(&issue(grant("prod", "alice")).await.unwrap());
        let bob = key_id(&issue(grant("dev", "bob")).await.unwrap());
        assert_ne!(dev, prod);
        assert_ne!(dev, bob);
        assert_eq!(cloud.calls.load(Ordering::SeqCst), 3);
        // The same grant again is served from the cache.
        assert_eq!(key_id(&issue(grant("prod", "alice")).await.unwrap()), prod);
        assert_eq!(cloud.calls.load(Ordering::SeqCst), 3);
    }

    /// Stops a revoked workload's cloud credentials from staying cached: the entries a
    /// revocation selects are dropped at once (the next identical request calls the
    /// cloud), and nobody else's.
    #[tokio::test]
    async fn invalidation_drops_exactly_the_selected_workloads() {
        let (cache, cloud, provider) = setup();
        let a = aws();
        let mut b = aws();
        b.name = "aws-other".into();
        fn of<'t>(target: &'t Target, subject: &str) -> IssueRequest<'t> {
            let mut req = request(target, 3600);
            req.subject = subject.to_owned();
            req
        }
        let alice = "github:repo:org/alice";
        let bob = "github:repo:org/bob";
        for (target, subject) in [(&a, alice), (&b, alice), (&a, bob)] {
            provider.issue(of(target, subject), NOW).await.unwrap();
        }
        assert_eq!(cloud.calls.load(Ordering::SeqCst), 3);
        let purged = cache
            .invalidate_where(|target, trust, sub| {
                trust == "github" && sub == "repo:org/alice" && target == "aws-deploy"
            })
            .await;
        assert_eq!(purged, 1);
        assert_eq!(cache.stats().purged, 1);
        // Bob and alice-on-the-other-target are still served from the cache.
        provider.issue(of(&a, bob), NOW).await.unwrap();
        provider.issue(of(&b, alice), NOW).await.unwrap();
        assert_eq!(cloud.calls.load(Ordering::SeqCst), 3);
        // Alice on the revoked target is fetched afresh.
        provider.issue(of(&a, alice), NOW).await.unwrap();
        assert_eq!(cloud.calls.load(Ordering::SeqCst), 4);
        // A `sub` with a `:` is split at the trust's end only.
        provider
            .issue(of(&a, "github:repo:org/x:ref:main"), NOW)
            .await
            .unwrap();
        let purged = cache
            .invalidate_where(|_, trust, sub| trust == "github" && sub == "repo:org/x:ref:main")
            .await;
        assert_eq!(purged, 1);
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let cache = CredentialCache::new(CacheSettings {
            min_remaining_secs: 300,
            max_entries: 10,
        });
        let cloud = Arc::new(CountingCloud::default());
        let provider = cache.wrap(cloud.clone());
        let target = aws();
        for i in 0..50 {
            let mut req = request(&target, 3600);
            req.subject = format!("github:w{i}");
            provider.issue(req, NOW).await.unwrap();
        }
        cache.sync().await;
        let stats = cache.stats();
        assert!(stats.entries <= 10, "{stats:?}");
        assert!(stats.evictions >= 40, "{stats:?}");
    }

    #[test]
    fn debug_shows_no_secret() {
        let (cache, _cloud, _provider) = setup();
        let dbg = format!("{cache:?}");
        assert!(dbg.contains("min_remaining_secs"), "{dbg}");
        let entry = Entry {
            credential: Credential::AccessToken {
                token: Secret::new("ya29.secret".into()),
                expires_at: 0,
                cloud_request_id: None,
            },
            keep_for: Duration::ZERO,
        };
        assert!(!format!("{entry:?}").contains("ya29"));
    }
}
