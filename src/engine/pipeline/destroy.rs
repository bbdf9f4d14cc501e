//! Destroy: DESTROYING → `terraform destroy` (when the workspace holds state) → the address
//! and the pinned host key released, the secrets file removed → DELETED. The record stays.
//! A destroy that cannot finish leaves the deployment FAILED with the cause, to try again.

use super::{DeployError, load_env, next_step, redactor, secrets_path};
use crate::domain::{Deployment, Stage, Status};
use crate::engine::Engine;
use crate::engine::report::Reporter;
use crate::engine::terraform::{self, Terraform};
use crate::protocol::{EngineEvent, LogStream};
use tokio::sync::{mpsc, watch};

/// Destroys a deployment's guest with `terraform destroy` and marks it DELETED.
pub async fn destroy(
    engine: &Engine,
    id_or_name: &str,
    events: mpsc::UnboundedSender<EngineEvent>,
) -> Result<Deployment, DeployError> {
    let key = id_or_name.to_string();
    let found = engine.db.call(move |s| s.find(&key)).await?;
    let _job = crate::engine::jobs::JobLock::acquire(&engine.paths, &found.id)?;
    // Read again under the lock: another process may have just finished with it.
    let id = found.id.clone();
    let d = engine.db.call(move |s| s.get(&id)).await?;
    if d.status == Status::Deleted {
        return Err(DeployError::Refused(format!(
            "{} ({}) is already deleted",
            d.name, d.id
        )));
    }
    if !d.status.is_settled() {
        return Err(DeployError::Refused(format!(
            "{} ({}) is {}: work is in flight; wait for it to finish, then destroy",
            d.name, d.id, d.status
        )));
    }
    let env = load_env(engine, &d.id);
    let reporter = Reporter::new(
        d.id.clone(),
        engine.db.clone(),
        events,
        redactor(engine, &env),
    );
    engine.audit("destroy", &d.id, serde_json::json!({"name": d.name}));
    reporter.stage(Stage::Destroy).await?;
    reporter.transition(Status::Destroying, None).await?;

    let ws = engine.paths.workspace(&d.id);
    let result: Result<(), String> = async {
        if !terraform::has_state(&ws) {
            reporter
                .info("no terraform state with resources: nothing to destroy on Proxmox")
                .await
                .map_err(|e| e.to_string())?;
            return Ok(());
        }
        let proxmox = engine.config.proxmox().map_err(|e| e.to_string())?;
        let tf = Terraform::new(&engine.config, proxmox, &ws, &engine.paths.plugin_cache())
            .map_err(|e| e.to_string())?;
        let (_c, cancel) = watch::channel(false);
        let (tx, forward) = reporter.pipe();
        let r = tf.init(tx, cancel.clone()).await;
        let _ = forward.await;
        r.map_err(|e| e.to_string())?;
        let (tx, forward) = reporter.pipe();
        let r = tf.destroy(tx, cancel).await;
        let _ = forward.await;
        r.map_err(|e| e.to_string())
    }
    .await;

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
            if let Some(h) = host {
                s.forget_host_key(&h)?;
            }
            Ok(())
        })
        .await?;
    let _ = std::fs::remove_file(secrets_path(engine, &d.id));
    let done = reporter.transition(Status::Deleted, None).await?;
    reporter
        .info(format!("{} ({}) is DELETED", d.name, d.id))
        .await?;
    Ok(done)
}
