//! `legate token decode`: show a token's header and claims, clearly marked unverified.

use std::io::Read as _;
use std::process::ExitCode;

use legate_core::UnverifiedJwt;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Decode a compact JWS read from standard input (or the argument) without verifying it.
    Decode {
        /// The token; read from standard input when absent (keeps it out of shell history).
        token: Option<String>,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let Command::Decode { token } = cmd;
    let token = match token {
        Some(t) => t,
        None => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
    };
    match UnverifiedJwt::parse(token.trim()) {
        Ok(jwt) => {
            let out = serde_json::json!({
                "verified": false,
                "header": jwt.unverified_header(),
                "claims": jwt.unverified_claims(),
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("not a token Legate would accept ({}): {e}", e.reason_code());
            Ok(ExitCode::FAILURE)
        }
    }
}
