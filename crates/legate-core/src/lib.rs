//! Legate's pure core.
//!
//! What it does: parses compact JWS tokens without trusting them, models JWKS key sets
//! (each key parsed once), verifies tokens against strict rules, and defines the RFC 8693
//! wire types and RFC 6749 error codes.
//!
//! What it does not do: no I/O, no async runtime, no HTTP and no clock reads. Every
//! function that needs the time takes `now` as a parameter; callers own the [`Clock`].
//!
//! Layout:
//! - [`secret`]: [`Secret`], a log-safe wrapper;
//! - [`time`]: [`Clock`] and [`UnixSeconds`];
//! - [`text`]: escaping of attacker-controlled strings for logs;
//! - [`json`]: strict JSON (duplicate members rejected);
//! - [`b64`]: canonical base64url;
//! - [`jws`]: [`UnverifiedJwt`] and the algorithm allow-list [`Alg`];
//! - [`jwk`]: [`VerifyingKey`] and [`KeySet`];
//! - [`verify`](mod@verify): [`verify()`], [`VerifyRules`], [`VerifiedClaims`], [`VerifyError`];
//! - [`exchange`]: RFC 8693 request/response types and RFC 6749 error codes.
//!
//! Only what production runs is here. Test keys, the attack corpus and the fuzzing
//! entry points are in the `legate-testkit` crate; the tests that need them (signed
//! tokens) are in `tests/signed/`, not beside the code (see that file for why).

pub mod b64;
pub mod exchange;
pub mod json;
pub mod jwk;
pub mod jws;
pub mod secret;
pub mod text;
pub mod time;
pub mod verify;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod wycheproof;

pub use jwk::{KeyLookup, KeySet, VerifyingKey};
pub use jws::{Alg, ParseError, UnverifiedJwt};
pub use secret::Secret;
pub use time::{Clock, UnixSeconds};
pub use verify::{VerifiedClaims, VerifyError, VerifyRules, verify};
