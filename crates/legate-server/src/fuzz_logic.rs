//! Fuzzing entry point for the configuration loader, kept in the library so that it
//! builds and is checked with the crate (`fuzz/fuzz_targets/config.rs` wraps it).
//!
//! [`fuzz_config`] must never panic. It returns `Err(description)` when the loader
//! breaks a promise of its own: an error that points at a line or column outside the
//! text it was given. Not part of the public API.

use std::path::Path;

use crate::config;

/// Runs [`config::load_str`] on `data` when it is UTF-8 (the loader reads files with
/// `read_to_string`, so nothing else reaches it). Paths resolve against a folder that
/// does not exist; the loader reads no file, so nothing on disk is touched.
pub fn fuzz_config(data: &[u8]) -> Result<(), String> {
    let Ok(src) = std::str::from_utf8(data) else {
        return Ok(());
    };
    match config::load_str(src, "<fuzz>", Path::new("/nonexistent/legate-fuzz")) {
        Ok(cfg) => {
            // The checked config must be printable (it is in `config check` output).
            let _ = format!("{cfg:?}");
            Ok(())
        }
        Err(e) => {
            let lines = src.split('\n').count();
            if let Some(line) = e.line
                && (line == 0 || line > lines)
            {
                return Err(format!("error line {line} outside 1..={lines}: {e}"));
            }
            if e.column == Some(0) || (e.column.is_some() && e.line.is_none()) {
                return Err(format!("error column without a valid line: {e}"));
            }
            let _ = e.to_string();
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_development_config_and_garbage_pass() {
        fuzz_config(crate::DEV_CONFIG.as_bytes()).unwrap();
        for input in [
            &b""[..],
            b"version = 2",
            b"[server\n",
            b"\xff",
            b"version = 1\n[[trust]]\n",
        ] {
            fuzz_config(input).unwrap();
        }
    }
}
