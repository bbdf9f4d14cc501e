//! Operations from the command line: queue the job (`engine::ops::submit`), follow its log from
//! the store to its end and exit with its outcome; `--detach` returns at once. Ctrl-C while
//! following asks the job to cancel (and says so); a second Ctrl-C leaves it running and exits.
//! Also `proxdeck jobs` and `proxdeck cancel`. A hangup only ends this viewer: the job goes on
//! in the worker.

use super::{CancelArgs, CliError, JobsArgs, print_json};
use crate::domain::{Job, JobState, OpKind, present};
use crate::engine::Engine;
use crate::engine::ops::{self, OpError, OpRequest, format_line};
use crate::engine::sync::SyncReport;
use crate::protocol::EngineEvent;
use std::io::Write;
use tokio::sync::{mpsc, watch};

impl From<OpError> for CliError {
    fn from(e: OpError) -> CliError {
        CliError {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

/// An operation to queue, and how to follow it.
pub struct Follow {
    pub request: OpRequest,
    /// Queue and return.
    pub detach: bool,
    /// The result as JSON on stdout; progress on stderr.
    pub json: bool,
}

/// Writes progress: to stdout, or to stderr when stdout carries JSON. False when the reader
/// went away (`| head`).
fn say(json: bool, text: &str) -> bool {
    if json {
        std::io::stderr().write_all(text.as_bytes()).is_ok()
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .is_ok()
    }
}

/// Queues the operation, then follows the job to its end (unless detached).
pub async fn run(engine: &Engine, f: Follow) -> Result<(), CliError> {
    let kind = f.request.kind();
    let submitted = ops::submit(engine, f.request, "cli").await?;
    let job = submitted.job;
    let target = submitted
        .deployment
        .as_ref()
        .map(|d| d.name.clone())
        .unwrap_or_default();
    let id = submitted.deployment.as_ref().map(|d| d.id.clone());
    if f.detach {
        if f.json {
            return print_json(&serde_json::json!({
                "job": job,
                "deployment": submitted.deployment,
            }));
        }
        let follow = id
            .as_ref()
            .map(|i| format!("`proxdeck logs -f {i}` follows it, `proxdeck cancel {i}` stops it"))
            .unwrap_or_else(|| "`proxdeck jobs` shows it".into());
        println!(
            "{}{}; {follow}",
            id.as_ref().map(|i| format!("{i} ")).unwrap_or_default(),
            present::queued_note(kind, &target, &job)
        );
        return Ok(());
    }
    say(
        f.json,
        &format!("{}\n", present::queued_note(kind, &target, &job)),
    );
    let ctrl_c = cancel_on_ctrl_c(engine.clone(), job.id, id.clone());
    let (_stop_tx, mut stop) = watch::channel(false);
    let json = f.json;
    let ended = ops::follow(
        engine,
        job.id,
        job.log_from,
        |page| {
            let mut text = String::new();
            for (_, l) in page {
                text.push_str(&format_line(l));
                text.push('\n');
            }
            say(json, &text)
        },
        &mut stop,
    )
    .await;
    ctrl_c.abort();
    finish(engine, ended?, f.json).await
}

/// Ctrl-C while following: the first asks the job to stop gracefully; a second one leaves it
/// running in the worker and exits.
fn cancel_on_ctrl_c(
    engine: Engine,
    job: crate::domain::JobId,
    id: Option<crate::domain::DeploymentId>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        match ops::cancel(&engine, &job.0.to_string(), "cli").await {
            Ok(_) => eprintln!(
                "cancelling job {job}: terraform is asked to stop and save its state, the provisioning run is stopped; Ctrl-C again stops following and leaves the job to finish in the background"
            ),
            Err(e) => eprintln!("cannot cancel job {job}: {e}"),
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            let follow = id
                .map(|i| format!("`proxdeck logs -f {i}` follows it"))
                .unwrap_or_else(|| "`proxdeck jobs` shows it".into());
            eprintln!("job {job} goes on in proxdeck's worker; {follow}");
            std::process::exit(130);
        }
    })
}

/// Prints a finished job's result, or returns its failure with the exit code it maps to.
async fn finish(engine: &Engine, job: Job, json: bool) -> Result<(), CliError> {
    let outcome = job.outcome.clone().unwrap_or_default();
    if job.state != JobState::Succeeded {
        let mut message = outcome.message.clone();
        if let Some(next) = &outcome.next {
            message.push_str("\nnext: ");
            message.push_str(next);
        }
        return Err(CliError {
            code: if outcome.code == 0 { 1 } else { outcome.code },
            message,
        });
    }
    if job.kind() == OpKind::Sync {
        let report: Option<SyncReport> = outcome
            .detail
            .clone()
            .and_then(|v| serde_json::from_value(v).ok());
        return match (report, json) {
            (Some(r), true) => print_json(&r),
            (Some(r), false) => {
                super::cluster::print_sync(&r);
                Ok(())
            }
            (None, _) => {
                println!("{}", outcome.message);
                Ok(())
            }
        };
    }
    let Some(id) = job.deployment.clone() else {
        println!("{}", outcome.message);
        return Ok(());
    };
    if job.kind() == OpKind::Forget {
        if json {
            // What was forgotten, and what may be left behind (`forget --force`).
            return match &outcome.detail {
                Some(detail) => print_json(detail),
                None => print_json(&serde_json::json!({"id": id, "forgotten": true})),
            };
        }
        println!("{}", outcome.message);
        return Ok(());
    }
    let d = engine.db.call(move |s| s.get(&id)).await?;
    if json {
        return print_json(&d);
    }
    println!(
        "{} {} ({}){}",
        d.status,
        d.name,
        d.id,
        d.url
            .as_deref()
            .filter(|_| d.status == crate::domain::Status::Running)
            .map(|u| format!(" {u}"))
            .unwrap_or_default()
    );
    Ok(())
}

/// `proxdeck jobs`: running and queued jobs, then the recent ones.
pub async fn list(engine: &Engine, a: &JobsArgs) -> Result<(), CliError> {
    let n = a.recent;
    let (active, recent, names) = engine
        .db
        .call(move |s| {
            let active = s.active_jobs()?;
            let recent: Vec<Job> = s
                .recent_jobs(n + active.len())?
                .into_iter()
                .filter(|j| !j.state.is_active())
                .take(n)
                .collect();
            let names: Vec<(String, String)> = s
                .list()?
                .into_iter()
                .map(|d| (d.id.0.clone(), d.name))
                .collect();
            Ok((active, recent, names))
        })
        .await?;
    if a.json {
        return print_json(&serde_json::json!({"active": active, "recent": recent}));
    }
    let name = |j: &Job| {
        j.deployment
            .as_ref()
            .map(|id| {
                names
                    .iter()
                    .find(|(i, _)| *i == id.0)
                    .map(|(_, n)| format!("{n} ({id})"))
                    .unwrap_or_else(|| id.0.clone())
            })
            .unwrap_or_else(|| "(cluster)".into())
    };
    println!(
        "{:<6} {:<9} {:<24} {:<28} {:<8} BY / RESULT",
        "JOB", "OP", "DEPLOYMENT", "STATE", "WHEN"
    );
    for j in active.iter().chain(recent.iter()) {
        let when = chrono::DateTime::from_timestamp_millis(j.started_at.unwrap_or(j.created_at))
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%H:%M:%S")
                    .to_string()
            })
            .unwrap_or_default();
        let detail = match &j.outcome {
            Some(o) if !j.state.is_active() => o.message.clone(),
            _ => j.requested_by.clone(),
        };
        println!(
            "{:<6} {:<9} {:<24} {:<28} {:<8} {}",
            j.id.to_string(),
            j.kind().as_str(),
            name(j),
            present::job_phrase(j),
            when,
            detail
        );
    }
    if active.is_empty() {
        println!("(no job is running or queued)");
    }
    Ok(())
}

/// `proxdeck cancel ID|#JOB`.
pub async fn cancel(engine: &Engine, a: &CancelArgs) -> Result<(), CliError> {
    let j = ops::cancel(engine, &a.target, "cli").await?;
    if a.json {
        return print_json(&j);
    }
    match j.state {
        JobState::Cancelled => println!(
            "job {} ({}) was still queued: cancelled, nothing was done",
            j.id,
            j.kind()
        ),
        _ => println!(
            "job {} ({}) is asked to stop: terraform saves its state, the provisioning run is stopped; `proxdeck jobs` shows when it has ended",
            j.id,
            j.kind()
        ),
    }
    Ok(())
}

/// Prints log events from an in-process run (`deploy --plan`): stderr with `--json`.
pub fn spawn_printer(
    to_stderr: bool,
) -> (
    mpsc::UnboundedSender<EngineEvent>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<EngineEvent>();
    let handle = tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            if let EngineEvent::Log { lines, .. } = ev {
                let mut text = String::new();
                for l in &lines {
                    text.push_str(&format_line(l));
                    text.push('\n');
                }
                say(to_stderr, &text);
            }
        }
    });
    (tx, handle)
}
