//! `legate exchange` and `legate credential-process`: the workload side.
//!
//! Both obtain a subject token from a token source (`--token-source`, or detected:
//! `legate_client::source`), call `POST {url}/token` with bounded retries, and print
//! the result.
//!
//! `legate exchange --format`:
//! - `json` (default): the server's answer, as received, on one line;
//! - `env`: `export NAME='value'` lines (`legate_client::output`): `AWS_ACCESS_KEY_ID`,
//!   `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` for AWS targets;
//!   `CLOUDSDK_AUTH_ACCESS_TOKEN` and `AZURE_ACCESS_TOKEN` for Google and Azure targets;
//!   `LEGATE_TOKEN` for jwt targets. Use as `X="$(legate exchange … --format env)"`
//!   then `eval "$X"`: the assignment fails under `set -e` when the exchange fails,
//!   where `eval "$(…)"` alone would not;
//! - `github`: `::add-mask::VALUE` for every value on standard output, then
//!   `NAME=VALUE` lines appended to the file `$GITHUB_ENV`; a value holding a line
//!   break is refused and nothing is written.
//!
//! `legate credential-process` prints the AWS `credential_process` document (`Version`
//! 1, `AccessKeyId`, `SecretAccessKey`, `SessionToken`, `Expiration`) for `~/.aws/config`.
//!
//! Exit status: 0 done; 1 Legate refused the exchange (its `error` and `request_id` are
//! on standard error); 2 usage; 3 the token source failed; 4 Legate stayed unavailable
//! or unreachable after the retries, or answered something unreadable; 5 the answer
//! cannot be written as asked (`$GITHUB_ENV` unset or unwritable, a line break in a
//! value, a non-AWS target for `credential-process`). Errors go to standard error and
//! never carry a token or credential.

use std::io::Write as _;
use std::process::ExitCode;

use legate_client::output::{github_env, shell_exports};
use legate_client::{
    Client, ClientError, Environment, ExchangeAnswer, IssuedCredential, Source, TokenSource,
};

/// Exit status: Legate refused.
const EXIT_REFUSED: u8 = 1;
/// Exit status: usage (as clap's own).
const EXIT_USAGE: u8 = 2;
/// Exit status: the token source failed.
const EXIT_SOURCE: u8 = 3;
/// Exit status: Legate unavailable, unreachable, or its answer unreadable.
const EXIT_UNAVAILABLE: u8 = 4;
/// Exit status: the answer cannot be written as asked.
const EXIT_OUTPUT: u8 = 5;

/// What both commands share.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// The Legate server's base URL.
    #[arg(long, env = "LEGATE_URL")]
    url: String,
    /// The target to exchange for (the `audience` of the exchange).
    #[arg(long, env = "LEGATE_TARGET")]
    target: String,
    /// Where the subject token comes from: github-actions, gitlab:VAR, file:PATH,
    /// env:VAR, exec:CMD, gce-metadata, azure-imds or aws-sts. Detected when absent
    /// (GitHub Actions, GitLab `LEGATE_ID_TOKEN`, `LEGATE_TOKEN_FILE`, the Kubernetes
    /// service-account token).
    #[arg(long, env = "LEGATE_TOKEN_SOURCE")]
    token_source: Option<String>,
    /// The audience to ask the token source for (sources that take one); the Legate URL
    /// when absent.
    #[arg(long, env = "LEGATE_AUDIENCE")]
    audience: Option<String>,
    /// A PEM file of extra CA certificates for Legate's TLS certificate.
    #[arg(long, env = "LEGATE_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
}

/// `legate exchange`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
}

/// `legate exchange --format`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    /// The server's JSON answer.
    Json,
    /// Shell `export` lines of the SDKs' variables.
    Env,
    /// `::add-mask::` lines, and the variables appended to `$GITHUB_ENV`.
    Github,
}

/// `legate credential-process`.
#[derive(Debug, clap::Args)]
pub struct CredentialProcessArgs {
    #[command(flatten)]
    common: Common,
}

/// A failure with its exit status (the message is printed by [`fail`]).
struct Failure {
    code: u8,
    message: String,
}

fn fail(failure: &Failure) -> ExitCode {
    eprintln!("legate: {}", failure.message);
    ExitCode::from(failure.code)
}

/// Runs `legate exchange`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let env = Environment::from_process();
    let answer = match obtain(&args.common, env.clone()) {
        Ok(answer) => answer,
        Err(failure) => return Ok(fail(&failure)),
    };
    let written = match args.format {
        Format::Json => println_checked(&answer.json().to_string()),
        Format::Env => print_checked(&shell_exports(&answer.credential)),
        Format::Github => write_github(&answer, &env),
    };
    Ok(match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => fail(&failure),
    })
}

/// Runs `legate credential-process`.
pub fn run_credential_process(args: CredentialProcessArgs) -> anyhow::Result<ExitCode> {
    let answer = match obtain(&args.common, Environment::from_process()) {
        Ok(answer) => answer,
        Err(failure) => return Ok(fail(&failure)),
    };
    let IssuedCredential::Aws(creds) = &answer.credential else {
        return Ok(fail(&Failure {
            code: EXIT_OUTPUT,
            message: format!(
                "target `{}` did not issue AWS credentials (issued `{}`): credential-process needs an aws target",
                legate_core::text::escape_untrusted(&args.common.target),
                legate_core::text::escape_untrusted(&answer.issued_token_type)
            ),
        }));
    };
    Ok(match println_checked(&creds.credential_process_json()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => fail(&failure),
    })
}

/// Fetches the subject token and exchanges it.
fn obtain(common: &Common, env: Environment) -> Result<ExchangeAnswer, Failure> {
    let source_failure = |e: legate_client::SourceError| Failure {
        code: EXIT_SOURCE,
        message: e.to_string(),
    };
    let kind = common
        .token_source
        .as_deref()
        .map(str::parse::<TokenSource>)
        .transpose()
        .map_err(source_failure)?;
    let audience = common
        .audience
        .clone()
        .unwrap_or_else(|| common.url.clone());
    let source = Source::new_or_detect(kind, audience, env).map_err(source_failure)?;
    let ca = match &common.ca_file {
        Some(path) => Some(std::fs::read(path).map_err(|e| Failure {
            code: EXIT_USAGE,
            message: format!("cannot read --ca-file `{}`: {e}", path.display()),
        })?),
        None => None,
    };
    let client = Client::with_ca(&common.url, ca.as_deref()).map_err(|e| Failure {
        code: EXIT_USAGE,
        message: e.to_string(),
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure {
            code: EXIT_UNAVAILABLE,
            message: format!("starting the async runtime: {e}"),
        })?;
    runtime.block_on(async {
        let token = source.fetch().await.map_err(source_failure)?;
        client
            .exchange(&common.target, &token)
            .await
            .map_err(|e| Failure {
                code: match e {
                    ClientError::Refused { .. } => EXIT_REFUSED,
                    ClientError::BadUrl { .. } => EXIT_USAGE,
                    ClientError::Unavailable { .. } | ClientError::BadAnswer(_) => EXIT_UNAVAILABLE,
                },
                message: e.to_string(),
            })
    })
}

fn write_github(answer: &ExchangeAnswer, env: &Environment) -> Result<(), Failure> {
    let output = |message: String| Failure {
        code: EXIT_OUTPUT,
        message,
    };
    let rendered = github_env(&answer.credential).map_err(|e| output(e.to_string()))?;
    let path = env.get("GITHUB_ENV").ok_or_else(|| {
        output("--format github needs $GITHUB_ENV (run inside GitHub Actions)".into())
    })?;
    // The masks come first: GitHub masks a value in every log line after its mask.
    print_checked(&rendered.masks)?;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| output(format!("cannot open $GITHUB_ENV `{path}`: {e}")))?;
    file.write_all(rendered.env_lines.as_bytes())
        .map_err(|e| output(format!("cannot write $GITHUB_ENV `{path}`: {e}")))
}

fn print_checked(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure {
            code: EXIT_OUTPUT,
            message: format!("cannot write to standard output: {e}"),
        })
}

fn println_checked(text: &str) -> Result<(), Failure> {
    print_checked(&format!("{text}\n"))
}
