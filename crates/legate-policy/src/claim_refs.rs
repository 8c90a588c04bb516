//! Load-time check that policies only name claims the schema declares.
//!
//! Strict validation alone misses the idiomatic form. `Claims` is a closed record, so for an
//! undeclared `foo` the validator types `principal.claims has foo` as `False` and does not
//! look further: `principal.claims has foo && principal.claims.foo == "x"` validates (with at
//! most an "impossible policy" warning). At run time, though, entities are built without
//! the schema, so the same test is true for a token carrying `foo`: the policy would behave
//! unlike what was validated. This module walks each policy's JSON form and reports every
//! `has` test and attribute access below `principal.claims` that the schema does not declare.
//!
//! The same walk tells which top-level claims a policy can read ([`claims_read`]): the
//! engine converts only those claims to Cedar for the policies it evaluates.

use std::collections::{BTreeMap, BTreeSet};

use cedar_policy::{Policy, SchemaFragment};
use serde_json::{Map, Value};

/// The declared structure below `principal.claims`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A record: its declared attributes.
    Record(BTreeMap<String, Shape>),
    /// Anything else (strings, sets, ...): attribute access is the validator's business.
    Leaf,
}

/// Common types nest at most this deep (Cedar rejects cycles; this only bounds the walk).
const MAX_TYPE_DEPTH: usize = 32;

/// The shape of `Legate::Workload`'s `claims` attribute, if the schema declares one.
pub(crate) fn claims_shape(schema_src: &str) -> Option<Shape> {
    let (fragment, _) = SchemaFragment::from_cedarschema_str(schema_src).ok()?;
    let json = fragment.to_json_value().ok()?;
    let namespace = json.get("Legate")?;
    let empty = Map::new();
    let common = namespace
        .get("commonTypes")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let claims = namespace
        .get("entityTypes")?
        .get("Workload")?
        .get("shape")?
        .get("attributes")?
        .get("claims")?;
    Some(shape_of(claims, common, 0))
}

fn shape_of(ty: &Value, common: &Map<String, Value>, depth: usize) -> Shape {
    if depth > MAX_TYPE_DEPTH {
        return Shape::Leaf;
    }
    let kind = ty.get("type").and_then(Value::as_str);
    let referenced = match kind {
        Some("Record") => {
            let attributes = ty.get("attributes").and_then(Value::as_object);
            return Shape::Record(
                attributes
                    .into_iter()
                    .flatten()
                    .map(|(name, ty)| (name.clone(), shape_of(ty, common, depth + 1)))
                    .collect(),
            );
        }
        Some("EntityOrCommon") => ty.get("name").and_then(Value::as_str),
        other => other,
    };
    let definition = referenced
        .map(|name| name.strip_prefix("Legate::").unwrap_or(name))
        .and_then(|name| common.get(name));
    match definition {
        Some(definition) => shape_of(definition, common, depth + 1),
        None => Shape::Leaf,
    }
}

/// A policy in Cedar's JSON form (EST), or why it has none. Cedar renders it by parsing
/// the policy's text again, which costs more than every analysis here together: render
/// each policy once ([`est`]) and hand the result to the `*_in` functions.
pub(crate) type Est = Result<Value, String>;

/// `policy`'s [`Est`].
pub(crate) fn est(policy: &Policy) -> Est {
    policy.to_json().map_err(|e| e.to_string())
}

/// The undeclared claim references of `policy`, rendered as Cedar expressions
/// (`principal.claims.foo`, `principal.claims["kubernetes.io"].bar`), sorted.
#[cfg(test)]
pub(crate) fn undeclared(policy: &Policy, shape: &Shape) -> Result<Vec<String>, String> {
    undeclared_in(&est(policy), shape)
}

/// [`undeclared`] of a rendered policy.
pub(crate) fn undeclared_in(est: &Est, shape: &Shape) -> Result<Vec<String>, String> {
    let est = est.as_ref().map_err(Clone::clone)?;
    let mut found = BTreeSet::new();
    let mut stack = vec![est];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(members) => {
                for op in ["has", "."] {
                    if let Some(path) = members.get(op).and_then(access_path)
                        && let Some(missing) = first_undeclared(shape, &path)
                    {
                        found.insert(render(missing));
                    }
                }
                stack.extend(members.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    Ok(found.into_iter().collect())
}

/// The top-level claims a set of policies can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClaimsRead {
    /// Every claim: some policy uses a `claims` record other than through `.name`,
    /// `["name"]` or `has name` (as a whole value, say), or could not be analysed.
    All,
    /// Only these; any other claim is unreachable from the policies.
    Only(BTreeSet<String>),
}

impl ClaimsRead {
    /// No claim at all (the empty policy set).
    pub(crate) fn none() -> Self {
        Self::Only(BTreeSet::new())
    }

    /// What `self` or `other` reads.
    pub(crate) fn union(&mut self, other: &Self) {
        match (&mut *self, other) {
            (Self::All, _) => {}
            (_, Self::All) => *self = Self::All,
            (Self::Only(mine), Self::Only(theirs)) => mine.extend(theirs.iter().cloned()),
        }
    }
}

/// What any of the given sets reads (nothing, for none).
impl<'a> FromIterator<&'a ClaimsRead> for ClaimsRead {
    fn from_iter<I: IntoIterator<Item = &'a ClaimsRead>>(reads: I) -> Self {
        let mut all = Self::none();
        for read in reads {
            all.union(read);
        }
        all
    }
}

/// The top-level claims `policy` can read.
///
/// Conservative by construction: it looks for the attribute `claims` on *any* expression
/// (not only `principal`, since an entity literal `Legate::Workload::"..."` reaches the
/// same attributes), and every occurrence that is not immediately the left side of an
/// attribute access or `has` test makes the answer [`ClaimsRead::All`].
#[cfg(test)]
pub(crate) fn claims_read(policy: &Policy) -> ClaimsRead {
    claims_read_in(&est(policy))
}

/// [`claims_read`] of a rendered policy.
pub(crate) fn claims_read_in(est: &Est) -> ClaimsRead {
    let Ok(est) = est else {
        return ClaimsRead::All;
    };
    let mut names = BTreeSet::new();
    // Every `.claims` access, and those consumed by an access or test of one claim.
    let (mut claims_nodes, mut consumed) = (0usize, 0usize);
    let mut stack = vec![est];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(members) => {
                for op in ["has", "."] {
                    let Some(node) = members.get(op) else {
                        continue;
                    };
                    if op == "." && node.get("attr").and_then(Value::as_str) == Some("claims") {
                        claims_nodes += 1;
                    }
                    let left_is_claims = node
                        .get("left")
                        .and_then(|left| left.get("."))
                        .and_then(|access| access.get("attr"))
                        .and_then(Value::as_str)
                        == Some("claims");
                    if !left_is_claims {
                        continue;
                    }
                    // `e has a.b` gives `"attr": ["a", "b"]`: `a` is the claim.
                    let claim = match node.get("attr") {
                        Some(Value::String(attr)) => Some(attr),
                        Some(Value::Array(attrs)) => match attrs.first() {
                            Some(Value::String(attr)) => Some(attr),
                            _ => None,
                        },
                        _ => None,
                    };
                    let Some(claim) = claim else {
                        return ClaimsRead::All;
                    };
                    names.insert(claim.clone());
                    consumed += 1;
                }
                stack.extend(members.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    if claims_nodes == consumed {
        ClaimsRead::Only(names)
    } else {
        ClaimsRead::All
    }
}

/// Whether `policy` can read `context.source_ip`.
///
/// Conservative by construction: every use of the variable `context` must be the left
/// side of an attribute access or `has` test of *another* context attribute for the
/// answer to be `false`; `context` used whole (or a policy that cannot be rendered as
/// JSON) counts as reading it. The server refuses an exchange whose client address is
/// unknown when any policy that can apply reads it, because Cedar skips a policy that
/// errs, which would silently drop an IP guardrail written as a `forbid`.
#[cfg(test)]
pub(crate) fn reads_source_ip(policy: &Policy) -> bool {
    reads_source_ip_in(&est(policy))
}

/// [`reads_source_ip`] of a rendered policy.
pub(crate) fn reads_source_ip_in(est: &Est) -> bool {
    let Ok(est) = est else {
        return true;
    };
    let (mut context_vars, mut other_attrs) = (0usize, 0usize);
    let mut stack = vec![est];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(members) => {
                if members.get("Var").and_then(Value::as_str) == Some("context") {
                    context_vars += 1;
                }
                for op in ["has", "."] {
                    let Some(node) = members.get(op) else {
                        continue;
                    };
                    let left_is_context = node
                        .get("left")
                        .and_then(|left| left.get("Var"))
                        .and_then(Value::as_str)
                        == Some("context");
                    if !left_is_context {
                        continue;
                    }
                    let attr = match node.get("attr") {
                        Some(Value::String(attr)) => Some(attr.as_str()),
                        Some(Value::Array(attrs)) => attrs.first().and_then(Value::as_str),
                        _ => None,
                    };
                    match attr {
                        Some(attr) if attr != "source_ip" => other_attrs += 1,
                        _ => return true,
                    }
                }
                stack.extend(members.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    context_vars != other_attrs
}

/// For a `has` / `.` node `{"left": E, "attr": a}` where `E` is `principal.claims.p...`,
/// the path below `principal.claims`: `[p..., a]`. (`e has a.b` gives `"attr": ["a", "b"]`.)
fn access_path(node: &Value) -> Option<Vec<&str>> {
    let mut path: Vec<&str> = match node.get("attr")? {
        Value::String(attr) => vec![attr.as_str()],
        Value::Array(attrs) => attrs.iter().rev().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    let mut current = node.get("left")?;
    loop {
        let access = current.get(".")?;
        let attr = access.get("attr")?.as_str()?;
        let left = access.get("left")?;
        if left.get("Var").and_then(Value::as_str) == Some("principal") {
            if attr != "claims" {
                return None;
            }
            path.reverse();
            return Some(path);
        }
        path.push(attr);
        current = left;
    }
}

/// The shortest prefix of `path` that the shape does not declare.
fn first_undeclared<'p>(shape: &Shape, path: &[&'p str]) -> Option<Vec<&'p str>> {
    let mut current = shape;
    for (depth, segment) in path.iter().enumerate() {
        match current {
            Shape::Record(attributes) => match attributes.get(*segment) {
                Some(next) => current = next,
                None => return Some(path.iter().take(depth + 1).copied().collect()),
            },
            Shape::Leaf => return None,
        }
    }
    None
}

fn render(path: Vec<&str>) -> String {
    let mut out = String::from("principal.claims");
    for segment in path {
        let plain = segment.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if plain {
            out.push('.');
            out.push_str(segment);
        } else {
            out.push_str(&format!("[{segment:?}]"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(condition: &str) -> Vec<String> {
        let shape = claims_shape(crate::BUNDLED_SCHEMA).unwrap();
        let policy: Policy = format!("permit(principal, action, resource) when {{ {condition} }};")
            .parse()
            .unwrap();
        undeclared(&policy, &shape).unwrap()
    }

    #[test]
    fn bundled_claims_shape() {
        let Some(Shape::Record(claims)) = claims_shape(crate::BUNDLED_SCHEMA) else {
            panic!("no claims record")
        };
        assert_eq!(claims.get("ref"), Some(&Shape::Leaf));
        let Some(Shape::Record(k8s)) = claims.get("kubernetes.io") else {
            panic!("no kubernetes.io record")
        };
        assert!(
            matches!(k8s.get("serviceaccount"), Some(Shape::Record(sa)) if sa.contains_key("name"))
        );
        assert_eq!(claims_shape("namespace Other { entity X; }"), None);
    }

    #[test]
    fn finds_undeclared_claims_wherever_they_are() {
        assert_eq!(
            check(r#"principal.claims has foo && principal.claims.foo == "x""#),
            ["principal.claims.foo"]
        );
        assert_eq!(
            check(r#"context.requested_lifetime > 5 || principal.claims has "a b""#),
            [r#"principal.claims["a b"]"#]
        );
        assert_eq!(
            check(
                r#"principal.claims has "kubernetes.io" &&
                   principal.claims["kubernetes.io"] has serviceaccount &&
                   principal.claims["kubernetes.io"].serviceaccount has nope"#
            ),
            [r#"principal.claims["kubernetes.io"].serviceaccount.nope"#]
        );
        assert_eq!(
            check(r#"if principal.claims has bar.baz then true else false"#),
            ["principal.claims.bar"]
        );
        assert_eq!(
            check(r#"principal.claims["kubernetes.io"] has pod.nope"#),
            [r#"principal.claims["kubernetes.io"].pod.nope"#]
        );
    }

    fn read(condition: &str) -> ClaimsRead {
        let policy: Policy = format!("permit(principal, action, resource) when {{ {condition} }};")
            .parse()
            .unwrap();
        claims_read(&policy)
    }

    fn only(names: &[&str]) -> ClaimsRead {
        ClaimsRead::Only(names.iter().map(|n| (*n).to_owned()).collect())
    }

    #[test]
    fn claims_read_names_each_claim_accessed_or_tested() {
        assert_eq!(read("true"), ClaimsRead::none());
        assert_eq!(
            read(r#"principal.subject == "s" && resource.hasTag("env") && principal has claims"#),
            ClaimsRead::none()
        );
        assert_eq!(
            read(r#"principal.claims has ref && principal.claims.ref == "x""#),
            only(&["ref"])
        );
        assert_eq!(
            read(
                r#"principal.claims has "kubernetes.io" &&
                   principal.claims["kubernetes.io"] has serviceaccount &&
                   principal.claims["kubernetes.io"].serviceaccount.name == "a" &&
                   principal.claims.sub like "system:*""#
            ),
            only(&["kubernetes.io", "sub"])
        );
        // `has a.b`: the claim is `a`.
        assert_eq!(read("principal.claims has env.region"), only(&["env"]));
        // An entity literal reaches the same attributes as `principal`.
        assert_eq!(
            read(r#"Legate::Workload::"t|s".claims has aud"#),
            only(&["aud"])
        );
        // A claim that is itself called `claims`: over-approximated, never missed.
        let ClaimsRead::Only(names) = read("principal.claims.claims.x == 1") else {
            panic!("expected a finite set")
        };
        assert!(names.contains("claims"), "{names:?}");
    }

    /// Stops a policy from seeing a pruned claims record: any use of `claims` other than
    /// reading one named claim keeps every claim.
    #[test]
    fn claims_read_is_all_when_the_record_is_used_whole() {
        for condition in [
            "principal.claims == principal.claims",
            r#"principal.claims == {"sub": "s"}"#,
            r#"[principal.claims].contains({"sub": "s"})"#,
            r#"(if context.has_actor then principal.claims else principal.claims).sub == "s""#,
            r#"Legate::Workload::"t|s".claims == principal.claims"#,
            r#"principal.claims has sub && principal.claims == {"sub": "s"}"#,
        ] {
            assert_eq!(read(condition), ClaimsRead::All, "{condition}");
        }
    }

    fn reads_ip(condition: &str) -> bool {
        let policy: Policy = format!("permit(principal, action, resource) when {{ {condition} }};")
            .parse()
            .unwrap();
        reads_source_ip(&policy)
    }

    #[test]
    fn source_ip_reads_are_found_and_other_context_reads_are_not() {
        assert!(reads_ip(r#"context.source_ip.isInRange(ip("10.0.0.0/8"))"#));
        assert!(reads_ip("context has source_ip"));
        assert!(reads_ip(r#"context["source_ip"].isLoopback()"#));
        // `context` used whole could reach it.
        assert!(reads_ip("context == context"));
        assert!(!reads_ip("context.requested_lifetime > 60"));
        assert!(!reads_ip("context.utc_hour < 9 && context has has_actor"));
        assert!(!reads_ip("true"));
    }

    #[test]
    fn claims_read_union() {
        let mut read = only(&["a"]);
        read.union(&only(&["b"]));
        assert_eq!(read, only(&["a", "b"]));
        read.union(&ClaimsRead::All);
        assert_eq!(read, ClaimsRead::All);
        read.union(&only(&["c"]));
        assert_eq!(read, ClaimsRead::All);
        let collected: ClaimsRead = [only(&["a"]), only(&["b"])].iter().collect();
        assert_eq!(collected, only(&["a", "b"]));
        assert_eq!(
            std::iter::empty().collect::<ClaimsRead>(),
            ClaimsRead::none()
        );
    }

    #[test]
    fn declared_claims_and_other_attributes_pass() {
        for condition in [
            r#"principal.claims has ref && principal.claims.ref == "x""#,
            r#"principal.claims has "kubernetes.io" && principal.claims["kubernetes.io"] has namespace"#,
            r#"principal has claims && principal.subject == "s" && context has source_ip"#,
            r#"resource.hasTag("anything")"#,
        ] {
            assert_eq!(check(condition), Vec::<String>::new(), "{condition}");
        }
    }
}
