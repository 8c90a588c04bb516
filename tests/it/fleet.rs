//! Legate as a fleet: two replicas on one real Redis (`[state] backend = "redis"`).
//!
//! Each test starts its own `redis-server` (Debian's, installed by `tests/run`) on a free
//! loopback port, and two in-process Legate replicas on it that trust the same issuer.
//! The replicas share nothing but Redis.

#![allow(
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: failing loudly is the point"
)]

use std::time::Duration;

use legate_core::Clock as _;
use legate_server::app::{AppState, BuildOptions};
use legate_server::clock::{ManualClock, SystemClock};
use legate_testkit::testkeys::TestKey;
use serde_json::{Value, json};

use crate::harness::{Fixture, Legate, Setup, TARGET, TRUST, TrustSpec, upstream_claims};
use crate::issuer::TestIssuer;
use crate::peers::TestPki;
use crate::redis_server::{RedisOptions, RedisServer};

/// The default trust leeway: a token is usable from `iat - leeway` (test tokens carry
/// `iat` = now - 5, hence the extra seconds where clocks move past an epoch).
const LEEWAY: i64 = 60;

/// How long a test waits for the fleet to notice Redis came back (the health check
/// runs every second; reconnects back off up to a second). A ceiling, not a
/// measurement.
const RECOVERY_CEILING: Duration = Duration::from_secs(30);

/// Two replicas on `redis`: A is the fixture's Legate, B a second Legate with the same
/// trusts, targets, policies and `extra` TOML.
struct Pair {
    f: Fixture,
    b: Legate,
}

impl Pair {
    async fn start(redis: &RedisServer, extra: &str, trusts: Vec<TrustSpec>) -> Pair {
        Self::start_with(redis, extra, trusts, Vec::new()).await
    }

    async fn start_with(
        redis: &RedisServer,
        extra: &str,
        trusts: Vec<TrustSpec>,
        policies: Vec<(String, String)>,
    ) -> Pair {
        let toml = format!("{}{extra}", redis.state_toml());
        let more = trusts.clone();
        let more_policies = policies.clone();
        let a_toml = toml.clone();
        let f = Fixture::start_with(move |s| {
            s.trusts.extend(more);
            s.policies.extend(more_policies);
            s.extra_toml.push_str(&a_toml);
        })
        .await;
        let mut setup = Setup::new(vec![TrustSpec::with_ca(TRUST, &f.issuer.issuer, &f.pki)]);
        setup.trusts.extend(trusts);
        setup.policies.extend(policies);
        setup.extra_toml.push_str(&toml);
        let b = Legate::start(&setup).await;
        // The state epoch began when A first connected to this new Redis: a token that
        // could have been used before it is refused (its record could be lost). Move
        // both clocks past that, as a fleet's first minute does.
        f.legate.clock.advance(LEEWAY + 10);
        b.clock.advance(LEEWAY + 10);
        Pair { f, b }
    }

    fn advance(&self, secs: i64) {
        self.f.legate.clock.advance(secs);
        self.b.clock.advance(secs);
    }
}

fn assert_unavailable(legate: &Legate, status: u16, body: &Value) {
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert_eq!(legate.event_of(body).reason, "state_unavailable");
}

/// Stops a replay across the load balancer: a CI token exchanged at one replica is
/// refused at the other, in both directions.
#[tokio::test]
async fn a_token_used_at_one_replica_is_a_replay_at_the_other() {
    let redis = RedisServer::start(RedisOptions::default()).await;
    let p = Pair::start(&redis, "", Vec::new()).await;

    let token = p.f.token(&json!({}));
    let (status, body) = p.f.legate.exchange(&token, TARGET, None).await;
    assert_eq!(status, 200, "{body} {:?}", p.f.legate.event_of(&body));
    let (status, body) = p.b.exchange(&token, TARGET, None).await;
    p.b.assert_rejected(status, &body, "replayed");

    let other = p.f.token(&json!({}));
    let (status, body) = p.b.exchange(&other, TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = p.f.legate.exchange(&other, TARGET, None).await;
    p.f.legate.assert_rejected(status, &body, "replayed");
}

/// Stops a runaway job from getting N times its budget by spreading over N replicas:
/// the subject's GCRA lives in Redis, so the burst is shared.
#[tokio::test]
async fn a_rate_limit_holds_across_both_replicas() {
    let redis = RedisServer::start(RedisOptions::default()).await;
    let p = Pair::start(
        &redis,
        "\n[limits]\nper_subject = { rate = 1, per_secs = 60, burst = 2 }\n",
        Vec::new(),
    )
    .await;
    let (status, body) =
        p.f.legate
            .exchange(&p.f.token(&json!({})), TARGET, None)
            .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = p.b.exchange(&p.f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    for legate in [&p.f.legate, &p.b] {
        let reply = legate
            .exchange_reply(&p.f.token(&json!({})), TARGET, None)
            .await;
        assert_eq!(reply.status, 429, "{}", reply.text);
        assert_eq!(reply.json["error"], "rate_limited");
        assert_eq!(legate.event_of(&reply.json).reason, "rate_limited_subject");
    }
    // The limit's state is in Redis, under the deployment's key prefix.
    let keys = redis.cli(&["--scan", "--pattern", "{legate}l:*"]);
    assert_eq!(keys.lines().count(), 1, "one subject key: {keys}");
    // A minute later one more passes, at either replica.
    p.advance(60);
    let (status, body) = p.b.exchange(&p.f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200, "{body}");
}

/// Stops two failure-mode attacks. While Redis is down, a single-use token cannot be
/// checked, so it is refused (503) rather than exchanged unchecked — reusable trusts,
/// which need no record, keep working. When Redis comes back empty (a restart without
/// persistence), a token used before the outage is still refused: the new state epoch
/// rules out every token that could have been used before it, so no replay window
/// reopens. The replicas recover by themselves.
#[tokio::test]
async fn redis_outage_fails_closed_then_restarts_empty_without_a_replay_window() {
    let mut redis = RedisServer::start(RedisOptions::default()).await;
    let pki = TestPki::localhost();
    let k8s_key = TestKey::es256("key-k8s");
    let k8s = TestIssuer::start(&pki, &[&k8s_key]).await;
    let mut reusable = TrustSpec::new("k8s", &k8s.issuer);
    reusable.ca_file = Some(pki.ca_path.clone());
    reusable.replay = Some("reusable");
    let p = Pair::start(&redis, "", vec![reusable]).await;
    p.b.state.warm().await;
    let k8s_token = |now: i64| {
        k8s_key.token(&upstream_claims(
            &k8s.issuer,
            now,
            &json!({"repository_id": "42", "ref": "refs/heads/main"}),
        ))
    };

    let used = p.f.token(&json!({}));
    let (status, body) = p.f.legate.exchange(&used, TARGET, None).await;
    assert_eq!(status, 200, "{body}");

    redis.stop();
    for legate in [&p.f.legate, &p.b] {
        let (status, body) = legate.exchange(&p.f.token(&json!({})), TARGET, None).await;
        assert_unavailable(legate, status, &body);
        let (status, body) = legate
            .exchange(&k8s_token(legate.now()), TARGET, None)
            .await;
        assert_eq!(
            status, 200,
            "a reusable trust needs no shared state: {body}"
        );
    }

    // `/status` says why.
    let status = p.f.legate.operator.get("/status").await.json;
    assert_eq!(status["state"]["backend"], "redis", "{status}");
    assert!(
        status["state"]["errors"]["replay_record"].as_u64() > Some(0),
        "{status}"
    );

    // ...and so does the metric the alerts read.
    let metrics = p.f.legate.operator.get("/metrics").await.text;
    let failed = metrics
        .lines()
        .find(|l| l.starts_with("legate_state_backend_errors_total{op=\"replay_record\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no replay_record error count in {metrics}"));
    assert!(failed >= 1.0, "{failed}");

    redis.restart_empty().await;
    // The token used before the outage, presented at the other replica once it reaches
    // the new (empty) Redis: refused, never a second credential.
    let deadline = tokio::time::Instant::now() + RECOVERY_CEILING;
    let refusal = loop {
        let (status, body) = p.b.exchange(&used, TARGET, None).await;
        if status != 503 {
            break (status, body);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica B did not reach Redis again within {RECOVERY_CEILING:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    p.b.assert_rejected(refusal.0, &refusal.1, "before_state_epoch");

    // Tokens minted after the new epoch (plus leeway) work again, at both replicas,
    // and are single-use across them: recovered without a restart.
    p.advance(LEEWAY + 10);
    let fresh = p.f.token(&json!({}));
    let deadline = tokio::time::Instant::now() + RECOVERY_CEILING;
    loop {
        let (status, body) = p.f.legate.exchange(&fresh, TARGET, None).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica A did not reach Redis again within {RECOVERY_CEILING:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = p.b.exchange(&fresh, TARGET, None).await;
    p.b.assert_rejected(status, &body, "replayed");
}

/// Stops a replay through memory pressure: a Redis allowed to evict keys could drop a
/// live replay record. Legate refuses to start on one, and says why.
#[tokio::test]
async fn a_redis_that_may_evict_keys_is_refused_at_startup() {
    let redis = RedisServer::start(RedisOptions {
        eviction: "allkeys-lru",
        ..RedisOptions::default()
    })
    .await;
    let toml = format!(
        "version = 1\n[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://legate.test\"\n\
         [issuer]\nephemeral_key = true\n[policy]\nbundled = true\n{}",
        redis.state_toml()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config = legate_server::config::load_str(&toml, "legate.toml", dir.path())
        .unwrap_or_else(|e| panic!("{e}"));
    let clock = std::sync::Arc::new(ManualClock::new(SystemClock.now()));
    let err = AppState::connect(&config, BuildOptions::new(clock))
        .await
        .map(|_| ())
        .expect_err("an evicting Redis must be refused");
    let text = err.to_string();
    assert!(
        text.contains("allkeys-lru") && text.contains("noeviction"),
        "{text}"
    );
}

/// `rediss://` with the test CA: the fleet's shared state over TLS (rustls), and a
/// Redis whose certificate does not chain to the configured roots is refused (no
/// silent fallback to an unverified connection).
#[tokio::test]
async fn rediss_with_a_test_ca_shares_state_and_unknown_certificates_are_refused() {
    let pki = TestPki::localhost();
    let redis = RedisServer::start(RedisOptions {
        tls: Some((
            pki.cert_path.clone(),
            pki.key_path.clone(),
            pki.ca_path.clone(),
        )),
        ..RedisOptions::default()
    })
    .await;
    let p = Pair::start(&redis, "", Vec::new()).await;
    let token = p.f.token(&json!({}));
    let (status, body) = p.f.legate.exchange(&token, TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = p.b.exchange(&token, TARGET, None).await;
    p.b.assert_rejected(status, &body, "replayed");

    // Another CA: the server's certificate is not trusted.
    let other = TestPki::localhost();
    let toml = format!(
        "version = 1\n[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://legate.test\"\n\
         [issuer]\nephemeral_key = true\n[policy]\nbundled = true\n[state]\nbackend = \"redis\"\nurl = \"{}\"\n\
         tls_ca_file = \"{}\"\nconnect_timeout_ms = 2000\n",
        redis.url(),
        other.ca_path.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config = legate_server::config::load_str(&toml, "legate.toml", dir.path())
        .unwrap_or_else(|e| panic!("{e}"));
    let clock = std::sync::Arc::new(ManualClock::new(SystemClock.now()));
    let err = AppState::connect(&config, BuildOptions::new(clock))
        .await
        .map(|_| ())
        .expect_err("a certificate from an unknown CA must be refused");
    assert!(err.to_string().contains("cannot reach Redis"), "{err}");
}

/// Alice may use every admin endpoint.
const ADMIN_POLICY: &str = r#"
@id("ops-alice-admin")
permit (
  principal == Legate::Workload::"ci|ops:alice",
  action == Legate::Action::"admin",
  resource
);
"#;

const ADMIN_TOML: &str = "\n[admin]\nenabled = true\naudience = \"legate-admin\"\n";

/// Waits until `legate`'s ledger writer has recorded `n` entries.
async fn wait_recorded(legate: &Legate, n: u64) {
    let stats = legate.state.ledger().stats();
    let deadline = tokio::time::Instant::now() + RECOVERY_CEILING;
    while stats.recorded.load(std::sync::atomic::Ordering::Acquire) < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ledger did not record {n} entries"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The fleet keeps one ledger: credentials issued at either replica are listed by both,
/// through `GET /admin/ledger` and through `legate inventory` (the real binary, an admin
/// token from a file) at the other replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_and_inventory_span_both_replicas() {
    let redis = RedisServer::start(RedisOptions::default()).await;
    let p = Pair::start_with(
        &redis,
        ADMIN_TOML,
        Vec::new(),
        vec![("admin.cedar".to_owned(), ADMIN_POLICY.to_owned())],
    )
    .await;
    let (status, body) =
        p.f.legate
            .exchange(&p.f.token(&json!({})), TARGET, None)
            .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = p.b.exchange(&p.f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    wait_recorded(&p.f.legate, 1).await;
    wait_recorded(&p.b, 1).await;
    let admin = || {
        p.f.token(&json!({"sub": "ops:alice", "aud": "legate-admin"}))
    };

    // The ledger at A lists both credentials, newest (B's) first.
    let http = crate::harness::plain_http_client(Duration::from_secs(20));
    let resp = http
        .get(format!("{}/admin/ledger", p.f.legate.operator.url))
        .bearer_auth(admin())
        .send()
        .await
        .expect("GET /admin/ledger");
    assert_eq!(resp.status().as_u16(), 200);
    let ledger: Value = resp.json().await.expect("JSON");
    let entries = ledger["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("{ledger}"));
    assert_eq!(entries.len(), 2, "{ledger}");
    assert!(entries.iter().all(|e| e["target"] == TARGET), "{ledger}");

    // `legate inventory` at B counts both on the refresh path.
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("admin.jwt");
    std::fs::write(&token_file, admin()).expect("write token");
    let source = format!("file:{}", token_file.display());
    let run = crate::client::legate(
        &[
            "inventory",
            "--url",
            &p.b.operator.url,
            "--token-source",
            &source,
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    let doc: Value = serde_json::from_str(run.stdout.trim()).expect("--json prints JSON");
    let path = doc["paths"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["target"] == TARGET))
        .unwrap_or_else(|| panic!("no path to {TARGET}: {doc}"));
    assert_eq!(path["count"], 2, "{doc}");
}

/// `POST /introspect` at `legate` for `token`, as Alice.
async fn introspect_at(p: &Pair, legate: &Legate, token: &str) -> Value {
    let http = crate::harness::plain_http_client(Duration::from_secs(20));
    let resp = http
        .post(format!("{}/introspect", legate.url))
        .form(&[("token", token)])
        .bearer_auth(p.f.token(&json!({"sub": "ops:alice", "aud": "legate-admin"})))
        .send()
        .await
        .expect("POST /introspect");
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.expect("JSON")
}

/// Stops a revoked token from staying good at the replica a relying party happens to
/// ask: a token minted at A introspects as active; once its `jti` is revoked at B, A
/// answers inactive (within the generous ceiling: pub/sub, or the periodic read). (The
/// harness gives each replica its own ephemeral signing key, so each replica vouches only
/// for what it minted; a real fleet shares its keys.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_and_revocation_agree_across_replicas() {
    let redis = RedisServer::start(RedisOptions::default()).await;
    let p = Pair::start_with(
        &redis,
        "\n[admin]\nenabled = true\naudience = \"legate-admin\"\nintrospection = true\n",
        Vec::new(),
        vec![("admin.cedar".to_owned(), ADMIN_POLICY.to_owned())],
    )
    .await;
    let deadline = tokio::time::Instant::now() + RECOVERY_CEILING;
    while !(p.f.legate.state.revocations().is_loaded() && p.b.state.revocations().is_loaded()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "revocations never loaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) =
        p.f.legate
            .exchange(&p.f.token(&json!({})), TARGET, None)
            .await;
    assert_eq!(status, 200, "{body}");
    let minted = body["access_token"]
        .as_str()
        .expect("a minted token")
        .to_owned();
    let jti = crate::harness::decode_payload(&minted)["jti"]
        .as_str()
        .expect("a jti")
        .to_owned();
    let answer = introspect_at(&p, &p.f.legate, &minted).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["jti"], jti.as_str(), "{answer}");

    let http = crate::harness::plain_http_client(Duration::from_secs(20));
    let resp = http
        .post(format!("{}/admin/revocations", p.b.operator.url))
        .bearer_auth(p.f.token(&json!({"sub": "ops:alice", "aud": "legate-admin"})))
        .json(&json!({"jti": jti, "reason": "leaked in a build log"}))
        .send()
        .await
        .expect("POST /admin/revocations");
    assert_eq!(resp.status().as_u16(), 201);

    let deadline = tokio::time::Instant::now() + RECOVERY_CEILING;
    loop {
        let answer = introspect_at(&p, &p.f.legate, &minted).await;
        if answer["active"] == false {
            assert_eq!(answer, json!({"active": false}), "nothing else is told");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica A still answers active: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops a revocation from being lost with the shared state: after Redis comes back
/// empty, the replicas that remember a revocation write it back, so a replica started
/// afterwards enforces it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_survives_a_redis_that_comes_back_empty() {
    let mut redis = RedisServer::start(RedisOptions::default()).await;
    let p = Pair::start_with(
        &redis,
        ADMIN_TOML,
        Vec::new(),
        vec![("admin.cedar".to_owned(), ADMIN_POLICY.to_owned())],
    )
    .await;
    let deadline = tokio::time::Instant::now() + RECOVERY_CEILING;
    while !(p.f.legate.state.revocations().is_loaded() && p.b.state.revocations().is_loaded()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "revocations never loaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let http = crate::harness::plain_http_client(Duration::from_secs(20));
    let resp = http
        .post(format!("{}/admin/revocations", p.f.legate.operator.url))
        .bearer_auth(p.f.token(&json!({"sub": "ops:alice", "aud": "legate-admin"})))
        .json(&json!({"subject": crate::harness::SUBJECT, "trust": TRUST, "reason": "compromised runner"}))
        .send()
        .await
        .expect("POST /admin/revocations");
    assert_eq!(resp.status().as_u16(), 201);
    assert_eq!(redis.cli(&["HLEN", "{legate}rev"]), "1");

    redis.restart_empty().await;
    assert_eq!(redis.cli(&["HLEN", "{legate}rev"]), "0");
    // The replicas' periodic read finds it missing and writes it back.
    let deadline = tokio::time::Instant::now() + RECOVERY_CEILING;
    while redis.cli(&["HLEN", "{legate}rev"]) != "1" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revocation was not written back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A replica started now learns it from Redis and refuses the revoked subject.
    let mut setup = Setup::new(vec![TrustSpec::with_ca(
        TRUST,
        &p.f.issuer.issuer,
        &p.f.pki,
    )]);
    setup
        .extra_toml
        .push_str(&format!("{}{ADMIN_TOML}", redis.state_toml()));
    let c = Legate::start(&setup).await;
    c.clock.advance(2 * (LEEWAY + 10));
    let deadline = tokio::time::Instant::now() + RECOVERY_CEILING;
    while !c.state.revocations().is_loaded() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "revocations never loaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let token = p.f.key.token(&upstream_claims(
        &p.f.issuer.issuer,
        c.now(),
        &json!({"repository_id": "42", "ref": "refs/heads/main"}),
    ));
    let (status, body) = c.exchange(&token, TARGET, None).await;
    c.assert_rejected(status, &body, "revoked");
}
