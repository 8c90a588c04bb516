//! Policy evaluation cost: one realistic GitHub Actions request against the bundled set and
//! against generated sets of 50 and 500 policies spread over 50 targets, evaluated on the
//! (trust, target) slice (`sliced`, what Legate does), on the whole set (`full`), and on
//! the whole set with every claim converted (`reference`: plain Cedar over the whole
//! entity model, what Legate would cost without ADRs 0004 and 0005). The `empty` engine
//! has no policy: its figure is the fixed cost of mapping the request (claims, entities,
//! context) onto Cedar.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use legate_policy::{PolicyEngine, PolicyRequest, TargetInfo};
use serde_json::{Map, Value, json};

const TRUSTS: [&str; 4] = ["demo", "github", "gitlab", "kubernetes"];

fn target(name: &str, env: &str) -> TargetInfo {
    TargetInfo {
        name: name.to_owned(),
        kind: "jwt".to_owned(),
        audience: format!("https://{name}.example.com"),
        labels: BTreeMap::from([
            ("env".to_owned(), env.to_owned()),
            ("team".to_owned(), "platform".to_owned()),
        ]),
    }
}

fn trusts() -> Vec<String> {
    TRUSTS.map(String::from).to_vec()
}

/// `n` policies over 50 targets: per target, permits for the four trusts in turn, bound to
/// a repository id / project id / namespace; plus two global forbids (as in the bundled
/// guardrails) and one forbid every ten policies.
fn generated(n: usize) -> Vec<(String, String)> {
    let mut text = String::new();
    text.push_str(
        r#"forbid (principal, action, resource)
           when { resource.hasTag("env") && resource.getTag("env") == "prod" &&
                  context.requested_lifetime > 3600 };
           forbid (principal, action, resource)
           when { context.source_ip.isInRange(ip("169.254.0.0/16")) };
        "#,
    );
    for i in 2..n {
        let target = format!("t{}", i % 50);
        // The first 50 for GitHub, the next 50 for GitLab, and so on.
        let trust = TRUSTS
            .get((i / 50 + 1) % TRUSTS.len())
            .copied()
            .unwrap_or("github");
        let condition = match trust {
            "github" => format!(
                r#"principal.claims has repository_id && principal.claims.repository_id == "{}" &&
                   principal.claims has ref && principal.claims.ref == "refs/heads/main""#,
                100_000 + i
            ),
            "gitlab" => format!(
                r#"principal.claims has project_id && principal.claims.project_id == "{i}" &&
                   principal.claims has ref_protected && principal.claims.ref_protected == "true""#
            ),
            "kubernetes" => format!(
                r#"principal.subject == "system:serviceaccount:ns{i}:api" &&
                   principal.claims has "kubernetes.io" &&
                   principal.claims["kubernetes.io"] has namespace &&
                   principal.claims["kubernetes.io"].namespace == "ns{i}""#
            ),
            _ => format!(
                r#"principal.subject == "workload:{i}" &&
                   principal.claims has env && principal.claims.env == "dev""#
            ),
        };
        let effect = if i % 10 == 0 { "forbid" } else { "permit" };
        text.push_str(&format!(
            "{effect} (principal in Legate::Issuer::\"{trust}\", \
             action == Legate::Action::\"exchange\", resource == Legate::Target::\"{target}\")\n\
             when {{ {condition} }};\n"
        ));
    }
    vec![("generated.cedar".to_owned(), text)]
}

#[expect(clippy::expect_used, reason = "bench setup")]
fn engines() -> Vec<(String, PolicyEngine)> {
    let bundled = PolicyEngine::bundled(
        &[target("demo-api", "dev"), target("deploy-api", "prod")],
        &trusts(),
    )
    .expect("bundled policies load");
    let targets: Vec<TargetInfo> = (0..50)
        .map(|i| target(&format!("t{i}"), if i % 2 == 0 { "prod" } else { "dev" }))
        .collect();
    // No policies at all: the fixed cost of mapping a request onto Cedar.
    let empty = PolicyEngine::from_sources(
        legate_policy::BUNDLED_SCHEMA,
        &[],
        &[target("deploy-api", "prod")],
        &trusts(),
    )
    .expect("empty set loads");
    let mut engines = vec![("empty".to_owned(), empty), ("bundled".to_owned(), bundled)];
    for n in [50, 500] {
        let engine = PolicyEngine::from_sources(
            legate_policy::BUNDLED_SCHEMA,
            &generated(n),
            &targets,
            &trusts(),
        )
        .expect("generated policies load");
        engines.push((format!("generated_{n}"), engine));
    }
    engines
}

/// The claims of a real GitHub Actions token (values made up).
fn github_claims(repository_id: &str) -> Map<String, Value> {
    let claims = json!({
        "jti": "6f1c3a0e-0c5e-4a1f-9d8e-9b6a2f4c1e77",
        "sub": "repo:octo-org/deploy:ref:refs/heads/main",
        "aud": "https://legate.example.com",
        "ref": "refs/heads/main",
        "sha": "e0f1a2b3c4d5e6f708192a3b4c5d6e7f80911a2b",
        "repository": "octo-org/deploy",
        "repository_owner": "octo-org",
        "repository_owner_id": "1342004",
        "run_id": "12345678901",
        "run_number": "42",
        "run_attempt": "1",
        "repository_visibility": "private",
        "repository_id": repository_id,
        "actor_id": "583231",
        "actor": "octocat",
        "workflow": "deploy",
        "head_ref": "",
        "base_ref": "",
        "event_name": "push",
        "ref_protected": "true",
        "ref_type": "branch",
        "workflow_ref": "octo-org/deploy/.github/workflows/deploy.yml@refs/heads/main",
        "workflow_sha": "e0f1a2b3c4d5e6f708192a3b4c5d6e7f80911a2b",
        "job_workflow_ref": "octo-org/deploy/.github/workflows/deploy.yml@refs/heads/main",
        "job_workflow_sha": "e0f1a2b3c4d5e6f708192a3b4c5d6e7f80911a2b",
        "runner_environment": "github-hosted",
        "iss": "https://token.actions.githubusercontent.com",
        "nbf": 1_767_225_540,
        "exp": 1_767_225_900,
        "iat": 1_767_225_600
    });
    match claims {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn bench_evaluate(c: &mut Criterion) {
    let mut group = c.benchmark_group("evaluate");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    for (name, engine) in engines() {
        // The bundled set permits repository 892318775 on deploy-api; generated target t2
        // has a GitHub permit for repository 100002.
        let (target, repository_id) = match name.as_str() {
            "empty" | "bundled" => ("deploy-api", "892318775"),
            _ => ("t2", "100002"),
        };
        let claims = github_claims(repository_id);
        let req = PolicyRequest {
            trust: "github",
            issuer: "https://token.actions.githubusercontent.com",
            subject: "repo:octo-org/deploy:ref:refs/heads/main",
            claims: &claims,
            target,
            source_ip: Some(std::net::IpAddr::from([203, 0, 113, 10])),
            now: 1_767_225_600,
            requested_lifetime: 900,
            issued_lifetime: 900,
            actor: None,
        };
        let decision = engine.evaluate(&req);
        assert_eq!(decision.allowed, name != "empty", "{name}: {decision:?}");
        assert_eq!(decision, engine.evaluate_unsliced(&req));
        assert_eq!(decision, engine.evaluate_reference(&req));
        let slice = engine.slice_len("github", target).unwrap_or_default();
        let total = engine.policy_count();
        group.bench_function(format!("{name}/sliced ({slice} of {total})"), |b| {
            b.iter(|| engine.evaluate(black_box(&req)));
        });
        group.bench_function(format!("{name}/full ({total})"), |b| {
            b.iter(|| engine.evaluate_unsliced(black_box(&req)));
        });
        group.bench_function(format!("{name}/reference ({total}, every claim)"), |b| {
            b.iter(|| engine.evaluate_reference(black_box(&req)));
        });
    }
    group.finish();
}

criterion_group!(benches, bench_evaluate);
criterion_main!(benches);
