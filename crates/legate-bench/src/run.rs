//! The driver: fixtures once, then per round the floor, Legate with the `jwt` target and
//! Legate with the `aws` target, each server in its own process pinned to one core and
//! the load generator in another pinned to the other core; then the rates, latencies and
//! ratios to the floor of the same round, and their medians over the rounds.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use crate::fixtures::{self, AWS_TARGET, Files, JWT_TARGET};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds measured per server (1 to 300).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub duration_secs: u64,
    /// Seconds of load before measuring (0 to 60); the first of them fills Legate's
    /// credential cache.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub warmup_secs: u64,
    /// Keep-alive connections of the load generator (1 to 1024).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub connections: u16,
    /// Rounds of floor, Legate (jwt), Legate (aws) (1 to 20).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,
    /// The CPU the servers are pinned to (`taskset -c`).
    #[arg(long, default_value = "0")]
    pub server_cpu: String,
    /// The CPU the load generator is pinned to.
    #[arg(long, default_value = "1")]
    pub load_cpu: String,
    /// Run without `taskset` (the figures are then not comparable with the documented ones).
    #[arg(long)]
    pub no_pin: bool,
    /// Keep the fixtures in this folder (default: a temporary folder, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Floor,
    LegateJwt,
    LegateAws,
}

const SCENARIOS: [Scenario; 3] = [Scenario::Floor, Scenario::LegateJwt, Scenario::LegateAws];

impl Scenario {
    fn label(self) -> &'static str {
        match self {
            Scenario::Floor => "floor",
            Scenario::LegateJwt => "legate-jwt",
            Scenario::LegateAws => "legate-aws",
        }
    }

    /// What the probe's answer must contain: proof the path measured is the one meant.
    fn expect(self) -> &'static str {
        match self {
            Scenario::Floor => "\"sub\":\"repo:octo-org/deploy:ref:refs/heads/main\"",
            Scenario::LegateJwt => "urn:ietf:params:oauth:token-type:jwt",
            Scenario::LegateAws => "\"aws_credentials\"",
        }
    }

    fn target(self) -> &'static str {
        match self {
            Scenario::Floor | Scenario::LegateJwt => JWT_TARGET,
            Scenario::LegateAws => AWS_TARGET,
        }
    }
}

/// One measurement.
#[derive(Debug)]
struct Measured {
    round: u32,
    scenario: Scenario,
    rps: f64,
    p50_us: u64,
    p99_us: u64,
    errors: u64,
    server: Value,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let (dir, temporary) = match &args.dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("legate-bench-{}", std::process::id())),
            true,
        ),
    };
    let files = fixtures::write(&dir)?;
    let result = measure_all(args, &exe, &files);
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let measured = result?;
    report(args, &measured);
    Ok(())
}

fn measure_all(args: &Args, exe: &Path, files: &Files) -> anyhow::Result<Vec<Measured>> {
    println!(
        "legate-bench: {} round(s) × (floor, legate-jwt, legate-aws), {} connections, {} s warm-up + {} s measured each",
        args.rounds, args.connections, args.warmup_secs, args.duration_secs
    );
    println!(
        "servers on CPU {}, load on CPU {}{}; {} CPUs; load average before: {}",
        args.server_cpu,
        args.load_cpu,
        if args.no_pin { " (NOT pinned)" } else { "" },
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );
    let mut measured = Vec::new();
    for round in 1..=args.rounds {
        for scenario in SCENARIOS {
            let m = measure(args, exe, files, round, scenario)
                .with_context(|| format!("round {round}, {}", scenario.label()))?;
            println!(
                "  round {round} {:<11} {:>8.0} req/s  p50 {:>5} µs  p99 {:>5} µs  errors {}  server {}",
                scenario.label(),
                m.rps,
                m.p50_us,
                m.p99_us,
                m.errors,
                m.server
            );
            measured.push(m);
        }
    }
    println!("load average after: {}", load_average());
    Ok(measured)
}

/// `exe` under `taskset -c cpu`, unless pinning is off (`no_pin`).
pub(crate) fn pinned(no_pin: bool, cpu: &str, exe: &Path) -> Command {
    if no_pin {
        Command::new(exe)
    } else {
        let mut cmd = Command::new("taskset");
        cmd.arg("-c").arg(cpu).arg(exe);
        cmd
    }
}

fn measure(
    args: &Args,
    exe: &Path,
    files: &Files,
    round: u32,
    scenario: Scenario,
) -> anyhow::Result<Measured> {
    // The server's own bound: it stops by itself even if this driver dies.
    let max_secs = (args.warmup_secs + args.duration_secs + 60).to_string();
    let mut cmd = pinned(args.no_pin, &args.server_cpu, exe);
    match scenario {
        Scenario::Floor => cmd.arg("floor").arg("--jwks").arg(files.jwks()),
        Scenario::LegateJwt | Scenario::LegateAws => cmd.arg("legate").arg("--dir").arg(&files.dir),
    };
    cmd.args(["--max-secs", &max_secs]);
    let mut server = Server::spawn(cmd)?;
    let addr = server.address()?;

    let load = pinned(args.no_pin, &args.load_cpu, exe)
        .arg("load")
        .args(["--addr", &addr, "--label", scenario.label()])
        .arg("--body-file")
        .arg(files.body(scenario.target()))
        .args(["--expect", scenario.expect()])
        .args(["--connections", &args.connections.to_string()])
        .args(["--warmup-secs", &args.warmup_secs.to_string()])
        .args(["--duration-secs", &args.duration_secs.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .context("running the load generator")?;
    anyhow::ensure!(load.status.success(), "the load generator failed");
    let stdout = String::from_utf8_lossy(&load.stdout);
    let line = stdout
        .lines()
        .last()
        .context("the load generator printed nothing")?;
    let result: Value = serde_json::from_str(line).context("the load generator's report")?;
    let server_stats = server.finish()?;
    let num = |name: &str| result.get(name).and_then(Value::as_u64).unwrap_or(0);
    Ok(Measured {
        round,
        scenario,
        rps: result.get("rps").and_then(Value::as_f64).unwrap_or(0.0),
        p50_us: num("p50_us"),
        p99_us: num("p99_us"),
        errors: num("errors"),
        server: server_stats,
    })
}

/// A server process; killed if dropped before it finished.
pub(crate) struct Server {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Server {
    pub(crate) fn spawn(mut cmd: Command) -> anyhow::Result<Server> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the server (is `taskset` installed? else pass --no-pin)")?;
        let stdout = child
            .stdout
            .take()
            .context("the server's standard output")?;
        Ok(Server {
            child,
            stdout: BufReader::new(stdout),
        })
    }

    /// The address from the server's `listening ADDR` line.
    pub(crate) fn address(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        line.trim()
            .strip_prefix("listening ")
            .map(str::to_owned)
            .with_context(|| format!("the server did not start (it said `{}`)", line.trim()))
    }

    /// Closes the server's standard input (it stops), reads its last report and waits
    /// for it to exit (at most 30 s, then it is killed).
    pub(crate) fn finish(mut self) -> anyhow::Result<Value> {
        drop(self.child.stdin.take());
        let mut report = Value::Null;
        let mut line = String::new();
        while self.stdout.read_line(&mut line)? > 0 {
            if let Ok(value) = serde_json::from_str(line.trim()) {
                report = value;
            }
            line.clear();
        }
        for _ in 0..300 {
            if self.child.try_wait()?.is_some() {
                return Ok(report);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        anyhow::bail!("the server did not exit within 30 s of being told to stop")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The first three fields of `/proc/loadavg`, or `unknown`.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match (
        values.len() % 2,
        values.get(mid),
        mid.checked_sub(1).and_then(|i| values.get(i)),
    ) {
        (1, Some(m), _) => *m,
        (0, Some(hi), Some(lo)) => f64::midpoint(*lo, *hi),
        _ => 0.0,
    }
}

fn report(args: &Args, measured: &[Measured]) {
    let floor_of = |round: u32| {
        measured
            .iter()
            .find(|m| m.round == round && m.scenario == Scenario::Floor)
            .map_or(0.0, |m| m.rps)
    };
    println!(
        "\n| scenario | req/s (median of {}) | p50 µs | p99 µs | errors | ratio to the floor (median of per-round ratios) |",
        args.rounds
    );
    println!("|---|---|---|---|---|---|");
    for scenario in SCENARIOS {
        let runs: Vec<&Measured> = measured.iter().filter(|m| m.scenario == scenario).collect();
        #[expect(clippy::cast_precision_loss, reason = "latencies for a report")]
        let latency = |f: fn(&Measured) -> u64| median(runs.iter().map(|m| f(m) as f64).collect());
        let ratios: Vec<f64> = runs
            .iter()
            .map(|m| {
                let floor = floor_of(m.round);
                if floor > 0.0 { m.rps / floor } else { 0.0 }
            })
            .collect();
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {} | {:.2}× (per round: {}) |",
            scenario.label(),
            median(runs.iter().map(|m| m.rps).collect()),
            latency(|m| m.p50_us),
            latency(|m| m.p99_us),
            runs.iter().map(|m| m.errors).sum::<u64>(),
            median(ratios.clone()),
            ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let aws: Vec<f64> = measured
        .iter()
        .filter(|m| m.scenario == Scenario::LegateAws)
        .map(|m| {
            let floor = floor_of(m.round);
            if floor > 0.0 { m.rps / floor } else { 0.0 }
        })
        .collect();
    let ratio = median(aws);
    println!(
        "\nlegate-aws (warm credential cache) / floor = {ratio:.2}× — target ≥ 0.50×: {}",
        if ratio >= 0.5 { "met" } else { "NOT met" }
    );
}
