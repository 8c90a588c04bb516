//! Audit events: one JSON object per token-exchange request.
//!
//! SECURITY: an event never holds a token, a signature or key material. The subject
//! token appears only as its SHA-256, so an operator can correlate a report with a
//! token they hold without the log becoming a token store. Attacker-controlled strings
//! (unverified issuer, `kid`) are escaped and truncated before they get here.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde::Serialize;

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
    /// Handling time, microseconds.
    pub latency_us: u64,
}

/// Where audit events go.
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Records one event. Must not block for long: it runs on the request path.
    fn record(&self, event: &AuditEvent);
}

/// JSON lines to a writer (standard output or a file).
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
