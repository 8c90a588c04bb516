//! Legate's test kit: what tests, benchmarks and fuzz targets share, kept out of the
//! crates that production runs.
//!
//! What it does: signs real tokens with real keys ([`testkeys`]), generates the
//! deterministic attack corpus that a running Legate must refuse ([`corpus`]), and holds
//! the fuzzing entry points that the cargo-fuzz targets in `fuzz/` and the property tests
//! call ([`fuzz_logic`]). It builds on `legate-core`'s public API only.
//!
//! What it does not do: nothing here is compiled into the `legate` binary, and none of
//! it is safe outside tests (the corpus signs with a deliberately simple, non-constant-time
//! implementation; the keys are shared and well known).
//!
//! Users: the integration tests (`tests/`), `legate-core`'s benches and its signed-token
//! tests (`crates/legate-core/tests/`), and `fuzz/`. `legate-core` takes this crate as a
//! dev-dependency; its *unit* tests (`#[cfg(test)]` inside `src/`) must not use it: they
//! are a second build of `legate-core`, whose types differ from the ones this crate sees.
//! Tests that need signed tokens therefore live in `crates/legate-core/tests/`.
//!
//! Layout:
//! - [`testkeys`]: [`TestKey`](testkeys::TestKey), keys of every supported algorithm and
//!   token signing;
//! - [`corpus`]: [`generate`](corpus::generate), the attack corpus, and the configuration
//!   a running Legate needs to judge it;
//! - [`fuzz_logic`]: `fuzz_token`, `fuzz_jwks` and `fuzz_claims`, the invariants fuzzing
//!   checks.

pub mod corpus;
pub mod fuzz_logic;
pub mod testkeys;
