//! `legate-bench`: Legate's exchanges per second against a floor measured in the same
//! run (docs/performance.md, "Load benchmark").
//!
//! What it does: `run` writes the fixtures (an RSA-2048 upstream key, its JWKS, one
//! GitHub-Actions-shaped RS256 token, a policy folder) and, for each round, starts each
//! server pinned to one core (`taskset -c 0`) and the load generator pinned to the other
//! (`taskset -c 1`), as separate processes: first the floor, then Legate with a `jwt`
//! target, then Legate with an `aws` target on a warm credential cache. It prints each
//! rate, its latency percentiles and its ratio to the floor of the same round. Every
//! process stops by itself: the servers when the driver closes their standard input (or
//! after `--max-secs`), the load generator after its warm-up and measurement windows.
//!
//! - `floor`: a bare axum server. `POST /token` with a form holding `subject_token`:
//!   split the compact JWS, base64url-decode signature and payload, verify RS256 with an
//!   aws-lc-rs public key parsed once, parse the claims, answer a small JSON document.
//! - `legate`: Legate's own server (`legate_server::run`, the `legate serve` path), built
//!   in-process from a generated configuration: a static-JWKS trust, the policy folder,
//!   a `jwt` and an `aws` target, the latter pointed at the strict AWS STS fake started
//!   in the same process. One single-threaded runtime.
//! - `load`: a keep-alive HTTP/1.1 load generator (hyper) with N connections for D
//!   seconds after a warm-up, reporting requests per second, p50/p99 latency and errors.
//!
//! - `fleet`: two Legate replicas on one `redis-server` with single-use tokens from a
//!   pre-minted pool, against one replica on the memory backend in the same run
//!   (docs/performance.md, "Fleet: two replicas on one Redis"); see [`fleet`].
//!
//! What it does not do: nothing here is part of the `legate` binary, and nothing here is
//! a test (no assertion on speed anywhere).
//!
//! Layout: `fixtures` (key, token, policies, request bodies, token pool), `floor`,
//! `legate`, `load`, `run` (the driver), `fleet` (the fleet driver), `stop` (how servers
//! know to stop).

mod fixtures;
mod fleet;
mod floor;
mod legate;
mod load;
mod run;
mod stop;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Legate load benchmark.
#[derive(Debug, Parser)]
#[command(name = "legate-bench", about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Drive the whole benchmark: fixtures, then floor, Legate (jwt), Legate (aws) per round.
    Run(run::Args),
    /// Two replicas on one Redis with single-use tokens, against one replica in memory.
    Fleet(fleet::Args),
    /// Write the fixtures (key, JWKS, token, policies, request bodies) into a folder.
    Fixtures(fixtures::Args),
    /// Serve the floor: RS256 verification behind a bare axum server.
    Floor(floor::Args),
    /// Serve Legate in-process from the fixtures, with a strict AWS STS fake.
    Legate(legate::Args),
    /// Generate keep-alive load against one server.
    Load(load::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // reqwest (in the AWS fake and the trust store) uses rustls with aws-lc-rs.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Fleet(args) => fleet::run(&args),
        Command::Fixtures(args) => fixtures::run(&args),
        Command::Floor(args) => floor::run(&args),
        Command::Legate(args) => legate::run(&args),
        Command::Load(args) => load::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A single-threaded runtime: each server gets one core, and the load generator the
/// other.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
