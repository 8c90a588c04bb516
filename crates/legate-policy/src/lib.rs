//! Legate's conditional-access policy engine, built on [Cedar](https://www.cedarpolicy.com).
//!
//! What it does: loads a Cedar schema and policy files, validates every policy against the
//! schema (strict mode) at load time, and decides whether a verified workload may exchange
//! its token for a token of a named *target*. It maps a request onto the `Legate` entity
//! model:
//!
//! - principal `Legate::Workload::"<trust>|<subject>"`, whose only parent is
//!   `Legate::Issuer::"<trust>"`, with attributes `issuer`, `subject`, `trust` and `claims`
//!   (every claim of the token: string → `String`, integer → `Long`, boolean → `Bool`,
//!   array → `Set`, object → `Record`; JSON `null`, non-integer numbers and integers outside
//!   the `i64` range are dropped, as if absent; nesting deeper than 32 levels fails the
//!   request);
//! - action `Legate::Action::"exchange"`;
//! - resource `Legate::Target::"<name>"` with attributes `name`, `kind`, `audience` and the
//!   target's labels as entity tags;
//! - context `source_ip`, `request_time`, `utc_hour`, `utc_weekday`, `requested_lifetime`,
//!   `issued_lifetime`, `has_actor`, and `actor` (a record `trust`, `issuer`, `subject`,
//!   `claims`) when a verified actor token accompanies the request; actor claims are
//!   converted like subject claims, all of them (no pruning).
//!
//! Requests and entities are built *without* the schema, so claims the schema does not
//! declare never break evaluation; they are merely unreachable from (validated) policies.
//!
//! At load time the policies are sliced per (trust, target): each slice holds only the
//! policies whose scope can match that pair, so evaluation cost grows with the policies
//! that concern a target rather than with the whole set. Slicing never changes a decision.
//! Each slice also records the top-level claims its policies can read, and only those are
//! converted to Cedar at request time (ADR 0005); this never changes a decision either.
//!
//! One deliberate departure from plain Cedar: a `forbid` policy that fails to evaluate
//! (Cedar skips erroring policies) turns an Allow into a Deny
//! ([`DecisionReason::ForbidFailed`]); a guardrail must fail closed.
//!
//! What it does not do: no I/O besides reading a policy directory in
//! [`PolicyEngine::load_dir`], no async, no clock reads (the request carries `now`), no
//! token verification (claims arrive verified) and no token minting.
//!
//! Layout:
//! - [`engine`](mod@engine): [`PolicyEngine`], [`PolicyRequest`], [`Decision`], [`TargetInfo`];
//! - [`load`]: reading, parsing and validating sources; [`PolicyLoadError`];
//! - `claim_refs` (private): the load-time check that every claim a policy names is declared
//!   (strict validation alone lets `principal.claims has undeclared && ...` through), and
//!   the claims each policy can read;
//! - `request` (private): claim conversion, entity and request building;
//! - `scope` (private): the scope analysis behind slicing;
//! - `diag` (private): Cedar diagnostics rendered with line and column;
//! - [`lint`]: the lints every load runs (`unscoped-issuer`, `unbound-subject`,
//!   `unsafe-pattern`, `foreign-claim`, `mutable-name`) and `@allow_lint`;
//! - [`templates`]: issuer templates (claim models) the lints use, with their
//!   recommended trust entries, policies and cases (`policies/templates/`);
//! - [`explain`](mod@explain): [`PolicyEngine::explain`], the decision with each policy's
//!   first failing scope constraint or condition; `policy_text` (private) locates them in
//!   the source;
//! - [`admin`](mod@admin): [`PolicyEngine::authorize_admin`] for the admin endpoints
//!   (`Legate::Action::"admin"`), and the split validation that keeps exchange and admin
//!   policies apart;
//! - [`shadow`]: shadow mode (`@mode("shadow")`): evaluated, reported, never deciding;
//! - [`cases`]: policy test cases (`*.cases`, TOML) and their runner, for tests and the CLI;
//! - [`BUNDLED_SCHEMA`], [`BUNDLED_POLICIES`], [`BUNDLED_CASES`]: the example policies in
//!   the repository's `policies/` directory.

pub mod admin;
pub mod cases;
mod claim_refs;
mod diag;
pub mod engine;
pub mod explain;
pub mod lint;
pub mod load;
mod policy_text;
mod request;
mod scope;
pub mod shadow;
pub mod templates;

pub use admin::{AdminEndpoint, AdminRequest};
pub use cases::{
    CaseFailure, CaseFileError, CaseReport, Expectation, PolicyCase, parse_cases, run_case,
    run_cases,
};
pub use engine::{
    Decision, DecisionReason, LoadOptions, PolicyActor, PolicyEngine, PolicyRequest, TargetInfo,
};
pub use explain::{
    Explanation, Failure, FailureKind, PieceResult, PolicyExplanation, PolicyOutcome,
};
pub use lint::{LintFinding, LintId};
pub use load::{PolicyIssue, PolicyLoadError, SCHEMA_FILE};
pub use shadow::{ShadowEffect, ShadowOutcome, Would};
pub use templates::Template;

/// The bundled schema, `policies/legate.cedarschema`.
pub const BUNDLED_SCHEMA: &str = include_str!("../../../policies/legate.cedarschema");

/// The bundled example policies, `policies/*.cedar`, as (file name, text), sorted by name.
pub const BUNDLED_POLICIES: &[(&str, &str)] = &[
    ("demo.cedar", include_str!("../../../policies/demo.cedar")),
    (
        "github.cedar",
        include_str!("../../../policies/github.cedar"),
    ),
    (
        "gitlab.cedar",
        include_str!("../../../policies/gitlab.cedar"),
    ),
    (
        "guardrails.cedar",
        include_str!("../../../policies/guardrails.cedar"),
    ),
    (
        "kubernetes.cedar",
        include_str!("../../../policies/kubernetes.cedar"),
    ),
];

/// The test cases of the bundled policies, `policies/*.cases`, as (file name, text).
pub const BUNDLED_CASES: &[(&str, &str)] = &[
    ("demo.cases", include_str!("../../../policies/demo.cases")),
    (
        "github.cases",
        include_str!("../../../policies/github.cases"),
    ),
    (
        "gitlab.cases",
        include_str!("../../../policies/gitlab.cases"),
    ),
    (
        "guardrails.cases",
        include_str!("../../../policies/guardrails.cases"),
    ),
    (
        "kubernetes.cases",
        include_str!("../../../policies/kubernetes.cases"),
    ),
];
