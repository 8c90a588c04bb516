//! The `azure` target: the Entra v2 token endpoint with a federated client assertion.
//!
//! Protocol (protocols.md §2.3, MSAL Go `FromAssertion`): `POST
//! {authority}/{tenant}/oauth2/v2.0/token`, form-encoded: `grant_type=client_credentials`,
//! `client_id`, `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`,
//! `client_assertion` = Legate's assertion (`aud` `api://AzureADTokenExchange`, signed
//! RS256: Entra refuses ES256 with `AADSTS5002738`), `scope` = `<resource>/.default`.
//! Answer: `{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token"}`.
//!
//! Errors: `{"error", "error_description": "AADSTSnnnn: …", "error_codes": [nnnn],
//! "trace_id", "correlation_id", …}`. 429 and 5xx are transient; everything else refuses
//! this target. The code recorded is `AADSTS<first error code>` (or `error`), the request
//! id Entra's `correlation_id` (or `trace_id`).
//!
//! Plain reqwest, not `azure_identity`: see `docs/adr/0006-cloud-token-clients.md`.

use std::collections::HashMap;
use std::sync::Arc;

use legate_core::{Secret, UnixSeconds};
use legate_issuer::{Issuer, SigningAlg};
use serde::Deserialize;
use serde_json::Value;

use crate::http::{
    AttemptError, CallPolicy, ClientBuildError, check_endpoint, read_body, refused, retry_after,
    transient_status, transport_error, unavailable, with_retries,
};
use crate::{
    AzureTarget, BoxFuture, CloudTarget, Credential, CredentialProvider, ExchangeError,
    IssueRequest, Target,
};

/// The public cloud's authority host.
pub const AZURE_DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The assertion `aud` Entra expects of a federated credential.
pub const AZURE_ASSERTION_AUDIENCE: &str = "api://AzureADTokenExchange";
const CLOUD: &str = "azure";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Issues Entra access tokens for `azure` targets. Assertions are always RS256.
#[derive(Debug)]
pub struct AzureProvider {
    issuer: Arc<Issuer>,
    targets: HashMap<String, AzureClient>,
}

#[derive(Debug)]
struct AzureClient {
    settings: AzureTarget,
    http: reqwest::Client,
    policy: CallPolicy,
}

impl AzureProvider {
    /// A provider for the `azure` targets among `targets`. `issuer` must hold an RS256
    /// key. `policy` overrides each target's call policy (tests).
    ///
    /// # Errors
    ///
    /// [`ClientBuildError`] for a bad endpoint or CA bundle.
    pub fn new(
        issuer: Arc<Issuer>,
        targets: &[Target],
        policy: Option<CallPolicy>,
    ) -> Result<Self, ClientBuildError> {
        let mut clients = HashMap::new();
        for target in targets {
            let Some(cloud @ CloudTarget::Azure(settings)) = &target.cloud else {
                continue;
            };
            check_endpoint(&settings.authority_host).map_err(|source| {
                ClientBuildError::Endpoint {
                    target: target.name.clone(),
                    source,
                }
            })?;
            let (http, policy) = crate::http::target_client(&target.name, cloud, policy)?;
            clients.insert(
                target.name.clone(),
                AzureClient {
                    settings: settings.clone(),
                    http,
                    policy,
                },
            );
        }
        Ok(Self {
            issuer,
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
                "target `{}` is not an azure target",
                request.target.name
            )));
        };
        // Entra refuses ES256 assertions (AADSTS5002738).
        let alg = SigningAlg::Rs256;
        tracing::debug!(target = %request.target.name, request_id = request.request_id, "entra client credentials");
        with_retries(CLOUD, &client.policy, |_| async move {
            let assertion = crate::mint_assertion(
                &self.issuer,
                alg,
                request.target,
                AZURE_ASSERTION_AUDIENCE,
                &request.workload,
                &serde_json::Map::new(),
                now,
            )
            .map_err(AttemptError::fatal)?;
            token_request(client, &assertion, now).await
        })
        .await
    }
}

impl CredentialProvider for AzureProvider {
    fn issue<'a>(
        &'a self,
        request: IssueRequest<'a>,
        now: UnixSeconds,
    ) -> BoxFuture<'a, Result<Credential, ExchangeError>> {
        Box::pin(async move { self.exchange(&request, now).await })
    }
}

async fn token_request(
    client: &AzureClient,
    assertion: &Secret<String>,
    now: UnixSeconds,
) -> Result<Credential, AttemptError> {
    let settings = &client.settings;
    let url = format!(
        "{}/{}/oauth2/v2.0/token",
        settings.authority_host, settings.tenant_id
    );
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", settings.client_id.as_str()),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion.expose().as_str()),
        ("scope", settings.scope.as_str()),
    ];
    let response = client
        .http
        .post(url)
        .form(&form)
        .send()
        .await
        .map_err(|e| transport_error(CLOUD, &e))?;
    let status = response.status().as_u16();
    let retry = retry_after(
        response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
    );
    let header_id = response
        .headers()
        .get("x-ms-request-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| crate::http::bounded(v, 64));
    let body = read_body(CLOUD, response).await?;
    if status == 200 {
        return parse_token(&body, now, header_id).map_err(AttemptError::fatal);
    }
    let mut error = parse_error(status, &body);
    if error.request_id.is_none() {
        error.request_id = header_id;
    }
    if transient_status(status) {
        Err(AttemptError {
            error: unavailable(
                CLOUD,
                &error.code,
                error.request_id.as_deref(),
                &error.message,
            ),
            retry: true,
            retry_after: retry,
        })
    } else {
        Err(AttemptError::fatal(refused(
            CLOUD,
            &error.code,
            error.request_id.as_deref(),
            &error.message,
        )))
    }
}

/// No `Debug`: it holds the token.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Value,
}

/// Parses a token answer; `expires_in` may be a number or a string. `request_id` is
/// Entra's `x-ms-request-id` header.
pub(crate) fn parse_token(
    body: &[u8],
    now: UnixSeconds,
    request_id: Option<String>,
) -> Result<Credential, ExchangeError> {
    let invalid = |why: &str| unavailable(CLOUD, "invalid_response", None, why);
    let answer: TokenAnswer =
        serde_json::from_slice(body).map_err(|_| invalid("entra answer is not the token shape"))?;
    let expires_in = match &answer.expires_in {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| invalid("entra answer has no usable `expires_in`"))?;
    if answer.access_token.is_empty() {
        return Err(invalid("entra answer has an empty `access_token`"));
    }
    Ok(Credential::AccessToken {
        token: Secret::new(answer.access_token),
        expires_at: now.saturating_add(i64::try_from(expires_in).unwrap_or(i64::MAX)),
        cloud_request_id: request_id,
    })
}

/// What Legate keeps of an Entra error answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct EntraError {
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) request_id: Option<String>,
}

/// Reads Entra's error envelope; falls back to `http_<status>` for anything else.
pub(crate) fn parse_error(status: u16, body: &[u8]) -> EntraError {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return EntraError {
            code: format!("http_{status}"),
            message: String::from_utf8_lossy(body).into_owned(),
            request_id: None,
        };
    };
    let text = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    let first_code = value
        .get("error_codes")
        .and_then(Value::as_array)
        .and_then(|codes| codes.first())
        .and_then(Value::as_u64);
    let code = match (first_code, text("error")) {
        (Some(n), _) => format!("AADSTS{n}"),
        (None, Some(e)) => e,
        (None, None) => format!("http_{status}"),
    };
    EntraError {
        code,
        message: text("error_description").unwrap_or_default(),
        request_id: text("correlation_id").or_else(|| text("trace_id")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{NOW, check_assertion, fast_policy, issuer, request, target};
    use crate::testserver::{Reply, TestServer};

    const TENANT: &str = "00000000-0000-0000-0000-000000000001";
    const CLIENT: &str = "00000000-0000-0000-0000-000000000002";
    /// The AADSTS70021 envelope, as documented (protocols.md §2.3).
    const NO_MATCH: &str = r#"{"error":"invalid_client","error_description":"AADSTS70021: No matching federated identity record found for presented assertion. Assertion Issuer: 'https://legate.example.com'. Assertion Subject: 'target/azure-deploy'. Assertion Audience: 'api://AzureADTokenExchange'. Trace ID: t Correlation ID: c Timestamp: 2026-01-01 00:00:00Z","error_codes":[70021],"timestamp":"2026-01-01 00:00:00Z","trace_id":"6a3c9e1b-0000-0000-0000-000000000001","correlation_id":"5f1d2c3b-0000-0000-0000-000000000002","error_uri":"https://login.microsoftonline.com/error?code=70021"}"#;

    fn azure_target(authority: &str) -> Target {
        target(
            "azure-deploy",
            CloudTarget::Azure(AzureTarget {
                tenant_id: TENANT.into(),
                client_id: CLIENT.into(),
                scope: "https://management.azure.com/.default".into(),
                authority_host: authority.into(),
                ca_pem: None,
                timeout_secs: 5,
            }),
        )
    }

    async fn exchange(server: &TestServer) -> Result<Credential, ExchangeError> {
        let target = azure_target(&server.url);
        let provider = AzureProvider::new(
            issuer(),
            std::slice::from_ref(&target),
            Some(fast_policy(5)),
        )
        .unwrap();
        provider.issue(request(&target, 900), NOW).await
    }

    #[test]
    fn entra_error_envelopes_are_read() {
        assert_eq!(
            parse_error(400, NO_MATCH.as_bytes()),
            EntraError {
                code: "AADSTS70021".into(),
                message: NO_MATCH
                    .split("\"error_description\":\"")
                    .nth(1)
                    .unwrap()
                    .split("\",\"error_codes")
                    .next()
                    .unwrap()
                    .into(),
                request_id: Some("5f1d2c3b-0000-0000-0000-000000000002".into()),
            }
        );
        let bare = parse_error(400, br#"{"error":"invalid_scope","trace_id":"t1"}"#);
        assert_eq!(
            (bare.code.as_str(), bare.request_id.as_deref()),
            ("invalid_scope", Some("t1"))
        );
        assert_eq!(parse_error(502, b"<html>").code, "http_502");
    }

    #[test]
    fn token_answers_parse() {
        let cred = parse_token(
            br#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ0eXAi"}"#,
            NOW,
            Some("rid".into()),
        )
        .unwrap();
        assert_eq!(cred.expires_at(), NOW + 3599);
        assert_eq!(cred.cloud_request_id(), Some("rid"));
        let cred = parse_token(br#"{"expires_in":"60","access_token":"x"}"#, NOW, None).unwrap();
        assert_eq!(cred.expires_at(), NOW + 60);
        assert!(parse_token(br#"{"access_token":"x"}"#, NOW, None).is_err());
    }

    /// Stops an Entra target from sending an ES256 assertion, which Entra refuses
    /// (AADSTS5002738), even when the issuer's default is ES256.
    #[tokio::test]
    async fn the_request_carries_an_rs256_federated_assertion() {
        let server = TestServer::start(vec![Reply::json(
            200,
            r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ0eXAi.entra"}"#,
        )
        .with_header("x-ms-request-id", "ms-req-1")])
        .await;
        let cred = exchange(&server).await.unwrap();
        let Credential::AccessToken {
            token,
            expires_at,
            cloud_request_id,
        } = &cred
        else {
            panic!("{cred:?}");
        };
        assert_eq!(token.expose(), "eyJ0eXAi.entra");
        assert_eq!(*expires_at, NOW + 3599);
        assert_eq!(cloud_request_id.as_deref(), Some("ms-req-1"));

        let sent = &server.requests()[0];
        assert_eq!(sent.path, format!("/{TENANT}/oauth2/v2.0/token"));
        assert_eq!(
            sent.form_value("grant_type").as_deref(),
            Some("client_credentials")
        );
        assert_eq!(sent.form_value("client_id").as_deref(), Some(CLIENT));
        assert_eq!(
            sent.form_value("client_assertion_type").as_deref(),
            Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        );
        assert_eq!(
            sent.form_value("scope").as_deref(),
            Some("https://management.azure.com/.default")
        );
        let assertion = sent.form_value("client_assertion").unwrap();
        check_assertion(
            &assertion,
            "azure-deploy",
            "api://AzureADTokenExchange",
            "RS256",
        );
    }

    #[tokio::test]
    async fn a_refusal_keeps_the_aadsts_code_and_correlation_id_and_is_not_retried() {
        let server = TestServer::start(vec![Reply::json(400, NO_MATCH)]).await;
        let err = exchange(&server).await.unwrap_err();
        assert_eq!(server.calls(), 1);
        let ExchangeError::TargetRefused {
            cloud,
            code,
            request_id,
            message,
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!((*cloud, code.as_str()), ("azure", "AADSTS70021"));
        assert_eq!(
            request_id.as_deref(),
            Some("5f1d2c3b-0000-0000-0000-000000000002")
        );
        assert!(message.starts_with("AADSTS70021: No matching"), "{message}");
        assert!(
            message.ends_with('…'),
            "long messages are bounded: {message}"
        );
    }

    #[tokio::test]
    async fn throttling_is_retried() {
        let server = TestServer::start(vec![
            Reply::json(
                429,
                r#"{"error":"temporarily_unavailable","error_codes":[50196]}"#,
            )
            .with_header("retry-after", "0"),
            Reply::json(200, r#"{"expires_in":3599,"access_token":"t"}"#),
        ])
        .await;
        assert!(exchange(&server).await.is_ok());
        assert_eq!(server.calls(), 2);
    }
}
