//! Fuzzing entry points, kept in a library so that they build and are checked with the
//! workspace (the cargo-fuzz targets in `fuzz/` are one-line wrappers around them, and
//! `legate-core`'s property tests call them too).
//!
//! Every function here takes arbitrary bytes and must never panic. Each returns
//! `Err(description)` when an invariant that Legate relies on does not hold for that
//! input; the fuzz targets turn that into a crash so that libFuzzer records the input.
//! The invariants checked:
//!
//! - error messages built from attacker-controlled input contain no control characters
//!   (no log-line forging through a `kid`, `alg`, `typ`, duplicate member name…);
//! - a token that parses has the shape [`UnverifiedJwt::parse`] promises (size bound,
//!   three segments, allow-listed `alg`, non-empty `kid`, no forbidden header);
//! - a token that verifies satisfies every rule it was checked against (issuer,
//!   audience, algorithm, `kid`, times, lifetime cap, `jti`);
//! - strict JSON agrees with `serde_json` on every document it accepts, and refuses a
//!   document only for a syntax error `serde_json` also reports, or for a duplicate
//!   member;
//! - a JWKS document fails as a whole exactly when it is not a strict JSON object with
//!   a `keys` array of at most [`MAX_KEYS`] entries.
//!
//! Everything here goes through `legate-core`'s public API.

use std::sync::OnceLock;

use serde_json::{Map, Value};

use legate_core::json;
use legate_core::jwk::{JwksError, KeyLookup, KeySet, MAX_KEYS};
use legate_core::jws::{Alg, MAX_TOKEN_BYTES, UnverifiedJwt};
use legate_core::time::UnixSeconds;
use legate_core::verify::{VerifiedClaims, VerifyRules, verify};

use crate::testkeys::TestKey;

/// The issuer every fuzzed token is checked against.
pub const ISSUER: &str = "https://issuer.fuzz.invalid";

/// The audience every fuzzed token is checked against.
pub const AUDIENCE: &str = "legate";

/// The fixed "current time" of every fuzzed verification.
pub const NOW: UnixSeconds = 1_800_000_000;

/// Public keys (ES256 `es256`, RS256 `rs256`, EdDSA `eddsa`) generated once with
/// [`crate::testkeys`]. The private halves were discarded; tokens they signed are the
/// seeds under `fuzz/seeds/token/`.
pub const JWKS: &str = r#"{"keys":[{"alg":"ES256","crv":"P-256","kid":"es256","kty":"EC","use":"sig","x":"ppYrKdVRg6Pw35QxCkP3jBMdYPaZKVYUzwstLGrEj9U","y":"BSexCdD44UND5cLbVCfxNEfIkiaJuDqidvGw8zS0c1A"},{"alg":"RS256","e":"AQAB","kid":"rs256","kty":"RSA","n":"zE2-9FB-EQLRog2in8PvLFC3TiCPm53Kp77Z2lYZPMBefygWjvhHh4UGXcRaXQs2XUK88MjJlqki9ZA5ajgshXXo-BwHSuwrQciXgg43_9jUGPjOcXTwSWpVK145lemMTKyJGJmbERxKsgIdBYJo1zYz20zXeYj7x8fLpq6iqW0IdML5yaGqEc-8-lpWnzRU49MgCb6LvCTsiU8ci9KpfYkpk-7W70BUxovNb_vrIUHVN0A-fEzL38e60MKO5CpYnevoxJi8hIUEzfiTP8qFMHDFZeHSHmoPHAhikTdcVX8h-fvxCv8ElU6tC7SvRDNbE8ULo5bUB53_KLa5hgSVTQ","use":"sig"},{"alg":"EdDSA","crv":"Ed25519","kid":"eddsa","kty":"OKP","use":"sig","x":"sMyCGMGLF1vHRQ-rcxHcHZZIz6mnctKmuv-OYHF6wZ0"}]}"#;

/// An ES256 token signed by the `es256` key of [`JWKS`], valid at [`NOW`]; verified
/// against fuzzed key sets by [`fuzz_jwks`].
pub const ES256_TOKEN: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImVzMjU2IiwidHlwIjoiSldUIn0.eyJhdWQiOiJsZWdhdGUiLCJleHAiOjE4MDAwMDAyOTAsImlhdCI6MTc5OTk5OTk5MCwiaXNzIjoiaHR0cHM6Ly9pc3N1ZXIuZnV6ei5pbnZhbGlkIiwianRpIjoiajEiLCJuYmYiOjE3OTk5OTk5OTAsInN1YiI6InJlcG86by9yOnJlZjpyZWZzL2hlYWRzL21haW4ifQ.abRVii9jRDkFZ65EAAWU2ubHBnbUQsAg9321UPyHDC9eDHfflOlEBRUyE2_2YNkkc73Gh4CeT_ljzXqGmW3Xqg";

/// The fixed key set built from [`JWKS`] (empty if it ever failed to parse, which a
/// unit test rules out).
pub fn key_set() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        KeySet::from_jwks(JWKS.as_bytes())
            .map(|(set, _)| set)
            .unwrap_or_default()
    })
}

/// The fixed rules: [`ISSUER`], audience [`AUDIENCE`], every algorithm, 60 s leeway,
/// 1 h lifetime cap, `jti` required.
pub fn rules() -> &'static VerifyRules {
    static RULES: OnceLock<VerifyRules> = OnceLock::new();
    RULES.get_or_init(|| VerifyRules::new(ISSUER, vec![AUDIENCE.to_owned()]))
}

/// Parses `data` as a compact JWS and verifies it against [`key_set`] and [`rules`] at
/// [`NOW`]. Bytes that are not UTF-8 are read lossily (the HTTP layer hands Legate a
/// `String`, so only UTF-8 reaches the parser).
pub fn fuzz_token(data: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(data);
    check_token(&text, key_set(), rules())
}

/// Parses `data` as a JWKS document (and as a strict JSON object), then verifies a
/// fixed token against the resulting key set.
pub fn fuzz_jwks(data: &[u8]) -> Result<(), String> {
    check_json(data)?;
    let doc = json::parse_object(data);
    match KeySet::from_jwks(data) {
        Ok((set, warnings)) => {
            let Ok(doc) = doc else {
                return Err("from_jwks accepted a document parse_object refused".into());
            };
            match doc.get("keys") {
                Some(Value::Array(keys)) if keys.len() <= MAX_KEYS => {
                    if set.len() > keys.len() {
                        return Err(format!("{} keys from {} entries", set.len(), keys.len()));
                    }
                }
                _ => return Err("from_jwks accepted a document without a usable `keys`".into()),
            }
            for w in &warnings {
                no_control("key warning", &w.to_string())?;
            }
            // The fuzzed set must never make a key of another set verify: the fixed
            // ES256 token verifies only when the set holds exactly the `es256` key.
            let jwt = UnverifiedJwt::parse(ES256_TOKEN).map_err(|e| e.to_string())?;
            let found = matches!(set.get(jwt.unverified_kid()), KeyLookup::Found(_));
            if let Ok(claims) = verify(jwt, &set, rules(), NOW)
                && (!found || claims.alg() != Alg::Es256)
            {
                return Err("fixed token verified without an es256 key".into());
            }
            Ok(())
        }
        Err(e) => {
            no_control("jwks error", &e.to_string())?;
            match (&e, &doc) {
                (JwksError::Json(_), Err(_)) => Ok(()),
                (JwksError::NoKeysArray, Ok(d))
                    if !matches!(d.get("keys"), Some(Value::Array(_))) =>
                {
                    Ok(())
                }
                (JwksError::TooManyKeys(n), Ok(d)) if *n > MAX_KEYS => match d.get("keys") {
                    Some(Value::Array(keys)) if keys.len() == *n => Ok(()),
                    _ => Err("TooManyKeys with a wrong count".into()),
                },
                _ => Err(format!("from_jwks error {e:?} disagrees with parse_object")),
            }
        }
    }
}

/// Interprets `data` as a claims object, signs it with a real Ed25519 test key and
/// verifies it, so that the claim checks run on inputs whose signature holds.
pub fn fuzz_claims(data: &[u8]) -> Result<(), String> {
    struct Signer {
        key: TestKey,
        keys: KeySet,
    }
    static SIGNER: OnceLock<Option<Signer>> = OnceLock::new();
    let Some(signer) = SIGNER.get_or_init(|| {
        let key = TestKey::eddsa("claims");
        let jwks = serde_json::json!({ "keys": [key.public_jwk()] });
        let (keys, _) = KeySet::from_jwks(&serde_json::to_vec(&jwks).ok()?).ok()?;
        // The set must hold the key: one that was left out would make every
        // verification fail for the wrong reason.
        matches!(keys.get(&key.kid), KeyLookup::Found(_)).then_some(Signer { key, keys })
    }) else {
        return Err("the Ed25519 test key could not be built".into());
    };
    let Ok(claims) = json::parse_object(data) else {
        return Ok(());
    };
    let token = signer.key.token(&Value::Object(claims.clone()));
    let parsed = match UnverifiedJwt::parse(&token) {
        Ok(p) => p,
        Err(e) => {
            no_control("parse error", &e.to_string())?;
            let expected = token.len() > MAX_TOKEN_BYTES
                || !matches!(claims.get("iss"), Some(Value::String(_)));
            return if expected {
                Ok(())
            } else {
                Err(format!("a well-formed signed token was refused: {e}"))
            };
        }
    };
    match verify(parsed, &signer.keys, rules(), NOW) {
        Ok(v) => check_verified(&v, &claims, rules(), NOW),
        Err(e) => {
            no_control("verify error", &e.to_string())?;
            if e.reason_code() == "bad_signature" {
                return Err("a genuine signature did not verify".into());
            }
            Ok(())
        }
    }
}

fn check_token(text: &str, keys: &KeySet, rules: &VerifyRules) -> Result<(), String> {
    let jwt = match UnverifiedJwt::parse(text) {
        Ok(jwt) => jwt,
        Err(e) => {
            no_control("parse error", &e.to_string())?;
            if e.reason_code().is_empty() {
                return Err("empty reason code".into());
            }
            return Ok(());
        }
    };
    if text.len() > MAX_TOKEN_BYTES {
        return Err("an oversized token parsed".into());
    }
    if text.matches('.').count() != 2 {
        return Err("a token without exactly three segments parsed".into());
    }
    if !text.as_bytes().starts_with(jwt.signing_input()) || jwt.signing_input().is_empty() {
        return Err("signing input is not a prefix of the token".into());
    }
    if jwt.unverified_kid().is_empty() {
        return Err("a token with an empty kid parsed".into());
    }
    for name in ["jku", "x5u", "jwk", "x5c", "crit"] {
        if jwt.unverified_header().contains_key(name) {
            return Err(format!("a token with `{name}` parsed"));
        }
    }
    no_control("debug", &format!("{jwt:?}"))?;
    let claims = jwt.unverified_claims().clone();
    match verify(jwt, keys, rules, NOW) {
        Ok(v) => check_verified(&v, &claims, rules, NOW),
        Err(e) => no_control("verify error", &e.to_string()),
    }
}

/// What holding [`VerifiedClaims`] must mean.
fn check_verified(
    v: &VerifiedClaims,
    claims: &Map<String, Value>,
    rules: &VerifyRules,
    now: UnixSeconds,
) -> Result<(), String> {
    let leeway = i64::try_from(rules.leeway_secs).unwrap_or(i64::MAX);
    let int = |name: &str| claims.get(name).and_then(Value::as_i64);
    let mut problems = Vec::new();
    if v.issuer() != rules.issuer {
        problems.push("issuer");
    }
    if !rules.audiences.iter().any(|a| a == v.audience()) {
        problems.push("audience");
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(s)) => s == v.audience(),
        Some(Value::Array(items)) => {
            items.iter().all(Value::is_string) && items.iter().any(|i| i == v.audience())
        }
        _ => false,
    };
    if !aud_ok {
        problems.push("aud claim");
    }
    if !rules.algorithms.contains(&v.alg()) {
        problems.push("algorithm");
    }
    if v.subject().is_empty() || claims.get("sub").and_then(Value::as_str) != Some(v.subject()) {
        problems.push("sub");
    }
    if rules.require_jti && v.jti().is_none_or(str::is_empty) {
        problems.push("jti");
    }
    if int("exp") != Some(v.expires_at()) || now >= v.expires_at().saturating_add(leeway) {
        problems.push("exp");
    }
    if let Some(nbf) = claims.get("nbf")
        && nbf
            .as_i64()
            .is_none_or(|nbf| nbf > now.saturating_add(leeway))
    {
        problems.push("nbf");
    }
    if let Some(iat) = claims.get("iat")
        && iat
            .as_i64()
            .is_none_or(|iat| iat > now.saturating_add(leeway))
    {
        problems.push("iat");
    }
    let lifetime = v.expires_at().saturating_sub(v.issued_at().unwrap_or(now));
    if u64::try_from(lifetime).unwrap_or(0) > rules.max_lifetime_secs {
        problems.push("lifetime");
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("verified claims break: {}", problems.join(", ")))
    }
}

/// Strict JSON against `serde_json`.
fn check_json(data: &[u8]) -> Result<(), String> {
    let strict = json::parse_value(data);
    let lax = serde_json::from_slice::<Value>(data);
    match (&strict, &lax) {
        (Ok(s), Ok(l)) if s == l => Ok(()),
        (Ok(_), Ok(_)) => Err("strict and serde_json values differ".into()),
        (Ok(_), Err(e)) => Err(format!("strict accepted what serde_json refused: {e}")),
        (Err(json::JsonError::DuplicateMember(name)), _) => no_control("duplicate member", name),
        (Err(json::JsonError::Syntax(_)), Err(_)) => Ok(()),
        (Err(e), Ok(_)) => Err(format!("strict refused what serde_json accepted: {e}")),
        (Err(json::JsonError::NotAnObject), Err(_)) => {
            Err("parse_value reported NotAnObject".into())
        }
    }
}

fn no_control(what: &str, s: &str) -> Result<(), String> {
    match s.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!("{what} contains control character {c:?}: {s:?}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_key_set_holds_all_three_keys() {
        let keys = key_set();
        assert_eq!(keys.len(), 3);
        for (kid, alg) in [
            ("es256", Alg::Es256),
            ("rs256", Alg::Rs256),
            ("eddsa", Alg::EdDsa),
        ] {
            let KeyLookup::Found(k) = keys.get(kid) else {
                panic!("{kid} missing")
            };
            assert_eq!(k.alg(), alg);
        }
    }

    #[test]
    fn the_fixed_token_verifies_and_passes_the_invariants() {
        let jwt = UnverifiedJwt::parse(ES256_TOKEN).unwrap();
        assert!(verify(jwt, key_set(), rules(), NOW).is_ok());
        fuzz_token(ES256_TOKEN.as_bytes()).unwrap();
        fuzz_jwks(JWKS.as_bytes()).unwrap();
    }

    #[test]
    fn garbage_is_refused_without_a_violation() {
        for input in [
            &b""[..],
            b"a.b.c",
            b"\xff\xfe.\x00.",
            b"{\"keys\":[1,{},{\"kid\":\"\\u001b[31m\"}]}",
            b"{\"keys\":[],\"keys\":[]}",
            b"[]",
        ] {
            fuzz_token(input).unwrap();
            fuzz_jwks(input).unwrap();
        }
    }

    #[test]
    fn signed_claims_pass_the_invariants() {
        let claims = format!(
            r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","sub":"s","jti":"j","exp":{}}}"#,
            NOW + 100
        );
        fuzz_claims(claims.as_bytes()).unwrap();
        fuzz_claims(b"{\"iss\":1}").unwrap();
        fuzz_claims(b"not json").unwrap();
    }
}
