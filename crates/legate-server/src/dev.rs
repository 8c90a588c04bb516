//! Development mode's demo issuer.
//!
//! SECURITY: exists only when `legate serve` runs without a configuration file. It holds
//! an in-memory key created at start-up and mints "workload" tokens on `POST /demo/token`
//! so a newcomer can run a real exchange without a CI system or a cluster. No
//! configuration file can enable it.

use std::sync::Arc;

use legate_core::jwk::KeySet;
use legate_core::{UnixSeconds, VerifyRules, b64};
use legate_issuer::{SigningAlg, SigningKey};
use legate_trust::{KeySource, TrustConfig};
use serde_json::{Value, json};

/// The trust name of the demo issuer (policies: `Legate::Issuer::"demo"`).
pub const DEMO_TRUST: &str = "demo";

/// The in-memory demo issuer.
#[derive(Debug)]
pub struct DemoIssuer {
    url: String,
    audience: String,
    key: SigningKey,
}

impl DemoIssuer {
    /// A demo issuer at `{public_url}/demo` whose tokens are addressed to `public_url`.
    pub fn new(public_url: &str) -> Result<Self, legate_issuer::KeyLoadError> {
        Ok(Self {
            url: format!("{public_url}/demo"),
            audience: public_url.to_owned(),
            key: SigningKey::generate(SigningAlg::Es256, Some("demo-1".into()))?,
        })
    }

    /// The trust entry that makes Legate accept demo tokens.
    pub fn trust_config(&self) -> Result<TrustConfig, legate_core::jwk::JwksError> {
        let jwks = json!({ "keys": [self.key.public_jwk()] });
        let (keys, _) = KeySet::from_jwks(jwks.to_string().as_bytes())?;
        let rules = VerifyRules::new(self.url.clone(), vec![self.audience.clone()]);
        Ok(TrustConfig::new(
            DEMO_TRUST,
            rules,
            KeySource::Static(Arc::new(keys)),
        ))
    }

    /// Mints a demo workload token.
    pub fn mint(
        &self,
        subject: &str,
        env: &str,
        lifetime: u64,
        now: UnixSeconds,
    ) -> Option<String> {
        let lifetime = i64::try_from(lifetime.clamp(60, 3600)).ok()?;
        let header = json!({"alg": "ES256", "kid": self.key.kid(), "typ": "JWT"});
        let claims: Value = json!({
            "iss": self.url, "sub": subject, "aud": self.audience, "env": env,
            "iat": now, "nbf": now, "exp": now + lifetime,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let input = format!(
            "{}.{}",
            b64::encode(header.to_string()),
            b64::encode(claims.to_string())
        );
        let sig = self.key.sign(input.as_bytes()).ok()?;
        Some(format!("{input}.{}", b64::encode(sig)))
    }
}
