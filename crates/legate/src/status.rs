//! `legate status`: what the operator listener's `/status` says, for a human.
//!
//! The public `/readyz` answers ready or not, nothing else; the trust list, fetch errors,
//! the policy set's hash and the server's counters are on the operator listener
//! (`[server] operator_listen`), which this command reads. Exit status 0 when ready, 1
//! when not (or unreachable).

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use legate_core::Clock as _;
use legate_core::text::escape_untrusted;
use legate_server::clock::SystemClock;
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The operator listener's base URL.
    #[arg(
        long,
        env = "LEGATE_OPERATOR_URL",
        default_value = "http://127.0.0.1:9464"
    )]
    url: String,
    /// Print the JSON document as received.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let status = runtime.block_on(fetch(&args.url))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render(&status, SystemClock.now()));
    }
    Ok(if at(&status, "ready").as_bool() == Some(true) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn fetch(url: &str) -> anyhow::Result<Value> {
    let url = format!("{}/status", url.trim_end_matches('/'));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let resp = http.get(&url).send().await.with_context(|| {
        format!("is `legate serve` running with its operator listener at {url}?")
    })?;
    anyhow::ensure!(
        resp.status().is_success(),
        "{url} answered HTTP {}",
        resp.status().as_u16()
    );
    resp.json()
        .await
        .with_context(|| format!("{url} did not answer JSON"))
}

/// `value[key]`, `Null` when absent.
fn at<'v>(value: &'v Value, key: &str) -> &'v Value {
    value.get(key).unwrap_or(&Value::Null)
}

/// The status document as text. Strings from the server are escaped: fetch errors can
/// quote upstream answers.
fn render(status: &Value, now: i64) -> String {
    let text = |v: &Value| escape_untrusted(v.as_str().unwrap_or("?"));
    let num = |v: &Value| v.as_u64().map_or_else(|| "?".to_owned(), |n| n.to_string());
    let mut out = String::new();
    let ready = if at(status, "ready").as_bool() == Some(true) {
        "ready"
    } else {
        "NOT READY"
    };
    let _ = writeln!(out, "legate {}: {ready}", text(at(status, "version")));
    let policy = at(status, "policy");
    let _ = writeln!(
        out,
        "policies  {} (set sha256 {})",
        num(at(policy, "count")),
        text(at(policy, "set_sha256"))
    );
    if policy.get("loaded_at_rfc3339").is_some() {
        let _ = writeln!(
            out,
            "          loaded {} from {}; {} reload(s), {} refused",
            text(at(policy, "loaded_at_rfc3339")),
            text(at(policy, "source")),
            num(at(policy, "reloads")),
            num(at(policy, "reload_failures")),
        );
    }
    let failure = at(policy, "last_failure");
    if !failure.is_null() {
        let _ = writeln!(
            out,
            "          last refused reload {}: {}",
            text(at(failure, "at_rfc3339")),
            text(at(failure, "message")),
        );
    }
    for shadow in at(policy, "shadow").as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  shadow {}: {} would allow, {} would deny, {} erred, {} would change the answer",
            text(at(shadow, "policy_id")),
            num(at(shadow, "would_allow")),
            num(at(shadow, "would_deny")),
            num(at(shadow, "erred")),
            num(at(shadow, "would_change")),
        );
    }
    let issuers = at(status, "issuers")
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let _ = writeln!(out, "issuers   {}", issuers.len());
    for issuer in issuers {
        let fetched = match at(issuer, "fetched_at").as_i64() {
            Some(at) => format!("fetched {}s ago", now.saturating_sub(at)),
            None if at(issuer, "attempted").as_bool() == Some(true) => "no keys yet".to_owned(),
            None => "not fetched yet".to_owned(),
        };
        let _ = writeln!(
            out,
            "  {}  {}  {} key(s), {fetched}",
            text(at(issuer, "name")),
            text(at(issuer, "issuer")),
            num(at(issuer, "keys")),
        );
        if !at(issuer, "last_error").is_null() {
            let _ = writeln!(out, "      last error: {}", text(at(issuer, "last_error")));
        }
        for ignored in at(issuer, "ignored_keys").as_array().into_iter().flatten() {
            let _ = writeln!(out, "      ignored: {}", text(ignored));
        }
    }
    let server = at(status, "server");
    if server.is_object() {
        let _ = writeln!(
            out,
            "server    {}/{} connections, {}/{} requests in flight",
            num(at(server, "connections_open")),
            num(at(server, "max_connections")),
            num(at(server, "requests_in_flight")),
            num(at(server, "max_in_flight")),
        );
        let _ = writeln!(
            out,
            "          since start: {} accepted, {} shed, {} request timeouts, {} head timeouts, {} body timeouts, {} accept errors",
            num(at(server, "connections_accepted")),
            num(at(server, "requests_shed")),
            num(at(server, "request_timeouts")),
            num(at(server, "head_timeouts")),
            num(at(server, "body_timeouts")),
            num(at(server, "accept_errors")),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn render_shows_issuers_errors_policy_hash_and_counters() {
        let status = json!({
            "version": "0.1.0",
            "ready": true,
            "issuers": [{
                "name": "ci", "issuer": "https://issuer.example", "keys": 2,
                "fetched_at": 1000, "attempted": true,
                "last_error": "http 503", "ignored_keys": ["kid `x`: private key material"],
            }],
            "policy": {
                "count": 3, "set_sha256": "ab12", "loaded_at": 990,
                "loaded_at_rfc3339": "1970-01-01T00:16:30Z", "source": "dir",
                "reloads": 4, "reload_failures": 1,
                "last_failure": {"at": 995, "at_rfc3339": "1970-01-01T00:16:35Z",
                                 "message": "cannot parse `a.cedar`: line 3, column 1: unexpected token"},
                "shadow": [{"policy_id": "watch", "would_allow": 0, "would_deny": 7,
                            "erred": 1, "would_change": 7}],
            },
            "server": {
                "connections_open": 1, "max_connections": 4096,
                "requests_in_flight": 0, "max_in_flight": 1024,
                "connections_accepted": 7, "requests_shed": 2, "request_timeouts": 0,
                "head_timeouts": 5, "body_timeouts": 1, "accept_errors": 0,
            },
            "audit": null,
        });
        let text = render(&status, 1030);
        for expected in [
            "legate 0.1.0: ready",
            "policies  3 (set sha256 ab12)",
            "loaded 1970-01-01T00:16:30Z from dir; 4 reload(s), 1 refused",
            "last refused reload 1970-01-01T00:16:35Z: cannot parse `a.cedar`: line 3, column 1: unexpected token",
            "shadow watch: 0 would allow, 7 would deny, 1 erred, 7 would change the answer",
            "ci  https://issuer.example  2 key(s), fetched 30s ago",
            "last error: http 503",
            "ignored: kid `x`: private key material",
            "1/4096 connections, 0/1024 requests in flight",
            "2 shed",
            "5 head timeouts",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    /// Stops a hostile upstream's error text (quoted in `last_error`) from driving the
    /// operator's terminal with escape sequences.
    #[test]
    fn render_escapes_server_strings() {
        let status = json!({
            "ready": false,
            "issuers": [{"name": "ci", "issuer": "https://i", "keys": 0, "attempted": true,
                         "last_error": "bad\u{1b}[2J\u{7}", "ignored_keys": []}],
        });
        let text = render(&status, 0);
        assert!(text.contains("NOT READY"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(!text.contains('\u{7}'), "{text:?}");
    }
}
