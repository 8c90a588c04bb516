//! Grant shaping: which claims of the verified subject token flow into what Legate mints.
//!
//! A target's [`Shaping`] names them, checked once at config load
//! ([`Shaping::check`]); at request time [`Shaping::shape`] reads them from the verified
//! claims into a [`Grant`]:
//! - `aws` targets: session tags (`session_tags`, `transitive_tag_keys`) and the source
//!   identity (`source_identity`), carried in the assertion as
//!   `https://aws.amazon.com/tags` and `https://aws.amazon.com/source_identity`;
//! - `jwt` targets: `copy_claims`, an allow-list of claims copied as they are into the
//!   minted token.
//!
//! SECURITY: every value comes from the upstream token, so it is attacker-influenced.
//! A value that breaks one of AWS's limits (or a copied claim over its size bound) is
//! refused — the exchange is denied with a precise [`ShapeError`] — never truncated or
//! rewritten: a cut tag value could equal another workload's (tag injection). A claim a
//! target names but the token lacks is refused too: an absent tag would let the role's
//! own tag of that key apply instead.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use legate_core::text::escape_untrusted;
use serde_json::{Map, Value, json};

use crate::TargetKind;

/// The most session tags AWS accepts on one session.
pub const AWS_MAX_SESSION_TAGS: usize = 50;
/// The longest session tag key AWS accepts, in characters.
pub const AWS_MAX_TAG_KEY_CHARS: usize = 128;
/// The longest session tag value AWS accepts, in characters.
pub const AWS_MAX_TAG_VALUE_CHARS: usize = 256;
/// The shortest and longest source identity AWS accepts, in characters.
pub const AWS_SOURCE_IDENTITY_CHARS: std::ops::RangeInclusive<usize> = 2..=64;
/// The claim carrying AWS session tags in a web identity token.
pub const AWS_TAGS_CLAIM: &str = "https://aws.amazon.com/tags";
/// The claim carrying the AWS source identity in a web identity token.
pub const AWS_SOURCE_IDENTITY_CLAIM: &str = "https://aws.amazon.com/source_identity";
/// The most claims a `jwt` target may copy.
pub const MAX_COPY_CLAIMS: usize = 32;
/// The largest copied claim value, in bytes of compact JSON.
pub const MAX_COPIED_CLAIM_BYTES: usize = 4_096;
/// The longest claim name a target may name, in bytes.
pub const MAX_CLAIM_NAME_BYTES: usize = 256;
/// Claims a `jwt` target may never copy: Legate sets them itself (or they mean something
/// Legate vouches for: `act`, `workload`, `upstream`).
pub const UNCOPYABLE_CLAIMS: [&str; 10] = [
    "iss", "sub", "aud", "exp", "iat", "nbf", "jti", "act", "workload", "upstream",
];

/// A target's grant shaping configuration: which verified claims flow where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shaping {
    /// `aws`: session tag key → name of the subject-token claim giving its value.
    pub session_tags: BTreeMap<String, String>,
    /// `aws`: tag keys that stay on the session through role chaining (each a key of
    /// `session_tags`).
    pub transitive_tag_keys: Vec<String>,
    /// `aws`: name of the claim giving the source identity.
    pub source_identity: Option<String>,
    /// `jwt`: claims copied into the minted token.
    pub copy_claims: Vec<String>,
}

/// A shaping configuration that cannot work; `key` names the offending target key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ShapingConfigError {
    /// The target key: `session_tags`, `transitive_tag_keys`, `source_identity` or
    /// `copy_claims`.
    pub key: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Why a request's claims cannot be shaped into its target's grant. The exchange is
/// denied; [`ShapeError::reason_code`] goes to the audit event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// A claim the target names is absent (or JSON `null`).
    #[error("claim `{claim}` that the target shapes its grant from is missing")]
    ClaimMissing {
        /// The claim name.
        claim: String,
    },
    /// A claim feeding a session tag or the source identity is not a string.
    #[error("claim `{claim}` must be a string to become `{key}`")]
    ClaimNotString {
        /// The claim name.
        claim: String,
        /// The tag key, or `source_identity`.
        key: String,
    },
    /// A session tag value breaks AWS's limits (length or characters).
    #[error(
        "claim `{claim}` cannot be session tag `{key}`: a value has at most {AWS_MAX_TAG_VALUE_CHARS} characters of letters, digits, spaces and `_.:/=+-@`"
    )]
    TagValueInvalid {
        /// The claim name.
        claim: String,
        /// The tag key.
        key: String,
    },
    /// The source identity breaks AWS's limits.
    #[error(
        "claim `{claim}` cannot be the source identity: it must be 2 to 64 characters of `A-Za-z0-9_+=,.@-`"
    )]
    SourceIdentityInvalid {
        /// The claim name.
        claim: String,
    },
    /// A copied claim is larger than [`MAX_COPIED_CLAIM_BYTES`].
    #[error(
        "claim `{claim}` is {bytes} bytes, over the {MAX_COPIED_CLAIM_BYTES}-byte bound of a copied claim"
    )]
    ClaimTooLarge {
        /// The claim name.
        claim: String,
        /// Its size as compact JSON.
        bytes: usize,
    },
}

impl ShapeError {
    /// A stable snake_case reason for the audit log.
    pub const fn reason_code(&self) -> &'static str {
        match self {
            ShapeError::ClaimMissing { .. } => "grant_claim_missing",
            ShapeError::ClaimNotString { .. } => "grant_claim_not_string",
            ShapeError::TagValueInvalid { .. } => "grant_tag_value_invalid",
            ShapeError::SourceIdentityInvalid { .. } => "grant_source_identity_invalid",
            ShapeError::ClaimTooLarge { .. } => "grant_claim_too_large",
        }
    }
}

/// Grant parameters that shape a credential beyond the target's configuration: what
/// [`Shaping::shape`] read from the verified claims, and the actor chain.
///
/// Part of the credential cache key, so two different grants never share a credential.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Grant {
    /// AWS session tags, key → value.
    pub session_tags: BTreeMap<String, String>,
    /// AWS transitive tag keys.
    pub transitive_tag_keys: Vec<String>,
    /// AWS source identity.
    pub source_identity: Option<String>,
    /// Claims copied into a `jwt` target's token.
    pub copied_claims: Map<String, Value>,
    /// The `act` claim of a `jwt` target's token (RFC 8693 §4.1), when an actor token
    /// accompanied the exchange.
    pub act: Option<Value>,
}

impl Hash for Grant {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // JSON values have no `Hash`; hashing a subset of the fields keeps `a == b`
        // implying equal hashes, and `Eq` still compares every field.
        self.session_tags.hash(state);
        self.transitive_tag_keys.hash(state);
        self.source_identity.hash(state);
        for key in self.copied_claims.keys() {
            key.hash(state);
        }
        self.act.is_some().hash(state);
    }
}

impl Grant {
    /// Whether the grant adds nothing.
    pub fn is_empty(&self) -> bool {
        self == &Grant::default()
    }

    /// The AWS web identity token claims for the session tags and source identity
    /// (none when the grant has neither).
    pub fn aws_claims(&self) -> Map<String, Value> {
        let mut claims = Map::new();
        if !self.session_tags.is_empty() {
            let principal_tags: Map<String, Value> = self
                .session_tags
                .iter()
                .map(|(k, v)| (k.clone(), json!([v])))
                .collect();
            let mut tags = Map::new();
            tags.insert("principal_tags".to_owned(), Value::Object(principal_tags));
            if !self.transitive_tag_keys.is_empty() {
                tags.insert(
                    "transitive_tag_keys".to_owned(),
                    json!(self.transitive_tag_keys),
                );
            }
            claims.insert(AWS_TAGS_CLAIM.to_owned(), Value::Object(tags));
        }
        if let Some(id) = &self.source_identity {
            claims.insert(AWS_SOURCE_IDENTITY_CLAIM.to_owned(), json!(id));
        }
        claims
    }
}

impl Shaping {
    /// Whether the target shapes nothing.
    pub fn is_empty(&self) -> bool {
        self == &Shaping::default()
    }

    /// Checks the configuration for a target of `kind` against AWS's limits and the
    /// copy rules; the config loader reports the error with its file, line and key.
    ///
    /// # Errors
    ///
    /// [`ShapingConfigError`] naming the key at fault.
    pub fn check(&self, kind: TargetKind) -> Result<(), ShapingConfigError> {
        let fail = |key: &'static str, message: String| Err(ShapingConfigError { key, message });
        if kind != TargetKind::Aws {
            for (key, set) in [
                ("session_tags", !self.session_tags.is_empty()),
                ("transitive_tag_keys", !self.transitive_tag_keys.is_empty()),
                ("source_identity", self.source_identity.is_some()),
            ] {
                if set {
                    return fail(key, format!("applies to `aws` targets only, not `{kind}`"));
                }
            }
        }
        if kind != TargetKind::Jwt && !self.copy_claims.is_empty() {
            return fail(
                "copy_claims",
                format!("applies to `jwt` targets only, not `{kind}`"),
            );
        }
        if self.session_tags.len() > AWS_MAX_SESSION_TAGS {
            return fail(
                "session_tags",
                format!(
                    "{} tags: AWS accepts at most {AWS_MAX_SESSION_TAGS} per session",
                    self.session_tags.len()
                ),
            );
        }
        let mut folded = BTreeSet::new();
        for (key, claim) in &self.session_tags {
            if let Err(why) = check_tag_key(key) {
                return fail("session_tags", format!("tag key `{key}` {why}"));
            }
            // AWS treats session tag keys case-insensitively: `Team` and `team` collide.
            if !folded.insert(key.to_lowercase()) {
                return fail(
                    "session_tags",
                    format!("tag key `{key}` differs from another only in case; AWS refuses both"),
                );
            }
            check_claim_name("session_tags", claim)?;
        }
        let mut seen = BTreeSet::new();
        for key in &self.transitive_tag_keys {
            if !self.session_tags.contains_key(key) {
                return fail(
                    "transitive_tag_keys",
                    format!("`{key}` is not a key of `session_tags`"),
                );
            }
            if !seen.insert(key) {
                return fail("transitive_tag_keys", format!("`{key}` is listed twice"));
            }
        }
        if let Some(claim) = &self.source_identity {
            check_claim_name("source_identity", claim)?;
        }
        if self.copy_claims.len() > MAX_COPY_CLAIMS {
            return fail(
                "copy_claims",
                format!("at most {MAX_COPY_CLAIMS} claims may be copied"),
            );
        }
        let mut seen = BTreeSet::new();
        for claim in &self.copy_claims {
            check_claim_name("copy_claims", claim)?;
            if UNCOPYABLE_CLAIMS.contains(&claim.as_str()) {
                return fail(
                    "copy_claims",
                    format!(
                        "`{claim}` is set by Legate and cannot be copied (never: {})",
                        UNCOPYABLE_CLAIMS.join(", ")
                    ),
                );
            }
            if !seen.insert(claim) {
                return fail("copy_claims", format!("`{claim}` is listed twice"));
            }
        }
        Ok(())
    }

    /// Reads this target's grant from the verified `claims`.
    ///
    /// # Errors
    ///
    /// [`ShapeError`]: a named claim is missing, of the wrong type, or breaks a limit.
    pub fn shape(&self, claims: &Map<String, Value>) -> Result<Grant, ShapeError> {
        let mut grant = Grant::default();
        for (key, claim) in &self.session_tags {
            let value = string_claim(claims, claim, key)?;
            if !is_tag_value(value) {
                return Err(ShapeError::TagValueInvalid {
                    claim: escape_untrusted(claim),
                    key: key.clone(),
                });
            }
            grant.session_tags.insert(key.clone(), value.to_owned());
        }
        grant
            .transitive_tag_keys
            .clone_from(&self.transitive_tag_keys);
        if let Some(claim) = &self.source_identity {
            let value = string_claim(claims, claim, "source_identity")?;
            if !is_source_identity(value) {
                return Err(ShapeError::SourceIdentityInvalid {
                    claim: escape_untrusted(claim),
                });
            }
            grant.source_identity = Some(value.to_owned());
        }
        for claim in &self.copy_claims {
            let value = present(claims, claim)?;
            let bytes = serde_json::to_string(value).map_or(usize::MAX, |s| s.len());
            if bytes > MAX_COPIED_CLAIM_BYTES {
                return Err(ShapeError::ClaimTooLarge {
                    claim: escape_untrusted(claim),
                    bytes,
                });
            }
            grant.copied_claims.insert(claim.clone(), value.clone());
        }
        Ok(grant)
    }
}

fn present<'a>(claims: &'a Map<String, Value>, claim: &str) -> Result<&'a Value, ShapeError> {
    match claims.get(claim) {
        None | Some(Value::Null) => Err(ShapeError::ClaimMissing {
            claim: escape_untrusted(claim),
        }),
        Some(value) => Ok(value),
    }
}

/// Strings only: a number or boolean has no single text form AWS conditions would agree
/// on, so it is refused rather than rendered.
fn string_claim<'a>(
    claims: &'a Map<String, Value>,
    claim: &str,
    key: &str,
) -> Result<&'a str, ShapeError> {
    present(claims, claim)?
        .as_str()
        .ok_or_else(|| ShapeError::ClaimNotString {
            claim: escape_untrusted(claim),
            key: key.to_owned(),
        })
}

fn check_claim_name(key: &'static str, claim: &str) -> Result<(), ShapingConfigError> {
    if claim.is_empty() || claim.len() > MAX_CLAIM_NAME_BYTES {
        return Err(ShapingConfigError {
            key,
            message: format!("a claim name has 1 to {MAX_CLAIM_NAME_BYTES} bytes"),
        });
    }
    Ok(())
}

/// Why `key` cannot be an AWS session tag key (IAM: 1 to 128 characters of
/// `[\p{L}\p{Z}\p{N}_.:/=+\-@]`, and no `aws:` prefix in any case).
fn check_tag_key(key: &str) -> Result<(), String> {
    let chars = key.chars().count();
    if !(1..=AWS_MAX_TAG_KEY_CHARS).contains(&chars) {
        return Err(format!(
            "has {chars} characters: use 1 to {AWS_MAX_TAG_KEY_CHARS}"
        ));
    }
    if !key.chars().all(is_tag_char) {
        return Err(
            "uses a character AWS refuses: use letters, digits, spaces and `_.:/=+-@`".to_owned(),
        );
    }
    if key
        .get(..4)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("aws:"))
    {
        return Err("starts with `aws:`, which AWS reserves".to_owned());
    }
    Ok(())
}

/// An AWS session tag value: at most 256 characters of `[\p{L}\p{Z}\p{N}_.:/=+\-@]`.
pub fn is_tag_value(value: &str) -> bool {
    value.chars().count() <= AWS_MAX_TAG_VALUE_CHARS && value.chars().all(is_tag_char)
}

/// An AWS source identity: 2 to 64 characters of `[\w+=,.@-]` (ASCII `\w`).
pub fn is_source_identity(value: &str) -> bool {
    AWS_SOURCE_IDENTITY_CHARS.contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

/// `\p{L}`, `\p{Z}`, `\p{N}` or one of `_.:/=+-@`. Letters and numbers: Rust's
/// alphanumeric (which also admits combining marks of alphabetic scripts); separators:
/// the space separators, line and paragraph separators of Unicode category Z.
fn is_tag_char(c: char) -> bool {
    (c.is_alphanumeric() && !c.is_control())
        || matches!(
            c,
            ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
                ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
        )
        || "_.:/=+-@".contains(c)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn aws(tags: &[(&str, &str)]) -> Shaping {
        Shaping {
            session_tags: tags
                .iter()
                .map(|(k, c)| ((*k).to_owned(), (*c).to_owned()))
                .collect(),
            ..Shaping::default()
        }
    }

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn config_error(shaping: &Shaping, kind: TargetKind) -> ShapingConfigError {
        shaping.check(kind).unwrap_err()
    }

    #[test]
    fn a_valid_aws_shaping_becomes_the_tags_claims() {
        let shaping = Shaping {
            transitive_tag_keys: vec!["Repo".into()],
            source_identity: Some("actor".into()),
            ..aws(&[("Repo", "repository"), ("Env", "environment")])
        };
        shaping.check(TargetKind::Aws).unwrap();
        let grant = shaping
            .shape(&claims(json!({
                "repository": "acme/app", "environment": "prod", "actor": "octocat"
            })))
            .unwrap();
        assert_eq!(
            Value::Object(grant.aws_claims()),
            json!({
                AWS_TAGS_CLAIM: {
                    "principal_tags": {"Env": ["prod"], "Repo": ["acme/app"]},
                    "transitive_tag_keys": ["Repo"],
                },
                AWS_SOURCE_IDENTITY_CLAIM: "octocat",
            })
        );
        assert!(Grant::default().aws_claims().is_empty());
    }

    /// Stops a 51st tag from reaching AWS, which refuses the whole session.
    #[test]
    fn more_than_fifty_tags_are_refused_at_config() {
        let names: Vec<(String, String)> = (0..=AWS_MAX_SESSION_TAGS)
            .map(|i| (format!("k{i}"), "c".to_owned()))
            .collect();
        let shaping = Shaping {
            session_tags: names.into_iter().collect(),
            ..Shaping::default()
        };
        assert_eq!(config_error(&shaping, TargetKind::Aws).key, "session_tags");
        let fifty = Shaping {
            session_tags: (0..AWS_MAX_SESSION_TAGS)
                .map(|i| (format!("k{i}"), "c".to_owned()))
                .collect(),
            ..Shaping::default()
        };
        fifty.check(TargetKind::Aws).unwrap();
    }

    /// Stops tag keys AWS refuses (too long, bad characters, the reserved `aws:` prefix
    /// in any case, two keys differing only in case) from failing every exchange.
    #[test]
    fn tag_keys_aws_refuses_are_refused_at_config() {
        let long = "k".repeat(AWS_MAX_TAG_KEY_CHARS + 1);
        for key in [
            long.as_str(),
            "",
            "a\"b",
            "tab\tkey",
            "aws:x",
            "AWS:x",
            "Aws:team",
        ] {
            let e = config_error(&aws(&[(key, "c")]), TargetKind::Aws);
            assert_eq!(e.key, "session_tags", "{key}: {e}");
        }
        let e = config_error(&aws(&[("Team", "a"), ("team", "b")]), TargetKind::Aws);
        assert!(e.message.contains("case"), "{e}");
        let max = "é".repeat(AWS_MAX_TAG_KEY_CHARS);
        aws(&[
            (max.as_str(), "c"),
            ("a b:c/d=e+f-g@h_i.j", "c"),
            ("awsx", "c"),
        ])
        .check(TargetKind::Aws)
        .unwrap();
    }

    #[test]
    fn transitive_keys_must_be_session_tag_keys() {
        let shaping = Shaping {
            transitive_tag_keys: vec!["Other".into()],
            ..aws(&[("Repo", "repository")])
        };
        assert_eq!(
            config_error(&shaping, TargetKind::Aws).key,
            "transitive_tag_keys"
        );
    }

    /// Stops a `jwt` target from overwriting the claims Legate vouches for (`sub`,
    /// `aud`, `act`, …) with the upstream token's.
    #[test]
    fn copying_a_registered_claim_is_refused_at_config() {
        for claim in UNCOPYABLE_CLAIMS {
            let shaping = Shaping {
                copy_claims: vec![claim.to_owned()],
                ..Shaping::default()
            };
            let e = config_error(&shaping, TargetKind::Jwt);
            assert_eq!(e.key, "copy_claims", "{claim}");
        }
        let ok = Shaping {
            copy_claims: vec!["repository".into(), "ref".into()],
            ..Shaping::default()
        };
        ok.check(TargetKind::Jwt).unwrap();
    }

    #[test]
    fn keys_of_another_kind_are_refused_at_config() {
        let tags = aws(&[("Repo", "repository")]);
        assert_eq!(config_error(&tags, TargetKind::Jwt).key, "session_tags");
        assert_eq!(config_error(&tags, TargetKind::Gcp).key, "session_tags");
        let copy = Shaping {
            copy_claims: vec!["ref".into()],
            ..Shaping::default()
        };
        assert_eq!(config_error(&copy, TargetKind::Aws).key, "copy_claims");
    }

    /// Stops tag injection by truncation: a value over 256 characters is refused, never
    /// cut (a cut value could equal another workload's tag).
    #[test]
    fn a_tag_value_over_256_characters_is_refused_not_truncated() {
        let shaping = aws(&[("Repo", "repository")]);
        let max = "é".repeat(AWS_MAX_TAG_VALUE_CHARS);
        let grant = shaping.shape(&claims(json!({"repository": max}))).unwrap();
        assert_eq!(grant.session_tags["Repo"], max);
        let over = format!("{max}x");
        let e = shaping
            .shape(&claims(json!({"repository": over})))
            .unwrap_err();
        assert_eq!(e.reason_code(), "grant_tag_value_invalid");
    }

    /// Stops characters AWS refuses in a tag value (quotes, control characters,
    /// punctuation outside its set) from reaching STS.
    #[test]
    fn a_tag_value_with_a_character_aws_refuses_is_refused() {
        let shaping = aws(&[("Repo", "repository")]);
        for bad in ["a\"b", "line\nbreak", "semi;colon", "star*", "tab\t", "<x>"] {
            let e = shaping
                .shape(&claims(json!({"repository": bad})))
                .unwrap_err();
            assert_eq!(e.reason_code(), "grant_tag_value_invalid", "{bad:?}");
        }
        for good in [
            "",
            "acme/app",
            "refs/heads/main",
            "a b:c=d+e-f@g_h.i",
            "日本語",
        ] {
            shaping.shape(&claims(json!({"repository": good}))).unwrap();
        }
    }

    /// Stops a missing or non-string claim from silently dropping a tag (the role's own
    /// tag of that key would apply instead).
    #[test]
    fn a_missing_or_non_string_tag_claim_is_refused() {
        let shaping = aws(&[("Repo", "repository")]);
        for (value, reason) in [
            (json!({}), "grant_claim_missing"),
            (json!({"repository": null}), "grant_claim_missing"),
            (json!({"repository": 42}), "grant_claim_not_string"),
            (json!({"repository": ["a"]}), "grant_claim_not_string"),
        ] {
            let e = shaping.shape(&claims(value)).unwrap_err();
            assert_eq!(e.reason_code(), reason);
        }
    }

    /// Stops a source identity AWS refuses (length, characters, `aws:`) from reaching
    /// STS.
    #[test]
    fn a_source_identity_outside_aws_rules_is_refused() {
        let shaping = Shaping {
            source_identity: Some("actor".into()),
            ..Shaping::default()
        };
        let sixty_four = "a".repeat(64);
        for good in ["ab", "octo-cat_1+=,.@", sixty_four.as_str()] {
            shaping.shape(&claims(json!({"actor": good}))).unwrap();
        }
        let sixty_five = "a".repeat(65);
        for bad in [
            "a",
            sixty_five.as_str(),
            "aws:x",
            "has space",
            "é-accent",
            "a/b",
        ] {
            let e = shaping.shape(&claims(json!({"actor": bad}))).unwrap_err();
            assert_eq!(e.reason_code(), "grant_source_identity_invalid", "{bad}");
        }
    }

    /// Stops a copied claim from inflating every minted token without bound.
    #[test]
    fn a_copied_claim_over_its_size_bound_is_refused() {
        let shaping = Shaping {
            copy_claims: vec!["blob".into(), "ref".into()],
            ..Shaping::default()
        };
        let grant = shaping
            .shape(&claims(
                json!({"blob": {"a": [1, 2]}, "ref": "refs/heads/main"}),
            ))
            .unwrap();
        assert_eq!(grant.copied_claims["blob"], json!({"a": [1, 2]}));
        let big = "x".repeat(MAX_COPIED_CLAIM_BYTES);
        let e = shaping
            .shape(&claims(json!({"blob": big, "ref": "r"})))
            .unwrap_err();
        assert_eq!(e.reason_code(), "grant_claim_too_large");
        let e = shaping.shape(&claims(json!({"blob": 1}))).unwrap_err();
        assert_eq!(e.reason_code(), "grant_claim_missing");
    }
}
