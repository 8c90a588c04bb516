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
//! Layout: `fetch` (HTTP: discovery, JWKS, size and time limits), `store`
//! ([`TrustStore`], the cache and refresh logic).

mod fetch;
mod store;

pub use fetch::{FetchError, FetchLimits, HttpFetcher};
pub use store::{IssuerStatus, KeySource, TrustConfig, TrustError, TrustStore, TrustedIssuer};
