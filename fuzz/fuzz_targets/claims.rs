//! `cargo +nightly fuzz run claims`: see docs/security.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = legate_testkit::fuzz_logic::fuzz_claims(data) {
        panic!("invariant violated: {violation}");
    }
});
