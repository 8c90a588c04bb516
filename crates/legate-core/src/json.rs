//! Strict JSON for security decisions.
//!
//! `serde_json` keeps the last of two members with the same name. Two parsers that
//! disagree on which duplicate wins let an attacker show one value to a checker and
//! another to a consumer (the "JSON interoperability" class of bugs; RFC 7515 §4 and
//! RFC 7519 §4 say a JWT with duplicate header or claim names MUST be rejected or the
//! last one used — Legate rejects). Everything Legate decides on is parsed here.
//!
//! Nesting depth is bounded by `serde_json`'s recursion limit (128), so deeply nested
//! input fails fast instead of exhausting the stack.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a JSON document was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JsonError {
    /// Not valid JSON (syntax, invalid UTF-8, lone surrogate, trailing data, too deep…).
    #[error("invalid json: {0}")]
    Syntax(String),
    /// A member name appears twice in one object.
    #[error("duplicate member `{0}`")]
    DuplicateMember(String),
    /// Valid JSON, but not an object.
    #[error("json value is not an object")]
    NotAnObject,
}

/// Parses bytes into a JSON object, refusing duplicate member names at any depth.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    match parse_value(bytes)? {
        Value::Object(map) => Ok(map),
        _ => Err(JsonError::NotAnObject),
    }
}

/// Parses bytes into a JSON value, refusing duplicate member names at any depth.
pub fn parse_value(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue::deserialize(&mut de).map_err(classify)?;
    de.end().map_err(classify)?;
    Ok(value.0)
}

fn classify(e: serde_json::Error) -> JsonError {
    let msg = e.to_string();
    match msg.strip_prefix(DUPLICATE_PREFIX) {
        Some(rest) => {
            let name = rest.split(" at line").next().unwrap_or(rest);
            JsonError::DuplicateMember(crate::text::escape_untrusted(name))
        }
        None => JsonError::Syntax(msg),
    }
}

const DUPLICATE_PREFIX: &str = "duplicate member ";

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let StrictValue(value) = access.next_value()?;
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!("{DUPLICATE_PREFIX}{key}")));
            }
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_member_is_rejected_in_either_order() {
        for doc in [
            br#"{"alg":"RS256","alg":"none"}"#.as_slice(),
            br#"{"alg":"none","alg":"RS256"}"#.as_slice(),
        ] {
            assert_eq!(
                parse_object(doc),
                Err(JsonError::DuplicateMember("alg".into()))
            );
        }
    }

    #[test]
    fn nested_duplicate_member_is_rejected() {
        let doc = br#"{"a":{"b":1,"b":2}}"#;
        assert!(matches!(
            parse_object(doc),
            Err(JsonError::DuplicateMember(_))
        ));
    }

    #[test]
    fn deep_nesting_fails_without_stack_overflow() {
        let depth = 5000;
        let doc = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(matches!(
            parse_value(doc.as_bytes()),
            Err(JsonError::Syntax(_))
        ));
    }

    #[test]
    fn lone_surrogate_escape_is_rejected() {
        assert!(matches!(
            parse_object(br#"{"sub":"\ud800"}"#),
            Err(JsonError::Syntax(_))
        ));
    }

    #[test]
    fn byte_order_mark_and_trailing_garbage_are_rejected() {
        assert!(parse_object(b"\xef\xbb\xbf{}").is_err());
        assert!(parse_object(b"{} x").is_err());
        assert!(parse_object(b"{}{}").is_err());
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        assert!(parse_object(b"{\"sub\":\"\xff\"}").is_err());
    }

    #[test]
    fn non_object_is_rejected() {
        assert_eq!(parse_object(b"[1]"), Err(JsonError::NotAnObject));
        assert_eq!(parse_object(b"\"x\""), Err(JsonError::NotAnObject));
    }

    #[test]
    fn integers_stay_integers() {
        let m = parse_object(br#"{"exp":1700000000,"f":1.5,"big":1e20}"#).unwrap();
        assert!(m["exp"].is_i64());
        assert!(m["f"].is_f64());
        assert!(m["big"].is_f64());
    }
}
