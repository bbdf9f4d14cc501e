//! Configuration (placeholder while config lands).
