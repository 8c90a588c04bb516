//! legate-sts
