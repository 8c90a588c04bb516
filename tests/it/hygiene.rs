//! JWKS and discovery hygiene against a live HTTPS issuer: what Legate does when
//! the issuer (or whoever controls its documents) publishes something wrong.
//!
//! Two patterns recur. A *rotation under bad conditions*: Legate has warmed with
//! key "a"; the issuer then publishes "a" and a new key "b" in a way that must be
//! refused; a token signed by "b" makes Legate refresh (its `kid` is unknown), the
//! refresh fails, and the test checks that "b" is not trusted, that "a" keeps
//! working (the last good keys are kept), and that the failure is on record for
//! operators. And a *bad document from the start*: the issuer publishes a JWKS
//! with one bad key among good ones; the bad key is left out with a warning and
//! the good ones are used.
//!
//! A third group stops server-side request forgery: a trust that does not set
//! `allow_private_network` never connects to loopback (or any other non-public
//! address), whether a discovery document, a configured `jwks_uri` or DNS points
//! there. Every other test here runs with the flag set, as its issuer listens on
//! loopback (the harness's default).
//!
//! The refresh rules themselves (single flight, one fetch per 30 s, stale-if-error
//! bound) are covered in [`crate::keys`].

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests: failing loudly is the point"
)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use legate_testkit::testkeys::TestKey;
use legate_trust::FetchLimits;
use serde_json::{Value, json};

use crate::harness::{Fixture, Legate, Setup, TARGET, TrustSpec, upstream_claims};
use crate::issuer::{JWKS, Mode, TestIssuer, jwks_of};
use crate::peers::TestPki;

/// Legate's minimum gap between two fetches of one issuer's keys, plus one.
const PAST_REFRESH_GAP: i64 = 31;

/// Formatted `tracing` output of everything that runs on this test's thread.
///
/// `#[tokio::test]` runs a current-thread runtime, so Legate's server and its
/// background refreshes run on the test thread and log to the subscriber set
/// here, and to no other test's.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The trust's last fetch error as operators see it on `/status`.
async fn last_error(f: &Fixture) -> String {
    let ready = f.legate.operator.get("/status").await;
    ready.json["issuers"][0]["last_error"]
        .as_str()
        .unwrap_or_else(|| panic!("no last_error on /status: {}", ready.text))
        .to_owned()
}

/// The keys the trust's current document had left out, as `/status` shows them.
async fn ignored_keys(f: &Fixture) -> Vec<String> {
    let ready = f.legate.operator.get("/status").await;
    ready.json["issuers"][0]["ignored_keys"]
        .as_array()
        .unwrap_or_else(|| panic!("no ignored_keys on /status: {}", ready.text))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// Key "b", the key rotated in.
fn key_b() -> TestKey {
    TestKey::es256_b("key-b")
}

/// Lets the refresh gap pass and presents a token signed by `key`, which Legate
/// does not know yet. Returns the wire answer.
async fn present_rotated_key(f: &Fixture, key: &TestKey) -> (u16, Value) {
    f.legate.clock.advance(PAST_REFRESH_GAP);
    f.legate
        .exchange(&key.token(&f.claims(&json!({}))), TARGET, None)
        .await
}

/// The refresh triggered by key "b" failed: "b" is refused (generic answer on the
/// wire, `unknown_kid` in the audit log) and key "a" still verifies.
async fn assert_refused_rotation_kept_old_keys(f: &Fixture, status: u16, body: &Value) {
    f.legate.assert_rejected(status, body, "unknown_kid");
    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200, "the last good key keeps verifying: {body}");
}

/// Stops issuer mix-up through discovery (OIDC Discovery 1.0 §4.3): a discovery
/// document that names another issuer, even one differing by a trailing slash,
/// must not supply keys for this one.
#[tokio::test]
async fn discovery_naming_another_issuer_is_refused_and_old_keys_kept() {
    let f = Fixture::start().await;
    let b = key_b();
    f.issuer.publish(&[&f.key, &b]);
    let mut doc = f.issuer.standard_discovery();
    doc["issuer"] = json!(format!("{}/", f.issuer.issuer));
    f.issuer.set_discovery(Some(doc));
    let jwks_before = f.issuer.jwks_hits();

    let (status, body) = present_rotated_key(&f, &b).await;
    assert_refused_rotation_kept_old_keys(&f, status, &body).await;
    assert_eq!(
        f.issuer.jwks_hits(),
        jwks_before,
        "the JWKS named by a mismatched discovery document is never fetched"
    );
    let error = last_error(&f).await;
    assert!(error.contains("names issuer"), "{error}");
}

/// Stops a downgrade of the key fetch to plain HTTP, where anyone on the path
/// could substitute keys: a discovery document naming an `http://` jwks_uri is
/// refused without connecting to it.
#[tokio::test]
async fn http_jwks_uri_in_discovery_is_refused_without_a_fetch() {
    let f = Fixture::start().await;
    let b = key_b();
    f.issuer.publish(&[&f.key, &b]);
    let mut doc = f.issuer.standard_discovery();
    doc["jwks_uri"] = json!(format!("http://localhost:{}/jwks", f.issuer.port));
    f.issuer.set_discovery(Some(doc));
    let (discovery_before, jwks_before, other_before) = f.issuer.hits();

    let (status, body) = present_rotated_key(&f, &b).await;
    assert_refused_rotation_kept_old_keys(&f, status, &body).await;
    assert_eq!(
        f.issuer.hits(),
        (discovery_before + 1, jwks_before, other_before),
        "discovery was read, the http jwks_uri never requested"
    );
    let error = last_error(&f).await;
    assert!(error.contains("is not an https url"), "{error}");
}

/// Stops redirect-based key substitution and SSRF: a JWKS endpoint answering
/// `302` (to a location that would serve valid keys) is a failed fetch, and the
/// location is never requested.
#[tokio::test]
async fn jwks_redirect_is_not_followed() {
    let f = Fixture::start().await;
    let b = key_b();
    f.issuer.publish(&[&f.key, &b]);
    f.issuer.set_jwks_mode(Mode::Redirect);

    let (status, body) = present_rotated_key(&f, &b).await;
    assert_refused_rotation_kept_old_keys(&f, status, &body).await;
    assert_eq!(
        f.issuer.other_hits(),
        0,
        "the redirect target was requested"
    );
    let error = last_error(&f).await;
    assert!(error.contains("http 302"), "{error}");
}

/// The same for the discovery document: its redirect is not followed either.
#[tokio::test]
async fn discovery_redirect_is_not_followed() {
    let f = Fixture::start().await;
    let b = key_b();
    f.issuer.publish(&[&f.key, &b]);
    f.issuer.set_discovery_mode(Mode::Redirect);
    let jwks_before = f.issuer.jwks_hits();

    let (status, body) = present_rotated_key(&f, &b).await;
    assert_refused_rotation_kept_old_keys(&f, status, &body).await;
    assert_eq!(
        f.issuer.other_hits(),
        0,
        "the redirect target was requested"
    );
    assert_eq!(f.issuer.jwks_hits(), jwks_before);
    let error = last_error(&f).await;
    assert!(error.contains("http 302"), "{error}");
}

/// A JWKS padded past 64 KiB (two good keys and 70,000 bytes of filler).
fn oversize_jwks(keys: &[&TestKey]) -> Value {
    let mut jwks = jwks_of(keys);
    jwks["filler"] = json!("x".repeat(70_000));
    jwks
}

/// Stops memory exhaustion through the key fetch: a JWKS announcing more than
/// 64 KiB in `Content-Length` is refused before its body is read.
#[tokio::test]
async fn oversize_jwks_with_content_length_is_refused_and_old_keys_kept() {
    let f = Fixture::start().await;
    let b = key_b();
    f.issuer.set_jwks(oversize_jwks(&[&f.key, &b]));

    let (status, body) = present_rotated_key(&f, &b).await;
    assert_refused_rotation_kept_old_keys(&f, status, &body).await;
    let error = last_error(&f).await;
    assert!(error.contains("sent more than 65536 bytes"), "{error}");
}

/// The same attack without a length announced: a chunked body is cut off as soon
/// as it passes 64 KiB.
#[tokio::test]
async fn oversize_chunked_jwks_is_cut_off_and_old_keys_kept() {
    let f = Fixture::start().await;
    let b = key_b();
    f.issuer.set_jwks(oversize_jwks(&[&f.key, &b]));
    f.issuer.set_jwks_mode(Mode::Drip {
        chunk: 8192,
        delay_ms: 0,
    });

    let (status, body) = present_rotated_key(&f, &b).await;
    assert_refused_rotation_kept_old_keys(&f, status, &body).await;
    let error = last_error(&f).await;
    assert!(error.contains("sent more than 65536 bytes"), "{error}");
}

/// Stops a slow-drip (slowloris-style) JWKS from holding a refresh, and the
/// requests waiting on it, open indefinitely: the whole fetch, body included, has
/// a deadline (5 s in production; 1 s here to keep the test short). A second
/// rotation with the same chunked body sent at a normal pace succeeds, so the
/// deadline is what stopped the first.
#[tokio::test]
async fn slow_drip_jwks_is_cut_off_by_the_deadline_and_old_keys_kept() {
    let f = Fixture::start_with(|s| {
        s.fetch_limits = Some(FetchLimits {
            max_body_bytes: 64 * 1024,
            timeout: Duration::from_secs(1),
        });
    })
    .await;
    let b = key_b();
    f.issuer.publish(&[&f.key, &b]);
    // About 700 bytes, 8 bytes every 100 ms: roughly 9 s if Legate kept reading.
    f.issuer.set_jwks_mode(Mode::Drip {
        chunk: 8,
        delay_ms: 100,
    });

    let (status, body) = present_rotated_key(&f, &b).await;
    assert_refused_rotation_kept_old_keys(&f, status, &body).await;
    let error = last_error(&f).await;
    assert!(error.contains("timed out"), "{error}");

    f.issuer.set_jwks_mode(Mode::Drip {
        chunk: 256,
        delay_ms: 1,
    });
    let (status, body) = present_rotated_key(&f, &b).await;
    assert_eq!(
        status, 200,
        "a chunked JWKS at a normal pace is read: {body}"
    );
}

/// Keeps a failing issuer from breaking verification mid-rotation: while the
/// JWKS endpoint answers 503 the new key is unknown but the old one verifies;
/// once it recovers, the new key is picked up.
#[tokio::test]
async fn jwks_5xx_during_rotation_keeps_old_keys_working() {
    let f = Fixture::start().await;
    let b = key_b();
    f.issuer.publish(&[&f.key, &b]);
    f.issuer.set_jwks_mode(Mode::Unavailable);

    let (status, body) = present_rotated_key(&f, &b).await;
    assert_refused_rotation_kept_old_keys(&f, status, &body).await;
    let error = last_error(&f).await;
    assert!(error.contains("http 503"), "{error}");

    f.issuer.set_jwks_mode(Mode::Up);
    let (status, body) = present_rotated_key(&f, &b).await;
    assert_eq!(status, 200, "the new key after recovery: {body}");
    let ready = f.legate.operator.get("/status").await;
    assert_eq!(ready.json["issuers"][0]["last_error"], Value::Null);
}

/// Stops key confusion through an ambiguous `kid`: when two published keys share
/// one, Legate cannot know which the issuer meant, so neither verifies (even a
/// token the "right" one signed); keys with their own `kid` are unaffected.
#[tokio::test]
async fn duplicate_kid_in_jwks_makes_that_kid_unusable_but_not_others() {
    let impostor = TestKey::es256_fresh("key-a");
    let b = key_b();
    let jwks = json!({ "keys": [
        TestKey::es256("key-a").public_jwk(),
        impostor.public_jwk(),
        b.public_jwk(),
    ]});
    let f = Fixture::start_publishing(Some(jwks), |_| {}).await;

    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    f.legate.assert_rejected(status, &body, "ambiguous_kid");
    let token = impostor.token(&f.claims(&json!({})));
    let (status, body) = f.legate.exchange(&token, TARGET, None).await;
    f.legate.assert_rejected(status, &body, "ambiguous_kid");

    let (status, body) = f
        .legate
        .exchange(&b.token(&f.claims(&json!({}))), TARGET, None)
        .await;
    assert_eq!(status, 200, "key b is unaffected: {body}");
    let ignored = ignored_keys(&f).await;
    assert!(
        ignored
            .iter()
            .any(|w| w.contains("key-a") && w.contains("more than once")),
        "{ignored:?}"
    );
}

/// A leaked private key is a compromised key: a JWK carrying private members
/// (`d`) is never used, a warning naming the key (but not the secret) is logged,
/// and the other keys still work.
#[tokio::test]
async fn private_key_material_in_jwks_is_ignored_with_a_warning() {
    const SECRET_D: &str = "bGVha2VkLXByaXZhdGUtc2NhbGFyLW5ldmVyLWxvZ2dlZA";
    let (logs, _guard) = Logs::capture();
    let b = key_b();
    let mut leaked = TestKey::es256("key-a").public_jwk();
    leaked["d"] = json!(SECRET_D);
    let f =
        Fixture::start_publishing(Some(json!({ "keys": [leaked, b.public_jwk()] })), |_| {}).await;

    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    f.legate.assert_rejected(status, &body, "unknown_kid");
    let (status, body) = f
        .legate
        .exchange(&b.token(&f.claims(&json!({}))), TARGET, None)
        .await;
    assert_eq!(status, 200, "key b still verifies: {body}");

    let text = logs.text();
    let warning = text
        .lines()
        .find(|l| l.contains("jwks key ignored") && l.contains("key-a"))
        .unwrap_or_else(|| panic!("no warning about key-a in the log:\n{text}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("private key material"), "{warning}");
    assert!(
        !text.contains(SECRET_D),
        "the private key material itself was logged"
    );
    let ignored = ignored_keys(&f).await;
    assert!(
        ignored
            .iter()
            .any(|w| w.contains("key-a") && w.contains("private")),
        "{ignored:?}"
    );
}

/// Keeps one bad entry from taking an issuer down: a JWKS holding a key with a
/// broken modulus, a non-object and a key of an unknown type besides a good key
/// still yields the good key.
#[tokio::test]
async fn one_unparseable_key_does_not_spoil_the_rest() {
    let b = key_b();
    let jwks = json!({ "keys": [
        { "kty": "RSA", "kid": "broken", "alg": "RS256", "n": "!!not base64url!!", "e": "AQAB" },
        42,
        { "kty": "XYZ", "kid": "alien" },
        b.public_jwk(),
    ]});
    let f = Fixture::start_publishing(Some(jwks), |_| {}).await;

    let (status, body) = f
        .legate
        .exchange(&b.token(&f.claims(&json!({}))), TARGET, None)
        .await;
    assert_eq!(status, 200, "the good key is used: {body}");
    let ignored = ignored_keys(&f).await;
    assert_eq!(ignored.len(), 3, "{ignored:?}");
    let ready = f.legate.operator.get("/status").await;
    assert_eq!(ready.json["issuers"][0]["keys"], 1, "{}", ready.text);
}

/// Stops a key meant for encryption from verifying signatures (RFC 7517 §4.2,
/// §4.3): `use: enc`, or `key_ops` without `verify`, leaves the key out; a key
/// whose `key_ops` include `verify` is used.
#[tokio::test]
async fn encryption_keys_and_keys_without_verify_op_are_ignored() {
    let mut enc = TestKey::es256("key-a").public_jwk();
    enc["use"] = json!("enc");
    let ops_key = TestKey::es256_fresh("key-ops");
    let mut ops = ops_key.public_jwk();
    ops["key_ops"] = json!(["encrypt", "wrapKey"]);
    let b = key_b();
    let mut verify = b.public_jwk();
    verify["key_ops"] = json!(["verify"]);
    let f = Fixture::start_publishing(Some(json!({ "keys": [enc, ops, verify] })), |_| {}).await;

    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    f.legate.assert_rejected(status, &body, "unknown_kid");
    let token = ops_key.token(&f.claims(&json!({})));
    let (status, body) = f.legate.exchange(&token, TARGET, None).await;
    f.legate.assert_rejected(status, &body, "unknown_kid");
    let (status, body) = f
        .legate
        .exchange(&b.token(&f.claims(&json!({}))), TARGET, None)
        .await;
    assert_eq!(status, 200, "the verify key is used: {body}");
    assert_eq!(ignored_keys(&f).await.len(), 2);
}

/// Stops key confusion through entry order: a malformed entry placed before a
/// good key with the same `kid` makes that `kid` ambiguous, exactly as when it
/// comes after (the publisher meant two keys); other keys are unaffected.
#[tokio::test]
async fn malformed_entry_before_a_good_key_makes_its_kid_unusable() {
    let b = key_b();
    let jwks = json!({ "keys": [
        { "kty": "EC", "kid": "key-a", "crv": "P-256", "x": "!!", "y": "??" },
        TestKey::es256("key-a").public_jwk(),
        b.public_jwk(),
    ]});
    let f = Fixture::start_publishing(Some(jwks), |_| {}).await;

    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    f.legate.assert_rejected(status, &body, "ambiguous_kid");
    let (status, body) = f
        .legate
        .exchange(&b.token(&f.claims(&json!({}))), TARGET, None)
        .await;
    assert_eq!(status, 200, "key b is unaffected: {body}");
    let ignored = ignored_keys(&f).await;
    assert_eq!(ignored.len(), 1, "{ignored:?}");
    assert!(ignored[0].contains("more than once"), "{ignored:?}");
}

/// A TCP listener on loopback that never accepts: a connection made to it would
/// complete in the kernel and wait in its queue, where [`assert_never_connected`]
/// finds it.
fn loopback_trap() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

fn assert_never_connected(trap: &std::net::TcpListener) {
    match trap.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok((_, peer)) => panic!("Legate connected to the loopback listener from {peer}"),
        Err(e) => panic!("accept failed: {e}"),
    }
}

/// An issuer on loopback whose discovery document names the `jwks_uri` made by
/// `jwks_uri` (from the running issuer), and Legate trusting it (warmed), with
/// or without `allow_private_network`.
async fn issuer_naming_jwks_uri(
    jwks_uri: impl FnOnce(&TestIssuer) -> String,
    allow_private_network: bool,
) -> Fixture {
    let pki = TestPki::localhost();
    let key = TestKey::es256("key-a");
    let issuer = TestIssuer::start(&pki, &[&key]).await;
    let mut doc = issuer.standard_discovery();
    doc["jwks_uri"] = json!(jwks_uri(&issuer));
    issuer.set_discovery(Some(doc));
    let mut trust = TrustSpec::with_ca(crate::harness::TRUST, &issuer.issuer, &pki);
    trust.allow_private_network = allow_private_network;
    let legate = Legate::start(&Setup::new(vec![trust])).await;
    Fixture {
        pki,
        key,
        issuer,
        legate,
    }
}

/// Stops server-side request forgery through discovery: a discovery document
/// (or the DNS of its host) pointing Legate at loopback, where an admin port or
/// a metadata service could answer. Without `allow_private_network` the trust's
/// fetches never connect there: the discovery host `localhost` resolves only to
/// loopback, so not even the discovery document is requested, and the loopback
/// `jwks_uri` it would name receives no connection. Tokens of that issuer get
/// `temporarily_unavailable`, and the refusal is on record for operators.
#[tokio::test]
async fn discovery_pointing_jwks_uri_at_loopback_is_refused_without_the_flag() {
    let (trap, port) = loopback_trap();
    let f = issuer_naming_jwks_uri(|_| format!("https://127.0.0.1:{port}{JWKS}"), false).await;

    assert_eq!(f.issuer.hits(), (0, 0, 0), "no request reached the issuer");
    assert_never_connected(&trap);
    let ready = f.legate.operator.get("/status").await;
    let status = &ready.json["issuers"][0];
    assert_eq!(
        status["last_error_code"], "jwks_private_address",
        "{}",
        ready.text
    );
    let error = status["last_error"].as_str().unwrap();
    assert!(
        error.contains("`localhost` resolves only to non-public addresses")
            && error.contains("loopback")
            && error.contains("allow_private_network"),
        "{error}"
    );

    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    let event = f.legate.event_of(&body);
    assert_eq!(event.reason, "keys_unavailable");
    let detail = event.detail.unwrap_or_default();
    assert!(detail.contains("allow_private_network"), "{detail}");
    assert_eq!(f.issuer.hits(), (0, 0, 0));
    assert_never_connected(&trap);
}

/// The same issuer with `allow_private_network = true`: its discovery document
/// naming a loopback IP-literal `jwks_uri` is followed and the keys verify (how
/// issuers on a private network are run, and how every other test here runs).
#[tokio::test]
async fn discovery_pointing_jwks_uri_at_loopback_works_with_the_flag() {
    let f = issuer_naming_jwks_uri(|i| format!("https://127.0.0.1:{}{JWKS}", i.port), true).await;

    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        f.issuer.hits(),
        (1, 1, 0),
        "discovery, then the loopback jwks_uri"
    );
    let ready = f.legate.operator.get("/status").await;
    assert_eq!(ready.json["issuers"][0]["last_error_code"], Value::Null);
}

/// Stops SSRF through a configured `jwks_uri` (no discovery): neither an IP
/// literal (`127.0.0.1`, which the HTTP client connects to without a DNS lookup,
/// so Legate checks it before the request) nor a name resolving to loopback
/// (`localhost`, checked by the resolver at connect time) is connected to.
#[tokio::test]
async fn configured_loopback_jwks_uri_is_refused_without_the_flag() {
    let (trap, port) = loopback_trap();
    let mut by_ip = TrustSpec::new("by-ip", "https://by-ip.example");
    by_ip.jwks_uri = Some(format!("https://127.0.0.1:{port}{JWKS}"));
    by_ip.allow_private_network = false;
    let mut by_name = TrustSpec::new("by-name", "https://by-name.example");
    by_name.jwks_uri = Some(format!("https://localhost:{port}{JWKS}"));
    by_name.allow_private_network = false;
    let legate = Legate::start(&Setup::new(vec![by_ip, by_name])).await;

    let ready = legate.operator.get("/status").await;
    for (i, reason) in [
        "`127.0.0.1` is a loopback address",
        "`localhost` resolves only to non-public addresses",
    ]
    .into_iter()
    .enumerate()
    {
        let status = &ready.json["issuers"][i];
        assert_eq!(
            status["last_error_code"], "jwks_private_address",
            "{}",
            ready.text
        );
        let error = status["last_error"].as_str().unwrap();
        assert!(error.contains(reason), "{error}");
    }
    let token = TestKey::es256("key-a").token(&upstream_claims(
        "https://by-ip.example",
        legate.now(),
        &json!({"repository_id": "42"}),
    ));
    let (status, body) = legate.exchange(&token, TARGET, None).await;
    assert_eq!(status, 503, "{body}");
    assert_never_connected(&trap);
}
