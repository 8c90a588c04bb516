//! The per-issuer key cache and its refresh rules.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use legate_core::jwk::{KeyLookup, KeySet, KeyWarning};
use legate_core::text::escape_untrusted;
use legate_core::{Clock, UnixSeconds, UnverifiedJwt, VerifiedClaims, VerifyError, VerifyRules};

use crate::address::NetworkAccess;
use crate::fetch::{FetchError, FetchLimits, HttpFetcher};

/// Where an issuer's keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// OIDC discovery at `{issuer}/.well-known/openid-configuration`, then its `jwks_uri`.
    Discovery,
    /// A fixed JWKS URL (skips discovery; for issuers whose discovery is not reachable).
    JwksUri(String),
    /// Keys given at start-up (a static JWKS file, or the dev-mode demo issuer).
    Static(Arc<KeySet>),
}

/// One trusted upstream issuer.
#[derive(Debug, Clone)]
pub struct TrustConfig {
    /// Short name used by policy (`Legate::Issuer::"<name>"`) and logs.
    pub name: String,
    /// Verification rules; `rules.issuer` is the exact `iss`.
    pub rules: VerifyRules,
    /// Where the keys come from.
    pub source: KeySource,
    /// Extra CA certificates (PEM) for a private issuer.
    pub ca_pem: Option<Vec<u8>>,
    /// Refresh keys this often, in seconds, even when nothing asks for it.
    pub refresh_interval_secs: u64,
    /// Keep serving the last good keys this long after they were fetched when the
    /// issuer cannot be reached; after that, fail closed.
    pub stale_if_error_secs: u64,
    /// At most one fetch per this many seconds (unknown `kid`s, failures, schedule).
    pub min_refresh_gap_secs: u64,
    /// Whether discovery and JWKS fetches may connect to loopback, private,
    /// link-local and other non-public addresses. Off by default: a discovery
    /// document (or DNS) pointing at Legate's own network is refused.
    pub allow_private_network: bool,
}

impl TrustConfig {
    /// A config with the default refresh settings (15 min refresh, 24 h stale-if-error,
    /// one fetch per 30 s at most), fetching from public addresses only.
    pub fn new(name: impl Into<String>, rules: VerifyRules, source: KeySource) -> Self {
        Self {
            name: name.into(),
            rules,
            source,
            ca_pem: None,
            refresh_interval_secs: 900,
            stale_if_error_secs: 86_400,
            min_refresh_gap_secs: 30,
            allow_private_network: false,
        }
    }
}

/// Why a token could not be verified against the trust store.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// `iss` is not a configured issuer (checked before any network call).
    #[error("issuer `{0}` is not trusted")]
    UntrustedIssuer(String),
    /// The issuer's keys are not available (never fetched, or older than the stale bound).
    #[error("keys of trust `{trust}` are unavailable: {reason}")]
    KeysUnavailable {
        /// Trust name.
        trust: String,
        /// Last error.
        reason: String,
    },
    /// Verification failed.
    #[error("token from trust `{trust}` rejected: {error}")]
    Verify {
        /// Trust name.
        trust: String,
        /// The precise reason.
        error: VerifyError,
    },
    /// Two trusts share a name or an issuer.
    #[error("trust `{0}` is configured twice (by name or issuer)")]
    Duplicate(String),
    /// A trust's HTTP client could not be built.
    #[error("trust `{trust}`: {error}")]
    Setup {
        /// Trust name.
        trust: String,
        /// What failed.
        error: FetchError,
    },
}

impl TrustError {
    /// A stable code for audit logs and metrics.
    pub fn reason_code(&self) -> &'static str {
        match self {
            TrustError::UntrustedIssuer(_) => "untrusted_issuer",
            TrustError::KeysUnavailable { .. } => "keys_unavailable",
            TrustError::Verify { error, .. } => error.reason_code(),
            TrustError::Duplicate(_) | TrustError::Setup { .. } => "configuration",
        }
    }

    /// The trust the token was routed to, if it got that far.
    pub fn trust(&self) -> Option<&str> {
        match self {
            TrustError::KeysUnavailable { trust, .. } | TrustError::Verify { trust, .. } => {
                Some(trust)
            }
            _ => None,
        }
    }
}

/// What `/readyz` and operators see of one issuer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssuerStatus {
    /// Trust name.
    pub name: String,
    /// Issuer URL.
    pub issuer: String,
    /// Usable keys in the current set.
    pub keys: usize,
    /// When the current set was fetched.
    pub fetched_at: Option<UnixSeconds>,
    /// Whether at least one fetch was attempted (or the keys are static).
    pub attempted: bool,
    /// The last fetch error, if the last fetch failed.
    pub last_error: Option<String>,
    /// The last fetch error's stable code (`jwks_private_address`, `jwks_http_status`,
    /// …; see [`FetchError::reason_code`]).
    pub last_error_code: Option<&'static str>,
    /// Keys of the current set's document that were left out, and why (private
    /// material, `use: enc`, duplicate `kid`, unparseable, …). Escaped `kid`s only.
    pub ignored_keys: Vec<String>,
}

/// What one trust's key fetches did since start, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchCounts {
    /// Fetch attempts (discovery, when used, then the JWKS; one attempt whatever its
    /// outcome). Refreshes skipped by the rate limit are not attempts.
    pub fetches: u64,
    /// Failed attempts by [`FetchError::reason_code`] (a fixed set of codes).
    pub failures: BTreeMap<&'static str, u64>,
    /// `kid`s that a successful fetch found and the previous set did not have (the
    /// first set counts nothing: there was nothing to change).
    pub kids_added: u64,
    /// `kid`s of the previous set that a successful fetch no longer found.
    pub kids_removed: u64,
}

#[derive(Debug)]
struct Snapshot {
    keys: Arc<KeySet>,
    fetched_at: UnixSeconds,
    generation: u64,
}

#[derive(Debug, Default)]
struct Gate {
    last_attempt: Option<UnixSeconds>,
}

#[derive(Debug, Default, Clone)]
struct Health {
    attempted: bool,
    last_error: Option<String>,
    last_error_code: Option<&'static str>,
    ignored_keys: Vec<String>,
}

/// One trusted issuer with its fetcher and refresh gate.
#[derive(Debug)]
pub struct TrustedIssuer {
    config: TrustConfig,
    fetcher: Option<HttpFetcher>,
    gate: tokio::sync::Mutex<Gate>,
    health: std::sync::Mutex<Health>,
    counts: std::sync::Mutex<FetchCounts>,
}

impl TrustedIssuer {
    /// The trust's short name.
    pub fn name(&self) -> &str {
        &self.config.name
    }
    /// The exact issuer URL.
    pub fn issuer(&self) -> &str {
        &self.config.rules.issuer
    }
    /// The configuration.
    pub fn config(&self) -> &TrustConfig {
        &self.config
    }

    fn set_health(&self, f: impl FnOnce(&mut Health)) {
        if let Ok(mut h) = self.health.lock() {
            f(&mut h);
        }
    }

    fn health(&self) -> Health {
        self.health.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// What this trust's key fetches did since start (static keys: nothing).
    pub fn fetch_counts(&self) -> FetchCounts {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn count(&self, f: impl FnOnce(&mut FetchCounts)) {
        if let Ok(mut c) = self.counts.lock() {
            f(&mut c);
        }
    }
}

/// `(added, removed)`: the `kid`s of `new` not in `old`, and of `old` not in `new`.
fn kid_churn(old: &KeySet, new: &KeySet) -> (u64, u64) {
    let old: HashSet<&str> = old.kids().into_iter().collect();
    let new: HashSet<&str> = new.kids().into_iter().collect();
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    (
        count(new.difference(&old).count()),
        count(old.difference(&new).count()),
    )
}

/// All trusted issuers and their cached keys. Cheap to clone (shared inside).
#[derive(Debug, Clone)]
pub struct TrustStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    by_issuer: HashMap<String, Arc<TrustedIssuer>>,
    ordered: Vec<Arc<TrustedIssuer>>,
    cache: moka::future::Cache<String, Arc<Snapshot>>,
    clock: Arc<dyn Clock>,
    generation: AtomicU64,
}

impl TrustStore {
    /// Builds the store. No network call happens here; see [`TrustStore::warm`].
    pub fn new(
        configs: Vec<TrustConfig>,
        clock: Arc<dyn Clock>,
        limits: FetchLimits,
    ) -> Result<Self, TrustError> {
        let mut by_issuer = HashMap::new();
        let mut ordered: Vec<Arc<TrustedIssuer>> = Vec::new();
        for config in configs {
            if ordered.iter().any(|t| t.config.name == config.name)
                || by_issuer.contains_key(&config.rules.issuer)
            {
                return Err(TrustError::Duplicate(config.name));
            }
            let access = if config.allow_private_network {
                NetworkAccess::PrivateAllowed
            } else {
                NetworkAccess::PublicOnly
            };
            let fetcher = match config.source {
                KeySource::Static(_) => None,
                _ => Some(
                    HttpFetcher::new(config.ca_pem.as_deref(), limits, access).map_err(
                        |error| TrustError::Setup {
                            trust: config.name.clone(),
                            error,
                        },
                    )?,
                ),
            };
            let issuer = Arc::new(TrustedIssuer {
                fetcher,
                gate: tokio::sync::Mutex::new(Gate::default()),
                health: std::sync::Mutex::new(Health::default()),
                counts: std::sync::Mutex::new(FetchCounts::default()),
                config,
            });
            by_issuer.insert(issuer.config.rules.issuer.clone(), issuer.clone());
            ordered.push(issuer);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                by_issuer,
                ordered,
                cache: moka::future::Cache::builder().max_capacity(10_000).build(),
                clock,
                generation: AtomicU64::new(0),
            }),
        })
    }

    /// The trusted issuers, in configuration order.
    pub fn issuers(&self) -> &[Arc<TrustedIssuer>] {
        &self.inner.ordered
    }

    /// The trust whose issuer URL is exactly `iss`.
    pub fn find_by_issuer(&self, iss: &str) -> Option<&Arc<TrustedIssuer>> {
        self.inner.by_issuer.get(iss)
    }

    /// Fetches every issuer's keys once, concurrently. Failures are logged and recorded;
    /// the store keeps working and retries on demand.
    pub async fn warm(&self) {
        let mut tasks = tokio::task::JoinSet::new();
        for issuer in self.inner.ordered.clone() {
            if matches!(issuer.config.source, KeySource::Static(_)) {
                continue;
            }
            let store = self.clone();
            tasks.spawn(async move { store.refresh(&issuer, None).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// True once every issuer has been tried at least once.
    pub fn all_attempted(&self) -> bool {
        self.inner
            .ordered
            .iter()
            .all(|i| matches!(i.config.source, KeySource::Static(_)) || i.health().attempted)
    }

    /// Per-issuer status for readiness and operators.
    pub async fn status(&self) -> Vec<IssuerStatus> {
        let mut out = Vec::with_capacity(self.inner.ordered.len());
        for issuer in &self.inner.ordered {
            let health = issuer.health();
            let (keys, fetched_at, attempted) = match &issuer.config.source {
                KeySource::Static(ks) => (ks.len(), None, true),
                _ => match self.inner.cache.get(issuer.name()).await {
                    Some(s) => (s.keys.len(), Some(s.fetched_at), true),
                    None => (0, None, health.attempted),
                },
            };
            out.push(IssuerStatus {
                name: issuer.config.name.clone(),
                issuer: issuer.config.rules.issuer.clone(),
                keys,
                fetched_at,
                attempted,
                last_error: health.last_error,
                last_error_code: health.last_error_code,
                ignored_keys: health.ignored_keys,
            });
        }
        out
    }

    /// Routes `jwt` to its issuer by exact `iss` and verifies it.
    ///
    /// An unknown `kid` triggers at most one refresh of that issuer's keys (shared by
    /// concurrent callers, and at most one per `min_refresh_gap_secs`), then one retry.
    pub async fn verify(
        &self,
        jwt: UnverifiedJwt,
        now: UnixSeconds,
    ) -> Result<(VerifiedClaims, Arc<TrustedIssuer>), TrustError> {
        // SECURITY: the issuer is checked against the trust list before any network call,
        // so an attacker cannot make Legate fetch from an issuer of their choosing.
        let Some(issuer) = self.find_by_issuer(jwt.unverified_issuer()).cloned() else {
            return Err(TrustError::UntrustedIssuer(escape_untrusted(
                jwt.unverified_issuer(),
            )));
        };
        let mut keys = self.keys(&issuer).await?;
        if matches!(keys.get(jwt.unverified_kid()), KeyLookup::Unknown)
            && !matches!(issuer.config.source, KeySource::Static(_))
            && let Some(snapshot) = self.refresh(&issuer, Some(jwt.unverified_kid())).await
        {
            keys = snapshot.keys.clone();
        }
        legate_core::verify(jwt, &keys, &issuer.config.rules, now)
            .map(|claims| (claims, issuer.clone()))
            .map_err(|error| TrustError::Verify {
                trust: issuer.config.name.clone(),
                error,
            })
    }

    /// [`verify`](Self::verify) with one difference: the token's `aud` must name
    /// `audience` instead of one of the trust's own audiences (the admin endpoints verify
    /// their bearer tokens this way). Same routing, keys, refresh and checks otherwise.
    pub async fn verify_for_audience(
        &self,
        jwt: UnverifiedJwt,
        audience: &str,
        now: UnixSeconds,
    ) -> Result<(VerifiedClaims, Arc<TrustedIssuer>), TrustError> {
        let Some(issuer) = self.find_by_issuer(jwt.unverified_issuer()).cloned() else {
            return Err(TrustError::UntrustedIssuer(escape_untrusted(
                jwt.unverified_issuer(),
            )));
        };
        let mut keys = self.keys(&issuer).await?;
        if matches!(keys.get(jwt.unverified_kid()), KeyLookup::Unknown)
            && !matches!(issuer.config.source, KeySource::Static(_))
            && let Some(snapshot) = self.refresh(&issuer, Some(jwt.unverified_kid())).await
        {
            keys = snapshot.keys.clone();
        }
        let mut rules = issuer.config.rules.clone();
        rules.audiences = vec![audience.to_owned()];
        legate_core::verify(jwt, &keys, &rules, now)
            .map(|claims| (claims, issuer.clone()))
            .map_err(|error| TrustError::Verify {
                trust: issuer.config.name.clone(),
                error,
            })
    }

    /// The issuer's current keys, fetching them if none are cached.
    pub async fn keys(&self, issuer: &Arc<TrustedIssuer>) -> Result<Arc<KeySet>, TrustError> {
        if let KeySource::Static(keys) = &issuer.config.source {
            return Ok(keys.clone());
        }
        let now = self.inner.clock.now();
        let cfg = &issuer.config;
        let snapshot = match self.inner.cache.get(issuer.name()).await {
            Some(s) => Some(s),
            None => self.refresh(issuer, None).await,
        };
        let unavailable = |reason: String| TrustError::KeysUnavailable {
            trust: cfg.name.clone(),
            reason,
        };
        let Some(snapshot) = snapshot else {
            let reason = issuer
                .health()
                .last_error
                .unwrap_or_else(|| "not fetched yet".into());
            return Err(unavailable(reason));
        };
        let age = now.saturating_sub(snapshot.fetched_at);
        if age > i64::try_from(cfg.stale_if_error_secs).unwrap_or(i64::MAX) {
            // Past the stale bound: only fresh keys will do.
            return match self.refresh(issuer, None).await {
                Some(s) if s.generation != snapshot.generation => Ok(s.keys.clone()),
                _ => Err(unavailable(format!(
                    "keys are {age} s old, past the stale-if-error bound, and refresh failed"
                ))),
            };
        }
        if age >= i64::try_from(cfg.refresh_interval_secs).unwrap_or(i64::MAX) {
            self.spawn_background_refresh(issuer);
        }
        Ok(snapshot.keys.clone())
    }

    fn spawn_background_refresh(&self, issuer: &Arc<TrustedIssuer>) {
        if issuer.gate.try_lock().is_err() {
            return; // a refresh is already running
        }
        let store = self.clone();
        let issuer = issuer.clone();
        tokio::spawn(async move {
            store.refresh(&issuer, None).await;
        });
    }

    /// Refreshes one issuer's keys, single-flight and rate-limited. Returns the newest
    /// snapshot (fresh or, when the fetch failed or was rate-limited, the previous one).
    async fn refresh(
        &self,
        issuer: &Arc<TrustedIssuer>,
        kid: Option<&str>,
    ) -> Option<Arc<Snapshot>> {
        let name = issuer.name();
        let seen = self.inner.cache.get(name).await.map(|s| s.generation);
        let mut gate = issuer.gate.lock().await;
        let current = self.inner.cache.get(name).await;
        if let Some(snapshot) = &current {
            // Someone else refreshed while we waited: use their result.
            if Some(snapshot.generation) != seen {
                return current;
            }
            if let Some(kid) = kid
                && !matches!(snapshot.keys.get(kid), KeyLookup::Unknown)
            {
                return current;
            }
        }
        let now = self.inner.clock.now();
        let gap = i64::try_from(issuer.config.min_refresh_gap_secs).unwrap_or(i64::MAX);
        if let Some(last) = gate.last_attempt
            && now.saturating_sub(last) < gap
        {
            tracing::debug!(trust = %name, "jwks refresh skipped: rate-limited");
            return current;
        }
        gate.last_attempt = Some(now);
        let result = self.fetch(issuer).await;
        issuer.set_health(|h| h.attempted = true);
        issuer.count(|c| c.fetches = c.fetches.saturating_add(1));
        match result {
            Ok((keys, warnings)) => {
                if let Some(previous) = &current {
                    let (added, removed) = kid_churn(&previous.keys, &keys);
                    issuer.count(|c| {
                        c.kids_added = c.kids_added.saturating_add(added);
                        c.kids_removed = c.kids_removed.saturating_add(removed);
                    });
                }
                for w in &warnings {
                    log_warning(name, w);
                }
                tracing::info!(trust = %name, keys = keys.len(), "jwks refreshed");
                let snapshot = Arc::new(Snapshot {
                    keys: Arc::new(keys),
                    fetched_at: now,
                    generation: self.inner.generation.fetch_add(1, Ordering::Relaxed) + 1,
                });
                self.inner
                    .cache
                    .insert(name.to_owned(), snapshot.clone())
                    .await;
                issuer.set_health(|h| {
                    h.last_error = None;
                    h.last_error_code = None;
                    h.ignored_keys = warnings.iter().map(ToString::to_string).collect();
                });
                Some(snapshot)
            }
            Err(e) => {
                tracing::warn!(trust = %name, error = %e, "jwks refresh failed; keeping the last good keys");
                issuer.count(|c| {
                    let n = c.failures.entry(e.reason_code()).or_insert(0);
                    *n = n.saturating_add(1);
                });
                issuer.set_health(|h| {
                    h.last_error = Some(e.to_string());
                    h.last_error_code = Some(e.reason_code());
                });
                current
            }
        }
    }

    async fn fetch(&self, issuer: &TrustedIssuer) -> Result<(KeySet, Vec<KeyWarning>), FetchError> {
        let Some(fetcher) = &issuer.fetcher else {
            return Err(FetchError::Client("static keys are never fetched".into()));
        };
        let jwks_uri = match &issuer.config.source {
            KeySource::JwksUri(uri) => uri.clone(),
            _ => {
                fetcher
                    .discover_jwks_uri(&issuer.config.rules.issuer)
                    .await?
            }
        };
        fetcher.fetch_jwks(&jwks_uri).await
    }
}

fn log_warning(trust: &str, w: &KeyWarning) {
    tracing::warn!(trust = %trust, warning = %w, "jwks key ignored");
}
