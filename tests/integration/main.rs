//! The one integration-test crate: real parts (SQLite files, terraform, fakepve over HTTPS,
//! OpenSSH, git, sample apps). Harness pieces live in `tests/support/`.

#[path = "../support/mod.rs"]
#[allow(dead_code)]
mod support;

mod e2e;
mod harness;
mod recovery;
mod templates;
mod tui;
