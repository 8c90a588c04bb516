//! Legate's target adapters: turn a verified, policy-approved exchange into a credential.
//!
//! What it does: defines [`Target`] (a named destination with a kind, an audience, a
//! lifetime cap, labels and, for cloud kinds, the cloud's settings), the
//! [`CredentialProvider`] trait every kind implements, and one provider per kind:
//! - [`TargetKind::Jwt`] ([`JwtProvider`]): a Legate-signed JWT for a downstream audience;
//! - [`TargetKind::Aws`] ([`AwsProvider`]): `sts:AssumeRoleWithWebIdentity` through
//!   `aws-sdk-sts`, answering with session credentials;
//! - [`TargetKind::Gcp`] ([`GcpProvider`]): Google STS token exchange, then optionally
//!   `generateAccessToken` for a service account, answering with an access token;
//! - [`TargetKind::Azure`] ([`AzureProvider`]): the Entra v2 token endpoint with a
//!   federated client assertion, answering with an access token.
//!
//! For a cloud kind Legate mints its own short-lived assertion (`sub` =
//! `target/<target name>`, lifetime at most five minutes, a `workload` claim for
//! attribution) and hands it to the cloud's token service. The [`CredentialCache`] wraps
//! the cloud providers so identical requests share one cloud credential while it has life
//! left.
//!
//! What it does not do: no verification of upstream tokens and no policy (the server runs
//! both first, and calls the cache after the decision). Grant shaping ([`Shaping`]: AWS
//! session tags and source identity, a `jwt` target's copied claims) reads verified
//! claims the server hands over; it decides nothing about who may exchange.
//!
//! SECURITY: every credential and assertion travels in [`Secret`]; `Debug` of a
//! [`Credential`] never shows one. What a cloud says in an error is untrusted: codes,
//! messages and request ids are escaped and bounded before they reach an error or a log.
//!
//! Layout: this file (types and the trait); `shape` (grant shaping); `jwt`; `aws`, `gcp`,
//! `azure` (one module per cloud); `http` (the shared HTTPS client, endpoint rules, timeouts and retries);
//! `cache` ([`CredentialCache`]).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use legate_core::{Secret, UnixSeconds};
use legate_issuer::{AssertionRequest, Issuer, MAX_ASSERTION_LIFETIME_SECS, SigningAlg};
use serde_json::{Value, json};

mod aws;
mod azure;
mod cache;
mod gcp;
mod http;
mod jwt;
mod shape;

#[cfg(test)]
mod testserver;

#[cfg(test)]
pub(crate) mod fixtures {
    //! Shared test fixtures: an issuer with an ES256 and an RS256 key, requests, and a
    //! decoder for minted assertions.
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        reason = "test fixtures"
    )]

    use std::collections::BTreeMap;
    use std::sync::Arc;

    use legate_issuer::{Issuer, KeyRing, SigningAlg, SigningKey};
    use serde_json::Value;

    use crate::{CallPolicy, CloudTarget, Grant, IssueRequest, Target};

    pub(crate) const NOW: i64 = 1_767_225_600;
    pub(crate) const ISSUER: &str = "https://legate.example.com";

    pub(crate) fn issuer() -> Arc<Issuer> {
        let ring = KeyRing::from_keys(vec![
            SigningKey::generate(SigningAlg::Es256, Some("ec".into())).unwrap(),
            SigningKey::generate(SigningAlg::Rs256, Some("rsa".into())).unwrap(),
        ])
        .unwrap();
        Arc::new(Issuer::new(ISSUER, ring).unwrap())
    }

    pub(crate) fn target(name: &str, cloud: CloudTarget) -> Target {
        Target::cloud(name, cloud, 3600, 900, BTreeMap::new())
    }

    pub(crate) fn request(target: &Target, lifetime_secs: u64) -> IssueRequest<'_> {
        IssueRequest {
            target,
            subject: "github:repo:org/repo:ref:refs/heads/main".into(),
            workload: "github:repo:org/repo:ref:refs/heads/main".into(),
            trust: "github",
            upstream_issuer: "https://token.actions.githubusercontent.com",
            upstream_subject: "repo:org/repo:ref:refs/heads/main",
            lifetime_secs,
            grant: Grant::default(),
            request_id: "req-1",
        }
    }

    /// A policy with fast backoff and a `timeout`-second deadline.
    pub(crate) fn fast_policy(timeout_secs: u64) -> CallPolicy {
        CallPolicy {
            backoff_base: std::time::Duration::from_millis(5),
            backoff_cap: std::time::Duration::from_millis(20),
            ..CallPolicy::with_timeout_secs(timeout_secs)
        }
    }

    /// The header and claims of a compact JWS (unverified: the issuer tests verify).
    pub(crate) fn decode_jwt(token: &str) -> (Value, Value) {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let part = |i: usize| -> Value {
            serde_json::from_slice(&legate_core::b64::decode(parts[i]).unwrap()).unwrap()
        };
        (part(0), part(1))
    }

    /// Checks the common shape of a cloud assertion and returns its claims.
    pub(crate) fn check_assertion(token: &str, target: &str, aud: &str, alg: &str) -> Value {
        let (header, claims) = decode_jwt(token);
        assert_eq!(header["alg"], alg);
        assert_eq!(header["typ"], "JWT");
        assert_eq!(claims["iss"], ISSUER);
        assert_eq!(claims["sub"], format!("target/{target}"));
        assert_eq!(claims["aud"], aud);
        assert_eq!(
            claims["workload"],
            "github:repo:org/repo:ref:refs/heads/main"
        );
        let iat = claims["iat"].as_i64().unwrap();
        let exp = claims["exp"].as_i64().unwrap();
        assert_eq!(claims["nbf"].as_i64().unwrap(), iat);
        assert!(
            exp > iat && exp - iat <= 300,
            "assertion lives {}s",
            exp - iat
        );
        assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
        claims
    }
}

pub use aws::{
    AWS_DEFAULT_AUDIENCE, AWS_DEFAULT_REGION, AWS_MAX_DURATION_SECS, AWS_MIN_DURATION_SECS,
    AwsProvider, session_name,
};
pub use azure::{AZURE_ASSERTION_AUDIENCE, AZURE_DEFAULT_AUTHORITY, AzureProvider};
pub use cache::{
    CLOCK_SKEW_ALLOWANCE_SECS, CacheSettings, CacheStats, CachedProvider, CredentialCache,
};
pub use gcp::{
    GCP_DEFAULT_IAM_ENDPOINT, GCP_DEFAULT_SCOPE, GCP_DEFAULT_STS_ENDPOINT, GcpProvider,
    google_subject_fits,
};
pub use http::{CallPolicy, ClientBuildError, EndpointError, check_endpoint};
pub use jwt::JwtProvider;
pub use shape::{
    AWS_MAX_SESSION_TAGS, AWS_MAX_TAG_KEY_CHARS, AWS_MAX_TAG_VALUE_CHARS,
    AWS_SOURCE_IDENTITY_CHARS, AWS_SOURCE_IDENTITY_CLAIM, AWS_TAGS_CLAIM, Grant,
    MAX_COPIED_CLAIM_BYTES, MAX_COPY_CLAIMS, ShapeError, Shaping, ShapingConfigError,
    UNCOPYABLE_CLAIMS, is_source_identity, is_tag_value,
};

/// A boxed future, so that providers can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The `issued_token_type` of an AWS credential answer (the issue's private URN).
pub const AWS_CREDENTIALS_TOKEN_TYPE: &str = "urn:legate:params:oauth:token-type:aws-credentials";
/// The `issued_token_type` of a cloud access token answer (RFC 8693 §3).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The longest `workload` value, in bytes, before it is cut (with `…`).
pub const MAX_WORKLOAD_BYTES: usize = 256;

/// The kinds of target Legate issues credentials for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// A Legate-signed JWT whose `aud` is the target's audience.
    Jwt,
    /// AWS session credentials from `sts:AssumeRoleWithWebIdentity`.
    Aws,
    /// A Google Cloud access token (federated, or a service account's).
    Gcp,
    /// A Microsoft Entra access token.
    Azure,
}

impl TargetKind {
    /// Every kind, in documentation order.
    pub const ALL: [Self; 4] = [Self::Jwt, Self::Aws, Self::Gcp, Self::Azure];

    /// The name used in configuration and policy (`resource.kind`).
    pub const fn as_str(self) -> &'static str {
        match self {
            TargetKind::Jwt => "jwt",
            TargetKind::Aws => "aws",
            TargetKind::Gcp => "gcp",
            TargetKind::Azure => "azure",
        }
    }

    /// Parses a configured kind.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether credentials of this kind come from a cloud (and go through the cache).
    pub const fn is_cloud(self) -> bool {
        !matches!(self, TargetKind::Jwt)
    }

    /// The algorithm Legate must sign with for this kind, when the relying party imposes
    /// one: Entra accepts only RSA-signed federated assertions (an ES256 assertion is
    /// refused with `AADSTS5002738`). `None`: the issuer's default algorithm.
    pub const fn required_alg(self) -> Option<SigningAlg> {
        match self {
            TargetKind::Azure => Some(SigningAlg::Rs256),
            _ => None,
        }
    }

    /// The algorithm this kind signs with, given the issuer's default.
    pub fn signing_alg(self, default: SigningAlg) -> SigningAlg {
        self.required_alg().unwrap_or(default)
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A named destination a workload may exchange its token for.
///
/// INVARIANT: `cloud` is `Some` exactly when `kind` is a cloud kind, and then of that
/// kind; `audience` of a cloud target is [`CloudTarget::assertion_audience`]. The
/// constructors [`Target::jwt`] and [`Target::cloud`] keep both; the config loader uses
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The name clients put in `audience`.
    pub name: String,
    /// Its kind.
    pub kind: TargetKind,
    /// The `aud` of what Legate mints for it: the configured audience of a `jwt` target;
    /// the cloud's expected assertion audience for a cloud target (policies see it as
    /// `resource.audience`).
    pub audience: String,
    /// The longest lifetime issued for it, in seconds.
    pub max_lifetime_secs: u64,
    /// The default lifetime when the client asks for none, in seconds.
    pub default_lifetime_secs: u64,
    /// Free-form labels policies can test (`resource.getTag("env")`).
    pub labels: BTreeMap<String, String>,
    /// The cloud's settings, for cloud kinds.
    pub cloud: Option<CloudTarget>,
    /// Which verified claims flow into what is minted (empty: none).
    pub shaping: Shaping,
}

impl Target {
    /// A `jwt` target.
    pub fn jwt(
        name: impl Into<String>,
        audience: impl Into<String>,
        max_lifetime_secs: u64,
        default_lifetime_secs: u64,
        labels: BTreeMap<String, String>,
    ) -> Self {
        Self {
            name: name.into(),
            kind: TargetKind::Jwt,
            audience: audience.into(),
            max_lifetime_secs,
            default_lifetime_secs,
            labels,
            cloud: None,
            shaping: Shaping::default(),
        }
    }

    /// A cloud target; its kind and audience follow from `cloud`.
    pub fn cloud(
        name: impl Into<String>,
        cloud: CloudTarget,
        max_lifetime_secs: u64,
        default_lifetime_secs: u64,
        labels: BTreeMap<String, String>,
    ) -> Self {
        Self {
            name: name.into(),
            kind: cloud.kind(),
            audience: cloud.assertion_audience(),
            max_lifetime_secs,
            default_lifetime_secs,
            labels,
            cloud: Some(cloud),
            shaping: Shaping::default(),
        }
    }

    /// The lifetime to issue: the request's (or the default), capped by the target.
    pub fn lifetime_for(&self, requested: Option<u64>) -> u64 {
        requested
            .unwrap_or(self.default_lifetime_secs)
            .min(self.max_lifetime_secs)
    }

    /// The longest remaining lifetime a credential may have when served for a request
    /// approved for `approved_secs`, or `None` when the cloud alone decides it (a Google
    /// federated token, an Entra token: their lifetime cannot be requested).
    ///
    /// AWS raises a lifetime below 900 s to 900 s (the shortest session it issues), so an
    /// AWS credential may outlive a shorter approval by that much.
    pub fn credential_lifetime_ceiling(&self, approved_secs: u64) -> Option<u64> {
        match &self.cloud {
            None => Some(approved_secs),
            Some(CloudTarget::Aws(_)) => Some(aws::duration_seconds(approved_secs)),
            Some(CloudTarget::Gcp(g)) if g.service_account.is_some() => Some(approved_secs),
            Some(CloudTarget::Gcp(_) | CloudTarget::Azure(_)) => None,
        }
    }
}

/// A cloud target's settings, one variant per cloud kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloudTarget {
    /// `kind = "aws"`.
    Aws(AwsTarget),
    /// `kind = "gcp"`.
    Gcp(GcpTarget),
    /// `kind = "azure"`.
    Azure(AzureTarget),
}

impl CloudTarget {
    /// The kind these settings belong to.
    pub const fn kind(&self) -> TargetKind {
        match self {
            CloudTarget::Aws(_) => TargetKind::Aws,
            CloudTarget::Gcp(_) => TargetKind::Gcp,
            CloudTarget::Azure(_) => TargetKind::Azure,
        }
    }

    /// The `aud` of the assertion Legate mints for this cloud: AWS `sts.amazonaws.com`
    /// (or the configured `assertion_audience`), Google `https://iam.googleapis.com/` +
    /// the provider's resource name, Entra `api://AzureADTokenExchange`.
    pub fn assertion_audience(&self) -> String {
        match self {
            CloudTarget::Aws(a) => a
                .assertion_audience
                .clone()
                .unwrap_or_else(|| AWS_DEFAULT_AUDIENCE.to_owned()),
            CloudTarget::Gcp(g) => gcp::assertion_audience(&g.workload_identity_provider),
            CloudTarget::Azure(_) => AZURE_ASSERTION_AUDIENCE.to_owned(),
        }
    }

    /// The extra CA certificates for this target's endpoints, if any.
    pub fn ca_pem(&self) -> Option<&CaPem> {
        match self {
            CloudTarget::Aws(a) => a.ca_pem.as_ref(),
            CloudTarget::Gcp(g) => g.ca_pem.as_ref(),
            CloudTarget::Azure(z) => z.ca_pem.as_ref(),
        }
    }

    /// Sets the extra CA certificates (the server reads `ca_file` at start-up).
    pub fn set_ca_pem(&mut self, pem: Option<CaPem>) {
        match self {
            CloudTarget::Aws(a) => a.ca_pem = pem,
            CloudTarget::Gcp(g) => g.ca_pem = pem,
            CloudTarget::Azure(z) => z.ca_pem = pem,
        }
    }

    /// The whole-call deadline, retries included.
    pub fn timeout_secs(&self) -> u64 {
        match self {
            CloudTarget::Aws(a) => a.timeout_secs,
            CloudTarget::Gcp(g) => g.timeout_secs,
            CloudTarget::Azure(z) => z.timeout_secs,
        }
    }
}

/// The default whole-call deadline of a cloud call, retries included, in seconds.
pub const DEFAULT_CLOUD_TIMEOUT_SECS: u64 = 10;

/// An `aws` target: `sts:AssumeRoleWithWebIdentity` on `role_arn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsTarget {
    /// The role to assume, `arn:aws:iam::<account>:role/<name>`.
    pub role_arn: String,
    /// The STS region ([`AWS_DEFAULT_REGION`] when none is configured).
    pub region: String,
    /// An STS endpoint override (`https://`, or `http://` on loopback for tests).
    pub endpoint: Option<String>,
    /// The assertion's `aud`, when not [`AWS_DEFAULT_AUDIENCE`].
    pub assertion_audience: Option<String>,
    /// Extra CA certificates for the endpoint.
    pub ca_pem: Option<CaPem>,
    /// Whole-call deadline, retries included, in seconds.
    pub timeout_secs: u64,
}

/// A `gcp` target: Google STS token exchange through a workload identity pool provider,
/// then optionally `generateAccessToken` for a service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcpTarget {
    /// `projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<id>`.
    pub workload_identity_provider: String,
    /// The service account to impersonate, if any.
    pub service_account: Option<String>,
    /// OAuth scopes ([`GCP_DEFAULT_SCOPE`] by default).
    pub scopes: Vec<String>,
    /// The STS endpoint, without a trailing slash.
    pub sts_endpoint: String,
    /// The IAM Credentials endpoint, without a trailing slash.
    pub iam_credentials_endpoint: String,
    /// Extra CA certificates for both endpoints.
    pub ca_pem: Option<CaPem>,
    /// Whole-call deadline, retries included, in seconds.
    pub timeout_secs: u64,
}

/// An `azure` target: the Entra v2 token endpoint, `client_credentials` with Legate's
/// assertion as a federated client assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureTarget {
    /// The directory (tenant) id, a GUID.
    pub tenant_id: String,
    /// The application's or managed identity's client id, a GUID.
    pub client_id: String,
    /// The scope, `<resource>/.default`.
    pub scope: String,
    /// The authority host, without a trailing slash.
    pub authority_host: String,
    /// Extra CA certificates for the authority.
    pub ca_pem: Option<CaPem>,
    /// Whole-call deadline, retries included, in seconds.
    pub timeout_secs: u64,
}

/// PEM text of extra CA certificates. `Debug` shows its length only.
#[derive(Clone, PartialEq, Eq)]
pub struct CaPem(pub Vec<u8>);

impl fmt::Debug for CaPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaPem({} bytes)", self.0.len())
    }
}

/// What a provider needs to issue a credential.
#[derive(Debug, Clone)]
pub struct IssueRequest<'a> {
    /// The target.
    pub target: &'a Target,
    /// The workload's canonical identity, `<trust>:<upstream sub>` in full (`sub` of a
    /// `jwt` target's token; part of the credential cache key).
    pub subject: String,
    /// The workload for attribution: `<trust>:<upstream sub>`, escaped and bounded by
    /// [`workload_claim`]. Goes into the cloud assertion's `workload` claim and the AWS
    /// session name.
    pub workload: String,
    /// The trust (upstream issuer name) the workload came through.
    pub trust: &'a str,
    /// Upstream `iss`.
    pub upstream_issuer: &'a str,
    /// Upstream `sub`.
    pub upstream_subject: &'a str,
    /// The lifetime policy approved, already capped by the target.
    pub lifetime_secs: u64,
    /// Grant parameters: what the target's [`Shaping`] read from the verified claims,
    /// and the actor chain.
    pub grant: Grant,
    /// Legate's request id, for logs that correlate with the audit event.
    pub request_id: &'a str,
}

/// The `workload` value for `trust` and an upstream `sub`: `<trust>:<sub>`, with control
/// characters, `\`, `"` and non-ASCII escaped, cut at [`MAX_WORKLOAD_BYTES`] (marked `…`).
///
/// SECURITY: the upstream `sub` is attacker-influenced; it ends up in a cloud's audit
/// trail (CloudTrail's session name, the assertion's claims), which must not be forgeable.
pub fn workload_claim(trust: &str, subject: &str) -> String {
    let mut out = String::with_capacity(trust.len() + subject.len() + 1);
    let budget = MAX_WORKLOAD_BYTES.saturating_sub('…'.len_utf8());
    let mut cut = false;
    for c in trust
        .chars()
        .chain(std::iter::once(':'))
        .chain(subject.chars())
    {
        let piece: String = if (c.is_ascii_graphic() && c != '\\' && c != '"') || c == ' ' {
            c.to_string()
        } else {
            c.escape_default().collect()
        };
        if out.len() + piece.len() > budget {
            cut = true;
            break;
        }
        out.push_str(&piece);
    }
    if cut {
        out.push('…');
    }
    out
}

/// An issued credential.
///
/// `Debug` prints no secret: tokens, secret keys and session tokens are [`Secret`]s.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A Legate-signed JWT.
    Jwt {
        /// The token.
        token: Secret<String>,
        /// Its `jti`.
        jti: String,
        /// Its `exp`.
        expires_at: UnixSeconds,
    },
    /// AWS session credentials.
    Aws {
        /// `AccessKeyId` (not secret on its own; it identifies the session).
        access_key_id: String,
        /// `SecretAccessKey`.
        secret_access_key: Secret<String>,
        /// `SessionToken`.
        session_token: Secret<String>,
        /// `Expiration`.
        expiration: UnixSeconds,
        /// The assumed-role ARN (`arn:aws:sts::<account>:assumed-role/<role>/<session>`).
        assumed_role_arn: Option<String>,
        /// The STS request id.
        cloud_request_id: Option<String>,
    },
    /// A cloud access token (Google, Entra), used as `Authorization: Bearer`.
    AccessToken {
        /// The token.
        token: Secret<String>,
        /// When it expires.
        expires_at: UnixSeconds,
        /// The cloud's request id (Entra's `correlation_id`), when it gives one.
        cloud_request_id: Option<String>,
    },
}

impl Credential {
    /// When the credential expires.
    pub fn expires_at(&self) -> UnixSeconds {
        match self {
            Credential::Jwt { expires_at, .. } | Credential::AccessToken { expires_at, .. } => {
                *expires_at
            }
            Credential::Aws { expiration, .. } => *expiration,
        }
    }

    /// The cloud's request id for the call that issued it, if any.
    pub fn cloud_request_id(&self) -> Option<&str> {
        match self {
            Credential::Jwt { .. } => None,
            Credential::Aws {
                cloud_request_id, ..
            }
            | Credential::AccessToken {
                cloud_request_id, ..
            } => cloud_request_id.as_deref(),
        }
    }

    /// The credential's non-secret id, where there is one: a minted JWT's `jti`; an AWS
    /// session's assumed-role ARN (`AssumedRoleUser.Arn`). `None` for Google and Entra
    /// access tokens, whose answers carry no id besides the token.
    ///
    /// SECURITY: never the token, the secret key or the session token.
    pub fn credential_id(&self) -> Option<&str> {
        match self {
            Credential::Jwt { jti, .. } => Some(jti),
            Credential::Aws {
                assumed_role_arn, ..
            } => assumed_role_arn.as_deref(),
            Credential::AccessToken { .. } => None,
        }
    }

    /// The AWS `credential_process` output (version 1) for AWS credentials:
    /// `{"Version":1,"AccessKeyId","SecretAccessKey","SessionToken","Expiration"}` with
    /// `Expiration` in RFC 3339 UTC (`Z`). `None` for other credentials.
    ///
    /// SECURITY: the value holds the secret key; it is for the response body only.
    pub fn aws_credential_process_json(&self) -> Option<Value> {
        let Credential::Aws {
            access_key_id,
            secret_access_key,
            session_token,
            expiration,
            ..
        } = self
        else {
            return None;
        };
        Some(json!({
            "Version": 1,
            "AccessKeyId": access_key_id,
            "SecretAccessKey": secret_access_key.expose(),
            "SessionToken": session_token.expose(),
            "Expiration": http::rfc3339(*expiration),
        }))
    }
}

/// Why a provider could not issue a credential.
///
/// Cloud-supplied text (`code`, `message`, `request_id`) is escaped and bounded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ExchangeError {
    /// Legate could not build what it sends: its own signing failed, or the target was
    /// handed to a provider of another kind (a routing bug).
    #[error("minting failed: {0}")]
    Mint(String),
    /// The cloud refused this target's configuration, role or assertion: retrying will
    /// not help (wire: `invalid_target`, 400).
    #[error("{cloud} refused the exchange: `{code}`: {message}")]
    TargetRefused {
        /// `aws`, `gcp` or `azure`.
        cloud: &'static str,
        /// The cloud's error code (`AccessDenied`, `invalid_grant`, `AADSTS70021`, …).
        code: String,
        /// The cloud's request id, if it gave one.
        request_id: Option<String>,
        /// The cloud's message.
        message: String,
    },
    /// The cloud could not be reached or answered with a transient failure after the
    /// retries (wire: `temporarily_unavailable`, 503).
    #[error("{cloud} is unavailable: `{code}`: {message}")]
    Unavailable {
        /// `aws`, `gcp` or `azure`.
        cloud: &'static str,
        /// The cloud's error code, or Legate's (`timeout`, `connect`, `http_503`, …).
        code: String,
        /// The cloud's request id, if it gave one.
        request_id: Option<String>,
        /// What happened.
        message: String,
    },
}

impl ExchangeError {
    /// A stable snake_case reason for the audit log.
    pub const fn reason_code(&self) -> &'static str {
        match self {
            ExchangeError::Mint(_) => "mint_failed",
            ExchangeError::TargetRefused { .. } => "cloud_refused",
            ExchangeError::Unavailable { .. } => "cloud_unavailable",
        }
    }

    /// Whether the client may retry the same exchange later (the server then releases
    /// the `(iss, jti)` replay record).
    pub const fn is_transient(&self) -> bool {
        matches!(self, ExchangeError::Unavailable { .. })
    }

    /// The cloud's error code, if the cloud answered with one.
    pub fn cloud_code(&self) -> Option<&str> {
        match self {
            ExchangeError::Mint(_) => None,
            ExchangeError::TargetRefused { code, .. } | ExchangeError::Unavailable { code, .. } => {
                Some(code)
            }
        }
    }

    /// The cloud's request id, if it gave one.
    pub fn cloud_request_id(&self) -> Option<&str> {
        match self {
            ExchangeError::Mint(_) => None,
            ExchangeError::TargetRefused { request_id, .. }
            | ExchangeError::Unavailable { request_id, .. } => request_id.as_deref(),
        }
    }
}

/// A credential and where it came from.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The credential.
    pub credential: Credential,
    /// Whether a cache served it (no cloud call was made for this request).
    pub from_cache: bool,
}

/// Issues credentials for one [`TargetKind`].
///
/// INVARIANT: the server keeps one provider per kind and hands a provider only targets
/// of its kind, so a provider does not check the kind again.
pub trait CredentialProvider: Send + Sync + fmt::Debug {
    /// Issues a credential at time `now`.
    fn issue<'a>(
        &'a self,
        request: IssueRequest<'a>,
        now: UnixSeconds,
    ) -> BoxFuture<'a, Result<Credential, ExchangeError>>;

    /// Issues like [`issue`](Self::issue) and says whether a cache served the
    /// credential. By default nothing is cached; [`CachedProvider`] says when it was.
    fn issue_traced<'a>(
        &'a self,
        request: IssueRequest<'a>,
        now: UnixSeconds,
    ) -> BoxFuture<'a, Result<Issued, ExchangeError>> {
        Box::pin(async move {
            self.issue(request, now).await.map(|credential| Issued {
                credential,
                from_cache: false,
            })
        })
    }
}

/// Mints the assertion a cloud target exchanges, with the lifetime
/// [`MAX_ASSERTION_LIFETIME_SECS`] and the grant's `extra_claims`.
fn mint_assertion(
    issuer: &Issuer,
    alg: SigningAlg,
    target: &Target,
    audience: &str,
    workload: &str,
    extra_claims: &serde_json::Map<String, Value>,
    now: UnixSeconds,
) -> Result<Secret<String>, ExchangeError> {
    let req = AssertionRequest {
        target: &target.name,
        audience,
        workload,
        lifetime_secs: MAX_ASSERTION_LIFETIME_SECS,
    };
    issuer
        .mint_assertion_with(&req, extra_claims, alg, now)
        .map(|m| m.token)
        .map_err(|e| ExchangeError::Mint(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in TargetKind::ALL {
            assert_eq!(TargetKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(TargetKind::parse("AWS"), None);
        assert_eq!(
            TargetKind::Azure.signing_alg(SigningAlg::Es256),
            SigningAlg::Rs256
        );
        assert_eq!(
            TargetKind::Aws.signing_alg(SigningAlg::Es256),
            SigningAlg::Es256
        );
    }

    /// Stops a crafted upstream `sub` from forging lines in a cloud's audit trail or
    /// growing without bound.
    #[test]
    fn workload_claim_escapes_and_bounds_the_subject() {
        assert_eq!(
            workload_claim("github", "repo:org/r:ref:refs/heads/main"),
            "github:repo:org/r:ref:refs/heads/main"
        );
        assert_eq!(workload_claim("k8s", "a\nb\"é"), r#"k8s:a\nb\"\u{e9}"#);
        let long = workload_claim("t", &"x".repeat(10_000));
        assert!(long.len() <= MAX_WORKLOAD_BYTES, "{}", long.len());
        assert!(long.ends_with('…'));
        // An escape sequence is never cut in half.
        let escapes = workload_claim("t", &"\n".repeat(500));
        assert!(escapes.trim_end_matches('…').ends_with("\\n"), "{escapes}");
    }

    #[test]
    fn aws_credential_process_json_has_the_version_1_shape() {
        let cred = Credential::Aws {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: Secret::new("secret/key".into()),
            session_token: Secret::new("session-token".into()),
            expiration: 1_767_225_600,
            assumed_role_arn: Some("arn:aws:sts::123456789012:assumed-role/r/s".into()),
            cloud_request_id: Some("req-1".into()),
        };
        assert_eq!(
            cred.aws_credential_process_json().unwrap(),
            json!({
                "Version": 1,
                "AccessKeyId": "ASIAEXAMPLE",
                "SecretAccessKey": "secret/key",
                "SessionToken": "session-token",
                "Expiration": "2026-01-01T00:00:00Z",
            })
        );
        let token = Credential::AccessToken {
            token: Secret::new("ya29.x".into()),
            expires_at: 1,
            cloud_request_id: None,
        };
        assert!(token.aws_credential_process_json().is_none());
        // The ledger's non-secret id: the assumed-role ARN, never a key or token.
        assert_eq!(
            cred.credential_id(),
            Some("arn:aws:sts::123456789012:assumed-role/r/s")
        );
        assert_eq!(token.credential_id(), None);
    }

    /// Stops a credential from leaking through a stray `{:?}` in a log line.
    #[test]
    fn debug_of_credentials_shows_no_secret() {
        let cred = Credential::Aws {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI".into()),
            session_token: Secret::new("FwoGZXIvYXdzE".into()),
            expiration: 0,
            assumed_role_arn: None,
            cloud_request_id: None,
        };
        let dbg = format!("{cred:?}");
        assert!(
            !dbg.contains("wJalrXUtnFEMI") && !dbg.contains("FwoGZXIvYXdzE"),
            "{dbg}"
        );
        let token = Credential::AccessToken {
            token: Secret::new("ya29.secret".into()),
            expires_at: 0,
            cloud_request_id: None,
        };
        assert!(!format!("{token:?}").contains("ya29.secret"));
    }

    #[test]
    fn error_reasons_are_stable() {
        let refused = ExchangeError::TargetRefused {
            cloud: "aws",
            code: "AccessDenied".into(),
            request_id: Some("r".into()),
            message: "m".into(),
        };
        assert_eq!(refused.reason_code(), "cloud_refused");
        assert!(!refused.is_transient());
        assert_eq!(refused.cloud_code(), Some("AccessDenied"));
        assert_eq!(refused.cloud_request_id(), Some("r"));
        let down = ExchangeError::Unavailable {
            cloud: "gcp",
            code: "timeout".into(),
            request_id: None,
            message: "m".into(),
        };
        assert_eq!(down.reason_code(), "cloud_unavailable");
        assert!(down.is_transient());
        assert_eq!(ExchangeError::Mint("x".into()).reason_code(), "mint_failed");
    }

    #[test]
    fn cloud_targets_take_their_audience_from_the_cloud() {
        let aws = Target::cloud(
            "aws-deploy",
            CloudTarget::Aws(AwsTarget {
                role_arn: "arn:aws:iam::123456789012:role/deploy".into(),
                region: "us-east-1".into(),
                endpoint: None,
                assertion_audience: None,
                ca_pem: None,
                timeout_secs: 10,
            }),
            3600,
            900,
            BTreeMap::new(),
        );
        assert_eq!(aws.kind, TargetKind::Aws);
        assert_eq!(aws.audience, "sts.amazonaws.com");
        assert_eq!(aws.credential_lifetime_ceiling(300), Some(900));
        assert_eq!(aws.credential_lifetime_ceiling(1800), Some(1800));
        let provider = "projects/123/locations/global/workloadIdentityPools/p/providers/x";
        let gcp = CloudTarget::Gcp(GcpTarget {
            workload_identity_provider: provider.into(),
            service_account: None,
            scopes: vec![GCP_DEFAULT_SCOPE.into()],
            sts_endpoint: GCP_DEFAULT_STS_ENDPOINT.into(),
            iam_credentials_endpoint: GCP_DEFAULT_IAM_ENDPOINT.into(),
            ca_pem: None,
            timeout_secs: 10,
        });
        assert_eq!(
            gcp.assertion_audience(),
            format!("https://iam.googleapis.com/{provider}")
        );
        let gcp = Target::cloud("g", gcp, 3600, 900, BTreeMap::new());
        assert_eq!(gcp.credential_lifetime_ceiling(300), None);
    }
}
