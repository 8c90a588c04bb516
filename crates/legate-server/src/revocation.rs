//! Revocations on the request path, and the admin endpoints that make them.
//!
//! [`Revocations`] holds the store (`Arc<dyn RevocationStore>`: in memory for one node,
//! shared by a fleet later) and a local, immutable [`RevocationSet`] behind an
//! [`ArcSwap`]: every exchange and every introspection looks the identity up there
//! ([`Revocations::check`]), one atomic load and a few hash lookups, never a network call.
//! The set learns of new revocations three ways:
//!
//! 1. the replica that takes `POST /admin/revocations` applies its own at once;
//! 2. every replica applies the store's notices ([`RevocationNotice`]) as they arrive
//!    ([`spawn_sync`]);
//! 3. every replica reads the whole set every `[state] sync_interval_secs`, which bounds
//!    how long a lost notice (pub/sub delivers at most once) goes unnoticed.
//!
//! Every revocation the set learns of purges the credential cache of what it selects
//! ([`CredentialCache::invalidate_where`]), on every replica. Reads only add to the set
//! (what expired is swept): a read that started before a revocation arrived can never
//! drop it.
//!
//! Until its first successful read of a shared store, a replica does not know what is
//! revoked: it refuses exchanges (503, `revocations_unavailable`) rather than guess. The
//! in-memory store is known from the start.
//!
//! Endpoints (operator listener, `[admin] enabled = true`, Cedar
//! `Legate::AdminEndpoint::"revocations"`): `POST /admin/revocations` (JSON `subject`,
//! `trust`, `target`, `jti`, `reason`; 201 with the stored revocation, 200 with the live
//! one when the same selectors are already revoked, 400 for a bad body or an unknown
//! trust or target name, 409 at `[revocation] max_entries`, 503 when the store cannot be
//! reached) and `GET /admin/revocations` (`{"revocations": [...]}`, oldest first).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use legate_core::Clock;
use legate_core::text::escape_untrusted;
use legate_policy::AdminEndpoint;
use legate_state::{
    NewRevocation, Revocation, RevocationNotice, RevocationQuery, RevocationSet, RevocationStore,
    RevocationStoreError,
};
use legate_sts::CredentialCache;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::admin::{MAX_BODY_BYTES, authenticate, json as reply, record};
use crate::app::AppState;
use crate::audit::AuditEvent;

/// The revocations a replica enforces, and the store they come from.
pub struct Revocations {
    store: Arc<dyn RevocationStore>,
    snapshot: ArcSwap<RevocationSet>,
    /// Serialises writers of `snapshot` (readers never wait).
    writer: Mutex<()>,
    cache: CredentialCache,
    /// Whether the set reflects the store (a shared store: after the first read).
    loaded: AtomicBool,
    jti_retention_secs: u64,
    sync_interval: Duration,
    syncs: AtomicU64,
    sync_failures: AtomicU64,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("store", &self.store)
            .field("len", &self.snapshot.load().len())
            .field("loaded", &self.loaded.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The identity is revoked, or the replica does not know yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No live revocation matches.
    Clear,
    /// This revocation matches.
    Revoked(Arc<Revocation>),
    /// The set has not been read from the (shared) store yet: fail closed.
    Unknown,
}

/// Why a revocation was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddError {
    /// The body breaks a rule, or names an unknown trust or target.
    #[error("{0}")]
    Invalid(String),
    /// The store said no (full, unreachable).
    #[error(transparent)]
    Store(#[from] RevocationStoreError),
}

/// What [`Revocations::add`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// The live revocation with these selectors.
    pub revocation: Revocation,
    /// False when one with the same selectors was already live (nothing stored).
    pub created: bool,
    /// Cached credentials purged on this replica.
    pub purged: u64,
}

impl Revocations {
    /// Revocations read from `store`. `known` says the set is complete from the start
    /// (the in-memory store, empty at start); a shared store is read by [`spawn_sync`]
    /// (or [`Revocations::sync`]) before any exchange is served. A `jti` revocation
    /// expires `jti_retention_secs` after it is made.
    pub fn new(
        store: Arc<dyn RevocationStore>,
        known: bool,
        cache: CredentialCache,
        jti_retention_secs: u64,
        sync_interval: Duration,
    ) -> Self {
        Self {
            store,
            snapshot: ArcSwap::from_pointee(RevocationSet::default()),
            writer: Mutex::new(()),
            cache,
            loaded: AtomicBool::new(known),
            jti_retention_secs,
            sync_interval,
            syncs: AtomicU64::new(0),
            sync_failures: AtomicU64::new(0),
        }
    }

    /// Whether `q` is revoked at `now`: one atomic load of the local set, no I/O.
    pub fn check(&self, q: &RevocationQuery<'_>, now: i64) -> Verdict {
        if !self.loaded.load(Ordering::Acquire) {
            return Verdict::Unknown;
        }
        match self.snapshot.load().find(q, now) {
            Some(r) => Verdict::Revoked(r.clone()),
            None => Verdict::Clear,
        }
    }

    /// The set enforced now.
    pub fn snapshot(&self) -> Arc<RevocationSet> {
        self.snapshot.load_full()
    }

    /// Whether the set reflects the store.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Full reads of the store done, and failed, since start.
    pub fn sync_counts(&self) -> (u64, u64) {
        (
            self.syncs.load(Ordering::Relaxed),
            self.sync_failures.load(Ordering::Relaxed),
        )
    }

    /// Adds `revocations` to the set (sweeping what expired at `now`) and purges the
    /// credential cache of what the new ones select. Returns the number purged.
    pub async fn apply(&self, revocations: impl IntoIterator<Item = Revocation>, now: i64) -> u64 {
        let added = {
            let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
            let (next, added) = self.snapshot.load().merged(revocations, now);
            self.snapshot.store(Arc::new(next));
            added
        };
        if added.is_empty() {
            return 0;
        }
        for r in &added {
            tracing::info!(revocation = %r.id, "revocation applied");
        }
        self.cache
            .invalidate_where(|target, trust, subject| {
                let q = RevocationQuery {
                    trust,
                    subject,
                    target,
                    jti: None,
                };
                added.iter().any(|r| r.matches(&q))
            })
            .await
    }

    /// Reads the whole set from the store and applies it. A live revocation this replica
    /// holds but the store lacks (a Redis that came back empty, or failed over to a replica
    /// that never got it) is written back: a revocation is never lost while one replica
    /// still remembers it.
    ///
    /// # Errors
    ///
    /// The store's; the set is left as it was.
    pub async fn sync(&self, now: i64) -> Result<u64, RevocationStoreError> {
        match self.store.load_all(now).await {
            Ok(all) => {
                let stored: std::collections::HashSet<&str> =
                    all.iter().map(|r| r.id.as_str()).collect();
                let missing: Vec<Arc<Revocation>> = self
                    .snapshot
                    .load()
                    .all()
                    .into_iter()
                    .filter(|r| r.is_live(now) && !stored.contains(r.id.as_str()))
                    .collect();
                for r in missing {
                    match self.store.add((*r).clone(), now).await {
                        Ok(()) => tracing::warn!(
                            revocation = %r.id,
                            "revocation missing from the shared store (emptied?): written back"
                        ),
                        Err(e) => tracing::warn!(
                            revocation = %r.id, error = %e,
                            "revocation missing from the shared store, not written back"
                        ),
                    }
                }
                let purged = self.apply(all, now).await;
                self.loaded.store(true, Ordering::Release);
                self.syncs.fetch_add(1, Ordering::Relaxed);
                Ok(purged)
            }
            Err(e) => {
                self.sync_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "revocations not read from the store");
                Err(e)
            }
        }
    }

    /// Stores a revocation of `new` made by `created_by` at `now` and applies it here.
    /// When a live revocation with the same selectors exists, answers it instead
    /// (`created: false`), so that repeating a request does not fill the store.
    ///
    /// # Errors
    ///
    /// [`AddError::Invalid`] for a body that breaks a rule; the store's errors.
    pub async fn add(
        &self,
        new: NewRevocation,
        created_by: String,
        now: i64,
    ) -> Result<Added, AddError> {
        let revocation = new
            .into_revocation(
                legate_issuer::random_uuid().to_string(),
                created_by,
                now,
                self.jti_retention_secs,
            )
            .map_err(|e| AddError::Invalid(e.to_string()))?;
        let existing = self
            .snapshot
            .load()
            .all()
            .into_iter()
            .find(|r| r.is_live(now) && r.same_selectors(&revocation));
        if let Some(existing) = existing {
            return Ok(Added {
                revocation: (*existing).clone(),
                created: false,
                purged: 0,
            });
        }
        self.store.add(revocation.clone(), now).await?;
        let purged = self.apply([revocation.clone()], now).await;
        Ok(Added {
            revocation,
            created: true,
            purged,
        })
    }
}

/// Keeps `revocations` in step with its store until `shutdown` completes: a full read at
/// once (which makes a shared store's replica ready), then every notice as it arrives, a
/// full read after a lost notice (`Lagged`) or a [`RevocationNotice::Resync`], and one
/// every `sync_interval`. Failed reads are retried at the next tick.
pub fn spawn_sync(
    revocations: Arc<Revocations>,
    clock: Arc<dyn Clock>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    // Subscribed before the first read, so nothing added in between is missed.
    let mut notices = Some(revocations.store.subscribe());
    tokio::spawn(async move {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut tick = tokio::time::interval(revocations.sync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let notice = async {
                match notices.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut shutdown => return,
                // The first tick completes at once: the initial read.
                _ = tick.tick() => {
                    let _ = revocations.sync(clock.now()).await;
                }
                notice = notice => match notice {
                    Ok(RevocationNotice::Added(r)) => {
                        revocations.apply([r], clock.now()).await;
                    }
                    Ok(RevocationNotice::Resync) | Err(RecvError::Lagged(_)) => {
                        let _ = revocations.sync(clock.now()).await;
                    }
                    Err(RecvError::Closed) => {
                        tracing::warn!("the revocation store closed its notices; reading it every interval only");
                        notices = None;
                    }
                },
            }
        }
    })
}

/// The longest a token named by a `jti` revocation can stay valid after the revocation
/// (so the revocation may expire then): a token Legate mints lives at most
/// [`legate_issuer::MAX_TOKEN_LIFETIME_SECS`] from its minting (before the revocation);
/// an upstream token at most its trust's `max_lifetime_secs` from its `iat`, which may
/// lie a leeway in the future, accepted a leeway past its `exp`.
pub fn jti_retention_secs(trusts: &[crate::config::TrustEntry]) -> u64 {
    trusts
        .iter()
        .map(|t| {
            t.max_lifetime_secs
                .saturating_add(t.leeway_secs.saturating_mul(2))
        })
        .fold(legate_issuer::MAX_TOKEN_LIFETIME_SECS, u64::max)
}

// ---- the admin endpoints -------------------------------------------------------------

/// `POST /admin/revocations`.
pub(crate) async fn create(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (_, audit) = match authenticate(&state, &parts, AdminEndpoint::Revocations).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let answer = |mut audit: AuditEvent, status: StatusCode, body: Value, detail: String| {
        audit.detail = Some(detail);
        let id = audit.request_id.clone();
        record(&state, audit);
        reply(status, body, &id)
    };
    let refuse = |audit: AuditEvent, status: StatusCode, error: &str, description: String| {
        let body = json!({ "error": error, "error_description": description });
        answer(
            audit,
            status,
            body,
            format!("revocation refused: {description}"),
        )
    };
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return refuse(
            audit,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("the body must be at most {MAX_BODY_BYTES} bytes"),
        );
    };
    let new: NewRevocation = match serde_json::from_slice(&body) {
        Ok(new) => new,
        Err(e) => {
            return refuse(
                audit,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("invalid revocation: {}", escape_untrusted(&e.to_string())),
            );
        }
    };
    if let Err(e) = new.validate() {
        return refuse(
            audit,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            e.to_string(),
        );
    }
    // A typo in a name would revoke nothing, silently: refuse it.
    if let Some(trust) = new.trust.as_deref()
        && !state.inner.trust_meta.contains_key(trust)
    {
        return refuse(
            audit,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("no configured trust is named `{}`", escape_untrusted(trust)),
        );
    }
    if let Some(target) = new.target.as_deref()
        && !state.inner.targets.contains_key(target)
    {
        return refuse(
            audit,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!(
                "no configured target is named `{}`",
                escape_untrusted(target)
            ),
        );
    }
    // The audit's trust and subject are already escaped (and the trust is a name):
    // bounded here, not escaped twice.
    let mut created_by = format!(
        "{}:{}",
        audit.trust.as_deref().unwrap_or_default(),
        audit.subject.as_deref().unwrap_or_default()
    );
    created_by
        .truncate(created_by.floor_char_boundary(legate_state::revocation::MAX_CREATED_BY_BYTES));
    let now = state.inner.clock.now();
    match state.inner.revocations.add(new, created_by, now).await {
        Ok(added) => {
            let r = &added.revocation;
            let detail = format!(
                "revocation `{}` {} ({}); {} cached credentials purged",
                r.id,
                if added.created {
                    "stored"
                } else {
                    "already live"
                },
                describe(r),
                added.purged
            );
            let status = if added.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            answer(
                audit,
                status,
                serde_json::to_value(r).unwrap_or_default(),
                detail,
            )
        }
        Err(AddError::Invalid(description)) => refuse(
            audit,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            description,
        ),
        Err(AddError::Store(RevocationStoreError::Full { max_entries })) => refuse(
            audit,
            StatusCode::CONFLICT,
            "revocation_limit",
            format!(
                "{max_entries} revocations are live, the `[revocation] max_entries` limit; nothing was stored (raise the limit, or revoke more broadly by trust or target)"
            ),
        ),
        Err(AddError::Store(e)) => {
            tracing::warn!(error = %e, "revocation not stored");
            refuse(
                audit,
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the revocation store is unavailable; nothing was stored, retry".to_owned(),
            )
        }
    }
}

/// `GET /admin/revocations`.
pub(crate) async fn list(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let (_, mut audit) = match authenticate(&state, &parts, AdminEndpoint::Revocations).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let revocations = &state.inner.revocations;
    let id = audit.request_id.clone();
    if let Err(e) = revocations.sync(state.inner.clock.now()).await {
        audit.detail = Some(format!("revocations not listed: {e}"));
        record(&state, audit);
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": "temporarily_unavailable", "error_description": "the revocation store is unavailable; retry" }),
            &id,
        );
    }
    let all = revocations.snapshot().all();
    audit.detail = Some(format!("listed {} revocations", all.len()));
    record(&state, audit);
    let all: Vec<Value> = all
        .iter()
        .map(|r| serde_json::to_value(r.as_ref()).unwrap_or_default())
        .collect();
    reply(StatusCode::OK, json!({ "revocations": all }), &id)
}

/// The selectors of `r`, escaped, for the audit log.
fn describe(r: &Revocation) -> String {
    [
        ("subject", &r.subject),
        ("trust", &r.trust),
        ("target", &r.target),
        ("jti", &r.jti),
    ]
    .iter()
    .filter_map(|(name, value)| {
        value
            .as_deref()
            .map(|v| format!("{name} `{}`", escape_untrusted(v)))
    })
    .collect::<Vec<_>>()
    .join(", ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

    use legate_state::{MemoryRevocationStore, RevocationFuture};
    use tokio::sync::broadcast;

    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn new(subject: &str) -> NewRevocation {
        NewRevocation {
            subject: Some(subject.to_owned()),
            reason: Some("leaked".to_owned()),
            ..NewRevocation::default()
        }
    }

    fn q(subject: &str) -> RevocationQuery<'_> {
        RevocationQuery {
            trust: "ci",
            subject,
            target: "t",
            jti: None,
        }
    }

    fn revocations(store: Arc<dyn RevocationStore>, known: bool) -> Arc<Revocations> {
        Arc::new(Revocations::new(
            store,
            known,
            CredentialCache::new(legate_sts::CacheSettings::default()),
            3600,
            Duration::from_secs(1),
        ))
    }

    /// A shared store whose notices are all lost (pub/sub delivers at most once).
    #[derive(Debug)]
    struct Deaf {
        inner: MemoryRevocationStore,
        silent: broadcast::Sender<RevocationNotice>,
    }

    impl RevocationStore for Deaf {
        fn add(&self, revocation: Revocation, now: i64) -> RevocationFuture<'_, ()> {
            self.inner.add(revocation, now)
        }
        fn load_all(&self, now: i64) -> RevocationFuture<'_, Vec<Revocation>> {
            self.inner.load_all(now)
        }
        fn subscribe(&self) -> broadcast::Receiver<RevocationNotice> {
            self.silent.subscribe()
        }
    }

    /// Polls `cond` every 10 ms up to a generous ceiling (not a timing assertion).
    async fn eventually(cond: impl Fn() -> bool) {
        for _ in 0..3_000 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not met within 30 s");
    }

    #[tokio::test]
    async fn a_revocation_applies_at_once_on_the_replica_that_takes_it() {
        let r = revocations(Arc::new(MemoryRevocationStore::new(10)), true);
        assert_eq!(r.check(&q("repo:a"), NOW), Verdict::Clear);
        let added = r.add(new("repo:a"), "ci:ops".into(), NOW).await.unwrap();
        assert!(added.created);
        match r.check(&q("repo:a"), NOW) {
            Verdict::Revoked(found) => assert_eq!(found.id, added.revocation.id),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.check(&q("repo:b"), NOW), Verdict::Clear);
        // The same selectors again: the live one, nothing stored twice.
        let again = r.add(new("repo:a"), "ci:ops".into(), NOW).await.unwrap();
        assert!(!again.created);
        assert_eq!(again.revocation.id, added.revocation.id);
    }

    /// Stops a replica from enforcing an empty set it never read: until its first read
    /// of a shared store it answers "unknown" (the exchange fails closed).
    #[tokio::test]
    async fn a_shared_store_is_unknown_until_read() {
        let store = Arc::new(MemoryRevocationStore::new(10));
        let other = revocations(store.clone(), true);
        other
            .add(new("repo:a"), "ci:ops".into(), NOW)
            .await
            .unwrap();
        let r = revocations(store, false);
        assert_eq!(r.check(&q("repo:a"), NOW), Verdict::Unknown);
        r.sync(NOW).await.unwrap();
        assert!(matches!(r.check(&q("repo:a"), NOW), Verdict::Revoked(_)));
    }

    /// Two replicas on one store: a revocation taken by one is enforced by the other
    /// through the store's notice.
    #[tokio::test]
    async fn another_replica_learns_of_a_revocation_from_the_notice() {
        let store = Arc::new(MemoryRevocationStore::new(10));
        let a = revocations(store.clone(), false);
        let b = revocations(store, false);
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::ManualClock::new(NOW));
        let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let _task = spawn_sync(b.clone(), clock, async move {
            let _ = stopped.await;
        });
        a.sync(NOW).await.unwrap();
        eventually(|| b.is_loaded()).await;
        a.add(new("repo:a"), "ci:ops".into(), NOW).await.unwrap();
        eventually(|| matches!(b.check(&q("repo:a"), NOW), Verdict::Revoked(_))).await;
    }

    /// Stops a lost notice from leaving a replica blind: the periodic full read finds
    /// the revocation anyway.
    #[tokio::test]
    async fn a_lost_notice_is_repaired_by_the_periodic_read() {
        let store = Arc::new(Deaf {
            inner: MemoryRevocationStore::new(10),
            silent: broadcast::channel(1).0,
        });
        let a = revocations(store.clone(), false);
        let b = revocations(store, false);
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::ManualClock::new(NOW));
        let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let _task = spawn_sync(b.clone(), clock, async move {
            let _ = stopped.await;
        });
        a.sync(NOW).await.unwrap();
        eventually(|| b.is_loaded()).await;
        a.add(new("repo:a"), "ci:ops".into(), NOW).await.unwrap();
        eventually(|| matches!(b.check(&q("repo:a"), NOW), Verdict::Revoked(_))).await;
        assert!(b.sync_counts().0 >= 2, "found by a periodic read");
    }

    #[test]
    fn jti_revocations_outlive_every_token_they_can_name() {
        assert_eq!(
            jti_retention_secs(&[]),
            legate_issuer::MAX_TOKEN_LIFETIME_SECS
        );
    }
}
