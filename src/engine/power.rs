//! Power actions on a deployment's guest through the Proxmox API (`proxdeck start|stop|
//! restart ID`), waiting on the task, and `proxdeck forget ID`. For a deployment on an
//! existing host (`--host`), the same actions act on the app's own service over SSH (its
//! systemd unit, OpenRC service or proxdeck's supervisor; `assets/provision/power.sh.hbs`),
//! never on the host; a start or restart ends with the app's health check.
//!
//! Owns what each action does (start; stop = a clean shutdown forced off after a timeout;
//! restart = reboot, or start when stopped), the status that follows (RUNNING / STOPPED,
//! through the store's transition graph) and the removal of a forgotten entry (with `--force`
//! naming what may be left behind). Each runs as a job (`engine::ops`: the job lock, the rules
//! in `domain::policy`, the audit log); every step is written to the deployment's log.

use super::Engine;
use super::jobs::JobError;
use super::proxmox::api::{GuestKind, PowerAction};
use super::proxmox::{Client, ProxmoxError};
use super::report::Reporter;
use crate::domain::{Deployment, Origin, Status};
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
    #[error("{name} ({id}): {source}\nnext: {next}")]
    Proxmox {
        name: String,
        id: String,
        source: ProxmoxError,
        /// What the user can do about it.
        next: String,
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
    if d.origin == Origin::Host {
        return run_host_power(engine, reporter, d, op).await;
    }
    let proxmox = engine.config.proxmox()?.clone();
    let (Some(vmid), Some(node)) = (d.vmid, d.node.clone()) else {
        return Err(PowerError::Refused(format!(
            "{} ({}) has no guest on Proxmox (no vmid or node recorded)",
            d.name, d.id
        )));
    };
    let kind = GuestKind::from(d.guest_type);
    let label = format!("{} {vmid}", kind.label());
    let wrap = |source: ProxmoxError| PowerError::Proxmox {
        name: d.name.clone(),
        id: d.id.0.clone(),
        next: next_step(op, &d.id.0, &label, &node, &source),
        source,
    };
    let client = Client::new(&proxmox).map_err(wrap)?;
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
                    let err = wrap(e);
                    if let PowerError::Proxmox { source, next, .. } = &err {
                        let _ = reporter
                            .lines(
                                LogStream::Stderr,
                                vec![
                                    format!("{} of {label} failed: {source}", op.as_str()),
                                    format!("next: {next}"),
                                ],
                            )
                            .await;
                    }
                    return Err(err);
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

/// Starts, stops or restarts the app's service on its host over SSH (a `--host` deployment),
/// then, after a start or restart, checks that the app answers; records STOPPED or RUNNING.
async fn run_host_power(
    engine: &Engine,
    reporter: &Reporter,
    d: Deployment,
    op: PowerOp,
) -> Result<Deployment, PowerError> {
    let who = format!("{} ({})", d.name, d.id);
    let Some(ip) = d.ip.clone() else {
        return Err(PowerError::Refused(format!(
            "{who} has no host address recorded"
        )));
    };
    let script =
        super::provision::render_power(&d.name, &engine.config.guest.app_root, op.as_str())
            .map_err(|e| PowerError::Refused(e.to_string()))?;
    let host_failed = |what: String| {
        PowerError::Refused(format!(
            "{who}: {what}\nnext: check that the host answers over SSH as the deployment's user (`proxdeck logs {}` has the details), then `proxdeck {} {}` again",
            d.id,
            op.as_str(),
            d.id
        ))
    };
    let guest = super::guest::resolve(engine, &d, &ip)
        .await
        .map_err(|e| host_failed(e.to_string()))?;
    let (tx, forward) = reporter.pipe();
    let session = super::guest::connect(engine, &guest, tx.clone()).await;
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            drop(tx);
            let _ = forward.await;
            return Err(host_failed(e.to_string()));
        }
    };
    reporter
        .info(format!(
            "{} the app's service on {} (the host itself is left alone)",
            op.as_str(),
            guest.target.label()
        ))
        .await?;
    let target = guest.target.clone();
    let run = tokio::task::spawn_blocking(move || {
        let mut out = |stream: LogStream, lines: Vec<String>| {
            let _ = tx.send(super::process::Output { stream, lines });
        };
        super::guest::run_script(
            &session,
            &target,
            &script,
            std::time::Duration::from_secs(180),
            &|| false,
            &mut out,
        )
    })
    .await
    .map_err(|e| host_failed(e.to_string()))?;
    let _ = forward.await;
    let run = run.map_err(|e| host_failed(e.to_string()))?;
    if run.status != 0 {
        let why = run.reason.unwrap_or_else(|| {
            format!(
                "the {} script exited with status {}",
                op.as_str(),
                run.status
            )
        });
        return Err(host_failed(why));
    }
    let target_status = match op {
        PowerOp::Stop => Status::Stopped,
        PowerOp::Start | PowerOp::Restart => {
            check_answers(engine, reporter, &d, &ip).await?;
            Status::Running
        }
    };
    if d.status == target_status {
        let id = d.id.clone();
        return Ok(engine.db.call(move |s| s.get(&id)).await?);
    }
    let done = reporter.transition(target_status, None).await?;
    reporter.info(format!("{who} is {target_status}")).await?;
    Ok(done)
}

/// The health check after a host start or restart: the deployment's path and expectation.
async fn check_answers(
    engine: &Engine,
    reporter: &Reporter,
    d: &Deployment,
    ip: &str,
) -> Result<(), PowerError> {
    let fw = crate::domain::Catalog::builtin().get(&d.framework);
    let (path, expect) = super::health::check_for(d, fw);
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    let url = format!("http://{host}:{}{path}", d.port);
    let mut notes = Vec::new();
    let healthy = super::health::wait_for(&url, expect, engine.config.timeouts.health, |n| {
        if notes.len() < 3 {
            notes.push(n.to_string());
        }
    })
    .await;
    if !notes.is_empty() {
        reporter.lines(LogStream::Info, notes).await?;
    }
    match healthy {
        Ok(h) => {
            reporter
                .info(format!(
                    "{url} answered HTTP {} after {} attempt(s)",
                    h.status, h.attempts
                ))
                .await?;
            Ok(())
        }
        Err(e) => {
            let cause = super::pipeline::unhealthy(&e, &d.id.0, &path, d.port);
            let _ = reporter
                .lines(LogStream::Stderr, vec![format!("health check: {cause}")])
                .await;
            Err(PowerError::Refused(format!(
                "{} ({}): the service runs, but the health check failed: {cause}",
                d.name, d.id
            )))
        }
    }
}

/// What to do when a power action on `label` (`CT 100`) failed with `e`.
pub fn next_step(op: PowerOp, id: &str, label: &str, node: &str, e: &ProxmoxError) -> String {
    let again = format!("`proxdeck {} {id}` again", op.as_str());
    match e {
        ProxmoxError::Unreachable { .. }
        | ProxmoxError::Timeout { .. }
        | ProxmoxError::Tls { .. }
        | ProxmoxError::Auth { .. }
        | ProxmoxError::Setup(_) => {
            format!(
                "check the connection to Proxmox and the credentials with `proxdeck doctor`, then {again}"
            )
        }
        ProxmoxError::Api { status: 403, .. } => format!(
            "grant the credentials VM.PowerMgmt on /vms (the PVEVMAdmin role covers it), then {again}"
        ),
        ProxmoxError::Api { message, .. }
            if message.contains("does not exist") || message.contains("no such") =>
        {
            format!(
                "{label} is gone from node {node}: `proxdeck sync` marks the entry missing, `proxdeck forget {id}` drops it (or `proxdeck destroy {id}`)"
            )
        }
        ProxmoxError::Api { status: 595, .. } => format!(
            "node {node} is offline or unreachable from the cluster: bring it back, then {again}"
        ),
        _ => match op {
            PowerOp::Stop => format!(
                "{label} may be locked (a backup, a snapshot, a migration) or hung in its shutdown: read its task log on Proxmox (node {node} > {label} > Task History), wait for the task or unlock it (`pct unlock` / `qm unlock`), then {again}; `proxdeck start {id}` brings it back if it stopped half-way"
            ),
            PowerOp::Start | PowerOp::Restart => format!(
                "read {label}'s task log on Proxmox (node {node} > {label} > Task History): a lock, a missing disk or too little memory on the node are the usual causes; fix it, then {again}"
            ),
        },
    }
}

/// What `forget` did: the entry removed, and what may be left behind (with `--force`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Forgotten {
    pub deployment: Deployment,
    /// What may still exist on Proxmox or the host, in words; empty without `--force`.
    pub left_behind: Vec<String>,
}

/// Removes an entry proxdeck does not own a guest for (the forget job; `policy` has allowed
/// it): an imported one (the guest stays on Proxmox; a later sync imports it again), or one
/// whose guest is gone (DELETED, or marked missing by sync); with `force`, also a deployment
/// whose guest or host cannot be reached (or still exists): its record goes, and what may be
/// left behind is named.
pub async fn run_forget(
    engine: &Engine,
    d: Deployment,
    force: bool,
) -> Result<Forgotten, PowerError> {
    let gone = d.status == Status::Deleted || d.missing_since.is_some();
    let owned = d.origin != Origin::Imported && !gone;
    if owned && !force {
        return Err(PowerError::Refused(format!(
            "{} ({}) is a deployment proxdeck made and its guest exists: `proxdeck destroy {}` removes it",
            d.name, d.id, d.id
        )));
    }
    let left_behind = if owned {
        left_behind(engine, &d)
    } else {
        Vec::new()
    };
    if !left_behind.is_empty() {
        tracing::warn!(
            "forgot {} with --force; may be left behind: {}",
            d.id,
            left_behind.join("; ")
        );
    }
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
    Ok(Forgotten {
        deployment: d,
        left_behind,
    })
}

/// What a deployment proxdeck made may leave behind when its entry is dropped unremoved.
fn left_behind(engine: &Engine, d: &Deployment) -> Vec<String> {
    match d.origin {
        Origin::Host => vec![format!(
            "on the host {}: the service {}, the system user {} and the folder {}",
            d.ip.as_deref().unwrap_or("?"),
            super::provision::service_name(&d.name),
            super::provision::app_user(&d.name),
            super::provision::app_dir(&engine.config.guest.app_root, &d.name)
        )],
        _ => {
            let mut out = Vec::new();
            if let Some(vmid) = d.vmid {
                out.push(format!(
                    "the guest {} {vmid} on node {}, if it exists: it carries this deployment's id, so `proxdeck resources --orphans` lists it and `proxdeck remove-orphan {vmid}` removes it",
                    GuestKind::from(d.guest_type).label(),
                    d.node.as_deref().unwrap_or("?")
                ));
            }
            if let Some(b) = &engine.config.terraform.backend {
                out.push(format!(
                    "its terraform state in the {} backend (proxdeck removes only the local workspace)",
                    b.kind
                ));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, message: &str) -> ProxmoxError {
        ProxmoxError::Api {
            what: "POST /nodes/pve1/lxc/100/status/shutdown".into(),
            status,
            message: message.into(),
            hint: String::new(),
        }
    }

    #[test]
    fn every_failure_has_a_next_step_naming_the_deployment() {
        let cases = [
            (api(500, "CT is locked (backup)"), "Task History"),
            (api(403, "Permission check failed"), "VM.PowerMgmt"),
            (
                api(
                    500,
                    "Configuration file 'nodes/pve1/lxc/100.conf' does not exist",
                ),
                "proxdeck forget abc234",
            ),
            (api(595, "No route to host"), "offline"),
            (
                ProxmoxError::Unreachable {
                    endpoint: "https://pve:8006".into(),
                    cause: "connection refused".into(),
                },
                "proxdeck doctor",
            ),
            (
                ProxmoxError::TaskTimeout {
                    what: "shutdown of CT 100".into(),
                    upid: "UPID:pve1:1:1:1:vzshutdown:100:root@pam:".into(),
                    secs: 600,
                },
                "pct unlock",
            ),
        ];
        for (e, want) in cases {
            let next = next_step(PowerOp::Stop, "abc234", "CT 100", "pve1", &e);
            assert!(next.contains(want), "{e}: {next}");
            assert!(next.contains("abc234"), "{e}: {next}");
        }
        let next = next_step(
            PowerOp::Start,
            "abc234",
            "CT 100",
            "pve1",
            &api(500, "boom"),
        );
        assert!(next.contains("`proxdeck start abc234` again"), "{next}");
    }
}
