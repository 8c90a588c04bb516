//! Legate's pure core.
//!
//! What it does: parses compact JWS tokens without trusting them, models JWKS key sets
//! (each key parsed once), verifies tokens against strict rules, and defines the RFC 8693
//! wire types and RFC 6749 error codes.
//!
//! What it does not do: no I/O, no async runtime, no HTTP and no clock reads. Every
//! function that needs the time takes `now` as a parameter; callers own the clock.
//!
//! Layout: `secret` (log-safe wrapper), `time` (the `Clock` trait and `UnixTime`),
//! `json` (strict JSON: duplicate members rejected), `b64` (canonical base64url),
//! `jws` (`UnverifiedJwt`), `jwk` (keys and key sets), `verify` (`verify()`,
//! `VerifiedClaims`, `VerifyError`), `exchange` (RFC 8693 types and error codes).

pub mod secret;

pub use secret::Secret;
