//! The bundled example policies, against their `policies/*.cases` files.

use std::collections::BTreeMap;

use legate_policy::{BUNDLED_CASES, BUNDLED_POLICIES, PolicyEngine, TargetInfo, run_cases};

/// The targets and trusts of the bundled example configuration.
#[expect(clippy::unwrap_used, reason = "test helper")]
fn bundled_engine() -> PolicyEngine {
    let target = |name: &str, kind: &str, audience: &str, env: &str| TargetInfo {
        name: name.to_owned(),
        kind: kind.to_owned(),
        audience: audience.to_owned(),
        labels: BTreeMap::from([("env".to_owned(), env.to_owned())]),
    };
    let targets = [
        target("demo-api", "jwt", "https://demo-api.legate.invalid", "dev"),
        target("deploy-api", "jwt", "https://deploy.example.com", "prod"),
        target("demo-aws", "aws", "", "dev"),
        target("demo-gcp", "gcp", "", "dev"),
        target("demo-azure", "azure", "", "dev"),
    ];
    let trusts = ["demo", "github", "gitlab", "kubernetes"].map(String::from);
    PolicyEngine::bundled(&targets, &trusts).unwrap()
}

#[test]
fn every_bundled_case_passes() {
    let engine = bundled_engine();
    let mut failures = Vec::new();
    let mut total = 0;
    for (file, src) in BUNDLED_CASES {
        let report = run_cases(&engine, src).unwrap_or_else(|e| panic!("{file}: {e}"));
        total += report.total;
        failures.extend(report.failures.iter().map(|f| format!("{file}: {f}")));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(total >= 30, "only {total} cases");
}

#[test]
fn every_policy_file_has_cases_with_allow_and_deny() {
    for (file, _) in BUNDLED_POLICIES {
        let cases_file = file.replace(".cedar", ".cases");
        let (_, src) = BUNDLED_CASES
            .iter()
            .find(|(name, _)| *name == cases_file)
            .unwrap_or_else(|| panic!("no {cases_file} for {file}"));
        let cases = legate_policy::parse_cases(src).unwrap();
        for expect in [
            legate_policy::Expectation::Allow,
            legate_policy::Expectation::Deny,
        ] {
            assert!(
                cases.iter().any(|c| c.expect == expect),
                "{cases_file} has no {expect:?} case"
            );
        }
    }
}

#[test]
fn bundled_policies_load_cleanly() {
    let engine = bundled_engine();
    assert_eq!(engine.policy_count(), 10);
    assert!(engine.warnings().is_empty(), "{:?}", engine.warnings());
    let ids: Vec<&str> = engine.policy_ids().collect();
    assert_eq!(
        ids,
        [
            "demo-dev-api",
            "demo-dev-aws",
            "demo-dev-azure",
            "demo-dev-gcp",
            "demo-max-lifetime",
            "github-deploy-main",
            "gitlab-deploy-protected",
            "guardrail-no-link-local-source",
            "guardrail-prod-max-lifetime",
            "kubernetes-payments-api",
        ]
    );
    assert_eq!(engine.policy_file("demo-max-lifetime"), Some("demo.cedar"));
    // Slicing: GitHub → deploy-api sees its permit and the two guardrails only.
    assert_eq!(engine.slice_len("github", "deploy-api"), Some(3));
    // The demo → demo-api: its permit, its forbid and the two guardrails.
    assert_eq!(engine.slice_len("demo", "demo-api"), Some(4));
    // The demo → demo-aws: its own permit, the forbid and the guardrails.
    assert_eq!(engine.slice_len("demo", "demo-aws"), Some(4));
}

#[test]
fn the_policy_directory_loads_like_the_bundled_set() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let engine = PolicyEngine::load_dir_with(
        &dir,
        &[],
        &["github".to_owned()],
        &legate_policy::LoadOptions::examples(),
    )
    .unwrap();
    assert_eq!(engine.policy_count(), 10);
    // No targets configured: the target-scoped policies are reported.
    assert!(
        engine
            .warnings()
            .iter()
            .any(|w| w.contains("`github-deploy-main`") && w.contains("target `deploy-api`")),
        "{:?}",
        engine.warnings()
    );
}
