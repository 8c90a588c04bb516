//! An upstream OIDC issuer written for the tests: HTTPS (tokio-rustls with the
//! [`TestPki`] certificate) on 127.0.0.1, serving
//! `/.well-known/openid-configuration` (its `issuer` is `https://localhost:PORT`,
//! its `jwks_uri` on the same server) and `/jwks`.
//!
//! Unlike the third-party provider in `peers.rs`, its behaviour is under the
//! test's control through shared [`Knobs`]: the published JWKS can be replaced
//! (key rotation) and the discovery document rewritten; either endpoint can be
//! made to fail (HTTP 503, or the connection dropped without an answer) to
//! simulate an outage, to redirect elsewhere, or to send its body a few bytes at
//! a time (slow drip, chunked); and every request is counted per endpoint.

#![allow(
    dead_code,
    reason = "shared test helpers: not every test uses every helper"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test harness code: failing loudly is the point"
)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use legate_testkit::testkeys::TestKey;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::peers::TestPki;

/// The discovery path (OIDC Discovery 1.0 §4), spelled out: this issuer stands for a
/// third party and must not share Legate's definition of the path.
pub const DISCOVERY: &str = "/.well-known/openid-configuration";
/// Where this issuer publishes its keys.
pub const JWKS: &str = "/jwks";

/// Suffix of the path a [`Mode::Redirect`] points at. That path serves the same
/// document, so following the redirect would succeed; it counts as an "other" hit.
pub const MOVED: &str = "-moved";

/// How an endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 with the document.
    Up,
    /// HTTP 503 with a small body.
    Unavailable,
    /// The request is read, then the connection is closed without an answer.
    Drop,
    /// `302 Found` to the same path plus [`MOVED`].
    Redirect,
    /// 200 with the document sent chunked (no `Content-Length`), `chunk` bytes
    /// at a time with `delay_ms` between chunks.
    Drip {
        /// Bytes per chunk.
        chunk: usize,
        /// Pause before each chunk.
        delay_ms: u64,
    },
}

/// What the test controls and observes, shared with the server task.
#[derive(Debug)]
pub struct Knobs {
    jwks: Mutex<Value>,
    /// Replaces the generated discovery document when set.
    discovery: Mutex<Option<Value>>,
    jwks_mode: Mutex<Mode>,
    discovery_mode: Mutex<Mode>,
    jwks_hits: AtomicUsize,
    discovery_hits: AtomicUsize,
    other_hits: AtomicUsize,
}

/// A running test issuer. The server stops when this is dropped.
#[derive(Debug)]
pub struct TestIssuer {
    /// `https://localhost:<port>`: discovery `issuer` and the tokens' `iss`.
    pub issuer: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
    knobs: Arc<Knobs>,
    task: JoinHandle<()>,
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A JWKS document publishing the public halves of `keys`.
pub fn jwks_of(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>() })
}

impl TestIssuer {
    /// Starts an issuer publishing `keys`, with the server certificate of `pki`.
    pub async fn start(pki: &TestPki, keys: &[&TestKey]) -> TestIssuer {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.cert_path)
            .expect("read server.pem")
            .collect::<Result<_, _>>()
            .expect("parse server.pem");
        let key = PrivateKeyDer::from_pem_file(&pki.key_path).expect("read server.key");
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server certificate and key");
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind issuer");
        let port = listener.local_addr().expect("local addr").port();
        let issuer = format!("https://localhost:{port}");
        let knobs = Arc::new(Knobs {
            jwks: Mutex::new(jwks_of(keys)),
            discovery: Mutex::new(None),
            jwks_mode: Mutex::new(Mode::Up),
            discovery_mode: Mutex::new(Mode::Up),
            jwks_hits: AtomicUsize::new(0),
            discovery_hits: AtomicUsize::new(0),
            other_hits: AtomicUsize::new(0),
        });

        let task = {
            let knobs = knobs.clone();
            let issuer = issuer.clone();
            tokio::spawn(async move {
                let mut connections = tokio::task::JoinSet::new();
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    let knobs = knobs.clone();
                    let issuer = issuer.clone();
                    connections.spawn(async move {
                        // A failed handshake (e.g. a client that does not trust the
                        // test CA) simply ends the connection.
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let service = hyper::service::service_fn(move |req| {
                            let knobs = knobs.clone();
                            let issuer = issuer.clone();
                            async move { handle(&knobs, &issuer, &req) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                    // Reap finished connections so the set does not grow.
                    while connections.try_join_next().is_some() {}
                }
            })
        };

        TestIssuer {
            issuer,
            port,
            knobs,
            task,
        }
    }

    /// The discovery document's URL.
    pub fn discovery_url(&self) -> String {
        format!("{}{DISCOVERY}", self.issuer)
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("{}{JWKS}", self.issuer)
    }

    /// Publishes `keys` from now on (rotation).
    pub fn publish(&self, keys: &[&TestKey]) {
        self.set_jwks(jwks_of(keys));
    }

    /// Publishes `jwks` (any JSON) from now on.
    pub fn set_jwks(&self, jwks: Value) {
        *self.knobs.jwks.lock().unwrap() = jwks;
    }

    /// The discovery document this issuer serves unless replaced.
    pub fn standard_discovery(&self) -> Value {
        standard_discovery(&self.issuer)
    }

    /// Serves `doc` (any JSON) as the discovery document from now on; `None`
    /// restores the standard one.
    pub fn set_discovery(&self, doc: Option<Value>) {
        *self.knobs.discovery.lock().unwrap() = doc;
    }

    /// How the JWKS endpoint answers from now on.
    pub fn set_jwks_mode(&self, mode: Mode) {
        *self.knobs.jwks_mode.lock().unwrap() = mode;
    }

    /// How the discovery endpoint answers from now on.
    pub fn set_discovery_mode(&self, mode: Mode) {
        *self.knobs.discovery_mode.lock().unwrap() = mode;
    }

    /// Both endpoints answer `mode` (an outage, or the recovery with [`Mode::Up`]).
    pub fn set_mode(&self, mode: Mode) {
        self.set_jwks_mode(mode);
        self.set_discovery_mode(mode);
    }

    /// JWKS requests received so far (answered or not).
    pub fn jwks_hits(&self) -> usize {
        self.knobs.jwks_hits.load(Ordering::SeqCst)
    }

    /// Discovery requests received so far (answered or not).
    pub fn discovery_hits(&self) -> usize {
        self.knobs.discovery_hits.load(Ordering::SeqCst)
    }

    /// Requests for any other path.
    pub fn other_hits(&self) -> usize {
        self.knobs.other_hits.load(Ordering::SeqCst)
    }

    /// (discovery, jwks, other) request counts.
    pub fn hits(&self) -> (usize, usize, usize) {
        (self.discovery_hits(), self.jwks_hits(), self.other_hits())
    }

    /// Waits (up to 10 s) until the discovery endpoint has seen more than
    /// `seen` requests: for fetches Legate makes in the background.
    pub async fn wait_for_discovery_hits_above(&self, seen: usize) -> usize {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.discovery_hits();
            if now > seen {
                return now;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no discovery request arrived within 10 s (still {now})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The discovery document of an issuer at `issuer`.
fn standard_discovery(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}{JWKS}"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
    })
}

/// The answer of the issuer to one request. `Err` makes hyper close the
/// connection without responding ([`Mode::Drop`]).
fn handle(
    knobs: &Knobs,
    issuer: &str,
    req: &Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    let path = req.uri().path();
    let (mode, body) = if path == DISCOVERY {
        knobs.discovery_hits.fetch_add(1, Ordering::SeqCst);
        let doc = knobs
            .discovery
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| standard_discovery(issuer));
        (*knobs.discovery_mode.lock().unwrap(), doc)
    } else if path == JWKS {
        knobs.jwks_hits.fetch_add(1, Ordering::SeqCst);
        let jwks = knobs.jwks.lock().unwrap().clone();
        (*knobs.jwks_mode.lock().unwrap(), jwks)
    } else if path == format!("{DISCOVERY}{MOVED}") {
        knobs.other_hits.fetch_add(1, Ordering::SeqCst);
        let doc = standard_discovery(issuer);
        (Mode::Up, doc)
    } else if path == format!("{JWKS}{MOVED}") {
        knobs.other_hits.fetch_add(1, Ordering::SeqCst);
        let jwks = knobs.jwks.lock().unwrap().clone();
        (Mode::Up, jwks)
    } else {
        knobs.other_hits.fetch_add(1, Ordering::SeqCst);
        return Ok(response(StatusCode::NOT_FOUND, Body::full("not found")));
    };
    match mode {
        Mode::Up => Ok(response(StatusCode::OK, Body::full(body.to_string()))),
        Mode::Unavailable => Ok(response(
            StatusCode::SERVICE_UNAVAILABLE,
            Body::full(r#"{"error":"down for the test"}"#),
        )),
        Mode::Drop => Err(std::io::Error::other("dropping the connection")),
        Mode::Redirect => {
            let mut r = response(StatusCode::FOUND, Body::full(""));
            r.headers_mut().insert(
                hyper::header::LOCATION,
                hyper::header::HeaderValue::from_str(&format!("{issuer}{path}{MOVED}")).unwrap(),
            );
            Ok(r)
        }
        Mode::Drip { chunk, delay_ms } => Ok(response(
            StatusCode::OK,
            Body::drip(body.to_string(), chunk, Duration::from_millis(delay_ms)),
        )),
    }
}

fn response(status: StatusCode, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// A response body: whole (with `Content-Length`) or dripped chunk by chunk
/// (chunked transfer encoding, no length announced).
#[derive(Debug)]
pub struct Body {
    data: Vec<u8>,
    sent: usize,
    chunk: usize,
    delay: Duration,
    whole: bool,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Body {
    fn full(data: impl Into<String>) -> Body {
        let data = data.into().into_bytes();
        Body {
            chunk: data.len().max(1),
            data,
            sent: 0,
            delay: Duration::ZERO,
            whole: true,
            pause: None,
        }
    }

    fn drip(data: String, chunk: usize, delay: Duration) -> Body {
        Body {
            data: data.into_bytes(),
            sent: 0,
            chunk: chunk.max(1),
            delay,
            whole: false,
            pause: None,
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        if this.sent >= this.data.len() {
            return Poll::Ready(None);
        }
        if !this.delay.is_zero() {
            let delay = this.delay;
            let pause = this
                .pause
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.pause = None;
        }
        let end = (this.sent + this.chunk).min(this.data.len());
        let chunk = Bytes::copy_from_slice(this.data.get(this.sent..end).unwrap_or_default());
        this.sent = end;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.data.len()
    }

    fn size_hint(&self) -> SizeHint {
        if self.whole {
            SizeHint::with_exact(self.data.len().saturating_sub(self.sent) as u64)
        } else {
            SizeHint::default()
        }
    }
}
