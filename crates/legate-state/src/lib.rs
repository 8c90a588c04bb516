//! Legate's shared state: the replay cache, rate limits ([`RateLimiter`]), the
//! credential ledger ([`Ledger`]: every issued credential and the inventory of issuers,
//! subjects, targets and refresh paths) and revocations ([`RevocationStore`],
//! [`RevocationSet`]; see [`revocation`]), in memory for one node or in Redis for a
//! fleet ([`RedisBackend`]).
//!
//! What it does: records each accepted `(iss, jti)` until the token can no longer be
//! accepted, and refuses a second use of the same pair. It bounds what it holds: at most
//! [`ReplayLimits::capacity`] live entries in all, at most
//! [`ReplayLimits::per_trust_capacity`] per trust (so one issuer cannot fill the cache
//! for the others), and a `jti` of at most [`MAX_JTI_BYTES`]. An entry whose retain-until
//! time has passed never counts toward those limits: the cache frees expired entries
//! before it refuses anything as full. A record can be released again when the exchange
//! that made it failed for a transient reason, so the client may retry with the same
//! token.
//!
//! What it does not do: no clock reads (`now` is a parameter), no eviction of a live
//! entry (a full cache refuses; the caller answers "try again later"). The backend is an
//! enum, not a trait object: memory or Redis.
//!
//! Layout: this file ([`ReplayCache`], [`ReplayLimits`], [`ReplayMode`],
//! [`ReplayVerdict`], [`StateError`]), `memory` (the in-memory backend: sharded maps,
//! each with its own lock and its own expiry index, swept a little at every call),
//! `ratelimit` ([`RateLimiter`], [`MemoryRateLimiter`]), `ledger` ([`Ledger`],
//! [`MemoryLedger`], [`LedgerEntry`], [`Inventory`]), `redis_backend` (the shared
//! backend: one atomic script per operation, the state epoch, the Redis GCRA),
//! `redis_ledger` ([`RedisLedger`]), [`revocation`] (and `redis_revocation`) and `stats`
//! ([`StateStats`]: the backend's error counters per [`StateOp`], for
//! `legate_state_backend_errors_total{op}`).

pub mod ledger;
mod memory;
mod ratelimit;
mod redis_backend;
mod redis_ledger;
mod redis_revocation;
pub mod revocation;

pub use redis_backend::{
    RedisBackend, RedisRateLimiter, RedisSettings, RedisStartupError, RedisStats, check_redis_url,
    redact_url,
};
pub use redis_ledger::RedisLedger;
pub use redis_revocation::RedisRevocationStore;

pub use ledger::{
    CredentialKind, Inventory, Ledger, LedgerEntry, LedgerError, LedgerFilter, LedgerLimits,
    MemoryLedger,
};
mod stats;

pub use memory::MemoryReplayCache;
pub use ratelimit::{
    DEFAULT_RATE_LIMIT_KEYS, MemoryRateLimiter, Rate, RateDecision, RateFuture, RateLimiter,
};
pub use revocation::{
    MemoryRevocationStore, NewRevocation, Revocation, RevocationFuture, RevocationInputError,
    RevocationNotice, RevocationQuery, RevocationSet, RevocationStore, RevocationStoreError,
};
pub use stats::{StateOp, StateStats};

/// The longest `jti` the replay cache records, in bytes. A longer one is refused
/// ([`StateError::JtiTooLong`]) before anything is stored, so an issuer (or a forger
/// holding a signing key) cannot make entries of arbitrary size. UUIDs (36 bytes) and
/// the identifiers of the CI platforms fit with room to spare.
pub const MAX_JTI_BYTES: usize = 256;

/// How an issuer's tokens are protected against replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplayMode {
    /// Each `(iss, jti)` is accepted once (CI tokens: one job, one exchange).
    #[default]
    SingleUse,
    /// A token may be presented many times until it expires (Kubernetes projected
    /// service-account tokens, which SDKs re-read and re-present).
    Reusable,
}

/// Whether a token was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayVerdict {
    /// First use: recorded.
    Fresh,
    /// Already used.
    Replayed,
    /// The token could have been accepted before the shared state's epoch (the moment a
    /// Redis began, or came back empty): it may have been used then, and that record is
    /// lost, so it is refused. Only the Redis backend answers this.
    BeforeEpoch {
        /// The epoch (unix seconds).
        epoch: i64,
    },
}

/// The bounds of a replay cache, in live (unexpired) entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayLimits {
    /// The most live entries held in all (`[state] replay_capacity`). At least 1: the
    /// memory backend treats 0 as 1.
    pub capacity: usize,
    /// The most live entries held for one trust (`[state] replay_capacity_per_trust`),
    /// so one issuer cannot exhaust the cache for the others. At least 1: the memory
    /// backend treats 0 as 1.
    pub per_trust_capacity: usize,
}

/// Why the state backend could not answer. Callers fail closed: the token is not
/// exchanged, and the client is told to try again later.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    /// The cache holds `capacity` live entries; recording one more would mean evicting
    /// a live one, which would reopen a replay window.
    #[error("replay cache is full ({capacity} unexpired entries)")]
    Full {
        /// The configured total capacity.
        capacity: usize,
    },
    /// The trust's share of the cache is used up by live entries.
    #[error("replay cache share of trust `{trust}` is full ({capacity} unexpired entries)")]
    TrustFull {
        /// The trust name passed to [`ReplayCache::check_and_record`].
        trust: String,
        /// The configured per-trust capacity.
        capacity: usize,
    },
    /// The token's `jti` is longer than [`MAX_JTI_BYTES`]; nothing was recorded.
    #[error("`jti` is {len} bytes long, more than the {max} the replay cache records", max = MAX_JTI_BYTES)]
    JtiTooLong {
        /// The length of the refused `jti`, in bytes.
        len: usize,
    },
    /// The shared backend did not answer (unreachable, timed out, out of memory, or
    /// found evicting by the last health check).
    #[error("shared state unavailable: {reason}")]
    Unavailable {
        /// Why; never a token or a key.
        reason: String,
    },
}

/// The replay cache, shared by all requests of a process (or, with Redis, of a fleet).
#[derive(Debug)]
pub struct ReplayCache {
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Memory(Box<MemoryReplayCache>),
    Redis {
        redis: std::sync::Arc<RedisBackend>,
        limits: ReplayLimits,
    },
}

impl ReplayCache {
    /// An in-memory cache bounded by `limits`.
    pub fn memory(limits: ReplayLimits) -> Self {
        Self {
            backend: Backend::Memory(Box::new(MemoryReplayCache::new(limits))),
        }
    }

    /// A cache in Redis, shared by every replica on it. `limits.per_trust_capacity`
    /// bounds each trust's live records; the total is bounded by Redis's `maxmemory`
    /// (with `noeviction`, a full Redis refuses writes, and the check fails closed).
    pub fn redis(redis: std::sync::Arc<RedisBackend>, limits: ReplayLimits) -> Self {
        Self {
            backend: Backend::Redis { redis, limits },
        }
    }

    /// The Redis backend, when the cache is shared.
    pub fn redis_backend(&self) -> Option<&std::sync::Arc<RedisBackend>> {
        match &self.backend {
            Backend::Memory(_) => None,
            Backend::Redis { redis, .. } => Some(redis),
        }
    }

    /// Records `(issuer, jti)` until `retain_until` (unix seconds) and says whether it
    /// was already there. `trust` is the configured name of the trust that accepted the
    /// token: the per-trust bound is counted on it.
    ///
    /// SECURITY: the key is the pair (`iss`, `jti`), never the token bytes: re-encoding,
    /// padding or an ECDSA-malleated signature makes different bytes with the same
    /// `jti`. The trust is not part of the key, so the same token presented through two
    /// trusts of one issuer is still a replay. Callers pass `retain_until` = `exp` +
    /// leeway so the entry outlives every moment the token could still be accepted. An
    /// entry is live while `now < retain_until`; a call with `retain_until <= now` (a
    /// token that verification has already refused) records nothing and answers
    /// [`ReplayVerdict::Fresh`] unless a live entry exists.
    ///
    /// `earliest_use` is the first moment the token could have been accepted (its `iat`
    /// or `nbf` minus the leeway; without either, `exp` minus the trust's maximum
    /// lifetime). The shared backend refuses ([`ReplayVerdict::BeforeEpoch`]) a token
    /// whose `earliest_use` precedes its state epoch: its record may have been lost.
    ///
    /// # Errors
    ///
    /// [`StateError::JtiTooLong`] for a `jti` over [`MAX_JTI_BYTES`];
    /// [`StateError::TrustFull`] / [`StateError::Full`] when the trust's share / the
    /// whole cache holds its capacity in live entries (expired entries are freed first,
    /// so they never cause either). Nothing is recorded on an error.
    pub async fn check_and_record(
        &self,
        trust: &str,
        issuer: &str,
        jti: &str,
        retain_until: i64,
        earliest_use: i64,
        now: i64,
    ) -> Result<ReplayVerdict, StateError> {
        match &self.backend {
            Backend::Memory(m) => m.check_and_record(trust, issuer, jti, retain_until, now),
            Backend::Redis { redis, limits } => {
                redis
                    .check_and_record(
                        redis_backend::ReplayRecord {
                            trust,
                            issuer,
                            jti,
                            retain_until,
                            earliest_use,
                            now,
                        },
                        limits.per_trust_capacity,
                    )
                    .await
            }
        }
    }

    /// Forgets a record made by [`check_and_record`](Self::check_and_record) for
    /// `trust`, so the client can retry with the same token after the exchange failed
    /// for a transient reason (a downstream outage) after recording. A record of
    /// `(issuer, jti)` made for another trust is left alone, as is everything when there
    /// is no such record (already expired or released); releasing twice frees one slot,
    /// not two.
    ///
    /// SECURITY: call it only when no credential was issued for the token: the next
    /// presentation of the same token is fresh again. A record is named by (trust,
    /// issuer, `jti`) only, so a release arriving after the record expired would drop a
    /// newer record of the same three, which takes an issuer that reuses a `jti` for a
    /// later token; call it right after the failed exchange, never later.
    ///
    /// # Errors
    ///
    /// None from the memory backend; a shared backend may be unreachable.
    pub async fn release(&self, trust: &str, issuer: &str, jti: &str) -> Result<(), StateError> {
        match &self.backend {
            Backend::Memory(m) => {
                m.release(trust, issuer, jti);
                Ok(())
            }
            Backend::Redis { redis, .. } => redis.release(trust, issuer, jti).await,
        }
    }

    /// The number of entries held. Approximate: an entry stays counted from its
    /// retain-until time until the cache sweeps it (a few calls later, or at once when
    /// the cache is at a limit), so this is at least the live count, and more after many
    /// entries expire together.
    /// The Redis backend counts nothing locally: 0 (Redis's `DBSIZE` tells).
    pub fn len(&self) -> usize {
        match &self.backend {
            Backend::Memory(m) => m.len(),
            Backend::Redis { .. } => 0,
        }
    }

    /// True when nothing is held (as [`len`](Self::len) counts).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
