//! `KeySet::from_jwks`: which published keys are used, which are refused, and why.

use legate_core::b64;
use legate_core::jwk::{JwksError, KeyLookup, KeyProblem, KeySet, KeyWarning, MAX_KEYS};
use legate_core::jws::Alg;
use legate_testkit::testkeys::{TestKey, ec_p256_public_jwk};
use serde_json::{Value, json};

fn set(keys: Value) -> (KeySet, Vec<KeyWarning>) {
    KeySet::from_jwks(&serde_json::to_vec(&json!({ "keys": keys })).unwrap()).unwrap()
}

#[test]
fn good_keys_of_every_type_load() {
    let keys: Vec<Value> = TestKey::all().iter().map(TestKey::public_jwk).collect();
    let (s, w) = set(Value::Array(keys));
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(s.len(), TestKey::all().len());
}

#[test]
fn published_private_key_is_ignored() {
    let mut jwk = ec_p256_public_jwk("leaked");
    jwk["d"] = json!("AAAA");
    let (s, w) = set(json!([jwk]));
    assert!(s.is_empty());
    assert_eq!(w[0].problem, KeyProblem::PrivateMaterial("d"));
}

#[test]
fn encryption_keys_and_keys_without_verify_op_are_ignored() {
    let mut enc = ec_p256_public_jwk("enc");
    enc["use"] = json!("enc");
    let mut ops = ec_p256_public_jwk("ops");
    ops["key_ops"] = json!(["encrypt"]);
    let mut ok = ec_p256_public_jwk("ok");
    ok["key_ops"] = json!(["verify"]);
    let (s, w) = set(json!([enc, ops, ok]));
    assert_eq!(s.kids(), vec!["ok"]);
    assert_eq!(w.len(), 2);
}

#[test]
fn duplicate_kid_makes_that_kid_unusable_but_not_others() {
    let (s, w) = set(json!([
        ec_p256_public_jwk("dup"),
        TestKey::es256_b("dup").public_jwk(),
        ec_p256_public_jwk("fine")
    ]));
    assert!(matches!(s.get("dup"), KeyLookup::Ambiguous));
    assert!(matches!(s.get("fine"), KeyLookup::Found(_)));
    assert_eq!(w[0].problem, KeyProblem::DuplicateKid);
}

#[test]
fn one_unparseable_key_does_not_spoil_the_rest() {
    let (s, w) = set(json!([
        {"kty":"EC","kid":"bad","crv":"P-256","x":"!!","y":"??"},
        ec_p256_public_jwk("good")
    ]));
    assert_eq!(s.kids(), vec!["good"]);
    assert!(matches!(w[0].problem, KeyProblem::Malformed(_)));
}

#[test]
fn secp256k1_key_is_ignored() {
    let mut k = ec_p256_public_jwk("k1");
    k["crv"] = json!("secp256k1");
    let (_, w) = set(json!([k]));
    assert!(matches!(w[0].problem, KeyProblem::UnsupportedCurve(_)));
}

#[test]
fn ec_key_declaring_another_curves_alg_is_ignored() {
    let mut k = ec_p256_public_jwk("k");
    k["alg"] = json!("ES384");
    let (_, w) = set(json!([k]));
    assert!(matches!(w[0].problem, KeyProblem::AlgMismatch(_)));
}

#[test]
fn off_curve_point_is_ignored() {
    let mut k = ec_p256_public_jwk("k");
    k["y"] = json!(b64::encode([1u8; 32]));
    let (s, _) = set(json!([k]));
    assert!(s.is_empty());
}

#[test]
fn weak_rsa_keys_are_ignored() {
    // A 1024-bit modulus and an e=1 key built from the 2048-bit test key.
    let small = json!({"kty":"RSA","kid":"small","n": b64::encode([0xc5u8; 128]),"e":"AQAB"});
    let mut e1 = TestKey::rs256("e1").public_jwk();
    e1["e"] = json!("AQ");
    let mut even = TestKey::rs256("even").public_jwk();
    even["e"] = json!(b64::encode([0x01u8, 0x00, 0x00]));
    let (s, w) = set(json!([small, e1, even]));
    assert!(s.is_empty());
    assert_eq!(w[0].problem, KeyProblem::RsaSize(1024));
    assert_eq!(w[1].problem, KeyProblem::RsaExponent);
    assert_eq!(w[2].problem, KeyProblem::RsaExponent);
}

#[test]
fn rsa_key_without_alg_is_bound_to_rs256() {
    let mut k = TestKey::rs256("r").public_jwk();
    k.as_object_mut().unwrap().remove("alg");
    let (s, _) = set(json!([k]));
    let KeyLookup::Found(key) = s.get("r") else {
        panic!()
    };
    assert_eq!(key.alg(), Alg::Rs256);
}

#[test]
fn too_many_keys_are_refused_and_bad_documents_fail() {
    let keys: Vec<Value> = (0..=MAX_KEYS)
        .map(|i| ec_p256_public_jwk(&i.to_string()))
        .collect();
    assert_eq!(
        KeySet::from_jwks(&serde_json::to_vec(&json!({ "keys": keys })).unwrap()).unwrap_err(),
        JwksError::TooManyKeys(MAX_KEYS + 1)
    );
    assert_eq!(
        KeySet::from_jwks(b"{}").unwrap_err(),
        JwksError::NoKeysArray
    );
    assert!(KeySet::from_jwks(b"{\"keys\":[],\"keys\":[]}").is_err());
}
