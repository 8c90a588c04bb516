//! Token verification: the one way to get [`VerifiedClaims`].
//!
//! [`verify`] is pure: the caller supplies the issuer's [`KeySet`], the issuer's
//! [`VerifyRules`] and `now`. The order of checks is fixed: algorithm policy, key
//! lookup, algorithm/key binding, signature, then claims. Claims are only trusted after
//! the signature holds; they are checked afterwards so the audit log names the
//! real problem of a genuine but unacceptable token.

use serde_json::{Map, Value};

use crate::jwk::{KeyLookup, KeySet};
use crate::jws::{Alg, UnverifiedJwt};
use crate::text::escape_untrusted;
use crate::time::UnixSeconds;

/// How one trusted issuer's tokens are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRules {
    /// The exact `iss` value (OIDC Core §3.1.3.7 step 2: exact match, no normalisation).
    pub issuer: String,
    /// Accepted `aud` values; the token must name at least one (step 3).
    pub audiences: Vec<String>,
    /// Algorithms accepted from this issuer, a subset of [`Alg::ALL`].
    pub algorithms: Vec<Alg>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: u64,
    /// The longest lifetime accepted (`exp - iat`, or `exp - now` without `iat`).
    pub max_lifetime_secs: u64,
    /// Claims that must be present and non-null.
    pub required_claims: Vec<String>,
    /// Whether `jti` is required (single-use replay protection needs it).
    pub require_jti: bool,
}

impl VerifyRules {
    /// Rules with safe defaults: every algorithm, 60 s leeway, 1 h lifetime cap, `jti`
    /// required.
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences,
            algorithms: Alg::ALL.to_vec(),
            leeway_secs: 60,
            max_lifetime_secs: 3600,
            required_claims: Vec::new(),
            require_jti: true,
        }
    }
}

/// Why a token was refused. Strings from the token are escaped and truncated.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// The issuer's rules do not allow the header's algorithm.
    #[error("algorithm `{0}` is not allowed for this issuer")]
    AlgNotAllowed(Alg),
    /// No key has the token's `kid` (the caller may refresh the key set once and retry).
    #[error("no key with kid `{0}`")]
    UnknownKid(String),
    /// Several keys share the `kid`.
    #[error("kid `{0}` is ambiguous in the issuer's key set")]
    AmbiguousKid(String),
    /// The key is bound to a different algorithm than the header names.
    #[error("header algorithm `{header}` does not match key algorithm `{key}`")]
    AlgKeyMismatch {
        /// From the token header.
        header: Alg,
        /// Bound to the key.
        key: Alg,
    },
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// `iss` differs from the configured issuer.
    #[error("issuer `{0}` is not the expected issuer")]
    IssuerMismatch(String),
    /// No accepted audience in `aud`.
    #[error("no accepted audience in `aud`")]
    AudienceMismatch,
    /// A claim has the wrong JSON type (e.g. `exp` as a string, float or negative).
    #[error("claim `{0}` has an invalid type or value")]
    InvalidClaim(&'static str),
    /// A required claim is missing.
    #[error("claim `{0}` is missing")]
    MissingClaim(String),
    /// `exp` is past, beyond the leeway.
    #[error("token expired at {exp}")]
    Expired {
        /// The token's `exp`.
        exp: UnixSeconds,
    },
    /// `nbf` is in the future, beyond the leeway.
    #[error("token not valid before {nbf}")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: UnixSeconds,
    },
    /// `iat` is in the future, beyond the leeway.
    #[error("token issued in the future at {iat}")]
    IssuedInFuture {
        /// The token's `iat`.
        iat: UnixSeconds,
    },
    /// `exp` is not after `iat`.
    #[error("token expires before it was issued")]
    ExpiresBeforeIssued,
    /// The lifetime exceeds the issuer's cap.
    #[error("token lifetime of {lifetime} s exceeds the cap of {cap} s")]
    LifetimeTooLong {
        /// `exp - iat` (or `exp - now`).
        lifetime: i64,
        /// The configured cap.
        cap: u64,
    },
}

impl VerifyError {
    /// A stable code for audit logs and metrics.
    pub const fn reason_code(&self) -> &'static str {
        match self {
            VerifyError::AlgNotAllowed(_) => "alg_not_allowed",
            VerifyError::UnknownKid(_) => "unknown_kid",
            VerifyError::AmbiguousKid(_) => "ambiguous_kid",
            VerifyError::AlgKeyMismatch { .. } => "alg_key_mismatch",
            VerifyError::BadSignature => "bad_signature",
            VerifyError::IssuerMismatch(_) => "issuer_mismatch",
            VerifyError::AudienceMismatch => "audience_mismatch",
            VerifyError::InvalidClaim(_) => "invalid_claim",
            VerifyError::MissingClaim(_) => "missing_claim",
            VerifyError::Expired { .. } => "expired",
            VerifyError::NotYetValid { .. } => "not_yet_valid",
            VerifyError::IssuedInFuture { .. } => "issued_in_future",
            VerifyError::ExpiresBeforeIssued => "exp_before_iat",
            VerifyError::LifetimeTooLong { .. } => "lifetime_too_long",
        }
    }
}

/// Claims of a token whose signature, issuer, audience and times were checked.
///
/// INVARIANT: only [`verify`] constructs this type (its fields are private and it has no
/// public constructor), so holding one proves verification happened.
#[derive(Debug, Clone)]
pub struct VerifiedClaims {
    issuer: String,
    subject: String,
    audience: String,
    jti: Option<String>,
    issued_at: Option<UnixSeconds>,
    expires_at: UnixSeconds,
    alg: Alg,
    kid: String,
    claims: Map<String, Value>,
}

impl VerifiedClaims {
    /// `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    /// `sub`.
    pub fn subject(&self) -> &str {
        &self.subject
    }
    /// The accepted audience that `aud` contained.
    pub fn audience(&self) -> &str {
        &self.audience
    }
    /// `jti`, if present.
    pub fn jti(&self) -> Option<&str> {
        self.jti.as_deref()
    }
    /// `iat`, if present.
    pub fn issued_at(&self) -> Option<UnixSeconds> {
        self.issued_at
    }
    /// `exp`.
    pub fn expires_at(&self) -> UnixSeconds {
        self.expires_at
    }
    /// The algorithm that verified the signature.
    pub fn alg(&self) -> Alg {
        self.alg
    }
    /// The key that verified the signature.
    pub fn kid(&self) -> &str {
        &self.kid
    }
    /// Every claim of the token.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }
}

/// Verifies `jwt` with the issuer's `keys` and `rules` at time `now`.
pub fn verify(
    jwt: UnverifiedJwt,
    keys: &KeySet,
    rules: &VerifyRules,
    now: UnixSeconds,
) -> Result<VerifiedClaims, VerifyError> {
    let alg = jwt.unverified_alg();
    if !rules.algorithms.contains(&alg) {
        return Err(VerifyError::AlgNotAllowed(alg));
    }
    let kid = jwt.unverified_kid();
    let key = match keys.get(kid) {
        KeyLookup::Found(key) => key,
        KeyLookup::Unknown => return Err(VerifyError::UnknownKid(escape_untrusted(kid))),
        KeyLookup::Ambiguous => return Err(VerifyError::AmbiguousKid(escape_untrusted(kid))),
    };
    // SECURITY: RFC 8725 §3.1 — the key decides the algorithm, not the token.
    if key.alg() != alg {
        return Err(VerifyError::AlgKeyMismatch {
            header: alg,
            key: key.alg(),
        });
    }
    if !key.verify_signature(jwt.signing_input(), jwt.signature()) {
        return Err(VerifyError::BadSignature);
    }
    let kid = kid.to_owned();
    let claims = jwt.into_claims();
    check_claims(claims, rules, now, alg, kid)
}

fn check_claims(
    claims: Map<String, Value>,
    rules: &VerifyRules,
    now: UnixSeconds,
    alg: Alg,
    kid: String,
) -> Result<VerifiedClaims, VerifyError> {
    let issuer = match claims.get("iss") {
        Some(Value::String(iss)) if *iss == rules.issuer => iss.clone(),
        Some(Value::String(iss)) => return Err(VerifyError::IssuerMismatch(escape_untrusted(iss))),
        _ => return Err(VerifyError::InvalidClaim("iss")),
    };
    let audience = check_audience(claims.get("aud"), &rules.audiences)?;
    let subject = match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        None => return Err(VerifyError::MissingClaim("sub".into())),
        Some(_) => return Err(VerifyError::InvalidClaim("sub")),
    };
    let jti = match claims.get("jti") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        None if !rules.require_jti => None,
        None => return Err(VerifyError::MissingClaim("jti".into())),
        Some(_) => return Err(VerifyError::InvalidClaim("jti")),
    };

    // RFC 7519 §4.1.4-6: NumericDate values. Legate requires JSON integers: strings,
    // floats, booleans and negative numbers are refused (lenient parsers that coerce
    // `"exp":"9999999999"` or `1e20` have been bypassed this way).
    let exp = numeric_date(&claims, "exp")?.ok_or(VerifyError::MissingClaim("exp".into()))?;
    let nbf = numeric_date(&claims, "nbf")?;
    let iat = numeric_date(&claims, "iat")?;
    let leeway = i64::try_from(rules.leeway_secs).unwrap_or(i64::MAX);

    if now >= exp.saturating_add(leeway) {
        return Err(VerifyError::Expired { exp });
    }
    if let Some(nbf) = nbf
        && nbf > now.saturating_add(leeway)
    {
        return Err(VerifyError::NotYetValid { nbf });
    }
    if let Some(iat) = iat {
        if iat > now.saturating_add(leeway) {
            return Err(VerifyError::IssuedInFuture { iat });
        }
        if exp <= iat {
            return Err(VerifyError::ExpiresBeforeIssued);
        }
    }
    let lifetime = exp.saturating_sub(iat.unwrap_or(now));
    if u64::try_from(lifetime).unwrap_or(0) > rules.max_lifetime_secs {
        return Err(VerifyError::LifetimeTooLong {
            lifetime,
            cap: rules.max_lifetime_secs,
        });
    }
    for name in &rules.required_claims {
        if claims.get(name).is_none_or(Value::is_null) {
            return Err(VerifyError::MissingClaim(name.clone()));
        }
    }

    Ok(VerifiedClaims {
        issuer,
        subject,
        audience,
        jti,
        issued_at: iat,
        expires_at: exp,
        alg,
        kid,
        claims,
    })
}

/// The largest NumericDate accepted (year 9999): anything later is a bogus value.
const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<UnixSeconds>, VerifyError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if (0..=MAX_NUMERIC_DATE).contains(&v) && !n.is_f64() => Ok(Some(v)),
            _ => Err(VerifyError::InvalidClaim(name)),
        },
        Some(_) => Err(VerifyError::InvalidClaim(name)),
    }
}

fn check_audience(aud: Option<&Value>, accepted: &[String]) -> Result<String, VerifyError> {
    let pick = |s: &str| accepted.iter().find(|a| a.as_str() == s).cloned();
    match aud {
        None => Err(VerifyError::MissingClaim("aud".into())),
        Some(Value::String(s)) => pick(s).ok_or(VerifyError::AudienceMismatch),
        Some(Value::Array(items)) => {
            // RFC 7519 §4.1.3: an array of StringOrURI. Any non-string element makes the
            // claim invalid rather than being skipped.
            if items.is_empty() {
                return Err(VerifyError::InvalidClaim("aud"));
            }
            let mut found = None;
            for item in items {
                let Value::String(s) = item else {
                    return Err(VerifyError::InvalidClaim("aud"));
                };
                if found.is_none() {
                    found = pick(s);
                }
            }
            found.ok_or(VerifyError::AudienceMismatch)
        }
        Some(_) => Err(VerifyError::InvalidClaim("aud")),
    }
}

#[cfg(test)]
mod tests {
    //! One test per rule, each named after the attack or mistake it stops.

    use super::*;
    use crate::jwk::KeySet;
    use crate::testkeys::TestKey;
    use serde_json::json;

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
        let evil = crate::b64::encode(
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
            let mut raw = crate::b64::decode(sig).unwrap();
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
                let forged = format!("{input}.{}", crate::b64::encode(&v));
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
        let forged = format!("{input}.{}", crate::b64::encode([0u8; 64]));
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
        let raw = crate::b64::decode(sig).unwrap();
        let mut der = vec![0x30, 0x46, 0x02, 0x21, 0x00];
        der.extend_from_slice(&raw[..32]);
        der.extend_from_slice(&[0x02, 0x21, 0x00]);
        der.extend_from_slice(&raw[32..]);
        let forged = format!("{input}.{}", crate::b64::encode(&der));
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
        let raw = crate::b64::decode(sig).unwrap();
        let s_neg = p256_negate(&raw[32..]);
        let mut flipped = raw[..32].to_vec();
        flipped.extend_from_slice(&s_neg);
        let other = format!("{input}.{}", crate::b64::encode(&flipped));
        assert!(run(&other, &keyset(&[&key]), &rules()).is_ok());
    }

    /// n - s for the P-256 group order n (big-endian, 32 bytes).
    pub(crate) fn p256_negate(s: &[u8]) -> Vec<u8> {
        const N: [u8; 32] = [
            0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2,
            0xfc, 0x63, 0x25, 0x51,
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
}
