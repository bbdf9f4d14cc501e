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
use crate::engine::gitauth;
use crate::engine::guest::{self, ScriptRun};
use crate::engine::guest_state;
use crate::engine::process::Output;
use crate::engine::provision::{self, ReleaseLines, ScriptVars};
use crate::engine::report::Reporter;
use crate::engine::ssh::{self, SshError, Target};
use crate::protocol::LogStream;
use std::time::Duration;
use tokio::sync::mpsc;

/// Stage `preflight` of a deployment on an existing host: the repository and ref answer.
pub(super) async fn preflight_host(cx: &mut Ctx<'_>) -> StageResult<()> {
    check_repository(cx).await?;
    let ip =
        cx.d.ip
            .clone()
            .ok_or_else(|| fail(Stage::Preflight)(&"the deployment has no host address"))?;
    crate::engine::caddy::warn_dns(cx.reporter, &cx.d, &ip)
        .await
        .map_err(|e| fail(Stage::Preflight)(&e))?;
    cx.ip = Some(ip);
    Ok(())
}

/// The repository's credentials for this run, loaded once (a deploy key's Git host key
/// checked against the pinned one, or pinned now and said).
pub(super) async fn ensure_access(cx: &mut Ctx<'_>) -> StageResult<()> {
    if cx.access.is_some() {
        return Ok(());
    }
    let (access, notes) = gitauth::access_for(
        &cx.engine.paths,
        &cx.d.id,
        &cx.d.repo,
        cx.d.overrides.git_auth.as_ref(),
    )
    .await
    .map_err(|e| fail(Stage::Preflight)(&e))?;
    for n in notes {
        cx.info(n).await?;
    }
    cx.access = Some(access);
    Ok(())
}

/// `git ls-remote` on this machine with the deployment's credentials: the repository answers
/// and the ref exists. A failure says which credentials were used and what to do.
pub(super) async fn check_repository(cx: &mut Ctx<'_>) -> StageResult<()> {
    ensure_access(cx).await?;
    let access = cx.access.clone().unwrap_or_default();
    let checked = detect::check_ref(&cx.d.repo, &cx.d.git_ref, Duration::from_secs(90), &access)
        .await
        .map_err(|e| {
            let hint = match &access.auth {
                Some(_) => gitauth::unreadable_hint(&access, &cx.d.repo, &cx.d.id),
                None => "check the URL and the ref (does `git ls-remote URL REF` work from here?); a private repository needs --deploy-key or --git-token-env (deploy it again with one)".to_string(),
            };
            fail(Stage::Preflight)(&format!("{e} (read with {}): {hint}", access.describe()))
        })?;
    match &access.auth {
        Some(auth) => {
            cx.info(format!("{checked} (read with {})", auth.describe()))
                .await
        }
        None => cx.info(checked).await,
    }
}

/// After connecting: the repository's credentials staged in memory on the guest (a private
/// folder on tmpfs, removed after the provisioning), then `git ls-remote` there with them when
/// git is on the guest already (a fresh guest gets git from the provisioning script, which
/// checks the same before it fetches). A failure names the credentials and what to do,
/// instead of git's raw words later in the build.
///
/// A rollback (a commit the guest has) does not need the repository: there a failure is said
/// and the rollback goes on.
pub(super) async fn guest_reads_repo(cx: &mut Ctx<'_>) -> StageResult<()> {
    let rollback = cx.checkout.is_some();
    if let Err(f) = ensure_access(cx).await {
        if !rollback {
            return Err(f);
        }
        cx.access = Some(gitauth::Access::none());
        return cx
            .info(format!(
                "the repository's credentials cannot be used now ({}); the rollback goes on with the commit the guest has",
                f.cause
            ))
            .await;
    }
    let access = cx.access.clone().unwrap_or_default();
    let (session, target) = cx
        .session
        .take()
        .ok_or_else(|| fail(Stage::Ssh)(&"no SSH session"))?;
    let repo = cx.d.repo.clone();
    let git_ref = cx.d.git_ref.clone();
    let staged_access = access.clone();
    let result = tokio::task::spawn_blocking(move || {
        let r = stage_and_check(&session, &target, &staged_access, &repo, &git_ref);
        (r, session, target)
    })
    .await;
    let (result, session, target) = result.map_err(|e| fail(Stage::Ssh)(&e))?;
    let label = target.label();
    cx.session = Some((session, target));
    let (dir, check) = result.map_err(|e| fail(Stage::Ssh)(&e))?;
    cx.git_stage = dir;
    match check {
        GuestCheck::Reads => {
            cx.info(format!(
                "the guest reads {} (git ls-remote on {label}, with {})",
                cx.d.repo,
                access.describe()
            ))
            .await
        }
        GuestCheck::NoGit => {
            cx.info("git is not on the guest yet: the provisioning script installs it and checks that the guest reads the repository before it fetches").await
        }
        GuestCheck::Fails(why) if rollback => {
            let why = crate::engine::report::Redactor::new(access.secrets()).redact(&why);
            cx.info(format!(
                "the guest cannot read {} now (git: {why}); the rollback goes on with the commit the guest has",
                cx.d.repo
            ))
            .await
        }
        GuestCheck::Fails(why) => {
            remove_stage(cx).await;
            let why = crate::engine::report::Redactor::new(access.secrets()).redact(&why);
            Err(fail(Stage::Preflight)(&format!(
                "the guest {label} cannot read {} with {} (git: {why}): {}",
                cx.d.repo,
                access.describe(),
                gitauth::unreadable_hint(&access, &cx.d.repo, &cx.d.id)
            )))
        }
    }
}

/// What `git ls-remote` on the guest found.
enum GuestCheck {
    Reads,
    NoGit,
    Fails(String),
}

/// Stages the credentials (for a private repository) and runs the check. Blocks.
fn stage_and_check(
    session: &ssh2::Session,
    target: &Target,
    access: &gitauth::Access,
    repo: &str,
    git_ref: &str,
) -> Result<(Option<String>, GuestCheck), SshError> {
    let proto = |message: String| SshError::Protocol {
        target: target.label(),
        message,
    };
    let quote = |s: &str| -> Result<String, SshError> {
        shlex::try_quote(s)
            .map(|q| q.into_owned())
            .map_err(|e| proto(e.to_string()))
    };
    let files = gitauth::guest_files(access).map_err(proto)?;
    let mut dir = None;
    if !files.is_empty() {
        // Memory, not disk: /dev/shm (or /run/shm) where there is one.
        let make = "umask 077; for d in /dev/shm /run/shm \"${TMPDIR:-/tmp}\"; do [ -d \"$d\" ] && [ -w \"$d\" ] && break; done; mktemp -d \"$d/proxdeck-git-XXXXXXXXXX\"";
        let mut out = String::new();
        let mut err = Vec::new();
        let rc = ssh::exec(
            session,
            target,
            make,
            None,
            Duration::from_secs(30),
            &mut |s, l| match s {
                LogStream::Stdout => out.push_str(l.concat().trim()),
                _ => err.extend(l),
            },
        )?;
        if rc != 0 || !out.starts_with('/') {
            return Err(proto(format!(
                "cannot make a private folder for the repository's credentials (status {rc}): {}",
                err.join(" ")
            )));
        }
        let qdir = quote(&out)?;
        for (name, bytes, mode) in &files {
            let put = format!("umask 077 && cat >{qdir}/{name} && chmod {mode:o} {qdir}/{name}");
            let mut err = Vec::new();
            let rc = ssh::exec(
                session,
                target,
                &put,
                Some(bytes),
                Duration::from_secs(30),
                &mut |s, l| {
                    if s != LogStream::Stdout {
                        err.extend(l)
                    }
                },
            )?;
            if rc != 0 {
                return Err(proto(format!(
                    "cannot stage the repository's credentials in {out} (status {rc}): {}",
                    err.join(" ")
                )));
            }
        }
        dir = Some(out);
    }
    let mut env = Vec::new();
    for e in gitauth::guest_env(access, dir.as_deref().unwrap_or("")) {
        env.push(quote(&e)?);
    }
    if access.auth.is_none() {
        env.push(quote(
            "GIT_SSH_COMMAND=ssh -o BatchMode=yes -o ConnectTimeout=20",
        )?);
    }
    let mut ls = format!("env {} git ls-remote -- {}", env.join(" "), quote(repo)?);
    if !git_ref.is_empty() && !detect::looks_like_commit(git_ref) {
        ls.push(' ');
        ls.push_str(&quote(git_ref)?);
    }
    let command = format!(
        "if command -v git >/dev/null 2>&1; then cd / && {ls} >/dev/null; else echo proxdeck-no-git; fi"
    );
    let mut out = Vec::new();
    let mut err = Vec::new();
    let rc = ssh::exec(
        session,
        target,
        &command,
        None,
        Duration::from_secs(120),
        &mut |s, l| match s {
            LogStream::Stdout => out.extend(l),
            _ => err.extend(l),
        },
    )?;
    let check = if out.iter().any(|l| l.trim() == "proxdeck-no-git") {
        GuestCheck::NoGit
    } else if rc == 0 {
        GuestCheck::Reads
    } else {
        let why: Vec<String> = err.into_iter().filter(|l| !l.trim().is_empty()).collect();
        GuestCheck::Fails(if why.is_empty() {
            format!("git ls-remote exited with status {rc}")
        } else {
            why.join(" ")
        })
    };
    Ok((dir, check))
}

/// Removes the staged credentials from the guest (after the provisioning, whatever its end).
async fn remove_stage(cx: &mut Ctx<'_>) {
    let Some(dir) = cx.git_stage.take() else {
        return;
    };
    let Some((session, target)) = cx.session.take() else {
        return;
    };
    let back = tokio::task::spawn_blocking(move || {
        // The script gave the folder to the app's user: root removes it.
        let sudo = if guest::needs_sudo(&target) {
            "sudo -n "
        } else {
            ""
        };
        if let Ok(q) = shlex::try_quote(&dir) {
            let _ = ssh::exec(
                &session,
                &target,
                &format!("{sudo}rm -rf -- {q}"),
                None,
                Duration::from_secs(30),
                &mut |_, _| {},
            );
        }
        (session, target)
    })
    .await;
    if let Ok(back) = back {
        cx.session = Some(back);
    }
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
    let access = cx.access.clone().unwrap_or_default();
    let (node, unread) = detect::node_need(
        &cx.framework,
        &cx.d.repo,
        &checkout,
        cx.d.overrides.subdir.as_deref().unwrap_or_default(),
        &scratch,
        Duration::from_secs(180),
        &access,
    )
    .await;
    if let Some(why) = unread {
        cx.info(format!("{why}; the framework's minimum Node.js applies"))
            .await?;
    }
    let vars = script_vars(cx, &ip, &checkout)
        .with_node_need(node)
        .with_git_access(
            cx.git_stage.as_deref().unwrap_or(""),
            gitauth::guest_env(&access, cx.git_stage.as_deref().unwrap_or("")),
            gitauth::unreadable_hint(&access, &cx.d.repo, &cx.d.id),
            cx.checkout.is_none(),
        );
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
    let guest = guest::resolve(cx.engine, &cx.d, &target.host)
        .await
        .map_err(|e| fail(Stage::Provision)(&e))?;
    let guest = guest::Guest { target, ..guest };
    let app_dir = provision::app_dir(&cx.engine.config.guest.app_root, &cx.d.name);
    let state = provision::runner_dir(&app_dir);
    let db = cx.engine.db.clone();
    let within = cx.engine.config.timeouts.ssh;
    let (tx, forward) = cx.reporter.pipe();
    let cancel = cx.cancel.clone();
    let result = tokio::task::spawn_blocking(move || {
        let stop = || *cancel.borrow();
        let mut reconnect = || guest::connect_blocking(&db, &guest, within, &tx);
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
        let (r, session) = guest::run_detached(
            session,
            &guest.target,
            &mut reconnect,
            &state,
            &script,
            timeout,
            &stop,
            &mut out,
        );
        ((r, lines), session, guest.target)
    })
    .await;
    cx.finish_forward(forward).await?;
    let ((result, lines), session, target) = result.map_err(|e| fail(Stage::Provision)(&e))?;
    cx.session = Some((session, target));
    remove_stage(cx).await;
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
        let cause = super::redactor_of(engine, &d.id, env).redact(&cause);
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
    gitauth::forget(&engine.paths, &d.id);
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
            let state = provision::runner_dir(&provision::app_dir(&app_root, &name));
            tokio::task::spawn_blocking(move || {
                // A provisioning run still going would write into the folder being removed.
                let mut out = |stream: LogStream, lines: Vec<String>| {
                    let _ = tx.send(Output { stream, lines });
                };
                if let Err(e) = guest::stop_detached(
                    &session,
                    &target,
                    &state,
                    "the app is being removed",
                    &mut out,
                ) {
                    return (Err(e), Err(String::new()));
                }
                let (run, _) = run_forwarded(
                    &session,
                    &target,
                    &script,
                    Duration::from_secs(300),
                    &cancel,
                    &tx,
                );
                let left = guest_state::leftovers(&session, &target, &name, &app_root)
                    .map_err(|e| e.to_string());
                (run.map_err(|e| e.to_string()), left)
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
    let status = run?.status;
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
