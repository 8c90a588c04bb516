//! Legate under load: the server `legate serve` runs (`legate_server::run` over an
//! [`AppState`] built from a configuration file's text), in-process, on one
//! single-threaded runtime, with:
//!
//! - a trust `github` with a static JWKS (`jwks_file`, no network) and
//!   `replay = "reusable"`, so that the one pre-minted token can be presented again and
//!   again (see docs/performance.md for why, and what it leaves out); with
//!   `--single-use`, `replay = "single-use"` (`legate-bench fleet` sends each token of
//!   a pre-minted pool once);
//! - with `--redis-url`, `[state] backend = "redis"` on that Redis (the replay check,
//!   rate limits and credential ledger shared with every replica on it), built with
//!   [`AppState::connect`] and its health check running; with `--limits`, generous
//!   `[limits] per_subject` and `per_target` (never reached: they cost their checks,
//!   nothing is refused);
//! - the policy folder of the fixtures (a slice of three policies per request);
//! - a `jwt` target (`bench-jwt`: every request mints an ES256 token) and an `aws`
//!   target (`bench-aws`) whose STS endpoint is the strict AWS STS fake, started in this
//!   process and trusting this server's issuer: the first exchange fills the credential
//!   cache, every later one is served from it;
//! - audit events written, as JSON lines, to `/dev/null` (serialised and written like a
//!   file sink, then discarded).
//!
//! When it stops, it prints the credential cache's counters and the fake's request count,
//! so a run shows that the cache was warm, and, on Redis, the round trips this replica
//! sent ([`legate_state::RedisStats`]) and its Redis errors.

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
    #[command(flatten)]
    pub options: Options,
}

/// How the replica's state is set up.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Options {
    /// The trust is `replay = "single-use"` (each token once) instead of `"reusable"`.
    #[arg(long)]
    pub single_use: bool,
    /// `[state] backend = "redis"` on this URL (`redis://127.0.0.1:PORT`).
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Generous `[limits] per_subject` and `per_target` (checked, never reached).
    #[arg(long)]
    pub limits: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let runtime = crate::runtime()?;
    let result = runtime.block_on(serve(args));
    runtime.shutdown_background();
    result
}

async fn serve(args: &Args) -> anyhow::Result<()> {
    let (listener, state, aws) = start(&args.dir, args.listen, &args.options).await?;
    let _state_tasks = state.spawn_state_tasks();
    // Revocations, as `legate serve` keeps them; a replica on Redis refuses exchanges
    // until it has read the set once, so it announces itself only after that (at most
    // 10 s).
    let _revocation_sync = legate_server::revocation::spawn_sync(
        state.revocations().clone(),
        Arc::new(SystemClock),
        std::future::pending(),
    );
    for _ in 0..1_000 {
        if state.revocations().is_loaded() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    anyhow::ensure!(
        state.revocations().is_loaded(),
        "revocations were not read from the state backend within 10 s"
    );
    stop::announce(&format!("listening {}", listener.local_addr()?))?;
    legate_server::run(listener, state.clone(), stop::stopped(args.max_secs)).await?;
    // The ledger's writer may still be sending the last entries (to Redis): wait until
    // its count stops moving (at most 3 s), so the driver's Redis counts are complete.
    let ledger = state.ledger().stats();
    let written =
        || ledger.recorded.load(Ordering::Acquire) + ledger.record_errors.load(Ordering::Relaxed);
    let mut last = written();
    for _ in 0..30 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let now = written();
        if now == last {
            break;
        }
        last = now;
    }
    let cache = state.credential_cache_stats();
    let audit = state.audit().stats();
    let redis = state.redis().map(|redis| {
        let stats = redis.stats();
        json!({
            "round_trips": stats.round_trips.load(Ordering::Relaxed),
            "errors": redis.state_stats().snapshot().map(|(_, n)| n).sum::<u64>(),
        })
    });
    stop::announce(
        &json!({
            "redis": redis,
            "ledger": {
                "recorded": ledger.recorded.load(Ordering::Acquire),
                "dropped_queue_full": ledger.dropped_queue_full.load(Ordering::Relaxed),
                "record_errors": ledger.record_errors.load(Ordering::Relaxed),
            },
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
    options: &Options,
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
    let text = config_toml(&files, &aws.role_arn(ROLE), aws.url(), options);
    let mut cfg = config::load_str(&text, "<legate-bench config>", &files.dir)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    cfg.server.listen = addr;
    cfg.server.public_url = public_url;
    // `connect` opens the Redis connections when the configuration names Redis, and is
    // `build` otherwise.
    let state = AppState::connect(&cfg, BuildOptions::new(Arc::new(SystemClock)))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    state.warm().await;
    Ok((listener, state, aws))
}

/// The configuration: what an operator would write for this setup.
fn config_toml(files: &Files, role_arn: &str, sts_url: &str, options: &Options) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let state = options.redis_url.as_ref().map_or_else(String::new, |url| {
        format!("\n[state]\nbackend = \"redis\"\nurl = {}\n", q(url))
    });
    let limits = if options.limits {
        format!("\n[limits]\nper_subject = {LIMIT}\nper_target = {LIMIT}\n")
    } else {
        String::new()
    };
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
replay = {replay}

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
{state}{limits}"#,
        issuer = q(ISSUER),
        audience = q(AUDIENCE),
        jwks = q(&files.jwks().display().to_string()),
        policies = q(&files.policies().display().to_string()),
        jwt = q(JWT_TARGET),
        aws = q(AWS_TARGET),
        role_arn = q(role_arn),
        sts_url = q(sts_url),
        replay = q(if options.single_use {
            "single-use"
        } else {
            "reusable"
        }),
    )
}

/// The `[limits]` of `--limits`: far above any rate this machine reaches (100,000 a
/// second, a burst of 1,000,000), so every exchange pays for both checks and none is
/// refused. The burst spans more than one second on purpose: the exchange passes the
/// limiter a time in whole seconds, and a limit whose burst spans less than a second
/// refuses some requests stamped just before a second boundary that reach Redis after
/// one stamped just after it.
const LIMIT: &str = "{ rate = 1000000, per_secs = 10, burst = 1000000 }";

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
        let (listener, state, aws) =
            start(&dir, "127.0.0.1:0".parse().unwrap(), &Options::default())
                .await
                .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(legate_server::run(
            listener,
            state.clone(),
            std::future::pending::<()>(),
        ));
        let shot = |target: &str| {
            Shot::fixed(
                addr,
                "/token",
                std::fs::read(files.body(target)).unwrap().into(),
            )
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

    /// Stops the fleet benchmark from measuring something other than single-use
    /// exchanges: every token of the pool passes once, and presenting one again is
    /// refused as a replay (so each of the load's requests really ran the replay check).
    #[tokio::test]
    async fn pool_tokens_each_pass_once_on_a_single_use_trust() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = std::env::temp_dir().join(format!("legate-bench-pool-{}", std::process::id()));
        let files = fixtures::write_pool(&dir, 3).unwrap();
        let options = Options {
            single_use: true,
            ..Options::default()
        };
        let (listener, state, _aws) = start(&dir, "127.0.0.1:0".parse().unwrap(), &options)
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(legate_server::run(
            listener,
            state.clone(),
            std::future::pending::<()>(),
        ));
        let prefix = std::fs::read_to_string(files.body_prefix()).unwrap();
        let tokens = std::fs::read_to_string(files.tokens()).unwrap();
        let tokens: Vec<&str> = tokens.lines().collect();
        assert_eq!(tokens.len(), 3);
        let shot = |token: &str| Shot::fixed(addr, "/token", format!("{prefix}{token}").into());
        for token in &tokens {
            probe(&shot(token), Some("urn:ietf:params:oauth:token-type:jwt"))
                .await
                .unwrap();
        }
        let replay = probe(&shot(tokens[1]), None).await.unwrap_err();
        assert!(format!("{replay:#}").contains("400"), "{replay:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
