//! The cloud peers: moto (the AWS emulator, through boto3) and the strict fakes of
//! `legate-fakes` seen from outside — by boto3, which must parse the AWS fake's XML
//! exactly as it parses AWS's, and through [`FakeClouds`], the configuration `legate
//! demo` and the end-to-end tests use. The fakes' own refusal and fault tests live in
//! the `legate-fakes` crate.

#![allow(
    clippy::expect_used,
    reason = "test helpers outside #[test] functions: failing loudly is the point"
)]

use std::sync::Arc;

use legate_fakes::aws::DEFAULT_CLIENT_ID;
use legate_fakes::azure::TOKEN_EXCHANGE_AUDIENCE;
use legate_fakes::{
    CloudTargets, ENTRA_CLIENT_ID, ENTRA_SCOPE, FakeClouds, GCP_PROVIDER, GCP_SERVICE_ACCOUNT,
    SystemClock, TestIssuer, target_subject,
};
use serde_json::{Value, json};

use crate::peers::{Moto, aws_assume_role_with_web_identity, aws_caller_identity};

async fn issuer() -> TestIssuer {
    TestIssuer::start(Arc::new(SystemClock))
        .await
        .expect("start the test issuer")
}

fn client() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("aws-lc-rs supports the default TLS versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .expect("build reqwest client")
}

/// The moto peer works end to end: boto3 assumes a role with a web identity token
/// (moto validates none), and the credentials it returns are accepted by moto's
/// `GetCallerIdentity`, which names the assumed role. This is the path the AWS
/// adapter's acceptance test takes with Legate's credentials.
#[tokio::test]
async fn moto_issues_credentials_that_work_for_get_caller_identity() {
    let moto = Moto::start().await;
    let issuer = issuer().await;
    let token = issuer
        .sign(
            "RS256",
            &issuer.claims("target/aws-deploy", DEFAULT_CLIENT_ID, 300),
        )
        .unwrap();
    let role = "arn:aws:iam::123456789012:role/deploy";
    let credentials = aws_assume_role_with_web_identity(&moto.url, role, "ci-run", &token)
        .await
        .unwrap_or_else(|e| panic!("moto refused: {e}\nmoto stderr:\n{}", moto.stderr()));
    assert_eq!(credentials["Version"], 1);
    assert_eq!(
        credentials["AssumedRoleArn"],
        "arn:aws:sts::123456789012:assumed-role/deploy/ci-run"
    );
    for member in [
        "AccessKeyId",
        "SecretAccessKey",
        "SessionToken",
        "Expiration",
    ] {
        assert!(credentials[member].is_string(), "{member} in {credentials}");
    }

    let identity = aws_caller_identity(&moto.url, &credentials).await.unwrap();
    assert_eq!(
        identity["Arn"],
        "arn:aws:sts::123456789012:assumed-role/deploy/ci-run"
    );
    assert_eq!(identity["Account"], "123456789012");

    // moto does not refuse unknown credentials, but the role it reports comes from
    // the credentials presented: keys it never issued are not the assumed role.
    let unknown = json!({
        "AccessKeyId": "ASIAUNKNOWNUNKNOWN00",
        "SecretAccessKey": "unknown",
        "SessionToken": "unknown",
    });
    let identity = aws_caller_identity(&moto.url, &unknown).await;
    assert_ne!(
        identity.ok().map(|i| i["Arn"].clone()),
        Some(json!(
            "arn:aws:sts::123456789012:assumed-role/deploy/ci-run"
        ))
    );
}

/// boto3 (botocore's query-protocol parser) reads the AWS fake's success XML and its
/// error envelope as it reads AWS's: an adapter tested against the fake meets the
/// same shapes in production.
#[tokio::test]
async fn boto3_parses_the_aws_fakes_answers_and_errors() {
    let issuer = issuer().await;
    let clouds = FakeClouds::start(issuer.url(), CloudTargets::default())
        .await
        .unwrap();
    let role = clouds.aws_role_arn();
    let sign = |sub: &str| {
        issuer
            .sign("ES256", &issuer.claims(sub, DEFAULT_CLIENT_ID, 300))
            .unwrap()
    };

    let token = sign(&target_subject("aws-deploy"));
    let credentials = aws_assume_role_with_web_identity(clouds.aws.url(), &role, "ci-run", &token)
        .await
        .unwrap();
    let session = clouds.aws.last_session().unwrap();
    assert_eq!(credentials["AccessKeyId"], session.access_key_id.as_str());
    assert_eq!(
        credentials["SecretAccessKey"],
        session.secret_access_key.as_str()
    );
    assert_eq!(credentials["SessionToken"], session.session_token.as_str());
    assert_eq!(
        credentials["AssumedRoleArn"],
        "arn:aws:sts::123456789012:assumed-role/legate-demo/ci-run"
    );

    let other = sign("target/gcp-deploy");
    let err = aws_assume_role_with_web_identity(clouds.aws.url(), &role, "ci-run", &other)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        "AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity"
    );
    let err = aws_assume_role_with_web_identity(clouds.aws.url(), &role, "bad name", &token)
        .await
        .unwrap_err();
    assert!(
        err.starts_with("ValidationError: 1 validation error detected"),
        "{err}"
    );
}

/// `FakeClouds` trusts exactly one target per cloud: each target's assertion is
/// honoured by its own cloud and refused by the others' (the cross-target attack).
#[tokio::test]
async fn fake_clouds_honour_each_targets_assertion_at_its_own_cloud_only() {
    let issuer = issuer().await;
    let clouds = FakeClouds::start(issuer.url(), CloudTargets::default())
        .await
        .unwrap();
    let http = client();
    let gcp_aud = format!("https://iam.googleapis.com/{GCP_PROVIDER}");
    let sign = |alg: &str, target: &str, aud: &str| {
        issuer
            .sign(alg, &issuer.claims(&target_subject(target), aud, 300))
            .unwrap()
    };

    let aws = |token: String| {
        let http = http.clone();
        let url = format!("{}/", clouds.aws.url());
        let role = clouds.aws_role_arn();
        async move {
            let response = http
                .post(url)
                .form(&[
                    ("Action", "AssumeRoleWithWebIdentity"),
                    ("Version", "2011-06-15"),
                    ("RoleArn", role.as_str()),
                    ("RoleSessionName", "ci-run"),
                    ("WebIdentityToken", token.as_str()),
                ])
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        }
    };
    let gcp = |token: String| {
        let http = http.clone();
        let url = format!("{}/v1/token", clouds.gcp.url());
        async move {
            let response = http
                .post(url)
                .form(&[
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:token-exchange",
                    ),
                    ("audience", &format!("//iam.googleapis.com/{GCP_PROVIDER}")),
                    ("scope", "https://www.googleapis.com/auth/cloud-platform"),
                    (
                        "requested_token_type",
                        "urn:ietf:params:oauth:token-type:access_token",
                    ),
                    ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                    ("subject_token", &token),
                ])
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let entra = |token: String| {
        let http = http.clone();
        let url = clouds.entra.token_url();
        async move {
            let response = http
                .post(url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", ENTRA_CLIENT_ID),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", &token),
                    ("scope", ENTRA_SCOPE),
                ])
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        }
    };

    assert_eq!(
        aws(sign("ES256", "aws-deploy", DEFAULT_CLIENT_ID)).await,
        200
    );
    let (status, body) = gcp(sign("ES256", "gcp-deploy", &gcp_aud)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        entra(sign("RS256", "azure-deploy", TOKEN_EXCHANGE_AUDIENCE)).await,
        200
    );

    // Impersonation of the configured service account with the federated token.
    let federated = body["access_token"].as_str().unwrap();
    let response = http
        .post(format!(
            "{}/v1/projects/-/serviceAccounts/{GCP_SERVICE_ACCOUNT}:generateAccessToken",
            clouds.gcp.url()
        ))
        .bearer_auth(federated)
        .json(&json!({"scope": ["https://www.googleapis.com/auth/cloud-platform"], "lifetime": "600s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    // Each cloud refuses the other targets' subjects, even with its own audience.
    assert_eq!(
        aws(sign("ES256", "gcp-deploy", DEFAULT_CLIENT_ID)).await,
        403
    );
    assert_eq!(gcp(sign("ES256", "aws-deploy", &gcp_aud)).await.0, 400);
    assert_eq!(
        entra(sign("RS256", "gcp-deploy", TOKEN_EXCHANGE_AUDIENCE)).await,
        400
    );
    // And assertions living longer than Legate's 300 s promise.
    let long = issuer
        .sign(
            "ES256",
            &issuer.claims(&target_subject("aws-deploy"), DEFAULT_CLIENT_ID, 301),
        )
        .unwrap();
    assert_eq!(aws(long).await, 400);

    let toml = clouds.targets_toml();
    for expected in [
        format!("endpoint = \"{}\"", clouds.aws.url()),
        format!("sts_endpoint = \"{}\"", clouds.gcp.url()),
        format!("iam_credentials_endpoint = \"{}\"", clouds.gcp.url()),
        format!("authority_host = \"{}\"", clouds.entra.url()),
        format!("role_arn = \"{}\"", clouds.aws_role_arn()),
        format!("workload_identity_provider = \"{GCP_PROVIDER}\""),
    ] {
        assert!(toml.contains(&expected), "{expected} not in\n{toml}");
    }
}
