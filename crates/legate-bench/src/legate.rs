//! Legate under load: the server `legate serve` runs (`legate_server::run` over an
//! [`AppState`] built from a configuration file's text), in-process, on one
//! single-threaded runtime, with:
//!
//! - a trust `github` with a static JWKS (`jwks_file`, no network) and
//!   `replay = "reusable"`, so that the one pre-minted token can be presented again and
//!   again (see docs/performance.md for why, and what it leaves out);
//! - the policy folder of the fixtures (a slice of three policies per request);
//! - a `jwt` target (`bench-jwt`: every request mints an ES256 token) and an `aws`
//!   target (`bench-aws`) whose STS endpoint is the strict AWS STS fake, started in this
//!   process and trusting this server's issuer: the first exchange fills the credential
//!   cache, every later one is served from it;
//! - audit events written, as JSON lines, to `/dev/null` (serialised and written like a
//!   file sink, then discarded).
//!
//! When it stops, it prints the credential cache's counters and the fake's request count,
//! so a run shows that the cache was warm.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use legate_fakes::{AwsConfig, AwsFake, AwsRole};
use legate_server::clock::SystemClock;
use legate_server::{AppState, BuildOptions, config};
use serde_json::json;

use crate::fixtures::{AUDIENCE, AWS_TARGET, Files, ISSUER, JWT_TARGET};
use crate::stop;

/// The role the `aws` target assumes at the fake.
const ROLE: &str = "legate-bench";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The fixtures folder (`legate-bench fixtures`).
    #[arg(long)]
    pub dir: PathBuf,
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

async fn serve(args: &Args) -> anyhow::Result<()> {
    let files = Files {
        dir: args.dir.clone(),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let public_url = format!("http://{addr}");
    let aws = AwsFake::start(
        AwsConfig::new(public_url.as_str())
            .with_role(AwsRole::new(ROLE).trusting("sts.amazonaws.com", "target/bench-aws")),
    )
    .await?;
    let text = config_toml(&files, &aws.role_arn(ROLE), aws.url());
    let mut cfg = config::load_str(&text, "<legate-bench config>", &files.dir)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    cfg.server.listen = addr;
    cfg.server.public_url = public_url;
    let state = AppState::build(&cfg, BuildOptions::new(Arc::new(SystemClock)))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    state.warm().await;
    stop::announce(&format!("listening {addr}"))?;
    legate_server::run(listener, state.clone(), stop::stopped(args.max_secs)).await?;
    let cache = state.credential_cache_stats();
    let audit = state.audit().stats();
    stop::announce(
        &json!({
            "server": "legate",
            "credential_cache": {
                "hits": cache.hits,
                "misses": cache.misses,
                "refreshes": cache.refreshes,
            },
            "aws_fake_requests": aws.stats().requests,
            "audit_written": audit.written.load(Ordering::Relaxed),
        })
        .to_string(),
    )
}

/// The configuration: what an operator would write for this setup.
fn config_toml(files: &Files, role_arn: &str, sts_url: &str) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        r#"version = 1

[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:1"

[issuer]
ephemeral_key = true

[[trust]]
name = "github"
issuer = {issuer}
audiences = [{audience}]
jwks_file = {jwks}
algorithms = ["RS256"]
replay = "reusable"

[policy]
dir = {policies}

[[target]]
name = {jwt}
kind = "jwt"
audience = "https://bench-api.legate.invalid"
max_lifetime_secs = 900
labels = {{ env = "prod" }}

[[target]]
name = {aws}
kind = "aws"
role_arn = {role_arn}
endpoint = {sts_url}
max_lifetime_secs = 900
labels = {{ env = "prod" }}

[audit]
path = "/dev/null"
"#,
        issuer = q(ISSUER),
        audience = q(AUDIENCE),
        jwks = q(&files.jwks().display().to_string()),
        policies = q(&files.policies().display().to_string()),
        jwt = q(JWT_TARGET),
        aws = q(AWS_TARGET),
        role_arn = q(role_arn),
        sts_url = q(sts_url),
    )
}
