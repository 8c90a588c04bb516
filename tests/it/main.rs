//! Legate's integration tests: one binary that drives the real server on
//! loopback against real upstream issuers and an independent verifier.
//!
//! - [`peers`]: third-party peers (oauth2-mock-server, PyJWT) and the test PKI;
//! - [`issuer`]: an upstream OIDC issuer under the test's control (rotation,
//!   outages, request counters);
//! - [`harness`]: Legate in-process with a manual clock and in-memory audit;
//! - the test modules, one per concern: [`exchange`], [`mock_provider`],
//!   [`keys`], [`replay`], [`routing`], [`wire`].

mod harness;
mod issuer;
mod peers;

mod exchange;
mod keys;
mod mock_provider;
mod replay;
mod routing;
mod wire;
