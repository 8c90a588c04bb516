//! Where the broker's credentials come from: a [`CredentialFetcher`] that turns a target
//! name into typed credentials, and [`LegateFetcher`], which presents the workload's
//! subject token at Legate's `POST /token` (RFC 8693) through [`legate_client::Client`]
//! (its form, its bounded answer parsing, its retries of 503 and 429 with `Retry-After`).
//!
//! The seam for subject tokens is [`SubjectTokenSource`]; [`ClientTokenSource`] plugs
//! any of `legate-client`'s sources into it (a file is re-read on every fetch, so a
//! rotating Kubernetes projected token works).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use legate_client::{Client, ClientError, IssuedCredential, RetryPolicy, Source, SubjectToken};
use legate_core::Secret;
use legate_core::exchange::MAX_REQUESTED_LIFETIME_SECS;

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
    fn subject_token(&self) -> BoxFuture<'_, Result<SubjectToken, FetchError>>;
}

/// A `legate-client` token source (`--token-source`: a file, an environment variable, a
/// CI or cloud identity endpoint, …) as the broker's [`SubjectTokenSource`], asked again
/// at every fetch. Its errors name the source and why, never the token.
#[derive(Debug)]
pub struct ClientTokenSource(Source);

impl ClientTokenSource {
    /// Reads subject tokens from `source`.
    pub const fn new(source: Source) -> Self {
        Self(source)
    }
}

impl SubjectTokenSource for ClientTokenSource {
    fn subject_token(&self) -> BoxFuture<'_, Result<SubjectToken, FetchError>> {
        Box::pin(async move {
            self.0.fetch().await.map_err(|e| FetchError::SubjectToken {
                source_name: self.0.kind().to_string(),
                reason: e.to_string(),
            })
        })
    }
}

/// Exchanges the subject token at Legate's `POST {url}/token` for a target's credentials.
#[derive(Debug, Clone)]
pub struct LegateFetcher {
    client: Client,
    source: Arc<dyn SubjectTokenSource>,
}

/// Why a [`LegateFetcher`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FetcherBuildError {
    /// The URL is neither `https://` nor `http://` on loopback.
    #[error("legate url `{0}` must be https:// (or http:// on loopback)")]
    InsecureUrl(String),
    /// The client could not be set up.
    #[error("cannot set up the legate client: {0}")]
    Setup(String),
}

impl LegateFetcher {
    /// A fetcher for the Legate at `url` (`https://`, or `http://` on loopback), with
    /// `legate-client`'s default retries.
    pub fn new(url: &str, source: Arc<dyn SubjectTokenSource>) -> Result<Self, FetcherBuildError> {
        let base = url.trim_end_matches('/');
        // SECURITY: the subject token crosses the network in clear only on loopback.
        if !url_is_acceptable(base) {
            return Err(FetcherBuildError::InsecureUrl(url.to_owned()));
        }
        let client = Client::new(base).map_err(|e| FetcherBuildError::Setup(e.to_string()))?;
        Ok(Self { client, source })
    }

    /// The same fetcher with another retry policy.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.client = self.client.with_retry(retry);
        self
    }

    async fn exchange(&self, target: &str, now: i64) -> Result<Fetched, FetchError> {
        let subject = self.source.subject_token().await?;
        let answer = self
            .client
            .exchange(target, &subject)
            .await
            .map_err(|e| self.fetch_error(target, e))?;
        // A hostile or broken answer cannot pin a credential in the cache for longer
        // than Legate ever issues one.
        let lifetime = answer.expires_in.min(MAX_REQUESTED_LIFETIME_SECS);
        let expires_at = now.saturating_add(i64::try_from(lifetime).unwrap_or(0));
        match answer.credential {
            IssuedCredential::Aws(aws) => Ok(Fetched::Aws {
                access_key_id: aws.access_key_id,
                secret_access_key: aws.secret_access_key,
                session_token: aws.session_token,
                expires_at,
            }),
            IssuedCredential::AccessToken(token) => Ok(Fetched::AccessToken { token, expires_at }),
            IssuedCredential::Jwt(_) => Err(malformed(
                target,
                "the target issues neither aws credentials nor an access token",
            )),
        }
    }

    fn fetch_error(&self, target: &str, e: ClientError) -> FetchError {
        match e {
            ClientError::Refused {
                status,
                error,
                request_id,
                ..
            } => FetchError::Refused {
                target: target.to_owned(),
                status,
                error,
                request_id,
            },
            ClientError::BadAnswer(reason) => malformed(target, &reason),
            e @ (ClientError::Unavailable { .. } | ClientError::BadUrl { .. }) => {
                FetchError::Transport {
                    url: format!("{}/token", self.client.url()),
                    reason: e.to_string(),
                }
            }
        }
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

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        reason = "test code: failing loudly is the point"
    )]
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use legate_client::{Environment, TokenSource};

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
        let source = Arc::new(file_source(std::path::Path::new("/nonexistent")));
        assert!(matches!(
            LegateFetcher::new("http://legate.example", source),
            Err(FetcherBuildError::InsecureUrl(_))
        ));
    }

    fn file_source(path: &std::path::Path) -> ClientTokenSource {
        ClientTokenSource::new(
            Source::new(
                TokenSource::File(path.to_owned()),
                "aud",
                Environment::from_pairs(Vec::<(String, String)>::new()),
            )
            .unwrap(),
        )
    }

    /// One canned answer: status, an extra header, the JSON body.
    type Answer = (u16, Option<(&'static str, &'static str)>, &'static str);

    /// A loopback Legate answering each `POST /token` with the next of `answers` (the
    /// last one again once they run out); returns its URL and a request counter.
    async fn legate(answers: Vec<Answer>) -> (String, Arc<AtomicUsize>) {
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        let answers = Arc::new(answers);
        let app = axum::Router::new().route(
            "/token",
            axum::routing::post(move || {
                let seen = seen.clone();
                let answers = answers.clone();
                async move {
                    let n = seen.fetch_add(1, Ordering::SeqCst);
                    let (status, extra, body) = answers
                        .get(n)
                        .or_else(|| answers.last())
                        .copied()
                        .expect("an answer");
                    let mut response = (
                        StatusCode::from_u16(status).unwrap(),
                        [(header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                        .into_response();
                    if let Some((name, value)) = extra {
                        response.headers_mut().insert(name, value.parse().unwrap());
                    }
                    response
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, count)
    }

    const AWS_ANSWER: &str = r#"{"access_token":"st","issued_token_type":"urn:legate:params:oauth:token-type:aws-credentials","token_type":"N_A","expires_in":3600,
        "aws_credentials":{"Version":1,"AccessKeyId":"ASIA1","SecretAccessKey":"sk","SessionToken":"st","Expiration":"2026-01-01T00:00:00Z"}}"#;

    fn fetcher(url: &str, dir: &tempfile::TempDir) -> LegateFetcher {
        let path = dir.path().join("token");
        std::fs::write(&path, "a.b.c\n").unwrap();
        LegateFetcher::new(url, Arc::new(file_source(&path)))
            .unwrap()
            .with_retry(RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(10),
            })
    }

    #[tokio::test]
    async fn aws_answers_become_typed_credentials_expiring_at_now_plus_expires_in() {
        let (url, _) = legate(vec![(200, None, AWS_ANSWER)]).await;
        let dir = tempfile::tempdir().unwrap();
        let fetched = fetcher(&url, &dir).fetch("aws", 1000).await.unwrap();
        assert_eq!(fetched.expires_at(), 4600);
        assert!(
            matches!(fetched, Fetched::Aws { ref access_key_id, .. } if access_key_id == "ASIA1")
        );
    }

    /// A Legate that is briefly unavailable (503 with `Retry-After`, then 429) is asked
    /// again, as legate-client does, instead of failing the SDK's metadata request.
    #[tokio::test]
    async fn unavailable_and_throttled_answers_are_retried() {
        let busy = r#"{"error":"temporarily_unavailable","request_id":"r1"}"#;
        let (url, count) = legate(vec![
            (503, Some(("retry-after", "0")), busy),
            (429, Some(("retry-after", "0")), busy),
            (200, None, AWS_ANSWER),
        ])
        .await;
        let dir = tempfile::tempdir().unwrap();
        let fetched = fetcher(&url, &dir).fetch("aws", 0).await.unwrap();
        assert_eq!(fetched.expires_at(), 3600);
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn refusals_are_final_and_name_the_request_id() {
        let (url, count) = legate(vec![(
            400,
            None,
            r#"{"error":"invalid_request","error_description":"no","request_id":"req-7"}"#,
        )])
        .await;
        let dir = tempfile::tempdir().unwrap();
        let err = fetcher(&url, &dir).fetch("aws", 0).await.unwrap_err();
        assert_eq!(
            err,
            FetchError::Refused {
                target: "aws".into(),
                status: 400,
                error: "invalid_request".into(),
                request_id: "req-7".into(),
            }
        );
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    /// Stops a hostile or broken answer from pinning a credential in the cache for
    /// longer than Legate can ever issue one.
    #[tokio::test]
    async fn expires_in_is_capped_at_the_longest_lifetime() {
        let (url, _) = legate(vec![(
            200,
            None,
            r#"{"access_token":"t","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":99999999}"#,
        )])
        .await;
        let dir = tempfile::tempdir().unwrap();
        let fetched = fetcher(&url, &dir).fetch("gcp", 0).await.unwrap();
        assert_eq!(fetched.expires_at(), 86_400);
    }

    #[tokio::test]
    async fn a_minted_jwt_is_not_mistaken_for_credentials() {
        let (url, _) = legate(vec![(
            200,
            None,
            r#"{"access_token":"a.b.c","issued_token_type":"urn:ietf:params:oauth:token-type:jwt","token_type":"N_A","expires_in":60}"#,
        )])
        .await;
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            fetcher(&url, &dir).fetch("api", 0).await,
            Err(FetchError::Malformed { .. })
        ));
    }

    /// The broker reads its subject token through legate-client: a file source is
    /// re-read at every call, and a failing source is named without any token.
    #[tokio::test]
    async fn the_token_file_is_reread_and_its_errors_never_show_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first.token.value\n").unwrap();
        let source = file_source(&path);
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
        assert!(err.contains("file:"), "{err}");
        std::fs::write(&path, vec![b'a'; 70 * 1024]).unwrap();
        let err = source.subject_token().await.unwrap_err().to_string();
        assert!(err.contains("file:") && !err.contains("aaaa"), "{err}");
    }
}
