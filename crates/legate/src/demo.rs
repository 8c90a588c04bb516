//! `legate demo`: a guided, real exchange against a development-mode server.
//!
//! Steps 1–4 exchange demo workload tokens for the `jwt` target `demo-api`: allowed,
//! replayed, denied by policy.
//!
//! Steps 5–7 walk the cloud path end to end. The demo starts strict local fakes of AWS
//! STS, Google STS + IAM Credentials and Entra ID (`legate-fakes`) on the loopback ports
//! the embedded development configuration points its `demo-aws`, `demo-gcp` and
//! `demo-azure` targets at ([`DEMO_CLOUD_PORTS`]: 8091, 8092, 8093), trusting the
//! server's issuer as its discovery document names it. Each fake checks Legate's
//! assertion the way the cloud does (discovery, JWKS, signature, `iss`, `aud`, `sub`,
//! lifetime) before it issues anything. The demo exchanges a fresh demo token for each
//! target, prints the answer with every secret masked (a short prefix and the length)
//! and what the fake verified, then shows the credential cache answering a repeat
//! request without a cloud call, and a refused workload never reaching the cloud.
//!
//! The fakes live as long as the demo. A taken port stops the cloud steps with a
//! message naming it; nothing else on the machine is touched.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use legate_core::UnverifiedJwt;
use legate_core::exchange::{GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_JWT};
use legate_fakes::{CloudTargets, FakeAddrs, FakeClouds, Options, StartError};
use legate_server::dev::{DEMO_CLOUD_PORTS, DEMO_CLOUD_TARGETS, DemoCloudPorts};
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
    let mut out = std::io::stdout();
    runtime.block_on(async {
        let finished = demo(&args.url, DEMO_CLOUD_PORTS, &mut out).await?;
        Ok(finished.code)
    })
}

/// How many characters of a secret the demo shows.
const SHOWN_PREFIX: usize = 6;

/// A finished demo: its exit status, and the fakes (kept up while this is held, so a
/// test can read what they issued).
pub(crate) struct Finished {
    pub(crate) code: ExitCode,
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the tests"))]
    pub(crate) clouds: FakeClouds,
}

/// The development server, as the demo talks to it.
struct Server {
    http: reqwest::Client,
    url: String,
}

impl Server {
    fn new(url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            // Cloud targets answer within their `timeout_secs` (5 s in development).
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            url: url.trim_end_matches('/').to_owned(),
        })
    }

    /// A demo workload token for `subject` with the claim `env`.
    async fn mint(&self, subject: &str, env: &str) -> anyhow::Result<String> {
        let url = &self.url;
        let resp = self
            .http
            .post(format!("{url}/demo/token"))
            .form(&[("subject", subject), ("env", env)])
            .send()
            .await
            .with_context(|| format!("is `legate serve` (development mode) running at {url}?"))?;
        anyhow::ensure!(
            resp.status().is_success(),
            "the server at {url} has no demo issuer (not in development mode?)"
        );
        Ok(resp.text().await?.trim().to_owned())
    }

    /// Exchanges `token` for the target `audience`: the status and the JSON answer.
    async fn exchange(&self, token: &str, audience: &str) -> anyhow::Result<(u16, Value)> {
        let resp = self
            .http
            .post(format!("{}/token", self.url))
            .form(&[
                ("grant_type", GRANT_TYPE_TOKEN_EXCHANGE),
                ("subject_token_type", TOKEN_TYPE_JWT),
                ("audience", audience),
                ("requested_lifetime", "300"),
                ("subject_token", token),
            ])
            .send()
            .await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await?))
    }

    /// The server's issuer, from its discovery document: what the fakes must trust.
    async fn issuer(&self) -> anyhow::Result<String> {
        let doc: Value = self
            .http
            .get(format!("{}/.well-known/openid-configuration", self.url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        doc.get("issuer")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .context("the server's discovery document has no `issuer`")
    }
}

/// Runs every step against the development server at `url`, starting the cloud fakes
/// on `ports`, and writes the walk-through to `out`.
pub(crate) async fn demo(
    url: &str,
    ports: DemoCloudPorts,
    out: &mut dyn Write,
) -> anyhow::Result<Finished> {
    let server = Server::new(url)?;
    let url = server.url.as_str();

    writeln!(
        out,
        "1. A workload gets a token from its platform (here: the demo issuer)."
    )?;
    let token = server.mint("workload:hello", "dev").await?;
    print_claims(out, "   workload token (claims)", &token)?;

    writeln!(
        out,
        "\n2. It exchanges that token at {url}/token for the target `demo-api` (RFC 8693)."
    )?;
    let (status, body) = server.exchange(&token, "demo-api").await?;
    writeln!(out, "   HTTP {status}")?;
    if let Some(minted) = body.get("access_token").and_then(Value::as_str) {
        print_claims(out, "   Legate-signed token for demo-api (claims)", minted)?;
        writeln!(
            out,
            "   verify it with Legate's keys: {url}/.well-known/openid-configuration"
        )?;
    } else {
        writeln!(out, "   {body}")?;
    }

    writeln!(
        out,
        "\n3. The same token again: replay protection refuses it."
    )?;
    let (status, body) = server.exchange(&token, "demo-api").await?;
    writeln!(out, "   HTTP {status}: {body}")?;

    writeln!(
        out,
        "\n4. A workload from env=prod: the policy `demo.cedar` does not permit it."
    )?;
    let (status, body) = server
        .exchange(&server.mint("workload:hello", "prod").await?, "demo-api")
        .await?;
    writeln!(out, "   HTTP {status}: {body}")?;
    writeln!(
        out,
        "   Both refusals look the same on the wire; the server's audit log (its standard"
    )?;
    writeln!(
        out,
        "   output) says why each one was refused, under the same request_id."
    )?;

    let issuer = server.issuer().await?;
    writeln!(
        out,
        "\n5. Cloud targets. Legate never forwards the workload's token to a cloud: it mints its\n   \
         own short-lived assertion (iss {issuer}, sub target/<target name>)\n   \
         and exchanges that at the cloud's token service. Here those services are strict\n   \
         local fakes of AWS STS, Google STS + IAM Credentials and Entra ID, started now on\n   \
         127.0.0.1:{}, {} and {} (where the development configuration points demo-aws,\n   \
         demo-gcp and demo-azure), trusting {issuer}.",
        ports.aws, ports.gcp, ports.azure
    )?;
    let clouds = start_fakes(&issuer, ports).await?;
    // A workload name of this run's own, so that credentials an earlier run left in
    // the server's cache are not served: each fake sees its call.
    let workload = format!("workload:cloud-demo:{}", std::process::id());
    let mut ok = true;
    let mut aws_key = None;
    for target in DEMO_CLOUD_TARGETS {
        let fake = match target {
            "demo-aws" => format!("AWS STS fake at {}", clouds.aws.url()),
            "demo-gcp" => format!("Google fake at {}", clouds.gcp.url()),
            _ => format!("Entra ID fake at {}", clouds.entra.url()),
        };
        writeln!(
            out,
            "\n   {target} ({fake}): a fresh demo token for {workload}, env=dev"
        )?;
        let (status, body) = server
            .exchange(&server.mint(&workload, "dev").await?, target)
            .await?;
        if status != 200 {
            ok = false;
            explain_failure(out, target, status, &body)?;
            continue;
        }
        let shown = match target {
            "demo-aws" => {
                aws_key = str_at(&body, &["aws_credentials", "AccessKeyId"]).map(str::to_owned);
                show_aws(out, &body, &clouds)?
            }
            "demo-gcp" => show_gcp(out, &body, &clouds)?,
            _ => show_azure(out, &body, &clouds)?,
        };
        ok &= shown;
    }

    writeln!(
        out,
        "\n6. The same workload asks for demo-aws again, with a new token: the token is still"
    )?;
    writeln!(
        out,
        "   verified, checked for replay and decided by policy, but Legate's credential cache"
    )?;
    writeln!(out, "   answers: no cloud call.")?;
    let before = clouds.aws.stats().requests;
    let (status, body) = server
        .exchange(&server.mint(&workload, "dev").await?, "demo-aws")
        .await?;
    let calls = clouds.aws.stats().requests.saturating_sub(before);
    let same = aws_key.is_some()
        && str_at(&body, &["aws_credentials", "AccessKeyId"]) == aws_key.as_deref();
    writeln!(
        out,
        "   HTTP {status}; new calls at the AWS STS fake: {calls}; same AccessKeyId as in step 5: {}",
        yes_no(same)
    )?;
    ok &= status == 200 && calls == 0 && same;

    writeln!(
        out,
        "\n7. A workload from env=prod asks for demo-aws: policy refuses it before Legate mints"
    )?;
    writeln!(out, "   anything, so the cloud never hears of it.")?;
    let before = clouds.aws.stats().requests;
    let (status, body) = server
        .exchange(&server.mint(&workload, "prod").await?, "demo-aws")
        .await?;
    let calls = clouds.aws.stats().requests.saturating_sub(before);
    writeln!(out, "   HTTP {status}: {body}")?;
    writeln!(out, "   new calls at the AWS STS fake: {calls}")?;
    ok &= status == 400 && calls == 0;

    writeln!(
        out,
        "\nTo point the same targets at real accounts, see docs/clouds.md."
    )?;
    let code = if ok {
        ExitCode::SUCCESS
    } else {
        writeln!(
            out,
            "\nSome cloud steps did not go as described (see above)."
        )?;
        ExitCode::FAILURE
    };
    Ok(Finished { code, clouds })
}

/// Starts the three fakes trusting `issuer`, one demo target each; a taken port is
/// named with the target it serves.
async fn start_fakes(issuer: &str, ports: DemoCloudPorts) -> anyhow::Result<FakeClouds> {
    let targets = CloudTargets {
        aws: "demo-aws".to_owned(),
        gcp: "demo-gcp".to_owned(),
        azure: "demo-azure".to_owned(),
    };
    let addrs = FakeAddrs::loopback_ports(ports.aws, ports.gcp, ports.azure);
    match FakeClouds::start_on(issuer, targets, Options::default(), addrs).await {
        Ok(clouds) => Ok(clouds),
        Err(StartError::Listen { addr, source })
            if source.kind() == std::io::ErrorKind::AddrInUse =>
        {
            let serves = if addr == addrs.aws {
                "AWS STS fake, target `demo-aws`"
            } else if addr == addrs.gcp {
                "Google STS + IAM Credentials fake, target `demo-gcp`"
            } else {
                "Entra ID fake, target `demo-azure`"
            };
            anyhow::bail!(
                "cannot start the local cloud fakes: port {addr} ({serves}) is already in use. \
                 Another `legate demo` may still be running, or another program holds it; the \
                 development configuration points its demo cloud targets at 127.0.0.1:{}, {} \
                 and {}, so free the port and run `legate demo` again",
                ports.aws,
                ports.gcp,
                ports.azure
            )
        }
        Err(e) => Err(e).context("cannot start the local cloud fakes"),
    }
}

fn explain_failure(
    out: &mut dyn Write,
    target: &str,
    status: u16,
    body: &Value,
) -> anyhow::Result<()> {
    writeln!(out, "   HTTP {status}: {body}")?;
    let hint = match str_at(body, &["error"]) {
        Some("invalid_target")
            if str_at(body, &["error_description"]) == Some("unknown audience") =>
        {
            format!(
                "this server has no target `{target}`: is it a `legate serve` in development \
                 mode from this build?"
            )
        }
        Some("temporarily_unavailable") => format!(
            "Legate could not reach the fake for `{target}`: does the server's configuration \
             point it at the demo ports?"
        ),
        _ => "the server's audit log (its standard output) says why, under this request_id"
            .to_owned(),
    };
    writeln!(out, "   {hint}")?;
    Ok(())
}

/// The answer for `demo-aws` and what the AWS STS fake verified; whether they agree.
fn show_aws(out: &mut dyn Write, body: &Value, clouds: &FakeClouds) -> anyhow::Result<bool> {
    show_answer(out, body)?;
    let creds = body.get("aws_credentials");
    let field = |name: &str| {
        creds
            .and_then(|c| c.get(name))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    fact(
        out,
        "aws_credentials",
        &format!(
            "AccessKeyId {}, SecretAccessKey {},",
            masked(field("AccessKeyId")),
            masked(field("SecretAccessKey"))
        ),
    )?;
    fact(
        out,
        "",
        &format!(
            "SessionToken {}, Expiration {}",
            masked(field("SessionToken")),
            field("Expiration")
        ),
    )?;
    let Some(session) = clouds.aws.last_session() else {
        fact(
            out,
            "the fake",
            "issued nothing (answered from Legate's credential cache?)",
        )?;
        return Ok(false);
    };
    verified(out, &session.alg, &session.claims)?;
    fact(
        out,
        "",
        &format!("sub {} matches the role's trust condition", session.subject),
    )?;
    fact(
        out,
        "the fake issued",
        &format!(
            "{} for {} s",
            session.assumed_role_arn, session.duration_secs
        ),
    )?;
    let same = field("AccessKeyId") == session.access_key_id
        && field("SecretAccessKey") == session.secret_access_key
        && field("SessionToken") == session.session_token;
    fact(
        out,
        "Legate's answer",
        &format!(
            "carries exactly the credentials the fake issued: {}",
            yes_no(same)
        ),
    )?;
    Ok(same)
}

/// The answer for `demo-gcp` and what the Google fakes verified; whether they agree.
fn show_gcp(out: &mut dyn Write, body: &Value, clouds: &FakeClouds) -> anyhow::Result<bool> {
    show_answer(out, body)?;
    let token = str_at(body, &["access_token"]).unwrap_or("");
    fact(out, "access_token", &masked(token))?;
    let (Some(federated), Some(impersonation)) = (
        clouds.gcp.last_federated_token(),
        clouds.gcp.last_impersonation(),
    ) else {
        fact(
            out,
            "the fake",
            "issued nothing (answered from Legate's credential cache?)",
        )?;
        return Ok(false);
    };
    verified(out, &federated.alg, &federated.claims)?;
    fact(
        out,
        "",
        &format!(
            "google.subject {} passes the pool's attribute condition",
            federated.subject
        ),
    )?;
    fact(
        out,
        "the fake issued",
        &format!(
            "a federated token (STS), then, as that principal may impersonate {}, its",
            impersonation.service_account
        ),
    )?;
    fact(
        out,
        "",
        &format!(
            "access token for {} s (IAM Credentials generateAccessToken)",
            impersonation.lifetime_secs
        ),
    )?;
    let same = token == impersonation.access_token;
    fact(
        out,
        "Legate's answer",
        &format!(
            "carries exactly the token the fake issued: {}",
            yes_no(same)
        ),
    )?;
    Ok(same)
}

/// The answer for `demo-azure` and what the Entra fake verified; whether they agree.
fn show_azure(out: &mut dyn Write, body: &Value, clouds: &FakeClouds) -> anyhow::Result<bool> {
    show_answer(out, body)?;
    let token = str_at(body, &["access_token"]).unwrap_or("");
    fact(out, "access_token", &masked(token))?;
    let Some(issued) = clouds.entra.last_issued() else {
        fact(
            out,
            "the fake",
            "issued nothing (answered from Legate's credential cache?)",
        )?;
        return Ok(false);
    };
    verified(
        out,
        &format!("{} (Entra accepts RSA only)", issued.alg),
        &issued.claims,
    )?;
    fact(
        out,
        "",
        &format!(
            "sub {} matches the federated credential `{}`",
            issued.subject, issued.credential
        ),
    )?;
    fact(
        out,
        "the fake issued",
        &format!(
            "an access token for {} to application {}",
            issued.scope, issued.client_id
        ),
    )?;
    let same = token == issued.access_token;
    fact(
        out,
        "Legate's answer",
        &format!(
            "carries exactly the token the fake issued: {}",
            yes_no(same)
        ),
    )?;
    Ok(same)
}

/// What every fake checks before it issues anything, from the assertion it verified.
fn verified(
    out: &mut dyn Write,
    alg: &str,
    claims: &serde_json::Map<String, Value>,
) -> anyhow::Result<()> {
    fact(
        out,
        "the fake verified",
        &format!(
            "Legate's assertion against the discovery document + JWKS of {}",
            claim(claims, "iss")
        ),
    )?;
    fact(
        out,
        "",
        &format!("{alg} signature; aud {}", claim(claims, "aud")),
    )?;
    fact(
        out,
        "",
        &format!(
            "lifetime {} s; workload {}",
            lifetime(claims),
            claim(claims, "workload")
        ),
    )?;
    Ok(())
}

/// One labelled line of a cloud step.
fn fact(out: &mut dyn Write, label: &str, text: &str) -> std::io::Result<()> {
    let label = if label.is_empty() {
        String::new()
    } else {
        format!("{label}:")
    };
    writeln!(out, "     {label:<19}{text}")
}

/// The non-secret members of a successful answer.
fn show_answer(out: &mut dyn Write, body: &Value) -> anyhow::Result<()> {
    writeln!(
        out,
        "     HTTP 200           issued_token_type {}, token_type {}, expires_in {}",
        str_at(body, &["issued_token_type"]).unwrap_or("?"),
        str_at(body, &["token_type"]).unwrap_or("?"),
        body.get("expires_in").unwrap_or(&Value::Null)
    )?;
    Ok(())
}

/// A secret as its first few characters and its length: enough to tell two apart,
/// never enough to use.
fn masked(secret: &str) -> String {
    let len = secret.chars().count();
    // Never more than a quarter of it.
    let shown: String = secret.chars().take(SHOWN_PREFIX.min(len / 4)).collect();
    format!("{shown}…({len} chars)")
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_str)
}

fn claim(claims: &serde_json::Map<String, Value>, name: &str) -> String {
    match claims.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "(none)".to_owned(),
    }
}

/// `exp - iat` of a verified assertion.
fn lifetime(claims: &serde_json::Map<String, Value>) -> i64 {
    let at = |name| claims.get(name).and_then(Value::as_i64).unwrap_or(0);
    at("exp").saturating_sub(at("iat"))
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

fn print_claims(out: &mut dyn Write, label: &str, token: &str) -> std::io::Result<()> {
    match UnverifiedJwt::parse(token) {
        Ok(jwt) => {
            let pretty = serde_json::to_string_pretty(jwt.unverified_claims()).unwrap_or_default();
            writeln!(out, "{label}:")?;
            for line in pretty.lines() {
                writeln!(out, "     {line}")?;
            }
            Ok(())
        }
        Err(e) => writeln!(out, "{label}: unreadable ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use legate_server::audit::MemorySink;
    use legate_server::clock::SystemClock;
    use legate_server::{AppState, BuildOptions, config};

    use super::*;

    /// Ports free a moment ago (the listeners are closed before returning).
    fn free_ports() -> DemoCloudPorts {
        let l = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (a, b, c) = (l(), l(), l());
        let port = |l: &std::net::TcpListener| l.local_addr().unwrap().port();
        DemoCloudPorts {
            aws: port(&a),
            gcp: port(&b),
            azure: port(&c),
        }
    }

    /// The embedded development configuration with its demo cloud targets moved to
    /// `ports`, served in development mode on a free loopback port, as `legate serve`
    /// without `--config` does. Returns the URL.
    async fn dev_server(ports: DemoCloudPorts) -> String {
        let mut text = legate_server::DEV_CONFIG.to_owned();
        for (from, to) in [
            (DEMO_CLOUD_PORTS.aws, ports.aws),
            (DEMO_CLOUD_PORTS.gcp, ports.gcp),
            (DEMO_CLOUD_PORTS.azure, ports.azure),
        ] {
            let from = format!("\"http://127.0.0.1:{from}\"");
            assert!(text.contains(&from), "{from}");
            text = text.replace(&from, &format!("\"http://127.0.0.1:{to}\""));
        }
        let mut cfg = config::load_str(&text, "dev.toml", std::path::Path::new(".")).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        cfg.server.public_url.clone_from(&url);
        let mut opts = BuildOptions::new(Arc::new(SystemClock));
        opts.dev_demo = true;
        opts.audit = Some(Arc::new(MemorySink::default()));
        let state = AppState::build(&cfg, opts).unwrap();
        tokio::spawn(legate_server::run(
            listener,
            state,
            std::future::pending::<()>(),
        ));
        url
    }

    /// Stops `legate demo` from breaking silently: the whole walk-through, against a
    /// development server built from the embedded configuration, reaches every demo
    /// cloud target through its strict fake (which verifies Legate's assertion), shows
    /// the cache and the policy refusal, and exits successfully.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_demo_walks_every_cloud_target_end_to_end() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ports = free_ports();
        let url = dev_server(ports).await;
        let mut out = Vec::new();
        let finished = demo(&url, ports, &mut out).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(finished.code, ExitCode::SUCCESS, "{text}");
        let clouds = &finished.clouds;
        assert_eq!(clouds.aws.stats().succeeded, 1, "{text}");
        assert_eq!(clouds.gcp.sts_stats().succeeded, 1, "{text}");
        assert_eq!(clouds.gcp.iam_stats().succeeded, 1, "{text}");
        assert_eq!(clouds.entra.stats().succeeded, 1, "{text}");
        assert_eq!(clouds.entra.last_issued().unwrap().alg, "RS256");
        assert_eq!(text.matches("carries exactly the").count(), 3, "{text}");
        assert!(text.contains("new calls at the AWS STS fake: 0"), "{text}");
        assert!(!text.contains(": NO"), "{text}");
    }

    /// Stops the demo from printing usable cloud credentials to a terminal (and so to
    /// screenshots, logs and bug reports): no secret the fakes issued appears whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_demo_never_prints_a_whole_cloud_secret() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ports = free_ports();
        let url = dev_server(ports).await;
        let mut out = Vec::new();
        let finished = demo(&url, ports, &mut out).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        let clouds = &finished.clouds;
        let session = clouds.aws.last_session().unwrap();
        let secrets = [
            session.access_key_id,
            session.secret_access_key,
            session.session_token,
            clouds.gcp.last_federated_token().unwrap().access_token,
            clouds.gcp.last_impersonation().unwrap().access_token,
            clouds.entra.last_issued().unwrap().access_token,
        ];
        for secret in secrets {
            assert!(secret.len() >= 16, "{secret}");
            let half = &secret[..secret.len() / 2];
            assert!(!text.contains(half), "half of a secret is shown:\n{text}");
        }
    }

    /// Stops a taken demo port from turning into a vague failure: the message names the
    /// port, the target it serves, and what to do.
    #[tokio::test]
    async fn a_taken_demo_port_is_named_with_its_target() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut ports = free_ports();
        ports.gcp = taken.local_addr().unwrap().port();
        let e = start_fakes("http://127.0.0.1:1", ports)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("127.0.0.1:{}", ports.gcp)), "{e}");
        assert!(e.contains("`demo-gcp`"), "{e}");
        assert!(e.contains("already in use"), "{e}");
    }

    #[test]
    fn masked_secrets_show_at_most_a_short_prefix() {
        assert_eq!(masked("ASIAABCDEFGHIJKLMNOP"), "ASIAA…(20 chars)");
        assert_eq!(masked(&"x".repeat(40)), "xxxxxx…(40 chars)");
        assert_eq!(masked("abcdefgh"), "ab…(8 chars)");
        assert_eq!(masked("abc"), "…(3 chars)");
        assert_eq!(masked(""), "…(0 chars)");
    }
}
