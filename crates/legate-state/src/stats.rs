//! Error counters of the state backend, read by the server at scrape time
//! (`legate_state_backend_errors_total{op}`).
//!
//! A backend calls [`StateStats::record_error`] once per failed operation (after its own
//! retries, if any); the cost is one relaxed atomic add. The operation names are a fixed
//! list ([`StateOp`]), so the metric's label is bounded whatever the backend says.

use std::sync::atomic::{AtomicU64, Ordering};

/// One kind of state-backend operation, as a metric label.
///
/// The names (`as_str`), for dashboards and alerts:
///
/// | op                 | what failed                                                      |
/// |--------------------|------------------------------------------------------------------|
/// | `connect`          | (re)connecting to the backend                                    |
/// | `startup_check`    | a start-up check (for Redis: `maxmemory-policy noeviction`)      |
/// | `epoch`            | reading or writing the state epoch                               |
/// | `replay_record`    | recording an `(iss, jti)` (the exchange fails closed)            |
/// | `replay_release`   | giving a record back after a transient failure                   |
/// | `rate_limit`       | a rate-limit check                                               |
/// | `revocation_write` | storing or publishing a revocation                               |
/// | `revocation_sync`  | the periodic full read of revocations, or the subscription       |
/// | `ledger`           | recording an issued credential or reading the inventory          |
/// | `other`            | anything else                                                    |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateOp {
    /// (Re)connecting to the backend.
    Connect,
    /// A start-up check of the backend's configuration.
    StartupCheck,
    /// Reading or writing the state epoch.
    Epoch,
    /// Recording an `(iss, jti)`.
    ReplayRecord,
    /// Releasing an `(iss, jti)` record.
    ReplayRelease,
    /// A rate-limit check.
    RateLimit,
    /// Storing or publishing a revocation.
    RevocationWrite,
    /// Reading revocations (the periodic full read, the subscription).
    RevocationSync,
    /// The credential ledger and inventory.
    Ledger,
    /// Anything else.
    Other,
}

impl StateOp {
    /// Every operation, in label order.
    pub const ALL: [StateOp; 10] = [
        StateOp::Connect,
        StateOp::StartupCheck,
        StateOp::Epoch,
        StateOp::ReplayRecord,
        StateOp::ReplayRelease,
        StateOp::RateLimit,
        StateOp::RevocationWrite,
        StateOp::RevocationSync,
        StateOp::Ledger,
        StateOp::Other,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            StateOp::Connect => "connect",
            StateOp::StartupCheck => "startup_check",
            StateOp::Epoch => "epoch",
            StateOp::ReplayRecord => "replay_record",
            StateOp::ReplayRelease => "replay_release",
            StateOp::RateLimit => "rate_limit",
            StateOp::RevocationWrite => "revocation_write",
            StateOp::RevocationSync => "revocation_sync",
            StateOp::Ledger => "ledger",
            StateOp::Other => "other",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// Errors of the state backend since start, per [`StateOp`]. Share it with `Arc`.
#[derive(Debug, Default)]
pub struct StateStats {
    errors: [AtomicU64; StateOp::ALL.len()],
}

impl StateStats {
    /// All counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one failed `op`.
    pub fn record_error(&self, op: StateOp) {
        if let Some(counter) = self.errors.get(op.index()) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Failed `op`s since start.
    pub fn errors(&self, op: StateOp) -> u64 {
        self.errors
            .get(op.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Every operation with its error count, in [`StateOp::ALL`] order.
    pub fn snapshot(&self) -> impl Iterator<Item = (StateOp, u64)> + '_ {
        StateOp::ALL.into_iter().map(|op| (op, self.errors(op)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_counted_per_operation() {
        let stats = StateStats::new();
        stats.record_error(StateOp::ReplayRecord);
        stats.record_error(StateOp::ReplayRecord);
        stats.record_error(StateOp::Other);
        assert_eq!(stats.errors(StateOp::ReplayRecord), 2);
        assert_eq!(stats.errors(StateOp::Other), 1);
        assert_eq!(stats.errors(StateOp::Connect), 0);
        let all: Vec<(&str, u64)> = stats.snapshot().map(|(op, n)| (op.as_str(), n)).collect();
        assert_eq!(all.len(), StateOp::ALL.len());
        assert!(all.contains(&("replay_record", 2)));
    }

    #[test]
    fn every_operation_has_its_own_slot_and_name() {
        for (i, op) in StateOp::ALL.into_iter().enumerate() {
            assert_eq!(op.index(), i, "{op:?}");
        }
        let names: std::collections::HashSet<&str> =
            StateOp::ALL.iter().map(|op| op.as_str()).collect();
        assert_eq!(names.len(), StateOp::ALL.len());
    }
}
