//! `verify()`: one test per rule, each named after the attack or mistake it stops.

use legate_core::jwk::KeySet;
use legate_core::jws::{Alg, UnverifiedJwt};
use legate_core::verify::{VerifiedClaims, VerifyError, VerifyRules, verify};
use legate_testkit::testkeys::TestKey;
use serde_json::{Value, json};

const ISS: &str = "https://token.actions.githubusercontent.com";
const AUD: &str = "legate";
const NOW: i64 = 1_800_000_000;

fn rules() -> VerifyRules {
    VerifyRules::new(ISS, vec![AUD.into()])
}

fn claims() -> Value {
    json!({"iss":ISS,"aud":AUD,"sub":"repo:o/r:ref:refs/heads/main","jti":"j1",
           "iat":NOW - 10,"nbf":NOW - 10,"exp":NOW + 290})
}

fn keyset(keys: &[&TestKey]) -> KeySet {
    let jwks = json!({"keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>()});
    KeySet::from_jwks(&serde_json::to_vec(&jwks).unwrap())
        .unwrap()
        .0
}

fn run(token: &str, keys: &KeySet, rules: &VerifyRules) -> Result<VerifiedClaims, VerifyError> {
    verify(UnverifiedJwt::parse(token).unwrap(), keys, rules, NOW)
}

fn with(mut c: Value, name: &str, v: Value) -> Value {
    c[name] = v;
    c
}

fn without(mut c: Value, name: &str) -> Value {
    c.as_object_mut().unwrap().remove(name);
    c
}

#[test]
fn accepts_every_supported_algorithm() {
    for key in TestKey::all() {
        let ks = keyset(&[&key]);
        let v = run(&key.token(&claims()), &ks, &rules()).unwrap();
        assert_eq!(v.alg(), key.alg);
        assert_eq!(v.subject(), "repo:o/r:ref:refs/heads/main");
        assert_eq!(v.audience(), AUD);
        assert_eq!(v.jti(), Some("j1"));
    }
}

#[test]
fn algorithm_not_allowed_for_issuer_is_rejected() {
    let key = TestKey::es256("k");
    let mut r = rules();
    r.algorithms = vec![Alg::Rs256];
    assert_eq!(
        run(&key.token(&claims()), &keyset(&[&key]), &r).unwrap_err(),
        VerifyError::AlgNotAllowed(Alg::Es256)
    );
}

#[test]
fn header_alg_other_than_key_alg_is_rejected() {
    // RS512 / PS256 presented for a key bound to RS256: algorithm confusion.
    let rs = TestKey::rs256("k");
    let ks = keyset(&[&rs]);
    for alg in ["RS512", "PS256"] {
        let mut forged = rs.clone();
        forged.alg = Alg::from_jose(alg).unwrap();
        let t = forged.token(&claims());
        assert!(matches!(
            run(&t, &ks, &rules()).unwrap_err(),
            VerifyError::AlgKeyMismatch {
                key: Alg::Rs256,
                ..
            }
        ));
    }
    // And the reverse: RS256 for a key published as PS256.
    let ps = TestKey::ps256("p");
    let mut forged = ps.clone();
    forged.alg = Alg::Rs256;
    assert!(matches!(
        run(&forged.token(&claims()), &keyset(&[&ps]), &rules()).unwrap_err(),
        VerifyError::AlgKeyMismatch {
            key: Alg::Ps256,
            ..
        }
    ));
}

#[test]
fn es256_header_on_p384_key_is_rejected() {
    let k384 = TestKey::es384("k");
    let mut forged = k384.clone();
    forged.alg = Alg::Es256;
    assert!(matches!(
        run(&forged.token(&claims()), &keyset(&[&k384]), &rules()).unwrap_err(),
        VerifyError::AlgKeyMismatch { .. }
    ));
}

#[test]
fn unknown_kid_is_reported_for_refresh() {
    let key = TestKey::es256("known");
    let other = TestKey::es256("rotated-in");
    assert_eq!(
        run(&other.token(&claims()), &keyset(&[&key]), &rules()).unwrap_err(),
        VerifyError::UnknownKid("rotated-in".into())
    );
}

#[test]
fn key_of_another_issuer_never_verifies() {
    // Same kid, different key: the set of issuer A cannot verify issuer B's token.
    let a = TestKey::es256("shared-kid");
    let b = TestKey::es256_b("shared-kid");
    assert_eq!(
        run(&b.token(&claims()), &keyset(&[&a]), &rules()).unwrap_err(),
        VerifyError::BadSignature
    );
}

#[test]
fn edited_payload_fails_signature() {
    let key = TestKey::es256("k");
    let t = key.token(&claims());
    let parts: Vec<&str> = t.split('.').collect();
    let evil = legate_core::b64::encode(
        serde_json::to_vec(&with(
            claims(),
            "sub",
            json!("repo:evil/r:ref:refs/heads/main"),
        ))
        .unwrap(),
    );
    let forged = format!("{}.{}.{}", parts[0], evil, parts[2]);
    assert_eq!(
        run(&forged, &keyset(&[&key]), &rules()).unwrap_err(),
        VerifyError::BadSignature
    );
}

#[test]
fn empty_flipped_and_truncated_signatures_fail() {
    for key in [
        TestKey::rs256("k"),
        TestKey::es256("k"),
        TestKey::eddsa("k"),
    ] {
        let ks = keyset(&[&key]);
        let t = key.token(&claims());
        let (input, sig) = t.rsplit_once('.').unwrap();
        let mut raw = legate_core::b64::decode(sig).unwrap();
        let variants = [
            Vec::new(),
            {
                let mut f = raw.clone();
                f[0] ^= 1;
                f
            },
            raw[..raw.len() - 1].to_vec(),
        ];
        for v in variants {
            let forged = format!("{input}.{}", legate_core::b64::encode(&v));
            assert_eq!(
                run(&forged, &ks, &rules()).unwrap_err(),
                VerifyError::BadSignature
            );
        }
        raw.clear();
    }
}

#[test]
fn psychic_ecdsa_zero_signature_fails() {
    // CVE-2022-21449: r = s = 0 accepted by a broken ECDSA verifier.
    let key = TestKey::es256("k");
    let t = key.token(&claims());
    let (input, _) = t.rsplit_once('.').unwrap();
    let forged = format!("{input}.{}", legate_core::b64::encode([0u8; 64]));
    assert_eq!(
        run(&forged, &keyset(&[&key]), &rules()).unwrap_err(),
        VerifyError::BadSignature
    );
}

#[test]
fn der_encoded_ecdsa_signature_fails() {
    // JWS ES256 is the fixed 64-byte r||s form (RFC 7518 §3.4); DER is not accepted.
    let key = TestKey::es256("k");
    let t = key.token(&claims());
    let (input, sig) = t.rsplit_once('.').unwrap();
    let raw = legate_core::b64::decode(sig).unwrap();
    let mut der = vec![0x30, 0x46, 0x02, 0x21, 0x00];
    der.extend_from_slice(&raw[..32]);
    der.extend_from_slice(&[0x02, 0x21, 0x00]);
    der.extend_from_slice(&raw[32..]);
    let forged = format!("{input}.{}", legate_core::b64::encode(&der));
    assert_eq!(
        run(&forged, &keyset(&[&key]), &rules()).unwrap_err(),
        VerifyError::BadSignature
    );
}

#[test]
fn wrong_issuer_is_rejected_exactly() {
    let key = TestKey::es256("k");
    let ks = keyset(&[&key]);
    for iss in [
        "https://token.actions.githubusercontent.com/",
        "http://token.actions.githubusercontent.com",
        "https://TOKEN.actions.githubusercontent.com",
        "https://evil.example",
    ] {
        assert!(matches!(
            run(
                &key.token(&with(claims(), "iss", json!(iss))),
                &ks,
                &rules()
            )
            .unwrap_err(),
            VerifyError::IssuerMismatch(_)
        ));
    }
}

#[test]
fn audience_confusion_is_rejected() {
    let key = TestKey::es256("k");
    let ks = keyset(&[&key]);
    let mismatch = [
        json!("other"),
        json!("legat"),
        json!("legate2"),
        json!(["a", "b"]),
    ];
    for aud in mismatch {
        assert_eq!(
            run(&key.token(&with(claims(), "aud", aud)), &ks, &rules()).unwrap_err(),
            VerifyError::AudienceMismatch
        );
    }
    let invalid = [json!([]), json!({"aud":AUD}), json!([AUD, 1]), json!(7)];
    for aud in invalid {
        assert_eq!(
            run(&key.token(&with(claims(), "aud", aud)), &ks, &rules()).unwrap_err(),
            VerifyError::InvalidClaim("aud")
        );
    }
    assert_eq!(
        run(&key.token(&without(claims(), "aud")), &ks, &rules()).unwrap_err(),
        VerifyError::MissingClaim("aud".into())
    );
    let ok = run(
        &key.token(&with(claims(), "aud", json!(["x", AUD]))),
        &ks,
        &rules(),
    );
    assert_eq!(ok.unwrap().audience(), AUD);
}

#[test]
fn non_integer_time_claims_are_rejected() {
    let key = TestKey::es256("k");
    let ks = keyset(&[&key]);
    for name in ["exp", "nbf", "iat"] {
        for v in [
            json!("1800000100"),
            json!(1_800_000_100.5),
            json!(true),
            json!(-1),
            json!(1e20),
            json!(null),
        ] {
            assert_eq!(
                run(&key.token(&with(claims(), name, v.clone())), &ks, &rules()).unwrap_err(),
                VerifyError::InvalidClaim(name),
                "{name} = {v}"
            );
        }
    }
}

#[test]
fn missing_exp_is_rejected() {
    let key = TestKey::es256("k");
    assert_eq!(
        run(
            &key.token(&without(claims(), "exp")),
            &keyset(&[&key]),
            &rules()
        )
        .unwrap_err(),
        VerifyError::MissingClaim("exp".into())
    );
}

#[test]
fn expiry_is_enforced_one_second_outside_leeway() {
    let key = TestKey::es256("k");
    let ks = keyset(&[&key]);
    let r = rules();
    let inside = with(
        with(claims(), "exp", json!(NOW - 59)),
        "iat",
        json!(NOW - 300),
    );
    assert!(run(&key.token(&inside), &ks, &r).is_ok());
    let outside = with(
        with(claims(), "exp", json!(NOW - 60)),
        "iat",
        json!(NOW - 300),
    );
    assert_eq!(
        run(&key.token(&outside), &ks, &r).unwrap_err(),
        VerifyError::Expired { exp: NOW - 60 }
    );
}

#[test]
fn not_before_is_enforced_one_second_outside_leeway() {
    let key = TestKey::es256("k");
    let ks = keyset(&[&key]);
    let base = without(claims(), "iat");
    assert!(
        run(
            &key.token(&with(base.clone(), "nbf", json!(NOW + 60))),
            &ks,
            &rules()
        )
        .is_ok()
    );
    assert_eq!(
        run(
            &key.token(&with(base, "nbf", json!(NOW + 61))),
            &ks,
            &rules()
        )
        .unwrap_err(),
        VerifyError::NotYetValid { nbf: NOW + 61 }
    );
}

#[test]
fn issued_in_the_future_is_rejected() {
    let key = TestKey::es256("k");
    let c = with(
        with(claims(), "iat", json!(NOW + 61)),
        "exp",
        json!(NOW + 200),
    );
    assert_eq!(
        run(&key.token(&c), &keyset(&[&key]), &rules()).unwrap_err(),
        VerifyError::IssuedInFuture { iat: NOW + 61 }
    );
}

#[test]
fn exp_before_iat_is_rejected() {
    let key = TestKey::es256("k");
    let c = with(
        with(claims(), "iat", json!(NOW + 30)),
        "exp",
        json!(NOW + 20),
    );
    assert_eq!(
        run(&key.token(&c), &keyset(&[&key]), &rules()).unwrap_err(),
        VerifyError::ExpiresBeforeIssued
    );
}

#[test]
fn lifetime_over_the_cap_is_rejected_and_exactly_at_cap_accepted() {
    let key = TestKey::es256("k");
    let ks = keyset(&[&key]);
    let at_cap = with(
        with(claims(), "iat", json!(NOW - 100)),
        "exp",
        json!(NOW - 100 + 3600),
    );
    assert!(run(&key.token(&at_cap), &ks, &rules()).is_ok());
    let over = with(
        with(claims(), "iat", json!(NOW - 100)),
        "exp",
        json!(NOW - 100 + 3601),
    );
    assert!(matches!(
        run(&key.token(&over), &ks, &rules()).unwrap_err(),
        VerifyError::LifetimeTooLong {
            lifetime: 3601,
            cap: 3600
        }
    ));
    // Without `iat`, the remaining lifetime is capped.
    let long = with(without(claims(), "iat"), "exp", json!(NOW + 86_400));
    assert!(matches!(
        run(&key.token(&long), &ks, &rules()).unwrap_err(),
        VerifyError::LifetimeTooLong { .. }
    ));
}

#[test]
fn missing_or_mistyped_sub_and_jti_are_rejected() {
    let key = TestKey::es256("k");
    let ks = keyset(&[&key]);
    assert_eq!(
        run(&key.token(&without(claims(), "sub")), &ks, &rules()).unwrap_err(),
        VerifyError::MissingClaim("sub".into())
    );
    for v in [json!(1), json!(""), json!(["s"])] {
        assert_eq!(
            run(&key.token(&with(claims(), "sub", v.clone())), &ks, &rules()).unwrap_err(),
            VerifyError::InvalidClaim("sub")
        );
        assert_eq!(
            run(&key.token(&with(claims(), "jti", v)), &ks, &rules()).unwrap_err(),
            VerifyError::InvalidClaim("jti")
        );
    }
    assert_eq!(
        run(&key.token(&without(claims(), "jti")), &ks, &rules()).unwrap_err(),
        VerifyError::MissingClaim("jti".into())
    );
    let mut lax = rules();
    lax.require_jti = false;
    assert!(run(&key.token(&without(claims(), "jti")), &ks, &lax).is_ok());
}

#[test]
fn required_claims_are_enforced() {
    let key = TestKey::es256("k");
    let mut r = rules();
    r.required_claims = vec!["repository_id".into()];
    let ks = keyset(&[&key]);
    assert_eq!(
        run(&key.token(&claims()), &ks, &r).unwrap_err(),
        VerifyError::MissingClaim("repository_id".into())
    );
    assert!(
        run(
            &key.token(&with(claims(), "repository_id", json!("1"))),
            &ks,
            &r
        )
        .is_ok()
    );
}

#[test]
fn high_s_ecdsa_signature_is_accepted() {
    // Issuers do not normalise S; (r, n - s) is as valid as (r, s). Replay protection
    // keys on (iss, jti), never on signature bytes, so malleability does not matter.
    let key = TestKey::es256("k");
    let t = key.token(&claims());
    let (input, sig) = t.rsplit_once('.').unwrap();
    let raw = legate_core::b64::decode(sig).unwrap();
    let s_neg = p256_negate(&raw[32..]);
    let mut flipped = raw[..32].to_vec();
    flipped.extend_from_slice(&s_neg);
    let other = format!("{input}.{}", legate_core::b64::encode(&flipped));
    assert!(run(&other, &keyset(&[&key]), &rules()).is_ok());
}

/// n - s for the P-256 group order n (big-endian, 32 bytes).
fn p256_negate(s: &[u8]) -> Vec<u8> {
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    out.to_vec()
}
