//! `aws-sts`: AWS outbound identity federation, `sts:GetWebIdentityToken`.
//!
//! The aws-sdk-sts in the lock file has the operation, but Legate's build of the SDK has
//! no HTTP transport and no credential chain (aws-config is not a dependency), so the
//! call is made here directly: the Query protocol (`Action=GetWebIdentityToken`,
//! `Version=2011-06-15`, `Audience.member.1`, `SigningAlgorithm=RS256` — RSA because
//! Entra accepts nothing else), signed with SigV4 (service `sts`).
//!
//! Credentials ([`credentials`]): `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional
//! `AWS_SESSION_TOKEN` (Lambda, `aws configure export-credentials`); else the ECS / EKS
//! Pod Identity container endpoint; else EC2 IMDSv2;
//! region `AWS_REGION` or `AWS_DEFAULT_REGION` (default `us-east-1`); endpoint
//! `AWS_ENDPOINT_URL_STS`, else `AWS_ENDPOINT_URL`, else `https://sts.{region}.amazonaws.com`.

use std::fmt::Write as _;
use std::time::Duration;

use aws_lc_rs::{digest, hmac};
use legate_core::Secret;
use legate_core::text::escape_untrusted;

use super::{MAX_SOURCE_BYTES, Source, SourceError, read_bounded};

const SERVICE: &str = "sts";

pub(super) async fn web_identity_token(source: &Source) -> Result<String, SourceError> {
    let env = &source.env;
    let creds = credentials(source).await?;
    let access_key = creds.access_key.as_str();
    let secret_key = creds.secret_key.expose().as_str();
    let session_token = creds.session_token.as_ref().map(|t| t.expose().as_str());
    let region = env
        .get("AWS_REGION")
        .or_else(|| env.get("AWS_DEFAULT_REGION"))
        .unwrap_or("us-east-1");
    let endpoint = env
        .get("AWS_ENDPOINT_URL_STS")
        .or_else(|| env.get("AWS_ENDPOINT_URL"))
        .map_or_else(
            || format!("https://sts.{region}.amazonaws.com"),
            str::to_owned,
        );
    let url = reqwest::Url::parse(&endpoint)
        .map_err(|e| source.failed(format!("the STS endpoint is not a URL: {e}")))?;
    let host = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => return Err(source.failed("the STS endpoint has no host".to_owned())),
    };
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "GetWebIdentityToken")
        .append_pair("Version", "2011-06-15")
        .append_pair("Audience.member.1", source.audience())
        .append_pair("SigningAlgorithm", "RS256")
        .finish();
    let now = now_unix();
    let signed = sign(&SigningInput {
        access_key,
        secret_key,
        session_token,
        region,
        host: &host,
        path: if url.path().is_empty() {
            "/"
        } else {
            url.path()
        },
        body: &body,
        now,
    });
    let mut request = source
        .http
        .post(url)
        .header("Content-Type", CONTENT_TYPE)
        .header("X-Amz-Date", &signed.amz_date)
        .header("Authorization", &signed.authorization);
    if let Some(token) = session_token {
        request = request.header("X-Amz-Security-Token", token);
    }
    let response = request
        .body(body)
        .send()
        .await
        .map_err(|e| source.failed(format!("request failed: {}", e.without_url())))?;
    let status = response.status();
    let answer = read_bounded(response, MAX_SOURCE_BYTES)
        .await
        .map_err(|e| source.failed(e))?;
    let answer = String::from_utf8_lossy(&answer);
    if !status.is_success() {
        let code = element(&answer, "Code").unwrap_or("?");
        let message = element(&answer, "Message").unwrap_or("");
        return Err(source.failed(format!(
            "STS answered HTTP {}: {}: {}",
            status.as_u16(),
            escape_untrusted(code),
            escape_untrusted(message)
        )));
    }
    element(&answer, "WebIdentityToken")
        .map(str::to_owned)
        .ok_or_else(|| source.failed("the STS answer has no `WebIdentityToken`".to_owned()))
}

/// AWS credentials found by [`credentials`].
struct AwsCredentials {
    access_key: String,
    secret_key: Secret<String>,
    session_token: Option<Secret<String>>,
}

/// The first credentials of: the environment variables; the ECS / EKS Pod Identity
/// container endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI` or `…_RELATIVE_URI`, with
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` or `…_TOKEN`); EC2 IMDSv2
/// (`AWS_EC2_METADATA_SERVICE_ENDPOINT`, default `http://169.254.169.254`; skipped when
/// `AWS_EC2_METADATA_DISABLED=true`). Profiles and SSO are not read.
async fn credentials(source: &Source) -> Result<AwsCredentials, SourceError> {
    let env = &source.env;
    if let Some(access_key) = env.get("AWS_ACCESS_KEY_ID") {
        let secret_key = source.var("AWS_SECRET_ACCESS_KEY")?;
        return Ok(AwsCredentials {
            access_key: access_key.to_owned(),
            secret_key: Secret::new(secret_key.to_owned()),
            session_token: env
                .get("AWS_SESSION_TOKEN")
                .map(|t| Secret::new(t.to_owned())),
        });
    }
    let container = env
        .get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .map(str::to_owned)
        .or_else(|| {
            env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
                .map(|rel| format!("http://169.254.170.2{rel}"))
        });
    if let Some(uri) = container {
        return container_credentials(source, &uri).await;
    }
    if env.get("AWS_EC2_METADATA_DISABLED") == Some("true") {
        return Err(source.failed(
            "no AWS credentials: no AWS_ACCESS_KEY_ID, no container credentials, IMDS disabled"
                .to_owned(),
        ));
    }
    imds_credentials(source).await
}

/// How long one call to a local credentials endpoint may take (off AWS, IMDS does not
/// answer at all).
const LOCAL_ENDPOINT_TIMEOUT: Duration = Duration::from_secs(5);

async fn container_credentials(source: &Source, uri: &str) -> Result<AwsCredentials, SourceError> {
    let url = reqwest::Url::parse(uri)
        .map_err(|e| source.failed(format!("the container credentials URI is not a URL: {e}")))?;
    // SECURITY: as the AWS SDKs do, plain HTTP only to the container endpoints or
    // loopback: the request carries the authorization token and gets credentials back.
    let host = url.host_str().unwrap_or("");
    let host_ok = host == "localhost"
        || match host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
        {
            Ok(std::net::IpAddr::V4(ip)) => {
                ip.is_loopback()
                    || ip == std::net::Ipv4Addr::new(169, 254, 170, 2)
                    || ip == std::net::Ipv4Addr::new(169, 254, 170, 23)
            }
            Ok(std::net::IpAddr::V6(ip)) => {
                ip.is_loopback()
                    || ip == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23)
            }
            Err(_) => false,
        };
    if url.scheme() != "https" && !(url.scheme() == "http" && host_ok) {
        return Err(source.failed(
            "the container credentials URI must be https, loopback or the ECS/EKS link-local address"
                .to_owned(),
        ));
    }
    let env = &source.env;
    let auth = match env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
        Some(path) => Some(
            tokio::fs::read_to_string(path)
                .await
                .map_err(|e| {
                    source.failed(format!(
                        "cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: {e}"
                    ))
                })?
                .trim()
                .to_owned(),
        ),
        None => env
            .get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
            .map(str::to_owned),
    };
    let mut request = source.http.get(url).timeout(LOCAL_ENDPOINT_TIMEOUT);
    if let Some(auth) = auth {
        if auth.contains(['\r', '\n']) {
            return Err(
                source.failed("the container authorization token holds a line break".to_owned())
            );
        }
        request = request.header("Authorization", auth);
    }
    let body = source.get(request).await?;
    parse_credentials(source, &body, "container credentials endpoint")
}

async fn imds_credentials(source: &Source) -> Result<AwsCredentials, SourceError> {
    let base = source
        .env
        .get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .unwrap_or("http://169.254.169.254")
        .trim_end_matches('/')
        .to_owned();
    let imds = |what: &str, e: SourceError| match e {
        SourceError::Failed { reason, .. } => source.failed(format!(
            "no AWS credentials in the environment, and IMDS {what}: {reason}"
        )),
        other => other,
    };
    let session = source
        .get(
            source
                .http
                .put(format!("{base}/latest/api/token"))
                .header("X-aws-ec2-metadata-token-ttl-seconds", "60")
                .timeout(LOCAL_ENDPOINT_TIMEOUT),
        )
        .await
        .map_err(|e| imds("gave no session token", e))?;
    let session = String::from_utf8(session)
        .map_err(|_| source.failed("the IMDS session token is not UTF-8".to_owned()))?;
    let listing = format!("{base}/latest/meta-data/iam/security-credentials/");
    let get = |url: String| {
        source
            .http
            .get(url)
            .header("X-aws-ec2-metadata-token", session.trim())
            .timeout(LOCAL_ENDPOINT_TIMEOUT)
    };
    let roles = source
        .get(get(listing.clone()))
        .await
        .map_err(|e| imds("lists no role", e))?;
    let roles = String::from_utf8_lossy(&roles);
    let role = roles
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or_else(|| source.failed("IMDS lists no instance role".to_owned()))?;
    if !role
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
    {
        return Err(source.failed("IMDS names a role that is not a role name".to_owned()));
    }
    let body = source
        .get(get(format!("{listing}{role}")))
        .await
        .map_err(|e| imds("gave no credentials", e))?;
    parse_credentials(source, &body, "IMDS")
}

/// The ECS / IMDS credentials document: `AccessKeyId`, `SecretAccessKey`, `Token`.
fn parse_credentials(
    source: &Source,
    body: &[u8],
    from: &str,
) -> Result<AwsCredentials, SourceError> {
    let doc: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| source.failed(format!("the {from} answer is not JSON")))?;
    let member = |name: &str| {
        doc.get(name)
            .and_then(serde_json::Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| source.failed(format!("the {from} answer has no `{name}`")))
    };
    Ok(AwsCredentials {
        access_key: member("AccessKeyId")?,
        secret_key: Secret::new(member("SecretAccessKey")?),
        session_token: Some(Secret::new(member("Token")?)),
    })
}

const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";

#[expect(
    clippy::disallowed_methods,
    reason = "SigV4 signs the wall-clock time; this I/O edge has no injected clock"
)]
fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The text of the first `<name>…</name>` in an XML answer.
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)?.checked_add(open.len())?;
    let rest = xml.get(start..)?;
    let end = rest.find(&close)?;
    rest.get(..end).map(str::trim)
}

struct SigningInput<'a> {
    access_key: &'a str,
    secret_key: &'a str,
    session_token: Option<&'a str>,
    region: &'a str,
    host: &'a str,
    path: &'a str,
    body: &'a str,
    now: i64,
}

struct Signed {
    amz_date: String,
    authorization: String,
}

/// SigV4 for a POST with a form body and no query string.
fn sign(input: &SigningInput<'_>) -> Signed {
    let (date, amz_date) = timestamps(input.now);
    let mut headers = vec![
        ("content-type", CONTENT_TYPE.to_owned()),
        ("host", input.host.to_owned()),
        ("x-amz-date", amz_date.clone()),
    ];
    if let Some(token) = input.session_token {
        headers.push(("x-amz-security-token", token.to_owned()));
    }
    let signed_headers = headers
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(";");
    let mut canonical = format!("POST\n{}\n\n", input.path);
    for (name, value) in &headers {
        let _ = writeln!(canonical, "{name}:{}", value.trim());
    }
    let _ = write!(
        canonical,
        "\n{signed_headers}\n{}",
        sha256_hex(input.body.as_bytes())
    );
    let scope = format!("{date}/{}/{SERVICE}/aws4_request", input.region);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let mut key = hmac_sha256(format!("AWS4{}", input.secret_key).as_bytes(), &date);
    for part in [input.region, SERVICE, "aws4_request"] {
        key = hmac_sha256(&key, part);
    }
    let signature = hex::encode(hmac_sha256(&key, &to_sign));
    Signed {
        authorization: format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            input.access_key
        ),
        amz_date,
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&key, data.as_bytes()).as_ref().to_vec()
}

/// `YYYYMMDD` and `YYYYMMDDTHHMMSSZ` of a Unix time (UTC).
fn timestamps(now: i64) -> (String, String) {
    let days = now.div_euclid(86_400);
    let secs = now.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let date = format!("{year:04}{month:02}{day:02}");
    let time = format!(
        "{date}T{:02}{:02}{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    );
    (date, time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(
            timestamps(1_767_225_600),
            ("20260101".to_owned(), "20260101T000000Z".to_owned())
        );
        assert_eq!(
            timestamps(951_825_599),
            ("20000229".to_owned(), "20000229T115959Z".to_owned())
        );
    }

    /// Pins the signing to an independent implementation: botocore's `SigV4Auth`
    /// signed this very request (service `sts`, 2026-11-29T23:38:52Z) to this value.
    #[test]
    fn signature_matches_botocore() {
        let body = "Action=GetWebIdentityToken&Version=2011-06-15&Audience.member.1=legate&SigningAlgorithm=RS256";
        let signed = sign(&SigningInput {
            access_key: "AKIDEXAMPLE",
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token: Some("session-tok"),
            region: "us-east-1",
            host: "127.0.0.1:8080",
            path: "/",
            body,
            now: 1_795_995_532,
        });
        assert_eq!(signed.amz_date, "20261129T233852Z");
        assert_eq!(
            signed.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261129/us-east-1/sts/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=0bc1b0d797412e8d5e24c17c5f59fc330b6f18158600b5ee1cc1e72162174dcb"
        );
    }

    #[test]
    fn element_finds_the_token_and_error_members() {
        let xml = "<R><GetWebIdentityTokenResult><WebIdentityToken>a.b.c</WebIdentityToken></GetWebIdentityTokenResult></R>";
        assert_eq!(element(xml, "WebIdentityToken"), Some("a.b.c"));
        assert_eq!(element(xml, "Code"), None);
    }
}
