//! The admin endpoints (`[admin] enabled = true`): off by default; bearer tokens of the
//! admin audience from a trusted issuer, authorised by Cedar; no token confusion with
//! the exchange audience in either direction; a prior exchange's decision looked up by
//! its request id; a claims set explained.

#![allow(
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers: a failed request or a missing field is a failed test"
)]

use legate_server::audit::{AuditEvent, Outcome};
use serde_json::{Value, json};

use crate::harness::{AUDIT_WAIT, Fixture, Reply, TARGET, UPSTREAM_AUDIENCE, plain_http_client};

const ADMIN_AUDIENCE: &str = "legate-admin";
const ADMIN_SUBJECT: &str = "ops:alice";

/// Alice (of the test trust `ci`) may use both admin endpoints.
const ADMIN_POLICY: &str = r#"
@id("ops-alice-admin")
permit (
  principal == Legate::Workload::"ci|ops:alice",
  action == Legate::Action::"admin",
  resource
);
"#;

async fn admin_fixture() -> Fixture {
    Fixture::start_with(|setup| {
        setup.extra_toml.push_str(&format!(
            "\n[admin]\nenabled = true\naudience = \"{ADMIN_AUDIENCE}\"\nrecent_decisions = 16\n"
        ));
        setup
            .policies
            .push(("admin.cedar".to_owned(), ADMIN_POLICY.to_owned()));
    })
    .await
}

/// A fresh admin token (single-use trust: a new `jti` each time) for `sub` and `aud`.
fn admin_token(f: &Fixture, sub: &str, aud: Value) -> String {
    f.token(&json!({ "sub": sub, "aud": aud }))
}

async fn call(
    f: &Fixture,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let http = plain_http_client(std::time::Duration::from_secs(20));
    let url = format!("{}{path}", f.legate.operator.url);
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
    let resp = request.send().await.expect("admin request");
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

/// The `admin_access` audit event of the admin request whose answer is `reply`.
fn admin_event(f: &Fixture, reply: &Reply) -> AuditEvent {
    let id = reply.header("x-request-id").map(str::to_owned);
    assert!(id.is_some(), "admin answers carry X-Request-Id: {reply:?}");
    let events = f.legate.audit.wait_until(AUDIT_WAIT, |events| {
        events
            .iter()
            .any(|e| e.event == "admin_access" && id.as_deref().is_none_or(|id| e.request_id == id))
    });
    events
        .into_iter()
        .rev()
        .find(|e| e.event == "admin_access" && id.as_deref().is_none_or(|id| e.request_id == id))
        .expect("an admin_access event")
}

fn assert_401(reply: &Reply) {
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    assert_eq!(reply.json["error"], "invalid_token");
}

#[tokio::test]
async fn admin_endpoints_are_off_unless_enabled() {
    let f = Fixture::start().await;
    let token = admin_token(&f, ADMIN_SUBJECT, json!(ADMIN_AUDIENCE));
    let reply = call(&f, "GET", "/admin/decisions/x", Some(&token), None).await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    let reply = call(&f, "POST", "/admin/explain", Some(&token), Some(json!({}))).await;
    assert_eq!(reply.status, 404, "{}", reply.text);
}

/// Stops the admin surface from being exposed where `/token` is: enabled, it is served
/// on the operator listener only.
#[tokio::test]
async fn admin_endpoints_are_never_on_the_public_listener() {
    let f = admin_fixture().await;
    let token = admin_token(&f, ADMIN_SUBJECT, json!(ADMIN_AUDIENCE));
    let public = plain_http_client(std::time::Duration::from_secs(20))
        .get(format!("{}/admin/decisions/x", f.legate.url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(public.status().as_u16(), 404);
    let reply = call(&f, "GET", "/admin/decisions/x", Some(&token), None).await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert_eq!(
        reply.json["error"], "not_found",
        "the operator listener answers"
    );
}

/// Stops anonymous or forged callers: a missing, malformed or wrongly signed bearer
/// token is 401 with `WWW-Authenticate`, and audited without the token.
#[tokio::test]
async fn admin_requests_without_a_valid_bearer_token_are_refused() {
    let f = admin_fixture().await;
    let reply = call(&f, "GET", "/admin/decisions/x", None, None).await;
    assert_401(&reply);
    let event = admin_event(&f, &reply);
    assert_eq!(event.reason, "missing_bearer_token");
    assert_eq!(event.decision, Outcome::Deny);

    let reply = call(&f, "GET", "/admin/decisions/x", Some("not.a.jwt"), None).await;
    assert_401(&reply);

    // Signed by a key the issuer does not publish.
    let stranger = legate_testkit::testkeys::TestKey::es256_b("key-a");
    let forged = stranger.token(&f.claims(&json!({ "sub": ADMIN_SUBJECT, "aud": ADMIN_AUDIENCE })));
    let reply = call(&f, "POST", "/admin/explain", Some(&forged), Some(json!({}))).await;
    assert_401(&reply);
    let event = admin_event(&f, &reply);
    assert_eq!(event.reason, "bad_signature", "{event:?}");
    assert!(
        !format!("{event:?}").contains(&forged),
        "the token is never audited"
    );
}

/// Stops token confusion from the exchange door to the admin door: a workload's
/// exchange token (aud = the exchange audience), or one naming both audiences, is not
/// an admin credential.
#[tokio::test]
async fn an_exchange_token_is_not_an_admin_credential() {
    let f = admin_fixture().await;
    let exchange = admin_token(&f, ADMIN_SUBJECT, json!(UPSTREAM_AUDIENCE));
    let reply = call(&f, "GET", "/admin/decisions/x", Some(&exchange), None).await;
    assert_401(&reply);
    assert_eq!(admin_event(&f, &reply).reason, "audience_mismatch");

    let both = admin_token(
        &f,
        ADMIN_SUBJECT,
        json!([ADMIN_AUDIENCE, UPSTREAM_AUDIENCE]),
    );
    let reply = call(&f, "GET", "/admin/decisions/x", Some(&both), None).await;
    assert_401(&reply);
    assert_eq!(admin_event(&f, &reply).reason, "audience_not_admin_only");
}

/// Stops token confusion from the admin door to the exchange door: an admin token
/// (aud = the admin audience, alone or beside the exchange audience) buys nothing at
/// `/token`.
#[tokio::test]
async fn an_admin_token_is_refused_at_the_token_endpoint() {
    let f = admin_fixture().await;
    let admin = f.token(&json!({ "aud": ADMIN_AUDIENCE }));
    let (status, body) = f.legate.exchange(&admin, TARGET, None).await;
    f.legate.assert_rejected(status, &body, "audience_mismatch");

    let both = f.token(&json!({ "aud": [UPSTREAM_AUDIENCE, ADMIN_AUDIENCE] }));
    let (status, body) = f.legate.exchange(&both, TARGET, None).await;
    f.legate.assert_rejected(status, &body, "admin_audience");
}

/// Stops an authenticated but unauthorised caller: a valid admin-audience token whose
/// principal no admin policy permits is 403, audited with Cedar's reason; a replayed
/// admin token of a single-use trust is 401.
#[tokio::test]
async fn cedar_decides_who_is_an_admin() {
    let f = admin_fixture().await;
    let bob = admin_token(&f, "ops:bob", json!(ADMIN_AUDIENCE));
    let reply = call(&f, "GET", "/admin/decisions/x", Some(&bob), None).await;
    assert_eq!(reply.status, 403, "{}", reply.text);
    let event = admin_event(&f, &reply);
    assert_eq!(event.reason, "no_permit");
    assert_eq!(event.subject.as_deref(), Some("ops:bob"));
    assert_eq!(event.target.as_deref(), Some("admin:decisions"));

    let alice = admin_token(&f, ADMIN_SUBJECT, json!(ADMIN_AUDIENCE));
    let reply = call(&f, "GET", "/admin/decisions/x", Some(&alice), None).await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    let reply = call(&f, "GET", "/admin/decisions/x", Some(&alice), None).await;
    assert_401(&reply);
    assert_eq!(admin_event(&f, &reply).reason, "replayed");
}

#[tokio::test]
async fn an_admin_looks_up_a_prior_exchange_and_explains_a_claims_set() {
    let f = admin_fixture().await;
    // A denied exchange: production is reached from main only.
    let upstream = f.token(&json!({ "ref": "refs/heads/dev" }));
    let denied = f.legate.exchange_reply(&upstream, TARGET, None).await;
    assert_eq!(denied.status, 400, "{}", denied.text);
    let request_id = denied.request_id().to_owned();

    let token = admin_token(&f, ADMIN_SUBJECT, json!(ADMIN_AUDIENCE));
    let reply = call(
        &f,
        "GET",
        &format!("/admin/decisions/{request_id}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let d = &reply.json;
    assert_eq!(d["request_id"], request_id.as_str());
    assert_eq!(d["decision"], "deny");
    assert_eq!(d["reason"], "forbidden");
    assert_eq!(d["determining_policies"], json!(["prod-from-main-only"]));
    assert_eq!(d["trust"], "ci");
    assert_eq!(d["target"], TARGET);
    assert!(!reply.text.contains(&upstream), "no token in the answer");
    let event = admin_event(&f, &reply);
    assert_eq!(event.decision, Outcome::Allow);
    assert_eq!(event.policy_ids, ["ops-alice-admin"]);

    // The same claims, explained.
    let claims = f.claims(&json!({ "ref": "refs/heads/dev" }));
    let token = admin_token(&f, ADMIN_SUBJECT, json!(ADMIN_AUDIENCE));
    let body = json!({ "claims": claims, "target": TARGET, "source_ip": "192.0.2.1" });
    let reply = call(&f, "POST", "/admin/explain", Some(&token), Some(body)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let e = &reply.json;
    assert_eq!(e["decision"], "deny");
    assert_eq!(e["reason"], "forbidden");
    let policies = e["policies"].as_array().expect("policies");
    let ids: Vec<&str> = policies.iter().filter_map(|p| p["id"].as_str()).collect();
    assert_eq!(
        ids,
        ["prod-from-main-only", "repo-42-deploys"],
        "admin policies are not listed"
    );
    assert_eq!(policies[0]["outcome"], "satisfied");
    assert_eq!(policies[1]["outcome"], "satisfied");

    // Main branch: allowed; a claims set without `iss` is a 400.
    let token = admin_token(&f, ADMIN_SUBJECT, json!(ADMIN_AUDIENCE));
    let body =
        json!({ "claims": f.claims(&json!({})), "target": TARGET, "requested_lifetime": 60 });
    let reply = call(&f, "POST", "/admin/explain", Some(&token), Some(body)).await;
    assert_eq!(reply.json["decision"], "allow", "{}", reply.text);
    let token = admin_token(&f, ADMIN_SUBJECT, json!(ADMIN_AUDIENCE));
    let body = json!({ "claims": { "sub": "x" }, "target": TARGET });
    let reply = call(&f, "POST", "/admin/explain", Some(&token), Some(body)).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(
        reply.json["error_description"],
        "the claims have no string `iss`"
    );

    // The body is bounded: an oversized one is refused, not buffered.
    let token = admin_token(&f, ADMIN_SUBJECT, json!(ADMIN_AUDIENCE));
    let body = json!({ "claims": { "pad": "x".repeat(70 * 1024) }, "target": TARGET });
    let reply = call(&f, "POST", "/admin/explain", Some(&token), Some(body)).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(reply.text.contains("at most 65536 bytes"), "{}", reply.text);
}
