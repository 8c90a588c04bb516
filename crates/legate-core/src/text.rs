//! Rendering attacker-controlled strings for logs and errors.
//!
//! One escaping for the whole workspace: printable ASCII (space included) is kept, except
//! `\` and `"`; every other character, control and non-ASCII alike, becomes its Rust
//! escape (`\n`, `\"`, `\u{1b}`, `\u{e9}`). The escaping is injective (a `\` in the output
//! always starts an escape), so two different inputs never render alike unless one is
//! cut; a cut is marked with `…`, the only non-ASCII character the output can hold.

/// The longest attacker-controlled string we ever echo into a log line or error.
pub const MAX_ECHO_CHARS: usize = 64;

/// Escapes and truncates an untrusted string so that it is safe to put in a log line:
/// control characters (CR, LF, ESC…), quotes and non-ASCII are escaped, and the result is
/// cut to [`MAX_ECHO_CHARS`] characters of input, with `…` marking a cut.
///
/// SECURITY: a `kid` such as `"x\r\n{\"decision\":\"allow\"}"` must not forge an audit line.
pub fn escape_untrusted(input: &str) -> String {
    let end = input
        .char_indices()
        .nth(MAX_ECHO_CHARS)
        .map_or(input.len(), |(i, _)| i);
    escape_prefix(input, end)
}

/// Escapes an untrusted string like [`escape_untrusted`], keeping at most `max_bytes`
/// bytes of input instead of [`MAX_ECHO_CHARS`] characters.
///
/// The input is cut at the last character boundary at or before `max_bytes` (a character
/// is never split) and the cut is marked with `…`; an input of at most `max_bytes` bytes
/// is never cut, so two such inputs never render alike. The output is at most
/// `10 * max_bytes + 3` bytes (an escape is at most ten bytes per input byte, plus the
/// three bytes of `…`).
///
/// For verified values that identify someone (a subject), pass a bound no smaller than
/// the value can be (the token size cap,
/// [`MAX_TOKEN_BYTES`](crate::jws::MAX_TOKEN_BYTES)), so that distinct values are always
/// logged distinctly.
pub fn escape_untrusted_within(input: &str, max_bytes: usize) -> String {
    escape_prefix(input, input.floor_char_boundary(max_bytes))
}

/// Escapes `input[..end]` (`end` a character boundary), then `…` if that left anything out.
fn escape_prefix(input: &str, end: usize) -> String {
    let (kept, cut) = match input.split_at_checked(end) {
        Some((kept, rest)) => (kept, !rest.is_empty()),
        None => (input, false),
    };
    let mut out = String::with_capacity(kept.len() + 8);
    for c in kept.chars() {
        if (c.is_ascii_graphic() && c != '\\' && c != '"') || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    if cut {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_injection_in_a_kid_cannot_forge_a_log_line() {
        let s = escape_untrusted("k\r\n{\"decision\":\"allow\"}");
        assert!(!s.contains('\n') && !s.contains('\r'));
        assert_eq!(s, r#"k\r\n{\"decision\":\"allow\"}"#);
    }

    #[test]
    fn long_strings_are_truncated() {
        let s = escape_untrusted(&"a".repeat(4096));
        assert_eq!(s.chars().count(), MAX_ECHO_CHARS + 1);
        assert!(s.ends_with('…'));
        // The bound counts characters, not bytes.
        let s = escape_untrusted(&"é".repeat(MAX_ECHO_CHARS));
        assert_eq!(s, r"\u{e9}".repeat(MAX_ECHO_CHARS));
    }

    #[test]
    fn non_ascii_and_escape_sequences_are_escaped() {
        assert_eq!(escape_untrusted("é\u{1b}[31m"), r"\u{e9}\u{1b}[31m");
    }

    /// Stops audit confusion: two subjects that share their first 64 characters would log
    /// alike under [`escape_untrusted`]; within the token bound they never do.
    #[test]
    fn long_subjects_stay_distinct_within_the_token_bound() {
        let bound = crate::jws::MAX_TOKEN_BYTES;
        let prefix = "repo:acme/".to_owned() + &"x".repeat(100);
        let main = escape_untrusted_within(&(prefix.clone() + ":ref:refs/heads/main"), bound);
        let evil = escape_untrusted_within(&(prefix.clone() + ":ref:refs/heads/evil"), bound);
        assert_ne!(main, evil);
        assert!(!main.ends_with('…'));
        assert_eq!(main, prefix + ":ref:refs/heads/main");
    }

    /// Stops log-line forging through a long verified value: the bounded form escapes
    /// exactly as the short one does.
    #[test]
    fn the_bounded_form_escapes_like_the_short_one() {
        let forged = "s\r\n{\"decision\":\"allow\"}\u{1b}[2Ké";
        assert_eq!(
            escape_untrusted_within(forged, 1000),
            escape_untrusted(forged)
        );
    }

    #[test]
    fn the_bound_counts_input_bytes_and_never_splits_a_character() {
        assert_eq!(escape_untrusted_within("abc", 3), "abc");
        assert_eq!(escape_untrusted_within("abcd", 3), "abc…");
        // `é` is two bytes: a bound of 3 keeps one, a bound of 1 keeps none.
        assert_eq!(escape_untrusted_within("éé", 3), r"\u{e9}…");
        assert_eq!(escape_untrusted_within("éé", 4), r"\u{e9}\u{e9}");
        assert_eq!(escape_untrusted_within("é", 1), "…");
        assert_eq!(escape_untrusted_within("x", 0), "…");
        assert_eq!(escape_untrusted_within("", 0), "");
    }
}
