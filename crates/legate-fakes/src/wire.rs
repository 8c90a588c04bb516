//! Small helpers the fakes share: the system clock, random identifiers, time formats,
//! XML escaping and form parsing.

use std::fmt::Write as _;

use base64::Engine as _;
use legate_core::{Clock, UnixSeconds};

/// The wall clock, the default [`Clock`] of every fake.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[expect(
        clippy::disallowed_methods,
        reason = "the fakes stand in for remote services, which read their own wall clock; \
                  tests that drive Legate with a manual clock pass that clock instead"
    )]
    fn now(&self) -> UnixSeconds {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
}

/// `n` random bytes. aws-lc-rs's generator only fails when the operating system's
/// entropy source is broken; the fakes then fall back to a UUID v4 (itself random), so
/// that no code path panics.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        for (i, b) in bytes.iter_mut().enumerate() {
            let id = uuid::Uuid::new_v4();
            *b = id.as_bytes().get(i % 16).copied().unwrap_or_default();
        }
    }
    bytes
}

/// base64url (no padding) of `N` random bytes.
pub(crate) fn random_b64<const N: usize>() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<N>())
}

/// `len` random characters from `alphabet` (which must not be empty).
pub(crate) fn random_from(alphabet: &[u8], len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut pool = Vec::new();
    while out.len() < len {
        if pool.is_empty() {
            pool.extend_from_slice(&random_bytes::<32>());
        }
        let Some(b) = pool.pop() else { break };
        let Some(c) = alphabet.get(usize::from(b) % alphabet.len().max(1)) else {
            break;
        };
        out.push(char::from(*c));
    }
    out
}

/// A random request id in the UUID form the clouds use.
pub(crate) fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Calendar date and time of `t` (UTC): (year, month, day, hour, minute, second).
fn civil(t: UnixSeconds) -> (i64, u32, u32, u32, u32, u32) {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Howard Hinnant's `civil_from_days`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    let part = |v: i64| u32::try_from(v).unwrap_or_default();
    (
        y,
        part(m),
        part(d),
        part(secs / 3600),
        part(secs % 3600 / 60),
        part(secs % 60),
    )
}

/// `2026-01-15T08:30:00Z` (RFC 3339, UTC, whole seconds): AWS `Expiration`, Google
/// `expireTime`.
pub(crate) fn rfc3339(t: UnixSeconds) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `2022-10-27 23:39:22Z`: the `timestamp` of an Entra error.
pub(crate) fn entra_timestamp(t: UnixSeconds) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}Z")
}

/// Escapes text for an XML element body.
pub(crate) fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if u32::from(c) < 0x20 && c != '\n' && c != '\t' && c != '\r' => {
                let _ = write!(out, "&#x{:x};", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// An `application/x-www-form-urlencoded` body. The first occurrence of a name wins
/// (what the fakes read); every pair stays in the recorded request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub(crate) fn parse(body: &[u8]) -> Form {
        Form(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`, if present.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_768_465_800), "2026-01-15T08:30:00Z");
        assert_eq!(entra_timestamp(1_666_913_962), "2022-10-27 23:39:22Z");
    }

    #[test]
    fn xml_escape_neutralises_markup() {
        assert_eq!(
            xml_escape("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;"
        );
    }

    #[test]
    fn random_from_uses_only_the_alphabet() {
        let s = random_from(b"AB", 100);
        assert_eq!(s.len(), 100);
        assert!(s.chars().all(|c| c == 'A' || c == 'B'));
    }
}
