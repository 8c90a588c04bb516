//! Legate's target adapters: turn a verified, policy-approved exchange into a credential.
//!
//! What it does: defines [`Target`] (a named destination with a kind, an audience, a
//! lifetime cap and labels), the [`CredentialProvider`] trait every kind implements, and
//! the first kind, [`TargetKind::Jwt`]: a Legate-signed JWT for a downstream audience.
//!
//! What it does not do: no verification and no policy (the server runs both first). The
//! cloud kinds (AWS `AssumeRoleWithWebIdentity`, Google STS + `generateAccessToken`,
//! Entra client assertion) and the credential cache arrive as further modules behind
//! cargo features, each implementing [`CredentialProvider`]; the server dispatches on
//! [`TargetKind`] and needs no other change.
//!
//! Layout: this file (types and the trait) and `jwt` ([`JwtProvider`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use legate_core::{Secret, UnixSeconds};

mod jwt;

pub use jwt::JwtProvider;

/// A boxed future, so that providers can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The kinds of target Legate issues credentials for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// A Legate-signed JWT whose `aud` is the target's audience.
    Jwt,
}

impl TargetKind {
    /// The name used in configuration and policy (`resource.kind`).
    pub const fn as_str(self) -> &'static str {
        match self {
            TargetKind::Jwt => "jwt",
        }
    }

    /// Parses a configured kind.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "jwt" => Some(TargetKind::Jwt),
            _ => None,
        }
    }
}

/// A named destination a workload may exchange its token for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The name clients put in `audience`.
    pub name: String,
    /// Its kind.
    pub kind: TargetKind,
    /// The `aud` of what Legate mints for it.
    pub audience: String,
    /// The longest lifetime issued for it, in seconds.
    pub max_lifetime_secs: u64,
    /// The default lifetime when the client asks for none, in seconds.
    pub default_lifetime_secs: u64,
    /// Free-form labels policies can test (`resource.getTag("env")`).
    pub labels: BTreeMap<String, String>,
}

impl Target {
    /// The lifetime to issue: the request's (or the default), capped by the target.
    pub fn lifetime_for(&self, requested: Option<u64>) -> u64 {
        requested
            .unwrap_or(self.default_lifetime_secs)
            .min(self.max_lifetime_secs)
    }
}

/// What a provider needs to issue a credential.
#[derive(Debug, Clone)]
pub struct IssueRequest<'a> {
    /// The target.
    pub target: &'a Target,
    /// The workload's canonical identity (`sub` of what Legate mints).
    pub subject: String,
    /// The trust (upstream issuer name) the workload came through.
    pub trust: &'a str,
    /// Upstream `iss`.
    pub upstream_issuer: &'a str,
    /// Upstream `sub`.
    pub upstream_subject: &'a str,
    /// The lifetime to issue, already capped.
    pub lifetime_secs: u64,
}

/// An issued credential.
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
}

impl Credential {
    /// When the credential expires.
    pub fn expires_at(&self) -> UnixSeconds {
        match self {
            Credential::Jwt { expires_at, .. } => *expires_at,
        }
    }
}

/// Why a provider could not issue a credential.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Legate's own signing failed.
    #[error("minting failed: {0}")]
    Mint(String),
}

/// Issues credentials for one [`TargetKind`].
///
/// INVARIANT: the server keeps one provider per kind and hands a provider only targets
/// of its kind, so a provider does not check the kind again.
pub trait CredentialProvider: Send + Sync + std::fmt::Debug {
    /// Issues a credential at time `now`.
    fn issue<'a>(
        &'a self,
        request: IssueRequest<'a>,
        now: UnixSeconds,
    ) -> BoxFuture<'a, Result<Credential, ExchangeError>>;
}
