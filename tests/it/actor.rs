//! Actor tokens (RFC 8693 §2.1 `actor_token`): a CI identity acting from an attested
//! host. The host attestation comes from a second in-test issuer, trusted as `host`;
//! a policy admits the CI identity on `attested-deploy` only with such an actor.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: failing loudly is the point"
)]

use legate_server::audit::Outcome;
use legate_testkit::testkeys::TestKey;
use serde_json::{Value, json};

use crate::harness::{
    Fixture, GRANT_TYPE, Reply, TOKEN_TYPE_JWT, TargetSpec, TrustSpec, decode_payload, random_id,
    sha256_hex, upstream_claims,
};
use crate::issuer::TestIssuer;
use crate::peers::{TestPki, verify_with_pyjwt};

/// The trust of the host attestation issuer.
const HOST_TRUST: &str = "host";
/// The attested host's subject.
const HOST_SUBJECT: &str = "host:runner-7";
/// The target that requires an attested host.
const ATTESTED: &str = "attested-deploy";
/// Its audience.
const ATTESTED_AUDIENCE: &str = "https://attested.example.com";

/// Repository 42 may reach `attested-deploy` only from a host the `host` trust attests.
const ACTOR_POLICY: &str = r#"
@id("ci-on-attested-host")
permit (
  principal in Legate::Issuer::"ci",
  action == Legate::Action::"exchange",
  resource == Legate::Target::"attested-deploy"
)
when {
  principal.claims has repository_id && principal.claims.repository_id == "42" &&
  context has actor && context.actor.trust == "host" &&
  context.actor.claims has env && context.actor.claims.env == "attested"
};
"#;

/// The CI fixture plus the host issuer (trusted as [`HOST_TRUST`], single-use).
struct Hosts {
    f: Fixture,
    host_key: TestKey,
    host: TestIssuer,
    _pki: TestPki,
}

impl Hosts {
    async fn start() -> Hosts {
        let pki = TestPki::localhost();
        let host_key = TestKey::es256("host-key");
        let host = TestIssuer::start(&pki, &[&host_key]).await;
        let host_url = host.issuer.clone();
        let ca = pki.ca_path.clone();
        let f = Fixture::start_with(move |s| {
            let mut t = TrustSpec::new(HOST_TRUST, &host_url);
            t.ca_file = Some(ca);
            s.trusts.push(t);
            s.targets.push(TargetSpec {
                name: ATTESTED.to_owned(),
                audience: ATTESTED_AUDIENCE.to_owned(),
                max_lifetime_secs: 600,
                labels: Vec::new(),
            });
            s.policies
                .push(("actor.cedar".to_owned(), ACTOR_POLICY.to_owned()));
        })
        .await;
        Hosts {
            f,
            host_key,
            host,
            _pki: pki,
        }
    }

    /// Claims of a host attestation, issued now, adjusted by `extra`.
    fn host_claims(&self, extra: &Value) -> Value {
        let mut base = json!({"sub": HOST_SUBJECT, "env": "attested"});
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        upstream_claims(&self.host.issuer, self.f.legate.now(), &base)
    }

    /// A host attestation signed by the host key.
    fn host_token(&self, extra: &Value) -> String {
        self.host_key.token(&self.host_claims(extra))
    }

    /// An exchange of `subject` for `target`, with `actor` as the actor token.
    async fn exchange(&self, subject: &str, actor: Option<&str>, target: &str) -> Reply {
        let mut form = vec![
            ("grant_type", GRANT_TYPE),
            ("subject_token", subject),
            ("subject_token_type", TOKEN_TYPE_JWT),
            ("audience", target),
        ];
        if let Some(actor) = actor {
            form.push(("actor_token", actor));
            form.push(("actor_token_type", TOKEN_TYPE_JWT));
        }
        self.f.legate.client.post_form(&form).await
    }
}

/// Asserts `reply` is the generic rejection, byte for byte what a bad subject token
/// gets (request id aside), with `reason` in its audit event.
fn assert_generic(h: &Hosts, reply: &Reply, reason: &str) -> legate_server::audit::AuditEvent {
    let event =
        h.f.legate
            .assert_rejected(reply.status, &reply.json, reason);
    let mut body = reply.json.clone();
    body.as_object_mut().unwrap().remove("request_id");
    assert_eq!(
        body,
        json!({
            "error": "invalid_request",
            "error_description":
                "the subject token was rejected; quote the request_id to your Legate operator",
        })
    );
    event
}

/// Stops a CI identity alone from reaching a target whose policy requires an attested
/// host: without the actor token it is denied; with it, allowed, and the minted token
/// records the actor in `act` (RFC 8693 §4.1), which an independent verifier reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_requiring_a_host_actor_admits_the_ci_identity_only_with_it() {
    let h = Hosts::start().await;
    let reply = h.exchange(&h.f.token(&json!({})), None, ATTESTED).await;
    let event = assert_generic(&h, &reply, "no_permit");
    assert!(event.actor.is_none());

    // An actor from the right trust but not attested is denied too.
    let unattested = h.host_token(&json!({"env": "dev"}));
    let reply = h
        .exchange(&h.f.token(&json!({})), Some(&unattested), ATTESTED)
        .await;
    assert_generic(&h, &reply, "no_permit");

    let actor = h.host_token(&json!({}));
    let reply = h
        .exchange(&h.f.token(&json!({})), Some(&actor), ATTESTED)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let minted = reply.json["access_token"].as_str().unwrap();
    let claims = verify_with_pyjwt(&h.f.legate.url, ATTESTED_AUDIENCE, minted)
        .await
        .unwrap_or_else(|e| panic!("PyJWT refused Legate's token: {e}"));
    assert_eq!(
        claims["act"],
        json!({"sub": HOST_SUBJECT, "iss": h.host.issuer})
    );
    assert_eq!(claims["sub"], format!("ci:{}", crate::harness::SUBJECT));

    let event = h.f.legate.event_of_minted(minted);
    assert_eq!(event.decision, Outcome::Allow);
    assert_eq!(event.policy_ids, vec!["ci-on-attested-host".to_owned()]);
    let audit = event.actor.expect("the audit event records the actor");
    assert_eq!(audit.trust.as_deref(), Some(HOST_TRUST));
    assert_eq!(audit.subject.as_deref(), Some(HOST_SUBJECT));
    assert_eq!(audit.issuer.as_deref(), Some(h.host.issuer.as_str()));
    assert_eq!(audit.token_sha256, sha256_hex(actor.as_bytes()));
    let jti = decode_payload(&actor)["jti"].as_str().unwrap().to_owned();
    assert_eq!(
        audit.jti_sha256.as_deref(),
        Some(sha256_hex(jti.as_bytes()).as_str())
    );
    // Neither token nor `jti` appears in the event.
    let text = serde_json::to_string(&audit).unwrap();
    assert!(!text.contains(&actor) && !text.contains(&jti), "{text}");
}

/// An actor chain the actor token carries is nested under the new actor.
#[tokio::test]
async fn an_actor_tokens_own_act_chain_is_nested_in_the_minted_act() {
    let h = Hosts::start().await;
    let actor = h.host_token(&json!({"act": {"sub": "hypervisor-1", "iss": "https://hv"}}));
    let reply = h
        .exchange(&h.f.token(&json!({})), Some(&actor), ATTESTED)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let claims = decode_payload(reply.json["access_token"].as_str().unwrap());
    assert_eq!(
        claims["act"],
        json!({
            "sub": HOST_SUBJECT, "iss": h.host.issuer,
            "act": {"sub": "hypervisor-1", "iss": "https://hv"}
        })
    );
}

/// Stops a forged, stale, foreign or replayed actor token from standing in for a host
/// attestation, and stops a caller from probing which check failed: every bad actor
/// token gets the same generic answer as a bad subject token; the audit reason says
/// `actor_<reason>`.
#[tokio::test]
async fn a_bad_actor_token_gets_the_generic_answer_and_an_actor_audit_reason() {
    let h = Hosts::start().await;
    let forger = TestKey::es256_b("host-key");
    let stranger = TestKey::es256_fresh("stranger");
    let now = h.f.legate.now();
    let cases = [
        (
            "forged signature",
            forger.token(&h.host_claims(&json!({}))),
            "actor_bad_signature",
        ),
        (
            "expired",
            h.host_token(&json!({"iat": now - 600, "nbf": now - 600, "exp": now - 300})),
            "actor_expired",
        ),
        (
            "unknown issuer",
            stranger.token(&upstream_claims(
                "https://stranger.example.com",
                now,
                &json!({"sub": HOST_SUBJECT, "env": "attested"}),
            )),
            "actor_untrusted_issuer",
        ),
        ("not a JWT", "not-a-jwt".to_owned(), "actor_not_compact_jws"),
        (
            "single-use trust without jti",
            h.host_token(&json!({"jti": null})),
            "actor_missing_claim",
        ),
    ];
    for (what, actor, reason) in cases {
        let reply = h
            .exchange(&h.f.token(&json!({})), Some(&actor), ATTESTED)
            .await;
        let event = assert_generic(&h, &reply, reason);
        assert_eq!(event.decision, Outcome::Deny, "{what}");
        assert!(event.actor.is_some(), "{what}: the actor is audited");
    }

    // Replayed: the host trust is single-use, so its token buys one exchange.
    let actor = h.host_token(&json!({}));
    let reply = h
        .exchange(&h.f.token(&json!({})), Some(&actor), ATTESTED)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = h
        .exchange(&h.f.token(&json!({})), Some(&actor), ATTESTED)
        .await;
    assert_generic(&h, &reply, "actor_replayed");

    // The subject token presented again as its own actor adds no second party.
    let subject = h.f.token(&json!({}));
    let reply = h.exchange(&subject, Some(&subject), ATTESTED).await;
    assert_generic(&h, &reply, "actor_same_as_subject");
}

/// Stops a refused exchange from burning the actor's `jti`: policy denies the first
/// request (another repository), and the same actor token still works with a subject
/// the policy admits. A refused actor does not burn the subject's `jti` either.
#[tokio::test]
async fn a_refused_exchange_uses_up_neither_jti() {
    let h = Hosts::start().await;
    let actor = h.host_token(&json!({}));
    let other_repo = h.f.token(&json!({"repository_id": "43"}));
    let reply = h.exchange(&other_repo, Some(&actor), ATTESTED).await;
    assert_generic(&h, &reply, "no_permit");
    let reply = h
        .exchange(&h.f.token(&json!({})), Some(&actor), ATTESTED)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    // The actor token is now spent; the subject token refused with it stays fresh.
    let subject = h.f.token(&json!({}));
    let reply = h.exchange(&subject, Some(&actor), ATTESTED).await;
    assert_generic(&h, &reply, "actor_replayed");
    let fresh_actor = h.host_token(&json!({"jti": random_id()}));
    let reply = h.exchange(&subject, Some(&fresh_actor), ATTESTED).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}
