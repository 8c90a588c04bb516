//! The active policy set, and hot reload.
//!
//! What it does: holds the active [`PolicyEngine`] behind an atomic pointer
//! ([`PolicyReloader::active`]): every request takes one snapshot ([`ActivePolicy`]) at
//! its start and decides with it throughout, so no request ever sees a half-loaded set or
//! two sets. A reload loads the policy folder into a *new* engine through the same
//! function the server uses at start-up ([`crate::app::load_policies`]: parsing, schema
//! validation, lints) on a blocking thread, then swaps it in with one atomic store. A set
//! that fails to load is refused: the last good set stays active, the failure is logged
//! (the error names the file and line), counted, and shown on `/status` with its message.
//!
//! What triggers a reload ([`spawn_watcher`]):
//! - `SIGHUP` (Unix): at once;
//! - a change in the policy folder, seen by a poller every `[policy]
//!   reload_interval_secs` (default 2; 0 disables polling). The poller hashes the
//!   folder's contents, reading through symbolic links, so a Kubernetes ConfigMap update
//!   (an atomic swap of the `..data` symlink) is seen like any edit. A change is loaded
//!   once the folder has stayed the same for one more interval (debounce: an editor
//!   or `kubectl cp` writing several files is loaded once, complete). A folder over
//!   [`MAX_WATCHED_FILES`] files or [`MAX_WATCHED_BYTES`] bytes is not read: that is a
//!   reload failure like any other.
//!
//! The bundled policies (no `[policy] dir`) are compiled in and never reload.
//!
//! Shadow policies are counted per loaded set ([`ActivePolicy::record_shadow`]): the
//! counters start at zero when a set is loaded (`/status` shows since when).
//!
//! What it does not do: reload the configuration file (trusts, targets, keys): only the
//! policy folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use legate_core::Clock;
use legate_core::time::UnixSeconds;
use legate_policy::{Decision, PolicyEngine, PolicyLoadError, Would};
use serde::Serialize;

use crate::config::{Config, PolicySource};

/// The most entries the poller reads in the policy folder (and its subfolders).
pub const MAX_WATCHED_FILES: usize = 4_096;
/// The most bytes the poller reads in the policy folder, all files together.
pub const MAX_WATCHED_BYTES: u64 = 64 * 1024 * 1024;
/// The deepest subfolder the poller descends into (the folder itself is depth 0).
const MAX_WATCHED_DEPTH: usize = 2;

/// The default `[policy] reload_interval_secs`.
pub const DEFAULT_RELOAD_INTERVAL_SECS: u64 = 2;

/// One loaded policy set, as a request sees it. Immutable but for the shadow counters.
#[derive(Debug)]
pub struct ActivePolicy {
    engine: PolicyEngine,
    loaded_at: UnixSeconds,
    /// Shadow policy id → counters, fixed at load (bounded by the set).
    shadow: BTreeMap<String, ShadowCounters>,
}

#[derive(Debug, Default)]
struct ShadowCounters {
    would_allow: AtomicU64,
    would_deny: AtomicU64,
    erred: AtomicU64,
    /// Outcomes that differ from the answer given (would allow a deny, would deny an
    /// allow).
    would_change: AtomicU64,
}

/// One shadow policy's counters, as `/status` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShadowCount {
    /// The shadow policy.
    pub policy_id: String,
    /// Decisions in which it matched and would have allowed.
    pub would_allow: u64,
    /// Decisions in which it matched and would have denied.
    pub would_deny: u64,
    /// Decisions in which it failed to evaluate.
    pub erred: u64,
    /// Of `would_allow` and `would_deny`, those that differ from the answer given.
    pub would_change: u64,
}

impl ActivePolicy {
    /// Wraps a freshly loaded engine, loaded at `loaded_at`.
    pub fn new(engine: PolicyEngine, loaded_at: UnixSeconds) -> Self {
        let shadow = engine
            .shadow_policy_ids()
            .iter()
            .map(|id| (id.clone(), ShadowCounters::default()))
            .collect();
        Self {
            engine,
            loaded_at,
            shadow,
        }
    }

    /// The engine.
    pub fn engine(&self) -> &PolicyEngine {
        &self.engine
    }

    /// When this set was loaded (Unix seconds).
    pub fn loaded_at(&self) -> UnixSeconds {
        self.loaded_at
    }

    /// Counts the shadow outcomes of `decision` (a decision of this set).
    pub fn record_shadow(&self, decision: &Decision) {
        for outcome in &decision.shadow {
            let Some(c) = self.shadow.get(&outcome.policy_id) else {
                continue;
            };
            let counter = match outcome.would {
                Would::Allow => &c.would_allow,
                Would::Deny => &c.would_deny,
                Would::Erred => &c.erred,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let changes = match outcome.would {
                Would::Allow => !decision.allowed,
                Would::Deny => decision.allowed,
                Would::Erred => false,
            };
            if changes {
                c.would_change.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The shadow counters, by policy id.
    pub fn shadow_counts(&self) -> Vec<ShadowCount> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        self.shadow
            .iter()
            .map(|(id, c)| ShadowCount {
                policy_id: id.clone(),
                would_allow: get(&c.would_allow),
                would_deny: get(&c.would_deny),
                erred: get(&c.erred),
                would_change: get(&c.would_change),
            })
            .collect()
    }
}

/// A refused reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadFailure {
    /// When (Unix seconds).
    pub at: UnixSeconds,
    /// When, RFC 3339.
    pub at_rfc3339: String,
    /// Why: the load error, naming the file and line.
    pub message: String,
}

/// What `/status` shows of the policy set and its reloads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyStatus {
    /// Policies in the active set (enforced and shadow).
    pub count: usize,
    /// The active set's hash ([`PolicyEngine::set_hash`]).
    pub set_sha256: String,
    /// When the active set was loaded (Unix seconds).
    pub loaded_at: UnixSeconds,
    /// The same, RFC 3339.
    pub loaded_at_rfc3339: String,
    /// `dir` (reloads) or `bundled` (never reloads).
    pub source: &'static str,
    /// Successful reloads since start.
    pub reloads: u64,
    /// Refused reloads since start.
    pub reload_failures: u64,
    /// The latest refused reload, if any (kept after later successes).
    pub last_failure: Option<ReloadFailure>,
    /// Shadow policies of the active set and their counters since it loaded.
    pub shadow: Vec<ShadowCount>,
}

/// What reloads need: where the policies come from, for which trusts and targets.
#[derive(Debug)]
struct Source {
    config: Config,
    trust_names: Vec<String>,
    dir: PathBuf,
}

/// The active policy set and its reloads. Shared by the request path (one atomic load
/// per request) and the watcher.
#[derive(Debug)]
pub struct PolicyReloader {
    active: ArcSwap<ActivePolicy>,
    /// `None` for the bundled policies.
    source: Option<Source>,
    clock: Arc<dyn Clock>,
    reloads: AtomicU64,
    failures: AtomicU64,
    last_failure: Mutex<Option<ReloadFailure>>,
    /// Serialises reloads: a slow older load can never overwrite a newer one.
    reloading: tokio::sync::Mutex<()>,
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The policies are compiled in.
    #[error("the bundled policies do not reload; set `[policy] dir`")]
    Bundled,
    /// The new set does not load; the last good set stays active.
    #[error("{0}")]
    Load(#[from] PolicyLoadError),
    /// The policy folder could not be read within the watcher's limits.
    #[error("{0}")]
    Folder(String),
    /// The load thread failed.
    #[error("the policy load task failed: {0}")]
    Task(String),
}

impl PolicyReloader {
    /// The reloader of `engine`, loaded just now from `config` for `trust_names`.
    pub fn new(
        engine: PolicyEngine,
        config: &Config,
        trust_names: Vec<String>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let source = match &config.policy {
            PolicySource::Bundled => None,
            PolicySource::Dir(dir) => Some(Source {
                config: config.clone(),
                trust_names,
                dir: dir.clone(),
            }),
        };
        Self {
            active: ArcSwap::from_pointee(ActivePolicy::new(engine, clock.now())),
            source,
            clock,
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_failure: Mutex::new(None),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// The active set: one atomic load. Take it once per request and use it throughout.
    pub fn active(&self) -> Arc<ActivePolicy> {
        self.active.load_full()
    }

    /// The watched policy folder (`None` for the bundled policies).
    pub fn dir(&self) -> Option<&Path> {
        self.source.as_ref().map(|s| s.dir.as_path())
    }

    /// Loads the policy folder into a new set and swaps it in; on failure keeps the
    /// active set, logs, counts and remembers the failure.
    pub async fn reload(&self, cause: &'static str) -> Result<Arc<ActivePolicy>, ReloadError> {
        let Some(source) = &self.source else {
            return Err(ReloadError::Bundled);
        };
        let _serial = self.reloading.lock().await;
        let config = source.config.clone();
        let trusts = source.trust_names.clone();
        let loaded =
            tokio::task::spawn_blocking(move || crate::app::load_policies(&config, &trusts)).await;
        match loaded {
            Ok(Ok(engine)) => Ok(self.install(engine, cause)),
            Ok(Err(e)) => Err(self.refuse(ReloadError::Load(e), cause)),
            Err(e) => Err(self.refuse(ReloadError::Task(e.to_string()), cause)),
        }
    }

    fn install(&self, engine: PolicyEngine, cause: &'static str) -> Arc<ActivePolicy> {
        for w in engine.warnings() {
            tracing::warn!(warning = %w, "policy");
        }
        let active = Arc::new(ActivePolicy::new(engine, self.clock.now()));
        let previous = self.active.swap(active.clone());
        self.reloads.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            cause,
            policies = active.engine().policy_count(),
            set_sha256 = %active.engine().set_hash(),
            previous_sha256 = %previous.engine().set_hash(),
            "policy set reloaded"
        );
        active
    }

    fn refuse(&self, error: ReloadError, cause: &'static str) -> ReloadError {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let at = self.clock.now();
        let message = error.to_string();
        tracing::error!(
            cause,
            error = %message,
            active_sha256 = %self.active.load().engine().set_hash(),
            "policy reload refused; the last good policy set stays active"
        );
        *self
            .last_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(ReloadFailure {
            at,
            at_rfc3339: rfc3339(at),
            message,
        });
        error
    }

    /// What `/status` shows.
    pub fn status(&self) -> PolicyStatus {
        let active = self.active();
        PolicyStatus {
            count: active.engine().policy_count(),
            set_sha256: active.engine().set_hash().to_owned(),
            loaded_at: active.loaded_at(),
            loaded_at_rfc3339: rfc3339(active.loaded_at()),
            source: if self.source.is_some() {
                "dir"
            } else {
                "bundled"
            },
            reloads: self.reloads.load(Ordering::Relaxed),
            reload_failures: self.failures.load(Ordering::Relaxed),
            last_failure: self
                .last_failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            shadow: active.shadow_counts(),
        }
    }
}

/// What starts reloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchOptions {
    /// Poll the folder this often; `None` disables polling.
    pub interval: Option<Duration>,
    /// Reload on `SIGHUP` (Unix).
    pub sighup: bool,
}

impl WatchOptions {
    /// `[policy] reload_interval_secs` of `config`, and `SIGHUP`.
    pub fn from_config(config: &Config) -> Self {
        Self {
            interval: (config.policy_reload_interval_secs > 0)
                .then(|| Duration::from_secs(config.policy_reload_interval_secs)),
            sighup: true,
        }
    }
}

/// Starts the watcher of `reloader` (see the module documentation) until `shutdown`
/// completes. Does nothing for the bundled policies. The `SIGHUP` handler is installed
/// and the folder read once (blocking, at start-up) before this returns, so neither a
/// signal nor a change made afterwards is lost.
pub fn spawn_watcher(
    reloader: Arc<PolicyReloader>,
    options: WatchOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(dir) = reloader.dir().map(Path::to_path_buf) else {
        tracing::info!("bundled policies: hot reload is off");
        return Ok(None);
    };
    let mut hangup = Hangup::new(options.sighup)?;
    // The contents the active set was (just) loaded from: read here, before returning,
    // so that a change made after this call is never taken for the starting point.
    let mut seen = fingerprint(&dir);
    Ok(Some(tokio::spawn(async move {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut pending: Option<Fingerprint> = None;
        let mut tick = options.interval.map(|every| {
            let mut t = tokio::time::interval(every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            let polled = async {
                match tick.as_mut() {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = hangup.recv() => {
                    tracing::info!("SIGHUP: reloading the policy set");
                    let current = fingerprint_blocking(&dir).await;
                    match &current {
                        Ok(_) => {
                            let _ = reloader.reload("sighup").await;
                        }
                        Err(e) => {
                            let _ = reloader.refuse(ReloadError::Folder(e.clone()), "sighup");
                        }
                    }
                    seen = current;
                    pending = None;
                }
                () = polled => {
                    let current = fingerprint_blocking(&dir).await;
                    if current == seen {
                        pending = None;
                        continue;
                    }
                    // INVARIANT (debounce): a change is acted on once two polls in a
                    // row see the same new contents.
                    if pending.as_ref() != Some(&current) {
                        pending = Some(current);
                        continue;
                    }
                    match &current {
                        Ok(_) => {
                            let _ = reloader.reload("policy folder changed").await;
                        }
                        Err(e) => {
                            let _ = reloader
                                .refuse(ReloadError::Folder(e.clone()), "policy folder changed");
                        }
                    }
                    seen = current;
                    pending = None;
                }
            }
        }
    })))
}

/// The `SIGHUP` stream, or nothing.
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn new(enabled: bool) -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            let signal = if enabled {
                Some(tokio::signal::unix::signal(
                    tokio::signal::unix::SignalKind::hangup(),
                )?)
            } else {
                None
            };
            Ok(Self { signal })
        }
        #[cfg(not(unix))]
        {
            let _ = enabled;
            Ok(Self {})
        }
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal
            && signal.recv().await.is_some()
        {
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// SHA-256 over the folder's files (relative path and contents, read through symbolic
/// links), or why the folder could not be read.
type Fingerprint = Result<String, String>;

async fn fingerprint_blocking(dir: &Path) -> Fingerprint {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || fingerprint(&dir))
        .await
        .unwrap_or_else(|e| Err(format!("the policy folder scan failed: {e}")))
}

/// See [`Fingerprint`]. Entries whose names start with `.` are skipped: a ConfigMap's
/// `..data` and `..<timestamp>` folders are reached through the visible symlinks, and
/// editors' swap files are not policies.
fn fingerprint(dir: &Path) -> Fingerprint {
    let mut files = Vec::new();
    collect(dir, Path::new(""), 0, &mut files)?;
    files.sort();
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut total: u64 = 0;
    for (relative, path) in files {
        let bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        total = total.saturating_add(bytes.len() as u64);
        if total > MAX_WATCHED_BYTES {
            return Err(format!(
                "policy folder `{}` holds more than {MAX_WATCHED_BYTES} bytes; it is not read",
                dir.display()
            ));
        }
        let name = relative.to_string_lossy();
        for field in [name.as_bytes(), &bytes] {
            ctx.update(&(field.len() as u64).to_be_bytes());
            ctx.update(field);
        }
    }
    Ok(hex::encode(ctx.finish()))
}

fn collect(
    dir: &Path,
    relative: &Path,
    depth: usize,
    out: &mut Vec<(PathBuf, PathBuf)>,
) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list `{}`: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list `{}`: {e}", dir.display()))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if out.len() >= MAX_WATCHED_FILES {
            return Err(format!(
                "policy folder holds more than {MAX_WATCHED_FILES} files; it is not read"
            ));
        }
        let path = entry.path();
        // Through symbolic links: what a reader of the path would get.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_file() {
            out.push((relative.join(&name), path));
        } else if meta.is_dir() && depth < MAX_WATCHED_DEPTH {
            collect(&path, &relative.join(&name), depth + 1, out)?;
        }
    }
    Ok(())
}

/// Unix seconds as RFC 3339 UTC (`2026-01-15T08:30:00Z`).
pub fn rfc3339(secs: UnixSeconds) -> String {
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(policies: &str) -> PolicyEngine {
        PolicyEngine::from_sources(
            legate_policy::BUNDLED_SCHEMA,
            &[("p.cedar".to_owned(), policies.to_owned())],
            &[],
            &["t".to_owned()],
        )
        .unwrap()
    }

    fn outcome(id: &str, would: Would) -> legate_policy::ShadowOutcome {
        legate_policy::ShadowOutcome {
            policy_id: id.to_owned(),
            effect: legate_policy::ShadowEffect::Forbid,
            would,
            error: None,
        }
    }

    /// Stops the operator's "would change the answer" count from counting outcomes
    /// that agree with the answer given (a shadow deny of a deny changes nothing).
    #[test]
    fn shadow_counters_count_each_outcome_and_only_real_changes() {
        let active = ActivePolicy::new(
            engine(
                r#"@id("w") @mode("shadow") forbid(principal, action, resource);
                   @id("p") @mode("shadow") permit(principal in Legate::Issuer::"t", action, resource)
                       when { principal.subject == "s" };"#,
            ),
            7,
        );
        let decision = |allowed: bool, shadow| Decision {
            allowed,
            policy_ids: Vec::new(),
            errors: Vec::new(),
            reason: legate_policy::DecisionReason::NoPermit,
            lint_exceptions: Vec::new(),
            shadow,
        };
        active.record_shadow(&decision(true, vec![outcome("w", Would::Deny)]));
        active.record_shadow(&decision(false, vec![outcome("w", Would::Deny)]));
        active.record_shadow(&decision(
            false,
            vec![outcome("p", Would::Allow), outcome("w", Would::Erred)],
        ));
        // An id the set does not hold (a decision of another set) is ignored.
        active.record_shadow(&decision(true, vec![outcome("gone", Would::Deny)]));
        let count = |id: &str, allow, deny, erred, change| ShadowCount {
            policy_id: id.to_owned(),
            would_allow: allow,
            would_deny: deny,
            erred,
            would_change: change,
        };
        assert_eq!(
            active.shadow_counts(),
            [count("p", 1, 0, 0, 1), count("w", 0, 2, 1, 1)]
        );
        assert_eq!(active.loaded_at(), 7);
    }

    #[tokio::test]
    async fn bundled_policies_never_reload() {
        let config =
            crate::config::load_str(crate::DEV_CONFIG, "dev.toml", Path::new(".")).unwrap();
        let reloader = PolicyReloader::new(
            engine(
                r#"permit(principal in Legate::Issuer::"t", action, resource)
                   when { principal.subject == "s" };"#,
            ),
            &config,
            vec!["t".to_owned()],
            Arc::new(crate::clock::ManualClock::new(0)),
        );
        assert!(matches!(
            reloader.reload("test").await,
            Err(ReloadError::Bundled)
        ));
        assert!(reloader.dir().is_none());
        let status = reloader.status();
        assert_eq!(status.source, "bundled");
        assert_eq!((status.reloads, status.reload_failures), (0, 0));
        let watcher = spawn_watcher(
            Arc::new(reloader),
            WatchOptions {
                interval: Some(Duration::from_secs(1)),
                sighup: false,
            },
            std::future::pending(),
        );
        assert!(watcher.unwrap().is_none());
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_767_274_200), "2026-01-01T13:30:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    /// Stops a ConfigMap update from going unseen: Kubernetes swaps the `..data`
    /// symlink to a new timestamped folder; the visible file names and the symlinks'
    /// own targets stay the same, only what they resolve to changes.
    #[cfg(unix)]
    #[test]
    fn fingerprint_follows_a_configmap_data_swap() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (version, text) in [("..v1", "one"), ("..v2", "two")] {
            std::fs::create_dir(root.join(version)).unwrap();
            std::fs::write(root.join(version).join("p.cedar"), text).unwrap();
        }
        symlink("..v1", root.join("..data")).unwrap();
        symlink("..data/p.cedar", root.join("p.cedar")).unwrap();
        let before = fingerprint(root).unwrap();
        assert_eq!(before, fingerprint(root).unwrap(), "stable");
        // The atomic swap: a new link renamed over `..data`.
        symlink("..v2", root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        assert_ne!(before, fingerprint(root).unwrap());
    }

    #[test]
    fn fingerprint_sees_edits_new_files_and_renames_but_not_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("a.cedar"), "x").unwrap();
        let a = fingerprint(root).unwrap();
        std::fs::write(root.join(".a.cedar.swp"), "junk").unwrap();
        assert_eq!(a, fingerprint(root).unwrap());
        std::fs::write(root.join("a.cedar"), "y").unwrap();
        let b = fingerprint(root).unwrap();
        assert_ne!(a, b);
        std::fs::rename(root.join("a.cedar"), root.join("b.cedar")).unwrap();
        assert_ne!(b, fingerprint(root).unwrap());
        assert!(fingerprint(&root.join("missing")).is_err());
    }

    /// Stops a runaway folder (a mounted volume of logs, say) from being read whole
    /// every interval: past the file cap the scan stops and reports.
    #[test]
    fn fingerprint_refuses_a_folder_over_the_file_cap() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..=MAX_WATCHED_FILES {
            std::fs::write(dir.path().join(format!("{i}.cedar")), "").unwrap();
        }
        let e = fingerprint(dir.path()).unwrap_err();
        assert!(e.contains("more than 4096 files"), "{e}");
    }
}
