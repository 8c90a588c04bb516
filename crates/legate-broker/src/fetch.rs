//! Where the broker's credentials come from: a [`CredentialFetcher`] that turns a target
//! name into typed credentials, and [`LegateFetcher`], which presents the workload's
//! subject token at Legate's `POST /token` (RFC 8693).
//!
//! The seam for subject tokens is [`SubjectTokenSource`]: today only [`FileTokenSource`]
//! (re-read on every fetch, so a rotating Kubernetes projected token works); the
//! sources of `legate-client` plug in here.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use legate_core::Secret;
use legate_core::exchange::{
    MAX_REQUESTED_LIFETIME_SECS, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_AWS_CREDENTIALS,
    TOKEN_TYPE_JWT,
};
use serde::Deserialize;

/// RFC 8693 §2.1 `grant_type` of a token exchange.
const GRANT_TYPE_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The largest subject-token file read (a JWT is a few KiB).
const MAX_SUBJECT_TOKEN_BYTES: u64 = 64 * 1024;
/// The largest answer read from Legate.
const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// How long one exchange may take, end to end.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A boxed, sendable future (the trait stays object-safe without `async-trait`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Credentials for one target, with their absolute expiry in unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// AWS session credentials.
    Aws {
        /// `AccessKeyId`.
        access_key_id: String,
        /// `SecretAccessKey`.
        secret_access_key: Secret<String>,
        /// `SessionToken` (`Token` in the IMDS and ECS documents).
        session_token: Secret<String>,
        /// Unix seconds.
        expires_at: i64,
    },
    /// An OAuth bearer access token (Google, Entra).
    AccessToken {
        /// The token.
        token: Secret<String>,
        /// Unix seconds.
        expires_at: i64,
    },
}

impl Fetched {
    /// Unix seconds at which the credentials expire.
    pub const fn expires_at(&self) -> i64 {
        match self {
            Fetched::Aws { expires_at, .. } | Fetched::AccessToken { expires_at, .. } => {
                *expires_at
            }
        }
    }
}

/// Why credentials for a target could not be had. Never carries a token.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    /// The subject token could not be read.
    #[error("subject token source `{source_name}`: {reason}")]
    SubjectToken {
        /// The source, e.g. `file:/var/run/token`.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// Legate could not be reached or did not answer in time.
    #[error("cannot reach legate at `{url}`: {reason}")]
    Transport {
        /// The token endpoint.
        url: String,
        /// Why.
        reason: String,
    },
    /// Legate refused the exchange.
    #[error("legate refused target `{target}` (HTTP {status}): {error} (request_id {request_id})")]
    Refused {
        /// The target.
        target: String,
        /// The HTTP status.
        status: u16,
        /// The RFC 6749 §5.2 error code.
        error: String,
        /// Legate's request id, for its audit log.
        request_id: String,
    },
    /// Legate's answer could not be read.
    #[error("malformed answer from legate for target `{target}`: {reason}")]
    Malformed {
        /// The target.
        target: String,
        /// Why.
        reason: String,
    },
}

/// Turns a target name into credentials (one exchange; the cache sits in front).
pub trait CredentialFetcher: Send + Sync + std::fmt::Debug {
    /// Fetches fresh credentials for `target`; `now` is unix seconds.
    fn fetch<'a>(&'a self, target: &'a str, now: i64)
    -> BoxFuture<'a, Result<Fetched, FetchError>>;
}

/// Where the workload's subject token comes from.
pub trait SubjectTokenSource: Send + Sync + std::fmt::Debug {
    /// The current subject token. SECURITY: errors name the source, never the token.
    fn subject_token(&self) -> BoxFuture<'_, Result<Secret<String>, FetchError>>;
}

/// A subject token in a file, re-read on every call (Kubernetes projected tokens rotate).
#[derive(Debug, Clone)]
pub struct FileTokenSource {
    path: PathBuf,
}

impl FileTokenSource {
    /// A source reading `path`.
    pub const fn new(path: PathBuf) -> Self {
        Self { path }
    }

    fn name(&self) -> String {
        format!("file:{}", self.path.display())
    }
}

impl SubjectTokenSource for FileTokenSource {
    fn subject_token(&self) -> BoxFuture<'_, Result<Secret<String>, FetchError>> {
        Box::pin(async move {
            let fail = |reason: String| FetchError::SubjectToken {
                source_name: self.name(),
                reason,
            };
            let bytes = read_bounded(&self.path, MAX_SUBJECT_TOKEN_BYTES)
                .await
                .map_err(fail)?;
            let text = String::from_utf8(bytes).map_err(|_| fail("is not UTF-8".into()))?;
            let token = text.trim();
            if token.is_empty() {
                return Err(fail("is empty".into()));
            }
            Ok(Secret::new(token.to_owned()))
        })
    }
}

/// Reads at most `max` bytes of a file; a larger file is an error (never truncated).
pub(crate) async fn read_bounded(path: &std::path::Path, max: u64) -> Result<Vec<u8>, String> {
    use tokio::io::AsyncReadExt as _;
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("cannot open: {e}"))?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| format!("cannot read: {e}"))?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > max {
        return Err(format!("is larger than {max} bytes"));
    }
    Ok(bytes)
}

/// Exchanges the subject token at Legate's `POST {url}/token` for a target's credentials.
#[derive(Debug, Clone)]
pub struct LegateFetcher {
    http: reqwest::Client,
    token_url: String,
    source: Arc<dyn SubjectTokenSource>,
}

/// Why a [`LegateFetcher`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FetcherBuildError {
    /// The URL is neither `https://` nor `http://` on loopback.
    #[error("legate url `{0}` must be https:// (or http:// on loopback)")]
    InsecureUrl(String),
    /// The HTTP client could not be set up.
    #[error("cannot set up the http client: {0}")]
    Setup(String),
}

impl LegateFetcher {
    /// A fetcher for the Legate at `url` (`https://`, or `http://` on loopback).
    pub fn new(url: &str, source: Arc<dyn SubjectTokenSource>) -> Result<Self, FetcherBuildError> {
        let base = url.trim_end_matches('/');
        if !url_is_acceptable(base) {
            return Err(FetcherBuildError::InsecureUrl(url.to_owned()));
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| FetcherBuildError::Setup(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            // SECURITY: a redirect could carry the subject token to another host.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(EXCHANGE_TIMEOUT)
            .user_agent(concat!("legate-broker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetcherBuildError::Setup(e.to_string()))?;
        Ok(Self {
            http,
            token_url: format!("{base}/token"),
            source,
        })
    }

    async fn exchange(&self, target: &str, now: i64) -> Result<Fetched, FetchError> {
        let subject = self.source.subject_token().await?;
        let transport = |e: reqwest::Error| FetchError::Transport {
            url: self.token_url.clone(),
            // SECURITY: reqwest errors name the URL, never the form body.
            reason: e.without_url().to_string(),
        };
        let form = [
            ("grant_type", GRANT_TYPE_TOKEN_EXCHANGE),
            ("subject_token", subject.expose().as_str()),
            ("subject_token_type", TOKEN_TYPE_JWT),
            ("audience", target),
        ];
        let mut resp = self
            .http
            .post(&self.token_url)
            .form(&form)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_ANSWER_BYTES {
                return Err(malformed(target, "the answer is too large"));
            }
        }
        if status != 200 {
            let err: ErrorAnswer = serde_json::from_slice(&body).unwrap_or_default();
            return Err(FetchError::Refused {
                target: target.to_owned(),
                status,
                error: err.error.unwrap_or_else(|| "unknown".into()),
                request_id: err.request_id.unwrap_or_else(|| "none".into()),
            });
        }
        parse_answer(target, &body, now)
    }
}

impl CredentialFetcher for LegateFetcher {
    fn fetch<'a>(
        &'a self,
        target: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        Box::pin(self.exchange(target, now))
    }
}

/// `https://`, or `http://` on loopback; no user info, query or fragment.
fn url_is_acceptable(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    if !parsed.username().is_empty()
        || parsed.password().is_some()
        || parsed.query().is_some()
        || parsed.fragment().is_some()
    {
        return false;
    }
    let Some(host) = parsed.host_str() else {
        return false;
    };
    match parsed.scheme() {
        "https" => true,
        "http" => {
            host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        _ => false,
    }
}

fn malformed(target: &str, reason: &str) -> FetchError {
    FetchError::Malformed {
        target: target.to_owned(),
        reason: reason.to_owned(),
    }
}

/// The members of an error answer the broker reports (RFC 6749 §5.2 plus `request_id`).
#[derive(Debug, Default, Deserialize)]
struct ErrorAnswer {
    error: Option<String>,
    request_id: Option<String>,
}

/// A successful answer (RFC 8693 §2.2.1, with Legate's `aws_credentials`).
#[derive(Deserialize)]
struct Answer {
    access_token: String,
    issued_token_type: String,
    expires_in: u64,
    aws_credentials: Option<AwsAnswer>,
}

/// `aws_credentials`: the `credential_process` version 1 shape.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AwsAnswer {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
}

/// Reads Legate's answer into typed credentials. The expiry is `now + expires_in`, with
/// `expires_in` capped at Legate's longest lifetime.
fn parse_answer(target: &str, body: &[u8], now: i64) -> Result<Fetched, FetchError> {
    let answer: Answer =
        serde_json::from_slice(body).map_err(|_| malformed(target, "not a token response"))?;
    let lifetime = answer.expires_in.min(MAX_REQUESTED_LIFETIME_SECS);
    let expires_at = now.saturating_add(i64::try_from(lifetime).unwrap_or(0));
    match answer.issued_token_type.as_str() {
        TOKEN_TYPE_AWS_CREDENTIALS => {
            let aws = answer
                .aws_credentials
                .ok_or_else(|| malformed(target, "aws credentials without `aws_credentials`"))?;
            if aws.access_key_id.is_empty()
                || aws.secret_access_key.is_empty()
                || aws.session_token.is_empty()
            {
                return Err(malformed(target, "empty aws credentials"));
            }
            Ok(Fetched::Aws {
                access_key_id: aws.access_key_id,
                secret_access_key: Secret::new(aws.secret_access_key),
                session_token: Secret::new(aws.session_token),
                expires_at,
            })
        }
        TOKEN_TYPE_ACCESS_TOKEN => {
            if answer.access_token.is_empty() {
                return Err(malformed(target, "empty access token"));
            }
            Ok(Fetched::AccessToken {
                token: Secret::new(answer.access_token),
                expires_at,
            })
        }
        _ => Err(malformed(
            target,
            "the target issues neither aws credentials nor an access token",
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    #[test]
    fn legate_url_must_be_https_or_loopback_http() {
        for ok in [
            "https://legate.example",
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:9/",
        ] {
            assert!(url_is_acceptable(ok.trim_end_matches('/')), "{ok}");
        }
        for bad in [
            "http://legate.example",
            "http://10.0.0.1",
            "ftp://127.0.0.1",
            "https://u:p@x.example",
            "https://x.example/?q=1",
            "nonsense",
        ] {
            assert!(!url_is_acceptable(bad), "{bad}");
        }
    }

    #[test]
    fn aws_answers_become_typed_credentials_expiring_at_now_plus_expires_in() {
        let body = br#"{"access_token":"st","issued_token_type":"urn:legate:params:oauth:token-type:aws-credentials","token_type":"N_A","expires_in":3600,
            "aws_credentials":{"Version":1,"AccessKeyId":"ASIA1","SecretAccessKey":"sk","SessionToken":"st","Expiration":"2026-01-01T00:00:00Z"}}"#;
        let fetched = parse_answer("aws", body, 1000).unwrap();
        assert_eq!(fetched.expires_at(), 4600);
        assert!(
            matches!(fetched, Fetched::Aws { ref access_key_id, .. } if access_key_id == "ASIA1")
        );
    }

    /// Stops a hostile or broken answer from pinning a credential in the cache for
    /// longer than Legate can ever issue one.
    #[test]
    fn expires_in_is_capped_at_the_longest_lifetime() {
        let body = br#"{"access_token":"t","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":99999999}"#;
        let fetched = parse_answer("gcp", body, 0).unwrap();
        assert_eq!(fetched.expires_at(), 86_400);
    }

    #[test]
    fn a_minted_jwt_is_not_mistaken_for_credentials() {
        let body = br#"{"access_token":"a.b.c","issued_token_type":"urn:ietf:params:oauth:token-type:jwt","token_type":"N_A","expires_in":60}"#;
        assert!(matches!(
            parse_answer("api", body, 0),
            Err(FetchError::Malformed { .. })
        ));
        let aws_without = br#"{"access_token":"st","issued_token_type":"urn:legate:params:oauth:token-type:aws-credentials","token_type":"N_A","expires_in":60}"#;
        assert!(matches!(
            parse_answer("aws", aws_without, 0),
            Err(FetchError::Malformed { .. })
        ));
    }

    #[tokio::test]
    async fn the_token_file_is_reread_and_its_errors_never_show_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first.token.value\n").unwrap();
        let source = FileTokenSource::new(path.clone());
        assert_eq!(
            source.subject_token().await.unwrap().expose(),
            "first.token.value"
        );
        std::fs::write(&path, "second.token.value").unwrap();
        assert_eq!(
            source.subject_token().await.unwrap().expose(),
            "second.token.value"
        );
        std::fs::write(&path, "  \n").unwrap();
        let err = source.subject_token().await.unwrap_err().to_string();
        assert!(err.contains("is empty") && err.contains("file:"), "{err}");
        std::fs::write(&path, vec![b'a'; 70 * 1024]).unwrap();
        let err = source.subject_token().await.unwrap_err().to_string();
        assert!(
            err.contains("larger than") && !err.contains("aaaa"),
            "{err}"
        );
    }
}
