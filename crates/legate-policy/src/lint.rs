//! Policy lints, run at every load (`legate serve`, `config check`, `policy validate`,
//! hot reload: they all go through [`crate::PolicyEngine::from_sources_with`]).
//!
//! Errors (the load fails, naming policy, file, line and a one-line fix):
//! - `unscoped-issuer`: a `permit` that does not scope its issuer (`principal in
//!   Legate::Issuer::"<trust>"`, `principal.trust == "<trust>"`) in every branch: the same
//!   `sub` from another trusted issuer would match it;
//! - `unbound-subject`: a `permit` with a branch that binds neither the subject nor a
//!   stable identifier of its issuer with an exact match or a safe pattern (no condition,
//!   `true`, `has` alone, `unless` only, a disjunction with an unconstrained branch);
//! - `unsafe-pattern`: a `like` on a structured claim whose wildcard can extend a partial
//!   segment or stand for the whole identity (`repo:acme/app*`, `*`, `repo:*`);
//! - `foreign-claim`: a policy reads a claim that none of its issuers' templates emits.
//!
//! Warning: `mutable-name`, a `permit` branch that binds a mutable name (`repository`,
//! `repository_owner`, `project_path`, `namespace_path`, ...) without its stable id.
//!
//! Escape hatch: `@allow_lint("<lint id>[, <lint id>...]: <reason>")` on the policy; the
//! reason is mandatory, a malformed annotation is itself a load error (`allow-lint`), and
//! the annotation is reported with every decision the policy determines
//! ([`crate::Decision::lint_exceptions`]).
//!
//! The analysis reads the policy's JSON form (EST). It is conservative: each `when` body
//! is expanded into its disjunctive branches, each branch keeps only facts that must hold
//! when it is true (a trust equality, an exact match or pattern on a claim); anything else
//! (negations, `unless`, comparisons, calls) contributes no fact. So the lint may refuse a
//! policy that is in fact bound (rewrite it, or use the escape hatch), never the reverse.
//! A condition with more than [`MAX_BRANCHES`] branches is treated as having no facts.
//!
//! Without a template for a trust, the generic rules apply: stable identifiers are `sub`
//! (`principal.subject`) and those of any template (`repository_id`, `project_id`, ...);
//! only exact matches bind; `like` on `sub` must use whole `:`/`/` segments; no
//! `foreign-claim` check.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use cedar_policy::{Effect, Policy, PrincipalConstraint};
use serde_json::Value;

use crate::load::{Parsed, PolicyLoadError};
use crate::templates::{self, Template, Wildcards};

/// The most disjunctive branches analysed per policy; beyond, no facts are kept.
pub const MAX_BRANCHES: usize = 256;

/// The annotation that allows a lint on one policy.
pub const ALLOW_LINT: &str = "allow_lint";

/// A lint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LintId {
    UnscopedIssuer,
    UnboundSubject,
    UnsafePattern,
    ForeignClaim,
    MutableName,
    /// A malformed `@allow_lint` annotation (cannot itself be allowed).
    AllowLint,
}

impl LintId {
    /// The lints an `@allow_lint` may name.
    pub const ALLOWABLE: [Self; 5] = [
        Self::UnscopedIssuer,
        Self::UnboundSubject,
        Self::UnsafePattern,
        Self::ForeignClaim,
        Self::MutableName,
    ];

    /// The stable id.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnscopedIssuer => "unscoped-issuer",
            Self::UnboundSubject => "unbound-subject",
            Self::UnsafePattern => "unsafe-pattern",
            Self::ForeignClaim => "foreign-claim",
            Self::MutableName => "mutable-name",
            Self::AllowLint => "allow-lint",
        }
    }

    /// Whether a finding stops the load.
    pub fn is_error(self) -> bool {
        self != Self::MutableName
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALLOWABLE.into_iter().find(|l| l.as_str() == s)
    }
}

impl fmt::Display for LintId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One lint finding, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintFinding {
    pub lint: LintId,
    pub policy_id: String,
    pub file: String,
    /// 1-based line of the policy (its first annotation) in `file`.
    pub line: usize,
    pub message: String,
    /// A one-line fix.
    pub fix: String,
}

impl fmt::Display for LintFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}`, line {}, policy `{}`: {}: {}; fix: {}",
            self.file, self.line, self.policy_id, self.lint, self.message, self.fix
        )
    }
}

/// Lints every policy of `parsed`; returns the warnings, or every error.
pub(crate) fn check(
    parsed: &Parsed,
    sources: &[(String, String)],
    templates: &BTreeMap<String, &'static Template>,
    ests: &std::collections::HashMap<String, crate::claim_refs::Est>,
) -> Result<Vec<String>, PolicyLoadError> {
    let mut lines: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (file, text) in sources {
        lines.insert(file.as_str(), statement_lines(text));
    }
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    for policy in parsed.set.policies() {
        let id: &str = policy.id().as_ref();
        let file = parsed.files.get(id).map_or("", String::as_str);
        let line = parsed
            .index
            .get(id)
            .and_then(|i| lines.get(file).and_then(|l| l.get(*i)))
            .copied()
            .unwrap_or(0);
        let locate = |lint: LintId, message: String, fix: String| LintFinding {
            lint,
            policy_id: id.to_owned(),
            file: file.to_owned(),
            line,
            message,
            fix,
        };
        let allowed = match allowed_lints(policy) {
            Ok(allowed) => allowed,
            Err(message) => {
                errors.push(locate(
                    LintId::AllowLint,
                    message,
                    format!(
                        "write `@allow_lint(\"<lint id>: <reason>\")` with a lint id among {}",
                        LintId::ALLOWABLE.map(LintId::as_str).join(", ")
                    ),
                ));
                continue;
            }
        };
        // Each policy's JSON form, rendered once per load for every check that reads it.
        let rendered;
        let est = match ests.get(id) {
            Some(est) => est,
            None => {
                rendered = crate::claim_refs::est(policy);
                &rendered
            }
        };
        let findings = lint_policy(policy, templates, est.as_ref().ok());
        let fired: BTreeSet<LintId> = findings.iter().map(|(l, _, _)| *l).collect();
        for (lint, message, fix) in findings {
            if allowed.contains(&lint) {
                continue;
            }
            let finding = locate(lint, message, fix);
            if lint.is_error() {
                errors.push(finding);
            } else {
                warnings.push(finding.to_string());
            }
        }
        for lint in allowed.difference(&fired) {
            warnings.push(
                locate(
                    LintId::AllowLint,
                    format!("`@allow_lint` names `{lint}`, which does not fire on this policy"),
                    format!("remove `{lint}` from the annotation"),
                )
                .to_string(),
            );
        }
    }
    if errors.is_empty() {
        Ok(warnings)
    } else {
        Err(PolicyLoadError::Lint(errors))
    }
}

/// The lints `@allow_lint` names on `policy`, or why the annotation is malformed.
fn allowed_lints(policy: &Policy) -> Result<BTreeSet<LintId>, String> {
    let Some(value) = policy.annotation(ALLOW_LINT) else {
        return Ok(BTreeSet::new());
    };
    let Some((ids, reason)) = value.split_once(':') else {
        return Err(format!(
            "`@allow_lint(\"{value}\")` has no reason: the reason is mandatory"
        ));
    };
    if reason.trim().is_empty() {
        return Err(format!(
            "`@allow_lint(\"{value}\")` has an empty reason: the reason is mandatory"
        ));
    }
    let mut allowed = BTreeSet::new();
    for id in ids.split(',').map(str::trim) {
        match LintId::parse(id) {
            Some(lint) => {
                allowed.insert(lint);
            }
            None => return Err(format!("`@allow_lint` names unknown lint `{id}`")),
        }
    }
    Ok(allowed)
}

type Raw = (LintId, String, String);

/// The findings on one policy, before `@allow_lint`.
fn lint_policy(
    policy: &Policy,
    templates: &BTreeMap<String, &'static Template>,
    est: Option<&serde_json::Value>,
) -> Vec<Raw> {
    let mut out = Vec::new();
    let permit = policy.effect() == Effect::Permit;
    let Some(est) = est else {
        if permit {
            out.push((
                LintId::UnboundSubject,
                "the policy could not be analysed".to_owned(),
                "simplify the policy".to_owned(),
            ));
        }
        return out;
    };
    let (scope, scope_binding) = principal_scope(policy);
    let mut branches = vec![Branch {
        trusts: scope,
        bindings: scope_binding.into_iter().collect(),
    }];
    for condition in est
        .get("conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if condition.get("kind").and_then(Value::as_str) != Some("when") {
            // `unless` bodies are negated: they contribute no positive fact.
            continue;
        }
        if let Some(body) = condition.get("body") {
            branches = cross(&branches, &dnf(body));
        }
    }
    // The satisfiable branches, with the trusts each can match (`None`: any). Trusts
    // that are not configured are linted too: `policy validate` without a configuration
    // must judge a policy as `serve` with one will.
    let live: Vec<&Branch> = branches
        .iter()
        .filter(|b| b.trusts.as_ref().is_none_or(|t| !t.is_empty()))
        .collect();
    let policy_trusts: Option<BTreeSet<String>> =
        live.iter()
            .try_fold(BTreeSet::new(), |mut all: BTreeSet<String>, b| {
                all.extend(b.trusts.clone()?);
                Some(all)
            });
    let template_of = |trust: &str| templates.get(trust).copied();

    if permit {
        if live.iter().any(|b| b.trusts.is_none()) {
            out.push((
                LintId::UnscopedIssuer,
                "this permit does not scope its issuer: the same `sub` from another trusted \
                 issuer would match it"
                    .to_owned(),
                "add `principal in Legate::Issuer::\"<trust>\"` to the scope".to_owned(),
            ));
        }
        let mut unbound: BTreeSet<&str> = BTreeSet::new();
        let mut mutable: BTreeSet<(String, String)> = BTreeSet::new();
        for branch in &live {
            let Some(trusts) = &branch.trusts else {
                continue;
            };
            for trust in trusts {
                let template = template_of(trust);
                if !branch.bindings.iter().any(|b| b.binds_identity(template)) {
                    unbound.insert(trust);
                }
                for (name, stable) in mutable_names(template) {
                    let binds = |claim: &str| {
                        branch
                            .bindings
                            .iter()
                            .any(|b| templates::same_path(&[claim], &b.path))
                    };
                    if binds(name) && !binds(stable) {
                        mutable.insert((name.to_owned(), stable.to_owned()));
                    }
                }
            }
        }
        if !unbound.is_empty() {
            let names = unbound
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ");
            out.push((
                LintId::UnboundSubject,
                format!(
                    "a branch of this permit (for trust {names}) binds neither the subject nor a \
                     stable identifier with an exact match or a safe pattern: every workload \
                     of the issuer would match it"
                ),
                "add `principal.subject == \"<sub>\"` (or the template's stable id, e.g. \
                 `principal.claims.repository_id == \"<id>\"`) to every branch of `when`"
                    .to_owned(),
            ));
        }
        for (name, stable) in mutable {
            out.push((
                LintId::MutableName,
                format!(
                    "binds the mutable name `{name}` without its stable id `{stable}`: a renamed \
                     or deleted name can be registered again by someone else"
                ),
                format!("also bind `principal.claims.{stable}`"),
            ));
        }
        for (path, pattern) in likes(est) {
            let rendered = render_pattern(&pattern);
            let mut rules: Vec<Wildcards> = Vec::new();
            let generic = policy_trusts
                .as_ref()
                .is_none_or(|ts| ts.iter().any(|t| template_of(t).is_none()));
            if generic && templates::same_path(&["sub"], &path) {
                rules.push(templates::GENERIC_SUBJECT);
            }
            for template in policy_trusts
                .iter()
                .flatten()
                .filter_map(|t| template_of(t))
            {
                if let Some(s) = template.structure(&path) {
                    rules.push(s.wildcards);
                }
            }
            if rules.iter().any(|rule| !pattern_safe(&pattern, *rule)) {
                out.push((
                    LintId::UnsafePattern,
                    format!(
                        "the pattern `{rendered}` on `{}` has a wildcard that can extend a \
                         partial segment or stand for the whole identity",
                        render_path(&path)
                    ),
                    "match exactly with `==`, or spell out the identity and let each `*` \
                     stand for whole segments only (`repo:acme/app:ref:refs/heads/*`)"
                        .to_owned(),
                ));
            }
        }
    }

    if let Some(trusts) = &policy_trusts {
        let models: Vec<&Template> = trusts.iter().filter_map(|t| template_of(t)).collect();
        if !trusts.is_empty() && models.len() == trusts.len() {
            for claim in claims_named(est) {
                if !models.iter().any(|t| t.emits(&claim)) {
                    let issuers = models.iter().map(|t| t.id).collect::<Vec<_>>().join(", ");
                    out.push((
                        LintId::ForeignClaim,
                        format!(
                            "reads the claim `{claim}`, which the issuer's template ({issuers}) \
                             never emits: the condition can never hold as written"
                        ),
                        format!(
                            "use a claim `{issuers}` emits (docs/issuers.md), or scope the \
                             policy to the issuer that emits `{claim}`"
                        ),
                    ));
                }
            }
        }
    }
    out
}

fn mutable_names(template: Option<&Template>) -> Vec<(&'static str, &'static str)> {
    match template {
        Some(t) => t.mutable_names.to_vec(),
        None => templates::TEMPLATES
            .iter()
            .flat_map(|t| t.mutable_names.iter().copied())
            .collect(),
    }
}

/// The facts that hold whenever one disjunctive branch of a condition is true.
#[derive(Debug, Clone, Default)]
struct Branch {
    /// The trusts the principal can belong to; `None`: any.
    trusts: Option<BTreeSet<String>>,
    /// Claims matched against literals.
    bindings: Vec<Binding>,
}

/// `principal.claims.<path>` (or `principal.subject`, as `sub`) equals a literal, is one
/// of a set of literals, or matches a pattern.
#[derive(Debug, Clone)]
struct Binding {
    path: Vec<String>,
    /// `None`: an exact match.
    pattern: Option<Vec<Elem>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Elem {
    Char(char),
    Wild,
}

impl Binding {
    fn binds_identity(&self, template: Option<&Template>) -> bool {
        let stable = match template {
            Some(t) => t.is_stable_id(&self.path),
            None => templates::any_stable_id(&self.path),
        };
        if !stable {
            return false;
        }
        match (&self.pattern, template) {
            (None, _) => true,
            (Some(pattern), Some(t)) => t
                .structure(&self.path)
                .is_some_and(|s| s.identifies && pattern_safe(pattern, s.wildcards)),
            (Some(pattern), None) => !pattern.contains(&Elem::Wild),
        }
    }
}

fn intersect(
    a: &Option<BTreeSet<String>>,
    b: &Option<BTreeSet<String>>,
) -> Option<BTreeSet<String>> {
    match (a, b) {
        (None, x) | (x, None) => x.clone(),
        (Some(a), Some(b)) => Some(a.intersection(b).cloned().collect()),
    }
}

fn cross(a: &[Branch], b: &[Branch]) -> Vec<Branch> {
    if a.len().saturating_mul(b.len()) > MAX_BRANCHES {
        return vec![Branch::default()];
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            let mut bindings = x.bindings.clone();
            bindings.extend(y.bindings.iter().cloned());
            out.push(Branch {
                trusts: intersect(&x.trusts, &y.trusts),
                bindings,
            });
        }
    }
    out
}

/// The branches of `expr` in disjunctive normal form, each with the facts it implies.
fn dnf(expr: &Value) -> Vec<Branch> {
    let op = |name: &str| expr.get(name);
    let arg = |node: &Value, name: &str| node.get(name).cloned().unwrap_or(Value::Null);
    if let Some(node) = op("&&") {
        return cross(&dnf(&arg(node, "left")), &dnf(&arg(node, "right")));
    }
    if let Some(node) = op("||") {
        let mut out = dnf(&arg(node, "left"));
        out.extend(dnf(&arg(node, "right")));
        if out.len() > MAX_BRANCHES {
            return vec![Branch::default()];
        }
        return out;
    }
    if let Some(node) = op("if-then-else") {
        let mut out = cross(&dnf(&arg(node, "if")), &dnf(&arg(node, "then")));
        out.extend(dnf(&arg(node, "else")));
        if out.len() > MAX_BRANCHES {
            return vec![Branch::default()];
        }
        return out;
    }
    vec![atom(expr).unwrap_or_default()]
}

/// The facts of one atomic condition, if it gives any.
fn atom(expr: &Value) -> Option<Branch> {
    if let Some(node) = expr.get("==") {
        let (left, right) = (node.get("left")?, node.get("right")?);
        return eq_fact(left, right).or_else(|| eq_fact(right, left));
    }
    if let Some(node) = expr.get("in") {
        return principal_in(node.get("left")?, node.get("right")?);
    }
    if let Some(node) = expr.get("is") {
        return principal_in(node.get("left")?, node.get("in")?);
    }
    if let Some(node) = expr.get("like") {
        let path = identity_path(node.get("left")?)?;
        let pattern = node
            .get("pattern")?
            .as_array()?
            .iter()
            .map(pattern_elems)
            .collect::<Option<Vec<Vec<Elem>>>>()?
            .concat();
        return Some(Branch {
            trusts: None,
            bindings: vec![Binding {
                path,
                pattern: Some(pattern),
            }],
        });
    }
    if let Some(node) = expr.get("contains") {
        let set = node.get("left")?.get("Set")?.as_array()?;
        if set.is_empty() || !set.iter().all(|v| literal(v).is_some()) {
            return None;
        }
        let path = identity_path(node.get("right")?)?;
        return Some(Branch {
            trusts: None,
            bindings: vec![Binding {
                path,
                pattern: None,
            }],
        });
    }
    None
}

/// `path == literal`: a trust or a claim binding.
fn eq_fact(path: &Value, value: &Value) -> Option<Branch> {
    if is_principal(path) {
        let (trust, subject) = entity(value)?;
        return workload(&trust, &subject);
    }
    let literal = literal(value)?;
    let attrs = principal_path(path)?;
    if attrs == ["trust"] {
        return Some(Branch {
            trusts: Some(BTreeSet::from([literal.as_str()?.to_owned()])),
            bindings: Vec::new(),
        });
    }
    Some(Branch {
        trusts: None,
        bindings: vec![Binding {
            path: to_identity(attrs)?,
            pattern: None,
        }],
    })
}

/// `principal in <entity>` (also `principal is Legate::Workload in <entity>`).
fn principal_in(left: &Value, right: &Value) -> Option<Branch> {
    if !is_principal(left) {
        return None;
    }
    let (ty, id) = entity(right)?;
    match ty.as_str() {
        "Legate::Issuer" => Some(Branch {
            trusts: Some(BTreeSet::from([id])),
            bindings: Vec::new(),
        }),
        _ => workload(&ty, &id),
    }
}

/// `principal == Legate::Workload::"<trust>|<sub>"`: the trust and the subject.
fn workload(ty: &str, id: &str) -> Option<Branch> {
    if ty != "Legate::Workload" {
        // Matches nothing: an empty trust set marks the branch unsatisfiable.
        return Some(Branch {
            trusts: Some(BTreeSet::new()),
            bindings: Vec::new(),
        });
    }
    let Some((trust, _)) = id.split_once('|') else {
        return Some(Branch {
            trusts: Some(BTreeSet::new()),
            bindings: Vec::new(),
        });
    };
    Some(Branch {
        trusts: Some(BTreeSet::from([trust.to_owned()])),
        bindings: vec![Binding {
            path: vec!["sub".to_owned()],
            pattern: None,
        }],
    })
}

/// The trusts the policy's principal scope admits, and its subject binding, if any.
fn principal_scope(policy: &Policy) -> (Option<BTreeSet<String>>, Option<Binding>) {
    let names = crate::request::Names::new();
    let scope = crate::scope::PolicyScope::of(policy, &names);
    let trusts = match scope.trust {
        crate::scope::Reach::All => None,
        crate::scope::Reach::Only(trust) => Some(BTreeSet::from([trust])),
        crate::scope::Reach::Nothing => Some(BTreeSet::new()),
    };
    let binding = match policy.principal_constraint() {
        PrincipalConstraint::Eq(uid)
        | PrincipalConstraint::In(uid)
        | PrincipalConstraint::IsIn(_, uid)
            if uid.type_name() == &names.workload =>
        {
            Some(Binding {
                path: vec!["sub".to_owned()],
                pattern: None,
            })
        }
        _ => None,
    };
    (trusts, binding)
}

fn is_principal(expr: &Value) -> bool {
    expr.get("Var").and_then(Value::as_str) == Some("principal")
}

/// `principal.a.b...`: the attribute names.
fn principal_path(expr: &Value) -> Option<Vec<String>> {
    let mut attrs = Vec::new();
    let mut node = expr;
    while let Some(access) = node.get(".") {
        attrs.push(access.get("attr")?.as_str()?.to_owned());
        node = access.get("left")?;
    }
    if !is_principal(node) || attrs.is_empty() {
        return None;
    }
    attrs.reverse();
    Some(attrs)
}

/// `principal.subject` → `sub`; `principal.claims.<path>` → `<path>`.
fn to_identity(attrs: Vec<String>) -> Option<Vec<String>> {
    match attrs.first().map(String::as_str) {
        Some("subject") if attrs.len() == 1 => Some(vec!["sub".to_owned()]),
        Some("claims") if attrs.len() > 1 => Some(attrs.into_iter().skip(1).collect()),
        _ => None,
    }
}

fn identity_path(expr: &Value) -> Option<Vec<String>> {
    to_identity(principal_path(expr)?)
}

/// A string or number literal.
fn literal(expr: &Value) -> Option<&Value> {
    let value = expr.get("Value")?;
    (value.is_string() || value.is_number()).then_some(value)
}

/// An entity literal: (type, id).
fn entity(expr: &Value) -> Option<(String, String)> {
    let e = expr.get("Value")?.get("__entity")?;
    Some((
        e.get("type")?.as_str()?.to_owned(),
        e.get("id")?.as_str()?.to_owned(),
    ))
}

fn pattern_elems(elem: &Value) -> Option<Vec<Elem>> {
    if elem.as_str() == Some("Wildcard") {
        return Some(vec![Elem::Wild]);
    }
    Some(
        elem.get("Literal")?
            .as_str()?
            .chars()
            .map(Elem::Char)
            .collect(),
    )
}

/// Every `like` on a claim (or the subject) in the policy.
fn likes(est: &Value) -> Vec<(Vec<String>, Vec<Elem>)> {
    let mut out = Vec::new();
    walk(est, &mut |node| {
        if let Some(like) = node.get("like")
            && let Some(Branch { bindings, .. }) = atom(&serde_json::json!({ "like": like }))
        {
            for b in bindings {
                if let Some(pattern) = b.pattern {
                    out.push((b.path, pattern));
                }
            }
        }
    });
    out
}

/// The top-level claims the policy names (`principal.claims.<name>`, `has <name>`).
fn claims_named(est: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    walk(est, &mut |node| {
        for op in [".", "has"] {
            let Some(access) = node.get(op) else {
                continue;
            };
            let on_claims = access
                .get("left")
                .and_then(principal_path)
                .is_some_and(|p| p == ["claims"]);
            if !on_claims {
                continue;
            }
            let name = match access.get("attr") {
                Some(Value::String(name)) => Some(name.clone()),
                Some(Value::Array(names)) => {
                    names.first().and_then(Value::as_str).map(str::to_owned)
                }
                _ => None,
            };
            out.extend(name);
        }
    });
    out
}

fn walk(value: &Value, visit: &mut impl FnMut(&Value)) {
    let mut stack = vec![value];
    while let Some(node) = stack.pop() {
        match node {
            Value::Object(members) => {
                visit(node);
                stack.extend(members.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
}

/// Whether `pattern` is safe under `rule` (see [`Wildcards`]).
fn pattern_safe(pattern: &[Elem], rule: Wildcards) -> bool {
    let mut elems: Vec<&Elem> = Vec::with_capacity(pattern.len());
    for e in pattern {
        // `**` is `*`.
        if !(*e == Elem::Wild && elems.last() == Some(&&Elem::Wild)) {
            elems.push(e);
        }
    }
    let Some(first) = elems.iter().position(|e| **e == Elem::Wild) else {
        return true;
    };
    match rule {
        Wildcards::Never => false,
        Wildcards::AfterIdentity {
            separators,
            identity_end,
            count,
        } => {
            let ends = elems
                .iter()
                .take(first)
                .filter(|e| ***e == Elem::Char(identity_end))
                .count();
            let is_sep =
                |e: Option<&&Elem>| matches!(e, Some(Elem::Char(c)) if separators.contains(c));
            ends >= count
                && elems.iter().enumerate().all(|(i, e)| {
                    **e != Elem::Wild
                        || (i > 0
                            && is_sep(elems.get(i - 1))
                            && (i + 1 == elems.len() || is_sep(elems.get(i + 1))))
                })
        }
    }
}

fn render_pattern(pattern: &[Elem]) -> String {
    pattern
        .iter()
        .map(|e| match e {
            Elem::Char('*') => "\\*".to_owned(),
            Elem::Char(c) => c.to_string(),
            Elem::Wild => "*".to_owned(),
        })
        .collect()
}

fn render_path(path: &[String]) -> String {
    if path == ["sub"] {
        return "sub".to_owned();
    }
    path.join(".")
}

/// The 1-based line where each top-level statement (policy, with its annotations) of a
/// Cedar text starts, in order. Skips comments and string literals.
fn statement_lines(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let (mut line, mut in_statement) = (1usize, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            c if c.is_whitespace() => {}
            _ => {
                if !in_statement {
                    lines.push(line);
                    in_statement = true;
                }
                match c {
                    ';' => in_statement = false,
                    '"' => {
                        while let Some(c) = chars.next() {
                            match c {
                                '\\' => {
                                    chars.next();
                                }
                                '"' => break,
                                '\n' => line += 1,
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::panic,
        clippy::indexing_slicing,
        reason = "tests"
    )]
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde_json::{Map, json};

    use super::*;
    use crate::{LoadOptions, PolicyEngine, PolicyRequest, TargetInfo};

    /// `gh` is GitHub Actions, `gl` GitLab CI, `k8s` Kubernetes; `plain` has no template.
    const TRUSTS: [&str; 4] = ["gh", "gl", "k8s", "plain"];

    fn options() -> LoadOptions {
        LoadOptions {
            templates: BTreeMap::from([
                ("gh".to_owned(), "github-actions".to_owned()),
                ("gl".to_owned(), "gitlab-ci".to_owned()),
                ("k8s".to_owned(), "kubernetes".to_owned()),
            ]),
        }
    }

    fn load(src: &str) -> Result<PolicyEngine, PolicyLoadError> {
        let target = TargetInfo {
            name: "x".to_owned(),
            kind: "jwt".to_owned(),
            audience: "https://x.invalid".to_owned(),
            labels: BTreeMap::new(),
        };
        PolicyEngine::from_sources_with(
            crate::BUNDLED_SCHEMA,
            &[("p.cedar".to_owned(), src.to_owned())],
            &[target],
            &TRUSTS.map(String::from),
            &options(),
        )
    }

    /// The lint ids a permit on trust scope `scope` with condition `when` fails.
    fn errors_of(src: &str) -> Vec<LintId> {
        match load(src) {
            Ok(_) => Vec::new(),
            Err(PolicyLoadError::Lint(findings)) => findings.iter().map(|f| f.lint).collect(),
            Err(e) => panic!("{src}: not a lint error: {e}"),
        }
    }

    fn permit(scope: &str, when: &str) -> String {
        format!("@id(\"p\") permit({scope}, action, resource) when {{ {when} }};")
    }

    fn gh(when: &str) -> String {
        permit(r#"principal in Legate::Issuer::"gh""#, when)
    }

    fn warnings(src: &str) -> Vec<String> {
        load(src).unwrap().warnings().to_vec()
    }

    const REPO: &str =
        r#"principal.claims has repository_id && principal.claims.repository_id == "1""#;

    /// Stops cross-issuer confusion: a permit on `sub` alone, without an issuer scope,
    /// admits the same `sub` string minted by any other trusted issuer (a self-hosted
    /// GitLab can mint `repo:acme/app:ref:refs/heads/main`).
    #[test]
    fn a_permit_without_issuer_scope_is_refused_because_another_issuers_sub_would_match() {
        for src in [
            permit("principal", r#"principal.subject == "s""#),
            permit("principal is Legate::Workload", REPO),
            // One branch is scoped, the other is not.
            permit(
                "principal",
                r#"(principal.trust == "gh" && principal.subject == "s") || principal.subject == "t""#,
            ),
            // `unless` never scopes.
            format!(
                "@id(\"p\") permit(principal, action, resource) when {{ {REPO} }} \
                 unless {{ principal.trust != \"gh\" }};"
            ),
        ] {
            assert!(
                errors_of(&src).contains(&LintId::UnscopedIssuer),
                "{src}: {:?}",
                errors_of(&src)
            );
        }
        for src in [
            gh(r#"principal.subject == "s""#),
            permit(
                "principal",
                &format!(r#"principal.trust == "gh" && {REPO}"#),
            ),
            permit(
                "principal",
                &format!(r#"principal in Legate::Issuer::"gh" && {REPO}"#),
            ),
            permit(r#"principal == Legate::Workload::"gh|s""#, "true"),
            permit(
                "principal",
                r#"(principal.trust == "gh" && principal.subject == "s") ||
                   (principal.trust == "gl" && principal.subject == "t")"#,
            ),
        ] {
            assert_eq!(errors_of(&src), [], "{src}");
        }
    }

    /// Stops a role that trusts every workload of an issuer: a permit must bind the
    /// subject or a stable identifier in every branch, or any repository (project,
    /// service account) of that issuer gets in.
    #[test]
    fn a_permit_that_binds_no_identity_is_refused_because_every_workload_of_the_issuer_would_match()
    {
        let scoped = r#"principal in Legate::Issuer::"gh""#;
        for src in [
            format!("@id(\"p\") permit({scoped}, action, resource);"),
            gh("true"),
            gh("principal.claims has repository_id"),
            gh(r#"principal.claims has ref && principal.claims.ref == "refs/heads/main""#),
            gh("principal.claims.sub == principal.claims.sub"),
            gh(&format!("{REPO} || true")),
            gh(r#"principal.subject == "s" || principal.claims has ref"#),
            gh(r#"!(principal.subject != "s")"#),
            gh(r#"if principal.subject == "s" then true else true"#),
            format!(
                "@id(\"p\") permit({scoped}, action, resource) \
                 unless {{ principal.subject != \"s\" }};"
            ),
            // A mutable name is not a binding.
            gh(r#"principal.claims has repository && principal.claims.repository == "acme/app""#),
            // Only exact ids: a pattern on an unstructured id binds nothing.
            gh(r#"principal.claims has repository_id && principal.claims.repository_id like "1""#),
            // Without a template, a pattern never binds.
            permit(
                r#"principal in Legate::Issuer::"plain""#,
                r#"principal.subject like "repo:acme/app:*""#,
            ),
            // A GitHub stable id is not GitLab's.
            permit(r#"principal in Legate::Issuer::"gl""#, REPO),
        ] {
            assert!(
                errors_of(&src).contains(&LintId::UnboundSubject),
                "{src}: {:?}",
                errors_of(&src)
            );
        }
        for src in [
            gh(r#"principal.subject == "repo:acme/app:ref:refs/heads/main""#),
            gh(r#""repo:acme/app:ref:refs/heads/main" == principal.claims.sub"#),
            gh(REPO),
            gh(
                r#"principal.claims has repository_owner_id && principal.claims.repository_owner_id == "9""#,
            ),
            gh(r#"["s", "t"].contains(principal.subject)"#),
            gh(&format!(r#"{REPO} || principal.subject == "s""#)),
            gh(&format!(
                r#"if {REPO} then true else principal.subject == "s""#
            )),
            gh(r#"principal.subject like "repo:acme/app:ref:refs/heads/*""#),
            gh(r#"principal.subject like "repo:acme/app:*""#),
            permit(
                r#"principal in Legate::Issuer::"gl""#,
                r#"principal.claims has project_id && principal.claims.project_id == "42""#,
            ),
            permit(
                r#"principal in Legate::Issuer::"k8s""#,
                r#"principal.claims has "kubernetes.io" &&
                   principal.claims["kubernetes.io"] has serviceaccount &&
                   principal.claims["kubernetes.io"].serviceaccount has uid &&
                   principal.claims["kubernetes.io"].serviceaccount.uid == "u""#,
            ),
            // Without a template, any template's stable id binds (exactly).
            permit(r#"principal in Legate::Issuer::"plain""#, REPO),
            permit(
                r#"principal in Legate::Issuer::"plain""#,
                r#"principal.subject == "s""#,
            ),
        ] {
            assert_eq!(errors_of(&src), [], "{src}");
        }
    }

    /// Stops look-alike names: `repo:acme/app*` admits `repo:acme/app-evil`, `repo:*`
    /// and `*` admit every repository.
    #[test]
    fn a_pattern_that_extends_a_partial_segment_is_refused_because_it_admits_look_alike_names() {
        let bound = REPO;
        for pattern in [
            "repo:acme/app*",
            "*",
            "repo:*",
            "repo:acme/*",
            "repo:acme/*:ref:refs/heads/main",
            "repo:acme/app:ref:refs/heads/rel*",
            "*:ref:refs/heads/main",
        ] {
            let src = gh(&format!(r#"{bound} && principal.subject like "{pattern}""#));
            assert_eq!(errors_of(&src), [LintId::UnsafePattern], "{pattern}");
        }
        // Other structured claims.
        for condition in [
            r#"principal.claims has ref && principal.claims.ref like "refs/heads/rel*""#,
            r#"principal.claims has repository && principal.claims.repository like "acme/*""#,
        ] {
            let src = gh(&format!("{bound} && {condition}"));
            assert!(
                errors_of(&src).contains(&LintId::UnsafePattern),
                "{condition}"
            );
        }
        let k8s = permit(
            r#"principal in Legate::Issuer::"k8s""#,
            r#"principal.subject like "system:serviceaccount:payments:*""#,
        );
        assert!(errors_of(&k8s).contains(&LintId::UnsafePattern));
        // Without a template, the generic rule still refuses what cannot be whole segments.
        let plain = permit(
            r#"principal in Legate::Issuer::"plain""#,
            r#"principal.subject == "s" || principal.subject like "ci-*""#,
        );
        assert!(errors_of(&plain).contains(&LintId::UnsafePattern));
        for pattern in [
            "repo:acme/app:*",
            "repo:acme/app:ref:refs/heads/*",
            "repo:acme/app:environment:prod",
            "repo:acme/app:ref:refs/heads/\\*",
        ] {
            let src = gh(&format!(r#"{bound} && principal.subject like "{pattern}""#));
            assert_eq!(errors_of(&src), [], "{pattern}");
        }
        let refs = gh(&format!(
            r#"{bound} && principal.claims has ref && principal.claims.ref like "refs/heads/release/*""#
        ));
        assert_eq!(errors_of(&refs), []);
    }

    /// Stops a condition that silently never holds (or holds for the wrong issuer): a
    /// GitLab claim in a GitHub-scoped policy.
    #[test]
    fn a_claim_the_issuer_never_emits_is_refused_because_the_condition_cannot_mean_what_it_says() {
        let src = gh(&format!(
            r#"{REPO} && principal.claims has project_id && principal.claims.project_id == "42""#
        ));
        assert_eq!(errors_of(&src), [LintId::ForeignClaim]);
        // Forbids too: a guardrail on a claim that never comes never fires.
        let forbid = format!(
            "{}\n@id(\"f\") forbid(principal in Legate::Issuer::\"gh\", action, resource) \
             when {{ principal.claims has user_login && principal.claims.user_login == \"x\" }};",
            gh(REPO)
        );
        assert_eq!(errors_of(&forbid), [LintId::ForeignClaim]);
        // Without a template, or across issuers that emit it, it is fine.
        for src in [
            permit(
                r#"principal in Legate::Issuer::"plain""#,
                &format!(r#"{REPO} && principal.claims has project_id"#),
            ),
            permit(
                "principal",
                &format!(
                    r#"(principal.trust == "gh" && {REPO}) || (principal.trust == "gl" &&
                    principal.claims has project_id && principal.claims.project_id == "42")"#
                ),
            ),
        ] {
            assert_eq!(errors_of(&src), [], "{src}");
        }
    }

    /// Stops a binding to a name that can change hands: a deleted repository's name can be
    /// registered again by anyone. A warning, since the subject may bind it as well.
    #[test]
    fn binding_a_mutable_name_without_its_stable_id_warns_because_the_name_can_be_re_registered() {
        let name =
            r#"principal.claims has repository && principal.claims.repository == "acme/app""#;
        let warned = warnings(&gh(&format!(r#"principal.subject == "s" && {name}"#)));
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(warned[0].contains("mutable-name"), "{warned:?}");
        assert!(warned[0].contains("repository_id"), "{warned:?}");
        assert_eq!(
            warnings(&gh(&format!("{REPO} && {name}"))),
            Vec::<String>::new()
        );
    }

    /// Stops a silent exception: an allowed lint must say why, and the reason follows
    /// every decision the policy determines into the audit event.
    #[test]
    fn an_allowed_lint_needs_a_reason_and_is_reported_with_the_decisions_it_determines() {
        let src = r#"@id("open") @allow_lint("unscoped-issuer, unbound-subject: break-glass, ticket 7")
            permit(principal, action, resource);"#;
        let engine = load(src).unwrap();
        let claims: Map<String, serde_json::Value> = json!({"iss": "https://i", "sub": "s"})
            .as_object()
            .unwrap()
            .clone();
        let decision = engine.evaluate(&PolicyRequest {
            actor: None,
            trust: "gh",
            issuer: "https://i",
            subject: "s",
            claims: &claims,
            target: "x",
            source_ip: None,
            now: 0,
            requested_lifetime: 60,
            issued_lifetime: 60,
        });
        assert!(decision.allowed);
        assert_eq!(
            decision.lint_exceptions,
            ["open: unscoped-issuer, unbound-subject: break-glass, ticket 7"]
        );
        for bad in [
            r#"@allow_lint("unscoped-issuer")"#,
            r#"@allow_lint("unscoped-issuer:  ")"#,
            r#"@allow_lint("no-such-lint: because")"#,
            r#"@allow_lint("allow-lint: because")"#,
        ] {
            let src = format!("{bad} permit(principal, action, resource);");
            assert_eq!(errors_of(&src), [LintId::AllowLint], "{bad}");
        }
        // An exception for a lint that does not fire is a warning.
        let stale = format!(
            "@allow_lint(\"unsafe-pattern: old\") {}",
            gh(r#"principal.subject == "s""#)
        );
        let warned = warnings(&stale);
        assert!(
            warned.iter().any(|w| w.contains("does not fire")),
            "{warned:?}"
        );
    }

    /// The error names policy, file, line and a fix.
    #[test]
    fn a_lint_error_names_the_policy_file_line_and_fix() {
        let src = "// header\n\npermit(principal, action, resource);\n\n\
                   // the bad one\n@id(\"bad\")\npermit(principal, action, resource)\n\
                   when { principal.subject == \"s\" };\n";
        let err = load(&format!(
            "@id(\"ok\") permit(principal in Legate::Issuer::\"gh\", action, resource) \
             when {{ principal.subject == \"s\" }};\n{src}"
        ))
        .unwrap_err();
        let PolicyLoadError::Lint(findings) = &err else {
            panic!("{err}")
        };
        let bad = findings.iter().find(|f| f.policy_id == "bad").unwrap();
        assert_eq!((bad.file.as_str(), bad.line), ("p.cedar", 7));
        assert_eq!(bad.lint, LintId::UnscopedIssuer);
        let text = err.to_string();
        assert!(
            text.contains("`p.cedar`, line 7, policy `bad`: unscoped-issuer: ")
                && text.contains("fix: add `principal in Legate::Issuer::"),
            "{text}"
        );
        let first = findings
            .iter()
            .find(|f| f.policy_id == "p.cedar#1")
            .unwrap();
        assert_eq!(first.line, 4);
    }

    #[test]
    fn statement_lines_skip_comments_and_strings() {
        let text = "// a; b\n@id(\"x;\\\"y\")\npermit(principal, action, resource);\n\n  forbid(\n principal, action, resource) when { \"//;\" == \"\" };";
        assert_eq!(statement_lines(text), [2, 5]);
    }

    #[test]
    fn bundled_policies_pass_the_lints_with_and_without_templates() {
        let targets: Vec<TargetInfo> = [
            "demo-api",
            "deploy-api",
            "demo-aws",
            "demo-gcp",
            "demo-azure",
        ]
        .iter()
        .map(|n| TargetInfo {
            name: (*n).to_owned(),
            kind: "jwt".to_owned(),
            audience: "https://a.invalid".to_owned(),
            labels: BTreeMap::new(),
        })
        .collect();
        let trusts = ["demo", "github", "gitlab", "kubernetes"].map(String::from);
        let engine = PolicyEngine::bundled(&targets, &trusts).unwrap();
        assert!(engine.warnings().is_empty(), "{:?}", engine.warnings());
        // Without templates the demo's pattern binds nothing (the generic rule).
        let err = PolicyEngine::bundled_with(&targets, &trusts, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("demo-dev-aws") && err.contains("unbound-subject"),
            "{err}"
        );
        let err = PolicyEngine::bundled_with(
            &targets,
            &trusts,
            &LoadOptions {
                templates: BTreeMap::from([("github".to_owned(), "no-such".to_owned())]),
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("trust `github` names unknown template `no-such`; known templates: aks, aws-outbound"), "{err}");
    }

    // --- The property: a policy the lint accepts never admits another issuer's subject.

    fn atom() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(r#"principal.trust == "gh""#.to_owned()),
            Just(r#"principal in Legate::Issuer::"gh""#.to_owned()),
            Just(r#"principal.subject == "s""#.to_owned()),
            Just(r#"principal.claims.sub == "repo:acme/app:ref:refs/heads/main""#.to_owned()),
            Just(REPO.to_owned()),
            Just(r#"principal.claims has repository_owner_id && principal.claims.repository_owner_id == "9""#.to_owned()),
            Just(r#"principal.claims has env && principal.claims.env == "dev""#.to_owned()),
            Just(r#"principal.claims has ref && principal.claims.ref == "refs/heads/main""#.to_owned()),
            Just("principal.claims has repository_id".to_owned()),
            Just("true".to_owned()),
            Just(r#"principal.subject like "repo:acme/app:*""#.to_owned()),
            Just(r#"principal.subject like "*""#.to_owned()),
            Just(r#"["s", "t"].contains(principal.subject)"#.to_owned()),
            Just("context.requested_lifetime < 1000".to_owned()),
        ]
    }

    fn condition() -> impl Strategy<Value = String> {
        atom().prop_recursive(3, 16, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} && {b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} || {b})")),
                inner.clone().prop_map(|a| format!("(!{a})")),
                (inner.clone(), inner.clone(), inner)
                    .prop_map(|(c, a, b)| format!("(if {c} then {a} else {b})")),
            ]
        })
    }

    fn policy() -> impl Strategy<Value = String> {
        let scope = prop_oneof![
            Just("principal"),
            Just(r#"principal in Legate::Issuer::"gh""#),
            Just(r#"principal == Legate::Workload::"gh|s""#),
            Just("principal is Legate::Workload"),
        ];
        (
            scope,
            proptest::option::of(condition()),
            proptest::option::of(condition()),
        )
            .prop_map(|(scope, when, unless)| {
                let mut src = format!("@id(\"p\") permit({scope}, action, resource)");
                if let Some(when) = when {
                    src.push_str(&format!(" when {{ {when} }}"));
                }
                if let Some(unless) = unless {
                    src.push_str(&format!(" unless {{ {unless} }}"));
                }
                src.push(';');
                src
            })
    }

    proptest! {
        // About one generated policy in ten passes the lints; 1024 cases check ~100 of them.
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Stops cross-issuer confusion for good: whatever a policy written for `gh` says,
        /// if the lint accepts it, a token from another trust (`gl`, `k8s`, `plain`) with
        /// the very same `sub` and claims is denied.
        #[test]
        fn a_policy_the_lint_accepts_never_admits_a_subject_from_another_issuer(
            src in policy(),
            sub in prop_oneof![Just("s"), Just("t"), Just("repo:acme/app:ref:refs/heads/main")],
        ) {
            let Ok(engine) = load(&src) else {
                return Ok(());
            };
            let claims: Map<String, serde_json::Value> = json!({
                "iss": "https://i", "sub": sub, "repository_id": "1",
                "repository_owner_id": "9", "env": "dev", "ref": "refs/heads/main",
            })
            .as_object()
            .unwrap()
            .clone();
            for trust in ["gl", "k8s", "plain"] {
                let decision = engine.evaluate(&PolicyRequest {
                    actor: None,
                    trust,
                    issuer: "https://i",
                    subject: sub,
                    claims: &claims,
                    target: "x",
                    source_ip: None,
                    now: 0,
                    requested_lifetime: 60,
                    issued_lifetime: 60,
                });
                prop_assert!(!decision.allowed, "{src}\nadmits {trust} with sub {sub}");
            }
        }
    }

    /// The property above is not vacuous: the grammar yields policies the lint accepts,
    /// and they do admit their own issuer.
    #[test]
    fn the_grammar_yields_accepted_policies_that_admit_their_own_issuer() {
        let engine = load(&permit(
            "principal",
            &format!(r#"(principal.trust == "gh" && {REPO}) && !(principal.subject == "t")"#),
        ))
        .unwrap();
        let claims: Map<String, serde_json::Value> =
            json!({"iss": "https://i", "sub": "s", "repository_id": "1"})
                .as_object()
                .unwrap()
                .clone();
        let decide = |trust| {
            engine
                .evaluate(&PolicyRequest {
                    actor: None,
                    trust,
                    issuer: "https://i",
                    subject: "s",
                    claims: &claims,
                    target: "x",
                    source_ip: None,
                    now: 0,
                    requested_lifetime: 60,
                    issued_lifetime: 60,
                })
                .allowed
        };
        assert!(decide("gh"));
        assert!(!decide("gl"));
    }
}
