//! The credential broker (`legate metadata-server`) end to end, driven by the real SDKs:
//! boto3 through IMDSv2 and through the ECS endpoint (then `GetCallerIdentity` at
//! moto), google-auth's `compute_engine.Credentials` and azure-identity's
//! `ManagedIdentityCredential` (App Service shape), each getting exactly the
//! credential Legate obtained from moto or the strict fakes.
//!
//! The broker runs in-process on `127.0.0.1:0` with the system clock and a
//! [`LegateFetcher`] reading the workload's token from a file through legate-client's
//! `file:` source, as the subcommand does; each SDK runs in `tests/peers/sdk_credentials.py` with a cleared
//! environment holding only the variables docs/broker.md tells users to set.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: failing loudly is the point"
)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use legate_broker::server::DEFAULT_GCP_SCOPE;
use legate_broker::{
    AwsShape, AzureShape, Broker, BrokerConfig, ClientTokenSource, GcpShape, LegateFetcher,
    SystemClock,
};
use legate_core::Secret;
use legate_fakes::{
    EntraApp, EntraConfig, EntraFake, GcpConfig, GcpFake, GcpServiceAccount, Options,
    target_subject,
};
use legate_server::audit::Outcome;
use legate_testkit::testkeys::TestKey;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::harness::{
    CloudTargetSpec, Legate, Setup, TrustSpec, UPSTREAM_AUDIENCE, plain_http_client,
    upstream_claims,
};
use crate::issuer::TestIssuer;
use crate::peers::{Moto, TestPki};

/// The workload's token file, read through legate-client's `file:` source (re-read on
/// every fetch), as `legate metadata-server --token-source file:PATH` does.
fn file_source(path: &Path) -> ClientTokenSource {
    let source = legate_client::Source::new(
        legate_client::TokenSource::File(path.to_owned()),
        UPSTREAM_AUDIENCE,
        legate_client::Environment::from_pairs(Vec::<(String, String)>::new()),
    )
    .unwrap();
    ClientTokenSource::new(source)
}

const TRUST: &str = "github";
const SUBJECT: &str = "repo:octo-org/app:ref:refs/heads/main";
const ACCOUNT: &str = "123456789012";
const ROLE: &str = "deploy";
const SESSION_NAME: &str = "github-repo-octo-org-app-ref-refs-heads-main";
const AWS_TARGET: &str = "aws-deploy";
const GCP_TARGET: &str = "gcp-deploy";
const AZURE_TARGET: &str = "azure-deploy";
const GCP_PROVIDER: &str =
    "projects/123456789/locations/global/workloadIdentityPools/legate/providers/legate";
const GCP_SERVICE_ACCOUNT: &str = "deployer@legate-test.iam.gserviceaccount.com";
const TENANT: &str = "00000000-0000-0000-0000-000000000001";
const CLIENT: &str = "00000000-0000-0000-0000-000000000002";
const AZURE_SCOPE: &str = "https://management.azure.com/.default";
const ECS_TOKEN: &str = "ecs-authorization-for-the-test";
const IDENTITY_HEADER: &str = "identity-header-for-the-test";
const SDK_TIMEOUT: Duration = Duration::from_secs(60);

const POLICY: &str = r#"
@id("octo-org-app-uses-the-broker")
@allow_lint("unscoped-issuer: the test trust is a GitHub Actions look-alike")
permit (principal, action == Legate::Action::"exchange", resource)
when { principal.claims has repository_id && principal.claims.repository_id == "1296269" };
"#;

/// Legate with one target per cloud (moto for AWS, the strict Google and Entra fakes),
/// the in-test issuer as the workload's OIDC provider, and the broker in front.
struct World {
    _pki: TestPki,
    key: TestKey,
    issuer: TestIssuer,
    moto: Moto,
    gcp: GcpFake,
    entra: EntraFake,
    legate: Legate,
    dir: tempfile::TempDir,
    broker_url: String,
    broker_task: tokio::task::JoinHandle<()>,
}

impl World {
    async fn start() -> World {
        let pki = TestPki::localhost();
        let key = TestKey::es256("key-a");
        let issuer = TestIssuer::start(&pki, &[&key]).await;
        let reservation = Legate::reserve().await;
        let options = Options {
            clock: reservation.clock.clone(),
            ..Options::default()
        };
        let url = reservation.url.as_str().to_owned();
        let gcp_config = GcpConfig::new(url.as_str(), GCP_PROVIDER)
            .allowing_subjects([target_subject(GCP_TARGET)])
            .with_service_account(
                GcpServiceAccount::new(GCP_SERVICE_ACCOUNT)
                    .impersonable_by(target_subject(GCP_TARGET)),
            );
        let entra_config = EntraConfig::new(TENANT)
            .with_app(EntraApp::new(CLIENT).trusting(url.as_str(), target_subject(AZURE_TARGET)));
        let (moto, gcp, entra) = tokio::join!(
            Moto::start(),
            GcpFake::start_with(gcp_config, options.clone()),
            EntraFake::start_with(entra_config, options),
        );
        let (gcp, entra) = (gcp.unwrap(), entra.unwrap());
        let mut setup = Setup::new(vec![TrustSpec::with_ca(TRUST, &issuer.issuer, &pki)]);
        setup.cloud_targets = vec![
            CloudTargetSpec::aws(
                AWS_TARGET,
                &format!("arn:aws:iam::{ACCOUNT}:role/{ROLE}"),
                &moto.url,
            )
            .key("max_lifetime_secs", 3600),
            CloudTargetSpec::gcp(
                GCP_TARGET,
                GCP_PROVIDER,
                gcp.url(),
                Some(GCP_SERVICE_ACCOUNT),
            ),
            CloudTargetSpec::azure(AZURE_TARGET, TENANT, CLIENT, AZURE_SCOPE, entra.url()),
        ];
        setup
            .policies
            .push(("broker.cedar".to_owned(), POLICY.to_owned()));
        let legate = Legate::start_reserved(reservation, &setup).await;

        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig {
            aws: Some(AwsShape {
                target: AWS_TARGET.into(),
                role_name: "legate".into(),
                ecs_auth_token: Some(Secret::new(ECS_TOKEN.into())),
            }),
            gcp: Some(GcpShape {
                target: GCP_TARGET.into(),
                service_account: Some(GCP_SERVICE_ACCOUNT.into()),
                project_id: Some("legate-test".into()),
                scopes: vec![DEFAULT_GCP_SCOPE.into()],
            }),
            azure: Some(AzureShape {
                target: AZURE_TARGET.into(),
                resource: AZURE_SCOPE.trim_end_matches("/.default").into(),
                client_id: None,
                identity_header: Some(Secret::new(IDENTITY_HEADER.into())),
            }),
        };
        let source = Arc::new(file_source(&dir.path().join("token")));
        let fetcher = LegateFetcher::new(legate.url.as_str(), source).unwrap();
        let listener = legate_broker::bind("127.0.0.1:0".parse().unwrap(), false)
            .await
            .unwrap();
        let local = listener.local_addr().unwrap();
        let broker = Broker::new(config, local, Arc::new(fetcher), Arc::new(SystemClock)).unwrap();
        let broker_task = tokio::spawn(async move {
            legate_broker::serve(listener, broker, std::future::pending())
                .await
                .unwrap();
        });
        World {
            _pki: pki,
            key,
            issuer,
            moto,
            gcp,
            entra,
            legate,
            dir,
            broker_url: format!("http://{local}"),
            broker_task,
        }
    }

    /// Puts a fresh workload token in the broker's token file (each is single-use at
    /// Legate, as a rotating projected token would be).
    fn rotate_token(&self) -> String {
        let claims = json!({
            "sub": SUBJECT,
            "aud": UPSTREAM_AUDIENCE,
            "repository": "octo-org/app",
            "repository_id": "1296269",
            "ref": "refs/heads/main",
        });
        let token = self.key.token(&upstream_claims(
            &self.issuer.issuer,
            self.legate.now(),
            &claims,
        ));
        std::fs::write(self.token_path(), &token).unwrap();
        token
    }

    fn token_path(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    /// `sdk_credentials.py <args>` with only `env` (plus PATH and an empty HOME).
    async fn sdk(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Value, String> {
        run_sdk(self.dir.path(), args, env).await
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.broker_task.abort();
    }
}

async fn run_sdk(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Value, String> {
    let python = std::env::var_os("LEGATE_TEST_PYTHON").expect("LEGATE_TEST_PYTHON");
    let peers = PathBuf::from(std::env::var_os("LEGATE_TEST_PEERS").expect("LEGATE_TEST_PEERS"));
    let mut cmd = Command::new(python);
    cmd.arg(peers.join("sdk_credentials.py"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        // No shared config or credential files, no proxies: only what the test sets.
        .env("AWS_CONFIG_FILE", home.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            home.join("no-aws-credentials"),
        )
        .env("CLOUDSDK_CONFIG", home.join("no-gcloud"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(SDK_TIMEOUT, cmd.output())
        .await
        .expect("sdk_credentials.py finishes")
        .expect("sdk_credentials.py runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => Ok(serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("no JSON from sdk_credentials.py ({e}): {stdout:?}"))),
        Some(1) => Err(stderr.trim().to_owned()),
        _ => panic!("sdk_credentials.py failed ({}): {stderr}", output.status),
    }
}

/// The acceptance path for AWS: unmodified boto3, pointed at the broker by one
/// environment variable (IMDSv2; V1 disabled so a fallback cannot pass), then by the
/// ECS pair, gets the session credentials Legate obtained from moto, and moto's
/// `GetCallerIdentity` names the assumed role. The second SDK run is served from the
/// broker's cache: one exchange at Legate for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_through_imdsv2_and_the_ecs_endpoint_gets_legates_aws_credentials() {
    let world = World::start().await;
    let token = world.rotate_token();
    let expected_arn = format!("arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/{SESSION_NAME}");

    let imds = world
        .sdk(
            &["aws", "--endpoint", &world.moto.url],
            &[
                ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &world.broker_url),
                ("AWS_EC2_METADATA_V1_DISABLED", "true"),
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("boto3 via IMDSv2: {e}\nmoto: {}", world.moto.stderr()));
    assert_eq!(imds["method"], "iam-role", "{imds}");
    assert_eq!(imds["Arn"], expected_arn.as_str());
    assert_eq!(imds["Account"], ACCOUNT);

    let ecs_uri = format!("{}/v2/credentials", world.broker_url);
    let ecs = world
        .sdk(
            &["aws", "--endpoint", &world.moto.url],
            &[
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &ecs_uri),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", ECS_TOKEN),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("boto3 via ECS: {e}"));
    assert_eq!(ecs["method"], "container-role", "{ecs}");
    assert_eq!(ecs["Arn"], expected_arn.as_str());
    assert_eq!(
        ecs["AccessKeyId"], imds["AccessKeyId"],
        "served from the cache"
    );

    let events = world.legate.events_of_token(&token, 1);
    assert_eq!(events[0].decision, Outcome::Allow, "{:#?}", events[0]);
    assert_eq!(events[0].target.as_deref(), Some(AWS_TARGET));
}

/// Stops other local processes from reading container credentials: boto3 with a
/// wrong `AWS_CONTAINER_AUTHORIZATION_TOKEN` gets nothing, and no exchange happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_with_a_wrong_ecs_authorization_token_gets_no_credentials() {
    let world = World::start().await;
    let token = world.rotate_token();
    let ecs_uri = format!("{}/v2/credentials", world.broker_url);
    let refused = world
        .sdk(
            &["aws", "--endpoint", &world.moto.url],
            &[
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &ecs_uri),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "guessed"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ],
        )
        .await
        .unwrap_err();
    assert!(!refused.is_empty());
    assert!(world.legate.events_of_token(&token, 0).is_empty());
}

/// The acceptance path for Google: google-auth's `compute_engine.Credentials`, with
/// only `GCE_METADATA_HOST` set, refreshes to exactly the access token the Google
/// fake issued to Legate for the impersonated service account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_auth_compute_engine_credentials_get_the_token_legate_obtained() {
    let world = World::start().await;
    world.rotate_token();
    let host = world.broker_url.trim_start_matches("http://").to_owned();
    let answer = world
        .sdk(
            &["gcp"],
            &[("GCE_METADATA_HOST", &host), ("GCE_METADATA_IP", &host)],
        )
        .await
        .unwrap_or_else(|e| panic!("google-auth: {e}"));
    let impersonation = world.gcp.last_impersonation().expect("legate impersonated");
    assert_eq!(impersonation.service_account, GCP_SERVICE_ACCOUNT);
    assert_eq!(answer["token"], impersonation.access_token.as_str());
    assert_eq!(answer["service_account_email"], GCP_SERVICE_ACCOUNT);
}

/// The acceptance path for Azure: azure-identity's `ManagedIdentityCredential`, with
/// the App Service pair `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`, gets exactly the
/// token the Entra fake issued to Legate; with a wrong header it gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_identity_managed_identity_credential_gets_the_token_legate_obtained() {
    let world = World::start().await;
    world.rotate_token();
    let endpoint = format!("{}/msi/token", world.broker_url);
    let wrong = world
        .sdk(
            &["azure", "--scope", AZURE_SCOPE],
            &[
                ("IDENTITY_ENDPOINT", &endpoint),
                ("IDENTITY_HEADER", "guessed"),
            ],
        )
        .await;
    assert!(wrong.is_err(), "{wrong:?}");
    assert!(
        world.entra.last_issued().is_none(),
        "no exchange for a refused client"
    );
    let answer = world
        .sdk(
            &["azure", "--scope", AZURE_SCOPE],
            &[
                ("IDENTITY_ENDPOINT", &endpoint),
                ("IDENTITY_HEADER", IDENTITY_HEADER),
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("azure-identity: {e}"));
    let issued = world
        .entra
        .last_issued()
        .expect("legate got an entra token");
    assert_eq!(answer["token"], issued.access_token.as_str());
    assert!(answer["expires_on"].as_i64().unwrap() > world.legate.now());
}

/// Stops a client from getting a token for a resource its target does not serve: the
/// broker answers 400 (azure-identity reports the failure) and Legate is not asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_identity_asking_for_another_resource_is_refused() {
    let world = World::start().await;
    world.rotate_token();
    let endpoint = format!("{}/msi/token", world.broker_url);
    let refused = world
        .sdk(
            &["azure", "--scope", "https://vault.azure.net/.default"],
            &[
                ("IDENTITY_ENDPOINT", &endpoint),
                ("IDENTITY_HEADER", IDENTITY_HEADER),
            ],
        )
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(world.entra.last_issued().is_none());
}

/// The IMDSv2 rules and the `Host` check on the wire (real HTTP through hyper, not a
/// router call): no session token 401, an expired one 401, a PUT through a relay
/// (`X-Forwarded-For`) 403, TTLs outside 1–21600 400, a rebinding `Host` 403. None of
/// these reaches Legate (its URL here goes nowhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imdsv2_rules_hold_on_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let source = Arc::new(file_source(&dir.path().join("token")));
    let fetcher = LegateFetcher::new("http://127.0.0.1:1", source).unwrap();
    let clock = Arc::new(legate_broker::ManualClock::new(1_800_000_000));
    let listener = legate_broker::bind("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    let local = listener.local_addr().unwrap();
    let config = BrokerConfig {
        aws: Some(AwsShape {
            target: AWS_TARGET.into(),
            role_name: "legate".into(),
            ecs_auth_token: None,
        }),
        ..BrokerConfig::default()
    };
    let broker = Broker::new(config, local, Arc::new(fetcher), clock.clone()).unwrap();
    let task = tokio::spawn(async move {
        legate_broker::serve(listener, broker, std::future::pending())
            .await
            .unwrap();
    });
    let http = plain_http_client(Duration::from_secs(10));
    let url = |path: &str| format!("http://{local}{path}");
    let put = |ttl: &str| {
        http.put(url("/latest/api/token"))
            .header("x-aws-ec2-metadata-token-ttl-seconds", ttl.to_owned())
    };
    let roles = "/latest/meta-data/iam/security-credentials/";

    for ttl in ["0", "21601", "x"] {
        assert_eq!(put(ttl).send().await.unwrap().status(), 400, "ttl {ttl}");
    }
    let relayed = put("60")
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(relayed.status(), 403);
    assert_eq!(http.get(url(roles)).send().await.unwrap().status(), 401);

    let session = put("60").send().await.unwrap().text().await.unwrap();
    let read = || {
        http.get(url(roles))
            .header("x-aws-ec2-metadata-token", session.clone())
    };
    let ok = read().send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "legate");
    let rebound = read().header("host", format!("evil.example:{}", local.port()));
    assert_eq!(rebound.send().await.unwrap().status(), 403);
    clock.advance(60);
    assert_eq!(
        read().send().await.unwrap().status(),
        401,
        "expired session"
    );
    task.abort();
}
