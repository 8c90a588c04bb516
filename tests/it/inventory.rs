//! The credential ledger and inventory: exchanges for a `jwt` target and an AWS target
//! (the strict AWS fake) show up in `GET /admin/inventory` and `GET /admin/ledger` with
//! their counts, first and last seen, cache hits and non-secret ids, never a secret;
//! the admin door refuses whom it must; `GET /admin/status` answers `/status`; and
//! `legate inventory` (the real binary, a file token source) prints it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: failing loudly is the point"
)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use legate_fakes::{AwsConfig, AwsFake, AwsRole, Options, target_subject};
use legate_server::audit::Outcome;
use legate_testkit::testkeys::TestKey;
use serde_json::{Value, json};

use crate::client::legate;
use crate::harness::{
    AUDIT_WAIT, CloudTargetSpec, Legate, Reply, SUBJECT, Setup, TARGET, TRUST, TrustSpec,
    UPSTREAM_AUDIENCE, decode_payload, plain_http_client, upstream_claims,
};
use crate::issuer::TestIssuer;
use crate::peers::TestPki;

const ADMIN_AUDIENCE: &str = "legate-admin";
const ADMIN_SUBJECT: &str = "ops:alice";
/// The AWS target (the strict fake's role trusts it).
const AWS_TARGET: &str = "aws-deploy";

/// Alice may use every admin endpoint; repository 42 may reach the AWS target (the
/// standard policy gives it the `jwt` target [`TARGET`]).
const POLICIES: &str = r#"
@id("ops-alice-admin")
permit (
  principal == Legate::Workload::"ci|ops:alice",
  action == Legate::Action::"admin",
  resource
);

@id("repo-42-aws-deploy")
@allow_lint("unscoped-issuer: the test issuer mints repository 42")
permit (
  principal,
  action == Legate::Action::"exchange",
  resource == Legate::Target::"aws-deploy"
)
when { principal.claims has repository_id && principal.claims.repository_id == "42" };
"#;

/// Legate with the admin endpoints on, the standard `jwt` target and an AWS target in
/// front of the strict AWS fake (which reads Legate's clock).
struct Ledgered {
    _pki: TestPki,
    key: TestKey,
    issuer: TestIssuer,
    aws: AwsFake,
    legate: Legate,
}

impl Ledgered {
    async fn start() -> Ledgered {
        Self::start_with("").await
    }

    async fn start_with(extra_toml: &str) -> Ledgered {
        let pki = TestPki::localhost();
        let key = TestKey::es256("key-a");
        let issuer = TestIssuer::start(&pki, &[&key]).await;
        let reservation = Legate::reserve().await;
        let options = Options {
            clock: reservation.clock.clone(),
            ..Options::default()
        };
        let config = AwsConfig::new(reservation.url.as_str()).with_role(
            AwsRole::new("deploy")
                .max_session_duration(3600)
                .trusting("sts.amazonaws.com", target_subject(AWS_TARGET)),
        );
        let aws = AwsFake::start_with(config, options).await.unwrap();
        let mut setup = Setup::new(vec![TrustSpec::with_ca(TRUST, &issuer.issuer, &pki)]);
        setup.cloud_targets.push(
            CloudTargetSpec::aws(AWS_TARGET, &aws.role_arn("deploy"), aws.url())
                .key("max_lifetime_secs", 3600),
        );
        setup
            .policies
            .push(("inventory.cedar".to_owned(), POLICIES.to_owned()));
        setup.extra_toml.push_str(&format!(
            "\n[admin]\nenabled = true\naudience = \"{ADMIN_AUDIENCE}\"\n{extra_toml}"
        ));
        let legate = Legate::start_reserved(reservation, &setup).await;
        Ledgered {
            _pki: pki,
            key,
            issuer,
            aws,
            legate,
        }
    }

    /// A fresh workload token (repository 42 on main, [`SUBJECT`]).
    fn workload_token(&self) -> String {
        self.token(&json!({ "repository_id": "42", "ref": "refs/heads/main" }))
    }

    /// A fresh admin token of `sub` (single-use trust: a new `jti` each time).
    fn admin_token(&self, sub: &str) -> String {
        self.token(&json!({ "sub": sub, "aud": ADMIN_AUDIENCE }))
    }

    fn token(&self, extra: &Value) -> String {
        self.key.token(&upstream_claims(
            &self.issuer.issuer,
            self.legate.now(),
            extra,
        ))
    }

    /// `GET {operator}{path}` with `token` as the bearer, if any.
    async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let http = plain_http_client(Duration::from_secs(20));
        let mut request = http.get(format!("{}{path}", self.legate.operator.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let resp = request.send().await.expect("admin request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            json,
        }
    }

    /// `GET {operator}{path}` as Alice, asserting 200.
    async fn admin_get(&self, path: &str) -> Reply {
        let reply = self.get(path, Some(&self.admin_token(ADMIN_SUBJECT))).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        reply
    }

    /// Waits until the ledger's writer has recorded `n` entries (it drains a queue a
    /// moment after the answer), failing after a generous ceiling.
    async fn wait_recorded(&self, n: u64) {
        let stats = self.legate.state.ledger().stats();
        let deadline = tokio::time::Instant::now() + AUDIT_WAIT;
        while stats.recorded.load(Ordering::Acquire) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the ledger recorded {} of {n} entries",
                stats.recorded.load(Ordering::Acquire)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The row of `list` whose `key` is `value`.
fn row<'v>(doc: &'v Value, list: &str, key: &str, value: &str) -> &'v Value {
    doc[list]
        .as_array()
        .unwrap_or_else(|| panic!("no `{list}` in {doc}"))
        .iter()
        .find(|r| r[key] == value)
        .unwrap_or_else(|| panic!("no {list} row with {key} = {value} in {doc}"))
}

/// Every credential issued shows up: per issuer, subject, target and refresh path with
/// its count, first and last seen (Legate's clock), and how many the credential cache
/// served; the ledger lists each with its non-secret id (a minted JWT's `jti`, the AWS
/// assumed-role ARN). Stops the inventory from leaking what it inventories: no minted
/// token, AWS secret key, session token or subject token appears in either answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_credentials_show_up_in_the_inventory_and_ledger_without_secrets() {
    let l = Ledgered::start().await;
    let t0 = l.legate.now();
    let mut secrets = Vec::new();

    // Two `jwt` credentials, ten seconds apart.
    let mut jtis = Vec::new();
    for _ in 0..2 {
        let token = l.workload_token();
        let (status, body) = l.legate.exchange(&token, TARGET, None).await;
        assert_eq!(status, 200, "{body}");
        let minted = body["access_token"].as_str().unwrap().to_owned();
        jtis.push(decode_payload(&minted)["jti"].as_str().unwrap().to_owned());
        secrets.extend([token, minted]);
        l.legate.clock.advance(10);
    }
    // Two AWS credentials: the second is the first, served from the credential cache.
    let mut key_ids = Vec::new();
    for _ in 0..2 {
        let token = l.workload_token();
        let (status, body) = l.legate.exchange(&token, AWS_TARGET, Some(900)).await;
        assert_eq!(status, 200, "{body}");
        let creds = &body["aws_credentials"];
        key_ids.push(creds["AccessKeyId"].clone());
        secrets.extend(
            [
                &body["access_token"],
                &creds["SecretAccessKey"],
                &creds["SessionToken"],
            ]
            .map(|v| v.as_str().unwrap().to_owned())
            .into_iter()
            .chain([token]),
        );
    }
    assert_eq!(key_ids[0], key_ids[1], "the second came from the cache");
    assert_eq!(l.aws.stats().requests, 1);
    let t_aws = t0 + 20;
    l.wait_recorded(4).await;

    let inventory = l.admin_get("/admin/inventory").await;
    let doc = &inventory.json;
    assert_eq!(doc["generated_at"], t_aws);
    let issuer = row(doc, "issuers", "trust", TRUST);
    assert_eq!(issuer["issuer"], l.issuer.issuer.as_str());
    assert_eq!(
        (&issuer["count"], &issuer["served_from_cache"]),
        (&json!(4), &json!(1))
    );
    assert_eq!(
        (&issuer["first_seen"], &issuer["last_seen"]),
        (&json!(t0), &json!(t_aws))
    );
    let jwt = row(doc, "targets", "target", TARGET);
    assert_eq!(jwt["kind"], "jwt");
    assert_eq!(
        (&jwt["count"], &jwt["served_from_cache"]),
        (&json!(2), &json!(0))
    );
    assert_eq!(
        (&jwt["first_seen"], &jwt["last_seen"]),
        (&json!(t0), &json!(t0 + 10))
    );
    let aws = row(doc, "targets", "target", AWS_TARGET);
    assert_eq!(aws["kind"], "aws");
    assert_eq!(
        (&aws["count"], &aws["served_from_cache"]),
        (&json!(2), &json!(1))
    );
    assert_eq!(aws["valid_until"], t_aws + 900);
    let subject = row(doc, "subjects", "subject", SUBJECT);
    assert_eq!(subject["trust"], TRUST);
    assert_eq!(subject["count"], 4);
    assert_eq!(subject["targets"], json!([AWS_TARGET, TARGET]));
    assert_eq!(doc["paths"].as_array().unwrap().len(), 2);
    let path = row(doc, "paths", "target", TARGET);
    assert_eq!(
        (&path["trust"], &path["subject"], &path["count"]),
        (&json!(TRUST), &json!(SUBJECT), &json!(2))
    );
    assert_eq!(doc["truncated"], false);
    assert_eq!(doc["evicted"]["entries"], 0);

    // Filters: the AWS target alone.
    let only_aws = l
        .admin_get(&format!("/admin/inventory?target={AWS_TARGET}&limit=10"))
        .await;
    assert_eq!(only_aws.json["paths"].as_array().unwrap().len(), 1);
    assert_eq!(only_aws.json["targets"].as_array().unwrap().len(), 1);

    // The ledger: newest first, each with its non-secret id.
    let ledger = l.admin_get("/admin/ledger").await;
    let entries = ledger.json["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4, "{}", ledger.text);
    let (cached, fresh) = (&entries[0], &entries[1]);
    for e in [cached, fresh] {
        assert_eq!(e["kind"], "aws");
        assert_eq!(e["target"], AWS_TARGET);
        assert_eq!(e["subject"], SUBJECT);
        assert_eq!(e["issuer"], l.issuer.issuer.as_str());
        let arn = e["credential_id"].as_str().unwrap();
        assert!(
            arn.starts_with("arn:aws:sts::") && arn.contains(":assumed-role/deploy/"),
            "{arn}"
        );
        assert!(e["cloud_request_id"].is_string(), "{e}");
        assert_eq!(e["expires_at"], t_aws + 900);
    }
    assert_eq!(
        (&cached["served_from_cache"], &fresh["served_from_cache"]),
        (&json!(true), &json!(false))
    );
    assert_ne!(cached["request_id"], fresh["request_id"]);
    for (e, jti) in entries[2..].iter().zip(jtis.iter().rev()) {
        assert_eq!(e["kind"], "jwt");
        assert_eq!(e["credential_id"], jti.as_str());
        assert_eq!(e["served_from_cache"], false);
    }
    // Each entry names its exchange's audit event.
    let audited = l.legate.event_by_id(fresh["request_id"].as_str().unwrap());
    assert_eq!(audited.decision, Outcome::Allow);
    assert_eq!(audited.target.as_deref(), Some(AWS_TARGET));
    let by_kind = l.admin_get("/admin/ledger?kind=jwt&limit=1").await;
    assert_eq!(by_kind.json["entries"].as_array().unwrap().len(), 1);
    assert_eq!(
        by_kind.json["entries"][0]["credential_id"],
        jtis[1].as_str()
    );

    // SECURITY: nothing secret in either answer.
    assert_eq!(secrets.len(), 12);
    for text in [&inventory.text, &ledger.text, &only_aws.text] {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a secret leaked into {text}"
            );
        }
    }
    // The exchange answer's own counters are on `/status`.
    let status = l.admin_get("/admin/status").await;
    assert_eq!(status.json["ledger"]["recorded"], 4);
    assert_eq!(status.json["ledger"]["dropped_queue_full"], 0);
}

/// Stops anyone but an authorised admin from reading the inventory, the ledger or the
/// status: no token or a forged one is 401; a workload's exchange token (its audience
/// is not the admin audience) is 401; a valid admin token whose subject no policy
/// permits is 403; and with the admin endpoints off they do not exist.
#[tokio::test]
async fn the_inventory_ledger_and_admin_status_refuse_all_but_authorised_admins() {
    let l = Ledgered::start().await;
    let stranger = TestKey::es256_b("key-a");
    for path in ["/admin/inventory", "/admin/ledger", "/admin/status"] {
        let reply = l.get(path, None).await;
        assert_eq!(reply.status, 401, "{path}: {}", reply.text);
        assert_eq!(reply.json["error"], "invalid_token");

        let forged = stranger.token(&upstream_claims(
            &l.issuer.issuer,
            l.legate.now(),
            &json!({ "sub": ADMIN_SUBJECT, "aud": ADMIN_AUDIENCE }),
        ));
        assert_eq!(l.get(path, Some(&forged)).await.status, 401, "{path}");

        let workload = l.token(&json!({ "sub": ADMIN_SUBJECT, "aud": UPSTREAM_AUDIENCE }));
        assert_eq!(l.get(path, Some(&workload)).await.status, 401, "{path}");

        let mallory = l.get(path, Some(&l.admin_token("ops:mallory"))).await;
        assert_eq!(mallory.status, 403, "{path}: {}", mallory.text);
        assert_eq!(mallory.json["error"], "forbidden");
    }
    // A bad query is refused after authentication, with a reason.
    let reply = l
        .get(
            "/admin/inventory?token=x",
            Some(&l.admin_token(ADMIN_SUBJECT)),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.json["error"], "invalid_request");

    let off = crate::harness::Fixture::start().await;
    let token = off.token(&json!({ "sub": ADMIN_SUBJECT, "aud": ADMIN_AUDIENCE }));
    for path in ["/admin/inventory", "/admin/ledger", "/admin/status"] {
        let resp = plain_http_client(Duration::from_secs(20))
            .get(format!("{}{path}", off.legate.operator.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 404, "{path}");
    }
}

/// `GET /admin/status` answers what the unauthenticated operator `/status` answers.
#[tokio::test]
async fn admin_status_answers_the_status_document() {
    let l = Ledgered::start().await;
    let admin = l.admin_get("/admin/status").await;
    assert_eq!(admin.header("cache-control"), Some("no-store"));
    let plain = l.get("/status", None).await;
    assert_eq!(plain.status, 200);
    let keys = |v: &Value| {
        v.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<String>>()
    };
    assert_eq!(keys(&admin.json), keys(&plain.json));
    for key in ["version", "ready", "issuers", "policy", "audit", "ledger"] {
        assert!(admin.json.get(key).is_some(), "{key} in {}", admin.text);
    }
    assert_eq!(admin.json["issuers"], plain.json["issuers"]);
    assert_eq!(
        admin.json["policy"]["set_sha256"],
        plain.json["policy"]["set_sha256"]
    );
}

/// The ledger's bounds hold through the server: with `[ledger] max_entries = 2`, three
/// credentials leave two entries, and the eviction is counted.
#[tokio::test]
async fn the_configured_entry_bound_holds_and_evictions_are_counted() {
    let l = Ledgered::start_with("\n[ledger]\nmax_entries = 2\nretention_secs = 3600\n").await;
    for _ in 0..3 {
        let (status, body) = l.legate.exchange(&l.workload_token(), TARGET, None).await;
        assert_eq!(status, 200, "{body}");
    }
    l.wait_recorded(3).await;
    let ledger = l.admin_get("/admin/ledger").await;
    assert_eq!(ledger.json["entries"].as_array().unwrap().len(), 2);
    let inventory = l.admin_get("/admin/inventory").await;
    assert_eq!(inventory.json["evicted"]["entries"], 1);
    assert_eq!(inventory.json["retention_secs"], 3600);
    assert_eq!(
        row(&inventory.json, "targets", "target", TARGET)["count"],
        3
    );
    // Past the retention, nothing is left.
    l.legate.clock.advance(3_601);
    let inventory = l.admin_get("/admin/inventory").await;
    assert_eq!(inventory.json["paths"], json!([]), "{}", inventory.text);
    assert_eq!(
        l.admin_get("/admin/ledger").await.json["entries"],
        json!([])
    );
}

/// `legate inventory` end to end: the real binary reads an admin token from a file
/// (re-read per run: admin tokens are single-use here), prints the tables, or the JSON
/// with `--json`; a refused token exits 1 without printing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legate_inventory_prints_the_inventory_with_a_file_token_source() {
    let l = Ledgered::start().await;
    let (status, body) = l.legate.exchange(&l.workload_token(), TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    l.wait_recorded(1).await;

    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.jwt");
    let source = format!("file:{}", token_file.display());
    let url = l.legate.operator.url.clone();
    let run = |extra: &'static [&'static str]| {
        let mut args = vec![
            "inventory".to_owned(),
            "--url".to_owned(),
            url.clone(),
            "--token-source".to_owned(),
            source.clone(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            legate(&args, &[]).await
        }
    };

    std::fs::write(&token_file, l.admin_token(ADMIN_SUBJECT)).unwrap();
    let table = run(&[]).await;
    assert_eq!(table.code, Some(0), "{table:#?}");
    for expected in [
        "issuers (1)",
        "targets (1)",
        "subjects (1)",
        "refresh paths (1)",
        SUBJECT,
        TARGET,
        "retention 604800s",
    ] {
        assert!(
            table.stdout.contains(expected),
            "missing {expected:?} in {table:#?}"
        );
    }
    assert!(
        table.stdout.contains(l.issuer.issuer.as_str()),
        "{table:#?}"
    );

    std::fs::write(&token_file, l.admin_token(ADMIN_SUBJECT)).unwrap();
    let json_run = run(&["--json", "--target", TARGET]).await;
    assert_eq!(json_run.code, Some(0), "{json_run:#?}");
    let doc: Value = serde_json::from_str(json_run.stdout.trim()).expect("--json prints JSON");
    assert_eq!(row(&doc, "paths", "target", TARGET)["count"], 1);
    assert_eq!(
        row(&doc, "subjects", "subject", SUBJECT)["targets"],
        json!([TARGET])
    );

    let refused_token = l.admin_token("ops:mallory");
    std::fs::write(&token_file, &refused_token).unwrap();
    let refused = run(&[]).await;
    assert_eq!(refused.code, Some(1), "{refused:#?}");
    assert!(refused.stderr.contains("403"), "{refused:#?}");
    assert!(!refused.stderr.contains(&refused_token) && !refused.stdout.contains(&refused_token));
}
