//! JSON Web Keys (RFC 7517) for verification: parsed once, bound to one algorithm.
//!
//! A [`KeySet`] is built from a JWKS document. Each key is checked and turned into a
//! ready-to-use public key once per fetch (parsing costs far more than verifying with a
//! parsed key). A bad key never spoils the set: it is left out with a [`KeyWarning`].
//!
//! SECURITY rules enforced here:
//! - every key is bound to exactly one [`Alg`]: its `alg` member, or, when absent, the
//!   only algorithm its type implies (EC P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA,
//!   RSA → RS256, the OIDC Core §15.1 default). A token whose header names another
//!   algorithm is refused, which stops RS/PS and cross-curve confusion;
//! - symmetric (`oct`) keys are never used: a JWKS is public, so an HMAC key in it is a
//!   key anyone knows;
//! - keys carrying private members are left out (the publisher leaked them; trusting
//!   them would trust anyone who read the JWKS);
//! - `use` other than `sig`, or `key_ops` without `verify`, are left out (RFC 7517 §4.2-3);
//! - RSA moduli under 2048 bits (RFC 7518 §3.3) and public exponents that are even or
//!   below 3 are left out;
//! - a `kid` named by two entries that differ is unusable: which key would be meant is
//!   ambiguous. Every entry with that `kid` is left out, whatever the order of the
//!   entries and whether each would parse on its own (a malformed entry still shows the
//!   publisher meant two keys). Entries that are identical JSON count as one.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use serde_json::{Map, Value};

use crate::jws::Alg;
use crate::text::escape_untrusted;
use crate::{b64, json};

/// The most keys one JWKS may hold.
pub const MAX_KEYS: usize = 100;

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// The largest RSA modulus accepted, in bits.
pub const MAX_RSA_BITS: usize = 8192;

/// Why a whole JWKS document was refused (individual bad keys only warn).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwksError {
    /// Not a strict JSON object.
    #[error("jwks is not valid: {0}")]
    Json(#[from] json::JsonError),
    /// No `keys` array.
    #[error("jwks has no `keys` array")]
    NoKeysArray,
    /// More than [`MAX_KEYS`] keys.
    #[error("jwks has {0} keys, over the limit of {MAX_KEYS}")]
    TooManyKeys(usize),
}

/// Why one key of a JWKS was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyWarning {
    /// The key's `kid`, escaped, if it had one.
    pub kid: Option<String>,
    /// What was wrong.
    pub problem: KeyProblem,
}

impl std::fmt::Display for KeyWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kid {
            Some(kid) => write!(f, "key `{kid}` ignored: {}", self.problem),
            None => write!(f, "key ignored: {}", self.problem),
        }
    }
}

/// What was wrong with one key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// Not a JSON object.
    #[error("not an object")]
    NotAnObject,
    /// No string `kid`.
    #[error("no string `kid`")]
    MissingKid,
    /// Private key members were published.
    #[error("it contains private key material (`{0}`)")]
    PrivateMaterial(&'static str),
    /// `kty` is `oct`.
    #[error("symmetric keys are never trusted")]
    Symmetric,
    /// `kty` unknown.
    #[error("unsupported key type `{0}`")]
    UnsupportedKty(String),
    /// `crv` unknown (e.g. secp256k1).
    #[error("unsupported curve `{0}`")]
    UnsupportedCurve(String),
    /// `alg` unknown or not usable with this key type.
    #[error("algorithm `{0}` does not fit this key")]
    AlgMismatch(String),
    /// `use` is not `sig`.
    #[error("`use` is `{0}`, not `sig`")]
    NotForSignatures(String),
    /// `key_ops` lacks `verify`.
    #[error("`key_ops` does not allow `verify`")]
    NoVerifyOp,
    /// RSA modulus size out of range.
    #[error("rsa modulus of {0} bits is outside {MIN_RSA_BITS}..={MAX_RSA_BITS}")]
    RsaSize(usize),
    /// RSA exponent weak or malformed.
    #[error("rsa public exponent is not an odd number of at least 3")]
    RsaExponent,
    /// A member is missing, mistyped, or not canonical base64url, or the key is invalid.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The `kid` names more than one different entry in the set.
    #[error("`kid` appears more than once, on different keys")]
    DuplicateKid,
}

/// A public key ready to verify signatures of exactly one algorithm.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: String,
    alg: Alg,
    key: ParsedPublicKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &escape_untrusted(&self.kid))
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// Builds a key from one JWK object.
    pub fn from_jwk(jwk: &Map<String, Value>) -> Result<Self, KeyProblem> {
        const PRIVATE: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
        let kid = match jwk.get("kid") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(KeyProblem::MissingKid),
        };
        let kty = str_member(jwk, "kty")?;
        if kty == "oct" {
            return Err(KeyProblem::Symmetric);
        }
        if let Some(name) = PRIVATE.into_iter().find(|m| jwk.contains_key(*m)) {
            return Err(KeyProblem::PrivateMaterial(name));
        }
        match jwk.get("use") {
            None => {}
            Some(Value::String(u)) if u == "sig" => {}
            Some(Value::String(u)) => {
                return Err(KeyProblem::NotForSignatures(escape_untrusted(u)));
            }
            Some(_) => return Err(KeyProblem::Malformed("`use` is not a string".into())),
        }
        match jwk.get("key_ops") {
            None => {}
            Some(Value::Array(ops)) if ops.iter().any(|o| o == "verify") => {}
            Some(_) => return Err(KeyProblem::NoVerifyOp),
        }
        let declared = match jwk.get("alg") {
            None => None,
            Some(Value::String(a)) => Some(
                Alg::from_jose(a).ok_or_else(|| KeyProblem::AlgMismatch(escape_untrusted(a)))?,
            ),
            Some(_) => return Err(KeyProblem::Malformed("`alg` is not a string".into())),
        };
        let (alg, key) = match kty {
            "RSA" => rsa_key(jwk, declared)?,
            "EC" => ec_key(jwk, declared)?,
            "OKP" => okp_key(jwk, declared)?,
            other => return Err(KeyProblem::UnsupportedKty(escape_untrusted(other))),
        };
        Ok(Self { kid, alg, key })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The one algorithm this key verifies.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// Checks `signature` over `message`.
    pub fn verify_signature(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}

fn str_member<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<&'a str, KeyProblem> {
    match jwk.get(name) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(KeyProblem::Malformed(format!("no string `{name}`"))),
    }
}

fn bytes_member(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, KeyProblem> {
    b64::decode(str_member(jwk, name)?).map_err(|e| KeyProblem::Malformed(format!("`{name}`: {e}")))
}

fn check_alg(declared: Option<Alg>, implied: Alg, allowed: &[Alg]) -> Result<Alg, KeyProblem> {
    let alg = declared.unwrap_or(implied);
    if allowed.contains(&alg) {
        Ok(alg)
    } else {
        Err(KeyProblem::AlgMismatch(alg.as_str().to_owned()))
    }
}

fn rsa_key(
    jwk: &Map<String, Value>,
    declared: Option<Alg>,
) -> Result<(Alg, ParsedPublicKey), KeyProblem> {
    let alg = check_alg(
        declared,
        Alg::Rs256,
        &[
            Alg::Rs256,
            Alg::Rs384,
            Alg::Rs512,
            Alg::Ps256,
            Alg::Ps384,
            Alg::Ps512,
        ],
    )?;
    let n = bytes_member(jwk, "n")?;
    let e = bytes_member(jwk, "e")?;
    let n = strip_leading_zeros(&n);
    let e = strip_leading_zeros(&e);
    let bits = bit_length(n);
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(KeyProblem::RsaSize(bits));
    }
    // An exponent of 1 makes every "signature" equal to its padded message; even
    // exponents are not RSA. Reject rather than rely on the library to.
    let e_is_odd = e.last().is_some_and(|b| b & 1 == 1);
    if !e_is_odd || bit_length(e) < 2 || e.len() > 8 {
        return Err(KeyProblem::RsaExponent);
    }
    let params: &'static signature::RsaParameters = match alg {
        Alg::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Alg::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Alg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
        Alg::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
        Alg::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => &signature::RSA_PKCS1_2048_8192_SHA256,
    };
    let key = RsaPublicKeyComponents { n, e }
        .to_parsed_public_key(params)
        .map_err(|e| KeyProblem::Malformed(format!("rsa key rejected: {e}")))?;
    Ok((alg, key))
}

fn ec_key(
    jwk: &Map<String, Value>,
    declared: Option<Alg>,
) -> Result<(Alg, ParsedPublicKey), KeyProblem> {
    let crv = str_member(jwk, "crv")?;
    let (implied, len, verify_alg): (Alg, usize, &'static signature::EcdsaVerificationAlgorithm) =
        match crv {
            "P-256" => (Alg::Es256, 32, &signature::ECDSA_P256_SHA256_FIXED),
            "P-384" => (Alg::Es384, 48, &signature::ECDSA_P384_SHA384_FIXED),
            other => return Err(KeyProblem::UnsupportedCurve(escape_untrusted(other))),
        };
    // The curve fixes the algorithm: ES256 on a P-384 key (or the reverse) is refused.
    let alg = check_alg(declared, implied, &[implied])?;
    let x = bytes_member(jwk, "x")?;
    let y = bytes_member(jwk, "y")?;
    if x.len() != len || y.len() != len {
        return Err(KeyProblem::Malformed(format!(
            "coordinates must be {len} bytes for `{crv}`"
        )));
    }
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    // Parsing checks that the point is on the curve (invalid-curve attacks).
    let key = ParsedPublicKey::new(verify_alg, &point)
        .map_err(|e| KeyProblem::Malformed(format!("ec point rejected: {e}")))?;
    Ok((alg, key))
}

fn okp_key(
    jwk: &Map<String, Value>,
    declared: Option<Alg>,
) -> Result<(Alg, ParsedPublicKey), KeyProblem> {
    let crv = str_member(jwk, "crv")?;
    if crv != "Ed25519" {
        return Err(KeyProblem::UnsupportedCurve(escape_untrusted(crv)));
    }
    let alg = check_alg(declared, Alg::EdDsa, &[Alg::EdDsa])?;
    let x = bytes_member(jwk, "x")?;
    if x.len() != 32 {
        return Err(KeyProblem::Malformed(
            "`x` must be 32 bytes for `Ed25519`".into(),
        ));
    }
    let key = ParsedPublicKey::new(&signature::ED25519, &x)
        .map_err(|e| KeyProblem::Malformed(format!("ed25519 key rejected: {e}")))?;
    Ok((alg, key))
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

fn bit_length(bytes: &[u8]) -> usize {
    match bytes.first() {
        None => 0,
        Some(first) => (bytes.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

/// The `kid` an entry would be known by: a non-empty string (others are refused as
/// [`KeyProblem::MissingKid`]).
fn raw_kid(entry: &Value) -> Option<&str> {
    entry
        .get("kid")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
}

/// What a key set says about a `kid`.
#[derive(Debug)]
pub enum KeyLookup<'a> {
    /// Exactly one usable key has this `kid`.
    Found(&'a VerifyingKey),
    /// No key has this `kid` (a refresh may find it after a rotation).
    Unknown,
    /// Several keys share this `kid`: none is used.
    Ambiguous,
}

/// The verification keys of one issuer, looked up by `kid`.
///
/// INVARIANT: a `KeySet` belongs to one issuer. Lookups are by (issuer, kid) because the
/// caller picks the issuer's set first; a key of one issuer never verifies another's token.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, VerifyingKey>,
    ambiguous: HashSet<String>,
}

impl KeySet {
    /// Parses a JWKS document. Bad keys are left out and reported; a bad document fails.
    pub fn from_jwks(bytes: &[u8]) -> Result<(Self, Vec<KeyWarning>), JwksError> {
        let doc = json::parse_object(bytes)?;
        let Some(Value::Array(entries)) = doc.get("keys") else {
            return Err(JwksError::NoKeysArray);
        };
        if entries.len() > MAX_KEYS {
            return Err(JwksError::TooManyKeys(entries.len()));
        }
        // Pass 1: which kids are ambiguous. A kid is ambiguous when its entries are
        // not all identical; comparing each with the first finds that in any order.
        let mut first_of: HashMap<&str, &Value> = HashMap::new();
        let mut ambiguous: HashSet<&str> = HashSet::new();
        for entry in entries {
            if let Some(kid) = raw_kid(entry) {
                match first_of.entry(kid) {
                    Entry::Vacant(v) => {
                        v.insert(entry);
                    }
                    Entry::Occupied(o) => {
                        if *o.get() != entry {
                            ambiguous.insert(kid);
                        }
                    }
                }
            }
        }
        // Pass 2: one verdict per kid, at its first entry; later entries with the same
        // kid are either identical (nothing to add) or part of the ambiguity.
        let mut set = KeySet::default();
        let mut warnings = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        for entry in entries {
            let kid = raw_kid(entry);
            if let Some(kid) = kid {
                if !seen.insert(kid) {
                    continue;
                }
                if ambiguous.contains(kid) {
                    warnings.push(KeyWarning {
                        kid: Some(escape_untrusted(kid)),
                        problem: KeyProblem::DuplicateKid,
                    });
                    set.ambiguous.insert(kid.to_owned());
                    continue;
                }
            }
            let shown_kid = entry
                .get("kid")
                .and_then(Value::as_str)
                .map(escape_untrusted);
            let Value::Object(jwk) = entry else {
                warnings.push(KeyWarning {
                    kid: shown_kid,
                    problem: KeyProblem::NotAnObject,
                });
                continue;
            };
            match VerifyingKey::from_jwk(jwk) {
                Ok(key) => {
                    set.keys.insert(key.kid.clone(), key);
                }
                Err(problem) => warnings.push(KeyWarning {
                    kid: shown_kid,
                    problem,
                }),
            }
        }
        Ok((set, warnings))
    }

    /// Looks a key up by `kid`.
    pub fn get(&self, kid: &str) -> KeyLookup<'_> {
        if self.ambiguous.contains(kid) {
            return KeyLookup::Ambiguous;
        }
        self.keys
            .get(kid)
            .map_or(KeyLookup::Unknown, KeyLookup::Found)
    }

    /// The number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The usable key ids, sorted.
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }
}

#[cfg(test)]
mod tests {
    //! Tests that need no real key; those that do are in `tests/signed/jwk.rs`.

    use super::*;
    use serde_json::json;

    fn set(keys: Value) -> (KeySet, Vec<KeyWarning>) {
        KeySet::from_jwks(&serde_json::to_vec(&json!({ "keys": keys })).unwrap()).unwrap()
    }

    #[test]
    fn symmetric_key_in_jwks_is_never_used() {
        let (s, w) = set(json!([{"kty":"oct","kid":"h","k":"c2VjcmV0"}]));
        assert!(s.is_empty());
        assert_eq!(w[0].problem, KeyProblem::Symmetric);
    }
}
