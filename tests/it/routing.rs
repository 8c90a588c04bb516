//! Routing by exact `iss`, before any network call.

use legate_server::audit::Outcome;
use serde_json::json;

use crate::harness::{Fixture, TARGET, TARGET_AUDIENCE};
use crate::issuer::TestIssuer;

/// Stops server-side request forgery and key injection through the token: an
/// attacker's token naming an issuer of their choosing (a real, reachable OIDC
/// issuer here) must not make Legate fetch anything from it, nor from the
/// trusted issuer; near-miss spellings of the trusted issuer are not trusted.
#[tokio::test]
async fn untrusted_issuer_is_rejected_before_any_network_call() {
    let f = Fixture::start().await;
    let attacker = TestIssuer::start(&f.pki, &[&f.key]).await;
    f.legate.clock.advance(31); // a refresh would be allowed now, were one attempted
    let trusted_hits = f.issuer.hits();

    let trusted = f.issuer.issuer.clone();
    for iss in [
        attacker.issuer.clone(),
        format!("{trusted}/"),
        trusted.replace("localhost", "127.0.0.1"),
        trusted.to_uppercase(),
        format!("{trusted}/.well-known/openid-configuration"),
        trusted.replace("https://", "http://"),
        "https://evil.example".to_owned(),
    ] {
        let token = f.key.token(&f.claims(&json!({ "iss": iss })));
        let (status, body) = f.legate.exchange(&token, TARGET, None).await;
        let event = f.legate.assert_rejected(status, &body, "untrusted_issuer");
        assert_eq!(event.decision, Outcome::Deny);
        assert_eq!(event.trust, None, "routed nowhere: {event:#?}");
    }
    assert_eq!(
        attacker.hits(),
        (0, 0, 0),
        "the attacker's issuer was never contacted"
    );
    assert_eq!(f.issuer.hits(), trusted_hits, "nor the trusted one");
}

/// Stops key injection through the JOSE header: `jku` (and `x5u`) would point
/// Legate at the attacker's keys; the header is refused, nothing is fetched.
#[tokio::test]
async fn jku_header_is_refused_and_never_fetched() {
    let f = Fixture::start().await;
    let attacker = TestIssuer::start(&f.pki, &[&f.key]).await;
    let claims = f.claims(&json!({}));
    for (name, url) in [("jku", attacker.jwks_url()), ("x5u", attacker.jwks_url())] {
        let mut header = json!({"alg": "ES256", "kid": "key-a", "typ": "JWT"});
        header[name] = json!(url);
        let token = f.key.token_with_header(&header, &claims);
        let (status, body) = f.legate.exchange(&token, TARGET, None).await;
        f.legate.assert_rejected(status, &body, "forbidden_header");
    }
    assert_eq!(attacker.hits(), (0, 0, 0));
}

/// Stops token laundering: a token Legate minted cannot be exchanged again at
/// Legate (for a longer lifetime or another target), since Legate does not
/// trust itself.
#[tokio::test]
async fn legates_own_minted_token_is_refused_as_a_subject_token() {
    let f = Fixture::start().await;
    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    let minted = body["access_token"].as_str().unwrap().to_owned();
    let hits = f.issuer.hits();

    let (status, body) = f.legate.exchange(&minted, TARGET, Some(600)).await;
    let event = f.legate.assert_rejected(status, &body, "untrusted_issuer");
    assert_eq!(event.issuer.as_deref(), Some(f.legate.url.as_str()));
    assert_eq!(f.issuer.hits(), hits);

    // Its audience is the target's, not Legate's, in any case.
    assert_eq!(
        crate::harness::decode_payload(&minted)["aud"],
        TARGET_AUDIENCE
    );
}
