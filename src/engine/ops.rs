//! The operations service: the one way both front ends (the CLI and the TUI) have work done.
//! A front end [`submit`]s an operation: it is checked (input validated, the deployment found,
//! the rules of `domain::policy`), recorded as a queued job in the store, and proxdeck's worker
//! is started if none runs. The worker [`execute`]s each job with the one job preamble (the
//! deployment's lock, a fresh read, the rules again, the audit log, a reporter) and leaves a
//! typed [`Outcome`]. [`cancel`] asks a job to stop from anywhere; [`follow`] streams a job's
//! log lines from the store until it ends.
//!
//! Owns nothing of how a stage works (that is `pipeline`, `power`, `sync`); must not print or
//! draw: the front ends word outcomes with `domain::present`.

use super::Engine;
use super::jobs::JobLock;
use super::pipeline::{self, DeployError, DeployOptions};
use super::power::{self, PowerError, PowerOp};
use super::report::Reporter;
use super::{caddy, snapshots, sync};
use crate::domain::spec::DeployInput;
use crate::domain::{
    Catalog, Deployment, DeploymentId, Job, JobId, JobState, Op, OpKind, Outcome, policy, present,
};
use crate::protocol::{LogLine, LogStream};
use crate::store::StoreError;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// What a front end asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum OpRequest {
    /// A new deployment: validated and recorded as PENDING now, run by the worker.
    Deploy {
        input: Box<DeployInput>,
        options: DeployOptions,
    },
    /// An operation on an existing deployment (id or name). Boxed: an `Op` carries the
    /// changes of a retry or redeploy.
    On { op: Box<Op>, target: String },
    /// Sync the cluster's guests.
    Sync,
}

impl OpRequest {
    pub fn kind(&self) -> OpKind {
        match self {
            OpRequest::Deploy { .. } => OpKind::Deploy,
            OpRequest::On { op, .. } => op.kind(),
            OpRequest::Sync => OpKind::Sync,
        }
    }
}

/// Why an operation was not queued (or could not be cancelled).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// Bad input or config: the user fixes what it names (exit code 2).
    #[error("{0}")]
    Invalid(String),
    /// No such deployment or job (exit code 2).
    #[error("{0}")]
    NotFound(String),
    /// The rules refuse it now, or another job holds the deployment (exit code 1).
    #[error("{0}")]
    Refused(String),
    /// Something failed while queueing (exit code 1).
    #[error("{0}")]
    Failed(String),
}

impl OpError {
    /// The exit code a CLI ends with.
    pub fn code(&self) -> i32 {
        match self {
            OpError::Invalid(_) | OpError::NotFound(_) => 2,
            OpError::Refused(_) | OpError::Failed(_) => 1,
        }
    }
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> OpError {
        match e {
            StoreError::NotFound(_) | StoreError::Ambiguous(_) | StoreError::NoJob(_) => {
                OpError::NotFound(e.to_string())
            }
            StoreError::JobActive(_) | StoreError::NameTaken(_) => OpError::Refused(e.to_string()),
            other => OpError::Failed(other.to_string()),
        }
    }
}

impl From<DeployError> for OpError {
    fn from(e: DeployError) -> OpError {
        match e {
            DeployError::Invalid(_) | DeployError::Config(_) => OpError::Invalid(e.to_string()),
            DeployError::Store(s) => s.into(),
            DeployError::Refused(m) => OpError::Refused(m),
            other => OpError::Failed(other.to_string()),
        }
    }
}

/// A queued job, and the deployment it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub job: Job,
    pub deployment: Option<Deployment>,
}

/// Who asks, as jobs and the audit log record it: `user@host via cli`.
pub fn requester(front_end: &str) -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "someone".into());
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host} via {front_end}")
}

/// Checks and queues an operation, then makes sure a worker runs it.
pub async fn submit(engine: &Engine, request: OpRequest, via: &str) -> Result<Submitted, OpError> {
    let (op, deployment) = match request {
        OpRequest::Deploy { input, options } => {
            // Bad input is named before anything else is looked at.
            input
                .validate(Catalog::builtin())
                .map_err(|e| OpError::Invalid(e.to_string()))?;
            let auto_deploy = options.auto_deploy;
            let d = pipeline::record_new(engine, *input, options).await?;
            if auto_deploy {
                let id = d.id.clone();
                engine
                    .db
                    .call(move |s| s.set_auto_deploy(&id, true))
                    .await?;
            }
            (Op::Deploy, Some(d))
        }
        OpRequest::On { op, target } => {
            let op = *op;
            if op.kind().has_target() {
                let d = engine.db.call(move |s| s.find(&target)).await?;
                policy::check_op(&op, &d).map_err(|r| OpError::Refused(r.0))?;
                // A Git token set in this front end's environment is the one the job uses
                // (a renewed token reaches the worker this way, never through argv).
                super::gitauth::refresh_token(&engine.paths, &d.id, d.overrides.git_auth.as_ref());
                if let Op::Redeploy {
                    git_ref: Some(r), ..
                } = &op
                {
                    crate::domain::spec::validate_ref(r.trim())
                        .map_err(|m| OpError::Invalid(format!("ref: {m}")))?;
                }
                if let Op::Retry { changes } | Op::Redeploy { changes, .. } = &op {
                    crate::domain::spec::validate_overrides(changes)
                        .map_err(|e| OpError::Invalid(e.to_string()))?;
                }
                match &op {
                    Op::Snapshot { name: Some(n) } => {
                        super::snapshots::validate_name(n.trim())
                            .map_err(|m| OpError::Invalid(format!("snapshot name: {m}")))?;
                    }
                    Op::Restore { snapshot } => {
                        super::snapshots::validate_name(snapshot.trim())
                            .map_err(|m| OpError::Invalid(format!("snapshot: {m}")))?;
                    }
                    Op::Domains { change, name } => {
                        let name = crate::domain::domains::normalize_domain(name)
                            .map_err(|m| OpError::Invalid(format!("domain: {m}")))?;
                        crate::domain::domains::apply_change(&d.overrides.domains, *change, &name)
                            .map_err(|m| OpError::Invalid(format!("{}: {m}", present::who(&d))))?;
                    }
                    _ => {}
                }
                if matches!(op, Op::Snapshot { .. } | Op::Restore { .. }) {
                    engine
                        .config
                        .proxmox()
                        .map_err(|e| OpError::Invalid(e.to_string()))?;
                }
                (op, Some(d))
            } else {
                (op, None)
            }
        }
        OpRequest::Sync => {
            engine
                .config
                .proxmox()
                .map_err(|e| OpError::Invalid(e.to_string()))?;
            (Op::Sync, None)
        }
    };
    let who = requester(via);
    let key = deployment.as_ref().map(|d| d.id.clone());
    let op2 = op.clone();
    let job = engine
        .db
        .call(move |s| s.enqueue(&op2, key.as_ref(), &who))
        .await?;
    super::worker::ensure_running(engine).map_err(|e| {
        OpError::Failed(format!(
            "job {} is queued, but proxdeck's worker could not be started: {e}",
            job.id
        ))
    })?;
    Ok(Submitted { job, deployment })
}

/// Asks the active job of a deployment (by id or name), or a job by number (`#12` or `12`),
/// to stop. A queued job ends at once; a running one stops gracefully (terraform saves its
/// state, the provisioning run is stopped) and ends cancelled.
pub async fn cancel(engine: &Engine, target: &str, via: &str) -> Result<Job, OpError> {
    let who = requester(via);
    let target = target.trim().to_string();
    let job = engine
        .db
        .call(move |s| {
            let number = target.strip_prefix('#').unwrap_or(&target);
            let id = match number.parse::<i64>() {
                Ok(n) if s.find(&target).is_err() => JobId(n),
                _ => {
                    let d = s.find(&target)?;
                    match s.active_job_for(&d.id)? {
                        Some(j) => j.id,
                        None => {
                            return Err(StoreError::NoJob(format!(
                                "{} has no queued or running job to cancel",
                                present::who(&d)
                            )));
                        }
                    }
                }
            };
            s.request_cancel(id, &who)
        })
        .await?;
    Ok(job)
}

/// Runs one job to its end (in the worker) and returns how it ended. `cancel` turns true when
/// somebody asked the job to stop.
pub async fn execute(
    engine: &Engine,
    job: &Job,
    cancel: watch::Receiver<bool>,
) -> (JobState, Outcome) {
    let kind = job.kind();
    let result = match (&job.op, &job.deployment) {
        (Op::Sync, _) => run_sync(engine).await,
        (_, Some(id)) => run_on(engine, job, id, cancel.clone()).await,
        (op, None) => Err(Outcome::failed(
            format!("{} job {} names no deployment", op.kind(), job.id),
            None,
            1,
        )),
    };
    let cancelled = *cancel.borrow();
    match result {
        Ok(outcome) => (JobState::Succeeded, outcome),
        Err(mut outcome) if cancelled => {
            outcome.message = format!("cancelled by the user: {}", outcome.message);
            if let Some(id) = &job.deployment
                && !matches!(kind, OpKind::Destroy | OpKind::Forget | OpKind::Sync)
            {
                outcome.next = Some(format!("`proxdeck retry {id}` continues from there"));
            }
            (JobState::Cancelled, outcome)
        }
        Err(outcome) => (JobState::Failed, outcome),
    }
}

async fn run_sync(engine: &Engine) -> Result<Outcome, Outcome> {
    match sync::sync(engine).await {
        Ok(r) => {
            let mut text = format!(
                "{} guests: {} imported, {} updated, {} marked missing, {} back, {} unchanged",
                r.guests,
                r.imported.len(),
                r.updated.len(),
                r.missing.len(),
                r.returned.len(),
                r.unchanged
            );
            for w in &r.warnings {
                text.push_str("; ");
                text.push_str(w);
            }
            Ok(Outcome::done(text).with_detail(serde_json::to_value(&r).ok()))
        }
        Err(e) => {
            let code = match e {
                sync::SyncError::Config(_) => 2,
                _ => 1,
            };
            Err(Outcome::failed(format!("sync: {e}"), None, code))
        }
    }
}

/// The job preamble for an operation on one deployment, then the operation.
async fn run_on(
    engine: &Engine,
    job: &Job,
    id: &DeploymentId,
    cancel: watch::Receiver<bool>,
) -> Result<Outcome, Outcome> {
    let failed = |message: String, code: i32| Outcome::failed(message, None, code);
    let kind = job.kind();
    let _lock = JobLock::acquire(&engine.paths, id).map_err(|e| failed(e.to_string(), 1))?;
    // Read under the lock: the deployment may have changed while the job waited.
    let key = id.clone();
    let mut d = engine
        .db
        .call(move |s| s.get(&key))
        .await
        .map_err(|e| failed(e.to_string(), 1))?;
    policy::check_op(&job.op, &d).map_err(|r| failed(r.0, 1))?;
    // A retry or redeploy with new flags: they become the deployment's, for this run and
    // every later one.
    if let Op::Retry { changes } | Op::Redeploy { changes, .. } = &job.op
        && !changes.is_empty()
    {
        d.overrides.apply(changes);
        let (key, overrides) = (d.id.clone(), d.overrides.clone());
        engine
            .db
            .call(move |s| s.set_overrides(&key, &overrides))
            .await
            .map_err(|e| failed(e.to_string(), 1))?;
    }
    engine.audit(
        kind.as_str(),
        &d.id,
        serde_json::json!({
            "name": d.name, "job": job.id.0, "by": job.requested_by,
            "repo": d.repo, "vmid": d.vmid, "node": d.node, "op": job.op,
        }),
    );
    let env = pipeline::load_env(engine, &d.id);
    let (events, _nobody) = mpsc::unbounded_channel();
    let reporter = Reporter::new(
        d.id.clone(),
        engine.db.clone(),
        events,
        pipeline::redactor_of(engine, &d.id, &env),
    );
    let _ = reporter
        .info(format!(
            "job {} ({kind}) started, asked by {}",
            job.id, job.requested_by
        ))
        .await;
    // The snapshot before a change: taken (and waited for) before anything is touched.
    let before = match &job.op {
        Op::Redeploy { .. } => Some("redeploy"),
        Op::Rollback { .. } => Some("rollback"),
        Op::Destroy { .. } => Some("destroy"),
        _ => None,
    };
    if let Some(op) = before {
        snapshots::before_change(engine, &reporter, &d, op)
            .await
            .map_err(|m| Outcome::failed(format!("{}: {m}", present::who(&d)), None, 1))?;
    }
    let done = match &job.op {
        Op::Deploy => pipeline::run_deploy(engine, &reporter, d, cancel).await,
        Op::Retry { .. } => pipeline::run_retry(engine, &reporter, d, cancel).await,
        Op::Redeploy { git_ref, .. } => {
            pipeline::run_redeploy(engine, &reporter, d, git_ref.clone(), cancel).await
        }
        Op::Rollback { to } => {
            pipeline::run_rollback(engine, &reporter, d, to.clone(), cancel).await
        }
        Op::Destroy { force } => {
            let options = pipeline::DestroyOptions { force: *force };
            pipeline::run_destroy(engine, &reporter, d, options, cancel).await
        }
        Op::Start | Op::Stop | Op::Restart => {
            let op = match job.op {
                Op::Start => PowerOp::Start,
                Op::Stop => PowerOp::Stop,
                _ => PowerOp::Restart,
            };
            return power::run_power(engine, &reporter, d, op)
                .await
                .map(|d| Outcome::done(present::settled(&d)))
                .map_err(power_outcome);
        }
        Op::Forget { force } => {
            return power::run_forget(engine, d, *force)
                .await
                .map(|f| {
                    let who = present::who(&f.deployment);
                    let message = if f.left_behind.is_empty() {
                        format!("{who} is forgotten; its guest was not touched")
                    } else {
                        format!(
                            "{who} is forgotten; may be left behind: {}",
                            f.left_behind.join("; ")
                        )
                    };
                    Outcome::done(message).with_detail(serde_json::to_value(&f).ok())
                })
                .map_err(power_outcome);
        }
        Op::Sync => {
            return Err(failed(
                "sync is about the cluster, not one deployment".into(),
                1,
            ));
        }
        Op::Snapshot { name } => {
            let who = present::who(&d);
            return snapshots::run_snapshot(engine, &reporter, &d, name.clone())
                .await
                .map(|name| Outcome {
                    next: Some(format!("`proxdeck restore {} {name}` returns to it", d.id)),
                    detail: Some(serde_json::json!({ "snapshot": name })),
                    ..Outcome::done(format!("{who}: snapshot {name} taken"))
                })
                .map_err(snapshot_outcome);
        }
        Op::Domains { change, name } => {
            return caddy::run_domains(engine, &reporter, d, *change, name)
                .await
                .map(Outcome::done)
                .map_err(|e| match e {
                    caddy::DomainsError::Invalid(m) => Outcome::failed(m, None, 2),
                    caddy::DomainsError::Failed(m) => Outcome::failed(m, None, 1),
                });
        }
        Op::Restore { snapshot } => {
            return snapshots::run_restore(engine, &reporter, d, snapshot.trim())
                .await
                .map(|d| Outcome::done(present::settled(&d)))
                .map_err(snapshot_outcome);
        }
    };
    done.map(|d| Outcome::done(present::settled(&d)))
        .map_err(deploy_outcome)
}

fn deploy_outcome(e: DeployError) -> Outcome {
    match e {
        DeployError::Stage {
            id,
            stage,
            cause,
            next,
        } => Outcome::failed(
            format!("{id}: stage {stage} failed: {cause}"),
            Some(next),
            1,
        ),
        DeployError::Invalid(_) | DeployError::Config(_) => Outcome::failed(e.to_string(), None, 2),
        other => Outcome::failed(other.to_string(), None, 1),
    }
}

fn snapshot_outcome(e: snapshots::SnapshotError) -> Outcome {
    let code = match e {
        snapshots::SnapshotError::Config(_) | snapshots::SnapshotError::Invalid(_) => 2,
        _ => 1,
    };
    Outcome::failed(e.to_string(), None, code)
}

fn power_outcome(e: PowerError) -> Outcome {
    let code = match e {
        PowerError::Config(_) => 2,
        _ => 1,
    };
    Outcome::failed(e.to_string(), None, code)
}

/// How often a follower looks at the store for new lines and the job's state.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(40);
/// A job still queued after this long: the follower starts the worker again (it may have
/// exited just as the job was queued).
const REVIVE_AFTER: Duration = Duration::from_secs(2);
/// Lines read per look at the store.
const FOLLOW_BATCH: usize = 5_000;

/// Streams a job's log lines (the deployment's lines after `after`) to `sink` as they are
/// stored, until the job has ended and every line is out; returns the ended job. `sink`
/// returning false stops following early (the reader went away), and so does `stop` turning
/// true; then the job as it is now is returned.
pub async fn follow(
    engine: &Engine,
    job: JobId,
    mut after: i64,
    mut sink: impl FnMut(&[(i64, LogLine)]) -> bool,
    stop: &mut watch::Receiver<bool>,
) -> Result<Job, OpError> {
    let mut queued_since = Instant::now();
    loop {
        let j = engine.db.call(move |s| s.job(job)).await?;
        if let Some(id) = j.deployment.clone() {
            loop {
                let key = id.clone();
                let page = engine
                    .db
                    .call(move |s| s.logs(&key, after, FOLLOW_BATCH))
                    .await?;
                let Some((last, _)) = page.last() else { break };
                after = *last;
                if !sink(&page) {
                    return Ok(j);
                }
                if page.len() < FOLLOW_BATCH {
                    break;
                }
            }
        }
        if !j.state.is_active() {
            // Lines stored between the job read and the log read were printed above; the
            // job's last line is stored before it ends, so nothing is left.
            return Ok(j);
        }
        if *stop.borrow() {
            return Ok(j);
        }
        if j.state == JobState::Queued && queued_since.elapsed() > REVIVE_AFTER {
            queued_since = Instant::now();
            let _ = super::worker::ensure_running(engine);
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_EVERY) => {}
            _ = stop.changed() => {}
        }
    }
}

/// One line of a log as `logs` prints it: `12:03:04 provision      ! text`.
pub fn format_line(l: &LogLine) -> String {
    let time = chrono::DateTime::from_timestamp_millis(l.at)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%H:%M:%S")
                .to_string()
        })
        .unwrap_or_default();
    let stage = l.stage.map(|s| s.as_str()).unwrap_or("-");
    let mark = match l.stream {
        LogStream::Stdout => " ",
        LogStream::Stderr => "!",
        LogStream::Info => "*",
    };
    format!("{time} {stage:<15} {mark} {}", l.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_and_missing_things_map_to_exit_codes() {
        assert_eq!(OpError::from(StoreError::NotFound("x".into())).code(), 2);
        assert_eq!(
            OpError::from(StoreError::JobActive("busy".into())).code(),
            1
        );
        assert_eq!(OpError::Invalid("repo: bad".into()).code(), 2);
        let o = deploy_outcome(DeployError::Stage {
            id: DeploymentId("k3x9ta".into()),
            stage: crate::domain::Stage::Provision,
            cause: "exit 1".into(),
            next: "retry".into(),
        });
        assert_eq!(o.code, 1);
        assert_eq!(o.message, "k3x9ta: stage provision failed: exit 1");
        assert_eq!(o.next.as_deref(), Some("retry"));
        assert!(requester("cli").ends_with(" via cli"));
    }
}
