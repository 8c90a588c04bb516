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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A credential was issued.
    Allow,
    /// The token or the policy refused the exchange (the default: fail closed).
    #[default]
    Deny,
    /// The request was malformed or Legate failed.
    Error,
}

/// One audit event.
#[derive(Debug, Clone, Serialize, Default)]
pub struct AuditEvent {
    /// Unix seconds.
    pub ts: i64,
    /// `token_exchange`, or `admin_access` for the admin endpoints ([`crate::admin`]).
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
    /// The `@allow_lint` exceptions of the determining policies, each
    /// `<policy id>: <lint id>: <reason>` (legate-policy `Decision::lint_exceptions`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lint_exceptions: Vec<String>,
    /// The shadow policies (`@mode("shadow")`) that matched or erred, with what each
    /// would have done; they did not change `decision`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shadow: Vec<legate_policy::ShadowOutcome>,
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

/// Where audit events go. Called on the audit writer thread only.
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Records one event. May block (a slow disk, a full pipe): only the writer thread
    /// waits, never a request.
    fn record(&self, event: &AuditEvent);

    /// Records the events that were waiting together, in order (at most
    /// [`MAX_WRITE_BATCH`]). The default records them one by one; a sink that writes to a
    /// file or pipe writes them with one call.
    fn record_batch(&self, events: &[AuditEvent]) {
        for event in events {
            self.record(event);
        }
    }
}

/// The most events the writer hands a sink at once: under load it takes what is already
/// queued, up to this many, so that a busy gateway writes (and flushes) once per batch
/// instead of once per event, and an idle one still writes each event at once.
pub const MAX_WRITE_BATCH: usize = 256;

/// How long the writer waits after a batch that was not full before it looks at the
/// queue again. Under load the events of that millisecond then go out as one batch and
/// no request pays for waking the writer; an event is at most this much later on disk.
/// The queue bound ([`AuditLog::start`]'s capacity) still holds: a request finding the
/// queue full is refused, as always.
pub const WRITER_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// JSON lines to a writer (standard output or a file), written and flushed once per batch
/// (each event on its own when the gateway is idle; see [`MAX_WRITE_BATCH`]).
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
        self.record_batch(std::slice::from_ref(event));
    }

    fn record_batch(&self, events: &[AuditEvent]) {
        let mut lines = Vec::with_capacity(events.len() * 512);
        for event in events {
            let start = lines.len();
            if serde_json::to_writer(&mut lines, event).is_err() {
                // Only the partial line goes; the rest of the batch is still written.
                lines.truncate(start);
                tracing::error!(request_id = %event.request_id, "audit event could not be serialised");
                continue;
            }
            lines.push(b'\n');
        }
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = out.write_all(&lines).and_then(|()| out.flush()) {
            tracing::error!(error = %e, events = events.len(), "audit events could not be written");
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
                let mut batch = Vec::with_capacity(MAX_WRITE_BATCH);
                loop {
                    // Take what is queued; park only when nothing is.
                    while batch.len() < MAX_WRITE_BATCH {
                        match rx.try_recv() {
                            Ok(event) => batch.push(event),
                            Err(_) => break,
                        }
                    }
                    if batch.is_empty() {
                        match rx.blocking_recv() {
                            Some(event) => {
                                batch.push(event);
                                continue;
                            }
                            None => break,
                        }
                    }
                    sink.record_batch(&batch);
                    writer_stats
                        .written
                        .fetch_add(batch.len() as u64, Ordering::Release);
                    let full = batch.len() == MAX_WRITE_BATCH;
                    batch.clear();
                    // Under load, let the next events gather for a moment instead of
                    // parking: a parked writer must be woken (a system call on the
                    // request path) for every event. Not after a full batch: the queue
                    // is then already long.
                    if !full {
                        std::thread::sleep(WRITER_PAUSE);
                    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::Condvar;

    use super::*;

    fn event(n: usize) -> AuditEvent {
        AuditEvent {
            event: "token_exchange",
            request_id: format!("req-{n}"),
            reason: "permitted".to_owned(),
            ..AuditEvent::default()
        }
    }

    /// A writer that keeps what it is given.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_batch_is_written_as_one_line_per_event_in_order() {
        let out = Shared::default();
        let sink = JsonLinesSink::new(Box::new(out.clone()));
        sink.record_batch(&[event(1), event(2), event(3)]);
        sink.record(&event(4));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let ids: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"].to_string()
            })
            .collect();
        assert_eq!(ids, ["\"req-1\"", "\"req-2\"", "\"req-3\"", "\"req-4\""]);
    }

    /// A sink that holds its first call until released, and notes every batch.
    #[derive(Debug, Default)]
    struct HeldSink {
        entered: std::sync::atomic::AtomicBool,
        released: Mutex<bool>,
        wake: Condvar,
        batches: Mutex<Vec<Vec<String>>>,
    }

    impl AuditSink for HeldSink {
        fn record(&self, event: &AuditEvent) {
            self.record_batch(std::slice::from_ref(event));
        }
        fn record_batch(&self, events: &[AuditEvent]) {
            self.entered.store(true, Ordering::Release);
            let mut released = self.released.lock().unwrap();
            while !*released {
                released = self.wake.wait(released).unwrap();
            }
            drop(released);
            let ids = events.iter().map(|e| e.request_id.clone()).collect();
            self.batches.lock().unwrap().push(ids);
        }
    }

    /// Events that queue up while the sink is busy go out together, in order, and none is
    /// lost; a batch never exceeds MAX_WRITE_BATCH.
    #[test]
    fn events_queued_behind_a_busy_sink_are_written_together_in_order() {
        let sink = Arc::new(HeldSink::default());
        let log = AuditLog::start(sink.clone(), 1_024).unwrap();
        log.reserve().unwrap().record(event(0));
        // Wait until the writer is inside the sink with the first event, so that the
        // next ones queue behind it.
        while !sink.entered.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        let total = MAX_WRITE_BATCH + 10;
        for n in 1..=total {
            log.reserve().unwrap().record(event(n));
        }
        *sink.released.lock().unwrap() = true;
        sink.wake.notify_all();
        while !log.is_flushed() {
            std::thread::yield_now();
        }
        let batches = sink.batches.lock().unwrap().clone();
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, MAX_WRITE_BATCH, 10]);
        let ids: Vec<String> = batches.into_iter().flatten().collect();
        let expected: Vec<String> = (0..=total).map(|n| format!("req-{n}")).collect();
        assert_eq!(ids, expected);
        assert_eq!(
            log.stats().written.load(Ordering::Acquire),
            total as u64 + 1
        );
    }
}
