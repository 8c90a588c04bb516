//! An issued credential as the SDKs' usual environment variables.
//!
//! | Issued | Variables |
//! |---|---|
//! | AWS credentials | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` |
//! | access token (`gcp` and `azure` targets; the answer does not say which cloud) | `CLOUDSDK_AUTH_ACCESS_TOKEN` and `AZURE_ACCESS_TOKEN` |
//! | Legate JWT (`jwt` targets) | `LEGATE_TOKEN` |
//!
//! [`shell_exports`] renders `export NAME='value'` lines (POSIX single quotes);
//! [`github_env`] renders the `::add-mask::` commands and the `$GITHUB_ENV` lines.

use std::fmt::Write as _;

use crate::client::IssuedCredential;

/// `(name, value)` of each variable for `credential`, in a fixed order.
pub fn variables(credential: &IssuedCredential) -> Vec<(&'static str, &str)> {
    match credential {
        IssuedCredential::Aws(creds) => vec![
            ("AWS_ACCESS_KEY_ID", creds.access_key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", creds.secret_access_key.expose()),
            ("AWS_SESSION_TOKEN", creds.session_token.expose()),
        ],
        IssuedCredential::AccessToken(token) => vec![
            ("CLOUDSDK_AUTH_ACCESS_TOKEN", token.expose()),
            ("AZURE_ACCESS_TOKEN", token.expose()),
        ],
        IssuedCredential::Jwt(token) => vec![("LEGATE_TOKEN", token.expose())],
    }
}

/// `value` in POSIX single quotes: every `'` becomes `'\''`; nothing inside is
/// expanded by the shell.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// `export NAME='value'` lines, one per variable.
pub fn shell_exports(credential: &IssuedCredential) -> String {
    let mut out = String::new();
    for (name, value) in variables(credential) {
        let _ = writeln!(out, "export {name}={}", shell_quote(value));
    }
    out
}

/// Why a credential cannot go to `$GITHUB_ENV`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GithubEnvError {
    /// A value holds a line break: it would end the `NAME=value` line and let the rest
    /// define other variables, and `::add-mask::` masks one line only.
    #[error("the value of `{0}` holds a line break; refusing to write it to $GITHUB_ENV")]
    LineBreak(&'static str),
    /// A value is empty (nothing to mask).
    #[error("the value of `{0}` is empty")]
    Empty(&'static str),
}

/// What `--format github` writes: the mask commands (for standard output, before
/// anything else) and the lines to append to `$GITHUB_ENV`.
#[derive(Debug, PartialEq, Eq)]
pub struct GithubEnv {
    /// `::add-mask::VALUE` lines, one per value.
    pub masks: String,
    /// `NAME=VALUE` lines.
    pub env_lines: String,
}

/// The masks and `$GITHUB_ENV` lines for `credential`; every value is masked.
///
/// # Errors
///
/// [`GithubEnvError`] when a value is empty or holds CR or LF: nothing is rendered.
pub fn github_env(credential: &IssuedCredential) -> Result<GithubEnv, GithubEnvError> {
    let vars = variables(credential);
    for (name, value) in &vars {
        if value.is_empty() {
            return Err(GithubEnvError::Empty(name));
        }
        if value.contains(['\n', '\r']) {
            return Err(GithubEnvError::LineBreak(name));
        }
    }
    let mut masks = String::new();
    let mut env_lines = String::new();
    for (name, value) in vars {
        let _ = writeln!(masks, "::add-mask::{value}");
        let _ = writeln!(env_lines, "{name}={value}");
    }
    Ok(GithubEnv { masks, env_lines })
}

#[cfg(test)]
mod tests {
    use legate_core::Secret;

    use super::*;
    use crate::client::AwsCredentials;

    fn aws(secret: &str) -> IssuedCredential {
        IssuedCredential::Aws(AwsCredentials {
            access_key_id: "ASIA1".into(),
            secret_access_key: Secret::new(secret.into()),
            session_token: Secret::new("tok".into()),
            expiration: "2026-01-01T00:00:00Z".into(),
        })
    }

    /// Stops a credential holding shell syntax from running code when the export lines
    /// are `eval`ed.
    #[test]
    fn exports_quote_values_so_the_shell_expands_nothing() {
        let out = shell_exports(&aws("a'$(touch x)`y`\"z"));
        assert_eq!(
            out,
            "export AWS_ACCESS_KEY_ID='ASIA1'\n\
             export AWS_SECRET_ACCESS_KEY='a'\\''$(touch x)`y`\"z'\n\
             export AWS_SESSION_TOKEN='tok'\n"
        );
        let jwt = shell_exports(&IssuedCredential::Jwt(Secret::new("a.b.c".into())));
        assert_eq!(jwt, "export LEGATE_TOKEN='a.b.c'\n");
        let access = shell_exports(&IssuedCredential::AccessToken(Secret::new("ya29".into())));
        assert_eq!(
            access,
            "export CLOUDSDK_AUTH_ACCESS_TOKEN='ya29'\nexport AZURE_ACCESS_TOKEN='ya29'\n"
        );
    }

    /// Stops a value with a line break from injecting extra `$GITHUB_ENV` variables (or
    /// escaping its mask).
    #[test]
    fn github_env_refuses_line_breaks_and_masks_every_value() {
        assert_eq!(
            github_env(&aws("x\nLD_PRELOAD=/tmp/evil.so")),
            Err(GithubEnvError::LineBreak("AWS_SECRET_ACCESS_KEY"))
        );
        assert_eq!(
            github_env(&aws("x\ry")),
            Err(GithubEnvError::LineBreak("AWS_SECRET_ACCESS_KEY"))
        );
        let ok = github_env(&aws("sec")).unwrap();
        assert_eq!(
            ok.masks,
            "::add-mask::ASIA1\n::add-mask::sec\n::add-mask::tok\n"
        );
        assert_eq!(
            ok.env_lines,
            "AWS_ACCESS_KEY_ID=ASIA1\nAWS_SECRET_ACCESS_KEY=sec\nAWS_SESSION_TOKEN=tok\n"
        );
    }
}
