//! A tiny OIDC issuer for testing the fakes without Legate: it serves discovery and a
//! JWKS on `127.0.0.1:0` and signs whatever claims a test asks for, with freshly
//! generated keys (one P-256 key, kid [`EC_KID`]; one RSA-2048 key, kid [`RSA_KID`]).
//!
//! It signs with aws-lc-rs directly, so the fakes' verifier (jsonwebtoken) checks
//! signatures made by a different code path.

use std::sync::Arc;

use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RSA_PKCS1_SHA256,
    RSA_PKCS1_SHA384, RSA_PKCS1_SHA512, RSA_PSS_SHA256, RsaKeyPair,
};
use axum::Router;
use axum::routing::get;
use base64::Engine as _;
use legate_core::Clock;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::server::StartError;

/// The kid of the issuer's P-256 key.
pub const EC_KID: &str = "ec-1";
/// The kid of the issuer's RSA key.
pub const RSA_KID: &str = "rsa-1";

/// Why signing failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The issuer has no key for the algorithm.
    #[error("no test key signs `{0}`")]
    UnsupportedAlg(String),
    /// aws-lc-rs refused to sign.
    #[error("signing failed")]
    Crypto,
}

struct Keys {
    ec: EcdsaKeyPair,
    rsa: RsaKeyPair,
}

/// A running test issuer. Stops when dropped.
pub struct TestIssuer {
    url: String,
    keys: Arc<Keys>,
    clock: Arc<dyn Clock>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestIssuer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl TestIssuer {
    /// Generates the keys and serves `/.well-known/openid-configuration` (issuer
    /// `http://127.0.0.1:<port>`) and `/jwks`; `clock` sets `iat`/`exp` in
    /// [`claims`](Self::claims).
    ///
    /// # Errors
    /// When the port cannot be bound or the keys cannot be generated.
    pub async fn start(clock: Arc<dyn Clock>) -> Result<TestIssuer, StartError> {
        let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| StartError::Config("cannot generate a P-256 key".into()))?;
        let rsa = RsaKeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| StartError::Config("cannot generate an RSA key".into()))?;
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let url = format!("http://{}", listener.local_addr()?);

        let point = ec.public_key().as_ref();
        let (x, y) = (
            point.get(1..33).unwrap_or_default(),
            point.get(33..65).unwrap_or_default(),
        );
        let jwks = json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": EC_KID, "use": "sig", "alg": "ES256",
             "x": b64(x), "y": b64(y)},
            {"kty": "RSA", "kid": RSA_KID, "use": "sig",
             "n": b64(rsa.public_key().modulus().big_endian_without_leading_zero()),
             "e": b64(rsa.public_key().exponent().big_endian_without_leading_zero())},
        ]});
        let discovery = json!({
            "issuer": url,
            "jwks_uri": format!("{url}/jwks"),
            "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        });
        let router = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || {
                    let d = discovery.clone();
                    async move { axum::Json(d) }
                }),
            )
            .route(
                "/jwks",
                get(move || {
                    let j = jwks.clone();
                    async move { axum::Json(j) }
                }),
            );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(TestIssuer {
            url,
            keys: Arc::new(Keys { ec, rsa }),
            clock,
            task,
        })
    }

    /// `http://127.0.0.1:<port>`: the discovery `issuer`, byte for byte.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Claims as Legate sends them: `iss` = this issuer, `sub`, `aud`, `iat` = now,
    /// `exp` = now + `lifetime`, a random `jti`.
    pub fn claims(&self, sub: &str, aud: &str, lifetime: i64) -> Value {
        let now = self.clock.now();
        json!({
            "iss": self.url,
            "sub": sub,
            "aud": aud,
            "iat": now,
            "exp": now + lifetime,
            "jti": crate::wire::random_b64::<16>(),
        })
    }

    /// Signs `claims` with `alg` (`ES256`, `RS256`, `RS384`, `RS512`, `PS256`) and the
    /// key's own kid.
    ///
    /// # Errors
    /// For any other algorithm.
    pub fn sign(&self, alg: &str, claims: &Value) -> Result<String, SignError> {
        let kid = if alg.starts_with("ES") {
            EC_KID
        } else {
            RSA_KID
        };
        self.sign_with_header(&json!({"alg": alg, "kid": kid, "typ": "JWT"}), claims)
    }

    /// Signs `claims` under an arbitrary header; the key is chosen by the header's
    /// `alg` (an unknown `kid` in the header makes an "unknown key" test).
    ///
    /// # Errors
    /// When the header's `alg` is not one listed at [`sign`](Self::sign).
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> Result<String, SignError> {
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let signature = match alg {
            "ES256" => self
                .keys
                .ec
                .sign(&rng, input.as_bytes())
                .map_err(|_| SignError::Crypto)?
                .as_ref()
                .to_vec(),
            "RS256" | "RS384" | "RS512" | "PS256" => {
                let padding: &'static dyn aws_lc_rs::signature::RsaEncoding = match alg {
                    "RS384" => &RSA_PKCS1_SHA384,
                    "RS512" => &RSA_PKCS1_SHA512,
                    "PS256" => &RSA_PSS_SHA256,
                    _ => &RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0u8; self.keys.rsa.public_modulus_len()];
                self.keys
                    .rsa
                    .sign(padding, &rng, input.as_bytes(), &mut sig)
                    .map_err(|_| SignError::Crypto)?;
                sig
            }
            other => return Err(SignError::UnsupportedAlg(other.to_owned())),
        };
        Ok(format!("{input}.{}", b64(&signature)))
    }
}
