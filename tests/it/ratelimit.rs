//! Rate limits per subject and per target (`[limits]`, in memory): a runaway job gets
//! 429 with `Retry-After` instead of exhausting the target's token budget, and a 429
//! never uses up the subject token's `jti`.

#![allow(
    clippy::indexing_slicing,
    reason = "test code: failing loudly is the point"
)]

use legate_server::audit::Outcome;
use serde_json::{Value, json};

use crate::harness::{Fixture, TARGET};

/// Asserts `reply` is the rate-limit answer and returns its body.
fn assert_limited(f: &Fixture, reply: &crate::harness::Reply, reason: &str, retry: &str) {
    assert_eq!(reply.status, 429, "{}", reply.text);
    assert_eq!(reply.json["error"], "rate_limited", "{}", reply.text);
    assert!(
        reply.json["error_description"].is_string(),
        "{}",
        reply.text
    );
    assert_eq!(
        reply.header("retry-after"),
        Some(retry),
        "{:?}",
        reply.headers
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let event = f.legate.event_of(&reply.json);
    assert_eq!(event.reason, reason, "{event:#?}");
    assert_eq!(event.decision, Outcome::Deny);
}

async fn rate_counters(f: &Fixture) -> Value {
    f.legate.operator.get("/status").await.json["rate_limits"].clone()
}

/// Stops a runaway job (a retry loop, a matrix build gone wrong) from exhausting the
/// target's token-service budget: one subject gets its burst, then 429 with
/// `Retry-After`, and passes again once the wait is over. The 429 records nothing, so
/// a single-use token refused by the limit is still good later.
#[tokio::test]
async fn subject_over_its_burst_gets_429_and_its_jti_is_kept() {
    let f = Fixture::start_with(|s| {
        s.extra_toml
            .push_str("\n[limits]\nper_subject = { rate = 1, per_secs = 10, burst = 3 }\n");
    })
    .await;
    for i in 0..3 {
        let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
        assert_eq!(status, 200, "burst request {i}: {body}");
    }
    let refused = f.token(&json!({}));
    let reply = f.legate.exchange_reply(&refused, TARGET, None).await;
    assert_limited(&f, &reply, "rate_limited_subject", "10");
    let counters = rate_counters(&f).await;
    assert_eq!(counters["limited_subject"], 1, "{counters}");
    assert_eq!(counters["limited_target"], 0, "{counters}");

    // Part of the wait is not enough; the rest is (Retry-After is rounded up).
    f.legate.clock.advance(9);
    let reply = f.legate.exchange_reply(&refused, TARGET, None).await;
    assert_limited(&f, &reply, "rate_limited_subject", "1");
    f.legate.clock.advance(1);
    // The token refused twice by the limit was never recorded: it exchanges now...
    let (status, body) = f.legate.exchange(&refused, TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    // ...once.
    f.legate.clock.advance(10);
    let (status, body) = f.legate.exchange(&refused, TARGET, None).await;
    f.legate.assert_rejected(status, &body, "replayed");

    // Another subject has its own budget.
    let (status, body) = f
        .legate
        .exchange(
            &f.token(&json!({"sub": "repo:other/repo:ref:refs/heads/main"})),
            TARGET,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Stops many workloads together (each within its own limit) from exhausting one
/// target's budget: the target's limit holds across subjects, and a target's own
/// `limits` table replaces the global one.
#[tokio::test]
async fn target_limit_holds_across_subjects() {
    let f = Fixture::start_with(|s| {
        // The first line lands in the last `[[target]]` table: the standard target.
        s.extra_toml.push_str(
            "limits = { per_target = { rate = 1, per_secs = 60, burst = 2 } }\n\n[limits]\nper_target = { rate = 1000, per_secs = 1, burst = 1000 }\nper_subject = { rate = 1000, per_secs = 1, burst = 1000 }\n",
        );
    })
    .await;
    let alice = json!({"sub": "repo:acme/alice:ref:refs/heads/main"});
    let bob = json!({"sub": "repo:acme/bob:ref:refs/heads/main"});
    let (status, body) = f.legate.exchange(&f.token(&alice), TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = f.legate.exchange(&f.token(&bob), TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    for who in [&alice, &bob] {
        let reply = f.legate.exchange_reply(&f.token(who), TARGET, None).await;
        assert_limited(&f, &reply, "rate_limited_target", "60");
    }
    let counters = rate_counters(&f).await;
    assert_eq!(counters["limited_target"], 2, "{counters}");
    f.legate.clock.advance(60);
    let (status, body) = f.legate.exchange(&f.token(&bob), TARGET, None).await;
    assert_eq!(status, 200, "{body}");
}

/// Without `[limits]` nothing is limited (the documented default).
#[tokio::test]
async fn no_limits_configured_means_no_429() {
    let f = Fixture::start().await;
    for i in 0..20 {
        let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
        assert_eq!(status, 200, "request {i}: {body}");
    }
    assert_eq!(rate_counters(&f).await["keys"], 0);
}
