//! Legate in-process for the tests: the real server (`legate_server::run`) on a
//! real TCP socket (127.0.0.1, ephemeral port), built from a configuration file
//! written by the test, with a [`ManualClock`] and an in-memory audit sink.
//!
//! [`Setup`] describes the configuration ([`TrustSpec`], [`TargetSpec`],
//! [`CloudTargetSpec`], Cedar policies); [`Legate::start`] writes it to a
//! temporary directory, loads it
//! through `legate_server::config::load_str` (the same checks as a file on disk),
//! builds the state, optionally warms the trust store, and serves.
//! [`Fixture`] is the common case: one test PKI, one [`TestIssuer`] publishing
//! key "a", and Legate trusting it as `ci` with the standard policy.
//! Each [`Legate`] also serves its operator listener (`/status`) on its own
//! ephemeral port ([`Legate::operator`]) and can be shut down gracefully
//! ([`Legate::shut_down`]). When something must know Legate's address or clock
//! before it starts (the cloud fakes trust its `public_url` and share its clock),
//! [`Legate::reserve`] fixes both and [`Legate::start_reserved`] starts on them.

#![allow(
    dead_code,
    reason = "shared test helpers: not every test uses every helper"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test harness code: failing loudly is the point"
)]

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use legate_core::Clock as _;
use legate_server::audit::{AuditEvent, MemorySink};
use legate_server::clock::{ManualClock, SystemClock};
use legate_server::{AppState, BuildOptions};
use legate_testkit::testkeys::TestKey;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::issuer::TestIssuer;
use crate::peers::TestPki;

// The protocol URIs are spelled out here rather than imported from
// `legate_core::exchange`: the tests pin the wire values independently of the code under
// test, so a typo in one definition cannot hide in both.

/// RFC 8693 grant type.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 token type of a JWT.
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// RFC 8693 token type of an OIDC ID token.
pub const TOKEN_TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";

/// The trust name of the standard upstream issuer.
pub const TRUST: &str = "ci";
/// The `aud` Legate accepts in upstream tokens.
pub const UPSTREAM_AUDIENCE: &str = "legate";
/// The standard target's name (what clients put in `audience`).
pub const TARGET: &str = "deploy-api";
/// The standard target's audience (the `aud` Legate mints).
pub const TARGET_AUDIENCE: &str = "https://deploy.example.com";
/// The standard target's lifetime cap.
pub const TARGET_MAX_LIFETIME: u64 = 600;
/// The standard workload's upstream subject.
pub const SUBJECT: &str = "repo:acme/app:ref:refs/heads/main";

/// The standard policy: repository 42 may reach `deploy-api` (from any trust: the
/// lint `unscoped-issuer` is allowed, with its reason, which the audit event of every
/// decision it determines carries); production targets are reached from
/// `refs/heads/main` only.
pub const STANDARD_POLICY: &str = r#"
// The repository whose id is 42 deploys.
@id("repo-42-deploys")
@allow_lint("unscoped-issuer: every test issuer mints repository 42")
permit (
  principal,
  action == Legate::Action::"exchange",
  resource == Legate::Target::"deploy-api"
)
when { principal.claims has repository_id && principal.claims.repository_id == "42" };

// Production is reached from the main branch only.
@id("prod-from-main-only")
forbid (principal, action, resource)
when {
  resource.hasTag("env") && resource.getTag("env") == "prod" &&
  !(principal.claims has ref && principal.claims.ref == "refs/heads/main")
};
"#;

/// A random `jti` (or `kid`): 16 random bytes, base64url.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("random bytes");
    legate_core::b64::encode(bytes)
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The payload of a compact JWS, decoded without any verification.
pub fn decode_payload(token: &str) -> Value {
    decode_part(token, 1)
}

/// The JOSE header of a compact JWS, decoded without any verification.
pub fn decode_header(token: &str) -> Value {
    decode_part(token, 0)
}

fn decode_part(token: &str, index: usize) -> Value {
    let part = token
        .split('.')
        .nth(index)
        .expect("a compact JWS has 3 parts");
    let bytes = legate_core::b64::decode(part).expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

/// Upstream token claims: `iss`, `aud`, `sub`, a fresh `jti`, `iat` = `nbf` =
/// `now` - 5 and `exp` = `now` + 300, then every member of `extra` (an object;
/// a `null` member removes the claim).
pub fn upstream_claims(iss: &str, now: i64, extra: &Value) -> Value {
    let mut claims = json!({
        "iss": iss,
        "aud": UPSTREAM_AUDIENCE,
        "sub": SUBJECT,
        "jti": random_id(),
        "iat": now - 5,
        "nbf": now - 5,
        "exp": now + 300,
    });
    let obj = claims.as_object_mut().unwrap();
    for (k, v) in extra.as_object().expect("extra claims are an object") {
        if v.is_null() {
            obj.remove(k);
        } else {
            obj.insert(k.clone(), v.clone());
        }
    }
    claims
}

/// One `[[trust]]` table.
#[derive(Debug, Clone)]
pub struct TrustSpec {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub ca_file: Option<PathBuf>,
    pub jwks_uri: Option<String>,
    /// `"single-use"` or `"reusable"`; the default (single-use) when `None`.
    pub replay: Option<&'static str>,
    pub algorithms: Option<Vec<&'static str>>,
    pub required_claims: Vec<String>,
    pub refresh_interval_secs: Option<u64>,
    pub stale_if_error_secs: Option<u64>,
    /// `allow_private_network = true`. On by default here, because every test
    /// issuer listens on loopback; when off, the key is left out of the file so
    /// the production default applies.
    pub allow_private_network: bool,
}

impl TrustSpec {
    /// A trust of `issuer` accepting [`UPSTREAM_AUDIENCE`], everything else default.
    pub fn new(name: &str, issuer: &str) -> Self {
        Self {
            name: name.to_owned(),
            issuer: issuer.to_owned(),
            audiences: vec![UPSTREAM_AUDIENCE.to_owned()],
            ca_file: None,
            jwks_uri: None,
            replay: None,
            algorithms: None,
            required_claims: Vec::new(),
            refresh_interval_secs: None,
            stale_if_error_secs: None,
            allow_private_network: true,
        }
    }

    /// A trust of a server whose certificate the test CA signed.
    pub fn with_ca(name: &str, issuer: &str, pki: &TestPki) -> Self {
        let mut t = Self::new(name, issuer);
        t.ca_file = Some(pki.ca_path.clone());
        t
    }

    fn toml(&self) -> String {
        let mut s = String::from("\n[[trust]]\n");
        let _ = writeln!(s, "name = {}", quote(&self.name));
        let _ = writeln!(s, "issuer = {}", quote(&self.issuer));
        let _ = writeln!(s, "audiences = {}", json!(self.audiences));
        if let Some(ca) = &self.ca_file {
            let _ = writeln!(s, "ca_file = {}", quote(ca.to_str().expect("utf-8 path")));
        }
        if let Some(uri) = &self.jwks_uri {
            let _ = writeln!(s, "jwks_uri = {}", quote(uri));
        }
        if let Some(replay) = self.replay {
            let _ = writeln!(s, "replay = {}", quote(replay));
        }
        if let Some(algs) = &self.algorithms {
            let _ = writeln!(s, "algorithms = {}", json!(algs));
        }
        if !self.required_claims.is_empty() {
            let _ = writeln!(s, "required_claims = {}", json!(self.required_claims));
        }
        if let Some(secs) = self.refresh_interval_secs {
            let _ = writeln!(s, "refresh_interval_secs = {secs}");
        }
        if let Some(secs) = self.stale_if_error_secs {
            let _ = writeln!(s, "stale_if_error_secs = {secs}");
        }
        if self.allow_private_network {
            s.push_str("allow_private_network = true\n");
        }
        s
    }
}

/// One `[[target]]` table (kind `jwt`).
#[derive(Debug, Clone)]
pub struct TargetSpec {
    pub name: String,
    pub audience: String,
    pub max_lifetime_secs: u64,
    pub labels: Vec<(String, String)>,
}

impl TargetSpec {
    /// The standard target: [`TARGET`], [`TARGET_AUDIENCE`], cap
    /// [`TARGET_MAX_LIFETIME`], labelled `env = "prod"`.
    pub fn standard() -> Self {
        Self {
            name: TARGET.to_owned(),
            audience: TARGET_AUDIENCE.to_owned(),
            max_lifetime_secs: TARGET_MAX_LIFETIME,
            labels: vec![("env".to_owned(), "prod".to_owned())],
        }
    }

    fn toml(&self) -> String {
        let mut s = String::from("\n[[target]]\n");
        let _ = writeln!(s, "name = {}", quote(&self.name));
        s.push_str("kind = \"jwt\"\n");
        let _ = writeln!(s, "audience = {}", quote(&self.audience));
        let _ = writeln!(s, "max_lifetime_secs = {}", self.max_lifetime_secs);
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{} = {}", quote(k), quote(v)))
            .collect();
        let _ = writeln!(s, "labels = {{ {} }}", labels.join(", "));
        s
    }
}

/// One `[[target]]` table of a cloud kind (`aws`, `gcp` or `azure`): the name,
/// the kind, and every other key as written (see `docs/configuration.md`).
#[derive(Debug, Clone)]
pub struct CloudTargetSpec {
    pub name: String,
    pub kind: &'static str,
    /// `(key, TOML value)`, in order; strings already quoted.
    pub keys: Vec<(String, String)>,
}

impl CloudTargetSpec {
    fn new(name: &str, kind: &'static str) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            keys: Vec::new(),
        }
    }

    /// An `aws` target assuming `role_arn` at the STS `endpoint`.
    pub fn aws(name: &str, role_arn: &str, endpoint: &str) -> Self {
        Self::new(name, "aws")
            .string("role_arn", role_arn)
            .string("endpoint", endpoint)
    }

    /// A `gcp` target of `provider` (a workload identity pool provider's resource
    /// name) whose STS and IAM Credentials endpoints are both `endpoint`;
    /// impersonating `service_account` when set.
    pub fn gcp(name: &str, provider: &str, endpoint: &str, service_account: Option<&str>) -> Self {
        let mut t = Self::new(name, "gcp")
            .string("workload_identity_provider", provider)
            .string("sts_endpoint", endpoint)
            .string("iam_credentials_endpoint", endpoint);
        if let Some(sa) = service_account {
            t = t.string("service_account", sa);
        }
        t
    }

    /// An `azure` target of application `client_id` in `tenant_id`, asking for
    /// `scope` at the authority `authority_host`.
    pub fn azure(
        name: &str,
        tenant_id: &str,
        client_id: &str,
        scope: &str,
        authority_host: &str,
    ) -> Self {
        Self::new(name, "azure")
            .string("tenant_id", tenant_id)
            .string("client_id", client_id)
            .string("scope", scope)
            .string("authority_host", authority_host)
    }

    /// Sets `key = value`, `value` written as TOML (numbers as they are).
    #[must_use]
    pub fn key(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        self.keys.push((key.to_owned(), value.to_string()));
        self
    }

    /// Sets `key = "value"`.
    #[must_use]
    pub fn string(self, key: &str, value: &str) -> Self {
        let value = quote(value);
        self.key(key, value)
    }

    fn toml(&self) -> String {
        let mut s = String::from("\n[[target]]\n");
        let _ = writeln!(s, "name = {}", quote(&self.name));
        let _ = writeln!(s, "kind = {}", quote(self.kind));
        for (key, value) in &self.keys {
            let _ = writeln!(s, "{key} = {value}");
        }
        s
    }
}

/// A TOML basic string (JSON string escapes are valid TOML escapes).
fn quote(s: &str) -> String {
    json!(s).to_string()
}

/// What Legate is started with.
#[derive(Debug, Clone)]
pub struct Setup {
    pub trusts: Vec<TrustSpec>,
    pub targets: Vec<TargetSpec>,
    /// Targets of the cloud kinds, written after [`targets`](Self::targets).
    pub cloud_targets: Vec<CloudTargetSpec>,
    /// `(file name, Cedar text)`, written next to the bundled schema.
    pub policies: Vec<(String, String)>,
    /// Whether to fetch upstream keys before serving (`AppState::warm`).
    pub warm: bool,
    /// Limits on upstream fetches; the production defaults when `None`.
    pub fetch_limits: Option<legate_trust::FetchLimits>,
    /// `server.trusted_proxies` (CIDRs).
    pub trusted_proxies: Vec<String>,
    /// More `[server]` keys, as (key, TOML value): see [`Setup::server_key`].
    pub server: Vec<(String, String)>,
    /// TOML appended to the file (e.g. `[state]` or `[audit]` tables).
    pub extra_toml: String,
    /// When set, the audit sink blocks while the gate is closed (a stalled disk).
    pub audit_gate: Option<Arc<AuditGate>>,
    /// A revocation store shared with other instances (a fleet on one store); `None`:
    /// each instance has its own, in memory.
    pub revocation_store: Option<Arc<dyn legate_state::RevocationStore>>,
}

/// A valve in front of the in-memory audit sink: while closed, the audit writer
/// blocks in `record`, as it would on a full pipe or a stalled disk.
#[derive(Debug, Default)]
pub struct AuditGate {
    closed: std::sync::Mutex<bool>,
    changed: std::sync::Condvar,
}

impl AuditGate {
    /// A closed gate.
    pub fn closed() -> Arc<Self> {
        let gate = Arc::new(Self::default());
        *gate.closed.lock().unwrap() = true;
        gate
    }

    /// Lets events through.
    pub fn open(&self) {
        *self.closed.lock().unwrap() = false;
        self.changed.notify_all();
    }

    fn wait_open(&self) {
        let mut closed = self.closed.lock().unwrap();
        while *closed {
            closed = self.changed.wait(closed).unwrap();
        }
    }
}

#[derive(Debug)]
struct GatedSink {
    gate: Arc<AuditGate>,
    inner: MemorySink,
}

impl legate_server::audit::AuditSink for GatedSink {
    fn record(&self, event: &AuditEvent) {
        self.gate.wait_open();
        self.inner.record(event);
    }
}

impl Setup {
    /// `trusts`, the standard target and the standard policy; warmed.
    pub fn new(trusts: Vec<TrustSpec>) -> Self {
        Self {
            trusts,
            targets: vec![TargetSpec::standard()],
            cloud_targets: Vec::new(),
            policies: vec![("standard.cedar".to_owned(), STANDARD_POLICY.to_owned())],
            warm: true,
            fetch_limits: None,
            trusted_proxies: Vec::new(),
            extra_toml: String::new(),
            audit_gate: None,
            server: Vec::new(),
            revocation_store: None,
        }
    }

    /// Sets `[server] key = value` (`value` written as TOML: numbers as they are,
    /// strings quoted by the caller).
    pub fn server_key(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        self.server.push((key.to_owned(), value.to_string()));
        self
    }
}

/// The answer to one HTTP request.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub json: Value,
}

impl Reply {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `request_id` of an error body.
    pub fn request_id(&self) -> &str {
        self.json["request_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no request_id in {}", self.text))
    }
}

/// An HTTP client of one Legate instance. Cheap to clone (for concurrent requests).
#[derive(Debug, Clone)]
pub struct Client {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    http: reqwest::Client,
}

/// A reqwest client for plain HTTP on loopback with a whole-request `timeout`.
pub fn plain_http_client(timeout: Duration) -> reqwest::Client {
    // Plain HTTP on loopback: no roots are needed (and none are trusted).
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("aws-lc-rs supports the default TLS versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .build()
        .expect("build reqwest client")
}

impl Client {
    /// A client of the Legate listening at `url` (`http://127.0.0.1:<port>`).
    pub fn new(url: String) -> Self {
        let http = plain_http_client(Duration::from_secs(20));
        Self { url, http }
    }

    async fn reply(resp: reqwest::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("read the response body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            json,
        }
    }

    /// `GET {url}{path}`.
    pub async fn get(&self, path: &str) -> Reply {
        let url = format!("{}{path}", self.url);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e:?}"));
        Self::reply(resp).await
    }

    /// `GET {url}{path}` with extra `headers`.
    pub async fn get_with_headers(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let url = format!("{}{path}", self.url);
        let mut request = self.http.get(&url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let resp = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e:?}"));
        Self::reply(resp).await
    }

    /// `POST /token` with a form of `pairs`.
    pub async fn post_form(&self, pairs: &[(&str, &str)]) -> Reply {
        self.post_form_with_headers(pairs, &[]).await
    }

    /// `POST /token` with a form of `pairs` and extra request `headers`.
    pub async fn post_form_with_headers(
        &self,
        pairs: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Reply {
        let url = format!("{}/token", self.url);
        let mut request = self.http.post(&url).form(pairs);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let resp = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e:?}"));
        Self::reply(resp).await
    }

    /// `POST /token` with any body and content type.
    pub async fn post_raw(&self, content_type: &str, body: String) -> Reply {
        let url = format!("{}/token", self.url);
        let resp = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e:?}"));
        Self::reply(resp).await
    }

    /// A well-formed RFC 8693 exchange of `token` for target `audience`.
    pub async fn exchange_reply(
        &self,
        token: &str,
        audience: &str,
        lifetime: Option<u64>,
    ) -> Reply {
        let lifetime = lifetime.map(|l| l.to_string());
        let mut form = vec![
            ("grant_type", GRANT_TYPE),
            ("subject_token", token),
            ("subject_token_type", TOKEN_TYPE_JWT),
            ("audience", audience),
        ];
        if let Some(l) = &lifetime {
            form.push(("requested_lifetime", l));
        }
        self.post_form(&form).await
    }

    /// [`exchange_reply`](Self::exchange_reply) as (status, JSON body).
    pub async fn exchange(
        &self,
        token: &str,
        audience: &str,
        lifetime: Option<u64>,
    ) -> (u16, Value) {
        let r = self.exchange_reply(token, audience, lifetime).await;
        (r.status, r.json)
    }
}

/// How long to wait for an audit event to arrive from the writer thread.
pub const AUDIT_WAIT: Duration = Duration::from_secs(10);

/// Legate's public listener and clock, fixed before it starts ([`Legate::reserve`]).
#[derive(Debug)]
pub struct Reservation {
    /// The future `server.public_url`, `http://127.0.0.1:<port>`.
    pub url: String,
    /// The clock Legate will read.
    pub clock: Arc<ManualClock>,
    listener: TcpListener,
}

/// A running Legate. Stops when dropped.
#[derive(Debug)]
pub struct Legate {
    /// Its `server.public_url`, `http://127.0.0.1:<port>`.
    pub url: String,
    pub clock: Arc<ManualClock>,
    pub audit: Arc<MemorySink>,
    pub state: AppState,
    pub client: Client,
    /// The public listener's address (for raw TCP clients).
    pub addr: SocketAddr,
    /// A client of the operator listener (`/status`), on its own ephemeral port.
    pub operator: Client,
    /// The configuration file as written.
    pub config_toml: String,
    task: Option<JoinHandle<std::io::Result<()>>>,
    operator_task: JoinHandle<std::io::Result<()>>,
    revocation_task: JoinHandle<()>,
    /// The shared state's health checks (`AppState::spawn_state_tasks`).
    state_tasks: JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
    dir: tempfile::TempDir,
}

impl Drop for Legate {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        self.operator_task.abort();
        self.revocation_task.abort();
        self.state_tasks.abort();
    }
}

impl Legate {
    /// Writes the configuration of `setup`, loads it, builds the state (with a
    /// [`ManualClock`] reading the real time now, so that tokens Legate mints
    /// verify in PyJWT), warms it if asked, and serves.
    pub async fn start(setup: &Setup) -> Legate {
        Self::start_reserved(Self::reserve().await, setup).await
    }

    /// Binds Legate's public listener and creates its [`ManualClock`] (reading the
    /// real time now) without starting it: the URL and the clock can be handed to
    /// peers that must exist before Legate's configuration is written.
    pub async fn reserve() -> Reservation {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind legate");
        let addr = listener.local_addr().expect("local addr");
        Reservation {
            url: format!("http://127.0.0.1:{}", addr.port()),
            clock: Arc::new(ManualClock::new(SystemClock.now())),
            listener,
        }
    }

    /// [`start`](Self::start) on the listener and clock of `reservation`.
    pub async fn start_reserved(reservation: Reservation, setup: &Setup) -> Legate {
        let Reservation {
            listener,
            url,
            clock,
        } = reservation;
        let addr = listener.local_addr().expect("local addr");
        let port = addr.port();
        let operator_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the operator listener");
        let operator_url = format!(
            "http://{}",
            operator_listener.local_addr().expect("operator local addr")
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let policy_dir = dir.path().join("policies");
        std::fs::create_dir(&policy_dir).expect("mkdir policies");
        std::fs::write(
            policy_dir.join(legate_policy::SCHEMA_FILE),
            legate_policy::BUNDLED_SCHEMA,
        )
        .expect("write schema");
        for (name, text) in &setup.policies {
            std::fs::write(policy_dir.join(name), text).expect("write policy");
        }

        let mut toml = format!(
            "version = 1\n\n[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = {}\n\n\
             [issuer]\nephemeral_key = true\n\n[policy]\ndir = \"policies\"\n",
            quote(&url)
        );
        for (key, value) in &setup.server {
            toml = toml.replacen("\n\n[issuer]", &format!("\n{key} = {value}\n\n[issuer]"), 1);
        }
        if !setup.trusted_proxies.is_empty() {
            toml = toml.replacen(
                "\n\n[issuer]",
                &format!(
                    "\ntrusted_proxies = {}\n\n[issuer]",
                    json!(setup.trusted_proxies)
                ),
                1,
            );
        }
        for t in &setup.trusts {
            toml.push_str(&t.toml());
        }
        for t in &setup.targets {
            toml.push_str(&t.toml());
        }
        for t in &setup.cloud_targets {
            toml.push_str(&t.toml());
        }
        toml.push_str(&setup.extra_toml);
        std::fs::write(dir.path().join("legate.toml"), &toml).expect("write legate.toml");
        let config = legate_server::config::load_str(&toml, "legate.toml", dir.path())
            .unwrap_or_else(|e| panic!("config does not load: {e}\n{toml}"));

        let audit = Arc::new(MemorySink::default());
        let mut opts = BuildOptions::new(clock.clone());
        opts.audit = Some(match &setup.audit_gate {
            Some(gate) => Arc::new(GatedSink {
                gate: gate.clone(),
                inner: (*audit).clone(),
            }),
            None => audit.clone(),
        });
        if let Some(limits) = setup.fetch_limits {
            opts.fetch_limits = limits;
        }
        opts.revocation_store = setup.revocation_store.clone();
        let state = AppState::connect(&config, opts)
            .await
            .unwrap_or_else(|e| panic!("AppState::connect: {e}\n{toml}"));
        let state_tasks = state.spawn_state_tasks();
        if setup.warm {
            state.warm().await;
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let task = tokio::spawn(legate_server::run(
            listener,
            state.clone(),
            until_stopped(stopped.clone()),
        ));
        let revocation_task = legate_server::revocation::spawn_sync(
            state.revocations().clone(),
            clock.clone(),
            until_stopped(stopped.clone()),
        );
        // A shared revocation store is not known until read: wait for the first read
        // (a generous ceiling; a Redis that is down leaves the replica refusing).
        for _ in 0..1_000 {
            if state.revocations().is_loaded() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let operator_task = tokio::spawn(legate_server::run_operator(
            operator_listener,
            state.clone(),
            until_stopped(stopped),
        ));
        Legate {
            client: Client::new(url.clone()),
            url,
            clock,
            audit,
            state,
            addr,
            operator: Client::new(operator_url),
            config_toml: toml,
            task: Some(task),
            operator_task,
            revocation_task,
            state_tasks,
            stop,
            dir,
        }
    }

    /// Sends the shutdown signal to both listeners (as SIGTERM does in `legate serve`).
    pub fn begin_shutdown(&self) {
        self.stop.send_replace(true);
    }

    /// [`begin_shutdown`](Self::begin_shutdown), then waits (at most `within`) for the
    /// public listener's `run` to return, and returns what it returned.
    pub async fn shut_down(&mut self, within: Duration) -> std::io::Result<()> {
        self.begin_shutdown();
        let task = self.task.take().expect("shut down once");
        tokio::time::timeout(within, task)
            .await
            .expect("run returns after the shutdown grace period")
            .expect("the server task does not panic")
    }

    /// The policy folder (`[policy] dir`), as written from [`Setup::policies`].
    pub fn policy_dir(&self) -> PathBuf {
        self.dir.path().join("policies")
    }

    /// Legate's current (manual) time.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// See [`Client::exchange`].
    pub async fn exchange(
        &self,
        token: &str,
        audience: &str,
        lifetime: Option<u64>,
    ) -> (u16, Value) {
        self.client.exchange(token, audience, lifetime).await
    }

    /// See [`Client::exchange_reply`].
    pub async fn exchange_reply(
        &self,
        token: &str,
        audience: &str,
        lifetime: Option<u64>,
    ) -> Reply {
        self.client.exchange_reply(token, audience, lifetime).await
    }

    /// The one audit event of the request whose error body is `body`.
    pub fn event_of(&self, body: &Value) -> AuditEvent {
        let id = body["request_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no request_id in {body}"));
        self.event_by_id(id)
    }

    /// The one audit event with `request_id`.
    pub fn event_by_id(&self, request_id: &str) -> AuditEvent {
        let matching: Vec<AuditEvent> = self
            .audit
            .wait_until(AUDIT_WAIT, |events| {
                events.iter().any(|e| e.request_id == request_id)
            })
            .into_iter()
            .filter(|e| e.request_id == request_id)
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "expected exactly one audit event for request {request_id}, got {matching:#?}"
        );
        matching.into_iter().next().unwrap()
    }

    /// The one audit event of a successful exchange, found by the minted token's `jti`
    /// (success bodies carry no `request_id`).
    pub fn event_of_minted(&self, minted: &str) -> AuditEvent {
        let jti = decode_payload(minted)["jti"]
            .as_str()
            .expect("minted token has a jti")
            .to_owned();
        let matching: Vec<AuditEvent> = self
            .audit
            .wait_until(AUDIT_WAIT, |events| {
                events
                    .iter()
                    .any(|e| e.issued_jti.as_deref() == Some(jti.as_str()))
            })
            .into_iter()
            .filter(|e| e.issued_jti.as_deref() == Some(jti.as_str()))
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "audit events for issued jti {jti}: {matching:#?}"
        );
        matching.into_iter().next().unwrap()
    }

    /// The audit events of every exchange of `token` (found by the hash of the
    /// subject token, since success bodies carry no `request_id`), once there are
    /// `count` of them, oldest first; asserts there are exactly `count`.
    pub fn events_of_token(&self, token: &str, count: usize) -> Vec<AuditEvent> {
        let hash = sha256_hex(token.as_bytes());
        let of_token = |e: &AuditEvent| e.subject_token_sha256.as_deref() == Some(hash.as_str());
        let matching: Vec<AuditEvent> = self
            .audit
            .wait_until(AUDIT_WAIT, |events| {
                events.iter().filter(|e| of_token(e)).count() >= count
            })
            .into_iter()
            .filter(of_token)
            .collect();
        assert_eq!(
            matching.len(),
            count,
            "audit events of the token: {matching:#?}"
        );
        matching
    }

    /// Asserts `reply` is the generic rejection of a subject token and returns
    /// its audit event.
    pub fn assert_rejected(&self, status: u16, body: &Value, reason: &str) -> AuditEvent {
        assert_eq!(status, 400, "expected a rejection ({reason}), got {body}");
        assert_eq!(body["error"], "invalid_request", "{body}");
        let event = self.event_of(body);
        assert_eq!(event.reason, reason, "audit event: {event:#?}");
        event
    }
}

/// A test PKI, an in-test HTTPS issuer publishing key "a", and Legate trusting
/// that issuer as [`TRUST`].
#[derive(Debug)]
pub struct Fixture {
    pub pki: TestPki,
    /// The issuer's signing key (`kid` "key-a").
    pub key: TestKey,
    pub issuer: TestIssuer,
    pub legate: Legate,
}

impl Fixture {
    /// The standard setup: trust [`TRUST`] of the issuer (by discovery, with the
    /// test CA), the standard target and policy.
    pub async fn start() -> Fixture {
        Self::start_with(|_| {}).await
    }

    /// The standard setup, adjusted by `adjust` before Legate starts.
    pub async fn start_with(adjust: impl FnOnce(&mut Setup)) -> Fixture {
        Self::start_publishing(None, adjust).await
    }

    /// The standard setup with the issuer publishing `jwks` (instead of key "a"
    /// alone) from the start, adjusted by `adjust` before Legate starts.
    pub async fn start_publishing(jwks: Option<Value>, adjust: impl FnOnce(&mut Setup)) -> Fixture {
        let pki = TestPki::localhost();
        let key = TestKey::es256("key-a");
        let issuer = TestIssuer::start(&pki, &[&key]).await;
        if let Some(jwks) = jwks {
            issuer.set_jwks(jwks);
        }
        let mut setup = Setup::new(vec![TrustSpec::with_ca(TRUST, &issuer.issuer, &pki)]);
        adjust(&mut setup);
        let legate = Legate::start(&setup).await;
        Fixture {
            pki,
            key,
            issuer,
            legate,
        }
    }

    /// Claims of a token of the standard workload (repository 42 on main),
    /// issued by this issuer at Legate's current time, adjusted by `extra`.
    pub fn claims(&self, extra: &Value) -> Value {
        let mut base = json!({"repository_id": "42", "ref": "refs/heads/main"});
        for (k, v) in extra.as_object().expect("extra claims are an object") {
            base[k] = v.clone();
        }
        upstream_claims(&self.issuer.issuer, self.legate.now(), &base)
    }

    /// A token of the standard workload signed by key "a", adjusted by `extra`.
    pub fn token(&self, extra: &Value) -> String {
        self.key.token(&self.claims(extra))
    }
}
