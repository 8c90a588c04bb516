//! [`SigningAlg`], [`SigningKey`] and the RFC 7638 thumbprint used as the default `kid`.
//!
//! Loading keys from PEM and JWK lives in [`crate::load`]; this module holds the parsed
//! key pair, its public JWK and the signing operation.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair,
};
use legate_core::b64;
use legate_core::text::escape_untrusted;
use serde_json::{Value, json};

use crate::error::{KeyLoadError, MintError};

/// Length of an ES256 signature in JWS form: `r || s`, 32 bytes each (RFC 7518 §3.4).
const ES256_SIGNATURE_LEN: usize = 64;
/// Length of a P-256 coordinate or private scalar, in bytes.
pub(crate) const P256_FIELD_LEN: usize = 32;
/// Longest `kid` accepted, in bytes.
const MAX_KID_LEN: usize = 128;

/// The JWS algorithm a [`SigningKey`] signs with.
///
/// ES256 is the default: it signs about 40 times faster than RS256. RS256 exists because
/// some relying parties (Microsoft Entra) accept only RSA keys.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum SigningAlg {
    /// ECDSA on P-256 with SHA-256 (RFC 7518 §3.4).
    #[default]
    #[serde(rename = "ES256")]
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3), keys of 2048 bits or more.
    #[serde(rename = "RS256")]
    Rs256,
}

impl SigningAlg {
    /// The JWS `alg` name: `ES256` or `RS256`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }

    /// The JWK `kty` of keys for this algorithm: `EC` or `RSA`.
    #[must_use]
    pub const fn key_type(self) -> &'static str {
        match self {
            Self::Es256 => "EC",
            Self::Rs256 => "RSA",
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a [`SigningAlg`].
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("unsupported signing algorithm `{0}`: use ES256 or RS256")]
pub struct ParseSigningAlgError(String);

impl FromStr for SigningAlg {
    type Err = ParseSigningAlgError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ES256" => Ok(Self::Es256),
            "RS256" => Ok(Self::Rs256),
            other => Err(ParseSigningAlgError(escape_untrusted(other))),
        }
    }
}

/// The parsed key pair. Parsed once at load time: RSA parsing costs more than signing.
#[derive(Clone)]
pub(crate) enum KeyPairInner {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// The public members of a key, base64url-encoded as in a JWK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicParts {
    /// `x` and `y` of a P-256 point.
    Ec { x: String, y: String },
    /// Modulus `n` and exponent `e`, big-endian without leading zeros.
    Rsa { n: String, e: String },
}

impl PublicParts {
    /// Extracts the public members from a parsed key pair.
    fn of(inner: &KeyPairInner) -> Result<Self, KeyLoadError> {
        match inner {
            KeyPairInner::Ec(kp) => {
                // Uncompressed SEC1 point: 0x04 || x || y.
                let point = kp.public_key().as_ref();
                let coords = match point.split_first() {
                    Some((&0x04, rest)) if rest.len() == 2 * P256_FIELD_LEN => rest,
                    _ => return Err(KeyLoadError::Internal("unexpected EC public key encoding")),
                };
                let (x, y) = coords
                    .split_at_checked(P256_FIELD_LEN)
                    .ok_or(KeyLoadError::Internal("unexpected EC public key encoding"))?;
                Ok(Self::Ec {
                    x: b64::encode(x),
                    y: b64::encode(y),
                })
            }
            KeyPairInner::Rsa(kp) => {
                let public = kp.public_key();
                Ok(Self::Rsa {
                    n: b64::encode(public.modulus().big_endian_without_leading_zero()),
                    e: b64::encode(public.exponent().big_endian_without_leading_zero()),
                })
            }
        }
    }

    /// The RFC 7638 JWK thumbprint: base64url SHA-256 of the required public members in
    /// lexicographic order, without whitespace.
    ///
    /// The members are base64url strings, so they need no JSON escaping.
    pub(crate) fn thumbprint(&self) -> String {
        let canonical = match self {
            Self::Ec { x, y } => {
                format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#)
            }
            Self::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
        };
        b64::encode(digest(&SHA256, canonical.as_bytes()))
    }
}

/// A private signing key, parsed once, with its `kid` and algorithm.
///
/// SECURITY: the private half never leaves this type: there is no accessor for it,
/// [`SigningKey::public_jwk`] writes public members only, and `Debug` prints the `kid`
/// and algorithm only.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    inner: KeyPairInner,
    public: PublicParts,
}

impl SigningKey {
    /// Generates a fresh key: P-256 for ES256, 2048-bit RSA for RS256.
    ///
    /// `kid` defaults to the RFC 7638 thumbprint. Meant for development: a generated key
    /// dies with the process, so tokens it signed cannot be verified after a restart.
    ///
    /// # Errors
    ///
    /// [`KeyLoadError::InvalidKid`] for an unusable `kid`; [`KeyLoadError::Generate`] if
    /// the crypto library fails.
    pub fn generate(alg: SigningAlg, kid: Option<String>) -> Result<Self, KeyLoadError> {
        let inner = match alg {
            SigningAlg::Es256 => KeyPairInner::Ec(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|_| KeyLoadError::Generate)?,
            ),
            SigningAlg::Rs256 => KeyPairInner::Rsa(
                RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyLoadError::Generate)?,
            ),
        };
        Self::from_parts(inner, kid)
    }

    /// Builds a key from a parsed key pair; `kid` defaults to the thumbprint.
    pub(crate) fn from_parts(
        inner: KeyPairInner,
        kid: Option<String>,
    ) -> Result<Self, KeyLoadError> {
        let public = PublicParts::of(&inner)?;
        let kid = match kid {
            Some(kid) => validate_kid(kid)?,
            None => public.thumbprint(),
        };
        Ok(Self { kid, inner, public })
    }

    /// The key ID, put in the JWS header and the published JWK.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm this key signs with.
    #[must_use]
    pub const fn alg(&self) -> SigningAlg {
        match self.inner {
            KeyPairInner::Ec(_) => SigningAlg::Es256,
            KeyPairInner::Rsa(_) => SigningAlg::Rs256,
        }
    }

    /// The RFC 7638 thumbprint of the public key (the default `kid`).
    #[must_use]
    pub fn thumbprint(&self) -> String {
        self.public.thumbprint()
    }

    /// The public JWK to publish: `kty`, `crv`/`x`/`y` or `n`/`e`, `kid`, `alg` and
    /// `use: "sig"`. Never any private member.
    #[must_use]
    pub fn public_jwk(&self) -> Value {
        let alg = self.alg().as_str();
        match &self.public {
            PublicParts::Ec { x, y } => json!({
                "kty": "EC",
                "crv": "P-256",
                "x": x,
                "y": y,
                "kid": self.kid,
                "alg": alg,
                "use": "sig",
            }),
            PublicParts::Rsa { n, e } => json!({
                "kty": "RSA",
                "n": n,
                "e": e,
                "kid": self.kid,
                "alg": alg,
                "use": "sig",
            }),
        }
    }

    /// Signs a JWS signing input (`base64url(header) || '.' || base64url(claims)`).
    ///
    /// ES256 signatures are the 64-byte `r || s` form JWS requires (RFC 7518 §3.4), not
    /// DER; RS256 signatures are as long as the modulus.
    ///
    /// # Errors
    ///
    /// [`MintError::Sign`] if the crypto library fails.
    pub fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, MintError> {
        // aws-lc-rs ignores the RNG argument (it draws from its own DRBG); it is kept for
        // API compatibility with ring.
        let rng = SystemRandom::new();
        match &self.inner {
            KeyPairInner::Ec(kp) => {
                let sig = kp.sign(&rng, signing_input).map_err(|_| MintError::Sign)?;
                let sig = sig.as_ref();
                if sig.len() != ES256_SIGNATURE_LEN {
                    return Err(MintError::Sign);
                }
                Ok(sig.to_vec())
            }
            KeyPairInner::Rsa(kp) => {
                let mut sig = vec![0_u8; kp.public_modulus_len()];
                kp.sign(&RSA_PKCS1_SHA256, &rng, signing_input, &mut sig)
                    .map_err(|_| MintError::Sign)?;
                Ok(sig)
            }
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg())
            .finish_non_exhaustive()
    }
}

/// Checks an operator-chosen `kid`: non-empty, at most 128 bytes, printable ASCII.
///
/// The `kid` is echoed in every token header and in logs, so keep it boring.
fn validate_kid(kid: String) -> Result<String, KeyLoadError> {
    let ok =
        !kid.is_empty() && kid.len() <= MAX_KID_LEN && kid.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(kid)
    } else {
        Err(KeyLoadError::InvalidKid(escape_untrusted(&kid)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1: the thumbprint of the example RSA key.
    #[test]
    fn thumbprint_matches_rfc7638_example() {
        let parts = PublicParts::Rsa {
            n: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".to_owned(),
            e: "AQAB".to_owned(),
        };
        assert_eq!(
            parts.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn generated_keys_default_kid_is_the_thumbprint() {
        for alg in [SigningAlg::Es256, SigningAlg::Rs256] {
            let key = SigningKey::generate(alg, None).unwrap();
            assert_eq!(key.alg(), alg);
            assert_eq!(key.kid(), key.thumbprint());
            assert_eq!(key.kid().len(), 43);
        }
    }

    #[test]
    fn explicit_kid_is_kept_and_bad_kids_are_refused() {
        let key = SigningKey::generate(SigningAlg::Es256, Some("2026-01".to_owned())).unwrap();
        assert_eq!(key.kid(), "2026-01");
        for bad in ["", "has space", "new\nline", &"k".repeat(129)] {
            let err = SigningKey::generate(SigningAlg::Es256, Some(bad.to_owned())).unwrap_err();
            assert!(matches!(err, KeyLoadError::InvalidKid(_)), "{bad:?}: {err}");
        }
    }

    #[test]
    fn public_jwk_has_public_members_only() {
        let private = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
        for alg in [SigningAlg::Es256, SigningAlg::Rs256] {
            let key = SigningKey::generate(alg, None).unwrap();
            let jwk = key.public_jwk();
            let obj = jwk.as_object().unwrap();
            for member in private {
                assert!(!obj.contains_key(member), "{alg}: `{member}` published");
            }
            let mut names: Vec<&str> = obj.keys().map(String::as_str).collect();
            names.sort_unstable();
            let expected: &[&str] = match alg {
                SigningAlg::Es256 => &["alg", "crv", "kid", "kty", "use", "x", "y"],
                SigningAlg::Rs256 => &["alg", "e", "kid", "kty", "n", "use"],
            };
            assert_eq!(names, expected);
            assert_eq!(obj["use"], "sig");
            assert_eq!(obj["alg"], alg.as_str());
            assert_eq!(obj["kty"], alg.key_type());
        }
    }

    #[test]
    fn es256_signatures_are_fixed_64_bytes_and_rs256_modulus_sized() {
        let ec = SigningKey::generate(SigningAlg::Es256, None).unwrap();
        assert_eq!(ec.sign(b"a.b").unwrap().len(), 64);
        let rsa = SigningKey::generate(SigningAlg::Rs256, None).unwrap();
        assert_eq!(rsa.sign(b"a.b").unwrap().len(), 256);
    }

    #[test]
    fn debug_prints_kid_and_alg_only() {
        for alg in [SigningAlg::Es256, SigningAlg::Rs256] {
            let key = SigningKey::generate(alg, Some("k1".to_owned())).unwrap();
            let dbg = format!("{key:?}");
            assert_eq!(
                dbg,
                format!("SigningKey {{ kid: \"k1\", alg: {alg:?}, .. }}")
            );
            let jwk = key.public_jwk();
            for member in ["x", "y", "n"] {
                if let Some(v) = jwk.get(member).and_then(Value::as_str) {
                    assert!(!dbg.contains(v));
                }
            }
        }
    }

    #[test]
    fn alg_names_round_trip() {
        for alg in [SigningAlg::Es256, SigningAlg::Rs256] {
            assert_eq!(alg.as_str().parse::<SigningAlg>().unwrap(), alg);
            assert_eq!(serde_json::to_value(alg).unwrap(), alg.as_str());
        }
        assert_eq!(SigningAlg::default(), SigningAlg::Es256);
        let err = "HS256".parse::<SigningAlg>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported signing algorithm `HS256`: use ES256 or RS256"
        );
    }
}
