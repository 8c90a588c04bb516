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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::fixtures::{NOW, decode_jwt, issuer};
    use crate::{Shaping, Target};

    /// The grant reaches the minted token: copied claims as they are, and the actor
    /// chain as `act`; nothing else of the upstream token.
    #[tokio::test]
    async fn copied_claims_and_the_actor_chain_reach_the_minted_token() {
        let target = Target::jwt("t", "https://t.example", 900, 300, BTreeMap::new());
        let provider = JwtProvider::new(issuer(), SigningAlg::Es256);
        let shaping = Shaping {
            copy_claims: vec!["repository".into(), "groups".into()],
            ..Shaping::default()
        };
        let upstream = json!({"repository": "acme/app", "groups": ["a"], "secret": "x"});
        let mut grant = shaping.shape(upstream.as_object().unwrap()).unwrap();
        grant.act = Some(json!({"sub": "host-7", "iss": "https://host.example"}));
        let mut req = crate::fixtures::request(&target, 60);
        req.grant = grant;
        let Credential::Jwt { token, .. } = provider.issue(req, NOW).await.unwrap() else {
            unreachable!("a jwt target mints a jwt");
        };
        let (_, claims) = decode_jwt(token.expose());
        assert_eq!(claims["repository"], "acme/app");
        assert_eq!(claims["groups"], json!(["a"]));
        assert_eq!(claims["act"]["sub"], "host-7");
        assert!(claims.get("secret").is_none(), "{claims}");
        assert_eq!(claims["aud"], "https://t.example");
    }
}
