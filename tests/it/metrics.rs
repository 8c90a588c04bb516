//! `GET /metrics` on the operator listener: the Prometheus text format 0.0.4, parsed
//! strictly here and checked by Debian's `promtool` (package `prometheus`, which
//! `tests/run` installs); OpenMetrics 1.0 when the scraper asks for it, checked by
//! prometheus_client's reference parser (`tests/peers/parse_openmetrics.py`). The
//! metrics move as exchanges, key fetches and cloud calls happen.

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

use legate_fakes::Fault;
use legate_testkit::testkeys::TestKey;
use serde_json::{Value, json};

use crate::clouds::{AWS_TARGET, Clouds};
use crate::harness::{Client, Fixture, SUBJECT, TARGET, TRUST, random_id};
use crate::issuer::Mode;
use crate::peers::parse_openmetrics;

/// What Prometheus 2.x sends when it scrapes (OpenMetrics preferred).
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Legate's minimum gap between two fetches of one issuer's keys, plus one.
const PAST_REFRESH_GAP: i64 = 31;

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
        Some("text/plain; version=0.0.4; charset=utf-8")
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
    // Every exchange is timed per step it reached: the unknown audience stops in
    // `parse`, the denied token in `policy`, the allowed one goes all the way; each
    // is audited.
    for (step, reached) in [
        ("parse", 3.0),
        ("verify", 2.0),
        ("policy", 2.0),
        ("ratelimit", 1.0),
        ("replay", 1.0),
        ("issue", 1.0),
        ("audit", 3.0),
    ] {
        let count = |s: &[Sample]| {
            value(
                s,
                "legate_exchange_step_duration_seconds_count",
                &[("step", step)],
            )
        };
        assert_eq!(count(&after) - count(&before), reached, "{step}: {text}");
    }
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

/// `GET /metrics` as a scraper sending `accept`.
async fn scrape(operator: &Client, accept: &str) -> crate::harness::Reply {
    let reply = operator
        .get_with_headers("/metrics", &[("accept", accept)])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply
}

/// The text format, parsed strictly and checked by promtool.
async fn scrape_text(operator: &Client) -> Vec<Sample> {
    let reply = operator.get("/metrics").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    promtool_check(&reply.text);
    parse_exposition(&reply.text)
}

/// A key fetch is counted per trust whatever its outcome, a failure by its reason, and
/// each rotation by the `kid`s it added and removed: the signals of an issuer rotating
/// keys unannounced or its JWKS endpoint failing.
#[tokio::test]
async fn jwks_fetches_failures_and_kid_churn_are_counted_per_trust() {
    let f = Fixture::start().await;
    let counter = |s: &[Sample], name: &str| value(s, name, &[("trust", TRUST)]);
    let start = scrape_text(&f.legate.operator).await;
    assert_eq!(counter(&start, "legate_jwks_fetches_total"), 1.0, "warm-up");
    assert_eq!(counter(&start, "legate_jwks_kids_added_total"), 0.0);

    // Rotation in: key "b" joins "a"; a token signed by "b" makes one fetch.
    let key_b = TestKey::es256_b("key-b");
    f.issuer.publish(&[&f.key, &key_b]);
    f.legate.clock.advance(PAST_REFRESH_GAP);
    let (status, body) = f
        .legate
        .exchange(&key_b.token(&f.claims(&json!({}))), TARGET, None)
        .await;
    assert_eq!(status, 200, "{body}");
    let rotated = scrape_text(&f.legate.operator).await;
    assert_eq!(counter(&rotated, "legate_jwks_fetches_total"), 2.0);
    assert_eq!(counter(&rotated, "legate_jwks_kids_added_total"), 1.0);
    assert_eq!(counter(&rotated, "legate_jwks_kids_removed_total"), 0.0);
    assert_eq!(counter(&rotated, "legate_trust_keys"), 2.0);

    // Rotation out: "a" is withdrawn; an unknown `kid` makes the next fetch.
    f.issuer.publish(&[&key_b]);
    f.legate.clock.advance(PAST_REFRESH_GAP);
    let mut stranger = f.key.clone();
    stranger.kid = random_id();
    let (status, _) = f
        .legate
        .exchange(&stranger.token(&f.claims(&json!({}))), TARGET, None)
        .await;
    assert_eq!(status, 400);
    let withdrawn = scrape_text(&f.legate.operator).await;
    assert_eq!(counter(&withdrawn, "legate_jwks_fetches_total"), 3.0);
    assert_eq!(counter(&withdrawn, "legate_jwks_kids_removed_total"), 1.0);

    // The JWKS endpoint fails: counted by reason; the keys stay.
    f.issuer.set_jwks_mode(Mode::Unavailable);
    f.legate.clock.advance(PAST_REFRESH_GAP);
    let (status, _) = f
        .legate
        .exchange(&stranger.token(&f.claims(&json!({}))), TARGET, None)
        .await;
    assert_eq!(status, 400);
    let failing = scrape_text(&f.legate.operator).await;
    assert_eq!(counter(&failing, "legate_jwks_fetches_total"), 4.0);
    assert_eq!(
        value(
            &failing,
            "legate_jwks_fetch_failures_total",
            &[("trust", TRUST), ("reason", "jwks_http_status")]
        ),
        1.0
    );
    assert_eq!(counter(&failing, "legate_trust_fetch_failing"), 1.0);
    assert_eq!(counter(&failing, "legate_trust_keys"), 1.0);
}

/// Cloud calls are timed per target and kind below the credential cache (a cached
/// credential calls no cloud, and counts as a hit), and failed calls are counted by
/// reason; the cloud's own error text never becomes a label.
#[tokio::test]
async fn cloud_calls_cache_hits_and_cloud_errors_are_counted() {
    let c = Clouds::start().await;
    let operator = &c.legate.operator;
    let before = scrape_text(operator).await;
    let aws = [("target", AWS_TARGET), ("kind", "aws")];
    let calls = |s: &[Sample]| value(s, "legate_cloud_call_duration_seconds_count", &aws);
    let plain = |s: &[Sample], name: &str| value(s, name, &[]);
    assert_eq!(calls(&before), 0.0);

    for _ in 0..2 {
        let (status, body) = c.legate.exchange(&c.token(), AWS_TARGET, Some(900)).await;
        assert_eq!(status, 200, "{body}");
    }
    let served = scrape_text(operator).await;
    assert_eq!(calls(&served), 1.0, "the second exchange was a cache hit");
    assert_eq!(c.fakes.aws.stats().requests, 1);
    assert_eq!(plain(&served, "legate_credential_cache_hits_total"), 1.0);
    assert_eq!(plain(&served, "legate_credential_cache_misses_total"), 1.0);
    assert_eq!(
        value(
            &served,
            "legate_exchange_step_duration_seconds_count",
            &[("step", "issue")]
        ) - value(
            &before,
            "legate_exchange_step_duration_seconds_count",
            &[("step", "issue")]
        ),
        2.0
    );

    // Another workload (not cached) meets a cloud answering 5xx to every attempt.
    c.fakes
        .aws
        .set_fault(Fault::ServerErrorThen(3))
        .await
        .unwrap();
    let (status, body) = c
        .legate
        .exchange(
            &c.token_of("repo:octo-org/other:ref:refs/heads/main"),
            AWS_TARGET,
            None,
        )
        .await;
    assert_eq!(status, 503, "{body}");
    let failed = scrape_text(operator).await;
    assert_eq!(calls(&failed), 2.0, "one call, its retries inside it");
    assert_eq!(
        value(
            &failed,
            "legate_cloud_call_errors_total",
            &[
                ("target", AWS_TARGET),
                ("kind", "aws"),
                ("reason", "cloud_unavailable")
            ]
        ),
        1.0
    );
    assert!(
        !failed
            .iter()
            .any(|s| s.labels.values().any(|v| v.contains("ServiceUnavailable"))),
        "a cloud's code became a label"
    );

    // The same state in OpenMetrics, as the reference parser reads it.
    let reply = scrape(operator, PROMETHEUS_ACCEPT).await;
    let parsed = parse_openmetrics(&reply.text)
        .await
        .unwrap_or_else(|e| panic!("the reference parser refused: {e}\n{}", reply.text));
    let family = &parsed["families"]["legate_cloud_call_duration_seconds"];
    assert_eq!(family["type"], "histogram", "{parsed}");
    assert_eq!(family["unit"], "seconds", "{parsed}");
    let count = om_value(
        family,
        "legate_cloud_call_duration_seconds_count",
        &json!({"target": AWS_TARGET, "kind": "aws"}),
    );
    assert_eq!(count, 2.0, "{parsed}");
}

/// The value of the one OpenMetrics sample of `family` named `name` with `labels`.
fn om_value(family: &Value, name: &str, labels: &Value) -> f64 {
    let found: Vec<f64> = family["samples"]
        .as_array()
        .unwrap_or_else(|| panic!("no samples in {family}"))
        .iter()
        .filter(|s| s[0] == name && &s[1] == labels)
        .map(|s| s[2].as_f64().unwrap())
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels} in {family}");
    found[0]
}

/// A scraper that asks for OpenMetrics (as Prometheus does) gets OpenMetrics 1.0 that
/// the reference parser accepts, with counters named as the format requires; one that
/// refuses it, or does not ask, gets the text format.
#[tokio::test]
async fn openmetrics_is_served_when_asked_for_and_the_reference_parser_accepts_it() {
    let f = Fixture::start().await;
    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200, "{body}");

    let reply = scrape(&f.legate.operator, PROMETHEUS_ACCEPT).await;
    assert_eq!(
        reply.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert_eq!(reply.header("vary"), Some("accept"));
    assert!(reply.text.ends_with("# EOF\n"), "{}", reply.text);
    let parsed = parse_openmetrics(&reply.text)
        .await
        .unwrap_or_else(|e| panic!("the reference parser refused: {e}\n{}", reply.text));
    let families = &parsed["families"];
    let exchanges = &families["legate_exchanges"];
    assert_eq!(exchanges["type"], "counter", "{parsed}");
    let allowed = om_value(
        exchanges,
        "legate_exchanges_total",
        &json!({"decision": "allow", "reason": "permitted", "trust": TRUST, "target": TARGET}),
    );
    assert_eq!(allowed, 1.0);
    let steps = &families["legate_exchange_step_duration_seconds"];
    assert_eq!(steps["type"], "histogram", "{parsed}");
    assert_eq!(steps["unit"], "seconds", "{parsed}");
    let issue = om_value(
        steps,
        "legate_exchange_step_duration_seconds_count",
        &json!({"step": "issue"}),
    );
    assert_eq!(issue, 1.0);
    for (family, kind) in [
        ("legate_jwks_fetches", "counter"),
        ("legate_trust_keys", "gauge"),
        ("legate_state_backend_errors", "counter"),
        ("legate_credential_cache_hits", "counter"),
    ] {
        assert_eq!(families[family]["type"], kind, "{family}: {parsed}");
    }

    for accept in [
        "application/openmetrics-text;q=0, */*",
        "text/plain;version=0.0.4",
        "application/openmetrics-text;version=0.0.1",
        "*/*",
    ] {
        let reply = scrape(&f.legate.operator, accept).await;
        assert_eq!(
            reply.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8"),
            "{accept}"
        );
        promtool_check(&reply.text);
    }
}

/// Stops the documentation drifting from the code: every metric `/metrics` serves is in
/// the table of `docs/configuration.md`, and the suggested alert rules of
/// `docs/metrics-alerts.md` are valid for Prometheus and name only served metrics.
#[tokio::test]
async fn docs_list_every_metric_and_the_suggested_alerts_pass_promtool() {
    let c = Clouds::start().await;
    let (status, body) = c.legate.exchange(&c.token(), AWS_TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    let text = c.legate.operator.get("/metrics").await.text;
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert!(families.len() > 20, "{text}");
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let reference = std::fs::read_to_string(docs.join("configuration.md")).unwrap();
    for family in &families {
        assert!(
            reference.contains(&format!("| `{family}` |")),
            "{family} is not in the metrics table of docs/configuration.md"
        );
    }
    let alerts = std::fs::read_to_string(docs.join("metrics-alerts.md")).unwrap();
    let rules = alerts
        .split_once("```yaml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(rules, _)| rules)
        .expect("a yaml block in docs/metrics-alerts.md");
    for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if let Some(base) = word.strip_prefix("legate_") {
            let served = families.iter().any(|f| {
                word == *f
                    || ["_bucket", "_count", "_sum"]
                        .iter()
                        .any(|s| word.strip_suffix(s) == Some(*f))
            });
            assert!(
                served,
                "alert rule names legate_{base}, which is not served"
            );
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yml");
    std::fs::write(&path, rules).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool check rules refused docs/metrics-alerts.md:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
