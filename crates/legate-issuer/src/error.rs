//! Error types, one per operation: loading a key, building a key ring, configuring the
//! issuer URL, and minting a token.
//!
//! SECURITY: no message carries key material. Echoed input (a `kid`, a curve name, a URL)
//! is truncated and escaped by [`legate_core::text::escape_untrusted`] so it cannot
//! forge log lines.

use crate::key::SigningAlg;

/// Why a signing key could not be generated or loaded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyLoadError {
    /// The crypto library failed to generate a key.
    #[error("key generation failed")]
    Generate,
    /// The `kid` is empty, too long, or not printable ASCII.
    #[error("invalid `kid` `{0}`: use 1 to 128 printable ASCII characters without spaces")]
    InvalidKid(String),
    /// The PEM text is malformed.
    #[error("invalid PEM: {0}")]
    Pem(&'static str),
    /// The PEM text holds an encrypted private key.
    #[error("encrypted private keys are not supported: decrypt the key first")]
    EncryptedPem,
    /// The PEM text holds no private key.
    #[error(
        "no private key in PEM: expected a `PRIVATE KEY`, `EC PRIVATE KEY` or `RSA PRIVATE KEY` block"
    )]
    NoPrivateKey,
    /// The PEM text holds more than one private key.
    #[error("PEM holds more than one private key: give exactly one")]
    MultiplePrivateKeys,
    /// The RSA modulus is shorter than 2048 bits.
    #[error("RSA key is smaller than 2048 bits: use a 2048-bit or larger key")]
    RsaTooSmall,
    /// An EC key on a curve other than P-256.
    #[error("unsupported EC curve `{0}`: only P-256 is supported")]
    UnsupportedCurve(String),
    /// A key that is neither EC nor RSA.
    #[error("unsupported key type `{0}`: use an EC P-256 or RSA key")]
    UnsupportedKeyType(String),
    /// The key's algorithm differs from the one the operator asked for.
    #[error("key is a {found} key but {expected} was requested")]
    AlgMismatch {
        /// The algorithm the operator asked for.
        expected: SigningAlg,
        /// The algorithm the key supports.
        found: SigningAlg,
    },
    /// The crypto library refused the key.
    #[error("invalid {format} key: {reason}")]
    Rejected {
        /// The encoding that was being parsed (`PKCS#8`, `SEC1`, `PKCS#1`, `JWK`).
        format: &'static str,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The JWK is not valid JSON or has members of the wrong type.
    #[error("invalid JWK JSON at line {line} column {column}")]
    JwkJson {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// The input is a JWK set, not a single JWK.
    #[error("expected a single JWK, found a JWK set: pass one key")]
    JwkIsSet,
    /// A required JWK member is absent.
    #[error("JWK has no `{0}` member")]
    JwkMissingMember(&'static str),
    /// The JWK is a public key.
    #[error("JWK is a public key: signing needs the private member `d`")]
    JwkNotPrivate,
    /// A JWK member is not canonical base64url, or has the wrong length.
    #[error("JWK member `{0}` is not canonical base64url of the right length")]
    JwkInvalidMember(&'static str),
    /// The JWK's `alg` does not match its key type.
    #[error("JWK `alg` `{found}` does not match the key: expected {expected}")]
    JwkAlgMismatch {
        /// The `alg` the JWK declares.
        found: String,
        /// The algorithm its key type signs with.
        expected: SigningAlg,
    },
    /// The JWK's `use` is not `sig`.
    #[error("JWK `use` `{0}` is not `sig`")]
    JwkUse(String),
    /// The JWK's `key_ops` does not allow signing.
    #[error("JWK `key_ops` does not include `sign`")]
    JwkKeyOps,
    /// A multi-prime RSA JWK.
    #[error("multi-prime RSA keys (`oth`) are not supported")]
    JwkMultiPrime,
    /// An invariant of the crypto library did not hold.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl KeyLoadError {
    /// Maps an aws-lc-rs rejection to an error, singling out too-small RSA keys.
    pub(crate) fn rejected(format: &'static str, e: aws_lc_rs::error::KeyRejected) -> Self {
        let reason = match e.description_() {
            "TooSmall" => return Self::RsaTooSmall,
            "InconsistentComponents" => "the components do not form one key",
            "InvalidEncoding" => "malformed encoding",
            "TooLarge" => "the key is too large",
            "WrongAlgorithm" => "wrong key type or curve",
            _ => "refused by the crypto library",
        };
        Self::Rejected { format, reason }
    }
}

/// Why a key ring could not be built or changed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRingError {
    /// No key at all.
    #[error("the key ring holds no key")]
    Empty,
    /// Two keys share a `kid`, so verifiers could not tell them apart.
    #[error("duplicate `kid` `{0}` in the key ring")]
    DuplicateKid(String),
}

/// Why an issuer URL was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IssuerUrlError {
    /// The URL is empty.
    #[error("issuer URL is empty")]
    Empty,
    /// The URL is not `https://` (or `http://` for local development) with a host.
    #[error("issuer URL `{0}` must start with `https://` and name a host")]
    Scheme(String),
    /// The URL has a query or fragment, which OpenID Connect forbids in an issuer.
    #[error("issuer URL `{0}` must not have a query or fragment")]
    QueryOrFragment(String),
    /// The URL contains whitespace or control characters.
    #[error("issuer URL `{0}` contains whitespace or control characters")]
    Whitespace(String),
}

/// Why a token could not be minted.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MintError {
    /// The lifetime is 0 or longer than a day.
    #[error("invalid token lifetime {0}s: use 1 to 86400 seconds")]
    InvalidLifetime(u64),
    /// A required claim value is empty.
    #[error("`{0}` must not be empty")]
    EmptyClaim(&'static str),
    /// An extra claim tries to replace a registered claim.
    #[error("extra claim `{0}` would override a registered claim")]
    ReservedClaim(String),
    /// `now + lifetime` does not fit in an `i64`.
    #[error("token expiry overflows")]
    TimeOverflow,
    /// The header or claims could not be serialised.
    #[error("cannot serialise the token JSON")]
    Serialize,
    /// The crypto library failed to sign.
    #[error("signing failed")]
    Sign,
    /// No published key signs with the requested algorithm.
    #[error("no {0} signing key: add one to `issuer.keys`")]
    NoKey(SigningAlg),
    /// The target name is empty or contains `/`, so `target/<name>` would be ambiguous.
    #[error("invalid target name `{0}` for an assertion subject")]
    InvalidTarget(String),
}
