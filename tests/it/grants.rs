//! Grant shaping: the target decides which verified claims flow into what Legate
//! mints — a `jwt` target's `copy_claims`, an AWS target's session tags and source
//! identity (checked by the strict AWS fake as STS does) — and a claim that breaks a
//! limit refuses the exchange with its audit reason, never truncated.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: failing loudly is the point"
)]

use legate_fakes::{AwsConfig, AwsFake, AwsRole, Options, target_subject};
use legate_server::audit::Outcome;
use legate_testkit::testkeys::TestKey;
use serde_json::json;

use crate::harness::{
    CloudTargetSpec, Fixture, Legate, Setup, TrustSpec, decode_payload, upstream_claims,
};
use crate::issuer::TestIssuer;
use crate::peers::TestPki;

/// A `jwt` target copying two claims.
const SHAPED: &str = "shaped-api";
/// The AWS target with session tags and a source identity.
const AWS_TAGGED: &str = "aws-tagged";

/// Repository 42 may use the shaped targets.
const SHAPED_POLICY: &str = r#"
@id("repo-42-shaped-api")
@allow_lint("unscoped-issuer: every test issuer mints repository 42")
permit (
  principal,
  action == Legate::Action::"exchange",
  resource == Legate::Target::"shaped-api"
)
when { principal.claims has repository_id && principal.claims.repository_id == "42" };

@id("repo-42-aws-tagged")
@allow_lint("unscoped-issuer: every test issuer mints repository 42")
permit (
  principal,
  action == Legate::Action::"exchange",
  resource == Legate::Target::"aws-tagged"
)
when { principal.claims has repository_id && principal.claims.repository_id == "42" };
"#;

/// The generic rejection's description.
const GENERIC: &str =
    "the subject token was rejected; quote the request_id to your Legate operator";

/// Stops the minted token from carrying more (or less) of the upstream token than the
/// target allows: exactly the `copy_claims` flow in, as they are.
#[tokio::test]
async fn a_jwt_target_copies_exactly_its_allow_listed_claims() {
    let f = Fixture::start_with(|s| {
        s.cloud_targets.push(CloudTargetSpec {
            name: SHAPED.to_owned(),
            kind: "jwt",
            keys: vec![
                (
                    "audience".to_owned(),
                    "\"https://shaped.example.com\"".to_owned(),
                ),
                (
                    "copy_claims".to_owned(),
                    "[\"repository\", \"ref\", \"groups\"]".to_owned(),
                ),
            ],
        });
        s.policies
            .push(("shaped.cedar".to_owned(), SHAPED_POLICY.to_owned()));
    })
    .await;
    let token = f.token(&json!({
        "repository": "acme/app", "groups": ["a", "b"], "environment": "prod"
    }));
    let (status, body) = f.legate.exchange(&token, SHAPED, None).await;
    assert_eq!(status, 200, "{body}");
    let claims = decode_payload(body["access_token"].as_str().unwrap());
    assert_eq!(claims["repository"], "acme/app");
    assert_eq!(claims["ref"], "refs/heads/main");
    assert_eq!(claims["groups"], json!(["a", "b"]));
    assert!(claims.get("environment").is_none(), "{claims}");
    assert!(claims.get("repository_id").is_none(), "{claims}");
    assert_eq!(claims["sub"], format!("ci:{}", crate::harness::SUBJECT));

    // A claim the target copies but the token lacks refuses the exchange.
    let (status, body) = f.legate.exchange(&f.token(&json!({})), SHAPED, None).await;
    let event = f
        .legate
        .assert_rejected(status, &body, "grant_claim_missing");
    assert_eq!(event.decision, Outcome::Deny);
    assert!(event.detail.unwrap().contains("`repository`"));
}

/// Legate in front of the strict AWS fake, whose role trusts [`AWS_TAGGED`] and
/// allows `sts:TagSession` and `sts:SetSourceIdentity`.
struct Tagged {
    _pki: TestPki,
    key: TestKey,
    issuer: TestIssuer,
    aws: AwsFake,
    legate: Legate,
}

impl Tagged {
    async fn start() -> Tagged {
        let pki = TestPki::localhost();
        let key = TestKey::es256("key-a");
        let issuer = TestIssuer::start(&pki, &[&key]).await;
        let reservation = Legate::reserve().await;
        let options = Options {
            clock: reservation.clock.clone(),
            ..Options::default()
        };
        let mut config = AwsConfig::new(reservation.url.as_str()).with_role(
            AwsRole::new("tagged")
                .max_session_duration(3600)
                .trusting("sts.amazonaws.com", target_subject(AWS_TAGGED))
                .allow_tags_and_source_identity(),
        );
        config.max_assertion_lifetime_secs = Some(300);
        let aws = AwsFake::start_with(config, options).await.unwrap();
        let mut setup = Setup::new(vec![TrustSpec::with_ca("github", &issuer.issuer, &pki)]);
        setup.cloud_targets.push(
            CloudTargetSpec::aws(AWS_TAGGED, &aws.role_arn("tagged"), aws.url())
                .key("max_lifetime_secs", 3600)
                .key(
                    "session_tags",
                    "{ Repo = \"repository\", Env = \"environment\" }",
                )
                .key("transitive_tag_keys", "[\"Repo\"]")
                .string("source_identity", "actor"),
        );
        setup
            .policies
            .push(("shaped.cedar".to_owned(), SHAPED_POLICY.to_owned()));
        let legate = Legate::start_reserved(reservation, &setup).await;
        Tagged {
            _pki: pki,
            key,
            issuer,
            aws,
            legate,
        }
    }

    fn token(&self, environment: &str, actor: &str) -> String {
        self.key.token(&upstream_claims(
            &self.issuer.issuer,
            self.legate.now(),
            &json!({
                "repository_id": "42", "repository": "acme/app",
                "environment": environment, "actor": actor,
            }),
        ))
    }
}

/// The session tags and source identity reach AWS in the assertion and the strict fake
/// (AWS's limits, `sts:TagSession`) grants a session with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_target_passes_session_tags_and_source_identity_to_sts() {
    let t = Tagged::start().await;
    let (status, body) = t
        .legate
        .exchange(&t.token("production", "octocat"), AWS_TAGGED, None)
        .await;
    assert_eq!(status, 200, "{body}");
    let session = t.aws.last_session().expect("a session");
    assert_eq!(
        session.session_tags,
        [
            ("Env".to_owned(), "production".to_owned()),
            ("Repo".to_owned(), "acme/app".to_owned()),
        ]
        .into()
    );
    assert_eq!(session.transitive_tag_keys, vec!["Repo".to_owned()]);
    assert_eq!(session.source_identity.as_deref(), Some("octocat"));

    // Another environment is another grant: not served the cached credential.
    let (status, _) = t
        .legate
        .exchange(&t.token("staging", "octocat"), AWS_TAGGED, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(t.aws.sessions().len(), 2);
    assert_eq!(t.aws.last_session().unwrap().session_tags["Env"], "staging");
}

/// Stops tag injection: a claim value AWS would refuse as a tag (a `;`, over 256
/// characters) or as a source identity is refused by Legate with its audit reason —
/// the generic answer on the wire, nothing sent to AWS, never truncated.
#[tokio::test]
async fn a_claim_breaking_an_aws_limit_is_refused_with_its_audit_reason() {
    let t = Tagged::start().await;
    let long = "p".repeat(257);
    for (environment, actor, reason) in [
        ("prod;drop", "octocat", "grant_tag_value_invalid"),
        (long.as_str(), "octocat", "grant_tag_value_invalid"),
        ("prod", "octo cat", "grant_source_identity_invalid"),
        ("prod", "x", "grant_source_identity_invalid"),
    ] {
        let (status, body) = t
            .legate
            .exchange(&t.token(environment, actor), AWS_TAGGED, None)
            .await;
        let event = t.legate.assert_rejected(status, &body, reason);
        assert_eq!(body["error_description"], GENERIC);
        assert_eq!(event.decision, Outcome::Deny);
    }
    assert!(t.aws.sessions().is_empty(), "nothing reached AWS");
}
