//! The accept loop: HTTP/1 on hyper, with every limit explicit.
//!
//! What it does: accepts TCP connections and serves a [`Router`] on each, under the
//! limits of [`ServerLimits`] (from `[server]`):
//!
//! - **Connections** (`max_connections`): a connection is accepted only with a permit in
//!   hand. At the cap the loop stops accepting; new connections wait in the kernel's
//!   listen backlog (costing Legate nothing) and are accepted as slots free, or time out
//!   on the client's side if the backlog overflows. Accept-and-close was rejected: it
//!   spends a syscall pair per attempt and answers legitimate clients no better. Every
//!   slot is freed within the deadlines below, so the queue drains.
//! - **Request heads** (`header_read_timeout_secs`): a new connection must deliver its
//!   first head within the deadline of the accept; a kept-alive connection must
//!   deliver a head within the deadline of its first byte. A slow or silent client is
//!   disconnected. Heads larger than [`MAX_HEAD_BYTES`] get `431`.
//! - **Idle connections** (`idle_timeout_secs`): a kept-alive connection whose next
//!   request does not start within the deadline is closed.
//! - **Request bodies** (`body_read_timeout_secs`): the whole body must arrive within the
//!   deadline of the end of the head, however it trickles. Past it the body reads fail
//!   (the token handler answers `400 invalid_request`) and the connection is closed.
//! - **Requests in flight** (`max_in_flight`): beyond the cap a request is shed at once
//!   with `503 temporarily_unavailable` and `Retry-After`; it never queues.
//!   `/healthz` is exempt (liveness must not fail because the server is busy).
//! - **Whole requests** (`request_timeout_secs`): a request not answered within the
//!   deadline of its head gets `503 temporarily_unavailable`; its handler is dropped.
//! - **Shutdown** (`shutdown_grace_secs`): on the shutdown signal the listener closes,
//!   idle connections close, in-flight requests get the grace period to finish (their
//!   connections then close), and whatever is left is dropped.
//!
//! What it does not do: TLS (terminate it in front of Legate), HTTP/2, routing.
//!
//! hyper's header-read timer starts whenever a connection waits for a head, including
//! between kept-alive requests; [`HeadTimer`] is the timer hyper is given, and turns that
//! single deadline into the two above (idle until the first byte, then the head deadline).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, header};
use axum::response::{IntoResponse, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use legate_core::exchange::OAuthErrorCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::{ServiceBuilder, ServiceExt as _};

use crate::config::ServerConfig;
use crate::error::ApiError;

/// The largest request head (request line and headers) read, in bytes; larger heads are
/// answered `431` and the connection closed. It also bounds each connection's read
/// buffer, and so the memory a slow client can pin.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The `Retry-After` of a shed or timed-out request, in seconds.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Accept errors back off from this…
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// …doubling up to this.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Limits of one listener. See the module documentation for what happens at each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Open connections.
    pub max_connections: usize,
    /// Requests being handled.
    pub max_in_flight: usize,
    /// Deadline of a request head.
    pub header_read_timeout: Duration,
    /// Deadline of a request body, from the end of its head.
    pub body_read_timeout: Duration,
    /// Deadline of a kept-alive connection's next request.
    pub idle_timeout: Duration,
    /// Deadline of a whole request, from the end of its head.
    pub request_timeout: Duration,
    /// Time in-flight requests get after the shutdown signal.
    pub shutdown_grace: Duration,
}

impl ServerLimits {
    /// The limits of `[server]`.
    pub fn from_config(server: &ServerConfig) -> Self {
        Self {
            max_connections: server.max_connections,
            max_in_flight: server.max_in_flight,
            header_read_timeout: Duration::from_secs(server.header_read_timeout_secs),
            body_read_timeout: Duration::from_secs(server.body_read_timeout_secs),
            idle_timeout: Duration::from_secs(server.idle_timeout_secs),
            request_timeout: Duration::from_secs(server.request_timeout_secs),
            shutdown_grace: Duration::from_secs(server.shutdown_grace_secs),
        }
    }

    /// The operator listener's limits: the public deadlines, with small caps (it serves
    /// a handful of scrapers and humans).
    pub fn operator(public: &Self) -> Self {
        Self {
            max_connections: public.max_connections.min(OPERATOR_MAX_CONNECTIONS),
            max_in_flight: public.max_in_flight.min(OPERATOR_MAX_IN_FLIGHT),
            ..*public
        }
    }
}

/// The operator listener's connection cap.
pub const OPERATOR_MAX_CONNECTIONS: usize = 64;
/// The operator listener's in-flight cap.
pub const OPERATOR_MAX_IN_FLIGHT: usize = 16;

/// One listener's capacity and what it met: the semaphores that enforce the caps, and
/// counters of each limit reached. Shared by the accept loop and `/status`.
#[derive(Debug)]
pub struct ServerStats {
    limits: ServerLimits,
    connections: Arc<Semaphore>,
    in_flight: Arc<Semaphore>,
    accepted: AtomicU64,
    accept_errors: AtomicU64,
    head_timeouts: AtomicU64,
    body_timeouts: AtomicU64,
    shed: AtomicU64,
    request_timeouts: AtomicU64,
}

/// A point-in-time copy of [`ServerStats`], as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    /// Connections open now.
    pub connections_open: usize,
    /// The connection cap.
    pub max_connections: usize,
    /// Requests being handled now.
    pub requests_in_flight: usize,
    /// The in-flight cap.
    pub max_in_flight: usize,
    /// Connections accepted since start.
    pub connections_accepted: u64,
    /// Accept errors (descriptor exhaustion and the like) since start.
    pub accept_errors: u64,
    /// Connections closed waiting for a head: slow heads and idle connections.
    pub head_timeouts: u64,
    /// Request bodies cut off at the body deadline.
    pub body_timeouts: u64,
    /// Requests shed at the in-flight cap.
    pub requests_shed: u64,
    /// Requests cut off at the whole-request deadline.
    pub request_timeouts: u64,
}

impl ServerStats {
    /// Fresh counters and caps of `limits`.
    pub fn new(limits: ServerLimits) -> Self {
        Self {
            limits,
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            accepted: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            head_timeouts: AtomicU64::new(0),
            body_timeouts: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            request_timeouts: AtomicU64::new(0),
        }
    }

    /// The limits.
    pub fn limits(&self) -> &ServerLimits {
        &self.limits
    }

    /// The current values.
    pub fn snapshot(&self) -> StatsSnapshot {
        let used = |sem: &Semaphore, max: usize| max.saturating_sub(sem.available_permits());
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            connections_open: used(&self.connections, self.limits.max_connections),
            max_connections: self.limits.max_connections,
            requests_in_flight: used(&self.in_flight, self.limits.max_in_flight),
            max_in_flight: self.limits.max_in_flight,
            connections_accepted: get(&self.accepted),
            accept_errors: get(&self.accept_errors),
            head_timeouts: get(&self.head_timeouts),
            body_timeouts: get(&self.body_timeouts),
            requests_shed: get(&self.shed),
            request_timeouts: get(&self.request_timeouts),
        }
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Serves `app` on `listener` under `stats`' limits until `shutdown` completes, then
/// drains (see the module documentation). Requests to `exempt` (a path) skip the
/// in-flight cap and the request deadline.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    stats: Arc<ServerStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    exempt: Option<&'static str>,
) -> std::io::Result<()> {
    let limits = stats.limits;
    let stack = ServiceBuilder::new()
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::with_semaphore(
            stats.in_flight.clone(),
        ))
        .timeout(limits.request_timeout)
        .service(app.clone());
    let shared = Arc::new(Shared {
        app,
        stack,
        stats: stats.clone(),
        exempt,
    });
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        // INVARIANT: a connection is accepted only with a permit in hand; at the cap the
        // loop waits here and the kernel's backlog holds new connections.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = stats.connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => {
                backoff = ACCEPT_BACKOFF_MIN;
                conn
            }
            // The peer gave up between SYN and accept: nothing is wrong here.
            Err(e) if is_per_connection(&e) => continue,
            // Descriptor or memory exhaustion (EMFILE, ENFILE, ENOBUFS): retrying at once
            // would spin; back off and let connections close.
            Err(e) => {
                ServerStats::count(&stats.accept_errors);
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis(), "accept failed; backing off");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = backoff.saturating_mul(2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        ServerStats::count(&stats.accepted);
        while connections.try_join_next().is_some() {}
        let shared = shared.clone();
        let drain = drain_rx.clone();
        connections.spawn(async move {
            let _permit = permit;
            serve_connection(stream, peer, shared, drain).await;
        });
    }
    drop(listener);
    let _ = drain_tx.send(true);
    let open = connections.len();
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open,
            left = connections.len(),
            grace_secs = limits.shutdown_grace.as_secs(),
            "shutdown grace period over: dropping the remaining connections"
        );
        connections.shutdown().await;
    }
    Ok(())
}

fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    )
}

type Stack =
    tower::load_shed::LoadShed<tower::limit::ConcurrencyLimit<tower::timeout::Timeout<Router>>>;

/// What every connection of one listener shares.
#[derive(Debug)]
struct Shared {
    app: Router,
    stack: Stack,
    stats: Arc<ServerStats>,
    exempt: Option<&'static str>,
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut drain: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let limits = shared.stats.limits;
    let watch = Arc::new(ConnWatch::default());
    let io = TokioIo::new(Watched {
        inner: stream,
        watch: watch.clone(),
    });
    let stats = shared.stats.clone();
    let service = hyper::service::service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(request, peer, &shared).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(HeadTimer {
            watch,
            header: limits.header_read_timeout,
            idle: limits.idle_timeout,
        })
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let mut conn = pin!(builder.serve_connection(io, service));
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = async { drop(drain.wait_for(|draining| *draining).await) } => {
            // Closes the connection if idle; otherwise lets the request in flight finish
            // and closes after its response. The accept loop bounds the wait.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            ServerStats::count(&stats.head_timeouts);
        }
        tracing::debug!(error = %e, "connection closed with an error");
    }
}

async fn handle(request: Request<Incoming>, peer: SocketAddr, shared: &Shared) -> Response {
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(ConnectInfo(peer));
    let body = Body::new(DeadlineBody {
        body,
        deadline: Box::pin(tokio::time::sleep(shared.stats.limits.body_read_timeout)),
        stats: shared.stats.clone(),
    });
    let request = Request::from_parts(parts, body);
    if shared
        .exempt
        .is_some_and(|path| request.uri().path() == path)
    {
        return match shared.app.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
    }
    match shared.stack.clone().oneshot(request).await {
        Ok(response) => response,
        Err(e) if e.is::<tower::load_shed::error::Overloaded>() => {
            ServerStats::count(&shared.stats.shed);
            tracing::debug!("request shed: too many in flight");
            unavailable("too many requests in flight; retry shortly")
        }
        Err(e) if e.is::<tower::timeout::error::Elapsed>() => {
            ServerStats::count(&shared.stats.request_timeouts);
            tracing::warn!("request timed out");
            unavailable("the request took too long; retry shortly")
        }
        Err(e) => {
            tracing::error!(error = %e, "request failed outside its handler");
            ApiError::new(
                OAuthErrorCode::ServerError,
                "internal error",
                &legate_issuer::random_uuid().to_string(),
            )
            .into_response()
        }
    }
}

/// `503 temporarily_unavailable` (RFC 6749 §5.2 body) with `Retry-After`.
fn unavailable(description: &'static str) -> Response {
    let request_id = legate_issuer::random_uuid().to_string();
    let mut response = ApiError::new(
        OAuthErrorCode::TemporarilyUnavailable,
        description,
        &request_id,
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}

// ---- the body deadline ---------------------------------------------------------------

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyReadError {
    /// The body did not arrive within `body_read_timeout_secs`.
    #[error("request body not received within {0} s")]
    Deadline(u64),
    /// The connection failed.
    #[error("reading the request body: {0}")]
    Read(#[from] hyper::Error),
}

/// A request body that fails once its deadline passes.
///
/// SECURITY: the deadline is fixed when the head is read and never moves, so a body
/// trickled a byte at a time cannot hold a connection and a handler longer than it.
/// (tower-http's `RequestBodyTimeout` resets its timer at each frame, which a trickle
/// defeats.)
struct DeadlineBody {
    body: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    stats: Arc<ServerStats>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = BodyReadError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyReadError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(BodyReadError::Read)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            ServerStats::count(&this.stats.body_timeouts);
            let secs = this.stats.limits.body_read_timeout.as_secs();
            return Poll::Ready(Some(Err(BodyReadError::Deadline(secs))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

// ---- head and idle deadlines ---------------------------------------------------------

/// What one connection's reads show: how many returned bytes.
#[derive(Debug, Default)]
struct ConnWatch {
    reads: AtomicU64,
    head_waits: AtomicU64,
}

/// A connection's socket, counting the reads that returned bytes.
#[derive(Debug)]
struct Watched {
    inner: TcpStream,
    watch: Arc<ConnWatch>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.watch.reads.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The timer hyper is given for one connection.
///
/// INVARIANT: hyper's HTTP/1 server uses its timer for the header-read timeout only, and
/// asks for a new sleep each time the connection starts waiting for a request head (at
/// the accept, and after each response). The first wait gets the head deadline from
/// the start. Later waits are idle until a read returns bytes, with the idle deadline;
/// from that read on, the head deadline. `tests/it/limits.rs` holds both.
#[derive(Debug, Clone)]
struct HeadTimer {
    watch: Arc<ConnWatch>,
    header: Duration,
    idle: Duration,
}

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        TokioTimer::new().sleep(duration)
    }

    fn sleep_until(&self, _deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let first = self.watch.head_waits.fetch_add(1, Ordering::Relaxed) == 0;
        Box::pin(HeadSleep::new(
            self.watch.clone(),
            first,
            self.header,
            self.idle,
        ))
    }
}

/// The deadline of one wait for a request head.
#[derive(Debug)]
struct HeadSleep {
    sleep: Pin<Box<tokio::time::Sleep>>,
    watch: Arc<ConnWatch>,
    /// The read count when the wait began, while no byte of the head has arrived.
    idle_at_reads: Option<u64>,
    header: Duration,
}

impl HeadSleep {
    fn new(watch: Arc<ConnWatch>, first: bool, header: Duration, idle: Duration) -> Self {
        let (idle_at_reads, wait) = if first {
            (None, header)
        } else {
            (Some(watch.reads.load(Ordering::Relaxed)), idle)
        };
        Self {
            sleep: Box::pin(tokio::time::sleep(wait)),
            watch,
            idle_at_reads,
            header,
        }
    }
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Some(reads) = this.idle_at_reads
            && this.watch.reads.load(Ordering::Relaxed) != reads
        {
            // SECURITY: the head has started; from now on it has the head deadline,
            // fixed here, however slowly the rest trickles in.
            this.idle_at_reads = None;
            let deadline = tokio::time::Instant::now() + this.header;
            this.sleep.as_mut().reset(deadline);
        }
        this.sleep.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for HeadSleep {}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer as _;

    fn timer() -> HeadTimer {
        HeadTimer {
            watch: Arc::new(ConnWatch::default()),
            header: Duration::from_secs(5),
            idle: Duration::from_secs(60),
        }
    }

    /// What hyper passes (and [`HeadTimer`] ignores): the deadline it computed.
    fn wait_start() -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }

    fn read(timer: &HeadTimer) {
        timer.watch.reads.fetch_add(1, Ordering::Relaxed);
    }

    /// Polls `sleep` once (as hyper does after each read) and reports whether it fired.
    fn fired(sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>) -> bool {
        let waker = std::task::Waker::noop();
        sleep
            .as_mut()
            .poll(&mut Context::from_waker(waker))
            .is_ready()
    }

    async fn advance(secs: u64) {
        tokio::time::advance(Duration::from_secs(secs)).await;
    }

    /// Stops a client that connects and sends nothing from holding a connection slot
    /// longer than the head deadline.
    #[tokio::test(start_paused = true)]
    async fn a_new_connection_gets_the_head_deadline_from_the_accept() {
        let t = timer();
        let mut sleep = t.sleep_until(wait_start());
        advance(4).await;
        assert!(!fired(&mut sleep));
        advance(2).await;
        assert!(fired(&mut sleep));
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_alive_connection_may_idle_past_the_head_deadline() {
        let t = timer();
        drop(t.sleep_until(wait_start()));
        let mut sleep = t.sleep_until(wait_start());
        advance(30).await;
        assert!(!fired(&mut sleep), "idle, not slow");
        advance(31).await;
        assert!(fired(&mut sleep), "idle past the idle deadline");
    }

    /// Stops slowloris on a kept-alive connection: once the next head has started, it
    /// has the head deadline from its first byte, and later bytes do not extend it.
    #[tokio::test(start_paused = true)]
    async fn a_started_head_gets_the_head_deadline_from_its_first_byte() {
        let t = timer();
        drop(t.sleep_until(wait_start()));
        let mut sleep = t.sleep_until(wait_start());
        advance(20).await;
        read(&t);
        assert!(!fired(&mut sleep));
        for _ in 0..4 {
            advance(1).await;
            read(&t);
            assert!(!fired(&mut sleep));
        }
        advance(2).await;
        assert!(
            fired(&mut sleep),
            "5 s after the first byte, whatever trickled since"
        );
    }

    #[test]
    fn operator_limits_keep_the_deadlines_and_cap_small() {
        let public = ServerLimits {
            max_connections: 4096,
            max_in_flight: 1024,
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(20),
        };
        let op = ServerLimits::operator(&public);
        assert_eq!(op.max_connections, OPERATOR_MAX_CONNECTIONS);
        assert_eq!(op.max_in_flight, OPERATOR_MAX_IN_FLIGHT);
        assert_eq!(op.header_read_timeout, public.header_read_timeout);
    }
}
