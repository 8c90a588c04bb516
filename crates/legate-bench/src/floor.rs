//! The floor: what any RS256 token-exchange endpoint must at least do, with nothing of
//! Legate in it. A bare axum router, `POST /token`: extract the form (`subject_token`),
//! split the compact JWS, base64url-decode the signature and the payload, verify the
//! RS256 signature over the signing input with an aws-lc-rs public key parsed once at
//! start-up, parse the claims as JSON, and answer a small JSON document naming `sub`.
//!
//! It checks nothing else (no header, no claims, no policy, no replay, no audit, no
//! minting): it is the reference the benchmark divides by, not a server to copy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::stop;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The JWKS whose first key (RSA) verifies the tokens.
    #[arg(long)]
    pub jwks: PathBuf,
    /// Where to listen; the bound address is printed as `listening ADDR`.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Stop after this many seconds at the latest (else when standard input closes).
    #[arg(long, default_value_t = 300)]
    pub max_secs: u64,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let runtime = crate::runtime()?;
    let result = runtime.block_on(serve(args));
    runtime.shutdown_background();
    result
}

struct Floor {
    key: ParsedPublicKey,
    verified: AtomicU64,
    refused: AtomicU64,
}

/// The form members the floor reads; the others are ignored.
#[derive(serde::Deserialize)]
struct ExchangeForm {
    subject_token: String,
}

async fn serve(args: &Args) -> anyhow::Result<()> {
    let key = rsa_key(&args.jwks)?;
    let floor = Arc::new(Floor {
        key,
        verified: AtomicU64::new(0),
        refused: AtomicU64::new(0),
    });
    let router = Router::new()
        .route("/token", post(token))
        .with_state(Arc::clone(&floor));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    stop::announce(&format!("listening {}", listener.local_addr()?))?;
    axum::serve(listener, router)
        .with_graceful_shutdown(stop::stopped(args.max_secs))
        .await?;
    stop::announce(
        &json!({
            "server": "floor",
            "verified": floor.verified.load(Ordering::Relaxed),
            "refused": floor.refused.load(Ordering::Relaxed),
        })
        .to_string(),
    )
}

/// The first key of the JWKS, as an RS256 verification key.
fn rsa_key(path: &std::path::Path) -> anyhow::Result<ParsedPublicKey> {
    let jwks: Value = serde_json::from_slice(
        &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    )?;
    let member = |name: &str| -> anyhow::Result<Vec<u8>> {
        let text = jwks
            .pointer(&format!("/keys/0/{name}"))
            .and_then(Value::as_str)
            .with_context(|| format!("the JWKS's first key has no `{name}`"))?;
        Ok(URL_SAFE_NO_PAD.decode(text)?)
    };
    let (n, e) = (member("n")?, member("e")?);
    RsaPublicKeyComponents { n, e }
        .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
        .map_err(|e| anyhow::anyhow!("the RSA key is refused: {e}"))
}

async fn token(State(floor): State<Arc<Floor>>, Form(form): Form<ExchangeForm>) -> Response {
    match floor.check(&form.subject_token) {
        Some(sub) => {
            floor.verified.fetch_add(1, Ordering::Relaxed);
            Json(json!({
                "access_token": "floor",
                "issued_token_type": "urn:ietf:params:oauth:token-type:jwt",
                "token_type": "N_A",
                "expires_in": 300,
                "sub": sub,
            }))
            .into_response()
        }
        None => {
            floor.refused.fetch_add(1, Ordering::Relaxed);
            (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": "invalid_request" })),
            )
                .into_response()
        }
    }
}

impl Floor {
    /// The verified token's `sub`, or `None`.
    fn check(&self, token: &str) -> Option<String> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let signing_input = token.get(..header.len() + 1 + payload.len())?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        self.key
            .verify_sig(signing_input.as_bytes(), &signature)
            .ok()?;
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        claims.get("sub")?.as_str().map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, JWT_TARGET};

    fn token(files: &fixtures::Files) -> String {
        let body = std::fs::read(files.body(JWT_TARGET)).unwrap();
        form_urlencoded::parse(&body)
            .find(|(k, _)| k == "subject_token")
            .unwrap()
            .1
            .into_owned()
    }

    /// Stops the floor from being a floor of nothing: it really verifies the signature,
    /// so a token whose payload was changed is refused, and the fixture token passes.
    #[test]
    fn the_floor_verifies_the_signature_of_the_fixture_token() {
        let dir = std::env::temp_dir().join(format!("legate-bench-floor-{}", std::process::id()));
        let files = fixtures::write(&dir).unwrap();
        let floor = Floor {
            key: rsa_key(&files.jwks()).unwrap(),
            verified: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        };
        let token = token(&files);
        assert_eq!(
            floor.check(&token).as_deref(),
            Some("repo:octo-org/deploy:ref:refs/heads/main")
        );
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(r#"{"sub":"repo:evil/x"}"#);
        parts[1] = &forged;
        assert_eq!(floor.check(&parts.join(".")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
