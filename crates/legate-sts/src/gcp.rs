//! The `gcp` target: Google STS token exchange, then optionally `generateAccessToken`.
//!
//! Protocol (protocols.md §2.2, from google-auth-library-python `sts.py` and
//! `impersonated_credentials.py`):
//! 1. `POST {sts}/v1/token`, form-encoded: `grant_type` token-exchange, `audience` =
//!    `//iam.googleapis.com/` + the provider's resource name, `scope` (space-joined),
//!    `requested_token_type` access_token, `subject_token_type` jwt, `subject_token` =
//!    Legate's assertion (whose `aud` is `https://iam.googleapis.com/` + the provider).
//!    Answer: `{"access_token", "issued_token_type", "token_type", "expires_in"}` with
//!    `expires_in` a number or a string.
//! 2. With a `service_account`: `POST {iam}/v1/projects/-/serviceAccounts/{sa}:generateAccessToken`
//!    with `Authorization: Bearer <federated token>` and `{"scope": [...], "lifetime": "Ns"}`.
//!    Answer: `{"accessToken", "expireTime"}` (RFC 3339).
//!
//! Errors: 429 and 5xx are transient; STS's `{"error": "invalid_grant" | "invalid_target" |
//! "unauthorized_client" | "invalid_request", "error_description"}` and IAM's
//! `{"error": {"code", "message", "status"}}` with any other status are refusals.
//!
//! Plain reqwest, not `google-cloud-auth`: see `docs/adr/0006-cloud-token-clients.md`.

use std::collections::HashMap;
use std::sync::Arc;

use legate_core::{Secret, UnixSeconds};
use legate_issuer::{ASSERTION_SUBJECT_PREFIX, Issuer, SigningAlg};
use serde::Deserialize;
use serde_json::Value;

use crate::http::{
    AttemptError, CallPolicy, ClientBuildError, check_endpoint, read_body, refused, retry_after,
    transient_status, transport_error, unavailable, with_retries,
};
use crate::{
    BoxFuture, CloudTarget, Credential, CredentialProvider, ExchangeError, GcpTarget, IssueRequest,
    Target,
};

/// Google's STS endpoint.
pub const GCP_DEFAULT_STS_ENDPOINT: &str = "https://sts.googleapis.com";
/// Google's IAM Credentials endpoint.
pub const GCP_DEFAULT_IAM_ENDPOINT: &str = "https://iamcredentials.googleapis.com";
/// The default OAuth scope.
pub const GCP_DEFAULT_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Google's limit on the mapped `google.subject`, in bytes.
pub const MAX_GOOGLE_SUBJECT_BYTES: usize = 127;
const CLOUD: &str = "gcp";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// Whether `target/<name>` (the assertion's `sub`, mapped to `google.subject`) fits
/// Google's 127-byte limit; a longer one fails every exchange with `invalid_request`.
pub fn google_subject_fits(target_name: &str) -> bool {
    ASSERTION_SUBJECT_PREFIX.len() + target_name.len() <= MAX_GOOGLE_SUBJECT_BYTES
}

/// The assertion `aud` for a provider resource name.
pub(crate) fn assertion_audience(provider: &str) -> String {
    format!("https://iam.googleapis.com/{provider}")
}

/// Issues Google access tokens for `gcp` targets.
#[derive(Debug)]
pub struct GcpProvider {
    issuer: Arc<Issuer>,
    alg: SigningAlg,
    targets: HashMap<String, GcpClient>,
}

#[derive(Debug)]
struct GcpClient {
    settings: GcpTarget,
    http: reqwest::Client,
    policy: CallPolicy,
}

impl GcpProvider {
    /// A provider for the `gcp` targets among `targets`, signing assertions with
    /// `issuer`'s `alg` key. `policy` overrides each target's call policy (tests).
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
            let Some(cloud @ CloudTarget::Gcp(settings)) = &target.cloud else {
                continue;
            };
            for endpoint in [&settings.sts_endpoint, &settings.iam_credentials_endpoint] {
                check_endpoint(endpoint).map_err(|source| ClientBuildError::Endpoint {
                    target: target.name.clone(),
                    source,
                })?;
            }
            let (http, policy) = crate::http::target_client(&target.name, cloud, policy)?;
            clients.insert(
                target.name.clone(),
                GcpClient {
                    settings: settings.clone(),
                    http,
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
                "target `{}` is not a gcp target",
                request.target.name
            )));
        };
        let settings = &client.settings;
        tracing::debug!(target = %request.target.name, request_id = request.request_id, "google sts token exchange");
        let federated = with_retries(CLOUD, &client.policy, |_| async {
            let assertion = crate::mint_assertion(
                &self.issuer,
                self.alg,
                request.target,
                &request.target.audience,
                &request.workload,
                &serde_json::Map::new(),
                now,
            )
            .map_err(AttemptError::fatal)?;
            sts_exchange(client, &assertion, now).await
        })
        .await?;
        let Some(service_account) = &settings.service_account else {
            return Ok(federated);
        };
        let Credential::AccessToken {
            token: federated_token,
            ..
        } = federated
        else {
            return Err(ExchangeError::Mint(
                "unexpected federated credential".into(),
            ));
        };
        tracing::debug!(target = %request.target.name, request_id = request.request_id, "generateAccessToken");
        with_retries(CLOUD, &client.policy, |_| {
            generate_access_token(
                client,
                service_account,
                &federated_token,
                request.lifetime_secs,
            )
        })
        .await
    }
}

impl CredentialProvider for GcpProvider {
    fn issue<'a>(
        &'a self,
        request: IssueRequest<'a>,
        now: UnixSeconds,
    ) -> BoxFuture<'a, Result<Credential, ExchangeError>> {
        Box::pin(async move { self.exchange(&request, now).await })
    }
}

/// Step 1: the STS token exchange.
async fn sts_exchange(
    client: &GcpClient,
    assertion: &Secret<String>,
    now: UnixSeconds,
) -> Result<Credential, AttemptError> {
    let settings = &client.settings;
    let audience = format!(
        "//iam.googleapis.com/{}",
        settings.workload_identity_provider
    );
    let scope = settings.scopes.join(" ");
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("audience", audience.as_str()),
        ("scope", scope.as_str()),
        ("requested_token_type", crate::ACCESS_TOKEN_TYPE),
        ("subject_token_type", JWT_TOKEN_TYPE),
        ("subject_token", assertion.expose().as_str()),
    ];
    let url = format!("{}/v1/token", settings.sts_endpoint);
    let response = client
        .http
        .post(url)
        .form(&form)
        .send()
        .await
        .map_err(|e| transport_error(CLOUD, &e))?;
    let (status, retry, body) = answer(response).await?;
    if status != 200 {
        return Err(error_answer(status, retry, &body));
    }
    parse_sts_token(&body, now).map_err(AttemptError::fatal)
}

/// Step 2: `generateAccessToken` for the service account.
async fn generate_access_token(
    client: &GcpClient,
    service_account: &str,
    federated: &Secret<String>,
    lifetime_secs: u64,
) -> Result<Credential, AttemptError> {
    let url = format!(
        "{}/v1/projects/-/serviceAccounts/{service_account}:generateAccessToken",
        client.settings.iam_credentials_endpoint
    );
    let body = serde_json::json!({
        "scope": client.settings.scopes,
        "lifetime": format!("{lifetime_secs}s"),
    });
    let response = client
        .http
        .post(url)
        .bearer_auth(federated.expose())
        .json(&body)
        .send()
        .await
        .map_err(|e| transport_error(CLOUD, &e))?;
    let (status, retry, body) = answer(response).await?;
    if status != 200 {
        return Err(error_answer(status, retry, &body));
    }
    parse_generated_token(&body).map_err(AttemptError::fatal)
}

/// The status, `Retry-After` and body of an answer.
async fn answer(
    response: reqwest::Response,
) -> Result<(u16, Option<std::time::Duration>, Vec<u8>), AttemptError> {
    let status = response.status().as_u16();
    let retry = retry_after(
        response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
    );
    let body = read_body(CLOUD, response).await?;
    Ok((status, retry, body))
}

/// Classifies a non-200 answer: 429 and 5xx are transient, the rest refusals.
fn error_answer(status: u16, retry: Option<std::time::Duration>, body: &[u8]) -> AttemptError {
    let (code, message) = error_fields(body).unwrap_or_else(|| {
        (
            format!("http_{status}"),
            String::from_utf8_lossy(body).into_owned(),
        )
    });
    if transient_status(status) {
        AttemptError {
            error: unavailable(CLOUD, &code, None, &message),
            retry: true,
            retry_after: retry,
        }
    } else {
        AttemptError::fatal(refused(CLOUD, &code, None, &message))
    }
}

/// The code and message of a Google error body: STS's OAuth shape
/// `{"error": "...", "error_description": "..."}` or the API shape
/// `{"error": {"code": 403, "message": "...", "status": "PERMISSION_DENIED"}}`.
fn error_fields(body: &[u8]) -> Option<(String, String)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    match value.get("error")? {
        Value::String(code) => Some((
            code.clone(),
            value
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        )),
        Value::Object(e) => {
            let code = e
                .get("status")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| e.get("code").map(Value::to_string))?;
            let message = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            Some((code, message))
        }
        _ => None,
    }
}

/// `expires_in` as a number or a string of digits (google-auth accepts both).
#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    Number(u64),
    Text(String),
}

impl Seconds {
    fn get(&self) -> Option<u64> {
        match self {
            Seconds::Number(n) => Some(*n),
            Seconds::Text(s) => s.trim().parse().ok(),
        }
    }
}

/// No `Debug`: it holds the token.
#[derive(Deserialize)]
struct StsAnswer {
    access_token: String,
    expires_in: Option<Seconds>,
}

/// Parses an STS answer into a token expiring `expires_in` after `now`.
pub(crate) fn parse_sts_token(body: &[u8], now: UnixSeconds) -> Result<Credential, ExchangeError> {
    let invalid = |why: &str| unavailable(CLOUD, "invalid_response", None, why);
    let answer: StsAnswer =
        serde_json::from_slice(body).map_err(|_| invalid("sts answer is not the token shape"))?;
    let expires_in = answer
        .expires_in
        .as_ref()
        .and_then(Seconds::get)
        .ok_or_else(|| invalid("sts answer has no usable `expires_in`"))?;
    if answer.access_token.is_empty() {
        return Err(invalid("sts answer has an empty `access_token`"));
    }
    Ok(Credential::AccessToken {
        token: Secret::new(answer.access_token),
        expires_at: now.saturating_add(i64::try_from(expires_in).unwrap_or(i64::MAX)),
        cloud_request_id: None,
    })
}

/// No `Debug`: it holds the token.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeneratedAnswer {
    access_token: String,
    expire_time: String,
}

/// Parses a `generateAccessToken` answer.
pub(crate) fn parse_generated_token(body: &[u8]) -> Result<Credential, ExchangeError> {
    let invalid = |why: &str| unavailable(CLOUD, "invalid_response", None, why);
    let answer: GeneratedAnswer = serde_json::from_slice(body)
        .map_err(|_| invalid("generateAccessToken answer is not the token shape"))?;
    let expires_at = crate::http::parse_rfc3339(&answer.expire_time)
        .ok_or_else(|| invalid("`expireTime` is not an RFC 3339 time"))?;
    if answer.access_token.is_empty() {
        return Err(invalid("empty `accessToken`"));
    }
    Ok(Credential::AccessToken {
        token: Secret::new(answer.access_token),
        expires_at,
        cloud_request_id: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{NOW, check_assertion, fast_policy, issuer, request, target};
    use crate::testserver::{Reply, TestServer};

    const PROVIDER: &str =
        "projects/123456789/locations/global/workloadIdentityPools/legate/providers/legate";

    fn gcp_target(sts: &str, iam: &str, service_account: Option<&str>) -> Target {
        target(
            "gcp-deploy",
            CloudTarget::Gcp(GcpTarget {
                workload_identity_provider: PROVIDER.into(),
                service_account: service_account.map(str::to_owned),
                scopes: vec![
                    GCP_DEFAULT_SCOPE.into(),
                    "https://www.googleapis.com/auth/userinfo.email".into(),
                ],
                sts_endpoint: sts.into(),
                iam_credentials_endpoint: iam.into(),
                ca_pem: None,
                timeout_secs: 5,
            }),
        )
    }

    async fn exchange(target: &Target, lifetime: u64) -> Result<Credential, ExchangeError> {
        let provider = GcpProvider::new(
            issuer(),
            SigningAlg::Es256,
            std::slice::from_ref(target),
            Some(fast_policy(5)),
        )
        .unwrap();
        provider.issue(request(target, lifetime), NOW).await
    }

    #[test]
    fn google_subject_must_fit_127_bytes() {
        assert!(google_subject_fits(&"a".repeat(120)));
        assert!(!google_subject_fits(&"a".repeat(121)));
    }

    #[test]
    fn sts_answers_parse_with_numeric_or_string_expiry() {
        for body in [
            r#"{"access_token":"ya29.fed","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":3600}"#,
            r#"{"access_token":"ya29.fed","token_type":"Bearer","expires_in":"3600"}"#,
        ] {
            let cred = parse_sts_token(body.as_bytes(), NOW).unwrap();
            assert_eq!(cred.expires_at(), NOW + 3600);
        }
        for bad in [
            r#"{"access_token":"ya29.fed"}"#,
            r#"{"access_token":"","expires_in":1}"#,
            r#"{"expires_in":1}"#,
            "not json",
        ] {
            let err = parse_sts_token(bad.as_bytes(), NOW).unwrap_err();
            assert_eq!(err.cloud_code(), Some("invalid_response"), "{bad}");
        }
        let cred = parse_generated_token(
            br#"{"accessToken":"ya29.sa","expireTime":"2026-01-01T00:15:00Z"}"#,
        )
        .unwrap();
        assert_eq!(cred.expires_at(), NOW + 900);
        assert!(parse_generated_token(br#"{"accessToken":"x","expireTime":"soon"}"#).is_err());
    }

    #[test]
    fn google_error_envelopes_are_read() {
        assert_eq!(
            error_fields(
                br#"{"error":"invalid_target","error_description":"The target service indicated by the \"audience\" parameters is invalid."}"#
            ),
            Some((
                "invalid_target".into(),
                "The target service indicated by the \"audience\" parameters is invalid.".into()
            ))
        );
        assert_eq!(
            error_fields(
                br#"{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.getAccessToken' denied","status":"PERMISSION_DENIED"}}"#
            ),
            Some((
                "PERMISSION_DENIED".into(),
                "Permission 'iam.serviceAccounts.getAccessToken' denied".into()
            ))
        );
        assert_eq!(error_fields(b"<html>"), None);
    }

    #[tokio::test]
    async fn the_federated_token_is_the_credential_without_impersonation() {
        let sts = TestServer::start(vec![Reply::json(
            200,
            r#"{"access_token":"ya29.fed","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":3599}"#,
        )])
        .await;
        let target = gcp_target(&sts.url, "http://127.0.0.1:9", None);
        let cred = exchange(&target, 600).await.unwrap();
        let Credential::AccessToken {
            token, expires_at, ..
        } = &cred
        else {
            panic!("{cred:?}");
        };
        assert_eq!(token.expose(), "ya29.fed");
        assert_eq!(*expires_at, NOW + 3599);

        let sent = &sts.requests()[0];
        assert_eq!(sent.path, "/v1/token");
        assert_eq!(
            sent.form_value("grant_type").as_deref(),
            Some("urn:ietf:params:oauth:grant-type:token-exchange")
        );
        assert_eq!(
            sent.form_value("audience"),
            Some(format!("//iam.googleapis.com/{PROVIDER}"))
        );
        assert_eq!(
            sent.form_value("scope").as_deref(),
            Some(
                "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.email"
            )
        );
        assert_eq!(
            sent.form_value("requested_token_type").as_deref(),
            Some("urn:ietf:params:oauth:token-type:access_token")
        );
        assert_eq!(
            sent.form_value("subject_token_type").as_deref(),
            Some("urn:ietf:params:oauth:token-type:jwt")
        );
        let assertion = sent.form_value("subject_token").unwrap();
        check_assertion(
            &assertion,
            "gcp-deploy",
            &format!("https://iam.googleapis.com/{PROVIDER}"),
            "ES256",
        );
    }

    #[tokio::test]
    async fn impersonation_exchanges_the_federated_token_for_the_service_account() {
        let sts = TestServer::start(vec![Reply::json(
            200,
            r#"{"access_token":"ya29.fed","token_type":"Bearer","expires_in":3600}"#,
        )])
        .await;
        let iam = TestServer::start(vec![Reply::json(
            200,
            r#"{"accessToken":"ya29.sa","expireTime":"2026-01-01T00:10:00Z"}"#,
        )])
        .await;
        let sa = "deployer@proj.iam.gserviceaccount.com";
        let target = gcp_target(&sts.url, &iam.url, Some(sa));
        let cred = exchange(&target, 600).await.unwrap();
        let Credential::AccessToken {
            token, expires_at, ..
        } = &cred
        else {
            panic!("{cred:?}");
        };
        assert_eq!(token.expose(), "ya29.sa");
        assert_eq!(*expires_at, NOW + 600);

        let sent = &iam.requests()[0];
        assert_eq!(
            sent.path,
            format!("/v1/projects/-/serviceAccounts/{sa}:generateAccessToken")
        );
        assert_eq!(sent.header("authorization"), Some("Bearer ya29.fed"));
        let body: Value = serde_json::from_str(&sent.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "scope": [GCP_DEFAULT_SCOPE, "https://www.googleapis.com/auth/userinfo.email"],
                "lifetime": "600s",
            })
        );
    }

    #[tokio::test]
    async fn refusals_are_not_retried() {
        for (status, body, code) in [
            (
                400,
                r#"{"error":"invalid_grant","error_description":"bad assertion"}"#,
                "invalid_grant",
            ),
            (
                400,
                r#"{"error":"invalid_target","error_description":"no pool"}"#,
                "invalid_target",
            ),
            (
                400,
                r#"{"error":"unauthorized_client","error_description":"The given credential is rejected by the attribute condition."}"#,
                "unauthorized_client",
            ),
            (
                400,
                r#"{"error":"invalid_request","error_description":"The size of mapped attribute google.subject exceeds the 127 bytes limit."}"#,
                "invalid_request",
            ),
            (403, "forbidden", "http_403"),
        ] {
            let sts = TestServer::start(vec![Reply::json(status, body)]).await;
            let target = gcp_target(&sts.url, "http://127.0.0.1:9", None);
            let err = exchange(&target, 600).await.unwrap_err();
            assert_eq!(sts.calls(), 1, "{code}");
            assert_eq!(err.reason_code(), "cloud_refused", "{code}");
            assert_eq!(err.cloud_code(), Some(code));
        }
    }

    #[tokio::test]
    async fn throttling_and_server_errors_are_retried() {
        let sts = TestServer::start(vec![
            Reply::json(429, r#"{"error":"rate_limited"}"#).with_header("retry-after", "0"),
            Reply::json(503, "unavailable"),
            Reply::json(200, r#"{"access_token":"ya29.fed","expires_in":3600}"#),
        ])
        .await;
        let target = gcp_target(&sts.url, "http://127.0.0.1:9", None);
        assert!(exchange(&target, 600).await.is_ok());
        assert_eq!(sts.calls(), 3);

        let sts = TestServer::start(vec![Reply::json(500, "{}")]).await;
        let target = gcp_target(&sts.url, "http://127.0.0.1:9", None);
        let err = exchange(&target, 600).await.unwrap_err();
        assert_eq!(sts.calls(), 3);
        assert_eq!(err.cloud_code(), Some("http_500"));
        assert!(err.is_transient());
    }

    #[tokio::test]
    async fn an_iam_refusal_names_the_google_status() {
        let sts = TestServer::start(vec![Reply::json(
            200,
            r#"{"access_token":"ya29.fed","expires_in":3600}"#,
        )])
        .await;
        let iam = TestServer::start(vec![Reply::json(
            403,
            r#"{"error":{"code":403,"message":"Permission denied","status":"PERMISSION_DENIED"}}"#,
        )])
        .await;
        let target = gcp_target(&sts.url, &iam.url, Some("sa@p.iam.gserviceaccount.com"));
        let err = exchange(&target, 600).await.unwrap_err();
        assert_eq!(err.cloud_code(), Some("PERMISSION_DENIED"));
        assert_eq!(err.reason_code(), "cloud_refused");
        assert_eq!((sts.calls(), iam.calls()), (1, 1));
    }
}
