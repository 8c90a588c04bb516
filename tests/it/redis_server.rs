//! A real Redis for the fleet tests: Debian's `redis-server` (installed by `tests/run`),
//! started on a free loopback port with no persistence, stopped and restarted empty by
//! the tests, optionally with TLS from the test PKI.

#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test harness code: failing loudly is the point"
)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How a test Redis is started.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `maxmemory-policy` (Legate needs `noeviction`).
    pub eviction: &'static str,
    /// TLS only: (certificate, key, CA) PEM files; the plain port is closed.
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            eviction: "noeviction",
            tls: None,
        }
    }
}

/// One `redis-server` process (killed on drop).
#[derive(Debug)]
pub struct RedisServer {
    pub port: u16,
    options: RedisOptions,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts Redis on a free loopback port and waits until it accepts connections.
    pub async fn start(options: RedisOptions) -> RedisServer {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
            probe.local_addr().expect("probe addr").port()
        };
        let mut server = RedisServer {
            port,
            options,
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        server.spawn().await;
        server
    }

    /// `redis://127.0.0.1:<port>`, or `rediss://localhost:<port>` with TLS (the test
    /// certificate names `localhost`).
    pub fn url(&self) -> String {
        match self.options.tls {
            None => format!("redis://127.0.0.1:{}", self.port),
            Some(_) => format!("rediss://localhost:{}", self.port),
        }
    }

    /// `[state]` for a Legate replica on this Redis, with short timeouts and a 1 s
    /// health check so outages are seen quickly.
    pub fn state_toml(&self) -> String {
        let mut toml = format!(
            "\n[state]\nbackend = \"redis\"\nurl = \"{}\"\ncommand_timeout_ms = 300\nconnect_timeout_ms = 500\nsync_interval_secs = 1\n",
            self.url()
        );
        if let Some((_, _, ca)) = &self.options.tls {
            toml.push_str(&format!("tls_ca_file = \"{}\"\n", ca.display()));
        }
        toml
    }

    async fn spawn(&mut self) {
        let port = self.port.to_string();
        let mut args: Vec<String> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--maxmemory".into(),
            "64mb".into(),
            "--maxmemory-policy".into(),
            self.options.eviction.into(),
            "--dir".into(),
            self.dir.path().display().to_string(),
            "--protected-mode".into(),
            "no".into(),
        ];
        match &self.options.tls {
            None => args.extend(["--port".into(), port]),
            Some((cert, key, ca)) => args.extend([
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port,
                "--tls-cert-file".into(),
                cert.display().to_string(),
                "--tls-key-file".into(),
                key.display().to_string(),
                "--tls-ca-cert-file".into(),
                ca.display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ]),
        }
        let child = Command::new("redis-server")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): tests/run installs Debian's redis-server")
            });
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not listen on {addr} within 5 s");
    }

    /// Kills Redis (as a crash would) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts Redis again on the same port, empty (no persistence): a restart without
    /// persistence, or a failover to a replica that never got the data.
    pub async fn restart_empty(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// Runs `redis-cli` against this server (plain connections only).
    pub fn cli(&self, args: &[&str]) -> String {
        assert!(self.options.tls.is_none(), "cli() is for plain servers");
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
