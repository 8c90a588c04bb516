//! The broker's configuration, listener and router: the four metadata shapes and the
//! checks every request passes first.
//!
//! SECURITY, in the order a request meets them:
//! 1. The listener is on loopback unless the operator opts out ([`check_listen`]); an
//!    unspecified address (`0.0.0.0`, `::`) is refused even then, because the `Host`
//!    check needs one address to compare against.
//! 2. Any request with `X-Forwarded-For` is refused (403): a local SDK never sends it, a
//!    proxy or SSRF relay does (the real IMDSv2 and GCE metadata servers do the same).
//! 3. `Host` must name the listen address (`IP:PORT`, and `localhost:PORT` when the IP
//!    is loopback): a page in a browser that DNS-rebinds `evil.example` to 127.0.0.1
//!    still sends `Host: evil.example…` and gets 403; no `Host` at all gets 400.
//! 4. Requests are bounded: the URI at [`MAX_URI_BYTES`], no request body, at most
//!    [`MAX_CONCURRENT_REQUESTS`] in flight and [`MAX_CONNECTIONS`] connections open
//!    (more wait for a slot).
//! 5. Each shape's own proof: an IMDSv2 session token, the ECS `Authorization` value,
//!    `Metadata-Flavor: Google`, the App Service `X-IDENTITY-HEADER` value, IMDS
//!    `Metadata: true`.
//! 6. Target pinning: each shape serves exactly one configured target; a role, service
//!    account, scope, resource or identity other than that target's is refused (404 for
//!    a path naming another role or account, 400 for a scope or resource), and a shape
//!    without a target is not routed at all (404).

#![expect(
    clippy::result_large_err,
    reason = "the helpers return the refusal response itself, sent as is; it is axum's size"
)]

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use legate_core::Secret;
use serde_json::json;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::limit::ConcurrencyLimitLayer;

use crate::Clock;
use crate::cache::{CacheError, CredentialCache};
use crate::fetch::{CredentialFetcher, Fetched};

/// The longest request URI accepted (a metadata path plus a scope or resource).
pub const MAX_URI_BYTES: usize = 2048;
/// Requests handled at once; more wait (the credential cache is single-flight anyway).
pub const MAX_CONCURRENT_REQUESTS: usize = 64;
/// Connections open at once; more wait in the kernel's backlog until one closes.
pub const MAX_CONNECTIONS: usize = 128;
/// IMDSv2 session tokens outstanding at once. At the limit, expired sessions are
/// dropped first; if all are live, the one expiring soonest is evicted, so a flood of
/// `PUT`s cannot lock SDKs out (they fetch a new session token for every credential
/// refresh), it can only cut other sessions short.
pub const MAX_IMDS_SESSIONS: usize = 1024;
/// The IMDSv2 session-token TTL bounds, in seconds (as EC2 enforces them).
pub const IMDS_TTL_RANGE: std::ops::RangeInclusive<u32> = 1..=21_600;
/// The App Service managed-identity API version with `expires_on` in unix seconds.
pub const APP_SERVICE_API_VERSION: &str = "2019-08-01";
/// The default Google scope of a GCP target.
pub const DEFAULT_GCP_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

const IMDS_TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
const IMDS_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const METADATA_FLAVOR: &str = "metadata-flavor";

/// The AWS shapes: IMDSv2 always, ECS when an authorization token is configured.
#[derive(Debug, Clone)]
pub struct AwsShape {
    /// The Legate target.
    pub target: String,
    /// The role name IMDS lists.
    pub role_name: String,
    /// The ECS `Authorization` value; `None` leaves `/v2/credentials` unrouted.
    pub ecs_auth_token: Option<Secret<String>>,
}

/// The GCE metadata shape.
#[derive(Debug, Clone)]
pub struct GcpShape {
    /// The Legate target.
    pub target: String,
    /// The impersonated service account; `None` answers `default` as the email.
    pub service_account: Option<String>,
    /// `project/project-id`; `None` leaves it unrouted.
    pub project_id: Option<String>,
    /// The scopes the target's tokens carry; a client asking for others gets 400.
    pub scopes: Vec<String>,
}

/// The Azure managed-identity shapes: IMDS always, App Service when a header is set.
#[derive(Debug, Clone)]
pub struct AzureShape {
    /// The Legate target.
    pub target: String,
    /// The resource the target's scope names (the scope without `/.default`).
    pub resource: String,
    /// A client id a client may name (`client_id`); other identity selectors get 400.
    pub client_id: Option<String>,
    /// The App Service `X-IDENTITY-HEADER` value; `None` leaves `/msi/token` unrouted.
    pub identity_header: Option<Secret<String>>,
}

/// What the broker serves.
#[derive(Debug, Clone, Default)]
pub struct BrokerConfig {
    /// The AWS target.
    pub aws: Option<AwsShape>,
    /// The GCP target.
    pub gcp: Option<GcpShape>,
    /// The Azure target.
    pub azure: Option<AzureShape>,
}

/// Why a configuration is refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// No target at all.
    #[error("no target: give at least one of --aws-target, --gcp-target, --azure-target")]
    NoTarget,
    /// A name that would not survive a URL path or a header.
    #[error("{what} `{value}` is not acceptable: {why}")]
    Invalid {
        /// Which setting.
        what: &'static str,
        /// The value.
        value: String,
        /// Why.
        why: &'static str,
    },
}

impl BrokerConfig {
    /// Checks names and values before anything is served.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.aws.is_none() && self.gcp.is_none() && self.azure.is_none() {
            return Err(ConfigError::NoTarget);
        }
        let invalid = |what, value: &str, why| ConfigError::Invalid {
            what,
            value: value.to_owned(),
            why,
        };
        let is_name = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
        };
        if let Some(aws) = &self.aws {
            if !is_name(&aws.role_name) || aws.role_name.len() > 64 {
                return Err(invalid(
                    "role name",
                    &aws.role_name,
                    "use 1-64 of [A-Za-z0-9+=,.@_-]",
                ));
            }
            if aws
                .ecs_auth_token
                .as_ref()
                .is_some_and(|t| !is_header_value(t.expose()))
            {
                return Err(invalid(
                    "ecs auth token",
                    "******",
                    "must be non-empty printable ascii",
                ));
            }
        }
        if let Some(gcp) = &self.gcp {
            if let Some(sa) = &gcp.service_account
                && (!is_name(sa) || !sa.contains('@'))
            {
                return Err(invalid("service account", sa, "must be an email address"));
            }
            if let Some(p) = &gcp.project_id
                && !is_name(p)
            {
                return Err(invalid("project id", p, "use [A-Za-z0-9-]"));
            }
            if gcp.scopes.is_empty() {
                return Err(invalid("gcp scopes", "", "name at least one scope"));
            }
        }
        if let Some(azure) = &self.azure {
            if azure.resource.is_empty() || azure.resource.ends_with("/.default") {
                return Err(invalid(
                    "azure resource",
                    &azure.resource,
                    "give the scope's resource",
                ));
            }
            if azure
                .identity_header
                .as_ref()
                .is_some_and(|t| !is_header_value(t.expose()))
            {
                return Err(invalid(
                    "azure identity header",
                    "******",
                    "must be non-empty printable ascii",
                ));
            }
        }
        Ok(())
    }

    /// The configured target names.
    fn targets(&self) -> Vec<String> {
        let mut t: Vec<String> = Vec::new();
        t.extend(self.aws.as_ref().map(|a| a.target.clone()));
        t.extend(self.gcp.as_ref().map(|g| g.target.clone()));
        t.extend(self.azure.as_ref().map(|a| a.target.clone()));
        t
    }
}

fn is_header_value(s: &str) -> bool {
    !s.is_empty() && s.len() <= 4096 && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Why the broker will not listen.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// A non-loopback address without `--allow-non-loopback`.
    #[error(
        "refusing to listen on `{0}`: not a loopback address (pass --allow-non-loopback to serve other hosts)"
    )]
    NotLoopback(SocketAddr),
    /// `0.0.0.0` or `::`.
    #[error("refusing to listen on `{0}`: name one address, the Host check compares against it")]
    Unspecified(SocketAddr),
    /// The socket could not be bound.
    #[error("cannot listen on `{addr}`: {source}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// SECURITY: the endpoint hands out credentials to whoever can reach it, so by
/// default only this host can.
pub fn check_listen(addr: SocketAddr, allow_non_loopback: bool) -> Result<(), BindError> {
    let ip = addr.ip().to_canonical();
    if ip.is_unspecified() {
        return Err(BindError::Unspecified(addr));
    }
    if !ip.is_loopback() && !allow_non_loopback {
        return Err(BindError::NotLoopback(addr));
    }
    Ok(())
}

/// Checks `addr` with [`check_listen`] and binds it.
pub async fn bind(addr: SocketAddr, allow_non_loopback: bool) -> Result<TcpListener, BindError> {
    check_listen(addr, allow_non_loopback)?;
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError::Io { addr, source })
}

/// Serves `broker` on `listener` until `shutdown` completes, with at most
/// [`MAX_CONNECTIONS`] connections open (more wait in the kernel's backlog).
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = BoundedListener::new(listener, MAX_CONNECTIONS);
    axum::serve(listener, router(broker))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A listener that accepts a connection only while fewer than its limit are open.
#[derive(Debug)]
pub struct BoundedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
}

impl BoundedListener {
    /// Wraps `inner`, allowing `max` open connections.
    pub fn new(inner: TcpListener, max: usize) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(max)),
        }
    }
}

impl axum::serve::Listener for BoundedListener {
    type Io = CountedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // INVARIANT: the semaphore is never closed, so acquiring only waits.
        let permit = loop {
            if let Ok(p) = self.permits.clone().acquire_owned().await {
                break p;
            }
        };
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        (
            CountedStream {
                stream,
                _permit: permit,
            },
            addr,
        )
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection holding one of its listener's slots until it is dropped.
#[derive(Debug)]
pub struct CountedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The broker's state: what it serves, where, the cache and the IMDSv2 sessions.
#[derive(Debug)]
pub struct Broker {
    config: BrokerConfig,
    hosts: BTreeSet<String>,
    cache: CredentialCache,
    clock: Arc<dyn Clock>,
    sessions: Mutex<HashMap<String, i64>>,
}

impl Broker {
    /// A broker for `config`, answering on `local` (the bound address, for the `Host`
    /// check), fetching through `fetcher`.
    pub fn new(
        config: BrokerConfig,
        local: SocketAddr,
        fetcher: Arc<dyn CredentialFetcher>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, ConfigError> {
        config.validate()?;
        let cache = CredentialCache::new(fetcher, clock.clone(), config.targets());
        Ok(Arc::new(Self {
            hosts: allowed_hosts(local),
            config,
            cache,
            clock,
            sessions: Mutex::new(HashMap::new()),
        }))
    }

    /// Creates an IMDSv2 session living `ttl` seconds.
    fn open_session(&self, ttl: u32) -> String {
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let now = self.clock.now();
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if sessions.len() >= MAX_IMDS_SESSIONS {
            sessions.retain(|_, expires_at| *expires_at > now);
        }
        if sessions.len() >= MAX_IMDS_SESSIONS
            && let Some(soonest) = sessions
                .iter()
                .min_by_key(|(_, expires_at)| **expires_at)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&soonest);
        }
        sessions.insert(token.clone(), now.saturating_add(i64::from(ttl)));
        token
    }

    /// Whether `token` is a live IMDSv2 session.
    fn session_is_live(&self, token: &str) -> bool {
        let now = self.clock.now();
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        match sessions.get(token) {
            Some(expires_at) if *expires_at > now => true,
            Some(_) => {
                sessions.remove(token);
                false
            }
            None => false,
        }
    }

    #[cfg(test)]
    fn session_count(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The `Host` values naming `local`.
fn allowed_hosts(local: SocketAddr) -> BTreeSet<String> {
    let port = local.port();
    let ip = local.ip().to_canonical();
    let mut names = vec![match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }];
    if ip.is_loopback() {
        names.push("localhost".to_owned());
    }
    let mut hosts = BTreeSet::new();
    for name in names {
        if port == 80 {
            hosts.insert(name.clone());
        }
        hosts.insert(format!("{name}:{port}"));
    }
    hosts
}

/// The router: the configured shapes behind the common checks.
pub fn router(broker: Arc<Broker>) -> Router {
    let mut app = Router::new();
    if let Some(aws) = &broker.config.aws {
        app = app
            .route("/latest/api/token", put(imds_token))
            .route(
                "/latest/meta-data/iam/security-credentials/",
                get(imds_roles),
            )
            .route(
                "/latest/meta-data/iam/security-credentials",
                get(imds_roles),
            )
            .route(
                "/latest/meta-data/iam/security-credentials/{role}",
                get(imds_credentials),
            );
        if aws.ecs_auth_token.is_some() {
            app = app.route("/v2/credentials", get(ecs_credentials));
        }
    }
    if let Some(gcp) = &broker.config.gcp {
        let sa = "/computeMetadata/v1/instance/service-accounts";
        let mut gce = Router::new()
            .route("/", get(gce_root))
            .route("/computeMetadata/v1/", get(gce_root))
            .route(&format!("{sa}/"), get(gce_accounts))
            .route(&format!("{sa}/{{account}}/"), get(gce_account))
            .route(&format!("{sa}/{{account}}/token"), get(gce_token))
            .route(&format!("{sa}/{{account}}/email"), get(gce_email))
            .route(&format!("{sa}/{{account}}/scopes"), get(gce_scopes))
            .route(&format!("{sa}/{{account}}/aliases"), get(gce_aliases));
        if gcp.project_id.is_some() {
            gce = gce.route("/computeMetadata/v1/project/project-id", get(gce_project));
        }
        // Every GCE answer, refusals included, says where it comes from.
        app = app.merge(
            gce.layer(middleware::map_response(|mut resp: Response| async move {
                resp.headers_mut()
                    .insert(METADATA_FLAVOR, HeaderValue::from_static("Google"));
                resp
            })),
        );
    }
    if let Some(azure) = &broker.config.azure {
        app = app.route("/metadata/identity/oauth2/token", get(azure_imds));
        if azure.identity_header.is_some() {
            app = app.route("/msi/token", get(azure_app_service));
        }
    }
    app.layer(middleware::from_fn_with_state(broker.clone(), guard))
        .layer(ConcurrencyLimitLayer::new(MAX_CONCURRENT_REQUESTS))
        .with_state(broker)
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        format!("{why}\n"),
    )
        .into_response()
}

/// The checks every request passes first (see the module documentation).
async fn guard(State(broker): State<Arc<Broker>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    // SECURITY: a relayed request (proxy, SSRF through a web app) is never an SDK's.
    if headers.contains_key("x-forwarded-for") {
        return refuse(
            StatusCode::FORBIDDEN,
            "requests carrying x-forwarded-for are refused",
        );
    }
    // SECURITY: DNS-rebinding defence; the browser sends the attacker's host name.
    let Some(host) = headers.get(header::HOST) else {
        return refuse(StatusCode::BAD_REQUEST, "a host header is required");
    };
    let host_ok = host
        .to_str()
        .is_ok_and(|h| broker.hosts.contains(&h.to_ascii_lowercase()));
    if !host_ok {
        return refuse(
            StatusCode::FORBIDDEN,
            "the host header does not name this endpoint",
        );
    }
    if req.uri().to_string().len() > MAX_URI_BYTES {
        return refuse(StatusCode::URI_TOO_LONG, "the request uri is too long");
    }
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if has_body {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "requests to this endpoint carry no body",
        );
    }
    let mut resp = next.run(req).await;
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Constant-time comparison of a presented header value with the configured secret.
fn header_matches(headers: &HeaderMap, name: &str, expected: &Secret<String>) -> bool {
    let Some(presented) = headers.get(name) else {
        return false;
    };
    let (a, b) = (presented.as_bytes(), expected.expose().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The cache's answer, or the response to send instead.
async fn credentials(broker: &Broker, target: &str) -> Result<Fetched, Response> {
    broker.cache.get(target).await.map_err(|e| {
        tracing::warn!(target_name = target, error = %e, "no credentials for the client");
        let status = match e {
            CacheError::UnknownTarget(_) => StatusCode::NOT_FOUND,
            CacheError::Fetch(_) => StatusCode::BAD_GATEWAY,
        };
        (status, format!("{e}\n")).into_response()
    })
}

fn wrong_kind(target: &str, wanted: &str) -> Response {
    (
        StatusCode::BAD_GATEWAY,
        format!("target `{target}` does not issue {wanted}\n"),
    )
        .into_response()
}

fn rfc3339(secs: i64) -> String {
    use aws_smithy_types::date_time::{DateTime, Format};
    DateTime::from_secs(secs)
        .fmt(Format::DateTime)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

// ------------------------------------------------------------------ AWS IMDSv2, ECS

async fn imds_token(State(broker): State<Arc<Broker>>, headers: HeaderMap) -> Response {
    let ttl = headers
        .get(IMDS_TTL_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|ttl| IMDS_TTL_RANGE.contains(ttl));
    let Some(ttl) = ttl else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "x-aws-ec2-metadata-token-ttl-seconds must be 1 to 21600",
        );
    };
    let token = broker.open_session(ttl);
    ([(IMDS_TTL_HEADER, ttl.to_string())], token).into_response()
}

/// IMDSv2: every metadata read needs a live session token.
fn imds_session(broker: &Broker, headers: &HeaderMap) -> Result<(), Response> {
    let live = headers
        .get(IMDS_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| broker.session_is_live(t));
    if live {
        Ok(())
    } else {
        Err(refuse(
            StatusCode::UNAUTHORIZED,
            "a live imdsv2 session token is required",
        ))
    }
}

async fn imds_roles(State(broker): State<Arc<Broker>>, headers: HeaderMap) -> Response {
    if let Err(resp) = imds_session(&broker, &headers) {
        return resp;
    }
    match &broker.config.aws {
        Some(aws) => aws.role_name.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn imds_credentials(
    State(broker): State<Arc<Broker>>,
    Path(role): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(resp) = imds_session(&broker, &headers) {
        return resp;
    }
    let Some(aws) = broker.config.aws.as_ref().filter(|a| a.role_name == role) else {
        return refuse(StatusCode::NOT_FOUND, "no such role");
    };
    let fetched = match credentials(&broker, &aws.target).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let Fetched::Aws {
        access_key_id,
        secret_access_key,
        session_token,
        expires_at,
    } = fetched
    else {
        return wrong_kind(&aws.target, "aws credentials");
    };
    axum::Json(json!({
        "Code": "Success",
        "LastUpdated": rfc3339(broker.clock.now()),
        "Type": "AWS-HMAC",
        "AccessKeyId": access_key_id,
        "SecretAccessKey": secret_access_key.expose(),
        "Token": session_token.expose(),
        "Expiration": rfc3339(expires_at),
    }))
    .into_response()
}

async fn ecs_credentials(State(broker): State<Arc<Broker>>, headers: HeaderMap) -> Response {
    let Some(aws) = &broker.config.aws else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(expected) = &aws.ecs_auth_token else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !header_matches(&headers, "authorization", expected) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "the authorization header is missing or wrong",
        );
    }
    let fetched = match credentials(&broker, &aws.target).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let Fetched::Aws {
        access_key_id,
        secret_access_key,
        session_token,
        expires_at,
    } = fetched
    else {
        return wrong_kind(&aws.target, "aws credentials");
    };
    axum::Json(json!({
        "AccessKeyId": access_key_id,
        "SecretAccessKey": secret_access_key.expose(),
        "Token": session_token.expose(),
        "Expiration": rfc3339(expires_at),
    }))
    .into_response()
}

// ------------------------------------------------------------------ GCE metadata

/// The GCP shape and the request's proof (`Metadata-Flavor: Google`).
fn gce<'b>(broker: &'b Broker, headers: &HeaderMap) -> Result<&'b GcpShape, Response> {
    let Some(gcp) = &broker.config.gcp else {
        return Err(StatusCode::NOT_FOUND.into_response());
    };
    if headers.get(METADATA_FLAVOR).and_then(|v| v.to_str().ok()) != Some("Google") {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "the metadata-flavor: Google header is required",
        ));
    }
    Ok(gcp)
}

/// The GCP shape when `account` names its one service account (`default` or the email).
fn gce_account_of<'b>(
    broker: &'b Broker,
    headers: &HeaderMap,
    account: &str,
) -> Result<&'b GcpShape, Response> {
    let gcp = gce(broker, headers)?;
    if account == "default" || gcp.service_account.as_deref() == Some(account) {
        Ok(gcp)
    } else {
        Err(refuse(StatusCode::NOT_FOUND, "no such service account"))
    }
}

fn gce_email_of(gcp: &GcpShape) -> &str {
    gcp.service_account.as_deref().unwrap_or("default")
}

async fn gce_root(State(broker): State<Arc<Broker>>, headers: HeaderMap) -> Response {
    match gce(&broker, &headers) {
        Ok(_) => "computeMetadata/\n".into_response(),
        Err(resp) => resp,
    }
}

async fn gce_accounts(State(broker): State<Arc<Broker>>, headers: HeaderMap) -> Response {
    match gce(&broker, &headers) {
        Ok(gcp) => match &gcp.service_account {
            Some(sa) => format!("default/\n{sa}/\n").into_response(),
            None => "default/\n".into_response(),
        },
        Err(resp) => resp,
    }
}

async fn gce_account(
    State(broker): State<Arc<Broker>>,
    Path(account): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let gcp = match gce_account_of(&broker, &headers, &account) {
        Ok(g) => g,
        Err(resp) => return resp,
    };
    if query.get("recursive").map(String::as_str) == Some("true") {
        axum::Json(json!({
            "aliases": ["default"],
            "email": gce_email_of(gcp),
            "scopes": gcp.scopes,
        }))
        .into_response()
    } else {
        "aliases\nemail\nscopes\ntoken\n".into_response()
    }
}

async fn gce_token(
    State(broker): State<Arc<Broker>>,
    Path(account): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let gcp = match gce_account_of(&broker, &headers, &account) {
        Ok(g) => g,
        Err(resp) => return resp,
    };
    // Target pinning: the token carries the target's scopes; asking for another is a
    // request this endpoint cannot honestly answer.
    if let Some(asked) = query.get("scopes")
        && !asked
            .split(',')
            .filter(|s| !s.is_empty())
            .all(|s| gcp.scopes.iter().any(|have| have == s))
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            "a scope was asked for that this target does not carry",
        );
    }
    let fetched = match credentials(&broker, &gcp.target).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let Fetched::AccessToken { token, expires_at } = fetched else {
        return wrong_kind(&gcp.target, "an access token");
    };
    axum::Json(json!({
        "access_token": token.expose(),
        "expires_in": expires_at.saturating_sub(broker.clock.now()).max(0),
        "token_type": "Bearer",
    }))
    .into_response()
}

async fn gce_email(
    State(broker): State<Arc<Broker>>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> Response {
    match gce_account_of(&broker, &headers, &account) {
        Ok(gcp) => gce_email_of(gcp).to_owned().into_response(),
        Err(resp) => resp,
    }
}

async fn gce_scopes(
    State(broker): State<Arc<Broker>>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> Response {
    match gce_account_of(&broker, &headers, &account) {
        Ok(gcp) => format!("{}\n", gcp.scopes.join("\n")).into_response(),
        Err(resp) => resp,
    }
}

async fn gce_aliases(
    State(broker): State<Arc<Broker>>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> Response {
    match gce_account_of(&broker, &headers, &account) {
        Ok(_) => "default\n".into_response(),
        Err(resp) => resp,
    }
}

async fn gce_project(State(broker): State<Arc<Broker>>, headers: HeaderMap) -> Response {
    match gce(&broker, &headers) {
        Ok(gcp) => gcp.project_id.clone().unwrap_or_default().into_response(),
        Err(resp) => resp,
    }
}

// ------------------------------------------------------------------ Azure managed identity

/// Identity selectors a client may send; only `client_id` equal to the configured one
/// is accepted (the endpoint serves one identity).
const AZURE_SELECTORS: [&str; 5] = [
    "client_id",
    "object_id",
    "principal_id",
    "mi_res_id",
    "msi_res_id",
];

/// Checks `resource` and the identity selectors against the target; the resource.
fn azure_request<'q>(
    azure: &AzureShape,
    query: &'q HashMap<String, String>,
) -> Result<&'q str, Response> {
    let Some(resource) = query.get("resource") else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "the resource parameter is required",
        ));
    };
    let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
    if !same(resource, &azure.resource) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "this endpoint serves another resource",
        ));
    }
    for selector in AZURE_SELECTORS {
        if let Some(value) = query.get(selector) {
            let ok = selector == "client_id" && azure.client_id.as_deref() == Some(value.as_str());
            if !ok {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "this endpoint serves another identity",
                ));
            }
        }
    }
    Ok(resource)
}

async fn azure_token(
    broker: &Broker,
    azure: &AzureShape,
) -> Result<(Secret<String>, i64), Response> {
    match credentials(broker, &azure.target).await? {
        Fetched::AccessToken { token, expires_at } => Ok((token, expires_at)),
        Fetched::Aws { .. } => Err(wrong_kind(&azure.target, "an access token")),
    }
}

async fn azure_app_service(
    State(broker): State<Arc<Broker>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some(azure) = &broker.config.azure else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(expected) = &azure.identity_header else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !header_matches(&headers, "x-identity-header", expected) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "the x-identity-header is missing or wrong",
        );
    }
    if query.get("api-version").map(String::as_str) != Some(APP_SERVICE_API_VERSION) {
        return refuse(StatusCode::BAD_REQUEST, "api-version must be 2019-08-01");
    }
    let resource = match azure_request(azure, &query) {
        Ok(r) => r.to_owned(),
        Err(resp) => return resp,
    };
    let (token, expires_at) = match azure_token(&broker, azure).await {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    let mut body = json!({
        "access_token": token.expose(),
        "expires_on": expires_at.to_string(),
        "resource": resource,
        "token_type": "Bearer",
    });
    if let Some(client_id) = &azure.client_id
        && let Some(members) = body.as_object_mut()
    {
        members.insert("client_id".to_owned(), json!(client_id));
    }
    axum::Json(body).into_response()
}

async fn azure_imds(
    State(broker): State<Arc<Broker>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some(azure) = &broker.config.azure else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the metadata: true header is required",
        );
    }
    if query.get("api-version").is_none_or(String::is_empty) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the api-version parameter is required",
        );
    }
    let resource = match azure_request(azure, &query) {
        Ok(r) => r.to_owned(),
        Err(resp) => return resp,
    };
    let (token, expires_at) = match azure_token(&broker, azure).await {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    let now = broker.clock.now();
    let expires_in = expires_at.saturating_sub(now).max(0).to_string();
    let mut body = json!({
        "access_token": token.expose(),
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "expires_on": expires_at.to_string(),
        "not_before": now.to_string(),
        "resource": resource,
        "token_type": "Bearer",
    });
    if let Some(client_id) = &azure.client_id
        && let Some(members) = body.as_object_mut()
    {
        members.insert("client_id".to_owned(), json!(client_id));
    }
    axum::Json(body).into_response()
}

#[cfg(test)]
mod tests;
