//! The cluster as proxdeck sees it (`proxdeck resources`) and `proxdeck sync`: every VM and
//! container, matched by vmid against the store; unknown guests imported as `Origin::Imported`
//! entries, known ones updated (node, RUNNING/STOPPED, an imported guest's size), entries whose
//! guest is gone marked `missing_since`, returning ones unmarked. A second sync changes nothing.
//!
//! Owns the matching ([`Known::classify`]: what one guest is to proxdeck) and the plan; the
//! store applies it in one transaction, set-based
//! ([`Store::apply_sync`](crate::store::Store::apply_sync)). Every step is linear in the number
//! of guests and entries (hash maps, no lookup per guest in the database). A row the store
//! cannot read or record is reported in `rejected`; the rest is applied. It must never delete
//! anything on Proxmox, never import templates, and never mark entries missing from a view it
//! knows to be partial (credentials that cannot see every guest).
//! Guests that carry the id of no live deployment of this proxdeck (`identity::orphans`) are
//! shown as orphans and never imported.

use super::Engine;
use super::identity;
use super::proxmox::api::{GuestKind, Node, Resource};
use super::proxmox::{Client, ProxmoxError};
use crate::domain::{Deployment, DeploymentId, Origin, Status};
use crate::store::sync::SyncView;
use crate::store::{GuestUpdate, Rejected, StoreError, SyncChanges, now_ms};
use serde::Serialize;
use std::collections::HashMap;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Proxmox(#[from] ProxmoxError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the installation id: {0}")]
    Installation(#[from] std::io::Error),
    #[error(
        "{identity} sees no privileges on Proxmox (a privilege-separated API token without ACL entries sees empty lists, not errors); grant it a role, e.g. `pveum acl modify / --tokens '{token}' --roles PVEAuditor` (PVEVMAdmin to deploy), then sync again"
    )]
    SeesNothing { identity: String, token: String },
}

/// The proxdeck entry a guest belongs to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tracked {
    pub id: DeploymentId,
    pub name: String,
    pub origin: Origin,
    pub status: Status,
}

/// One VM or container, with its proxdeck entry if any.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Guest {
    pub vmid: u32,
    #[serde(rename = "type")]
    pub kind: GuestKind,
    pub node: String,
    pub name: String,
    pub status: String,
    /// CPU use as a fraction of `maxcpu` (0.0-1.0).
    pub cpu: f64,
    pub maxcpu: u64,
    pub mem: u64,
    pub maxmem: u64,
    pub disk: u64,
    pub maxdisk: u64,
    pub uptime: u64,
    pub template: bool,
    pub tags: Vec<String>,
    pub lock: Option<String>,
    /// Created by proxdeck (origin terraform or host): proxdeck manages it.
    pub managed: bool,
    /// The proxdeck entry for this guest (managed, or imported by sync).
    pub deployment: Option<Tracked>,
    /// Set when the guest carries the id of no live deployment of this proxdeck
    /// (`identity::orphans`): `proxdeck remove-orphan VMID` removes it.
    pub orphan: Option<OrphanNote>,
}

/// Why a guest is an orphan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrphanNote {
    /// The deployment id the guest carries.
    pub deployment: DeploymentId,
    pub why: String,
}

/// Every node and guest of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterView {
    pub nodes: Vec<Node>,
    pub guests: Vec<Guest>,
}

/// One entry sync touched.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SyncEntry {
    pub id: DeploymentId,
    pub name: String,
    pub vmid: Option<u32>,
    pub node: Option<String>,
    /// What changed ("node pve1 → pve2", "RUNNING → STOPPED", ...).
    pub changes: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct SyncReport {
    pub imported: Vec<SyncEntry>,
    pub updated: Vec<SyncEntry>,
    pub missing: Vec<SyncEntry>,
    pub returned: Vec<SyncEntry>,
    /// Known guests with nothing to change.
    pub unchanged: usize,
    /// Rows that could not be read or recorded, each with the reason; the rest was applied.
    pub rejected: Vec<SyncEntry>,
    pub templates_skipped: usize,
    pub guests: usize,
    /// Guests carrying the id of no live deployment of this proxdeck: not imported;
    /// `proxdeck remove-orphan VMID` removes one.
    pub orphans: Vec<identity::Orphan>,
    pub warnings: Vec<String>,
}

impl SyncReport {
    pub fn changed_anything(&self) -> bool {
        !(self.imported.is_empty()
            && self.updated.is_empty()
            && self.missing.is_empty()
            && self.returned.is_empty())
    }
}

fn client(engine: &Engine) -> Result<Client, SyncError> {
    Ok(Client::new(engine.config.proxmox()?)?)
}

/// The store's entries, indexed for matching guests.
pub struct Known<'a> {
    /// The live entry per vmid (the newest when, oddly, there are several).
    by_vmid: HashMap<u32, &'a Deployment>,
    /// Entries by id (live or deleted).
    by_id: HashMap<&'a str, &'a Deployment>,
    /// Rows the store could not read, by the vmid they hold: their guests are left alone.
    unreadable: HashMap<u32, &'a Rejected>,
}

/// What one guest of the cluster is to proxdeck.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Classified<'a> {
    /// A template: never imported.
    Template,
    /// The guest of this entry.
    Known(&'a Deployment),
    /// A guest proxdeck has no entry for: sync imports it.
    Unknown,
    /// Its entry is unreadable: left alone, reported.
    Unreadable(&'a Rejected),
}

impl<'a> Known<'a> {
    pub fn new(view: &'a SyncView) -> Known<'a> {
        let mut by_vmid: HashMap<u32, &Deployment> = HashMap::with_capacity(view.entries.len());
        let mut by_id = HashMap::with_capacity(view.entries.len());
        for d in &view.entries {
            by_id.insert(d.id.0.as_str(), d);
            if d.status == Status::Deleted {
                continue;
            }
            if let Some(v) = d.vmid {
                match by_vmid.get(&v) {
                    Some(old) if old.created_at >= d.created_at => {}
                    _ => {
                        by_vmid.insert(v, d);
                    }
                }
            }
        }
        let unreadable = view
            .unreadable
            .iter()
            .filter_map(|r| Some((r.vmid?, r)))
            .collect();
        Known {
            by_vmid,
            by_id,
            unreadable,
        }
    }

    /// The live entry holding `vmid`.
    pub fn by_vmid(&self, vmid: u32) -> Option<&'a Deployment> {
        self.by_vmid.get(&vmid).copied()
    }

    /// The entry with this id (live or deleted).
    pub fn by_id(&self, id: &str) -> Option<&'a Deployment> {
        self.by_id.get(id).copied()
    }

    /// What a guest (a `qemu` or `lxc` resource with a vmid) is to proxdeck.
    pub fn classify(&self, r: &Resource, vmid: u32) -> Classified<'a> {
        if r.template {
            return Classified::Template;
        }
        if let Some(bad) = self.unreadable.get(&vmid) {
            return Classified::Unreadable(bad);
        }
        match self.by_vmid(vmid) {
            Some(d) => Classified::Known(d),
            None => Classified::Unknown,
        }
    }
}

fn guest_of(r: &Resource, tracked: Option<&Deployment>) -> Option<Guest> {
    Some(Guest {
        vmid: r.vmid?,
        kind: r.guest_kind()?,
        node: r.node.clone().unwrap_or_default(),
        name: r.name.clone().unwrap_or_default(),
        status: r.status.clone().unwrap_or_else(|| "unknown".into()),
        cpu: r.cpu,
        maxcpu: r.maxcpu,
        mem: r.mem,
        maxmem: r.maxmem,
        disk: r.disk,
        maxdisk: r.maxdisk,
        uptime: r.uptime,
        template: r.template,
        tags: r.tag_list(),
        lock: r.lock.clone(),
        managed: tracked.is_some_and(|d| d.origin != Origin::Imported),
        deployment: tracked.map(|d| Tracked {
            id: d.id.clone(),
            name: d.name.clone(),
            origin: d.origin,
            status: d.status,
        }),
        orphan: None,
    })
}

/// Every node and guest of the cluster, each guest with its proxdeck entry.
pub async fn resources(engine: &Engine) -> Result<ClusterView, SyncError> {
    let client = client(engine)?;
    let (nodes, guests) = tokio::try_join!(client.nodes(), client.guests())?;
    let view = engine.db.call(|s| s.sync_view()).await?;
    let known = Known::new(&view);
    let installation = identity::installation(&engine.paths)?;
    let orphans: HashMap<u32, identity::Orphan> =
        identity::orphans(&guests, &view.entries, &installation)
            .into_iter()
            .map(|o| (o.vmid, o))
            .collect();
    let mut guests: Vec<Guest> = guests
        .iter()
        .filter_map(|r| guest_of(r, r.vmid.and_then(|v| known.by_vmid(v))))
        .map(|mut g| {
            g.orphan = orphans.get(&g.vmid).map(|o| OrphanNote {
                deployment: o.deployment.clone(),
                why: o.why.clone(),
            });
            g
        })
        .collect();
    guests.sort_by_key(|g| g.vmid);
    let mut nodes = nodes;
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(ClusterView { nodes, guests })
}

/// A guest's status as a deployment status, when it is a settled one.
fn status_of(guest_status: &str) -> Option<Status> {
    match guest_status {
        "running" => Some(Status::Running),
        "stopped" => Some(Status::Stopped),
        _ => None,
    }
}

/// A name for an imported guest: its Proxmox name if it is a usable one, else `guest-VMID`.
fn import_name(r: &Resource, vmid: u32) -> String {
    let name = r.name.as_deref().unwrap_or("").trim().to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !name.starts_with('-');
    if ok { name } else { format!("guest-{vmid}") }
}

fn size_of(r: &Resource) -> (u32, u32, u32) {
    let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    (
        clamp(r.maxcpu.max(1)),
        clamp(r.maxmem / MIB),
        clamp(r.maxdisk.div_ceil(GIB)),
    )
}

/// What sync would change, from the cluster's guests and the store's entries. Pure: the
/// tests drive it with made-up lists.
pub fn plan(
    guests: &[Resource],
    view: &SyncView,
    can_see_all: bool,
    now: i64,
) -> (SyncChanges, SyncReport) {
    let known = Known::new(view);
    let mut changes = SyncChanges {
        at: now,
        ..SyncChanges::default()
    };
    let mut report = SyncReport {
        guests: guests.len(),
        ..SyncReport::default()
    };
    let mut present = std::collections::HashSet::with_capacity(guests.len());
    for r in guests {
        let (Some(vmid), Some(kind)) = (r.vmid, r.guest_kind()) else {
            continue;
        };
        present.insert(vmid);
        let node = r.node.clone().unwrap_or_default();
        let status = r.status.as_deref().and_then(status_of);
        match known.classify(r, vmid) {
            Classified::Template => report.templates_skipped += 1,
            // Reported once below, with every unreadable row.
            Classified::Unreadable(_) => {}
            Classified::Unknown => {
                let (cores, memory_mib, disk_gib) = size_of(r);
                let d = Deployment {
                    id: DeploymentId::random(),
                    name: import_name(r, vmid),
                    guest_type: kind.into(),
                    cores,
                    memory_mib,
                    disk_gib,
                    node: Some(node.clone()),
                    vmid: Some(vmid),
                    // A guest on an offline node shows "unknown": recorded as STOPPED until
                    // a sync sees it running.
                    status: status.unwrap_or(Status::Stopped),
                    stage: None,
                    origin: Origin::Imported,
                    created_at: now,
                    updated_at: now,
                    ..Deployment::default()
                };
                report.imported.push(SyncEntry {
                    id: d.id.clone(),
                    name: d.name.clone(),
                    vmid: Some(vmid),
                    node: Some(node),
                    changes: vec![format!("imported as {}", d.status)],
                });
                changes.imports.push(d);
            }
            Classified::Known(d) => {
                plan_known(d, r, vmid, node, status, &mut changes, &mut report);
            }
        }
    }
    for bad in &view.unreadable {
        report.rejected.push(SyncEntry {
            id: bad.id.clone(),
            name: String::new(),
            vmid: bad.vmid,
            node: None,
            changes: vec![bad.reason.clone()],
        });
    }
    for d in &view.entries {
        let Some(vmid) = d.vmid else { continue };
        if d.status == Status::Deleted || present.contains(&vmid) || d.missing_since.is_some() {
            continue;
        }
        // A PENDING or in-flight deployment may not have its guest yet.
        let settled = d.origin == Origin::Imported
            || matches!(d.status, Status::Running | Status::Stopped | Status::Failed);
        if !settled {
            continue;
        }
        if !can_see_all {
            continue;
        }
        changes.missing.push(d.id.clone());
        report.missing.push(SyncEntry {
            id: d.id.clone(),
            name: d.name.clone(),
            vmid: Some(vmid),
            node: d.node.clone(),
            changes: vec!["guest not on the cluster".into()],
        });
    }
    if !can_see_all {
        report.warnings.push(
            "the credentials lack VM.Audit on /vms, so some guests may be invisible: nothing was marked missing".into(),
        );
    }
    (changes, report)
}

/// The changes for a guest proxdeck knows: node, RUNNING/STOPPED, an imported guest's size,
/// back from missing.
fn plan_known(
    d: &Deployment,
    r: &Resource,
    vmid: u32,
    node: String,
    status: Option<Status>,
    changes: &mut SyncChanges,
    report: &mut SyncReport,
) {
    let mut update = GuestUpdate {
        id: d.id.clone(),
        ..GuestUpdate::default()
    };
    let mut what = Vec::new();
    if !node.is_empty() && d.node.as_deref() != Some(node.as_str()) {
        what.push(format!(
            "node {} → {node}",
            d.node.as_deref().unwrap_or("-")
        ));
        update.node = Some(node.clone());
    }
    if let Some(s) = status
        && s != d.status
        && matches!(d.status, Status::Running | Status::Stopped)
    {
        what.push(format!("{} → {s}", d.status));
        update.status = Some(s);
    }
    if d.origin == Origin::Imported {
        let size = size_of(r);
        if size != (d.cores, d.memory_mib, d.disk_gib) {
            what.push(format!(
                "size {}c/{}MiB/{}GiB → {}c/{}MiB/{}GiB",
                d.cores, d.memory_mib, d.disk_gib, size.0, size.1, size.2
            ));
            update.resources = Some(size);
        }
    }
    if d.missing_since.is_some() {
        changes.returned.push(d.id.clone());
        report.returned.push(SyncEntry {
            id: d.id.clone(),
            name: d.name.clone(),
            vmid: Some(vmid),
            node: Some(node.clone()),
            changes: vec!["back on the cluster".into()],
        });
    }
    if what.is_empty() {
        if d.missing_since.is_none() {
            report.unchanged += 1;
        }
    } else {
        report.updated.push(SyncEntry {
            id: d.id.clone(),
            name: d.name.clone(),
            vmid: Some(vmid),
            node: Some(node),
            changes: what,
        });
        changes.updates.push(update);
    }
}

/// Imports, updates and marks missing as described in the module docs.
pub async fn sync(engine: &Engine) -> Result<SyncReport, SyncError> {
    let client = client(engine)?;
    let perms = client.permissions().await?;
    if perms.is_empty() {
        let identity = client.identity();
        let token = identity
            .strip_prefix("API token ")
            .unwrap_or("USER@REALM!TOKEN")
            .to_string();
        return Err(SyncError::SeesNothing { identity, token });
    }
    let can_see_all = perms.holds("/vms", "VM.Audit");
    let (guests, view) = tokio::try_join!(
        async { client.guests().await.map_err(SyncError::from) },
        async {
            engine
                .db
                .call(|s| s.sync_view())
                .await
                .map_err(SyncError::from)
        },
    )?;
    // Orphans (guests of this proxdeck's deployments that are gone) are reported, not
    // imported: `proxdeck remove-orphan` removes them.
    let installation = identity::installation(&engine.paths)?;
    let orphans = identity::orphans(&guests, &view.entries, &installation);
    let total = guests.len();
    let orphaned: std::collections::HashSet<u32> = orphans.iter().map(|o| o.vmid).collect();
    let guests: Vec<Resource> = guests
        .into_iter()
        .filter(|g| g.vmid.is_none_or(|v| !orphaned.contains(&v)))
        .collect();
    let (changes, mut report) = plan(&guests, &view, can_see_all, now_ms());
    report.guests = total;
    report.orphans = orphans;
    let planned = changes.imports.len();
    let outcome = engine.db.call(move |s| s.apply_sync(&changes)).await?;
    absorb(
        &mut report,
        &view,
        outcome.imported,
        outcome.rejected,
        planned,
    );
    engine.audit(
        "sync",
        &DeploymentId(String::new()),
        serde_json::json!({
            "imported": report.imported.len(),
            "updated": report.updated.len(),
            "missing": report.missing.len(),
            "returned": report.returned.len(),
            "guests": report.guests,
        }),
    );
    Ok(report)
}

/// Puts what the store did into the report: the imports as recorded (another sync may have
/// imported some meanwhile; names and ids are final), and the rows it refused, taken out of
/// the lists of what changed.
fn absorb(
    report: &mut SyncReport,
    view: &SyncView,
    imported: Vec<Deployment>,
    rejected: Vec<Rejected>,
    planned: usize,
) {
    let planned_imports: HashMap<DeploymentId, SyncEntry> = std::mem::take(&mut report.imported)
        .into_iter()
        .map(|e| (e.id.clone(), e))
        .collect();
    report.imported = imported
        .iter()
        .map(|d| SyncEntry {
            id: d.id.clone(),
            name: d.name.clone(),
            vmid: d.vmid,
            node: d.node.clone(),
            changes: vec![format!("imported as {}", d.status)],
        })
        .collect();
    let refused: std::collections::HashSet<&DeploymentId> =
        rejected.iter().map(|r| &r.id).collect();
    for list in [
        &mut report.updated,
        &mut report.missing,
        &mut report.returned,
    ] {
        list.retain(|e| !refused.contains(&e.id));
    }
    let known = Known::new(view);
    for r in &rejected {
        let (name, vmid, node) = match (planned_imports.get(&r.id), known.by_id(&r.id.0)) {
            (Some(e), _) => (e.name.clone(), e.vmid, e.node.clone()),
            (None, Some(d)) => (d.name.clone(), d.vmid, d.node.clone()),
            (None, None) => (String::new(), r.vmid, None),
        };
        report.rejected.push(SyncEntry {
            id: r.id.clone(),
            name,
            vmid,
            node,
            changes: vec![r.reason.clone()],
        });
    }
    let refused_imports = rejected
        .iter()
        .filter(|r| planned_imports.contains_key(&r.id))
        .count();
    let skipped = planned.saturating_sub(imported.len() + refused_imports);
    if skipped > 0 {
        report.warnings.push(format!(
            "{skipped} guests were imported by another proxdeck meanwhile"
        ));
    }
    if !report.rejected.is_empty() {
        report.warnings.push(format!(
            "{} rows could not be read or recorded (listed as rejected, with the reason); everything else was applied",
            report.rejected.len()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(vmid: u32, kind: &str, node: &str, status: &str) -> Resource {
        Resource {
            id: format!("{kind}/{vmid}"),
            kind: kind.into(),
            node: Some(node.into()),
            vmid: Some(vmid),
            name: Some(format!("g{vmid}")),
            status: Some(status.into()),
            maxcpu: 2,
            maxmem: 1024 * MIB,
            maxdisk: 8 * GIB,
            ..Resource::default()
        }
    }

    fn entry(id: &str, vmid: u32, origin: Origin, status: Status) -> Deployment {
        Deployment {
            id: DeploymentId(id.into()),
            name: id.into(),
            vmid: Some(vmid),
            node: Some("pve1".into()),
            origin,
            status,
            cores: 2,
            memory_mib: 1024,
            disk_gib: 8,
            ..Deployment::default()
        }
    }

    #[test]
    fn unknown_guests_are_imported_known_ones_updated_gone_ones_missing() {
        let guests = [
            guest(100, "lxc", "pve1", "running"),
            guest(101, "qemu", "pve2", "stopped"),
            guest(102, "lxc", "pve1", "running"),
            Resource {
                template: true,
                ..guest(9000, "qemu", "pve1", "stopped")
            },
        ];
        let list = [
            entry("aaa", 101, Origin::Terraform, Status::Running),
            entry("bbb", 102, Origin::Imported, Status::Running),
            entry("ccc", 103, Origin::Imported, Status::Stopped),
            entry("ddd", 104, Origin::Terraform, Status::Provisioning),
        ];
        let view = SyncView {
            entries: list.to_vec(),
            unreadable: vec![],
        };
        let (changes, report) = plan(&guests, &view, true, 7);
        assert_eq!(changes.imports.len(), 1);
        assert_eq!(changes.imports[0].vmid, Some(100));
        assert_eq!(changes.imports[0].origin, Origin::Imported);
        assert_eq!(changes.imports[0].status, Status::Running);
        assert_eq!(changes.updates.len(), 1);
        assert_eq!(changes.updates[0].node.as_deref(), Some("pve2"));
        assert_eq!(changes.updates[0].status, Some(Status::Stopped));
        assert_eq!(changes.missing, [DeploymentId("ccc".into())]);
        assert_eq!(report.unchanged, 1);
        assert_eq!(report.templates_skipped, 1);
        // A partial view marks nothing missing.
        let (changes, report) = plan(&guests, &view, false, 7);
        assert!(changes.missing.is_empty());
        assert_eq!(report.warnings.len(), 1);
    }

    #[test]
    fn a_returning_guest_is_unmarked() {
        let mut d = entry("aaa", 100, Origin::Imported, Status::Running);
        d.missing_since = Some(1);
        let view = SyncView {
            entries: vec![d],
            unreadable: vec![],
        };
        let (changes, report) = plan(&[guest(100, "lxc", "pve1", "running")], &view, true, 7);
        assert_eq!(changes.returned.len(), 1);
        assert_eq!(report.returned.len(), 1);
        assert!(changes.updates.is_empty());
    }

    #[test]
    fn odd_names_become_guest_vmid() {
        let mut r = guest(100, "qemu", "pve1", "running");
        r.name = Some("My VM!".into());
        assert_eq!(import_name(&r, 100), "guest-100");
        r.name = Some("Web-1".into());
        assert_eq!(import_name(&r, 100), "web-1");
    }
}
