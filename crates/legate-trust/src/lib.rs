//! Legate's trust store: the only code that fetches upstream discovery documents and
//! JWKS, and the per-issuer key cache.
//!
//! What it does: for each trusted issuer it keeps the last good [`KeySet`] in a moka
//! cache, refreshes it on a schedule, refreshes once (single-flight, rate-limited) when a
//! token names an unknown `kid`, and keeps serving the last good keys when the issuer is
//! down (stale-if-error, up to a bound). [`TrustStore::verify`] routes a token to its
//! issuer by exact `iss` and verifies it with that issuer's keys and rules only.
//!
//! What it does not do: no policy, no replay tracking, no minting. It never follows
//! redirects, never fetches over plain HTTP, and never dereferences URLs found in tokens.
//!
//! It never connects to loopback, private, link-local or other non-public addresses
//! for a trust that does not set `allow_private_network`, judging the addresses a
//! name resolves to when it connects (see [`address`]).
//!
//! Layout: `address` (which peer addresses a fetch may reach: the SSRF guard),
//! `fetch` (HTTP: discovery, JWKS, size and time limits), `store` ([`TrustStore`],
//! the cache and refresh logic).

pub mod address;
mod fetch;
mod store;

pub use address::NetworkAccess;
pub use fetch::{FetchError, FetchLimits, HttpFetcher};
pub use store::{
    FetchCounts, IssuerStatus, KeySource, TrustConfig, TrustError, TrustStore, TrustedIssuer,
};
