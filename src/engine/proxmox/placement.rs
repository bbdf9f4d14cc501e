//! Placement: with no node given (`proxmox.node = "auto"`, or `deploy --node auto`), a new
//! guest goes to the online node with the most free memory among those where it fits: enough
//! free memory, enough CPUs, and its datastore active there with room for its disk.
//!
//! Owns that choice and its explanation (why each other node was passed over). It reads the
//! cluster through the client and changes nothing.

use super::Client;
use super::ProxmoxError;
use super::api::{Node, Storage};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// What the guest needs from a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub cores: u32,
    pub memory_mib: u32,
    pub disk_gib: u32,
    pub datastore: String,
}

/// A node that fits, and why the others do not.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub node: String,
    pub free_mem: u64,
    pub passed_over: Vec<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PlacementError {
    #[error(
        "no node can take the guest ({cores} cores, {memory_mib} MiB, {disk_gib} GiB on {datastore}): {why}; free resources on a node, ask for less, or name a node with --node"
    )]
    NoFit {
        cores: u32,
        memory_mib: u32,
        disk_gib: u32,
        datastore: String,
        why: String,
    },
    #[error(
        "Proxmox lists no nodes: the credentials may see nothing (a privilege-separated API token without its own permissions sees empty lists); grant the token a role (e.g. PVEVMAdmin on /) or set proxmox.node"
    )]
    NoNodes,
    #[error("cannot read the cluster's nodes for placement: {0}")]
    Api(#[from] ProxmoxError),
}

/// Why `node` cannot take the guest, or `None` when it can. `storage` is the datastore's
/// state on that node (`None`: not there).
pub fn misfit(node: &Node, storage: Option<&Storage>, need: &Need) -> Option<String> {
    if !node.online() {
        return Some(format!("{} is {}", node.node, node.status));
    }
    let want = u64::from(need.memory_mib) * MIB;
    if node.free_mem() < want {
        return Some(format!(
            "{} has {} MiB free memory, {} wanted",
            node.node,
            node.free_mem() / MIB,
            need.memory_mib
        ));
    }
    if node.maxcpu > 0 && u64::from(need.cores) > node.maxcpu {
        return Some(format!(
            "{} has {} CPUs, {} cores wanted",
            node.node, node.maxcpu, need.cores
        ));
    }
    match storage {
        None => Some(format!("{} has no storage {}", node.node, need.datastore)),
        Some(s) if !s.enabled || !s.active => Some(format!(
            "storage {} is not active on {}",
            need.datastore, node.node
        )),
        Some(s) if s.avail < u64::from(need.disk_gib) * GIB => Some(format!(
            "storage {} on {} has {} GiB free, {} wanted",
            need.datastore,
            node.node,
            s.avail / GIB,
            need.disk_gib
        )),
        Some(_) => None,
    }
}

/// The best fit among `candidates` ((node, its datastore)): the most free memory; ties go to
/// the node listed first (by name).
pub fn choose(
    candidates: &[(Node, Option<Storage>)],
    need: &Need,
) -> Result<Placement, PlacementError> {
    let mut passed_over = Vec::new();
    let mut best: Option<&Node> = None;
    let mut sorted: Vec<&(Node, Option<Storage>)> = candidates.iter().collect();
    sorted.sort_by(|a, b| a.0.node.cmp(&b.0.node));
    for (node, storage) in sorted {
        if let Some(why) = misfit(node, storage.as_ref(), need) {
            passed_over.push(why);
            continue;
        }
        if best.is_none_or(|b| node.free_mem() > b.free_mem()) {
            best = Some(node);
        }
    }
    match best {
        Some(n) => Ok(Placement {
            node: n.node.clone(),
            free_mem: n.free_mem(),
            passed_over,
        }),
        None => Err(PlacementError::NoFit {
            cores: need.cores,
            memory_mib: need.memory_mib,
            disk_gib: need.disk_gib,
            datastore: need.datastore.clone(),
            why: passed_over.join("; "),
        }),
    }
}

/// Reads the nodes (and the datastore on each online one) and chooses.
pub async fn place(client: &Client, need: &Need) -> Result<Placement, PlacementError> {
    let nodes = client.nodes().await?;
    if nodes.is_empty() {
        return Err(PlacementError::NoNodes);
    }
    let mut candidates = Vec::new();
    for node in nodes {
        let storage = if node.online() {
            match client.storages(&node.node).await {
                Ok(list) => list.into_iter().find(|s| s.storage == need.datastore),
                // A node that does not answer cannot take a guest now.
                Err(_) => {
                    let mut n = node;
                    n.status = "unreachable".into();
                    candidates.push((n, None));
                    continue;
                }
            }
        } else {
            None
        };
        candidates.push((node, storage));
    }
    choose(&candidates, need)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, online: bool, free_gib: u64) -> Node {
        Node {
            node: name.into(),
            status: if online { "online" } else { "offline" }.into(),
            maxmem: 64 * GIB,
            mem: 64 * GIB - free_gib * GIB,
            maxcpu: 8,
            ..Node::default()
        }
    }

    fn store(avail_gib: u64) -> Option<Storage> {
        Some(Storage {
            storage: "local-lvm".into(),
            enabled: true,
            active: true,
            avail: avail_gib * GIB,
            ..Storage::default()
        })
    }

    fn need(memory_mib: u32) -> Need {
        Need {
            cores: 2,
            memory_mib,
            disk_gib: 8,
            datastore: "local-lvm".into(),
        }
    }

    #[test]
    fn the_online_node_with_most_free_memory_that_fits_wins() {
        let c = [
            (node("a", true, 4), store(100)),
            (node("b", false, 60), None),
            (node("c", true, 30), store(2)),
            (node("d", true, 16), store(100)),
        ];
        let p = choose(&c, &need(2048)).unwrap();
        assert_eq!(p.node, "d");
        assert_eq!(p.passed_over.len(), 2, "{:?}", p.passed_over);
        assert!(p.passed_over.iter().any(|w| w.contains("b is offline")));
        assert!(p.passed_over.iter().any(|w| w.contains("2 GiB free")));
    }

    #[test]
    fn nothing_fits_explains_each_node() {
        let c = [(node("a", true, 1), store(100)), (node("b", true, 2), None)];
        let err = choose(&c, &need(4096)).unwrap_err().to_string();
        assert!(err.contains("a has 1024 MiB free memory"), "{err}");
        assert!(err.contains("b has 2048 MiB free memory"), "{err}");
        assert!(err.contains("--node"), "{err}");
    }

    #[test]
    fn too_many_cores_do_not_fit() {
        let mut n = need(512);
        n.cores = 16;
        let err = choose(&[(node("a", true, 8), store(100))], &n).unwrap_err();
        assert!(err.to_string().contains("8 CPUs"), "{err}");
    }
}
