//! The workload side of Legate: where a workload's subject token comes from, and the
//! client that exchanges it at a Legate server.
//!
//! - [`source`]: [`TokenSource`] (parsed from `--token-source`, or detected from the
//!   environment) and [`Source`], which fetches a [`SubjectToken`] from it: GitHub
//!   Actions, GitLab CI `id_tokens`, a file (re-read on every fetch), an environment
//!   variable, a command, the GCE and Azure metadata identity endpoints, AWS outbound
//!   identity federation.
//! - [`client`]: [`Client::exchange`] calls `POST {url}/token` (RFC 8693) with bounded,
//!   jittered retries on 503/429 (honouring `Retry-After`), and parses the answer into an
//!   [`ExchangeAnswer`] holding a typed [`IssuedCredential`].
//! - [`output`]: the answer as SDK environment variables (`export` lines, `$GITHUB_ENV`
//!   lines with `::add-mask::`) and as AWS `credential_process` JSON.
//!
//! What it does not do: verify anything (the server does), cache credentials (the
//! broker does), or read the process environment behind the caller's back: the
//! environment is an [`Environment`] snapshot passed in, so tests and the broker can
//! hand in their own.
//!
//! SECURITY: tokens and credentials travel in [`legate_core::Secret`] or
//! [`SubjectToken`], whose `Debug` and `Display` print `******`; no error message of
//! this crate carries one.

pub mod client;
pub mod output;
pub mod source;

pub use client::{
    AwsCredentials, Client, ClientError, ExchangeAnswer, IssuedCredential, RetryPolicy,
};
pub use source::{Environment, Source, SourceError, SubjectToken, TokenSource};
