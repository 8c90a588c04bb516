//! `legate config check FILE`: the server's own loader, run without starting anything.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use legate_server::config::{self, Config};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Load FILE exactly as `legate serve` would (and its policies); report the first error.
    Check {
        /// The configuration file.
        file: PathBuf,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Check { file } => match check(&file) {
            Ok(summary) => {
                println!("{summary}");
                Ok(ExitCode::SUCCESS)
            }
            Err(message) => {
                eprintln!("{message}");
                Ok(ExitCode::FAILURE)
            }
        },
    }
}

/// The configuration `serve` and `policy` run with: `file`, or without one the embedded
/// development configuration.
pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
    match file {
        Some(file) => config::load_file(file),
        None => config::load_str(
            legate_server::DEV_CONFIG,
            "<embedded dev config>",
            Path::new("."),
        ),
    }
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Checks a file; the error text names the file, line and key.
pub fn check(file: &Path) -> Result<String, String> {
    let config = config::load_file(file).map_err(|e| e.to_string())?;
    let policies =
        load_policies(&config).map_err(|e| format!("{}: policy: {e}", file.display()))?;
    Ok(format!(
        "{}: ok ({} trust(s), {} target(s), {} polic{})",
        file.display(),
        config.trusts.len(),
        config.targets.len(),
        policies,
        if policies == 1 { "y" } else { "ies" }
    ))
}

/// Loads the configured policies against the configured targets and trusts.
pub fn load_policies(config: &Config) -> Result<usize, legate_policy::PolicyLoadError> {
    let trusts: Vec<String> = config.trusts.iter().map(|t| t.name.clone()).collect();
    Ok(legate_server::app::load_policies(config, &trusts)?.policy_count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_of_a_broken_file_names_file_line_and_key() {
        let dir = std::env::temp_dir().join(format!("legate-cc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("broken.toml");
        std::fs::write(
            &file,
            "version = 1\n[server]\npublic_url = \"https://l.example\"\n[issuer]\nephemeral_key = true\n\n[[target]]\nname = \"t\"\nkind = \"jwt\"\naudience = \"a\"\nmax_lifetime_secs = \"long\"\n",
        )
        .unwrap();
        let err = check(&file).unwrap_err();
        let expected_prefix = format!("{}:11:", file.display());
        assert!(err.starts_with(&expected_prefix), "{err}");
        assert!(err.contains("key `target[0].max_lifetime_secs`"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Stops a policy folder that trusts every workload of an issuer from getting past
    /// `config check`: the lints run there as at start-up, naming file, line and fix.
    #[test]
    fn check_runs_the_policy_lints_and_names_policy_file_line_and_fix() {
        let dir = std::env::temp_dir().join(format!("legate-cc3-{}", std::process::id()));
        let policies = dir.join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        std::fs::write(
            policies.join(legate_policy::SCHEMA_FILE),
            legate_policy::BUNDLED_SCHEMA,
        )
        .unwrap();
        std::fs::write(
            policies.join("ci.cedar"),
            "// any repository of the issuer\n@id(\"any-repo\")\n\
             permit(principal in Legate::Issuer::\"github\", action, resource);\n",
        )
        .unwrap();
        let file = dir.join("legate.toml");
        std::fs::write(
            &file,
            "version = 1\n[server]\npublic_url = \"https://l.example\"\n[issuer]\n\
             ephemeral_key = true\n[policy]\ndir = \"policies\"\n[[trust]]\nname = \"github\"\n\
             template = \"github-actions\"\nissuer = \"https://token.actions.githubusercontent.com\"\n\
             audiences = [\"a\"]\n",
        )
        .unwrap();
        let err = check(&file).unwrap_err();
        assert!(
            err.contains("`ci.cedar`, line 2, policy `any-repo`: unbound-subject: ")
                && err.contains("fix: "),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn check_of_the_embedded_dev_config_passes() {
        let dir = std::env::temp_dir().join(format!("legate-cc2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("dev.toml");
        std::fs::write(&file, legate_server::DEV_CONFIG).unwrap();
        let ok = check(&file).unwrap();
        assert!(ok.contains(": ok"), "{ok}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
