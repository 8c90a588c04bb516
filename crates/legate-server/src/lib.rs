//! Legate's HTTP server.
//!
//! What it does: loads the configuration file ([`config`]), builds the request-path
//! state once ([`AppState`]), and serves the API with axum: `POST /token` (RFC 8693),
//! Legate's OIDC discovery document and JWKS, `/healthz`, `/readyz`, and, in
//! development mode only, the demo issuer. Every exchange leaves one audit event.
//!
//! What it does not do: no verification, policy or signing logic of its own — it wires
//! `legate-trust`, `legate-policy`, `legate-state` and `legate-sts` together in the
//! order of the request path (see `ARCHITECTURE.md`).
//!
//! Layout: [`config`] (file → typed config), [`app`] (state), [`token`] (the exchange
//! handler), [`error`] (`ApiError`), [`audit`], [`net`] (client address), [`clock`],
//! [`dev`] (demo issuer), and this file (router and [`run`]).

pub mod app;
pub mod audit;
pub mod clock;
pub mod config;
pub mod dev;
pub mod error;
#[doc(hidden)]
pub mod fuzz_logic;
pub mod net;
pub mod token;

use std::future::Future;
use std::net::SocketAddr;

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
    router
        .layer(DefaultBodyLimit::max(token::MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` completes.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
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

async fn readyz(State(state): State<AppState>) -> Response {
    let issuers = state.inner.trust.status().await;
    let ready = state.inner.trust.all_attempted();
    let body = serde_json::json!({
        "ready": ready,
        "policies": state.inner.policy.policy_count(),
        "issuers": issuers,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
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
