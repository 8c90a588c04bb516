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
use std::path::{Path, PathBuf};
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
    let (listener, state, aws) = start(&args.dir, args.listen).await?;
    stop::announce(&format!("listening {}", listener.local_addr()?))?;
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

/// Binds `listen`, starts the AWS STS fake trusting this server's issuer, and builds
/// Legate's state from the fixtures in `dir`.
pub(crate) async fn start(
    dir: &Path,
    listen: SocketAddr,
) -> anyhow::Result<(tokio::net::TcpListener, AppState, AwsFake)> {
    let files = Files {
        dir: dir.to_path_buf(),
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
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
    Ok((listener, state, aws))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, AWS_TARGET, JWT_TARGET};
    use crate::load::{Shot, probe};

    /// Stops the benchmark from measuring error answers after a change to the
    /// configuration format or the policies: Legate, built from the generated fixtures,
    /// answers both bench targets with what the driver's probe expects, and the second
    /// `aws` exchange comes from the credential cache.
    #[tokio::test]
    async fn legate_answers_both_bench_targets_from_the_fixtures() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = std::env::temp_dir().join(format!("legate-bench-test-{}", std::process::id()));
        let files = fixtures::write(&dir).unwrap();
        let (listener, state, aws) = start(&dir, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(legate_server::run(
            listener,
            state.clone(),
            std::future::pending::<()>(),
        ));
        let shot = |target: &str| Shot {
            addr,
            path: "/token".to_owned(),
            body: std::fs::read(files.body(target)).unwrap().into(),
        };
        probe(
            &shot(JWT_TARGET),
            Some("urn:ietf:params:oauth:token-type:jwt"),
        )
        .await
        .unwrap();
        for _ in 0..2 {
            probe(&shot(AWS_TARGET), Some("\"aws_credentials\""))
                .await
                .unwrap();
        }
        let cache = state.credential_cache_stats();
        assert_eq!((cache.misses, cache.hits), (1, 1));
        assert_eq!(aws.stats().succeeded, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
