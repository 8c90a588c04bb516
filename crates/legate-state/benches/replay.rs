//! The replay cache at 1M live entries, the shipped implementation (`new`) against the
//! one it replaced (`legacy`, a private copy below), in the same run:
//!
//! 1. per-call cost (criterion): recording a fresh `(iss, jti)` while entries expire
//!    continuously, and answering a replay;
//! 2. pauses (a custom loop, printed before the criterion rows): the latency of every
//!    single call while half of the 1M entries expire at once, with headroom (capacity
//!    2M) and at capacity (capacity 1M, the jam of issue 10), also with the time the
//!    thread was preempted removed (Linux `schedstat`), so a busy machine does not pass
//!    for a pause of the cache.
//!
//! `cargo bench -p legate-state --bench replay` (`-- pauses` for the pauses only; any
//! other filter skips them). Without `--bench` (as a test) the sizes shrink so the file
//! still runs quickly. Figures and method: `docs/performance.md`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use legate_state::{ReplayCache, ReplayLimits, ReplayVerdict};

const ISSUER: &str = "https://token.actions.githubusercontent.com";
const TRUST: &str = "github";
/// The virtual clock at the start (unix seconds).
const T0: i64 = 1_800_000_000;
/// A retain-until time that never comes during the run.
const FAR: i64 = T0 + 1_000_000;

/// The replay cache before issue 10 (commit 00103a6), kept here ONLY as the baseline of
/// this benchmark: one mutex over one map, expired entries swept by a full `retain` pass
/// when the map grows past a threshold (twice the survivors of the last sweep, at least
/// 1,024). NOT the shipped code.
mod legacy {
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[derive(Debug, PartialEq, Eq)]
    pub enum Verdict {
        Fresh,
        Replayed,
    }

    #[derive(Debug, PartialEq, Eq)]
    pub struct Full;

    #[derive(Debug)]
    pub struct Cache {
        capacity: usize,
        inner: Mutex<Inner>,
    }

    #[derive(Debug)]
    struct Inner {
        entries: HashMap<(String, String), i64>,
        sweep_at: usize,
    }

    impl Cache {
        pub fn new(capacity: usize) -> Self {
            Self {
                capacity: capacity.max(1),
                inner: Mutex::new(Inner {
                    entries: HashMap::new(),
                    sweep_at: 1024,
                }),
            }
        }

        pub fn check_and_record(
            &self,
            issuer: &str,
            jti: &str,
            retain_until: i64,
            now: i64,
        ) -> Result<Verdict, Full> {
            let mut inner = self
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let key = (issuer.to_owned(), jti.to_owned());
            if let Some(until) = inner.entries.get(&key)
                && *until > now
            {
                return Ok(Verdict::Replayed);
            }
            if inner.entries.len() >= inner.sweep_at {
                inner.entries.retain(|_, until| *until > now);
                inner.sweep_at = (inner.entries.len() * 2).max(1024);
            }
            if inner.entries.len() >= self.capacity {
                return Err(Full);
            }
            inner.entries.insert(key, retain_until);
            Ok(Verdict::Fresh)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Fresh,
    Replayed,
    Refused,
}

/// Either implementation, behind one interface.
trait Replay {
    fn record(&self, jti: &str, retain_until: i64, now: i64) -> Outcome;
}

impl Replay for ReplayCache {
    fn record(&self, jti: &str, retain_until: i64, now: i64) -> Outcome {
        match block(self.check_and_record(TRUST, ISSUER, jti, retain_until, 0, now)) {
            Ok(ReplayVerdict::Fresh) => Outcome::Fresh,
            Ok(ReplayVerdict::Replayed) => Outcome::Replayed,
            Ok(ReplayVerdict::BeforeEpoch { .. }) => Outcome::Refused,
            Err(_) => Outcome::Refused,
        }
    }
}

impl Replay for legacy::Cache {
    fn record(&self, jti: &str, retain_until: i64, now: i64) -> Outcome {
        match self.check_and_record(ISSUER, jti, retain_until, now) {
            Ok(legacy::Verdict::Fresh) => Outcome::Fresh,
            Ok(legacy::Verdict::Replayed) => Outcome::Replayed,
            Err(legacy::Full) => Outcome::Refused,
        }
    }
}

/// Polls the memory backend's future to completion (it never waits).
fn block<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn new_cache(capacity: usize) -> ReplayCache {
    ReplayCache::memory(ReplayLimits {
        capacity,
        per_trust_capacity: capacity,
    })
}

/// A UUID-sized pseudo-random `jti` (33 bytes), distinct for each `n`.
fn jti(n: u64) -> String {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    format!("{:016x}-{:016x}", mix(n), n)
}

fn jtis(from: u64, count: usize) -> Vec<String> {
    (from..).take(count).map(jti).collect()
}

#[expect(
    clippy::disallowed_methods,
    reason = "a benchmark measures wall-clock time"
)]
fn clock() -> Instant {
    Instant::now()
}

/// Sizes: 1M live entries under `cargo bench`, small ones when run as a test.
struct Sizes {
    live: usize,
}

impl Sizes {
    fn from_args() -> Self {
        let bench = std::env::args().any(|a| a == "--bench");
        Self {
            live: if bench { 1_000_000 } else { 20_000 },
        }
    }
}

/// Each pause scenario runs this many times, alternating the implementations: a run's
/// maximum may be a preemption by another process rather than the cache's own work, and
/// only the cache's own work repeats from run to run.
const RUNS: usize = 3;

/// Calls timed between two readings of the thread's run-queue wait.
const BATCH: usize = 256;

/// Latencies of single calls, in nanoseconds, sorted.
struct Pauses {
    ns: Vec<u64>,
    /// Each call's latency minus the time the thread waited for a CPU (preempted by
    /// another process) during its batch of [`BATCH`] calls: what remains is the call's
    /// own work (exact when the batch was not preempted, a lower bound otherwise).
    own: Vec<u64>,
    refused: usize,
}

impl Pauses {
    fn percentile(&self, p: f64) -> u64 {
        // Sorted; index clamped to the last element.
        let i = ((self.ns.len() as f64 - 1.0) * p).round() as usize;
        self.ns.get(i).copied().unwrap_or_default()
    }

    fn row(&self, name: &str) {
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {:.0} ms | {} |",
            fmt_ns(self.percentile(0.5)),
            fmt_ns(self.percentile(0.99)),
            fmt_ns(self.percentile(0.999)),
            fmt_ns(self.ns.last().copied().unwrap_or_default()),
            fmt_ns(self.own.last().copied().unwrap_or_default()),
            self.own.iter().filter(|ns| **ns >= 1_000_000).count(),
            self.ns.iter().sum::<u64>() as f64 / 1e6,
            self.refused,
        );
    }

    fn header() {
        println!(
            "| implementation | p50 | p99 | p99.9 | max | max, run-queue wait removed | calls ≥ 1 ms, wait removed | time in calls | refused |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
    }
}

fn fmt_ns(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else if ns >= 1_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{ns} ns")
    }
}

/// Fills `cache` with `base.len()` entries at T0: the first half retained until
/// `T0 + 60`, the rest until FAR. Then, at `T0 + 60` (the first half has just expired),
/// records each of `fresh` until FAR, timing every call.
fn mass_expiry(cache: &dyn Replay, base: &[String], fresh: &[String]) -> Pauses {
    let half = base.len() / 2;
    for (k, j) in base.iter().enumerate() {
        let until = if k < half { T0 + 60 } else { FAR };
        if cache.record(j, until, T0) != Outcome::Fresh {
            println!("(fill refused at {k})");
            break;
        }
    }
    let now = T0 + 60;
    let mut ns = Vec::with_capacity(fresh.len());
    let mut own = Vec::with_capacity(fresh.len());
    let mut refused = 0;
    for batch in fresh.chunks(BATCH) {
        let waited = waited_ns();
        let first = ns.len();
        for j in batch {
            let t = clock();
            let outcome = black_box(cache.record(black_box(j), FAR, now));
            ns.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
            if outcome != Outcome::Fresh {
                refused += 1;
            }
        }
        let wait = waited_ns().saturating_sub(waited);
        own.extend(ns.iter().skip(first).map(|n| n.saturating_sub(wait)));
    }
    ns.sort_unstable();
    own.sort_unstable();
    Pauses { ns, own, refused }
}

/// How long this thread has waited on a run queue (Linux `schedstat`, nanoseconds); 0
/// where that is not available.
fn waited_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn pauses(sizes: &Sizes) {
    let live = sizes.live;
    let base = jtis(0, live);
    let fresh = jtis(1 << 40, live);
    let timer = {
        let mut ns: Vec<u64> = (0..100_000)
            .map(|_| u64::try_from(clock().elapsed().as_nanos()).unwrap_or(u64::MAX))
            .collect();
        ns.sort_unstable();
        ns.get(ns.len() / 2).copied().unwrap_or_default()
    };
    println!("\nReplay cache pauses: {live} entries at T0, half expire at T0+60; then, at T0+60,");
    println!("fresh records one by one, each timed (timer overhead, median: {timer} ns).\n");

    println!("A. Headroom: capacity {}, {live} fresh records", 2 * live);
    Pauses::header();
    for run in 1..=RUNS {
        mass_expiry(&legacy::Cache::new(2 * live), &base, &fresh)
            .row(&format!("legacy, run {run}"));
        mass_expiry(&new_cache(2 * live), &base, &fresh).row(&format!("new, run {run}"));
    }

    let half = fresh.get(..live / 2).unwrap_or_default();
    println!(
        "\nB. At capacity: capacity {live}, {} fresh records (exactly the expired count)",
        half.len()
    );
    Pauses::header();
    for run in 1..=RUNS {
        mass_expiry(&legacy::Cache::new(live), &base, half).row(&format!("legacy, run {run}"));
        mass_expiry(&new_cache(live), &base, half).row(&format!("new, run {run}"));
    }
    println!();
}

/// Per-call cost with `live` entries held: answering a replay of one of them, and
/// recording a fresh `jti` while entries expire continuously (fresh entries are retained
/// one virtual second; the clock ticks every quarter of the live count, so a steady
/// population of short-lived entries expires while the long-lived ones stay).
fn per_call(c: &mut Criterion, sizes: &Sizes) {
    let live = sizes.live;
    let base = jtis(0, live);
    let fresh = jtis(1 << 40, live);
    let tick = (live / 4).max(1);
    let mut group = c.benchmark_group("replay_1M");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));

    let caches: [(&str, Box<dyn Replay>); 2] = [
        ("legacy", Box::new(legacy::Cache::new(4 * live))),
        ("new", Box::new(new_cache(4 * live))),
    ];
    for (name, cache) in caches {
        for j in &base {
            cache.record(j, FAR, T0);
        }
        let mut unexpected = 0_usize;
        let mut k = 0_usize;
        group.bench_function(format!("{name}/check replay"), |b| {
            b.iter(|| {
                k = (k + 1) % live;
                let j = base.get(k).map_or("", String::as_str);
                if cache.record(black_box(j), FAR, T0) != Outcome::Replayed {
                    unexpected += 1;
                }
            });
        });
        let mut now = T0;
        let mut n = 0_usize;
        group.bench_function(format!("{name}/record fresh"), |b| {
            b.iter(|| {
                n += 1;
                if n.is_multiple_of(tick) {
                    now += 1;
                }
                let j = fresh.get(n % live).map_or("", String::as_str);
                if cache.record(black_box(j), now + 1, now) != Outcome::Fresh {
                    unexpected += 1;
                }
            });
        });
        if unexpected > 0 {
            println!("{name}: {unexpected} unexpected verdicts");
        }
    }
    group.finish();
}

fn main() {
    let sizes = Sizes::from_args();
    // A name filter (criterion's positional argument) skips the pause runs unless it
    // names them: `cargo bench -p legate-state --bench replay -- pauses`.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if filters.is_empty() || filters.iter().any(|f| f.contains("pauses")) {
        pauses(&sizes);
    }
    let mut c = Criterion::default().configure_from_args();
    per_call(&mut c, &sizes);
    c.final_summary();
}
