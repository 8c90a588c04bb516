//! Revocation and RFC 7662 introspection: `POST /admin/revocations` (by upstream subject,
//! trust, target and `jti`) refuses the next exchange with the generic answer and the
//! audit reason `revoked`, purges the revoked workload's cached cloud credentials (and
//! nobody else's), is bounded, validates its body, is authenticated and authorised like
//! every admin endpoint, reaches a second replica on the same store, and is driven end
//! to end by `legate revoke`; `POST /introspect` tells relying parties whether a token
//! Legate minted is still good, and accepts no token of another audience as its
//! credential.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: failing loudly is the point"
)]

use std::sync::Arc;
use std::time::Duration;

use legate_fakes::{AwsConfig, AwsFake, AwsRole, Options, target_subject};
use legate_server::audit::{AuditEvent, Outcome};
use legate_testkit::testkeys::TestKey;
use serde_json::{Value, json};

use crate::harness::{
    AUDIT_WAIT, CloudTargetSpec, Fixture, Legate, Reply, SUBJECT, Setup, TARGET, TARGET_AUDIENCE,
    TRUST, TrustSpec, UPSTREAM_AUDIENCE, decode_payload, plain_http_client, upstream_claims,
};
use crate::issuer::TestIssuer;
use crate::peers::TestPki;

const ADMIN_AUDIENCE: &str = "legate-admin";
const ADMIN_SUBJECT: &str = "ops:alice";
/// A relying party of the `jwt` target: may introspect, nothing else.
const RP_SUBJECT: &str = "rp:deploy-api";

/// Alice may use every admin endpoint; the relying party only `introspect`.
const ADMIN_POLICY: &str = r#"
@id("ops-alice-admin")
permit (
  principal == Legate::Workload::"ci|ops:alice",
  action == Legate::Action::"admin",
  resource
);

@id("rp-introspects")
permit (
  principal == Legate::Workload::"ci|rp:deploy-api",
  action == Legate::Action::"admin",
  resource == Legate::AdminEndpoint::"introspect"
);
"#;

/// The admin endpoints on, introspection on, and `extra` TOML.
async fn fixture_with(extra: &str) -> Fixture {
    let extra = extra.to_owned();
    Fixture::start_with(move |setup| {
        setup.extra_toml.push_str(&format!(
            "\n[admin]\nenabled = true\naudience = \"{ADMIN_AUDIENCE}\"\nintrospection = true\n{extra}"
        ));
        setup
            .policies
            .push(("admin.cedar".to_owned(), ADMIN_POLICY.to_owned()));
    })
    .await
}

async fn fixture() -> Fixture {
    fixture_with("").await
}

/// A fresh token of the admin audience (single-use trust: a new `jti` each time).
fn admin_token(f: &Fixture, sub: &str) -> String {
    f.token(&json!({ "sub": sub, "aud": ADMIN_AUDIENCE }))
}

async fn send(url: String, method: &str, token: Option<&str>, body: Option<Value>) -> Reply {
    let http = plain_http_client(Duration::from_secs(20));
    let mut request = match method {
        "GET" => http.get(&url),
        _ => http.post(&url),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let resp = request.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        text,
        json,
    }
}

/// `POST /admin/revocations` on `legate`'s operator listener with a fresh admin token.
async fn revoke_at(legate: &Legate, token: &str, body: Value) -> Reply {
    send(
        format!("{}/admin/revocations", legate.operator.url),
        "POST",
        Some(token),
        Some(body),
    )
    .await
}

async fn revoke(f: &Fixture, body: Value) -> Reply {
    revoke_at(&f.legate, &admin_token(f, ADMIN_SUBJECT), body).await
}

/// `POST /introspect` on the public listener, authenticated with `bearer`.
async fn introspect(f: &Fixture, bearer: Option<&str>, token: &str) -> Reply {
    let http = plain_http_client(Duration::from_secs(20));
    let mut request = http
        .post(format!("{}/introspect", f.legate.url))
        .form(&[("token", token), ("token_type_hint", "access_token")]);
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let resp = request.send().await.expect("introspect");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        text,
        json,
    }
}

/// The `admin_access` audit event of the admin request answered by `reply`.
fn admin_event(legate: &Legate, reply: &Reply) -> AuditEvent {
    let id = reply
        .header("x-request-id")
        .expect("X-Request-Id")
        .to_owned();
    legate
        .audit
        .wait_until(AUDIT_WAIT, |events| {
            events.iter().any(|e| e.request_id == id)
        })
        .into_iter()
        .find(|e| e.request_id == id)
        .expect("an admin_access event")
}

/// Asserts `body` is the generic rejection with audit reason `revoked` naming the
/// revocation `id`, and that the audit event holds no token.
fn assert_revoked(legate: &Legate, status: u16, body: &Value, id: &str, token: &str) {
    let event = legate.assert_rejected(status, body, "revoked");
    assert_eq!(event.decision, Outcome::Deny);
    assert_eq!(
        event.detail.as_deref(),
        Some(format!("revoked by revocation `{id}`").as_str()),
        "{event:#?}"
    );
    assert!(
        !format!("{event:?}").contains(token),
        "no token in the audit"
    );
    assert!(
        !body.to_string().contains(id),
        "the client is not told it was revoked: {body}"
    );
}

/// The id of a 201 answer.
fn created(reply: &Reply) -> String {
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.json["id"].as_str().expect("id").to_owned()
}

// ------------------------------------------------------------------ each selector

/// Stops a compromised workload from buying new credentials once an operator revoked
/// its upstream subject; other subjects are untouched.
#[tokio::test]
async fn revoking_a_subject_refuses_its_next_exchange() {
    let f = fixture().await;
    let (status, _) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200);
    let reply = revoke(
        &f,
        json!({ "subject": SUBJECT, "reason": "runner compromised" }),
    )
    .await;
    let id = created(&reply);
    let r = &reply.json;
    assert_eq!(r["subject"], SUBJECT);
    assert_eq!(r["reason"], "runner compromised");
    assert_eq!(r["created_by"], format!("{TRUST}:{ADMIN_SUBJECT}"));
    assert!(r["created_at"].is_i64());
    assert!(
        r.get("expires_at").is_none(),
        "a subject revocation does not expire"
    );
    assert!(r.get("trust").is_none() && r.get("jti").is_none(), "{r}");

    let token = f.token(&json!({}));
    let (status, body) = f.legate.exchange(&token, TARGET, None).await;
    assert_revoked(&f.legate, status, &body, &id, &token);
    let other = f.token(&json!({ "sub": "repo:acme/other:ref:refs/heads/main" }));
    let (status, body) = f.legate.exchange(&other, TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    // The admin request itself is audited with what was revoked.
    let event = admin_event(&f.legate, &reply);
    assert_eq!(event.decision, Outcome::Allow);
    let detail = event.detail.unwrap();
    assert!(detail.contains(&id) && detail.contains(SUBJECT), "{detail}");
}

/// Stops every workload of a compromised issuer at once: revoking the trust refuses
/// them all.
#[tokio::test]
async fn revoking_a_trust_refuses_its_next_exchange() {
    let f = fixture().await;
    let id = created(&revoke(&f, json!({ "trust": TRUST, "reason": "issuer key leaked" })).await);
    let token = f.token(&json!({ "sub": "repo:acme/anything" , "repository_id": "42"}));
    let (status, body) = f.legate.exchange(&token, TARGET, None).await;
    assert_revoked(&f.legate, status, &body, &id, &token);
}

/// Stops a target (a cloud account under incident) from being reached at all.
#[tokio::test]
async fn revoking_a_target_refuses_its_next_exchange() {
    let f = fixture().await;
    let id = created(&revoke(&f, json!({ "target": TARGET, "reason": "account frozen" })).await);
    let token = f.token(&json!({}));
    let (status, body) = f.legate.exchange(&token, TARGET, None).await;
    assert_revoked(&f.legate, status, &body, &id, &token);
}

/// Stops one leaked token (named by its `jti`) from being exchanged, while the same
/// workload's other tokens still work; the revocation expires once no token with
/// that `jti` can be valid.
#[tokio::test]
async fn revoking_a_jti_refuses_that_token_only() {
    let f = fixture().await;
    let claims = f.claims(&json!({}));
    let jti = claims["jti"].as_str().unwrap().to_owned();
    let token = f.key.token(&claims);
    let reply = revoke(
        &f,
        json!({ "jti": jti, "trust": TRUST, "reason": "token leaked in a log" }),
    )
    .await;
    let id = created(&reply);
    let expires_at = reply.json["expires_at"]
        .as_i64()
        .expect("a jti revocation expires");
    assert!(expires_at > f.legate.now() + 3600, "{}", reply.text);
    let (status, body) = f.legate.exchange(&token, TARGET, None).await;
    assert_revoked(&f.legate, status, &body, &id, &token);
    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200, "{body}");
}

/// Stops a revocation from being worked around by repeating it: the same selectors
/// again answer the live revocation (200), nothing is stored twice; the list shows
/// each once, oldest first.
#[tokio::test]
async fn the_same_revocation_twice_is_stored_once_and_listed() {
    let f = fixture().await;
    let first = created(&revoke(&f, json!({ "subject": "a", "reason": "r" })).await);
    let second = created(
        &revoke(
            &f,
            json!({ "target": TARGET, "subject": "b", "reason": "r" }),
        )
        .await,
    );
    let again = revoke(&f, json!({ "subject": "a", "reason": "other words" })).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json["id"], first.as_str());
    let list = send(
        format!("{}/admin/revocations", f.legate.operator.url),
        "GET",
        Some(&admin_token(&f, ADMIN_SUBJECT)),
        None,
    )
    .await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.header("cache-control"), Some("no-store"));
    let ids: Vec<&str> = list.json["revocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{}", list.text);
    assert!(ids.contains(&first.as_str()) && ids.contains(&second.as_str()));
}

// ------------------------------------------------------------------ the cache

/// A revocation purges the revoked workload's cached cloud credentials on the spot,
/// and nobody else's: an unrelated workload's next exchange is still served from the
/// cache (no cloud call), the revoked one is refused before the cache, never served
/// from it.
#[tokio::test]
async fn a_revocation_purges_the_revoked_workloads_cached_credentials_only() {
    const AWS_TARGET: &str = "aws-deploy";
    let pki = TestPki::localhost();
    let key = TestKey::es256("key-a");
    let issuer = TestIssuer::start(&pki, &[&key]).await;
    let reservation = Legate::reserve().await;
    let mut aws = AwsConfig::new(reservation.url.as_str()).with_role(
        AwsRole::new("deploy").trusting("sts.amazonaws.com", target_subject(AWS_TARGET)),
    );
    aws.account_id = "123456789012".to_owned();
    let fake = AwsFake::start_with(
        aws,
        Options {
            clock: reservation.clock.clone(),
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let mut setup = Setup::new(vec![TrustSpec::with_ca(TRUST, &issuer.issuer, &pki)]);
    setup.cloud_targets = vec![
        CloudTargetSpec::aws(AWS_TARGET, &fake.role_arn("deploy"), fake.url())
            .key("max_lifetime_secs", 3600),
    ];
    setup.policies.push((
        "aws.cedar".to_owned(),
        r#"
@id("repo-42-uses-aws")
@allow_lint("unscoped-issuer: one test issuer")
permit (principal, action == Legate::Action::"exchange", resource == Legate::Target::"aws-deploy")
when { principal.claims has repository_id && principal.claims.repository_id == "42" };
"#
        .to_owned(),
    ));
    setup
        .policies
        .push(("admin.cedar".to_owned(), ADMIN_POLICY.to_owned()));
    setup.extra_toml.push_str(&format!(
        "\n[admin]\nenabled = true\naudience = \"{ADMIN_AUDIENCE}\"\n"
    ));
    let legate = Legate::start_reserved(reservation, &setup).await;
    let token_of = |sub: &str, aud: &str| {
        key.token(&upstream_claims(
            &issuer.issuer,
            legate.now(),
            &json!({ "sub": sub, "aud": aud, "repository_id": "42", "ref": "refs/heads/main" }),
        ))
    };
    let alice = "repo:acme/alice:ref:refs/heads/main";
    let bob = "repo:acme/bob:ref:refs/heads/main";
    let exchange = |sub: &'static str| {
        let token = token_of(sub, UPSTREAM_AUDIENCE);
        let client = legate.client.clone();
        async move { (client.exchange(&token, AWS_TARGET, Some(900)).await, token) }
    };
    let key_id = |body: &Value| body["aws_credentials"]["AccessKeyId"].clone();
    let ((status, alice_first), _) = exchange(alice).await;
    assert_eq!(status, 200, "{alice_first}");
    let ((status, bob_first), _) = exchange(bob).await;
    assert_eq!(status, 200, "{bob_first}");
    let ((status, alice_again), _) = exchange(alice).await;
    assert_eq!(
        key_id(&alice_again),
        key_id(&alice_first),
        "cached: {status}"
    );
    assert_eq!(fake.stats().requests, 2);

    let reply = revoke_at(
        &legate,
        &token_of(ADMIN_SUBJECT, ADMIN_AUDIENCE),
        json!({ "subject": alice, "trust": TRUST, "reason": "compromised" }),
    )
    .await;
    let id = created(&reply);
    assert_eq!(legate.state.credential_cache_stats().purged, 1);
    let detail = admin_event(&legate, &reply).detail.unwrap();
    assert!(detail.contains("1 cached credentials purged"), "{detail}");

    // Bob: still served from the cache.
    let ((status, bob_again), _) = exchange(bob).await;
    assert_eq!(status, 200, "{bob_again}");
    assert_eq!(key_id(&bob_again), key_id(&bob_first));
    assert_eq!(fake.stats().requests, 2, "no cloud call for bob");
    // Alice: refused, never served.
    let ((status, body), token) = exchange(alice).await;
    assert_revoked(&legate, status, &body, &id, &token);
    assert_eq!(fake.stats().requests, 2);
    assert!(!body.to_string().contains("AccessKeyId"));
}

// ------------------------------------------------------------------ bounds and bodies

/// The designed answer at `[revocation] max_entries`: 409 `revocation_limit`, nothing
/// stored and nothing evicted (evicting would silently un-revoke someone).
#[tokio::test]
async fn the_revocation_limit_refuses_and_evicts_nothing() {
    let f = fixture_with("\n[revocation]\nmax_entries = 2\n").await;
    let a = created(&revoke(&f, json!({ "subject": "a", "reason": "r" })).await);
    created(&revoke(&f, json!({ "subject": "b", "reason": "r" })).await);
    let full = revoke(&f, json!({ "subject": "c", "reason": "r" })).await;
    assert_eq!(full.status, 409, "{}", full.text);
    assert_eq!(full.json["error"], "revocation_limit");
    assert!(
        full.json["error_description"]
            .as_str()
            .unwrap()
            .contains("max_entries"),
        "{}",
        full.text
    );
    assert_eq!(admin_event(&f.legate, &full).decision, Outcome::Allow);
    // Still enforced: the first one.
    let token = f.token(&json!({ "sub": "a" }));
    let (status, body) = f.legate.exchange(&token, TARGET, None).await;
    assert_revoked(&f.legate, status, &body, &a, &token);
}

/// Stops malformed or mistyped revocations from being stored (a typo in a trust or
/// target name would silently revoke nothing): each is a 400 that names the problem.
#[tokio::test]
async fn bad_revocation_bodies_are_refused_with_400() {
    let f = fixture().await;
    let cases = [
        (
            json!({ "reason": "r" }),
            "give at least one of `subject`, `trust`, `target`, `jti`",
        ),
        (json!({ "subject": "a" }), "`reason` is required"),
        (
            json!({ "subject": "a", "reason": "  " }),
            "`reason` is required",
        ),
        (
            json!({ "subject": "", "reason": "r" }),
            "`subject` must not be empty",
        ),
        (
            json!({ "subject": "a", "reason": "a\nb" }),
            "`reason` holds a control character",
        ),
        (
            json!({ "trust": "cj", "reason": "r" }),
            "no configured trust is named `cj`",
        ),
        (
            json!({ "target": "deploy-apl", "reason": "r" }),
            "no configured target is named `deploy-apl`",
        ),
        (
            json!({ "jti": "j".repeat(257), "reason": "r" }),
            "`jti` is longer than 256 bytes",
        ),
        (
            json!({ "subject": "a", "reason": "r".repeat(1025) }),
            "`reason` is longer than 1024 bytes",
        ),
    ];
    for (body, description) in cases {
        let reply = revoke(&f, body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        assert_eq!(reply.json["error"], "invalid_request");
        assert_eq!(reply.json["error_description"], description, "{body}");
    }
    for body in [
        json!({ "subject": "a", "reason": "r", "expires_at": 1 }),
        json!({ "subject": 7, "reason": "r" }),
        json!("subject"),
    ] {
        let reply = revoke(&f, body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        assert!(
            reply.json["error_description"]
                .as_str()
                .unwrap()
                .starts_with("invalid revocation: "),
            "{}",
            reply.text
        );
    }
    let oversized = json!({ "subject": "a", "reason": "r", "pad": "x".repeat(70 * 1024) });
    let reply = revoke(&f, oversized).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(reply.text.contains("at most 65536 bytes"), "{}", reply.text);
    // Nothing was stored: the standard workload still exchanges.
    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200, "{body}");
}

/// Stops anyone but an authorised admin from revoking (a denial of service on any
/// workload) or listing revocations: no token or a workload's exchange token is 401, a
/// valid admin-audience token whose principal Cedar does not permit on `revocations`
/// (the relying party, permitted only to introspect) is 403.
#[tokio::test]
async fn revocations_need_an_authorised_admin() {
    let f = fixture().await;
    let url = format!("{}/admin/revocations", f.legate.operator.url);
    let body = json!({ "subject": SUBJECT, "reason": "r" });
    for method in ["POST", "GET"] {
        let reply = send(url.clone(), method, None, Some(body.clone())).await;
        assert_eq!(reply.status, 401, "{method}: {}", reply.text);
        assert_eq!(
            admin_event(&f.legate, &reply).reason,
            "missing_bearer_token"
        );

        let exchange_token = f.token(&json!({ "sub": ADMIN_SUBJECT }));
        let reply = send(
            url.clone(),
            method,
            Some(&exchange_token),
            Some(body.clone()),
        )
        .await;
        assert_eq!(reply.status, 401, "{method}: {}", reply.text);
        assert_eq!(admin_event(&f.legate, &reply).reason, "audience_mismatch");

        let rp = admin_token(&f, RP_SUBJECT);
        let reply = send(url.clone(), method, Some(&rp), Some(body.clone())).await;
        assert_eq!(reply.status, 403, "{method}: {}", reply.text);
        let event = admin_event(&f.legate, &reply);
        assert_eq!(event.target.as_deref(), Some("admin:revocations"));
    }
    // Nothing was revoked.
    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200, "{body}");
}

// ------------------------------------------------------------------ the fleet

/// Two replicas on one revocation store: a revocation taken by one is enforced by the
/// other (through the store's notice; the test polls up to a generous ceiling, it does
/// not time it).
#[tokio::test]
async fn a_revocation_at_one_replica_is_enforced_by_the_other() {
    let pki = TestPki::localhost();
    let key = TestKey::es256("key-a");
    let issuer = TestIssuer::start(&pki, &[&key]).await;
    let store: Arc<dyn legate_state::RevocationStore> =
        Arc::new(legate_state::MemoryRevocationStore::new(100));
    let mut setup = Setup::new(vec![TrustSpec::with_ca(TRUST, &issuer.issuer, &pki)]);
    setup
        .policies
        .push(("admin.cedar".to_owned(), ADMIN_POLICY.to_owned()));
    setup.extra_toml.push_str(&format!(
        "\n[admin]\nenabled = true\naudience = \"{ADMIN_AUDIENCE}\"\n"
    ));
    setup.revocation_store = Some(store);
    let one = Legate::start(&setup).await;
    let two = Legate::start(&setup).await;
    let token = |legate: &Legate, extra: Value| {
        let mut base = json!({ "repository_id": "42", "ref": "refs/heads/main" });
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        key.token(&upstream_claims(&issuer.issuer, legate.now(), &base))
    };
    let ready = |legate: &Legate| legate.state.revocations().is_loaded();
    for _ in 0..3_000 {
        if ready(&one) && ready(&two) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, body) = two.exchange(&token(&two, json!({})), TARGET, None).await;
    assert_eq!(status, 200, "{body}");

    let id = created(
        &revoke_at(
            &one,
            &token(&one, json!({ "sub": ADMIN_SUBJECT, "aud": ADMIN_AUDIENCE })),
            json!({ "subject": SUBJECT, "reason": "fleet-wide" }),
        )
        .await,
    );
    let query = legate_state::RevocationQuery {
        trust: TRUST,
        subject: SUBJECT,
        target: TARGET,
        jti: None,
    };
    let mut enforced = false;
    for _ in 0..3_000 {
        if let legate_server::revocation::Verdict::Revoked(r) =
            two.state.revocations().check(&query, two.now())
        {
            assert_eq!(r.id, id);
            enforced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(enforced, "the second replica learnt of the revocation");
    let refused = token(&two, json!({}));
    let (status, body) = two.exchange(&refused, TARGET, None).await;
    assert_revoked(&two, status, &body, &id, &refused);
}

// ------------------------------------------------------------------ the CLI

/// `legate revoke` end to end with a `file:` token source: prints the stored
/// revocation and exits 0; the revoked workload is refused; a refused request (an
/// unknown target) exits 1 with Legate's error; no selector is a usage error (2).
#[tokio::test]
async fn legate_revoke_stores_a_revocation_end_to_end() {
    let f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.jwt");
    let source = format!("file:{}", token_file.display());
    let run = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::client::legate(&args, &[]).await
    };
    let base = |extra: &[&str]| {
        let mut args: Vec<String> = [
            "revoke",
            "--url",
            &f.legate.operator.url,
            "--token-source",
            &source,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };

    std::fs::write(&token_file, admin_token(&f, ADMIN_SUBJECT)).unwrap();
    let out = run(base(&[
        "--subject",
        SUBJECT,
        "--target",
        TARGET,
        "--reason",
        "cli test",
    ]))
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let stored: Value = serde_json::from_str(out.stdout.trim()).expect("one JSON line");
    assert_eq!(stored["subject"], SUBJECT);
    assert_eq!(stored["target"], TARGET);
    assert_eq!(stored["reason"], "cli test");
    let id = stored["id"].as_str().unwrap();
    let token = f.token(&json!({}));
    let (status, body) = f.legate.exchange(&token, TARGET, None).await;
    assert_revoked(&f.legate, status, &body, id, &token);

    std::fs::write(&token_file, admin_token(&f, ADMIN_SUBJECT)).unwrap();
    let out = run(base(&["--target", "nope", "--reason", "typo"])).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("no configured target is named `nope`"),
        "{out:?}"
    );
    assert!(out.stdout.is_empty());

    let out = run(base(&["--reason", "no selector"])).await;
    assert_eq!(out.code, Some(2), "{out:?}");

    let out = run([
        "revoke",
        "--url",
        &f.legate.operator.url,
        "--token-source",
        "file:/nonexistent/t",
        "--jti",
        "j",
        "--reason",
        "r",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect())
    .await;
    assert_eq!(out.code, Some(3), "{out:?}");
}

// ------------------------------------------------------------------ introspection

/// A token Legate minted for a `jwt` target is active with its claims (RFC 7662 §2.2);
/// once expired, not Legate's, or garbage it is `{"active": false}` and nothing more.
#[tokio::test]
async fn introspection_answers_active_for_a_valid_minted_token_only() {
    let f = fixture().await;
    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    let minted = body["access_token"].as_str().unwrap().to_owned();
    let claims = decode_payload(&minted);

    let reply = introspect(&f, Some(&admin_token(&f, RP_SUBJECT)), &minted).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let a = &reply.json;
    assert_eq!(a["active"], true, "{a}");
    assert_eq!(a["iss"], f.legate.url.as_str());
    assert_eq!(a["sub"], format!("{TRUST}:{SUBJECT}"));
    assert_eq!(a["aud"], TARGET_AUDIENCE);
    assert_eq!(a["target"], TARGET);
    for name in ["exp", "iat", "nbf", "jti"] {
        assert_eq!(a[name], claims[name], "{name}");
    }
    let event = admin_event(&f.legate, &reply);
    assert_eq!(event.target.as_deref(), Some("admin:introspect"));
    assert!(
        !format!("{event:?}").contains(&minted),
        "no token in the audit"
    );

    // Not Legate's: the upstream token itself; garbage; a forged signature.
    let upstream = f.token(&json!({}));
    let stranger = TestKey::es256_b("key-a");
    let mut forged_claims = claims.clone();
    forged_claims["exp"] = json!(f.legate.now() + 60);
    let forged = stranger.token(&forged_claims);
    for token in [upstream.as_str(), "not.a.jwt", "", forged.as_str()] {
        let reply = introspect(&f, Some(&admin_token(&f, RP_SUBJECT)), token).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.json, json!({ "active": false }), "{token}");
    }

    // Expired: no leeway.
    let exp = claims["exp"].as_i64().unwrap();
    f.legate.clock.set(exp);
    let reply = introspect(&f, Some(&admin_token(&f, RP_SUBJECT)), &minted).await;
    assert_eq!(reply.json, json!({ "active": false }));
    let detail = admin_event(&f.legate, &reply).detail.unwrap();
    assert!(detail.contains("expired"), "{detail}");
}

/// Stops a revoked token from being honoured by relying parties: revoked by its `jti`,
/// or by the subject it was minted for, introspection answers inactive.
#[tokio::test]
async fn introspection_answers_inactive_for_revoked_tokens() {
    let f = fixture().await;
    let mint = || async {
        let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    };
    let first = mint().await;
    let second = mint().await;
    let jti = decode_payload(&first)["jti"].as_str().unwrap().to_owned();
    let id = created(&revoke(&f, json!({ "jti": jti, "reason": "token leaked" })).await);

    let reply = introspect(&f, Some(&admin_token(&f, RP_SUBJECT)), &first).await;
    assert_eq!(reply.json, json!({ "active": false }));
    let detail = admin_event(&f.legate, &reply).detail.unwrap();
    assert!(detail.contains(&id), "{detail}");
    let reply = introspect(&f, Some(&admin_token(&f, RP_SUBJECT)), &second).await;
    assert_eq!(reply.json["active"], true, "only that jti: {}", reply.text);

    created(
        &revoke(
            &f,
            json!({ "subject": SUBJECT, "trust": TRUST, "reason": "workload compromised" }),
        )
        .await,
    );
    let reply = introspect(&f, Some(&admin_token(&f, RP_SUBJECT)), &second).await;
    assert_eq!(reply.json, json!({ "active": false }));
}

/// Stops token confusion at the introspection door: a workload's exchange token, a
/// token Legate minted (aud = the target) and no token at all are not credentials
/// here (401); an admin-audience token whose principal Cedar does not permit on
/// `introspect` is 403; the endpoint is on the public listener only, and absent unless
/// enabled.
#[tokio::test]
async fn introspection_accepts_only_authorised_admin_audience_tokens() {
    let f = fixture_with("").await;
    let (_, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    let minted = body["access_token"].as_str().unwrap().to_owned();

    let exchange_token = f.token(&json!({ "sub": RP_SUBJECT }));
    for (bearer, reason) in [
        (Some(exchange_token.as_str()), "audience_mismatch"),
        (Some(minted.as_str()), "untrusted_issuer"),
        (None, "missing_bearer_token"),
    ] {
        let reply = introspect(&f, bearer, &minted).await;
        assert_eq!(reply.status, 401, "{reason}: {}", reply.text);
        assert_eq!(reply.json["error"], "invalid_token");
        assert_eq!(admin_event(&f.legate, &reply).reason, reason);
    }
    // Permitted on every admin endpoint but introspect? Bob is permitted on none.
    let reply = introspect(&f, Some(&admin_token(&f, "ops:bob")), &minted).await;
    assert_eq!(reply.status, 403, "{}", reply.text);

    // Missing `token`: 400.
    let http = plain_http_client(Duration::from_secs(20));
    let resp = http
        .post(format!("{}/introspect", f.legate.url))
        .bearer_auth(admin_token(&f, RP_SUBJECT))
        .form(&[("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);

    // Not on the operator listener.
    let reply = send(
        format!("{}/introspect", f.legate.operator.url),
        "POST",
        Some(&admin_token(&f, RP_SUBJECT)),
        None,
    )
    .await;
    assert_eq!(reply.status, 404, "{}", reply.text);

    // Off unless `[admin] introspection = true`.
    let plain = Fixture::start_with(|setup| {
        setup.extra_toml.push_str(&format!(
            "\n[admin]\nenabled = true\naudience = \"{ADMIN_AUDIENCE}\"\n"
        ));
    })
    .await;
    let reply = introspect(&plain, Some(&admin_token(&plain, RP_SUBJECT)), &minted).await;
    assert_eq!(reply.status, 404, "{}", reply.text);
}

// ------------------------------------------------------------------ a fleet on Redis

/// Two replicas on one real Redis: a revocation taken by one is enforced by the other
/// (Redis pub/sub, and the full read every `sync_interval_secs` if the message is
/// lost); the test polls up to a generous ceiling, it does not time it. The stored
/// revocation is listed by the other replica too.
#[tokio::test]
async fn a_revocation_at_one_redis_replica_is_enforced_by_the_other() {
    use crate::redis_server::{RedisOptions, RedisServer};
    let redis = RedisServer::start(RedisOptions::default()).await;
    let toml = format!(
        "{}\n[admin]\nenabled = true\naudience = \"{ADMIN_AUDIENCE}\"\n",
        redis.state_toml()
    );
    let a_toml = toml.clone();
    let f = Fixture::start_with(move |s| {
        s.extra_toml.push_str(&a_toml);
        s.policies
            .push(("admin.cedar".to_owned(), ADMIN_POLICY.to_owned()));
    })
    .await;
    let mut setup = Setup::new(vec![TrustSpec::with_ca(TRUST, &f.issuer.issuer, &f.pki)]);
    setup.extra_toml.push_str(&toml);
    setup
        .policies
        .push(("admin.cedar".to_owned(), ADMIN_POLICY.to_owned()));
    let b = Legate::start(&setup).await;
    // Past the state epoch (single-use tokens minted before it are refused).
    f.legate.clock.advance(120);
    b.clock.advance(120);
    for _ in 0..3_000 {
        if f.legate.state.revocations().is_loaded() && b.state.revocations().is_loaded() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let token_at = |legate: &Legate, extra: Value| {
        let mut base = json!({ "repository_id": "42", "ref": "refs/heads/main" });
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        f.key
            .token(&upstream_claims(&f.issuer.issuer, legate.now(), &base))
    };
    let (status, body) = b.exchange(&token_at(&b, json!({})), TARGET, None).await;
    assert_eq!(status, 200, "{body}");

    let id = created(
        &revoke_at(
            &f.legate,
            &token_at(
                &f.legate,
                json!({ "sub": ADMIN_SUBJECT, "aud": ADMIN_AUDIENCE }),
            ),
            json!({ "subject": SUBJECT, "trust": TRUST, "reason": "fleet-wide" }),
        )
        .await,
    );
    let query = legate_state::RevocationQuery {
        trust: TRUST,
        subject: SUBJECT,
        target: TARGET,
        jti: None,
    };
    let mut enforced = false;
    for _ in 0..3_000 {
        if let legate_server::revocation::Verdict::Revoked(r) =
            b.state.revocations().check(&query, b.now())
        {
            assert_eq!(r.id, id);
            enforced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(enforced, "the second replica learnt of the revocation");
    let refused = token_at(&b, json!({}));
    let (status, body) = b.exchange(&refused, TARGET, None).await;
    assert_revoked(&b, status, &body, &id, &refused);

    let list = send(
        format!("{}/admin/revocations", b.operator.url),
        "GET",
        Some(&token_at(
            &b,
            json!({ "sub": ADMIN_SUBJECT, "aud": ADMIN_AUDIENCE }),
        )),
        None,
    )
    .await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(
        list.json["revocations"][0]["id"],
        id.as_str(),
        "{}",
        list.text
    );
}
