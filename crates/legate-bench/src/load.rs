//! The load generator: N keep-alive HTTP/1.1 connections (hyper's client connection,
//! no pool, no TLS), each sending the same `POST` one request at a time for a warm-up
//! window and then a measured window. Single-threaded, so it takes one core.
//!
//! With several `--addr`, the connections are dealt out over them in turn (connection
//! `i` to address `i mod n`), and the report counts each address's answers apart.
//!
//! With `--token-file`, every request carries a token of its own: the body is the
//! `--body-file` form followed by `&subject_token=` and the next unused token of the
//! file (one per line), for single-use trusts. When the pool runs out, each connection
//! stops and the report says `exhausted` (the driver then refuses the measurement).
//!
//! Before any load, one probe request per address must answer 200 with a body
//! containing `--expect`: a benchmark of error answers would measure nothing.
//!
//! Counted: answers that complete inside the measured window. An answer other than 200,
//! a connection error or a request over [`REQUEST_TIMEOUT`] is an error; after a
//! connection error the connection is opened again, at most [`MAX_RECONNECTS`] times
//! per connection. Latencies are kept, at most [`MAX_SAMPLES`] in all, for p50/p99.
//!
//! Output: one JSON line on standard output (what the driver reads), and a line for
//! people on standard error. `requests` and `rps` count the measured window; `all_ok`
//! counts every 200 answer of the run, probes and warm-up included (what the shared
//! state saw).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Body;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::time::Instant;

/// The longest wait for one answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often one connection is opened again after errors before it gives up.
pub const MAX_RECONNECTS: u32 = 100;
/// The most latency samples kept (4 bytes each).
pub const MAX_SAMPLES: usize = 8_000_000;
/// The largest answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The server's address; repeat it to spread the connections over several servers.
    #[arg(long, required = true)]
    pub addr: Vec<SocketAddr>,
    /// The request path.
    #[arg(long, default_value = "/token")]
    pub path: String,
    /// The `application/x-www-form-urlencoded` body to send (with `--token-file`, the
    /// form up to `&subject_token=`).
    #[arg(long)]
    pub body_file: PathBuf,
    /// Tokens, one per line, each sent once after the body file's text.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Text the probe's 200 answer must contain.
    #[arg(long)]
    pub expect: Option<String>,
    /// Concurrent keep-alive connections (1 to 1024).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub connections: u16,
    /// Seconds of load before measuring (0 to 60).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub warmup_secs: u64,
    /// Seconds measured (1 to 300).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub duration_secs: u64,
    /// A name for the report.
    #[arg(long, default_value = "load")]
    pub label: String,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let runtime = crate::runtime()?;
    let report = runtime.block_on(load(args))?;
    eprintln!(
        "{}: {:.0} req/s, p50 {} µs, p99 {} µs, {} errors ({} connections, {} s)",
        args.label,
        report.rate(),
        report.percentile(50),
        report.percentile(99),
        report.errors,
        args.connections,
        args.duration_secs
    );
    println!(
        "{}",
        json!({
            "label": args.label,
            "connections": args.connections,
            "secs": report.secs,
            "requests": report.ok,
            "errors": report.errors,
            "rps": report.rate(),
            "p50_us": report.percentile(50),
            "p99_us": report.percentile(99),
            "all_ok": report.all_ok,
            "exhausted": report.exhausted,
            "statuses": report.statuses,
            "per_addr": args.addr.iter().zip(&report.per_addr).map(|(addr, ok)| json!({
                "addr": addr.to_string(),
                "requests": ok,
            })).collect::<Vec<_>>(),
        })
    );
    Ok(())
}

/// What the workers measured.
#[derive(Debug, Default)]
struct Report {
    secs: f64,
    ok: u64,
    errors: u64,
    samples: Vec<u32>,
    /// Measured answers per address, in `--addr` order.
    per_addr: Vec<u64>,
    /// Every 200 answer, probes and warm-up included.
    all_ok: u64,
    /// The token pool ran out.
    exhausted: bool,
    /// Measured answers other than 200, by status.
    statuses: BTreeMap<u16, u64>,
}

impl Report {
    fn rate(&self) -> f64 {
        #[expect(clippy::cast_precision_loss, reason = "a rate for a report")]
        let ok = self.ok as f64;
        if self.secs > 0.0 { ok / self.secs } else { 0.0 }
    }

    /// The `p`th percentile latency in microseconds (`samples` sorted).
    fn percentile(&self, p: usize) -> u32 {
        if self.samples.is_empty() {
            return 0;
        }
        let rank = (self.samples.len() * p).div_ceil(100).saturating_sub(1);
        self.samples.get(rank).copied().unwrap_or(0)
    }
}

/// What the requests carry.
pub(crate) enum Bodies {
    /// The same body every time.
    Fixed(Bytes),
    /// `prefix` + the next unused token, each token once.
    Pool {
        prefix: Bytes,
        tokens: Vec<String>,
        next: AtomicUsize,
    },
}

impl Bodies {
    /// The next body; `None` once the pool is used up.
    fn next(&self) -> Option<Bytes> {
        match self {
            Bodies::Fixed(body) => Some(body.clone()),
            Bodies::Pool {
                prefix,
                tokens,
                next,
            } => {
                let token = tokens.get(next.fetch_add(1, Ordering::Relaxed))?;
                let mut body = Vec::with_capacity(prefix.len() + token.len());
                body.extend_from_slice(prefix);
                body.extend_from_slice(token.as_bytes());
                Some(Bytes::from(body))
            }
        }
    }
}

/// The request every worker sends.
#[derive(Clone)]
pub(crate) struct Shot {
    pub(crate) addr: SocketAddr,
    pub(crate) path: String,
    pub(crate) bodies: Arc<Bodies>,
}

impl Shot {
    /// The same `body` at `addr` + `path` every time.
    #[cfg(test)]
    pub(crate) fn fixed(addr: SocketAddr, path: &str, body: Bytes) -> Shot {
        Shot {
            addr,
            path: path.to_owned(),
            bodies: Arc::new(Bodies::Fixed(body)),
        }
    }

    /// The next request; `None` once the token pool is used up.
    fn request(&self) -> anyhow::Result<Option<Request<Body>>> {
        let Some(body) = self.bodies.next() else {
            return Ok(None);
        };
        Ok(Some(
            Request::builder()
                .method(Method::POST)
                .uri(self.path.as_str())
                .header(header::HOST, self.addr.to_string())
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))?,
        ))
    }
}

/// The bodies of `args`: the body file, or the body file + each token of the token file.
fn bodies(args: &Args) -> anyhow::Result<Bodies> {
    let body = std::fs::read(&args.body_file)
        .with_context(|| format!("reading {}", args.body_file.display()))?;
    let Some(token_file) = &args.token_file else {
        return Ok(Bodies::Fixed(Bytes::from(body)));
    };
    let text = std::fs::read_to_string(token_file)
        .with_context(|| format!("reading {}", token_file.display()))?;
    let tokens: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    anyhow::ensure!(
        !tokens.is_empty(),
        "{} holds no token",
        token_file.display()
    );
    Ok(Bodies::Pool {
        prefix: Bytes::from(body),
        tokens,
        next: AtomicUsize::new(0),
    })
}

async fn load(args: &Args) -> anyhow::Result<Report> {
    let bodies = Arc::new(bodies(args)?);
    let shots: Vec<Shot> = args
        .addr
        .iter()
        .map(|addr| Shot {
            addr: *addr,
            path: args.path.clone(),
            bodies: bodies.clone(),
        })
        .collect();
    for shot in &shots {
        probe(shot, args.expect.as_deref()).await?;
    }

    let start = Instant::now() + Duration::from_secs(args.warmup_secs);
    let end = start + Duration::from_secs(args.duration_secs);
    let per_worker = MAX_SAMPLES / usize::from(args.connections);
    let mut workers = tokio::task::JoinSet::new();
    for (slot, shot) in shots
        .iter()
        .enumerate()
        .cycle()
        .take(usize::from(args.connections))
    {
        let run = worker(shot.clone(), start, end, per_worker);
        workers.spawn(async move { (slot, run.await) });
    }
    let mut report = Report {
        secs: Duration::from_secs(args.duration_secs).as_secs_f64(),
        per_addr: vec![0; shots.len()],
        all_ok: u64::try_from(shots.len()).unwrap_or(u64::MAX),
        ..Report::default()
    };
    while let Some(done) = workers.join_next().await {
        let (slot, done) = done.context("a load worker failed")?;
        report.ok += done.ok;
        report.errors += done.errors;
        report.all_ok += done.all_ok;
        report.exhausted |= done.exhausted;
        for (status, n) in done.statuses {
            *report.statuses.entry(status).or_default() += n;
        }
        if let Some(count) = report.per_addr.get_mut(slot) {
            *count += done.ok;
        }
        report.samples.extend(done.samples);
    }
    report.samples.sort_unstable();
    Ok(report)
}

/// One request; the server must answer 200 with `expect` in the body.
pub(crate) async fn probe(shot: &Shot, expect: Option<&str>) -> anyhow::Result<()> {
    let mut sender = connect(shot.addr)
        .await
        .with_context(|| format!("connecting to {}", shot.addr))?;
    let request = shot.request()?.context("the token pool is empty")?;
    let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, send(&mut sender, request))
        .await
        .context("the probe request timed out")??;
    let text = String::from_utf8_lossy(&body);
    let shown: String = text.chars().take(400).collect();
    anyhow::ensure!(
        status == StatusCode::OK,
        "the probe request was answered {status}: {shown}"
    );
    if let Some(expect) = expect {
        anyhow::ensure!(
            text.contains(expect),
            "the probe's answer lacks `{expect}`: {shown}"
        );
    }
    Ok(())
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Body>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // The connection ends with an error when the server closes it; the worker sees
        // that on its next request.
        let _ = connection.await;
    });
    Ok(sender)
}

async fn send(
    sender: &mut SendRequest<Body>,
    request: Request<Body>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = axum::body::to_bytes(Body::new(response.into_body()), MAX_ANSWER_BYTES).await?;
    Ok((status, body))
}

/// What one connection measured.
#[derive(Debug, Default)]
struct Worker {
    ok: u64,
    errors: u64,
    samples: Vec<u32>,
    all_ok: u64,
    exhausted: bool,
    statuses: BTreeMap<u16, u64>,
}

async fn worker(shot: Shot, start: Instant, end: Instant, max_samples: usize) -> Worker {
    let mut done = Worker {
        samples: Vec::with_capacity(max_samples.min(1 << 16)),
        ..Worker::default()
    };
    let mut reconnects = 0;
    'connection: while Instant::now() < end && reconnects <= MAX_RECONNECTS {
        let Ok(mut sender) = connect(shot.addr).await else {
            reconnects += 1;
            done.errors += u64::from(Instant::now() >= start);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        loop {
            let sent = Instant::now();
            if sent >= end {
                break 'connection;
            }
            let request = match shot.request() {
                Ok(Some(request)) => request,
                Ok(None) => {
                    done.exhausted = true;
                    break 'connection;
                }
                Err(_) => {
                    done.errors += 1;
                    break 'connection;
                }
            };
            let answer = tokio::time::timeout(REQUEST_TIMEOUT, send(&mut sender, request)).await;
            let answered = Instant::now();
            let measured = answered >= start && answered <= end;
            match answer {
                Ok(Ok((StatusCode::OK, _))) => {
                    done.all_ok += 1;
                    if measured {
                        done.ok += 1;
                        if done.samples.len() < max_samples {
                            let micros = answered.duration_since(sent).as_micros();
                            done.samples.push(u32::try_from(micros).unwrap_or(u32::MAX));
                        }
                    }
                }
                Ok(Ok((status, _))) => {
                    if measured {
                        done.errors += 1;
                        *done.statuses.entry(status.as_u16()).or_default() += 1;
                    }
                }
                Ok(Err(_)) | Err(_) => {
                    done.errors += u64::from(measured);
                    reconnects += 1;
                    continue 'connection;
                }
            }
        }
    }
    done
}
