//! `legate serve`: run the gateway.
//!
//! With `--config FILE`, production mode. Without it, development mode: the embedded
//! configuration (in-memory state, an ephemeral signing key, the bundled example
//! policies) plus the demo issuer, and a banner of commands to try.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use legate_core::exchange::{GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_JWT};
use legate_issuer::{DISCOVERY_PATH, TOKEN_PATH};
use legate_server::clock::SystemClock;
use legate_server::{AppState, BuildOptions};
use tracing_subscriber::EnvFilter;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file. Without it Legate runs in development mode.
    #[arg(long, short, env = "LEGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Override the listen address (development mode also derives its public URL from it).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Log format on standard error (audit events always go to the audit sink as JSON).
    #[arg(long, value_enum, default_value = "auto")]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable in development mode, JSON otherwise.
    Auto,
    Human,
    Json,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dev = args.config.is_none();
    init_logging(args.log_format, dev);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args, dev))
}

fn init_logging(format: LogFormat, dev: bool) {
    let filter = EnvFilter::try_from_env("LEGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match (format, dev) {
        (LogFormat::Json, _) | (LogFormat::Auto, false) => builder.json().init(),
        _ => builder.init(),
    }
}

async fn serve(args: Args, dev: bool) -> anyhow::Result<ExitCode> {
    let mut cfg = crate::config_cmd::load(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        cfg.server.listen = listen;
    }
    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .with_context(|| format!("binding {}", cfg.server.listen))?;
    let local = listener.local_addr()?;
    if dev {
        // The issuer URL must be where clients reach us; in development that is the
        // loopback address we actually bound.
        cfg.server.public_url = format!("http://{local}");
    }
    let mut opts = BuildOptions::new(Arc::new(SystemClock));
    opts.dev_demo = dev;
    let state = AppState::build(&cfg, opts).map_err(|e| anyhow::anyhow!("{e}"))?;
    let warm = state.clone();
    tokio::spawn(async move { warm.warm().await });
    tracing::info!(listen = %local, issuer = %state.public_url(), policies = state.policy_count(), "legate is serving");
    if dev {
        eprintln!("{}", banner(&state));
    }
    legate_server::run(listener, state, shutdown_signal()).await?;
    tracing::info!("legate stopped");
    Ok(ExitCode::SUCCESS)
}

fn banner(state: &AppState) -> String {
    let url = state.public_url();
    format!(
        r#"
  Legate is running in DEVELOPMENT MODE (ephemeral key, in-memory state, bundled policies).
  Its OIDC issuer:  {url}{DISCOVERY_PATH}
  Demo issuer:      {url}/demo  (exists only in development mode)

  Walk through an exchange (allowed, denied by policy, replayed):
      legate demo --url {url}

  Or by hand:
      TOKEN=$(curl -s -X POST {url}/demo/token -d subject=workload:hello -d env=dev)
      curl -s {url}{TOKEN_PATH} \
        -d grant_type={GRANT_TYPE_TOKEN_EXCHANGE} \
        -d subject_token_type={TOKEN_TYPE_JWT} \
        -d audience=demo-api -d requested_lifetime=300 \
        --data-urlencode "subject_token=$TOKEN"

  Audit events (one JSON line per exchange) follow on standard output. Ctrl-C stops.
"#
    )
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
