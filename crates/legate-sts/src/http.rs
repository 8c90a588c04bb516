//! What every cloud adapter shares: the HTTPS client, the endpoint rules, the retry loop
//! with its deadline, and the handling of untrusted cloud text.
//!
//! Retries follow one policy ([`CallPolicy`]): at most three attempts, only after a
//! transient failure (a connection error, a timeout of one attempt, HTTP 5xx or 429, or a
//! cloud code the adapter classifies as transient), with full-jitter exponential backoff
//! capped at two seconds, a `Retry-After` honoured up to five seconds, and one deadline
//! over the whole call. A refusal (any other 4xx) is never retried.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_smithy_types::date_time::{DateTime, Format};
use legate_core::UnixSeconds;

use crate::ExchangeError;

/// The largest cloud response body read, in bytes. An STS answer is a few KiB; AWS warns
/// that session tokens have no fixed size, so the bound is generous.
pub(crate) const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// The longest cloud message kept in an error, in characters.
const MAX_MESSAGE_CHARS: usize = 256;
/// The longest cloud code or request id kept, in characters.
const MAX_CODE_CHARS: usize = 64;

/// How a cloud call is bounded and retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallPolicy {
    /// Deadline of the whole call, every attempt and backoff included.
    pub timeout: Duration,
    /// Deadline of establishing one connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Attempts at most (the first one included).
    pub max_attempts: u32,
    /// The first backoff's upper bound; it doubles per retry.
    pub backoff_base: Duration,
    /// The largest backoff.
    pub backoff_cap: Duration,
    /// The longest `Retry-After` honoured; a longer one ends the retries.
    pub retry_after_cap: Duration,
}

impl CallPolicy {
    /// The default policy with a whole-call deadline of `timeout_secs` seconds.
    pub fn with_timeout_secs(timeout_secs: u64) -> Self {
        let timeout = Duration::from_secs(timeout_secs.max(1));
        Self {
            timeout,
            connect_timeout: timeout.min(Duration::from_secs(3)),
            ..Self::default()
        }
    }
}

impl Default for CallPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(crate::DEFAULT_CLOUD_TIMEOUT_SECS),
            connect_timeout: Duration::from_secs(3),
            max_attempts: 3,
            backoff_base: Duration::from_millis(200),
            backoff_cap: Duration::from_secs(2),
            retry_after_cap: Duration::from_secs(5),
        }
    }
}

/// Why an HTTPS client could not be built.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ClientBuildError {
    /// The CA bundle of target `target` is unusable.
    #[error("target `{target}`: ca bundle: {reason}")]
    Ca {
        /// The target.
        target: String,
        /// Why.
        reason: String,
    },
    /// An endpoint is not acceptable.
    #[error("target `{target}`: {source}")]
    Endpoint {
        /// The target.
        target: String,
        /// Why.
        source: EndpointError,
    },
    /// TLS or client setup failed.
    #[error("target `{target}`: http client setup failed: {reason}")]
    Setup {
        /// The target.
        target: String,
        /// Why.
        reason: String,
    },
}

/// Why an endpoint URL was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    /// Not a URL.
    #[error("endpoint `{0}` is not a url")]
    NotUrl(String),
    /// Neither `https://`, nor `http://` on a loopback address.
    #[error("endpoint `{0}` must be https (plain http only on a loopback address)")]
    Insecure(String),
    /// Userinfo, a query or a fragment.
    #[error("endpoint `{0}` must not carry credentials, a query or a fragment")]
    Extras(String),
}

/// Checks a cloud endpoint override: `https://` with a host, or `http://` only on a
/// loopback address (`127.0.0.0/8`, `[::1]`, `localhost`) for tests; no userinfo, query
/// or fragment.
///
/// SECURITY: a cloud endpoint receives Legate's signed assertion; plain HTTP anywhere
/// but the local machine would expose it on the network.
pub fn check_endpoint(url: &str) -> Result<(), EndpointError> {
    let shown = legate_core::text::escape_untrusted(url);
    let parsed = reqwest::Url::parse(url).map_err(|_| EndpointError::NotUrl(shown.clone()))?;
    if !parsed.username().is_empty()
        || parsed.password().is_some()
        || parsed.query().is_some()
        || parsed.fragment().is_some()
    {
        return Err(EndpointError::Extras(shown));
    }
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" if !host.is_empty() => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(EndpointError::Insecure(shown)),
    }
}

/// The call policy and HTTPS client of one cloud target: the target's own deadline and
/// CA bundle, unless `policy` overrides the policy (tests).
pub(crate) fn target_client(
    name: &str,
    cloud: &crate::CloudTarget,
    policy: Option<CallPolicy>,
) -> Result<(reqwest::Client, CallPolicy), ClientBuildError> {
    let policy = policy.unwrap_or_else(|| CallPolicy::with_timeout_secs(cloud.timeout_secs()));
    let http = client(name, cloud.ca_pem().map(|c| c.0.as_slice()), &policy)?;
    Ok((http, policy))
}

/// Builds the HTTPS client of one target: rustls with aws-lc-rs, the Mozilla roots plus
/// the target's extra CA certificates, no redirects, bounded connect time.
pub(crate) fn client(
    target: &str,
    ca_pem: Option<&[u8]>,
    policy: &CallPolicy,
) -> Result<reqwest::Client, ClientBuildError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = ca_pem {
        let ca_err = |reason: String| ClientBuildError::Ca {
            target: target.to_owned(),
            reason,
        };
        let mut added = 0_usize;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| ca_err(e.to_string()))?;
            roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(ca_err("holds no certificate".into()));
        }
    }
    let setup = |reason: String| ClientBuildError::Setup {
        target: target.to_owned(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        // SECURITY: a redirect could carry the assertion to another host.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(policy.connect_timeout)
        .timeout(policy.timeout)
        .user_agent(concat!("legate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| setup(e.to_string()))
}

/// One failed attempt: the error it would end with, and whether to try again.
#[derive(Debug)]
pub(crate) struct AttemptError {
    pub(crate) error: ExchangeError,
    pub(crate) retry: bool,
    pub(crate) retry_after: Option<Duration>,
}

impl AttemptError {
    /// A failure that ends the call.
    pub(crate) fn fatal(error: ExchangeError) -> Self {
        Self {
            error,
            retry: false,
            retry_after: None,
        }
    }
}

/// Runs `attempt` under `policy`: retries transient failures with full-jitter backoff
/// (or the server's `Retry-After`, capped), stops at the first refusal, and never runs
/// past the whole-call deadline. `attempt` gets the 1-based attempt number.
pub(crate) async fn with_retries<T, F, Fut>(
    cloud: &'static str,
    policy: &CallPolicy,
    mut attempt: F,
) -> Result<T, ExchangeError>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<T, AttemptError>>,
{
    let deadline = tokio::time::Instant::now() + policy.timeout;
    let mut number = 1_u32;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let failure = match tokio::time::timeout(remaining, attempt(number)).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(failure)) => failure,
            Err(_) => {
                return Err(unavailable(
                    cloud,
                    "timeout",
                    None,
                    &format!("no answer within {} ms", policy.timeout.as_millis()),
                ));
            }
        };
        if !failure.retry || number >= policy.max_attempts {
            return Err(failure.error);
        }
        let wait = match failure.retry_after {
            Some(after) if after > policy.retry_after_cap => return Err(failure.error),
            Some(after) => after,
            None => full_jitter(policy, number),
        };
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if wait >= remaining {
            return Err(failure.error);
        }
        tracing::debug!(cloud, attempt = number, wait_ms = wait.as_millis(), code = ?failure.error.cloud_code(), "retrying cloud call");
        tokio::time::sleep(wait).await;
        number += 1;
    }
}

/// A random wait in `[0, min(cap, base · 2^(n-1))]` ("full jitter").
fn full_jitter(policy: &CallPolicy, retry: u32) -> Duration {
    let exp = policy
        .backoff_base
        .saturating_mul(1_u32 << retry.saturating_sub(1).min(16));
    let ceiling = u64::try_from(exp.min(policy.backoff_cap).as_millis()).unwrap_or(u64::MAX);
    let mut bytes = [0_u8; 8];
    // A failed random draw just means no jitter this time.
    let random = match aws_lc_rs::rand::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => u64::MAX,
    };
    Duration::from_millis(random % ceiling.saturating_add(1))
}

/// Parses a `Retry-After` header in seconds (an HTTP date is ignored: backoff applies).
pub(crate) fn retry_after(value: Option<&str>) -> Option<Duration> {
    value?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// An [`ExchangeError::Unavailable`] with bounded, escaped cloud text.
pub(crate) fn unavailable(
    cloud: &'static str,
    code: &str,
    request_id: Option<&str>,
    message: &str,
) -> ExchangeError {
    ExchangeError::Unavailable {
        cloud,
        code: bounded(code, MAX_CODE_CHARS),
        request_id: request_id.map(|r| bounded(r, MAX_CODE_CHARS)),
        message: bounded(message, MAX_MESSAGE_CHARS),
    }
}

/// An [`ExchangeError::TargetRefused`] with bounded, escaped cloud text.
pub(crate) fn refused(
    cloud: &'static str,
    code: &str,
    request_id: Option<&str>,
    message: &str,
) -> ExchangeError {
    ExchangeError::TargetRefused {
        cloud,
        code: bounded(code, MAX_CODE_CHARS),
        request_id: request_id.map(|r| bounded(r, MAX_CODE_CHARS)),
        message: bounded(message, MAX_MESSAGE_CHARS),
    }
}

/// Escapes control characters, quotes, `\` and non-ASCII, and cuts at `max` characters
/// of input (marked `…`).
///
/// SECURITY: cloud error text is untrusted (Entra echoes the assertion's claims in its
/// messages); it must not forge audit lines or grow them without bound.
pub(crate) fn bounded(input: &str, max: usize) -> String {
    let mut out = String::with_capacity(input.len().min(max) + 4);
    let mut chars = input.chars();
    for c in chars.by_ref().take(max) {
        if (c.is_ascii_graphic() && c != '\\' && c != '"') || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// Describes a transport error without its URL's query (there is none) and with its
/// source chain, bounded.
pub(crate) fn transport_error(cloud: &'static str, e: &reqwest::Error) -> AttemptError {
    let code = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    };
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    AttemptError {
        error: unavailable(cloud, code, None, &message),
        retry: true,
        retry_after: None,
    }
}

/// Reads a response body up to [`MAX_RESPONSE_BYTES`].
pub(crate) async fn read_body(
    cloud: &'static str,
    mut response: reqwest::Response,
) -> Result<Vec<u8>, AttemptError> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(AttemptError::fatal(unavailable(
                        cloud,
                        "response_too_large",
                        None,
                        &format!("answer exceeds {MAX_RESPONSE_BYTES} bytes"),
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(transport_error(cloud, &e)),
        }
    }
}

/// Whether an HTTP status is transient by itself: 429 or 5xx.
pub(crate) const fn transient_status(status: u16) -> bool {
    status == 429 || status >= 500
}

/// Formats unix seconds as RFC 3339 UTC with a `Z` (`2026-01-15T08:30:00Z`).
pub(crate) fn rfc3339(secs: UnixSeconds) -> String {
    DateTime::from_secs(secs)
        .fmt(Format::DateTime)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// Parses an RFC 3339 timestamp to unix seconds (fractions dropped).
pub(crate) fn parse_rfc3339(s: &str) -> Option<UnixSeconds> {
    DateTime::from_str(s, Format::DateTime)
        .ok()
        .map(|d| d.secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_https_or_loopback_http() {
        for ok in [
            "https://sts.amazonaws.com",
            "https://sts.eu-west-1.amazonaws.com/",
            "http://127.0.0.1:4566",
            "http://127.9.9.9",
            "http://localhost:8080/base",
            "http://[::1]:9",
        ] {
            assert_eq!(check_endpoint(ok), Ok(()), "{ok}");
        }
        for insecure in [
            "http://sts.amazonaws.com",
            "http://10.0.0.1",
            "http://localhost.evil.example",
            "http://127.0.0.1.evil.example",
            "ftp://127.0.0.1",
        ] {
            assert!(
                matches!(check_endpoint(insecure), Err(EndpointError::Insecure(_))),
                "{insecure}"
            );
        }
        for extras in [
            "https://user:pw@sts.amazonaws.com",
            "https://sts.amazonaws.com/?x=1",
            "https://sts.amazonaws.com/#f",
        ] {
            assert!(
                matches!(check_endpoint(extras), Err(EndpointError::Extras(_))),
                "{extras}"
            );
        }
        assert!(matches!(
            check_endpoint("not a url"),
            Err(EndpointError::NotUrl(_))
        ));
    }

    #[test]
    fn rfc3339_round_trips_in_utc() {
        assert_eq!(rfc3339(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339("2026-01-01T00:00:00Z"), Some(1_767_225_600));
        assert_eq!(
            parse_rfc3339("2026-01-01T00:00:00.123456Z"),
            Some(1_767_225_600)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    /// Stops a hostile cloud answer from forging audit lines or growing them unbounded.
    #[test]
    fn cloud_text_is_escaped_and_bounded() {
        assert_eq!(bounded("a\r\nb\"", 10), r#"a\r\nb\""#);
        let long = bounded(&"x".repeat(1000), MAX_MESSAGE_CHARS);
        assert_eq!(long.chars().count(), MAX_MESSAGE_CHARS + 1);
        let e = refused("aws", "Code\n", Some("id\r"), "msg");
        assert_eq!(
            e,
            ExchangeError::TargetRefused {
                cloud: "aws",
                code: "Code\\n".into(),
                request_id: Some("id\\r".into()),
                message: "msg".into(),
            }
        );
    }

    #[test]
    fn jitter_stays_within_the_cap() {
        let policy = CallPolicy::default();
        for retry in 1..40 {
            assert!(full_jitter(&policy, retry) <= policy.backoff_cap);
        }
        assert!(full_jitter(&policy, 1) <= policy.backoff_base);
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        assert_eq!(retry_after(Some(" 2 ")), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(None), None);
    }

    fn transient(n: u32) -> AttemptError {
        AttemptError {
            error: unavailable("gcp", &format!("http_50{n}"), None, "down"),
            retry: true,
            retry_after: None,
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_up_to_three_attempts() {
        let policy = CallPolicy {
            backoff_base: Duration::from_millis(1),
            ..CallPolicy::default()
        };
        let mut calls = 0;
        let err = with_retries::<(), _, _>("gcp", &policy, |n| {
            calls += 1;
            std::future::ready(Err(transient(n)))
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 3);
        assert_eq!(err.cloud_code(), Some("http_503"));

        let mut calls = 0;
        let ok = with_retries("gcp", &policy, |n| {
            calls += 1;
            std::future::ready(if n < 2 { Err(transient(n)) } else { Ok(n) })
        })
        .await
        .unwrap();
        assert_eq!((ok, calls), (2, 2));
    }

    #[tokio::test]
    async fn refusals_are_not_retried() {
        let mut calls = 0;
        let err = with_retries::<(), _, _>("azure", &CallPolicy::default(), |_| {
            calls += 1;
            std::future::ready(Err(AttemptError::fatal(refused(
                "azure",
                "AADSTS70021",
                None,
                "no match",
            ))))
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 1);
        assert_eq!(err.reason_code(), "cloud_refused");
    }

    /// Stops a cloud from parking Legate's request with a huge `Retry-After`.
    #[tokio::test]
    async fn a_retry_after_beyond_the_cap_ends_the_retries() {
        let mut calls = 0;
        let err = with_retries::<(), _, _>("aws", &CallPolicy::default(), |_| {
            calls += 1;
            std::future::ready(Err(AttemptError {
                error: unavailable("aws", "Throttling", None, "slow down"),
                retry: true,
                retry_after: Some(Duration::from_secs(3600)),
            }))
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 1);
        assert_eq!(err.cloud_code(), Some("Throttling"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_whole_call_deadline_bounds_a_hanging_attempt() {
        let policy = CallPolicy::with_timeout_secs(2);
        let err = with_retries::<(), _, _>("aws", &policy, |_| std::future::pending())
            .await
            .unwrap_err();
        assert_eq!(err.cloud_code(), Some("timeout"));
        assert!(err.is_transient());
    }
}
