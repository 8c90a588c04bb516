//! `legate metadata-server`: a local endpoint that speaks the AWS IMDSv2 and ECS, GCE
//! metadata and Azure managed-identity protocols, so stock SDKs get credentials from
//! Legate without code changes (see `docs/broker.md`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use legate_broker::server::DEFAULT_GCP_SCOPE;
use legate_broker::{
    AwsShape, AzureShape, Broker, BrokerConfig, ClientTokenSource, GcpShape, LegateFetcher,
    SubjectTokenSource, SystemClock,
};

use legate_client::{Environment, Source, TokenSource};
use legate_core::Secret;

/// The largest secret file read (an ECS authorization token, an identity header).
const MAX_SECRET_FILE_BYTES: u64 = 4096;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Legate's URL (https://, or http:// on loopback).
    #[arg(long, env = "LEGATE_URL")]
    url: String,
    /// Where to listen; loopback only unless --allow-non-loopback.
    #[arg(long, default_value = "127.0.0.1:9944")]
    listen: SocketAddr,
    /// Serve AWS IMDSv2 (and ECS with --ecs-auth-token-file) for this target.
    #[arg(long)]
    aws_target: Option<String>,
    /// Serve GCE metadata for this target.
    #[arg(long)]
    gcp_target: Option<String>,
    /// Serve Azure managed identity (IMDS, and App Service with
    /// --azure-identity-header-file) for this target.
    #[arg(long)]
    azure_target: Option<String>,
    /// Where the workload's subject token comes from, as for `legate exchange`
    /// (`github-actions`, `gitlab:VAR`, `file:PATH`, `env:VAR`, `exec:CMD`,
    /// `gce-metadata`, `azure-imds`, `aws-sts`; docs/ci.md); detected when omitted. Asked
    /// again at every refresh (a file is re-read: Kubernetes projected tokens rotate).
    #[arg(long, value_name = "SOURCE", env = "LEGATE_TOKEN_SOURCE")]
    token_source: Option<String>,
    /// The audience to ask the token source for (sources that take one); the Legate URL
    /// by default.
    #[arg(long, value_name = "AUD")]
    audience: Option<String>,
    /// Serve the ECS endpoint `/v2/credentials`, requiring this file's content as the
    /// `Authorization` header (`AWS_CONTAINER_AUTHORIZATION_TOKEN`).
    #[arg(long, value_name = "PATH")]
    ecs_auth_token_file: Option<PathBuf>,
    /// Serve the App Service endpoint `/msi/token`, requiring this file's content as
    /// the `X-IDENTITY-HEADER` header (`IDENTITY_HEADER`).
    #[arg(long, value_name = "PATH")]
    azure_identity_header_file: Option<PathBuf>,
    /// Listen on a non-loopback address (anyone who can reach it gets credentials).
    #[arg(long)]
    allow_non_loopback: bool,
    /// The service account the GCP target impersonates (reported as its email).
    #[arg(long, value_name = "EMAIL")]
    gcp_service_account: Option<String>,
    /// Serve `project/project-id` with this value.
    #[arg(long, value_name = "ID")]
    gcp_project_id: Option<String>,
    /// A scope the GCP target's tokens carry (repeatable); others are refused.
    #[arg(long, value_name = "SCOPE", default_value = DEFAULT_GCP_SCOPE)]
    gcp_scope: Vec<String>,
    /// The Azure target's scope (e.g. `https://management.azure.com/.default`); clients
    /// asking for another resource are refused.
    #[arg(long, value_name = "SCOPE")]
    azure_scope: Option<String>,
    /// A `client_id` Azure clients may name (the managed identity's client id).
    #[arg(long, value_name = "ID")]
    azure_client_id: Option<String>,
    /// The role name IMDS lists.
    #[arg(long, value_name = "NAME", default_value = "legate")]
    aws_role_name: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LEGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let (config, source) = configure(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let fetcher = LegateFetcher::new(&args.url, source)?;
        let listener = legate_broker::bind(args.listen, args.allow_non_loopback).await?;
        let local = listener.local_addr()?;
        let broker = Broker::new(config, local, Arc::new(fetcher), Arc::new(SystemClock))?;
        eprintln!("legate metadata-server listening on http://{local}");
        legate_broker::serve(listener, broker, crate::serve::shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The broker configuration and subject-token source named by the flags.
fn configure(args: &Args) -> anyhow::Result<(BrokerConfig, Arc<dyn SubjectTokenSource>)> {
    let audience = args.audience.clone().unwrap_or_else(|| args.url.clone());
    let source = token_source(
        args.token_source.as_deref(),
        &audience,
        Environment::from_process(),
    )?;
    if args.ecs_auth_token_file.is_some() && args.aws_target.is_none() {
        bail!("--ecs-auth-token-file needs --aws-target");
    }
    if args.azure_identity_header_file.is_some() && args.azure_target.is_none() {
        bail!("--azure-identity-header-file needs --azure-target");
    }
    if (args.gcp_service_account.is_some() || args.gcp_project_id.is_some())
        && args.gcp_target.is_none()
    {
        bail!("--gcp-service-account and --gcp-project-id need --gcp-target");
    }
    let aws = match &args.aws_target {
        Some(target) => Some(AwsShape {
            target: target.clone(),
            role_name: args.aws_role_name.clone(),
            ecs_auth_token: args
                .ecs_auth_token_file
                .as_deref()
                .map(|p| read_secret(p, "--ecs-auth-token-file"))
                .transpose()?,
        }),
        None => None,
    };
    let gcp = args.gcp_target.as_ref().map(|target| GcpShape {
        target: target.clone(),
        service_account: args.gcp_service_account.clone(),
        project_id: args.gcp_project_id.clone(),
        scopes: args.gcp_scope.clone(),
    });
    let azure = match &args.azure_target {
        Some(target) => {
            let Some(scope) = &args.azure_scope else {
                bail!(
                    "--azure-target needs --azure-scope (the target's scope, e.g. https://management.azure.com/.default)"
                );
            };
            let Some(resource) = scope.strip_suffix("/.default") else {
                bail!("--azure-scope `{scope}` must end in `/.default`");
            };
            Some(AzureShape {
                target: target.clone(),
                resource: resource.to_owned(),
                client_id: args.azure_client_id.clone(),
                identity_header: args
                    .azure_identity_header_file
                    .as_deref()
                    .map(|p| read_secret(p, "--azure-identity-header-file"))
                    .transpose()?,
            })
        }
        None => None,
    };
    let config = BrokerConfig { aws, gcp, azure };
    config.validate()?;
    Ok((config, source))
}

/// The subject-token source named by `spec` (detected from `env` when `None`): one of
/// `legate-client`'s, behind the broker's seam.
fn token_source(
    spec: Option<&str>,
    audience: &str,
    env: Environment,
) -> anyhow::Result<Arc<dyn SubjectTokenSource>> {
    let kind = spec.map(str::parse::<TokenSource>).transpose()?;
    let source = Source::new_or_detect(kind, audience, env)?;
    Ok(Arc::new(ClientTokenSource::new(source)))
}

/// A secret file's content, trimmed; never echoed in errors.
fn read_secret(path: &Path, flag: &str) -> anyhow::Result<Secret<String>> {
    let meta = std::fs::metadata(path).with_context(|| format!("{flag} `{}`", path.display()))?;
    if meta.len() > MAX_SECRET_FILE_BYTES {
        bail!(
            "{flag} `{}` is larger than {MAX_SECRET_FILE_BYTES} bytes",
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("{flag} `{}`", path.display()))?;
    let value = text.trim();
    if value.is_empty() {
        bail!("{flag} `{}` is empty", path.display());
    }
    Ok(Secret::new(value.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use clap::Parser as _;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec![
            "x",
            "--url",
            "http://127.0.0.1:1",
            "--token-source",
            "file:/t",
        ];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn token_sources_are_legate_clients() {
        let env = || Environment::from_pairs([("X", "t")]);
        for good in [
            "file:/var/run/token",
            "env:X",
            "github-actions",
            "gce-metadata",
        ] {
            assert!(token_source(Some(good), "aud", env()).is_ok(), "{good}");
        }
        for bad in ["file:", "nonsense", "/path"] {
            assert!(token_source(Some(bad), "aud", env()).is_err(), "{bad}");
        }
        // Nothing to detect in an empty environment: a clear error, no default.
        assert!(
            token_source(
                None,
                "aud",
                Environment::from_pairs(Vec::<(String, String)>::new())
            )
            .is_err()
        );
    }

    /// The broker reads its subject token through legate-client: a file source is
    /// re-read at every call, and a failing source is named without any token.
    #[tokio::test]
    async fn the_broker_seam_reads_legate_client_sources() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, "first\n").unwrap();
        let source = token_source(
            Some(&format!("file:{}", path.display())),
            "aud",
            Environment::from_pairs(Vec::<(String, String)>::new()),
        )
        .unwrap();
        assert_eq!(source.subject_token().await.unwrap().expose(), "first");
        std::fs::write(&path, "second\n").unwrap();
        assert_eq!(source.subject_token().await.unwrap().expose(), "second");
        let missing = token_source(
            Some("env:NOPE"),
            "aud",
            Environment::from_pairs(Vec::<(String, String)>::new()),
        )
        .unwrap();
        let err = missing.subject_token().await.unwrap_err().to_string();
        assert!(err.contains("env:NOPE"), "{err}");
    }

    #[test]
    fn flags_that_need_a_target_are_refused_without_it() {
        assert!(configure(&args(&[])).is_err(), "no target");
        assert!(configure(&args(&["--gcp-target", "g", "--ecs-auth-token-file", "/x"])).is_err());
        assert!(
            configure(&args(&[
                "--aws-target",
                "a",
                "--azure-identity-header-file",
                "/x"
            ]))
            .is_err()
        );
        assert!(
            configure(&args(&["--azure-target", "z"])).is_err(),
            "azure needs its scope"
        );
        assert!(
            configure(&args(&[
                "--azure-target",
                "z",
                "--azure-scope",
                "https://x"
            ]))
            .is_err()
        );
        let (config, _) = configure(&args(&[
            "--azure-target",
            "z",
            "--azure-scope",
            "https://management.azure.com/.default",
        ]))
        .unwrap();
        assert_eq!(
            config.azure.unwrap().resource,
            "https://management.azure.com"
        );
    }

    /// Stops `legate metadata-server` from serving credentials to the network because
    /// of a typo in `--listen`: without `--allow-non-loopback` it exits with an error.
    #[test]
    fn a_non_loopback_listen_address_needs_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let token = format!("file:{}", dir.path().join("t").display());
        let argv = |extra: &[&str]| {
            let mut v = vec![
                "x",
                "--url",
                "http://127.0.0.1:1",
                "--token-source",
                &token,
                "--gcp-target",
                "g",
                "--listen",
                "192.0.2.1:9944",
            ];
            v.extend_from_slice(extra);
            Cli::try_parse_from(v).unwrap().args
        };
        let err = run(argv(&[])).unwrap_err().to_string();
        assert!(err.contains("not a loopback address"), "{err}");
        // With the flag the refusal is gone: what remains is the OS refusing an
        // address this host does not have (TEST-NET-1), not the broker.
        let err = run(argv(&["--allow-non-loopback"]))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("not a loopback address"), "{err}");
    }

    #[test]
    fn secret_files_are_trimmed_bounded_and_never_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "value-123\n").unwrap();
        assert_eq!(read_secret(&path, "--f").unwrap().expose(), "value-123");
        std::fs::write(&path, "x".repeat(5000)).unwrap();
        let err = read_secret(&path, "--f").unwrap_err().to_string();
        assert!(err.contains("larger") && !err.contains("xxxx"), "{err}");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_secret(&path, "--f").is_err());
    }
}
