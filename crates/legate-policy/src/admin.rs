//! Authorising Legate's admin endpoints with Cedar: [`PolicyEngine::authorize_admin`].
//!
//! The request is `principal` = the admin's `Legate::Workload` (built exactly like an
//! exchange's), `action == Legate::Action::"admin"`, `resource ==
//! Legate::AdminEndpoint::"decisions"` (or `"explain"`), context `source_ip` (left out
//! when unknown) and `request_time`.
//!
//! SECURITY: the admin policies are exactly those whose action scope *names*
//! `Legate::Action::"admin"` (`action == Legate::Action::"admin"` or `action in [...,
//! Legate::Action::"admin"]`). A policy with an unconstrained action scope is an exchange
//! policy: it is neither evaluated for admin requests nor validated against the admin
//! action. Otherwise every existing `permit(principal in Legate::Issuer::"ci", action,
//! resource) when { ... }` would quietly grant its CI workloads the admin endpoints, and
//! every guardrail reading `context.requested_lifetime` or `resource.getTag(...)` would
//! stop validating. Exchange slices, conversely, hold only policies whose action scope
//! admits `Legate::Action::"exchange"`, so an admin-only policy never takes part in an
//! exchange.

use std::net::IpAddr;
use std::str::FromStr;

use cedar_policy::{
    ActionConstraint, Context, Entity, EntityId, EntityTypeName, EntityUid, Policy, PolicySet,
    ResourceConstraint, RestrictedExpression, Schema, SchemaFragment, ValidationMode,
    ValidationResult, Validator,
};
use serde_json::Map;

use crate::claim_refs::{self, ClaimsRead};
use crate::engine::{Decision, DecisionReason, PolicyEngine, PolicyRequest, Slice};
use crate::load::PolicyLoadError;
use crate::request::{self, Fixed};
use crate::scope::{PolicyScope, Reach};

/// The action of admin requests: `Legate::Action::"admin"`.
const ADMIN_ACTION: &str = "admin";

/// The entity type of the admin endpoints.
const ENDPOINT_TYPE: &str = "Legate::AdminEndpoint";

/// An admin endpoint: `Legate::AdminEndpoint::"<name>"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminEndpoint {
    /// `GET /admin/decisions/{request_id}`.
    Decisions,
    /// `POST /admin/explain`.
    Explain,
    /// `POST /admin/revocations` and `GET /admin/revocations`.
    Revocations,
    /// `GET /admin/inventory`.
    Inventory,
    /// `GET /admin/status`.
    Status,
    /// `POST /introspect` (RFC 7662), for relying parties of `jwt` targets.
    Introspect,
}

impl AdminEndpoint {
    /// The entity id: `decisions`, `explain`, `revocations`, `inventory`, `status` or
    /// `introspect`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decisions => "decisions",
            Self::Explain => "explain",
            Self::Revocations => "revocations",
            Self::Inventory => "inventory",
            Self::Status => "status",
            Self::Introspect => "introspect",
        }
    }
}

/// One admin request, as policies see it.
#[derive(Debug, Clone, Copy)]
pub struct AdminRequest<'a> {
    /// The trust name of the admin token's issuer.
    pub trust: &'a str,
    /// The issuer URL.
    pub issuer: &'a str,
    /// The admin token's subject.
    pub subject: &'a str,
    /// All claims of the verified admin token.
    pub claims: &'a Map<String, serde_json::Value>,
    /// The endpoint asked for.
    pub endpoint: AdminEndpoint,
    /// The client's address, `None` when unknown.
    pub source_ip: Option<IpAddr>,
    /// Unix seconds.
    pub now: i64,
}

/// Whether `policy`'s action scope names `Legate::Action::"admin"`.
pub(crate) fn names_admin(policy: &Policy) -> bool {
    let is_admin = |uid: &EntityUid| {
        uid.type_name().to_string() == "Legate::Action" && uid.id().unescaped() == ADMIN_ACTION
    };
    match policy.action_constraint() {
        ActionConstraint::Any => false,
        ActionConstraint::Eq(uid) => is_admin(&uid),
        ActionConstraint::In(uids) => uids.iter().any(is_admin),
    }
}

/// Whether `policy` can apply to some admin request: it names the admin action, its
/// principal scope can match a workload, and its resource scope an admin endpoint.
pub(crate) fn can_apply(policy: &Policy, scope: &PolicyScope) -> bool {
    let is_endpoint_type = |ty: &EntityTypeName| ty.to_string() == ENDPOINT_TYPE;
    let resource = match policy.resource_constraint() {
        ResourceConstraint::Any => true,
        ResourceConstraint::Is(ty) => is_endpoint_type(&ty),
        ResourceConstraint::Eq(uid) | ResourceConstraint::In(uid) => {
            is_endpoint_type(uid.type_name())
        }
        ResourceConstraint::IsIn(ty, uid) => {
            is_endpoint_type(&ty) && is_endpoint_type(uid.type_name())
        }
    };
    names_admin(policy) && scope.trust != Reach::Nothing && resource
}

/// The admin slice: the policies that name the admin action. Shadow mode is for
/// exchange policies: a shadow policy (`shadow_ids`) never takes part in admin decisions.
pub(crate) fn slice(
    set: &PolicySet,
    shadow_ids: &std::collections::HashSet<String>,
) -> Result<Slice, PolicyLoadError> {
    let policies: Vec<&Policy> = set
        .policies()
        .filter(|p| names_admin(p) && !shadow_ids.contains(AsRef::<str>::as_ref(p.id())))
        .collect();
    let ests: Vec<claim_refs::Est> = policies.iter().map(|p| claim_refs::est(p)).collect();
    let claims: ClaimsRead = ests
        .iter()
        .map(claim_refs::claims_read_in)
        .collect::<Vec<_>>()
        .iter()
        .collect();
    let reads_source_ip = ests.iter().any(claim_refs::reads_source_ip_in);
    let set = PolicySet::from_policies(policies.into_iter().cloned())
        .map_err(|e| PolicyLoadError::Slice(e.to_string()))?;
    Ok(Slice {
        set,
        claims,
        reads_source_ip,
        shadow: None,
    })
}

/// Validates `set` against `schema` (strict): the policies naming the admin action
/// against the whole schema, the others against the schema without the admin action
/// (see the module documentation).
pub(crate) fn validate(
    schema: Schema,
    schema_src: &str,
    set: &PolicySet,
) -> Result<Vec<ValidationResult>, PolicyLoadError> {
    let exchange_schema = without_admin_action(schema_src).unwrap_or_else(|| schema.clone());
    if !set.policies().any(names_admin) {
        // The common case: no admin policy, nothing to split (or copy).
        return Ok(vec![
            Validator::new(exchange_schema).validate(set, ValidationMode::Strict),
        ]);
    }
    let (admin, exchange): (Vec<&Policy>, Vec<&Policy>) =
        set.policies().partition(|p| names_admin(p));
    let to_set = |policies: Vec<&Policy>| {
        PolicySet::from_policies(policies.into_iter().cloned())
            .map_err(|e| PolicyLoadError::Slice(e.to_string()))
    };
    Ok(vec![
        Validator::new(exchange_schema).validate(&to_set(exchange)?, ValidationMode::Strict),
        Validator::new(schema).validate(&to_set(admin)?, ValidationMode::Strict),
    ])
}

/// The schema without `Legate::Action::"admin"`; `None` when it has no such action (or
/// cannot be converted, in which case the full schema is used and stays strict).
fn without_admin_action(schema_src: &str) -> Option<Schema> {
    let (fragment, _) = SchemaFragment::from_cedarschema_str(schema_src).ok()?;
    let mut json = fragment.to_json_value().ok()?;
    json.get_mut("Legate")?
        .get_mut("actions")?
        .as_object_mut()?
        .remove(ADMIN_ACTION)?;
    Schema::from_json_value(json).ok()
}

impl PolicyEngine {
    /// Decides an admin request against the admin policies (those whose action scope
    /// names `Legate::Action::"admin"`). Deny by default, like [`evaluate`](Self::evaluate):
    /// no admin policy, an unknown trust, an unbuildable request, or a failing `forbid`
    /// all deny.
    pub fn authorize_admin(&self, req: &AdminRequest<'_>) -> Decision {
        let Some(trust) = self.trust_slot(req.trust) else {
            return Decision::deny(DecisionReason::UnknownTrust);
        };
        let slice = self.admin_slice();
        // SECURITY: as for exchanges, an unknown client address never reaches a policy
        // that reads it (the policy would err and be skipped).
        if req.source_ip.is_none() && slice.reads_source_ip {
            return Decision {
                errors: vec![
                    "the client address is unknown and a policy reads `context.source_ip`"
                        .to_owned(),
                ],
                ..Decision::deny(DecisionReason::ClientAddressUnknown)
            };
        }
        match self.admin_request(req, trust.0, trust.1, slice) {
            Ok((request, entities)) => {
                let mut decision = crate::engine::decide(
                    &self
                        .authorizer()
                        .is_authorized(&request, &slice.set, &entities),
                    &slice.set,
                );
                decision.lint_exceptions = self.lint_exceptions(&decision.policy_ids);
                decision
            }
            Err(e) => Decision {
                errors: vec![e],
                ..Decision::deny(DecisionReason::RequestBuildFailed)
            },
        }
    }

    fn admin_request(
        &self,
        req: &AdminRequest<'_>,
        issuer_uid: &EntityUid,
        issuer: &Entity,
        slice: &Slice,
    ) -> Result<(cedar_policy::Request, cedar_policy::Entities), String> {
        let name = |s: &str| EntityTypeName::from_str(s).map_err(|e| e.to_string());
        let endpoint_uid = EntityUid::from_type_name_and_id(
            name(ENDPOINT_TYPE)?,
            EntityId::new(req.endpoint.as_str()),
        );
        let action =
            EntityUid::from_type_name_and_id(name("Legate::Action")?, EntityId::new(ADMIN_ACTION));
        let endpoint = Entity::new_no_attrs(endpoint_uid.clone(), Default::default());
        // The principal and its entities are built exactly as for an exchange; the
        // exchange's own request is then replaced by the admin one.
        let as_exchange = PolicyRequest {
            actor: None,
            trust: req.trust,
            issuer: req.issuer,
            subject: req.subject,
            claims: req.claims,
            target: "",
            source_ip: req.source_ip,
            now: req.now,
            requested_lifetime: 0,
            issued_lifetime: 0,
        };
        let fixed = Fixed {
            issuer_uid,
            issuer,
            target_uid: &endpoint_uid,
            target: &endpoint,
        };
        let (exchange, entities) = request::build(
            self.names(),
            &as_exchange,
            &fixed,
            &slice.claims,
            self.ips(),
        )
        .map_err(|e| e.to_string())?;
        let principal = exchange
            .principal()
            .cloned()
            .ok_or_else(|| "the request has no principal".to_owned())?;
        let mut context = vec![(
            "request_time".to_owned(),
            RestrictedExpression::new_long(req.now),
        )];
        if let Some(ip) = req.source_ip {
            // Admin requests are rare: the address is not memoised.
            context.push((
                "source_ip".to_owned(),
                RestrictedExpression::new_ip(request::ip_text(ip)),
            ));
        }
        let context = Context::from_pairs(context).map_err(|e| e.to_string())?;
        let request = cedar_policy::Request::new(principal, action, endpoint_uid, context, None)
            .map_err(|e| e.to_string())?;
        Ok((request, entities))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use serde_json::json;

    use super::*;

    fn engine(src: &str) -> Result<PolicyEngine, PolicyLoadError> {
        PolicyEngine::from_sources_unlinted(
            crate::BUNDLED_SCHEMA,
            &[("p.cedar".to_owned(), src.to_owned())],
            &[],
            &["ops".to_owned(), "ci".to_owned()],
        )
    }

    fn request<'a>(
        trust: &'a str,
        claims: &'a Map<String, serde_json::Value>,
        endpoint: AdminEndpoint,
    ) -> AdminRequest<'a> {
        AdminRequest {
            trust,
            issuer: "https://ops.invalid",
            subject: "alice",
            claims,
            endpoint,
            source_ip: Some("10.0.0.1".parse().unwrap()),
            now: 1_767_225_600,
        }
    }

    const ADMIN: &str = r#"
@id("ops-admin")
permit (
  principal == Legate::Workload::"ops|alice",
  action == Legate::Action::"admin",
  resource == Legate::AdminEndpoint::"decisions"
) when { context.source_ip.isInRange(ip("10.0.0.0/8")) };
"#;

    /// Stops an exchange permit with an unconstrained action scope from granting the
    /// admin endpoints to its CI workloads (and guardrails written for exchanges from
    /// failing validation against the admin action).
    #[test]
    fn exchange_policies_never_authorise_admin_requests() {
        let src = format!(
            r#"{ADMIN}
@id("ci-everything") permit (principal in Legate::Issuer::"ci", action, resource);
@id("lifetime") forbid (principal, action, resource)
  when {{ resource.hasTag("env") && context.requested_lifetime > 3600 }};"#
        );
        let engine = engine(&src).unwrap();
        let claims = Map::new();
        let ci = request("ci", &claims, AdminEndpoint::Decisions);
        let decision = engine.authorize_admin(&ci);
        assert!(!decision.allowed, "{decision:?}");
        assert_eq!(decision.reason, DecisionReason::NoPermit);
        let ops = request("ops", &claims, AdminEndpoint::Decisions);
        let decision = engine.authorize_admin(&ops);
        assert!(decision.allowed, "{decision:?}");
        assert_eq!(decision.policy_ids, ["ops-admin"]);
        // The policy names one endpoint only.
        let explain = request("ops", &claims, AdminEndpoint::Explain);
        assert!(!engine.authorize_admin(&explain).allowed);
        // A source address outside the range, or unknown, is refused.
        let mut far = ops;
        far.source_ip = Some("192.0.2.1".parse().unwrap());
        assert!(!engine.authorize_admin(&far).allowed);
        far.source_ip = None;
        assert_eq!(
            engine.authorize_admin(&far).reason,
            DecisionReason::ClientAddressUnknown
        );
        assert_eq!(
            engine
                .authorize_admin(&request("nope", &claims, AdminEndpoint::Decisions))
                .reason,
            DecisionReason::UnknownTrust
        );
    }

    /// Stops an admin-only permit from taking part in an exchange.
    #[test]
    fn admin_policies_never_take_part_in_exchanges() {
        let src =
            r#"@id("admin-all") permit (principal, action == Legate::Action::"admin", resource);"#;
        let engine = PolicyEngine::from_sources_unlinted(
            crate::BUNDLED_SCHEMA,
            &[("p.cedar".to_owned(), src.to_owned())],
            &[crate::TargetInfo {
                name: "x".into(),
                kind: "jwt".into(),
                audience: "https://x.invalid".into(),
                labels: Default::default(),
            }],
            &["ops".to_owned()],
        )
        .unwrap();
        assert_eq!(engine.slice_len("ops", "x"), Some(0));
        assert!(
            engine.warnings().is_empty(),
            "an admin policy is not a policy that never applies: {:?}",
            engine.warnings()
        );
        let claims = Map::new();
        assert!(
            engine
                .authorize_admin(&request("ops", &claims, AdminEndpoint::Explain))
                .allowed
        );
    }

    #[test]
    fn admin_policies_are_validated_against_the_admin_action() {
        // The admin context has no `requested_lifetime`.
        let e = engine(
            r#"@id("bad") permit (principal, action == Legate::Action::"admin", resource)
               when { context.requested_lifetime > 1 };"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("`bad`"), "{e}");
        // Claims work as in exchange policies.
        let engine = engine(
            r#"@id("by-claim") permit (principal in Legate::Issuer::"ops", action == Legate::Action::"admin", resource)
               when { principal.claims has env && principal.claims.env == "ops" };"#,
        )
        .unwrap();
        let claims = match json!({"env": "ops"}) {
            serde_json::Value::Object(m) => m,
            _ => Map::new(),
        };
        assert!(
            engine
                .authorize_admin(&request("ops", &claims, AdminEndpoint::Decisions))
                .allowed
        );
    }
}
