//! Legate's local credential broker: one loopback HTTP endpoint that speaks the
//! metadata protocols the stock AWS, Google and Azure SDKs already know, and answers
//! them with credentials it obtains from Legate (`POST /token`, RFC 8693).
//!
//! What it serves, each shape only for a configured target:
//! - AWS IMDSv2 (`PUT /latest/api/token`, `GET /latest/meta-data/iam/security-credentials/…`);
//! - the AWS ECS container-credentials endpoint (`GET /v2/credentials`);
//! - the GCE metadata server (`/computeMetadata/v1/…`);
//! - Azure managed identity: the App Service shape (`GET /msi/token`) and the IMDS shape
//!   (`GET /metadata/identity/oauth2/token`).
//!
//! What it does not do: decide anything. Legate verifies the workload and applies policy;
//! the broker only relays, caches ([`cache`]) and refuses requests that do not look like
//! a local SDK talking to it (see [`server`] for the checks: loopback bind, `Host`,
//! `X-Forwarded-For`, session tokens, header files, target pinning).
//!
//! Layout: [`fetch`] (where credentials come from), [`cache`] (one slot per target,
//! single-flight, refresh ahead), [`server`] (config, bind, router, the four shapes).

pub mod cache;
pub mod fetch;
pub mod server;

use std::sync::atomic::{AtomicI64, Ordering};

pub use cache::{CacheError, CredentialCache};
pub use fetch::{
    ClientTokenSource, CredentialFetcher, FetchError, Fetched, LegateFetcher, SubjectTokenSource,
};
pub use server::{
    AwsShape, AzureShape, BindError, Broker, BrokerConfig, ConfigError, GcpShape, bind,
    check_listen, router, serve,
};

/// The broker's notion of time: unix seconds.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current unix time in seconds.
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[expect(
        clippy::disallowed_methods,
        reason = "the broker's one clock implementation reads the system time"
    )]
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock at `now`.
    pub const fn new(now: i64) -> Self {
        Self(AtomicI64::new(now))
    }

    /// Moves the clock forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
