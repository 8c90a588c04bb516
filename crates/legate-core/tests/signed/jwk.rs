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

/// Every order of `items`.
fn permutations(items: &[Value]) -> Vec<Vec<Value>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, first.clone());
            out.push(tail);
        }
    }
    out
}

/// What a set says about each kid, and its warnings, independent of order.
fn verdict(s: &KeySet, w: &[KeyWarning], kids: &[&str]) -> (Vec<String>, Vec<String>) {
    let lookups = kids
        .iter()
        .map(|kid| match s.get(kid) {
            KeyLookup::Found(k) => format!("{kid}: found {:?}", k.alg()),
            KeyLookup::Unknown => format!("{kid}: unknown"),
            KeyLookup::Ambiguous => format!("{kid}: ambiguous"),
        })
        .collect();
    let mut warnings: Vec<String> = w.iter().map(ToString::to_string).collect();
    warnings.sort();
    (lookups, warnings)
}

/// Stops a publisher (or whoever controls the JWKS) from choosing which of two
/// keys sharing a `kid` is trusted by choosing their order: in every order of a
/// document holding two different keys "dup", a malformed and a good key "half",
/// and two identical copies of key "twin", "dup" and "half" are ambiguous, "twin"
/// is found, and the warnings are the same. (Before, a malformed "half" placed
/// before the good one left the good one usable.)
#[test]
fn duplicate_kid_verdict_does_not_depend_on_key_order() {
    let entries = [
        json!({"kty":"EC","kid":"half","crv":"P-256","x":"!!","y":"??"}),
        TestKey::es256_b("half").public_jwk(),
        ec_p256_public_jwk("dup"),
        TestKey::es256_b("dup").public_jwk(),
        ec_p256_public_jwk("twin"),
        ec_p256_public_jwk("twin"),
    ];
    let kids = ["dup", "half", "twin"];
    let orders = permutations(&entries);
    assert_eq!(orders.len(), 720);
    let expected = (
        vec![
            "dup: ambiguous".to_owned(),
            "half: ambiguous".to_owned(),
            "twin: found Es256".to_owned(),
        ],
        vec![
            "key `dup` ignored: `kid` appears more than once, on different keys".to_owned(),
            "key `half` ignored: `kid` appears more than once, on different keys".to_owned(),
        ],
    );
    for order in orders {
        let (s, w) = set(Value::Array(order.clone()));
        assert_eq!(verdict(&s, &w, &kids), expected, "order: {order:?}");
        assert_eq!(s.kids(), vec!["twin"]);
    }
}

/// The order bug this replaced, on its own: a malformed entry before a good key
/// with the same `kid` makes the `kid` ambiguous, as it does after it.
#[test]
fn malformed_entry_before_a_good_key_of_its_kid_makes_the_kid_ambiguous() {
    let bad = json!({"kty":"EC","kid":"k","crv":"P-256","x":"!!","y":"??"});
    for keys in [
        json!([bad.clone(), ec_p256_public_jwk("k")]),
        json!([ec_p256_public_jwk("k"), bad.clone()]),
    ] {
        let (s, w) = set(keys);
        assert!(matches!(s.get("k"), KeyLookup::Ambiguous));
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].problem, KeyProblem::DuplicateKid);
    }
}

/// A JWKS that repeats one key verbatim (seen after careless merges) keeps the
/// key usable and warns about nothing; a repeated bad key warns once.
#[test]
fn identical_duplicate_entries_count_as_one() {
    let (s, w) = set(json!([ec_p256_public_jwk("k"), ec_p256_public_jwk("k")]));
    assert!(matches!(s.get("k"), KeyLookup::Found(_)));
    assert!(w.is_empty(), "{w:?}");
    let mut leaked = ec_p256_public_jwk("leak");
    leaked["d"] = json!("AAAA");
    let (s, w) = set(json!([leaked.clone(), leaked]));
    assert!(matches!(s.get("leak"), KeyLookup::Unknown));
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].problem, KeyProblem::PrivateMaterial("d"));
}

/// The same key material under one `kid` but with a different `alg` binding is
/// two different keys to a verifier: ambiguous, not collapsed.
#[test]
fn same_material_with_different_members_is_ambiguous() {
    let plain = TestKey::rs256("r").public_jwk();
    let mut pss = plain.clone();
    pss["alg"] = json!("PS256");
    let (s, _) = set(json!([plain, pss]));
    assert!(matches!(s.get("r"), KeyLookup::Ambiguous));
}
