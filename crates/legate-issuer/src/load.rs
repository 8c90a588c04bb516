//! Loading a [`SigningKey`] from PEM (PKCS#8, SEC1, PKCS#1) or from a private JWK.
//!
//! Each loader parses the key once into an aws-lc-rs key pair and refuses what Legate will
//! not sign with: RSA below 2048 bits, EC curves other than P-256, encrypted PEM, JWKs
//! meant for another algorithm or use.

use aws_lc_rs::rsa::KeyPairComponents;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
    ECDSA_P521_SHA512_FIXED_SIGNING, EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair,
    RsaKeyPair, RsaPublicKeyComponents,
};
use legate_core::text::escape_untrusted;
use legate_core::{Secret, b64};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::{self, PemObject as _};

use crate::error::KeyLoadError;
use crate::key::{KeyPairInner, P256_FIELD_LEN, SigningAlg, SigningKey};

/// Curves we can recognise only to name them in an error.
const OTHER_CURVES: [(&EcdsaSigningAlgorithm, &str); 2] = [
    (&ECDSA_P384_SHA384_FIXED_SIGNING, "P-384"),
    (&ECDSA_P521_SHA512_FIXED_SIGNING, "P-521"),
];

impl SigningKey {
    /// Loads a private key from PEM text.
    ///
    /// Accepts exactly one of: a PKCS#8 `PRIVATE KEY` (EC P-256 or RSA), a SEC1
    /// `EC PRIVATE KEY` (P-256), or a PKCS#1 `RSA PRIVATE KEY`. Other blocks (certificates,
    /// `EC PARAMETERS`) are ignored. With `alg_hint`, a key of the other type is refused.
    /// `kid` defaults to the RFC 7638 thumbprint, so it is stable across restarts.
    ///
    /// # Errors
    ///
    /// [`KeyLoadError`] for malformed, encrypted, missing or multiple keys, RSA keys below
    /// 2048 bits, EC curves other than P-256, a mismatch with `alg_hint`, or a bad `kid`.
    pub fn from_pem(
        pem_bytes: &[u8],
        kid: Option<String>,
        alg_hint: Option<SigningAlg>,
    ) -> Result<Self, KeyLoadError> {
        let mut keys = PrivateKeyDer::pem_slice_iter(pem_bytes);
        let der = match keys.next() {
            Some(Ok(der)) => der,
            Some(Err(e)) => return Err(KeyLoadError::Pem(pem_error_reason(&e))),
            None if contains(pem_bytes, b"-----BEGIN ENCRYPTED PRIVATE KEY-----") => {
                return Err(KeyLoadError::EncryptedPem);
            }
            None => return Err(KeyLoadError::NoPrivateKey),
        };
        match keys.next() {
            None => {}
            Some(Ok(_)) => return Err(KeyLoadError::MultiplePrivateKeys),
            Some(Err(e)) => return Err(KeyLoadError::Pem(pem_error_reason(&e))),
        }
        let inner = parse_der(&der)?;
        check_hint(&inner, alg_hint)?;
        Self::from_parts(inner, kid)
    }

    /// Loads a private key from a JWK (RFC 7517, RFC 7518 §6).
    ///
    /// Accepts EC P-256 (`d`, `x`, `y`) and two-prime RSA (`n`, `e`, `d`, `p`, `q`, `dp`,
    /// `dq`, `qi`). Refuses a JWK whose `alg` is not the one its key type signs with
    /// (ES256, RS256), whose `use` is not `sig`, or whose `key_ops` lacks `sign`.
    /// The `kid` is, in order: the `kid` argument, the JWK's `kid`, the RFC 7638
    /// thumbprint.
    ///
    /// # Errors
    ///
    /// [`KeyLoadError`] for malformed JSON, public-only or unsupported keys, inconsistent
    /// components, RSA keys below 2048 bits, and the refusals above.
    pub fn from_jwk(json_bytes: &[u8], kid: Option<String>) -> Result<Self, KeyLoadError> {
        let jwk: PrivateJwk =
            serde_json::from_slice(json_bytes).map_err(|e| KeyLoadError::JwkJson {
                line: e.line(),
                column: e.column(),
            })?;
        let Some(kty) = jwk.kty.as_deref() else {
            return Err(if jwk.keys.is_some() {
                KeyLoadError::JwkIsSet
            } else {
                KeyLoadError::JwkMissingMember("kty")
            });
        };
        let alg = match kty {
            "EC" => SigningAlg::Es256,
            "RSA" => SigningAlg::Rs256,
            other => return Err(KeyLoadError::UnsupportedKeyType(escape_untrusted(other))),
        };
        if let Some(found) = jwk.alg.as_deref()
            && found != alg.as_str()
        {
            return Err(KeyLoadError::JwkAlgMismatch {
                found: escape_untrusted(found),
                expected: alg,
            });
        }
        if let Some(key_use) = jwk.key_use.as_deref()
            && key_use != "sig"
        {
            return Err(KeyLoadError::JwkUse(escape_untrusted(key_use)));
        }
        if let Some(ops) = &jwk.key_ops
            && !ops.iter().any(|op| op == "sign")
        {
            return Err(KeyLoadError::JwkKeyOps);
        }
        let inner = match alg {
            SigningAlg::Es256 => ec_from_jwk(&jwk)?,
            SigningAlg::Rs256 => rsa_from_jwk(&jwk)?,
        };
        Self::from_parts(inner, kid.or(jwk.kid))
    }
}

/// The members of a private JWK that Legate reads. No `Debug`: it holds private members.
#[derive(serde::Deserialize)]
struct PrivateJwk {
    kty: Option<String>,
    /// Present when the input is a JWK set by mistake.
    keys: Option<serde::de::IgnoredAny>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    key_use: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
    d: Option<String>,
    p: Option<String>,
    q: Option<String>,
    dp: Option<String>,
    dq: Option<String>,
    qi: Option<String>,
    oth: Option<serde::de::IgnoredAny>,
}

/// A decoded private JWK member: `Debug` prints `******`; aws-lc-rs reads it as bytes.
struct SecretBytes(Secret<Vec<u8>>);

impl AsRef<[u8]> for SecretBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.expose()
    }
}

/// Parses one DER private key, identifying its type.
fn parse_der(der: &PrivateKeyDer<'_>) -> Result<KeyPairInner, KeyLoadError> {
    match der {
        PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der())
            .map(KeyPairInner::Rsa)
            .map_err(|e| KeyLoadError::rejected("PKCS#1", e)),
        PrivateKeyDer::Sec1(der) => parse_sec1(der.secret_sec1_der()),
        PrivateKeyDer::Pkcs8(der) => parse_pkcs8(der.secret_pkcs8_der()),
        _ => Err(KeyLoadError::UnsupportedKeyType("unknown".to_owned())),
    }
}

/// Parses a SEC1 `ECPrivateKey`, naming the curve if it is not P-256.
fn parse_sec1(der: &[u8]) -> Result<KeyPairInner, KeyLoadError> {
    EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
        .map(KeyPairInner::Ec)
        .map_err(|e| {
            other_curve(|alg| EcdsaKeyPair::from_private_key_der(alg, der).is_ok())
                .unwrap_or_else(|| KeyLoadError::rejected("SEC1", e))
        })
}

/// Parses a PKCS#8 `PrivateKeyInfo`: EC P-256 or RSA, naming other key types.
fn parse_pkcs8(der: &[u8]) -> Result<KeyPairInner, KeyLoadError> {
    if let Ok(kp) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
        return Ok(KeyPairInner::Ec(kp));
    }
    match RsaKeyPair::from_pkcs8(der) {
        Ok(kp) => Ok(KeyPairInner::Rsa(kp)),
        // aws-lc-rs checks the size after parsing an RSA key, so `TooSmall` means RSA.
        Err(e) if e.description_() == "TooSmall" => Err(KeyLoadError::RsaTooSmall),
        // Neither P-256 nor RSA: name what it is, if we can.
        Err(e) if e.description_() == "WrongAlgorithm" => {
            if let Some(err) = other_curve(|alg| EcdsaKeyPair::from_pkcs8(alg, der).is_ok()) {
                return Err(err);
            }
            let kty = if Ed25519KeyPair::from_pkcs8(der).is_ok() {
                "Ed25519"
            } else {
                "unknown"
            };
            Err(KeyLoadError::UnsupportedKeyType(kty.to_owned()))
        }
        Err(e) => Err(KeyLoadError::rejected("PKCS#8", e)),
    }
}

/// Names the curve of an EC key that is not P-256, if `parses` accepts one we know.
fn other_curve(parses: impl Fn(&'static EcdsaSigningAlgorithm) -> bool) -> Option<KeyLoadError> {
    OTHER_CURVES
        .iter()
        .find(|(alg, _)| parses(alg))
        .map(|(_, name)| KeyLoadError::UnsupportedCurve((*name).to_owned()))
}

/// Refuses a key whose type differs from the operator's `alg_hint`.
fn check_hint(inner: &KeyPairInner, hint: Option<SigningAlg>) -> Result<(), KeyLoadError> {
    let found = match inner {
        KeyPairInner::Ec(_) => SigningAlg::Es256,
        KeyPairInner::Rsa(_) => SigningAlg::Rs256,
    };
    match hint {
        Some(expected) if expected != found => Err(KeyLoadError::AlgMismatch { expected, found }),
        _ => Ok(()),
    }
}

/// Builds a P-256 key pair from `d`, `x`, `y`; aws-lc-rs checks that they match.
fn ec_from_jwk(jwk: &PrivateJwk) -> Result<KeyPairInner, KeyLoadError> {
    match jwk.crv.as_deref() {
        Some("P-256") => {}
        Some(other) => return Err(KeyLoadError::UnsupportedCurve(escape_untrusted(other))),
        None => return Err(KeyLoadError::JwkMissingMember("crv")),
    }
    let d = secret_member(jwk.d.as_deref(), "d")?;
    let x = member(jwk.x.as_deref(), "x")?;
    let y = member(jwk.y.as_deref(), "y")?;
    for (name, len) in [("d", d.as_ref().len()), ("x", x.len()), ("y", y.len())] {
        if len != P256_FIELD_LEN {
            return Err(KeyLoadError::JwkInvalidMember(name));
        }
    }
    let mut point = Vec::with_capacity(1 + 2 * P256_FIELD_LEN);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    EcdsaKeyPair::from_private_key_and_public_key(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        d.as_ref(),
        &point,
    )
    .map(KeyPairInner::Ec)
    .map_err(|e| KeyLoadError::rejected("JWK", e))
}

/// Builds a two-prime RSA key pair from its JWK members.
///
/// aws-lc-rs checks the components against each other (`n = p·q`, the CRT values), so
/// a JWK whose public and private halves disagree is refused.
fn rsa_from_jwk(jwk: &PrivateJwk) -> Result<KeyPairInner, KeyLoadError> {
    if jwk.oth.is_some() {
        return Err(KeyLoadError::JwkMultiPrime);
    }
    let n = member(jwk.n.as_deref(), "n")?;
    let e = member(jwk.e.as_deref(), "e")?;
    // RFC 7518 §2 (Base64urlUInt): the minimum number of octets, so no leading zero.
    for (name, value) in [("n", &n), ("e", &e)] {
        if value.first().is_none_or(|b| *b == 0) {
            return Err(KeyLoadError::JwkInvalidMember(name));
        }
    }
    let components = KeyPairComponents {
        public_key: RsaPublicKeyComponents { n, e },
        d: secret_member(jwk.d.as_deref(), "d")?,
        p: private_member(jwk.p.as_deref(), "p")?,
        q: private_member(jwk.q.as_deref(), "q")?,
        dP: private_member(jwk.dp.as_deref(), "dp")?,
        dQ: private_member(jwk.dq.as_deref(), "dq")?,
        qInv: private_member(jwk.qi.as_deref(), "qi")?,
    };
    RsaKeyPair::from_components(&components)
        .map(KeyPairInner::Rsa)
        .map_err(|e| KeyLoadError::rejected("JWK", e))
}

/// Decodes a required public member.
fn member(value: Option<&str>, name: &'static str) -> Result<Vec<u8>, KeyLoadError> {
    let value = value.ok_or(KeyLoadError::JwkMissingMember(name))?;
    b64::decode(value).map_err(|_| KeyLoadError::JwkInvalidMember(name))
}

/// Decodes `d`, whose absence means the JWK is a public key.
fn secret_member(value: Option<&str>, name: &'static str) -> Result<SecretBytes, KeyLoadError> {
    if value.is_none() {
        return Err(KeyLoadError::JwkNotPrivate);
    }
    private_member(value, name)
}

/// Decodes a required private member.
fn private_member(value: Option<&str>, name: &'static str) -> Result<SecretBytes, KeyLoadError> {
    member(value, name).map(|bytes| SecretBytes(Secret::new(bytes)))
}

/// A log-safe reason for a PEM syntax error (the library's messages may quote input).
fn pem_error_reason(e: &pem::Error) -> &'static str {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a block has no END line",
        pem::Error::IllegalSectionStart { .. } => "malformed BEGIN line",
        pem::Error::Base64Decode(_) => "a block is not valid base64",
        pem::Error::SectionTooLarge => "a block is too large",
        _ => "unreadable PEM text",
    }
}

/// Whether `haystack` contains `needle`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde_json::{Value, json};

    #[test]
    fn same_key_in_every_format_gets_the_same_kid_and_public_jwk() {
        for (formats, thumbprint) in [
            ([EC_SEC1, EC_PKCS8, EC_JWK], EC_THUMBPRINT),
            ([RSA_PKCS1, RSA_PKCS8, RSA_JWK], RSA_THUMBPRINT),
        ] {
            let [a, b, jwk] = formats;
            let keys = [
                SigningKey::from_pem(a.as_bytes(), None, None).unwrap(),
                SigningKey::from_pem(b.as_bytes(), None, None).unwrap(),
                SigningKey::from_jwk(jwk.as_bytes(), None).unwrap(),
            ];
            for key in &keys {
                assert_eq!(key.kid(), thumbprint);
                assert_eq!(key.public_jwk(), keys[0].public_jwk());
            }
            // The public JWK carries exactly the fixture's public members.
            let fixture: Value = serde_json::from_str(jwk).unwrap();
            let public = keys[0].public_jwk();
            for member in ["kty", "crv", "x", "y", "n", "e"] {
                assert_eq!(public.get(member), fixture.get(member), "{member}");
            }
        }
    }

    #[test]
    fn explicit_kid_overrides_the_thumbprint() {
        let key =
            SigningKey::from_pem(EC_SEC1.as_bytes(), Some("prod-1".to_owned()), None).unwrap();
        assert_eq!(key.kid(), "prod-1");
        assert_eq!(key.public_jwk()["kid"], "prod-1");

        let mut jwk: Value = serde_json::from_str(EC_JWK).unwrap();
        jwk["kid"] = json!("from-jwk");
        let bytes = serde_json::to_vec(&jwk).unwrap();
        assert_eq!(
            SigningKey::from_jwk(&bytes, None).unwrap().kid(),
            "from-jwk"
        );
        let key = SigningKey::from_jwk(&bytes, Some("override".to_owned())).unwrap();
        assert_eq!(key.kid(), "override");
    }

    #[test]
    fn rsa_below_2048_bits_is_refused() {
        let err = SigningKey::from_pem(RSA1024_PKCS1.as_bytes(), None, None).unwrap_err();
        assert_eq!(err, KeyLoadError::RsaTooSmall);
        assert_eq!(
            err.to_string(),
            "RSA key is smaller than 2048 bits: use a 2048-bit or larger key"
        );
    }

    #[test]
    fn ec_curves_other_than_p256_are_refused_by_name() {
        for pem in [EC384_SEC1, EC384_PKCS8] {
            let err = SigningKey::from_pem(pem.as_bytes(), None, None).unwrap_err();
            assert_eq!(err, KeyLoadError::UnsupportedCurve("P-384".to_owned()));
        }
        let err = SigningKey::from_jwk(EC384_JWK.as_bytes(), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported EC curve `P-384`: only P-256 is supported"
        );
    }

    #[test]
    fn other_key_types_are_refused_by_name() {
        let ed = aws_lc_rs::signature::Ed25519KeyPair::generate().unwrap();
        let pem = pem_block("PRIVATE KEY", ed.to_pkcs8().unwrap().as_ref());
        let err = SigningKey::from_pem(pem.as_bytes(), None, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported key type `Ed25519`: use an EC P-256 or RSA key"
        );

        let p521 = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P521_SHA512_FIXED_SIGNING,
        )
        .unwrap();
        let pem = pem_block("PRIVATE KEY", p521.to_pkcs8v1().unwrap().as_ref());
        let err = SigningKey::from_pem(pem.as_bytes(), None, None).unwrap_err();
        assert_eq!(err, KeyLoadError::UnsupportedCurve("P-521".to_owned()));
    }

    fn pem_block(label: &str, der: &[u8]) -> String {
        let body = STANDARD.encode(der);
        format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n")
    }

    #[test]
    fn alg_hint_mismatch_is_refused() {
        let err =
            SigningKey::from_pem(RSA_PKCS8.as_bytes(), None, Some(SigningAlg::Es256)).unwrap_err();
        assert_eq!(
            err,
            KeyLoadError::AlgMismatch {
                expected: SigningAlg::Es256,
                found: SigningAlg::Rs256
            }
        );
        assert_eq!(
            err.to_string(),
            "key is a RS256 key but ES256 was requested"
        );
        assert!(SigningKey::from_pem(EC_SEC1.as_bytes(), None, Some(SigningAlg::Rs256)).is_err());
    }

    #[test]
    fn malformed_pem_is_refused() {
        let cases: [(&str, KeyLoadError); 5] = [
            ("", KeyLoadError::NoPrivateKey),
            (
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                KeyLoadError::NoPrivateKey,
            ),
            (
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
                KeyLoadError::EncryptedPem,
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nAAAA\n",
                KeyLoadError::Pem("a block has no END line"),
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                KeyLoadError::Rejected {
                    format: "PKCS#8",
                    reason: "malformed encoding",
                },
            ),
        ];
        for (pem, expected) in cases {
            let err = SigningKey::from_pem(pem.as_bytes(), None, None).unwrap_err();
            assert_eq!(err, expected, "{pem:?}");
        }
        let two = format!("{EC_PKCS8}{RSA_PKCS8}");
        assert_eq!(
            SigningKey::from_pem(two.as_bytes(), None, None).unwrap_err(),
            KeyLoadError::MultiplePrivateKeys
        );
    }

    #[test]
    fn jwk_refusals() {
        let ec: Value = serde_json::from_str(EC_JWK).unwrap();
        let rsa: Value = serde_json::from_str(RSA_JWK).unwrap();
        let with = |base: &Value, member: &str, value: Value| {
            let mut jwk = base.clone();
            jwk[member] = value;
            serde_json::to_vec(&jwk).unwrap()
        };
        let without = |base: &Value, member: &str| {
            let mut jwk = base.clone();
            jwk.as_object_mut().unwrap().remove(member);
            serde_json::to_vec(&jwk).unwrap()
        };
        let cases: Vec<(Vec<u8>, KeyLoadError)> = vec![
            (
                with(&ec, "alg", json!("RS256")),
                KeyLoadError::JwkAlgMismatch {
                    found: "RS256".to_owned(),
                    expected: SigningAlg::Es256,
                },
            ),
            (
                with(&rsa, "alg", json!("PS256")),
                KeyLoadError::JwkAlgMismatch {
                    found: "PS256".to_owned(),
                    expected: SigningAlg::Rs256,
                },
            ),
            (
                with(&ec, "use", json!("enc")),
                KeyLoadError::JwkUse("enc".to_owned()),
            ),
            (
                with(&rsa, "key_ops", json!(["verify"])),
                KeyLoadError::JwkKeyOps,
            ),
            (without(&ec, "d"), KeyLoadError::JwkNotPrivate),
            (without(&rsa, "d"), KeyLoadError::JwkNotPrivate),
            (without(&rsa, "qi"), KeyLoadError::JwkMissingMember("qi")),
            (without(&ec, "kty"), KeyLoadError::JwkMissingMember("kty")),
            (
                with(&ec, "kty", json!("OKP")),
                KeyLoadError::UnsupportedKeyType("OKP".to_owned()),
            ),
            (
                with(&ec, "x", json!("AAAA")),
                KeyLoadError::JwkInvalidMember("x"),
            ),
            (
                with(&ec, "d", json!("not base64url!")),
                KeyLoadError::JwkInvalidMember("d"),
            ),
            (with(&rsa, "oth", json!([])), KeyLoadError::JwkMultiPrime),
            (
                serde_json::to_vec(&json!({"keys": [ec.clone()]})).unwrap(),
                KeyLoadError::JwkIsSet,
            ),
            (
                b"{not json".to_vec(),
                KeyLoadError::JwkJson { line: 1, column: 2 },
            ),
        ];
        for (bytes, expected) in cases {
            let err = SigningKey::from_jwk(&bytes, None).unwrap_err();
            assert_eq!(err, expected, "{}", String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn jwk_with_mismatched_halves_is_refused() {
        // The private scalar of one key with the public point of another.
        let ec: Value = serde_json::from_str(EC_JWK).unwrap();
        let other = SigningKey::generate(SigningAlg::Es256, None)
            .unwrap()
            .public_jwk();
        let mut jwk = ec.clone();
        jwk["x"] = other["x"].clone();
        jwk["y"] = other["y"].clone();
        let err = SigningKey::from_jwk(&serde_json::to_vec(&jwk).unwrap(), None).unwrap_err();
        assert!(
            matches!(err, KeyLoadError::Rejected { format: "JWK", .. }),
            "{err}"
        );

        // An RSA modulus that is not p·q.
        let mut rsa: Value = serde_json::from_str(RSA_JWK).unwrap();
        let other = SigningKey::generate(SigningAlg::Rs256, None)
            .unwrap()
            .public_jwk();
        rsa["n"] = other["n"].clone();
        let err = SigningKey::from_jwk(&serde_json::to_vec(&rsa).unwrap(), None).unwrap_err();
        assert!(
            matches!(err, KeyLoadError::Rejected { format: "JWK", .. }),
            "{err}"
        );
    }

    #[test]
    fn jwk_errors_do_not_echo_private_values() {
        let mut ec: Value = serde_json::from_str(EC_JWK).unwrap();
        ec["d"] = json!(12_345_678_987_654_321_u64);
        let err = SigningKey::from_jwk(&serde_json::to_vec(&ec).unwrap(), None).unwrap_err();
        assert!(matches!(err, KeyLoadError::JwkJson { .. }));
        assert!(!err.to_string().contains("12345678987654321"));
        assert!(!format!("{err:?}").contains("12345678987654321"));
    }

    #[test]
    fn debug_of_loaded_keys_hides_key_material() {
        let fixture: Value = serde_json::from_str(RSA_JWK).unwrap();
        let key = SigningKey::from_jwk(RSA_JWK.as_bytes(), None).unwrap();
        let dbg = format!("{key:?}");
        assert_eq!(
            dbg,
            format!("SigningKey {{ kid: \"{RSA_THUMBPRINT}\", alg: Rs256, .. }}")
        );
        for member in ["n", "d", "p", "q"] {
            let value = fixture[member].as_str().unwrap();
            assert!(!dbg.contains(&value[..16]), "{member}");
        }
    }
}
