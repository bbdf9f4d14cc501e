//! Stage `preflight`: fail fast, before any guest exists. The repository answers and the ref
//! exists (`git ls-remote`, run on this machine); then Proxmox: it answers and the credentials
//! work; they hold the privileges the deployment needs (a privilege-separated token without
//! ACL entries sees empty lists, not errors, so that is checked first); the node exists and is
//! online (or, with `auto`, the best node is chosen: see `proxmox::placement`); the datastore
//! exists there, is active, allows the content (`rootdir` or `images`) and has room; the OS
//! template is on its storage (which allows `vztmpl`); the bridge exists on the node; memory
//! and cores fit the node; the reserved vmid is free on the cluster (else another is reserved),
//! unless it holds this deployment's own guest from an interrupted run (found by the id the
//! guest carries: see `identity`), which then keeps its vmid and node so the terraform stage
//! adopts it instead of making a second guest.
//!
//! Every Proxmox problem found is one line saying what to fix; all of them are reported
//! together. The Proxmox client is left on the `Ctx` for later stages.

use super::{Ctx, StageResult, fail};
use crate::config::AUTO_NODE;
use crate::domain::Stage;
use crate::engine::identity;
use crate::engine::proxmox::ProxmoxError;
use crate::engine::proxmox::api::{self, GuestKind, Resource};
use crate::engine::proxmox::checks::names;
use crate::engine::proxmox::{Client, checks, placement};
use crate::protocol::LogStream;
use crate::store::Facts;

const MIB: u64 = 1024 * 1024;
/// Where a vmid is re-reserved when the reserved one turns out to be taken on the cluster:
/// Proxmox's own range of guest ids.
pub(super) async fn run(cx: &mut Ctx<'_>) -> StageResult<()> {
    check_repo(cx).await?;
    check_proxmox(cx).await
}

fn pfail(e: &dyn std::fmt::Display) -> super::Failure {
    fail(Stage::Preflight)(e)
}

/// Checks Proxmox; collects every problem, then fails with all of them.
async fn check_proxmox(cx: &mut Ctx<'_>) -> StageResult<()> {
    let client = Client::new(&cx.proxmox).map_err(|e| pfail(&e))?;
    // Nothing else can be checked without an answer and working credentials.
    let version = client.version().await.map_err(|e| pfail(&e))?;
    cx.info(format!(
        "Proxmox VE {} answers at {} as {} (TLS {})",
        version.version,
        client.endpoint(),
        client.identity(),
        client.tls_mode()
    ))
    .await?;
    let major: u32 = version
        .version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(8);

    let mut problems: Vec<String> = Vec::new();
    let perms = match client.permissions().await {
        Ok(p) => Some(p),
        Err(e) => {
            problems.push(format!("cannot read the credentials' permissions: {e}"));
            None
        }
    };
    if let Some(p) = &perms
        && p.is_empty()
    {
        problems.push(format!(
            "{} holds no privileges on Proxmox: a privilege-separated API token sees empty lists, not errors; grant it a role (e.g. `pveum acl modify / --tokens 'USER@REALM!ID' --roles PVEVMAdmin`, plus PVEDatastoreUser on the storage) or use a token without privilege separation",
            client.identity()
        ));
        return report(cx, problems).await;
    }

    let nodes = client.nodes().await.map_err(|e| pfail(&e))?;
    // The cluster's guests (for the vmid check), and among them this deployment's own from an
    // earlier, interrupted run: found by the id they carry, whatever the state says.
    let installation = identity::installation(&cx.engine.paths)
        .map_err(|e| pfail(&format!("the installation id: {e}")))?;
    let guests = client.guests().await;
    let own: Vec<Resource> = match &guests {
        Ok(list) => identity::guests_of(list, &cx.d.id, &installation)
            .into_iter()
            .cloned()
            .collect(),
        Err(_) => Vec::new(),
    };
    if cx.node == AUTO_NODE
        && let Some(node) = own.iter().find_map(|g| g.node.clone())
    {
        // Placement again could pick another node and leave that guest behind.
        cx.info(format!(
            "this deployment's guest from an earlier run is on node {node}: staying there"
        ))
        .await?;
        cx.node = node.clone();
        let facts = Facts {
            node: Some(node.clone()),
            ..Facts::default()
        };
        let id = cx.d.id.clone();
        cx.engine
            .db
            .call(move |s| s.record_facts(&id, &facts))
            .await
            .map_err(|e| pfail(&e))?;
        cx.d.node = Some(node);
    }
    let node = if cx.node == AUTO_NODE {
        let need = placement::Need {
            cores: cx.d.cores,
            memory_mib: cx.d.memory_mib,
            disk_gib: cx.d.disk_gib,
            datastore: cx.engine.config.guest.datastore.clone(),
        };
        match placement::place(&client, &need).await {
            Ok(p) => {
                cx.info(format!(
                    "placed on node {} ({} MiB free memory, the most of the nodes that fit{})",
                    p.node,
                    p.free_mem / MIB,
                    if p.passed_over.is_empty() {
                        String::new()
                    } else {
                        format!("; passed over: {}", p.passed_over.join("; "))
                    }
                ))
                .await?;
                cx.node = p.node.clone();
                let facts = Facts {
                    node: Some(p.node.clone()),
                    ..Facts::default()
                };
                let id = cx.d.id.clone();
                cx.engine
                    .db
                    .call(move |s| s.record_facts(&id, &facts))
                    .await
                    .map_err(|e| pfail(&e))?;
                cx.d.node = Some(p.node);
                nodes.iter().find(|n| n.node == cx.node).cloned()
            }
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        }
    } else {
        match nodes.iter().find(|n| n.node == cx.node) {
            None if nodes.is_empty() => {
                problems.push(format!(
                    "Proxmox lists no nodes to {}: it sees nothing; grant it a role (e.g. PVEVMAdmin on /)",
                    client.identity()
                ));
                None
            }
            None => {
                problems.push(format!(
                    "node {} does not exist; the cluster has {}: set proxmox.node or deploy --node (or \"auto\")",
                    cx.node,
                    names(nodes.iter().map(|n| n.node.as_str()))
                ));
                None
            }
            Some(n) if !n.online() => {
                problems.push(format!(
                    "node {} is {}: bring it back, or deploy to another node (--node NAME, or --node auto); online: {}",
                    n.node,
                    if n.status.is_empty() { "not online" } else { &n.status },
                    names(nodes.iter().filter(|n| n.online()).map(|n| n.node.as_str()))
                ));
                None
            }
            Some(n) => Some(n.clone()),
        }
    };

    let kind = GuestKind::from(cx.d.guest_type);
    let template_storage = checks::template_storage(kind, &cx.engine.config.guest);
    if let Some(node) = &node {
        let need = checks::Need {
            cores: cx.d.cores,
            memory_mib: cx.d.memory_mib,
            disk_gib: cx.d.disk_gib,
        };
        problems.extend(
            checks::node_problems(&client, node, &cx.engine.config.guest, kind, Some(&need)).await,
        );
    } else if problems.is_empty() {
        problems.push(format!("node {} cannot be checked", cx.node));
    }

    if cx.d.guest_type == crate::domain::GuestType::Vm {
        match cx.engine.config.vm.template_vmid {
            Some(vmid) => {
                let template_node = cx.engine.config.vm.template_node.as_deref();
                if let Some(p) = checks::vm_template_problem(&client, vmid, template_node).await {
                    problems.push(p);
                }
            }
            None => problems.push(
                "VM deployments clone a cloud-init template: set vm.template_vmid in the config"
                    .to_string(),
            ),
        }
    }

    check_vmid(cx, &client, guests, &own, &installation, &mut problems).await?;

    if let Some(perms) = &perms {
        let bridge = cx.engine.config.guest.bridge.clone();
        let missing: Vec<String> = api::needed_privileges(
            kind,
            cx.d.vmid,
            &cx.engine.config.guest.datastore,
            template_storage.as_deref(),
            &bridge,
        )
        .into_iter()
        .filter(|n| major >= 8 || n.privilege != "SDN.Use")
        .filter(|n| !perms.holds(&n.path, n.privilege))
        .map(|n| format!("{} on {}", n.privilege, n.path))
        .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{} lacks privileges this deployment needs: {}; grant them on Proxmox (Datacenter > Permissions; the PVEVMAdmin role on / and PVEDatastoreUser on the storage cover them)",
                client.identity(),
                missing.join(", ")
            ));
        }
    }
    if let Some(node) = &node {
        snapshot_warning(cx, &client, &node.node, kind).await?;
    }
    cx.pve = Some(client);
    report(cx, problems).await
}

/// Says once (a warning, not a failure: the app deploys fine without snapshots) when the datastore
/// cannot snapshot this kind of guest, and notes it so later changes skip the snapshot quietly.
async fn snapshot_warning(
    cx: &Ctx<'_>,
    client: &Client,
    node: &str,
    kind: GuestKind,
) -> StageResult<()> {
    if cx.engine.config.snapshots.before.is_empty() {
        return Ok(());
    }
    let datastore = &cx.engine.config.guest.datastore;
    let Ok(storages) = client.storages(node).await else {
        return Ok(()); // node_problems has said it already
    };
    let Some(store) = storages.iter().find(|s| &s.storage == datastore) else {
        return Ok(());
    };
    let Some(why) = crate::engine::snapshots::preflight_warning(kind, datastore, &store.kind)
    else {
        return Ok(());
    };
    let id = cx.d.id.clone();
    let note = why.clone();
    let new = cx
        .engine
        .db
        .call(move |s| s.set_snapshot_note(&id, Some(&note)))
        .await
        .map_err(|e| pfail(&e))?;
    if new {
        let _ = cx
            .reporter
            .lines(LogStream::Stderr, vec![format!("warning: {why}")])
            .await;
    }
    Ok(())
}

/// The reserved vmid is free on the cluster, or holds this deployment's own guest (from an
/// earlier run: the state holds it, or it carries this deployment's id, and the terraform
/// stage adopts it); else another vmid is reserved. When the reserved vmid is free but a guest
/// carrying this deployment's id exists at another vmid and no state holds anything, that
/// vmid is reserved again so the guest is adopted rather than duplicated.
async fn check_vmid(
    cx: &mut Ctx<'_>,
    client: &Client,
    guests: Result<Vec<Resource>, ProxmoxError>,
    own: &[Resource],
    installation: &str,
    problems: &mut Vec<String>,
) -> StageResult<()> {
    let Some(vmid) = cx.d.vmid else {
        return Ok(());
    };
    let guests = match guests {
        Ok(g) => g,
        Err(e) => {
            problems.push(format!(
                "cannot list the cluster's guests to check vmid {vmid}: {e}"
            ));
            return Ok(());
        }
    };
    let ws = cx.engine.paths.workspace(&cx.d.id);
    let state = crate::engine::terraform::has_state(&ws);
    let Some(owner) = guests.iter().find(|g| g.vmid == Some(vmid)) else {
        if !state
            && let Some(g) = own.iter().find(|g| g.vmid.is_some())
            && let Some(theirs) = g.vmid
            && reserve_exactly(cx, theirs).await?
        {
            return cx
                .info(format!(
                    "vmid {vmid} is free, but {} {theirs} on {} carries this deployment's id (from an interrupted run): vmid {theirs} reserved again, so the terraform stage adopts it",
                    g.guest_kind().map(GuestKind::label).unwrap_or("guest"),
                    g.node.as_deref().unwrap_or("?")
                ))
                .await;
        }
        return cx.info(format!("vmid {vmid} is free")).await;
    };
    if state {
        return cx
            .info(format!(
                "vmid {vmid} exists: this deployment's guest from an earlier run"
            ))
            .await;
    }
    if carries_this_deployment(cx, client, owner, installation).await {
        return cx
            .info(format!(
                "vmid {vmid} holds {} {vmid} ({}), which carries this deployment's id: its guest from an interrupted run, which the terraform stage adopts",
                owner.guest_kind().map(GuestKind::label).unwrap_or("guest"),
                owner.name.as_deref().unwrap_or("unnamed")
            ))
            .await;
    }
    let taken: std::collections::HashSet<u32> = guests.iter().filter_map(|g| g.vmid).collect();
    let id = cx.d.id.clone();
    let range = cx.engine.config.guest.vmid_range.clone();
    let fresh = cx
        .engine
        .db
        .call(move |s| {
            let v = s.allocate_vmid(range, &id, &taken)?;
            s.record_facts(
                &id,
                &Facts {
                    vmid: Some(v),
                    ..Facts::default()
                },
            )?;
            Ok(v)
        })
        .await
        .map_err(|e| pfail(&e))?;
    cx.d.vmid = Some(fresh);
    cx.info(format!(
        "vmid {vmid} is taken on the cluster by {} {} ({}) on {}: reserved vmid {fresh} instead",
        owner.guest_kind().map(GuestKind::label).unwrap_or("guest"),
        vmid,
        owner.name.as_deref().unwrap_or("unnamed"),
        owner.node.as_deref().unwrap_or("?")
    ))
    .await
}

/// Whether `g` carries this deployment's id: its tags, else its description (read from its
/// configuration when the tags were edited away).
async fn carries_this_deployment(
    cx: &Ctx<'_>,
    client: &Client,
    g: &Resource,
    installation: &str,
) -> bool {
    let mark = match identity::mark_of(g) {
        Some(m) => Some(m),
        None => match (g.node.as_deref(), g.guest_kind(), g.vmid) {
            (Some(node), Some(kind), Some(vmid)) => client
                .guest_config(node, kind, vmid)
                .await
                .ok()
                .and_then(|c| {
                    identity::read_mark(&[], c.get("description").and_then(|d| d.as_str()))
                }),
            _ => None,
        },
    };
    mark.is_some_and(|m| identity::marks_deployment(&m, &cx.d.id, installation))
}

/// Reserves exactly `vmid` for this deployment (replacing its reservation) when no other
/// deployment holds it; false when one does.
async fn reserve_exactly(cx: &mut Ctx<'_>, vmid: u32) -> StageResult<bool> {
    let id = cx.d.id.clone();
    // The current reservation counts as taken, so the store moves it rather than keeps it.
    let current: std::collections::HashSet<u32> = cx.d.vmid.into_iter().collect();
    let reserved = cx
        .engine
        .db
        .call(move |s| match s.allocate_vmid(vmid..=vmid, &id, &current) {
            Ok(v) => {
                s.record_facts(
                    &id,
                    &Facts {
                        vmid: Some(v),
                        ..Facts::default()
                    },
                )?;
                Ok(true)
            }
            Err(crate::store::StoreError::VmidsExhausted { .. }) => Ok(false),
            Err(e) => Err(e),
        })
        .await
        .map_err(|e| pfail(&e))?;
    if reserved {
        cx.d.vmid = Some(vmid);
    }
    Ok(reserved)
}

/// Logs every problem on its own line and fails with all of them, or says all is well.
async fn report(cx: &Ctx<'_>, problems: Vec<String>) -> StageResult<()> {
    if problems.is_empty() {
        return cx
            .info(format!(
                "Proxmox preflight passed: node {}, storage {}, bridge {}",
                cx.node, cx.engine.config.guest.datastore, cx.engine.config.guest.bridge
            ))
            .await;
    }
    let _ = cx
        .reporter
        .lines(
            LogStream::Stderr,
            problems.iter().map(|p| format!("preflight: {p}")).collect(),
        )
        .await;
    let n = problems.len();
    Err(pfail(&format!(
        "Proxmox is not ready for this deployment ({n} problem{}):\n  - {}",
        if n == 1 { "" } else { "s" },
        problems.join("\n  - ")
    )))
}

/// `git ls-remote` on this machine, with the deployment's credentials: the repository
/// answers and the ref exists.
async fn check_repo(cx: &mut Ctx<'_>) -> StageResult<()> {
    super::app::check_repository(cx).await
}
