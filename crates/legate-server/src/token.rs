//! `POST /token`: the RFC 8693 token exchange, start to finish.
//!
//! The path, in order (each step returns a typed [`Rejection`] or moves on):
//!
//! 1. parse the form; find the target;
//! 2. read the token's shape and claimed issuer, then verify it against that trust; the
//!    same for the actor token, if any, against its own trust ([`crate::actor`]); refuse
//!    a revoked identity (subject or actor: [`crate::revocation`], a local lookup);
//! 3. decide with policy; then shape the grant from the verified claims (a claim that
//!    breaks the target's limits refuses the exchange);
//! 4. rate limits: the subject's, then the target's ([`check_rate_limits`]) — a 429
//!    here has recorded nothing, so the same token can be presented again later;
//! 5. reserve the request's audit slot — a full audit queue refuses here, 503;
//! 6. record `(iss, jti)` for single-use trusts: the subject's, then the actor's;
//! 7. issue through the target's provider;
//! 8. write the audit event, derived once from the outcome ([`Facts::into_event`]), and
//!    hand the issued credential's ledger entry (no secret) to the ledger's queue.
//!
//! Each step is timed ([`crate::metrics::StepTimer`]; `legate_exchange_step_duration_seconds`):
//! 1 is `parse`, 2 `verify`, 3 `policy`, 4 `ratelimit`, 5 and 8 `audit`, 6 `replay`,
//! 7 `issue`. A refused exchange counts the steps it reached, the failing one included.
//!
//! A refusal at any step before 6 never uses up a `jti`: a token that policy denies,
//! or that meets a full audit queue, can be presented again once the cause is fixed.
//! A refusal in step 6, or a transient cloud failure in 7, gives back the records made.
//!
//! The exchange runs in its own task: a client that disconnects mid-exchange drops only
//! the wait for the answer, never the exchange, so its audit event is always written.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use legate_core::UnverifiedJwt;
use legate_core::exchange::{
    OAuthErrorCode, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_AWS_CREDENTIALS, TOKEN_TYPE_BEARER,
    TOKEN_TYPE_NOT_APPLICABLE, TokenExchangeRequest, TokenExchangeResponse,
};
use legate_core::jws::MAX_TOKEN_BYTES;
use legate_core::text::{escape_untrusted, escape_untrusted_within};
use legate_issuer::MINTED_TOKEN_TYPE;
use legate_policy::{Decision, DecisionReason, PolicyActor, PolicyRequest};
use legate_state::ledger::ledger_subject;
use legate_state::{
    CredentialKind, LedgerEntry, MAX_JTI_BYTES, ReplayMode, ReplayVerdict, RevocationQuery,
    StateError,
};
use legate_sts::{
    Credential, ExchangeError, IssueRequest, Issued, ShapeError, Target, TargetKind, workload_claim,
};

use crate::actor::{self, ActorAudit};
use crate::app::AppState;
use crate::audit::{AuditEvent, AuditSlot, Outcome};
use crate::error::{ApiError, no_store};
use crate::metrics::{Step, StepTimer};
use crate::net::client_ip;
use crate::revocation::Verdict;

/// The largest request body accepted: a maximal token plus form overhead.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Handles `POST /token`.
pub async fn token(State(state): State<AppState>, request: Request) -> Response {
    let started = crate::clock::Stopwatch::start();
    let request_id = legate_issuer::random_uuid().to_string();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let task_state = state.clone();
    let task_id = request_id.clone();
    // The exchange owns its task: dropping this handler (the client went away) does not
    // cancel it, so whatever it records or issues is audited.
    let task = tokio::spawn(async move {
        let mut facts = Facts::new(task_id, peer, &task_state, request.headers());
        let result = exchange(&task_state, request, &mut facts).await;
        let ledger_entry = facts.ledger.take();
        let mut steps = std::mem::take(&mut facts.steps);
        steps.enter(Step::Audit);
        let latency = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let now = task_state.inner.clock.now();
        let (slot, event) = facts.into_event(&result, now, latency);
        task_state.inner.metrics.record_exchange(&event);
        if let Some(admin) = &task_state.inner.admin {
            admin.decisions().record(&event);
        }
        match slot {
            Some(slot) => slot.record(event),
            None => task_state.inner.audit.record_refusal(event),
        }
        // The ledger, without waiting: a bounded hand-off that never blocks or fails the
        // exchange (see `crate::ledger`).
        if let (Ok(_), Some(entry)) = (&result, ledger_entry) {
            task_state.inner.ledger.record(entry);
        }
        steps.finish();
        task_state.inner.metrics.record_steps(&steps);
        result
    });
    match task.await {
        Ok(Ok(body)) => {
            let mut response = Json(body).into_response();
            no_store(&mut response);
            response
        }
        Ok(Err(rejection)) => rejection.api_error(&request_id).into_response(),
        Err(e) => {
            tracing::error!(request_id = %request_id, error = %e, "exchange task failed");
            ApiError::new(OAuthErrorCode::ServerError, "internal error", &request_id)
                .into_response()
        }
    }
}

/// Why an exchange was refused. Each variant knows its wire answer and its audit
/// fields; the handler never assembles either by hand.
#[derive(Debug)]
pub enum Rejection {
    /// The TCP peer address is missing (a server wiring fault, never `127.0.0.1`).
    PeerUnknown,
    /// A malformed request: the description is safe to show the client.
    BadRequest {
        /// The wire code.
        code: OAuthErrorCode,
        /// Client-safe text.
        description: std::borrow::Cow<'static, str>,
    },
    /// `audience` names no configured target.
    UnknownTarget,
    /// The subject token was refused (shape, issuer, signature, claims, replay…).
    Token {
        /// Stable reason code for the audit.
        reason: &'static str,
        /// The precise reason in words.
        detail: String,
    },
    /// The issuer's keys cannot be had.
    KeysUnavailable {
        /// Stable reason code.
        reason: &'static str,
        /// Why.
        detail: String,
    },
    /// The actor token was refused: the inner rejection says why (its audit reason is
    /// prefixed `actor_`; its wire answer is the inner one, so a bad actor token looks
    /// exactly like a bad subject token).
    Actor(Box<Rejection>),
    /// A revocation names this identity (by subject, trust, target or `jti`).
    Revoked {
        /// The revocation's id (for the audit; never sent to the client).
        id: String,
    },
    /// The replica has not read the revocations of its shared store yet: fail closed.
    RevocationsUnknown,
    /// Policy said no, for this reason (the decision itself is in the audit facts).
    Policy(DecisionReason),
    /// The verified claims cannot be shaped into the target's grant (a missing claim, a
    /// value over an AWS limit): refused, never truncated.
    Grant(ShapeError),
    /// The subject or the target is over its rate limit (429).
    RateLimited {
        /// Which limit.
        scope: LimitScope,
        /// Whole seconds until a retry can pass (rounded up).
        retry_after_secs: u64,
    },
    /// The rate limiter's key table is full of live keys: fail closed (503).
    RateLimitTableFull,
    /// The audit queue is full: nothing may be issued unaudited.
    AuditQueueFull,
    /// The replay cache cannot answer (full, or its backend is down).
    State(StateError),
    /// The target's provider failed (Legate's side: no provider, minting).
    Issue(String),
    /// The target's provider (a cloud's token service, or minting) refused or failed.
    Cloud(ExchangeError),
}

impl Rejection {
    fn outcome(&self) -> Outcome {
        match self {
            Self::Token { .. }
            | Self::Revoked { .. }
            | Self::Policy(_)
            | Self::Grant(_)
            | Self::RateLimited { .. } => Outcome::Deny,
            Self::Actor(inner) => inner.outcome(),
            _ => Outcome::Error,
        }
    }

    fn reason(&self) -> Cow<'_, str> {
        match self {
            Self::Actor(inner) => Cow::Owned(format!("actor_{}", inner.reason())),
            other => Cow::Borrowed(other.own_reason()),
        }
    }

    fn own_reason(&self) -> &str {
        match self {
            Self::Actor(_) => "actor",
            Self::Grant(e) => e.reason_code(),
            Self::PeerUnknown => "peer_address_unknown",
            Self::BadRequest { .. } => "bad_request",
            Self::UnknownTarget => "unknown_target",
            Self::Token { reason, .. } | Self::KeysUnavailable { reason, .. } => reason,
            Self::Policy(reason) => reason.as_str(),
            Self::Revoked { .. } => "revoked",
            Self::RevocationsUnknown => "revocations_unavailable",
            Self::AuditQueueFull => "audit_queue_full",
            Self::RateLimited {
                scope: LimitScope::Subject,
                ..
            } => "rate_limited_subject",
            Self::RateLimited {
                scope: LimitScope::Target,
                ..
            } => "rate_limited_target",
            Self::RateLimitTableFull => "rate_limit_table_full",
            Self::State(StateError::TrustFull { .. }) => "replay_cache_trust_full",
            Self::State(StateError::JtiTooLong { .. }) => "jti_too_long",
            Self::State(_) => "state_unavailable",
            Self::Issue(_) => "issue_failed",
            Self::Cloud(e) => e.reason_code(),
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::PeerUnknown => "the connection has no peer address".to_owned(),
            Self::BadRequest { description, .. } => description.to_string(),
            Self::UnknownTarget => "no such target".to_owned(),
            Self::Token { detail, .. } | Self::KeysUnavailable { detail, .. } => detail.clone(),
            Self::Policy(_) => "denied by policy".to_owned(),
            Self::Revoked { id } => format!("revoked by revocation `{id}`"),
            Self::RevocationsUnknown => {
                "the revocations have not been read from the store yet; refused".to_owned()
            }
            Self::Actor(inner) => format!("actor token: {}", inner.detail()),
            Self::Grant(e) => e.to_string(),
            Self::AuditQueueFull => {
                "the audit queue is full; nothing was recorded or issued".to_owned()
            }
            Self::RateLimited {
                scope,
                retry_after_secs,
            } => format!(
                "the {} is over its rate limit; retry after {retry_after_secs} s",
                scope.as_str()
            ),
            Self::RateLimitTableFull => {
                "the rate limiter's key table is full of live keys; refused".to_owned()
            }
            Self::State(e) => e.to_string(),
            Self::Issue(e) => e.clone(),
            Self::Cloud(e) => e.to_string(),
        }
    }

    /// The answer on the wire. Every refused subject token gets the same one.
    pub fn api_error(&self, request_id: &str) -> ApiError {
        use OAuthErrorCode::{InvalidTarget, ServerError, TemporarilyUnavailable};
        match self {
            Self::PeerUnknown | Self::Issue(_) => {
                ApiError::new(ServerError, "internal error", request_id)
            }
            Self::BadRequest { code, description } => {
                ApiError::new(*code, description.clone(), request_id)
            }
            Self::UnknownTarget => ApiError::new(InvalidTarget, "unknown audience", request_id),
            Self::Actor(inner) => inner.api_error(request_id),
            // A grant that cannot be shaped is the subject token's claims being
            // unacceptable for this target: RFC 8693 §2.2.2 `invalid_request`, the
            // generic answer.
            // SECURITY: a revoked identity gets the generic answer: the caller cannot
            // tell a revocation from any other refusal of its token.
            Self::Token { .. }
            | Self::Revoked { .. }
            | Self::Policy(_)
            | Self::Grant(_)
            | Self::State(StateError::JtiTooLong { .. }) => ApiError::rejected(request_id),
            Self::KeysUnavailable { .. } => ApiError::new(
                TemporarilyUnavailable,
                "the issuer's keys are unavailable; retry later",
                request_id,
            ),
            Self::RateLimited {
                scope,
                retry_after_secs,
            } => ApiError::rate_limited(
                match scope {
                    LimitScope::Subject => "too many exchanges for this subject; retry later",
                    LimitScope::Target => "too many exchanges for this target; retry later",
                },
                *retry_after_secs,
                request_id,
            ),
            Self::AuditQueueFull
            | Self::RateLimitTableFull
            | Self::RevocationsUnknown
            | Self::State(_) => {
                ApiError::new(TemporarilyUnavailable, "try again later", request_id)
            }
            Self::Cloud(ExchangeError::TargetRefused { .. }) => ApiError::new(
                InvalidTarget,
                "the target's cloud refused this target's configuration; quote the request_id to your Legate operator",
                request_id,
            ),
            Self::Cloud(ExchangeError::Unavailable { .. }) => ApiError::new(
                TemporarilyUnavailable,
                "the target's cloud token service is unavailable; retry later",
                request_id,
            ),
            Self::Cloud(_) => ApiError::new(ServerError, "internal error", request_id),
        }
    }
}

/// Which rate limit refused an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    /// `per_subject`.
    Subject,
    /// `per_target`.
    Target,
}

impl LimitScope {
    fn as_str(self) -> &'static str {
        match self {
            Self::Subject => "subject",
            Self::Target => "target",
        }
    }
}

/// The longest rate-limit key kept as written; a longer one is replaced by its SHA-256,
/// so the limiter's table holds keys of bounded size whatever the upstream `sub`.
const MAX_LIMIT_KEY_BYTES: usize = 256;

/// The key of one counter: its parts joined by NUL (which no trust or target name
/// holds), hashed when long.
fn limit_key(parts: &[&str]) -> String {
    let joined = parts.join("\0");
    if joined.len() <= MAX_LIMIT_KEY_BYTES {
        return joined;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, joined.as_bytes());
    format!("h\0{}", hex::encode(digest.as_ref()))
}

/// Step 4: the subject's limit, then the target's. The subject is counted by trust and
/// upstream `sub` across targets; a target that overrides `per_subject` counts its
/// subjects apart (its own rate, its own counter). A request the target's limit refuses
/// has already been counted for the subject: a runaway job pays for its retries.
async fn check_rate_limits(
    state: &AppState,
    trust: &str,
    subject: &str,
    target: &str,
    now: i64,
) -> Result<(), Rejection> {
    use legate_state::RateDecision;
    use std::sync::atomic::Ordering::Relaxed;
    let limits = state.inner.limits.for_target(target);
    let overridden = state
        .inner
        .limits
        .targets
        .get(target)
        .is_some_and(|t| t.per_subject.is_some());
    // Milliseconds, so a limit whose burst spans less than a second counts right (and
    // replicas in different whole seconds agree); within the request's second `now`.
    let second_ms = now.saturating_mul(1_000);
    let now_ms = state
        .inner
        .clock
        .now_ms()
        .clamp(second_ms, second_ms.saturating_add(999));
    let stats = &state.inner.rate_limit_stats;
    let checks = [
        (
            LimitScope::Subject,
            limits.per_subject,
            if overridden {
                limit_key(&["s", trust, subject, target])
            } else {
                limit_key(&["s", trust, subject])
            },
            &stats.limited_subject,
        ),
        (
            LimitScope::Target,
            limits.per_target,
            limit_key(&["t", target]),
            &stats.limited_target,
        ),
    ];
    for (scope, rate, key, counter) in checks {
        let Some(rate) = rate else { continue };
        match state.inner.rate_limiter.check(&key, rate, now_ms).await {
            RateDecision::Allow => {}
            RateDecision::Limited { retry_after_ms } => {
                counter.fetch_add(1, Relaxed);
                return Err(Rejection::RateLimited {
                    scope,
                    retry_after_secs: retry_after_ms.div_ceil(1_000).max(1),
                });
            }
            RateDecision::TableFull => {
                stats.table_full.fetch_add(1, Relaxed);
                return Err(Rejection::RateLimitTableFull);
            }
        }
    }
    Ok(())
}

/// What the exchange has established so far; the audit event is derived from it once.
#[derive(Debug)]
struct Facts {
    request_id: String,
    source_ip: Option<IpAddr>,
    peer_known: bool,
    subject_token_sha256: Option<String>,
    actor: Option<ActorAudit>,
    target: Option<String>,
    trust: Option<String>,
    issuer: Option<String>,
    subject: Option<String>,
    jti: Option<String>,
    decision: Option<Decision>,
    lifetime_secs: Option<u64>,
    issued_jti: Option<String>,
    cloud_request_id: Option<String>,
    slot: Option<AuditSlot>,
    /// The ledger entry of the issued credential (no secret), once issued.
    ledger: Option<LedgerEntry>,
    steps: StepTimer,
}

impl Facts {
    fn new(
        request_id: String,
        peer: Option<IpAddr>,
        state: &AppState,
        headers: &HeaderMap,
    ) -> Self {
        let source_ip =
            peer.and_then(|peer| client_ip(peer, headers, &state.inner.trusted_proxies));
        Self {
            request_id,
            source_ip,
            peer_known: peer.is_some(),
            subject_token_sha256: None,
            actor: None,
            target: None,
            trust: None,
            issuer: None,
            subject: None,
            jti: None,
            decision: None,
            lifetime_secs: None,
            issued_jti: None,
            cloud_request_id: None,
            slot: None,
            ledger: None,
            steps: StepTimer::default(),
        }
    }

    fn into_event(
        self,
        result: &Result<TokenExchangeResponse, Rejection>,
        now: i64,
        latency_us: u64,
    ) -> (Option<AuditSlot>, AuditEvent) {
        let (cloud_error_code, cloud_request_id) = match result {
            Err(Rejection::Cloud(e)) => (
                e.cloud_code().map(str::to_owned),
                e.cloud_request_id().map(str::to_owned),
            ),
            _ => (None, self.cloud_request_id.clone()),
        };
        let (decision, reason, detail) = match result {
            Ok(_) => (
                Outcome::Allow,
                self.decision
                    .as_ref()
                    .map_or("permitted", |d| d.reason.as_str())
                    .to_owned(),
                None,
            ),
            Err(rejection) => (
                rejection.outcome(),
                rejection.reason().into_owned(),
                Some(rejection.detail()),
            ),
        };
        let (policy_ids, policy_errors, lint_exceptions, shadow) = self
            .decision
            .map(|d| (d.policy_ids, d.errors, d.lint_exceptions, d.shadow))
            .unwrap_or_default();
        let event = AuditEvent {
            ts: now,
            event: "token_exchange",
            request_id: self.request_id,
            decision,
            reason,
            detail,
            trust: self.trust,
            issuer: self.issuer,
            subject: self.subject,
            jti: self.jti,
            target: self.target,
            policy_ids,
            policy_errors,
            lint_exceptions,
            shadow,
            source_ip: self
                .source_ip
                .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
            lifetime_secs: self.lifetime_secs,
            issued_jti: self.issued_jti,
            subject_token_sha256: self.subject_token_sha256,
            actor: self.actor,
            cloud_error_code,
            cloud_request_id,
            latency_us,
        };
        (self.slot, event)
    }
}

async fn exchange(
    state: &AppState,
    request: Request,
    facts: &mut Facts,
) -> Result<TokenExchangeResponse, Rejection> {
    if !facts.peer_known {
        return Err(Rejection::PeerUnknown);
    }
    // INVARIANT: one policy set per request, taken here and used throughout; a reload
    // swaps in a new set for later requests only.
    let policy = state.policy();

    // 1. A typed request.
    facts.steps.enter(Step::Parse);
    let req = read_request(request).await?;
    let token = req.subject_token.expose();
    facts.subject_token_sha256 = Some(hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        token.as_bytes(),
    )));
    let Some(target) = state.inner.targets.get(&req.audience) else {
        facts.target = Some(escape_untrusted(&req.audience));
        return Err(Rejection::UnknownTarget);
    };
    facts.target = Some(target.name.clone());

    // 2. Shape and claimed issuer, before any network call; then keys and verification.
    facts.steps.enter(Step::Verify);
    let jwt = UnverifiedJwt::parse(token).map_err(|e| Rejection::Token {
        reason: e.reason_code(),
        detail: e.to_string(),
    })?;
    facts.issuer = Some(escape_untrusted(jwt.unverified_issuer()));
    let now = state.inner.clock.now();
    let (claims, trust) = state.inner.trust.verify(jwt, now).await.map_err(|e| {
        facts.trust = e.trust().map(str::to_owned);
        if let legate_trust::TrustError::KeysUnavailable { .. } = e {
            Rejection::KeysUnavailable {
                reason: e.reason_code(),
                detail: e.to_string(),
            }
        } else {
            Rejection::Token {
                reason: e.reason_code(),
                detail: e.to_string(),
            }
        }
    })?;
    facts.trust = Some(trust.name().to_owned());
    facts.issuer = Some(claims.issuer().to_owned());
    // The verified subject in full (escaped, bounded only by the token size cap): two
    // workloads sharing a long prefix must stay distinguishable in the audit log.
    facts.subject = Some(escape_untrusted_within(claims.subject(), MAX_TOKEN_BYTES));
    facts.jti = claims.jti().map(escape_untrusted);
    // SECURITY: an admin credential is never an exchange credential, even when its
    // `aud` also names an exchange audience (see `crate::admin`).
    if let Some(admin) = &state.inner.admin
        && crate::admin::names_admin_audience(claims.claims(), admin.audience())
    {
        return Err(Rejection::Token {
            reason: "admin_audience",
            detail: "the token's `aud` names the admin audience".to_owned(),
        });
    }
    let meta = state.inner.trust_meta.get(trust.name()).copied();
    let replay = meta.map_or(ReplayMode::SingleUse, |m| m.replay);
    let jti = match (replay, claims.jti()) {
        (ReplayMode::SingleUse, None) => {
            return Err(Rejection::Token {
                reason: "missing_claim",
                detail: "single-use trust requires `jti`".to_owned(),
            });
        }
        (_, Some(jti)) if jti.len() > MAX_JTI_BYTES => {
            return Err(Rejection::Token {
                reason: "jti_too_long",
                detail: format!("`jti` is {} bytes, over {MAX_JTI_BYTES}", jti.len()),
            });
        }
        (_, jti) => jti,
    };
    // Revocations: a lookup in this replica's snapshot, no I/O.
    check_revocation(
        state,
        &RevocationQuery {
            trust: trust.name(),
            subject: claims.subject(),
            target: &target.name,
            jti: claims.jti(),
        },
        now,
    )?;
    let actor = match &req.actor {
        None => None,
        Some(token) => {
            let audit = facts.actor.insert(ActorAudit::default());
            let verified = actor::verify(
                state,
                token,
                facts.subject_token_sha256.as_deref(),
                now,
                audit,
            )
            .await
            .map_err(|e| Rejection::Actor(Box::new(e)))?;
            // A revoked identity cannot act for another either.
            check_revocation(
                state,
                &RevocationQuery {
                    trust: verified.trust.name(),
                    subject: verified.claims.subject(),
                    target: &target.name,
                    jti: verified.claims.jti(),
                },
                now,
            )
            .map_err(|e| Rejection::Actor(Box::new(e)))?;
            Some(verified)
        }
    };

    // 3. Policy.
    facts.steps.enter(Step::Policy);
    let lifetime = issued_lifetime(
        target,
        req.requested_lifetime,
        replay,
        claims.expires_at(),
        now,
    );
    facts.lifetime_secs = Some(lifetime);
    let decision = policy.engine().evaluate(&PolicyRequest {
        trust: trust.name(),
        issuer: claims.issuer(),
        subject: claims.subject(),
        claims: claims.claims(),
        target: &target.name,
        source_ip: facts.source_ip,
        now,
        requested_lifetime: req
            .requested_lifetime
            .unwrap_or_else(|| target.lifetime_for(None)),
        issued_lifetime: lifetime,
        actor: actor.as_ref().map(|a| PolicyActor {
            trust: a.trust.name(),
            issuer: a.claims.issuer(),
            subject: a.claims.subject(),
            claims: a.claims.claims(),
        }),
    });
    policy.record_shadow(&decision);
    let (allowed, reason) = (decision.allowed, decision.reason);
    facts.decision = Some(decision);
    if !allowed {
        return Err(Rejection::Policy(reason));
    }
    // The grant, from the verified claims; the actor chain for `jwt` targets (a cloud
    // honours no `act`; the audit event records the actor).
    let mut grant = target
        .shaping
        .shape(claims.claims())
        .map_err(Rejection::Grant)?;
    if target.kind == TargetKind::Jwt {
        grant.act = actor.as_ref().map(|a| a.act.clone());
    }

    // 4. Rate limits, after policy allowed and before anything is reserved or recorded:
    // a 429 never uses up the `jti`.
    facts.steps.enter(Step::RateLimit);
    check_rate_limits(state, trust.name(), claims.subject(), &target.name, now).await?;

    // 5. The audit slot, before anything is recorded or issued.
    facts.steps.enter(Step::Audit);
    facts.slot = Some(
        state
            .inner
            .audit
            .reserve()
            .map_err(|_| Rejection::AuditQueueFull)?,
    );

    // 6. Replay.
    facts.steps.enter(Step::Replay);
    if let (ReplayMode::SingleUse, Some(jti)) = (replay, jti) {
        let leeway = meta.map_or(0, |m| i64::try_from(m.leeway_secs).unwrap_or(0));
        let retain_until = claims.expires_at().saturating_add(leeway);
        match state
            .inner
            .replay
            .check_and_record(
                trust.name(),
                claims.issuer(),
                jti,
                retain_until,
                meta.map_or(i64::MIN, |m| m.earliest_use(&claims)),
                now,
            )
            .await
        {
            Ok(ReplayVerdict::Fresh) => {}
            Ok(ReplayVerdict::Replayed) => {
                return Err(Rejection::Token {
                    reason: "replayed",
                    detail: "this (iss, jti) was already exchanged".to_owned(),
                });
            }
            Ok(ReplayVerdict::BeforeEpoch { epoch }) => {
                return Err(before_epoch(epoch));
            }
            Err(e) => return Err(Rejection::State(e)),
        }
    }
    let subject_record = match (replay, jti) {
        (ReplayMode::SingleUse, Some(jti)) => Some((trust.name(), claims.issuer(), jti)),
        _ => None,
    };
    let actor_record = actor
        .as_ref()
        .and_then(|a| Some((a.trust.name(), a.claims.issuer(), a.single_use_jti()?)));
    if let (Some(a), Some((actor_trust, actor_iss, actor_jti))) = (&actor, actor_record) {
        let verdict = state
            .inner
            .replay
            .check_and_record(
                actor_trust,
                actor_iss,
                actor_jti,
                a.retain_until(),
                state
                    .inner
                    .trust_meta
                    .get(actor_trust)
                    .map_or(i64::MIN, |m| m.earliest_use(&a.claims)),
                now,
            )
            .await;
        let refusal = match verdict {
            Ok(ReplayVerdict::Fresh) => None,
            Ok(ReplayVerdict::Replayed) => Some(Rejection::Token {
                reason: "replayed",
                detail: "this (iss, jti) was already exchanged".to_owned(),
            }),
            Ok(ReplayVerdict::BeforeEpoch { epoch }) => Some(before_epoch(epoch)),
            Err(e) => Some(Rejection::State(e)),
        };
        if let Some(refusal) = refusal {
            // Nothing is issued: the subject's `jti` is given back.
            release(state, subject_record, &facts.request_id).await;
            return Err(Rejection::Actor(Box::new(refusal)));
        }
    }

    // 7. Issue through the target's provider.
    facts.steps.enter(Step::Issue);
    let Some(provider) = state.inner.providers.get(&target.kind) else {
        return Err(Rejection::Issue(format!(
            "no provider for kind `{}`",
            target.kind.as_str()
        )));
    };
    let issued = provider
        .issue_traced(
            IssueRequest {
                target,
                subject: format!("{}:{}", trust.name(), claims.subject()),
                workload: workload_claim(trust.name(), claims.subject()),
                trust: trust.name(),
                upstream_issuer: claims.issuer(),
                upstream_subject: claims.subject(),
                lifetime_secs: lifetime,
                grant,
                request_id: &facts.request_id,
            },
            now,
        )
        .await;
    let Issued {
        credential: issued,
        from_cache,
    } = match issued {
        Ok(issued) => issued,
        Err(e) => {
            // A transient cloud failure gives the `jti`s back (subject and actor), so
            // the client can retry with the same tokens; nothing was issued.
            if e.is_transient() {
                release(state, subject_record, &facts.request_id).await;
                release(state, actor_record, &facts.request_id).await;
            }
            return Err(Rejection::Cloud(e));
        }
    };

    // 8. The answer (the audit event and the ledger entry are written by the caller).
    facts.cloud_request_id = issued.cloud_request_id().map(str::to_owned);
    // SECURITY: the ledger gets the credential's non-secret id only (`credential_id`),
    // never the token, secret key or session token.
    facts.ledger = Some(LedgerEntry {
        request_id: facts.request_id.clone(),
        trust: trust.name().to_owned(),
        issuer: claims.issuer().to_owned(),
        subject: ledger_subject(claims.subject()),
        target: target.name.clone(),
        kind: credential_kind(target.kind),
        issued_at: now,
        expires_at: issued.expires_at(),
        credential_id: issued.credential_id().map(str::to_owned),
        cloud_request_id: facts.cloud_request_id.clone(),
        served_from_cache: from_cache,
    });
    let expires_in = u64::try_from(issued.expires_at().saturating_sub(now)).unwrap_or(0);
    Ok(match issued {
        Credential::Jwt { token, jti, .. } => {
            facts.issued_jti = Some(jti);
            TokenExchangeResponse {
                access_token: token.into_inner(),
                issued_token_type: MINTED_TOKEN_TYPE,
                token_type: TOKEN_TYPE_NOT_APPLICABLE,
                expires_in,
                aws_credentials: None,
            }
        }
        aws @ Credential::Aws { .. } => {
            let aws_credentials = aws.aws_credential_process_json();
            let Credential::Aws { session_token, .. } = aws else {
                return Err(Rejection::Issue("credential kind changed".to_owned()));
            };
            TokenExchangeResponse {
                access_token: session_token.into_inner(),
                issued_token_type: TOKEN_TYPE_AWS_CREDENTIALS,
                token_type: TOKEN_TYPE_NOT_APPLICABLE,
                expires_in,
                aws_credentials,
            }
        }
        Credential::AccessToken { token, .. } => TokenExchangeResponse {
            access_token: token.into_inner(),
            issued_token_type: TOKEN_TYPE_ACCESS_TOKEN,
            token_type: TOKEN_TYPE_BEARER,
            expires_in,
            aws_credentials: None,
        },
    })
}

/// Refuses `q` when a revocation names it (or when this replica does not know yet).
fn check_revocation(state: &AppState, q: &RevocationQuery<'_>, now: i64) -> Result<(), Rejection> {
    match state.inner.revocations.check(q, now) {
        Verdict::Clear => Ok(()),
        Verdict::Revoked(r) => Err(Rejection::Revoked { id: r.id.clone() }),
        Verdict::Unknown => Err(Rejection::RevocationsUnknown),
    }
}

/// The refusal of a single-use token that could have been accepted before the shared
/// state's epoch: its record may have been lost with the old state, so it cannot be
/// told from a replay. The workload gets the generic answer and must fetch a new token.
fn before_epoch(epoch: i64) -> Rejection {
    Rejection::Token {
        reason: "before_state_epoch",
        detail: format!(
            "single-use token could have been used before the shared state began at {epoch} \
             (a new or emptied Redis); a fresh token is needed"
        ),
    }
}

/// The ledger's name for a target kind.
fn credential_kind(kind: TargetKind) -> CredentialKind {
    match kind {
        TargetKind::Jwt => CredentialKind::Jwt,
        TargetKind::Aws => CredentialKind::Aws,
        TargetKind::Gcp => CredentialKind::Gcp,
        TargetKind::Azure => CredentialKind::Azure,
    }
}

/// Gives back a replay record made by this exchange, if any (best effort: a failure is
/// logged, and the `jti` stays used up — fail closed).
async fn release(state: &AppState, record: Option<(&str, &str, &str)>, request_id: &str) {
    if let Some((trust, issuer, jti)) = record
        && let Err(e) = state.inner.replay.release(trust, issuer, jti).await
    {
        tracing::warn!(request_id = %request_id, error = %e, "replay record not released");
    }
}

/// Reads and parses the form body.
async fn read_request(request: Request) -> Result<TokenExchangeRequest, Rejection> {
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(Rejection::BadRequest {
            code: OAuthErrorCode::InvalidRequest,
            description: "the request body must be application/x-www-form-urlencoded".into(),
        });
    }
    let body: Bytes = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|_| Rejection::BadRequest {
            code: OAuthErrorCode::InvalidRequest,
            description: "request body too large".into(),
        })?;
    TokenExchangeRequest::from_form(form_urlencoded::parse(&body)).map_err(|e| {
        Rejection::BadRequest {
            code: e.code,
            description: e.description,
        }
    })
}

/// The lifetime to issue: the request's (or the target's default), capped by the
/// target; for a reusable trust, also by the subject token's own remaining lifetime —
/// a token that may be presented again must not buy a credential that outlives it.
///
/// At least one second: a token inside its leeway window gets the shortest credential;
/// AWS credentials at least 900 s, the shortest session AWS issues (it fails rather than
/// clamps), which is the one case where a reusable token's credential may outlive it.
pub(crate) fn issued_lifetime(
    target: &Target,
    requested: Option<u64>,
    replay: ReplayMode,
    subject_exp: i64,
    now: i64,
) -> u64 {
    let lifetime = target.lifetime_for(requested);
    let capped = match replay {
        ReplayMode::SingleUse => lifetime,
        ReplayMode::Reusable => {
            let remaining = u64::try_from(subject_exp.saturating_sub(now)).unwrap_or(0);
            lifetime.min(remaining)
        }
    };
    match target.kind {
        TargetKind::Aws => capped.max(legate_sts::AWS_MIN_DURATION_SECS),
        _ => capped.max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn target() -> Target {
        Target::jwt("t", "https://t.example", 900, 300, BTreeMap::new())
    }

    /// Stops a reusable token from buying a credential that outlives it: the token is
    /// the workload's standing proof, and what Legate mints must not extend it.
    #[test]
    fn reusable_trust_credentials_do_not_outlive_the_subject_token() {
        let t = target();
        assert_eq!(
            issued_lifetime(&t, Some(900), ReplayMode::Reusable, 1_120, 1_000),
            120
        );
        assert_eq!(
            issued_lifetime(&t, None, ReplayMode::Reusable, 5_000, 1_000),
            300
        );
        // Inside the leeway window (exp already passed): the shortest credential.
        assert_eq!(
            issued_lifetime(&t, None, ReplayMode::Reusable, 990, 1_000),
            1
        );
        // Single-use tokens are consumed by the exchange: the target's rules alone.
        assert_eq!(
            issued_lifetime(&t, Some(900), ReplayMode::SingleUse, 1_120, 1_000),
            900
        );
    }
}
