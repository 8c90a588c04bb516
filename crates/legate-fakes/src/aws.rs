//! Faithful fake of AWS STS `AssumeRoleWithWebIdentity`, following the STS API model
//! (botocore `data/sts/2011-06-15/service-2.json`), the IAM session-tags guide and the
//! query-protocol error envelope (summarised in `protocols.md` §2.1); no emulator exists
//! that verifies the web identity token (moto accepts any token).
//!
//! `POST /` with a form body `Action=AssumeRoleWithWebIdentity&Version=2011-06-15&...`,
//! checked in this order:
//!
//! 1. `Action` and `Version` (else 400 `InvalidAction`).
//! 2. The parameters' modelled constraints, all reported at once as 400
//!    `ValidationError` ("N validation errors detected: ..."): `RoleArn` present and
//!    20–2048 characters; `RoleSessionName` present, 2–64 characters of `[\w+=,.@-]`;
//!    `WebIdentityToken` present and 4–20,000 characters; `DurationSeconds` (default
//!    3600) an integer in 900–43,200. Then `RoleArn` must have the shape
//!    `arn:aws:iam::<12 digits>:role/<name>` (else `ValidationError`).
//! 3. The token, as STS verifies it against the account's IAM OIDC provider:
//!    `alg` one of RS256/384/512, ES256/384 (ES512, which AWS also accepts, cannot be
//!    verified by `jsonwebtoken` and is refused); `iss` equal to the provider URL
//!    (else `InvalidIdentityToken` "No OpenIDConnect provider found in your account for
//!    ..."); discovery at `iss` (its `issuer` identical), the JWKS at its `jwks_uri`
//!    (failure: 400 `IDPCommunicationError`); the key by `kid` and the signature
//!    (`InvalidIdentityToken`); integer `exp` in the future (else 400
//!    `ExpiredTokenException` "Token expired: current date/time ... must be before the
//!    expiration date/time ..."), integer `iat` and optional `nbf` not in the future,
//!    `exp - iat` within [`AwsConfig::max_assertion_lifetime_secs`] when set, `sub`
//!    present; `aud` holding one of the provider's client IDs (else
//!    `InvalidIdentityToken` "Incorrect token audience").
//! 4. The role: it must exist in the account and its trust policy must allow this
//!    (`aud`, `sub`) pair (else 403 `AccessDenied` "Not authorized to perform
//!    sts:AssumeRoleWithWebIdentity"); `DurationSeconds` must not exceed the role's
//!    maximum session duration (else `ValidationError`: AWS fails rather than clamps).
//! 5. Session tags (claim `https://aws.amazon.com/tags`: `principal_tags` of
//!    single-valued arrays, optional `transitive_tag_keys`; at most 50 tags, keys 1–128
//!    and values 0–256 characters of `[\p{L}\p{Z}\p{N}_.:/=+\-@]`, keys unique
//!    case-insensitively and not starting with `aws:`; transitive keys among them) and
//!    source identity (claim `https://aws.amazon.com/source_identity`: 2–64 characters
//!    of `[\w+=,.@-]`, not starting with `aws:`). A malformed claim is refused as
//!    `InvalidIdentityToken` (AWS's exact code for these cases is not documented); a
//!    role whose trust policy lacks `sts:TagSession` / `sts:SetSourceIdentity` refuses
//!    them with `AccessDenied`. Both are recorded in the [`AwsSession`].
//!
//! Success is the documented `AssumeRoleWithWebIdentityResponse` XML: fresh `ASIA...`
//! credentials, `Expiration` = now + duration, `AssumedRoleUser`
//! `arn:aws:sts::<account>:assumed-role/<role>/<session>`,
//! `SubjectFromWebIdentityToken`, `Audience`, `Provider` (the provider's ARN), and
//! `SourceIdentity` / `PackedPolicySize` when tags or a source identity were present,
//! and the `RequestId` in `ResponseMetadata` and in the `x-amzn-RequestId` header (where
//! the SDK reads it). Every error is the `ErrorResponse` envelope with a `RequestId` (also in the
//! `x-amzn-RequestId` header). Messages never echo the token.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jsonwebtoken::Algorithm;
use legate_core::UnixSeconds;
use serde_json::{Map, Value};

use crate::server::{
    ANY_LOOPBACK_PORT, FaultAnswer, Profile, Server, StartError, fake_common, lock, push_bounded,
};
use crate::verify::{Options, Refusal, Rules, Verifier, alg_name, fetchable_url};
use crate::wire::{Form, random_b64, random_from, request_id, rfc3339, xml_escape};

/// The audience (client ID) STS expects by default.
pub const DEFAULT_CLIENT_ID: &str = "sts.amazonaws.com";
/// The account the fake plays by default.
pub const DEFAULT_ACCOUNT_ID: &str = "123456789012";
/// The XML namespace of every STS answer.
const NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// The signing algorithms STS accepts that `jsonwebtoken` can verify.
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::ES384,
];
/// The session-tags claim.
pub const TAGS_CLAIM: &str = "https://aws.amazon.com/tags";
/// The source-identity claim.
pub const SOURCE_IDENTITY_CLAIM: &str = "https://aws.amazon.com/source_identity";

/// The account, its IAM OIDC provider and its roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    /// The IAM OIDC identity provider's URL: the only `iss` accepted, byte for byte.
    pub issuer: String,
    /// The provider's client IDs: the token's `aud` must hold one. Default
    /// `["sts.amazonaws.com"]`.
    pub client_ids: Vec<String>,
    /// The 12-digit account id. Default [`DEFAULT_ACCOUNT_ID`].
    pub account_id: String,
    /// The roles that exist.
    pub roles: Vec<AwsRole>,
    /// Refuse tokens whose `exp - iat` exceeds this (STS documents no cap; tests set
    /// Legate's own promise, 300 s). Default: none.
    pub max_assertion_lifetime_secs: Option<u64>,
}

impl AwsConfig {
    /// An account trusting `issuer` with the default client ID and no roles.
    pub fn new(issuer: impl Into<String>) -> AwsConfig {
        AwsConfig {
            issuer: issuer.into(),
            client_ids: vec![DEFAULT_CLIENT_ID.to_owned()],
            account_id: DEFAULT_ACCOUNT_ID.to_owned(),
            roles: Vec::new(),
            max_assertion_lifetime_secs: None,
        }
    }

    /// Adds a role.
    #[must_use]
    pub fn with_role(mut self, role: AwsRole) -> AwsConfig {
        self.roles.push(role);
        self
    }

    /// `arn:aws:iam::<account>:role/<name>`.
    pub fn role_arn(&self, name: &str) -> String {
        format!("arn:aws:iam::{}:role/{name}", self.account_id)
    }

    /// `arn:aws:iam::<account>:oidc-provider/<issuer without scheme>`.
    pub fn provider_arn(&self) -> String {
        let host_path = self
            .issuer
            .split_once("://")
            .map_or(self.issuer.as_str(), |(_, rest)| rest);
        format!(
            "arn:aws:iam::{}:oidc-provider/{}",
            self.account_id,
            host_path.trim_end_matches('/')
        )
    }
}

/// An IAM role and its trust policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsRole {
    /// The role name (no path).
    pub name: String,
    /// `MaxSessionDuration`, 3600–43,200 s. Default 3600.
    pub max_session_duration_secs: i64,
    /// The (`aud`, `sub`) pairs the trust policy allows for the provider
    /// (`StringEquals` on `<provider>:aud` and `<provider>:sub`).
    pub trust: Vec<AwsTrust>,
    /// Whether the trust policy allows `sts:TagSession` (session tags in the token).
    pub allow_tag_session: bool,
    /// Whether the trust policy allows `sts:SetSourceIdentity`.
    pub allow_set_source_identity: bool,
}

impl AwsRole {
    /// A role trusting nobody, with a one-hour maximum session.
    pub fn new(name: impl Into<String>) -> AwsRole {
        AwsRole {
            name: name.into(),
            max_session_duration_secs: 3600,
            trust: Vec::new(),
            allow_tag_session: false,
            allow_set_source_identity: false,
        }
    }

    /// Trusts tokens with this `aud` and `sub`.
    #[must_use]
    pub fn trusting(mut self, audience: impl Into<String>, subject: impl Into<String>) -> AwsRole {
        self.trust.push(AwsTrust {
            audience: audience.into(),
            subject: subject.into(),
        });
        self
    }

    /// Sets `MaxSessionDuration`.
    #[must_use]
    pub fn max_session_duration(mut self, secs: i64) -> AwsRole {
        self.max_session_duration_secs = secs;
        self
    }

    /// Allows `sts:TagSession` and `sts:SetSourceIdentity`.
    #[must_use]
    pub fn allow_tags_and_source_identity(mut self) -> AwsRole {
        self.allow_tag_session = true;
        self.allow_set_source_identity = true;
        self
    }
}

/// One trust-policy statement: the provider's `aud` and `sub` must equal these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsTrust {
    /// `<provider>:aud`.
    pub audience: String,
    /// `<provider>:sub`.
    pub subject: String,
}

/// A session the fake issued (kept for assertions; the last [`crate::HISTORY`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AwsSession {
    /// The request's `RoleArn`.
    pub role_arn: String,
    /// The request's `RoleSessionName`.
    pub role_session_name: String,
    /// The granted duration.
    pub duration_secs: i64,
    /// `arn:aws:sts::<account>:assumed-role/<role>/<session>`.
    pub assumed_role_arn: String,
    /// `SubjectFromWebIdentityToken`.
    pub subject: String,
    /// The `aud` that matched a client ID.
    pub audience: String,
    /// The token's `alg`.
    pub alg: String,
    /// The credentials.
    pub access_key_id: String,
    /// The secret key.
    pub secret_access_key: String,
    /// The session token.
    pub session_token: String,
    /// When they expire.
    pub expiration: UnixSeconds,
    /// The source identity from the token, if any.
    pub source_identity: Option<String>,
    /// The session tags from the token.
    pub session_tags: BTreeMap<String, String>,
    /// The transitive tag keys from the token.
    pub transitive_tag_keys: Vec<String>,
    /// Every claim of the verified token (e.g. Legate's `workload`).
    pub claims: Map<String, Value>,
}

struct AwsState {
    config: AwsConfig,
    verifier: Verifier,
    role_ids: HashMap<String, String>,
    sessions: Mutex<VecDeque<AwsSession>>,
}

/// The running fake; stops when dropped.
pub struct AwsFake {
    server: Server,
    state: Arc<AwsState>,
}

impl std::fmt::Debug for AwsFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsFake")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

fake_common!(AwsFake);

impl AwsFake {
    /// Starts the fake with the system clock.
    ///
    /// # Errors
    /// See [`start_with`](Self::start_with).
    pub async fn start(config: AwsConfig) -> Result<AwsFake, StartError> {
        AwsFake::start_with(config, Options::default()).await
    }

    /// Starts the fake on `127.0.0.1:0`.
    ///
    /// # Errors
    /// See [`start_on`](Self::start_on).
    pub async fn start_with(config: AwsConfig, options: Options) -> Result<AwsFake, StartError> {
        AwsFake::start_on(config, options, ANY_LOOPBACK_PORT).await
    }

    /// Starts the fake on `listen` (for example a fixed loopback port).
    ///
    /// # Errors
    /// When the issuer is neither `https://` nor loopback `http://`, the account id is
    /// not 12 digits, a role's maximum session is outside 3600–43,200 s, or the port
    /// cannot be bound.
    pub async fn start_on(
        config: AwsConfig,
        options: Options,
        listen: SocketAddr,
    ) -> Result<AwsFake, StartError> {
        if !fetchable_url(&config.issuer) {
            return Err(StartError::Config(format!(
                "issuer `{}` must be https, or http on loopback",
                config.issuer
            )));
        }
        if config.account_id.len() != 12 || !config.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(StartError::Config(format!(
                "account id `{}` is not 12 digits",
                config.account_id
            )));
        }
        let mut role_ids = HashMap::new();
        for role in &config.roles {
            if !(3600..=43_200).contains(&role.max_session_duration_secs) {
                return Err(StartError::Config(format!(
                    "role `{}`: MaxSessionDuration must be 3600-43200",
                    role.name
                )));
            }
            role_ids.insert(
                role.name.clone(),
                format!(
                    "AROA{}",
                    random_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 17)
                ),
            );
        }
        let state = Arc::new(AwsState {
            verifier: Verifier::new(&options)?,
            config,
            role_ids,
            sessions: Mutex::new(VecDeque::new()),
        });
        let router = Router::new()
            .route("/", post(assume_role_with_web_identity))
            .fallback(unknown_operation)
            .with_state(Arc::clone(&state));
        let profile = Profile {
            service: "aws-sts",
            idp_fault: true,
            classify: |_| "sts",
            answer: fault_answer,
        };
        let server = Server::start(router, profile, options.clock, listen).await?;
        Ok(AwsFake { server, state })
    }

    /// The configuration the fake runs with.
    pub fn config(&self) -> &AwsConfig {
        &self.state.config
    }

    /// `arn:aws:iam::<account>:role/<name>`.
    pub fn role_arn(&self, name: &str) -> String {
        self.state.config.role_arn(name)
    }

    /// The sessions issued, oldest first.
    pub fn sessions(&self) -> Vec<AwsSession> {
        lock(&self.state.sessions).iter().cloned().collect()
    }

    /// The most recent session issued.
    pub fn last_session(&self) -> Option<AwsSession> {
        lock(&self.state.sessions).back().cloned()
    }
}

/// An STS error in the query-protocol envelope.
fn sts_error(status: StatusCode, code: &str, message: &str) -> Response {
    let id = request_id();
    let kind = if status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    let body = format!(
        "<ErrorResponse xmlns=\"{NAMESPACE}\">\n  <Error>\n    <Type>{kind}</Type>\n    \
         <Code>{code}</Code>\n    <Message>{}</Message>\n  </Error>\n  \
         <RequestId>{id}</RequestId>\n</ErrorResponse>\n",
        xml_escape(message)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/xml".to_owned()),
            (header::HeaderName::from_static("x-amzn-requestid"), id),
        ],
        body,
    )
        .into_response()
}

fn fault_answer(answer: FaultAnswer, _now: UnixSeconds) -> Response {
    match answer {
        FaultAnswer::ServerError => sts_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "Service is unable to handle request.",
        ),
        FaultAnswer::Throttle => sts_error(StatusCode::BAD_REQUEST, "Throttling", "Rate exceeded"),
        FaultAnswer::IdpCommunicationError => idp_communication_error(),
    }
}

fn idp_communication_error() -> Response {
    sts_error(
        StatusCode::BAD_REQUEST,
        "IDPCommunicationError",
        "Couldn't retrieve verification key from your identity provider, please reference \
         AssumeRoleWithWebIdentity documentation for requirements",
    )
}

fn validation_error(message: &str) -> Response {
    sts_error(StatusCode::BAD_REQUEST, "ValidationError", message)
}

fn invalid_token(message: &str) -> Response {
    sts_error(StatusCode::BAD_REQUEST, "InvalidIdentityToken", message)
}

fn access_denied() -> Response {
    sts_error(
        StatusCode::FORBIDDEN,
        "AccessDenied",
        "Not authorized to perform sts:AssumeRoleWithWebIdentity",
    )
}

async fn unknown_operation() -> Response {
    sts_error(
        StatusCode::NOT_FOUND,
        "UnknownOperationException",
        "the fake serves only POST / (AssumeRoleWithWebIdentity)",
    )
}

/// `[\w+=,.@-]` with `\w` = `[A-Za-z0-9_]`.
fn session_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

/// Session-tag key and value characters: `[\p{L}\p{Z}\p{N}_.:/=+\-@]`. Control
/// characters (tab, newline: category Cc, which `char::is_whitespace` admits) are not
/// in `\p{Z}`.
fn tag_char(c: char) -> bool {
    ((c.is_alphanumeric() || c.is_whitespace()) && !c.is_control()) || "_.:/=+-@".contains(c)
}

/// Checks the modelled parameter constraints; every violation, in AWS's wording.
fn parameter_violations(form: &Form) -> Vec<String> {
    let mut errors = Vec::new();
    let mut length = |name: &str, value: Option<&str>, min: usize, max: usize, echo: bool| {
        let Some(v) = value else {
            errors.push(format!(
                "Value null at '{name}' failed to satisfy constraint: Member must not be null"
            ));
            return;
        };
        let shown = if echo {
            format!("Value '{v}'")
        } else {
            "Value".to_owned()
        };
        let n = v.chars().count();
        if n < min {
            errors.push(format!(
                "{shown} at '{name}' failed to satisfy constraint: Member must have length \
                 greater than or equal to {min}"
            ));
        } else if n > max {
            errors.push(format!(
                "{shown} at '{name}' failed to satisfy constraint: Member must have length \
                 less than or equal to {max}"
            ));
        }
    };
    length("roleArn", form.get("RoleArn"), 20, 2048, true);
    length("roleSessionName", form.get("RoleSessionName"), 2, 64, true);
    // SECURITY: the token is never echoed into an error message.
    length(
        "webIdentityToken",
        form.get("WebIdentityToken"),
        4,
        20_000,
        false,
    );
    if let Some(name) = form.get("RoleSessionName")
        && !name.chars().all(session_name_char)
    {
        errors.push(format!(
            "Value '{name}' at 'roleSessionName' failed to satisfy constraint: Member must \
             satisfy regular expression pattern: [\\w+=,.@-]*"
        ));
    }
    if let Some(d) = form.get("DurationSeconds") {
        match d.parse::<i64>() {
            Ok(n) if n < 900 => errors.push(format!(
                "Value '{n}' at 'durationSeconds' failed to satisfy constraint: Member must \
                 have value greater than or equal to 900"
            )),
            Ok(n) if n > 43_200 => errors.push(format!(
                "Value '{n}' at 'durationSeconds' failed to satisfy constraint: Member must \
                 have value less than or equal to 43200"
            )),
            Ok(_) => {}
            Err(_) => errors.push(format!(
                "Value '{d}' at 'durationSeconds' failed to satisfy constraint: Member must \
                 be an integer"
            )),
        }
    }
    errors
}

/// `arn:aws:iam::<account>:role/[path/]<name>` → (account, name).
fn parse_role_arn(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let path = resource.strip_prefix("role/")?;
    let name = path.rsplit('/').next()?;
    let valid_account = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    (valid_account && !name.is_empty()).then_some((account, name))
}

/// The session tags and transitive keys of a tags claim.
type Tags = (BTreeMap<String, String>, Vec<String>);

fn parse_tags(claim: &Value) -> Result<Tags, String> {
    let object = claim
        .as_object()
        .ok_or("the session tags claim is not a JSON object")?;
    let principal = match object.get("principal_tags") {
        None => return Err("the session tags claim has no principal_tags".into()),
        Some(Value::Object(map)) => map,
        Some(_) => return Err("principal_tags is not a JSON object".into()),
    };
    if principal.len() > 50 {
        return Err(format!(
            "{} session tags exceed the limit of 50",
            principal.len()
        ));
    }
    let mut tags = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for (key, value) in principal {
        let n = key.chars().count();
        if !(1..=128).contains(&n) || !key.chars().all(tag_char) {
            return Err(format!(
                "session tag key `{key}` must be 1-128 characters of [\\p{{L}}\\p{{Z}}\\p{{N}}_.:/=+\\-@]"
            ));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(format!(
                "session tag key `{key}` uses the reserved prefix aws:"
            ));
        }
        if !seen.insert(key.to_lowercase()) {
            return Err(format!(
                "session tag key `{key}` is repeated (keys are case-insensitive)"
            ));
        }
        let value = match value {
            Value::Array(items) if items.len() == 1 => items
                .first()
                .and_then(Value::as_str)
                .ok_or_else(|| format!("session tag `{key}` has a value that is not a string"))?,
            _ => {
                return Err(format!(
                    "session tag `{key}` must be an array of exactly one string"
                ));
            }
        };
        if value.chars().count() > 256 || !value.chars().all(tag_char) {
            return Err(format!(
                "session tag `{key}` value must be 0-256 characters of [\\p{{L}}\\p{{Z}}\\p{{N}}_.:/=+\\-@]"
            ));
        }
        tags.insert(key.clone(), value.to_owned());
    }
    let transitive = match object.get("transitive_tag_keys") {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            let mut keys = Vec::new();
            for item in items {
                let key = item
                    .as_str()
                    .ok_or("transitive_tag_keys holds a non-string")?;
                if !tags.contains_key(key) {
                    return Err(format!("transitive tag key `{key}` is not a session tag"));
                }
                keys.push(key.to_owned());
            }
            keys
        }
        Some(_) => return Err("transitive_tag_keys is not an array".into()),
    };
    Ok((tags, transitive))
}

fn parse_source_identity(claim: &Value) -> Result<String, String> {
    let value = claim
        .as_str()
        .ok_or("the source identity claim is not a string")?;
    let n = value.chars().count();
    if !(2..=64).contains(&n) || !value.chars().all(session_name_char) {
        return Err(format!(
            "source identity `{value}` must be 2-64 characters of [\\w+=,.@-]"
        ));
    }
    if value.to_ascii_lowercase().starts_with("aws:") {
        return Err(format!(
            "source identity `{value}` uses the reserved prefix aws:"
        ));
    }
    Ok(value.to_owned())
}

async fn assume_role_with_web_identity(
    State(state): State<Arc<AwsState>>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let config = &state.config;

    // 1. The operation.
    let action = form.get("Action").unwrap_or_default();
    let version = form.get("Version").unwrap_or_default();
    if action != "AssumeRoleWithWebIdentity" || version != "2011-06-15" {
        return sts_error(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            &format!("Could not find operation {action} for version {version}"),
        );
    }

    // 2. The parameters.
    let violations = parameter_violations(&form);
    if !violations.is_empty() {
        let plural = if violations.len() == 1 { "" } else { "s" };
        return validation_error(&format!(
            "{} validation error{plural} detected: {}",
            violations.len(),
            violations.join("; ")
        ));
    }
    let (Some(role_arn), Some(session_name), Some(token)) = (
        form.get("RoleArn"),
        form.get("RoleSessionName"),
        form.get("WebIdentityToken"),
    ) else {
        return validation_error("1 validation error detected: a required parameter is missing");
    };
    let duration = form
        .get("DurationSeconds")
        .and_then(|d| d.parse::<i64>().ok())
        .unwrap_or(3600);
    let Some((account, role_name)) = parse_role_arn(role_arn) else {
        return validation_error(&format!("Request ARN is invalid: `{role_arn}`"));
    };

    // 3. The token, against the account's OIDC provider.
    let rules = Rules {
        algorithms: ALGORITHMS,
        max_lifetime: config.max_assertion_lifetime_secs,
    };
    let assertion = match state
        .verifier
        .verify(token, &config.issuer, &config.client_ids, rules)
        .await
    {
        Ok(a) => a,
        Err(refusal) => return refusal_answer(refusal),
    };
    let Some(audience) = assertion
        .aud
        .iter()
        .find(|a| config.client_ids.contains(a))
        .cloned()
    else {
        return invalid_token("Incorrect token audience");
    };

    // 4. The role and its trust policy.
    let role = config.roles.iter().find(|r| r.name == role_name);
    let Some(role) = role.filter(|_| account == config.account_id) else {
        return access_denied();
    };
    let trusted = role
        .trust
        .iter()
        .any(|t| t.subject == assertion.sub && assertion.aud.contains(&t.audience));
    if !trusted {
        return access_denied();
    }
    if duration > role.max_session_duration_secs {
        return validation_error(
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        );
    }

    // 5. Session tags and source identity.
    let (session_tags, transitive_tag_keys) = match assertion.claims.get(TAGS_CLAIM) {
        None => (BTreeMap::new(), Vec::new()),
        Some(claim) => match parse_tags(claim) {
            Ok(tags) if role.allow_tag_session => tags,
            Ok(_) => return access_denied(),
            Err(why) => return invalid_token(&why),
        },
    };
    let source_identity = match assertion.claims.get(SOURCE_IDENTITY_CLAIM) {
        None => None,
        Some(claim) => match parse_source_identity(claim) {
            Ok(s) if role.allow_set_source_identity => Some(s),
            Ok(_) => return access_denied(),
            Err(why) => return invalid_token(&why),
        },
    };

    let now = state.verifier.now();
    let session = AwsSession {
        role_arn: role_arn.to_owned(),
        role_session_name: session_name.to_owned(),
        duration_secs: duration,
        assumed_role_arn: format!(
            "arn:aws:sts::{}:assumed-role/{}/{session_name}",
            config.account_id, role.name
        ),
        subject: assertion.sub.clone(),
        audience,
        alg: alg_name(assertion.alg).to_owned(),
        access_key_id: format!(
            "ASIA{}",
            random_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
        ),
        secret_access_key: random_from(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            40,
        ),
        session_token: format!("IQoJb3JpZ2luX2Vj{}", random_b64::<192>()),
        expiration: now.saturating_add(duration),
        source_identity,
        session_tags,
        transitive_tag_keys,
        claims: assertion.claims,
    };
    let role_id = state.role_ids.get(&role.name).cloned().unwrap_or_default();
    // STS sends the request id in the `x-amzn-RequestId` header of every answer, and
    // again in the body's `ResponseMetadata` of a success (the SDK reads the header).
    let id = request_id();
    let body = success_xml(&session, &role_id, &config.provider_arn(), &id);
    push_bounded(&state.sessions, session);
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/xml".to_owned()),
            (header::HeaderName::from_static("x-amzn-requestid"), id),
        ],
        body,
    )
        .into_response()
}

fn refusal_answer(refusal: Refusal) -> Response {
    match refusal {
        Refusal::UntrustedIssuer(iss) => invalid_token(&format!(
            "No OpenIDConnect provider found in your account for {iss}"
        )),
        Refusal::IssuerUnreachable(_) => idp_communication_error(),
        Refusal::Expired { exp, now } => sts_error(
            StatusCode::BAD_REQUEST,
            "ExpiredTokenException",
            &format!(
                "Token expired: current date/time {now} must be before the expiration \
                 date/time {exp}"
            ),
        ),
        Refusal::WrongAudience(_) => invalid_token("Incorrect token audience"),
        Refusal::UnsupportedAlg(alg) => invalid_token(&format!(
            "The token's signing algorithm `{alg}` is not supported"
        )),
        Refusal::UnknownKey(_) | Refusal::BadSignature => {
            invalid_token("Couldn't verify the signature of the web identity token")
        }
        Refusal::NotYetValid { from, now } => invalid_token(&format!(
            "Token is not yet valid: current date/time {now} is before {from}"
        )),
        Refusal::LifetimeTooLong { lifetime, max } => {
            invalid_token(&format!("Token lifetime {lifetime}s exceeds {max}s"))
        }
        Refusal::MissingClaim(claim) => {
            invalid_token(&format!("The web identity token has no `{claim}` claim"))
        }
        Refusal::Malformed(why) => invalid_token(&format!("Invalid web identity token: {why}")),
    }
}

fn success_xml(session: &AwsSession, role_id: &str, provider: &str, request_id: &str) -> String {
    let mut optional = String::new();
    if let Some(source) = &session.source_identity {
        optional.push_str(&format!(
            "    <SourceIdentity>{}</SourceIdentity>\n",
            xml_escape(source)
        ));
    }
    optional.push_str(&format!(
        "    <Provider>{}</Provider>\n",
        xml_escape(provider)
    ));
    if !session.session_tags.is_empty() || session.source_identity.is_some() {
        // The share of the packed-size limit used; 2 % per tag is the fake's stand-in.
        let size = (session.session_tags.len() * 2).clamp(1, 100);
        optional.push_str(&format!(
            "    <PackedPolicySize>{size}</PackedPolicySize>\n"
        ));
    }
    format!(
        "<AssumeRoleWithWebIdentityResponse xmlns=\"{NAMESPACE}\">\n  \
         <AssumeRoleWithWebIdentityResult>\n    \
         <SubjectFromWebIdentityToken>{subject}</SubjectFromWebIdentityToken>\n    \
         <Audience>{audience}</Audience>\n    \
         <AssumedRoleUser>\n      <Arn>{arn}</Arn>\n      \
         <AssumedRoleId>{role_id}:{session_name}</AssumedRoleId>\n    </AssumedRoleUser>\n    \
         <Credentials>\n      <AccessKeyId>{akid}</AccessKeyId>\n      \
         <SecretAccessKey>{secret}</SecretAccessKey>\n      \
         <SessionToken>{token}</SessionToken>\n      \
         <Expiration>{expiration}</Expiration>\n    </Credentials>\n\
         {optional}  </AssumeRoleWithWebIdentityResult>\n  \
         <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n\
         </AssumeRoleWithWebIdentityResponse>\n",
        subject = xml_escape(&session.subject),
        audience = xml_escape(&session.audience),
        arn = xml_escape(&session.assumed_role_arn),
        session_name = xml_escape(&session.role_session_name),
        akid = session.access_key_id,
        secret = xml_escape(&session.secret_access_key),
        token = xml_escape(&session.session_token),
        expiration = rfc3339(session.expiration),
        request_id = xml_escape(request_id),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testutil::{T0, post_form, setup, unsigned};
    use crate::{Fault, FaultError, TestIssuer};

    const SUB: &str = "target/aws-deploy";

    async fn fake(issuer: &TestIssuer, options: &Options) -> AwsFake {
        let config = AwsConfig::new(issuer.url())
            .with_role(AwsRole::new("deploy").trusting(DEFAULT_CLIENT_ID, SUB))
            .with_role(
                AwsRole::new("tagged")
                    .trusting(DEFAULT_CLIENT_ID, SUB)
                    .allow_tags_and_source_identity()
                    .max_session_duration(43_200),
            );
        AwsFake::start_with(config, options.clone()).await.unwrap()
    }

    /// Calls the fake with `token` for role `role`, session `session`, `duration`.
    async fn assume(
        fake: &AwsFake,
        role: &str,
        session: &str,
        duration: Option<&str>,
        token: &str,
    ) -> (u16, String) {
        let arn = fake.role_arn(role);
        let mut form = vec![
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", arn.as_str()),
            ("RoleSessionName", session),
            ("WebIdentityToken", token),
        ];
        if let Some(d) = duration {
            form.push(("DurationSeconds", d));
        }
        post_form(&format!("{}/", fake.url()), &form).await
    }

    fn code(body: &str) -> &str {
        body.split("<Code>")
            .nth(1)
            .and_then(|rest| rest.split("</Code>").next())
            .unwrap_or_else(|| panic!("no <Code> in {body}"))
    }

    fn token(issuer: &TestIssuer, alg: &str, sub: &str, aud: &str) -> String {
        let mut claims = issuer.claims(sub, aud, 300);
        claims["workload"] = json!("ci:repo:acme/app");
        issuer.sign(alg, &claims).unwrap()
    }

    #[tokio::test]
    async fn issues_documented_credentials_for_the_trusted_subject() {
        let (_clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        for alg in ["ES256", "RS256", "RS512"] {
            let (status, body) = assume(
                &fake,
                "deploy",
                "ci-run",
                Some("900"),
                &token(&issuer, alg, SUB, DEFAULT_CLIENT_ID),
            )
            .await;
            assert_eq!(status, 200, "{alg}: {body}");
            assert!(body.starts_with(
                "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
            ));
            assert!(
                body.contains("<Arn>arn:aws:sts::123456789012:assumed-role/deploy/ci-run</Arn>")
            );
            assert!(body.contains("<AccessKeyId>ASIA"));
            assert!(body.contains("<Expiration>2026-01-15T08:45:00Z</Expiration>"));
            assert!(body.contains(&format!(
                "<SubjectFromWebIdentityToken>{SUB}</SubjectFromWebIdentityToken>"
            )));
            assert!(body.contains("<Audience>sts.amazonaws.com</Audience>"));
            let provider = format!(
                "<Provider>arn:aws:iam::123456789012:oidc-provider/{}</Provider>",
                issuer.url().trim_start_matches("http://")
            );
            assert!(body.contains(&provider), "{body}");
            assert!(body.contains("<RequestId>"));
            assert!(!body.contains("SourceIdentity"));

            let session = fake.last_session().unwrap();
            assert_eq!(session.alg, alg);
            assert_eq!(session.duration_secs, 900);
            assert_eq!(session.expiration, T0 + 900);
            assert_eq!(session.claims["workload"], "ci:repo:acme/app");
            assert!(body.contains(&format!(
                "<AccessKeyId>{}</AccessKeyId>",
                session.access_key_id
            )));
        }
        assert_eq!(fake.stats().succeeded, 3);
        assert_eq!(
            fake.last_request()
                .unwrap()
                .form_value("RoleSessionName")
                .as_deref(),
            Some("ci-run")
        );
    }

    /// Attack: a token minted for another cloud (another `aud`) replayed at STS.
    #[tokio::test]
    async fn refuses_a_token_for_another_audience() {
        let (_clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let wrong = token(&issuer, "ES256", SUB, "api://AzureADTokenExchange");
        let (status, body) = assume(&fake, "deploy", "s1", None, &wrong).await;
        assert_eq!((status, code(&body)), (400, "InvalidIdentityToken"));
        assert!(body.contains("Incorrect token audience"));
        assert!(fake.last_session().is_none());
    }

    /// Attack: one target's assertion used to assume another target's role.
    #[tokio::test]
    async fn refuses_a_subject_the_trust_policy_does_not_name() {
        let (_clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let other = token(&issuer, "ES256", "target/other", DEFAULT_CLIENT_ID);
        let (status, body) = assume(&fake, "deploy", "s1", None, &other).await;
        assert_eq!((status, code(&body)), (403, "AccessDenied"));
        assert!(body.contains("Not authorized to perform sts:AssumeRoleWithWebIdentity"));
    }

    #[tokio::test]
    async fn refuses_an_unknown_role_as_access_denied() {
        let (_clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let good = token(&issuer, "ES256", SUB, DEFAULT_CLIENT_ID);
        let (status, body) = assume(&fake, "nobody", "s1", None, &good).await;
        assert_eq!((status, code(&body)), (403, "AccessDenied"));
    }

    /// Attack: an old assertion replayed after it expired.
    #[tokio::test]
    async fn refuses_an_expired_token_with_expired_token_exception() {
        let (clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let old = token(&issuer, "ES256", SUB, DEFAULT_CLIENT_ID);
        clock.advance(300);
        let (status, body) = assume(&fake, "deploy", "s1", None, &old).await;
        assert_eq!((status, code(&body)), (400, "ExpiredTokenException"));
        assert!(body.contains(&format!(
            "Token expired: current date/time {} must be before the expiration date/time {}",
            T0 + 300,
            T0 + 300
        )));
    }

    /// Attack: a token signed by a key the issuer does not publish.
    #[tokio::test]
    async fn refuses_an_unknown_kid_and_a_forged_signature() {
        let (clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let claims = issuer.claims(SUB, DEFAULT_CLIENT_ID, 300);
        let unknown = issuer
            .sign_with_header(&json!({"alg": "ES256", "kid": "not-published"}), &claims)
            .unwrap();
        let (status, body) = assume(&fake, "deploy", "s1", None, &unknown).await;
        assert_eq!((status, code(&body)), (400, "InvalidIdentityToken"));

        // Same kid and iss, another key: the attacker's own issuer.
        let attacker = TestIssuer::start(clock.clone()).await.unwrap();
        let forged = attacker.sign("ES256", &claims).unwrap();
        let (status, body) = assume(&fake, "deploy", "s1", None, &forged).await;
        assert_eq!((status, code(&body)), (400, "InvalidIdentityToken"));
        assert!(fake.sessions().is_empty());
    }

    /// Attack: a token from an issuer the account has no OIDC provider for.
    #[tokio::test]
    async fn refuses_an_untrusted_issuer_before_fetching_anything() {
        let (clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let stranger = TestIssuer::start(clock.clone()).await.unwrap();
        let foreign = token(&stranger, "ES256", SUB, DEFAULT_CLIENT_ID);
        let (status, body) = assume(&fake, "deploy", "s1", None, &foreign).await;
        assert_eq!((status, code(&body)), (400, "InvalidIdentityToken"));
        assert!(body.contains(&format!(
            "No OpenIDConnect provider found in your account for {}",
            stranger.url()
        )));
    }

    /// Attack: algorithm confusion (`none`, HMAC) and algorithms STS does not accept.
    #[tokio::test]
    async fn refuses_algorithms_sts_does_not_accept() {
        let (_clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let claims = issuer.claims(SUB, DEFAULT_CLIENT_ID, 300);
        for alg in ["none", "HS256", "PS256"] {
            let token = unsigned(&json!({"alg": alg, "kid": "rsa-1"}), &claims);
            let (status, body) = assume(&fake, "deploy", "s1", None, &token).await;
            assert_eq!(
                (status, code(&body)),
                (400, "InvalidIdentityToken"),
                "{alg}"
            );
        }
    }

    #[tokio::test]
    async fn refuses_a_token_living_longer_than_the_configured_cap() {
        let (_clock, options, issuer) = setup().await;
        let mut config = AwsConfig::new(issuer.url())
            .with_role(AwsRole::new("deploy").trusting(DEFAULT_CLIENT_ID, SUB));
        config.max_assertion_lifetime_secs = Some(300);
        let fake = AwsFake::start_with(config, options).await.unwrap();
        let long = issuer
            .sign("ES256", &issuer.claims(SUB, DEFAULT_CLIENT_ID, 301))
            .unwrap();
        let (status, body) = assume(&fake, "deploy", "s1", None, &long).await;
        assert_eq!((status, code(&body)), (400, "InvalidIdentityToken"));
        let ok = token(&issuer, "ES256", SUB, DEFAULT_CLIENT_ID);
        assert_eq!(assume(&fake, "deploy", "s1", None, &ok).await.0, 200);
    }

    #[tokio::test]
    async fn refuses_session_names_outside_the_modelled_pattern() {
        let (_clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let good = token(&issuer, "ES256", SUB, DEFAULT_CLIENT_ID);
        let long = "a".repeat(65);
        for name in ["x", "has space", "slash/no", "ünicode", long.as_str()] {
            let (status, body) = assume(&fake, "deploy", name, None, &good).await;
            assert_eq!((status, code(&body)), (400, "ValidationError"), "{name:?}");
            assert!(body.contains("roleSessionName"), "{body}");
        }
        let (status, _) = assume(&fake, "deploy", "ok_+=,.@-64", None, &good).await;
        assert_eq!(status, 200);
    }

    /// AWS fails rather than clamps a duration outside 900-43200 or above the role's
    /// maximum; an adapter that relies on clamping breaks here.
    #[tokio::test]
    async fn refuses_durations_out_of_range_or_above_the_role_maximum() {
        let (_clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let good = token(&issuer, "ES256", SUB, DEFAULT_CLIENT_ID);
        for d in ["899", "43201", "ten"] {
            let (status, body) = assume(&fake, "deploy", "s1", Some(d), &good).await;
            assert_eq!((status, code(&body)), (400, "ValidationError"), "{d}");
            assert!(body.contains("durationSeconds"), "{body}");
        }
        let (status, body) = assume(&fake, "deploy", "s1", Some("3601"), &good).await;
        assert_eq!((status, code(&body)), (400, "ValidationError"));
        assert!(body.contains("exceeds the MaxSessionDuration"));
        assert_eq!(
            assume(&fake, "tagged", "s1", Some("43200"), &good).await.0,
            200
        );
    }

    #[tokio::test]
    async fn reports_every_parameter_violation_and_never_echoes_the_token() {
        let (_clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let form = [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", "arn:short"),
            ("RoleSessionName", "x"),
            ("WebIdentityToken", "abc"),
        ];
        let (status, body) = post_form(&format!("{}/", fake.url()), &form).await;
        assert_eq!((status, code(&body)), (400, "ValidationError"));
        assert!(body.contains("3 validation errors detected"), "{body}");
        assert!(!body.contains("abc"), "{body}");
        let (status, body) = post_form(
            &format!("{}/", fake.url()),
            &[("Action", "AssumeRole"), ("Version", "2011-06-15")],
        )
        .await;
        assert_eq!((status, code(&body)), (400, "InvalidAction"));
    }

    #[tokio::test]
    async fn session_tags_and_source_identity_are_validated_and_recorded() {
        let (_clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let with = |extra: Value| {
            let mut claims = issuer.claims(SUB, DEFAULT_CLIENT_ID, 300);
            for (k, v) in extra.as_object().unwrap() {
                claims[k] = v.clone();
            }
            issuer.sign("ES256", &claims).unwrap()
        };
        let tagged = with(json!({
            TAGS_CLAIM: {"principal_tags": {"Team": ["eng"], "Project": ["Automation"]},
                         "transitive_tag_keys": ["Project"]},
            SOURCE_IDENTITY_CLAIM: "ci:acme",
        }));
        // Needs a source identity in [\w+=,.@-]: `:` is not allowed.
        let (status, body) = assume(&fake, "tagged", "s1", None, &tagged).await;
        assert_eq!((status, code(&body)), (400, "InvalidIdentityToken"));

        let tagged = with(json!({
            TAGS_CLAIM: {"principal_tags": {"Team": ["eng"], "Project": ["Automation"]},
                         "transitive_tag_keys": ["Project"]},
            SOURCE_IDENTITY_CLAIM: "ci@acme",
        }));
        let (status, body) = assume(&fake, "tagged", "s1", None, &tagged).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("<SourceIdentity>ci@acme</SourceIdentity>"));
        assert!(body.contains("<PackedPolicySize>"));
        let session = fake.last_session().unwrap();
        assert_eq!(session.session_tags["Team"], "eng");
        assert_eq!(session.transitive_tag_keys, vec!["Project".to_owned()]);
        assert_eq!(session.source_identity.as_deref(), Some("ci@acme"));

        // A role whose trust policy lacks sts:TagSession.
        let (status, body) = assume(&fake, "deploy", "s1", None, &tagged).await;
        assert_eq!((status, code(&body)), (403, "AccessDenied"));

        let many: Map<String, Value> = (0..51).map(|i| (format!("k{i}"), json!(["v"]))).collect();
        let refused = [
            json!({TAGS_CLAIM: {"principal_tags": many}}),
            json!({TAGS_CLAIM: {"principal_tags": {"aws:x": ["v"]}}}),
            json!({TAGS_CLAIM: {"principal_tags": {"k".repeat(129): ["v"]}}}),
            json!({TAGS_CLAIM: {"principal_tags": {"k": ["v".repeat(257)]}}}),
            json!({TAGS_CLAIM: {"principal_tags": {"k": "not-an-array"}}}),
            json!({TAGS_CLAIM: {"principal_tags": {"k": ["v"]}, "transitive_tag_keys": ["j"]}}),
            json!({TAGS_CLAIM: {"principal_tags": {"K": ["v"], "k": ["w"]}}}),
            json!({TAGS_CLAIM: {"principal_tags": {"k": ["tab\tvalue"]}}}),
            json!({TAGS_CLAIM: {"principal_tags": {"k": ["new\nline"]}}}),
            json!({TAGS_CLAIM: {"principal_tags": {"k": ["semi;colon"]}}}),
            json!({SOURCE_IDENTITY_CLAIM: "aws:me"}),
            json!({SOURCE_IDENTITY_CLAIM: "x"}),
        ];
        for extra in refused {
            let (status, body) = assume(&fake, "tagged", "s1", None, &with(extra.clone())).await;
            assert_eq!(
                (status, code(&body)),
                (400, "InvalidIdentityToken"),
                "{extra}"
            );
        }
    }

    #[tokio::test]
    async fn an_unreachable_issuer_is_an_idp_communication_error() {
        let (clock, options, _issuer) = setup().await;
        // A port nobody listens on: bind, read it, release it.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let config = AwsConfig::new(&dead)
            .with_role(AwsRole::new("deploy").trusting(DEFAULT_CLIENT_ID, SUB));
        let fake = AwsFake::start_with(config, options).await.unwrap();
        let signer = TestIssuer::start(clock).await.unwrap();
        let mut claims = signer.claims(SUB, DEFAULT_CLIENT_ID, 300);
        claims["iss"] = json!(dead);
        let token = signer.sign("ES256", &claims).unwrap();
        let (status, body) = assume(&fake, "deploy", "s1", None, &token).await;
        assert_eq!((status, code(&body)), (400, "IDPCommunicationError"));
    }

    #[tokio::test]
    async fn counted_faults_answer_n_times_then_the_service_resumes() {
        let (_clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let good = token(&issuer, "ES256", SUB, DEFAULT_CLIENT_ID);
        let cases = [
            (Fault::Throttle(2), 400, "Throttling"),
            (Fault::ServerErrorThen(2), 503, "ServiceUnavailable"),
            (
                Fault::IdpCommunicationError(2),
                400,
                "IDPCommunicationError",
            ),
        ];
        for (fault, status, error) in cases {
            fake.set_fault(fault).await.unwrap();
            for _ in 0..2 {
                let (s, body) = assume(&fake, "deploy", "s1", None, &good).await;
                assert_eq!((s, code(&body)), (status, error), "{fault:?}");
                assert!(body.contains("<RequestId>"));
            }
            assert_eq!(fake.fault(), Fault::None);
            assert_eq!(assume(&fake, "deploy", "s1", None, &good).await.0, 200);
        }
        let stats = fake.stats();
        assert_eq!((stats.requests, stats.faulted, stats.succeeded), (9, 6, 3));
    }

    #[tokio::test]
    async fn down_refuses_connections_until_lifted_on_the_same_url() {
        let (_clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        let good = token(&issuer, "ES256", SUB, DEFAULT_CLIENT_ID);
        let client = crate::testutil::http();
        // A pooled keep-alive connection must be cut too.
        let url = format!("{}/", fake.url());
        assert!(client.post(&url).send().await.is_ok());
        fake.set_fault(Fault::Down).await.unwrap();
        let err = client.post(&url).send().await.unwrap_err();
        assert!(err.is_connect() || err.is_request(), "{err:?}");
        let err = crate::testutil::http().post(&url).send().await.unwrap_err();
        assert!(err.is_connect(), "{err:?}");
        let before = fake.stats().requests;
        fake.set_fault(Fault::None).await.unwrap();
        assert_eq!(assume(&fake, "deploy", "s1", None, &good).await.0, 200);
        assert_eq!(fake.stats().requests, before + 1);
    }

    #[tokio::test]
    async fn slow_holds_the_answer_past_a_client_timeout() {
        let (_clock, options, issuer) = setup().await;
        let fake = fake(&issuer, &options).await;
        fake.set_fault(Fault::Slow(std::time::Duration::from_secs(60)))
            .await
            .unwrap();
        let err = crate::testutil::http()
            .post(format!("{}/", fake.url()))
            .timeout(std::time::Duration::from_millis(200))
            .send()
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        fake.set_fault(Fault::None).await.unwrap();
        let good = token(&issuer, "ES256", SUB, DEFAULT_CLIENT_ID);
        assert_eq!(assume(&fake, "deploy", "s1", None, &good).await.0, 200);
    }

    #[tokio::test]
    async fn start_refuses_a_plain_http_issuer_off_loopback() {
        let err = AwsFake::start(AwsConfig::new("http://issuer.example.com"))
            .await
            .unwrap_err();
        assert!(matches!(err, StartError::Config(_)), "{err}");
        let _ = FaultError::Stopped; // the type is part of the API
    }
}
