//! Attack rejection benchmarks: what the denial-of-service inputs of the attack corpus
//! (`legate_testkit::corpus`, class `DenialOfService`) cost Legate's core to refuse, next to
//! the cost of verifying a legitimate token, measured in the same run.
//!
//! Each input goes through what the server does with a subject token: `UnverifiedJwt::parse`,
//! then, only if that succeeds, `verify()` with the issuer's keys. For the 64 KiB token the
//! server refuses the HTTP body before parsing; here it is measured at `parse`, where the
//! size check comes first.
//!
//! Run: `cargo bench -p legate-core --bench attacks`.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    missing_docs,
    reason = "benchmark harness: a failure is a broken benchmark"
)]

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use legate_core::jwk::KeySet;
use legate_core::{UnverifiedJwt, VerifyRules, verify};
use legate_testkit::corpus::{self, AttackClass, CorpusContext, Expect, reason};

/// What Legate's core does with a subject token: parse, then verify with the issuer's keys.
fn check(
    token: &str,
    trusts: &HashMap<&'static str, (KeySet, VerifyRules)>,
    now: i64,
) -> Result<(), &'static str> {
    let jwt = UnverifiedJwt::parse(token).map_err(|e| e.reason_code())?;
    let (keys, rules) = trusts
        .get(jwt.unverified_issuer())
        .ok_or("untrusted_issuer")?;
    verify(jwt, keys, rules, now)
        .map(|_| ())
        .map_err(|e| e.reason_code())
}

fn bench(c: &mut Criterion) {
    let ctx = CorpusContext::new("http://127.0.0.1:9");
    let cases = corpus::generate(1, &ctx);
    let trusts: HashMap<&'static str, (KeySet, VerifyRules)> = corpus::trusts()
        .iter()
        .map(|t| {
            let jwks = serde_json::to_vec(&t.jwks).unwrap();
            (t.issuer, (KeySet::from_jwks(&jwks).unwrap().0, t.rules()))
        })
        .collect();
    let token = |name: &str| {
        cases
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no corpus case {name}"))
            .token
            .clone()
    };

    let mut group = c.benchmark_group("attacks");
    group.measurement_time(std::time::Duration::from_secs(3));
    // References: legitimate tokens, fully verified.
    for name in [
        "accept_es256",
        "accept_rs256",
        "accept_eddsa",
        "accept_token_just_under_size_cap",
    ] {
        let t = token(name);
        assert_eq!(check(&t, &trusts, ctx.now), Ok(()), "{name}");
        group.bench_function(format!("legit_{name}"), |b| {
            b.iter(|| check(black_box(&t), &trusts, ctx.now))
        });
    }
    // A forged signature costs one signature check: the most an unauthenticated caller
    // can make Legate spend per request.
    let forged = token("sig_bit_flipped_es256");
    assert_eq!(check(&forged, &trusts, ctx.now), Err("bad_signature"));
    group.bench_function("reject_sig_bit_flipped_es256", |b| {
        b.iter(|| check(black_box(&forged), &trusts, ctx.now))
    });
    // Every denial-of-service input of the corpus.
    for case in cases
        .iter()
        .filter(|c| c.class == AttackClass::DenialOfService)
    {
        // Every input is refused by the core, except a genuine token with deeply nested
        // claims, which the core accepts and the policy engine refuses.
        let result = check(&case.token, &trusts, ctx.now);
        let after_core = case.expect
            == (Expect::Reject {
                reason: reason::REQUEST_BUILD_FAILED,
            });
        assert!(result.is_err() != after_core, "{}: {result:?}", case.name);
        let label = if after_core { "verify" } else { "reject" };
        group.bench_function(format!("{label}_{}", case.name), |b| {
            b.iter(|| check(black_box(&case.token), &trusts, ctx.now))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
