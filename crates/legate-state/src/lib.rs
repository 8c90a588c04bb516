//! Legate's shared state: the replay cache (revocations and rate limits come later).
//!
//! What it does: records each accepted `(iss, jti)` until the token can no longer be
//! accepted, and refuses a second use of the same pair.
//!
//! What it does not do: no clock reads (`now` is a parameter), no network yet. The
//! backend is an enum, not a trait object, so the Redis backend of the scale-out work
//! slots in as a second variant without changing callers; the methods are already
//! `async` for that reason.
//!
//! Layout: this file ([`ReplayCache`], [`ReplayMode`], [`StateError`]) and `memory`
//! (the in-memory backend).

mod memory;

pub use memory::MemoryReplayCache;

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

/// The longest `jti` recorded.
pub const MAX_JTI_BYTES: usize = 256;

/// Bounds of the replay cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayLimits {
    /// Live entries in all.
    pub capacity: usize,
    /// Live entries of one trust.
    pub per_trust_capacity: usize,
}

/// Why the state backend could not answer. Callers fail closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    /// The in-memory cache is full of unexpired entries.
    #[error("replay cache is full ({capacity} unexpired entries)")]
    Full {
        /// The bound.
        capacity: usize,
    },
    /// One trust holds its whole share.
    #[error("replay cache share of trust `{trust}` is full ({capacity} unexpired entries)")]
    TrustFull {
        /// The trust.
        trust: String,
        /// Its share.
        capacity: usize,
    },
    /// The `jti` is longer than [`MAX_JTI_BYTES`].
    #[error("`jti` is {len} bytes long")]
    JtiTooLong {
        /// Its length.
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
    /// An in-memory cache holding at most `capacity` unexpired entries.
    pub fn memory(limits: ReplayLimits) -> Self {
        Self {
            backend: Backend::Memory(MemoryReplayCache::new(limits.capacity)),
        }
    }

    /// Records `(issuer, jti)` until `retain_until` (unix seconds) and says whether it
    /// was already there.
    ///
    /// SECURITY: the key is the pair (`iss`, `jti`), never the token bytes: re-encoding,
    /// padding or an ECDSA-malleated signature makes different bytes with the same
    /// `jti`. Callers pass `retain_until` = `exp` + leeway so the entry outlives every
    /// moment the token could still be accepted.
    pub async fn check_and_record(
        &self,
        _trust: &str,
        issuer: &str,
        jti: &str,
        retain_until: i64,
        now: i64,
    ) -> Result<ReplayVerdict, StateError> {
        match &self.backend {
            Backend::Memory(m) => m.check_and_record(issuer, jti, retain_until, now),
        }
    }

    /// Forgets a record (a transient failure after recording).
    pub async fn release(&self, _trust: &str, _issuer: &str, _jti: &str) -> Result<(), StateError> {
        Ok(())
    }

    /// The number of entries held (expired ones may linger until the next sweep).
    pub fn len(&self) -> usize {
        match &self.backend {
            Backend::Memory(m) => m.len(),
        }
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
