//! Where the workload's subject token comes from.
//!
//! `--token-source` takes one of:
//!
//! | Source | Token |
//! |---|---|
//! | `github-actions` | `GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD` with `Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`; the JSON member `value` |
//! | `gitlab:VAR` | the GitLab CI `id_tokens` variable `VAR` (give it `aud: AUD` in `.gitlab-ci.yml`) |
//! | `file:PATH` | the file's content, re-read on every fetch (Kubernetes projected service-account tokens rotate) |
//! | `env:VAR` | the environment variable `VAR` |
//! | `exec:CMD` | the standard output of `CMD`, split on whitespace and run **without a shell** (for pipes or quoting, write a script); `LEGATE_AUDIENCE=AUD` in its environment; 30 s timeout, 64 KiB of output at most; a non-zero exit fails |
//! | `gce-metadata` | `GET http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/identity?audience=AUD&format=full` with `Metadata-Flavor: Google` (host overridden by `GCE_METADATA_HOST`) |
//! | `azure-imds` | `GET http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=AUD` with `Metadata: true`; the JSON member `access_token` (base URL overridden by `LEGATE_AZURE_IMDS_ENDPOINT`) |
//! | `aws-sts` | AWS outbound identity federation, `sts:GetWebIdentityToken` (notes below) |
//!
//! Without `--token-source`, [`TokenSource::detect`] looks, in this order, for:
//! 1. GitHub Actions: `ACTIONS_ID_TOKEN_REQUEST_URL` and `ACTIONS_ID_TOKEN_REQUEST_TOKEN`
//!    (the job has `permissions: id-token: write`) → `github-actions`;
//! 2. GitLab CI: `GITLAB_CI` and `LEGATE_ID_TOKEN` → `gitlab:LEGATE_ID_TOKEN`;
//! 3. `LEGATE_TOKEN_FILE` → `file:$LEGATE_TOKEN_FILE`;
//! 4. a Kubernetes service-account token at [`KUBERNETES_TOKEN_PATH`] → `file:` it.
//!
//! The cloud metadata sources are never guessed: probing them costs network calls
//! that hang off the cloud. Name them.
//!
//! `aws-sts`: `GetWebIdentityToken` is signed (SigV4) with the first credentials of:
//! the environment variables `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and (optional)
//! `AWS_SESSION_TOKEN` (Lambda); the ECS / EKS Pod Identity container endpoint
//! (`AWS_CONTAINER_CREDENTIALS_FULL_URI` / `…_RELATIVE_URI`, authorization from
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` / `…_TOKEN`); EC2 IMDSv2
//! (`AWS_EC2_METADATA_SERVICE_ENDPOINT`, off with `AWS_EC2_METADATA_DISABLED=true`).
//! Region `AWS_REGION` (default `us-east-1`), endpoint `AWS_ENDPOINT_URL_STS` (default
//! the regional STS endpoint). Profiles and SSO are not read.
//!
//! Bounds: every HTTP call has a 10 s connect and 30 s total timeout and reads at most
//! [`MAX_SOURCE_BYTES`]; a token is at most [`MAX_TOKEN_BYTES`] of visible ASCII.
//!
//! SECURITY: a failing source says which source and why, never the token (nor the
//! GitHub request token). Values read from the environment or from answers are echoed
//! only through [`escape_untrusted`].

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

use legate_core::jws::MAX_TOKEN_BYTES;
use legate_core::text::escape_untrusted;
use tokio::io::AsyncReadExt as _;

mod aws;

/// The most bytes read from a source (an HTTP answer, a file, a command's output).
pub const MAX_SOURCE_BYTES: usize = 64 * 1024;
/// Where Kubernetes mounts a pod's service-account token.
pub const KUBERNETES_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The GitLab `id_tokens` variable that detection looks for.
pub const GITLAB_DETECTED_VARIABLE: &str = "LEGATE_ID_TOKEN";
/// How long an `exec:` command may run.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(30);
/// Total timeout of one HTTP call to a source.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const GCE_DEFAULT_HOST: &str = "metadata.google.internal";
const AZURE_DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
/// The variable that overrides the Azure IMDS base URL (tests, proxies).
pub const AZURE_IMDS_ENDPOINT_VAR: &str = "LEGATE_AZURE_IMDS_ENDPOINT";

/// A subject token: a compact JWS from some source. Its `Debug` and `Display` print
/// `******`; read it with [`SubjectToken::expose`] where it is sent.
#[derive(Clone, PartialEq, Eq)]
pub struct SubjectToken(String);

impl SubjectToken {
    /// A token from raw text: surrounding whitespace is trimmed; the rest must be
    /// 1..=[`MAX_TOKEN_BYTES`] bytes of visible ASCII.
    ///
    /// # Errors
    ///
    /// Why it is not a token (never quoting it).
    pub fn new(raw: &str) -> Result<Self, &'static str> {
        let token = raw.trim();
        if token.is_empty() {
            return Err("the token is empty");
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err("the token is longer than Legate accepts");
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the token holds whitespace, control or non-ASCII characters");
        }
        Ok(Self(token.to_owned()))
    }

    /// The token itself, for the request that presents it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SubjectToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectToken(******)")
    }
}

impl fmt::Display for SubjectToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("******")
    }
}

/// Why no subject token could be had.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The `--token-source` text names no source.
    #[error(
        "unknown token source `{0}` (expected github-actions, gitlab:VAR, file:PATH, env:VAR, exec:CMD, gce-metadata, azure-imds or aws-sts)"
    )]
    Unknown(String),
    /// No source was given and none was detected.
    #[error(
        "no token source given and none detected (no GitHub Actions OIDC variables, no GitLab `LEGATE_ID_TOKEN`, no `LEGATE_TOKEN_FILE`, no Kubernetes service-account token): pass --token-source"
    )]
    NotDetected,
    /// The named source failed.
    #[error("token source {source_name}: {reason}")]
    Failed {
        /// The source, as `--token-source` spells it.
        source_name: String,
        /// Why (never the token).
        reason: String,
    },
}

/// A snapshot of environment variables: what the sources and detection read. Taken
/// once from the process ([`Environment::from_process`]) or built by a test.
#[derive(Clone, Default)]
pub struct Environment {
    vars: HashMap<String, String>,
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values can be secrets (tokens, AWS keys): names only.
        let mut names: Vec<&String> = self.vars.keys().collect();
        names.sort();
        f.debug_struct("Environment")
            .field("names", &names)
            .finish()
    }
}

impl Environment {
    /// The process's environment now (variables that are not UTF-8 are left out).
    pub fn from_process() -> Self {
        // `vars_os`: `std::env::vars` panics on a variable that is not UTF-8.
        Self {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// An environment of exactly `pairs`.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Sets `name` (builder style).
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// The value of `name`, if set and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// A token source, as `--token-source` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// GitHub Actions' OIDC token endpoint.
    GithubActions,
    /// A GitLab CI `id_tokens` variable.
    Gitlab(String),
    /// A file, re-read on every fetch.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A command's standard output (argv, no shell).
    Exec(Vec<String>),
    /// The GCE metadata server's identity endpoint.
    GceMetadata,
    /// Azure IMDS managed identity.
    AzureImds,
    /// AWS `sts:GetWebIdentityToken`.
    AwsSts,
}

impl FromStr for TokenSource {
    type Err = SourceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || SourceError::Unknown(escape_untrusted(s));
        let nonempty = |v: &str| (!v.trim().is_empty()).then(|| v.to_owned());
        Ok(match s.split_once(':') {
            None => match s {
                "github-actions" => Self::GithubActions,
                "gce-metadata" => Self::GceMetadata,
                "azure-imds" => Self::AzureImds,
                "aws-sts" => Self::AwsSts,
                _ => return Err(unknown()),
            },
            Some(("gitlab", var)) => Self::Gitlab(nonempty(var).ok_or_else(unknown)?),
            Some(("env", var)) => Self::Env(nonempty(var).ok_or_else(unknown)?),
            Some(("file", path)) => Self::File(PathBuf::from(nonempty(path).ok_or_else(unknown)?)),
            Some(("exec", cmd)) => {
                let argv: Vec<String> = cmd.split_whitespace().map(str::to_owned).collect();
                if argv.is_empty() {
                    return Err(unknown());
                }
                Self::Exec(argv)
            }
            Some(_) => return Err(unknown()),
        })
    }
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::GithubActions => f.write_str("github-actions"),
            Self::Gitlab(var) => write!(f, "gitlab:{}", escape_untrusted(var)),
            Self::File(path) => write!(f, "file:{}", escape_untrusted(&path.to_string_lossy())),
            Self::Env(var) => write!(f, "env:{}", escape_untrusted(var)),
            Self::Exec(argv) => {
                let program = argv.first().map_or("", String::as_str);
                write!(f, "exec:{}", escape_untrusted(program))
            }
            Self::GceMetadata => f.write_str("gce-metadata"),
            Self::AzureImds => f.write_str("azure-imds"),
            Self::AwsSts => f.write_str("aws-sts"),
        }
    }
}

impl TokenSource {
    /// The source the environment points at, in the documented order (module docs).
    ///
    /// # Errors
    ///
    /// [`SourceError::NotDetected`] when nothing matches.
    pub fn detect(env: &Environment) -> Result<Self, SourceError> {
        Self::detect_with(env, Path::new(KUBERNETES_TOKEN_PATH))
    }

    /// [`TokenSource::detect`] with another Kubernetes token path (tests).
    ///
    /// # Errors
    ///
    /// [`SourceError::NotDetected`] when nothing matches.
    pub fn detect_with(env: &Environment, kubernetes_token: &Path) -> Result<Self, SourceError> {
        if env.get("ACTIONS_ID_TOKEN_REQUEST_URL").is_some()
            && env.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN").is_some()
        {
            return Ok(Self::GithubActions);
        }
        if env.get("GITLAB_CI").is_some() && env.get(GITLAB_DETECTED_VARIABLE).is_some() {
            return Ok(Self::Gitlab(GITLAB_DETECTED_VARIABLE.to_owned()));
        }
        if let Some(path) = env.get("LEGATE_TOKEN_FILE") {
            return Ok(Self::File(PathBuf::from(path)));
        }
        if kubernetes_token.is_file() {
            return Ok(Self::File(kubernetes_token.to_owned()));
        }
        Err(SourceError::NotDetected)
    }
}

/// A token source ready to fetch: the source, the audience to ask for, the environment
/// it reads, and its HTTP client.
#[derive(Debug, Clone)]
pub struct Source {
    kind: TokenSource,
    audience: String,
    env: Environment,
    http: reqwest::Client,
}

impl Source {
    /// `kind`, asking for tokens with `audience` (for the sources that take one),
    /// reading `env`.
    ///
    /// # Errors
    ///
    /// [`SourceError::Failed`] when the HTTP client cannot be built.
    pub fn new(
        kind: TokenSource,
        audience: impl Into<String>,
        env: Environment,
    ) -> Result<Self, SourceError> {
        // SECURITY: metadata and CI endpoints never redirect; following one would send
        // the request token elsewhere (the client follows none).
        let http = http_client(None, CONNECT_TIMEOUT, HTTP_TIMEOUT)
            .map_err(|e| failed(&kind, format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            kind,
            audience: audience.into(),
            env,
            http,
        })
    }

    /// The source given, or the detected one.
    ///
    /// # Errors
    ///
    /// As [`TokenSource::detect`] and [`Source::new`].
    pub fn new_or_detect(
        kind: Option<TokenSource>,
        audience: impl Into<String>,
        env: Environment,
    ) -> Result<Self, SourceError> {
        let kind = match kind {
            Some(kind) => kind,
            None => TokenSource::detect(&env)?,
        };
        Self::new(kind, audience, env)
    }

    /// Which source this is.
    pub fn kind(&self) -> &TokenSource {
        &self.kind
    }

    /// The audience asked for.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Fetches a fresh token (files and variables are read again, endpoints asked again).
    ///
    /// # Errors
    ///
    /// [`SourceError::Failed`], naming the source and why.
    pub async fn fetch(&self) -> Result<SubjectToken, SourceError> {
        let raw = match &self.kind {
            TokenSource::GithubActions => self.github_actions().await?,
            TokenSource::Gitlab(var) | TokenSource::Env(var) => {
                self.env.get(var).map(str::to_owned).ok_or_else(|| {
                    self.failed(format!(
                        "environment variable `{}` is not set",
                        escape_untrusted(var)
                    ))
                })?
            }
            TokenSource::File(path) => self.file(path).await?,
            TokenSource::Exec(argv) => self.exec(argv).await?,
            TokenSource::GceMetadata => self.gce().await?,
            TokenSource::AzureImds => self.azure().await?,
            TokenSource::AwsSts => aws::web_identity_token(self).await?,
        };
        SubjectToken::new(&raw).map_err(|why| self.failed(why.to_owned()))
    }

    fn failed(&self, reason: String) -> SourceError {
        failed(&self.kind, reason)
    }

    fn var(&self, name: &str) -> Result<&str, SourceError> {
        self.env
            .get(name)
            .ok_or_else(|| self.failed(format!("environment variable `{name}` is not set")))
    }

    async fn github_actions(&self) -> Result<String, SourceError> {
        let base = self.var("ACTIONS_ID_TOKEN_REQUEST_URL")?;
        let bearer = self.var("ACTIONS_ID_TOKEN_REQUEST_TOKEN").map_err(|_| {
            self.failed(
                "environment variable `ACTIONS_ID_TOKEN_REQUEST_TOKEN` is not set (does the job have `permissions: id-token: write`?)"
                    .to_owned(),
            )
        })?;
        let mut url = reqwest::Url::parse(base).map_err(|e| {
            self.failed(format!("`ACTIONS_ID_TOKEN_REQUEST_URL` is not a URL: {e}"))
        })?;
        url.query_pairs_mut()
            .append_pair("audience", &self.audience);
        let body = self
            .get(
                self.http
                    .get(url)
                    .header("Authorization", format!("bearer {bearer}")),
            )
            .await?;
        self.json_member(&body, "value")
    }

    async fn gce(&self) -> Result<String, SourceError> {
        let host = self
            .env
            .get("GCE_METADATA_HOST")
            .unwrap_or(GCE_DEFAULT_HOST);
        let mut url = reqwest::Url::parse(&format!(
            "http://{host}/computeMetadata/v1/instance/service-accounts/default/identity"
        ))
        .map_err(|e| self.failed(format!("`GCE_METADATA_HOST` makes no URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("audience", &self.audience)
            .append_pair("format", "full");
        let body = self
            .get(self.http.get(url).header("Metadata-Flavor", "Google"))
            .await?;
        String::from_utf8(body).map_err(|_| self.failed("the answer is not UTF-8".to_owned()))
    }

    async fn azure(&self) -> Result<String, SourceError> {
        let base = self
            .env
            .get(AZURE_IMDS_ENDPOINT_VAR)
            .unwrap_or(AZURE_DEFAULT_ENDPOINT);
        let mut url = reqwest::Url::parse(&format!(
            "{}/metadata/identity/oauth2/token",
            base.trim_end_matches('/')
        ))
        .map_err(|e| self.failed(format!("`{AZURE_IMDS_ENDPOINT_VAR}` makes no URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("api-version", "2018-02-01")
            .append_pair("resource", &self.audience);
        let body = self
            .get(self.http.get(url).header("Metadata", "true"))
            .await?;
        self.json_member(&body, "access_token")
    }

    async fn file(&self, path: &Path) -> Result<String, SourceError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| self.failed(format!("cannot open the file: {e}")))?;
        let mut buf = Vec::new();
        let limit = u64::try_from(MAX_SOURCE_BYTES).unwrap_or(u64::MAX) + 1;
        file.take(limit)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| self.failed(format!("cannot read the file: {e}")))?;
        if buf.len() > MAX_SOURCE_BYTES {
            return Err(self.failed(format!("the file is larger than {MAX_SOURCE_BYTES} bytes")));
        }
        String::from_utf8(buf).map_err(|_| self.failed("the file is not UTF-8".to_owned()))
    }

    async fn exec(&self, argv: &[String]) -> Result<String, SourceError> {
        let Some((program, args)) = argv.split_first() else {
            return Err(self.failed("no command".to_owned()));
        };
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .env("LEGATE_AUDIENCE", &self.audience)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| self.failed(format!("cannot run the command: {e}")))?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(self.failed("the command's output is not captured".to_owned()));
        };
        let limit = u64::try_from(MAX_SOURCE_BYTES).unwrap_or(u64::MAX) + 1;
        let run = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let mut stdout = stdout.take(limit);
            let mut stderr = stderr.take(limit);
            let (read_out, read_err, status) = tokio::join!(
                stdout.read_to_end(&mut out),
                stderr.read_to_end(&mut err),
                child.wait(),
            );
            (read_out, read_err, status, out, err)
        };
        let (read_out, _, status, out, err) =
            tokio::time::timeout(EXEC_TIMEOUT, run).await.map_err(|_| {
                self.failed(format!(
                    "the command ran longer than {} s and was killed",
                    EXEC_TIMEOUT.as_secs()
                ))
            })?;
        let status = status.map_err(|e| self.failed(format!("waiting for the command: {e}")))?;
        read_out.map_err(|e| self.failed(format!("reading the command's output: {e}")))?;
        if !status.success() {
            // The command's stderr is its own message, not the token: shown escaped and cut.
            let said = String::from_utf8_lossy(&err);
            return Err(self.failed(format!(
                "the command failed ({status}): {}",
                escape_untrusted(said.trim())
            )));
        }
        if out.len() > MAX_SOURCE_BYTES {
            return Err(self.failed(format!(
                "the command printed more than {MAX_SOURCE_BYTES} bytes"
            )));
        }
        String::from_utf8(out).map_err(|_| self.failed("the command's output is not UTF-8".into()))
    }

    /// Sends `request`; a 2xx answer's body, at most [`MAX_SOURCE_BYTES`].
    async fn get(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, SourceError> {
        let response = request
            .send()
            .await
            .map_err(|e| self.failed(format!("request failed: {}", e.without_url())))?;
        let status = response.status();
        let body = read_bounded(response, MAX_SOURCE_BYTES)
            .await
            .map_err(|e| self.failed(e))?;
        if !status.is_success() {
            return Err(self.failed(format!("the endpoint answered HTTP {}", status.as_u16())));
        }
        Ok(body)
    }

    fn json_member(&self, body: &[u8], member: &str) -> Result<String, SourceError> {
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|_| self.failed("the answer is not JSON".to_owned()))?;
        value
            .get(member)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| self.failed(format!("the answer has no string `{member}`")))
    }
}

/// An HTTP client: rustls with aws-lc-rs (installed here, so no process-wide provider
/// is needed), the Mozilla roots plus `ca_pem`'s certificates, no redirects, the given
/// timeouts.
///
/// # Errors
///
/// Why the client cannot be built (a bad CA bundle).
pub fn http_client(
    ca_pem: Option<&[u8]>,
    connect: Duration,
    total: Duration,
) -> Result<reqwest::Client, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;

    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = ca_pem {
        let mut added = 0_usize;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("bad CA bundle: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("bad CA certificate: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err("the CA bundle holds no certificate".to_owned());
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect)
        .timeout(total)
        .user_agent(concat!("legate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

fn failed(kind: &TokenSource, reason: String) -> SourceError {
    SourceError::Failed {
        source_name: kind.to_string(),
        reason,
    }
}

/// Reads a response body, refusing more than `max` bytes.
pub(crate) async fn read_bounded(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the answer failed: {}", e.without_url()))?
    {
        if body.len().saturating_add(chunk.len()) > max {
            return Err(format!("the answer is larger than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_source_parses() {
        let cases = [
            ("github-actions", TokenSource::GithubActions),
            (
                "gitlab:LEGATE_ID_TOKEN",
                TokenSource::Gitlab("LEGATE_ID_TOKEN".into()),
            ),
            (
                "file:/var/run/token",
                TokenSource::File("/var/run/token".into()),
            ),
            ("env:TOKEN", TokenSource::Env("TOKEN".into())),
            (
                "exec:/usr/bin/get-token --aud x",
                TokenSource::Exec(vec![
                    "/usr/bin/get-token".into(),
                    "--aud".into(),
                    "x".into(),
                ]),
            ),
            ("gce-metadata", TokenSource::GceMetadata),
            ("azure-imds", TokenSource::AzureImds),
            ("aws-sts", TokenSource::AwsSts),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<TokenSource>().unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn unknown_or_empty_sources_are_refused() {
        for text in [
            "",
            "github",
            "gitlab:",
            "env: ",
            "file:",
            "exec:  ",
            "s3:bucket",
            "GCE-METADATA",
        ] {
            assert!(
                matches!(text.parse::<TokenSource>(), Err(SourceError::Unknown(_))),
                "{text:?}"
            );
        }
    }

    #[test]
    fn detection_follows_the_documented_order() {
        let none = Path::new("/nonexistent/legate/token");
        let gha = Environment::default()
            .with("ACTIONS_ID_TOKEN_REQUEST_URL", "http://x/?a=1")
            .with("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "t");
        let gitlab = Environment::default()
            .with("GITLAB_CI", "true")
            .with("LEGATE_ID_TOKEN", "t");
        assert_eq!(
            TokenSource::detect_with(
                &gha.clone()
                    .with("GITLAB_CI", "true")
                    .with("LEGATE_ID_TOKEN", "t"),
                none
            )
            .unwrap(),
            TokenSource::GithubActions
        );
        assert_eq!(
            TokenSource::detect_with(&gitlab.clone().with("LEGATE_TOKEN_FILE", "/f"), none)
                .unwrap(),
            TokenSource::Gitlab("LEGATE_ID_TOKEN".into())
        );
        assert_eq!(
            TokenSource::detect_with(
                &Environment::default().with("LEGATE_TOKEN_FILE", "/f"),
                none
            )
            .unwrap(),
            TokenSource::File("/f".into())
        );
        let dir = std::env::temp_dir().join(format!("legate-detect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let k8s = dir.join("token");
        std::fs::write(&k8s, "a.b.c").unwrap();
        assert_eq!(
            TokenSource::detect_with(&Environment::default(), &k8s).unwrap(),
            TokenSource::File(k8s.clone())
        );
        // Half the GitHub variables (no `id-token: write`) is not GitHub Actions.
        let half = Environment::default().with("ACTIONS_ID_TOKEN_REQUEST_URL", "http://x/");
        assert!(matches!(
            TokenSource::detect_with(&half, none),
            Err(SourceError::NotDetected)
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Stops a token from leaking through a log line or an error that formats it.
    #[test]
    fn subject_token_never_formats_its_value() {
        let token = SubjectToken::new("  eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln\n").unwrap();
        assert_eq!(token.expose(), "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln");
        assert_eq!(format!("{token}"), "******");
        assert_eq!(format!("{token:?}"), "SubjectToken(******)");
        let env = Environment::default().with("SECRET_TOKEN", "very-secret");
        assert!(!format!("{env:?}").contains("very-secret"));
    }

    #[test]
    fn subject_token_refuses_empty_oversized_and_non_ascii_text() {
        assert!(SubjectToken::new(" \n").is_err());
        assert!(SubjectToken::new("a.b c").is_err());
        assert!(SubjectToken::new("a.b.\u{e9}").is_err());
        assert!(SubjectToken::new(&"a".repeat(MAX_TOKEN_BYTES + 1)).is_err());
        assert!(SubjectToken::new(&"a".repeat(MAX_TOKEN_BYTES)).is_ok());
    }

    /// Stops a misconfigured variable from reaching a token request or an error raw.
    #[tokio::test]
    async fn a_missing_variable_names_the_source_and_the_variable() {
        let source = Source::new(
            TokenSource::Env("NOT_THERE".into()),
            "aud",
            Environment::default(),
        )
        .unwrap();
        let err = source.fetch().await.unwrap_err().to_string();
        assert_eq!(
            err,
            "token source env:NOT_THERE: environment variable `NOT_THERE` is not set"
        );
    }

    #[tokio::test]
    async fn exec_runs_without_a_shell_and_fails_on_a_non_zero_exit() {
        let ok = Source::new(
            "exec:echo a.b.c".parse().unwrap(),
            "aud",
            Environment::default(),
        )
        .unwrap();
        assert_eq!(ok.fetch().await.unwrap().expose(), "a.b.c");
        // No shell: `$HOME` and `;` reach echo literally, as one token-shaped word each.
        let literal = Source::new(
            "exec:echo $HOME;x".parse().unwrap(),
            "aud",
            Environment::default(),
        )
        .unwrap();
        assert_eq!(literal.fetch().await.unwrap().expose(), "$HOME;x");
        let failing =
            Source::new("exec:false".parse().unwrap(), "aud", Environment::default()).unwrap();
        let err = failing.fetch().await.unwrap_err().to_string();
        assert!(
            err.starts_with("token source exec:false: the command failed"),
            "{err}"
        );
    }
}
