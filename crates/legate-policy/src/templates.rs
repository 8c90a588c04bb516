//! Issuer templates: the claim model of each kind of upstream issuer Legate knows.
//!
//! A `[[trust]]` names its template (`template = "github-actions"`); the policy lints
//! ([`crate::lint`]) then know which claims that issuer emits, which of them identify a
//! workload for good (its *stable identifiers*), which are names that can change hands
//! (*mutable names*), and how its structured claims split into segments, so that a
//! `like` pattern can be judged.
//!
//! Each template also ships a recommended trust entry and policy, with test cases
//! (`policies/templates/<id>.{toml,cedar,cases}`), run by the crate's tests. The claim
//! facts come from the issuers' documentation (see `docs/issuers.md`).
//!
//! What it does not do: templates never change how a token is verified or evaluated;
//! they only inform the lints and the documentation.

/// How an identifier-like claim may be matched with a `like` pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wildcards {
    /// Never: the value is one opaque identity (a numeric id, a SPIFFE ID, a role ARN);
    /// any wildcard stands for other identities.
    Never,
    /// Each wildcard must stand for whole segments (immediately after one of the
    /// separators, followed by one or the end of the pattern), and the literal text before
    /// the first wildcard must contain at least `count` of `identity_end`: the part of the
    /// value that names the identity is then spelled out in full.
    ///
    /// GitHub's `sub`, `repo:acme/app:ref:refs/heads/main`, separators `:` and `/`, needs two
    /// `:` before a wildcard: `repo:acme/app:*` is safe, `repo:acme/app*` and `repo:*` not.
    AfterIdentity {
        separators: &'static [char],
        identity_end: char,
        count: usize,
    },
}

/// A claim with segments, and how a pattern may match it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Structured {
    /// The claim's path below `principal.claims` (`["sub"]`, `["kubernetes.io", "pod", "name"]`).
    pub path: &'static [&'static str],
    /// How patterns on it are judged.
    pub wildcards: Wildcards,
    /// Whether a (safe) pattern on it binds the workload's identity.
    pub identifies: bool,
}

/// One issuer template.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    /// The name a `[[trust]]` uses: `template = "<id>"`.
    pub id: &'static str,
    /// Other names accepted for it (`eks` for `kubernetes`).
    pub aliases: &'static [&'static str],
    /// A human name.
    pub title: &'static str,
    /// The claims the issuer emits (top level), with their JSON types.
    pub claims: &'static [(&'static str, &'static str)],
    /// The subject's format, for people.
    pub subject_format: &'static str,
    /// Stable identifiers: claim paths that identify a workload (or its owner) and are
    /// never reused. `sub` always counts too (see [`crate::lint`]).
    pub stable_ids: &'static [&'static [&'static str]],
    /// Mutable names and the stable identifier to bind with (or instead of) them.
    pub mutable_names: &'static [(&'static str, &'static str)],
    /// Structured claims, for `like` patterns. `sub` is always listed.
    pub structured: &'static [Structured],
    /// The trust name used by the recommended entry, policy and cases.
    pub example_trust: &'static str,
    /// The recommended `[[trust]]` entry (TOML).
    pub trust_entry: &'static str,
    /// The recommended policy (Cedar).
    pub policy: &'static str,
    /// Test cases of the recommended policy (see [`crate::cases`]).
    pub cases: &'static str,
}

macro_rules! claims {
    ($($name:literal : $ty:literal),* $(,)?) => {
        &[
            ("iss", "string"), ("sub", "string"), ("aud", "string or array of strings"),
            ("exp", "number"), ("iat", "number"), ("nbf", "number"), ("jti", "string"),
            $(($name, $ty)),*
        ]
    };
}

macro_rules! files {
    ($id:literal) => {
        (
            include_str!(concat!("../../../policies/templates/", $id, ".toml")),
            include_str!(concat!("../../../policies/templates/", $id, ".cedar")),
            include_str!(concat!("../../../policies/templates/", $id, ".cases")),
        )
    };
}

const fn template(
    head: (
        &'static str,
        &'static [&'static str],
        &'static str,
        &'static str,
    ),
    claims: &'static [(&'static str, &'static str)],
    stable_ids: &'static [&'static [&'static str]],
    mutable_names: &'static [(&'static str, &'static str)],
    structured: &'static [Structured],
    files: (&'static str, &'static str, &'static str),
) -> Template {
    Template {
        id: head.0,
        aliases: head.1,
        title: head.2,
        example_trust: head.3,
        claims,
        subject_format: "",
        stable_ids,
        mutable_names,
        structured,
        trust_entry: files.0,
        policy: files.1,
        cases: files.2,
    }
}

const fn with_subject(mut t: Template, format: &'static str) -> Template {
    t.subject_format = format;
    t
}

const COLON_SLASH: &[char] = &[':', '/'];
const SLASH: &[char] = &['/'];
const SLASH_AT: &[char] = &['/', '@'];

/// Every template, sorted by id.
pub const TEMPLATES: &[Template] = &[
    with_subject(
        template(
            (
                "aws-outbound",
                &[],
                "AWS outbound identity federation (sts:GetWebIdentityToken)",
                "aws",
            ),
            claims!["https://sts.amazonaws.com/": "object (aws_account, source_region, org_id, ou_path, principal_tags, request_tags, ec2/lambda source ARNs)"],
            &[],
            &[],
            &[Structured {
                path: &["sub"],
                wildcards: Wildcards::Never,
                identifies: true,
            }],
            files!("aws-outbound"),
        ),
        "the IAM principal's ARN, `arn:aws:iam::<account>:role/<name>` (separators `:` and `/`)",
    ),
    with_subject(
        template(
            (
                "azure-managed-identity",
                &[],
                "Azure managed identity (Entra ID access token)",
                "azure",
            ),
            claims![
                "oid": "string (object id)", "tid": "string (tenant id)", "appid": "string",
                "azp": "string", "idtyp": "string", "xms_mirid": "string (resource id)",
                "ver": "string", "uti": "string", "rh": "string", "aio": "string",
                "idp": "string", "appidacr": "string", "azpacr": "string",
            ],
            &[&["oid"]],
            &[("xms_mirid", "oid")],
            &[Structured {
                path: &["sub"],
                wildcards: Wildcards::Never,
                identifies: true,
            }],
            files!("azure-managed-identity"),
        ),
        "the managed identity's service principal object id, a GUID (no segments)",
    ),
    with_subject(
        template(
            ("github-actions", &[], "GitHub Actions", "github"),
            claims![
                "actor": "string", "actor_id": "string", "base_ref": "string",
                "check_run_id": "string", "enterprise": "string", "enterprise_id": "string",
                "environment": "string", "environment_node_id": "string",
                "event_name": "string", "head_ref": "string", "job_workflow_ref": "string",
                "job_workflow_sha": "string", "ref": "string", "ref_type": "string",
                "ref_protected": "string (\"true\"/\"false\")", "repository": "string",
                "repository_id": "string", "repository_owner": "string",
                "repository_owner_id": "string", "repository_visibility": "string",
                "run_id": "string", "run_number": "string", "run_attempt": "string",
                "runner_environment": "string", "sha": "string", "workflow": "string",
                "workflow_ref": "string", "workflow_sha": "string",
            ],
            &[&["repository_id"], &["repository_owner_id"]],
            &[
                ("repository", "repository_id"),
                ("repository_owner", "repository_owner_id"),
            ],
            &[
                Structured {
                    path: &["sub"],
                    wildcards: Wildcards::AfterIdentity {
                        separators: COLON_SLASH,
                        identity_end: ':',
                        count: 2,
                    },
                    identifies: true,
                },
                Structured {
                    path: &["repository"],
                    wildcards: Wildcards::Never,
                    identifies: false,
                },
                Structured {
                    path: &["ref"],
                    wildcards: Wildcards::AfterIdentity {
                        separators: SLASH,
                        identity_end: '/',
                        count: 0,
                    },
                    identifies: false,
                },
                Structured {
                    path: &["job_workflow_ref"],
                    wildcards: Wildcards::AfterIdentity {
                        separators: SLASH_AT,
                        identity_end: '/',
                        count: 2,
                    },
                    identifies: false,
                },
                Structured {
                    path: &["workflow_ref"],
                    wildcards: Wildcards::AfterIdentity {
                        separators: SLASH_AT,
                        identity_end: '/',
                        count: 2,
                    },
                    identifies: false,
                },
            ],
            files!("github-actions"),
        ),
        "`repo:<owner>/<repo>:ref:<ref>` | `:environment:<name>` | `:pull_request` (separators `:` and `/`; \
         the immutable form spells `<owner>@<owner id>/<repo>@<repo id>`)",
    ),
    with_subject(
        template(
            ("gitlab-ci", &[], "GitLab CI/CD id_tokens", "gitlab"),
            claims![
                "namespace_id": "string", "namespace_path": "string", "project_id": "string",
                "project_path": "string", "user_id": "string", "user_login": "string",
                "user_email": "string", "user_access_level": "string",
                "user_identities": "array of objects", "pipeline_id": "string",
                "pipeline_source": "string", "job_id": "string", "ref": "string",
                "ref_type": "string", "ref_path": "string",
                "ref_protected": "string (\"true\"/\"false\")", "environment": "string",
                "environment_protected": "string (\"true\"/\"false\")",
                "environment_action": "string", "deployment_tier": "string",
                "runner_id": "number", "runner_environment": "string", "sha": "string",
                "ci_config_ref_uri": "string", "ci_config_sha": "string",
                "project_visibility": "string", "groups_direct": "array of strings",
            ],
            &[&["project_id"], &["namespace_id"]],
            &[
                ("project_path", "project_id"),
                ("namespace_path", "namespace_id"),
            ],
            &[
                Structured {
                    path: &["sub"],
                    wildcards: Wildcards::AfterIdentity {
                        separators: COLON_SLASH,
                        identity_end: ':',
                        count: 2,
                    },
                    identifies: true,
                },
                Structured {
                    path: &["project_path"],
                    wildcards: Wildcards::Never,
                    identifies: false,
                },
                Structured {
                    path: &["namespace_path"],
                    wildcards: Wildcards::Never,
                    identifies: false,
                },
                Structured {
                    path: &["ref_path"],
                    wildcards: Wildcards::AfterIdentity {
                        separators: SLASH,
                        identity_end: '/',
                        count: 0,
                    },
                    identifies: false,
                },
                Structured {
                    path: &["ci_config_ref_uri"],
                    wildcards: Wildcards::AfterIdentity {
                        separators: SLASH_AT,
                        identity_end: '@',
                        count: 1,
                    },
                    identifies: false,
                },
            ],
            files!("gitlab-ci"),
        ),
        "`project_path:<group>/<project>:ref_type:<branch|tag>:ref:<name>` (separators `:` and `/`; \
         groups nest, so the path has any number of `/`)",
    ),
    with_subject(
        template(
            (
                "google-id-token",
                &[],
                "Google ID tokens (service accounts, metadata server)",
                "google",
            ),
            claims![
                "azp": "string", "email": "string", "email_verified": "boolean",
                "google": "object (compute_engine: project_id, zone, instance_id, ...)",
            ],
            &[],
            &[("email", "sub")],
            &[Structured {
                path: &["sub"],
                wildcards: Wildcards::Never,
                identifies: true,
            }],
            files!("google-id-token"),
        ),
        "the service account's unique numeric id (no segments)",
    ),
    with_subject(
        template(
            (
                "kubernetes",
                &["eks", "gke", "aks"],
                "Kubernetes projected service account tokens (EKS, GKE, AKS)",
                "kubernetes",
            ),
            claims!["kubernetes.io": "object (namespace, serviceaccount{name,uid}, pod{name,uid}, node{name,uid}, warnafter)"],
            &[&["kubernetes.io", "serviceaccount", "uid"]],
            &[],
            &[Structured {
                path: &["sub"],
                wildcards: Wildcards::AfterIdentity {
                    separators: &[':'],
                    identity_end: ':',
                    count: 4,
                },
                identifies: true,
            }],
            files!("kubernetes"),
        ),
        "`system:serviceaccount:<namespace>:<name>` (separator `:`)",
    ),
    with_subject(
        template(
            (
                "legate-demo",
                &[],
                "Legate's development-mode demo issuer",
                "demo",
            ),
            claims!["env": "string"],
            &[],
            &[],
            &[Structured {
                path: &["sub"],
                wildcards: Wildcards::AfterIdentity {
                    separators: &[':'],
                    identity_end: ':',
                    count: 2,
                },
                identifies: true,
            }],
            files!("legate-demo"),
        ),
        "whatever the caller of `POST /demo/token` asks for; by convention \
         `workload:<name>[:<instance>]` (separator `:`)",
    ),
    with_subject(
        template(
            (
                "spiffe-jwt-svid",
                &[],
                "SPIFFE JWT-SVIDs (SPIRE, Teleport)",
                "spiffe",
            ),
            claims![],
            &[],
            &[],
            &[Structured {
                path: &["sub"],
                wildcards: Wildcards::Never,
                identifies: true,
            }],
            files!("spiffe-jwt-svid"),
        ),
        "the SPIFFE ID, `spiffe://<trust domain>/<path>` (one identity: no wildcards)",
    ),
];

/// The structure Legate assumes for `sub` when a trust names no template: wildcards must
/// stand for whole `:`/`/` segments and may not start the pattern; a pattern never binds.
pub const GENERIC_SUBJECT: Wildcards = Wildcards::AfterIdentity {
    separators: COLON_SLASH,
    identity_end: ':',
    count: 1,
};

/// The trusts the bundled example policies (`policies/*.cedar`) are written for, with
/// their templates.
pub const EXAMPLE_TRUSTS: &[(&str, &str)] = &[
    ("demo", "legate-demo"),
    ("github", "github-actions"),
    ("gitlab", "gitlab-ci"),
    ("kubernetes", "kubernetes"),
];

/// The template named `name` (an id or an alias).
pub fn find(name: &str) -> Option<&'static Template> {
    TEMPLATES
        .iter()
        .find(|t| t.id == name || t.aliases.contains(&name))
}

/// Every accepted template name (ids and aliases), sorted, for error messages.
pub fn names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = TEMPLATES
        .iter()
        .flat_map(|t| std::iter::once(t.id).chain(t.aliases.iter().copied()))
        .collect();
    names.sort_unstable();
    names
}

impl Template {
    /// Whether the issuer emits the top-level claim `name`.
    pub fn emits(&self, name: &str) -> bool {
        self.claims.iter().any(|(claim, _)| *claim == name)
    }

    /// How patterns on the claim at `path` are judged, if it is structured.
    pub fn structure(&self, path: &[String]) -> Option<&Structured> {
        self.structured.iter().find(|s| same_path(s.path, path))
    }

    /// Whether `path` is a stable identifier (or `sub`).
    pub fn is_stable_id(&self, path: &[String]) -> bool {
        same_path(&["sub"], path) || self.stable_ids.iter().any(|id| same_path(id, path))
    }
}

pub(crate) fn same_path(a: &[&str], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| *x == y)
}

/// Every stable identifier any template declares: what counts as one for a trust that
/// names no template.
pub(crate) fn any_stable_id(path: &[String]) -> bool {
    TEMPLATES.iter().any(|t| t.is_stable_id(path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
    use std::collections::BTreeMap;

    use super::*;
    use crate::{LoadOptions, PolicyEngine, TargetInfo, run_cases};

    #[test]
    fn templates_are_sorted_unique_and_found_by_alias() {
        let ids: Vec<&str> = TEMPLATES.iter().map(|t| t.id).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(ids, sorted);
        assert_eq!(find("eks").unwrap().id, "kubernetes");
        assert_eq!(find("github-actions").unwrap().id, "github-actions");
        assert!(find("github").is_none());
        assert!(names().contains(&"aks"));
        for t in TEMPLATES {
            assert!(t.emits("iss") && t.emits("sub"), "{}", t.id);
            assert!(!t.subject_format.is_empty(), "{}", t.id);
            assert!(t.structure(&["sub".to_owned()]).is_some(), "{}", t.id);
            for (name, stable) in t.mutable_names {
                assert!(t.emits(name), "{}: {name}", t.id);
                assert!(
                    t.is_stable_id(&[(*stable).to_owned()]),
                    "{}: {stable}",
                    t.id
                );
            }
            for id in t.stable_ids {
                assert!(t.emits(id[0]), "{}: {id:?}", t.id);
            }
        }
    }

    /// Stops the guide from drifting from what is tested: docs/issuers.md shows every
    /// template's trust entry and recommended policy verbatim.
    #[test]
    fn the_issuers_guide_shows_every_template_verbatim() {
        let guide = include_str!("../../../docs/issuers.md");
        for t in TEMPLATES {
            assert!(guide.contains(&format!("\n## {}\n", t.id)), "{}", t.id);
            assert!(guide.contains(t.policy.trim_end()), "{}: policy", t.id);
            assert!(
                guide.contains(t.trust_entry.trim_end()),
                "{}: trust entry",
                t.id
            );
        }
    }

    /// Every template's recommended policy loads with its template (so the lints accept
    /// it) and passes its cases, which include a token from another trust.
    #[test]
    fn every_template_ships_a_recommended_policy_that_passes_its_cases() {
        let target = TargetInfo {
            name: "deploy-api".to_owned(),
            kind: "jwt".to_owned(),
            audience: "https://deploy.example.com".to_owned(),
            labels: BTreeMap::new(),
        };
        for t in TEMPLATES {
            let trusts = [t.example_trust.to_owned(), "other".to_owned()];
            let options = LoadOptions {
                templates: BTreeMap::from([(t.example_trust.to_owned(), t.id.to_owned())]),
            };
            let engine = PolicyEngine::from_sources_with(
                crate::BUNDLED_SCHEMA,
                &[(format!("{}.cedar", t.id), t.policy.to_owned())],
                std::slice::from_ref(&target),
                &trusts,
                &options,
            )
            .unwrap_or_else(|e| panic!("{}: {e}", t.id));
            assert!(
                engine.warnings().is_empty(),
                "{}: {:?}",
                t.id,
                engine.warnings()
            );
            let report = run_cases(&engine, t.cases).unwrap_or_else(|e| panic!("{}: {e}", t.id));
            assert!(
                report.failures.is_empty(),
                "{}: {}",
                t.id,
                report
                    .failures
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            let cases = crate::parse_cases(t.cases).unwrap();
            assert!(
                cases.iter().any(|c| c.expect == crate::Expectation::Allow),
                "{}",
                t.id
            );
            assert!(
                cases
                    .iter()
                    .any(|c| c.trust == "other" && c.expect == crate::Expectation::Deny),
                "{}: no case from another trust",
                t.id
            );
            let entry: toml::Table =
                toml::from_str(t.trust_entry).unwrap_or_else(|e| panic!("{}: {e}", t.id));
            let trust = entry["trust"].as_array().unwrap()[0].as_table().unwrap();
            assert_eq!(trust["template"].as_str(), Some(t.id), "{}", t.id);
            assert_eq!(trust["name"].as_str(), Some(t.example_trust), "{}", t.id);
        }
    }
}
