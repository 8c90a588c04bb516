//! The in-memory replay cache: one process, no persistence.
//!
//! Layout: [`SHARDS`] shards, chosen by a randomly seeded hash of `(iss, jti)`, each a
//! mutex over a map (key → retain-until, trust) and an expiry index (retain-until second
//! → keys). Every call sweeps a few due entries of the shard it touches, so expiry keeps
//! pace with insertion without a pass over the whole cache; a call that finds the cache
//! (or its trust's share) at the limit first sweeps due entries across the shards, one
//! shard lock at a time, until there is room or nothing is due. Live-entry counters (total
//! and per trust) are atomics, incremented when an entry is inserted and decremented when
//! it is removed, so no global lock is taken on the request path. Each key is hashed once
//! (SipHash with a random seed); the shard and the shard's map both use that hash.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use crate::{MAX_JTI_BYTES, ReplayLimits, ReplayVerdict, StateError};

/// The number of shards. A power of two well above the core count: two requests rarely
/// wait for the same lock, and a shard's share of a million entries (~16 k) is small.
const SHARDS: usize = 64;

/// Which bits of a key's hash pick its shard: bits 32 to 37, clear of the low bits that
/// pick a bucket inside the shard's map and of the top seven bits it keeps as a tag.
const SHARD_SHIFT: u32 = 32;

/// Due entries swept from the touched shard at every call. Above 1, so sweeping
/// outpaces insertion (each call inserts at most one entry) and a backlog left by many
/// entries expiring together drains over the following calls.
const SWEEP_PER_CALL: usize = 8;

/// Due entries swept per shard visit when a call is at a limit and looks for room.
const ROOM_SWEEP_BATCH: usize = 64;

/// How often a call at a limit sweeps and retries before it gives up; more than one only
/// matters when concurrent calls take the room another call freed.
const ROOM_ATTEMPTS: usize = 4;

/// `(iss, jti)` → retain-until, in 64 shards, bounded in total and per trust.
///
/// INVARIANT: an entry is never dropped before its retain-until time, except by an
/// explicit [`release`](crate::ReplayCache::release) naming its trust, issuer and `jti`. Every
/// removal path checks `retain_until <= now` on the entry itself, not on the expiry index,
/// which may hold stale references. When the cache (or a trust's share) is full of live
/// entries it refuses new tokens (fail closed) rather than evicting one, which would
/// reopen a replay window.
///
/// INVARIANT: an expired entry never makes the cache refuse. Before refusing as full, a
/// call sweeps every due entry it needs to (across all shards) and re-checks.
pub struct MemoryReplayCache {
    capacity: usize,
    per_trust_capacity: usize,
    shards: [Mutex<Shard>; SHARDS],
    /// Hashes keys; randomly seeded, so a client can neither aim its `jti`s at one shard
    /// nor at one bucket of a shard's map.
    hasher: RandomState,
    /// Entries held (live, or expired and not yet swept) plus in-flight reservations.
    live: AtomicUsize,
    /// One counter per trust name seen. Trust names come from the configuration, not
    /// from requests, so this map is bounded by the number of configured trusts.
    trusts: RwLock<HashMap<Box<str>, Arc<TrustSlot>>>,
    /// Where the next search for room starts, so concurrent searches spread out.
    cursor: AtomicUsize,
}

/// One trust's live-entry counter.
#[derive(Debug)]
struct TrustSlot {
    name: Box<str>,
    live: AtomicUsize,
}

#[derive(Debug, Default)]
struct Shard {
    entries: HashMap<Key, Entry, PreHashed>,
    /// Retain-until second → keys that were recorded with it. A reference may be stale
    /// (its entry removed as expired on lookup, and perhaps recorded again since); the
    /// sweep checks the entry itself before removing anything.
    expiry: BTreeMap<i64, Vec<Key>>,
}

#[derive(Debug)]
struct Entry {
    retain_until: i64,
    trust: Arc<TrustSlot>,
}

/// An `(iss, jti)` pair with its hash, computed once.
#[derive(Debug, Clone)]
struct Key {
    hash: u64,
    /// [`encode`]`(iss, jti)`.
    text: Arc<str>,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && (Arc::ptr_eq(&self.text, &other.text) || self.text == other.text)
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The shard maps' hasher: passes the key's precomputed hash through.
#[derive(Debug, Clone, Copy, Default)]
struct PreHashed;

impl BuildHasher for PreHashed {
    type Hasher = PassThrough;

    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

/// Keeps the last `u64` written. Only [`Key`] is hashed with it, which writes exactly
/// one `u64`; other writes are folded in so the hasher stays correct for any input.
#[derive(Debug)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl MemoryReplayCache {
    /// A cache bounded by `limits` (a limit of 0 is taken as 1).
    pub fn new(limits: ReplayLimits) -> Self {
        Self {
            capacity: limits.capacity.max(1),
            per_trust_capacity: limits.per_trust_capacity.max(1),
            shards: std::array::from_fn(|_| Mutex::default()),
            hasher: RandomState::new(),
            live: AtomicUsize::new(0),
            trusts: RwLock::default(),
            cursor: AtomicUsize::new(0),
        }
    }

    pub(crate) fn check_and_record(
        &self,
        trust: &str,
        issuer: &str,
        jti: &str,
        retain_until: i64,
        now: i64,
    ) -> Result<ReplayVerdict, StateError> {
        let Some(key) = self.key(issuer, jti) else {
            return Err(StateError::JtiTooLong { len: jti.len() });
        };
        let shard = self.shard_of(&key);
        // Looked up only when a record is to be made: a replay never touches the registry.
        let mut slot: Option<Arc<TrustSlot>> = None;
        let mut refused = StateError::Full {
            capacity: self.capacity,
        };
        for _ in 0..ROOM_ATTEMPTS {
            match self.try_record(shard, &key, trust, &mut slot, retain_until, now) {
                Err(e @ (StateError::Full { .. } | StateError::TrustFull { .. })) => refused = e,
                done => return done,
            }
            // At a limit: free due entries elsewhere (no shard lock is held here, so the
            // search can lock each shard in turn) and retry.
            if !slot.as_ref().is_some_and(|slot| self.make_room(slot, now)) {
                break;
            }
        }
        Err(refused)
    }

    /// One attempt under the shard's lock.
    fn try_record(
        &self,
        shard: &Mutex<Shard>,
        key: &Key,
        trust: &str,
        slot: &mut Option<Arc<TrustSlot>>,
        retain_until: i64,
        now: i64,
    ) -> Result<ReplayVerdict, StateError> {
        let mut guard = lock(shard);
        let s = &mut *guard;
        s.sweep(now, SWEEP_PER_CALL, &self.live);
        loop {
            match s.entries.entry(key.clone()) {
                MapEntry::Occupied(o) if o.get().retain_until > now => {
                    return Ok(ReplayVerdict::Replayed);
                }
                // Expired, not swept yet: it is dead. Drop it and look again (its expiry
                // reference is due and will be skipped by the sweep).
                MapEntry::Occupied(o) => free(&o.remove(), &self.live),
                MapEntry::Vacant(v) => {
                    // SECURITY: a token past its retain-until time (exp + leeway) has
                    // already been refused by verification; an entry for it would be dead
                    // on arrival, so it takes no room. A live entry for the pair was
                    // answered above.
                    if retain_until <= now {
                        return Ok(ReplayVerdict::Fresh);
                    }
                    let slot = slot.get_or_insert_with(|| self.trust_slot(trust));
                    self.reserve(slot)?;
                    s.expiry
                        .entry(retain_until)
                        .or_default()
                        .push(v.key().clone());
                    v.insert(Entry {
                        retain_until,
                        trust: Arc::clone(slot),
                    });
                    return Ok(ReplayVerdict::Fresh);
                }
            }
        }
    }

    pub(crate) fn release(&self, trust: &str, issuer: &str, jti: &str) {
        let Some(key) = self.key(issuer, jti) else {
            return; // too long: never recorded
        };
        let mut s = lock(self.shard_of(&key));
        if s.entries.get(&key).is_some_and(|e| *e.trust.name == *trust) {
            s.release(&key, &self.live);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// The key of `(issuer, jti)`; `None` when the `jti` is longer than
    /// [`MAX_JTI_BYTES`].
    fn key(&self, issuer: &str, jti: &str) -> Option<Key> {
        let text = encode(issuer, jti)?;
        Some(Key {
            hash: self.hasher.hash_one(&text),
            text: Arc::from(text),
        })
    }

    #[expect(
        clippy::indexing_slicing,
        reason = "the index is reduced modulo SHARDS, the array's length"
    )]
    fn shard_at(&self, i: usize) -> &Mutex<Shard> {
        &self.shards[i % SHARDS]
    }

    fn shard_of(&self, key: &Key) -> &Mutex<Shard> {
        // The modulo keeps the value below SHARDS, so the cast loses nothing.
        self.shard_at(((key.hash >> SHARD_SHIFT) % SHARDS as u64) as usize)
    }

    fn trust_slot(&self, trust: &str) -> Arc<TrustSlot> {
        if let Some(slot) = self
            .trusts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(trust)
        {
            return Arc::clone(slot);
        }
        let mut trusts = self.trusts.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(trusts.entry(Box::from(trust)).or_insert_with(|| {
            Arc::new(TrustSlot {
                name: Box::from(trust),
                live: AtomicUsize::new(0),
            })
        }))
    }

    /// Takes one slot of the trust's share and one of the total, or neither.
    fn reserve(&self, slot: &TrustSlot) -> Result<(), StateError> {
        if !take(&slot.live, self.per_trust_capacity) {
            return Err(StateError::TrustFull {
                trust: slot.name.to_string(),
                capacity: self.per_trust_capacity,
            });
        }
        if !take(&self.live, self.capacity) {
            slot.live.fetch_sub(1, Ordering::AcqRel);
            return Err(StateError::Full {
                capacity: self.capacity,
            });
        }
        Ok(())
    }

    fn has_room(&self, slot: &TrustSlot) -> bool {
        slot.live.load(Ordering::Acquire) < self.per_trust_capacity
            && self.live.load(Ordering::Acquire) < self.capacity
    }

    /// Sweeps due entries shard after shard until `slot` has room, or until a whole round
    /// of the shards finds nothing due. The work is bounded by the number of due entries
    /// (each is swept once), never by the number of live ones, and each shard lock is
    /// held for one batch only.
    fn make_room(&self, slot: &TrustSlot, now: i64) -> bool {
        let mut i = self.cursor.fetch_add(1, Ordering::Relaxed);
        let mut idle = 0;
        while idle < SHARDS {
            if self.has_room(slot) {
                return true;
            }
            let swept = lock(self.shard_at(i)).sweep(now, ROOM_SWEEP_BATCH, &self.live);
            if swept == 0 {
                idle += 1;
            } else {
                idle = 0;
            }
            i = i.wrapping_add(1);
        }
        self.has_room(slot)
    }
}

impl fmt::Debug for MemoryReplayCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the entries: a million of them, and `jti`s are not for logs.
        f.debug_struct("MemoryReplayCache")
            .field("capacity", &self.capacity)
            .field("per_trust_capacity", &self.per_trust_capacity)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Shard {
    /// Removes the entry of `key` and its expiry reference (the entry may be live, so
    /// its reference would otherwise stay until its retain-until time).
    fn release(&mut self, key: &Key, live: &AtomicUsize) {
        let Some((k, e)) = self.entries.remove_entry(key) else {
            return;
        };
        if let Some(refs) = self.expiry.get_mut(&e.retain_until) {
            if let Some(i) = refs.iter().position(|r| Arc::ptr_eq(&r.text, &k.text)) {
                refs.swap_remove(i);
            }
            if refs.is_empty() {
                self.expiry.remove(&e.retain_until);
            }
        }
        free(&e, live);
    }

    /// Handles up to `budget` expiry references due at `now` (retain-until `<= now`),
    /// oldest first, removing their entries when expired. Returns how many references
    /// it handled (0: nothing is due in this shard).
    fn sweep(&mut self, now: i64, budget: usize, live: &AtomicUsize) -> usize {
        let mut handled = 0;
        while handled < budget {
            let Some(mut bucket) = self.expiry.first_entry() else {
                break;
            };
            if *bucket.key() > now {
                break;
            }
            let next = bucket.get_mut().pop();
            if bucket.get().is_empty() {
                bucket.remove();
            }
            handled += 1;
            let Some(key) = next else {
                continue;
            };
            // INVARIANT: decided on the entry's own retain-until, never on the bucket:
            // a stale reference to a key recorded again since must not drop the new,
            // live entry.
            if let MapEntry::Occupied(o) = self.entries.entry(key)
                && o.get().retain_until <= now
            {
                free(&o.remove(), live);
            }
        }
        handled
    }
}

/// Gives back the total and per-trust slots of a removed entry.
fn free(e: &Entry, live: &AtomicUsize) {
    e.trust.live.fetch_sub(1, Ordering::AcqRel);
    live.fetch_sub(1, Ordering::AcqRel);
}

/// Increments `counter` if it is below `limit`.
fn take(counter: &AtomicUsize, limit: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        })
        .is_ok()
}

/// The text of the key of `(issuer, jti)`: one character whose code is the `jti`'s
/// length, the `jti`, the issuer. `None` when the `jti` is longer than
/// [`MAX_JTI_BYTES`].
///
/// SECURITY: length-prefixed, so the pair can be read back from the key and two
/// different pairs never share one (`("ab", "c")` and `("a", "bc")` give `\u{1}cab` and
/// `\u{2}bca`). Every length up to 256 is a valid `char`.
fn encode(issuer: &str, jti: &str) -> Option<String> {
    if jti.len() > MAX_JTI_BYTES {
        return None;
    }
    let len = char::from_u32(u32::try_from(jti.len()).ok()?)?;
    let mut text = String::with_capacity(len.len_utf8() + jti.len() + issuer.len());
    text.push(len);
    text.push_str(jti);
    text.push_str(issuer);
    Some(text)
}

/// A poisoned lock means a panic while holding it. Every shard operation leaves the map,
/// the index and the counters consistent between steps that cannot panic, so keep
/// serving.
fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::panic,
        reason = "tests fail loudly on a broken expectation"
    )]

    use std::collections::HashMap;

    use proptest::prelude::*;

    use crate::{MAX_JTI_BYTES, ReplayCache, ReplayLimits, ReplayVerdict, StateError};

    const FRESH: Result<ReplayVerdict, StateError> = Ok(ReplayVerdict::Fresh);
    const REPLAYED: Result<ReplayVerdict, StateError> = Ok(ReplayVerdict::Replayed);

    fn block<F: std::future::Future>(f: F) -> F::Output {
        // The memory backend never awaits; poll once with a no-op waker.
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("memory backend awaited"),
        }
    }

    fn cache(capacity: usize, per_trust_capacity: usize) -> ReplayCache {
        ReplayCache::memory(ReplayLimits {
            capacity,
            per_trust_capacity,
        })
    }

    /// Records `jti` of issuer `i` through trust `t`.
    fn rec(
        c: &ReplayCache,
        jti: &str,
        retain_until: i64,
        now: i64,
    ) -> Result<ReplayVerdict, StateError> {
        block(c.check_and_record("t", "i", jti, retain_until, 0, now))
    }

    #[test]
    fn second_use_of_the_same_iss_jti_is_a_replay() {
        let c = cache(10, 10);
        assert_eq!(rec(&c, "j", 200, 100), FRESH);
        assert_eq!(rec(&c, "j", 200, 150), REPLAYED);
    }

    #[test]
    fn same_jti_from_another_issuer_is_not_a_replay() {
        let c = cache(10, 10);
        assert_eq!(block(c.check_and_record("t", "a", "j", 200, 0, 100)), FRESH);
        assert_eq!(block(c.check_and_record("t", "b", "j", 200, 0, 100)), FRESH);
    }

    /// Attack: one issuer's token presented through a second trust configured for the
    /// same issuer (another audience). The key is (iss, jti), not the trust.
    #[test]
    fn the_same_token_through_another_trust_of_its_issuer_is_a_replay() {
        let c = cache(10, 10);
        assert_eq!(
            block(c.check_and_record("t1", "i", "j", 200, 0, 100)),
            FRESH
        );
        assert_eq!(
            block(c.check_and_record("t2", "i", "j", 200, 0, 100)),
            REPLAYED
        );
    }

    /// Attack: an issuer whose URL ends where another pair's `jti` begins; the key
    /// encoding must keep the pairs apart.
    #[test]
    fn pairs_with_the_same_concatenation_do_not_collide() {
        let c = cache(10, 10);
        assert_eq!(
            block(c.check_and_record("t", "a", "bc", 200, 0, 100)),
            FRESH
        );
        assert_eq!(
            block(c.check_and_record("t", "ab", "c", 200, 0, 100)),
            FRESH
        );
    }

    #[test]
    fn an_entry_lives_until_its_retain_time() {
        let c = cache(10, 10);
        rec(&c, "j", 200, 100).unwrap();
        assert_eq!(rec(&c, "j", 300, 199), REPLAYED);
        assert_eq!(rec(&c, "j", 300, 200), FRESH);
        // Recorded anew until 300.
        assert_eq!(rec(&c, "j", 300, 299), REPLAYED);
    }

    #[test]
    fn a_full_cache_fails_closed_instead_of_evicting() {
        let c = cache(2, 100);
        rec(&c, "1", 500, 100).unwrap();
        rec(&c, "2", 500, 100).unwrap();
        assert_eq!(
            rec(&c, "3", 500, 100),
            Err(StateError::Full { capacity: 2 })
        );
        // The recorded ones are still replays, and the refused one was not recorded.
        assert_eq!(rec(&c, "1", 500, 100), REPLAYED);
        assert_eq!(rec(&c, "2", 500, 499), REPLAYED);
        assert_eq!(c.len(), 2);
    }

    /// Stops the jam of issue 10: expired entries were swept only past a growth
    /// threshold of 1,024 while fullness was checked against the capacity, so a small
    /// cache filled with dead entries and refused every single-use exchange until restart.
    #[test]
    fn expired_entries_never_make_the_cache_full() {
        let c = cache(10, 100);
        let mut now = 1_000;
        for round in 0..1_000 {
            for k in 0..10 {
                assert_eq!(rec(&c, &format!("{round}-{k}"), now + 5, now), FRESH);
            }
            // Full of live entries: refused.
            assert_eq!(
                rec(&c, &format!("{round}-x"), now + 5, now),
                Err(StateError::Full { capacity: 10 })
            );
            now += 5; // all ten expire exactly now
        }
        assert!(c.len() <= 10, "{}", c.len());
    }

    /// Stops the jam for capacities under the old fixed sweep threshold (1,024): the
    /// cache keeps serving over many expiry cycles, one entry expiring per second.
    #[test]
    fn a_capacity_below_1024_keeps_working_over_many_expiry_cycles() {
        let c = cache(100, 100);
        for now in 0..20_000_i64 {
            assert_eq!(rec(&c, &now.to_string(), now + 100, now), FRESH, "at {now}");
        }
        assert!(c.len() <= 100, "{}", c.len());
    }

    /// Stops the other jam of issue 10: with more than half the capacity live at a
    /// sweep, the old threshold (twice the survivors) stayed above the capacity, so the
    /// expired rest was never swept again.
    #[test]
    fn more_than_half_live_at_a_sweep_still_frees_the_expired_rest() {
        let c = cache(2_000, 2_000);
        for k in 0..1_500 {
            rec(&c, &format!("long{k}"), 1_000_000, 100).unwrap();
        }
        let mut now = 100;
        for round in 0..200 {
            for k in 0..500 {
                assert_eq!(
                    rec(&c, &format!("short{round}-{k}"), now + 10, now),
                    FRESH,
                    "round {round}"
                );
            }
            now += 10;
        }
        // The long-lived ones are all still remembered.
        for k in 0..1_500 {
            assert_eq!(rec(&c, &format!("long{k}"), 1_000_000, now), REPLAYED);
        }
    }

    /// Attack: one issuer (or a compromised CI platform) mints tokens in bulk to fill the
    /// replay cache, so every other trust's single-use exchanges fail.
    #[test]
    fn one_trust_exhausting_its_share_does_not_stop_another() {
        let c = cache(10, 4);
        for k in 0..4 {
            assert_eq!(
                block(c.check_and_record("noisy", "a", &k.to_string(), 500, 0, 100)),
                FRESH
            );
        }
        assert_eq!(
            block(c.check_and_record("noisy", "a", "more", 500, 0, 100)),
            Err(StateError::TrustFull {
                trust: "noisy".into(),
                capacity: 4
            })
        );
        for k in 0..4 {
            assert_eq!(
                block(c.check_and_record("quiet", "b", &k.to_string(), 500, 0, 100)),
                FRESH
            );
        }
        // The total bound still holds over the shares.
        for k in 0..2 {
            assert_eq!(
                block(c.check_and_record("third", "c", &k.to_string(), 500, 0, 100)),
                FRESH
            );
        }
        assert_eq!(
            block(c.check_and_record("third", "c", "x", 500, 0, 100)),
            Err(StateError::Full { capacity: 10 })
        );
        // The noisy trust's share frees when its entries expire.
        assert_eq!(
            block(c.check_and_record("noisy", "a", "more", 900, 0, 500)),
            FRESH
        );
    }

    /// Attack: a signed token with a huge `jti` (a forger holding a key, or a hostile
    /// issuer) to make replay entries of arbitrary size.
    #[test]
    fn a_jti_over_the_cap_is_refused_and_not_recorded() {
        let c = cache(10, 10);
        let long = "x".repeat(MAX_JTI_BYTES + 1);
        assert_eq!(
            rec(&c, &long, 500, 100),
            Err(StateError::JtiTooLong {
                len: MAX_JTI_BYTES + 1
            })
        );
        assert!(c.is_empty());
        assert_eq!(
            rec(&c, &long, 500, 100),
            Err(StateError::JtiTooLong {
                len: MAX_JTI_BYTES + 1
            })
        );
        let longest = "x".repeat(MAX_JTI_BYTES);
        assert_eq!(rec(&c, &longest, 500, 100), FRESH);
        assert_eq!(rec(&c, &longest, 500, 100), REPLAYED);
    }

    #[test]
    fn a_release_lets_the_client_retry_with_the_same_token() {
        let c = cache(10, 10);
        assert_eq!(rec(&c, "j", 500, 100), FRESH);
        block(c.release("t", "i", "j")).unwrap();
        assert!(c.is_empty());
        assert_eq!(rec(&c, "j", 500, 101), FRESH);
        assert_eq!(rec(&c, "j", 500, 102), REPLAYED);
    }

    /// Attack: a release aimed at a record it did not make (another trust, another
    /// issuer, another `jti`) would let the owner's token be replayed.
    #[test]
    fn a_release_of_a_different_record_does_not_drop_a_live_one() {
        let c = cache(10, 10);
        assert_eq!(rec(&c, "j", 500, 100), FRESH);
        block(c.release("other-trust", "i", "j")).unwrap();
        block(c.release("t", "other-issuer", "j")).unwrap();
        block(c.release("t", "i", "other-jti")).unwrap();
        block(c.release("t", "i", &"j".repeat(MAX_JTI_BYTES + 1))).unwrap();
        assert_eq!(rec(&c, "j", 500, 101), REPLAYED);
        assert_eq!(c.len(), 1);
    }

    /// Stops a release of an expired (and swept) record from touching a later record of
    /// another pair or freeing a slot twice, which would let the cache hold more live
    /// entries than its capacity.
    #[test]
    fn a_release_of_an_expired_record_frees_nothing_twice() {
        let c = cache(2, 100);
        assert_eq!(rec(&c, "old", 150, 100), FRESH);
        // Expired at 150; sweeping it happens on the way.
        assert_eq!(rec(&c, "a", 500, 200), FRESH);
        assert_eq!(rec(&c, "b", 500, 200), FRESH);
        block(c.release("t", "i", "old")).unwrap();
        block(c.release("t", "i", "old")).unwrap();
        assert_eq!(
            rec(&c, "c", 500, 200),
            Err(StateError::Full { capacity: 2 })
        );
        assert_eq!(rec(&c, "a", 500, 200), REPLAYED);
        assert_eq!(rec(&c, "b", 500, 200), REPLAYED);
        // Releasing a live one twice frees one slot.
        block(c.release("t", "i", "a")).unwrap();
        block(c.release("t", "i", "a")).unwrap();
        assert_eq!(rec(&c, "c", 500, 200), FRESH);
        assert_eq!(
            rec(&c, "d", 500, 200),
            Err(StateError::Full { capacity: 2 })
        );
    }

    /// Stops a key recorded again (after a release, or after it expired) from being
    /// dropped early through the expiry reference of its first record.
    #[test]
    fn a_key_recorded_again_outlives_its_first_retain_time() {
        let c = cache(10_000, 10_000);
        assert_eq!(rec(&c, "j", 150, 100), FRESH);
        block(c.release("t", "i", "j")).unwrap();
        assert_eq!(rec(&c, "j", 400, 100), FRESH);
        // Many entries expire at 150, more per shard than one call sweeps, so some are
        // found expired on lookup and recorded again while their old expiry reference
        // is still queued.
        for k in 0..3_000 {
            rec(&c, &format!("k{k}"), 150, 100).unwrap();
        }
        for k in 0..3_000 {
            assert_eq!(rec(&c, &format!("k{k}"), 400, 200), FRESH);
        }
        // Past the first records' time: lots of calls sweep every shard.
        for k in 0..3_000 {
            rec(&c, &k.to_string(), 1_000, 300).unwrap();
        }
        assert_eq!(rec(&c, "j", 400, 399), REPLAYED);
        for k in 0..3_000 {
            assert_eq!(rec(&c, &format!("k{k}"), 400, 399), REPLAYED, "k{k}");
        }
    }

    /// Stops a token already past its retain-until time from taking room, or from
    /// shortening the retention of a live record of the same pair.
    #[test]
    fn a_retain_time_already_past_records_nothing() {
        let c = cache(1, 1);
        assert_eq!(rec(&c, "dead", 100, 100), FRESH);
        assert_eq!(rec(&c, "dead", 50, 100), FRESH);
        assert!(c.is_empty());
        assert_eq!(rec(&c, "j", 500, 100), FRESH);
        assert_eq!(rec(&c, "j", 90, 100), REPLAYED);
        assert_eq!(rec(&c, "j", 500, 499), REPLAYED);
    }

    /// Attack: two presentations of one token racing on two threads; exactly one wins.
    #[test]
    fn concurrent_presentations_of_one_token_are_accepted_once() {
        let c = cache(100_000, 100_000);
        let fresh = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for k in 0..2_000 {
                        if rec(&c, &k.to_string(), 500, 100) == FRESH {
                            fresh.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(fresh.into_inner(), 2_000);
        assert_eq!(c.len(), 2_000);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Record {
            trust: u8,
            iss: u8,
            jti: u8,
            ttl: i64,
        },
        Release {
            trust: u8,
            iss: u8,
            jti: u8,
        },
        Advance(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0..3_u8, 0..2_u8, 0..12_u8, -2..8_i64)
                .prop_map(|(trust, iss, jti, ttl)| Op::Record { trust, iss, jti, ttl }),
            1 => (0..3_u8, 0..2_u8, 0..12_u8)
                .prop_map(|(trust, iss, jti)| Op::Release { trust, iss, jti }),
            3 => (0..4_i64).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// Model check against a naive map: every verdict matches the model (so a live
        /// entry is never forgotten and an expired one never answers Replayed), and a
        /// refusal as full happens exactly when the model's live count is at the limit.
        #[test]
        fn a_live_entry_is_never_forgotten(
            capacity in 1..8_usize,
            per_trust in 1..6_usize,
            ops in proptest::collection::vec(op(), 1..300),
        ) {
            let c = cache(capacity, per_trust);
            // (iss, jti) -> (retain_until, trust)
            let mut model: HashMap<(u8, u8), (i64, u8)> = HashMap::new();
            let mut now = 1_000_i64;
            for op in ops {
                match op {
                    Op::Advance(d) => now += d,
                    Op::Release { trust, iss, jti } => {
                        block(c.release(&format!("t{trust}"), &format!("i{iss}"), &format!("j{jti}"))).unwrap();
                        if model.get(&(iss, jti)).is_some_and(|(_, t)| *t == trust) {
                            model.remove(&(iss, jti));
                        }
                    }
                    Op::Record { trust, iss, jti, ttl } => {
                        let retain_until = now + ttl;
                        let got = block(c.check_and_record(
                            &format!("t{trust}"), &format!("i{iss}"), &format!("j{jti}"),
                            retain_until, 0, now,
                        ));
                        let live = |m: &HashMap<(u8, u8), (i64, u8)>, t: Option<u8>| {
                            m.values().filter(|(u, tr)| *u > now && t.is_none_or(|t| t == *tr)).count()
                        };
                        let expected = if model.get(&(iss, jti)).is_some_and(|(u, _)| *u > now) {
                            REPLAYED
                        } else if retain_until <= now {
                            FRESH
                        } else if live(&model, Some(trust)) >= per_trust {
                            Err(StateError::TrustFull { trust: format!("t{trust}"), capacity: per_trust })
                        } else if live(&model, None) >= capacity {
                            Err(StateError::Full { capacity })
                        } else {
                            model.insert((iss, jti), (retain_until, trust));
                            FRESH
                        };
                        prop_assert_eq!(got, expected, "now {}", now);
                    }
                }
                let live = model.values().filter(|(u, _)| *u > now).count();
                prop_assert!(live <= c.len() && c.len() <= model.len(), "{} {} {}", live, c.len(), model.len());
            }
        }
    }
}
