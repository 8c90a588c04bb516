//! `legate-bench fleet`: two Legate replicas on one Redis (docs/performance.md, "Fleet:
//! two replicas on one Redis").
//!
//! Fixtures once, with a pool of distinct single-use RS256 tokens (every request spends
//! one, so every exchange runs the replay check). Then, per round, four setups, each
//! with fresh processes and a fresh state, so the same pool serves every setup:
//!
//! - `1x memory`: one replica, `[state] backend = "memory"` (the baseline);
//! - `2x memory`: two replicas, each with its own memory state (not a fleet: a token
//!   could be replayed at the other one; it separates the cost of a second process on
//!   the shared cores from the cost of Redis);
//! - `2x redis`: two replicas on one `redis-server` (replay check and credential
//!   ledger shared);
//! - `2x redis + limits`: the same, with generous `[limits] per_subject` and
//!   `per_target` (checked on every exchange, never reached).
//!
//! Each Redis is a `redis-server` started for that setup on a free loopback port, with
//! no persistence (`save ""`, `appendonly no`) and `maxmemory-policy noeviction`; its
//! state epoch (`{legate}e`; see crates/legate-state/src/redis_backend.rs) is set to 0
//! before the replicas start, the step an operator may take for a Redis known to be new,
//! so the pre-minted tokens are accepted. Just before the load, `CONFIG RESETSTAT` zeroes its command counters; after
//! it, `INFO cpu commandstats` gives the commands run and Redis's CPU time, which are
//! divided by the successful exchanges of the whole load run (probes and warm-up
//! included). Each replica reports the round trips it sent to Redis
//! (`RedisStats::round_trips`: a script call or a pipeline is one).
//!
//! Where it runs (`taskset -c`, default): replica A and Redis on CPU 0, replica B and the
//! load generator on CPU 1; the baseline's one replica on CPU 0 and the load on CPU 1.
//! On a 2-core machine, two replicas, Redis and the load share the same two cores as
//! the baseline's one replica and load: the figures measure what the shared state costs,
//! not how a fleet scales out.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use crate::fixtures::{self, Files};
use crate::run::{Server, load_average, median, pinned};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds measured per setup (1 to 300).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub duration_secs: u64,
    /// Seconds of load before measuring (0 to 60).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub warmup_secs: u64,
    /// Keep-alive connections of the load generator, dealt out over the replicas (2 to
    /// 1024).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(2..=1024))]
    pub connections: u16,
    /// Rounds of the four setups (1 to 20).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,
    /// Single-use tokens to pre-mint (one per request of a setup; every setup reuses the
    /// pool on a fresh state). A setup that runs out is refused: raise it.
    #[arg(long, default_value_t = 100_000)]
    pub tokens: usize,
    /// The CPU of replica A (and of the baseline's one replica).
    #[arg(long, default_value = "0")]
    pub replica_a_cpu: String,
    /// The CPU of replica B.
    #[arg(long, default_value = "1")]
    pub replica_b_cpu: String,
    /// The CPU of `redis-server`.
    #[arg(long, default_value = "0")]
    pub redis_cpu: String,
    /// The CPU of the load generator.
    #[arg(long, default_value = "1")]
    pub load_cpu: String,
    /// Run without `taskset` (the figures are then not comparable with the documented ones).
    #[arg(long)]
    pub no_pin: bool,
    /// The `redis-server` to start.
    #[arg(long, default_value = "redis-server")]
    pub redis_server: PathBuf,
    /// The `redis-cli` to query it with.
    #[arg(long, default_value = "redis-cli")]
    pub redis_cli: PathBuf,
    /// Keep the fixtures in this folder (default: a temporary folder, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    OneMemory,
    TwoMemory,
    TwoRedis,
    TwoRedisLimits,
}

const SETUPS: [Setup; 4] = [
    Setup::OneMemory,
    Setup::TwoMemory,
    Setup::TwoRedis,
    Setup::TwoRedisLimits,
];

impl Setup {
    fn label(self) -> &'static str {
        match self {
            Setup::OneMemory => "1x memory",
            Setup::TwoMemory => "2x memory",
            Setup::TwoRedis => "2x redis",
            Setup::TwoRedisLimits => "2x redis + limits",
        }
    }

    fn replicas(self) -> usize {
        match self {
            Setup::OneMemory => 1,
            Setup::TwoMemory | Setup::TwoRedis | Setup::TwoRedisLimits => 2,
        }
    }

    fn redis(self) -> bool {
        matches!(self, Setup::TwoRedis | Setup::TwoRedisLimits)
    }
}

/// The commands Legate's Lua scripts call (crates/legate-state/src/redis_backend.rs).
/// Redis counts them in `commandstats` like commands sent by a client, but they cost no
/// round trip. Legate sends none of them itself once started (its epoch `SET NX` comes
/// before the counters are reset).
const SCRIPT_COMMANDS: [&str; 8] = [
    "get",
    "set",
    "exists",
    "zremrangebyscore",
    "zcard",
    "zadd",
    "del",
    "zrem",
];

/// The driver's own commands, left out of the counts.
const DRIVER_COMMANDS: [&str; 1] = ["config|resetstat"];

/// One measurement.
#[derive(Debug)]
struct Measured {
    round: u32,
    setup: Setup,
    rps: f64,
    per_replica: Vec<f64>,
    p50_us: u64,
    p99_us: u64,
    errors: u64,
    /// Every successful exchange of the load run (probes and warm-up included).
    all_ok: u64,
    /// Round trips the replicas sent to Redis (their own count).
    round_trips: u64,
    /// Redis errors the replicas counted.
    redis_errors: u64,
    /// Measured answers other than 200, by status (`{"503": 2}`).
    statuses: Value,
    /// Ledger entries the replicas dropped (queue full) or failed to record.
    ledger_lost: u64,
    /// Calls per command Redis ran during the load run (driver's own left out).
    commands: BTreeMap<String, u64>,
    /// Redis's CPU seconds (user + system) during the load run.
    redis_cpu_secs: f64,
}

impl Measured {
    #[expect(clippy::cast_precision_loss, reason = "ratios for a report")]
    fn per_exchange(&self, n: u64) -> f64 {
        if self.all_ok == 0 {
            0.0
        } else {
            n as f64 / self.all_ok as f64
        }
    }

    /// Redis's CPU time per successful exchange, in µs.
    fn redis_cpu_us(&self) -> f64 {
        self.per_exchange(1) * self.redis_cpu_secs * 1e6
    }

    /// Commands Legate sent (Redis's count): every command but those its scripts run.
    fn sent(&self) -> u64 {
        self.commands
            .iter()
            .filter(|(name, _)| !SCRIPT_COMMANDS.contains(&name.as_str()))
            .map(|(_, n)| n)
            .sum()
    }

    /// Commands Legate's scripts ran inside Redis.
    fn scripted(&self) -> u64 {
        self.commands
            .iter()
            .filter(|(name, _)| SCRIPT_COMMANDS.contains(&name.as_str()))
            .map(|(_, n)| n)
            .sum()
    }
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let (dir, temporary) = match &args.dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("legate-bench-fleet-{}", std::process::id())),
            true,
        ),
    };
    println!(
        "legate-bench fleet: minting {} single-use RS256 tokens…",
        args.tokens
    );
    let result =
        fixtures::write_pool(&dir, args.tokens).and_then(|files| measure_all(args, &exe, &files));
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let measured = result?;
    report(args, &measured);
    Ok(())
}

fn measure_all(args: &Args, exe: &Path, files: &Files) -> anyhow::Result<Vec<Measured>> {
    println!(
        "{} round(s) × ({}), {} connections, {} s warm-up + {} s measured each",
        args.rounds,
        SETUPS.map(Setup::label).join(", "),
        args.connections,
        args.warmup_secs,
        args.duration_secs
    );
    println!(
        "replica A on CPU {}, replica B on CPU {}, redis-server on CPU {}, load on CPU {}{}; {} CPUs; load average before: {}",
        args.replica_a_cpu,
        args.replica_b_cpu,
        args.redis_cpu,
        args.load_cpu,
        if args.no_pin { " (NOT pinned)" } else { "" },
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );
    let mut measured = Vec::new();
    for round in 1..=args.rounds {
        for setup in SETUPS {
            let m = measure(args, exe, files, round, setup)
                .with_context(|| format!("round {round}, {}", setup.label()))?;
            println!(
                "  round {round} {:<18} {:>7.0} exchanges/s (per replica {})  p50 {:>5} µs  p99 {:>5} µs  errors {} {} (Redis {}, ledger lost {})  ok {}  redis round trips/exchange {:.2}  commands/exchange {:.2} (+{:.2} in scripts)  redis CPU {:.1} µs/exchange",
                setup.label(),
                m.rps,
                m.per_replica
                    .iter()
                    .map(|r| format!("{r:.0}"))
                    .collect::<Vec<_>>()
                    .join(" + "),
                m.p50_us,
                m.p99_us,
                m.errors,
                m.statuses,
                m.redis_errors,
                m.ledger_lost,
                m.all_ok,
                m.per_exchange(m.round_trips),
                m.per_exchange(m.sent()),
                m.per_exchange(m.scripted()),
                m.redis_cpu_us(),
            );
            measured.push(m);
        }
    }
    println!("load average after: {}", load_average());
    Ok(measured)
}

fn measure(
    args: &Args,
    exe: &Path,
    files: &Files,
    round: u32,
    setup: Setup,
) -> anyhow::Result<Measured> {
    let redis = if setup.redis() {
        Some(Redis::start(args, &files.dir)?)
    } else {
        None
    };
    // The replicas' own bound: they stop by themselves even if this driver dies.
    let max_secs = (args.warmup_secs + args.duration_secs + 60).to_string();
    let cpus = [&args.replica_a_cpu, &args.replica_b_cpu];
    let mut replicas = Vec::new();
    for cpu in cpus.iter().take(setup.replicas()) {
        let mut cmd = pinned(args.no_pin, cpu, exe);
        cmd.arg("legate")
            .arg("--dir")
            .arg(&files.dir)
            .arg("--single-use")
            .args(["--max-secs", &max_secs]);
        if let Some(redis) = &redis {
            cmd.args(["--redis-url", &redis.url()]);
        }
        if setup == Setup::TwoRedisLimits {
            cmd.arg("--limits");
        }
        replicas.push(Server::spawn(cmd)?);
    }
    let mut addrs = Vec::new();
    for replica in &mut replicas {
        addrs.push(replica.address()?);
    }
    let cpu_before = match &redis {
        Some(redis) => {
            let before = redis.cpu_secs()?;
            redis.cli(&["CONFIG", "RESETSTAT"])?;
            before
        }
        None => 0.0,
    };

    let mut load = pinned(args.no_pin, &args.load_cpu, exe);
    load.arg("load");
    for addr in &addrs {
        load.args(["--addr", addr]);
    }
    let load = load
        .args(["--label", setup.label()])
        .arg("--body-file")
        .arg(files.body_prefix())
        .arg("--token-file")
        .arg(files.tokens())
        .args(["--expect", "urn:ietf:params:oauth:token-type:jwt"])
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
    anyhow::ensure!(
        result.get("exhausted") != Some(&Value::Bool(true)),
        "the {} tokens ran out during the load: raise --tokens",
        args.tokens
    );

    let mut round_trips = 0;
    let mut redis_errors = 0;
    let mut ledger_lost = 0;
    for replica in replicas {
        let stats = replica.finish()?;
        let redis_stat = |name: &str| {
            stats
                .get("redis")
                .and_then(|r| r.get(name))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        round_trips += redis_stat("round_trips");
        redis_errors += redis_stat("errors");
        let ledger_stat = |name: &str| {
            stats
                .get("ledger")
                .and_then(|r| r.get(name))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        ledger_lost += ledger_stat("dropped_queue_full") + ledger_stat("record_errors");
    }
    // After the replicas stopped (their ledgers drained): what Redis ran.
    let (commands, redis_cpu_secs) = match &redis {
        Some(redis) => {
            let info = redis.cli(&["INFO", "cpu", "commandstats"])?;
            let mut commands = command_calls(&info);
            commands.retain(|name, _| !DRIVER_COMMANDS.contains(&name.as_str()));
            (commands, (cpu_secs(&info) - cpu_before).max(0.0))
        }
        None => (BTreeMap::new(), 0.0),
    };
    drop(redis);

    let num = |name: &str| result.get(name).and_then(Value::as_u64).unwrap_or(0);
    let secs = result.get("secs").and_then(Value::as_f64).unwrap_or(0.0);
    #[expect(clippy::cast_precision_loss, reason = "rates for a report")]
    let per_replica = result
        .get("per_addr")
        .and_then(Value::as_array)
        .map(|per| {
            per.iter()
                .map(|a| {
                    let n = a.get("requests").and_then(Value::as_u64).unwrap_or(0);
                    if secs > 0.0 { n as f64 / secs } else { 0.0 }
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Measured {
        round,
        setup,
        rps: result.get("rps").and_then(Value::as_f64).unwrap_or(0.0),
        per_replica,
        p50_us: num("p50_us"),
        p99_us: num("p99_us"),
        errors: num("errors"),
        all_ok: num("all_ok"),
        round_trips,
        redis_errors,
        ledger_lost,
        statuses: result.get("statuses").cloned().unwrap_or(Value::Null),
        commands,
        redis_cpu_secs,
    })
}

/// A `redis-server` of this benchmark; killed when dropped.
struct Redis {
    child: Child,
    port: u16,
    cli: PathBuf,
}

impl Redis {
    /// Starts `redis-server` on a free loopback port, without persistence and with
    /// `noeviction`, waits until it answers, and sets its state epoch to 0.
    fn start(args: &Args, dir: &Path) -> anyhow::Result<Redis> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port")?
            .port();
        let child = pinned(args.no_pin, &args.redis_cpu, &args.redis_server)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--maxmemory-policy", "noeviction"])
            .args(["--loglevel", "warning", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", args.redis_server.display()))?;
        let redis = Redis {
            child,
            port,
            cli: args.redis_cli.clone(),
        };
        let mut answered = false;
        for _ in 0..100 {
            if redis
                .cli(&["PING"])
                .is_ok_and(|answer| answer.trim() == "PONG")
            {
                answered = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::ensure!(answered, "redis-server on port {port} did not answer");
        // The operator's step for a Redis known to be new: its state begins at 0, so the
        // pool's tokens (minted before this Redis started) are decided by the replay
        // records alone.
        let answer = redis.cli(&["SET", "{legate}e", "0"])?;
        anyhow::ensure!(
            answer.trim() == "OK",
            "setting the state epoch: {}",
            answer.trim()
        );
        Ok(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs one `redis-cli` command; its standard output.
    fn cli(&self, command: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.cli)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(command)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", self.cli.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "`redis-cli {}` failed: {}",
            command.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn cpu_secs(&self) -> anyhow::Result<f64> {
        Ok(cpu_secs(&self.cli(&["INFO", "cpu"])?))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls per command from `INFO commandstats` (`cmdstat_<name>:calls=<n>,…`; a
/// subcommand is named `<command>|<subcommand>`).
fn command_calls(info: &str) -> BTreeMap<String, u64> {
    info.lines()
        .filter_map(|line| {
            let (name, fields) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = fields
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// Redis's CPU seconds from `INFO cpu`: `used_cpu_sys` + `used_cpu_user` (every
/// thread); 0 when missing.
fn cpu_secs(info: &str) -> f64 {
    info.lines()
        .filter_map(|line| line.trim().split_once(':'))
        .filter(|(key, _)| matches!(*key, "used_cpu_sys" | "used_cpu_user"))
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

#[expect(clippy::cast_precision_loss, reason = "figures for a report")]
fn report(args: &Args, measured: &[Measured]) {
    let baseline_of = |round: u32| {
        measured
            .iter()
            .find(|m| m.round == round && m.setup == Setup::OneMemory)
            .map_or(0.0, |m| m.rps)
    };
    println!(
        "\n| setup | exchanges/s (median of {}) | per replica | ratio to 1x memory (per round) | p50 / p99 µs | errors (HTTP / Redis / ledger lost) | Redis round trips / exchange (Legate's count) | commands sent / exchange (Redis's count) | commands in scripts / exchange | Redis CPU µs / exchange |",
        args.rounds
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for setup in SETUPS {
        let runs: Vec<&Measured> = measured.iter().filter(|m| m.setup == setup).collect();
        let med = |f: &dyn Fn(&Measured) -> f64| median(runs.iter().map(|m| f(m)).collect());
        let ratios: Vec<f64> = runs
            .iter()
            .map(|m| {
                let base = baseline_of(m.round);
                if base > 0.0 { m.rps / base } else { 0.0 }
            })
            .collect();
        let per_replica = (0..setup.replicas())
            .map(|i| {
                format!(
                    "{:.0}",
                    med(&|m| m.per_replica.get(i).copied().unwrap_or(0.0))
                )
            })
            .collect::<Vec<_>>()
            .join(" + ");
        let redis_cell = |f: &dyn Fn(&Measured) -> f64, digits: usize| {
            if setup.redis() {
                format!("{:.*}", digits, med(f))
            } else {
                "–".to_owned()
            }
        };
        println!(
            "| {} | {:.0} | {} | {:.2}× ({}) | {:.0} / {:.0} | {} / {} / {} | {} | {} | {} | {} |",
            setup.label(),
            med(&|m| m.rps),
            per_replica,
            median(ratios.clone()),
            ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            med(&|m| m.p50_us as f64),
            med(&|m| m.p99_us as f64),
            runs.iter().map(|m| m.errors).sum::<u64>(),
            runs.iter().map(|m| m.redis_errors).sum::<u64>(),
            runs.iter().map(|m| m.ledger_lost).sum::<u64>(),
            redis_cell(&|m| m.per_exchange(m.round_trips), 2),
            redis_cell(&|m| m.per_exchange(m.sent()), 2),
            redis_cell(&|m| m.per_exchange(m.scripted()), 2),
            redis_cell(&Measured::redis_cpu_us, 1),
        );
    }
    println!("\nRedis commands per successful exchange (last round):");
    for m in measured
        .iter()
        .filter(|m| m.round == args.rounds && m.setup.redis())
    {
        println!(
            "  {:<18} {}",
            m.setup.label(),
            m.commands
                .iter()
                .map(|(name, n)| format!("{name} {:.3}", m.per_exchange(*n)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::float_cmp, reason = "tests")]

    use super::*;

    /// Stops a misread `INFO commandstats` from reporting wrong round trips: calls are
    /// read per command, subcommands keep their `|` names, and other sections' lines
    /// (and malformed ones) are ignored.
    #[test]
    fn command_calls_reads_commandstats_lines() {
        let info = "# CPU\r\nused_cpu_sys:1.5\r\nused_cpu_user:2.25\r\n\r\n# Commandstats\r\n\
            cmdstat_evalsha:calls=2000,usec=9000,usec_per_call=4.50,rejected_calls=0,failed_calls=3\r\n\
            cmdstat_config|resetstat:calls=1,usec=10,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_xadd:calls=1000,usec=4000,usec_per_call=4.00,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_broken:usec=1\r\n";
        let calls = command_calls(info);
        assert_eq!(calls.len(), 3);
        assert_eq!(calls.get("evalsha"), Some(&2000));
        assert_eq!(calls.get("config|resetstat"), Some(&1));
        assert_eq!(calls.get("xadd"), Some(&1000));
        assert_eq!(cpu_secs(info), 3.75);
    }

    /// Stops the report from counting the commands Legate's scripts run inside Redis as
    /// round trips: `sent` leaves them out, `scripted` counts only them.
    #[test]
    fn script_commands_are_not_counted_as_sent() {
        let m = Measured {
            round: 1,
            setup: Setup::TwoRedis,
            rps: 0.0,
            per_replica: vec![],
            p50_us: 0,
            p99_us: 0,
            errors: 0,
            all_ok: 100,
            round_trips: 200,
            redis_errors: 0,
            ledger_lost: 0,
            statuses: Value::Null,
            commands: [("evalsha", 100), ("xadd", 100), ("get", 100), ("set", 100)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            redis_cpu_secs: 0.0,
        };
        assert_eq!(m.sent(), 200);
        assert_eq!(m.scripted(), 200);
        assert_eq!(m.per_exchange(m.round_trips), 2.0);
    }
}
