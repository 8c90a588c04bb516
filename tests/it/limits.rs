//! The server's limits (`[server]`): slow clients are cut off, caps hold, and
//! normal exchanges keep succeeding meanwhile; graceful shutdown.
//!
//! Deadlines are configured short (1 s) so that the tests are quick; every wait
//! for Legate to act is bounded generously ([`GENEROUS`]) and no assertion is
//! about how fast it acted. Raw TCP clients play the slow and the holding
//! clients; the harness's HTTP client plays the legitimate workload.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: failing loudly is the point"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::harness::{Fixture, GRANT_TYPE, TARGET, TOKEN_TYPE_JWT};

/// How long a test waits for Legate to do something it must do: far beyond every
/// configured deadline, so that a slow machine does not fail the test.
const GENEROUS: Duration = Duration::from_secs(60);

/// How many slow clients the flood tests hold open.
const ATTACKERS: usize = 300;

/// The tests holding hundreds of sockets run one at a time, so that together they
/// stay well under a default descriptor limit of 1024.
static FLOOD: Semaphore = Semaphore::const_new(1);

/// The interval at which slow clients send their next byte.
const TRICKLE: Duration = Duration::from_millis(200);

/// A form body of a well-formed exchange of `token`.
fn exchange_form(token: &str) -> String {
    format!(
        "grant_type={GRANT_TYPE}&subject_token={token}&subject_token_type={TOKEN_TYPE_JWT}&audience={TARGET}"
    )
}

/// The head of `POST /token` with a form body of `len` bytes.
fn post_head(len: usize, extra: &str) -> String {
    format!(
        "POST /token HTTP/1.1\r\nHost: legate\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {len}\r\n{extra}\r\n"
    )
}

/// Reads until `needle` has arrived; panics if the connection closes first or
/// nothing arrives within [`GENEROUS`].
async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(GENEROUS, async {
        while !String::from_utf8_lossy(&got).contains(needle) {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "closed before {needle:?}: {}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} within {GENEROUS:?}"));
    String::from_utf8_lossy(&got).into_owned()
}

/// Reads until Legate closes the connection (end of stream or reset), sending
/// `trickle` every [`TRICKLE`] meanwhile (nothing when empty); returns what was
/// received. Panics if the connection is still open after [`GENEROUS`].
async fn until_closed(stream: &mut TcpStream, trickle: &[u8]) -> String {
    let (mut reader, mut writer) = stream.split();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut tick = tokio::time::interval(TRICKLE);
    let give_up = tokio::time::sleep(GENEROUS);
    tokio::pin!(give_up);
    loop {
        tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) | Err(_) => return String::from_utf8_lossy(&got).into_owned(),
                Ok(n) => got.extend_from_slice(&buf[..n]),
            },
            _ = tick.tick(), if !trickle.is_empty() => {
                // A failed write means Legate closed; the read reports it.
                let _ = writer.write_all(trickle).await;
            }
            () = &mut give_up => panic!(
                "Legate did not close a slow connection within {GENEROUS:?}; received {}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

/// One slow client: connects, sends `opening`, signals `connected` (the first
/// time), then trickles `trickle` until Legate closes the connection; reconnects
/// while `keep_going`. Returns how many times Legate cut it off, and what each
/// cut-off connection received.
async fn slow_client(
    addr: SocketAddr,
    opening: String,
    trickle: &'static [u8],
    connected: Arc<Semaphore>,
    keep_going: Arc<AtomicBool>,
) -> Vec<String> {
    let mut received = Vec::new();
    loop {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let _ = stream.write_all(opening.as_bytes()).await;
        if received.is_empty() {
            connected.add_permits(1);
        }
        received.push(until_closed(&mut stream, trickle).await);
        if !keep_going.load(Ordering::SeqCst) {
            return received;
        }
    }
}

/// Runs [`ATTACKERS`] slow clients; once all have connected, runs `exchanges`
/// normal exchanges (each must succeed), then lets the slow clients finish and
/// returns what each one's cut-off connections received.
async fn flood_while_exchanging(
    f: &Fixture,
    opening: &str,
    trickle: &'static [u8],
    exchanges: usize,
) -> Vec<Vec<String>> {
    let connected = Arc::new(Semaphore::new(0));
    let keep_going = Arc::new(AtomicBool::new(true));
    let attackers: Vec<_> = (0..ATTACKERS)
        .map(|_| {
            tokio::spawn(slow_client(
                f.legate.addr,
                opening.to_owned(),
                trickle,
                connected.clone(),
                keep_going.clone(),
            ))
        })
        .collect();
    let all = u32::try_from(ATTACKERS).unwrap();
    tokio::time::timeout(GENEROUS, connected.acquire_many(all))
        .await
        .expect("the slow clients connect")
        .unwrap()
        .forget();

    for i in 0..exchanges {
        let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
        assert_eq!(status, 200, "exchange {i} during the flood: {body}");
        assert!(body["access_token"].is_string(), "{body}");
    }

    keep_going.store(false, Ordering::SeqCst);
    let mut received = Vec::new();
    for attacker in attackers {
        received.push(attacker.await.expect("slow client task"));
    }
    received
}

/// The public listener's counters, as the operator sees them.
async fn counters(f: &Fixture) -> Value {
    let status = f.legate.operator.get("/status").await;
    assert_eq!(status.status, 200, "{}", status.text);
    status.json["server"].clone()
}

/// Stops slowloris: hundreds of clients open connections and send their request
/// heads a byte at a time, taking every connection slot (`max_connections` =
/// their number) and reconnecting as soon as they are cut. Each is cut at the
/// head deadline, so slots keep freeing and exchanges keep succeeding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_headers_do_not_starve_exchanges() {
    let _one_flood = FLOOD.acquire().await.unwrap();
    let f = Fixture::start_with(|s| {
        s.server_key("max_connections", ATTACKERS)
            .server_key("max_in_flight", ATTACKERS)
            .server_key("header_read_timeout_secs", 1);
    })
    .await;

    let received = flood_while_exchanging(
        &f,
        "GET /healthz HTTP/1.1\r\nHost: legate\r\nX-Slow: ",
        b"a",
        5,
    )
    .await;
    for (i, cuts) in received.iter().enumerate() {
        assert!(!cuts.is_empty(), "slow client {i} was never cut off");
        for got in cuts {
            assert!(
                !got.contains("200 OK"),
                "a head that never ended got an answer: {got}"
            );
        }
    }
    let counters = counters(&f).await;
    assert!(
        counters["head_timeouts"].as_u64().unwrap() >= ATTACKERS as u64,
        "{counters}"
    );
}

/// Stops slow-body exhaustion: hundreds of clients send complete heads of a
/// token exchange, then the body a byte at a time, holding connections and
/// requests in flight. Each is answered `400` at the body deadline and
/// disconnected, however steadily it trickles; exchanges keep succeeding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_do_not_starve_exchanges() {
    let _one_flood = FLOOD.acquire().await.unwrap();
    let f = Fixture::start_with(|s| {
        s.server_key("max_connections", ATTACKERS)
            .server_key("max_in_flight", ATTACKERS)
            .server_key("body_read_timeout_secs", 1);
    })
    .await;

    let received = flood_while_exchanging(&f, &post_head(10_000, ""), b"subject_token=", 5).await;
    let mut answered = 0;
    for (i, cuts) in received.iter().enumerate() {
        assert!(!cuts.is_empty(), "slow client {i} was never cut off");
        for got in cuts {
            // The client keeps trickling after Legate stops reading, so closing the
            // socket with those bytes unread makes the kernel send a reset, which can
            // discard the 400 before the client reads it (TCP's RST race, RFC 9112
            // §9.6). Then nothing arrives; anything that does arrive is the 400.
            if got.is_empty() {
                continue;
            }
            assert!(
                got.starts_with("HTTP/1.1 400"),
                "slow client {i}: expected a 400 before the close, got {got:?}"
            );
            assert!(got.contains("invalid_request"), "{got}");
            answered += 1;
        }
    }
    assert!(answered > 0, "no slow client ever read its 400");
    let counters = counters(&f).await;
    assert!(
        counters["body_timeouts"].as_u64().unwrap() >= ATTACKERS as u64,
        "{counters}"
    );
}

/// Sends the head of an exchange of `body_len` bytes with `Expect: 100-continue`
/// and waits for `100 Continue`: hyper sends it when the token handler starts
/// reading the body, so from then on this request holds a connection and a
/// request-in-flight slot, deterministically.
async fn hold_exchange(addr: SocketAddr, body_len: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(post_head(body_len, "Expect: 100-continue\r\nConnection: close\r\n").as_bytes())
        .await
        .unwrap();
    let got = read_until(&mut stream, "\r\n\r\n").await;
    assert!(got.starts_with("HTTP/1.1 100 Continue"), "{got}");
    stream
}

/// Sends the rest of a held exchange and returns the response (Legate closes the
/// connection after it: the head asked `Connection: close`).
async fn finish_exchange(mut stream: TcpStream, body: &str) -> String {
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut got = String::new();
    tokio::time::timeout(GENEROUS, stream.read_to_string(&mut got))
        .await
        .expect("a response")
        .expect("read the response");
    got
}

/// Stops a request flood from queueing without bound behind slow work: at the
/// in-flight cap a request is answered at once with `503 temporarily_unavailable`
/// (an RFC 6749 error body) and `Retry-After`; the request holding the slot is
/// not disturbed, `/healthz` still answers, and the next request after the slot
/// frees succeeds.
#[tokio::test]
async fn in_flight_cap_sheds_with_503_instead_of_queueing() {
    let f = Fixture::start_with(|s| {
        s.server_key("max_in_flight", 1)
            .server_key("body_read_timeout_secs", 300)
            .server_key("request_timeout_secs", 300);
    })
    .await;
    let body = exchange_form(&f.token(&json!({})));
    let held = hold_exchange(f.legate.addr, body.len()).await;

    let shed = f
        .legate
        .exchange_reply(&f.token(&json!({})), TARGET, None)
        .await;
    assert_eq!(shed.status, 503, "{}", shed.text);
    assert_eq!(
        shed.json["error"], "temporarily_unavailable",
        "{}",
        shed.text
    );
    assert!(shed.json["error_description"].is_string(), "{}", shed.text);
    assert!(!shed.request_id().is_empty());
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert_eq!(shed.header("cache-control"), Some("no-store"));
    assert_eq!(
        f.legate.client.get("/healthz").await.status,
        200,
        "liveness is exempt from the cap"
    );
    assert_eq!(
        f.legate.client.get("/readyz").await.status,
        503,
        "readiness is not"
    );
    assert_eq!(counters(&f).await["requests_shed"], 2);

    let response = finish_exchange(held, &body).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("access_token"), "{response}");

    let (status, body) = f.legate.exchange(&f.token(&json!({})), TARGET, None).await;
    assert_eq!(status, 200, "the slot is free again: {body}");
}

/// Stops descriptor exhaustion through connection count: at `max_connections`
/// Legate accepts no more (the kernel's backlog holds the next one), while the
/// operator listener still answers; when a connection closes, the waiting one is
/// served.
#[tokio::test]
async fn connection_cap_holds_until_a_slot_frees() {
    let f = Fixture::start_with(|s| {
        s.server_key("max_connections", 2)
            .server_key("max_in_flight", 2)
            .server_key("header_read_timeout_secs", 300)
            .server_key("body_read_timeout_secs", 300)
            .server_key("request_timeout_secs", 300);
    })
    .await;
    let first = hold_exchange(f.legate.addr, 100).await;
    let _second = hold_exchange(f.legate.addr, 100).await;

    let mut third = TcpStream::connect(f.legate.addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: legate\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    // A window in which a served request would have been answered; its passing
    // proves nothing about speed, its failing proves the cap leaked.
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
    assert!(early.is_err(), "a third connection was served at the cap");
    let open = counters(&f).await;
    assert_eq!(open["connections_open"], 2, "{open}");

    drop(first);
    let mut got = String::new();
    tokio::time::timeout(GENEROUS, third.read_to_string(&mut got))
        .await
        .expect("served once a slot freed")
        .unwrap();
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.ends_with("ok\n"), "{got}");
}

/// Stops oversized heads from pinning memory: a head larger than the 16 KiB
/// read buffer is answered `431` and the connection closed.
#[tokio::test]
async fn oversized_head_is_refused_with_431() {
    let f = Fixture::start().await;
    let mut stream = TcpStream::connect(f.legate.addr).await.unwrap();
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: legate\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let got = until_closed(&mut stream, b"").await;
    assert!(got.starts_with("HTTP/1.1 431"), "{got:?}");
}

/// `GET /healthz` on `stream`, kept alive; returns the response.
async fn healthz(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: legate\r\n\r\n")
        .await
        .unwrap();
    read_until(stream, "ok\n").await
}

/// Stops idle connections from holding slots forever: a kept-alive connection
/// with no next request is closed at the idle deadline (the head deadline is far
/// longer here, so it is the idle one that acts).
#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let f = Fixture::start_with(|s| {
        s.server_key("idle_timeout_secs", 1)
            .server_key("header_read_timeout_secs", 300);
    })
    .await;
    let mut stream = TcpStream::connect(f.legate.addr).await.unwrap();
    let first = healthz(&mut stream).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let after = until_closed(&mut stream, b"").await;
    assert_eq!(after, "", "nothing more is sent before the close");
}

/// Stops slowloris on a kept-alive connection: once the next head has started,
/// it has the head deadline from its first byte, not the (longer) idle deadline.
#[tokio::test]
async fn slowloris_after_a_kept_alive_request_is_cut_at_the_head_deadline() {
    let f = Fixture::start_with(|s| {
        s.server_key("idle_timeout_secs", 300)
            .server_key("header_read_timeout_secs", 1);
    })
    .await;
    let mut stream = TcpStream::connect(f.legate.addr).await.unwrap();
    assert!(healthz(&mut stream).await.starts_with("HTTP/1.1 200"));
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        .await
        .unwrap();
    let got = until_closed(&mut stream, b"a").await;
    assert!(!got.contains("200 OK"), "{got}");
}

/// The converse: a kept-alive connection idle for longer than the head deadline
/// (but not the idle one) is not mistaken for a slow client, and serves its next
/// request. This holds the way `legate_server::serve` reads hyper's head timer.
#[tokio::test]
async fn kept_alive_connection_may_idle_past_the_head_deadline() {
    let f = Fixture::start_with(|s| {
        s.server_key("idle_timeout_secs", 300)
            .server_key("header_read_timeout_secs", 1);
    })
    .await;
    let mut stream = TcpStream::connect(f.legate.addr).await.unwrap();
    assert!(healthz(&mut stream).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let second = healthz(&mut stream).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
}

/// Stops a shutdown (deploy, scale-in) from failing exchanges in flight: after
/// the signal Legate stops accepting, but the exchange in flight completes, and
/// `run` returns once it has.
#[tokio::test]
async fn shutdown_lets_an_in_flight_exchange_finish() {
    let mut f = Fixture::start_with(|s| {
        s.server_key("shutdown_grace_secs", 300);
    })
    .await;
    let body = exchange_form(&f.token(&json!({})));
    let held = hold_exchange(f.legate.addr, body.len()).await;

    f.legate.begin_shutdown();
    let refused = tokio::time::timeout(GENEROUS, async {
        while TcpStream::connect(f.legate.addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "Legate still accepts after the signal");

    let response = finish_exchange(held, &body).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("access_token"), "{response}");
    f.legate.shut_down(GENEROUS).await.expect("run returns Ok");
}

/// Stops a stuck client from holding a shutdown forever: a request still in
/// flight when the grace period ends is dropped, and `run` returns.
#[tokio::test]
async fn shutdown_drops_what_is_left_after_the_grace_period() {
    let mut f = Fixture::start_with(|s| {
        s.server_key("shutdown_grace_secs", 1)
            .server_key("body_read_timeout_secs", 300)
            .server_key("request_timeout_secs", 300);
    })
    .await;
    let mut held = hold_exchange(f.legate.addr, 100).await;
    f.legate.shut_down(GENEROUS).await.expect("run returns Ok");
    let got = until_closed(&mut held, b"").await;
    assert_eq!(got, "", "dropped, not answered");
}
