//! The HTTP plumbing every fake shares.
//!
//! A fake is an axum router served on `127.0.0.1:0` (plain HTTP) by an accept loop this
//! module owns, so that [`Fault::Down`] can really close the listener (new connections
//! are refused) and cut every open connection, and lifting the fault binds the same
//! port again. In front of the router sits one middleware, the gate: it buffers and
//! records the request (bounded history), counts it per endpoint, applies the fault
//! knob, and classifies the handler's answer (success or refusal).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use legate_core::{Clock, UnixSeconds};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

/// The largest request body a fake reads; a larger one is answered 413 without being
/// recorded. (AWS caps `WebIdentityToken` at 20,000 characters; nothing a client sends
/// legitimately comes near this.)
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// How many requests a fake remembers for [`requests`](crate::AwsFake::requests); older
/// ones are dropped first.
pub const HISTORY: usize = 256;

/// A failure a test injects into a fake, settable at any time with `set_fault`.
///
/// The counted faults (`ServerErrorThen`, `Throttle`, `IdpCommunicationError`) answer
/// the next `n` requests with the fault, then the fake behaves normally again (the knob
/// reads [`Fault::None`] once spent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Normal behaviour.
    #[default]
    None,
    /// The listener is closed and every open connection cut: connections are refused
    /// (as from a service that is down or unreachable) until another fault is set, which
    /// binds the same port again.
    Down,
    /// Every request waits this long before it is handled (a slow service, for timeout
    /// tests; the client giving up cancels the wait).
    Slow(Duration),
    /// The next `n` requests get an HTTP 503 in the service's error envelope.
    ServerErrorThen(u32),
    /// The next `n` requests are throttled: AWS answers 400 `Throttling` ("Rate
    /// exceeded"); Google and Entra answer 429 with `Retry-After: 1`.
    Throttle(u32),
    /// AWS only: the next `n` requests get 400 `IDPCommunicationError`, what STS answers
    /// when it cannot reach the identity provider's keys. The other fakes refuse this
    /// knob with [`FaultError::Unsupported`].
    IdpCommunicationError(u32),
}

/// Why `set_fault` failed.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// The fault does not exist for this service.
    #[error("the {service} fake has no `{fault}` fault")]
    Unsupported {
        /// The service.
        service: &'static str,
        /// The fault's name.
        fault: &'static str,
    },
    /// Lifting [`Fault::Down`] could not bind the fake's port again.
    #[error("cannot listen on `{addr}` again: {source}")]
    Reopen {
        /// The fake's address.
        addr: SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
    /// The fake's server task is gone.
    #[error("the fake's server task has stopped")]
    Stopped,
}

/// Where a fake listens unless told otherwise: a free port on loopback.
pub(crate) const ANY_LOOPBACK_PORT: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    0,
));

/// Why a fake did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Binding `127.0.0.1:0` failed.
    #[error("cannot listen on 127.0.0.1: {0}")]
    Bind(#[from] std::io::Error),
    /// Binding a given address failed (it is taken, or not local).
    #[error("cannot listen on `{addr}`: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// The bind error ([`std::io::ErrorKind::AddrInUse`] when the port is taken).
        source: std::io::Error,
    },
    /// The configuration is not one the fake (or the real service) accepts.
    #[error("invalid fake configuration: {0}")]
    Config(String),
    /// The HTTP client for discovery and JWKS could not be built.
    #[error("cannot build the http client: {0}")]
    Client(String),
}

/// Request counters of one endpoint (or all of them), as a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Requests that reached the fake (refused connections under [`Fault::Down`] never
    /// do).
    pub requests: u64,
    /// Requests answered by the service logic with a 2xx (a credential was issued).
    pub succeeded: u64,
    /// Requests answered by the service logic with an error (4xx or 5xx).
    pub refused: u64,
    /// Requests answered by an injected fault instead of the service logic.
    pub faulted: u64,
}

impl Stats {
    fn add(&mut self, other: &Stats) {
        self.requests += other.requests;
        self.succeeded += other.succeeded;
        self.refused += other.refused;
        self.faulted += other.faulted;
    }
}

/// One request as the fake received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `POST`, ...
    pub method: String,
    /// The path, percent-encoded as sent.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// Every header, names lowercase, in order (values that are not UTF-8 are replaced
    /// lossily).
    pub headers: Vec<(String, String)>,
    /// The body (lossy UTF-8).
    pub body: String,
    /// The endpoint it was counted under (`sts`, `iam`, `token`, `other`).
    pub endpoint: &'static str,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as `application/x-www-form-urlencoded`, every pair in order.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.body.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// The first form value named `name`.
    pub fn form_value(&self, name: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// What an injected fault answers with; each fake renders it in its own envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultAnswer {
    ServerError,
    Throttle,
    IdpCommunicationError,
}

/// The per-fake parts of the gate.
pub(crate) struct Profile {
    /// The service's name, for errors.
    pub service: &'static str,
    /// Whether [`Fault::IdpCommunicationError`] exists for it.
    pub idp_fault: bool,
    /// The endpoint label of a path.
    pub classify: fn(&str) -> &'static str,
    /// The answer to an injected fault, at time `now`.
    pub answer: fn(FaultAnswer, UnixSeconds) -> Response,
}

/// State shared by the gate and the fake's handle.
pub(crate) struct Shared {
    profile: Profile,
    clock: Arc<dyn Clock>,
    fault: Mutex<Fault>,
    stats: Mutex<BTreeMap<&'static str, Stats>>,
    history: Mutex<VecDeque<RecordedRequest>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("service", &self.profile.service)
            .field("fault", &*lock(&self.fault))
            .finish_non_exhaustive()
    }
}

/// Locks a mutex, ignoring poisoning (the data is counters and records; a panicking
/// test thread must not wedge the fake).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Appends to a bounded history, dropping the oldest entry at the bound.
pub(crate) fn push_bounded<T>(list: &Mutex<VecDeque<T>>, item: T) {
    let mut list = lock(list);
    if list.len() >= HISTORY {
        list.pop_front();
    }
    list.push_back(item);
}

impl Shared {
    fn bump(&self, endpoint: &'static str, f: impl FnOnce(&mut Stats)) {
        f(lock(&self.stats).entry(endpoint).or_default());
    }

    /// Takes one unit of the current fault: what this request gets.
    fn take_fault(&self) -> Gate {
        let mut fault = lock(&self.fault);
        let (gate, next) = match *fault {
            Fault::None | Fault::Down => (Gate::Pass, *fault),
            Fault::Slow(d) => (Gate::Delay(d), *fault),
            Fault::ServerErrorThen(n) => {
                counted(n, FaultAnswer::ServerError, Fault::ServerErrorThen)
            }
            Fault::Throttle(n) => counted(n, FaultAnswer::Throttle, Fault::Throttle),
            Fault::IdpCommunicationError(n) => counted(
                n,
                FaultAnswer::IdpCommunicationError,
                Fault::IdpCommunicationError,
            ),
        };
        *fault = next;
        gate
    }
}

/// One unit of a counted fault: the answer, and the knob afterwards.
fn counted(n: u32, answer: FaultAnswer, again: fn(u32) -> Fault) -> (Gate, Fault) {
    match n {
        0 => (Gate::Pass, Fault::None),
        1 => (Gate::Answer(answer), Fault::None),
        n => (Gate::Answer(answer), again(n - 1)),
    }
}

enum Gate {
    Pass,
    Delay(Duration),
    Answer(FaultAnswer),
}

/// The middleware in front of every fake's router.
async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let endpoint = (shared.profile.classify)(parts.uri.path());
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        shared.bump(endpoint, |s| {
            s.requests += 1;
            s.refused += 1;
        });
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
    };
    push_bounded(
        &shared.history,
        RecordedRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: String::from_utf8_lossy(&bytes).into_owned(),
            endpoint,
        },
    );
    shared.bump(endpoint, |s| s.requests += 1);

    match shared.take_fault() {
        Gate::Answer(answer) => {
            shared.bump(endpoint, |s| s.faulted += 1);
            return (shared.profile.answer)(answer, shared.clock.now());
        }
        Gate::Delay(d) => tokio::time::sleep(d).await,
        Gate::Pass => {}
    }

    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if response.status().is_success() {
        shared.bump(endpoint, |s| s.succeeded += 1);
    } else {
        shared.bump(endpoint, |s| s.refused += 1);
    }
    response
}

enum Control {
    Down(oneshot::Sender<()>),
    Up(oneshot::Sender<std::io::Result<()>>),
}

/// A running fake server: its address, knobs and records.
pub(crate) struct Server {
    addr: SocketAddr,
    url: String,
    shared: Arc<Shared>,
    control: mpsc::Sender<Control>,
    /// Serialises `set_fault` calls; holds whether the listener is closed.
    switch: tokio::sync::Mutex<bool>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("url", &self.url)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Aborting the accept loop drops the listener and every connection task.
        self.task.abort();
    }
}

impl Server {
    /// Binds `listen` (`127.0.0.1:0` unless a caller fixes the port) and serves
    /// `router` behind the gate.
    pub(crate) async fn start(
        router: Router,
        profile: Profile,
        clock: Arc<dyn Clock>,
        listen: SocketAddr,
    ) -> Result<Server, StartError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            profile,
            clock,
            fault: Mutex::new(Fault::None),
            stats: Mutex::new(BTreeMap::new()),
            history: Mutex::new(VecDeque::new()),
        });
        let router = router.layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            gate,
        ));
        let (control, rx) = mpsc::channel(4);
        let task = tokio::spawn(accept_loop(listener, addr, router, rx));
        Ok(Server {
            addr,
            url: format!("http://{addr}"),
            shared,
            control,
            switch: tokio::sync::Mutex::new(false),
            task,
        })
    }

    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The socket address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the fault knob; returns once it is in effect (for [`Fault::Down`]: the
    /// listener is closed and every connection cut).
    pub(crate) async fn set_fault(&self, fault: Fault) -> Result<(), FaultError> {
        if matches!(fault, Fault::IdpCommunicationError(_)) && !self.shared.profile.idp_fault {
            return Err(FaultError::Unsupported {
                service: self.shared.profile.service,
                fault: "IdpCommunicationError",
            });
        }
        let mut down = self.switch.lock().await;
        match (fault, *down) {
            (Fault::Down, false) => {
                *lock(&self.shared.fault) = fault;
                let (ack, done) = oneshot::channel();
                self.control
                    .send(Control::Down(ack))
                    .await
                    .map_err(|_| FaultError::Stopped)?;
                done.await.map_err(|_| FaultError::Stopped)?;
                *down = true;
            }
            (Fault::Down, true) => {}
            (_, true) => {
                // Set the knob before reopening, so the first request sees it.
                *lock(&self.shared.fault) = fault;
                let (ack, done) = oneshot::channel();
                self.control
                    .send(Control::Up(ack))
                    .await
                    .map_err(|_| FaultError::Stopped)?;
                done.await
                    .map_err(|_| FaultError::Stopped)?
                    .map_err(|source| FaultError::Reopen {
                        addr: self.addr,
                        source,
                    })?;
                *down = false;
            }
            (_, false) => *lock(&self.shared.fault) = fault,
        }
        Ok(())
    }

    /// The current fault knob (a spent counted fault reads [`Fault::None`]).
    pub(crate) fn fault(&self) -> Fault {
        *lock(&self.shared.fault)
    }

    /// Counters over every endpoint.
    pub(crate) fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for s in lock(&self.shared.stats).values() {
            total.add(s);
        }
        total
    }

    /// Counters of one endpoint.
    pub(crate) fn stats_for(&self, endpoint: &str) -> Stats {
        lock(&self.shared.stats)
            .get(endpoint)
            .copied()
            .unwrap_or_default()
    }

    /// The last [`HISTORY`] requests, oldest first.
    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.history).iter().cloned().collect()
    }

    /// The most recent request.
    pub(crate) fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.shared.history).back().cloned()
    }
}

enum Event {
    Accepted(std::io::Result<(TcpStream, SocketAddr)>),
    Control(Option<Control>),
    Reaped,
}

/// Accepts connections while up; on `Down` closes the listener and cuts every
/// connection; on `Up` binds the same address again.
async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    router: Router,
    mut control: mpsc::Receiver<Control>,
) {
    let mut listener = Some(listener);
    let mut connections = JoinSet::new();
    loop {
        let event = match &listener {
            Some(l) => tokio::select! {
                accepted = l.accept() => Event::Accepted(accepted),
                message = control.recv() => Event::Control(message),
                Some(_) = connections.join_next(), if !connections.is_empty() => Event::Reaped,
            },
            None => Event::Control(control.recv().await),
        };
        match event {
            Event::Accepted(Ok((stream, _))) => {
                connections.spawn(serve_connection(stream, router.clone()));
            }
            Event::Accepted(Err(_)) => {
                // Out of file descriptors or similar: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Event::Reaped => {}
            Event::Control(None) => return,
            Event::Control(Some(Control::Down(ack))) => {
                listener = None;
                connections.abort_all();
                while connections.join_next().await.is_some() {}
                let _ = ack.send(());
            }
            Event::Control(Some(Control::Up(ack))) => {
                if listener.is_some() {
                    let _ = ack.send(Ok(()));
                } else {
                    match TcpListener::bind(addr).await {
                        Ok(l) => {
                            listener = Some(l);
                            let _ = ack.send(Ok(()));
                        }
                        Err(e) => {
                            let _ = ack.send(Err(e));
                        }
                    }
                }
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, router: Router) {
    let service = TowerToHyperService::new(router);
    // A connection error only ends this connection.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// The methods every fake shares, delegated to its [`Server`].
macro_rules! fake_common {
    ($fake:ty) => {
        impl $fake {
            /// The fake's base URL, `http://127.0.0.1:<port>` (no trailing slash).
            pub fn url(&self) -> &str {
                self.server.url()
            }

            /// The fake's socket address.
            pub fn addr(&self) -> std::net::SocketAddr {
                self.server.addr()
            }

            /// Sets the fault knob; returns once the fault is in effect.
            ///
            /// # Errors
            /// [`FaultError::Unsupported`](crate::FaultError::Unsupported) for a fault
            /// this service does not have; [`FaultError::Reopen`](crate::FaultError::Reopen)
            /// when lifting [`Fault::Down`](crate::Fault::Down) cannot bind the port again.
            pub async fn set_fault(&self, fault: $crate::Fault) -> Result<(), $crate::FaultError> {
                self.server.set_fault(fault).await
            }

            /// The current fault knob (a spent counted fault reads `Fault::None`).
            pub fn fault(&self) -> $crate::Fault {
                self.server.fault()
            }

            /// Request counters over every endpoint.
            pub fn stats(&self) -> $crate::Stats {
                self.server.stats()
            }

            /// The requests received (the last [`HISTORY`](crate::HISTORY)), oldest
            /// first.
            pub fn requests(&self) -> Vec<$crate::RecordedRequest> {
                self.server.requests()
            }

            /// The most recent request received.
            pub fn last_request(&self) -> Option<$crate::RecordedRequest> {
                self.server.last_request()
            }
        }
    };
}
pub(crate) use fake_common;
