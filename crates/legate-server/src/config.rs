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
use legate_state::ReplayMode;
use legate_sts::TargetKind;
use serde::Deserialize;
use toml::Spanned;

/// The configuration format version this build reads.
pub const CONFIG_VERSION: u32 = 1;

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
    /// `[[target]]`.
    pub targets: Vec<legate_sts::Target>,
    /// `[state]`.
    pub state: StateConfig,
    /// `[audit]`.
    pub audit: AuditConfig,
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
    /// Algorithm of generated keys.
    pub algorithm: SigningAlg,
    /// Signing keys; the first is active, the rest stay published (rotation).
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
}

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
    state: RawState,
    #[serde(default)]
    audit: RawAudit,
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: String,
    kind: String,
    audience: String,
    #[serde(default = "default_target_max")]
    max_lifetime_secs: u64,
    default_lifetime_secs: Option<u64>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

const fn default_target_max() -> u64 {
    900
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
}

impl Default for RawState {
    fn default() -> Self {
        Self {
            backend: default_backend(),
            replay_capacity: default_replay_capacity(),
            replay_capacity_per_trust: None,
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
        let targets = self.targets(raw.target, issuer.default_lifetime_secs)?;
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
        if raw.state.backend.get_ref() != "memory" {
            return Err(self.err(
                raw.state.backend.span(),
                "state.backend",
                format!(
                    "unknown backend `{}`: only `memory` is available in this version",
                    raw.state.backend.get_ref()
                ),
            ));
        }
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
        Ok(Config {
            base_dir: self.base_dir.to_path_buf(),
            server,
            issuer,
            trusts,
            policy,
            targets,
            state: StateConfig {
                replay_capacity,
                replay_capacity_per_trust,
            },
            audit,
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
        Ok(IssuerConfig {
            algorithm,
            keys: raw
                .keys
                .into_iter()
                .map(|k| KeyFile {
                    path: self.path(&k.path),
                    kid: k.kid,
                })
                .collect(),
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
            });
        }
        Ok(out)
    }

    fn targets(
        &self,
        raw: Vec<Spanned<RawTarget>>,
        default_lifetime: u64,
    ) -> Result<Vec<legate_sts::Target>, ConfigError> {
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for (i, spanned) in raw.into_iter().enumerate() {
            let span = spanned.span();
            let t = spanned.into_inner();
            let key = |field: &str| format!("target[{i}].{field}");
            if !is_name(&t.name) {
                return Err(self.err(span, key("name"), "use letters, digits, `-` and `_` (1-64)"));
            }
            if !names.insert(t.name.clone()) {
                return Err(self.err(span, key("name"), format!("`{}` is used twice", t.name)));
            }
            let Some(kind) = TargetKind::parse(&t.kind) else {
                return Err(self.err(
                    span,
                    key("kind"),
                    format!("unknown kind `{}`: this version supports `jwt`", t.kind),
                ));
            };
            if t.audience.is_empty() {
                return Err(self.err(span, key("audience"), "must not be empty"));
            }
            if t.max_lifetime_secs == 0
                || t.max_lifetime_secs > legate_issuer::MAX_TOKEN_LIFETIME_SECS
            {
                return Err(self.err(
                    span,
                    key("max_lifetime_secs"),
                    "must be between 1 and 86400",
                ));
            }
            let default_lifetime_secs = t
                .default_lifetime_secs
                .unwrap_or(default_lifetime)
                .min(t.max_lifetime_secs);
            out.push(legate_sts::Target {
                name: t.name,
                kind,
                audience: t.audience,
                max_lifetime_secs: t.max_lifetime_secs,
                default_lifetime_secs,
                labels: t.labels,
            });
        }
        Ok(out)
    }
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
}
