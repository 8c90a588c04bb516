//! Fetching discovery documents and JWKS over HTTPS, with hard limits and, unless a
//! trust allows private networks, to public addresses only (see [`crate::address`]).

use std::sync::Arc;
use std::time::Duration;

use legate_core::exchange::OIDC_DISCOVERY_PATH;
use legate_core::json;
use legate_core::jwk::{JwksError, KeySet, KeyWarning};
use legate_core::text::escape_untrusted;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::Value;

use crate::address::{NetworkAccess, PublicOnlyResolver, ResolveError, refuse_non_public_host};

/// Limits on every upstream fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    /// Largest response body accepted.
    pub max_body_bytes: usize,
    /// Deadline for one whole request, body included (bounds slow-drip responses).
    pub timeout: Duration,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Why a fetch failed. The previous keys keep serving.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Building the HTTP client failed (bad CA bundle, TLS setup).
    #[error("http client setup failed: {0}")]
    Client(String),
    /// Connection, TLS or timeout error.
    #[error("request to `{url}` failed: {reason}")]
    Transport {
        /// Where.
        url: String,
        /// What happened.
        reason: String,
    },
    /// Not 200 OK (redirects are not followed and land here).
    #[error("`{url}` answered http {status}")]
    Status {
        /// Where.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The body exceeded the size limit.
    #[error("`{url}` sent more than {limit} bytes")]
    TooLarge {
        /// Where.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// The discovery document is not a JSON object or lacks fields.
    #[error("discovery document is invalid: {0}")]
    Discovery(String),
    /// The discovery document names another issuer (OIDC Discovery §4.3).
    #[error("discovery document names issuer `{found}`, expected `{expected}`")]
    IssuerMismatch {
        /// Configured.
        expected: String,
        /// Found (escaped).
        found: String,
    },
    /// `jwks_uri` is not https.
    #[error("jwks_uri `{0}` is not an https url")]
    InsecureJwksUri(String),
    /// The JWKS document was refused.
    #[error("jwks is invalid: {0}")]
    Jwks(#[from] JwksError),
    /// SECURITY: the URL's host is, or resolves only to, loopback, private,
    /// link-local or other non-public addresses, and the trust does not set
    /// `allow_private_network` (server-side request forgery guard).
    #[error(
        "`{url}` was not fetched: {reason}, and the trust does not set `allow_private_network`"
    )]
    PrivateAddress {
        /// Where (escaped).
        url: String,
        /// Which address, and what kind.
        reason: String,
    },
}

impl FetchError {
    /// A stable code for `/readyz` and metrics.
    pub fn reason_code(&self) -> &'static str {
        match self {
            FetchError::Client(_) => "jwks_client_setup",
            FetchError::Transport { .. } => "jwks_transport",
            FetchError::Status { .. } => "jwks_http_status",
            FetchError::TooLarge { .. } => "jwks_too_large",
            FetchError::Discovery(_) => "discovery_invalid",
            FetchError::IssuerMismatch { .. } => "discovery_issuer_mismatch",
            FetchError::InsecureJwksUri(_) => "jwks_uri_insecure",
            FetchError::Jwks(_) => "jwks_invalid",
            FetchError::PrivateAddress { .. } => "jwks_private_address",
        }
    }
}

/// An HTTPS client for discovery and JWKS: rustls, no redirects, bounded bodies,
/// and the peer addresses `access` allows.
#[derive(Debug, Clone)]
pub struct HttpFetcher {
    client: reqwest::Client,
    limits: FetchLimits,
    access: NetworkAccess,
}

impl HttpFetcher {
    /// Builds a fetcher trusting the Mozilla roots plus `extra_ca_pem` (for private
    /// issuers) that connects to the addresses `access` allows.
    ///
    /// With [`NetworkAccess::PublicOnly`] the fetcher connects directly, never
    /// through a proxy named by `HTTPS_PROXY` and the like: a proxy would resolve
    /// the name itself, out of reach of the address check.
    pub fn new(
        extra_ca_pem: Option<&[u8]>,
        limits: FetchLimits,
        access: NetworkAccess,
    ) -> Result<Self, FetchError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(pem) = extra_ca_pem {
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| FetchError::Client(format!("ca bundle: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| FetchError::Client(format!("ca bundle: {e}")))?;
                added += 1;
            }
            if added == 0 {
                return Err(FetchError::Client("ca bundle holds no certificate".into()));
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| FetchError::Client(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut builder = reqwest::Client::builder();
        if access == NetworkAccess::PublicOnly {
            // SECURITY: the check is on the addresses the client connects to, made
            // when it connects (DNS rebinding cannot slip past a check made earlier).
            builder = builder.dns_resolver(PublicOnlyResolver).no_proxy();
        }
        let client = builder
            .tls_backend_preconfigured(tls)
            // SECURITY: a redirect could send the fetch to an attacker or an internal
            // address; issuers publish their final URLs.
            .redirect(reqwest::redirect::Policy::none())
            .https_only(true)
            .timeout(limits.timeout)
            .connect_timeout(limits.timeout)
            .user_agent(concat!("legate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Client(e.to_string()))?;
        Ok(Self {
            client,
            limits,
            access,
        })
    }

    /// GETs `url` and returns the body, enforcing the allowed addresses, status
    /// 200 and the size limit.
    pub async fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let private = |reason: String| FetchError::PrivateAddress {
            url: escape_untrusted(url),
            reason,
        };
        if self.access == NetworkAccess::PublicOnly {
            // The client connects to an IP-literal host without asking the resolver.
            refuse_non_public_host(url).map_err(|e| private(e.0))?;
        }
        let transport = |e: reqwest::Error| FetchError::Transport {
            url: url.to_owned(),
            reason: error_chain(&e),
        };
        let mut response = self
            .client
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| match non_public_cause(&e) {
                Some(reason) => private(reason),
                None => transport(e),
            })?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status,
            });
        }
        let limit = self.limits.max_body_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(FetchError::TooLarge {
                url: url.to_owned(),
                limit,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > limit {
                return Err(FetchError::TooLarge {
                    url: url.to_owned(),
                    limit,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// OIDC Discovery 1.0 §4: fetches `{issuer}/.well-known/openid-configuration`,
    /// checks its `issuer` is byte-for-byte the configured one (§4.3, mix-up defence)
    /// and returns its https `jwks_uri`.
    pub async fn discover_jwks_uri(&self, issuer: &str) -> Result<String, FetchError> {
        let url = format!(
            "{}{OIDC_DISCOVERY_PATH}",
            issuer.strip_suffix('/').unwrap_or(issuer)
        );
        let body = self.get(&url).await?;
        let doc = json::parse_object(&body).map_err(|e| FetchError::Discovery(e.to_string()))?;
        match doc.get("issuer") {
            Some(Value::String(found)) if found == issuer => {}
            Some(Value::String(found)) => {
                return Err(FetchError::IssuerMismatch {
                    expected: issuer.to_owned(),
                    found: escape_untrusted(found),
                });
            }
            _ => return Err(FetchError::Discovery("no string `issuer`".into())),
        }
        let Some(Value::String(jwks_uri)) = doc.get("jwks_uri") else {
            return Err(FetchError::Discovery("no string `jwks_uri`".into()));
        };
        if !jwks_uri.starts_with("https://") {
            return Err(FetchError::InsecureJwksUri(escape_untrusted(jwks_uri)));
        }
        Ok(jwks_uri.clone())
    }

    /// Fetches and parses a JWKS.
    pub async fn fetch_jwks(&self, url: &str) -> Result<(KeySet, Vec<KeyWarning>), FetchError> {
        let body = self.get(url).await?;
        Ok(KeySet::from_jwks(&body)?)
    }
}

/// The resolver's refusal, when that is why the request failed.
fn non_public_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(ResolveError::NonPublic(host)) = s.downcast_ref::<ResolveError>() {
            return Some(host.0.clone());
        }
        source = s.source();
    }
    None
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::panic,
        reason = "tests: failing loudly is the point"
    )]

    use super::*;

    fn fetcher(access: NetworkAccess) -> HttpFetcher {
        HttpFetcher::new(None, FetchLimits::default(), access).unwrap()
    }

    /// A listener on loopback that no one accepts from: a connection attempt would
    /// complete in the kernel and wait in its queue.
    fn loopback_listener() -> (std::net::TcpListener, u16) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        (listener, port)
    }

    fn assert_no_connection(listener: &std::net::TcpListener) {
        match listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok((_, peer)) => panic!("a connection from {peer} reached the listener"),
            Err(e) => panic!("accept failed: {e}"),
        }
    }

    /// Stops SSRF to loopback through the JWKS or discovery URL, by IP literal (in
    /// several spellings) and by name: the fetch fails with `PrivateAddress` and
    /// no connection reaches the listener.
    #[tokio::test]
    async fn public_only_fetcher_never_connects_to_loopback() {
        let (listener, port) = loopback_listener();
        let f = fetcher(NetworkAccess::PublicOnly);
        for url in [
            format!("https://127.0.0.1:{port}/jwks"),
            format!("https://2130706433:{port}/jwks"),
            format!("https://[::ffff:127.0.0.1]:{port}/jwks"),
            format!("https://localhost:{port}/jwks"),
        ] {
            let e = f.get(&url).await.unwrap_err();
            assert!(matches!(e, FetchError::PrivateAddress { .. }), "{url}: {e}");
            assert_eq!(e.reason_code(), "jwks_private_address");
            let text = e.to_string();
            assert!(text.contains("loopback"), "{text}");
            assert!(text.contains("allow_private_network"), "{text}");
        }
        assert_no_connection(&listener);
    }

    /// The control for the test above: with private networks allowed, the same
    /// fetch does connect (and fails later, at TLS, as the listener speaks none).
    #[tokio::test]
    async fn private_allowed_fetcher_connects_to_loopback() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let f = fetcher(NetworkAccess::PrivateAllowed);
        let url = format!("https://localhost:{port}/jwks");
        let (result, accepted) = tokio::join!(f.get(&url), async {
            let (stream, _) = listener.accept().await.unwrap();
            drop(stream);
        });
        let () = accepted;
        let e = result.unwrap_err();
        assert!(matches!(e, FetchError::Transport { .. }), "{e}");
    }
}
