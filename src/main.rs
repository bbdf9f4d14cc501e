//! proxdeck's entry point: parse the command line, start the tokio runtime and the engine,
//! then run either one command or the TUI.

use clap::Parser;
use proxdeck::cli::{self, Cli};
use proxdeck::protocol::{EngineEvent, Request};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    if cli.command.is_none() {
        return run_tui(&cli, &runtime);
    }
    // The worker has no terminal: it logs to a file of its own (`cli::run`).
    if !matches!(cli.command, Some(cli::Command::Worker)) {
        init_logging_to_stderr();
    }
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code as u8)
        }
    }
}

fn init_logging_to_stderr() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PROXDECK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The TUI on this thread, the engine on the runtime; they meet only through channels.
fn run_tui(cli: &Cli, runtime: &tokio::runtime::Runtime) -> ExitCode {
    // The terminal belongs to the dashboard: proxdeck's own messages go to a file.
    proxdeck::engine::logfile::init(&cli::data_dir(cli).join("logs").join("tui.log"));
    let engine = match cli::open_engine(cli) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {}", e.message);
            return ExitCode::from(e.code as u8);
        }
    };
    let (req_tx, req_rx) = tokio::sync::mpsc::unbounded_channel::<Request>();
    let (ev_tx, ev_rx) = std::sync::mpsc::channel::<EngineEvent>();
    let serving = runtime.spawn(async move { engine.serve(req_rx, ev_tx).await });
    let result = proxdeck::tui::run(req_tx, ev_rx);
    serving.abort();
    match result {
        Ok(farewell) => {
            if let Some(text) = farewell {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
