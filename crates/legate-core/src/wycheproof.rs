//! Wycheproof JSON Web Signature vectors (an extract; see
//! `tests/data/wycheproof/NOTICE.md` and docs/security.md).
//!
//! Every vector runs twice:
//!
//! 1. through Legate's whole path, [`UnverifiedJwt::parse`] then [`verify()`] with the
//!    group's public key. Wycheproof's payloads are bytes such as `foo`, not JWT claims,
//!    so Legate refuses every vector here, the valid ones included; [`FULL_PATH`]
//!    records the reason for each, and the test fails if any reason changes;
//! 2. through the signature layer alone: the same steps [`verify()`] takes before it
//!    looks at the claims (strict header JSON, `alg` on the allow-list, the key built
//!    by [`VerifyingKey::from_jwk`], `kid` and algorithm binding, canonical base64url,
//!    the signature). Here `valid` must be accepted and `invalid` refused, except for
//!    the vectors in [`SIGNATURE_LAYER_EXCEPTIONS`].

use serde_json::{Map, Value, json};

use crate::jwk::{KeySet, VerifyingKey};
use crate::jws::{Alg, UnverifiedJwt};
use crate::verify::{VerifyRules, verify};
use crate::{b64, json};

const VECTORS: &str = include_str!("../tests/data/wycheproof/json_web_signature_test_extract.json");

/// Legate's reason for refusing each vector on the whole path.
///
/// - `bad_json`: the payload is not a JSON object (Wycheproof signs `foo`, ``, `a`,
///   zero bytes…); Legate verifies JWTs, whose payload must be a claims object. Every
///   `valid` vector of a supported algorithm lands here.
/// - `unsupported_alg`: `HS256` and `none` are not representable in Legate.
/// - `forbidden_header`: the header carries a `jwk` (the attacker's own key).
/// - `not_compact_jws`, `bad_encoding`: the shape is refused before any JSON is read.
const FULL_PATH: &[(u64, &str)] = &[
    (1, "unsupported_alg"),
    (16, "unsupported_alg"),
    (17, "not_compact_jws"),
    (18, "bad_json"),
    (19, "bad_json"),
    (20, "bad_json"),
    (21, "not_compact_jws"),
    (22, "bad_json"),
    (23, "bad_json"),
    (24, "not_compact_jws"),
    (25, "bad_json"),
    (26, "bad_json"),
    (27, "not_compact_jws"),
    (28, "bad_json"),
    (29, "not_compact_jws"),
    (30, "not_compact_jws"),
    (31, "unsupported_alg"),
    (32, "forbidden_header"),
    (33, "bad_json"),
    (34, "bad_json"),
    (35, "bad_json"),
    (36, "not_compact_jws"),
    (37, "bad_json"),
    (38, "bad_json"),
    (39, "not_compact_jws"),
    (40, "bad_json"),
    (41, "bad_json"),
    (42, "not_compact_jws"),
    (43, "bad_json"),
    (44, "not_compact_jws"),
    (45, "not_compact_jws"),
    (272, "bad_json"),
    (273, "bad_json"),
    (274, "bad_json"),
    (275, "bad_json"),
    (276, "bad_json"),
    (287, "bad_json"),
    (288, "bad_json"),
    (356, "bad_json"),
];

/// Vectors whose signature-layer outcome differs from Wycheproof's `result`, and why.
const SIGNATURE_LAYER_EXCEPTIONS: &[(u64, &str)] = &[(
    1,
    "valid HS256 MAC: Legate never verifies HMAC (a JWKS key is public, so an HMAC key \
     in it is a key anyone knows); refused as unsupported_alg",
)];

struct Case {
    tc: u64,
    comment: String,
    jws: String,
    valid: bool,
    key: Option<Map<String, Value>>,
}

fn cases() -> Vec<Case> {
    let doc: Value = serde_json::from_str(VECTORS).unwrap();
    let mut out = Vec::new();
    for group in doc["testGroups"].as_array().unwrap() {
        let key = group.get("public").and_then(Value::as_object).cloned();
        for t in group["tests"].as_array().unwrap() {
            out.push(Case {
                tc: t["tcId"].as_u64().unwrap(),
                comment: t["comment"].as_str().unwrap().to_owned(),
                jws: t["jws"].as_str().unwrap().to_owned(),
                valid: match t["result"].as_str().unwrap() {
                    "valid" => true,
                    "invalid" => false,
                    other => panic!("tcId {}: result {other}", t["tcId"]),
                },
                key: key.clone(),
            });
        }
    }
    assert_eq!(out.len() as u64, doc["numberOfTests"].as_u64().unwrap());
    out
}

/// Parse, then verify with the group's public key; the refusal's reason code.
fn full_path(case: &Case) -> Result<(), &'static str> {
    let jwt = UnverifiedJwt::parse(&case.jws).map_err(|e| e.reason_code())?;
    let keys = match &case.key {
        Some(k) => {
            KeySet::from_jwks(&serde_json::to_vec(&json!({ "keys": [k] })).unwrap())
                .unwrap()
                .0
        }
        None => KeySet::default(),
    };
    let rules = VerifyRules::new("", vec![]);
    verify(jwt, &keys, &rules, 0)
        .map(drop)
        .map_err(|e| e.reason_code())
}

/// What `verify()` checks before the claims, applied to a bare JWS.
fn signature_layer(case: &Case) -> Result<(), &'static str> {
    let parts: Vec<&str> = case.jws.split('.').collect();
    let [h64, p64, s64] = parts.as_slice() else {
        return Err("not_compact_jws");
    };
    let header = b64::decode(h64).map_err(|_| "bad_encoding")?;
    let header = json::parse_object(&header).map_err(|_| "bad_json")?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(Alg::from_jose)
        .ok_or("unsupported_alg")?;
    let key = case.key.as_ref().ok_or("no_public_key")?;
    let key = VerifyingKey::from_jwk(key).map_err(|_| "key_refused")?;
    if header.get("kid").and_then(Value::as_str) != Some(key.kid()) {
        return Err("unknown_kid");
    }
    if key.alg() != alg {
        return Err("alg_key_mismatch");
    }
    b64::decode(p64).map_err(|_| "bad_encoding")?;
    let signature = b64::decode(s64).map_err(|_| "bad_encoding")?;
    if key.verify_signature(format!("{h64}.{p64}").as_bytes(), &signature) {
        Ok(())
    } else {
        Err("bad_signature")
    }
}

#[test]
fn every_vector_is_refused_on_the_full_path_for_the_recorded_reason() {
    let cases = cases();
    let mut unexpected = Vec::new();
    for case in &cases {
        let expected = FULL_PATH
            .iter()
            .find(|(tc, _)| *tc == case.tc)
            .map(|(_, r)| *r)
            // The SpecialCaseEs256 vectors share the `foo` payload: refused as bad_json.
            .unwrap_or("bad_json");
        let got = full_path(case);
        if got != Err(expected) {
            unexpected.push(format!(
                "tcId {} ({}): expected {expected}, got {got:?}",
                case.tc, case.comment
            ));
        }
    }
    assert!(unexpected.is_empty(), "{unexpected:#?}");
}

#[test]
fn signature_layer_accepts_valid_and_refuses_invalid_vectors() {
    let cases = cases();
    let mut wrong = Vec::new();
    let mut accepted = 0;
    for case in &cases {
        let got = signature_layer(case);
        let exception = SIGNATURE_LAYER_EXCEPTIONS
            .iter()
            .any(|(tc, _)| *tc == case.tc);
        let agrees = got.is_ok() == case.valid;
        if agrees == exception {
            wrong.push(format!(
                "tcId {} ({}, {}): {got:?}",
                case.tc,
                case.comment,
                if case.valid { "valid" } else { "invalid" }
            ));
        }
        accepted += usize::from(got.is_ok());
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // es256 18, rs256 33, ps256 272-275/287/288, SpecialCaseEs256 378.
    assert_eq!(accepted, 9);
}

#[test]
fn the_malleated_ecdsa_signature_verifies_and_is_a_different_token() {
    // Wycheproof 378 is vector 18 with s replaced by n - s: both are valid ECDSA
    // signatures. Legate accepts both, so token bytes can never be a replay key; the
    // replay cache keys on (iss, jti) instead (ARCHITECTURE.md, step 7).
    let cases = cases();
    let find = |tc| cases.iter().find(|c| c.tc == tc).unwrap();
    let (a, b) = (find(18), find(378));
    assert_ne!(a.jws, b.jws);
    assert_eq!(signature_layer(a), Ok(()));
    assert_eq!(signature_layer(b), Ok(()));
}

#[test]
fn a_key_published_for_encryption_is_never_used() {
    let case = cases().into_iter().find(|c| c.tc == 356).unwrap();
    assert_eq!(signature_layer(&case), Err("key_refused"));
}
