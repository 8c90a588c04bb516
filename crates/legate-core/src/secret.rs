//! A wrapper that keeps secrets out of logs.

use std::fmt;

/// A value that must never be printed: its `Debug` and `Display` print `******`.
///
/// SECURITY: tokens, private keys and credentials travel in `Secret` so that a stray
/// `{:?}` in a log line or an error cannot leak them. Read the value with
/// [`Secret::expose`], at the one place that needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret value.
    pub const fn new(value: T) -> Self {
        Self(value)
    }

    /// Returns the secret value. Call this only where the value leaves the process
    /// on purpose (a response body, a signature input).
    pub const fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("******")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("******")
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_print_the_value() {
        let s = Secret::new("eyJhbGciOiJFUzI1NiJ9.e30.sig".to_owned());
        assert_eq!(format!("{s:?}"), "******");
        assert_eq!(format!("{s}"), "******");
        assert_eq!(s.expose(), "eyJhbGciOiJFUzI1NiJ9.e30.sig");
    }
}
