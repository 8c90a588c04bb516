//! Regression tests for the review of the request path (replay cache, ordering of the
//! path, audit durability, subjects and lifetimes). Each test names what it stops.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests: failing loudly is the point"
)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use legate_server::audit::Outcome;
use legate_testkit::testkeys::TestKey;
use serde_json::json;

use crate::harness::{
    AUDIT_WAIT, AuditGate, Fixture, GRANT_TYPE, TARGET, TOKEN_TYPE_JWT, TargetSpec, TrustSpec,
    decode_payload, plain_http_client, sha256_hex, upstream_claims,
};
use crate::issuer::{Mode, TestIssuer};
use crate::peers::TestPki;

/// A second target the standard policy does not permit.
fn unpermitted_target() -> TargetSpec {
    TargetSpec {
        name: "billing-api".to_owned(),
        audience: "https://billing.example.com".to_owned(),
        max_lifetime_secs: 600,
        labels: Vec::new(),
    }
}

/// Stops a denial from burning the token: a verifiable token (anyone can get one from
/// a public CI issuer with Legate's audience) that policy denies must not take a
/// replay-cache slot, or a workload that first asks for the wrong target could never
/// use its token for the right one — and an attacker could fill the cache with denials.
#[tokio::test]
async fn a_policy_denial_does_not_use_up_the_jti() {
    let f = Fixture::start_with(|s| s.targets.push(unpermitted_target())).await;
    let token = f.token(&json!({}));
    let (status, body) = f.legate.exchange(&token, "billing-api", None).await;
    f.legate.assert_rejected(status, &body, "no_permit");
    let (status, body) = f.legate.exchange(&token, TARGET, None).await;
    assert_eq!(status, 200, "the denied token is still unused: {body}");
    let (status, body) = f.legate.exchange(&token, TARGET, None).await;
    f.legate.assert_rejected(status, &body, "replayed");
}

/// Stops the replay cache from jamming for good: expired entries used to count toward
/// `replay_capacity` until a sweep that a small cache never reached, so every
/// single-use exchange got 503 until restart.
#[tokio::test]
async fn expired_replay_entries_free_capacity() {
    let f = Fixture::start_with(|s| {
        s.extra_toml = "\n[state]\nreplay_capacity = 2\n".to_owned();
    })
    .await;
    for round in 0..5 {
        for i in 0..2 {
            let token = f.token(&json!({"exp": f.legate.now() + 30}));
            let (status, body) = f.legate.exchange(&token, TARGET, None).await;
            assert_eq!(status, 200, "round {round}, token {i}: {body}");
        }
        // Both entries are live: a third is refused, fail closed.
        let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
        assert_eq!(status, 503, "round {round}: {body}");
        let event = f.legate.event_of(&body);
        assert!(
            ["state_unavailable", "replay_cache_trust_full"].contains(&event.reason.as_str()),
            "{event:#?}"
        );
        // Past exp + leeway (60 s) they no longer count.
        f.legate.clock.advance(91);
    }
}

/// Stops one issuer from exhausting the replay cache for the others: each single-use
/// trust gets its share of `replay_capacity`.
#[tokio::test]
async fn one_trust_cannot_exhaust_the_replay_cache_of_another() {
    let pki = TestPki::localhost();
    let key_b = TestKey::es256("key-b");
    let issuer_b = TestIssuer::start(&pki, &[&key_b]).await;
    let url_b = issuer_b.issuer.clone();
    let ca = pki.ca_path.clone();
    let f = Fixture::start_with(move |s| {
        let mut t = TrustSpec::new("other-ci", &url_b);
        t.ca_file = Some(ca);
        s.trusts.push(t);
        s.extra_toml = "\n[state]\nreplay_capacity = 4\n".to_owned();
    })
    .await;
    // Trust `ci` fills its share (4 / 2 single-use trusts = 2) ...
    for _ in 0..2 {
        let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(f.legate.event_of(&body).reason, "replay_cache_trust_full");
    // ... and the other trust is unaffected.
    for _ in 0..2 {
        let claims = upstream_claims(
            &issuer_b.issuer,
            f.legate.now(),
            &json!({"repository_id": "42", "ref": "refs/heads/main"}),
        );
        let (status, body) = f.legate.exchange(&key_b.token(&claims), TARGET, None).await;
        assert_eq!(status, 200, "{body}");
    }
}

/// Stops replay-cache exhaustion through huge `jti` values: a `jti` over 256 bytes is
/// refused before anything is recorded.
#[tokio::test]
async fn an_oversized_jti_is_refused() {
    let f = Fixture::start().await;
    let token = f.token(&json!({"jti": "j".repeat(257)}));
    let (status, body) = f.legate.exchange(&token, TARGET, None).await;
    f.legate.assert_rejected(status, &body, "jti_too_long");
    let token = f.token(&json!({"jti": "j".repeat(256)}));
    let (status, body) = f.legate.exchange(&token, TARGET, None).await;
    assert_eq!(status, 200, "{body}");
}

/// Stops audit confusion between workloads: the audit subject was cut at 64
/// characters, so two subjects with a common prefix looked identical.
#[tokio::test]
async fn the_audit_subject_is_not_truncated() {
    let f = Fixture::start().await;
    let long = format!("repo:acme/{}:ref:refs/heads/main", "x".repeat(120));
    let token = f.token(&json!({"sub": long}));
    let (status, body) = f.legate.exchange(&token, TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    let event = f
        .legate
        .event_of_minted(body["access_token"].as_str().unwrap());
    assert_eq!(event.subject.as_deref(), Some(long.as_str()));
}

/// Stops a reusable token from buying a credential that outlives it.
#[tokio::test]
async fn reusable_trust_credentials_do_not_outlive_the_subject_token() {
    let pki = TestPki::localhost();
    let key = TestKey::es256("key-r");
    let reusable = TestIssuer::start(&pki, &[&key]).await;
    let url = reusable.issuer.clone();
    let ca = pki.ca_path.clone();
    let f = Fixture::start_with(move |s| {
        let mut t = TrustSpec::new("k8s", &url);
        t.ca_file = Some(ca);
        t.replay = Some("reusable");
        s.trusts.push(t);
    })
    .await;
    let claims = upstream_claims(
        &reusable.issuer,
        f.legate.now(),
        &json!({"repository_id": "42", "ref": "refs/heads/main", "exp": f.legate.now() + 100}),
    );
    let (status, body) = f
        .legate
        .exchange(&key.token(&claims), TARGET, Some(600))
        .await;
    assert_eq!(status, 200, "{body}");
    let expires_in = body["expires_in"].as_u64().unwrap();
    assert!(expires_in <= 100, "expires_in {expires_in}");
    let minted = decode_payload(body["access_token"].as_str().unwrap());
    assert!(minted["exp"].as_i64().unwrap() <= claims["exp"].as_i64().unwrap());
}

/// Stops a stalled audit sink from stalling the server or letting a credential out
/// unaudited: with the writer blocked, `/healthz` still answers, exchanges fill the
/// bounded queue and then get 503 — before their `jti` is recorded, so the same token
/// works once the sink recovers — and every queued event is written after it does.
#[tokio::test]
async fn a_stalled_audit_sink_refuses_exchanges_instead_of_issuing_unaudited() {
    let gate = AuditGate::closed();
    let f = Fixture::start_with({
        let gate = gate.clone();
        move |s| {
            s.audit_gate = Some(gate);
            s.extra_toml = "\n[audit]\nqueue_capacity = 2\n".to_owned();
        }
    })
    .await;
    let mut allowed = 0;
    let mut refused_token = None;
    for _ in 0..8 {
        let token = f.token(&json!({}));
        let (status, body) = f.legate.exchange(&token, TARGET, None).await;
        match status {
            200 => allowed += 1,
            503 => {
                assert_eq!(body["error"], "temporarily_unavailable", "{body}");
                refused_token = Some(token);
                break;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let refused_token = refused_token.expect("a full audit queue refuses exchanges");
    // One event in the blocked writer plus two queued.
    assert!(
        allowed <= 3,
        "{allowed} exchanges allowed with a queue of 2"
    );
    assert_eq!(f.legate.client.get("/healthz").await.status, 200);
    let stats = f.legate.state.audit().stats();
    assert!(stats.refused_queue_full.load(Ordering::Relaxed) >= 1);

    gate.open();
    let events = f.legate.audit.wait_until(AUDIT_WAIT, |events| {
        events
            .iter()
            .filter(|e| e.decision == Outcome::Allow)
            .count()
            >= allowed
    });
    assert_eq!(
        events
            .iter()
            .filter(|e| e.decision == Outcome::Allow)
            .count(),
        allowed,
        "every issued credential is audited"
    );
    let (status, body) = f.legate.exchange(&refused_token, TARGET, None).await;
    assert_eq!(status, 200, "the refused token was not used up: {body}");
}

/// Stops unaudited issuance through a disconnect: a client that hangs up while its
/// exchange is in flight used to cancel the handler before the audit write. The
/// exchange now finishes in its own task, and its event is written.
#[tokio::test]
async fn a_client_that_disconnects_mid_exchange_still_leaves_an_event() {
    let f = Fixture::start_with(|s| s.warm = false).await;
    // Key discovery takes ~2 s, so the exchange is still running when the client
    // gives up after 300 ms.
    f.issuer.set_discovery_mode(Mode::Drip {
        chunk: 16,
        delay_ms: 100,
    });
    let token = f.token(&json!({}));
    let impatient = plain_http_client(Duration::from_millis(300));
    let sent = impatient
        .post(format!("{}/token", f.legate.url))
        .form(&[
            ("grant_type", GRANT_TYPE),
            ("subject_token", token.as_str()),
            ("subject_token_type", TOKEN_TYPE_JWT),
            ("audience", TARGET),
        ])
        .send()
        .await;
    assert!(sent.is_err(), "the client gave up before the answer");
    let digest = sha256_hex(token.as_bytes());
    // Poll without blocking the runtime: the exchange runs on it.
    let mut events = Vec::new();
    for _ in 0..400 {
        events = f.legate.audit.events();
        if events
            .iter()
            .any(|e| e.subject_token_sha256.as_deref() == Some(digest.as_str()))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let event = events
        .iter()
        .find(|e| e.subject_token_sha256.as_deref() == Some(digest.as_str()))
        .expect("the exchange was audited although the client left");
    assert_eq!(event.decision, Outcome::Allow, "{event:#?}");
    assert!(event.issued_jti.is_some());
}
