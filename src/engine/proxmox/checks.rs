//! Checks of a node against what a guest needs, shared by the deploy preflight and
//! `proxdeck doctor`: the datastore exists there, is active, allows the content (`rootdir` for
//! containers, `images` for VMs) and has room; the container template is on its storage (which
//! holds `vztmpl`); the bridge exists; memory and cores fit.
//!
//! Owns the wording: each problem is one line that names the setting or action that fixes it.
//! It only reads from Proxmox.

use super::Client;
use super::api::{GuestKind, Node, Storage};
use crate::config::GuestConfig;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// The guest's size (`None` in `doctor`, which checks a node without a deployment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub cores: u32,
    pub memory_mib: u32,
    pub disk_gib: u32,
}

/// "a, b, c", or "none".
pub fn names<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let list: Vec<&str> = items.collect();
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}

/// The storage holding a container template volume id (`local:vztmpl/x.tar.zst` → `local`).
pub fn template_storage(kind: GuestKind, guest: &GuestConfig) -> Option<String> {
    match kind {
        GuestKind::Lxc => guest
            .os_template
            .split_once(':')
            .map(|(s, _)| s.to_string()),
        GuestKind::Qemu => None,
    }
}

/// Every problem with putting a guest of `kind` (and size `need`) on `node`.
pub async fn node_problems(
    client: &Client,
    node: &Node,
    guest: &GuestConfig,
    kind: GuestKind,
    need: Option<&Need>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(need) = need {
        let want_mem = u64::from(need.memory_mib) * MIB;
        if node.maxmem > 0 && node.free_mem() < want_mem {
            problems.push(format!(
                "node {} has {} MiB of free memory, the guest wants {} MiB: ask for less (--memory) or use another node",
                node.node,
                node.free_mem() / MIB,
                need.memory_mib
            ));
        }
        if node.maxcpu > 0 && u64::from(need.cores) > node.maxcpu {
            problems.push(format!(
                "node {} has {} CPUs, the guest wants {} cores: ask for fewer (--cores)",
                node.node, node.maxcpu, need.cores
            ));
        }
    }
    match client.storages(&node.node).await {
        Err(e) => problems.push(format!(
            "cannot list the storages of node {}: {e}",
            node.node
        )),
        Ok(storages) => {
            if let Some(p) = datastore_problem(&storages, &node.node, guest, kind, need) {
                problems.push(p);
            }
            if let Some(ts) = template_storage(kind, guest)
                && let Some(p) =
                    template_problem(client, &node.node, &ts, &guest.os_template, &storages).await
            {
                problems.push(p);
            }
        }
    }
    match client.networks(&node.node).await {
        Err(e) => problems.push(format!(
            "cannot list the networks of node {}: {e}",
            node.node
        )),
        Ok(ifaces) => {
            if !ifaces
                .iter()
                .any(|i| i.iface == guest.bridge && i.is_bridge())
            {
                problems.push(format!(
                    "bridge {} does not exist on node {}; it has {}: set guest.bridge",
                    guest.bridge,
                    node.node,
                    names(
                        ifaces
                            .iter()
                            .filter(|i| i.is_bridge())
                            .map(|i| i.iface.as_str())
                    )
                ));
            }
        }
    }
    problems
}

fn datastore_problem(
    storages: &[Storage],
    node: &str,
    guest: &GuestConfig,
    kind: GuestKind,
    need: Option<&Need>,
) -> Option<String> {
    let content = match kind {
        GuestKind::Lxc => "rootdir",
        GuestKind::Qemu => "images",
    };
    let Some(s) = storages.iter().find(|s| s.storage == guest.datastore) else {
        return Some(format!(
            "storage {} does not exist on node {node}; storages there that hold {content}: {}: set guest.datastore",
            guest.datastore,
            names(
                storages
                    .iter()
                    .filter(|s| s.allows(content))
                    .map(|s| s.storage.as_str())
            )
        ));
    };
    if !s.allows(content) {
        return Some(format!(
            "storage {} on node {node} does not allow {content} (it holds {}): allow it on Proxmox (Datacenter > Storage > Edit > Content) or set guest.datastore",
            s.storage,
            if s.content.is_empty() {
                "nothing"
            } else {
                &s.content
            }
        ));
    }
    if !s.enabled || !s.active {
        return Some(format!(
            "storage {} is not active on node {node}: check it on Proxmox",
            s.storage
        ));
    }
    if let Some(need) = need
        && s.total > 0
        && s.avail < u64::from(need.disk_gib) * GIB
    {
        return Some(format!(
            "storage {} on node {node} has {} GiB free, the guest wants {} GiB: free space or ask for less (--disk)",
            s.storage,
            s.avail / GIB,
            need.disk_gib
        ));
    }
    None
}

/// A VM template to clone: `vmid` is a QEMU template on the cluster (on `node` when given, for
/// a template that is not on shared storage), and its node is online.
pub async fn vm_template_problem(client: &Client, vmid: u32, node: Option<&str>) -> Option<String> {
    let guests = match client.resources(None).await {
        Ok(g) => g,
        Err(e) => {
            return Some(format!(
                "cannot list the cluster to find VM template {vmid}: {e}"
            ));
        }
    };
    let Some(t) = guests
        .iter()
        .find(|r| r.vmid == Some(vmid) && r.guest_kind().is_some())
    else {
        return Some(format!(
            "VM template {vmid} does not exist on the cluster: make one (a cloud-init image converted with `qm template`) or set the VM template's vmid in the config"
        ));
    };
    let name = t.name.as_deref().unwrap_or("unnamed");
    let on = t.node.as_deref().unwrap_or("?");
    if t.guest_kind() != Some(GuestKind::Qemu) {
        return Some(format!(
            "guest {vmid} ({name}) is a container, not a VM template"
        ));
    }
    if !t.template {
        return Some(format!(
            "VM {vmid} ({name}) on {on} is not a template: convert it (`qm template {vmid}`) or name a template"
        ));
    }
    if let Some(n) = node
        && n != on
    {
        return Some(format!(
            "VM template {vmid} ({name}) is on node {on}, not {n}: set the template's node to {on}"
        ));
    }
    let online = guests.iter().any(|r| {
        r.kind == "node" && r.node.as_deref() == Some(on) && r.status.as_deref() == Some("online")
    });
    if !online {
        return Some(format!(
            "VM template {vmid} ({name}) is on node {on}, which is not online: clones need it"
        ));
    }
    None
}

/// The container template is on its storage, and that storage holds templates.
async fn template_problem(
    client: &Client,
    node: &str,
    storage: &str,
    volid: &str,
    storages: &[Storage],
) -> Option<String> {
    let Some(s) = storages.iter().find(|s| s.storage == storage) else {
        return Some(format!(
            "the OS template {volid} names storage {storage}, which does not exist on node {node}: set guest.os_template (`pveam list STORAGE` shows templates)"
        ));
    };
    if !s.allows("vztmpl") {
        return Some(format!(
            "storage {storage} on node {node} does not hold container templates (content vztmpl): set guest.os_template to a template on a storage that does"
        ));
    }
    match client.storage_content(node, storage, "vztmpl").await {
        Err(e) => Some(format!(
            "cannot list the templates on {storage} of node {node}: {e}"
        )),
        Ok(volumes) if volumes.iter().any(|v| v.volid == volid) => None,
        Ok(volumes) => {
            let file = volid.rsplit('/').next().unwrap_or(volid);
            Some(format!(
                "the OS template {volid} is not on storage {storage} of node {node}: download it (`pveam download {storage} {file}`) or set guest.os_template; there: {}",
                names(volumes.iter().map(|v| v.volid.as_str()))
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest() -> GuestConfig {
        crate::config::Config::parse("", &Default::default())
            .unwrap()
            .guest
    }

    fn storage(name: &str, content: &str, avail_gib: u64) -> Storage {
        Storage {
            storage: name.into(),
            content: content.into(),
            enabled: true,
            active: true,
            avail: avail_gib * GIB,
            total: 100 * GIB,
            ..Storage::default()
        }
    }

    #[test]
    fn datastore_problems_name_the_fix() {
        let need = Need {
            cores: 1,
            memory_mib: 512,
            disk_gib: 8,
        };
        let g = guest(); // local-lvm
        let ok = [storage("local-lvm", "images,rootdir", 50)];
        assert_eq!(
            datastore_problem(&ok, "pve1", &g, GuestKind::Lxc, Some(&need)),
            None
        );
        let missing = [storage("other", "rootdir", 50)];
        let p = datastore_problem(&missing, "pve1", &g, GuestKind::Lxc, Some(&need)).unwrap();
        assert!(
            p.contains("does not exist") && p.contains("other") && p.contains("guest.datastore"),
            "{p}"
        );
        let wrong = [storage("local-lvm", "images", 50)];
        let p = datastore_problem(&wrong, "pve1", &g, GuestKind::Lxc, Some(&need)).unwrap();
        assert!(p.contains("does not allow rootdir"), "{p}");
        assert_eq!(
            datastore_problem(&wrong, "pve1", &g, GuestKind::Qemu, Some(&need)),
            None
        );
        let full = [storage("local-lvm", "rootdir", 2)];
        let p = datastore_problem(&full, "pve1", &g, GuestKind::Lxc, Some(&need)).unwrap();
        assert!(p.contains("2 GiB free"), "{p}");
        assert_eq!(
            datastore_problem(&full, "pve1", &g, GuestKind::Lxc, None),
            None
        );
    }

    #[test]
    fn the_template_storage_comes_from_the_volume_id() {
        assert_eq!(
            template_storage(GuestKind::Lxc, &guest()).as_deref(),
            Some("local")
        );
        assert_eq!(template_storage(GuestKind::Qemu, &guest()), None);
    }
}
