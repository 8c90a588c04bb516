//! The benchmark's inputs, written once per run into one folder:
//!
//! - `jwks.json`: the public half of a fresh RSA-2048 key (`kid` [`KID`]);
//! - `body-jwt.form`, `body-aws.form`: the `POST /token` form for the `jwt` and `aws`
//!   targets, both carrying the same RS256 token: GitHub Actions' shape and size (15
//!   claims), valid for [`TOKEN_LIFETIME_SECS`]. The floor gets `body-jwt.form` (it
//!   ignores `audience`), so all three servers verify the very same bytes;
//! - `policies/`: the bundled schema, the bundled guardrails, and `bench.cedar`, one
//!   permit per target bound to the repository id and branch, as the bundled
//!   `github-deploy-main` is: Legate evaluates a slice of three policies per request, as
//!   for the bundled GitHub example;
//! - for `legate-bench fleet` ([`write_pool`]) also `tokens.txt`, a pool of distinct
//!   single-use tokens (one per line: the same claims, each with its own `jti`, signed
//!   with the same key), and `prefix-jwt.form`, the `jwt` target's form without
//!   `subject_token`, to which the load generator appends `&subject_token=<token>`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use legate_core::{Clock as _, b64};
use legate_issuer::{SigningAlg, SigningKey};
use serde_json::json;

/// The upstream issuer (a static-JWKS trust named `github`).
pub const ISSUER: &str = "https://token.actions.githubusercontent.com";
/// The token's `aud`, which the trust accepts.
pub const AUDIENCE: &str = "https://legate.bench.invalid";
/// The upstream key's id.
pub const KID: &str = "bench-rs256";
/// The `jwt` target.
pub const JWT_TARGET: &str = "bench-jwt";
/// The `aws` target.
pub const AWS_TARGET: &str = "bench-aws";
/// The token's lifetime: the trust's default maximum, so that one token lasts many runs
/// and the lifetime Legate approves (the target's 900 s) stays the same throughout,
/// which keeps one credential-cache key.
pub const TOKEN_LIFETIME_SECS: i64 = 3600;
/// The lifetime every request asks for: the shortest AWS session.
pub const REQUESTED_LIFETIME_SECS: u64 = 900;

/// The files of a fixtures folder.
#[derive(Debug, Clone)]
pub struct Files {
    /// The folder.
    pub dir: PathBuf,
}

impl Files {
    pub fn jwks(&self) -> PathBuf {
        self.dir.join("jwks.json")
    }
    pub fn body(&self, target: &str) -> PathBuf {
        self.dir.join(match target {
            AWS_TARGET => "body-aws.form",
            _ => "body-jwt.form",
        })
    }
    pub fn policies(&self) -> PathBuf {
        self.dir.join("policies")
    }
    /// The single-use token pool, one token per line.
    pub fn tokens(&self) -> PathBuf {
        self.dir.join("tokens.txt")
    }
    /// The `jwt` target's form without `subject_token` (the pool's tokens go after it).
    pub fn body_prefix(&self) -> PathBuf {
        self.dir.join("prefix-jwt.form")
    }
}

/// The most tokens a pool may hold (about 1.1 KB each on disk and in the load
/// generator's memory).
pub const MAX_POOL_TOKENS: usize = 2_000_000;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The folder to write (created if missing; existing fixtures are overwritten).
    #[arg(long)]
    pub dir: PathBuf,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let files = write(&args.dir)?;
    println!("fixtures written to {}", files.dir.display());
    Ok(())
}

/// Writes a fresh key, its JWKS, the token's request bodies and the policy folder.
pub fn write(dir: &Path) -> anyhow::Result<Files> {
    Ok(write_keyed(dir)?.0)
}

/// [`write`], plus a pool of `count` distinct single-use tokens (`tokens.txt`) and the
/// form they are sent in (`prefix-jwt.form`). The tokens are signed on every CPU, as
/// RS256 signing (~1 ms each) dominates.
pub fn write_pool(dir: &Path, count: usize) -> anyhow::Result<Files> {
    anyhow::ensure!(
        (1..=MAX_POOL_TOKENS).contains(&count),
        "a token pool holds 1 to {MAX_POOL_TOKENS} tokens, not {count}"
    );
    let (files, key) = write_keyed(dir)?;
    let now = legate_server::clock::SystemClock.now();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let per_thread = count.div_ceil(threads);
    let chunks: Vec<anyhow::Result<String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let key = &key;
                scope.spawn(move || {
                    let mut text = String::new();
                    let first = t * per_thread;
                    for i in first..(first + per_thread).min(count) {
                        text.push_str(&token(key, now, &format!("fleet-{i:09}"))?);
                        text.push('\n');
                    }
                    Ok(text)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a signing thread failed")))
            })
            .collect()
    });
    let mut pool = String::new();
    for chunk in chunks {
        pool.push_str(&chunk?);
    }
    write_file(&files.tokens(), &pool)?;
    write_file(&files.body_prefix(), &body_prefix(JWT_TARGET))?;
    Ok(files)
}

fn write_keyed(dir: &Path) -> anyhow::Result<(Files, SigningKey)> {
    let files = Files {
        dir: dir.to_path_buf(),
    };
    std::fs::create_dir_all(files.policies())
        .with_context(|| format!("creating {}", files.policies().display()))?;
    let key = SigningKey::generate(SigningAlg::Rs256, Some(KID.to_owned()))?;
    write_file(
        &files.jwks(),
        &json!({ "keys": [key.public_jwk()] }).to_string(),
    )?;
    let now = legate_server::clock::SystemClock.now();
    let token = token(&key, now, "6f7c1a52-6a55-4c1e-8f2d-3a1d2b3c4d5e")?;
    for target in [JWT_TARGET, AWS_TARGET] {
        write_file(&files.body(target), &body(&token, target))?;
    }
    let policies = files.policies();
    write_file(
        &policies.join(legate_policy::SCHEMA_FILE),
        legate_policy::BUNDLED_SCHEMA,
    )?;
    let guardrails = legate_policy::BUNDLED_POLICIES
        .iter()
        .find(|(name, _)| *name == "guardrails.cedar")
        .map(|(_, text)| *text)
        .context("the bundled policies have no guardrails.cedar")?;
    write_file(&policies.join("guardrails.cedar"), guardrails)?;
    write_file(&policies.join("bench.cedar"), &bench_policies())?;
    Ok((files, key))
}

/// One RS256 token in the shape of a GitHub Actions OIDC token, with `jti`.
fn token(key: &SigningKey, now: i64, jti: &str) -> anyhow::Result<String> {
    let header = json!({ "alg": "RS256", "kid": KID, "typ": "JWT" });
    let claims = json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "repo:octo-org/deploy:ref:refs/heads/main",
        "jti": jti,
        "iat": now, "nbf": now, "exp": now + TOKEN_LIFETIME_SECS,
        "repository": "octo-org/deploy", "repository_id": "892318775",
        "repository_owner": "octo-org", "ref": "refs/heads/main", "ref_type": "branch",
        "workflow": "deploy", "event_name": "push", "runner_environment": "github-hosted",
        "job_workflow_ref": "octo-org/deploy/.github/workflows/deploy.yml@refs/heads/main"
    });
    let input = format!(
        "{}.{}",
        b64::encode(header.to_string()),
        b64::encode(claims.to_string())
    );
    let signature = key.sign(input.as_bytes())?;
    Ok(format!("{input}.{}", b64::encode(signature)))
}

/// The `POST /token` form for `target`.
fn body(token: &str, target: &str) -> String {
    form(target).append_pair("subject_token", token).finish()
}

/// The `POST /token` form for `target` up to `subject_token=`: a compact JWS is
/// base64url and dots, which the form encoding leaves as they are, so the load
/// generator appends each token as it is.
fn body_prefix(target: &str) -> String {
    let mut text = form(target).finish();
    text.push_str("&subject_token=");
    text
}

/// The form fields before the token.
fn form(target: &str) -> form_urlencoded::Serializer<'static, String> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair(
        "grant_type",
        "urn:ietf:params:oauth:grant-type:token-exchange",
    )
    .append_pair("subject_token_type", "urn:ietf:params:oauth:token-type:jwt")
    .append_pair("audience", target)
    .append_pair("requested_lifetime", &REQUESTED_LIFETIME_SECS.to_string());
    form
}

/// A permit per target, shaped like the bundled `github-deploy-main`.
fn bench_policies() -> String {
    [JWT_TARGET, AWS_TARGET]
        .iter()
        .map(|target| {
            format!(
                r#"@id("bench-{target}")
permit (
  principal in Legate::Issuer::"github",
  action == Legate::Action::"exchange",
  resource == Legate::Target::"{target}"
)
when {{
  principal.claims has repository_id &&
  principal.claims.repository_id == "892318775" &&
  principal.claims has ref &&
  principal.claims.ref == "refs/heads/main"
}};
"#
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
