//! legate-issuer
