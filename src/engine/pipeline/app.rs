//! Stages `ssh` and `provision`: connect to the guest (host key pinned in the store on first
//! contact), upload the framework's provisioning script (0600, removed after the run) and run
//! it with `bash -euo pipefail`, streaming its output; read the deployed commit from it.

use super::{Ctx, StageResult, fail};
use crate::domain::Stage;
use crate::engine::process::Output;
use crate::engine::provision::{self, EnvVar, ScriptVars};
use crate::engine::ssh::{self, HostKeyPolicy, PresentedKey, SshError, Target};
use crate::protocol::LogStream;
use crate::store::{Db, HostKey, StoreError};
use std::time::Duration;
use tokio::sync::mpsc;

pub(super) async fn connect(cx: &mut Ctx<'_>) -> StageResult<()> {
    let config = cx.engine.config.clone();
    let ip = cx
        .ip
        .clone()
        .ok_or_else(|| fail(Stage::Ssh)(&"no address"))?;
    let keys = match cx.keys.clone() {
        Some(k) => k,
        None => {
            let dir = cx.engine.paths.keys();
            tokio::task::spawn_blocking(move || ssh::ensure_key(&dir))
                .await
                .map_err(|e| fail(Stage::Ssh)(&e))?
                .map_err(|e| fail(Stage::Ssh)(&e))?
        }
    };
    let target = Target {
        host: ip,
        port: config.guest.ssh_port,
        user: config.guest.ssh_user.clone(),
    };
    let db = cx.engine.db.clone();
    let within = config.timeouts.ssh;
    let (tx, forward) = cx.reporter.pipe();
    let t = target.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut policy = PinInStore {
            db,
            notes: tx.clone(),
        };
        let note = |text: &str| {
            let _ = tx.send(Output {
                stream: LogStream::Info,
                lines: vec![text.to_string()],
            });
        };
        ssh::connect(&t, &keys, &mut policy, within, note)
    })
    .await;
    cx.finish_forward(forward).await?;
    let session = result
        .map_err(|e| fail(Stage::Ssh)(&e))?
        .map_err(|e| fail(Stage::Ssh)(&e))?;
    cx.info(format!(
        "connected to {} as {}",
        target.label(),
        target.user
    ))
    .await?;
    cx.session = Some((session, target));
    Ok(())
}

pub(super) async fn provision(cx: &mut Ctx<'_>) -> StageResult<()> {
    let config = cx.engine.config.clone();
    let d = &cx.d;
    let fw = &cx.framework;
    let vars = ScriptVars {
        name: d.name.clone(),
        framework_name: fw.name.clone(),
        app_dir: format!("{}/{}", config.guest.app_root, d.name),
        repo: d.repo.clone(),
        git_ref: d.git_ref.clone(),
        port: d.port,
        install: fw.install.clone(),
        build: fw.build.clone(),
        start: fw.start.clone(),
        env: cx
            .env
            .iter()
            .map(|(name, value)| EnvVar {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
    };
    let script = provision::render_script(fw, &vars).map_err(|e| fail(Stage::Provision)(&e))?;
    let (session, target) = cx
        .session
        .take()
        .ok_or_else(|| fail(Stage::Provision)(&"no SSH session"))?;
    let timeout = config.timeouts.provision;
    let remote = format!("/tmp/proxdeck-provision-{}.sh", d.id.0);
    let (tx, forward) = cx.reporter.pipe();
    let result = tokio::task::spawn_blocking(move || {
        let r = run_script(&session, &target, &remote, &script, timeout, &tx);
        (r, session, target)
    })
    .await;
    cx.finish_forward(forward).await?;
    let (result, session, target) = result.map_err(|e| fail(Stage::Provision)(&e))?;
    cx.session = Some((session, target));
    let (rc, commit) = result.map_err(|e| fail(Stage::Provision)(&e))?;
    if rc != 0 {
        return Err(fail(Stage::Provision)(&format!(
            "the provisioning script exited with status {rc}"
        )));
    }
    cx.commit = commit;
    Ok(())
}

/// Uploads the script (it may hold secrets: owner-only) and runs it; removes it afterwards.
fn run_script(
    session: &ssh2::Session,
    target: &Target,
    remote: &str,
    script: &str,
    timeout: Duration,
    tx: &mpsc::UnboundedSender<Output>,
) -> Result<(i32, Option<String>), SshError> {
    let quoted = shlex::try_quote(remote)
        .map_err(|e| SshError::Protocol {
            target: target.label(),
            message: e.to_string(),
        })?
        .to_string();
    let mut ignore = |_: LogStream, _: Vec<String>| {};
    let upload = format!("umask 077 && cat > {quoted}");
    let rc = ssh::exec(
        session,
        target,
        &upload,
        Some(script.as_bytes()),
        Duration::from_secs(60),
        &mut ignore,
    )?;
    if rc != 0 {
        return Ok((rc, None));
    }
    let command =
        format!("bash -euo pipefail {quoted} </dev/null; rc=$?; rm -f {quoted}; exit $rc");
    let mut commit = None;
    let mut out = |stream: LogStream, lines: Vec<String>| {
        if stream == LogStream::Stdout
            && let Some(c) = lines.iter().find_map(|l| provision::commit_from_line(l))
        {
            commit = Some(c);
        }
        let _ = tx.send(Output { stream, lines });
    };
    let rc = ssh::exec(session, target, &command, None, timeout, &mut out)?;
    Ok((rc, commit))
}

/// Host keys pinned in the store: accepted and pinned on first contact, compared afterwards.
struct PinInStore {
    db: Db,
    notes: mpsc::UnboundedSender<Output>,
}

impl HostKeyPolicy for PinInStore {
    fn check(&mut self, target: &Target, key: &PresentedKey) -> Result<(), SshError> {
        let label = target.label();
        let perr = |e: StoreError| SshError::Protocol {
            target: label.clone(),
            message: format!("host key store: {e}"),
        };
        let pinned = self.db.blocking(|s| s.host_key(&label)).map_err(perr)?;
        match pinned {
            Some(p) if p.fingerprint == key.fingerprint => Ok(()),
            Some(p) => Err(SshError::HostKeyChanged {
                target: label.clone(),
                pinned: format!("{} {}", p.key_type, p.fingerprint),
                presented: format!("{} {}", key.key_type, key.fingerprint),
            }),
            None => {
                let host_key = HostKey {
                    host: label.clone(),
                    key_type: key.key_type.clone(),
                    fingerprint: key.fingerprint.clone(),
                };
                self.db
                    .blocking(|s| s.pin_host_key(&host_key))
                    .map_err(perr)?;
                let _ = self.notes.send(Output {
                    stream: LogStream::Info,
                    lines: vec![format!(
                        "pinned host key of {label}: {} {}",
                        key.key_type, key.fingerprint
                    )],
                });
                Ok(())
            }
        }
    }
}
