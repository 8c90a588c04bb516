//! Rendering attacker-controlled strings for logs and errors.

/// The longest attacker-controlled string we ever echo into a log line or error.
pub const MAX_ECHO_CHARS: usize = 64;

/// Escapes and truncates an untrusted string so that it is safe to put in a log line:
/// control characters (CR, LF, ESC…), quotes and non-ASCII are escaped, and the result is
/// cut to [`MAX_ECHO_CHARS`] characters of input, with `…` marking a cut.
///
/// SECURITY: a `kid` such as `"x\r\n{\"decision\":\"allow\"}"` must not forge an audit line.
pub fn escape_untrusted(input: &str) -> String {
    escape_untrusted_within(input, MAX_ECHO_CHARS)
}

/// [`escape_untrusted`] with another bound: at most `max_chars` characters of input.
/// For verified values that identify someone (a subject), pass a bound no smaller than
/// the value can be (the token size cap), so two values never log alike.
pub fn escape_untrusted_within(input: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(input.len().min(max_chars) + 8);
    let mut chars = input.chars();
    for c in chars.by_ref().take(max_chars) {
        if (c.is_ascii_graphic() && c != '\\' && c != '"') || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    if chars.next().is_some() {
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
    }

    /// Stops audit confusion: two subjects that share their first 64 characters used to
    /// log identically.
    #[test]
    fn long_subjects_stay_distinct_within_the_token_bound() {
        let prefix = "repo:acme/".to_owned() + &"x".repeat(100);
        let a = escape_untrusted_within(&(prefix.clone() + ":ref:refs/heads/main"), 20_000);
        let b = escape_untrusted_within(&(prefix + ":ref:refs/heads/evil"), 20_000);
        assert_ne!(a, b);
        assert!(!a.ends_with('…'));
    }

    #[test]
    fn non_ascii_and_escape_sequences_are_escaped() {
        assert_eq!(escape_untrusted("é\u{1b}[31m"), r"\u{e9}\u{1b}[31m");
    }
}
