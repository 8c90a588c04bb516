//! The credential ledger in Redis, shared by a fleet: [`RedisLedger`].
//!
//! Entries go to one capped stream, `{prefix}ledger`, as JSON (one field, `e`): `XADD`
//! with `MAXLEN ~ max_entries`, pipelined with `XTRIM MINID ~ <retention cutoff>` — one
//! round trip per batch of the entries queued at the server's ledger writer (up to
//! [`MAX_BATCH`](crate::ledger::MAX_BATCH)), off the request path.
//!
//! The inventory is derived at query time from the entries retained (at most
//! `max_entries`, none older than the retention), read newest first in pages and folded
//! into a [`MemoryLedger`] with the same bounds. So in a fleet the inventory counts what
//! the ledger still holds — the memory backend keeps counting past `max_entries` — and
//! an inventory query costs one read of the retained stream: an admin query, bounded by
//! `max_entries`, never on the exchange path.

use std::fmt;
use std::sync::Arc;

use redis::Value;

use crate::RedisBackend;
use crate::ledger::{
    Inventory, Ledger, LedgerEntry, LedgerError, LedgerFilter, LedgerFuture, LedgerLimits,
    MAX_QUERY_LIMIT, MemoryLedger, Selector,
};

/// Entries read per `XREVRANGE` page.
const PAGE: usize = 500;

/// The ledger in a Redis stream.
pub struct RedisLedger {
    backend: Arc<RedisBackend>,
    limits: LedgerLimits,
    stream: String,
}

impl fmt::Debug for RedisLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLedger")
            .field("stream", &self.stream)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl RedisLedger {
    /// A ledger in `backend`'s stream `{prefix}ledger`, within `limits`.
    pub fn new(backend: Arc<RedisBackend>, limits: LedgerLimits) -> Self {
        let stream = backend.key("ledger");
        Self {
            backend,
            limits: LedgerLimits {
                max_entries: limits.max_entries.max(1),
                max_inventory_keys: limits.max_inventory_keys.max(1),
                ..limits
            },
            stream,
        }
    }

    fn cutoff(&self, now: i64) -> i64 {
        now.saturating_sub(i64::try_from(self.limits.retention_secs).unwrap_or(i64::MAX))
    }

    async fn record_entries(&self, entries: Vec<LedgerEntry>) -> Result<(), LedgerError> {
        let Some(newest) = entries.iter().map(|e| e.issued_at).max() else {
            return Ok(());
        };
        let mut pipe = redis::pipe();
        for entry in entries {
            let json = serde_json::to_string(&entry.bounded())
                .map_err(|e| LedgerError::Unavailable(format!("entry does not encode: {e}")))?;
            pipe.cmd("XADD")
                .arg(&self.stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.limits.max_entries)
                .arg("*")
                .arg("e")
                .arg(json)
                .ignore();
        }
        let min_id = self.cutoff(newest).max(0).saturating_mul(1_000);
        pipe.cmd("XTRIM")
            .arg(&self.stream)
            .arg("MINID")
            .arg("~")
            .arg(min_id)
            .ignore();
        self.backend
            .pipeline(&pipe)
            .await
            .map(|_| ())
            .map_err(|reason| {
                self.backend.record_error(crate::StateOp::Ledger);
                LedgerError::Unavailable(reason)
            })
    }

    /// Retained entries, newest first, while `keep` wants more (it gets each entry no
    /// older than the retention and answers whether to go on). Reads at most
    /// `max_entries`.
    async fn scan(
        &self,
        now: i64,
        mut keep: impl FnMut(LedgerEntry) -> bool,
    ) -> Result<(), LedgerError> {
        let cutoff = self.cutoff(now);
        let mut end = "+".to_owned();
        let mut read = 0usize;
        while read < self.limits.max_entries {
            let mut cmd = redis::cmd("XREVRANGE");
            cmd.arg(&self.stream)
                .arg(&end)
                .arg("-")
                .arg("COUNT")
                .arg(PAGE.min(self.limits.max_entries - read));
            let page = self.backend.command(&cmd).await.map_err(|reason| {
                self.backend.record_error(crate::StateOp::Ledger);
                LedgerError::Unavailable(reason)
            })?;
            let Value::Array(items) = page else {
                return Err(LedgerError::Unavailable(
                    "XREVRANGE answered with no array".to_owned(),
                ));
            };
            if items.is_empty() {
                return Ok(());
            }
            let mut last_id = None;
            for item in items {
                read += 1;
                let Some((id, entry)) = parse_item(item) else {
                    continue; // not an entry of ours: skipped, never trusted
                };
                last_id = Some(id);
                if entry.issued_at < cutoff {
                    return Ok(()); // newest first: everything after is older
                }
                if !keep(entry) {
                    return Ok(());
                }
            }
            let Some(id) = last_id else {
                return Ok(());
            };
            // The next page ends just before the last id read (exclusive range).
            end = format!("({id}");
        }
        Ok(())
    }
}

/// One stream item: `[id, [field, value, ...]]` with field `e` holding the JSON entry.
fn parse_item(item: Value) -> Option<(String, LedgerEntry)> {
    let Value::Array(mut parts) = item else {
        return None;
    };
    if parts.len() != 2 {
        return None;
    }
    let fields = parts.pop()?;
    let id = match parts.pop()? {
        Value::BulkString(b) => String::from_utf8(b).ok()?,
        Value::SimpleString(s) => s,
        _ => return None,
    };
    let Value::Array(fields) = fields else {
        return None;
    };
    let mut it = fields.into_iter();
    while let (Some(name), Some(value)) = (it.next(), it.next()) {
        if matches!(&name, Value::BulkString(b) if b == b"e")
            && let Value::BulkString(json) = value
        {
            return serde_json::from_slice(&json).ok().map(|e| (id, e));
        }
    }
    None
}

impl Ledger for RedisLedger {
    fn record(&self, entry: LedgerEntry) -> LedgerFuture<'_, ()> {
        Box::pin(self.record_entries(vec![entry]))
    }

    fn record_batch(&self, entries: Vec<LedgerEntry>) -> LedgerFuture<'_, ()> {
        Box::pin(self.record_entries(entries))
    }

    fn entries<'a>(
        &'a self,
        filter: &'a LedgerFilter,
        limit: usize,
        now: i64,
    ) -> LedgerFuture<'a, Vec<LedgerEntry>> {
        Box::pin(async move {
            let limit = limit.min(MAX_QUERY_LIMIT);
            let select = Selector::new(filter);
            let mut out = Vec::new();
            if limit == 0 {
                return Ok(out);
            }
            self.scan(now, |entry| {
                if select.matches(&entry) {
                    out.push(entry);
                }
                out.len() < limit
            })
            .await?;
            Ok(out)
        })
    }

    fn inventory<'a>(
        &'a self,
        filter: &'a LedgerFilter,
        limit: usize,
        now: i64,
    ) -> LedgerFuture<'a, Inventory> {
        Box::pin(async move {
            let mut newest_first = Vec::new();
            self.scan(now, |entry| {
                newest_first.push(entry);
                true
            })
            .await?;
            let folded = MemoryLedger::new(self.limits);
            for entry in newest_first.into_iter().rev() {
                folded.record_now(entry);
            }
            Ok(folded.inventory_now(filter, limit, now))
        })
    }
}
