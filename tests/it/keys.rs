//! The trust store against a live issuer: key rotation, unknown-`kid` floods and
//! outages, with Legate's time moved by hand ([`ManualClock`]).
//!
//! Legate refreshes an issuer's keys at most once per 30 s (its warm-up fetch
//! counts), so tests that expect a fetch first move the clock past that gap.
//!
//! [`ManualClock`]: legate_server::clock::ManualClock

use legate_server::audit::Outcome;
use legate_testkit::testkeys::TestKey;
use serde_json::json;
use tokio::task::JoinSet;

use crate::harness::{Fixture, TARGET, random_id};
use crate::issuer::Mode;

/// Legate's minimum gap between two fetches of one issuer's keys, plus one.
const PAST_REFRESH_GAP: i64 = 31;

#[tokio::test]
async fn rotated_in_key_is_picked_up_with_exactly_one_extra_jwks_fetch() {
    let f = Fixture::start().await;
    assert_eq!(f.issuer.jwks_hits(), 1, "warm-up fetched the JWKS once");
    let key_b = TestKey::es256_b("key-b");
    f.issuer.publish(&[&f.key, &key_b]);
    f.legate.clock.advance(PAST_REFRESH_GAP);

    let claims = f.claims(&json!({}));
    let (status, body) = f.legate.exchange(&key_b.token(&claims), TARGET, None).await;
    assert_eq!(status, 200, "token signed by the new key: {body}");
    assert_eq!(f.issuer.jwks_hits(), 2, "exactly one extra JWKS fetch");

    // Both keys are now cached: neither needs another fetch.
    let (status, body) = f
        .legate
        .exchange(&key_b.token(&f.claims(&json!({}))), TARGET, None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200, "token signed by the old key: {body}");
    assert_eq!(f.issuer.jwks_hits(), 2);
}

/// Stops a denial-of-service amplification: tokens with random `kid`s must not
/// make Legate fetch the issuer's JWKS once per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_flood_causes_at_most_one_jwks_fetch_per_30_seconds() {
    let f = Fixture::start().await;
    f.legate.clock.advance(PAST_REFRESH_GAP);
    let (discovery_before, jwks_before, _) = f.issuer.hits();
    assert_eq!(jwks_before, 1);

    // 50 concurrent requests, each with a fresh unknown kid; the clock stands still.
    let mut requests = JoinSet::new();
    for _ in 0..50 {
        let mut forged = f.key.clone();
        forged.kid = random_id();
        let token = forged.token(&f.claims(&json!({})));
        let client = f.legate.client.clone();
        requests.spawn(async move { client.exchange(&token, TARGET, None).await });
    }
    while let Some(result) = requests.join_next().await {
        let (status, body) = result.expect("request task");
        let event = f.legate.assert_rejected(status, &body, "unknown_kid");
        assert_eq!(event.decision, Outcome::Deny);
    }
    let jwks_flood = f.issuer.jwks_hits() - jwks_before;
    assert_eq!(jwks_flood, 1, "one refresh for 50 unknown kids");
    assert!(f.issuer.discovery_hits() - discovery_before <= 1);

    // Still within the gap: no fetch at all.
    f.legate.clock.advance(PAST_REFRESH_GAP - 2);
    let mut forged = f.key.clone();
    forged.kid = random_id();
    let (status, body) = f
        .legate
        .exchange(&forged.token(&f.claims(&json!({}))), TARGET, None)
        .await;
    f.legate.assert_rejected(status, &body, "unknown_kid");
    assert_eq!(f.issuer.jwks_hits(), jwks_before + 1);

    // Past the gap: one more unknown kid, exactly one more fetch.
    f.legate.clock.advance(2);
    forged.kid = random_id();
    let (status, body) = f
        .legate
        .exchange(&forged.token(&f.claims(&json!({}))), TARGET, None)
        .await;
    f.legate.assert_rejected(status, &body, "unknown_kid");
    assert_eq!(f.issuer.jwks_hits(), jwks_before + 2);

    // The real key was never disturbed.
    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(f.issuer.jwks_hits(), jwks_before + 2);
}

/// Keeps an issuer outage from becoming a Legate outage (stale-if-error), and
/// bounds it: keys older than `stale_if_error_secs` are no longer trusted.
#[tokio::test]
async fn issuer_outage_is_bridged_by_cached_keys_until_the_stale_bound() {
    let f = Fixture::start_with(|s| {
        s.trusts[0].refresh_interval_secs = Some(60);
        s.trusts[0].stale_if_error_secs = Some(600);
    })
    .await;
    assert_eq!(f.issuer.hits(), (1, 1, 0));

    // Outage 1: HTTP 503 from both endpoints.
    f.issuer.set_mode(Mode::Unavailable);
    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200, "cached keys serve during the outage: {body}");
    assert_eq!(
        f.issuer.hits(),
        (1, 1, 0),
        "no fetch while the keys are fresh"
    );

    // The scheduled refresh is due; it runs in the background and fails.
    f.legate.clock.advance(61);
    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200, "stale-if-error: {body}");
    f.issuer.wait_for_discovery_hits_above(1).await;
    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(
        status, 200,
        "still serving after the failed refresh: {body}"
    );

    // Outage 2: the connection is dropped without an answer.
    f.issuer.set_mode(Mode::Drop);
    f.legate.clock.advance(120);
    let seen = f.issuer.discovery_hits();
    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200, "stale-if-error, dropped connections: {body}");
    f.issuer.wait_for_discovery_hits_above(seen).await;
    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        f.issuer.jwks_hits(),
        1,
        "discovery never answered, so no JWKS fetch"
    );

    // Past the stale bound (fetched at t0, now t0 + 601+): fail closed, and say
    // so as a temporary condition rather than a rejected token.
    f.legate.clock.advance(420);
    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    let event = f.legate.event_of(&body);
    assert_eq!(event.reason, "keys_unavailable");
    assert_eq!(event.decision, Outcome::Error);

    // The issuer recovers: the next request past the refresh gap fetches fresh keys.
    f.issuer.set_mode(Mode::Up);
    f.legate.clock.advance(PAST_REFRESH_GAP);
    let jwks_before = f.issuer.jwks_hits();
    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200, "recovered: {body}");
    assert_eq!(f.issuer.jwks_hits(), jwks_before + 1);
}

/// The issuer's keys are only fetched at warm-up while they are fresh: a steady
/// stream of valid tokens costs no upstream request.
#[tokio::test]
async fn known_kid_needs_no_fetch_until_the_refresh_interval() {
    let f = Fixture::start_with(|s| s.trusts[0].refresh_interval_secs = Some(120)).await;
    for _ in 0..5 {
        let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
        assert_eq!(status, 200, "{body}");
        f.legate.clock.advance(20);
    }
    assert_eq!(f.issuer.hits(), (1, 1, 0));

    // At the interval, the next request triggers a background refresh.
    f.legate.clock.advance(40);
    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    f.issuer.wait_for_discovery_hits_above(1).await;
}

/// A trust with a fixed `jwks_uri` fetches exactly that document and never
/// the discovery document.
#[tokio::test]
async fn jwks_uri_trust_fetches_the_jwks_without_discovery() {
    let f = Fixture::start_with(|s| {
        let jwks = format!("{}/jwks", s.trusts[0].issuer);
        s.trusts[0].jwks_uri = Some(jwks);
    })
    .await;
    assert_eq!(f.issuer.hits(), (0, 1, 0));
    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(f.issuer.hits(), (0, 1, 0));
}

/// Stops a man in the middle of the key fetch: without the private issuer's
/// CA in `ca_file`, its certificate is not trusted, no HTTP request is made,
/// and tokens are not verified with keys from an unauthenticated source; the
/// client is told to retry (the keys are unavailable), not that its token is bad.
#[tokio::test]
async fn issuer_certificate_from_an_unconfigured_ca_is_not_trusted() {
    let f = Fixture::start_with(|s| s.trusts[0].ca_file = None).await;
    assert_eq!(f.issuer.hits(), (0, 0, 0), "TLS failed before any request");
    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    let event = f.legate.event_of(&body);
    assert_eq!(event.reason, "keys_unavailable");
    assert_eq!(event.trust.as_deref(), Some(crate::harness::TRUST));
    assert_eq!(f.issuer.hits(), (0, 0, 0));
}
