//! Property tests of the pure helpers: base64url is canonical; log escaping removes
//! control characters and is bounded.
//!
//! The parsing and verification properties need signed tokens and the fuzzing entry
//! points of `legate-testkit`, so they are in `tests/signed/properties.rs`.

use proptest::prelude::*;

use crate::b64;
use crate::text::{MAX_ECHO_CHARS, escape_untrusted, escape_untrusted_within};

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

    #[test]
    fn escape_untrusted_within_has_no_control_characters_and_cuts_only_past_the_bound(
        s in any::<String>(),
        max_bytes in 0usize..64,
    ) {
        let out = escape_untrusted_within(&s, max_bytes);
        prop_assert!(!out.chars().any(char::is_control), "{:?}", out);
        prop_assert!(out.chars().all(|c| c.is_ascii() || c == '…'));
        prop_assert!(out.len() <= max_bytes * 10 + '…'.len_utf8());
        let whole = escape_untrusted_within(&s, s.len());
        if s.len() <= max_bytes {
            // Never cut: the full escape, with no marker.
            prop_assert_eq!(&out, &whole);
            prop_assert!(!whole.ends_with('…'));
        } else {
            // Cut: a prefix of the full escape, then the marker.
            let kept = out.strip_suffix('…');
            prop_assert!(kept.is_some_and(|k| whole.starts_with(k)), "{:?}", out);
        }
    }
}
