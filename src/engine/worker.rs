//! proxdeck's worker: the one process per data dir that runs jobs. A front end that queues a
//! job starts it when none runs ([`ensure_running`]): `proxdeck worker`, in a session of its
//! own with no controlling terminal, its output in `logs/worker.out` and its `tracing` log in
//! `logs/worker.log`. Closing the terminal, a hangup or a lost SSH session does not reach it.
//!
//! The worker holds `worker.lock` (flock) for as long as it lives: that is how everyone knows
//! it runs, and the OS releases it however the worker ends. It claims queued jobs oldest first,
//! at most `jobs.max_parallel` at a time, runs each with its own cancellation (asked through
//! the store: `Store::request_cancel`), records every process group a job starts
//! (`process::ProcessRecord`), writes each outcome, and exits after `jobs.idle_exit_secs`
//! without work, unless a deployment has auto-deploy on: then it stays and polls their
//! repositories (`autodeploy::Poller`), and the front ends start it when it is not running
//! ([`ensure_for_auto_deploy`]). SIGTERM or SIGINT cancel its jobs gracefully before it exits; SIGHUP is
//! ignored.
//!
//! When nobody holds the lock but the store says jobs are running, their worker died (kill -9,
//! a reboot): [`recover`] stops the process groups it left (terraform included) and marks the
//! jobs failed as interrupted; `jobs::recover_interrupted` then marks their deployments FAILED.

use super::process::{PROCESS_RECORD, ProcessRecord};
use super::{DataPaths, Engine, ops};
use crate::config::Config;
use crate::domain::{Job, JobId, JobState, Outcome};
use crate::store::Store;
use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the worker looks for queued jobs and cancel requests.
const POLL: Duration = Duration::from_millis(50);
/// How long leftover processes of a dead worker get between SIGINT and SIGKILL.
const LEFTOVER_GRACE: Duration = Duration::from_secs(15);

/// How a front end starts the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// `EXE [--config CONFIG] --data-dir DIR worker`, detached: what the binary does.
    Process {
        exe: PathBuf,
        config: Option<PathBuf>,
    },
    /// A task on this process's runtime (tests of the library; not detached).
    InProcess,
}

fn lock_path(paths: &DataPaths) -> PathBuf {
    paths.root.join("worker.lock")
}

/// Where a job's process groups are recorded while it runs.
pub fn process_record(paths: &DataPaths, job: JobId) -> ProcessRecord {
    ProcessRecord {
        path: paths.root.join("jobs").join(format!("{}.procs", job.0)),
    }
}

/// The worker's lock, held for its whole life.
pub struct WorkerLock {
    _file: File,
}

impl WorkerLock {
    /// Takes the lock, or `None` when a worker already holds it.
    pub fn try_acquire(paths: &DataPaths) -> std::io::Result<Option<WorkerLock>> {
        std::fs::create_dir_all(&paths.root)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lock_path(paths))?;
        match file.try_lock() {
            Ok(()) => {
                // Who holds it, for people and tests looking at the data dir.
                use std::io::Write;
                let mut f = &file;
                let _ = file.set_len(0);
                let _ = writeln!(f, "{}", std::process::id());
                Ok(Some(WorkerLock { _file: file }))
            }
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}

/// True when a worker runs on this data dir.
pub fn is_running(paths: &DataPaths) -> bool {
    matches!(WorkerLock::try_acquire(paths), Ok(None))
}

/// Starts the worker when a deployment has auto-deploy on and none runs (the CLI and the
/// dashboard call it when they open: after a reboot, the first proxdeck command brings the
/// polling back).
pub fn ensure_for_auto_deploy(engine: &Engine) -> std::io::Result<()> {
    if engine.db.blocking(|s| s.any_auto_deploy()).unwrap_or(false) {
        ensure_running(engine)
    } else {
        Ok(())
    }
}

/// Starts the worker unless one runs.
pub fn ensure_running(engine: &Engine) -> std::io::Result<()> {
    if is_running(&engine.paths) {
        return Ok(());
    }
    match &engine.launch {
        Launch::InProcess => {
            let engine = engine.clone();
            tokio::spawn(async move {
                if let Err(e) = run(engine, None).await {
                    tracing::error!("the worker stopped: {e}");
                }
            });
            Ok(())
        }
        Launch::Process { exe, config } => spawn_detached(exe, config.as_deref(), &engine.paths),
    }
}

fn spawn_detached(exe: &Path, config: Option<&Path>, paths: &DataPaths) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let logs = paths.root.join("logs");
    std::fs::create_dir_all(&logs)?;
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join("worker.out"))?;
    let mut cmd = std::process::Command::new(exe);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.arg("--data-dir")
        .arg(&paths.root)
        .arg("worker")
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn()?;
    // Reap it when it exits, so a long-lived front end (the dashboard) keeps no zombie.
    std::thread::Builder::new()
        .name("worker-reaper".into())
        .spawn(move || {
            let _ = child.wait();
        })?;
    Ok(())
}

/// Marks the jobs of a dead worker interrupted, after stopping the process groups they left.
/// Does nothing while a worker runs. Returns the jobs it ended.
pub fn recover(paths: &DataPaths, store: &mut Store) -> crate::store::Result<Vec<Job>> {
    if is_running(paths) {
        return Ok(Vec::new());
    }
    force_recover(paths, store)
}

struct Running {
    cancel: watch::Sender<bool>,
    handle: JoinHandle<(JobState, Outcome)>,
}

/// The worker's life: take the lock (or return at once when another worker has it), run jobs,
/// exit when idle. `config_path`: the config file to read again for each job (edits apply to
/// the next job); `None` keeps the engine's.
pub async fn run(engine: Engine, config_path: Option<PathBuf>) -> Result<(), String> {
    let paths = engine.paths.clone();
    let Some(mut lock) =
        WorkerLock::try_acquire(&paths).map_err(|e| format!("cannot take the worker lock: {e}"))?
    else {
        return Ok(());
    };
    tracing::info!(
        "worker {} started on {}",
        std::process::id(),
        paths.root.display()
    );
    // A previous worker that died may have left running jobs: ours to clean up now.
    let recovered = engine
        .db
        .call({
            let paths = paths.clone();
            move |s| {
                let jobs = force_recover(&paths, s)?;
                super::jobs::recover_interrupted(&paths, s)?;
                Ok(jobs)
            }
        })
        .await
        .map_err(|e| e.to_string())?;
    for j in recovered {
        tracing::warn!(
            "job {} was interrupted by the death of the worker before",
            j.id
        );
    }
    let mut terminate = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = signal(tokio::signal::unix::SignalKind::interrupt())?;
    let _hangup_ignored = signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut running: HashMap<JobId, Running> = HashMap::new();
    let mut autodeploy = super::autodeploy::Poller::default();
    let mut idle_since = Instant::now();
    let mut stopping = false;
    loop {
        reap(&engine, &mut running).await;
        if !running.is_empty() {
            let flagged = engine
                .db
                .call(|s| s.cancel_requested_jobs())
                .await
                .unwrap_or_default();
            for id in flagged {
                if let Some(r) = running.get(&id) {
                    r.cancel.send_replace(true);
                }
            }
        }
        if !stopping {
            start_jobs(&engine, config_path.as_deref(), &mut running).await;
            autodeploy.tick(&engine);
        }
        if running.is_empty() {
            if stopping {
                break;
            }
            // Deployments with auto-deploy on keep the worker polling.
            if idle_since.elapsed() >= engine.config.jobs.idle_exit && !autodeploy.active() {
                // Let go of the lock first, then look once more: a job queued just now either
                // finds us still here or starts a new worker.
                drop(lock);
                let queued = engine
                    .db
                    .call(|s| Ok(!s.active_jobs()?.is_empty() || s.any_auto_deploy()?))
                    .await
                    .unwrap_or(false);
                if !queued {
                    break;
                }
                match WorkerLock::try_acquire(&paths) {
                    Ok(Some(again)) => lock = again,
                    _ => break, // another worker took over
                }
                idle_since = Instant::now();
            }
        } else {
            idle_since = Instant::now();
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = terminate.recv() => stopping = true,
            _ = interrupt.recv() => stopping = true,
        }
        if stopping {
            for r in running.values() {
                r.cancel.send_replace(true);
            }
        }
    }
    tracing::info!("worker {} exits: no work left", std::process::id());
    Ok(())
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal, String> {
    tokio::signal::unix::signal(kind).map_err(|e| format!("cannot handle signals: {e}"))
}

/// `recover` without the "is a worker running" check: the caller holds the worker lock, or
/// has just found nobody holding it.
fn force_recover(paths: &DataPaths, store: &mut Store) -> crate::store::Result<Vec<Job>> {
    let stale: Vec<Job> = store
        .active_jobs()?
        .into_iter()
        .filter(|j| j.state == JobState::Running)
        .collect();
    if stale.is_empty() {
        return Ok(Vec::new());
    }
    for j in &stale {
        let stopped = process_record(paths, j.id).stop_leftovers(LEFTOVER_GRACE);
        if stopped > 0 {
            tracing::warn!(
                "stopped {stopped} process group(s) left by job {} of a worker that died",
                j.id
            );
        }
    }
    store.interrupt_running_jobs(
        "proxdeck's worker stopped while the job ran (killed, or the machine restarted); what it had started was stopped",
    )
}

/// Claims queued jobs while there is room, and starts each in its own task.
async fn start_jobs(
    engine: &Engine,
    config_path: Option<&Path>,
    running: &mut HashMap<JobId, Running>,
) {
    let queued = engine
        .db
        .call(|s| s.active_jobs())
        .await
        .map(|jobs| jobs.iter().any(|j| j.state == JobState::Queued))
        .unwrap_or(false);
    if !queued {
        return;
    }
    // The config is read again for each batch of jobs: edits apply to the next job.
    let config = match config_path {
        Some(path) => {
            let env: HashMap<String, String> = std::env::vars().collect();
            match Config::load(path, &env) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("the config cannot be read, jobs wait: {e}");
                    (*engine.config).clone()
                }
            }
        }
        None => (*engine.config).clone(),
    };
    let max = config.jobs.max_parallel;
    let job_engine = Engine {
        config: std::sync::Arc::new(config),
        ..engine.clone()
    };
    while running.len() < max {
        let claimed = engine.db.call(move |s| s.claim_next(max)).await;
        let job = match claimed {
            Ok(Some(job)) => job,
            Ok(None) => break,
            Err(e) => {
                tracing::error!("cannot claim a job: {e}");
                break;
            }
        };
        tracing::info!("job {} ({}) starts", job.id, job.kind());
        let (tx, rx) = watch::channel(job.cancel_requested);
        let record = process_record(&engine.paths, job.id);
        if let Some(dir) = record.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let (e, j) = (job_engine.clone(), job.clone());
        let handle = tokio::spawn(
            PROCESS_RECORD.scope(record, async move { ops::execute(&e, &j, rx).await }),
        );
        running.insert(job.id, Running { cancel: tx, handle });
    }
}

/// Writes the outcome of every job that ended.
async fn reap(engine: &Engine, running: &mut HashMap<JobId, Running>) {
    let done: Vec<JobId> = running
        .iter()
        .filter(|(_, r)| r.handle.is_finished())
        .map(|(id, _)| *id)
        .collect();
    for id in done {
        let Some(r) = running.remove(&id) else {
            continue;
        };
        let (state, outcome) = match r.handle.await {
            Ok(ended) => ended,
            Err(e) => (
                JobState::Failed,
                Outcome::failed(
                    format!("the job stopped unexpectedly: {e}"),
                    Some("read proxdeck's log (logs/worker.log in the data dir)".into()),
                    1,
                ),
            ),
        };
        let _ = std::fs::remove_file(process_record(&engine.paths, id).path);
        tracing::info!("job {id} ended {state}: {}", outcome.message);
        let paths = engine.paths.clone();
        let written = engine
            .db
            .call(move |s| {
                let j = s.finish_job(id, state, &outcome)?;
                // A job that crashed may have left its deployment in flight.
                super::jobs::recover_interrupted(&paths, s)?;
                Ok(j)
            })
            .await;
        if let Err(e) = written {
            tracing::error!("cannot record the end of job {id}: {e}");
        }
    }
}
