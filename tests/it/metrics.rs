//! `GET /metrics` on the operator listener: the Prometheus text format 0.0.4, parsed
//! strictly here and checked by Debian's `promtool` (package `prometheus`, which
//! `tests/run` installs).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: failing loudly is the point"
)]

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::harness::{Fixture, SUBJECT, TARGET, TRUST};

/// One sample line: the metric name, its labels, its value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn is_name(s: &str, colon: bool) -> bool {
    let mut bytes = s.bytes();
    let first_ok = |b: u8| b.is_ascii_alphabetic() || b == b'_' || (colon && b == b':');
    bytes.next().is_some_and(first_ok) && bytes.all(|b| first_ok(b) || b.is_ascii_digit())
}

/// Parses the text exposition format 0.0.4 strictly: every line is a `# HELP`, a
/// `# TYPE` (of a known type, before the family's samples, once) or a sample with a
/// valid name, well-formed quoted labels and a float value. Panics on anything else.
fn parse_exposition(text: &str) -> Vec<Sample> {
    assert!(
        text.ends_with('\n'),
        "the last line must end with a newline"
    );
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        assert!(!line.is_empty(), "empty line in {text}");
        if let Some(rest) = line.strip_prefix("# ") {
            let (kind, rest) = rest.split_once(' ').expect(line);
            let (name, arg) = rest.split_once(' ').expect(line);
            assert!(is_name(name, true), "bad metric name in {line}");
            match kind {
                "HELP" => assert!(!arg.is_empty(), "{line}"),
                "TYPE" => {
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg),
                        "{line}"
                    );
                    assert!(
                        typed.insert(name.to_owned(), arg.to_owned()).is_none(),
                        "TYPE twice: {line}"
                    );
                    assert!(
                        !samples.iter().any(|s: &Sample| s.name.starts_with(name)),
                        "TYPE after samples: {line}"
                    );
                }
                _ => panic!("unexpected comment {line}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect(line);
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').expect(line))),
        };
        assert!(is_name(name, true), "bad metric name in {line}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| typed.get(*base).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(name);
        assert!(typed.contains_key(family), "sample without TYPE: {line}");
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    samples
}

/// `a="x",b="y"` with `\\`, `\"` and `\n` escapes.
fn parse_labels(mut rest: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").expect(rest);
        assert!(is_name(name, false), "bad label name `{name}`");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("unterminated label value") {
                (i, '"') => break i,
                (_, '\\') => match chars.next().expect("dangling escape").1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    other => panic!("bad escape \\{other}"),
                },
                (_, c) => value.push(c),
            }
        };
        assert!(
            labels.insert(name.to_owned(), value).is_none(),
            "label twice"
        );
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    labels
}

/// The value of the one sample of `name` with exactly `labels` (0 when absent).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && s.labels == want)
        .collect();
    assert!(found.len() <= 1, "duplicate series {name} {want:?}");
    found.first().map_or(0.0, |s| s.value)
}

/// Runs `promtool check metrics` on `text`; its complaints fail the test.
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (Debian package `prometheus`; tests/run installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics refused /metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The counters move as exchanges happen, in a format Prometheus accepts; and an
/// attacker cannot grow the series without bound or read identities through the
/// metrics: a made-up audience becomes `target="unknown"`, and no subject, token or
/// claim appears in the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_allowed_and_denied_exchanges_with_bounded_labels() {
    let f = Fixture::start().await;
    let before = f.legate.operator.get("/metrics").await;
    assert_eq!(before.status, 200, "{}", before.text);
    let before = parse_exposition(&before.text);

    let allowed = f.token(&json!({}));
    let reply = f.legate.exchange_reply(&allowed, TARGET, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let minted = reply.json["access_token"].as_str().unwrap().to_owned();
    let denied = f.token(&json!({"repository_id": "43"}));
    let (status, _) = f.legate.exchange(&denied, TARGET, None).await;
    assert_eq!(status, 400);
    let made_up = "made-up-audience-zq";
    let (status, _) = f.legate.exchange(&f.token(&json!({})), made_up, None).await;
    assert_eq!(status, 400);

    let reply = f.legate.operator.get("/metrics").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4")
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let text = &reply.text;
    let after = parse_exposition(text);
    let exchanges = |samples: &[Sample], decision, reason, trust, target| {
        value(
            samples,
            "legate_exchanges_total",
            &[
                ("decision", decision),
                ("reason", reason),
                ("trust", trust),
                ("target", target),
            ],
        )
    };
    for (decision, reason, trust, target) in [
        ("allow", "permitted", TRUST, TARGET),
        ("deny", "no_permit", TRUST, TARGET),
        ("error", "unknown_target", "unknown", "unknown"),
    ] {
        assert_eq!(
            exchanges(&after, decision, reason, trust, target)
                - exchanges(&before, decision, reason, trust, target),
            1.0,
            "{decision} {reason}: {text}"
        );
    }
    let count = |s: &[Sample], target| {
        value(
            s,
            "legate_exchange_duration_seconds_count",
            &[("target", target)],
        )
    };
    assert_eq!(
        count(&after, TARGET) - count(&before, TARGET),
        2.0,
        "{text}"
    );
    assert_eq!(
        value(&after, "legate_trust_keys", &[("trust", TRUST)]),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(&after, "legate_trust_fetch_failing", &[("trust", TRUST)]),
        0.0,
        "{text}"
    );
    for name in [
        "legate_trust_keys_age_seconds",
        "legate_audit_queue_depth",
        "legate_audit_queue_capacity",
        "legate_credential_cache_hits_total",
        "legate_credential_cache_misses_total",
        "legate_replay_cache_entries",
    ] {
        assert!(
            after.iter().any(|s| s.name == name),
            "{name} missing: {text}"
        );
    }
    for secret in [
        SUBJECT,
        "acme",
        made_up,
        allowed.as_str(),
        denied.as_str(),
        minted.as_str(),
    ] {
        assert!(!text.contains(secret), "`{secret}` in /metrics:\n{text}");
    }
    promtool_check(text);
}

/// The metrics are an operator's view: the public listener does not serve them.
#[tokio::test]
async fn metrics_are_not_served_on_the_public_listener() {
    let f = Fixture::start().await;
    let reply = f.legate.client.get("/metrics").await;
    assert_eq!(reply.status, 404, "{}", reply.text);
}
