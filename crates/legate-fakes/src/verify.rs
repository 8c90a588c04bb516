//! The assertion check every fake runs, the way the clouds do it: OIDC discovery at the
//! token's `iss`, the JWKS at the discovery document's `jwks_uri`, the key by `kid`, the
//! signature, then the registered claims.
//!
//! The signature is checked by `jsonwebtoken` (aws-lc-rs), independently of Legate's own
//! verifier; the time claims are checked here against the fake's injected clock (so a
//! test driving Legate with a manual clock can hand the fake the same clock).
//!
//! Nothing is cached: every assertion fetches discovery and JWKS afresh, so key
//! rotation is always seen at once, and an unreachable issuer always fails.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use legate_core::{Clock, UnixSeconds};
use serde_json::{Map, Value};

use crate::server::StartError;

/// The largest discovery document or JWKS a fake reads.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// How a fake reaches issuers and which clock it reads.
#[derive(Clone)]
pub struct Options {
    /// The clock the fake reads for `exp`/`iat`/`nbf` and for the lifetimes it issues.
    /// Default: the system clock.
    pub clock: Arc<dyn Clock>,
    /// Extra CA certificates (PEM) trusted for `https://` issuers, besides the WebPKI
    /// roots (for an issuer with a private test certificate).
    pub ca_pem: Option<Vec<u8>>,
    /// Timeout of each discovery or JWKS fetch. Default: 5 s.
    pub fetch_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Arc::new(crate::wire::SystemClock),
            ca_pem: None,
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("clock", &self.clock)
            .field("ca_pem", &self.ca_pem.as_ref().map(|p| p.len()))
            .field("fetch_timeout", &self.fetch_timeout)
            .finish()
    }
}

/// Whether `url` is one a cloud would fetch keys from: `https://`, or `http://` on a
/// loopback address (the tests').
pub(crate) fn fetchable_url(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    match parsed.scheme() {
        "https" => parsed.host_str().is_some(),
        "http" => parsed.host_str().is_some_and(|host| {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            host.eq_ignore_ascii_case("localhost")
                || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }),
        _ => false,
    }
}

/// What a fake accepts, besides the issuer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules<'a> {
    /// The JOSE `alg` values the service accepts.
    pub algorithms: &'a [Algorithm],
    /// The longest `exp - iat` the service accepts, if it has a cap.
    pub max_lifetime: Option<u64>,
}

/// The parts of an assertion read before any check (untrusted).
#[derive(Debug, Clone)]
pub(crate) struct Unverified {
    /// The header's `alg`, as sent.
    pub alg: String,
    /// The header's `kid`, if any.
    pub kid: Option<String>,
    /// The payload.
    pub claims: Map<String, Value>,
}

impl Unverified {
    /// Splits and decodes a compact JWS without checking anything else.
    pub(crate) fn parse(token: &str) -> Result<Unverified, Refusal> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refusal::Malformed("not a compact JWS (three parts)".into()));
        };
        if signature.is_empty() {
            return Err(Refusal::Malformed("empty signature".into()));
        }
        let header = decode_object(header, "header")?;
        let claims = decode_object(payload, "payload")?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| Refusal::Malformed("no `alg` in the header".into()))?
            .to_owned();
        let kid = header.get("kid").and_then(Value::as_str).map(str::to_owned);
        Ok(Unverified { alg, kid, claims })
    }

    /// The `iss` claim, if a string.
    pub(crate) fn iss(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }

    /// The `sub` claim, if a string.
    pub(crate) fn sub(&self) -> Option<&str> {
        self.claims.get("sub").and_then(Value::as_str)
    }

    /// The `aud` claim as a list (a string is a list of one; anything else is empty).
    pub(crate) fn aud(&self) -> Vec<String> {
        audiences(self.claims.get("aud"))
    }
}

fn audiences(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn decode_object(part: &str, what: &str) -> Result<Map<String, Value>, Refusal> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Refusal::Malformed(format!("the {what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Refusal::Malformed(format!(
            "the {what} is not a JSON object"
        ))),
    }
}

/// A verified assertion.
#[derive(Debug, Clone)]
pub(crate) struct Assertion {
    pub alg: Algorithm,
    pub sub: String,
    pub aud: Vec<String>,
    pub claims: Map<String, Value>,
}

/// Why an assertion was refused; each fake maps it to its service's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not a well-formed JWS/JWT, or a claim of the wrong type.
    Malformed(String),
    /// The header's `alg` is not one the service accepts.
    UnsupportedAlg(String),
    /// `iss` is missing or not the trusted issuer.
    UntrustedIssuer(String),
    /// Discovery or JWKS could not be fetched or made no sense.
    IssuerUnreachable(String),
    /// No key with the header's `kid` (or no `kid`), or the key does not fit `alg`.
    UnknownKey(String),
    /// The signature does not verify.
    BadSignature,
    /// A required claim is missing.
    MissingClaim(&'static str),
    /// `exp` is not after now.
    Expired { exp: UnixSeconds, now: UnixSeconds },
    /// `iat` or `nbf` is after now.
    NotYetValid { from: UnixSeconds, now: UnixSeconds },
    /// `exp - iat` exceeds the service's cap.
    LifetimeTooLong { lifetime: i64, max: u64 },
    /// `aud` holds none of the accepted audiences.
    WrongAudience(Vec<String>),
}

/// Fetches issuer documents and checks assertions.
#[derive(Clone)]
pub(crate) struct Verifier {
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    pub(crate) fn new(options: &Options) -> Result<Verifier, StartError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(pem) = &options.ca_pem {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| StartError::Client(format!("ca_pem: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| StartError::Client(format!("ca_pem: {e}")))?;
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StartError::Client(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(options.fetch_timeout)
            .connect_timeout(options.fetch_timeout)
            .build()
            .map_err(|e| StartError::Client(e.to_string()))?;
        Ok(Verifier {
            client,
            clock: Arc::clone(&options.clock),
        })
    }

    /// The fake's current time.
    pub(crate) fn now(&self) -> UnixSeconds {
        self.clock.now()
    }

    /// Verifies `token` as coming from `issuer` (exactly): algorithm, issuer, keys,
    /// signature, time claims and `sub`. The audience is the caller's to check
    /// ([`Assertion::aud`]); `accepted` non-empty makes it checked here too.
    pub(crate) async fn verify(
        &self,
        token: &str,
        issuer: &str,
        accepted: &[String],
        rules: Rules<'_>,
    ) -> Result<Assertion, Refusal> {
        let unverified = Unverified::parse(token)?;
        let alg = rules
            .algorithms
            .iter()
            .copied()
            .find(|a| alg_name(*a) == unverified.alg)
            .ok_or_else(|| Refusal::UnsupportedAlg(unverified.alg.clone()))?;

        // SECURITY: the issuer is compared byte for byte before any network call, so
        // a token cannot make the fake fetch from an address of its choosing.
        match unverified.iss() {
            Some(iss) if iss == issuer => {}
            other => return Err(Refusal::UntrustedIssuer(other.unwrap_or_default().into())),
        }
        let jwks = self.fetch_jwks(issuer).await?;

        let kid = unverified
            .kid
            .clone()
            .ok_or_else(|| Refusal::UnknownKey("the header has no `kid`".into()))?;
        let key = select_key(&jwks, &kid, alg)?;

        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        if let Err(e) = jsonwebtoken::decode::<Value>(token, &key, &validation) {
            return Err(match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => Refusal::BadSignature,
                jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey
                | jsonwebtoken::errors::ErrorKind::InvalidRsaKey(_)
                | jsonwebtoken::errors::ErrorKind::InvalidKeyFormat => {
                    Refusal::UnknownKey(format!("the key `{kid}` is unusable"))
                }
                _ => Refusal::BadSignature,
            });
        }

        let claims = unverified.claims;
        let now = self.clock.now();
        let exp = int_claim(&claims, "exp")?.ok_or(Refusal::MissingClaim("exp"))?;
        let iat = int_claim(&claims, "iat")?.ok_or(Refusal::MissingClaim("iat"))?;
        let nbf = int_claim(&claims, "nbf")?;
        if now >= exp {
            return Err(Refusal::Expired { exp, now });
        }
        let from = nbf.map_or(iat, |nbf| nbf.max(iat));
        if from > now {
            return Err(Refusal::NotYetValid { from, now });
        }
        if let Some(max) = rules.max_lifetime {
            let lifetime = exp.saturating_sub(iat);
            if u64::try_from(lifetime).map_or(true, |l| l > max) {
                return Err(Refusal::LifetimeTooLong { lifetime, max });
            }
        }
        let sub = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::String(_)) | None => return Err(Refusal::MissingClaim("sub")),
            Some(_) => return Err(Refusal::Malformed("`sub` is not a string".into())),
        };
        let aud = audiences(claims.get("aud"));
        if aud.is_empty() {
            return Err(Refusal::MissingClaim("aud"));
        }
        if !accepted.is_empty() && !aud.iter().any(|a| accepted.contains(a)) {
            return Err(Refusal::WrongAudience(aud));
        }
        Ok(Assertion {
            alg,
            sub,
            aud,
            claims,
        })
    }

    /// Discovery at `issuer`, then its `jwks_uri`.
    async fn fetch_jwks(&self, issuer: &str) -> Result<Value, Refusal> {
        if !fetchable_url(issuer) {
            return Err(Refusal::IssuerUnreachable(format!(
                "`{issuer}` is neither https nor http on loopback"
            )));
        }
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let discovery = self.get_json(&discovery_url).await?;
        // OpenID Connect Discovery 1.0 §4.3: the document's issuer must be identical
        // to the URL it was fetched for.
        if discovery.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err(Refusal::IssuerUnreachable(format!(
                "the discovery document at `{discovery_url}` names another issuer"
            )));
        }
        let jwks_uri = discovery
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| Refusal::IssuerUnreachable("discovery has no `jwks_uri`".into()))?;
        if !fetchable_url(jwks_uri) {
            return Err(Refusal::IssuerUnreachable(format!(
                "`jwks_uri` `{jwks_uri}` is neither https nor http on loopback"
            )));
        }
        self.get_json(jwks_uri).await
    }

    async fn get_json(&self, url: &str) -> Result<Value, Refusal> {
        let unreachable = |why: String| Refusal::IssuerUnreachable(format!("GET `{url}`: {why}"));
        let mut response = self
            .client
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(unreachable(format!("HTTP {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unreachable(e.to_string()))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(unreachable(format!(
                    "larger than {MAX_DOCUMENT_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| unreachable(format!("not JSON: {e}")))
    }
}

/// The key named `kid` in `jwks` that can verify `alg`.
fn select_key(jwks: &Value, kid: &str, alg: Algorithm) -> Result<DecodingKey, Refusal> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| Refusal::IssuerUnreachable("the JWKS has no `keys` array".into()))?;
    let unknown = || Refusal::UnknownKey(format!("no key `{kid}` for `{}`", alg_name(alg)));
    let candidates = keys
        .iter()
        .filter(|k| k.get("kid").and_then(Value::as_str) == Some(kid));
    for candidate in candidates {
        if let Some(key_alg) = candidate.get("alg").and_then(Value::as_str)
            && key_alg != alg_name(alg)
        {
            continue;
        }
        let kty = candidate.get("kty").and_then(Value::as_str);
        let fits = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => kty == Some("RSA"),
            Algorithm::ES256 | Algorithm::ES384 => kty == Some("EC"),
            _ => false,
        };
        if !fits {
            continue;
        }
        let Ok(jwk) = serde_json::from_value::<Jwk>(candidate.clone()) else {
            continue;
        };
        if let Ok(key) = DecodingKey::from_jwk(&jwk) {
            return Ok(key);
        }
    }
    Err(unknown())
}

/// An integer claim: `Ok(None)` when absent, refused when not an integer.
fn int_claim(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, Refusal> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| Refusal::Malformed(format!("`{name}` is not an integer"))),
    }
}

/// The JOSE name of `alg`.
pub(crate) fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        // `Algorithm` is non-exhaustive; a future variant is never one a fake accepts.
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_is_fetched() {
        assert!(fetchable_url("https://issuer.example.com"));
        assert!(fetchable_url("http://127.0.0.1:8080"));
        assert!(fetchable_url("http://localhost:8080/x"));
        assert!(fetchable_url("http://[::1]:8080"));
        assert!(!fetchable_url("http://issuer.example.com"));
        assert!(!fetchable_url("http://10.0.0.1"));
        assert!(!fetchable_url("ftp://127.0.0.1"));
        assert!(!fetchable_url("not a url"));
    }

    #[test]
    fn parse_refuses_what_is_not_a_jws() {
        assert!(matches!(
            Unverified::parse("a.b"),
            Err(Refusal::Malformed(_))
        ));
        assert!(matches!(
            Unverified::parse("e30.e30."),
            Err(Refusal::Malformed(_))
        ));
        assert!(matches!(
            Unverified::parse("e30.e30.c2ln"),
            Err(Refusal::Malformed(_)) // no alg
        ));
    }
}
