//! Keys and token signing for tests: real keys, real signatures.
//!
//! For tests, benches and fuzz targets only.

#![allow(
    clippy::expect_used,
    clippy::panic,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test support code: a failure here is a broken test, not a runtime path"
)]

use std::sync::{Arc, OnceLock};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{Value, json};

use legate_core::b64;
use legate_core::jws::Alg;

/// A signing key for tests.
#[derive(Clone)]
pub struct TestKey {
    /// Key id.
    pub kid: String,
    /// Algorithm it signs with.
    pub alg: Alg,
    pair: Arc<Pair>,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestKey({}, {})", self.kid, self.alg)
    }
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

fn shared_rsa() -> Arc<Pair> {
    static RSA: OnceLock<Arc<Pair>> = OnceLock::new();
    RSA.get_or_init(|| Arc::new(Pair::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).unwrap())))
        .clone()
}

fn shared_ec(slot: usize) -> Arc<Pair> {
    static EC: [OnceLock<Arc<Pair>>; 2] = [OnceLock::new(), OnceLock::new()];
    EC.get(slot)
        .unwrap()
        .get_or_init(|| {
            Arc::new(Pair::Ec(
                EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
            ))
        })
        .clone()
}

impl TestKey {
    /// RS256 with a shared 2048-bit key.
    pub fn rs256(kid: &str) -> Self {
        Self {
            kid: kid.into(),
            alg: Alg::Rs256,
            pair: shared_rsa(),
        }
    }
    /// PS256 with the same shared RSA key.
    pub fn ps256(kid: &str) -> Self {
        Self {
            kid: kid.into(),
            alg: Alg::Ps256,
            pair: shared_rsa(),
        }
    }
    /// ES256 with shared P-256 key "a".
    pub fn es256(kid: &str) -> Self {
        Self {
            kid: kid.into(),
            alg: Alg::Es256,
            pair: shared_ec(0),
        }
    }
    /// ES256 with shared P-256 key "b", distinct from "a".
    pub fn es256_b(kid: &str) -> Self {
        Self {
            kid: kid.into(),
            alg: Alg::Es256,
            pair: shared_ec(1),
        }
    }
    /// A fresh ES256 key.
    pub fn es256_fresh(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        Self {
            kid: kid.into(),
            alg: Alg::Es256,
            pair: Arc::new(Pair::Ec(pair)),
        }
    }
    /// ES384 with a fresh P-384 key.
    pub fn es384(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
        Self {
            kid: kid.into(),
            alg: Alg::Es384,
            pair: Arc::new(Pair::Ec(pair)),
        }
    }
    /// EdDSA with a fresh Ed25519 key.
    pub fn eddsa(kid: &str) -> Self {
        let pair = Ed25519KeyPair::generate().unwrap();
        Self {
            kid: kid.into(),
            alg: Alg::EdDsa,
            pair: Arc::new(Pair::Ed(pair)),
        }
    }
    /// One key of every supported family.
    pub fn all() -> Vec<TestKey> {
        vec![
            TestKey::rs256("rs256"),
            TestKey::ps256("ps256"),
            TestKey::es256("es256"),
            TestKey::es384("es384"),
            TestKey::eddsa("eddsa"),
        ]
    }

    /// The public JWK, with `alg` and `use`.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = match &*self.pair {
            Pair::Rsa(p) => {
                let c = PublicKeyComponents::<Vec<u8>>::from(p.public_key());
                json!({"kty":"RSA","n":b64::encode(&c.n),"e":b64::encode(&c.e)})
            }
            Pair::Ec(p) => {
                let point = p.public_key().as_ref();
                let len = (point.len() - 1) / 2;
                let crv = if len == 32 { "P-256" } else { "P-384" };
                json!({"kty":"EC","crv":crv,
                       "x":b64::encode(&point[1..=len]),"y":b64::encode(&point[len + 1..])})
            }
            Pair::Ed(p) => {
                json!({"kty":"OKP","crv":"Ed25519","x":b64::encode(p.public_key().as_ref())})
            }
        };
        jwk["kid"] = json!(self.kid);
        jwk["alg"] = json!(self.alg.as_str());
        jwk["use"] = json!("sig");
        jwk
    }

    /// Signs `message` with this key's algorithm (JWS signature format).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &*self.pair {
            Pair::Rsa(p) => {
                let padding: &'static dyn signature::RsaEncoding = match self.alg {
                    Alg::Ps256 => &signature::RSA_PSS_SHA256,
                    Alg::Rs384 => &signature::RSA_PKCS1_SHA384,
                    Alg::Rs512 => &signature::RSA_PKCS1_SHA512,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0; p.public_modulus_len()];
                p.sign(padding, &rng, message, &mut sig).unwrap();
                sig
            }
            Pair::Ec(p) => p.sign(&rng, message).unwrap().as_ref().to_vec(),
            Pair::Ed(p) => p.sign(message).as_ref().to_vec(),
        }
    }

    /// A signed compact JWS with the standard header (`alg`, `kid`, `typ`) and `claims`.
    pub fn token(&self, claims: &Value) -> String {
        self.token_with_header(
            &json!({"alg":self.alg.as_str(),"kid":self.kid,"typ":"JWT"}),
            claims,
        )
    }

    /// A signed compact JWS with an arbitrary header.
    pub fn token_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64::encode(serde_json::to_vec(header).unwrap()),
            b64::encode(serde_json::to_vec(claims).unwrap())
        );
        let sig = self.sign(input.as_bytes());
        format!("{input}.{}", b64::encode(sig))
    }
}

/// The public JWK of shared P-256 key "a" with the given kid.
pub fn ec_p256_public_jwk(kid: &str) -> Value {
    TestKey::es256(kid).public_jwk()
}
