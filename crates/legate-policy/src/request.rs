//! Mapping a [`PolicyRequest`] onto Cedar: claim conversion, entities, context, request.
//!
//! Nothing here uses the schema: undeclared claims must not break evaluation.

use std::hash::{BuildHasher as _, RandomState};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Mutex;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
};
use legate_core::text::escape_untrusted;
use serde_json::{Map, Value};

use crate::claim_refs::ClaimsRead;
use crate::engine::{PolicyActor, PolicyRequest, TargetInfo};

/// Claims nesting deeper than this (arrays and objects) fail the request: deep nesting has
/// no legitimate use and recursion must be bounded.
pub(crate) const MAX_CLAIM_DEPTH: usize = 32;

/// The Cedar names of the entity model, built once per engine.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub(crate) workload: EntityTypeName,
    pub(crate) issuer: EntityTypeName,
    pub(crate) target: EntityTypeName,
    pub(crate) action: EntityUid,
}

/// Client addresses as Cedar `ip` values, memoised.
///
/// `RestrictedExpression::new_ip` runs Cedar's parser on the extension name `ip` at every
/// call (~6.6 µs, a quarter of the fixed cost of a request; docs/performance.md); the
/// expression depends only on the address, and a gateway sees the same few addresses
/// (its proxies, CI runners) again and again. A direct-mapped table: each address has one
/// slot (by a keyed hash), a colliding address replaces it. Bounded, no clock, no
/// eviction policy to run; a flood of distinct addresses only costs the misses.
#[derive(Debug)]
pub(crate) struct IpExprCache {
    slots: Box<[Mutex<Option<IpExpr>>]>,
    hasher: RandomState,
}

/// One slot of [`IpExprCache`]: an address and its expression.
type IpExpr = (IpAddr, RestrictedExpression);

impl IpExprCache {
    /// The number of slots.
    const SLOTS: u64 = 1_024;

    pub(crate) fn new() -> Self {
        Self {
            slots: (0..Self::SLOTS).map(|_| Mutex::new(None)).collect(),
            hasher: RandomState::new(),
        }
    }

    /// The `ip(...)` expression of `ip`, canonical as [`ip_text`] writes it.
    pub(crate) fn get(&self, ip: IpAddr) -> RestrictedExpression {
        let ip = ip.to_canonical();
        let slot = usize::try_from(self.hasher.hash_one(ip) % Self::SLOTS)
            .ok()
            .and_then(|index| self.slots.get(index));
        // A poisoned slot is a miss: the value is rebuilt, never trusted half-written.
        if let Some(Ok(entry)) = slot.map(Mutex::lock)
            && let Some((cached, expr)) = entry.as_ref()
            && *cached == ip
        {
            return expr.clone();
        }
        let expr = RestrictedExpression::new_ip(ip_text(ip));
        if let Some(Ok(mut entry)) = slot.map(Mutex::lock) {
            *entry = Some((ip, expr.clone()));
        }
        expr
    }
}

/// Why a request could not be mapped onto Cedar (the decision is then a deny).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestBuildError {
    #[error("claim `{claim}` nests deeper than {MAX_CLAIM_DEPTH} levels")]
    ClaimTooDeep { claim: String },
    #[error("claim `{claim}` cannot be converted: {message}")]
    Claim { claim: String, message: String },
    #[error("requested lifetime `{0}` is out of range")]
    Lifetime(u64),
    #[error("cannot build the workload entity: {0}")]
    Entity(String),
    #[error("cannot build the request context: {0}")]
    Context(String),
    #[error("cannot build the entity store: {0}")]
    Entities(String),
    #[error("cannot build the request: {0}")]
    Request(String),
}

/// Why a target entity could not be built at load time.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct TargetEntityError(String);

/// The pieces of a request that are fixed at load time.
#[derive(Debug)]
pub(crate) struct Fixed<'a> {
    pub(crate) issuer_uid: &'a EntityUid,
    pub(crate) issuer: &'a Entity,
    pub(crate) target_uid: &'a EntityUid,
    pub(crate) target: &'a Entity,
}

impl Names {
    #[expect(
        clippy::expect_used,
        reason = "constant, valid Cedar names; exercised by every test"
    )]
    pub(crate) fn new() -> Self {
        let name = |s: &str| EntityTypeName::from_str(s).expect("valid Cedar type name");
        Self {
            workload: name("Legate::Workload"),
            issuer: name("Legate::Issuer"),
            target: name("Legate::Target"),
            action: EntityUid::from_type_name_and_id(
                name("Legate::Action"),
                EntityId::new("exchange"),
            ),
        }
    }

    pub(crate) fn issuer_uid(&self, trust: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(self.issuer.clone(), EntityId::new(trust))
    }

    pub(crate) fn target_uid(&self, target: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(self.target.clone(), EntityId::new(target))
    }

    pub(crate) fn workload_uid(&self, trust: &str, subject: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(
            self.workload.clone(),
            EntityId::new(format!("{trust}|{subject}")),
        )
    }
}

/// The `Legate::Target` entity of `target`: attributes `name`, `kind`, `audience`; labels
/// as tags.
pub(crate) fn target_entity(
    names: &Names,
    target: &TargetInfo,
) -> Result<Entity, TargetEntityError> {
    let attrs = [
        ("name", &target.name),
        ("kind", &target.kind),
        ("audience", &target.audience),
    ]
    .map(|(k, v)| (k.to_owned(), RestrictedExpression::new_string(v.clone())));
    let tags = target
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), RestrictedExpression::new_string(v.clone())));
    Entity::new_with_tags(names.target_uid(&target.name), attrs, [], tags)
        .map_err(|e| TargetEntityError(e.to_string()))
}

/// Builds the Cedar request and entity store for `req`, converting only the claims in
/// `read` (every claim is still checked against [`MAX_CLAIM_DEPTH`], so whether a request
/// can be built never depends on the policies).
pub(crate) fn build(
    names: &Names,
    req: &PolicyRequest<'_>,
    fixed: &Fixed<'_>,
    read: &ClaimsRead,
    ips: &IpExprCache,
) -> Result<(Request, Entities), RequestBuildError> {
    let claims = claims_record(req.claims, read)?;
    let principal = names.workload_uid(req.trust, req.subject);
    let workload = Entity::new_with_tags(
        principal.clone(),
        [
            (
                "issuer".to_owned(),
                RestrictedExpression::new_string(req.issuer.to_owned()),
            ),
            (
                "subject".to_owned(),
                RestrictedExpression::new_string(req.subject.to_owned()),
            ),
            (
                "trust".to_owned(),
                RestrictedExpression::new_string(req.trust.to_owned()),
            ),
            ("claims".to_owned(), claims),
        ],
        [fixed.issuer_uid.clone()],
        [],
    )
    .map_err(|e| RequestBuildError::Entity(e.to_string()))?;
    let entities =
        Entities::from_entities([workload, fixed.issuer.clone(), fixed.target.clone()], None)
            .map_err(|e| RequestBuildError::Entities(e.to_string()))?;
    let request = Request::new(
        principal,
        names.action.clone(),
        fixed.target_uid.clone(),
        context(req, ips)?,
        None,
    )
    .map_err(|e| RequestBuildError::Request(e.to_string()))?;
    Ok((request, entities))
}

/// The request context: `source_ip` (left out when unknown), `request_time`, `utc_hour`,
/// `utc_weekday` (0 = Monday), `requested_lifetime`, `issued_lifetime`, `has_actor`, and
/// `actor` (left out when there is none).
fn context(req: &PolicyRequest<'_>, ips: &IpExprCache) -> Result<Context, RequestBuildError> {
    const DAY: i64 = 86_400;
    let lifetime = i64::try_from(req.requested_lifetime)
        .map_err(|_| RequestBuildError::Lifetime(req.requested_lifetime))?;
    let utc_hour = req.now.rem_euclid(DAY) / 3_600;
    // 1970-01-01 was a Thursday (3 when Monday is 0).
    let utc_weekday = (req.now.div_euclid(DAY) + 3).rem_euclid(7);
    let issued = i64::try_from(req.issued_lifetime)
        .map_err(|_| RequestBuildError::Lifetime(req.issued_lifetime))?;
    let source_ip = req
        .source_ip
        .map(|ip| ("source_ip".to_owned(), ips.get(ip)));
    let actor = req
        .actor
        .as_ref()
        .map(actor_record)
        .transpose()?
        .map(|record| ("actor".to_owned(), record));
    Context::from_pairs(source_ip.into_iter().chain(actor).chain([
        (
            "request_time".to_owned(),
            RestrictedExpression::new_long(req.now),
        ),
        (
            "utc_hour".to_owned(),
            RestrictedExpression::new_long(utc_hour),
        ),
        (
            "utc_weekday".to_owned(),
            RestrictedExpression::new_long(utc_weekday),
        ),
        (
            "requested_lifetime".to_owned(),
            RestrictedExpression::new_long(lifetime),
        ),
        (
            "issued_lifetime".to_owned(),
            RestrictedExpression::new_long(issued),
        ),
        (
            "has_actor".to_owned(),
            RestrictedExpression::new_bool(req.actor.is_some()),
        ),
    ]))
    .map_err(|e| RequestBuildError::Context(e.to_string()))
}

/// `context.actor`: the verified actor token as a record `trust`, `issuer`, `subject`,
/// `claims`. Every actor claim is converted (the slices prune subject claims only), with
/// the same rules and depth bound as subject claims.
fn actor_record(actor: &PolicyActor<'_>) -> Result<RestrictedExpression, RequestBuildError> {
    let string = |v: &str| RestrictedExpression::new_string(v.to_owned());
    RestrictedExpression::new_record([
        ("trust".to_owned(), string(actor.trust)),
        ("issuer".to_owned(), string(actor.issuer)),
        ("subject".to_owned(), string(actor.subject)),
        (
            "claims".to_owned(),
            claims_record(actor.claims, &ClaimsRead::All)?,
        ),
    ])
    .map_err(|e| RequestBuildError::Context(e.to_string()))
}

/// `ip` as Cedar's `ip()` extension accepts it.
///
/// IPv4-mapped IPv6 addresses become IPv4, so that `::ffff:169.254.169.254` matches
/// `ip("169.254.0.0/16")`; other IPv6 addresses are written as eight hex groups, because
/// Cedar rejects the dotted forms Rust would otherwise print.
fn ip_text(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6
            .segments()
            .iter()
            .map(|s| format!("{s:x}"))
            .collect::<Vec<_>>()
            .join(":"),
    }
}

/// The token's claims as a Cedar record: those in `read` are converted, the others only
/// pass the depth check that conversion applies.
fn claims_record(
    claims: &Map<String, Value>,
    read: &ClaimsRead,
) -> Result<RestrictedExpression, RequestBuildError> {
    let mut fields = Vec::new();
    for (name, value) in claims {
        let wanted = match read {
            ClaimsRead::All => true,
            ClaimsRead::Only(names) => names.contains(name),
        };
        if !wanted {
            check_nesting(name, value, 1)?;
        } else if let Some(expr) = claim_value(name, value, 1)? {
            fields.push((name.clone(), expr));
        }
    }
    RestrictedExpression::new_record(fields).map_err(|e| RequestBuildError::Claim {
        claim: "claims".to_owned(),
        message: e.to_string(),
    })
}

/// Converts one JSON value; `None` for the values that are dropped (null, non-integers).
fn claim_value(
    claim: &str,
    value: &Value,
    depth: usize,
) -> Result<Option<RestrictedExpression>, RequestBuildError> {
    Ok(match value {
        Value::Null => None,
        Value::Bool(b) => Some(RestrictedExpression::new_bool(*b)),
        Value::Number(n) => n.as_i64().map(RestrictedExpression::new_long),
        Value::String(s) => Some(RestrictedExpression::new_string(s.clone())),
        Value::Array(items) => {
            check_depth(claim, depth)?;
            let mut elements = Vec::with_capacity(items.len());
            for item in items {
                elements.extend(claim_value(claim, item, depth + 1)?);
            }
            Some(RestrictedExpression::new_set(elements))
        }
        Value::Object(members) => {
            check_depth(claim, depth)?;
            let mut fields = Vec::with_capacity(members.len());
            for (name, member) in members {
                if let Some(expr) = claim_value(claim, member, depth + 1)? {
                    fields.push((name.clone(), expr));
                }
            }
            Some(RestrictedExpression::new_record(fields).map_err(|e| {
                RequestBuildError::Claim {
                    claim: escape_untrusted(claim),
                    message: e.to_string(),
                }
            })?)
        }
    })
}

/// The depth check of [`claim_value`], without building anything.
fn check_nesting(claim: &str, value: &Value, depth: usize) -> Result<(), RequestBuildError> {
    match value {
        Value::Array(items) => {
            check_depth(claim, depth)?;
            for item in items {
                check_nesting(claim, item, depth + 1)?;
            }
        }
        Value::Object(members) => {
            check_depth(claim, depth)?;
            for member in members.values() {
                check_nesting(claim, member, depth + 1)?;
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
    Ok(())
}

fn check_depth(claim: &str, depth: usize) -> Result<(), RequestBuildError> {
    if depth >= MAX_CLAIM_DEPTH {
        return Err(RequestBuildError::ClaimTooDeep {
            claim: escape_untrusted(claim),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ip_text_is_accepted_by_cedar_and_canonical() {
        for (ip, text) in [
            ("192.0.2.1", "192.0.2.1"),
            ("::ffff:169.254.169.254", "169.254.169.254"),
            ("::1", "0:0:0:0:0:0:0:1"),
            ("::1.2.3.4", "0:0:0:0:0:0:102:304"),
            ("2001:db8::8", "2001:db8:0:0:0:0:0:8"),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), text);
            Context::from_pairs([("ip".to_owned(), RestrictedExpression::new_ip(text))]).unwrap();
        }
    }

    #[test]
    fn memoised_ip_expressions_equal_fresh_ones() {
        let ips = IpExprCache::new();
        for (ip, canonical) in [
            ("192.0.2.1", "192.0.2.1"),
            ("::ffff:169.254.169.254", "169.254.169.254"),
            ("169.254.169.254", "169.254.169.254"),
            ("2001:db8::8", "2001:db8:0:0:0:0:0:8"),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let text = |expr: RestrictedExpression| {
                let ctx = Context::from_pairs([("ip".to_owned(), expr)]).unwrap();
                ctx.get("ip").unwrap().to_string()
            };
            let fresh = text(RestrictedExpression::new_ip(canonical));
            assert!(fresh.contains(canonical), "{fresh}");
            // Twice: the first call fills the cache, the second reads it.
            assert_eq!(text(ips.get(ip)), fresh);
            assert_eq!(text(ips.get(ip)), fresh);
        }
    }

    #[test]
    fn claim_conversion_drops_null_and_non_integers() {
        let claims = json!({
            "s": "x", "i": 7, "neg": -3, "f": 1.5, "big": u64::MAX, "n": null, "b": true,
            "a": ["x", null, 2.5, 3], "o": {"k": "v", "n": null}
        });
        let Value::Object(claims) = claims else {
            unreachable!()
        };
        let record = claims_record(&claims, &ClaimsRead::All).unwrap();
        let ctx = Context::from_pairs([("c".to_owned(), record)]).unwrap();
        let text = ctx.get("c").unwrap().to_string();
        for kept in [
            r#""s": "x""#,
            r#""i": 7"#,
            r#""neg": -3"#,
            r#""b": true"#,
            r#""k": "v""#,
        ] {
            assert!(text.contains(kept), "{kept} missing from {text}");
        }
        for dropped in [r#""f""#, r#""big""#, r#""n""#, "2.5"] {
            assert!(!text.contains(dropped), "{dropped} kept in {text}");
        }
    }

    #[test]
    fn only_the_claims_read_are_converted_but_every_claim_is_depth_checked() {
        let Value::Object(mut claims) = json!({"a": "x", "b": [1, 2], "c": {"d": true}}) else {
            unreachable!()
        };
        let read = ClaimsRead::Only(["a".to_owned(), "c".to_owned(), "absent".to_owned()].into());
        let record = claims_record(&claims, &read).unwrap();
        let ctx = Context::from_pairs([("c".to_owned(), record)]).unwrap();
        let text = ctx.get("c").unwrap().to_string();
        assert!(
            text.contains(r#""a": "x""#) && text.contains(r#""d": true"#),
            "{text}"
        );
        assert!(
            !text.contains(r#""b""#) && !text.contains("absent"),
            "{text}"
        );

        // A claim too deep to convert fails the request even when no policy reads it, so
        // whether a request can be built never depends on the policies.
        let mut deep = json!(1);
        for _ in 0..MAX_CLAIM_DEPTH {
            deep = json!([deep]);
        }
        claims.insert("unread".to_owned(), deep);
        assert!(matches!(
            claims_record(&claims, &ClaimsRead::none()),
            Err(RequestBuildError::ClaimTooDeep { claim }) if claim == "unread"
        ));
    }

    #[test]
    fn deep_claims_fail() {
        let mut value = json!("leaf");
        for _ in 0..MAX_CLAIM_DEPTH {
            value = json!([value]);
        }
        let mut claims = Map::new();
        claims.insert("deep".to_owned(), value);
        assert!(matches!(
            claims_record(&claims, &ClaimsRead::All),
            Err(RequestBuildError::ClaimTooDeep { .. })
        ));
        // One level less is fine.
        let mut value = json!("leaf");
        for _ in 0..MAX_CLAIM_DEPTH - 1 {
            value = json!({ "k": value });
        }
        claims.insert("deep".to_owned(), value);
        claims_record(&claims, &ClaimsRead::All).unwrap();
    }

    #[test]
    fn weekday_and_hour() {
        let claims = Map::new();
        let mut req = PolicyRequest {
            trust: "t",
            issuer: "i",
            subject: "s",
            claims: &claims,
            target: "x",
            source_ip: Some("192.0.2.1".parse().unwrap()),
            // 2026-01-01T13:30:00Z, a Thursday.
            now: 1_767_274_200,
            requested_lifetime: 60,
            issued_lifetime: 60,
            actor: None,
        };
        let get = |ctx: &Context, k: &str| ctx.get(k).unwrap().to_string();
        let ips = IpExprCache::new();
        let ctx = context(&req, &ips).unwrap();
        assert_eq!(get(&ctx, "utc_hour"), "13");
        assert_eq!(get(&ctx, "utc_weekday"), "3");
        // 1969-12-31T23:00:00Z, a Wednesday.
        req.now = -3_600;
        let ctx = context(&req, &ips).unwrap();
        assert_eq!(get(&ctx, "utc_hour"), "23");
        assert_eq!(get(&ctx, "utc_weekday"), "2");
        req.requested_lifetime = u64::MAX;
        assert!(matches!(
            context(&req, &ips),
            Err(RequestBuildError::Lifetime(u64::MAX))
        ));
    }
}
