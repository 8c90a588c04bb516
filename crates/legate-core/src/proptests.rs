//! Property tests of the pure helpers: base64url is canonical; log escaping removes
//! control characters and is bounded.
//!
//! The parsing and verification properties need signed tokens and the fuzzing entry
//! points of `legate-testkit`, so they are in `tests/signed/properties.rs`.

use proptest::prelude::*;

use crate::b64;
use crate::text::{MAX_ECHO_CHARS, escape_untrusted};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn canonical_base64url_round_trips(b in prop::collection::vec(any::<u8>(), 0..128)) {
        prop_assert_eq!(b64::decode(&b64::encode(&b)).unwrap(), b);
    }

    #[test]
    fn every_accepted_base64url_string_is_the_canonical_encoding(s in "[A-Za-z0-9_=+/ -]{0,40}") {
        // SECURITY: one encoding per byte string, so re-encoded tokens are not new tokens.
        if let Ok(bytes) = b64::decode(&s) {
            prop_assert_eq!(b64::encode(bytes), s);
        }
    }

    #[test]
    fn escape_untrusted_has_no_control_characters_and_is_bounded(s in any::<String>()) {
        let out = escape_untrusted(&s);
        prop_assert!(!out.chars().any(char::is_control), "{:?}", out);
        // Each kept input character becomes at most `\u{10ffff}` (10 characters), plus
        // one `…` when the input was cut.
        prop_assert!(out.chars().count() <= MAX_ECHO_CHARS * 10 + 1);
        prop_assert!(out.chars().all(|c| c.is_ascii() || c == '…'));
        if s.chars().count() <= MAX_ECHO_CHARS {
            prop_assert!(!out.ends_with('…') || s.ends_with('…'));
        }
    }
}
