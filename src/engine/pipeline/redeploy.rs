//! Redeploy and rollback on the same guest. `redeploy` fetches the deployment's ref (or a
//! new one, which becomes the deployment's ref) and builds a new release beside the running
//! one (stages preflight → ssh → provision → health-check → done, through DEPLOYING to
//! RUNNING, or FAILED with the cause and the next step; a release that fails after the switch
//! is switched away from, see `release`). `rollback` switches to a kept release without
//! building (`release::rollback`); only a deployment with no release recorded (made before
//! releases existed) rebuilds the commit deployed before the current one. The commit that was
//! running is kept as `previous_commit`.
//!
//! Nothing here touches Terraform or Proxmox: the guest exists and only the app changes.

use super::{
    Ctx, DeployError, StageResult, catalog_framework, fail, load_env, on_guest,
    proxmox_or_placeholder, record_failure,
};
use crate::domain::spec::validate_ref;
use crate::domain::{Deployment, Stage, Status};
use crate::engine::Engine;
use crate::engine::detect;
use crate::engine::report::Reporter;
use std::time::Duration;
use tokio::sync::watch;

/// What to build on the guest.
enum Build {
    /// The newest commit of the deployment's ref, or of this new ref.
    Latest(Option<String>),
    /// The commit before the current one.
    Previous,
}

/// Fetches the deployment's ref (or `git_ref`, which then becomes its ref), rebuilds and
/// restarts the app on the same guest (the redeploy job; `policy` has allowed it).
pub async fn run_redeploy(
    engine: &Engine,
    reporter: &Reporter,
    d: Deployment,
    git_ref: Option<String>,
    cancel: watch::Receiver<bool>,
) -> Result<Deployment, DeployError> {
    let git_ref = git_ref
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    if let Some(r) = &git_ref {
        validate_ref(r).map_err(|m| DeployError::Refused(format!("ref: {m}")))?;
    }
    rebuild(engine, reporter, d, Build::Latest(git_ref), cancel).await
}

/// Returns the app to the previous good release (or, with `to`, the kept release of that
/// commit) without building: the rollback job. A deployment with no release recorded (made
/// before releases existed) rebuilds the commit deployed before the current one instead.
pub async fn run_rollback(
    engine: &Engine,
    reporter: &Reporter,
    d: Deployment,
    to: Option<String>,
    cancel: watch::Receiver<bool>,
) -> Result<Deployment, DeployError> {
    let id = d.id.clone();
    let recorded = engine.db.call(move |s| s.releases(&id)).await?;
    if recorded.is_empty() && to.is_none() {
        reporter
            .info("no release is recorded for this deployment yet: rebuilding the previous commit")
            .await?;
        return rebuild(engine, reporter, d, Build::Previous, cancel).await;
    }
    super::release::rollback(engine, reporter, d, to, cancel).await
}

async fn rebuild(
    engine: &Engine,
    reporter: &Reporter,
    mut d: Deployment,
    build: Build,
    cancel: watch::Receiver<bool>,
) -> Result<Deployment, DeployError> {
    let checkout = match &build {
        Build::Previous => Some(d.previous_commit.clone().ok_or_else(|| {
            DeployError::Refused(format!(
                "{} ({}) has no previous commit to roll back to (it was deployed once)",
                d.name, d.id
            ))
        })?),
        Build::Latest(_) => None,
    };
    let env = load_env(engine, &d.id);
    // A short commit id becomes the full one before it is recorded as the ref.
    let mut build = build;
    if let Build::Latest(Some(r)) = &mut build
        && detect::looks_like_commit(r)
        && r.len() < 40
    {
        let (access, _) = crate::engine::gitauth::access_for(
            &engine.paths,
            &d.id,
            &d.repo,
            d.overrides.git_auth.as_ref(),
        )
        .await
        .map_err(DeployError::Refused)?;
        let scratch = engine.paths.root.join("tmp");
        *r = detect::full_ref(&d.repo, r, &scratch, Duration::from_secs(180), &access)
            .await
            .map_err(|e| DeployError::Refused(format!("ref: {e}")))?;
    }
    if let Build::Latest(Some(r)) = &build
        && *r != d.git_ref
    {
        let (id, r2) = (d.id.clone(), r.clone());
        engine.db.call(move |s| s.set_git_ref(&id, &r2)).await?;
        reporter
            .info(format!(
                "the deployment's ref is now {r} (was {})",
                if d.git_ref.is_empty() {
                    "the default branch"
                } else {
                    &d.git_ref
                }
            ))
            .await?;
        d.git_ref = r.clone();
    }
    let what = match &checkout {
        Some(c) => format!("rolling back {} ({}) to commit {c}", d.name, d.id),
        None => format!(
            "redeploying {} ({}) from {}",
            d.name,
            d.id,
            if d.git_ref.is_empty() {
                "the default branch"
            } else {
                &d.git_ref
            }
        ),
    };
    reporter.info(what).await?;
    match stages(engine, reporter, &d, env, checkout, cancel).await {
        Ok(done) => Ok(done),
        Err(failure) => Err(record_failure(engine, reporter, &d.id, failure).await),
    }
}

async fn stages(
    engine: &Engine,
    reporter: &Reporter,
    d: &Deployment,
    env: Vec<(String, String)>,
    checkout: Option<String>,
    cancel: watch::Receiver<bool>,
) -> StageResult<Deployment> {
    let framework = catalog_framework(d)?;
    let proxmox = proxmox_or_placeholder(engine).map_err(|e| fail(Stage::Preflight)(&e))?;
    let mut cx = Ctx::on_guest(engine, reporter, d, framework, proxmox, env, cancel);
    cx.checkout = checkout;
    if cx.checkout.is_none() {
        cx.stage(Stage::Preflight).await?;
        cx.transition(Status::Deploying).await?;
        super::app::check_repository(&mut cx).await?;
        if let Some(ip) = cx.ip.clone() {
            crate::engine::caddy::warn_dns(cx.reporter, &cx.d, &ip)
                .await
                .map_err(|e| fail(Stage::Preflight)(&e))?;
        }
        cx.stage(Stage::Ssh).await?;
    } else {
        cx.stage(Stage::Ssh).await?;
        cx.transition(Status::Deploying).await?;
    }
    on_guest(&mut cx).await
}
