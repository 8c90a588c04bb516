//! Policy test cases: a TOML file of requests and their expected decisions.
//!
//! ```toml
//! [[case]]
//! name = "main branch of the bound repository"
//! trust = "github"
//! issuer = "https://token.actions.githubusercontent.com"
//! subject = "repo:octo-org/deploy:ref:refs/heads/main"
//! claims = { repository_id = "892318775", ref = "refs/heads/main" }
//! target = "deploy-api"
//! source_ip = "198.51.100.7"        # optional, this default
//! now = 1767225600                  # optional (2026-01-01T00:00:00Z)
//! requested_lifetime = 900          # optional, this default
//! expect = "allow"                  # or "deny"
//! expect_policies = ["github-deploy-main"]   # optional: exactly the determining policies
//! expect_reason = "permitted"       # optional: DecisionReason::as_str
//! ```
//!
//! `claims` is a TOML table converted to a JSON object (TOML has no `null`). A case also
//! fails when evaluation reports errors, whatever the decision.
//! [`run_cases`] runs a whole file; the `legate policy test` CLI and the crate's tests use it.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::engine::{Decision, PolicyEngine, PolicyRequest};

/// One test case.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyCase {
    /// Unique within its file.
    pub name: String,
    pub trust: String,
    pub issuer: String,
    pub subject: String,
    #[serde(default)]
    pub claims: Map<String, Value>,
    pub target: String,
    #[serde(default = "default_source_ip")]
    pub source_ip: IpAddr,
    #[serde(default = "default_now")]
    pub now: i64,
    #[serde(default = "default_lifetime")]
    pub requested_lifetime: u64,
    /// What Legate would issue; `requested_lifetime` when absent.
    #[serde(default)]
    pub issued_lifetime: Option<u64>,
    pub expect: Expectation,
    /// When present, exactly the determining policies (any order).
    #[serde(default)]
    pub expect_policies: Option<Vec<String>>,
    /// When present, the decision reason ([`crate::DecisionReason::as_str`]).
    #[serde(default)]
    pub expect_reason: Option<String>,
}

/// The expected outcome of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expectation {
    Allow,
    Deny,
}

/// A case whose decision differs from its expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseFailure {
    /// The case's name.
    pub name: String,
    /// What differs, one entry per mismatch.
    pub problems: Vec<String>,
    /// The decision the engine reached.
    pub decision: Decision,
}

/// The outcome of a case file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseReport {
    /// The number of cases run.
    pub total: usize,
    /// The cases that failed, in file order.
    pub failures: Vec<CaseFailure>,
}

/// Why a case file could not be run.
#[derive(Debug, thiserror::Error)]
pub enum CaseFileError {
    /// Not valid TOML, or not the case format.
    #[error("invalid case file: {0}")]
    Parse(#[from] toml::de::Error),
    /// No `[[case]]` at all: almost certainly a mistake.
    #[error("the case file has no `[[case]]` entries")]
    Empty,
    /// Two cases share a name.
    #[error("case name `{0}` is used twice")]
    DuplicateName(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default, rename = "case")]
    cases: Vec<PolicyCase>,
}

impl fmt::Display for CaseFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "case `{}`: {}", self.name, self.problems.join("; "))
    }
}

impl CaseReport {
    /// Whether every case passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

fn default_source_ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))
}

fn default_now() -> i64 {
    1_767_225_600
}

fn default_lifetime() -> u64 {
    900
}

/// Parses a case file.
pub fn parse_cases(src: &str) -> Result<Vec<PolicyCase>, CaseFileError> {
    let file: CaseFile = toml::from_str(src)?;
    if file.cases.is_empty() {
        return Err(CaseFileError::Empty);
    }
    let mut names = HashSet::new();
    for case in &file.cases {
        if !names.insert(case.name.as_str()) {
            return Err(CaseFileError::DuplicateName(case.name.clone()));
        }
    }
    Ok(file.cases)
}

/// Runs every case of `src` against `engine`.
pub fn run_cases(engine: &PolicyEngine, src: &str) -> Result<CaseReport, CaseFileError> {
    let cases = parse_cases(src)?;
    Ok(CaseReport {
        total: cases.len(),
        failures: cases
            .iter()
            .filter_map(|case| run_case(engine, case).err())
            .collect(),
    })
}

/// Runs one case; `Err` describes how the decision differs from the expectation.
#[expect(
    clippy::result_large_err,
    reason = "a failed case carries its whole decision for the report; cases run in tests \
              and the CLI, never on the request path"
)]
pub fn run_case(engine: &PolicyEngine, case: &PolicyCase) -> Result<Decision, CaseFailure> {
    let decision = engine.evaluate(&PolicyRequest {
        trust: &case.trust,
        issuer: &case.issuer,
        subject: &case.subject,
        claims: &case.claims,
        target: &case.target,
        source_ip: Some(case.source_ip),
        now: case.now,
        requested_lifetime: case.requested_lifetime,
        issued_lifetime: case.issued_lifetime.unwrap_or(case.requested_lifetime),
        actor: None,
    });
    let mut problems = Vec::new();
    let expected_allow = case.expect == Expectation::Allow;
    if decision.allowed != expected_allow {
        problems.push(format!(
            "expected {}, got {} ({})",
            if expected_allow { "allow" } else { "deny" },
            if decision.allowed { "allow" } else { "deny" },
            decision.reason,
        ));
    }
    if let Some(expected) = &case.expect_policies {
        let mut expected = expected.clone();
        expected.sort_unstable();
        expected.dedup();
        if expected != decision.policy_ids {
            problems.push(format!(
                "expected policies [{}], got [{}]",
                expected.join(", "),
                decision.policy_ids.join(", ")
            ));
        }
    }
    if let Some(reason) = &case.expect_reason
        && reason != decision.reason.as_str()
    {
        problems.push(format!(
            "expected reason `{reason}`, got `{}`",
            decision.reason
        ));
    }
    if !decision.errors.is_empty() {
        problems.push(format!("evaluation errors: {}", decision.errors.join("; ")));
    }
    if problems.is_empty() {
        Ok(decision)
    } else {
        Err(CaseFailure {
            name: case.name.clone(),
            problems,
            decision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TargetInfo;

    fn engine() -> PolicyEngine {
        let target = TargetInfo {
            name: "api".into(),
            kind: "jwt".into(),
            audience: "https://api.invalid".into(),
            labels: Default::default(),
        };
        PolicyEngine::from_sources_unlinted(
            crate::BUNDLED_SCHEMA,
            &[(
                "p.cedar".into(),
                r#"@id("env-dev") permit(principal, action, resource)
                   when { principal.claims has env && principal.claims.env == "dev" };"#
                    .into(),
            )],
            &[target],
            &["t".into()],
        )
        .unwrap()
    }

    #[test]
    fn parses_defaults() {
        let cases = parse_cases(
            r#"
            [[case]]
            name = "a"
            trust = "t"
            issuer = "https://i"
            subject = "s"
            target = "api"
            expect = "deny"
            "#,
        )
        .unwrap();
        assert_eq!(cases.len(), 1);
        let case = &cases[0];
        assert_eq!(case.source_ip, default_source_ip());
        assert_eq!(case.now, 1_767_225_600);
        assert_eq!(case.requested_lifetime, 900);
        assert!(case.claims.is_empty());
        assert_eq!(case.expect_policies, None);
    }

    #[test]
    fn reports_mismatches() {
        let report = run_cases(
            &engine(),
            r#"
            [[case]]
            name = "passes"
            trust = "t"
            issuer = "https://i"
            subject = "s"
            claims = { env = "dev", nested = { n = 1, list = [1, "x", true] } }
            target = "api"
            expect = "allow"
            expect_policies = ["env-dev"]
            expect_reason = "permitted"

            [[case]]
            name = "fails"
            trust = "t"
            issuer = "https://i"
            subject = "s"
            claims = { env = "prod" }
            target = "api"
            expect = "allow"
            expect_policies = ["env-dev"]
            expect_reason = "permitted"
            "#,
        )
        .unwrap();
        assert_eq!(report.total, 2);
        assert!(!report.passed());
        assert_eq!(report.failures.len(), 1);
        assert_eq!(
            report.failures[0].to_string(),
            "case `fails`: expected allow, got deny (no_permit); \
             expected policies [env-dev], got []; \
             expected reason `permitted`, got `no_permit`"
        );
    }

    #[test]
    fn rejects_bad_files() {
        assert!(matches!(parse_cases(""), Err(CaseFileError::Empty)));
        let unknown_field = r#"
            [[case]]
            name = "a"
            trust = "t"
            issuer = "i"
            subject = "s"
            target = "api"
            expect = "allow"
            expected = "allow"
        "#;
        assert!(matches!(
            parse_cases(unknown_field),
            Err(CaseFileError::Parse(_))
        ));
        let dup = r#"
            [[case]]
            name = "a"
            trust = "t"
            issuer = "i"
            subject = "s"
            target = "api"
            expect = "allow"
            [[case]]
            name = "a"
            trust = "t"
            issuer = "i"
            subject = "s"
            target = "api"
            expect = "deny"
        "#;
        assert!(matches!(
            parse_cases(dup),
            Err(CaseFileError::DuplicateName(n)) if n == "a"
        ));
    }
}
