//! Prometheus metrics for `GET /metrics` on the operator listener.
//!
//! What it does: holds one registry of Legate's metrics, counts each exchange once (from
//! its audit event, [`Metrics::record_exchange`]), and renders the registry in the
//! Prometheus text exposition format 0.0.4 ([`CONTENT_TYPE`]). Gauges and counters that
//! mirror state kept elsewhere (the audit queue, the credential and replay caches) are
//! read at scrape time ([`Metrics::render`]), so the request path pays nothing for them.
//!
//! What it does not do: no OpenMetrics negotiation, no push, no process metrics.
//!
//! SECURITY: every label value is bounded. Trust and target labels are names from the
//! configuration: a name the request made up (an unknown `audience`, an issuer no trust
//! claims) becomes [`UNKNOWN`], never the raw input. Reasons are the fixed audit reason
//! codes. Subjects, `jti`s, tokens and client addresses are never labels.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::audit::{AuditEvent, Outcome};

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

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

    /// Brings the mirrored metrics up to `snapshot` and renders the registry in the text
    /// format 0.0.4.
    pub fn render(&self, snapshot: &Snapshot) -> Result<String, MetricsError> {
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
        }
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|_| MetricsError::Utf8)
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
            .render(&Snapshot {
                audit_queue_depth: 3,
                credential_cache_hits: 7,
                replay_cache_entries: 2,
                trusts: vec![TrustSnapshot {
                    name: "corp".to_owned(),
                    keys: 2,
                    age_secs: Some(41),
                    fetch_failing: true,
                }],
                ..Snapshot::default()
            })
            .unwrap();
        assert_eq!(CONTENT_TYPE, "text/plain; version=0.0.4");
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
        let text = m.render(&Snapshot::default()).unwrap();
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
    fn mirrored_counters_advance_by_the_difference_and_never_go_back() {
        let m = metrics();
        let at = |hits| Snapshot {
            credential_cache_hits: hits,
            ..Snapshot::default()
        };
        m.render(&at(5)).unwrap();
        m.render(&at(5)).unwrap();
        let text = m.render(&at(9)).unwrap();
        assert!(
            text.contains("legate_credential_cache_hits_total 9"),
            "{text}"
        );
        let text = m.render(&at(4)).unwrap();
        assert!(
            text.contains("legate_credential_cache_hits_total 9"),
            "{text}"
        );
    }
}
