//! `legate revoke`: revoke an identity through the admin API (`POST /admin/revocations`
//! on the operator listener).
//!
//! `legate revoke --url URL --token-source SOURCE [--subject S] [--trust T] [--target X]
//! [--jti J] --reason TEXT`: the admin's bearer token comes from a token source, as for
//! `legate exchange` (`file:PATH`, `env:VAR`, `exec:CMD`, `github-actions`, …; the
//! sources that take an audience are asked for `--audience`, which must be Legate's
//! `[admin] audience`). A revocation matches a request when all its given selectors
//! match; give at least one.
//!
//! Prints the stored revocation (the server's JSON, one line) on standard output.
//!
//! Exit status: 0 stored (or the same selectors were already revoked: the live
//! revocation is printed); 1 Legate refused (a bad request, an unknown trust or target,
//! authentication or authorisation, the revocation limit; its `error` on standard
//! error); 2 usage (clap's, or an unusable `--url` or `--ca-file`); 3 the token source
//! failed; 4 Legate unreachable, unavailable (503) or its answer unreadable. Errors never
//! carry the token.

use std::process::ExitCode;
use std::time::Duration;

use legate_client::source::{MAX_SOURCE_BYTES, http_client};
use legate_client::{Environment, Source, TokenSource};
use legate_core::text::escape_untrusted;
use serde_json::{Map, Value};

/// Exit status: Legate refused.
const EXIT_REFUSED: u8 = 1;
/// Exit status: usage.
const EXIT_USAGE: u8 = 2;
/// Exit status: the token source failed.
const EXIT_SOURCE: u8 = 3;
/// Exit status: Legate unavailable, unreachable, or its answer unreadable.
const EXIT_UNAVAILABLE: u8 = 4;

/// `legate revoke`.
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("selector")
        .required(true)
        .multiple(true)
        .args(["subject", "trust", "target", "jti"]),
))]
pub struct Args {
    /// The operator listener's base URL (where the admin API is).
    #[arg(long, env = "LEGATE_OPERATOR_URL")]
    url: String,
    /// Where the admin's bearer token comes from: github-actions, gitlab:VAR, file:PATH,
    /// env:VAR, exec:CMD, gce-metadata, azure-imds or aws-sts.
    #[arg(long, env = "LEGATE_TOKEN_SOURCE")]
    token_source: String,
    /// The audience to ask the token source for (Legate's `[admin] audience`; sources
    /// that take one); the URL when absent.
    #[arg(long, env = "LEGATE_AUDIENCE")]
    audience: Option<String>,
    /// Revoke this upstream subject (the subject token's `sub`).
    #[arg(long)]
    subject: Option<String>,
    /// Revoke this trust (a configured trust name).
    #[arg(long)]
    trust: Option<String>,
    /// Revoke this target (a configured target name).
    #[arg(long)]
    target: Option<String>,
    /// Revoke the token with this `jti` (one Legate minted, or a subject token).
    #[arg(long)]
    jti: Option<String>,
    /// Why (recorded with the revocation).
    #[arg(long)]
    reason: String,
    /// A PEM file of extra CA certificates for the operator listener's TLS certificate.
    #[arg(long, env = "LEGATE_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
}

/// A failure with its exit status.
struct Failure {
    code: u8,
    message: String,
}

/// Runs `legate revoke`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    Ok(match revoke(&args, Environment::from_process()) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("legate: {}", failure.message);
            ExitCode::from(failure.code)
        }
    })
}

/// The request body: the given selectors and the reason.
fn body(args: &Args) -> Value {
    let mut body = Map::new();
    for (name, value) in [
        ("subject", &args.subject),
        ("trust", &args.trust),
        ("target", &args.target),
        ("jti", &args.jti),
    ] {
        if let Some(value) = value {
            body.insert(name.to_owned(), Value::String(value.clone()));
        }
    }
    body.insert("reason".to_owned(), Value::String(args.reason.clone()));
    Value::Object(body)
}

fn revoke(args: &Args, env: Environment) -> Result<String, Failure> {
    let source_failure = |e: legate_client::SourceError| Failure {
        code: EXIT_SOURCE,
        message: e.to_string(),
    };
    let usage = |message: String| Failure {
        code: EXIT_USAGE,
        message,
    };
    let kind = args
        .token_source
        .parse::<TokenSource>()
        .map_err(source_failure)?;
    let audience = args.audience.clone().unwrap_or_else(|| args.url.clone());
    let source = Source::new(kind, audience, env).map_err(source_failure)?;
    let base = args.url.trim_end_matches('/');
    let url = reqwest::Url::parse(&format!("{base}/admin/revocations"))
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or_else(|| {
            usage(format!(
                "`{}` is not an http(s) URL with a host",
                escape_untrusted(&args.url)
            ))
        })?;
    let ca = match &args.ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| usage(format!("cannot read --ca-file `{}`: {e}", path.display())))?,
        ),
        None => None,
    };
    let http = http_client(
        ca.as_deref(),
        Duration::from_secs(10),
        Duration::from_secs(30),
    )
    .map_err(|e| usage(format!("cannot build an HTTP client: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure {
            code: EXIT_UNAVAILABLE,
            message: format!("starting the async runtime: {e}"),
        })?;
    runtime.block_on(async {
        let token = source.fetch().await.map_err(source_failure)?;
        let unavailable = |message: String| Failure {
            code: EXIT_UNAVAILABLE,
            message,
        };
        let response = http
            .post(url.clone())
            .bearer_auth(token.expose())
            .json(&body(args))
            .send()
            .await
            .map_err(|e| {
                unavailable(format!(
                    "cannot reach `{}`: {}",
                    escape_untrusted(url.as_str()),
                    escape_untrusted(&e.without_url().to_string())
                ))
            })?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| unavailable(format!("reading the answer: {e}")))?;
        if bytes.len() > MAX_SOURCE_BYTES {
            return Err(unavailable("the answer is too large".to_owned()));
        }
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let field = |name: &str| {
            answer
                .get(name)
                .and_then(Value::as_str)
                .map(escape_untrusted)
        };
        match status {
            200 | 201 if answer.get("id").is_some() => Ok(answer.to_string()),
            200 | 201 => Err(unavailable(format!(
                "HTTP {status} without a revocation in the answer"
            ))),
            503 => Err(unavailable(format!(
                "Legate is unavailable (HTTP 503): {}",
                field("error_description").unwrap_or_default()
            ))),
            400..=499 => Err(Failure {
                code: EXIT_REFUSED,
                message: format!(
                    "Legate refused the revocation (HTTP {status} {}){}",
                    field("error").unwrap_or_else(|| "?".to_owned()),
                    field("error_description")
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                ),
            }),
            _ => Err(unavailable(format!("Legate answered HTTP {status}"))),
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn the_body_holds_the_given_selectors_and_the_reason() {
        let cli = Cli::try_parse_from([
            "revoke",
            "--url",
            "http://127.0.0.1:9464",
            "--token-source",
            "file:/t",
            "--subject",
            "repo:a",
            "--target",
            "prod",
            "--reason",
            "leaked",
        ])
        .unwrap();
        assert_eq!(
            body(&cli.args),
            serde_json::json!({"subject": "repo:a", "target": "prod", "reason": "leaked"})
        );
    }

    /// Stops a revocation without any selector from being sent at all: clap refuses it
    /// (usage, exit status 2), as it refuses one without a reason.
    #[test]
    fn a_selector_and_a_reason_are_required() {
        let base = ["revoke", "--url", "http://x", "--token-source", "file:/t"];
        let no_selector = Cli::try_parse_from(base.iter().chain(&["--reason", "r"]));
        assert!(no_selector.is_err());
        let no_reason = Cli::try_parse_from(base.iter().chain(&["--jti", "j"]));
        assert!(no_reason.is_err());
    }
}
