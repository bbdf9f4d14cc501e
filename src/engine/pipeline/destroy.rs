//! Destroy: DESTROYING → `terraform destroy` (when the workspace holds state) → the address,
//! the vmid reservation and the pinned host key released, the secrets file removed → DELETED.
//! The record stays. A destroy that cannot finish leaves the deployment FAILED with the cause,
//! to try again. The terraform part copes with an empty state, a running or locked guest
//! (retries with backoff within `timeouts.terraform_destroy_secs`) and a guest already gone.

use super::{DeployError, load_env, next_step, secrets_path};
use crate::domain::{Deployment, Stage, Status};
use crate::engine::Engine;
use crate::engine::report::Reporter;
use crate::engine::terraform::{self, TerraformError};
use crate::protocol::LogStream;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Destroys a deployment's guest with `terraform destroy` and marks it DELETED (the destroy
/// job; `policy` has allowed it).
pub async fn run_destroy(
    engine: &Engine,
    reporter: &Reporter,
    d: Deployment,
    cancel: watch::Receiver<bool>,
) -> Result<Deployment, DeployError> {
    let env = load_env(engine, &d.id);
    reporter.stage(Stage::Destroy).await?;
    reporter.transition(Status::Destroying, None).await?;

    // A deployment on an existing host: remove the app over SSH, leave the host alone.
    if d.origin == crate::domain::Origin::Host {
        return super::app::destroy_host(engine, reporter, &d, &env).await;
    }

    let result = destroy_guest(engine, reporter, &d, cancel).await;

    if let Err(cause) = result {
        let next = next_step(Stage::Destroy, &d.id);
        let message = format!("destroy: {cause}");
        let _ = reporter
            .lines(
                LogStream::Stderr,
                vec![format!("FAILED at {message}"), format!("next: {next}")],
            )
            .await;
        reporter.transition(Status::Failed, Some(message)).await?;
        return Err(DeployError::Stage {
            id: d.id.clone(),
            stage: Stage::Destroy,
            cause,
            next,
        });
    }

    let id = d.id.clone();
    let host =
        d.ip.clone()
            .map(|ip| format!("{ip}:{}", engine.config.guest.ssh_port));
    engine
        .db
        .call(move |s| {
            s.release_ip(&id)?;
            s.release_vmid(&id)?;
            if let Some(h) = host {
                s.forget_host_key(&h)?;
            }
            Ok(())
        })
        .await?;
    let _ = std::fs::remove_file(secrets_path(engine, &d.id));
    // The known_hosts file the TUI's shell wrote from the pinned key.
    let _ = std::fs::remove_file(engine.paths.root.join("known_hosts").join(&d.id.0));
    let done = reporter.transition(Status::Deleted, None).await?;
    reporter
        .info(format!("{} ({}) is DELETED", d.name, d.id))
        .await?;
    Ok(done)
}

/// The first wait between destroy attempts; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// `terraform destroy` of the deployment's guest, coping with what users hit: a workspace whose
/// state is already empty (nothing to do), a guest that is running or locked (retried with
/// backoff until `timeouts.terraform_destroy_secs` is spent), and a guest already gone from
/// the cluster (confirmed through the Proxmox API, then dropped from the state).
async fn destroy_guest(
    engine: &Engine,
    reporter: &Reporter,
    d: &Deployment,
    cancel: watch::Receiver<bool>,
) -> Result<(), String> {
    let ws = engine.paths.workspace(&d.id);
    let say = |text: String| async move { reporter.info(text).await.map_err(|e| e.to_string()) };
    if !ws.join(crate::engine::workspace::MAIN_TF).is_file() {
        if terraform::has_state(&ws) {
            return Err(format!(
                "the workspace {} has state but no main.tf; restore it, or remove the guest on Proxmox and run destroy again",
                ws.display()
            ));
        }
        return say("no terraform workspace: nothing was created on Proxmox".into()).await;
    }
    let proxmox = engine.config.proxmox().map_err(|e| e.to_string())?;
    let tf = super::infra::terraform_for(engine, proxmox, &d.id).map_err(|e| e.to_string())?;
    let (tx, forward) = reporter.pipe();
    let r = tf.init(tx, cancel.clone()).await;
    let _ = forward.await;
    r.map_err(|e| e.to_string())?;

    let resources = tf.state_list().await.map_err(|e| e.to_string())?;
    if resources.is_empty() {
        return say("the terraform state holds no resources: nothing to destroy on Proxmox".into())
            .await;
    }
    let deadline = Instant::now() + engine.config.timeouts.terraform_destroy;
    let mut wait = FIRST_BACKOFF;
    let mut attempt = 1u32;
    loop {
        let (tx, forward) = reporter.pipe();
        let r = tf.destroy(tx, cancel.clone()).await;
        let _ = forward.await;
        let err = match r {
            Ok(_) => break,
            Err(e) => e,
        };
        let cause = err.to_string();
        if let TerraformError::Failed { .. } = err
            && guest_gone(&cause)
            && let Some(vmid) = d.vmid
        {
            match gone_from_cluster(proxmox, vmid).await {
                Ok(true) => {
                    let left = tf.state_list().await.map_err(|e| e.to_string())?;
                    say(format!(
                        "guest {vmid} is already gone from the cluster: dropping {} from the terraform state",
                        left.join(", ")
                    ))
                    .await?;
                    tf.state_rm(&left).await.map_err(|e| e.to_string())?;
                    break;
                }
                Ok(false) => {}
                Err(e) => {
                    say(format!(
                        "cannot ask Proxmox whether guest {vmid} exists: {e}"
                    ))
                    .await?
                }
            }
        }
        let retryable = matches!(err, TerraformError::Failed { .. }) && busy_or_locked(&cause);
        if !retryable || *cancel.borrow() {
            return Err(cause);
        }
        let now = Instant::now();
        if now + wait > deadline {
            return Err(format!(
                "{cause} (still busy or locked after {attempt} attempts; timeouts.terraform_destroy_secs is spent)"
            ));
        }
        say(format!(
            "the guest is busy or locked (attempt {attempt}); trying again in {} s",
            wait.as_secs()
        ))
        .await?;
        let mut cancelled = cancel.clone();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancelled.wait_for(|c| *c) => return Err(format!("{cause} (cancelled while waiting to try again)")),
        }
        wait = (wait * 2).min(MAX_BACKOFF);
        attempt += 1;
    }
    let left = tf.state_list().await.map_err(|e| e.to_string())?;
    if !left.is_empty() {
        return Err(format!(
            "terraform destroy finished but the state still holds {}",
            left.join(", ")
        ));
    }
    Ok(())
}

/// What Proxmox and the provider say when a guest is running, locked or busy with a task:
/// worth trying again a little later.
fn busy_or_locked(cause: &str) -> bool {
    let c = cause.to_ascii_lowercase();
    [
        "can't lock file",
        "cannot lock",
        "is locked",
        "got timeout",
        "timeout while waiting",
        "is running",
        "still running",
        "busy",
        "unable to shut down",
        "connection reset",
        "connection refused",
        "503",
    ]
    .iter()
    .any(|p| c.contains(p))
}

/// What Proxmox and the provider say when a guest does not exist (any more).
fn guest_gone(cause: &str) -> bool {
    let c = cause.to_ascii_lowercase();
    [
        "does not exist",
        "not found",
        "no such",
        "unable to find configuration file",
        "status 404",
        "404 ",
    ]
    .iter()
    .any(|p| c.contains(p))
}

/// True when no guest of the cluster has `vmid`.
async fn gone_from_cluster(
    proxmox: &crate::config::ProxmoxConfig,
    vmid: u32,
) -> Result<bool, String> {
    let client = crate::engine::proxmox::Client::new(proxmox).map_err(|e| e.to_string())?;
    let guests = client.guests().await.map_err(|e| e.to_string())?;
    Ok(!guests.iter().any(|g| g.vmid == Some(vmid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_and_gone_guests_are_told_apart() {
        for busy in [
            "terraform destroy failed (exit 1): error waiting for VM shutdown: can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout",
            "CT 101 is locked (backup)",
            "timeout while waiting for VM 100 configuration to become unlocked",
        ] {
            assert!(busy_or_locked(busy), "{busy}");
            assert!(!guest_gone(busy), "{busy}");
        }
        for gone in [
            "unable to find configuration file for VM 218 on node 'pve'",
            "HTTP 500: Configuration file 'nodes/pve/lxc/100.conf' does not exist",
        ] {
            assert!(guest_gone(gone), "{gone}");
        }
        assert!(!busy_or_locked(
            "local-exec provisioner error: exit status 1"
        ));
        assert!(!guest_gone("local-exec provisioner error: exit status 1"));
    }
}
