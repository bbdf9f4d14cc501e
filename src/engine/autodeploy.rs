//! Deploy on push without webhooks: for each deployment with auto-deploy on, the worker looks
//! at the repository's ref with `git ls-remote` every `auto_deploy.interval_secs` (plus a
//! random jitter) and queues a redeploy job when the commit differs from the deployed one.
//! Nothing has to reach proxdeck from outside: it works behind NAT.
//!
//! A failed auto-deploy (the ref cannot be read, or the redeploy job failed) leaves the release
//! that runs in place (a redeploy only restarts the app after its build succeeded), is recorded
//! with its message and time for the dashboard and `proxdeck auto-deploy ID`, and doubles the
//! wait before the next attempt, up to `auto_deploy.max_backoff_secs`; a success starts afresh.
//!
//! Owns the polling schedule and the back-off; the worker calls [`Poller::tick`] from its
//! loop and stays alive while any deployment has auto-deploy on. Must not run a redeploy
//! itself: it only queues the job, like any front end.

use super::Engine;
use super::detect;
use crate::config::AutoDeployConfig;
use crate::domain::{Deployment, JobState, Op, OpKind, Status, policy};
use crate::store::autodeploy::AutoDeploy;
use crate::store::{StoreError, now_ms};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How often the worker looks for deployments due a poll (a cheap store read).
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// The longest a `git ls-remote` may take.
const LS_REMOTE_TIMEOUT: Duration = Duration::from_secs(60);
/// Repositories looked at at once in one sweep.
const PARALLEL_POLLS: usize = 8;
/// Who queued the job, as jobs and the audit log record it.
pub const REQUESTER: &str = "auto-deploy via worker";

/// The wait before the next look after `failures` failed attempts in a row: the interval,
/// doubled per failure, at most `max_backoff` (jitter comes on top).
pub fn backoff(config: &AutoDeployConfig, failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.min(20)).unwrap_or(u32::MAX);
    config
        .interval
        .checked_mul(factor)
        .unwrap_or(config.max_backoff)
        .min(config.max_backoff)
        .max(config.interval.min(config.max_backoff))
}

/// A random share of `max`, so deployments do not all poll at the same moment.
fn jitter(max: Duration) -> Duration {
    let ms = max.as_millis() as u64;
    if ms == 0 {
        return Duration::ZERO;
    }
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_err() {
        return Duration::ZERO;
    }
    Duration::from_millis(u64::from_le_bytes(bytes) % (ms + 1))
}

fn at_after(wait: Duration) -> i64 {
    now_ms() + wait.as_millis() as i64
}

/// The worker's side: sweeps now and then, one sweep at a time, off the worker's loop.
#[derive(Default)]
pub struct Poller {
    last: Option<Instant>,
    sweep: Option<JoinHandle<()>>,
    /// Any deployment had auto-deploy on at the last sweep: the worker stays.
    active: Arc<AtomicBool>,
}

impl Poller {
    /// Called by the worker on every turn of its loop; starts a sweep when one is due.
    pub fn tick(&mut self, engine: &Engine) {
        if self.sweep.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        if self.last.is_some_and(|t| t.elapsed() < SWEEP_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        let (engine, active) = (engine.clone(), self.active.clone());
        self.sweep = Some(tokio::spawn(async move {
            active.store(sweep(&engine).await, Ordering::Relaxed);
        }));
    }

    /// Whether any deployment had auto-deploy on at the last sweep.
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }
}

/// One look at every deployment with auto-deploy on; returns whether there is any.
async fn sweep(engine: &Engine) -> bool {
    let list = match engine.db.call(|s| s.auto_deploys()).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("auto-deploy: cannot read the store: {e}");
            return true;
        }
    };
    // A slow or hanging Git host delays only its own deployments.
    let mut polls = tokio::task::JoinSet::new();
    for a in &list {
        while polls.len() >= PARALLEL_POLLS {
            polls.join_next().await;
        }
        let (engine, a) = (engine.clone(), a.clone());
        polls.spawn(async move {
            if let Err(e) = poll_one(&engine, a.clone()).await {
                tracing::error!("auto-deploy of {}: {e}", a.deployment);
            }
        });
    }
    while polls.join_next().await.is_some() {}
    !list.is_empty()
}

async fn poll_one(engine: &Engine, mut a: AutoDeploy) -> Result<(), StoreError> {
    let config = &engine.config.auto_deploy;
    let now = now_ms();
    // The job it queued: how did it end?
    if let Some(job) = a.job {
        let j = engine.db.call(move |s| s.job(job)).await?;
        if j.state.is_active() {
            return Ok(());
        }
        a.job = None;
        if j.state == JobState::Succeeded {
            a.failures = 0;
            a.last_error = None;
            a.last_error_at = None;
            a.next_check_at = at_after(config.interval + jitter(config.jitter));
        } else {
            a.failures = a.failures.saturating_add(1);
            let why = j
                .outcome
                .map(|o| o.message)
                .unwrap_or_else(|| format!("job {job} ended {}", j.state));
            a.last_error = Some(format!("redeploy job {job} {}: {why}", j.state));
            a.last_error_at = Some(now);
            a.next_check_at = at_after(backoff(config, a.failures) + jitter(config.jitter));
            tracing::warn!(
                "auto-deploy of {}: {} failure(s) in a row, next look in {} s",
                a.deployment,
                a.failures,
                backoff(config, a.failures).as_secs()
            );
        }
        return record(engine, a).await;
    }
    if now < a.next_check_at {
        return Ok(());
    }
    let id = a.deployment.clone();
    let d = match engine.db.call(move |s| s.get(&id)).await {
        Ok(d) => d,
        Err(StoreError::NotFound(_)) => {
            // Forgotten: nothing to poll any more.
            let id = a.deployment.clone();
            engine
                .db
                .call(move |s| s.set_auto_deploy(&id, false))
                .await?;
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    a.last_checked_at = Some(now);
    if d.status == Status::Deleted {
        // Destroyed: nothing to redeploy any more, and no reason to keep the worker polling.
        let id = d.id.clone();
        engine
            .db
            .call(move |s| s.set_auto_deploy(&id, false))
            .await?;
        tracing::info!(
            "auto-deploy of {}: turned off, the deployment is DELETED",
            d.id
        );
        return Ok(());
    }
    if let Some(wait) = not_now(&d) {
        // Not a failure: look again after the interval.
        tracing::debug!("auto-deploy of {}: {wait}", d.id);
        a.next_check_at = at_after(config.interval + jitter(config.jitter));
        return record(engine, a).await;
    }
    let access = crate::engine::gitauth::access_for(
        &engine.paths,
        &d.id,
        &d.repo,
        d.overrides.git_auth.as_ref(),
    )
    .await
    .map(|(a, _)| a);
    let looked = match access {
        Ok(access) => detect::remote_commit(&d.repo, &d.git_ref, LS_REMOTE_TIMEOUT, &access).await,
        Err(e) => Err(e),
    };
    match looked {
        Err(e) => {
            a.failures = a.failures.saturating_add(1);
            a.last_error = Some(format!("git ls-remote: {e}"));
            a.last_error_at = Some(now);
            a.next_check_at = at_after(backoff(config, a.failures) + jitter(config.jitter));
        }
        Ok(commit) => {
            a.last_seen = Some(commit.clone());
            let deployed = d.commit.as_deref().unwrap_or("");
            let wait = if a.failures > 0 {
                backoff(config, a.failures)
            } else {
                config.interval
            };
            a.next_check_at = at_after(wait + jitter(config.jitter));
            if !commit.starts_with(deployed) || deployed.is_empty() {
                let op = Op::Redeploy {
                    git_ref: None,
                    changes: Default::default(),
                };
                let key = d.id.clone();
                let who = format!("{REQUESTER} (commit {})", &commit[..commit.len().min(12)]);
                match engine
                    .db
                    .call(move |s| s.enqueue(&op, Some(&key), &who))
                    .await
                {
                    Ok(job) => {
                        tracing::info!(
                            "auto-deploy of {}: {commit} differs from {deployed}: job {} queued",
                            d.id,
                            job.id
                        );
                        a.job = Some(job.id);
                    }
                    // Another job holds the deployment: look again later.
                    Err(StoreError::JobActive(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    record(engine, a).await
}

/// Turns auto-deploy on or off for a deployment (id or name), for both front ends: a
/// DELETED or imported deployment is refused (nothing proxdeck could redeploy), and turning it
/// on makes sure the worker runs.
pub async fn set(
    engine: &Engine,
    target: &str,
    on: bool,
) -> Result<(Deployment, AutoDeploy), String> {
    let key = target.to_string();
    let d = engine
        .db
        .call(move |s| s.find(&key))
        .await
        .map_err(|e| e.to_string())?;
    if on {
        if d.status == Status::Deleted {
            return Err(format!(
                "{} is DELETED: there is nothing to redeploy",
                crate::domain::present::who(&d)
            ));
        }
        if d.origin == crate::domain::Origin::Imported {
            return Err(policy::check(OpKind::Redeploy, &d)
                .err()
                .map(|r| r.0)
                .unwrap_or_default());
        }
    }
    let id = d.id.clone();
    let state = engine
        .db
        .call(move |s| s.set_auto_deploy(&id, on))
        .await
        .map_err(|e| e.to_string())?;
    if on {
        super::worker::ensure_running(engine).map_err(|e| {
            format!(
                "auto-deploy is on, but proxdeck's worker (which polls) could not be started: {e}"
            )
        })?;
    }
    Ok((d, state))
}

/// Why the deployment cannot be redeployed now (it is busy, or never ran), if so.
fn not_now(d: &Deployment) -> Option<String> {
    policy::check(OpKind::Redeploy, d).err().map(|r| r.0)
}

async fn record(engine: &Engine, a: AutoDeploy) -> Result<(), StoreError> {
    engine.db.call(move |s| s.record_auto_deploy(&a)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_with_failures_up_to_the_cap() {
        let c = AutoDeployConfig {
            interval: Duration::from_secs(60),
            jitter: Duration::from_secs(5),
            max_backoff: Duration::from_secs(600),
        };
        assert_eq!(backoff(&c, 0), Duration::from_secs(60));
        assert_eq!(backoff(&c, 1), Duration::from_secs(120));
        assert_eq!(backoff(&c, 3), Duration::from_secs(480));
        assert_eq!(backoff(&c, 4), Duration::from_secs(600));
        assert_eq!(backoff(&c, 400), Duration::from_secs(600));
        for _ in 0..100 {
            assert!(jitter(c.jitter) <= c.jitter);
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn a_busy_or_new_deployment_is_not_redeployed_now() {
        let mut d = Deployment {
            status: Status::Running,
            ip: Some("10.0.0.5".into()),
            ..Deployment::default()
        };
        assert_eq!(not_now(&d), None);
        d.status = Status::Pending;
        assert!(not_now(&d).is_some());
        d.status = Status::Deploying;
        assert!(not_now(&d).unwrap().contains("DEPLOYING"));
    }
}
