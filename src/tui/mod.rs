//! The terminal UI (ratatui + crossterm). Draws `EngineEvent`s, sends `Request`s; owns no I/O
//! beyond the terminal itself.

use crate::protocol::{EngineEvent, Request};
use std::sync::mpsc;

/// Runs the TUI until the user quits. `requests` goes to the engine; `events` comes from it.
pub fn run(
    _requests: tokio::sync::mpsc::UnboundedSender<Request>,
    _events: mpsc::Receiver<EngineEvent>,
) -> anyhow::Result<()> {
    anyhow::bail!("the TUI is being built")
}
