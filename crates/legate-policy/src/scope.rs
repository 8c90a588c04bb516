//! Scope analysis: which (trust, target) pairs a policy can possibly apply to.
//!
//! The analysis must be *conservative*: it may say a policy applies where it cannot (that
//! only costs evaluation time), never the reverse. It relies on the entity model:
//!
//! - the principal is always a `Legate::Workload` whose id is `<trust>|<subject>` and whose
//!   only ancestor is `Legate::Issuer::"<trust>"` (trust names contain no `|`);
//! - the resource is always a `Legate::Target` without ancestors;
//! - the action is always `Legate::Action::"exchange"`, without ancestors.
//!
//! So `principal in Legate::Issuer::"g"` and `principal == / in Legate::Workload::"g|..."`
//! can only match trust `g`; `resource == / in Legate::Target::"x"` only target `x`; a
//! scope naming an entity of another type matches nothing; `is` and unconstrained scopes
//! match everything (of the right type).

use cedar_policy::{
    ActionConstraint, EntityTypeName, EntityUid, Policy, PrincipalConstraint, ResourceConstraint,
};

use crate::request::Names;

/// What a scope constraint can match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Any trust (or target).
    All,
    /// Only the named trust (or target).
    Only(String),
    /// Nothing: the constraint can never be satisfied.
    Nothing,
}

/// The (trust, target) pairs a policy can apply to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PolicyScope {
    pub(crate) trust: Reach,
    pub(crate) target: Reach,
    /// Whether the action constraint admits `Legate::Action::"exchange"`.
    pub(crate) action: bool,
}

impl Reach {
    fn admits(&self, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(only) => only == name,
            Self::Nothing => false,
        }
    }
}

impl PolicyScope {
    pub(crate) fn of(policy: &Policy, names: &Names) -> Self {
        Self {
            trust: principal_reach(policy.principal_constraint(), names),
            target: resource_reach(policy.resource_constraint(), names),
            action: action_admits(policy.action_constraint(), names),
        }
    }

    /// Whether the policy can apply to a request of `trust` for `target`.
    pub(crate) fn applies(&self, trust: &str, target: &str) -> bool {
        self.action && self.trust.admits(trust) && self.target.admits(target)
    }

    /// Whether the policy can apply to any request at all.
    pub(crate) fn can_apply(&self) -> bool {
        self.action && self.trust != Reach::Nothing && self.target != Reach::Nothing
    }
}

fn principal_reach(constraint: PrincipalConstraint, names: &Names) -> Reach {
    match constraint {
        PrincipalConstraint::Any => Reach::All,
        PrincipalConstraint::Is(ty) => type_reach(&ty, &names.workload),
        PrincipalConstraint::Eq(uid) => workload_trust(&uid, names),
        PrincipalConstraint::In(uid) => principal_in(&uid, names),
        PrincipalConstraint::IsIn(ty, uid) => match type_reach(&ty, &names.workload) {
            Reach::All => principal_in(&uid, names),
            other => other,
        },
    }
}

/// `principal in uid`: the principal itself or its issuer.
fn principal_in(uid: &EntityUid, names: &Names) -> Reach {
    if uid.type_name() == &names.issuer {
        Reach::Only(uid.id().unescaped().to_owned())
    } else {
        workload_trust(uid, names)
    }
}

/// `principal == uid`: only a workload uid can match, and only for its trust.
fn workload_trust(uid: &EntityUid, names: &Names) -> Reach {
    if uid.type_name() != &names.workload {
        return Reach::Nothing;
    }
    match uid.id().unescaped().split_once('|') {
        Some((trust, _)) => Reach::Only(trust.to_owned()),
        None => Reach::Nothing,
    }
}

fn resource_reach(constraint: ResourceConstraint, names: &Names) -> Reach {
    match constraint {
        ResourceConstraint::Any => Reach::All,
        ResourceConstraint::Is(ty) => type_reach(&ty, &names.target),
        ResourceConstraint::Eq(uid) | ResourceConstraint::In(uid) => target_name(&uid, names),
        ResourceConstraint::IsIn(ty, uid) => match type_reach(&ty, &names.target) {
            Reach::All => target_name(&uid, names),
            other => other,
        },
    }
}

/// `resource == uid` or `resource in uid` (the same thing: targets have no ancestors).
fn target_name(uid: &EntityUid, names: &Names) -> Reach {
    if uid.type_name() == &names.target {
        Reach::Only(uid.id().unescaped().to_owned())
    } else {
        Reach::Nothing
    }
}

fn type_reach(ty: &EntityTypeName, expected: &EntityTypeName) -> Reach {
    if ty == expected {
        Reach::All
    } else {
        Reach::Nothing
    }
}

fn action_admits(constraint: ActionConstraint, names: &Names) -> bool {
    match constraint {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(uid) => uid == names.action,
        ActionConstraint::In(uids) => uids.contains(&names.action),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedar_policy::PolicyId;

    fn scope(src: &str) -> PolicyScope {
        let policy = Policy::parse(Some(PolicyId::new("p")), src).unwrap();
        PolicyScope::of(&policy, &Names::new())
    }

    fn only(s: &str) -> Reach {
        Reach::Only(s.to_owned())
    }

    #[test]
    fn principal_constraints() {
        let cases = [
            ("principal", Reach::All),
            ("principal is Legate::Workload", Reach::All),
            ("principal is Legate::Issuer", Reach::Nothing),
            (r#"principal in Legate::Issuer::"gh""#, only("gh")),
            (
                r#"principal is Legate::Workload in Legate::Issuer::"gh""#,
                only("gh"),
            ),
            (
                r#"principal is Legate::Target in Legate::Issuer::"gh""#,
                Reach::Nothing,
            ),
            (r#"principal == Legate::Workload::"gh|a|b""#, only("gh")),
            (r#"principal in Legate::Workload::"gh|a""#, only("gh")),
            (r#"principal == Legate::Workload::"nobar""#, Reach::Nothing),
            (r#"principal == Legate::Issuer::"gh""#, Reach::Nothing),
            (r#"principal in Legate::Target::"x""#, Reach::Nothing),
        ];
        for (principal, reach) in cases {
            let s = scope(&format!("permit({principal}, action, resource);"));
            assert_eq!(s.trust, reach, "{principal}");
            assert_eq!(s.target, Reach::All);
        }
    }

    #[test]
    fn resource_and_action_constraints() {
        let cases = [
            ("resource", Reach::All),
            ("resource is Legate::Target", Reach::All),
            ("resource is Legate::Workload", Reach::Nothing),
            (r#"resource == Legate::Target::"x""#, only("x")),
            (r#"resource in Legate::Target::"x""#, only("x")),
            (
                r#"resource is Legate::Target in Legate::Target::"x""#,
                only("x"),
            ),
            (r#"resource == Legate::Issuer::"x""#, Reach::Nothing),
        ];
        for (resource, reach) in cases {
            let s = scope(&format!("permit(principal, action, {resource});"));
            assert_eq!(s.target, reach, "{resource}");
        }
        assert!(scope("permit(principal, action, resource);").action);
        assert!(
            scope(r#"permit(principal, action == Legate::Action::"exchange", resource);"#).action
        );
        assert!(
            scope(
                r#"permit(principal, action in [Legate::Action::"x", Legate::Action::"exchange"], resource);"#
            )
            .action
        );
        assert!(!scope(r#"permit(principal, action == Legate::Action::"x", resource);"#).action);
    }

    #[test]
    fn applies() {
        let s = scope(
            r#"permit(principal in Legate::Issuer::"gh", action, resource == Legate::Target::"x");"#,
        );
        assert!(s.applies("gh", "x"));
        assert!(!s.applies("gl", "x"));
        assert!(!s.applies("gh", "y"));
        assert!(s.can_apply());
        let never = scope(r#"permit(principal == Legate::Issuer::"gh", action, resource);"#);
        assert!(!never.can_apply());
        assert!(!never.applies("gh", "x"));
    }
}
