//! Faithful fake of the Microsoft Entra ID v2 token endpoint taking a federated client
//! assertion, following MSAL Go (`apps/internal/oauth/ops/accesstokens`, `mock.go`),
//! the Graph `federatedIdentityCredential` reference, the workload identity federation
//! considerations and the AADSTS error reference (summarised in `protocols.md` §2.3); no
//! emulator exists.
//!
//! `POST /<tenant>/oauth2/v2.0/token`, form body, checked in this order (every error is
//! the AADSTS JSON envelope `{"error", "error_description": "AADSTSnnnn: ...\r\nTrace
//! ID: ...\r\nCorrelation ID: ...\r\nTimestamp: ...", "error_codes": [n], "timestamp",
//! "trace_id", "correlation_id", "error_uri"}`):
//!
//! 1. The tenant must be the configured one (else 400 `invalid_request` AADSTS90002
//!    "Tenant '...' not found. ...").
//! 2. `grant_type` present (else AADSTS900144 "The request body must contain the
//!    following parameter: 'grant_type'.") and `client_credentials` (else 400
//!    `unsupported_grant_type` AADSTS70003).
//! 3. `client_id` present and a configured application (else 400 `unauthorized_client`
//!    AADSTS700016 "Application with identifier '...' was not found in the directory
//!    '...'. ...").
//! 4. `scope` present and ending in `/.default` (else 400 `invalid_scope`
//!    AADSTS1002012 "... Client credential flows must have a scope value with /.default
//!    suffixed to the resource identifier (application ID URI).").
//! 5. `client_assertion` present (else 400 `invalid_request` AADSTS7000216) with
//!    `client_assertion_type` `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`
//!    (the fake also answers AADSTS7000216 for a wrong type; Entra's code for it is not
//!    documented).
//! 6. The assertion: a well-formed JWS (else 400 `invalid_request` AADSTS50027 "JWT token
//!    is invalid or malformed."); `alg` RSA (RS256/384/512, PS256/384/512) — an EC
//!    assertion is refused with 400 `invalid_client` AADSTS5002738 "Invalid JWT token.
//!    'ES256' is not a supported signature algorithm."; a federated identity credential
//!    of the application whose issuer, subject and one audience equal the assertion's
//!    `iss`, `sub` and `aud` (else 400 `invalid_request` AADSTS70021 "No matching
//!    federated identity record found for presented assertion. Assertion Issuer: '...'.
//!    Assertion Subject: '...'. Assertion Audience: '...'.").
//! 7. Then, from that credential's issuer: discovery, JWKS (failure: 400
//!    `invalid_request` AADSTS50166 "Request to External OIDC endpoint failed."), the key
//!    by `kid` and the signature (400 `invalid_client` AADSTS700027 "Client assertion
//!    failed signature validation."); integer `exp` in the future and `iat`/`nbf` not in
//!    the future (400 `invalid_client` AADSTS700024 "Client assertion is not within its
//!    valid time range. ..."), `exp - iat` within the configured cap.
//!
//! An application holds at most 20 federated identity credentials (Entra's limit; more
//! is a configuration error). Success: `{"token_type": "Bearer", "expires_in": 3599,
//! "ext_expires_in": 3599, "access_token": "..."}`. Throttling is 429 with
//! `Retry-After`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jsonwebtoken::Algorithm;
use legate_core::UnixSeconds;
use serde_json::{Map, Value, json};

use crate::server::{
    ANY_LOOPBACK_PORT, FaultAnswer, Profile, Server, StartError, fake_common, lock, push_bounded,
};
use crate::verify::{Options, Refusal, Rules, Unverified, Verifier, alg_name, fetchable_url};
use crate::wire::{Form, entra_timestamp, random_b64, request_id};

/// The audience of a federated assertion.
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";
/// RFC 7523 client assertion type.
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Entra's limit of federated identity credentials per application.
pub const MAX_FEDERATED_CREDENTIALS: usize = 20;
/// Lifetime of an issued access token.
pub const ACCESS_TOKEN_SECS: i64 = 3599;
/// The RSA algorithms Entra accepts for client assertions.
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// A tenant and its applications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraConfig {
    /// The tenant id (a GUID; compared case-insensitively).
    pub tenant_id: String,
    /// The applications registered in it.
    pub apps: Vec<EntraApp>,
    /// Refuse assertions whose `exp - iat` exceeds this. Default: none.
    pub max_assertion_lifetime_secs: Option<u64>,
}

impl EntraConfig {
    /// A tenant without applications.
    pub fn new(tenant_id: impl Into<String>) -> EntraConfig {
        EntraConfig {
            tenant_id: tenant_id.into(),
            apps: Vec::new(),
            max_assertion_lifetime_secs: None,
        }
    }

    /// Adds an application.
    #[must_use]
    pub fn with_app(mut self, app: EntraApp) -> EntraConfig {
        self.apps.push(app);
        self
    }
}

/// An app registration (or user-assigned managed identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraApp {
    /// The application (client) id.
    pub client_id: String,
    /// Its federated identity credentials (at most [`MAX_FEDERATED_CREDENTIALS`]).
    pub credentials: Vec<FederatedCredential>,
}

impl EntraApp {
    /// An application without federated credentials.
    pub fn new(client_id: impl Into<String>) -> EntraApp {
        EntraApp {
            client_id: client_id.into(),
            credentials: Vec::new(),
        }
    }

    /// Adds a federated credential trusting (`issuer`, `subject`) with the audience
    /// `api://AzureADTokenExchange`.
    #[must_use]
    pub fn trusting(mut self, issuer: impl Into<String>, subject: impl Into<String>) -> EntraApp {
        let n = self.credentials.len() + 1;
        self.credentials.push(FederatedCredential {
            name: format!("fic-{n}"),
            issuer: issuer.into(),
            subject: subject.into(),
            audiences: vec![TOKEN_EXCHANGE_AUDIENCE.to_owned()],
        });
        self
    }
}

/// A Graph `federatedIdentityCredential` with an exact subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedCredential {
    /// Its name.
    pub name: String,
    /// The issuer, compared byte for byte with `iss`.
    pub issuer: String,
    /// The subject, compared byte for byte with `sub`.
    pub subject: String,
    /// The accepted audiences (Entra: `["api://AzureADTokenExchange"]`).
    pub audiences: Vec<String>,
}

/// An access token the fake issued.
#[derive(Debug, Clone, PartialEq)]
pub struct EntraIssued {
    /// The application.
    pub client_id: String,
    /// The requested scope.
    pub scope: String,
    /// The matching federated credential's name.
    pub credential: String,
    /// The assertion's `sub`.
    pub subject: String,
    /// The assertion's `alg`.
    pub alg: String,
    /// The access token.
    pub access_token: String,
    /// When it expires.
    pub expires_at: UnixSeconds,
    /// Every claim of the verified assertion.
    pub claims: Map<String, Value>,
}

struct EntraState {
    config: EntraConfig,
    verifier: Verifier,
    issued: Mutex<VecDeque<EntraIssued>>,
}

/// The running fake; stops when dropped.
pub struct EntraFake {
    server: Server,
    state: Arc<EntraState>,
}

impl std::fmt::Debug for EntraFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntraFake")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

fake_common!(EntraFake);

impl EntraFake {
    /// Starts the fake with the system clock.
    ///
    /// # Errors
    /// See [`start_with`](Self::start_with).
    pub async fn start(config: EntraConfig) -> Result<EntraFake, StartError> {
        EntraFake::start_with(config, Options::default()).await
    }

    /// Starts the fake on `127.0.0.1:0`; its authority host is [`url`](Self::url).
    ///
    /// # Errors
    /// See [`start_on`](Self::start_on).
    pub async fn start_with(
        config: EntraConfig,
        options: Options,
    ) -> Result<EntraFake, StartError> {
        EntraFake::start_on(config, options, ANY_LOOPBACK_PORT).await
    }

    /// Starts the fake on `listen` (for example a fixed loopback port); its authority host is [`url`](Self::url).
    ///
    /// # Errors
    /// When an application has more than [`MAX_FEDERATED_CREDENTIALS`] credentials, a
    /// credential's issuer is neither `https://` nor loopback `http://`, or the port
    /// cannot be bound.
    pub async fn start_on(
        config: EntraConfig,
        options: Options,
        listen: SocketAddr,
    ) -> Result<EntraFake, StartError> {
        for app in &config.apps {
            if app.credentials.len() > MAX_FEDERATED_CREDENTIALS {
                return Err(StartError::Config(format!(
                    "application `{}` has {} federated identity credentials; Entra allows \
                     {MAX_FEDERATED_CREDENTIALS}",
                    app.client_id,
                    app.credentials.len()
                )));
            }
            if let Some(bad) = app.credentials.iter().find(|c| !fetchable_url(&c.issuer)) {
                return Err(StartError::Config(format!(
                    "credential `{}`: issuer `{}` must be https, or http on loopback",
                    bad.name, bad.issuer
                )));
            }
        }
        let state = Arc::new(EntraState {
            verifier: Verifier::new(&options)?,
            config,
            issued: Mutex::new(VecDeque::new()),
        });
        let router = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .fallback(not_found)
            .with_state(Arc::clone(&state));
        let profile = Profile {
            service: "entra",
            idp_fault: false,
            classify: |path| {
                if path.ends_with("/oauth2/v2.0/token") {
                    "token"
                } else {
                    "other"
                }
            },
            answer: fault_answer,
        };
        let server = Server::start(router, profile, options.clock, listen).await?;
        Ok(EntraFake { server, state })
    }

    /// The configuration the fake runs with.
    pub fn config(&self) -> &EntraConfig {
        &self.state.config
    }

    /// The token endpoint of the configured tenant.
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.server.url(),
            self.state.config.tenant_id
        )
    }

    /// The access tokens issued, oldest first.
    pub fn issued(&self) -> Vec<EntraIssued> {
        lock(&self.state.issued).iter().cloned().collect()
    }

    /// The most recent access token issued.
    pub fn last_issued(&self) -> Option<EntraIssued> {
        lock(&self.state.issued).back().cloned()
    }
}

/// An AADSTS error at time `now`.
fn aadsts(status: StatusCode, error: &str, code: u32, message: &str, now: UnixSeconds) -> Response {
    let trace_id = request_id();
    let correlation_id = request_id();
    let timestamp = entra_timestamp(now);
    let body = json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {message}\r\nTrace ID: {trace_id}\r\nCorrelation ID: \
             {correlation_id}\r\nTimestamp: {timestamp}"
        ),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn fault_answer(answer: FaultAnswer, now: UnixSeconds) -> Response {
    match answer {
        FaultAnswer::Throttle => {
            let mut response = aadsts(
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                90055,
                "There are too many incoming requests. Please try again later.",
                now,
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            response
        }
        FaultAnswer::ServerError | FaultAnswer::IdpCommunicationError => aadsts(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.",
            now,
        ),
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "the fake serves POST /{tenant}/oauth2/v2.0/token",
    )
        .into_response()
}

fn missing(parameter: &str, now: UnixSeconds) -> Response {
    aadsts(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900_144,
        &format!("The request body must contain the following parameter: '{parameter}'."),
        now,
    )
}

async fn token(
    State(state): State<Arc<EntraState>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    let config = &state.config;
    let now = state.verifier.now();
    let bad_request = |error: &str, code: u32, message: &str| {
        aadsts(StatusCode::BAD_REQUEST, error, code, message, now)
    };

    // 1. The tenant.
    if !tenant.eq_ignore_ascii_case(&config.tenant_id) {
        return bad_request(
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant \
                 ID and are signing into the correct cloud. Check with your subscription \
                 administrator, this may happen if there are no active subscriptions for the \
                 tenant."
            ),
        );
    }
    let form = Form::parse(&body);

    // 2. The grant.
    let Some(grant_type) = form.get("grant_type") else {
        return missing("grant_type", now);
    };
    if grant_type != "client_credentials" {
        return bad_request(
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{grant_type}'."),
        );
    }

    // 3. The application.
    let Some(client_id) = form.get("client_id") else {
        return missing("client_id", now);
    };
    let Some(app) = config
        .apps
        .iter()
        .find(|a| a.client_id.eq_ignore_ascii_case(client_id))
    else {
        return bad_request(
            "unauthorized_client",
            700_016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory \
                 '{}'. This can happen if the application has not been installed by the \
                 administrator of the tenant or consented to by any user in the tenant. You \
                 may have sent your authentication request to the wrong tenant.",
                config.tenant_id
            ),
        );
    };

    // 4. The scope.
    let Some(scope) = form.get("scope") else {
        return missing("scope", now);
    };
    let resource = scope.strip_suffix("/.default");
    if resource.is_none_or(|r| r.is_empty() || r.contains(' ')) {
        return bad_request(
            "invalid_scope",
            1_002_012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows \
                 must have a scope value with /.default suffixed to the resource identifier \
                 (application ID URI)."
            ),
        );
    }

    // 5. The client assertion.
    let Some(assertion) = form.get("client_assertion").filter(|a| !a.is_empty()) else {
        return bad_request(
            "invalid_request",
            7_000_216,
            "'client_assertion', 'client_secret' or 'request' is required for the \
             'client_credentials' grant type.",
        );
    };
    if form.get("client_assertion_type") != Some(ASSERTION_TYPE) {
        return bad_request(
            "invalid_request",
            7_000_216,
            &format!("'client_assertion_type' must be '{ASSERTION_TYPE}'."),
        );
    }

    // 6. The assertion's shape, algorithm and federated credential.
    let malformed = || {
        bad_request(
            "invalid_request",
            50027,
            "JWT token is invalid or malformed.",
        )
    };
    let Ok(unverified) = Unverified::parse(assertion) else {
        return malformed();
    };
    if !ALGORITHMS.iter().any(|a| alg_name(*a) == unverified.alg) {
        return bad_request(
            "invalid_client",
            5_002_738,
            &format!(
                "Invalid JWT token. '{}' is not a supported signature algorithm.",
                unverified.alg
            ),
        );
    }
    let (iss, sub, aud) = (
        unverified.iss().unwrap_or_default(),
        unverified.sub().unwrap_or_default(),
        unverified.aud(),
    );
    let credential = app.credentials.iter().find(|c| {
        c.issuer == iss && c.subject == sub && aud.iter().any(|a| c.audiences.contains(a))
    });
    let Some(credential) = credential else {
        return bad_request(
            "invalid_request",
            70021,
            &format!(
                "No matching federated identity record found for presented assertion. \
                 Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: \
                 '{}'. https://learn.microsoft.com/entra/workload-id/workload-identity-federation",
                aud.join(", ")
            ),
        );
    };

    // 7. The signature and time, with the credential's issuer.
    let rules = Rules {
        algorithms: ALGORITHMS,
        max_lifetime: config.max_assertion_lifetime_secs,
    };
    let verified = match state
        .verifier
        .verify(assertion, &credential.issuer, &credential.audiences, rules)
        .await
    {
        Ok(v) => v,
        Err(refusal) => {
            return match refusal {
                Refusal::IssuerUnreachable(_) => bad_request(
                    "invalid_request",
                    50166,
                    "Request to External OIDC endpoint failed.",
                ),
                Refusal::UnknownKey(_) | Refusal::BadSignature => bad_request(
                    "invalid_client",
                    700_027,
                    "Client assertion failed signature validation.",
                ),
                Refusal::Expired { exp, now } => bad_request(
                    "invalid_client",
                    700_024,
                    &format!(
                        "Client assertion is not within its valid time range. Current time: \
                         {}, expiry time of assertion {}.",
                        entra_timestamp(now),
                        entra_timestamp(exp)
                    ),
                ),
                Refusal::NotYetValid { from, now } => bad_request(
                    "invalid_client",
                    700_024,
                    &format!(
                        "Client assertion is not within its valid time range. Current time: \
                         {}, assertion valid from {}.",
                        entra_timestamp(now),
                        entra_timestamp(from)
                    ),
                ),
                Refusal::LifetimeTooLong { lifetime, max } => bad_request(
                    "invalid_client",
                    700_024,
                    &format!(
                        "Client assertion is not within its valid time range: lifetime \
                         {lifetime}s exceeds {max}s."
                    ),
                ),
                Refusal::UnsupportedAlg(_)
                | Refusal::UntrustedIssuer(_)
                | Refusal::WrongAudience(_)
                | Refusal::MissingClaim(_)
                | Refusal::Malformed(_) => malformed(),
            };
        }
    };

    let issued = EntraIssued {
        client_id: app.client_id.clone(),
        scope: scope.to_owned(),
        credential: credential.name.clone(),
        subject: verified.sub,
        alg: alg_name(verified.alg).to_owned(),
        access_token: format!("fake-entra.{}", random_b64::<48>()),
        expires_at: now.saturating_add(ACCESS_TOKEN_SECS),
        claims: verified.claims,
    };
    let body = json!({
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_SECS,
        "ext_expires_in": ACCESS_TOKEN_SECS,
        "access_token": issued.access_token,
    });
    push_bounded(&state.issued, issued);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{T0, http, json, post_form, setup};
    use crate::{Fault, TestIssuer};

    const TENANT: &str = "00000000-0000-0000-0000-000000000001";
    const CLIENT: &str = "00000000-0000-0000-0000-000000000002";
    const SUB: &str = "target/azure-deploy";
    const SCOPE: &str = "https://management.azure.com/.default";

    async fn fake(issuer: &TestIssuer, options: &Options) -> EntraFake {
        let config =
            EntraConfig::new(TENANT).with_app(EntraApp::new(CLIENT).trusting(issuer.url(), SUB));
        EntraFake::start_with(config, options.clone())
            .await
            .unwrap()
    }

    fn assertion(issuer: &TestIssuer, alg: &str, sub: &str, aud: &str) -> String {
        issuer.sign(alg, &issuer.claims(sub, aud, 300)).unwrap()
    }

    async fn request(fake: &EntraFake, tenant: &str, overrides: &[(&str, &str)]) -> (u16, Value) {
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("client_assertion_type", ASSERTION_TYPE),
            ("scope", SCOPE),
            ("client_info", "1"),
        ];
        for (k, v) in overrides {
            form.retain(|(name, _)| name != k);
            form.push((k, v));
        }
        let (status, body) =
            post_form(&format!("{}/{tenant}/oauth2/v2.0/token", fake.url()), &form).await;
        (status, json(&body))
    }

    /// Form fields replacing the defaults of [`request`].
    type Overrides<'a> = &'a [(&'a str, &'a str)];

    fn code(body: &Value) -> u64 {
        body["error_codes"][0].as_u64().unwrap()
    }

    #[tokio::test]
    async fn issues_an_access_token_for_a_matching_federated_credential() {
        let (_clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        for alg in ["RS256", "PS256"] {
            let token = assertion(&issuer, alg, SUB, TOKEN_EXCHANGE_AUDIENCE);
            let (status, body) = request(&fake, TENANT, &[("client_assertion", &token)]).await;
            assert_eq!(status, 200, "{alg}: {body}");
            assert_eq!(body["token_type"], "Bearer");
            assert_eq!(body["expires_in"], 3599);
            assert_eq!(body["ext_expires_in"], 3599);
            let issued = fake.last_issued().unwrap();
            assert_eq!(body["access_token"], issued.access_token.as_str());
            assert_eq!((issued.scope.as_str(), issued.alg.as_str()), (SCOPE, alg));
            assert_eq!(issued.expires_at, T0 + 3599);
        }
        assert_eq!(fake.stats().succeeded, 2);
    }

    /// Entra accepts only RSA-signed federated assertions; an adapter signing Azure
    /// assertions with the EC key breaks here.
    #[tokio::test]
    async fn refuses_es256_with_aadsts5002738() {
        let (_clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let token = assertion(&issuer, "ES256", SUB, TOKEN_EXCHANGE_AUDIENCE);
        let (status, body) = request(&fake, TENANT, &[("client_assertion", &token)]).await;
        assert_eq!((status, code(&body)), (400, 5_002_738));
        assert_eq!(body["error"], "invalid_client");
        assert!(body["error_description"].as_str().unwrap().starts_with(
            "AADSTS5002738: Invalid JWT token. 'ES256' is not a supported signature algorithm."
        ));
    }

    /// Attack: another target's assertion, or one for another audience, presented
    /// for this application.
    #[tokio::test]
    async fn refuses_an_assertion_no_federated_credential_matches() {
        let (_clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let cases = [
            ("target/other", TOKEN_EXCHANGE_AUDIENCE),
            (SUB, "sts.amazonaws.com"),
        ];
        for (sub, aud) in cases {
            let token = assertion(&issuer, "RS256", sub, aud);
            let (status, body) = request(&fake, TENANT, &[("client_assertion", &token)]).await;
            assert_eq!((status, code(&body)), (400, 70021));
            assert_eq!(body["error"], "invalid_request");
            let description = body["error_description"].as_str().unwrap();
            assert!(
                description.starts_with(&format!(
                    "AADSTS70021: No matching federated identity record found for presented \
                 assertion. Assertion Issuer: '{}'. Assertion Subject: '{sub}'. Assertion \
                 Audience: '{aud}'.",
                    issuer.url()
                )),
                "{description}"
            );
            assert!(description.contains("\r\nTrace ID: "));
            assert!(description.contains("\r\nCorrelation ID: "));
            assert!(description.contains("\r\nTimestamp: 2026-01-15 08:30:00Z"));
            assert_eq!(body["timestamp"], "2026-01-15 08:30:00Z");
            assert!(body["trace_id"].is_string() && body["correlation_id"].is_string());
            assert_eq!(
                body["error_uri"],
                "https://login.microsoftonline.com/error?code=70021"
            );
        }
        assert!(fake.issued().is_empty());
    }

    #[tokio::test]
    async fn refuses_unknown_tenants_apps_and_non_default_scopes() {
        let (_clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let token = assertion(&issuer, "RS256", SUB, TOKEN_EXCHANGE_AUDIENCE);
        let t = token.as_str();
        let other_tenant = "00000000-0000-0000-0000-0000000000ff";
        let (status, body) = request(&fake, other_tenant, &[("client_assertion", t)]).await;
        assert_eq!((status, code(&body)), (400, 90002));
        let cases: [(Overrides<'_>, &str, u64); 5] = [
            (
                &[
                    ("client_assertion", t),
                    ("client_id", "11111111-1111-1111-1111-111111111111"),
                ],
                "unauthorized_client",
                700_016,
            ),
            (
                &[
                    ("client_assertion", t),
                    ("scope", "https://management.azure.com/user_impersonation"),
                ],
                "invalid_scope",
                1_002_012,
            ),
            (
                &[("client_assertion", t), ("grant_type", "password")],
                "unsupported_grant_type",
                70003,
            ),
            (
                &[("client_assertion", t), ("client_assertion_type", "x")],
                "invalid_request",
                7_000_216,
            ),
            (
                &[("client_assertion", "not.a.jwt")],
                "invalid_request",
                50027,
            ),
        ];
        for (overrides, error, number) in cases {
            let (status, body) = request(&fake, TENANT, overrides).await;
            assert_eq!(
                (status, body["error"].as_str(), code(&body)),
                (400, Some(error), number)
            );
        }
        let (status, body) = request(&fake, TENANT, &[]).await;
        assert_eq!((status, code(&body)), (400, 7_000_216));
    }

    #[tokio::test]
    async fn refuses_expired_and_forged_assertions() {
        let (clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let claims = issuer.claims(SUB, TOKEN_EXCHANGE_AUDIENCE, 300);
        let attacker = TestIssuer::start(clock.clone()).await.unwrap();
        let forged = attacker.sign("RS256", &claims).unwrap();
        let (status, body) = request(&fake, TENANT, &[("client_assertion", &forged)]).await;
        assert_eq!((status, code(&body)), (400, 700_027));
        let genuine = issuer.sign("RS256", &claims).unwrap();
        clock.advance(300);
        let (status, body) = request(&fake, TENANT, &[("client_assertion", &genuine)]).await;
        assert_eq!((status, code(&body)), (400, 700_024));
        assert_eq!(body["error"], "invalid_client");
    }

    #[tokio::test]
    async fn an_unreachable_issuer_is_aadsts50166() {
        let (clock, options, _issuer) = setup().await;
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let config = EntraConfig::new(TENANT).with_app(EntraApp::new(CLIENT).trusting(&dead, SUB));
        let fake = EntraFake::start_with(config, options).await.unwrap();
        let signer = TestIssuer::start(clock).await.unwrap();
        let mut claims = signer.claims(SUB, TOKEN_EXCHANGE_AUDIENCE, 300);
        claims["iss"] = Value::from(dead);
        let token = signer.sign("RS256", &claims).unwrap();
        let (status, body) = request(&fake, TENANT, &[("client_assertion", &token)]).await;
        assert_eq!((status, code(&body)), (400, 50166));
    }

    #[tokio::test]
    async fn an_app_holds_at_most_twenty_federated_credentials() {
        let mut app = EntraApp::new(CLIENT);
        for i in 0..MAX_FEDERATED_CREDENTIALS {
            app = app.trusting("https://issuer.example.com", format!("target/t{i}"));
        }
        let fake = EntraFake::start(EntraConfig::new(TENANT).with_app(app.clone())).await;
        assert!(fake.is_ok());
        let app = app.trusting("https://issuer.example.com", "target/one-too-many");
        let err = EntraFake::start(EntraConfig::new(TENANT).with_app(app))
            .await
            .unwrap_err();
        assert!(matches!(err, StartError::Config(_)), "{err}");
    }

    #[tokio::test]
    async fn throttles_with_429_and_retry_after_then_recovers() {
        let (_clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        fake.set_fault(Fault::Throttle(1)).await.unwrap();
        let response = http().post(fake.token_url()).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 429);
        assert_eq!(response.headers()["retry-after"], "1");
        let body = json(&response.text().await.unwrap());
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .starts_with("AADSTS")
        );
        fake.set_fault(Fault::ServerErrorThen(1)).await.unwrap();
        let token = assertion(&issuer, "RS256", SUB, TOKEN_EXCHANGE_AUDIENCE);
        let (status, _) = request(&fake, TENANT, &[("client_assertion", &token)]).await;
        assert_eq!(status, 503);
        let (status, _) = request(&fake, TENANT, &[("client_assertion", &token)]).await;
        assert_eq!(status, 200);
    }
}
