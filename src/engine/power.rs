//! Power actions on a deployment's guest through the Proxmox API (`proxdeck start|stop|
//! restart ID`), waiting on the task, and `proxdeck forget ID`.
//!
//! Owns what each action does (start; stop = a clean shutdown forced off after a timeout;
//! restart = reboot, or start when stopped), the status that follows (RUNNING / STOPPED,
//! through the store's transition graph) and which entries may be forgotten. Each action holds
//! the deployment's job lock, is written to its log and to the audit log. It must not act on a
//! deployment that another process is working on, nor forget a guest proxdeck still owns.

use super::Engine;
use super::jobs::{JobError, JobLock};
use super::proxmox::api::{GuestKind, PowerAction};
use super::proxmox::{Client, ProxmoxError};
use super::report::{Redactor, Reporter};
use crate::domain::{Deployment, Origin, Status};
use crate::protocol::{EngineEvent, LogStream};
use crate::store::StoreError;
use tokio::sync::mpsc;

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

fn reporter(
    engine: &Engine,
    d: &Deployment,
    events: mpsc::UnboundedSender<EngineEvent>,
) -> Reporter {
    let secrets = engine
        .config
        .proxmox()
        .map(|p| p.secrets())
        .unwrap_or_default();
    Reporter::new(
        d.id.clone(),
        engine.db.clone(),
        events,
        Redactor::new(secrets),
    )
}

/// Starts, stops or restarts a deployment's guest and records the status that follows.
pub async fn power(
    engine: &Engine,
    id_or_name: &str,
    op: PowerOp,
    events: mpsc::UnboundedSender<EngineEvent>,
) -> Result<Deployment, PowerError> {
    let proxmox = engine.config.proxmox()?.clone();
    let key = id_or_name.to_string();
    let found = engine.db.call(move |s| s.find(&key)).await?;
    let _job = JobLock::acquire(&engine.paths, &found.id)?;
    let id = found.id.clone();
    let d = engine.db.call(move |s| s.get(&id)).await?;
    if !matches!(d.status, Status::Running | Status::Stopped) {
        return Err(PowerError::Refused(format!(
            "{} ({}) is {}; start, stop and restart work on RUNNING or STOPPED deployments{}",
            d.name,
            d.id,
            d.status,
            match d.status {
                Status::Failed => format!(" (`proxdeck retry {}` resumes it)", d.id),
                _ => String::new(),
            }
        )));
    }
    let (Some(vmid), Some(node)) = (d.vmid, d.node.clone()) else {
        return Err(PowerError::Refused(format!(
            "{} ({}) has no guest on Proxmox (no vmid or node recorded)",
            d.name, d.id
        )));
    };
    if d.origin == Origin::Host {
        return Err(PowerError::Refused(format!(
            "{} ({}) runs on a host proxdeck did not create; power it from where it is managed",
            d.name, d.id
        )));
    }
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
    engine.audit(
        op.as_str(),
        &d.id,
        serde_json::json!({"name": d.name, "vmid": vmid, "node": node}),
    );
    let reporter = reporter(engine, &d, events);
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

/// Removes an entry proxdeck does not own a guest for: an imported one (the guest stays on
/// Proxmox; a later sync imports it again), or one whose guest is gone (DELETED, or marked
/// missing by sync).
pub async fn forget(engine: &Engine, id_or_name: &str) -> Result<Deployment, PowerError> {
    let key = id_or_name.to_string();
    let found = engine.db.call(move |s| s.find(&key)).await?;
    let _job = JobLock::acquire(&engine.paths, &found.id)?;
    let id = found.id.clone();
    let d = engine.db.call(move |s| s.get(&id)).await?;
    let gone = d.status == Status::Deleted || d.missing_since.is_some();
    if d.origin != Origin::Imported && !gone {
        return Err(PowerError::Refused(format!(
            "{} ({}) is a deployment proxdeck made and its guest exists: `proxdeck destroy {}` removes it; forget is for imported entries and guests that are gone",
            d.name, d.id, d.id
        )));
    }
    if d.status.is_in_flight() {
        return Err(PowerError::Refused(format!(
            "{} ({}) is {}: wait for it to finish",
            d.name, d.id, d.status
        )));
    }
    engine.audit(
        "forget",
        &d.id,
        serde_json::json!({"name": d.name, "vmid": d.vmid, "origin": d.origin}),
    );
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
