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

/// The loopback ports the embedded development configuration (`dev.toml`) points its
/// demo cloud targets at, and where `legate demo` starts the local fakes of their token
/// services: `demo-aws` (AWS STS), `demo-gcp` (Google STS + IAM Credentials),
/// `demo-azure` (Entra ID).
pub const DEMO_CLOUD_PORTS: DemoCloudPorts = DemoCloudPorts {
    aws: 8091,
    gcp: 8092,
    azure: 8093,
};

/// The demo cloud targets' names, as in `dev.toml` and `policies/demo.cedar`.
pub const DEMO_CLOUD_TARGETS: [&str; 3] = ["demo-aws", "demo-gcp", "demo-azure"];

/// One loopback port per demo cloud target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoCloudPorts {
    /// The AWS STS fake (`demo-aws`).
    pub aws: u16,
    /// The Google STS + IAM Credentials fake (`demo-gcp`).
    pub gcp: u16,
    /// The Entra ID fake (`demo-azure`).
    pub azure: u16,
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Stops the embedded configuration and `legate demo` from drifting apart: each demo
    /// cloud target's token service is on the port where the demo starts its fake.
    #[test]
    fn dev_config_points_the_demo_cloud_targets_at_the_demo_ports() {
        let cfg = crate::config::load_str(crate::DEV_CONFIG, "dev.toml", std::path::Path::new("."))
            .unwrap();
        let endpoints = |name: &str| {
            let table = crate::DEV_CONFIG
                .split("[[target]]")
                .find(|t| t.contains(&format!("name = \"{name}\"")))
                .unwrap();
            table
                .lines()
                .filter(|l| l.contains("http://"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        for (name, port, count) in [
            ("demo-aws", DEMO_CLOUD_PORTS.aws, 1),
            ("demo-gcp", DEMO_CLOUD_PORTS.gcp, 2),
            ("demo-azure", DEMO_CLOUD_PORTS.azure, 1),
        ] {
            assert!(cfg.targets.iter().any(|t| t.name == name), "{name}");
            let lines = endpoints(name);
            assert_eq!(lines.len(), count, "{name}: {lines:?}");
            for line in lines {
                assert!(
                    line.ends_with(&format!("= \"http://127.0.0.1:{port}\"")),
                    "{name}: {line}"
                );
            }
        }
        let cloud: Vec<&str> = cfg
            .targets
            .iter()
            .filter(|t| t.cloud.is_some())
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(cloud, DEMO_CLOUD_TARGETS);
    }
}
