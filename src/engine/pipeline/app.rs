//! The app on its guest: stages `ssh` and `provision` (connect with the host key pinned, then
//! the framework's provisioning script, uploaded and run as root, its output streamed and the
//! deployed commit read from it), the `preflight` of a deployment on an existing host (the
//! repository and ref answer; nothing on Proxmox to check), and the destroy of such a
//! deployment: the app, its service and its user removed and confirmed gone, the host itself
//! left alone.
//!
//! How a guest is reached lives in `engine::guest`; what runs there, in `engine::provision`.

use super::{Ctx, DeployError, StageResult, fail, secrets_path};
use crate::domain::{Deployment, Stage, Status};
use crate::engine::Engine;
use crate::engine::detect;
use crate::engine::guest::{self, ScriptRun};
use crate::engine::guest_state;
use crate::engine::process::Output;
use crate::engine::provision::{self, ReleaseLines, ScriptVars};
use crate::engine::report::Reporter;
use crate::engine::ssh::{SshError, Target};
use crate::protocol::LogStream;
use std::time::Duration;
use tokio::sync::mpsc;

/// Stage `preflight` of a deployment on an existing host: the repository and ref answer.
pub(super) async fn preflight_host(cx: &mut Ctx<'_>) -> StageResult<()> {
    let checked = detect::check_ref(&cx.d.repo, &cx.d.git_ref, Duration::from_secs(90))
        .await
        .map_err(|e| fail(Stage::Preflight)(&e))?;
    cx.info(checked).await?;
    let ip =
        cx.d.ip
            .clone()
            .ok_or_else(|| fail(Stage::Preflight)(&"the deployment has no host address"))?;
    cx.ip = Some(ip);
    Ok(())
}

pub(super) async fn connect(cx: &mut Ctx<'_>) -> StageResult<()> {
    let ip = cx
        .ip
        .clone()
        .ok_or_else(|| fail(Stage::Ssh)(&"no address"))?;
    let guest = guest::resolve(cx.engine, &cx.d, &ip)
        .await
        .map_err(|e| fail(Stage::Ssh)(&e))?;
    let (tx, forward) = cx.reporter.pipe();
    let result = guest::connect(cx.engine, &guest, tx).await;
    cx.finish_forward(forward).await?;
    let session = result.map_err(|e| fail(Stage::Ssh)(&e))?;
    let sudo = if guest::needs_sudo(&guest.target) {
        " (commands as root through sudo)"
    } else {
        ""
    };
    cx.info(format!(
        "connected to {} as {}{sudo}",
        guest.target.label(),
        guest.target.user
    ))
    .await?;
    cx.session = Some((session, guest.target));
    Ok(())
}

pub(super) async fn provision(cx: &mut Ctx<'_>) -> StageResult<()> {
    let ip = cx.ip.clone().unwrap_or_default();
    let checkout = cx.checkout.clone().unwrap_or_else(|| cx.d.git_ref.clone());
    let scratch = cx.engine.paths.root.join("tmp");
    let (node, unread) = detect::node_need(
        &cx.framework,
        &cx.d.repo,
        &checkout,
        &scratch,
        Duration::from_secs(180),
    )
    .await;
    if let Some(why) = unread {
        cx.info(format!("{why}; the framework's minimum Node.js applies"))
            .await?;
    }
    let vars = script_vars(cx, &ip, &checkout).with_node_need(node);
    let script =
        provision::render_script(&cx.framework, &vars).map_err(|e| fail(Stage::Provision)(&e))?;
    cx.info(format!(
        "provisioning {} ({} recipe) in {} as user {}: a new release beside the running one",
        cx.framework.name, cx.framework.recipe, vars.app_dir, vars.app_user
    ))
    .await?;
    let run = run_on_guest(cx, script, cx.engine.config.timeouts.provision).await?;
    if let Some(c) = &run.commit {
        cx.info(format!("deployed commit {c}")).await?;
    }
    cx.commit = run.commit;
    Ok(())
}

/// The variables of this deployment's scripts on `ip`, checking out `checkout`.
pub(super) fn script_vars(cx: &Ctx<'_>, ip: &str, checkout: &str) -> ScriptVars {
    let mut vars = ScriptVars::new(
        &cx.d,
        &cx.framework,
        &cx.env,
        &cx.engine.config.guest.app_root,
        ip,
        checkout,
    );
    vars.keep_releases = cx.engine.config.releases.keep;
    vars
}

/// Runs a provisioning or activate script over the context's session, its output stored as
/// it comes; records the release lines it printed (`release::after_script`). A script that
/// failed is the stage's failure, with its own reason (a port held by another deployment
/// named when the store knows it).
pub(super) async fn run_on_guest(
    cx: &mut Ctx<'_>,
    script: String,
    timeout: Duration,
) -> StageResult<ScriptRun> {
    let (session, target) = cx
        .session
        .take()
        .ok_or_else(|| fail(Stage::Provision)(&"no SSH session"))?;
    let (tx, forward) = cx.reporter.pipe();
    let cancel = cx.cancel.clone();
    let result = tokio::task::spawn_blocking(move || {
        let r = run_forwarded(&session, &target, &script, timeout, &cancel, &tx);
        (r, session, target)
    })
    .await;
    cx.finish_forward(forward).await?;
    let ((result, lines), session, target) = result.map_err(|e| fail(Stage::Provision)(&e))?;
    cx.session = Some((session, target));
    let run = result.map_err(|e| fail(Stage::Provision)(&e))?;
    super::release::after_script(cx, &lines, run.status == 0, run.commit.as_deref()).await?;
    if run.status != 0 {
        let reason = match &run.reason {
            Some(reason) => reason.clone(),
            None => format!("the provisioning script exited with status {}", run.status),
        };
        let reason = super::release::name_port_holder(cx, reason).await;
        return Err(fail(Stage::Provision)(&reason));
    }
    Ok(run)
}

/// Runs a script, every output batch sent on `tx`; the release lines of its stdout collected.
fn run_forwarded(
    session: &ssh2::Session,
    target: &Target,
    script: &str,
    timeout: Duration,
    cancel: &tokio::sync::watch::Receiver<bool>,
    tx: &mpsc::UnboundedSender<Output>,
) -> (Result<ScriptRun, SshError>, ReleaseLines) {
    let stop = || *cancel.borrow();
    let mut lines = ReleaseLines::default();
    let mut out = |stream: LogStream, batch: Vec<String>| {
        if stream == LogStream::Stdout {
            for l in &batch {
                lines.read(l);
            }
        }
        let _ = tx.send(Output {
            stream,
            lines: batch,
        });
    };
    let run = guest::run_script(session, target, script, timeout, &stop, &mut out);
    (run, lines)
}

/// Destroy of a deployment on an existing host (`Origin::Host`), already DESTROYING: the app's
/// service stopped and removed, its folder and user deleted over SSH, then a check over the
/// same session that they are gone; the host, its pinned key and everything else on it stay.
/// Ends DELETED once the check confirms it, or FAILED with the cause and what is left. With
/// `force` (a host that cannot be reached, a changed host key), DELETED anyway, naming what
/// may be left on the host.
pub(super) async fn destroy_host(
    engine: &Engine,
    reporter: &Reporter,
    d: &Deployment,
    env: &[(String, String)],
    force: bool,
) -> Result<Deployment, DeployError> {
    let app_root = &engine.config.guest.app_root;
    let host = d.ip.as_deref().unwrap_or("?").to_string();
    let result = remove_app(engine, reporter, d).await;
    if let Err(cause) = result {
        let cause = super::redactor(engine, env).redact(&cause);
        if force {
            let place = format!(
                "the service {}, the system user {} and the folder {}",
                provision::service_name(&d.name),
                provision::app_user(&d.name),
                provision::app_dir(app_root, &d.name)
            );
            reporter
                .lines(
                    LogStream::Stderr,
                    vec![
                        format!("destroy could not finish: {cause}"),
                        format!(
                            "--force: recording {} as DELETED anyway; may be left behind on {host}: {place} (remove them there by hand, or deploy the same name to the host again and destroy it)",
                            d.name
                        ),
                    ],
                )
                .await?;
        } else {
            let next = format!(
                "read `proxdeck logs {}`, check that the host answers over SSH as the deployment's user, then `proxdeck destroy {}` again; if the host cannot be reached any more (or its key changed for good), `proxdeck destroy {} --force` records it DELETED and names what may be left there",
                d.id, d.id, d.id
            );
            let failure = super::Failure {
                stage: Stage::Destroy,
                cause,
            };
            return Err(super::record_failure_next(engine, reporter, &d.id, failure, next).await);
        }
    }
    let _ = std::fs::remove_file(secrets_path(engine, &d.id));
    let done = reporter.transition(Status::Deleted, None).await?;
    reporter
        .info(format!(
            "{} ({}) is DELETED; the host {host} itself was left alone",
            d.name, d.id
        ))
        .await?;
    Ok(done)
}

/// Runs the removal script, then checks over the same session what is left. Ok once the
/// check finds nothing left (even if the script stumbled on something already gone).
async fn remove_app(engine: &Engine, reporter: &Reporter, d: &Deployment) -> Result<(), String> {
    let ip = d.ip.clone().ok_or("the deployment has no host address")?;
    let app_root = engine.config.guest.app_root.clone();
    let script = provision::render_remove(&d.name, &app_root).map_err(|e| e.to_string())?;
    let guest = guest::resolve(engine, d, &ip)
        .await
        .map_err(|e| e.to_string())?;
    let (tx, forward) = reporter.pipe();
    let session = guest::connect(engine, &guest, tx.clone()).await;
    let result = match session {
        Ok(session) => {
            let target = guest.target.clone();
            let name = d.name.clone();
            let (_never, cancel) = tokio::sync::watch::channel(false);
            tokio::task::spawn_blocking(move || {
                let (run, _) = run_forwarded(
                    &session,
                    &target,
                    &script,
                    Duration::from_secs(300),
                    &cancel,
                    &tx,
                );
                let left = guest_state::leftovers(&session, &target, &name, &app_root);
                (run, left)
            })
            .await
            .map_err(|e| e.to_string())
        }
        Err(e) => {
            drop(tx);
            Err(e.to_string())
        }
    };
    let _ = forward.await;
    let (run, left) = result?;
    let status = match run {
        Ok(r) => r.status,
        Err(e) => return Err(e.to_string()),
    };
    let left = left.map_err(|e| {
        format!(
            "the removal script exited with status {status}, and what is left cannot be checked: {e}"
        )
    })?;
    if !left.is_empty() {
        return Err(format!(
            "the removal script exited with status {status}, and the host still has {}; read `proxdeck logs {}`",
            left.join(", "),
            d.id
        ));
    }
    reporter
        .info(format!(
            "confirmed on {}: the service {}, the system user {} and the folder {} are gone",
            guest.target.label(),
            provision::service_name(&d.name),
            provision::app_user(&d.name),
            provision::app_dir(&engine.config.guest.app_root, &d.name)
        ))
        .await
        .map_err(|e| e.to_string())
}
