//! The policy engine: load once, evaluate many times.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use cedar_policy::{
    AuthorizationError, Authorizer, Effect, Entity, EntityUid, Policy, PolicySet, Response,
};

use crate::load::{self, PolicyLoadError};
use crate::request::{self, Fixed, Names};
use crate::scope::{PolicyScope, Reach};

/// A configured target, as policies see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    /// The target's name: `Legate::Target::"<name>"`.
    pub name: String,
    /// The kind of token minted: "jwt" (later "aws", "gcp", "azure").
    pub kind: String,
    /// The audience of the minted token.
    pub audience: String,
    /// Labels, visible to policies as entity tags.
    pub labels: BTreeMap<String, String>,
}

/// One exchange request, as policies see it.
#[derive(Debug, Clone, Copy)]
pub struct PolicyRequest<'a> {
    /// The trust name of the token's issuer (one passed at load).
    pub trust: &'a str,
    /// The issuer URL.
    pub issuer: &'a str,
    /// The token's subject.
    pub subject: &'a str,
    /// All claims of the verified token.
    pub claims: &'a serde_json::Map<String, serde_json::Value>,
    /// The target name (one passed at load).
    pub target: &'a str,
    /// The client's address.
    pub source_ip: IpAddr,
    /// Unix seconds.
    pub now: i64,
    /// Seconds.
    pub requested_lifetime: u64,
}

/// The outcome of [`PolicyEngine::evaluate`].
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the exchange may proceed.
    pub allowed: bool,
    /// The determining policies, sorted: the satisfied permits of an allow, the satisfied
    /// forbids of a [`DecisionReason::ForbiddenByPolicy`] deny, the failing forbids of a
    /// [`DecisionReason::ForbidFailed`] deny; empty otherwise.
    pub policy_ids: Vec<String>,
    /// Evaluation errors, sorted, each naming its policy (or the request build failure).
    pub errors: Vec<String>,
    /// Why.
    pub reason: DecisionReason,
}

/// Why a [`Decision`] came out as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecisionReason {
    /// At least one permit is satisfied and no forbid is.
    Permitted,
    /// At least one forbid is satisfied.
    ForbiddenByPolicy,
    /// Cedar would allow, but a forbid failed to evaluate: guardrails fail closed.
    ForbidFailed,
    /// No permit is satisfied (default deny).
    NoPermit,
    /// The target was not passed at load.
    UnknownTarget,
    /// The trust was not passed at load.
    UnknownTrust,
    /// The request could not be mapped onto Cedar (e.g. a claim nests too deeply).
    RequestBuildFailed,
}

/// The loaded, validated and sliced policies. `Send + Sync`; share it in an `Arc`.
pub struct PolicyEngine {
    names: Names,
    authorizer: Authorizer,
    trusts: HashMap<String, TrustSlot>,
    targets: HashMap<String, TargetSlot>,
    /// Every policy: the reference for slicing, and for [`PolicyEngine::evaluate_unsliced`].
    all: PolicySet,
    /// Policy id → file name.
    files: BTreeMap<String, String>,
    warnings: Vec<String>,
}

#[derive(Debug)]
struct TrustSlot {
    /// Index into [`TargetSlot::slices`].
    index: usize,
    uid: EntityUid,
    entity: Entity,
}

#[derive(Debug)]
struct TargetSlot {
    uid: EntityUid,
    entity: Entity,
    /// One slice per trust, by [`TrustSlot::index`].
    slices: Vec<PolicySet>,
}

impl DecisionReason {
    /// A stable identifier for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Permitted => "permitted",
            Self::ForbiddenByPolicy => "forbidden",
            Self::ForbidFailed => "forbid_failed",
            Self::NoPermit => "no_permit",
            Self::UnknownTarget => "unknown_target",
            Self::UnknownTrust => "unknown_trust",
            Self::RequestBuildFailed => "request_build_failed",
        }
    }
}

impl fmt::Display for DecisionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Decision {
    fn deny(reason: DecisionReason) -> Self {
        Self {
            allowed: false,
            policy_ids: Vec::new(),
            errors: Vec::new(),
            reason,
        }
    }
}

impl PolicyEngine {
    /// Builds an engine from sources: `schema_src` in human Cedar schema syntax and
    /// `policies` as (file name, text) pairs. Pure.
    ///
    /// Policies are validated against the schema (strict). `trusts` and `targets` are the
    /// configured trust names and targets; requests naming others are denied.
    pub fn from_sources(
        schema_src: &str,
        policies: &[(String, String)],
        targets: &[TargetInfo],
        trusts: &[String],
    ) -> Result<Self, PolicyLoadError> {
        let (schema, mut warnings) = load::parse_schema(schema_src)?;
        let parsed = load::parse_policies(policies)?;
        warnings.extend(load::validate(schema, &parsed, policies)?);
        Self::assemble(parsed, targets, trusts, warnings)
    }

    /// Reads `dir/*.cedar` (sorted by name) and `dir/legate.cedarschema`, then
    /// [`from_sources`](Self::from_sources). Policy ids use the bare file names.
    pub fn load_dir(
        dir: &Path,
        targets: &[TargetInfo],
        trusts: &[String],
    ) -> Result<Self, PolicyLoadError> {
        let (schema, policies) = load::read_dir(dir)?;
        Self::from_sources(&schema, &policies, targets, trusts)
    }

    /// The bundled example policies and schema ([`crate::BUNDLED_POLICIES`],
    /// [`crate::BUNDLED_SCHEMA`]).
    pub fn bundled(targets: &[TargetInfo], trusts: &[String]) -> Result<Self, PolicyLoadError> {
        let policies: Vec<(String, String)> = crate::BUNDLED_POLICIES
            .iter()
            .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
            .collect();
        Self::from_sources(crate::BUNDLED_SCHEMA, &policies, targets, trusts)
    }

    /// Decides `req`, evaluating only the policies that can apply to its (trust, target).
    pub fn evaluate(&self, req: &PolicyRequest<'_>) -> Decision {
        self.evaluate_with(req, |target, trust| target.slices.get(trust.index))
    }

    /// Decides `req` against every policy, without slicing. For tests and benchmarks:
    /// the decision is always the same as [`evaluate`](Self::evaluate)'s.
    #[doc(hidden)]
    pub fn evaluate_unsliced(&self, req: &PolicyRequest<'_>) -> Decision {
        self.evaluate_with(req, |_, _| Some(&self.all))
    }

    /// The number of policies.
    pub fn policy_count(&self) -> usize {
        self.all.num_of_policies()
    }

    /// The policy ids, sorted.
    pub fn policy_ids(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// The file a policy comes from.
    pub fn policy_file(&self, id: &str) -> Option<&str> {
        self.files.get(id).map(String::as_str)
    }

    /// Non-fatal findings of the load: schema and validator warnings, and policies whose
    /// scope names a trust or target that is not configured (they never apply).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The number of policies evaluated for (trust, target), if both are known.
    #[doc(hidden)]
    pub fn slice_len(&self, trust: &str, target: &str) -> Option<usize> {
        let index = self.trusts.get(trust)?.index;
        let slice = self.targets.get(target)?.slices.get(index)?;
        Some(slice.num_of_policies())
    }

    fn assemble(
        parsed: load::Parsed,
        targets: &[TargetInfo],
        trusts: &[String],
        mut warnings: Vec<String>,
    ) -> Result<Self, PolicyLoadError> {
        let names = Names::new();
        let mut trust_slots = HashMap::with_capacity(trusts.len());
        for (index, trust) in trusts.iter().enumerate() {
            if trust.is_empty() || trust.contains('|') {
                return Err(PolicyLoadError::InvalidTrust(trust.clone()));
            }
            let uid = names.issuer_uid(trust);
            let slot = TrustSlot {
                index,
                entity: Entity::with_uid(uid.clone()),
                uid,
            };
            if trust_slots.insert(trust.clone(), slot).is_some() {
                return Err(PolicyLoadError::DuplicateTrust(trust.clone()));
            }
        }

        let scoped: Vec<(&Policy, PolicyScope)> = parsed
            .set
            .policies()
            .map(|p| (p, PolicyScope::of(p, &names)))
            .collect();
        let target_names: HashSet<&str> = targets.iter().map(|t| t.name.as_str()).collect();
        for (policy, scope) in &scoped {
            warnings.extend(scope_warning(policy, scope, &trust_slots, &target_names));
        }

        let mut target_slots = HashMap::with_capacity(targets.len());
        for target in targets {
            let entity = request::target_entity(&names, target).map_err(|e| {
                PolicyLoadError::TargetEntity {
                    target: target.name.clone(),
                    message: e.to_string(),
                }
            })?;
            let mut slices = Vec::with_capacity(trusts.len());
            for trust in trusts {
                let applicable = scoped
                    .iter()
                    .filter(|(_, scope)| scope.applies(trust, &target.name))
                    .map(|(policy, _)| (*policy).clone());
                slices.push(
                    PolicySet::from_policies(applicable)
                        .map_err(|e| PolicyLoadError::Slice(e.to_string()))?,
                );
            }
            let slot = TargetSlot {
                uid: names.target_uid(&target.name),
                entity,
                slices,
            };
            if target_slots.insert(target.name.clone(), slot).is_some() {
                return Err(PolicyLoadError::DuplicateTarget(target.name.clone()));
            }
        }

        Ok(Self {
            names,
            authorizer: Authorizer::new(),
            trusts: trust_slots,
            targets: target_slots,
            all: parsed.set,
            files: parsed.files,
            warnings,
        })
    }

    fn evaluate_with<'s>(
        &'s self,
        req: &PolicyRequest<'_>,
        pick: impl FnOnce(&'s TargetSlot, &'s TrustSlot) -> Option<&'s PolicySet>,
    ) -> Decision {
        let Some(target) = self.targets.get(req.target) else {
            return Decision::deny(DecisionReason::UnknownTarget);
        };
        let Some(trust) = self.trusts.get(req.trust) else {
            return Decision::deny(DecisionReason::UnknownTrust);
        };
        let Some(policies) = pick(target, trust) else {
            return Decision::deny(DecisionReason::UnknownTrust);
        };
        let fixed = Fixed {
            issuer_uid: &trust.uid,
            issuer: &trust.entity,
            target_uid: &target.uid,
            target: &target.entity,
        };
        match request::build(&self.names, req, &fixed) {
            Ok((request, entities)) => decide(
                &self.authorizer.is_authorized(&request, policies, &entities),
                policies,
            ),
            Err(e) => Decision {
                errors: vec![e.to_string()],
                ..Decision::deny(DecisionReason::RequestBuildFailed)
            },
        }
    }
}

impl fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut trusts: Vec<&str> = self.trusts.keys().map(String::as_str).collect();
        trusts.sort_unstable();
        let mut targets: Vec<&str> = self.targets.keys().map(String::as_str).collect();
        targets.sort_unstable();
        f.debug_struct("PolicyEngine")
            .field("policies", &self.files.keys().collect::<Vec<_>>())
            .field("trusts", &trusts)
            .field("targets", &targets)
            .field("warnings", &self.warnings.len())
            .finish_non_exhaustive()
    }
}

/// A warning for a policy that never applies, or applies to no configured trust/target.
fn scope_warning(
    policy: &Policy,
    scope: &PolicyScope,
    trusts: &HashMap<String, TrustSlot>,
    targets: &HashSet<&str>,
) -> Option<String> {
    let id: &str = policy.id().as_ref();
    if !scope.can_apply() {
        return Some(format!(
            "policy `{id}` can never apply: its scope matches no `Legate::Workload`, \
             `Legate::Action::\"exchange\"` or `Legate::Target`"
        ));
    }
    if let Reach::Only(trust) = &scope.trust
        && !trusts.contains_key(trust)
    {
        return Some(format!(
            "policy `{id}` is scoped to trust `{trust}`, which is not configured"
        ));
    }
    if let Reach::Only(target) = &scope.target
        && !targets.contains(target.as_str())
    {
        return Some(format!(
            "policy `{id}` is scoped to target `{target}`, which is not configured"
        ));
    }
    None
}

/// Turns Cedar's response into a [`Decision`]; `policies` is the set that was evaluated.
fn decide(response: &Response, policies: &PolicySet) -> Decision {
    let diagnostics = response.diagnostics();
    let mut determining: Vec<String> = diagnostics
        .reason()
        .map(|id| AsRef::<str>::as_ref(id).to_owned())
        .collect();
    determining.sort_unstable();
    let mut errors = Vec::new();
    let mut failed_forbids = Vec::new();
    for error in diagnostics.errors() {
        errors.push(error.to_string());
        match error {
            AuthorizationError::PolicyEvaluationError(e) => {
                let is_forbid = policies
                    .policy(e.policy_id())
                    .is_some_and(|p| p.effect() == Effect::Forbid);
                if is_forbid {
                    failed_forbids.push(AsRef::<str>::as_ref(e.policy_id()).to_owned());
                }
            }
        }
    }
    errors.sort_unstable();
    failed_forbids.sort_unstable();
    let (allowed, policy_ids, reason) = match response.decision() {
        cedar_policy::Decision::Allow if failed_forbids.is_empty() => {
            (true, determining, DecisionReason::Permitted)
        }
        cedar_policy::Decision::Allow => (false, failed_forbids, DecisionReason::ForbidFailed),
        cedar_policy::Decision::Deny if determining.is_empty() => {
            (false, determining, DecisionReason::NoPermit)
        }
        cedar_policy::Decision::Deny => (false, determining, DecisionReason::ForbiddenByPolicy),
    };
    Decision {
        allowed,
        policy_ids,
        errors,
        reason,
    }
}
