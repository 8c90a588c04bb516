//! Replay protection per trust: single-use (the default) and reusable.

use legate_server::audit::Outcome;
use legate_testkit::testkeys::TestKey;
use serde_json::json;

use crate::harness::{Fixture, TARGET, TrustSpec, decode_payload, upstream_claims};
use crate::issuer::TestIssuer;
use crate::peers::TestPki;

/// Stops token replay: a token captured from a CI log or a compromised step
/// cannot be exchanged a second time, even with a different target lifetime or
/// once the first exchange's credential has been used.
#[tokio::test]
async fn single_use_token_is_refused_the_second_time() {
    let f = Fixture::start().await;
    let token = f.token(&json!({}));
    let (status, body) = f.legate.exchange(&token, TARGET, None).await;
    assert_eq!(status, 200, "{body}");

    f.legate.clock.advance(10);
    let (status, body) = f.legate.exchange(&token, TARGET, Some(60)).await;
    let event = f.legate.assert_rejected(status, &body, "replayed");
    assert_eq!(event.decision, Outcome::Deny);
    assert_eq!(
        event.jti.as_deref(),
        decode_payload(&token)["jti"].as_str(),
        "the audit names the replayed jti"
    );

    // A different token of the same workload (new jti) is fine.
    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200, "{body}");
}

/// Stops a replay through re-encoding: the cache is keyed on (`iss`, `jti`),
/// so a second token with the same `jti` but different bytes (here: another
/// claim changed and re-signed) is refused too.
#[tokio::test]
async fn same_jti_in_different_token_bytes_is_a_replay() {
    let f = Fixture::start().await;
    let claims = f.claims(&json!({}));
    let (status, body) = f.legate.exchange(&f.key.token(&claims), TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    let mut again = claims.clone();
    again["iat"] = json!(claims["iat"].as_i64().unwrap() + 1);
    let (status, body) = f.legate.exchange(&f.key.token(&again), TARGET, None).await;
    f.legate.assert_rejected(status, &body, "replayed");
}

#[tokio::test]
async fn reusable_trust_accepts_the_same_token_twice() {
    // A second issuer, trusted with replay = "reusable" (Kubernetes-style tokens).
    let pki = TestPki::localhost();
    let key = TestKey::es256("key-r");
    let reusable_issuer = TestIssuer::start(&pki, &[&key]).await;
    let reusable_url = reusable_issuer.issuer.clone();
    let ca = pki.ca_path.clone();
    let f = Fixture::start_with(move |s| {
        let mut t = TrustSpec::new("k8s", &reusable_url);
        t.ca_file = Some(ca);
        t.replay = Some("reusable");
        s.trusts.push(t);
    })
    .await;
    let claims = upstream_claims(
        &reusable_issuer.issuer,
        f.legate.now(),
        &json!({"repository_id": "42", "ref": "refs/heads/main"}),
    );
    let token = key.token(&claims);
    for attempt in 1..=3 {
        let (status, body) = f.legate.exchange(&token, TARGET, None).await;
        assert_eq!(status, 200, "attempt {attempt}: {body}");
        f.legate.clock.advance(5);
    }
    // Reusable tokens need no jti at all.
    let mut no_jti = claims.clone();
    no_jti.as_object_mut().unwrap().remove("jti");
    let (status, body) = f.legate.exchange(&key.token(&no_jti), TARGET, None).await;
    assert_eq!(status, 200, "{body}");

    // The single-use trust next to it still refuses a second use.
    let single = f.token(&json!({}));
    assert_eq!(f.legate.exchange(&single, TARGET, None).await.0, 200);
    let (status, body) = f.legate.exchange(&single, TARGET, None).await;
    f.legate.assert_rejected(status, &body, "replayed");
}
