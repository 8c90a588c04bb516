//! Legate's shared state: the replay cache, rate limits ([`RateLimiter`], in memory
//! for one node) and revocations ([`RevocationStore`], [`RevocationSet`]; see the
//! `revocation` module); the Redis backend comes later.
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
//! What it does not do: no clock reads (`now` is a parameter), no network yet, no
//! eviction of a live entry (a full cache refuses; the caller answers "try again later").
//! The backend is an enum, not a trait object, so the Redis backend of the scale-out work
//! slots in as a second variant without changing callers; the methods are already
//! `async` for that reason.
//!
//! Layout: this file ([`ReplayCache`], [`ReplayLimits`], [`ReplayMode`],
//! [`ReplayVerdict`], [`StateError`]), `memory` (the in-memory replay backend: sharded
//! maps, each with its own lock and its own expiry index, swept a little at every call),
//! `ratelimit` (GCRA) and [`revocation`].

mod memory;
mod ratelimit;
pub mod revocation;

pub use memory::MemoryReplayCache;
pub use ratelimit::{
    DEFAULT_RATE_LIMIT_KEYS, MemoryRateLimiter, Rate, RateDecision, RateFuture, RateLimiter,
};
pub use revocation::{
    MemoryRevocationStore, NewRevocation, Revocation, RevocationFuture, RevocationInputError,
    RevocationNotice, RevocationQuery, RevocationSet, RevocationStore, RevocationStoreError,
};

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
}

/// The replay cache, shared by all requests of a process (or, with Redis, of a fleet).
#[derive(Debug)]
pub struct ReplayCache {
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Memory(MemoryReplayCache),
}

impl ReplayCache {
    /// An in-memory cache bounded by `limits`.
    pub fn memory(limits: ReplayLimits) -> Self {
        Self {
            backend: Backend::Memory(MemoryReplayCache::new(limits)),
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
        now: i64,
    ) -> Result<ReplayVerdict, StateError> {
        match &self.backend {
            Backend::Memory(m) => m.check_and_record(trust, issuer, jti, retain_until, now),
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
        }
    }

    /// The number of entries held. Approximate: an entry stays counted from its
    /// retain-until time until the cache sweeps it (a few calls later, or at once when
    /// the cache is at a limit), so this is at least the live count, and more after many
    /// entries expire together.
    pub fn len(&self) -> usize {
        match &self.backend {
            Backend::Memory(m) => m.len(),
        }
    }

    /// True when nothing is held (as [`len`](Self::len) counts).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
