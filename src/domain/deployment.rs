//! `Deployment`: one app on one guest, as the store keeps it and every interface shows it.

use super::status::{Stage, Status};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Short, typeable id of a deployment (six lowercase letters and digits, e.g. `k3x9ta`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeploymentId(pub String);

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestType {
    Lxc,
    Vm,
}

impl GuestType {
    pub fn as_str(self) -> &'static str {
        match self {
            GuestType::Lxc => "lxc",
            GuestType::Vm => "vm",
        }
    }
}

impl fmt::Display for GuestType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for GuestType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "lxc" | "ct" | "container" => Ok(GuestType::Lxc),
            "vm" | "qemu" => Ok(GuestType::Vm),
            _ => Err(format!("{s:?} is not a guest type: use lxc or vm")),
        }
    }
}

/// A deployment as recorded in the store. Timestamps are Unix milliseconds (UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub id: DeploymentId,
    pub name: String,
    pub repo: String,
    pub git_ref: String,
    pub framework: String,
    pub guest_type: GuestType,
    pub cores: u32,
    pub memory_mib: u32,
    pub disk_gib: u32,
    pub port: u16,
    /// Names of the environment variables given to the app; their values are secrets and are
    /// kept outside the database.
    pub env_names: Vec<String>,
    pub node: Option<String>,
    pub vmid: Option<u32>,
    pub ip: Option<String>,
    pub url: Option<String>,
    pub commit: Option<String>,
    pub status: Status,
    pub stage: Option<Stage>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}
