//! Mapping a [`PolicyRequest`] onto Cedar: claim conversion, entities, context, request.
//!
//! Nothing here uses the schema: undeclared claims must not break evaluation.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher as _, RandomState};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
};
use cedar_policy_core::ast as cst;
use cedar_policy_core::entities::{Entities as CoreEntities, NoEntitiesSchema, TCComputation};
use cedar_policy_core::evaluator::RestrictedEvaluator;
use cedar_policy_core::extensions::Extensions;
use legate_core::text::escape_untrusted;
use serde_json::{Map, Value};
use smol_str::SmolStr;

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
/// call (~6.6 µs, a quarter of the fixed cost of a request; docs/performance.md), and the
/// expression must then be evaluated; the value depends only on the address, and a
/// gateway sees the same few addresses (its proxies, CI runners) again and again. A direct-mapped table: each address has one
/// slot (by a keyed hash), a colliding address replaces it. Bounded, no clock, no
/// eviction policy to run; a flood of distinct addresses only costs the misses.
#[derive(Debug)]
pub(crate) struct IpExprCache {
    slots: Box<[Mutex<Option<IpExpr>>]>,
    hasher: RandomState,
}

/// One slot of [`IpExprCache`]: an address and its evaluated `ip` value.
type IpExpr = (IpAddr, cst::Value);

impl IpExprCache {
    /// The number of slots.
    const SLOTS: u64 = 1_024;

    pub(crate) fn new() -> Self {
        Self {
            slots: (0..Self::SLOTS).map(|_| Mutex::new(None)).collect(),
            hasher: RandomState::new(),
        }
    }

    /// The `ip(...)` value of `ip`, canonical as [`ip_text`] writes it.
    pub(crate) fn get(&self, ip: IpAddr) -> Result<cst::Value, RequestBuildError> {
        let ip = ip.to_canonical();
        let slot = usize::try_from(self.hasher.hash_one(ip) % Self::SLOTS)
            .ok()
            .and_then(|index| self.slots.get(index));
        // A poisoned slot is a miss: the value is rebuilt, never trusted half-written.
        if let Some(Ok(entry)) = slot.map(Mutex::lock)
            && let Some((cached, expr)) = entry.as_ref()
            && *cached == ip
        {
            return Ok(expr.clone());
        }
        let expr = ip_value(ip)?;
        if let Some(Ok(mut entry)) = slot.map(Mutex::lock) {
            *entry = Some((ip, expr.clone()));
        }
        Ok(expr)
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
///
/// The hot path. It builds Cedar's values directly (`cedar-policy-core`, the exact version
/// `cedar-policy` pins) instead of writing restricted expressions for Cedar to evaluate,
/// and hands over an entity store whose transitive closure is already complete (the
/// workload's only ancestor is its issuer, which has none), so none is computed per
/// request (docs/adr/0007-cedar-core-request-values.md). [`build_reference`] builds the
/// same request through the public API only; a property test holds the two equal.
pub(crate) fn build(
    names: &Names,
    req: &PolicyRequest<'_>,
    fixed: &Fixed<'_>,
    read: &ClaimsRead,
    ips: &IpExprCache,
) -> Result<(Request, Entities), RequestBuildError> {
    let claims = claims_value(req.claims, read)?;
    let principal = cst::EntityUID::from(names.workload_uid(req.trust, req.subject));
    let attrs: [(SmolStr, cst::PartialValue); 4] = [
        (
            SmolStr::new_static("issuer"),
            cst::Value::from(req.issuer).into(),
        ),
        (
            SmolStr::new_static("subject"),
            cst::Value::from(req.subject).into(),
        ),
        (
            SmolStr::new_static("trust"),
            cst::Value::from(req.trust).into(),
        ),
        (SmolStr::new_static("claims"), claims.into()),
    ];
    let issuer: &cst::Entity = fixed.issuer.as_ref();
    let target: &cst::Entity = fixed.target.as_ref();
    // INVARIANT (transitive closure): the workload's parents are all its ancestors, as
    // the issuer and the target have no parents (built with none at load).
    let workload = cst::Entity::new_with_attr_partial_value(
        principal.clone(),
        attrs,
        HashSet::new(),
        HashSet::from([issuer.uid().clone()]),
        [],
    );
    let entities = CoreEntities::from_entities(
        [workload, issuer.clone(), target.clone()],
        None::<&NoEntitiesSchema>,
        TCComputation::AssumeAlreadyComputed,
        Extensions::none(),
    )
    .map_err(|e| RequestBuildError::Entities(e.to_string()))?;
    let request = cst::Request::new_unchecked(
        cst::EntityUIDEntry::known(principal, None),
        cst::EntityUIDEntry::known(names.action.clone().into(), None),
        cst::EntityUIDEntry::known(fixed.target_uid.clone().into(), None),
        Some(context_value(req, ips)?),
    );
    Ok((Request::from(request), Entities::from(entities)))
}

/// [`build`] through `cedar-policy`'s public API alone: restricted expressions that
/// Cedar evaluates, and an entity store whose closure Cedar computes. The reference that
/// [`build`] is tested against (and what [`crate::PolicyEngine::evaluate_reference`] uses).
pub(crate) fn build_reference(
    names: &Names,
    req: &PolicyRequest<'_>,
    fixed: &Fixed<'_>,
    read: &ClaimsRead,
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
        context_reference(req)?,
        None,
    )
    .map_err(|e| RequestBuildError::Request(e.to_string()))?;
    Ok((request, entities))
}

/// The context's numbers, derived once for both builders.
struct Times {
    request_time: i64,
    utc_hour: i64,
    utc_weekday: i64,
    requested_lifetime: i64,
    issued_lifetime: i64,
}

impl Times {
    fn of(req: &PolicyRequest<'_>) -> Result<Self, RequestBuildError> {
        const DAY: i64 = 86_400;
        let requested_lifetime = i64::try_from(req.requested_lifetime)
            .map_err(|_| RequestBuildError::Lifetime(req.requested_lifetime))?;
        let issued_lifetime = i64::try_from(req.issued_lifetime)
            .map_err(|_| RequestBuildError::Lifetime(req.issued_lifetime))?;
        Ok(Self {
            request_time: req.now,
            utc_hour: req.now.rem_euclid(DAY) / 3_600,
            // 1970-01-01 was a Thursday (3 when Monday is 0).
            utc_weekday: (req.now.div_euclid(DAY) + 3).rem_euclid(7),
            requested_lifetime,
            issued_lifetime,
        })
    }

    fn pairs(&self) -> [(&'static str, i64); 5] {
        [
            ("request_time", self.request_time),
            ("utc_hour", self.utc_hour),
            ("utc_weekday", self.utc_weekday),
            ("requested_lifetime", self.requested_lifetime),
            ("issued_lifetime", self.issued_lifetime),
        ]
    }
}

/// The request context: `source_ip` (left out when unknown), `request_time`, `utc_hour`,
/// `utc_weekday` (0 = Monday), `requested_lifetime`, `issued_lifetime`, `has_actor`, and
/// `actor` (left out when there is none).
fn context_value(
    req: &PolicyRequest<'_>,
    ips: &IpExprCache,
) -> Result<cst::Context, RequestBuildError> {
    let mut fields: BTreeMap<SmolStr, cst::Value> = Times::of(req)?
        .pairs()
        .into_iter()
        .map(|(name, value)| (SmolStr::new_static(name), cst::Value::from(value)))
        .collect();
    fields.insert(
        SmolStr::new_static("has_actor"),
        cst::Value::from(req.actor.is_some()),
    );
    if let Some(ip) = req.source_ip {
        fields.insert(SmolStr::new_static("source_ip"), ips.get(ip)?);
    }
    if let Some(actor) = &req.actor {
        fields.insert(SmolStr::new_static("actor"), actor_value(actor)?);
    }
    Ok(cst::Context::Value(Arc::new(fields)))
}

/// [`context_value`] through the public API (uncached `ip`).
fn context_reference(req: &PolicyRequest<'_>) -> Result<Context, RequestBuildError> {
    let source_ip = req.source_ip.map(|ip| {
        (
            "source_ip".to_owned(),
            RestrictedExpression::new_ip(ip_text(ip)),
        )
    });
    let actor = req
        .actor
        .as_ref()
        .map(actor_record)
        .transpose()?
        .map(|record| ("actor".to_owned(), record));
    let numbers = Times::of(req)?
        .pairs()
        .map(|(name, value)| (name.to_owned(), RestrictedExpression::new_long(value)));
    Context::from_pairs(source_ip.into_iter().chain(actor).chain(numbers).chain([(
        "has_actor".to_owned(),
        RestrictedExpression::new_bool(req.actor.is_some()),
    )]))
    .map_err(|e| RequestBuildError::Context(e.to_string()))
}

/// Cedar's `ip(...)` value of `ip`.
fn ip_value(ip: IpAddr) -> Result<cst::Value, RequestBuildError> {
    let expr = RestrictedExpression::new_ip(ip_text(ip));
    RestrictedEvaluator::new(Extensions::all_available())
        .interpret(AsRef::<cst::RestrictedExpr>::as_ref(&expr).as_borrowed())
        .map_err(|e| RequestBuildError::Context(e.to_string()))
}

/// `context.actor`: the verified actor token as a record `trust`, `issuer`, `subject`,
/// `claims`. Every actor claim is converted (the slices prune subject claims only), with
/// the same rules and depth bound as subject claims.
fn actor_value(actor: &PolicyActor<'_>) -> Result<cst::Value, RequestBuildError> {
    let fields: BTreeMap<SmolStr, cst::Value> = [
        ("trust", cst::Value::from(actor.trust)),
        ("issuer", cst::Value::from(actor.issuer)),
        ("subject", cst::Value::from(actor.subject)),
        ("claims", claims_value(actor.claims, &ClaimsRead::All)?),
    ]
    .into_iter()
    .map(|(name, value)| (SmolStr::new_static(name), value))
    .collect();
    Ok(cst::Value::record_arc(Arc::new(fields), None))
}

/// [`actor_value`] through the public API.
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
pub(crate) fn ip_text(ip: IpAddr) -> String {
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

/// [`claims_record`] as a Cedar value (the hot path; see [`build`]).
fn claims_value(
    claims: &Map<String, Value>,
    read: &ClaimsRead,
) -> Result<cst::Value, RequestBuildError> {
    let mut fields = BTreeMap::new();
    for (name, value) in claims {
        let wanted = match read {
            ClaimsRead::All => true,
            ClaimsRead::Only(names) => names.contains(name),
        };
        if !wanted {
            check_nesting(name, value, 1)?;
        } else if let Some(value) = core_value(name, value, 1)? {
            fields.insert(SmolStr::new(name), value);
        }
    }
    Ok(cst::Value::record_arc(Arc::new(fields), None))
}

/// [`claim_value`] as a Cedar value.
fn core_value(
    claim: &str,
    value: &Value,
    depth: usize,
) -> Result<Option<cst::Value>, RequestBuildError> {
    Ok(match value {
        Value::Null => None,
        Value::Bool(b) => Some(cst::Value::from(*b)),
        Value::Number(n) => n.as_i64().map(cst::Value::from),
        Value::String(s) => Some(cst::Value::from(s.as_str())),
        Value::Array(items) => {
            check_depth(claim, depth)?;
            let mut elements = Vec::with_capacity(items.len());
            for item in items {
                elements.extend(core_value(claim, item, depth + 1)?);
            }
            Some(cst::Value::set(elements, None))
        }
        Value::Object(members) => {
            check_depth(claim, depth)?;
            let mut fields = BTreeMap::new();
            for (name, member) in members {
                if let Some(value) = core_value(claim, member, depth + 1)? {
                    fields.insert(SmolStr::new(name), value);
                }
            }
            Some(cst::Value::record_arc(Arc::new(fields), None))
        }
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
            let expr = RestrictedExpression::new_ip(canonical);
            let fresh = RestrictedEvaluator::new(Extensions::all_available())
                .interpret(AsRef::<cst::RestrictedExpr>::as_ref(&expr).as_borrowed())
                .unwrap();
            assert!(fresh.to_string().contains(canonical), "{fresh}");
            // Twice: the first call fills the cache, the second reads it.
            assert_eq!(ips.get(ip).unwrap(), fresh);
            assert_eq!(ips.get(ip).unwrap(), fresh);
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
        // Both builders, which must agree.
        let contexts = |req: &PolicyRequest<'_>| {
            let fast = Context::from(context_value(req, &ips).unwrap());
            let reference = context_reference(req).unwrap();
            assert_eq!(fast.to_string(), reference.to_string());
            [fast, reference]
        };
        for ctx in contexts(&req) {
            assert_eq!(get(&ctx, "utc_hour"), "13");
            assert_eq!(get(&ctx, "utc_weekday"), "3");
        }
        // 1969-12-31T23:00:00Z, a Wednesday.
        req.now = -3_600;
        for ctx in contexts(&req) {
            assert_eq!(get(&ctx, "utc_hour"), "23");
            assert_eq!(get(&ctx, "utc_weekday"), "2");
        }
        req.requested_lifetime = u64::MAX;
        assert!(matches!(
            context_value(&req, &ips),
            Err(RequestBuildError::Lifetime(u64::MAX))
        ));
        assert!(matches!(
            context_reference(&req),
            Err(RequestBuildError::Lifetime(u64::MAX))
        ));
    }

    /// The hot-path builder hands Cedar exactly what the public API would: the same
    /// request (context included) and the same entities, ancestry included. A difference
    /// here would make a policy see another request than the one Legate was sent.
    #[test]
    fn the_fast_builder_builds_what_the_public_api_builds() {
        let names = Names::new();
        let target = TargetInfo {
            name: "deploy".into(),
            kind: "jwt".into(),
            audience: "https://api.example".into(),
            labels: [("env".to_owned(), "prod".to_owned())]
                .into_iter()
                .collect(),
        };
        let issuer_uid = names.issuer_uid("github");
        let issuer = Entity::with_uid(issuer_uid.clone());
        let target_uid = names.target_uid("deploy");
        let target_entity = target_entity(&names, &target).unwrap();
        let fixed = Fixed {
            issuer_uid: &issuer_uid,
            issuer: &issuer,
            target_uid: &target_uid,
            target: &target_entity,
        };
        let Value::Object(claims) = json!({
            "iss": "https://token.actions.githubusercontent.com", "sub": "repo:a/b:ref:refs/heads/main",
            "i": 7, "f": 1.5, "n": null, "b": false, "a": ["x", "x", 3, null, ["y"]],
            "o": {"k": "v", "deep": {"z": [1, 2]}}, "kubernetes.io": {"namespace": "ns"}
        }) else {
            unreachable!()
        };
        let ips = IpExprCache::new();
        let Value::Object(actor_claims) = json!({
            "iss": "https://attest.example", "sub": "host:build-7", "tpm": {"pcr": [0, 7]}
        }) else {
            unreachable!()
        };
        let actor = PolicyActor {
            trust: "attest",
            issuer: "https://attest.example",
            subject: "host:build-7",
            claims: &actor_claims,
        };
        for (source_ip, actor) in [
            (None, None),
            (Some("2001:db8::1".parse().unwrap()), Some(actor)),
            (Some("::ffff:10.0.0.1".parse().unwrap()), None),
        ] {
            let req = PolicyRequest {
                actor,
                trust: "github",
                issuer: "https://token.actions.githubusercontent.com",
                subject: "repo:a/b:ref:refs/heads/main",
                claims: &claims,
                target: "deploy",
                source_ip,
                now: 1_767_274_200,
                requested_lifetime: 900,
                issued_lifetime: 600,
            };
            for read in [
                ClaimsRead::All,
                ClaimsRead::Only(["a".to_owned(), "o".to_owned()].into_iter().collect()),
            ] {
                let (fast_req, fast_entities) = build(&names, &req, &fixed, &read, &ips).unwrap();
                let (ref_req, ref_entities) = build_reference(&names, &req, &fixed, &read).unwrap();
                assert_eq!(fast_req, ref_req);
                assert_eq!(
                    fast_req.context().unwrap().to_string(),
                    ref_req.context().unwrap().to_string()
                );
                assert_eq!(fast_entities, ref_entities);
                let principal = names.workload_uid("github", "repo:a/b:ref:refs/heads/main");
                assert!(fast_entities.is_ancestor_of(&issuer_uid, &principal));
            }
        }
    }
}
