//! [`RedisRevocationStore`]: the fleet's revocations in Redis.
//!
//! Keys (under the backend's `{prefix}`): `rev`, a hash of revocation id → its JSON;
//! `rev:exp`, a sorted set of the ids that expire (`jti` revocations), scored by
//! `expires_at`. Channel: `{prefix}rev`, on which every add publishes the revocation's
//! JSON.
//!
//! - `add` is one script: sweep what expired, refuse at `max_entries` live revocations,
//!   store, publish — atomic, so two replicas cannot both take the last slot.
//! - `load_all` is one `HGETALL`; entries that do not parse or break the rules are left
//!   out (logged), expired ones too.
//! - `subscribe` hands out receivers fed by one task that holds a pub/sub connection and
//!   reconnects by itself; after every (re)subscription it sends
//!   [`RevocationNotice::Resync`], since messages published while it was away are lost
//!   (pub/sub delivers at most once). The server's periodic full read covers the rest.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use redis::Script;
use tokio::sync::broadcast;

use crate::StateOp;
use crate::redis_backend::RedisBackend;
use crate::revocation::{
    NOTICE_BUFFER, Revocation, RevocationFuture, RevocationNotice, RevocationStore,
    RevocationStoreError,
};

/// Sweeps expired revocations, refuses at the bound, stores and publishes.
/// KEYS: hash, expiry index. ARGV: id, json, expires_at (or ""), now, max, channel.
/// Returns 1 stored (or already held), 0 full.
const ADD_SCRIPT: &str = r"
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
for _, id in ipairs(expired) do redis.call('HDEL', KEYS[1], id) end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4]) end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1]) end
redis.call('PUBLISH', ARGV[6], ARGV[2])
return 1
";

/// How long the subscriber waits before it reconnects.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Revocations shared by every replica on one Redis.
pub struct RedisRevocationStore {
    backend: Arc<RedisBackend>,
    max_entries: usize,
    add: Script,
    notices: broadcast::Sender<RevocationNotice>,
    /// `None` when started outside a Tokio runtime: then periodic reads only.
    subscriber: Option<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for RedisRevocationStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRevocationStore")
            .field("backend", &self.backend)
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisRevocationStore {
    fn drop(&mut self) {
        if let Some(task) = &self.subscriber {
            task.abort();
        }
    }
}

impl RedisRevocationStore {
    /// A store of at most `max_entries` live revocations on `backend`; starts the
    /// subscription task on the current Tokio runtime (outside one, subscribers hear
    /// nothing and rely on the periodic full reads).
    pub fn start(backend: Arc<RedisBackend>, max_entries: usize) -> Self {
        let (notices, _) = broadcast::channel(NOTICE_BUFFER);
        let subscriber = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            runtime.spawn(subscribe_loop(
                backend.client().clone(),
                backend.key("rev"),
                backend.command_timeout(),
                notices.clone(),
            ))
        });
        Self {
            backend,
            max_entries: max_entries.max(1),
            add: Script::new(ADD_SCRIPT),
            notices,
            subscriber,
        }
    }

    async fn store(&self, revocation: Revocation, now: i64) -> Result<(), RevocationStoreError> {
        let json = serde_json::to_string(&revocation)
            .map_err(|e| RevocationStoreError::Unavailable(e.to_string()))?;
        let mut invocation = self.add.key(self.backend.key("rev"));
        invocation
            .key(self.backend.key("rev:exp"))
            .arg(&revocation.id)
            .arg(&json)
            .arg(
                revocation
                    .expires_at
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
            )
            .arg(now)
            .arg(self.max_entries)
            .arg(self.backend.key("rev"));
        let mut conn = self.backend.connection();
        let stored: i64 = self
            .backend
            .bounded(invocation.invoke_async(&mut conn))
            .await
            .map_err(|reason| {
                self.backend.record_error(StateOp::RevocationWrite);
                RevocationStoreError::Unavailable(reason)
            })?;
        if stored == 1 {
            Ok(())
        } else {
            Err(RevocationStoreError::Full {
                max_entries: self.max_entries,
            })
        }
    }

    async fn read(&self, now: i64) -> Result<Vec<Revocation>, RevocationStoreError> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.backend.key("rev"));
        let mut conn = self.backend.connection();
        let all: Vec<(String, String)> = self
            .backend
            .bounded(cmd.query_async(&mut conn))
            .await
            .map_err(|reason| {
                self.backend.record_error(StateOp::RevocationSync);
                RevocationStoreError::Unavailable(reason)
            })?;
        Ok(all
            .into_iter()
            .filter_map(|(id, json)| match parse(&json) {
                Some(r) if r.id == id => Some(r),
                _ => {
                    tracing::warn!(revocation = %legate_core::text::escape_untrusted(&id), "an unreadable revocation in redis is ignored");
                    None
                }
            })
            .filter(|r| r.is_live(now))
            .collect())
    }
}

/// A revocation from its JSON, when it parses and keeps the rules.
fn parse(json: &str) -> Option<Revocation> {
    let r: Revocation = serde_json::from_str(json).ok()?;
    r.validate().ok()?;
    Some(r)
}

impl RevocationStore for RedisRevocationStore {
    fn add(&self, revocation: Revocation, now: i64) -> RevocationFuture<'_, ()> {
        Box::pin(self.store(revocation, now))
    }

    fn load_all(&self, now: i64) -> RevocationFuture<'_, Vec<Revocation>> {
        Box::pin(self.read(now))
    }

    fn subscribe(&self) -> broadcast::Receiver<RevocationNotice> {
        self.notices.subscribe()
    }
}

/// Holds a subscription to `channel`, reconnecting forever; forwards each message as a
/// notice, and a [`RevocationNotice::Resync`] after each (re)subscription.
async fn subscribe_loop(
    client: redis::Client,
    channel: String,
    timeout: Duration,
    notices: broadcast::Sender<RevocationNotice>,
) {
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await.ok()?;
            pubsub.subscribe(&channel).await.ok()?;
            Some(pubsub)
        };
        if let Ok(Some(pubsub)) =
            tokio::time::timeout(timeout.max(RECONNECT_DELAY), subscribed).await
        {
            let _ = notices.send(RevocationNotice::Resync);
            let mut stream = pubsub.into_on_message();
            while let Some(msg) =
                std::future::poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await
            {
                let notice = msg
                    .get_payload::<String>()
                    .ok()
                    .and_then(|json| parse(&json))
                    .map_or(RevocationNotice::Resync, RevocationNotice::Added);
                let _ = notices.send(notice);
            }
            tracing::warn!("the revocation subscription to redis was lost; reconnecting");
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}
