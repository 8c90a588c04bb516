//! Faithful fake of Google Cloud's Security Token Service (`POST /v1/token`) and IAM
//! Service Account Credentials (`generateAccessToken`), following google-auth-library-
//! python (`google/oauth2/sts.py`, `google/auth/external_account.py`,
//! `google/auth/impersonated_credentials.py` and their tests), the IAM Credentials REST
//! reference and the workload identity pool provider reference (summarised in
//! `protocols.md` §2.2); no emulator exists.
//!
//! Both services share one server (point the STS and IAM Credentials endpoints at the
//! same [`GcpFake::url`]); their counters are separate ([`GcpFake::sts_stats`],
//! [`GcpFake::iam_stats`]).
//!
//! **STS** `POST /v1/token`, form body, checked in this order (errors are the OAuth JSON
//! `{"error", "error_description"}`, HTTP 400):
//!
//! 1. `grant_type` = `urn:ietf:params:oauth:grant-type:token-exchange` (else
//!    `unsupported_grant_type`); `requested_token_type` =
//!    `urn:ietf:params:oauth:token-type:access_token`, `subject_token_type` = `...:jwt`
//!    or `...:id_token`, `subject_token` present (else `invalid_request`).
//! 2. `audience` shaped `//iam.googleapis.com/projects/<number>/locations/global/
//!    workloadIdentityPools/<pool>/providers/<provider>` (else `invalid_request` "Invalid
//!    value for \"audience\". ..."), and naming the configured provider (else
//!    `invalid_target` "The target service indicated by the \"audience\" parameters is
//!    invalid. ...").
//! 3. The token: `alg` RS256 or ES256; `iss` equal to the provider's issuer; discovery,
//!    JWKS, key by `kid`, signature; integer `exp` in the future, `iat`/`nbf` not in the
//!    future, `exp - iat` within the configured cap; `sub` present; `aud` one of the
//!    provider's allowed audiences (default: `https://iam.googleapis.com/` + provider,
//!    or `//iam.googleapis.com/` + provider). Refusals are `invalid_grant`; Google's
//!    exact descriptions for these are not documented, the fake's are its own.
//! 4. The attribute mapping `google.subject = assertion.sub`: at most 127 bytes (else
//!    `invalid_request` "The size of mapped attribute google.subject exceeds the 127
//!    bytes limit. ...").
//! 5. The attribute condition, modelled as a list of allowed subjects (else
//!    `unauthorized_client` "The given credential is rejected by the attribute
//!    condition.").
//!
//! Success: `{"access_token": "ya29.fake-...", "issued_token_type":
//! "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer",
//! "expires_in": 3600}`. The federated token is remembered (the last
//! [`FEDERATED_TOKENS`]) for IAM Credentials.
//!
//! **IAM Credentials** `POST /v1/projects/-/serviceAccounts/<email>:generateAccessToken`
//! (errors are Google's API JSON `{"error": {"code", "message", "status"}}`):
//! `Authorization: Bearer` must carry an unexpired federated token this fake issued
//! (else 401 `UNAUTHENTICATED`); the project must be the `-` wildcard and the JSON body
//! must hold a non-empty `scope` array, an optional `lifetime` of the form `<seconds>s`
//! (default `3600s`) no longer than the account's maximum (3600 s unless the lifetime
//! extension is allowed, up to 43,200 s), and no `delegates` (the fake does not model
//! delegation chains) (else 400 `INVALID_ARGUMENT`); the service account must exist and
//! grant `roles/iam.workloadIdentityUser` to the principal
//! `principal://iam.googleapis.com/projects/<n>/locations/global/workloadIdentityPools/
//! <pool>/subject/<sub>` (else 403 `PERMISSION_DENIED` "Permission
//! 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).").
//! Success: `{"accessToken": "ya29.fake-sa-...", "expireTime": "<RFC 3339, Z>"}`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jsonwebtoken::Algorithm;
use legate_core::UnixSeconds;
use serde_json::{Map, Value, json};

use crate::server::{
    ANY_LOOPBACK_PORT, FaultAnswer, Profile, Server, StartError, Stats, fake_common, lock,
    push_bounded,
};
use crate::verify::{Options, Refusal, Rules, Verifier, alg_name, fetchable_url};
use crate::wire::{Form, random_b64, rfc3339};

/// RFC 8693 grant type.
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The only token type STS issues.
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The subject token types accepted for OIDC providers.
const SUBJECT_TOKEN_TYPES: &[&str] = &[
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
];
/// The signing algorithms the fake accepts for workload identity federation.
const ALGORITHMS: &[Algorithm] = &[Algorithm::RS256, Algorithm::ES256];
/// The most bytes `google.subject` may have.
pub const MAX_SUBJECT_BYTES: usize = 127;
/// Lifetime of a federated token.
pub const FEDERATED_TOKEN_SECS: i64 = 3600;
/// How many federated tokens the fake remembers; older ones become unknown (401).
pub const FEDERATED_TOKENS: usize = 4096;

/// A workload identity pool provider and the service accounts federated principals may
/// impersonate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcpConfig {
    /// The provider's issuer: the only `iss` accepted, byte for byte.
    pub issuer: String,
    /// `projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>`.
    pub provider: String,
    /// The provider's `allowed_audiences`; empty means Google's default (the
    /// provider's resource name with `https://iam.googleapis.com/` or
    /// `//iam.googleapis.com/`).
    pub allowed_audiences: Vec<String>,
    /// The attribute condition, as the subjects it admits; `None` is a provider without
    /// a condition.
    pub allowed_subjects: Option<Vec<String>>,
    /// The service accounts that exist.
    pub service_accounts: Vec<GcpServiceAccount>,
    /// Refuse tokens whose `exp - iat` exceeds this. Default: none.
    pub max_assertion_lifetime_secs: Option<u64>,
}

impl GcpConfig {
    /// A provider trusting `issuer`, without condition or service accounts.
    pub fn new(issuer: impl Into<String>, provider: impl Into<String>) -> GcpConfig {
        GcpConfig {
            issuer: issuer.into(),
            provider: provider.into(),
            allowed_audiences: Vec::new(),
            allowed_subjects: None,
            service_accounts: Vec::new(),
            max_assertion_lifetime_secs: None,
        }
    }

    /// Sets the attribute condition to admit exactly these subjects.
    #[must_use]
    pub fn allowing_subjects<I, S>(mut self, subjects: I) -> GcpConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_subjects = Some(subjects.into_iter().map(Into::into).collect());
        self
    }

    /// Adds a service account.
    #[must_use]
    pub fn with_service_account(mut self, account: GcpServiceAccount) -> GcpConfig {
        self.service_accounts.push(account);
        self
    }

    /// The STS `audience`: `//iam.googleapis.com/` + provider.
    pub fn sts_audience(&self) -> String {
        format!("//iam.googleapis.com/{}", self.provider)
    }

    /// The assertion `aud` Legate sends: `https://iam.googleapis.com/` + provider.
    pub fn assertion_audience(&self) -> String {
        format!("https://iam.googleapis.com/{}", self.provider)
    }

    /// The IAM principal of a federated subject.
    pub fn principal(&self, subject: &str) -> String {
        let pool = self
            .provider
            .rsplit_once("/providers/")
            .map_or(self.provider.as_str(), |(pool, _)| pool);
        format!("principal://iam.googleapis.com/{pool}/subject/{subject}")
    }

    fn accepted_audiences(&self) -> Vec<String> {
        if self.allowed_audiences.is_empty() {
            vec![self.assertion_audience(), self.sts_audience()]
        } else {
            self.allowed_audiences.clone()
        }
    }
}

/// A service account and who may impersonate it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcpServiceAccount {
    /// `name@project.iam.gserviceaccount.com`.
    pub email: String,
    /// The federated subjects granted `roles/iam.workloadIdentityUser` on it.
    pub workload_identity_users: Vec<String>,
    /// The longest `lifetime` granted: 3600 s, or up to 43,200 s when the organisation
    /// allows the lifetime extension.
    pub max_lifetime_secs: i64,
}

impl GcpServiceAccount {
    /// An account nobody may impersonate, with the default one-hour cap.
    pub fn new(email: impl Into<String>) -> GcpServiceAccount {
        GcpServiceAccount {
            email: email.into(),
            workload_identity_users: Vec::new(),
            max_lifetime_secs: 3600,
        }
    }

    /// Grants `roles/iam.workloadIdentityUser` to the principal of `subject`.
    #[must_use]
    pub fn impersonable_by(mut self, subject: impl Into<String>) -> GcpServiceAccount {
        self.workload_identity_users.push(subject.into());
        self
    }
}

/// A federated token the STS fake issued.
#[derive(Debug, Clone, PartialEq)]
pub struct GcpFederatedToken {
    /// The access token.
    pub access_token: String,
    /// `google.subject`.
    pub subject: String,
    /// The request's `scope`, split on spaces.
    pub scopes: Vec<String>,
    /// The request's `subject_token_type`.
    pub subject_token_type: String,
    /// The token's `alg`.
    pub alg: String,
    /// When it expires.
    pub expires_at: UnixSeconds,
    /// Every claim of the verified assertion.
    pub claims: Map<String, Value>,
}

/// A service-account token the IAM Credentials fake issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcpImpersonation {
    /// The service account.
    pub service_account: String,
    /// The federated subject that impersonated it.
    pub subject: String,
    /// The requested scopes.
    pub scopes: Vec<String>,
    /// The granted lifetime.
    pub lifetime_secs: i64,
    /// The access token.
    pub access_token: String,
    /// When it expires.
    pub expires_at: UnixSeconds,
}

struct GcpState {
    config: GcpConfig,
    verifier: Verifier,
    federated: Mutex<VecDeque<GcpFederatedToken>>,
    impersonations: Mutex<VecDeque<GcpImpersonation>>,
}

/// The running fake; stops when dropped.
pub struct GcpFake {
    server: Server,
    state: Arc<GcpState>,
}

impl std::fmt::Debug for GcpFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpFake")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

fake_common!(GcpFake);

/// The endpoint label of a path.
fn classify(path: &str) -> &'static str {
    if path == "/v1/token" {
        "sts"
    } else if path.starts_with("/v1/projects/") {
        "iam"
    } else {
        "other"
    }
}

/// Whether `provider` is `projects/<digits>/locations/global/workloadIdentityPools/<pool>/providers/<id>`.
fn provider_shaped(provider: &str) -> bool {
    let parts: Vec<&str> = provider.split('/').collect();
    matches!(
        parts.as_slice(),
        ["projects", number, "locations", "global", "workloadIdentityPools", pool, "providers", id]
            if !number.is_empty()
                && number.bytes().all(|b| b.is_ascii_digit())
                && !pool.is_empty()
                && !id.is_empty()
    )
}

impl GcpFake {
    /// Starts the fake with the system clock.
    ///
    /// # Errors
    /// See [`start_with`](Self::start_with).
    pub async fn start(config: GcpConfig) -> Result<GcpFake, StartError> {
        GcpFake::start_with(config, Options::default()).await
    }

    /// Starts the fake on `127.0.0.1:0`.
    ///
    /// # Errors
    /// See [`start_on`](Self::start_on).
    pub async fn start_with(config: GcpConfig, options: Options) -> Result<GcpFake, StartError> {
        GcpFake::start_on(config, options, ANY_LOOPBACK_PORT).await
    }

    /// Starts the fake on `listen` (for example a fixed loopback port).
    ///
    /// # Errors
    /// When the issuer is neither `https://` nor loopback `http://`, the provider name is
    /// not a provider resource name, a service account's lifetime cap is outside
    /// 1–43,200 s, or the port cannot be bound.
    pub async fn start_on(
        config: GcpConfig,
        options: Options,
        listen: SocketAddr,
    ) -> Result<GcpFake, StartError> {
        if !fetchable_url(&config.issuer) {
            return Err(StartError::Config(format!(
                "issuer `{}` must be https, or http on loopback",
                config.issuer
            )));
        }
        if !provider_shaped(&config.provider) {
            return Err(StartError::Config(format!(
                "`{}` is not projects/N/locations/global/workloadIdentityPools/P/providers/V",
                config.provider
            )));
        }
        for sa in &config.service_accounts {
            if !(1..=43_200).contains(&sa.max_lifetime_secs) {
                return Err(StartError::Config(format!(
                    "service account `{}`: max lifetime must be 1-43200",
                    sa.email
                )));
            }
        }
        let state = Arc::new(GcpState {
            verifier: Verifier::new(&options)?,
            config,
            federated: Mutex::new(VecDeque::new()),
            impersonations: Mutex::new(VecDeque::new()),
        });
        let router = Router::new()
            .route("/v1/token", post(sts_token))
            .route(
                "/v1/projects/{project}/serviceAccounts/{name_and_method}",
                post(generate_access_token),
            )
            .fallback(not_found)
            .with_state(Arc::clone(&state));
        let profile = Profile {
            service: "gcp",
            idp_fault: false,
            classify,
            answer: fault_answer,
        };
        let server = Server::start(router, profile, options.clock, listen).await?;
        Ok(GcpFake { server, state })
    }

    /// The configuration the fake runs with.
    pub fn config(&self) -> &GcpConfig {
        &self.state.config
    }

    /// Counters of `POST /v1/token`.
    pub fn sts_stats(&self) -> Stats {
        self.server.stats_for("sts")
    }

    /// Counters of `generateAccessToken`.
    pub fn iam_stats(&self) -> Stats {
        self.server.stats_for("iam")
    }

    /// The federated tokens issued, oldest first.
    pub fn federated_tokens(&self) -> Vec<GcpFederatedToken> {
        lock(&self.state.federated).iter().cloned().collect()
    }

    /// The most recent federated token issued.
    pub fn last_federated_token(&self) -> Option<GcpFederatedToken> {
        lock(&self.state.federated).back().cloned()
    }

    /// The service-account tokens issued, oldest first.
    pub fn impersonations(&self) -> Vec<GcpImpersonation> {
        lock(&self.state.impersonations).iter().cloned().collect()
    }

    /// The most recent service-account token issued.
    pub fn last_impersonation(&self) -> Option<GcpImpersonation> {
        lock(&self.state.impersonations).back().cloned()
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// An STS (OAuth) error.
fn oauth_error(error: &str, description: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": error, "error_description": description}),
    )
}

/// A Google API error.
fn api_error(status: StatusCode, state: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({"error": {"code": status.as_u16(), "message": message, "status": state}}),
    )
}

fn fault_answer(answer: FaultAnswer, _now: UnixSeconds) -> Response {
    match answer {
        FaultAnswer::Throttle => {
            let mut response = api_error(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded: too many requests.",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            response
        }
        FaultAnswer::ServerError | FaultAnswer::IdpCommunicationError => api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "The service is currently unavailable.",
        ),
    }
}

async fn not_found() -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "the fake serves POST /v1/token and POST /v1/projects/-/serviceAccounts/*:generateAccessToken",
    )
}

async fn sts_token(State(state): State<Arc<GcpState>>, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let config = &state.config;

    // 1. The request's shape.
    if form.get("grant_type") != Some(GRANT_TYPE) {
        return oauth_error(
            "unsupported_grant_type",
            &format!(
                "Invalid value for \"grant_type\": `{}`.",
                form.get("grant_type").unwrap_or_default()
            ),
        );
    }
    if form.get("requested_token_type") != Some(ACCESS_TOKEN_TYPE) {
        return oauth_error(
            "invalid_request",
            "Invalid value for \"requested_token_type\".",
        );
    }
    let subject_token_type = form.get("subject_token_type").unwrap_or_default();
    if !SUBJECT_TOKEN_TYPES.contains(&subject_token_type) {
        return oauth_error(
            "invalid_request",
            "Invalid value for \"subject_token_type\".",
        );
    }
    let Some(token) = form.get("subject_token").filter(|t| !t.is_empty()) else {
        return oauth_error(
            "invalid_request",
            "Missing required parameter: subject_token.",
        );
    };

    // 2. The provider.
    let audience = form.get("audience").unwrap_or_default();
    let named = audience.strip_prefix("//iam.googleapis.com/");
    if !named.is_some_and(provider_shaped) {
        return oauth_error(
            "invalid_request",
            "Invalid value for \"audience\". This value should be the full resource name of \
             the Identity Provider. See \
             https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token for the \
             list of possible formats.",
        );
    }
    if named != Some(config.provider.as_str()) {
        return oauth_error(
            "invalid_target",
            "The target service indicated by the \"audience\" parameters is invalid. This \
             might either be because the pool or provider is disabled or deleted or because \
             it doesn't exist.",
        );
    }

    // 3. The token.
    let rules = Rules {
        algorithms: ALGORITHMS,
        max_lifetime: config.max_assertion_lifetime_secs,
    };
    let assertion = match state
        .verifier
        .verify(token, &config.issuer, &config.accepted_audiences(), rules)
        .await
    {
        Ok(a) => a,
        Err(refusal) => {
            return oauth_error("invalid_grant", &refusal_description(&refusal, config));
        }
    };

    // 4. google.subject = assertion.sub.
    if assertion.sub.len() > MAX_SUBJECT_BYTES {
        return oauth_error(
            "invalid_request",
            "The size of mapped attribute google.subject exceeds the 127 bytes limit. Either \
             modify your attribute mapping or the incoming assertion to produce a mapped \
             attribute that is less than 127 bytes.",
        );
    }

    // 5. The attribute condition.
    if let Some(allowed) = &config.allowed_subjects
        && !allowed.contains(&assertion.sub)
    {
        return oauth_error(
            "unauthorized_client",
            "The given credential is rejected by the attribute condition.",
        );
    }

    let now = state.verifier.now();
    let issued = GcpFederatedToken {
        access_token: format!("ya29.fake-{}", random_b64::<32>()),
        subject: assertion.sub,
        scopes: form
            .get("scope")
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        subject_token_type: subject_token_type.to_owned(),
        alg: alg_name(assertion.alg).to_owned(),
        expires_at: now.saturating_add(FEDERATED_TOKEN_SECS),
        claims: assertion.claims,
    };
    let body = json!({
        "access_token": issued.access_token,
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": FEDERATED_TOKEN_SECS,
    });
    {
        let mut federated = lock(&state.federated);
        if federated.len() >= FEDERATED_TOKENS {
            federated.pop_front();
        }
        federated.push_back(issued);
    }
    json_response(StatusCode::OK, &body)
}

fn refusal_description(refusal: &Refusal, config: &GcpConfig) -> String {
    match refusal {
        Refusal::UnsupportedAlg(alg) => {
            format!("The JWT's signing algorithm `{alg}` is not supported.")
        }
        Refusal::UntrustedIssuer(iss) => format!(
            "The issuer in ID Token `{iss}` does not match the expected issuer `{}`.",
            config.issuer
        ),
        Refusal::IssuerUnreachable(_) => {
            "Unable to fetch the public keys of the identity provider.".to_owned()
        }
        Refusal::UnknownKey(_) | Refusal::BadSignature => "Invalid JWT signature.".to_owned(),
        Refusal::MissingClaim(claim) => format!("The ID Token has no `{claim}` claim."),
        Refusal::Expired { exp, now } => {
            format!("ID Token expired at {exp}; the current time is {now}.")
        }
        Refusal::NotYetValid { from, now } => {
            format!("ID Token is not valid before {from}; the current time is {now}.")
        }
        Refusal::LifetimeTooLong { lifetime, max } => {
            format!("ID Token lifetime {lifetime}s exceeds {max}s.")
        }
        Refusal::WrongAudience(aud) => format!(
            "The audience in ID Token [{}] does not match the expected audience.",
            aud.join(", ")
        ),
        Refusal::Malformed(why) => format!("Invalid ID Token: {why}."),
    }
}

/// `<n>s` (seconds, optionally fractional) → whole seconds, rounded up.
fn parse_lifetime(value: &str) -> Option<i64> {
    let digits = value.strip_suffix('s')?;
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || whole.len() > 12
    {
        return None;
    }
    let secs: i64 = whole.parse().ok()?;
    let round_up = fraction.bytes().any(|b| b != b'0');
    Some(if round_up { secs + 1 } else { secs })
}

async fn generate_access_token(
    State(state): State<Arc<GcpState>>,
    Path((project, name_and_method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let config = &state.config;
    let Some((account, method)) = name_and_method.rsplit_once(':') else {
        return not_found().await;
    };
    if method != "generateAccessToken" {
        return not_found().await;
    }

    // The caller: a federated token this fake issued, still valid.
    let now = state.verifier.now();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let caller = bearer.and_then(|token| {
        lock(&state.federated)
            .iter()
            .find(|t| t.access_token == token && t.expires_at > now)
            .cloned()
    });
    let Some(caller) = caller else {
        return api_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, \
             login cookie or other valid authentication credential. See \
             https://developers.google.com/identity/sign-in/web/devconsole-project.",
        );
    };

    if project != "-" {
        return api_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "The project must be the `-` wildcard: projects/-/serviceAccounts/{ACCOUNT}.",
        );
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                "Invalid JSON payload received.",
            );
        }
    };
    let scopes: Vec<String> = request
        .get("scope")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if scopes.is_empty() {
        return api_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Scope required.",
        );
    }
    if request
        .get("delegates")
        .and_then(Value::as_array)
        .is_some_and(|d| !d.is_empty())
    {
        return api_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "the fake does not model delegation chains: `delegates` must be empty",
        );
    }
    let lifetime = match request.get("lifetime") {
        None => 3600,
        Some(v) => match v.as_str().and_then(parse_lifetime) {
            Some(secs) if secs > 0 => secs,
            _ => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_ARGUMENT",
                    &format!(
                        "Invalid value at 'lifetime' ({v}): expected a duration like \"3600s\"."
                    ),
                );
            }
        },
    };

    // The IAM binding.
    let service_account = config
        .service_accounts
        .iter()
        .find(|sa| sa.email == account);
    let Some(service_account) =
        service_account.filter(|sa| sa.workload_identity_users.contains(&caller.subject))
    else {
        return api_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not \
             exist).",
        );
    };
    if lifetime > service_account.max_lifetime_secs {
        return api_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!(
                "The lifetime {lifetime}s exceeds the maximum of {}s allowed for this service \
                 account.",
                service_account.max_lifetime_secs
            ),
        );
    }

    let issued = GcpImpersonation {
        service_account: service_account.email.clone(),
        subject: caller.subject,
        scopes,
        lifetime_secs: lifetime,
        access_token: format!("ya29.fake-sa-{}", random_b64::<32>()),
        expires_at: now.saturating_add(lifetime),
    };
    let body = json!({
        "accessToken": issued.access_token,
        "expireTime": rfc3339(issued.expires_at),
    });
    push_bounded(&state.impersonations, issued);
    json_response(StatusCode::OK, &body)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn provider_names_are_checked_for_shape() {
        assert!(provider_shaped(
            "projects/123/locations/global/workloadIdentityPools/p/providers/v"
        ));
        assert!(!provider_shaped(
            "projects/abc/locations/global/workloadIdentityPools/p/providers/v"
        ));
        assert!(!provider_shaped(
            "projects/123/locations/global/workloadIdentityPools/p"
        ));
        assert!(!provider_shaped(
            "projects/123/locations/global/workloadIdentityPools/p/providers/v/x"
        ));
    }

    #[test]
    fn lifetimes_parse_like_protobuf_durations() {
        assert_eq!(parse_lifetime("3600s"), Some(3600));
        assert_eq!(parse_lifetime("1.5s"), Some(2));
        assert_eq!(parse_lifetime("3600"), None);
        assert_eq!(parse_lifetime("-1s"), None);
        assert_eq!(parse_lifetime("s"), None);
    }

    #[test]
    fn principal_names_the_pool_subject() {
        let config = GcpConfig::new(
            "https://x",
            "projects/1/locations/global/workloadIdentityPools/p/providers/v",
        );
        assert_eq!(
            config.principal("target/t"),
            "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/target/t"
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testutil::{T0, http, json, post_form, setup};
    use crate::{Fault, FaultError, TestIssuer};

    const PROVIDER: &str =
        "projects/123456789/locations/global/workloadIdentityPools/legate/providers/legate";
    const SUB: &str = "target/gcp-deploy";
    const SA: &str = "deployer@proj.iam.gserviceaccount.com";

    fn config(issuer: &TestIssuer) -> GcpConfig {
        GcpConfig::new(issuer.url(), PROVIDER)
            .allowing_subjects([SUB, "target/unbound"])
            .with_service_account(GcpServiceAccount::new(SA).impersonable_by(SUB))
    }

    async fn fake(issuer: &TestIssuer, options: &Options) -> GcpFake {
        GcpFake::start_with(config(issuer), options.clone())
            .await
            .unwrap()
    }

    fn assertion(issuer: &TestIssuer, alg: &str, sub: &str) -> String {
        let aud = format!("https://iam.googleapis.com/{PROVIDER}");
        issuer.sign(alg, &issuer.claims(sub, &aud, 300)).unwrap()
    }

    async fn exchange(fake: &GcpFake, audience: &str, token: &str) -> (u16, Value) {
        let (status, body) = post_form(
            &format!("{}/v1/token", fake.url()),
            &[
                ("grant_type", GRANT_TYPE),
                ("audience", audience),
                ("scope", "https://www.googleapis.com/auth/cloud-platform"),
                ("requested_token_type", ACCESS_TOKEN_TYPE),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                ("subject_token", token),
            ],
        )
        .await;
        (status, json(&body))
    }

    async fn impersonate(fake: &GcpFake, sa: &str, bearer: &str, body: Value) -> (u16, Value) {
        let response = http()
            .post(format!(
                "{}/v1/projects/-/serviceAccounts/{sa}:generateAccessToken",
                fake.url()
            ))
            .bearer_auth(bearer)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, json(&response.text().await.unwrap()))
    }

    fn audience() -> String {
        format!("//iam.googleapis.com/{PROVIDER}")
    }

    #[tokio::test]
    async fn exchanges_then_impersonates_with_documented_shapes() {
        let (_clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        for alg in ["ES256", "RS256"] {
            let (status, body) = exchange(&fake, &audience(), &assertion(&issuer, alg, SUB)).await;
            assert_eq!(status, 200, "{body}");
            let token = body["access_token"].as_str().unwrap();
            assert!(token.starts_with("ya29.fake-"));
            assert_eq!(body["issued_token_type"], ACCESS_TOKEN_TYPE);
            assert_eq!(body["token_type"], "Bearer");
            assert_eq!(body["expires_in"], 3600);
            let federated = fake.last_federated_token().unwrap();
            assert_eq!(
                (federated.subject.as_str(), federated.alg.as_str()),
                (SUB, alg)
            );
            assert_eq!(
                federated.scopes,
                vec!["https://www.googleapis.com/auth/cloud-platform".to_owned()]
            );

            let (status, body) = impersonate(
                &fake,
                SA,
                token,
                json!({"scope": ["https://www.googleapis.com/auth/cloud-platform"], "lifetime": "1800s"}),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            assert!(
                body["accessToken"]
                    .as_str()
                    .unwrap()
                    .starts_with("ya29.fake-sa-")
            );
            assert_eq!(body["expireTime"], "2026-01-15T09:00:00Z");
            let issued = fake.last_impersonation().unwrap();
            assert_eq!(
                (issued.service_account.as_str(), issued.subject.as_str()),
                (SA, SUB)
            );
            assert_eq!(issued.expires_at, T0 + 1800);
        }
        // The email percent-encoded, as clients may send it.
        let (_, body) = exchange(&fake, &audience(), &assertion(&issuer, "ES256", SUB)).await;
        let token = body["access_token"].as_str().unwrap();
        let encoded = SA.replace('@', "%40");
        let (status, body) = impersonate(&fake, &encoded, token, json!({"scope": ["s"]})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(fake.last_impersonation().unwrap().lifetime_secs, 3600);
        assert_eq!(fake.sts_stats().succeeded, 3);
        assert_eq!(fake.iam_stats().succeeded, 3);
    }

    #[tokio::test]
    async fn refuses_an_audience_that_is_not_this_provider() {
        let (_clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let token = assertion(&issuer, "ES256", SUB);
        let other = "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/legate/providers/other";
        let (status, body) = exchange(&fake, other, &token).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_target"))
        );
        for malformed in [PROVIDER, "https://iam.googleapis.com/projects/1", ""] {
            let (status, body) = exchange(&fake, malformed, &token).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (400, Some("invalid_request"))
            );
            assert!(
                body["error_description"]
                    .as_str()
                    .unwrap()
                    .starts_with("Invalid value for \"audience\".")
            );
        }
        assert!(fake.federated_tokens().is_empty());
    }

    /// Attack: an assertion minted for another provider (or another cloud).
    #[tokio::test]
    async fn refuses_an_assertion_for_another_audience() {
        let (_clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let token = issuer
            .sign("ES256", &issuer.claims(SUB, "sts.amazonaws.com", 300))
            .unwrap();
        let (status, body) = exchange(&fake, &audience(), &token).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
        // Google's default accepts the `//` form as well.
        let token = issuer
            .sign("ES256", &issuer.claims(SUB, &audience(), 300))
            .unwrap();
        assert_eq!(exchange(&fake, &audience(), &token).await.0, 200);
    }

    #[tokio::test]
    async fn refuses_a_subject_over_127_bytes() {
        let (_clock, options, issuer) = setup().await;
        let mut config = config(&issuer);
        config.allowed_subjects = None;
        let fake = GcpFake::start_with(config, options).await.unwrap();
        let at_limit = format!("target/{}", "a".repeat(MAX_SUBJECT_BYTES - 7));
        assert_eq!(
            exchange(&fake, &audience(), &assertion(&issuer, "ES256", &at_limit))
                .await
                .0,
            200
        );
        let over = format!("{at_limit}a");
        let (status, body) =
            exchange(&fake, &audience(), &assertion(&issuer, "ES256", &over)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request"))
        );
        assert!(body["error_description"].as_str().unwrap().starts_with(
            "The size of mapped attribute google.subject exceeds the 127 bytes limit."
        ));
    }

    /// Attack: another target's assertion presented to this provider.
    #[tokio::test]
    async fn refuses_a_subject_the_attribute_condition_rejects() {
        let (_clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let (status, body) = exchange(
            &fake,
            &audience(),
            &assertion(&issuer, "ES256", "target/other"),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(
            body,
            json!({"error": "unauthorized_client",
                   "error_description": "The given credential is rejected by the attribute condition."})
        );
    }

    #[tokio::test]
    async fn refuses_expired_and_wrongly_signed_assertions() {
        let (clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let token = assertion(&issuer, "ES256", SUB);
        let rs384 = assertion(&issuer, "RS384", SUB);
        let (status, body) = exchange(&fake, &audience(), &rs384).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
        clock.advance(301);
        let (status, body) = exchange(&fake, &audience(), &token).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("expired")
        );
    }

    /// Attack: a federated principal impersonating a service account it holds no
    /// workloadIdentityUser binding on (or one that does not exist).
    #[tokio::test]
    async fn refuses_impersonation_without_a_binding() {
        let (_clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let (_, body) = exchange(
            &fake,
            &audience(),
            &assertion(&issuer, "ES256", "target/unbound"),
        )
        .await;
        let unbound = body["access_token"].as_str().unwrap().to_owned();
        let scope = json!({"scope": ["s"]});
        let (status, body) = impersonate(&fake, SA, &unbound, scope.clone()).await;
        assert_eq!(status, 403);
        assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
        assert_eq!(body["error"]["code"], 403);
        let (_, body) = exchange(&fake, &audience(), &assertion(&issuer, "ES256", SUB)).await;
        let bound = body["access_token"].as_str().unwrap().to_owned();
        let (status, _) =
            impersonate(&fake, "ghost@proj.iam.gserviceaccount.com", &bound, scope).await;
        assert_eq!(status, 403);
        assert!(fake.impersonations().is_empty());
    }

    /// Attack: a token the fake never issued, or one past its expiry, as the bearer.
    #[tokio::test]
    async fn refuses_unknown_or_expired_bearer_tokens() {
        let (clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let scope = json!({"scope": ["s"]});
        let (status, body) = impersonate(&fake, SA, "ya29.made-up", scope.clone()).await;
        assert_eq!(
            (status, &body["error"]["status"]),
            (401, &json!("UNAUTHENTICATED"))
        );
        let (_, body) = exchange(&fake, &audience(), &assertion(&issuer, "ES256", SUB)).await;
        let token = body["access_token"].as_str().unwrap().to_owned();
        clock.advance(FEDERATED_TOKEN_SECS);
        let (status, _) = impersonate(&fake, SA, &token, scope).await;
        assert_eq!(status, 401);
    }

    #[tokio::test]
    async fn refuses_lifetimes_over_the_account_maximum_and_bad_bodies() {
        let (_clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let (_, body) = exchange(&fake, &audience(), &assertion(&issuer, "ES256", SUB)).await;
        let token = body["access_token"].as_str().unwrap().to_owned();
        let refused = [
            json!({"scope": ["s"], "lifetime": "3601s"}),
            json!({"scope": ["s"], "lifetime": "3600"}),
            json!({"scope": []}),
            json!({"lifetime": "60s"}),
            json!({"scope": ["s"], "delegates": ["projects/-/serviceAccounts/x"]}),
        ];
        for request in refused {
            let (status, body) = impersonate(&fake, SA, &token, request.clone()).await;
            assert_eq!(status, 400, "{request}");
            assert_eq!(body["error"]["status"], "INVALID_ARGUMENT", "{request}");
        }
        let (status, _) = impersonate(
            &fake,
            SA,
            &token,
            json!({"scope": ["s"], "lifetime": "3600s"}),
        )
        .await;
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn throttles_with_429_and_retry_after_and_refuses_the_aws_only_fault() {
        let (_clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let err = fake
            .set_fault(Fault::IdpCommunicationError(1))
            .await
            .unwrap_err();
        assert!(matches!(err, FaultError::Unsupported { .. }), "{err}");
        fake.set_fault(Fault::Throttle(1)).await.unwrap();
        let response = http()
            .post(format!("{}/v1/token", fake.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 429);
        assert_eq!(response.headers()["retry-after"], "1");
        fake.set_fault(Fault::ServerErrorThen(1)).await.unwrap();
        let (status, body) = exchange(&fake, &audience(), &assertion(&issuer, "ES256", SUB)).await;
        assert_eq!(
            (status, &body["error"]["status"]),
            (503, &json!("UNAVAILABLE"))
        );
        assert_eq!(
            exchange(&fake, &audience(), &assertion(&issuer, "ES256", SUB))
                .await
                .0,
            200
        );
        assert_eq!(fake.sts_stats().faulted, 2);
    }
}
