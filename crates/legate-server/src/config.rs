//! The configuration file: one versioned TOML document, parsed at one edge.
//!
//! `RawConfig` mirrors the file (every table rejects unknown keys); [`Config`] is the
//! checked, typed form the rest of the server uses. [`load_file`] and [`load_str`] are
//! the only ways in, and `legate config check` calls the same [`load_file`]. Every error
//! names the file, the line and the key.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use legate_core::Alg;
use legate_issuer::SigningAlg;
use legate_state::{Rate, ReplayMode};
use legate_sts::{
    AwsTarget, AzureTarget, CacheSettings, CloudTarget, GcpTarget, Shaping, Target, TargetKind,
};
use serde::Deserialize;
use toml::Spanned;

/// The configuration format version this build reads.
pub const CONFIG_VERSION: u32 = 1;

/// The largest `[policy] reload_interval_secs` (a day).
pub const MAX_RELOAD_INTERVAL_SECS: u64 = 86_400;

/// A configuration error, located in the file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The file (or `<embedded>`).
    pub origin: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The key path, e.g. `trust[1].jwks_uri`.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where relative paths are resolved (the config file's folder).
    pub base_dir: PathBuf,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[issuer]`.
    pub issuer: IssuerConfig,
    /// `[[trust]]`.
    pub trusts: Vec<TrustEntry>,
    /// `[policy]`.
    pub policy: PolicySource,
    /// `[policy] reload_interval_secs`: how often the policy folder is checked for
    /// changes (0: never; `SIGHUP` still reloads). See [`crate::reload`].
    pub policy_reload_interval_secs: u64,
    /// `[[target]]`.
    pub targets: Vec<Target>,
    /// Each cloud target's `ca_file`, by target name (read at start-up, not by
    /// `config check`).
    pub target_ca_files: BTreeMap<String, PathBuf>,
    /// `[credential_cache]`.
    pub credential_cache: CacheSettings,
    /// `[state]`.
    pub state: StateConfig,
    /// `[audit]`.
    pub audit: AuditConfig,
    /// `[admin]`.
    pub admin: AdminConfig,
    /// `[limits]` and each `[[target]]`'s `limits`.
    pub limits: LimitsConfig,
    /// `[revocation]`.
    pub revocation: RevocationConfig,
    /// `[ledger]`.
    pub ledger: LedgerConfig,
}

impl Config {
    /// The algorithms Legate signs with for the configured targets, the default first:
    /// RS256 for `azure` targets, `issuer.algorithm` for the others (and when there is no
    /// target at all). An ephemeral issuer generates one key for each.
    pub fn signing_algs(&self) -> Vec<SigningAlg> {
        signing_algs(self.issuer.algorithm, &self.targets)
    }
}

fn signing_algs(default: SigningAlg, targets: &[Target]) -> Vec<SigningAlg> {
    let mut algs: Vec<SigningAlg> = Vec::with_capacity(2);
    for alg in targets.iter().map(|t| t.kind.signing_alg(default)) {
        if !algs.contains(&alg) {
            algs.push(alg);
        }
    }
    if algs.is_empty() {
        algs.push(default);
    }
    algs.sort_by_key(|a| *a != default);
    algs
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Legate's own issuer URL (its `iss`), exactly as clouds will be told.
    pub public_url: String,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Open connections on the public listener; at the cap Legate stops accepting.
    pub max_connections: usize,
    /// Requests being handled at once; beyond it, `503 temporarily_unavailable`.
    pub max_in_flight: usize,
    /// Time a request head may take to arrive, from its first byte (from the accept on
    /// a new connection).
    pub header_read_timeout_secs: u64,
    /// Time a request body may take to arrive, from the end of its head.
    pub body_read_timeout_secs: u64,
    /// Time a kept-alive connection may wait for its next request.
    pub idle_timeout_secs: u64,
    /// Time one request may take, body and handling, from the end of its head.
    pub request_timeout_secs: u64,
    /// Time in-flight requests get to finish after a shutdown signal.
    pub shutdown_grace_secs: u64,
    /// The operator listener (`/status`): loopback unless an operator network is meant.
    pub operator_listen: SocketAddr,
}

/// `[issuer]`.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// The default algorithm: `jwt` targets, AWS and Google assertions, and a key file
    /// that names none.
    pub algorithm: SigningAlg,
    /// Signing keys; the first of each algorithm signs, the rest stay published
    /// (rotation).
    pub keys: Vec<KeyFile>,
    /// Generate an in-memory key at start (development only).
    pub ephemeral_key: bool,
    /// Default lifetime of minted tokens, seconds.
    pub default_lifetime_secs: u64,
}

/// A signing key file.
#[derive(Debug, Clone)]
pub struct KeyFile {
    /// Path (PEM, or a private JWK when it ends in `.json` or `.jwk`).
    pub path: PathBuf,
    /// `kid` override (default: RFC 7638 thumbprint).
    pub kid: Option<String>,
    /// The algorithm this key signs with.
    pub algorithm: SigningAlg,
}

/// Where an issuer's keys come from, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustKeys {
    /// OIDC discovery.
    Discovery,
    /// A fixed JWKS URL.
    JwksUri(String),
    /// A JWKS file read at start.
    JwksFile(PathBuf),
}

/// One `[[trust]]`.
#[derive(Debug, Clone)]
pub struct TrustEntry {
    /// Short name.
    pub name: String,
    /// Exact issuer URL.
    pub issuer: String,
    /// Accepted audiences.
    pub audiences: Vec<String>,
    /// Key source.
    pub keys: TrustKeys,
    /// Extra CA bundle.
    pub ca_file: Option<PathBuf>,
    /// Leeway, seconds.
    pub leeway_secs: u64,
    /// Lifetime cap, seconds.
    pub max_lifetime_secs: u64,
    /// Claims that must be present.
    pub required_claims: Vec<String>,
    /// Accepted algorithms.
    pub algorithms: Vec<Alg>,
    /// Replay protection.
    pub replay: ReplayMode,
    /// Scheduled refresh, seconds.
    pub refresh_interval_secs: u64,
    /// Stale-if-error bound, seconds (at least 1).
    pub stale_if_error_secs: u64,
    /// Whether key fetches may reach loopback, private and other non-public
    /// addresses (default: no).
    pub allow_private_network: bool,
    /// The issuer template (legate-policy `templates`), by its id: the policy lints use
    /// its claim model. `None`: the generic lints only.
    pub template: Option<String>,
}

/// `[policy]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// The example policies compiled into the binary.
    Bundled,
    /// A folder of `*.cedar` files and `legate.cedarschema`.
    Dir(PathBuf),
}

/// `[state]`.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// Live entries the in-memory replay cache may hold.
    pub replay_capacity: usize,
    /// Live entries one trust may hold; by default an equal share of
    /// `replay_capacity` per single-use trust.
    pub replay_capacity_per_trust: Option<usize>,
    /// Where the shared state lives.
    pub backend: StateBackendConfig,
    /// Seconds between the shared backend's health checks (and the full re-reads of
    /// shared sets such as revocations).
    pub sync_interval_secs: u64,
}

/// `[state] backend`.
#[derive(Debug, Clone)]
pub enum StateBackendConfig {
    /// In this process only (the default).
    Memory,
    /// In Redis, shared by every replica on it.
    Redis(legate_state::RedisSettings),
}

/// The default `[state] sync_interval_secs`.
pub const DEFAULT_SYNC_INTERVAL_SECS: u64 = 5;

/// `[revocation]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevocationConfig {
    /// The most live revocations held; at the limit a new one is refused (409), never
    /// evicted in place of an old one.
    pub max_entries: usize,
}

/// The largest `[revocation] max_entries` accepted.
pub const MAX_REVOCATIONS: usize = 1_000_000;

/// `[audit]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Where events go.
    pub sink: AuditSinkConfig,
    /// Events the queue in front of the writer holds.
    pub queue_capacity: usize,
}

/// Where audit events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditSinkConfig {
    /// JSON lines on standard output.
    Stdout,
    /// JSON lines appended to a file.
    File(PathBuf),
}

/// `[admin]`: the admin endpoints (`/admin/decisions/{request_id}`, `/admin/explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Whether the endpoints are served (default: no).
    pub enabled: bool,
    /// The `aud` an admin's bearer token must carry, distinct from every exchange
    /// audience (trust audiences, target audiences) and from every cloud audience.
    /// Required when `enabled`.
    pub audience: Option<String>,
    /// How many recent exchange decisions `/admin/decisions` can look up.
    pub recent_decisions: usize,
    /// Whether `POST /introspect` (RFC 7662) is served on the public listener, for the
    /// relying parties of `jwt` targets; authenticated like the admin endpoints
    /// (default: no; needs `enabled`).
    pub introspection: bool,
}

/// `[limits]`: request rates per subject and per target (absent: no limit), and the
/// per-target overrides (`[[target]] limits = { per_subject = …, per_target = … }`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Exchanges one subject (trust + upstream `sub`) may make, across targets unless
    /// the target overrides it.
    pub per_subject: Option<Rate>,
    /// Exchanges one target may serve, across all subjects.
    pub per_target: Option<Rate>,
    /// Per-target overrides, by target name; a key set there replaces the global one.
    pub targets: BTreeMap<String, TargetLimits>,
}

/// One `[[target]]`'s `limits` table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetLimits {
    /// Replaces `[limits] per_subject` for this target.
    pub per_subject: Option<Rate>,
    /// Replaces `[limits] per_target` for this target.
    pub per_target: Option<Rate>,
}

impl LimitsConfig {
    /// The limits that apply to exchanges for `target`: (per subject, per target).
    pub fn for_target(&self, target: &str) -> TargetLimits {
        let o = self.targets.get(target).copied().unwrap_or_default();
        TargetLimits {
            per_subject: o.per_subject.or(self.per_subject),
            per_target: o.per_target.or(self.per_target),
        }
    }
}

/// `[ledger]`: the credential ledger and inventory (`GET /admin/inventory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerConfig {
    /// Seconds an entry, and an inventory row not seen since, is kept.
    pub retention_secs: u64,
    /// The most entries held; the oldest leave first.
    pub max_entries: usize,
    /// The most keys per inventory map; the least recently seen leave first.
    pub max_inventory_keys: usize,
    /// Entries waiting for the ledger writer; a full queue drops (and counts) entries,
    /// never an exchange.
    pub queue_capacity: usize,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            retention_secs: legate_state::ledger::DEFAULT_RETENTION_SECS,
            max_entries: legate_state::ledger::DEFAULT_MAX_ENTRIES,
            max_inventory_keys: legate_state::ledger::DEFAULT_MAX_INVENTORY_KEYS,
            queue_capacity: DEFAULT_LEDGER_QUEUE_CAPACITY,
        }
    }
}

/// The default `[ledger] queue_capacity`.
pub const DEFAULT_LEDGER_QUEUE_CAPACITY: usize = 10_000;
/// The accepted `[ledger] retention_secs`: one minute to one year.
pub const LEDGER_RETENTION_RANGE: std::ops::RangeInclusive<u64> = 60..=31_536_000;
/// The largest `[ledger] max_entries`, `max_inventory_keys` and `queue_capacity`.
pub const MAX_LEDGER_SIZE: usize = 10_000_000;

/// The largest `rate` and `burst` accepted in a limit.
pub const MAX_RATE: u64 = 1_000_000;
/// The longest `per_secs` accepted in a limit (one day).
pub const MAX_RATE_PERIOD_SECS: u64 = 86_400;

/// The default of `[admin] recent_decisions`.
pub const DEFAULT_RECENT_DECISIONS: usize = 1_024;

/// The largest `[admin] recent_decisions` accepted.
pub const MAX_RECENT_DECISIONS: usize = 100_000;

// ---- the file as written -------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    version: Spanned<u32>,
    server: RawServer,
    #[serde(default)]
    issuer: RawIssuer,
    #[serde(default)]
    trust: Vec<Spanned<RawTrust>>,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    target: Vec<Spanned<RawTarget>>,
    #[serde(default)]
    credential_cache: RawCredentialCache,
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    revocation: RawRevocation,
    #[serde(default)]
    ledger: RawLedger,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRevocation {
    max_entries: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLedger {
    retention_secs: Option<Spanned<u64>>,
    max_entries: Option<Spanned<usize>>,
    max_inventory_keys: Option<Spanned<usize>>,
    queue_capacity: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    per_subject: Option<Spanned<RawRate>>,
    per_target: Option<Spanned<RawRate>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    rate: u64,
    per_secs: u64,
    #[serde(default = "default_burst")]
    burst: u64,
}

const fn default_burst() -> u64 {
    1
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    #[serde(default)]
    enabled: bool,
    audience: Option<Spanned<String>>,
    recent_decisions: Option<Spanned<usize>>,
    #[serde(default)]
    introspection: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default = "default_listen")]
    listen: Spanned<String>,
    public_url: Spanned<String>,
    #[serde(default)]
    trusted_proxies: Vec<Spanned<String>>,
    #[serde(default = "default_max_connections")]
    max_connections: Spanned<u64>,
    #[serde(default = "default_max_in_flight")]
    max_in_flight: Spanned<u64>,
    #[serde(default = "default_header_read_timeout")]
    header_read_timeout_secs: Spanned<u64>,
    #[serde(default = "default_body_read_timeout")]
    body_read_timeout_secs: Spanned<u64>,
    #[serde(default = "default_idle_timeout")]
    idle_timeout_secs: Spanned<u64>,
    #[serde(default = "default_request_timeout")]
    request_timeout_secs: Spanned<u64>,
    #[serde(default = "default_shutdown_grace")]
    shutdown_grace_secs: Spanned<u64>,
    #[serde(default = "default_operator_listen")]
    operator_listen: Spanned<String>,
}

fn default_listen() -> Spanned<String> {
    Spanned::new(0..0, "127.0.0.1:8080".to_owned())
}
fn default_operator_listen() -> Spanned<String> {
    Spanned::new(0..0, "127.0.0.1:9464".to_owned())
}
fn default_max_connections() -> Spanned<u64> {
    Spanned::new(0..0, 4096)
}
fn default_max_in_flight() -> Spanned<u64> {
    Spanned::new(0..0, 1024)
}
fn default_header_read_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 5)
}
fn default_body_read_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 10)
}
fn default_idle_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 60)
}
fn default_request_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 30)
}
fn default_shutdown_grace() -> Spanned<u64> {
    Spanned::new(0..0, 20)
}

/// The accepted range of each numeric `[server]` limit: (key, min, max).
const SERVER_LIMIT_RANGES: [(&str, u64, u64); 7] = [
    ("max_connections", 1, 1_000_000),
    ("max_in_flight", 1, 1_000_000),
    ("header_read_timeout_secs", 1, 300),
    ("body_read_timeout_secs", 1, 600),
    ("idle_timeout_secs", 1, 3600),
    ("request_timeout_secs", 1, 600),
    ("shutdown_grace_secs", 0, 3600),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    #[serde(default = "default_alg")]
    algorithm: Spanned<String>,
    #[serde(default)]
    keys: Vec<RawKey>,
    #[serde(default)]
    ephemeral_key: bool,
    #[serde(default = "default_token_lifetime")]
    default_lifetime_secs: u64,
}

impl Default for RawIssuer {
    fn default() -> Self {
        Self {
            algorithm: default_alg(),
            keys: Vec::new(),
            ephemeral_key: false,
            default_lifetime_secs: default_token_lifetime(),
        }
    }
}

fn default_alg() -> Spanned<String> {
    Spanned::new(0..0, "ES256".to_owned())
}
const fn default_token_lifetime() -> u64 {
    300
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    path: PathBuf,
    kid: Option<String>,
    algorithm: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrust {
    name: String,
    issuer: String,
    audiences: Vec<String>,
    jwks_uri: Option<String>,
    jwks_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    #[serde(default = "default_leeway")]
    leeway_secs: u64,
    #[serde(default = "default_max_lifetime")]
    max_lifetime_secs: u64,
    #[serde(default)]
    required_claims: Vec<String>,
    algorithms: Option<Vec<Alg>>,
    #[serde(default)]
    replay: RawReplay,
    #[serde(default = "default_refresh")]
    refresh_interval_secs: u64,
    #[serde(default = "default_stale")]
    stale_if_error_secs: u64,
    #[serde(default)]
    allow_private_network: bool,
    template: Option<String>,
}

const fn default_leeway() -> u64 {
    60
}
const fn default_max_lifetime() -> u64 {
    3600
}
const fn default_refresh() -> u64 {
    900
}
const fn default_stale() -> u64 {
    86_400
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum RawReplay {
    #[default]
    SingleUse,
    Reusable,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    dir: Option<PathBuf>,
    #[serde(default)]
    bundled: bool,
    reload_interval_secs: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: String,
    kind: String,
    audience: Option<String>,
    #[serde(default = "default_target_max")]
    max_lifetime_secs: u64,
    default_lifetime_secs: Option<u64>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    // Every cloud kind.
    ca_file: Option<PathBuf>,
    timeout_secs: Option<u64>,
    // `aws`.
    role_arn: Option<String>,
    region: Option<String>,
    endpoint: Option<String>,
    assertion_audience: Option<String>,
    // `gcp`.
    workload_identity_provider: Option<String>,
    service_account: Option<String>,
    scopes: Option<Vec<String>>,
    sts_endpoint: Option<String>,
    iam_credentials_endpoint: Option<String>,
    // `azure`.
    tenant_id: Option<String>,
    client_id: Option<String>,
    scope: Option<String>,
    authority_host: Option<String>,
    // Grant shaping (`aws`: the first three; `jwt`: `copy_claims`).
    session_tags: Option<BTreeMap<String, String>>,
    transitive_tag_keys: Option<Vec<String>>,
    source_identity: Option<String>,
    copy_claims: Option<Vec<String>>,
    // Rate limits overriding `[limits]`.
    limits: Option<RawLimits>,
}

impl RawTarget {
    /// The kind-specific keys that are set, with the kind each belongs to.
    fn kind_keys(&self) -> Vec<(&'static str, TargetKind)> {
        let mut set = Vec::new();
        let mut add = |present: bool, key: &'static str, kind: TargetKind| {
            if present {
                set.push((key, kind));
            }
        };
        add(self.role_arn.is_some(), "role_arn", TargetKind::Aws);
        add(self.region.is_some(), "region", TargetKind::Aws);
        add(self.endpoint.is_some(), "endpoint", TargetKind::Aws);
        add(
            self.assertion_audience.is_some(),
            "assertion_audience",
            TargetKind::Aws,
        );
        add(
            self.workload_identity_provider.is_some(),
            "workload_identity_provider",
            TargetKind::Gcp,
        );
        add(
            self.service_account.is_some(),
            "service_account",
            TargetKind::Gcp,
        );
        add(self.scopes.is_some(), "scopes", TargetKind::Gcp);
        add(self.sts_endpoint.is_some(), "sts_endpoint", TargetKind::Gcp);
        add(
            self.iam_credentials_endpoint.is_some(),
            "iam_credentials_endpoint",
            TargetKind::Gcp,
        );
        add(self.tenant_id.is_some(), "tenant_id", TargetKind::Azure);
        add(self.client_id.is_some(), "client_id", TargetKind::Azure);
        add(self.scope.is_some(), "scope", TargetKind::Azure);
        add(
            self.authority_host.is_some(),
            "authority_host",
            TargetKind::Azure,
        );
        set
    }
}

const fn default_target_max() -> u64 {
    900
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredentialCache {
    #[serde(default = "default_min_remaining")]
    min_remaining_secs: u64,
    #[serde(default = "default_max_entries")]
    max_entries: u64,
}

impl Default for RawCredentialCache {
    fn default() -> Self {
        Self {
            min_remaining_secs: default_min_remaining(),
            max_entries: default_max_entries(),
        }
    }
}

const fn default_min_remaining() -> u64 {
    300
}
const fn default_max_entries() -> u64 {
    10_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    #[serde(default = "default_backend")]
    backend: Spanned<String>,
    #[serde(default = "default_replay_capacity")]
    replay_capacity: Spanned<usize>,
    #[serde(default)]
    replay_capacity_per_trust: Option<Spanned<usize>>,
    #[serde(default)]
    url: Option<Spanned<String>>,
    #[serde(default)]
    password_file: Option<Spanned<String>>,
    #[serde(default)]
    tls_ca_file: Option<Spanned<String>>,
    #[serde(default)]
    key_prefix: Option<Spanned<String>>,
    #[serde(default)]
    pool_size: Option<Spanned<usize>>,
    #[serde(default)]
    connect_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    command_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    sync_interval_secs: Option<Spanned<u64>>,
}

impl Default for RawState {
    fn default() -> Self {
        Self {
            backend: default_backend(),
            replay_capacity: default_replay_capacity(),
            replay_capacity_per_trust: None,
            url: None,
            password_file: None,
            tls_ca_file: None,
            key_prefix: None,
            pool_size: None,
            connect_timeout_ms: None,
            command_timeout_ms: None,
            sync_interval_secs: None,
        }
    }
}

fn default_backend() -> Spanned<String> {
    Spanned::new(0..0, "memory".to_owned())
}
fn default_replay_capacity() -> Spanned<usize> {
    Spanned::new(0..0, 1_000_000)
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    path: Option<String>,
    queue_capacity: Option<Spanned<usize>>,
}

// ---- loading -------------------------------------------------------------------------

/// Reads and checks a configuration file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
        origin: origin.clone(),
        line: None,
        column: None,
        key: None,
        message: format!("cannot read: {e}"),
    })?;
    let base = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    load_str(&src, &origin, &base)
}

/// Checks configuration text; `origin` names it in errors, `base_dir` resolves paths.
pub fn load_str(src: &str, origin: &str, base_dir: &Path) -> Result<Config, ConfigError> {
    let locate = |span: Option<std::ops::Range<usize>>| -> (Option<usize>, Option<usize>) {
        match span {
            Some(r) if r != (0..0) => {
                let (line, col) = line_col(src, r.start);
                (Some(line), Some(col))
            }
            _ => (None, None),
        }
    };
    let deserializer = toml::Deserializer::parse(src).map_err(|e| {
        let (line, column) = locate(e.span());
        ConfigError {
            origin: origin.to_owned(),
            line,
            column,
            key: None,
            message: e.message().trim().to_owned(),
        }
    })?;
    let raw: RawConfig = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e
            .path()
            .to_string()
            .replace(".$__serde_spanned_private_value", "")
            .replace("$__serde_spanned_private_value.", "");
        let inner = e.into_inner();
        let (line, column) = locate(inner.span());
        ConfigError {
            origin: origin.to_owned(),
            line,
            column,
            key: (path != ".").then_some(path),
            message: inner.message().trim().to_owned(),
        }
    })?;
    let checker = Checker {
        src,
        origin,
        base_dir,
    };
    checker.check(raw)
}

fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, col)
}

struct Checker<'a> {
    src: &'a str,
    origin: &'a str,
    base_dir: &'a Path,
}

impl Checker<'_> {
    fn err(
        &self,
        span: std::ops::Range<usize>,
        key: impl Into<String>,
        msg: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = if span == (0..0) {
            (None, None)
        } else {
            let (l, c) = line_col(self.src, span.start);
            (Some(l), Some(c))
        };
        ConfigError {
            origin: self.origin.to_owned(),
            line,
            column,
            key: Some(key.into()),
            message: msg.into(),
        }
    }

    /// `[state] backend` and the Redis keys.
    fn state_backend(&self, raw: &RawState) -> Result<(StateBackendConfig, u64), ConfigError> {
        let sync_interval_secs = match &raw.sync_interval_secs {
            None => DEFAULT_SYNC_INTERVAL_SECS,
            Some(n) if (1..=300).contains(n.get_ref()) => *n.get_ref(),
            Some(n) => {
                return Err(self.err(
                    n.span(),
                    "state.sync_interval_secs",
                    "must be between 1 and 300",
                ));
            }
        };
        let redis_only = [
            ("url", raw.url.as_ref().map(Spanned::span)),
            (
                "password_file",
                raw.password_file.as_ref().map(Spanned::span),
            ),
            ("tls_ca_file", raw.tls_ca_file.as_ref().map(Spanned::span)),
            ("key_prefix", raw.key_prefix.as_ref().map(Spanned::span)),
            ("pool_size", raw.pool_size.as_ref().map(Spanned::span)),
            (
                "connect_timeout_ms",
                raw.connect_timeout_ms.as_ref().map(Spanned::span),
            ),
            (
                "command_timeout_ms",
                raw.command_timeout_ms.as_ref().map(Spanned::span),
            ),
        ];
        match raw.backend.get_ref().as_str() {
            "memory" => {
                if let Some((name, Some(span))) = redis_only.iter().find(|(_, s)| s.is_some()) {
                    return Err(self.err(
                        span.clone(),
                        format!("state.{name}"),
                        "only applies to `backend = \"redis\"`",
                    ));
                }
                Ok((StateBackendConfig::Memory, sync_interval_secs))
            }
            "redis" => {
                let Some(url) = &raw.url else {
                    return Err(self.err(
                        raw.backend.span(),
                        "state.url",
                        "`backend = \"redis\"` needs `url = \"redis://host:6379\"` (or `rediss://` for TLS)",
                    ));
                };
                let text = url.get_ref();
                let tls = text.starts_with("rediss://");
                if !tls && !text.starts_with("redis://") {
                    return Err(self.err(
                        url.span(),
                        "state.url",
                        format!(
                            "`{}` is not a Redis URL: use `redis://host:port` or `rediss://host:port`",
                            legate_state::redact_url(text)
                        ),
                    ));
                }
                if legate_state::check_redis_url(text).is_err() {
                    return Err(self.err(
                        url.span(),
                        "state.url",
                        format!(
                            "`{}` does not parse as a Redis URL",
                            legate_state::redact_url(text)
                        ),
                    ));
                }
                if let (false, Some(ca)) = (tls, &raw.tls_ca_file) {
                    return Err(self.err(
                        ca.span(),
                        "state.tls_ca_file",
                        "only applies to a `rediss://` URL (TLS)",
                    ));
                }
                let password = match &raw.password_file {
                    None => None,
                    Some(p) => {
                        let path = self.path(Path::new(p.get_ref()));
                        let text = std::fs::read_to_string(&path).map_err(|e| {
                            self.err(
                                p.span(),
                                "state.password_file",
                                format!("cannot read `{}`: {e}", path.display()),
                            )
                        })?;
                        let password = text.trim_end_matches(['\r', '\n']).to_owned();
                        if password.is_empty() {
                            return Err(self.err(
                                p.span(),
                                "state.password_file",
                                format!("`{}` is empty", path.display()),
                            ));
                        }
                        Some(password)
                    }
                };
                let key_prefix = match &raw.key_prefix {
                    None => "legate".to_owned(),
                    Some(p)
                        if (1..=64).contains(&p.get_ref().len())
                            && p.get_ref()
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) =>
                    {
                        p.get_ref().clone()
                    }
                    Some(p) => {
                        return Err(self.err(
                            p.span(),
                            "state.key_prefix",
                            "must be 1 to 64 characters of A-Z, a-z, 0-9, `-`, `_`, `.` and `:`",
                        ));
                    }
                };
                let bounded = |v: &Option<Spanned<u64>>, key: &str, default: u64, max: u64| match v
                {
                    None => Ok(default),
                    Some(n) if (1..=max).contains(n.get_ref()) => Ok(*n.get_ref()),
                    Some(n) => Err(self.err(
                        n.span(),
                        format!("state.{key}"),
                        format!("must be between 1 and {max}"),
                    )),
                };
                let connect_timeout_ms =
                    bounded(&raw.connect_timeout_ms, "connect_timeout_ms", 2_000, 60_000)?;
                let command_timeout_ms =
                    bounded(&raw.command_timeout_ms, "command_timeout_ms", 500, 30_000)?;
                let pool_size = match &raw.pool_size {
                    None => 2,
                    Some(n) if (1..=64).contains(n.get_ref()) => *n.get_ref(),
                    Some(n) => {
                        return Err(self.err(
                            n.span(),
                            "state.pool_size",
                            "must be between 1 and 64",
                        ));
                    }
                };
                Ok((
                    StateBackendConfig::Redis(legate_state::RedisSettings {
                        url: text.clone(),
                        password,
                        tls_ca_file: raw
                            .tls_ca_file
                            .as_ref()
                            .map(|p| self.path(Path::new(p.get_ref()))),
                        key_prefix,
                        pool_size,
                        connect_timeout: std::time::Duration::from_millis(connect_timeout_ms),
                        command_timeout: std::time::Duration::from_millis(command_timeout_ms),
                    }),
                    sync_interval_secs,
                ))
            }
            other => Err(self.err(
                raw.backend.span(),
                "state.backend",
                format!("unknown backend `{other}`: use `memory` (the default) or `redis`"),
            )),
        }
    }

    fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    fn check(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        if *raw.version.get_ref() != CONFIG_VERSION {
            return Err(self.err(
                raw.version.span(),
                "version",
                format!(
                    "unsupported version {}, this build reads version {CONFIG_VERSION}",
                    raw.version.get_ref()
                ),
            ));
        }
        let server = self.server(raw.server)?;
        let issuer = self.issuer(raw.issuer)?;
        let trusts = self.trusts(raw.trust, &server.public_url)?;
        let mut raw_targets = raw.target;
        let limits = self.limits(raw.limits, &mut raw_targets)?;
        let (targets, target_ca_files) = self.targets(raw_targets, issuer.default_lifetime_secs)?;
        self.keys_cover_targets(&issuer, &targets)?;
        let credential_cache = self.credential_cache(&raw.credential_cache)?;
        let policy = match (raw.policy.dir, raw.policy.bundled) {
            (Some(_), true) => {
                return Err(self.err(0..0, "policy", "set either `dir` or `bundled`, not both"));
            }
            (Some(dir), false) => PolicySource::Dir(self.path(&dir)),
            // SECURITY: never fall back to the example policies silently; they permit
            // example repositories and namespaces.
            (None, false) => {
                return Err(self.err(
                    0..0,
                    "policy.dir",
                    "no policies configured: set `dir` (or `bundled = true` to run the examples)",
                ));
            }
            (None, true) => PolicySource::Bundled,
        };
        let policy_reload_interval_secs = match raw.policy.reload_interval_secs {
            None => crate::reload::DEFAULT_RELOAD_INTERVAL_SECS,
            Some(n) if *n.get_ref() <= MAX_RELOAD_INTERVAL_SECS => *n.get_ref(),
            Some(n) => {
                return Err(self.err(
                    n.span(),
                    "policy.reload_interval_secs",
                    format!("must be at most {MAX_RELOAD_INTERVAL_SECS} (0 turns polling off)"),
                ));
            }
        };
        let (state_backend, sync_interval_secs) = self.state_backend(&raw.state)?;
        let sink = match raw.audit.path.as_deref() {
            None | Some("-") => AuditSinkConfig::Stdout,
            Some(p) => AuditSinkConfig::File(self.path(Path::new(p))),
        };
        let queue_capacity = match raw.audit.queue_capacity {
            None => crate::audit::DEFAULT_QUEUE_CAPACITY,
            Some(q) if (1..=1_000_000).contains(q.get_ref()) => *q.get_ref(),
            Some(q) => {
                return Err(self.err(
                    q.span(),
                    "audit.queue_capacity",
                    "must be between 1 and 1000000",
                ));
            }
        };
        let audit = AuditConfig {
            sink,
            queue_capacity,
        };
        let admin = self.admin(raw.admin, &trusts, &targets)?;
        let ledger = self.ledger(raw.ledger)?;
        let replay_capacity = *raw.state.replay_capacity.get_ref();
        if replay_capacity == 0 {
            // A zero-capacity cache would refuse every single-use exchange.
            return Err(self.err(
                raw.state.replay_capacity.span(),
                "state.replay_capacity",
                "must be at least 1",
            ));
        }
        let replay_capacity_per_trust = match raw.state.replay_capacity_per_trust {
            None => None,
            Some(n) if (1..=replay_capacity).contains(n.get_ref()) => Some(*n.get_ref()),
            Some(n) => {
                return Err(self.err(
                    n.span(),
                    "state.replay_capacity_per_trust",
                    format!("must be between 1 and `state.replay_capacity` ({replay_capacity})"),
                ));
            }
        };
        let revocation = RevocationConfig {
            max_entries: match raw.revocation.max_entries {
                None => legate_state::revocation::DEFAULT_MAX_REVOCATIONS,
                Some(n) if (1..=MAX_REVOCATIONS).contains(n.get_ref()) => *n.get_ref(),
                Some(n) => {
                    return Err(self.err(
                        n.span(),
                        "revocation.max_entries",
                        format!("must be between 1 and {MAX_REVOCATIONS}"),
                    ));
                }
            },
        };
        Ok(Config {
            base_dir: self.base_dir.to_path_buf(),
            server,
            issuer,
            trusts,
            policy,
            policy_reload_interval_secs,
            targets,
            target_ca_files,
            credential_cache,
            state: StateConfig {
                replay_capacity,
                replay_capacity_per_trust,
                backend: state_backend,
                sync_interval_secs,
            },
            audit,
            admin,
            limits,
            revocation,
            ledger,
        })
    }

    /// `[ledger]`: every key optional, each within its range.
    fn ledger(&self, raw: RawLedger) -> Result<LedgerConfig, ConfigError> {
        let defaults = LedgerConfig::default();
        let size = |value: Option<Spanned<usize>>, key: &str, default: usize| match value {
            None => Ok(default),
            Some(n) if (1..=MAX_LEDGER_SIZE).contains(n.get_ref()) => Ok(*n.get_ref()),
            Some(n) => Err(self.err(
                n.span(),
                format!("ledger.{key}"),
                format!("must be between 1 and {MAX_LEDGER_SIZE}"),
            )),
        };
        let retention_secs = match raw.retention_secs {
            None => defaults.retention_secs,
            Some(n) if LEDGER_RETENTION_RANGE.contains(n.get_ref()) => *n.get_ref(),
            Some(n) => {
                return Err(self.err(
                    n.span(),
                    "ledger.retention_secs",
                    format!(
                        "must be between {} and {} (one minute to one year)",
                        LEDGER_RETENTION_RANGE.start(),
                        LEDGER_RETENTION_RANGE.end()
                    ),
                ));
            }
        };
        Ok(LedgerConfig {
            retention_secs,
            max_entries: size(raw.max_entries, "max_entries", defaults.max_entries)?,
            max_inventory_keys: size(
                raw.max_inventory_keys,
                "max_inventory_keys",
                defaults.max_inventory_keys,
            )?,
            queue_capacity: size(
                raw.queue_capacity,
                "queue_capacity",
                defaults.queue_capacity,
            )?,
        })
    }

    /// `[limits]`, and each target's `limits` (taken out of the raw targets).
    fn limits(
        &self,
        raw: RawLimits,
        targets: &mut [Spanned<RawTarget>],
    ) -> Result<LimitsConfig, ConfigError> {
        let pair = |raw: RawLimits, prefix: &str| -> Result<TargetLimits, ConfigError> {
            Ok(TargetLimits {
                per_subject: self.rate(raw.per_subject, &format!("{prefix}per_subject"))?,
                per_target: self.rate(raw.per_target, &format!("{prefix}per_target"))?,
            })
        };
        let global = pair(raw, "limits.")?;
        let mut overrides = BTreeMap::new();
        for (i, t) in targets.iter_mut().enumerate() {
            let span = t.span();
            let t = t.get_mut();
            if let Some(raw) = t.limits.take() {
                let at = |mut e: ConfigError| {
                    if e.line.is_none() {
                        let (line, column) = line_col(self.src, span.start);
                        (e.line, e.column) = (Some(line), Some(column));
                    }
                    e
                };
                let limits = pair(raw, &format!("target[{i}].limits.")).map_err(at)?;
                overrides.insert(t.name.clone(), limits);
            }
        }
        Ok(LimitsConfig {
            per_subject: global.per_subject,
            per_target: global.per_target,
            targets: overrides,
        })
    }

    fn rate(&self, raw: Option<Spanned<RawRate>>, key: &str) -> Result<Option<Rate>, ConfigError> {
        let Some(raw) = raw else { return Ok(None) };
        let span = raw.span();
        let r = raw.into_inner();
        let field = |name: &str, value: u64, max: u64| -> Result<u32, ConfigError> {
            match u32::try_from(value) {
                Ok(v) if (1..=max).contains(&value) => Ok(v),
                _ => Err(self.err(
                    span.clone(),
                    format!("{key}.{name}"),
                    format!("must be between 1 and {max}"),
                )),
            }
        };
        Ok(Some(Rate {
            rate: field("rate", r.rate, MAX_RATE)?,
            per_secs: field("per_secs", r.per_secs, MAX_RATE_PERIOD_SECS)?,
            burst: field("burst", r.burst, MAX_RATE)?,
        }))
    }

    /// `[admin]`.
    ///
    /// SECURITY: the admin audience is what tells an admin token from an exchange token.
    /// Equal to a trust's audience, a workload's exchange token would authenticate an
    /// admin (and the admin's token would be exchangeable); equal to a target's audience,
    /// a token Legate mints would; a cloud's audience would be shared with every
    /// federation token of that cloud.
    fn admin(
        &self,
        raw: RawAdmin,
        trusts: &[TrustEntry],
        targets: &[Target],
    ) -> Result<AdminConfig, ConfigError> {
        let recent_decisions = match raw.recent_decisions {
            None => DEFAULT_RECENT_DECISIONS,
            Some(n) if (1..=MAX_RECENT_DECISIONS).contains(n.get_ref()) => *n.get_ref(),
            Some(n) => {
                return Err(self.err(
                    n.span(),
                    "admin.recent_decisions",
                    format!("must be between 1 and {MAX_RECENT_DECISIONS}"),
                ));
            }
        };
        let audience = match raw.audience {
            None if raw.enabled => {
                return Err(self.err(
                    0..0,
                    "admin.audience",
                    "required when `enabled = true`: the `aud` admin tokens carry, distinct from every exchange audience",
                ));
            }
            None => None,
            Some(aud) => {
                let span = aud.span();
                let aud = aud.into_inner();
                let refuse = |why: String| Err(self.err(span.clone(), "admin.audience", why));
                if aud.is_empty() {
                    return refuse("must not be empty".to_owned());
                }
                if let Some(t) = trusts.iter().find(|t| t.audiences.contains(&aud)) {
                    return refuse(format!(
                        "`{aud}` is an exchange audience of trust `{}`: its exchange tokens would be admin credentials; use a distinct audience",
                        t.name
                    ));
                }
                if let Some(t) = targets.iter().find(|t| t.audience == aud) {
                    return refuse(format!(
                        "`{aud}` is the audience of target `{}`: tokens Legate mints would be admin credentials; use a distinct audience",
                        t.name
                    ));
                }
                if is_cloud_audience(&aud) {
                    return refuse(format!(
                        "`{aud}` is a cloud's assertion audience: every federation token of that cloud would carry it; use a distinct audience"
                    ));
                }
                Some(aud)
            }
        };
        // Introspection authenticates its callers as the admin endpoints do: without
        // them there is no admin audience to check.
        let introspection = match raw.introspection {
            Some(on) if *on.get_ref() && !raw.enabled => {
                return Err(self.err(
                    on.span(),
                    "admin.introspection",
                    "needs `enabled = true`: introspection callers authenticate with tokens of the admin audience",
                ));
            }
            Some(on) => *on.get_ref(),
            None => false,
        };
        Ok(AdminConfig {
            enabled: raw.enabled,
            audience,
            recent_decisions,
            introspection,
        })
    }

    fn server(&self, raw: RawServer) -> Result<ServerConfig, ConfigError> {
        let listen = raw.listen.get_ref().parse::<SocketAddr>().map_err(|e| {
            self.err(
                raw.listen.span(),
                "server.listen",
                format!("not a socket address: {e}"),
            )
        })?;
        let url = raw.public_url.get_ref();
        let https = url
            .strip_prefix("https://")
            .is_some_and(|rest| !rest.is_empty());
        let local_http = url.strip_prefix("http://").is_some_and(|rest| {
            let authority = rest.split('/').next().unwrap_or(rest);
            let host = match authority.strip_prefix('[') {
                Some(v6) => v6.split(']').next().map(|h| format!("[{h}]")),
                None => authority.split(':').next().map(str::to_owned),
            };
            host.is_some_and(|h| h == "127.0.0.1" || h == "localhost" || h == "[::1]")
        });
        if !(https || local_http) || url.ends_with('/') || url.contains(['?', '#']) {
            return Err(self.err(
                raw.public_url.span(),
                "server.public_url",
                "must be an https url (http only on loopback) without a trailing slash, query or fragment",
            ));
        }
        let mut trusted_proxies = Vec::new();
        for (i, p) in raw.trusted_proxies.iter().enumerate() {
            let net = p
                .get_ref()
                .parse::<IpNet>()
                .or_else(|_| p.get_ref().parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    self.err(
                        p.span(),
                        format!("server.trusted_proxies[{i}]"),
                        "not an ip address or cidr",
                    )
                })?;
            trusted_proxies.push(net);
        }
        let limits = [
            &raw.max_connections,
            &raw.max_in_flight,
            &raw.header_read_timeout_secs,
            &raw.body_read_timeout_secs,
            &raw.idle_timeout_secs,
            &raw.request_timeout_secs,
            &raw.shutdown_grace_secs,
        ];
        for (value, (key, min, max)) in limits.into_iter().zip(SERVER_LIMIT_RANGES) {
            if !(min..=max).contains(value.get_ref()) {
                return Err(self.err(
                    value.span(),
                    format!("server.{key}"),
                    format!("must be between {min} and {max}"),
                ));
            }
        }
        if raw.max_in_flight.get_ref() > raw.max_connections.get_ref() {
            return Err(self.err(
                raw.max_in_flight.span(),
                "server.max_in_flight",
                "must not exceed `max_connections` (each connection carries one request at a time)",
            ));
        }
        let operator_listen = raw
            .operator_listen
            .get_ref()
            .parse::<SocketAddr>()
            .map_err(|e| {
                self.err(
                    raw.operator_listen.span(),
                    "server.operator_listen",
                    format!("not a socket address: {e}"),
                )
            })?;
        if operator_listen == listen && listen.port() != 0 {
            return Err(self.err(
                raw.operator_listen.span(),
                "server.operator_listen",
                "must differ from `listen`: the operator endpoints are not public",
            ));
        }
        let usize_of = |v: &Spanned<u64>| usize::try_from(*v.get_ref()).unwrap_or(usize::MAX);
        Ok(ServerConfig {
            listen,
            public_url: url.clone(),
            trusted_proxies,
            max_connections: usize_of(&raw.max_connections),
            max_in_flight: usize_of(&raw.max_in_flight),
            header_read_timeout_secs: *raw.header_read_timeout_secs.get_ref(),
            body_read_timeout_secs: *raw.body_read_timeout_secs.get_ref(),
            idle_timeout_secs: *raw.idle_timeout_secs.get_ref(),
            request_timeout_secs: *raw.request_timeout_secs.get_ref(),
            shutdown_grace_secs: *raw.shutdown_grace_secs.get_ref(),
            operator_listen,
        })
    }

    fn issuer(&self, raw: RawIssuer) -> Result<IssuerConfig, ConfigError> {
        let algorithm = raw
            .algorithm
            .get_ref()
            .parse::<SigningAlg>()
            .map_err(|e| self.err(raw.algorithm.span(), "issuer.algorithm", e.to_string()))?;
        if raw.keys.is_empty() && !raw.ephemeral_key {
            return Err(self.err(
                0..0,
                "issuer.keys",
                "no signing key: add `[[issuer.keys]]` with a `path`, or `ephemeral_key = true` for development",
            ));
        }
        if !raw.keys.is_empty() && raw.ephemeral_key {
            return Err(self.err(
                0..0,
                "issuer.ephemeral_key",
                "cannot be combined with `keys`",
            ));
        }
        if !(60..=86_400).contains(&raw.default_lifetime_secs) {
            return Err(self.err(
                0..0,
                "issuer.default_lifetime_secs",
                "must be between 60 and 86400",
            ));
        }
        let mut keys = Vec::with_capacity(raw.keys.len());
        for (i, k) in raw.keys.into_iter().enumerate() {
            let key_alg = match &k.algorithm {
                None => algorithm,
                Some(a) => a.get_ref().parse::<SigningAlg>().map_err(|e| {
                    self.err(
                        a.span(),
                        format!("issuer.keys[{i}].algorithm"),
                        e.to_string(),
                    )
                })?,
            };
            keys.push(KeyFile {
                path: self.path(&k.path),
                kid: k.kid,
                algorithm: key_alg,
            });
        }
        Ok(IssuerConfig {
            algorithm,
            keys,
            ephemeral_key: raw.ephemeral_key,
            default_lifetime_secs: raw.default_lifetime_secs,
        })
    }

    fn trusts(
        &self,
        raw: Vec<Spanned<RawTrust>>,
        own_url: &str,
    ) -> Result<Vec<TrustEntry>, ConfigError> {
        let mut names = HashSet::new();
        let mut issuers = HashSet::new();
        let mut out = Vec::new();
        for (i, spanned) in raw.into_iter().enumerate() {
            let span = spanned.span();
            let t = spanned.into_inner();
            let key = |field: &str| format!("trust[{i}].{field}");
            if !is_name(&t.name) {
                return Err(self.err(span, key("name"), "use letters, digits, `-` and `_` (1-64)"));
            }
            if !names.insert(t.name.clone()) {
                return Err(self.err(span, key("name"), format!("`{}` is used twice", t.name)));
            }
            if !t.issuer.starts_with("https://") {
                return Err(self.err(span, key("issuer"), "must be an https url"));
            }
            if !issuers.insert(t.issuer.clone()) {
                return Err(self.err(
                    span,
                    key("issuer"),
                    format!("`{}` is trusted twice", t.issuer),
                ));
            }
            if t.issuer == own_url {
                tracing::warn!(trust = %t.name, "Legate trusts its own issuer: its minted tokens can be exchanged again");
            }
            if t.audiences.is_empty() || t.audiences.iter().any(String::is_empty) {
                return Err(self.err(
                    span,
                    key("audiences"),
                    "list at least one non-empty audience",
                ));
            }
            let keys = match (t.jwks_uri, t.jwks_file) {
                (Some(_), Some(_)) => {
                    return Err(self.err(
                        span,
                        key("jwks_uri"),
                        "set `jwks_uri` or `jwks_file`, not both",
                    ));
                }
                (Some(uri), None) if uri.starts_with("https://") => TrustKeys::JwksUri(uri),
                (Some(_), None) => {
                    return Err(self.err(span, key("jwks_uri"), "must be an https url"));
                }
                (None, Some(file)) => TrustKeys::JwksFile(self.path(&file)),
                (None, None) => TrustKeys::Discovery,
            };
            if t.max_lifetime_secs == 0 || t.max_lifetime_secs > 7 * 86_400 {
                return Err(self.err(
                    span,
                    key("max_lifetime_secs"),
                    "must be between 1 and 604800",
                ));
            }
            if t.leeway_secs > 300 {
                return Err(self.err(span, key("leeway_secs"), "must be at most 300"));
            }
            // Zero would refuse the cached keys whenever a second has passed since the
            // fetch, so every token would wait on (and fail with) the issuer.
            if t.stale_if_error_secs == 0 {
                return Err(self.err(span, key("stale_if_error_secs"), "must be at least 1"));
            }
            let template = match &t.template {
                None => None,
                Some(name) => match legate_policy::templates::find(name) {
                    Some(template) => Some(template.id.to_owned()),
                    None => {
                        return Err(self.err(
                            span,
                            key("template"),
                            format!(
                                "unknown template `{name}`; known templates: {}",
                                legate_policy::templates::names().join(", ")
                            ),
                        ));
                    }
                },
            };
            let algorithms = t.algorithms.unwrap_or_else(|| Alg::ALL.to_vec());
            if algorithms.is_empty() {
                return Err(self.err(span, key("algorithms"), "list at least one algorithm"));
            }
            out.push(TrustEntry {
                name: t.name,
                issuer: t.issuer,
                audiences: t.audiences,
                keys,
                ca_file: t.ca_file.map(|p| self.path(&p)),
                leeway_secs: t.leeway_secs,
                max_lifetime_secs: t.max_lifetime_secs,
                required_claims: t.required_claims,
                algorithms,
                replay: match t.replay {
                    RawReplay::SingleUse => ReplayMode::SingleUse,
                    RawReplay::Reusable => ReplayMode::Reusable,
                },
                refresh_interval_secs: t.refresh_interval_secs.max(60),
                stale_if_error_secs: t.stale_if_error_secs,
                allow_private_network: t.allow_private_network,
                template,
            });
        }
        Ok(out)
    }

    fn targets(
        &self,
        raw: Vec<Spanned<RawTarget>>,
        default_lifetime: u64,
    ) -> Result<(Vec<Target>, BTreeMap<String, PathBuf>), ConfigError> {
        let mut names = HashSet::new();
        let mut out = Vec::new();
        let mut ca_files = BTreeMap::new();
        for (i, spanned) in raw.into_iter().enumerate() {
            let span = spanned.span();
            let t = spanned.into_inner();
            let key = |field: &str| format!("target[{i}].{field}");
            let err = |field: &str, msg: String| self.err(span.clone(), key(field), msg);
            if !is_name(&t.name) {
                return Err(err(
                    "name",
                    "use letters, digits, `-` and `_` (1-64)".into(),
                ));
            }
            if !names.insert(t.name.clone()) {
                return Err(err("name", format!("`{}` is used twice", t.name)));
            }
            let Some(kind) = TargetKind::parse(&t.kind) else {
                return Err(err(
                    "kind",
                    format!(
                        "unknown kind `{}`: use `jwt`, `aws`, `gcp` or `azure`",
                        t.kind
                    ),
                ));
            };
            if let Some((field, owner)) = t.kind_keys().into_iter().find(|(_, k)| *k != kind) {
                return Err(err(
                    field,
                    format!("applies to `{owner}` targets only, not `{kind}`"),
                ));
            }
            if !kind.is_cloud() {
                for (field, set) in [
                    ("ca_file", t.ca_file.is_some()),
                    ("timeout_secs", t.timeout_secs.is_some()),
                ] {
                    if set {
                        return Err(err(field, "applies to cloud targets only".into()));
                    }
                }
            }
            let max_total = match kind {
                TargetKind::Aws => legate_sts::AWS_MAX_DURATION_SECS,
                TargetKind::Gcp if t.service_account.is_some() => GCP_MAX_SA_LIFETIME_SECS,
                _ => legate_issuer::MAX_TOKEN_LIFETIME_SECS,
            };
            let min_total = if kind == TargetKind::Aws {
                legate_sts::AWS_MIN_DURATION_SECS
            } else {
                1
            };
            if !(min_total..=max_total).contains(&t.max_lifetime_secs) {
                return Err(err(
                    "max_lifetime_secs",
                    format!("must be between {min_total} and {max_total} for `{kind}` targets"),
                ));
            }
            // A cloud credential's default is the target's maximum: the credential cache
            // serves it only while more than `min_remaining_secs` remain, so a default
            // at or under that bound would make every request a cloud call.
            let default_lifetime_secs = t
                .default_lifetime_secs
                .unwrap_or(if kind == TargetKind::Jwt {
                    default_lifetime
                } else {
                    t.max_lifetime_secs
                })
                .min(t.max_lifetime_secs);
            let timeout_secs = t
                .timeout_secs
                .unwrap_or(legate_sts::DEFAULT_CLOUD_TIMEOUT_SECS);
            if !(1..=60).contains(&timeout_secs) {
                return Err(err("timeout_secs", "must be between 1 and 60".into()));
            }
            let cloud = match kind {
                TargetKind::Jwt => None,
                TargetKind::Aws => {
                    Some(CloudTarget::Aws(self.aws_target(&t, timeout_secs, &err)?))
                }
                TargetKind::Gcp => {
                    Some(CloudTarget::Gcp(self.gcp_target(&t, timeout_secs, &err)?))
                }
                TargetKind::Azure => Some(CloudTarget::Azure(self.azure_target(
                    &t,
                    timeout_secs,
                    &err,
                )?)),
            };
            let shaping = Shaping {
                session_tags: t.session_tags.clone().unwrap_or_default(),
                transitive_tag_keys: t.transitive_tag_keys.clone().unwrap_or_default(),
                source_identity: t.source_identity.clone(),
                copy_claims: t.copy_claims.clone().unwrap_or_default(),
            };
            shaping.check(kind).map_err(|e| err(e.key, e.message))?;
            let mut target = match cloud {
                None => {
                    let Some(audience) = t.audience else {
                        return Err(err("audience", "required for `jwt` targets".into()));
                    };
                    if audience.is_empty() {
                        return Err(err("audience", "must not be empty".into()));
                    }
                    Target::jwt(
                        t.name,
                        audience,
                        t.max_lifetime_secs,
                        default_lifetime_secs,
                        t.labels,
                    )
                }
                Some(cloud) => {
                    if t.audience.is_some() {
                        return Err(err(
                            "audience",
                            format!(
                                "not used by `{kind}` targets: the assertion's audience is the cloud's (`{}`)",
                                cloud.assertion_audience()
                            ),
                        ));
                    }
                    if !legate_sts::google_subject_fits(&t.name) {
                        return Err(err(
                            "name",
                            "too long: `target/<name>` must fit Google's 127-byte `google.subject`"
                                .into(),
                        ));
                    }
                    if let Some(ca) = &t.ca_file {
                        ca_files.insert(t.name.clone(), self.path(ca));
                    }
                    Target::cloud(
                        t.name,
                        cloud,
                        t.max_lifetime_secs,
                        default_lifetime_secs,
                        t.labels,
                    )
                }
            };
            target.shaping = shaping;
            out.push(target);
        }
        // SECURITY: a `jwt` target whose audience a cloud honours would let its tokens be
        // exchanged at the cloud directly, bypassing the cloud target's policy, cache and
        // audit trail.
        let aws_audiences: Vec<&str> = out
            .iter()
            .filter(|t| t.kind == TargetKind::Aws)
            .map(|t| t.audience.as_str())
            .collect();
        for (i, t) in out.iter().enumerate() {
            if t.kind == TargetKind::Jwt
                && (is_cloud_audience(&t.audience) || aws_audiences.contains(&t.audience.as_str()))
            {
                return Err(self.err(
                    0..0,
                    format!("target[{i}].audience"),
                    format!(
                        "`{}` is a cloud's assertion audience: the cloud would accept these tokens directly, bypassing policy; use a cloud target instead",
                        t.audience
                    ),
                ));
            }
        }
        Ok((out, ca_files))
    }

    fn aws_target(
        &self,
        t: &RawTarget,
        timeout_secs: u64,
        err: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<AwsTarget, ConfigError> {
        let Some(role_arn) = &t.role_arn else {
            return Err(err("role_arn", "required for `aws` targets".into()));
        };
        if !is_role_arn(role_arn) {
            return Err(err(
                "role_arn",
                format!(
                    "`{role_arn}` is not an IAM role ARN (`arn:aws:iam::<12-digit account>:role/<name>`)"
                ),
            ));
        }
        let region = t
            .region
            .clone()
            .unwrap_or_else(|| legate_sts::AWS_DEFAULT_REGION.to_owned());
        if !is_region(&region) {
            return Err(err(
                "region",
                format!("`{region}` is not an AWS region name (like `eu-west-1`)"),
            ));
        }
        let endpoint = t
            .endpoint
            .as_deref()
            .map(|e| self.endpoint(e, "endpoint", err))
            .transpose()?;
        if let Some(aud) = &t.assertion_audience
            && !is_token(aud, 255)
        {
            return Err(err(
                "assertion_audience",
                "use 1 to 255 printable ASCII characters without spaces".into(),
            ));
        }
        Ok(AwsTarget {
            role_arn: role_arn.clone(),
            region,
            endpoint,
            assertion_audience: t.assertion_audience.clone(),
            ca_pem: None,
            timeout_secs,
        })
    }

    fn gcp_target(
        &self,
        t: &RawTarget,
        timeout_secs: u64,
        err: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<GcpTarget, ConfigError> {
        let Some(provider) = &t.workload_identity_provider else {
            return Err(err(
                "workload_identity_provider",
                "required for `gcp` targets".into(),
            ));
        };
        if !is_provider_name(provider) {
            return Err(err(
                "workload_identity_provider",
                format!(
                    "`{provider}` is not a provider resource name (`projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>`)"
                ),
            ));
        }
        if let Some(sa) = &t.service_account
            && !is_service_account(sa)
        {
            return Err(err(
                "service_account",
                format!("`{sa}` is not a service account email or unique id"),
            ));
        }
        let scopes = t
            .scopes
            .clone()
            .unwrap_or_else(|| vec![legate_sts::GCP_DEFAULT_SCOPE.to_owned()]);
        if scopes.is_empty() || scopes.len() > 20 {
            return Err(err("scopes", "list 1 to 20 scopes".into()));
        }
        if let Some(bad) = scopes.iter().find(|s| !is_google_scope(s)) {
            return Err(err(
                "scopes",
                format!("`{bad}` is not an OAuth scope URL (`https://www.googleapis.com/auth/…`)"),
            ));
        }
        let sts_endpoint = self.endpoint(
            t.sts_endpoint
                .as_deref()
                .unwrap_or(legate_sts::GCP_DEFAULT_STS_ENDPOINT),
            "sts_endpoint",
            err,
        )?;
        let iam_credentials_endpoint = self.endpoint(
            t.iam_credentials_endpoint
                .as_deref()
                .unwrap_or(legate_sts::GCP_DEFAULT_IAM_ENDPOINT),
            "iam_credentials_endpoint",
            err,
        )?;
        Ok(GcpTarget {
            workload_identity_provider: provider.clone(),
            service_account: t.service_account.clone(),
            scopes,
            sts_endpoint,
            iam_credentials_endpoint,
            ca_pem: None,
            timeout_secs,
        })
    }

    fn azure_target(
        &self,
        t: &RawTarget,
        timeout_secs: u64,
        err: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<AzureTarget, ConfigError> {
        let mut ids = Vec::with_capacity(2);
        for (field, value) in [("tenant_id", &t.tenant_id), ("client_id", &t.client_id)] {
            let Some(value) = value else {
                return Err(err(field, "required for `azure` targets".into()));
            };
            if !is_guid(value) {
                return Err(err(
                    field,
                    format!("`{value}` is not a GUID (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`)"),
                ));
            }
            ids.push(value.to_ascii_lowercase());
        }
        let Some(scope) = &t.scope else {
            return Err(err("scope", "required for `azure` targets".into()));
        };
        if !is_azure_scope(scope) {
            return Err(err(
                "scope",
                format!(
                    "`{scope}` is not a client-credentials scope: use one `<resource>/.default`, like `https://management.azure.com/.default`"
                ),
            ));
        }
        let authority_host = self.endpoint(
            t.authority_host
                .as_deref()
                .unwrap_or(legate_sts::AZURE_DEFAULT_AUTHORITY),
            "authority_host",
            err,
        )?;
        let [tenant_id, client_id]: [String; 2] = ids
            .try_into()
            .map_err(|_| err("tenant_id", "internal error".into()))?;
        Ok(AzureTarget {
            tenant_id,
            client_id,
            scope: scope.clone(),
            authority_host,
            ca_pem: None,
            timeout_secs,
        })
    }

    /// Checks an endpoint override and drops a trailing `/`.
    fn endpoint(
        &self,
        url: &str,
        field: &str,
        err: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<String, ConfigError> {
        legate_sts::check_endpoint(url).map_err(|e| err(field, e.to_string()))?;
        Ok(url.trim_end_matches('/').to_owned())
    }

    /// Every algorithm the targets sign with needs a key (ephemeral issuers generate
    /// them).
    fn keys_cover_targets(
        &self,
        issuer: &IssuerConfig,
        targets: &[Target],
    ) -> Result<(), ConfigError> {
        if issuer.ephemeral_key {
            return Ok(());
        }
        for (i, t) in targets.iter().enumerate() {
            let alg = t.kind.signing_alg(issuer.algorithm);
            if !issuer.keys.iter().any(|k| k.algorithm == alg) {
                return Err(self.err(
                    0..0,
                    format!("target[{i}].kind"),
                    format!(
                        "`{}` targets sign with {alg}, but no `[[issuer.keys]]` entry has `algorithm = \"{alg}\"`",
                        t.kind
                    ),
                ));
            }
        }
        Ok(())
    }

    fn credential_cache(&self, raw: &RawCredentialCache) -> Result<CacheSettings, ConfigError> {
        if raw.min_remaining_secs > 3600 {
            return Err(self.err(
                0..0,
                "credential_cache.min_remaining_secs",
                "must be at most 3600",
            ));
        }
        if !(1..=10_000_000).contains(&raw.max_entries) {
            return Err(self.err(
                0..0,
                "credential_cache.max_entries",
                "must be between 1 and 10000000",
            ));
        }
        Ok(CacheSettings {
            min_remaining_secs: raw.min_remaining_secs,
            max_entries: raw.max_entries,
        })
    }
}

/// The longest `generateAccessToken` lifetime Google allows (12 hours, with the
/// `iam.allowServiceAccountCredentialLifetimeExtension` constraint; 1 hour without).
const GCP_MAX_SA_LIFETIME_SECS: u64 = 43_200;

/// Whether an audience is one a cloud's token service honours for federation.
fn is_cloud_audience(aud: &str) -> bool {
    let aud = aud.to_ascii_lowercase();
    aud == legate_sts::AWS_DEFAULT_AUDIENCE
        || aud == legate_sts::AZURE_ASSERTION_AUDIENCE.to_ascii_lowercase()
        || aud.starts_with("https://iam.googleapis.com/")
        || aud.starts_with("//iam.googleapis.com/")
}

/// `arn:aws[-partition]:iam::<12 digits>:role/<path/name>`, 20 to 2048 characters.
fn is_role_arn(s: &str) -> bool {
    let mut parts = s.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let partition_ok = partition
        .strip_prefix("aws")
        .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'));
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let role_ok = resource.strip_prefix("role/").is_some_and(|name| {
        !name.is_empty()
            && !name.ends_with('/')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_/-".contains(&b))
    });
    (20..=2048).contains(&s.len()) && partition_ok && account_ok && role_ok
}

/// An AWS region name: `eu-west-1`, `us-gov-west-1`, `ap-southeast-4`.
fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let letters = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    s.len() <= 32
        && parts.len() >= 3
        && parts.first().is_some_and(letters)
        && parts
            .get(1..parts.len() - 1)
            .is_some_and(|m| m.iter().all(letters))
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<id>`,
/// pool and provider ids of 4 to 32 characters from `a-z 0-9 -`.
fn is_provider_name(s: &str) -> bool {
    let id = |p: &str| {
        (4..=32).contains(&p.len())
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let parts: Vec<&str> = s.split('/').collect();
    matches!(
        parts.as_slice(),
        ["projects", number, "locations", "global", "workloadIdentityPools", pool, "providers", provider]
            if !number.is_empty()
                && number.bytes().all(|b| b.is_ascii_digit())
                && id(pool)
                && id(provider)
    )
}

/// A service account email (`name@project.iam.gserviceaccount.com`) or unique id.
fn is_service_account(s: &str) -> bool {
    if !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let ok = |p: &str| {
        !p.is_empty()
            && p.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.' || b == b'_'
            })
    };
    s.len() <= 254 && ok(local) && ok(domain) && domain.contains('.')
}

/// A Google OAuth scope: an `https://` URL without whitespace.
fn is_google_scope(s: &str) -> bool {
    s.strip_prefix("https://")
        .is_some_and(|rest| !rest.is_empty() && is_token(s, 512))
}

/// A GUID, `8-4-4-4-12` hex digits.
fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// One Entra client-credentials scope: `<resource>/.default`.
fn is_azure_scope(s: &str) -> bool {
    s.strip_suffix("/.default")
        .is_some_and(|resource| !resource.is_empty() && is_token(s, 512))
}

/// 1 to `max` printable ASCII characters without spaces.
fn is_token(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
}

fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
version = 1

[server]
listen = "127.0.0.1:0"
public_url = "https://legate.example.com"
trusted_proxies = ["10.0.0.0/8", "192.0.2.1"]

[issuer]
ephemeral_key = true

[policy]
bundled = true

[[trust]]
name = "github"
issuer = "https://token.actions.githubusercontent.com"
audiences = ["https://legate.example.com"]
required_claims = ["repository_id"]
algorithms = ["RS256"]

[[trust]]
name = "k8s"
issuer = "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC"
audiences = ["legate"]
replay = "reusable"
jwks_file = "k8s-jwks.json"

[[target]]
name = "deploy-api"
kind = "jwt"
audience = "https://deploy.example.com"
max_lifetime_secs = 600
labels = { env = "prod" }
"#;

    fn load(src: &str) -> Result<Config, ConfigError> {
        load_str(src, "legate.toml", Path::new("/etc/legate"))
    }

    /// `[state] sync_interval_secs`, `[revocation] max_entries` and `[admin]
    /// introspection`: defaults, bounds, and introspection refused without the admin
    /// endpoints (it has no audience to authenticate its callers with).
    #[test]
    fn revocation_keys_load_with_defaults_and_bounds() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.state.sync_interval_secs, DEFAULT_SYNC_INTERVAL_SECS);
        assert_eq!(
            c.revocation.max_entries,
            legate_state::revocation::DEFAULT_MAX_REVOCATIONS
        );
        assert!(!c.admin.introspection);
        let c = load(&format!(
            "{GOOD}\n[state]\nsync_interval_secs = 1\n\n[revocation]\nmax_entries = 3\n\n[admin]\nenabled = true\naudience = \"legate-admin\"\nintrospection = true\n"
        ))
        .unwrap();
        assert_eq!(c.state.sync_interval_secs, 1);
        assert_eq!(c.revocation.max_entries, 3);
        assert!(c.admin.introspection);
        for (extra, key) in [
            (
                "[state]\nsync_interval_secs = 0",
                "state.sync_interval_secs",
            ),
            (
                "[state]\nsync_interval_secs = 301",
                "state.sync_interval_secs",
            ),
            ("[revocation]\nmax_entries = 0", "revocation.max_entries"),
            (
                "[revocation]\nmax_entries = 1000001",
                "revocation.max_entries",
            ),
            ("[admin]\nintrospection = true", "admin.introspection"),
        ] {
            let e = load(&format!("{GOOD}\n{extra}\n")).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{extra}: {e}");
        }
    }

    /// `[limits]` as the docs write it, and a target's `limits` replacing one key while
    /// the other stays global; no `[limits]` means no limit at all.
    #[test]
    fn limits_load_with_per_target_overrides_and_default_to_none() {
        let src = format!(
            "{GOOD}limits = {{ per_target = {{ rate = 5, per_secs = 1, burst = 5 }} }}\n\n[limits]\nper_subject = {{ rate = 60, per_secs = 60, burst = 10 }}\nper_target = {{ rate = 600, per_secs = 60 }}\n"
        );
        let c = load(&src).unwrap();
        let minute = Rate {
            rate: 60,
            per_secs: 60,
            burst: 10,
        };
        assert_eq!(c.limits.per_subject, Some(minute));
        let deploy = c.limits.for_target("deploy-api");
        assert_eq!(deploy.per_subject, Some(minute));
        assert_eq!(
            deploy.per_target,
            Some(Rate {
                rate: 5,
                per_secs: 1,
                burst: 5
            })
        );
        let other = c.limits.for_target("other");
        assert_eq!(
            other.per_target,
            Some(Rate {
                rate: 600,
                per_secs: 60,
                burst: 1
            })
        );
        let none = load(GOOD).unwrap();
        assert_eq!(none.limits, LimitsConfig::default());
        assert_eq!(
            none.limits.for_target("deploy-api"),
            TargetLimits::default()
        );
    }

    /// A zero or absurd limit (which would refuse everything, or overflow) is refused
    /// with the file, line and key; an unknown key in a limit is refused too.
    #[test]
    fn bad_limits_are_refused_with_line_and_key() {
        let global = |table: &str| load(&format!("{GOOD}\n[limits]\nper_subject = {table}\n"));
        for (table, key) in [
            ("{ rate = 0, per_secs = 60 }", "limits.per_subject.rate"),
            ("{ rate = 1, per_secs = 0 }", "limits.per_subject.per_secs"),
            (
                "{ rate = 1, per_secs = 100000 }",
                "limits.per_subject.per_secs",
            ),
            (
                "{ rate = 1, per_secs = 1, burst = 0 }",
                "limits.per_subject.burst",
            ),
            (
                "{ rate = 5000000, per_secs = 1 }",
                "limits.per_subject.rate",
            ),
        ] {
            let e = global(table).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{table}: {e}");
            assert!(e.line.is_some(), "{table}: {e}");
        }
        let e = global("{ rate = 1, per_secs = 1, bust = 3 }").unwrap_err();
        assert!(e.to_string().contains("bust"), "{e}");
        let e = load(&format!(
            "{GOOD}limits = {{ per_subject = {{ rate = 1, per_secs = 0 }} }}\n"
        ))
        .unwrap_err();
        assert_eq!(
            e.key.as_deref(),
            Some("target[0].limits.per_subject.per_secs"),
            "{e}"
        );
        assert!(e.line.is_some(), "{e}");
    }

    /// A trust names its issuer template by id or alias; a typo is refused with the file,
    /// line and key, and the list of known templates, rather than silently running the
    /// generic lints only.
    #[test]
    fn a_trust_names_a_known_template_or_the_file_is_refused() {
        let with = |template: &str| {
            GOOD.replacen(
                "name = \"k8s\"",
                &format!("name = \"k8s\"\ntemplate = \"{template}\""),
                1,
            )
        };
        let c = load(&with("eks")).unwrap();
        assert_eq!(c.trusts[1].template.as_deref(), Some("kubernetes"));
        assert_eq!(c.trusts[0].template, None);
        let err = load(&with("github")).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("trust[1].template"));
        assert!(err.line.is_some());
        let text = err.to_string();
        assert!(
            text.contains("unknown template `github`; known templates: aks, aws-outbound")
                && text.contains("github-actions"),
            "{text}"
        );
    }

    #[test]
    fn a_complete_file_loads() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.trusts.len(), 2);
        assert_eq!(c.trusts[0].algorithms, vec![Alg::Rs256]);
        assert_eq!(c.trusts[1].replay, ReplayMode::Reusable);
        assert_eq!(
            c.trusts[1].keys,
            TrustKeys::JwksFile("/etc/legate/k8s-jwks.json".into())
        );
        assert_eq!(c.targets[0].default_lifetime_secs, 300);
        assert_eq!(c.policy, PolicySource::Bundled);
        assert_eq!(
            c.policy_reload_interval_secs,
            crate::reload::DEFAULT_RELOAD_INTERVAL_SECS
        );
        assert_eq!(c.server.trusted_proxies.len(), 2);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let src = GOOD.replace(
            "replay = \"reusable\"",
            "replay = \"reusable\"\nleway_secs = 5",
        );
        let e = load(&src).unwrap_err();
        let text = e.to_string();
        assert_eq!(
            e.line,
            Some(src.lines().position(|l| l.starts_with("leway")).unwrap() + 1)
        );
        assert!(text.starts_with("legate.toml:"), "{text}");
        assert!(text.contains("leway_secs"), "{text}");
    }

    #[test]
    fn wrong_type_names_the_key_path() {
        let src = GOOD.replace(
            "max_lifetime_secs = 600",
            "max_lifetime_secs = \"ten minutes\"",
        );
        let e = load(&src).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("target[0].max_lifetime_secs"), "{e}");
        assert_eq!(
            e.line,
            Some(src.lines().position(|l| l.contains("ten minutes")).unwrap() + 1)
        );
    }

    #[test]
    fn semantic_errors_name_the_table_line_and_key() {
        let src = GOOD.replace("kind = \"jwt\"", "kind = \"ftp\"");
        let e = load(&src).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("target[0].kind"));
        assert!(e.line.is_some());
        let src = GOOD.replace("name = \"k8s\"", "name = \"github\"");
        assert!(load(&src).unwrap_err().to_string().contains("used twice"));
    }

    /// Stops a configuration that would refuse every single-use exchange (a replay
    /// cache that can hold nothing) or starve other trusts.
    #[test]
    fn replay_capacity_zero_and_oversized_share_are_refused() {
        let src = format!("{GOOD}\n[state]\nreplay_capacity = 0\n");
        let e = load(&src).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("state.replay_capacity"), "{e}");
        assert!(e.line.is_some());
        let src =
            format!("{GOOD}\n[state]\nreplay_capacity = 10\nreplay_capacity_per_trust = 11\n");
        let e = load(&src).unwrap_err();
        assert_eq!(
            e.key.as_deref(),
            Some("state.replay_capacity_per_trust"),
            "{e}"
        );
        let src = format!("{GOOD}\n[state]\nreplay_capacity = 10\nreplay_capacity_per_trust = 5\n");
        assert_eq!(load(&src).unwrap().state.replay_capacity_per_trust, Some(5));
    }

    #[test]
    fn audit_queue_capacity_is_bounded() {
        let src = format!("{GOOD}\n[audit]\nqueue_capacity = 0\n");
        let e = load(&src).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("audit.queue_capacity"), "{e}");
        assert_eq!(load(GOOD).unwrap().audit.queue_capacity, 4_096);
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = load("version = 1\n[server\n").unwrap_err();
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn unsupported_version_is_refused() {
        let e = load(&GOOD.replace("version = 1", "version = 2")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("version"));
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn insecure_urls_are_refused() {
        let e = load(&GOOD.replace("https://token.actions", "http://token.actions")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("trust[0].issuer"));
        let e = load(&GOOD.replace(
            "https://legate.example.com\"\ntrusted",
            "http://legate.example.com\"\ntrusted",
        ))
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("server.public_url"));
    }

    #[test]
    fn http_public_url_only_on_loopback() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost",
            "http://[::1]:9",
        ] {
            let src = GOOD.replace(
                "https://legate.example.com\"\ntrusted",
                &format!("{ok}\"\ntrusted"),
            );
            assert!(load(&src).is_ok(), "{ok}");
        }
        for bad in [
            "http://localhost.evil.example",
            "http://127.0.0.1.evil.example:80",
            "http://10.0.0.1",
        ] {
            let src = GOOD.replace(
                "https://legate.example.com\"\ntrusted",
                &format!("{bad}\"\ntrusted"),
            );
            assert_eq!(
                load(&src).unwrap_err().key.as_deref(),
                Some("server.public_url"),
                "{bad}"
            );
        }
    }

    #[test]
    fn private_network_access_is_off_unless_set() {
        let c = load(GOOD).unwrap();
        assert!(c.trusts.iter().all(|t| !t.allow_private_network));
        let src = GOOD.replace(
            "algorithms = [\"RS256\"]",
            "algorithms = [\"RS256\"]\nallow_private_network = true",
        );
        let c = load(&src).unwrap();
        assert!(c.trusts[0].allow_private_network);
        assert!(!c.trusts[1].allow_private_network);
        let src = GOOD.replace(
            "algorithms = [\"RS256\"]",
            "algorithms = [\"RS256\"]\nallow_private_network = \"yes\"",
        );
        assert_eq!(
            load(&src).unwrap_err().key.as_deref(),
            Some("trust[0].allow_private_network")
        );
    }

    /// A zero stale-if-error bound would make every token wait on the issuer;
    /// it is refused, and one second is the smallest bound accepted.
    #[test]
    fn zero_stale_if_error_is_refused() {
        let with = |secs: &str| {
            GOOD.replace(
                "algorithms = [\"RS256\"]",
                &format!("algorithms = [\"RS256\"]\nstale_if_error_secs = {secs}"),
            )
        };
        let e = load(&with("0")).unwrap_err();
        assert_eq!(
            e.key.as_deref(),
            Some("trust[0].stale_if_error_secs"),
            "{e}"
        );
        assert!(e.to_string().contains("must be at least 1"), "{e}");
        assert_eq!(load(&with("1")).unwrap().trusts[0].stale_if_error_secs, 1);
    }

    #[test]
    fn policy_reload_interval_is_bounded_and_zero_turns_polling_off() {
        let with = |secs: &str| {
            GOOD.replace(
                "[policy]\nbundled = true\n",
                &format!("[policy]\nbundled = true\nreload_interval_secs = {secs}\n"),
            )
        };
        assert_eq!(load(&with("0")).unwrap().policy_reload_interval_secs, 0);
        assert_eq!(load(&with("30")).unwrap().policy_reload_interval_secs, 30);
        let e = load(&with("86401")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("policy.reload_interval_secs"), "{e}");
        assert!(e.to_string().contains("at most 86400"), "{e}");
    }

    #[test]
    fn policies_must_be_chosen_explicitly() {
        let e = load(&GOOD.replace("[policy]\nbundled = true\n", "")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("policy.dir"));
    }

    #[test]
    fn server_limits_default_to_the_documented_values() {
        let s = load(GOOD).unwrap().server;
        assert_eq!((s.max_connections, s.max_in_flight), (4096, 1024));
        assert_eq!(
            (
                s.header_read_timeout_secs,
                s.body_read_timeout_secs,
                s.idle_timeout_secs,
                s.request_timeout_secs,
                s.shutdown_grace_secs
            ),
            (5, 10, 60, 30, 20)
        );
        assert_eq!(s.operator_listen, "127.0.0.1:9464".parse().unwrap());
    }

    #[test]
    fn server_limits_are_read() {
        let src = GOOD.replace(
            "trusted_proxies =",
            "max_connections = 10\nmax_in_flight = 2\nheader_read_timeout_secs = 1\n\
             body_read_timeout_secs = 2\nidle_timeout_secs = 3\nrequest_timeout_secs = 4\n\
             shutdown_grace_secs = 0\noperator_listen = \"[::1]:9000\"\ntrusted_proxies =",
        );
        let s = load(&src).unwrap().server;
        assert_eq!((s.max_connections, s.max_in_flight), (10, 2));
        assert_eq!(
            (
                s.header_read_timeout_secs,
                s.body_read_timeout_secs,
                s.idle_timeout_secs,
                s.request_timeout_secs,
                s.shutdown_grace_secs
            ),
            (1, 2, 3, 4, 0)
        );
        assert_eq!(s.operator_listen, "[::1]:9000".parse().unwrap());
    }

    /// Stops a limit that disables itself (a zero deadline or cap, or one so large it
    /// bounds nothing) from loading: each is refused with its file, line and key.
    #[test]
    fn server_limits_out_of_range_name_file_line_and_key() {
        for (key, bad) in [
            ("max_connections", "0"),
            ("max_connections", "1000001"),
            ("max_in_flight", "0"),
            ("header_read_timeout_secs", "0"),
            ("header_read_timeout_secs", "301"),
            ("body_read_timeout_secs", "0"),
            ("idle_timeout_secs", "0"),
            ("idle_timeout_secs", "3601"),
            ("request_timeout_secs", "0"),
            ("shutdown_grace_secs", "3601"),
        ] {
            let src = GOOD.replace(
                "trusted_proxies =",
                &format!("{key} = {bad}\ntrusted_proxies ="),
            );
            let e = load(&src).unwrap_err();
            assert_eq!(
                e.key.as_deref(),
                Some(format!("server.{key}").as_str()),
                "{e}"
            );
            assert_eq!(
                e.line,
                Some(src.lines().position(|l| l.starts_with(key)).unwrap() + 1),
                "{e}"
            );
            assert!(e.to_string().contains("must be between"), "{e}");
        }
        let e = load(&GOOD.replace(
            "trusted_proxies =",
            "max_connections = 5\nmax_in_flight = 6\ntrusted_proxies =",
        ))
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("server.max_in_flight"), "{e}");
        let e = load(&GOOD.replace(
            "trusted_proxies =",
            "max_connections = -1\ntrusted_proxies =",
        ))
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("server.max_connections"), "{e}");
    }

    #[test]
    fn operator_listen_must_be_an_address_other_than_listen() {
        let with = |value: &str| {
            GOOD.replace(
                "trusted_proxies =",
                &format!("operator_listen = \"{value}\"\ntrusted_proxies ="),
            )
        };
        let e = load(&with("localhost:9464")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("server.operator_listen"), "{e}");
        assert!(e.line.is_some());
        let same = with("127.0.0.1:8443").replace("127.0.0.1:0", "127.0.0.1:8443");
        let e = load(&same).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("server.operator_listen"), "{e}");
    }

    #[test]
    fn a_signing_key_is_required() {
        let e = load(&GOOD.replace("ephemeral_key = true", "")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("issuer.keys"));
    }

    const CLOUDS: &str = r#"
[[target]]
name = "aws-deploy"
kind = "aws"
role_arn = "arn:aws:iam::123456789012:role/deploy"
max_lifetime_secs = 3600

[[target]]
name = "gcp-deploy"
kind = "gcp"
workload_identity_provider = "projects/123456789/locations/global/workloadIdentityPools/legate/providers/legate"
service_account = "deployer@proj.iam.gserviceaccount.com"

[[target]]
name = "azure-deploy"
kind = "azure"
tenant_id = "00000000-0000-0000-0000-000000000001"
client_id = "00000000-0000-0000-0000-000000000002"
scope = "https://management.azure.com/.default"
"#;

    fn with_clouds() -> String {
        format!("{GOOD}{CLOUDS}")
    }

    /// Loads `GOOD` plus the cloud targets with `from` replaced by `to`, expecting an
    /// error on `key`.
    fn refused(from: &str, to: &str, key: &str) -> ConfigError {
        let src = with_clouds().replacen(from, to, 1);
        assert_ne!(src, with_clouds(), "`{from}` not found");
        let e = load(&src).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        e
    }

    #[test]
    fn cloud_targets_load_with_their_defaults() {
        let c = load(&with_clouds()).unwrap();
        let [_, aws, gcp, azure] = c.targets.as_slice() else {
            panic!("{:?}", c.targets);
        };
        assert_eq!(aws.kind, TargetKind::Aws);
        assert_eq!(aws.audience, "sts.amazonaws.com");
        let Some(CloudTarget::Aws(a)) = &aws.cloud else {
            panic!()
        };
        assert_eq!(a.region, "us-east-1");
        assert_eq!(a.endpoint, None);
        assert_eq!(a.timeout_secs, 10);
        assert_eq!(
            gcp.audience,
            "https://iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/legate/providers/legate"
        );
        let Some(CloudTarget::Gcp(g)) = &gcp.cloud else {
            panic!()
        };
        assert_eq!(g.scopes, ["https://www.googleapis.com/auth/cloud-platform"]);
        assert_eq!(g.sts_endpoint, "https://sts.googleapis.com");
        assert_eq!(
            g.iam_credentials_endpoint,
            "https://iamcredentials.googleapis.com"
        );
        assert_eq!(azure.audience, "api://AzureADTokenExchange");
        let Some(CloudTarget::Azure(z)) = &azure.cloud else {
            panic!()
        };
        assert_eq!(z.authority_host, "https://login.microsoftonline.com");
        assert_eq!(c.credential_cache, CacheSettings::default());
        assert_eq!(c.signing_algs(), [SigningAlg::Es256, SigningAlg::Rs256]);
    }

    #[test]
    fn optional_cloud_keys_are_read() {
        let src = with_clouds()
            .replace(
                "max_lifetime_secs = 3600\n",
                "max_lifetime_secs = 3600\nregion = \"eu-west-1\"\nendpoint = \"http://127.0.0.1:5000/\"\nassertion_audience = \"legate\"\nca_file = \"sts-ca.pem\"\ntimeout_secs = 2\n",
            )
            .replace(
                "providers/legate\"\n",
                "providers/legate\"\nscopes = [\"https://www.googleapis.com/auth/devstorage.read_only\"]\nsts_endpoint = \"https://sts.internal.example\"\n",
            )
            .replace(
                "/.default\"\n",
                "/.default\"\nauthority_host = \"http://localhost:7000\"\n",
            )
            + "\n[credential_cache]\nmin_remaining_secs = 60\nmax_entries = 5\n";
        let c = load(&src).unwrap();
        let Some(CloudTarget::Aws(a)) = &c.targets[1].cloud else {
            panic!()
        };
        assert_eq!(a.region, "eu-west-1");
        assert_eq!(a.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(c.targets[1].audience, "legate");
        assert_eq!(a.timeout_secs, 2);
        assert_eq!(
            c.target_ca_files.get("aws-deploy"),
            Some(&PathBuf::from("/etc/legate/sts-ca.pem"))
        );
        let Some(CloudTarget::Gcp(g)) = &c.targets[2].cloud else {
            panic!()
        };
        assert_eq!(
            g.scopes,
            ["https://www.googleapis.com/auth/devstorage.read_only"]
        );
        assert_eq!(g.sts_endpoint, "https://sts.internal.example");
        let Some(CloudTarget::Azure(z)) = &c.targets[3].cloud else {
            panic!()
        };
        assert_eq!(z.authority_host, "http://localhost:7000");
        assert_eq!(
            c.credential_cache,
            CacheSettings {
                min_remaining_secs: 60,
                max_entries: 5
            }
        );
    }

    #[test]
    fn malformed_cloud_identifiers_are_refused() {
        for (from, to, key) in [
            (
                "arn:aws:iam::123456789012:role/deploy",
                "arn:aws:iam::1234:role/deploy",
                "target[1].role_arn",
            ),
            (
                "arn:aws:iam::123456789012:role/deploy",
                "arn:aws:s3:::bucket",
                "target[1].role_arn",
            ),
            (
                "arn:aws:iam::123456789012:role/deploy",
                "arn:aws:iam::123456789012:user/deploy",
                "target[1].role_arn",
            ),
            (
                "arn:aws:iam::123456789012:role/deploy",
                "arn:aws:iam::123456789012:role/",
                "target[1].role_arn",
            ),
            (
                "max_lifetime_secs = 3600\n",
                "max_lifetime_secs = 3600\nregion = \"Mars\"\n",
                "target[1].region",
            ),
            (
                "projects/123456789/",
                "projects/my-project/",
                "target[2].workload_identity_provider",
            ),
            (
                "providers/legate\"",
                "providers/x\"",
                "target[2].workload_identity_provider",
            ),
            (
                "locations/global",
                "locations/europe",
                "target[2].workload_identity_provider",
            ),
            (
                "deployer@proj.iam.gserviceaccount.com",
                "deployer",
                "target[2].service_account",
            ),
            (
                "00000000-0000-0000-0000-000000000001",
                "contoso",
                "target[3].tenant_id",
            ),
            (
                "00000000-0000-0000-0000-000000000002",
                "0000-0000",
                "target[3].client_id",
            ),
            (
                "https://management.azure.com/.default",
                "https://management.azure.com/user_impersonation",
                "target[3].scope",
            ),
            (
                "https://management.azure.com/.default",
                "a/.default b/.default",
                "target[3].scope",
            ),
        ] {
            refused(from, to, key);
        }
        refused(
            "service_account = \"deployer@proj.iam.gserviceaccount.com\"",
            "scopes = [\"cloud-platform\"]",
            "target[2].scopes",
        );
        refused(
            "service_account = \"deployer@proj.iam.gserviceaccount.com\"",
            "scopes = []",
            "target[2].scopes",
        );
    }

    #[test]
    fn required_cloud_keys_are_required() {
        refused(
            "role_arn = \"arn:aws:iam::123456789012:role/deploy\"\n",
            "",
            "target[1].role_arn",
        );
        refused(
            "workload_identity_provider = \"projects/123456789/locations/global/workloadIdentityPools/legate/providers/legate\"\n",
            "",
            "target[2].workload_identity_provider",
        );
        refused(
            "tenant_id = \"00000000-0000-0000-0000-000000000001\"\n",
            "",
            "target[3].tenant_id",
        );
        refused(
            "scope = \"https://management.azure.com/.default\"\n",
            "",
            "target[3].scope",
        );
        refused(
            "audience = \"https://deploy.example.com\"\n",
            "",
            "target[0].audience",
        );
    }

    /// Stops a cloud endpoint override from sending Legate's assertions over plain HTTP
    /// off the local machine.
    #[test]
    fn plain_http_endpoints_are_refused_off_loopback() {
        let e = refused(
            "max_lifetime_secs = 3600\n",
            "max_lifetime_secs = 3600\nendpoint = \"http://sts.amazonaws.com\"\n",
            "target[1].endpoint",
        );
        assert!(e.message.contains("https"), "{e}");
        refused(
            "providers/legate\"\n",
            "providers/legate\"\niam_credentials_endpoint = \"http://10.0.0.1\"\n",
            "target[2].iam_credentials_endpoint",
        );
        refused(
            "/.default\"\n",
            "/.default\"\nauthority_host = \"https://u:p@login.example\"\n",
            "target[3].authority_host",
        );
    }

    #[test]
    fn keys_of_another_kind_and_audience_on_clouds_are_refused() {
        let e = refused(
            "kind = \"aws\"\n",
            "kind = \"aws\"\nscope = \"https://management.azure.com/.default\"\n",
            "target[1].scope",
        );
        assert!(e.message.contains("`azure` targets only"), "{e}");
        refused(
            "kind = \"gcp\"\n",
            "kind = \"gcp\"\naudience = \"x\"\n",
            "target[2].audience",
        );
        refused(
            "kind = \"jwt\"\n",
            "kind = \"jwt\"\nrole_arn = \"arn:aws:iam::123456789012:role/deploy\"\n",
            "target[0].role_arn",
        );
        refused(
            "kind = \"jwt\"\n",
            "kind = \"jwt\"\nca_file = \"ca.pem\"\n",
            "target[0].ca_file",
        );
    }

    /// Stops a `jwt` target from minting tokens a cloud would honour directly, which
    /// would bypass the cloud target's policy, cache and audit trail.
    #[test]
    fn a_jwt_target_with_a_cloud_audience_is_refused() {
        for aud in [
            "sts.amazonaws.com",
            "STS.amazonaws.com",
            "api://AzureADTokenExchange",
            "https://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x",
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x",
        ] {
            let e = refused(
                "audience = \"https://deploy.example.com\"",
                &format!("audience = \"{aud}\""),
                "target[0].audience",
            );
            assert!(e.message.contains("bypassing policy"), "{e}");
        }
        // A custom AWS assertion audience is a cloud audience too.
        let src = with_clouds().replace(
            "max_lifetime_secs = 3600\n",
            "max_lifetime_secs = 3600\nassertion_audience = \"https://deploy.example.com\"\n",
        );
        assert_eq!(
            load(&src).unwrap_err().key.as_deref(),
            Some("target[0].audience")
        );
    }

    /// Stops a config AWS would fail on at every call: AWS refuses durations below 900 s
    /// or above 43200 s rather than clamping them.
    #[test]
    fn aws_lifetimes_must_be_within_what_sts_issues() {
        refused(
            "max_lifetime_secs = 3600",
            "max_lifetime_secs = 600",
            "target[1].max_lifetime_secs",
        );
        refused(
            "max_lifetime_secs = 3600",
            "max_lifetime_secs = 86400",
            "target[1].max_lifetime_secs",
        );
    }

    #[test]
    fn grant_shaping_keys_load_onto_their_targets() {
        let src = with_clouds()
            .replacen(
                "max_lifetime_secs = 3600",
                "max_lifetime_secs = 3600\nsession_tags = { Repo = \"repository\", Env = \"environment\" }\ntransitive_tag_keys = [\"Repo\"]\nsource_identity = \"actor\"",
                1,
            )
            .replacen(
                "labels = { env = \"prod\" }",
                "labels = { env = \"prod\" }\ncopy_claims = [\"repository\", \"ref\"]",
                1,
            );
        let c = load(&src).unwrap();
        let (jwt, aws) = (&c.targets[0], &c.targets[1]);
        assert_eq!(jwt.shaping.copy_claims, ["repository", "ref"]);
        assert_eq!(aws.shaping.session_tags.len(), 2);
        assert_eq!(aws.shaping.transitive_tag_keys, ["Repo"]);
        assert_eq!(aws.shaping.source_identity.as_deref(), Some("actor"));
    }

    /// Stops grant shaping AWS (or Legate's own claims) would refuse from loading: the
    /// error names the file, the target's line and the key.
    #[test]
    fn grant_shaping_that_cannot_work_is_refused_with_file_line_and_key() {
        let aws = "max_lifetime_secs = 3600";
        for (extra, key) in [
            (
                "session_tags = { \"aws:team\" = \"team\" }",
                "target[1].session_tags",
            ),
            (
                "session_tags = { \"a;b\" = \"team\" }",
                "target[1].session_tags",
            ),
            (
                "session_tags = { A = \"a\" }\ntransitive_tag_keys = [\"B\"]",
                "target[1].transitive_tag_keys",
            ),
            ("copy_claims = [\"ref\"]", "target[1].copy_claims"),
        ] {
            let e = refused(aws, &format!("{aws}\n{extra}"), key);
            assert!(e.line.is_some(), "{e}");
            assert!(e.to_string().starts_with("legate.toml:"), "{e}");
        }
        let fifty_one: Vec<String> = (0..51).map(|i| format!("k{i} = \"c\"")).collect();
        refused(
            aws,
            &format!("{aws}\nsession_tags = {{ {} }}", fifty_one.join(", ")),
            "target[1].session_tags",
        );
        for claim in ["sub", "aud", "act", "workload"] {
            let e = refused(
                "labels = { env = \"prod\" }",
                &format!("labels = {{ env = \"prod\" }}\ncopy_claims = [\"{claim}\"]"),
                "target[0].copy_claims",
            );
            assert!(e.message.contains("cannot be copied"), "{e}");
        }
        refused(
            "kind = \"gcp\"",
            "kind = \"gcp\"\nsource_identity = \"actor\"",
            "target[2].source_identity",
        );
    }

    #[test]
    fn google_subject_limit_is_enforced_by_the_name_rules() {
        // Names are at most 64 bytes, so `target/<name>` always fits 127 bytes.
        assert!(legate_sts::google_subject_fits(&"n".repeat(64)));
        let long = "n".repeat(65);
        let e = refused(
            "name = \"gcp-deploy\"",
            &format!("name = \"{long}\""),
            "target[2].name",
        );
        assert!(e.message.contains("1-64"), "{e}");
    }

    #[test]
    fn key_algorithms_must_cover_the_targets() {
        let keys = "[issuer]\nkeys = [{ path = \"ec.pem\" }]\n";
        let src = with_clouds().replace("[issuer]\nephemeral_key = true\n", keys);
        let e = load(&src).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("target[3].kind"), "{e}");
        assert!(e.message.contains("RS256"), "{e}");

        let keys = "[issuer]\nkeys = [{ path = \"ec.pem\" }, { path = \"rsa.pem\", algorithm = \"RS256\" }]\n";
        let c = load(&with_clouds().replace("[issuer]\nephemeral_key = true\n", keys)).unwrap();
        assert_eq!(c.issuer.keys[0].algorithm, SigningAlg::Es256);
        assert_eq!(c.issuer.keys[1].algorithm, SigningAlg::Rs256);

        let keys = "[issuer]\nkeys = [{ path = \"k.pem\", algorithm = \"HS256\" }]\n";
        let e = load(&GOOD.replace("[issuer]\nephemeral_key = true\n", keys)).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("issuer.keys[0].algorithm"), "{e}");
    }

    #[test]
    fn ephemeral_issuers_generate_one_key_per_needed_algorithm() {
        assert_eq!(load(GOOD).unwrap().signing_algs(), [SigningAlg::Es256]);
        let azure_only = GOOD.replace(
            "[[target]]\nname = \"deploy-api\"\nkind = \"jwt\"\naudience = \"https://deploy.example.com\"\n",
            "[[target]]\nname = \"deploy-api\"\nkind = \"azure\"\ntenant_id = \"00000000-0000-0000-0000-000000000001\"\nclient_id = \"00000000-0000-0000-0000-000000000002\"\nscope = \"api://x/.default\"\n",
        );
        assert_eq!(
            load(&azure_only).unwrap().signing_algs(),
            [SigningAlg::Rs256]
        );
    }

    #[test]
    fn credential_cache_settings_are_bounded() {
        for (body, key) in [
            (
                "min_remaining_secs = 7200",
                "credential_cache.min_remaining_secs",
            ),
            ("max_entries = 0", "credential_cache.max_entries"),
        ] {
            let src = format!("{GOOD}\n[credential_cache]\n{body}\n");
            assert_eq!(load(&src).unwrap_err().key.as_deref(), Some(key));
        }
        let src = format!("{GOOD}\n[credential_cache]\nttl = 5\n");
        assert!(load(&src).unwrap_err().to_string().contains("ttl"));
    }

    #[test]
    fn ledger_defaults_and_ranges() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.ledger, LedgerConfig::default());
        assert_eq!(c.ledger.retention_secs, 7 * 86_400);
        let c = load(&format!(
            "{GOOD}\n[ledger]\nretention_secs = 3600\nmax_entries = 10\nmax_inventory_keys = 20\nqueue_capacity = 30\n"
        ))
        .unwrap();
        assert_eq!(
            c.ledger,
            LedgerConfig {
                retention_secs: 3600,
                max_entries: 10,
                max_inventory_keys: 20,
                queue_capacity: 30,
            }
        );
        for (line, key) in [
            ("retention_secs = 59", "ledger.retention_secs"),
            ("retention_secs = 31536001", "ledger.retention_secs"),
            ("max_entries = 0", "ledger.max_entries"),
            ("max_inventory_keys = 10000001", "ledger.max_inventory_keys"),
            ("queue_capacity = 0", "ledger.queue_capacity"),
        ] {
            let e = load(&format!("{GOOD}\n[ledger]\n{line}\n")).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{e}");
            assert!(e.line.is_some(), "{e}");
        }
        let e = load(&format!("{GOOD}\n[ledger]\nretention = 1\n")).unwrap_err();
        assert!(e.to_string().contains("retention"), "{e}");
    }

    #[test]
    fn admin_is_off_by_default_and_needs_an_audience_when_on() {
        let c = load(GOOD).unwrap();
        assert!(!c.admin.enabled);
        assert_eq!(c.admin.recent_decisions, DEFAULT_RECENT_DECISIONS);
        let e = load(&format!("{GOOD}\n[admin]\nenabled = true\n")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("admin.audience"), "{e}");
        let c = load(&format!(
            "{GOOD}\n[admin]\nenabled = true\naudience = \"legate-admin\"\nrecent_decisions = 10\n"
        ))
        .unwrap();
        assert!(c.admin.enabled);
        assert_eq!(c.admin.audience.as_deref(), Some("legate-admin"));
        assert_eq!(c.admin.recent_decisions, 10);
        for bad in [0, MAX_RECENT_DECISIONS + 1] {
            let e = load(&format!(
                "{GOOD}\n[admin]\nenabled = true\naudience = \"a\"\nrecent_decisions = {bad}\n"
            ))
            .unwrap_err();
            assert_eq!(e.key.as_deref(), Some("admin.recent_decisions"), "{e}");
        }
    }

    /// Stops token confusion between the admin door and the exchange door: an admin
    /// audience that is also a trust's exchange audience would make every exchange token
    /// of that trust an admin credential (and admin tokens exchangeable); a target's
    /// audience would make Legate's own minted tokens admin credentials; a cloud's
    /// audience is shared with every federation token of that cloud.
    #[test]
    fn an_admin_audience_shared_with_an_exchange_or_cloud_audience_is_refused() {
        for (aud, why) in [
            ("legate", "exchange audience of trust `k8s`"),
            (
                "https://legate.example.com",
                "exchange audience of trust `github`",
            ),
            (
                "https://deploy.example.com",
                "audience of target `deploy-api`",
            ),
            ("sts.amazonaws.com", "cloud's assertion audience"),
            ("", "must not be empty"),
        ] {
            let e = load(&format!(
                "{GOOD}\n[admin]\nenabled = true\naudience = \"{aud}\"\n"
            ))
            .unwrap_err();
            assert_eq!(e.key.as_deref(), Some("admin.audience"), "{e}");
            assert!(e.to_string().contains(why), "{aud}: {e}");
            assert!(e.line.is_some(), "{e}");
        }
    }
}
