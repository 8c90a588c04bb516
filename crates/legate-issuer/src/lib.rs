//! Legate as an OpenID Connect issuer: signing keys, JWKS, discovery and minting.
//!
//! What it does: loads or generates the keys Legate signs with (ES256 on P-256 by
//! default, RS256 for relying parties that accept only RSA), each parsed once; publishes
//! them as a JWK set with rotation (retired keys stay published until their tokens
//! expire); serves the OIDC Discovery 1.0 document that AWS IAM, Google workload identity
//! federation and others read to trust Legate; and mints short-lived compact-JWS tokens
//! for verified, policy-approved token exchanges, and the five-minute assertions cloud
//! targets exchange for cloud credentials. Each mint names its algorithm: the ring may
//! hold an ES256 and an RS256 signer at once.
//!
//! What it does not do: no I/O, HTTP, async runtime or clock reads (`now` is a
//! parameter); no verification of upstream tokens and no policy (callers do both before
//! [`Issuer::mint`]); no key storage or rotation schedule (the server decides when to
//! rotate and when a retired key's tokens have all expired).
//!
//! SECURITY: private key material never leaves [`SigningKey`] (its `Debug` prints the
//! `kid` and algorithm only, and [`SigningKey::public_jwk`] writes public members only);
//! minted tokens travel in [`legate_core::Secret`].
//!
//! Layout:
//! - `key`: [`SigningAlg`], [`SigningKey`] (generate, public JWK, sign) and
//!   the RFC 7638 thumbprint used as the default `kid`;
//! - `load`: [`SigningKey::from_pem`] and [`SigningKey::from_jwk`];
//! - `keyring`: [`KeyRing`], every published key; the first key of each algorithm signs;
//! - `issuer`: [`Issuer`], its URL rules and [`Issuer::discovery_document`];
//! - `mint`: [`MintRequest`], [`MintedToken`], [`Issuer::mint`], and the cloud
//!   assertion ([`AssertionRequest`], [`Issuer::mint_assertion`]);
//! - `error`: [`KeyLoadError`], [`KeyRingError`], [`IssuerUrlError`], [`MintError`].

mod error;
mod issuer;
mod key;
mod keyring;
mod load;
mod mint;

#[cfg(test)]
mod fixtures;

pub use error::{IssuerUrlError, KeyLoadError, KeyRingError, MintError};
pub use issuer::{DISCOVERY_PATH, Issuer, JWKS_PATH, TOKEN_PATH};
pub use key::{ParseSigningAlgError, SigningAlg, SigningKey};
pub use keyring::KeyRing;
pub use mint::{
    ASSERTION_SUBJECT_PREFIX, AssertionRequest, MAX_ASSERTION_LIFETIME_SECS,
    MAX_TOKEN_LIFETIME_SECS, MintRequest, MintedToken,
};

/// A random (version 4) UUID from AWS-LC's CSPRNG, for token ids and request ids.
///
/// `uuid::Uuid::new_v4` asks the kernel (`getrandom(2)`) at every call, a system call on
/// the request path; AWS-LC's generator is seeded from the kernel and then runs in user
/// space. Should it ever fail, the kernel is asked instead.
pub fn random_uuid() -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    match aws_lc_rs::rand::fill(&mut bytes) {
        Ok(()) => uuid::Builder::from_random_bytes(bytes).into_uuid(),
        Err(_) => uuid::Uuid::new_v4(),
    }
}

/// RFC 8693 token type of the tokens Legate mints (`issued_token_type`): a JWT.
pub const MINTED_TOKEN_TYPE: &str = legate_core::exchange::TOKEN_TYPE_JWT;

#[cfg(test)]
mod tests {
    /// Token ids must be unpredictable and unique: version 4, RFC 4122 variant, and no
    /// repeats over many draws (a stuck generator would repeat at once).
    #[test]
    fn random_uuids_are_version_4_and_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = super::random_uuid();
            assert_eq!(id.get_version_num(), 4);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            assert!(seen.insert(id), "a repeated uuid");
        }
    }
}
