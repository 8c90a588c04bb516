//! Shadow mode and hot reload of the policy folder: a changed policy takes effect; a
//! broken one is refused while the last good set keeps answering; a ConfigMap-style
//! `..data` symlink swap is seen; `SIGHUP` reloads; and exchanges racing a stream of
//! reloads are each decided by exactly one policy set.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: failing loudly is the point"
)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use legate_server::audit::Outcome;
use legate_server::reload::{WatchOptions, spawn_watcher};
use serde_json::{Value, json};

use crate::harness::{Fixture, Legate, STANDARD_POLICY, TARGET, TargetSpec};

/// The second target of the race test.
const OTHER: &str = "other-api";

/// How long a test waits for the watcher to act before failing (a bound, not a
/// measurement: the poller runs every 50 ms here).
const PATIENCE: Duration = Duration::from_secs(30);

/// A poller every 50 ms, without `SIGHUP`.
fn polling() -> WatchOptions {
    WatchOptions {
        interval: Some(Duration::from_millis(50)),
        sighup: false,
    }
}

/// Starts `legate`'s watcher until the test ends.
fn watch(legate: &Legate, options: WatchOptions) -> tokio::task::JoinHandle<()> {
    spawn_watcher(
        legate.state.policy_reloader().clone(),
        options,
        std::future::pending(),
    )
    .unwrap()
    .expect("a policy folder is watched")
}

/// `/status`'s `policy` object.
async fn policy_status(legate: &Legate) -> Value {
    legate.operator.get("/status").await.json["policy"].clone()
}

/// Waits until `/status`'s `policy[key]` reaches `at_least`.
async fn wait_for_count(legate: &Legate, key: &str, at_least: u64) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let status = policy_status(legate).await;
        if status[key].as_u64().unwrap_or(0) >= at_least {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "`{key}` never reached {at_least}: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes `text` to `dir/name` atomically (a hidden temporary file renamed over it),
/// so the poller never reads a half-written file.
fn put(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// The standard policy for repository `repo` instead of 42.
fn policy_for_repo(repo: &str) -> String {
    STANDARD_POLICY.replace(
        "principal.claims.repository_id == \"42\"",
        &format!("principal.claims.repository_id == \"{repo}\""),
    )
}

/// Stops a watched (shadow) guardrail from enforcing before its time, and from going
/// unnoticed: the exchange is answered as the enforcing set decides, the audit event
/// records what the shadow policy would have done, and `/status` counts it.
#[tokio::test]
async fn a_shadow_policy_is_logged_and_counted_but_never_changes_the_answer() {
    let f = Fixture::start_with(|s| {
        s.policies.push((
            "watch.cedar".to_owned(),
            r#"@id("watch-main") @mode("shadow")
               forbid (principal, action, resource)
               when { principal.claims has ref && principal.claims.ref == "refs/heads/main" };
               @id("watch-repo-43") @mode("shadow")
               @allow_lint("unscoped-issuer: every test issuer mints repository 43")
               permit (principal, action, resource == Legate::Target::"deploy-api")
               when { principal.claims has repository_id && principal.claims.repository_id == "43" };"#
                .to_owned(),
        ));
    })
    .await;

    // Allowed by the enforcing set; the shadow forbid would have denied.
    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200, "{body}");
    let event = f
        .legate
        .event_of_minted(body["access_token"].as_str().unwrap());
    assert_eq!(event.decision, Outcome::Allow);
    assert_eq!(event.policy_ids, ["repo-42-deploys"]);
    let shadow = serde_json::to_value(&event.shadow).unwrap();
    assert_eq!(
        shadow,
        json!([{"policy_id": "watch-main", "effect": "forbid", "would": "deny"}])
    );

    // Denied (no permit) by the enforcing set; the shadow permit would have allowed.
    let token = f.token(&json!({"repository_id": "43"}));
    let (status, body) = f.legate.exchange(&token, TARGET, None).await;
    let event = f.legate.assert_rejected(status, &body, "no_permit");
    let shadow = serde_json::to_value(&event.shadow).unwrap();
    assert_eq!(
        shadow,
        json!([
            {"policy_id": "watch-main", "effect": "forbid", "would": "deny"},
            {"policy_id": "watch-repo-43", "effect": "permit", "would": "allow"},
        ])
    );

    let status = policy_status(&f.legate).await;
    assert_eq!(status["count"], 4);
    assert_eq!(
        status["shadow"],
        json!([
            {"policy_id": "watch-main", "would_allow": 0, "would_deny": 2, "erred": 0, "would_change": 1},
            {"policy_id": "watch-repo-43", "would_allow": 1, "would_deny": 0, "erred": 0, "would_change": 1},
        ])
    );
}

/// A policy edited in the folder replaces the running set, and `/status` says which
/// set runs, since when, and how many reloads there were.
#[tokio::test]
async fn a_changed_policy_takes_effect_and_status_shows_the_new_set() {
    let f = Fixture::start().await;
    let before = policy_status(&f.legate).await;
    assert_eq!(before["reloads"], 0);
    assert_eq!(before["source"], "dir");
    assert!(
        before["loaded_at_rfc3339"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let _watcher = watch(&f.legate, polling());

    put(
        &f.legate.policy_dir(),
        "standard.cedar",
        &policy_for_repo("43"),
    );
    let after = wait_for_count(&f.legate, "reloads", 1).await;
    assert_ne!(after["set_sha256"], before["set_sha256"]);
    assert_eq!(after["reload_failures"], 0);

    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    f.legate.assert_rejected(status, &body, "no_permit");
    let token = f.token(&json!({"repository_id": "43"}));
    let (status, body) = f.legate.exchange(&token, TARGET, None).await;
    assert_eq!(status, 200, "{body}");
}

/// Stops a typo in a policy file from taking the gateway down or leaving it without
/// policies: the broken set is refused, the last good set keeps answering, and the
/// failure (file and line) is on `/status` until the folder is fixed.
#[tokio::test]
async fn a_broken_policy_is_refused_and_the_last_good_set_stays_active() {
    let f = Fixture::start().await;
    let good = policy_status(&f.legate).await;
    let _watcher = watch(&f.legate, polling());

    put(
        &f.legate.policy_dir(),
        "broken.cedar",
        "// a half-written policy\npermit (principal, action, resource\n",
    );
    let status = wait_for_count(&f.legate, "reload_failures", 1).await;
    assert_eq!(status["reloads"], 0);
    assert_eq!(status["set_sha256"], good["set_sha256"]);
    let message = status["last_failure"]["message"].as_str().unwrap();
    assert!(message.contains("`broken.cedar`"), "{message}");
    assert!(message.contains("line 2"), "{message}");
    // The last good set still decides.
    let (code, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(code, 200, "{body}");

    // An unknown mode is refused the same way.
    put(
        &f.legate.policy_dir(),
        "broken.cedar",
        "@id(\"w\") @mode(\"enforced\") forbid (principal, action, resource);\n",
    );
    let status = wait_for_count(&f.legate, "reload_failures", 2).await;
    let message = status["last_failure"]["message"].as_str().unwrap();
    assert!(message.contains("unknown mode"), "{message}");
    let (code, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(code, 200, "{body}");

    // Fixed (in one step): the new set loads; the failure stays on record.
    put(
        &f.legate.policy_dir(),
        "broken.cedar",
        r#"@id("no-main") forbid (principal, action, resource)
           when { principal.claims has ref && principal.claims.ref == "refs/heads/main" };"#,
    );
    let status = wait_for_count(&f.legate, "reloads", 1).await;
    assert_eq!(status["reload_failures"], 2);
    assert!(status["last_failure"]["at_rfc3339"].is_string());
    let (code, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    f.legate.assert_rejected(code, &body, "forbidden");
}

/// Lays `dir` out as Kubernetes mounts a ConfigMap: the files live in a timestamped
/// hidden folder, `..data` links to it, and each visible name links through `..data`.
/// `files` go into `..<version>`.
#[cfg(unix)]
fn configmap_version(dir: &Path, version: &str, files: &[(&str, &str)]) {
    let folder = dir.join(format!("..{version}"));
    std::fs::create_dir(&folder).unwrap();
    for (name, text) in files {
        std::fs::write(folder.join(name), text).unwrap();
    }
}

/// Points `..data` at `..<version>` atomically (a new link renamed over the old one),
/// as the kubelet does.
#[cfg(unix)]
fn configmap_swap(dir: &Path, version: &str) {
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}

/// Replaces the flat policy folder the harness wrote by a ConfigMap layout holding
/// `files` (plus the schema) as version `v0`.
#[cfg(unix)]
fn as_configmap(dir: &Path, names: &[&str], files: &[(&str, &str)]) {
    for entry in std::fs::read_dir(dir).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let mut all = files.to_vec();
    all.push((legate_policy::SCHEMA_FILE, legate_policy::BUNDLED_SCHEMA));
    configmap_version(dir, "v0", &all);
    configmap_swap(dir, "v0");
    for name in names.iter().chain([&legate_policy::SCHEMA_FILE]) {
        std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
    }
}

/// Stops a ConfigMap update from going unseen: the kubelet never edits the visible
/// files, it swaps the `..data` symlink; the poller reads through the links.
#[cfg(unix)]
#[tokio::test]
async fn a_configmap_data_symlink_swap_is_picked_up() {
    let f = Fixture::start().await;
    let dir = f.legate.policy_dir();
    as_configmap(
        &dir,
        &["standard.cedar"],
        &[("standard.cedar", STANDARD_POLICY)],
    );
    let _watcher = watch(&f.legate, polling());
    let (code, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(code, 200, "{body}");

    let v1 = policy_for_repo("43");
    configmap_version(
        &dir,
        "v1",
        &[
            ("standard.cedar", v1.as_str()),
            (legate_policy::SCHEMA_FILE, legate_policy::BUNDLED_SCHEMA),
        ],
    );
    configmap_swap(&dir, "v1");
    std::fs::remove_dir_all(dir.join("..v0")).unwrap();
    let status = wait_for_count(&f.legate, "reloads", 1).await;
    assert_eq!(status["reload_failures"], 0, "{status:#}");
    let (code, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    f.legate.assert_rejected(code, &body, "no_permit");
    let token = f.token(&json!({"repository_id": "43"}));
    let (code, body) = f.legate.exchange(&token, TARGET, None).await;
    assert_eq!(code, 200, "{body}");
}

/// `SIGHUP` reloads at once, without waiting for (or needing) the poller.
#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_the_policy_set() {
    let f = Fixture::start().await;
    let _watcher = watch(
        &f.legate,
        WatchOptions {
            interval: None,
            sighup: true,
        },
    );
    put(
        &f.legate.policy_dir(),
        "standard.cedar",
        &policy_for_repo("43"),
    );
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    wait_for_count(&f.legate, "reloads", 1).await;
    let token = f.token(&json!({"repository_id": "43"}));
    let (code, body) = f.legate.exchange(&token, TARGET, None).await;
    assert_eq!(code, 200, "{body}");
}

/// One of the two policy sets of the race test: `name` (`a` or `b`) permits
/// repository 42 on `allow` only and forbids `deny`. Each file carries a shadow policy
/// named after its set, so every decision names the set of both files it used.
fn race_set(name: &str, allow: &str, deny: &str) -> [(String, String); 2] {
    [
        (
            "one.cedar".to_owned(),
            format!(
                r#"@id("{name}-permit")
                   @allow_lint("unscoped-issuer: every test issuer mints repository 42")
                   permit (principal, action, resource == Legate::Target::"{allow}")
                   when {{ principal.claims has repository_id && principal.claims.repository_id == "42" }};
                   @id("{name}-watch-one") @mode("shadow") forbid (principal, action, resource);"#
            ),
        ),
        (
            "two.cedar".to_owned(),
            format!(
                r#"@id("{name}-guard") forbid (principal, action, resource == Legate::Target::"{deny}");
                   @id("{name}-watch-two") @mode("shadow") forbid (principal, action, resource);"#
            ),
        ),
    ]
}

/// Stops a request from being decided by a half-loaded or mixed policy set: while the
/// set is swapped back and forth between A (target X only) and B (target Y only), a
/// stream of exchanges from several tasks must each be answered exactly as A or exactly
/// as B would answer it, with every policy its audit event names from that one set,
/// and never fail.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exchanges_racing_reloads_are_each_decided_by_exactly_one_set() {
    const TASKS: usize = 4;
    const PER_TASK: usize = 30;
    const SWAPS: usize = 40;
    let f = Arc::new(
        Fixture::start_with(|s| {
            let mut other = TargetSpec::standard();
            other.name = OTHER.to_owned();
            other.audience = "https://other.example.com".to_owned();
            s.targets.push(other);
        })
        .await,
    );
    let dir = f.legate.policy_dir();
    let a = race_set("a", TARGET, OTHER);
    let b = race_set("b", OTHER, TARGET);
    fn files(set: &[(String, String); 2]) -> Vec<(&str, &str)> {
        let mut files: Vec<(&str, &str)> =
            set.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
        files.push((legate_policy::SCHEMA_FILE, legate_policy::BUNDLED_SCHEMA));
        files
    }
    as_configmap(&dir, &["one.cedar", "two.cedar"], &files(&a)[..2]);
    configmap_version(&dir, "a", &files(&a));
    configmap_version(&dir, "b", &files(&b));
    let reloader = f.legate.state.policy_reloader().clone();
    configmap_swap(&dir, "a");
    reloader.reload("test").await.unwrap();

    let swapper = {
        let dir = dir.clone();
        let reloader = reloader.clone();
        tokio::spawn(async move {
            for i in 0..SWAPS {
                configmap_swap(&dir, if i % 2 == 0 { "b" } else { "a" });
                reloader.reload("test").await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for i in 0..PER_TASK {
                let target = if (i + t) % 2 == 0 { TARGET } else { OTHER };
                let token = f.token(&json!({}));
                let (code, body) = f.legate.exchange(&token, target, None).await;
                let event = match code {
                    200 => f
                        .legate
                        .event_of_minted(body["access_token"].as_str().unwrap()),
                    400 => f.legate.assert_rejected(code, &body, "forbidden"),
                    _ => panic!("exchange failed during reloads: {code} {body}"),
                };
                seen.push((target, code, event));
            }
            seen
        }));
    }
    let mut answered_by = [0usize; 2];
    for task in tasks {
        for (target, code, event) in task.await.unwrap() {
            let mut ids = event.policy_ids.clone();
            ids.extend(event.shadow.iter().map(|s| s.policy_id.clone()));
            let set = &ids[0][..1];
            assert!(
                ids.iter().all(|id| id.starts_with(set)),
                "a decision named policies of two sets: {ids:?}"
            );
            assert_eq!(
                ids.len(),
                3,
                "one determining and two shadow policies: {ids:?}"
            );
            // A allows X only; B allows Y only.
            let allowed = code == 200;
            let expected = (set == "a") == (target == TARGET);
            assert_eq!(allowed, expected, "set {set}, target {target}: {event:#?}");
            assert_eq!(event.decision == Outcome::Allow, allowed);
            answered_by[usize::from(set == "b")] += 1;
        }
    }
    swapper.await.unwrap();
    assert_eq!(answered_by.iter().sum::<usize>(), TASKS * PER_TASK);
    let status = policy_status(&f.legate).await;
    assert_eq!(status["reloads"], SWAPS + 1);
    assert_eq!(status["reload_failures"], 0);
}
