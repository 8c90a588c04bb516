//! Revocations: what an operator withdrew ([`Revocation`]), where a fleet keeps them
//! ([`RevocationStore`], in memory here: [`MemoryRevocationStore`]), and the immutable,
//! indexed snapshot every exchange looks them up in ([`RevocationSet`]).
//!
//! A revocation names an identity by up to four selectors: the upstream subject (`sub` of
//! the subject token), the trust (a configured trust name), the target (a configured
//! target name) and a `jti`. It matches a request when **all** its given selectors match;
//! at least one is required ([`NewRevocation::validate`]). A `jti` selector names one
//! token: a token Legate minted (introspection answers inactive for it; presented back
//! to Legate as a subject token it is refused) or a subject token presented at `/token`
//! (a leaked, reusable token). It matches only where a `jti` is known.
//!
//! The fleet: a store is shared by every replica (Redis, later). [`RevocationStore::add`]
//! stores a revocation and notifies every subscriber ([`RevocationNotice`], at most
//! once: Redis pub/sub); every replica also reads the whole set
//! ([`RevocationStore::load_all`]) every `[state] sync_interval_secs`, which bounds how
//! long a lost notice can go unnoticed. The server keeps the result as a
//! [`RevocationSet`] behind an atomic pointer, so a lookup never touches the network.
//!
//! Bounds: a store holds at most `max_entries` live revocations; at the limit `add`
//! refuses ([`RevocationStoreError::Full`]) rather than evict one (evicting would
//! silently un-revoke). Revocations with a `jti` expire ([`Revocation::expires_at`]) once
//! the token they name cannot be valid any more, and expired ones are swept before the
//! limit is applied. Every text is bounded ([`MAX_SUBJECT_BYTES`], [`MAX_NAME_BYTES`],
//! [`crate::MAX_JTI_BYTES`], [`MAX_REASON_BYTES`], [`MAX_CREATED_BY_BYTES`]).
//!
//! No clock reads: `now` (unix seconds) is a parameter everywhere.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::MAX_JTI_BYTES;

/// The longest `subject` selector, in bytes (an upstream `sub`).
pub const MAX_SUBJECT_BYTES: usize = 2048;
/// The longest `trust` or `target` selector, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// The longest `reason`, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;
/// The longest `created_by`, in bytes (the admin's `<trust>:<sub>`, escaped).
pub const MAX_CREATED_BY_BYTES: usize = 1024;
/// The default of `[revocation] max_entries`.
pub const DEFAULT_MAX_REVOCATIONS: usize = 10_000;
/// The notices a subscriber may fall behind by before it is told to resync.
pub const NOTICE_BUFFER: usize = 1024;

/// One stored revocation. Build it from a [`NewRevocation`] with
/// [`NewRevocation::into_revocation`]; a loaded one is checked with
/// [`Revocation::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// A random UUID.
    pub id: String,
    /// The upstream subject (`sub` of the subject token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// A configured trust name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<String>,
    /// A configured target name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The `jti` of one token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Why (free text, no control characters).
    pub reason: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Who: the admin's `<trust>:<sub>`.
    pub created_by: String,
    /// Unix seconds after which it no longer applies (set for `jti` revocations: the
    /// token it names has expired by then); none: forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// The identity of a request, as revocations see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevocationQuery<'a> {
    /// The configured trust that verified the subject token.
    pub trust: &'a str,
    /// The upstream `sub`.
    pub subject: &'a str,
    /// The target name.
    pub target: &'a str,
    /// The `jti` of the token in question, when it has one.
    pub jti: Option<&'a str>,
}

impl Revocation {
    /// Whether every given selector matches `q`. A revocation without any selector
    /// (which [`Revocation::validate`] refuses) matches nothing.
    pub fn matches(&self, q: &RevocationQuery<'_>) -> bool {
        let eq =
            |selector: &Option<String>, value: &str| selector.as_deref().is_none_or(|s| s == value);
        self.has_selector()
            && eq(&self.subject, q.subject)
            && eq(&self.trust, q.trust)
            && eq(&self.target, q.target)
            && self
                .jti
                .as_deref()
                .is_none_or(|j| q.jti.is_some_and(|q| q == j))
    }

    /// Whether it still applies at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|exp| now < exp)
    }

    fn has_selector(&self) -> bool {
        self.subject.is_some()
            || self.trust.is_some()
            || self.target.is_some()
            || self.jti.is_some()
    }

    /// The same selectors (and nothing else) as `other`.
    pub fn same_selectors(&self, other: &Self) -> bool {
        self.subject == other.subject
            && self.trust == other.trust
            && self.target == other.target
            && self.jti == other.jti
    }

    /// Checks a revocation read back from a store: the bounds and rules of
    /// [`NewRevocation::validate`], plus a non-empty id and `created_by`.
    ///
    /// # Errors
    ///
    /// The first rule it breaks.
    pub fn validate(&self) -> Result<(), RevocationInputError> {
        NewRevocation {
            subject: self.subject.clone(),
            trust: self.trust.clone(),
            target: self.target.clone(),
            jti: self.jti.clone(),
            reason: Some(self.reason.clone()),
        }
        .validate()?;
        if self.id.is_empty() || self.id.len() > MAX_NAME_BYTES {
            return Err(RevocationInputError::BadId);
        }
        if self.created_by.len() > MAX_CREATED_BY_BYTES {
            return Err(RevocationInputError::TooLong {
                field: "created_by",
                max: MAX_CREATED_BY_BYTES,
            });
        }
        Ok(())
    }
}

/// A revocation as an admin asks for it (the JSON body of `POST /admin/revocations`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRevocation {
    /// The upstream subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// A configured trust name.
    #[serde(default)]
    pub trust: Option<String>,
    /// A configured target name.
    #[serde(default)]
    pub target: Option<String>,
    /// The `jti` of one token.
    #[serde(default)]
    pub jti: Option<String>,
    /// Why (required).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Why a revocation request is not acceptable. Messages quote no user input: the
/// field names are fixed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationInputError {
    /// None of `subject`, `trust`, `target`, `jti` was given.
    #[error("give at least one of `subject`, `trust`, `target`, `jti`")]
    NoSelector,
    /// `reason` is missing or blank.
    #[error("`reason` is required")]
    NoReason,
    /// A selector is given but empty.
    #[error("`{0}` must not be empty")]
    Empty(&'static str),
    /// A field is over its bound.
    #[error("`{field}` is longer than {max} bytes")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its bound.
        max: usize,
    },
    /// A field holds a control character.
    #[error("`{0}` holds a control character")]
    ControlCharacter(&'static str),
    /// A stored revocation has no usable id.
    #[error("the revocation has no valid `id`")]
    BadId,
}

impl NewRevocation {
    /// Checks the rules: at least one selector, each non-empty and bounded; a
    /// non-blank, bounded `reason` without control characters.
    ///
    /// # Errors
    ///
    /// The first rule it breaks.
    pub fn validate(&self) -> Result<(), RevocationInputError> {
        let fields = [
            ("subject", &self.subject, MAX_SUBJECT_BYTES),
            ("trust", &self.trust, MAX_NAME_BYTES),
            ("target", &self.target, MAX_NAME_BYTES),
            ("jti", &self.jti, MAX_JTI_BYTES),
        ];
        if fields.iter().all(|(_, v, _)| v.is_none()) {
            return Err(RevocationInputError::NoSelector);
        }
        for (field, value, max) in fields {
            let Some(value) = value else { continue };
            if value.is_empty() {
                return Err(RevocationInputError::Empty(field));
            }
            if value.len() > max {
                return Err(RevocationInputError::TooLong { field, max });
            }
        }
        let reason = self.reason.as_deref().unwrap_or_default();
        if reason.trim().is_empty() {
            return Err(RevocationInputError::NoReason);
        }
        if reason.len() > MAX_REASON_BYTES {
            return Err(RevocationInputError::TooLong {
                field: "reason",
                max: MAX_REASON_BYTES,
            });
        }
        if reason.chars().any(char::is_control) {
            return Err(RevocationInputError::ControlCharacter("reason"));
        }
        Ok(())
    }

    /// The stored form: checked, with its id, creation time, author and expiry.
    /// `jti_retention_secs` is how long a token named by `jti` can stay valid after it
    /// is revoked (its longest possible lifetime plus leeway): a `jti` revocation
    /// expires then; the others never do.
    ///
    /// # Errors
    ///
    /// As [`NewRevocation::validate`].
    pub fn into_revocation(
        self,
        id: String,
        created_by: String,
        now: i64,
        jti_retention_secs: u64,
    ) -> Result<Revocation, RevocationInputError> {
        self.validate()?;
        let expires_at = self
            .jti
            .as_ref()
            .map(|_| now.saturating_add(i64::try_from(jti_retention_secs).unwrap_or(i64::MAX)));
        let revocation = Revocation {
            id,
            subject: self.subject,
            trust: self.trust,
            target: self.target,
            jti: self.jti,
            reason: self.reason.unwrap_or_default().trim().to_owned(),
            created_at: now,
            created_by,
            expires_at,
        };
        revocation.validate()?;
        Ok(revocation)
    }
}

// ---- the snapshot --------------------------------------------------------------------

/// An immutable set of live revocations, indexed so that a lookup looks only at the
/// revocations that could match: each is filed under its most selective selector (`jti`,
/// then `subject`, `target`, `trust`), and a lookup reads the four buckets the query
/// names.
#[derive(Debug, Default, Clone)]
pub struct RevocationSet {
    by_id: HashMap<String, Arc<Revocation>>,
    by_jti: HashMap<String, Vec<Arc<Revocation>>>,
    by_subject: HashMap<String, Vec<Arc<Revocation>>>,
    by_target: HashMap<String, Vec<Arc<Revocation>>>,
    by_trust: HashMap<String, Vec<Arc<Revocation>>>,
}

impl RevocationSet {
    /// The set of `revocations` live at `now` (one per id; invalid ones left out).
    pub fn new(revocations: impl IntoIterator<Item = Revocation>, now: i64) -> Self {
        let mut set = Self::default();
        for r in revocations {
            set.insert(Arc::new(r), now);
        }
        set
    }

    fn insert(&mut self, r: Arc<Revocation>, now: i64) -> bool {
        if !r.is_live(now) || r.validate().is_err() || self.by_id.contains_key(&r.id) {
            return false;
        }
        let (index, key) = if let Some(jti) = &r.jti {
            (&mut self.by_jti, jti)
        } else if let Some(subject) = &r.subject {
            (&mut self.by_subject, subject)
        } else if let Some(target) = &r.target {
            (&mut self.by_target, target)
        } else if let Some(trust) = &r.trust {
            (&mut self.by_trust, trust)
        } else {
            return false;
        };
        index.entry(key.clone()).or_default().push(r.clone());
        self.by_id.insert(r.id.clone(), r);
        true
    }

    /// The set with `more` added (ids already held are kept as they are) and what
    /// expired at `now` left out; also the revocations that were new to it.
    pub fn merged(
        &self,
        more: impl IntoIterator<Item = Revocation>,
        now: i64,
    ) -> (Self, Vec<Arc<Revocation>>) {
        let mut next = Self::default();
        for r in self.by_id.values() {
            next.insert(r.clone(), now);
        }
        let mut added = Vec::new();
        for r in more {
            let r = Arc::new(r);
            if next.insert(r.clone(), now) {
                added.push(r);
            }
        }
        (next, added)
    }

    /// The first live revocation matching `q` at `now`, if any (the oldest, so the
    /// answer is stable).
    pub fn find(&self, q: &RevocationQuery<'_>, now: i64) -> Option<&Arc<Revocation>> {
        let buckets = [
            q.jti.and_then(|jti| self.by_jti.get(jti)),
            self.by_subject.get(q.subject),
            self.by_target.get(q.target),
            self.by_trust.get(q.trust),
        ];
        buckets
            .into_iter()
            .flatten()
            .flatten()
            .filter(|r| r.is_live(now) && r.matches(q))
            .min_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)))
    }

    /// Whether it holds the revocation `id`.
    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// The ids held.
    pub fn ids(&self) -> HashSet<String> {
        self.by_id.keys().cloned().collect()
    }

    /// Every revocation held, oldest first.
    pub fn all(&self) -> Vec<Arc<Revocation>> {
        let mut all: Vec<_> = self.by_id.values().cloned().collect();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        all
    }

    /// The number held.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

// ---- the store -----------------------------------------------------------------------

/// What a store tells its subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationNotice {
    /// A revocation was added (at this replica or another).
    Added(Revocation),
    /// Notices may have been lost (the backend reconnected): read the whole set now.
    Resync,
}

/// Why a store could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationStoreError {
    /// The store holds `max_entries` live revocations: nothing was added.
    #[error("the revocation store is full ({max_entries} live revocations)")]
    Full {
        /// The configured bound.
        max_entries: usize,
    },
    /// The backend cannot be reached or answered something unreadable.
    #[error("the revocation store is unavailable: {0}")]
    Unavailable(String),
}

/// A boxed future, so the trait stays object safe for an async (Redis) backend.
pub type RevocationFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, RevocationStoreError>> + Send + 'a>>;

/// Where a process (or a fleet) keeps its revocations. The server holds an
/// `Arc<dyn RevocationStore>`, reads it into a [`RevocationSet`] at start, on every
/// notice and every `[state] sync_interval_secs`, and never consults it per exchange.
///
/// A shared backend (Redis): `add` stores the revocation (refusing at `max_entries` live
/// ones, atomically) and publishes it; `subscribe` hands out receivers fed by one
/// subscription task, which sends [`RevocationNotice::Resync`] after it reconnects;
/// `load_all` reads the whole set. There is no removal: a revocation ends only by its
/// `expires_at`, so replicas merge what they read into what they hold and a lost or
/// late answer can never un-revoke.
pub trait RevocationStore: fmt::Debug + Send + Sync {
    /// Stores `revocation` (already checked and complete) and notifies every
    /// subscriber with [`RevocationNotice::Added`].
    ///
    /// Errors: [`RevocationStoreError::Full`] when `max_entries` live revocations are
    /// held (expired ones never count); [`RevocationStoreError::Unavailable`].
    fn add(&self, revocation: Revocation, now: i64) -> RevocationFuture<'_, ()>;

    /// Every revocation live at `now`, in any order.
    ///
    /// Errors: [`RevocationStoreError::Unavailable`].
    fn load_all(&self, now: i64) -> RevocationFuture<'_, Vec<Revocation>>;

    /// A receiver of the notices sent from now on. A receiver that falls
    /// [`NOTICE_BUFFER`] notices behind gets `Lagged`, which the server takes as
    /// [`RevocationNotice::Resync`].
    fn subscribe(&self) -> broadcast::Receiver<RevocationNotice>;
}

/// The in-memory store: one process. Bounded by `max_entries` live revocations.
pub struct MemoryRevocationStore {
    max_entries: usize,
    entries: Mutex<Vec<Revocation>>,
    notices: broadcast::Sender<RevocationNotice>,
}

impl fmt::Debug for MemoryRevocationStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRevocationStore")
            .field("max_entries", &self.max_entries)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl MemoryRevocationStore {
    /// An empty store of at most `max_entries` (at least 1) live revocations.
    pub fn new(max_entries: usize) -> Self {
        let (notices, _) = broadcast::channel(NOTICE_BUFFER);
        Self {
            max_entries: max_entries.max(1),
            entries: Mutex::new(Vec::new()),
            notices,
        }
    }

    /// The bound.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Revocations held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `add`, synchronously.
    ///
    /// # Errors
    ///
    /// [`RevocationStoreError::Full`] at the bound (after sweeping expired ones).
    pub fn insert(&self, revocation: Revocation, now: i64) -> Result<(), RevocationStoreError> {
        {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            if entries.iter().any(|r| r.id == revocation.id) {
                return Ok(());
            }
            if entries.len() >= self.max_entries {
                entries.retain(|r| r.is_live(now));
            }
            if entries.len() >= self.max_entries {
                return Err(RevocationStoreError::Full {
                    max_entries: self.max_entries,
                });
            }
            entries.push(revocation.clone());
        }
        // No subscriber is not an error: the caller applies its own revocation.
        let _ = self.notices.send(RevocationNotice::Added(revocation));
        Ok(())
    }

    /// `load_all`, synchronously (sweeping expired ones).
    pub fn live(&self, now: i64) -> Vec<Revocation> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|r| r.is_live(now));
        entries.clone()
    }
}

impl RevocationStore for MemoryRevocationStore {
    fn add(&self, revocation: Revocation, now: i64) -> RevocationFuture<'_, ()> {
        Box::pin(std::future::ready(self.insert(revocation, now)))
    }

    fn load_all(&self, now: i64) -> RevocationFuture<'_, Vec<Revocation>> {
        Box::pin(std::future::ready(Ok(self.live(now))))
    }

    fn subscribe(&self) -> broadcast::Receiver<RevocationNotice> {
        self.notices.subscribe()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn new(
        subject: Option<&str>,
        trust: Option<&str>,
        target: Option<&str>,
        jti: Option<&str>,
    ) -> NewRevocation {
        NewRevocation {
            subject: subject.map(str::to_owned),
            trust: trust.map(str::to_owned),
            target: target.map(str::to_owned),
            jti: jti.map(str::to_owned),
            reason: Some("incident 42".to_owned()),
        }
    }

    fn rev(id: &str, n: NewRevocation) -> Revocation {
        n.into_revocation(id.to_owned(), "ops:alice".to_owned(), NOW, 3600)
            .unwrap()
    }

    fn q<'a>(
        trust: &'a str,
        subject: &'a str,
        target: &'a str,
        jti: Option<&'a str>,
    ) -> RevocationQuery<'a> {
        RevocationQuery {
            trust,
            subject,
            target,
            jti,
        }
    }

    /// Stops a revocation from reaching further than asked: every given selector must
    /// match, and a `jti` selector never matches a request without that `jti`.
    #[test]
    fn a_revocation_matches_when_all_its_selectors_match() {
        let by_subject = rev("1", new(Some("repo:a"), None, None, None));
        assert!(by_subject.matches(&q("ci", "repo:a", "t", None)));
        assert!(by_subject.matches(&q("other", "repo:a", "u", Some("j"))));
        assert!(!by_subject.matches(&q("ci", "repo:b", "t", None)));

        let narrow = rev("2", new(Some("repo:a"), Some("ci"), Some("t"), None));
        assert!(narrow.matches(&q("ci", "repo:a", "t", None)));
        assert!(!narrow.matches(&q("gh", "repo:a", "t", None)));
        assert!(!narrow.matches(&q("ci", "repo:a", "u", None)));

        let by_jti = rev("3", new(None, None, None, Some("j1")));
        assert!(by_jti.matches(&q("ci", "x", "t", Some("j1"))));
        assert!(!by_jti.matches(&q("ci", "x", "t", Some("j2"))));
        assert!(!by_jti.matches(&q("ci", "x", "t", None)));

        // A selector-less revocation (never built through validation) matches nothing.
        let mut empty = by_subject.clone();
        empty.subject = None;
        assert!(!empty.matches(&q("ci", "repo:a", "t", None)));
    }

    #[test]
    fn requests_are_validated() {
        use RevocationInputError as E;
        assert_eq!(new(None, None, None, None).validate(), Err(E::NoSelector));
        let mut n = new(Some("s"), None, None, None);
        n.reason = None;
        assert_eq!(n.validate(), Err(E::NoReason));
        n.reason = Some("   ".into());
        assert_eq!(n.validate(), Err(E::NoReason));
        n.reason = Some("a\nb".into());
        assert_eq!(n.validate(), Err(E::ControlCharacter("reason")));
        n.reason = Some("r".repeat(MAX_REASON_BYTES + 1));
        assert!(matches!(
            n.validate(),
            Err(E::TooLong {
                field: "reason",
                ..
            })
        ));
        assert_eq!(
            new(Some(""), None, None, None).validate(),
            Err(E::Empty("subject"))
        );
        let long_jti = "j".repeat(MAX_JTI_BYTES + 1);
        assert!(matches!(
            new(None, None, None, Some(&long_jti)).validate(),
            Err(E::TooLong { field: "jti", .. })
        ));
        assert!(new(None, Some("ci"), None, None).validate().is_ok());
    }

    #[test]
    fn only_jti_revocations_expire() {
        let r = rev("1", new(None, None, None, Some("j")));
        assert_eq!(r.expires_at, Some(NOW + 3600));
        assert!(r.is_live(NOW + 3599));
        assert!(!r.is_live(NOW + 3600));
        let r = rev("2", new(Some("s"), None, None, None));
        assert_eq!(r.expires_at, None);
        assert!(r.is_live(i64::MAX));
    }

    #[test]
    fn the_stored_form_round_trips_through_json() {
        let r = rev("1", new(Some("repo:a"), Some("ci"), None, Some("j")));
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("target"), "{json}");
        let back: Revocation = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert!(back.validate().is_ok());
    }

    /// Stops the snapshot index from hiding a revocation: whichever selector a
    /// revocation is filed under, a matching query finds it, and a non-matching one
    /// does not.
    #[test]
    fn the_set_finds_each_kind_of_revocation() {
        let set = RevocationSet::new(
            [
                rev("s", new(Some("repo:a"), None, None, None)),
                rev("tr", new(None, Some("gl"), None, None)),
                rev("ta", new(None, None, Some("prod"), None)),
                rev("j", new(None, Some("ci"), None, Some("j1"))),
                rev("st", new(Some("repo:b"), None, Some("prod2"), None)),
            ],
            NOW,
        );
        assert_eq!(set.len(), 5);
        let found = |query: RevocationQuery<'_>| set.find(&query, NOW).map(|r| r.id.clone());
        assert_eq!(found(q("ci", "repo:a", "t", None)).as_deref(), Some("s"));
        assert_eq!(found(q("gl", "x", "t", None)).as_deref(), Some("tr"));
        assert_eq!(found(q("ci", "x", "prod", None)).as_deref(), Some("ta"));
        assert_eq!(found(q("ci", "x", "t", Some("j1"))).as_deref(), Some("j"));
        assert_eq!(found(q("gh", "x", "t", Some("j1"))), None, "trust differs");
        assert_eq!(
            found(q("ci", "repo:b", "prod2", None)).as_deref(),
            Some("st")
        );
        assert_eq!(found(q("ci", "repo:b", "other", None)), None);
        assert_eq!(found(q("ci", "x", "t", None)), None);
        // Expired ones are not found.
        assert_eq!(set.find(&q("ci", "x", "t", Some("j1")), NOW + 3600), None);
    }

    /// Stops a full read that began before a revocation arrived from dropping it: a
    /// merge only adds (and sweeps what expired).
    #[test]
    fn merging_only_adds_and_sweeps_the_expired() {
        let a = rev("a", new(Some("x"), None, None, None));
        let j = rev("j", new(None, None, None, Some("j1")));
        let (set, added) = RevocationSet::default().merged([a.clone(), j.clone()], NOW);
        assert_eq!(added.len(), 2);
        let (set, added) = set.merged([a.clone()], NOW);
        assert!(added.is_empty());
        assert_eq!(set.len(), 2);
        let (set, added) = set.merged(Vec::new(), NOW + 3600);
        assert!(added.is_empty());
        assert_eq!(set.ids(), HashSet::from(["a".to_owned()]));
        assert!(set.contains("a"));
    }

    /// The designed answer at the limit: a full store refuses (never evicts a live
    /// revocation, which would silently un-revoke), after sweeping expired ones.
    #[tokio::test]
    async fn a_full_store_refuses_after_sweeping_expired_ones() {
        let store = MemoryRevocationStore::new(2);
        let mut rx = store.subscribe();
        store
            .add(rev("j", new(None, None, None, Some("j1"))), NOW)
            .await
            .unwrap();
        store
            .add(rev("s", new(Some("x"), None, None, None)), NOW)
            .await
            .unwrap();
        let third = rev("t", new(Some("y"), None, None, None));
        assert_eq!(
            store.add(third.clone(), NOW).await,
            Err(RevocationStoreError::Full { max_entries: 2 })
        );
        // Adding the same id again is not a second entry.
        store
            .add(rev("s", new(Some("x"), None, None, None)), NOW)
            .await
            .unwrap();
        assert_eq!(store.len(), 2);
        // Once the jti revocation expired, there is room.
        store.add(third, NOW + 3600).await.unwrap();
        let live: HashSet<String> = store
            .load_all(NOW + 3600)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(live, HashSet::from(["s".to_owned(), "t".to_owned()]));
        // Subscribers heard of each stored one.
        let mut heard = Vec::new();
        while let Ok(RevocationNotice::Added(r)) = rx.try_recv() {
            heard.push(r.id);
        }
        assert_eq!(heard, ["j", "s", "t"]);
    }
}
