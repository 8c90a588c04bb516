//! The `aws` target: `sts:AssumeRoleWithWebIdentity` with Legate's assertion.
//!
//! The request goes through `aws-sdk-sts` (which serialises the query-protocol request
//! and parses the XML answer and error envelopes), with the SDK's own retries disabled
//! and its HTTP transport replaced by Legate's reqwest client (rustls, Mozilla roots plus
//! the target's CA bundle, bounded bodies): see `docs/adr/0006-cloud-token-clients.md`.
//! The call is unsigned (`smithy.api#noAuth`), so the SDK needs no AWS credentials.
//!
//! Rules from the STS API reference (protocols.md §2.1):
//! - `RoleSessionName`: 2 to 64 characters of `[\w+=,.@-]`; derived from the workload.
//! - `DurationSeconds`: 900 to 43200, and at most the role's `MaxSessionDuration`, which
//!   AWS enforces by failing, not clamping; Legate raises a shorter approved lifetime to
//!   900 s and the config refuses a target maximum below 900 s.
//! - Errors are classified by code, not by status: `Throttling` and
//!   `IDPCommunicationError` arrive as HTTP 400 yet are transient.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_sts::config::{BehaviorVersion, Region};
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::RequestId;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use legate_core::{Secret, UnixSeconds};
use legate_issuer::{Issuer, SigningAlg};

use crate::http::{
    AttemptError, CallPolicy, ClientBuildError, MAX_RESPONSE_BYTES, bounded, check_endpoint,
    refused, retry_after, unavailable, with_retries,
};
use crate::{
    AwsTarget, BoxFuture, CloudTarget, Credential, CredentialProvider, ExchangeError, IssueRequest,
    Target,
};

/// The region used when a target sets none.
pub const AWS_DEFAULT_REGION: &str = "us-east-1";
/// The assertion `aud` AWS expects by default (the IAM OIDC provider's client id).
pub const AWS_DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";
/// The shortest session AWS issues, in seconds.
pub const AWS_MIN_DURATION_SECS: u64 = 900;
/// The longest session AWS issues, in seconds.
pub const AWS_MAX_DURATION_SECS: u64 = 43_200;
const CLOUD: &str = "aws";
/// Longest `RoleSessionName`.
const MAX_SESSION_NAME: usize = 64;

/// Issues AWS session credentials for `aws` targets.
#[derive(Debug)]
pub struct AwsProvider {
    issuer: Arc<Issuer>,
    alg: SigningAlg,
    targets: HashMap<String, AwsClient>,
}

/// One target's settings and its STS client.
#[derive(Debug)]
struct AwsClient {
    settings: AwsTarget,
    sts: aws_sdk_sts::Client,
    policy: CallPolicy,
}

impl AwsProvider {
    /// A provider for the `aws` targets among `targets` (others are ignored), signing
    /// assertions with `issuer`'s `alg` key. `policy` overrides each target's default call
    /// policy (tests); `None` uses [`CallPolicy::with_timeout_secs`] of the target.
    ///
    /// # Errors
    ///
    /// [`ClientBuildError`] for a bad endpoint or CA bundle.
    pub fn new(
        issuer: Arc<Issuer>,
        alg: SigningAlg,
        targets: &[Target],
        policy: Option<CallPolicy>,
    ) -> Result<Self, ClientBuildError> {
        let mut clients = HashMap::new();
        for target in targets {
            let Some(cloud @ CloudTarget::Aws(settings)) = &target.cloud else {
                continue;
            };
            let (http, policy) = crate::http::target_client(&target.name, cloud, policy)?;
            let mut config = aws_sdk_sts::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(settings.region.clone()))
                .http_client(ReqwestHttpClient::shared(http))
                // Legate retries itself, classifying by code (`with_retries`).
                .retry_config(RetryConfig::disabled())
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(policy.connect_timeout)
                        .operation_attempt_timeout(policy.timeout)
                        .build(),
                );
            if let Some(endpoint) = &settings.endpoint {
                check_endpoint(endpoint).map_err(|source| ClientBuildError::Endpoint {
                    target: target.name.clone(),
                    source,
                })?;
                config = config.endpoint_url(endpoint.clone());
            }
            clients.insert(
                target.name.clone(),
                AwsClient {
                    settings: settings.clone(),
                    sts: aws_sdk_sts::Client::from_conf(config.build()),
                    policy,
                },
            );
        }
        Ok(Self {
            issuer,
            alg,
            targets: clients,
        })
    }

    async fn exchange(
        &self,
        request: &IssueRequest<'_>,
        now: UnixSeconds,
    ) -> Result<Credential, ExchangeError> {
        let Some(client) = self.targets.get(&request.target.name) else {
            return Err(ExchangeError::Mint(format!(
                "target `{}` is not an aws target",
                request.target.name
            )));
        };
        let audience = request.target.audience.as_str();
        let session = session_name(&request.workload);
        // Session tags and source identity travel in the assertion: AWS takes them from
        // the web identity token only (protocols.md §2.1).
        let grant_claims = request.grant.aws_claims();
        let duration = i32::try_from(duration_seconds(request.lifetime_secs)).unwrap_or(i32::MAX);
        tracing::debug!(target = %request.target.name, request_id = request.request_id, session = %session, duration, "sts:AssumeRoleWithWebIdentity");
        with_retries(CLOUD, &client.policy, |_| {
            let session = session.clone();
            let grant_claims = &grant_claims;
            async move {
                // A fresh assertion per attempt: it is cheap, and no attempt reuses a `jti`.
                let assertion = crate::mint_assertion(
                    &self.issuer,
                    self.alg,
                    request.target,
                    audience,
                    &request.workload,
                    grant_claims,
                    now,
                )
                .map_err(AttemptError::fatal)?;
                let result = client
                    .sts
                    .assume_role_with_web_identity()
                    .role_arn(&client.settings.role_arn)
                    .role_session_name(session)
                    .web_identity_token(assertion.expose())
                    .duration_seconds(duration)
                    .send()
                    .await;
                match result {
                    Ok(output) => credential(&output),
                    Err(e) => Err(classify_sdk_error(&e)),
                }
            }
        })
        .await
    }
}

impl CredentialProvider for AwsProvider {
    fn issue<'a>(
        &'a self,
        request: IssueRequest<'a>,
        now: UnixSeconds,
    ) -> BoxFuture<'a, Result<Credential, ExchangeError>> {
        Box::pin(async move { self.exchange(&request, now).await })
    }
}

/// `DurationSeconds` for an approved lifetime: raised to 900 (AWS's minimum) and cut to
/// 43200 (its maximum). The approved lifetime is already capped by the target maximum,
/// which the config keeps within 900..=43200.
pub(crate) fn duration_seconds(approved_secs: u64) -> u64 {
    approved_secs.clamp(AWS_MIN_DURATION_SECS, AWS_MAX_DURATION_SECS)
}

/// The `RoleSessionName` for a workload: 2 to 64 characters of `[A-Za-z0-9_+=,.@-]`.
///
/// Every other character becomes `-`. A name longer than 64 keeps its first 55
/// characters, then `.` and 8 hex digits of the SHA-256 of the whole workload, so that
/// two long workloads sharing a prefix stay distinguishable in CloudTrail. A name shorter
/// than 2 is prefixed with `legate-`.
pub fn session_name(workload: &str) -> String {
    let clean: String = workload
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean.len() < 2 {
        return format!("legate-{clean}");
    }
    if clean.len() <= MAX_SESSION_NAME {
        return clean;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, workload.as_bytes());
    let hex: String = digest
        .as_ref()
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    // `clean` is ASCII, so byte and character positions agree.
    let head = clean.get(..MAX_SESSION_NAME - 9).unwrap_or(&clean);
    format!("{head}.{hex}")
}

/// Whether an STS error code is transient: worth retrying after a backoff.
///
/// Throttling (`Throttling`, `ThrottlingException`, `RequestLimitExceeded`), STS failing
/// to fetch Legate's JWKS (`IDPCommunicationError`), and AWS-side faults. Every other code
/// (`InvalidIdentityToken`, `ExpiredTokenException`, `AccessDenied`, `IDPRejectedClaim`,
/// `MalformedPolicyDocument`, `PackedPolicyTooLarge`, `RegionDisabledException`, …) is a
/// refusal of this target's configuration or assertion.
pub(crate) fn transient_code(code: &str) -> bool {
    matches!(
        code,
        "Throttling"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "IDPCommunicationError"
            | "ServiceUnavailable"
            | "InternalFailure"
            | "InternalError"
    )
}

/// Maps an SDK error to one attempt's outcome.
fn classify_sdk_error<E>(e: &SdkError<E, HttpResponse>) -> AttemptError
where
    E: ProvideErrorMetadata + RequestId + std::error::Error + 'static,
{
    match e {
        SdkError::ServiceError(ctx) => {
            let err = ctx.err();
            let status = ctx.raw().status().as_u16();
            let code = err.code().unwrap_or("unknown");
            let message = err.message().unwrap_or_default();
            let request_id = err
                .request_id()
                .or_else(|| ctx.raw().headers().get("x-amzn-requestid"))
                .or_else(|| ctx.raw().body().bytes().and_then(body_request_id));
            let transient = transient_code(code) || crate::http::transient_status(status);
            AttemptError {
                error: if transient {
                    unavailable(CLOUD, code, request_id, message)
                } else {
                    refused(CLOUD, code, request_id, message)
                },
                retry: transient,
                retry_after: retry_after(ctx.raw().headers().get("retry-after")),
            }
        }
        SdkError::TimeoutError(_) => AttemptError {
            error: unavailable(CLOUD, "timeout", None, "sts did not answer in time"),
            retry: true,
            retry_after: None,
        },
        SdkError::DispatchFailure(d) => {
            let code = if d.is_timeout() { "timeout" } else { "connect" };
            AttemptError {
                error: unavailable(CLOUD, code, None, &error_chain(e)),
                retry: true,
                retry_after: None,
            }
        }
        SdkError::ResponseError(r) => {
            let status = r.raw().status().as_u16();
            AttemptError {
                error: unavailable(
                    CLOUD,
                    &format!("http_{status}"),
                    r.raw().headers().get("x-amzn-requestid"),
                    "unreadable sts answer",
                ),
                retry: crate::http::transient_status(status),
                retry_after: None,
            }
        }
        _ => AttemptError::fatal(unavailable(CLOUD, "sdk_error", None, &error_chain(e))),
    }
}

/// The `<RequestId>` of an STS XML error envelope, when the header is missing.
fn body_request_id(body: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<RequestId>")? + "<RequestId>".len();
    let len = text.get(start..)?.find("</RequestId>")?;
    text.get(start..start + len)
}

/// An error and its sources, joined.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// Turns a successful answer into a [`Credential::Aws`].
fn credential(
    output: &aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityOutput,
) -> Result<Credential, AttemptError> {
    let request_id = output.request_id().map(|r| bounded(r, 64));
    let Some(creds) = output.credentials() else {
        return Err(AttemptError::fatal(unavailable(
            CLOUD,
            "invalid_response",
            request_id.as_deref(),
            "sts answer has no credentials",
        )));
    };
    Ok(Credential::Aws {
        access_key_id: creds.access_key_id().to_owned(),
        secret_access_key: Secret::new(creds.secret_access_key().to_owned()),
        session_token: Secret::new(creds.session_token().to_owned()),
        expiration: creds.expiration().secs(),
        assumed_role_arn: output.assumed_role_user().map(|u| bounded(u.arn(), 2048)),
        cloud_request_id: request_id,
    })
}

/// `aws-sdk-sts`'s HTTP client, backed by Legate's reqwest client.
#[derive(Debug, Clone)]
struct ReqwestHttpClient {
    connector: SharedHttpConnector,
}

impl ReqwestHttpClient {
    fn shared(client: reqwest::Client) -> SharedHttpClient {
        SharedHttpClient::new(Self {
            connector: SharedHttpConnector::new(ReqwestConnector { client }),
        })
    }
}

impl HttpClient for ReqwestHttpClient {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        // The reqwest client already carries the target's timeouts and TLS settings.
        self.connector.clone()
    }
}

/// Sends one smithy request with reqwest.
#[derive(Debug, Clone)]
struct ReqwestConnector {
    client: reqwest::Client,
}

impl HttpConnector for ReqwestConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        HttpConnectorFuture::new(async move { send(&client, request).await })
    }
}

async fn send(
    client: &reqwest::Client,
    request: HttpRequest,
) -> Result<HttpResponse, ConnectorError> {
    let method = reqwest::Method::from_bytes(request.method().as_bytes())
        .map_err(|e| ConnectorError::user(e.into()))?;
    let mut builder = client.request(method, request.uri());
    for (name, value) in request.headers() {
        builder = builder.header(name, value);
    }
    let body =
        request.body().bytes().map(<[u8]>::to_vec).ok_or_else(|| {
            ConnectorError::user("streaming request bodies are not supported".into())
        })?;
    let mut response = builder.body(body).send().await.map_err(|e| {
        if e.is_timeout() {
            ConnectorError::timeout(e.into())
        } else {
            ConnectorError::io(e.into())
        }
    })?;
    let status = StatusCode::try_from(response.status().as_u16())
        .map_err(|e| ConnectorError::other(e.into(), None))?;
    let headers = response.headers().clone();
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(ConnectorError::other(
                        format!("sts answer exceeds {MAX_RESPONSE_BYTES} bytes").into(),
                        None,
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) if e.is_timeout() => return Err(ConnectorError::timeout(e.into())),
            Err(e) => return Err(ConnectorError::io(e.into())),
        }
    }
    let mut out = HttpResponse::new(status, SdkBody::from(body));
    for (name, value) in &headers {
        if let Ok(value) = value.to_str() {
            out.headers_mut()
                .append(name.as_str().to_owned(), value.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{NOW, check_assertion, fast_policy, issuer, request, target};
    use crate::testserver::{Reply, TestServer};

    const SUCCESS: &str = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>target/aws-deploy</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/deploy/github-repo-org-repo</Arn>
      <AssumedRoleId>AROAEXAMPLEID:github-repo-org-repo</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG</SecretAccessKey>
      <SessionToken>FwoGZXIvYXdzEXAMPLE</SessionToken>
      <Expiration>2026-01-01T01:00:00Z</Expiration>
    </Credentials>
    <Provider>arn:aws:iam::123456789012:oidc-provider/legate.example.com</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>b1663ad1-23ab-4c7b-a8f9-000000000001</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#;

    fn error_xml(code: &str, message: &str) -> String {
        format!(
            r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>
  <RequestId>c2aa1234-0000-0000-0000-00000000beef</RequestId>
</ErrorResponse>"#
        )
    }

    fn aws_target(endpoint: &str) -> Target {
        target(
            "aws-deploy",
            CloudTarget::Aws(AwsTarget {
                role_arn: "arn:aws:iam::123456789012:role/deploy".into(),
                region: AWS_DEFAULT_REGION.into(),
                endpoint: Some(endpoint.into()),
                assertion_audience: None,
                ca_pem: None,
                timeout_secs: 5,
            }),
        )
    }

    async fn exchange(
        server: &TestServer,
        lifetime: u64,
        timeout_secs: u64,
    ) -> Result<Credential, ExchangeError> {
        let target = aws_target(&server.url);
        let provider = AwsProvider::new(
            issuer(),
            SigningAlg::Es256,
            std::slice::from_ref(&target),
            Some(fast_policy(timeout_secs)),
        )
        .unwrap();
        provider.issue(request(&target, lifetime), NOW).await
    }

    #[test]
    fn session_names_are_sanitised_to_the_aws_charset_and_length() {
        assert_eq!(
            session_name("github:repo:org/repo:ref:refs/heads/main"),
            "github-repo-org-repo-ref-refs-heads-main"
        );
        assert_eq!(session_name("k8s:a+b=c,d.e@f_g-h"), "k8s-a+b=c,d.e@f_g-h");
        assert_eq!(session_name("x"), "legate-x");
        assert_eq!(session_name(""), "legate-");
        assert_eq!(session_name("é"), "legate--");
        let long_a = session_name(&format!("t:{}a", "x".repeat(100)));
        let long_b = session_name(&format!("t:{}b", "x".repeat(100)));
        for name in [&long_a, &long_b] {
            assert_eq!(name.len(), 64, "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
            );
        }
        assert_ne!(
            long_a, long_b,
            "long names keep a digest of the whole workload"
        );
    }

    /// Stops Legate from asking AWS for a duration it fails on (AWS does not clamp).
    #[test]
    fn durations_stay_within_what_sts_accepts() {
        assert_eq!(duration_seconds(1), 900);
        assert_eq!(duration_seconds(900), 900);
        assert_eq!(duration_seconds(3600), 3600);
        assert_eq!(duration_seconds(43_200), 43_200);
        assert_eq!(duration_seconds(86_400), 43_200);
    }

    #[test]
    fn error_codes_are_classified_by_code_not_status() {
        for code in [
            "Throttling",
            "IDPCommunicationError",
            "RequestLimitExceeded",
        ] {
            assert!(transient_code(code), "{code}");
        }
        for code in [
            "InvalidIdentityToken",
            "ExpiredTokenException",
            "AccessDenied",
            "IDPRejectedClaim",
            "MalformedPolicyDocument",
            "PackedPolicyTooLarge",
            "RegionDisabledException",
        ] {
            assert!(!transient_code(code), "{code}");
        }
    }

    #[tokio::test]
    async fn a_successful_answer_becomes_aws_credentials() {
        let server = TestServer::start(vec![
            Reply::xml(200, SUCCESS)
                .with_header("x-amzn-requestid", "b1663ad1-23ab-4c7b-a8f9-000000000001"),
        ])
        .await;
        let cred = exchange(&server, 300, 5).await.unwrap();
        let Credential::Aws {
            access_key_id,
            secret_access_key,
            session_token,
            expiration,
            assumed_role_arn,
            cloud_request_id,
        } = &cred
        else {
            panic!("not aws credentials: {cred:?}");
        };
        assert_eq!(access_key_id, "ASIAEXAMPLE");
        assert_eq!(secret_access_key.expose(), "wJalrXUtnFEMI/K7MDENG");
        assert_eq!(session_token.expose(), "FwoGZXIvYXdzEXAMPLE");
        assert_eq!(*expiration, NOW + 3600);
        assert_eq!(
            assumed_role_arn.as_deref(),
            Some("arn:aws:sts::123456789012:assumed-role/deploy/github-repo-org-repo")
        );
        assert_eq!(
            cloud_request_id.as_deref(),
            Some("b1663ad1-23ab-4c7b-a8f9-000000000001")
        );

        let sent = &server.requests()[0];
        assert_eq!(sent.method, "POST");
        assert_eq!(
            sent.form_value("Action").as_deref(),
            Some("AssumeRoleWithWebIdentity")
        );
        assert_eq!(sent.form_value("Version").as_deref(), Some("2011-06-15"));
        assert_eq!(
            sent.form_value("RoleArn").as_deref(),
            Some("arn:aws:iam::123456789012:role/deploy")
        );
        assert_eq!(
            sent.form_value("RoleSessionName").as_deref(),
            Some("github-repo-org-repo-ref-refs-heads-main")
        );
        // 300 s approved: raised to AWS's minimum.
        assert_eq!(sent.form_value("DurationSeconds").as_deref(), Some("900"));
        assert!(
            sent.header("authorization").is_none(),
            "the call is unsigned"
        );
        let token = sent.form_value("WebIdentityToken").unwrap();
        check_assertion(&token, "aws-deploy", "sts.amazonaws.com", "ES256");
    }

    /// The grant's session tags and source identity reach STS inside the assertion
    /// (AWS reads them from the web identity token only), never as API parameters.
    #[tokio::test]
    async fn session_tags_and_source_identity_ride_in_the_assertion() {
        let server = TestServer::start(vec![Reply::xml(200, SUCCESS)]).await;
        let target = aws_target(&server.url);
        let provider = AwsProvider::new(
            issuer(),
            SigningAlg::Es256,
            std::slice::from_ref(&target),
            Some(fast_policy(5)),
        )
        .unwrap();
        let shaping = crate::Shaping {
            session_tags: [("Repo".to_owned(), "repository".to_owned())].into(),
            transitive_tag_keys: vec!["Repo".to_owned()],
            source_identity: Some("actor".to_owned()),
            ..crate::Shaping::default()
        };
        let claims = serde_json::json!({"repository": "org/repo", "actor": "octocat"});
        let mut req = request(&target, 900);
        req.grant = shaping.shape(claims.as_object().unwrap()).unwrap();
        provider.issue(req, NOW).await.unwrap();
        let sent = &server.requests()[0];
        assert!(sent.form_value("Tags.member.1.Key").is_none());
        assert!(sent.form_value("SourceIdentity").is_none());
        let token = sent.form_value("WebIdentityToken").unwrap();
        let claims = check_assertion(&token, "aws-deploy", "sts.amazonaws.com", "ES256");
        assert_eq!(
            claims["https://aws.amazon.com/tags"],
            serde_json::json!({
                "principal_tags": {"Repo": ["org/repo"]},
                "transitive_tag_keys": ["Repo"],
            })
        );
        assert_eq!(claims["https://aws.amazon.com/source_identity"], "octocat");
    }

    /// Stops a refused role or assertion from being hammered with retries.
    #[tokio::test]
    async fn refusals_are_not_retried_and_keep_the_aws_code_and_request_id() {
        for (status, code) in [
            (400, "InvalidIdentityToken"),
            (400, "ExpiredTokenException"),
            (403, "AccessDenied"),
            (403, "IDPRejectedClaim"),
            (403, "RegionDisabledException"),
        ] {
            let server =
                TestServer::start(vec![Reply::xml(status, &error_xml(code, "no\nway"))]).await;
            let err = exchange(&server, 900, 5).await.unwrap_err();
            assert_eq!(server.calls(), 1, "{code}");
            assert_eq!(
                err,
                ExchangeError::TargetRefused {
                    cloud: "aws",
                    code: code.into(),
                    request_id: Some("c2aa1234-0000-0000-0000-00000000beef".into()),
                    message: "no\\nway".into(),
                }
            );
        }
    }

    #[tokio::test]
    async fn throttling_sent_as_400_is_retried() {
        let server = TestServer::start(vec![
            Reply::xml(400, &error_xml("Throttling", "Rate exceeded")),
            Reply::xml(200, SUCCESS),
        ])
        .await;
        let cred = exchange(&server, 900, 5).await.unwrap();
        assert_eq!(server.calls(), 2);
        assert_eq!(cred.expires_at(), NOW + 3600);
        // Each attempt carries a fresh assertion.
        let jti = |i: usize| {
            let token = server.requests()[i].form_value("WebIdentityToken").unwrap();
            crate::fixtures::decode_jwt(&token).1["jti"].clone()
        };
        assert_ne!(jti(0), jti(1));
    }

    #[tokio::test]
    async fn server_errors_are_retried_then_reported_unavailable() {
        let server = TestServer::start(vec![
            Reply::xml(500, &error_xml("InternalFailure", "oops")),
            Reply::xml(200, SUCCESS),
        ])
        .await;
        assert!(exchange(&server, 900, 5).await.is_ok());
        assert_eq!(server.calls(), 2);

        let server = TestServer::start(vec![Reply::xml(
            400,
            &error_xml("IDPCommunicationError", "jwks unreachable"),
        )])
        .await;
        let err = exchange(&server, 900, 5).await.unwrap_err();
        assert_eq!(server.calls(), 3, "at most three attempts");
        assert_eq!(err.reason_code(), "cloud_unavailable");
        assert_eq!(err.cloud_code(), Some("IDPCommunicationError"));
    }

    #[tokio::test]
    async fn an_endpoint_that_never_answers_is_unavailable_within_the_deadline() {
        let server = TestServer::start(vec![Reply::Hang]).await;
        let err = exchange(&server, 900, 1).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert_eq!(err.cloud_code(), Some("timeout"), "{err}");
    }

    #[tokio::test]
    async fn a_closed_port_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let target = aws_target(&url);
        let provider = AwsProvider::new(
            issuer(),
            SigningAlg::Es256,
            std::slice::from_ref(&target),
            Some(fast_policy(5)),
        )
        .unwrap();
        let err = provider
            .issue(request(&target, 900), NOW)
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert_eq!(err.cloud_code(), Some("connect"), "{err}");
    }

    #[test]
    fn a_plain_http_endpoint_off_loopback_is_refused() {
        let target = aws_target("http://sts.amazonaws.com");
        let err = AwsProvider::new(issuer(), SigningAlg::Es256, &[target], None).unwrap_err();
        assert!(matches!(err, ClientBuildError::Endpoint { .. }), "{err}");
    }
}
