//! `legate-core` tests that need real keys and signed tokens, from `legate-testkit`.
//!
//! They live here rather than beside the code because `legate-testkit` depends on
//! `legate-core`: a unit test inside `src/` is a second build of `legate-core` whose
//! types differ from the ones the testkit uses, while this binary links the same
//! `legate-core` as the testkit.
//!
//! - [`verify`]: `verify()`, one test per rule;
//! - [`jwk`]: which keys of a published JWK set are used;
//! - [`properties`]: property tests of parsing and verification.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: failing loudly is the point"
)]

mod jwk;
mod properties;
mod verify;
