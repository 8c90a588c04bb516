//! The public readiness answer and the operator listener (`/status`).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: failing loudly is the point"
)]

use legate_testkit::testkeys::TestKey;
use serde_json::{Value, json};

use crate::harness::{Fixture, Legate, Setup, TRUST, TrustSpec};

/// A fixture whose issuer also publishes an encryption key with `kid` `enc-key`,
/// which Legate leaves out (and reports to operators).
async fn fixture_with_an_ignored_key() -> Fixture {
    let mut enc = TestKey::es256_fresh("enc-key").public_jwk();
    enc["use"] = json!("enc");
    let good = TestKey::es256("key-a").public_jwk();
    Fixture::start_publishing(Some(json!({ "keys": [good, enc] })), |_| {}).await
}

/// Stops reconnaissance through the readiness probe: `/readyz` is public (load
/// balancers call it), so it says ready or not and nothing else. Which issuers
/// are trusted, their key ids, fetch errors and which policy set runs would let a
/// stranger aim (which tokens to steal, which issuer to attack).
#[tokio::test]
async fn readyz_tells_strangers_only_whether_ready() {
    let pki = crate::peers::TestPki::localhost();
    let key = TestKey::es256("key-a");
    let issuer = crate::issuer::TestIssuer::start(&pki, &[&key]).await;
    let mut setup = Setup::new(vec![TrustSpec::with_ca(TRUST, &issuer.issuer, &pki)]);
    setup.warm = false;
    let legate = Legate::start(&setup).await;
    let ready = legate.client.get("/readyz").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json, json!({ "ready": false }), "{}", ready.text);

    let f = fixture_with_an_ignored_key().await;
    let ready = f.legate.client.get("/readyz").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json, json!({ "ready": true }), "{}", ready.text);
    for secret in [f.issuer.issuer.as_str(), "key-a", "enc-key", "sha256"] {
        assert!(!ready.text.contains(secret), "{secret} in {}", ready.text);
    }
}

/// What the readiness probe no longer shows is on the operator listener: each
/// issuer's URL, key count, fetch time, last error and left-out keys, the policy
/// set's count and hash, the server's limits and counters.
#[tokio::test]
async fn status_on_the_operator_listener_shows_trust_policy_and_server() {
    let f = fixture_with_an_ignored_key().await;
    let status = f.legate.operator.get("/status").await;
    assert_eq!(status.status, 200, "{}", status.text);
    assert_eq!(status.header("cache-control"), Some("no-store"));
    let s = &status.json;
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["ready"], true);
    let issuer = &s["issuers"][0];
    assert_eq!(issuer["name"], TRUST);
    assert_eq!(issuer["issuer"], f.issuer.issuer.as_str());
    assert_eq!(issuer["keys"], 1);
    assert_eq!(issuer["last_error"], Value::Null);
    let ignored = issuer["ignored_keys"].to_string();
    assert!(ignored.contains("enc-key"), "{ignored}");
    assert_eq!(s["policy"]["count"], 2);
    let hash = s["policy"]["set_sha256"].as_str().unwrap();
    assert!(
        hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{hash}"
    );
    assert_eq!(s["server"]["max_connections"], 4096);
    assert_eq!(s["server"]["max_in_flight"], 1024);
    assert!(
        s["server"]["connections_accepted"].as_u64().is_some(),
        "{s}"
    );
    assert!(
        s.get("audit").is_some(),
        "a place for the audit counters: {s}"
    );
}

/// Stops the operator view from leaking onto the public listener (and the public
/// API from being reachable through the operator one).
#[tokio::test]
async fn operator_and_public_routes_do_not_cross() {
    let f = Fixture::start().await;
    assert_eq!(f.legate.client.get("/status").await.status, 404);
    assert_eq!(f.legate.operator.get("/readyz").await.status, 404);
    assert_eq!(f.legate.operator.get("/token").await.status, 404);
    assert_eq!(
        f.legate.operator.get("/.well-known/jwks.json").await.status,
        404
    );
}

/// Stops two replicas with different policies from looking alike to operators:
/// the same files give the same hash, one more policy gives another.
#[tokio::test]
async fn status_policy_hash_tells_policy_sets_apart() {
    let hash = |f: &Fixture| {
        let f = f.legate.operator.clone();
        async move {
            f.get("/status").await.json["policy"]["set_sha256"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let a = Fixture::start().await;
    let b = Fixture::start().await;
    let c = Fixture::start_with(|s| {
        s.policies.push((
            "extra.cedar".to_owned(),
            r#"@id("no-dev-branch") forbid (principal, action, resource)
               when { principal.claims has ref && principal.claims.ref == "refs/heads/dev" };"#
                .to_owned(),
        ));
    })
    .await;
    let (ha, hb, hc) = (hash(&a).await, hash(&b).await, hash(&c).await);
    assert_eq!(ha, hb);
    assert_ne!(ha, hc);
}
