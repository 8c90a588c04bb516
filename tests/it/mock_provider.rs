//! Exchange of tokens minted by a real third-party OIDC provider, the npm
//! package `oauth2-mock-server` (RS256, its own discovery and JWKS over HTTPS
//! with a certificate from the test CA).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions: failing loudly is the point"
)]

use legate_server::audit::Outcome;
use serde_json::{Value, json};

use crate::harness::{
    Legate, SUBJECT, Setup, TARGET, TARGET_AUDIENCE, TOKEN_TYPE_ID_TOKEN, TrustSpec,
    UPSTREAM_AUDIENCE, decode_header, decode_payload,
};
use crate::peers::{OidcProvider, TestPki, verify_with_pyjwt};

const MOCK_TRUST: &str = "mock";

struct Mock {
    pki: TestPki,
    provider: OidcProvider,
    legate: Legate,
}

impl Mock {
    async fn start() -> Mock {
        let pki = TestPki::localhost();
        let provider = OidcProvider::start(&pki.cert_path, &pki.key_path, "RS256").await;
        let mut trust = TrustSpec::with_ca(MOCK_TRUST, &provider.issuer, &pki);
        trust.algorithms = Some(vec!["RS256"]);
        let legate = Legate::start(&Setup::new(vec![trust])).await;
        Mock {
            pki,
            provider,
            legate,
        }
    }

    async fn mint(&self, claims: Value) -> String {
        self.provider.mint(claims, self.pki.ca_pem.as_bytes()).await
    }
}

fn workload(extra: &Value) -> Value {
    let mut claims = json!({
        "sub": SUBJECT,
        "aud": UPSTREAM_AUDIENCE,
        "repository_id": "42",
        "ref": "refs/heads/main",
    });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_mock_server_token_is_exchanged_and_the_result_verifies_in_pyjwt() {
    let m = Mock::start().await;
    let upstream = m.mint(workload(&json!({}))).await;
    let header = decode_header(&upstream);
    assert_eq!(
        header["alg"], "RS256",
        "the provider signs with RSA: {header}"
    );
    assert_eq!(decode_payload(&upstream)["iss"], m.provider.issuer.as_str());

    let (status, body) = m.legate.exchange(&upstream, TARGET, Some(90)).await;
    assert_eq!(status, 200, "{body}");
    let minted = body["access_token"].as_str().unwrap();
    let claims = verify_with_pyjwt(&m.legate.url, TARGET_AUDIENCE, minted)
        .await
        .unwrap_or_else(|e| panic!("PyJWT refused Legate's token: {e}"));
    assert_eq!(claims["iss"], m.legate.url.as_str());
    assert_eq!(claims["aud"], TARGET_AUDIENCE);
    assert_eq!(claims["sub"], format!("{MOCK_TRUST}:{SUBJECT}"));
    assert_eq!(claims["upstream"]["iss"], m.provider.issuer.as_str());
    assert_eq!(claims["upstream"]["sub"], SUBJECT);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        90
    );
    let event = m.legate.event_of_minted(minted);
    assert_eq!(event.decision, Outcome::Allow);
    assert_eq!(event.trust.as_deref(), Some(MOCK_TRUST));

    // The same kind of token presented as an OIDC ID token is accepted too.
    let upstream = m.mint(workload(&json!({}))).await;
    let reply = m
        .legate
        .client
        .post_form(&[
            ("grant_type", crate::harness::GRANT_TYPE),
            ("subject_token", &upstream),
            ("subject_token_type", TOKEN_TYPE_ID_TOKEN),
            ("audience", TARGET),
        ])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

/// Stops a token minted for another relying party from being spent at
/// Legate (token forwarding across audiences).
#[tokio::test]
async fn oauth2_mock_server_token_for_another_audience_is_rejected() {
    let m = Mock::start().await;
    let token = m
        .mint(workload(
            &json!({"aud": "https://some-other-service.example"}),
        ))
        .await;
    let (status, body) = m.legate.exchange(&token, TARGET, None).await;
    let event = m.legate.assert_rejected(status, &body, "audience_mismatch");
    assert_eq!(event.decision, Outcome::Deny);
    assert_eq!(event.trust.as_deref(), Some(MOCK_TRUST));
}

/// Stops a genuine token of another repository from reaching the target.
#[tokio::test]
async fn oauth2_mock_server_token_of_another_repository_is_denied_by_policy() {
    let m = Mock::start().await;
    let token = m.mint(workload(&json!({"repository_id": "1337"}))).await;
    let (status, body) = m.legate.exchange(&token, TARGET, None).await;
    let event = m.legate.assert_rejected(status, &body, "no_permit");
    assert_eq!(event.subject.as_deref(), Some(SUBJECT));
}

/// Stops replay-protection bypass: a single-use trust refuses a token with no
/// `jti`, which could otherwise be exchanged any number of times.
#[tokio::test]
async fn oauth2_mock_server_token_without_jti_is_rejected_by_a_single_use_trust() {
    let m = Mock::start().await;
    let token = m
        .provider
        .mint_without(workload(&json!({})), &["jti"], m.pki.ca_pem.as_bytes())
        .await;
    assert!(decode_payload(&token).get("jti").is_none());
    let (status, body) = m.legate.exchange(&token, TARGET, None).await;
    m.legate.assert_rejected(status, &body, "missing_claim");
}
