//! Actor tokens (RFC 8693 §2.1 `actor_token`): the party acting for the subject.
//!
//! An actor token is verified exactly like a subject token — routed by its own `iss` to
//! its own trust, the same strict verifier, the same `jti` rules of that trust — and then
//! shown to policy as `context.actor`. What `token.rs` does with it, in order:
//!
//! 1. [`verify`] it right after the subject token (a refusal answers like a refused subject
//!    token, with the audit reason prefixed `actor_`);
//! 2. hand it to policy;
//! 3. record its `(iss, jti)` when its trust is single-use, after the subject's, and only
//!    once policy allowed and the audit slot is reserved; a transient cloud failure
//!    releases both records;
//! 4. put the chain into a `jwt` target's `act` claim (RFC 8693 §4.1, [`act_claim`]).
//!
//! SECURITY: the actor token is never logged; the audit event holds its SHA-256, its
//! trust, issuer and subject, and the SHA-256 of its `jti` ([`ActorAudit`]).

use std::sync::Arc;

use legate_core::exchange::ActorToken;
use legate_core::jws::MAX_TOKEN_BYTES;
use legate_core::text::{escape_untrusted, escape_untrusted_within};
use legate_core::{UnixSeconds, UnverifiedJwt, VerifiedClaims};
use legate_state::{MAX_JTI_BYTES, ReplayMode};
use legate_trust::{TrustError, TrustedIssuer};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::app::AppState;
use crate::token::Rejection;

/// The longest actor chain a minted `act` claim records, the new actor included. An actor
/// token whose own `act` nests deeper is refused (`actor_act_too_deep`).
pub const MAX_ACT_DEPTH: usize = 4;

/// What the audit event records of an actor token. Never the token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ActorAudit {
    /// Hex SHA-256 of the presented actor token.
    pub token_sha256: String,
    /// The trust it was routed to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust: Option<String>,
    /// Its issuer (verified once `subject` is set; escaped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Its verified subject (escaped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Hex SHA-256 of its verified `jti`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti_sha256: Option<String>,
}

/// A verified actor token and the rules of its trust.
#[derive(Debug)]
pub(crate) struct VerifiedActor {
    pub(crate) claims: VerifiedClaims,
    pub(crate) trust: Arc<TrustedIssuer>,
    pub(crate) replay: ReplayMode,
    pub(crate) leeway_secs: i64,
    /// The `act` claim for a minted token.
    pub(crate) act: Value,
}

impl VerifiedActor {
    /// The `jti` to record, when the actor's trust is single-use.
    pub(crate) fn single_use_jti(&self) -> Option<&str> {
        match self.replay {
            ReplayMode::SingleUse => self.claims.jti(),
            ReplayMode::Reusable => None,
        }
    }

    /// When its replay record may be forgotten.
    pub(crate) fn retain_until(&self) -> UnixSeconds {
        self.claims.expires_at().saturating_add(self.leeway_secs)
    }
}

/// Verifies `actor` at `now`, filling `audit` with what is learnt on the way.
///
/// The error is the refusal of the actor token itself (the caller wraps it in
/// [`Rejection::Actor`]).
pub(crate) async fn verify(
    state: &AppState,
    actor: &ActorToken,
    subject_token_sha256: Option<&str>,
    now: UnixSeconds,
    audit: &mut ActorAudit,
) -> Result<VerifiedActor, Rejection> {
    let token = actor.token.expose();
    audit.token_sha256 = sha256_hex(token.as_bytes());
    // SECURITY: the subject token again as its own actor adds no second party; refused
    // so a policy that requires an actor is never satisfied by the subject alone.
    if subject_token_sha256 == Some(audit.token_sha256.as_str()) {
        return Err(Rejection::Token {
            reason: "same_as_subject",
            detail: "the actor token is the subject token".to_owned(),
        });
    }
    let jwt = UnverifiedJwt::parse(token).map_err(|e| Rejection::Token {
        reason: e.reason_code(),
        detail: e.to_string(),
    })?;
    audit.issuer = Some(escape_untrusted(jwt.unverified_issuer()));
    let (claims, trust) = state.inner.trust.verify(jwt, now).await.map_err(|e| {
        audit.trust = e.trust().map(str::to_owned);
        if let TrustError::KeysUnavailable { .. } = e {
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
    audit.trust = Some(trust.name().to_owned());
    audit.issuer = Some(claims.issuer().to_owned());
    audit.subject = Some(escape_untrusted_within(claims.subject(), MAX_TOKEN_BYTES));
    audit.jti_sha256 = claims.jti().map(|j| sha256_hex(j.as_bytes()));
    let meta = state.inner.trust_meta.get(trust.name()).copied();
    let replay = meta.map_or(ReplayMode::SingleUse, |m| m.replay);
    match (replay, claims.jti()) {
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
        _ => {}
    }
    let act = act_claim(&claims).map_err(|e| Rejection::Token {
        reason: e.reason_code(),
        detail: e.to_string(),
    })?;
    Ok(VerifiedActor {
        act,
        leeway_secs: meta.map_or(0, |m| i64::try_from(m.leeway_secs).unwrap_or(0)),
        replay,
        trust,
        claims,
    })
}

/// Why an actor token's own `act` chain cannot be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActError {
    /// The chain is longer than [`MAX_ACT_DEPTH`].
    #[error("the actor chain is deeper than {MAX_ACT_DEPTH} actors")]
    TooDeep,
    /// A link of the chain is not an object with a string `sub` (and, if present, a
    /// string `iss`).
    #[error("the actor token's `act` claim is not a chain of objects with a string `sub`")]
    Malformed,
}

impl ActError {
    /// A stable snake_case reason for the audit log.
    pub const fn reason_code(&self) -> &'static str {
        match self {
            ActError::TooDeep => "act_too_deep",
            ActError::Malformed => "act_malformed",
        }
    }
}

/// The `act` claim for a token minted on behalf of the subject with `actor` acting
/// (RFC 8693 §4.1): `{"sub": <actor sub>, "iss": <actor iss>}`, with the actor token's
/// own `act` nested under it as the prior chain.
///
/// Each link keeps only `sub` and `iss`: the chain says who acted, nothing else of the
/// upstream tokens flows into what Legate signs.
///
/// # Errors
///
/// [`ActError::TooDeep`] for a chain longer than [`MAX_ACT_DEPTH`] links,
/// [`ActError::Malformed`] for a link that is not an object with a string `sub`.
pub fn act_claim(actor: &VerifiedClaims) -> Result<Value, ActError> {
    act_chain(actor.subject(), actor.issuer(), actor.claims())
}

/// [`act_claim`] of an actor with `sub`, `iss` and its other `claims`.
fn act_chain(sub: &str, iss: &str, claims: &Map<String, Value>) -> Result<Value, ActError> {
    let mut links = vec![(sub.to_owned(), Some(iss.to_owned()))];
    let mut next = claims.get("act");
    while let Some(link) = next {
        if links.len() >= MAX_ACT_DEPTH {
            return Err(ActError::TooDeep);
        }
        let Value::Object(link) = link else {
            return Err(ActError::Malformed);
        };
        let Some(Value::String(sub)) = link.get("sub") else {
            return Err(ActError::Malformed);
        };
        let iss = match link.get("iss") {
            None => None,
            Some(Value::String(iss)) => Some(iss.clone()),
            Some(_) => return Err(ActError::Malformed),
        };
        links.push((sub.clone(), iss));
        next = link.get("act");
    }
    let mut chain: Option<Value> = None;
    for (sub, iss) in links.into_iter().rev() {
        let mut link = Map::new();
        link.insert("sub".to_owned(), Value::String(sub));
        if let Some(iss) = iss {
            link.insert("iss".to_owned(), Value::String(iss));
        }
        if let Some(prior) = chain.take() {
            link.insert("act".to_owned(), prior);
        }
        chain = Some(Value::Object(link));
    }
    chain.ok_or(ActError::Malformed)
}

/// Lowercase hex SHA-256 of `data`.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use serde_json::json;

    /// `act_claim` of an actor token with `sub`, `iss` and, optionally, its own `act`.
    fn act_of(act: Option<Value>) -> Result<Value, ActError> {
        let mut claims = Map::new();
        if let Some(act) = act {
            claims.insert("act".to_owned(), act);
        }
        act_chain("host-7", "https://host.example", &claims)
    }

    #[test]
    fn the_actor_becomes_the_outermost_link_of_the_chain() {
        assert_eq!(
            act_of(None).unwrap(),
            json!({"sub": "host-7", "iss": "https://host.example"})
        );
        assert_eq!(
            act_of(Some(
                json!({"sub": "svc", "iss": "https://a", "extra": "dropped"})
            ))
            .unwrap(),
            json!({
                "sub": "host-7", "iss": "https://host.example",
                "act": {"sub": "svc", "iss": "https://a"}
            })
        );
    }

    /// Stops an actor token from growing the minted token without bound (or past what a
    /// relying party will walk) through a long `act` chain.
    #[test]
    fn a_chain_deeper_than_the_bound_is_refused() {
        let mut chain = json!({"sub": "s3"});
        for i in (1..MAX_ACT_DEPTH - 1).rev() {
            chain = json!({"sub": format!("s{i}"), "act": chain});
        }
        // The actor plus MAX_ACT_DEPTH - 1 prior links: exactly at the bound.
        assert!(act_of(Some(chain.clone())).is_ok());
        let deeper = json!({"sub": "s0", "act": chain});
        assert_eq!(act_of(Some(deeper)), Err(ActError::TooDeep));
    }

    /// Stops a malformed prior chain from being signed into a minted token.
    #[test]
    fn a_malformed_chain_is_refused() {
        for bad in [
            json!("svc"),
            json!({"iss": "https://a"}),
            json!({"sub": 7}),
            json!({"sub": "s", "iss": ["x"]}),
            json!({"sub": "s", "act": "t"}),
        ] {
            assert_eq!(act_of(Some(bad.clone())), Err(ActError::Malformed), "{bad}");
        }
    }
}
