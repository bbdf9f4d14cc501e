//! proxdeck: a private Platform-as-a-Service for Proxmox VE, in the terminal.
//!
//! Module map (see `ARCHITECTURE.md` for threads, channels and the deployment lifecycle):
//! - [`cli`]: the command line (clap), one subcommand per operation, `--json` output.
//! - [`config`]: `config.toml` + environment overrides, validated into a typed `Config`.
//! - [`protocol`]: the seam between UI and engine: `Request`, `EngineEvent`.
//! - [`domain`]: deployments, status graph, spec validation, framework catalog (pure).
//! - [`store`]: SQLite: migrations, deployments, status history, log lines, host keys.
//! - [`engine`]: all I/O: terraform, SSH, HTTP, the deployment pipeline. No ratatui.
//! - [`tui`]: the terminal UI: draws engine events, sends requests. No I/O crates.

pub mod cli;
pub mod config;
pub mod domain;
pub mod engine;
pub mod protocol;
pub mod store;
pub mod tui;
