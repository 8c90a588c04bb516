//! Legate's integration tests: one binary that drives the real server on
//! loopback against real upstream issuers and an independent verifier.
//!
//! - [`peers`]: third-party peers (oauth2-mock-server, PyJWT) and the test PKI;
//! - [`issuer`]: an upstream OIDC issuer under the test's control (rotation,
//!   outages, redirects, slow drip, request counters);
//! - [`harness`]: Legate in-process with a manual clock and in-memory audit;
//! - the test modules, one per concern: [`actor`], [`admin`], [`attacks`], [`broker`], [`client`],
//!   [`clouds`],
//!   [`exchange`], [`fakes`], [`fleet`] (replicas on a real Redis, [`redis_server`]), [`grants`], [`hygiene`], [`limits`], [`mock_provider`],
//!   [`exchange`], [`fakes`], [`grants`], [`hygiene`], [`inventory`], [`limits`],
//!   [`mock_provider`],
//!   [`keys`], [`metrics`], [`operator`], [`proxy`], [`ratelimit`], [`reload`], [`replay`],
//!   [`revocation`], [`robustness`], [`routing`], [`terraform`],
//!   [`wire`].

mod harness;
mod issuer;
mod peers;
mod redis_server;

mod actor;
mod admin;
mod attacks;
mod broker;
mod client;
mod clouds;
mod exchange;
mod fakes;
mod fleet;
mod grants;
mod hygiene;
mod inventory;
mod keys;
mod limits;
mod metrics;
mod mock_provider;
mod operator;
mod proxy;
mod ratelimit;
mod reload;
mod replay;
mod revocation;
mod robustness;
mod routing;
mod terraform;
mod wire;
