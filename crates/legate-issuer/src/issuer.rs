//! [`Issuer`]: Legate's issuer URL and key ring, and the OpenID Connect discovery
//! document that clouds read to trust it.

use serde_json::{Value, json};

use legate_core::exchange::GRANT_TYPE_TOKEN_EXCHANGE;
use legate_core::text::escape_untrusted;

use crate::error::IssuerUrlError;
use crate::keyring::KeyRing;
use crate::mint::REGISTERED_CLAIMS;

/// Path of the discovery document under the issuer URL (OIDC Discovery 1.0 §4).
pub use legate_core::exchange::OIDC_DISCOVERY_PATH as DISCOVERY_PATH;
/// Path of the JWK set under the issuer URL.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// Path of the RFC 8693 token-exchange endpoint under the issuer URL.
pub const TOKEN_PATH: &str = "/token";

/// Legate as an OIDC issuer: its public URL and its signing keys.
#[derive(Debug, Clone)]
pub struct Issuer {
    url: String,
    keys: KeyRing,
}

impl Issuer {
    /// An issuer at `url`, signing with `keys`.
    ///
    /// `url` is used exactly as given as the `iss` claim and the discovery `issuer`, so
    /// it must match what relying parties are configured with, trailing slash included.
    /// It must be `https://` (or `http://`, for local development only) with a host,
    /// and have no query or fragment (OIDC Discovery 1.0 §3).
    ///
    /// # Errors
    ///
    /// [`IssuerUrlError`] for an empty URL, another scheme, a missing host, a query or
    /// fragment, or whitespace.
    pub fn new(url: impl Into<String>, keys: KeyRing) -> Result<Self, IssuerUrlError> {
        let url = url.into();
        validate_url(&url)?;
        Ok(Self { url, keys })
    }

    /// The issuer URL, exactly as configured.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The signing keys.
    #[must_use]
    pub const fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The signing keys, for rotation.
    pub const fn keys_mut(&mut self) -> &mut KeyRing {
        &mut self.keys
    }

    /// The URL of the discovery document.
    #[must_use]
    pub fn discovery_uri(&self) -> String {
        self.endpoint(DISCOVERY_PATH)
    }

    /// The URL of the JWK set.
    #[must_use]
    pub fn jwks_uri(&self) -> String {
        self.endpoint(JWKS_PATH)
    }

    /// The URL of the token-exchange endpoint.
    #[must_use]
    pub fn token_endpoint(&self) -> String {
        self.endpoint(TOKEN_PATH)
    }

    /// The JWK set to serve at [`Issuer::jwks_uri`].
    #[must_use]
    pub fn jwks(&self) -> Value {
        self.keys.jwks()
    }

    /// The OpenID Provider Metadata (OIDC Discovery 1.0 §3) to serve at
    /// [`Issuer::discovery_uri`]. AWS IAM OIDC providers and Google workload identity
    /// federation read `issuer`, `jwks_uri` and the signing algorithms from it.
    ///
    /// `claims_supported` lists the claims every token carries; policy-approved extra
    /// claims vary per token and are not listed.
    #[must_use]
    pub fn discovery_document(&self) -> Value {
        let algs: Vec<&str> = self.keys.algs().into_iter().map(|a| a.as_str()).collect();
        json!({
            "issuer": self.url,
            "jwks_uri": self.jwks_uri(),
            "token_endpoint": self.token_endpoint(),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algs,
            "claims_supported": REGISTERED_CLAIMS,
            "grant_types_supported": [GRANT_TYPE_TOKEN_EXCHANGE],
        })
    }

    /// `url` joined with an absolute `path`. A trailing `/` of the issuer is dropped first
    /// (OIDC Discovery 1.0 §4 does the same), so no `//` appears.
    fn endpoint(&self, path: &str) -> String {
        let base = self.url.strip_suffix('/').unwrap_or(&self.url);
        format!("{base}{path}")
    }
}

/// Checks an issuer URL; see [`Issuer::new`].
fn validate_url(url: &str) -> Result<(), IssuerUrlError> {
    if url.is_empty() {
        return Err(IssuerUrlError::Empty);
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(IssuerUrlError::Whitespace(escape_untrusted(url)));
    }
    if url.contains(['?', '#']) {
        return Err(IssuerUrlError::QueryOrFragment(escape_untrusted(url)));
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host = rest.and_then(|r| r.split('/').next()).unwrap_or_default();
    if host.is_empty() {
        return Err(IssuerUrlError::Scheme(escape_untrusted(url)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{SigningAlg, SigningKey};

    fn ring() -> KeyRing {
        KeyRing::new(SigningKey::generate(SigningAlg::Es256, None).unwrap())
    }

    #[test]
    fn discovery_document_has_the_oidc_fields() {
        let mut issuer = Issuer::new("https://legate.example.com", ring()).unwrap();
        issuer
            .keys_mut()
            .rotate(SigningKey::generate(SigningAlg::Rs256, None).unwrap())
            .unwrap();
        let doc = issuer.discovery_document();
        assert_eq!(
            doc,
            json!({
                "issuer": "https://legate.example.com",
                "jwks_uri": "https://legate.example.com/.well-known/jwks.json",
                "token_endpoint": "https://legate.example.com/token",
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "upstream"],
                "grant_types_supported": ["urn:ietf:params:oauth:grant-type:token-exchange"],
            })
        );
        assert_eq!(
            issuer.discovery_uri(),
            "https://legate.example.com/.well-known/openid-configuration"
        );
        assert_eq!(issuer.jwks(), issuer.keys().jwks());
    }

    #[test]
    fn url_is_kept_exactly_and_paths_join_without_double_slash() {
        let issuer = Issuer::new("https://example.com/legate/", ring()).unwrap();
        assert_eq!(issuer.url(), "https://example.com/legate/");
        assert_eq!(
            issuer.discovery_document()["issuer"],
            "https://example.com/legate/"
        );
        assert_eq!(
            issuer.jwks_uri(),
            "https://example.com/legate/.well-known/jwks.json"
        );
        assert_eq!(issuer.token_endpoint(), "https://example.com/legate/token");
        assert!(Issuer::new("http://localhost:8080", ring()).is_ok());
    }

    #[test]
    fn bad_urls_are_refused() {
        assert_eq!(Issuer::new("", ring()).unwrap_err(), IssuerUrlError::Empty);
        for url in [
            "https://a.example?x=1",
            "https://a.example/#f",
            "https://a.example?",
        ] {
            assert!(
                matches!(
                    Issuer::new(url, ring()).unwrap_err(),
                    IssuerUrlError::QueryOrFragment(_)
                ),
                "{url}"
            );
        }
        for url in [
            "legate.example.com",
            "ftp://a.example",
            "https://",
            "https:///path",
        ] {
            assert!(
                matches!(
                    Issuer::new(url, ring()).unwrap_err(),
                    IssuerUrlError::Scheme(_)
                ),
                "{url}"
            );
        }
        let err = Issuer::new("https://a.example/\nx", ring()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "issuer URL `https://a.example/\\nx` contains whitespace or control characters"
        );
    }
}
