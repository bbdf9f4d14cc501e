//! The seam between the UI and the engine: `Request` (UI → engine), `EngineEvent`
//! (engine → UI) and the owned snapshots they carry. Nothing here does I/O; both sides
//! depend on this module and on `domain`, never on each other.

pub use crate::domain::OpKind;
use crate::domain::spec::DeployInput;
use crate::domain::{Deployment, DeploymentId, GuestType, Job, JobId, Origin, Stage, Status};
use serde::Serialize;

/// What the UI asks the engine to do. Operations (deploy, destroy, ...) become jobs run by
/// proxdeck's worker: each is answered by [`EngineEvent::OpQueued`] (or an `OpFinished` with
/// the refusal), then one [`EngineEvent::OpFinished`] when the job has ended; reads answer with
/// their own event.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Send a fresh `EngineEvent::Deployments` snapshot (and the statistics) now.
    RefreshDeployments,
    /// The UI is closing: stop background watchers.
    Shutdown,
    /// Does the repository answer and does the ref exist (`git ls-remote`)? Then: which
    /// framework is it? Answered by `RepoChecked`, then `Detected`.
    CheckRepo {
        repo: String,
        git_ref: String,
    },
    /// What a deploy of this input would create. Answered by `Reviewed`.
    Review(Box<DeployInput>),
    Deploy(Box<DeployInput>),
    Retry(DeploymentId),
    /// Fetch the deployment's ref (or this new one), rebuild and restart on the same guest.
    Redeploy {
        id: DeploymentId,
        git_ref: Option<String>,
    },
    Rollback(DeploymentId),
    Destroy(DeploymentId),
    Power {
        id: DeploymentId,
        action: Power,
    },
    /// Drop an imported entry (or one whose guest is gone); the guest is not touched.
    Forget(DeploymentId),
    /// Import the cluster's unknown guests, update known ones.
    Sync,
    /// Ask the deployment's queued or running job to stop. Answered by `Notice` or `Error`.
    Cancel(DeploymentId),
    /// Every node and guest of the cluster. Answered by `Cluster`.
    LoadResources,
    /// Delete the orphan guest with this vmid through the Proxmox API (the engine checks again
    /// that it is one). Answered by `Notice` or `Error`, then a fresh `Cluster`.
    RemoveOrphan(u32),
    /// Answered by `Statistics`.
    LoadStats,
    /// Answered by `Details`.
    LoadDetails(DeploymentId),
    /// The last lines of a deployment's log (`LogPage` of kind `Tail`), then every new line
    /// as it is stored (`Append`), until `CloseLog` or another `OpenLog`.
    OpenLog(DeploymentId),
    /// Another part of the log, for scrolling through a log longer than the UI keeps.
    LoadLog {
        id: DeploymentId,
        window: LogWindow,
    },
    /// The next line (after `from` when `forward`, else before it) containing `query`,
    /// case-insensitively. Answered by `LogMatch`.
    FindInLog {
        id: DeploymentId,
        query: String,
        from: i64,
        forward: bool,
    },
    /// Only the lines containing `query` (case-insensitively) over the whole log: how many, and
    /// the last of them. Answered by `LogFiltered`.
    FilterLog {
        id: DeploymentId,
        query: String,
    },
    CloseLog,
    /// The guest's snapshots (Proxmox) and the deployment's auto-deploy state, for the
    /// details screen. Answered by `Snapshots`.
    LoadSnapshots(DeploymentId),
    /// Roll the guest back to a snapshot (a restore job).
    Restore {
        id: DeploymentId,
        snapshot: String,
    },
    /// Turn auto-deploy on or off. Answered by `Notice` (and a fresh `Snapshots`) or `Error`.
    AutoDeploy {
        id: DeploymentId,
        on: bool,
    },
    /// The app's own log over SSH: the last `lines`, then follow. `AppLog` events, then
    /// `AppLogEnded`.
    StartAppLog {
        id: DeploymentId,
        lines: u32,
    },
    StopAppLog,
    /// Prepare an interactive SSH session into the guest (host key checked against the pin).
    /// Answered by `ShellReady`.
    PrepareShell(DeploymentId),
}

/// Power actions on a deployment's guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    Start,
    Stop,
    Restart,
}

/// Which part of a log to load, by sequence number (`SeqLine::seq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogWindow {
    /// Lines before this sequence number (the newest of them).
    Before(i64),
    /// Lines after this sequence number (the oldest of them).
    After(i64),
    /// Lines on both sides of this one, itself included.
    Around(i64),
}

impl From<Power> for OpKind {
    fn from(p: Power) -> OpKind {
        match p {
            Power::Start => OpKind::Start,
            Power::Stop => OpKind::Stop,
            Power::Restart => OpKind::Restart,
        }
    }
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
    StageStarted {
        id: DeploymentId,
        stage: Stage,
    },
    /// Lines of a deployment's log, in order (one batch per read).
    Log {
        id: DeploymentId,
        lines: Vec<LogLine>,
    },
    /// Something failed that the user should read; the UI shows it, dismissable.
    Error(String),
    /// Totals, success rate, per day, per stage, per framework; sent with every snapshot.
    Statistics(Statistics),
    /// Whether Proxmox answers (checked when serving starts, then now and then).
    Proxmox(ProxmoxState),
    /// What the UI shows of the configuration; sent once when serving starts.
    Settings(Settings),
    /// The answer to `CheckRepo`: a line saying what answered, or why not.
    RepoChecked {
        repo: String,
        git_ref: String,
        result: Result<String, String>,
    },
    /// The framework detected in the repository, after `RepoChecked`.
    Detected {
        repo: String,
        git_ref: String,
        result: Result<Detected, String>,
    },
    /// The answer to `Review`: what would be created, as (label, value) rows.
    Reviewed {
        input: Box<DeployInput>,
        result: Result<Vec<(String, String)>, String>,
    },
    Cluster(Result<ClusterSnapshot, String>),
    Details(Box<DetailsSnapshot>),
    /// A part of a deployment's log. `at_start`/`at_end`: nothing comes before/after it.
    LogPage {
        id: DeploymentId,
        kind: LogPageKind,
        lines: Vec<SeqLine>,
        at_start: bool,
        at_end: bool,
    },
    /// The answer to `FindInLog`: the matching line's sequence number, if any.
    LogMatch {
        id: DeploymentId,
        query: String,
        forward: bool,
        seq: Option<i64>,
    },
    /// The newest deployments, sent before the first `Deployments` when the list is long, so the
    /// table is drawn before every row is read; `total` counts them all. The full list follows.
    DeploymentsHead {
        list: Vec<Deployment>,
        total: u64,
    },
    /// The answer to `FilterLog`: `total` lines of the whole log contain `query`; `lines` are
    /// the last of them (at most `LOG_FILTER_KEEP`); `through` is the last line scanned, so
    /// lines after it are new.
    LogFiltered {
        id: DeploymentId,
        query: String,
        total: u64,
        lines: Vec<SeqLine>,
        through: i64,
    },
    /// Lines of the app's own log.
    AppLog {
        id: DeploymentId,
        stream: LogStream,
        lines: Vec<String>,
    },
    /// The app's log stopped (`error`: why, when it was not asked to).
    AppLogEnded {
        id: DeploymentId,
        error: Option<String>,
    },
    /// An SSH session the UI can run on the terminal.
    ShellReady(ShellCommand),
    /// An operation this UI asked for is queued as a job in the worker.
    OpQueued {
        op: OpKind,
        /// The deployment it is about (id, or for a deploy the requested name or repo).
        target: String,
        job: Box<Job>,
    },
    /// An operation ended: what it did, or why it failed (`job` is `None` when it was refused
    /// before it was queued).
    OpFinished {
        op: OpKind,
        /// The deployment it was about (id, or for a deploy the requested name or repo).
        target: String,
        job: Option<JobId>,
        result: Result<String, String>,
    },
    /// The queued and running jobs (whoever started them), sent whenever they change.
    Jobs(Vec<Job>),
    /// Something the user should know that is not a failure (shown briefly).
    Notice(String),
    /// A deployment's snapshots and auto-deploy state (after `LoadSnapshots`).
    Snapshots(Box<SnapshotsView>),
}

/// What the details screen shows about a deployment's snapshots and auto-deploy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SnapshotsView {
    pub id: DeploymentId,
    /// The guest's snapshots, oldest first, or why they cannot be listed (`None`: the
    /// deployment has no Proxmox guest).
    pub snapshots: Option<Result<Vec<SnapshotItem>, String>>,
    /// Why the guest's storage cannot snapshot, when proxdeck found out.
    pub unavailable: Option<String>,
    pub auto_deploy: bool,
    /// The last auto-deploy failure (message, Unix ms) and how many in a row.
    pub auto_deploy_error: Option<(String, i64)>,
    pub auto_deploy_failures: u32,
}

/// One snapshot in the details screen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SnapshotItem {
    pub name: String,
    /// Unix seconds.
    pub taken: i64,
    pub commit: Option<String>,
}

/// Matching lines a `LogFiltered` answer holds at most: what the log pane keeps of a filter.
pub const LOG_FILTER_KEEP: usize = 5_000;

/// Which part of a log a `LogPage` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogPageKind {
    /// The last lines (after `OpenLog`).
    Tail,
    /// New lines, stored since the last page (following).
    Append,
    /// The answer to a `LoadLog`.
    Window(LogWindow),
}

/// A log line with its sequence number in the store (ordered, not contiguous per deployment).
#[derive(Debug, Clone, PartialEq)]
pub struct SeqLine {
    pub seq: i64,
    pub line: LogLine,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detected {
    pub framework: String,
    /// Why: `requirements.txt has flask`.
    pub reason: String,
}

/// The configuration as far as the UI shows it (no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `proxmox.node` (a node name, or `auto`); `None` when Proxmox is not configured.
    pub default_node: Option<String>,
    /// How new guests get their address: `DHCP` or `static from 10.0.0.0/27`.
    pub network: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxmoxState {
    /// No `[proxmox]` in the config (deploys onto existing hosts still work).
    Unconfigured,
    Connecting,
    Online {
        endpoint: String,
        version: String,
        nodes_online: usize,
        nodes: usize,
    },
    Offline {
        endpoint: String,
        error: String,
    },
}

/// An interactive SSH session into a guest: `program` with `args`, run by the UI with the
/// terminal handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellCommand {
    pub id: DeploymentId,
    pub name: String,
    /// `user@host:port`, for messages.
    pub target: String,
    pub program: String,
    pub args: Vec<String>,
}

/// One node of the cluster. Sizes in bytes, CPU as a fraction of `maxcpu`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeInfo {
    pub name: String,
    pub online: bool,
    pub status: String,
    pub cpu: f64,
    pub maxcpu: u64,
    pub mem: u64,
    pub maxmem: u64,
    pub disk: u64,
    pub maxdisk: u64,
    pub uptime: u64,
}

/// The proxdeck entry a guest belongs to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuestEntry {
    pub id: DeploymentId,
    pub name: String,
    pub origin: Origin,
    pub status: Status,
}

/// One VM or container of the cluster. Sizes in bytes, CPU as a fraction of `maxcpu`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuestInfo {
    pub vmid: u32,
    pub kind: GuestType,
    pub node: String,
    pub name: String,
    pub status: String,
    pub cpu: f64,
    pub maxcpu: u64,
    pub mem: u64,
    pub maxmem: u64,
    pub disk: u64,
    pub maxdisk: u64,
    pub uptime: u64,
    pub template: bool,
    /// Created by proxdeck (not merely imported).
    pub managed: bool,
    /// It carries the id of no live deployment of this proxdeck: the deployment id it
    /// carries (`proxdeck remove-orphan VMID` removes it).
    pub orphan_of: Option<DeploymentId>,
    pub entry: Option<GuestEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterSnapshot {
    pub nodes: Vec<NodeInfo>,
    pub guests: Vec<GuestInfo>,
}

/// One row of a deployment's status history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub status: Status,
    pub stage: Option<Stage>,
    pub at: i64,
    pub message: Option<String>,
}

/// Everything the details screen shows about one deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct DetailsSnapshot {
    pub deployment: Deployment,
    pub history: Vec<HistoryEntry>,
    /// Stage starts in order: (stage, Unix ms).
    pub stages: Vec<(Stage, i64)>,
    /// What the user can do about the last failure.
    pub next_step: Option<String>,
    /// The job queued or running for it, if any.
    pub job: Option<Job>,
}

/// Statistics over the deployments proxdeck made (imported entries are not deployments).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Statistics {
    /// Deployments ever made (deleted ones included).
    pub total: u64,
    /// A guest exists and proxdeck keeps it (PROVISIONING, DEPLOYING, RUNNING, STOPPED).
    pub active: u64,
    /// Work in flight now.
    pub in_flight: u64,
    /// Reached RUNNING at least once.
    pub succeeded: u64,
    /// Failed and never reached RUNNING.
    pub failed: u64,
    /// `succeeded / (succeeded + failed)`, when anything has a verdict.
    pub success_rate: Option<f64>,
    /// Deployments created per day, oldest first, every day of the range present.
    pub per_day: Vec<DayCount>,
    /// Time spent per stage, in pipeline order (stages never run are left out).
    pub stages: Vec<StageTime>,
    /// Per framework, most used first.
    pub frameworks: Vec<FrameworkStats>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayCount {
    /// `YYYY-MM-DD`, in the local time of the reader.
    pub day: String,
    pub deployments: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageTime {
    pub stage: Stage,
    /// How many times the stage ran to an end (success or failure).
    pub runs: u64,
    pub mean_ms: i64,
    pub median_ms: i64,
    pub max_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameworkStats {
    pub framework: String,
    pub deployments: u64,
    pub active: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Mean time from recorded to first RUNNING.
    pub mean_deploy_ms: Option<i64>,
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
