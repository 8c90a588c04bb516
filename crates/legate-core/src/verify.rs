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
