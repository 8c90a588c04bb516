//! `legate policy validate|test|eval`: check Cedar policies, run their `*.cases` files,
//! explain one decision (`eval`, in `policy_eval.rs`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use legate_policy::{PolicyEngine, TargetInfo, parse_cases, run_cases};
use legate_server::config::PolicySource;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Parse and validate policies against the schema.
    Validate(Source),
    /// Run every `*.cases` file beside the policies and report failures.
    Test(Source),
    /// Decide one claims set for one target and explain it policy by policy
    /// (exit 0 allow, 1 deny, 2 error).
    Eval(crate::policy_eval::Args),
}

#[derive(Debug, clap::Args)]
pub struct Source {
    /// Policy folder (`*.cedar`, `legate.cedarschema`, `*.cases`). Default: the bundled examples.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Take targets (and the policy folder, unless --dir is given) from this configuration.
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Validate(src) => {
            let (engine, _) = load(&src, &[])?;
            println!("ok: {} policies valid", engine.policy_count());
            for w in engine.warnings() {
                println!("warning: {w}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Test(src) => test(&src),
        Command::Eval(args) => Ok(crate::policy_eval::run(&args)),
    }
}

fn case_files(src: &Source) -> anyhow::Result<Vec<(String, String)>> {
    match policy_dir(src)? {
        None => Ok(legate_policy::BUNDLED_CASES
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect()),
        Some(dir) => {
            let mut files = Vec::new();
            for entry in
                std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
            {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "cases") {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    files.push((path.display().to_string(), text));
                }
            }
            files.sort();
            Ok(files)
        }
    }
}

fn policy_dir(src: &Source) -> anyhow::Result<Option<PathBuf>> {
    if let Some(dir) = &src.dir {
        return Ok(Some(dir.clone()));
    }
    if let Some(file) = &src.config {
        let cfg = crate::config_cmd::load(Some(file))?;
        if let PolicySource::Dir(dir) = cfg.policy {
            return Ok(Some(dir));
        }
    }
    Ok(None)
}

/// The trusts the bundled example policies are written for.
const EXAMPLE_TRUSTS: [&str; 3] = ["github", "gitlab", "kubernetes"];

/// Builds the engine with the configured targets (or the development targets) and every
/// configured trust (plus `extra_trusts`).
fn load(src: &Source, extra_trusts: &[String]) -> anyhow::Result<(PolicyEngine, Vec<TargetInfo>)> {
    let cfg = crate::config_cmd::load(src.config.as_deref())?;
    let targets = legate_server::app::target_infos(&cfg.targets);
    let mut trusts: BTreeSet<String> = cfg.trusts.iter().map(|t| t.name.clone()).collect();
    trusts.insert(legate_server::dev::DEMO_TRUST.to_owned());
    trusts.extend(extra_trusts.iter().cloned());
    let trusts: Vec<String> = trusts.into_iter().collect();
    // The same lints, with the same templates, as `legate serve`.
    let options = legate_server::app::load_options(&cfg);
    let engine = match policy_dir(src)? {
        Some(dir) => PolicyEngine::load_dir_with(&dir, &targets, &trusts, &options)?,
        None => PolicyEngine::bundled_with(&targets, &trusts, &options)?,
    };
    Ok((engine, targets))
}

fn test(src: &Source) -> anyhow::Result<ExitCode> {
    let files = case_files(src)?;
    if files.is_empty() {
        anyhow::bail!("no *.cases files found");
    }
    for (name, text) in &files {
        parse_cases(text).with_context(|| format!("parsing {name}"))?;
    }
    // Without a configuration, the trusts of the bundled examples exist.
    let examples: Vec<String> = if src.config.is_none() {
        EXAMPLE_TRUSTS.iter().map(|t| (*t).to_owned()).collect()
    } else {
        Vec::new()
    };
    let (engine, _) = load(src, &examples)?;
    let (mut total, mut failed) = (0, 0);
    for (name, text) in &files {
        let report = run_cases(&engine, text).with_context(|| format!("running {name}"))?;
        total += report.total;
        failed += report.failures.len();
        for failure in &report.failures {
            println!("FAIL {name}: {failure}");
        }
    }
    println!("{} passed, {failed} failed", total - failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stops `policy validate` without a configuration from passing what `serve` would
    /// refuse: the example trusts get their templates, and a policy for one is linted.
    #[test]
    fn validate_without_a_configuration_lints_with_the_example_templates() {
        let dir = std::env::temp_dir().join(format!("legate-pv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(legate_policy::SCHEMA_FILE),
            legate_policy::BUNDLED_SCHEMA,
        )
        .unwrap();
        std::fs::write(
            dir.join("wide.cedar"),
            "@id(\"wide\")\npermit (principal in Legate::Issuer::\"github\", action, resource)\n\
             when { principal.claims has repository && principal.claims.repository like \"acme/*\" };\n",
        )
        .unwrap();
        let src = Source {
            dir: Some(dir.clone()),
            config: None,
        };
        let err = load(&src, &[]).unwrap_err().to_string();
        assert!(
            err.contains("`wide.cedar`, line 1, policy `wide`: unbound-subject")
                && err.contains(
                    "policy `wide`: unsafe-pattern: the pattern `acme/*` on `repository`"
                ),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bundled_cases_pass_through_the_cli_path() {
        let src = Source {
            dir: None,
            config: None,
        };
        assert_eq!(test(&src).unwrap(), ExitCode::SUCCESS);
    }
}
