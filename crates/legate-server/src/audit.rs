//! Audit events: one JSON object per token-exchange request, written through a bounded
//! queue by a dedicated thread ([`AuditLog`]).
//!
//! SECURITY: an event never holds a token, a signature or key material. The subject
//! token appears only as its SHA-256, so an operator can correlate a report with a
//! token they hold without the log becoming a token store. Attacker-controlled strings
//! (unverified issuer, `kid`) are escaped and truncated before they get here.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::mpsc;

/// The outcome recorded for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A credential was issued.
    Allow,
    /// The token or the policy refused the exchange.
    Deny,
    /// The request was malformed or Legate failed.
    Error,
}

/// One audit event.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    /// Unix seconds.
    pub ts: i64,
    /// Always `token_exchange` for now.
    pub event: &'static str,
    /// Also returned to the client.
    pub request_id: String,
    /// Allow, deny or error.
    pub decision: Outcome,
    /// A stable machine-readable reason (`permitted`, `bad_signature`, `replayed`, …).
    pub reason: String,
    /// The precise reason in words (escaped; never sent to the client).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The trust the token was routed to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust: Option<String>,
    /// The upstream issuer (verified when `decision` is allow or a policy deny).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The upstream subject (only once verified).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The upstream `jti` (only once verified).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The requested target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The determining policies.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy_ids: Vec<String>,
    /// Policy evaluation errors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy_errors: Vec<String>,
    /// The client address after trusted-proxy processing.
    pub source_ip: String,
    /// Lifetime of the issued credential, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifetime_secs: Option<u64>,
    /// `jti` of the issued token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_jti: Option<String>,
    /// Hex SHA-256 of the presented subject token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_token_sha256: Option<String>,
    /// The actor token of a delegated exchange (RFC 8693 `actor_token`): its hash,
    /// trust, issuer, subject and `jti` hash — never the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<crate::actor::ActorAudit>,
    /// The cloud's own error code, when a cloud refused or failed (escaped, bounded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_error_code: Option<String>,
    /// The cloud's request (or correlation) id of the call, when it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_request_id: Option<String>,
    /// Handling time, microseconds.
    pub latency_us: u64,
}

/// Where audit events go. Called on the audit writer thread only, one event at a time.
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Records one event. May block (a slow disk, a full pipe): only the writer thread
    /// waits, never a request.
    fn record(&self, event: &AuditEvent);
}

/// JSON lines to a writer (standard output or a file), flushed after every event.
pub struct JsonLinesSink {
    out: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for JsonLinesSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonLinesSink")
    }
}

impl JsonLinesSink {
    /// Writes to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            out: Mutex::new(out),
        }
    }
}

impl AuditSink for JsonLinesSink {
    fn record(&self, event: &AuditEvent) {
        let Ok(mut line) = serde_json::to_vec(event) else {
            tracing::error!("audit event could not be serialised");
            return;
        };
        line.push(b'\n');
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = out.write_all(&line).and_then(|()| out.flush()) {
            tracing::error!(error = %e, "audit event could not be written");
        }
    }
}

/// The default number of events the audit queue holds.
pub const DEFAULT_QUEUE_CAPACITY: usize = 4_096;

/// Counters of the audit pipeline (for `/status` and, later, metrics).
#[derive(Debug, Default)]
pub struct AuditStats {
    /// Events handed to the sink.
    pub written: AtomicU64,
    /// Exchanges refused with 503 because no queue slot could be reserved before
    /// anything was recorded or issued.
    pub refused_queue_full: AtomicU64,
    /// Events of refused requests that found the queue full and could not be queued.
    /// Nothing was issued for them; each is also logged (without tokens) through
    /// `tracing` at error level.
    pub dropped_queue_full: AtomicU64,
    /// Events queued so far.
    enqueued: AtomicU64,
}

/// The audit log: a bounded queue in front of a dedicated writer thread.
///
/// Requests never touch the sink: they put the event in the queue, and one OS thread
/// (`legate-audit`) drains it into the sink. A stalled sink (full pipe, slow disk) fills
/// the queue and stalls nothing else: `/healthz` and refusals keep answering.
///
/// INVARIANT: no credential is issued without its event. The exchange reserves a slot
/// ([`AuditLog::reserve`]) *before* it records the `(iss, jti)` or issues anything; when
/// the queue is full the exchange is refused with 503 and counted
/// ([`AuditStats::refused_queue_full`]), and a reserved slot can always be filled.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<AuditEvent>,
    capacity: usize,
    stats: Arc<AuditStats>,
}

/// A reserved place in the audit queue: filling it never fails and never waits.
#[derive(Debug)]
pub struct AuditSlot {
    permit: mpsc::OwnedPermit<AuditEvent>,
    stats: Arc<AuditStats>,
}

/// The audit queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the audit queue is full")]
pub struct AuditQueueFull;

impl AuditLog {
    /// Starts the writer thread draining a queue of `capacity` events into `sink`.
    /// The thread ends when every handle to the log is dropped and the queue is empty.
    pub fn start(sink: Arc<dyn AuditSink>, capacity: usize) -> std::io::Result<Self> {
        let capacity = capacity.max(1);
        let (tx, mut rx) = mpsc::channel::<AuditEvent>(capacity);
        let stats = Arc::new(AuditStats::default());
        let writer_stats = stats.clone();
        std::thread::Builder::new()
            .name("legate-audit".to_owned())
            .spawn(move || {
                while let Some(event) = rx.blocking_recv() {
                    sink.record(&event);
                    writer_stats.written.fetch_add(1, Ordering::Release);
                }
            })?;
        Ok(Self {
            tx,
            capacity,
            stats,
        })
    }

    /// Reserves a slot for an event that must not be lost.
    pub fn reserve(&self) -> Result<AuditSlot, AuditQueueFull> {
        match self.tx.clone().try_reserve_owned() {
            Ok(permit) => Ok(AuditSlot {
                permit,
                stats: self.stats.clone(),
            }),
            Err(_) => {
                self.stats
                    .refused_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                Err(AuditQueueFull)
            }
        }
    }

    /// Queues the event of a request that issued nothing. When the queue is full the
    /// event is counted as dropped and its essentials go to the error log instead.
    pub fn record_refusal(&self, event: AuditEvent) {
        match self.tx.try_send(event) {
            Ok(()) => {
                self.stats.enqueued.fetch_add(1, Ordering::Release);
            }
            Err(e) => {
                self.stats
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                let event = e.into_inner();
                tracing::error!(
                    request_id = %event.request_id,
                    decision = ?event.decision,
                    reason = %event.reason,
                    "audit queue full: event not queued"
                );
            }
        }
    }

    /// Events waiting to be written.
    pub fn depth(&self) -> usize {
        self.capacity.saturating_sub(self.tx.capacity())
    }

    /// The queue's capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The counters.
    pub fn stats(&self) -> &AuditStats {
        &self.stats
    }

    /// Whether every event queued so far has reached the sink.
    pub fn is_flushed(&self) -> bool {
        self.stats.written.load(Ordering::Acquire) >= self.stats.enqueued.load(Ordering::Acquire)
    }
}

impl AuditSlot {
    /// Fills the slot.
    pub fn record(self, event: AuditEvent) {
        self.stats.enqueued.fetch_add(1, Ordering::Release);
        self.permit.send(event);
    }
}

/// Keeps events in memory (tests, and the `legate demo` explanation).
#[derive(Debug, Default, Clone)]
pub struct MemorySink {
    events: Arc<Mutex<Vec<AuditEvent>>>,
}

impl MemorySink {
    /// The events recorded so far.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
    /// The events once `done` holds for them, polling for up to `timeout` (events
    /// arrive from the audit writer thread, a moment after the response). Returns the
    /// events as they are at the deadline otherwise. Blocks the calling thread.
    pub fn wait_until(
        &self,
        timeout: std::time::Duration,
        done: impl Fn(&[AuditEvent]) -> bool,
    ) -> Vec<AuditEvent> {
        const STEP: std::time::Duration = std::time::Duration::from_millis(2);
        let mut waited = std::time::Duration::ZERO;
        loop {
            let events = self.events();
            if done(&events) || waited >= timeout {
                return events;
            }
            std::thread::sleep(STEP);
            waited += STEP;
        }
    }

    /// The event of one request.
    pub fn find(&self, request_id: &str) -> Option<AuditEvent> {
        self.events()
            .into_iter()
            .find(|e| e.request_id == request_id)
    }
}

impl AuditSink for MemorySink {
    fn record(&self, event: &AuditEvent) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event.clone());
        }
    }
}
