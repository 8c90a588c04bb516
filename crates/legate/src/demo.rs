//! `legate demo`: a guided, real exchange against a development-mode server.

use std::process::ExitCode;

use anyhow::Context as _;
use legate_core::UnverifiedJwt;
use legate_core::exchange::{GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_JWT};
use legate_issuer::{DISCOVERY_PATH, TOKEN_PATH};
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Base URL of a `legate serve` running in development mode.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(demo(&args.url))
}

async fn demo(url: &str) -> anyhow::Result<ExitCode> {
    let http = reqwest::Client::builder().build()?;
    let mint = |env: &'static str| {
        let http = http.clone();
        async move {
            let resp = http
                .post(format!("{url}/demo/token"))
                .form(&[("subject", "workload:hello"), ("env", env)])
                .send()
                .await
                .with_context(|| {
                    format!("is `legate serve` (development mode) running at {url}?")
                })?;
            anyhow::ensure!(
                resp.status().is_success(),
                "the server at {url} has no demo issuer (not in development mode?)"
            );
            Ok::<String, anyhow::Error>(resp.text().await?.trim().to_owned())
        }
    };
    let exchange = |token: String| {
        let http = http.clone();
        async move {
            let resp = http
                .post(format!("{url}{TOKEN_PATH}"))
                .form(&[
                    ("grant_type", GRANT_TYPE_TOKEN_EXCHANGE),
                    ("subject_token_type", TOKEN_TYPE_JWT),
                    ("audience", "demo-api"),
                    ("requested_lifetime", "300"),
                    ("subject_token", token.as_str()),
                ])
                .send()
                .await?;
            let status = resp.status().as_u16();
            Ok::<(u16, Value), anyhow::Error>((status, resp.json().await?))
        }
    };

    println!("1. A workload gets a token from its platform (here: the demo issuer).");
    let token = mint("dev").await?;
    print_claims("   workload token (claims)", &token);

    println!(
        "\n2. It exchanges that token at {url}{TOKEN_PATH} for the target `demo-api` (RFC 8693)."
    );
    let (status, body) = exchange(token.clone()).await?;
    println!("   HTTP {status}");
    if let Some(minted) = body.get("access_token").and_then(Value::as_str) {
        print_claims("   Legate-signed token for demo-api (claims)", minted);
        println!("   verify it with Legate's keys: {url}{DISCOVERY_PATH}");
    } else {
        println!("   {body}");
    }

    println!("\n3. The same token again: replay protection refuses it.");
    let (status, body) = exchange(token).await?;
    println!("   HTTP {status}: {body}");

    println!("\n4. A workload from env=prod: the policy `demo.cedar` does not permit it.");
    let (status, body) = exchange(mint("prod").await?).await?;
    println!("   HTTP {status}: {body}");
    println!("\nBoth refusals look the same on the wire; the server's audit log (its standard");
    println!("output) says why each one was refused, under the same request_id.");
    Ok(ExitCode::SUCCESS)
}

fn print_claims(label: &str, token: &str) {
    match UnverifiedJwt::parse(token) {
        Ok(jwt) => {
            let pretty = serde_json::to_string_pretty(jwt.unverified_claims()).unwrap_or_default();
            println!("{label}:");
            for line in pretty.lines() {
                println!("     {line}");
            }
        }
        Err(e) => println!("{label}: unreadable ({e})"),
    }
}
