//! The policy engine: load once, evaluate many times.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use cedar_policy::{
    AuthorizationError, Authorizer, Effect, Entity, EntityUid, Policy, PolicySet, Response,
};

use crate::claim_refs::{self, ClaimsRead};
use crate::load::{self, PolicyLoadError};
use crate::request::{self, Fixed, IpExprCache, Names};
use crate::scope::{PolicyScope, Reach};
use crate::shadow::{self, ShadowOutcome, ShadowSlice};

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
    /// The client's address; `None` when it is unknown (a malformed `X-Forwarded-For`
    /// from a trusted proxy). An unknown address denies the request whenever a policy
    /// that can apply reads `context.source_ip`
    /// ([`DecisionReason::ClientAddressUnknown`]); otherwise it is left out of the context.
    pub source_ip: Option<IpAddr>,
    /// Unix seconds.
    pub now: i64,
    /// Seconds, as the client asked (the target's default when it asked for none).
    pub requested_lifetime: u64,
    /// Seconds: the lifetime Legate would issue (after the target's cap and the
    /// subject token's own expiry).
    pub issued_lifetime: u64,
    /// The verified actor token of a delegated exchange (RFC 8693 §2.1), if any:
    /// `context.actor`, and `context.has_actor` is true.
    pub actor: Option<PolicyActor<'a>>,
}

/// A verified actor token, as policies see it (`context.actor`).
#[derive(Debug, Clone, Copy)]
pub struct PolicyActor<'a> {
    /// The trust name of the actor token's issuer (one passed at load).
    pub trust: &'a str,
    /// The actor token's issuer URL.
    pub issuer: &'a str,
    /// The actor token's subject.
    pub subject: &'a str,
    /// All claims of the verified actor token.
    pub claims: &'a serde_json::Map<String, serde_json::Value>,
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
    /// The `@allow_lint` annotations of the determining policies, each as
    /// `<policy id>: <annotation>` (sorted by policy id): the lint exceptions this
    /// decision relied on, for the audit event.
    pub lint_exceptions: Vec<String>,
    /// The would-be effects of the shadow policies (`@mode("shadow")`) that matched or
    /// erred, sorted by policy id; they never change `allowed`. See [`crate::shadow`].
    pub shadow: Vec<ShadowOutcome>,
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
    /// The client address is unknown and a policy that can apply reads
    /// `context.source_ip`: evaluating would make that policy err, and Cedar skips a
    /// policy that errs, silently dropping an IP guardrail.
    ClientAddressUnknown,
}

/// The loaded, validated and sliced policies. `Send + Sync`; share it in an `Arc`.
pub struct PolicyEngine {
    names: Names,
    ips: IpExprCache,
    authorizer: Authorizer,
    trusts: HashMap<String, TrustSlot>,
    targets: HashMap<String, TargetSlot>,
    /// Every policy, and the claims they read: the reference for slicing, and for
    /// [`PolicyEngine::evaluate_unsliced`].
    all: Slice,
    /// The same policies with every claim converted, for
    /// [`PolicyEngine::evaluate_reference`].
    reference: Slice,
    /// Policy id → file name.
    files: BTreeMap<String, String>,
    /// Sorted.
    shadow_ids: Vec<String>,
    warnings: Vec<String>,
    /// See [`PolicyEngine::set_hash`].
    set_hash: String,
    /// Policy id → its `@allow_lint` note as decisions report it (`<id>: <note>`), read
    /// once at load: `Policy::annotation` parses its key with Cedar's parser at every call.
    lint_notes: HashMap<String, String>,
    /// The admin policies (see [`crate::admin`]).
    admin: Slice,
    /// The policy sources, and their positions once [`PolicyEngine::explain`] first
    /// needs them (indexing costs a second parse, which loads and reloads skip).
    sources: Vec<(String, String)>,
    texts: std::sync::OnceLock<crate::policy_text::Texts>,
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
    slices: Vec<Slice>,
}

/// How a request is mapped onto Cedar: [`request::build`] or [`request::build_reference`].
#[derive(Debug, Clone, Copy)]
enum Build {
    Fast,
    Reference,
}

/// The policies that can apply to a request, and the claims they can read: only those
/// claims are converted to Cedar (the rest are unreachable from these policies).
#[derive(Debug)]
pub(crate) struct Slice {
    pub(crate) set: PolicySet,
    pub(crate) claims: ClaimsRead,
    /// Whether any of these policies can read `context.source_ip`.
    pub(crate) reads_source_ip: bool,
    /// The shadow policies that can apply, if any (their claims are in `claims`).
    pub(crate) shadow: Option<ShadowSlice>,
}

/// One policy with what the load learnt about it.
struct Scoped<'p> {
    policy: &'p Policy,
    scope: PolicyScope,
    read: ClaimsRead,
    reads_ip: bool,
    shadow: bool,
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
            Self::ClientAddressUnknown => "client_address_unknown",
        }
    }
}

impl fmt::Display for DecisionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Decision {
    pub(crate) fn deny(reason: DecisionReason) -> Self {
        Self {
            allowed: false,
            policy_ids: Vec::new(),
            errors: Vec::new(),
            reason,
            shadow: Vec::new(),
            lint_exceptions: Vec::new(),
        }
    }
}

/// Options of a policy load beyond the sources, targets and trusts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Trust name → issuer template name (an id or alias of
    /// [`crate::templates::TEMPLATES`]). The lints use a trust's template; a trust
    /// without one gets the generic lints ([`crate::lint`]).
    pub templates: BTreeMap<String, String>,
}

impl LoadOptions {
    /// The templates of the bundled example trusts ([`crate::templates::EXAMPLE_TRUSTS`]).
    pub fn examples() -> Self {
        Self {
            templates: crate::templates::EXAMPLE_TRUSTS
                .iter()
                .map(|(trust, template)| ((*trust).to_owned(), (*template).to_owned()))
                .collect(),
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
        Self::from_sources_with(
            schema_src,
            policies,
            targets,
            trusts,
            &LoadOptions::default(),
        )
    }

    /// [`from_sources`](Self::from_sources) with options: the trusts' issuer templates,
    /// which the lints use. Every load runs the lints ([`crate::lint`]); a lint error
    /// fails the load ([`PolicyLoadError::Lint`]), lint warnings join
    /// [`warnings`](Self::warnings).
    pub fn from_sources_with(
        schema_src: &str,
        policies: &[(String, String)],
        targets: &[TargetInfo],
        trusts: &[String],
        options: &LoadOptions,
    ) -> Result<Self, PolicyLoadError> {
        let mut templates = BTreeMap::new();
        for (trust, name) in &options.templates {
            let template =
                crate::templates::find(name).ok_or_else(|| PolicyLoadError::UnknownTemplate {
                    trust: trust.clone(),
                    template: name.clone(),
                    known: crate::templates::names().join(", "),
                })?;
            templates.insert(trust.clone(), template);
        }
        Self::load(schema_src, policies, targets, trusts, Some(&templates))
    }

    /// The policies without the lints: for this crate's unit tests of evaluation, whose
    /// policies are deliberately loose. Never compiled outside tests.
    #[cfg(test)]
    pub(crate) fn from_sources_unlinted(
        schema_src: &str,
        policies: &[(String, String)],
        targets: &[TargetInfo],
        trusts: &[String],
    ) -> Result<Self, PolicyLoadError> {
        Self::load(schema_src, policies, targets, trusts, None)
    }

    fn load(
        schema_src: &str,
        policies: &[(String, String)],
        targets: &[TargetInfo],
        trusts: &[String],
        lint_templates: Option<&BTreeMap<String, &'static crate::templates::Template>>,
    ) -> Result<Self, PolicyLoadError> {
        let (schema, mut warnings) = load::parse_schema(schema_src)?;
        let parsed = load::parse_policies(policies)?;
        let shadow_ids = shadow::shadow_ids(&parsed, policies)?;
        // Each policy rendered once, for every analysis of validation and slicing.
        let ests: HashMap<String, claim_refs::Est> = parsed
            .set
            .policies()
            .map(|p| (AsRef::<str>::as_ref(p.id()).to_owned(), claim_refs::est(p)))
            .collect();
        warnings.extend(load::validate(
            schema, schema_src, &parsed, policies, &ests,
        )?);
        if let Some(templates) = lint_templates {
            warnings.extend(crate::lint::check(&parsed, policies, templates, &ests)?);
        }
        let mut engine = Self::assemble(parsed, &ests, &shadow_ids, targets, trusts, warnings)?;
        engine.set_hash = policy_set_hash(policies);
        engine.sources = policies.to_vec();
        Ok(engine)
    }

    /// Reads `dir/*.cedar` (sorted by name) and `dir/legate.cedarschema`, then
    /// [`from_sources`](Self::from_sources). Policy ids use the bare file names.
    pub fn load_dir(
        dir: &Path,
        targets: &[TargetInfo],
        trusts: &[String],
    ) -> Result<Self, PolicyLoadError> {
        Self::load_dir_with(dir, targets, trusts, &LoadOptions::default())
    }

    /// [`load_dir`](Self::load_dir) with options (see
    /// [`from_sources_with`](Self::from_sources_with)).
    pub fn load_dir_with(
        dir: &Path,
        targets: &[TargetInfo],
        trusts: &[String],
        options: &LoadOptions,
    ) -> Result<Self, PolicyLoadError> {
        let (schema, policies) = load::read_dir(dir)?;
        Self::from_sources_with(&schema, &policies, targets, trusts, options)
    }

    /// The bundled example policies and schema ([`crate::BUNDLED_POLICIES`],
    /// [`crate::BUNDLED_SCHEMA`]).
    ///
    /// The example trusts (`demo`, `github`, `gitlab`, `kubernetes`) get their templates
    /// ([`LoadOptions::examples`]): the bundled policies are written for them.
    pub fn bundled(targets: &[TargetInfo], trusts: &[String]) -> Result<Self, PolicyLoadError> {
        Self::bundled_with(targets, trusts, &LoadOptions::examples())
    }

    /// [`bundled`](Self::bundled) with options (see
    /// [`from_sources_with`](Self::from_sources_with)).
    pub fn bundled_with(
        targets: &[TargetInfo],
        trusts: &[String],
        options: &LoadOptions,
    ) -> Result<Self, PolicyLoadError> {
        let policies: Vec<(String, String)> = crate::BUNDLED_POLICIES
            .iter()
            .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
            .collect();
        Self::from_sources_with(crate::BUNDLED_SCHEMA, &policies, targets, trusts, options)
    }

    /// Decides `req`, evaluating only the policies that can apply to its (trust, target).
    pub fn evaluate(&self, req: &PolicyRequest<'_>) -> Decision {
        self.evaluate_with(req, Build::Fast, |target, trust| {
            target.slices.get(trust.index)
        })
    }

    /// Decides `req` against every policy, without slicing. For tests and benchmarks:
    /// the decision is always the same as [`evaluate`](Self::evaluate)'s.
    #[doc(hidden)]
    pub fn evaluate_unsliced(&self, req: &PolicyRequest<'_>) -> Decision {
        self.evaluate_with(req, Build::Fast, |_, _| Some(&self.all))
    }

    /// Decides `req` against every policy with every claim converted: Cedar over the
    /// whole entity model, through its public API alone, without slicing or claim
    /// pruning. For tests and benchmarks:
    /// the decision is always the same as [`evaluate`](Self::evaluate)'s.
    #[doc(hidden)]
    pub fn evaluate_reference(&self, req: &PolicyRequest<'_>) -> Decision {
        self.evaluate_with(req, Build::Reference, |_, _| Some(&self.reference))
    }

    /// The number of policies (enforced and shadow).
    pub fn policy_count(&self) -> usize {
        self.files.len()
    }

    /// The ids of the shadow policies (`@mode("shadow")`), sorted.
    pub fn shadow_policy_ids(&self) -> &[String] {
        &self.shadow_ids
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

    /// SHA-256 (lowercase hex) of the policy texts, by file name: the same files give
    /// the same hash, so operators can tell which policy set a replica runs.
    pub fn set_hash(&self) -> &str {
        &self.set_hash
    }

    /// The number of enforced policies evaluated for (trust, target), if both are known.
    #[doc(hidden)]
    pub fn slice_len(&self, trust: &str, target: &str) -> Option<usize> {
        let index = self.trusts.get(trust)?.index;
        let slice = self.targets.get(target)?.slices.get(index)?;
        Some(slice.set.num_of_policies())
    }

    fn assemble(
        parsed: load::Parsed,
        ests: &HashMap<String, claim_refs::Est>,
        shadow_ids: &HashSet<String>,
        targets: &[TargetInfo],
        trusts: &[String],
        mut warnings: Vec<String>,
    ) -> Result<Self, PolicyLoadError> {
        let names = Names::new();
        if parsed.set.is_empty() {
            warnings.push("no policies are loaded: every request is denied".to_owned());
        }
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

        let scoped: Vec<Scoped<'_>> = parsed
            .set
            .policies()
            .map(|p| {
                let id: &str = p.id().as_ref();
                let rendered;
                let est = match ests.get(id) {
                    Some(est) => est,
                    None => {
                        rendered = claim_refs::est(p);
                        &rendered
                    }
                };
                Scoped {
                    policy: p,
                    scope: PolicyScope::of(p, &names),
                    read: claim_refs::claims_read_in(est),
                    reads_ip: claim_refs::reads_source_ip_in(est),
                    shadow: shadow_ids.contains(id),
                }
            })
            .collect();
        let target_names: HashSet<&str> = targets.iter().map(|t| t.name.as_str()).collect();
        for s in &scoped {
            warnings.extend(scope_warning(
                s.policy,
                &s.scope,
                &trust_slots,
                &target_names,
            ));
        }

        // Index the policies by the target they are scoped to, once: each slice then
        // looks at its target's policies and the unscoped ones, not at every policy
        // (the load stays linear in the set, however many targets there are).
        let mut by_target: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut any_target: Vec<usize> = Vec::new();
        for (i, s) in scoped.iter().enumerate() {
            match &s.scope.target {
                Reach::Only(name) => by_target.entry(name.as_str()).or_default().push(i),
                Reach::All => any_target.push(i),
                Reach::Nothing => {}
            }
        }

        let mut target_slots = HashMap::with_capacity(targets.len());
        for target in targets {
            let entity = request::target_entity(&names, target).map_err(|e| {
                PolicyLoadError::TargetEntity {
                    target: target.name.clone(),
                    message: e.to_string(),
                }
            })?;
            let mut candidates: Vec<usize> = by_target
                .get(target.name.as_str())
                .map_or_else(Vec::new, Clone::clone);
            candidates.extend_from_slice(&any_target);
            candidates.sort_unstable();
            let mut slices = Vec::with_capacity(trusts.len());
            for trust in trusts {
                let applicable = candidates
                    .iter()
                    .filter_map(|&i| scoped.get(i))
                    .filter(|s| s.scope.applies(trust, &target.name));
                slices.push(slice(applicable, false)?);
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

        let admin = crate::admin::slice(&parsed.set, shadow_ids)?;
        let mut shadow_ids: Vec<String> = shadow_ids.iter().cloned().collect();
        shadow_ids.sort_unstable();
        Ok(Self {
            names,
            ips: IpExprCache::new(),
            authorizer: Authorizer::new(),
            trusts: trust_slots,
            targets: target_slots,
            reference: slice(scoped.iter(), true)?,
            all: slice(scoped.iter(), false)?,
            files: parsed.files,
            shadow_ids,
            warnings,
            set_hash: String::new(),
            lint_notes: parsed
                .set
                .policies()
                .filter_map(|p| {
                    let id: &str = p.id().as_ref();
                    let note = p.annotation(crate::lint::ALLOW_LINT)?;
                    Some((id.to_owned(), format!("{id}: {note}")))
                })
                .collect(),
            admin,
            sources: Vec::new(),
            texts: std::sync::OnceLock::new(),
        })
    }

    fn evaluate_with<'s>(
        &'s self,
        req: &PolicyRequest<'_>,
        build: Build,
        pick: impl FnOnce(&'s TargetSlot, &'s TrustSlot) -> Option<&'s Slice>,
    ) -> Decision {
        let Some(target) = self.targets.get(req.target) else {
            return Decision::deny(DecisionReason::UnknownTarget);
        };
        let Some(trust) = self.trusts.get(req.trust) else {
            return Decision::deny(DecisionReason::UnknownTrust);
        };
        let Some(slice) = pick(target, trust) else {
            return Decision::deny(DecisionReason::UnknownTrust);
        };
        // SECURITY: an unknown client address never reaches Cedar when a policy can read
        // it: that policy would err and be skipped, and a skipped `forbid` is a guardrail
        // gone. Fail closed instead.
        if req.source_ip.is_none() && slice.reads_source_ip {
            return Decision {
                errors: vec![
                    "the client address is unknown and a policy reads `context.source_ip`"
                        .to_owned(),
                ],
                ..Decision::deny(DecisionReason::ClientAddressUnknown)
            };
        }
        let (policies, claims_read) = (&slice.set, &slice.claims);
        let fixed = Fixed {
            issuer_uid: &trust.uid,
            issuer: &trust.entity,
            target_uid: &target.uid,
            target: &target.entity,
        };
        let built = match build {
            Build::Fast => request::build(&self.names, req, &fixed, claims_read, &self.ips),
            Build::Reference => request::build_reference(&self.names, req, &fixed, claims_read),
        };
        match built {
            Ok((request, entities)) => {
                let mut decision = decide(
                    &self.authorizer.is_authorized(&request, policies, &entities),
                    policies,
                );
                decision.lint_exceptions = self.lint_exceptions(&decision.policy_ids);
                // Shadow policies run only where there are some, and never change
                // `allowed`: they only fill `decision.shadow`.
                if let Some(shadow) = &slice.shadow {
                    decision.shadow = if req.source_ip.is_none() && shadow.reads_source_ip {
                        shadow.all_erred(
                            "the client address is unknown and the policy reads `context.source_ip`",
                        )
                    } else {
                        shadow.evaluate(&self.authorizer, &request, &entities, &decision)
                    };
                }
                decision
            }
            Err(e) => Decision {
                errors: vec![e.to_string()],
                ..Decision::deny(DecisionReason::RequestBuildFailed)
            },
        }
    }
}

/// Accessors for [`crate::explain`] and [`crate::admin`].
impl PolicyEngine {
    /// The `@allow_lint` notes of `policy_ids` (a decision's determining policies).
    pub(crate) fn lint_exceptions(&self, policy_ids: &[String]) -> Vec<String> {
        policy_ids
            .iter()
            .filter_map(|id| self.lint_notes.get(id).cloned())
            .collect()
    }

    pub(crate) fn names(&self) -> &Names {
        &self.names
    }

    pub(crate) fn ips(&self) -> &IpExprCache {
        &self.ips
    }

    pub(crate) fn authorizer(&self) -> &Authorizer {
        &self.authorizer
    }

    pub(crate) fn texts(&self) -> &crate::policy_text::Texts {
        self.texts
            .get_or_init(|| crate::policy_text::Texts::index(&self.sources))
    }

    pub(crate) fn admin_slice(&self) -> &Slice {
        &self.admin
    }

    /// The issuer uid and entity of `trust`, if configured.
    pub(crate) fn trust_slot(&self, trust: &str) -> Option<(&EntityUid, &Entity)> {
        self.trusts.get(trust).map(|t| (&t.uid, &t.entity))
    }

    /// The slice [`evaluate`](Self::evaluate) uses for `req` and the Cedar request and
    /// entities it builds; `None` when `evaluate` decides before any policy runs.
    pub(crate) fn slice_request(
        &self,
        req: &PolicyRequest<'_>,
    ) -> Option<(&PolicySet, cedar_policy::Request, cedar_policy::Entities)> {
        let target = self.targets.get(req.target)?;
        let trust = self.trusts.get(req.trust)?;
        let slice = target.slices.get(trust.index)?;
        if req.source_ip.is_none() && slice.reads_source_ip {
            return None;
        }
        let fixed = Fixed {
            issuer_uid: &trust.uid,
            issuer: &trust.entity,
            target_uid: &target.uid,
            target: &target.entity,
        };
        let (request, entities) =
            request::build(&self.names, req, &fixed, &slice.claims, &self.ips).ok()?;
        Some((&slice.set, request, entities))
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
    if !scope.can_apply() && !crate::admin::can_apply(policy, scope) {
        return Some(format!(
            "policy `{id}` can never apply: its scope matches no `Legate::Workload`, \
             `Legate::Action::\"exchange\"` or `Legate::Target` (nor \
             `Legate::Action::\"admin\"` on a `Legate::AdminEndpoint`)"
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
pub(crate) fn decide(response: &Response, policies: &PolicySet) -> Decision {
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
        lint_exceptions: Vec::new(),
        shadow: Vec::new(),
    }
}

/// The slice of `policies` (those that can apply to one (trust, target), or all): the
/// enforced ones in its set, the shadow ones beside it; the claims of both are converted.
/// `every_claim` converts every claim (the reference slice).
fn slice<'a, 'p: 'a>(
    policies: impl Iterator<Item = &'a Scoped<'p>> + Clone,
    every_claim: bool,
) -> Result<Slice, PolicyLoadError> {
    let enforced = policies.clone().filter(|s| !s.shadow);
    let shadowed = policies.clone().filter(|s| s.shadow);
    let claims = if every_claim {
        ClaimsRead::All
    } else {
        policies.clone().map(|s| &s.read).collect()
    };
    let set = PolicySet::from_policies(enforced.clone().map(|s| s.policy.clone()))
        .map_err(|e| PolicyLoadError::Slice(e.to_string()))?;
    Ok(Slice {
        set,
        claims,
        reads_source_ip: enforced.clone().any(|s| s.reads_ip),
        shadow: ShadowSlice::new(
            shadowed.clone().map(|s| s.policy),
            shadowed.clone().any(|s| s.reads_ip),
        )?,
    })
}

/// SHA-256 over `(file name, text)` pairs sorted by name, each field length-prefixed so
/// that no two different sets frame to the same bytes.
fn policy_set_hash(policies: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = policies.iter().collect();
    sorted.sort();
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for (name, text) in sorted {
        for field in [name, text] {
            ctx.update(&(field.len() as u64).to_be_bytes());
            ctx.update(field.as_bytes());
        }
    }
    hex::encode(ctx.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    const TRUSTS: [&str; 3] = ["t0", "t1", "t2"];
    const TARGETS: [&str; 4] = ["x0", "x1", "x2", "x3"];

    fn targets() -> Vec<TargetInfo> {
        TARGETS
            .iter()
            .enumerate()
            .map(|(i, name)| TargetInfo {
                name: (*name).to_owned(),
                kind: "jwt".to_owned(),
                audience: format!("https://{name}.invalid"),
                labels: BTreeMap::from([(
                    "env".to_owned(),
                    if i % 2 == 0 { "prod" } else { "dev" }.to_owned(),
                )]),
            })
            .collect()
    }

    fn engine(policies: &str) -> PolicyEngine {
        PolicyEngine::from_sources_unlinted(
            crate::BUNDLED_SCHEMA,
            &[("p.cedar".to_owned(), policies.to_owned())],
            &targets(),
            &TRUSTS.map(String::from),
        )
        .unwrap()
    }

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    fn request<'a>(claims: &'a Map<String, Value>) -> PolicyRequest<'a> {
        PolicyRequest {
            trust: "t0",
            issuer: "https://t0.invalid",
            subject: "s0",
            claims,
            target: "x0",
            source_ip: Some("192.0.2.1".parse().unwrap()),
            now: 1_767_225_600,
            requested_lifetime: 60,
            issued_lifetime: 60,
            actor: None,
        }
    }

    /// Stops two replicas running different policy sets from reporting the same hash
    /// (and the same set from reporting two): file order does not matter, a byte does,
    /// and moving text from one file to the next changes the framing.
    #[test]
    fn set_hash_identifies_the_policy_texts() {
        let load = |files: &[(&str, &str)]| {
            let files: Vec<(String, String)> = files
                .iter()
                .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
                .collect();
            PolicyEngine::from_sources_unlinted(
                crate::BUNDLED_SCHEMA,
                &files,
                &targets(),
                &TRUSTS.map(String::from),
            )
            .unwrap()
            .set_hash()
            .to_owned()
        };
        let a = "@id(\"a\") permit(principal, action, resource);";
        let b = "@id(\"b\") forbid(principal, action, resource);";
        let base = load(&[("a.cedar", a), ("b.cedar", b)]);
        assert_eq!(base.len(), 64);
        assert_eq!(base, load(&[("b.cedar", b), ("a.cedar", a)]));
        assert_ne!(
            base,
            load(&[("a.cedar", a), ("b.cedar", &b.replace("forbid", "permit"))])
        );
        assert_ne!(
            base,
            load(&[("a.cedar", &format!("{a}\n{b}")), ("b.cedar", "")])
        );
    }

    #[test]
    fn engine_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<PolicyEngine>();
    }

    /// Stops an IP guardrail from vanishing: with the client address unknown (a
    /// malformed `X-Forwarded-For`), a `forbid` on `context.source_ip` would err, Cedar
    /// would skip it, and the permit would allow. The request is refused instead.
    #[test]
    fn unknown_client_address_is_refused_when_a_policy_reads_it() {
        let engine = engine(
            r#"@id("allow") permit(principal, action, resource);
               @id("internal-only") forbid(principal, action, resource == Legate::Target::"x0")
               unless { context.source_ip.isInRange(ip("10.0.0.0/8")) };"#,
        );
        let claims = claims(json!({}));
        let mut req = request(&claims);
        req.source_ip = None;
        let decision = engine.evaluate(&req);
        assert!(!decision.allowed);
        assert_eq!(decision.reason, DecisionReason::ClientAddressUnknown);
        // A target no IP policy applies to is decided without the address.
        req.target = "x1";
        let decision = engine.evaluate(&req);
        assert!(decision.allowed, "{decision:?}");
        // With the address known, the guardrail works as written.
        req.target = "x0";
        req.source_ip = Some("10.1.2.3".parse().unwrap());
        assert!(engine.evaluate(&req).allowed);
        req.source_ip = Some("203.0.113.9".parse().unwrap());
        assert_eq!(
            engine.evaluate(&req).reason,
            DecisionReason::ForbiddenByPolicy
        );
    }

    #[test]
    fn policies_see_the_issued_lifetime() {
        let engine = engine(
            r#"@id("allow") permit(principal, action, resource) when { context.issued_lifetime <= 300 };"#,
        );
        let claims = claims(json!({}));
        let mut req = request(&claims);
        req.requested_lifetime = 3600;
        req.issued_lifetime = 300;
        assert!(engine.evaluate(&req).allowed);
        req.issued_lifetime = 301;
        assert!(!engine.evaluate(&req).allowed);
    }

    #[test]
    fn reasons_and_determining_policies() {
        let engine = engine(
            r#"@id("allow") permit(principal, action, resource);
               @id("long") forbid(principal, action, resource) when { context.requested_lifetime > 100 };"#,
        );
        let claims = claims(json!({}));
        let mut req = request(&claims);
        assert_eq!(
            engine.evaluate(&req),
            Decision {
                allowed: true,
                policy_ids: vec!["allow".into()],
                errors: vec![],
                reason: DecisionReason::Permitted,
                lint_exceptions: vec![],
                shadow: vec![],
            }
        );
        req.requested_lifetime = 101;
        let decision = engine.evaluate(&req);
        assert!(!decision.allowed);
        assert_eq!(decision.reason, DecisionReason::ForbiddenByPolicy);
        assert_eq!(decision.policy_ids, ["long"]);
        req.target = "nope";
        assert_eq!(engine.evaluate(&req).reason, DecisionReason::UnknownTarget);
        req.target = "x0";
        req.trust = "nope";
        assert_eq!(engine.evaluate(&req).reason, DecisionReason::UnknownTrust);
        let empty = PolicyEngine::from_sources_unlinted(
            crate::BUNDLED_SCHEMA,
            &[],
            &targets(),
            &TRUSTS.map(String::from),
        )
        .unwrap();
        req.trust = "t0";
        assert_eq!(
            empty.evaluate(&req),
            Decision::deny(DecisionReason::NoPermit)
        );
        assert_eq!(empty.policy_count(), 0);
    }

    #[test]
    fn a_failing_forbid_fails_closed() {
        // `request_time * 2^62` overflows: the forbid errors, and Cedar would skip it.
        let engine = engine(
            r#"@id("allow") permit(principal, action, resource);
               @id("broken") forbid(principal, action, resource)
               when { context.request_time * 4611686018427387904 > 0 };"#,
        );
        let claims = claims(json!({}));
        let decision = engine.evaluate(&request(&claims));
        assert!(!decision.allowed);
        assert_eq!(decision.reason, DecisionReason::ForbidFailed);
        assert_eq!(decision.policy_ids, ["broken"]);
        assert_eq!(decision.errors.len(), 1);
        assert!(
            decision.errors[0].contains("`broken`"),
            "{:?}",
            decision.errors
        );
    }

    /// Stops a watched policy from deciding: a shadow `forbid` that matches leaves an
    /// allow an allow, a shadow `permit` that matches leaves a deny a deny; both are
    /// reported with what they would have done.
    #[test]
    fn shadow_policies_report_but_never_decide() {
        use crate::shadow::{ShadowEffect, Would};
        let engine = engine(
            r#"@id("allow") permit(principal, action, resource == Legate::Target::"x0");
               @id("guard") forbid(principal, action, resource == Legate::Target::"x2");
               @id("watch-forbid") @mode("shadow")
               forbid(principal, action, resource) when { context.requested_lifetime > 100 };
               @id("watch-permit") @mode("shadow")
               permit(principal, action, resource == Legate::Target::"x1");
               @id("watch-permit-x2") @mode("shadow")
               permit(principal, action, resource == Legate::Target::"x2");
               @id("watch-broken") @mode("shadow")
               forbid(principal, action, resource == Legate::Target::"x3")
               when { context.request_time * 4611686018427387904 > 0 };"#,
        );
        assert_eq!(engine.policy_count(), 6);
        assert_eq!(
            engine.shadow_policy_ids(),
            [
                "watch-broken",
                "watch-forbid",
                "watch-permit",
                "watch-permit-x2"
            ]
        );
        let claims = claims(json!({}));
        let outcome = |id: &str, effect, would| ShadowOutcome {
            policy_id: id.to_owned(),
            effect,
            would,
            error: None,
        };
        let mut req = request(&claims);
        // Allowed, and the shadow forbid does not match: nothing to report.
        let decision = engine.evaluate(&req);
        assert!(decision.allowed);
        assert!(decision.shadow.is_empty(), "{decision:?}");
        // Allowed; the shadow forbid matches and would deny.
        req.requested_lifetime = 101;
        let decision = engine.evaluate(&req);
        assert!(decision.allowed, "{decision:?}");
        assert_eq!(decision.policy_ids, ["allow"]);
        assert_eq!(
            decision.shadow,
            [outcome("watch-forbid", ShadowEffect::Forbid, Would::Deny)]
        );
        // Denied (no permit); the shadow permit matches and would allow.
        req.requested_lifetime = 60;
        req.target = "x1";
        let decision = engine.evaluate(&req);
        assert_eq!(decision.reason, DecisionReason::NoPermit);
        assert!(!decision.allowed);
        assert_eq!(
            decision.shadow,
            [outcome("watch-permit", ShadowEffect::Permit, Would::Allow)]
        );
        // Forbidden; a shadow permit cannot override a forbid: it would still deny.
        req.target = "x2";
        let decision = engine.evaluate(&req);
        assert_eq!(decision.reason, DecisionReason::ForbiddenByPolicy);
        assert_eq!(decision.policy_ids, ["guard"]);
        assert_eq!(
            decision.shadow,
            [outcome(
                "watch-permit-x2",
                ShadowEffect::Permit,
                Would::Deny
            )]
        );
        // A shadow forbid that errs is reported, and does not fail the request closed.
        req.target = "x3";
        let decision = engine.evaluate(&req);
        assert_eq!(decision.reason, DecisionReason::NoPermit);
        assert!(decision.errors.is_empty(), "{decision:?}");
        assert_eq!(decision.shadow.len(), 1);
        assert_eq!(decision.shadow[0].would, Would::Erred);
        assert!(decision.shadow[0].error.is_some());
    }

    /// Stops a shadow IP rule from turning into an enforced refusal: with the client
    /// address unknown, only the enforcing policies decide; the shadow ones err.
    #[test]
    fn shadow_policy_on_an_unknown_client_address_errs_without_deciding() {
        let engine = engine(
            r#"@id("allow") permit(principal, action, resource);
               @id("watch-ip") @mode("shadow") forbid(principal, action, resource)
               unless { context.source_ip.isInRange(ip("10.0.0.0/8")) };"#,
        );
        let claims = claims(json!({}));
        let mut req = request(&claims);
        req.source_ip = None;
        let decision = engine.evaluate(&req);
        assert!(decision.allowed, "{decision:?}");
        assert_eq!(decision.shadow.len(), 1);
        assert_eq!(decision.shadow[0].would, crate::shadow::Would::Erred);
    }

    /// Stops a typo (`@mode("shadwo")`, `@mode("enforce")`) from silently enforcing
    /// a policy its author meant to watch, or the reverse.
    #[test]
    fn an_unknown_mode_is_a_load_error_naming_file_line_and_policy() {
        let e = PolicyEngine::from_sources(
            crate::BUNDLED_SCHEMA,
            &[(
                "watch.cedar".to_owned(),
                "@id(\"a\") permit(principal, action, resource);\n@id(\"b\")\n@mode(\"shadwo\")\nforbid(principal, action, resource);".to_owned(),
            )],
            &targets(),
            &TRUSTS.map(String::from),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "`watch.cedar` line 3, policy `b`: unknown mode `@mode(\"shadwo\")`; the only mode is `shadow` (remove the annotation to enforce the policy)"
        );
    }

    #[test]
    fn a_failing_permit_grants_nothing() {
        // `runner_id` is declared a Long; a token carrying a string fails the comparison.
        let engine = engine(
            r#"@id("runner") permit(principal, action, resource)
               when { principal.claims has runner_id && principal.claims.runner_id > 3 };"#,
        );
        let claims = claims(json!({"runner_id": "7"}));
        let decision = engine.evaluate(&request(&claims));
        assert!(!decision.allowed);
        assert_eq!(decision.reason, DecisionReason::NoPermit);
        assert_eq!(decision.errors.len(), 1);
        let claims = claims_of_runner(7);
        assert!(engine.evaluate(&request(&claims)).allowed);
    }

    fn claims_of_runner(id: i64) -> Map<String, Value> {
        claims(json!({ "runner_id": id }))
    }

    #[test]
    fn undeclared_and_odd_claims_do_not_break_evaluation() {
        let engine = engine(
            r#"@id("allow") permit(principal, action, resource) when { principal.claims.sub == "s0" };"#,
        );
        let claims = claims(json!({
            "sub": "s0", "undeclared": {"deep": [1, 2.5, null, {"x": true}]},
            "ref": 12, "env": null, "aud": ["a", "b"]
        }));
        let decision = engine.evaluate(&request(&claims));
        assert!(decision.allowed, "{decision:?}");
    }

    #[test]
    fn unbuildable_requests_are_denied() {
        let engine = engine("permit(principal, action, resource);");
        let mut value = json!(1);
        for _ in 0..crate::request::MAX_CLAIM_DEPTH {
            value = json!([value]);
        }
        let claims = claims(json!({ "deep": value }));
        let decision = engine.evaluate(&request(&claims));
        assert!(!decision.allowed);
        assert_eq!(decision.reason, DecisionReason::RequestBuildFailed);
        assert_eq!(
            decision.errors,
            [format!(
                "claim `deep` nests deeper than {} levels",
                crate::request::MAX_CLAIM_DEPTH
            )]
        );
        let claims = Map::new();
        let mut req = request(&claims);
        req.requested_lifetime = u64::MAX;
        assert_eq!(
            engine.evaluate(&req).reason,
            DecisionReason::RequestBuildFailed
        );
    }

    #[test]
    fn entity_model_is_visible_to_policies() {
        let engine = engine(
            r#"@id("model") permit(
                 principal == Legate::Workload::"t1|a|b",
                 action == Legate::Action::"exchange",
                 resource == Legate::Target::"x1"
               ) when {
                 principal in Legate::Issuer::"t1" &&
                 principal.trust == "t1" && principal.subject == "a|b" &&
                 principal.issuer == "https://t1.invalid" &&
                 resource.name == "x1" && resource.kind == "jwt" &&
                 resource.audience == "https://x1.invalid" &&
                 resource.hasTag("env") && resource.getTag("env") == "dev" &&
                 context.source_ip == ip("2001:db8::1") &&
                 context.request_time == 1767274200 &&
                 context.utc_hour == 13 && context.utc_weekday == 3 &&
                 context.requested_lifetime == 60 && !context.has_actor
               };"#,
        );
        let claims = claims(json!({}));
        let req = PolicyRequest {
            trust: "t1",
            issuer: "https://t1.invalid",
            subject: "a|b",
            target: "x1",
            source_ip: Some("2001:db8::1".parse().unwrap()),
            now: 1_767_274_200,
            ..request(&claims)
        };
        let decision = engine.evaluate(&req);
        assert!(decision.allowed, "{decision:?}");
        assert_eq!(engine.slice_len("t1", "x1"), Some(1));
        assert_eq!(engine.slice_len("t0", "x1"), Some(0));
        assert_eq!(engine.slice_len("t1", "x0"), Some(0));
    }

    /// Stops a delegated exchange from being approved without its actor: a policy that
    /// requires a host attestation alongside the CI identity denies the CI identity
    /// alone, and an actor from the wrong trust.
    #[test]
    fn a_policy_can_require_an_actor_from_a_given_trust() {
        let engine = engine(
            r#"@id("ci-on-attested-host") permit(
                 principal in Legate::Issuer::"t0",
                 action == Legate::Action::"exchange",
                 resource == Legate::Target::"x0"
               ) when {
                 principal.subject == "s0" && context.has_actor && context has actor &&
                 context.actor.trust == "t1" && context.actor.subject == "host-7" &&
                 context.actor.issuer == "https://t1.invalid" &&
                 context.actor.claims has env && context.actor.claims.env == "attested"
               };"#,
        );
        let actor_claims = claims(json!({"env": "attested", "deep": {"a": [1]}}));
        let claims = claims(json!({}));
        let actor = PolicyActor {
            trust: "t1",
            issuer: "https://t1.invalid",
            subject: "host-7",
            claims: &actor_claims,
        };
        let with = PolicyRequest {
            actor: Some(actor),
            ..request(&claims)
        };
        for decision in [
            engine.evaluate(&with),
            engine.evaluate_unsliced(&with),
            engine.evaluate_reference(&with),
        ] {
            assert!(decision.allowed, "{decision:?}");
        }
        assert!(!engine.evaluate(&request(&claims)).allowed);
        let wrong_trust = PolicyRequest {
            actor: Some(PolicyActor {
                trust: "t2",
                ..actor
            }),
            ..request(&claims)
        };
        assert!(!engine.evaluate(&wrong_trust).allowed);
    }

    /// Stops a policy from reading `context.actor` unguarded: strict validation refuses
    /// it at load (it would err at request time, and an erring `forbid` denies all).
    #[test]
    fn reading_the_actor_without_a_guard_is_refused_at_load() {
        let err = PolicyEngine::from_sources(
            crate::BUNDLED_SCHEMA,
            &[(
                "p.cedar".to_owned(),
                r#"@id("unguarded") permit(principal, action, resource)
                   when { context.actor.trust == "t1" };"#
                    .to_owned(),
            )],
            &targets(),
            &TRUSTS.map(String::from),
        );
        assert!(err.is_err(), "an unguarded `context.actor` must not load");
    }

    #[test]
    fn invalid_configuration_is_rejected() {
        let load = |targets: &[TargetInfo], trusts: &[&str]| {
            PolicyEngine::from_sources_unlinted(
                crate::BUNDLED_SCHEMA,
                &[],
                targets,
                &trusts.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>(),
            )
        };
        for (trusts, expected) in [
            (
                &["a|b"][..],
                "invalid trust name `a|b`: it must be non-empty and must not contain `|`",
            ),
            (
                &[""][..],
                "invalid trust name ``: it must be non-empty and must not contain `|`",
            ),
            (&["a", "a"][..], "trust `a` is listed twice"),
        ] {
            assert_eq!(load(&[], trusts).unwrap_err().to_string(), expected);
        }
        let mut doubled = targets();
        doubled.push(doubled[0].clone());
        assert_eq!(
            load(&doubled, &["a"]).unwrap_err().to_string(),
            "target `x0` is listed twice"
        );
    }

    #[test]
    fn warnings_name_policies_that_never_apply() {
        let engine = engine(
            r#"@id("typo") permit(principal, action, resource == Legate::Target::"x9");
               @id("gone") permit(principal in Legate::Issuer::"t9", action, resource);
               @id("never") permit(principal == Legate::Issuer::"t0", action, resource);"#,
        );
        let warnings = engine.warnings().join("\n");
        for id in ["typo", "gone", "never"] {
            assert!(warnings.contains(&format!("`{id}`")), "{warnings}");
        }
    }

    /// One random policy, valid against the bundled schema.
    fn policy() -> impl Strategy<Value = String> {
        let trust = prop_oneof![Just("t0"), Just("t1"), Just("t2"), Just("t9")];
        let subject = prop_oneof![Just("s0"), Just("s1")];
        let principal = prop_oneof![
            Just("principal".to_owned()),
            Just("principal is Legate::Workload".to_owned()),
            trust
                .clone()
                .prop_map(|t| format!(r#"principal in Legate::Issuer::"{t}""#)),
            trust
                .clone()
                .prop_map(|t| format!(r#"principal is Legate::Workload in Legate::Issuer::"{t}""#)),
            (trust.clone(), subject.clone())
                .prop_map(|(t, s)| format!(r#"principal == Legate::Workload::"{t}|{s}""#)),
            (trust, subject)
                .prop_map(|(t, s)| format!(r#"principal in Legate::Workload::"{t}|{s}""#)),
        ];
        let action = prop_oneof![
            Just("action"),
            Just(r#"action == Legate::Action::"exchange""#),
            Just(r#"action in [Legate::Action::"exchange"]"#),
        ];
        let target = prop_oneof![Just("x0"), Just("x1"), Just("x2"), Just("x3"), Just("x9")];
        let resource = prop_oneof![
            Just("resource".to_owned()),
            Just("resource is Legate::Target".to_owned()),
            target
                .clone()
                .prop_map(|x| format!(r#"resource == Legate::Target::"{x}""#)),
            target.prop_map(|x| format!(r#"resource in Legate::Target::"{x}""#)),
        ];
        let condition = prop_oneof![
            Just("true".to_owned()),
            Just(r#"principal.claims has env && principal.claims.env == "dev""#.to_owned()),
            (0u32..4000).prop_map(|n| format!("context.requested_lifetime > {n}")),
            Just(r#"resource.hasTag("env") && resource.getTag("env") == "prod""#.to_owned()),
            (0u32..24).prop_map(|h| format!("context.utc_hour < {h}")),
            Just(r#"context.source_ip.isInRange(ip("10.0.0.0/8"))"#.to_owned()),
            Just(r#"principal.subject == "s1""#.to_owned()),
            // Errors at run time: overflow, or a string `runner_id`.
            Just("context.request_time * 4611686018427387904 > 0".to_owned()),
            (0i64..10).prop_map(|n| format!(
                "principal.claims has runner_id && principal.claims.runner_id > {n}"
            )),
            // Nested claims and `has` paths.
            prop_oneof![Just("ns0"), Just("ns1")].prop_map(|ns| format!(
                r#"principal.claims has "kubernetes.io" &&
                   principal.claims["kubernetes.io"] has namespace &&
                   principal.claims["kubernetes.io"].namespace == "{ns}""#
            )),
            Just(
                r#"principal.claims has "kubernetes.io" &&
                   principal.claims["kubernetes.io"] has pod.name"#
                    .to_owned()
            ),
            Just(
                r#"principal.claims has ref && principal.claims.ref like "refs/heads/*""#
                    .to_owned()
            ),
            Just(r#"principal.claims.sub == principal.subject"#.to_owned()),
            // The claims record used whole: no pruning for the slices holding these.
            Just(r#"principal.claims == principal.claims"#.to_owned()),
            Just(
                r#"(if context.utc_hour < 12 then principal.claims else principal.claims) has env"#
                    .to_owned()
            ),
        ];
        (
            prop::bool::weighted(0.6),
            principal,
            action,
            resource,
            condition,
        )
            .prop_map(|(permit, p, a, r, c)| {
                let effect = if permit { "permit" } else { "forbid" };
                format!("{effect} ({p}, {a}, {r}) when {{ {c} }};")
            })
    }

    #[derive(Debug, Clone)]
    struct Req {
        trust: &'static str,
        subject: &'static str,
        target: &'static str,
        claims: Map<String, Value>,
        source_ip: Option<IpAddr>,
        now: i64,
        requested_lifetime: u64,
    }

    impl Req {
        fn as_request(&self) -> PolicyRequest<'_> {
            PolicyRequest {
                trust: self.trust,
                issuer: "https://issuer.invalid",
                subject: self.subject,
                claims: &self.claims,
                target: self.target,
                source_ip: self.source_ip,
                now: self.now,
                requested_lifetime: self.requested_lifetime,
                issued_lifetime: self.requested_lifetime,
                actor: None,
            }
        }
    }

    fn req() -> impl Strategy<Value = Req> {
        let env = prop_oneof![Just(None), Just(Some("dev")), Just(Some("prod"))];
        let runner = prop_oneof![
            Just(Value::Null),
            (0i64..10).prop_map(Value::from),
            Just(Value::from("5")),
        ];
        let ip = prop_oneof![
            Just("10.1.2.3"),
            Just("192.0.2.1"),
            Just("::ffff:10.0.0.1"),
            Just("2001:db8::1"),
        ];
        // Claims no policy reads, or the schema does not declare; sometimes nested too
        // deep to convert, which fails the request whatever the policies read.
        let other = prop_oneof![
            Just(None),
            Just(Some(json!({"x": [1, "y", {"z": true}]}))),
            Just(Some(json!("refs/tags/v1"))),
            Just(Some({
                let mut deep = json!(1);
                for _ in 0..crate::request::MAX_CLAIM_DEPTH {
                    deep = json!([deep]);
                }
                deep
            })),
        ];
        let k8s = prop_oneof![
            Just(None),
            Just(Some(json!({"namespace": "ns0", "pod": {"name": "p"}}))),
            Just(Some(json!({"namespace": "ns1"}))),
            Just(Some(json!({"serviceaccount": {"name": "sa"}}))),
        ];
        let git_ref = prop_oneof![
            Just(None),
            Just(Some("refs/heads/main")),
            Just(Some("refs/tags/v1")),
        ];
        (
            (
                prop_oneof![Just("t0"), Just("t1"), Just("t2")],
                prop_oneof![Just("s0"), Just("s1")],
                prop_oneof![Just("x0"), Just("x1"), Just("x2"), Just("x3")],
            ),
            (env, runner, other, k8s, git_ref),
            ip,
            0i64..4_000_000_000,
            0u64..5000,
        )
            .prop_map(
                |(
                    (trust, subject, target),
                    (env, runner, other, k8s, git_ref),
                    ip,
                    now,
                    lifetime,
                )| {
                    let mut claims = Map::new();
                    claims.insert("sub".into(), subject.into());
                    if let Some(env) = env {
                        claims.insert("env".into(), env.into());
                    }
                    if let Some(other) = other {
                        claims.insert("x-other".into(), other);
                    }
                    if let Some(k8s) = k8s {
                        claims.insert("kubernetes.io".into(), k8s);
                    }
                    if let Some(git_ref) = git_ref {
                        claims.insert("ref".into(), git_ref.into());
                    }
                    claims.insert("runner_id".into(), runner);
                    Req {
                        trust,
                        subject,
                        target,
                        claims,
                        source_ip: ip.parse().ok(),
                        now,
                        requested_lifetime: lifetime,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Slicing never changes a decision, its determining policies or its errors.
        #[test]
        fn sliced_and_full_set_agree(
            policies in prop::collection::vec(policy(), 0..40),
            reqs in prop::collection::vec(req(), 1..24),
        ) {
            let engine = engine(&policies.join("\n"));
            prop_assert_eq!(engine.policy_count(), policies.len());
            for r in &reqs {
                let req = r.as_request();
                prop_assert_eq!(engine.evaluate(&req), engine.evaluate_unsliced(&req), "{:?}", r);
            }
        }

        /// Converting only the claims the evaluated policies read never changes a decision,
        /// its determining policies or its errors: the pruned claims are unreachable.
        #[test]
        fn claim_pruning_never_changes_a_decision(
            policies in prop::collection::vec(policy(), 0..40),
            reqs in prop::collection::vec(req(), 1..24),
        ) {
            let engine = engine(&policies.join("\n"));
            for r in &reqs {
                let req = r.as_request();
                prop_assert_eq!(engine.evaluate(&req), engine.evaluate_reference(&req), "{:?}", r);
            }
        }

        /// `explain` decides exactly as `evaluate` does, lists exactly the slice's
        /// policies, and names a failing scope constraint or condition for every policy
        /// that is not satisfied.
        #[test]
        fn explain_agrees_with_evaluate_on_generated_policies(
            policies in prop::collection::vec(
                (policy(), any::<bool>()).prop_map(|(p, unless)| {
                    if unless { p.replacen(") when {", ") unless {", 1) } else { p }
                }),
                0..20,
            ),
            reqs in prop::collection::vec(req(), 1..8),
        ) {
            let engine = engine(&policies.join("\n"));
            for r in &reqs {
                let req = r.as_request();
                let explanation = engine.explain(&req);
                prop_assert_eq!(&explanation.decision, &engine.evaluate(&req), "{:?}", r);
                if !explanation.policies.is_empty() {
                    prop_assert_eq!(
                        Some(explanation.policies.len()),
                        engine.slice_len(req.trust, req.target)
                    );
                }
                for p in &explanation.policies {
                    if p.outcome != crate::PolicyOutcome::Satisfied {
                        prop_assert!(p.failure.is_some(), "{:?}\n{:?}", p, r);
                    }
                    if p.outcome == crate::PolicyOutcome::Error {
                        let failure = p.failure.as_ref().map(|f| f.result);
                        prop_assert_eq!(failure, Some(crate::PieceResult::Error), "{:?}", p);
                    }
                }
            }
        }

        /// Shadow policies never change a decision (allowed, reason, determining
        /// policies, errors), and slicing never changes what they report.
        #[test]
        fn shadow_policies_never_change_a_decision(
            policies in prop::collection::vec(policy(), 0..30),
            shadows in prop::collection::vec(policy(), 1..8),
            reqs in prop::collection::vec(req(), 1..24),
        ) {
            let base = engine(&policies.join("\n"));
            let shadowed: Vec<String> = shadows
                .iter()
                .enumerate()
                .map(|(i, p)| format!("@id(\"shadow{i}\") @mode(\"shadow\") {p}"))
                .collect();
            let extended = engine(&format!("{}\n{}", policies.join("\n"), shadowed.join("\n")));
            for r in &reqs {
                let req = r.as_request();
                let before = base.evaluate(&req);
                let mut after = extended.evaluate(&req);
                prop_assert_eq!(&after, &extended.evaluate_unsliced(&req), "{:?}", r);
                prop_assert_eq!(&after, &extended.evaluate_reference(&req), "{:?}", r);
                after.shadow.clear();
                prop_assert_eq!(before, after, "{:?}", r);
            }
        }

        /// Adding a forbid never turns a Deny into an Allow.
        #[test]
        fn adding_a_forbid_never_allows_more(
            policies in prop::collection::vec(policy(), 0..30),
            forbid in policy().prop_map(|p| p.replacen("permit", "forbid", 1)),
            reqs in prop::collection::vec(req(), 1..24),
        ) {
            let base = engine(&policies.join("\n"));
            let extended = engine(&format!("{}\n{forbid}", policies.join("\n")));
            for r in &reqs {
                let req = r.as_request();
                let before = base.evaluate(&req);
                let after = extended.evaluate(&req);
                prop_assert!(before.allowed || !after.allowed, "{:?}\n{:?}\n{:?}", r, before, after);
                prop_assert_eq!(after.clone(), extended.evaluate_unsliced(&req));
            }
        }
    }
}
