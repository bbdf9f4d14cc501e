//! The seam between the UI and the engine: `Request` (UI → engine), `EngineEvent`
//! (engine → UI) and the owned snapshots they carry. Nothing here does I/O; both sides
//! depend on this module and on `domain`, never on each other.

use crate::domain::{Deployment, DeploymentId, Stage, Status};

/// What the UI asks the engine to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Send a fresh `EngineEvent::Deployments` snapshot now.
    RefreshDeployments,
    /// The UI is closing: stop background watchers.
    Shutdown,
}

/// What the engine tells its clients (the TUI, or the CLI printing progress).
#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    /// A full, owned snapshot of the deployments (newest first), sent whenever the store changed.
    Deployments(Vec<Deployment>),
    /// A deployment moved to a new status.
    StatusChanged {
        id: DeploymentId,
        status: Status,
        stage: Option<Stage>,
    },
    /// A stage began.
    StageStarted { id: DeploymentId, stage: Stage },
    /// Lines of a deployment's log, in order (one batch per read).
    Log {
        id: DeploymentId,
        lines: Vec<LogLine>,
    },
    /// Something failed that the user should read; the UI shows it, dismissable.
    Error(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStream {
    /// A process's standard output.
    Stdout,
    /// A process's standard error.
    Stderr,
    /// proxdeck's own narration (stage markers, results).
    Info,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "out",
            LogStream::Stderr => "err",
            LogStream::Info => "info",
        }
    }

    pub fn parse(s: &str) -> LogStream {
        match s {
            "out" => LogStream::Stdout,
            "err" => LogStream::Stderr,
            _ => LogStream::Info,
        }
    }
}

/// One line of a deployment's log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Unix milliseconds.
    pub at: i64,
    pub stream: LogStream,
    pub stage: Option<Stage>,
    pub text: String,
}
