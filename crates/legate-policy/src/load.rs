//! Reading, parsing and validating the schema and the policy files.
//!
//! Policy ids: a policy's id is its `@id("...")` annotation when present, otherwise
//! `<file name>#<index>` (0-based position in its file). Ids are unique across files.
//!
//! Every policy is validated against the schema in strict mode, and every claim it names
//! (even behind `has`) must be declared; any problem is a load error naming the file, the
//! policy and, where Cedar gives one, the position.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use cedar_policy::{Policy, PolicyId, PolicySet, Schema, ValidationError};

use crate::lint::LintFinding;
use crate::{claim_refs, diag};

/// The schema's file name in a policy directory.
pub const SCHEMA_FILE: &str = "legate.cedarschema";

/// Why the policies could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    /// The policy directory could not be listed.
    #[error("cannot list policy directory `{}`: {source}", dir.display())]
    ReadDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A policy or schema file could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The schema does not parse or is inconsistent.
    #[error("invalid schema `{file}`: {message}")]
    Schema { file: String, message: String },
    /// A policy file does not parse.
    #[error("cannot parse `{file}`: {message}")]
    Parse { file: String, message: String },
    /// A policy file contains a template (a policy with `?principal` or `?resource`).
    #[error("`{file}` contains a template (policy #{index}); templates are not supported")]
    Template { file: String, index: usize },
    /// An `@id` annotation is empty.
    #[error("policy #{index} of `{file}` has an empty `@id` annotation")]
    EmptyId { file: String, index: usize },
    /// Two policies have the same id.
    #[error("policy id `{id}` is used twice: in `{first}` and in `{second}`")]
    DuplicateId {
        id: String,
        first: String,
        second: String,
    },
    /// Policies do not validate against the schema.
    #[error("{} policy validation error(s): {}", .0.len(), join(.0))]
    Validation(Vec<PolicyIssue>),
    /// A trust name is empty or contains `|`.
    #[error("invalid trust name `{0}`: it must be non-empty and must not contain `|`")]
    InvalidTrust(String),
    /// A trust name is listed twice.
    #[error("trust `{0}` is listed twice")]
    DuplicateTrust(String),
    /// A target name is listed twice.
    #[error("target `{0}` is listed twice")]
    DuplicateTarget(String),
    /// A target cannot be represented as a Cedar entity.
    #[error("cannot build the entity of target `{target}`: {message}")]
    TargetEntity { target: String, message: String },
    /// A policy could not be added to a per-(trust, target) slice.
    #[error("internal error while slicing the policies: {0}")]
    Slice(String),
    /// Policies fail a lint (`crate::lint`): each finding names the policy, its file and
    /// line, and a one-line fix.
    #[error("{} policy lint error(s): {}", .0.len(), join(.0))]
    Lint(Vec<LintFinding>),
    /// A trust names a template that does not exist.
    #[error("trust `{trust}` names unknown template `{template}`; known templates: {known}")]
    UnknownTemplate {
        trust: String,
        template: String,
        known: String,
    },
    /// A policy's `@mode` annotation names no mode (the only one is `shadow`).
    #[error(
        "`{file}`{}, policy `{policy_id}`: unknown mode `@mode(\"{value}\")`; the only mode is \
         `shadow` (remove the annotation to enforce the policy)",
        line.map(|l| format!(" line {l}")).unwrap_or_default()
    )]
    Mode {
        /// The file the policy comes from.
        file: String,
        /// The line of the annotation, when found.
        line: Option<usize>,
        /// The policy id.
        policy_id: String,
        /// The annotation's value.
        value: String,
    },
}

/// One validation problem, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyIssue {
    /// The file the policy comes from.
    pub file: String,
    /// The policy id.
    pub policy_id: String,
    /// Cedar's diagnostic, with line and column when Cedar gives a position.
    pub message: String,
}

/// Parsed policies with their final ids.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) set: PolicySet,
    /// Policy id → file name.
    pub(crate) files: BTreeMap<String, String>,
    /// Policy id → position in its file (0-based).
    pub(crate) index: BTreeMap<String, usize>,
}

impl fmt::Display for PolicyIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}`, policy `{}`: {}",
            self.file, self.policy_id, self.message
        )
    }
}

fn join<T: fmt::Display>(issues: &[T]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reads `dir/legate.cedarschema` and `dir/*.cedar`, the latter sorted by file name.
pub(crate) fn read_dir(dir: &Path) -> Result<(String, Vec<(String, String)>), PolicyLoadError> {
    let read = |path: PathBuf| {
        std::fs::read_to_string(&path).map_err(|source| PolicyLoadError::ReadFile { path, source })
    };
    let schema = read(dir.join(SCHEMA_FILE))?;
    let read_dir_err = |source| PolicyLoadError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir_err)? {
        let path = entry.map_err(read_dir_err)?.path();
        if path.extension().is_some_and(|ext| ext == "cedar") && path.is_file() {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.push((name, path));
        }
    }
    files.sort();
    let mut sources = Vec::with_capacity(files.len());
    for (name, path) in files {
        sources.push((name, read(path)?));
    }
    Ok((schema, sources))
}

/// Parses the schema (human Cedar schema syntax); returns it with its warnings.
pub(crate) fn parse_schema(src: &str) -> Result<(Schema, Vec<String>), PolicyLoadError> {
    match Schema::from_cedarschema_str(src) {
        Ok((schema, warnings)) => Ok((
            schema,
            warnings
                .map(|w| format!("`{SCHEMA_FILE}`: {}", diag::render(&w, src)))
                .collect(),
        )),
        Err(e) => Err(PolicyLoadError::Schema {
            file: SCHEMA_FILE.to_owned(),
            message: diag::render(&e, src),
        }),
    }
}

/// Parses every file and gives each policy its final id.
pub(crate) fn parse_policies(sources: &[(String, String)]) -> Result<Parsed, PolicyLoadError> {
    let mut set = PolicySet::new();
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    let mut positions: BTreeMap<String, usize> = BTreeMap::new();
    for (file, text) in sources {
        for (index, policy) in parse_file(file, text)?.into_iter().enumerate() {
            let id = match policy.annotation("id") {
                Some("") => {
                    return Err(PolicyLoadError::EmptyId {
                        file: file.clone(),
                        index,
                    });
                }
                Some(id) => id.to_owned(),
                None => format!("{file}#{index}"),
            };
            if let Some(first) = files.get(&id) {
                return Err(PolicyLoadError::DuplicateId {
                    id,
                    first: first.clone(),
                    second: file.clone(),
                });
            }
            set.add(policy.new_id(PolicyId::new(&id)))
                .map_err(|e| PolicyLoadError::Slice(e.to_string()))?;
            positions.insert(id.clone(), index);
            files.insert(id, file.clone());
        }
    }
    Ok(Parsed {
        set,
        files,
        index: positions,
    })
}

/// The static policies of one file, in source order.
fn parse_file(file: &str, text: &str) -> Result<Vec<Policy>, PolicyLoadError> {
    let parsed: PolicySet =
        text.parse()
            .map_err(|e: cedar_policy::ParseErrors| PolicyLoadError::Parse {
                file: file.to_owned(),
                message: e
                    .iter()
                    .map(|e| diag::render(e, text))
                    .collect::<Vec<_>>()
                    .join("; "),
            })?;
    if let Some(template) = parsed.templates().next() {
        return Err(PolicyLoadError::Template {
            file: file.to_owned(),
            index: source_index(template.id()).unwrap_or_default(),
        });
    }
    // Cedar names the policies of a parsed text `policy0`, `policy1`, ... in source order.
    let mut policies: Vec<(Option<usize>, &Policy)> = parsed
        .policies()
        .map(|p| (source_index(p.id()), p))
        .collect();
    policies.sort_by_key(|(index, _)| *index);
    Ok(policies.into_iter().map(|(_, p)| p.clone()).collect())
}

fn source_index(id: &PolicyId) -> Option<usize> {
    let id: &str = id.as_ref();
    id.strip_prefix("policy")?.parse().ok()
}

/// Validates `parsed` against `schema` (strict) and checks that every claim a policy names
/// is declared (see `claim_refs`); returns the validator's warnings.
pub(crate) fn validate(
    schema: Schema,
    schema_src: &str,
    parsed: &Parsed,
    sources: &[(String, String)],
    ests: &std::collections::HashMap<String, claim_refs::Est>,
) -> Result<Vec<String>, PolicyLoadError> {
    // Admin policies and exchange policies are validated against their own actions.
    let results = crate::admin::validate(schema, schema_src, &parsed.set)?;
    let locate = |id: &PolicyId| {
        let id: &str = id.as_ref();
        let file = parsed.files.get(id).cloned().unwrap_or_default();
        let text = sources
            .iter()
            .find(|(name, _)| *name == file)
            .map_or("", |(_, text)| text.as_str());
        (id.to_owned(), file, text)
    };
    let mut issues: Vec<PolicyIssue> = results
        .iter()
        .flat_map(cedar_policy::ValidationResult::validation_errors)
        .map(|e| {
            let (policy_id, file, text) = locate(e.policy_id());
            let mut message = diag::render(e, text);
            if matches!(e, ValidationError::UnsafeAttributeAccess(_)) {
                message.push_str(&format!(
                    "; if this is a token claim, declare it (optional) in `type Claims` \
                     of `{SCHEMA_FILE}`"
                ));
            }
            PolicyIssue {
                file,
                policy_id,
                message,
            }
        })
        .collect();
    if let Some(shape) = claim_refs::claims_shape(schema_src) {
        // Policies Cedar already rejected are not inspected again.
        let rejected: HashSet<String> = issues.iter().map(|i| i.policy_id.clone()).collect();
        for policy in parsed.set.policies() {
            let (policy_id, file, _) = locate(policy.id());
            if rejected.contains(&policy_id) {
                continue;
            }
            let rendered;
            let est = match ests.get(&policy_id) {
                Some(est) => est,
                None => {
                    rendered = claim_refs::est(policy);
                    &rendered
                }
            };
            let message = match claim_refs::undeclared_in(est, &shape) {
                Ok(paths) if paths.is_empty() => continue,
                Ok(paths) => format!(
                    "undeclared claim(s) {}: declare them (optional) in `type Claims` of \
                     `{SCHEMA_FILE}`",
                    paths
                        .iter()
                        .map(|p| format!("`{p}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Err(e) => format!("cannot inspect the policy's claim references: {e}"),
            };
            issues.push(PolicyIssue {
                file,
                policy_id,
                message,
            });
        }
    }
    if !issues.is_empty() {
        return Err(PolicyLoadError::Validation(issues));
    }
    Ok(results
        .iter()
        .flat_map(cedar_policy::ValidationResult::validation_warnings)
        .map(|w| {
            let (policy_id, file, text) = locate(w.policy_id());
            PolicyIssue {
                file,
                policy_id,
                message: diag::render(w, text),
            }
            .to_string()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(files: &[(&str, &str)]) -> Vec<(String, String)> {
        files
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect()
    }

    fn load(files: &[(&str, &str)]) -> Result<Parsed, PolicyLoadError> {
        let sources = sources(files);
        let parsed = parse_policies(&sources)?;
        let (schema, _) = parse_schema(crate::BUNDLED_SCHEMA)?;
        validate(
            schema,
            crate::BUNDLED_SCHEMA,
            &parsed,
            &sources,
            &std::collections::HashMap::new(),
        )?;
        Ok(parsed)
    }

    #[test]
    fn ids_from_annotation_or_file_and_index() {
        let parsed = load(&[
            (
                "a.cedar",
                "permit(principal, action, resource);\n\
                 @id(\"named\") forbid(principal, action, resource);\n\
                 permit(principal, action, resource);",
            ),
            ("b.cedar", "permit(principal, action, resource);"),
        ])
        .unwrap();
        let ids: Vec<&str> = parsed.files.keys().map(String::as_str).collect();
        assert_eq!(ids, ["a.cedar#0", "a.cedar#2", "b.cedar#0", "named"]);
        assert_eq!(parsed.files["named"], "a.cedar");
    }

    #[test]
    fn duplicate_and_empty_ids_are_rejected() {
        let err = load(&[
            ("a.cedar", "@id(\"x\") permit(principal, action, resource);"),
            ("b.cedar", "@id(\"x\") permit(principal, action, resource);"),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "policy id `x` is used twice: in `a.cedar` and in `b.cedar`"
        );
        let err = load(&[(
            "a.cedar",
            "permit(principal, action, resource);\n@id(\"a.cedar#0\") permit(principal, action, resource);",
        )])
        .unwrap_err();
        assert!(matches!(err, PolicyLoadError::DuplicateId { .. }), "{err}");
        let err =
            load(&[("a.cedar", "@id(\"\") permit(principal, action, resource);")]).unwrap_err();
        assert!(
            matches!(err, PolicyLoadError::EmptyId { index: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn parse_errors_name_file_and_position() {
        let err = load(&[(
            "bad.cedar",
            "permit(principal, action, resource);\npermit(principal, action resource);",
        )])
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("cannot parse `bad.cedar`: line 2, column "),
            "{text}"
        );
    }

    #[test]
    fn templates_are_rejected() {
        let err = load(&[(
            "t.cedar",
            "permit(principal, action, resource);\npermit(principal == ?principal, action, resource);",
        )])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`t.cedar` contains a template (policy #1); templates are not supported"
        );
    }

    #[test]
    fn undeclared_claim_is_a_validation_error() {
        let err = load(&[(
            "x.cedar",
            "permit(principal, action, resource);\n\n@id(\"uses-undeclared\")\n\
             permit(principal, action, resource)\nwhen { principal.claims.not_a_claim == \"x\" };",
        )])
        .unwrap_err();
        let PolicyLoadError::Validation(issues) = &err else {
            panic!("{err}")
        };
        assert_eq!(issues.len(), 1);
        let issue = &issues[0];
        assert_eq!(issue.file, "x.cedar");
        assert_eq!(issue.policy_id, "uses-undeclared");
        assert!(issue.message.starts_with("line 5, column "), "{issue}");
        assert!(issue.message.contains("not_a_claim"), "{issue}");
        assert!(issue.message.contains("declare it"), "{issue}");
        let text = err.to_string();
        assert!(
            text.starts_with(
                "1 policy validation error(s): `x.cedar`, policy `uses-undeclared`: line 5"
            ),
            "{text}"
        );
    }

    #[test]
    fn guarded_undeclared_claim_is_a_validation_error() {
        // Cedar's validator alone accepts this (`has` on a closed record types as `False`).
        let err = load(&[(
            "x.cedar",
            "@id(\"guarded\") permit(principal, action, resource)\n\
             when { principal.claims has level && principal.claims.level == \"x\" };",
        )])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "1 policy validation error(s): `x.cedar`, policy `guarded`: undeclared claim(s) \
             `principal.claims.level`: declare them (optional) in `type Claims` of \
             `legate.cedarschema`"
        );
    }

    #[test]
    fn unguarded_optional_claim_is_a_validation_error() {
        let err = load(&[(
            "x.cedar",
            "permit(principal, action, resource) when { principal.claims.ref == \"x\" };",
        )])
        .unwrap_err();
        assert!(matches!(err, PolicyLoadError::Validation(_)), "{err}");
    }

    #[test]
    fn schema_errors_have_positions() {
        let err = parse_schema("namespace Legate {\n  entity Issuer\n  entity X;\n}").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("invalid schema `legate.cedarschema`: line "),
            "{text}"
        );
    }

    #[test]
    fn read_dir_reads_sorted_cedar_files_and_the_schema() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_dir(dir.path()).unwrap_err();
        assert!(matches!(err, PolicyLoadError::ReadFile { .. }), "{err}");
        std::fs::write(dir.path().join(SCHEMA_FILE), "schema").unwrap();
        std::fs::write(dir.path().join("b.cedar"), "B").unwrap();
        std::fs::write(dir.path().join("a.cedar"), "A").unwrap();
        std::fs::write(dir.path().join("a.cases"), "ignored").unwrap();
        std::fs::create_dir(dir.path().join("dir.cedar")).unwrap();
        let (schema, files) = read_dir(dir.path()).unwrap();
        assert_eq!(schema, "schema");
        assert_eq!(files, sources(&[("a.cedar", "A"), ("b.cedar", "B")]));
    }
}
