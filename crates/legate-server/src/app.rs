//! Application state: everything a request needs, built once from a [`Config`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use legate_core::jwk::KeySet;
use legate_core::{Clock, VerifyRules};
use legate_issuer::{Issuer, KeyRing, SigningKey};
use legate_policy::{LoadOptions, PolicyEngine, TargetInfo};
use legate_state::{ReplayCache, ReplayLimits, ReplayMode};
use legate_sts::{
    AwsProvider, AzureProvider, CaPem, CacheStats, CredentialCache, CredentialProvider,
    GcpProvider, JwtProvider, Target, TargetKind,
};
use legate_trust::{FetchLimits, KeySource, TrustConfig, TrustStore};

use crate::audit::{AuditLog, AuditSink, JsonLinesSink};
use crate::config::{AuditSinkConfig, Config, PolicySource, TrustKeys};
use crate::dev::DemoIssuer;

/// Why the server could not start. Each names the file or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A signing key could not be loaded.
    #[error("signing key `{path}`: {source}")]
    Key {
        /// The file (or `<ephemeral>`).
        path: PathBuf,
        /// Why.
        source: legate_issuer::KeyLoadError,
    },
    /// The signing keys do not form a key ring.
    #[error("signing keys: {0}")]
    KeyRing(#[from] legate_issuer::KeyRingError),
    /// `server.public_url` is not usable as an issuer.
    #[error("server.public_url: {0}")]
    IssuerUrl(#[from] legate_issuer::IssuerUrlError),
    /// A static JWKS file is invalid.
    #[error("jwks file `{path}`: {source}")]
    Jwks {
        /// The file.
        path: PathBuf,
        /// Why.
        source: legate_core::jwk::JwksError,
    },
    /// The trust store could not be built.
    #[error("trust: {0}")]
    Trust(#[from] legate_trust::TrustError),
    /// Policies failed to load or validate.
    #[error("policy: {0}")]
    Policy(#[from] legate_policy::PolicyLoadError),
    /// A cloud target's HTTPS client could not be built (endpoint, CA bundle).
    #[error("target: {0}")]
    Provider(#[from] legate_sts::ClientBuildError),
    /// The metrics registry could not be built.
    #[error("metrics: {0}")]
    Metrics(#[from] crate::metrics::MetricsError),
    /// The shared state backend could not be reached or is unsafe to use.
    #[error("state: {0}")]
    State(#[from] legate_state::RedisStartupError),
    /// `[state] backend = "redis"`, but the state was built without connecting first
    /// (use [`AppState::connect`]).
    #[error("state: `backend = \"redis\"` needs a connection: build with `AppState::connect`")]
    StateNotConnected,
    /// The credential ledger's writer thread could not be started.
    #[error("ledger writer: {0}")]
    Ledger(std::io::Error),
    /// The audit log could not be opened.
    #[error("audit log `{path}`: {source}")]
    Audit {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Per-trust settings the server applies after verification.
#[derive(Debug, Clone, Copy)]
pub struct TrustMeta {
    /// Replay protection.
    pub replay: ReplayMode,
    /// Leeway (the replay entry outlives `exp` by this much).
    pub leeway_secs: u64,
    /// The longest lifetime the trust accepts (bounds when a token without `iat` could
    /// first have been accepted: see [`TrustMeta::earliest_use`]).
    pub max_lifetime_secs: u64,
}

impl TrustMeta {
    /// The first moment a token with `claims` could have been accepted under this
    /// trust's rules: its `iat` or `nbf` minus the leeway (the later of the two), and
    /// without `iat`, no earlier than `exp` minus the maximum lifetime (the verifier
    /// measures the lifetime of such a token from the moment it is presented). The
    /// shared replay state refuses a single-use token that could have been accepted
    /// before its epoch.
    pub fn earliest_use(&self, claims: &legate_core::VerifiedClaims) -> i64 {
        let leeway = i64::try_from(self.leeway_secs).unwrap_or(i64::MAX);
        let nbf = claims
            .claims()
            .get("nbf")
            .and_then(serde_json::Value::as_i64)
            .map(|nbf| nbf.saturating_sub(leeway));
        let first = match claims.issued_at() {
            Some(iat) => iat.saturating_sub(leeway),
            None => claims
                .expires_at()
                .saturating_sub(i64::try_from(self.max_lifetime_secs).unwrap_or(i64::MAX)),
        };
        nbf.map_or(first, |nbf| first.max(nbf))
    }
}

/// Options for building the state that do not come from the file.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Overrides `[audit]` (tests use a [`crate::audit::MemorySink`]).
    pub audit: Option<Arc<dyn AuditSink>>,
    /// Enables the development-only demo issuer.
    pub dev_demo: bool,
    /// Limits on upstream fetches.
    pub fetch_limits: FetchLimits,
    /// A revocation store shared with other replicas (tests: two states on one store);
    /// `None`: a fresh in-memory store of `[revocation] max_entries`. A shared store is
    /// not known until read ([`crate::revocation::spawn_sync`]).
    pub revocation_store: Option<Arc<dyn legate_state::RevocationStore>>,
    /// The connected Redis backend, for `[state] backend = "redis"` (set by
    /// [`AppState::connect`]).
    pub redis: Option<Arc<legate_state::RedisBackend>>,
}

impl BuildOptions {
    /// Production defaults around `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            audit: None,
            dev_demo: false,
            fetch_limits: FetchLimits::default(),
            revocation_store: None,
            redis: None,
        }
    }
}

/// Shared, immutable request-path state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) trust: TrustStore,
    pub(crate) trust_meta: HashMap<String, TrustMeta>,
    /// The active policy set (take one snapshot per request) and its reloads.
    pub(crate) policy: Arc<crate::reload::PolicyReloader>,
    pub(crate) targets: HashMap<String, Target>,
    pub(crate) providers: HashMap<TargetKind, Arc<dyn CredentialProvider>>,
    pub(crate) credential_cache: CredentialCache,
    pub(crate) discovery_json: String,
    pub(crate) jwks_json: String,
    pub(crate) replay: ReplayCache,
    pub(crate) audit: AuditLog,
    pub(crate) trusted_proxies: Vec<IpNet>,
    pub(crate) demo: Option<DemoIssuer>,
    pub(crate) public_url: String,
    pub(crate) server: Arc<crate::serve::ServerStats>,
    /// The admin endpoints' state, when `[admin] enabled = true`.
    pub(crate) admin: Option<crate::admin::Admin>,
    /// `GET /metrics` on the operator listener.
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// The state backend's error counters (a shared backend records into them).
    pub(crate) state_stats: Arc<legate_state::StateStats>,
    /// `[limits]`, and the limiter counting against them (in memory: one node).
    pub(crate) limits: crate::config::LimitsConfig,
    pub(crate) rate_limiter: Arc<dyn legate_state::RateLimiter>,
    pub(crate) rate_limit_stats: RateLimitStats,
    /// The revocations this replica enforces ([`crate::revocation`]).
    pub(crate) revocations: Arc<crate::revocation::Revocations>,
    /// `POST /introspect`, when `[admin] introspection = true`.
    pub(crate) introspection: Option<crate::introspect::Introspection>,
    /// `[state] sync_interval_secs`: the shared backend's health-check period.
    pub(crate) sync_interval_secs: u64,
    /// The credential ledger and the queue in front of it (`[ledger]`).
    pub(crate) ledger: crate::ledger::LedgerLog,
}

/// Exchanges refused by rate limits since start, for `/status`.
#[derive(Debug, Default)]
pub struct RateLimitStats {
    /// Refused: the subject was over its limit.
    pub limited_subject: std::sync::atomic::AtomicU64,
    /// Refused: the target was over its limit.
    pub limited_target: std::sync::atomic::AtomicU64,
    /// Refused: the limiter's key table was full of live keys (503).
    pub table_full: std::sync::atomic::AtomicU64,
}

impl AppState {
    /// Connects the shared state backend named by `[state] backend` (Redis: connect,
    /// check it will not evict keys), then [`build`](Self::build)s. With the memory
    /// backend this is `build`.
    ///
    /// # Errors
    ///
    /// [`StartupError::State`] when Redis cannot be reached or may evict keys, and every
    /// error of `build`.
    pub async fn connect(config: &Config, mut opts: BuildOptions) -> Result<Self, StartupError> {
        if let (crate::config::StateBackendConfig::Redis(settings), None) =
            (&config.state.backend, &opts.redis)
        {
            opts.redis =
                Some(legate_state::RedisBackend::connect(settings, opts.clock.now()).await?);
        }
        Self::build(config, opts)
    }

    /// Builds the state: loads keys, policies and static JWKS files. No network call;
    /// call [`AppState::warm`] to fetch upstream keys.
    pub fn build(config: &Config, opts: BuildOptions) -> Result<Self, StartupError> {
        let issuer = Arc::new(Issuer::new(
            config.server.public_url.clone(),
            load_keys(config)?,
        )?);

        let demo = if opts.dev_demo {
            Some(
                DemoIssuer::new(&config.server.public_url).map_err(|source| StartupError::Key {
                    path: "<demo>".into(),
                    source,
                })?,
            )
        } else {
            None
        };

        let mut trust_configs = Vec::new();
        let mut trust_meta = HashMap::new();
        for t in &config.trusts {
            let mut rules = VerifyRules::new(t.issuer.clone(), t.audiences.clone());
            rules.algorithms.clone_from(&t.algorithms);
            rules.leeway_secs = t.leeway_secs;
            rules.max_lifetime_secs = t.max_lifetime_secs;
            rules.required_claims.clone_from(&t.required_claims);
            rules.require_jti = t.replay == ReplayMode::SingleUse;
            let source = match &t.keys {
                TrustKeys::Discovery => KeySource::Discovery,
                TrustKeys::JwksUri(uri) => KeySource::JwksUri(uri.clone()),
                TrustKeys::JwksFile(path) => {
                    let bytes = read(path)?;
                    let (keys, warnings) =
                        KeySet::from_jwks(&bytes).map_err(|source| StartupError::Jwks {
                            path: path.clone(),
                            source,
                        })?;
                    for w in warnings {
                        tracing::warn!(trust = %t.name, warning = %w, "static jwks key ignored");
                    }
                    KeySource::Static(Arc::new(keys))
                }
            };
            let mut tc = TrustConfig::new(t.name.clone(), rules, source);
            tc.ca_pem = t.ca_file.as_deref().map(read).transpose()?;
            tc.refresh_interval_secs = t.refresh_interval_secs;
            tc.stale_if_error_secs = t.stale_if_error_secs;
            tc.allow_private_network = t.allow_private_network;
            trust_configs.push(tc);
            trust_meta.insert(
                t.name.clone(),
                TrustMeta {
                    replay: t.replay,
                    leeway_secs: t.leeway_secs,
                    max_lifetime_secs: t.max_lifetime_secs,
                },
            );
        }
        if let Some(demo) = &demo {
            let tc = demo.trust_config().map_err(|source| StartupError::Jwks {
                path: "<demo>".into(),
                source,
            })?;
            trust_meta.insert(
                tc.name.clone(),
                TrustMeta {
                    replay: ReplayMode::SingleUse,
                    leeway_secs: tc.rules.leeway_secs,
                    max_lifetime_secs: tc.rules.max_lifetime_secs,
                },
            );
            trust_configs.push(tc);
        }
        let trust_names: Vec<String> = trust_configs.iter().map(|t| t.name.clone()).collect();
        let trust = TrustStore::new(trust_configs, opts.clock.clone(), opts.fetch_limits)?;

        let policy = load_policies(config, &trust_names)?;
        for w in policy.warnings() {
            tracing::warn!(warning = %w, "policy");
        }
        let policy = Arc::new(crate::reload::PolicyReloader::new(
            policy,
            config,
            trust_names,
            opts.clock.clone(),
        ));

        let sink: Arc<dyn AuditSink> = match (opts.audit, &config.audit.sink) {
            (Some(sink), _) => sink,
            (None, AuditSinkConfig::Stdout) => {
                Arc::new(JsonLinesSink::new(Box::new(std::io::stdout())))
            }
            (None, AuditSinkConfig::File(path)) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| StartupError::Audit {
                        path: path.clone(),
                        source,
                    })?;
                Arc::new(JsonLinesSink::new(Box::new(file)))
            }
        };
        let audit = AuditLog::start(sink, config.audit.queue_capacity).map_err(|source| {
            StartupError::Audit {
                path: "<audit writer thread>".into(),
                source,
            }
        })?;
        let single_use = config
            .trusts
            .iter()
            .filter(|t| t.replay == ReplayMode::SingleUse)
            .count()
            + usize::from(demo.is_some());
        let replay_limits = ReplayLimits {
            capacity: config.state.replay_capacity,
            per_trust_capacity: config
                .state
                .replay_capacity_per_trust
                .unwrap_or(config.state.replay_capacity / single_use.max(1))
                .max(1),
        };

        let (replay, rate_limiter): (ReplayCache, Arc<dyn legate_state::RateLimiter>) =
            match (&config.state.backend, &opts.redis) {
                (crate::config::StateBackendConfig::Memory, _) => (
                    ReplayCache::memory(replay_limits),
                    Arc::new(legate_state::MemoryRateLimiter::new(
                        legate_state::DEFAULT_RATE_LIMIT_KEYS,
                    )),
                ),
                (crate::config::StateBackendConfig::Redis(_), Some(redis)) => (
                    ReplayCache::redis(redis.clone(), replay_limits),
                    Arc::new(legate_state::RedisRateLimiter::new(
                        redis.clone(),
                        legate_state::DEFAULT_RATE_LIMIT_KEYS,
                    )),
                ),
                (crate::config::StateBackendConfig::Redis(_), None) => {
                    return Err(StartupError::StateNotConnected);
                }
            };

        let targets = with_ca_bundles(config)?;
        let credential_cache = CredentialCache::new(config.credential_cache);
        let (revocation_store, known): (Arc<dyn legate_state::RevocationStore>, bool) =
            match (opts.revocation_store, &opts.redis) {
                (Some(store), _) => (store, false),
                // A fleet: not known until read from Redis (`revocation::spawn_sync`).
                (None, Some(redis))
                    if matches!(
                        config.state.backend,
                        crate::config::StateBackendConfig::Redis(_)
                    ) =>
                {
                    (
                        Arc::new(legate_state::RedisRevocationStore::start(
                            redis.clone(),
                            config.revocation.max_entries,
                        )),
                        false,
                    )
                }
                (None, _) => (
                    Arc::new(legate_state::MemoryRevocationStore::new(
                        config.revocation.max_entries,
                    )),
                    true,
                ),
            };
        let revocations = Arc::new(crate::revocation::Revocations::new(
            revocation_store,
            known,
            credential_cache.clone(),
            crate::revocation::jti_retention_secs(&config.trusts),
            std::time::Duration::from_secs(config.state.sync_interval_secs),
        ));
        let introspection = if config.admin.enabled && config.admin.introspection {
            Some(
                crate::introspect::Introspection::new(issuer.url(), &issuer.jwks(), &targets)
                    .map_err(|source| StartupError::Jwks {
                        path: "<legate's own jwks>".into(),
                        source,
                    })?,
            )
        } else {
            None
        };
        let metrics = Arc::new(crate::metrics::Metrics::new(
            trust_meta.keys().cloned(),
            targets.iter().map(|t| t.name.clone()),
        )?);
        let providers = build_providers(config, &issuer, &targets, &credential_cache, &metrics)?;
        for t in targets.iter().filter(|t| t.kind != TargetKind::Jwt) {
            metrics.init_cloud_target(&t.name, t.kind);
        }

        let ledger_limits = legate_state::LedgerLimits {
            retention_secs: config.ledger.retention_secs,
            max_entries: config.ledger.max_entries,
            max_inventory_keys: config.ledger.max_inventory_keys,
        };
        let ledger_store: Arc<dyn legate_state::Ledger> = match &opts.redis {
            Some(redis) => Arc::new(legate_state::RedisLedger::new(redis.clone(), ledger_limits)),
            None => Arc::new(legate_state::MemoryLedger::new(ledger_limits)),
        };
        let ledger = crate::ledger::LedgerLog::start(ledger_store, config.ledger.queue_capacity)
            .map_err(StartupError::Ledger)?;

        Ok(Self {
            inner: Arc::new(Inner {
                clock: opts.clock,
                trust,
                trust_meta,
                policy,
                targets: targets.into_iter().map(|t| (t.name.clone(), t)).collect(),
                providers,
                credential_cache,
                discovery_json: issuer.discovery_document().to_string(),
                jwks_json: issuer.jwks().to_string(),
                replay,
                audit,
                trusted_proxies: config.server.trusted_proxies.clone(),
                demo,
                public_url: config.server.public_url.clone(),
                server: Arc::new(crate::serve::ServerStats::new(
                    crate::serve::ServerLimits::from_config(&config.server),
                )),
                admin: crate::admin::Admin::new(&config.admin),
                metrics,
                state_stats: opts.redis.as_ref().map_or_else(
                    || Arc::new(legate_state::StateStats::new()),
                    |r| r.state_stats().clone(),
                ),
                limits: config.limits.clone(),
                rate_limiter,
                sync_interval_secs: config.state.sync_interval_secs,
                rate_limit_stats: RateLimitStats::default(),
                revocations,
                introspection,
                ledger,
            }),
        })
    }

    /// The shared state's background work, for as long as the returned task runs: a
    /// health check of the Redis backend every `[state] sync_interval_secs` (reachable,
    /// still `noeviction`). Nothing to do with the memory backend (the task ends at once).
    pub fn spawn_state_tasks(&self) -> tokio::task::JoinHandle<()> {
        let redis = self.inner.replay.redis_backend().cloned();
        let period = std::time::Duration::from_secs(self.inner.sync_interval_secs.max(1));
        tokio::spawn(async move {
            let Some(redis) = redis else { return };
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                redis.check().await;
            }
        })
    }

    /// The shared Redis backend, when `[state] backend = "redis"`.
    pub fn redis(&self) -> Option<&Arc<legate_state::RedisBackend>> {
        self.inner.replay.redis_backend()
    }

    /// Fetches every upstream issuer's keys once.
    pub async fn warm(&self) {
        self.inner.trust.warm().await;
    }

    /// The trust store (status, tests).
    pub fn trust(&self) -> &TrustStore {
        &self.inner.trust
    }

    /// Legate's issuer URL.
    pub fn public_url(&self) -> &str {
        &self.inner.public_url
    }

    /// The audit log (queue depth and counters; tests wait on it).
    pub fn audit(&self) -> &AuditLog {
        &self.inner.audit
    }

    /// The number of loaded policies.
    pub fn policy_count(&self) -> usize {
        self.inner.policy.active().engine().policy_count()
    }

    /// The active policy set: one atomic load. A request takes it once, at its start,
    /// and decides with it throughout (a reload swaps in a new set for later requests).
    pub fn policy(&self) -> Arc<crate::reload::ActivePolicy> {
        self.inner.policy.active()
    }

    /// The active policy set's reloader (hot reload, `/status`).
    pub fn policy_reloader(&self) -> &Arc<crate::reload::PolicyReloader> {
        &self.inner.policy
    }

    /// The public listener's limits and counters.
    pub fn server_stats(&self) -> &crate::serve::ServerStats {
        &self.inner.server
    }

    /// The revocations this replica enforces (the sync task, `/status`, tests).
    pub fn revocations(&self) -> &Arc<crate::revocation::Revocations> {
        &self.inner.revocations
    }

    /// The credential ledger (its writer's counters; queries through
    /// [`LedgerLog::ledger`](crate::ledger::LedgerLog::ledger)).
    pub fn ledger(&self) -> &crate::ledger::LedgerLog {
        &self.inner.ledger
    }

    /// The state backend's error counters, for a shared backend to record into
    /// (`legate_state_backend_errors_total{op}`).
    pub fn state_stats(&self) -> &Arc<legate_state::StateStats> {
        &self.inner.state_stats
    }

    /// The credential cache's counters (hits, misses, refreshes, evictions).
    pub fn credential_cache_stats(&self) -> CacheStats {
        self.inner.credential_cache.stats()
    }
}

/// The configured targets, with each cloud target's `ca_file` read into its settings.
fn with_ca_bundles(config: &Config) -> Result<Vec<Target>, StartupError> {
    let mut targets = config.targets.clone();
    for target in &mut targets {
        if let (Some(cloud), Some(path)) = (
            target.cloud.as_mut(),
            config.target_ca_files.get(&target.name),
        ) {
            cloud.set_ca_pem(Some(CaPem(read(path)?)));
        }
    }
    Ok(targets)
}

/// One provider per kind: `jwt` mints directly; each cloud kind that has a target gets
/// its adapter behind the shared credential cache.
fn build_providers(
    config: &Config,
    issuer: &Arc<Issuer>,
    targets: &[Target],
    cache: &CredentialCache,
    metrics: &Arc<crate::metrics::Metrics>,
) -> Result<HashMap<TargetKind, Arc<dyn CredentialProvider>>, StartupError> {
    let default_alg = config.issuer.algorithm;
    // Cloud calls are metered below the cache: a hit calls no cloud.
    let cached = |kind: TargetKind, provider: Arc<dyn CredentialProvider>| {
        let metered = crate::metrics::MeteredProvider::new(metrics.clone(), kind, provider);
        Arc::new(cache.wrap(Arc::new(metered))) as Arc<dyn CredentialProvider>
    };
    let mut providers: HashMap<TargetKind, Arc<dyn CredentialProvider>> = HashMap::new();
    providers.insert(
        TargetKind::Jwt,
        Arc::new(JwtProvider::new(issuer.clone(), default_alg)),
    );
    let has = |kind: TargetKind| targets.iter().any(|t| t.kind == kind);
    if has(TargetKind::Aws) {
        let aws = AwsProvider::new(
            issuer.clone(),
            TargetKind::Aws.signing_alg(default_alg),
            targets,
            None,
        )?;
        providers.insert(TargetKind::Aws, cached(TargetKind::Aws, Arc::new(aws)));
    }
    if has(TargetKind::Gcp) {
        let gcp = GcpProvider::new(
            issuer.clone(),
            TargetKind::Gcp.signing_alg(default_alg),
            targets,
            None,
        )?;
        providers.insert(TargetKind::Gcp, cached(TargetKind::Gcp, Arc::new(gcp)));
    }
    if has(TargetKind::Azure) {
        let azure = AzureProvider::new(issuer.clone(), targets, None)?;
        providers.insert(
            TargetKind::Azure,
            cached(TargetKind::Azure, Arc::new(azure)),
        );
    }
    Ok(providers)
}

/// The configured targets as policy sees them.
pub fn target_infos(targets: &[Target]) -> Vec<TargetInfo> {
    targets
        .iter()
        .map(|t| TargetInfo {
            name: t.name.clone(),
            kind: t.kind.as_str().to_owned(),
            audience: t.audience.clone(),
            labels: t.labels.clone(),
        })
        .collect()
}

/// Loads the configured policies (bundled or a folder) for the configured targets and
/// the given trust names. `legate serve`, `config check` and `policy` all use this; the
/// lints run with [`load_options`].
pub fn load_policies(
    config: &Config,
    trust_names: &[String],
) -> Result<PolicyEngine, legate_policy::PolicyLoadError> {
    let targets = target_infos(&config.targets);
    let options = load_options(config);
    match &config.policy {
        PolicySource::Bundled => PolicyEngine::bundled_with(&targets, trust_names, &options),
        PolicySource::Dir(dir) => PolicyEngine::load_dir_with(dir, &targets, trust_names, &options),
    }
}

/// The issuer templates the policy lints use: each `[[trust]]`'s `template` (none: the
/// generic lints); a trust name the file does not configure (the development-mode
/// `demo` trust; the example trusts `github`, `gitlab`, `kubernetes`, whose policies
/// then never apply but are still linted) gets its example template
/// ([`LoadOptions::examples`]). `serve`, `config check`, `policy validate|test` and
/// reloads must all use this, so that they lint alike.
pub fn load_options(config: &Config) -> LoadOptions {
    let mut options = LoadOptions::examples();
    for trust in &config.trusts {
        match &trust.template {
            Some(template) => {
                options
                    .templates
                    .insert(trust.name.clone(), template.clone());
            }
            None => {
                options.templates.remove(&trust.name);
            }
        }
    }
    options
}

fn read(path: &Path) -> Result<Vec<u8>, StartupError> {
    std::fs::read(path).map_err(|source| StartupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The issuer's keys: generated (one per algorithm the targets need) for an ephemeral
/// issuer, else read from `issuer.keys` in order, each checked against its `algorithm`.
fn load_keys(config: &Config) -> Result<KeyRing, StartupError> {
    if config.issuer.ephemeral_key {
        tracing::warn!("signing with an ephemeral key: tokens stop verifying when Legate restarts");
        let keys = config
            .signing_algs()
            .into_iter()
            .map(|alg| SigningKey::generate(alg, None))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| StartupError::Key {
                path: "<ephemeral>".into(),
                source,
            })?;
        return Ok(KeyRing::from_keys(keys)?);
    }
    let mut keys = Vec::new();
    for k in &config.issuer.keys {
        let bytes = read(&k.path)?;
        let is_jwk = k
            .path
            .extension()
            .is_some_and(|e| e == "json" || e == "jwk");
        let key = if is_jwk {
            SigningKey::from_jwk(&bytes, k.kid.clone()).and_then(|key| {
                if key.alg() == k.algorithm {
                    Ok(key)
                } else {
                    Err(legate_issuer::KeyLoadError::AlgMismatch {
                        expected: k.algorithm,
                        found: key.alg(),
                    })
                }
            })
        } else {
            SigningKey::from_pem(&bytes, k.kid.clone(), Some(k.algorithm))
        }
        .map_err(|source| StartupError::Key {
            path: k.path.clone(),
            source,
        })?;
        keys.push(key);
    }
    Ok(KeyRing::from_keys(keys)?)
}
