//! legate-policy
