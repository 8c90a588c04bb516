//! The token-exchange client: `POST {url}/token` (RFC 8693), bounded retries, a typed
//! answer.
//!
//! The request is the form Legate's `/token` reads (`legate_core::exchange`):
//! `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`, `subject_token`,
//! `subject_token_type=urn:ietf:params:oauth:token-type:jwt`, `audience=<target name>`.
//!
//! Retries ([`RetryPolicy`]): a 503 or 429 answer, or no answer at all (connection
//! refused, timeout), is tried again, at most `max_attempts` times in all. The wait
//! before the next attempt is the server's `Retry-After` (delta-seconds or an HTTP date)
//! when it gives one, else a jittered exponential backoff (`base_delay · 2^n`, times a
//! random factor in [0.5, 1)); either is capped at `max_delay`. Any other answer is
//! final: a refusal becomes [`ClientError::Refused`] with the server's `error`,
//! `error_description` and `request_id`.
//!
//! Bounds: 10 s to connect, 30 s per attempt, answers of at most [`MAX_ANSWER_BYTES`].

use std::fmt;
use std::time::{Duration, SystemTime};

use legate_core::Secret;
use legate_core::exchange::{GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_JWT};
use legate_core::text::escape_untrusted;
use serde::Serialize;
use serde_json::Value;

use crate::source::{SubjectToken, http_client, read_bounded};

/// The largest answer read from Legate.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Legate's token type for AWS credentials (the member `aws_credentials` holds them).
pub const TOKEN_TYPE_AWS_CREDENTIALS: &str = "urn:legate:params:oauth:token-type:aws-credentials";
/// RFC 8693 access-token type (Google and Azure targets).
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How [`Client::exchange`] retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (at least 1).
    pub max_attempts: u32,
    /// The first backoff, doubled each attempt.
    pub base_delay: Duration,
    /// The longest wait between two attempts, `Retry-After` included.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, 250 ms doubling, at most 10 s apart: under a minute in the worst case.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (`attempt` counts from 1), given the server's
    /// `Retry-After` if any; `random` in [0, 1) jitters the backoff.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, random: f64) -> Duration {
        let wait = retry_after.unwrap_or_else(|| {
            let exp = self
                .base_delay
                .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
            exp.mul_f64(0.5 + random.clamp(0.0, 1.0) / 2.0)
        });
        wait.min(self.max_delay)
    }
}

/// A Legate server, as a workload calls it.
#[derive(Debug, Clone)]
pub struct Client {
    url: String,
    http: reqwest::Client,
    retry: RetryPolicy,
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL cannot be used.
    #[error("`{url}` is not a usable Legate URL: {why}")]
    BadUrl {
        /// The URL (escaped).
        url: String,
        /// Why.
        why: String,
    },
    /// Legate answered with a refusal.
    #[error(
        "legate refused the exchange (HTTP {status}): {error}: {description} (request_id {request_id})"
    )]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The OAuth `error` code (escaped).
        error: String,
        /// `error_description` (escaped).
        description: String,
        /// Legate's `request_id` (escaped): quote it to the operator.
        request_id: String,
    },
    /// Legate stayed unavailable (503/429) or unreachable for every attempt.
    #[error(
        "legate is unavailable after {attempts} attempts: {last}{}",
        request_id.as_ref().map(|id| format!(" (request_id {id})")).unwrap_or_default()
    )]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// What the last attempt met.
        last: String,
        /// The server's `error`, if the last attempt had an answer.
        error: Option<String>,
        /// The server's `request_id`, if the last attempt had one.
        request_id: Option<String>,
    },
    /// Legate answered 200 with something that is not a token-exchange response.
    #[error("legate's answer is not a token exchange response: {0}")]
    BadAnswer(String),
}

impl ClientError {
    /// The server's `error` code, if it gave one.
    pub fn server_error(&self) -> Option<&str> {
        match self {
            Self::Refused { error, .. } => Some(error),
            Self::Unavailable { error, .. } => error.as_deref(),
            _ => None,
        }
    }

    /// The server's `request_id`, if it gave one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Refused { request_id, .. } => Some(request_id),
            Self::Unavailable { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }
}

/// AWS session credentials, as Legate returns them under `aws_credentials`.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    /// `AccessKeyId`.
    pub access_key_id: String,
    /// `SecretAccessKey`.
    pub secret_access_key: Secret<String>,
    /// `SessionToken`.
    pub session_token: Secret<String>,
    /// `Expiration`, RFC 3339.
    pub expiration: String,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &self.session_token)
            .field("expiration", &self.expiration)
            .finish()
    }
}

/// The AWS `credential_process` document (version 1), in its documented member order.
#[derive(Serialize)]
struct CredentialProcess<'a> {
    #[serde(rename = "Version")]
    version: u8,
    #[serde(rename = "AccessKeyId")]
    access_key_id: &'a str,
    #[serde(rename = "SecretAccessKey")]
    secret_access_key: &'a str,
    #[serde(rename = "SessionToken")]
    session_token: &'a str,
    #[serde(rename = "Expiration")]
    expiration: &'a str,
}

impl AwsCredentials {
    /// The AWS `credential_process` JSON: `Version` 1, `AccessKeyId`,
    /// `SecretAccessKey`, `SessionToken`, `Expiration`.
    pub fn credential_process_json(&self) -> String {
        serde_json::to_string(&CredentialProcess {
            version: 1,
            access_key_id: &self.access_key_id,
            secret_access_key: self.secret_access_key.expose(),
            session_token: self.session_token.expose(),
            expiration: &self.expiration,
        })
        .unwrap_or_default()
    }
}

/// What Legate issued, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuedCredential {
    /// AWS session credentials (`aws` targets).
    Aws(AwsCredentials),
    /// An OAuth access token (`gcp` and `azure` targets; the answer does not say which).
    AccessToken(Secret<String>),
    /// A JWT minted by Legate (`jwt` targets).
    Jwt(Secret<String>),
}

/// A successful exchange.
#[derive(Clone)]
pub struct ExchangeAnswer {
    /// What was issued.
    pub credential: IssuedCredential,
    /// Seconds until it expires, as the server said.
    pub expires_in: u64,
    /// The server's `issued_token_type`.
    pub issued_token_type: String,
    raw: Value,
}

impl fmt::Debug for ExchangeAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeAnswer")
            .field("credential", &self.credential)
            .field("expires_in", &self.expires_in)
            .field("issued_token_type", &self.issued_token_type)
            .finish_non_exhaustive()
    }
}

impl ExchangeAnswer {
    /// Parses a 200 answer's JSON.
    ///
    /// # Errors
    ///
    /// [`ClientError::BadAnswer`] when a member is missing or of the wrong type.
    pub fn from_json(raw: Value) -> Result<Self, ClientError> {
        let text = |v: &Value, name: &str| -> Result<String, ClientError> {
            v.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| ClientError::BadAnswer(format!("no string `{name}`")))
        };
        let issued_token_type = text(&raw, "issued_token_type")?;
        let expires_in = raw
            .get("expires_in")
            .and_then(Value::as_u64)
            .ok_or_else(|| ClientError::BadAnswer("no number `expires_in`".to_owned()))?;
        let credential = match issued_token_type.as_str() {
            TOKEN_TYPE_AWS_CREDENTIALS => {
                let creds = raw.get("aws_credentials").ok_or_else(|| {
                    ClientError::BadAnswer("AWS credentials without `aws_credentials`".to_owned())
                })?;
                if creds.get("Version").and_then(Value::as_u64) != Some(1) {
                    return Err(ClientError::BadAnswer(
                        "`aws_credentials` is not version 1".to_owned(),
                    ));
                }
                IssuedCredential::Aws(AwsCredentials {
                    access_key_id: text(creds, "AccessKeyId")?,
                    secret_access_key: Secret::new(text(creds, "SecretAccessKey")?),
                    session_token: Secret::new(text(creds, "SessionToken")?),
                    expiration: text(creds, "Expiration")?,
                })
            }
            TOKEN_TYPE_ACCESS_TOKEN => {
                IssuedCredential::AccessToken(Secret::new(text(&raw, "access_token")?))
            }
            _ => IssuedCredential::Jwt(Secret::new(text(&raw, "access_token")?)),
        };
        Ok(Self {
            credential,
            expires_in,
            issued_token_type,
            raw,
        })
    }

    /// The server's answer, as received (it holds the credential: print it on purpose only).
    pub fn json(&self) -> &Value {
        &self.raw
    }
}

impl Client {
    /// A client of the Legate at `url` (`http://` or `https://`; rustls with the Mozilla
    /// roots), with the default [`RetryPolicy`].
    ///
    /// # Errors
    ///
    /// [`ClientError::BadUrl`] for anything else.
    pub fn new(url: &str) -> Result<Self, ClientError> {
        Self::with_ca(url, None)
    }

    /// [`Client::new`], also trusting the CA certificates of `ca_pem` (a Legate behind a
    /// private CA).
    ///
    /// # Errors
    ///
    /// [`ClientError::BadUrl`] for a bad URL or CA bundle.
    pub fn with_ca(url: &str, ca_pem: Option<&[u8]>) -> Result<Self, ClientError> {
        let bad = |why: String| ClientError::BadUrl {
            url: escape_untrusted(url),
            why,
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(bad("not an http(s) URL with a host".to_owned()));
        }
        let http = http_client(ca_pem, CONNECT_TIMEOUT, ATTEMPT_TIMEOUT)
            .map_err(|e| bad(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            http,
            retry: RetryPolicy::default(),
        })
    }

    /// The same client with another retry policy.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Exchanges `token` for a credential of `target`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] for a final refusal, [`ClientError::Unavailable`] when
    /// every attempt met a 503/429 or no answer, [`ClientError::BadAnswer`] for a 200
    /// that does not parse.
    pub async fn exchange(
        &self,
        target: &str,
        token: &SubjectToken,
    ) -> Result<ExchangeAnswer, ClientError> {
        let endpoint = format!("{}/token", self.url);
        let form = [
            ("grant_type", GRANT_TYPE_TOKEN_EXCHANGE),
            ("subject_token", token.expose()),
            ("subject_token_type", TOKEN_TYPE_JWT),
            ("audience", target),
        ];
        let max_attempts = self.retry.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.http.post(&endpoint).form(&form).send().await;
            let (last, error, request_id, retry_after) = match outcome {
                Err(e) => (format!("no answer: {}", e.without_url()), None, None, None),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, wall_clock()));
                    let body = read_bounded(response, MAX_ANSWER_BYTES)
                        .await
                        .map_err(ClientError::BadAnswer);
                    if status == 200 {
                        let raw: Value = serde_json::from_slice(&body?).map_err(|_| {
                            ClientError::BadAnswer("the body is not JSON".to_owned())
                        })?;
                        return ExchangeAnswer::from_json(raw);
                    }
                    let body: Value = body
                        .ok()
                        .and_then(|b| serde_json::from_slice(&b).ok())
                        .unwrap_or(Value::Null);
                    let member =
                        |name: &str| body.get(name).and_then(Value::as_str).map(escape_untrusted);
                    if status != 503 && status != 429 {
                        return Err(ClientError::Refused {
                            status,
                            error: member("error").unwrap_or_else(|| "?".to_owned()),
                            description: member("error_description").unwrap_or_default(),
                            request_id: member("request_id").unwrap_or_else(|| "?".to_owned()),
                        });
                    }
                    (
                        format!(
                            "HTTP {status}{}",
                            member("error_description")
                                .map(|d| format!(": {d}"))
                                .unwrap_or_default()
                        ),
                        member("error"),
                        member("request_id"),
                        retry_after,
                    )
                }
            };
            if attempt >= max_attempts {
                return Err(ClientError::Unavailable {
                    attempts: attempt,
                    last,
                    error,
                    request_id,
                });
            }
            let wait = self.retry.delay(attempt, retry_after, fastrand::f64());
            tokio::time::sleep(wait).await;
        }
    }
}

#[expect(
    clippy::disallowed_methods,
    reason = "an HTTP-date Retry-After is relative to the wall clock; this I/O edge has no injected clock"
)]
fn wall_clock() -> SystemTime {
    SystemTime::now()
}

/// RFC 9110 §10.2.3 `Retry-After`: delta-seconds or an HTTP-date (a date in the past
/// means now). `None` for anything else.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        for junk in ["", "-1", "1.5", "soon", "99999999999999999999999x"] {
            assert_eq!(parse_retry_after(junk, now), None, "{junk:?}");
        }
        // Too many digits for u64: the longest wait, which the policy then caps.
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    /// Stops a server (or a proxy) from parking the client: `Retry-After` is honoured up
    /// to `max_delay`, never beyond.
    #[test]
    fn delays_are_capped_and_jittered() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(2)), 0.9),
            Duration::from_secs(2)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(u64::MAX)), 0.0),
            policy.max_delay
        );
        assert_eq!(policy.delay(1, None, 0.0), Duration::from_millis(125));
        assert_eq!(policy.delay(3, None, 0.0), Duration::from_millis(500));
        assert!(policy.delay(3, None, 0.999) < Duration::from_millis(1000));
        assert_eq!(policy.delay(40, None, 0.5), policy.max_delay);
    }

    #[test]
    fn answers_parse_into_their_kinds() {
        let aws = ExchangeAnswer::from_json(json!({
            "access_token": "tok",
            "issued_token_type": TOKEN_TYPE_AWS_CREDENTIALS,
            "token_type": "N_A",
            "expires_in": 900,
            "aws_credentials": {
                "Version": 1, "AccessKeyId": "ASIA1", "SecretAccessKey": "sec",
                "SessionToken": "tok", "Expiration": "2026-01-01T00:00:00Z"
            }
        }))
        .unwrap();
        let IssuedCredential::Aws(creds) = &aws.credential else {
            panic!("{aws:?}")
        };
        assert_eq!(
            creds.credential_process_json(),
            r#"{"Version":1,"AccessKeyId":"ASIA1","SecretAccessKey":"sec","SessionToken":"tok","Expiration":"2026-01-01T00:00:00Z"}"#
        );
        let gcp = ExchangeAnswer::from_json(json!({
            "access_token": "ya29.x", "issued_token_type": TOKEN_TYPE_ACCESS_TOKEN,
            "token_type": "Bearer", "expires_in": 3600
        }))
        .unwrap();
        assert_eq!(
            gcp.credential,
            IssuedCredential::AccessToken(Secret::new("ya29.x".into()))
        );
        let jwt = ExchangeAnswer::from_json(json!({
            "access_token": "a.b.c", "issued_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_type": "N_A", "expires_in": 60
        }))
        .unwrap();
        assert_eq!(
            jwt.credential,
            IssuedCredential::Jwt(Secret::new("a.b.c".into()))
        );
        // AWS without its credentials, or a bad version: refused, not half-used.
        for bad in [
            json!({"access_token": "t", "issued_token_type": TOKEN_TYPE_AWS_CREDENTIALS, "expires_in": 1}),
            json!({"access_token": "t", "issued_token_type": TOKEN_TYPE_AWS_CREDENTIALS, "expires_in": 1,
                   "aws_credentials": {"Version": 2, "AccessKeyId": "a", "SecretAccessKey": "s",
                                       "SessionToken": "t", "Expiration": "e"}}),
            json!({"issued_token_type": TOKEN_TYPE_ACCESS_TOKEN, "expires_in": 1}),
            json!({"access_token": "t", "issued_token_type": TOKEN_TYPE_ACCESS_TOKEN}),
        ] {
            assert!(ExchangeAnswer::from_json(bad.clone()).is_err(), "{bad}");
        }
    }

    /// Stops credentials from leaking through `{:?}` of an answer.
    #[test]
    fn answers_never_format_their_secrets() {
        let answer = ExchangeAnswer::from_json(json!({
            "access_token": "session-secret",
            "issued_token_type": TOKEN_TYPE_AWS_CREDENTIALS,
            "expires_in": 900,
            "aws_credentials": {
                "Version": 1, "AccessKeyId": "ASIA1", "SecretAccessKey": "key-secret",
                "SessionToken": "session-secret", "Expiration": "2026-01-01T00:00:00Z"
            }
        }))
        .unwrap();
        let shown = format!("{answer:?}");
        assert!(
            !shown.contains("key-secret") && !shown.contains("session-secret"),
            "{shown}"
        );
        assert!(shown.contains("ASIA1"));
    }

    #[test]
    fn only_http_urls_with_a_host_make_a_client() {
        assert!(Client::new("https://legate.example.com/").is_ok());
        assert_eq!(
            Client::new("http://127.0.0.1:8080/").unwrap().url(),
            "http://127.0.0.1:8080"
        );
        for bad in ["ftp://x", "legate.example.com", "file:///etc/passwd"] {
            assert!(Client::new(bad).is_err(), "{bad}");
        }
    }
}
