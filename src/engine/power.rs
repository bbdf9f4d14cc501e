//! Power actions on a deployment's guest through the Proxmox API (`proxdeck start|stop|
//! restart ID`), waiting on the task, and `proxdeck forget ID`.
//!
//! Owns what each action does (start; stop = a clean shutdown forced off after a timeout;
//! restart = reboot, or start when stopped), the status that follows (RUNNING / STOPPED,
//! through the store's transition graph) and the removal of a forgotten entry's files. Each
//! runs as a job (`engine::ops`: the job lock, the rules in `domain::policy`, the audit log);
//! every step is written to the deployment's log.

use super::Engine;
use super::jobs::JobError;
use super::proxmox::api::{GuestKind, PowerAction};
use super::proxmox::{Client, ProxmoxError};
use super::report::Reporter;
use crate::domain::{Deployment, Status};
use crate::protocol::LogStream;
use crate::store::StoreError;

/// Seconds a guest gets to shut down cleanly before it is stopped.
const SHUTDOWN_TIMEOUT_SECS: u64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerOp {
    Start,
    Stop,
    Restart,
}

impl PowerOp {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerOp::Start => "start",
            PowerOp::Stop => "stop",
            PowerOp::Restart => "restart",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Busy(#[from] JobError),
    #[error("{name} ({id}): {source}")]
    Proxmox {
        name: String,
        id: String,
        source: ProxmoxError,
    },
    #[error("{0}")]
    Refused(String),
}

/// Starts, stops or restarts a deployment's guest and records the status that follows (the
/// power jobs; `policy` has allowed the action, so the deployment has a vmid and a node).
pub async fn run_power(
    engine: &Engine,
    reporter: &Reporter,
    d: Deployment,
    op: PowerOp,
) -> Result<Deployment, PowerError> {
    let proxmox = engine.config.proxmox()?.clone();
    let (Some(vmid), Some(node)) = (d.vmid, d.node.clone()) else {
        return Err(PowerError::Refused(format!(
            "{} ({}) has no guest on Proxmox (no vmid or node recorded)",
            d.name, d.id
        )));
    };
    let kind = GuestKind::from(d.guest_type);
    let client = Client::new(&proxmox).map_err(|source| PowerError::Proxmox {
        name: d.name.clone(),
        id: d.id.0.clone(),
        source,
    })?;
    let wrap = |source| PowerError::Proxmox {
        name: d.name.clone(),
        id: d.id.0.clone(),
        source,
    };
    let label = format!("{} {vmid}", kind.label());
    let current = client.guest_status(&node, kind, vmid).await.map_err(wrap)?;
    let running = current.status == "running";
    let action = match (op, running) {
        (PowerOp::Start, true) => None,
        (PowerOp::Start, false) => Some(PowerAction::Start),
        (PowerOp::Stop, true) => Some(PowerAction::Shutdown),
        (PowerOp::Stop, false) => None,
        (PowerOp::Restart, true) => Some(PowerAction::Reboot),
        (PowerOp::Restart, false) => Some(PowerAction::Start),
    };
    let target = match op {
        PowerOp::Stop => Status::Stopped,
        PowerOp::Start | PowerOp::Restart => Status::Running,
    };
    match action {
        None => {
            reporter
                .info(format!("{label} on {node} is already {}", current.status))
                .await?;
        }
        Some(action) => {
            reporter
                .info(format!(
                    "{} {label} on {node} ({})",
                    op.as_str(),
                    action.path()
                ))
                .await?;
            let timeout = matches!(action, PowerAction::Shutdown | PowerAction::Reboot)
                .then_some(SHUTDOWN_TIMEOUT_SECS);
            let result = async {
                let upid = client.power(&node, kind, vmid, action, timeout).await?;
                client
                    .wait_task(&upid, &format!("{} of {label}", action.path()))
                    .await
            }
            .await;
            match result {
                Ok(exit) => {
                    reporter
                        .info(format!("{} of {label}: task {exit}", action.path()))
                        .await?;
                }
                Err(e) => {
                    let _ = reporter
                        .lines(
                            LogStream::Stderr,
                            vec![format!("{} of {label} failed: {e}", op.as_str())],
                        )
                        .await;
                    return Err(wrap(e));
                }
            }
        }
    }
    if d.status == target {
        return Ok(engine
            .db
            .call({
                let id = d.id.clone();
                move |s| s.get(&id)
            })
            .await?);
    }
    let done = reporter.transition(target, None).await?;
    reporter
        .info(format!("{} ({}) is {target}", d.name, d.id))
        .await?;
    Ok(done)
}

/// Removes an entry proxdeck does not own a guest for (the forget job; `policy` has allowed
/// it): an imported one (the guest stays on Proxmox; a later sync imports it again), or one
/// whose guest is gone (DELETED, or marked missing by sync).
pub async fn run_forget(engine: &Engine, d: Deployment) -> Result<Deployment, PowerError> {
    let id = d.id.clone();
    engine.db.call(move |s| s.forget(&id)).await?;
    // What proxdeck kept on disk for it (a destroyed workspace, env values) goes too.
    let _ = std::fs::remove_dir_all(engine.paths.workspace(&d.id));
    let _ = std::fs::remove_file(
        engine
            .paths
            .root
            .join("secrets")
            .join(format!("{}.json", d.id.0)),
    );
    Ok(d)
}
