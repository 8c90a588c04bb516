//! The HTTP contract: RFC 8693 / RFC 6749 error codes, request ids that lead to
//! the audit event, an audit log free of tokens, health and readiness, and
//! Legate's discovery document and JWKS.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions: failing loudly is the point"
)]

use legate_server::audit::Outcome;
use legate_testkit::testkeys::TestKey;
use serde_json::{Value, json};

use crate::harness::{
    Fixture, GRANT_TYPE, Legate, Setup, TARGET, TOKEN_TYPE_JWT, TrustSpec, decode_header,
    decode_payload, sha256_hex,
};

fn assert_error(reply: &crate::harness::Reply, status: u16, error: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(reply.json["error"], error, "{}", reply.text);
    assert!(
        reply.json["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{}",
        reply.text
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert!(
        reply
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        reply.headers
    );
}

#[tokio::test]
async fn wrong_grant_type_is_unsupported_grant_type() {
    let f = Fixture::start().await;
    let token = f.token(&json!({}));
    let reply = f
        .legate
        .client
        .post_form(&[
            ("grant_type", "client_credentials"),
            ("subject_token", &token),
            ("subject_token_type", TOKEN_TYPE_JWT),
            ("audience", TARGET),
        ])
        .await;
    assert_error(&reply, 400, "unsupported_grant_type");
    let event = f.legate.event_by_id(reply.request_id());
    assert_eq!(event.decision, Outcome::Error);
    assert_eq!(event.reason, "bad_request");
}

#[tokio::test]
async fn unknown_audience_is_invalid_target() {
    let f = Fixture::start().await;
    let reply = f
        .legate
        .exchange_reply(&f.token(&json!({})), "no-such-target", None)
        .await;
    assert_error(&reply, 400, "invalid_target");
    let event = f.legate.event_by_id(reply.request_id());
    assert_eq!(event.reason, "unknown_target");
    assert_eq!(event.target.as_deref(), Some("no-such-target"));
    // Decided before the token was looked at: nothing was fetched or spent.
    assert_eq!(f.issuer.hits(), (1, 1, 0));
}

#[tokio::test]
async fn non_form_content_type_is_invalid_request() {
    let f = Fixture::start().await;
    let token = f.token(&json!({}));
    let form = format!(
        "grant_type={}&subject_token={token}&subject_token_type={}&audience={TARGET}",
        GRANT_TYPE, TOKEN_TYPE_JWT
    );
    let json_body = json!({
        "grant_type": GRANT_TYPE,
        "subject_token": token,
        "subject_token_type": TOKEN_TYPE_JWT,
        "audience": TARGET,
    })
    .to_string();
    for (content_type, body) in [
        ("application/json", json_body),
        // A form body with the wrong declared type is not read as a form either.
        ("text/plain", form.clone()),
        ("multipart/form-data; boundary=x", form),
    ] {
        let reply = f.legate.client.post_raw(content_type, body).await;
        assert_error(&reply, 400, "invalid_request");
        let event = f.legate.event_by_id(reply.request_id());
        assert_eq!(event.reason, "bad_request", "{content_type}");
    }
}

#[tokio::test]
async fn malformed_requests_are_invalid_request_with_an_audited_request_id() {
    let f = Fixture::start().await;
    let token = f.token(&json!({}));
    let cases: Vec<Vec<(&str, &str)>> = vec![
        // No grant_type.
        vec![
            ("subject_token", &token),
            ("subject_token_type", TOKEN_TYPE_JWT),
            ("audience", TARGET),
        ],
        // No subject token.
        vec![
            ("grant_type", GRANT_TYPE),
            ("subject_token_type", TOKEN_TYPE_JWT),
            ("audience", TARGET),
        ],
        // Unsupported subject token type.
        vec![
            ("grant_type", GRANT_TYPE),
            ("subject_token", &token),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:saml2",
            ),
            ("audience", TARGET),
        ],
        // A repeated parameter (RFC 6749 §3.2).
        vec![
            ("grant_type", GRANT_TYPE),
            ("subject_token", &token),
            ("subject_token", &token),
            ("subject_token_type", TOKEN_TYPE_JWT),
            ("audience", TARGET),
        ],
        // A lifetime that is not a whole number of seconds.
        vec![
            ("grant_type", GRANT_TYPE),
            ("subject_token", &token),
            ("subject_token_type", TOKEN_TYPE_JWT),
            ("audience", TARGET),
            ("requested_lifetime", "1e3"),
        ],
    ];
    for form in cases {
        let reply = f.legate.client.post_form(&form).await;
        assert_error(&reply, 400, "invalid_request");
        let event = f.legate.event_by_id(reply.request_id());
        assert_eq!(event.decision, Outcome::Error, "{form:?}");
    }
    // None of these spent the token.
    let (status, body) = f.legate.exchange(&token, TARGET, None).await;
    assert_eq!(status, 200, "{body}");
}

/// Stops probing: a caller cannot tell from the answer whether a token was
/// forged, expired, from an untrusted issuer, replayed or denied by policy
/// (which would map the trust configuration and the policies). The precise
/// reason is only in the audit event the `request_id` leads to.
#[tokio::test]
async fn every_rejected_subject_token_gets_the_same_wire_answer() {
    let f = Fixture::start().await;
    let now = f.legate.now();
    let replayed = f.token(&json!({}));
    assert_eq!(f.legate.exchange(&replayed, TARGET, None).await.0, 200);
    // Another key under the trusted kid: a forged signature.
    let other_key = TestKey::es256_b("key-a");
    let alg_none = {
        use legate_core::b64;
        let header = json!({"alg": "none", "typ": "JWT"}).to_string();
        let payload = f.claims(&json!({})).to_string();
        format!("{}.{}.", b64::encode(header), b64::encode(payload))
    };

    let cases: Vec<(&str, String)> = vec![
        ("not_compact_jws", "not-a-jwt".to_owned()),
        ("unsupported_alg", alg_none),
        (
            "untrusted_issuer",
            f.token(&json!({"iss": "https://evil.example"})),
        ),
        ("bad_signature", other_key.token(&f.claims(&json!({})))),
        (
            "unknown_kid",
            TestKey::es256("key-zzz").token(&f.claims(&json!({}))),
        ),
        (
            "audience_mismatch",
            f.token(&json!({"aud": "someone-else"})),
        ),
        (
            "expired",
            f.token(&json!({"iat": now - 1000, "nbf": now - 1000, "exp": now - 400})),
        ),
        ("missing_claim", f.token(&json!({"jti": null}))),
        ("replayed", replayed.clone()),
        ("no_permit", f.token(&json!({"repository_id": "7"}))),
        ("forbidden", f.token(&json!({"ref": "refs/heads/dev"}))),
    ];
    let mut answers = Vec::new();
    for (reason, token) in &cases {
        let reply = f.legate.exchange_reply(token, TARGET, None).await;
        assert_error(&reply, 400, "invalid_request");
        let event = f.legate.event_by_id(reply.request_id());
        assert_eq!(event.reason, *reason, "{event:#?}");
        assert_eq!(event.decision, Outcome::Deny, "{event:#?}");
        let mut body = reply.json.clone();
        body.as_object_mut().unwrap().remove("request_id");
        answers.push((
            reason,
            reply.status,
            body,
            reply.header("cache-control").map(str::to_owned),
        ));
    }
    let (_, status, body, cache) = &answers[0];
    for (reason, s, b, c) in &answers {
        assert_eq!(
            (s, b, c),
            (status, body, cache),
            "the answer for `{reason}` differs from the others"
        );
    }
    assert_eq!(
        body,
        &json!({
            "error": "invalid_request",
            "error_description": legate_server::error::GENERIC_REJECTION,
        })
    );
}

/// Stops the audit log from becoming a token store: whoever reads it must not
/// be able to replay a subject token (single-use tokens excepted) or use a
/// minted one. Only the subject token's SHA-256 is recorded.
#[tokio::test]
async fn audit_log_never_contains_the_subject_token_or_the_minted_token() {
    let f = Fixture::start().await;
    let mut secrets: Vec<String> = Vec::new();

    let upstream = f.token(&json!({}));
    let (status, body) = f.legate.exchange(&upstream, TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    let minted = body["access_token"].as_str().unwrap().to_owned();
    let event = f.legate.event_of_minted(&minted);
    assert_eq!(
        event.subject_token_sha256.as_deref(),
        Some(sha256_hex(upstream.as_bytes()).as_str())
    );
    assert_eq!(
        event.issued_jti.as_deref(),
        decode_payload(&minted)["jti"].as_str()
    );
    secrets.push(upstream.clone());
    secrets.push(minted.clone());

    // Rejections of various kinds, each with a valid-looking token.
    for token in [
        upstream.clone(),                                 // replayed
        f.token(&json!({"repository_id": "9"})),          // policy
        f.token(&json!({"aud": "elsewhere"})),            // verification
        f.token(&json!({"iss": "https://evil.example"})), // routing
        minted.clone(),                                   // Legate's own token
    ] {
        let (status, body) = f.legate.exchange(&token, TARGET, None).await;
        assert_eq!(status, 400, "{body}");
        secrets.push(token);
    }
    // A token sent where it does not belong (a wrong grant type) is not logged either.
    let stray = f.token(&json!({}));
    let reply = f
        .legate
        .client
        .post_form(&[
            ("grant_type", "password"),
            ("subject_token", &stray),
            ("subject_token_type", TOKEN_TYPE_JWT),
            ("audience", TARGET),
        ])
        .await;
    assert_eq!(reply.status, 400);
    secrets.push(stray);

    let events = f
        .legate
        .audit
        .wait_until(crate::harness::AUDIT_WAIT, |events| events.len() >= 7);
    assert_eq!(events.len(), 7, "one event per request");
    let log: String = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "a whole token is in the audit log"
        );
        let mut parts = secret.split('.');
        let (_, payload, signature) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        assert!(
            !log.contains(payload),
            "a token payload is in the audit log"
        );
        assert!(
            !log.contains(signature),
            "a token signature is in the audit log"
        );
    }
}

#[tokio::test]
async fn readyz_turns_200_once_upstream_keys_were_fetched() {
    let pki = crate::peers::TestPki::localhost();
    let key = TestKey::es256("key-a");
    let issuer = crate::issuer::TestIssuer::start(&pki, &[&key]).await;
    let mut setup = Setup::new(vec![TrustSpec::with_ca("ci", &issuer.issuer, &pki)]);
    setup.warm = false;
    let legate = Legate::start(&setup).await;

    let health = legate.client.get("/healthz").await;
    assert_eq!(health.status, 200);
    let ready = legate.client.get("/readyz").await;
    assert_eq!(
        ready.status, 503,
        "not ready before the first fetch: {}",
        ready.text
    );
    assert_eq!(ready.json["ready"], false);
    assert_eq!(issuer.hits(), (0, 0, 0), "readiness checks do not fetch");

    legate.state.warm().await;
    let ready = legate.client.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.json["ready"], true);
    let operator = legate.operator.get("/status").await;
    assert_eq!(operator.json["ready"], true, "{}", operator.text);
    let status = &operator.json["issuers"][0];
    assert_eq!(status["name"], "ci");
    assert_eq!(status["issuer"], issuer.issuer.as_str());
    assert_eq!(status["keys"], 1);
    assert_eq!(status["last_error"], Value::Null);
    assert_eq!(issuer.hits(), (1, 1, 0));
}

/// What relying parties (AWS IAM, Google WIF, PyJWT) read to trust Legate: the
/// discovery `issuer` is the exact `iss` Legate mints, and its JWKS publishes
/// public keys only, one of which signed the minted token.
#[tokio::test]
async fn discovery_names_the_public_url_and_the_jwks_holds_public_keys_only() {
    let f = Fixture::start().await;
    let discovery = f
        .legate
        .client
        .get("/.well-known/openid-configuration")
        .await;
    assert_eq!(discovery.status, 200, "{}", discovery.text);
    let doc = &discovery.json;
    assert_eq!(doc["issuer"], f.legate.url.as_str());
    assert_eq!(doc["token_endpoint"], format!("{}/token", f.legate.url));
    let jwks_uri = doc["jwks_uri"].as_str().expect("jwks_uri");
    let path = jwks_uri
        .strip_prefix(&f.legate.url)
        .unwrap_or_else(|| panic!("jwks_uri {jwks_uri} is not on Legate"));

    let jwks = f.legate.client.get(path).await;
    assert_eq!(jwks.status, 200, "{}", jwks.text);
    let keys = jwks.json["keys"].as_array().expect("keys array");
    assert!(!keys.is_empty());
    for key in keys {
        let key = key.as_object().unwrap();
        for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            assert!(
                !key.contains_key(private),
                "private member `{private}` in {key:?}"
            );
        }
        assert!(key.get("kid").and_then(Value::as_str).is_some(), "{key:?}");
    }

    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    let header = decode_header(body["access_token"].as_str().unwrap());
    assert!(
        keys.iter()
            .any(|k| k["kid"] == header["kid"] && k["alg"] == header["alg"]),
        "the signing key {header} is published in {keys:?}"
    );
    let algs = doc["id_token_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    assert!(algs.contains(&header["alg"]), "{doc}");
}
