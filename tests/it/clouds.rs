//! Cloud targets end to end: a workload token → Legate (verify, policy, mint its own
//! assertion) → a cloud token service → native cloud credentials on the wire.
//!
//! The clouds are moto (AWS, through the real `aws-sdk-sts`; the credentials it returns
//! are then used by boto3 for `GetCallerIdentity`) and the strict fakes of
//! `legate-fakes`, which verify Legate's assertion as AWS STS, Google STS + IAM
//! Credentials and Entra ID do (discovery and JWKS fetched from Legate over loopback,
//! `iss`, `aud`, `sub`, lifetime, algorithm, session-name and duration rules). The fakes
//! read Legate's own [`ManualClock`](legate_server::clock::ManualClock), so moving it
//! moves both.
//!
//! The workload is a GitHub-Actions-shaped token: minted by the npm `oauth2-mock-server`
//! for the end-to-end tests, by the in-test issuer (fast, on Legate's clock) for the
//! cache and fault tests.
//!
//! Sections: the fixture; end to end (moto, the strict fakes); the credential cache;
//! faults and refusals, each with its wire answer and audit reason.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: failing loudly is the point"
)]

use std::time::Duration;

use legate_fakes::{
    AwsConfig, AwsFake, AwsRole, EntraApp, EntraConfig, EntraFake, Fault, GcpConfig, GcpFake,
    GcpServiceAccount, Options, target_subject,
};
use legate_server::audit::{AuditEvent, Outcome};
use legate_testkit::testkeys::TestKey;
use serde_json::{Value, json};

use crate::harness::{
    CloudTargetSpec, Legate, Reservation, Setup, TrustSpec, UPSTREAM_AUDIENCE, upstream_claims,
};
use crate::issuer::TestIssuer;
use crate::peers::{Moto, OidcProvider, TestPki, aws_caller_identity};

// ------------------------------------------------------------------ the fixture

/// The upstream subject of the workload: a GitHub Actions run on `main`.
const GHA_SUBJECT: &str = "repo:octo-org/app:ref:refs/heads/main";
/// Its repository id, which the policy permits.
const REPOSITORY_ID: &str = "1296269";
/// The trust name of the upstream issuer (the mock provider or the in-test issuer).
const GHA_TRUST: &str = "github";
/// `<trust>:<upstream sub>`: the `workload` claim of Legate's assertions.
const WORKLOAD: &str = "github:repo:octo-org/app:ref:refs/heads/main";
/// The `RoleSessionName` derived from [`WORKLOAD`]: `:` and `/` become `-`.
const SESSION_NAME: &str = "github-repo-octo-org-app-ref-refs-heads-main";

/// RFC 8693 token type Legate answers AWS credentials with.
const TOKEN_TYPE_AWS_CREDENTIALS: &str = "urn:legate:params:oauth:token-type:aws-credentials";
/// RFC 8693 access-token type (Google and Azure answers).
const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The AWS account of the fake (moto's default account is the same).
const ACCOUNT: &str = "123456789012";
/// The role the AWS targets assume.
const ROLE: &str = "deploy";
/// A role whose trust policy names another subject.
const OTHER_ROLE: &str = "someone-elses";
/// The Google workload identity pool provider.
const GCP_PROVIDER: &str =
    "projects/123456789/locations/global/workloadIdentityPools/legate/providers/legate";
/// The Google service account `gcp-deploy` impersonates.
const GCP_SERVICE_ACCOUNT: &str = "deployer@legate-test.iam.gserviceaccount.com";
/// The Entra tenant.
const TENANT: &str = "00000000-0000-0000-0000-000000000001";
/// The Entra application trusting Legate's azure targets.
const CLIENT: &str = "00000000-0000-0000-0000-000000000002";
/// An application id the tenant does not know.
const UNKNOWN_CLIENT: &str = "00000000-0000-0000-0000-000000000099";
/// The Entra scope.
const SCOPE: &str = "https://management.azure.com/.default";
/// The AWS assertion audience (the IAM OIDC provider's client id).
const AWS_AUDIENCE: &str = "sts.amazonaws.com";
/// The Entra assertion audience.
const ENTRA_AUDIENCE: &str = "api://AzureADTokenExchange";
/// The longest assertion Legate promises to mint (and the fakes accept).
const MAX_ASSERTION_SECS: u64 = 300;

/// The targets. `*-impatient` have `timeout_secs = 1`; the fakes trust every target
/// below except `aws-mistrusted` (its role trusts another subject), `gcp-stranger`
/// (the provider's attribute condition leaves it out) and `azure-unknown-client` (an
/// application the tenant does not have).
pub(crate) const AWS_TARGET: &str = "aws-deploy";
const AWS_IMPATIENT: &str = "aws-impatient";
const AWS_MISTRUSTED: &str = "aws-mistrusted";
const GCP_TARGET: &str = "gcp-deploy";
const GCP_FEDERATED: &str = "gcp-federated";
const GCP_IMPATIENT: &str = "gcp-impatient";
const GCP_STRANGER: &str = "gcp-stranger";
const AZURE_TARGET: &str = "azure-deploy";
const AZURE_IMPATIENT: &str = "azure-impatient";
const AZURE_UNKNOWN_CLIENT: &str = "azure-unknown-client";

/// The AWS targets' lifetime cap: the role's `MaxSessionDuration`.
const AWS_MAX_LIFETIME: u64 = 3600;

/// Repository [`REPOSITORY_ID`] may use every target (the standard policy of
/// [`Setup::new`] stays loaded beside it).
const CLOUD_POLICY: &str = r#"
@id("octo-org-app-uses-the-clouds")
@allow_lint("unscoped-issuer: the test trusts are all GitHub Actions look-alikes")
permit (principal, action == Legate::Action::"exchange", resource)
when { principal.claims has repository_id && principal.claims.repository_id == "1296269" };
"#;

/// A GitHub Actions OIDC token's claims (without `iss`, `iat`, `exp`, `jti`).
fn github_actions_claims() -> Value {
    json!({
        "sub": GHA_SUBJECT,
        "aud": UPSTREAM_AUDIENCE,
        "repository": "octo-org/app",
        "repository_id": REPOSITORY_ID,
        "repository_owner": "octo-org",
        "repository_owner_id": "9919",
        "repository_visibility": "private",
        "ref": "refs/heads/main",
        "ref_type": "branch",
        "sha": "3f2a9c1d7e5b4a6c8d0e2f4a6b8c0d2e4f6a8b0c",
        "workflow": "deploy",
        "workflow_ref": "octo-org/app/.github/workflows/deploy.yml@refs/heads/main",
        "job_workflow_ref": "octo-org/app/.github/workflows/deploy.yml@refs/heads/main",
        "event_name": "push",
        "environment": "production",
        "run_id": "8123456789",
        "run_number": "42",
        "run_attempt": "1",
        "actor": "octocat",
        "actor_id": "583231",
        "runner_environment": "github-hosted",
    })
}

/// The three strict fakes, trusting Legate's (reserved) URL and reading its clock.
pub(crate) struct Fakes {
    pub(crate) aws: AwsFake,
    gcp: GcpFake,
    entra: EntraFake,
}

impl Fakes {
    async fn start(legate: &Reservation) -> Fakes {
        let options = Options {
            clock: legate.clock.clone(),
            ..Options::default()
        };
        let issuer = legate.url.as_str();
        let max = Some(MAX_ASSERTION_SECS);

        let mut aws = AwsConfig::new(issuer)
            .with_role(
                AwsRole::new(ROLE)
                    .max_session_duration(i64::try_from(AWS_MAX_LIFETIME).unwrap())
                    .trusting(AWS_AUDIENCE, target_subject(AWS_TARGET))
                    .trusting(AWS_AUDIENCE, target_subject(AWS_IMPATIENT)),
            )
            .with_role(
                AwsRole::new(OTHER_ROLE).trusting(AWS_AUDIENCE, target_subject("someone-else")),
            );
        aws.account_id = ACCOUNT.to_owned();
        aws.max_assertion_lifetime_secs = max;

        let mut gcp = GcpConfig::new(issuer, GCP_PROVIDER)
            .allowing_subjects([
                target_subject(GCP_TARGET),
                target_subject(GCP_FEDERATED),
                target_subject(GCP_IMPATIENT),
            ])
            .with_service_account(
                GcpServiceAccount::new(GCP_SERVICE_ACCOUNT)
                    .impersonable_by(target_subject(GCP_TARGET)),
            );
        gcp.max_assertion_lifetime_secs = max;

        let mut entra = EntraConfig::new(TENANT).with_app(
            EntraApp::new(CLIENT)
                .trusting(issuer, target_subject(AZURE_TARGET))
                .trusting(issuer, target_subject(AZURE_IMPATIENT)),
        );
        entra.max_assertion_lifetime_secs = max;

        Fakes {
            aws: AwsFake::start_with(aws, options.clone()).await.unwrap(),
            gcp: GcpFake::start_with(gcp, options.clone()).await.unwrap(),
            entra: EntraFake::start_with(entra, options).await.unwrap(),
        }
    }

    /// Every target of the fixture, pointing at these fakes.
    fn targets(&self) -> Vec<CloudTargetSpec> {
        let aws = |name: &str, role: &str| {
            CloudTargetSpec::aws(name, &self.aws.role_arn(role), self.aws.url())
                .key("max_lifetime_secs", AWS_MAX_LIFETIME)
        };
        let gcp = |name: &str, sa: Option<&str>| {
            CloudTargetSpec::gcp(name, GCP_PROVIDER, self.gcp.url(), sa)
        };
        let azure = |name: &str, client: &str| {
            CloudTargetSpec::azure(name, TENANT, client, SCOPE, self.entra.url())
        };
        vec![
            aws(AWS_TARGET, ROLE),
            aws(AWS_IMPATIENT, ROLE).key("timeout_secs", 1),
            aws(AWS_MISTRUSTED, OTHER_ROLE),
            gcp(GCP_TARGET, Some(GCP_SERVICE_ACCOUNT)),
            gcp(GCP_FEDERATED, None),
            gcp(GCP_IMPATIENT, None).key("timeout_secs", 1),
            gcp(GCP_STRANGER, None),
            azure(AZURE_TARGET, CLIENT),
            azure(AZURE_IMPATIENT, CLIENT).key("timeout_secs", 1),
            azure(AZURE_UNKNOWN_CLIENT, UNKNOWN_CLIENT),
        ]
    }
}

/// Legate with every cloud target, the strict fakes behind them, and the in-test
/// upstream issuer (trusted as [`GHA_TRUST`]) minting the workload's tokens on
/// Legate's clock.
pub(crate) struct Clouds {
    _pki: TestPki,
    key: TestKey,
    issuer: TestIssuer,
    pub(crate) fakes: Fakes,
    pub(crate) legate: Legate,
}

impl Clouds {
    pub(crate) async fn start() -> Clouds {
        let pki = TestPki::localhost();
        let key = TestKey::es256("key-a");
        let issuer = TestIssuer::start(&pki, &[&key]).await;
        let reservation = Legate::reserve().await;
        let fakes = Fakes::start(&reservation).await;
        let mut setup = Setup::new(vec![TrustSpec::with_ca(GHA_TRUST, &issuer.issuer, &pki)]);
        setup.cloud_targets = fakes.targets();
        setup
            .policies
            .push(("clouds.cedar".to_owned(), CLOUD_POLICY.to_owned()));
        let legate = Legate::start_reserved(reservation, &setup).await;
        Clouds {
            _pki: pki,
            key,
            issuer,
            fakes,
            legate,
        }
    }

    /// A fresh single-use token of the workload, issued at Legate's current time.
    pub(crate) fn token(&self) -> String {
        self.token_of(GHA_SUBJECT)
    }

    /// A fresh token of the same repository with another upstream `sub`.
    pub(crate) fn token_of(&self, subject: &str) -> String {
        let mut claims = github_actions_claims();
        claims["sub"] = json!(subject);
        self.key.token(&upstream_claims(
            &self.issuer.issuer,
            self.legate.now(),
            &claims,
        ))
    }
}

/// Asserts a `503 temporarily_unavailable` whose audit event says the cloud could not
/// be had (`cloud_unavailable`, with the cloud's or the transport's code); returns
/// the event.
fn assert_cloud_unavailable(legate: &Legate, status: u16, body: &Value, code: &str) -> AuditEvent {
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    let event = legate.event_of(body);
    assert_eq!(event.decision, Outcome::Error, "{event:#?}");
    assert_eq!(event.reason, "cloud_unavailable", "{event:#?}");
    assert_eq!(event.cloud_error_code.as_deref(), Some(code), "{event:#?}");
    event
}

/// Asserts a `400 invalid_target` whose audit event says the cloud refused this
/// target (`cloud_refused`) with `code`; returns the event.
fn assert_cloud_refused(legate: &Legate, status: u16, body: &Value, code: &str) -> AuditEvent {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_target", "{body}");
    let event = legate.event_of(body);
    assert_eq!(event.decision, Outcome::Error, "{event:#?}");
    assert_eq!(event.reason, "cloud_refused", "{event:#?}");
    assert_eq!(event.cloud_error_code.as_deref(), Some(code), "{event:#?}");
    event
}

/// Asserts the audit event carries the cloud's own request id (AWS `RequestId`,
/// Entra's correlation id), for the operator's support case with the cloud.
fn assert_cloud_request_id(event: &AuditEvent) {
    assert!(
        event
            .cloud_request_id
            .as_deref()
            .is_some_and(|id| !id.is_empty()),
        "the cloud's request id is audited: {event:#?}"
    );
}

/// Asserts an assertion's registered claims as every cloud must see them: issued by
/// Legate for `target/<target>`, to `aud`, for the workload, living ≤ 300 s.
fn assert_assertion(
    claims: &serde_json::Map<String, Value>,
    legate: &Legate,
    target: &str,
    aud: &str,
) {
    assert_eq!(claims["iss"], legate.url.as_str(), "{claims:?}");
    assert_eq!(claims["sub"], target_subject(target), "{claims:?}");
    assert_eq!(claims["aud"], aud, "{claims:?}");
    assert_eq!(claims["workload"], WORKLOAD, "{claims:?}");
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!(
        (1..=300).contains(&lifetime),
        "assertion lifetime {lifetime} s: {claims:?}"
    );
    assert!(claims["jti"].is_string(), "{claims:?}");
}

// ------------------------------------------------------------------ end to end

/// The acceptance path for AWS: a GitHub-Actions-shaped token from a real third-party
/// OIDC provider (npm `oauth2-mock-server`) is exchanged by Legate, through the real
/// `aws-sdk-sts`, at moto's STS for session credentials in the `credential_process`
/// shape, and boto3 — an independent AWS client — proves those credentials work:
/// `GetCallerIdentity` names the assumed role with the session derived from the
/// workload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_actions_token_buys_aws_credentials_from_moto_that_work_for_get_caller_identity() {
    let pki = TestPki::localhost();
    let (provider, moto) = tokio::join!(
        OidcProvider::start(&pki.cert_path, &pki.key_path, "RS256"),
        Moto::start()
    );
    let mut trust = TrustSpec::with_ca(GHA_TRUST, &provider.issuer, &pki);
    trust.algorithms = Some(vec!["RS256"]);
    let mut setup = Setup::new(vec![trust]);
    let role_arn = format!("arn:aws:iam::{ACCOUNT}:role/{ROLE}");
    setup.cloud_targets = vec![
        CloudTargetSpec::aws(AWS_TARGET, &role_arn, &moto.url)
            .key("max_lifetime_secs", AWS_MAX_LIFETIME),
    ];
    setup
        .policies
        .push(("clouds.cedar".to_owned(), CLOUD_POLICY.to_owned()));
    let legate = Legate::start(&setup).await;

    let token = provider
        .mint(github_actions_claims(), pki.ca_pem.as_bytes())
        .await;
    let reply = legate.exchange_reply(&token, AWS_TARGET, Some(1800)).await;
    assert_eq!(
        reply.status,
        200,
        "{}\nmoto stderr:\n{}",
        reply.text,
        moto.stderr()
    );
    let body = &reply.json;
    assert_eq!(body["issued_token_type"], TOKEN_TYPE_AWS_CREDENTIALS);
    assert_eq!(body["token_type"], "N_A");
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let creds = &body["aws_credentials"];
    assert_eq!(creds["Version"], 1, "{body}");
    for member in [
        "AccessKeyId",
        "SecretAccessKey",
        "SessionToken",
        "Expiration",
    ] {
        assert!(
            creds[member].as_str().is_some_and(|v| !v.is_empty()),
            "{member} in {creds}"
        );
    }
    assert_eq!(body["access_token"], creds["SessionToken"]);
    // moto dates the session by the wall clock, which has moved on from Legate's
    // (manual) clock since it started: at least 1800 s, a little more as the test ran.
    let expires_in = body["expires_in"].as_u64().unwrap();
    assert!(
        (1799..=1800 + 300).contains(&expires_in),
        "moto honours DurationSeconds 1800: expires_in {expires_in}"
    );

    let identity = aws_caller_identity(&moto.url, creds)
        .await
        .unwrap_or_else(|e| panic!("GetCallerIdentity: {e}\nmoto stderr:\n{}", moto.stderr()));
    assert_eq!(
        identity["Arn"],
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/{SESSION_NAME}")
    );
    assert_eq!(identity["Account"], ACCOUNT);

    let event = legate.events_of_token(&token, 1).remove(0);
    assert_eq!(event.decision, Outcome::Allow, "{event:#?}");
    assert_eq!(event.target.as_deref(), Some(AWS_TARGET));
    assert_eq!(event.subject.as_deref(), Some(GHA_SUBJECT));
    assert_eq!(event.policy_ids, vec!["octo-org-app-uses-the-clouds"]);
    let audited = serde_json::to_string(&event).unwrap();
    for secret in ["SecretAccessKey", "SessionToken"] {
        let value = creds[secret].as_str().unwrap();
        assert!(!audited.contains(value), "{secret} in the audit event");
    }
}

/// The acceptance path for the strict fakes: one GitHub Actions workload (tokens from
/// `oauth2-mock-server`) gets a Google access token with and without service-account
/// impersonation, an Azure access token and AWS credentials, and each cloud saw what it
/// trusts: Legate's assertion with `sub` = `target/<name>` (never the workload's own
/// subject), the cloud's own `aud`, the `workload` claim for attribution, a lifetime of
/// at most 300 s, RS256 for Entra (which refuses EC keys) — and, for AWS, the session
/// name derived from the workload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_actions_workload_gets_google_azure_and_aws_credentials_from_the_strict_fakes() {
    let pki = TestPki::localhost();
    let provider = OidcProvider::start(&pki.cert_path, &pki.key_path, "RS256").await;
    let reservation = Legate::reserve().await;
    let fakes = Fakes::start(&reservation).await;
    let mut trust = TrustSpec::with_ca(GHA_TRUST, &provider.issuer, &pki);
    trust.algorithms = Some(vec!["RS256"]);
    let mut setup = Setup::new(vec![trust]);
    setup.cloud_targets = fakes.targets();
    setup
        .policies
        .push(("clouds.cedar".to_owned(), CLOUD_POLICY.to_owned()));
    let legate = Legate::start_reserved(reservation, &setup).await;
    let token = || provider.mint(github_actions_claims(), pki.ca_pem.as_bytes());

    // Google, impersonating the service account.
    let (status, body) = legate.exchange(&token().await, GCP_TARGET, Some(600)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], TOKEN_TYPE_ACCESS_TOKEN);
    assert_eq!(body["token_type"], "Bearer");
    assert!(body.get("aws_credentials").is_none(), "{body}");
    let federated = fakes.gcp.last_federated_token().unwrap();
    assert_assertion(
        &federated.claims,
        &legate,
        GCP_TARGET,
        &format!("https://iam.googleapis.com/{GCP_PROVIDER}"),
    );
    assert_eq!(federated.subject, target_subject(GCP_TARGET));
    assert_eq!(federated.alg, "ES256");
    assert_eq!(
        federated.scopes,
        vec!["https://www.googleapis.com/auth/cloud-platform"]
    );
    let impersonation = fakes.gcp.last_impersonation().unwrap();
    assert_eq!(impersonation.service_account, GCP_SERVICE_ACCOUNT);
    assert_eq!(impersonation.subject, target_subject(GCP_TARGET));
    assert_eq!(impersonation.lifetime_secs, 600);
    assert_eq!(body["access_token"], impersonation.access_token.as_str());
    assert_eq!(body["expires_in"], 600);

    // Google, the federated token itself.
    let iam_calls = fakes.gcp.iam_stats().requests;
    let (status, body) = legate.exchange(&token().await, GCP_FEDERATED, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], TOKEN_TYPE_ACCESS_TOKEN);
    assert_eq!(body["token_type"], "Bearer");
    let federated = fakes.gcp.last_federated_token().unwrap();
    assert_assertion(
        &federated.claims,
        &legate,
        GCP_FEDERATED,
        &format!("https://iam.googleapis.com/{GCP_PROVIDER}"),
    );
    assert_eq!(body["access_token"], federated.access_token.as_str());
    assert_eq!(
        fakes.gcp.iam_stats().requests,
        iam_calls,
        "no impersonation without a service account"
    );

    // Azure: an RS256 assertion, whatever the issuer's default algorithm.
    let (status, body) = legate.exchange(&token().await, AZURE_TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], TOKEN_TYPE_ACCESS_TOKEN);
    assert_eq!(body["token_type"], "Bearer");
    let issued = fakes.entra.last_issued().unwrap();
    assert_assertion(&issued.claims, &legate, AZURE_TARGET, ENTRA_AUDIENCE);
    assert_eq!(issued.alg, "RS256");
    assert_eq!(issued.client_id, CLIENT);
    assert_eq!(issued.scope, SCOPE);
    assert_eq!(body["access_token"], issued.access_token.as_str());
    let request = fakes.entra.last_request().unwrap();
    assert_eq!(
        request.path,
        format!("/{TENANT}/oauth2/v2.0/token"),
        "{request:?}"
    );

    // AWS, through the strict fake.
    let aws_token = token().await;
    let (status, body) = legate.exchange(&aws_token, AWS_TARGET, Some(1200)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], TOKEN_TYPE_AWS_CREDENTIALS);
    assert_eq!(body["token_type"], "N_A");
    let session = fakes.aws.last_session().unwrap();
    assert_assertion(&session.claims, &legate, AWS_TARGET, AWS_AUDIENCE);
    assert_eq!(session.alg, "ES256");
    assert_eq!(session.role_arn, fakes.aws.role_arn(ROLE));
    assert_eq!(session.role_session_name, SESSION_NAME);
    assert_eq!(session.duration_secs, 1200);
    assert_eq!(
        session.assumed_role_arn,
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/{SESSION_NAME}")
    );
    let creds = &body["aws_credentials"];
    assert_eq!(creds["Version"], 1);
    assert_eq!(creds["AccessKeyId"], session.access_key_id.as_str());
    assert_eq!(creds["SecretAccessKey"], session.secret_access_key.as_str());
    assert_eq!(creds["SessionToken"], session.session_token.as_str());
    assert_eq!(body["access_token"], session.session_token.as_str());
    assert_eq!(body["expires_in"], 1200);
    let event = legate.events_of_token(&aws_token, 1).remove(0);
    assert_eq!(event.decision, Outcome::Allow, "{event:#?}");
    assert_eq!(event.target.as_deref(), Some(AWS_TARGET));
    assert_cloud_request_id(&event);
}

/// `DurationSeconds` follows AWS's rules, which fail rather than clamp: a lifetime
/// below 900 s is raised to 900 (the shortest session), one above the target's maximum
/// (the role's `MaxSessionDuration`) is cut to it, and one in between is sent as
/// approved; the answer's `expires_in` is the session's.
#[tokio::test]
async fn aws_duration_is_raised_to_900_and_capped_at_the_target_maximum() {
    let c = Clouds::start().await;
    for (requested, expected) in [(60, 900), (1800, 1800), (7200, AWS_MAX_LIFETIME)] {
        let (status, body) = c
            .legate
            .exchange(&c.token(), AWS_TARGET, Some(requested))
            .await;
        assert_eq!(status, 200, "requested {requested}: {body}");
        let session = c.fakes.aws.last_session().unwrap();
        assert_eq!(
            u64::try_from(session.duration_secs).unwrap(),
            expected,
            "requested {requested}"
        );
        assert_eq!(body["expires_in"], expected, "requested {requested}");
    }
    assert_eq!(c.fakes.aws.sessions().len(), 3);
}

/// Stops a crafted upstream `sub` from breaking the AWS call or blurring attribution:
/// a subject with characters STS refuses in a `RoleSessionName`, and far longer than
/// 64 characters, still gets credentials (the strict fake enforces `[\w+=,.@-]{2,64}`),
/// and two such subjects sharing a long prefix get different session names, so
/// CloudTrail tells the workloads apart.
#[tokio::test]
async fn aws_session_name_of_a_long_odd_workload_is_sanitised_and_distinct() {
    let c = Clouds::start().await;
    let prefix = format!("repo:octo org/äpp:ref:refs/heads/{}", "x".repeat(100));
    let mut names = Vec::new();
    for suffix in ["one", "two"] {
        let (status, body) = c
            .legate
            .exchange(&c.token_of(&format!("{prefix}{suffix}")), AWS_TARGET, None)
            .await;
        assert_eq!(status, 200, "{body}");
        let session = c.fakes.aws.last_session().unwrap();
        let name = session.role_session_name;
        assert_eq!(name.len(), 64, "{name}");
        assert!(
            name.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "_+=,.@-".contains(ch)),
            "{name}"
        );
        assert!(name.starts_with("github-repo-octo-org-"), "{name}");
        // The workload claim keeps the subject, escaped and bounded.
        let workload = session.claims["workload"].as_str().unwrap();
        assert!(workload.starts_with("github:repo:octo org/"), "{workload}");
        names.push(name);
    }
    assert_ne!(names[0], names[1]);
}

// ------------------------------------------------------------------ the credential cache

/// N concurrent identical requests make one cloud call: 100 exchanges of 100 distinct
/// single-use tokens of one workload, fired at once per cloud target, all succeed with
/// the same credential while the cloud is called exactly once (every request is still
/// verified and decided: the cache sits after policy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_identical_exchanges_make_one_cloud_call() {
    let c = Clouds::start().await;
    for target in [AWS_TARGET, GCP_TARGET, AZURE_TARGET] {
        let tokens: Vec<String> = (0..100).map(|_| c.token()).collect();
        let mut tasks = tokio::task::JoinSet::new();
        for token in tokens {
            let client = c.legate.client.clone();
            // 900 s: a credential the cache may serve to the requests that arrive after
            // the cloud call returns (it must outlive `min_remaining_secs`, 300 s).
            tasks.spawn(async move { client.exchange(&token, target, Some(900)).await });
        }
        let mut credentials = std::collections::BTreeSet::new();
        while let Some(joined) = tasks.join_next().await {
            let (status, body) = joined.unwrap();
            assert_eq!(status, 200, "{target}: {body}");
            credentials.insert(body["access_token"].as_str().unwrap().to_owned());
        }
        assert_eq!(credentials.len(), 1, "{target}: one credential shared");
    }
    assert_eq!(c.fakes.aws.stats().requests, 1);
    assert_eq!(c.fakes.gcp.sts_stats().requests, 1);
    assert_eq!(c.fakes.gcp.iam_stats().requests, 1);
    assert_eq!(c.fakes.entra.stats().requests, 1);
    let stats = c.legate.state.credential_cache_stats();
    assert_eq!((stats.misses, stats.hits), (3, 297), "{stats:?}");
    // Every exchange was verified, decided and audited on its own.
    let allowed = c
        .legate
        .audit
        .wait_until(crate::harness::AUDIT_WAIT, |events| events.len() >= 300)
        .into_iter()
        .filter(|e| e.decision == Outcome::Allow)
        .count();
    assert_eq!(allowed, 300);
}

/// A cached credential is served only while more than `min_remaining_secs` (300 s) of
/// its life remain, and refreshed ahead of its expiry after that: with Legate's clock
/// (which the fake shares) at 301 s before the 900 s session's end the cached one is
/// served, at 299 s a fresh one is fetched.
#[tokio::test]
async fn cached_credential_near_expiry_is_refreshed() {
    let c = Clouds::start().await;
    let key_id = |body: &Value| body["aws_credentials"]["AccessKeyId"].clone();

    let (status, first) = c.legate.exchange(&c.token(), AWS_TARGET, Some(900)).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["expires_in"], 900);
    let (status, again) = c.legate.exchange(&c.token(), AWS_TARGET, Some(900)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(key_id(&again), key_id(&first), "served from the cache");
    assert_eq!(c.fakes.aws.stats().requests, 1);

    c.legate.clock.advance(599);
    let (status, late) = c.legate.exchange(&c.token(), AWS_TARGET, Some(900)).await;
    assert_eq!(status, 200, "{late}");
    assert_eq!(key_id(&late), key_id(&first), "301 s left: still served");
    assert_eq!(late["expires_in"], 301);
    assert_eq!(c.fakes.aws.stats().requests, 1);

    c.legate.clock.advance(2);
    let (status, fresh) = c.legate.exchange(&c.token(), AWS_TARGET, Some(900)).await;
    assert_eq!(status, 200, "{fresh}");
    assert_ne!(key_id(&fresh), key_id(&first), "299 s left: refreshed");
    assert_eq!(fresh["expires_in"], 900);
    assert_eq!(c.fakes.aws.stats().requests, 2);
    let stats = c.legate.state.credential_cache_stats();
    assert_eq!(
        (stats.misses, stats.hits, stats.refreshes),
        (2, 2, 1),
        "{stats:?}"
    );
}

/// A failure is never cached: after an exchange that fails (the cloud answers 5xx to
/// every attempt), the next identical exchange reaches the cloud again and succeeds.
#[tokio::test]
async fn cloud_failure_is_not_cached() {
    let c = Clouds::start().await;
    c.fakes
        .aws
        .set_fault(Fault::ServerErrorThen(3))
        .await
        .unwrap();
    let (status, body) = c.legate.exchange(&c.token(), AWS_TARGET, None).await;
    assert_cloud_unavailable(&c.legate, status, &body, "ServiceUnavailable");
    let stats = c.fakes.aws.stats();
    assert_eq!((stats.requests, stats.faulted), (3, 3), "three attempts");

    let (status, body) = c.legate.exchange(&c.token(), AWS_TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    let stats = c.fakes.aws.stats();
    assert_eq!((stats.requests, stats.succeeded), (4, 1), "{stats:?}");
    let cache = c.legate.state.credential_cache_stats();
    assert_eq!((cache.hits, cache.misses), (0, 1), "{cache:?}");
}

// ------------------------------------------------------------------ faults and refusals

/// A cloud endpoint that is down (connections refused) is `503 temporarily_unavailable`
/// with audit reason `cloud_unavailable`, and the failure releases the token's
/// single-use record: the very same token is exchanged once the cloud is back.
#[tokio::test]
async fn cloud_endpoint_down_is_503_and_the_same_token_works_once_it_is_back() {
    let c = Clouds::start().await;
    c.fakes.aws.set_fault(Fault::Down).await.unwrap();
    let token = c.token();
    let (status, body) = c.legate.exchange(&token, AWS_TARGET, None).await;
    assert_cloud_unavailable(&c.legate, status, &body, "connect");
    assert_eq!(c.fakes.aws.stats().requests, 0, "nothing reached the cloud");

    c.fakes.aws.set_fault(Fault::None).await.unwrap();
    let (status, body) = c.legate.exchange(&token, AWS_TARGET, None).await;
    assert_eq!(status, 200, "the released token is accepted again: {body}");
    let events = c.legate.events_of_token(&token, 2);
    assert_eq!(
        (events[0].reason.as_str(), events[1].decision),
        ("cloud_unavailable", Outcome::Allow),
        "{events:#?}"
    );
    // Once exchanged successfully, the token is spent.
    let (status, body) = c.legate.exchange(&token, AWS_TARGET, None).await;
    c.legate.assert_rejected(status, &body, "replayed");
}

/// A cloud slower than the target's `timeout_secs` (1 s; the fake takes 3 s) is
/// `503 temporarily_unavailable` (`cloud_unavailable`, code `timeout`) for each cloud,
/// rather than holding the client; the token is released, and works once the cloud is
/// fast again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_slower_than_the_target_timeout_is_503() {
    let c = Clouds::start().await;
    let slow = Fault::Slow(Duration::from_secs(3));
    for target in [AWS_IMPATIENT, GCP_IMPATIENT, AZURE_IMPATIENT] {
        match target {
            AWS_IMPATIENT => c.fakes.aws.set_fault(slow).await.unwrap(),
            GCP_IMPATIENT => c.fakes.gcp.set_fault(slow).await.unwrap(),
            _ => c.fakes.entra.set_fault(slow).await.unwrap(),
        }
        let token = c.token();
        let (status, body) = c.legate.exchange(&token, target, None).await;
        let event = assert_cloud_unavailable(&c.legate, status, &body, "timeout");
        assert_eq!(event.target.as_deref(), Some(target));

        match target {
            AWS_IMPATIENT => c.fakes.aws.set_fault(Fault::None).await.unwrap(),
            GCP_IMPATIENT => c.fakes.gcp.set_fault(Fault::None).await.unwrap(),
            _ => c.fakes.entra.set_fault(Fault::None).await.unwrap(),
        }
        let (status, body) = c.legate.exchange(&token, target, None).await;
        assert_eq!(status, 200, "{target}: {body}");
    }
}

/// A 5xx from the cloud is transient: retried, and the exchange succeeds on the second
/// attempt, for each cloud (the fake saw two calls; for Google the failed one was STS).
#[tokio::test]
async fn cloud_5xx_is_retried_and_succeeds() {
    let c = Clouds::start().await;

    c.fakes
        .aws
        .set_fault(Fault::ServerErrorThen(1))
        .await
        .unwrap();
    let (status, body) = c.legate.exchange(&c.token(), AWS_TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    let stats = c.fakes.aws.stats();
    assert_eq!((stats.requests, stats.faulted), (2, 1), "{stats:?}");

    c.fakes
        .gcp
        .set_fault(Fault::ServerErrorThen(1))
        .await
        .unwrap();
    let (status, body) = c.legate.exchange(&c.token(), GCP_TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    let stats = c.fakes.gcp.sts_stats();
    assert_eq!((stats.requests, stats.faulted), (2, 1), "{stats:?}");
    assert_eq!(c.fakes.gcp.iam_stats().requests, 1);

    c.fakes
        .entra
        .set_fault(Fault::ServerErrorThen(1))
        .await
        .unwrap();
    let (status, body) = c.legate.exchange(&c.token(), AZURE_TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    let stats = c.fakes.entra.stats();
    assert_eq!((stats.requests, stats.faulted), (2, 1), "{stats:?}");
}

/// Throttling is transient, however it arrives: AWS `Throttling` and
/// `IDPCommunicationError` (both HTTP 400, classified by code), Google and Entra 429
/// with `Retry-After` — each is retried once and the exchange succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_and_succeeds() {
    let c = Clouds::start().await;
    for (n, fault) in [Fault::Throttle(1), Fault::IdpCommunicationError(1)]
        .into_iter()
        .enumerate()
    {
        c.fakes.aws.set_fault(fault).await.unwrap();
        // A distinct lifetime each time, so the cache does not answer.
        let lifetime = 900 + u64::try_from(n).unwrap() * 100;
        let (status, body) = c
            .legate
            .exchange(&c.token(), AWS_TARGET, Some(lifetime))
            .await;
        assert_eq!(status, 200, "{fault:?}: {body}");
    }
    let stats = c.fakes.aws.stats();
    assert_eq!(
        (stats.requests, stats.faulted, stats.succeeded),
        (4, 2, 2),
        "{stats:?}"
    );

    c.fakes.gcp.set_fault(Fault::Throttle(1)).await.unwrap();
    let (status, body) = c.legate.exchange(&c.token(), GCP_FEDERATED, None).await;
    assert_eq!(status, 200, "{body}");
    let stats = c.fakes.gcp.sts_stats();
    assert_eq!((stats.requests, stats.faulted), (2, 1), "{stats:?}");

    c.fakes.entra.set_fault(Fault::Throttle(1)).await.unwrap();
    let (status, body) = c.legate.exchange(&c.token(), AZURE_TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    let stats = c.fakes.entra.stats();
    assert_eq!((stats.requests, stats.faulted), (2, 1), "{stats:?}");
}

/// A role whose trust policy does not name this target (AWS `AccessDenied`, HTTP 403)
/// is a refusal of the target's configuration: `400 invalid_target` (`cloud_refused`,
/// with AWS's code and request id in the audit event), after exactly one call — a
/// refusal is never retried — and the token is spent (only transient failures release
/// it).
#[tokio::test]
async fn aws_access_denied_is_invalid_target_and_not_retried() {
    let c = Clouds::start().await;
    let token = c.token();
    let (status, body) = c.legate.exchange(&token, AWS_MISTRUSTED, None).await;
    let event = assert_cloud_refused(&c.legate, status, &body, "AccessDenied");
    assert_cloud_request_id(&event);
    let stats = c.fakes.aws.stats();
    assert_eq!((stats.requests, stats.refused), (1, 1), "{stats:?}");

    let (status, body) = c.legate.exchange(&token, AWS_MISTRUSTED, None).await;
    c.legate.assert_rejected(status, &body, "replayed");
    assert_eq!(c.fakes.aws.stats().requests, 1);
}

/// A workload identity provider whose attribute condition leaves this target out
/// (Google `unauthorized_client`) is `400 invalid_target` after exactly one STS call.
#[tokio::test]
async fn gcp_attribute_condition_refusal_is_invalid_target_and_not_retried() {
    let c = Clouds::start().await;
    let (status, body) = c.legate.exchange(&c.token(), GCP_STRANGER, None).await;
    assert_cloud_refused(&c.legate, status, &body, "unauthorized_client");
    let stats = c.fakes.gcp.sts_stats();
    assert_eq!((stats.requests, stats.refused), (1, 1), "{stats:?}");
    assert_eq!(c.fakes.gcp.iam_stats().requests, 0);
}

/// An Entra application that does not exist in the tenant (AADSTS700016, the wrong
/// `client_id`) is `400 invalid_target` after exactly one call, with Entra's code and
/// correlation id in the audit event.
#[tokio::test]
async fn entra_unknown_client_is_invalid_target_and_not_retried() {
    let c = Clouds::start().await;
    let (status, body) = c
        .legate
        .exchange(&c.token(), AZURE_UNKNOWN_CLIENT, None)
        .await;
    let event = assert_cloud_refused(&c.legate, status, &body, "AADSTS700016");
    assert_cloud_request_id(&event);
    let stats = c.fakes.entra.stats();
    assert_eq!((stats.requests, stats.refused), (1, 1), "{stats:?}");
}
