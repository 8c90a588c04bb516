//! The Redis backend: the state a fleet of Legate replicas shares.
//!
//! One [`RedisBackend`] per process holds a small pool of multiplexed connections
//! ([`redis::aio::ConnectionManager`], which reconnects by itself) and the Lua scripts
//! that make each state operation one atomic round trip:
//!
//! - **replay** ([`RedisBackend::check_and_record`]): checks the state epoch, looks the
//!   `(iss, jti)` up, bounds the trust's share and records it with `EXAT` = its
//!   retain-until time, all in one script;
//! - **release**: drops a record only if it was made for the same trust;
//! - **GCRA** ([`RedisRateLimiter`]): the same algorithm as the in-memory limiter, the
//!   theoretical arrival time stored with a TTL that ends when it carries no state.
//!
//! # The state epoch: a Redis that comes back empty
//!
//! A Redis restarted without persistence, or a failover to a replica that never received
//! the data, answers "never seen" for every `jti`: a replay window would reopen for every
//! single-use token still within its lifetime. So the scripts keep an epoch key: the
//! time at which this Redis's state began. The replay script sets it (to the caller's
//! `now`) whenever it is missing, in the same atomic step as the check, and refuses
//! ([`ReplayVerdict::BeforeEpoch`]) every token that could have been accepted before
//! the epoch: the caller passes the earliest moment the token could have been accepted
//! at all (its `iat` or `nbf` minus the leeway; without `iat`, its `exp` minus the
//! trust's maximum lifetime). A token that could only be used after the state began
//! is decided by the state alone. The cost: for one token lifetime after a new or
//! emptied Redis, single-use tokens minted before that moment are refused, and the
//! workload must fetch a fresh token.
//!
//! # Failure
//!
//! Every operation is bounded by the command timeout. A Redis that cannot answer makes
//! the replay check fail ([`StateError::Unavailable`]): the caller refuses single-use
//! tokens with 503 (fail closed). The rate limiter falls back to a per-replica in-memory
//! GCRA while Redis is unreachable (documented in docs/operations.md: a fleet of N
//! replicas then allows up to N times the limit, never unlimited). Errors are counted
//! per operation ([`RedisStats`]); no error text carries a token.
//!
//! # Keys
//!
//! Every key starts with `{<key_prefix>}`: the braces are a Redis Cluster hash tag, so
//! the keys a script touches share one slot. `e` is the epoch, `r:<len(iss)>:<iss><jti>`
//! a replay record (value: the trust name), `t:<trust>` the trust's index of live
//! records (a sorted set scored by retain-until), `l:<key>` a rate-limit TAT.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};

use crate::ratelimit::{MemoryRateLimiter, Rate, RateDecision, RateFuture, RateLimiter};
use crate::{MAX_JTI_BYTES, ReplayVerdict, StateError, StateOp, StateStats};

/// `[state]` settings of the Redis backend.
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS, rustls).
    pub url: String,
    /// The password, when it is kept out of the URL (read from `password_file`).
    pub password: Option<String>,
    /// PEM file of the CA(s) that sign the server's certificate (`rediss://` only);
    /// the platform's roots when absent.
    pub tls_ca_file: Option<PathBuf>,
    /// The prefix of every key (wrapped in braces: a Cluster hash tag).
    pub key_prefix: String,
    /// Multiplexed connections to keep (each pipelines many requests).
    pub pool_size: usize,
    /// The longest wait for a connection to open.
    pub connect_timeout: Duration,
    /// The longest wait for one command's answer.
    pub command_timeout: Duration,
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SECURITY: the URL may carry a password; show the scheme and host only.
        f.debug_struct("RedisSettings")
            .field("url", &redact_url(&self.url))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls_ca_file", &self.tls_ca_file)
            .field("key_prefix", &self.key_prefix)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
}

/// The URL without its credentials, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => {
            format!("{scheme}://<redacted>@{}", url.get(at + 1..).unwrap_or(""))
        }
        _ => url.to_owned(),
    }
}

/// Whether `url` parses as a Redis URL (`redis://` or `rediss://`).
///
/// # Errors
///
/// Why not, without the URL's credentials.
pub fn check_redis_url(url: &str) -> Result<(), String> {
    redis::IntoConnectionInfo::into_connection_info(url)
        .map(|_| ())
        .map_err(|e| describe(&e))
}

/// Why the Redis backend could not start.
#[derive(Debug, thiserror::Error)]
pub enum RedisStartupError {
    /// The URL does not parse.
    #[error("`state.url` is not a Redis URL ({url}): {reason}")]
    Url {
        /// The URL, credentials redacted.
        url: String,
        /// Why.
        reason: String,
    },
    /// The CA file cannot be read.
    #[error("cannot read `state.tls_ca_file` {path}: {source}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Redis did not answer.
    #[error("cannot reach Redis at {url}: {reason}")]
    Unreachable {
        /// The URL, credentials redacted.
        url: String,
        /// Why.
        reason: String,
    },
    /// Redis may evict keys: a replay record evicted under memory pressure would reopen
    /// a replay window, so Legate refuses to use it.
    #[error(
        "Redis at {url} has `maxmemory-policy {policy}`; Legate needs `noeviction` \
         (an evicted replay record would reopen a replay window): set \
         `maxmemory-policy noeviction` in redis.conf"
    )]
    Evicting {
        /// The URL, credentials redacted.
        url: String,
        /// The policy Redis reported.
        policy: String,
    },
}

/// Counters of the Redis backend, read by `/status`. Its errors are counted per operation
/// in [`StateStats`] ([`RedisBackend::state_stats`]).
#[derive(Debug, Default)]
pub struct RedisStats {
    /// Commands (scripts) sent, answered or not.
    pub round_trips: AtomicU64,
    /// The state epoch last seen (unix seconds; 0 before the first answer).
    pub epoch: AtomicI64,
    /// 1 while the last periodic check found Redis reachable and not evicting.
    pub healthy: AtomicU64,
}

const REPLAY_SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local epoch = tonumber(redis.call('GET', KEYS[1]))
if not epoch then
  epoch = now
  redis.call('SET', KEYS[1], ARGV[1])
end
if redis.call('EXISTS', KEYS[2]) == 1 then return {1, epoch} end
if tonumber(ARGV[2]) < epoch then return {2, epoch} end
local retain = tonumber(ARGV[3])
if retain <= now then return {0, epoch} end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[5]) then return {3, epoch} end
redis.call('SET', KEYS[2], ARGV[4], 'EXAT', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[3], KEYS[2])
return {0, epoch}
";

const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], KEYS[1])
  return 1
end
return 0
";

const GCRA_SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local known = tonumber(redis.call('GET', KEYS[1]))
local tat = known or now
if tat < now then tat = now end
local ceiling = now + tolerance + interval
if tat > ceiling then tat = ceiling end
local ahead = tat - now
if ahead > tolerance then
  if known then
    redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.floor(ahead / 1000) + 1)
  end
  return {0, ahead - tolerance}
end
local next = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.floor((next - now) / 1000) + 1)
return {1, 0}
";

/// The connections, scripts and counters shared by the Redis-backed stores.
pub struct RedisBackend {
    /// The client the connections came from (pub/sub subscriptions open their own).
    client: redis::Client,
    /// The first connection; `pool` holds the others (`pool_size - 1`).
    primary: ConnectionManager,
    pool: Vec<ConnectionManager>,
    next: AtomicUsize,
    prefix: String,
    url: String,
    command_timeout: Duration,
    replay: Script,
    release: Script,
    gcra: Script,
    stats: RedisStats,
    /// The same errors by operation, for `legate_state_backend_errors_total{op}`.
    state_stats: Arc<StateStats>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("url", &self.url)
            .field("pool", &(self.pool.len() + 1))
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Connects, checks that Redis answers and will not evict keys, and starts the
    /// state epoch at `now` (unix seconds) when this Redis has none yet (a new or
    /// emptied Redis: see the module documentation).
    ///
    /// # Errors
    ///
    /// [`RedisStartupError`]: a bad URL or CA file, no answer within the timeouts, or a
    /// `maxmemory-policy` other than `noeviction`.
    pub async fn connect(
        settings: &RedisSettings,
        now: i64,
    ) -> Result<Arc<Self>, RedisStartupError> {
        let url = redact_url(&settings.url);
        let mut info = redis::IntoConnectionInfo::into_connection_info(settings.url.as_str())
            .map_err(|e| RedisStartupError::Url {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        if let Some(password) = &settings.password {
            let redis_settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(redis_settings);
        }
        // Redis's rustls connector takes the process's default provider.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let client = match &settings.tls_ca_file {
            Some(path) => {
                let root = std::fs::read(path).map_err(|source| RedisStartupError::CaFile {
                    path: path.clone(),
                    source,
                })?;
                redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root),
                    },
                )
            }
            None => redis::Client::open(info),
        }
        .map_err(|e| RedisStartupError::Url {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.command_timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let mut pool = Vec::with_capacity(settings.pool_size.max(1));
        for _ in 0..settings.pool_size.max(1) {
            let connect = client.get_connection_manager_with_config(config.clone());
            let manager = tokio::time::timeout(settings.connect_timeout, connect)
                .await
                .map_err(|_| RedisStartupError::Unreachable {
                    url: url.clone(),
                    reason: format!("no connection within {:?}", settings.connect_timeout),
                })?
                .map_err(|e| RedisStartupError::Unreachable {
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
            pool.push(manager);
        }
        let Some(primary) = pool.pop() else {
            return Err(RedisStartupError::Unreachable {
                url,
                reason: "no connection".to_owned(),
            });
        };
        let backend = Arc::new(Self {
            client,
            primary,
            pool,
            next: AtomicUsize::new(0),
            prefix: format!("{{{}}}", settings.key_prefix),
            url: url.clone(),
            command_timeout: settings.command_timeout,
            replay: Script::new(REPLAY_SCRIPT),
            release: Script::new(RELEASE_SCRIPT),
            gcra: Script::new(GCRA_SCRIPT),
            stats: RedisStats::default(),
            state_stats: Arc::new(StateStats::new()),
        });
        match backend.eviction_policy().await {
            Ok(policy) if policy == "noeviction" => {
                let mut set = redis::cmd("SET");
                set.arg(backend.key("e")).arg(now).arg("NX");
                backend
                    .command(&set)
                    .await
                    .map_err(|reason| RedisStartupError::Unreachable {
                        url: url.clone(),
                        reason,
                    })?;
                backend.stats.healthy.store(1, Ordering::Relaxed);
                Ok(backend)
            }
            Ok(policy) => Err(RedisStartupError::Evicting { url, policy }),
            Err(reason) => Err(RedisStartupError::Unreachable { url, reason }),
        }
    }

    /// The client, for what needs its own connection (a pub/sub subscription).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The counters.
    pub fn stats(&self) -> &RedisStats {
        &self.stats
    }

    /// The error counters by operation (the server's `legate_state_backend_errors_total`).
    pub fn state_stats(&self) -> &Arc<StateStats> {
        &self.state_stats
    }

    /// Counts one failed operation.
    pub fn record_error(&self, op: StateOp) {
        self.state_stats.record_error(op);
    }

    /// The URL, credentials redacted.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A connection of the pool (round robin). Cloning a manager is cheap: it shares
    /// the multiplexed connection.
    pub fn connection(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        match i % (self.pool.len() + 1) {
            0 => self.primary.clone(),
            n => self.pool.get(n - 1).unwrap_or(&self.primary).clone(),
        }
    }

    /// `{prefix}` + `suffix`: a key of this deployment.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// The command timeout.
    pub fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    /// Runs `fut` within the command timeout, counting the round trip.
    pub(crate) async fn bounded<T>(
        &self,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        self.stats.round_trips.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(self.command_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(describe(&e)),
            Err(_) => Err(format!("no answer within {:?}", self.command_timeout)),
        }
    }

    /// Redis's `maxmemory-policy`, from `INFO memory` (allowed on managed Redis services
    /// that disable `CONFIG`).
    ///
    /// # Errors
    ///
    /// The reason Redis did not answer, or answered without the field.
    pub async fn eviction_policy(&self) -> Result<String, String> {
        let mut conn = self.connection();
        let info: String = self
            .bounded(redis::cmd("INFO").arg("memory").query_async(&mut conn))
            .await?;
        info.lines()
            .find_map(|l| l.strip_prefix("maxmemory_policy:"))
            .map(|p| p.trim().to_owned())
            .ok_or_else(|| "`INFO memory` has no maxmemory_policy".to_owned())
    }

    /// The periodic health check: reachable and still `noeviction`. A Redis that was
    /// replaced by one that evicts is reported unhealthy, and single-use exchanges are
    /// refused until it is fixed.
    pub async fn check(&self) -> bool {
        let healthy = match self.eviction_policy().await {
            Ok(policy) if policy == "noeviction" => true,
            Ok(policy) => {
                tracing::error!(
                    url = %self.url, policy = %policy,
                    "Redis now evicts keys: single-use exchanges are refused until it is set to noeviction"
                );
                false
            }
            Err(reason) => {
                tracing::warn!(url = %self.url, %reason, "Redis health check failed");
                false
            }
        };
        if !healthy {
            self.state_stats.record_error(StateOp::StartupCheck);
        }
        self.stats
            .healthy
            .store(u64::from(healthy), Ordering::Relaxed);
        healthy
    }

    fn replay_key(&self, issuer: &str, jti: &str) -> String {
        format!("{}r:{}:{issuer}{jti}", self.prefix, issuer.len())
    }

    fn trust_index(&self, trust: &str) -> String {
        format!("{}t:{trust}", self.prefix)
    }

    /// The Redis form of [`crate::ReplayCache::check_and_record`].
    pub(crate) async fn check_and_record(
        &self,
        record: ReplayRecord<'_>,
        per_trust_capacity: usize,
    ) -> Result<ReplayVerdict, StateError> {
        if record.jti.len() > MAX_JTI_BYTES {
            return Err(StateError::JtiTooLong {
                len: record.jti.len(),
            });
        }
        if self.stats.healthy.load(Ordering::Relaxed) == 0 {
            self.state_stats.record_error(StateOp::ReplayRecord);
            return Err(StateError::Unavailable {
                reason: "the last health check found Redis unreachable or evicting".to_owned(),
            });
        }
        let mut conn = self.connection();
        let mut invocation = self.replay.prepare_invoke();
        invocation
            .key(self.key("e"))
            .key(self.replay_key(record.issuer, record.jti))
            .key(self.trust_index(record.trust))
            .arg(record.now)
            .arg(record.earliest_use)
            .arg(record.retain_until)
            .arg(record.trust)
            .arg(per_trust_capacity.max(1));
        let answer: Result<(i64, i64), String> =
            self.bounded(invocation.invoke_async(&mut conn)).await;
        let (code, epoch) = answer.map_err(|reason| {
            self.state_stats.record_error(StateOp::ReplayRecord);
            StateError::Unavailable { reason }
        })?;
        self.stats.epoch.store(epoch, Ordering::Relaxed);
        match code {
            0 => Ok(ReplayVerdict::Fresh),
            1 => Ok(ReplayVerdict::Replayed),
            2 => Ok(ReplayVerdict::BeforeEpoch { epoch }),
            3 => Err(StateError::TrustFull {
                trust: record.trust.to_owned(),
                capacity: per_trust_capacity,
            }),
            other => {
                self.state_stats.record_error(StateOp::ReplayRecord);
                Err(StateError::Unavailable {
                    reason: format!("unexpected answer {other} from the replay script"),
                })
            }
        }
    }

    /// The Redis form of [`crate::ReplayCache::release`].
    pub(crate) async fn release(
        &self,
        trust: &str,
        issuer: &str,
        jti: &str,
    ) -> Result<(), StateError> {
        if jti.len() > MAX_JTI_BYTES {
            return Ok(());
        }
        let mut conn = self.connection();
        let mut invocation = self.release.prepare_invoke();
        invocation
            .key(self.replay_key(issuer, jti))
            .key(self.trust_index(trust))
            .arg(trust);
        let answer: Result<i64, String> = self.bounded(invocation.invoke_async(&mut conn)).await;
        answer.map(|_| ()).map_err(|reason| {
            self.state_stats.record_error(StateOp::ReplayRelease);
            StateError::Unavailable { reason }
        })
    }

    async fn gcra(&self, key: &str, limit: Rate, now_ms: i64) -> Result<RateDecision, String> {
        let mut conn = self.connection();
        let mut invocation = self.gcra.prepare_invoke();
        invocation
            .key(format!("{}l:{key}", self.prefix))
            .arg(now_ms.saturating_mul(1_000))
            .arg(limit.interval_us())
            .arg(limit.tolerance_us());
        let (allowed, wait_us): (i64, i64) =
            self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(if allowed == 1 {
            RateDecision::Allow
        } else {
            RateDecision::Limited {
                retry_after_ms: u64::try_from(wait_us).unwrap_or(0).div_ceil(1_000).max(1),
            }
        })
    }

    /// Runs a pipeline in one round trip; bounded like every other call.
    ///
    /// # Errors
    ///
    /// Why Redis did not answer.
    pub async fn pipeline(&self, pipe: &redis::Pipeline) -> Result<Value, String> {
        let mut conn = self.connection();
        self.bounded(pipe.query_async(&mut conn)).await
    }

    /// Runs a raw command (tests and the admin tools); bounded like every other call.
    ///
    /// # Errors
    ///
    /// Why Redis did not answer.
    pub async fn command(&self, cmd: &redis::Cmd) -> Result<Value, String> {
        let mut conn = self.connection();
        self.bounded(cmd.query_async(&mut conn)).await
    }
}

/// A Redis error as text: kind and detail, never the command (whose arguments may be
/// token identifiers).
fn describe(e: &redis::RedisError) -> String {
    match e.detail() {
        Some(detail) => format!("{:?}: {detail}", e.kind()),
        None => format!("{:?}", e.kind()),
    }
}

/// One replay check, as the Redis script takes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplayRecord<'a> {
    pub trust: &'a str,
    pub issuer: &'a str,
    pub jti: &'a str,
    pub retain_until: i64,
    pub earliest_use: i64,
    pub now: i64,
}

/// The fleet's rate limiter: GCRA in Redis, shared by every replica. While Redis cannot
/// answer, each replica falls back to its own in-memory GCRA (same limits, counted per
/// replica), so a Redis outage never turns limits off.
#[derive(Debug)]
pub struct RedisRateLimiter {
    backend: Arc<RedisBackend>,
    fallback: MemoryRateLimiter,
}

impl RedisRateLimiter {
    /// A limiter on `backend`, with an in-memory fallback of `fallback_keys` keys.
    pub fn new(backend: Arc<RedisBackend>, fallback_keys: usize) -> Self {
        Self {
            backend,
            fallback: MemoryRateLimiter::new(fallback_keys),
        }
    }
}

impl RateLimiter for RedisRateLimiter {
    fn check<'a>(&'a self, key: &'a str, limit: Rate, now_ms: i64) -> RateFuture<'a> {
        Box::pin(async move {
            match self.backend.gcra(key, limit, now_ms).await {
                Ok(decision) => decision,
                Err(reason) => {
                    self.backend.record_error(StateOp::RateLimit);
                    tracing::warn!(%reason, "Redis rate limit unavailable: this replica limits alone");
                    self.fallback.decide(key, limit, now_ms)
                }
            }
        })
    }

    fn len(&self) -> usize {
        self.fallback.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    /// Stops a password in `state.url` from reaching a log line.
    #[test]
    fn url_credentials_are_redacted() {
        assert_eq!(
            redact_url("rediss://legate:s3cret@redis.internal:6380/0"),
            "rediss://<redacted>@redis.internal:6380/0"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        let settings = RedisSettings {
            url: "redis://:hunter2@h:1".into(),
            password: Some("hunter3".into()),
            tls_ca_file: None,
            key_prefix: "legate".into(),
            pool_size: 1,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
        };
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("hunter3"),
            "{shown}"
        );
    }
}
