//! Minting: [`MintRequest`] in, a signed compact JWS ([`MintedToken`]) out.
//!
//! The token is `base64url(header) . base64url(claims) . base64url(signature)` with
//! header `{"alg", "typ": "JWT", "kid"}` and the claims in [`REGISTERED_CLAIMS`] plus any
//! policy-approved extras. [`Issuer::mint_assertion`] mints the short-lived assertion a
//! cloud target exchanges for cloud credentials ([`AssertionRequest`]).
//!
//! Every minting call names its algorithm; the key ring's signer for that algorithm signs.

use legate_core::{Secret, b64};
use serde_json::{Map, Value, json};

use crate::error::MintError;
use crate::issuer::Issuer;
use crate::key::SigningAlg;

/// The longest token lifetime Legate mints, in seconds (one day).
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 86_400;

/// The claims every minted token carries; extra claims may not use these names.
pub(crate) const REGISTERED_CLAIMS: [&str; 8] =
    ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "upstream"];

/// What to put in a token. The caller has already verified the upstream token and
/// evaluated policy; minting checks only the shape of the request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MintRequest {
    /// `sub`: the canonical workload identity.
    pub subject: String,
    /// `aud`: the relying party, a single string.
    pub audience: String,
    /// Seconds from `iat` to `exp`: 1 to [`MAX_TOKEN_LIFETIME_SECS`].
    pub lifetime_secs: u64,
    /// `upstream.iss`: issuer of the token that was exchanged.
    pub upstream_issuer: String,
    /// `upstream.sub`: subject of the token that was exchanged.
    pub upstream_subject: String,
    /// `upstream.trust`: name of the trust relationship that accepted it.
    pub trust: String,
    /// Policy-approved extra claims (for example AWS session tags). They may not reuse a
    /// registered claim name.
    pub extra_claims: Map<String, Value>,
}

/// A signed token and its bookkeeping.
///
/// `Debug` shows `token` as `******`.
#[derive(Debug, Clone)]
pub struct MintedToken {
    /// The compact JWS. Expose it only to write the response body.
    pub token: Secret<String>,
    /// The `jti` claim, a UUID v4, for audit logs.
    pub jti: String,
    /// The `iat` (and `nbf`) claim, unix seconds.
    pub issued_at: i64,
    /// The `exp` claim, unix seconds.
    pub expires_at: i64,
    /// The `kid` of the key that signed it.
    pub kid: String,
}

/// The longest lifetime of a cloud assertion, in seconds (five minutes).
///
/// An assertion is spent within seconds (Legate hands it straight to the cloud's token
/// service), so its lifetime is independent of the credential's: a leaked assertion is
/// worth little for long.
pub const MAX_ASSERTION_LIFETIME_SECS: u64 = 300;

/// The claims every cloud assertion carries; extra claims may not use these names.
const ASSERTION_CLAIMS: [&str; 8] = ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "workload"];

/// The prefix of a cloud assertion's `sub`: `target/<target name>`.
///
/// A `/` cannot occur in a trust name, so this never collides with a `jwt` target's
/// `<trust>:<upstream sub>`.
pub const ASSERTION_SUBJECT_PREFIX: &str = "target/";

/// What to put in a cloud assertion: the short-lived token Legate hands to a cloud's
/// token service (AWS STS, Google STS, Entra) in exchange for cloud credentials.
///
/// The cloud trusts one subject per target; the workload rides along in the `workload`
/// claim for attribution only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssertionRequest<'a> {
    /// The target's name; `sub` is `target/<name>`.
    pub target: &'a str,
    /// `aud`: what the cloud expects (`sts.amazonaws.com`, `https://iam.googleapis.com/…`,
    /// `api://AzureADTokenExchange`).
    pub audience: &'a str,
    /// The `workload` claim: `<trust>:<upstream sub>`, already escaped and bounded.
    pub workload: &'a str,
    /// Seconds from `iat` to `exp`: 1 to [`MAX_ASSERTION_LIFETIME_SECS`].
    pub lifetime_secs: u64,
}

impl Issuer {
    /// Mints a token for `req`, signed with `alg` by that algorithm's signing key, issued
    /// at `now` (unix seconds).
    ///
    /// # Errors
    ///
    /// [`MintError::InvalidLifetime`] for a lifetime of 0 or over a day,
    /// [`MintError::EmptyClaim`] for an empty subject, audience, upstream issuer, upstream
    /// subject or trust, [`MintError::ReservedClaim`] when an extra claim reuses a
    /// registered name, [`MintError::NoKey`] when no key signs with `alg`,
    /// [`MintError::TimeOverflow`], [`MintError::Sign`].
    pub fn mint(
        &self,
        req: &MintRequest,
        alg: SigningAlg,
        now: i64,
    ) -> Result<MintedToken, MintError> {
        let exp = expiry(req.lifetime_secs, MAX_TOKEN_LIFETIME_SECS, now)?;
        for (name, value) in [
            ("subject", &req.subject),
            ("audience", &req.audience),
            ("upstream_issuer", &req.upstream_issuer),
            ("upstream_subject", &req.upstream_subject),
            ("trust", &req.trust),
        ] {
            if value.is_empty() {
                return Err(MintError::EmptyClaim(name));
            }
        }
        if let Some(name) = req
            .extra_claims
            .keys()
            .find(|k| REGISTERED_CLAIMS.contains(&k.as_str()))
        {
            return Err(MintError::ReservedClaim(name.clone()));
        }

        let jti = crate::random_uuid().to_string();
        let mut claims = req.extra_claims.clone();
        let registered = [
            ("iss", json!(self.url())),
            ("sub", json!(req.subject)),
            ("aud", json!(req.audience)),
            ("iat", json!(now)),
            ("nbf", json!(now)),
            ("exp", json!(exp)),
            ("jti", json!(jti)),
            (
                "upstream",
                json!({
                    "iss": req.upstream_issuer,
                    "sub": req.upstream_subject,
                    "trust": req.trust,
                }),
            ),
        ];
        for (name, value) in registered {
            claims.insert(name.to_owned(), value);
        }
        self.sign_claims(&claims, alg, jti, now, exp)
    }

    /// Mints a cloud assertion for `req`, signed with `alg`, issued at `now`.
    ///
    /// Claims: `iss` (this issuer), `sub` = `target/<target>`, `aud`, `iat` = `nbf` =
    /// `now`, `exp`, a fresh `jti` and `workload`. Nothing else: what the cloud grants is
    /// decided by the cloud's trust configuration for this one subject, after Legate's
    /// policy has approved the workload.
    ///
    /// # Errors
    ///
    /// [`MintError::InvalidLifetime`] for a lifetime of 0 or over
    /// [`MAX_ASSERTION_LIFETIME_SECS`], [`MintError::InvalidTarget`] for an empty target
    /// name or one containing `/`, [`MintError::EmptyClaim`] for an empty audience or
    /// workload, [`MintError::NoKey`], [`MintError::TimeOverflow`], [`MintError::Sign`].
    pub fn mint_assertion(
        &self,
        req: &AssertionRequest<'_>,
        alg: SigningAlg,
        now: i64,
    ) -> Result<MintedToken, MintError> {
        self.mint_assertion_with(req, &Map::new(), alg, now)
    }

    /// [`Self::mint_assertion`] plus `extra_claims`: the grant a cloud honours from the
    /// assertion itself (AWS session tags and source identity). They may not reuse a
    /// claim the assertion sets.
    ///
    /// # Errors
    ///
    /// Those of [`Self::mint_assertion`], and [`MintError::ReservedClaim`].
    pub fn mint_assertion_with(
        &self,
        req: &AssertionRequest<'_>,
        extra_claims: &Map<String, Value>,
        alg: SigningAlg,
        now: i64,
    ) -> Result<MintedToken, MintError> {
        if let Some(name) = extra_claims
            .keys()
            .find(|k| ASSERTION_CLAIMS.contains(&k.as_str()))
        {
            return Err(MintError::ReservedClaim(name.clone()));
        }
        let exp = expiry(req.lifetime_secs, MAX_ASSERTION_LIFETIME_SECS, now)?;
        if req.target.is_empty() || req.target.contains('/') {
            return Err(MintError::InvalidTarget(
                legate_core::text::escape_untrusted(req.target),
            ));
        }
        for (name, value) in [("audience", req.audience), ("workload", req.workload)] {
            if value.is_empty() {
                return Err(MintError::EmptyClaim(name));
            }
        }
        let jti = crate::random_uuid().to_string();
        let mut claims = extra_claims.clone();
        for (name, value) in [
            ("iss", json!(self.url())),
            (
                "sub",
                json!(format!("{ASSERTION_SUBJECT_PREFIX}{}", req.target)),
            ),
            ("aud", json!(req.audience)),
            ("iat", json!(now)),
            ("nbf", json!(now)),
            ("exp", json!(exp)),
            ("jti", json!(jti)),
            ("workload", json!(req.workload)),
        ] {
            claims.insert(name.to_owned(), value);
        }
        self.sign_claims(&claims, alg, jti, now, exp)
    }

    /// Signs `claims` as a compact JWS with `alg`'s signing key.
    fn sign_claims(
        &self,
        claims: &Map<String, Value>,
        alg: SigningAlg,
        jti: String,
        now: i64,
        exp: i64,
    ) -> Result<MintedToken, MintError> {
        let key = self.keys().signer(alg).ok_or(MintError::NoKey(alg))?;
        let header = json!({
            "alg": key.alg().as_str(),
            "typ": "JWT",
            "kid": key.kid(),
        });
        let header = serde_json::to_vec(&header).map_err(|_| MintError::Serialize)?;
        let claims = serde_json::to_vec(claims).map_err(|_| MintError::Serialize)?;
        let mut token = format!("{}.{}", b64::encode(header), b64::encode(claims));
        let signature = key.sign(token.as_bytes())?;
        token.push('.');
        token.push_str(&b64::encode(signature));

        Ok(MintedToken {
            token: Secret::new(token),
            jti,
            issued_at: now,
            expires_at: exp,
            kid: key.kid().to_owned(),
        })
    }
}

/// `now + lifetime`, refusing a lifetime of 0 or above `max`.
fn expiry(lifetime_secs: u64, max: u64, now: i64) -> Result<i64, MintError> {
    if lifetime_secs == 0 || lifetime_secs > max {
        return Err(MintError::InvalidLifetime(lifetime_secs));
    }
    let lifetime =
        i64::try_from(lifetime_secs).map_err(|_| MintError::InvalidLifetime(lifetime_secs))?;
    now.checked_add(lifetime).ok_or(MintError::TimeOverflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{EC_JWK, EC_PKCS8, EC_SEC1, RSA_JWK, RSA_PKCS1, RSA_PKCS8};
    use crate::key::{SigningAlg, SigningKey};
    use crate::keyring::KeyRing;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents,
        UnparsedPublicKey,
    };

    const NOW: i64 = 1_767_225_600;
    const ES: SigningAlg = SigningAlg::Es256;
    const ISSUER: &str = "https://legate.example.com";

    fn request() -> MintRequest {
        MintRequest {
            subject: "spiffe://example.org/ns/prod/sa/api".to_owned(),
            audience: "sts.amazonaws.com".to_owned(),
            lifetime_secs: 900,
            upstream_issuer: "https://token.actions.githubusercontent.com".to_owned(),
            upstream_subject: "repo:org/repo:ref:refs/heads/main".to_owned(),
            trust: "github-prod".to_owned(),
            extra_claims: Map::new(),
        }
    }

    fn issuer(key: SigningKey) -> Issuer {
        Issuer::new(ISSUER, KeyRing::new(key)).unwrap()
    }

    fn decode_json(segment: &str) -> Value {
        serde_json::from_slice(&b64::decode(segment).unwrap()).unwrap()
    }

    fn decode_coord(jwk: &Value, name: &str) -> Vec<u8> {
        b64::decode(jwk[name].as_str().unwrap()).unwrap()
    }

    /// Verifies `token` with nothing but the published JWK: rebuilds the public key from
    /// its members, so a wrong JWK fails here. Returns (header, claims).
    fn verify_with_jwk(token: &str, jwk: &Value) -> (Value, Value) {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let input = format!("{}.{}", parts[0], parts[1]);
        let sig = b64::decode(parts[2]).unwrap();
        match jwk["kty"].as_str().unwrap() {
            "EC" => {
                assert_eq!(jwk["crv"], "P-256");
                let mut point = vec![0x04];
                point.extend(decode_coord(jwk, "x"));
                point.extend(decode_coord(jwk, "y"));
                assert_eq!(sig.len(), 64, "ES256 signature must be r||s, not DER");
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
                    .verify(input.as_bytes(), &sig)
                    .expect("ES256 signature verifies with the published JWK");
            }
            "RSA" => {
                let key = RsaPublicKeyComponents {
                    n: decode_coord(jwk, "n"),
                    e: decode_coord(jwk, "e"),
                };
                key.verify(&RSA_PKCS1_2048_8192_SHA256, input.as_bytes(), &sig)
                    .expect("RS256 signature verifies with the published JWK");
            }
            other => panic!("unexpected kty {other}"),
        }
        (decode_json(parts[0]), decode_json(parts[1]))
    }

    fn round_trip(key: SigningKey) {
        let alg = key.alg();
        let issuer = issuer(key);
        let mut req = request();
        req.extra_claims.insert(
            "https://aws.amazon.com/tags".to_owned(),
            json!({"principal_tags": {"team": ["payments"]}}),
        );
        let minted = issuer.mint(&req, alg, NOW).unwrap();
        let jwks = issuer.jwks();
        let jwk = &jwks["keys"][0];
        let (header, claims) = verify_with_jwk(minted.token.expose(), jwk);

        assert_eq!(
            header,
            json!({"alg": alg.as_str(), "typ": "JWT", "kid": minted.kid})
        );
        assert_eq!(jwk["kid"], minted.kid);
        assert_eq!(
            claims,
            json!({
                "iss": ISSUER,
                "sub": "spiffe://example.org/ns/prod/sa/api",
                "aud": "sts.amazonaws.com",
                "iat": NOW,
                "nbf": NOW,
                "exp": NOW + 900,
                "jti": minted.jti,
                "upstream": {
                    "iss": "https://token.actions.githubusercontent.com",
                    "sub": "repo:org/repo:ref:refs/heads/main",
                    "trust": "github-prod",
                },
                "https://aws.amazon.com/tags": {"principal_tags": {"team": ["payments"]}},
            })
        );
        assert_eq!(minted.issued_at, NOW);
        assert_eq!(minted.expires_at, NOW + 900);
        let jti = uuid::Uuid::parse_str(&minted.jti).unwrap();
        assert_eq!(jti.get_version_num(), 4);

        // A tampered token no longer verifies.
        let token = minted.token.expose();
        let (input, sig) = token.rsplit_once('.').unwrap();
        let forged = format!("{}x.{sig}", input);
        let parts: Vec<&str> = forged.split('.').collect();
        let sig = b64::decode(parts[2]).unwrap();
        let msg = format!("{}.{}", parts[0], parts[1]);
        let ok = match alg {
            SigningAlg::Es256 => {
                let mut point = vec![0x04];
                point.extend(decode_coord(jwk, "x"));
                point.extend(decode_coord(jwk, "y"));
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
                    .verify(msg.as_bytes(), &sig)
                    .is_ok()
            }
            SigningAlg::Rs256 => RsaPublicKeyComponents {
                n: decode_coord(jwk, "n"),
                e: decode_coord(jwk, "e"),
            }
            .verify(&RSA_PKCS1_2048_8192_SHA256, msg.as_bytes(), &sig)
            .is_ok(),
        };
        assert!(!ok, "tampered token verified");
    }

    #[test]
    fn round_trip_generated_keys() {
        round_trip(SigningKey::generate(SigningAlg::Es256, None).unwrap());
        round_trip(SigningKey::generate(SigningAlg::Rs256, None).unwrap());
    }

    #[test]
    fn round_trip_pem_keys() {
        for (pem, alg) in [
            (EC_SEC1, SigningAlg::Es256),
            (EC_PKCS8, SigningAlg::Es256),
            (RSA_PKCS1, SigningAlg::Rs256),
            (RSA_PKCS8, SigningAlg::Rs256),
        ] {
            let key = SigningKey::from_pem(pem.as_bytes(), None, Some(alg)).unwrap();
            assert_eq!(key.alg(), alg);
            round_trip(key);
        }
    }

    #[test]
    fn round_trip_jwk_keys() {
        for jwk in [EC_JWK, RSA_JWK] {
            round_trip(SigningKey::from_jwk(jwk.as_bytes(), None).unwrap());
        }
    }

    #[test]
    fn lifetime_must_be_between_one_second_and_one_day() {
        let issuer = issuer(SigningKey::generate(SigningAlg::Es256, None).unwrap());
        for secs in [0, MAX_TOKEN_LIFETIME_SECS + 1, u64::MAX] {
            let req = MintRequest {
                lifetime_secs: secs,
                ..request()
            };
            assert_eq!(
                issuer.mint(&req, ES, NOW).unwrap_err(),
                MintError::InvalidLifetime(secs)
            );
        }
        let req = MintRequest {
            lifetime_secs: MAX_TOKEN_LIFETIME_SECS,
            ..request()
        };
        let minted = issuer.mint(&req, ES, NOW).unwrap();
        assert_eq!(minted.expires_at - minted.issued_at, 86_400);
        assert_eq!(
            issuer.mint(&request(), ES, i64::MAX).unwrap_err(),
            MintError::TimeOverflow
        );
        assert_eq!(
            MintError::InvalidLifetime(0).to_string(),
            "invalid token lifetime 0s: use 1 to 86400 seconds"
        );
    }

    /// Stops grant claims from overriding what the cloud trusts in an assertion
    /// (`sub`, `aud`, `workload`, …); other claims ride along.
    #[test]
    fn assertion_extra_claims_ride_along_but_cannot_override_its_claims() {
        let issuer = issuer(SigningKey::generate(ES, None).unwrap());
        let req = AssertionRequest {
            target: "aws-deploy",
            audience: "sts.amazonaws.com",
            workload: "w",
            lifetime_secs: 60,
        };
        let mut extra = Map::new();
        extra.insert(
            "https://aws.amazon.com/source_identity".into(),
            json!("octo"),
        );
        let minted = issuer.mint_assertion_with(&req, &extra, ES, NOW).unwrap();
        let payload = minted.token.expose().split('.').nth(1).unwrap();
        let claims = decode_json(payload);
        assert_eq!(claims["https://aws.amazon.com/source_identity"], "octo");
        assert_eq!(claims["sub"], "target/aws-deploy");
        for name in ASSERTION_CLAIMS {
            let mut extra = Map::new();
            extra.insert(name.to_owned(), json!("evil"));
            assert!(matches!(
                issuer.mint_assertion_with(&req, &extra, ES, NOW),
                Err(MintError::ReservedClaim(n)) if n == name
            ));
        }
    }

    #[test]
    fn extra_claims_cannot_override_registered_claims() {
        let issuer = issuer(SigningKey::generate(SigningAlg::Es256, None).unwrap());
        for name in ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "upstream"] {
            let mut req = request();
            req.extra_claims.insert(name.to_owned(), json!("evil"));
            assert_eq!(
                issuer.mint(&req, ES, NOW).unwrap_err(),
                MintError::ReservedClaim(name.to_owned())
            );
        }
    }

    #[test]
    fn empty_claim_values_are_refused() {
        let issuer = issuer(SigningKey::generate(SigningAlg::Es256, None).unwrap());
        let req = MintRequest {
            audience: String::new(),
            ..request()
        };
        assert_eq!(
            issuer.mint(&req, ES, NOW).unwrap_err(),
            MintError::EmptyClaim("audience")
        );
    }

    #[test]
    fn rotated_ring_signs_with_the_new_key_and_publishes_both() {
        let old = SigningKey::generate(SigningAlg::Es256, None).unwrap();
        let mut issuer = issuer(old);
        let old_token = issuer.mint(&request(), ES, NOW).unwrap();
        issuer
            .keys_mut()
            .rotate(SigningKey::generate(SigningAlg::Es256, None).unwrap())
            .unwrap();
        let new_token = issuer.mint(&request(), ES, NOW).unwrap();
        assert_eq!(new_token.kid, issuer.keys().active().kid());
        assert_eq!(issuer.keys().retired()[0].kid(), old_token.kid);
        assert_ne!(new_token.kid, old_token.kid);

        let jwks = issuer.jwks();
        for minted in [&old_token, &new_token] {
            let jwk = jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["kid"] == minted.kid)
                .unwrap();
            verify_with_jwk(minted.token.expose(), jwk);
        }
    }

    #[test]
    fn debug_of_minted_token_hides_the_token() {
        let key = SigningKey::generate(SigningAlg::Es256, None).unwrap();
        let minted = issuer(key).mint(&request(), ES, NOW).unwrap();
        let dbg = format!("{minted:?}");
        let token = minted.token.expose();
        assert!(dbg.contains("token: ******"), "{dbg}");
        for part in token.split('.') {
            assert!(!dbg.contains(part), "{dbg}");
        }
        assert!(dbg.contains(&minted.jti));
    }

    fn two_key_issuer() -> Issuer {
        let ring = KeyRing::from_keys(vec![
            SigningKey::generate(SigningAlg::Es256, Some("ec".into())).unwrap(),
            SigningKey::generate(SigningAlg::Rs256, Some("rsa".into())).unwrap(),
        ])
        .unwrap();
        Issuer::new(ISSUER, ring).unwrap()
    }

    fn jwk_of<'a>(jwks: &'a Value, kid: &str) -> &'a Value {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap()
    }

    #[test]
    fn each_algorithm_is_signed_by_its_own_key() {
        let issuer = two_key_issuer();
        let jwks = issuer.jwks();
        for (alg, kid) in [(SigningAlg::Es256, "ec"), (SigningAlg::Rs256, "rsa")] {
            let minted = issuer.mint(&request(), alg, NOW).unwrap();
            assert_eq!(minted.kid, kid);
            let (header, _) = verify_with_jwk(minted.token.expose(), jwk_of(&jwks, kid));
            assert_eq!(header["alg"], alg.as_str());
        }
    }

    /// Stops a target that needs RS256 (Entra) from silently getting an ES256 token.
    #[test]
    fn minting_with_an_algorithm_without_a_key_fails() {
        let issuer = issuer(SigningKey::generate(SigningAlg::Es256, None).unwrap());
        assert_eq!(
            issuer.mint(&request(), SigningAlg::Rs256, NOW).unwrap_err(),
            MintError::NoKey(SigningAlg::Rs256)
        );
        let req = AssertionRequest {
            target: "azure-deploy",
            audience: "api://AzureADTokenExchange",
            workload: "github:repo:org/repo",
            lifetime_secs: 300,
        };
        assert_eq!(
            issuer
                .mint_assertion(&req, SigningAlg::Rs256, NOW)
                .unwrap_err(),
            MintError::NoKey(SigningAlg::Rs256)
        );
    }

    #[test]
    fn a_cloud_assertion_names_the_target_and_carries_the_workload() {
        let issuer = two_key_issuer();
        let req = AssertionRequest {
            target: "aws-deploy",
            audience: "sts.amazonaws.com",
            workload: "github:repo:org/repo:ref:refs/heads/main",
            lifetime_secs: 300,
        };
        let minted = issuer.mint_assertion(&req, SigningAlg::Rs256, NOW).unwrap();
        let (header, claims) =
            verify_with_jwk(minted.token.expose(), jwk_of(&issuer.jwks(), "rsa"));
        assert_eq!(header, json!({"alg": "RS256", "typ": "JWT", "kid": "rsa"}));
        assert_eq!(
            claims,
            json!({
                "iss": ISSUER,
                "sub": "target/aws-deploy",
                "aud": "sts.amazonaws.com",
                "iat": NOW,
                "nbf": NOW,
                "exp": NOW + 300,
                "jti": minted.jti,
                "workload": "github:repo:org/repo:ref:refs/heads/main",
            })
        );
    }

    /// Stops a cloud assertion from outliving five minutes, whatever the credential's
    /// lifetime: a leaked assertion must be worth little.
    #[test]
    fn a_cloud_assertion_lives_at_most_five_minutes() {
        let issuer = two_key_issuer();
        for secs in [0, 301, 3600] {
            let req = AssertionRequest {
                target: "t",
                audience: "a",
                workload: "w",
                lifetime_secs: secs,
            };
            assert_eq!(
                issuer.mint_assertion(&req, ES, NOW).unwrap_err(),
                MintError::InvalidLifetime(secs)
            );
        }
    }

    /// Stops a target name like `../x` or `a/b` from forging another subject shape.
    #[test]
    fn an_assertion_for_an_ambiguous_target_name_is_refused() {
        let issuer = two_key_issuer();
        for target in ["", "a/b"] {
            let req = AssertionRequest {
                target,
                audience: "a",
                workload: "w",
                lifetime_secs: 60,
            };
            assert!(matches!(
                issuer.mint_assertion(&req, ES, NOW).unwrap_err(),
                MintError::InvalidTarget(_)
            ));
        }
        let req = AssertionRequest {
            target: "t",
            audience: "a",
            workload: "",
            lifetime_secs: 60,
        };
        assert_eq!(
            issuer.mint_assertion(&req, ES, NOW).unwrap_err(),
            MintError::EmptyClaim("workload")
        );
    }
}
