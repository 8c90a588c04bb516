//! Canonical base64url (RFC 7515 §2, RFC 4648 §5, no padding).
//!
//! SECURITY: only one encoding of each byte string is accepted. `=` padding, the
//! standard alphabet (`+`, `/`), whitespace and non-zero trailing bits are all refused,
//! so an attacker cannot make "different" tokens with the same content (replay-cache and
//! deny-list evasion) or exploit decoders that disagree.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Why a base64url segment was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid base64url: {0}")]
pub struct B64Error(String);

/// Decodes canonical unpadded base64url.
pub fn decode(segment: &str) -> Result<Vec<u8>, B64Error> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|e| B64Error(e.to_string()))
}

/// Encodes bytes as unpadded base64url.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_is_rejected() {
        assert!(decode("YQ").is_ok());
        assert!(decode("YQ==").is_err());
    }

    #[test]
    fn non_zero_trailing_bits_are_rejected() {
        // "YQ" and "YR" would both decode to "a" in a lax decoder.
        assert!(decode("YR").is_err());
    }

    #[test]
    fn standard_alphabet_and_whitespace_are_rejected() {
        assert!(decode("+/8").is_err());
        assert!(decode("-_8").is_ok());
        assert!(decode("YQ ").is_err());
        assert!(decode("Y\nQ").is_err());
    }
}
