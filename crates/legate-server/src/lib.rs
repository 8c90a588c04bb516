//! Legate's HTTP server.
//!
//! What it does: loads the configuration file ([`config`]), builds the request-path
//! state once ([`AppState`]), and serves the API with axum: `POST /token` (RFC 8693),
//! Legate's OIDC discovery document and JWKS, `/healthz`, `/readyz`, and, in
//! development mode only, the demo issuer. Every exchange leaves one audit event.
//! A second, operator listener ([`run_operator`]) serves `/status`: the trust list,
//! fetch errors, the policy set's hash and the server's counters, which the public
//! listener never shows; and `/metrics` for Prometheus ([`metrics`]).
//!
//! What it does not do: no verification, policy or signing logic of its own — it wires
//! `legate-trust`, `legate-policy`, `legate-state` and `legate-sts` together in the
//! order of the request path (see `ARCHITECTURE.md`).
//!
//! With `[admin] enabled = true`, the operator listener also serves the admin endpoints
//! ([`admin`]): recent decisions, policy explanations and revocations ([`revocation`]),
//! for bearer tokens of the admin audience that Cedar authorises; with `[admin]
//! introspection = true` the public listener serves RFC 7662 introspection
//! ([`introspect`]) to the relying parties of `jwt` targets, authenticated the same way.
//!
//! Layout: [`config`] (file → typed config), [`app`] (state), [`token`] (the exchange
//! handler), [`error`] (`ApiError`), [`audit`], [`net`] (client address), [`clock`],
//! [`dev`] (demo issuer), [`ledger`] (the credential ledger's writer), [`metrics`]
//! (Prometheus), [`reload`] (the active policy set and hot reload), [`revocation`]
//! (revocations and their sync), [`introspect`] (RFC 7662), [`serve`] (the accept loop
//! and its limits), and this file (routers, [`run`] and [`run_operator`]).

pub mod actor;
pub mod admin;
pub mod app;
pub mod audit;
pub mod clock;
pub mod config;
pub mod dev;
pub mod error;
#[doc(hidden)]
pub mod fuzz_logic;
pub mod introspect;
pub mod ledger;
pub mod metrics;
pub mod net;
pub mod reload;
pub mod revocation;
pub mod serve;
pub mod token;

use std::future::Future;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use legate_issuer::{DISCOVERY_PATH, JWKS_PATH, TOKEN_PATH};

pub use app::{AppState, BuildOptions, StartupError};

/// The embedded development configuration used when `legate serve` gets no file.
pub const DEV_CONFIG: &str = include_str!("dev.toml");

/// The router over `state`.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .route(DISCOVERY_PATH, get(discovery))
        .route(JWKS_PATH, get(jwks))
        .route(TOKEN_PATH, post(token::token))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if state.inner.demo.is_some() {
        router = router.route("/demo/token", post(demo_token));
    }
    // RFC 7662 introspection: where relying parties reach Legate (see `introspect`).
    if state.inner.introspection.is_some() {
        router = router.route("/introspect", post(introspect::introspect));
    }
    router
        .layer(DefaultBodyLimit::max(token::MAX_BODY_BYTES))
        .with_state(state)
}

/// The operator router over `state`: `GET /status`, `GET /metrics` ([`metrics`]), and with `[admin] enabled = true`
/// the admin endpoints ([`admin`]).
///
/// SECURITY: what it shows (issuer URLs, key counts, fetch errors, the policy set's
/// hash, and the admin endpoints' decisions and explanations) helps an attacker aim;
/// serve it only on the operator listener, never where `/token` is.
pub fn operator_router(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics_text));
    if state.inner.admin.is_some() {
        router = router.merge(admin::routes());
    }
    router
        .layer(DefaultBodyLimit::max(admin::MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` completes, under the limits of
/// `[server]` (see [`serve`]); then stops accepting and lets requests in flight finish
/// for up to `shutdown_grace_secs`. Handlers see the peer as `ConnectInfo<SocketAddr>`.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stats = state.inner.server.clone();
    serve::serve(listener, router(state), stats, shutdown, Some("/healthz")).await
}

/// Serves [`operator_router`] on `listener` until `shutdown` completes, with the public
/// deadlines and the small caps of [`serve::ServerLimits::operator`].
pub async fn run_operator(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = serve::ServerLimits::operator(state.inner.server.limits());
    let stats = Arc::new(serve::ServerStats::new(limits));
    serve::serve(listener, operator_router(state), stats, shutdown, None).await
}

fn json_document(body: &str, max_age: &'static str) -> Response {
    let mut response = (StatusCode::OK, body.to_owned()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(max_age));
    response
}

async fn discovery(State(state): State<AppState>) -> Response {
    json_document(&state.inner.discovery_json, "public, max-age=300")
}

async fn jwks(State(state): State<AppState>) -> Response {
    json_document(&state.inner.jwks_json, "public, max-age=300")
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready or not, and nothing else.
///
/// SECURITY: this answer is public. Which issuers are trusted, their key ids and fetch
/// errors, and which policies run are on the operator listener's `/status` only.
async fn readyz(State(state): State<AppState>) -> Response {
    // Not ready until every issuer's keys were attempted and, on a shared store, the
    // revocations were read once (until then every exchange is refused).
    let ready = state.inner.trust.all_attempted() && state.inner.revocations.is_loaded();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = (status, Json(serde_json::json!({ "ready": ready }))).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The operator's view: readiness, each issuer's key status, the policy set, the
/// public listener's limits and counters.
async fn status(State(state): State<AppState>) -> Response {
    let mut response = Json(status_document(&state).await).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The document `/status` (and `/admin/status`) answers.
pub(crate) async fn status_document(state: &AppState) -> serde_json::Value {
    use std::sync::atomic::Ordering;
    let issuers = state.inner.trust.status().await;
    let audit = &state.inner.audit;
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "ready": state.inner.trust.all_attempted() && state.inner.revocations.is_loaded(),
        "issuers": issuers,
        "policy": state.inner.policy.status(),
        "server": state.inner.server.snapshot(),
        "audit": {
            "queue_depth": audit.depth(),
            "queue_capacity": audit.capacity(),
            "written": audit.stats().written.load(Ordering::Relaxed),
            "refused_queue_full": audit.stats().refused_queue_full.load(Ordering::Relaxed),
            "dropped_queue_full": audit.stats().dropped_queue_full.load(Ordering::Relaxed),
        },
        "rate_limits": {
            "keys": state.inner.rate_limiter.len(),
            "limited_subject": state.inner.rate_limit_stats.limited_subject.load(Ordering::Relaxed),
            "limited_target": state.inner.rate_limit_stats.limited_target.load(Ordering::Relaxed),
            "table_full": state.inner.rate_limit_stats.table_full.load(Ordering::Relaxed),
        },
        "ledger": state.inner.ledger.status(),
        "state": state_status(state),
    })
}

/// The `state` block of `/status`: the backend, and for Redis its health, epoch, round
/// trips and errors per operation (named as in `legate_state_backend_errors_total`; the
/// URL without credentials).
fn state_status(state: &AppState) -> serde_json::Value {
    use std::sync::atomic::Ordering;
    match state.redis() {
        None => serde_json::json!({ "backend": "memory" }),
        Some(redis) => {
            let stats = redis.stats();
            let errors: serde_json::Map<String, serde_json::Value> = redis
                .state_stats()
                .snapshot()
                .map(|(op, n)| (op.as_str().to_owned(), n.into()))
                .collect();
            serde_json::json!({
                "backend": "redis",
                "url": redis.url(),
                "healthy": stats.healthy.load(Ordering::Relaxed) == 1,
                "epoch": stats.epoch.load(Ordering::Relaxed),
                "round_trips": stats.round_trips.load(Ordering::Relaxed),
                "errors": errors,
            })
        }
    }
}

/// The Prometheus scrape: the text format 0.0.4, or OpenMetrics 1.0 when the scraper's
/// `Accept` asks for it ([`metrics::Format::negotiate`]); mirrored counters read now.
async fn metrics_text(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    use std::sync::atomic::Ordering;
    let inner = &state.inner;
    let format = metrics::Format::negotiate(
        headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let audit = inner.audit.stats();
    let cache = inner.credential_cache.stats();
    let now = inner.clock.now();
    let trusts = inner
        .trust
        .status()
        .await
        .into_iter()
        .map(|t| metrics::TrustSnapshot {
            keys: u64::try_from(t.keys).unwrap_or(u64::MAX),
            age_secs: t
                .fetched_at
                .map(|at| u64::try_from(now.saturating_sub(at)).unwrap_or(0)),
            fetch_failing: t.last_error.is_some(),
            fetches: inner
                .trust
                .issuers()
                .iter()
                .find(|i| i.name() == t.name)
                .map(|i| i.fetch_counts())
                .unwrap_or_default(),
            name: t.name,
        })
        .collect();
    let snapshot = metrics::Snapshot {
        audit_queue_depth: u64::try_from(inner.audit.depth()).unwrap_or(u64::MAX),
        audit_queue_capacity: u64::try_from(inner.audit.capacity()).unwrap_or(u64::MAX),
        audit_written: audit.written.load(Ordering::Relaxed),
        audit_refused_queue_full: audit.refused_queue_full.load(Ordering::Relaxed),
        audit_dropped_queue_full: audit.dropped_queue_full.load(Ordering::Relaxed),
        credential_cache_hits: cache.hits,
        credential_cache_misses: cache.misses,
        credential_cache_entries: cache.entries,
        replay_cache_entries: u64::try_from(inner.replay.len()).unwrap_or(u64::MAX),
        trusts,
        state_errors: inner.state_stats.snapshot().collect(),
    };
    let mut response = match inner.metrics.render(&snapshot, format) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable\n").into_response()
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::VARY, HeaderValue::from_static("accept"));
    response
}

async fn demo_token(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
    let (mut subject, mut env, mut lifetime) = ("workload:hello".to_owned(), "dev".to_owned(), 300);
    for (k, v) in form_urlencoded::parse(&body) {
        match k.as_ref() {
            "subject" => subject = v.into_owned(),
            "env" => env = v.into_owned(),
            "lifetime" => lifetime = v.parse().unwrap_or(300),
            _ => {}
        }
    }
    let now = state.inner.clock.now();
    match state
        .inner
        .demo
        .as_ref()
        .and_then(|d| d.mint(&subject, &env, lifetime, now))
    {
        Some(token) => (StatusCode::OK, format!("{token}\n")).into_response(),
        None => (StatusCode::NOT_FOUND, "demo issuer unavailable\n").into_response(),
    }
}
