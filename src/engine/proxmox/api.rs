//! Typed Proxmox endpoints proxdeck uses: version, nodes, cluster resources, storages and
//! their content, node networks, the caller's permissions, guest status, power actions, LXC
//! interfaces and the QEMU guest agent's interfaces, a guest's configuration, and deleting a
//! guest.
//!
//! Owns the shapes of those answers (numbers that Proxmox sometimes sends as strings are read
//! either way) and the privileges a deployment needs. It does no retries or auth of its own:
//! every call goes through [`Client::call`].

use super::{Call, Client, ProxmoxError, Result};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A number that may come as a JSON number, a numeric string or null (then 0).
fn num_f64<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.trim().parse().unwrap_or(0.0),
        Value::Bool(b) => f64::from(u8::from(b)),
        _ => 0.0,
    })
}

fn num_u64<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    Ok(num_f64(d)?.max(0.0) as u64)
}

fn flag<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    Ok(num_f64(d)? != 0.0)
}

/// An id that may come as a number or a string.
fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u32>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_u64().and_then(|v| u32::try_from(v).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Version {
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub release: String,
}

/// A node as `GET /nodes` lists it. Usage figures are bytes; absent for offline nodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub node: String,
    #[serde(default)]
    pub status: String,
    #[serde(default, deserialize_with = "num_f64")]
    pub cpu: f64,
    #[serde(default, deserialize_with = "num_u64")]
    pub maxcpu: u64,
    #[serde(default, deserialize_with = "num_u64")]
    pub mem: u64,
    #[serde(default, deserialize_with = "num_u64")]
    pub maxmem: u64,
    #[serde(default, deserialize_with = "num_u64")]
    pub disk: u64,
    #[serde(default, deserialize_with = "num_u64")]
    pub maxdisk: u64,
    #[serde(default, deserialize_with = "num_u64")]
    pub uptime: u64,
}

impl Node {
    pub fn online(&self) -> bool {
        self.status == "online"
    }

    pub fn free_mem(&self) -> u64 {
        self.maxmem.saturating_sub(self.mem)
    }
}

/// The kind of guest, as the API's paths name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestKind {
    Lxc,
    Qemu,
}

impl GuestKind {
    pub fn path(self) -> &'static str {
        match self {
            GuestKind::Lxc => "lxc",
            GuestKind::Qemu => "qemu",
        }
    }

    /// "CT" or "VM", as Proxmox's messages say.
    pub fn label(self) -> &'static str {
        match self {
            GuestKind::Lxc => "CT",
            GuestKind::Qemu => "VM",
        }
    }
}

impl From<crate::domain::GuestType> for GuestKind {
    fn from(t: crate::domain::GuestType) -> GuestKind {
        match t {
            crate::domain::GuestType::Lxc => GuestKind::Lxc,
            crate::domain::GuestType::Vm => GuestKind::Qemu,
        }
    }
}

impl From<GuestKind> for crate::domain::GuestType {
    fn from(k: GuestKind) -> crate::domain::GuestType {
        match k {
            GuestKind::Lxc => crate::domain::GuestType::Lxc,
            GuestKind::Qemu => crate::domain::GuestType::Vm,
        }
    }
}

/// One entry of `GET /cluster/resources` (guests, nodes, storages).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default, deserialize_with = "opt_u32")]
    pub vmid: Option<u32>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "num_f64")]
    pub cpu: f64,
    #[serde(default, deserialize_with = "num_u64")]
    pub maxcpu: u64,
    #[serde(default, deserialize_with = "num_u64")]
    pub mem: u64,
    #[serde(default, deserialize_with = "num_u64")]
    pub maxmem: u64,
    #[serde(default, deserialize_with = "num_u64")]
    pub disk: u64,
    #[serde(default, deserialize_with = "num_u64")]
    pub maxdisk: u64,
    #[serde(default, deserialize_with = "num_u64")]
    pub uptime: u64,
    #[serde(default, deserialize_with = "flag")]
    pub template: bool,
    #[serde(default)]
    pub tags: Option<String>,
    #[serde(default)]
    pub lock: Option<String>,
    #[serde(default)]
    pub storage: Option<String>,
}

impl Resource {
    /// The guest kind of a `qemu` or `lxc` entry.
    pub fn guest_kind(&self) -> Option<GuestKind> {
        match self.kind.as_str() {
            "lxc" => Some(GuestKind::Lxc),
            "qemu" => Some(GuestKind::Qemu),
            _ => None,
        }
    }

    pub fn tag_list(&self) -> Vec<String> {
        self.tags
            .as_deref()
            .unwrap_or("")
            .split([';', ',', ' '])
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// A storage as `GET /nodes/{node}/storage` shows it on one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Storage {
    pub storage: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub content: String,
    #[serde(default, deserialize_with = "flag")]
    pub enabled: bool,
    #[serde(default, deserialize_with = "flag")]
    pub active: bool,
    #[serde(default, deserialize_with = "num_u64")]
    pub avail: u64,
    #[serde(default, deserialize_with = "num_u64")]
    pub total: u64,
}

impl Storage {
    pub fn allows(&self, content: &str) -> bool {
        self.content
            .split([',', ';', ' '])
            .any(|c| c.trim() == content)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    pub volid: String,
    #[serde(default)]
    pub content: String,
}

/// A network interface of a node (`GET /nodes/{node}/network`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeIface {
    pub iface: String,
    #[serde(rename = "type", default)]
    pub kind: String,
}

impl NodeIface {
    pub fn is_bridge(&self) -> bool {
        matches!(self.kind.as_str(), "bridge" | "OVSBridge")
    }
}

/// The current state of one guest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuestStatus {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub lock: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// A guest interface and its addresses, from LXC `/interfaces` or the QEMU guest agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuestIface {
    pub name: String,
    pub addresses: Vec<String>,
}

/// What the caller may do (`GET /access/permissions`): path → privileges.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Permissions(pub BTreeMap<String, BTreeMap<String, Value>>);

impl Permissions {
    /// True when `privilege` is held on `path` or on one of its parents (`/vms/100` is
    /// covered by `/vms` and `/`).
    pub fn holds(&self, path: &str, privilege: &str) -> bool {
        let mut p = path.trim_end_matches('/').to_string();
        loop {
            let key = if p.is_empty() { "/" } else { p.as_str() };
            if let Some(privs) = self.0.get(key)
                && privs.get(privilege).is_some_and(|v| match v {
                    Value::Number(n) => n.as_f64().unwrap_or(0.0) != 0.0,
                    Value::Bool(b) => *b,
                    Value::String(s) => s != "0",
                    _ => false,
                })
            {
                return true;
            }
            if p.is_empty() {
                return false;
            }
            match p.rfind('/') {
                Some(i) => p.truncate(i),
                None => p.clear(),
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.values().all(|privs| privs.is_empty())
    }
}

/// One privilege a deployment needs, on one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub path: String,
    pub privilege: &'static str,
}

/// What creating and running a guest of `kind` takes, for `vmid` (or any vmid: `/vms`).
pub fn needed_privileges(
    kind: GuestKind,
    vmid: Option<u32>,
    datastore: &str,
    template_storage: Option<&str>,
    bridge: &str,
) -> Vec<Need> {
    let vm_path = vmid
        .map(|v| format!("/vms/{v}"))
        .unwrap_or_else(|| "/vms".to_string());
    let mut out: Vec<Need> = [
        "VM.Allocate",
        "VM.Audit",
        "VM.PowerMgmt",
        "VM.Config.CPU",
        "VM.Config.Memory",
        "VM.Config.Disk",
        "VM.Config.Network",
        "VM.Config.Options",
    ]
    .into_iter()
    .map(|privilege| Need {
        path: vm_path.clone(),
        privilege,
    })
    .collect();
    if kind == GuestKind::Qemu {
        for privilege in ["VM.Clone", "VM.Config.Cloudinit"] {
            out.push(Need {
                path: vm_path.clone(),
                privilege,
            });
        }
    }
    out.push(Need {
        path: format!("/storage/{datastore}"),
        privilege: "Datastore.AllocateSpace",
    });
    if let Some(s) = template_storage {
        out.push(Need {
            path: format!("/storage/{s}"),
            privilege: "Datastore.Audit",
        });
    }
    out.push(Need {
        path: format!("/sdn/zones/localnetwork/{bridge}"),
        privilege: "SDN.Use",
    });
    out
}

/// A power action on a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerAction {
    Start,
    /// A clean shutdown, forced off after the timeout.
    Shutdown,
    /// Immediate stop.
    Stop,
    Reboot,
}

impl PowerAction {
    pub fn path(self) -> &'static str {
        match self {
            PowerAction::Start => "start",
            PowerAction::Shutdown => "shutdown",
            PowerAction::Stop => "stop",
            PowerAction::Reboot => "reboot",
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| ProxmoxError::Decode {
        what: what.to_string(),
        cause: e.to_string(),
    })
}

/// A list answer: an array, or null (some endpoints say "nothing" that way).
fn decode_list<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> Result<Vec<T>> {
    match v {
        Value::Null => Ok(Vec::new()),
        other => decode(what, other),
    }
}

impl Client {
    async fn get_as<T: serde::de::DeserializeOwned>(&self, call: Call<'_>) -> Result<T> {
        let what = call.describe();
        let v = self.call(&call).await?;
        decode(&what, v)
    }

    async fn list_as<T: serde::de::DeserializeOwned>(&self, call: Call<'_>) -> Result<Vec<T>> {
        let what = call.describe();
        let v = self.call(&call).await?;
        decode_list(&what, v)
    }

    /// `GET /version`: answers when the endpoint and the credentials work.
    pub async fn version(&self) -> Result<Version> {
        self.get_as(Call::get(&["version"])).await
    }

    pub async fn nodes(&self) -> Result<Vec<Node>> {
        self.list_as(Call::get(&["nodes"])).await
    }

    /// `GET /cluster/resources`, of one `kind` (`vm`, `node`, `storage`) or all.
    pub async fn resources(&self, kind: Option<&str>) -> Result<Vec<Resource>> {
        let mut call = Call::get(&["cluster", "resources"]);
        if let Some(k) = kind {
            call = call.param("type", k);
        }
        self.list_as(call).await
    }

    /// The VMs and containers of the cluster (templates included: see `Resource::template`).
    pub async fn guests(&self) -> Result<Vec<Resource>> {
        Ok(self
            .resources(Some("vm"))
            .await?
            .into_iter()
            .filter(|r| r.guest_kind().is_some() && r.vmid.is_some())
            .collect())
    }

    pub async fn storages(&self, node: &str) -> Result<Vec<Storage>> {
        self.list_as(Call::get(&["nodes", node, "storage"])).await
    }

    pub async fn storage_content(
        &self,
        node: &str,
        storage: &str,
        content: &str,
    ) -> Result<Vec<Volume>> {
        self.list_as(
            Call::get(&["nodes", node, "storage", storage, "content"]).param("content", content),
        )
        .await
    }

    pub async fn networks(&self, node: &str) -> Result<Vec<NodeIface>> {
        self.list_as(Call::get(&["nodes", node, "network"])).await
    }

    /// `GET /access/permissions`: what the caller (the token itself, for a token) may do.
    pub async fn permissions(&self) -> Result<Permissions> {
        let v = self.call(&Call::get(&["access", "permissions"])).await?;
        match v {
            Value::Null => Ok(Permissions::default()),
            other => decode("GET /access/permissions", other),
        }
    }

    pub async fn guest_status(
        &self,
        node: &str,
        kind: GuestKind,
        vmid: u32,
    ) -> Result<GuestStatus> {
        self.get_as(Call::get(&[
            "nodes",
            node,
            kind.path(),
            &vmid.to_string(),
            "status",
            "current",
        ]))
        .await
    }

    /// Starts a power action and returns its task's UPID (not retried once sent).
    pub async fn power(
        &self,
        node: &str,
        kind: GuestKind,
        vmid: u32,
        action: PowerAction,
        timeout_secs: Option<u64>,
    ) -> Result<String> {
        let mut call = Call::post(&[
            "nodes",
            node,
            kind.path(),
            &vmid.to_string(),
            "status",
            action.path(),
        ]);
        if let Some(t) = timeout_secs {
            call = call.param("timeout", t);
        }
        if action == PowerAction::Shutdown {
            call = call.param("forceStop", 1);
        }
        let what = call.describe();
        match self.call(&call).await? {
            Value::String(upid) => Ok(upid),
            other => Err(ProxmoxError::Decode {
                what,
                cause: format!("expected a task id, got {other}"),
            }),
        }
    }

    /// A guest's configuration (`GET /nodes/{node}/{kind}/{vmid}/config`): its description,
    /// tags, ... as Proxmox stores them.
    pub async fn guest_config(&self, node: &str, kind: GuestKind, vmid: u32) -> Result<Value> {
        self.call(&Call::get(&[
            "nodes",
            node,
            kind.path(),
            &vmid.to_string(),
            "config",
        ]))
        .await
    }

    /// Deletes a stopped guest (`purge`: also from backup jobs, replication and HA); returns
    /// its task's UPID. Not retried once sent.
    pub async fn delete_guest(&self, node: &str, kind: GuestKind, vmid: u32) -> Result<String> {
        let call = Call::delete(&["nodes", node, kind.path(), &vmid.to_string()]).param("purge", 1);
        let what = call.describe();
        match self.call(&call).await? {
            Value::String(upid) => Ok(upid),
            other => Err(ProxmoxError::Decode {
                what,
                cause: format!("expected a task id, got {other}"),
            }),
        }
    }

    /// The addresses of a container's interfaces (none while it is stopped).
    pub async fn lxc_interfaces(&self, node: &str, vmid: u32) -> Result<Vec<GuestIface>> {
        let v = self
            .call(&Call::get(&[
                "nodes",
                node,
                "lxc",
                &vmid.to_string(),
                "interfaces",
            ]))
            .await?;
        Ok(parse_ifaces(&v))
    }

    /// The addresses the QEMU guest agent reports (`network-get-interfaces`).
    pub async fn agent_interfaces(&self, node: &str, vmid: u32) -> Result<Vec<GuestIface>> {
        let v = self
            .call(&Call::get(&[
                "nodes",
                node,
                "qemu",
                &vmid.to_string(),
                "agent",
                "network-get-interfaces",
            ]))
            .await?;
        Ok(parse_ifaces(v.get("result").unwrap_or(&v)))
    }
}

/// Interfaces from either answer shape: LXC's (`inet`, `ip-addresses`) or the agent's
/// (`ip-addresses` with `ip-address`).
pub fn parse_ifaces(v: &Value) -> Vec<GuestIface> {
    let Some(items) = v.as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .map(|item| {
            let name = item
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let mut addresses = Vec::new();
            if let Some(list) = item.get("ip-addresses").and_then(Value::as_array) {
                for a in list {
                    if let Some(ip) = a.get("ip-address").and_then(Value::as_str) {
                        addresses.push(ip.to_string());
                    }
                }
            }
            for key in ["inet", "inet6"] {
                if let Some(cidr) = item.get(key).and_then(Value::as_str) {
                    let ip = cidr.split('/').next().unwrap_or("").to_string();
                    if !ip.is_empty() && !addresses.contains(&ip) {
                        addresses.push(ip);
                    }
                }
            }
            GuestIface { name, addresses }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_may_be_strings() {
        let n: Node = serde_json::from_value(
            json!({"node": "pve1", "status": "online", "mem": "1024", "maxmem": 4096, "cpu": "0.5"}),
        )
        .unwrap();
        assert_eq!(n.free_mem(), 3072);
        assert_eq!(n.cpu, 0.5);
        let r: Resource = serde_json::from_value(
            json!({"id": "lxc/100", "type": "lxc", "vmid": "100", "template": 0, "tags": "a;b"}),
        )
        .unwrap();
        assert_eq!(r.vmid, Some(100));
        assert_eq!(r.guest_kind(), Some(GuestKind::Lxc));
        assert_eq!(r.tag_list(), ["a", "b"]);
    }

    #[test]
    fn privileges_are_inherited_from_parent_paths() {
        let p: Permissions = serde_json::from_value(json!({
            "/vms": {"VM.Allocate": 1},
            "/storage/local-lvm": {"Datastore.AllocateSpace": 1},
            "/": {"Sys.Audit": 0}
        }))
        .unwrap();
        assert!(p.holds("/vms/100", "VM.Allocate"));
        assert!(p.holds("/vms", "VM.Allocate"));
        assert!(!p.holds("/vms/100", "VM.PowerMgmt"));
        assert!(!p.holds("/", "Sys.Audit"));
        assert!(p.holds("/storage/local-lvm", "Datastore.AllocateSpace"));
        assert!(!p.holds("/storage/other", "Datastore.AllocateSpace"));
        assert!(Permissions::default().is_empty());
        let root: Permissions = serde_json::from_value(json!({"/": {"VM.Allocate": 1}})).unwrap();
        assert!(root.holds("/vms/7", "VM.Allocate"));
    }

    #[test]
    fn both_interface_shapes_parse() {
        let lxc = json!([
            {"name": "lo", "inet": "127.0.0.1/8", "ip-addresses": [{"ip-address": "127.0.0.1", "prefix": "8"}]},
            {"name": "eth0", "inet": "10.0.0.5/24"}
        ]);
        let ifaces = parse_ifaces(&lxc);
        assert_eq!(ifaces[1].addresses, ["10.0.0.5"]);
        assert_eq!(ifaces[0].addresses, ["127.0.0.1"]);
        let agent = json!([{"name": "eth0", "ip-addresses": [
            {"ip-address": "fe80::1", "ip-address-type": "ipv6"},
            {"ip-address": "192.0.2.10", "ip-address-type": "ipv4"}]}]);
        assert_eq!(parse_ifaces(&agent)[0].addresses, ["fe80::1", "192.0.2.10"]);
        assert!(parse_ifaces(&Value::Null).is_empty());
    }

    #[test]
    fn a_vm_needs_clone_rights_too() {
        let lxc = needed_privileges(
            GuestKind::Lxc,
            Some(100),
            "local-lvm",
            Some("local"),
            "vmbr0",
        );
        assert!(
            lxc.iter()
                .any(|n| n.path == "/vms/100" && n.privilege == "VM.Allocate")
        );
        assert!(!lxc.iter().any(|n| n.privilege == "VM.Clone"));
        let vm = needed_privileges(GuestKind::Qemu, None, "local-lvm", None, "vmbr0");
        assert!(
            vm.iter()
                .any(|n| n.path == "/vms" && n.privilege == "VM.Clone")
        );
        assert!(vm.iter().any(|n| n.path == "/sdn/zones/localnetwork/vmbr0"));
    }
}
