//! SQLite store (placeholder while the store lands).
