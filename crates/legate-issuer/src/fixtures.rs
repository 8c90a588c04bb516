//! Test fixtures: the keys in `testdata/` (see its README).

pub(crate) const RSA_PKCS1: &str = include_str!("../testdata/rsa2048.pkcs1.pem");
pub(crate) const RSA_PKCS8: &str = include_str!("../testdata/rsa2048.pkcs8.pem");
pub(crate) const RSA_JWK: &str = include_str!("../testdata/rsa2048.jwk.json");
/// RFC 7638 thumbprint of the `rsa2048` fixture, computed independently (Python).
pub(crate) const RSA_THUMBPRINT: &str = "nrdCtNit1sNfmuaPobDobbThSOvsEH_xOyGZ5pcLhLE";
pub(crate) const RSA1024_PKCS1: &str = include_str!("../testdata/rsa1024.pkcs1.pem");
pub(crate) const EC_SEC1: &str = include_str!("../testdata/ec256.sec1.pem");
pub(crate) const EC_PKCS8: &str = include_str!("../testdata/ec256.pkcs8.pem");
pub(crate) const EC_JWK: &str = include_str!("../testdata/ec256.jwk.json");
/// RFC 7638 thumbprint of the `ec256` fixture, computed independently (Python).
pub(crate) const EC_THUMBPRINT: &str = "uIN-T87x3zEMWcvSujNx1pxeeBG396_7IxwEDWOr9ps";
pub(crate) const EC384_SEC1: &str = include_str!("../testdata/ec384.sec1.pem");
pub(crate) const EC384_PKCS8: &str = include_str!("../testdata/ec384.pkcs8.pem");
pub(crate) const EC384_JWK: &str = include_str!("../testdata/ec384.jwk.json");
