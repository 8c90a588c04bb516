//! The workload side: the real `legate` binary as a subprocess (`legate exchange`,
//! `legate credential-process`) against Legate in-process, with its token sources
//! played by local stand-ins of their endpoints (GitHub Actions' OIDC endpoint, the GCE
//! and Azure metadata services, AWS STS `GetWebIdentityToken`), files, variables and
//! commands.
//!
//! Finding the binary: `CARGO_BIN_EXE_legate` exists only in the `legate` package, so
//! [`legate_bin`] runs `cargo build -p legate --bin legate` (the cargo running the tests,
//! the same target directory) once per test process and takes the executable's path
//! from cargo's JSON messages: always the binary of the source under test, never a
//! stale one. Every run clears the environment and passes only `PATH` and what the test
//! names, so nothing of the developer's (or CI's) environment leaks in.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: failing loudly is the point"
)]

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hyper::body::{Body as _, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use legate_server::audit::Outcome;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::harness::{
    CloudTargetSpec, Fixture, Legate, Setup, TARGET, TRUST, TrustSpec, UPSTREAM_AUDIENCE,
    plain_http_client, sha256_hex, upstream_claims,
};
use crate::issuer::TestIssuer;
use crate::peers::{Moto, TestPki, aws_caller_identity_through_credential_process};
use legate_testkit::testkeys::TestKey;

/// How long one run of the binary may take before the test fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// The GitHub Actions request token the stand-in expects.
const REQUEST_TOKEN: &str = "gha-request-token-7f3a";

// ------------------------------------------------------------------ the binary

/// The `legate` binary built from this workspace (see the module docs).
fn legate_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let output = std::process::Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "legate",
                "--bin",
                "legate",
                "--message-format=json",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .output()
            .expect("run cargo build -p legate");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "cargo build -p legate failed: {}\n{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "legate")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo names the legate executable")
    })
}

/// One run of the binary.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `legate ARGS` with only `PATH` and `env` in its environment.
pub(crate) async fn legate(args: &[&str], env: &[(&str, &str)]) -> Run {
    let bin = legate_bin();
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(RUN_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("legate {args:?} did not finish within {RUN_TIMEOUT:?}"))
        .expect("run legate");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `legate exchange --url … --target … ARGS`, asking sources for [`UPSTREAM_AUDIENCE`].
async fn exchange(legate_url: &str, target: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut all = vec![
        "exchange",
        "--url",
        legate_url,
        "--target",
        target,
        "--audience",
        UPSTREAM_AUDIENCE,
    ];
    all.extend_from_slice(args);
    legate(&all, env).await
}

/// The `LEGATE_TOKEN` of `--format env` output.
fn exported_token(run: &Run) -> String {
    assert_eq!(run.code, Some(0), "{run:#?}");
    let line = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("export LEGATE_TOKEN='"))
        .unwrap_or_else(|| panic!("no LEGATE_TOKEN export: {run:#?}"));
    line.strip_suffix('\'').expect("quoted").to_owned()
}

// ------------------------------------------------------------------ stand-ins

/// A request a stand-in saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Path and query.
    uri: String,
    /// Lower-case names.
    headers: HashMap<String, String>,
    body: String,
}

impl Seen {
    /// The decoded query parameter `name`.
    fn query(&self, name: &str) -> Option<String> {
        let query = self.uri.split_once('?')?.1;
        form_pairs(query).remove(name)
    }
}

fn form_pairs(text: &str) -> HashMap<String, String> {
    reqwest::Url::parse(&format!("http://x/?{text}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

type Answer = (u16, Vec<(&'static str, String)>, String);
type Handler = Arc<dyn Fn(Seen) -> Pin<Box<dyn Future<Output = Answer> + Send>> + Send + Sync>;

/// A plain-HTTP endpoint on loopback answering with `handler`, recording requests.
struct StandIn {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StandIn {
    async fn start(handler: Handler) -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let seen = seen.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let handler = handler.clone();
                    let seen = seen.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                            let handler = handler.clone();
                            let seen = seen.clone();
                            async move {
                                let request = read_request(req).await;
                                seen.lock().unwrap().push(request.clone());
                                let (status, headers, body) = handler(request).await;
                                let mut response = Response::builder().status(status);
                                for (name, value) in headers {
                                    response = response.header(name, value);
                                }
                                Ok::<_, std::convert::Infallible>(response.body(body).unwrap())
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), service)
                            .await;
                    });
                }
            })
        };
        StandIn { url, seen, task }
    }

    /// A stand-in answering every request with `answer(&request)`.
    async fn answering(answer: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> StandIn {
        let answer = Arc::new(answer);
        StandIn::start(Arc::new(move |seen| {
            let answer = answer.clone();
            Box::pin(async move { answer(&seen) })
        }))
        .await
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn read_request(req: Request<Incoming>) -> Seen {
    let (parts, mut body) = req.into_parts();
    let mut bytes = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(data) = frame.expect("request body").into_data() {
            bytes.extend_from_slice(&data);
        }
    }
    Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn json_answer(status: u16, body: &Value) -> Answer {
    (
        status,
        vec![("content-type", "application/json".to_owned())],
        body.to_string(),
    )
}

// ------------------------------------------------------------------ GitHub Actions

/// The acceptance path for CI: in a simulated GitHub Actions job (the OIDC request
/// variables and `$GITHUB_ENV`, no `--token-source`), `legate exchange --format github`
/// asks the job's OIDC endpoint for a token with Legate's audience (bearer request
/// token), exchanges it, masks the issued value first on standard output, then appends
/// it to `$GITHUB_ENV`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_actions_job_gets_a_masked_token_into_github_env() {
    let f = Arc::new(Fixture::start().await);
    let minter = f.clone();
    let gha = StandIn::answering(move |seen| {
        // Only the job's request token, as `bearer`, gets a token, for the audience asked.
        if seen.headers.get("authorization").map(String::as_str)
            != Some(&format!("bearer {REQUEST_TOKEN}"))
        {
            return json_answer(401, &json!({"message": "bad credentials"}));
        }
        let audience = seen.query("audience").unwrap_or_default();
        json_answer(
            200,
            &json!({"value": minter.token(&json!({"aud": audience}))}),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let github_env = dir.path().join("github_env");
    std::fs::write(&github_env, "EARLIER=kept\n").unwrap();
    let request_url = format!("{}/_apis/token?api-version=2.0", gha.url);
    let run = exchange(
        &f.legate.url,
        TARGET,
        &["--format", "github"],
        &[
            ("GITHUB_ACTIONS", "true"),
            ("ACTIONS_ID_TOKEN_REQUEST_URL", &request_url),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN),
            ("GITHUB_ENV", github_env.to_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:#?}");

    let seen = gha.seen();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].query("api-version").as_deref(), Some("2.0"));
    assert_eq!(
        seen[0].query("audience").as_deref(),
        Some(UPSTREAM_AUDIENCE)
    );

    let written = std::fs::read_to_string(&github_env).unwrap();
    let minted = written
        .lines()
        .find_map(|l| l.strip_prefix("LEGATE_TOKEN="))
        .unwrap_or_else(|| panic!("no LEGATE_TOKEN in $GITHUB_ENV: {written}"));
    assert!(written.starts_with("EARLIER=kept\n"), "appended: {written}");
    assert_eq!(run.stdout, format!("::add-mask::{minted}\n"));
    assert!(!run.stderr.contains(minted), "{run:#?}");
    let event = f.legate.event_of_minted(minted);
    assert_eq!(event.decision, Outcome::Allow);
    assert_eq!(event.trust.as_deref(), Some(TRUST));
}

/// Stops a job without `id-token: write` (no request token) from sending anything:
/// the source says which source failed and why, exit 3.
#[tokio::test]
async fn github_actions_without_the_request_token_fails_naming_the_source() {
    let run = exchange(
        "http://127.0.0.1:9",
        TARGET,
        &["--token-source", "github-actions"],
        &[("ACTIONS_ID_TOKEN_REQUEST_URL", "http://127.0.0.1:9/?x=1")],
    )
    .await;
    assert_eq!(run.code, Some(3), "{run:#?}");
    assert!(
        run.stderr.contains("token source github-actions")
            && run.stderr.contains("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
            && run.stderr.contains("id-token: write"),
        "{run:#?}"
    );
}

// ------------------------------------------------------------------ files, variables, commands

/// Stops a rotated Kubernetes token from going unnoticed: the file is re-read on every
/// exchange, so the second run presents the new token (the first one, single-use, is
/// spent and would be refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_token_file_is_re_read_after_rotation() {
    let f = Fixture::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    let (first, second) = (f.token(&json!({})), f.token(&json!({})));
    std::fs::write(&path, format!("{first}\n")).unwrap();
    let env = [("LEGATE_TOKEN_FILE", path.to_str().unwrap())];
    let run = exchange(&f.legate.url, TARGET, &[], &env).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    let answer: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(
        answer["issued_token_type"],
        "urn:ietf:params:oauth:token-type:jwt"
    );
    let event = f
        .legate
        .event_of_minted(answer["access_token"].as_str().unwrap());
    assert_eq!(
        event.subject_token_sha256.as_deref(),
        Some(sha256_hex(first.as_bytes()).as_str())
    );

    // The kubelet rotates the projected token (atomically, by rename).
    let next = dir.path().join("token.next");
    std::fs::write(&next, &second).unwrap();
    std::fs::rename(&next, &path).unwrap();
    let run = exchange(&f.legate.url, TARGET, &["--format", "env"], &env).await;
    let minted = exported_token(&run);
    let event = f.legate.event_of_minted(&minted);
    assert_eq!(event.decision, Outcome::Allow);
    assert_eq!(
        event.subject_token_sha256.as_deref(),
        Some(sha256_hex(second.as_bytes()).as_str())
    );
}

/// `env:VAR`, `exec:CMD` (no shell) and `gitlab:VAR` (named, and detected through
/// `LEGATE_ID_TOKEN`) each present their token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_exec_and_gitlab_sources_present_their_tokens() {
    let f = Fixture::start().await;
    let dir = tempfile::tempdir().unwrap();

    let token = f.token(&json!({}));
    let run = exchange(
        &f.legate.url,
        TARGET,
        &["--token-source", "env:MY_TOKEN", "--format", "env"],
        &[("MY_TOKEN", &token)],
    )
    .await;
    let event = f.legate.event_of_minted(&exported_token(&run));
    assert_eq!(
        event.subject_token_sha256.as_deref(),
        Some(sha256_hex(token.as_bytes()).as_str())
    );

    let token = f.token(&json!({}));
    let file = dir.path().join("exec-token");
    std::fs::write(&file, &token).unwrap();
    let source = format!("exec:cat {}", file.display());
    let run = exchange(
        &f.legate.url,
        TARGET,
        &["--token-source", &source, "--format", "env"],
        &[],
    )
    .await;
    let event = f.legate.event_of_minted(&exported_token(&run));
    assert_eq!(
        event.subject_token_sha256.as_deref(),
        Some(sha256_hex(token.as_bytes()).as_str())
    );

    let token = f.token(&json!({}));
    let run = exchange(
        &f.legate.url,
        TARGET,
        &["--token-source", "gitlab:VAULT_ID_TOKEN", "--format", "env"],
        &[("GITLAB_CI", "true"), ("VAULT_ID_TOKEN", &token)],
    )
    .await;
    let event = f.legate.event_of_minted(&exported_token(&run));
    assert_eq!(
        event.subject_token_sha256.as_deref(),
        Some(sha256_hex(token.as_bytes()).as_str())
    );

    let token = f.token(&json!({}));
    let run = exchange(
        &f.legate.url,
        TARGET,
        &["--format", "env"],
        &[("GITLAB_CI", "true"), ("LEGATE_ID_TOKEN", &token)],
    )
    .await;
    let event = f.legate.event_of_minted(&exported_token(&run));
    assert_eq!(
        event.subject_token_sha256.as_deref(),
        Some(sha256_hex(token.as_bytes()).as_str())
    );
}

// ------------------------------------------------------------------ cloud metadata

/// `gce-metadata` and `azure-imds` ask their (stand-in) metadata endpoints with the
/// header each requires and the audience as `audience` / `resource`; a request without
/// the header gets nothing, as on the real services.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gce_and_azure_metadata_sources_present_their_tokens() {
    let f = Arc::new(Fixture::start().await);
    let minter = f.clone();
    let gce = StandIn::answering(move |seen| {
        if seen.headers.get("metadata-flavor").map(String::as_str) != Some("Google")
            || !seen
                .uri
                .starts_with("/computeMetadata/v1/instance/service-accounts/default/identity?")
            || seen.query("format").as_deref() != Some("full")
        {
            return (403, vec![], String::new());
        }
        let audience = seen.query("audience").unwrap_or_default();
        (
            200,
            vec![("metadata-flavor", "Google".to_owned())],
            minter.token(&json!({"aud": audience})),
        )
    })
    .await;
    let host = gce.url.trim_start_matches("http://").to_owned();
    let run = exchange(
        &f.legate.url,
        TARGET,
        &["--token-source", "gce-metadata", "--format", "env"],
        &[("GCE_METADATA_HOST", &host)],
    )
    .await;
    let event = f.legate.event_of_minted(&exported_token(&run));
    assert_eq!(event.decision, Outcome::Allow);
    assert_eq!(
        gce.seen()[0].query("audience").as_deref(),
        Some(UPSTREAM_AUDIENCE)
    );

    let minter = f.clone();
    let imds = StandIn::answering(move |seen| {
        if seen.headers.get("metadata").map(String::as_str) != Some("true")
            || !seen.uri.starts_with("/metadata/identity/oauth2/token?")
            || seen.query("api-version").as_deref() != Some("2018-02-01")
        {
            return json_answer(400, &json!({"error": "invalid_request"}));
        }
        let resource = seen.query("resource").unwrap_or_default();
        json_answer(
            200,
            &json!({
                "access_token": minter.token(&json!({"aud": resource})),
                "expires_on": "1767225600", "resource": resource, "token_type": "Bearer"
            }),
        )
    })
    .await;
    let run = exchange(
        &f.legate.url,
        TARGET,
        &["--token-source", "azure-imds", "--format", "env"],
        &[("LEGATE_AZURE_IMDS_ENDPOINT", &imds.url)],
    )
    .await;
    let event = f.legate.event_of_minted(&exported_token(&run));
    assert_eq!(event.decision, Outcome::Allow);
    assert_eq!(
        imds.seen()[0].query("resource").as_deref(),
        Some(UPSTREAM_AUDIENCE)
    );
}

/// `aws-sts` calls `GetWebIdentityToken` (Query protocol, the audience, RS256) signed
/// with SigV4 by the environment's credentials, session token included, and presents
/// the JWT STS returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_sts_source_presents_the_get_web_identity_token_jwt() {
    let f = Arc::new(Fixture::start().await);
    let minter = f.clone();
    let sts = StandIn::answering(move |seen| {
        let form = form_pairs(&seen.body);
        let auth = seen.headers.get("authorization").cloned().unwrap_or_default();
        let signed = auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDLEGATETEST/")
            && auth.contains("/eu-west-1/sts/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=")
            && seen.headers.get("x-amz-security-token").map(String::as_str) == Some("session-tok");
        if seen.method != "POST"
            || !signed
            || form.get("Action").map(String::as_str) != Some("GetWebIdentityToken")
            || form.get("Version").map(String::as_str) != Some("2011-06-15")
            || form.get("SigningAlgorithm").map(String::as_str) != Some("RS256")
        {
            return (
                403,
                vec![],
                "<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>no</Message></Error></ErrorResponse>".to_owned(),
            );
        }
        let audience = form.get("Audience.member.1").cloned().unwrap_or_default();
        let token = minter.token(&json!({"aud": audience}));
        (
            200,
            vec![("content-type", "text/xml".to_owned())],
            format!(
                "<GetWebIdentityTokenResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetWebIdentityTokenResult><WebIdentityToken>{token}</WebIdentityToken><Expiration>2026-01-01T00:00:00Z</Expiration></GetWebIdentityTokenResult></GetWebIdentityTokenResponse>"
            ),
        )
    })
    .await;
    let run = exchange(
        &f.legate.url,
        TARGET,
        &["--token-source", "aws-sts", "--format", "env"],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDLEGATETEST"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "session-tok"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL_STS", &sts.url),
        ],
    )
    .await;
    let event = f.legate.event_of_minted(&exported_token(&run));
    assert_eq!(event.decision, Outcome::Allow);
    let seen = sts.seen();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(
        form_pairs(&seen[0].body)
            .get("Audience.member.1")
            .map(String::as_str),
        Some(UPSTREAM_AUDIENCE)
    );

    // The same credentials from the ECS container endpoint (its authorization token
    // required), then from EC2 IMDSv2 (session token required).
    let credentials = json!({
        "AccessKeyId": "AKIDLEGATETEST", "SecretAccessKey": "secret", "Token": "session-tok",
        "Expiration": "2030-01-01T00:00:00Z", "Code": "Success"
    });
    let doc = credentials.clone();
    let ecs = StandIn::answering(move |seen| {
        if seen.headers.get("authorization").map(String::as_str) != Some("ecs-auth") {
            return json_answer(401, &json!({"message": "no"}));
        }
        json_answer(200, &doc)
    })
    .await;
    let ecs_uri = format!("{}/v2/credentials/abc", ecs.url);
    let run = exchange(
        &f.legate.url,
        TARGET,
        &["--token-source", "aws-sts", "--format", "env"],
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &ecs_uri),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "ecs-auth"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL_STS", &sts.url),
        ],
    )
    .await;
    assert_eq!(
        f.legate.event_of_minted(&exported_token(&run)).decision,
        Outcome::Allow
    );
    assert_eq!(ecs.seen().len(), 1);

    let doc = credentials.clone();
    let imds = StandIn::answering(
        move |seen| match (seen.method.as_str(), seen.uri.as_str()) {
            ("PUT", "/latest/api/token")
                if seen
                    .headers
                    .contains_key("x-aws-ec2-metadata-token-ttl-seconds") =>
            {
                (200, vec![], "imds-session".to_owned())
            }
            (_, _)
                if seen
                    .headers
                    .get("x-aws-ec2-metadata-token")
                    .map(String::as_str)
                    != Some("imds-session") =>
            {
                (401, vec![], String::new())
            }
            ("GET", "/latest/meta-data/iam/security-credentials/") => {
                (200, vec![], "deploy-role".to_owned())
            }
            ("GET", "/latest/meta-data/iam/security-credentials/deploy-role") => {
                json_answer(200, &doc)
            }
            _ => (404, vec![], String::new()),
        },
    )
    .await;
    let run = exchange(
        &f.legate.url,
        TARGET,
        &["--token-source", "aws-sts", "--format", "env"],
        &[
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.url),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL_STS", &sts.url),
        ],
    )
    .await;
    assert_eq!(
        f.legate.event_of_minted(&exported_token(&run)).decision,
        Outcome::Allow
    );
    assert_eq!(imds.seen().len(), 3, "{:#?}", imds.seen());

    // A plain-HTTP container endpoint elsewhere than loopback or the ECS address is
    // refused before anything is sent (it would get the authorization token).
    let run = exchange(
        &f.legate.url,
        TARGET,
        &["--token-source", "aws-sts"],
        &[
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://192.0.2.1/creds",
            ),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "ecs-auth"),
        ],
    )
    .await;
    assert_eq!(run.code, Some(3), "{run:#?}");
    assert!(run.stderr.contains("must be https"), "{run:#?}");

    // An STS refusal names the source and STS's code, exit 3.
    let run = exchange(
        &f.legate.url,
        TARGET,
        &["--token-source", "aws-sts"],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDWRONG"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_ENDPOINT_URL_STS", &sts.url),
        ],
    )
    .await;
    assert_eq!(run.code, Some(3), "{run:#?}");
    assert!(
        run.stderr.contains("token source aws-sts") && run.stderr.contains("SignatureDoesNotMatch"),
        "{run:#?}"
    );
}

// ------------------------------------------------------------------ retries and refusals

/// A Legate that is briefly unavailable (503 with `Retry-After`) is asked again, and
/// the exchange succeeds; the one token is presented once to the real server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_legate_is_retried_after_retry_after_then_succeeds() {
    let f = Fixture::start().await;
    let upstream = f.legate.url.clone();
    let calls = Arc::new(Mutex::new(0_u32));
    let counter = calls.clone();
    let front = StandIn::start(Arc::new(move |seen: Seen| {
        let upstream = upstream.clone();
        let counter = counter.clone();
        Box::pin(async move {
            let n = {
                let mut calls = counter.lock().unwrap();
                *calls += 1;
                *calls
            };
            if n == 1 {
                return (
                    503,
                    vec![
                        ("retry-after", "1".to_owned()),
                        ("content-type", "application/json".to_owned()),
                    ],
                    json!({"error": "temporarily_unavailable", "error_description": "try again later", "request_id": "r-1"}).to_string(),
                );
            }
            // Then pass the request on to the real Legate.
            let reply = plain_http_client(Duration::from_secs(30))
                .post(format!("{upstream}{}", seen.uri))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(seen.body)
                .send()
                .await
                .unwrap();
            let status = reply.status().as_u16();
            (
                status,
                vec![("content-type", "application/json".to_owned())],
                reply.text().await.unwrap(),
            )
        })
    }))
    .await;
    let token = f.token(&json!({}));
    let run = exchange(
        &front.url,
        TARGET,
        &["--token-source", "env:T", "--format", "env"],
        &[("T", &token)],
    )
    .await;
    let event = f.legate.event_of_minted(&exported_token(&run));
    assert_eq!(event.decision, Outcome::Allow);
    assert_eq!(*calls.lock().unwrap(), 2);
    let seen = front.seen();
    assert_eq!(seen[0].body, seen[1].body, "the same request, again");
}

/// Stops a client from hammering (or hanging on) a Legate that stays unavailable: at
/// most 5 attempts, then exit 4 with the server's `error` and `request_id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legate_that_stays_unavailable_is_given_up_after_bounded_attempts() {
    let front = StandIn::answering(|_| {
        (
            503,
            vec![("retry-after", "0".to_owned())],
            json!({"error": "temporarily_unavailable", "error_description": "try again later", "request_id": "r-9"}).to_string(),
        )
    })
    .await;
    let run = exchange(
        &front.url,
        TARGET,
        &["--token-source", "env:T"],
        &[("T", "a.b.c")],
    )
    .await;
    assert_eq!(run.code, Some(4), "{run:#?}");
    assert!(
        run.stderr.contains("after 5 attempts") && run.stderr.contains("(request_id r-9)"),
        "{run:#?}"
    );
    assert_eq!(front.seen().len(), 5);
}

/// A refused exchange exits 1 and prints the server's `error` and `request_id` (which
/// the operator's audit event carries), never the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_exchange_exits_1_with_the_error_and_request_id() {
    let f = Fixture::start().await;
    let token = f.token(&json!({"repository_id": "43"}));
    let run = exchange(
        &f.legate.url,
        TARGET,
        &["--token-source", "env:T"],
        &[("T", &token)],
    )
    .await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stdout.is_empty(), "{run:#?}");
    assert!(run.stderr.contains("invalid_request"), "{run:#?}");
    assert!(!run.stderr.contains(&token), "{run:#?}");
    let request_id = run
        .stderr
        .rsplit_once("(request_id ")
        .and_then(|(_, rest)| rest.split(')').next())
        .unwrap_or_else(|| panic!("no request_id: {run:#?}"));
    let event = f.legate.event_by_id(request_id);
    assert_eq!(event.decision, Outcome::Deny);
    assert_eq!(event.reason, "no_permit");
}

/// Stops a misconfigured CI step from printing credentials to the log: without
/// `$GITHUB_ENV`, `--format github` writes nothing and exits 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_format_outside_github_actions_writes_nothing() {
    let f = Fixture::start().await;
    let token = f.token(&json!({}));
    let run = exchange(
        &f.legate.url,
        TARGET,
        &["--token-source", "env:T", "--format", "github"],
        &[("T", &token)],
    )
    .await;
    assert_eq!(run.code, Some(5), "{run:#?}");
    assert!(run.stdout.is_empty(), "{run:#?}");
    assert!(run.stderr.contains("GITHUB_ENV"), "{run:#?}");
}

// ------------------------------------------------------------------ AWS credential_process

/// The AWS target through boto3's `credential_process`: botocore runs `legate
/// credential-process` (no shell), reads its version-1 document, and
/// `GetCallerIdentity` at moto names the role Legate assumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_gets_caller_identity_through_legate_credential_process() {
    const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/deploy";
    const AWS_TARGET: &str = "aws-deploy";
    let pki = TestPki::localhost();
    let key = TestKey::es256("key-a");
    let keys = [&key];
    let (issuer, moto) = tokio::join!(TestIssuer::start(&pki, &keys), Moto::start());
    let mut setup = Setup::new(vec![TrustSpec::with_ca(TRUST, &issuer.issuer, &pki)]);
    setup.cloud_targets =
        vec![CloudTargetSpec::aws(AWS_TARGET, ROLE_ARN, &moto.url).key("max_lifetime_secs", 3600)];
    setup.policies.push((
        "aws.cedar".to_owned(),
        r#"
@id("repo-42-uses-aws")
@allow_lint("unscoped-issuer: one test issuer")
permit (principal, action == Legate::Action::"exchange", resource == Legate::Target::"aws-deploy")
when { principal.claims has repository_id && principal.claims.repository_id == "42" };
"#
        .to_owned(),
    ));
    let legate_server = Legate::start(&setup).await;
    let claims = upstream_claims(
        &issuer.issuer,
        legate_server.now(),
        &json!({"repository_id": "42", "ref": "refs/heads/main"}),
    );
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, key.token(&claims)).unwrap();
    let source = format!("file:{}", token_file.display());
    let bin = legate_bin().to_str().unwrap();
    let identity = aws_caller_identity_through_credential_process(
        &moto.url,
        dir.path(),
        &[
            bin,
            "credential-process",
            "--url",
            &legate_server.url,
            "--target",
            AWS_TARGET,
            "--token-source",
            &source,
            "--audience",
            UPSTREAM_AUDIENCE,
        ],
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "boto3 through credential_process: {e}\nmoto: {}",
            moto.stderr()
        )
    });
    assert_eq!(identity["Account"], "123456789012");
    let arn = identity["Arn"].as_str().unwrap();
    assert!(
        arn.starts_with("arn:aws:sts::123456789012:assumed-role/deploy/"),
        "{identity}"
    );

    // The document itself: exactly the five members, version 1.
    std::fs::write(
        &token_file,
        key.token(&upstream_claims(
            &issuer.issuer,
            legate_server.now(),
            &json!({"repository_id": "42", "ref": "refs/heads/main"}),
        )),
    )
    .unwrap();
    let run = legate(
        &[
            "credential-process",
            "--url",
            &legate_server.url,
            "--target",
            AWS_TARGET,
            "--token-source",
            &source,
            "--audience",
            UPSTREAM_AUDIENCE,
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    let doc: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let mut members: Vec<&String> = doc.as_object().unwrap().keys().collect();
    members.sort();
    assert_eq!(
        members,
        [
            "AccessKeyId",
            "Expiration",
            "SecretAccessKey",
            "SessionToken",
            "Version"
        ]
    );
    assert_eq!(doc["Version"], 1);
}

// ------------------------------------------------------------------ the CI integrations

/// The script of a YAML block scalar: the lines after the first line at or after
/// `anchor` that ends with `opener` (`run: |`, `- |`), as long as they are indented
/// deeper than it (blank lines kept), dedented.
fn yaml_block(text: &str, anchor: &str, opener: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.contains(anchor))
        .unwrap_or_else(|| panic!("no `{anchor}`"));
    let open = (start..lines.len())
        .find(|&i| lines[i].trim_end().ends_with(opener))
        .unwrap_or_else(|| panic!("no `{opener}` after `{anchor}`"));
    let indent = |l: &str| l.len() - l.trim_start().len();
    let base = indent(lines[open]);
    let body: Vec<&str> = lines[open + 1..]
        .iter()
        .copied()
        .take_while(|l| l.trim().is_empty() || indent(l) > base)
        .collect();
    let dedent = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| indent(l))
        .min()
        .unwrap_or(0);
    body.iter()
        .map(|l| l.get(dedent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `bash -c SCRIPT` with only `PATH` (the `legate` binary's folder first) and `env`.
async fn bash(script: &str, env: &[(&str, &str)]) -> Run {
    let bin_dir = legate_bin().parent().unwrap().to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = tokio::process::Command::new("bash")
        .args(["-c", script])
        .env_clear()
        .env("PATH", path)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(RUN_TIMEOUT, output)
        .await
        .expect("bash finishes")
        .expect("run bash");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn repository_file(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::fs::read_to_string(root.join(path)).unwrap()
}

/// `action.yml`'s exchange step, as the runner would run it (its inputs in the
/// environment, `legate` on PATH), in a simulated job: the minted token is masked and
/// lands in `$GITHUB_ENV`. Without the OIDC request token (no `id-token: write`) it
/// stops before calling Legate, and a `format` that would print credentials is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_action_step_exports_the_masked_token() {
    let f = Arc::new(Fixture::start().await);
    let minter = f.clone();
    let gha = StandIn::answering(move |seen| {
        let audience = seen.query("audience").unwrap_or_default();
        json_answer(
            200,
            &json!({"value": minter.token(&json!({"aud": audience}))}),
        )
    })
    .await;
    let script = yaml_block(
        &repository_file("action.yml"),
        "name: Exchange the job's token at Legate",
        "run: |",
    );
    let dir = tempfile::tempdir().unwrap();
    let github_env = dir.path().join("github_env");
    std::fs::write(&github_env, "").unwrap();
    let request_url = format!("{}/token?api-version=2.0", gha.url);
    let home = dir.path().to_str().unwrap();
    let env = |format: &'static str| {
        vec![
            ("HOME", home.to_owned()),
            ("LEGATE_URL", f.legate.url.clone()),
            ("LEGATE_TARGET", TARGET.to_owned()),
            ("LEGATE_INPUT_FORMAT", format.to_owned()),
            ("LEGATE_INPUT_TOKEN_SOURCE", String::new()),
            ("LEGATE_INPUT_AUDIENCE", UPSTREAM_AUDIENCE.to_owned()),
            ("ACTIONS_ID_TOKEN_REQUEST_URL", request_url.clone()),
            ("GITHUB_ENV", github_env.to_str().unwrap().to_owned()),
        ]
    };

    // No request token: the job lacks `id-token: write`.
    let vars = env("github");
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = bash(&script, &pairs).await;
    assert_eq!(run.code, Some(3), "{run:#?}");
    assert!(run.stdout.contains("id-token: write"), "{run:#?}");
    assert!(gha.seen().is_empty());

    let mut vars = env("env");
    vars.push(("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN.to_owned()));
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = bash(&script, &pairs).await;
    assert_eq!(
        run.code,
        Some(2),
        "a format printing credentials is refused: {run:#?}"
    );
    assert!(gha.seen().is_empty());

    let mut vars = env("github");
    vars.push(("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN.to_owned()));
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = bash(&script, &pairs).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    let written = std::fs::read_to_string(&github_env).unwrap();
    let minted = written
        .strip_prefix("LEGATE_TOKEN=")
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("{written:?}"));
    assert_eq!(run.stdout, format!("::add-mask::{minted}\n"));
    assert_eq!(f.legate.event_of_minted(minted).decision, Outcome::Allow);
    assert_eq!(
        gha.seen()[0].query("audience").as_deref(),
        Some(UPSTREAM_AUDIENCE)
    );
}

/// The GitLab template's `before_script`, run as the runner runs it (`set -eo
/// pipefail`), with the job's `id_tokens` variable and the template's variables: the
/// job's shell gets `LEGATE_TOKEN`. A refused exchange fails the job instead of going
/// on without credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_template_exports_the_token_and_fails_the_job_on_refusal() {
    let f = Fixture::start().await;
    let template = repository_file("ci/gitlab/legate.gitlab-ci.yml");
    assert!(template.contains("LEGATE_TOKEN_SOURCE: gitlab:LEGATE_ID_TOKEN"));
    let before = yaml_block(&template, "before_script:", "- |");
    let script = format!("set -eo pipefail\n{before}\nprintf 'job sees %s\\n' \"$LEGATE_TOKEN\"\n");
    let run_with = |token: String| {
        let script = script.clone();
        let url = f.legate.url.clone();
        async move {
            bash(
                &script,
                &[
                    ("GITLAB_CI", "true"),
                    ("LEGATE_URL", &url),
                    ("LEGATE_TARGET", TARGET),
                    ("LEGATE_TOKEN_SOURCE", "gitlab:LEGATE_ID_TOKEN"),
                    ("LEGATE_ID_TOKEN", &token),
                ],
            )
            .await
        }
    };
    let run = run_with(f.token(&json!({}))).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    let minted = run
        .stdout
        .strip_prefix("job sees ")
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("{run:#?}"));
    assert_eq!(f.legate.event_of_minted(minted).decision, Outcome::Allow);

    let run = run_with(f.token(&json!({"repository_id": "43"}))).await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(!run.stdout.contains("job sees"), "{run:#?}");
    assert!(run.stderr.contains("invalid_request"), "{run:#?}");
}
