//! Helpers for the fakes' own tests: a manual clock, a test issuer, an HTTP client.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: failing loudly is the point"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use legate_core::{Clock, UnixSeconds};
use serde_json::Value;

use crate::{Options, TestIssuer};

/// The time every test starts at.
pub const T0: UnixSeconds = 1_768_465_800; // 2026-01-15T08:30:00Z

/// A clock the test moves.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixSeconds {
        self.0.load(Ordering::SeqCst)
    }
}

/// A manual clock at [`T0`], the options carrying it, and a test issuer on it.
pub async fn setup() -> (Arc<ManualClock>, Options, TestIssuer) {
    let clock = Arc::new(ManualClock(AtomicI64::new(T0)));
    let options = Options {
        clock: clock.clone(),
        ..Options::default()
    };
    let issuer = TestIssuer::start(clock.clone()).await.expect("test issuer");
    (clock, options, issuer)
}

/// A plain-HTTP client (rustls configured, as reqwest needs a provider).
pub fn http() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap()
}

/// POSTs a form; returns the status and body.
pub async fn post_form(url: &str, form: &[(&str, &str)]) -> (u16, String) {
    let response = http().post(url).form(form).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Parses a JSON body.
pub fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A compact JWS with an arbitrary header and a garbage signature (for `alg`
/// refusals that must not depend on a key).
pub fn unsigned(header: &Value, claims: &Value) -> String {
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.c2lnbmF0dXJl", b64(header), b64(claims))
}
