//! `cargo +nightly fuzz run config`: see docs/security.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = legate_server::fuzz_logic::fuzz_config(data) {
        panic!("invariant violated: {violation}");
    }
});
