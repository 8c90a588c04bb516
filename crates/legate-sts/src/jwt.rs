//! The `jwt` target: a token Legate signs itself for a downstream audience.

use std::sync::Arc;

use legate_core::UnixSeconds;
use legate_issuer::{Issuer, MintRequest, SigningAlg};

use crate::{BoxFuture, Credential, CredentialProvider, ExchangeError, Grant, IssueRequest};

/// Mints Legate-signed JWTs with the issuer's signing key for one algorithm (the
/// configured `issuer.algorithm`).
#[derive(Debug, Clone)]
pub struct JwtProvider {
    issuer: Arc<Issuer>,
    alg: SigningAlg,
}

impl JwtProvider {
    /// A provider minting with `issuer`'s signer for `alg`.
    pub fn new(issuer: Arc<Issuer>, alg: SigningAlg) -> Self {
        Self { issuer, alg }
    }
}

/// The claims a `jwt` target's grant adds: the copied claims, and `act` (RFC 8693
/// §4.1) when an actor took part.
fn extra_claims(grant: &Grant) -> serde_json::Map<String, serde_json::Value> {
    let mut claims = grant.copied_claims.clone();
    if let Some(act) = &grant.act {
        claims.insert("act".to_owned(), act.clone());
    }
    claims
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
                extra_claims: extra_claims(&request.grant),
            };
            let minted = self
                .issuer
                .mint(&mint, self.alg, now)
                .map_err(|e| ExchangeError::Mint(e.to_string()))?;
            Ok(Credential::Jwt {
                token: minted.token,
                jti: minted.jti,
                expires_at: minted.expires_at,
            })
        })
    }
}
