//! The credential ledger: one [`LedgerEntry`] per issued credential, and the
//! [`Inventory`] aggregated from them (issuers, subjects, targets and the refresh paths
//! trust → subject → target, each with first and last seen, counts, and how many were
//! served from the credential cache).
//!
//! What it holds: names (trust, upstream issuer, bounded subject, target), times, the
//! cloud's *non-secret* id of the credential where it gives one (a minted JWT's `jti`,
//! an AWS assumed-role ARN), the cloud's request id and Legate's request id.
//!
//! SECURITY: never a token, a secret key or a session token. The entry has no field that
//! could hold one, and its constructor takes none.
//!
//! Bounds (all designed, all tested below):
//! - an entry older than `retention_secs` is dropped (entries leave in the order they
//!   were recorded, checked at every record and every query);
//! - at most `max_entries` entries: recording one more drops the oldest first, counted
//!   in [`Evictions::entries`];
//! - each inventory map (issuers, subjects, targets, paths) holds at most
//!   `max_inventory_keys` keys: a new key at the limit evicts the key seen least
//!   recently, counted per map in [`Evictions`] (so an operator knows the inventory is
//!   incomplete); a key not seen for `retention_secs` is dropped;
//! - a subject is kept as [`ledger_subject`] makes it: escaped, at most
//!   [`MAX_SUBJECT_BYTES`], a cut one marked with the SHA-256 of the whole, so two
//!   subjects never merge; other text fields are cut at [`MAX_FIELD_BYTES`].
//!
//! The [`Ledger`] trait has boxed futures, as [`crate::RateLimiter`], so a shared
//! backend (Redis: a capped stream for the entries, hashes plus a sorted set by last
//! seen for each inventory map) can stand in for [`MemoryLedger`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// The longest subject kept, in bytes of its escaped form (before the digest mark).
pub const MAX_SUBJECT_BYTES: usize = 512;
/// The longest other text field kept (names, ids), in bytes.
pub const MAX_FIELD_BYTES: usize = 2048;
/// The default `[ledger] retention_secs`: seven days.
pub const DEFAULT_RETENTION_SECS: u64 = 7 * 86_400;
/// The default `[ledger] max_entries`.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;
/// The default `[ledger] max_inventory_keys` (per map).
pub const DEFAULT_MAX_INVENTORY_KEYS: usize = 100_000;
/// The most rows a query answers per list.
pub const MAX_QUERY_LIMIT: usize = 10_000;

/// The most entries the server's ledger writer hands to [`Ledger::record_batch`] at once.
pub const MAX_BATCH: usize = 256;

/// The kind of credential issued (the target's kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialKind {
    /// A Legate-signed JWT.
    Jwt,
    /// AWS session credentials.
    Aws,
    /// A Google Cloud access token.
    Gcp,
    /// A Microsoft Entra access token.
    Azure,
}

impl CredentialKind {
    /// Every kind.
    pub const ALL: [Self; 4] = [Self::Jwt, Self::Aws, Self::Gcp, Self::Azure];

    /// `jwt`, `aws`, `gcp` or `azure`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::Aws => "aws",
            Self::Gcp => "gcp",
            Self::Azure => "azure",
        }
    }

    /// Parses a kind's name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One issued credential. No secret: see the module's SECURITY note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Legate's request id (the audit event's).
    pub request_id: String,
    /// The trust the subject token came through.
    pub trust: String,
    /// The upstream issuer (`iss`).
    pub issuer: String,
    /// The upstream `sub`, as [`ledger_subject`] keeps it.
    pub subject: String,
    /// The target.
    pub target: String,
    /// The credential's kind.
    pub kind: CredentialKind,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// The credential's non-secret id, where there is one: a minted JWT's `jti`, an AWS
    /// session's assumed-role ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    /// The cloud's request id for the call that issued it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_request_id: Option<String>,
    /// Whether the credential cache served it (no cloud call for this request).
    pub served_from_cache: bool,
}

impl LedgerEntry {
    /// The entry with every text field within its bound ([`ledger_subject`] is
    /// idempotent on what it produced; other fields are cut at [`MAX_FIELD_BYTES`]).
    #[must_use]
    pub fn bounded(mut self) -> Self {
        for field in [
            &mut self.request_id,
            &mut self.trust,
            &mut self.issuer,
            &mut self.target,
        ] {
            cut(field, MAX_FIELD_BYTES);
        }
        for field in [&mut self.credential_id, &mut self.cloud_request_id]
            .into_iter()
            .flatten()
        {
            cut(field, MAX_FIELD_BYTES);
        }
        if self.subject.len() > MAX_SUBJECT_BYTES + DIGEST_MARK_BYTES {
            self.subject = ledger_subject(&self.subject);
        }
        self
    }
}

/// `…sha256:` and 64 hex digits.
const DIGEST_MARK_BYTES: usize = '…'.len_utf8() + "sha256:".len() + 64;

/// Cuts `s` to at most `max` bytes, on a character boundary.
fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let end = s.floor_char_boundary(max);
        s.truncate(end);
    }
}

/// The form a subject takes in the ledger: escaped as
/// [`legate_core::text::escape_untrusted_within`] escapes (printable ASCII kept, the rest
/// as Rust escapes), and when that is longer than [`MAX_SUBJECT_BYTES`], cut on an
/// escape boundary and marked `…sha256:<hex of the whole raw subject>`.
///
/// SECURITY: the escaping is injective and a cut one carries the digest of the whole,
/// so two distinct subjects never share an inventory row, and a subject never drives an
/// operator's terminal.
pub fn ledger_subject(raw: &str) -> String {
    let escaped = legate_core::text::escape_untrusted_within(raw, raw.len());
    if escaped.len() <= MAX_SUBJECT_BYTES {
        return escaped;
    }
    // Cut the escaped form on an escape boundary: re-escape a prefix of the input.
    let mut end = 0;
    let mut len = 0;
    for (i, c) in raw.char_indices() {
        let piece = legate_core::text::escape_untrusted_within(
            raw.get(i..i + c.len_utf8()).unwrap_or_default(),
            c.len_utf8(),
        )
        .len();
        if len + piece > MAX_SUBJECT_BYTES {
            break;
        }
        len += piece;
        end = i + c.len_utf8();
    }
    let prefix =
        legate_core::text::escape_untrusted_within(raw.get(..end).unwrap_or_default(), end);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, raw.as_bytes());
    format!("{prefix}…sha256:{}", hex::encode(digest.as_ref()))
}

/// What a query selects; every field set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerFilter {
    /// The trust name.
    pub trust: Option<String>,
    /// The subject, raw (as the upstream token has it) or in its ledger form.
    pub subject: Option<String>,
    /// The target name.
    pub target: Option<String>,
    /// The credential kind.
    pub kind: Option<CredentialKind>,
    /// Only what was issued (entries) or last seen (inventory rows) at or after this
    /// time, unix seconds.
    pub since: Option<i64>,
}

impl LedgerFilter {
    /// Whether `entry` is selected. (Computes the subject's ledger form on each call;
    /// a scan over many entries should use one [`Selector`].)
    pub fn matches(&self, entry: &LedgerEntry) -> bool {
        Selector::new(self).matches(entry)
    }
}

/// A [`LedgerFilter`] ready to test many rows: the wanted subject's ledger form is
/// computed once.
#[derive(Debug)]
pub struct Selector<'a> {
    filter: &'a LedgerFilter,
    subject: Option<(&'a str, String)>,
}

impl<'a> Selector<'a> {
    /// The selector of `filter`.
    pub fn new(filter: &'a LedgerFilter) -> Self {
        Self {
            filter,
            subject: filter.subject.as_deref().map(|s| (s, ledger_subject(s))),
        }
    }

    /// Whether the names a row has match (a row without a field is not filtered on it).
    pub fn matches_names(
        &self,
        trust: Option<&str>,
        subject: Option<&str>,
        target: Option<&str>,
    ) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have.is_none_or(|h| h == w))
        };
        eq(&self.filter.trust, trust)
            && eq(&self.filter.target, target)
            && subject.is_none_or(|have| {
                self.subject
                    .as_ref()
                    .is_none_or(|(raw, form)| have == *raw || have == form)
            })
    }

    /// Whether `entry` is selected.
    pub fn matches(&self, entry: &LedgerEntry) -> bool {
        self.matches_names(
            Some(&entry.trust),
            Some(&entry.subject),
            Some(&entry.target),
        ) && self.filter.kind.is_none_or(|k| k == entry.kind)
            && self.filter.since.is_none_or(|t| entry.issued_at >= t)
    }
}

/// Counts over the credentials of one inventory row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// When the first credential was issued, unix seconds.
    pub first_seen: i64,
    /// When the latest credential was issued, unix seconds.
    pub last_seen: i64,
    /// Credentials issued since `first_seen`. A row leaves once it has not been seen for
    /// the retention; while it keeps being seen, its counts keep growing.
    pub count: u64,
    /// Of those, served from the credential cache.
    pub served_from_cache: u64,
    /// The latest expiry of a credential issued: until then one may still be valid.
    pub valid_until: i64,
}

impl Seen {
    fn first(entry: &LedgerEntry) -> Self {
        Self {
            first_seen: entry.issued_at,
            last_seen: entry.issued_at,
            count: 1,
            served_from_cache: u64::from(entry.served_from_cache),
            valid_until: entry.expires_at,
        }
    }

    fn add(&mut self, entry: &LedgerEntry) {
        self.first_seen = self.first_seen.min(entry.issued_at);
        self.last_seen = self.last_seen.max(entry.issued_at);
        self.count = self.count.saturating_add(1);
        self.served_from_cache = self
            .served_from_cache
            .saturating_add(u64::from(entry.served_from_cache));
        self.valid_until = self.valid_until.max(entry.expires_at);
    }
}

/// An upstream issuer, by trust.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuerRow {
    /// The trust name.
    pub trust: String,
    /// The upstream `iss`.
    pub issuer: String,
    /// Its counts.
    #[serde(flatten)]
    pub seen: Seen,
}

/// A subject of a trust.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectRow {
    /// The trust name.
    pub trust: String,
    /// The subject, in its ledger form.
    pub subject: String,
    /// The targets it reached (from the paths held).
    pub targets: Vec<String>,
    /// Its counts.
    #[serde(flatten)]
    pub seen: Seen,
}

/// A target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRow {
    /// The target name.
    pub target: String,
    /// Its kind.
    pub kind: CredentialKind,
    /// Its counts.
    #[serde(flatten)]
    pub seen: Seen,
}

/// A refresh path: one subject of one trust reaching one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathRow {
    /// The trust name.
    pub trust: String,
    /// The subject, in its ledger form.
    pub subject: String,
    /// The target name.
    pub target: String,
    /// Its counts.
    #[serde(flatten)]
    pub seen: Seen,
}

/// Keys (or entries) dropped at a limit since start, per map: while any is non-zero the
/// inventory does not show everything seen within retention.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evictions {
    /// Ledger entries dropped at `max_entries` (oldest first).
    pub entries: u64,
    /// Issuer keys dropped at `max_inventory_keys` (least recently seen first).
    pub issuers: u64,
    /// Subject keys dropped likewise.
    pub subjects: u64,
    /// Target keys dropped likewise.
    pub targets: u64,
    /// Path keys dropped likewise.
    pub paths: u64,
}

/// The inventory: every issuer, subject, target and refresh path seen within retention
/// (unless evicted at a limit), most recently seen first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Upstream issuers.
    pub issuers: Vec<IssuerRow>,
    /// Subjects.
    pub subjects: Vec<SubjectRow>,
    /// Targets.
    pub targets: Vec<TargetRow>,
    /// Refresh paths (trust → subject → target).
    pub paths: Vec<PathRow>,
    /// Whether a list was cut at the query's limit.
    pub truncated: bool,
    /// What the bounds dropped since start.
    pub evicted: Evictions,
    /// `[ledger] retention_secs`.
    pub retention_secs: u64,
}

/// Why a ledger could not answer (a shared backend's outage; the memory backend never
/// fails).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The backend is unreachable or failed.
    #[error("ledger backend unavailable: {0}")]
    Unavailable(String),
}

/// A boxed future, so the trait stays object safe for an async (Redis) backend.
pub type LedgerFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, LedgerError>> + Send + 'a>>;

/// Where issued credentials are recorded and the inventory is read. One node keeps it in
/// memory ([`MemoryLedger`]); a fleet shares it.
pub trait Ledger: fmt::Debug + Send + Sync {
    /// Records one issued credential (bounded with [`LedgerEntry::bounded`]).
    fn record(&self, entry: LedgerEntry) -> LedgerFuture<'_, ()>;

    /// Records several entries; a shared backend sends them in one round trip. By
    /// default one [`record`](Self::record) after another, stopping at the first error.
    fn record_batch(&self, entries: Vec<LedgerEntry>) -> LedgerFuture<'_, ()> {
        Box::pin(async move {
            for entry in entries {
                self.record(entry).await?;
            }
            Ok(())
        })
    }

    /// The entries `filter` selects, newest first, at most `limit` (capped at
    /// [`MAX_QUERY_LIMIT`]); `now` applies retention.
    fn entries<'a>(
        &'a self,
        filter: &'a LedgerFilter,
        limit: usize,
        now: i64,
    ) -> LedgerFuture<'a, Vec<LedgerEntry>>;

    /// The inventory rows `filter` selects (a filter field applies to the rows that have
    /// it: `target` leaves issuers whole), most recently seen first, at most `limit` per
    /// list (capped at [`MAX_QUERY_LIMIT`]); `now` applies retention.
    fn inventory<'a>(
        &'a self,
        filter: &'a LedgerFilter,
        limit: usize,
        now: i64,
    ) -> LedgerFuture<'a, Inventory>;
}

/// The bounds of a ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerLimits {
    /// Seconds an entry (and an inventory row not seen since) is kept.
    pub retention_secs: u64,
    /// The most entries held (at least 1).
    pub max_entries: usize,
    /// The most keys held per inventory map (at least 1).
    pub max_inventory_keys: usize,
}

impl Default for LedgerLimits {
    fn default() -> Self {
        Self {
            retention_secs: DEFAULT_RETENTION_SECS,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_inventory_keys: DEFAULT_MAX_INVENTORY_KEYS,
        }
    }
}

/// One bounded inventory map: key → counts, with an index by last seen that finds the
/// least recently seen key (to evict at the limit) and the ones past retention.
#[derive(Debug)]
struct Aggregate<K> {
    rows: HashMap<K, (Seen, u64)>,
    by_last_seen: BTreeMap<(i64, u64), K>,
    next_seq: u64,
    capacity: usize,
    evicted: u64,
}

impl<K: Clone + Eq + Hash> Aggregate<K> {
    fn new(capacity: usize) -> Self {
        Self {
            rows: HashMap::new(),
            by_last_seen: BTreeMap::new(),
            next_seq: 0,
            capacity: capacity.max(1),
            evicted: 0,
        }
    }

    fn add(&mut self, key: K, entry: &LedgerEntry) {
        if let Some((seen, seq)) = self.rows.get_mut(&key) {
            self.by_last_seen.remove(&(seen.last_seen, *seq));
            seen.add(entry);
            self.by_last_seen.insert((seen.last_seen, *seq), key);
            return;
        }
        while self.rows.len() >= self.capacity {
            let Some((_, oldest)) = self.by_last_seen.pop_first() else {
                break;
            };
            self.rows.remove(&oldest);
            self.evicted = self.evicted.saturating_add(1);
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let seen = Seen::first(entry);
        self.by_last_seen.insert((seen.last_seen, seq), key.clone());
        self.rows.insert(key, (seen, seq));
    }

    /// Drops the rows last seen before `cutoff`.
    fn expire(&mut self, cutoff: i64) {
        while let Some(entry) = self.by_last_seen.first_entry() {
            if entry.key().0 >= cutoff {
                break;
            }
            let key = entry.remove();
            self.rows.remove(&key);
        }
    }

    /// The rows `keep` selects, most recently seen first, at most `limit`; and whether
    /// more were selected.
    fn newest(&self, limit: usize, keep: impl Fn(&K, &Seen) -> bool) -> (Vec<(K, Seen)>, bool) {
        let mut out = Vec::new();
        for key in self.by_last_seen.values().rev() {
            let Some((seen, _)) = self.rows.get(key) else {
                continue;
            };
            if keep(key, seen) {
                if out.len() == limit {
                    return (out, true);
                }
                out.push((key.clone(), *seen));
            }
        }
        (out, false)
    }

    fn len(&self) -> usize {
        self.rows.len()
    }
}

#[derive(Debug)]
struct State {
    entries: VecDeque<LedgerEntry>,
    evicted_entries: u64,
    issuers: Aggregate<(String, String)>,
    subjects: Aggregate<(String, String)>,
    targets: Aggregate<(String, CredentialKind)>,
    paths: Aggregate<(String, String, String)>,
}

/// The in-memory ledger: a queue of entries and four bounded maps behind one lock.
pub struct MemoryLedger {
    limits: LedgerLimits,
    state: Mutex<State>,
}

impl fmt::Debug for MemoryLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryLedger")
            .field("limits", &self.limits)
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

impl MemoryLedger {
    /// An empty ledger within `limits`.
    pub fn new(limits: LedgerLimits) -> Self {
        let keys = limits.max_inventory_keys;
        Self {
            limits: LedgerLimits {
                max_entries: limits.max_entries.max(1),
                max_inventory_keys: keys.max(1),
                ..limits
            },
            state: Mutex::new(State {
                entries: VecDeque::new(),
                evicted_entries: 0,
                issuers: Aggregate::new(keys),
                subjects: Aggregate::new(keys),
                targets: Aggregate::new(keys),
                paths: Aggregate::new(keys),
            }),
        }
    }

    /// The bounds.
    pub fn limits(&self) -> LedgerLimits {
        self.limits
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys held in the four inventory maps together.
    pub fn inventory_keys(&self) -> usize {
        let s = self.lock();
        s.issuers.len() + s.subjects.len() + s.targets.len() + s.paths.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cutoff(&self, now: i64) -> i64 {
        now.saturating_sub(i64::try_from(self.limits.retention_secs).unwrap_or(i64::MAX))
    }

    fn sweep(&self, state: &mut State, now: i64) {
        let cutoff = self.cutoff(now);
        while state.entries.front().is_some_and(|e| e.issued_at < cutoff) {
            state.entries.pop_front();
        }
        state.issuers.expire(cutoff);
        state.subjects.expire(cutoff);
        state.targets.expire(cutoff);
        state.paths.expire(cutoff);
    }

    /// Records `entry`, synchronously.
    pub fn record_now(&self, entry: LedgerEntry) {
        let entry = entry.bounded();
        let mut state = self.lock();
        // The entry's own time is the time of the sweep: the ledger reads no clock.
        self.sweep(&mut state, entry.issued_at);
        state
            .issuers
            .add((entry.trust.clone(), entry.issuer.clone()), &entry);
        state
            .subjects
            .add((entry.trust.clone(), entry.subject.clone()), &entry);
        state
            .targets
            .add((entry.target.clone(), entry.kind), &entry);
        state.paths.add(
            (
                entry.trust.clone(),
                entry.subject.clone(),
                entry.target.clone(),
            ),
            &entry,
        );
        while state.entries.len() >= self.limits.max_entries {
            state.entries.pop_front();
            state.evicted_entries = state.evicted_entries.saturating_add(1);
        }
        state.entries.push_back(entry);
    }

    /// [`Ledger::entries`], synchronously.
    pub fn entries_now(&self, filter: &LedgerFilter, limit: usize, now: i64) -> Vec<LedgerEntry> {
        let limit = limit.min(MAX_QUERY_LIMIT);
        let select = Selector::new(filter);
        let mut state = self.lock();
        self.sweep(&mut state, now);
        state
            .entries
            .iter()
            .rev()
            .filter(|e| select.matches(e))
            .take(limit)
            .cloned()
            .collect()
    }

    /// [`Ledger::inventory`], synchronously.
    pub fn inventory_now(&self, filter: &LedgerFilter, limit: usize, now: i64) -> Inventory {
        let limit = limit.min(MAX_QUERY_LIMIT);
        let select = Selector::new(filter);
        let mut state = self.lock();
        self.sweep(&mut state, now);
        let since = |seen: &Seen| filter.since.is_none_or(|t| seen.last_seen >= t);
        // A kind filter selects targets of that kind, and the paths to them.
        let kinds: Option<BTreeSet<String>> = filter.kind.map(|kind| {
            state
                .targets
                .rows
                .keys()
                .filter(|(_, k)| *k == kind)
                .map(|(t, _)| t.clone())
                .collect()
        });
        let kind_ok = |target: &str| kinds.as_ref().is_none_or(|k| k.contains(target));

        let (issuers, cut_issuers) = state.issuers.newest(limit, |(trust, _), seen| {
            select.matches_names(Some(trust), None, None) && since(seen)
        });
        let (paths, cut_paths) = state.paths.newest(limit, |(trust, subject, target), seen| {
            select.matches_names(Some(trust), Some(subject), Some(target))
                && kind_ok(target)
                && since(seen)
        });
        // The targets of each subject, from every path held (not only those listed).
        let mut reached: HashMap<(&str, &str), BTreeSet<&str>> = HashMap::new();
        for (trust, subject, target) in state.paths.rows.keys() {
            reached
                .entry((trust.as_str(), subject.as_str()))
                .or_default()
                .insert(target.as_str());
        }
        let (subjects, cut_subjects) = state.subjects.newest(limit, |(trust, subject), seen| {
            select.matches_names(Some(trust), Some(subject), None)
                && since(seen)
                && (filter.target.is_none() && filter.kind.is_none()
                    || reached
                        .get(&(trust.as_str(), subject.as_str()))
                        .is_some_and(|targets| {
                            targets.iter().any(|t| {
                                filter.target.as_deref().is_none_or(|w| w == *t) && kind_ok(t)
                            })
                        }))
        });
        let (targets, cut_targets) = state.targets.newest(limit, |(target, kind), seen| {
            select.matches_names(None, None, Some(target))
                && filter.kind.is_none_or(|k| k == *kind)
                && since(seen)
        });
        Inventory {
            issuers: issuers
                .into_iter()
                .map(|((trust, issuer), seen)| IssuerRow {
                    trust,
                    issuer,
                    seen,
                })
                .collect(),
            subjects: subjects
                .into_iter()
                .map(|((trust, subject), seen)| SubjectRow {
                    targets: reached
                        .get(&(trust.as_str(), subject.as_str()))
                        .map(|t| t.iter().map(|s| (*s).to_owned()).collect())
                        .unwrap_or_default(),
                    trust,
                    subject,
                    seen,
                })
                .collect(),
            targets: targets
                .into_iter()
                .map(|((target, kind), seen)| TargetRow { target, kind, seen })
                .collect(),
            paths: paths
                .into_iter()
                .map(|((trust, subject, target), seen)| PathRow {
                    trust,
                    subject,
                    target,
                    seen,
                })
                .collect(),
            truncated: cut_issuers || cut_subjects || cut_targets || cut_paths,
            evicted: Evictions {
                entries: state.evicted_entries,
                issuers: state.issuers.evicted,
                subjects: state.subjects.evicted,
                targets: state.targets.evicted,
                paths: state.paths.evicted,
            },
            retention_secs: self.limits.retention_secs,
        }
    }
}

impl Ledger for MemoryLedger {
    fn record(&self, entry: LedgerEntry) -> LedgerFuture<'_, ()> {
        self.record_now(entry);
        Box::pin(std::future::ready(Ok(())))
    }

    fn entries<'a>(
        &'a self,
        filter: &'a LedgerFilter,
        limit: usize,
        now: i64,
    ) -> LedgerFuture<'a, Vec<LedgerEntry>> {
        Box::pin(std::future::ready(Ok(self.entries_now(filter, limit, now))))
    }

    fn inventory<'a>(
        &'a self,
        filter: &'a LedgerFilter,
        limit: usize,
        now: i64,
    ) -> LedgerFuture<'a, Inventory> {
        Box::pin(std::future::ready(Ok(
            self.inventory_now(filter, limit, now)
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;

    const T0: i64 = 1_767_225_600;

    fn entry(trust: &str, subject: &str, target: &str, at: i64) -> LedgerEntry {
        LedgerEntry {
            request_id: format!("req-{at}-{subject}-{target}"),
            trust: trust.to_owned(),
            issuer: format!("https://{trust}.example"),
            subject: ledger_subject(subject),
            target: target.to_owned(),
            kind: if target.starts_with("aws") {
                CredentialKind::Aws
            } else {
                CredentialKind::Jwt
            },
            issued_at: at,
            expires_at: at + 900,
            credential_id: Some(format!("jti-{at}")),
            cloud_request_id: None,
            served_from_cache: false,
        }
    }

    fn limits(entries: usize, keys: usize) -> LedgerLimits {
        LedgerLimits {
            retention_secs: 3_600,
            max_entries: entries,
            max_inventory_keys: keys,
        }
    }

    fn all() -> LedgerFilter {
        LedgerFilter::default()
    }

    /// The inventory counts what was issued: per issuer, subject, target and path,
    /// with first and last seen, cache hits, the latest expiry and each subject's
    /// targets.
    #[test]
    fn inventory_aggregates_issuers_subjects_targets_and_paths() {
        let l = MemoryLedger::new(LedgerLimits::default());
        l.record_now(entry("gh", "repo:a", "api", T0));
        l.record_now(entry("gh", "repo:a", "api", T0 + 10));
        let mut cached = entry("gh", "repo:a", "aws-prod", T0 + 20);
        cached.served_from_cache = true;
        l.record_now(cached);
        l.record_now(entry("gh", "repo:b", "api", T0 + 5));
        l.record_now(entry("k8s", "system:serviceaccount:ns:x", "api", T0 + 7));

        let inv = l.inventory_now(&all(), 100, T0 + 30);
        assert!(!inv.truncated);
        assert_eq!(inv.issuers.len(), 2);
        let gh = &inv.issuers[0];
        assert_eq!(
            (gh.trust.as_str(), gh.issuer.as_str()),
            ("gh", "https://gh.example")
        );
        assert_eq!(
            gh.seen,
            Seen {
                first_seen: T0,
                last_seen: T0 + 20,
                count: 4,
                served_from_cache: 1,
                valid_until: T0 + 920,
            }
        );
        assert_eq!(inv.issuers[1].seen.count, 1);
        // Subjects: most recently seen first, with the targets they reached.
        let subjects: Vec<(&str, u64, Vec<String>)> = inv
            .subjects
            .iter()
            .map(|s| (s.subject.as_str(), s.seen.count, s.targets.clone()))
            .collect();
        assert_eq!(
            subjects,
            [
                ("repo:a", 3, vec!["api".to_owned(), "aws-prod".to_owned()]),
                ("system:serviceaccount:ns:x", 1, vec!["api".to_owned()]),
                ("repo:b", 1, vec!["api".to_owned()]),
            ]
        );
        let api = inv.targets.iter().find(|t| t.target == "api").unwrap();
        assert_eq!((api.kind, api.seen.count), (CredentialKind::Jwt, 4));
        let aws = inv.targets.iter().find(|t| t.target == "aws-prod").unwrap();
        assert_eq!(
            (aws.kind, aws.seen.served_from_cache),
            (CredentialKind::Aws, 1)
        );
        assert_eq!(inv.paths.len(), 4);
        let path = inv
            .paths
            .iter()
            .find(|p| p.subject == "repo:a" && p.target == "api")
            .unwrap();
        assert_eq!(
            (path.seen.first_seen, path.seen.last_seen, path.seen.count),
            (T0, T0 + 10, 2)
        );
        assert_eq!(inv.evicted, Evictions::default());
    }

    #[test]
    fn filters_select_rows_and_entries() {
        let l = MemoryLedger::new(LedgerLimits::default());
        l.record_now(entry("gh", "repo:a", "api", T0));
        l.record_now(entry("gh", "repo:a", "aws-prod", T0 + 1));
        l.record_now(entry("gh", "repo:b", "api", T0 + 2));
        l.record_now(entry("k8s", "sa", "api", T0 + 3));

        let by_target = LedgerFilter {
            target: Some("aws-prod".into()),
            ..all()
        };
        let inv = l.inventory_now(&by_target, 100, T0 + 10);
        assert_eq!(inv.subjects.len(), 1);
        assert_eq!(inv.subjects[0].subject, "repo:a");
        assert_eq!(inv.paths.len(), 1);
        assert_eq!(inv.targets.len(), 1);
        assert_eq!(inv.issuers.len(), 2, "issuers have no target: left whole");

        let by_kind = LedgerFilter {
            kind: Some(CredentialKind::Aws),
            ..all()
        };
        let inv = l.inventory_now(&by_kind, 100, T0 + 10);
        assert_eq!(inv.targets.len(), 1);
        assert_eq!(inv.paths.len(), 1);

        let by_trust = LedgerFilter {
            trust: Some("k8s".into()),
            ..all()
        };
        let inv = l.inventory_now(&by_trust, 100, T0 + 10);
        assert_eq!(inv.issuers.len(), 1);
        assert_eq!(inv.subjects.len(), 1);
        assert_eq!(inv.targets.len(), 2, "targets have no trust: left whole");
        let entries = l.entries_now(&by_trust, 100, T0 + 10);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].subject, "sa");

        let by_subject = LedgerFilter {
            subject: Some("repo:a".into()),
            since: Some(T0 + 1),
            ..all()
        };
        let entries = l.entries_now(&by_subject, 100, T0 + 10);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].target, "aws-prod");

        // Newest first, limited.
        let entries = l.entries_now(&all(), 2, T0 + 10);
        assert_eq!(
            entries.iter().map(|e| e.issued_at).collect::<Vec<_>>(),
            [T0 + 3, T0 + 2]
        );
        let inv = l.inventory_now(&all(), 1, T0 + 10);
        assert!(inv.truncated);
        assert_eq!(inv.subjects.len(), 1);
        assert_eq!(inv.subjects[0].subject, "sa");
    }

    /// Stops the ledger from growing without bound under a flood of exchanges: at
    /// `max_entries` the oldest entry leaves first, and the drop is counted.
    #[test]
    fn at_max_entries_the_oldest_entries_leave_first() {
        let l = MemoryLedger::new(limits(3, 100));
        for i in 0..10 {
            l.record_now(entry("gh", "repo:a", "api", T0 + i));
            assert!(l.len() <= 3);
        }
        let entries = l.entries_now(&all(), 100, T0 + 10);
        assert_eq!(
            entries.iter().map(|e| e.issued_at).collect::<Vec<_>>(),
            [T0 + 9, T0 + 8, T0 + 7]
        );
        let inv = l.inventory_now(&all(), 100, T0 + 10);
        assert_eq!(inv.evicted.entries, 7);
        // The inventory still counts every credential issued.
        assert_eq!(inv.paths[0].seen.count, 10);
    }

    /// Stops a flood of distinct subjects from growing the inventory without bound: at
    /// `max_inventory_keys` a new key evicts the least recently seen one (a key seen
    /// again moves to the back), and each map counts its evictions.
    #[test]
    fn at_max_inventory_keys_the_least_recently_seen_key_is_evicted() {
        let l = MemoryLedger::new(limits(1_000, 3));
        l.record_now(entry("gh", "s1", "api", T0));
        l.record_now(entry("gh", "s2", "api", T0 + 1));
        l.record_now(entry("gh", "s3", "api", T0 + 2));
        // s1 is seen again: s2 is now the least recently seen.
        l.record_now(entry("gh", "s1", "api", T0 + 3));
        l.record_now(entry("gh", "s4", "api", T0 + 4));
        let inv = l.inventory_now(&all(), 100, T0 + 5);
        let subjects: Vec<&str> = inv.subjects.iter().map(|s| s.subject.as_str()).collect();
        assert_eq!(subjects, ["s4", "s1", "s3"]);
        assert_eq!(inv.subjects[1].seen.count, 2);
        assert_eq!(inv.evicted.subjects, 1);
        assert_eq!(inv.evicted.paths, 1);
        assert_eq!(inv.evicted.issuers, 0);
        for _ in 0..100 {
            l.record_now(entry("gh", &format!("x{}", l.len()), "api", T0 + 6));
        }
        assert!(l.inventory_keys() <= 4 * 3);
        let inv = l.inventory_now(&all(), 100, T0 + 6);
        assert_eq!(inv.subjects.len(), 3);
        assert_eq!(inv.evicted.subjects, 101);
    }

    /// Stops old history from being kept past retention: entries and inventory rows
    /// not seen for `retention_secs` are dropped, at query time as at record time.
    #[test]
    fn retention_drops_old_entries_and_rows() {
        let l = MemoryLedger::new(limits(1_000, 1_000));
        l.record_now(entry("gh", "old", "api", T0));
        l.record_now(entry("gh", "new", "api", T0 + 3_000));
        let inv = l.inventory_now(&all(), 100, T0 + 3_600);
        assert_eq!(inv.subjects.len(), 2, "at the edge of retention: kept");
        let inv = l.inventory_now(&all(), 100, T0 + 3_601);
        let subjects: Vec<&str> = inv.subjects.iter().map(|s| s.subject.as_str()).collect();
        assert_eq!(subjects, ["new"]);
        // The issuer was seen since: kept, with its counts since it was first seen.
        assert_eq!(inv.issuers[0].seen.count, 2);
        assert_eq!(inv.issuers[0].seen.first_seen, T0);
        assert_eq!(l.entries_now(&all(), 100, T0 + 3_601).len(), 1);
        assert_eq!(
            inv.evicted,
            Evictions::default(),
            "retention is not eviction"
        );
        // Recording later sweeps too.
        l.record_now(entry("gh", "later", "api", T0 + 10_000));
        assert_eq!(l.len(), 1);
        assert_eq!(l.inventory_keys(), 4);
    }

    /// Stops a hostile or huge upstream `sub` from driving a terminal, growing an entry
    /// without bound, or merging with another subject that shares its first bytes.
    #[test]
    fn subjects_are_escaped_bounded_and_never_merged() {
        assert_eq!(ledger_subject("repo:a/b:ref:main"), "repo:a/b:ref:main");
        assert_eq!(ledger_subject("a\u{1b}[2J\"é"), r#"a\u{1b}[2J\"\u{e9}"#);
        let long_a = format!("{}a", "x".repeat(5_000));
        let long_b = format!("{}b", "x".repeat(5_000));
        let (a, b) = (ledger_subject(&long_a), ledger_subject(&long_b));
        assert_ne!(a, b);
        assert!(
            a.len() <= MAX_SUBJECT_BYTES + DIGEST_MARK_BYTES,
            "{}",
            a.len()
        );
        assert!(a.contains("…sha256:"));
        // Escapes are never cut in half.
        let escapes = ledger_subject(&"\n".repeat(1_000));
        let prefix = escapes.split('…').next().unwrap();
        assert!(
            prefix.ends_with("\\n") && prefix.len() <= MAX_SUBJECT_BYTES,
            "{prefix}"
        );
        // Bounding what is already bounded changes nothing; an unbounded entry is cut.
        let mut e = entry("gh", &long_a, "api", T0);
        assert_eq!(e.clone().bounded().subject, a);
        e.subject = long_a.clone();
        e.credential_id = Some("i".repeat(10_000));
        let e = e.bounded();
        assert_eq!(e.subject, a);
        assert_eq!(e.credential_id.unwrap().len(), MAX_FIELD_BYTES);
        // A filter matches the raw subject or its ledger form.
        let l = MemoryLedger::new(LedgerLimits::default());
        l.record_now(entry("gh", &long_a, "api", T0));
        for subject in [long_a.clone(), a.clone()] {
            let f = LedgerFilter {
                subject: Some(subject),
                ..all()
            };
            assert_eq!(l.entries_now(&f, 10, T0).len(), 1);
        }
    }

    #[test]
    fn kinds_round_trip() {
        for kind in CredentialKind::ALL {
            assert_eq!(CredentialKind::parse(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::String(kind.as_str().to_owned())
            );
        }
    }

    #[tokio::test]
    async fn trait_object_answers() {
        let l: Box<dyn Ledger> = Box::new(MemoryLedger::new(LedgerLimits::default()));
        l.record(entry("gh", "s", "api", T0)).await.unwrap();
        let entries = l.entries(&all(), 10, T0).await.unwrap();
        assert_eq!(entries.len(), 1);
        let inv = l.inventory(&all(), 10, T0).await.unwrap();
        assert_eq!(inv.paths.len(), 1);
        assert_eq!(inv.retention_secs, DEFAULT_RETENTION_SECS);
    }
}
