//! Releases on the guest, seen from the pipeline: what a script built and switched to is
//! recorded in the store (`store::releases`); a release that fails after the switch (its
//! restart, its health check) is switched away from, back to the release that ran before,
//! which is health-checked again, and the deployment is FAILED with both facts; `rollback`
//! switches to a kept release without building (the activate script), `--to` picks one by
//! commit.
//!
//! The guest's release folders are the truth for what can be switched to: before a rollback
//! they are listed over SSH and the store is reconciled with them. What runs on the guest is
//! the recipes' business (`engine::provision`); this module only decides which release and
//! records what happened.

use super::{
    Ctx, DeployError, Failure, StageResult, app, catalog_framework, check, fail, load_env,
    proxmox_or_placeholder, record_failure,
};
use crate::domain::{Deployment, Stage, Status};
use crate::engine::Engine;
use crate::engine::guest_state;
use crate::engine::provision::{self, KeptRelease, ReleaseLines};
use crate::engine::report::Reporter;
use crate::store::releases::{GuestRelease, Release, ReleaseState};
use tokio::sync::watch;

/// Notes the store's current release before anything changes: what a failure switches back
/// to.
pub(super) async fn remember_current(cx: &mut Ctx<'_>) -> StageResult<()> {
    let id = cx.d.id.clone();
    cx.replaced = cx
        .engine
        .db
        .call(move |s| s.current_release(&id))
        .await
        .map_err(|e| fail(cx.current)(&e))?;
    Ok(())
}

fn guest_list(kept: &[KeptRelease]) -> Vec<GuestRelease> {
    kept.iter()
        .map(|k| GuestRelease {
            folder: k.folder.clone(),
            state: k.state.clone(),
            current: k.current,
        })
        .collect()
}

/// Records what a script said about releases: the folder it made (building; failed when the
/// script failed before switching to it), the switch, and every release left on the guest.
pub(super) async fn after_script(
    cx: &mut Ctx<'_>,
    lines: &ReleaseLines,
    ok: bool,
    commit: Option<&str>,
) -> StageResult<()> {
    let id = cx.d.id.clone();
    if let Some(made) = &lines.made {
        cx.release = Some(made.clone());
        let seq = provision::folder_seq(made).unwrap_or(0);
        let commit = commit
            .or_else(|| provision::folder_commit(made))
            .unwrap_or_default()
            .to_string();
        let (id, made) = (id.clone(), made.clone());
        cx.engine
            .db
            .call(move |s| s.record_release(&id, seq, &commit, &made))
            .await
            .map_err(|e| fail(cx.current)(&e))?;
    }
    if let Some(to) = &lines.switched {
        cx.switched = true;
        cx.release = Some(to.clone());
    }
    if !lines.kept.is_empty() {
        let guest = guest_list(&lines.kept);
        let id = id.clone();
        cx.engine
            .db
            .call(move |s| s.reconcile_releases(&id, &guest, false))
            .await
            .map_err(|e| fail(cx.current)(&e))?;
        cx.kept = lines.kept.clone();
    }
    if !ok
        && !cx.switched
        && let Some(made) = lines.made.clone()
    {
        let (id, folder) = (id.clone(), made.clone());
        cx.engine
            .db
            .call(move |s| s.set_release_state(&id, &folder, ReleaseState::Failed))
            .await
            .map_err(|e| fail(cx.current)(&e))?;
        let running = match &cx.replaced {
            Some(r) => format!("release {} keeps serving, untouched", r.folder),
            None => "nothing was switched".to_string(),
        };
        cx.info(format!(
            "release {made} failed before the switch: {running}; the next deploy removes it"
        ))
        .await?;
    }
    Ok(())
}

/// The release this run switched to passed its health check: it is current.
pub(super) async fn healthy(cx: &mut Ctx<'_>) -> StageResult<()> {
    let Some(folder) = cx.release.clone() else {
        return Ok(());
    };
    let id = cx.d.id.clone();
    let f = folder.clone();
    cx.engine
        .db
        .call(move |s| s.activate_release(&id, &f))
        .await
        .map_err(|e| fail(cx.current)(&e))?;
    cx.info(format!("release {folder} is current")).await
}

/// A failure after the service was switched to this run's release: switch back to the
/// release that ran before (when the guest still has it), health-check it, and return the
/// failure with what happened. Before the switch (a failed build) nothing changed on the
/// guest: the failure is returned as it is.
pub(super) async fn switch_back(cx: &mut Ctx<'_>, failure: Failure) -> Failure {
    if !cx.switched {
        return failure;
    }
    let Some(failed) = cx.release.clone() else {
        return failure;
    };
    let id = cx.d.id.clone();
    let f = failed.clone();
    let _ = cx
        .engine
        .db
        .call(move |s| s.set_release_state(&id, &f, ReleaseState::Failed))
        .await;
    let on_guest = |folder: &str| {
        cx.kept.is_empty()
            || cx
                .kept
                .iter()
                .any(|k| k.folder == folder && k.state == "built")
    };
    let Some(back) = cx
        .replaced
        .clone()
        .filter(|r| r.folder != failed && on_guest(&r.folder))
    else {
        return Failure {
            cause: format!(
                "{}\nrelease {failed} is marked failed; no earlier release is kept on the guest to switch back to",
                failure.cause
            ),
            ..failure
        };
    };
    let _ = cx
        .info(format!(
            "switching back to release {} (commit {}): release {failed} failed",
            back.folder,
            short(&back.commit)
        ))
        .await;
    match activate(cx, &back.folder, Some(&failed)).await {
        Ok(()) => Failure {
            cause: format!(
                "{}\nswitched back to release {} (commit {}), which answers again; release {failed} stays on the guest marked failed",
                failure.cause,
                back.folder,
                short(&back.commit)
            ),
            ..failure
        },
        Err(again) => Failure {
            cause: format!(
                "{}\nswitching back to release {} failed too: {}",
                failure.cause, back.folder, again.cause
            ),
            ..failure
        },
    }
}

/// Switches the guest to the kept release `folder` (the activate script: no fetch, no
/// build), marking `failed` failed, then health-checks it and records it current.
async fn activate(cx: &mut Ctx<'_>, folder: &str, failed: Option<&str>) -> StageResult<()> {
    if cx.session.is_none() {
        app::connect(cx).await?;
    }
    let ip = cx.ip.clone().unwrap_or_default();
    let vars = app::script_vars(cx, &ip, "");
    let script = provision::render_activate(&vars, folder, failed)
        .map_err(|e| fail(Stage::Provision)(&e))?;
    cx.switched = false;
    cx.release = Some(folder.to_string());
    let run = app::run_on_guest(cx, script, std::time::Duration::from_secs(300)).await?;
    cx.commit = run.commit;
    check::run(cx).await?;
    healthy(cx).await
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// Names the deployment proxdeck knows on this host with the same port, when a script said
/// the port is held by something else.
pub(super) async fn name_port_holder(cx: &Ctx<'_>, reason: String) -> String {
    let port = cx.d.port;
    if !reason.contains(&format!("port {port} ")) || !reason.contains("in use") {
        return reason;
    }
    let others = others_on_port(cx).await;
    if others.is_empty() {
        reason
    } else {
        format!(
            "{reason} (proxdeck's {} on this host with port {port})",
            others.join(", ")
        )
    }
}

/// The other deployments the store has on this deployment's host and port, as `deployment
/// NAME (ID)`.
pub(super) async fn others_on_port(cx: &Ctx<'_>) -> Vec<String> {
    let (id, ip, port) = (
        cx.d.id.clone(),
        cx.ip.clone().or(cx.d.ip.clone()),
        cx.d.port,
    );
    let Some(ip) = ip else {
        return Vec::new();
    };
    cx.engine
        .db
        .call(move |s| s.list())
        .await
        .map(|all| {
            all.into_iter()
                .filter(|d| {
                    d.id != id
                        && d.port == port
                        && d.ip.as_deref() == Some(ip.as_str())
                        && d.status != Status::Deleted
                })
                .map(|d| format!("deployment {} ({})", d.name, d.id))
                .collect()
        })
        .unwrap_or_default()
}

/// Which kept release a rollback switches to: with `to`, the release of that commit (a
/// prefix of at least 7 hex digits, or the full id); else the good release that was current
/// most recently. `releases` are the store's, reconciled with the guest.
pub fn pick_release(releases: &[Release], to: Option<&str>, id: &str) -> Result<Release, String> {
    let kept: Vec<String> = releases
        .iter()
        .filter(|r| r.state.activatable())
        .map(|r| format!("{} ({})", short(&r.commit), r.state))
        .collect();
    let kept = if kept.is_empty() {
        "none".to_string()
    } else {
        kept.join(", ")
    };
    let Some(to) = to else {
        return releases
            .iter()
            .filter(|r| r.state == ReleaseState::Good)
            .max_by_key(|r| (r.activated_at, r.seq))
            .cloned()
            .ok_or_else(|| {
                format!(
                    "no earlier good release is kept on the guest to roll back to (kept: {kept}); `proxdeck rollback {id} --to COMMIT` picks a kept one, `proxdeck redeploy {id} --ref COMMIT` builds any commit"
                )
            });
    };
    let want = to.trim().to_ascii_lowercase();
    if want.len() < 7 || want.len() > 40 || !want.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "--to {to:?}: give a commit id (7 to 40 hex digits) of a kept release: {kept}"
        ));
    }
    let matches: Vec<&Release> = releases
        .iter()
        .filter(|r| {
            let c = r.commit.to_ascii_lowercase();
            !c.is_empty() && (c.starts_with(&want) || (c.len() >= 7 && want.starts_with(&c)))
        })
        .collect();
    if let Some(r) = matches
        .iter()
        .filter(|r| r.state.activatable())
        .max_by_key(|r| r.seq)
    {
        if r.state == ReleaseState::Current {
            return Err(format!(
                "commit {} (release {}) is the current release already",
                short(&r.commit),
                r.folder
            ));
        }
        return Ok((*r).clone());
    }
    match matches.first() {
        Some(r) => Err(format!(
            "release {} of commit {} is {}: it cannot be switched to; `proxdeck redeploy {id} --ref {to}` builds that commit again (kept: {kept})",
            r.folder,
            short(&r.commit),
            r.state
        )),
        None => Err(format!(
            "commit {to} is not among the kept releases ({kept}); `proxdeck redeploy {id} --ref {to}` builds it"
        )),
    }
}

/// `rollback [--to COMMIT]`: lists the guest's releases (the store reconciled with them),
/// picks one, and switches to it without building; a release that fails its health check is
/// switched away from again.
pub(super) async fn rollback(
    engine: &Engine,
    reporter: &Reporter,
    d: Deployment,
    to: Option<String>,
    cancel: watch::Receiver<bool>,
) -> Result<Deployment, DeployError> {
    let env = load_env(engine, &d.id);
    let framework = match catalog_framework(&d) {
        Ok(f) => f,
        Err(failure) => return Err(record_failure(engine, reporter, &d.id, failure).await),
    };
    let proxmox = proxmox_or_placeholder(engine)?;
    let mut cx = Ctx::on_guest(engine, reporter, &d, framework, proxmox, env, cancel);
    let picked = match choose(&mut cx, to.as_deref()).await {
        Ok(Ok(r)) => r,
        Ok(Err(refusal)) => return Err(DeployError::Refused(refusal)),
        Err(failure) => return Err(record_failure(engine, reporter, &d.id, failure).await),
    };
    match switch_to(&mut cx, picked).await {
        Ok(done) => Ok(done),
        Err(failure) => Err(record_failure(engine, reporter, &d.id, failure).await),
    }
}

/// Connects, lists the guest's releases, reconciles, and picks the release. Nothing is
/// recorded on the deployment yet: a refusal leaves it as it was.
async fn choose(cx: &mut Ctx<'_>, to: Option<&str>) -> StageResult<Result<Release, String>> {
    cx.current = Stage::Ssh;
    app::connect(cx).await?;
    let (session, target) = cx
        .session
        .take()
        .ok_or_else(|| fail(Stage::Ssh)(&"no SSH session"))?;
    let (name, root) = (cx.d.name.clone(), cx.engine.config.guest.app_root.clone());
    let listed = tokio::task::spawn_blocking(move || {
        let r = guest_state::guest_releases(&session, &target, &name, &root);
        (r, session, target)
    })
    .await
    .map_err(|e| fail(Stage::Ssh)(&e))?;
    let (kept, session, target) = listed;
    cx.session = Some((session, target));
    let kept = kept.map_err(|e| fail(Stage::Ssh)(&e))?;
    let guest = guest_list(&kept);
    cx.kept = kept;
    let id = cx.d.id.clone();
    let releases = cx
        .engine
        .db
        .call(move |s| {
            s.reconcile_releases(&id, &guest, true)?;
            s.releases(&id)
        })
        .await
        .map_err(|e| fail(Stage::Ssh)(&e))?;
    Ok(pick_release(&releases, to, &cx.d.id.0))
}

async fn switch_to(cx: &mut Ctx<'_>, picked: Release) -> StageResult<Deployment> {
    cx.stage(Stage::Ssh).await?;
    cx.transition(Status::Deploying).await?;
    remember_current(cx).await?;
    cx.info(format!(
        "rolling back {} ({}) to release {} (commit {}): no fetch, no build",
        cx.d.name,
        cx.d.id,
        picked.folder,
        short(&picked.commit)
    ))
    .await?;
    cx.stage(Stage::Provision).await?;
    let ip = cx.ip.clone().unwrap_or_default();
    let vars = app::script_vars(cx, &ip, "");
    let script = provision::render_activate(&vars, &picked.folder, None)
        .map_err(|e| fail(Stage::Provision)(&e))?;
    cx.release = Some(picked.folder.clone());
    let run = match app::run_on_guest(cx, script, std::time::Duration::from_secs(300)).await {
        Ok(run) => run,
        Err(failure) => return Err(switch_back(cx, failure).await),
    };
    cx.commit = run.commit.or(Some(picked.commit.clone()));
    cx.stage(Stage::HealthCheck).await?;
    if let Err(failure) = check::run(cx).await {
        return Err(switch_back(cx, failure).await);
    }
    healthy(cx).await?;
    super::finish(cx).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(seq: i64, commit: &str, state: ReleaseState, activated: Option<i64>) -> Release {
        Release {
            seq,
            commit: commit.into(),
            folder: format!("{seq}-{}", &commit[..12]),
            state,
            created_at: seq,
            activated_at: activated,
        }
    }

    fn releases() -> Vec<Release> {
        vec![
            rel(
                4,
                "dddddddddddd4444444444444444444444444444",
                ReleaseState::Failed,
                None,
            ),
            rel(
                3,
                "cccccccccccc3333333333333333333333333333",
                ReleaseState::Current,
                Some(30),
            ),
            rel(
                2,
                "bbbbbbbbbbbb2222222222222222222222222222",
                ReleaseState::Good,
                Some(20),
            ),
            // Rolled back to once, after 2 was made: it ran most recently of the good ones.
            rel(
                1,
                "aaaaaaaaaaaa1111111111111111111111111111",
                ReleaseState::Good,
                Some(25),
            ),
            rel(
                0,
                "eeeeeeeeeeee5555555555555555555555555555",
                ReleaseState::Removed,
                Some(5),
            ),
        ]
    }

    #[test]
    fn rollback_goes_to_the_good_release_that_ran_last() {
        let r = pick_release(&releases(), None, "abc234").unwrap();
        assert_eq!(r.seq, 1);
        let none = pick_release(&releases()[..2], None, "abc234").unwrap_err();
        assert!(none.contains("no earlier good release"), "{none}");
        assert!(none.contains("--to COMMIT"), "{none}");
    }

    #[test]
    fn rollback_to_a_commit_picks_a_kept_release_or_says_why_not() {
        assert_eq!(
            pick_release(&releases(), Some("bbbbbbb"), "abc234")
                .unwrap()
                .seq,
            2
        );
        // A full id matches a release known by its folder's 12 digits only.
        let mut short_known = releases();
        short_known[2].commit = "bbbbbbbbbbbb".into();
        assert_eq!(
            pick_release(
                &short_known,
                Some("bbbbbbbbbbbb2222222222222222222222222222"),
                "abc234"
            )
            .unwrap()
            .seq,
            2
        );
        let current = pick_release(&releases(), Some("ccccccc"), "abc234").unwrap_err();
        assert!(current.contains("current release already"), "{current}");
        let failed = pick_release(&releases(), Some("ddddddd"), "abc234").unwrap_err();
        assert!(failed.contains("is failed") && failed.contains("redeploy abc234 --ref ddddddd"));
        let removed = pick_release(&releases(), Some("eeeeeeee"), "abc234").unwrap_err();
        assert!(removed.contains("is removed"), "{removed}");
        let unknown = pick_release(&releases(), Some("1234567"), "abc234").unwrap_err();
        assert!(
            unknown.contains("not among the kept releases")
                && unknown.contains("bbbbbbbbbbbb (good)")
                && unknown.contains("redeploy abc234 --ref 1234567"),
            "{unknown}"
        );
        let bad = pick_release(&releases(), Some("main"), "abc234").unwrap_err();
        assert!(bad.contains("--to \"main\""), "{bad}");
    }
}
