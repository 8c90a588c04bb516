//! Prometheus metrics for `GET /metrics` on the operator listener.
//!
//! What it does: holds one registry of Legate's metrics, counts each exchange once (from
//! its audit event, [`Metrics::record_exchange`]) with the time of each of its steps
//! ([`StepTimer`], [`Metrics::record_steps`]), times every real cloud call
//! ([`MeteredProvider`], below the credential cache), and renders the registry in the
//! Prometheus text exposition format 0.0.4 ([`CONTENT_TYPE`]) or, when the scraper's
//! `Accept` asks for it, OpenMetrics 1.0 ([`openmetrics`], [`Format::negotiate`]).
//! Gauges and counters that mirror state kept elsewhere (the audit queue, the credential
//! and replay caches, the trusts' key fetches, the state backend's errors) are read at
//! scrape time ([`Metrics::render`]), so the request path pays nothing for them.
//!
//! What it does not do: no push, no process metrics, no exemplars.
//!
//! Layout: this file (the registry, [`Step`], [`MeteredProvider`]) and `openmetrics`
//! (the `Accept` negotiation and the OpenMetrics 1.0 encoder).
//!
//! SECURITY: every label value is bounded. Trust and target labels are names from the
//! configuration: a name the request made up (an unknown `audience`, an issuer no trust
//! claims) becomes [`UNKNOWN`], never the raw input. Reasons are the fixed audit reason
//! codes. Subjects, `jti`s, tokens and client addresses are never labels.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use legate_core::UnixSeconds;
use legate_sts::{
    BoxFuture, Credential, CredentialProvider, ExchangeError, IssueRequest, TargetKind,
};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::audit::{AuditEvent, Outcome};
use crate::clock::Stopwatch;

pub mod openmetrics;

pub use openmetrics::Format;

/// The `Content-Type` of the text format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Buckets of the step histograms, in seconds: most steps take microseconds, a key fetch
/// or a cloud call seconds.
const STEP_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The reasons of [`ExchangeError::reason_code`], for the error series created at start.
const CLOUD_ERROR_REASONS: [&str; 3] = ["cloud_refused", "cloud_unavailable", "mint_failed"];

/// Buckets of the cloud call histogram, in seconds (the default whole-call deadline is
/// 10 s; a target may allow more).
const CLOUD_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The label value for a trust or target that is not in the configuration, and for a
/// reason that is not a well-formed reason code.
pub const UNKNOWN: &str = "unknown";

/// The longest reason code used as a label value; a longer one becomes [`UNKNOWN`].
const MAX_REASON_LEN: usize = 64;

/// Why the metrics could not be registered or rendered.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The Prometheus library refused a metric definition or the encoding.
    #[error("prometheus: {0}")]
    Prometheus(#[from] prometheus::Error),
    /// The encoder produced bytes that are not UTF-8.
    #[error("metrics text is not utf-8")]
    Utf8,
}

/// Legate's metrics registry.
pub struct Metrics {
    registry: Registry,
    trusts: HashSet<String>,
    targets: HashSet<String>,
    exchanges: IntCounterVec,
    exchange_duration: HistogramVec,
    audit_queue_depth: IntGauge,
    audit_queue_capacity: IntGauge,
    audit_written: IntCounter,
    audit_refused_queue_full: IntCounter,
    audit_dropped_queue_full: IntCounter,
    credential_cache_hits: IntCounter,
    credential_cache_misses: IntCounter,
    credential_cache_entries: IntGauge,
    replay_cache_entries: IntGauge,
    trust_keys: IntGaugeVec,
    trust_keys_age: IntGaugeVec,
    trust_fetch_failing: IntGaugeVec,
    step_duration: HistogramVec,
    jwks_fetches: IntCounterVec,
    jwks_fetch_failures: IntCounterVec,
    jwks_kids_added: IntCounterVec,
    jwks_kids_removed: IntCounterVec,
    cloud_call_duration: HistogramVec,
    cloud_call_errors: IntCounterVec,
    state_backend_errors: IntCounterVec,
    /// Serialises scrapes: the counters mirrored from elsewhere are advanced by the
    /// difference since the last scrape, which two concurrent scrapes would count twice.
    scrape: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("trusts", &self.trusts)
            .field("targets", &self.targets)
            .finish_non_exhaustive()
    }
}

/// What [`Metrics::render`] reads at scrape time, gathered by the caller.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Audit events waiting for the writer.
    pub audit_queue_depth: u64,
    /// The audit queue's capacity.
    pub audit_queue_capacity: u64,
    /// Audit events written so far.
    pub audit_written: u64,
    /// Exchanges refused because the audit queue was full.
    pub audit_refused_queue_full: u64,
    /// Audit events dropped because the queue was full.
    pub audit_dropped_queue_full: u64,
    /// Credential cache hits so far.
    pub credential_cache_hits: u64,
    /// Credential cache misses so far.
    pub credential_cache_misses: u64,
    /// Credential cache entries now (approximate).
    pub credential_cache_entries: u64,
    /// Replay cache entries now (approximate).
    pub replay_cache_entries: u64,
    /// Each trust's key status.
    pub trusts: Vec<TrustSnapshot>,
    /// The state backend's errors since start, per operation.
    pub state_errors: Vec<(legate_state::StateOp, u64)>,
}

/// One trust's keys at scrape time.
#[derive(Debug, Clone, Default)]
pub struct TrustSnapshot {
    /// The configured trust name.
    pub name: String,
    /// Usable keys now.
    pub keys: u64,
    /// Seconds since the current key set was fetched; `None` before the first fetch.
    pub age_secs: Option<u64>,
    /// Whether the last fetch failed.
    pub fetch_failing: bool,
    /// What the trust's key fetches did since start.
    pub fetches: legate_trust::FetchCounts,
}

/// One step of a token exchange, as timed by [`StepTimer`] (see [`crate::token`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Reading and parsing the form (the body is read from the client here), finding
    /// the target.
    Parse,
    /// Reading the token's shape, getting the trust's keys (a fetch, when needed) and
    /// verifying; the actor token too, if any.
    Verify,
    /// Policy evaluation and shaping the grant.
    Policy,
    /// The subject's and the target's rate limits.
    RateLimit,
    /// Recording `(iss, jti)` in the replay cache.
    Replay,
    /// Issuing through the target's provider (credential cache, cloud call, minting).
    Issue,
    /// Reserving the audit slot, and handing the event to the audit queue at the end.
    Audit,
}

impl Step {
    /// Every step, in path order.
    pub const ALL: [Step; 7] = [
        Step::Parse,
        Step::Verify,
        Step::Policy,
        Step::RateLimit,
        Step::Replay,
        Step::Issue,
        Step::Audit,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Step::Parse => "parse",
            Step::Verify => "verify",
            Step::Policy => "policy",
            Step::RateLimit => "ratelimit",
            Step::Replay => "replay",
            Step::Issue => "issue",
            Step::Audit => "audit",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// Times the steps of one exchange: [`enter`](Self::enter) closes the current step and
/// opens the next; a step entered twice (the audit step) adds up. A step that failed is
/// timed like one that succeeded: the exchange ends in it, and [`finish`](Self::finish)
/// closes it.
#[derive(Debug, Default)]
pub struct StepTimer {
    current: Option<(Step, Stopwatch)>,
    spent: [Option<Duration>; Step::ALL.len()],
}

impl StepTimer {
    /// Closes the current step, if any, and starts timing `step`.
    pub fn enter(&mut self, step: Step) {
        self.finish();
        self.current = Some((step, Stopwatch::start()));
    }

    /// Closes the current step, if any.
    pub fn finish(&mut self) {
        if let Some((step, watch)) = self.current.take()
            && let Some(slot) = self.spent.get_mut(step.index())
        {
            *slot = Some(slot.unwrap_or_default().saturating_add(watch.elapsed()));
        }
    }

    /// The steps entered so far, with their time.
    pub fn spent(&self) -> impl Iterator<Item = (Step, Duration)> + '_ {
        Step::ALL
            .into_iter()
            .zip(self.spent.iter())
            .filter_map(|(step, spent)| spent.map(|d| (step, d)))
    }
}

impl Metrics {
    /// Registers every metric. `trusts` and `targets` are the configured names: the only
    /// values their labels may take besides [`UNKNOWN`].
    pub fn new(
        trusts: impl IntoIterator<Item = String>,
        targets: impl IntoIterator<Item = String>,
    ) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let exchanges = IntCounterVec::new(
            Opts::new(
                "legate_exchanges_total",
                "Token exchanges by decision (allow, deny, error), audit reason code, trust and target.",
            ),
            &["decision", "reason", "trust", "target"],
        )?;
        let exchange_duration = HistogramVec::new(
            HistogramOpts::new(
                "legate_exchange_duration_seconds",
                "Time from receiving a token exchange to its audit event, by target.",
            ),
            &["target"],
        )?;
        let step_duration = HistogramVec::new(
            HistogramOpts::new(
                "legate_exchange_step_duration_seconds",
                "Time spent in each step of a token exchange (parse, verify, policy, ratelimit, replay, issue, audit); a refused exchange counts the steps it reached.",
            )
            .buckets(STEP_BUCKETS.to_vec()),
            &["step"],
        )?;
        for step in Step::ALL {
            let _series: Histogram = step_duration.with_label_values(&[step.as_str()]);
        }
        let cloud_call_duration = HistogramVec::new(
            HistogramOpts::new(
                "legate_cloud_call_duration_seconds",
                "Time of each call to a cloud's token service (retries included; cache hits make none), by target and kind.",
            )
            .buckets(CLOUD_BUCKETS.to_vec()),
            &["target", "kind"],
        )?;
        let counters = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let per_trust =
            |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["trust"]);
        let gauge = |name: &str, help: &str| IntGauge::new(name, help);
        let counter = |name: &str, help: &str| IntCounter::new(name, help);
        let metrics = Self {
            trusts: trusts.into_iter().collect(),
            targets: targets.into_iter().collect(),
            audit_queue_depth: gauge(
                "legate_audit_queue_depth",
                "Audit events waiting for the writer.",
            )?,
            audit_queue_capacity: gauge(
                "legate_audit_queue_capacity",
                "The audit queue's capacity; exchanges are refused with 503 when it is full.",
            )?,
            audit_written: counter(
                "legate_audit_events_written_total",
                "Audit events handed to the sink.",
            )?,
            audit_refused_queue_full: counter(
                "legate_audit_refused_queue_full_total",
                "Exchanges refused with 503 because the audit queue was full.",
            )?,
            audit_dropped_queue_full: counter(
                "legate_audit_dropped_queue_full_total",
                "Audit events of refused requests dropped because the queue was full.",
            )?,
            credential_cache_hits: counter(
                "legate_credential_cache_hits_total",
                "Exchanges served a cached cloud credential.",
            )?,
            credential_cache_misses: counter(
                "legate_credential_cache_misses_total",
                "Exchanges that found no cached credential and called the cloud.",
            )?,
            credential_cache_entries: gauge(
                "legate_credential_cache_entries",
                "Cloud credentials cached now (approximate).",
            )?,
            replay_cache_entries: gauge(
                "legate_replay_cache_entries",
                "Single-use token ids held by the replay cache now (approximate).",
            )?,
            trust_keys: per_trust(
                "legate_trust_keys",
                "Usable upstream keys in the trust's current set.",
            )?,
            trust_keys_age: per_trust(
                "legate_trust_keys_age_seconds",
                "Seconds since the trust's current key set was fetched (static sets: since start).",
            )?,
            trust_fetch_failing: per_trust(
                "legate_trust_fetch_failing",
                "1 when the trust's last key fetch failed (the previous keys stay in use while stale-if-error allows), else 0.",
            )?,
            jwks_fetches: counters(
                "legate_jwks_fetches_total",
                "Key fetch attempts per trust (discovery, when used, then the JWKS), whatever their outcome.",
                &["trust"],
            )?,
            jwks_fetch_failures: counters(
                "legate_jwks_fetch_failures_total",
                "Failed key fetches per trust and reason (jwks_transport, jwks_http_status, jwks_invalid, ...).",
                &["trust", "reason"],
            )?,
            jwks_kids_added: counters(
                "legate_jwks_kids_added_total",
                "Key ids a refresh found that the trust's previous key set did not have (the first fetch counts none).",
                &["trust"],
            )?,
            jwks_kids_removed: counters(
                "legate_jwks_kids_removed_total",
                "Key ids of the trust's previous key set that a refresh no longer found.",
                &["trust"],
            )?,
            cloud_call_errors: counters(
                "legate_cloud_call_errors_total",
                "Failed calls to a cloud's token service by target, kind and reason (cloud_refused, cloud_unavailable, mint_failed).",
                &["target", "kind", "reason"],
            )?,
            state_backend_errors: counters(
                "legate_state_backend_errors_total",
                "Failed operations of the state backend (replay cache, rate limits, revocations, ledger) by operation.",
                &["op"],
            )?,
            step_duration,
            cloud_call_duration,
            exchanges,
            exchange_duration,
            registry,
            scrape: Mutex::new(()),
        };
        metrics.register_all()?;
        Ok(metrics)
    }

    fn register_all(&self) -> Result<(), MetricsError> {
        let r = &self.registry;
        r.register(Box::new(self.exchanges.clone()))?;
        r.register(Box::new(self.exchange_duration.clone()))?;
        r.register(Box::new(self.step_duration.clone()))?;
        r.register(Box::new(self.cloud_call_duration.clone()))?;
        for c in [
            &self.jwks_fetches,
            &self.jwks_fetch_failures,
            &self.jwks_kids_added,
            &self.jwks_kids_removed,
            &self.cloud_call_errors,
            &self.state_backend_errors,
        ] {
            r.register(Box::new(c.clone()))?;
        }
        for g in [
            &self.trust_keys,
            &self.trust_keys_age,
            &self.trust_fetch_failing,
        ] {
            r.register(Box::new(g.clone()))?;
        }
        for g in [
            &self.audit_queue_depth,
            &self.audit_queue_capacity,
            &self.credential_cache_entries,
            &self.replay_cache_entries,
        ] {
            r.register(Box::new(g.clone()))?;
        }
        for c in [
            &self.audit_written,
            &self.audit_refused_queue_full,
            &self.audit_dropped_queue_full,
            &self.credential_cache_hits,
            &self.credential_cache_misses,
        ] {
            r.register(Box::new(c.clone()))?;
        }
        Ok(())
    }

    /// Counts one exchange from its audit event.
    pub fn record_exchange(&self, event: &AuditEvent) {
        let decision = match event.decision {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Error => "error",
        };
        let trust = bounded(event.trust.as_deref(), &self.trusts);
        let target = bounded(event.target.as_deref(), &self.targets);
        let reason = reason_label(&event.reason);
        self.exchanges
            .with_label_values(&[decision, reason, trust, target])
            .inc();
        #[expect(
            clippy::cast_precision_loss,
            reason = "a latency in microseconds fits an f64 exactly below 2^53 (285 years)"
        )]
        let seconds = event.latency_us as f64 / 1e6;
        let histogram: Histogram = self.exchange_duration.with_label_values(&[target]);
        histogram.observe(seconds);
    }

    /// Creates the cloud call series of `target` (of a cloud `kind`) at zero, so that
    /// rates and error ratios exist before its first call.
    pub fn init_cloud_target(&self, target: &str, kind: TargetKind) {
        let target = bounded(Some(target), &self.targets);
        let kind = kind.as_str();
        let _series: Histogram = self.cloud_call_duration.with_label_values(&[target, kind]);
        for reason in CLOUD_ERROR_REASONS {
            let _series = self
                .cloud_call_errors
                .with_label_values(&[target, kind, reason]);
        }
    }

    /// Observes the time of each step one exchange reached.
    pub fn record_steps(&self, steps: &StepTimer) {
        for (step, spent) in steps.spent() {
            self.step_duration
                .with_label_values(&[step.as_str()])
                .observe(spent.as_secs_f64());
        }
    }

    /// Counts one call to a cloud's token service for `target` (a configured name) of
    /// `kind`, which took `seconds` and failed with `error`, if it did.
    pub fn record_cloud_call(
        &self,
        target: &str,
        kind: TargetKind,
        seconds: f64,
        error: Option<&ExchangeError>,
    ) {
        let target = bounded(Some(target), &self.targets);
        let kind = kind.as_str();
        self.cloud_call_duration
            .with_label_values(&[target, kind])
            .observe(seconds);
        if let Some(e) = error {
            self.cloud_call_errors
                .with_label_values(&[target, kind, e.reason_code()])
                .inc();
        }
    }

    /// Brings the mirrored metrics up to `snapshot` and renders the registry in
    /// `format`.
    pub fn render(&self, snapshot: &Snapshot, format: Format) -> Result<String, MetricsError> {
        let _scrape = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        set(&self.audit_queue_depth, snapshot.audit_queue_depth);
        set(&self.audit_queue_capacity, snapshot.audit_queue_capacity);
        set(
            &self.credential_cache_entries,
            snapshot.credential_cache_entries,
        );
        set(&self.replay_cache_entries, snapshot.replay_cache_entries);
        advance(&self.audit_written, snapshot.audit_written);
        advance(
            &self.audit_refused_queue_full,
            snapshot.audit_refused_queue_full,
        );
        advance(
            &self.audit_dropped_queue_full,
            snapshot.audit_dropped_queue_full,
        );
        advance(&self.credential_cache_hits, snapshot.credential_cache_hits);
        advance(
            &self.credential_cache_misses,
            snapshot.credential_cache_misses,
        );
        for t in &snapshot.trusts {
            let trust = bounded(Some(&t.name), &self.trusts);
            set(&self.trust_keys.with_label_values(&[trust]), t.keys);
            if let Some(age) = t.age_secs {
                set(&self.trust_keys_age.with_label_values(&[trust]), age);
            }
            set(
                &self.trust_fetch_failing.with_label_values(&[trust]),
                u64::from(t.fetch_failing),
            );
            let f = &t.fetches;
            advance(&self.jwks_fetches.with_label_values(&[trust]), f.fetches);
            advance(
                &self.jwks_kids_added.with_label_values(&[trust]),
                f.kids_added,
            );
            advance(
                &self.jwks_kids_removed.with_label_values(&[trust]),
                f.kids_removed,
            );
            for (reason, n) in &f.failures {
                advance(
                    &self
                        .jwks_fetch_failures
                        .with_label_values(&[trust, reason_label(reason)]),
                    *n,
                );
            }
        }
        for (op, n) in &snapshot.state_errors {
            advance(
                &self.state_backend_errors.with_label_values(&[op.as_str()]),
                *n,
            );
        }
        let families = self.registry.gather();
        match format {
            Format::Text => {
                let mut buf = Vec::new();
                TextEncoder::new().encode(&families, &mut buf)?;
                String::from_utf8(buf).map_err(|_| MetricsError::Utf8)
            }
            Format::OpenMetrics => Ok(openmetrics::encode(&families)),
        }
    }
}

/// A cloud provider timed and counted per call ([`Metrics::record_cloud_call`]). It sits
/// below the credential cache, so only real calls to the cloud are measured.
#[derive(Debug)]
pub struct MeteredProvider {
    metrics: Arc<Metrics>,
    kind: TargetKind,
    inner: Arc<dyn CredentialProvider>,
}

impl MeteredProvider {
    /// `inner`, which issues credentials of `kind`, metered into `metrics`.
    pub fn new(
        metrics: Arc<Metrics>,
        kind: TargetKind,
        inner: Arc<dyn CredentialProvider>,
    ) -> Self {
        Self {
            metrics,
            kind,
            inner,
        }
    }
}

impl CredentialProvider for MeteredProvider {
    fn issue<'a>(
        &'a self,
        request: IssueRequest<'a>,
        now: UnixSeconds,
    ) -> BoxFuture<'a, Result<Credential, ExchangeError>> {
        Box::pin(async move {
            let target = request.target;
            let watch = Stopwatch::start();
            let result = self.inner.issue(request, now).await;
            self.metrics.record_cloud_call(
                &target.name,
                self.kind,
                watch.elapsed_secs(),
                result.as_ref().err(),
            );
            result
        })
    }
}

/// `value` when it is one of the configured `names`, else [`UNKNOWN`].
// SECURITY: the raw request text never becomes a label (unbounded series, log injection
// into the scraper).
fn bounded<'a>(value: Option<&'a str>, names: &HashSet<String>) -> &'a str {
    match value {
        Some(v) if names.contains(v) => v,
        _ => UNKNOWN,
    }
}

/// The reason code when it looks like one (`[a-z0-9_]`, at most 64 bytes), else
/// [`UNKNOWN`]. Every reason is a fixed code today; this keeps it so.
fn reason_label(reason: &str) -> &str {
    let well_formed = !reason.is_empty()
        && reason.len() <= MAX_REASON_LEN
        && reason
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if well_formed { reason } else { UNKNOWN }
}

fn set(gauge: &IntGauge, value: u64) {
    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
}

/// Advances `counter` to `total` (a counter kept elsewhere); never backwards.
fn advance(counter: &IntCounter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn metrics() -> Metrics {
        Metrics::new(["corp".to_owned()], ["aws-prod".to_owned()]).unwrap()
    }

    fn event(decision: Outcome, reason: &str, trust: &str, target: &str) -> AuditEvent {
        AuditEvent {
            decision,
            reason: reason.to_owned(),
            trust: Some(trust.to_owned()),
            target: Some(target.to_owned()),
            subject: Some("repo:acme/secret-subject".to_owned()),
            jti: Some("jti-abc123".to_owned()),
            latency_us: 1_500,
            ..AuditEvent::default()
        }
    }

    #[test]
    fn render_counts_exchanges_in_text_format_0_0_4() {
        let m = metrics();
        m.record_exchange(&event(Outcome::Allow, "permitted", "corp", "aws-prod"));
        m.record_exchange(&event(Outcome::Allow, "permitted", "corp", "aws-prod"));
        m.record_exchange(&event(Outcome::Deny, "bad_signature", "corp", "aws-prod"));
        let text = m
            .render(
                &Snapshot {
                    audit_queue_depth: 3,
                    credential_cache_hits: 7,
                    replay_cache_entries: 2,
                    trusts: vec![TrustSnapshot {
                        name: "corp".to_owned(),
                        keys: 2,
                        age_secs: Some(41),
                        fetch_failing: true,
                        fetches: legate_trust::FetchCounts {
                            fetches: 5,
                            failures: [("jwks_transport", 2)].into_iter().collect(),
                            kids_added: 3,
                            kids_removed: 1,
                        },
                    }],
                    state_errors: vec![(legate_state::StateOp::ReplayRecord, 4)],
                    ..Snapshot::default()
                },
                Format::Text,
            )
            .unwrap();
        for line in [
            r#"legate_jwks_fetches_total{trust="corp"} 5"#,
            r#"legate_jwks_fetch_failures_total{reason="jwks_transport",trust="corp"} 2"#,
            r#"legate_jwks_kids_added_total{trust="corp"} 3"#,
            r#"legate_jwks_kids_removed_total{trust="corp"} 1"#,
            r#"legate_state_backend_errors_total{op="replay_record"} 4"#,
            // Every step's series exists from the start.
            r#"legate_exchange_step_duration_seconds_count{step="parse"} 0"#,
            r#"legate_exchange_step_duration_seconds_count{step="audit"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing: {text}");
        }
        assert_eq!(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
        assert!(
            text.contains("# TYPE legate_exchanges_total counter"),
            "{text}"
        );
        assert!(
            text.contains(
                r#"legate_exchanges_total{decision="allow",reason="permitted",target="aws-prod",trust="corp"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"legate_exchanges_total{decision="deny",reason="bad_signature",target="aws-prod",trust="corp"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"legate_exchange_duration_seconds_count{target="aws-prod"} 3"#),
            "{text}"
        );
        assert!(text.contains("legate_audit_queue_depth 3"), "{text}");
        assert!(
            text.contains("legate_credential_cache_hits_total 7"),
            "{text}"
        );
        assert!(text.contains("legate_replay_cache_entries 2"), "{text}");
        assert!(
            text.contains(r#"legate_trust_keys{trust="corp"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"legate_trust_keys_age_seconds{trust="corp"} 41"#),
            "{text}"
        );
        assert!(
            text.contains(r#"legate_trust_fetch_failing{trust="corp"} 1"#),
            "{text}"
        );
    }

    /// Stops an attacker from creating unbounded time series (or smuggling text into the
    /// scraper) with made-up audiences, issuers and reasons, and keeps subjects and token
    /// ids out of the metrics.
    #[test]
    fn unknown_names_and_subjects_never_become_labels() {
        let m = metrics();
        m.record_exchange(&event(
            Outcome::Error,
            "Bad\"reason\n",
            "attacker-trust",
            "audience-from-request\"} 1\n",
        ));
        let text = m.render(&Snapshot::default(), Format::Text).unwrap();
        assert!(
            text.contains(
                r#"legate_exchanges_total{decision="error",reason="unknown",target="unknown",trust="unknown"} 1"#
            ),
            "{text}"
        );
        for secret in [
            "attacker",
            "audience-from-request",
            "secret-subject",
            "jti-abc123",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }

    #[test]
    fn steps_and_cloud_calls_are_observed_with_bounded_labels() {
        let m = metrics();
        let mut steps = StepTimer::default();
        steps.enter(Step::Parse);
        steps.enter(Step::Audit);
        steps.enter(Step::Verify);
        steps.enter(Step::Audit);
        steps.finish();
        let spent: Vec<Step> = steps.spent().map(|(s, _)| s).collect();
        assert_eq!(spent, [Step::Parse, Step::Verify, Step::Audit]);
        m.record_steps(&steps);
        m.record_cloud_call("aws-prod", TargetKind::Aws, 0.2, None);
        let refused = ExchangeError::TargetRefused {
            cloud: "aws",
            code: "AccessDenied-from-the-cloud".into(),
            request_id: None,
            message: "no".into(),
        };
        m.record_cloud_call("not-configured", TargetKind::Aws, 0.3, Some(&refused));
        let text = m.render(&Snapshot::default(), Format::Text).unwrap();
        for line in [
            r#"legate_exchange_step_duration_seconds_count{step="parse"} 1"#,
            r#"legate_exchange_step_duration_seconds_count{step="verify"} 1"#,
            r#"legate_exchange_step_duration_seconds_count{step="audit"} 1"#,
            r#"legate_exchange_step_duration_seconds_count{step="issue"} 0"#,
            r#"legate_cloud_call_duration_seconds_count{kind="aws",target="aws-prod"} 1"#,
            r#"legate_cloud_call_duration_seconds_count{kind="aws",target="unknown"} 1"#,
            r#"legate_cloud_call_errors_total{kind="aws",reason="cloud_refused",target="unknown"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing: {text}");
        }
        // The cloud's own text is never a label.
        assert!(!text.contains("AccessDenied"), "{text}");
        assert!(!text.contains("not-configured"), "{text}");
    }

    #[test]
    fn openmetrics_rendering_ends_with_eof_and_names_counters_without_total() {
        let m = metrics();
        m.record_exchange(&event(Outcome::Allow, "permitted", "corp", "aws-prod"));
        let text = m.render(&Snapshot::default(), Format::OpenMetrics).unwrap();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE legate_exchanges counter\n"), "{text}");
        assert!(
            text.contains("# UNIT legate_exchange_step_duration_seconds seconds\n"),
            "{text}"
        );
        assert!(
            text.contains(
                r#"legate_exchanges_total{decision="allow",reason="permitted",target="aws-prod",trust="corp"} 1"#
            ),
            "{text}"
        );
    }

    #[test]
    fn mirrored_counters_advance_by_the_difference_and_never_go_back() {
        let m = metrics();
        let at = |hits| Snapshot {
            credential_cache_hits: hits,
            ..Snapshot::default()
        };
        m.render(&at(5), Format::Text).unwrap();
        m.render(&at(5), Format::Text).unwrap();
        let text = m.render(&at(9), Format::Text).unwrap();
        assert!(
            text.contains("legate_credential_cache_hits_total 9"),
            "{text}"
        );
        let text = m.render(&at(4), Format::Text).unwrap();
        assert!(
            text.contains("legate_credential_cache_hits_total 9"),
            "{text}"
        );
    }
}
