//! Token exchange from the in-test HTTPS issuer: allowed, denied by a missing
//! permit, denied by a `forbid`, and the minted token checked by an independent
//! verifier (PyJWT) against Legate's own discovery document and JWKS.

use legate_server::audit::Outcome;
use serde_json::json;

use crate::harness::{
    Fixture, SUBJECT, TARGET, TARGET_AUDIENCE, TARGET_MAX_LIFETIME, TRUST, decode_payload,
    sha256_hex,
};
use crate::peers::verify_with_pyjwt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permitted_exchange_mints_a_token_that_pyjwt_verifies_against_legates_discovery() {
    let f = Fixture::start().await;
    let upstream = f.token(&json!({}));

    let reply = f.legate.exchange_reply(&upstream, TARGET, Some(120)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let body = &reply.json;
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:jwt"
    );
    assert_eq!(body["token_type"], "N_A");
    assert_eq!(body["expires_in"], 120);
    let minted = body["access_token"].as_str().expect("access_token");

    // An independent implementation, fetching Legate's discovery and JWKS.
    let claims = verify_with_pyjwt(&f.legate.url, TARGET_AUDIENCE, minted)
        .await
        .unwrap_or_else(|e| panic!("PyJWT refused Legate's token: {e}"));
    assert_eq!(claims["iss"], f.legate.url.as_str());
    assert_eq!(claims["aud"], TARGET_AUDIENCE);
    assert_eq!(claims["sub"], format!("{TRUST}:{SUBJECT}"));
    assert_eq!(claims["upstream"]["iss"], f.issuer.issuer.as_str());
    assert_eq!(claims["upstream"]["sub"], SUBJECT);
    assert_eq!(claims["upstream"]["trust"], TRUST);
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(iat, f.legate.now());
    assert_eq!(exp - iat, 120, "the requested lifetime, under the cap");
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    // The upstream token's claims are not copied into the minted one.
    assert!(claims.get("repository_id").is_none(), "{claims}");

    // PyJWT refuses it for another audience: the check is real.
    let err = verify_with_pyjwt(&f.legate.url, "https://other.example.com", minted)
        .await
        .expect_err("a token for another audience must not verify");
    assert!(err.contains("udience"), "{err}");

    let event = f.legate.event_of_minted(minted);
    assert_eq!(event.decision, Outcome::Allow);
    assert_eq!(event.reason, "permitted");
    assert_eq!(event.policy_ids, vec!["repo-42-deploys".to_owned()]);
    // The determining policy's lint exception, with its reason, is in the audit.
    assert_eq!(
        event.lint_exceptions,
        vec!["repo-42-deploys: unscoped-issuer: every test issuer mints repository 42".to_owned()]
    );
    assert_eq!(event.trust.as_deref(), Some(TRUST));
    assert_eq!(event.issuer.as_deref(), Some(f.issuer.issuer.as_str()));
    assert_eq!(event.subject.as_deref(), Some(SUBJECT));
    assert_eq!(event.target.as_deref(), Some(TARGET));
    assert_eq!(event.lifetime_secs, Some(120));
    assert_eq!(
        event.subject_token_sha256.as_deref(),
        Some(sha256_hex(upstream.as_bytes()).as_str())
    );
}

#[tokio::test]
async fn issued_lifetime_is_the_requested_one_capped_by_the_target() {
    let f = Fixture::start().await;
    for (requested, expected) in [
        (Some(60), 60),
        (Some(TARGET_MAX_LIFETIME), TARGET_MAX_LIFETIME),
        // More than the target allows: capped, not refused.
        (Some(3_000), TARGET_MAX_LIFETIME),
        // None: the issuer default (300 s), under the cap.
        (None, 300),
    ] {
        let (status, body) = f
            .legate
            .exchange(&f.token(&json!({})), TARGET, requested)
            .await;
        assert_eq!(status, 200, "requested {requested:?}: {body}");
        let claims = decode_payload(body["access_token"].as_str().unwrap());
        let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
        assert_eq!(
            lifetime,
            i64::try_from(expected).unwrap(),
            "requested {requested:?}"
        );
        assert_eq!(body["expires_in"], expected);
        assert!(expected <= TARGET_MAX_LIFETIME);
        assert!(requested.is_none_or(|r| expected <= r));
    }
}

/// Stops a workload of another repository from reaching the target: without a
/// satisfied `permit`, Cedar's default is deny.
#[tokio::test]
async fn claim_that_no_permit_matches_is_denied_by_default() {
    let f = Fixture::start().await;
    let token = f.token(&json!({"repository_id": "43"}));
    let (status, body) = f.legate.exchange(&token, TARGET, None).await;
    let event = f.legate.assert_rejected(status, &body, "no_permit");
    assert_eq!(event.decision, Outcome::Deny);
    assert!(event.policy_ids.is_empty(), "{event:#?}");
    // The token itself was fine: the audit names who was refused.
    assert_eq!(event.subject.as_deref(), Some(SUBJECT));
    assert_eq!(event.trust.as_deref(), Some(TRUST));
}

/// Stops a permitted repository from reaching production from a feature
/// branch: a `forbid` overrides the `permit`, and the audit names the guardrail.
#[tokio::test]
async fn forbid_policy_overrides_a_permit_and_is_named_in_the_audit_event() {
    let f = Fixture::start().await;
    let token = f.token(&json!({"ref": "refs/heads/feature"}));
    let (status, body) = f.legate.exchange(&token, TARGET, None).await;
    let event = f.legate.assert_rejected(status, &body, "forbidden");
    assert_eq!(event.decision, Outcome::Deny);
    assert_eq!(event.policy_ids, vec!["prod-from-main-only".to_owned()]);
}
