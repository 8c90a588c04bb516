//! [`PolicyEngine::explain`]: why a request is allowed or denied, policy by policy.
//!
//! The decision is [`PolicyEngine::evaluate`]'s own. Then every policy of the same slice
//! (the policies that can apply to the request's (trust, target)) is evaluated alone
//! against the same request and entities; for each one that is not satisfied, the first
//! reason is found by evaluating, in Cedar's order, its scope constraints (principal,
//! action, resource) and then the pieces of its `when` / `unless` clauses (see
//! [`policy_text`](crate::policy_text)), each as a throwaway policy. The first scope
//! constraint that does not match, the first `when` piece that is false or errs, or the
//! first `unless` piece that is true or errs is reported with its source position.
//!
//! Cedar's `&&` and `||` short-circuit left to right, so evaluating pieces in order and
//! stopping at the first failure reproduces what the policy itself did.

use std::fmt;

use cedar_policy::{Effect, Entities, Policy, PolicyId, PolicySet, Request};
use serde_json::{Value, json};

use crate::engine::{Decision, PolicyEngine, PolicyRequest};
use crate::policy_text::{Piece, PolicyText};

/// The answer of [`PolicyEngine::explain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The decision, exactly as [`PolicyEngine::evaluate`] gives it.
    pub decision: Decision,
    /// Every policy that can apply to the request's (trust, target), sorted by id; empty
    /// when the request was decided before any policy ran (unknown trust or target, an
    /// unbuildable request, an unknown client address that a policy reads).
    pub policies: Vec<PolicyExplanation>,
}

/// One policy's part in an [`Explanation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyExplanation {
    /// The policy id.
    pub id: String,
    /// The file it comes from.
    pub file: String,
    /// `permit` or `forbid`.
    pub effect: &'static str,
    /// Whether the policy matched.
    pub outcome: PolicyOutcome,
    /// Why it did not match: the first failing scope constraint or condition. `None`
    /// when it matched, or when no single piece could be named.
    pub failure: Option<Failure>,
    /// Cedar's evaluation errors for this policy.
    pub errors: Vec<String>,
}

/// Whether a policy matched the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyOutcome {
    /// Scope and every condition hold: a permit allows (unless a forbid matches), a
    /// forbid denies.
    Satisfied,
    /// The scope does not match, or a condition does not hold.
    NotSatisfied,
    /// Evaluating a condition failed (Cedar skips the policy; a failing forbid denies).
    Error,
}

/// Where a policy stopped matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What failed.
    pub kind: FailureKind,
    /// How it failed.
    pub result: PieceResult,
    /// The source text of the constraint or condition.
    pub text: String,
    /// Its position: 1-based line and column in [`PolicyExplanation::file`].
    pub line: usize,
    /// See `line`.
    pub column: usize,
    /// The evaluation error, when `result` is [`PieceResult::Error`].
    pub error: Option<String>,
}

/// The part of a policy that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The principal constraint of the scope.
    Principal,
    /// The action constraint of the scope.
    Action,
    /// The resource constraint of the scope.
    Resource,
    /// A piece of a `when` clause.
    When,
    /// A piece of an `unless` clause.
    Unless,
}

/// What a scope constraint or condition evaluated to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceResult {
    /// `true` (a failure for an `unless` piece).
    True,
    /// `false` (a failure for a scope constraint or a `when` piece).
    False,
    /// Evaluation failed.
    Error,
}

impl PolicyOutcome {
    /// A stable identifier.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Satisfied => "satisfied",
            Self::NotSatisfied => "not_satisfied",
            Self::Error => "error",
        }
    }
}

impl FailureKind {
    /// A stable identifier.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Principal => "principal",
            Self::Action => "action",
            Self::Resource => "resource",
            Self::When => "when",
            Self::Unless => "unless",
        }
    }
}

impl PieceResult {
    /// A stable identifier.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "true",
            Self::False => "false",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            FailureKind::Principal | FailureKind::Action | FailureKind::Resource => {
                format!("{} scope does not match", self.kind.as_str())
            }
            FailureKind::When | FailureKind::Unless => {
                format!(
                    "`{}` condition is {}",
                    self.kind.as_str(),
                    self.result.as_str()
                )
            }
        };
        write!(
            f,
            "{what} at line {}, column {}: {}",
            self.line,
            self.column,
            one_line(&self.text)
        )?;
        if let Some(error) = &self.error {
            write!(f, " ({error})")?;
        }
        Ok(())
    }
}

/// `text` on one line, whitespace runs collapsed.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Explanation {
    /// The explanation as the JSON document of `legate policy eval --json` and
    /// `POST /admin/explain` (see `docs/policy.md`).
    pub fn to_json(&self) -> Value {
        let d = &self.decision;
        json!({
            "decision": if d.allowed { "allow" } else { "deny" },
            "reason": d.reason.as_str(),
            "determining_policies": d.policy_ids,
            "errors": d.errors,
            "policies": self.policies.iter().map(PolicyExplanation::to_json).collect::<Vec<_>>(),
        })
    }
}

impl PolicyExplanation {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "file": self.file,
            "effect": self.effect,
            "outcome": self.outcome.as_str(),
            "failure": self.failure.as_ref().map(|f| json!({
                "kind": f.kind.as_str(),
                "result": f.result.as_str(),
                "text": f.text,
                "line": f.line,
                "column": f.column,
                "error": f.error,
            })),
            "errors": self.errors,
        })
    }
}

impl PolicyEngine {
    /// Decides `req` like [`evaluate`](Self::evaluate) (the decision is always the same)
    /// and explains it: for every policy that can apply to the request's (trust,
    /// target), whether it matched and, if not, the first scope constraint or condition
    /// that failed, with its source position.
    ///
    /// Far slower than `evaluate` (one Cedar evaluation per policy and per condition);
    /// for operators and tooling, never on the exchange path.
    pub fn explain(&self, req: &PolicyRequest<'_>) -> Explanation {
        let decision = self.evaluate(req);
        let policies = match self.slice_request(req) {
            Some((set, request, entities)) => {
                let mut policies: Vec<&Policy> = set.policies().collect();
                policies.sort_by(|a, b| a.id().cmp(b.id()));
                policies
                    .into_iter()
                    .map(|p| self.explain_policy(p, &request, &entities))
                    .collect()
            }
            None => Vec::new(),
        };
        Explanation { decision, policies }
    }

    fn explain_policy(
        &self,
        policy: &Policy,
        request: &Request,
        entities: &Entities,
    ) -> PolicyExplanation {
        let id: &str = policy.id().as_ref();
        let (satisfied, errors) = self.run(policy.clone(), request, entities);
        let outcome = if satisfied {
            PolicyOutcome::Satisfied
        } else if errors.is_empty() {
            PolicyOutcome::NotSatisfied
        } else {
            PolicyOutcome::Error
        };
        let failure = if satisfied {
            None
        } else {
            self.first_failure(policy, self.texts().get(id), request, entities)
        };
        PolicyExplanation {
            id: id.to_owned(),
            file: self.policy_file(id).unwrap_or_default().to_owned(),
            effect: match policy.effect() {
                Effect::Permit => "permit",
                Effect::Forbid => "forbid",
            },
            outcome,
            failure,
            errors,
        }
    }

    /// Whether `policy` alone is satisfied, and its evaluation errors.
    fn run(&self, policy: Policy, request: &Request, entities: &Entities) -> (bool, Vec<String>) {
        let id = policy.id().clone();
        let Ok(set) = PolicySet::from_policies([policy]) else {
            return (
                false,
                vec!["internal error: cannot evaluate the policy alone".into()],
            );
        };
        let response = self.authorizer().is_authorized(request, &set, entities);
        let diagnostics = response.diagnostics();
        let satisfied = diagnostics.reason().any(|r| *r == id);
        let errors = diagnostics.errors().map(ToString::to_string).collect();
        (satisfied, errors)
    }

    /// The first scope constraint or condition of `policy` that fails.
    fn first_failure(
        &self,
        policy: &Policy,
        text: Option<&PolicyText>,
        request: &Request,
        entities: &Entities,
    ) -> Option<Failure> {
        let est = policy.to_json().ok()?;
        let all = json!({ "op": "All" });
        let kinds = [
            ("principal", FailureKind::Principal),
            ("action", FailureKind::Action),
            ("resource", FailureKind::Resource),
        ];
        for (index, (key, kind)) in kinds.into_iter().enumerate() {
            let mut probe = json!({
                "effect": "permit",
                "principal": all,
                "action": all,
                "resource": all,
                "conditions": [],
            });
            if let (Some(slot), Some(constraint)) = (probe.get_mut(key), est.get(key)) {
                *slot = constraint.clone();
            }
            let Ok(probe) = Policy::from_json(Some(PolicyId::new("explain-probe")), probe) else {
                continue;
            };
            if !self.run(probe, request, entities).0 {
                let piece = text.and_then(|t| t.scope.get(index));
                return Some(Failure {
                    kind,
                    result: PieceResult::False,
                    text: piece.map_or_else(|| key.to_owned(), |p| p.text.clone()),
                    line: piece.map_or(0, |p| p.line),
                    column: piece.map_or(0, |p| p.column),
                    error: None,
                });
            }
        }
        for clause in &text?.clauses {
            for piece in &clause.pieces {
                let (result, error) = self.run_piece(piece, request, entities)?;
                let failed = match result {
                    PieceResult::Error => true,
                    PieceResult::True => clause.unless,
                    PieceResult::False => !clause.unless,
                };
                if failed {
                    return Some(Failure {
                        kind: if clause.unless {
                            FailureKind::Unless
                        } else {
                            FailureKind::When
                        },
                        result,
                        text: piece.text.clone(),
                        line: piece.line,
                        column: piece.column,
                        error,
                    });
                }
            }
        }
        None
    }

    /// Evaluates one condition piece as `permit(principal, action, resource) when { piece }`.
    fn run_piece(
        &self,
        piece: &Piece,
        request: &Request,
        entities: &Entities,
    ) -> Option<(PieceResult, Option<String>)> {
        // The newlines keep a trailing `//` comment in the piece from eating the brace.
        let src = format!(
            "permit(principal, action, resource) when {{\n{}\n}};",
            piece.text
        );
        let probe = Policy::parse(Some(PolicyId::new("explain-probe")), src).ok()?;
        let (satisfied, errors) = self.run(probe, request, entities);
        Some(match (satisfied, errors.into_iter().next()) {
            (true, _) => (PieceResult::True, None),
            (false, Some(error)) => (
                PieceResult::Error,
                Some(error.replace("explain-probe", "this condition")),
            ),
            (false, None) => (PieceResult::False, None),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::panic,
        reason = "tests"
    )]
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde_json::{Map, json};

    use super::*;
    use crate::{DecisionReason, TargetInfo};

    fn targets() -> Vec<TargetInfo> {
        ["x0", "x1"]
            .iter()
            .map(|name| TargetInfo {
                name: (*name).to_owned(),
                kind: "jwt".to_owned(),
                audience: format!("https://{name}.invalid"),
                labels: BTreeMap::from([("env".to_owned(), "prod".to_owned())]),
            })
            .collect()
    }

    fn engine(src: &str) -> PolicyEngine {
        PolicyEngine::from_sources_unlinted(
            crate::BUNDLED_SCHEMA,
            &[("p.cedar".to_owned(), src.to_owned())],
            &targets(),
            &["t0".to_owned(), "t1".to_owned()],
        )
        .unwrap()
    }

    fn request(claims: &Map<String, Value>) -> PolicyRequest<'_> {
        PolicyRequest {
            actor: None,
            trust: "t0",
            issuer: "https://t0.invalid",
            subject: "s0",
            claims,
            target: "x0",
            source_ip: Some("192.0.2.1".parse().unwrap()),
            now: 1_767_225_600,
            requested_lifetime: 60,
            issued_lifetime: 60,
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn policy<'e>(e: &'e Explanation, id: &str) -> &'e PolicyExplanation {
        e.policies.iter().find(|p| p.id == id).unwrap()
    }

    const POLICIES: &str = r#"@id("main")
permit (principal in Legate::Issuer::"t0", action, resource == Legate::Target::"x0")
when {
  principal.claims has ref &&
  principal.claims.ref == "refs/heads/main"
};

@id("other-issuer")
permit (principal in Legate::Issuer::"t1", action, resource);

@id("office-hours")
forbid (principal, action, resource)
unless { context.utc_hour >= 8 || context.source_ip.isInRange(ip("10.0.0.0/8")) };

@id("runner")
permit (principal, action, resource)
when { principal.claims has runner_id && principal.claims.runner_id > 5 };
"#;

    /// Stops the explanation from naming the wrong condition: the first false `when`
    /// piece, the true `unless` piece, a scope mismatch and an erring condition (a
    /// `runner_id` that arrives as a string) are each named with their position.
    #[test]
    fn the_first_failing_condition_is_named() {
        let engine = engine(POLICIES);
        let c = claims(json!({ "ref": "refs/heads/dev", "runner_id": "7" }));
        let req = request(&c);
        let e = engine.explain(&req);
        assert_eq!(e.decision, engine.evaluate(&req));
        assert!(!e.decision.allowed);
        // `other-issuer` is scoped to t1: not in t0's slice.
        let ids: Vec<&str> = e.policies.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["main", "office-hours", "runner"]);

        let main = policy(&e, "main");
        assert_eq!(main.outcome, PolicyOutcome::NotSatisfied);
        let f = main.failure.as_ref().unwrap();
        assert_eq!(f.kind, FailureKind::When);
        assert_eq!(f.result, PieceResult::False);
        assert_eq!(f.text, r#"principal.claims.ref == "refs/heads/main""#);
        assert_eq!((f.line, f.column), (5, 3));
        assert_eq!(main.file, "p.cedar");

        // 00:00 UTC from 192.0.2.1: the `unless` clause is false, so the forbid holds.
        let hours = policy(&e, "office-hours");
        assert_eq!(hours.outcome, PolicyOutcome::Satisfied);
        assert!(hours.failure.is_none());

        let runner = policy(&e, "runner");
        assert_eq!(runner.outcome, PolicyOutcome::Error);
        let f = runner.failure.as_ref().unwrap();
        assert_eq!(f.result, PieceResult::Error);
        assert_eq!(f.text, "principal.claims.runner_id > 5");
        assert!(f.error.is_some());
        assert!(!runner.errors.is_empty());
    }

    #[test]
    fn unless_and_scope_failures_are_named() {
        let engine = engine(POLICIES);
        let c = claims(json!({ "ref": "refs/heads/main" }));
        let mut req = request(&c);
        req.source_ip = Some("10.1.2.3".parse().unwrap());
        let e = engine.explain(&req);
        assert!(e.decision.allowed, "{e:?}");
        assert_eq!(e.decision.policy_ids, ["main"]);
        let hours = policy(&e, "office-hours");
        assert_eq!(hours.outcome, PolicyOutcome::NotSatisfied);
        let f = hours.failure.as_ref().unwrap();
        assert_eq!(f.kind, FailureKind::Unless);
        assert_eq!(f.result, PieceResult::True);
        assert_eq!(f.text, r#"context.source_ip.isInRange(ip("10.0.0.0/8"))"#);
        // `runner` is unsatisfied at its `has` guard, without an error.
        let runner = policy(&e, "runner");
        assert_eq!(runner.outcome, PolicyOutcome::NotSatisfied);
        assert_eq!(
            runner.failure.as_ref().unwrap().text,
            "principal.claims has runner_id"
        );

        // A scope mismatch: `main` names target x0, evaluated for x1 it is not in the
        // slice; for a principal equality it is.
        let engine = self::engine(
            r#"@id("one") permit (principal == Legate::Workload::"t0|s9", action, resource);"#,
        );
        let e = engine.explain(&request(&c));
        let one = policy(&e, "one");
        let f = one.failure.as_ref().unwrap();
        assert_eq!(f.kind, FailureKind::Principal);
        assert_eq!(f.text, r#"principal == Legate::Workload::"t0|s9""#);
        assert_eq!((f.line, f.column), (1, 20));
    }

    #[test]
    fn requests_decided_before_policy_have_no_policy_lines() {
        let engine = engine(POLICIES);
        let c = Map::new();
        let mut req = request(&c);
        req.target = "nope";
        let e = engine.explain(&req);
        assert_eq!(e.decision.reason, DecisionReason::UnknownTarget);
        assert!(e.policies.is_empty());
        let json = e.to_json();
        assert_eq!(json["decision"], "deny");
        assert_eq!(json["reason"], "unknown_target");
    }

    fn bundled() -> PolicyEngine {
        let targets: Vec<TargetInfo> = ["deploy-api", "demo-api", "other"]
            .iter()
            .enumerate()
            .map(|(i, name)| TargetInfo {
                name: (*name).to_owned(),
                kind: "jwt".to_owned(),
                audience: format!("https://{name}.invalid"),
                labels: if i == 0 {
                    BTreeMap::from([("env".to_owned(), "prod".to_owned())])
                } else {
                    BTreeMap::new()
                },
            })
            .collect();
        let trusts = ["github", "gitlab", "kubernetes", "demo"].map(String::from);
        PolicyEngine::bundled(&targets, &trusts).unwrap()
    }

    fn bundled_claims() -> impl Strategy<Value = (String, String, Map<String, Value>)> {
        let trust = prop_oneof![
            Just("github"),
            Just("gitlab"),
            Just("kubernetes"),
            Just("demo")
        ];
        let target = prop_oneof![Just("deploy-api"), Just("demo-api"), Just("other")];
        let string = prop_oneof![
            Just(json!("892318775")),
            Just(json!("42")),
            Just(json!("true")),
            Just(json!("refs/heads/main")),
            Just(json!("dev")),
            Just(json!(7)),
        ];
        let k8s = prop_oneof![
            Just(None),
            Just(Some(
                json!({"namespace": "payments", "serviceaccount": {"name": "api"}})
            )),
            Just(Some(json!({"namespace": "payments"}))),
        ];
        (
            trust,
            target,
            prop::collection::btree_map(
                prop_oneof![
                    Just("repository_id"),
                    Just("ref"),
                    Just("project_id"),
                    Just("ref_protected"),
                    Just("env"),
                ],
                string,
                0..5,
            ),
            k8s,
        )
            .prop_map(|(trust, target, fields, k8s)| {
                let mut claims: Map<String, Value> =
                    fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                claims.insert("sub".into(), json!("s"));
                if let Some(k8s) = k8s {
                    claims.insert("kubernetes.io".into(), k8s);
                }
                (trust.to_owned(), target.to_owned(), claims)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The explanation's decision is always `evaluate`'s, and it names a failure
        /// for every unsatisfied bundled policy and a satisfied policy for every
        /// determining one.
        #[test]
        fn explain_agrees_with_evaluate(
            (trust, target, claims) in bundled_claims(),
            lifetime in prop_oneof![Just(60u64), Just(600), Just(7200)],
            ip in prop_oneof![Just("192.0.2.1"), Just("169.254.169.254")],
        ) {
            let engine = bundled();
            let req = PolicyRequest {
                actor: None,
                trust: &trust,
                issuer: "https://issuer.invalid",
                subject: "s",
                claims: &claims,
                target: &target,
                source_ip: ip.parse().ok(),
                now: 1_767_225_600,
                requested_lifetime: lifetime,
                issued_lifetime: lifetime,
            };
            let e = engine.explain(&req);
            prop_assert_eq!(&e.decision, &engine.evaluate(&req));
            for id in &e.decision.policy_ids {
                let p = policy(&e, id);
                prop_assert!(p.outcome != PolicyOutcome::NotSatisfied, "{:?}", p);
            }
            for p in &e.policies {
                if p.outcome == PolicyOutcome::NotSatisfied {
                    prop_assert!(p.failure.is_some(), "{:?}", p);
                }
            }
        }
    }
}
