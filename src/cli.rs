//! CLI (placeholder while the CLI lands).
