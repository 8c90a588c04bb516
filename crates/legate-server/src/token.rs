//! `POST /token`: the RFC 8693 token exchange, start to finish.

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use legate_core::UnverifiedJwt;
use legate_core::exchange::{
    OAuthErrorCode, TOKEN_TYPE_NOT_APPLICABLE, TokenExchangeRequest, TokenExchangeResponse,
};
use legate_core::text::escape_untrusted;
use legate_issuer::MINTED_TOKEN_TYPE;
use legate_policy::PolicyRequest;
use legate_state::{ReplayMode, ReplayVerdict};
use legate_sts::{Credential, Grant, IssueRequest, workload_claim};

use crate::app::AppState;
use crate::audit::{AuditEvent, Outcome};
use crate::error::{ApiError, no_store};
use crate::net::client_ip;

/// The largest request body accepted: a maximal token plus form overhead.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Handles `POST /token`.
pub async fn token(State(state): State<AppState>, request: Request) -> Response {
    let started = tokio::time::Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
    let source_ip = client_ip(peer, request.headers(), &state.inner.trusted_proxies);
    let mut event = AuditEvent {
        ts: state.inner.clock.now(),
        event: "token_exchange",
        request_id: request_id.clone(),
        decision: Outcome::Error,
        reason: String::new(),
        detail: None,
        trust: None,
        issuer: None,
        subject: None,
        jti: None,
        target: None,
        policy_ids: Vec::new(),
        policy_errors: Vec::new(),
        source_ip: source_ip.to_string(),
        lifetime_secs: None,
        issued_jti: None,
        subject_token_sha256: None,
        latency_us: 0,
    };
    let result = exchange(&state, request, source_ip, &mut event).await;
    event.latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    state.inner.audit.record(&event);
    match result {
        Ok(body) => {
            let mut response = Json(body).into_response();
            no_store(&mut response);
            response
        }
        Err(e) => e.into_response(),
    }
}

async fn exchange(
    state: &AppState,
    request: Request,
    source_ip: IpAddr,
    event: &mut AuditEvent,
) -> Result<TokenExchangeResponse, ApiError> {
    let rid = event.request_id.clone();
    let fail = |event: &mut AuditEvent, outcome, reason: &str, detail: String| {
        event.decision = outcome;
        event.reason = reason.to_owned();
        event.detail = Some(detail);
    };

    // 1. A typed request.
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
        fail(
            event,
            Outcome::Error,
            "bad_request",
            "content type is not form-urlencoded".into(),
        );
        return Err(ApiError::new(
            OAuthErrorCode::InvalidRequest,
            "the request body must be application/x-www-form-urlencoded",
            &rid,
        ));
    }
    let body: Bytes = match axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            fail(
                event,
                Outcome::Error,
                "bad_request",
                "body too large or unreadable".into(),
            );
            return Err(ApiError::new(
                OAuthErrorCode::InvalidRequest,
                "request body too large",
                &rid,
            ));
        }
    };
    let req = TokenExchangeRequest::from_form(form_urlencoded::parse(&body)).map_err(|e| {
        fail(
            event,
            Outcome::Error,
            "bad_request",
            e.description.to_string(),
        );
        ApiError::new(e.code, e.description, &rid)
    })?;
    let token = req.subject_token.expose();
    event.subject_token_sha256 = Some(hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        token.as_bytes(),
    )));

    let Some(target) = state.inner.targets.get(&req.audience) else {
        event.target = Some(escape_untrusted(&req.audience));
        fail(
            event,
            Outcome::Error,
            "unknown_target",
            "no such target".into(),
        );
        return Err(ApiError::new(
            OAuthErrorCode::InvalidTarget,
            "unknown audience",
            &rid,
        ));
    };
    event.target = Some(target.name.clone());

    // 2. Shape and claimed issuer, before any network call.
    let jwt = UnverifiedJwt::parse(token).map_err(|e| {
        fail(event, Outcome::Deny, e.reason_code(), e.to_string());
        ApiError::rejected(&rid)
    })?;
    event.issuer = Some(escape_untrusted(jwt.unverified_issuer()));

    // 3-4. Keys of that issuer, then verification.
    let now = state.inner.clock.now();
    let (claims, trust) = state.inner.trust.verify(jwt, now).await.map_err(|e| {
        event.trust = e.trust().map(str::to_owned);
        if let legate_trust::TrustError::KeysUnavailable { .. } = e {
            fail(event, Outcome::Error, e.reason_code(), e.to_string());
            return ApiError::new(
                OAuthErrorCode::TemporarilyUnavailable,
                "the issuer's keys are unavailable; retry later",
                &rid,
            );
        }
        fail(event, Outcome::Deny, e.reason_code(), e.to_string());
        ApiError::rejected(&rid)
    })?;
    event.trust = Some(trust.name().to_owned());
    event.issuer = Some(claims.issuer().to_owned());
    event.subject = Some(escape_untrusted(claims.subject()));
    event.jti = claims.jti().map(escape_untrusted);

    // 5. Replay.
    let meta = state.inner.trust_meta.get(trust.name()).copied();
    if meta.is_none_or(|m| m.replay == ReplayMode::SingleUse) {
        let Some(jti) = claims.jti() else {
            fail(
                event,
                Outcome::Deny,
                "missing_claim",
                "single-use trust requires `jti`".into(),
            );
            return Err(ApiError::rejected(&rid));
        };
        let leeway = meta.map_or(0, |m| i64::try_from(m.leeway_secs).unwrap_or(0));
        let retain_until = claims.expires_at().saturating_add(leeway);
        match state
            .inner
            .replay
            .check_and_record(claims.issuer(), jti, retain_until, now)
            .await
        {
            Ok(ReplayVerdict::Fresh) => {}
            Ok(ReplayVerdict::Replayed) => {
                fail(
                    event,
                    Outcome::Deny,
                    "replayed",
                    "this (iss, jti) was already exchanged".into(),
                );
                return Err(ApiError::rejected(&rid));
            }
            Err(e) => {
                fail(event, Outcome::Error, "state_unavailable", e.to_string());
                return Err(ApiError::new(
                    OAuthErrorCode::TemporarilyUnavailable,
                    "try again later",
                    &rid,
                ));
            }
        }
    }

    // 6. Policy.
    let lifetime = target.lifetime_for(req.requested_lifetime);
    event.lifetime_secs = Some(lifetime);
    let decision = state.inner.policy.evaluate(&PolicyRequest {
        trust: trust.name(),
        issuer: claims.issuer(),
        subject: claims.subject(),
        claims: claims.claims(),
        target: &target.name,
        source_ip,
        now,
        requested_lifetime: req.requested_lifetime.unwrap_or(lifetime),
    });
    event.policy_ids.clone_from(&decision.policy_ids);
    event.policy_errors.clone_from(&decision.errors);
    if !decision.allowed {
        fail(
            event,
            Outcome::Deny,
            decision.reason.as_str(),
            "denied by policy".into(),
        );
        return Err(ApiError::rejected(&rid));
    }

    // 7. Issue through the target's provider.
    let Some(provider) = state.inner.providers.get(&target.kind) else {
        fail(
            event,
            Outcome::Error,
            "no_provider",
            format!("no provider for kind `{}`", target.kind.as_str()),
        );
        return Err(ApiError::new(
            OAuthErrorCode::ServerError,
            "internal error",
            &rid,
        ));
    };
    let issued = provider
        .issue(
            IssueRequest {
                target,
                subject: format!("{}:{}", trust.name(), claims.subject()),
                workload: workload_claim(trust.name(), claims.subject()),
                trust: trust.name(),
                upstream_issuer: claims.issuer(),
                upstream_subject: claims.subject(),
                lifetime_secs: lifetime,
                grant: Grant::default(),
                request_id: &rid,
            },
            now,
        )
        .await
        .map_err(|e| {
            fail(event, Outcome::Error, "issue_failed", e.to_string());
            ApiError::new(OAuthErrorCode::ServerError, "internal error", &rid)
        })?;

    // 8. Respond (the audit event is recorded by the caller).
    // Cloud credentials are wired into the wire answer by the handler rewrite.
    let Credential::Jwt {
        token,
        jti,
        expires_at,
    } = issued
    else {
        fail(
            event,
            Outcome::Error,
            "unsupported_credential",
            "cloud credentials are not answered yet".into(),
        );
        return Err(ApiError::new(
            OAuthErrorCode::ServerError,
            "internal error",
            &rid,
        ));
    };
    event.decision = Outcome::Allow;
    event.reason = decision.reason.as_str().to_owned();
    event.issued_jti = Some(jti);
    Ok(TokenExchangeResponse {
        access_token: token.into_inner(),
        issued_token_type: MINTED_TOKEN_TYPE,
        token_type: TOKEN_TYPE_NOT_APPLICABLE,
        expires_in: u64::try_from(expires_at.saturating_sub(now)).unwrap_or(0),
    })
}
