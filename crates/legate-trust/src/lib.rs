//! legate-trust
