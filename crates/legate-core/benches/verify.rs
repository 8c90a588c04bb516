//! Verification benchmarks: the cost of `UnverifiedJwt::parse` + `verify()` per algorithm,
//! against two references measured in the same run: the bare aws-lc-rs signature check
//! with a parsed key (the floor) and jsonwebtoken's decode (the common alternative).
//!
//! Run: `cargo bench -p legate-core --bench verify`.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    missing_docs,
    reason = "benchmark harness: a failure is a broken benchmark"
)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use legate_core::jwk::{KeyLookup, KeySet};
use legate_core::{UnverifiedJwt, VerifyRules, verify};
use legate_testkit::testkeys::TestKey;
use serde_json::json;

const NOW: i64 = 1_800_000_000;

fn claims() -> serde_json::Value {
    json!({
        "iss": "https://token.actions.githubusercontent.com",
        "aud": "https://legate.example.com",
        "sub": "repo:octo-org/deploy:ref:refs/heads/main",
        "jti": "6f7c1a52-6a55-4c1e-8f2d-3a1d2b3c4d5e",
        "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 290,
        "repository": "octo-org/deploy", "repository_id": "892318775",
        "repository_owner": "octo-org", "ref": "refs/heads/main", "ref_type": "branch",
        "workflow": "deploy", "event_name": "push", "runner_environment": "github-hosted",
        "job_workflow_ref": "octo-org/deploy/.github/workflows/deploy.yml@refs/heads/main"
    })
}

fn bench(c: &mut Criterion) {
    let rules = VerifyRules::new(
        "https://token.actions.githubusercontent.com",
        vec!["https://legate.example.com".into()],
    );
    let mut group = c.benchmark_group("verify");
    group.measurement_time(std::time::Duration::from_secs(3));
    for key in [
        TestKey::rs256("k"),
        TestKey::es256("k"),
        TestKey::eddsa("k"),
        TestKey::ps256("k"),
    ] {
        let jwks = json!({ "keys": [key.public_jwk()] }).to_string();
        let (keys, _) = KeySet::from_jwks(jwks.as_bytes()).unwrap();
        let token = key.token(&claims());
        group.bench_function(format!("legate_parse_verify_{}", key.alg), |b| {
            b.iter(|| {
                let jwt = UnverifiedJwt::parse(black_box(&token)).unwrap();
                verify(jwt, &keys, &rules, NOW).unwrap()
            });
        });
        // Floor: the signature check alone, key already parsed.
        let jwt = UnverifiedJwt::parse(&token).unwrap();
        let KeyLookup::Found(vk) = keys.get("k") else {
            panic!("key")
        };
        group.bench_function(format!("reference_signature_only_{}", key.alg), |b| {
            b.iter(|| {
                assert!(vk.verify_signature(black_box(jwt.signing_input()), jwt.signature()))
            });
        });
    }
    // The common alternative, for the ratio: jsonwebtoken decode + validate (RS256).
    let key = TestKey::rs256("k");
    let token = key.token(&claims());
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.public_jwk()).unwrap();
    let dk = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&["https://legate.example.com"]);
    validation.set_issuer(&["https://token.actions.githubusercontent.com"]);
    validation.validate_exp = false;
    group.bench_function("reference_jsonwebtoken_decode_RS256", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<serde_json::Value>(black_box(&token), &dk, &validation).unwrap()
        });
    });
    // JWKS parse (keys parsed once per fetch).
    let jwks = json!({ "keys": [
        TestKey::rs256("a").public_jwk(), TestKey::es256("b").public_jwk(),
        TestKey::eddsa("c").public_jwk(), TestKey::es384("d").public_jwk()
    ] })
    .to_string();
    group.bench_function("jwks_parse_4_keys", |b| {
        b.iter(|| KeySet::from_jwks(black_box(jwks.as_bytes())).unwrap());
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
