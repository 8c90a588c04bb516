//! Compact JWS parsing, without trusting anything.
//!
//! [`UnverifiedJwt::parse`] checks the *shape* of a token — size, segments, canonical
//! base64url, strict JSON, header parameters — and exposes the header and the claimed
//! issuer so the caller can route it to the right trust. Nothing here says the token
//! is genuine; only [`crate::verify::verify`] does, and only it builds
//! [`crate::verify::VerifiedClaims`].

use serde_json::{Map, Value};

use crate::text::escape_untrusted;
use crate::{b64, json};

/// The largest token accepted, in bytes, checked before any decoding.
///
/// AWS STS caps `WebIdentityToken` at 20,000 characters; real CI and Kubernetes tokens
/// are 1–2 KB. SECURITY: bounding input first keeps every later step cheap.
pub const MAX_TOKEN_BYTES: usize = 20_000;

/// The signature algorithms Legate will ever verify (RFC 7518 §3.1, RFC 8037 §3.1).
///
/// SECURITY: a static allow-list. `none` (RFC 7518 §3.6) and the HMAC family (`HS*`,
/// whose key would be the issuer's *public* key in an algorithm-confusion attack) are not
/// representable, so no configuration can enable them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
    /// Ed25519 (RFC 8037).
    EdDsa,
}

impl Alg {
    /// Every supported algorithm.
    pub const ALL: [Alg; 9] = [
        Alg::Rs256,
        Alg::Rs384,
        Alg::Rs512,
        Alg::Ps256,
        Alg::Ps384,
        Alg::Ps512,
        Alg::Es256,
        Alg::Es384,
        Alg::EdDsa,
    ];

    /// Parses a JOSE `alg` value, exactly (case-sensitive, RFC 7515 §4.1.1).
    pub fn from_jose(s: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The JOSE name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::EdDsa => "EdDSA",
        }
    }
}

impl std::fmt::Display for Alg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Alg {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Alg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Alg::from_jose(&s).ok_or_else(|| {
            serde::de::Error::custom(format_args!(
                "unsupported algorithm `{}`, expected one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA",
                escape_untrusted(&s)
            ))
        })
    }
}

/// Why a token's shape was refused. Messages escape attacker-controlled text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// Larger than [`MAX_TOKEN_BYTES`].
    #[error("token is {0} bytes, over the limit of {MAX_TOKEN_BYTES}")]
    TooLarge(usize),
    /// Not exactly three dot-separated segments (JWE has five, JWS JSON serialisation none).
    #[error("token is not a compact jws: expected 3 segments")]
    NotCompactJws,
    /// A segment is not canonical base64url.
    #[error("{part}: {source}")]
    Encoding {
        /// Which segment.
        part: &'static str,
        /// The decoding error.
        source: b64::B64Error,
    },
    /// A segment is not a strict JSON object.
    #[error("{part}: {source}")]
    Json {
        /// Which segment.
        part: &'static str,
        /// The JSON error.
        source: json::JsonError,
    },
    /// `alg` missing or not a string.
    #[error("header has no string `alg`")]
    MissingAlg,
    /// `alg` not on the allow-list (`none`, `HS256`, …).
    #[error("unsupported algorithm `{0}`")]
    UnsupportedAlg(String),
    /// `kid` missing, not a string, or empty.
    #[error("header has no string `kid`")]
    MissingKid,
    /// A header parameter Legate never honours is present.
    #[error("forbidden header parameter `{0}`")]
    ForbiddenHeader(&'static str),
    /// `typ` names another kind of JWT.
    #[error("unexpected token type `{0}`")]
    UnexpectedType(String),
    /// `iss` missing or not a string.
    #[error("payload has no string `iss`")]
    MissingIssuer,
}

impl ParseError {
    /// A stable code for audit logs and metrics.
    pub const fn reason_code(&self) -> &'static str {
        match self {
            ParseError::TooLarge(_) => "token_too_large",
            ParseError::NotCompactJws => "not_compact_jws",
            ParseError::Encoding { .. } => "bad_encoding",
            ParseError::Json { .. } => "bad_json",
            ParseError::MissingAlg => "missing_alg",
            ParseError::UnsupportedAlg(_) => "unsupported_alg",
            ParseError::MissingKid => "missing_kid",
            ParseError::ForbiddenHeader(_) => "forbidden_header",
            ParseError::UnexpectedType(_) => "unexpected_typ",
            ParseError::MissingIssuer => "missing_iss",
        }
    }
}

/// Header parameters that are refused outright.
///
/// SECURITY: `jku`, `x5u` (RFC 7515 §4.1.2, §4.1.5) would make Legate fetch keys from a
/// URL the attacker chose (SSRF, key injection); `jwk`, `x5c` (§4.1.3, §4.1.6) carry the
/// attacker's own key. Keys come only from the configured trust. `crit` (§4.1.11) must
/// be rejected when an extension is not understood, and Legate understands none. `zip`
/// (RFC 7516 §4.1.3) and `enc` belong to JWE; `b64` (RFC 7797) changes what is signed;
/// `p2c`/`p2s` are PBES2 parameters (a CPU-exhaustion vector).
const FORBIDDEN_HEADERS: [&str; 10] = [
    "jku", "x5u", "jwk", "x5c", "crit", "zip", "enc", "b64", "p2c", "p2s",
];

/// A compact JWS whose shape is valid and whose signature is NOT yet checked.
#[derive(Clone)]
pub struct UnverifiedJwt {
    signing_input_len: usize,
    token: String,
    alg: Alg,
    kid: String,
    header: Map<String, Value>,
    claims: Map<String, Value>,
    issuer: String,
    signature: Vec<u8>,
}

impl std::fmt::Debug for UnverifiedJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SECURITY: never print the token itself.
        f.debug_struct("UnverifiedJwt")
            .field("alg", &self.alg)
            .field("kid", &escape_untrusted(&self.kid))
            .field("iss", &escape_untrusted(&self.issuer))
            .finish_non_exhaustive()
    }
}

impl UnverifiedJwt {
    /// Parses a compact JWS (RFC 7515 §7.1) into an unverified token.
    pub fn parse(token: &str) -> Result<Self, ParseError> {
        // Size first: no decoding work proportional to an oversized input.
        if token.len() > MAX_TOKEN_BYTES {
            return Err(ParseError::TooLarge(token.len()));
        }
        let mut parts = token.splitn(4, '.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ParseError::NotCompactJws);
        };

        let header = decode_object("header", h64)?;
        let (alg, kid) = check_header(&header)?;
        let claims = decode_object("payload", p64)?;
        let issuer = match claims.get("iss") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(ParseError::MissingIssuer),
        };
        let signature = b64::decode(s64).map_err(|source| ParseError::Encoding {
            part: "signature",
            source,
        })?;

        Ok(Self {
            signing_input_len: h64.len() + 1 + p64.len(),
            token: token.to_owned(),
            alg,
            kid,
            header,
            claims,
            issuer,
            signature,
        })
    }

    /// The header's `alg`, from the allow-list. Unverified.
    pub fn unverified_alg(&self) -> Alg {
        self.alg
    }

    /// The header's `kid`. Unverified and attacker-controlled: escape before logging.
    pub fn unverified_kid(&self) -> &str {
        &self.kid
    }

    /// The payload's `iss`, for routing the token to its trust. Unverified.
    pub fn unverified_issuer(&self) -> &str {
        &self.issuer
    }

    /// The whole header. Unverified.
    pub fn unverified_header(&self) -> &Map<String, Value> {
        &self.header
    }

    /// The whole payload. Unverified.
    pub fn unverified_claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// `BASE64URL(header) || '.' || BASE64URL(payload)`, the bytes that were signed.
    pub fn signing_input(&self) -> &[u8] {
        self.token
            .as_bytes()
            .get(..self.signing_input_len)
            .unwrap_or_default()
    }

    /// The decoded signature.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    pub(crate) fn into_claims(self) -> Map<String, Value> {
        self.claims
    }
}

fn decode_object(part: &'static str, segment: &str) -> Result<Map<String, Value>, ParseError> {
    let bytes = b64::decode(segment).map_err(|source| ParseError::Encoding { part, source })?;
    json::parse_object(&bytes).map_err(|source| ParseError::Json { part, source })
}

fn check_header(header: &Map<String, Value>) -> Result<(Alg, String), ParseError> {
    for name in FORBIDDEN_HEADERS {
        if header.contains_key(name) {
            return Err(ParseError::ForbiddenHeader(name));
        }
    }
    let alg = match header.get("alg") {
        Some(Value::String(s)) => {
            Alg::from_jose(s).ok_or_else(|| ParseError::UnsupportedAlg(escape_untrusted(s)))?
        }
        _ => return Err(ParseError::MissingAlg),
    };
    let kid = match header.get("kid") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(ParseError::MissingKid),
    };
    // RFC 7519 §5.1: `typ` is advisory, but a token typed as another JWT profile
    // (`dpop+jwt`, `at+jwt`, `logout+jwt`, …) is meant for another verifier; accepting it
    // here would be cross-JWT confusion (RFC 8725 §3.11).
    match header.get("typ") {
        None => {}
        Some(Value::String(t)) if is_plain_jwt_type(t) => {}
        Some(Value::String(t)) => return Err(ParseError::UnexpectedType(escape_untrusted(t))),
        Some(_) => return Err(ParseError::UnexpectedType("<non-string>".into())),
    }
    Ok((alg, kid))
}

fn is_plain_jwt_type(t: &str) -> bool {
    let t = t.strip_prefix("application/").unwrap_or(t);
    t.eq_ignore_ascii_case("JWT") || t.eq_ignore_ascii_case("JOSE")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn seg(v: &serde_json::Value) -> String {
        b64::encode(serde_json::to_vec(v).unwrap())
    }

    fn token(header: serde_json::Value, payload: serde_json::Value) -> String {
        format!("{}.{}.{}", seg(&header), seg(&payload), b64::encode(b"sig"))
    }

    fn ok_header() -> serde_json::Value {
        serde_json::json!({"alg":"ES256","kid":"k1","typ":"JWT"})
    }

    fn ok_payload() -> serde_json::Value {
        serde_json::json!({"iss":"https://issuer.example","sub":"s"})
    }

    #[test]
    fn parses_a_well_formed_token() {
        let t = UnverifiedJwt::parse(&token(ok_header(), ok_payload())).unwrap();
        assert_eq!(t.unverified_alg(), Alg::Es256);
        assert_eq!(t.unverified_kid(), "k1");
        assert_eq!(t.unverified_issuer(), "https://issuer.example");
        assert_eq!(t.signature(), b"sig");
        assert!(t.signing_input().ends_with(seg(&ok_payload()).as_bytes()));
    }

    #[test]
    fn oversized_token_is_rejected_before_decoding() {
        let t = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(
            UnverifiedJwt::parse(&t).unwrap_err(),
            ParseError::TooLarge(MAX_TOKEN_BYTES + 1)
        );
    }

    #[test]
    fn wrong_segment_counts_are_rejected() {
        for t in ["a.b", "a.b.c.d", "a.b.c.d.e", "", "....", "abc"] {
            assert_eq!(
                UnverifiedJwt::parse(t).unwrap_err(),
                ParseError::NotCompactJws
            );
        }
        let many = ".".repeat(10_000);
        assert_eq!(
            UnverifiedJwt::parse(&many).unwrap_err(),
            ParseError::NotCompactJws
        );
    }

    #[test]
    fn alg_none_in_any_casing_is_rejected() {
        for alg in ["none", "None", "NONE", "nOnE"] {
            let t = token(serde_json::json!({"alg":alg,"kid":"k"}), ok_payload());
            assert!(matches!(
                UnverifiedJwt::parse(&t),
                Err(ParseError::UnsupportedAlg(_))
            ));
        }
    }

    #[test]
    fn hmac_algorithms_are_rejected() {
        for alg in ["HS256", "HS384", "HS512", "ES256K", "RS1", "es256"] {
            let t = token(serde_json::json!({"alg":alg,"kid":"k"}), ok_payload());
            assert!(matches!(
                UnverifiedJwt::parse(&t),
                Err(ParseError::UnsupportedAlg(_))
            ));
        }
    }

    #[test]
    fn missing_or_non_string_alg_is_rejected() {
        for h in [
            serde_json::json!({"kid":"k"}),
            serde_json::json!({"alg":["ES256"],"kid":"k"}),
        ] {
            assert_eq!(
                UnverifiedJwt::parse(&token(h, ok_payload())).unwrap_err(),
                ParseError::MissingAlg
            );
        }
    }

    #[test]
    fn missing_empty_or_non_string_kid_is_rejected() {
        for h in [
            serde_json::json!({"alg":"ES256"}),
            serde_json::json!({"alg":"ES256","kid":""}),
            serde_json::json!({"alg":"ES256","kid":7}),
        ] {
            assert_eq!(
                UnverifiedJwt::parse(&token(h, ok_payload())).unwrap_err(),
                ParseError::MissingKid
            );
        }
    }

    #[test]
    fn key_carrying_and_key_fetching_headers_are_rejected() {
        for name in FORBIDDEN_HEADERS {
            let mut h = ok_header();
            h[name] = serde_json::json!("https://attacker.example/keys");
            assert_eq!(
                UnverifiedJwt::parse(&token(h, ok_payload())).unwrap_err(),
                ParseError::ForbiddenHeader(name),
                "{name}"
            );
        }
    }

    #[test]
    fn crit_is_rejected_even_when_empty() {
        let mut h = ok_header();
        h["crit"] = serde_json::json!([]);
        assert_eq!(
            UnverifiedJwt::parse(&token(h, ok_payload())).unwrap_err(),
            ParseError::ForbiddenHeader("crit")
        );
    }

    #[test]
    fn other_jwt_types_are_rejected() {
        for typ in ["dpop+jwt", "at+jwt", "logout+jwt", "JWE"] {
            let mut h = ok_header();
            h["typ"] = serde_json::json!(typ);
            assert!(matches!(
                UnverifiedJwt::parse(&token(h, ok_payload())),
                Err(ParseError::UnexpectedType(_))
            ));
        }
        for typ in ["JWT", "jwt", "application/jwt", "JOSE"] {
            let mut h = ok_header();
            h["typ"] = serde_json::json!(typ);
            assert!(
                UnverifiedJwt::parse(&token(h, ok_payload())).is_ok(),
                "{typ}"
            );
        }
    }

    #[test]
    fn duplicate_header_member_is_rejected() {
        let h = b64::encode(br#"{"alg":"ES256","kid":"k","alg":"none"}"#);
        let t = format!("{h}.{}.{}", seg(&ok_payload()), b64::encode(b"s"));
        assert!(matches!(
            UnverifiedJwt::parse(&t),
            Err(ParseError::Json { part: "header", .. })
        ));
    }

    #[test]
    fn missing_or_non_string_issuer_is_rejected() {
        for p in [
            serde_json::json!({"sub":"s"}),
            serde_json::json!({"iss":["https://issuer.example"]}),
        ] {
            assert_eq!(
                UnverifiedJwt::parse(&token(ok_header(), p)).unwrap_err(),
                ParseError::MissingIssuer
            );
        }
    }

    #[test]
    fn padded_segments_are_rejected() {
        let good = token(ok_header(), ok_payload());
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        parts[2].push_str("==");
        assert!(matches!(
            UnverifiedJwt::parse(&parts.join(".")),
            Err(ParseError::Encoding { .. })
        ));
    }

    #[test]
    fn debug_does_not_print_the_token() {
        let t = token(ok_header(), ok_payload());
        let parsed = UnverifiedJwt::parse(&t).unwrap();
        assert!(!format!("{parsed:?}").contains(&t));
    }
}
