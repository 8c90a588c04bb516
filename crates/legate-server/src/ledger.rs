//! The credential ledger's writer: the exchange hands each issued credential's
//! [`LedgerEntry`] to a bounded queue and moves on; one thread (`legate-ledger`) drains
//! the queue into the [`Ledger`] (in memory, or a shared store).
//!
//! Why a queue: the ledger may be a network store, and the request path never waits for
//! one. Handing off is a `try_send`: it never blocks and never fails the exchange.
//!
//! At the limit: when the queue holds `[ledger] queue_capacity` entries (the store is
//! slow or down), a new entry is dropped and counted ([`LedgerStats::dropped_queue_full`],
//! on `/status`); the first drop and every power-of-two drop after it is logged at
//! `warn`, so a long outage does not flood the log. A store that refuses an entry
//! ([`legate_state::LedgerError`]) is counted in [`LedgerStats::record_errors`] and logged
//! likewise. The audit event of the exchange is written regardless: the audit log, not
//! the ledger, is the record that must not lose anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use legate_state::{Ledger, LedgerEntry};
use tokio::sync::mpsc;

/// The ledger and the queue in front of it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LedgerLog {
    tx: mpsc::Sender<LedgerEntry>,
    ledger: Arc<dyn Ledger>,
    capacity: usize,
    stats: Arc<LedgerStats>,
}

/// The writer's counters, since start.
#[derive(Debug, Default)]
pub struct LedgerStats {
    /// Entries the store accepted.
    pub recorded: AtomicU64,
    /// Entries dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Entries the store refused or could not take.
    pub record_errors: AtomicU64,
}

impl LedgerLog {
    /// Starts the writer thread draining a queue of `capacity` entries into `ledger`. The
    /// thread ends when every handle is dropped and the queue is empty.
    ///
    /// # Errors
    ///
    /// The thread or its runtime could not be started.
    pub fn start(ledger: Arc<dyn Ledger>, capacity: usize) -> std::io::Result<Self> {
        let capacity = capacity.max(1);
        let (tx, mut rx) = mpsc::channel::<LedgerEntry>(capacity);
        let stats = Arc::new(LedgerStats::default());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let writer_stats = stats.clone();
        let writer_ledger = ledger.clone();
        std::thread::Builder::new()
            .name("legate-ledger".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    // One batch per wake: whatever is queued, up to MAX_BATCH, in one
                    // call (one round trip to a shared backend).
                    let mut batch = Vec::with_capacity(legate_state::ledger::MAX_BATCH);
                    while rx.recv_many(&mut batch, legate_state::ledger::MAX_BATCH).await > 0 {
                        let n = u64::try_from(batch.len()).unwrap_or(u64::MAX);
                        match writer_ledger.record_batch(std::mem::take(&mut batch)).await {
                            Ok(()) => {
                                writer_stats.recorded.fetch_add(n, Ordering::Release);
                            }
                            Err(e) => {
                                let before = writer_stats.record_errors.fetch_add(n, Ordering::Relaxed);
                                if (before + n).is_power_of_two() || before == 0 {
                                    tracing::warn!(error = %e, errors = before + n, "ledger entries not recorded");
                                }
                            }
                        }
                    }
                });
            })?;
        Ok(Self {
            tx,
            ledger,
            capacity,
            stats,
        })
    }

    /// Hands `entry` to the writer without waiting; a full queue drops it (counted).
    pub fn record(&self, entry: LedgerEntry) {
        if self.tx.try_send(entry).is_err() {
            let n = self
                .stats
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
            if (n + 1).is_power_of_two() {
                tracing::warn!(
                    dropped = n + 1,
                    capacity = self.capacity,
                    "ledger queue full: entry dropped (the exchange and its audit event are unaffected)"
                );
            }
        }
    }

    /// The ledger, for queries.
    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.ledger
    }

    /// The writer's counters.
    pub fn stats(&self) -> &LedgerStats {
        &self.stats
    }

    /// Entries waiting for the writer.
    pub fn depth(&self) -> usize {
        self.capacity.saturating_sub(self.tx.capacity())
    }

    /// The queue's capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The counters as `/status` shows them.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "queue_depth": self.depth(),
            "queue_capacity": self.capacity,
            "recorded": self.stats.recorded.load(Ordering::Relaxed),
            "dropped_queue_full": self.stats.dropped_queue_full.load(Ordering::Relaxed),
            "record_errors": self.stats.record_errors.load(Ordering::Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::time::Duration;

    use legate_state::{
        CredentialKind, LedgerError, LedgerFilter, LedgerLimits, MemoryLedger,
        ledger::{Inventory, LedgerFuture},
    };

    use super::*;

    fn entry(i: i64) -> LedgerEntry {
        LedgerEntry {
            request_id: format!("r{i}"),
            trust: "ci".into(),
            issuer: "https://ci.example".into(),
            subject: "s".into(),
            target: "api".into(),
            kind: CredentialKind::Jwt,
            issued_at: 1_000 + i,
            expires_at: 2_000,
            credential_id: None,
            cloud_request_id: None,
            served_from_cache: false,
        }
    }

    /// A store that never answers (a hung network store).
    #[derive(Debug)]
    struct Stalled;

    impl Ledger for Stalled {
        fn record(&self, _: LedgerEntry) -> LedgerFuture<'_, ()> {
            Box::pin(std::future::pending())
        }
        fn entries<'a>(
            &'a self,
            _: &'a LedgerFilter,
            _: usize,
            _: i64,
        ) -> LedgerFuture<'a, Vec<LedgerEntry>> {
            Box::pin(std::future::ready(Err(LedgerError::Unavailable(
                "x".into(),
            ))))
        }
        fn inventory<'a>(
            &'a self,
            _: &'a LedgerFilter,
            _: usize,
            _: i64,
        ) -> LedgerFuture<'a, Inventory> {
            Box::pin(std::future::ready(Err(LedgerError::Unavailable(
                "x".into(),
            ))))
        }
    }

    #[tokio::test]
    async fn entries_reach_the_ledger() {
        let memory = Arc::new(MemoryLedger::new(LedgerLimits::default()));
        let log = LedgerLog::start(memory.clone(), 8).unwrap();
        for i in 0..3 {
            log.record(entry(i));
        }
        for _ in 0..1_000 {
            if memory.len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(memory.len(), 3);
        assert_eq!(log.stats().recorded.load(Ordering::Acquire), 3);
    }

    /// Stops a hung ledger store from stalling or failing exchanges: the hand-off never
    /// waits; past the queue's capacity entries are dropped and counted.
    #[test]
    fn a_stalled_store_drops_and_counts_never_blocks() {
        let log = LedgerLog::start(Arc::new(Stalled), 4).unwrap();
        for i in 0..100 {
            log.record(entry(i));
        }
        let dropped = log.stats().dropped_queue_full.load(Ordering::Relaxed);
        // The writer holds one entry (stuck in the store) and the queue four.
        assert!((95..=96).contains(&dropped), "{dropped}");
        assert_eq!(log.status()["dropped_queue_full"], dropped);
        assert!(log.depth() <= log.capacity());
    }
}
