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
//! dirty, at most once per [`FRAME`]. Ticks (ages in the table move, spinners turn) come from the
//! inbox timeout, not from a thread: every [`TICK`], or every [`FAST_TICK`] while something
//! animates. `ratatui::try_init` installs the panic hook that restores the terminal (wrapped here
//! to release the mouse too); `run` restores it on every other way out and always sends
//! `Request::Shutdown`.
//!
//! Terminal hand-overs (an interactive SSH session with `s`, Ctrl-Z) pause the input thread
//! first, so it does not steal the keys meant for `ssh` or the shell, restore the terminal, run
//! or stop, then take the terminal back and redraw everything.

pub mod app;
pub mod keys;
pub mod screens;
pub mod theme;
pub mod widgets;

pub use app::App;

use crate::protocol::{EngineEvent, Request, ShellCommand};
use anyhow::Context;
use app::Effect;
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
/// How often spinners turn while something is in flight.
const FAST_TICK: Duration = Duration::from_millis(250);
/// How long until the next tick: spinners turn faster than ages change.
pub fn tick_interval(animating: bool) -> Duration {
    if animating { FAST_TICK } else { TICK }
}

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
/// Returns what to tell the user once the terminal is restored: the jobs that go on in the
/// worker (quitting never stops them).
pub fn run(
    requests: tokio::sync::mpsc::UnboundedSender<Request>,
    events: mpsc::Receiver<EngineEvent>,
) -> anyhow::Result<Option<String>> {
    let theme = Theme::from_env();
    let offset = chrono::Local::now().offset().local_minus_utc();
    let app = App::new(theme).with_utc_offset(offset);
    let (tx, inbox) = mpsc::channel();
    let result = spawn_engine_forwarder(events, tx.clone())
        .context("could not start the UI's engine-event thread")
        .and_then(|_detached| with_terminal(tx, &inbox, &requests, app));
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
) -> anyhow::Result<Option<String>> {
    let mut terminal = match ratatui::try_init() {
        Ok(terminal) => terminal,
        Err(err) => {
            ratatui::restore();
            return Err(err).context("could not set up the terminal (is this an interactive one?)");
        }
    };
    release_mouse_on_panic();
    capture_mouse(true);
    let input = InputControl::default();
    let result = spawn_input_reader(tx, input.clone())
        .context("could not start the UI's input thread")
        .and_then(|reader| {
            let result = event_loop(&mut terminal, inbox, requests, &mut app, &input);
            input.stop.store(true, Ordering::Relaxed);
            // A panic in the input thread has already been reported by the panic hook.
            let _ = reader.join();
            result
        });
    capture_mouse(false);
    ratatui::restore();
    result.map(|()| app.farewell())
}

fn event_loop(
    terminal: &mut DefaultTerminal,
    inbox: &Receiver<Inbox>,
    requests: &tokio::sync::mpsc::UnboundedSender<Request>,
    app: &mut App,
    input: &InputControl,
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
        for effect in app.take_effects() {
            match effect {
                Effect::Shell(cmd) => {
                    let result = hand_over(terminal, input, || run_shell(&cmd));
                    app.shell_finished(&cmd, result);
                }
                Effect::Suspend => {
                    hand_over(terminal, input, suspend);
                    app.redraw();
                }
            }
            last_draw = None;
        }
        if app.should_quit() {
            return Ok(());
        }

        let now = Instant::now();
        let next_frame = last_draw.map_or(now, |at| at + FRAME);
        if app.is_dirty() && now >= next_frame {
            // One frame, one update: terminals that know synchronized output (and tmux) show it
            // whole, without tearing over slow links; others ignore the markers.
            let _ = crossterm::execute!(
                std::io::stdout(),
                crossterm::terminal::BeginSynchronizedUpdate
            );
            let drawn = terminal.draw(|frame| app.render(frame, unix_millis()));
            let _ = crossterm::execute!(
                std::io::stdout(),
                crossterm::terminal::EndSynchronizedUpdate
            );
            drawn.context("could not draw the screen")?;
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
            next_tick = Instant::now() + tick_interval(app.animating());
        }
    }
}

/// Gives the terminal to `work` (an SSH session, a suspended process) and takes it back: the
/// input thread is paused so it reads no key meant for someone else, the screen is restored
/// to the shell's, and afterwards raw mode, the alternate screen and the mouse come back and
/// everything is drawn again.
fn hand_over<T>(
    terminal: &mut DefaultTerminal,
    input: &InputControl,
    work: impl FnOnce() -> T,
) -> T {
    input.pause();
    capture_mouse(false);
    ratatui::restore();
    let result = work();
    let _ = crossterm::terminal::enable_raw_mode();
    let _ = crossterm::execute!(std::io::stdout(), crossterm::terminal::EnterAlternateScreen);
    capture_mouse(true);
    let _ = terminal.clear();
    input.resume();
    result
}

/// Runs the SSH session on this terminal until it ends; its exit status.
fn run_shell(cmd: &ShellCommand) -> Result<i32, String> {
    println!(
        "proxdeck: ssh to {} ({}); exit the shell to return.",
        cmd.name, cmd.target
    );
    std::process::Command::new(&cmd.program)
        .args(&cmd.args)
        .status()
        .map(|s| s.code().unwrap_or(-1))
        .map_err(|e| format!("{}: {e}", cmd.program))
}

/// Stops this process (as the shell's Ctrl-Z would) until it is continued.
fn suspend() {
    // SIGTSTP stops the process group's foreground job; `fg` continues it right here.
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGTSTP);
}

fn capture_mouse(on: bool) {
    use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
    let _ = if on {
        crossterm::execute!(std::io::stdout(), EnableMouseCapture)
    } else {
        crossterm::execute!(std::io::stdout(), DisableMouseCapture)
    };
}

/// ratatui's panic hook restores the screen; the mouse must be released before it.
fn release_mouse_on_panic() {
    let restore = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        capture_mouse(false);
        restore(info);
    }));
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

/// Tells the input thread to stop, or to leave the terminal alone for a while.
#[derive(Clone, Default)]
struct InputControl {
    stop: Arc<AtomicBool>,
    /// Asked to pause.
    pause: Arc<AtomicBool>,
    /// The thread has seen `pause` and is not reading.
    idle: Arc<AtomicBool>,
}

impl InputControl {
    /// Returns once the input thread no longer reads the terminal (bounded: a poll lasts at
    /// most `INPUT_POLL`).
    fn pause(&self) {
        self.pause.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + INPUT_POLL * 10;
        while !self.idle.load(Ordering::SeqCst) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn resume(&self) {
        self.idle.store(false, Ordering::SeqCst);
        self.pause.store(false, Ordering::SeqCst);
    }
}

fn spawn_input_reader(tx: Sender<Inbox>, control: InputControl) -> std::io::Result<JoinHandle<()>> {
    use crossterm::event;
    thread::Builder::new()
        .name("tui-input".into())
        .spawn(move || {
            while !control.stop.load(Ordering::Relaxed) {
                if control.pause.load(Ordering::SeqCst) {
                    control.idle.store(true, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
                control.idle.store(false, Ordering::SeqCst);
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
