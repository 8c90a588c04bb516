//! Shadow mode: a policy annotated `@mode("shadow")` is evaluated and its would-be effect
//! reported, without changing any decision — so a new policy can be watched before it is
//! enforced.
//!
//! At load time shadow policies are kept out of the enforcing slices and put in parallel
//! shadow slices (the same (trust, target) slicing). A request whose slice has shadow
//! policies evaluates them after the enforcing decision is made, against the same
//! entities; a slice without shadow policies costs nothing more.
//!
//! What a [`ShadowOutcome`] says, precisely: a shadow policy is reported for a request
//! when its conditions were satisfied (it *matched*) or its evaluation erred; otherwise it
//! would not have changed anything and is not reported. [`Would`] is the decision the
//! enforcing set would reach if that one policy were enforced alongside it:
//!
//! - a matched shadow `forbid`: [`Would::Deny`];
//! - a matched shadow `permit`: [`Would::Allow`], unless the enforcing set denies through
//!   a `forbid` (satisfied, or failing closed), which a permit cannot override:
//!   [`Would::Deny`];
//! - a shadow policy that errs: [`Would::Erred`] (enforced, an erring `forbid` would fail
//!   closed and an erring `permit` would grant nothing).
//!
//! Requests decided before Cedar runs (unknown trust or target, an unbuildable request,
//! an unknown client address an enforcing policy reads) evaluate no shadow policy. When
//! the client address is unknown and a shadow policy of the slice reads
//! `context.source_ip`, every shadow policy of the slice is reported [`Would::Erred`]:
//! the enforcing decision is unaffected.
//!
//! Any other `@mode` value is a load error ([`crate::PolicyLoadError::Mode`]).

use std::fmt;

use cedar_policy::{AuthorizationError, Authorizer, Effect, Entities, PolicySet, Request};

use crate::engine::{Decision, DecisionReason};
use crate::load::PolicyLoadError;

/// The annotation that sets a policy's mode.
pub const MODE_ANNOTATION: &str = "mode";
/// The one mode besides the default (enforced): evaluated and reported, never deciding.
pub const SHADOW_MODE: &str = "shadow";

/// What a shadow policy would have done, had it been enforced. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Would {
    /// The enforcing set plus this policy would allow.
    Allow,
    /// The enforcing set plus this policy would deny.
    Deny,
    /// The policy failed to evaluate.
    Erred,
}

/// One shadow policy's would-be effect on one request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShadowOutcome {
    /// The shadow policy.
    pub policy_id: String,
    /// `permit` or `forbid`.
    pub effect: ShadowEffect,
    /// What it would have done.
    pub would: Would,
    /// Why it erred ([`Would::Erred`] only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A shadow policy's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShadowEffect {
    /// A `permit`.
    Permit,
    /// A `forbid`.
    Forbid,
}

impl Would {
    /// A stable identifier for logs and counters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "would_allow",
            Self::Deny => "would_deny",
            Self::Erred => "erred",
        }
    }
}

impl fmt::Display for Would {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `policy` is in shadow mode: `false` without `@mode`, `true` for
/// `@mode("shadow")`, an error naming the file, line and policy otherwise.
pub(crate) fn is_shadow(
    policy: &cedar_policy::Policy,
    file: &str,
    text: &str,
) -> Result<bool, PolicyLoadError> {
    match policy.annotation(MODE_ANNOTATION) {
        None => Ok(false),
        Some(SHADOW_MODE) => Ok(true),
        Some(other) => Err(PolicyLoadError::Mode {
            file: file.to_owned(),
            line: line_of_mode(text, other),
            policy_id: AsRef::<str>::as_ref(policy.id()).to_owned(),
            value: other.to_owned(),
        }),
    }
}

/// The ids of the shadow policies of `parsed`; an error for any other `@mode`.
pub(crate) fn shadow_ids(
    parsed: &crate::load::Parsed,
    sources: &[(String, String)],
) -> Result<std::collections::HashSet<String>, PolicyLoadError> {
    let mut ids = std::collections::HashSet::new();
    for policy in parsed.set.policies() {
        if policy.annotation(MODE_ANNOTATION).is_none() {
            continue;
        }
        let id: &str = policy.id().as_ref();
        let file = parsed.files.get(id).map_or("", String::as_str);
        let text = sources
            .iter()
            .find(|(name, _)| name == file)
            .map_or("", |(_, text)| text.as_str());
        if is_shadow(policy, file, text)? {
            ids.insert(id.to_owned());
        }
    }
    Ok(ids)
}

/// The line of the first `@mode("<value>")` in `text`, if written that way.
fn line_of_mode(text: &str, value: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = text.get(from..)?.find("@mode") {
        let at = from + found;
        let rest = text.get(at + "@mode".len()..)?;
        let quoted = format!("\"{value}\"");
        if rest
            .trim_start()
            .strip_prefix('(')
            .is_some_and(|r| r.trim_start().starts_with(&quoted))
        {
            return Some(text.get(..at)?.matches('\n').count() + 1);
        }
        from = at + 1;
    }
    None
}

/// The shadow policies of one (trust, target) slice, split by effect: evaluated apart,
/// each set's Cedar answer names exactly its satisfied policies.
#[derive(Debug)]
pub(crate) struct ShadowSlice {
    pub(crate) permits: PolicySet,
    pub(crate) forbids: PolicySet,
    /// Whether any of them can read `context.source_ip`.
    pub(crate) reads_source_ip: bool,
}

impl ShadowSlice {
    /// Splits `policies` (all shadow) by effect; `None` when there are none.
    pub(crate) fn new<'p>(
        policies: impl Iterator<Item = &'p cedar_policy::Policy>,
        reads_source_ip: bool,
    ) -> Result<Option<Self>, PolicyLoadError> {
        let (forbids, permits): (Vec<_>, Vec<_>) = policies
            .cloned()
            .partition(|p| p.effect() == Effect::Forbid);
        if forbids.is_empty() && permits.is_empty() {
            return Ok(None);
        }
        let set = |policies: Vec<cedar_policy::Policy>| {
            PolicySet::from_policies(policies).map_err(|e| PolicyLoadError::Slice(e.to_string()))
        };
        Ok(Some(Self {
            permits: set(permits)?,
            forbids: set(forbids)?,
            reads_source_ip,
        }))
    }

    /// Every shadow policy reported erred with `error` (nothing was evaluated).
    pub(crate) fn all_erred(&self, error: &str) -> Vec<ShadowOutcome> {
        let mut out: Vec<ShadowOutcome> = self
            .permits
            .policies()
            .map(|p| (p, ShadowEffect::Permit))
            .chain(self.forbids.policies().map(|p| (p, ShadowEffect::Forbid)))
            .map(|(p, effect)| ShadowOutcome {
                policy_id: AsRef::<str>::as_ref(p.id()).to_owned(),
                effect,
                would: Would::Erred,
                error: Some(error.to_owned()),
            })
            .collect();
        out.sort_unstable_by(|a, b| a.policy_id.cmp(&b.policy_id));
        out
    }

    /// Evaluates the shadow policies on the request the enforcing `decision` was made on.
    pub(crate) fn evaluate(
        &self,
        authorizer: &Authorizer,
        request: &Request,
        entities: &Entities,
        decision: &Decision,
    ) -> Vec<ShadowOutcome> {
        let mut out = Vec::new();
        // A permit cannot override a forbid: with one denying, a matched permit would
        // still deny.
        let permit_would = match decision.reason {
            DecisionReason::ForbiddenByPolicy | DecisionReason::ForbidFailed => Would::Deny,
            _ => Would::Allow,
        };
        for (set, effect, would) in [
            (&self.permits, ShadowEffect::Permit, permit_would),
            (&self.forbids, ShadowEffect::Forbid, Would::Deny),
        ] {
            if set.is_empty() {
                continue;
            }
            let response = authorizer.is_authorized(request, set, entities);
            // INVARIANT: each set holds one effect only, so Cedar's reasons are exactly
            // its satisfied policies (of a permit set when it allows, of a forbid set
            // when it denies; empty otherwise).
            for id in response.diagnostics().reason() {
                out.push(ShadowOutcome {
                    policy_id: AsRef::<str>::as_ref(id).to_owned(),
                    effect,
                    would,
                    error: None,
                });
            }
            for error in response.diagnostics().errors() {
                let AuthorizationError::PolicyEvaluationError(e) = error;
                out.push(ShadowOutcome {
                    policy_id: AsRef::<str>::as_ref(e.policy_id()).to_owned(),
                    effect,
                    would: Would::Erred,
                    error: Some(error.to_string()),
                });
            }
        }
        out.sort_unstable_by(|a, b| a.policy_id.cmp(&b.policy_id));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_line_is_found_however_spaced() {
        let text = "permit(principal, action, resource);\n\n@id(\"x\")\n@mode ( \"enforce\")\npermit(principal, action, resource);";
        assert_eq!(line_of_mode(text, "enforce"), Some(4));
        assert_eq!(line_of_mode(text, "other"), None);
        assert_eq!(line_of_mode("@mode(\"a\")", "a"), Some(1));
    }
}
