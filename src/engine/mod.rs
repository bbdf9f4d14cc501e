//! The engine (placeholder while the engine lands).
