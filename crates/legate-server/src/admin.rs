//! The admin endpoints, served on the operator listener (never where `/token` is) and
//! only with `[admin] enabled = true`:
//!
//! - `GET /admin/decisions/{request_id}`: the recorded decision of a recent exchange,
//!   from a bounded ring the token handler fills ([`DecisionRing`]); 404 when the id is
//!   not (or no longer) in it;
//! - `POST /admin/explain`: the explanation ([`PolicyEngine::explain`]) of a supplied
//!   claims set for a target, the JSON document of `legate policy eval --json`;
//! - `GET /admin/inventory`: the credential ledger's inventory (issuers, subjects,
//!   targets, refresh paths; [`legate_state::Inventory`]) and `GET /admin/ledger` its
//!   entries, both filtered by [`ledger_query`] and authorised as `inventory`;
//! - `GET /admin/status`: what `/status` answers, for admins (`status`);
//! - `POST /admin/revocations`, `GET /admin/revocations`: revoke an identity, list the
//!   revocations ([`crate::revocation`]).
//!
//! With `[admin] introspection = true`, `POST /introspect` ([`crate::introspect`], on
//! the public listener) authenticates its callers the same way.
//!
//! Admins authenticate like workloads: `Authorization: Bearer <JWT>` from a trusted
//! issuer, verified by the trust store exactly as a subject token is (same keys, rules and
//! replay protection), except that its `aud` must be `[admin] audience` and nothing else.
//! Cedar then decides `action == Legate::Action::"admin"` on
//! `Legate::AdminEndpoint::"<name>"` (`decisions`, `explain`, `inventory`, `status`,
//! `revocations`; `introspect` for `POST /introspect`)
//! ([`PolicyEngine::authorize_admin`]). Legate holds no admin secret.
//!
//! SECURITY: token confusion between the two audiences is stopped three times: `config
//! check` refuses an admin audience that is a trust's (or a target's, or a cloud's)
//! audience; the admin endpoints refuse a token whose `aud` names anything besides the
//! admin audience; `/token` refuses a token whose `aud` names the admin audience (see
//! [`names_admin_audience`]). Every admin request leaves an `admin_access` audit event,
//! allowed or not, without the token.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use legate_core::UnverifiedJwt;
use legate_core::jws::MAX_TOKEN_BYTES;
use legate_core::text::{escape_untrusted, escape_untrusted_within};
use legate_policy::{AdminEndpoint, AdminRequest, Explanation, PolicyEngine, PolicyRequest};
use legate_state::{
    CredentialKind, LedgerError, LedgerFilter, MAX_JTI_BYTES, ReplayMode, ReplayVerdict,
};
use legate_sts::Target;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::app::AppState;
use crate::audit::{AuditEvent, Outcome};
use crate::config::AdminConfig;
use crate::error::no_store;
use crate::net::client_ip;

/// The largest admin request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The admin endpoints' state: the admin audience and the ring of recent decisions.
#[derive(Debug)]
pub struct Admin {
    audience: String,
    decisions: DecisionRing,
    introspection: bool,
}

impl Admin {
    /// The admin state for `config`, `None` when the endpoints are off.
    pub fn new(config: &AdminConfig) -> Option<Self> {
        match (config.enabled, &config.audience) {
            (true, Some(audience)) => Some(Self {
                audience: audience.clone(),
                decisions: DecisionRing::new(config.recent_decisions),
                introspection: config.introspection,
            }),
            _ => None,
        }
    }

    /// The admin audience.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The ring of recent decisions.
    pub fn decisions(&self) -> &DecisionRing {
        &self.decisions
    }

    /// Whether `POST /introspect` is served (`[admin] introspection`).
    pub fn introspection(&self) -> bool {
        self.introspection
    }
}

/// One recorded exchange decision: what the audit event says, minus the token hash and
/// the `jti`s. No token, no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedDecision {
    /// The exchange's request id.
    pub request_id: String,
    /// Unix seconds.
    pub time: i64,
    /// The trust the subject token was routed to.
    pub trust: Option<String>,
    /// The upstream issuer.
    pub issuer: Option<String>,
    /// The upstream subject (once verified).
    pub subject: Option<String>,
    /// The requested target.
    pub target: Option<String>,
    /// Allow, deny or error.
    pub decision: Outcome,
    /// The stable reason code.
    pub reason: String,
    /// The precise reason in words.
    pub detail: Option<String>,
    /// The determining policies.
    pub determining_policies: Vec<String>,
    /// Policy evaluation errors.
    pub errors: Vec<String>,
}

/// The last `capacity` exchange decisions, oldest evicted first. Bounded: recording
/// never allocates past `capacity` entries.
#[derive(Debug)]
pub struct DecisionRing {
    capacity: usize,
    entries: Mutex<VecDeque<RecordedDecision>>,
}

impl DecisionRing {
    /// A ring of `capacity` entries (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            entries: Mutex::new(VecDeque::with_capacity(capacity)),
        }
    }

    /// Records the decision of an exchange's audit event.
    pub fn record(&self, event: &AuditEvent) {
        let decision = RecordedDecision {
            request_id: event.request_id.clone(),
            time: event.ts,
            trust: event.trust.clone(),
            issuer: event.issuer.clone(),
            subject: event.subject.clone(),
            target: event.target.clone(),
            decision: event.decision,
            reason: event.reason.clone(),
            detail: event.detail.clone(),
            determining_policies: event.policy_ids.clone(),
            errors: event.policy_errors.clone(),
        };
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while entries.len() >= self.capacity {
            entries.pop_front();
        }
        entries.push_back(decision);
    }

    /// The decision of request `request_id`, if still held.
    pub fn get(&self, request_id: &str) -> Option<RecordedDecision> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .iter()
            .rev()
            .find(|d| d.request_id == request_id)
            .cloned()
    }

    /// The number of decisions held.
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether a verified token's `aud` claim names `admin_audience` (a string, or one
/// element of an array). `/token` refuses such tokens.
pub fn names_admin_audience(claims: &Map<String, Value>, admin_audience: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(aud)) => aud == admin_audience,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(admin_audience)),
        _ => false,
    }
}

/// Whether `aud` names `admin_audience` and nothing else.
fn only_admin_audience(claims: &Map<String, Value>, admin_audience: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(aud)) => aud == admin_audience,
        Some(Value::Array(auds)) => {
            !auds.is_empty() && auds.iter().all(|a| a.as_str() == Some(admin_audience))
        }
        _ => false,
    }
}

// ---- explain: shared by `POST /admin/explain` and `legate policy eval` ----------------

/// What to explain: a claims set presented for a target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainInput {
    /// The token's claims; `iss` picks the trust, `sub` is the subject.
    pub claims: Map<String, Value>,
    /// The target name.
    pub target: String,
    /// The client address (default: none, as if unknown).
    #[serde(default)]
    pub source_ip: Option<IpAddr>,
    /// The request time, RFC 3339 (default: now).
    #[serde(default)]
    pub time: Option<String>,
    /// The requested lifetime, seconds (default: the target's).
    #[serde(default)]
    pub requested_lifetime: Option<u64>,
}

/// Why a claims set cannot be explained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    /// A required claim is absent or not a string.
    #[error("the claims have no string `{0}`")]
    MissingClaim(&'static str),
    /// No configured trust has this issuer.
    #[error("no configured trust has issuer `{0}`")]
    UntrustedIssuer(String),
    /// No configured target has this name.
    #[error("no configured target is named `{0}`")]
    UnknownTarget(String),
    /// `time` is not an RFC 3339 timestamp.
    #[error("`{0}` is not an RFC 3339 time")]
    BadTime(String),
}

/// Parses an RFC 3339 timestamp (`2026-01-15T08:30:00Z`, offsets allowed) to unix
/// seconds, fractions dropped.
pub fn parse_time(s: &str) -> Result<i64, ExplainError> {
    use aws_smithy_types::date_time::{DateTime, Format};
    DateTime::from_str(s, Format::DateTime)
        .map(|d| d.secs())
        .map_err(|_| ExplainError::BadTime(escape_untrusted(s)))
}

/// Explains `input` against `engine`. `trust_of` gives the trust name and replay mode of
/// an issuer URL; `target_of` a target by name; `now` is used when `input` has no time.
pub fn explain<'t>(
    engine: &PolicyEngine,
    trust_of: impl Fn(&str) -> Option<(String, ReplayMode)>,
    target_of: impl Fn(&str) -> Option<&'t Target>,
    input: &ExplainInput,
    now: i64,
) -> Result<Explanation, ExplainError> {
    let claim = |name: &'static str| {
        input
            .claims
            .get(name)
            .and_then(Value::as_str)
            .ok_or(ExplainError::MissingClaim(name))
    };
    let (iss, sub) = (claim("iss")?, claim("sub")?);
    let (trust, replay) =
        trust_of(iss).ok_or_else(|| ExplainError::UntrustedIssuer(escape_untrusted(iss)))?;
    let target = target_of(&input.target)
        .ok_or_else(|| ExplainError::UnknownTarget(escape_untrusted(&input.target)))?;
    let now = input
        .time
        .as_deref()
        .map(parse_time)
        .transpose()?
        .unwrap_or(now);
    let exp = input
        .claims
        .get("exp")
        .and_then(Value::as_i64)
        .unwrap_or(i64::MAX);
    let issued_lifetime =
        crate::token::issued_lifetime(target, input.requested_lifetime, replay, exp, now);
    Ok(engine.explain(&PolicyRequest {
        actor: None,
        trust: &trust,
        issuer: iss,
        subject: sub,
        claims: &input.claims,
        target: &target.name,
        source_ip: input.source_ip,
        now,
        requested_lifetime: input
            .requested_lifetime
            .unwrap_or_else(|| target.lifetime_for(None)),
        issued_lifetime,
    }))
}

// ---- the endpoints -------------------------------------------------------------------

/// The admin routes (merged into the operator router when `[admin] enabled = true`).
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/admin/decisions/{request_id}", get(decisions))
        .route("/admin/explain", post(explain_endpoint))
        .route(
            "/admin/revocations",
            get(crate::revocation::list).post(crate::revocation::create),
        )
        .route("/admin/inventory", get(inventory))
        .route("/admin/ledger", get(ledger_entries))
        .route("/admin/status", get(admin_status))
}

/// The default number of rows per list of `/admin/inventory`.
pub const DEFAULT_INVENTORY_LIMIT: usize = 1_000;
/// The default number of entries of `/admin/ledger`.
pub const DEFAULT_LEDGER_LIMIT: usize = 100;

/// Reads the query of `/admin/inventory` and `/admin/ledger`: `trust`, `subject`,
/// `target`, `kind` (`jwt`, `aws`, `gcp`, `azure`), `since` (unix seconds or RFC 3339)
/// and `limit` (1 to [`legate_state::ledger::MAX_QUERY_LIMIT`]), each at most once;
/// anything else is refused. The error is client-safe text.
pub fn ledger_query(
    query: Option<&str>,
    default_limit: usize,
) -> Result<(LedgerFilter, usize), String> {
    use legate_state::ledger::MAX_QUERY_LIMIT;
    let mut filter = LedgerFilter::default();
    let mut limit = None;
    let mut seen = std::collections::BTreeSet::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if !seen.insert(key.clone()) {
            return Err(format!("`{}` is given twice", escape_untrusted(&key)));
        }
        let value = value.into_owned();
        match key.as_ref() {
            "trust" => filter.trust = Some(value),
            "subject" => filter.subject = Some(value),
            "target" => filter.target = Some(value),
            "kind" => {
                filter.kind = Some(CredentialKind::parse(&value).ok_or_else(|| {
                    format!(
                        "`kind` must be jwt, aws, gcp or azure, not `{}`",
                        escape_untrusted(&value)
                    )
                })?);
            }
            "since" => {
                filter.since = Some(match value.parse::<i64>() {
                    Ok(secs) => secs,
                    Err(_) => parse_time(&value).map_err(|e| format!("`since`: {e}"))?,
                });
            }
            "limit" => {
                limit = Some(
                    value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_QUERY_LIMIT).contains(n))
                        .ok_or_else(|| {
                            format!("`limit` must be a number from 1 to {MAX_QUERY_LIMIT}")
                        })?,
                );
            }
            other => {
                return Err(format!(
                    "unknown parameter `{}`: use trust, subject, target, kind, since or limit",
                    escape_untrusted(other)
                ));
            }
        }
    }
    Ok((filter, limit.unwrap_or(default_limit)))
}

/// `GET /admin/inventory`: every issuer, subject, target and refresh path of the
/// credentials issued within the ledger's retention ([`legate_state::Inventory`]).
async fn inventory(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let (_, mut audit) = match authenticate(&state, &parts, AdminEndpoint::Inventory).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let (filter, limit) = match ledger_query(parts.uri.query(), DEFAULT_INVENTORY_LIMIT) {
        Ok(q) => q,
        Err(description) => return bad_request(&state, audit, description),
    };
    let now = state.inner.clock.now();
    let answer = state
        .inner
        .ledger
        .ledger()
        .inventory(&filter, limit, now)
        .await;
    match answer {
        Ok(inventory) => {
            audit.detail = Some(format!(
                "inventory: {} issuers, {} subjects, {} targets, {} paths",
                inventory.issuers.len(),
                inventory.subjects.len(),
                inventory.targets.len(),
                inventory.paths.len()
            ));
            let id = audit.request_id.clone();
            record(&state, audit);
            let mut body = serde_json::to_value(inventory).unwrap_or_default();
            if let Some(map) = body.as_object_mut() {
                map.insert("generated_at".to_owned(), now.into());
            }
            json(StatusCode::OK, body, &id)
        }
        Err(e) => unavailable(&state, audit, &e),
    }
}

/// `GET /admin/ledger`: the ledger's entries, newest first (authorised as
/// `inventory`: the same data, one credential at a time).
async fn ledger_entries(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let (_, mut audit) = match authenticate(&state, &parts, AdminEndpoint::Inventory).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let (filter, limit) = match ledger_query(parts.uri.query(), DEFAULT_LEDGER_LIMIT) {
        Ok(q) => q,
        Err(description) => return bad_request(&state, audit, description),
    };
    let now = state.inner.clock.now();
    match state
        .inner
        .ledger
        .ledger()
        .entries(&filter, limit, now)
        .await
    {
        Ok(entries) => {
            audit.detail = Some(format!("ledger: {} entries", entries.len()));
            let id = audit.request_id.clone();
            record(&state, audit);
            json(
                StatusCode::OK,
                serde_json::json!({ "entries": entries, "generated_at": now }),
                &id,
            )
        }
        Err(e) => unavailable(&state, audit, &e),
    }
}

/// `GET /admin/status`: what the operator listener's `/status` answers.
async fn admin_status(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let (_, mut audit) = match authenticate(&state, &parts, AdminEndpoint::Status).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let body = crate::status_document(&state).await;
    audit.detail = Some("status".to_owned());
    let id = audit.request_id.clone();
    record(&state, audit);
    json(StatusCode::OK, body, &id)
}

fn bad_request(state: &AppState, mut audit: AuditEvent, description: String) -> Response {
    audit.detail = Some(description.clone());
    let id = audit.request_id.clone();
    record(state, audit);
    json(
        StatusCode::BAD_REQUEST,
        serde_json::json!({ "error": "invalid_request", "error_description": description }),
        &id,
    )
}

fn unavailable(state: &AppState, mut audit: AuditEvent, e: &LedgerError) -> Response {
    audit.detail = Some(e.to_string());
    let id = audit.request_id.clone();
    record(state, audit);
    json(
        StatusCode::SERVICE_UNAVAILABLE,
        serde_json::json!({ "error": "temporarily_unavailable", "error_description": "the ledger is unavailable; retry later" }),
        &id,
    )
}

async fn decisions(
    State(state): State<AppState>,
    Path(request_id): Path<String>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let (admin, mut audit) = match authenticate(&state, &parts, AdminEndpoint::Decisions).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let found = admin.decisions.get(&request_id);
    audit.detail = Some(format!(
        "decision `{}` {}",
        escape_untrusted(&request_id),
        if found.is_some() {
            "found"
        } else {
            "not found"
        }
    ));
    let id = audit.request_id.clone();
    record(&state, audit);
    match found {
        Some(decision) => json(
            StatusCode::OK,
            serde_json::to_value(decision).unwrap_or_default(),
            &id,
        ),
        None => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": "not_found", "error_description": "no recent decision has this request id" }),
            &id,
        ),
    }
}

async fn explain_endpoint(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (_, mut audit) = match authenticate(&state, &parts, AdminEndpoint::Explain).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let bad = |audit: AuditEvent, description: String| {
        let mut audit = audit;
        audit.detail = Some(description.clone());
        let id = audit.request_id.clone();
        record(&state, audit);
        json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({ "error": "invalid_request", "error_description": description }),
            &id,
        )
    };
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return bad(
                audit,
                format!("the body must be at most {MAX_BODY_BYTES} bytes"),
            );
        }
    };
    let input: ExplainInput = match serde_json::from_slice(&body) {
        Ok(input) => input,
        Err(e) => {
            return bad(
                audit,
                format!(
                    "invalid explain request: {}",
                    escape_untrusted(&e.to_string())
                ),
            );
        }
    };
    let now = state.inner.clock.now();
    // One snapshot of the active set for the whole request.
    let active = state.policy();
    let result = explain(
        active.engine(),
        |iss| {
            let trust = state.inner.trust.find_by_issuer(iss)?;
            let replay = state
                .inner
                .trust_meta
                .get(trust.name())
                .map_or(ReplayMode::SingleUse, |m| m.replay);
            Some((trust.name().to_owned(), replay))
        },
        |name| state.inner.targets.get(name),
        &input,
        now,
    );
    match result {
        Ok(explanation) => {
            audit.detail = Some(format!(
                "explained target `{}`",
                escape_untrusted(&input.target)
            ));
            let id = audit.request_id.clone();
            record(&state, audit);
            json(StatusCode::OK, explanation.to_json(), &id)
        }
        Err(e) => bad(audit, e.to_string()),
    }
}

/// The admin state and a started audit event of an authenticated, authorised admin
/// request; otherwise the 401 / 403 / 404 / 503 answer (already audited).
pub(crate) async fn authenticate<'s>(
    state: &'s AppState,
    request: &axum::http::request::Parts,
    endpoint: AdminEndpoint,
) -> Result<(&'s Admin, AuditEvent), Response> {
    let Some(admin) = state.inner.admin.as_ref() else {
        return Err(StatusCode::NOT_FOUND.into_response());
    };
    let peer = request
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let source_ip =
        peer.and_then(|peer| client_ip(peer, &request.headers, &state.inner.trusted_proxies));
    let mut audit = AuditEvent {
        ts: state.inner.clock.now(),
        event: "admin_access",
        request_id: legate_issuer::random_uuid().to_string(),
        decision: Outcome::Deny,
        reason: String::new(),
        target: Some(format!("admin:{}", endpoint.as_str())),
        source_ip: source_ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
        ..AuditEvent::default()
    };
    let now = state.inner.clock.now();
    match verify(state, admin, &request.headers, now, &mut audit).await {
        Ok(claims) => {
            let decision = state.policy().engine().authorize_admin(&AdminRequest {
                trust: audit.trust.as_deref().unwrap_or_default(),
                issuer: claims.issuer(),
                subject: claims.subject(),
                claims: claims.claims(),
                endpoint,
                source_ip,
                now,
            });
            audit.reason = decision.reason.as_str().to_owned();
            audit.policy_ids.clone_from(&decision.policy_ids);
            audit.policy_errors.clone_from(&decision.errors);
            if decision.allowed {
                audit.decision = Outcome::Allow;
                Ok((admin, audit))
            } else {
                let response = json(
                    StatusCode::FORBIDDEN,
                    serde_json::json!({ "error": "forbidden", "error_description": "denied by policy", "request_id": audit.request_id }),
                    &audit.request_id,
                );
                record(state, audit);
                Err(response)
            }
        }
        Err(reason) => {
            audit.reason = reason.to_owned();
            let mut response = json(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({ "error": "invalid_token", "request_id": audit.request_id }),
                &audit.request_id,
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            record(state, audit);
            Err(response)
        }
    }
}

/// Verifies the bearer token; fills the audit event's identity fields as they are
/// established. The error is the audit reason.
async fn verify(
    state: &AppState,
    admin: &Admin,
    headers: &HeaderMap,
    now: i64,
    audit: &mut AuditEvent,
) -> Result<legate_core::VerifiedClaims, &'static str> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or("missing_bearer_token")?;
    audit.subject_token_sha256 = Some(hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        token.as_bytes(),
    )));
    let jwt = UnverifiedJwt::parse(token).map_err(|e| e.reason_code())?;
    audit.issuer = Some(escape_untrusted(jwt.unverified_issuer()));
    let (claims, trust) = state
        .inner
        .trust
        .verify_for_audience(jwt, &admin.audience, now)
        .await
        .map_err(|e| {
            audit.trust = e.trust().map(str::to_owned);
            audit.detail = Some(e.to_string());
            e.reason_code()
        })?;
    audit.trust = Some(trust.name().to_owned());
    audit.issuer = Some(claims.issuer().to_owned());
    audit.subject = Some(escape_untrusted_within(claims.subject(), MAX_TOKEN_BYTES));
    audit.jti = claims.jti().map(escape_untrusted);
    // SECURITY: a token that also names another audience (an exchange audience, say) is
    // not an admin credential: whoever holds it could use it at both doors.
    if !only_admin_audience(claims.claims(), &admin.audience) {
        return Err("audience_not_admin_only");
    }
    // The trust's replay rules, as for a subject token.
    let meta = state.inner.trust_meta.get(trust.name()).copied();
    if meta.map_or(ReplayMode::SingleUse, |m| m.replay) == ReplayMode::SingleUse {
        let Some(jti) = claims.jti() else {
            return Err("missing_claim");
        };
        if jti.len() > MAX_JTI_BYTES {
            return Err("jti_too_long");
        }
        let leeway = meta.map_or(0, |m| i64::try_from(m.leeway_secs).unwrap_or(0));
        match state
            .inner
            .replay
            .check_and_record(
                trust.name(),
                claims.issuer(),
                jti,
                claims.expires_at().saturating_add(leeway),
                meta.map_or(i64::MIN, |m| m.earliest_use(&claims)),
                now,
            )
            .await
        {
            Ok(ReplayVerdict::Fresh) => {}
            Ok(ReplayVerdict::Replayed) => return Err("replayed"),
            Ok(ReplayVerdict::BeforeEpoch { .. }) => return Err("before_state_epoch"),
            Err(_) => return Err("state_unavailable"),
        }
    }
    Ok(claims)
}

pub(crate) fn record(state: &AppState, event: AuditEvent) {
    state.inner.audit.record_refusal(event);
}

/// A JSON answer carrying the admin request's id in `X-Request-Id` (the id of its
/// `admin_access` audit event).
pub(crate) fn json(status: StatusCode, body: Value, request_id: &str) -> Response {
    let mut response = (status, Json(body)).into_response();
    no_store(&mut response);
    if let Ok(id) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-request-id", id);
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    fn event(id: &str) -> AuditEvent {
        AuditEvent {
            request_id: id.to_owned(),
            event: "token_exchange",
            reason: "no_permit".to_owned(),
            ..AuditEvent::default()
        }
    }

    /// Stops the ring from growing without bound under a flood of exchanges: it holds
    /// `capacity` decisions, evicting the oldest.
    #[test]
    fn the_decision_ring_is_bounded_and_evicts_the_oldest() {
        let ring = DecisionRing::new(3);
        for i in 0..10 {
            ring.record(&event(&format!("r{i}")));
            assert!(ring.len() <= 3);
        }
        assert_eq!(ring.len(), 3);
        assert!(ring.get("r6").is_none());
        for id in ["r7", "r8", "r9"] {
            assert_eq!(ring.get(id).unwrap().request_id, id);
        }
        assert_eq!(ring.get("r9").unwrap().reason, "no_permit");
        // A zero capacity still holds the latest decision.
        let one = DecisionRing::new(0);
        one.record(&event("a"));
        one.record(&event("b"));
        assert_eq!(one.len(), 1);
        assert!(one.get("b").is_some());
    }

    /// Stops a malformed or oversized admin query from reaching the ledger: unknown or
    /// repeated parameters, a bad kind, time or limit are refused with client-safe text.
    #[test]
    fn ledger_queries_are_parsed_strictly() {
        let (f, limit) = ledger_query(None, 7).unwrap();
        assert_eq!((f, limit), (LedgerFilter::default(), 7));
        let (f, limit) = ledger_query(
            Some("trust=ci&subject=repo%3Aa%2Fb&target=api&kind=aws&since=2026-01-01T00:00:00Z&limit=5"),
            7,
        )
        .unwrap();
        assert_eq!(limit, 5);
        assert_eq!(f.trust.as_deref(), Some("ci"));
        assert_eq!(f.subject.as_deref(), Some("repo:a/b"));
        assert_eq!(f.target.as_deref(), Some("api"));
        assert_eq!(f.kind, Some(CredentialKind::Aws));
        assert_eq!(f.since, Some(1_767_225_600));
        assert_eq!(ledger_query(Some("since=12"), 1).unwrap().0.since, Some(12));
        for bad in [
            "limit=0",
            "limit=10001",
            "limit=x",
            "kind=k8s",
            "since=yesterday",
            "trust=a&trust=b",
            "token=x",
        ] {
            let e = ledger_query(Some(bad), 1).unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
        let e = ledger_query(Some("%1b%5B2J=1"), 1).unwrap_err();
        assert!(!e.contains('\u{1b}'), "{e:?}");
    }

    #[test]
    fn audience_checks() {
        let claims = |aud: Value| match serde_json::json!({ "aud": aud }) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        assert!(names_admin_audience(&claims("adm".into()), "adm"));
        assert!(names_admin_audience(
            &claims(serde_json::json!(["x", "adm"])),
            "adm"
        ));
        assert!(!names_admin_audience(&claims("x".into()), "adm"));
        assert!(only_admin_audience(
            &claims(serde_json::json!(["adm"])),
            "adm"
        ));
        assert!(!only_admin_audience(
            &claims(serde_json::json!(["x", "adm"])),
            "adm"
        ));
        assert!(!only_admin_audience(&claims(serde_json::json!([])), "adm"));
    }
}
