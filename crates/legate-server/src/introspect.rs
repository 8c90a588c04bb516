//! `POST /introspect` (RFC 7662): the relying parties of `jwt` targets ask whether a
//! token Legate minted is still good.
//!
//! Served on the public listener (where relying parties reach Legate) only with
//! `[admin] introspection = true`. Callers authenticate as admins do
//! ([`crate::admin`]): a bearer token of the admin audience from a trusted issuer, and
//! Cedar must permit `Legate::Action::"admin"` on `Legate::AdminEndpoint::"introspect"`
//! (RFC 7662 §2.1: the endpoint requires authorization, so it cannot be used to scan
//! for tokens, §4). A token of any other audience (a workload's exchange token, a token
//! Legate minted) is not a credential here: 401.
//!
//! The request is a form with `token` (and an optional `token_type_hint`, ignored). The
//! answer is `{"active": false}` for anything that is not a valid token Legate minted
//! for a configured `jwt` target: unparseable, signed by another key, another issuer,
//! expired (no leeway: introspection is the authority), not yet valid, a cloud
//! assertion (no `upstream` claim), or revoked — by its `jti`, or by the subject, trust
//! or target it was minted for ([`crate::revocation`]). Otherwise `active: true` with
//! `iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti` (RFC 7662 §2.2) and `target`, the
//! target's name (a Legate extension, present when the audience names one target).
//! Why a token is inactive goes to the audit event only (RFC 7662 §2.2 gives the caller
//! nothing more than `active: false`).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use legate_core::jwk::{JwksError, KeySet};
use legate_core::{UnverifiedJwt, VerifiedClaims, VerifyRules};
use legate_policy::AdminEndpoint;
use legate_state::RevocationQuery;
use legate_sts::{Target, TargetKind};
use serde_json::{Value, json};

use crate::admin::{authenticate, json as reply, record};
use crate::app::AppState;
use crate::revocation::Verdict;

/// The largest introspection request body accepted (a maximal token plus form overhead).
pub const MAX_BODY_BYTES: usize = crate::token::MAX_BODY_BYTES;

/// What introspection checks tokens against: Legate's own issuer URL and published
/// keys, and the audiences of the `jwt` targets.
#[derive(Debug)]
pub struct Introspection {
    keys: KeySet,
    rules: VerifyRules,
    targets_by_audience: HashMap<String, Vec<String>>,
}

/// A valid token Legate minted, and what it was minted for.
#[derive(Debug)]
pub struct Minted {
    /// The verified claims.
    pub claims: VerifiedClaims,
    /// `upstream.trust`.
    pub trust: String,
    /// `upstream.sub`.
    pub upstream_subject: String,
    /// The `jwt` targets whose audience the token carries.
    pub targets: Vec<String>,
}

impl Introspection {
    /// Checks tokens of `issuer` against its published `jwks` (the document Legate
    /// serves) for the audiences of the `jwt` targets among `targets`.
    ///
    /// # Errors
    ///
    /// The JWKS document does not parse (a startup fault).
    pub fn new(issuer: &str, jwks: &Value, targets: &[Target]) -> Result<Self, JwksError> {
        let (keys, _) = KeySet::from_jwks(jwks.to_string().as_bytes())?;
        let mut targets_by_audience: HashMap<String, Vec<String>> = HashMap::new();
        for t in targets.iter().filter(|t| t.kind == TargetKind::Jwt) {
            targets_by_audience
                .entry(t.audience.clone())
                .or_default()
                .push(t.name.clone());
        }
        let mut rules = VerifyRules::new(issuer, targets_by_audience.keys().cloned().collect());
        // Introspection is the authority on validity: no clock-skew allowance.
        rules.leeway_secs = 0;
        rules.max_lifetime_secs = legate_issuer::MAX_TOKEN_LIFETIME_SECS;
        rules.require_jti = true;
        Ok(Self {
            keys,
            rules,
            targets_by_audience,
        })
    }

    /// The token, when it is one Legate minted for a `jwt` target and valid at `now`;
    /// otherwise why not (an audit reason code).
    pub fn inspect(&self, token: &str, now: i64) -> Result<Minted, &'static str> {
        let jwt = UnverifiedJwt::parse(token).map_err(|e| e.reason_code())?;
        if jwt.unverified_issuer() != self.rules.issuer {
            return Err("not_legate_issuer");
        }
        let claims =
            legate_core::verify(jwt, &self.keys, &self.rules, now).map_err(|e| e.reason_code())?;
        // A cloud assertion (or anything else signed with these keys) has no
        // `upstream`: only tokens minted for `jwt` targets are introspected.
        let upstream = claims.claims().get("upstream");
        let field = |name: &str| {
            upstream
                .and_then(|u| u.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let (Some(trust), Some(upstream_subject)) = (field("trust"), field("sub")) else {
            return Err("not_a_minted_token");
        };
        let targets = self
            .targets_by_audience
            .get(claims.audience())
            .cloned()
            .unwrap_or_default();
        Ok(Minted {
            claims,
            trust,
            upstream_subject,
            targets,
        })
    }
}

/// `POST /introspect`.
pub(crate) async fn introspect(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (_, mut audit) = match authenticate(&state, &parts, AdminEndpoint::Introspect).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let id = audit.request_id.clone();
    let bad = |mut audit: crate::audit::AuditEvent, description: &str| {
        audit.detail = Some(format!("introspection refused: {description}"));
        record(&state, audit);
        reply(
            StatusCode::BAD_REQUEST,
            json!({ "error": "invalid_request", "error_description": description }),
            &id,
        )
    };
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return bad(
            audit,
            "the request body must be application/x-www-form-urlencoded",
        );
    }
    let body: Bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => return bad(audit, "request body too large"),
    };
    let mut tokens = form_urlencoded::parse(&body)
        .filter(|(name, _)| name == "token")
        .map(|(_, value)| value);
    let (Some(token), None) = (tokens.next(), tokens.next()) else {
        return bad(audit, "give the parameter `token` exactly once");
    };
    let now = state.inner.clock.now();
    let Some(introspection) = state.inner.introspection.as_ref() else {
        return bad(audit, "introspection is not configured");
    };
    let answer = match introspection.inspect(&token, now) {
        Err(reason) => Err(reason.to_owned()),
        Ok(minted) => check_revoked(&state, &minted, now).map(|()| minted),
    };
    match answer {
        Ok(minted) => {
            let c = &minted.claims;
            audit.detail = Some(format!(
                "token `{}` active",
                legate_core::text::escape_untrusted(c.jti().unwrap_or_default())
            ));
            record(&state, audit);
            let mut body = serde_json::Map::new();
            body.insert("active".to_owned(), Value::Bool(true));
            body.insert("iss".to_owned(), json!(c.issuer()));
            body.insert("sub".to_owned(), json!(c.subject()));
            for name in ["aud", "iat", "nbf"] {
                if let Some(v) = c.claims().get(name) {
                    body.insert(name.to_owned(), v.clone());
                }
            }
            body.insert("exp".to_owned(), json!(c.expires_at()));
            body.insert("jti".to_owned(), json!(c.jti()));
            if let [target] = minted.targets.as_slice() {
                body.insert("target".to_owned(), json!(target));
            }
            let body = Value::Object(body);
            reply(StatusCode::OK, body, &id)
        }
        Err(reason) => {
            audit.detail = Some(format!("token inactive: {reason}"));
            record(&state, audit);
            reply(StatusCode::OK, json!({ "active": false }), &id)
        }
    }
}

/// `Ok` when no revocation names the token (its `jti`) or what it was minted for; the
/// inactive reason otherwise. A replica that has not read its revocations yet answers
/// inactive (fail closed).
fn check_revoked(state: &AppState, minted: &Minted, now: i64) -> Result<(), String> {
    if minted.targets.is_empty() {
        return Err("no_such_target".to_owned());
    }
    for target in &minted.targets {
        let q = RevocationQuery {
            trust: &minted.trust,
            subject: &minted.upstream_subject,
            target,
            jti: minted.claims.jti(),
        };
        match state.inner.revocations.check(&q, now) {
            Verdict::Clear => {}
            Verdict::Revoked(r) => return Err(format!("revoked by revocation `{}`", r.id)),
            Verdict::Unknown => return Err("revocations_unavailable".to_owned()),
        }
    }
    Ok(())
}
