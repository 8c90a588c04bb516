//! `legate serve`: run the gateway.
//!
//! With `--config FILE`, production mode. Without it, development mode: the embedded
//! configuration (in-memory state, ephemeral signing keys, the bundled example
//! policies, a `jwt` demo target and three cloud demo targets whose token services are
//! the fakes `legate demo` starts) plus the demo issuer, and a banner of commands to try. Development mode
//! listens on loopback only unless `--allow-non-loopback` is given.
//!
//! Two listeners: the public one (`[server] listen`) and the operator one
//! (`[server] operator_listen`, `/status`); one shutdown signal stops both. `SIGHUP`
//! and changes in the policy folder reload the policies (`legate_server::reload`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use legate_core::exchange::{GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_JWT};
use legate_issuer::{DISCOVERY_PATH, TOKEN_PATH};
use legate_server::clock::SystemClock;
use legate_server::dev::{DEMO_CLOUD_PORTS, DemoCloudPorts};
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
    /// Override the operator listener's address (`[server] operator_listen`).
    #[arg(long)]
    operator_listen: Option<SocketAddr>,
    /// Development mode only: listen on a non-loopback address although the demo
    /// issuer then signs tokens Legate accepts for anyone who can reach it.
    #[arg(long)]
    allow_non_loopback: bool,
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
    if let Some(listen) = args.operator_listen {
        cfg.server.operator_listen = listen;
    }
    check_dev_listen(dev, cfg.server.listen, args.allow_non_loopback)?;
    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .with_context(|| format!("binding {}", cfg.server.listen))?;
    let local = listener.local_addr()?;
    let operator_listener = tokio::net::TcpListener::bind(cfg.server.operator_listen)
        .await
        .with_context(|| {
            format!(
                "binding the operator listener {} (`[server] operator_listen`, `--operator-listen`)",
                cfg.server.operator_listen
            )
        })?;
    let operator_local = operator_listener.local_addr()?;
    if !operator_local.ip().is_loopback() {
        tracing::warn!(
            operator_listen = %operator_local,
            "the operator listener is not on loopback: /status shows the trust list, fetch errors and the policy set's hash to whoever reaches it"
        );
    }
    if dev {
        // The issuer URL must be where clients reach us; in development that is the
        // loopback address we actually bound.
        cfg.server.public_url = format!("http://{local}");
    }
    let mut opts = BuildOptions::new(Arc::new(SystemClock));
    opts.dev_demo = dev;
    let state = AppState::connect(&cfg, opts)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let _state_tasks = state.spawn_state_tasks();
    let warm = state.clone();
    tokio::spawn(async move { warm.warm().await });
    tracing::info!(listen = %local, operator_listen = %operator_local, issuer = %state.public_url(), policies = state.policy_count(), "legate is serving");
    if dev {
        eprintln!("{}", banner(&state, operator_local));
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    // Revocations: the store's notices and a full read every `[state] sync_interval_secs`.
    let _revocation_sync = legate_server::revocation::spawn_sync(
        state.revocations().clone(),
        Arc::new(SystemClock),
        stopped(stop_rx.clone()),
    );
    // Hot reload of the policy folder: SIGHUP and the poller (the bundled set never
    // reloads).
    let _watcher = legate_server::reload::spawn_watcher(
        state.policy_reloader().clone(),
        legate_server::reload::WatchOptions::from_config(&cfg),
        stopped(stop_rx.clone()),
    )
    .context("installing the SIGHUP handler")?;
    let (public, operator) = tokio::join!(
        legate_server::run(listener, state.clone(), stopped(stop_rx.clone())),
        legate_server::run_operator(operator_listener, state, stopped(stop_rx)),
    );
    public.context("public listener")?;
    operator.context("operator listener")?;
    tracing::info!("legate stopped");
    Ok(ExitCode::SUCCESS)
}

/// Why `legate serve` refuses its listen address.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Development mode on a non-loopback address without the explicit opt-in.
    #[error(
        "development mode refuses to listen on `{0}`: its demo issuer signs tokens Legate accepts, \
         for anyone who can reach it; listen on loopback (127.0.0.1 or [::1]), run with \
         --config, or pass --allow-non-loopback if this network is yours alone"
    )]
    DevNonLoopback(SocketAddr),
    /// `--allow-non-loopback` outside development mode.
    #[error("--allow-non-loopback applies to development mode only (without --config)")]
    AllowOutsideDev,
}

/// SECURITY: in development mode the demo issuer mints tokens that Legate accepts and
/// exchanges; on a reachable address anyone could mint them. Refuse unless the operator
/// says so explicitly.
fn check_dev_listen(dev: bool, listen: SocketAddr, allow: bool) -> Result<(), ListenError> {
    match (dev, allow) {
        (false, true) => Err(ListenError::AllowOutsideDev),
        (true, false) if !listen.ip().is_loopback() => Err(ListenError::DevNonLoopback(listen)),
        _ => Ok(()),
    }
}

fn banner(state: &AppState, operator: SocketAddr) -> String {
    let url = state.public_url();
    let DemoCloudPorts { aws, gcp, azure } = DEMO_CLOUD_PORTS;
    format!(
        r#"
  Legate is running in DEVELOPMENT MODE (ephemeral key, in-memory state, bundled policies).
  Its OIDC issuer:  {url}{DISCOVERY_PATH}
  Demo issuer:      {url}/demo  (exists only in development mode)

  Walk through an exchange (allowed, denied by policy, replayed), then a cloud exchange
  end to end for each of demo-aws, demo-gcp and demo-azure, against strict local fakes
  of AWS STS, Google STS and Entra ID that the demo starts on 127.0.0.1:{aws}/{gcp}/{azure}:
      legate demo --url {url}

  Or by hand:
      TOKEN=$(curl -s -X POST {url}/demo/token -d subject=workload:hello -d env=dev)
      curl -s {url}{TOKEN_PATH} \
        -d grant_type={GRANT_TYPE_TOKEN_EXCHANGE} \
        -d subject_token_type={TOKEN_TYPE_JWT} \
        -d audience=demo-api -d requested_lifetime=300 \
        --data-urlencode "subject_token=$TOKEN"

  Trust, policy set and counters (operator listener, {operator}):
      legate status --url http://{operator}

  Audit events (one JSON line per exchange) follow on standard output. Ctrl-C stops.
"#
    )
}

pub(crate) async fn shutdown_signal() {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Stops development mode from exposing its demo issuer (a token mint for anyone)
    /// on a reachable address by a mistyped or copied `--listen`.
    #[test]
    fn dev_mode_refuses_non_loopback_listen_without_opt_in() {
        for addr in [
            "0.0.0.0:8080",
            "[::]:8080",
            "192.0.2.7:8080",
            "[2001:db8::1]:80",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let e = check_dev_listen(true, addr, false).unwrap_err();
            assert!(
                matches!(e, ListenError::DevNonLoopback(a) if a == addr),
                "{e}"
            );
            assert!(e.to_string().contains("--allow-non-loopback"), "{e}");
            assert!(check_dev_listen(true, addr, true).is_ok());
            assert!(
                check_dev_listen(false, addr, false).is_ok(),
                "production decides its own address"
            );
        }
        for addr in ["127.0.0.1:8080", "127.8.9.10:1", "[::1]:8080"] {
            assert!(
                check_dev_listen(true, addr.parse().unwrap(), false).is_ok(),
                "{addr}"
            );
        }
    }

    #[test]
    fn allow_non_loopback_is_refused_outside_dev_mode() {
        let e = check_dev_listen(false, "127.0.0.1:1".parse().unwrap(), true).unwrap_err();
        assert!(matches!(e, ListenError::AllowOutsideDev));
    }
}
