//! Property tests of the parsing and verification path: it never panics, whatever the
//! input; signed tokens that verify honour every rule.
//!
//! Case counts are modest so that `cargo test -p legate-core` stays fast; the fuzz
//! targets in `fuzz/` explore the same functions (`legate_testkit::fuzz_logic`) for
//! longer (see docs/security.md). Regression tests for inputs found by fuzzing go at the
//! end of this file.

use legate_core::b64;
use legate_core::jwk::KeySet;
use legate_core::jws::{Alg, UnverifiedJwt};
use legate_core::verify;
use legate_testkit::fuzz_logic::{self, AUDIENCE, ISSUER, NOW};
use legate_testkit::testkeys::TestKey;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A NumericDate-ish value: mostly integers near [`NOW`], sometimes the wrong type.
fn date() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => (-100i64..3000).prop_map(|d| json!(NOW + d)),
        2 => (-4000i64..4000).prop_map(|d| json!(NOW + d)),
        1 => Just(json!(-1)),
        1 => Just(json!(1e20)),
        1 => Just(json!(1_800_000_000.5)),
        1 => Just(json!("1800000100")),
        1 => json_value(),
    ]
}

fn string_or_other(good: &'static str) -> impl Strategy<Value = Value> {
    prop_oneof![
        12 => Just(json!(good)),
        1 => Just(json!("")),
        1 => json_value(),
    ]
}

/// Claims built to pass sometimes and to fail each check sometimes.
fn claims() -> impl Strategy<Value = Map<String, Value>> {
    (
        (
            prop::option::weighted(0.95, string_or_other(ISSUER)),
            prop::option::weighted(
                0.9,
                prop_oneof![
                    9 => Just(json!(AUDIENCE)),
                    1 => Just(json!(["other", AUDIENCE])),
                    1 => Just(json!([AUDIENCE, 7])),
                    1 => Just(json!([])),
                    1 => json_value(),
                ],
            ),
            prop::option::weighted(0.95, string_or_other("repo:o/r:ref:refs/heads/main")),
            prop::option::weighted(0.95, string_or_other("jti-1")),
        ),
        (
            prop::option::weighted(0.95, date()),
            prop::option::weighted(0.3, date()),
            prop::option::weighted(0.3, date()),
        ),
        prop::collection::btree_map("[a-z]{1,8}", json_value(), 0..3),
    )
        .prop_map(|((iss, aud, sub, jti), (exp, nbf, iat), extra)| {
            let mut m: Map<String, Value> = extra.into_iter().collect();
            for (name, v) in [
                ("iss", iss),
                ("aud", aud),
                ("sub", sub),
                ("jti", jti),
                ("exp", exp),
                ("nbf", nbf),
                ("iat", iat),
            ] {
                if let Some(v) = v {
                    m.insert(name.to_owned(), v);
                }
            }
            m
        })
}

/// A header that is usually acceptable and sometimes carries what Legate refuses.
fn header() -> impl Strategy<Value = Map<String, Value>> {
    (
        prop_oneof![
            12 => Just(json!("ES256")),
            1 => Just(json!("ES384")),
            1 => Just(json!("RS256")),
            1 => Just(json!("none")),
            1 => Just(json!("HS256")),
            1 => json_value(),
        ],
        prop_oneof![
            12 => Just(json!("es256")),
            1 => Just(json!("")),
            1 => Just(json!("unknown")),
            1 => json_value(),
        ],
        prop::option::weighted(
            0.3,
            prop_oneof![
                Just(json!("JWT")),
                Just(json!("application/jwt")),
                Just(json!("at+jwt")),
                json_value(),
            ],
        ),
        prop::option::weighted(
            0.25,
            (
                prop_oneof![
                    Just("jku".to_owned()),
                    Just("jwk".to_owned()),
                    Just("crit".to_owned()),
                    Just("x5c".to_owned()),
                    "[a-z]{1,6}",
                ],
                json_value(),
            ),
        ),
    )
        .prop_map(|(alg, kid, typ, extra)| {
            let mut h: Map<String, Value> = extra.into_iter().collect();
            h.insert("alg".into(), alg);
            h.insert("kid".into(), kid);
            if let Some(typ) = typ {
                h.insert("typ".into(), typ);
            }
            h
        })
}

fn es256_key_set(key: &TestKey) -> KeySet {
    KeySet::from_jwks(&serde_json::to_vec(&json!({ "keys": [key.public_jwk()] })).unwrap())
        .unwrap()
        .0
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn verification_never_panics_on_arbitrary_strings(s in ".{0,300}") {
        fuzz_logic::fuzz_token(s.as_bytes()).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn verification_never_panics_on_arbitrary_bytes(b in prop::collection::vec(any::<u8>(), 0..300)) {
        fuzz_logic::fuzz_token(&b).map_err(TestCaseError::fail)?;
        fuzz_logic::fuzz_jwks(&b).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn verification_never_panics_on_three_base64url_segments(
        h in prop::collection::vec(any::<u8>(), 0..96),
        p in prop::collection::vec(any::<u8>(), 0..96),
        s in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let token = format!("{}.{}.{}", b64::encode(&h), b64::encode(&p), b64::encode(&s));
        fuzz_logic::fuzz_token(token.as_bytes()).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn verification_never_panics_on_json_segments_with_any_signature(
        h in header(),
        c in claims(),
        s in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let token = format!(
            "{}.{}.{}",
            b64::encode(serde_json::to_vec(&h).unwrap()),
            b64::encode(serde_json::to_vec(&c).unwrap()),
            b64::encode(&s)
        );
        fuzz_logic::fuzz_token(token.as_bytes()).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn any_jwks_document_is_handled(keys in prop::collection::vec(json_value(), 0..4)) {
        let doc = serde_json::to_vec(&json!({ "keys": keys })).unwrap();
        fuzz_logic::fuzz_jwks(&doc).map_err(TestCaseError::fail)?;
    }

}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn signed_claims_that_verify_honour_every_rule(c in claims()) {
        // `fuzz_claims` signs with a real Ed25519 key, verifies, and checks that an
        // accepted token meets issuer, audience, subject, jti, time and lifetime rules.
        let bytes = serde_json::to_vec(&c).unwrap();
        fuzz_logic::fuzz_claims(&bytes).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn signed_tokens_with_arbitrary_headers_never_panic(h in header(), c in claims()) {
        let key = TestKey::es256("es256");
        let keys = es256_key_set(&key);
        let rules = verify::VerifyRules::new(ISSUER, vec![AUDIENCE.into()]);
        let token = key.token_with_header(&Value::Object(h.clone()), &Value::Object(c));
        if let Ok(jwt) = UnverifiedJwt::parse(&token)
            && let Ok(v) = verify::verify(jwt, &keys, &rules, NOW)
        {
            // Only the real key's algorithm and kid can succeed.
            prop_assert_eq!(v.alg(), Alg::Es256);
            prop_assert_eq!(v.kid(), "es256");
            prop_assert_eq!(h.get("alg"), Some(&json!("ES256")));
        }
    }
}

// ---- regressions from fuzzing ----------------------------------------------------------
