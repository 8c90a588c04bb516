//! `legate`: the cross-cloud workload identity federation gateway.
//!
//! One binary, one file per subcommand: `serve` (run the gateway), `status` (ask a
//! running gateway's operator listener), `inventory` (its credential inventory, an admin
//! endpoint), `config check`, `policy validate|test|eval`,
//! `token decode`, `demo` (walk a newcomer through an exchange against a
//! development-mode server), `revoke` (the admin API's revocations), and the workload
//! side: `exchange`, `credential-process` and `metadata-server` (the local credential
//! broker for SDKs).

mod config_cmd;
mod demo;
mod exchange;
mod inventory;
mod metadata_server;
mod policy;
mod policy_eval;
mod revoke;
mod serve;
mod status;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Legate: exchange a workload's OIDC token for short-lived, policy-checked credentials.
#[derive(Debug, Parser)]
#[command(name = "legate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (without --config: development mode with a demo issuer).
    Serve(serve::Args),
    /// Show a running gateway's status (trust, policy set, limits) from its operator listener.
    Status(status::Args),
    /// List the issuers, subjects, targets and refresh paths of issued credentials
    /// (admin endpoint `/admin/inventory`).
    Inventory(inventory::Args),
    /// Check configuration files.
    #[command(subcommand)]
    Config(config_cmd::Command),
    /// Validate and test Cedar policies.
    #[command(subcommand)]
    Policy(policy::Command),
    /// Inspect tokens.
    #[command(subcommand)]
    Token(token::Command),
    /// Run a real exchange against a development-mode server and explain each step.
    Demo(demo::Args),
    /// Exchange this workload's token for a target's credentials (CI steps, scripts).
    Exchange(exchange::Args),
    /// Print a target's AWS credentials as AWS `credential_process` JSON (~/.aws/config).
    CredentialProcess(exchange::CredentialProcessArgs),
    /// Serve credentials from Legate to unmodified SDKs on a local metadata endpoint
    /// (AWS IMDSv2 and ECS, GCE metadata, Azure managed identity).
    MetadataServer(Box<metadata_server::Args>),
    /// Revoke an identity (by upstream subject, trust, target or token `jti`) through the
    /// admin API; every replica refuses it from then on.
    Revoke(revoke::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // reqwest and the trust store use rustls with the aws-lc-rs provider; no OpenSSL.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Status(args) => status::run(args),
        Command::Inventory(args) => inventory::run(args),
        Command::Config(cmd) => config_cmd::run(cmd),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Token(cmd) => token::run(cmd),
        Command::Demo(args) => demo::run(args),
        Command::Exchange(args) => exchange::run(args),
        Command::CredentialProcess(args) => exchange::run_credential_process(args),
        Command::MetadataServer(args) => metadata_server::run(*args),
        Command::Revoke(args) => revoke::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
