//! The terminal UI (ratatui + crossterm): draws what the engine reports, sends `Request`s; owns
//! no I/O beyond the terminal itself. Must not import tokio::process, rusqlite, ssh2 or reqwest.
//!
//! Threads and channels (all terminal plumbing lives in this module):
//! - the UI thread (the caller of [`run`]) owns the terminal and the [`App`]; it reads one
//!   inbox, a `std::sync::mpsc` channel of [`UiEvent`]s, so terminal input and engine events
//!   arrive in one order;
//! - `tui-input` polls crossterm and forwards terminal events into the inbox; it stops when told
//!   (a flag checked between short polls), and `run` joins it before restoring the terminal;
//! - `tui-engine` forwards `EngineEvent`s into the inbox and reports when the engine hangs up. It
//!   is not joined: it blocks on the engine's channel and ends when the engine drops it.
//!
//! After an event, the loop drains everything already queued, then draws once if the state is
//! dirty, at most once per [`FRAME`]. Ticks (ages in the table move) come from the inbox timeout,
//! not from a thread. `ratatui::try_init` installs the panic hook that restores the terminal;
//! `run` restores it on every other way out and always sends `Request::Shutdown`.

pub mod app;
pub mod keys;
pub mod screens;
pub mod theme;
pub mod widgets;

pub use app::App;

use crate::protocol::{EngineEvent, Request};
use anyhow::Context;
use ratatui::DefaultTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use theme::Theme;

/// Shortest time between two draws: bursts of engine events (log batches, status changes) cost
/// one frame, not one per event.
const FRAME: Duration = Duration::from_millis(16);
/// How often the clock moves the ages in the table.
const TICK: Duration = Duration::from_secs(1);
/// How long the input thread waits for a key before checking whether it should stop; bounds
/// the delay between quitting and the terminal being restored.
const INPUT_POLL: Duration = Duration::from_millis(50);

/// The UI loop's inbox: everything that can change what is on screen.
#[derive(Debug)]
pub enum UiEvent {
    /// A key, a resize, ... from the terminal.
    Input(crossterm::event::Event),
    /// Something the engine reported.
    Engine(EngineEvent),
    /// The engine dropped its end of the event channel.
    EngineClosed,
    /// Time passed.
    Tick,
}

/// What only the loop handles: the input thread cannot read the terminal any more.
enum Inbox {
    Ui(UiEvent),
    InputFailed(std::io::Error),
}

/// Runs the TUI until the user quits. `requests` goes to the engine; `events` comes from it.
pub fn run(
    requests: tokio::sync::mpsc::UnboundedSender<Request>,
    events: mpsc::Receiver<EngineEvent>,
) -> anyhow::Result<()> {
    let theme = Theme::from_env();
    let (tx, inbox) = mpsc::channel();
    let result = spawn_engine_forwarder(events, tx.clone())
        .context("could not start the UI's engine-event thread")
        .and_then(|_detached| with_terminal(tx, &inbox, &requests, App::new(theme)));
    // Best effort: the engine may already be gone, which is what Shutdown asks for anyway.
    let _ = requests.send(Request::Shutdown);
    result
}

/// Sets up the terminal, runs the loop, and restores the terminal whatever happened.
fn with_terminal(
    tx: Sender<Inbox>,
    inbox: &Receiver<Inbox>,
    requests: &tokio::sync::mpsc::UnboundedSender<Request>,
    mut app: App,
) -> anyhow::Result<()> {
    let mut terminal = match ratatui::try_init() {
        Ok(terminal) => terminal,
        Err(err) => {
            ratatui::restore();
            return Err(err).context("could not set up the terminal (is this an interactive one?)");
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let result = spawn_input_reader(tx, Arc::clone(&stop))
        .context("could not start the UI's input thread")
        .and_then(|input| {
            let result = event_loop(&mut terminal, inbox, requests, &mut app);
            stop.store(true, Ordering::Relaxed);
            // A panic in the input thread has already been reported by the panic hook.
            let _ = input.join();
            result
        });
    ratatui::restore();
    result
}

fn event_loop(
    terminal: &mut DefaultTerminal,
    inbox: &Receiver<Inbox>,
    requests: &tokio::sync::mpsc::UnboundedSender<Request>,
    app: &mut App,
) -> anyhow::Result<()> {
    let mut next_tick = Instant::now() + TICK;
    let mut last_draw: Option<Instant> = None;
    loop {
        for request in app.take_requests() {
            if requests.send(request).is_err() {
                app.on_ui_event(UiEvent::EngineClosed);
                break;
            }
        }
        if app.should_quit() {
            return Ok(());
        }

        let now = Instant::now();
        let next_frame = last_draw.map_or(now, |at| at + FRAME);
        if app.is_dirty() && now >= next_frame {
            terminal
                .draw(|frame| app.render(frame, unix_millis()))
                .context("could not draw the screen")?;
            last_draw = Some(now);
        }

        let wake = if app.is_dirty() {
            next_frame.max(now).min(next_tick)
        } else {
            next_tick
        };
        match inbox.recv_timeout(wake.saturating_duration_since(Instant::now())) {
            Ok(first) => {
                handle(app, first)?;
                // Everything already queued goes into the same frame.
                while let Ok(more) = inbox.try_recv() {
                    handle(app, more)?;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            // Both senders are gone: no input thread, no engine. Nothing can happen any more.
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
        if Instant::now() >= next_tick {
            app.on_ui_event(UiEvent::Tick);
            next_tick = Instant::now() + TICK;
        }
    }
}

fn handle(app: &mut App, event: Inbox) -> anyhow::Result<()> {
    match event {
        Inbox::Ui(event) => {
            app.on_ui_event(event);
            Ok(())
        }
        Inbox::InputFailed(err) => Err(err).context("could not read from the terminal"),
    }
}

fn spawn_engine_forwarder(
    events: Receiver<EngineEvent>,
    tx: Sender<Inbox>,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("tui-engine".into())
        .spawn(move || {
            for event in events {
                if tx.send(Inbox::Ui(UiEvent::Engine(event))).is_err() {
                    return; // the UI is gone
                }
            }
            let _ = tx.send(Inbox::Ui(UiEvent::EngineClosed));
        })
}

fn spawn_input_reader(tx: Sender<Inbox>, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    use crossterm::event;
    thread::Builder::new()
        .name("tui-input".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let next = match event::poll(INPUT_POLL) {
                    Ok(false) => continue,
                    Ok(true) => event::read().map(|e| Inbox::Ui(UiEvent::Input(e))),
                    Err(err) => Err(err),
                };
                let failed = next.is_err();
                let message = next.unwrap_or_else(Inbox::InputFailed);
                if tx.send(message).is_err() || failed {
                    return;
                }
            }
        })
}

fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
