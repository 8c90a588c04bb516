//! `legate policy eval`: decide and explain one claims set for one target, offline.
//!
//! The trust is the configured `[[trust]]` whose `issuer` equals the claims' `iss`; the
//! engine, the targets and the lifetime rules are those `legate serve` runs with. The
//! output is the decision, its determining policies and one line per policy that can
//! apply to that (trust, target) — or, with `--json`, the document `POST /admin/explain`
//! answers (docs/policy.md, "Explain").
//!
//! Exit status: 0 allow, 1 deny, 2 usage or configuration error (as for clap's own usage
//! errors).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use legate_policy::Explanation;
use legate_server::admin::{self, ExplainInput};
use legate_server::config::Config;

/// Exit status of a deny.
pub const EXIT_DENY: u8 = 1;
/// Exit status of a usage or configuration error.
pub const EXIT_ERROR: u8 = 2;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration (trusts, targets, policies) to evaluate with.
    #[arg(long)]
    config: PathBuf,
    /// A JSON object of token claims (`iss` picks the trust, `sub` is the subject).
    #[arg(long)]
    claims: PathBuf,
    /// The target name.
    #[arg(long)]
    target: String,
    /// The client address (default: unknown).
    #[arg(long)]
    source_ip: Option<IpAddr>,
    /// The request time, RFC 3339 (default: now).
    #[arg(long)]
    time: Option<String>,
    /// The requested lifetime in seconds (default: the target's).
    #[arg(long)]
    requested_lifetime: Option<u64>,
    /// Print the explanation as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> ExitCode {
    match eval(args) {
        Ok((explanation, output)) => {
            print!("{output}");
            if explanation.decision.allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_DENY)
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The explanation and its rendering.
fn eval(args: &Args) -> anyhow::Result<(Explanation, String)> {
    let config = crate::config_cmd::load(Some(&args.config))?;
    let text = std::fs::read_to_string(&args.claims)
        .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", args.claims.display()))?;
    let claims = match serde_json::from_str(&text) {
        Ok(serde_json::Value::Object(claims)) => claims,
        Ok(_) => anyhow::bail!("`{}` is not a JSON object", args.claims.display()),
        Err(e) => anyhow::bail!("`{}` is not JSON: {e}", args.claims.display()),
    };
    let input = ExplainInput {
        claims,
        target: args.target.clone(),
        source_ip: args.source_ip,
        time: args.time.clone(),
        requested_lifetime: args.requested_lifetime,
    };
    let explanation = explain(&config, &input)?;
    let output = if args.json {
        format!("{:#}\n", explanation.to_json())
    } else {
        human(&explanation)
    };
    Ok((explanation, output))
}

fn explain(config: &Config, input: &ExplainInput) -> anyhow::Result<Explanation> {
    let trusts: Vec<String> = config.trusts.iter().map(|t| t.name.clone()).collect();
    let engine = legate_server::app::load_policies(config, &trusts)
        .map_err(|e| anyhow::anyhow!("policy: {e}"))?;
    let now = legate_core::Clock::now(&legate_server::clock::SystemClock);
    Ok(admin::explain(
        &engine,
        |iss| {
            config
                .trusts
                .iter()
                .find(|t| t.issuer == iss)
                .map(|t| (t.name.clone(), t.replay))
        },
        |name| config.targets.iter().find(|t| t.name == name),
        input,
        now,
    )?)
}

/// The human rendering: decision, determining policies, errors, one line per policy.
fn human(e: &Explanation) -> String {
    let d = &e.decision;
    let mut out = format!(
        "decision: {} ({})\n",
        if d.allowed { "allow" } else { "deny" },
        d.reason
    );
    let list = |ids: &[String]| {
        if ids.is_empty() {
            "(none)".to_owned()
        } else {
            ids.join(", ")
        }
    };
    out.push_str(&format!("determining policies: {}\n", list(&d.policy_ids)));
    for error in &d.errors {
        out.push_str(&format!("error: {error}\n"));
    }
    if d.reason == legate_policy::DecisionReason::ClientAddressUnknown {
        out.push_str("hint: a policy reads `context.source_ip`: pass --source-ip\n");
    }
    out.push_str(&format!("policies evaluated: {}\n", e.policies.len()));
    for p in &e.policies {
        out.push_str(&format!(
            "  {} ({}, {}): {}",
            p.id,
            p.effect,
            p.file,
            p.outcome.as_str().replace('_', " ")
        ));
        if let Some(failure) = &p.failure {
            out.push_str(&format!(": {failure}"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    const CONFIG: &str = r#"version = 1
[server]
public_url = "https://legate.example.com"
[issuer]
ephemeral_key = true
[policy]
bundled = true
[[trust]]
name = "github"
issuer = "https://token.actions.githubusercontent.com"
audiences = ["https://legate.example.com"]
jwks_file = "jwks.json"
[[target]]
name = "deploy-api"
kind = "jwt"
audience = "https://deploy.example.com"
max_lifetime_secs = 7200
labels = { env = "prod" }
"#;

    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn setup(name: &str, claims: &serde_json::Value) -> (Dir, Args) {
        let dir = std::env::temp_dir().join(format!("legate-eval-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("legate.toml"), CONFIG).unwrap();
        std::fs::write(dir.join("claims.json"), claims.to_string()).unwrap();
        let args = Args {
            config: dir.join("legate.toml"),
            claims: dir.join("claims.json"),
            target: "deploy-api".to_owned(),
            source_ip: Some("192.0.2.1".parse().unwrap()),
            time: Some("2026-01-01T00:00:00Z".to_owned()),
            requested_lifetime: None,
            json: false,
        };
        (Dir(dir), args)
    }

    fn github(r#ref: &str) -> serde_json::Value {
        serde_json::json!({
            "iss": "https://token.actions.githubusercontent.com",
            "sub": "repo:acme/app:ref:refs/heads/main",
            "repository_id": "892318775",
            "ref": r#ref,
        })
    }

    #[test]
    fn an_allowed_claims_set_names_its_permit_and_exits_zero() {
        let (_dir, args) = setup("allow", &github("refs/heads/main"));
        let (e, out) = eval(&args).unwrap();
        assert!(e.decision.allowed);
        assert!(out.starts_with("decision: allow (permitted)\n"), "{out}");
        assert!(
            out.contains("determining policies: github-deploy-main\n"),
            "{out}"
        );
        assert!(
            out.contains("  github-deploy-main (permit, github.cedar): satisfied\n"),
            "{out}"
        );
        assert_eq!(run(&args), ExitCode::SUCCESS);
    }

    #[test]
    fn a_denied_claims_set_names_the_first_false_condition_and_exits_one() {
        let (_dir, mut args) = setup("deny", &github("refs/heads/dev"));
        let (e, out) = eval(&args).unwrap();
        assert!(!e.decision.allowed);
        assert!(out.starts_with("decision: deny (no_permit)\n"), "{out}");
        assert!(
            out.contains(
                "github-deploy-main (permit, github.cedar): not satisfied: `when` condition is false at line 18, column 3: principal.claims.ref == \"refs/heads/main\""
            ),
            "{out}"
        );
        assert_eq!(run(&args), ExitCode::from(EXIT_DENY));

        // The JSON document, and a forbid that decides.
        args.json = true;
        args.claims = args.claims.clone();
        std::fs::write(&args.claims, github("refs/heads/main").to_string()).unwrap();
        args.requested_lifetime = Some(7200);
        let (e, out) = eval(&args).unwrap();
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["decision"], "deny");
        assert_eq!(json["reason"], "forbidden");
        assert_eq!(
            json["determining_policies"],
            serde_json::json!(["guardrail-prod-max-lifetime"])
        );
        let ids: Vec<&str> = e.policies.iter().map(|p| p.id.as_str()).collect();
        assert!(ids.contains(&"guardrail-no-link-local-source"), "{ids:?}");
        let link_local = json["policies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == "guardrail-no-link-local-source")
            .unwrap();
        assert_eq!(link_local["outcome"], "not_satisfied");
        assert_eq!(link_local["failure"]["kind"], "when");
        assert_eq!(link_local["failure"]["result"], "false");
    }

    /// Without `--source-ip` the address is unknown, as behind a proxy that sent a
    /// malformed `X-Forwarded-For`: the bundled link-local guardrail reads it, so the
    /// request is denied as at `/token`, with a hint.
    #[test]
    fn an_unknown_source_address_denies_with_a_hint() {
        let (_dir, mut args) = setup("noip", &github("refs/heads/main"));
        args.source_ip = None;
        let (e, out) = eval(&args).unwrap();
        assert!(!e.decision.allowed);
        assert!(
            out.starts_with("decision: deny (client_address_unknown)\n"),
            "{out}"
        );
        assert!(
            out.contains("hint: a policy reads `context.source_ip`: pass --source-ip\n"),
            "{out}"
        );
    }

    #[test]
    fn claims_without_a_trusted_issuer_or_subject_are_errors() {
        let (_dir, args) = setup(
            "untrusted",
            &serde_json::json!({"iss": "https://evil.example", "sub": "x"}),
        );
        let err = eval(&args).unwrap_err().to_string();
        assert_eq!(err, "no configured trust has issuer `https://evil.example`");
        assert_eq!(run(&args), ExitCode::from(EXIT_ERROR));
        let (_dir, args) = setup(
            "nosub",
            &serde_json::json!({"iss": "https://token.actions.githubusercontent.com"}),
        );
        assert_eq!(
            eval(&args).unwrap_err().to_string(),
            "the claims have no string `sub`"
        );
        let (_dir, mut args) = setup("target", &github("refs/heads/main"));
        args.target = "nope".to_owned();
        assert_eq!(
            eval(&args).unwrap_err().to_string(),
            "no configured target is named `nope`"
        );
        args.target = "deploy-api".to_owned();
        args.time = Some("yesterday".to_owned());
        assert_eq!(
            eval(&args).unwrap_err().to_string(),
            "`yesterday` is not an RFC 3339 time"
        );
    }
}
