//! The `jwt` target: a token Legate signs itself for a downstream audience.

use std::sync::Arc;

use legate_core::UnixSeconds;
use legate_issuer::{Issuer, MintRequest};

use crate::{BoxFuture, Credential, CredentialProvider, ExchangeError, IssueRequest};

/// Mints Legate-signed JWTs with Legate's active signing key.
#[derive(Debug, Clone)]
pub struct JwtProvider {
    issuer: Arc<Issuer>,
}

impl JwtProvider {
    /// A provider minting with `issuer`.
    pub fn new(issuer: Arc<Issuer>) -> Self {
        Self { issuer }
    }
}

impl CredentialProvider for JwtProvider {
    fn issue<'a>(
        &'a self,
        request: IssueRequest<'a>,
        now: UnixSeconds,
    ) -> BoxFuture<'a, Result<Credential, ExchangeError>> {
        Box::pin(async move {
            let mint = MintRequest {
                subject: request.subject,
                audience: request.target.audience.clone(),
                lifetime_secs: request.lifetime_secs,
                upstream_issuer: request.upstream_issuer.to_owned(),
                upstream_subject: request.upstream_subject.to_owned(),
                trust: request.trust.to_owned(),
                extra_claims: serde_json::Map::new(),
            };
            let minted = self
                .issuer
                .mint(&mint, now)
                .map_err(|e| ExchangeError::Mint(e.to_string()))?;
            Ok(Credential::Jwt {
                token: minted.token,
                jti: minted.jti,
                expires_at: minted.expires_at,
            })
        })
    }
}
