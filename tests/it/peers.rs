//! Real third-party peers for the integration tests.
//!
//! * [`OidcProvider`]: the npm package `oauth2-mock-server`, run over HTTPS by
//!   `tests/peers/oidc-provider.mjs` (its protocol is documented at the top
//!   of that file). It plays the upstream OIDC issuer whose tokens Legate
//!   exchanges.
//! * [`verify_with_pyjwt`]: PyJWT, run by `tests/peers/verify_jwt.py`, an
//!   independent verifier of the tokens Legate mints (discovery -> JWKS ->
//!   signature and claims).
//! * [`Moto`]: moto's AWS emulator (`python -m moto.server`, `moto[server]`),
//!   the AWS STS peer; [`aws_assume_role_with_web_identity`] and
//!   [`aws_caller_identity`]: boto3, run by `tests/peers/aws_caller_identity.py`,
//!   to call STS and to prove AWS credentials work (`GetCallerIdentity`).
//! * [`TestPki`]: a throw-away CA and a `localhost`/`127.0.0.1` server
//!   certificate made with rcgen, for the provider's HTTPS.
//!
//! The peers are installed by `tests/run`, which exports `LEGATE_TEST_NODE`,
//! `LEGATE_TEST_PEERS` and `LEGATE_TEST_PYTHON`. Without them these helpers
//! panic: the integration tests fail loudly, they never skip.

// clippy's allow-*-in-tests settings cover `#[test]` functions only, not
// helper modules of an integration-test crate; test code may panic.
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

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// How long the provider may take to print its JSON line.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one run of `verify_jwt.py` may take.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one HTTPS request to the provider may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(20);

/// The value of a required environment variable set by `tests/run`.
pub(crate) fn required_env(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => panic!(
            "{var} is not set. The integration tests drive real third-party peers \
             (oauth2-mock-server on node, PyJWT on python) and never skip: run them \
             through `tests/run`, which installs the peers and exports \
             LEGATE_TEST_NODE, LEGATE_TEST_PEERS and LEGATE_TEST_PYTHON."
        ),
    }
}

/// `$LEGATE_TEST_PEERS/<name>`, checked to exist.
fn peer_file(name: &str) -> PathBuf {
    let path = required_env("LEGATE_TEST_PEERS").join(name);
    assert!(
        path.is_file(),
        "{} does not exist (LEGATE_TEST_PEERS is wrong?)",
        path.display()
    );
    path
}

/// A reqwest client that trusts exactly the CA certificates in `ca_pem`
/// (and nothing else: no system roots).
pub fn https_client(ca_pem: &[u8]) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.unwrap_or_else(|e| panic!("bad CA PEM: {e}"));
        roots
            .add(cert)
            .unwrap_or_else(|e| panic!("CA certificate rejected by rustls: {e}"));
    }
    assert!(!roots.is_empty(), "no CERTIFICATE in the CA PEM");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("aws-lc-rs supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(HTTP_TIMEOUT)
        .build()
        .expect("build reqwest client")
}

/// Lines a child wrote to stderr, kept for failure messages.
#[derive(Debug, Clone, Default)]
struct StderrLog(Arc<Mutex<String>>);

impl StderrLog {
    /// Copy the child's stderr to ours and into the log, until EOF.
    fn collect(&self, stderr: tokio::process::ChildStderr, label: &'static str) -> JoinHandle<()> {
        let log = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[{label}] {line}");
                let mut text = log.0.lock().unwrap_or_else(|e| e.into_inner());
                text.push_str(&line);
                text.push('\n');
            }
        })
    }

    fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A running `oauth2-mock-server` (HTTPS, 127.0.0.1, ephemeral port).
///
/// Killed when dropped; it also exits by itself when this process dies,
/// since its stdin (a pipe held by `child`) then reaches EOF.
#[derive(Debug)]
pub struct OidcProvider {
    /// `https://localhost:<port>`: the discovery `issuer` and the tokens'
    /// `iss`, byte for byte.
    pub issuer: String,
    /// The port it listens on (on 127.0.0.1).
    pub port: u16,
    child: Child,
    stderr: StderrLog,
}

impl OidcProvider {
    /// Start the provider with the given TLS server certificate and key
    /// (PEM files; the certificate must name `localhost`) and one signing
    /// key of algorithm `alg` (`RS256`, `ES256`, ...).
    pub async fn start(cert_pem: &Path, key_pem: &Path, alg: &str) -> OidcProvider {
        let node = required_env("LEGATE_TEST_NODE");
        let script = peer_file("oidc-provider.mjs");
        let mut child = Command::new(&node)
            .arg(&script)
            .arg("--cert")
            .arg(cert_pem)
            .arg("--key")
            .arg(key_pem)
            .arg("--alg")
            .arg(alg)
            .stdin(Stdio::piped()) // kept open in `child` for the provider's lifetime
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot spawn {} {}: {e}", node.display(), script.display())
            });

        let stderr = StderrLog::default();
        let stderr_task = stderr.collect(
            child.stderr.take().expect("stderr is piped"),
            "oidc-provider",
        );
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));

        let mut line = String::new();
        let read = tokio::time::timeout(START_TIMEOUT, stdout.read_line(&mut line)).await;
        let failure = match read {
            Err(_) => Some(format!("printed nothing within {START_TIMEOUT:?}")),
            Ok(Err(e)) => Some(format!("stdout read error: {e}")),
            Ok(Ok(0)) => {
                let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                Some(format!("exited before printing its JSON line ({status:?})"))
            }
            Ok(Ok(_)) => None,
        };
        if let Some(failure) = failure {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(2), stderr_task).await;
            panic!(
                "oidc-provider.mjs (oauth2-mock-server) {failure}; its stderr:\n{}",
                stderr.text()
            );
        }

        let hello: Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("oidc-provider.mjs printed {line:?}, not JSON: {e}"));
        let issuer = hello
            .get("issuer")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no issuer string in {hello}"))
            .to_owned();
        let port = hello
            .get("port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("no port number in {hello}"));
        assert!(
            issuer.starts_with("https://") && issuer.ends_with(&format!(":{port}")),
            "unexpected issuer {issuer:?} for port {port}"
        );

        // The provider prints nothing more; keep draining its stdout anyway
        // so that it can never block on a full pipe.
        tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = stdout.read_to_end(&mut sink).await;
        });

        OidcProvider {
            issuer,
            port,
            child,
            stderr,
        }
    }

    /// Mint a token through the provider's own `POST /token` endpoint
    /// (client_credentials grant). Every member of `claims` (a JSON object)
    /// is merged into the payload: `sub`, `aud`, `repository_id`, ... The
    /// provider sets `iss`, `iat`, `exp`, `nbf` and a random `jti` unless
    /// `claims` overrides them. `ca_pem` is the CA that signed the
    /// provider's TLS certificate.
    pub async fn mint(&self, claims: Value, ca_pem: &[u8]) -> String {
        self.mint_without(claims, &[], ca_pem).await
    }

    /// Like [`mint`](Self::mint), then removes the named claims from the
    /// payload before signing (e.g. `&["jti"]` for a negative test).
    pub async fn mint_without(&self, claims: Value, omit: &[&str], ca_pem: &[u8]) -> String {
        assert!(
            claims.is_object(),
            "claims must be a JSON object, got {claims}"
        );
        let mut form = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("claims", claims.to_string()),
        ];
        if !omit.is_empty() {
            form.push(("omit", omit.join(",")));
        }
        let url = format!("{}/token", self.issuer);
        let resp = https_client(ca_pem)
            .post(&url)
            .form(&form)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "POST {url}: {e:?}\nprovider stderr:\n{}",
                    self.stderr.text()
                )
            });
        let status = resp.status();
        let body = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: reading the body: {e}"));
        assert!(
            status.is_success(),
            "POST {url}: HTTP {status}: {body}\nprovider stderr:\n{}",
            self.stderr.text()
        );
        let json: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("POST {url}: body is not JSON ({e}): {body}"));
        json.get("access_token")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("POST {url}: no access_token in {body}"))
            .to_owned()
    }

    /// Everything the provider wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// The provider's OS process id, if it is still running.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// Verify `token` with PyJWT (`tests/peers/verify_jwt.py`): fetch
/// `{issuer}/.well-known/openid-configuration` (its `issuer` must equal
/// `issuer` exactly), fetch its `jwks_uri`, pick the key by `kid`, and check
/// the signature (ES256/RS256 only), `iss`, `aud` == `audience`, and that
/// exp/iat/iss/aud/sub/jti are present. `Ok` holds the verified claims;
/// `Err` holds the verifier's message.
///
/// `issuer` may be `http://` only on loopback. This is `async` on purpose:
/// the verifier calls back into the server under test, which usually runs
/// on the test's own (current-thread) runtime, so a blocking wait here
/// would deadlock.
pub async fn verify_with_pyjwt(issuer: &str, audience: &str, token: &str) -> Result<Value, String> {
    run_verifier(issuer, audience, token, None).await
}

/// [`verify_with_pyjwt`] for an `https://` issuer whose certificate is
/// signed by the CA in the PEM file `cafile`.
pub async fn verify_with_pyjwt_cafile(
    issuer: &str,
    audience: &str,
    token: &str,
    cafile: &Path,
) -> Result<Value, String> {
    run_verifier(issuer, audience, token, Some(cafile)).await
}

async fn run_verifier(
    issuer: &str,
    audience: &str,
    token: &str,
    cafile: Option<&Path>,
) -> Result<Value, String> {
    let python = required_env("LEGATE_TEST_PYTHON");
    let script = peer_file("verify_jwt.py");
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .arg("--issuer")
        .arg(issuer)
        .arg("--audience")
        .arg(audience);
    if let Some(cafile) = cafile {
        cmd.arg("--cafile").arg(cafile);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot spawn {} {}: {e}",
                python.display(),
                script.display()
            )
        });
    {
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin
            .write_all(token.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("writing the token to verify_jwt.py: {e}"));
        // Dropping stdin closes it: the script reads to EOF.
    }
    let output = tokio::time::timeout(VERIFY_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("verify_jwt.py did not finish within {VERIFY_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("waiting for verify_jwt.py: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => serde_json::from_str(stdout.trim()).map_err(|e| {
            format!(
                "verify_jwt.py exited 0 but printed no JSON ({e}): {stdout:?}; stderr: {stderr}"
            )
        }),
        Some(1) => Err(stderr.trim().to_owned()),
        // Anything else (a crash, a usage error, a signal) is a broken
        // harness, not a verdict about the token.
        _ => panic!(
            "verify_jwt.py failed abnormally ({}): stderr: {stderr}; stdout: {stdout}",
            output.status
        ),
    }
}

/// A throw-away PKI in a temporary directory: a CA, and a server
/// certificate for `localhost` and `127.0.0.1` signed by it.
#[derive(Debug)]
pub struct TestPki {
    /// Holds the files; removed on drop.
    pub dir: tempfile::TempDir,
    /// The CA certificate, PEM (pass to [`OidcProvider::mint`], [`https_client`]).
    pub ca_pem: String,
    /// The CA certificate, PEM file.
    pub ca_path: PathBuf,
    /// The server certificate, PEM file.
    pub cert_path: PathBuf,
    /// The server private key, PEM file (PKCS#8).
    pub key_path: PathBuf,
}

impl TestPki {
    /// Generate a new CA and server certificate (ECDSA P-256).
    pub fn localhost() -> TestPki {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
            IsCa, KeyPair, KeyUsagePurpose,
        };

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Legate integration-test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("self-sign CA");

        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &ca).expect("sign server cert");

        let dir = tempfile::tempdir().expect("tempdir");
        let ca_pem = ca.pem();
        let ca_path = dir.path().join("ca.pem");
        let cert_path = dir.path().join("server.pem");
        let key_path = dir.path().join("server.key");
        std::fs::write(&ca_path, &ca_pem).expect("write ca.pem");
        std::fs::write(&cert_path, cert.pem()).expect("write server.pem");
        std::fs::write(&key_path, key.serialize_pem()).expect("write server.key");
        TestPki {
            dir,
            ca_pem,
            ca_path,
            cert_path,
            key_path,
        }
    }
}

/// How long moto may take to answer its first request (importing every service
/// model takes a few seconds on a busy machine).
const MOTO_START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long one run of `aws_caller_identity.py` may take.
const BOTO3_TIMEOUT: Duration = Duration::from_secs(60);

/// A reqwest client for plain HTTP on loopback (no roots trusted).
fn loopback_client(timeout: Duration) -> reqwest::Client {
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

/// A running moto server (`python -m moto.server` from `tests/.venv`, the
/// `moto[server]` package): the AWS emulator, STS among its services, on
/// `http://127.0.0.1:<port>`.
///
/// moto verifies nothing: it accepts any `WebIdentityToken` and returns
/// credentials that then work for its other APIs (`GetCallerIdentity` reports
/// the assumed role). The strict checks are the fakes' (`legate-fakes`).
///
/// Started on a free port (bound to 127.0.0.1:0, read, released, then given to
/// moto; if moto loses that race it exits and another port is tried), ready
/// once it answers HTTP; killed when dropped.
#[derive(Debug)]
pub struct Moto {
    /// `http://127.0.0.1:<port>`: the STS endpoint (moto serves every service
    /// at the same address).
    pub url: String,
    /// The port it listens on.
    pub port: u16,
    child: Child,
    stderr: StderrLog,
}

impl Moto {
    /// Starts moto and waits until it answers.
    pub async fn start() -> Moto {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Moto::try_start().await {
                Ok(moto) => return moto,
                Err(failure) => failures.push(failure),
            }
        }
        panic!(
            "moto did not start (3 attempts):\n{}",
            failures.join("\n---\n")
        );
    }

    async fn try_start() -> Result<Moto, String> {
        let python = required_env("LEGATE_TEST_PYTHON");
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
            probe.local_addr().expect("local_addr").port()
        };
        let mut child = Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {} -m moto.server: {e}", python.display()));
        let stderr = StderrLog::default();
        stderr.collect(child.stderr.take().expect("stderr is piped"), "moto");

        let url = format!("http://127.0.0.1:{port}");
        let client = loopback_client(Duration::from_secs(5));
        let deadline = tokio::time::Instant::now() + MOTO_START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "moto exited ({status}) before answering; its stderr:\n{}",
                    stderr.text()
                ));
            }
            // Any HTTP answer means the server is up.
            if client.get(format!("{url}/moto-api/")).send().await.is_ok() {
                return Ok(Moto {
                    url,
                    port,
                    child,
                    stderr,
                });
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = child.start_kill();
                return Err(format!(
                    "moto did not answer within {MOTO_START_TIMEOUT:?}; its stderr:\n{}",
                    stderr.text()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Everything moto wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// moto's OS process id, if it is still running.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// Runs `tests/peers/<script>` with the venv's python, `args`, and `stdin`.
/// `Ok` holds the JSON it printed (exit 0); `Err` its stderr (exit 1, a
/// verdict such as an AWS error). Anything else is a broken harness: panic.
async fn run_python_json(script: &str, args: &[&str], stdin: &[u8]) -> Result<Value, String> {
    let python = required_env("LEGATE_TEST_PYTHON");
    let path = peer_file(script);
    let mut child = Command::new(&python)
        .arg(&path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {} {}: {e}", python.display(), path.display()));
    {
        let mut input = child.stdin.take().expect("stdin is piped");
        input
            .write_all(stdin)
            .await
            .unwrap_or_else(|e| panic!("writing to {script}: {e}"));
    }
    let output = tokio::time::timeout(BOTO3_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within {BOTO3_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("waiting for {script}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => serde_json::from_str(stdout.trim()).map_err(|e| {
            format!("{script} exited 0 but printed no JSON ({e}): {stdout:?}; stderr: {stderr}")
        }),
        Some(1) => Err(stderr.trim().to_owned()),
        _ => panic!(
            "{script} failed abnormally ({}): stderr: {stderr}; stdout: {stdout}",
            output.status
        ),
    }
}

/// boto3 `sts.get_caller_identity()` at `endpoint` with `credentials` (a JSON
/// object holding `AccessKeyId`, `SecretAccessKey`, `SessionToken`: Legate's
/// `aws_credentials` or STS `Credentials`). `Ok` holds `{Account, Arn,
/// UserId}`; `Err` holds `<Code>: <Message>` from STS.
pub async fn aws_caller_identity(endpoint: &str, credentials: &Value) -> Result<Value, String> {
    run_python_json(
        "aws_caller_identity.py",
        &["--endpoint", endpoint],
        credentials.to_string().as_bytes(),
    )
    .await
}

/// boto3 `sts.get_caller_identity()` at `endpoint` with the credentials of a profile
/// whose `credential_process` is `command` (written to `config_dir/config`). `Ok`
/// holds `{Account, Arn, UserId}`; `Err` holds the STS error or the credential
/// process's failure.
pub async fn aws_caller_identity_through_credential_process(
    endpoint: &str,
    config_dir: &Path,
    command: &[&str],
) -> Result<Value, String> {
    let dir = config_dir.to_str().expect("UTF-8 temporary directory");
    let mut args = vec!["--endpoint", endpoint, "--config-dir", dir, "--"];
    args.extend_from_slice(command);
    run_python_json("aws_credential_process.py", &args, b"").await
}

/// boto3 `sts.assume_role_with_web_identity()` at `endpoint` with `token`.
/// `Ok` holds the credentials in the `credential_process` shape plus
/// `AssumedRoleArn`; `Err` holds `<Code>: <Message>` from STS.
pub async fn aws_assume_role_with_web_identity(
    endpoint: &str,
    role_arn: &str,
    session_name: &str,
    token: &str,
) -> Result<Value, String> {
    run_python_json(
        "aws_caller_identity.py",
        &[
            "--endpoint",
            endpoint,
            "--assume-role-with-web-identity",
            role_arn,
            "--role-session-name",
            session_name,
        ],
        token.as_bytes(),
    )
    .await
}
