//! Decision cost as the policy set grows: 10, 1,000 and 10,000 policies spread over
//! 1,000 targets and four trusts, one realistic GitHub Actions request each, decided on
//! its (trust, target) slice; and the full load (parse, validate, slice) of the
//! 10,000-policy set, which is what a hot reload costs.
//!
//! Criterion gives the median per decision. Before criterion runs, the bench also times
//! `DECISIONS` single decisions per set one by one and prints their median and 99th
//! percentile (criterion reports means of batches, which hide the tail).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use legate_policy::{PolicyEngine, PolicyRequest, TargetInfo};
use serde_json::{Map, Value, json};

const TRUSTS: [&str; 4] = ["demo", "github", "gitlab", "kubernetes"];
const TARGETS: usize = 1_000;
const SIZES: [usize; 3] = [10, 1_000, 10_000];
/// Single decisions timed per set for the percentiles.
const DECISIONS: usize = 20_000;

fn targets() -> Vec<TargetInfo> {
    (0..TARGETS)
        .map(|i| TargetInfo {
            name: format!("t{i}"),
            kind: "jwt".to_owned(),
            audience: format!("https://t{i}.example.com"),
            labels: BTreeMap::from([
                (
                    "env".to_owned(),
                    if i % 2 == 0 { "prod" } else { "dev" }.to_owned(),
                ),
                ("team".to_owned(), "platform".to_owned()),
            ]),
        })
        .collect()
}

fn trusts() -> Vec<String> {
    TRUSTS.map(String::from).to_vec()
}

/// `n` policies over [`TARGETS`] targets (policy `i` on target `t{i % 1000}`): two global
/// forbids, then permits bound to a repository id / project id / namespace, and a
/// forbid every ten. `Spread`: the trust changes every 1,000 policies, so a target's
/// policies spread over the four trusts (at 10,000, target `t2` has three GitHub
/// permits, for repositories `100002`, `104002`, `108002`). `Clustered`: the trust
/// changes every 50 policies, so at 10,000 all ten policies of `t2` are GitHub permits
/// (the worst case for the request below).
fn generated(n: usize, layout: Layout) -> Vec<(String, String)> {
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
        let target = format!("t{}", i % TARGETS);
        let run = match layout {
            Layout::Spread => TARGETS,
            Layout::Clustered => 50,
        };
        let trust = TRUSTS
            .get((i / run + 1) % TRUSTS.len())
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
                r#"principal.subject == "system:serviceaccount:ns{i}:deployer" &&
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

/// How a set's policies are spread over the trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Spread,
    Clustered,
}

#[expect(clippy::expect_used, reason = "bench setup")]
fn load(n: usize, layout: Layout) -> PolicyEngine {
    PolicyEngine::from_sources(
        legate_policy::BUNDLED_SCHEMA,
        &generated(n, layout),
        &targets(),
        &trusts(),
    )
    .expect("generated policies load")
}

/// The claims of a GitHub Actions token for repository `100002` (values made up).
fn github_claims() -> Map<String, Value> {
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
        "repository_visibility": "private",
        "repository_id": "100002",
        "actor_id": "583231",
        "actor": "octocat",
        "workflow": "deploy",
        "event_name": "push",
        "ref_protected": "true",
        "ref_type": "branch",
        "job_workflow_ref": "octo-org/deploy/.github/workflows/deploy.yml@refs/heads/main",
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

fn request(claims: &Map<String, Value>) -> PolicyRequest<'_> {
    PolicyRequest {
        actor: None,
        trust: "github",
        issuer: "https://token.actions.githubusercontent.com",
        subject: "repo:octo-org/deploy:ref:refs/heads/main",
        claims,
        target: "t2",
        source_ip: Some(std::net::IpAddr::from([203, 0, 113, 10])),
        now: 1_767_225_600,
        requested_lifetime: 900,
        issued_lifetime: 900,
    }
}

/// Times `DECISIONS` decisions one by one; returns (median, p99).
#[expect(
    clippy::disallowed_methods,
    reason = "a benchmark measures wall time per decision"
)]
fn percentiles(engine: &PolicyEngine, req: &PolicyRequest<'_>) -> (Duration, Duration) {
    for _ in 0..1_000 {
        let _ = black_box(engine.evaluate(black_box(req)));
    }
    let mut times: Vec<Duration> = (0..DECISIONS)
        .map(|_| {
            let start = Instant::now();
            let _ = black_box(engine.evaluate(black_box(req)));
            start.elapsed()
        })
        .collect();
    times.sort_unstable();
    let at = |q: f64| {
        let index = ((times.len() as f64 - 1.0) * q).round() as usize;
        times.get(index).copied().unwrap_or_default()
    };
    (at(0.5), at(0.99))
}

#[expect(
    clippy::disallowed_methods,
    reason = "a benchmark measures wall time of one load"
)]
fn bench_scale(c: &mut Criterion) {
    let claims = github_claims();
    let req = request(&claims);
    let mut engines = Vec::new();
    let sets = SIZES
        .map(|n| (n, Layout::Spread))
        .into_iter()
        .chain([(10_000, Layout::Clustered)]);
    for (n, layout) in sets {
        let start = Instant::now();
        let engine = load(n, layout);
        let loaded = start.elapsed();
        let decision = engine.evaluate(&req);
        assert!(decision.allowed, "{n}: {decision:?}");
        assert_eq!(decision, engine.evaluate_unsliced(&req), "{n}");
        let slice = engine.slice_len("github", "t2").unwrap_or_default();
        let (median, p99) = percentiles(&engine, &req);
        let n = match layout {
            Layout::Spread => n.to_string(),
            Layout::Clustered => format!("{n} clustered"),
        };
        println!(
            "scale: {n} policies: slice {slice}, load {loaded:.2?}, \
             single decisions median {median:.2?}, p99 {p99:.2?} ({DECISIONS} timed)"
        );
        engines.push((n, slice, engine));
    }

    let mut group = c.benchmark_group("scale");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    for (n, slice, engine) in &engines {
        group.bench_function(format!("evaluate/{n} policies (slice {slice})"), |b| {
            b.iter(|| engine.evaluate(black_box(&req)));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("scale-load");
    group
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(20))
        .sample_size(10);
    let sources = generated(10_000, Layout::Spread);
    let (targets, trusts) = (targets(), trusts());
    group.bench_function("load/10000 policies, 1000 targets, 4 trusts", |b| {
        b.iter(|| {
            PolicyEngine::from_sources(
                legate_policy::BUNDLED_SCHEMA,
                black_box(&sources),
                &targets,
                &trusts,
            )
        });
    });
    group.finish();
}

criterion_group!(benches, bench_scale);
criterion_main!(benches);
