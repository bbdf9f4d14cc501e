//! Snapshots of a deployment's whole guest (disks and config: code, database files, system
//! packages) through the Proxmox API: the one taken before a change (`[snapshots] before`,
//! the last `keep` of them kept), `proxdeck snapshot ID [NAME]`, `proxdeck snapshots ID` and
//! `proxdeck restore ID SNAPSHOT` (stop, roll back, start, health check, the record's commit
//! set to what the snapshot held). Every Proxmox task is waited for.
//!
//! Storage that cannot snapshot (a container on `dir`, a VM disk that is not qcow2 on a file
//! storage, thick LVM) is found at the deploy's preflight, or the first time a snapshot is
//! due, and said once as a warning (noted in the store); later changes go on without one.
//!
//! Owns the snapshot names and the commit kept in their description; must not decide whether
//! an operation may run (`domain::policy`) nor touch the app over SSH.

use super::Engine;
use super::health;
use super::proxmox::api::{self, GuestKind, PowerAction, Snapshot};
use super::proxmox::{Client, ProxmoxError};
use super::report::Reporter;
use crate::domain::{Catalog, Deployment, Origin, Status};
use crate::protocol::LogStream;
use serde::Serialize;
use std::collections::HashMap;

/// Storage types whose volumes snapshot whatever the guest (Proxmox's `volume_has_feature`).
const BLOCK_SNAPSHOT: [&str; 5] = ["lvmthin", "zfspool", "zfs", "rbd", "btrfs"];
/// File storages: a VM disk in qcow2 format snapshots there, a container's volume does not.
const FILE_STORAGE: [&str; 5] = ["dir", "nfs", "cifs", "glusterfs", "cephfs"];
/// The snapshots proxdeck takes before a change start with this; only those are pruned.
const BEFORE_PREFIX: &str = "pd-";
/// Seconds a guest gets to shut down cleanly before a rollback.
const SHUTDOWN_SECS: u64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: {source}")]
    Proxmox { what: String, source: ProxmoxError },
}

/// A snapshot as `proxdeck snapshots` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotInfo {
    #[serde(flatten)]
    pub snapshot: Snapshot,
    /// The commit the app was at when proxdeck took it (from its description).
    pub commit: Option<String>,
    /// Taken by proxdeck before a change (pruned beyond `snapshots.keep`).
    pub before_change: bool,
}

/// A deployment's snapshots, and why its guest cannot snapshot when proxdeck knows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotList {
    pub snapshots: Vec<SnapshotInfo>,
    pub unavailable: Option<String>,
}

/// The guest a deployment lives on, with a client to reach it.
struct GuestRef {
    client: Client,
    node: String,
    kind: GuestKind,
    vmid: u32,
    label: String,
}

fn guest_ref(engine: &Engine, d: &Deployment) -> Result<GuestRef, SnapshotError> {
    let (Some(vmid), Some(node)) = (d.vmid, d.node.clone()) else {
        return Err(SnapshotError::Refused(format!(
            "{} ({}) has no guest on Proxmox (no vmid or node recorded)",
            d.name, d.id
        )));
    };
    let proxmox = engine.config.proxmox()?;
    let kind = GuestKind::from(d.guest_type);
    let client = Client::new(proxmox).map_err(|source| SnapshotError::Proxmox {
        what: "the Proxmox client".into(),
        source,
    })?;
    Ok(GuestRef {
        client,
        node,
        kind,
        vmid,
        label: format!("{} {vmid}", kind.label()),
    })
}

fn pve(what: impl Into<String>) -> impl FnOnce(ProxmoxError) -> SnapshotError {
    let what = what.into();
    move |source| SnapshotError::Proxmox { what, source }
}

/// The description proxdeck gives a snapshot: why, and the commit it holds.
pub fn description(why: &str, commit: Option<&str>, git_ref: &str) -> String {
    format!(
        "proxdeck {why}; commit={}; ref={}",
        commit.unwrap_or("none"),
        if git_ref.is_empty() {
            "default"
        } else {
            git_ref
        }
    )
}

/// The commit a description written by [`description`] names.
pub fn commit_of(description: &str) -> Option<String> {
    description
        .split(';')
        .filter_map(|part| part.trim().strip_prefix("commit="))
        .map(|c| c.trim().to_string())
        .find(|c| !c.is_empty() && c != "none" && c.chars().all(|ch| ch.is_ascii_hexdigit()))
}

/// A snapshot name from the deployed commit and the time: `pd-redeploy-abc1234-20261130221500`
/// before a change, `snap-abc1234-20261130221500` when asked for without a name. Proxmox
/// names start with a letter and hold at most 40 letters, digits, `-` and `_`.
pub fn auto_name(
    before: Option<&str>,
    commit: Option<&str>,
    at: chrono::DateTime<chrono::Utc>,
) -> String {
    let short: String = commit
        .unwrap_or("none")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(7)
        .collect();
    let stamp = at.format("%Y%m%d%H%M%S");
    match before {
        Some(op) => format!("{BEFORE_PREFIX}{op}-{short}-{stamp}"),
        None => format!("snap-{short}-{stamp}"),
    }
}

/// Checks a snapshot name a user gives, in Proxmox's rules.
pub fn validate_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !first_ok
        || name.len() < 2
        || name.len() > 40
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "{name:?} is not a snapshot name Proxmox takes: 2 to 40 letters, digits, - and _, starting with a letter"
        ));
    }
    if name == "current" || name == "vzdump" {
        return Err(format!("{name:?} is a name Proxmox reserves; pick another"));
    }
    Ok(())
}

/// Why a guest whose disks are `volumes` (on storages of these types) cannot snapshot.
pub fn why_not(
    kind: GuestKind,
    volumes: &[String],
    types: &HashMap<String, String>,
) -> Option<String> {
    for volume in volumes {
        let (storage, name) = volume.split_once(':').unwrap_or((volume, ""));
        let Some(kind_of) = types.get(storage) else {
            continue;
        };
        if BLOCK_SNAPSHOT.contains(&kind_of.as_str()) {
            continue;
        }
        if kind == GuestKind::Qemu
            && FILE_STORAGE.contains(&kind_of.as_str())
            && name.ends_with(".qcow2")
        {
            continue;
        }
        let fix = if kind == GuestKind::Qemu && FILE_STORAGE.contains(&kind_of.as_str()) {
            "only qcow2 disks snapshot on a file storage"
        } else {
            "use lvmthin, zfspool, rbd or btrfs storage (guest.datastore) for guests you want snapshots of"
        };
        return Some(format!(
            "{} on storage {storage} ({kind_of}) cannot be snapshotted: {fix}",
            volume
        ));
    }
    None
}

/// What the deploy's preflight says about the datastore a new guest goes on: a warning when
/// its guests cannot snapshot (a VM on a file storage is judged later, by its disks' format).
pub fn preflight_warning(kind: GuestKind, datastore: &str, storage_type: &str) -> Option<String> {
    if BLOCK_SNAPSHOT.contains(&storage_type)
        || (kind == GuestKind::Qemu && FILE_STORAGE.contains(&storage_type))
    {
        return None;
    }
    Some(format!(
        "storage {datastore} ({storage_type}) cannot snapshot a {}: proxdeck will take no snapshots before changes to this guest (use lvmthin, zfspool, rbd or btrfs for guest.datastore, or set [snapshots] before = [] to silence this)",
        kind.label()
    ))
}

/// Why the guest cannot snapshot, from its disks and the node's storages (`None`: it can).
async fn capability(g: &GuestRef) -> Result<Option<String>, SnapshotError> {
    let config = g
        .client
        .guest_config(&g.node, g.kind, g.vmid)
        .await
        .map_err(pve(format!("reading the config of {}", g.label)))?;
    let volumes = api::disk_volumes(&config);
    let storages = g
        .client
        .storages(&g.node)
        .await
        .map_err(pve(format!("listing the storages of node {}", g.node)))?;
    let types: HashMap<String, String> =
        storages.into_iter().map(|s| (s.storage, s.kind)).collect();
    Ok(why_not(g.kind, &volumes, &types))
}

/// The deployment's snapshots, oldest first.
pub async fn list(engine: &Engine, d: &Deployment) -> Result<SnapshotList, SnapshotError> {
    let g = guest_ref(engine, d)?;
    let snaps = g
        .client
        .snapshots(&g.node, g.kind, g.vmid)
        .await
        .map_err(pve(format!("listing the snapshots of {}", g.label)))?;
    let id = d.id.clone();
    let unavailable = engine.db.call(move |s| s.snapshot_note(&id)).await?;
    Ok(SnapshotList {
        snapshots: snaps
            .into_iter()
            .map(|s| SnapshotInfo {
                commit: commit_of(&s.description),
                before_change: s.name.starts_with(BEFORE_PREFIX),
                snapshot: s,
            })
            .collect(),
        unavailable,
    })
}

async fn take(
    g: &GuestRef,
    reporter: &Reporter,
    name: &str,
    description: &str,
) -> Result<(), SnapshotError> {
    reporter
        .info(format!(
            "taking snapshot {name} of {} on {}",
            g.label, g.node
        ))
        .await?;
    let upid = g
        .client
        .take_snapshot(&g.node, g.kind, g.vmid, name, description)
        .await
        .map_err(pve(format!("snapshot {name} of {}", g.label)))?;
    let exit = g
        .client
        .wait_task(&upid, &format!("snapshot {name} of {}", g.label))
        .await
        .map_err(pve(format!("snapshot {name} of {}", g.label)))?;
    reporter
        .info(format!("snapshot {name} of {}: task {exit}", g.label))
        .await?;
    Ok(())
}

/// Deletes the snapshots proxdeck took before changes beyond the newest `keep`.
async fn prune(g: &GuestRef, reporter: &Reporter, keep: u32) -> Result<(), SnapshotError> {
    let snaps = g
        .client
        .snapshots(&g.node, g.kind, g.vmid)
        .await
        .map_err(pve(format!("listing the snapshots of {}", g.label)))?;
    let ours: Vec<&Snapshot> = snaps
        .iter()
        .filter(|s| s.name.starts_with(BEFORE_PREFIX) && s.description.starts_with("proxdeck "))
        .collect();
    let extra = ours.len().saturating_sub(keep as usize);
    for old in ours.into_iter().take(extra) {
        let what = format!("deleting snapshot {} of {}", old.name, g.label);
        let upid = g
            .client
            .delete_snapshot(&g.node, g.kind, g.vmid, &old.name)
            .await
            .map_err(pve(what.clone()))?;
        g.client
            .wait_task(&upid, &what)
            .await
            .map_err(pve(what.clone()))?;
        reporter
            .info(format!(
                "deleted snapshot {} (snapshots.keep = {keep})",
                old.name
            ))
            .await?;
    }
    Ok(())
}

/// The snapshot before a change (`op`: redeploy, rollback, destroy), when the config asks for
/// one and the deployment has a Proxmox guest. Storage that cannot snapshot is noted and said
/// once; then the change goes on without one. Any other failure is returned: the change has
/// not started (a destroy goes on anyway: its guest may be half gone already).
pub async fn before_change(
    engine: &Engine,
    reporter: &Reporter,
    d: &Deployment,
    op: &str,
) -> Result<(), String> {
    if !engine.config.snapshots.before(op)
        || d.origin != Origin::Terraform
        || d.vmid.is_none()
        || d.node.is_none()
        || engine.config.proxmox().is_err()
    {
        return Ok(());
    }
    let id = d.id.clone();
    let note = engine
        .db
        .call(move |s| s.snapshot_note(&id))
        .await
        .map_err(|e| e.to_string())?;
    if let Some(why) = note {
        let _ = reporter
            .info(format!("no snapshot before {op}: {why}"))
            .await;
        return Ok(());
    }
    let result = async {
        let g = guest_ref(engine, d)?;
        if let Some(why) = capability(&g).await? {
            return Ok(Some(why));
        }
        let name = auto_name(Some(op), d.commit.as_deref(), chrono::Utc::now());
        let text = description(&format!("before {op}"), d.commit.as_deref(), &d.git_ref);
        match take(&g, reporter, &name, &text).await {
            Err(SnapshotError::Proxmox { source, .. })
                if source
                    .to_string()
                    .contains("snapshot feature is not available") =>
            {
                return Ok(Some(format!(
                    "Proxmox says the storage of {} cannot snapshot it",
                    g.label
                )));
            }
            other => other?,
        }
        prune(&g, reporter, engine.config.snapshots.keep).await?;
        Ok::<_, SnapshotError>(None)
    }
    .await;
    match result {
        Ok(None) => Ok(()),
        Ok(Some(why)) => {
            let id = d.id.clone();
            let text = why.clone();
            let _ = engine
                .db
                .call(move |s| s.set_snapshot_note(&id, Some(&text)))
                .await;
            let _ = reporter
                .lines(
                    LogStream::Stderr,
                    vec![format!(
                        "warning: {why}; {op} goes on without a snapshot (said once: later changes skip it quietly)"
                    )],
                )
                .await;
            Ok(())
        }
        Err(e) if op == "destroy" => {
            // The guest may be half made or half gone: the destroy goes on.
            let _ = reporter
                .info(format!("no snapshot before destroy: {e}"))
                .await;
            Ok(())
        }
        Err(e) => {
            let message = format!(
                "the snapshot before {op} failed, so nothing was changed: {e}; try again, or take {op:?} out of [snapshots] before to go on without one"
            );
            let _ = reporter
                .lines(LogStream::Stderr, vec![message.clone()])
                .await;
            Err(message)
        }
    }
}

/// `proxdeck snapshot ID [NAME]` (the snapshot job): returns the snapshot's name.
pub async fn run_snapshot(
    engine: &Engine,
    reporter: &Reporter,
    d: &Deployment,
    name: Option<String>,
) -> Result<String, SnapshotError> {
    let name = match name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()) {
        Some(n) => {
            validate_name(&n).map_err(SnapshotError::Invalid)?;
            n
        }
        None => auto_name(None, d.commit.as_deref(), chrono::Utc::now()),
    };
    let g = guest_ref(engine, d)?;
    if let Some(why) = capability(&g).await? {
        let id = d.id.clone();
        let text = why.clone();
        let _ = engine
            .db
            .call(move |s| s.set_snapshot_note(&id, Some(&text)))
            .await;
        return Err(SnapshotError::Refused(why));
    }
    let text = description("snapshot on request", d.commit.as_deref(), &d.git_ref);
    take(&g, reporter, &name, &text).await?;
    Ok(name)
}

/// `proxdeck restore ID SNAPSHOT` (the restore job): the guest shut down cleanly (the app
/// with it), rolled back to the snapshot, started (the app's service starts with it), the
/// app's health checked, the snapshot's commit recorded. DEPLOYING → RUNNING, or FAILED with
/// the cause.
pub async fn run_restore(
    engine: &Engine,
    reporter: &Reporter,
    d: Deployment,
    snapshot: &str,
) -> Result<Deployment, SnapshotError> {
    let g = guest_ref(engine, &d)?;
    let snaps = g
        .client
        .snapshots(&g.node, g.kind, g.vmid)
        .await
        .map_err(pve(format!("listing the snapshots of {}", g.label)))?;
    let Some(snap) = snaps.iter().find(|s| s.name == snapshot) else {
        return Err(SnapshotError::Invalid(format!(
            "{} has no snapshot {snapshot:?}; it has: {}",
            g.label,
            if snaps.is_empty() {
                "none".to_string()
            } else {
                snaps
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )));
    };
    let commit = commit_of(&snap.description);
    reporter.transition(Status::Deploying, None).await?;
    match restore_steps(engine, reporter, &d, &g, snapshot, commit.as_deref()).await {
        Ok(()) => {
            if let Some(c) = commit.clone() {
                let id = d.id.clone();
                engine.db.call(move |s| s.record_commit(&id, &c)).await?;
            }
            let done = reporter.transition(Status::Running, None).await?;
            reporter
                .info(format!(
                    "restored {} to snapshot {snapshot}: RUNNING (commit {})",
                    g.label,
                    done.commit.as_deref().unwrap_or("unknown")
                ))
                .await?;
            Ok(done)
        }
        Err(e) => {
            let message = format!("restore to {snapshot}: {e}");
            let _ = reporter
                .lines(LogStream::Stderr, vec![format!("FAILED at {message}")])
                .await;
            reporter
                .transition(Status::Failed, Some(message.clone()))
                .await?;
            Err(SnapshotError::Refused(message))
        }
    }
}

async fn restore_steps(
    engine: &Engine,
    reporter: &Reporter,
    d: &Deployment,
    g: &GuestRef,
    snapshot: &str,
    commit: Option<&str>,
) -> Result<(), SnapshotError> {
    reporter
        .info(format!(
            "restoring {} to snapshot {snapshot} (commit {})",
            g.label,
            commit.unwrap_or("unknown: not taken by proxdeck")
        ))
        .await?;
    let status = g
        .client
        .guest_status(&g.node, g.kind, g.vmid)
        .await
        .map_err(pve(format!("reading the status of {}", g.label)))?;
    if status.status == "running" {
        power(g, reporter, PowerAction::Shutdown, Some(SHUTDOWN_SECS)).await?;
    }
    let what = format!("rollback of {} to {snapshot}", g.label);
    reporter.info(what.clone()).await?;
    let upid = g
        .client
        .rollback_snapshot(&g.node, g.kind, g.vmid, snapshot)
        .await
        .map_err(pve(what.clone()))?;
    let exit = g
        .client
        .wait_task(&upid, &what)
        .await
        .map_err(pve(what.clone()))?;
    reporter.info(format!("{what}: task {exit}")).await?;
    power(g, reporter, PowerAction::Start, None).await?;
    health_check(engine, reporter, d).await
}

async fn power(
    g: &GuestRef,
    reporter: &Reporter,
    action: PowerAction,
    timeout: Option<u64>,
) -> Result<(), SnapshotError> {
    let what = format!("{} of {}", action.path(), g.label);
    reporter.info(what.clone()).await?;
    let upid = g
        .client
        .power(&g.node, g.kind, g.vmid, action, timeout)
        .await
        .map_err(pve(what.clone()))?;
    let exit = g
        .client
        .wait_task(&upid, &what)
        .await
        .map_err(pve(what.clone()))?;
    reporter.info(format!("{what}: task {exit}")).await?;
    Ok(())
}

async fn health_check(
    engine: &Engine,
    reporter: &Reporter,
    d: &Deployment,
) -> Result<(), SnapshotError> {
    let Some(ip) = d.ip.clone() else {
        return Err(SnapshotError::Refused(
            "no guest address recorded to check the app at".into(),
        ));
    };
    // An app with domains answers through Caddy (its own port is closed beyond the guest).
    if !d.overrides.domains.is_empty() {
        let front = super::caddy::front_with_root(engine, reporter, d, &ip)
            .await
            .map_err(|e| SnapshotError::Refused(format!("health check: {e}")))?;
        return super::caddy::check_app(engine, reporter, d, &ip, front)
            .await
            .map_err(|e| SnapshotError::Refused(format!("health check: {e}")));
    }
    let (path, expect) = health::check_for(d, Catalog::builtin().get(&d.framework));
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip
    };
    let url = format!("http://{host}:{}{path}", d.port);
    let mut notes = Vec::new();
    let healthy = health::wait_for(&url, expect, engine.config.timeouts.health, |note| {
        if notes.len() < 3 {
            notes.push(note.to_string());
        }
    })
    .await;
    if !notes.is_empty() {
        reporter.lines(LogStream::Info, notes).await?;
    }
    let healthy = healthy.map_err(|e| SnapshotError::Refused(format!("health check: {e}")))?;
    reporter
        .info(format!(
            "{url} answered HTTP {} after {} attempt(s)",
            healthy.status, healthy.attempts
        ))
        .await?;
    Ok(())
}

/// What the dashboard's details screen shows: the guest's snapshots (a listing that fails
/// is shown as its reason, not as an error) and the deployment's auto-deploy state.
pub async fn view(
    engine: &Engine,
    id: crate::domain::DeploymentId,
) -> Result<crate::protocol::SnapshotsView, String> {
    use crate::protocol::{SnapshotItem, SnapshotsView};
    let key = id.clone();
    let (d, auto) = engine
        .db
        .call(move |s| Ok((s.get(&key)?, s.auto_deploy(&key)?)))
        .await
        .map_err(|e| e.to_string())?;
    let has_guest = d.origin != Origin::Host && d.vmid.is_some() && d.node.is_some();
    let (snapshots, unavailable) = if has_guest && d.status != Status::Deleted {
        match list(engine, &d).await {
            Ok(l) => (
                Some(Ok(l
                    .snapshots
                    .into_iter()
                    .map(|s| SnapshotItem {
                        name: s.snapshot.name,
                        taken: s.snapshot.snaptime as i64,
                        commit: s.commit,
                    })
                    .collect())),
                l.unavailable,
            ),
            Err(e) => (Some(Err(e.to_string())), None),
        }
    } else {
        (None, None)
    };
    let auto = auto.unwrap_or_default();
    Ok(SnapshotsView {
        id,
        snapshots,
        unavailable,
        auto_deploy: auto.enabled,
        auto_deploy_error: auto.last_error.zip(auto.last_error_at),
        auto_deploy_failures: auto.failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_proxmox_rules_and_carry_the_commit() {
        let at = chrono::DateTime::from_timestamp(1_796_083_200, 0).unwrap();
        let n = auto_name(Some("rollback"), Some("abcdef0123456789"), at);
        assert_eq!(n, "pd-rollback-abcdef0-20261201000000");
        assert!(validate_name(&n).is_ok() && n.len() <= 40);
        let n = auto_name(None, None, at);
        assert!(n.starts_with("snap-none-") && validate_name(&n).is_ok());
        assert!(validate_name("1abc").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name("current").is_err());
        assert!(validate_name(&"a".repeat(41)).is_err());
    }

    #[test]
    fn the_commit_comes_back_from_the_description() {
        let text = description("before redeploy", Some("abc123"), "main");
        assert_eq!(text, "proxdeck before redeploy; commit=abc123; ref=main");
        assert_eq!(commit_of(&text).as_deref(), Some("abc123"));
        assert_eq!(commit_of(&description("x", None, "")), None);
        assert_eq!(commit_of("made by hand"), None);
        assert_eq!(commit_of("commit=; rm -rf"), None);
    }

    #[test]
    fn storage_decides_whether_a_guest_can_snapshot() {
        let types: HashMap<String, String> =
            [("local", "dir"), ("local-lvm", "lvmthin"), ("thick", "lvm")]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
        let v = |s: &str| vec![s.to_string()];
        assert_eq!(
            why_not(GuestKind::Lxc, &v("local-lvm:vm-1-disk-0"), &types),
            None
        );
        let why = why_not(GuestKind::Lxc, &v("local:1/vm-1-disk-0.raw"), &types).unwrap();
        assert!(why.contains("local (dir)"), "{why}");
        assert_eq!(
            why_not(GuestKind::Qemu, &v("local:1/vm-1-disk-0.qcow2"), &types),
            None
        );
        let why = why_not(GuestKind::Qemu, &v("local:1/vm-1-disk-0.raw"), &types).unwrap();
        assert!(why.contains("qcow2"), "{why}");
        assert!(why_not(GuestKind::Qemu, &v("thick:vm-1-disk-0"), &types).is_some());
        assert!(preflight_warning(GuestKind::Lxc, "local", "dir").is_some());
        assert!(preflight_warning(GuestKind::Lxc, "local-lvm", "lvmthin").is_none());
        assert!(preflight_warning(GuestKind::Qemu, "local", "dir").is_none());
    }
}
